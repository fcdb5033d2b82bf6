/*  common/buf.c: growable byte buffer with a cap (see buf.h). */
#include "buf.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
cm_buf_init (cm_buf_t *b, size_t cap)
{
    memset (b, 0, sizeof *b);
    b->cap = cap;
}

/* Makes room for len more bytes plus a NUL, doubling (appends) or to the
   byte (a known size); -1 on cap or memory. */
static int
s_reserve (cm_buf_t *b, size_t len, bool exact)
{
    if (b->cap && (len > b->cap || b->len > b->cap - len)) {
        b->overflow = true;
        return -1;
    }
    if (b->len + len + 1 <= b->alloc)
        return 0;
    size_t want = exact || !b->alloc ? b->len + len + 1 : b->alloc;
    if (!exact && want < 256)
        want = 256;
    while (want < b->len + len + 1)
        want *= 2;
    char *data = realloc (b->data, want);
    if (!data)
        return -1;
    b->data = data;
    b->alloc = want;
    return 0;
}

int
cm_buf_reserve (cm_buf_t *b, size_t len)
{
    return s_reserve (b, len, true);
}

int
cm_buf_append (cm_buf_t *b, const void *data, size_t len)
{
    if (s_reserve (b, len, false))
        return -1;
    if (len)
        memcpy (b->data + b->len, data, len);
    b->len += len;
    b->data [b->len] = 0;
    return 0;
}

