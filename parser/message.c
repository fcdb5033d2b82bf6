/*  parser/message.c: the raw bytes of one email -> cm_message_t (GMime 3).
    Hostile input is the normal case here. Before GMime sees the bytes, a
    linear pre-scan (s_prescan) follows the MIME structure the way GMime's
    parser will (boundary stack, message/rfc822 nesting, multipart/digest
    defaults) and rejects too deep nesting, too many parts, oversized
    header sections and too many header fields, so GMime never builds a
    giant tree; it also respells UTF-7 encoded words in header fields,
    which GMime would decode in quadratic time (s_respell_utf7). The walk
    over GMime's tree checks depth, parts and header bytes again (and
    GMime's own nesting overflow warning), so a mismatch between the two
    only costs a bounded parse, never a crash.
    The record and everything in it is owned by the caller
    (cm_message_destroy). Errors: NULL plus a reason; out of memory is
    reported as a reason too. Nothing here logs or touches global state
    beyond GMime's one-time initialisation. */
#include "message.h"
#include "uuencode.h"
#include "calendar.h"
#include "tnef.h"
#include "rtf.h"
#include "../common/buf.h"
#include <ctype.h>
#include <gmime/gmime.h>
#include <errno.h>
#include <iconv.h>
#include <limits.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define S_MAX_REFERENCES 100
#define S_MAX_FILENAME 255
/* Bytes of a name of an attached Outlook message's sender or recipient
   at most; longer ones are cut */
#define S_MAX_NAME 512
#define S_MAX_DEPTH_CLAMP 1000   /* our walk recurses; keep the stack safe */
#define S_DSN_SCAN_MAX (64 * 1024)
#define S_BYTES_FACTOR 4         /* decoded attachment bytes per raw byte allowed */

static pthread_once_t s_once = PTHREAD_ONCE_INIT;

/* Charset converters kept loaded. glibc unloads an iconv module soon after
   its last descriptor is closed, and GMime opens and closes one for every
   header and text part it converts: loading the module again each time
   was a tenth of the parsing time. One descriptor per charset met, never
   closed, keeps its module in memory (a few dozen kB each, at most
   S_PINNED_MAX of them). */
#define S_PINNED_MAX 64
static pthread_mutex_t s_pin_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name [48];
    iconv_t cd;                /* kept open on purpose; -1: no such charset */
} s_pinned [S_PINNED_MAX];
static int s_npinned;

/* Keeps charset's converter loaded; true when iconv knows the charset
   (asked once per process for each name the table holds). */
static bool
s_pin_charset (const char *charset)
{
    if (!charset || !*charset || strlen (charset) >= sizeof s_pinned [0].name)
        return false;
    const char *name = g_mime_charset_iconv_name (charset);
    if (!name || strlen (name) >= sizeof s_pinned [0].name)
        return false;
    pthread_mutex_lock (&s_pin_lock);
    int at = 0;
    while (at < s_npinned && strcmp (s_pinned [at].name, name))
        at++;
    /* names iconv doesn't know are remembered too, so they are tried once */
    if (at == s_npinned && s_npinned < S_PINNED_MAX) {
        s_pinned [at].cd = iconv_open ("UTF-8", name);
        snprintf (s_pinned [at].name, sizeof s_pinned [0].name, "%s", name);
        s_npinned++;
    }
    bool held = at < s_npinned;
    bool known = held && s_pinned [at].cd != (iconv_t) -1;
    pthread_mutex_unlock (&s_pin_lock);
    if (!held) {                        /* the table is full: ask iconv */
        iconv_t cd = iconv_open ("UTF-8", name);
        known = cd != (iconv_t) -1;
        if (known)
            iconv_close (cd);
    }
    return known;
}

/* The charsets of RFC 2047 encoded words ("=?name?") in the header of
   raw, at most a few per message, so GMime finds their converters loaded
   (the header only: scanning whole bodies cost more than it saved). */
static void
s_pin_encoded_words (const char *raw, size_t len)
{
    const char *p = raw, *end = raw + len;
    /* the header ends at the first empty line */
    for (const char *nl = memchr (raw, '\n', len); nl && nl + 1 < end;
         nl = memchr (nl + 1, '\n', (size_t) (end - nl - 1)))
        if (nl [1] == '\n' || (nl [1] == '\r' && nl + 2 < end && nl [2] == '\n')) {
            end = nl;
            break;
        }
    int tries = 0;
    while (tries < 8 && p < end) {
        const char *hit = memmem (p, (size_t) (end - p), "=?", 2);
        if (!hit)
            break;
        const char *name = hit + 2, *q = name;
        while (q < end && q - name < 40 && (isalnum ((unsigned char) *q) || *q == '-'
                                            || *q == '_' || *q == '.' || *q == ':'))
            q++;
        if (q < end && *q == '?' && q > name) {
            char cs [48];
            snprintf (cs, sizeof cs, "%.*s", (int) (q - name), name);
            if (g_ascii_strcasecmp (cs, "utf-8") && g_ascii_strcasecmp (cs, "us-ascii")) {
                s_pin_charset (cs);
                tries++;
            }
        }
        p = q > hit + 2 ? q : hit + 2;
    }
}

static void
s_init_gmime (void)
{
    g_mime_init ();
    s_pin_charset ("windows-1252");       /* the fallback charset below */
    s_pin_charset ("iso-8859-1");
}

void
cm_limits_default (cm_limits_t *l)
{
    /* 36 MiB of raw message: room for 25 MB of attachments once base64
       has grown them by a third, plus headers and text */
    l->max_size = 36 * 1024 * 1024;
    l->max_depth = 32;
    l->max_parts = 1000;
    l->max_header_bytes = 256 * 1024;
    /* GMime makes an object of each field, about 4 us: 36 MiB of
       "X-A: b" lines in 140 parts under the byte limits took 19 s, when
       36 MiB of attachment takes 0.25 s. A thousand parts of a few
       fields and fifty attached messages of a few hundred stay far below. */
    l->max_header_fields = 50000;
    l->max_nested_messages = 50;
}

#define S_DECLARED_MAX 4          /* charsets a message declares, kept */

/* State of one cm_message_parse() call, shared by all nested levels. */
typedef struct {
    cm_limits_t lim;
    int parts;            /* MIME objects walked so far, all levels */
    int header_fields;    /* header fields pre-scanned so far, all levels */
    int nested;           /* attached messages parsed so far */
    size_t bytes;         /* decoded attachment bytes kept so far */
    size_t tnef_files;    /* files taken out of TNEF so far, all levels */
    size_t tnef_bytes;    /* and their bytes (s_take_tnef) */
    size_t tnef_text;     /* text read from TNEF RTF bodies, all levels */
    bool overflow;        /* GMime warned about nesting overflow */
    bool failed;          /* a limit tripped: the whole message is rejected */
    char reason [256];    /* why, when failed */
    GMimeParserOptions *options;
    /* charsets the message's parts declare (as their supersets), for 8-bit
       header text and unlabelled text (s_note_charset) */
    char declared [S_DECLARED_MAX][48];
    int ndeclared;
    int fallback_set;     /* ndeclared when the fallback list was last set */
    GMimeParserOptions *only [S_DECLARED_MAX + 1]; /* s_options_for, made once */
} s_ctx_t;

/* Raw 8-bit text in a header (a Subject, a name, a file name, sent
   without RFC 2047 as some mail clients do) carries no charset. GMime
   tries its fallback charsets in order and takes the first that fits
   every byte: UTF-8, then the charsets the message's own parts declare
   (a client writes its headers in the charset of its text: GBK, Shift_JIS,
   windows-1251...), then windows-1252, which fits almost any bytes. Only
   charsets that keep ASCII as ASCII are taken: UTF-16 or UTF-7 would fit
   bytes they do not describe. */
static const char *s_charset_superset (const char *label);

static void
s_note_charset (s_ctx_t *ctx, const char *label)
{
    if (!label || !*label || strlen (label) > 40 || ctx->ndeclared >= S_DECLARED_MAX)
        return;
    for (const char *c = label; *c; c++)
        if (!isalnum ((unsigned char) *c) && !strchr ("-_.:", *c))
            return;
    const char *super = s_charset_superset (label);
    const char *name = super ? super : label;
    const char *canon = g_mime_charset_canon_name (name);
    static const char *const skip [] = { "utf-8", "utf8", "cp1252", "windows-1252", NULL };
    static const char *const wide [] = { "utf-16", "utf-32", "ucs", "utf-7", "unicode",
                                         "utf16", "utf32", "utf7", NULL };
    for (int i = 0; skip [i]; i++)
        if (!g_ascii_strcasecmp (name, skip [i]) || (canon && !g_ascii_strcasecmp (canon, skip [i])))
            return;
    for (int i = 0; wide [i]; i++)
        if (!g_ascii_strncasecmp (name, wide [i], strlen (wide [i]))
            || (canon && !g_ascii_strncasecmp (canon, wide [i], strlen (wide [i]))))
            return;
    for (int i = 0; i < ctx->ndeclared; i++)
        if (!g_ascii_strcasecmp (ctx->declared [i], name))
            return;
    /* only a charset iconv knows takes one of the few places (a label is
       input: made-up names must not crowd out the real one) */
    if (!s_pin_charset (name))
        return;
    snprintf (ctx->declared [ctx->ndeclared++], sizeof ctx->declared [0], "%s", name);
}

/* The fallback list with the charsets declared so far (s_note_charset). */
static void
s_set_fallback (s_ctx_t *ctx)
{
    if (ctx->fallback_set == ctx->ndeclared)
        return;
    const char *list [S_DECLARED_MAX + 3];
    int n = 0;
    list [n++] = "UTF-8";
    for (int i = 0; i < ctx->ndeclared; i++)
        list [n++] = ctx->declared [i];
    list [n++] = "windows-1252";
    list [n] = NULL;
    g_mime_parser_options_set_fallback_charsets (ctx->options, list);
    ctx->fallback_set = ctx->ndeclared;
}

