/*  fetcher/fetcher.h: the inbound stage's shared pieces, private to the
    fetcher folder. main.c reconciles the set of route workers with the
    routes desired running; worker.c is one thread per route whose lease
    this process holds (its own database session holds the lease, so the
    lease dies with the thread or the process); store.c commits raw
    messages with the route's UID cursor. */
#ifndef CM_FETCHER_H
#define CM_FETCHER_H
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "db.h"
#include "imap.h"
#include "oauth.h"
#include "server.h"

#define LEASE_NAMESPACE 25453   /* advisory lock class of route leases ("cm") */

typedef struct {
    long long route_id;
    char name [80];             /* route name, for logs */
    char version [64];          /* routes.updated_at when started */
    cm_server_t *srv;
    pthread_t thread;
    volatile int stop;          /* asked to stop (config changed, stopped) */
    atomic_bool done;           /* thread finished; join it */
    atomic_bool leased;         /* holds the lease */
    bool up;                    /* this mailbox session has worked: it
                                   acknowledged a batch or went through
                                   the whole folder (the route is RUNNING) */
    long long session_start_ms; /* when it logged in (monotonic) */
    cm_oauth_t *oauth;          /* auth oauth2: the route's token cache */
    bool lane_refused;          /* the second session could not log in:
                                   one session until the next login */
    char lane_db_err [600];     /* why the second lane's database
                                   session failed a pass (-2) */
} worker_t;

/* Process-wide counters shown in heartbeats. */
typedef struct {
    atomic_ullong fetched;      /* messages committed */
    atomic_ullong duplicates;   /* already stored (after UIDVALIDITY change) */
    atomic_ullong too_big;      /* over the fetch limit */
    atomic_ullong errors;       /* connection or server errors */
} fetch_counters_t;

extern fetch_counters_t fetch_counters;

/* worker.c: starts the route's thread; NULL when it can't. */
worker_t *worker_start (cm_server_t *srv, long long route_id, const char *name,
                        const char *version);
/* Joins a finished (or stopping) worker and frees it. */
void worker_destroy (worker_t **self_p);
/* True when the worker is asked to stop (route stopped or changed, the
   fetcher shutting down). */
bool worker_stopping (worker_t *self);
/* Sleeps up to ms, waking early when asked to stop. */
void worker_nap (worker_t *self, long ms);
/* A login (Exchange: a sign-in) failed with err: the route is FAILED with
   it, and the worker naps the backoff (or wait_ms, when the server asked
   for longer), which then doubles up to retry_max. False when the
   worker's database session broke: the lease went with it, and the
   worker must give the route up. */
bool worker_login_failed (worker_t *self, cm_db_t *db, const char *err, long wait_ms,
                          long *backoff, long retry_max);
/* Logs in to the route's mailbox (srv filled from config); NULL with err. */
cm_imap_t *worker_open_mailbox (worker_t *self, const json_t *config,
                                cm_mailserver_t *srv, char *err, size_t errlen);
/* A mailbox session begins: logged in, not yet up. */
void worker_session_begin (worker_t *self);
/* The session has worked (a batch acknowledged, or the whole folder gone
   through): the first time, the route becomes RUNNING. 0, or -2 when the
   database failed. A route is RUNNING only once mail can flow, so a
   login whose first pass fails each time (an unreadable message, an
   acknowledgement the server refuses) keeps the route FAILED, counting
   the failures in a row, and never shows RUNNING for a moment. */
int worker_session_up (worker_t *self, cm_db_t *db);
/* A mailbox session (what: "mailbox connection", "Exchange connection")
   ended with err. One that was up worked and then dropped: a server's
   idle timeout or restart, an admin's kick. The route stays RUNNING,
   with err as its last error; only a failed login, or a session that
   fails before it is up, turns the route FAILED. The backoff starts again
   only after a session that worked and lasted WORKER_STEADY_MS from its
   login (so a long first import cut by the server counts): a server
   that drops every session soon after it works is retried ever more
   slowly (up to retry_max), as a failing one is. Naps the backoff, or wait_ms
   when the server asked for longer (Exchange's BackOffMilliseconds). */
