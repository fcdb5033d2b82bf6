/*  fetcher/store.c: the database side of the fetcher: the route's UID
    cursor, committing raw messages idempotently, and route status.
    Invariant: the cursor never passes a message that is not committed (it
    moves in the transaction that commits the messages it covers, or, over
    two lanes whose batches commit in any order, later: lanes.c), and the
    mailbox is acknowledged only after the commit. */
#include "fetcher.h"
#include "buf.h"
#include "digest.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
store_cursor (cm_db_t *db, long long route_id, const char *folder,
              uint64_t *uidvalidity, uint64_t *last_uid, uint64_t *since_top,
              bool *since_recorded)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", route_id);
    const char *p [] = { id, folder };
    PGresult *res = cm_db_query (db, "SELECT uidvalidity, last_uid, since_top"
                                 " FROM route_cursors WHERE route_id = $1 AND folder = $2", 2, p);
    if (!res)
        return -1;
    *uidvalidity = *last_uid = *since_top = 0;
    *since_recorded = false;
    if (PQntuples (res) > 0) {
        *uidvalidity = (uint64_t) cm_db_get_ll (res, 0, 0);
        *last_uid = (uint64_t) cm_db_get_ll (res, 0, 1);
        *since_recorded = !PQgetisnull (res, 0, 2);
        *since_top = *since_recorded ? (uint64_t) cm_db_get_ll (res, 0, 2) : 0;
    }
    PQclear (res);
    return 0;
}

/* Runs one write of the cursor row with $1 route, $2 folder, $3
   UIDVALIDITY and $4 a UID; what names it in the error. 0 or -1. */
static int
s_cursor_write (cm_db_t *db, const char *sql, long long route_id, const char *folder,
                uint64_t uidvalidity, uint64_t uid, const char *what)
{
    char id [32], uv [24], u [24];
    snprintf (id, sizeof id, "%lld", route_id);
    snprintf (uv, sizeof uv, "%llu", (unsigned long long) uidvalidity);
    snprintf (u, sizeof u, "%llu", (unsigned long long) uid);
    const char *p [] = { id, folder, uv, u };
    if (cm_db_exec (db, sql, 4, p)) {
        cm_error (NULL, "database: %s of %s (UID %s): %s", what, folder, u, cm_db_error (db));
        return -1;
    }
    return 0;
}

int
store_since_top (cm_db_t *db, long long route_id, const char *folder,
                 uint64_t uidvalidity, uint64_t since_top)
{
    /* SET reads the old row: a cursor of another UIDVALIDITY goes back to 0 */
    return s_cursor_write (db,
        "INSERT INTO route_cursors (route_id, folder, uidvalidity, last_uid, since_top)"
        " VALUES ($1, $2, $3, 0, $4) ON CONFLICT (route_id, folder) DO UPDATE"
        " SET since_top = $4, uidvalidity = $3, last_uid = CASE WHEN"
        " route_cursors.uidvalidity = $3 THEN route_cursors.last_uid ELSE 0 END,"
        " updated_at = now()", route_id, folder, uidvalidity, since_top,
        "recording the --since limit");
}

int
store_cursor_skip (cm_db_t *db, long long route_id, const char *folder,
                   uint64_t uidvalidity, uint64_t uid)
{
    return s_cursor_write (db,
        "UPDATE route_cursors SET last_uid = $4, updated_at = now()"
        " WHERE route_id = $1 AND folder = $2 AND uidvalidity = $3 AND last_uid < $4",
        route_id, folder, uidvalidity, uid, "moving the cursor");
}

int
store_ack_defer (cm_db_t *db, long long route_id, const char *folder,
                 uint64_t uidvalidity, uint64_t from)
{
    /* the row as the first commit would make it, when there is none yet */
    return s_cursor_write (db,
        "INSERT INTO route_cursors (route_id, folder, uidvalidity, last_uid, ack_from)"
        " VALUES ($1, $2, $3, 0, $4) ON CONFLICT (route_id, folder) DO UPDATE"
        " SET ack_from = least(route_cursors.ack_from, $4), updated_at = now()",
        route_id, folder, uidvalidity, from, "deferring acknowledgements");
}

