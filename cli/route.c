/*  cli/route.c: "casemail route ..." and "casemail stage list".
    Options map one to one to the API's route fields (docs/API.md). What
    is syntax is checked here (numbers, known values, readable files, a
    set variable) and named by its option; what needs the route's other
    fields (required fields, address syntax, duplicates) is the router's
    to say in its 400/409 answers.

    Secrets never come from the command line: a password or client
    secret is read from a variable, a file or stdin, sent once, and
    wiped from memory after the request. */
#include "api.h"
#include "cli.h"
#include "print.h"
#include "route.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define S_SECRET_MAX 4096

typedef enum {
    S_STR,          /* any text */
    S_ENUM,         /* one of values */
    S_PORT,         /* 1..65535 */
    S_SECONDS,      /* 1..3600, as the router takes them */
    S_DATE,         /* YYYY-MM-DD */
    S_PATH,         /* readable file, sent absolute */
    S_TRUE,         /* flag setting the field to true */
    S_FALSE,        /* flag setting the field to false */
    S_SECRET_ENV,   /* secret from an environment variable */
    S_SECRET_FILE,  /* secret from a file */
    S_SECRET_STDIN  /* secret from stdin */
} s_type_t;

typedef struct {
    const char *opt;            /* command-line option */
    const char *field;          /* API field */
    s_type_t type;
    const char *const *values;  /* for S_ENUM */
} s_field_t;

static const char *const s_kinds [] = { "two-way", "ingest", NULL };
static const char *const s_in_protos [] = { "imap", "imaps", "imap+starttls", NULL };
static const char *const s_out_protos [] = { "smtp", "smtps", "smtp+starttls", NULL };
static const char *const s_levels [] = { "low", "verbose", NULL };
static const char *const s_auths [] = { "basic", "ntlm", "oauth2", NULL };
static const char *const s_versions [] = { "2007sp1", "2010", "2010sp1", "2010sp2", "other", NULL };
static const char *const s_clouds [] = { "global", "china", "germany", "usgovernment", NULL };
static const char *const s_after [] = { "keep", "seen", "move", NULL };

static const s_field_t s_fields [] = {
    { "--kind",                     "kind",                S_ENUM, s_kinds },
    { "--email",                    "email",               S_STR, NULL },
    { "--username",                 "username",            S_STR, NULL },
    { "--password-env",             "password",            S_SECRET_ENV, NULL },
    { "--password-file",            "password",            S_SECRET_FILE, NULL },
    { "--password-stdin",           "password",            S_SECRET_STDIN, NULL },
    { "--folder",                   "folder",              S_STR, NULL },
    { "--inbound-host",             "inbound_host",        S_STR, NULL },
    { "--inbound-protocol",         "inbound_protocol",    S_ENUM, s_in_protos },
    { "--inbound-port",             "inbound_port",        S_PORT, NULL },
    { "--outbound-host",            "outbound_host",       S_STR, NULL },
    { "--outbound-protocol",        "outbound_protocol",   S_ENUM, s_out_protos },
    { "--outbound-port",            "outbound_port",       S_PORT, NULL },
    { "--ca-file",                  "ca_file",             S_PATH, NULL },
    { "--log-level",                "log_level",           S_ENUM, s_levels },
    { "--exchange",                 "exchange",            S_TRUE, NULL },
    { "--no-exchange",              "exchange",            S_FALSE, NULL },
    { "--exchange-host",            "exchange_host",       S_STR, NULL },
    { "--exchange-ssl",             "exchange_ssl",        S_TRUE, NULL },
    { "--no-exchange-ssl",          "exchange_ssl",        S_FALSE, NULL },
    { "--exchange-port",            "exchange_port",       S_PORT, NULL },
    { "--auth",                     "auth",                S_ENUM, s_auths },
    { "--exchange-version",         "exchange_version",    S_ENUM, s_versions },
    { "--oauth-client-id",          "oauth_client_id",     S_STR, NULL },
    { "--oauth-client-secret-env",  "oauth_client_secret", S_SECRET_ENV, NULL },
    { "--oauth-client-secret-file", "oauth_client_secret", S_SECRET_FILE, NULL },
    { "--oauth-tenant-id",          "oauth_tenant_id",     S_STR, NULL },
    { "--national-cloud",           "national_cloud",      S_ENUM, s_clouds },
    { "--oauth-authority",          "oauth_authority",     S_STR, NULL },
    { "--after-fetch",              "after_fetch",         S_ENUM, s_after },
    { "--processed-folder",         "processed_folder",    S_STR, NULL },
    { "--since",                    "since",               S_DATE, NULL },
    { "--poll-interval",            "poll_interval",       S_SECONDS, NULL },
};
#define S_NFIELDS (sizeof s_fields / sizeof s_fields [0])
#define S_OPT_JSON 1000

