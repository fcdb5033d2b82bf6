/*  parser/main.c: casemail-parser. On a wake from the fetcher (and on a
    periodic rescan, since wakes may be lost) it claims committed raw
    messages with FOR UPDATE SKIP LOCKED, parses each with the message
    library and stores the result in the same transaction, so a message
    is turned into an incident exactly once whatever stage dies when.
    A message during which parsers keep dying is parsed alone and, after
    a few tries, rejected with that reason: one bad message never stops
    a route. Limits come from CASEMAIL_MAX_MESSAGE_BYTES, _MIME_DEPTH,
    _MIME_PARTS, _HEADER_BYTES. */
#include "parser.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "server.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 32
#define BATCH_BYTES (32L << 20) /* raw bytes a claim takes (at least one message) */
#define SLICE_MS 200           /* work per loop turn, so heartbeats flow */
#define SUSPECT_AT 2           /* parse alone after this many dead tries */
#define POISON_AT 4            /* reject after this many */
#define FULL_SCAN_EVERY 32     /* claims from the start of the queue, at least */
#define FORGET_EVERY_MS 10000  /* settled claims deleted when idle, at most */

parse_counters_t parse_counters;

typedef struct {
    cm_limits_t limits;
    cm_db_t *side;             /* autocommit session for claim counts */
    store_batch_t *store;      /* parsed messages not yet stored */
    int timer;                 /* continuation timer, or -1 */
    long long from;            /* claims start at this message id */
    int hinted;                /* claims in a row that started there */
    int64_t forgot_at;         /* last s_forget_settled, zclock_mono ms */
    long batch_bytes;          /* CASEMAIL_PARSE_BATCH_BYTES */
} parser_t;

static parser_t s_parser = { .timer = -1 };

static void
s_route_info (cm_db_t *db, const char *route_id, route_info_t *info)
{
    memset (info, 0, sizeof *info);
    snprintf (info->kind, sizeof info->kind, "ingest");
    if (!route_id)
        return;
    const char *p [] = { route_id };
    PGresult *res = cm_db_query (db, "SELECT id, config->>'kind', config->>'email'"
                                 " FROM routes WHERE id = $1", 1, p);
    if (res && PQntuples (res) == 1) {
        info->id = cm_db_get_ll (res, 0, 0);
        snprintf (info->kind, sizeof info->kind, "%s", cm_db_get (res, 0, 1) ? cm_db_get (res, 0, 1) : "two-way");
        snprintf (info->email, sizeof info->email, "%s", cm_db_get (res, 0, 2) ? cm_db_get (res, 0, 2) : "");
    }
    PQclear (res);
}

/* Deletes the claims whose messages are all settled: those of parsers
   that died, once the last message they name is parsed or rejected. A
   claim in progress names messages still 'fetched' and stays. now: at
   once, after a batch that held a message tried before; else at most
   every FORGET_EVERY_MS, when the parser goes idle, for a dead claim
   whose messages went without a parser counting it (deleted with their
   route, say). A parser's own claim goes in its batch's transaction. */
static void
s_forget_settled (parser_t *self, bool now)
{
    int64_t t = zclock_mono ();
    if (!self->side || (!now && t - self->forgot_at < FORGET_EVERY_MS))
        return;
    self->forgot_at = t;
    cm_db_exec (self->side, "DELETE FROM parse_claims p WHERE NOT EXISTS (SELECT 1"
                " FROM messages m WHERE m.id = ANY (p.message_ids) AND m.state = 'fetched')",
                0, NULL);
}

/* Claims and stores one batch. Returns messages handled, 0 when no
   work, -1 on database error. */
/* Rolls a failed claim back. When the database refused a statement (the
   session still answers: not a lost connection), the claim's row keeps
   the database's words, so a message that fails every time is rejected
   with them rather than as one that stopped the parser. */
static void
s_claim_failed (parser_t *self, cm_db_t *db, const char *claim)
{
    char why [400];
    snprintf (why, sizeof why, "%s", cm_db_error (db));
    cm_db_exec (db, "ROLLBACK", 0, NULL);
    char *context = strstr (why, " CONTEXT:");  /* where in a function: not for a reason */
    if (context)
        *context = 0;
    why [strcspn (why, "\n")] = 0;
    if (!*claim || !*why || !self->side || !cm_db_intact (db))
        return;
    cm_text_scrub (why);
    const char *p [] = { claim, why };
    if (cm_db_exec (self->side, "UPDATE parse_claims SET error = $2 WHERE id = $1::bigint", 2, p))
        cm_warn (NULL, "database: noting why claim %s failed: %s", claim,
                 cm_db_error (self->side));
}

