/*  common/db.c: PostgreSQL connection, migrations and query helpers
    (see db.h). */
#include "db.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATION_LOCK 0x63616d65  /* advisory lock key: "came" */

struct _cm_db_t {
    PGconn *conn;          /* the session */
    char error [512];      /* last error text */
};

static void
s_notice (void *arg, const char *message)
{
    (void) arg;
    (void) message;    /* NOTICEs from migrations are not operator news */
}

cm_db_t *
cm_db_connect (const char *conninfo, const char *name, char *err, size_t errlen)
{
    const char *keys [] = { "dbname", "application_name", "connect_timeout", NULL };
    const char *vals [] = { conninfo, name, "10", NULL };
    PGconn *conn = PQconnectdbParams (keys, vals, 1);
    if (!conn || PQstatus (conn) != CONNECTION_OK) {
        snprintf (err, errlen, "database: %s",
                  conn ? PQerrorMessage (conn) : "out of memory");
        size_t n = strlen (err);
        while (n && (err [n - 1] == '\n' || err [n - 1] == ' '))
            err [--n] = 0;
        for (char *p = err; *p; p++)
            if (*p == '\n')
                *p = ' ';
        PQfinish (conn);
        return NULL;
    }
    PQsetNoticeProcessor (conn, s_notice, NULL);
    cm_db_t *self = calloc (1, sizeof *self);
    if (!self) {
        PQfinish (conn);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->conn = conn;
    return self;
}

void
cm_db_destroy (cm_db_t **self_p)
{
    if (self_p && *self_p) {
        PQfinish ((*self_p)->conn);
        free (*self_p);
        *self_p = NULL;
    }
}

PGconn *
cm_db_conn (cm_db_t *self)
{
    return self->conn;
}

static void
s_set_error (cm_db_t *self, const char *text)
{
    snprintf (self->error, sizeof self->error, "%s", text ? text : "");
    size_t n = strlen (self->error);
    while (n && (self->error [n - 1] == '\n' || self->error [n - 1] == ' '))
        self->error [--n] = 0;
    for (char *p = self->error; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

PGresult *
cm_db_query (cm_db_t *self, const char *sql, int nparams,
             const char *const *params)
{
    PGresult *res = PQexecParams (self->conn, sql, nparams, NULL, params,
                                  NULL, NULL, 0);
    ExecStatusType st = PQresultStatus (res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    s_set_error (self, res ? PQresultErrorMessage (res) : PQerrorMessage (self->conn));
    PQclear (res);
    return NULL;
}

int
cm_db_exec (cm_db_t *self, const char *sql, int nparams,
            const char *const *params)
{
    PGresult *res = cm_db_query (self, sql, nparams, params);
    if (!res)
        return -1;
    PQclear (res);
    return 0;
}

const char *
cm_db_error (cm_db_t *self)
{
    return self->error;
}

bool
cm_db_alive (cm_db_t *self)
{
    if (PQstatus (self->conn) == CONNECTION_OK) {
        PGresult *res = PQexec (self->conn, "SELECT 1");
        bool ok = PQresultStatus (res) == PGRES_TUPLES_OK;
        PQclear (res);
        if (ok)
            return true;
    }
    PQreset (self->conn);
    return PQstatus (self->conn) == CONNECTION_OK;
}

const char *
cm_db_get (const PGresult *res, int row, int col)
{
    if (PQgetisnull (res, row, col))
        return NULL;
    return PQgetvalue (res, row, col);
}

long long
cm_db_get_ll (const PGresult *res, int row, int col)
{
    const char *v = cm_db_get (res, row, col);
    return v ? strtoll (v, NULL, 10) : 0;
}

int
cm_db_schema_version (void)
{
    return cm_schema_count;
}

int
cm_db_migrate (cm_db_t *self, char *err, size_t errlen)
{
    char lock [32];
    snprintf (lock, sizeof lock, "%d", MIGRATION_LOCK);
    const char *p [] = { lock };
    if (cm_db_exec (self, "SELECT pg_advisory_lock($1::bigint)", 1, p)) {
        snprintf (err, errlen, "database: %s", self->error);
        return -1;
    }
    int rc = -1;
    if (cm_db_exec (self, "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL))
        goto done;
    PGresult *res = cm_db_query (self,
        "SELECT coalesce(max(version), 0) FROM schema_version", 0, NULL);
    if (!res)
        goto done;
    int current = (int) cm_db_get_ll (res, 0, 0);
    PQclear (res);
    if (current > cm_schema_count) {
        snprintf (self->error, sizeof self->error,
                  "schema version %d is newer than this build (%d)",
                  current, cm_schema_count);
        goto done;
    }
    for (int v = current + 1; v <= cm_schema_count; v++) {
        char ver [16];
        snprintf (ver, sizeof ver, "%d", v);
        const char *vp [] = { ver };
        if (cm_db_exec (self, "BEGIN", 0, NULL))
            goto done;
        /* Migration text is ours, multi-statement: PQexec, not params. */
        PGresult *r = PQexec (self->conn, cm_schema_migrations [v - 1]);
        if (PQresultStatus (r) != PGRES_COMMAND_OK
            && PQresultStatus (r) != PGRES_TUPLES_OK) {
            s_set_error (self, PQresultErrorMessage (r));
            PQclear (r);
            cm_db_exec (self, "ROLLBACK", 0, NULL);
            goto done;
        }
        PQclear (r);
        if (cm_db_exec (self, "INSERT INTO schema_version (version) VALUES ($1::int)", 1, vp)
            || cm_db_exec (self, "COMMIT", 0, NULL)) {
            cm_db_exec (self, "ROLLBACK", 0, NULL);
            goto done;
        }
        cm_info (NULL, "database schema migrated to version %d", v);
    }
    rc = 0;
done:
    if (rc)
        snprintf (err, errlen, "database migration: %s", self->error);
    cm_db_exec (self, "SELECT pg_advisory_unlock($1::bigint)", 1, p);
    return rc;
}