static const char *s_route_usage =
    "usage: casemail route COMMAND ...\n"
    "\n"
    "  route list [--json]                  the EMAIL FEEDS table\n"
    "  route show NAME [--json]             every field, status and counts\n"
    "  route add NAME [options]             create a route (stopped)\n"
    "  route set NAME [options]             change fields of a route\n"
    "  route rm NAME                        delete a route (stops it first)\n"
    "  route start NAME | route stop NAME\n"
    "  route test-inbound (NAME | options)  log in to the inbound server\n"
    "  route test-outbound (NAME | options) log in to the outbound server\n"
    "\n"
    "options (each also as --opt=value):\n"
    "  --kind two-way|ingest               --email ADDR   --username USER\n"
    "  --password-env VAR | --password-file FILE | --password-stdin\n"
    "  --folder NAME\n"
    "  --inbound-host HOST  --inbound-protocol imap|imaps|imap+starttls  --inbound-port N\n"
    "  --outbound-host HOST --outbound-protocol smtp|smtps|smtp+starttls --outbound-port N\n"
    "  --ca-file FILE       --log-level low|verbose\n"
    "  --exchange | --no-exchange  --exchange-host HOST  --exchange-ssl | --no-exchange-ssl\n"
    "  --exchange-port N    --auth basic|ntlm|oauth2\n"
    "  --exchange-version 2007sp1|2010|2010sp1|2010sp2|other\n"
    "  --oauth-client-id ID  --oauth-client-secret-env VAR | --oauth-client-secret-file FILE\n"
    "  --oauth-tenant-id ID  --national-cloud global|china|germany|usgovernment\n"
    "  --oauth-authority URL\n"
    "  --after-fetch keep|seen|move  --processed-folder NAME\n"
    "  --since YYYY-MM-DD   --poll-interval SECONDS\n"
    "\n"
    "Passwords are never taken on the command line.\n";

/* Builds the scanner table of route options (plus --json when asked). */
static void
s_opt_table (cli_opt_t *table, bool fields, bool json)
{
    size_t n = 0;
    if (fields)
        for (size_t i = 0; i < S_NFIELDS; i++) {
            s_type_t t = s_fields [i].type;
            table [n].name = s_fields [i].opt;
            table [n].has_value = t != S_TRUE && t != S_FALSE && t != S_SECRET_STDIN;
            table [n].id = (int) i;
            n++;
        }
    if (json)
        table [n++] = (cli_opt_t) { "--json", false, S_OPT_JSON };
    table [n] = (cli_opt_t) { NULL, false, 0 };
}

/* True (and explained) when word tries to pass a secret in argv. */
static bool
s_refused (const char *word)
{
    static const char *const names [] = { "--password", "--oauth-client-secret", NULL };
    for (const char *const *n = names; *n; n++) {
        size_t len = strlen (*n);
        if (strncmp (word, *n, len) == 0 && (word [len] == 0 || word [len] == '=')) {
            cli_err ("%s is not accepted: a secret on the command line is seen "
                     "by other users (ps) and kept in shell history; use "
                     "%s-env VAR, %s-file FILE%s", *n, *n, *n,
                     n == names ? " or --password-stdin" : "");
            return true;
        }
    }
    return false;
}