static void
s_fail (s_ctx_t *ctx, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_fail (s_ctx_t *ctx, const char *fmt, ...)
{
    if (ctx->failed)
        return;
    ctx->failed = true;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (ctx->reason, sizeof ctx->reason, fmt, ap);
    va_end (ap);
}

static void
s_fail_depth (s_ctx_t *ctx)
{
    s_fail (ctx, "MIME nesting deeper than %d levels", ctx->lim.max_depth);
}

static void
s_fail_parts (s_ctx_t *ctx)
{
    s_fail (ctx, "more than %d MIME parts", ctx->lim.max_parts);
}

static void
s_fail_headers (s_ctx_t *ctx)
{
    s_fail (ctx, "header section over %zu bytes", ctx->lim.max_header_bytes);
}

static void
s_fail_header_fields (s_ctx_t *ctx)
{
    s_fail (ctx, "more than %d header fields", ctx->lim.max_header_fields);
}

/* ------------------------------------------------------------ strings */

/* Valid UTF-8 copy of s[0..len): invalid bytes -> U+FFFD, NUL dropped;
   oneline also turns CR/LF/TAB into spaces and drops other controls. */
static char *
s_clean (const char *s, size_t len, bool oneline)
{
    cm_buf_t b;
    cm_buf_init (&b, 0);
    const unsigned char *p = (const unsigned char *) (s ? s : "");
    if (!s)
        len = 0;
    if (cm_buf_reserve (&b, len))       /* the usual size: valid input */
        return NULL;
    b.data [0] = 0;
    size_t i = 0;
    while (i < len) {
        /* a run of bytes kept as they are goes in one copy */
        size_t run = i;
        while (run < len && p [run] >= 0x20 && p [run] < 0x7F)
            run++;
        if (!oneline)
            while (run < len && p [run] && p [run] < 0x7F)
                run++;
        if (run > i) {
            cm_buf_append (&b, p + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = p [i];
        if (c < 0x80) {
            /* what the run leaves: NUL and DEL (dropped), and on one line
               the controls (CR, LF and TAB become spaces) */
            if (oneline && (c == '\r' || c == '\n' || c == '\t'))
                cm_buf_append (&b, " ", 1);
            i++;
            continue;
        }
        size_t n = 0;
        uint32_t cp = 0, min = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2; cp = c & 0x1F; min = 0x80;
        }
        else
        if (c >= 0xE0 && c <= 0xEF) {
            n = 3; cp = c & 0x0F; min = 0x800;
        }
        else
        if (c >= 0xF0 && c <= 0xF4) {
            n = 4; cp = c & 0x07; min = 0x10000;
        }
        bool ok = n && i + n <= len;
        for (size_t k = 1; ok && k < n; k++) {
            if ((p [i + k] & 0xC0) != 0x80)
                ok = false;
            else
                cp = (cp << 6) | (p [i + k] & 0x3F);
        }
        if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
            ok = false;
        if (ok && oneline && cp >= 0x80 && cp <= 0x9F)
            ok = false;     /* C1 controls */
        if (ok) {
            cm_buf_append (&b, p + i, n);
            i += n;
        }
        else {
            cm_buf_append (&b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    return cm_buf_take (&b, NULL);
}

static char *
s_clean_str (const char *s, bool oneline)
{
    return s_clean (s, s ? strlen (s) : 0, oneline);
}

/* Clean one-line copy, blanks collapsed and trimmed. */
static char *
s_clean_trim (const char *s)
{
    char *c = s_clean_str (s, true);
    if (!c)
        return NULL;
    /* collapse runs of blanks (folded headers) and trim */
    char *w = c;
    for (char *r = c; *r; r++) {
        if (*r == ' ' && (w == c || w [-1] == ' '))
            continue;
        *w++ = *r;
    }
    if (w > c && w [-1] == ' ')
        w--;
    *w = 0;
    return c;
}

/* NULL, empty or only white space (ASCII, as text/plain blank lines are). */
static bool
s_blank (const char *s)
{
    while (s && isspace ((unsigned char) *s))
        s++;
    return !s || !*s;
}

static void
s_lower (char *s)
{
    for (; s && *s; s++)
        *s = (char) tolower ((unsigned char) *s);
}

static bool
s_valid_utf8 (const char *s, size_t len)
{
    return g_utf8_validate (s, (gssize) len, NULL);
}

/* The largest length at most n that does not cut s, UTF-8 of at least
   n bytes, inside a character. */
static size_t
s_utf8_floor (const char *s, size_t n)
{
    while (n && ((unsigned char) s [n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* Appends ptr to a growable array of pointers. */
static int
s_push_ptr (void ***array, size_t *n, void *ptr)
{
    void **grown = realloc (*array, (*n + 1) * sizeof (void *));
    if (!grown)
        return -1;
    grown [(*n)++] = ptr;
    *array = grown;
    return 0;
}

static bool
s_ends_with_ci (const char *s, const char *suffix)
{
    size_t n = strlen (s), m = strlen (suffix);
    return n >= m && strcasecmp (s + n - m, suffix) == 0;
}

/* ------------------------------------------------------------ pre-scan */

typedef struct {
    char *boundary;       /* NULL: a message/rfc822 level */
    size_t blen;
    bool digest;          /* children default to message/rfc822 */
} s_frame_t;

/* GMime's rule: "--B" or "--B--", then only linear white space. */
static bool
s_is_boundary (const char *line, size_t len, const s_frame_t *f, bool *close)
{
    if (len < f->blen + 2 || memcmp (line + 2, f->boundary, f->blen) != 0)
        return false;
    size_t i = f->blen + 2;
    *close = false;
    if (len - i >= 2 && line [i] == '-' && line [i + 1] == '-') {
        size_t k = i + 2;
        while (k < len && (line [k] == ' ' || line [k] == '\t' || line [k] == '\r'))
            k++;
        if (k == len) {
            *close = true;
            return true;
        }
    }
    while (i < len && (line [i] == ' ' || line [i] == '\t' || line [i] == '\r'))
        i++;
    return i == len;
}

typedef struct {
    s_ctx_t *ctx;
    int base;             /* depth of the part holding this message, 0 at top */
    s_frame_t *frames;
    int nframes;
    int maxframes;
    int parts;
    cm_buf_t ct;          /* unfolded Content-Type of the current block */
    bool have_ct, in_ct;
    bool digest_child;    /* current block is a direct child of a digest */
    size_t header_bytes;
} s_scan_t;

static void
s_scan_pop (s_scan_t *s, int to)
{
    while (s->nframes > to) {
        s->nframes--;
        free (s->frames [s->nframes].boundary);
        s->frames [s->nframes].boundary = NULL;
    }
}

static void
s_scan_new_block (s_scan_t *s, bool digest_child)
{
    cm_buf_reset (&s->ct);
    s->have_ct = s->in_ct = false;
    s->digest_child = digest_child;
    s->header_bytes = 0;
}

/* End of a header block: counts the part and follows its content type.
   Returns 1 when a nested message's headers follow, 0 for content, -1 on
   a limit. */
static int
s_scan_block_end (s_scan_t *s)
{
    s_ctx_t *ctx = s->ctx;
    if (ctx->parts + ++s->parts > ctx->lim.max_parts) {
        s_fail_parts (ctx);
        return -1;
    }
    if (s->base + s->nframes + 1 > ctx->lim.max_depth) {
        s_fail_depth (ctx);
        return -1;
    }
    bool multi = false, message = false, digest = false;
    char *boundary = NULL;
    if (s->have_ct && s->ct.data) {
        GMimeContentType *ct = g_mime_content_type_parse (ctx->options, s->ct.data);
        if (ct) {
            s_note_charset (ctx, g_mime_content_type_get_parameter (ct, "charset"));
            const char *type = g_mime_content_type_get_media_type (ct);
            const char *sub = g_mime_content_type_get_media_subtype (ct);
            if (type && sub && !g_ascii_strcasecmp (type, "multipart")) {
                const char *b = g_mime_content_type_get_parameter (ct, "boundary");
                if (b && *b) {
                    multi = true;
                    boundary = strdup (b);
                    digest = !g_ascii_strcasecmp (sub, "digest");
                }
            }
            else
            if (type && sub && !g_ascii_strcasecmp (type, "message")
            && (!g_ascii_strcasecmp (sub, "rfc822")
             || !g_ascii_strcasecmp (sub, "news")
             || !g_ascii_strcasecmp (sub, "global")))
                message = true;
            g_object_unref (ct);
        }
    }
    else
    if (s->digest_child)
        message = true;
    if (multi && !boundary)
        return -1;      /* out of memory */
    if (multi || message) {
        if (s->nframes >= s->maxframes) {
            free (boundary);
            s_fail_depth (ctx);
            return -1;
        }
        s_frame_t *f = &s->frames [s->nframes++];
        f->boundary = boundary;
        f->blen = boundary ? strlen (boundary) : 0;
        f->digest = digest;
    }
    s_scan_new_block (s, false);
    return message ? 1 : 0;
}

static int s_respell_utf7 (const char *line, size_t ll, cm_buf_t *out, bool *changed);

/* Follows the MIME structure of raw in one pass; -1 when a limit trips
   (ctx->failed set) or out of memory. *respelled gets a copy of raw
   whose header fields have their UTF-7 encoded words respelled
   (s_respell_utf7), or NULL when there were none; the caller frees it
   and gives GMime the copy (*respelled_len bytes). */
static int
s_prescan (s_ctx_t *ctx, const char *raw, size_t len, int base,
           char **respelled, size_t *respelled_len)
{
    int rc = -1;
    s_scan_t s = { .ctx = ctx, .base = base };
    s.maxframes = ctx->lim.max_depth + 2;
    s.frames = calloc ((size_t) s.maxframes, sizeof *s.frames);
    cm_buf_init (&s.ct, ctx->lim.max_header_bytes);
    cm_buf_t out, field;        /* the respelled copy, once a line needs it;
                                   one line respelled */
    cm_buf_init (&out, 0);
    cm_buf_init (&field, 0);
    size_t copied = 0;          /* bytes of raw in out, up to a line's end */
    bool changed = false;
    *respelled = NULL;
    *respelled_len = 0;
    if (!s.frames)
        goto done;
    bool in_headers = true;
    size_t pos = 0;
    while (pos < len) {
        const char *line = raw + pos;
        const char *nl = memchr (line, '\n', len - pos);
        size_t ll = nl ? (size_t) (nl - line) : len - pos;
        size_t adv = nl ? ll + 1 : ll;
        pos += adv;
        if (s.nframes && ll >= 2 && line [0] == '-' && line [1] == '-') {
            int hit = -1;
            bool close = false;
            for (int i = s.nframes - 1; i >= 0 && hit < 0; i--)
                if (s.frames [i].boundary
                &&  s_is_boundary (line, ll, &s.frames [i], &close))
                    hit = i;
            if (hit >= 0) {
                if (in_headers && ctx->parts + ++s.parts > ctx->lim.max_parts) {
                    s_fail_parts (ctx);
                    goto done;
                }
                bool digest = s.frames [hit].digest;
                s_scan_pop (&s, close ? hit : hit + 1);
                in_headers = !close;
                s_scan_new_block (&s, !close && digest);
                continue;
            }
        }
        if (!in_headers)
            continue;
        s.header_bytes += adv;
        if (s.header_bytes > ctx->lim.max_header_bytes) {
            s_fail_headers (ctx);
            goto done;
        }
        if (memmem (line, ll, "=?", 2)) {
            bool hit = false;
            cm_buf_reset (&field);
            if (s_respell_utf7 (line, ll, &field, &hit))
                goto done;
            if (hit) {
                size_t at = (size_t) (line - raw);
                if (cm_buf_append (&out, raw + copied, at - copied)
                ||  cm_buf_append (&out, field.data, field.len))
                    goto done;
                copied = at + ll;
                changed = true;
                line = field.data;  /* the Content-Type kept below is GMime's too */
                ll = field.len;
            }
        }
        if (ll == 0 || (ll == 1 && line [0] == '\r')) {
            int r = s_scan_block_end (&s);
            if (r < 0)
                goto done;
            in_headers = r == 1;
            continue;
        }
        if (line [0] == ' ' || line [0] == '\t') {
            if (s.in_ct)
                cm_buf_append (&s.ct, line, ll);
            continue;
        }
        size_t k = 0;
        while (k < ll && line [k] != ':' && (unsigned char) line [k] > ' ')
            k++;
        size_t name_len = k;
        while (k < ll && (line [k] == ' ' || line [k] == '\t'))
            k++;
        if (name_len > 0 && k < ll && line [k] == ':') {
            if (++ctx->header_fields > ctx->lim.max_header_fields) {
                s_fail_header_fields (ctx);
                goto done;
            }
            s.in_ct = false;
            /* the last Content-Type field wins, as in GMime */
            if (name_len == 12 && strncasecmp (line, "Content-Type", 12) == 0) {
                s.have_ct = s.in_ct = true;
                cm_buf_reset (&s.ct);
                cm_buf_append (&s.ct, line + k + 1, ll - k - 1);
            }
            continue;
        }
        /* Not a header field: the content starts here. */
        int r = s_scan_block_end (&s);
        if (r < 0)
            goto done;
        in_headers = r == 1;
    }
    if (in_headers && s.header_bytes && s_scan_block_end (&s) < 0)
        goto done;
    if (changed && cm_buf_append (&out, raw + copied, len - copied))
        goto done;
    if (changed)
        *respelled = cm_buf_take (&out, respelled_len);
    rc = 0;
done:
    if (s.frames) {
        s_scan_pop (&s, 0);
        free (s.frames);
    }
    cm_buf_free (&field);
    cm_buf_free (&out);
    cm_buf_free (&s.ct);
    if (rc && !ctx->failed)
        s_fail (ctx, "out of memory while scanning the message");
    return rc;
}

/* ------------------------------------------------------------ GMime helpers */

static void
s_warning_cb (gint64 offset, GMimeParserWarning code, const gchar *item,
              gpointer user_data)
{
    (void) offset;
    (void) item;
    if (code == GMIME_CRIT_NESTING_OVERFLOW)
        ((s_ctx_t *) user_data)->overflow = true;
}

/* Feeds one character to a lenient base64 decoder (state *acc, *bits,
   both 0 at the start): true with a decoded byte in *out. Characters
   outside the alphabet (padding, line breaks, junk) are passed over. */
static bool
s_base64_step (unsigned char ch, unsigned int *acc, int *bits, unsigned char *out)
{
    int v = cm_base64_value (ch);
    if (v < 0)
        return false;
    *acc = ((*acc << 6) | (unsigned int) v) & 0xFFFFFF;
    *bits += 6;
    if (*bits < 8)
        return false;
    *bits -= 8;
    *out = (unsigned char) (*acc >> *bits);
    return true;
}

/* GMime's base64 decoder drops a last quantum of 2 or 3 characters when
   the padding is missing ("AAAAAA" gives 3 bytes, not 4; Python's email
   package and RFC 4648 give 4). When the encoded text ends in such a
   quantum, decodes it leniently (non-alphabet characters and '=' skipped)
   and, when that gives GMime's bytes plus 1 or 2 more, returns those.
   NULL otherwise: well-formed input (or anything odd) keeps GMime's answer.
   The first pass only counts, in a small buffer. */
static GByteArray *
s_base64_tail (GMimeDataWrapper *content, const GByteArray *decoded)
{
    if (g_mime_data_wrapper_get_encoding (content) != GMIME_CONTENT_ENCODING_BASE64)
        return NULL;
    GMimeStream *src = g_mime_data_wrapper_get_stream (content);
    if (!src)
        return NULL;
    /* 1 for the 64 characters of the alphabet: this pass reads every
       base64 part, so it is a table lookup per byte */
    static const unsigned char alphabet [256] = {
        ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
        ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
        ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
        ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
        ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
        ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
        ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
        ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
        ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
        ['7'] = 1, ['8'] = 1, ['9'] = 1, ['+'] = 1, ['/'] = 1,
    };
    unsigned char buf [4096];
    size_t nchars = 0, pads = 0;        /* '=' after the last character */
    ssize_t got;
    g_mime_stream_reset (src);
    while ((got = g_mime_stream_read (src, (char *) buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < got; i++) {
            if (alphabet [buf [i]]) {
                nchars++;
                pads = 0;
            }
            else if (buf [i] == '=')
                pads++;
        }
    /* complete quanta, or a short one properly padded: GMime's answer */
    if (nchars % 4 < 2 || (nchars + pads) % 4 == 0) {
        g_mime_stream_reset (src);
        return NULL;
    }
    size_t dlen = decoded ? decoded->len : 0;
    GByteArray *out = g_byte_array_sized_new ((guint) (nchars / 4 * 3 + 3));
    g_byte_array_set_size (out, (guint) (nchars / 4 * 3 + 3));
    size_t olen = 0;
    unsigned int acc = 0;
    int bits = 0;
    g_mime_stream_reset (src);
    while ((got = g_mime_stream_read (src, (char *) buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < got; i++) {
            unsigned char c;
            if (s_base64_step (buf [i], &acc, &bits, &c) && olen < out->len)
                out->data [olen++] = c;
        }
    g_byte_array_set_size (out, (guint) olen);
    g_mime_stream_reset (src);
    if (!(out->len > dlen && out->len <= dlen + 2
          && (dlen == 0 || memcmp (out->data, decoded->data, dlen) == 0))) {
        g_byte_array_free (out, TRUE);
        out = NULL;
    }
    return out;
}

/* Decoded content of a leaf part (transfer encoding undone). */
static int
s_part_bytes (GMimePart *part, unsigned char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    GMimeDataWrapper *content = g_mime_part_get_content (part);
    GMimeStream *mem = g_mime_stream_mem_new ();
    if (content)
        g_mime_data_wrapper_write_to_stream (content, mem);
    GByteArray *array = g_mime_stream_mem_get_byte_array ((GMimeStreamMem *) mem);
    GByteArray *fixed = content ? s_base64_tail (content, array) : NULL;
    if (fixed)
        array = fixed;
    size_t n = array ? array->len : 0;
    *data = malloc (n + 1);
    if (*data) {
        if (n)
            memcpy (*data, array->data, n);
        (*data) [n] = 0;
        *size = n;
    }
    if (fixed)
        g_byte_array_free (fixed, TRUE);
    g_object_unref (mem);
    return *data ? 0 : -1;
}

/* Serialised bytes of a GMime object (an attached message). */
static int
s_object_bytes (GMimeObject *object, unsigned char **data, size_t *size)
{
    GMimeStream *mem = g_mime_stream_mem_new ();
    if (object)
        g_mime_object_write_to_stream (object, NULL, mem);
    GByteArray *array = g_mime_stream_mem_get_byte_array ((GMimeStreamMem *) mem);
    size_t n = array ? array->len : 0;
    *data = malloc (n + 1);
    if (*data) {
        if (n)
            memcpy (*data, array->data, n);
        (*data) [n] = 0;
    }
    *size = *data ? n : 0;
    g_object_unref (mem);
    return *data ? 0 : -1;
}

/* ------------------------------------------------------------ charsets */

/* The charset a sender really used under a label: mail clients write
   Windows code pages and extended CJK sets under the older standard
   names (Outlook's "iso-8859-1" text with curly quotes and euro signs in
   0x80-0x9F, Korean "ks_c_5601-1987" that is CP949). NULL: the label
   stands. Each superset reads every text the label allows, except a few
   bytes the label leaves as C1 controls (s_iconv_utf8 fails on those and
   the label is used instead). */
static const char *
s_charset_superset (const char *label)
{
    static const struct { const char *label, *superset; } map [] = {
        { "iso-8859-1", "CP1252" }, { "latin1", "CP1252" }, { "l1", "CP1252" },
        { "us-ascii", "CP1252" }, { "ascii", "CP1252" },
        { "iso-8859-9", "CP1254" }, { "latin5", "CP1254" }, { "l5", "CP1254" },
        { "tis-620", "CP874" }, { "tis620", "CP874" },
        { "ks_c_5601-1987", "CP949" }, { "ks_c_5601", "CP949" }, { "euc-kr", "CP949" },
        { "shift_jis", "CP932" }, { "shift-jis", "CP932" }, { "x-sjis", "CP932" },
        { "sjis", "CP932" },
        { "gb2312", "GB18030" }, { "gbk", "GB18030" }, { "x-gbk", "GB18030" },
        { "big5", "BIG5-HKSCS" }, { "x-big5", "BIG5-HKSCS" }, { "cn-big5", "BIG5-HKSCS" },
        { NULL, NULL } };
    if (!label || !*label)
        return NULL;
    const char *canon = g_mime_charset_canon_name (label);
    for (int i = 0; map [i].label; i++)
        if (!g_ascii_strcasecmp (label, map [i].label)
        ||  (canon && !g_ascii_strcasecmp (canon, map [i].label)))
            return map [i].superset;
    return NULL;
}

/* data[0..len) converted from charset (an iconv name) to UTF-8, as
   malloc'd bytes (*outlen, plus a NUL), or NULL when iconv does not know
   the charset or a byte does not fit it: the caller then falls back. */
static char *
s_iconv_utf8 (const char *charset, const char *data, size_t len, size_t *outlen)
{
    iconv_t cd = iconv_open ("UTF-8", charset);
    if (cd == (iconv_t) -1)
        return NULL;
    s_pin_charset (charset);    /* known names only: a label is input */
    /* no charset here needs more than 3 bytes of UTF-8 per input byte */
    size_t cap = len > (SIZE_MAX - 16) / 3 ? 0 : len * 3 + 16;
    char *out = cap ? malloc (cap) : NULL;
    char *in = (char *) data, *op = out;
    size_t inleft = len, outleft = cap ? cap - 1 : 0;
    bool ok = out && iconv (cd, &in, &inleft, &op, &outleft) != (size_t) -1
           && iconv (cd, NULL, NULL, &op, &outleft) != (size_t) -1;
    iconv_close (cd);
    if (!ok) {
        free (out);
        return NULL;
    }
    *op = 0;
    *outlen = (size_t) (op - out);
    return out;
}

/* Text in charset (a label GMime maps to an iconv name) as UTF-8, read
   as far as it goes: each illegal or cut sequence becomes one U+FFFD and
   the converter's shift state is reset after it, so the rest of the text
   is read from a clean state. GMime's charset filter does neither: a
   UTF-7 text with one bad base64 run (bits left over, a lone surrogate)
   lost everything after it, and glibc's UTF-7 decoder, left in that
   state, re-read kilobytes for every byte the filter skipped (found by
   the fuzzer: a 270 kB part parsed for 5 s).
   Each iconv call consumes up to an error and each error one byte at
   least, so the work is linear in len. Malloc'd (*outlen, plus a NUL);
   NULL when iconv lacks the charset, or out of memory. */
static char *
s_iconv_lossy (const char *charset, const char *data, size_t len, size_t *outlen)
{
    const char *name = g_mime_charset_iconv_name (charset);
    iconv_t cd = name ? iconv_open ("UTF-8", name) : (iconv_t) -1;
    if (cd == (iconv_t) -1)
        return NULL;
    s_pin_charset (charset);    /* known names only: a label is input */
    cm_buf_t out;
    cm_buf_init (&out, 0);
    int rc = cm_buf_reserve (&out, len < SIZE_MAX / 2 ? len * 2 + 16 : len);
    char *in = (char *) data;
    size_t inleft = len;
    bool flushed = false;       /* the input read and the shift state closed */
    while (rc == 0 && !flushed) {
        char *op = out.data + out.len;
        size_t room = out.alloc - out.len - 1, outleft = room;
        bool flushing = inleft == 0;
        size_t r = flushing ? iconv (cd, NULL, NULL, &op, &outleft)
                            : iconv (cd, &in, &inleft, &op, &outleft);
        int err = r == (size_t) -1 ? errno : 0;
        out.len += room - outleft;
        out.data [out.len] = 0;
        if (err == E2BIG)
            rc = cm_buf_reserve (&out, out.alloc);      /* double the room */
        else if ((err == EILSEQ || err == EINVAL) && !flushing) {
            rc = cm_buf_append (&out, "\xEF\xBF\xBD", 3);
            if (inleft) {       /* the bad byte, or the cut sequence's first */
                in++;
                inleft--;
            }
            iconv (cd, NULL, NULL, NULL, NULL);
        }
        else if (err && !flushing)
            rc = -1;
        else
            flushed = flushing; /* a flush that fails has nothing to write */
    }
    iconv_close (cd);
    if (rc) {
        cm_buf_free (&out);
        return NULL;
    }
    return cm_buf_take (&out, outlen);
}

/* ------------------------------------------------------------ encoded words */

/* One RFC 2047 encoded word "=?charset?e?text?=" in a raw header value. */
typedef struct {
    char charset [65];    /* the label, without a "*lang" suffix */
    char enc;             /* 'B' or 'Q' */
    const char *text;     /* the encoded text, textlen bytes */
    size_t textlen;
    const char *end;      /* just past the closing "?=" */
} s_word_t;

/* Reads an encoded word at p (which starts with "=?"); false if none. */
static bool
s_word_at (const char *p, s_word_t *w)
{
    const char *q = p + 2, *cs = q;
    while (*q && *q != '?' && (unsigned char) *q > ' ' && (unsigned char) *q < 0x7F
    && !strchr ("()<>@,;:\"/[]=", *q))
        q++;
    size_t cslen = (size_t) (q - cs);
    if (*q != '?' || cslen == 0 || cslen >= sizeof w->charset)
        return false;
    const char *star = memchr (cs, '*', cslen);
    size_t keep = star ? (size_t) (star - cs) : cslen;
    if (keep == 0)
        return false;
    char enc = (char) toupper ((unsigned char) q [1]);
    if ((enc != 'B' && enc != 'Q') || q [2] != '?')
        return false;
    const char *text = q + 3, *t = text;
    while ((unsigned char) *t > ' ' && (unsigned char) *t < 0x7F && *t != '?')
        t++;
    if (t [0] != '?' || t [1] != '=')
        return false;
    memcpy (w->charset, cs, keep);
    w->charset [keep] = 0;
    w->enc = enc;
    w->text = text;
    w->textlen = (size_t) (t - text);
    w->end = t + 2;
    return true;
}

static int
s_hex_value (unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
         : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends the bytes of one encoded word, decoded on its own: base64
   leniently (padding anywhere, a missing pad), Q with "_" as space and a
   broken "=" kept. */
static int
s_word_bytes (const s_word_t *w, cm_buf_t *out)
{
    const unsigned char *t = (const unsigned char *) w->text;
    int rc = 0;
    if (w->enc == 'B') {
        unsigned int acc = 0;
        int bits = 0;
        for (size_t i = 0; i < w->textlen && rc == 0; i++) {
            unsigned char c;
            if (s_base64_step (t [i], &acc, &bits, &c))
                rc = cm_buf_append (out, &c, 1);
        }
        return rc;
    }
    for (size_t i = 0; i < w->textlen && rc == 0; i++) {
        unsigned char c = t [i];
        if (c == '_')
            c = ' ';
        else
        if (c == '=' && i + 2 < w->textlen
        && s_hex_value (t [i + 1]) >= 0 && s_hex_value (t [i + 2]) >= 0) {
            c = (unsigned char) (s_hex_value (t [i + 1]) * 16 + s_hex_value (t [i + 2]));
            i += 2;
        }
        rc = cm_buf_append (out, &c, 1);
    }
    return rc;
}

/* The bytes of the run of encoded words from p to end (read before,
   white space between them), each decoded on its own, into *out. */
static int
s_run_bytes (const char *p, const char *end, cm_buf_t *out)
{
    s_word_t w;
    int rc = 0;
    cm_buf_reset (out);
    for (const char *r = p; rc == 0 && r < end; r = w.end) {
        r += strspn (r, " \t\r\n");
        if (!s_word_at (r, &w))
            break;          /* cannot happen: the run was read before */
        rc = s_word_bytes (&w, out);
    }
    return rc;
}

/* Appends bytes as one Q-encoded word: no padding that GMime could join
   to a neighbour, and nothing a quoted string or a phrase would mind. */
static int
s_q_word (cm_buf_t *out, const char *charset, const char *data, size_t len)
{
    int rc = cm_buf_printf (out, "=?%s?Q?", charset);
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char) data [i];
        rc = isalnum (c) ? cm_buf_append (out, &c, 1)
           : c == ' ' ? cm_buf_append (out, "_", 1) : cm_buf_printf (out, "=%02X", c);
    }
    return rc ? rc : cm_buf_append (out, "?=", 2);
}

/* The raw header value with the encoded words GMime would misread
   spelled again, or NULL when there are none (or out of memory: GMime's
   reading then stands). GMime decodes a run of adjacent words of one
   charset as a single base64 stream, so a word padded with '=' ends the
   text ("Re: Üb" of "Re: Überweisung [INC-42]"). A run with a base64
   word is decoded here word by word and its bytes converted together (a
   character split across words stays whole), a run under a label with a
   superset (s_charset_superset) is read in that; either becomes one
   UTF-8 word. A word counts only where text, a display name or a quoted
   parameter can start it, never inside an address. */
static char *
s_fix_words (const char *value)
{
    if (!value || !strstr (value, "=?"))
        return NULL;
    cm_buf_t out, bytes;
    cm_buf_init (&out, 0);
    cm_buf_init (&bytes, 0);
    const char *p = value, *copied = value;
    int rc = 0;
    while (rc == 0 && (p = strstr (p, "=?"))) {
        s_word_t w, next;
        if ((p > value && !strchr (" \t\r\n\"(,:;", p [-1])) || !s_word_at (p, &w)) {
            p += 2;
            continue;
        }
        /* the run: the same charset, nothing but white space between */
        const char *end = w.end;
        bool base64 = w.enc == 'B', join = false;
        for (;;) {
            const char *r = end + strspn (end, " \t\r\n");
            if (r [0] != '=' || r [1] != '?' || !s_word_at (r, &next)
            ||  g_ascii_strcasecmp (next.charset, w.charset) != 0)
                break;
            base64 = base64 || next.enc == 'B';
            join = true;
            end = next.end;
        }
        join = join && base64;
        const char *super = s_charset_superset (w.charset);
        if (!join && !super) {
            p = end;
            continue;
        }
        rc = s_run_bytes (p, end, &bytes);
        const char *data = bytes.data ? bytes.data : "";
        size_t n = 0;
        char *utf8 = super && rc == 0 ? s_iconv_utf8 (super, data, bytes.len, &n) : NULL;
        if (!utf8 && !join) {
            p = end;        /* a byte the superset lacks: GMime reads the label */
            continue;
        }
        if (!utf8 && rc == 0)
            utf8 = s_iconv_utf8 (g_mime_charset_iconv_name (w.charset), data, bytes.len, &n);
        if (rc == 0)
            rc = cm_buf_append (&out, copied, (size_t) (p - copied));
        if (rc == 0)
            rc = utf8 ? s_q_word (&out, "UTF-8", utf8, n)
                      : s_q_word (&out, w.charset, data, bytes.len);
        free (utf8);
        copied = p = end;
    }
    cm_buf_free (&bytes);
    if (rc == 0 && copied > value)
        rc = cm_buf_append (&out, copied, strlen (copied));
    if (rc || copied == value) {
        cm_buf_free (&out);
        return NULL;
    }
    return cm_buf_take (&out, NULL);
}

/* True for a label iconv reads with glibc's UTF-7 module. */
static bool
s_is_utf7 (const char *label)
{
    const char *name = g_mime_charset_iconv_name (label);
    return name && (!g_ascii_strcasecmp (name, "UTF-7") || !g_ascii_strcasecmp (name, "UTF7")
                 || !g_ascii_strcasecmp (name, "UTF-7-IMAP"));
}

/* Appends the header line [line, line + ll) to out with each run of
   UTF-7 encoded words (white space between) respelled as one UTF-8
   word, converted by s_iconv_lossy; *hit when one was. A run is read on
   one line, as GMime would join it (a run folded over two lines becomes
   two words, a character cut by the fold a U+FFFD). GMime decodes
   encoded words while it builds the message, with no hook to stop it,
   and its converter, never reset after an illegal sequence, leaves
   glibc's UTF-7 decoder re-reading the rest of the word for each byte
   it skips: a 38 kB Subject parsed for 1.6 s, and a header section may
   have 256 kB in every part. Every other charset stays GMime's (the
   stateful ones, ISO-2022-*, UTF-16, HZ and EBCDIC with shifts, were
   measured linear there). -1 out of memory. */
static int
s_respell_utf7 (const char *line, size_t ll, cm_buf_t *out, bool *hit)
{
    char *copy = malloc (ll + 1);       /* s_word_at reads up to a NUL */
    if (!copy)
        return -1;
    memcpy (copy, line, ll);
    copy [ll] = 0;
    cm_buf_t bytes;
    cm_buf_init (&bytes, 0);
    const char *p = copy, *copied = copy, *end_of_line = copy + ll;
    int rc = 0;
    while (rc == 0 && p < end_of_line
    && (p = memmem (p, (size_t) (end_of_line - p), "=?", 2))) {
        s_word_t w, next;
        if (!s_word_at (p, &w) || !s_is_utf7 (w.charset)) {
            p += 2;
            continue;
        }
        const char *end = w.end;
        for (;;) {
            const char *r = end + strspn (end, " \t\r\n");
            if (r [0] != '=' || r [1] != '?' || !s_word_at (r, &next) || !s_is_utf7 (next.charset))
                break;
            end = next.end;
        }
        rc = s_run_bytes (p, end, &bytes);
        size_t n = 0;
        char *utf8 = rc == 0 ? s_iconv_lossy ("UTF-7", bytes.data ? bytes.data : "", bytes.len, &n)
                             : NULL;
        if (!utf8) {
            p = end;        /* an iconv without UTF-7 (or no memory): GMime's */
            continue;
        }
        rc = cm_buf_append (out, copied, (size_t) (p - copied));
        if (rc == 0)
            rc = s_q_word (out, "UTF-8", utf8, n);
        free (utf8);
        copied = p = end;
        *hit = true;
    }
    if (rc == 0)
        rc = cm_buf_append (out, copied, (size_t) (end_of_line - copied));
    cm_buf_free (&bytes);
    free (copy);
    return rc;
}

#define S_META_SCAN 4096        /* HTML bytes searched for a <meta> charset */

/* The charset an HTML page names in a <meta> tag in its first
   S_META_SCAN bytes, <meta charset=X> or <meta http-equiv=Content-Type
   content="text/html; charset=X"> (any case, quotes optional), copied
   to label; false when there is none. UTF-16 is passed over: a page read
   byte by byte is not UTF-16, whatever it says (HTML's own rule). */
static bool
s_meta_charset (const unsigned char *data, size_t size, char *label, size_t labellen)
{
    const char *p = (const char *) data;
    size_t len = size < S_META_SCAN ? size : S_META_SCAN;
    for (size_t i = 0; i + 5 < len; i++) {
        if (p [i] != '<' || g_ascii_strncasecmp (p + i + 1, "meta", 4) != 0
        ||  !p [i + 5] || !strchr (" \t\r\n/", p [i + 5]))
            continue;
        size_t end = i + 5;
        while (end < len && p [end] != '>' && p [end] != '<')
            end++;
        for (size_t k = i + 5; k + 7 < end; k++) {
            if (g_ascii_strncasecmp (p + k, "charset", 7) != 0)
                continue;
            size_t v = k + 7;
            while (v < end && (p [v] == ' ' || p [v] == '\t'))
                v++;
            if (v >= end || p [v] != '=')
                continue;
            v++;
            while (v < end && (p [v] == ' ' || p [v] == '\t' || p [v] == '"' || p [v] == '\''))
                v++;
            size_t n = 0;
            while (v + n < end && n < labellen - 1
            && (g_ascii_isalnum (p [v + n]) || (p [v + n] && strchr ("-_.:", p [v + n]))))
                n++;
            if (n == 0 || n == labellen - 1)
                return false;
            memcpy (label, p + v, n);
            label [n] = 0;
            return g_ascii_strncasecmp (label, "utf-16", 6) != 0;
        }
        i = end > i ? end - 1 : i;
    }
    return false;
}

/* Text labelled UTF-8 that is not valid UTF-8 throughout: each valid
   sequence is kept, and each byte that is not part of one is read as
   windows-1252 (U+FFFD where that has no character). A disclaimer a
   gateway appends in Latin-1 to UTF-8 mail ("Avis l\xE9gal") then spoils
   one word, not the whole text, as reading all of it as windows-1252
   did. malloc'd, *outlen bytes plus a NUL; NULL out of memory. */
static char *
s_utf8_repair (const unsigned char *data, size_t size, size_t *outlen)
{
    char *out = size < (SIZE_MAX - 1) / 3 ? malloc (size * 3 + 1) : NULL;
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < size;) {
        if (data [i] < 0x80) {
            out [n++] = (char) data [i++];
            continue;
        }
        gunichar c = g_utf8_get_char_validated ((const char *) data + i, (gssize) (size - i));
        if (c != (gunichar) -1 && c != (gunichar) -2) {
            size_t len = (size_t) g_utf8_skip [data [i]];
            memcpy (out + n, data + i, len);
            n += len;
            i += len;
            continue;
        }
        c = cm_cp1252_char (data [i]);
        n += (size_t) g_unichar_to_utf8 (c ? c : 0xFFFD, out + n);
        i++;
    }
    out [n] = 0;
    *outlen = n;
    return out;
}

/* Text of a text part's decoded bytes in UTF-8, by its charset (or the
   superset senders mean by it). HTML without a charset parameter that
   is not UTF-8 is read in the charset its <meta> names. */
static char *
s_text_utf8 (s_ctx_t *ctx, GMimeObject *part, const unsigned char *data, size_t size,
             bool html)
{
    const char *charset = g_mime_object_get_content_type_parameter (part, "charset");
    char meta [48];
    if (!charset && html && !s_valid_utf8 ((const char *) data, size)
    && s_meta_charset (data, size, meta, sizeof meta))
        charset = meta;
    const char *canon = charset ? g_mime_charset_canon_name (charset) : NULL;
    bool is_utf8 = !canon || !g_ascii_strcasecmp (canon, "utf-8")
                || !g_ascii_strcasecmp (canon, "us-ascii")
                || !g_ascii_strcasecmp (canon, "ascii");
    if (is_utf8 && s_valid_utf8 ((const char *) data, size))
        return s_clean ((const char *) data, size, false);
    size_t n = 0;
    if (canon && !g_ascii_strcasecmp (canon, "utf-8")) {
        char *repaired = s_utf8_repair (data, size, &n);
        char *text = repaired ? s_clean (repaired, n, false) : NULL;
        free (repaired);
        return text;
    }
    const char *super = is_utf8 ? NULL : s_charset_superset (charset);
    char *converted = super ? s_iconv_utf8 (super, (const char *) data, size, &n) : NULL;
    if (converted) {
        char *text = s_clean (converted, n, false);
        free (converted);
        return text;
    }
    converted = is_utf8 ? NULL : s_iconv_lossy (charset, (const char *) data, size, &n);
    if (converted) {
        char *text = s_clean (converted, n, false);
        free (converted);
        return text;
    }
    /* Unknown charset or broken UTF-8: GMime's fallback charsets guess.
       NUL bytes go first so the C string it returns is the whole text. */
    char *copy = malloc (size + 1);
    if (!copy)
        return NULL;
    n = 0;
    for (size_t i = 0; i < size; i++)
        if (data [i])
            copy [n++] = (char) data [i];
    copy [n] = 0;
    char *decoded = g_mime_utils_decode_8bit (ctx->options, copy, n);
    free (copy);
    char *text = s_clean_str (decoded, false);
    g_free (decoded);
    return text;
}

/* A format=flowed text (RFC 3676) with its soft line breaks undone:
   lines ending in a space join the next line of the same quote depth
   into one, with delsp=yes that space is deleted (it was only the break;
   clients writing scripts without spaces break inside words). Quoted
   lines come out as ">> text", space-stuffing is removed, and the
   signature separator "-- " and a change of quote depth end a
   paragraph. Each paragraph keeps the line end (LF or CRLF) of its last
   line. One pass. NULL out of memory. */
static char *
s_unflow (const char *text, bool delsp)
{
    cm_buf_t b;
    cm_buf_init (&b, 0);
    size_t len = strlen (text);
    if (cm_buf_reserve (&b, len))
        return NULL;
    b.data [0] = 0;
    const char *p = text, *end = text + len;
    bool open = false;          /* a paragraph of flowed lines goes on */
    bool open_crlf = false;     /* its lines ended in CRLF */
    int open_depth = 0;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr (p, '\n', (size_t) (end - p));
        const char *next = nl ? nl + 1 : end;
        bool crlf = nl && nl > p && nl [-1] == '\r';
        const char *e = nl ? nl - crlf : end;
        const char *s = p;
        while (s < e && *s == '>')
            s++;
        int depth = (int) (s - p);
        if (s < e && *s == ' ')
            s++;                /* space-stuffing (RFC 3676 4.4) */
        bool sig = e - s == 3 && memcmp (s, "-- ", 3) == 0;
        bool flowed = !sig && e > s && e [-1] == ' ';
        if (open && (depth != open_depth || sig)) {
            /* improperly flowed: the paragraph ends where it stands */
            rc = cm_buf_append (&b, open_crlf ? "\r\n" : "\n", open_crlf ? 2 : 1);
            open = false;
        }
        if (!open && depth && rc == 0) {
            for (int k = 0; k < depth && rc == 0; k++)
                rc = cm_buf_append (&b, ">", 1);
            if (s < e && rc == 0)
                rc = cm_buf_append (&b, " ", 1);
        }
        const char *ce = flowed && delsp ? e - 1 : e;
        if (rc == 0 && ce > s)
            rc = cm_buf_append (&b, s, (size_t) (ce - s));
        if (flowed) {
            open = true;
            open_depth = depth;
            open_crlf = crlf;
        }
        else {
            open = false;
            if (nl && rc == 0)
                rc = cm_buf_append (&b, crlf ? "\r\n" : "\n", crlf ? 2 : 1);
        }
        p = next;
    }
    if (rc == 0 && open && p > text && p [-1] == '\n')
        rc = cm_buf_append (&b, open_crlf ? "\r\n" : "\n", open_crlf ? 2 : 1);
    if (rc) {
        cm_buf_free (&b);
        return NULL;
    }
    return cm_buf_take (&b, NULL);
}

/* A text/plain part sent format=flowed, and with delsp=yes. */
static bool
s_is_flowed (GMimeObject *part, bool *delsp)
{
    const char *format = g_mime_object_get_content_type_parameter (part, "format");
    const char *del = g_mime_object_get_content_type_parameter (part, "delsp");
    *delsp = del && !g_ascii_strcasecmp (del, "yes");
    return format && !g_ascii_strcasecmp (format, "flowed");
}

static char *
s_mime_type (GMimeObject *object)
{
    GMimeContentType *ct = g_mime_object_get_content_type (object);
    const char *type = ct ? g_mime_content_type_get_media_type (ct) : NULL;
    const char *sub = ct ? g_mime_content_type_get_media_subtype (ct) : NULL;
    char buf [256];
    snprintf (buf, sizeof buf, "%s/%s", type && *type ? type : "application",
              sub && *sub ? sub : "octet-stream");
    char *clean = s_clean_trim (buf);
    s_lower (clean);
    return clean;
}

/* Sum of header bytes of an object (names + raw values). */
static size_t
s_header_bytes (GMimeObject *object)
{
    GMimeHeaderList *list = g_mime_object_get_header_list (object);
    size_t total = 0;
    int n = list ? g_mime_header_list_get_count (list) : 0;
    for (int i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at (list, i);
        const char *name = g_mime_header_get_name (h);
        const char *raw = g_mime_header_get_raw_value (h);
        total += (name ? strlen (name) : 0) + (raw ? strlen (raw) : 0) + 2;
    }
    return total;
}

/* Raw value of header field i of list when it is called name, else NULL. */
static const char *
s_field_raw (GMimeHeaderList *list, int i, const char *name)
{
    GMimeHeader *h = g_mime_header_list_get_header_at (list, i);
    const char *hn = h ? g_mime_header_get_name (h) : NULL;
    return hn && !g_ascii_strcasecmp (hn, name) ? g_mime_header_get_raw_value (h) : NULL;
}

/* Raw value of the last header field called name (the one GMime's
   reading of Subject, Content-Type and Content-Disposition keeps). */
static const char *
s_last_raw (GMimeObject *object, const char *name)
{
    GMimeHeaderList *list = g_mime_object_get_header_list (object);
    const char *raw = NULL;
    int n = list ? g_mime_header_list_get_count (list) : 0;
    for (int i = 0; i < n; i++) {
        const char *v = s_field_raw (list, i, name);
        if (v)
            raw = v;
    }
    return raw;
}

/* The options to decode one raw header value with. GMime tries its
   fallback charsets word by word, and a Latin-1 word can fit GBK or
   Shift_JIS ("f\xFCr" is a GBK character after the f): so a value with
   8-bit bytes that are not UTF-8 is read in one charset, the first the
   message declares that fits the whole value, else windows-1252. */
static GMimeParserOptions *
s_options_for (s_ctx_t *ctx, const char *raw)
{
    if (!raw || ctx->ndeclared == 0)
        return ctx->options;
    size_t len = strlen (raw);
    bool eight = false;
    for (size_t i = 0; i < len && !eight; i++)
        eight = (unsigned char) raw [i] >= 0x80;
    if (!eight || s_valid_utf8 (raw, len))
        return ctx->options;
    int pick = S_DECLARED_MAX;          /* windows-1252 (a fixed place: the
                                           declared list may still grow) */
    for (int i = 0; i < ctx->ndeclared && pick == S_DECLARED_MAX; i++) {
        size_t n;
        char *converted = s_iconv_utf8 (ctx->declared [i], raw, len, &n);
        if (converted)
            pick = i;
        free (converted);
    }
    if (pick == 0)
        return ctx->options;            /* the first it tries after UTF-8 */
    if (!ctx->only [pick]) {
        GMimeParserOptions *o = g_mime_parser_options_clone (ctx->options);
        const char *list [] = { "UTF-8", pick < S_DECLARED_MAX ? ctx->declared [pick]
                                                               : "windows-1252", NULL };
        if (!o)
            return ctx->options;
        g_mime_parser_options_set_fallback_charsets (o, list);
        ctx->only [pick] = o;
    }
    return ctx->only [pick];
}

/* Clean decoded subject: GMime's, unless s_fix_words respells an encoded
   word of the (last) Subject field. NULL out of memory. */
static char *
s_subject (s_ctx_t *ctx, GMimeMessage *gm)
{
    const char *subject = g_mime_message_get_subject (gm);
    const char *raw = s_last_raw ((GMimeObject *) gm, "Subject");
    char *fixed = s_fix_words (raw);
    /* GMime's reading, unless a word needs respelling or 8-bit text one
       charset (s_options_for) */
    GMimeParserOptions *options = s_options_for (ctx, fixed ? fixed : raw);
    const char *source = fixed ? fixed : options != ctx->options ? raw : NULL;
    char *unfolded = source ? g_mime_utils_header_unfold (source) : NULL;
    char *decoded = unfolded ? g_mime_utils_header_decode_text (options, unfolded) : NULL;
    char *clean = s_clean_trim (decoded ? decoded : subject ? subject : "");
    g_free (decoded);
    g_free (unfolded);
    free (fixed);
    return clean;
}

/* Message-ID from a header section given as text ("text/rfc822-headers"). */
static char *
s_msgid_from_headers (const char *text)
{
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr (p, '\n');
        size_t n = eol ? (size_t) (eol - p) : strlen (p);
        if (n == 0 || (n == 1 && p [0] == '\r'))
            break;      /* end of the header section */
        if (n >= 11 && strncasecmp (p, "Message-ID:", 11) == 0) {
            cm_buf_t v;
            cm_buf_init (&v, 4096);
            cm_buf_append (&v, p + 11, n - 11);
            const char *q = eol ? eol + 1 : p + n;
            while (*q == ' ' || *q == '\t') {
                const char *e2 = strchr (q, '\n');
                size_t m = e2 ? (size_t) (e2 - q) : strlen (q);
                cm_buf_append (&v, q, m);
                q = e2 ? e2 + 1 : q + m;
            }
            char *id = v.data ? g_mime_utils_decode_message_id (v.data) : NULL;
            cm_buf_free (&v);
            char *clean = id ? s_clean_trim (id) : NULL;
            g_free (id);
            if (clean && !*clean) {
                free (clean);
                clean = NULL;
            }
            return clean;
        }
        p = eol ? eol + 1 : p + n;
    }
    return NULL;
}

/* First value of a "Name: value" field in a delivery-status text. */
static char *
s_dsn_field (const char *text, const char *name)
{
    size_t nl = strlen (name);
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr (p, '\n');
        size_t n = eol ? (size_t) (eol - p) : strlen (p);
        if (n > nl && strncasecmp (p, name, nl) == 0 && p [nl] == ':') {
            char *v = strndup (p + nl + 1, n - nl - 1);
            char *clean = v ? s_clean_trim (v) : NULL;
            free (v);
            return clean;
        }
        p = eol ? eol + 1 : p + n;
    }
    return NULL;
}

/* The status code of a Status field value ("5.1.1 (user unknown)" ->
   "5.1.1"); takes v; NULL when none. */
static char *
s_dsn_status_of (char *v)
{
    if (!v)
        return NULL;
    size_t k = 0;
    while (v [k] && (isdigit ((unsigned char) v [k]) || v [k] == '.'))
        k++;
    v [k] = 0;
    if (*v)
        return v;
    free (v);
    return NULL;
}

/* The lower-case word of an Action field value; takes v; NULL when none. */
static char *
s_dsn_action_of (char *v)
{
    if (!v)
        return NULL;
    size_t k = 0;
    while (v [k] && !isspace ((unsigned char) v [k]) && v [k] != '(' && v [k] != ';')
        k++;
    v [k] = 0;
    s_lower (v);
    if (*v)
        return v;
    free (v);
    return NULL;
}

/* The address of a Final-/Original-Recipient value ("rfc822; <a@b>" ->
   "a@b"); takes v; NULL when none. */
static char *
s_dsn_address_of (char *v)
{
    if (!v)
        return NULL;
    char *addr = strchr (v, ';') ? strchr (v, ';') + 1 : v;
    while (*addr == ' ' || *addr == '<')
        addr++;
    size_t k = strlen (addr);
    while (k && (addr [k - 1] == ' ' || addr [k - 1] == '>'))
        k--;
    addr [k] = 0;
    char *out = *addr ? strdup (addr) : NULL;
    free (v);
    return out;
}

#define S_DSN_RCPTS_MAX 1000    /* per-recipient blocks kept of one message */

/* Appends each per-recipient block of a delivery-status text (blocks are
   separated by blank lines; the first, per-message one names no
   recipient) to m->dsn_rcpts. */
static void
s_parse_dsn_blocks (cm_message_t *m, const char *text)
{
    const char *p = text;
    while (*p && m->ndsn_rcpts < S_DSN_RCPTS_MAX) {
        /* one block: up to a line holding only blanks, or the end */
        const char *q = p, *end = NULL;
        while (*q) {
            const char *eol = strchr (q, '\n');
            const char *r = q;
            while (r < (eol ? eol : q + strlen (q)) && (*r == ' ' || *r == '\t' || *r == '\r'))
                r++;
            if (r == (eol ? eol : q + strlen (q)) && (eol || r > q)) {
                end = q;            /* blank line */
                q = eol ? eol + 1 : r;
                break;
            }
            q = eol ? eol + 1 : q + strlen (q);
        }
        char *block = strndup (p, (size_t) ((end ? end : q) - p));
        p = q;
        if (!block)
            return;
        char *final = s_dsn_address_of (s_dsn_field (block, "Final-Recipient"));
        char *original = s_dsn_address_of (s_dsn_field (block, "Original-Recipient"));
        if (final || original) {
            cm_dsn_rcpt_t *grown = realloc (m->dsn_rcpts, (m->ndsn_rcpts + 1) * sizeof *grown);
            if (!grown) {
                free (final);
                free (original);
                free (block);
                return;
            }
            m->dsn_rcpts = grown;
            cm_dsn_rcpt_t *r = &m->dsn_rcpts [m->ndsn_rcpts++];
            r->recipient = final;
            r->original = original;
            r->action = s_dsn_action_of (s_dsn_field (block, "Action"));
            r->status = s_dsn_status_of (s_dsn_field (block, "Status"));
        }
        free (block);
    }
}

/* Fills dsn_status/action/recipient (the first of each) and the
   per-recipient blocks from a message/delivery-status body. */
static void
s_parse_dsn (cm_message_t *m, const char *text)
{
    if (!m->dsn_status)
        m->dsn_status = s_dsn_status_of (s_dsn_field (text, "Status"));
    if (!m->dsn_action)
        m->dsn_action = s_dsn_action_of (s_dsn_field (text, "Action"));
    if (!m->dsn_recipient) {
        char *v = s_dsn_field (text, "Final-Recipient");
        if (!v)
            v = s_dsn_field (text, "Original-Recipient");
        m->dsn_recipient = s_dsn_address_of (v);
    }
    s_parse_dsn_blocks (m, text);
}

/* ------------------------------------------------------------ attachments */

/* Length of the UTF-8 bidi control at p, or 0: the embeddings,
   overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the marks
   (U+200E, U+200F, U+061C). In a file name they only deceive:
   "invoice<U+202E>fdp.exe" shows as "invoiceexe.pdf". */
static size_t
s_bidi_control (const char *s)
{
    const unsigned char *p = (const unsigned char *) s;
    if (p [0] == 0xD8 && p [1] == 0x9C)
        return 2;
    if (p [0] != 0xE2 || !p [1] || !p [2])
        return 0;
    if (p [1] == 0x80 && (p [2] == 0x8E || p [2] == 0x8F || (p [2] >= 0xAA && p [2] <= 0xAE)))
        return 3;
    if (p [1] == 0x81 && p [2] >= 0xA6 && p [2] <= 0xA9)
        return 3;
    return 0;
}

/* A base name: UTF-8, no path, no controls (bidi ones included),
   <= 255 bytes, or NULL. */
static char *
s_sanitise_filename (const char *name)
{
    if (!name)
        return NULL;
    char *clean = s_clean_str (name, false);
    if (!clean)
        return NULL;
    /* keep what follows the last path separator */
    char *base = clean;
    for (char *p = clean; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;
    /* drop a drive letter ("C:") and control characters; other
       characters (shell, SQL, HTML metacharacters) are kept verbatim: the
       name is evidence, it is only stored and shown, never used as a path */
    if (isalpha ((unsigned char) base [0]) && base [1] == ':')
        base += 2;
    char *w = clean;
    for (char *p = base; *p; p++) {
        unsigned char c = (unsigned char) *p;
        if (c < 0x20 || c == 0x7f)
            continue;
        if (c == 0xC2 && (unsigned char) p [1] >= 0x80 && (unsigned char) p [1] <= 0x9F) {
            p++;    /* C1 control */
            continue;
        }
        size_t bidi = s_bidi_control (p);
        if (bidi) {
            p += bidi - 1;
            continue;
        }
        *w++ = *p;
    }
    *w = 0;
    /* no leading dots or blanks ("..", ".hidden"), no trailing blanks/dots */
    char *start = clean;
    while (*start == '.' || *start == ' ')
        start++;
    size_t n = strlen (start);
    while (n && (start [n - 1] == ' ' || start [n - 1] == '.'))
        n--;
    memmove (clean, start, n);
    clean [n] = 0;
    if (n > S_MAX_FILENAME) {
        /* keep a short extension, cut the stem on a UTF-8 boundary */
        const char *dot = strrchr (clean, '.');
        size_t ext = dot && strlen (dot) <= 16 ? strlen (dot) : 0;
        size_t keep = s_utf8_floor (clean, S_MAX_FILENAME - ext);
        memmove (clean + keep, clean + n - ext, ext);
        clean [keep + ext] = 0;
    }
    if (!*clean) {
        free (clean);
        return NULL;
    }
    return clean;
}

/* File name extensions of the types parts arrive in; the first of a
   type names a nameless part. */
static const struct { const char *type, *ext; } s_ext_map [] = {
    { "message/rfc822", ".eml" }, { "message/global", ".eml" },
    { "text/plain", ".txt" }, { "text/html", ".html" },
    { "text/calendar", ".ics" }, { "text/rfc822-headers", ".txt" },
    { "message/delivery-status", ".txt" },
    { "image/png", ".png" }, { "image/jpeg", ".jpg" },
    { "image/gif", ".gif" }, { "application/pdf", ".pdf" },
    { "application/pkcs7-signature", ".p7s" },
    { "application/x-pkcs7-signature", ".p7s" },
    { "application/pkcs7-mime", ".p7m" },
    { "application/x-pkcs7-mime", ".p7m" },
    { "application/pgp-signature", ".asc" },
    { "application/pgp-encrypted", ".asc" },
    { "application/ms-tnef", ".dat" }, { NULL, NULL } };

static const char *
s_extension_for (const char *type)
{
    for (int i = 0; s_ext_map [i].type; i++)
        if (strcmp (type, s_ext_map [i].type) == 0)
            return s_ext_map [i].ext;
    return ".bin";
}

/* Content type of a file known only by its name (the file inside a
   signed .p7m, a file uuencoded in text), by its extension; application/octet-stream when the
   extension says nothing. Not s_extension_for's table read backwards:
   that would make any ".dat" TNEF and any ".asc" a PGP signature. */
static const char *
s_type_for_name (const char *name)
{
    static const struct { const char *ext, *type; } map [] = {
        { ".pdf", "application/pdf" }, { ".xml", "application/xml" },
        { ".txt", "text/plain" }, { ".csv", "text/csv" },
        { ".htm", "text/html" }, { ".html", "text/html" },
        { ".rtf", "application/rtf" }, { ".json", "application/json" },
        { ".doc", "application/msword" }, { ".xls", "application/vnd.ms-excel" },
        { ".ppt", "application/vnd.ms-powerpoint" },
        { ".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
        { ".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
        { ".pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation" },
        { ".odt", "application/vnd.oasis.opendocument.text" },
        { ".ods", "application/vnd.oasis.opendocument.spreadsheet" },
        { ".zip", "application/zip" }, { ".7z", "application/x-7z-compressed" },
        { ".rar", "application/vnd.rar" }, { ".exe", "application/x-msdownload" },
        { ".png", "image/png" }, { ".jpg", "image/jpeg" }, { ".jpeg", "image/jpeg" },
        { ".gif", "image/gif" }, { ".tif", "image/tiff" }, { ".tiff", "image/tiff" },
        { ".eml", "message/rfc822" }, { ".ics", "text/calendar" },
        { ".p7m", "application/pkcs7-mime" }, { ".p7s", "application/pkcs7-signature" },
        { NULL, NULL } };
    const char *dot = name ? strrchr (name, '.') : NULL;
    for (int i = 0; dot && map [i].ext; i++)
        if (strcasecmp (dot, map [i].ext) == 0)
            return map [i].type;
    return "application/octet-stream";
}

/* The decoded bytes a message may hold in all (s_charge). */
static size_t
s_budget (const s_ctx_t *ctx)
{
    return ctx->lim.max_size > SIZE_MAX / S_BYTES_FACTOR
         ? SIZE_MAX : ctx->lim.max_size * S_BYTES_FACTOR;
}

/* Counts size decoded bytes against the message's budget; false (and
   ctx->failed) when they go over it. Attached messages repeat their inner
   attachments' bytes, and signed data its content, so nesting could
   multiply memory; a message may decode to S_BYTES_FACTOR times the raw
   size limit in all. */
static bool
s_charge (s_ctx_t *ctx, size_t size)
{
    size_t budget = s_budget (ctx);
    ctx->bytes = size > SIZE_MAX - ctx->bytes ? SIZE_MAX : ctx->bytes + size;
    if (ctx->bytes <= budget)
        return true;
    s_fail (ctx, "attachments decode to more than %zu bytes", budget);
    return false;
}

static cm_attachment_t *
s_append_attachment (cm_message_t *m, GMimeObject *object, char *filename,
                     unsigned char *data, size_t size);

/* Adds an attachment; takes ownership of data and filename (may be NULL).
   object NULL: a file found in text, typed by its name's extension.
   NULL when out of memory or over the decoded-bytes budget (ctx->failed). */
static cm_attachment_t *
s_add_attachment (s_ctx_t *ctx, cm_message_t *m, GMimeObject *object, char *filename,
                  unsigned char *data, size_t size)
{
    if (!s_charge (ctx, size)) {
        free (filename);
        free (data);
        return NULL;
    }
    return s_append_attachment (m, object, filename, data, size);
}

/* s_add_attachment without the charge: for files whose count and bytes
   have a budget of their own (s_take_tnef). NULL out of memory. */
static cm_attachment_t *
s_append_attachment (cm_message_t *m, GMimeObject *object, char *filename,
                     unsigned char *data, size_t size)
{
    cm_attachment_t *grown = realloc (m->attachments,
                                      (m->nattachments + 1) * sizeof *grown);
    if (!grown) {
        free (filename);
        free (data);
        return NULL;
    }
    m->attachments = grown;
    cm_attachment_t *a = &grown [m->nattachments++];
    memset (a, 0, sizeof *a);
    a->nested_index = -1;
    a->parent_index = -1;
    a->data = data;
    a->size = size;
    a->content_type = object ? s_mime_type (object) : strdup (s_type_for_name (filename));
    if (!filename) {
        char buf [64];
        snprintf (buf, sizeof buf, "attachment-%zu%s", m->nattachments,
                  s_extension_for (a->content_type ? a->content_type : ""));
        filename = strdup (buf);
    }
    a->filename = filename;
    const char *cid = object ? g_mime_object_get_content_id (object) : NULL;
    if (cid && *cid)
        a->content_id = s_clean_trim (cid);
    const char *disp = object ? g_mime_object_get_disposition (object) : NULL;
    bool disp_inline = disp && !g_ascii_strcasecmp (disp, "inline");
    bool disp_attach = disp && !g_ascii_strcasecmp (disp, "attachment");
    a->is_inline = a->content_id && (disp_inline
                   || (!disp_attach && a->content_type
                       && strncmp (a->content_type, "image/", 6) == 0));
    unsigned char md [EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest (data, size, md, &mdlen, EVP_sha256 (), NULL) == 1 && mdlen == 32)
        for (unsigned int i = 0; i < 32; i++)
            snprintf (a->sha256 + 2 * i, 3, "%02x", md [i]);
    if (!a->content_type || !a->filename)
        return NULL;
    return a;
}

/* RFC 2231 parameter values name their charset (filename*=iso-8859-1''
   %80uro.txt; a continued one in its first section, filename*0*=), and
   GMime decodes them under that label: the Euro sign of Outlook's
   "iso-8859-1" comes out as a C1 control, a CP932-only character of
   "shift_jis" not at all. A copy of the raw field value with each such
   label replaced by its superset (s_charset_superset), as encoded words
   are read; NULL when no label has one. Quoted strings are passed over;
   the value itself may be quoted. */
static char *
s_fix_2231 (const char *value)
{
    if (!value || !strchr (value, '\''))
        return NULL;
    cm_buf_t out;
    cm_buf_init (&out, 0);
    const char *p = value, *copied = value;
    int rc = 0;
    while (rc == 0 && *p) {
        if (*p == '"') {            /* a quoted string: no parameter name in it */
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p [1])
                    p++;
            if (*p)
                p++;
            continue;
        }
        if (*p != '*' || p == value || !(isalnum ((unsigned char) p [-1]) || strchr ("-_.", p [-1]))) {
            p++;
            continue;
        }
        /* name*= or name*0*= (sections after the first carry no charset) */
        const char *q = p + 1;
        if (q [0] == '0' && q [1] == '*')
            q += 2;
        q += strspn (q, " \t\r\n");
        if (*q != '=') {
            p++;
            continue;
        }
        q++;
        q += strspn (q, " \t\r\n");
        bool quoted = *q == '"';
        const char *label = quoted ? q + 1 : q;
        size_t n = strspn (label, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:");
        p = label + n;
        char charset [65];
        const char *super = NULL;
        if (n > 0 && n < sizeof charset && *p == '\'') {
            memcpy (charset, label, n);
            charset [n] = 0;
            super = s_charset_superset (charset);
        }
        if (super) {
            rc = cm_buf_append (&out, copied, (size_t) (label - copied));
            if (rc == 0)
                rc = cm_buf_append (&out, super, strlen (super));
            copied = p;
        }
        if (quoted) {   /* go on after the quoted value */
            for (; *p && *p != '"'; p++)
                if (*p == '\\' && p [1])
                    p++;
            if (*p)
                p++;
        }
    }
    if (rc == 0 && copied > value)
        rc = cm_buf_append (&out, copied, strlen (copied));
    if (rc || copied == value) {
        cm_buf_free (&out);
        return NULL;
    }
    return cm_buf_take (&out, NULL);
}

/* Raw file name of a part as GMime reads it: the Content-Disposition
   filename, else the Content-Type name (GMime's order), each read again
   from its raw field when s_fix_words respells an encoded word in it
   or, with supersets, s_fix_2231 a charset label (*fixed). NULL when
   there is none; not yet valid UTF-8 when a byte did not fit. */
static char *
s_filename_raw (s_ctx_t *ctx, GMimeObject *object, bool supersets, bool *fixed)
{
    const char *fields [2] = { "Content-Disposition", "Content-Type" };
    char *raw [2];
    for (int i = 0; i < 2; i++) {
        const char *field = s_last_raw (object, fields [i]);
        raw [i] = s_fix_words (field);
        char *charsets = supersets ? s_fix_2231 (raw [i] ? raw [i] : field) : NULL;
        if (charsets) {
            *fixed = true;
            free (raw [i]);
            raw [i] = charsets;
        }
    }
    GMimeContentDisposition *disp = raw [0]
        ? g_mime_content_disposition_parse (s_options_for (ctx, raw [0]), raw [0]) : NULL;
    GMimeContentType *type = raw [1]
        ? g_mime_content_type_parse (s_options_for (ctx, raw [1]), raw [1]) : NULL;
    const char *name = disp ? g_mime_content_disposition_get_parameter (disp, "filename")
                     : g_mime_object_get_content_disposition_parameter (object, "filename");
    if (!name)
        name = type ? g_mime_content_type_get_parameter (type, "name")
             : g_mime_object_get_content_type_parameter (object, "name");
    char *copy = name ? strdup (name) : NULL;
    if (type)
        g_object_unref (type);
    if (disp)
        g_object_unref (disp);
    free (raw [1]);
    free (raw [0]);
    return copy;
}

/* Sanitised file name of a part (s_filename_raw). An RFC 2231 value is
   read in its charset's superset; when a byte does not fit that (GMime
   then keeps the bytes), in the charset it names. */
static char *
s_part_filename (s_ctx_t *ctx, GMimeObject *object)
{
    bool fixed = false;
    char *name = s_filename_raw (ctx, object, true, &fixed);
    if (name && fixed && !s_valid_utf8 (name, strlen (name))) {
        free (name);
        name = s_filename_raw (ctx, object, false, &fixed);
    }
    char *clean = s_sanitise_filename (name);
    free (name);
    return clean;
}

/* Files found uuencoded in one text body, waiting to be taken
   (s_take_uu_files) once the text holding them is in the body. */
typedef struct {
    char *name;           /* sanitised, never NULL */
    unsigned char *data;
    size_t size;
} s_uu_file_t;

typedef struct {
    s_uu_file_t *files;
    size_t n;
} s_uu_files_t;

static void
s_uu_files_free (s_uu_files_t *uu)
{
    for (size_t i = 0; i < uu->n; i++) {
        free (uu->files [i].name);
        free (uu->files [i].data);
    }
    free (uu->files);
    uu->files = NULL;
    uu->n = 0;
}

/* Takes the files uuencoded in a text body (parser/uuencode.c) out of
   *text into *uu, named from their begin lines. Each counts as a MIME
   part here, its bytes against the decoded-bytes budget when it is
   taken; a file sits one level below its text part, but only a file
   that is opened (an .eml, a .p7m: s_take_file) can go over the depth
   limit, as the same file attached in MIME would: a plain file at the
   limit is kept. In *text each block becomes one line
   "[attachment: NAME]", NAME the attachment's name (a name that cleans
   to nothing gets the one s_append_attachment would give it). -1 when a
   limit trips or memory runs out (ctx->failed). */
static int
s_take_uuencoded (s_ctx_t *ctx, cm_message_t *m, char **text, s_uu_files_t *uu)
{
    size_t len = strlen (*text), pos = 0, copied = 0;
    cm_buf_t out;
    cm_buf_init (&out, 0);
    cm_uu_block_t block;
    int found;
    while ((found = cm_uu_next (*text, len, &pos, &block)) == 1) {
        if (++ctx->parts > ctx->lim.max_parts) {
            cm_uu_block_free (&block);
            s_fail (ctx, "more than %d MIME parts and uuencoded files", ctx->lim.max_parts);
            goto fail;
        }
        char *name = s_sanitise_filename (block.name);
        if (!name && asprintf (&name, "attachment-%zu.bin", m->nattachments + uu->n + 1) < 0)
            name = NULL;
        s_uu_file_t *grown = name ? realloc (uu->files, (uu->n + 1) * sizeof *grown) : NULL;
        if (!grown) {
            free (name);
            cm_uu_block_free (&block);
            goto oom;
        }
        uu->files = grown;
        grown [uu->n++] = (s_uu_file_t) { name, block.data, block.size };
        block.data = NULL;
        cm_uu_block_free (&block);
        const char *eol = block.end >= 2 && (*text) [block.end - 1] == '\n'
                       && (*text) [block.end - 2] == '\r' ? "\r\n" : "\n";
        if (cm_buf_append (&out, *text + copied, block.start - copied)
        ||  cm_buf_printf (&out, "[attachment: %s]%s", name, eol))
            goto oom;
        copied = block.end;
    }
    if (found < 0)
        goto oom;
    if (copied == 0) {
        cm_buf_free (&out);
        return 0;       /* no block: the text stays as it is */
    }
    if (cm_buf_append (&out, *text + copied, len - copied))
        goto oom;
    free (*text);
    *text = cm_buf_take (&out, NULL);
    return 0;
oom:
    s_fail (ctx, "out of memory while decoding a uuencoded file");
fail:
    cm_buf_free (&out);
    return -1;
}

/* Reads the event of a text/calendar part (parser/calendar.c) into
   *calendar (left NULL when it has none), the description of a message
   with no text of its own: folds joined on the bytes, then read in the
   part's charset. -1 out of memory (ctx->failed). */
static int
s_read_calendar (s_ctx_t *ctx, char **calendar, GMimeObject *object,
                 const unsigned char *data, size_t size)
{
    size_t n = size < CM_CALENDAR_MAX_BYTES ? size : CM_CALENDAR_MAX_BYTES;
    char *bytes = malloc (n ? n : 1);
    char *text = NULL, *event = NULL;
    if (bytes) {
        memcpy (bytes, data, n);
        n = cm_calendar_unfold (bytes, n);
        text = s_text_utf8 (ctx, object, (const unsigned char *) bytes, n, false);
    }
    const char *method = g_mime_object_get_content_type_parameter (object, "method");
    int rc = text ? cm_calendar_text (text, strlen (text), method, &event) : -1;
    if (event) {
        *calendar = s_clean_str (event, false);
        rc = *calendar ? 0 : -1;
    }
    free (event);
    free (text);
    free (bytes);
    if (rc)
        s_fail (ctx, "out of memory while reading a calendar invitation");
    return rc;
}

/* ------------------------------------------------------------ the walk */

static cm_message_t *s_parse_raw (s_ctx_t *ctx, const char *raw, size_t len,
                                  int base, char *soft, size_t softlen);
static cm_message_t *s_convert (s_ctx_t *ctx, GMimeMessage *gm, int base);
static char *s_fix_bare_cr (const char *raw, size_t len, bool *had);

/* Per-message walk state. */
typedef struct {
    bool report_dsn;      /* multipart/report; report-type=delivery-status */
    bool dsn_part;        /* a message/delivery-status part was seen */
    bool report_mdn;      /* multipart/report; report-type=disposition-notification */
    cm_buf_t text, html;  /* body parts so far (appending stays linear) */
    bool have_text, have_html;
    char *calendar;       /* the first text/calendar event as text, or NULL */
    char *tnef_body;      /* the first winmail.dat's text body as UTF-8, or NULL */
} s_walk_t;

/* Per multipart/alternative: which bodies it already gave. */
typedef struct {
    bool text, html;
} s_alt_t;

static int
s_append_body (cm_buf_t *body, bool *have, const char *text)
{
    if (*have && cm_buf_append (body, "\n", 1))
        return -1;
    *have = true;
    return cm_buf_append (body, text, strlen (text));
}

/* Records an attached message: as an attachment and, within the limit,
   as msg->nested[]. inner may be NULL (then it is parsed from data). */
static int
s_add_nested (s_ctx_t *ctx, cm_message_t *m, GMimeObject *object,
              GMimeMessage *inner, unsigned char *data, size_t size,
              char *filename, int depth)
{
    if (!filename && inner) {
        char *subject = s_subject (ctx, inner);
        if (subject && *subject) {
            char buf [128];
            snprintf (buf, sizeof buf, "%.100s.eml", subject);
            filename = s_sanitise_filename (buf);
        }
        free (subject);
    }
    cm_attachment_t *a = s_add_attachment (ctx, m, object, filename, data, size);
    if (!a) {
        s_fail (ctx, "out of memory while reading an attachment");
        return -1;
    }
    if (ctx->nested >= ctx->lim.max_nested_messages) {
        char note [128];
        snprintf (note, sizeof note,
                  "attached message not read: more than %d attached messages",
                  ctx->lim.max_nested_messages);
        a->note = strdup (note);
        return 0;
    }
    ctx->nested++;
    size_t index = m->nattachments - 1;
    cm_message_t *child = NULL;
    if (inner)
        child = s_convert (ctx, inner, depth);
    else {
        char soft [256] = "";
        child = s_parse_raw (ctx, (const char *) m->attachments [index].data,
                             m->attachments [index].size, depth, soft, sizeof soft);
        if (!child && !ctx->failed) {
            char note [320];
            snprintf (note, sizeof note, "attached message not read: %s", soft);
            m->attachments [index].note = strdup (note);
            return 0;
        }
    }
    if (!child)
        return -1;
    if (s_push_ptr ((void ***) &m->nested, &m->nnested, child)) {
        cm_message_destroy (&child);
        s_fail (ctx, "out of memory while reading an attached message");
        return -1;
    }
    m->attachments [index].nested_index = (int) m->nnested - 1;
    return 0;
}

static int s_walk (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w, GMimeObject *object,
                   int depth, bool root, bool in_report, s_alt_t *alt);

/* An S/MIME application/pkcs7-mime part, also under the generic type
   some clients and gateways send it with (application/octet-stream
   named smime.p7m or any .p7m). object NULL: a file known by its name
   and bytes only (uuencoded in a text body). */
static bool
s_is_pkcs7_mime (GMimeObject *object, const char *type, const char *filename)
{
    if (strcmp (type, "application/pkcs7-mime") == 0
    ||  strcmp (type, "application/x-pkcs7-mime") == 0)
        return true;
    if (strcmp (type, "application/octet-stream") != 0)
        return false;
    const char *name = object ? g_mime_object_get_content_type_parameter (object, "name") : NULL;
    return (filename && s_ends_with_ci (filename, ".p7m"))
        || (name && s_ends_with_ci (name, ".p7m"));
}

/* Does data start like a MIME entity: a header field, or no header
   fields at all? Signed data may hold any file (a signed PDF): such
   content is not read as text. */
static bool
s_looks_like_entity (const unsigned char *data, size_t len)
{
    if (len && (data [0] == '\n' || (data [0] == '\r' && len > 1 && data [1] == '\n')))
        return true;
    size_t k = 0;
    while (k < len && k < 80 && data [k] > ' ' && data [k] < 0x7F && data [k] != ':')
        k++;
    return k > 0 && k < len && data [k] == ':';
}

/* The name of the file a .p7m signs: its own name without ".p7m"
   ("contract.pdf.p7m" -> "contract.pdf"), sanitised; NULL when the name
   is not a .p7m's or nothing is left. */
static char *
s_p7m_inner_name (const char *filename)
{
    if (!filename || !s_ends_with_ci (filename, ".p7m"))
        return NULL;
    char *stem = strndup (filename, strlen (filename) - 4);
    char *clean = stem ? s_sanitise_filename (stem) : NULL;
    free (stem);
    return clean;
}

/* Does the .p7m's inner name say it signs a file ("contract.pdf",
   "fattura.xml"), not a MIME entity ("smime")? It has a short extension,
   and not ".eml" (a signed message is read as one). A signed text file
   that opens like a header ("Subject: ...") is then still a file. */
static bool
s_names_file (const char *inner)
{
    const char *dot = inner ? strrchr (inner, '.') : NULL;
    if (!dot || dot == inner || !dot [1] || strlen (dot + 1) > 8)
        return false;
    for (const char *p = dot + 1; *p; p++)
        if (!isalnum ((unsigned char) *p))
            return false;
    return strcasecmp (dot, ".eml") != 0;
}

/* Is this DER a CMS EnvelopedData or AuthEnvelopedData (ciphertext)? */
static bool
s_cms_enveloped (const unsigned char *data, size_t len)
{
    if (len == 0 || len > LONG_MAX || data [0] != 0x30)
        return false;
    const unsigned char *p = data;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo (NULL, &p, (long) len);
    if (!cms) {
        ERR_clear_error ();
        return false;
    }
    int nid = OBJ_obj2nid (CMS_get0_type (cms));
    CMS_ContentInfo_free (cms);
    return nid == NID_pkcs7_enveloped || nid == NID_id_smime_ct_authEnvelopedData;
}

/* An extension for a signed file whose name gives none ("smime.p7m"
   holding a PDF), by the bytes it opens with; ".bin" when they say
   nothing known. */
static const char *
s_extension_by_magic (const unsigned char *data, size_t len)
{
    static const struct { const char *magic; size_t len; const char *ext; } map [] = {
        { "%PDF-", 5, ".pdf" }, { "\x89PNG\r\n\x1a\n", 8, ".png" },
        { "\xff\xd8\xff", 3, ".jpg" }, { "GIF8", 4, ".gif" },
        { "PK\x03\x04", 4, ".zip" }, { "<?xml", 5, ".xml" },
        { "{\\rtf", 5, ".rtf" }, { NULL, 0, NULL } };
    for (int i = 0; map [i].magic; i++)
        if (len >= map [i].len && memcmp (data, map [i].magic, map [i].len) == 0)
            return map [i].ext;
    return ".bin";
}

#define S_SIGNED_READ "S/MIME opaque-signed: the signed content is read from it;" \
                      " the signature is not verified"
#define S_SIGNED_KEPT "S/MIME opaque-signed content is kept as is, not unpacked"

static int s_walk_signed_data (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w,
                               GMimeObject *object, const char *filename,
                               const unsigned char *data, size_t size, int depth,
                               bool root, bool in_report, s_alt_t *alt,
                               bool *is_signed, bool *unpacked);

/* Adds the file a signed .p7m called filename holds (bytes[0..len),
   copied) as an attachment of its own at depth + 1: named after the .p7m
   without ".p7m", typed by that name, counted as a part and against the
   decoded-bytes budget. A file that is a .p7m again (x.pdf.p7m.p7m) is
   unwrapped in turn, each level one deeper; each level is added (and its
   bytes counted) before the next is decoded, so a chain of big files
   stops at the budget instead of holding every level in memory. -1 when
   a limit trips or memory runs out (ctx->failed). */
static int
s_add_signed_file (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w, GMimeObject *object,
                   const char *filename, const unsigned char *bytes, size_t len,
                   int depth, bool root, bool in_report, s_alt_t *alt)
{
    if (depth + 1 > ctx->lim.max_depth) {
        s_fail_depth (ctx);
        return -1;
    }
    if (++ctx->parts > ctx->lim.max_parts) {
        s_fail_parts (ctx);
        return -1;
    }
    char *name = s_p7m_inner_name (filename);
    if (!name) {
        char buf [64];
        snprintf (buf, sizeof buf, "attachment-%zu%s", m->nattachments + 1,
                  s_extension_by_magic (bytes, len));
        name = strdup (buf);
    }
    else if (!strchr (name, '.')) {
        /* "smime.p7m" holding a file: "smime.pdf", typed by its bytes */
        char *named = NULL;
        if (asprintf (&named, "%s%s", name, s_extension_by_magic (bytes, len)) < 0)
            named = NULL;
        free (name);
        name = named;
    }
    unsigned char *copy = name ? malloc (len + 1) : NULL;
    if (copy) {
        memcpy (copy, bytes, len);
        copy [len] = 0;
    }
    else
        free (name);
    cm_attachment_t *a = copy ? s_add_attachment (ctx, m, object, name, copy, len) : NULL;
    if (!a) {
        s_fail (ctx, "out of memory while reading S/MIME signed data");
        return -1;
    }
    /* not the .p7m part's: the file has its own type and no Content-ID */
    free (a->content_type);
    free (a->content_id);
    a->content_id = NULL;
    a->is_inline = false;
    a->content_type = strdup (s_type_for_name (a->filename));
    if (!a->content_type) {
        s_fail (ctx, "out of memory while reading S/MIME signed data");
        return -1;
    }
    if (!s_ends_with_ci (a->filename, ".p7m"))
        return 0;
    /* a and m->attachments move as attachments are added; the data not */
    size_t index = m->nattachments - 1;
    bool is_signed = false, unpacked = false;
    if (s_walk_signed_data (ctx, m, w, object, a->filename, a->data, a->size, depth + 1,
                            root, in_report, alt, &is_signed, &unpacked))
        return -1;
    if (is_signed
    &&  !(m->attachments [index].note = strdup (unpacked ? S_SIGNED_READ : S_SIGNED_KEPT))) {
        s_fail (ctx, "out of memory while reading S/MIME signed data");
        return -1;
    }
    return 0;
}

/* DER of a .p7m saved as text, as some signing tools and gateways do:
   PEM ("-----BEGIN PKCS7-----", "-----BEGIN CMS-----") or bare base64
   (of a SEQUENCE with a long length: "MI..."). malloc'd (*outlen
   bytes), or NULL when data is not such text. */
static unsigned char *
s_cms_text_der (const unsigned char *data, size_t size, size_t *outlen)
{
    const unsigned char *p = data, *end = data + size;
    while (p < end && isspace (*p))
        p++;
    if (end - p > 11 && memcmp (p, "-----BEGIN ", 11) == 0) {
        p = memchr (p, '\n', (size_t) (end - p));
        const unsigned char *stop = p ? memmem (p, (size_t) (end - p), "-----END ", 9) : NULL;
        if (!stop)
            return NULL;
        end = stop;
    }
    else
    if (end - p < 2 || p [0] != 'M' || p [1] != 'I')
        return NULL;
    for (const unsigned char *q = p; q < end; q++)
        if (cm_base64_value (*q) < 0 && *q != '=' && !isspace (*q))
            return NULL;
    unsigned char *der = malloc ((size_t) (end - p) / 4 * 3 + 3);
    if (!der)
        return NULL;
    size_t n = 0;
    unsigned int acc = 0;
    int bits = 0;
    for (; p < end && *p != '='; p++)
        if (s_base64_step (*p, &acc, &bits, der + n))
            n++;
    *outlen = n;
    return der;
}

/* A .p7m's bytes, DER or its base64 text (s_cms_text_der): enveloped
   data (s_cms_enveloped)? */
static bool
s_p7m_enveloped (const unsigned char *data, size_t size)
{
    size_t derlen = 0;
    unsigned char *der = size && data [0] != 0x30 ? s_cms_text_der (data, size, &derlen) : NULL;
    bool enveloped = der ? s_cms_enveloped (der, derlen) : s_cms_enveloped (data, size);
    free (der);
    return enveloped;
}

/* S/MIME opaque-signed data (RFC 8551 application/pkcs7-mime;
   smime-type=signed-data): a CMS SignedData structure, DER or BER, whose
   content is what was signed: the MIME entity of a signed message, or a
   file (Italian "firma digitale", e-signature tools: contract.pdf.p7m).
   When data is one, *is_signed is set and its content is read in the
   part's place (*unpacked): a MIME entity is walked at depth + 1 (its
   text joins the body, its parts the attachments), a file becomes an
   attachment of its own (s_add_signed_file). The content is a file when
   it does not open like a MIME entity, or when the part's filename says
   so (s_names_file). The pre-scan, the depth, parts and decoded-bytes
   limits apply to it as to the message's own body. The signature is not
   verified. Anything that is not CMS SignedData (garbage, enveloped
   data) leaves both false. -1 when a limit trips or memory runs out
   (ctx->failed). */
static int
s_walk_signed_data (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w,
                    GMimeObject *object, const char *filename,
                    const unsigned char *data, size_t size, int depth, bool root,
                    bool in_report, s_alt_t *alt, bool *is_signed, bool *unpacked)
{
    *is_signed = *unpacked = false;
    size_t derlen = 0;
    unsigned char *der = size && data [0] != 0x30 ? s_cms_text_der (data, size, &derlen) : NULL;
    if (der) {
        data = der;
        size = derlen;
    }
    CMS_ContentInfo *cms = NULL;
    const unsigned char *p = data;
    /* a CMS structure is a DER/BER SEQUENCE */
    if (size > 0 && size <= LONG_MAX && data [0] == 0x30)
        cms = d2i_CMS_ContentInfo (NULL, &p, (long) size);
    if (!cms) {
        ERR_clear_error ();
        free (der);
        return 0;
    }
    int rc = 0;
    bool had_cr = false;
    char *fixed = NULL;
    char *inner = NULL;
    GMimeStream *stream = NULL;
    GMimeParser *parser = NULL;
    GMimeObject *entity = NULL;
    *is_signed = OBJ_obj2nid (CMS_get0_type (cms)) == NID_pkcs7_signed;
    ASN1_OCTET_STRING **content = *is_signed ? CMS_get0_content (cms) : NULL;
    const unsigned char *bytes = content && *content ? ASN1_STRING_get0_data (*content) : NULL;
    size_t len = bytes ? (size_t) ASN1_STRING_length (*content) : 0;
    if (!bytes)
        goto done;      /* detached: nothing inside */
    if (s_cms_enveloped (bytes, len)) {
        /* encrypted, then signed (a gateway's triple wrap): the content
           is as unreadable as any ciphertext, anywhere in the tree */
        m->encrypted = true;
        goto done;
    }
    inner = s_p7m_inner_name (filename);
    if (!s_looks_like_entity (bytes, len) || s_names_file (inner)) {
        rc = s_add_signed_file (ctx, m, w, object, filename, bytes, len, depth,
                                root, in_report, alt);
        *unpacked = rc == 0;
        goto done;
    }
    rc = -1;
    if (!s_charge (ctx, len))
        goto done;
    fixed = s_fix_bare_cr ((const char *) bytes, len, &had_cr);
    if (had_cr && !fixed) {
        s_fail (ctx, "out of memory while reading S/MIME signed data");
        goto done;
    }
    if (fixed)
        bytes = (const unsigned char *) fixed;
    char *respelled = NULL;
    size_t respelled_len = 0;
    if (s_prescan (ctx, (const char *) bytes, len, depth, &respelled, &respelled_len))
        goto done;
    s_set_fallback (ctx);
    if (respelled) {
        free (fixed);
        fixed = respelled;
        bytes = (const unsigned char *) fixed;
        len = respelled_len;
    }
    stream = g_mime_stream_mem_new_with_buffer ((const char *) bytes, len);
    parser = g_mime_parser_new_with_stream (stream);
    ctx->overflow = false;
    entity = g_mime_parser_construct_part (parser, ctx->options);
    if (ctx->overflow) {
        s_fail_depth (ctx);
        goto done;
    }
    if (entity && s_walk (ctx, m, w, entity, depth + 1, root, in_report, alt))
        goto done;
    *unpacked = entity != NULL;
    rc = 0;
done:
    if (entity)
        g_object_unref (entity);
    if (parser)
        g_object_unref (parser);
    if (stream)
        g_object_unref (stream);
    free (inner);
    free (fixed);
    CMS_ContentInfo_free (cms);
    free (der);
    return rc;
}

/* 8-bit text from a TNEF stream as UTF-8: as it is when it is UTF-8,
   else in the stream's code page (attOemCodepage), else in CP1252, which
   reads every byte Outlook writes in the west; NULL out of memory. */
static char *
s_tnef_text (const char *s, size_t len, unsigned codepage)
{
    if (s_valid_utf8 (s, len))
        return s_clean (s, len, false);
    char cp [16] = "CP1252";
    if (codepage == 65001)
        return s_clean (s, len, false);   /* broken UTF-8: s_clean mends it */
    if (codepage && codepage != 20127 && codepage < 100000)
        snprintf (cp, sizeof cp, "CP%u", codepage);
    size_t n = 0;
    char *utf8 = s_iconv_utf8 (cp, s, len, &n);
    if (!utf8 && strcmp (cp, "CP1252") != 0)
        utf8 = s_iconv_utf8 ("CP1252", s, len, &n);
    if (!utf8)
        return s_clean (s, len, false);   /* the bytes CP1252 leaves out */
    char *text = s_clean (utf8, n, false);
    free (utf8);
    return text;
}

/* Reads a TNEF stream within what is left of the message's TNEF
   allowance: as many files and as many bytes in all the message's TNEF
   streams (attached Outlook messages' included) as the message may have
   parts and decoded bytes (their bytes are inside the stream, already
   counted once). So the files do not count as MIME parts or against the
   decoded-bytes budget, where they could push a later part of the
   message over a limit and reject it. What was read (files, RTF body)
   counts at once, before an attached Outlook message among the files is
   read in turn: counted only as each file was taken, a level's later
   files and its RTF body were left out of the deeper levels' allowance.
   -1 out of memory. */
static int
s_tnef_read (s_ctx_t *ctx, const unsigned char *bytes, size_t size, cm_tnef_t *t)
{
    size_t max_files = (size_t) ctx->lim.max_parts, budget = s_budget (ctx);
    size_t files = ctx->tnef_files < max_files ? max_files - ctx->tnef_files : 0;
    if (cm_tnef_read (bytes, size, files,
                      ctx->tnef_bytes < budget ? budget - ctx->tnef_bytes : 0, t))
        return -1;
    /* within what was left: cm_tnef_read */
    ctx->tnef_files += t->nfiles;
    ctx->tnef_bytes += t->rtf_len;
    for (size_t i = 0; i < t->nfiles; i++)
        ctx->tnef_bytes += t->files [i].size;
    if (strncmp (t->problem, "more than ", 10) == 0)
        snprintf (t->problem, sizeof t->problem, "more than %zu files in the message's TNEF"
                  " attachments", max_files);
    return 0;
}

/* cm_rtf_text's decoder: a converter per code page, opened once for
   the RTF body. An RTF document may change code page or put a \uN, a
   \par or a \~ between any two 8-bit characters, and each such run
   converted by s_tnef_text (iconv_open, the charset pinned, iconv_close)
   cost about 2 us: a megabyte of message, eight of RTF, parsed for two
   seconds. S_RTF_CPS code pages at most; one beyond them, or one iconv
   lacks, is read as CP1252. \'hh is a byte in the code page: no run is
   taken for UTF-8. */
#define S_RTF_CPS 16
typedef struct {
    struct { unsigned cp; iconv_t cd; } cps [S_RTF_CPS];
    int n;
} s_rtf_dec_t;

static iconv_t
s_rtf_cd (s_rtf_dec_t *d, unsigned cp)
{
    if (!cp || cp == 20127 || cp >= 100000)
        cp = 1252;
    for (int i = 0; i < d->n; i++)
        if (d->cps [i].cp == cp)
            return d->cps [i].cd != (iconv_t) -1 || cp == 1252 ? d->cps [i].cd : s_rtf_cd (d, 1252);
    if (d->n == S_RTF_CPS)
        return cp == 1252 ? (iconv_t) -1 : s_rtf_cd (d, 1252);
    char name [16];
    snprintf (name, sizeof name, "CP%u", cp);
    if (cp == 10000)
        snprintf (name, sizeof name, "MACINTOSH");  /* \mac, \fcharset77: iconv lacks CP10000 */
    d->cps [d->n].cp = cp;
    d->cps [d->n].cd = iconv_open ("UTF-8", name);
    d->n++;
    return d->cps [d->n - 1].cd != (iconv_t) -1 || cp == 1252 ? d->cps [d->n - 1].cd
                                                             : s_rtf_cd (d, 1252);
}

static char *
s_rtf_decode (void *state, const char *bytes, size_t len, unsigned codepage)
{
    s_rtf_dec_t *d = state;
    if (codepage == 65001)
        return s_clean (bytes, len, false);     /* broken UTF-8: s_clean mends it */
    iconv_t cd = s_rtf_cd (d, codepage);
    if (cd == (iconv_t) -1)
        return s_clean (bytes, len, false);
    /* no code page needs more than 3 bytes of UTF-8 per input byte */
    size_t cap = len > (SIZE_MAX - 16) / 3 ? 0 : len * 3 + 16;
    char *out = cap ? malloc (cap) : NULL;
    if (!out)
        return NULL;
    char *in = (char *) bytes, *op = out;
    size_t inleft = len, outleft = cap - 1;
    iconv (cd, NULL, NULL, NULL, NULL);
    while (inleft && iconv (cd, &in, &inleft, &op, &outleft) == (size_t) -1 && errno != E2BIG) {
        in++;       /* a byte the code page lacks, or a character cut: dropped */
        inleft--;
        iconv (cd, NULL, NULL, NULL, NULL);
    }
    *op = 0;
    char *text = s_clean (out, (size_t) (op - out), false);
    free (out);
    return text;
}

static void
s_rtf_dec_free (s_rtf_dec_t *d)
{
    for (int i = 0; i < d->n; i++)
        if (d->cps [i].cd != (iconv_t) -1)
            iconv_close (d->cps [i].cd);
    d->n = 0;
}

/* The text body of a TNEF stream as UTF-8: attBody or PR_BODY, else the
   text of the RTF body (parser/rtf.c; encapsulated HTML through
   cm_html_to_text), else NULL; *oom when memory ran out. The text of
   the message's RTF bodies (attached Outlook messages' included) stops
   at the message's size limit in all: it counts against no other
   budget, and \'hh or a stray 8-bit byte gives up to three bytes of it.
   The first body read (the winmail.dat's own, before its attached
   messages) has the first claim. A text cut there says so in the
   stream's RTF note (the RTF itself is kept whole as body.rtf). */
static char *
s_tnef_body (s_ctx_t *ctx, cm_tnef_t *t, bool *oom)
{
    char *text = NULL;
    if (t->body)
        text = s_tnef_text (t->body, t->body_len, t->codepage);
    else
    if (t->rtf) {
        s_rtf_dec_t d = { .n = 0 };
        size_t room = ctx->tnef_text < ctx->lim.max_size ? ctx->lim.max_size - ctx->tnef_text : 0;
        bool cut = false;
        text = cm_rtf_text (t->rtf, t->rtf_len, room, s_rtf_decode, &d, NULL, &cut);
        s_rtf_dec_free (&d);
        ctx->tnef_text += text ? strlen (text) : 0;
        size_t used = strlen (t->rtf_note);
        if (text && cut && used < sizeof t->rtf_note)
            snprintf (t->rtf_note + used, sizeof t->rtf_note - used, "%s%s", used ? ", " : "",
                      *text ? "its text cut at the message size limit"
                            : "its text left out: the message size limit was reached");
    }
    else
        return NULL;
    *oom = !text;
    return text;
}

static cm_message_t *s_tnef_message (s_ctx_t *ctx, const unsigned char *bytes, size_t size,
                                     int depth, char **note);

/* Attaches the Outlook message attached in TNEF that is attachment
   index of m (its TNEF stream) as m's nested message, when the depth and
   the limit on attached messages allow and the stream gives anything;
   its note says how it was read or why not. -1 out of memory. */
static int
s_tnef_nested (s_ctx_t *ctx, cm_message_t *m, size_t index, int depth)
{
    char *note = NULL;
    cm_message_t *child = NULL;
    int rc = 0;
    if (depth + 1 > ctx->lim.max_depth)
        rc = asprintf (&note, "an Outlook message attached in TNEF, not read: nested deeper"
                       " than %d levels; kept as its TNEF stream", ctx->lim.max_depth);
    else
    if (ctx->nested >= ctx->lim.max_nested_messages)
        rc = asprintf (&note, "an Outlook message attached in TNEF, not read: more than %d"
                       " attached messages; kept as its TNEF stream",
                       ctx->lim.max_nested_messages);
    else {
        ctx->nested++;
        child = s_tnef_message (ctx, m->attachments [index].data, m->attachments [index].size,
                                depth + 1, &note);
        if (!child && !note)
            return -1;
    }
    if (rc < 0)
        return -1;
    if (child && s_push_ptr ((void ***) &m->nested, &m->nnested, child)) {
        cm_message_destroy (&child);
        free (note);
        return -1;
    }
    if (child)
        m->attachments [index].nested_index = (int) m->nnested - 1;
    free (m->attachments [index].note);
    m->attachments [index].note = note;
    return 0;
}

/* The files of a TNEF stream t become attachments of m, under its
   attachment holder (-1: none), named by the long name (else the short
   one), typed by the MIME tag (else by the name); an attached Outlook
   message is kept as its TNEF stream, NAME.tnef, and read as a nested
   message of m (s_tnef_nested). The RTF body becomes one more file,
   body.rtf, the RTF as Outlook stored it (what Debian's tnef --save-body
   writes): it may carry objects worth a scan, which a de-encapsulated
   body.html would drop. *note says how many files came out and what
   stopped the reading, the stream named label. -1 out of memory. */
static int
s_tnef_take (s_ctx_t *ctx, cm_message_t *m, int holder, cm_tnef_t *t, int depth,
             const char *label, char **note)
{
    size_t max_files = (size_t) ctx->lim.max_parts;
    size_t taken = 0;
    for (size_t i = 0; i < t->nfiles; i++) {
        cm_tnef_file_t *f = &t->files [i];
        char *raw = NULL, *name = NULL;
        if (f->name)
            raw = f->name_utf8 ? strdup (f->name) : s_tnef_text (f->name, strlen (f->name), t->codepage);
        if (f->name && !raw)
            return -1;
        if (f->embedded) {
            /* an attached Outlook message: kept as its TNEF stream */
            char *named = NULL;
            if (asprintf (&named, "%s.tnef", raw && *raw ? raw : "attached-message") < 0)
                named = NULL;
            free (raw);
            raw = named;
            if (!raw)
                return -1;
        }
        name = raw ? s_sanitise_filename (raw) : NULL;
        free (raw);
        cm_attachment_t *a = s_append_attachment (m, NULL, name, f->data, f->size);
        f->data = NULL;
        if (!a)
            return -1;
        a->parent_index = holder;
        const char *tag = f->embedded ? "application/vnd.ms-tnef" : f->mime_type;
        char *type = NULL;
        if (tag && (type = s_clean_trim (tag))) {
            s_lower (type);
            const char *slash = strchr (type, '/');
            bool ok = slash && slash > type && slash [1] && !strpbrk (type, " \t;\"");
            for (const char *p = type; ok && *p; p++)
                ok = (unsigned char) *p > 0x20 && (unsigned char) *p < 0x7F;
            if (ok) {
                free (a->content_type);
                a->content_type = type;
                type = NULL;
            }
        }
        free (type);
        if (f->embedded && s_tnef_nested (ctx, m, m->nattachments - 1, depth))
            return -1;
        taken++;
    }
    /* the RTF body as a file, when the files' allowance has room */
    bool rtf_left = false;
    if (t->rtf && ctx->tnef_files >= max_files)
        rtf_left = true;
    else
    if (t->rtf) {
        char *name = strdup ("body.rtf");
        if (!name)
            return -1;
        ctx->tnef_files++;              /* its bytes counted: s_tnef_read */
        cm_attachment_t *a = s_append_attachment (m, NULL, name, t->rtf, t->rtf_len);
        t->rtf = NULL;
        if (!a)
            return -1;
        a->parent_index = holder;
        taken++;
    }
    cm_buf_t b;
    cm_buf_init (&b, 0);
    int rc = 0;
    if (t->problem [0] && !taken) {
        rc = cm_buf_printf (&b, "TNEF (%s) kept as is: %s", label, t->problem);
        if (rc == 0 && t->rtf_note [0])
            rc = cm_buf_printf (&b, "; %s", t->rtf_note);
    }
    else {
        rc = cm_buf_printf (&b, "TNEF (%s): %zu file%s taken out", label, taken,
                            taken == 1 ? "" : "s");
        if (rc == 0 && t->skipped)
            rc = cm_buf_printf (&b, "; %zu attachment%s without bytes left out", t->skipped,
                                t->skipped == 1 ? "" : "s");
        if (rc == 0 && t->bad_checksums)
            rc = cm_buf_printf (&b, "; %d attribute checksum%s wrong", t->bad_checksums,
                                t->bad_checksums == 1 ? "" : "s");
        if (rc == 0 && t->rtf_note [0])
            rc = cm_buf_printf (&b, "; %s%s", t->rtf_note,
                                rtf_left ? ", not kept as a file: no files left in the"
                                           " message's TNEF allowance" : "");
        if (rc == 0 && t->problem [0])
            rc = cm_buf_printf (&b, "; reading stopped: %s", t->problem);
    }
    *note = rc == 0 ? cm_buf_take (&b, NULL) : NULL;
    cm_buf_free (&b);
    return *note ? 0 : -1;
}

static int s_address_put (cm_buf_t *b, char *name, const char *addr);

/* One of the message's text properties as clean one-line UTF-8 of at
   most max bytes, cut on a character (of a longer value only its first
   max bytes are read), *cut (when not NULL) saying whether it was; never
   NULL but out of memory. */
static char *
s_tnef_field (const cm_tnef_text_t *v, unsigned codepage, size_t max, bool *cut)
{
    if (cut)
        *cut = v->text && strnlen (v->text, max + 1) > max;
    if (!v->text)
        return strdup ("");
    /* not inside a UTF-8 character, which 8-bit text may hold too (code
       page 65001) */
    size_t len = strnlen (v->text, max), whole = s_utf8_floor (v->text, len);
    len = len - whole < 4 ? whole : len;
    char *utf8 = v->utf8 ? strndup (v->text, len) : s_tnef_text (v->text, len, codepage);
    char *clean = utf8 ? s_clean_trim (utf8) : NULL;
    free (utf8);
    size_t n = clean ? strlen (clean) : 0;
    if (n > max) {
        /* 8-bit text grows as UTF-8; a cut may leave a blank at the end */
        n = s_utf8_floor (clean, max);
        while (n && clean [n - 1] == ' ')
            n--;
        clean [n] = 0;
        if (cut)
            *cut = true;
    }
    return clean;
}

/* An address of the message (parser/tnef.c took only what is one) as
   its recipients' and sender's are kept: its domain lowercased, "" when
   as UTF-8 it is over CM_TNEF_MAX_ADDRESS bytes (8-bit text grows);
   never NULL but out of memory. */
static char *
s_tnef_address (const cm_tnef_text_t *v, unsigned codepage)
{
    char *addr = s_tnef_field (v, codepage, CM_TNEF_MAX_ADDRESS + 1, NULL);
    if (addr && strlen (addr) > CM_TNEF_MAX_ADDRESS)
        *addr = 0;
    char *at = addr ? strrchr (addr, '@') : NULL;
    if (at)
        s_lower (at);
    return addr;
}

/* Names of a "Name; Name" display string s that are not blank once
   cleaned: ASCII white space and controls are (s_clean drops or blanks
   them); any other byte is a character, or becomes U+FFFD. */
static size_t
s_display_names (const char *s)
{
    size_t count = 0;
    bool blank = true;
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == ';') {
            count += !blank;
            blank = true;
        }
        else
        if (c > 0x20 && c != 0x7F)
            blank = false;
    }
    return count + !blank;
}

/* The To and Cc recipients of an Outlook message attached in TNEF as
   c's to and cc, listed as s_addresses lists a message's (the domains
   lowercased, the addresses in to_addrs and cc_addrs): the recipient
   table's rows, else the names of PR_DISPLAY_TO and PR_DISPLAY_CC, which
   hold no addresses. The two lists hold max bytes in all, as a MIME
   message's header section: at the first recipient that would take
   them over, the rest are left out, *left counting them. -1 out of
   memory. */
static int
s_tnef_recipients (cm_message_t *c, const cm_tnef_t *t, size_t max, size_t *left)
{
    cm_buf_t b [2];
    char **addrs [2] = { NULL, NULL };
    size_t n [2] = { 0, 0 };
    int rc = 0;
    *left = 0;
    for (int k = 0; k < 2; k++) {
        cm_buf_init (&b [k], 0);
        cm_buf_append (&b [k], "", 0);
    }
    for (size_t i = 0; i < t->nrecips && rc == 0 && !*left; i++) {
        int k = t->recips [i].cc;
        char *name = s_tnef_field (&t->recips [i].name, t->codepage, S_MAX_NAME, NULL);
        char *addr = s_tnef_address (&t->recips [i].addr, t->codepage);
        if (!name || !addr)
            rc = -1;
        else
        if ((*name || *addr)
        &&  b [0].len + b [1].len + strlen (name) + strlen (addr) + 7 > max)
            *left = t->nrecips - i;     /* ", " and "" and " <" ">" at most */
        else
        if (*name || *addr) {
            if (s_address_put (&b [k], name, addr)
            ||  (*addr && s_push_ptr ((void ***) &addrs [k], &n [k], addr)))
                rc = -1;
            else
            if (*addr)
                addr = NULL;    /* addrs holds it */
        }
        free (name);
        free (addr);
    }
    /* "Ann Smith; Bob": only what the lists can hold is read of them, a
       name the reading cut not taken */
    for (int k = 0; k < 2 && rc == 0 && !t->nrecips; k++) {
        const cm_tnef_text_t *v = k ? &t->display_cc : &t->display_to;
        bool cut, full = *left > 0;
        char *names = s_tnef_field (v, t->codepage, full ? 0 : max, &cut);
        char *save = NULL;
        size_t taken = 0;
        for (char *one = names ? strtok_r (names, ";", &save) : NULL; one && rc == 0 && !full;
             one = strtok_r (NULL, ";", &save)) {
            char *name = cut && !*save ? strdup ("") : s_clean_trim (one);
            if (name && *name) {
                name [s_utf8_floor (name, strnlen (name, S_MAX_NAME))] = 0;
                if (b [0].len + b [1].len + strlen (name) + 4 > max)
                    full = true;        /* ", " and "" at most */
                else
                if (s_address_put (&b [k], name, ""))
                    rc = -1;
                else
                    taken++;
            }
            rc = name ? rc : -1;
            free (name);
        }
        size_t given = v->text ? s_display_names (v->text) : 0;
        *left += given > taken ? given - taken : 0;
        rc = names ? rc : -1;
        free (names);
    }
    c->to = cm_buf_take (&b [0], NULL);
    c->cc = cm_buf_take (&b [1], NULL);
    c->to_addrs = addrs [0];
    c->nto = n [0];
    c->cc_addrs = addrs [1];
    c->ncc = n [1];
    for (int k = 0; k < 2; k++)
        cm_buf_free (&b [k]);
    return rc || !c->to || !c->cc ? -1 : 0;
}

/* The date of an Outlook message attached in TNEF as the Date header it
   stands for ("Tue, 02 Jan 2024 10:00:00 +0000"), "-0000" when it is
   attDateSent's (UTC, the sender's zone unknown: RFC 5322 3.3), and
   *epoch as the MIME path reads such a header; "" and 0 without a date.
   NULL out of memory. */
static char *
s_tnef_date (const cm_tnef_t *t, long long *epoch)
{
    /* every second up to 9999, which a FILETIME read gives */
    _Static_assert (sizeof (time_t) >= 8, "a 32-bit time_t ends in 2038");
    static const char days [7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char months [12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    *epoch = 0;
    time_t when = (time_t) t->date;
    struct tm tm;
    if (!t->dated || !gmtime_r (&when, &tm))
        return strdup ("");
    char text [64];
    snprintf (text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d %s",
              days [tm.tm_wday], tm.tm_mday, months [tm.tm_mon], tm.tm_year + 1900,
              tm.tm_hour, tm.tm_min, tm.tm_sec, t->date_no_zone ? "-0000" : "+0000");
    *epoch = t->date;
    return strdup (text);
}

/* An Outlook message attached in TNEF, its stream bytes[0..size), read
   as an attached message at depth: subject, sender, recipients and date
   from its properties, its text body, its files as its attachments. NULL with
   *note set when the stream gives nothing (damaged from the start: no
   file, no body, no subject, sender, recipient or date); NULL without a note out of
   memory (ctx->failed). On success *note says how it was read. */
static cm_message_t *
s_tnef_message (s_ctx_t *ctx, const unsigned char *bytes, size_t size, int depth, char **note)
{
    *note = NULL;
    cm_tnef_t t;
    if (s_tnef_read (ctx, bytes, size, &t))
        goto oom;
    if (t.problem [0] && !t.nfiles && !t.body && !t.rtf && !t.subject.text && !t.from_name.text
    &&  !t.from_addr.text && !t.nrecips && !t.display_to.text && !t.display_cc.text
    &&  !t.dated) {
        if (asprintf (note, "an Outlook message attached in TNEF, not read: %s; kept as its"
                      " TNEF stream", t.problem) < 0) {
            *note = NULL;
            goto oom_t;
        }
        cm_tnef_free (&t);
        return NULL;
    }
    cm_message_t *c = calloc (1, sizeof *c);
    if (!c)
        goto oom_t;
    bool oom = false;
    /* each as bounded as a MIME message's header section */
    size_t left = 0;
    c->subject = s_tnef_field (&t.subject, t.codepage, ctx->lim.max_header_bytes, NULL);
    c->from_name = s_tnef_field (&t.from_name, t.codepage, S_MAX_NAME, NULL);
    c->from_addr = s_tnef_address (&t.from_addr, t.codepage);
    oom = s_tnef_recipients (c, &t, ctx->lim.max_header_bytes, &left) != 0;
    c->date_text = s_tnef_date (&t, &c->date_epoch);
    c->text = oom ? NULL : s_tnef_body (ctx, &t, &oom);
    if (!c->text && !oom)
        c->text = strdup ("");
    char *taken = NULL;
    if (!c->subject || !c->from_name || !c->from_addr || !c->to || !c->cc || !c->date_text
    ||  !c->text || cm_quote_split (c->text, &c->new_text, &c->quoted_text)
    ||  s_tnef_take (ctx, c, -1, &t, depth, "attached Outlook message", &taken)) {
        cm_message_destroy (&c);
        goto oom_t;
    }
    cm_tnef_free (&t);
    char over [128] = "";
    if (left)
        snprintf (over, sizeof over, ", %zu recipient%s left out (its To and Cc over %zu bytes)",
                  left, left == 1 ? "" : "s", ctx->lim.max_header_bytes);
    if (asprintf (note, "an Outlook message attached in TNEF, read as an attached message%s; %s",
                  over, taken) < 0) {
        *note = NULL;
        free (taken);
        cm_message_destroy (&c);
        goto oom;
    }
    free (taken);
    return c;
oom_t:
    cm_tnef_free (&t);
oom:
    free (*note);
    *note = NULL;
    if (!ctx->failed)
        s_fail (ctx, "out of memory while reading a TNEF attachment");
    return NULL;
}

/* The files in the winmail.dat that is attachment index of m
   (parser/tnef.c) become attachments under it (s_tnef_take). A damaged
   stream or a limit never rejects the message: the winmail.dat stays,
   its note saying how many files came out and what stopped the reading.
   The first TNEF text body (s_tnef_body) is kept for a message without
   text. -1 out of memory (ctx->failed). */
static int
s_take_tnef (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w, size_t index, int depth)
{
    cm_tnef_t t;
    if (s_tnef_read (ctx, m->attachments [index].data, m->attachments [index].size, &t))
        goto oom;
    bool oom = false;
    if (!w->tnef_body && (w->tnef_body = s_tnef_body (ctx, &t, &oom), oom))
        goto oom_t;
    char *note = NULL;
    if (s_tnef_take (ctx, m, (int) index, &t, depth, "winmail.dat", &note))
        goto oom_t;
    free (m->attachments [index].note);
    m->attachments [index].note = note;
    cm_tnef_free (&t);
    return ctx->failed ? -1 : 0;
oom_t:
    cm_tnef_free (&t);
oom:
    if (!ctx->failed)
        s_fail (ctx, "out of memory while reading a TNEF attachment");
    return -1;
}

/* A file the message carries, known by its type, name and bytes: a MIME
   leaf part that is not a body (object is the part), or a file uuencoded
   in a text body (object NULL, type from its name: s_type_for_name). The
   same rules read both: an attached message (message/rfc822, a name
   ending in .eml) is parsed as a nested message (s_add_nested); a .p7m
   has its signed content read or its signed file taken out
   (s_walk_signed_data) or, enveloped, makes the message encrypted; the
   files in a winmail.dat are taken out (s_take_tnef); an .msg is kept
   with a note; anything else is kept as it is. depth is the file's own
   MIME depth. Takes ownership of filename (may be NULL) and data. -1
   when a limit trips or memory runs out (ctx->failed). */
static int
s_take_file (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w, GMimeObject *object,
             const char *type, char *filename, unsigned char *data, size_t size,
             int depth, bool root, bool in_report, s_alt_t *alt)
{
    const char *note = NULL;
    if (s_is_pkcs7_mime (object, type, filename)) {
        const char *st = object ? g_mime_object_get_content_type_parameter (object, "smime-type")
                                : NULL;
        bool signed_label = st && !g_ascii_strcasecmp (st, "signed-data");
        bool is_signed = false, unpacked = false;
        /* a .p7m without smime-type is read to tell signed from encrypted */
        if ((signed_label || !st)
        &&  s_walk_signed_data (ctx, m, w, object, filename, data, size, depth, root,
                                in_report, alt, &is_signed, &unpacked)) {
            free (filename);
            free (data);
            return -1;
        }
        if (signed_label || is_signed) {
            m->signed_ = true;
            note = unpacked ? S_SIGNED_READ : S_SIGNED_KEPT;
        }
        else
        if (st ? !g_ascii_strcasecmp (st, "enveloped-data")
                 || !g_ascii_strcasecmp (st, "authEnveloped-data")
               : object || s_p7m_enveloped (data, size))
            m->encrypted = true;    /* anywhere in the tree, as in s_walk */
        else
        if (!st)
            /* a file uuencoded in text, named .p7m, that is no CMS we
               know: a sender's S/MIME part unread is taken as ciphertext
               (above), but a file in prose is no reason to call the
               message encrypted; kept */
            note = "a .p7m file that is neither signed nor encrypted data: kept as is";
    }
    if (strcmp (type, "application/vnd.ms-outlook") == 0
    ||  (filename && s_ends_with_ci (filename, ".msg")))
        note = "MSG attachments are not supported; attach the message as EML";
    bool tnef = strcmp (type, "application/ms-tnef") == 0
             || strcmp (type, "application/vnd.ms-tnef") == 0
             || (filename && strcasecmp (filename, "winmail.dat") == 0);
    bool eml = (filename && s_ends_with_ci (filename, ".eml"))
            || strcmp (type, "message/rfc822") == 0
            || strcmp (type, "application/x-eml") == 0
            || strcmp (type, "application/eml") == 0;
    if (eml && !in_report)
        return s_add_nested (ctx, m, object, NULL, data, size, filename, depth);
    cm_attachment_t *a = s_add_attachment (ctx, m, object, filename, data, size);
    if (!a || (note && !(a->note = strdup (note)))) {
        s_fail (ctx, "out of memory while reading an attachment");
        return -1;
    }
    if (tnef && s_take_tnef (ctx, m, w, m->nattachments - 1, depth))
        return -1;
    return 0;
}

/* The files s_take_uuencoded found in a text part at depth, in order,
   each read as a MIME part of the same name would be (s_take_file), one
   level deeper: a uuencoded .eml is an attached message, a .p7m gives
   its signed file, a winmail.dat its files. Their content is not an
   alternative rendering of the text, so no s_alt_t. Empties *uu. -1 when
   a limit trips or memory runs out (ctx->failed). */
static int
s_take_uu_files (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w, s_uu_files_t *uu,
                 int depth, bool root, bool in_report)
{
    int rc = 0;
    for (size_t i = 0; i < uu->n && rc == 0; i++) {
        s_uu_file_t *f = &uu->files [i];
        rc = s_take_file (ctx, m, w, NULL, s_type_for_name (f->name), f->name, f->data,
                          f->size, depth + 1, root, in_report, NULL);
        f->name = NULL;
        f->data = NULL;
    }
    s_uu_files_free (uu);
    return rc;
}

static int
s_walk_leaf (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w, GMimePart *part,
             int depth, bool root, bool in_report, s_alt_t *alt)
{
    GMimeObject *object = (GMimeObject *) part;
    char *type = s_mime_type (object);
    char *filename = s_part_filename (ctx, object);
    unsigned char *data = NULL;
    size_t size = 0;
    s_uu_files_t uu = { NULL, 0 };
    int rc = -1;
    if (!type || s_part_bytes (part, &data, &size)) {
        s_fail (ctx, "out of memory while decoding a MIME part");
        goto done;
    }
    const char *disp = g_mime_object_get_disposition (object);
    bool attachment = disp && !g_ascii_strcasecmp (disp, "attachment");
    bool is_plain = strcmp (type, "text/plain") == 0;
    bool is_html = strcmp (type, "text/html") == 0;
    if ((is_plain || is_html) && !attachment && (!filename || root)) {
        if (alt && ((is_plain && alt->text) || (is_html && alt->html))) {
            rc = 0;     /* a second rendering of the same alternative */
            goto done;
        }
        char *text = s_text_utf8 (ctx, object, data, size, is_html);
        if (text && is_plain && s_take_uuencoded (ctx, m, &text, &uu)) {
            free (text);
            goto done;
        }
        bool delsp = false;
        if (text && is_plain && s_is_flowed (object, &delsp)) {
            char *unflowed = s_unflow (text, delsp);
            free (text);
            text = unflowed;
        }
        if (!text || (is_plain ? s_append_body (&w->text, &w->have_text, text)
                               : s_append_body (&w->html, &w->have_html, text))) {
            free (text);
            s_fail (ctx, "out of memory while decoding the body");
            goto done;
        }
        free (text);
        if (alt) {
            if (is_plain)
                alt->text = true;
            else
                alt->html = true;
        }
        /* the files after the text that held them, as parts after it */
        rc = s_take_uu_files (ctx, m, w, &uu, depth, root, in_report);
        goto done;
    }
    /* application/ics: what some clients and calendar servers label
       the same invitation */
    if ((strcmp (type, "text/calendar") == 0 || strcmp (type, "application/ics") == 0)
    &&  !w->calendar && s_read_calendar (ctx, &w->calendar, object, data, size))
        goto done;
    /* Reports and the pieces of security mail. */
    if (strcmp (type, "message/delivery-status") == 0
    ||  strcmp (type, "message/global-delivery-status") == 0) {
        w->dsn_part = true;
        char *text = s_clean ((const char *) data,
                              size < S_DSN_SCAN_MAX ? size : S_DSN_SCAN_MAX, false);
        if (text)
            s_parse_dsn (m, text);
        free (text);
    }
    if ((strcmp (type, "text/rfc822-headers") == 0
      || strcmp (type, "message/global-headers") == 0)
    && !m->dsn_original_message_id) {
        char *text = s_clean ((const char *) data,
                              size < S_DSN_SCAN_MAX ? size : S_DSN_SCAN_MAX, false);
        if (text)
            m->dsn_original_message_id = s_msgid_from_headers (text);
        free (text);
    }
    rc = s_take_file (ctx, m, w, object, type, filename, data, size, depth, root,
                      in_report, alt);
    filename = NULL;
    data = NULL;
done:
    s_uu_files_free (&uu);
    free (type);
    free (filename);
    free (data);
    return rc;
}

static int
s_walk (s_ctx_t *ctx, cm_message_t *m, s_walk_t *w, GMimeObject *object,
        int depth, bool root, bool in_report, s_alt_t *alt)
{
    if (!object)
        return 0;
    if (depth > ctx->lim.max_depth) {
        s_fail_depth (ctx);
        return -1;
    }
    if (++ctx->parts > ctx->lim.max_parts) {
        s_fail_parts (ctx);
        return -1;
    }
    if (s_header_bytes (object) > ctx->lim.max_header_bytes) {
        s_fail_headers (ctx);
        return -1;
    }
    if (GMIME_IS_MULTIPART (object)) {
        GMimeMultipart *mp = (GMimeMultipart *) object;
        GMimeContentType *ct = g_mime_object_get_content_type (object);
        const char *sub = ct ? g_mime_content_type_get_media_subtype (ct) : NULL;
        sub = sub ? sub : "";
        /* anywhere in this message's own tree (an attached message is a
           record of its own): a list footer or a gateway disclaimer
           wrapped around the ciphertext does not make it readable */
        if (GMIME_IS_MULTIPART_ENCRYPTED (object) || !g_ascii_strcasecmp (sub, "encrypted"))
            m->encrypted = true;
        if (GMIME_IS_MULTIPART_SIGNED (object) || !g_ascii_strcasecmp (sub, "signed"))
            m->signed_ = true;
        bool report = false;
        if (!g_ascii_strcasecmp (sub, "report")) {
            const char *rt = g_mime_object_get_content_type_parameter (object, "report-type");
            if (rt && (!g_ascii_strcasecmp (rt, "delivery-status")
                    || !g_ascii_strcasecmp (rt, "global-delivery-status"))) {
                report = true;
                if (root)
                    w->report_dsn = true;
            }
            else
            if (rt && root && !g_ascii_strcasecmp (rt, "disposition-notification"))
                w->report_mdn = true;   /* a read receipt (RFC 8098) */
        }
        s_alt_t local = { false, false };
        s_alt_t *child_alt = !g_ascii_strcasecmp (sub, "alternative") ? &local : alt;
        int n = g_mime_multipart_get_count (mp);
        for (int i = 0; i < n; i++) {
            GMimeObject *child = g_mime_multipart_get_part (mp, i);
            if (s_walk (ctx, m, w, child, depth + 1, false, in_report || report, child_alt))
                return -1;
        }
        return 0;
    }
    if (GMIME_IS_MESSAGE_PART (object)) {
        GMimeMessage *inner = g_mime_message_part_get_message ((GMimeMessagePart *) object);
        unsigned char *data = NULL;
        size_t size = 0;
        if (s_object_bytes ((GMimeObject *) inner, &data, &size)) {
            s_fail (ctx, "out of memory while reading an attached message");
            return -1;
        }
        if (!inner) {
            cm_attachment_t *a = s_add_attachment (ctx, m, object, s_part_filename (ctx, object), data, size);
            if (!a)
                s_fail (ctx, "out of memory while reading an attached message");
            return a ? 0 : -1;
        }
        if (in_report && !m->dsn_original_message_id) {
            const char *id = g_mime_message_get_message_id (inner);
            if (id && *id)
                m->dsn_original_message_id = s_clean_trim (id);
        }
        return s_add_nested (ctx, m, object, inner, data, size,
                             s_part_filename (ctx, object), depth);
    }
    if (GMIME_IS_PART (object))
        return s_walk_leaf (ctx, m, w, (GMimePart *) object, depth, root, in_report, alt);
    /* message/partial and anything else: keep the bytes. */
    unsigned char *data = NULL;
    size_t size = 0;
    if (s_object_bytes (object, &data, &size)) {
        s_fail (ctx, "out of memory while reading a MIME part");
        return -1;
    }
    if (!s_add_attachment (ctx, m, object, s_part_filename (ctx, object), data, size)) {
        s_fail (ctx, "out of memory while reading a MIME part");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ headers */

/* Appends one mailbox to a "Name <addr>, addr" display list b: the name
   quoted when it holds a special (its quotes and backslashes made
   apostrophes), then the address in <>; an address alone as it is; a
   name without an address (an Outlook display string) alone, never
   made into one. -1 out of memory or over b's cap, b then as it was
   (one append). */
static int
s_address_put (cm_buf_t *b, char *name, const char *addr)
{
    bool quote = strpbrk (name, ",;<>\"@:()[]\\") != NULL;
    if (quote)
        for (char *p = name; *p; p++)
            if (*p == '"' || *p == '\\')
                *p = '\'';
    bool both = *name && *addr;
    return cm_buf_printf (b, "%s%s%s%s%s%s%s", b->len ? ", " : "", quote ? "\"" : "", name,
                          quote ? "\"" : "", both ? " <" : "", addr, both ? ">" : "");
}

/* "Name <addr>, addr" display list and bare addresses of an address list. */
static int
s_addresses (InternetAddressList *list, char **display, char ***addrs, size_t *n,
             char **first_name, char **first_addr)
{
    cm_buf_t b;
    cm_buf_init (&b, 0);
    cm_buf_append (&b, "", 0);
    int count = list ? internet_address_list_length (list) : 0;
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        InternetAddress *ia = internet_address_list_get_address (list, i);
        InternetAddressList *members = NULL;
        int mcount = 1;
        if (INTERNET_ADDRESS_IS_GROUP (ia)) {
            members = internet_address_group_get_members ((InternetAddressGroup *) ia);
            mcount = members ? internet_address_list_length (members) : 0;
        }
        for (int k = 0; k < mcount && rc == 0; k++) {
            InternetAddress *one = members ? internet_address_list_get_address (members, k) : ia;
            if (!INTERNET_ADDRESS_IS_MAILBOX (one))
                continue;   /* groups inside groups are not mail */
            char *name = s_clean_trim (internet_address_get_name (one));
            char *addr = s_clean_trim (internet_address_mailbox_get_addr ((InternetAddressMailbox *) one));
            if (!name || !addr) {
                free (name);
                free (addr);
                rc = -1;
                break;
            }
            char *at = strrchr (addr, '@');
            if (at)
                s_lower (at);
            if (first_name && !*first_name && *addr) {
                *first_name = strdup (name);
                *first_addr = strdup (addr);
            }
            if (*addr) {
                if (s_address_put (&b, name, addr))
                    rc = -1;
                else
                if (addrs) {
                    if (s_push_ptr ((void ***) addrs, n, addr))
                        rc = -1;
                    else
                        addr = NULL;
                }
            }
            free (name);
            free (addr);
        }
    }
    *display = cm_buf_take (&b, NULL);
    return rc || !*display ? -1 : 0;
}

static const char *
s_header (GMimeMessage *gm, const char *name)
{
    return g_mime_object_get_header ((GMimeObject *) gm, name);
}

/* The addresses of every field called name, as GMime joins them, parsed
   again from the raw fields when s_fix_words respells an encoded word in
   one. *owned: the caller unrefs the list (else it is GMime's). */
static InternetAddressList *
s_address_list (s_ctx_t *ctx, GMimeMessage *gm, const char *name,
                InternetAddressList *parsed, bool *owned)
{
    *owned = false;
    GMimeHeaderList *headers = g_mime_object_get_header_list ((GMimeObject *) gm);
    int n = headers ? g_mime_header_list_get_count (headers) : 0;
    bool fix = false;
    for (int i = 0; i < n && !fix; i++) {
        char *fixed = s_fix_words (s_field_raw (headers, i, name));
        fix = fixed != NULL;
        free (fixed);
    }
    if (!fix)
        return parsed;
    InternetAddressList *list = internet_address_list_new ();
    for (int i = 0; i < n; i++) {
        const char *raw = s_field_raw (headers, i, name);
        if (!raw)
            continue;
        char *fixed = s_fix_words (raw);
        InternetAddressList *one = internet_address_list_parse (
            s_options_for (ctx, fixed ? fixed : raw), fixed ? fixed : raw);
        if (one) {
            internet_address_list_append (list, one);
            g_object_unref (one);
        }
        free (fixed);
    }
    *owned = true;
    return list;
}

/* Automatic mail (RFC 3834 first; m->dsn is set before). A bounce is not
   also an auto-reply. X-Auto-Response-Suppress alone does not count:
   Exchange and many bulk senders put it on ordinary mail, and a lost
   incident report costs more than an auto-reply that opens one (our own
   automatic mail carries Auto-Submitted, so loops are still broken). It is
   only named in the reason next to a sign that counts on its own. */
static void
s_detect_auto (cm_message_t *m, GMimeMessage *gm, bool read_receipt)
{
    char reason [256] = "";
    const char *v;
    if ((v = s_header (gm, "Auto-Submitted"))) {
        char token [64];
        size_t k = 0;
        while (*v == ' ' || *v == '\t')
            v++;
        while (v [k] && k < sizeof token - 1 && v [k] != ';' && v [k] != '('
        && !isspace ((unsigned char) v [k])) {
            token [k] = (char) tolower ((unsigned char) v [k]);
            k++;
        }
        token [k] = 0;
        if (*token && strcmp (token, "no") != 0)
            snprintf (reason, sizeof reason, "Auto-Submitted: %s", token);
    }
    if (!*reason && (v = s_header (gm, "X-Autoreply")))
        snprintf (reason, sizeof reason, "X-Autoreply: %.60s", v);
    if (!*reason && (v = s_header (gm, "X-Autorespond")))
        snprintf (reason, sizeof reason, "X-Autorespond: %.60s", v);
    if (!*reason && (v = s_header (gm, "Precedence"))) {
        while (*v == ' ' || *v == '\t')
            v++;
        static const char *const kinds [] = { "bulk", "junk", "list", "auto_reply", NULL };
        for (int i = 0; kinds [i]; i++) {
            size_t n = strlen (kinds [i]);
            if (!g_ascii_strncasecmp (v, kinds [i], n)
            && (v [n] == 0 || isspace ((unsigned char) v [n]) || v [n] == ';')) {
                snprintf (reason, sizeof reason, "Precedence: %s", kinds [i]);
                break;
            }
        }
    }
    if (!*reason) {
        static const char *const prefixes [] = {
            "Automatic reply:", "Auto:", "Out of Office", "Autoreply:",
            "Auto-Reply:", "Automatische Antwort:", "Réponse automatique", NULL };
        const char *s = m->subject;
        while (*s == ' ')
            s++;
        for (int i = 0; prefixes [i]; i++)
            if (!g_ascii_strncasecmp (s, prefixes [i], strlen (prefixes [i]))) {
                snprintf (reason, sizeof reason, "Subject: %s", prefixes [i]);
                break;
            }
    }
    /* a read receipt, and a null return path on what is no bounce: RFC
       5321 keeps <> for notifications, which never start a conversation */
    if (!*reason && read_receipt)
        snprintf (reason, sizeof reason, "read receipt (report-type=disposition-notification)");
    if (!*reason && m->null_return_path && !m->dsn)
        snprintf (reason, sizeof reason, "Return-Path: <>");
    if (!*reason)
        return;
    if ((v = s_header (gm, "X-Auto-Response-Suppress"))) {
        size_t n = strlen (reason);
        snprintf (reason + n, sizeof reason - n, "; X-Auto-Response-Suppress: %.40s", v);
    }
    m->auto_reply = true;
    m->auto_reason = s_clean_trim (reason);
}

/* Bounce without multipart/report: null return path plus a bounce sign. */
static bool
s_looks_like_bounce (const cm_message_t *m)
{
    static const char *const senders [] = { "mailer-daemon@", "postmaster@", NULL };
    static const char *const subjects [] = {
        "undeliver", "delivery status notification", "delivery failure",
        "mail delivery failed", "returned mail", "failure notice",
        "delivery has failed", "unzustellbar", NULL };
    for (int i = 0; senders [i]; i++)
        if (!g_ascii_strncasecmp (m->from_addr, senders [i], strlen (senders [i])))
            return true;
    char *lower = g_ascii_strdown (m->subject, -1);
    bool hit = false;
    for (int i = 0; lower && subjects [i] && !hit; i++)
        hit = strstr (lower, subjects [i]) != NULL;
    g_free (lower);
    return hit;
}

/* Builds the record of a parsed GMime message whose part sits at depth base. */
static cm_message_t *
s_convert (s_ctx_t *ctx, GMimeMessage *gm, int base)
{
    cm_message_t *m = calloc (1, sizeof *m);
    if (!m) {
        s_fail (ctx, "out of memory");
        return NULL;
    }
    if (s_header_bytes ((GMimeObject *) gm) > ctx->lim.max_header_bytes) {
        s_fail_headers (ctx);
        goto fail;
    }
    m->subject = s_subject (ctx, gm);
    bool own_from, own_to, own_cc;
    InternetAddressList *from = s_address_list (ctx, gm, "From", g_mime_message_get_from (gm), &own_from);
    InternetAddressList *to = s_address_list (ctx, gm, "To", g_mime_message_get_to (gm), &own_to);
    InternetAddressList *cc = s_address_list (ctx, gm, "Cc", g_mime_message_get_cc (gm), &own_cc);
    char *from_list = NULL;
    int from_rc = s_addresses (from, &from_list, NULL, NULL, &m->from_name, &m->from_addr);
    free (from_list);
    if (!m->from_name)
        m->from_name = strdup ("");
    if (!m->from_addr)
        m->from_addr = strdup ("");
    int addr_rc = from_rc || !m->subject
               || s_addresses (to, &m->to, &m->to_addrs, &m->nto, NULL, NULL)
               || s_addresses (cc, &m->cc, &m->cc_addrs, &m->ncc, NULL, NULL)
               || !m->from_name || !m->from_addr;
    if (own_from)
        g_object_unref (from);
    if (own_to)
        g_object_unref (to);
    if (own_cc)
        g_object_unref (cc);
    if (addr_rc)
        goto oom;
    const char *date = s_header (gm, "Date");
    m->date_text = s_clean_trim (date ? date : "");
    GDateTime *dt = g_mime_message_get_date (gm);
    if (dt)
        m->date_epoch = (long long) g_date_time_to_unix (dt);
    const char *id = g_mime_message_get_message_id (gm);
    if (id && *id)
        m->message_id = s_clean_trim (id);
    const char *irt = s_header (gm, "In-Reply-To");
    if (irt) {
        char *first = g_mime_utils_decode_message_id (irt);
        if (first && *first)
            m->in_reply_to = s_clean_trim (first);
        g_free (first);
    }
    const char *refs = s_header (gm, "References");
    if (refs) {
        GMimeReferences *list = g_mime_references_parse (ctx->options, refs);
        int n = list ? g_mime_references_length (list) : 0;
        for (int i = 0; i < n; i++) {
            /* the thread's root and the latest ancestors matter most */
            if (i > 0 && i < n - (S_MAX_REFERENCES - 1))
                continue;
            char *ref = s_clean_trim (g_mime_references_get_message_id (list, i));
            if (!ref || s_push_ptr ((void ***) &m->references, &m->nreferences, ref)) {
                free (ref);
                g_mime_references_free (list);
                goto oom;
            }
        }
        if (list)
            g_mime_references_free (list);
    }
    const char *rp = s_header (gm, "Return-Path");
    if (rp) {
        char compact [8];
        size_t k = 0;
        for (const char *p = rp; *p && k < sizeof compact - 1; p++)
            if (!isspace ((unsigned char) *p))
                compact [k++] = *p;
        compact [k] = 0;
        m->null_return_path = strcmp (compact, "<>") == 0;
    }
    if (!m->date_text)
        goto oom;

    s_walk_t w = { .report_dsn = false };
    cm_buf_init (&w.text, 0);
    cm_buf_init (&w.html, 0);
    int walk_rc = s_walk (ctx, m, &w, g_mime_message_get_mime_part (gm), base + 1, true, false, NULL);
    if (walk_rc == 0 && w.have_text)
        m->text = cm_buf_take (&w.text, NULL);
    if (walk_rc == 0 && w.have_html)
        m->html = cm_buf_take (&w.html, NULL);
    cm_buf_free (&w.text);
    cm_buf_free (&w.html);
    if (walk_rc || (w.have_text && !m->text) || (w.have_html && !m->html)) {
        free (w.calendar);
        free (w.tnef_body);
        if (walk_rc)
            goto fail;
        goto oom;
    }
    /* no text of its own: the plain text Outlook put into winmail.dat */
    if (w.tnef_body && s_blank (m->text) && !s_blank (w.tnef_body)) {
        free (m->text);
        m->text = w.tnef_body;
        w.tnef_body = NULL;
    }
    free (w.tnef_body);

    /* a blank text/plain next to the HTML (an empty alternative some
       senders add) must not hide what the HTML says */
    if (m->html && s_blank (m->text)) {
        free (m->text);
        m->text = cm_html_to_text (m->html, strlen (m->html));
        if (!m->text) {
            free (w.calendar);
            goto oom;
        }
    }
    /* an invitation with no text (Outlook, Teams): the event says it */
    if (w.calendar && s_blank (m->text)) {
        free (m->text);
        m->text = w.calendar;
    }
    else
        free (w.calendar);
    if (!m->text && !(m->text = strdup ("")))
        goto oom;
    const char *t = m->text;
    while (isspace ((unsigned char) *t))
        t++;
    if (strncmp (t, "-----BEGIN PGP MESSAGE-----", 27) == 0)
        m->encrypted = true;
    if (cm_quote_split (m->text, &m->new_text, &m->quoted_text))
        goto oom;
    m->dsn = w.report_dsn || (m->null_return_path && (w.dsn_part || s_looks_like_bounce (m)));
    s_detect_auto (m, gm, w.report_mdn);
    if (m->dsn && !m->dsn_original_message_id && m->nnested && m->nested [0]->message_id)
        m->dsn_original_message_id = strdup (m->nested [0]->message_id);
    return m;
oom:
    s_fail (ctx, "out of memory");
fail:
    cm_message_destroy (&m);
    return NULL;
}

/* Copy of raw with bare CRs turned into line feeds, or NULL if none or
   raw does not end its lines with them. Only a message whose first line
   ends in a bare CR (old Mac mail) is rewritten: elsewhere a bare CR is
   a byte of content, and a binary part (raw DER of a .p7m, sent with
   Content-Transfer-Encoding: binary) is full of them. */
static char *
s_fix_bare_cr (const char *raw, size_t len, bool *had)
{
    *had = false;
    const char *p = raw;
    const char *end = raw + len;
    while (p < end && *p != '\r' && *p != '\n')
        p++;
    if (p < end && *p == '\r' && (p + 1 >= end || p [1] != '\n'))
        *had = true;
    if (!*had)
        return NULL;
    char *copy = malloc (len ? len : 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < len; i++)
        copy [i] = (raw [i] == '\r' && (i + 1 >= len || raw [i + 1] != '\n')) ? '\n' : raw [i];
    return copy;
}

/* Parses one message's raw bytes whose part sits at depth base. Limits set
   ctx->failed; a message GMime cannot read gives NULL with soft set. */
static cm_message_t *
s_parse_raw (s_ctx_t *ctx, const char *raw, size_t len, int base,
             char *soft, size_t softlen)
{
    cm_message_t *m = NULL;
    GMimeStream *stream = NULL;
    GMimeParser *parser = NULL;
    GMimeMessage *gm = NULL;
    bool had_cr = false;
    char *fixed = s_fix_bare_cr (raw, len, &had_cr);
    if (had_cr && !fixed) {
        s_fail (ctx, "out of memory");
        goto done;
    }
    if (fixed)
        raw = fixed;
    if (len == 0) {
        snprintf (soft, softlen, "not an email message: no header fields");
        goto done;
    }
    char *respelled = NULL;
    size_t respelled_len = 0;
    if (s_prescan (ctx, raw, len, base, &respelled, &respelled_len))
        goto done;
    s_set_fallback (ctx);
    if (respelled) {
        free (fixed);
        raw = fixed = respelled;
        len = respelled_len;
    }
    stream = g_mime_stream_mem_new_with_buffer (raw, len);
    parser = g_mime_parser_new_with_stream (stream);
    g_mime_parser_set_format (parser, GMIME_FORMAT_MESSAGE);
    ctx->overflow = false;
    gm = g_mime_parser_construct_message (parser, ctx->options);
    if (ctx->overflow) {
        s_fail_depth (ctx);
        goto done;
    }
    GMimeHeaderList *headers = gm ? g_mime_object_get_header_list ((GMimeObject *) gm) : NULL;
    if (!gm || !headers || g_mime_header_list_get_count (headers) == 0) {
        snprintf (soft, softlen, "not an email message: no header fields");
        goto done;
    }
    m = s_convert (ctx, gm, base);
done:
    if (gm)
        g_object_unref (gm);
    if (parser)
        g_object_unref (parser);
    if (stream)
        g_object_unref (stream);
    free (fixed);
    return m;
}

cm_message_t *
cm_message_parse (const char *raw, size_t len, const cm_limits_t *limits,
                  char *reason, size_t reasonlen)
{
    s_ctx_t *ctx = calloc (1, sizeof *ctx);
    cm_message_t *m = NULL;
    char soft [256] = "";
    if (reason && reasonlen)
        reason [0] = 0;
    if (!ctx) {
        snprintf (soft, sizeof soft, "out of memory");
        goto done;
    }
    cm_limits_t def;
    cm_limits_default (&def);
    ctx->lim = limits ? *limits : def;
    if (ctx->lim.max_size == 0)
        ctx->lim.max_size = def.max_size;
    if (ctx->lim.max_depth <= 0)
        ctx->lim.max_depth = def.max_depth;
    if (ctx->lim.max_depth > S_MAX_DEPTH_CLAMP)
        ctx->lim.max_depth = S_MAX_DEPTH_CLAMP;
    if (ctx->lim.max_parts <= 0)
        ctx->lim.max_parts = def.max_parts;
    if (ctx->lim.max_header_bytes == 0)
        ctx->lim.max_header_bytes = def.max_header_bytes;
    if (ctx->lim.max_header_fields <= 0)
        ctx->lim.max_header_fields = def.max_header_fields;
    if (ctx->lim.max_nested_messages < 0)
        ctx->lim.max_nested_messages = 0;
    if (!raw)
        len = 0;
    if (len > ctx->lim.max_size) {
        s_fail (ctx, "message is %zu bytes, over the %zu-byte limit", len, ctx->lim.max_size);
        goto done;
    }
    pthread_once (&s_once, s_init_gmime);
    ctx->options = g_mime_parser_options_new ();
    static const char *fallback [] = { "UTF-8", "windows-1252", NULL };
    g_mime_parser_options_set_fallback_charsets (ctx->options, fallback);
    g_mime_parser_options_set_warning_callback (ctx->options, s_warning_cb, ctx);
    s_pin_encoded_words (raw ? raw : "", len);
    m = s_parse_raw (ctx, raw ? raw : "", len, 0, soft, sizeof soft);
    if (m && m->encrypted) {
        cm_message_destroy (&m);
        s_fail (ctx, "encrypted email is not supported");
    }
done:
    if (!m && reason && reasonlen)
        snprintf (reason, reasonlen, "%s",
                  ctx && ctx->failed ? ctx->reason : *soft ? soft : "message could not be parsed");
    if (ctx && ctx->options)
        g_mime_parser_options_free (ctx->options);
    for (int i = 0; ctx && i <= S_DECLARED_MAX; i++)
        if (ctx->only [i])
            g_mime_parser_options_free (ctx->only [i]);
    free (ctx);
    return m;
}

static void
s_free_list (char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free (list [i]);
    free (list);
}

void
cm_message_destroy (cm_message_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cm_message_t *m = *self_p;
    free (m->subject);
    free (m->from_name);
    free (m->from_addr);
    free (m->to);
    free (m->cc);
    s_free_list (m->to_addrs, m->nto);
    s_free_list (m->cc_addrs, m->ncc);
    free (m->date_text);
    free (m->message_id);
    free (m->in_reply_to);
    s_free_list (m->references, m->nreferences);
    free (m->text);
    free (m->html);
    free (m->new_text);
    free (m->quoted_text);
    for (size_t i = 0; i < m->nattachments; i++) {
        cm_attachment_t *a = &m->attachments [i];
        free (a->filename);
        free (a->content_type);
        free (a->content_id);
        free (a->data);
        free (a->note);
    }
    free (m->attachments);
    for (size_t i = 0; i < m->nnested; i++)
        cm_message_destroy (&m->nested [i]);
    free (m->nested);
    free (m->auto_reason);
    free (m->dsn_status);
    free (m->dsn_action);
    free (m->dsn_recipient);
    free (m->dsn_original_message_id);
    for (size_t i = 0; i < m->ndsn_rcpts; i++) {
        free (m->dsn_rcpts [i].recipient);
        free (m->dsn_rcpts [i].original);
        free (m->dsn_rcpts [i].action);
        free (m->dsn_rcpts [i].status);
    }
    free (m->dsn_rcpts);
    free (m);
    *self_p = NULL;
}

/* ------------------------------------------------------------ subjects */

/* Length of a reply/forward prefix at s (incl. counter and colon), or 0. */
static size_t
s_prefix_len (const char *s)
{
    static const char *const ascii [] = {
        "Re", "Fwd", "Fw", "AW", "WG", "SV", "VS", "Antw", "Odp", "RIF",
        "TR", "Doorst", "Wg", NULL };
    static const char *const cjk [] = {
        "\xE5\x9B\x9E\xE5\xA4\x8D",     /* 回复 */
        "\xE7\xAD\x94\xE5\xA4\x8D",     /* 答复 */
        "\xE8\xBD\xAC\xE5\x8F\x91",     /* 转发 */
        NULL };
    size_t n = 0;
    for (int i = 0; ascii [i] && !n; i++) {
        size_t k = strlen (ascii [i]);
        if (!g_ascii_strncasecmp (s, ascii [i], k) && !isalnum ((unsigned char) s [k]))
            n = k;
    }
    for (int i = 0; cjk [i] && !n; i++) {
        size_t k = strlen (cjk [i]);
        if (!strncmp (s, cjk [i], k))
            n = k;
    }
    if (!n)
        return 0;
    /* optional counter: Re[2]: or Re(2): */
    if (s [n] == '[' || s [n] == '(') {
        char close = s [n] == '[' ? ']' : ')';
        size_t k = n + 1;
        while (isdigit ((unsigned char) s [k]))
            k++;
        if (k > n + 1 && s [k] == close)
            n = k + 1;
    }
    while (s [n] == ' ')
        n++;    /* French style "RE :" */
    if (s [n] == ':')
        return n + 1;
    if (!strncmp (s + n, "\xEF\xBC\x9A", 3))   /* full-width colon */
        return n + 3;
    return 0;
}

char *
cm_subject_strip (const char *subject)
{
    const char *s = subject ? subject : "";
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        size_t n = s_prefix_len (s);
        if (!n)
            break;
        s += n;
    }
    size_t len = strlen (s);
    while (len && isspace ((unsigned char) s [len - 1]))
        len--;
    return strndup (s, len);
}

long
cm_subject_tag (const char *subject, const char *prefix)
{
    if (!subject || !prefix || !*prefix)
        return 0;
    size_t pl = strlen (prefix);
    for (const char *p = strchr (subject, '['); p; p = strchr (p + 1, '[')) {
        if (g_ascii_strncasecmp (p + 1, prefix, pl) != 0 || p [1 + pl] != '-')
            continue;
        const char *d = p + 2 + pl;
        long value = 0;
        int digits = 0;
        while (isdigit ((unsigned char) d [digits]) && digits < 18) {
            value = value * 10 + (d [digits] - '0');
            digits++;
        }
        if (digits && d [digits] == ']' && value > 0)
            return value;
    }
    return 0;
}

/* ------------------------------------------------------------ self-test */

static void
s_check_at (int *failures, bool ok, const char *what, bool verbose)
{
    *failures += cm_message_check (ok, what, verbose);
}

int
cm_message_check (bool ok, const char *what, bool verbose)
{
    if (!ok)
        fprintf (stderr, "selftest: FAILED: %s\n", what);
    else
    if (verbose)
        printf ("selftest: ok: %s\n", what);
    return ok ? 0 : 1;
}

cm_message_t *
cm_message_parse_parts (const char *head, const char *body, const cm_limits_t *limits,
                        char *reason, size_t reasonlen)
{
    char own [256];
    if (!reason) {
        reason = own;
        reasonlen = sizeof own;
    }
    cm_buf_t b;
    cm_buf_init (&b, 0);
    cm_buf_printf (&b, "From: a@b.c\nSubject: s\n%s\n%s", head, body);
    cm_message_t *m = b.data ? cm_message_parse (b.data, b.len, limits, reason, reasonlen) : NULL;
    cm_buf_free (&b);
    return m;
}

static cm_message_t *
s_parse_str (const char *text, char *reason, size_t reasonlen)
{
    return cm_message_parse (text, strlen (text), NULL, reason, reasonlen);
}

int
cm_message_selftest (bool verbose)
{
    int failures = 0;
#define s_check(ok, what, verbose) s_check_at (&failures, ok, what, verbose)
    char reason [256];
    char *s;

    /* subjects */
    s = cm_subject_strip ("  Re: RE[2]: Fwd: AW: WG: SV: VS: Antw: Odp: RIF: TR : "
                          "\xE5\x9B\x9E\xE5\xA4\x8D: \xE7\xAD\x94\xE5\xA4\x8D\xEF\xBC\x9A"
                          " Phishing [INC-42]  ");
    s_check (s && strcmp (s, "Phishing [INC-42]") == 0, "subject_strip all prefixes", verbose);
    free (s);
    s = cm_subject_strip ("Report of suspicious mail");
    s_check (s && strcmp (s, "Report of suspicious mail") == 0, "subject_strip keeps Re-words", verbose);
    free (s);
    s = cm_subject_strip ("Fwd:");
    s_check (s && strcmp (s, "") == 0, "subject_strip to empty", verbose);
    free (s);
    s_check (cm_subject_tag ("Re: alert [INC-42] again", "INC") == 42, "subject_tag found", verbose);
    s_check (cm_subject_tag ("Re: alert [inc-7]", "INC") == 7, "subject_tag case", verbose);
    s_check (cm_subject_tag ("[INC-] [INC-x] [INCX-3] [INC-9]", "INC") == 9, "subject_tag skips bad", verbose);
    s_check (cm_subject_tag ("no tag", "INC") == 0, "subject_tag none", verbose);
    s_check (cm_subject_tag ("[INC-99999999999999999999]", "INC") == 0, "subject_tag overflow", verbose);

    /* quotes */
    char *nt = NULL, *qt = NULL;
    cm_quote_split ("Thanks, fixed.\n\nOn Mon, 1 Jan 2024 at 10:00, Ann <a@x.org> wrote:\n> old\n",
                    &nt, &qt);
    s_check (nt && strcmp (nt, "Thanks, fixed.") == 0 && qt && strncmp (qt, "On Mon", 6) == 0,
             "quote On..wrote", verbose);
    free (nt); free (qt);
    cm_quote_split ("Hi\n\nFrom: Bob\nSent: Monday\nTo: Ann\nSubject: x\n\nold\n", &nt, &qt);
    s_check (nt && strcmp (nt, "Hi") == 0 && qt && strncmp (qt, "From: Bob", 9) == 0,
             "quote Outlook block", verbose);
    free (nt); free (qt);
    cm_quote_split ("Ja.\n\nAm 01.02.2024 um 10:00 schrieb Hans <h@x.de>:\n> alt\n", &nt, &qt);
    s_check (nt && strcmp (nt, "Ja.") == 0 && qt, "quote Am..schrieb", verbose);
    free (nt); free (qt);
    cm_quote_split ("Oui.\nLe 1 janv. 2024, Jean a écrit :\n> vieux\n", &nt, &qt);
    s_check (nt && strcmp (nt, "Oui.") == 0 && qt, "quote Le..a écrit", verbose);
    free (nt); free (qt);
    cm_quote_split ("New\n-----Original Message-----\nFrom: x\n", &nt, &qt);
    s_check (nt && strcmp (nt, "New") == 0 && qt, "quote Original Message", verbose);
    free (nt); free (qt);
    cm_quote_split ("New\n________________________________\nFrom: x\n", &nt, &qt);
    s_check (nt && strcmp (nt, "New") == 0 && qt, "quote underscores", verbose);
    free (nt); free (qt);
    cm_quote_split ("Reply here\n> quoted 1\n>quoted 2\n\n> quoted 3\n", &nt, &qt);
    s_check (nt && strcmp (nt, "Reply here") == 0 && qt && strncmp (qt, "> quoted 1", 10) == 0,
             "quote trailing >", verbose);
    free (nt); free (qt);
    cm_quote_split ("> a\ninline answer\n> b\nmore\n", &nt, &qt);
    s_check (nt && strcmp (nt, "> a\ninline answer\n> b\nmore\n") == 0 && !qt,
             "quote interleaved kept", verbose);
    free (nt); free (qt);
    cm_quote_split ("From: is not a marker without Sent/To\nplain\n", &nt, &qt);
    s_check (nt && !qt, "quote no false Outlook block", verbose);
    free (nt); free (qt);

    /* HTML rendering */
    const char *html = "<html><head><title>T</title><style>p{}</style></head><body>"
                       "<p>Hello&nbsp;<b>world</b> &amp; &lt;you&gt; &#233;&#x263A;</p>"
                       "<script>alert(1)</script><div>line2<br>line3</div>"
                       "<ul><li>one<li>two</ul><!-- c --> x &bogus; <3</body></html>";
    s = cm_html_to_text (html, strlen (html));
    s_check (s && strcmp (s, "Hello world & <you> \xC3\xA9\xE2\x98\xBA\n\nline2\nline3\n\n- one\n- two\n\nx &bogus; <3") == 0,
             "html to text", verbose);
    if (s && verbose)
        printf ("selftest: html -> [%s]\n", s);
    free (s);
    s = cm_html_to_text ("<p>unterminated <script>var x=1;", 32);
    s_check (s && strcmp (s, "unterminated") == 0, "html unterminated script", verbose);
    free (s);

    /* a full message: headers, bodies, attachments */
    const char *msg1 =
        "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <Joerg@Example.COM>\r\n"
        "To: Ann <ann@x.org>, bob@y.org, Team: c@z.org, d@z.org;\r\n"
        "Cc: \"Doe, John\" <jd@x.org>\r\n"
        "Subject: =?iso-8859-1?q?Gr=FC=DFe?= [INC-5]\r\n"
        "Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n"
        "Message-ID: <abc@example.com>\r\n"
        "In-Reply-To: <p1@x> <p2@x>\r\n"
        "References: <r1@x> <r2@x>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
        "\r\n"
        "--XX\r\n"
        "Content-Type: multipart/alternative; boundary=YY\r\n"
        "\r\n"
        "--YY\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "Sch=F6n\r\n"
        "--YY\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        "<p>Sch\xC3\xB6n</p>\r\n"
        "--YY--\r\n"
        "--XX\r\n"
        "Content-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment; filename*=UTF-8''..%2F..%2Fetc%2Fp%C3%A4sswd\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "aGVsbG8=\r\n"
        "--XX\r\n"
        "Content-Type: image/png; name=\"C:\\\\evil\\\\x\x01y.png\"\r\n"
        "Content-ID: <img1@x>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "iVBO\r\n"
        "--XX\r\n"
        "Content-Type: application/octet-stream; name=report.msg\r\n"
        "\r\n"
        "x\r\n"
        "--XX\r\n"
        "Content-Type: application/octet-stream; name=fwd.eml\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "U3ViamVjdDogaW5uZXIKRnJvbTogZXZpbEBiYWQub3JnCk1lc3NhZ2UtSUQ6IDxpbm5lckBiYWQ+\r\n"
        "CgpjbGljayBtZQo=\r\n"
        "--XX\r\n"
        "Content-Type: message/rfc822\r\n"
        "\r\n"
        "Subject: attached one\r\n"
        "From: x@y.org\r\n"
        "\r\n"
        "body\r\n"
        "--XX--\r\n";
    cm_message_t *m = s_parse_str (msg1, reason, sizeof reason);
    s_check (m != NULL, "parse msg1", verbose);
    if (m) {
        s_check (strcmp (m->subject, "Gr\xC3\xBC\xC3\x9F" "e [INC-5]") == 0, "msg1 subject 2047", verbose);
        s_check (strcmp (m->from_name, "J\xC3\xB6rg M\xC3\xBCller") == 0, "msg1 from name", verbose);
        s_check (strcmp (m->from_addr, "Joerg@example.com") == 0, "msg1 from addr domain lowercased", verbose);
        s_check (m->nto == 4 && strcmp (m->to_addrs [2], "c@z.org") == 0, "msg1 to incl. group", verbose);
        s_check (strcmp (m->cc, "\"Doe, John\" <jd@x.org>") == 0 && m->ncc == 1, "msg1 cc quoted", verbose);
        s_check (m->date_epoch == 1704189600LL, "msg1 date", verbose);
        s_check (m->message_id && strcmp (m->message_id, "abc@example.com") == 0, "msg1 message-id", verbose);
        s_check (m->in_reply_to && strcmp (m->in_reply_to, "p1@x") == 0, "msg1 in-reply-to", verbose);
        s_check (m->nreferences == 2 && strcmp (m->references [1], "r2@x") == 0, "msg1 references", verbose);
        s_check (strcmp (m->text, "Sch\xC3\xB6n\r\n") == 0 || strcmp (m->text, "Sch\xC3\xB6n\n") == 0
                 || strcmp (m->text, "Sch\xC3\xB6n") == 0, "msg1 text latin1 -> utf8", verbose);
        s_check (m->html && strstr (m->html, "<p>Sch\xC3\xB6n</p>"), "msg1 html", verbose);
        s_check (m->nattachments == 5, "msg1 five attachments", verbose);
        if (m->nattachments == 5) {
            cm_attachment_t *a = m->attachments;
            s_check (strcmp (a [0].filename, "p\xC3\xA4sswd") == 0, "msg1 rfc2231 name, no path", verbose);
            s_check (a [0].size == 5 && memcmp (a [0].data, "hello", 5) == 0, "msg1 base64 decoded", verbose);
            s_check (strcmp (a [0].sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824") == 0,
                     "msg1 sha256", verbose);
            s_check (strcmp (a [1].filename, "xy.png") == 0 && a [1].is_inline
                     && a [1].content_id && strcmp (a [1].content_id, "img1@x") == 0,
                     "msg1 inline image, windows path and control char", verbose);
            s_check (a [2].note && strstr (a [2].note, "MSG attachments are not supported"), "msg1 msg note", verbose);
            s_check (a [3].nested_index == 0 && m->nnested == 2
                     && strcmp (m->nested [0]->subject, "inner") == 0
                     && strcmp (m->nested [0]->from_addr, "evil@bad.org") == 0,
                     "msg1 .eml attachment parsed", verbose);
            s_check (a [4].nested_index == 1 && strcmp (a [4].filename, "attached one.eml") == 0
                     && m->nnested == 2 && strcmp (m->nested [1]->subject, "attached one") == 0,
                     "msg1 message/rfc822 parsed", verbose);
        }
        s_check (!m->auto_reply && !m->dsn && !m->encrypted, "msg1 not auto", verbose);
    }
    else if (verbose)
        printf ("selftest: reason: %s\n", reason);
    cm_message_destroy (&m);
    cm_message_destroy (&m);
    s_check (m == NULL, "destroy twice", verbose);

    /* HTML only, auto reply */
    m = s_parse_str ("From: a@b.c\nSubject: Automatic reply: hi\nAuto-Submitted: auto-replied\n"
                     "X-Auto-Response-Suppress: All\nContent-Type: text/html\n\n"
                     "<div>I am away</div><div>back Monday</div>\n", reason, sizeof reason);
    s_check (m && m->auto_reply && m->auto_reason
             && strncmp (m->auto_reason, "Auto-Submitted: auto-replied", 28) == 0,
             "auto reply by Auto-Submitted", verbose);
    s_check (m && strcmp (m->text, "I am away\nback Monday") == 0 && m->html, "html-only text rendering", verbose);
    cm_message_destroy (&m);
    m = s_parse_str ("From: a@b.c\nSubject: hi\nX-Auto-Response-Suppress: All\n\nbody\n", reason, sizeof reason);
    s_check (m && !m->auto_reply, "X-Auto-Response-Suppress alone is not auto", verbose);
    cm_message_destroy (&m);
    m = s_parse_str ("From: a@b.c\nSubject: hi\nAuto-Submitted: no\nPrecedence: bulk\n\nbody\n", reason, sizeof reason);
    s_check (m && m->auto_reply && strcmp (m->auto_reason, "Precedence: bulk") == 0, "precedence bulk", verbose);
    cm_message_destroy (&m);
    m = s_parse_str ("From: a@b.c\nSubject: Out of Office: back soon\n\nbody\n", reason, sizeof reason);
    s_check (m && m->auto_reply, "auto reply by subject", verbose);
    cm_message_destroy (&m);

    /* DSN */
    const char *dsn =
        "Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=R\n\n"
        "--R\nContent-Type: text/plain\n\nSorry.\n"
        "--R\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; nobody@example.org\n"
        "Action: failed\nStatus: 5.1.1 (user unknown)\n\n"
        "--R\nContent-Type: text/rfc822-headers\n\nFrom: us@casemail\n"
        "Message-ID:\n <orig-1@casemail>\nSubject: [INC-4]\n\n--R--\n";
    m = s_parse_str (dsn, reason, sizeof reason);
    s_check (m && m->dsn && m->null_return_path, "dsn detected", verbose);
    s_check (m && m->dsn_status && strcmp (m->dsn_status, "5.1.1") == 0
             && m->dsn_action && strcmp (m->dsn_action, "failed") == 0
             && m->dsn_recipient && strcmp (m->dsn_recipient, "nobody@example.org") == 0
             && m->dsn_original_message_id && strcmp (m->dsn_original_message_id, "orig-1@casemail") == 0,
             "dsn fields", verbose);
    s_check (m && m->ndsn_rcpts == 1 && strcmp (m->dsn_rcpts [0].recipient, "nobody@example.org") == 0
             && !m->dsn_rcpts [0].original && strcmp (m->dsn_rcpts [0].status, "5.1.1") == 0,
             "dsn recipient block", verbose);
    cm_message_destroy (&m);
    /* every per-recipient block, CRLF and all: one delivered, one failed
       (named by Original-Recipient too), one delayed */
    m = s_parse_str ("Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org\r\nSubject: Report\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n"
        "--R\r\nContent-Type: text/plain\r\n\r\nSome went.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\nArrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
        "Final-Recipient: rfc822; a@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
        "Original-Recipient: rfc822;B@example.org\r\nFinal-Recipient: rfc822; <b@mail.example.org>\r\n"
        "Action: FAILED\r\nStatus: 5.2.2 (mailbox full)\r\n \r\n"
        "Final-Recipient: rfc822; c@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        "--R\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <orig-2@casemail>\r\n\r\n--R--\r\n",
        reason, sizeof reason);
    s_check (m && m->dsn && m->ndsn_rcpts == 3, "dsn: three recipient blocks", verbose);
    s_check (m && m->ndsn_rcpts == 3
             && strcmp (m->dsn_rcpts [0].recipient, "a@example.org") == 0
             && strcmp (m->dsn_rcpts [0].action, "delivered") == 0
             && strcmp (m->dsn_rcpts [1].recipient, "b@mail.example.org") == 0
             && strcmp (m->dsn_rcpts [1].original, "B@example.org") == 0
             && strcmp (m->dsn_rcpts [1].action, "failed") == 0
             && strcmp (m->dsn_rcpts [1].status, "5.2.2") == 0
             && strcmp (m->dsn_rcpts [2].action, "delayed") == 0
             && strcmp (m->dsn_rcpts [2].status, "4.4.1") == 0
             && strcmp (m->dsn_status, "2.0.0") == 0,
             "dsn: each block's recipient, action and status", verbose);
    cm_message_destroy (&m);

    /* encryption and signatures */
    m = s_parse_str ("From: a@b.c\nSubject: s\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"
                     "Content-Transfer-Encoding: base64\n\nAAAA\n", reason, sizeof reason);
    s_check (!m && strcmp (reason, "encrypted email is not supported") == 0, "smime enveloped rejected", verbose);
    cm_message_destroy (&m);
    m = s_parse_str ("From: a@b.c\nSubject: s\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=E\n\n"
                     "--E\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--E\n"
                     "Content-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n--E--\n", reason, sizeof reason);
    s_check (!m && strcmp (reason, "encrypted email is not supported") == 0, "pgp/mime rejected", verbose);
    cm_message_destroy (&m);
    m = s_parse_str ("From: a@b.c\nSubject: s\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=S\n\n"
                     "--S\nContent-Type: text/plain\n\nsigned text\n--S\n"
                     "Content-Type: application/pgp-signature; name=signature.asc\n\nSIG\n--S--\n", reason, sizeof reason);
    s_check (m && m->signed_ && m->nattachments == 1 && strcmp (m->attachments [0].filename, "signature.asc") == 0
             && strcmp (m->attachments [0].content_type, "application/pgp-signature") == 0
             && strncmp (m->text, "signed text", 11) == 0, "pgp signed kept with signature", verbose);
    cm_message_destroy (&m);

    /* rejections */
    m = cm_message_parse ("", 0, NULL, reason, sizeof reason);
    s_check (!m && strcmp (reason, "not an email message: no header fields") == 0, "empty rejected", verbose);
    cm_limits_t small;
    cm_limits_default (&small);
    small.max_size = 10;
    m = cm_message_parse ("Subject: too long\n\n", 19, &small, reason, sizeof reason);
    s_check (!m && strcmp (reason, "message is 19 bytes, over the 10-byte limit") == 0, "size limit", verbose);
    cm_limits_default (&small);
    small.max_depth = 2;
    m = s_parse_str ("Subject: d\nContent-Type: multipart/mixed; boundary=a\n\n--a\n"
                     "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--a--\n", reason, sizeof reason);
    s_check (m != NULL, "depth 3 within default", verbose);
    cm_message_destroy (&m);
    const char *deep = "Subject: d\nContent-Type: multipart/mixed; boundary=a\n\n--a\n"
                       "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--a--\n";
    m = cm_message_parse (deep, strlen (deep), &small, reason, sizeof reason);
    s_check (!m && strcmp (reason, "MIME nesting deeper than 2 levels") == 0, "depth limit", verbose);

    /* RFC 2047: GMime decodes a run of same-charset words as one base64
       stream, so a padded word used to end the text ("Re: Üb") */
    m = s_parse_str ("From: =?UTF-8?B?SsO8cmc=?= =?UTF-8?B?ZW4gV2Vpw58=?= <jw@example.de>\n"
                     "To: =?UTF-8?B?QW5u?= =?utf-8?q?=C3=A9?= <ann@x.org>, =?UTF-8?B?w5w=?=\n"
                     " =?UTF-8?B?Yg==?= <b@x.org>\n"
                     "Subject: =?UTF-8?B?UmU6IMOcYg==?=\n =?UTF-8?B?ZXJ3ZWlzdW5nIFtJTkMtNDJd?=\n"
                     "Content-Type: multipart/mixed; boundary=W\n\n--W\n\nbody\n--W\n"
                     "Content-Type: application/zip; name=\"=?UTF-8?B?w5xiZXJ3ZQ==?= =?UTF-8?B?aXN1bmcuemlw?=\"\n\n"
                     "x\n--W--\n", reason, sizeof reason);
    s_check (m && strcmp (m->subject, "Re: \xC3\x9c" "berweisung [INC-42]") == 0
             && cm_subject_tag (m->subject, "INC") == 42, "2047 padded B word then another", verbose);
    if (m && verbose)
        printf ("selftest: subject [%s] from [%s] to [%s]\n", m->subject, m->from_name, m->to);
    s_check (m && strcmp (m->from_name, "J\xC3\xBCrgen Wei\xC3\x9F") == 0
             && strcmp (m->to, "Ann\xC3\xA9 <ann@x.org>, \xC3\x9c" "b <b@x.org>") == 0,
             "2047 padded B words in display names", verbose);
    s_check (m && m->nattachments == 1 && strcmp (m->attachments [0].filename, "\xC3\x9c" "berweisung.zip") == 0,
             "2047 padded B words in a file name", verbose);
    cm_message_destroy (&m);
    /* RFC 2231 file names in the charset supersets, as encoded words:
       Outlook's "iso-8859-1" Euro sign, CP932's circled one, CP949's
       extended hangul; sections and a quoted value; a byte the superset
       lacks (0x81 in CP1252) read under the label, as elsewhere */
    m = s_parse_str ("From: a@b.c\nSubject: s\nContent-Type: multipart/mixed; boundary=R\n\n--R\n\nbody\n"
                     "--R\nContent-Type: text/plain\n"
                     "Content-Disposition: attachment; filename*=iso-8859-1''%80uro.txt\n\nx\n"
                     "--R\nContent-Type: application/pdf\n"
                     "Content-Disposition: attachment;\n filename*=shift_jis''%87%40%95%5C.pdf\n\nx\n"
                     "--R\nContent-Type: application/pdf; name*=ks_c_5601-1987''%81%41.pdf\n\nx\n"
                     "--R\nContent-Type: text/plain\nContent-Disposition: attachment;\n"
                     " filename*0*=iso-8859-1''%80u; filename*1*=ro%E9;\n filename*2=\".t xt\"\n\nx\n"
                     "--R\nContent-Type: text/plain\n"
                     "Content-Disposition: attachment; filename*=\"Latin1'en'%80uro2.txt\"; size=1\n\nx\n"
                     "--R\nContent-Type: text/plain\n"
                     "Content-Disposition: attachment; filename*=iso-8859-1''%81x%80.txt\n\nx\n"
                     "--R\nContent-Type: text/plain\n"
                     "Content-Disposition: attachment; filename*=utf-8''%C3%A9t%C3%A9.txt\n\nx\n--R--\n",
                     reason, sizeof reason);
    static const char *const names_2231 [] = {
        "\xE2\x82\xAC" "uro.txt", "\xE2\x91\xA0\xE8\xA1\xA8.pdf", "\xEA\xB0\x82.pdf",
        "\xE2\x82\xAC" "uro\xC3\xA9.t xt", "\xE2\x82\xAC" "uro2.txt", "x.txt" /* C1 controls dropped */,
        "\xC3\xA9t\xC3\xA9.txt" };
    for (size_t i = 0; i < sizeof names_2231 / sizeof names_2231 [0]; i++) {
        const char *got = m && i < m->nattachments ? m->attachments [i].filename : "(none)";
        char what [160];
        snprintf (what, sizeof what, "2231 file name %zu in its charset's superset", i);
        s_check (strcmp (got, names_2231 [i]) == 0, what, verbose);
        if (verbose && strcmp (got, names_2231 [i]) != 0)
            printf ("selftest: 2231 name %zu [%s]\n", i, got);
    }
    cm_message_destroy (&m);
    /* a binary part keeps its bare CRs: they are line ends only in mail
       whose first line ends with one */
    static const char binary_mail [] =
        "From: a@b.c\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=Y\r\n\r\n--Y\r\n\r\nbody\r\n"
        "--Y\r\nContent-Type: application/octet-stream; name=a.bin\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n\x01\r\x02\r\r\n\x03\r\n--Y--\r\n";
    m = cm_message_parse (binary_mail, sizeof binary_mail - 1, NULL, reason, sizeof reason);
    s_check (m && m->nattachments == 1 && m->attachments [0].size == 7
             && memcmp (m->attachments [0].data, "\x01\r\x02\r\r\n\x03", 7) == 0,
             "binary part keeps its bare CRs", verbose);
    cm_message_destroy (&m);
    /* a character split across words, a padded word and a Latin-1 one */
    m = s_parse_str ("From: a@b.c\nSubject: =?UTF-8?B?aG51bmcg4g==?= =?UTF-8?B?gJMgc29mbw==?="
                     " =?iso-8859-1?q?_gr=FC=DF?= =?utf-8?q?_=C3?= =?utf-8?q?=A9?=\n\nbody\n", reason, sizeof reason);
    s_check (m && strcmp (m->subject, "hnung \xE2\x80\x93 sofo gr\xC3\xBC\xC3\x9F \xC3\xA9") == 0,
             "2047 character split across padded words", verbose);
    if (m && verbose)
        printf ("selftest: subject [%s]\n", m->subject);
    cm_message_destroy (&m);

    /* a blank text/plain alternative does not hide the HTML */
    m = s_parse_str ("From: a@b.c\nSubject: quota\nContent-Type: multipart/alternative; boundary=A\n\n"
                     "--A\nContent-Type: text/plain\n\n \n\n--A\nContent-Type: text/html\n\n"
                     "<p>Your mailbox is full. <a href=\"https://evil.example/q\">Click here</a></p>\n--A--\n",
                     reason, sizeof reason);
    s_check (m && strstr (m->text, "Your mailbox is full. Click here") && m->html,
             "blank text/plain alternative: text rendered from HTML", verbose);
    cm_message_destroy (&m);

    /* encrypted content below the top-level part is rejected too */
    static const char *const encrypted [][2] = {
        { "pgp/mime inside multipart/mixed rejected",
          "From: a@b.c\nSubject: s\nContent-Type: multipart/mixed; boundary=L\n\n"
          "--L\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=E\n\n"
          "--E\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--E\n"
          "Content-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\n--E--\n"
          "--L\nContent-Type: text/plain\n\nlist footer\n--L--\n" },
        { "smime enveloped next to a disclaimer rejected",
          "From: a@b.c\nSubject: s\nContent-Type: multipart/mixed; boundary=D\n\n"
          "--D\nContent-Type: application/x-pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"
          "Content-Disposition: attachment; filename=smime.p7m\n\nAAAA\n"
          "--D\nContent-Type: text/plain\n\ndisclaimer\n--D--\n" },
        { "signed over enveloped rejected",
          "From: a@b.c\nSubject: s\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=S\n\n"
          "--S\nContent-Type: application/x-pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n\nAAAA\n"
          "--S\nContent-Type: application/x-pkcs7-signature; name=smime.p7s\n\nAAAA\n--S--\n" },
        { "smime.p7m as application/octet-stream rejected",
          "From: a@b.c\nSubject: s\nContent-Type: application/octet-stream; name=smime.p7m\n"
          "Content-Transfer-Encoding: base64\n\nAAAA\n" },
    };
    for (size_t i = 0; i < sizeof encrypted / sizeof encrypted [0]; i++) {
        m = s_parse_str (encrypted [i][1], reason, sizeof reason);
        s_check (!m && strcmp (reason, "encrypted email is not supported") == 0,
                 encrypted [i][0], verbose);
        cm_message_destroy (&m);
    }
    m = s_parse_str ("From: a@b.c\nSubject: s\nContent-Type: multipart/mixed; boundary=O\n\n--O\n\nsee\n"
                     "--O\nContent-Type: application/octet-stream; smime-type=signed-data\n"
                     "Content-Disposition: attachment; filename=\"report.p7m\"\n\nAAAA\n--O--\n",
                     reason, sizeof reason);
    s_check (m && !m->encrypted && m->signed_ && m->nattachments == 1 && m->attachments [0].note,
             "octet-stream .p7m with smime-type=signed-data kept", verbose);
    cm_message_destroy (&m);
    m = s_parse_str ("From: a@b.c\nSubject: fw\nContent-Type: multipart/mixed; boundary=F\n\n--F\n\nlook\n"
                     "--F\nContent-Type: message/rfc822\n\nFrom: x@y.z\nSubject: enc\n"
                     "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\nAAAA\n--F--\n",
                     reason, sizeof reason);
    s_check (m && !m->encrypted && m->nnested == 1 && m->nested [0]->encrypted,
             "encrypted attached message kept, flagged inside", verbose);
    cm_message_destroy (&m);

    /* read receipts and a null return path are automatic */
    m = s_parse_str ("Return-Path: <>\nFrom: b@x.org\nSubject: Read: [INC-42] x\n"
                     "Content-Type: multipart/report; report-type=disposition-notification; boundary=M\n\n"
                     "--M\nContent-Type: text/plain\n\nread\n--M\nContent-Type: message/disposition-notification\n\n"
                     "Disposition: manual-action/MDN-sent-manually; displayed\n--M--\n", reason, sizeof reason);
    s_check (m && m->auto_reply && !m->dsn && m->auto_reason
             && strstr (m->auto_reason, "disposition-notification"), "read receipt is automatic", verbose);
    cm_message_destroy (&m);
    m = s_parse_str ("Return-Path: < >\nFrom: noreply@t.example\nSubject: Ticket #123 received\n\nbody\n",
                     reason, sizeof reason);
    s_check (m && m->auto_reply && m->auto_reason && strcmp (m->auto_reason, "Return-Path: <>") == 0,
             "null return path is automatic", verbose);
    cm_message_destroy (&m);
    m = s_parse_str (dsn, reason, sizeof reason);
    s_check (m && m->dsn && !m->auto_reply, "a bounce stays a bounce, not an auto-reply", verbose);
    cm_message_destroy (&m);

    /* bidi controls cannot disguise a file name */
    m = s_parse_str ("From: a@b.c\nSubject: s\nContent-Type: multipart/mixed; boundary=N\n\n--N\n\nsee\n"
                     "--N\nContent-Disposition: attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe\n\nx\n"
                     "--N\nContent-Disposition: attachment; filename*=utf-8''%E2%81%A6a%E2%80%8Eb%E2%80%8F%D8%9Cc%E2%81%A9%E2%80%AA.txt\n\nx\n"
                     "--N--\n", reason, sizeof reason);
    s_check (m && m->nattachments == 2 && strcmp (m->attachments [0].filename, "invoicefdp.exe") == 0
             && strcmp (m->attachments [1].filename, "abc.txt") == 0, "bidi controls dropped from file names", verbose);
    cm_message_destroy (&m);

    /* charset labels read as the superset senders use */
    m = s_parse_str ("From: a@b.c\nSubject: =?iso-8859-1?q?=80_5?= =?ks_c_5601-1987?b?gUE=?=\n"
                     "Content-Type: text/plain; charset=iso-8859-1\n\nprice \x80 5 \x93q\x94\n",
                     reason, sizeof reason);
    s_check (m && strcmp (m->subject, "\xE2\x82\xAC 5\xEA\xB0\x82") == 0, "encoded words: latin-1 as cp1252, ks_c as cp949", verbose);
    s_check (m && strcmp (m->text, "price \xE2\x82\xAC 5 \xE2\x80\x9Cq\xE2\x80\x9D\n") == 0, "body: latin-1 as cp1252", verbose);
    if (m && verbose)
        printf ("selftest: subject [%s] text [%s]\n", m->subject, m->text);
    cm_message_destroy (&m);
    static const struct { const char *label, *bytes, *utf8; } supersets [] = {
        { "us-ascii", "\x80", "\xE2\x82\xAC" }, { "iso-8859-9", "\x80", "\xE2\x82\xAC" },
        { "tis-620", "\x80", "\xE2\x82\xAC" }, { "euc-kr", "\x81\x41", "\xEA\xB0\x82" },
        { "shift_jis", "\x87\x40", "\xE2\x91\xA0" }, { "x-sjis", "\x87\x40", "\xE2\x91\xA0" },
        { "gb2312", "\x81\x30\x81\x30", "\xC2\x80" }, { "big5", "\x88\x56", "\xC4\x80" },
    };
    for (size_t i = 0; i < sizeof supersets / sizeof supersets [0]; i++) {
        char raw [256], what [96];
        snprintf (raw, sizeof raw, "From: a@b.c\nSubject: s\nContent-Type: text/plain; charset=%s\n\n%s\n",
                  supersets [i].label, supersets [i].bytes);
        snprintf (what, sizeof what, "body: %s read as its superset", supersets [i].label);
        m = s_parse_str (raw, reason, sizeof reason);
        char want [32];
        snprintf (want, sizeof want, "%s\n", supersets [i].utf8);
        s_check (m && strcmp (m->text, want) == 0, what, verbose);
        if (m && verbose && strcmp (m->text, want) != 0)
            printf ("selftest: %s -> [%s]\n", supersets [i].label, m->text);
        cm_message_destroy (&m);
    }
    /* text/html without a charset parameter: the page's <meta> names it */
    static const struct { const char *what, *raw, *text; } metas [] = {
        { "html meta http-equiv charset=shift_jis (read as CP932)",
          "Content-Type: text/html\n\n<html><head><meta http-equiv=\"Content-Type\" "
          "content=\"text/html; charset=shift_jis\"></head><body><p>\x82\xA8\x8B\x71\x97\x6C"
          " \x87\x40</p></body></html>\n",
          "\xE3\x81\x8A\xE5\xAE\xA2\xE6\xA7\x98 \xE2\x91\xA0" },
        { "html meta charset, unquoted, upper case",
          "Content-Type: text/html\n\n<HTML><HEAD><META CHARSET=Windows-1251></HEAD>"
          "<BODY>\xCF\xF0\xE8\xE2\xE5\xF2</BODY></HTML>\n",
          "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82" },
        { "html meta charset: valid UTF-8 stays UTF-8",
          "Content-Type: text/html\n\n<meta charset='windows-1251'><p>\xD0\x9F\xD1\x80</p>\n",
          "\xD0\x9F\xD1\x80" },
        { "html meta charset=utf-16 read as UTF-8 would be (HTML's rule)",
          "Content-Type: text/html\n\n<meta charset=\"utf-16\"><p>caf\xE9</p>\n",
          "caf\xC3\xA9" },
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas [0]; i++) {
        char raw [512];
        snprintf (raw, sizeof raw, "From: a@b.c\nSubject: s\n%s", metas [i].raw);
        m = s_parse_str (raw, reason, sizeof reason);
        s_check (m && strcmp (m->text, metas [i].text) == 0, metas [i].what, verbose);
        if (m && verbose && strcmp (m->text, metas [i].text) != 0)
            printf ("selftest: text [%s]\n", m->text);
        cm_message_destroy (&m);
    }

    /* HTML 4 named entities, HTML5's legacy forms without ';' */
    html = "<p>&oacute;&ntilde;&Eacute;&aring; &hearts;&rarr;&times;&euro;&mdash; "
           "&AMP;&LT;&GT;&QUOT; a&nbsp&amp;b &copy2024 &lt &notit; &Amp; &hearts "
           "&thetasym;&Omega;&lceil;&#146;&#150 &frac12x</p>";
    s = cm_html_to_text (html, strlen (html));
    const char *want = "\xC3\xB3\xC3\xB1\xC3\x89\xC3\xA5 \xE2\x99\xA5\xE2\x86\x92\xC3\x97"
                       "\xE2\x82\xAC\xE2\x80\x94 &<>\" a &b \xC2\xA9" "2024 < \xC2\xAC" "it; &Amp; &hearts "
                       "\xCF\x91\xCE\xA9\xE2\x8C\x88\xE2\x80\x99\xE2\x80\x93 \xC2\xBDx";
    s_check (s && strcmp (s, want) == 0, "html entities: HTML 4 names, legacy forms", verbose);
    if (s && verbose && strcmp (s, want) != 0)
        printf ("selftest: html -> [%s]\n", s);
    free (s);

    /* format=flowed (RFC 3676): soft breaks undone, delsp=yes and no */
    m = s_parse_str ("From: a@b.c\nSubject: s\n"
                     "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\n\n"
                     "It conti \nnues here, and  \nends.\n\n"
                     "> a quoted line that was  \n> wrapped.\n>> deeper \n> back\n"
                     " From stuffed\n-- \nsig\n", reason, sizeof reason);
    s_check (m && strcmp (m->text, "It continues here, and ends.\n\n"
                                   "> a quoted line that was wrapped.\n>> deeper\n> back\n"
                                   "From stuffed\n-- \nsig\n") == 0,
             "format=flowed; delsp=yes unwrapped", verbose);
    if (m && verbose)
        printf ("selftest: flowed [%s]\n", m->text);
    cm_message_destroy (&m);
    m = s_parse_str ("From: a@b.c\nSubject: s\nContent-Type: text/plain; format=flowed\n\n"
                     "Hello \r\nworld.\r\n\r\n>Quoted \r\n>text\r\n", reason, sizeof reason);
    s_check (m && strcmp (m->text, "Hello world.\r\n\r\n> Quoted text\r\n") == 0,
             "format=flowed; delsp=no unwrapped, CRLF kept", verbose);
    if (m && verbose)
        printf ("selftest: flowed [%s]\n", m->text);
    cm_message_destroy (&m);
    failures += cm_uu_selftest (verbose);
    failures += cm_calendar_selftest (verbose);
#undef s_check
    return failures ? -1 : 0;
}
