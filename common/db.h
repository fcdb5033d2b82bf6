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
   NULL with the reason in err. A session that is not casemail's own, one
   whose statements a pooler in transaction or statement mode runs on
   whichever server process is free, is refused (its session-level
   leases would not hold): err then holds CM_DB_POOLED, and
   cm_db_refused (err) is true (connecting again will not help). */
cm_db_t *cm_db_connect (const char *conninfo, const char *name, char *err, size_t errlen);
#define CM_DB_POOLED "the connection goes through a connection pooler in transaction or" \
    " statement mode: casemail's leases are session-level advisory locks, which such a" \
    " pooler leaves with server connections other clients use (mail fetched twice, routes" \
    " that never start); connect to PostgreSQL directly or put the pooler in session mode" \
    " (PgBouncer: pool_mode = session)"
bool cm_db_refused (const char *err);
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
/* The same with per-parameter lengths and formats (1 = binary) and a
   result format, as PQexecParams. Data statements (SELECT, INSERT,
   UPDATE, DELETE, WITH) are prepared on the session at first use and
   executed by name after that: the server parses and plans them once. */
PGresult *cm_db_query_binary (cm_db_t *self, const char *sql, int nparams,
                              const char *const *params, const int *lengths,
                              const int *formats, int result_format);
/* Sends a statement (as cm_db_query_binary) without waiting for it, so
   the caller can work while the server does; cm_db_receive then waits
   for its result (NULL on failure, the reason in cm_db_error). Nothing
   else may run on the session in between. Returns 0 or -1. */
int cm_db_send_binary (cm_db_t *self, const char *sql, int nparams,
                       const char *const *params, const int *lengths,
                       const int *formats, int result_format);
PGresult *cm_db_receive (cm_db_t *self);
/* Statements up to this many bytes of parameters go out without waiting
   for the server to read them (cm_db_send_binary); bigger ones are
   written at once. */
#define CM_DB_ASYNC_SEND_MAX (2u << 20)
/* While a statement is out: sends more of it if the connection takes it,
   without waiting. 0 all sent (or nothing out), 1 more to send, -1 the
   connection failed (cm_db_receive then reports it). */
int cm_db_flush (cm_db_t *self);
/* Runs a statement and discards the result: 0 or -1. */
int cm_db_exec (cm_db_t *self, const char *sql, int nparams,
                const char *const *params);
/* The last error text (server or connection). */
const char *cm_db_error (cm_db_t *self);
/* True when the connection is usable; tries one reset when it is not. */
bool cm_db_alive (cm_db_t *self);
/* True when the session answers, without a reset: a session that holds
   session-level locks (a route's lease) must not be opened again in its
   place, since the new one holds none. False too, for good, once a
   statement ran on another server process than the session began with
   (cm_db_foreign; CM_DB_POOLED in cm_db_error). */
bool cm_db_intact (cm_db_t *self);
/* True once the session was seen on another server process: a pooler in
   transaction or statement mode. */
bool cm_db_foreign (cm_db_t *self);

/* A one-dimensional array parameter in PostgreSQL's binary format, so a
   whole batch of rows goes in one statement (unnest) with no escaping:
   pass cm_db_array_data/_len with format 1. Elements are added in order;
   NULL data is SQL NULL. Types: CM_DB_INT8, CM_DB_TEXT, CM_DB_BYTEA. */
#define CM_DB_BYTEA 17
#define CM_DB_INT8  20
#define CM_DB_TEXT  25
typedef struct _cm_db_array_t cm_db_array_t;
cm_db_array_t *cm_db_array_new (unsigned int elemtype);
/* 0, or -1 out of memory (the array is then unusable: the statement
   fails rather than run with a short array). */
int cm_db_array_add (cm_db_array_t *self, const void *data, size_t len);
/* Makes room for n more elements of bytes in all, so a big array is not
   grown by copies. 0, or -1 out of memory. */
int cm_db_array_reserve (cm_db_array_t *self, size_t n, size_t bytes);
int cm_db_array_add_text (cm_db_array_t *self, const char *text);
int cm_db_array_add_int8 (cm_db_array_t *self, long long value);
/* The parameter bytes, and their length; NULL after a failed add. */
const char *cm_db_array_data (cm_db_array_t *self);
int cm_db_array_len (cm_db_array_t *self);
void cm_db_array_destroy (cm_db_array_t **self_p);

/* Helpers for reading result cells: NULL for SQL NULL. */
const char *cm_db_get (const PGresult *res, int row, int col);
long long cm_db_get_ll (const PGresult *res, int row, int col);

/* Schema migrations (common/schema.c): SQL text per version, from 1. */
extern const char *const cm_schema_migrations [];
extern const int cm_schema_count;
#endif