/* Reads a secret from stdin: one line without echo on a terminal, the
   whole input otherwise. Caller wipes and frees. */
static char *
s_secret_stdin (const char *opt)
{
    if (!isatty (STDIN_FILENO)) {
        char *text = cli_read_text (opt, "-", S_SECRET_MAX);
        if (text)
            cli_chomp (text);
        return text;
    }
    struct termios old, quiet;
    bool restore = tcgetattr (STDIN_FILENO, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= (tcflag_t) ~ECHO;
        tcsetattr (STDIN_FILENO, TCSANOW, &quiet);
    }
    fputs ("Password: ", stderr);
    fflush (stderr);
    char *line = NULL;
    size_t alloc = 0;
    ssize_t n = getline (&line, &alloc, stdin);
    if (restore)
        tcsetattr (STDIN_FILENO, TCSANOW, &old);
    fputc ('\n', stderr);
    if (n < 0) {
        free (line);
        cli_err ("%s: no password on stdin", opt);
        return NULL;
    }
    if (strlen (line) != (size_t) n) {
        memset (line, 0, (size_t) n);
        free (line);
        cli_err ("%s: the password contains a NUL byte (not text)", opt);
        return NULL;
    }
    cli_chomp (line);
    return line;
}

/* Wipes and frees a string value of body (a secret). */
static void
s_wipe (json_t *body, const char *field)
{
    json_t *v = json_object_get (body, field);
    const char *text = json_string_value (v);
    if (text)
        memset ((char *) text, 0, strlen (text));
}

