/*  fetcher/worker.c: one thread per route whose lease this fetcher holds.
    The thread opens its own database session and takes the route's lease
    (a session-level advisory lock: it dies with the session, so a killed
    fetcher frees its routes at once). Then, until asked to stop: log in
    to the mailbox, ingest what is new since the UID cursor in batches
    (commit raw bytes and cursor, then acknowledge to the mailbox, then
    wake the parsers; the first batch, or a pass with nothing new, makes
    the route RUNNING), and wait for new mail with IDLE (or polling). A
    failed login, or a session that fails before it has worked, makes the
    route FAILED with the reason; a working session that drops leaves it
    RUNNING (worker_session_lost). Retries back off, doubling to a cap.
    The lease lives only as long as the thread's database session: one
    that breaks is never reset but given up, lease and all. */
#include "fetcher.h"
#include "imap.h"
#include "config.h"
#include "log.h"
#include "route.h"
#include "routeauth.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REACK_MAX       200               /* re-acknowledged after a login: the
                                             largest batch any version made */
_Static_assert (BATCH_MAX <= REACK_MAX, "a batch must fit a re-acknowledgement");
#define SEARCH_MAX      5000              /* UIDs per search (CASEMAIL_SEARCH_UIDS) */
#define SEARCH_UIDS_MAX 100000            /* the most CASEMAIL_SEARCH_UIDS may ask */
/* one acknowledgement stays within the body session's NOOP sync */
_Static_assert (BATCH_MAX <= CM_IMAP_NOOP_NEWS_MAX, "a batch's news must fit one NOOP");
#define IDLE_MS         60000             /* re-check at least this often */

fetch_counters_t fetch_counters;

bool
worker_stopping (worker_t *self)
{
    return self->stop || cm_server_stopping (self->srv);
}
#define s_stopping worker_stopping

void
worker_nap (worker_t *self, long ms)
{
    for (long slept = 0; slept < ms && !s_stopping (self); slept += 100)
        usleep (100 * 1000);
}

bool
worker_login_failed (worker_t *self, cm_db_t *db, const char *err, long wait_ms,
                     long *backoff, long retry_max)
{
    atomic_fetch_add (&fetch_counters.errors, 1);
    long nap = wait_ms > *backoff ? wait_ms : *backoff;
    cm_warn (self->name, "cannot reach the mailbox: %s (retry in %ld ms)", err, nap);
    if (!cm_db_intact (db) || store_status (db, self->route_id, "FAILED", err)) {
        cm_warn (self->name, "database session lost: giving up the lease");
        return false;
    }
    worker_nap (self, nap);
    *backoff = *backoff * 2 > retry_max ? retry_max : *backoff * 2;
    return true;
}

static long long
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
worker_session_begin (worker_t *self)
{
    self->up = false;
    self->session_start_ms = s_now_ms ();
}

int
worker_session_up (worker_t *self, cm_db_t *db)
{
    if (self->up)
        return 0;
    self->up = true;
    return store_status (db, self->route_id, "RUNNING", NULL) ? -2 : 0;
}

void
worker_session_lost (worker_t *self, cm_db_t *db, const char *what,
                     const char *err, long wait_ms, long *backoff, long retry_max)
{
    atomic_fetch_add (&fetch_counters.errors, 1);
    if (self->up && s_now_ms () - self->session_start_ms >= WORKER_STEADY_MS)
        *backoff = retry_max < 1000 ? retry_max : 1000;
    long nap = wait_ms > *backoff ? wait_ms : *backoff;
    cm_warn (self->name, "%s lost: %s (retry in %ld ms)", what, err, nap);
    if (self->up)
        store_last_error (db, self->route_id, err);
    else
        store_status (db, self->route_id, "FAILED", err);
    worker_nap (self, nap);
    *backoff = *backoff * 2 > retry_max ? retry_max : *backoff * 2;
}

int
worker_db_verdict (worker_t *self, cm_db_t *db, int rc, long *backoff, long retry_max)
{
    if (rc && !cm_db_intact (db)) {
        cm_warn (self->name, "database session lost: giving up the lease");
        return 1;
    }
    if (rc != -2)
        return 0;
    char why [700];
    snprintf (why, sizeof why, "the database refused a statement: %s",
              *self->lane_db_err ? self->lane_db_err : cm_db_error (db));
    self->lane_db_err [0] = 0;
    worker_session_lost (self, db, "database work", why, 0, backoff, retry_max);
    return -1;
}

