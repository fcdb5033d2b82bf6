/*  fetcher/lanes.c: a long pass over two mailbox sessions.

    One session fetches one message at a time (one UID per transfer), a
    chain of round trips through the server that keeps at most one core
    busy; the steps between two batches (the next batch's flags and sizes,
    the commit) stop it altogether. A pass of more than LANES_MIN_UIDS
    messages therefore runs two lanes, each a mailbox session with its own
    database session: the worker's own, and a second pair logged in for
    the pass. The pass's UIDs are cut into chunks of BATCH_MAX; each lane
    takes the next chunk no lane has, fetches and commits it, and goes on,
    while the other does the same.

    The pass acknowledges its messages to the mailbox (\Seen, or the
    move) once, at its end, in a few commands on the worker's session. An
    acknowledgement per batch made each server session take in the other's
    flag changes before its next fetch (on a Dovecot maildir, a rename of
    the message's file for each \Seen): two sessions then fetched little
    faster than one. The deferral is recorded before the pass
    (route_cursors.ack_from, store_ack_defer), so a fetcher that dies
    before the end leaves what it committed to the acknowledgement after
    the next login (worker_reacknowledge), however much that is. That
    acknowledgement knows only the rows stored; a copy of a message
    stored before adds none, so a batch with copies is acknowledged at
    once by its lane, as a one-session batch is.
    Each lane's commit records the deferral again, in its transaction,
    and counts itself (ack_gen): should the worker's database session die
    and another fetcher take the route while the second lane still
    commits, that fetcher's login does not end a deferral a commit came
    under after it read what to acknowledge.

    Exactly once, with commits in any order:
    - The cursor never passes a message that is not committed. A lane
      commits with its batch the cursor of the prefix of chunks all done
      (or, when its chunk is the first not done, its batch's last UID:
      everything below it is committed then). After the pass the cursor
      goes to the end of that prefix. A chunk committed above a chunk that
      failed is fetched again at the next pass and recognised by its UID
      (UNIQUE (route, folder, UIDVALIDITY, UID)): nothing is stored twice.
    - A lane takes chunk k only while k is less than LANES_AHEAD chunks
      above the done prefix: what a failure leaves to fetch again is
      bounded.
    The second lane's database session does not hold the route's lease:
    should the worker's session die (and another fetcher take the route),
    that lane stops after the batch it is on, whose messages the unique
    key keeps from being stored twice.
    A lane that fails halts the other after its batch; the pass returns
    the failure as the one-session pass does. When the second session
    can't log in (a server that limits sessions per user), the route
    fetches over one session until its next login, and says so once. */
#include "fetcher.h"
#include "config.h"
#include "log.h"
#include "route.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LANES 2
#define LANES_AHEAD 8                   /* chunks a lane may be above the prefix */

typedef struct {
    worker_t *self;
    const json_t *config;
    const char *folder;
    uint64_t uv;
    size_t fetch_max;
    const uint64_t *uids;       /* the pass's UIDs, ascending */
    size_t count, nchunks;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t next;                /* the next chunk no lane has taken */
    bool *done;                 /* chunk k committed */
    const uint64_t *defer_from; /* the deferral, NULL when none (keep) */
    size_t prefix;              /* chunks 0 .. prefix - 1 are all done */
    uint64_t cursor;            /* every UID up to it is committed */
    bool halt;                  /* a lane failed: the other stops */
} pass_t;

typedef struct {
    pass_t *pass;
    cm_db_t *db;
    cm_imap_t *imap;
    fetched_t msgs [BATCH_MAX];
    int result;                 /* 0, -1 mailbox, -2 database */
    char err [512];
    pthread_t thread;
} lane_t;

bool
lanes_wanted (worker_t *self)
{
    return !self->lane_refused && cm_config_env ("CASEMAIL_FETCH_SESSIONS", LANES) >= LANES;
}

static uint64_t
s_chunk_last (const pass_t *p, size_t k)
{
    size_t end = (k + 1) * BATCH_MAX;
    return p->uids [(end < p->count ? end : p->count) - 1];
}

/* Fetches and commits one batch of chunk k, from *i up to end. 0, -1
   mailbox error, -2 database error (lane->err). */
