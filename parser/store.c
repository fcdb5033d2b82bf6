/*  parser/store.c: inbound messages into the case manager's records,
    inside the parser's claiming transaction, a batch at a time: each
    message becomes a new incident, or a new entry on the timeline of the
    incident it answers, with attachments (attached mail to any depth,
    with its own attachments); automatic mail, delivery reports and mail
    from the route's own address are stored and flagged, linked where they
    match, and never open an incident. A delivery report settles each
    recipient it says failed (s_bounce): refused, and the email bounced
    once nobody is left who took it (a delay warning or a success report
    changes nothing). A batch is stored in one statement for its
    rejections, one for its incidents, timeline entries, thread ids and
    message states, and one for all its attachments (threading lookups and
    bounce updates are made message by message as they are added). A
    message that answers one still in the batch flushes the batch first,
    so threading always sees the incidents of earlier messages.
    Errors: -1 on a database error (the caller rolls back). */
#include "parser.h"
#include "buf.h"
#include "log.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A PostgreSQL text[] literal of flags (ours: plain words). */
static void
s_flags_literal (const char *const *flags, size_t n, char *out, size_t size)
{
    snprintf (out, size, "{");
    for (size_t i = 0; i < n; i++)
        snprintf (out + strlen (out), size - strlen (out), "%s\"%s\"", i ? "," : "", flags [i]);
    snprintf (out + strlen (out), size - strlen (out), "}");
}

static json_t *
s_headers_json (const cm_message_t *m)
{
    return json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:s}",
        "subject", m->subject, "from_name", m->from_name, "from", m->from_addr,
        "to", m->to, "cc", m->cc, "date", m->date_text,
        "message_id", m->message_id, "text", m->text);
}

/* The attached message of attachment a of msg, or NULL. */
static const cm_message_t *
s_nested (const cm_message_t *msg, const cm_attachment_t *a)
{
    return a->nested_index >= 0 && (size_t) a->nested_index < msg->nnested
         ? msg->nested [a->nested_index] : NULL;
}

/* Attachments of msg and, in turn, of the messages attached to it. */
static size_t
s_count_attachments (const cm_message_t *msg)
{
    size_t n = msg->nattachments;
    for (size_t i = 0; i < msg->nattachments; i++) {
        const cm_message_t *nested = s_nested (msg, &msg->attachments [i]);
        if (nested)
            n += s_count_attachments (nested);
    }
    return n;
}

enum { A_ID, A_INCIDENT, A_TIMELINE, A_PARENT, A_DEPTH, A_FILENAME, A_CTYPE, A_CID,
       A_INLINE, A_NESTED, A_SIZE, A_SHA, A_NOTE, A_HEADERS, A_DATA, A_COLUMNS };

/* Adds the attachments of msg (under parent, 0 for none) to the arrays,
   each with the next of the ids drawn for the batch, then those of each
   attached message under it. A file taken out of a winmail.dat hangs
   under it (parent_index, an earlier attachment of the same message),
   one level deeper; only a message with such files needs the table of
   its attachments' ids. -1 out of memory (the batch is not stored: no
   file loses its place). */