int
worker_acknowledge_uids (worker_t *self, cm_imap_t *imap, const json_t *config,
                         const uint64_t *uids, size_t n, char *err, size_t errlen)
{
    const char *after = cm_route_str (config, "after_fetch");
    int rc = 0;
    if (strcmp (after, "seen") == 0)
        rc = cm_imap_mark_seen_set (imap, uids, n, err, errlen);
    else if (strcmp (after, "move") == 0)
        rc = cm_imap_move_set (imap, uids, n, cm_route_str (config, "processed_folder"),
                               err, errlen);
    if (rc)
        cm_warn (self->name, "acknowledging %zu message(s): %s", n, err);
    return rc;
}

int
worker_acknowledge (worker_t *self, cm_imap_t *imap, const json_t *config,
                    const fetched_t *msgs, size_t n, char *err, size_t errlen)
{
    uint64_t uids [BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n && k < BATCH_MAX; i++)
        if (!msgs [i].over_limit)     /* too big: left untouched */
            uids [k++] = msgs [i].uid;
    return worker_acknowledge_uids (self, imap, config, uids, k, err, errlen);
}

/* A fetcher killed (or a connection lost) between a commit and the end of
   its acknowledgements leaves those messages unmarked or unmoved, and the
   cursor may be past them, so s_sync would never see them again. Which
   ones may be in that state: those above a long pass's deferral
   (lanes.c, store_ack_defer), or else the newest batch (a batch is
   acknowledged before the next one is committed; REACK_MAX covers a
   batch of any size an earlier version made). Marking seen and moving
   are harmless again (a UID that is gone is no error). */
int
worker_reacknowledge (worker_t *self, cm_db_t *db, cm_imap_t *imap, const json_t *config,
                      bool login, char *err, size_t errlen)
{
    const char *after = cm_route_str (config, "after_fetch");
    const char *folder = cm_route_str (config, "folder");
    if (strcmp (after, "seen") && strcmp (after, "move")) {
        /* nothing to do, nor to do later were the route set back */
        if (store_ack_done (db, self->route_id, folder, NULL, NULL)) {
            snprintf (err, errlen, "%s", cm_db_error (db));
            return -2;
        }
        return 0;
    }
    uint64_t *uids, ack_from, ack_gen;
    size_t n;
    bool deferred;
    int got = store_unacknowledged (db, self->route_id, folder, cm_imap_uidvalidity (imap),
                                    REACK_MAX, &uids, &n, &deferred, &ack_from, &ack_gen);
    if (got) {
        snprintf (err, errlen, "%s", got == -1 ? cm_db_error (db) : "out of memory");
        return got == -1 ? -2 : -1;
    }
    if (login && deferred && n)
        cm_info (self->name, "acknowledging %zu messages a pass committed and left"
                 " unacknowledged (UIDs above %llu)", n, (unsigned long long) ack_from);
    int rc = worker_acknowledge_uids (self, imap, config, uids, n, err, errlen) ? -1 : 0;
    free (uids);
    if (rc == 0 && deferred
        && store_ack_done (db, self->route_id, folder, &ack_from, &ack_gen)) {
        snprintf (err, errlen, "%s", cm_db_error (db));
        rc = -2;
    }
    return rc;
}

/* Fetches uids[*i] onwards (below count) into msgs, *n of them: up to
   BATCH_MAX messages or BATCH_BYTES bytes, *i moved past every UID tried
   (one expunged meanwhile is passed over; one over fetch_max is recorded
   without bytes). Then takes back the \Seen that fetching may have set,
   so the flag (or the move) comes only after the commit. 0 ok, -1 mailbox
   error (err): the messages fetched before it are in msgs all the same. */