static int
s_lane_batch (lane_t *lane, size_t k, size_t *i, size_t end)
{
    pass_t *p = lane->pass;
    worker_t *self = p->self;
    size_t n = 0;
    int result = worker_fetch_batch (self, lane->db, lane->imap, p->uids, end, i,
                                     p->fetch_max, lane->msgs, &n, lane->err,
                                     sizeof lane->err) ? -1 : 0;
    /* what was fetched before a mailbox error is committed all the same */
    if (n) {
        uint64_t last = lane->msgs [n - 1].uid;
        pthread_mutex_lock (&p->lock);
        uint64_t cursor = k == p->prefix ? last : p->cursor;
        pthread_mutex_unlock (&p->lock);
        int added = -1;
        if (store_commit_send (lane->db, self->route_id, p->folder, p->uv, lane->msgs, n,
                               cursor, p->defer_from, p->fetch_max) == 0) {
            /* the bytes are in libpq's buffer */
            for (size_t m = 0; m < n; m++) {
                free (lane->msgs [m].raw);
                lane->msgs [m].raw = NULL;
            }
            added = store_commit_receive (lane->db, n);
        }
        if (added < 0) {
            snprintf (lane->err, sizeof lane->err, "%s", cm_db_error (lane->db));
            result = -2;
        }
        else {
            pthread_mutex_lock (&p->lock);
            if (k == p->prefix && last > p->cursor)
                p->cursor = last;
            pthread_mutex_unlock (&p->lock);
            worker_batch_stored (self, p->config, added, n, last);
            /* Copies of messages stored before add no row, and the
               acknowledgement after a login knows only rows: a batch
               with copies is acknowledged at once, on this lane, as a
               one-session batch is. (Rare, but a whole folder after a
               UIDVALIDITY change.) */
            char scratch [256];
            bool failed = result < 0;
            if ((size_t) added < n
                && worker_acknowledge (self, lane->imap, p->config, lane->msgs, n,
                                       failed ? scratch : lane->err,
                                       failed ? sizeof scratch : sizeof lane->err) < 0)
                result = -1;
            if (result == 0) {
                pthread_mutex_lock (&p->lock);   /* self->up is the worker's */
                int up = worker_session_up (self, lane->db);
                pthread_mutex_unlock (&p->lock);
                if (up) {
                    snprintf (lane->err, sizeof lane->err, "%s", cm_db_error (lane->db));
                    result = -2;
                }
            }
        }
    }
    for (size_t m = 0; m < n; m++)
        free (lane->msgs [m].raw);
    return result;
}

static void *
s_lane_run (void *arg)
{
    lane_t *lane = arg;
    pass_t *p = lane->pass;
    for (;;) {
        pthread_mutex_lock (&p->lock);
        while (!p->halt && p->next < p->nchunks && p->next >= p->prefix + LANES_AHEAD
               && !worker_stopping (p->self)) {
            struct timespec until;
            clock_gettime (CLOCK_MONOTONIC, &until);
            until.tv_nsec += 100 * 1000000L;       /* to notice a stop */
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait (&p->cond, &p->lock, &until);
        }
        bool go = !p->halt && p->next < p->nchunks && !worker_stopping (p->self);
        size_t k = go ? p->next++ : 0;
        pthread_mutex_unlock (&p->lock);
        if (!go)
            break;
        size_t i = k * BATCH_MAX, end = i + BATCH_MAX < p->count ? i + BATCH_MAX : p->count;
        while (i < end && lane->result == 0)
            lane->result = s_lane_batch (lane, k, &i, end);
        pthread_mutex_lock (&p->lock);
        if (lane->result)
            p->halt = true;
        else {
            p->done [k] = true;
            while (p->prefix < p->nchunks && p->done [p->prefix]) {
                uint64_t last = s_chunk_last (p, p->prefix++);
                if (last > p->cursor)
                    p->cursor = last;
            }
        }
        pthread_cond_broadcast (&p->cond);
        pthread_mutex_unlock (&p->lock);
        if (lane->result)
            break;
    }
    return NULL;
}

/* The second lane's sessions; 1 (with the reason logged) when either
   can't be had, -1 when the folder changed. */
static int
s_second (worker_t *self, const json_t *config, uint64_t uv, cm_db_t **db,
          cm_imap_t **imap)
{
    char err [1024];
    *db = cm_db_connect (cm_server_config (self->srv)->db, "casemail-fetcher-lane",
                         err, sizeof err);
    if (!*db) {
        cm_warn (self->name, "a second database session for fetching could not be"
                 " opened (%s): fetching over one session until the next login", err);
        self->lane_refused = true;
        return 1;
    }
    cm_mailserver_t srv;
    *imap = worker_open_mailbox (self, config, &srv, err, sizeof err);
    if (*imap && cm_imap_body_open (*imap, err, sizeof err))
        cm_imap_destroy (imap);         /* its second connection refused */
    if (!*imap) {
        cm_warn (self->name, "a second mailbox session could not log in (%s): fetching"
                 " over one session until the next login", err);
        self->lane_refused = true;
        cm_db_destroy (db);
        return 1;
    }
    if (cm_imap_uidvalidity (*imap) != uv) {
        cm_warn (self->name, "UIDVALIDITY of %s changed between two logins (%llu, then"
                 " %llu): logging in again", cm_route_str (config, "folder"),
                 (unsigned long long) uv, (unsigned long long) cm_imap_uidvalidity (*imap));
        cm_imap_destroy (imap);
        cm_db_destroy (db);
        return -1;
    }
    return 0;
}

