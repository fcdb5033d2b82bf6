/*  cli/print.c: tables and display formatting (see print.h). Widths
    count UTF-8 code points, which is right for the Latin, Cyrillic and
    similar text mail mostly carries; wide CJK glyphs may misalign a
    column but never break the output. */
#include "print.h"
#include "buf.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define S_CELL_MAX 4096         /* bytes kept of one table cell */

struct _cli_table_t {
    int ncols;
    char **headers;             /* ncols copies */
    char **cells;               /* nrows * ncols cleaned copies */
    size_t nrows;
    size_t alloc;               /* rows allocated */
    int flex_col;               /* column shrunk to fit, -1 none */
    int flex_min, flex_max;
    int *max;                   /* per column cap, 0 = none */
    size_t *widths;             /* set by the first print, else NULL */
    size_t printed;             /* rows printed so far */
};

/* Length of the UTF-8 sequence starting at p (1..4), 0 when invalid;
   *cp gets the code point. */
static int
s_utf8 (const unsigned char *p, uint32_t *cp)
{
    int n;
    uint32_t c = p [0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) { n = 2; c &= 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; c &= 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; c &= 0x07; }
    else return 0;
    for (int i = 1; i < n; i++) {
        if ((p [i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p [i] & 0x3F);
    }
    if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000)
    ||  c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

char *
cli_clean (const char *text, bool multiline, char *out, size_t size)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *) (text ? text : "");
    while (*p && o + 1 < size) {
        uint32_t cp;
        int n = s_utf8 (p, &cp);
        if (n == 0) {
            out [o++] = '?';
            p++;
            continue;
        }
        if (cp == '\n' || cp == '\t' || cp == '\r') {
            if (cp != '\r')
                out [o++] = multiline ? (char) cp : ' ';
            else
            if (!multiline)
                out [o++] = ' ';
        }
        else
        if (cm_text_control (cp))
            out [o++] = '?';
        else {
            if (o + (size_t) n >= size)
                break;
            memcpy (out + o, p, (size_t) n);
            o += (size_t) n;
        }
        p += n;
    }
    out [o] = 0;
    return out;
}

/* Code points in a cleaned (valid UTF-8) string. */
static size_t
s_width (const char *text)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if ((*p & 0xC0) != 0x80)
            w++;
    return w;
}

/* Byte offset of the first code point past width w. */
static size_t
s_cut (const char *text, size_t w)
{
    size_t count = 0, i = 0;
    for (; text [i]; i++)
        if (((unsigned char) text [i] & 0xC0) != 0x80 && count++ == w)
            break;
    return i;
}

cli_table_t *
cli_table_new (int ncols, const char *const *headers)
{
    cli_table_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->ncols = ncols;
    self->flex_col = -1;
    self->headers = calloc ((size_t) ncols, sizeof (char *));
    self->max = calloc ((size_t) ncols, sizeof (int));
    if (!self->headers || !self->max) {
        free (self->headers);
        free (self->max);
        free (self);
        return NULL;
    }
    for (int i = 0; i < ncols; i++)
        self->headers [i] = strdup (headers [i]);
    return self;
}

void
cli_table_destroy (cli_table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cli_table_t *self = *self_p;
    for (int i = 0; i < self->ncols; i++)
        free (self->headers [i]);
    for (size_t i = 0; i < self->nrows * (size_t) self->ncols; i++)
        free (self->cells [i]);
    free (self->widths);
    free (self->headers);
    free (self->max);
    free (self->cells);
    free (self);
    *self_p = NULL;
}

void
cli_table_flex (cli_table_t *self, int col, int min, int max)
{
    self->flex_col = col;
    self->flex_min = min;
    self->flex_max = max;
}

void
cli_table_max (cli_table_t *self, int col, int max)
{
    if (col >= 0 && col < self->ncols)
        self->max [col] = max;
}

