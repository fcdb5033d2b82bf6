/*  common/db.h: PostgreSQL access for every stage: connect, versioned
    schema migrations applied at start (common/schema.c), and thin
    parameterised query helpers. Results returned are owned by the caller
    (PQclear). Errors: NULL or -1, with the server's text in cm_db_error()
    and a log line. No SQL is ever built by pasting strings. */
#ifndef CM_DB_H
#define CM_DB_H
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct _cm_db_t cm_db_t;

/* Connects; name becomes application_name (e.g. "casemail-fetcher").
   NULL with the reason in err. */
cm_db_t *cm_db_connect (const char *conninfo, const char *name, char *err, size_t errlen);
void cm_db_destroy (cm_db_t **self_p);
PGconn *cm_db_conn (cm_db_t *self);
/* Brings the schema to the newest version, serialised between processes by
   an advisory lock. 0 or -1 (reason in err). */
int cm_db_migrate (cm_db_t *self, char *err, size_t errlen);
/* The newest schema version this build knows. */
int cm_db_schema_version (void);
/* Runs a parameterised statement (NULL params = SQL NULL). Returns the
   result when it succeeded (tuples or command), NULL otherwise. */
PGresult *cm_db_query (cm_db_t *self, const char *sql, int nparams,
                       const char *const *params);
/* Runs a statement and discards the result: 0 or -1. */
int cm_db_exec (cm_db_t *self, const char *sql, int nparams,
                const char *const *params);
/* The last error text (server or connection). */
const char *cm_db_error (cm_db_t *self);
/* True when the connection is usable; tries one reset when it is not. */
bool cm_db_alive (cm_db_t *self);

/* Helpers for reading result cells: NULL for SQL NULL. */
const char *cm_db_get (const PGresult *res, int row, int col);
long long cm_db_get_ll (const PGresult *res, int row, int col);

/* Schema migrations (common/schema.c): SQL text per version, from 1. */
extern const char *const cm_schema_migrations [];
extern const int cm_schema_count;
#endif