static int
s_flatten (cm_db_array_t **col, const cm_message_t *msg, long long incident,
           long long timeline, long long parent, int depth, const long long *ids,
           size_t nids, size_t *next)
{
    bool children = false;
    for (size_t i = 0; i < msg->nattachments && !children; i++)
        children = msg->attachments [i].parent_index >= 0;
    long long *own = children ? calloc (msg->nattachments, sizeof *own) : NULL;
    int rc = children && !own ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < msg->nattachments && *next < nids; i++) {
        const cm_attachment_t *a = &msg->attachments [i];
        const cm_message_t *nested = s_nested (msg, a);
        long long id = ids [(*next)++];
        long long holder = parent;
        int level = depth;
        if (own && a->parent_index >= 0 && (size_t) a->parent_index < i) {
            holder = own [a->parent_index];
            level = depth + 1;
        }
        if (own)
            own [i] = id;
        char *headers = NULL;
        if (nested) {
            json_t *h = s_headers_json (nested);
            headers = json_dumps (h, JSON_COMPACT);
            json_decref (h);
            if (!headers)
                rc = -1;
        }
        cm_db_array_add_int8 (col [A_ID], id);
        cm_db_array_add_int8 (col [A_INCIDENT], incident);
        cm_db_array_add_int8 (col [A_TIMELINE], timeline);
        if (holder)
            cm_db_array_add_int8 (col [A_PARENT], holder);
        else
            cm_db_array_add (col [A_PARENT], NULL, 0);
        cm_db_array_add_int8 (col [A_DEPTH], level);
        cm_db_array_add_text (col [A_FILENAME], a->filename);
        cm_db_array_add_text (col [A_CTYPE], a->content_type);
        cm_db_array_add_text (col [A_CID], a->content_id);
        cm_db_array_add_text (col [A_INLINE], a->is_inline ? "t" : "f");
        cm_db_array_add_text (col [A_NESTED], nested ? "t" : "f");
        cm_db_array_add_int8 (col [A_SIZE], (long long) a->size);
        cm_db_array_add_text (col [A_SHA], a->sha256);
        cm_db_array_add_text (col [A_NOTE], a->note);
        cm_db_array_add_text (col [A_HEADERS], headers);
        /* an empty part is an empty value, not NULL */
        cm_db_array_add (col [A_DATA], a->data ? (const void *) a->data : "", a->size);
        free (headers);
        if (nested && rc == 0)
            rc = s_flatten (col, nested, incident, timeline, id, level + 1, ids, nids, next);
    }
    free (own);
    return rc;
}

/* The ids of a PostgreSQL bigint[] in text form ("{1,2,3}"); -1 when it
   does not hold exactly want of them. */
static int
s_parse_ids (const char *text, long long *ids, size_t want)
{
    size_t n = 0;
    const char *p = text && *text == '{' ? text + 1 : NULL;
    while (p && *p && *p != '}' && n < want) {
        char *end;
        ids [n++] = strtoll (p, &end, 10);
        if (end == p)
            return -1;
        p = *end == ',' ? end + 1 : end;
    }
    return p && *p == '}' && n == want ? 0 : -1;
}

/* Does a delivery report (or one of its recipient blocks) say delivery
   failed? RFC 3464: Action "failed" is a bounce; "delayed", "delivered",
   "relayed" and "expanded" are not (a delay warning must not mark a sent
   email bounced). Without an Action, a permanent status (5.x.x) counts
   as a failure; with neither, otherwise decides (a report whose details
   we couldn't read still bounces; a block without them does not). */
static bool
s_says_failed (const char *action, const char *status, bool otherwise)
{
    if (action && *action)
        return strcasecmp (action, "failed") == 0;
    if (status && *status)
        return status [0] == '5';
    return otherwise;
}

/* The recipients a delivery report says failed leave `delivered` for
   `refused`, their status joins `refusals`; the email becomes `bounced`
   only when no recipient is left that took it or waits for it, and
   otherwise keeps its state with the refusals as its last error. A
   recipient is matched by its Original-Recipient or Final-Recipient
   address, in any case; one already refused is not counted again, so the
   same report stored twice, or a second one for the same recipient,
   changes nothing more. A report that names none of the email's
   recipients (refused ones included) but says it failed (no readable
   blocks, or an address rewritten on the way) counts for the email's
   recipient when exactly one is left.
   Delay warnings and success reports change nothing. One statement, in
   the batch's transaction. 0, or -1 on a database error. */
