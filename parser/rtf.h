/*  parser/rtf.h: the RTF body Outlook keeps in a TNEF stream
    (PR_RTF_COMPRESSED): its decompression and its text (parser/rtf.c).
    Ownership: cm_rtf_decompress() fills a cm_rtf_t whose data is
    malloc'd, freed with cm_rtf_free(); cm_rtf_text() returns malloc'd
    text the caller frees.
    Errors: -1 or NULL only when memory runs out; damaged input is no
    error, cm_rtf_t.problem says what is wrong. */
#ifndef CM_RTF_H
#define CM_RTF_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    unsigned char *data;  /* the RTF as decompressed, or NULL */
    size_t len;
    bool crc_wrong;       /* the header's CRC does not match (read anyway) */
    char problem [96];    /* why data is short or missing; "" when it is not */
} cm_rtf_t;

/* Decompresses a PR_RTF_COMPRESSED value in[0..len) ([MS-OXRTFCP]:
   "LZFu" compressed or "MELA" stored). Writes no more than the header's
   RAWSIZE and nothing at all when RAWSIZE is over max_out; damage (a
   stream cut short, a reference to what was never written, COMPSIZE past
   the value) stops it there and what came out before stands.
   0, or -1 out of memory (*rtf is then freed). */
int cm_rtf_decompress (const unsigned char *in, size_t len, size_t max_out, cm_rtf_t *rtf);
void cm_rtf_free (cm_rtf_t *rtf);

/* Converts 8-bit text in a Windows code page (0: CP1252) to UTF-8,
   malloc'd; NULL out of memory. state is the caller's, given to
   cm_rtf_text (a document may switch code pages at every character:
   the caller can keep its converters there rather than open one a
   call). */
typedef char *(*cm_rtf_decode_fn) (void *state, const char *bytes, size_t len, unsigned codepage);

/* The text of an RTF document in UTF-8: destinations that are not text
   skipped, \par as a line break, \'hh in the code page of the font in
   force (\fcharset) or the document's (\ansicpg), through decode, \uN
   as itself. Encapsulated HTML
   ([MS-OXRTFEX], \fromhtml1) is de-encapsulated and rendered with
   cm_html_to_text(); *html (when not NULL) says so. Groups are followed
   to a fixed depth; text deeper than that is dropped. The text stops
   at max_out bytes (between characters; before the HTML is rendered):
   \'hh and 8-bit bytes give up to 3 bytes of UTF-8 each; *cut (when
   not NULL) says the text stopped there. NULL out of memory. */
char *cm_rtf_text (const unsigned char *rtf, size_t len, size_t max_out, cm_rtf_decode_fn decode,
                   void *state, bool *html, bool *cut);

/* Offline unit tests; returns the failures. */
int cm_rtf_selftest (bool verbose);
#endif
