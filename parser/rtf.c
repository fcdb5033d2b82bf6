/*  parser/rtf.c: the RTF body of an Outlook "Rich Text" message, as a
    TNEF stream keeps it (PR_RTF_COMPRESSED), decompressed and read as
    text.
    Decompression ([MS-OXRTFCP]): a 16-byte header (COMPSIZE, the bytes
    after its own field; RAWSIZE; COMPTYPE "LZFu" or "MELA"; a CRC of the
    compressed bytes), then control bytes, each flagging the next eight
    items, low bit first: 0 a literal byte, 1 a 2-byte big-endian
    reference into a 4096-byte circular dictionary (12 bits offset, 4 bits
    length - 2) that starts with a fixed 207-byte RTF prefix. The
    reference whose offset is the write position ends the stream.
    Text: a flat reader over the RTF's tokens with a fixed stack of group
    states (no recursion), \'hh in the code page of the font in force
    (its \fcharsetN in the font table) else the document's (\ansicpg),
    skipping destinations that are not text
    (fonttbl, colortbl, stylesheet, info, pict, object, headers, every
    {\* ...} group). Outlook's encapsulated HTML ([MS-OXRTFEX],
    \fromhtml1) is the text of the {\*\htmltag} groups and the text
    outside \htmlrtf ... \htmlrtf0; it is rendered by cm_html_to_text, the
    renderer of HTML-only mail.
    Hostile input: every read is checked against what remains; output
    never passes RAWSIZE nor the caller's cap; a reference to a part of
    the dictionary never written, or a stream cut short, stops the
    decompression (what came out stands); a wrong CRC is counted, not
    fatal. Text grows at most a few bytes per input byte, and stops at
    the caller's max_out; 8-bit text is decoded in runs of bounded size.
    Ownership: see parser/rtf.h. Errors: -1 or NULL only out of memory. */
#include "rtf.h"
#include "message.h"
#include "../common/buf.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_HEADER     16
#define S_LZFU       0x75465A4Cu   /* "LZFu": compressed */
#define S_MELA       0x414C454Du   /* "MELA": stored as it is */
#define S_DICT       4096
#define S_DEPTH      64            /* group states kept (see cm_rtf_text) */

/* The dictionary's first bytes ([MS-OXRTFCP] 2.1.2.1), 207 of them. */
static const char s_prebuf [] =
    "{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
    "\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
    "{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx";
#define S_PREBUF (sizeof s_prebuf - 1)

static uint32_t
s_le32 (const unsigned char *b)
{
    return (uint32_t) b [0] | (uint32_t) b [1] << 8 | (uint32_t) b [2] << 16
         | (uint32_t) b [3] << 24;
}

/* [MS-OXRTFCP]'s CRC: CRC-32's polynomial, started at 0, not inverted. */
static uint32_t
s_crc (const unsigned char *b, size_t n)
{
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= b [i];
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? crc >> 1 ^ 0xEDB88320u : crc >> 1;
    }
    return crc;
}