static int
s_bounce (cm_db_t *db, const cm_message_t *msg)
{
    cm_db_array_t *addrs = cm_db_array_new (CM_DB_TEXT), *statuses = cm_db_array_new (CM_DB_TEXT);
    bool any_failed = false;
    const char *first_status = NULL;
    for (size_t i = 0; i < msg->ndsn_rcpts; i++) {
        const cm_dsn_rcpt_t *r = &msg->dsn_rcpts [i];
        if (!s_says_failed (r->action, r->status, false))
            continue;
        any_failed = true;
        if (!first_status)
            first_status = r->status;
        const char *names [] = { r->original, r->recipient };
        for (size_t k = 0; k < 2; k++)
            if (names [k]) {
                cm_db_array_add_text (addrs, names [k]);
                cm_db_array_add (statuses, r->status, r->status ? strlen (r->status) : 0);
            }
    }
    if (msg->ndsn_rcpts == 0 && s_says_failed (msg->dsn_action, msg->dsn_status, true)) {
        any_failed = true;
        first_status = msg->dsn_status;
    }
    int rc = 0;
    if (any_failed) {
        const char *v [] = { msg->dsn_original_message_id, cm_db_array_data (addrs),
                             cm_db_array_data (statuses), first_status };
        int lens [] = { 0, cm_db_array_len (addrs), cm_db_array_len (statuses), 0 };
        int fmts [] = { 0, 1, 1, 0 };
        PGresult *res = v [1] && v [2] ? cm_db_query_binary (db,
            "WITH o AS (SELECT id, rcpt_to || cc || bcc AS everyone, refused FROM outbox"
            "  WHERE message_id = $1 AND state IN ('sent', 'queued', 'sending', 'bounced')),"
            " f AS (SELECT lower (a) AS a, s FROM unnest ($2::text[], $3::text[]) AS t (a, s)),"
            " live AS (SELECT o.id, r.addr, r.ord FROM o, unnest (o.everyone) WITH ORDINALITY AS r (addr, ord)"
            "  WHERE NOT EXISTS (SELECT 1 FROM unnest (o.refused) x WHERE lower (x) = lower (r.addr))),"
            " named AS (SELECT DISTINCT ON (l.id, lower (l.addr)) l.id, l.addr, l.ord, f.s"
            "  FROM live l JOIN f ON f.a = lower (l.addr) ORDER BY l.id, lower (l.addr), l.ord),"
            " sole AS (SELECT DISTINCT ON (l.id) l.id, l.addr, l.ord, $4::text AS s"
            "  FROM live l JOIN o ON o.id = l.id"
            "  WHERE NOT EXISTS (SELECT 1 FROM unnest (o.everyone) e JOIN f ON f.a = lower (e))"
            "  AND (SELECT count (DISTINCT lower (k.addr)) FROM live k WHERE k.id = l.id) = 1"
            "  ORDER BY l.id, l.ord),"
            " hit AS (SELECT * FROM named UNION ALL SELECT * FROM sole),"
            " agg AS (SELECT h.id, array_agg (h.addr ORDER BY h.ord) AS addrs,"
            "  string_agg (h.addr || ' bounced (' || coalesce (h.s, 'failed') || ')', '; '"
            "   ORDER BY h.ord) AS why,"
            "  (array_agg (h.s ORDER BY h.ord) FILTER (WHERE h.s IS NOT NULL)) [1] AS status,"
            "  (SELECT count (*) FROM live l WHERE l.id = h.id AND NOT EXISTS (SELECT 1 FROM hit k"
            "   WHERE k.id = l.id AND lower (k.addr) = lower (l.addr))) AS left_n"
            "  FROM hit h GROUP BY h.id)"
            " UPDATE outbox SET refused = outbox.refused || agg.addrs,"
            " delivered = ARRAY (SELECT d.a FROM unnest (outbox.delivered) WITH ORDINALITY AS d (a, n)"
            "  WHERE lower (d.a) <> ALL (SELECT lower (x) FROM unnest (agg.addrs) x) ORDER BY d.n),"
            " refusals = concat_ws ('; ', outbox.refusals, agg.why),"
            " last_error = concat_ws ('; ', outbox.refusals, agg.why),"
            " dsn_status = coalesce (agg.status, outbox.dsn_status, '5.0.0'),"
            " state = CASE WHEN agg.left_n = 0 AND outbox.state IN ('sent', 'queued')"
            "  THEN 'bounced' ELSE outbox.state END"
            " FROM agg WHERE outbox.id = agg.id RETURNING outbox.id, outbox.state, agg.why",
            4, v, lens, fmts, 0) : NULL;
        if (!res) {
            cm_error (NULL, "database: recording the bounce of email %.200s: %s",
                      msg->dsn_original_message_id, v [1] && v [2] ? cm_db_error (db) : "out of memory");
            rc = -1;
        }
        else if (PQntuples (res) > 0)
            cm_info (NULL, "email %s: %s%s", cm_db_get (res, 0, 0), cm_db_get (res, 0, 2),
                     strcmp (cm_db_get (res, 0, 1), "bounced") == 0 ? "; nobody is left: bounced" : "");
        PQclear (res);
    }
    cm_db_array_destroy (&addrs);
    cm_db_array_destroy (&statuses);
    return rc;
}

