/*  common/buf.h: a growable byte buffer with a hard size cap.
    The buffer owns its bytes; cm_buf_take() hands them to the caller.
    Appending past the cap fails (returns -1) and sets the overflow flag,
    so network readers can stop at a limit instead of growing forever. */
#ifndef CM_BUF_H
#define CM_BUF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;       /* always NUL-terminated when not NULL */
    size_t len;       /* bytes used, without the terminating NUL */
    size_t alloc;     /* bytes allocated */
    size_t cap;       /* largest len allowed; 0 = unlimited */
    bool overflow;    /* an append was refused because of cap */
} cm_buf_t;

void cm_buf_init (cm_buf_t *b, size_t cap);
int cm_buf_append (cm_buf_t *b, const void *data, size_t len);
/* Makes room for len more bytes at once (when the size is known, no
   growing by copies); -1 over the cap or out of memory. */
int cm_buf_reserve (cm_buf_t *b, size_t len);
int cm_buf_printf (cm_buf_t *b, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
void cm_buf_reset (cm_buf_t *b);
/* Hands the bytes to the caller (free() them) and empties the buffer. */
char *cm_buf_take (cm_buf_t *b, size_t *len);
void cm_buf_free (cm_buf_t *b);
/* Makes server text storable as PostgreSQL text (UTF-8): each byte of an
   invalid or cut UTF-8 sequence (a Latin-1 reply, a line cut at a byte
   count) becomes '?', and every control character but TAB a space. In
   place; the length never changes. Returns s. */
char *cm_text_scrub (char *s);
/* True when s [0..len) is UTF-8 that PostgreSQL and jansson take: no
   overlong forms, no surrogates, nothing past U+10FFFF, no sequence cut
   by the end (a NUL is a character here). */
bool cm_utf8_valid (const char *s, size_t len);
/* Writes code point c (at most U+10FFFF; the caller has turned
   surrogates into U+FFFD) as UTF-8 into out; returns its 1 to 4 bytes. */
size_t cm_utf8_put (uint32_t c, char out [4]);
/* True for a code point a terminal acts on, or that makes it show text
   in another order than it is: C0 controls, DEL, C1 controls (U+0080
   to U+009F; U+009B is a CSI) and the bidirectional controls (U+061C,
   U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069). */
bool cm_text_control (unsigned cp);
/* The value of a base64 digit (RFC 4648: A-Z a-z 0-9 + /), or -1. */
int cm_base64_value (unsigned char c);
int cm_buf_test (bool verbose);
#endif
