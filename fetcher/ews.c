/*  fetcher/ews.c: the inbound side of an Exchange route (EWS), with the
    same contract as IMAP (worker.c): the worker thread holds the route's
    lease; this loop signs in (token for OAUTH2), resolves the folder,
    then finds new items with SyncFolderItems from
    the SyncState kept in route_cursors, fetches each as MIME (GetItem),
    commits the batch and the new SyncState in one transaction, and only
    then acknowledges (UpdateItem IsRead or MoveItem, as after_fetch says)
    and wakes the parsers; the first batch (or a sync with nothing new)
    makes the route RUNNING. It polls every poll_interval seconds. A failed
    sign-in (including a token that can't be renewed), or a session that
    fails before it has worked, makes this route FAILED with the reason; a
    working session that fails leaves it RUNNING (worker_session_lost).
    Retries back off, doubling to a cap. */
#include "fetcher.h"
#include "config.h"
#include "log.h"
#include "route.h"
#include "route_ews.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EWS_BATCH   100             /* items per SyncFolderItems and transaction */

#define s_stopping worker_stopping

static bool
s_verbose (const json_t *config)
{
    const char *level = cm_route_str (config, "log_level");
    return level && strcmp (level, "verbose") == 0;
}

/* The route's SyncState for folder (malloc'd), NULL when none; -1 on
   database error. */
static int
s_state (cm_db_t *db, long long route_id, const char *folder, char **state)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", route_id);
    const char *p [] = { id, folder };
    *state = NULL;
    PGresult *res = cm_db_query (db, "SELECT sync_state FROM route_cursors"
                                 " WHERE route_id = $1 AND folder = $2", 2, p);
    if (!res)
        return -1;
    if (PQntuples (res) > 0 && !PQgetisnull (res, 0, 0))
        *state = strdup (PQgetvalue (res, 0, 0));
    PQclear (res);
    return 0;
}

/* Acknowledges one committed item as the route says. 0 ok (or already
   gone, or refused for this item alone: it is stored, so the route goes
   on, the item left as it is, the reason its last error), -1 error. */
static int
s_ack (worker_t *self, cm_db_t *db, cm_ews_t *ews, const char *after,
       const char *processed_id, cm_ews_item_t *item, char *err, size_t errlen)
{
    int rc = 0;
    if (strcmp (after, "seen") == 0)
        rc = cm_ews_mark_read (ews, item, err, errlen);
    else if (strcmp (after, "move") == 0 && processed_id)
        rc = cm_ews_move (ews, item, processed_id, err, errlen);
    if (rc == 3) {
        char why [1200];
        snprintf (why, sizeof why, "an item could not be %s: %s; it is stored, and left in"
                  " the mailbox as it is", strcmp (after, "seen") == 0 ? "marked read"
                  : "moved", err);
        cm_warn (self->name, "%s", why);
        store_last_error (db, self->route_id, why);
        return 0;
    }
    if (rc < 0)
        cm_warn (self->name, "acknowledging an item: %s", err);
    return rc < 0 ? -1 : 0;
}

/* After each sign-in: acknowledges the last committed batch again (a
   fetcher killed between a commit and the end of its acknowledgements
   left it unacknowledged; items already acknowledged answer "gone" or
   are simply marked read again). */
static int
s_reacknowledge (worker_t *self, cm_db_t *db, cm_ews_t *ews, const json_t *config,
                 const char *processed_id, char *err, size_t errlen)
{
    const char *after = cm_route_str (config, "after_fetch");
    if (!after || strcmp (after, "keep") == 0)
        return 0;
    char id [32], lim [16];
    snprintf (id, sizeof id, "%lld", self->route_id);
    snprintf (lim, sizeof lim, "%d", EWS_BATCH);
    const char *p [] = { id, cm_route_str (config, "folder"), lim };
    PGresult *res = cm_db_query (db, "SELECT item_id FROM messages WHERE route_id = $1"
                                 " AND folder = $2 AND item_id IS NOT NULL AND raw IS NOT NULL"
                                 " ORDER BY id DESC LIMIT $3::int", 3, p);
    if (!res)
        return -2;
    int rc = 0;
    for (int i = 0; i < PQntuples (res) && !rc && !s_stopping (self); i++) {
        cm_ews_item_t item = { strdup (PQgetvalue (res, i, 0)), NULL };
        rc = s_ack (self, db, ews, after, processed_id, &item, err, errlen);
        free (item.item_id);
        free (item.change_key);
    }
    PQclear (res);
    return rc;
}