static int
s_batch (cm_server_t *srv, parser_t *self)
{
    cm_db_t *db = cm_server_db (srv);
    /* each statement sees what committed before it: the claim's row,
       written on the side session after this BEGIN, is deleted below */
    if (cm_db_exec (db, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL))
        return -1;
    char limit [16], from [32];
    /* suspects (earlier tries died) go one at a time */
    snprintf (limit, sizeof limit, "%d", BATCH);
    /* The queue's index keeps an entry for every message parsed since the
       last vacuum, and a claim from its start walks past all of them: at
       10,000 messages that was most of the database's time. So a claim
       starts after the last message this parser claimed, and goes back to
       the start when that finds nothing (before the parser goes idle),
       after a failed batch or a suspect, and every FULL_SCAN_EVERY claims:
       a message committed late with a lower id, or released by a parser
       that died, is never left behind. */
    bool hinted = self->from > 0 && self->hinted < FULL_SCAN_EVERY;
    snprintf (from, sizeof from, "%lld", hinted ? self->from : 0);
    char bytes [24];
    snprintf (bytes, sizeof bytes, "%ld", self->batch_bytes);
    const char *p [] = { limit, from, bytes };
    /* a message's tries: the claims that name it (parse_claims holds a
       row for each claim in progress, and for each one whose parser died
       before its batch was committed). The raw bytes come only for the
       messages that fit batch_bytes, the first always: a burst of big
       messages is parsed a few at a time, not 32 at once (the rest of
       the rows locked here are back in the queue at the commit). */
    PGresult *res = cm_db_query_binary (db,
        "WITH c AS (SELECT m.id, m.route_id, CASE WHEN m.raw IS NULL THEN 0 ELSE m.size END"
        "  AS size FROM messages m"
        "  WHERE m.state = 'fetched' AND m.id >= $2::bigint ORDER BY m.id LIMIT $1::int"
        "  FOR NO KEY UPDATE OF m SKIP LOCKED),"
        " w AS (SELECT c.id, c.route_id, row_number () OVER (ORDER BY c.id) AS k,"
        "  sum(c.size) OVER (ORDER BY c.id) AS upto FROM c),"
        " t AS (SELECT x.id, count(*) AS n, max(p.error) AS error"
        "  FROM parse_claims p, unnest(p.message_ids) AS x (id) GROUP BY x.id)"
        " SELECT w.id::text, w.route_id::text, m.raw, coalesce(t.n, 0)::text, t.error"
        " FROM w JOIN messages m ON m.id = w.id LEFT JOIN t ON t.id = w.id"
        " WHERE w.k = 1 OR w.upto <= $3::bigint"
        " ORDER BY w.id", 3, p, NULL, NULL, 1);
    if (!res) {
        cm_error (NULL, "database: claiming messages: %s", cm_db_error (db));
        cm_db_exec (db, "ROLLBACK", 0, NULL);
        return -1;
    }
    int n = PQntuples (res);
    self->hinted = hinted ? self->hinted + 1 : 0;
    self->from = n > 0 ? atoll (PQgetvalue (res, n - 1, 0)) + 1 : 0;
    if (n == 0 && hinted) {
        /* nothing after the hint: look from the start before going idle */
        PQclear (res);
        cm_db_exec (db, "COMMIT", 0, NULL);
        return s_batch (srv, self);
    }
    if (n == 0) {
        PQclear (res);
        cm_db_exec (db, "COMMIT", 0, NULL);
        s_forget_settled (self, false);
        return 0;
    }
    /* a suspect anywhere in the batch: handle just the first row */
    int tries [BATCH];
    const char *why [BATCH];    /* the database's words from failed claims, or NULL */
    for (int i = 0; i < n; i++) {
        tries [i] = atoi (PQgetvalue (res, i, 3));
        why [i] = PQgetisnull (res, i, 4) ? NULL : PQgetvalue (res, i, 4);
    }
    for (int i = 0; i < n; i++)
        if (tries [i] >= SUSPECT_AT) {
            n = 1;
            self->from = 0;         /* the rest of the batch comes next */
            break;
        }
    /* count the try on a separate session, so it survives our death: one
       row for the claim (not counted if that session is broken; it is
       connected again for the next claim) */
    char ids [BATCH * 24] = "{", claim [32] = "";
    for (int i = 0; i < n; i++)
        snprintf (ids + strlen (ids), sizeof ids - strlen (ids), "%s%s", i ? "," : "",
                  PQgetvalue (res, i, 0));
    strcat (ids, "}");
    /* The claim above counted the tries as they stood when it began, not
       when it locked: a parser that died on a message in between (its try
       committed, then its lock gone) is missing from those counts, and the
       message would be tried once too often. This statement starts after
       the locks are ours, so it sees every try before ours (not ours: a
       statement does not see its own insert); a suspect it finds in a
       batch of several narrows the claim to the first message, in the
       same statement, so no death can count against the others. */
    char suspect_at [8];
    snprintf (suspect_at, sizeof suspect_at, "%d", SUSPECT_AT);
    const char *ip [] = { ids, suspect_at };
    PGresult *cres = self->side ? cm_db_query (self->side,
        "WITH t AS (SELECT x.id, count(*) AS n, max(p.error) AS error"
        "  FROM parse_claims p, unnest(p.message_ids) AS x (id)"
        "  WHERE p.message_ids && $1::bigint[] AND x.id = ANY ($1::bigint[]) GROUP BY x.id),"
        " c AS (INSERT INTO parse_claims (message_ids)"
        "  SELECT CASE WHEN cardinality ($1::bigint[]) > 1"
        "   AND EXISTS (SELECT 1 FROM t WHERE t.n >= $2::int)"
        "   THEN ($1::bigint[]) [1:1] ELSE $1::bigint[] END"
        "  RETURNING id, cardinality (message_ids) AS k)"
        " SELECT c.id::text, c.k::text, coalesce(t.n, 0)::text, t.error"
        " FROM c, unnest($1::bigint[]) WITH ORDINALITY AS u (id, k) LEFT JOIN t ON t.id = u.id"
        " ORDER BY u.k", 2, ip) : NULL;
    if (cres && PQntuples (cres) == n) {
        snprintf (claim, sizeof claim, "%s", PQgetvalue (cres, 0, 0));
        for (int i = 0; i < n; i++) {
            tries [i] = atoi (PQgetvalue (cres, i, 2));
            why [i] = PQgetisnull (cres, i, 3) ? NULL : PQgetvalue (cres, i, 3);
        }
        int claimed = atoi (PQgetvalue (cres, 0, 1));
        if (claimed >= 1 && claimed < n) {
            n = claimed;            /* a try came in while we claimed */
            self->from = 0;
        }
    }
    else {
        char err [256];
        PQclear (cres);
        cres = NULL;
        cm_db_destroy (&self->side);
        self->side = cm_db_connect (cm_server_config (srv)->db, "casemail-parser-attempts",
                                    err, sizeof err);
    }
    bool tried = false;         /* a message of the batch was tried before */
    for (int i = 0; i < n; i++)
        tried = tried || tries [i] > 0;
    int done = 0;
    route_info_t route;
    char route_key [32] = "";
    bool have_route = false;
    for (int i = 0; i < n; i++) {
        long long row = atoll (PQgetvalue (res, i, 0));
        const char *route_id = PQgetisnull (res, i, 1) ? NULL : PQgetvalue (res, i, 1);
        /* a batch is mostly one route: look it up once per change */
        if (!have_route || strcmp (route_key, route_id ? route_id : "") != 0) {
            s_route_info (db, route_id, &route);
            snprintf (route_key, sizeof route_key, "%s", route_id ? route_id : "");
            have_route = true;
        }
        int attempts = tries [i];
        char reason [512] = "";
        cm_message_t *msg = NULL;
        if (attempts >= POISON_AT && why [i])
            snprintf (reason, sizeof reason, "the database refused to store this message"
                      " %d times; it is kept unparsed: %.300s", attempts, why [i]);
        else if (attempts >= POISON_AT)
            snprintf (reason, sizeof reason, "the parser stopped %d times while working on"
                      " this message; it is kept unparsed", attempts);
        else if (PQgetisnull (res, i, 2))
            snprintf (reason, sizeof reason, "the raw message is not stored");
        else
            msg = cm_message_parse (PQgetvalue (res, i, 2), (size_t) PQgetlength (res, i, 2),
                                    &self->limits, reason, sizeof reason);
        if (!msg)
            cm_info (NULL, "message %lld rejected: %s", row, reason);
        if (store_add (self->store, db, row, &route, msg, reason))
            goto failed;
        done++;
        cm_server_touch (srv);      /* a batch of big messages takes a while */
    }
    if (store_flush (self->store, db))
        goto failed;
    /* the claim's row goes with the batch's commit: a parser that dies
       before it leaves the try counted, one that commits leaves nothing */
    const char *cp [] = { claim };
    if (*claim && cm_db_exec (db, "DELETE FROM parse_claims WHERE id = $1::bigint", 1, cp)) {
        cm_error (NULL, "database: releasing claim %s: %s", claim, cm_db_error (db));
        goto failed;
    }
    PQclear (res);
    PQclear (cres);
    if (cm_db_exec (db, "COMMIT", 0, NULL)) {
        cm_error (NULL, "database: commit: %s", cm_db_error (db));
        store_batch_reset (self->store);
        self->from = 0;
        return -1;
    }
    store_batch_committed (self->store);
    if (tried)
        s_forget_settled (self, true);  /* the dead claims that named them */
    return done;
failed:
    PQclear (res);
    PQclear (cres);
    store_batch_reset (self->store);
    s_claim_failed (self, db, claim);
    self->from = 0;             /* the batch is back in the queue */
    return -1;
}