/* One message waiting in the batch. */
typedef struct {
    long long row;              /* messages.id */
    cm_message_t *msg;          /* NULL: rejected */
    char *reason;               /* rejection reason, or the timeline note */
    long long route;            /* 0: the route was removed */
    long long incident;         /* the incident it answers, or 0 */
    bool open;                  /* opens an incident */
    bool automatic;
    char flags [256];           /* text[] literal */
    char *reporter;
    size_t natt;                /* attachments, attached mail's own included */
} pending_t;

struct store_batch_s {
    pending_t items [STORE_BATCH_MAX];
    size_t n;
    size_t bytes;               /* decoded bytes held */
    /* stored since the claim began, counted once it commits */
    unsigned long long parsed, rejected, incidents, replies, flagged;
};

/* Decoded bytes of the attachments of msg, attached mail's own included,
   and with texts, of its text and HTML bodies and theirs too: the batch
   is flushed before it holds more than STORE_BATCH_BYTES, so a batch of
   big messages stays bounded. */
static size_t
s_bytes (const cm_message_t *msg, bool texts)
{
    size_t n = texts ? strlen (msg->text) + (msg->html ? strlen (msg->html) : 0) : 0;
    for (size_t i = 0; i < msg->nattachments; i++) {
        n += msg->attachments [i].size;
        const cm_message_t *nested = s_nested (msg, &msg->attachments [i]);
        if (nested)
            n += s_bytes (nested, texts);
    }
    return n;
}

store_batch_t *
store_batch_new (void)
{
    return calloc (1, sizeof (store_batch_t));
}

/* Drops the pending messages (stored, or to be rolled back). */
static void
s_clear (store_batch_t *self)
{
    for (size_t i = 0; i < self->n; i++) {
        cm_message_destroy (&self->items [i].msg);
        free (self->items [i].reason);
        free (self->items [i].reporter);
    }
    self->n = 0;
    self->bytes = 0;
}

void
store_batch_reset (store_batch_t *self)
{
    s_clear (self);
    self->parsed = self->rejected = self->incidents = self->replies = self->flagged = 0;
}

void
store_batch_committed (store_batch_t *self)
{
    atomic_fetch_add (&parse_counters.parsed, self->parsed);
    atomic_fetch_add (&parse_counters.rejected, self->rejected);
    atomic_fetch_add (&parse_counters.incidents, self->incidents);
    atomic_fetch_add (&parse_counters.replies, self->replies);
    atomic_fetch_add (&parse_counters.flagged, self->flagged);
    store_batch_reset (self);
}

void
store_batch_destroy (store_batch_t **self_p)
{
    if (*self_p) {
        store_batch_reset (*self_p);
        free (*self_p);
        *self_p = NULL;
    }
}

/* Does msg name a message still waiting in the batch (so its incident
   is not in the database yet)? */