#define WORKER_STEADY_MS 60000
void worker_session_lost (worker_t *self, cm_db_t *db, const char *what,
                          const char *err, long wait_ms, long *backoff, long retry_max);
/* What a session that ended with rc (-2: database error) means for the
   database side. 1: the database session is gone, and the route's lease
   with it: give the route up. -1: the database refused a statement while
   the session still answers (the lease is held): the refusal is the
   route's error (FAILED before the session worked) and the session is
   tried again after the backoff, instead of the lease going round the
   fetchers every second while the route looks RUNNING. 0: none. */
int worker_db_verdict (worker_t *self, cm_db_t *db, int rc, long *backoff, long retry_max);

/* Batch steps shared by worker.c's pass and lanes.c's. */
#define BATCH_MAX       64                /* messages per transaction */
#define BATCH_BYTES     (32u << 20)       /* bytes per transaction */
typedef struct fetched_s fetched_t;
/* Fetches the next batch of uids from *i on, \Seen taken back after
   (see worker.c). 0, or -1 with err; what was fetched is in msgs. */
int worker_fetch_batch (worker_t *self, cm_db_t *db, cm_imap_t *imap, const uint64_t *uids,
                        size_t count, size_t *i, size_t fetch_max, fetched_t *msgs,
                        size_t *n, char *err, size_t errlen);
/* A batch of n committed, added of them new, up to UID last: counted,
   the parsers woken, traced. */
void worker_batch_stored (worker_t *self, const json_t *config, int added, size_t n,
                          uint64_t last);
/* Acknowledges committed messages to the mailbox as the route says
   (after_fetch seen or move), in one command. 0, or -1 with err. */
int worker_acknowledge (worker_t *self, cm_imap_t *imap, const json_t *config,
                        const fetched_t *msgs, size_t n, char *err, size_t errlen);
/* Acknowledges the committed messages uids (ascending) as the route
   says, in as many commands as a command line needs. 0, or -1 with err. */
int worker_acknowledge_uids (worker_t *self, cm_imap_t *imap, const json_t *config,
                             const uint64_t *uids, size_t n, char *err, size_t errlen);
/* Acknowledges what may be committed and not acknowledged (after a login,
   or at a long pass's end: then all that the pass deferred, and the
   deferral ends). login: say so in the log. 0, -1 mailbox error, -2
   database error (err). */
int worker_reacknowledge (worker_t *self, cm_db_t *db, cm_imap_t *imap,
                          const json_t *config, bool login, char *err, size_t errlen);

/* lanes.c: a long pass over two mailbox sessions, each with its own
   database session, each taking the next batch no lane has. Used for a pass of
   more than LANES_MIN_UIDS messages when lanes_wanted says so. */
#define LANES_MIN_UIDS  (2 * BATCH_MAX)
/* True unless CASEMAIL_FETCH_SESSIONS is 1 or the second session could
   not log in since the route's last login. */
bool lanes_wanted (worker_t *self);
/* Ingests uids (ascending, all after *last_uid) over the worker's mailbox
   session (imap) and a second one it logs in for the pass; *last_uid
   becomes the cursor reached. 0 ok, -1 mailbox error (err), -2 database
   error (err, and self->lane_db_err when the second lane's database
   session failed and the worker's did not), 1
   when the second session can't be had (nothing fetched: use one). */
int lanes_pass (worker_t *self, cm_db_t *db, cm_imap_t *imap, const json_t *config,
                uint64_t uidvalidity, const uint64_t *uids, size_t count,
                size_t fetch_max, uint64_t *last_uid, char *err, size_t errlen);

/* store.c */
struct fetched_s {
    uint64_t uid;
    char *raw;                  /* NULL when over the fetch limit (or once sent) */
    size_t len;                 /* bytes, or the announced size */
    bool over_limit;            /* recorded rejected, left in the mailbox */
    char *reason;               /* raw NULL for another cause: why (malloc'd) */
};
/* Reads the cursor of (route, folder): 0 with uidvalidity, last_uid and
   since_top (all 0 when the route has none yet), and whether a --since
   limit was recorded (since_top 0 then: nothing to limit), -1 on
   database error. */
int store_cursor (cm_db_t *db, long long route_id, const char *folder,
                  uint64_t *uidvalidity, uint64_t *last_uid, uint64_t *since_top,
                  bool *since_recorded);