static int s_on_more (zloop_t *loop, int timer_id, void *arg);

/* Works for up to one slice; schedules a continuation when more is left. */
static void
s_drain (cm_server_t *srv)
{
    parser_t *self = cm_server_state (srv);
    if (self->timer >= 0)
        return;                 /* a continuation is already scheduled */
    if (!cm_server_db_ok (srv))
        return;
    int64_t start = zclock_mono ();
    int rc;
    while ((rc = s_batch (srv, self)) > 0)
        if (zclock_mono () - start > SLICE_MS) {
            self->timer = zloop_timer (cm_server_loop (srv), 1, 1, s_on_more, srv);
            return;
        }
}

static int
s_on_more (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    cm_server_t *srv = arg;
    parser_t *self = cm_server_state (srv);
    self->timer = -1;
    s_drain (srv);
    return 0;
}

static void
s_event (cm_server_t *srv, const char *topic, json_t *payload)
{
    (void) payload;
    if (strcmp (topic, "wake.parser") == 0)
        s_drain (srv);
}

static int
s_start (cm_server_t *srv)
{
    parser_t *self = cm_server_state (srv);
    cm_limits_default (&self->limits);
    self->limits.max_size = (size_t) cm_config_env ("CASEMAIL_MAX_MESSAGE_BYTES", (long) self->limits.max_size);
    self->limits.max_depth = (int) cm_config_env ("CASEMAIL_MAX_MIME_DEPTH", self->limits.max_depth);
    self->limits.max_parts = (int) cm_config_env ("CASEMAIL_MAX_MIME_PARTS", self->limits.max_parts);
    self->limits.max_header_bytes = (size_t) cm_config_env ("CASEMAIL_MAX_HEADER_BYTES",
                                                    (long) self->limits.max_header_bytes);
    self->limits.max_header_fields = (int) cm_config_env ("CASEMAIL_MAX_HEADER_FIELDS",
                                                  self->limits.max_header_fields);
    self->batch_bytes = cm_config_env ("CASEMAIL_PARSE_BATCH_BYTES", BATCH_BYTES);
    self->store = store_batch_new ();
    if (!self->store)
        return -1;
    char err [256];
    self->side = cm_db_connect (cm_server_config (srv)->db, "casemail-parser-attempts",
                                err, sizeof err);
    s_drain (srv);
    return 0;
}

