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

/* Runs an INSERT ... RETURNING id; binary parameters where lengths[i] > 0
   for the given indexes. Returns the id, or -1. */
static long long
s_insert (cm_db_t *db, const char *sql, int n, const char *const *values,
          const int *lengths, const int *formats)
{
    PGresult *res = PQexecParams (cm_db_conn (db), sql, n, NULL, values, lengths,
                                  formats, 0);
    long long id = -1;
    if (PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1)
        id = cm_db_get_ll (res, 0, 0);
    else
        cm_error (NULL, "database: %s", PQresultErrorMessage (res));
    PQclear (res);
    return id;
}

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

static int
s_store_attachments (cm_db_t *db, const char *incident, const char *timeline,
                     const cm_message_t *msg, const char *parent, int depth)
{
    for (size_t i = 0; i < msg->nattachments; i++) {
        const cm_attachment_t *a = &msg->attachments [i];
        const cm_message_t *nested = (a->nested_index >= 0
                                      && (size_t) a->nested_index < msg->nnested)
                                     ? msg->nested [a->nested_index] : NULL;
        char size [32], dep [16];
        snprintf (size, sizeof size, "%zu", a->size);
        snprintf (dep, sizeof dep, "%d", depth);
        char *headers = NULL;
        if (nested) {
            json_t *h = s_headers_json (nested);
            headers = json_dumps (h, JSON_COMPACT);
            json_decref (h);
        }
        const char *values [] = { incident, timeline, parent, dep, a->filename,
            a->content_type, a->content_id, a->is_inline ? "t" : "f",
            nested ? "t" : "f", size, a->sha256, a->note, headers,
            (const char *) a->data };
        int lengths [14] = { 0 };
        int formats [14] = { 0 };
        lengths [13] = (int) a->size;
        formats [13] = 1;
        long long id = s_insert (db,
            "INSERT INTO attachments (incident_id, timeline_id, parent_id, depth, filename,"
            " content_type, content_id, is_inline, is_message, size, sha256, note, headers,"
            " data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb,"
            " $14) RETURNING id", 14, values, lengths, formats);
        free (headers);
        if (id < 0)
            return -1;
        if (nested) {
            char pid [32];
            snprintf (pid, sizeof pid, "%lld", id);
            if (s_store_attachments (db, incident, timeline, nested, pid, depth + 1))
                return -1;
        }
    }
    return 0;
}

/* Adds the message to an incident's timeline with its attachments. */
static int
s_timeline (cm_db_t *db, long long incident_id, long long message_row,
            const cm_message_t *msg, const char *flags)
{
    char inc [32], row [32];
    snprintf (inc, sizeof inc, "%lld", incident_id);
    snprintf (row, sizeof row, "%lld", message_row);
    const char *v [] = { inc, row, msg->message_id, msg->from_addr, msg->to, msg->cc,
                         msg->subject, msg->date_text, msg->text, msg->new_text,
                         msg->quoted_text, msg->html, flags };
    long long tid = s_insert (db,
        "INSERT INTO timeline (incident_id, direction, inbound_id, message_id, from_addr,"
        " to_text, cc_text, subject, date_text, body_text, new_text, quoted_text, html, flags)"
        " VALUES ($1, 'in', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text[])"
        " RETURNING id", 13, v, NULL, NULL);
    if (tid < 0)
        return -1;
    if (msg->message_id && *msg->message_id) {
        const char *t [] = { msg->message_id, inc };
        if (cm_db_exec (db, "INSERT INTO thread_ids (message_id, incident_id) VALUES ($1, $2)"
                        " ON CONFLICT DO NOTHING", 2, t))
            return -1;
    }
    char tl [32];
    snprintf (tl, sizeof tl, "%lld", tid);
    return s_store_attachments (db, inc, tl, msg, NULL, 0);
}

static long long
s_open_incident (cm_db_t *db, const route_info_t *route, long long message_row,
                 const cm_message_t *msg)
{
    char rid [32], row [32];
    snprintf (rid, sizeof rid, "%lld", route->id);
    snprintf (row, sizeof row, "%lld", message_row);
    char reporter [600];
    if (*msg->from_name)
        snprintf (reporter, sizeof reporter, "%s <%s>", msg->from_name, msg->from_addr);
    else
        snprintf (reporter, sizeof reporter, "%s", msg->from_addr);
    const char *title = *msg->subject ? msg->subject : "(no subject)";
    const char *v [] = { route->id ? rid : NULL, title, msg->text, reporter, row };
    return s_insert (db,
        "INSERT INTO incidents (number, route_id, title, description, reporter, source_message)"
        " VALUES (nextval('incident_number_seq'), $1, $2, $3, $4, $5) RETURNING id",
        5, v, NULL, NULL);
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
    if (!incident && !automatic) {
        incident = s_open_incident (db, route, message_row, msg);
        if (incident < 0)
            return -1;
        atomic_fetch_add (&parse_counters.incidents, 1);
    }
    else if (incident)
        atomic_fetch_add (&parse_counters.replies, 1);
    if (automatic)
        atomic_fetch_add (&parse_counters.flagged, 1);
    char flagtext [256];
    s_flags_literal (flags, nflags, flagtext, sizeof flagtext);
    if (incident && s_timeline (db, incident, message_row, msg, flagtext))
        return -1;
    char inc [32];
    snprintf (inc, sizeof inc, "%lld", incident);
    char note [600] = "";
    if (automatic && !incident)
        snprintf (note, sizeof note, "%s: stored without an incident",
                  msg->auto_reply ? (msg->auto_reason ? msg->auto_reason : "automatic reply")
                  : msg->dsn ? "delivery status report" : "mail from the route's own address");
    else if (by)
        snprintf (note, sizeof note, "reply matched by %s", by);
    char from [600];
    snprintf (from, sizeof from, "%s", msg->from_addr);
    const char *v [] = { row, msg->subject, from, flagtext, incident ? inc : NULL,
                         *note ? note : NULL };
    atomic_fetch_add (&parse_counters.parsed, 1);
    return cm_db_exec (db, "UPDATE messages SET state = 'parsed', subject = $2, from_addr = $3,"
                       " flags = $4::text[], incident_id = $5, reason = $6, parsed_at = now()"
                       " WHERE id = $1", 6, v);
}