static bool
s_names_pending (const store_batch_t *self, const cm_message_t *msg)
{
    for (size_t i = 0; i < self->n; i++) {
        const cm_message_t *p = self->items [i].msg;
        const char *id = p ? p->message_id : NULL;
        if (!id || !*id)
            continue;
        if ((msg->in_reply_to && strcmp (msg->in_reply_to, id) == 0)
            || (msg->dsn_original_message_id && strcmp (msg->dsn_original_message_id, id) == 0))
            return true;
        for (size_t r = 0; r < msg->nreferences; r++)
            if (strcmp (msg->references [r], id) == 0)
                return true;
    }
    return false;
}

/* Stores the rejected messages of the batch, in one statement. */
static int
s_flush_rejected (store_batch_t *self, cm_db_t *db, size_t nrejected)
{
    if (nrejected == 0)
        return 0;
    cm_db_array_t *rows = cm_db_array_new (CM_DB_INT8), *why = cm_db_array_new (CM_DB_TEXT);
    for (size_t i = 0; i < self->n; i++)
        if (!self->items [i].msg) {
            cm_db_array_add_int8 (rows, self->items [i].row);
            cm_db_array_add_text (why, self->items [i].reason);
        }
    const char *v [] = { cm_db_array_data (rows), cm_db_array_data (why) };
    int len [] = { cm_db_array_len (rows), cm_db_array_len (why) }, fmt [] = { 1, 1 };
    PGresult *res = v [0] && v [1] ? cm_db_query_binary (db,
        "UPDATE messages SET state = 'rejected', reason = r.reason, parsed_at = now()"
        " FROM unnest($1::bigint[], $2::text[]) AS r (id, reason) WHERE messages.id = r.id",
        2, v, len, fmt, 0) : NULL;
    if (!res)
        cm_error (NULL, "database: storing %zu rejected messages: %s", nrejected,
                  v [0] && v [1] ? cm_db_error (db) : "out of memory");
    cm_db_array_destroy (&rows);
    cm_db_array_destroy (&why);
    PQclear (res);
    return res ? 0 : -1;
}

enum { P_ROW, P_OPEN, P_ROUTE, P_TITLE, P_TEXT, P_REPORTER, P_INCIDENT, P_MSGID, P_FROM,
       P_TO, P_CC, P_SUBJECT, P_DATE, P_NEW, P_QUOTED, P_HTML, P_FLAGS, P_NOTE, P_COLUMNS };

/* Stores the parsed messages of the batch in one statement: the incidents
   they open, their timeline entries, their Message-IDs for threading and
   their own state; it draws the ids of all their attachments too, which
   then go in one more statement. RI checks run at the statement's end, so
   an entry may name the incident inserted beside it. */
