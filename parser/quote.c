/*  parser/quote.c: text helpers of the parser: cutting quoted history off a
    reply (cm_quote_split) and rendering HTML as readable text
    (cm_html_to_text). Both work on UTF-8 in one linear pass with bounded
    look-ahead, so hostile bodies cost time proportional to their size.
    Results are malloc'd and owned by the caller; the only error is out of
    memory (NULL / -1). */
#include "message.h"
#include "../common/buf.h"
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- quotes */

typedef struct {
    const char *s;       /* line start, after leading blanks */
    size_t len;          /* without leading/trailing blanks and CR */
    size_t start;        /* offset of the raw line in the text */
    size_t next;         /* offset of the following line */
} s_line_t;

/* Reads the line at pos; false at the end of the text. */
static bool
s_line_at (const char *text, size_t len, size_t pos, s_line_t *line)
{
    if (pos >= len)
        return false;
    const char *nl = memchr (text + pos, '\n', len - pos);
    size_t end = nl ? (size_t) (nl - text) : len;
    line->start = pos;
    line->next = nl ? end + 1 : len;
    const char *s = text + pos;
    const char *e = text + end;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e [-1] == ' ' || e [-1] == '\t' || e [-1] == '\r'))
        e--;
    line->s = s;
    line->len = (size_t) (e - s);
    return true;
}

static bool
s_starts_ci (const s_line_t *l, const char *prefix)
{
    size_t n = strlen (prefix);
    return l->len >= n && strncasecmp (l->s, prefix, n) == 0;
}

static bool
s_ends_ci (const s_line_t *l, const char *suffix)
{
    size_t n = strlen (suffix);
    return l->len >= n && strncasecmp (l->s + l->len - n, suffix, n) == 0;
}

/* Case-insensitive (ASCII) search for needle in the line. */
static bool
s_contains_ci (const s_line_t *l, const char *needle)
{
    size_t n = strlen (needle);
    for (size_t i = 0; i + n <= l->len; i++)
        if (strncasecmp (l->s + i, needle, n) == 0)
            return true;
    return false;
}

/* "Sent:", "*Date:*", "Betreff:" ...: is the line one of these fields? */
static bool
s_is_field (const s_line_t *l, const char *const *names)
{
    s_line_t t = *l;
    while (t.len && t.s [0] == '*') {
        t.s++;
        t.len--;
    }
    for (int i = 0; names [i]; i++)
        if (s_starts_ci (&t, names [i]))
            return true;
    return false;
}

/* Outlook's quoted header block: From: then Sent:/Date: and To:/Subject:
   within the next few lines. */
static bool
s_is_outlook_block (const char *text, size_t len, const s_line_t *l)
{
    static const char *const from [] = {
        "From:", "Von:", "De:", "De :", "Van:", "Da:", "Från:", "Fra:", NULL };
    static const char *const date [] = {
        "Sent:", "Date:", "Gesendet:", "Envoyé :", "Envoyé:", "Verzonden:",
        "Inviato:", "Skickat:", "Sendt:", "Datum:", NULL };
    static const char *const other [] = {
        "To:", "Subject:", "An:", "Betreff:", "À :", "À:", "Objet :",
        "Objet:", "Aan:", "Onderwerp:", "A:", "Oggetto:", "Till:", "Ämne:",
        "Til:", "Emne:", "Cc:", NULL };
    if (!s_is_field (l, from))
        return false;
    bool have_date = false, have_other = false;
    s_line_t n;
    size_t pos = l->next;
    for (int i = 0; i < 6 && s_line_at (text, len, pos, &n); i++) {
        if (s_is_field (&n, date))
            have_date = true;
        else
        if (s_is_field (&n, other))
            have_other = true;
        pos = n.next;
    }
    return have_date && have_other;
}