static void
s_problem (cm_rtf_t *r, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
static void
s_problem (cm_rtf_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (r->problem, sizeof r->problem, fmt, ap);
    va_end (ap);
}

int
cm_rtf_decompress (const unsigned char *in, size_t len, size_t max_out, cm_rtf_t *r)
{
    memset (r, 0, sizeof *r);
    if (len < S_HEADER) {
        s_problem (r, "its header cut short");
        return 0;
    }
    uint32_t compsize = s_le32 (in), rawsize = s_le32 (in + 4), type = s_le32 (in + 8),
             crc = s_le32 (in + 12);
    if (type != S_LZFU && type != S_MELA) {
        s_problem (r, "not compressed RTF (type 0x%08X)", type);
        return 0;
    }
    if (compsize < S_HEADER - 4) {
        s_problem (r, "COMPSIZE %u smaller than its header", compsize);
        return 0;
    }
    if (rawsize > max_out) {
        s_problem (r, "its %u bytes go over the decoded-bytes budget", rawsize);
        return 0;
    }
    /* the bytes after the header, as many as COMPSIZE says and are there */
    const unsigned char *p = in + S_HEADER;
    size_t body = (size_t) compsize - (S_HEADER - 4), there = len - S_HEADER;
    bool cut = body > there;
    if (cut)
        body = there;

    if (type == S_MELA) {
        size_t n = rawsize < body ? rawsize : body;
        if (!(r->data = malloc (n ? n : 1)))
            return -1;
        memcpy (r->data, p, n);
        r->len = n;
        r->crc_wrong = crc != 0;    /* a stored body's CRC is 0 */
        if (n < rawsize)
            s_problem (r, "cut short: %zu of its %u bytes", n, rawsize);
        return 0;
    }

    r->crc_wrong = !cut && s_crc (p, body) != crc;
    /* a reference gives 17 bytes at most for 2 bytes and its flag: a
       RAWSIZE beyond that never comes out and is not allocated */
    size_t cap = rawsize;
    if (cap / 9 > body)
        cap = body * 9;
    if (!(r->data = malloc (cap ? cap : 1)))
        return -1;
    unsigned char dict [S_DICT];
    memcpy (dict, s_prebuf, S_PREBUF);
    memset (dict + S_PREBUF, 0, S_DICT - S_PREBUF);
    size_t wpos = S_PREBUF, written = S_PREBUF, out = 0, i = 0;
    bool end = false;
    while (!end && !r->problem [0]) {
        if (i >= body) {
            s_problem (r, "cut short before its end");
            break;
        }
        unsigned control = p [i++];
        for (int bit = 0; bit < 8 && !end && !r->problem [0]; bit++) {
            size_t offset, n;
            if (control & 1u << bit) {
                if (body - i < 2) {
                    s_problem (r, "cut short before its end");
                    break;
                }
                unsigned ref = (unsigned) p [i] << 8 | p [i + 1];
                i += 2;
                offset = ref >> 4;
                n = (ref & 0xF) + 2;
                if (offset == wpos) {
                    end = true;
                    break;
                }
            }
            else {
                if (i >= body) {
                    s_problem (r, "cut short before its end");
                    break;
                }
                offset = S_DICT;    /* a literal */
                n = 1;
            }
            for (size_t k = 0; k < n; k++) {
                unsigned char c;
                if (offset == S_DICT)
                    c = p [i++];
                else {
                    size_t at = (offset + k) % S_DICT;
                    if (written < S_DICT && at >= written) {
                        s_problem (r, "a reference to what was never written");
                        break;
                    }
                    c = dict [at];
                }
                if (out >= cap) {
                    s_problem (r, "longer than its RAWSIZE, %u bytes", rawsize);
                    break;
                }
                r->data [out++] = c;
                dict [wpos] = c;
                wpos = (wpos + 1) % S_DICT;
                if (written < S_DICT)
                    written++;
            }
        }
    }
    r->len = out;
    if (end && out != rawsize)
        s_problem (r, "%zu bytes where RAWSIZE says %u", out, rawsize);
    if (cut && !r->problem [0])
        s_problem (r, "COMPSIZE past the value");
    return 0;
}

void
cm_rtf_free (cm_rtf_t *r)
{
    free (r->data);
    memset (r, 0, sizeof *r);
}

/* ------------------------------------------------------------ text */

/* What a group says about the text in it. */
typedef struct {
    bool skip;            /* a destination that is not the body's text */
    bool htmltag;         /* {\*\htmltag}: the encapsulated page's HTML */
    bool htmlrtf;         /* between \htmlrtf and \htmlrtf0: RTF only */
    unsigned uc;          /* \ucN: stand-ins after \uN to skip */
    bool fonttbl;         /* inside the font table */
    long font;            /* \fN in force, -1 for the default (\deffN) */
} s_group_t;

#define S_FONTS 64        /* fonts whose charset is kept */

/* The code page of a font's \fcharsetN; 0 for the document's. */
static unsigned
s_charset_cp (long charset)
{
    static const struct { long charset; unsigned cp; } map [] = {
        { 77, 10000 }, { 128, 932 }, { 129, 949 }, { 130, 1361 }, { 134, 936 },
        { 136, 950 }, { 161, 1253 }, { 162, 1254 }, { 163, 1258 }, { 177, 1255 },
        { 178, 1256 }, { 186, 1257 }, { 204, 1251 }, { 222, 874 }, { 238, 1250 },
        { 254, 437 }, { 255, 850 }, { 0, 0 } };
    for (size_t i = 0; map [i].charset; i++)
        if (map [i].charset == charset)
            return map [i].cp;
    return 0;
}

/* 8-bit text is decoded a run at a time: a run longer than S_RUN ends
   at its next byte below 0x30, which is a character of its own in every
   Windows code page (no lead or trail byte of CP932, 936, 949, 950,
   1361 or GB18030 is below 0x30); one of S_RUN_MAX ends there (only
   hostile input, which may then lose a character). */
#define S_RUN        (64 * 1024)
#define S_RUN_MAX    (1024 * 1024)

typedef struct {
    cm_buf_t out;         /* UTF-8 */
    size_t max_out;       /* out's bytes at most */
    bool full;            /* out reached max_out: the rest is dropped */
    cm_buf_t bytes;       /* 8-bit text in bytes_cp, not yet in out */
    unsigned bytes_cp;
    unsigned codepage;    /* the document's (\ansicpg) */
    cm_rtf_decode_fn decode;
    void *state;          /* decode's */
    unsigned high;        /* a high surrogate waiting for its low half */
    bool oom;
} s_text_t;

/* Appends UTF-8 u[0..n) to the text, as much as max_out leaves room for,
   cut between characters. */
static void
s_out (s_text_t *t, const char *u, size_t n)
{
    if (t->full)
        return;
    if (n > t->max_out - t->out.len) {
        n = t->max_out - t->out.len;
        while (n && ((unsigned char) u [n] & 0xC0) == 0x80)
            n--;
        t->full = true;
    }
    if (cm_buf_append (&t->out, u, n))
        t->oom = true;
}

static void
s_flush_bytes (s_text_t *t)
{
    if (!t->bytes.len || t->oom)
        return;
    char *u = t->full ? NULL : t->decode (t->state, t->bytes.data, t->bytes.len, t->bytes_cp);
    if (u)
        s_out (t, u, strlen (u));
    else
    if (!t->full)
        t->oom = true;
    free (u);
    cm_buf_reset (&t->bytes);
}

static void
s_put_utf8 (s_text_t *t, uint32_t c)
{
    char u [4];
    s_out (t, u, cm_utf8_put (c, u));
}

/* A lone high surrogate becomes U+FFFD before anything else comes. */
static void
s_lone_high (s_text_t *t)
{
    if (t->high) {
        t->high = 0;
        s_put_utf8 (t, 0xFFFD);
    }
}

/* A byte of text in code page cp. */
static void
s_byte (s_text_t *t, unsigned char c, unsigned cp)
{
    if (t->high) {
        s_flush_bytes (t);
        s_lone_high (t);
    }
    if (t->bytes.len && (t->bytes_cp != cp || t->bytes.len >= S_RUN_MAX))
        s_flush_bytes (t);
    t->bytes_cp = cp;
    if (cm_buf_append (&t->bytes, &c, 1))
        t->oom = true;
    if (t->bytes.len >= S_RUN && c < 0x30)
        s_flush_bytes (t);
}

/* A character by its code point (\uN, \emdash...): controls dropped,
   surrogate halves paired. */
static void
s_char (s_text_t *t, uint32_t c)
{
    s_flush_bytes (t);
    if (c >= 0xDC00 && c < 0xE000 && t->high) {
        c = 0x10000 + ((t->high - 0xD800) << 10) + (c - 0xDC00);
        t->high = 0;
    }
    s_lone_high (t);
    if (c >= 0xD800 && c < 0xDC00) {
        t->high = c;
        return;
    }
    if (c >= 0xDC00 && c < 0xE000)
        c = 0xFFFD;
    if (c == '\n' || c == '\t' || !cm_text_control (c))
        s_put_utf8 (t, c);
}

/* True for a control word that opens a destination whose text is not
   the body's. */
static bool
s_destination (const char *w)
{
    static const char *const skip [] = {
        "fonttbl", "colortbl", "stylesheet", "info", "pict", "object", "objdata",
        "header", "headerl", "headerr", "headerf", "footer", "footerl", "footerr",
        "footerf", "listtable", "listoverridetable", "revtbl", "rsidtbl", "generator",
        "xmlnstbl", "themedata", "colorschememapping", "datastore", "latentstyles",
        "filetbl", "fldinst", "author", "operator", "title", "subject", "keywords",
        "comment", "doccomm", "company", "category", "manager", "hlinkbase",
        "bkmkstart", "bkmkend", "private", "userprops", "ftnsep", "ftnsepc",
        "aftnsep", "aftnsepc", "annotation", "atnid", "atnauthor", "pgdsctbl",
        "nonshppict", "mmathPr", "xe", "tc", "txe", NULL };
    for (size_t i = 0; skip [i]; i++)
        if (strcmp (w, skip [i]) == 0)
            return true;
    return false;
}

static int
s_hex (unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

char *
cm_rtf_text (const unsigned char *rtf, size_t len, size_t max_out, cm_rtf_decode_fn decode,
             void *state, bool *html_p, bool *cut_p)
{
    s_text_t t = { .codepage = 1252, .decode = decode, .state = state, .max_out = max_out };
    cm_buf_init (&t.out, 0);
    cm_buf_init (&t.bytes, 0);
    s_group_t g [S_DEPTH] = { { .uc = 1, .font = -1 } };
    struct { long num; unsigned cp; } fonts [S_FONTS];
    size_t nfonts = 0;
    long deff = -1, defining = -1;  /* \deffN; the font the table defines */
    size_t depth = 0;     /* g [depth] is the group being read */
    size_t deeper = 0;    /* groups past S_DEPTH: their text is dropped */
    bool html = false, group_start = false, star = false;
    unsigned fallback = 0;    /* stand-ins of a \uN still to skip */
    size_t i = 0;
    while (i < len && !t.oom && !t.full) {
        unsigned char c = rtf [i];
        s_group_t *gr = &g [depth];
        bool take = !deeper && !gr->skip && (gr->htmltag || !gr->htmlrtf);
        /* bytes are in the code page of the font in force (its
           \fcharsetN), else the document's; HTML tags in the document's */
        unsigned cp = t.codepage;
        long font = gr->font >= 0 ? gr->font : deff;
        for (size_t k = 0; !gr->htmltag && font >= 0 && k < nfonts; k++)
            if (fonts [k].num == font && fonts [k].cp)
                cp = fonts [k].cp;
        if (c == '{' || c == '}') {
            i++;
            fallback = 0;
            star = false;
            group_start = c == '{';
            if (c == '{' && (deeper || depth + 1 == S_DEPTH))
                deeper++;
            else
            if (c == '{') {
                g [depth + 1] = g [depth];
                depth++;
            }
            else
            if (deeper)
                deeper--;
            else
            if (depth)
                depth--;
            continue;
        }
        if (c == '\r' || c == '\n' || c == 0) {
            i++;
            continue;
        }
        if (c != '\\') {
            i++;
            group_start = false;
            if (fallback)
                fallback--;
            else
            if (take)
                s_byte (&t, c, cp);
            continue;
        }
        if (i + 1 >= len)
            break;
        unsigned char n = rtf [i + 1];
        bool alpha = (n >= 'a' && n <= 'z') || (n >= 'A' && n <= 'Z');
        if (!alpha) {
            /* a control symbol */
            i += 2;
            if (n == '*') {
                star = group_start;
                continue;
            }
            group_start = false;
            int hi, lo;
            if (n == '\'' && i + 2 <= len && (hi = s_hex (rtf [i])) >= 0
            &&  (lo = s_hex (rtf [i + 1])) >= 0) {
                i += 2;
                if (fallback)
                    fallback--;
                else
                if (take)
                    s_byte (&t, (unsigned char) (hi << 4 | lo), cp);
                continue;
            }
            if (fallback) {
                fallback--;
                continue;
            }
            if (!take)
                continue;
            if (n == '\\' || n == '{' || n == '}')
                s_byte (&t, n, cp);
            else
            if (n == '~')
                s_char (&t, 0xA0);
            else
            if (n == '_')
                s_char (&t, 0x2011);
            else
            if (n == '\r' || n == '\n')
                s_char (&t, '\n');
            continue;
        }
        /* a control word: letters (32 kept), an optional number, and a
           space that ends it */
        char word [33];
        size_t wl = 0, j = i + 1;
        for (; j < len && ((rtf [j] >= 'a' && rtf [j] <= 'z') || (rtf [j] >= 'A' && rtf [j] <= 'Z')); j++)
            if (wl < sizeof word - 1)
                word [wl++] = (char) rtf [j];
        word [wl] = 0;
        bool has_param = false, neg = false;
        long param = 0;
        if (j < len && rtf [j] == '-') {
            neg = true;
            j++;
        }
        for (; j < len && rtf [j] >= '0' && rtf [j] <= '9'; j++) {
            has_param = true;
            if (param < 100000000)
                param = param * 10 + (rtf [j] - '0');
        }
        if (neg)
            param = -param;
        if (j < len && rtf [j] == ' ')
            j++;
        i = j;
        bool first = group_start, starred = star;
        group_start = star = false;
        if (first && !deeper) {
            if (starred && html && strcmp (word, "htmltag") == 0) {
                gr->htmltag = true;
                continue;
            }
            if (starred || s_destination (word)) {
                gr->skip = true;
                gr->fonttbl = strcmp (word, "fonttbl") == 0;
                continue;
            }
        }
        if (strcmp (word, "bin") == 0) {
            /* binary data: skipped, within what remains */
            size_t skip = has_param && param > 0 ? (size_t) param : 0;
            i += skip < len - i ? skip : len - i;
            continue;
        }
        if (fallback) {
            fallback--;
            continue;
        }
        if (strcmp (word, "ansicpg") == 0 && has_param && param > 0)
            t.codepage = (unsigned) param;
        else
        if (strcmp (word, "mac") == 0 || strcmp (word, "pc") == 0 || strcmp (word, "pca") == 0)
            t.codepage = word [0] == 'm' ? 10000 : word [2] ? 850 : 437;
        else
        if (strcmp (word, "f") == 0 && has_param && !deeper) {
            if (gr->fonttbl)
                defining = param;
            else
                gr->font = param;
        }
        else
        if (strcmp (word, "fcharset") == 0 && has_param && gr->fonttbl && defining >= 0
        &&  nfonts < S_FONTS) {
            fonts [nfonts].num = defining;
            fonts [nfonts++].cp = s_charset_cp (param);
            defining = -1;
        }
        else
        if (strcmp (word, "deff") == 0 && has_param)
            deff = param;
        else
        if (strcmp (word, "fromhtml") == 0)
            html = true;
        else
        if (strcmp (word, "htmlrtf") == 0 && !deeper)
            gr->htmlrtf = !(has_param && param == 0);
        else
        if (strcmp (word, "uc") == 0 && !deeper)
            gr->uc = has_param && param >= 0 && param < 16 ? (unsigned) param : 1;
        else
        if (strcmp (word, "u") == 0 && has_param) {
            if (take)
                s_char (&t, (uint32_t) (param < 0 ? param + 65536 : param) & 0xFFFF);
            fallback = gr->uc;
        }
        else
        if (!take)
            continue;
        else
        if (strcmp (word, "par") == 0 || strcmp (word, "line") == 0 || strcmp (word, "sect") == 0
        ||  strcmp (word, "page") == 0 || strcmp (word, "row") == 0)
            s_char (&t, '\n');
        else
        if (strcmp (word, "tab") == 0 || strcmp (word, "cell") == 0)
            s_char (&t, '\t');
        else {
            static const struct { const char *word; uint32_t c; } chars [] = {
                { "emdash", 0x2014 }, { "endash", 0x2013 }, { "bullet", 0x2022 },
                { "lquote", 0x2018 }, { "rquote", 0x2019 }, { "ldblquote", 0x201C },
                { "rdblquote", 0x201D }, { "emspace", ' ' }, { "enspace", ' ' },
                { "qmspace", ' ' }, { NULL, 0 } };
            for (size_t k = 0; chars [k].word; k++)
                if (strcmp (word, chars [k].word) == 0)
                    s_char (&t, chars [k].c);
        }
    }
    s_flush_bytes (&t);
    s_lone_high (&t);
    cm_buf_free (&t.bytes);
    char *text = NULL;
    if (!t.oom) {
        size_t n = 0;
        char *out = cm_buf_take (&t.out, &n);
        if (out && html) {
            text = cm_html_to_text (out, n);
            free (out);
        }
        else
            text = out;
    }
    cm_buf_free (&t.out);
    if (html_p)
        *html_p = html;
    if (cut_p)
        *cut_p = t.full;
    return text;
}

/* ------------------------------------------------------------ self-test */

#include <iconv.h>

/* [MS-OXRTFCP] 3.1.1 and 3.1.2: the specification's two examples. */
static const unsigned char s_example1 [] = {
    0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5, 0xc7, 0xa7,
    0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42, 0x32, 0x0a, 0xf3, 0x20,
    0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0, 0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f,
    0xa0 };
static const char s_example1_rtf [] = "{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n";
static const unsigned char s_example2 [] = {
    0x1a, 0x00, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xe2, 0xd4, 0x4b, 0x51,
    0x41, 0x00, 0x04, 0x20, 0x57, 0x58, 0x59, 0x5a, 0x0d, 0x6e, 0x7d, 0x01, 0x0e, 0xb0 };
static const char s_example2_rtf [] = "{\\rtf1 WXYZWXYZWXYZWXYZWXYZ}";

/* A decoder for the tests: iconv from the code page. */
static char *
s_test_decode (void *state, const char *bytes, size_t len, unsigned codepage)
{
    (void) state;
    char cp [16];
    snprintf (cp, sizeof cp, "CP%u", codepage ? codepage : 1252);
    iconv_t cd = iconv_open ("UTF-8", cp);
    char *out = malloc (len * 4 + 1);
    if (cd == (iconv_t) -1 || !out) {
        if (cd != (iconv_t) -1)
            iconv_close (cd);
        free (out);
        return NULL;
    }
    char *in = (char *) bytes, *op = out;
    size_t inleft = len, outleft = len * 4;
    while (inleft && iconv (cd, &in, &inleft, &op, &outleft) == (size_t) -1) {
        in++;       /* a byte the code page lacks: dropped */
        inleft--;
    }
    *op = 0;
    iconv_close (cd);
    return out;
}

/* A stream from header fields and the bytes after the header. */
static size_t
s_stream (unsigned char *b, uint32_t compsize, uint32_t rawsize, uint32_t type, uint32_t crc,
          const unsigned char *body, size_t n)
{
    uint32_t v [4] = { compsize, rawsize, type, crc };
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++)
            b [k * 4 + j] = (unsigned char) (v [k] >> (8 * j));
    if (n)
        memcpy (b + S_HEADER, body, n);
    return S_HEADER + n;
}

#define s_check cm_message_check

/* The text of RTF given as a C string, compared with want. */
static int
s_text_is (const char *rtf, const char *want, bool want_html, const char *what, bool verbose)
{
    bool html = !want_html;
    char *text = cm_rtf_text ((const unsigned char *) rtf, strlen (rtf), 1 << 20, s_test_decode, NULL, &html, NULL);
    bool ok = text && strcmp (text, want) == 0 && html == want_html;
    if (!ok && verbose)
        printf ("selftest: rtf text [%s]\n", text ? text : "(null)");
    free (text);
    return s_check (ok, what, verbose);
}

int
cm_rtf_selftest (bool verbose)
{
    int failures = 0;
    cm_rtf_t r;

    /* the specification's examples, exactly */
    int rc = cm_rtf_decompress (s_example1, sizeof s_example1, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == strlen (s_example1_rtf)
                         && memcmp (r.data, s_example1_rtf, r.len) == 0 && !r.problem [0]
                         && !r.crc_wrong, "rtf: [MS-OXRTFCP] 3.1.1, literals and references"
                         " into the initial dictionary", verbose);
    cm_rtf_free (&r);
    rc = cm_rtf_decompress (s_example2, sizeof s_example2, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == strlen (s_example2_rtf)
                         && memcmp (r.data, s_example2_rtf, r.len) == 0 && !r.problem [0]
                         && !r.crc_wrong, "rtf: [MS-OXRTFCP] 3.1.2, a reference that crosses the"
                         " write position", verbose);
    cm_rtf_free (&r);

    /* a wrong CRC is counted, the RTF still comes out */
    unsigned char b [8192];
    memcpy (b, s_example1, sizeof s_example1);
    b [12] ^= 1;
    rc = cm_rtf_decompress (b, sizeof s_example1, 1 << 20, &r);
    failures += s_check (rc == 0 && r.crc_wrong && !r.problem [0] && r.len == strlen (s_example1_rtf)
                         && memcmp (r.data, s_example1_rtf, r.len) == 0,
                         "rtf: a wrong CRC is counted, not fatal", verbose);
    cm_rtf_free (&r);
    failures += s_check (s_crc ((const unsigned char *) "123456789", 9) == 0x2DFD2D88u
                         && s_crc (s_example2 + 16, sizeof s_example2 - 16) == 0x514BD4E2u,
                         "rtf: the CRC is CRC-32's, started at 0, not inverted", verbose);

    /* stored ("MELA"): as it is; its CRC must be 0 */
    size_t n = s_stream (b, 12 + 9, 9, S_MELA, 0, (const unsigned char *) "{\\rtf1 x}", 9);
    rc = cm_rtf_decompress (b, n, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == 9 && memcmp (r.data, "{\\rtf1 x}", 9) == 0
                         && !r.problem [0] && !r.crc_wrong, "rtf: MELA, stored as it is", verbose);
    cm_rtf_free (&r);
    n = s_stream (b, 12 + 9, 20, S_MELA, 7, (const unsigned char *) "{\\rtf1 x}", 9);
    rc = cm_rtf_decompress (b, n, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == 9 && r.crc_wrong
                         && strcmp (r.problem, "cut short: 9 of its 20 bytes") == 0,
                         "rtf: MELA shorter than RAWSIZE, its CRC not 0: read, noted", verbose);
    cm_rtf_free (&r);

    /* hostile streams */
    unsigned char ref [3] = { 0x01, 300 >> 4, (300 & 0xF) << 4 };   /* offset 300: never written */
    n = s_stream (b, 12 + 3, 10, S_LZFU, s_crc (ref, 3), ref, 3);
    rc = cm_rtf_decompress (b, n, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == 0 && !r.crc_wrong
                         && strcmp (r.problem, "a reference to what was never written") == 0,
                         "rtf: a reference past what was written stops it", verbose);
    cm_rtf_free (&r);
    unsigned char lit [5] = { 0x02, 'a', 0x00, 0x00, 0x00 };   /* 'a', then offset 0 length 2 */
    lit [2] = (unsigned char) ((S_PREBUF + 5) >> 4);            /* a reference ahead: never written */
    lit [3] = (unsigned char) ((S_PREBUF + 5) << 4);
    n = s_stream (b, 12 + 4, 10, S_LZFU, s_crc (lit, 4), lit, 4);
    rc = cm_rtf_decompress (b, n, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == 1 && r.data [0] == 'a'
                         && strstr (r.problem, "never written"),
                         "rtf: what came out before damage stands", verbose);
    cm_rtf_free (&r);
    memcpy (b, s_example1, sizeof s_example1);
    b [0] = 0xFF;   /* COMPSIZE past the value */
    rc = cm_rtf_decompress (b, sizeof s_example1, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == strlen (s_example1_rtf) && !r.crc_wrong
                         && strcmp (r.problem, "COMPSIZE past the value") == 0,
                         "rtf: a COMPSIZE that lies is read to the value's end, noted", verbose);
    cm_rtf_free (&r);
    b [0] = 3;
    rc = cm_rtf_decompress (b, sizeof s_example1, 1 << 20, &r);
    failures += s_check (rc == 0 && !r.data && strstr (r.problem, "smaller than its header"),
                         "rtf: a COMPSIZE shorter than the header", verbose);
    cm_rtf_free (&r);
    b [0] = 0x2d;
    b [4] = b [5] = b [6] = b [7] = 0xFF;       /* RAWSIZE 4 GB */
    rc = cm_rtf_decompress (b, sizeof s_example1, 1 << 20, &r);
    failures += s_check (rc == 0 && !r.data
                         && strcmp (r.problem, "its 4294967295 bytes go over the decoded-bytes budget") == 0,
                         "rtf: a RAWSIZE over the budget: nothing read, nothing allocated", verbose);
    cm_rtf_free (&r);
    rc = cm_rtf_decompress (b, sizeof s_example1, (size_t) -1, &r);
    failures += s_check (rc == 0 && r.len == strlen (s_example1_rtf)
                         && strcmp (r.problem, "43 bytes where RAWSIZE says 4294967295") == 0,
                         "rtf: a RAWSIZE the stream cannot give is not allocated, noted", verbose);
    cm_rtf_free (&r);
    b [4] = 10;
    b [5] = b [6] = b [7] = 0;
    rc = cm_rtf_decompress (b, sizeof s_example1, 1 << 20, &r);
    failures += s_check (rc == 0 && r.len == 10 && memcmp (r.data, s_example1_rtf, 10) == 0
                         && strcmp (r.problem, "longer than its RAWSIZE, 10 bytes") == 0,
                         "rtf: never more than RAWSIZE", verbose);
    cm_rtf_free (&r);
    n = s_stream (b, 12, 10, 0x12345678, 0, NULL, 0);
    rc = cm_rtf_decompress (b, n, 1 << 20, &r);
    failures += s_check (rc == 0 && !r.data && strcmp (r.problem, "not compressed RTF (type 0x12345678)") == 0,
                         "rtf: an unknown COMPTYPE", verbose);
    cm_rtf_free (&r);

    /* every cut of the examples, in a buffer of exactly that size (ASan
       sees an overread), stays in bounds and says it was cut */
    bool cuts_ok = true;
    for (int ex = 0; ex < 2; ex++) {
        const unsigned char *src = ex ? s_example2 : s_example1;
        size_t len = ex ? sizeof s_example2 : sizeof s_example1;
        for (size_t k = 0; k < len && cuts_ok; k++) {
            unsigned char *cut = malloc (k ? k : 1);
            memcpy (cut, src, k);
            if (cm_rtf_decompress (cut, k, 1 << 20, &r) || !r.problem [0])
                cuts_ok = false;
            cm_rtf_free (&r);
            free (cut);
        }
    }
    failures += s_check (cuts_ok, "rtf: every cut is read within bounds and noted", verbose);

    /* the dictionary wraps: 'A', then 300 references of 17 to the byte
       before, 5101 bytes in all, through the 4096-byte dictionary */
    cm_buf_t w;
    cm_buf_init (&w, 0);
    size_t wpos = S_PREBUF;
    cm_buf_append (&w, "\xFE" "A", 2);
    wpos++;
    int flags = 1;
    for (int k = 0; k < 301; k++) {
        if (flags == 8) {
            cm_buf_append (&w, "\xFF", 1);
            flags = 0;
        }
        unsigned v = k < 300 ? (unsigned) ((wpos + S_DICT - 1) % S_DICT) << 4 | 15
                             : (unsigned) wpos << 4;        /* the end */
        unsigned char two [2] = { (unsigned char) (v >> 8), (unsigned char) v };
        cm_buf_append (&w, two, 2);
        wpos = (wpos + 17) % S_DICT;
        flags++;
    }
    unsigned char *big = malloc (S_HEADER + w.len);
    n = s_stream (big, (uint32_t) (12 + w.len), 5101, S_LZFU,
                  s_crc ((const unsigned char *) w.data, w.len), (const unsigned char *) w.data, w.len);
    rc = cm_rtf_decompress (big, n, 1 << 20, &r);
    bool all_a = rc == 0 && r.len == 5101;
    for (size_t k = 0; all_a && k < r.len; k++)
        all_a = r.data [k] == 'A';
    failures += s_check (all_a && !r.problem [0] && !r.crc_wrong,
                         "rtf: past 4096 bytes the dictionary wraps", verbose);
    if (verbose && !all_a)
        printf ("selftest: rtf wrap %zu [%s]\n", r.len, r.problem);
    cm_rtf_free (&r);
    free (big);
    cm_buf_free (&w);

    /* the text */
    failures += s_text_is (s_example1_rtf, "hello world", false, "rtf text: the example's", verbose);
    failures += s_text_is ("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Arial;}}{\\colortbl;\\red1;}"
                           "{\\stylesheet{\\s1 Heading;}}{\\info{\\title T}}{\\*\\generator g}"
                           "{\\header head}{\\pict 01ff}{\\object{\\*\\objdata 0102}}"
                           "A\\par B\\line C\\tab D \\{x\\} \\\\ e\\~f\r\ng}",
                           "A\nB\nC\tD {x} \\ e\xC2\xA0" "fg", false,
                           "rtf text: destinations skipped, \\par \\line \\tab, escapes", verbose);
    failures += s_text_is ("{\\rtf1\\ansi\\ansicpg1251 \\'cf\\'f0\\'e8 caf}", "\xD0\x9F\xD1\x80\xD0\xB8 caf",
                           false, "rtf text: \\'hh in the \\ansicpg code page", verbose);
    failures += s_text_is ("{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss\\fcharset0 Arial;}"
                           "{\\f1\\fswiss\\fcharset204 Arial Cyr;}{\\f2\\fcharset161 Arial Greek;}}"
                           "caf\\'e9 {\\f1 \\'cf\\'f0\\'e8}\\'e9 \\f2\\'e1}",
                           "caf\xC3\xA9 \xD0\x9F\xD1\x80\xD0\xB8\xC3\xA9 \xCE\xB1", false,
                           "rtf text: \\'hh in the code page of the font's \\fcharset", verbose);
    failures += s_text_is ("{\\rtf1 caf\\'e9 {\\uc2\\u8364\\'80\\'80 x}\\u8364 ?y}",
                           "caf\xC3\xA9 \xE2\x82\xAC x\xE2\x82\xAC" "y", false,
                           "rtf text: \\uN skips its \\ucN stand-ins, \\ucN by group", verbose);
    failures += s_text_is ("{\\rtf1 \\u-10179?\\u-8704? \\u-10179?x \\u-8704?}",
                           "\xF0\x9F\x98\x80 \xEF\xBF\xBDx \xEF\xBF\xBD", false,
                           "rtf text: surrogate pairs joined, halves alone U+FFFD", verbose);
    failures += s_text_is ("{\\rtf1 a\\bin3 {}}b\\bin999999}", "ab", false,
                           "rtf text: \\bin data skipped, within what remains", verbose);
    failures += s_text_is ("{\\rtf1 \\u7?\\u27?\\u8238?ok\\u-1?}", "ok\xEF\xBF\xBF", false,
                           "rtf text: controls from \\uN dropped", verbose);
    failures += s_text_is ("{\\rtf1\\ansi\\fromhtml1 {\\*\\htmltag19 <html>}{\\*\\htmltag50 <body>}"
                           "{\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 One &amp; two\\htmlrtf }\\htmlrtf0 "
                           "{\\*\\htmltag72 </p>}\\htmlrtf \\par hidden\\htmlrtf0 {\\*\\mhtmltag64 <p>}"
                           "{\\*\\htmltag64 <p>}caf\\'e9{\\*\\htmltag72 </p>}}",
                           "One & two\n\ncaf\xC3\xA9", true,
                           "rtf text: encapsulated HTML through the HTML renderer", verbose);
    /* a control word of many letters, a number of many digits */
    cm_buf_init (&w, 0);
    cm_buf_append (&w, "{\\rtf1 \\", 8);
    for (int k = 0; k < 1000; k++)
        cm_buf_append (&w, "x", 1);
    cm_buf_append (&w, " a\\u99999999999999999999 ?b}", 28);
    char *text = cm_rtf_text ((const unsigned char *) w.data, w.len, 1 << 20, s_test_decode, NULL, NULL, NULL);
    failures += s_check (text && strncmp (text, "a", 1) == 0 && strstr (text, "b"),
                         "rtf text: long words and numbers are bounded", verbose);
    free (text);
    /* nesting far past the kept depth: no recursion, the deep text
       dropped, the shallow text kept */
    cm_buf_reset (&w);
    cm_buf_append (&w, "{\\rtf1 top", 10);
    for (int k = 0; k < 100000; k++)
        cm_buf_append (&w, "{", 1);
    cm_buf_append (&w, "deep", 4);
    for (int k = 0; k < 100000; k++)
        cm_buf_append (&w, "}", 1);
    cm_buf_append (&w, " end}", 5);
    bool cut_deep = true;
    text = cm_rtf_text ((const unsigned char *) w.data, w.len, 1 << 20, s_test_decode, NULL, NULL, &cut_deep);
    failures += s_check (text && strcmp (text, "top end") == 0 && !cut_deep,
                         "rtf text: groups 100000 deep read without recursion", verbose);
    free (text);
    /* the text stops at max_out, between characters: 8-bit bytes give
       three bytes each (CP1252 0x80, the euro sign) */
    cm_buf_reset (&w);
    cm_buf_append (&w, "{\\rtf1 ", 7);
    for (int k = 0; k < 300000; k++)
        cm_buf_append (&w, "\x80", 1);
    cm_buf_append (&w, "}", 1);
    bool cut = false;
    text = cm_rtf_text ((const unsigned char *) w.data, w.len, 1000, s_test_decode, NULL, NULL, &cut);
    bool euros = text && strlen (text) == 999 && cut;
    for (size_t k = 0; euros && k < 999; k += 3)
        euros = memcmp (text + k, "\xE2\x82\xAC", 3) == 0;
    failures += s_check (euros, "rtf text: stops at max_out, between characters, and says so", verbose);
    free (text);
    /* 8-bit text longer than a run is decoded in runs, ended at a byte
       below 0x30, nothing lost */
    cm_buf_reset (&w);
    cm_buf_append (&w, "{\\rtf1\\ansi\\ansicpg932 ", 22);
    for (int k = 0; k < 40000; k++)
        cm_buf_append (&w, "\x82\xA0 ", 3);     /* HIRAGANA LETTER A, space */
    cm_buf_append (&w, "}", 1);
    text = cm_rtf_text ((const unsigned char *) w.data, w.len, 1 << 20, s_test_decode, NULL, NULL, NULL);
    bool runs = text && strlen (text) == 40000 * 4;
    for (size_t k = 0; runs && k < 40000 * 4; k += 4)
        runs = memcmp (text + k, "\xE3\x81\x82 ", 4) == 0;
    failures += s_check (runs, "rtf text: long 8-bit text decoded in runs, none cut", verbose);
    free (text);
    /* every cut of a document is read within bounds */
    static const char doc [] = "{\\rtf1\\ansi\\ansicpg1252\\fromhtml1 {\\*\\htmltag64 <p>}"
                               "\\htmlrtf {\\htmlrtf0 x\\'e9\\u8364 ?\\bin2 ab}\\par}";
    bool cut_text_ok = true;
    for (size_t k = 0; k <= sizeof doc - 1; k++) {
        unsigned char *cut = malloc (k ? k : 1);
        memcpy (cut, doc, k);
        text = cm_rtf_text (cut, k, 1 << 20, s_test_decode, NULL, NULL, NULL);
        cut_text_ok = cut_text_ok && text;
        free (text);
        free (cut);
    }
    failures += s_check (cut_text_ok, "rtf text: every cut read within bounds", verbose);
    cm_buf_free (&w);
    return failures;
}
