/*  cli/api.h: the CLI's HTTP client of the router's API (docs/API.md).
    Finds the router from CASEMAIL_API_URL or STATE/run/api.url and the
    bearer token from CASEMAIL_TOKEN or STATE/api.token, sends JSON with
    libcurl and parses answers with jansson.

    A cli_api_t is owned by its creator (cli_api_destroy). Replies are
    new references the caller json_decref()s. Functions that return an
    exit code (cli.h) print their own messages. */
#ifndef CLI_API_H
#define CLI_API_H
#include "config.h"
#include <jansson.h>
#include <stdbool.h>

typedef struct _cli_api_t cli_api_t;

/* Default timeout of one request, and of connection tests (the router
   may take ~20 s on an unreachable host). */
#define CLI_API_TIMEOUT       30
#define CLI_API_TEST_TIMEOUT  60

/* Finds the router and the token. NULL when the router is not running
   (no URL) or the token can't be read; explained on stderr unless
   quiet. */
cli_api_t *cli_api_new (const cm_config_t *cfg, bool quiet);
void cli_api_destroy (cli_api_t **self_p);
/* The router's base URL ("http://127.0.0.1:PORT"). */
const char *cli_api_url (cli_api_t *self);

/* Loads the configuration and opens the API; CLI_OK or CLI_FAIL. */
int cli_api_connect (cli_api_t **self_p);

/* One request; body may be NULL and is not taken. On any HTTP answer
   returns 0 with *status and *reply (NULL when the body isn't JSON).
   -1 on a transport error, explained on stderr unless quiet. */
int cli_api_request (cli_api_t *self, const char *method, const char *path,
                     json_t *body, long timeout_s, bool quiet,
                     long *status, json_t **reply);

/* A request mapped to an exit code: CLI_OK with *reply set on 2xx;
   otherwise prints "casemail: <error>" and returns CLI_USAGE for
   400/404/409 and CLI_FAIL for the rest. */
int cli_api_call (cli_api_t *self, const char *method, const char *path,
                  json_t *body, long timeout_s, json_t **reply);

/* GETs raw bytes into out_path ("-" = stdout): into a temporary file
   beside it, renamed onto it only once the whole answer (a 200) is in,
   so a failed download leaves what was at out_path as it was. A new
   file gets mode 0644 less the umask, an existing one keeps its mode.
   Exit code. */
int cli_api_download (cli_api_t *self, const char *path,
                      const char *out_path);

/* URL-escapes one path or query component; caller frees. */
char *cli_api_escape (const char *text);

/* Prints a reply as indented JSON in the API's key order. */
void cli_api_print_json (const json_t *reply);
#endif
