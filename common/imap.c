/*  common/imap.c: IMAP client on libcurl (see imap.h).

    libcurl logs in on the control connection (CURLOPT_CONNECT_ONLY) and
    this file speaks IMAP on it with curl_easy_send/curl_easy_recv, waiting
    on the socket with poll(). Responses are cut into logical lines: a line
    that announces a literal {N} continues after exactly N bytes, and the
    literal is folded into the line as a quoted string, so parsers only see
    atoms, quoted strings, NIL and parentheses. Every line and literal is
    capped; a server that passes a cap breaks the session (it cannot be
    resynchronised safely). Message bodies are fetched by URL transfers on
    a second easy handle, never parsed here. */
#include "imap.h"
#include "mailcurl.h"
#include "buf.h"
#include "log.h"
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LINE_CAP        (64 * 1024)         /* one ordinary response line */
#define SEARCH_CAP      (16 * 1024 * 1024)  /* one SEARCH answer */
#define ESEARCH_MAX     (1u << 20)          /* UIDs kept of one ESEARCH set */
#define RECV_CHUNK      16384               /* one TLS record at most */
#define SLICE_MS        200                 /* how often *stop is checked */
#define IDLE_MIN_MS     1000                /* an IDLE the server ends sooner: poll */
#define NS_MAX          8                   /* prefixes kept per namespace */
#define NAME_MAX_LEN    1024                /* folder name on the wire */
#define CMD_MAX         4080                /* one command line, without its tag */
#define DEFAULT_TIMEOUT 15000

struct _cm_imap_t {
    CURL *ctl;                  /* control connection, CONNECT_ONLY */
    CURL *body;                 /* URL transfers of message bodies */
    curl_socket_t sock;         /* socket of ctl */
    char *host;                 /* copies for messages and URLs */
    char *protocol;
    char *username;
    char *route;
    bool verbose;               /* route log level is verbose */
    int port;
    long timeout_ms;            /* connect timeout */
    char base_url [600];        /* scheme://host:port/ */
    char *folder;               /* selected folder, UTF-8 as given */
    char *folder_wire;          /* the same in modified UTF-7 */
    char *folder_url;           /* folder_wire percent-encoded */
    cm_mailcurl_ctx_t ctl_ctx;  /* debug context of ctl */
    cm_mailcurl_ctx_t body_ctx; /* debug context of body */
    struct s_meta *meta;        /* FLAGS and sizes of the prefetched batch */
    bool body_ro;               /* body session EXAMINEd: BODY[] sets no \Seen */
    bool size_unreliable;       /* the server's RFC822.SIZE is not its messages' */
    size_t body_news;           /* flag changes and moves made on the control
                                   session that the body session hasn't seen */
    size_t body_logins;         /* logins of the body session so far */
    size_t body_examines;       /* EXAMINEs on it so far */
    uint64_t *unsee;            /* fetched with peek, were unread: to restore */
    size_t nunsee, unsee_cap;
    size_t nmeta;
    cm_buf_t in;                /* received bytes not yet cut into lines */
    size_t hint;                /* where the search for LF resumes in `in` */
    cm_buf_t line;              /* the current logical line */
    unsigned tag;               /* number of the last tag sent */
    char last_tagged [512];     /* text of the last tagged answer */
    bool cap_idle;              /* capabilities after login */
    bool cap_move;
    bool cap_uidplus;
    bool cap_namespace;
    bool preauth;               /* greeted PREAUTH: no credentials sent */
    char personal [256];        /* the personal namespace's prefix when
                                   every one has one ("INBOX."), else "" */
    uint64_t uidvalidity;       /* from SELECT */
    uint64_t uidnext;
    uint64_t exists;            /* EXISTS count, kept up to date */
    bool new_mail;              /* EXISTS grew since the last wait() */
    bool broken;                /* I/O failed or BYE: no more commands */
    bool logging_out;           /* BYE is expected */
    char bye [256];             /* text of an unsolicited BYE */
    char why [160];             /* why we broke the session ourselves */
};

/* ---------------------------------------------------------------------- */
/*  Pure helpers: encoders and parsers (covered by the self-test)         */
/* ---------------------------------------------------------------------- */

/* UTF-8 to IMAP modified UTF-7 (RFC 3501 5.1.3). -1 on invalid UTF-8,
   control characters or a too small out. */
static int
s_mutf7_encode (const char *in, char *out, size_t outlen)
{
    static const char b64 [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    const unsigned char *p = (const unsigned char *) in;
    size_t o = 0;
    bool open = false;
    uint32_t bits = 0;
    int nbits = 0;
#define PUT(c) do { if (o + 1 >= outlen) return -1; out [o++] = (char) (c); } while (0)
    while (1) {
        uint32_t cp;
        int extra;
        if (*p == 0)
            cp = 0, extra = 0;
        else if (*p < 0x80)
            cp = *p, extra = 0;
        else if ((*p & 0xE0) == 0xC0)
            cp = *p & 0x1F, extra = 1;
        else if ((*p & 0xF0) == 0xE0)
            cp = *p & 0x0F, extra = 2;
        else if ((*p & 0xF8) == 0xF0)
            cp = *p & 0x07, extra = 3;
        else
            return -1;
        for (int i = 1; i <= extra; i++) {
            if ((p [i] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (p [i] & 0x3F);
        }
        if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800)
            || (extra == 3 && cp < 0x10000) || cp > 0x10FFFF
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        bool direct = cp == 0 || (cp >= 0x20 && cp <= 0x7E);
        if (direct && open) {
            if (nbits > 0)
                PUT (b64 [(bits << (6 - nbits)) & 0x3F]);
            PUT ('-');
            open = false;
            nbits = 0;
            bits = 0;
        }
        if (cp == 0)
            break;
        if (cp < 0x20 || cp == 0x7F)
            return -1;
        if (direct) {
            PUT (cp);
            if (cp == '&')
                PUT ('-');
        }
        else {
            if (!open) {
                PUT ('&');
                open = true;
            }
            uint16_t units [2];
            int nunits = 1;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                units [0] = (uint16_t) (0xD800 | (cp >> 10));
                units [1] = (uint16_t) (0xDC00 | (cp & 0x3FF));
                nunits = 2;
            }
            else
                units [0] = (uint16_t) cp;
            for (int u = 0; u < nunits; u++) {
                bits = (bits << 16) | units [u];
                nbits += 16;
                while (nbits >= 6) {
                    PUT (b64 [(bits >> (nbits - 6)) & 0x3F]);
                    nbits -= 6;
                }
                bits &= (1u << nbits) - 1;
            }
        }
        p += extra + 1;
    }
#undef PUT
    out [o] = 0;
    return 0;
}

/* Quotes s as an IMAP quoted string; -1 if out is too small. */
static int
s_quote (const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen < 3)
        return -1;
    out [o++] = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            if (o + 2 >= outlen)
                return -1;
            out [o++] = '\\';
        }
        if (o + 2 >= outlen)
            return -1;
        out [o++] = *s;
    }
    out [o++] = '"';
    out [o] = 0;
    return 0;
}

/* Percent-encodes everything but RFC 3986 unreserved characters. */
static int
s_url_escape (const char *s, char *out, size_t outlen)
{
    static const char hex [] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
        if (isalnum (*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            if (o + 1 >= outlen)
                return -1;
            out [o++] = (char) *p;
        }
        else {
            if (o + 3 >= outlen)
                return -1;
            out [o++] = '%';
            out [o++] = hex [*p >> 4];
            out [o++] = hex [*p & 15];
        }
    }
    if (o >= outlen)
        return -1;
    out [o] = 0;
    return 0;
}

/* "YYYY-MM-DD" to the IMAP date "D-Mon-YYYY"; -1 if malformed. */
static int
s_imap_date (const char *iso, char *out, size_t outlen)
{
    static const char *mon [] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    if (!iso || strlen (iso) != 10 || iso [4] != '-' || iso [7] != '-')
        return -1;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit ((unsigned char) iso [i]))
            return -1;
    int y = atoi (iso), m = atoi (iso + 5), d = atoi (iso + 8);
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    snprintf (out, outlen, "%d-%s-%04d", d, mon [m - 1], y);
    return 0;
}

