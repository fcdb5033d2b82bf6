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

/* Decodes the entity at html[i] ('&'); returns bytes consumed (0: literal). */
static size_t
s_entity (s_render_t *r, const char *html, size_t len, size_t i)
{
    static const struct { const char *name; uint32_t cp; } names [] = {
        { "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
        { "apos", '\'' }, { "nbsp", 0xA0 }, { "copy", 0xA9 },
        { "reg", 0xAE }, { "euro", 0x20AC }, { "ndash", 0x2013 },
        { "mdash", 0x2014 }, { "hellip", 0x2026 }, { "lsquo", 0x2018 },
        { "rsquo", 0x2019 }, { "ldquo", 0x201C }, { "rdquo", 0x201D },
        { "bull", 0x2022 }, { "middot", 0xB7 }, { "trade", 0x2122 },
        { "laquo", 0xAB }, { "raquo", 0xBB }, { "auml", 0xE4 },
        { "ouml", 0xF6 }, { "uuml", 0xFC }, { "Auml", 0xC4 },
        { "Ouml", 0xD6 }, { "Uuml", 0xDC }, { "szlig", 0xDF },
        { "eacute", 0xE9 }, { "egrave", 0xE8 }, { "agrave", 0xE0 },
        { "ccedil", 0xE7 }, { "shy", 0 }, { "zwnj", 0 }, { "zwj", 0 },
        { NULL, 0 } };
    size_t j = i + 1;
    size_t max = i + 12 < len ? i + 12 : len;
    while (j < max && html [j] != ';' && html [j] != '&' && html [j] != '<'
    && !isspace ((unsigned char) html [j]))
        j++;
    if (j >= max || html [j] != ';' || j == i + 1)
        return 0;
    const char *e = html + i + 1;
    size_t n = j - i - 1;
    if (e [0] == '#') {
        uint32_t cp = 0;
        size_t k = 1;
        bool hex = n > 1 && (e [1] == 'x' || e [1] == 'X');
        if (hex)
            k = 2;
        if (k >= n)
            return 0;
        for (; k < n; k++) {
            int c = (unsigned char) e [k], d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else
            if (hex && isxdigit (c))
                d = tolower (c) - 'a' + 10;
            else
                return 0;
            cp = cp * (hex ? 16 : 10) + (uint32_t) d;
            if (cp > 0x10FFFF)
                cp = 0x110000;
        }
        s_put_cp (r, cp);
        return j - i + 1;
    }
    for (int k = 0; names [k].name; k++)
        if (strlen (names [k].name) == n && memcmp (names [k].name, e, n) == 0) {
            if (names [k].cp)
                s_put_cp (r, names [k].cp);
            return j - i + 1;
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
