/*  cli/cli.h: what the casemail command-line client's files share: exit
    codes, the command entry points main.c dispatches to, and a small
    option scanner that accepts both "--opt value" and "--opt=value".

    Command functions (cli_*_main) return the process exit code:
    CLI_OK, CLI_FAIL (the operation failed, the router is not running)
    or CLI_USAGE (bad usage, invalid input, API answers 400/404/409).
    Every message for the user is printed where the problem is found,
    so callers only pass the code up. */
#ifndef CLI_H
#define CLI_H
#include <stdbool.h>
#include <stddef.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Commands; argv [0] is the command word ("route", "up", ...). */
int cli_stack_up (int argc, char **argv);
int cli_stack_down (int argc, char **argv);
int cli_route_main (int argc, char **argv);
int cli_stage_main (int argc, char **argv);
int cli_incident_main (int argc, char **argv);
int cli_inbox_main (int argc, char **argv);
int cli_attachment_main (int argc, char **argv);
int cli_outbox_main (int argc, char **argv);

/* argv [0] of the process, for cm_config_load (). */
extern const char *cli_argv0;

/* One option a command accepts. */
typedef struct {
    const char *name;       /* "--route", or a short alias such as "-o" */
    bool has_value;         /* takes a value (next word or after '=') */
    int id;                 /* what the command switches on */
} cli_opt_t;

/* Scanner state over argv; start at index 1 (after the verb). */
typedef struct {
    int argc;
    char **argv;
    int index;              /* next word to look at */
    bool only_args;         /* "--" seen: the rest are positional */
} cli_scan_t;

enum {
    CLI_SCAN_END = 0,       /* no more words */
    CLI_SCAN_OPT,           /* *opt and *value (NULL without a value) set */
    CLI_SCAN_ARG,           /* positional word in *value */
    CLI_SCAN_HELP,          /* -h or --help */
    CLI_SCAN_ERROR          /* message printed; exit CLI_USAGE */
};

void cli_scan_init (cli_scan_t *scan, int argc, char **argv, int first);
/* Next option or argument, checked against table (ended by a NULL name). */
int cli_scan_next (cli_scan_t *scan, const cli_opt_t *table,
                   const cli_opt_t **opt, const char **value);

/* Prints "casemail: MESSAGE" on stderr. */
void cli_err (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
/* Parses a whole decimal number in [min, max]: digits only, with a
   leading '-' when min < 0 (no white space, no '+'); 0 or -1. */
int cli_parse_int (const char *text, long min, long max, long *out);
/* True when text is one of the NULL-terminated values. */
bool cli_in_list (const char *text, const char *const *values);
/* Refuses an option given a second time: *given holds the option
   that set the value so far (NULL: none; options that set the same
   thing share one). Records opt and returns CLI_OK, or prints
   "--X is given twice" (or "--A and --B both set WHAT; use one") and
   returns CLI_USAGE. */
int cli_once (const char **given, const char *opt, const char *what);
/* Formats values as "a|b|c" for messages. */
const char *cli_list_text (const char *const *values);
/* Reads a whole file ("-" = stdin) of at most cap bytes, NUL-terminated;
   caller frees. NULL with a message naming opt on error. */
char *cli_read_file (const char *opt, const char *path, size_t cap, size_t *len);
/* cli_read_file () for text: refuses (NULL, message naming opt) a
   file with a NUL byte or invalid UTF-8, which would otherwise be cut
   or refused later. The caller frees (and wipes a secret). */
char *cli_read_text (const char *opt, const char *path, size_t cap);
/* Removes one trailing "\n" or "\r\n". */
void cli_chomp (char *text);
#endif
