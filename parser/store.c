/*  parser/store.c: one inbound message into the case manager's records,
    inside the parser's claiming transaction: a new incident, or a new
    entry on the timeline of the incident it answers, with attachments
    (attached mail to any depth, with its own attachments); automatic
    mail, delivery reports and mail from the route's own address are
    stored and flagged, linked where they match, and never open an
    incident. A delivery report that says an email we sent failed marks
    it bounced (a delay warning or a success report does not).
    Errors: -1 on a database error (the caller rolls back). */
#include "parser.h"
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

enum { A_ID, A_PARENT, A_DEPTH, A_FILENAME, A_CTYPE, A_CID, A_INLINE, A_NESTED, A_SIZE,
       A_SHA, A_NOTE, A_HEADERS, A_DATA, A_COLUMNS };

/* Adds the attachments of msg (under parent, 0 for none) to the arrays,
   each with the next of the ids drawn for the message, then those of
   each attached message under it. */
static void
s_flatten (cm_db_array_t **col, const cm_message_t *msg, long long parent, int depth,
           const long long *ids, size_t nids, size_t *next)
{
    for (size_t i = 0; i < msg->nattachments && *next < nids; i++) {
        const cm_attachment_t *a = &msg->attachments [i];
        const cm_message_t *nested = s_nested (msg, a);
        long long id = ids [(*next)++];
        char *headers = NULL;
        if (nested) {
            json_t *h = s_headers_json (nested);
            headers = json_dumps (h, JSON_COMPACT);
            json_decref (h);
        }
        cm_db_array_add_int8 (col [A_ID], id);
        if (parent)
            cm_db_array_add_int8 (col [A_PARENT], parent);
        else
            cm_db_array_add (col [A_PARENT], NULL, 0);
        cm_db_array_add_int8 (col [A_DEPTH], depth);
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
        if (nested)
            s_flatten (col, nested, id, depth + 1, ids, nids, next);
    }
}

/* Stores every attachment of the message, attached mail's own to any
   depth, in one statement, with the ids drawn for them beforehand (so a
   nested attachment names its parent without a round trip). */