/* Adds one option's value to body; CLI_OK or CLI_USAGE (printed). */
static int
s_add_field (json_t *body, const s_field_t *f, const char *value)
{
    long n;
    struct stat st;
    char path [PATH_MAX];
    char *secret = NULL;
    json_t *v = NULL;
    switch (f->type) {
        case S_STR:
            v = json_string (value);
            if (!v) {
                cli_err ("%s: the value is not valid UTF-8", f->opt);
                return CLI_USAGE;
            }
            break;
        case S_ENUM:
            if (!cli_in_list (value, f->values)) {
                cli_err ("%s: '%s' is not one of %s", f->opt, value,
                         cli_list_text (f->values));
                return CLI_USAGE;
            }
            v = json_string (value);
            break;
        case S_PORT:
            if (cli_parse_int (value, 1, 65535, &n)) {
                cli_err ("%s: '%s' is not a port number (1-65535)", f->opt, value);
                return CLI_USAGE;
            }
            v = json_integer (n);
            break;
        case S_SECONDS:
            if (cli_parse_int (value, 1, 3600, &n)) {
                cli_err ("%s: '%s' is not a number of seconds (1-3600)", f->opt, value);
                return CLI_USAGE;
            }
            v = json_integer (n);
            break;
        case S_DATE:
            if (!cm_route_valid_date (value)) {
                cli_err ("%s: '%s' is not a date YYYY-MM-DD", f->opt, value);
                return CLI_USAGE;
            }
            v = json_string (value);
            break;
        case S_PATH:
            if (access (value, R_OK) || !realpath (value, path)) {
                cli_err ("%s: cannot read %s: %s", f->opt, value, strerror (errno));
                return CLI_USAGE;
            }
            if (stat (path, &st) || !S_ISREG (st.st_mode)) {
                cli_err ("%s: %s is not a regular file", f->opt, value);
                return CLI_USAGE;
            }
            v = json_string (path);
            break;
        case S_TRUE:
        case S_FALSE:
            v = json_boolean (f->type == S_TRUE);
            break;
        case S_SECRET_ENV:
        case S_SECRET_FILE:
        case S_SECRET_STDIN:
            if (f->type == S_SECRET_ENV) {
                const char *env = getenv (value);
                if (!env || !*env) {
                    cli_err ("%s: the variable %s is not set", f->opt, value);
                    return CLI_USAGE;
                }
                secret = strdup (env);
            }
            else
            if (f->type == S_SECRET_FILE) {
                if (strcmp (value, "-") == 0) {
                    cli_err ("%s: give a file (use --password-stdin for stdin)", f->opt);
                    return CLI_USAGE;
                }
                secret = cli_read_text (f->opt, value, S_SECRET_MAX);
                if (!secret)
                    return CLI_USAGE;
                cli_chomp (secret);
            }
            else {
                secret = s_secret_stdin (f->opt);
                if (!secret)
                    return CLI_USAGE;
            }
            if (!secret)
                return CLI_FAIL;
            if (!*secret) {
                cli_err ("%s: the %s is empty", f->opt, f->field);
                free (secret);
                return CLI_USAGE;
            }
            v = json_string (secret);
            memset (secret, 0, strlen (secret));
            free (secret);
            if (!v) {
                cli_err ("%s: the %s is not valid UTF-8", f->opt, f->field);
                return CLI_USAGE;
            }
            break;
    }
    if (!v || json_object_set_new (body, f->field, v)) {
        cli_err ("out of memory");
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* Scans argv from index 1: route options into *body (NULL when there
   were none), positional words into args (up to max), --json into
   *json. Exit code. */
static int
s_parse (int argc, char **argv, bool fields, bool *json, json_t **body,
         const char **args, int max, int *nargs, const char *usage_line)
{
    cli_opt_t table [S_NFIELDS + 2];
    s_opt_table (table, fields, json != NULL);
    /* the option that set each API field (options setting the same
       field share the slot of its first option), and --json */
    const char *given [S_NFIELDS] = { NULL }, *json_given = NULL;
    cli_scan_t scan;
    cli_scan_init (&scan, argc, argv, 1);
    *body = NULL;
    *nargs = 0;
    int rc = CLI_OK;
    while (rc == CLI_OK) {
        if (fields && !scan.only_args && scan.index < argc
        &&  s_refused (argv [scan.index])) {
            rc = CLI_USAGE;
            break;
        }
        const cli_opt_t *opt;
        const char *value;
        int what = cli_scan_next (&scan, table, &opt, &value);
        if (what == CLI_SCAN_END)
            break;
        if (what == CLI_SCAN_ERROR)
            rc = CLI_USAGE;
        else
        if (what == CLI_SCAN_HELP) {
            fputs (s_route_usage, stdout);
            rc = -1;
        }
        else
        if (what == CLI_SCAN_ARG) {
            if (*nargs >= max) {
                cli_err ("unexpected argument '%s' (usage: %s)", value, usage_line);
                rc = CLI_USAGE;
            }
            else
            if (!*value) {
                /* "" would ask for /v1/routes/, the list */
                cli_err ("the route NAME is empty (usage: %s)", usage_line);
                rc = CLI_USAGE;
            }
            else
                args [(*nargs)++] = value;
        }
        else
        if (opt->id == S_OPT_JSON) {
            rc = cli_once (&json_given, opt->name, opt->name);
            *json = true;
        }
        else {
            if (!*body && !(*body = json_object ()))
                return CLI_FAIL;
            const s_field_t *f = &s_fields [opt->id];
            size_t slot = 0;
            while (strcmp (s_fields [slot].field, f->field))
                slot++;
            rc = cli_once (&given [slot], f->opt, f->field);
            if (rc == CLI_OK)
                rc = s_add_field (*body, f, value);
        }
    }
    if (rc != CLI_OK && *body) {
        s_wipe (*body, "password");
        s_wipe (*body, "oauth_client_secret");
        json_decref (*body);
        *body = NULL;
    }
    return rc;
}

/* Path "/v1/routes/NAME[/suffix]" with NAME escaped; caller frees. */
static char *
s_route_path (const char *name, const char *suffix)
{
    char *esc = cli_api_escape (name);
    if (!esc)
        return NULL;
    size_t len = strlen (esc) + strlen (suffix) + 32;
    char *path = malloc (len);
    if (path)
        snprintf (path, len, "/v1/routes/%s%s", esc, suffix);
    free (esc);
    return path;
}

/* Sends one request and frees body (wiping secrets first). */
static int
s_send (const char *method, const char *path, json_t *body, long timeout_s,
        json_t **reply)
{
    cli_api_t *api = NULL;
    int rc = cli_api_connect (&api);
    if (rc == CLI_OK)
        rc = cli_api_call (api, method, path, body, timeout_s, reply);
    cli_api_destroy (&api);
    if (body) {
        s_wipe (body, "password");
        s_wipe (body, "oauth_client_secret");
        json_decref (body);
    }
    return rc;
}

/* Prints "key: value" with the key padded. */
static void
s_kv (const char *key, const char *value)
{
    printf ("%-20s %s\n", key, value && *value ? value : "-");
}

static const char *const s_config_keys [] = {
    "name", "kind", "email", "username", "password", "folder",
    "inbound_host", "inbound_protocol", "inbound_port",
    "outbound_host", "outbound_protocol", "outbound_port", "ca_file",
    "log_level", "exchange", "exchange_host", "exchange_ssl",
    "exchange_port", "auth", "exchange_version", "oauth_client_id",
    "oauth_client_secret", "oauth_tenant_id", "national_cloud",
    "oauth_authority", "after_fetch", "processed_folder", "since",
    "poll_interval", NULL
};
static const char *const s_status_keys [] = {
    "status", "desired", "status_since", "last_error", "last_error_at",
    "fail_count", "exchange_version_used", NULL
};
static const char *const s_meta_keys [] = {
    "id", "created_at", "updated_at", NULL
};
static const char *const s_hidden_keys [] = {
    "password_set", "oauth_client_secret_set", "counts", NULL
};

static bool
s_is_time_key (const char *key)
{
    size_t n = strlen (key);
    return (n > 3 && strcmp (key + n - 3, "_at") == 0)
        || (n > 6 && strcmp (key + n - 6, "_since") == 0);
}

/* Prints one member of a route as "key: value". */
static void
s_show_key (const json_t *route, const char *key)
{
    char text [2048], label [64];
    const json_t *v = json_object_get (route, key);
    snprintf (label, sizeof label, "%s:", key);
    if (strcmp (key, "password") == 0 || strcmp (key, "oauth_client_secret") == 0) {
        char set_key [64];
        snprintf (set_key, sizeof set_key, "%s_set", key);
        s_kv (label, json_is_true (json_object_get (route, set_key))
                     ? "(set)" : "(not set)");
    }
    else
    if (json_is_string (v) && s_is_time_key (key))
        s_kv (label, cli_time (json_string_value (v), text, sizeof text));
    else
        s_kv (label, cli_json_text (v, text, sizeof text));
}

static void
s_show_route (const json_t *route)
{
    for (const char *const *k = s_config_keys; *k; k++)
        s_show_key (route, *k);
    putchar ('\n');
    for (const char *const *k = s_status_keys; *k; k++)
        s_show_key (route, *k);
    putchar ('\n');
    const json_t *counts = json_object_get (route, "counts");
    static const char *const count_keys [] = { "fetched", "parsed", "rejected", "pending", NULL };
    char text [64], label [64];
    for (const char *const *k = count_keys; *k; k++) {
        snprintf (label, sizeof label, "%s:", *k);
        s_kv (label, cli_json_text (json_object_get (counts, *k), text, sizeof text));
    }
    putchar ('\n');
    for (const char *const *k = s_meta_keys; *k; k++)
        s_show_key (route, *k);
    /* Fields this client doesn't know yet are shown too. */
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *) route, key, v) {
        if (cli_in_list (key, s_config_keys) || cli_in_list (key, s_status_keys)
        ||  cli_in_list (key, s_meta_keys) || cli_in_list (key, s_hidden_keys))
            continue;
        char clean [128];
        s_show_key (route, cli_clean (key, false, clean, sizeof clean));
    }
}