static int
s_flush_parsed (store_batch_t *self, cm_db_t *db, size_t nparsed)
{
    if (nparsed == 0)
        return 0;
    static const unsigned int types [P_COLUMNS] = { CM_DB_INT8, CM_DB_TEXT, CM_DB_INT8,
        CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_INT8, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT,
        CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT,
        CM_DB_TEXT };
    cm_db_array_t *col [P_COLUMNS];
    for (int c = 0; c < P_COLUMNS; c++)
        col [c] = cm_db_array_new (types [c]);
    size_t natt = 0, abytes = 0;
    for (size_t i = 0; i < self->n; i++) {
        const pending_t *p = &self->items [i];
        const cm_message_t *m = p->msg;
        if (!m)
            continue;
        natt += p->natt;
        abytes += p->natt ? s_bytes (m, false) : 0;
        cm_db_array_add_int8 (col [P_ROW], p->row);
        cm_db_array_add_text (col [P_OPEN], p->open ? "t" : "f");
        if (p->route)
            cm_db_array_add_int8 (col [P_ROUTE], p->route);
        else
            cm_db_array_add (col [P_ROUTE], NULL, 0);
        cm_db_array_add_text (col [P_TITLE], *m->subject ? m->subject : "(no subject)");
        cm_db_array_add_text (col [P_TEXT], m->text);
        cm_db_array_add_text (col [P_REPORTER], p->reporter);
        if (p->incident)
            cm_db_array_add_int8 (col [P_INCIDENT], p->incident);
        else
            cm_db_array_add (col [P_INCIDENT], NULL, 0);
        cm_db_array_add_text (col [P_MSGID], m->message_id);
        cm_db_array_add_text (col [P_FROM], m->from_addr);
        cm_db_array_add_text (col [P_TO], m->to);
        cm_db_array_add_text (col [P_CC], m->cc);
        cm_db_array_add_text (col [P_SUBJECT], m->subject);
        cm_db_array_add_text (col [P_DATE], m->date_text);
        cm_db_array_add_text (col [P_NEW], m->new_text);
        cm_db_array_add_text (col [P_QUOTED], m->quoted_text);
        cm_db_array_add_text (col [P_HTML], m->html);
        cm_db_array_add_text (col [P_FLAGS], p->flags);
        cm_db_array_add_text (col [P_NOTE], p->reason);
    }
    char nattext [32];
    snprintf (nattext, sizeof nattext, "%zu", natt);
    const char *v [P_COLUMNS + 1];
    int len [P_COLUMNS + 1], fmt [P_COLUMNS + 1];
    bool ok = true;
    for (int c = 0; c < P_COLUMNS; c++) {
        v [c] = cm_db_array_data (col [c]);
        len [c] = cm_db_array_len (col [c]);
        fmt [c] = 1;
        ok = ok && v [c];
    }
    v [P_COLUMNS] = nattext;
    len [P_COLUMNS] = 0;
    fmt [P_COLUMNS] = 0;
    PGresult *res = ok ? cm_db_query_binary (db,
        "WITH s AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[],"
        "   $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[],"
        "   $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],"
        "   $17::text[], $18::text[]) WITH ORDINALITY AS s (row, open, route, title, body,"
        "   reporter, incident, message_id, from_addr, to_text, cc_text, subject, date_text,"
        "   new_text, quoted_text, html, flags, note, ord)),"
        " i AS (INSERT INTO incidents (number, route_id, title, description, reporter,"
        "   source_message)"
        "  SELECT nextval('incident_number_seq'), s.route, s.title, s.body, s.reporter, s.row"
        "  FROM s WHERE s.open::boolean ORDER BY s.ord"
        "  RETURNING id, source_message),"
        " x AS (SELECT s.*, coalesce(i.id, s.incident) AS inc"
        "  FROM s LEFT JOIN i ON i.source_message = s.row),"
        " t AS (INSERT INTO timeline (incident_id, direction, inbound_id, message_id, from_addr,"
        "   to_text, cc_text, subject, date_text, body_text, new_text, quoted_text, html, flags)"
        "  SELECT x.inc, 'in', x.row, x.message_id, x.from_addr, x.to_text, x.cc_text,"
        "   x.subject, x.date_text, x.body, x.new_text, x.quoted_text, x.html, x.flags::text[]"
        "  FROM x WHERE x.inc IS NOT NULL ORDER BY x.ord RETURNING id, inbound_id),"
        " th AS (INSERT INTO thread_ids (message_id, incident_id)"
        "  SELECT DISTINCT x.message_id, x.inc FROM x"
        "  WHERE x.inc IS NOT NULL AND coalesce(x.message_id, '') <> ''"
        "   AND octet_length(x.message_id) <= 2000"     /* an index entry's limit */
        "  ON CONFLICT DO NOTHING),"
        " m AS (UPDATE messages SET state = 'parsed', subject = x.subject,"
        "  from_addr = x.from_addr, flags = x.flags::text[], incident_id = x.inc,"
        "  reason = x.note, parsed_at = now() FROM x WHERE messages.id = x.row)"
        " SELECT x.row, x.inc, t.id,"
        "  CASE WHEN x.ord = 1 THEN (SELECT array_agg(nextval('attachments_id_seq'))"
        "   FROM generate_series(1, $19::int)) END"
        " FROM x LEFT JOIN t ON t.inbound_id = x.row ORDER BY x.ord",
        P_COLUMNS + 1, v, len, fmt, 0) : NULL;
    for (int c = 0; c < P_COLUMNS; c++)
        cm_db_array_destroy (&col [c]);
    if (!res || (size_t) PQntuples (res) != nparsed) {
        cm_error (NULL, "database: storing %zu messages: %s", nparsed,
                  !ok ? "out of memory" : res ? "not every message was stored"
                  : cm_db_error (db));
        PQclear (res);
        return -1;
    }
    long long *ids = natt ? calloc (natt, sizeof *ids) : NULL;
    if (natt && (!ids || s_parse_ids (cm_db_get (res, 0, 3), ids, natt))) {
        cm_error (NULL, "database: drawing %zu attachment ids", natt);
        free (ids);
        PQclear (res);
        return -1;
    }
    /* the answer comes in the batch's order: attach the ids */
    cm_db_array_t *acol [A_COLUMNS];
    static const unsigned int atypes [A_COLUMNS] = { CM_DB_INT8, CM_DB_INT8, CM_DB_INT8,
        CM_DB_INT8, CM_DB_INT8, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT,
        CM_DB_INT8, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_BYTEA };
    for (int c = 0; c < A_COLUMNS; c++)
        acol [c] = cm_db_array_new (atypes [c]);
    size_t next = 0, want = 0;
    bool flat = true;
    if (natt)
        cm_db_array_reserve (acol [A_DATA], natt, abytes);
    int r = 0;
    for (size_t i = 0; i < self->n; i++) {
        const pending_t *p = &self->items [i];
        if (!p->msg)
            continue;
        long long incident = cm_db_get_ll (res, r, 1);
        long long timeline = cm_db_get (res, r, 2) ? cm_db_get_ll (res, r, 2) : 0;
        r++;
        if (timeline && p->natt) {
            want += p->natt;
            flat = s_flatten (acol, p->msg, incident, timeline, 0, 0, ids, natt, &next) == 0
                   && flat;
        }
    }
    PQclear (res);
    free (ids);
    int rc = 0;
    if (want) {
        const char *av [A_COLUMNS];
        int alen [A_COLUMNS], afmt [A_COLUMNS];
        ok = next == want && flat;
        for (int c = 0; c < A_COLUMNS; c++) {
            av [c] = cm_db_array_data (acol [c]);
            alen [c] = cm_db_array_len (acol [c]);
            afmt [c] = 1;
            ok = ok && av [c];
        }
        res = ok ? cm_db_query_binary (db,
            "INSERT INTO attachments (id, incident_id, timeline_id, parent_id, depth, filename,"
            " content_type, content_id, is_inline, is_message, size, sha256, note, headers, data)"
            " SELECT a.id, a.incident, a.timeline, a.parent, a.depth, a.filename, a.ctype, a.cid,"
            "  a.inline::boolean, a.nested::boolean, a.size, a.sha, a.note, a.headers::jsonb,"
            "  a.data"
            " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],"
            "  $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[],"
            "  $12::text[], $13::text[], $14::text[], $15::bytea[])"
            "  AS a (id, incident, timeline, parent, depth, filename, ctype, cid, inline, nested,"
            "  size, sha, note, headers, data)", A_COLUMNS, av, alen, afmt, 0) : NULL;
        if (!res || strtoull (PQcmdTuples (res), NULL, 10) != want) {
            cm_error (NULL, "database: storing %zu attachments: %s", want,
                      res ? "not every row was stored" : ok ? cm_db_error (db)
                      : "out of memory");
            rc = -1;
        }
        PQclear (res);
    }
    for (int c = 0; c < A_COLUMNS; c++)
        cm_db_array_destroy (&acol [c]);
    return rc;
}

