/*  common/db.c: PostgreSQL connection, migrations and query helpers
    (see db.h). */
#include "db.h"
#include "log.h"
#include "buf.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIGRATION_LOCK 0x63616d65  /* advisory lock key: "came" */
#define PREPARED_MAX   256         /* statements kept prepared per session */
#define REPLAN_RUNS    1000        /* runs before a statement is prepared anew */
#define PROBE_ROUNDS   3           /* pooler probes: rounds of a second session */
#define PROBE_WAIT_MS  5000        /* the second session waits this long for a server */

/* A statement prepared on this session, found by its text; its name is
   made from the text's hash, so a name never stands for another text. */
typedef struct {
    uint64_t hash;
    char *sql;
    unsigned long runs;    /* since it was (re)prepared */
    bool live;             /* prepared on the session now */
} prepared_t;

struct _cm_db_t {
    PGconn *conn;          /* the session */
    char error [512];      /* last error text */
    prepared_t prepared [PREPARED_MAX];
    int nprepared;
    bool resync;           /* the server may hold statements we forgot */
    bool busy;             /* a statement sent, its result not received */
    int backend;           /* the server process of this session (pg_backend_pid) */
    bool foreign;          /* a statement ran on another server process */
};

static void
s_notice (void *arg, const char *message)
{
    (void) arg;
    (void) message;    /* NOTICEs from migrations are not operator news */
}

/* The operator's "options" (server settings for the session) with
   casemail's own after them: its statements are written for READ
   COMMITTED (a concurrent update re-reads the row; it does not fail),
   whatever the database's or the role's default. Connection options, not
   a SET, so they hold after PQreset and DISCARD ALL (RESET ALL goes back
   to them). */
static char *
s_session_options (const char *conninfo)
{
    static const char ours [] = "-c default_transaction_isolation=read\\ committed";
    const char *theirs = NULL;
    PQconninfoOption *opts = PQconninfoParse (conninfo, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp (o->keyword, "options") == 0 && o->val && *o->val)
            theirs = o->val;
    if (!theirs)
        theirs = getenv ("PGOPTIONS");  /* overridden by ours otherwise */
    size_t size = (theirs ? strlen (theirs) + 1 : 0) + sizeof ours;
    char *all = malloc (size);
    if (all)
        snprintf (all, size, "%s%s%s", theirs ? theirs : "", theirs ? " " : "", ours);
    PQconninfoFree (opts);
    return all;
}

/* Opens one libpq connection with casemail's settings; NULL with the
   reason in err. */
static PGconn *
s_open (const char *conninfo, const char *name, char *err, size_t errlen)
{
    /* Over TCP, a database that vanished without a word (a host gone, a
       partition) ends the session in about a minute instead of leaving a
       call waiting forever: keepalives, and a limit on unacknowledged
       data. Before dbname, so the operator's connection string overrides
       them; after it what casemail fixes: mail is UTF-8 (whatever
       PGCLIENTENCODING or the database's default say), and the session
       options above. */
    char *options = s_session_options (conninfo);
    if (!options) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    const char *keys [] = { "keepalives_idle", "keepalives_interval", "keepalives_count",
                            "tcp_user_timeout", "dbname", "application_name",
                            "connect_timeout", "client_encoding", "options", NULL };
    const char *vals [] = { "30", "10", "3", "60000", conninfo, name, "10", "UTF8",
                            options, NULL };
    PGconn *conn = PQconnectdbParams (keys, vals, 1);
    free (options);
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
    return conn;
}

/* The server process that runs conn's statements now (pg_backend_pid), 0
   when the statement fails. */
static int
s_backend (PGconn *conn)
{
    PGresult *r = PQexec (conn, "SELECT pg_backend_pid()");
    int pid = PQresultStatus (r) == PGRES_TUPLES_OK && PQntuples (r) == 1
            ? atoi (PQgetvalue (r, 0, 0)) : 0;
    PQclear (r);
    return pid;
}

