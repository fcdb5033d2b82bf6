/*  common/config.h: where a casemail install keeps its state and how its
    processes find each other. Everything comes from the environment with
    defaults under the state folder, so one laptop needs no configuration
    and a compose stack sets a few variables.

    CASEMAIL_HOME      state folder (default ./var, made absolute)
    CASEMAIL_DB        libpq conninfo; unset = the embedded cluster under
                       STATE/pg (socket in STATE/pg/run, port 5432)
    CASEMAIL_CONTROL   router's ROUTER socket (default ipc://STATE/run/control)
    CASEMAIL_EVENTS    router's PUB socket (default ipc://STATE/run/events)
    CASEMAIL_API_PORT  router HTTP port on 127.0.0.1 (default 0 = any free
                       port, written to STATE/run/api.url)
    CASEMAIL_API_URL   for the CLI: where the router listens (default: read
                       STATE/run/api.url)
    CASEMAIL_TOKEN     for the CLI: bearer token (default: STATE/api.token)
    CASEMAIL_KEY_FILE  sealing key (default STATE/secret.key)
    CASEMAIL_LOCAL     "0" = the router does not start stage processes
                       (compose: each stage is its own container)
    CASEMAIL_BIN       folder of the stage binaries (default: the folder of
                       the running binary)

    The returned struct is process-wide and owned by this module. */
#ifndef CM_CONFIG_H
#define CM_CONFIG_H
#include <stdbool.h>

typedef struct {
    char home [512];          /* absolute state folder */
    char run_dir [600];       /* STATE/run: sockets, pid files, api.url */
    char log_dir [600];       /* STATE/log */
    char db [1024];           /* libpq conninfo */
    bool embedded_db;         /* db is the private cluster under STATE/pg */
    char pg_dir [600];        /* STATE/pg: the embedded cluster */
    char control [700];       /* zmq endpoint of the router's ROUTER */
    char events [700];        /* zmq endpoint of the router's PUB */
    int api_port;             /* 0 = ephemeral */
    char api_url_file [700];  /* STATE/run/api.url */
    char token_file [700];    /* STATE/api.token */
    char key_file [700];      /* STATE/secret.key */
    bool local;               /* router supervises local stages */
    char bin_dir [600];       /* where casemail-* binaries are */
} cm_config_t;

/* Loads the configuration once (later calls return the same struct).
   argv0 locates the binaries. NULL only if the state folder can't be
   resolved. */
const cm_config_t *cm_config_load (const char *argv0);
/* Creates STATE, STATE/run and STATE/log (mode 0700); 0 or -1. */
int cm_config_mkdirs (const cm_config_t *cfg);
/* Reads a small text file (token, url), trimming the final newline.
   0 or -1. */
int cm_config_read_file (const char *path, char *out, int outlen);
/* A positive whole number from the environment, or def when the variable
   is unset, empty, not a number or not positive. */
long cm_config_env (const char *name, long def);
/* Writes a small file with the given mode atomically; 0 or -1. */
int cm_config_write_file (const char *path, const char *text, int mode);
#endif
