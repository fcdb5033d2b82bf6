/*  fetcher/store.c: the database side of the fetcher: the route's UID
    cursor, committing raw messages idempotently, and route status.
    Invariant: the cursor moves only in the transaction that commits the
    messages it covers, and the mailbox is acknowledged only after. */
#include "fetcher.h"
#include "digest.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
store_cursor (cm_db_t *db, long long route_id, const char *folder,
              uint64_t *uidvalidity, uint64_t *last_uid)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", route_id);
    const char *p [] = { id, folder };
    PGresult *res = cm_db_query (db, "SELECT uidvalidity, last_uid FROM route_cursors"
                                 " WHERE route_id = $1 AND folder = $2", 2, p);
    if (!res)
        return -1;
    *uidvalidity = *last_uid = 0;
    if (PQntuples (res) > 0) {
        *uidvalidity = (uint64_t) cm_db_get_ll (res, 0, 0);
        *last_uid = (uint64_t) cm_db_get_ll (res, 0, 1);
    }
    PQclear (res);
    return 0;
}

/* The Message-ID header value of a raw message (first occurrence in the
   header section), without <>; "" when absent. Bounded scan. */
void
store_message_id (const char *raw, size_t len, char *out, size_t size)
{
    out [0] = 0;
    const char *p = raw, *end = raw + len;
    while (p < end) {
        const char *eol = memchr (p, '\n', (size_t) (end - p));
        size_t linelen = eol ? (size_t) (eol - p) : (size_t) (end - p);
        if (linelen == 0 || (linelen == 1 && p [0] == '\r'))
            return;                       /* end of header section */
        if (linelen > 11 && strncasecmp (p, "Message-ID:", 11) == 0) {
            const char *v = p + 11, *ve = p + linelen;
            /* the value may be folded onto the next line */
            if (eol && eol + 1 < end && (eol [1] == ' ' || eol [1] == '\t')) {
                const char *e2 = memchr (eol + 1, '\n', (size_t) (end - eol - 1));
                ve = e2 ? e2 : end;
            }
            const char *lt = memchr (v, '<', (size_t) (ve - v));
            const char *gt = lt ? memchr (lt, '>', (size_t) (ve - lt)) : NULL;
            if (lt && gt && (size_t) (gt - lt - 1) < size) {
                memcpy (out, lt + 1, (size_t) (gt - lt - 1));
                out [gt - lt - 1] = 0;
            }
            return;
        }
        if (!eol)
            return;
        p = eol + 1;
    }
}

/* Inserts a batch of fetched messages inside the caller's transaction.
   IMAP messages carry their UID (item_ids NULL); EWS items carry their
   ItemId and get a UID from ews_uid_seq. A message already stored (same
   UID, same ItemId, or same Message-ID and SHA-256 after a UIDVALIDITY
   change or a sync restart) is skipped and counted as a duplicate.
   Returns how many were new, or -1 (the caller rolls back). */
static int
s_insert_batch (cm_db_t *db, const char *route_id, const char *folder, const char *uv,
                const fetched_t *msgs, char *const *item_ids, size_t n, size_t fetch_max)
{
    PGconn *conn = cm_db_conn (db);
    int added = 0;
    for (size_t i = 0; i < n; i++) {
        const fetched_t *m = &msgs [i];
        char uid [32], sha [65] = "", size [32], msgid [512] = "", reason [256] = "";
        snprintf (uid, sizeof uid, "%llu", (unsigned long long) m->uid);
        snprintf (size, sizeof size, "%zu", m->len);
        if (m->raw) {
            cm_sha256_hex (m->raw, m->len, sha);
            store_message_id (m->raw, m->len, msgid, sizeof msgid);
        }
        else
            snprintf (reason, sizeof reason, "message is %zu bytes, over the %zu-byte"
                      " fetch limit; it was left in the mailbox", m->len, fetch_max);
        const char *item = item_ids ? item_ids [i] : NULL;
        /* Binary parameter for the raw bytes; text for the rest. */
        const char *values [] = { route_id, folder, uv, item ? NULL : uid, item,
                                  *msgid ? msgid : NULL, sha, size, m->raw,
                                  m->raw ? "fetched" : "rejected", *reason ? reason : NULL };
        int lengths [11] = { 0 };
        int formats [11] = { 0 };
        lengths [8] = (int) m->len;
        formats [8] = 1;
        PGresult *res = PQexecParams (conn,
            "INSERT INTO messages (route_id, folder, uidvalidity, uid, item_id, message_id,"
            " raw_sha256, size, raw, state, reason)"
            " SELECT $1, $2, $3, coalesce($4::bigint, nextval('ews_uid_seq')), $5, $6, $7,"
            "  $8, $9, $10, $11"
            " WHERE ($5::text IS NULL OR NOT EXISTS (SELECT 1 FROM messages"
            "   WHERE route_id = $1 AND folder = $2 AND item_id = $5))"
            " AND ($6::text IS NULL OR $7 = '' OR NOT EXISTS (SELECT 1 FROM messages"
            "   WHERE route_id = $1 AND message_id = $6 AND raw_sha256 = $7))"
            " ON CONFLICT DO NOTHING",
            11, NULL, values, lengths, formats, 0);
        if (PQresultStatus (res) != PGRES_COMMAND_OK) {
            cm_error (NULL, "database: storing %s %s: %s", item ? "EWS item" : "UID",
                      item ? item : uid, PQresultErrorMessage (res));
            PQclear (res);
            return -1;
        }
        if (atoi (PQcmdTuples (res)) > 0)
            added++;
        else
            atomic_fetch_add (&fetch_counters.duplicates, 1);
        PQclear (res);
    }
    return added;
}