static void
s_list_routes (const json_t *routes)
{
    static const char *const headers [] = {
        "NAME", "KIND", "EMAIL", "STATUS", "SINCE", "LAST ERROR"
    };
    cli_table_t *table = cli_table_new (6, headers);
    if (!table)
        return;
    cli_table_flex (table, 5, 12, 60);
    size_t i;
    json_t *r;
    json_array_foreach (routes, i, r) {
        char since [64];
        const char *cells [6] = {
            cli_json_str (r, "name"), cli_json_str (r, "kind"),
            cli_json_str (r, "email"), cli_json_str (r, "status"),
            cli_time (cli_json_str (r, "status_since"), since, sizeof since),
            cli_json_str (r, "last_error")
        };
        cli_table_add (table, cells);
    }
    cli_table_print (table, stdout);
    cli_table_destroy (&table);
}

/* route list [--json] */
static int
s_cmd_list (int argc, char **argv)
{
    bool json = false;
    json_t *body, *reply = NULL;
    int nargs, rc = s_parse (argc, argv, false, &json, &body, NULL, 0, &nargs,
                             "casemail route list [--json]");
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    rc = s_send ("GET", "/v1/routes", NULL, CLI_API_TIMEOUT, &reply);
    if (rc == CLI_OK) {
        if (json)
            cli_api_print_json (reply);
        else
            s_list_routes (json_object_get (reply, "routes"));
    }
    json_decref (reply);
    return rc;
}

