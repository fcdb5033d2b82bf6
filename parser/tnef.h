/*  parser/tnef.h: the files inside a TNEF stream (winmail.dat), which
    Outlook and Exchange send in "Rich Text" format (parser/tnef.c).
    Ownership: cm_tnef_read() fills a cm_tnef_t whose names, types, bytes
    and body are malloc'd; the caller frees them with cm_tnef_free().
    Errors: -1 only when memory runs out; a damaged stream is no error,
    its problem says what is wrong. */
#ifndef CM_TNEF_H
#define CM_TNEF_H
#include <stdbool.h>
#include <stddef.h>

/* Properties read of one MAPI property list at most. */
#define CM_TNEF_MAX_PROPS 4096
/* Bytes of an address at most (RFC 5321's path less its <>): a longer
   one is none. */
#define CM_TNEF_MAX_ADDRESS 254
/* Rows read of the message's recipient table (its first attRecipTable;
   any other is not read) at most. */
#define CM_TNEF_MAX_RECIPS 4096

typedef struct {
    char *name;           /* long name (PR_ATTACH_LONG_FILENAME), else the
                             short one (attAttachTitle); not cleaned, or NULL */
    bool name_utf8;       /* name was PT_UNICODE, now UTF-8; else 8-bit text
                             in the stream's code page */
    char *mime_type;      /* PR_ATTACH_MIME_TAG as given, or NULL */
    unsigned char *data;  /* the file's bytes (never NULL) */
    size_t size;
    bool embedded;        /* an attached Outlook message: data is its own
                             TNEF stream (PR_ATTACH_DATA_OBJ), for the
                             caller to read in turn */
} cm_tnef_file_t;

/* A text property: Unicode ones (PT_UNICODE) as UTF-8, 8-bit ones as
   given, in the stream's code page. */
typedef struct {
    char *text;           /* or NULL */
    bool utf8;
} cm_tnef_text_t;

/* A To or Cc row of the recipient table. */
typedef struct {
    cm_tnef_text_t name;  /* PR_DISPLAY_NAME */
    cm_tnef_text_t addr;  /* PR_SMTP_ADDRESS, else PR_EMAIL_ADDRESS, when it
                             is an address: a local part and a domain, no
                             white space, control or special (not an
                             Exchange DN, nor a list) */
    bool cc;              /* PR_RECIPIENT_TYPE 2 (Cc), else 1 (To) */
} cm_tnef_recip_t;

typedef struct {
    cm_tnef_file_t *files;
    size_t nfiles;
    size_t skipped;       /* attachments without bytes (links, OLE objects
                             with nothing readable) */
    char *body;           /* attBody, 8-bit text in the code page, or NULL */
    size_t body_len;
    unsigned char *rtf;   /* the RTF body (PR_RTF_COMPRESSED) decompressed,
                             or NULL; its bytes count against max_bytes */
    size_t rtf_len;
    char rtf_note [256];  /* what became of the RTF body ("RTF body read",
                             "RTF body not read: ..."); "" when none */
    cm_tnef_text_t subject;    /* PR_SUBJECT, else attSubject */
    cm_tnef_text_t from_name;  /* PR_SENT_REPRESENTING_NAME or PR_SENDER_NAME,
                                  the first given */
    cm_tnef_text_t from_addr;  /* the first of the sender's SMTP and email
                                  addresses that is an address, as a
                                  recipient's is */
    cm_tnef_recip_t *recips;   /* the To and Cc rows of the first
                                  attRecipTable in order (Bcc rows, and rows with neither a
                                  name nor an address, left out) */
    size_t nrecips;
    cm_tnef_text_t display_to; /* PR_DISPLAY_TO: the To names, "; " between */
    cm_tnef_text_t display_cc; /* PR_DISPLAY_CC */
    bool dated;           /* date is set */
    long long date;       /* seconds since 1970: PR_CLIENT_SUBMIT_TIME, else
                             PR_MESSAGE_DELIVERY_TIME, else attDateSent (all
                             UTC); years 1970 to 9999 only */
    bool date_no_zone;    /* date is attDateSent's: UTC, the sender's zone
                             unknown */
    unsigned codepage;    /* attOemCodepage, 0 when not given */
    int bad_checksums;    /* attributes whose checksum was wrong (read anyway) */
    char problem [160];   /* why reading stopped early; "" when it did not */
} cm_tnef_t;

/* True when data starts with the TNEF signature. */
bool cm_tnef_signature (const unsigned char *data, size_t len);

/* Reads the TNEF stream data[0..len): the files of its attachments, in
   order, its plain text body and its RTF body. Stops at the first damage (bad
   signature, an attribute longer than what remains, a property list that
   does not add up) or at a limit: more than max_files files, or their
   bytes over max_bytes; problem says which, and the files read before it
   are kept. Every length is checked against what remains. The RTF
   body is decompressed last, within the bytes the files left; its
   damage stops nothing else, rtf_note says what came of it.
   0, or -1 out of memory (*tnef is then freed). */
int cm_tnef_read (const unsigned char *data, size_t len, size_t max_files,
                  size_t max_bytes, cm_tnef_t *tnef);
void cm_tnef_free (cm_tnef_t *tnef);

/* Offline unit tests; returns the failures. */
int cm_tnef_selftest (bool verbose);
#endif