int
worker_fetch_batch (worker_t *self, cm_db_t *db, cm_imap_t *imap, const uint64_t *uids,
                    size_t count, size_t *i, size_t fetch_max, fetched_t *msgs, size_t *n,
                    char *err, size_t errlen)
{
    /* Fetching must not mark the message: \Seen (or the move) is the
       acknowledgement and comes only after the commit (invariant 1). */
    const bool peek = true;
    size_t bytes = 0;
    /* flags and sizes of the whole batch in one command */
    size_t ahead = count - *i < BATCH_MAX ? count - *i : BATCH_MAX;
    int rc = cm_imap_prefetch (imap, uids + *i, ahead, err, errlen) ? -1 : 0;
    while (rc == 0 && *i < count && *n < BATCH_MAX && bytes < BATCH_BYTES) {
        fetched_t *m = &msgs [*n];
        memset (m, 0, sizeof *m);
        m->uid = uids [*i];
        bool too_big = false;
        rc = cm_imap_fetch (imap, m->uid, fetch_max, peek, &m->raw, &m->len,
                            &too_big, err, errlen);
        cm_db_flush (db);       /* more of the batch before, if it goes */
        (*i)++;
        if (rc == 2) {
            rc = 0;
            continue;               /* expunged meanwhile */
        }
        if (rc < 0)
            break;
        if (too_big) {
            m->raw = NULL;
            m->over_limit = true;
            atomic_fetch_add (&fetch_counters.too_big, 1);
            cm_warn (self->name, "UID %llu is %zu bytes, over the fetch limit:"
                     " recorded as rejected and left in the mailbox",
                     (unsigned long long) m->uid, m->len);
        }
        bytes += m->raw ? m->len : 0;
        (*n)++;
        rc = 0;
    }
    /* fetching set \Seen: take it back before anything else */
    char scratch [256];
    if (cm_imap_restore_unseen (imap, rc < 0 ? scratch : err,
                                rc < 0 ? sizeof scratch : errlen) && rc == 0)
        rc = -1;
    return rc;
}

/* A batch being fetched, or committing while the next one is fetched. */
typedef struct {
    fetched_t msgs [BATCH_MAX];
    size_t n;
    uint64_t last;              /* the cursor once it is committed */
    bool sent;                  /* its commit is in flight */
} batch_t;

static void
s_batch_clear (batch_t *b)
{
    for (size_t k = 0; k < b->n; k++)
        free (b->msgs [k].raw);
    b->n = 0;
    b->sent = false;
}

void
worker_batch_stored (worker_t *self, const json_t *config, int added, size_t n,
                     uint64_t last)
{
    atomic_fetch_add (&fetch_counters.fetched, (unsigned long long) added);
    if (added)
        cm_server_wake (self->srv, "parser");
    cm_trace (cm_route_str (config, "log_level")
              && strcmp (cm_route_str (config, "log_level"), "verbose") == 0,
              self->name, "committed %d new of %zu messages up to UID %llu",
              added, n, (unsigned long long) last);
}

/* Waits for the commit of b (when in flight), then acknowledges it to
   the mailbox. 0 ok, -1 mailbox error (err), -2 database error. */
static int
s_batch_finish (worker_t *self, cm_db_t *db, cm_imap_t *imap, const json_t *config,
                batch_t *b, uint64_t *last_uid, char *err, size_t errlen)
{
    if (!b->sent)
        return 0;
    int added = store_commit_receive (db, b->n);
    int rc = added < 0 ? -2 : 0;
    if (added >= 0) {
        *last_uid = b->last;
        worker_batch_stored (self, config, added, b->n, b->last);
        if (worker_acknowledge (self, imap, config, b->msgs, b->n, err, errlen) < 0)
            rc = -1;
        else if (worker_session_up (self, db))
            rc = -2;
    }
    s_batch_clear (b);
    return rc;
}

/* Ingests everything after the cursor. 0 ok, -1 mailbox error (err),
   -2 database error.
   Batches overlap: while one batch's commit runs on the database, the
   next is fetched; the first is acknowledged once its commit is back,
   and only then is the next one sent. So at most one batch is ever
   committed but not yet acknowledged, the newest (worker_reacknowledge). */