/* The second session's server process, taken inside a transaction it
   keeps open (so no pooler can give that server to anyone else while it
   is out); 0 when none came within PROBE_WAIT_MS (a pooler in session
   mode whose servers are all in use makes it wait), -1 on failure. */
static int
s_probe_backend (PGconn *probe)
{
    if (!PQsendQuery (probe, "BEGIN; SELECT pg_backend_pid()"))
        return -1;
    struct pollfd pfd = { PQsocket (probe), POLLIN, 0 };
    int64_t waited = 0;
    while (PQisBusy (probe)) {
        if (waited >= PROBE_WAIT_MS)
            return 0;
        if (poll (&pfd, 1, 100) < 0 || !PQconsumeInput (probe))
            return -1;
        waited += 100;      /* at most: poll returns early when data came */
    }
    int pid = -1;
    PGresult *r;
    while ((r = PQgetResult (probe))) {
        if (PQresultStatus (r) == PGRES_TUPLES_OK && PQntuples (r) == 1)
            pid = atoi (PQgetvalue (r, 0, 0));
        else if (PQresultStatus (r) != PGRES_COMMAND_OK)
            pid = -1;
        PQclear (r);
    }
    return pid;
}

/* casemail's leases are session-level advisory locks, and its statements
   are prepared per session: both need every statement of a session to
   run on the one server process the session began with. Connected to
   PostgreSQL itself, the pid libpq got at login is that process's
   (certain, and the common case). Through a pooler (PgBouncer gives its
   own pid at login) the session must be tied to one server process as
   in PgBouncer's session mode, not handed one per transaction or
   statement: a second session holds a transaction open, which keeps its
   server from anyone else, and this session must still run on its own
   server, not on that one nor on another. A pooler in transaction mode
   that reuses the server just freed (PgBouncer's default) fails the
   first round; one that hands out servers in turn fails a later one
   unless it happens to return the same server every time. 0, or -1 with
   the reason in err. */
static int
s_check_own_session (cm_db_t *self, const char *conninfo, const char *name,
                     char *err, size_t errlen)
{
    self->backend = s_backend (self->conn);
    if (!self->backend) {
        snprintf (err, errlen, "database: %s", PQerrorMessage (self->conn));
        return -1;
    }
    if (self->backend == PQbackendPID (self->conn))
        return 0;
    char probe_name [96];
    snprintf (probe_name, sizeof probe_name, "%s-probe", name ? name : "casemail");
    int rc = 0;
    for (int round = 0; round < PROBE_ROUNDS && rc == 0; round++) {
        PGconn *probe = s_open (conninfo, probe_name, err, errlen);
        if (!probe)
            return -1;
        int other = s_probe_backend (probe);
        int mine = other != 0 ? s_backend (self->conn) : self->backend;
        if (!mine) {
            PQfinish (probe);
            snprintf (err, errlen, "database: %s", PQerrorMessage (self->conn));
            return -1;
        }
        if (other < 0) {
            /* this session answers, a new one does, but it cannot keep a
               transaction open: PgBouncer's statement mode closes it */
            char why [96];
            snprintf (why, sizeof why, "%s", PQerrorMessage (probe));
            why [strcspn (why, "\n")] = 0;
            PQfinish (probe);
            snprintf (err, errlen, "database: %s (a second session could not keep a"
                      " transaction open: %s)", CM_DB_POOLED, why);
            return -1;
        }
        if (other > 0)
            PQclear (PQexec (probe, "ROLLBACK"));  /* its server goes back clean */
        PQfinish (probe);
        if (other == 0)
            break;             /* no server free for a second session: not shared */
        if (other == self->backend || mine != self->backend)
            rc = -1;
    }
    if (rc)
        snprintf (err, errlen, "database: %s", CM_DB_POOLED);
    return rc;
}

/* Behind a pooler the "options" parameter may never reach the server:
   PgBouncer refuses a login that has it, unless told to ignore it, and
   then drops it. The session's own settings are then set on it (in
   session mode the server stays the session's, so they hold). 0, or -1
   with the reason in err. */