int
lanes_pass (worker_t *self, cm_db_t *db, cm_imap_t *imap, const json_t *config,
            uint64_t uidvalidity, const uint64_t *uids, size_t count, size_t fetch_max,
            uint64_t *last_uid, char *err, size_t errlen)
{
    /* the worker's own body connection first: a server that limits
       connections per user refuses the second lane's, never this one */
    if (cm_imap_body_open (imap, err, errlen))
        return -1;
    cm_imap_t *imap2 = NULL;
    cm_db_t *db2 = NULL;
    int second = s_second (self, config, uidvalidity, &db2, &imap2);
    if (second) {
        if (second < 0)
            snprintf (err, errlen, "UIDVALIDITY changed between two logins");
        return second;
    }
    pass_t p = {
        .self = self, .config = config, .folder = cm_route_str (config, "folder"),
        .uv = uidvalidity,
        .fetch_max = fetch_max,
        .uids = uids, .count = count, .nchunks = (count + BATCH_MAX - 1) / BATCH_MAX,
        .cursor = *last_uid
    };
    lane_t *lanes = calloc (LANES, sizeof *lanes);
    p.done = calloc (p.nchunks, sizeof *p.done);
    if (!lanes || !p.done) {
        free (lanes);
        free (p.done);
        cm_imap_destroy (&imap2);
        cm_db_destroy (&db2);
        return 1;
    }
    pthread_mutex_init (&p.lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&p.cond, &attr);
    pthread_condattr_destroy (&attr);
    cm_db_t *dbs [LANES] = { db, db2 };
    cm_imap_t *imaps [LANES] = { imap, imap2 };
    for (int l = 0; l < LANES; l++)
        lanes [l] = (lane_t) { .pass = &p, .db = dbs [l], .imap = imaps [l] };
    /* from here on, the pass's acknowledgements wait for its end */
    bool defer = strcmp (cm_route_str (config, "after_fetch"), "keep") != 0;
    uint64_t from = *last_uid;
    p.defer_from = defer ? &from : NULL;
    int result = 1;
    if (defer && store_ack_defer (db, self->route_id, p.folder, uidvalidity, from)) {
        snprintf (err, errlen, "%s", cm_db_error (db));
        result = -2;
    }
    else if (pthread_create (&lanes [1].thread, NULL, s_lane_run, &lanes [1])) {
        /* nothing fetched: one session does the pass */
        if (defer && store_ack_done (db, self->route_id, p.folder, &from, NULL)) {
            snprintf (err, errlen, "%s", cm_db_error (db));
            result = -2;
        }
    }
    else {
        cm_info (self->name, "fetching %zu messages over %d mailbox sessions", count, LANES);
        s_lane_run (&lanes [0]);
        pthread_join (lanes [1].thread, NULL);
        result = 0;
        /* a database error first, as the one-session pass reports it */
        for (int pick = -2; pick <= -1 && result == 0; pick++)
            for (int l = 0; l < LANES && result == 0; l++)
                if (lanes [l].result == pick) {
                    result = pick;
                    snprintf (err, errlen, "%s", lanes [l].err);
                }
        if (lanes [1].result == -2 && lanes [0].result != -2)
            /* the second database session's: the worker names it */
            snprintf (self->lane_db_err, sizeof self->lane_db_err, "%s", lanes [1].err);
        bool moved = p.cursor > *last_uid;
        *last_uid = p.cursor;
        if (moved && lanes [0].result != -2
            && store_cursor_skip (db, self->route_id, p.folder, uidvalidity, p.cursor)) {
            snprintf (err, errlen, "%s", cm_db_error (db));
            result = -2;
        }
        /* the pass's acknowledgements, on the worker's session when it
           is whole (else the next login's do) */
        char aerr [512];
        int ack = lanes [0].result == 0 && result != -2
                ? worker_reacknowledge (self, db, imap, config, false, aerr, sizeof aerr) : 0;
        if (ack && (result == 0 || ack == -2)) {
            snprintf (err, errlen, "%s", aerr);
            result = ack;
        }
    }
    pthread_cond_destroy (&p.cond);
    pthread_mutex_destroy (&p.lock);
    free (p.done);
    free (lanes);
    cm_imap_destroy (&imap2);
    cm_db_destroy (&db2);
    return result;
}