static int
s_sync (worker_t *self, cm_db_t *db, cm_imap_t *imap, const json_t *config,
        char *err, size_t errlen)
{
    const char *folder = cm_route_str (config, "folder");
    size_t fetch_max = (size_t) cm_config_env ("CASEMAIL_FETCH_MAX_BYTES", 64L << 20);
    size_t search_max = (size_t) cm_config_env ("CASEMAIL_SEARCH_UIDS", SEARCH_MAX);
    if (search_max > SEARCH_UIDS_MAX)
        search_max = SEARCH_UIDS_MAX;   /* a search holds up to 65 times that */
    uint64_t uv = cm_imap_uidvalidity (imap), cur_uv, last_uid, since_top;
    bool since_recorded;
    if (store_cursor (db, self->route_id, folder, &cur_uv, &last_uid, &since_top,
                      &since_recorded))
        return -2;
    if (cur_uv && cur_uv != uv) {
        cm_warn (self->name, "UIDVALIDITY of %s changed from %llu to %llu: rescanning,"
                 " messages already stored are recognised by Message-ID and hash",
                 folder, (unsigned long long) cur_uv, (unsigned long long) uv);
        last_uid = 0;
        since_top = 0;
        since_recorded = false;
    }
    /* --since limits the mail that is in the folder at the first pass (an
       empty cursor): UIDs up to UIDNEXT - 1 then, recorded with the cursor,
       so a pass cut short goes on with the same limit. Mail that comes
       later is taken whatever its date (mail moved in keeps its old
       one); so is all mail of a folder empty at the first start (0
       recorded). A server that gives no UIDNEXT, or one over 2^32: the
       last message's UID instead; one that will not tell that either: the
       limit holds while the cursor is empty. */
    const char *since = cm_route_str (config, "since"), *first_since = NULL;
    if (!since || !*since)
        since_top = 0;
    else if (last_uid == 0 && !since_recorded) {
        uint64_t top;
        int known = cm_imap_top_uid (imap, &top, err, errlen);
        if (known < 0)
            return -1;
        if (known == 0) {
            since_top = top;
            if (store_since_top (db, self->route_id, folder, uv, since_top))
                return -2;
        }
        else
            first_since = since;
    }
    batch_t *pair = calloc (2, sizeof *pair);
    if (!pair) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    int result = 0;
    while (!s_stopping (self) && result == 0) {
        uint64_t *uids = NULL;
        size_t count = 0;
        bool limited = since_top && last_uid < since_top;
        if (cm_imap_search (imap, last_uid + 1, limited ? since_top : 0,
                            limited ? since : first_since, search_max, &uids, &count,
                            err, errlen)) {
            result = -1;
            break;
        }
        size_t first = 0;
        while (first < count && uids [first] <= last_uid)
            first++;
        if (first == count) {
            free (uids);
            if (limited) {
                /* all that --since takes is in: the cursor goes past the
                   rest of the limited UIDs, and on to newer mail */
                if (store_cursor_skip (db, self->route_id, folder, uv, since_top)) {
                    result = -2;
                    break;
                }
                last_uid = since_top;
                continue;
            }
            break;
        }
        /* a long pass: over two mailbox sessions (lanes.c), when a second
           one can log in (1: it could not, nothing was fetched) */
        int lanes = count - first > LANES_MIN_UIDS && lanes_wanted (self)
                  ? lanes_pass (self, db, imap, config, uv, uids + first, count - first,
                                fetch_max, &last_uid, err, errlen) : 1;
        if (lanes <= 0) {
            result = lanes;
            free (uids);
            continue;
        }
        int turn = 0;
        for (size_t i = first; i < count && !s_stopping (self) && result == 0; turn ^= 1) {
            batch_t *b = &pair [turn], *prev = &pair [turn ^ 1];
            int rc = worker_fetch_batch (self, db, imap, uids, count, &i, fetch_max,
                                         b->msgs, &b->n, err, errlen);
            /* the batch before this one: committed and acknowledged first */
            char perr [512] = "";
            int prc = s_batch_finish (self, db, imap, config, prev, &last_uid,
                                      perr, sizeof perr);
            if (prc < 0) {
                if (*perr && (rc == 0 || prc == -2))
                    snprintf (err, errlen, "%s", perr);
                s_batch_clear (b);          /* not committed: fetched again */
                result = prc;
                break;
            }
            /* On a mailbox error, what was fetched before it is still
               committed and acknowledged. */
            b->last = b->n ? b->msgs [b->n - 1].uid : last_uid;
            if (b->n) {
                if (store_commit_send (db, self->route_id, folder, uv, b->msgs, b->n,
                                       b->last, NULL, fetch_max)) {
                    s_batch_clear (b);
                    result = -2;
                    break;
                }
                b->sent = true;
                /* sent: the bytes are in libpq's buffer; only the UIDs
                   are needed from here on (to acknowledge them) */
                for (size_t k = 0; k < b->n; k++) {
                    free (b->msgs [k].raw);
                    b->msgs [k].raw = NULL;
                }
            }
            if (rc < 0) {
                char ferr [512] = "";
                int frc = s_batch_finish (self, db, imap, config, b, &last_uid,
                                          ferr, sizeof ferr);
                result = frc == -2 ? -2 : -1;
                if (frc == -2 && *ferr)
                    snprintf (err, errlen, "%s", ferr);
            }
        }
        /* the last batch sent */
        for (int k = 0; k < 2; k++) {
            char ferr [512] = "";
            int frc = s_batch_finish (self, db, imap, config, &pair [k], &last_uid,
                                      ferr, sizeof ferr);
            if (frc < 0 && (result == 0 || frc == -2)) {
                if (*ferr)
                    snprintf (err, errlen, "%s", ferr);
                result = frc;
            }
        }
        free (uids);
    }
    for (int k = 0; k < 2; k++)
        s_batch_clear (&pair [k]);    /* nothing in flight here */
    free (pair);
    return result;
}