int
store_unacknowledged (cm_db_t *db, long long route_id, const char *folder,
                      uint64_t uidvalidity, int newest, uint64_t **uids, size_t *n,
                      bool *deferred, uint64_t *ack_from, uint64_t *ack_gen)
{
    char id [32], uv [32], limit [16], from [24];
    snprintf (id, sizeof id, "%lld", route_id);
    snprintf (uv, sizeof uv, "%llu", (unsigned long long) uidvalidity);
    snprintf (limit, sizeof limit, "%d", newest);
    *uids = NULL;
    *n = 0;
    *deferred = false;
    *ack_from = *ack_gen = 0;
    const char *p [] = { id, folder, uv, limit };
    PGresult *res = cm_db_query (db, "SELECT ack_from, ack_gen FROM route_cursors"
                                 " WHERE route_id = $1 AND folder = $2"
                                 " AND ack_from IS NOT NULL", 2, p);
    bool read = res != NULL;
    if (read && PQntuples (res) == 1) {
        *deferred = true;
        *ack_from = (uint64_t) cm_db_get_ll (res, 0, 0);
        *ack_gen = (uint64_t) cm_db_get_ll (res, 0, 1);
    }
    PQclear (res);
    snprintf (from, sizeof from, "%llu", (unsigned long long) *ack_from);
    const char *pd [] = { id, folder, uv, from };
    /* above ack_from, all of them; else the newest. Over the fetch limit
       (no raw bytes): never acknowledged. */
    res = !read ? NULL : *deferred
        ? cm_db_query (db, "SELECT uid FROM messages WHERE route_id = $1 AND folder = $2"
                       " AND uidvalidity = $3 AND raw IS NOT NULL AND uid > $4"
                       " ORDER BY uid", 4, pd)
        : cm_db_query (db, "SELECT uid FROM (SELECT uid FROM messages WHERE route_id = $1"
                       " AND folder = $2 AND uidvalidity = $3 AND raw IS NOT NULL"
                       " ORDER BY uid DESC LIMIT $4::int) n ORDER BY uid", 4, p);
    if (!res) {
        cm_error (NULL, "database: reading what %s may not have acknowledged: %s", folder,
                  cm_db_error (db));
        return -1;
    }
    size_t rows = (size_t) PQntuples (res);
    *uids = malloc ((rows ? rows : 1) * sizeof **uids);
    if (!*uids) {
        PQclear (res);
        cm_error (NULL, "reading %zu unacknowledged UIDs: out of memory", rows);
        return -2;
    }
    for (size_t i = 0; i < rows; i++)         /* ascending */
        (*uids) [i] = (uint64_t) cm_db_get_ll (res, (int) i, 0);
    *n = rows;
    PQclear (res);
    return 0;
}

int
store_ack_done (cm_db_t *db, long long route_id, const char *folder,
                const uint64_t *ack_from, const uint64_t *ack_gen)
{
    char id [32], from [24], gen [24];
    snprintf (id, sizeof id, "%lld", route_id);
    snprintf (from, sizeof from, "%llu", ack_from ? (unsigned long long) *ack_from : 0ULL);
    snprintf (gen, sizeof gen, "%llu", ack_gen ? (unsigned long long) *ack_gen : 0ULL);
    const char *p [] = { id, folder, ack_from ? from : NULL, ack_gen ? gen : NULL };
    if (cm_db_exec (db, "UPDATE route_cursors SET ack_from = NULL, updated_at = now()"
                    " WHERE route_id = $1 AND folder = $2 AND ack_from IS NOT NULL"
                    " AND ack_from = coalesce($3::bigint, ack_from)"
                    " AND ack_gen = coalesce($4::bigint, ack_gen)", 4, p)) {
        cm_error (NULL, "database: recording %s acknowledged: %s", folder, cm_db_error (db));
        return -1;
    }
    return 0;
}

