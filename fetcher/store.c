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

/* Inserts a batch of fetched messages inside the caller's transaction,
   in one statement: the batch goes as arrays (binary, raw bytes as they
   are) and is unnested in order, so message ids follow UIDs.
   IMAP messages carry their UID (item_ids NULL); EWS items carry their
   ItemId and get a UID from ews_uid_seq. A message already stored (same
   UID, same ItemId, or same Message-ID and SHA-256 after a UIDVALIDITY
   change or a sync restart), or twice in the batch, is skipped and
   counted as a duplicate. Returns how many were new, or -1 (the caller
   rolls back). */
static int
s_insert_batch (cm_db_t *db, const char *route_id, const char *folder, const char *uv,
                const fetched_t *msgs, char *const *item_ids, size_t n, size_t fetch_max)
{
    enum { UID, ITEM, MID, SHA, SIZE, RAW, STATE, REASON, COLUMNS };
    static const unsigned int types [COLUMNS] = { CM_DB_INT8, CM_DB_TEXT, CM_DB_TEXT,
        CM_DB_TEXT, CM_DB_INT8, CM_DB_BYTEA, CM_DB_TEXT, CM_DB_TEXT };
    cm_db_array_t *col [COLUMNS];
    for (int c = 0; c < COLUMNS; c++)
        col [c] = cm_db_array_new (types [c]);
    char (*sha) [65] = calloc (n ? n : 1, sizeof *sha);
    char (*mid) [512] = calloc (n ? n : 1, sizeof *mid);
    size_t rows = 0, skipped = 0;
    for (size_t i = 0; sha && mid && i < n; i++) {
        const fetched_t *m = &msgs [i];
        char reason [256] = "";
        if (m->raw) {
            cm_sha256_hex (m->raw, m->len, sha [i]);
            store_message_id (m->raw, m->len, mid [i], sizeof mid [i]);
        }
        else
            snprintf (reason, sizeof reason, "message is %zu bytes, over the %zu-byte"
                      " fetch limit; it was left in the mailbox", m->len, fetch_max);
        /* the same message twice in one batch: the statement can't see
           its own rows, so the second copy is dropped here */
        bool twice = false;
        for (size_t k = 0; *mid [i] && k < i && !twice; k++)
            twice = msgs [k].raw && strcmp (mid [k], mid [i]) == 0
                    && strcmp (sha [k], sha [i]) == 0;
        if (twice) {
            skipped++;
            continue;
        }
        const char *item = item_ids ? item_ids [i] : NULL;
        if (item)
            cm_db_array_add (col [UID], NULL, 0);
        else
            cm_db_array_add_int8 (col [UID], (long long) m->uid);
        cm_db_array_add_text (col [ITEM], item);
        cm_db_array_add_text (col [MID], *mid [i] ? mid [i] : NULL);
        cm_db_array_add_text (col [SHA], sha [i]);
        cm_db_array_add_int8 (col [SIZE], (long long) m->len);
        cm_db_array_add (col [RAW], m->raw, m->raw ? m->len : 0);
        cm_db_array_add_text (col [STATE], m->raw ? "fetched" : "rejected");
        cm_db_array_add_text (col [REASON], *reason ? reason : NULL);
        rows++;
    }
    const char *values [3 + COLUMNS] = { route_id, folder, uv };
    int lengths [3 + COLUMNS] = { 0 }, formats [3 + COLUMNS] = { 0 };
    bool ok = sha && mid;
    for (int c = 0; c < COLUMNS; c++) {
        values [3 + c] = cm_db_array_data (col [c]);
        lengths [3 + c] = cm_db_array_len (col [c]);
        formats [3 + c] = 1;
        ok = ok && values [3 + c];
    }
    int added = -1;
    if (!ok)
        cm_error (NULL, "storing a batch of %zu messages: out of memory", n);
    else if (rows == 0)
        added = 0;
    else {
        PGresult *res = cm_db_query_binary (db,
            "INSERT INTO messages (route_id, folder, uidvalidity, uid, item_id, message_id,"
            " raw_sha256, size, raw, state, reason)"
            " SELECT $1, $2, $3, coalesce(b.uid, nextval('ews_uid_seq')), b.item, b.mid,"
            "  b.sha, b.size, b.raw, b.state, b.reason"
            " FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[],"
            "  $9::bytea[], $10::text[], $11::text[])"
            "  WITH ORDINALITY AS b (uid, item, mid, sha, size, raw, state, reason, n)"
            " WHERE (b.item IS NULL OR NOT EXISTS (SELECT 1 FROM messages m"
            "   WHERE m.route_id = $1 AND m.folder = $2 AND m.item_id = b.item))"
            " AND (b.mid IS NULL OR b.sha = '' OR NOT EXISTS (SELECT 1 FROM messages m"
            "   WHERE m.route_id = $1 AND m.message_id = b.mid AND m.raw_sha256 = b.sha))"
            " ORDER BY b.n"
            " ON CONFLICT DO NOTHING RETURNING id",
            3 + COLUMNS, values, lengths, formats, 0);
        if (!res && item_ids)
            cm_error (NULL, "database: storing a batch of %zu EWS items: %s", rows,
                      cm_db_error (db));
        else if (!res)
            cm_error (NULL, "database: storing a batch of %zu messages (UIDs %llu to %llu): %s",
                      rows, (unsigned long long) msgs [0].uid,
                      (unsigned long long) msgs [n - 1].uid, cm_db_error (db));
        else {
            added = PQntuples (res);
            skipped += rows - (size_t) added;
            PQclear (res);
        }
    }
    if (added >= 0 && skipped)
        atomic_fetch_add (&fetch_counters.duplicates, (unsigned long long) skipped);
    for (int c = 0; c < COLUMNS; c++)
        cm_db_array_destroy (&col [c]);
    free (sha);
    free (mid);
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