/* Takes the lease on the worker's own session. */
static bool
s_take_lease (worker_t *self, cm_db_t *db)
{
    char ns [16], id [32];
    snprintf (ns, sizeof ns, "%d", LEASE_NAMESPACE);
    snprintf (id, sizeof id, "%lld", self->route_id);
    const char *p [] = { ns, id };
    PGresult *res = cm_db_query (db, "SELECT pg_try_advisory_lock($1::int, $2::int)", 2, p);
    bool got = res && strcmp (cm_db_get (res, 0, 0), "t") == 0;
    PQclear (res);
    return got;
}

/* Loads the route's config with its secrets opened; NULL when the route
   is gone or no longer desired running. */
static json_t *
s_load (worker_t *self, cm_db_t *db)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", self->route_id);
    const char *p [] = { id };
    PGresult *res = cm_db_query (db, "SELECT config FROM routes WHERE id = $1"
                                 " AND desired = 'running'", 1, p);
    json_t *config = NULL;
    if (res && PQntuples (res) == 1)
        config = json_loads (cm_db_get (res, 0, 0), 0, NULL);
    PQclear (res);
    if (config && cm_route_unseal (config, cm_server_seal (self->srv))) {
        cm_error (self->name, "the route's secrets can't be opened with this install's key");
        store_status (db, self->route_id, "FAILED",
                      "the route's password can't be opened with this install's key file");
        json_decref (config);
        config = NULL;
    }
    return config;
}

/* Logs in with a bearer token (SASL XOAUTH2/OAUTHBEARER). A fresh token is
   asked for on every login (cached until near expiry); when the server
   refuses it, the cached token is dropped and one more is tried. */
static cm_imap_t *
s_open_oauth (const json_t *config, cm_mailserver_t *srv, cm_oauth_t **oauth,
              char *err, size_t errlen)
{
    cm_imap_t *imap = NULL;
    for (int attempt = 0; attempt < 2 && !imap; attempt++) {
        char *token = cm_route_oauth_token (config, oauth, err, errlen);
        if (!token)
            return NULL;
        srv->oauth_token = token;
        imap = cm_imap_open (srv, cm_route_str (config, "folder"), err, errlen);
        srv->oauth_token = NULL;
        free (token);
        if (imap || !strstr (err, "authentication failed"))
            break;
        cm_oauth_invalidate (*oauth);
    }
    return imap;
}

cm_imap_t *
worker_open_mailbox (worker_t *self, const json_t *config, cm_mailserver_t *srv,
                     char *err, size_t errlen)
{
    cm_route_inbound (config, srv);
    if (strcmp (cm_route_str (config, "auth"), "oauth2") == 0)
        return s_open_oauth (config, srv, &self->oauth, err, errlen);
    return cm_imap_open (srv, cm_route_str (config, "folder"), err, errlen);
}