/* Commands that take exactly NAME: show, rm, start, stop. */
static int
s_cmd_name (int argc, char **argv)
{
    const char *verb = argv [0];
    bool is_show = strcmp (verb, "show") == 0;
    bool json = false;
    const char *name = NULL;
    json_t *body, *reply = NULL;
    char usage [128];
    snprintf (usage, sizeof usage, "casemail route %s NAME%s", verb,
              is_show ? " [--json]" : "");
    int nargs, rc = s_parse (argc, argv, false, is_show ? &json : NULL, &body,
                             &name, 1, &nargs, usage);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    if (!name) {
        cli_err ("missing route NAME (usage: %s)", usage);
        return CLI_USAGE;
    }
    const char *method = "GET", *suffix = "";
    if (strcmp (verb, "rm") == 0)
        method = "DELETE";
    else
    if (strcmp (verb, "start") == 0 || strcmp (verb, "stop") == 0) {
        method = "POST";
        suffix = strcmp (verb, "start") == 0 ? "/start" : "/stop";
    }
    char *path = s_route_path (name, suffix);
    if (!path)
        return CLI_FAIL;
    rc = s_send (method, path, NULL, CLI_API_TIMEOUT, &reply);
    free (path);
    if (rc == CLI_OK) {
        char clean [256], status [64];
        cli_clean (name, false, clean, sizeof clean);
        cli_clean (cli_json_str (reply, "status"), false, status, sizeof status);
        if (is_show && json)
            cli_api_print_json (reply);
        else
        if (is_show)
            s_show_route (reply);
        else
        if (strcmp (verb, "rm") == 0)
            printf ("route %s deleted\n", clean);
        else
            printf ("route %s: %s\n", clean, *status ? status : "-");
    }
    json_decref (reply);
    return rc;
}