/* One SyncFolderItems round: fetch, commit, acknowledge. 0 ok (*more set),
   -1 mailbox error, -2 database error. */
static int
s_sync (worker_t *self, cm_db_t *db, cm_ews_t *ews, const json_t *config,
        const char *folder_id, const char *processed_id, bool *more,
        char *err, size_t errlen)
{
    const char *folder = cm_route_str (config, "folder");
    size_t fetch_max = (size_t) cm_config_env ("CASEMAIL_FETCH_MAX_BYTES", 64L << 20);
    char *state = NULL;
    *more = false;
    if (s_state (db, self->route_id, folder, &state))
        return -2;
    cm_ews_item_t *items = NULL;
    size_t n = 0;
    char *new_state = NULL;
    int rc = cm_ews_sync (ews, folder_id, state, EWS_BATCH, &items, &n, &new_state, more,
                          err, errlen);
    if (rc == 2) {
        /* the server refused our SyncState: start again from the
           beginning; what is stored already is recognised as duplicate */
        cm_warn (self->name, "the server refused the stored SyncState: %s; synchronising"
                 " the folder again from the start", err);
        free (state);
        state = NULL;
        rc = cm_ews_sync (ews, folder_id, NULL, EWS_BATCH, &items, &n, &new_state, more,
                          err, errlen);
    }
    free (state);
    if (rc) {
        free (new_state);
        return -1;
    }
    fetched_t *msgs = calloc (n ? n : 1, sizeof *msgs);
    char **ids = calloc (n ? n : 1, sizeof *ids);
    size_t k = 0;
    bool stopped = false;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (s_stopping (self)) {
            stopped = true;             /* nothing committed: fetched again later */
            break;
        }
        fetched_t *m = &msgs [k];
        int g = cm_ews_get_mime (ews, &items [i], fetch_max, &m->raw, &m->len, err, errlen);
        if (g == 2)
            continue;                       /* gone meanwhile */
        if (g < 0) {
            rc = -1;
            break;
        }
        if (g == 1) {
            m->raw = NULL;
            atomic_fetch_add (&fetch_counters.too_big, 1);
            cm_warn (self->name, "an item is %zu bytes, over the fetch limit: recorded as"
                     " rejected and left in the mailbox", m->len);
        }
        if (g == 3) {
            /* an item Exchange cannot give as MIME (a contact, a task):
               recorded rejected with the reason, left in the mailbox, and
               the route goes on past it */
            char why [1200];
            snprintf (why, sizeof why, "Exchange could not give this item as a message: %s;"
                      " it was left in the mailbox", err);
            m->raw = NULL;
            m->len = 0;
            m->reason = strdup (why);
            cm_warn (self->name, "an item is recorded as rejected: %s", why);
        }
        m->uid = i;                         /* index into items */
        ids [k] = items [i].item_id;
        k++;
    }
    int added = 0;
    if (rc == 0 && !stopped) {
        /* the new SyncState covers every item of the round, so it is
           committed only when all of them were fetched */
        added = store_commit_ews (db, self->route_id, folder, msgs, ids, k, new_state,
                                  fetch_max);
        if (added < 0)
            rc = -2;
    }
    if (rc == 0 && !stopped) {
        atomic_fetch_add (&fetch_counters.fetched, (unsigned long long) added);
        if (added)
            cm_server_wake (self->srv, "parser");
        cm_trace (s_verbose (config), self->name, "committed %d new of %zu items", added, k);
        const char *after = cm_route_str (config, "after_fetch");
        for (size_t j = 0; j < k && rc == 0; j++)   /* committed: acknowledge all */
            if (msgs [j].raw && after)
                rc = s_ack (self, db, ews, after, processed_id, &items [msgs [j].uid], err,
                            errlen);
    }
    for (size_t j = 0; j < k; j++) {
        free (msgs [j].raw);
        free (msgs [j].reason);
    }
    free (msgs);
    free (ids);
    cm_ews_item_free (items, n);
    free (new_state);
    return rc;
}