/* Does a reply marker start at this line? */
static bool
s_is_marker (const char *text, size_t len, const s_line_t *l, bool prev_blank)
{
    if (l->len >= 20) {
        size_t i = 0;
        while (i < l->len && l->s [i] == '_')
            i++;
        if (i == l->len)
            return true;    /* Outlook separator */
    }
    if (l->len >= 2 && l->s [0] == '-' && l->s [1] == '-'
    && (s_contains_ci (l, "original message")
     || s_contains_ci (l, "ursprüngliche nachricht")
     || s_contains_ci (l, "message d'origine")
     || s_contains_ci (l, "oorspronkelijk bericht")))
        return true;
    s_line_t n;
    bool have_next = s_line_at (text, len, l->next, &n) && n.len < 200;
    if (s_starts_ci (l, "On ") && l->len < 300
    && (s_ends_ci (l, "wrote:") || (have_next && s_ends_ci (&n, "wrote:"))))
        return true;
    if (l->len >= 3 && strncmp (l->s, "Am ", 3) == 0 && l->len < 300
    && (s_contains_ci (l, "schrieb") || (have_next && s_contains_ci (&n, "schrieb"))))
        return true;
    if (l->len >= 3 && strncmp (l->s, "Le ", 3) == 0 && l->len < 300
    && (s_contains_ci (l, "a écrit") || (have_next && s_contains_ci (&n, "a écrit"))))
        return true;
    if (prev_blank && s_is_outlook_block (text, len, l))
        return true;
    return false;
}

/* Copies text[0..len) without trailing whitespace. */
static char *
s_copy_trimmed (const char *text, size_t len)
{
    while (len && isspace ((unsigned char) text [len - 1]))
        len--;
    char *copy = malloc (len + 1);
    if (copy) {
        memcpy (copy, text, len);
        copy [len] = 0;
    }
    return copy;
}