/* route add NAME [options], route set NAME [options] */
static int
s_cmd_write (int argc, char **argv)
{
    bool add = strcmp (argv [0], "add") == 0;
    const char *name = NULL;
    json_t *body, *reply = NULL;
    char usage [64];
    snprintf (usage, sizeof usage, "casemail route %s NAME [options]", argv [0]);
    int nargs, rc = s_parse (argc, argv, true, NULL, &body, &name, 1, &nargs, usage);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    if (!name) {
        cli_err ("missing route NAME (usage: %s)", usage);
        json_decref (body);
        return CLI_USAGE;
    }
    if (!add && !body) {
        cli_err ("nothing to change: give at least one option (see 'casemail route --help')");
        return CLI_USAGE;
    }
    if (!body && !(body = json_object ()))
        return CLI_FAIL;
    char *path = NULL;
    if (add) {
        json_t *named = json_object ();
        if (!named || json_object_set_new (named, "name", json_string (name))
        ||  json_object_update (named, body)) {
            json_decref (named);
            s_wipe (body, "password");
            s_wipe (body, "oauth_client_secret");
            json_decref (body);
            cli_err ("the route NAME is not valid UTF-8");
            return CLI_USAGE;
        }
        json_decref (body);             /* named shares its values */
        body = named;
    }
    else
    if (!(path = s_route_path (name, ""))) {
        json_decref (body);
        return CLI_FAIL;
    }
    rc = s_send (add ? "POST" : "PATCH", add ? "/v1/routes" : path, body,
                 CLI_API_TIMEOUT, &reply);
    free (path);
    if (rc == CLI_OK) {
        char clean [256], status [64];
        cli_clean (name, false, clean, sizeof clean);
        cli_clean (cli_json_str (reply, "status"), false, status, sizeof status);
        printf ("route %s %s (%s)\n", clean, add ? "added" : "changed",
                *status ? status : "-");
    }
    json_decref (reply);
    return rc;
}

/* route test-inbound (NAME | options), route test-outbound ... */
static int
s_cmd_test (int argc, char **argv)
{
    bool inbound = strcmp (argv [0], "test-inbound") == 0;
    const char *name = NULL;
    json_t *body, *reply = NULL;
    char usage [80];
    snprintf (usage, sizeof usage, "casemail route %s (NAME | options)", argv [0]);
    int nargs, rc = s_parse (argc, argv, true, NULL, &body, &name, 1, &nargs, usage);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    if ((name != NULL) == (body != NULL)) {
        cli_err ("give either a saved route's NAME or the options of an "
                 "unsaved route (usage: %s)", usage);
        if (body) {
            s_wipe (body, "password");
            s_wipe (body, "oauth_client_secret");
            json_decref (body);
        }
        return CLI_USAGE;
    }
    char *path;
    if (name)
        path = s_route_path (name, inbound ? "/test-inbound" : "/test-outbound");
    else
        path = strdup (inbound ? "/v1/test-inbound" : "/v1/test-outbound");
    if (!path) {
        json_decref (body);
        return CLI_FAIL;
    }
    rc = s_send ("POST", path, body, CLI_API_TEST_TIMEOUT, &reply);
    free (path);
    if (rc == CLI_OK) {
        char text [2048];
        if (json_is_true (json_object_get (reply, "ok")))
            printf ("%s connection OK: %s\n", inbound ? "Inbound" : "Outbound",
                    cli_clean (cli_json_str (reply, "summary"), false, text, sizeof text));
        else {
            const char *error = cli_json_str (reply, "error");
            printf ("Failed to test Service connectivity: %s\n",
                    cli_clean (error ? error : "unknown error", false, text, sizeof text));
            rc = CLI_FAIL;
        }
    }
    json_decref (reply);
    return rc;
}