static void
s_version_used (worker_t *self, cm_db_t *db, cm_ews_t *ews)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", self->route_id);
    const char *p [] = { id, cm_ews_version (ews) };
    cm_db_exec (db, "UPDATE routes SET exchange_version_used = $2 WHERE id = $1"
                " AND exchange_version_used IS DISTINCT FROM $2", 2, p);
}

void
ews_run (worker_t *self, cm_db_t *db, const json_t *config)
{
    char err [1024];
    long retry_max = cm_config_env ("CASEMAIL_RETRY_MAX_MS", 15000);
    long backoff = 1000;
    const char *folder = cm_route_str (config, "folder");
    const char *after = cm_route_str (config, "after_fetch");
    while (!s_stopping (self)) {
        cm_oauth_t *oauth = NULL;
        cm_ews_t *ews = NULL;
        char *folder_id = NULL, *processed_id = NULL;
        int rc = cm_route_ews_open (config, &oauth, &ews, err, sizeof err);
        cm_ews_set_stop (ews, &self->stop);     /* a stop does not wait out a request */
        char summary [512];
        /* GetFolder (after the token, for OAUTH2): proves the sign-in and
           settles the version before the route is RUNNING */
        if (!rc)
            rc = cm_ews_test_inbound (ews, folder ? folder : "inbox", summary, sizeof summary,
                                      err, sizeof err);
        if (!rc)
            rc = cm_ews_folder_id (ews, folder ? folder : "inbox", &folder_id, err, sizeof err);
        if (!rc && after && strcmp (after, "move") == 0) {
            const char *pf = cm_route_str (config, "processed_folder");
            if (!pf) {
                snprintf (err, sizeof err, "after_fetch is move but the route has no"
                          " processed_folder");
                rc = -1;
            }
            else
                rc = cm_ews_folder_id (ews, pf, &processed_id, err, sizeof err);
        }
        if (rc) {
            long wait_ms = cm_ews_backoff_ms (ews);   /* the server's, if it asked */
            free (folder_id);
            free (processed_id);
            cm_route_ews_close (&oauth, &ews);
            if (s_stopping (self))
                return;                 /* a request given up for the stop */
            if (!worker_login_failed (self, db, err, wait_ms, &backoff, retry_max))
                return;
            continue;
        }
        s_version_used (self, db, ews);
        cm_info (self->name, "signed in to Exchange %s (%s), folder %s",
                 cm_route_str (config, "exchange_host"), cm_ews_version (ews),
                 folder ? folder : "inbox");
        long poll_ms = cm_route_int (config, "poll_interval") * 1000;
        if (poll_ms <= 0)
            poll_ms = 5000;
        /* RUNNING once a batch is in and acknowledged (or there was none) */
        worker_session_begin (self);
        rc = s_reacknowledge (self, db, ews, config, processed_id, err, sizeof err);
        while (!rc && !s_stopping (self)) {
            bool more = false;
            rc = s_sync (self, db, ews, config, folder_id, processed_id, &more,
                         err, sizeof err);
            if (!rc && !s_stopping (self))     /* a sync cut short by a stop is none */
                rc = worker_session_up (self, db);
            if (rc || more)
                continue;
            worker_nap (self, poll_ms);
        }
        long wait_ms = cm_ews_backoff_ms (ews);   /* the server's, if it asked */
        free (folder_id);
        free (processed_id);
        cm_route_ews_close (&oauth, &ews);
        int verdict = worker_db_verdict (self, db, rc, &backoff, retry_max);
        if (verdict > 0)
            return;
        if (rc && verdict == 0 && !s_stopping (self))
            worker_session_lost (self, db, "Exchange connection", err, wait_ms, &backoff,
                                 retry_max);
    }
}