int
store_flush (store_batch_t *self, cm_db_t *db)
{
    size_t nrejected = 0, nparsed = 0;
    for (size_t i = 0; i < self->n; i++)
        if (self->items [i].msg)
            nparsed++;
        else
            nrejected++;
    if (s_flush_rejected (self, db, nrejected) || s_flush_parsed (self, db, nparsed))
        return -1;
    self->rejected += nrejected;
    self->parsed += nparsed;
    for (size_t i = 0; i < self->n; i++) {
        const pending_t *p = &self->items [i];
        if (!p->msg)
            continue;
        if (p->open)
            self->incidents++;
        else if (p->incident)
            self->replies++;
        if (p->automatic)
            self->flagged++;
    }
    s_clear (self);
    return 0;
}

int
store_add (store_batch_t *self, cm_db_t *db, long long message_row,
           const route_info_t *route, cm_message_t *msg, const char *reason)
{
    /* a message answering one still in the batch: that one's incident
       must be in the database before this one is matched */
    if (self->n == STORE_BATCH_MAX || self->bytes > STORE_BATCH_BYTES
        || (msg && s_names_pending (self, msg)))
        if (store_flush (self, db)) {
            cm_message_destroy (&msg);
            return -1;
        }
    pending_t *p = &self->items [self->n];
    memset (p, 0, sizeof *p);
    p->row = message_row;
    if (!msg) {
        p->reason = strdup (reason && *reason ? reason : "the message could not be parsed");
        if (!p->reason)
            return -1;
        self->n++;
        return 0;
    }
    const char *flags [8];
    size_t nflags = 0;
    bool own = *route->email && strcasecmp (msg->from_addr, route->email) == 0;
    if (msg->auto_reply)
        flags [nflags++] = "auto-reply";
    if (msg->dsn)
        flags [nflags++] = "bounce";
    if (own)
        flags [nflags++] = "own-address";
    if (msg->signed_)
        flags [nflags++] = "signed";
    bool automatic = msg->auto_reply || msg->dsn || own;

    long long incident = 0;
    const char *by = NULL;
    if (strcmp (route->kind, "two-way") == 0 || automatic) {
        incident = thread_match (db, route, msg, &by);
        if (incident < 0) {
            cm_message_destroy (&msg);
            return -1;
        }
    }
    if (incident)
        flags [nflags++] = "reply";
    if (msg->dsn && msg->dsn_original_message_id && s_bounce (db, msg)) {
        cm_message_destroy (&msg);
        return -1;
    }
    p->open = !incident && !automatic;
    p->automatic = automatic;
    p->incident = incident;
    p->route = route->id;
    s_flags_literal (flags, nflags, p->flags, sizeof p->flags);
    char note [600] = "";
    if (automatic && !incident)
        snprintf (note, sizeof note, "%s: stored without an incident",
                  msg->auto_reply ? (msg->auto_reason ? msg->auto_reason : "automatic reply")
                  : msg->dsn ? "delivery status report" : "mail from the route's own address");
    else if (by)
        snprintf (note, sizeof note, "reply matched by %s", by);
    cm_text_scrub (note);           /* an auto-reply's reason, cut */
    size_t rlen = strlen (msg->from_name) + strlen (msg->from_addr) + 4;
    p->reporter = malloc (rlen);
    p->reason = *note ? strdup (note) : NULL;
    if (!p->reporter || (*note && !p->reason)) {
        free (p->reporter);
        free (p->reason);
        cm_message_destroy (&msg);
        return -1;
    }
    if (*msg->from_name)
        snprintf (p->reporter, rlen, "%s <%s>", msg->from_name, msg->from_addr);
    else
        snprintf (p->reporter, rlen, "%s", msg->from_addr);
    /* attachments hang from the timeline entry: only with one */
    p->natt = p->open || incident ? s_count_attachments (msg) : 0;
    p->msg = msg;
    self->bytes += s_bytes (msg, true);
    self->n++;
    return 0;
}