static int
s_store_attachments (cm_db_t *db, const char *incident, const char *timeline,
                     const cm_message_t *msg, const long long *ids, size_t nids)
{
    if (nids == 0)
        return 0;
    static const unsigned int types [A_COLUMNS] = { CM_DB_INT8, CM_DB_INT8, CM_DB_INT8,
        CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_INT8,
        CM_DB_TEXT, CM_DB_TEXT, CM_DB_TEXT, CM_DB_BYTEA };
    cm_db_array_t *col [A_COLUMNS];
    for (int c = 0; c < A_COLUMNS; c++)
        col [c] = cm_db_array_new (types [c]);
    size_t next = 0;
    s_flatten (col, msg, 0, 0, ids, nids, &next);
    const char *values [2 + A_COLUMNS] = { incident, timeline };
    int lengths [2 + A_COLUMNS] = { 0 }, formats [2 + A_COLUMNS] = { 0 };
    bool ok = next == nids;
    for (int c = 0; c < A_COLUMNS; c++) {
        values [2 + c] = cm_db_array_data (col [c]);
        lengths [2 + c] = cm_db_array_len (col [c]);
        formats [2 + c] = 1;
        ok = ok && values [2 + c];
    }
    PGresult *res = NULL;
    if (ok)
        res = cm_db_query_binary (db,
            "INSERT INTO attachments (id, incident_id, timeline_id, parent_id, depth, filename,"
            " content_type, content_id, is_inline, is_message, size, sha256, note, headers, data)"
            " SELECT a.id, $1, $2, a.parent, a.depth, a.filename, a.ctype, a.cid,"
            "  a.inline::boolean, a.nested::boolean, a.size, a.sha, a.note, a.headers::jsonb,"
            "  a.data"
            " FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],"
            "  $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::text[],"
            "  $14::text[], $15::bytea[])"
            "  AS a (id, parent, depth, filename, ctype, cid, inline, nested, size, sha, note,"
            "  headers, data)", 2 + A_COLUMNS, values, lengths, formats, 0);
    for (int c = 0; c < A_COLUMNS; c++)
        cm_db_array_destroy (&col [c]);
    if (!res || strtoull (PQcmdTuples (res), NULL, 10) != nids) {
        cm_error (NULL, "database: storing %zu attachments: %s", nids,
                  res ? "not every row was stored" : ok ? cm_db_error (db) : "out of memory");
        PQclear (res);
        return -1;
    }
    PQclear (res);
    return 0;
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

/* Does a delivery report say the email failed? RFC 3464: Action "failed"
   is a bounce; "delayed", "delivered", "relayed" and "expanded" are not
   (a delay warning must not mark a sent email bounced). Without an
   Action field, a permanent status (5.x.x) counts as a failure; a report
   with neither (a bounce whose details we couldn't read) still does. */
static bool
s_dsn_failed (const cm_message_t *msg)
{
    if (msg->dsn_action && *msg->dsn_action)
        return strcasecmp (msg->dsn_action, "failed") == 0;
    if (msg->dsn_status && *msg->dsn_status)
        return msg->dsn_status [0] == '5';
    return true;
}

int
store_message (cm_db_t *db, long long message_row, const route_info_t *route,
               const cm_message_t *msg, const char *reason)
{
    char row [32];
    snprintf (row, sizeof row, "%lld", message_row);
    if (!msg) {
        const char *v [] = { row, reason && *reason ? reason : "the message could not be parsed" };
        atomic_fetch_add (&parse_counters.rejected, 1);
        return cm_db_exec (db, "UPDATE messages SET state = 'rejected', reason = $2,"
                           " parsed_at = now() WHERE id = $1", 2, v);
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
        if (incident < 0)
            return -1;
    }
    if (incident)
        flags [nflags++] = "reply";
    if (msg->dsn && msg->dsn_original_message_id && s_dsn_failed (msg)) {
        char why [512];
        snprintf (why, sizeof why, "bounced: %s%s%s", msg->dsn_status ? msg->dsn_status : "failed",
                  msg->dsn_recipient ? " for " : "", msg->dsn_recipient ? msg->dsn_recipient : "");
        const char *v [] = { msg->dsn_original_message_id, msg->dsn_status, why };
        if (cm_db_exec (db, "UPDATE outbox SET state = 'bounced', dsn_status = $2,"
                        " last_error = $3 WHERE message_id = $1", 3, v))
            return -1;
    }
    bool open = !incident && !automatic;
    char flagtext [256];
    s_flags_literal (flags, nflags, flagtext, sizeof flagtext);
    char note [600] = "";
    if (automatic && !incident)
        snprintf (note, sizeof note, "%s: stored without an incident",
                  msg->auto_reply ? (msg->auto_reason ? msg->auto_reason : "automatic reply")
                  : msg->dsn ? "delivery status report" : "mail from the route's own address");
    else if (by)
        snprintf (note, sizeof note, "reply matched by %s", by);
    char rid [32], inc [32], reporter [600], from [600];
    snprintf (from, sizeof from, "%s", msg->from_addr);
    snprintf (rid, sizeof rid, "%lld", route->id);
    snprintf (inc, sizeof inc, "%lld", incident);
    if (*msg->from_name)
        snprintf (reporter, sizeof reporter, "%s <%s>", msg->from_name, msg->from_addr);
    else
        snprintf (reporter, sizeof reporter, "%s", msg->from_addr);
    const char *title = *msg->subject ? msg->subject : "(no subject)";
    /* One statement: the incident (when the message opens one), its
       timeline entry, the Message-ID for threading, and the message's
       own state. RI checks run at the statement's end, so the entry may
       name the incident inserted beside it. */
    /* ids for the attachments, drawn here when the message gets a
       timeline entry (attachments hang from it) */
    size_t natt = open || incident ? s_count_attachments (msg) : 0;
    char nattext [32];
    snprintf (nattext, sizeof nattext, "%zu", natt);
    const char *v [] = { row, open ? "t" : "f", route->id ? rid : NULL, title, msg->text,
        reporter, incident ? inc : NULL, msg->message_id, from, msg->to, msg->cc,
        msg->subject, msg->date_text, msg->new_text, msg->quoted_text, msg->html, flagtext,
        *note ? note : NULL, nattext };
    PGresult *res = cm_db_query (db,
        "WITH i AS (INSERT INTO incidents (number, route_id, title, description, reporter,"
        "   source_message)"
        "  SELECT nextval('incident_number_seq'), $3::bigint, $4, $5, $6, $1::bigint"
        "  WHERE $2::boolean"
        "  RETURNING id),"
        " inc AS (SELECT coalesce((SELECT id FROM i), $7::bigint) AS id),"
        " t AS (INSERT INTO timeline (incident_id, direction, inbound_id, message_id, from_addr,"
        "   to_text, cc_text, subject, date_text, body_text, new_text, quoted_text, html, flags)"
        "  SELECT inc.id, 'in', $1, $8, $9, $10, $11, $12, $13, $5, $14, $15, $16, $17::text[]"
        "  FROM inc WHERE inc.id IS NOT NULL RETURNING id, incident_id),"
        " th AS (INSERT INTO thread_ids (message_id, incident_id)"
        "  SELECT $8, t.incident_id FROM t WHERE coalesce($8, '') <> ''"
        "  ON CONFLICT DO NOTHING),"
        " m AS (UPDATE messages SET state = 'parsed', subject = $12, from_addr = $9,"
        "  flags = $17::text[], incident_id = (SELECT id FROM inc), reason = $18,"
        "  parsed_at = now() WHERE id = $1)"
        " SELECT (SELECT id FROM inc), (SELECT id FROM t),"
        "  (SELECT array_agg(nextval('attachments_id_seq'))"
        "   FROM generate_series(1, $19::int))", 19, v);
    if (!res) {
        cm_error (NULL, "database: storing message %lld: %s", message_row, cm_db_error (db));
        return -1;
    }
    long long incident_id = cm_db_get_ll (res, 0, 0), timeline_id = cm_db_get_ll (res, 0, 1);
    long long *ids = natt && timeline_id ? calloc (natt, sizeof *ids) : NULL;
    if (natt && timeline_id && (!ids || s_parse_ids (cm_db_get (res, 0, 2), ids, natt))) {
        cm_error (NULL, "database: drawing %zu attachment ids for message %lld", natt,
                  message_row);
        free (ids);
        PQclear (res);
        return -1;
    }
    PQclear (res);
    if (open)
        atomic_fetch_add (&parse_counters.incidents, 1);
    else if (incident)
        atomic_fetch_add (&parse_counters.replies, 1);
    if (automatic)
        atomic_fetch_add (&parse_counters.flagged, 1);
    if (timeline_id) {
        char tl [32];
        snprintf (inc, sizeof inc, "%lld", incident_id);
        snprintf (tl, sizeof tl, "%lld", timeline_id);
        int rc = s_store_attachments (db, inc, tl, msg, ids, natt);
        free (ids);
        if (rc)
            return -1;
    }
    atomic_fetch_add (&parse_counters.parsed, 1);
    return 0;
}