int
cm_buf_printf (cm_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (NULL, 0, fmt, ap);
    va_end (ap);
    if (n < 0 || s_reserve (b, (size_t) n, false))
        return -1;
    va_start (ap, fmt);
    vsnprintf (b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end (ap);
    b->len += (size_t) n;
    return 0;
}

void
cm_buf_reset (cm_buf_t *b)
{
    b->len = 0;
    b->overflow = false;
    if (b->data)
        b->data [0] = 0;
}

char *
cm_buf_take (cm_buf_t *b, size_t *len)
{
    char *data = b->data;
    if (!data)
        data = calloc (1, 1);
    if (len)
        *len = b->len;
    size_t cap = b->cap;
    cm_buf_init (b, cap);
    return data;
}

void
cm_buf_free (cm_buf_t *b)
{
    free (b->data);
    size_t cap = b->cap;
    cm_buf_init (b, cap);
}

/* The length of the valid UTF-8 sequence at p (1 to 4), or 0. */
static size_t
s_utf8_len (const unsigned char *p)
{
    unsigned c = p [0];
    size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
             : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    for (size_t k = 1; k < n; k++)
        if ((p [k] & 0xc0) != 0x80)
            return 0;
    /* no overlong forms, no surrogates, nothing past U+10FFFF */
    if ((c == 0xe0 && p [1] < 0xa0) || (c == 0xed && p [1] > 0x9f)
        || (c == 0xf0 && p [1] < 0x90) || (c == 0xf4 && p [1] > 0x8f))
        return 0;
    return n;
}

size_t
cm_utf8_put (uint32_t c, char out [4])
{
    if (c < 0x80) {
        out [0] = (char) c;
        return 1;
    }
    if (c < 0x800) {
        out [0] = (char) (0xC0 | c >> 6);
        out [1] = (char) (0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out [0] = (char) (0xE0 | c >> 12);
        out [1] = (char) (0x80 | (c >> 6 & 0x3F));
        out [2] = (char) (0x80 | (c & 0x3F));
        return 3;
    }
    out [0] = (char) (0xF0 | c >> 18);
    out [1] = (char) (0x80 | (c >> 12 & 0x3F));
    out [2] = (char) (0x80 | (c >> 6 & 0x3F));
    out [3] = (char) (0x80 | (c & 0x3F));
    return 4;
}

bool
cm_utf8_valid (const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        size_t want = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        size_t n = (size_t) (end - p) >= want ? s_utf8_len (p) : 0;
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

bool
cm_text_control (unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c
        || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e)
        || (cp >= 0x2066 && cp <= 0x2069);
}

int
cm_base64_value (unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
}

char *
cm_text_scrub (char *s)
{
    unsigned char *p = (unsigned char *) s;
    while (p && *p) {
        size_t n = s_utf8_len (p);
        if (n == 0)
            *p++ = '?';
        else if (n == 1 && (*p < 0x20 || *p == 0x7f) && *p != '\t')
            *p++ = ' ';
        else
            p += n;
    }
    return s;
}

int
cm_buf_test (bool verbose)
{
    (void) verbose;
    cm_buf_t b;
    cm_buf_init (&b, 10);
    if (cm_buf_append (&b, "hello", 5) || cm_buf_printf (&b, "%d", 1234))
        return -1;
    if (b.len != 9 || strcmp (b.data, "hello1234") != 0)
        return -1;
    if (cm_buf_append (&b, "xy", 2) == 0 || !b.overflow)
        return -1;
    size_t len;
    char *s = cm_buf_take (&b, &len);
    int rc = (len == 9 && strcmp (s, "hello1234") == 0 && b.len == 0) ? 0 : -1;
    free (s);
    cm_buf_free (&b);
    /* UTF-8 as PostgreSQL and jansson take it, within the length given */
    if (rc == 0 && (!cm_utf8_valid ("caf\xc3\xa9 \xf0\x9f\x98\x80", 10)
                    || cm_utf8_valid ("caf\xe9", 4) || cm_utf8_valid ("\xed\xa0\x80", 3)
                    || cm_utf8_valid ("\xc0\xaf", 2) || cm_utf8_valid ("caf\xc3\xa9", 4)))
        rc = -1;
    /* code points written as UTF-8: one to four bytes, each valid */
    static const struct { uint32_t c; const char *utf8; } cps [] = {
        { 0x41, "A" }, { 0xE9, "\xc3\xa9" }, { 0x7FF, "\xdf\xbf" }, { 0x20AC, "\xe2\x82\xac" },
        { 0xFFFD, "\xef\xbf\xbd" }, { 0x1F600, "\xf0\x9f\x98\x80" }, { 0x10FFFF, "\xf4\x8f\xbf\xbf" } };
    for (size_t i = 0; rc == 0 && i < sizeof cps / sizeof cps [0]; i++) {
        char u [4];
        size_t k = cm_utf8_put (cps [i].c, u);
        if (k != strlen (cps [i].utf8) || memcmp (u, cps [i].utf8, k) || !cm_utf8_valid (u, k))
            rc = -1;
    }
    /* room made once, exactly; appends within it keep the allocation;
       the cap holds for a reservation too */
    cm_buf_init (&b, 100);
    if (rc == 0 && (cm_buf_reserve (&b, 40) || b.alloc != 41 || cm_buf_append (&b, "abc", 3)
                    || cm_buf_reserve (&b, 37) || b.alloc != 41
                    || cm_buf_append (&b, "0123456789012345678901234567890123456", 37)
                    || b.alloc != 41 || b.len != 40 || b.data [40] != 0
                    || cm_buf_reserve (&b, 61) == 0 || !b.overflow))
        rc = -1;
    cm_buf_free (&b);
    if (cm_base64_value ('A') != 0 || cm_base64_value ('z') != 51 || cm_base64_value ('9') != 61
        || cm_base64_value ('+') != 62 || cm_base64_value ('/') != 63
        || cm_base64_value ('=') != -1 || cm_base64_value ('-') != -1 || cm_base64_value (0xC3) != -1)
        rc = -1;
    /* what a terminal acts on; beside it, what it shows as it is */
    if (!cm_text_control (0x1b) || !cm_text_control (0x7f) || !cm_text_control (0x9b)
        || !cm_text_control (0x202e) || !cm_text_control (0x2066) || !cm_text_control (0x061c)
        || cm_text_control (' ') || cm_text_control (0xa0) || cm_text_control (0x2010)
        || cm_text_control (0x202f) || cm_text_control (0x206a))
        rc = -1;
    /* server text: Latin-1, a cut sequence, an overlong form, controls */
    char t [] = "250 re\xe7u, \xc3\xa7" "a va \xe2\x82\xac \xc0\xaf\r\x01 \xc3";
    cm_text_scrub (t);
    if (strcmp (t, "250 re?u, \xc3\xa7" "a va \xe2\x82\xac ??   ?") != 0)
        rc = -1;
    if (verbose)
        printf ("  scrubbed: %s\n", t);
    return rc;
}