/* The Message-ID header value of a raw message (first occurrence in the
   header section), without <>, scrubbed to UTF-8 text; "" when absent.
   Bounded scan. */
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
                /* storable as text: one Latin-1 byte here would fail the
                   whole batch's statement, at every try */
                cm_text_scrub (out);
            }
            return;
        }
        if (!eol)
            return;
        p = eol + 1;
    }
}

/* A batch of fetched messages as the array parameters $4..$11 of
   INSERT_ROWS. A message twice in one batch is dropped here (the
   statement can't see its own rows); the caller counts it with the
   other duplicates (messages in the batch, less rows inserted). */
enum { UID, ITEM, MID, SHA, SIZE, RAW, STATE, REASON, COLUMNS };
typedef struct {
    cm_db_array_t *col [COLUMNS];
    size_t rows;                 /* rows in the arrays */
} rows_t;

/* Inserts the rows of $4..$11 for route $1, folder $2, UIDVALIDITY $3,
   in order (so message ids follow UIDs). IMAP messages carry their UID;
   EWS items their ItemId, and get a UID from ews_uid_seq. A message
   already stored (same UID, same ItemId, or same Message-ID and SHA-256
   after a UIDVALIDITY change or a sync restart) is skipped. The checks
   are scalar subqueries, probed per row through the indexes: as NOT
   EXISTS, the plan made while the table was small hashed the whole
   table (a hash anti-join) on every batch: 14 ms a batch at 10,000
   messages, growing with the table. */
#define INSERT_ROWS \
    "INSERT INTO messages (route_id, folder, uidvalidity, uid, item_id, message_id," \
    " raw_sha256, size, raw, state, reason)" \
    " SELECT $1, $2, $3, coalesce(b.uid, nextval('ews_uid_seq')), b.item, b.mid," \
    "  b.sha, b.size, b.raw, b.state, b.reason" \
    " FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[], $8::bigint[]," \
    "  $9::bytea[], $10::text[], $11::text[])" \
    "  WITH ORDINALITY AS b (uid, item, mid, sha, size, raw, state, reason, n)" \
    " WHERE (b.item IS NULL OR (SELECT 1 FROM messages m" \
    "   WHERE m.route_id = $1 AND m.folder = $2 AND m.item_id = b.item LIMIT 1) IS NULL)" \
    " AND (b.mid IS NULL OR b.sha = '' OR (SELECT 1 FROM messages m" \
    "   WHERE m.route_id = $1 AND m.message_id = b.mid AND m.raw_sha256 = b.sha" \
    "   LIMIT 1) IS NULL)" \
    " ORDER BY b.n" \
    " ON CONFLICT DO NOTHING RETURNING id"

static void
s_rows_free (rows_t *r)
{
    for (int c = 0; c < COLUMNS; c++)
        cm_db_array_destroy (&r->col [c]);
}

/* Builds the arrays and fills values/lengths/formats from index 3.
   0, or -1 out of memory (logged). */