static void
s_stop (cm_server_t *srv)
{
    parser_t *self = cm_server_state (srv);
    cm_db_destroy (&self->side);
    store_batch_destroy (&self->store);
}

static void
s_counters (cm_server_t *srv, json_t *out)
{
    (void) srv;
    json_object_set_new (out, "parsed", json_integer ((json_int_t) atomic_load (&parse_counters.parsed)));
    json_object_set_new (out, "rejected", json_integer ((json_int_t) atomic_load (&parse_counters.rejected)));
    json_object_set_new (out, "incidents", json_integer ((json_int_t) atomic_load (&parse_counters.incidents)));
    json_object_set_new (out, "replies", json_integer ((json_int_t) atomic_load (&parse_counters.replies)));
    json_object_set_new (out, "flagged", json_integer ((json_int_t) atomic_load (&parse_counters.flagged)));
}

int
main (int argc, char **argv)
{
    static const char *const topics [] = { "wake.parser", NULL };
    static const cm_server_hooks_t hooks = {
        .kind = "parser",
        .topics = topics,
        .start = s_start,
        .stop = s_stop,
        .event = s_event,
        .tick = s_drain,
        .tick_ms = 1000,
        .counters = s_counters,
    };
    return cm_server_main (argc, argv, &hooks, &s_parser);
}