/* Records the highest UID --since limits (that of the folder's mail at the
   first pass of this UIDVALIDITY); a cursor of another UIDVALIDITY starts
   again from 0. 0 or -1. */
int store_since_top (cm_db_t *db, long long route_id, const char *folder,
                     uint64_t uidvalidity, uint64_t since_top);
/* Moves the cursor to uid, past UIDs that hold nothing to fetch (mail
   --since leaves out) or whose messages are all committed (a pass over
   two lanes), if it is of this UIDVALIDITY and below. 0 or -1. */
int store_cursor_skip (cm_db_t *db, long long route_id, const char *folder,
                       uint64_t uidvalidity, uint64_t uid);
/* Records that committed messages above from (of this folder) may not be
   acknowledged to the mailbox until store_ack_done: a long pass
   acknowledges its messages once, at its end (the lower from if one is
   recorded already; the cursor's row made if there is none). 0 or -1. */
int store_ack_defer (cm_db_t *db, long long route_id, const char *folder,
                     uint64_t uidvalidity, uint64_t from);
/* The UIDs (ascending, malloc'd) of committed messages of this folder and
   UIDVALIDITY that may not be acknowledged: all those above the deferral
   when one is recorded (*deferred, *ack_from, and *ack_gen the count of
   commits under it), else the newest. Messages
   over the fetch limit are never acknowledged, so never listed. 0, -1
   database error, -2 out of memory. */
int store_unacknowledged (cm_db_t *db, long long route_id, const char *folder,
                          uint64_t uidvalidity, int newest, uint64_t **uids, size_t *n,
                          bool *deferred, uint64_t *ack_from, uint64_t *ack_gen);
/* Ends the deferral from *ack_from (all of it is acknowledged), unless a
   commit under it came after *ack_gen was read; or any deferral (both
   NULL: the route acknowledges nothing). 0 or -1. */
int store_ack_done (cm_db_t *db, long long route_id, const char *folder,
                    const uint64_t *ack_from, const uint64_t *ack_gen);
/* Commits a batch of fetched messages and moves the cursor to last_uid,
   in one statement (one transaction), sent without waiting so the next
   batch can be fetched meanwhile: store_commit_receive collects it (and
   must come before anything else on the session). Messages already
   stored (same UID, or same Message-ID and SHA-256 after a UIDVALIDITY
   change), or twice in the batch, are skipped and counted as duplicates.
   ack_from: the long pass's deferral (store_ack_defer), recorded again
   with the batch in case another session ended it meanwhile; NULL none.
   Send: 0 or -1. Receive: how many were new, or -1 (nothing committed). */
int store_commit_send (cm_db_t *db, long long route_id, const char *folder,
                       uint64_t uidvalidity, const fetched_t *msgs, size_t n,
                       uint64_t last_uid, const uint64_t *ack_from, size_t fetch_max);
int store_commit_receive (cm_db_t *db, size_t n);
/* Writes the route's status unless it is no longer desired running.
   error NULL clears nothing; FAILED counts failures in a row. */
int store_status (cm_db_t *db, long long route_id, const char *status,
                  const char *error);
/* Records error as the route's last error (and when), its status left
   as it is. */
int store_last_error (cm_db_t *db, long long route_id, const char *error);
/* The Message-ID of a raw message without <> ("" when absent). */
void store_message_id (const char *raw, size_t len, char *out, size_t size);

/* ews.c: the Exchange (EWS) route loop, run by the route's worker thread
   once it holds the lease and loaded config; returns when asked to stop
   or when the database session (and with it the lease) is lost. */
void ews_run (worker_t *self, cm_db_t *db, const json_t *config);
/* Commits a batch of EWS items (msgs[i] with item_ids[i]; raw NULL = over
   the fetch limit, recorded rejected) and the folder's new SyncState in
   one transaction. Items already stored (same item id, or same Message-ID
   and SHA-256) are skipped. Returns how many were new, or -1. */
int store_commit_ews (cm_db_t *db, long long route_id, const char *folder,
                      const fetched_t *msgs, char *const *item_ids, size_t n,
                      const char *sync_state, size_t fetch_max);
#endif