static int
s_rows_build (rows_t *r, const fetched_t *msgs, char *const *item_ids, size_t n,
              size_t fetch_max, const char **values, int *lengths, int *formats)
{
    static const unsigned int types [COLUMNS] = { CM_DB_INT8, CM_DB_TEXT, CM_DB_TEXT,
        CM_DB_TEXT, CM_DB_INT8, CM_DB_BYTEA, CM_DB_TEXT, CM_DB_TEXT };
    memset (r, 0, sizeof *r);
    for (int c = 0; c < COLUMNS; c++)
        r->col [c] = cm_db_array_new (types [c]);
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += msgs [i].raw ? msgs [i].len : 0;
    cm_db_array_reserve (r->col [RAW], n, bytes);   /* a failure shows at the end */
    char (*sha) [65] = calloc (n ? n : 1, sizeof *sha);
    char (*mid) [512] = calloc (n ? n : 1, sizeof *mid);
    for (size_t i = 0; sha && mid && i < n; i++) {
        const fetched_t *m = &msgs [i];
        char reason [256] = "";
        if (m->raw) {
            cm_sha256_hex (m->raw, m->len, sha [i]);
            store_message_id (m->raw, m->len, mid [i], sizeof mid [i]);
        }
        else if (m->reason)
            cm_text_scrub (strncpy (reason, m->reason, sizeof reason - 1));  /* a server's words, cut */
        else if (m->len == 0)       /* its size unknown: the download passed the limit */
            snprintf (reason, sizeof reason, "message is over the %zu-byte fetch limit;"
                      " it was left in the mailbox", fetch_max);
        else
            snprintf (reason, sizeof reason, "message is %zu bytes, over the %zu-byte"
                      " fetch limit; it was left in the mailbox", m->len, fetch_max);
        bool twice = false;
        for (size_t k = 0; *mid [i] && k < i && !twice; k++)
            twice = msgs [k].raw && strcmp (mid [k], mid [i]) == 0
                    && strcmp (sha [k], sha [i]) == 0;
        if (twice)
            continue;
        const char *item = item_ids ? item_ids [i] : NULL;
        if (item)
            cm_db_array_add (r->col [UID], NULL, 0);
        else
            cm_db_array_add_int8 (r->col [UID], (long long) m->uid);
        cm_db_array_add_text (r->col [ITEM], item);
        cm_db_array_add_text (r->col [MID], *mid [i] ? mid [i] : NULL);
        cm_db_array_add_text (r->col [SHA], sha [i]);
        cm_db_array_add_int8 (r->col [SIZE], (long long) m->len);
        cm_db_array_add (r->col [RAW], m->raw, m->raw ? m->len : 0);
        cm_db_array_add_text (r->col [STATE], m->raw ? "fetched" : "rejected");
        cm_db_array_add_text (r->col [REASON], *reason ? reason : NULL);
        r->rows++;
    }
    bool ok = sha && mid;
    free (sha);
    free (mid);
    for (int c = 0; c < COLUMNS; c++) {
        values [3 + c] = cm_db_array_data (r->col [c]);
        lengths [3 + c] = cm_db_array_len (r->col [c]);
        formats [3 + c] = 1;
        ok = ok && values [3 + c];
    }
    if (!ok) {
        cm_error (NULL, "storing a batch of %zu messages: out of memory", n);
        s_rows_free (r);
        return -1;
    }
    return 0;
}

int
store_commit_send (cm_db_t *db, long long route_id, const char *folder,
                   uint64_t uidvalidity, const fetched_t *msgs, size_t n,
                   uint64_t last_uid, const uint64_t *ack_from, size_t fetch_max)
{
    char id [32], uv [32], last [32], from [32];
    snprintf (id, sizeof id, "%lld", route_id);
    snprintf (uv, sizeof uv, "%llu", (unsigned long long) uidvalidity);
    snprintf (last, sizeof last, "%llu", (unsigned long long) last_uid);
    snprintf (from, sizeof from, "%llu", ack_from ? (unsigned long long) *ack_from : 0ULL);
    const char *values [3 + COLUMNS + 2] = { id, folder, uv };
    int lengths [3 + COLUMNS + 2] = { 0 }, formats [3 + COLUMNS + 2] = { 0 };
    rows_t r;
    if (s_rows_build (&r, msgs, NULL, n, fetch_max, values, lengths, formats))
        return -1;
    values [3 + COLUMNS] = last;
    values [3 + COLUMNS + 1] = ack_from ? from : NULL;
    /* One statement is one transaction: the rows and the cursor commit
       together or not at all. */
    int rc = cm_db_send_binary (db,
        "WITH ins AS (" INSERT_ROWS "),"
        " cur AS (INSERT INTO route_cursors (route_id, folder, uidvalidity, last_uid, ack_from)"
        "  VALUES ($1, $2, $3, $12, $13::bigint) ON CONFLICT (route_id, folder) DO UPDATE"
        "  SET uidvalidity = $3, last_uid = greatest(CASE WHEN route_cursors.uidvalidity = $3"
        "  THEN route_cursors.last_uid ELSE 0 END, $12), since_top = CASE WHEN"
        "  route_cursors.uidvalidity = $3 THEN route_cursors.since_top END,"
        "  ack_from = least(route_cursors.ack_from, $13::bigint),"
        "  ack_gen = route_cursors.ack_gen + CASE WHEN $13::bigint IS NULL THEN 0 ELSE 1 END,"
        "  updated_at = now())"
        " SELECT count(*) FROM ins", 3 + COLUMNS + 2, values, lengths, formats, 0);
    s_rows_free (&r);
    if (rc)
        cm_error (NULL, "database: sending a batch of %zu messages (UIDs %llu to %llu): %s",
                  n, n ? (unsigned long long) msgs [0].uid : 0ULL,
                  (unsigned long long) last_uid, cm_db_error (db));
    return rc;
}