/* Parses a decimal uint64 at *p (no sign); advances *p. -1 if none. */
static int
s_number (const char **p, uint64_t *value)
{
    const char *s = *p;
    uint64_t v = 0;
    if (!isdigit ((unsigned char) *s))
        return -1;
    while (isdigit ((unsigned char) *s)) {
        unsigned d = (unsigned) (*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *value = v;
    return 0;
}

/* If text[0..len) ends with a literal announcement "{N}" or "{N+}", sets
   *n and *open (index of '{') and returns true. */
static bool
s_literal_at_end (const char *text, size_t len, uint64_t *n, size_t *open)
{
    if (len < 3 || text [len - 1] != '}')
        return false;
    size_t i = len - 1;
    if (i > 0 && text [i - 1] == '+')
        i--;
    size_t digits_end = i;
    while (i > 0 && isdigit ((unsigned char) text [i - 1]))
        i--;
    if (i == digits_end || i == 0 || text [i - 1] != '{'
        || digits_end - i > 19)
        return false;
    uint64_t v = 0;
    for (size_t k = i; k < digits_end; k++)
        v = v * 10 + (uint64_t) (text [k] - '0');
    *n = v;
    *open = i - 1;
    return true;
}

/* Cuts one logical response line from in into out (without CRLF; each
   literal replaced by a quoted string of its bytes, with NUL, CR and LF
   shown as '?'). 1 a line was cut, 0 more bytes are needed, -1 the line
   or a literal passes cap. *hint: where the LF search resumes (internal
   state, start with 0). */
static int
s_cut_line (cm_buf_t *in, size_t *hint, size_t cap, cm_buf_t *out)
{
    size_t seg = 0;
    cm_buf_reset (out);
    while (1) {
        size_t from = seg > *hint ? seg : *hint;
        const char *lf = from < in->len
                       ? memchr (in->data + from, '\n', in->len - from) : NULL;
        if (!lf) {
            /* past a literal, the search starts again at the line's start
               (a resumed search would skip the LF that announced it) */
            *hint = seg == 0 ? in->len : 0;
            if (in->len > seg && in->len - seg > cap)
                return -1;
            return 0;
        }
        size_t eol = (size_t) (lf - in->data);
        size_t end = eol;
        if (end > seg && in->data [end - 1] == '\r')
            end--;
        uint64_t n;
        size_t open;
        if (s_literal_at_end (in->data + seg, end - seg, &n, &open)) {
            if (n > cap)
                return -1;
            size_t lstart = eol + 1;
            if (in->len - lstart < n) {
                *hint = 0;     /* earlier segments are re-read next time */
                return 0;
            }
            if (cm_buf_append (out, in->data + seg, open)
                || cm_buf_append (out, "\"", 1))
                return -1;
            for (size_t k = 0; k < n; k++) {
                char c = in->data [lstart + k];
                if (c == 0 || c == '\r' || c == '\n')
                    c = '?';
                if ((c == '"' || c == '\\') && cm_buf_append (out, "\\", 1))
                    return -1;
                if (cm_buf_append (out, &c, 1))
                    return -1;
            }
            if (cm_buf_append (out, "\"", 1) || out->len > cap)
                return -1;
            seg = lstart + (size_t) n;
            continue;
        }
        if (cm_buf_append (out, in->data + seg, end - seg) || out->len > cap)
            return -1;
        size_t consumed = eol + 1;
        memmove (in->data, in->data + consumed, in->len - consumed);
        in->len -= consumed;
        in->data [in->len] = 0;
        *hint = 0;
        /* a NUL from the peer would hide the rest of the line: show it */
        for (size_t k = 0; k < out->len; k++)
            if (out->data [k] == 0)
                out->data [k] = '?';
        return 1;
    }
}

typedef enum { T_END, T_ATOM, T_STRING, T_NIL, T_LP, T_RP, T_ERR } s_tok_t;

/* Reads one token at *p into out (atoms and unescaped strings). */
static s_tok_t
s_token (const char **p, char *out, size_t outlen)
{
    const char *s = *p;
    size_t o = 0;
    while (*s == ' ')
        s++;
    if (outlen)
        out [0] = 0;
    if (!*s) {
        *p = s;
        return T_END;
    }
    if (*s == '(' || *s == ')') {
        *p = s + 1;
        return *s == '(' ? T_LP : T_RP;
    }
    if (*s == '"') {
        s++;
        while (*s && *s != '"') {
            if (*s == '\\' && s [1])
                s++;
            if (o + 1 >= outlen)
                return T_ERR;
            out [o++] = *s++;
        }
        if (*s != '"')
            return T_ERR;
        out [o] = 0;
        *p = s + 1;
        return T_STRING;
    }
    while (*s && *s != ' ' && *s != '(' && *s != ')' && *s != '"') {
        if (o + 1 >= outlen)
            return T_ERR;
        out [o++] = *s++;
    }
    out [o] = 0;
    *p = s;
    return strcasecmp (out, "NIL") == 0 ? T_NIL : T_ATOM;
}

/* Skips one value: atom, string, NIL or a balanced list. -1 if malformed. */
static int
s_skip_value (const char **p)
{
    char tok [256];
    int depth = 0;
    do {
        const char *before = *p;
        s_tok_t t = s_token (p, tok, sizeof tok);
        if (t == T_ERR) {
            /* long atom or string: skip it without keeping it */
            const char *s = before;
            while (*s == ' ')
                s++;
            if (*s == '"') {
                s++;
                while (*s && *s != '"')
                    s += (*s == '\\' && s [1]) ? 2 : 1;
                if (!*s)
                    return -1;
                s++;
            }
            else
                while (*s && *s != ' ' && *s != '(' && *s != ')')
                    s++;
            *p = s;
            continue;
        }
        if (t == T_END)
            return -1;
        if (t == T_LP && ++depth > 32)
            return -1;
        if (t == T_RP && --depth < 0)
            return -1;
    } while (depth > 0);
    return 0;
}

/* The response code "[CODE arg]" of a status text, or "" */
static void
s_resp_code (const char *text, char *code, size_t codelen, char *arg,
             size_t arglen)
{
    code [0] = 0;
    arg [0] = 0;
    while (*text == ' ')
        text++;
    if (*text != '[')
        return;
    text++;
    size_t i = 0;
    while (*text && *text != ' ' && *text != ']' && i + 1 < codelen)
        code [i++] = *text++;
    code [i] = 0;
    if (*text == ' ') {
        text++;
        i = 0;
        while (*text && *text != ']' && i + 1 < arglen)
            arg [i++] = *text++;
        arg [i] = 0;
    }
}

/* Appends v to the growing array. -1 out of memory. */
static int
s_add_uid (uint64_t v, uint64_t **uids, size_t *count, size_t *alloc)
{
    if (*count == *alloc) {
        size_t want = *alloc ? *alloc * 2 : 256;
        uint64_t *grown = realloc (*uids, want * sizeof (uint64_t));
        if (!grown)
            return -1;
        *uids = grown;
        *alloc = want;
    }
    (*uids) [(*count)++] = v;
    return 0;
}

static int
s_cmp_range (const void *a, const void *b)
{
    uint64_t x = ((const uint64_t *) a) [0], y = ((const uint64_t *) b) [0];
    return x < y ? -1 : x > y;
}

/* A UID of a search answer: a number 1 to 2^32 - 1 (RFC 3501: a UID is
   a nonzero 32-bit number). -1, p unmoved, for anything else ("*" too: a
   search answers the UIDs it found, not "the highest"). */
static int
s_search_uid (const char **p, uint64_t *value)
{
    const char *s = *p;
    uint64_t v;
    if (s_number (&s, &v) || v == 0 || v > UINT32_MAX)
        return -1;
    *p = s;
    *value = v;
    return 0;
}

/* The ALL set of "* ESEARCH (TAG "t") UID ALL 3:5,9" (RFC 4731), the
   answer to every SEARCH of a server that speaks IMAP4rev2 only (RFC
   9051): its UIDs >= from, lowest first, at most ESEARCH_MAX of them (a
   set is compact, "1:4294967295" is one range): those left out are all
   higher than those kept, so the next search from the cursor finds them.
   The set ends at the end of the line or at the SP before the next
   return item ("ALL 2:5 COUNT 4"). 0 ok, -1 out of memory, 1 a damaged
   answer: an ALL without the UID marker (sequence numbers, not UIDs), or
   a set that does not parse to its end (kept in part, the cursor would
   pass the UIDs after the damage). */
static int
s_parse_esearch (const char *p, uint64_t from, uint64_t **uids, size_t *count,
                 size_t *alloc)
{
    char tok [64];
    const char *save = p;
    bool uid = false;
    if (s_token (&p, tok, sizeof tok) == T_LP) {      /* (TAG "t") */
        p = save;
        if (s_skip_value (&p))
            return 1;
    }
    else
        p = save;
    save = p;
    if (s_token (&p, tok, sizeof tok) == T_ATOM && strcasecmp (tok, "UID") == 0)
        uid = true;
    else
        p = save;
    while (1) {
        s_tok_t t = s_token (&p, tok, sizeof tok);
        if (t == T_END)
            return 0;               /* nothing matched: no ALL */
        if (t != T_ATOM)
            return 1;
        if (strcasecmp (tok, "ALL") == 0)
            break;
        if (s_skip_value (&p))      /* MIN, MAX, COUNT, MODSEQ ... */
            return 1;
    }
    if (!uid || *p != ' ')
        return 1;
    p++;
    size_t n = 0, cap = 0;
    uint64_t (*ranges) [2] = NULL;
    int rc = 0;
    while (1) {
        uint64_t lo, hi;
        if (s_search_uid (&p, &lo)) {
            free (ranges);
            return 1;
        }
        hi = lo;
        if (*p == ':') {
            p++;
            if (s_search_uid (&p, &hi)) {
                free (ranges);
                return 1;
            }
        }
        if (hi < lo) {
            uint64_t swap = lo;
            lo = hi;
            hi = swap;
        }
        if (n == cap) {
            size_t want = cap ? cap * 2 : 64;
            void *grown = realloc (ranges, want * sizeof *ranges);
            if (!grown) {
                free (ranges);
                return -1;
            }
            ranges = grown;
            cap = want;
        }
        ranges [n][0] = lo;
        ranges [n++][1] = hi;
        if (*p != ',')
            break;
        p++;
    }
    if (*p && *p != ' ') {          /* "12,3:*", "20,x": not the set's end */
        free (ranges);
        return 1;
    }
    qsort (ranges, n, sizeof *ranges, s_cmp_range);
    size_t added = 0;
    for (size_t i = 0; i < n && rc == 0 && added < ESEARCH_MAX; i++)
        for (uint64_t v = ranges [i][0] < from ? from : ranges [i][0];
             v <= ranges [i][1] && added < ESEARCH_MAX; v++, added++)
            if (s_add_uid (v, uids, count, alloc)) {
                rc = -1;
                break;
            }
    free (ranges);
    return rc;
}

/* Parses "* SEARCH n n ..." numbers >= from into the growing array, or
   the ALL set of an ESEARCH answer. 0 ok (or not a search answer), -1
   out of memory, 1 a damaged answer: a number that is no UID, or
   anything but "(MODSEQ n)" of CONDSTORE after the numbers. */
static int
s_parse_search (const char *line, uint64_t from, uint64_t **uids,
                size_t *count, size_t *alloc)
{
    if (strncasecmp (line, "* ESEARCH", 9) == 0 && (line [9] == ' ' || !line [9]))
        return s_parse_esearch (line + 9, from, uids, count, alloc);
    if (strncasecmp (line, "* SEARCH", 8) != 0 || (line [8] != ' ' && line [8]))
        return 0;
    const char *p = line + 8;
    size_t before = *count;
    while (1) {
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        if (*p == '(')
            break;                  /* "(MODSEQ n)" of CONDSTORE */
        uint64_t v;
        if (s_search_uid (&p, &v) || (*p && *p != ' '))
            goto damaged;
        if (v < from)
            continue;
        if (s_add_uid (v, uids, count, alloc))
            return -1;
    }
    char tok [32];
    uint64_t modseq;
    if (s_token (&p, tok, sizeof tok) != T_LP
        || s_token (&p, tok, sizeof tok) != T_ATOM || strcasecmp (tok, "MODSEQ")
        || *p != ' ')
        goto damaged;
    p++;
    if (s_number (&p, &modseq) || s_token (&p, tok, sizeof tok) != T_RP)
        goto damaged;
    while (*p == ' ')
        p++;
    if (!*p)
        return 0;
damaged:
    *count = before;                /* none of it kept */
    return 1;
}

typedef struct {
    bool found;                 /* a FETCH with the UID asked for */
    uint64_t uid;               /* the UID asked for */
    bool seen;                  /* \Seen was among the FLAGS */
    bool has_size;
    uint64_t size;              /* RFC822.SIZE */
} s_fetch_t;

/* Parses "* n FETCH (UID u FLAGS (...) RFC822.SIZE s)"; fills f only when
   the UID is the one asked for (others are unsolicited flag updates). */
static void
s_parse_fetch (const char *line, s_fetch_t *f)
{
    const char *p = line;
    uint64_t seq;
    char tok [256];
    if (strncmp (p, "* ", 2) != 0)
        return;
    p += 2;
    if (s_number (&p, &seq) || strncasecmp (p, " FETCH ", 7) != 0)
        return;
    p += 7;
    if (s_token (&p, tok, sizeof tok) != T_LP)
        return;
    s_fetch_t got = { false, 0, false, false, 0 };
    uint64_t uid = 0;
    while (1) {
        s_tok_t t = s_token (&p, tok, sizeof tok);
        if (t != T_ATOM)
            break;
        if (strcasecmp (tok, "UID") == 0) {
            while (*p == ' ')
                p++;
            if (s_number (&p, &uid))
                return;
        }
        else if (strcasecmp (tok, "RFC822.SIZE") == 0) {
            while (*p == ' ')
                p++;
            if (s_number (&p, &got.size))
                return;
            got.has_size = true;
        }
        else if (strcasecmp (tok, "FLAGS") == 0) {
            if (s_token (&p, tok, sizeof tok) != T_LP)
                return;
            /* any keyword a client set: NIL is an atom there, and a
               keyword has no length limit (one too long to keep is
               skipped; it is not \Seen) */
            while (1) {
                const char *before = p;
                t = s_token (&p, tok, sizeof tok);
                if (t == T_RP)
                    break;
                if (t == T_ERR) {
                    p = before;
                    if (s_skip_value (&p))
                        return;
                }
                else if (t == T_ATOM && strcasecmp (tok, "\\Seen") == 0)
                    got.seen = true;
                else if (t != T_ATOM && t != T_NIL && t != T_STRING)
                    return;
            }
        }
        else if (s_skip_value (&p))
            return;
    }
    if (uid && (uid == f->uid || f->uid == 0)) {
        got.found = true;
        got.uid = uid;
        *f = got;
    }
}

/* A prefetched message: what cm_imap_prefetch() learnt of it. */
struct s_meta {
    uint64_t uid;
    bool seen;
    bool has_size;
    uint64_t size;
};

typedef struct {
    char prefix [3][NS_MAX][256];   /* personal, other users, shared */
    int n [3];
} s_ns_t;

/* Parses "* NAMESPACE (("" "/")) NIL (("shared/" "/"))". */
static int
s_parse_namespace (const char *line, s_ns_t *ns)
{
    char tok [256];
    memset (ns, 0, sizeof *ns);
    if (strncasecmp (line, "* NAMESPACE ", 12) != 0)
        return -1;
    const char *p = line + 12;
    for (int kind = 0; kind < 3; kind++) {
        s_tok_t t = s_token (&p, tok, sizeof tok);
        if (t == T_NIL)
            continue;
        if (t != T_LP)
            return -1;
        while ((t = s_token (&p, tok, sizeof tok)) == T_LP) {
            char prefix [256];
            if (s_token (&p, prefix, sizeof prefix) != T_STRING)
                return -1;
            t = s_token (&p, tok, sizeof tok);   /* separator */
            if (t != T_STRING && t != T_NIL)
                return -1;
            if (ns->n [kind] < NS_MAX)
                snprintf (ns->prefix [kind][ns->n [kind]++], 256, "%s",
                          prefix);
            /* extensions, until ")" */
            while (1) {
                const char *save = p;
                t = s_token (&p, tok, sizeof tok);
                if (t == T_RP)
                    break;
                if (t == T_END)
                    return -1;
                p = save;
                if (s_skip_value (&p))
                    return -1;
            }
        }
        if (t != T_RP)
            return -1;
    }
    return 0;
}

typedef struct {
    char sep;                   /* hierarchy separator, 0 if NIL */
    bool noselect;              /* \Noselect or \NonExistent */
    bool nonexistent;           /* \NonExistent (RFC 5258): not there at all */
    char name [NAME_MAX_LEN];   /* mailbox name (wire form) */
} s_list_t;

/* Parses "* LIST (\flags) "/" name"; 0 ok, -1 not a LIST line. */
static int
s_parse_list (const char *line, s_list_t *l)
{
    char tok [NAME_MAX_LEN];
    memset (l, 0, sizeof *l);
    if (strncasecmp (line, "* LIST ", 7) != 0)
        return -1;
    const char *p = line + 7;
    if (s_token (&p, tok, sizeof tok) != T_LP)
        return -1;
    s_tok_t t;
    while ((t = s_token (&p, tok, sizeof tok)) == T_ATOM)
        if (strcasecmp (tok, "\\Noselect") == 0)
            l->noselect = true;
        else if (strcasecmp (tok, "\\NonExistent") == 0)
            l->noselect = l->nonexistent = true;
    if (t != T_RP)
        return -1;
    t = s_token (&p, tok, sizeof tok);
    if (t == T_STRING)
        l->sep = tok [0];
    else if (t != T_NIL)
        return -1;
    t = s_token (&p, l->name, sizeof l->name);
    if (t != T_STRING && t != T_ATOM && t != T_NIL)
        return -1;
    if (t == T_NIL)
        l->name [0] = 0;
    return 0;
}

/* Mailbox names compare exactly, except INBOX which is case-insensitive,
   as the INBOX part of its children's names with the separator sep
   (Dovecot lists "inbox.Done" as "INBOX.Done"). */
static bool
s_name_eq (const char *a, const char *b, char sep)
{
    if (strcasecmp (a, "INBOX") == 0 && strcasecmp (b, "INBOX") == 0)
        return true;
    if (sep && strncasecmp (a, "INBOX", 5) == 0 && strncasecmp (b, "INBOX", 5) == 0
        && a [5] == sep && b [5] == sep)
        return strcmp (a + 6, b + 6) == 0;
    return strcmp (a, b) == 0;
}

/* Does name start with the first n bytes of a namespace prefix? Exactly,
   but for a prefix under INBOX ("INBOX."): INBOX is any case (RFC 9051
   5.1), so "inbox.Done" lies under it too. */
static bool
s_prefix_eq (const char *name, const char *prefix, size_t n)
{
    size_t head = 0;
    if (n >= 5 && strncasecmp (prefix, "INBOX", 5) == 0
        && (!prefix [5] || !isalnum ((unsigned char) prefix [5]))) {
        if (strncasecmp (name, prefix, 5))
            return false;
        head = 5;
    }
    return strncmp (name + head, prefix + head, n - head) == 0;
}

/* True when name lies in the namespace with this prefix. */
static bool
s_in_namespace (const char *name, const char *prefix, char sep)
{
    size_t plen = strlen (prefix);
    if (plen == 0)
        return false;
    if (strncmp (name, prefix, plen) == 0)
        return true;
    /* the prefix itself, without its trailing separator */
    return plen > 1 && sep && prefix [plen - 1] == sep
        && strlen (name) == plen - 1 && strncmp (name, prefix, plen - 1) == 0;
}

/* Encodes a UTF-8 folder name for the wire and as a quoted string. */
static int
s_folder_arg (const char *folder, char *wire, size_t wirelen, char *quoted,
              size_t quotedlen, char *err, size_t errlen)
{
    if (!folder || !*folder) {
        snprintf (err, errlen, "no folder given");
        return -1;
    }
    if (s_mutf7_encode (folder, wire, wirelen)) {
        snprintf (err, errlen, "folder name \"%.200s\" is not valid UTF-8 "
                  "or too long", folder);
        return -1;
    }
    if (s_quote (wire, quoted, quotedlen)) {
        snprintf (err, errlen, "folder name \"%.200s\" is too long", folder);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/*  Control connection                                                    */
/* ---------------------------------------------------------------------- */

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long one command may take before the connection counts as dead. */
static int
s_cmd_timeout (cm_imap_t *self)
{
    long t = self->timeout_ms * 4;
    return (int) (t < 60000 ? 60000 : t > 600000 ? 600000 : t);
}

static void
s_broken (cm_imap_t *self, char *err, size_t errlen)
{
    self->broken = true;
    if (self->why [0])
        snprintf (err, errlen, "%s", self->why);
    else if (self->bye [0])
        snprintf (err, errlen, "connection to %s:%d closed by the server: %s",
                  self->host, self->port, self->bye);
    else
        snprintf (err, errlen, "connection to %s:%d lost", self->host,
                  self->port);
}

/* Sends one command line (CRLF added). -1 when the connection broke. */
static int
s_send_line (cm_imap_t *self, const char *line)
{
    char buf [CMD_MAX + 32];
    int n = snprintf (buf, sizeof buf, "%s\r\n", line);
    if (n < 0 || (size_t) n >= sizeof buf)
        return -1;
    cm_trace (self->verbose, self->route, "C: %s", line);
    size_t off = 0;
    int64_t deadline = s_now_ms () + s_cmd_timeout (self);
    while (off < (size_t) n) {
        size_t sent = 0;
        CURLcode rc = curl_easy_send (self->ctl, buf + off, (size_t) n - off,
                                      &sent);
        if (rc == CURLE_AGAIN) {
            if (s_now_ms () > deadline) {
                self->broken = true;
                return -1;
            }
            struct pollfd pfd = { self->sock, POLLOUT, 0 };
            poll (&pfd, 1, SLICE_MS);
            continue;
        }
        if (rc) {
            self->broken = true;
            return -1;
        }
        off += sent;
    }
    return 0;
}

/* Reads one logical line into self->line within wait_ms. 1 line, 0 none
   yet (time up, or *stop), -1 connection broken or line over cap. */
static int
s_read_line (cm_imap_t *self, size_t cap, int wait_ms, volatile int *stop)
{
    int64_t deadline = s_now_ms () + wait_ms;
    while (1) {
        int r = s_cut_line (&self->in, &self->hint, cap, &self->line);
        if (r == 1) {
            cm_trace (self->verbose, self->route, "S: %.400s%s",
                      self->line.data,
                      self->line.len > 400 ? "..." : "");
            return 1;
        }
        if (r < 0) {
            snprintf (self->why, sizeof self->why, "IMAP response from "
                      "%s:%d over %zu bytes: session closed", self->host,
                      self->port, cap);
            cm_warn (self->route, "%s", self->why);
            self->broken = true;
            return -1;
        }
        char chunk [RECV_CHUNK];
        size_t got = 0;
        CURLcode rc = curl_easy_recv (self->ctl, chunk, sizeof chunk, &got);
        if (rc == CURLE_OK && got == 0) {
            self->broken = true;       /* peer closed */
            return -1;
        }
        if (rc == CURLE_OK) {
            if (cm_buf_append (&self->in, chunk, got)) {
                self->broken = true;
                return -1;
            }
            continue;
        }
        if (rc != CURLE_AGAIN) {
            self->broken = true;
            return -1;
        }
        int64_t left = deadline - s_now_ms ();
        if (left <= 0 || (stop && *stop))
            return 0;
        struct pollfd pfd = { self->sock, POLLIN, 0 };
        int pr = poll (&pfd, 1, (int) (left < SLICE_MS ? left : SLICE_MS));
        if (pr < 0 && errno != EINTR) {
            self->broken = true;
            return -1;
        }
    }
}

static void
s_parse_caps (cm_imap_t *self, const char *caps)
{
    char tok [256];
    const char *p = caps;
    self->cap_idle = self->cap_move = false;
    self->cap_uidplus = self->cap_namespace = false;
    s_tok_t t;
    while ((t = s_token (&p, tok, sizeof tok)) != T_END) {
        if (t == T_ERR)
            break;
        if (strcasecmp (tok, "IDLE") == 0)
            self->cap_idle = true;
        else if (strcasecmp (tok, "MOVE") == 0)
            self->cap_move = true;
        else if (strcasecmp (tok, "UIDPLUS") == 0)
            self->cap_uidplus = true;
        else if (strcasecmp (tok, "NAMESPACE") == 0)
            self->cap_namespace = true;
    }
}

/* Handles untagged data every command may see. */
static void
s_untagged (cm_imap_t *self, const char *line)
{
    const char *p = line + 2;
    uint64_t n;
    char code [64], arg [256];
    if (strncasecmp (p, "BYE", 3) == 0) {
        if (!self->logging_out) {
            snprintf (self->bye, sizeof self->bye, "%s", p);
            self->broken = true;
        }
        return;
    }
    if (strncasecmp (p, "CAPABILITY ", 11) == 0) {
        s_parse_caps (self, p + 11);
        return;
    }
    if (strncasecmp (p, "OK ", 3) == 0 || strncasecmp (p, "NO ", 3) == 0) {
        s_resp_code (p + 3, code, sizeof code, arg, sizeof arg);
        const char *a = arg;
        if (strcasecmp (code, "UIDVALIDITY") == 0)
            s_number (&a, &self->uidvalidity);
        else if (strcasecmp (code, "UIDNEXT") == 0)
            s_number (&a, &self->uidnext);
        else if (strcasecmp (code, "ALERT") == 0)
            cm_warn (self->route, "IMAP server %s: %s", self->host, p);
        return;
    }
    if (s_number (&p, &n) == 0) {
        if (strcasecmp (p, " EXISTS") == 0) {
            if (n > self->exists)
                self->new_mail = true;
            self->exists = n;
        }
        else if (strcasecmp (p, " EXPUNGE") == 0) {
            if (self->exists > 0)
                self->exists--;
            self->body_news++;      /* the body session gets it too */
        }
        else if (strncasecmp (p, " FETCH ", 7) == 0)
            self->body_news++;      /* a flag change by another client */
    }
}

typedef void (s_handler_fn) (cm_imap_t *self, const char *line, void *arg);

/* Sends a tagged command; s_command_wait() reads its answer, so the
   server can work on it meanwhile. 0 sent, -1 connection broken, 2 too
   long (reason in err). tag gets the command's tag. */
static int
s_command_send (cm_imap_t *self, const char *cmd, char tag [16], char *err,
                size_t errlen)
{
    char line [CMD_MAX + 16];
    if (self->broken) {
        s_broken (self, err, errlen);
        return -1;
    }
    snprintf (tag, 16, "C%u", ++self->tag);
    int n = snprintf (line, sizeof line, "%s %s", tag, cmd);
    if (n < 0 || (size_t) n >= sizeof line) {
        snprintf (err, errlen, "IMAP command too long");
        return 2;
    }
    if (s_send_line (self, line)) {
        s_broken (self, err, errlen);
        return -1;
    }
    return 0;
}

/* Reads the answer to the command sent with tag: untagged lines go to fn.
   0 OK, 1 NO, 2 BAD (status in err), -1 connection broken or timeout. */
static int
s_command_wait (cm_imap_t *self, const char *tag, const char *cmd, size_t cap,
                s_handler_fn *fn, void *arg, char *err, size_t errlen)
{
    size_t taglen = strlen (tag);
    int64_t deadline = s_now_ms () + s_cmd_timeout (self);
    while (1) {
        int64_t left = deadline - s_now_ms ();
        int r = left > 0 ? s_read_line (self, cap, (int) left, NULL) : 0;
        if (r == 0) {
            snprintf (self->why, sizeof self->why, "timeout waiting for "
                      "%s:%d to answer %.40s", self->host, self->port, cmd);
            s_broken (self, err, errlen);
            return -1;
        }
        if (r < 0) {
            s_broken (self, err, errlen);
            return -1;
        }
        const char *l = self->line.data;
        if (strncmp (l, "* ", 2) == 0) {
            s_untagged (self, l);
            if (fn)
                fn (self, l, arg);
            continue;
        }
        if (l [0] == '+') {
            /* we never send literals: a continuation request is a bug on
               one side; the connection cannot be trusted any more */
            self->broken = true;
            snprintf (err, errlen, "unexpected continuation from %s:%d",
                      self->host, self->port);
            return -1;
        }
        if (strncmp (l, tag, taglen) != 0 || l [taglen] != ' ')
            continue;                  /* not ours (should not happen) */
        const char *status = l + taglen + 1;
        snprintf (self->last_tagged, sizeof self->last_tagged, "%s", status);
        if (strncasecmp (status, "OK", 2) == 0)
            return 0;
        snprintf (err, errlen, "%s", status);
        return strncasecmp (status, "NO", 2) == 0 ? 1 : 2;
    }
}

/* Runs one tagged command. 0 OK, 1 NO, 2 BAD (the answer in
   self->last_tagged and err), -1 connection broken (reason in err). */
static int
s_command (cm_imap_t *self, const char *cmd, size_t cap, s_handler_fn *fn,
           void *arg, char *err, size_t errlen)
{
    char tag [16];
    int r = s_command_send (self, cmd, tag, err, errlen);
    return r ? r : s_command_wait (self, tag, cmd, cap, fn, arg, err, errlen);
}

typedef struct {
    const char *want;           /* wire name looked for; "" = LIST "" "" */
    bool found;                 /* a LIST line for it came */
    s_list_t info;              /* its separator and flags */
} s_listq_t;

static void
s_on_list (cm_imap_t *self, const char *line, void *arg)
{
    (void) self;
    s_listq_t *q = (s_listq_t *) arg;
    s_list_t got;
    if (s_parse_list (line, &got))
        return;
    /* LIST "" "" answers with the hierarchy's root name, usually empty
       (RFC 3501 6.3.8): its one answer gives the separator whatever the
       name; a wildcard in a folder name may list others: only the exact
       name counts */
    if (q->want [0] == 0 ? !q->found : s_name_eq (got.name, q->want, got.sep)) {
        q->found = true;
        q->info = got;
    }
}

enum { LIST_BROKEN = -1, LIST_ABSENT, LIST_SELECTABLE, LIST_NOSELECT, LIST_REFUSED };

/* LIST "" quoted: what the server says of the folder (LIST_REFUSED: NO or
   BAD, its text in err; LIST_BROKEN: the connection, reason in err). */
static int
s_list_state (cm_imap_t *self, const char *wire, const char *quoted,
              char *err, size_t errlen)
{
    char cmd [NAME_MAX_LEN * 2 + 32];
    s_listq_t *q = calloc (1, sizeof *q);
    if (!q) {
        snprintf (err, errlen, "out of memory");
        return LIST_BROKEN;
    }
    q->want = wire;
    snprintf (cmd, sizeof cmd, "LIST \"\" %s", quoted);
    int r = s_command (self, cmd, LINE_CAP, s_on_list, q, err, errlen);
    int rc = r < 0 ? LIST_BROKEN : r > 0 ? LIST_REFUSED
           : !q->found || q->info.nonexistent ? LIST_ABSENT
           : q->info.noselect ? LIST_NOSELECT : LIST_SELECTABLE;
    free (q);
    return rc;
}

/* LIST "" quoted: 1 found and selectable, 0 not, -1 error. */
static int
s_list_one (cm_imap_t *self, const char *wire, const char *quoted,
            char *err, size_t errlen)
{
    int state = s_list_state (self, wire, quoted, err, errlen);
    return state == LIST_BROKEN ? -1 : state == LIST_SELECTABLE;
}

static void
s_on_namespace (cm_imap_t *self, const char *line, void *arg)
{
    (void) self;
    if (strncasecmp (line, "* NAMESPACE ", 12) == 0
        && s_parse_namespace (line, (s_ns_t *) arg))
        memset (arg, 0, sizeof (s_ns_t));
}

/* A folder name outside the personal namespace where every personal
   folder has a prefix (Courier-style and cPanel Dovecot, Cyrus: "INBOX."):
   the server refuses it or has no such folder. hint gets " (the
   server's own folders are under "INBOX.": INBOX.Done?)", else "". The
   name is not changed for the user: another namespace may be meant. */
static void
s_outside_hint (cm_imap_t *self, const char *name, const char *wire, char *hint,
                size_t hintlen)
{
    hint [0] = 0;
    size_t plen = strlen (self->personal);
    if (!plen || strcasecmp (wire, "INBOX") == 0
        || s_prefix_eq (wire, self->personal, plen)
        || (strlen (wire) == plen - 1 && s_prefix_eq (wire, self->personal, plen - 1)))
        return;
    snprintf (hint, hintlen, " (the server's own folders are under \"%s\": %s%s?)",
              self->personal, self->personal, name);
}

/* The route's folder rules: not shared, not a subfolder, exists, writable;
   then SELECT. 0 ok, -1 with reason. */
static int
s_check_and_select (cm_imap_t *self, const char *quoted, char *err,
                    size_t errlen)
{
    const char *name = self->folder;
    const char *wire = self->folder_wire;
    char cmd [NAME_MAX_LEN * 2 + 32];
    s_ns_t *ns = calloc (1, sizeof *ns);
    int rc = -1;
    if (!ns) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    if (self->cap_namespace
        && s_command (self, "NAMESPACE", LINE_CAP, s_on_namespace, ns, err,
                      errlen) < 0)
        goto done;
    s_listq_t root;
    memset (&root, 0, sizeof root);
    root.want = "";
    int r = s_command (self, "LIST \"\" \"\"", LINE_CAP, s_on_list, &root,
                       err, errlen);
    if (r < 0)
        goto done;
    char sep = root.found ? root.info.sep : 0;
    self->personal [0] = 0;
    for (int i = 0; i < ns->n [0]; i++) {
        if (!ns->prefix [0][i][0]) {
            self->personal [0] = 0;
            break;
        }
        if (!self->personal [0])
            snprintf (self->personal, sizeof self->personal, "%s", ns->prefix [0][i]);
    }
    for (int kind = 1; kind < 3; kind++)
        for (int i = 0; i < ns->n [kind]; i++)
            if (s_in_namespace (wire, ns->prefix [kind][i], sep)) {
                snprintf (err, errlen, "folder %s is in a shared mailbox",
                          name);
                goto done;
            }
    /* a personal prefix such as "INBOX." is not a parent folder */
    const char *local = wire;
    for (int i = 0; i < ns->n [0]; i++) {
        size_t plen = strlen (ns->prefix [0][i]);
        if (plen && s_prefix_eq (wire, ns->prefix [0][i], plen)
            && wire [plen]) {
            local = wire + plen;
            break;
        }
    }
    if (sep && strchr (local, sep)) {
        snprintf (err, errlen, "folder %s is a subfolder", name);
        goto done;
    }
    r = s_list_state (self, wire, quoted, err, errlen);
    if (r == LIST_BROKEN)
        goto done;
    if (r == LIST_NOSELECT) {
        /* a parent that only holds folders (Maildir++ makes one for
           INBOX.a.b): it is there, but no message can be */
        snprintf (err, errlen, "folder %s exists but cannot hold messages (\\Noselect)",
                  name);
        goto done;
    }
    if (r != LIST_SELECTABLE) {
        char hint [300];
        s_outside_hint (self, name, wire, hint, sizeof hint);
        snprintf (err, errlen, "folder %s does not exist%s", name, hint);
        goto done;
    }
    snprintf (cmd, sizeof cmd, "SELECT %s", quoted);
    self->exists = 0;
    r = s_command (self, cmd, LINE_CAP, NULL, NULL, err, errlen);
    if (r < 0)
        goto done;
    if (r > 0) {
        char why [300];
        snprintf (why, sizeof why, "%s", err);
        snprintf (err, errlen, "cannot open folder %s: %s", name, why);
        goto done;
    }
    char code [64], carg [16];
    s_resp_code (self->last_tagged + 2, code, sizeof code, carg, sizeof carg);
    if (strcasecmp (code, "READ-ONLY") == 0) {
        snprintf (err, errlen, "folder %s is read-only", name);
        goto done;
    }
    self->new_mail = false;
    rc = 0;
done:
    free (ns);
    return rc;
}

/* True when libcurl's IMAP LOGIN sends password unquoted (it quotes only
   for "(){ %*]", a quote or a backslash) although it holds bytes outside
   ASCII or controls, which an atom may not (RFC 3501): servers refuse it. */
static bool
s_login_bare_8bit (const char *password)
{
    bool odd = false;
    if (!password)
        return false;
    for (const unsigned char *p = (const unsigned char *) password; *p; p++) {
        if (strchr ("(){ %*]\"\\", *p))
            return false;
        odd = odd || *p >= 0x7F || *p < 0x20;
    }
    return odd;
}

/* ---------------------------------------------------------------------- */
/*  Public API                                                            */
/* ---------------------------------------------------------------------- */

cm_imap_t *
cm_imap_open (const cm_mailserver_t *srv, const char *folder, char *err,
              size_t errlen)
{
    char wire [NAME_MAX_LEN], quoted [NAME_MAX_LEN * 2 + 4];
    char url_folder [NAME_MAX_LEN * 3];
    if (errlen)
        err [0] = 0;
    cm_mailcurl_global_init ();
    if (s_folder_arg (folder, wire, sizeof wire, quoted, sizeof quoted,
                      err, errlen)
        || s_url_escape (wire, url_folder, sizeof url_folder)) {
        if (!err [0])
            snprintf (err, errlen, "folder name too long");
        return NULL;
    }
    cm_imap_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->sock = CURL_SOCKET_BAD;
    self->host = strdup (srv->host ? srv->host : "");
    self->protocol = strdup (srv->protocol ? srv->protocol : "");
    self->username = strdup (srv->username ? srv->username : "");
    self->route = srv->route ? strdup (srv->route) : NULL;
    self->folder = strdup (folder);
    self->folder_wire = strdup (wire);
    self->folder_url = strdup (url_folder);
    self->verbose = srv->verbose;
    self->port = srv->port;
    self->timeout_ms = srv->timeout_ms > 0 ? srv->timeout_ms : DEFAULT_TIMEOUT;
    cm_buf_init (&self->in, 0);           /* bounded by s_cut_line's cap */
    cm_buf_init (&self->line, 0);
    if (!self->host || !self->protocol || !self->username || !self->folder
        || !self->folder_wire || !self->folder_url
        || (srv->route && !self->route)) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    if (cm_mailcurl_url (srv, false, "", self->base_url,
                         sizeof self->base_url, err, errlen))
        goto fail;

    self->ctl = curl_easy_init ();
    self->body = curl_easy_init ();
    if (!self->ctl || !self->body) {
        snprintf (err, errlen, "libcurl initialisation failed");
        goto fail;
    }
    if (cm_mailcurl_setup (self->ctl, srv, self->base_url, false,
                           &self->ctl_ctx, err, errlen)
        || cm_mailcurl_setup (self->body, srv, self->base_url, false,
                              &self->body_ctx, err, errlen))
        goto fail;
    curl_easy_setopt (self->ctl, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt (self->ctl, CURLOPT_TIMEOUT_MS, self->timeout_ms);
    CURLcode rc = curl_easy_perform (self->ctl);
    bool fallback = false;
    if (rc == CURLE_LOGIN_DENIED && !self->ctl_ctx.auth_sent
        && !srv->oauth_token && !self->ctl_ctx.login_disabled) {
        /* no SASL PLAIN/LOGIN offered: let libcurl choose (IMAP LOGIN) */
        curl_easy_setopt (self->ctl, CURLOPT_LOGIN_OPTIONS, NULL);
        curl_easy_setopt (self->body, CURLOPT_LOGIN_OPTIONS, NULL);
        memset (self->ctl_ctx.errbuf, 0, sizeof self->ctl_ctx.errbuf);
        rc = curl_easy_perform (self->ctl);
        fallback = true;
    }
    if (rc) {
        cm_mailcurl_reason (rc, &self->ctl_ctx, srv, err, errlen);
        size_t used = strlen (err);
        if (fallback && rc == CURLE_LOGIN_DENIED && s_login_bare_8bit (srv->password))
            snprintf (err + used, errlen - used, " (%s:%d offers no SASL PLAIN or LOGIN, "
                      "and libcurl's LOGIN command sends this non-ASCII password as a "
                      "bare atom, which servers refuse: offer AUTH=PLAIN, or add a "
                      "space or quote to the password)", self->host, self->port);
        goto fail;
    }
    if (curl_easy_getinfo (self->ctl, CURLINFO_ACTIVESOCKET, &self->sock)
        || self->sock == CURL_SOCKET_BAD) {
        snprintf (err, errlen, "libcurl did not hand over the connection");
        goto fail;
    }
    self->preauth = self->ctl_ctx.preauth;
    if (s_command (self, "CAPABILITY", LINE_CAP, NULL, NULL, err, errlen))
        goto fail;
    if (s_check_and_select (self, quoted, err, errlen))
        goto fail;

    /* body transfers: no overall timeout (big messages), but a stall
       longer than the response timeout ends them */
    curl_easy_setopt (self->body, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt (self->body, CURLOPT_LOW_SPEED_TIME,
                      (long) (s_cmd_timeout (self) / 1000));
    cm_trace (self->verbose, self->route, "IMAP %s://%s:%d folder %s: "
              "UIDVALIDITY %" PRIu64 " UIDNEXT %" PRIu64 " EXISTS %" PRIu64
              "%s%s%s%s", self->protocol, self->host, self->port, self->folder,
              self->uidvalidity, self->uidnext, self->exists,
              self->cap_idle ? " IDLE" : "", self->cap_move ? " MOVE" : "",
              self->cap_uidplus ? " UIDPLUS" : "",
              self->preauth ? " (PREAUTH: no credentials sent)" : "");
    return self;
fail:
    cm_imap_destroy (&self);
    return NULL;
}

int
cm_imap_test_route (const cm_mailserver_t *srv, const char *folder, const char *processed,
                    char *summary, size_t sumlen, char *err, size_t errlen)
{
    cm_imap_t *self = cm_imap_open (srv, folder, err, errlen);
    if (!self)
        return -1;
    snprintf (summary, sumlen, "%s://%s:%d, folder %s (%" PRIu64 " message%s)%s",
              self->protocol, self->host, self->port, self->folder,
              self->exists, self->exists == 1 ? "" : "s",
              self->preauth ? "; the server greeted PREAUTH: the session was logged in"
                              " before any command, no username or password sent" : "");
    int rc = 0;
    if (processed && *processed) {
        /* the first move tries to make a missing one (TRYCREATE): the
           test says which it will be, and fails where the move would */
        char wire [NAME_MAX_LEN], quoted [NAME_MAX_LEN * 2 + 4], why [300] = "";
        int state = s_folder_arg (processed, wire, sizeof wire, quoted, sizeof quoted,
                                  why, sizeof why)
                    ? LIST_BROKEN : s_list_state (self, wire, quoted, why, sizeof why);
        size_t used = strlen (summary);
        char hint [300] = "";
        if (state == LIST_ABSENT)
            s_outside_hint (self, processed, wire, hint, sizeof hint);
        if (hint [0]) {
            snprintf (err, errlen, "processed folder %s does not exist, and the first move"
                      " would not make it%s", processed, hint);
            rc = -1;
        }
        else if (state == LIST_SELECTABLE || state == LIST_ABSENT)
            snprintf (summary + used, sumlen - used, state == LIST_SELECTABLE
                      ? "; processed folder %s exists"
                      : "; processed folder %s does not exist yet: the first move"
                        " will create it", processed);
        else if (state == LIST_NOSELECT) {
            snprintf (err, errlen, "processed folder %s exists but cannot hold messages"
                      " (\\Noselect)", processed);
            rc = -1;
        }
        else {
            snprintf (err, errlen, "processed folder %s: %s%s", processed,
                      state == LIST_REFUSED ? "LIST refused: " : "", why);
            rc = -1;
        }
    }
    cm_imap_destroy (&self);
    return rc;
}

int
cm_imap_test (const cm_mailserver_t *srv, const char *folder, char *summary,
              size_t sumlen, char *err, size_t errlen)
{
    return cm_imap_test_route (srv, folder, NULL, summary, sumlen, err, errlen);
}

uint64_t
cm_imap_uidvalidity (cm_imap_t *self)
{
    return self ? self->uidvalidity : 0;
}

uint64_t
cm_imap_uidnext (cm_imap_t *self)
{
    return self ? self->uidnext : 0;
}

bool
cm_imap_preauth (cm_imap_t *self)
{
    return self && self->preauth;
}

uint64_t
cm_imap_exists (cm_imap_t *self)
{
    return self ? self->exists : 0;
}

typedef struct {
    uint64_t from;
    uint64_t *uids;
    size_t count;
    size_t alloc;
    bool oom;
    char bad [120];             /* the start of a damaged answer, or "" */
} s_search_t;

static void
s_on_search (cm_imap_t *self, const char *line, void *arg)
{
    (void) self;
    s_search_t *s = (s_search_t *) arg;
    int r = s_parse_search (line, s->from, &s->uids, &s->count, &s->alloc);
    if (r < 0)
        s->oom = true;
    else if (r > 0 && !s->bad [0])
        snprintf (s->bad, sizeof s->bad, "%s", line);
}

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/* The highest UID seen in FETCH answers (UIDs ascend with sequence
   numbers, so any line's UID is at most the last message's). */
static void
s_on_last_uid (cm_imap_t *self, const char *line, void *arg)
{
    (void) self;
    s_fetch_t f = { 0 };
    s_parse_fetch (line, &f);
    uint64_t *last = (uint64_t *) arg;
    if (f.found && f.uid > *last)
        *last = f.uid;
}

int
cm_imap_top_uid (cm_imap_t *self, uint64_t *top, char *err, size_t errlen)
{
    *top = 0;
    if (self->uidnext > 0 && self->uidnext <= (uint64_t) UINT32_MAX + 1) {
        *top = self->uidnext - 1;
        return 0;
    }
    if (s_command (self, "NOOP", LINE_CAP, NULL, NULL, err, errlen) < 0)
        return -1;
    if (self->exists == 0)
        return 0;
    size_t news = self->body_news;     /* our own FETCH's answer is no news */
    int r = s_command (self, "FETCH * (UID)", LINE_CAP, s_on_last_uid, top, err, errlen);
    self->body_news = news;
    if (r < 0)
        return -1;
    if (r > 0 || *top == 0 || *top > UINT32_MAX) {
        *top = 0;
        return 1;
    }
    return 0;
}

/* One UID SEARCH over UIDs from:to (to 0: "from:*"): the UIDs of the
   answer in that range are added to *s. 0 ok, -1 with reason. */
static int
s_search_range (cm_imap_t *self, uint64_t from, uint64_t to, const char *date,
                s_search_t *s, char *err, size_t errlen)
{
    char cmd [160], range [48];
    if (to)
        snprintf (range, sizeof range, "%" PRIu64 ":%" PRIu64, from, to);
    else
        snprintf (range, sizeof range, "%" PRIu64 ":*", from);
    snprintf (cmd, sizeof cmd, "UID SEARCH UID %s UNDELETED%s%s", range,
              date [0] ? " SINCE " : "", date);
    size_t before = s->count;
    s->from = from;             /* "n:*" also matches the highest UID below n */
    int r = s_command (self, cmd, SEARCH_CAP, s_on_search, s, err, errlen);
    if (r == 0 && s->oom) {
        snprintf (err, errlen, "out of memory");
        r = -1;
    }
    if (r == 0 && s->bad [0]) {
        /* kept in part, the cursor would pass what came after the damage */
        snprintf (err, errlen, "UID SEARCH answer damaged (not one UID set): %.100s%s",
                  s->bad, strlen (s->bad) > 100 ? "..." : "");
        r = -1;
    }
    if (r) {
        if (r > 0) {
            char why [300];
            snprintf (why, sizeof why, "%s", err);
            snprintf (err, errlen, "UID SEARCH failed: %s", why);
        }
        return -1;
    }
    if (to) {
        size_t o = before;
        for (size_t i = before; i < s->count; i++)
            if (s->uids [i] <= to)
                s->uids [o++] = s->uids [i];
        s->count = o;
    }
    return 0;
}

int
cm_imap_search (cm_imap_t *self, uint64_t from_uid, uint64_t to_uid,
                const char *since, size_t max_uids, uint64_t **uids,
                size_t *count, char *err, size_t errlen)
{
    char date [32] = "";
    *uids = NULL;
    *count = 0;
    if (since && *since && s_imap_date (since, date, sizeof date)) {
        snprintf (err, errlen, "invalid date \"%.40s\" (want YYYY-MM-DD)",
                  since);
        return -1;
    }
    if (from_uid == 0)
        from_uid = 1;
    if ((to_uid && to_uid < from_uid) || from_uid > UINT32_MAX)
        return 0;           /* a UID is a 32-bit number: none after 2^32 - 1 */
    /* the server shows new messages to a session only at a sync point
       (Dovecot: after the command that noticed them): NOOP first */
    if (s_command (self, "NOOP", LINE_CAP, NULL, NULL, err, errlen) < 0)
        return -1;
    self->new_mail = false;     /* this search covers what came so far */
    if (self->exists == 0)
        return 0;
    /* The answer to "UID SEARCH UID n:*" lists every UID from n: on a
       first start in a folder of millions, megabytes in one line. So the
       UIDs up to the last message's (FETCH *) are searched in windows of
       max_uids UIDs, until max_uids are found; a window that finds fewer
       than half that many doubles the next (a folder with long gaps), up
       to 64 times: an answer never holds more than 64 * max_uids UIDs,
       however big the folder. A folder of at most max_uids messages
       cannot answer more than that: one open-ended search, no FETCH *.
       So does a server that answers a UID over 2^32 - 1 (RFC 3501: a UID
       is a 32-bit number), or refuses FETCH * and sent no UIDNEXT. A
       window never spans more than SEARCH_CAP allows. */
    uint64_t last = 0;
    int r = 1;
    if (max_uids && self->exists > max_uids) {
        size_t news = self->body_news;     /* our own FETCH's answer is no news */
        r = s_command (self, "FETCH * (UID)", LINE_CAP, s_on_last_uid, &last, err, errlen);
        self->body_news = news;
        if (r < 0)
            return -1;
        if (last > UINT32_MAX)
            last = 0;
        if (r == 0 && last && last < from_uid)
            return 0;
        /* FETCH * refused: windows up to the SELECT's UIDNEXT, the last
           one open-ended (mail may have come since) */
        if (r > 0 && self->uidnext > from_uid && self->uidnext - 1 <= UINT32_MAX)
            last = self->uidnext - 1;
        else if (r > 0)
            last = 0;
        if (to_uid && last > to_uid)
            last = to_uid;
    }
    bool open_end = r > 0 && !to_uid;
    s_search_t s = { from_uid, NULL, 0, 0, false, "" };
    int rc = 0;
    /* a window's answer stays within SEARCH_CAP: at most 11 bytes a UID */
    uint64_t widest = (uint64_t) max_uids * 64;
    if (widest > (SEARCH_CAP - 64) / 11)
        widest = (SEARCH_CAP - 64) / 11;      /* and the "* SEARCH" before them */
    if (last == 0)
        rc = s_search_range (self, from_uid, to_uid, date, &s, err, errlen);
    else
        for (uint64_t lo = from_uid, width = max_uids; lo <= last && rc == 0; ) {
            uint64_t hi = last - lo < width - 1 ? last : lo + width - 1;
            size_t before = s.count;
            rc = s_search_range (self, lo, hi == last && open_end ? 0 : hi, date, &s,
                                 err, errlen);
            if (rc || hi == last)
                break;
            lo = hi + 1;
            if (s.count >= max_uids) {
                self->new_mail = true;      /* more windows: the next wait returns at once */
                break;
            }
            if (s.count - before < max_uids / 2 && width < widest)
                width = width * 2 < widest ? width * 2 : widest;
        }
    if (rc) {
        free (s.uids);
        return -1;
    }
    if (s.count) {
        qsort (s.uids, s.count, sizeof (uint64_t), s_cmp_u64);
        size_t o = 1;
        for (size_t i = 1; i < s.count; i++)
            if (s.uids [i] != s.uids [o - 1])
                s.uids [o++] = s.uids [i];
        s.count = o;
        if (max_uids && s.count > max_uids) {
            s.count = max_uids;
            self->new_mail = true;      /* the next wait returns at once */
        }
        *uids = s.uids;
        *count = s.count;
    }
    else
        free (s.uids);
    return 0;
}

static void
s_on_fetch (cm_imap_t *self, const char *line, void *arg)
{
    (void) self;
    s_parse_fetch (line, (s_fetch_t *) arg);
}

/* UID FETCH uid (UID FLAGS RFC822.SIZE). 0 ok, -1 error. */
static int
s_fetch_meta (cm_imap_t *self, uint64_t uid, s_fetch_t *f, char *err,
              size_t errlen)
{
    char cmd [96];
    memset (f, 0, sizeof *f);
    f->uid = uid;
    snprintf (cmd, sizeof cmd, "UID FETCH %" PRIu64 " (UID FLAGS RFC822.SIZE)",
              uid);
    size_t news = self->body_news;     /* our own FETCH's answers are no news */
    int r = s_command (self, cmd, LINE_CAP, s_on_fetch, f, err, errlen);
    self->body_news = news;
    if (r > 0) {
        char why [300];
        snprintf (why, sizeof why, "%s", err);
        snprintf (err, errlen, "UID FETCH %" PRIu64 " failed: %s", uid, why);
    }
    return r ? -1 : 0;
}

/* Is uid in the folder (and does it match also, e.g. " SEEN")? Asked
   when no FETCH answer named it: expunged meanwhile, or an answer this
   parser could not read. A SEARCH answer is
   a plain list of numbers, so it settles which: a message is never taken
   for gone (and skipped) on the strength of a parse. 1 yes, 0 no, -1
   error with reason. */
static int
s_uid_matches (cm_imap_t *self, uint64_t uid, const char *also, char *err, size_t errlen)
{
    char cmd [96];
    snprintf (cmd, sizeof cmd, "UID SEARCH UID %" PRIu64 "%s", uid, also);
    s_search_t s = { uid, NULL, 0, 0, false, "" };
    int r = s_command (self, cmd, LINE_CAP, s_on_search, &s, err, errlen);
    bool there = false;
    for (size_t i = 0; i < s.count; i++)
        there = there || s.uids [i] == uid;
    free (s.uids);
    if (r == 0 && s.oom) {
        snprintf (err, errlen, "out of memory");
        r = -1;
    }
    if (r == 0 && s.bad [0]) {
        snprintf (err, errlen, "UID SEARCH UID %" PRIu64 "%s: answer damaged (not one"
                  " UID set): %.100s%s", uid, also, s.bad, strlen (s.bad) > 100 ? "..." : "");
        r = -1;
    }
    if (r > 0) {
        char why [300];
        snprintf (why, sizeof why, "%s", err);
        snprintf (err, errlen, "UID SEARCH UID %" PRIu64 "%s failed: %s", uid, also, why);
    }
    return r ? -1 : there;
}

static size_t
s_write_body (char *data, size_t size, size_t nmemb, void *userp)
{
    cm_buf_t *buf = (cm_buf_t *) userp;
    if (cm_buf_append (buf, data, size * nmemb))
        return 0;              /* over max_bytes: libcurl aborts */
    return size * nmemb;
}

/* A stale reused connection fails like this; one retry is worth it. */
static bool
s_retryable (CURLcode rc)
{
    return rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR
        || rc == CURLE_GOT_NOTHING || rc == CURLE_WEIRD_SERVER_REPLY;
}

static int s_body_command (cm_imap_t *self, const char *cmd, char *err, size_t errlen);
static int s_body_sync (cm_imap_t *self, char *err, size_t errlen);

/* Writes the longest leading part of uids (ascending) that fits in
   outlen as a compact IMAP sequence set "1:5,7,9:12"; returns how many
   UIDs it covers (0: not one fits). */
static size_t
s_uid_set_part (const uint64_t *uids, size_t n, char *out, size_t outlen)
{
    size_t used = 0, done = 0;
    out [0] = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && uids [j + 1] == uids [j] + 1)
            j++;
        int w = j > i
            ? snprintf (out + used, outlen - used, "%s%" PRIu64 ":%" PRIu64,
                        used ? "," : "", uids [i], uids [j])
            : snprintf (out + used, outlen - used, "%s%" PRIu64, used ? "," : "", uids [i]);
        if (w < 0 || (size_t) w >= outlen - used) {
            out [used] = 0;
            break;
        }
        used += (size_t) w;
        done = j + 1;
        i = j + 1;
    }
    return done;
}

/* All of uids as one set: 0, or -1 when it does not fit (or n is 0). */
static int
s_uid_set (const uint64_t *uids, size_t n, char *out, size_t outlen)
{
    return n && s_uid_set_part (uids, n, out, outlen) == n ? 0 : -1;
}

typedef struct {
    struct s_meta *meta;
    size_t n, cap;
} s_meta_list_t;

static void
s_on_prefetch (cm_imap_t *self, const char *line, void *arg)
{
    (void) self;
    s_meta_list_t *list = arg;
    s_fetch_t f;
    memset (&f, 0, sizeof f);
    s_parse_fetch (line, &f);
    if (!f.found || list->n == list->cap)
        return;
    list->meta [list->n++] = (struct s_meta) { f.uid, f.seen, f.has_size, f.size };
}

int
cm_imap_prefetch (cm_imap_t *self, const uint64_t *uids, size_t n, char *err,
                  size_t errlen)
{
    free (self->meta);
    self->meta = NULL;
    self->nmeta = 0;
    if (n == 0)
        return 0;
    size_t setlen = n * 24 + 1;
    char *set = malloc (setlen);
    char *cmd = malloc (setlen + 64);
    s_meta_list_t list = { calloc (n, sizeof (struct s_meta)), 0, n };
    int rc = -1;
    if (!set || !cmd || !list.meta || s_uid_set (uids, n, set, setlen)) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    snprintf (cmd, setlen + 64, "UID FETCH %s (UID FLAGS RFC822.SIZE)", set);
    char tag [16];
    int r = s_command_send (self, cmd, tag, err, errlen);
    /* While the server answers that on the control session, the body
       session is brought up to date, once per batch: read-only (BODY[]
       sets no \Seen: the acknowledgement stays after the commit), with new
       mail seen and flag news drained (libcurl's FETCH can't parse them).
       The two sessions are two server processes, so the waits overlap.
       Nothing on the control session changes a flag here: the news the
       body session drains are all in before it syncs (but for another
       client's, such as the fetcher's other lane, which changes no flag
       during a pass: lanes.c). */
    char berr [512] = "";
    int brc = r == 0 ? s_body_sync (self, berr, sizeof berr) : 0;
    size_t news = self->body_news;     /* our own FETCH's answers are no news */
    if (r == 0)
        r = s_command_wait (self, tag, cmd, LINE_CAP, s_on_prefetch, &list, err, errlen);
    self->body_news = news;
    if (brc) {
        /* the body session's failure, unless the control session broke
           too (its reason, already in err, is the one to report) */
        if (r >= 0)
            snprintf (err, errlen, "%s", berr);
        goto done;
    }
    if (r > 0) {
        char why [300];
        snprintf (why, sizeof why, "%s", err);
        snprintf (err, errlen, "UID FETCH of %zu messages failed: %s", n, why);
    }
    if (r == 0) {
        self->meta = list.meta;
        self->nmeta = list.n;
        list.meta = NULL;
        rc = 0;
    }
done:
    free (list.meta);
    free (set);
    free (cmd);
    return rc;
}

/* Looks uid up in the prefetched batch; true when it was there. */
static bool
s_cached_meta (cm_imap_t *self, uint64_t uid, s_fetch_t *f)
{
    for (size_t i = 0; i < self->nmeta; i++)
        if (self->meta [i].uid == uid) {
            memset (f, 0, sizeof *f);
            f->found = true;
            f->uid = uid;
            f->seen = self->meta [i].seen;
            f->has_size = self->meta [i].has_size;
            f->size = self->meta [i].size;
            return true;
        }
    return false;
}

static size_t
s_discard (char *data, size_t size, size_t nmemb, void *userp)
{
    (void) data;
    (void) userp;
    return size * nmemb;
}

/* After a transfer on the body session: did libcurl have to log in (a
   first use, or a connection it found broken)? The new session is then
   SELECTed read-write, not read-only. */
static bool
s_body_reconnected (cm_imap_t *self)
{
    long connects = 0;
    if (curl_easy_getinfo (self->body, CURLINFO_NUM_CONNECTS, &connects) != CURLE_OK
        || connects == 0)
        return false;
    if (self->body_logins++)
        cm_info (self->route, "the body session to %s:%d logged in again", self->host,
                 self->port);
    self->body_ro = false;
    return true;
}

/* Runs one flag or move command (single-line answers only) on the body
   connection. Flag changes made there are not announced to that session
   (.SILENT), so the body connection never sees unsolicited FETCH answers
   that libcurl can't parse (it would drop the connection and log in
   again for every message); the control connection parses them. 0 ok,
   1 the server said NO/BAD (text in err), -1 connection error. */
static int
s_body_command (cm_imap_t *self, const char *cmd, char *err, size_t errlen)
{
    char url [sizeof self->base_url + NAME_MAX_LEN * 3 + 8];
    snprintf (url, sizeof url, "%s%s", self->base_url, self->folder_url);
    curl_easy_setopt (self->body, CURLOPT_URL, url);
    curl_easy_setopt (self->body, CURLOPT_CUSTOMREQUEST, cmd);
    curl_easy_setopt (self->body, CURLOPT_WRITEFUNCTION, s_discard);
    curl_easy_setopt (self->body, CURLOPT_WRITEDATA, NULL);
    CURLcode crc = CURLE_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        self->body_ctx.errbuf [0] = 0;
        crc = curl_easy_perform (self->body);
        if (!s_retryable (crc))
            break;
    }
    s_body_reconnected (self);
    curl_easy_setopt (self->body, CURLOPT_CUSTOMREQUEST, NULL);
    if (crc == CURLE_OK)
        return 0;
    if (crc == CURLE_QUOTE_ERROR) {
        snprintf (err, errlen, "%s", self->body_ctx.reply [0] ? self->body_ctx.reply
                  : "refused by the server");
        return 1;
    }
    char why [400];
    cm_mailserver_t srv = { .host = self->host, .port = self->port,
                            .username = self->username };
    cm_mailcurl_reason (crc, &self->body_ctx, &srv, why, sizeof why);
    snprintf (err, errlen, "%s", why);
    return -1;
}

/* A flag or move command on the control connection (read-write; it
   parses every untagged answer). 0 ok, 1 NO/BAD (text in err), -1 broken. */
static int
s_ctl (cm_imap_t *self, const char *cmd, char *err, size_t errlen)
{
    int r = s_command (self, cmd, LINE_CAP, NULL, NULL, err, errlen);
    return r > 0 ? 1 : r;
}

/* EXAMINE of the route's folder on the body connection. libcurl keeps
   believing the folder is selected, so later URL fetches skip SELECT and
   run in the read-only session. */
static int
s_body_examine (cm_imap_t *self, char *err, size_t errlen)
{
    char quoted [NAME_MAX_LEN * 2 + 4], cmd [NAME_MAX_LEN * 2 + 16];
    if (s_quote (self->folder_wire, quoted, sizeof quoted)) {
        snprintf (err, errlen, "folder name too long");
        return -1;
    }
    snprintf (cmd, sizeof cmd, "EXAMINE %s", quoted);
    int r = s_body_command (self, cmd, err, errlen);
    self->body_ro = r == 0;
    self->body_examines++;
    self->body_news = 0;            /* a folder opened again has no news */
    return r ? -1 : 0;
}

/* Brings the body session up to date. Once it is read-only, a NOOP does:
   the server reports new mail and flag changes there, without opening
   the folder again (an EXAMINE re-reads the whole folder: on a Dovecot
   maildir of 10,000 messages that was a third of the server's work, and
   it grows with the folder). But libcurl counts a command's answer lines
   against its 300 KB header limit in a way that grows faster than their
   number, and drops the connection past it: over CM_IMAP_NOOP_NEWS_MAX
   changes since the last sync, EXAMINE (which closes the folder: no news)
   is the cheaper way. The changes are counted as they are made on the
   control session (flags set .SILENT, moves) and as it hears of them
   (EXPUNGE answers, flag changes by other clients). A session libcurl had
   to open again, or a NOOP that fails, gets the EXAMINE too. */
static int
s_body_sync (cm_imap_t *self, char *err, size_t errlen)
{
    if (self->body_ro && self->body_news <= CM_IMAP_NOOP_NEWS_MAX
        && s_body_command (self, "NOOP", err, errlen) == 0 && self->body_ro) {
        self->body_news = 0;
        return 0;
    }
    return s_body_examine (self, err, errlen);
}

int
cm_imap_body_open (cm_imap_t *self, char *err, size_t errlen)
{
    return s_body_sync (self, err, errlen) ? -1 : 0;
}

/* Notes uid for cm_imap_restore_unseen() (once). -1 out of memory. */
static int
s_note_unseen (cm_imap_t *self, uint64_t uid)
{
    if (self->nunsee && self->unsee [self->nunsee - 1] == uid)
        return 0;
    if (self->nunsee == self->unsee_cap) {
        size_t cap = self->unsee_cap ? self->unsee_cap * 2 : 256;
        uint64_t *grown = realloc (self->unsee, cap * sizeof *grown);
        if (!grown)
            return -1;
        self->unsee = grown;
        self->unsee_cap = cap;
    }
    self->unsee [self->nunsee++] = uid;
    return 0;
}

int
cm_imap_fetch (cm_imap_t *self, uint64_t uid, size_t max_bytes, bool peek,
               char **data, size_t *len, bool *too_big, char *err,
               size_t errlen)
{
    char url [sizeof self->base_url + NAME_MAX_LEN * 3 + 64];
    cm_buf_t buf;
    s_fetch_t meta;
    int rc = -1;
    bool rw = false;            /* a BODY[] went out on a read-write session */
    *data = NULL;
    *len = 0;
    *too_big = false;
    cm_buf_init (&buf, max_bytes);
    if (!s_cached_meta (self, uid, &meta) && s_fetch_meta (self, uid, &meta, err, errlen))
        goto done;
    if (!meta.found) {
        int there = s_uid_matches (self, uid, "", err, errlen);
        if (there <= 0) {
            rc = there < 0 ? -1 : 2;
            goto done;
        }
        /* there, but no answer named it in a form this parser reads: it
           is fetched all the same (mail is never skipped for how a server
           words its flags), without a size to check; whether it was read
           is asked as a SEARCH too (the \Seen a read-write body session
           sets is taken off again only from mail that was unread) */
        cm_warn (self->route, "UID %" PRIu64 ": the server's answer to UID FETCH (UID FLAGS"
                 " RFC822.SIZE) could not be read; the message is fetched without its size",
                 uid);
        int seen = s_uid_matches (self, uid, " SEEN", err, errlen);
        if (seen < 0)
            goto done;
        meta = (s_fetch_t) { .found = true, .uid = uid, .seen = seen == 1 };
    }
    if (meta.has_size && max_bytes && meta.size > max_bytes && !self->size_unreliable) {
        *too_big = true;
        *len = (size_t) meta.size;
        rc = 1;
        goto done;
    }
    /* room for the announced size at once, no growing by copies (only
       within the fetch limit: without one, a bogus size must not become
       a huge allocation) */
    if (meta.has_size && max_bytes && cm_buf_reserve (&buf, (size_t) meta.size)) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    snprintf (url, sizeof url, "%s%s;UIDVALIDITY=%" PRIu64 ";UID=%" PRIu64,
              self->base_url, self->folder_url, self->uidvalidity, uid);
    curl_easy_setopt (self->body, CURLOPT_URL, url);
    curl_easy_setopt (self->body, CURLOPT_WRITEFUNCTION, s_write_body);
    curl_easy_setopt (self->body, CURLOPT_WRITEDATA, &buf);
    CURLcode crc = CURLE_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        cm_buf_reset (&buf);
        self->body_ctx.errbuf [0] = 0;
        crc = curl_easy_perform (self->body);
        if (!s_retryable (crc))
            break;
    }
    s_body_reconnected (self);
    rw = rw || !self->body_ro;
    if (crc == CURLE_WRITE_ERROR && buf.overflow) {
        *too_big = true;
        *len = meta.has_size ? (size_t) meta.size : 0;
        rc = 1;
        goto done;
    }
    if (crc == CURLE_REMOTE_FILE_NOT_FOUND) {
        /* The body session may not have seen the message yet (a server
           shows new mail to a session only at a sync point): sync it and
           try once more before believing the message is gone. */
        if (s_body_examine (self, err, errlen) == 0) {
            cm_buf_reset (&buf);
            curl_easy_setopt (self->body, CURLOPT_URL, url);
            curl_easy_setopt (self->body, CURLOPT_WRITEFUNCTION, s_write_body);
            curl_easy_setopt (self->body, CURLOPT_WRITEDATA, &buf);
            crc = curl_easy_perform (self->body);
            s_body_reconnected (self);
            rw = rw || !self->body_ro;
        }
    }
    if (crc == CURLE_REMOTE_FILE_NOT_FOUND) {
        /* expunged meanwhile, or the folder's UIDVALIDITY changed: ask
           the control session, synced, without the prefetched answer */
        if (s_command (self, "NOOP", LINE_CAP, NULL, NULL, err, errlen)
            || s_fetch_meta (self, uid, &meta, err, errlen))
            goto done;
        int there = meta.found ? 1 : s_uid_matches (self, uid, "", err, errlen);
        if (there <= 0) {
            rc = there < 0 ? -1 : 2;
            goto done;
        }
        snprintf (err, errlen, "UID %" PRIu64 " could not be fetched from "
                  "folder %s (UIDVALIDITY changed?)", uid, self->folder);
        goto done;
    }
    if (crc) {
        char why [400];
        cm_mailserver_t srv = { .host = self->host, .port = self->port,
                                .username = self->username };
        if (crc == CURLE_OPERATION_TIMEDOUT)
            snprintf (why, sizeof why, "timeout talking to %s:%d",
                      self->host, self->port);
        else
            cm_mailcurl_reason (crc, &self->body_ctx, &srv, why, sizeof why);
        snprintf (err, errlen, "fetching UID %" PRIu64 ": %s", uid, why);
        goto done;
    }
    if (meta.has_size && buf.len != meta.size && !self->size_unreliable) {
        /* Never commit bytes that are not the message the server sized: a
           confused connection must not turn into a wrong message. But some
           servers announce sizes that are not their messages' (estimates
           made before a conversion: hMailServer, some hosted Exchange,
           WildDuck), on every message. So the message is fetched again:
           the same bytes twice are what the server holds, and its sizes
           are not checked again on this connection; other bytes are a
           confused connection, and nothing is committed. */
        size_t first_len = buf.len;
        char *first = malloc (first_len ? first_len : 1);
        if (!first) {
            snprintf (err, errlen, "out of memory");
            goto done;
        }
        memcpy (first, buf.data, first_len);
        cm_buf_reset (&buf);
        crc = curl_easy_perform (self->body);
        s_body_reconnected (self);
        rw = rw || !self->body_ro;
        bool same = crc == CURLE_OK && buf.len == first_len
                    && memcmp (buf.data, first, first_len) == 0;
        free (first);
        if (!same) {
            snprintf (err, errlen, "UID %" PRIu64 ": fetched %zu bytes but the server"
                      " announced %" PRIu64 ", and %zu bytes the second time", uid,
                      first_len, meta.size, buf.len);
            curl_easy_setopt (self->body, CURLOPT_FORBID_REUSE, 1L);
            goto done;
        }
        self->size_unreliable = true;
        cm_warn (self->route, "%s:%d announces sizes that are not its messages' (UID %" PRIu64
                 ": %" PRIu64 " announced, the same %zu bytes sent twice): the fetched bytes"
                 " are kept, and sizes are no longer checked on this connection",
                 self->host, self->port, uid, meta.size, first_len);
    }
    *data = cm_buf_take (&buf, len);
    if (!*data) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    rc = 0;
done:
    /* A body session libcurl had to open again is read-write, and its
       BODY[] sets \Seen, whether the fetch then went through or not (a
       message the server fails to read mid-way is flagged all the same,
       and a NO, after which the session is EXAMINEd again, too): noted
       for cm_imap_restore_unseen(), so no message is marked before it is
       committed. */
    if (rw && peek && !meta.seen && s_note_unseen (self, uid)) {
        cm_warn (self->route, "out of memory: UID %" PRIu64 " may be left marked read"
                 " until it is committed", uid);
        if (rc == 0) {
            snprintf (err, errlen, "out of memory");
            free (*data);
            *data = NULL;
            *len = 0;
            rc = -1;
        }
    }
    cm_buf_free (&buf);
    return rc;
}

int
cm_imap_mark_seen_set (cm_imap_t *self, const uint64_t *uids, size_t n, char *err,
                       size_t errlen)
{
    /* as many commands as the set needs to stay within a command line */
    char set [CMD_MAX - 64], cmd [CMD_MAX];
    int r = 0;
    for (size_t at = 0, k; at < n && r == 0; at += k) {
        k = s_uid_set_part (uids + at, n - at, set, sizeof set);
        if (k == 0) {
            snprintf (err, errlen, "UID %" PRIu64 " does not fit a command", uids [at]);
            return -1;
        }
        snprintf (cmd, sizeof cmd, "UID STORE %s +FLAGS.SILENT (\\Seen)", set);
        r = s_ctl (self, cmd, err, errlen);
        self->body_news += k;
        if (r > 0) {
            char why [300];
            snprintf (why, sizeof why, "%s", err);
            snprintf (err, errlen, "could not mark %zu message(s) seen: %s", k, why);
        }
    }
    return r ? -1 : 0;
}

int
cm_imap_restore_unseen (cm_imap_t *self, char *err, size_t errlen)
{
    if (self->nunsee == 0)
        return 0;
    size_t setlen = self->nunsee * 24 + 1;
    char *set = malloc (setlen), *cmd = malloc (setlen + 64);
    int r = -1;
    if (set && cmd && s_uid_set (self->unsee, self->nunsee, set, setlen) == 0) {
        snprintf (cmd, setlen + 64, "UID STORE %s -FLAGS.SILENT (\\Seen)", set);
        r = s_ctl (self, cmd, err, errlen);
        self->body_news += self->nunsee;
        if (r > 0) {
            char why [300];
            snprintf (why, sizeof why, "%s", err);
            snprintf (err, errlen, "could not keep %zu message(s) unread: %s",
                      self->nunsee, why);
        }
    }
    else
        snprintf (err, errlen, "out of memory");
    free (set);
    free (cmd);
    self->nunsee = 0;
    return r ? -1 : 0;
}

int
cm_imap_mark_seen (cm_imap_t *self, uint64_t uid, char *err, size_t errlen)
{
    return cm_imap_mark_seen_set (self, &uid, 1, err, errlen);
}

/* A processed folder the server said does not exist ([TRYCREATE]): the
   server asks the client to create it and try again (RFC 9051 7.1), as a
   mail client does; subscribed, so that mail clients that list only those
   show it. Made by another client meanwhile ([ALREADYEXISTS]) is made. 0
   made, 1 the server refused (its answer in why), -1 connection broken. */
static int
s_create_folder (cm_imap_t *self, const char *folder, const char *quoted,
                 char *why, size_t whylen)
{
    char cmd [NAME_MAX_LEN * 2 + 16], scratch [300];
    snprintf (cmd, sizeof cmd, "CREATE %s", quoted);
    int c = s_ctl (self, cmd, why, whylen);
    if (c > 0 && strcasestr (why, "[ALREADYEXISTS"))
        return 0;
    if (c)
        return c;
    cm_warn (self->route, "the processed folder %s did not exist: created it", folder);
    snprintf (cmd, sizeof cmd, "SUBSCRIBE %s", quoted);
    if (s_ctl (self, cmd, scratch, sizeof scratch) < 0) {   /* a NO is no matter */
        snprintf (why, whylen, "%s", scratch);
        return -1;
    }
    return 0;
}

/* Moves the UIDs of set (n of them) to folder (wire, quoted): see
   cm_imap_move_set. */
static int
s_move_part (cm_imap_t *self, const char *set, size_t n, const char *folder,
             const char *wire, const char *quoted, char *err, size_t errlen)
{
    char cmd [CMD_MAX], why [300];
    snprintf (cmd, sizeof cmd, "UID %s %s %s", self->cap_move ? "MOVE" : "COPY", set, quoted);
    int r = s_ctl (self, cmd, err, errlen);
    if (r > 0 && strcasestr (err, "[TRYCREATE")) {
        int c = s_create_folder (self, folder, quoted, why, sizeof why);
        if (c > 0)
            snprintf (err, errlen, "folder %s does not exist and cannot be created: %s",
                      folder, why);
        else if (c < 0)
            snprintf (err, errlen, "%s", why);
        if (c)
            return -1;          /* the move failed */
        r = s_ctl (self, cmd, err, errlen);
    }
    if (r > 0) {
        char hint [300];
        s_outside_hint (self, folder, wire, hint, sizeof hint);
        snprintf (why, sizeof why, "%s", err);
        snprintf (err, errlen, "moving %zu message(s) to %s failed: %s%s", n, folder,
                  why, hint);
    }
    if (r || self->cap_move)
        return r ? -1 : 0;
    snprintf (cmd, sizeof cmd, "UID STORE %s +FLAGS.SILENT (\\Deleted)", set);
    r = s_ctl (self, cmd, err, errlen);
    self->body_news += n;           /* silent here, news there; the
                                       EXPUNGE answers count themselves */
    if (r == 0 && self->cap_uidplus) {
        snprintf (cmd, sizeof cmd, "UID EXPUNGE %s", set);
        r = s_ctl (self, cmd, err, errlen);
    }
    else if (r == 0)
        cm_warn (self->route, "%s has no UIDPLUS: %zu message(s) copied to %s and"
                 " flagged \\Deleted, not expunged", self->host, n, folder);
    if (r > 0) {
        snprintf (why, sizeof why, "%s", err);
        snprintf (err, errlen, "moving %zu message(s) to %s failed: %s", n, folder, why);
    }
    return r ? -1 : 0;
}

int
cm_imap_move_set (cm_imap_t *self, const uint64_t *uids, size_t n, const char *folder,
                  char *err, size_t errlen)
{
    char wire [NAME_MAX_LEN], quoted [NAME_MAX_LEN * 2 + 4];
    if (n == 0)
        return 0;
    if (s_folder_arg (folder, wire, sizeof wire, quoted, sizeof quoted,
                      err, errlen))
        return -1;
    /* as many commands as the set needs to stay within a command line */
    char set [CMD_MAX];
    /* the longest command: "UID STORE <set> +FLAGS.SILENT (\Deleted)", or
       "UID MOVE <set> <quoted>" */
    size_t room = CMD_MAX - strlen (quoted) - 48;
    int r = 0;
    for (size_t at = 0, k; at < n && r == 0; at += k) {
        k = s_uid_set_part (uids + at, n - at, set, room);
        if (k == 0) {
            snprintf (err, errlen, "UID %" PRIu64 " does not fit a command", uids [at]);
            return -1;
        }
        r = s_move_part (self, set, k, folder, wire, quoted, err, errlen);
    }
    return r;
}

int
cm_imap_move (cm_imap_t *self, uint64_t uid, const char *folder, char *err,
              size_t errlen)
{
    return cm_imap_move_set (self, &uid, 1, folder, err, errlen);
}

int
cm_imap_folder_exists (cm_imap_t *self, const char *folder, char *err,
                       size_t errlen)
{
    char wire [NAME_MAX_LEN], quoted [NAME_MAX_LEN * 2 + 4];
    if (s_folder_arg (folder, wire, sizeof wire, quoted, sizeof quoted,
                      err, errlen))
        return -1;
    return s_list_one (self, wire, quoted, err, errlen);
}

void
cm_imap_body_stats (cm_imap_t *self, size_t *logins, size_t *examines)
{
    *logins = self->body_logins;
    *examines = self->body_examines;
}

int
cm_imap_noop (cm_imap_t *self, char *err, size_t errlen)
{
    int r = s_command (self, "NOOP", LINE_CAP, NULL, NULL, err, errlen);
    if (r > 0) {
        char why [300];
        snprintf (why, sizeof why, "%s", err);
        snprintf (err, errlen, "NOOP refused by %s: %s", self->host, why);
    }
    return r ? -1 : 0;
}

/* Reads and handles unsolicited lines for up to wait_ms. -1 broken. */
static int
s_drain (cm_imap_t *self, int wait_ms, volatile int *stop, char *err,
         size_t errlen)
{
    int r = s_read_line (self, LINE_CAP, wait_ms, stop);
    if (r < 0) {
        s_broken (self, err, errlen);
        return -1;
    }
    if (r == 1 && strncmp (self->line.data, "* ", 2) == 0) {
        s_untagged (self, self->line.data);
        if (self->broken) {
            s_broken (self, err, errlen);
            return -1;
        }
    }
    return 0;
}

/* Waiting without IDLE: NOOP every CM_IMAP_POLL_MS. */
static int
s_wait_poll (cm_imap_t *self, int timeout_ms, volatile int *stop, char *err,
             size_t errlen)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    int64_t next_noop = s_now_ms () + CM_IMAP_POLL_MS;
    while (1) {
        if (self->new_mail) {
            self->new_mail = false;
            return 1;
        }
        int64_t now = s_now_ms ();
        if ((stop && *stop) || now >= deadline)
            return 0;
        if (now >= next_noop) {
            if (cm_imap_noop (self, err, errlen))
                return -1;
            next_noop = s_now_ms () + CM_IMAP_POLL_MS;
            continue;
        }
        int64_t until = next_noop < deadline ? next_noop : deadline;
        if (s_drain (self, (int) (until - now), stop, err, errlen))
            return -1;
    }
}

int
cm_imap_wait (cm_imap_t *self, int timeout_ms, volatile int *stop, char *err,
              size_t errlen)
{
    char tag [16], line [32];
    if (self->broken) {
        s_broken (self, err, errlen);
        return -1;
    }
    if (self->new_mail) {
        self->new_mail = false;
        return 1;
    }
    if (stop && *stop)
        return 0;
    if (!self->cap_idle)
        return s_wait_poll (self, timeout_ms, stop, err, errlen);

    snprintf (tag, sizeof tag, "C%u", ++self->tag);
    snprintf (line, sizeof line, "%s IDLE", tag);
    if (s_send_line (self, line)) {
        s_broken (self, err, errlen);
        return -1;
    }
    size_t taglen = strlen (tag);
    /* until the server says "+ idling" */
    int64_t deadline = s_now_ms () + s_cmd_timeout (self);
    while (1) {
        int64_t left = deadline - s_now_ms ();
        int r = left > 0 ? s_read_line (self, LINE_CAP, (int) left, NULL) : 0;
        if (r <= 0) {
            s_broken (self, err, errlen);
            return -1;
        }
        const char *l = self->line.data;
        if (l [0] == '+')
            break;
        if (strncmp (l, "* ", 2) == 0) {
            s_untagged (self, l);
            continue;
        }
        if (strncmp (l, tag, taglen) == 0 && l [taglen] == ' ') {
            /* IDLE refused: poll instead from now on */
            cm_warn (self->route, "IDLE refused by %s (%s); polling",
                     self->host, l + taglen + 1);
            self->cap_idle = false;
            return s_wait_poll (self, timeout_ms, stop, err, errlen);
        }
    }
    int64_t idle_start = s_now_ms ();
    deadline = idle_start + timeout_ms;
    while (!self->new_mail && !(stop && *stop) && s_now_ms () < deadline) {
        int64_t left = deadline - s_now_ms ();
        int r = s_read_line (self, LINE_CAP, (int) (left < SLICE_MS ? left
                                                    : SLICE_MS), stop);
        if (r < 0) {
            s_broken (self, err, errlen);
            return -1;
        }
        if (r == 1 && strncmp (self->line.data, "* ", 2) == 0) {
            s_untagged (self, self->line.data);
            if (self->broken) {
                s_broken (self, err, errlen);
                return -1;
            }
        }
        else if (r == 1 && strncmp (self->line.data, tag, taglen) == 0
                 && self->line.data [taglen] == ' ') {
            /* the server ended IDLE itself (its own time limit): no DONE
               is owed, and the folder is looked at again. One that ends
               it at once, or with NO or BAD, is polled instead: looking
               again at once would be a busy loop. */
            const char *status = self->line.data + taglen + 1;
            cm_info (self->route, "%s ended IDLE: %.200s", self->host, status);
            self->new_mail = false;
            if (strncasecmp (status, "OK", 2) != 0) {
                cm_warn (self->route, "IDLE ended with an error by %s; polling", self->host);
                self->cap_idle = false;
            }
            int64_t left = deadline - s_now_ms ();
            if (!self->cap_idle || s_now_ms () - idle_start < IDLE_MIN_MS)
                return left > 0 ? s_wait_poll (self, (int) left, stop, err, errlen) : 1;
            return 1;
        }
    }
    /* end IDLE; the answer must come back at once */
    if (s_send_line (self, "DONE")) {
        s_broken (self, err, errlen);
        return -1;
    }
    deadline = s_now_ms () + (stop && *stop ? 2000 : s_cmd_timeout (self));
    while (1) {
        int64_t left = deadline - s_now_ms ();
        int r = left > 0 ? s_read_line (self, LINE_CAP, (int) left, NULL) : 0;
        if (r <= 0) {
            s_broken (self, err, errlen);
            return -1;
        }
        const char *l = self->line.data;
        if (strncmp (l, "* ", 2) == 0)
            s_untagged (self, l);
        else if (strncmp (l, tag, taglen) == 0 && l [taglen] == ' ')
            break;
    }
    if (self->new_mail) {
        self->new_mail = false;
        return 1;
    }
    return 0;
}

void
cm_imap_destroy (cm_imap_t **self_p)
{
    if (self_p && *self_p) {
        free ((*self_p)->meta);
        (*self_p)->meta = NULL;
        free ((*self_p)->unsee);
        (*self_p)->unsee = NULL;
    }
    if (!self_p || !*self_p)
        return;
    cm_imap_t *self = *self_p;
    if (self->ctl) {
        curl_easy_setopt (self->ctl, CURLOPT_SERVER_RESPONSE_TIMEOUT, 2L);
        if (self->sock != CURL_SOCKET_BAD && !self->broken) {
            self->logging_out = true;
            char tag [16], line [32];
            snprintf (tag, sizeof tag, "C%u", ++self->tag);
            snprintf (line, sizeof line, "%s LOGOUT", tag);
            if (s_send_line (self, line) == 0) {
                int64_t deadline = s_now_ms () + 2000;
                while (s_now_ms () < deadline) {
                    int r = s_read_line (self, LINE_CAP,
                                         (int) (deadline - s_now_ms ()), NULL);
                    if (r <= 0 || strncmp (self->line.data, tag,
                                           strlen (tag)) == 0)
                        break;
                }
            }
        }
        curl_easy_cleanup (self->ctl);
    }
    if (self->body) {
        curl_easy_setopt (self->body, CURLOPT_SERVER_RESPONSE_TIMEOUT, 2L);
        curl_easy_cleanup (self->body);
    }
    cm_buf_free (&self->in);
    cm_buf_free (&self->line);
    free (self->host);
    free (self->protocol);
    free (self->username);
    free (self->route);
    free (self->folder);
    free (self->folder_wire);
    free (self->folder_url);
    free (self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------------- */
/*  Self-test                                                             */
/* ---------------------------------------------------------------------- */

#define CHECK(cond) do { if (!(cond)) { \
    if (verbose) printf ("  imap selftest failed at line %d: %s\n", \
                         __LINE__, #cond); \
    goto done; } } while (0)

int
cm_imap_selftest (bool verbose)
{
    int rc = -1;
    char out [512];
    cm_buf_t in, line;
    cm_buf_init (&in, 0);
    cm_buf_init (&line, 0);
    uint64_t *uids = NULL;

    /* UID sets cut to fit a command line: 500 sparse 10-digit UIDs take
       more than one (each part a valid set, together all of them), runs
       stay ranges */
    {
        static uint64_t sparse [500];
        static char set [CMD_MAX - 64];
        for (size_t i = 0; i < 500; i++)
            sparse [i] = 4000000000ULL + 2 * i;
        size_t parts = 0, covered = 0;
        for (size_t at = 0, k = 1; at < 500 && k; at += k, parts++) {
            k = s_uid_set_part (sparse + at, 500 - at, set, sizeof set);
            CHECK (k > 0 && strlen (set) < sizeof set && set [strlen (set) - 1] != ',');
            covered += k;
        }
        CHECK (covered == 500 && parts == 2);
        uint64_t run [5] = { 1, 2, 3, 7, 9 };
        CHECK (s_uid_set_part (run, 5, set, sizeof set) == 5 && strcmp (set, "1:3,7,9") == 0);
        CHECK (s_uid_set_part (run, 5, set, 5) == 3 && strcmp (set, "1:3") == 0);
        CHECK (s_uid_set (run, 5, set, 6) == -1 && s_uid_set (run, 0, set, 6) == -1);
    }

    /* modified UTF-7 (RFC 3501 examples and edge cases) */
    CHECK (s_mutf7_encode ("INBOX", out, sizeof out) == 0
           && strcmp (out, "INBOX") == 0);
    CHECK (s_mutf7_encode ("A&B", out, sizeof out) == 0
           && strcmp (out, "A&-B") == 0);
    CHECK (s_mutf7_encode ("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
                           "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
                           out, sizeof out) == 0
           && strcmp (out, "~peter/mail/&U,BTFw-/&ZeVnLIqe-") == 0);
    CHECK (s_mutf7_encode ("Entw\xc3\xbc" "rfe", out, sizeof out) == 0
           && strcmp (out, "Entw&APw-rfe") == 0);
    CHECK (s_mutf7_encode ("\xf0\x9f\x93\xa7", out, sizeof out) == 0
           && strcmp (out, "&2D3c5w-") == 0);
    CHECK (s_mutf7_encode ("bad\xc3", out, sizeof out) == -1);
    CHECK (s_mutf7_encode ("\xc0\xaf", out, sizeof out) == -1);
    CHECK (s_mutf7_encode ("a\nb", out, sizeof out) == -1);
    CHECK (s_mutf7_encode ("INBOX", out, 4) == -1);

    /* quoting and URL escaping */
    CHECK (s_quote ("a\"b\\c", out, sizeof out) == 0
           && strcmp (out, "\"a\\\"b\\\\c\"") == 0);
    CHECK (s_quote ("abc", out, 5) == -1);
    CHECK (s_url_escape ("In box/x;UID=1&%", out, sizeof out) == 0
           && strcmp (out, "In%20box%2Fx%3BUID%3D1%26%25") == 0);
    CHECK (s_imap_date ("2024-03-05", out, sizeof out) == 0
           && strcmp (out, "5-Mar-2024") == 0);
    CHECK (s_imap_date ("2024-13-05", out, sizeof out) == -1);
    CHECK (s_imap_date ("2024-1-05", out, sizeof out) == -1);

    /* cutting lines, with a literal folded into a quoted string */
    size_t hint = 0;
    const char *wire1 = "* LIST () \"/\" {6}\r\nIn\"b\\x\r\n* 3 EXI";
    cm_buf_append (&in, wire1, strlen (wire1));
    CHECK (s_cut_line (&in, &hint, LINE_CAP, &line) == 1);
    CHECK (strcmp (line.data, "* LIST () \"/\" \"In\\\"b\\\\x\"") == 0);
    s_list_t l;
    CHECK (s_parse_list (line.data, &l) == 0 && l.sep == '/'
           && strcmp (l.name, "In\"b\\x") == 0);
    CHECK (s_cut_line (&in, &hint, LINE_CAP, &line) == 0);
    cm_buf_append (&in, "STS\r\n", 5);
    CHECK (s_cut_line (&in, &hint, LINE_CAP, &line) == 1
           && strcmp (line.data, "* 3 EXISTS") == 0 && in.len == 0);
    /* literal split across reads */
    cm_buf_append (&in, "* LIST (\\Noselect) NIL {5}\r\nab", 30);
    CHECK (s_cut_line (&in, &hint, LINE_CAP, &line) == 0);
    cm_buf_append (&in, "cde\r\n", 5);
    CHECK (s_cut_line (&in, &hint, LINE_CAP, &line) == 1);
    CHECK (s_parse_list (line.data, &l) == 0 && l.sep == 0 && l.noselect
           && strcmp (l.name, "abcde") == 0);
    /* LIST "" "": the separator whatever the root name */
    s_listq_t rootq = { .want = "" };
    s_on_list (NULL, "* LIST (\\Noselect) \".\" \"#mail\"", &rootq);
    s_on_list (NULL, "* LIST (\\Noselect) \"/\" \"\"", &rootq);
    CHECK (rootq.found && rootq.info.sep == '.');
    /* the literal whole, the rest of its line in the next read */
    cm_buf_append (&in, "* LIST () \"/\" {5}\r\nab\"cd", 24);
    CHECK (s_cut_line (&in, &hint, LINE_CAP, &line) == 0);
    cm_buf_append (&in, "\r\n", 2);
    CHECK (s_cut_line (&in, &hint, LINE_CAP, &line) == 1);
    CHECK (s_parse_list (line.data, &l) == 0 && l.sep == '/'
           && strcmp (l.name, "ab\"cd") == 0 && in.len == 0);
    /* caps: an endless line and a huge literal break the session */
    cm_buf_reset (&in);
    hint = 0;
    char big [300];
    memset (big, 'x', sizeof big);
    cm_buf_append (&in, big, sizeof big);
    CHECK (s_cut_line (&in, &hint, 256, &line) == -1);
    cm_buf_reset (&in);
    hint = 0;
    cm_buf_append (&in, "* X {999999999}\r\n", 17);
    CHECK (s_cut_line (&in, &hint, 256, &line) == -1);
    cm_buf_reset (&in);
    hint = 0;
    cm_buf_append (&in, "* X {99999999999999999999}\r\n", 28);
    CHECK (s_cut_line (&in, &hint, 256, &line) == 1);   /* not a literal */

    /* SEARCH: numbers below from (the n:* quirk) are dropped */
    size_t count = 0, alloc = 0;
    CHECK (s_parse_search ("* SEARCH 7 3 9 (MODSEQ 12)", 5, &uids, &count,
                           &alloc) == 0);
    CHECK (count == 2 && uids [0] == 7 && uids [1] == 9);
    CHECK (s_parse_search ("* SEARCH", 1, &uids, &count, &alloc) == 0
           && count == 2);
    /* libcurl's LOGIN: a non-ASCII password it would send bare */
    CHECK (s_login_bare_8bit ("p\xc3\xa4sswort") && !s_login_bare_8bit ("p\xc3\xa4 ss")
           && !s_login_bare_8bit ("p\xc3\xa4\"") && !s_login_bare_8bit ("plain")
           && !s_login_bare_8bit (NULL));

    /* ESEARCH (IMAP4rev2): the ALL set, ranges in any order, from on */
    count = 0;
    CHECK (s_parse_search ("* ESEARCH (TAG \"C7\") UID ALL 12,3:5,9", 4, &uids,
                           &count, &alloc) == 0);
    CHECK (count == 4 && uids [0] == 4 && uids [1] == 5 && uids [2] == 9
           && uids [3] == 12);
    count = 0;
    CHECK (s_parse_search ("* ESEARCH (TAG \"C8\") UID", 1, &uids, &count,
                           &alloc) == 0 && count == 0);
    CHECK (s_parse_search ("* ESEARCH (TAG \"C9\") UID COUNT 2 ALL 4294967294:"
                           "4294967295", 1, &uids, &count, &alloc) == 0
           && count == 2 && uids [1] == 4294967295u);
    count = 0;
    CHECK (s_parse_search ("* ESEARCH UID ALL 4294967295:20,7:1", 1, &uids,
                           &count, &alloc) == 0 && count == ESEARCH_MAX
           && uids [0] == 1 && uids [6] == 7 && uids [7] == 20
           && uids [ESEARCH_MAX - 1] == ESEARCH_MAX + 12);
    /* other return items around ALL (RFC 4731: MIN 2 ALL 2:5 COUNT 4) */
    count = 0;
    CHECK (s_parse_search ("* ESEARCH (TAG \"D1\") UID MIN 2 ALL 2:5 COUNT 4", 3,
                           &uids, &count, &alloc) == 0
           && count == 3 && uids [0] == 3 && uids [2] == 5);
    CHECK (s_parse_search ("* esearch uid max 9 all 9,7 modseq 12", 1, &uids,
                           &count, &alloc) == 0
           && count == 5 && uids [3] == 7 && uids [4] == 9);
    /* a damaged answer fails whole, nothing of it kept: a part would move
       the cursor past the UIDs after the damage */
    count = 0;
    CHECK (s_parse_search ("* ESEARCH (TAG \"x\") UID ALL 12,3:*", 1, &uids,
                           &count, &alloc) == 1 && count == 0);
    CHECK (s_parse_search ("* ESEARCH (TAG \"x\") UID ALL 20,99999999999999999999999,5",
                           1, &uids, &count, &alloc) == 1 && count == 0);
    CHECK (s_parse_search ("* ESEARCH UID ALL 4294967295:4294967298", 1, &uids,
                           &count, &alloc) == 1 && count == 0);
    CHECK (s_parse_search ("* ESEARCH UID ALL 4294967296", 1, &uids, &count,
                           &alloc) == 1 && count == 0);
    CHECK (s_parse_search ("* ESEARCH UID ALL *", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* ESEARCH UID ALL 0:3", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* ESEARCH UID ALL 3,", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* ESEARCH UID ALL 3:", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* ESEARCH UID ALL 3x", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* ESEARCH UID ALL", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* ESEARCH UID ALL  3", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* ESEARCH (TAG \"x\" UID ALL 3", 1, &uids, &count,
                           &alloc) == 1);
    CHECK (count == 0);
    /* without UID it holds sequence numbers, not UIDs */
    CHECK (s_parse_search ("* ESEARCH (TAG \"x\") ALL 1:3", 1, &uids, &count,
                           &alloc) == 1 && count == 0);
    CHECK (s_parse_search ("* ESEARCH (TAG \"x\") COUNT 3 UID ALL 1:3", 1, &uids,
                           &count, &alloc) == 1 && count == 0);
    CHECK (s_parse_search ("* ESEARCH (TAG \"x\")", 1, &uids, &count, &alloc) == 0
           && count == 0);
    /* so does a damaged SEARCH: a number that is no UID, anything but
       (MODSEQ n) after the numbers */
    CHECK (s_parse_search ("* SEARCH 7 4294967296 9", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* SEARCH 7 99999999999999999999999 9", 1, &uids, &count,
                           &alloc) == 1);
    CHECK (s_parse_search ("* SEARCH 7 x 9", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* SEARCH 7 9x", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* SEARCH 0 7", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* SEARCH 7 (MODSEQ 12) 9", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* SEARCH 7 (MODSEQ x)", 1, &uids, &count, &alloc) == 1);
    CHECK (s_parse_search ("* SEARCH 7 *", 1, &uids, &count, &alloc) == 1);
    CHECK (count == 0);
    CHECK (s_parse_search ("* SEARCH 4294967295 7 ", 1, &uids, &count, &alloc) == 0
           && count == 2 && uids [0] == 4294967295u && uids [1] == 7);
    CHECK (s_parse_search ("* SEARCHED 7", 1, &uids, &count, &alloc) == 0
           && count == 2);
    count = 2;

    /* the hint for a folder outside the personal prefix "INBOX.": INBOX in
       any case lies under it (RFC 9051 5.1) */
    cm_imap_t *probe = calloc (1, sizeof *probe);
    CHECK (probe);
    char offer [300];
    snprintf (probe->personal, sizeof probe->personal, "INBOX.");
    s_outside_hint (probe, "Done", "Done", offer, sizeof offer);
    bool offered = strstr (offer, "INBOX.Done?") != NULL;
    s_outside_hint (probe, "inbox.Done", "inbox.Done", offer, sizeof offer);
    bool lower = offer [0] != 0;
    s_outside_hint (probe, "Inbox", "Inbox", offer, sizeof offer);
    bool alone = offer [0] != 0;
    s_outside_hint (probe, "inboxes.Done", "inboxes.Done", offer, sizeof offer);
    bool other = strstr (offer, "INBOX.inboxes.Done?") != NULL;
    snprintf (probe->personal, sizeof probe->personal, "Mail/");
    s_outside_hint (probe, "mail/Done", "mail/Done", offer, sizeof offer);
    bool exact = strstr (offer, "Mail/mail/Done?") != NULL;
    free (probe);
    CHECK (offered && !lower && !alone && other && exact);
    CHECK (s_prefix_eq ("inbox.Done", "INBOX.", 6) && s_prefix_eq ("InBox", "INBOX.", 5)
           && !s_prefix_eq ("inbox/Done", "INBOX.", 6)
           && !s_prefix_eq ("inboxes", "INBOXES/", 8));

    /* FETCH */
    s_fetch_t f = { false, 42, false, false, 0 };
    s_parse_fetch ("* 3 FETCH (FLAGS (\\Seen) UID 41)", &f);
    CHECK (!f.found);
    s_parse_fetch ("* 4 FETCH (UID 42 FLAGS (\\Answered $Junk) "
                   "RFC822.SIZE 1234 MODSEQ (5))", &f);
    CHECK (f.found && !f.seen && f.has_size && f.size == 1234);
    f = (s_fetch_t) { false, 42, false, false, 0 };
    s_parse_fetch ("* 4 FETCH (FLAGS (\\Recent \\Seen) RFC822.SIZE 10 "
                   "UID 42)", &f);
    CHECK (f.found && f.seen && f.size == 10);
    /* any keyword: NIL, one longer than a token, a quoted one */
    char odd [600];
    snprintf (odd, sizeof odd, "* 5 FETCH (UID 42 FLAGS (NIL $%0300d \"q\" \\Seen)"
              " RFC822.SIZE 7)", 0);
    f = (s_fetch_t) { false, 42, false, false, 0 };
    s_parse_fetch (odd, &f);
    CHECK (f.found && f.seen && f.has_size && f.size == 7);
    f = (s_fetch_t) { false, 42, false, false, 0 };
    s_parse_fetch ("* 5 FETCH (UID 42 FLAGS (\\Seen \"unended) RFC822.SIZE 7)", &f);
    CHECK (!f.found);

    /* NAMESPACE, with an extension in the shared namespace */
    s_ns_t ns;
    CHECK (s_parse_namespace ("* NAMESPACE ((\"\" \"/\")) NIL ((\"shared/\" "
                              "\"/\" \"X-EXT\" (\"a\" \"b\")))", &ns) == 0);
    CHECK (ns.n [0] == 1 && ns.n [1] == 0 && ns.n [2] == 1
           && strcmp (ns.prefix [2][0], "shared/") == 0);
    CHECK (s_in_namespace ("shared/bob/INBOX", "shared/", '/'));
    CHECK (s_in_namespace ("shared", "shared/", '/'));
    CHECK (!s_in_namespace ("sharedX", "shared/", '/'));
    CHECK (!s_in_namespace ("INBOX", "", '/'));
    CHECK (s_parse_namespace ("* NAMESPACE ((\"INBOX.\" \".\")) "
                              "((\"#users.\" \".\")) NIL", &ns) == 0
           && ns.n [1] == 1 && strcmp (ns.prefix [1][0], "#users.") == 0);
    CHECK (s_parse_namespace ("* NAMESPACE ((\"\" \"/\"", &ns) == -1);
    CHECK (s_name_eq ("inbox", "INBOX", 0) && !s_name_eq ("Archive", "archive", '.'));
    CHECK (s_name_eq ("INBOX.Done", "inbox.Done", '.') && !s_name_eq ("INBOX.Done", "inbox.done", '.')
           && !s_name_eq ("INBOX.Done", "inbox.Done", '/') && !s_name_eq ("INBOX.Done", "inbox.Done", 0));

    /* response codes and tokens */
    char code [32], arg [64];
    s_resp_code (" [UIDVALIDITY 1700000000] UIDs valid", code, sizeof code,
                 arg, sizeof arg);
    CHECK (strcmp (code, "UIDVALIDITY") == 0
           && strcmp (arg, "1700000000") == 0);
    s_resp_code (" [READ-ONLY] Select completed", code, sizeof code, arg,
                 sizeof arg);
    CHECK (strcmp (code, "READ-ONLY") == 0 && arg [0] == 0);
    const char *p = "(a (b \"c)\") d) e";
    CHECK (s_skip_value (&p) == 0 && strcmp (p, " e") == 0);
    p = "((((";
    CHECK (s_skip_value (&p) == -1);

    /* reason mapping */
    cm_mailserver_t srv = { .host = "mail.example.test", .port = 993,
                            .username = "alice@example.test" };
    cm_mailcurl_ctx_t ctx;
    memset (&ctx, 0, sizeof ctx);
    cm_mailcurl_reason (CURLE_COULDNT_RESOLVE_HOST, &ctx, &srv, out,
                        sizeof out);
    CHECK (strcmp (out, "name not resolved: mail.example.test") == 0);
    cm_mailcurl_reason (CURLE_COULDNT_CONNECT, &ctx, &srv, out, sizeof out);
    CHECK (strcmp (out, "connection refused: mail.example.test:993") == 0);
    cm_mailcurl_reason (CURLE_OPERATION_TIMEDOUT, &ctx, &srv, out,
                        sizeof out);
    CHECK (strcmp (out, "timeout connecting to mail.example.test:993") == 0);
    snprintf (ctx.errbuf, sizeof ctx.errbuf, "unable to get local issuer");
    cm_mailcurl_reason (CURLE_PEER_FAILED_VERIFICATION, &ctx, &srv, out,
                        sizeof out);
    CHECK (strcmp (out, "certificate not trusted: unable to get local "
                        "issuer") == 0);
    cm_mailcurl_reason (CURLE_SSL_CONNECT_ERROR, &ctx, &srv, out, sizeof out);
    CHECK (strncmp (out, "TLS handshake failed: ", 22) == 0);
    cm_mailcurl_reason (CURLE_USE_SSL_FAILED, &ctx, &srv, out, sizeof out);
    CHECK (strcmp (out, "STARTTLS not offered by mail.example.test:993")
           == 0);
    ctx.auth_sent = true;
    cm_mailcurl_reason (CURLE_LOGIN_DENIED, &ctx, &srv, out, sizeof out);
    CHECK (strcmp (out, "authentication failed for alice@example.test") == 0);
    ctx.auth_sent = false;
    ctx.login_disabled = true;
    cm_mailcurl_reason (CURLE_LOGIN_DENIED, &ctx, &srv, out, sizeof out);
    CHECK (strstr (out, "plain-text login disabled") != NULL);

    /* URLs */
    char err [128];
    srv.protocol = "imap+starttls";
    CHECK (cm_mailcurl_url (&srv, false, "", out, sizeof out, err,
                            sizeof err) == 0
           && strcmp (out, "imap://mail.example.test:993/") == 0);
    srv.host = "::1";
    srv.protocol = "smtps";
    CHECK (cm_mailcurl_url (&srv, true, "helo", out, sizeof out, err,
                            sizeof err) == 0
           && strcmp (out, "smtps://[::1]:993/helo") == 0);
    srv.host = "evil.test/x@y";
    CHECK (cm_mailcurl_url (&srv, true, "", out, sizeof out, err,
                            sizeof err) == -1);
    srv.host = "ok.test";
    srv.protocol = "pop3";
    CHECK (cm_mailcurl_url (&srv, false, "", out, sizeof out, err,
                            sizeof err) == -1);

    /* trace redaction of credentials in libcurl's own lines */
    memset (&ctx, 0, sizeof ctx);
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_OUT, "A003 AUTHENTICATE PLAIN");
    CHECK (ctx.in_auth && ctx.auth_sent);
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "+");
    CHECK (ctx.in_auth);
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "A003 OK Logged in");
    CHECK (!ctx.in_auth);
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_OUT, "EHLO client");
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "250-AUTH PLAIN LOGIN");
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "250 SMTPUTF8");
    CHECK (ctx.auth_offered && strcmp (ctx.reply, "250-AUTH PLAIN LOGIN "
                                       "250 SMTPUTF8") == 0);
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_OUT, "AUTH PLAIN AGFsaWNl");
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "235 2.7.0 Authentication "
                  "successful");
    CHECK (ctx.auth_ok && !ctx.in_auth);

    /* a PREAUTH greeting: only a connection's first line counts */
    memset (&ctx, 0, sizeof ctx);
    cm_mailcurl_trace_line (&ctx, CURLINFO_TEXT, "Connected to mail.example.test "
                            "(192.0.2.1) port 143 (#0)");
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "* PREAUTH Ready.");
    CHECK (ctx.preauth);
    srv.host = "mail.example.test";
    cm_mailcurl_reason (CURLE_USE_SSL_FAILED, &ctx, &srv, out, sizeof out);
    CHECK (strncmp (out, "mail.example.test:993 greeted PREAUTH", 37) == 0);
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "* OK still");
    CHECK (ctx.preauth);
    cm_mailcurl_trace_line (&ctx, CURLINFO_TEXT, "Connected to mail.example.test "
                            "(192.0.2.1) port 143 (#1)");
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "* OK [CAPABILITY IMAP4rev1] Ready");
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "* PREAUTH late");
    CHECK (!ctx.preauth);
    memset (&ctx, 0, sizeof ctx);
    cm_mailcurl_trace_line (&ctx, CURLINFO_HEADER_IN, "* PREAUTHX");
    CHECK (!ctx.preauth);
    cm_mailcurl_reason (CURLE_USE_SSL_FAILED, &ctx, &srv, out, sizeof out);
    CHECK (strcmp (out, "STARTTLS not offered by mail.example.test:993") == 0);
    rc = 0;
done:
    free (uids);
    cm_buf_free (&in);
    cm_buf_free (&line);
    return rc;
}