int
store_commit (cm_db_t *db, long long route_id, const char *folder,
              uint64_t uidvalidity, const fetched_t *msgs, size_t n,
              uint64_t last_uid, size_t fetch_max)
{
    char id [32], uv [32], last [32];
    snprintf (id, sizeof id, "%lld", route_id);
    snprintf (uv, sizeof uv, "%llu", (unsigned long long) uidvalidity);
    snprintf (last, sizeof last, "%llu", (unsigned long long) last_uid);
    if (cm_db_exec (db, "BEGIN", 0, NULL))
        return -1;
    int added = s_insert_batch (db, id, folder, uv, msgs, NULL, n, fetch_max);
    const char *cp [] = { id, folder, uv, last };
    if (added < 0
        || cm_db_exec (db,
            "INSERT INTO route_cursors (route_id, folder, uidvalidity, last_uid)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (route_id, folder) DO UPDATE"
            " SET uidvalidity = $3, last_uid = greatest(CASE WHEN route_cursors.uidvalidity = $3"
            " THEN route_cursors.last_uid ELSE 0 END, $4), updated_at = now()", 4, cp)
        || cm_db_exec (db, "COMMIT", 0, NULL)) {
        cm_error (NULL, "database: committing a batch: %s", cm_db_error (db));
        cm_db_exec (db, "ROLLBACK", 0, NULL);
        return -1;
    }
    return added;
}

int
store_commit_ews (cm_db_t *db, long long route_id, const char *folder,
                  const fetched_t *msgs, char *const *item_ids, size_t n,
                  const char *sync_state, size_t fetch_max)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", route_id);
    if (cm_db_exec (db, "BEGIN", 0, NULL))
        return -1;
    int added = s_insert_batch (db, id, folder, "0", msgs, item_ids, n, fetch_max);
    const char *cp [] = { id, folder, sync_state };
    if (added < 0
        || cm_db_exec (db,
            "INSERT INTO route_cursors (route_id, folder, uidvalidity, last_uid, sync_state)"
            " VALUES ($1, $2, 0, 0, $3) ON CONFLICT (route_id, folder) DO UPDATE"
            " SET sync_state = $3, updated_at = now()", 3, cp)
        || cm_db_exec (db, "COMMIT", 0, NULL)) {
        cm_error (NULL, "database: committing a batch and its SyncState: %s", cm_db_error (db));
        cm_db_exec (db, "ROLLBACK", 0, NULL);
        return -1;
    }
    return added;
}

int
store_status (cm_db_t *db, long long route_id, const char *status, const char *error)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", route_id);
    const char *p [] = { id, status, error };
    if (strcmp (status, "FAILED") == 0)
        return cm_db_exec (db,
            "UPDATE routes SET status = 'FAILED', last_error = $3, last_error_at = now(),"
            " fail_count = fail_count + 1,"
            " status_since = CASE WHEN status = 'FAILED' THEN status_since ELSE now() END"
            " WHERE id = $1 AND desired = 'running' AND $2 = 'FAILED'", 3, p);
    return cm_db_exec (db,
        "UPDATE routes SET status = $2, fail_count = 0,"
        " status_since = CASE WHEN status = $2 THEN status_since ELSE now() END"
        " WHERE id = $1 AND desired = 'running' AND $3::text IS NULL", 3, p);
}