int
cli_table_add (cli_table_t *self, const char *const *cells)
{
    if (self->nrows == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 16;
        char **more = realloc (self->cells, alloc * (size_t) self->ncols * sizeof (char *));
        if (!more)
            return -1;
        self->cells = more;
        self->alloc = alloc;
    }
    char cell [S_CELL_MAX];
    char **row = self->cells + self->nrows * (size_t) self->ncols;
    for (int i = 0; i < self->ncols; i++) {
        const char *text = cells [i] && *cells [i] ? cells [i] : "-";
        row [i] = strdup (cli_clean (text, false, cell, sizeof cell));
        if (!row [i])
            row [i] = strdup ("?");
    }
    self->nrows++;
    return 0;
}

/* Terminal width of stdout, 0 when it isn't a terminal. */
static size_t
s_term_width (FILE *out)
{
    struct winsize ws;
    int fd = fileno (out);
    if (fd >= 0 && isatty (fd) && ioctl (fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 0;
}

static void
s_print_cell (FILE *out, const char *text, size_t width, bool last)
{
    size_t w = s_width (text);
    if (w > width) {
        size_t keep = width > 3 ? width - 3 : width;
        fwrite (text, 1, s_cut (text, keep), out);
        if (width > 3)
            fputs ("...", out);
        w = width;
    }
    else
        fputs (text, out);
    if (!last)
        for (size_t i = w; i < width + 2; i++)
            fputc (' ', out);
}

/* Column widths from the headers and the rows so far, each at least its
   floor (the widths of the pages printed before, or NULL), within the
   caps, the flexible column within what the terminal leaves it. NULL
   when out of memory. */
static size_t *
s_widths (cli_table_t *self, FILE *out, const size_t *floor)
{
    size_t *widths = calloc ((size_t) self->ncols, sizeof (size_t));
    if (!widths)
        return NULL;
    for (int c = 0; c < self->ncols; c++) {
        widths [c] = s_width (self->headers [c]);
        for (size_t r = 0; r < self->nrows; r++) {
            size_t w = s_width (self->cells [r * (size_t) self->ncols + (size_t) c]);
            if (w > widths [c])
                widths [c] = w;
        }
        if (self->max [c] > 0 && widths [c] > (size_t) self->max [c])
            widths [c] = (size_t) self->max [c];
        if (floor && floor [c] > widths [c])
            widths [c] = floor [c];
    }
    int f = self->flex_col;
    if (f >= 0 && f < self->ncols) {
        size_t term = s_term_width (out);
        size_t limit = (size_t) self->flex_max;
        if (term) {
            size_t others = 0;
            for (int c = 0; c < self->ncols; c++)
                if (c != f)
                    others += widths [c] + 2;
            limit = term > others ? term - others - (f == self->ncols - 1 ? 0 : 2) : 0;
            if (limit < (size_t) self->flex_min)
                limit = (size_t) self->flex_min;
        }
        if (widths [f] > limit)
            widths [f] = limit;
    }
    return widths;
}

int
cli_table_print (cli_table_t *self, FILE *out)
{
    bool first = !self->widths;
    /* a later page keeps the widths so far: a column only widens, so a
       longer cell (a bigger id) is never cut below what its column allows */
    size_t *widths = s_widths (self, out, self->widths);
    if (!widths)
        return -1;
    free (self->widths);
    self->widths = widths;
    if (first) {
        for (int c = 0; c < self->ncols; c++)
            s_print_cell (out, self->headers [c], widths [c], c == self->ncols - 1);
        fputc ('\n', out);
    }
    for (size_t r = 0; r < self->nrows; r++) {
        for (int c = 0; c < self->ncols; c++) {
            char **cell = &self->cells [r * (size_t) self->ncols + (size_t) c];
            s_print_cell (out, *cell, widths [c], c == self->ncols - 1);
            free (*cell);
            *cell = NULL;
        }
        fputc ('\n', out);
    }
    self->printed += self->nrows;
    self->nrows = 0;
    if (first && self->printed == 0)
        fputs ("(none)\n", out);
    return 0;
}

char *
cli_time (const char *text, char *out, size_t size)
{
    if (!text || !*text) {
        snprintf (out, size, "-");
        return out;
    }
    struct tm tm = { 0 };
    int n = 0;
    if (sscanf (text, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
                &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n == 0)
        return cli_clean (text, false, out, size);
    const char *zone = text + n;
    if (*zone == '.')                   /* fraction of a second */
        for (zone++; *zone >= '0' && *zone <= '9'; zone++)
            ;
    long offset = 0;
    if (*zone == '+' || *zone == '-') {
        int hh, mm;
        if (sscanf (zone + 1, "%2d:%2d", &hh, &mm) != 2
        &&  sscanf (zone + 1, "%2d%2d", &hh, &mm) != 2)
            return cli_clean (text, false, out, size);
        offset = (hh * 3600L + mm * 60L) * (*zone == '-' ? -1 : 1);
    }
    else
    if (*zone != 'Z' && *zone != 'z' && *zone != 0)
        return cli_clean (text, false, out, size);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm (&tm) - offset;
    struct tm utc;
    if (!gmtime_r (&t, &utc))
        return cli_clean (text, false, out, size);
    strftime (out, size, "%Y-%m-%d %H:%M:%S", &utc);
    return out;
}

char *
cli_duration (long long secs, char *out, size_t size)
{
    if (secs < 0)
        snprintf (out, size, "-");
    else
    if (secs >= 86400)
        snprintf (out, size, "%lldd %02lldh", secs / 86400, secs % 86400 / 3600);
    else
    if (secs >= 3600)
        snprintf (out, size, "%lldh %02lldm", secs / 3600, secs % 3600 / 60);
    else
    if (secs >= 60)
        snprintf (out, size, "%lldm %02llds", secs / 60, secs % 60);
    else
        snprintf (out, size, "%llds", secs);
    return out;
}

char *
cli_json_text (const json_t *value, char *out, size_t size)
{
    if (json_is_string (value))
        return cli_clean (json_string_value (value), false, out, size);
    if (json_is_integer (value))
        snprintf (out, size, "%" JSON_INTEGER_FORMAT, json_integer_value (value));
    else
    if (json_is_real (value))
        snprintf (out, size, "%g", json_real_value (value));
    else
    if (json_is_boolean (value))
        snprintf (out, size, "%s", json_is_true (value) ? "true" : "false");
    else
    if (json_is_array (value)) {
        size_t len = 0, i;
        json_t *item;
        out [0] = 0;
        json_array_foreach (value, i, item) {
            char one [1024];
            cli_json_text (item, one, sizeof one);
            int n = snprintf (out + len, size - len, "%s%s", i ? ", " : "", one);
            if (n < 0 || (size_t) n >= size - len)
                break;
            len += (size_t) n;
        }
        if (len == 0)
            snprintf (out, size, "-");
    }
    else
    if (json_is_object (value))
        return cli_json_pairs (value, out, size);
    else
        snprintf (out, size, "-");
    return out;
}

char *
cli_json_pairs (const json_t *object, char *out, size_t size)
{
    size_t len = 0;
    const char *key;
    json_t *item;
    out [0] = 0;
    json_object_foreach ((json_t *) object, key, item) {
        char k [128], v [256];
        cli_clean (key, false, k, sizeof k);
        cli_json_text (item, v, sizeof v);
        int n = snprintf (out + len, size - len, "%s%s=%s", len ? " " : "", k, v);
        if (n < 0 || (size_t) n >= size - len)
            break;
        len += (size_t) n;
    }
    if (len == 0)
        snprintf (out, size, "-");
    return out;
}

const char *
cli_json_str (const json_t *object, const char *key)
{
    return json_string_value (json_object_get (object, key));
}