static void *
s_run (void *arg)
{
    worker_t *self = arg;
    char err [1024];
    const cm_config_t *cfg = cm_server_config (self->srv);
    cm_db_t *db = cm_db_connect (cfg->db, "casemail-fetcher-route", err, sizeof err);
    json_t *config = NULL;
    if (!db) {
        cm_warn (self->name, "%s", err);
        goto done;
    }
    if (!s_take_lease (self, db))
        goto done;                     /* another fetcher serves it */
    atomic_store (&self->leased, true);
    config = s_load (self, db);
    if (!config)
        goto done;
    cm_info (self->name, "took the lease of route %s", self->name);
    if (cm_route_move_loops (config, err, sizeof err)) {
        /* saved before route add and set refused it: FAILED until the
           route is changed (which restarts this worker) or stopped */
        cm_warn (self->name, "not started: %s", err);
        if (store_status (db, self->route_id, "FAILED", err))
            goto done;
        while (!s_stopping (self))
            worker_nap (self, 1000);
        goto done;
    }
    if (cm_route_bool (config, "exchange")) {
        ews_run (self, db, config);    /* fetcher/ews.c */
        goto done;
    }
    long retry_max = cm_config_env ("CASEMAIL_RETRY_MAX_MS", 15000);
    long backoff = 1000;
    while (!s_stopping (self)) {
        cm_mailserver_t srv;
        cm_imap_t *imap = worker_open_mailbox (self, config, &srv, err, sizeof err);
        if (!imap) {
            if (!worker_login_failed (self, db, err, 0, &backoff, retry_max))
                goto done;
            continue;
        }
        cm_info (self->name, "logged in to %s://%s:%d, folder %s%s", srv.protocol, srv.host,
                 srv.port, cm_route_str (config, "folder"), cm_imap_preauth (imap)
                 ? " (the server greeted PREAUTH: no username or password sent)" : "");
        /* RUNNING once the session is up (worker_session_up): a batch
           acknowledged, or the whole folder gone through */
        worker_session_begin (self);
        self->lane_refused = false;    /* a second session may be tried again */
        int rc = worker_reacknowledge (self, db, imap, config, true, err, sizeof err);
        long poll_ms = cm_route_int (config, "poll_interval") * 1000;
        while (!rc && !s_stopping (self)) {
            rc = s_sync (self, db, imap, config, err, sizeof err);
            if (!rc && !s_stopping (self))     /* a pass cut short by a stop is none */
                rc = worker_session_up (self, db);
            if (rc)
                break;
            rc = cm_imap_wait (imap, IDLE_MS < poll_ms ? IDLE_MS : (int) poll_ms,
                               &self->stop, err, sizeof err);
            if (rc < 0)
                break;
            rc = 0;
            if (cm_server_stopping (self->srv))
                self->stop = 1;
        }
        cm_imap_destroy (&imap);
        int verdict = worker_db_verdict (self, db, rc, &backoff, retry_max);
        if (verdict > 0)
            goto done;
        if (rc && verdict == 0)
            worker_session_lost (self, db, "mailbox connection", err, 0, &backoff,
                                 retry_max);
    }
done:
    if (atomic_load (&self->leased))
        cm_info (self->name, "released the lease of route %s", self->name);
    json_decref (config);
    cm_oauth_destroy (&self->oauth);
    cm_db_destroy (&db);           /* ends the session: frees the lease */
    atomic_store (&self->done, true);
    return NULL;
}

worker_t *
worker_start (cm_server_t *srv, long long route_id, const char *name, const char *version)
{
    worker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->srv = srv;
    self->route_id = route_id;
    snprintf (self->name, sizeof self->name, "%s", name);
    snprintf (self->version, sizeof self->version, "%s", version);
    if (pthread_create (&self->thread, NULL, s_run, self)) {
        free (self);
        return NULL;
    }
    return self;
}

void
worker_destroy (worker_t **self_p)
{
    if (self_p && *self_p) {
        worker_t *self = *self_p;
        self->stop = 1;
        pthread_join (self->thread, NULL);
        free (self);
        *self_p = NULL;
    }
}