int
store_commit_receive (cm_db_t *db, size_t n)
{
    PGresult *res = cm_db_receive (db);
    if (!res) {
        cm_error (NULL, "database: committing a batch: %s", cm_db_error (db));
        return -1;
    }
    int added = (int) cm_db_get_ll (res, 0, 0);
    PQclear (res);
    if ((size_t) added < n)
        atomic_fetch_add (&fetch_counters.duplicates, (unsigned long long) (n - (size_t) added));
    return added;
}

int
store_commit_ews (cm_db_t *db, long long route_id, const char *folder,
                  const fetched_t *msgs, char *const *item_ids, size_t n,
                  const char *sync_state, size_t fetch_max)
{
    char id [32];
    snprintf (id, sizeof id, "%lld", route_id);
    const char *values [3 + COLUMNS] = { id, folder, "0" };
    int lengths [3 + COLUMNS] = { 0 }, formats [3 + COLUMNS] = { 0 };
    rows_t r;
    if (s_rows_build (&r, msgs, item_ids, n, fetch_max, values, lengths, formats))
        return -1;
    int added = -1;
    const char *cp [] = { id, folder, sync_state };
    if (cm_db_exec (db, "BEGIN", 0, NULL) == 0) {
        PGresult *res = r.rows ? cm_db_query_binary (db, INSERT_ROWS, 3 + COLUMNS, values,
                                                     lengths, formats, 0) : NULL;
        if (res || r.rows == 0)
            added = res ? PQntuples (res) : 0;
        PQclear (res);
    }
    s_rows_free (&r);
    if (added < 0
        || cm_db_exec (db,
            "INSERT INTO route_cursors (route_id, folder, uidvalidity, last_uid, sync_state)"
            " VALUES ($1, $2, 0, 0, $3) ON CONFLICT (route_id, folder) DO UPDATE"
            " SET sync_state = $3, updated_at = now()", 3, cp)
        || cm_db_exec (db, "COMMIT", 0, NULL)) {
        cm_error (NULL, "database: committing a batch of %zu EWS items and its SyncState: %s",
                  n, cm_db_error (db));
        cm_db_exec (db, "ROLLBACK", 0, NULL);
        return -1;
    }
    if ((size_t) added < n)
        atomic_fetch_add (&fetch_counters.duplicates, (unsigned long long) (n - (size_t) added));
    return added;
}

int
store_status (cm_db_t *db, long long route_id, const char *status, const char *error)
{
    char id [32], text [2048];
    snprintf (id, sizeof id, "%lld", route_id);
    snprintf (text, sizeof text, "%s", error ? error : "");
    const char *p [] = { id, status, error ? cm_text_scrub (text) : NULL };
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

int
store_last_error (cm_db_t *db, long long route_id, const char *error)
{
    char id [32], text [2048];
    snprintf (id, sizeof id, "%lld", route_id);
    snprintf (text, sizeof text, "%s", error ? error : "");
    const char *p [] = { id, error ? cm_text_scrub (text) : NULL };
    return cm_db_exec (db, "UPDATE routes SET last_error = $2, last_error_at = now()"
                       " WHERE id = $1 AND desired = 'running'", 2, p);
}