int
cm_quote_split (const char *text, char **new_text, char **quoted_text)
{
    *new_text = NULL;
    *quoted_text = NULL;
    if (!text)
        text = "";
    size_t len = strlen (text);
    size_t cut = len;
    s_line_t l;
    bool prev_blank = true;
    for (size_t pos = 0; s_line_at (text, len, pos, &l); pos = l.next) {
        if (s_is_marker (text, len, &l, prev_blank)) {
            cut = l.start;
            break;
        }
        prev_blank = l.len == 0;
    }
    /* Trailing block of "> " lines (blank lines allowed) before the cut. */
    size_t quote_from = cut;
    bool seen_quote = false;
    for (size_t pos = 0; s_line_at (text, cut, pos, &l); pos = l.next) {
        if (l.len && l.s [0] == '>') {
            if (!seen_quote)
                quote_from = l.start;
            seen_quote = true;
        }
        else
        if (l.len)
            seen_quote = false;
    }
    if (seen_quote)
        cut = quote_from;
    if (cut == len) {
        *new_text = strdup (text);
        return *new_text ? 0 : -1;
    }
    *new_text = s_copy_trimmed (text, cut);
    *quoted_text = s_copy_trimmed (text + cut, len - cut);
    if (!*new_text || !*quoted_text) {
        free (*new_text);
        free (*quoted_text);
        *new_text = *quoted_text = NULL;
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ HTML */

typedef struct {
    cm_buf_t out;
    int pending_nl;      /* line breaks owed before the next text */
    bool space;          /* a collapsed space is owed */
    bool pre;            /* inside <pre> */
} s_render_t;

static void
s_put (s_render_t *r, const char *s, size_t n)
{
    if (r->out.len) {
        if (r->pending_nl) {
            for (int i = 0; i < r->pending_nl; i++)
                cm_buf_append (&r->out, "\n", 1);
        }
        else
        if (r->space && r->out.data [r->out.len - 1] != '\n')
            cm_buf_append (&r->out, " ", 1);
    }
    r->pending_nl = 0;
    r->space = false;
    cm_buf_append (&r->out, s, n);
}

static void
s_put_cp (s_render_t *r, uint32_t cp)
{
    char u [4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp == 0xA0)
        cp = ' ';
    if (cp < 0x80) {
        u [0] = (char) cp;
        n = 1;
    }
    else
    if (cp < 0x800) {
        u [0] = (char) (0xC0 | (cp >> 6));
        u [1] = (char) (0x80 | (cp & 0x3F));
        n = 2;
    }
    else
    if (cp < 0x10000) {
        u [0] = (char) (0xE0 | (cp >> 12));
        u [1] = (char) (0x80 | ((cp >> 6) & 0x3F));
        u [2] = (char) (0x80 | (cp & 0x3F));
        n = 3;
    }
    else {
        u [0] = (char) (0xF0 | (cp >> 18));
        u [1] = (char) (0x80 | ((cp >> 12) & 0x3F));
        u [2] = (char) (0x80 | ((cp >> 6) & 0x3F));
        u [3] = (char) (0x80 | (cp & 0x3F));
        n = 4;
    }
    if (cp < 0x80 && (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r')
    && !r->pre) {
        r->space = true;
        return;
    }
    if (cp < 0x20 && cp != '\t' && cp != '\n')
        return;
    s_put (r, u, n);
}

/* A named character reference: the 252 of HTML 4.01 (Latin-1, symbols
   and Greek, special), &apos; and HTML5's upper-case &AMP; &COPY; &GT;
   &LT; &QUOT; &REG;. legacy: HTML5 also reads it without the ';'
   ("&nbsp", "&copy2024"). Sorted by name (bytewise) for bsearch. */
typedef struct {
    const char *name;
    uint32_t cp;
    bool legacy;
} s_entity_t;

static const s_entity_t s_entities [] = {
        { "AElig", 0xC6, 1 }, { "AMP", 0x26, 1 }, { "Aacute", 0xC1, 1 },
        { "Acirc", 0xC2, 1 }, { "Agrave", 0xC0, 1 }, { "Alpha", 0x391, 0 },
        { "Aring", 0xC5, 1 }, { "Atilde", 0xC3, 1 }, { "Auml", 0xC4, 1 },
        { "Beta", 0x392, 0 }, { "COPY", 0xA9, 1 }, { "Ccedil", 0xC7, 1 },
        { "Chi", 0x3A7, 0 }, { "Dagger", 0x2021, 0 }, { "Delta", 0x394, 0 },
        { "ETH", 0xD0, 1 }, { "Eacute", 0xC9, 1 }, { "Ecirc", 0xCA, 1 },
        { "Egrave", 0xC8, 1 }, { "Epsilon", 0x395, 0 }, { "Eta", 0x397, 0 },
        { "Euml", 0xCB, 1 }, { "GT", 0x3E, 1 }, { "Gamma", 0x393, 0 },
        { "Iacute", 0xCD, 1 }, { "Icirc", 0xCE, 1 }, { "Igrave", 0xCC, 1 },
        { "Iota", 0x399, 0 }, { "Iuml", 0xCF, 1 }, { "Kappa", 0x39A, 0 },
        { "LT", 0x3C, 1 }, { "Lambda", 0x39B, 0 }, { "Mu", 0x39C, 0 },
        { "Ntilde", 0xD1, 1 }, { "Nu", 0x39D, 0 }, { "OElig", 0x152, 0 },
        { "Oacute", 0xD3, 1 }, { "Ocirc", 0xD4, 1 }, { "Ograve", 0xD2, 1 },
        { "Omega", 0x3A9, 0 }, { "Omicron", 0x39F, 0 }, { "Oslash", 0xD8, 1 },
        { "Otilde", 0xD5, 1 }, { "Ouml", 0xD6, 1 }, { "Phi", 0x3A6, 0 },
        { "Pi", 0x3A0, 0 }, { "Prime", 0x2033, 0 }, { "Psi", 0x3A8, 0 },
        { "QUOT", 0x22, 1 }, { "REG", 0xAE, 1 }, { "Rho", 0x3A1, 0 },
        { "Scaron", 0x160, 0 }, { "Sigma", 0x3A3, 0 }, { "THORN", 0xDE, 1 },
        { "Tau", 0x3A4, 0 }, { "Theta", 0x398, 0 }, { "Uacute", 0xDA, 1 },
        { "Ucirc", 0xDB, 1 }, { "Ugrave", 0xD9, 1 }, { "Upsilon", 0x3A5, 0 },
        { "Uuml", 0xDC, 1 }, { "Xi", 0x39E, 0 }, { "Yacute", 0xDD, 1 },
        { "Yuml", 0x178, 0 }, { "Zeta", 0x396, 0 }, { "aacute", 0xE1, 1 },
        { "acirc", 0xE2, 1 }, { "acute", 0xB4, 1 }, { "aelig", 0xE6, 1 },
        { "agrave", 0xE0, 1 }, { "alefsym", 0x2135, 0 }, { "alpha", 0x3B1, 0 },
        { "amp", 0x26, 1 }, { "and", 0x2227, 0 }, { "ang", 0x2220, 0 },
        { "apos", 0x27, 0 }, { "aring", 0xE5, 1 }, { "asymp", 0x2248, 0 },
        { "atilde", 0xE3, 1 }, { "auml", 0xE4, 1 }, { "bdquo", 0x201E, 0 },
        { "beta", 0x3B2, 0 }, { "brvbar", 0xA6, 1 }, { "bull", 0x2022, 0 },
        { "cap", 0x2229, 0 }, { "ccedil", 0xE7, 1 }, { "cedil", 0xB8, 1 },
        { "cent", 0xA2, 1 }, { "chi", 0x3C7, 0 }, { "circ", 0x2C6, 0 },
        { "clubs", 0x2663, 0 }, { "cong", 0x2245, 0 }, { "copy", 0xA9, 1 },
        { "crarr", 0x21B5, 0 }, { "cup", 0x222A, 0 }, { "curren", 0xA4, 1 },
        { "dArr", 0x21D3, 0 }, { "dagger", 0x2020, 0 }, { "darr", 0x2193, 0 },
        { "deg", 0xB0, 1 }, { "delta", 0x3B4, 0 }, { "diams", 0x2666, 0 },
        { "divide", 0xF7, 1 }, { "eacute", 0xE9, 1 }, { "ecirc", 0xEA, 1 },
        { "egrave", 0xE8, 1 }, { "empty", 0x2205, 0 }, { "emsp", 0x2003, 0 },
        { "ensp", 0x2002, 0 }, { "epsilon", 0x3B5, 0 }, { "equiv", 0x2261, 0 },
        { "eta", 0x3B7, 0 }, { "eth", 0xF0, 1 }, { "euml", 0xEB, 1 },
        { "euro", 0x20AC, 0 }, { "exist", 0x2203, 0 }, { "fnof", 0x192, 0 },
        { "forall", 0x2200, 0 }, { "frac12", 0xBD, 1 }, { "frac14", 0xBC, 1 },
        { "frac34", 0xBE, 1 }, { "frasl", 0x2044, 0 }, { "gamma", 0x3B3, 0 },
        { "ge", 0x2265, 0 }, { "gt", 0x3E, 1 }, { "hArr", 0x21D4, 0 },
        { "harr", 0x2194, 0 }, { "hearts", 0x2665, 0 }, { "hellip", 0x2026, 0 },
        { "iacute", 0xED, 1 }, { "icirc", 0xEE, 1 }, { "iexcl", 0xA1, 1 },
        { "igrave", 0xEC, 1 }, { "image", 0x2111, 0 }, { "infin", 0x221E, 0 },
        { "int", 0x222B, 0 }, { "iota", 0x3B9, 0 }, { "iquest", 0xBF, 1 },
        { "isin", 0x2208, 0 }, { "iuml", 0xEF, 1 }, { "kappa", 0x3BA, 0 },
        { "lArr", 0x21D0, 0 }, { "lambda", 0x3BB, 0 }, { "lang", 0x2329, 0 },
        { "laquo", 0xAB, 1 }, { "larr", 0x2190, 0 }, { "lceil", 0x2308, 0 },
        { "ldquo", 0x201C, 0 }, { "le", 0x2264, 0 }, { "lfloor", 0x230A, 0 },
        { "lowast", 0x2217, 0 }, { "loz", 0x25CA, 0 }, { "lrm", 0x200E, 0 },
        { "lsaquo", 0x2039, 0 }, { "lsquo", 0x2018, 0 }, { "lt", 0x3C, 1 },
        { "macr", 0xAF, 1 }, { "mdash", 0x2014, 0 }, { "micro", 0xB5, 1 },
        { "middot", 0xB7, 1 }, { "minus", 0x2212, 0 }, { "mu", 0x3BC, 0 },
        { "nabla", 0x2207, 0 }, { "nbsp", 0xA0, 1 }, { "ndash", 0x2013, 0 },
        { "ne", 0x2260, 0 }, { "ni", 0x220B, 0 }, { "not", 0xAC, 1 },
        { "notin", 0x2209, 0 }, { "nsub", 0x2284, 0 }, { "ntilde", 0xF1, 1 },
        { "nu", 0x3BD, 0 }, { "oacute", 0xF3, 1 }, { "ocirc", 0xF4, 1 },
        { "oelig", 0x153, 0 }, { "ograve", 0xF2, 1 }, { "oline", 0x203E, 0 },
        { "omega", 0x3C9, 0 }, { "omicron", 0x3BF, 0 }, { "oplus", 0x2295, 0 },
        { "or", 0x2228, 0 }, { "ordf", 0xAA, 1 }, { "ordm", 0xBA, 1 },
        { "oslash", 0xF8, 1 }, { "otilde", 0xF5, 1 }, { "otimes", 0x2297, 0 },
        { "ouml", 0xF6, 1 }, { "para", 0xB6, 1 }, { "part", 0x2202, 0 },
        { "permil", 0x2030, 0 }, { "perp", 0x22A5, 0 }, { "phi", 0x3C6, 0 },
        { "pi", 0x3C0, 0 }, { "piv", 0x3D6, 0 }, { "plusmn", 0xB1, 1 },
        { "pound", 0xA3, 1 }, { "prime", 0x2032, 0 }, { "prod", 0x220F, 0 },
        { "prop", 0x221D, 0 }, { "psi", 0x3C8, 0 }, { "quot", 0x22, 1 },
        { "rArr", 0x21D2, 0 }, { "radic", 0x221A, 0 }, { "rang", 0x232A, 0 },
        { "raquo", 0xBB, 1 }, { "rarr", 0x2192, 0 }, { "rceil", 0x2309, 0 },
        { "rdquo", 0x201D, 0 }, { "real", 0x211C, 0 }, { "reg", 0xAE, 1 },
        { "rfloor", 0x230B, 0 }, { "rho", 0x3C1, 0 }, { "rlm", 0x200F, 0 },
        { "rsaquo", 0x203A, 0 }, { "rsquo", 0x2019, 0 }, { "sbquo", 0x201A, 0 },
        { "scaron", 0x161, 0 }, { "sdot", 0x22C5, 0 }, { "sect", 0xA7, 1 },
        { "shy", 0xAD, 1 }, { "sigma", 0x3C3, 0 }, { "sigmaf", 0x3C2, 0 },
        { "sim", 0x223C, 0 }, { "spades", 0x2660, 0 }, { "sub", 0x2282, 0 },
        { "sube", 0x2286, 0 }, { "sum", 0x2211, 0 }, { "sup", 0x2283, 0 },
        { "sup1", 0xB9, 1 }, { "sup2", 0xB2, 1 }, { "sup3", 0xB3, 1 },
        { "supe", 0x2287, 0 }, { "szlig", 0xDF, 1 }, { "tau", 0x3C4, 0 },
        { "there4", 0x2234, 0 }, { "theta", 0x3B8, 0 }, { "thetasym", 0x3D1, 0 },
        { "thinsp", 0x2009, 0 }, { "thorn", 0xFE, 1 }, { "tilde", 0x2DC, 0 },
        { "times", 0xD7, 1 }, { "trade", 0x2122, 0 }, { "uArr", 0x21D1, 0 },
        { "uacute", 0xFA, 1 }, { "uarr", 0x2191, 0 }, { "ucirc", 0xFB, 1 },
        { "ugrave", 0xF9, 1 }, { "uml", 0xA8, 1 }, { "upsih", 0x3D2, 0 },
        { "upsilon", 0x3C5, 0 }, { "uuml", 0xFC, 1 }, { "weierp", 0x2118, 0 },
        { "xi", 0x3BE, 0 }, { "yacute", 0xFD, 1 }, { "yen", 0xA5, 1 },
        { "yuml", 0xFF, 1 }, { "zeta", 0x3B6, 0 }, { "zwj", 0x200D, 0 },
        { "zwnj", 0x200C, 0 },
};

#define S_ENTITY_MAX 8          /* longest name: "thetasym" */
#define S_LEGACY_MAX 6          /* longest legacy name: "frac12" */

typedef struct {
    const char *s;
    size_t n;
} s_key_t;

static int
s_entity_cmp (const void *key, const void *elem)
{
    const s_key_t *k = key;
    const char *name = ((const s_entity_t *) elem)->name;
    size_t m = strlen (name);
    int c = memcmp (k->s, name, k->n < m ? k->n : m);
    return c ? c : k->n < m ? -1 : k->n > m ? 1 : 0;
}

static const s_entity_t *
s_entity_find (const char *s, size_t n)
{
    s_key_t key = { s, n };
    return bsearch (&key, s_entities, sizeof s_entities / sizeof s_entities [0],
                    sizeof s_entities [0], s_entity_cmp);
}

unsigned int
cm_cp1252_char (unsigned char byte)
{
    static const uint16_t c1 [32] = {
        0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
        0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
        0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
        0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178 };
    return byte >= 0x80 && byte <= 0x9F ? c1 [byte - 0x80] : byte;
}

/* Writes the character of a reference. Soft hyphens, zero-width joiners
   and direction marks only hide or reorder text: dropped. Numeric
   references to 0x80-0x9F mean Windows-1252, as in HTML5 ("&#146;" is a
   right quote, not a C1 control). */
static void
s_put_ref (s_render_t *r, uint32_t cp)
{
    if (cp >= 0x80 && cp <= 0x9F)
        cp = cm_cp1252_char ((unsigned char) cp);  /* 0: a byte it leaves out */
    if (cp == 0 || cp == 0xAD || (cp >= 0x200B && cp <= 0x200F))
        return;
    s_put_cp (r, cp);
}

/* Decodes the character reference at html[i] ('&') as HTML5 reads text:
   "&name;" for every name above, the legacy names also without ';'
   (longest match: "&notit;" is "¬it;"), "&#n;" / "&#xh;" with the ';'
   optional. Returns bytes consumed (0: a literal '&'). */
static size_t
s_entity (s_render_t *r, const char *html, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j < len && html [j] == '#') {
        j++;
        bool hex = j < len && (html [j] == 'x' || html [j] == 'X');
        if (hex)
            j++;
        size_t digits = j;
        uint32_t cp = 0;
        while (j < len && (hex ? isxdigit ((unsigned char) html [j])
                               : isdigit ((unsigned char) html [j]))) {
            int c = (unsigned char) html [j];
            uint32_t d = isdigit (c) ? (uint32_t) (c - '0') : (uint32_t) (tolower (c) - 'a' + 10);
            cp = cp * (hex ? 16 : 10) + d;
            if (cp > 0x10FFFF)
                cp = 0x110000;      /* stays out of range, no overflow */
            j++;
        }
        if (j == digits)
            return 0;
        if (j < len && html [j] == ';')
            j++;
        s_put_ref (r, cp == 0 ? 0xFFFD : cp);
        return j - i;
    }
    /* the name: letters and digits, as long as the longest known one */
    while (j < len && j - i - 1 <= S_ENTITY_MAX && isalnum ((unsigned char) html [j]))
        j++;
    size_t n = j - i - 1;
    if (n == 0)
        return 0;
    const s_entity_t *e = NULL;
    if (j < len && html [j] == ';' && n <= S_ENTITY_MAX
    && (e = s_entity_find (html + i + 1, n))) {
        s_put_ref (r, e->cp);
        return n + 2;
    }
    for (size_t k = n < S_LEGACY_MAX ? n : S_LEGACY_MAX; k >= 2; k--)
        if ((e = s_entity_find (html + i + 1, k)) && e->legacy) {
            s_put_ref (r, e->cp);
            return k + 1;
        }
    return 0;
}

/* Offset of the case-insensitive needle at or after from, or len. */
static size_t
s_find_ci (const char *hay, size_t len, size_t from, const char *needle)
{
    size_t n = strlen (needle);
    for (size_t i = from; i + n <= len; i++)
        if (tolower ((unsigned char) hay [i]) == needle [0]
        && strncasecmp (hay + i, needle, n) == 0)
            return i;
    return len;
}

static bool
s_in_list (const char *name, const char *const *list)
{
    for (int i = 0; list [i]; i++)
        if (strcmp (name, list [i]) == 0)
            return true;
    return false;
}

static void
s_break (s_render_t *r, int want)
{
    if (r->pending_nl < want)
        r->pending_nl = want;
}

char *
cm_html_to_text (const char *html, size_t len)
{
    static const char *const skip [] = {
        "script", "style", "head", "title", "template", "xml", "noscript",
        NULL };
    static const char *const para [] = {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote",
        "ul", "ol", "dl", "pre", "hr", NULL };
    static const char *const block [] = {
        "div", "tr", "li", "section", "article", "header", "footer", "dd",
        "dt", "address", "center", "form", "fieldset", "nav", "aside",
        "main", "figure", "caption", "thead", "tbody", "tfoot", "body",
        "html", NULL };
    const char *unclosed [] = { NULL, NULL };
    s_render_t r = { .pending_nl = 0 };
    cm_buf_init (&r.out, 0);
    if (!html)
        len = 0;
    size_t i = 0;
    while (i < len) {
        char c = html [i];
        if (c == '<') {
            if (len - i >= 4 && memcmp (html + i, "<!--", 4) == 0) {
                size_t e = s_find_ci (html, len, i + 4, "-->");
                i = e < len ? e + 3 : len;
                continue;
            }
            size_t j = i + 1;
            bool closing = false;
            if (j < len && html [j] == '/') {
                closing = true;
                j++;
            }
            char name [16];
            size_t n = 0;
            while (j < len && (isalpha ((unsigned char) html [j])
                   || (n && (isalnum ((unsigned char) html [j]) || html [j] == ':')))) {
                if (n < sizeof name - 1)
                    name [n++] = (char) tolower ((unsigned char) html [j]);
                j++;
            }
            name [n] = 0;
            if (n == 0 && !(j < len && (html [j] == '!' || html [j] == '?'))) {
                s_put (&r, "<", 1);    /* a literal '<' */
                i++;
                continue;
            }
            /* Find the tag's end, honouring quoted attribute values. */
            char quote = 0;
            while (j < len) {
                if (quote) {
                    if (html [j] == quote)
                        quote = 0;
                }
                else
                if (html [j] == '"' || html [j] == '\'')
                    quote = html [j];
                else
                if (html [j] == '>')
                    break;
                j++;
            }
            i = j < len ? j + 1 : len;
            if (!closing && s_in_list (name, skip) && !s_in_list (name, unclosed)) {
                char end [20] = "</";
                strcat (end, name);
                size_t e = s_find_ci (html, len, i, end);
                if (e < len) {
                    size_t gt = e;
                    while (gt < len && html [gt] != '>')
                        gt++;
                    i = gt < len ? gt + 1 : len;
                }
                else
                if (strcmp (name, "head") != 0)
                    i = len;    /* unterminated script/style: drop the rest */
                else
                    unclosed [0] = "head";  /* never search again: stays linear */
                continue;
            }
            if (strcmp (name, "br") == 0) {
                if (r.pending_nl < 2)
                    r.pending_nl++;
                if (!r.out.len)
                    r.pending_nl = 0;
            }
            else
            if (strcmp (name, "pre") == 0) {
                r.pre = !closing;
                s_break (&r, 2);
            }
            else
            if (s_in_list (name, para))
                s_break (&r, 2);
            else
            if (s_in_list (name, block)) {
                s_break (&r, 1);
                if (!closing && strcmp (name, "li") == 0) {
                    s_put (&r, "- ", 2);
                }
            }
            else
            if (strcmp (name, "td") == 0 || strcmp (name, "th") == 0)
                r.space = true;
            continue;
        }
        if (c == '&') {
            size_t used = s_entity (&r, html, len, i);
            if (used) {
                i += used;
                continue;
            }
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            if (r.pre && c != '\r') {
                if (c == '\n')
                    r.pending_nl++;
                else
                    s_put (&r, &c, 1);
            }
            else
                r.space = true;
            i++;
            continue;
        }
        if ((unsigned char) c < 0x20 || c == 0x7F) {
            i++;
            continue;
        }
        /* Copy a run of ordinary bytes at once. */
        size_t j = i + 1;
        while (j < len && html [j] != '<' && html [j] != '&'
        && (unsigned char) html [j] > 0x20 && html [j] != 0x7F)
            j++;
        s_put (&r, html + i, j - i);
        i = j;
    }
    return cm_buf_take (&r.out, NULL);
}