static int
s_pooled_settings (cm_db_t *self, char *err, size_t errlen)
{
    if (self->backend == PQbackendPID (self->conn))
        return 0;              /* PostgreSQL's own session: options arrived */
    PGresult *r = PQexec (self->conn, "SET default_transaction_isolation = 'read committed'");
    int rc = PQresultStatus (r) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc)
        snprintf (err, errlen, "database: %s", PQresultErrorMessage (r));
    PQclear (r);
    return rc;
}

cm_db_t *
cm_db_connect (const char *conninfo, const char *name, char *err, size_t errlen)
{
    PGconn *conn = s_open (conninfo, name, err, errlen);
    if (!conn)
        return NULL;
    cm_db_t *self = calloc (1, sizeof *self);
    if (!self) {
        PQfinish (conn);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->conn = conn;
    if (s_check_own_session (self, conninfo, name, err, errlen)
        || s_pooled_settings (self, err, errlen)) {
        PQfinish (conn);
        free (self);
        return NULL;
    }
    return self;
}

bool
cm_db_refused (const char *err)
{
    return err && strstr (err, CM_DB_POOLED) != NULL;
}

/* Forgets the prepared statements: the session that had them is gone
   (resync false), or it lost some of them (resync true: DEALLOCATE ALL
   before preparing again, so no name is ever prepared twice). */
static void
s_forget_prepared (cm_db_t *self, bool resync)
{
    for (int i = 0; i < self->nprepared; i++)
        free (self->prepared [i].sql);
    self->nprepared = 0;
    self->resync = resync;
}

void
cm_db_destroy (cm_db_t **self_p)
{
    if (self_p && *self_p) {
        s_forget_prepared (*self_p, false);
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

/* Only plain data statements are worth preparing (and are certain to be
   preparable): not transaction control, not DDL. */
static bool
s_preparable (const char *sql)
{
    while (isspace ((unsigned char) *sql))
        sql++;
    return strncasecmp (sql, "SELECT", 6) == 0 || strncasecmp (sql, "INSERT", 6) == 0
        || strncasecmp (sql, "UPDATE", 6) == 0 || strncasecmp (sql, "DELETE", 6) == 0
        || strncasecmp (sql, "WITH", 4) == 0;
}

/* Runs a utility command on the session; true when it succeeded or the
   server's SQLSTATE is ok_state. */
static bool
s_command (cm_db_t *self, const char *command, const char *ok_state)
{
    PGresult *r = PQexec (self->conn, command);
    const char *state = PQresultErrorField (r, PG_DIAG_SQLSTATE);
    bool ok = PQresultStatus (r) == PGRES_COMMAND_OK
           || (ok_state && state && strcmp (state, ok_state) == 0);
    PQclear (r);
    return ok;
}

/* The name of sql's prepared statement on this session, preparing it on
   first use; NULL when it runs unnamed: not a data statement, a
   transaction already failed, the cache is full (built texts), or the
   session is being brought back in step. Nothing here can fail a
   transaction that a run of the statement itself would not fail. */
static const char *
s_prepared (cm_db_t *self, const char *sql, char *name, size_t size)
{
    if (!s_preparable (sql))
        return NULL;
    PGTransactionStatusType tx = PQtransactionStatus (self->conn);
    if (tx != PQTRANS_IDLE && tx != PQTRANS_INTRANS)
        return NULL;
    if (self->resync) {
        if (tx != PQTRANS_IDLE || !s_command (self, "DEALLOCATE ALL", NULL))
            return NULL;
        self->resync = false;
    }
    uint64_t h = 1469598103934665603ULL;          /* FNV-1a */
    for (const char *p = sql; *p; p++)
        h = (h ^ (unsigned char) *p) * 1099511628211ULL;
    snprintf (name, size, "cm_%016llx", (unsigned long long) h);
    for (int i = 0; i < self->nprepared; i++) {
        prepared_t *ps = &self->prepared [i];
        if (ps->hash != h)
            continue;
        if (strcmp (ps->sql, sql) != 0)
            return NULL;           /* two texts, one hash: the second runs unnamed */
        /* After its first runs the server may keep one generic plan,
           costed on the table sizes of that moment: a plan made while a
           table was nearly empty would scan it once it has grown.
           Preparing anew every REPLAN_RUNS runs (between transactions)
           lets the plan follow the tables, for a few plannings per
           thousand runs. */
        if (++ps->runs > REPLAN_RUNS && ps->live && tx == PQTRANS_IDLE) {
            char dealloc [64];
            snprintf (dealloc, sizeof dealloc, "DEALLOCATE %s", name);
            if (s_command (self, dealloc, "26000"))
                ps->live = false;
        }
        if (!ps->live) {
            PGresult *r = PQprepare (self->conn, name, sql, 0, NULL);
            ps->live = PQresultStatus (r) == PGRES_COMMAND_OK;
            PQclear (r);
            if (!ps->live)
                return NULL;       /* runs unnamed, and reports its own error */
            ps->runs = 1;
        }
        return name;
    }
    if (self->nprepared == PREPARED_MAX)
        return NULL;               /* built text, not a fixed statement */
    char *copy = strdup (sql);
    if (!copy)
        return NULL;
    PGresult *res = PQprepare (self->conn, name, sql, 0, NULL);
    bool ok = PQresultStatus (res) == PGRES_COMMAND_OK;
    PQclear (res);
    if (!ok) {
        free (copy);
        return NULL;
    }
    self->prepared [self->nprepared++] = (prepared_t) { h, copy, 1, true };
    return name;
}

/* A failed run: when the session lost its prepared statements (SQLSTATE
   26000: DISCARD ALL, DEALLOCATE, a pooler), forget them all. */
static bool
s_lost_prepared (cm_db_t *self, const PGresult *res)
{
    const char *state = res ? PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strcmp (state, "26000") != 0)
        return false;
    s_forget_prepared (self, true);
    return true;
}

static bool
s_refuse_busy (cm_db_t *self)
{
    if (self->busy)
        s_set_error (self, "a statement is still running on this session");
    return self->busy;
}

PGresult *
cm_db_query_binary (cm_db_t *self, const char *sql, int nparams,
                    const char *const *params, const int *lengths,
                    const int *formats, int result_format)
{
    if (s_refuse_busy (self))
        return NULL;
    char name [32];
    const char *stmt = s_prepared (self, sql, name, sizeof name);
    PGresult *res = stmt
        ? PQexecPrepared (self->conn, stmt, nparams, params, lengths, formats, result_format)
        : PQexecParams (self->conn, sql, nparams, NULL, params, lengths, formats,
                        result_format);
    /* Outside a transaction the statement can run again, unnamed; inside
       one the transaction has failed and the caller rolls back. */
    if (stmt && s_lost_prepared (self, res)
        && PQtransactionStatus (self->conn) == PQTRANS_IDLE) {
        PQclear (res);
        res = PQexecParams (self->conn, sql, nparams, NULL, params, lengths, formats,
                            result_format);
    }
    ExecStatusType st = PQresultStatus (res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    s_set_error (self, res ? PQresultErrorMessage (res) : PQerrorMessage (self->conn));
    PQclear (res);
    return NULL;
}

int
cm_db_send_binary (cm_db_t *self, const char *sql, int nparams,
                   const char *const *params, const int *lengths,
                   const int *formats, int result_format)
{
    if (s_refuse_busy (self))
        return -1;
    char name [32];
    const char *stmt = s_prepared (self, sql, name, sizeof name);
    /* Non-blocking while the statement is out: libpq keeps what the
       socket does not take yet, cm_db_flush sends more of it between the
       caller's own work, and cm_db_receive the rest. A batch of mail is
       most of a megabyte, and writing it whole waited for the server to
       read it: a tenth of the fetcher's time between two batches. A
       bigger statement is written at once, as before: the server starts
       on a statement only once it has all of it, and a few flushes (one
       socket buffer each) would leave most of it for cm_db_receive. */
    size_t bytes = 0;
    for (int i = 0; i < nparams; i++)
        bytes += !params [i] ? 0 : formats && formats [i] && lengths ? (size_t) lengths [i]
                                                                     : strlen (params [i]);
    if (bytes <= CM_DB_ASYNC_SEND_MAX && PQsetnonblocking (self->conn, 1)) {
        s_set_error (self, PQerrorMessage (self->conn));
        return -1;
    }
    int ok = stmt
        ? PQsendQueryPrepared (self->conn, stmt, nparams, params, lengths, formats,
                               result_format)
        : PQsendQueryParams (self->conn, sql, nparams, NULL, params, lengths, formats,
                             result_format);
    if (!ok) {
        s_set_error (self, PQerrorMessage (self->conn));
        PQsetnonblocking (self->conn, 0);
        return -1;
    }
    self->busy = true;
    return 0;
}

int
cm_db_flush (cm_db_t *self)
{
    if (!self->busy)
        return 0;
    int r = PQflush (self->conn);
    return r < 0 ? -1 : r;
}

PGresult *
cm_db_receive (cm_db_t *self)
{
    PGresult *res = NULL, *r;
    bool failed = false;
    /* one statement sent: its result, then NULL */
    while ((r = PQgetResult (self->conn))) {
        ExecStatusType st = PQresultStatus (r);
        if (!failed && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) && !res) {
            res = r;
            continue;
        }
        if (!failed) {
            s_set_error (self, PQresultErrorMessage (r));
            s_lost_prepared (self, r);      /* prepared again next time */
            failed = true;
        }
        PQclear (r);
    }
    self->busy = false;
    if (!failed && !res)
        s_set_error (self, PQerrorMessage (self->conn));
    /* everything was sent before the result came: back to blocking */
    if (PQsetnonblocking (self->conn, 0) && !failed && res) {
        s_set_error (self, PQerrorMessage (self->conn));
        failed = true;
    }
    if (failed || !res) {
        PQclear (res);
        return NULL;
    }
    return res;
}

PGresult *
cm_db_query (cm_db_t *self, const char *sql, int nparams,
             const char *const *params)
{
    return cm_db_query_binary (self, sql, nparams, params, NULL, NULL, 0);
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

/* Also the check that lasts: a statement that runs on another server
   process than the session began with means a pooler hands out servers
   per transaction (whatever the probe at connect saw), and the session's
   locks are not its own. */
bool
cm_db_intact (cm_db_t *self)
{
    if (self->foreign || PQstatus (self->conn) != CONNECTION_OK)
        return false;
    int pid = s_backend (self->conn);
    if (pid && self->backend && pid != self->backend) {
        self->foreign = true;
        s_set_error (self, CM_DB_POOLED);
    }
    return pid && !self->foreign;
}

bool
cm_db_foreign (cm_db_t *self)
{
    return self->foreign;
}

bool
cm_db_alive (cm_db_t *self)
{
    if (cm_db_intact (self))
        return true;
    if (self->foreign)
        return false;          /* a reset would go through the same pooler */
    PQreset (self->conn);
    s_forget_prepared (self, false);
    self->busy = false;
    self->backend = PQstatus (self->conn) == CONNECTION_OK ? s_backend (self->conn) : 0;
    char err [256];
    if (self->backend && s_pooled_settings (self, err, sizeof err))
        s_set_error (self, err);
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
    /* Mail is stored as UTF-8: a database in another encoding would
       refuse or mangle every subject outside it. Refused before any
       table is made (or changed). SQL_ASCII stores the bytes as they
       come, unchecked: taken, with a warning. */
    const char *enc = PQparameterStatus (self->conn, "server_encoding");
    if (enc && strcmp (enc, "SQL_ASCII") == 0)
        cm_warn (NULL, "the database's encoding is SQL_ASCII: text is stored as casemail's"
                 " UTF-8 bytes, unchecked; a database in UTF8 is better");
    else if (!enc || strcmp (enc, "UTF8") != 0) {
        snprintf (self->error, sizeof self->error,
                  "the database's encoding is %s; casemail stores mail as UTF-8:"
                  " use a database created with ENCODING 'UTF8' (for one in use,"
                  " pg_dump it and restore it into such a database)", enc ? enc : "unknown");
        goto done;
    }
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

/* ---------------------------------------------------------------- arrays
   array_send's format: ndim, has-nulls flag, element type, then per
   dimension its size and lower bound, then each element as a length
   (-1 for NULL) and its bytes; all integers 32-bit, network order. */
struct _cm_db_array_t {
    cm_buf_t buf;          /* room for the header, then the elements */
    unsigned int type;
    int count;
    bool nulls;
    bool failed;
};

#define ARRAY_HEADER 20    /* ndim, flags, type, size, lower bound */

static void
s_put32 (cm_buf_t *b, uint32_t v, bool *failed)
{
    v = htonl (v);
    if (cm_buf_append (b, &v, 4))
        *failed = true;
}

cm_db_array_t *
cm_db_array_new (unsigned int elemtype)
{
    cm_db_array_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    cm_buf_init (&self->buf, 0);
    self->type = elemtype;
    /* the header is written in place once the elements are known */
    static const char room [ARRAY_HEADER];
    if (cm_buf_append (&self->buf, room, sizeof room))
        self->failed = true;
    return self;
}

int
cm_db_array_add (cm_db_array_t *self, const void *data, size_t len)
{
    if (!self || self->failed)
        return -1;
    if (!data) {
        s_put32 (&self->buf, 0xffffffffu, &self->failed);
        self->nulls = true;
    }
    else if (len > 0x7fffffff)
        self->failed = true;
    else {
        s_put32 (&self->buf, (uint32_t) len, &self->failed);
        if (len && cm_buf_append (&self->buf, data, len))
            self->failed = true;
    }
    self->count++;
    return self->failed ? -1 : 0;
}

int
cm_db_array_reserve (cm_db_array_t *self, size_t n, size_t bytes)
{
    if (!self || self->failed)
        return -1;
    if (cm_buf_reserve (&self->buf, n * 4 + bytes))
        self->failed = true;
    return self->failed ? -1 : 0;
}

int
cm_db_array_add_text (cm_db_array_t *self, const char *text)
{
    return cm_db_array_add (self, text, text ? strlen (text) : 0);
}

int
cm_db_array_add_int8 (cm_db_array_t *self, long long value)
{
    uint64_t v = (uint64_t) value;
    unsigned char be [8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        be [i] = (unsigned char) (v & 0xff);
    return cm_db_array_add (self, be, 8);
}

/* An empty array has no dimensions: its value is the first 12 bytes. */
const char *
cm_db_array_data (cm_db_array_t *self)
{
    if (!self || self->failed)
        return NULL;
    uint32_t head [5] = { htonl (self->count ? 1 : 0), htonl (self->nulls ? 1 : 0),
                          htonl (self->type), htonl ((uint32_t) self->count), htonl (1) };
    if (self->count)
        memcpy (self->buf.data, head, ARRAY_HEADER);
    else
        memcpy (self->buf.data + ARRAY_HEADER - 12, head, 12);
    return self->count ? self->buf.data : self->buf.data + ARRAY_HEADER - 12;
}

int
cm_db_array_len (cm_db_array_t *self)
{
    if (!self || self->failed)
        return 0;
    return self->count ? (int) self->buf.len : 12;
}

void
cm_db_array_destroy (cm_db_array_t **self_p)
{
    if (self_p && *self_p) {
        cm_buf_free (&(*self_p)->buf);
        free (*self_p);
        *self_p = NULL;
    }
}
