/*  cli/print.h: how the CLI shows things: aligned tables, UTC times,
    durations, and text cleaned of terminal control characters (subjects
    and senders come from untrusted mail and could carry escape
    sequences).

    A cli_table_t is owned by its creator (cli_table_destroy). The
    formatting helpers write into the caller's buffer and return it. */
#ifndef CLI_PRINT_H
#define CLI_PRINT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct _cli_table_t cli_table_t;

/* A table with ncols columns titled by headers. */
cli_table_t *cli_table_new (int ncols, const char *const *headers);
void cli_table_destroy (cli_table_t **self_p);
/* Column col is shrunk (to no less than min) to fit a terminal, and is
   never wider than max when output is not a terminal. */
void cli_table_flex (cli_table_t *self, int col, int min, int max);
/* Column col is never wider than max. */
void cli_table_max (cli_table_t *self, int col, int max);
/* Adds a row of ncols cells (NULL shows "-"); cells are copied and
   cleaned. 0 or -1. */
int cli_table_add (cli_table_t *self, const char *const *cells);
/* Prints the rows added since the last call and forgets them. The
   first call prints the headers; later calls (a long list printed page
   by page) keep the column widths, widening a column for a longer cell
   (within its cap) rather than cutting it. A first call without rows
   prints "(none)" under the headers. 0, or -1 out of memory (nothing
   printed). */
int cli_table_print (cli_table_t *self, FILE *out);

/* Copies text, replacing control characters and invalid UTF-8 with '?'.
   With multiline, newlines and tabs are kept; otherwise they become
   spaces. */
char *cli_clean (const char *text, bool multiline, char *out, size_t size);
/* An RFC 3339 time as "YYYY-MM-DD HH:MM:SS" UTC; "-" for NULL or "",
   the cleaned text itself when it doesn't parse. */
char *cli_time (const char *rfc3339, char *out, size_t size);
/* Seconds as "3d 04h", "2h 05m", "5m 12s" or "12s"; "-" when negative. */
char *cli_duration (long long secs, char *out, size_t size);
/* A JSON scalar for display: strings cleaned, numbers, true/false,
   "-" for null or absent; arrays of strings joined with ", ". */
char *cli_json_text (const json_t *value, char *out, size_t size);
/* A JSON object of scalars as "k=v k=v" in the API's order; "-" if empty. */
char *cli_json_pairs (const json_t *object, char *out, size_t size);
/* A string member of a JSON object, or NULL. */
const char *cli_json_str (const json_t *object, const char *key);
#endif
