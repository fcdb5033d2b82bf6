/*  parser/uuencode.h: files uuencoded inside a text body (parser/uuencode.c).
    Ownership: a found block's name and data are malloc'd; the caller frees
    them with cm_uu_block_free(). Errors: -1 only when memory runs out. */
#ifndef CM_UUENCODE_H
#define CM_UUENCODE_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    size_t start;         /* offset of the block's begin line in the text */
    size_t end;           /* offset just after its end line (and its LF) */
    char *name;           /* file name as on the begin line, not cleaned */
    unsigned char *data;  /* decoded bytes (never NULL when found) */
    size_t size;
} cm_uu_block_t;

/* Finds the next well-formed block ("begin MODE NAME" ... "end", or
   "begin-base64 MODE NAME" ... "====") whose begin line starts at or
   after *pos (a line start) in text [0..len). 1: found, *block filled
   and *pos moved past it; 0: none left (*pos = len); -1: out of memory. */
int cm_uu_next (const char *text, size_t len, size_t *pos, cm_uu_block_t *block);
void cm_uu_block_free (cm_uu_block_t *block);

/* Offline unit tests of the decoder alone; returns the failures. */
int cm_uu_selftest (bool verbose);
#endif