int
cli_route_main (int argc, char **argv)
{
    static const struct {
        const char *verb;
        int (*run) (int, char **);
    } verbs [] = {
        { "list", s_cmd_list }, { "show", s_cmd_name }, { "rm", s_cmd_name },
        { "start", s_cmd_name }, { "stop", s_cmd_name }, { "add", s_cmd_write },
        { "set", s_cmd_write }, { "test-inbound", s_cmd_test },
        { "test-outbound", s_cmd_test }, { NULL, NULL }
    };
    if (argc < 2) {
        fputs (s_route_usage, stderr);
        return CLI_USAGE;
    }
    if (strcmp (argv [1], "--help") == 0 || strcmp (argv [1], "-h") == 0
    ||  strcmp (argv [1], "help") == 0) {
        fputs (s_route_usage, stdout);
        return CLI_OK;
    }
    for (int i = 0; verbs [i].verb; i++)
        if (strcmp (argv [1], verbs [i].verb) == 0)
            return verbs [i].run (argc - 1, argv + 1);
    if (argv [1][0] == '-')
        cli_err ("unknown option %s", argv [1]);
    else
        cli_err ("unknown route command '%s' (see 'casemail route --help')", argv [1]);
    return CLI_USAGE;
}

static void
s_list_stages (const json_t *stages)
{
    static const char *const headers [] = {
        "ID", "KIND", "PID", "STATE", "UPTIME", "LAST HEARTBEAT", "COUNTERS"
    };
    cli_table_t *table = cli_table_new (7, headers);
    if (!table)
        return;
    cli_table_flex (table, 6, 20, 200);
    size_t i;
    json_t *s;
    json_array_foreach (stages, i, s) {
        char id [64], pid [32], uptime [32], beat [64], counters [1024];
        const json_t *up = json_object_get (s, "uptime_s");
        const char *cells [7] = {
            cli_json_text (json_object_get (s, "id"), id, sizeof id),
            cli_json_str (s, "kind"),
            cli_json_text (json_object_get (s, "pid"), pid, sizeof pid),
            cli_json_str (s, "state"),
            json_is_number (up) ? cli_duration ((long long) json_number_value (up),
                                                uptime, sizeof uptime) : "-",
            cli_time (cli_json_str (s, "last_heartbeat"), beat, sizeof beat),
            cli_json_pairs (json_object_get (s, "counters"), counters, sizeof counters)
        };
        cli_table_add (table, cells);
    }
    cli_table_print (table, stdout);
    cli_table_destroy (&table);
}

int
cli_stage_main (int argc, char **argv)
{
    static const char *usage = "usage: casemail stage list [--json]\n";
    if (argc < 2 || strcmp (argv [1], "--help") == 0 || strcmp (argv [1], "-h") == 0) {
        fputs (usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp (argv [1], "list") != 0) {
        if (argv [1][0] == '-')
            cli_err ("unknown option %s", argv [1]);
        else
            cli_err ("unknown stage command '%s' (usage: casemail stage list [--json])", argv [1]);
        return CLI_USAGE;
    }
    static const cli_opt_t table [] = { { "--json", false, 1 }, { NULL, false, 0 } };
    cli_scan_t scan;
    cli_scan_init (&scan, argc - 1, argv + 1, 1);
    bool json = false;
    const cli_opt_t *opt;
    const char *value;
    int what;
    while ((what = cli_scan_next (&scan, table, &opt, &value)) != CLI_SCAN_END) {
        if (what == CLI_SCAN_HELP) {
            fputs (usage, stdout);
            return CLI_OK;
        }
        if (what == CLI_SCAN_ERROR)
            return CLI_USAGE;
        if (what == CLI_SCAN_ARG) {
            cli_err ("unexpected argument '%s' (usage: casemail stage list [--json])", value);
            return CLI_USAGE;
        }
        json = true;
    }
    json_t *reply = NULL;
    int rc = s_send ("GET", "/v1/stages", NULL, CLI_API_TIMEOUT, &reply);
    if (rc == CLI_OK) {
        if (json)
            cli_api_print_json (reply);
        else {
            s_list_stages (json_object_get (reply, "stages"));
            const json_t *pending = json_object_get (reply, "pending");
            if (json_is_object (pending))
                printf ("pending work: %lld message(s) to parse, %lld email(s) to send\n",
                        (long long) json_integer_value (json_object_get (pending, "parse")),
                        (long long) json_integer_value (json_object_get (pending, "send")));
        }
    }
    json_decref (reply);
    return rc;
}
