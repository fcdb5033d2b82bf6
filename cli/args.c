/*  cli/args.c: the option scanner and small value checks every command
    uses (see cli.h). Errors are printed here as "casemail: ..." so a
    command only returns CLI_USAGE. What cli_read_file () and
    cli_read_text () return is the caller's to free; nothing else
    returned is owned by the caller; cli_list_text () returns a static
    buffer. */
#include "cli.h"
#include "buf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
cli_err (const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    fputs ("casemail: ", stderr);
    vfprintf (stderr, fmt, ap);
    fputc ('\n', stderr);
    va_end (ap);
}

void
cli_scan_init (cli_scan_t *scan, int argc, char **argv, int first)
{
    scan->argc = argc;
    scan->argv = argv;
    scan->index = first;
    scan->only_args = false;
}

int
cli_scan_next (cli_scan_t *scan, const cli_opt_t *table,
               const cli_opt_t **opt, const char **value)
{
    *opt = NULL;
    *value = NULL;
    if (scan->index >= scan->argc)
        return CLI_SCAN_END;
    const char *word = scan->argv [scan->index++];
    if (scan->only_args || word [0] != '-' || word [1] == 0) {
        *value = word;          /* "-" alone is a value (stdout) */
        return CLI_SCAN_ARG;
    }
    if (strcmp (word, "--") == 0) {
        scan->only_args = true;
        return cli_scan_next (scan, table, opt, value);
    }
    if (strcmp (word, "-h") == 0 || strcmp (word, "--help") == 0)
        return CLI_SCAN_HELP;
    /* Split "--name=value". */
    const char *eq = strchr (word, '=');
    size_t namelen = eq ? (size_t) (eq - word) : strlen (word);
    for (const cli_opt_t *o = table; o && o->name; o++) {
        if (strlen (o->name) != namelen || strncmp (o->name, word, namelen))
            continue;
        *opt = o;
        if (!o->has_value) {
            if (eq) {
                cli_err ("option %s takes no value", o->name);
                return CLI_SCAN_ERROR;
            }
            return CLI_SCAN_OPT;
        }
        if (eq)
            *value = eq + 1;
        else
        if (scan->index < scan->argc)
            *value = scan->argv [scan->index++];
        else {
            cli_err ("option %s needs a value", o->name);
            return CLI_SCAN_ERROR;
        }
        return CLI_SCAN_OPT;
    }
    cli_err ("unknown option %.*s", (int) namelen, word);
    return CLI_SCAN_ERROR;
}

int
cli_parse_int (const char *text, long min, long max, long *out)
{
    /* strtol would skip any leading white space (tab, newline...) and
       take a '+': the text must start with a digit, or '-' and a digit
       where negatives are allowed */
    if (!text)
        return -1;
    const char *digits = text [0] == '-' && min < 0 ? text + 1 : text;
    if (*digits < '0' || *digits > '9')
        return -1;
    char *end;
    errno = 0;
    long v = strtol (text, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

bool
cli_in_list (const char *text, const char *const *values)
{
    for (; *values; values++)
        if (strcmp (text, *values) == 0)
            return true;
    return false;
}

int
cli_once (const char **given, const char *opt, const char *what)
{
    if (!*given) {
        *given = opt;
        return CLI_OK;
    }
    if (strcmp (*given, opt) == 0)
        cli_err ("%s is given twice", opt);
    else
        cli_err ("%s and %s both set %s; use one", *given, opt, what);
    return CLI_USAGE;
}

const char *
cli_list_text (const char *const *values)
{
    static char text [256];
    text [0] = 0;
    size_t len = 0;
    for (const char *const *v = values; *v; v++) {
        int n = snprintf (text + len, sizeof text - len, "%s%s",
                          v == values ? "" : "|", *v);
        if (n < 0 || (size_t) n >= sizeof text - len)
            break;
        len += (size_t) n;
    }
    return text;
}

char *
cli_read_file (const char *opt, const char *path, size_t cap, size_t *len)
{
    bool std_in = strcmp (path, "-") == 0;
    int fd = std_in ? STDIN_FILENO : open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cli_err ("%s: cannot read %s: %s", opt, path, strerror (errno));
        return NULL;
    }
    struct stat st;
    if (!std_in && fstat (fd, &st) == 0 && S_ISDIR (st.st_mode)) {
        cli_err ("%s: %s is a folder", opt, path);
        close (fd);
        return NULL;
    }
    size_t used = 0, alloc = 4096;
    char *data = malloc (alloc);
    while (data) {
        if (used + 1 >= alloc) {
            if (alloc > cap + 1) {
                cli_err ("%s: %s is larger than %zu bytes", opt, path, cap);
                free (data);
                data = NULL;
                break;
            }
            char *more = realloc (data, alloc * 2);
            if (!more) {
                free (data);
                data = NULL;
                break;
            }
            data = more;
            alloc *= 2;
        }
        ssize_t n = read (fd, data + used, alloc - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_err ("%s: cannot read %s: %s", opt, path, strerror (errno));
            free (data);
            data = NULL;
            break;
        }
        if (n == 0)
            break;
        used += (size_t) n;
    }
    if (data && used > cap) {
        cli_err ("%s: %s is larger than %zu bytes", opt, path, cap);
        free (data);
        data = NULL;
    }
    if (!std_in)
        close (fd);
    if (!data)
        return NULL;
    data [used] = 0;
    if (len)
        *len = used;
    return data;
}

char *
cli_read_text (const char *opt, const char *path, size_t cap)
{
    size_t len;
    char *text = cli_read_file (opt, path, cap, &len);
    if (!text)
        return NULL;
    /* jansson's strings end at a NUL and refuse invalid UTF-8: either
       would cut or lose the text, so neither is taken for text */
    const char *name = strcmp (path, "-") == 0 ? "stdin" : path;
    const char *problem = memchr (text, 0, len) ? "contains a NUL byte"
                        : !cm_utf8_valid (text, len)
                        ? "is not valid UTF-8" : NULL;
    if (problem) {
        cli_err ("%s: %s %s (not text)", opt, name, problem);
        memset (text, 0, len);      /* may be a secret */
        free (text);
        return NULL;
    }
    return text;
}

void
cli_chomp (char *text)
{
    size_t n = strlen (text);
    if (n > 0 && text [n - 1] == '\n') {
        text [--n] = 0;
        if (n > 0 && text [n - 1] == '\r')
            text [--n] = 0;
    }
}
