/*  router/incidents.c: incidents, their timelines and attachments, the
    inbound message list and the outbox over the API (docs/API.md).
    Read-only views of what the parser and sender stored, plus queuing of
    incident email (router/outbound.c builds the queue entry). */
#include "router.h"
#include "log.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Digits only ("", " 5", "+5", "5x" are not) -> 1..LLONG_MAX; 0 when
   not, or when too large for a bigint. strtoll would skip white space,
   take a sign and clamp an overflow to LLONG_MAX. */
long long
api_id (const char *text)
{
    long long n = 0;
    if (!text || !*text)
        return 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || n > (LLONG_MAX - (*p - '0')) / 10)
            return 0;
        n = n * 10 + (*p - '0');
    }
    return n;
}

/* "INC-42" (any case) or "42" -> 42; 0 when not an incident number. */
long long
incident_number (const char *text)
{
    if (!text)
        return 0;
    if (strncasecmp (text, "INC-", 4) == 0)
        text += 4;
    return api_id (text);
}

static json_t *
s_str (const PGresult *res, int row, int col)
{
    const char *v = cm_db_get (res, row, col);
    return v ? json_string (v) : json_null ();
}

/* Parses a PostgreSQL text[] literal ({a,b,"c d"}) into a JSON array. */
static json_t *
s_text_array (const char *lit)
{
    json_t *out = json_array ();
    if (!lit || *lit != '{')
        return out;
    const char *p = lit + 1;
    char item [256];
    while (*p && *p != '}') {
        size_t n = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p [1])
                    p++;
                if (n < sizeof item - 1)
                    item [n++] = *p;
                p++;
            }
            if (*p)
                p++;
        }
        else
            while (*p && *p != ',' && *p != '}') {
                if (n < sizeof item - 1)
                    item [n++] = *p;
                p++;
            }
        item [n] = 0;
        json_array_append_new (out, json_string (item));
        if (*p == ',')
            p++;
    }
    return out;
}

/* A list filtered by route names one that exists: a typo in --route
   must not look like a route without mail. 0, or -1 with r answered. */
static int
s_route_known (cm_db_t *db, const query_t *query, reply_t *r)
{
    if (!query->route)
        return 0;
    const char *p [] = { query->route };
    PGresult *res = cm_db_query (db, "SELECT 1 FROM routes WHERE name = $1", 1, p);
    int rc = 0;
    if (!res) {
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        rc = -1;
    }
    else if (PQntuples (res) == 0) {
        reply_error (r, 404, "route", "no route named '%s'", query->route);
        rc = -1;
    }
    PQclear (res);
    return rc;
}

static void
s_list (cm_db_t *db, const query_t *query, reply_t *r)
{
    page_t page;
    if (page_parse (query, &page, r) || s_route_known (db, query, r))
        return;
    const char *p [] = { query->route, page.after, page.limit_text };
    PGresult *res = cm_db_query (db,
        "SELECT i.id, i.number, i.title, i.reporter, r.name, i.status, i.created_at,"
        " (SELECT count(*) FROM timeline t WHERE t.incident_id = i.id)"
        " FROM incidents i LEFT JOIN routes r ON r.id = i.route_id"
        " WHERE ($1::text IS NULL OR r.name = $1)"
        " AND i.number > $2::bigint"
        " ORDER BY i.number LIMIT $3::int", 3, p);
    if (!res) {
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        return;
    }
    json_t *list = json_array ();
    for (int i = 0; i < PQntuples (res) && i < page.limit; i++) {
        char number [32];
        snprintf (number, sizeof number, "INC-%s", cm_db_get (res, i, 1));
        json_array_append_new (list, json_pack ("{s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:I}",
            "id", (json_int_t) cm_db_get_ll (res, i, 0), "number", number,
            "title", s_str (res, i, 2), "reporter", s_str (res, i, 3),
            "route", s_str (res, i, 4), "status", s_str (res, i, 5),
            "created_at", json_time (cm_db_get (res, i, 6)),
            "messages", (json_int_t) cm_db_get_ll (res, i, 7)));
    }
    page_reply (r, "incidents", list, res, 1, &page);
    PQclear (res);
}

static json_t *
s_attachments (cm_db_t *db, const char *column, const char *id)
{
    char sql [512];
    snprintf (sql, sizeof sql,
        "SELECT id, filename, content_type, size, sha256, note, is_inline, is_message,"
        " parent_id, depth, headers FROM attachments WHERE %s = $1 ORDER BY id", column);
    const char *p [] = { id };
    PGresult *res = cm_db_query (db, sql, 1, p);
    json_t *list = json_array ();
    for (int i = 0; res && i < PQntuples (res); i++) {
        json_t *a = json_pack ("{s:I, s:o, s:o, s:I, s:o, s:o, s:b, s:b, s:o, s:I}",
            "id", (json_int_t) cm_db_get_ll (res, i, 0),
            "filename", s_str (res, i, 1), "content_type", s_str (res, i, 2),
            "size", (json_int_t) cm_db_get_ll (res, i, 3), "sha256", s_str (res, i, 4),
            "note", s_str (res, i, 5),
            "inline", strcmp (cm_db_get (res, i, 6), "t") == 0,
            "nested", strcmp (cm_db_get (res, i, 7), "t") == 0,
            "parent_id", cm_db_get (res, i, 8) ? json_integer (cm_db_get_ll (res, i, 8)) : json_null (),
            "depth", (json_int_t) cm_db_get_ll (res, i, 9));
        const char *headers = cm_db_get (res, i, 10);
        json_t *h = headers ? json_loads (headers, 0, NULL) : NULL;
        json_object_set_new (a, "headers", h ? h : json_null ());
        json_array_append_new (list, a);
    }
    PQclear (res);
    return list;
}

static void
s_show (cm_db_t *db, const char *which, reply_t *r)
{
    long long number = incident_number (which);
    if (!number) {
        reply_error (r, 400, NULL, "'%s' is not an incident number (INC-n)", which);
        return;
    }
    char num [32];
    snprintf (num, sizeof num, "%lld", number);
    const char *p [] = { num };
    PGresult *res = cm_db_query (db,
        "SELECT i.id, i.number, i.title, i.reporter, r.name, i.status, i.created_at,"
        " i.description FROM incidents i LEFT JOIN routes r ON r.id = i.route_id"
        " WHERE i.number = $1::bigint", 1, p);
    if (!res || PQntuples (res) == 0) {
        if (res)
            reply_error (r, 404, NULL, "no incident INC-%lld", number);
        else
            reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        PQclear (res);
        return;
    }
    char id [32];
    snprintf (id, sizeof id, "%s", cm_db_get (res, 0, 0));
    char tag [32];
    snprintf (tag, sizeof tag, "INC-%lld", number);
    json_t *inc = json_pack ("{s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
        "id", (json_int_t) cm_db_get_ll (res, 0, 0), "number", tag,
        "title", s_str (res, 0, 2), "reporter", s_str (res, 0, 3),
        "route", s_str (res, 0, 4), "status", s_str (res, 0, 5),
        "created_at", json_time (cm_db_get (res, 0, 6)),
        "description", s_str (res, 0, 7));
    PQclear (res);
    const char *ip [] = { id };
    res = cm_db_query (db,
        "SELECT t.id, t.direction, t.message_id, t.from_addr, t.to_text, t.cc_text,"
        " t.subject, t.date_text, t.body_text, t.new_text, t.quoted_text, t.flags,"
        " t.created_at, o.state, o.id, o.last_error, o.smtp_reply, o.dsn_status, t.inbound_id"
        " FROM timeline t LEFT JOIN outbox o ON o.id = t.outbox_id"
        " WHERE t.incident_id = $1 ORDER BY t.id", 1, ip);
    json_t *timeline = json_array ();
    for (int i = 0; res && i < PQntuples (res); i++) {
        json_t *e = json_pack ("{s:I, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
                               " s:o, s:o, s:o}",
            "id", (json_int_t) cm_db_get_ll (res, i, 0),
            "direction", s_str (res, i, 1),
            "kind", strcmp (cm_db_get (res, i, 1), "out") == 0 ? "email" : "message",
            "message_id", s_str (res, i, 2), "from", s_str (res, i, 3),
            "to", s_str (res, i, 4), "cc", s_str (res, i, 5),
            "subject", s_str (res, i, 6), "date", s_str (res, i, 7),
            "text", s_str (res, i, 8), "new_text", s_str (res, i, 9),
            "quoted_text", s_str (res, i, 10),
            "flags", s_text_array (cm_db_get (res, i, 11)),
            "created_at", json_time (cm_db_get (res, i, 12)));
        if (cm_db_get (res, i, 14)) {
            json_object_set_new (e, "state", s_str (res, i, 13));
            json_object_set_new (e, "outbox_id", json_integer (cm_db_get_ll (res, i, 14)));
            json_object_set_new (e, "last_error", s_str (res, i, 15));
            json_object_set_new (e, "smtp_reply", s_str (res, i, 16));
            json_object_set_new (e, "dsn_status", s_str (res, i, 17));
            json_object_set_new (e, "attachments",
                                 s_attachments (db, "outbox_id", cm_db_get (res, i, 14)));
        }
        else
            json_object_set_new (e, "attachments",
                                 s_attachments (db, "timeline_id", cm_db_get (res, i, 0)));
        if (cm_db_get (res, i, 18))
            json_object_set_new (e, "inbound_id", json_integer (cm_db_get_ll (res, i, 18)));
        json_array_append_new (timeline, e);
    }
    PQclear (res);
    json_object_set_new (inc, "timeline", timeline);
    reply_json (r, 200, inc);
}

static void
s_attachment (cm_db_t *db, const char *which, reply_t *r)
{
    long long id = api_id (which);
    if (!id) {
        reply_error (r, 400, NULL, "'%s' is not an attachment id", which);
        return;
    }
    const char *p [] = { which };
    /* binary result: the bytes as stored, no bytea text escaping */
    PGresult *res = cm_db_query_binary (db,
        "SELECT data, content_type FROM attachments WHERE id = $1::bigint",
        1, p, NULL, NULL, 1);
    if (!res)
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
    else if (PQntuples (res) == 0)
        reply_error (r, 404, NULL, "no attachment %lld", id);
    else {
        size_t len = (size_t) PQgetlength (res, 0, 0);
        r->raw = malloc (len ? len : 1);
        if (r->raw) {
            memcpy (r->raw, PQgetvalue (res, 0, 0), len);
            r->rawlen = len;
            r->raw_type = "application/octet-stream";
            r->status = 200;
        }
        else
            reply_error (r, 500, NULL, "out of memory");
    }
    PQclear (res);
}

static void
s_inbox (cm_db_t *db, const query_t *query, reply_t *r)
{
    const char *state = query->state;
    if (state && strcmp (state, "fetched") && strcmp (state, "parsed")
        && strcmp (state, "rejected")) {
        reply_error (r, 400, "state", "unknown state '%s' (expected fetched, parsed or rejected)",
                     state);
        return;
    }
    page_t page;
    if (page_parse (query, &page, r) || s_route_known (db, query, r))
        return;
    const char *p [] = { query->route, state, page.after, page.limit_text };
    PGresult *res = cm_db_query (db,
        "SELECT m.id, r.name, m.folder, m.uid, m.state, m.reason, m.subject, m.from_addr,"
        " m.size, m.fetched_at, i.number, m.flags, m.message_id"
        " FROM messages m LEFT JOIN routes r ON r.id = m.route_id"
        " LEFT JOIN incidents i ON i.id = m.incident_id"
        " WHERE ($1::text IS NULL OR r.name = $1) AND ($2::text IS NULL OR m.state = $2)"
        " AND m.id > $3::bigint ORDER BY m.id LIMIT $4::int", 4, p);
    if (!res) {
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        return;
    }
    json_t *list = json_array ();
    for (int i = 0; i < PQntuples (res) && i < page.limit; i++) {
        char number [32] = "";
        if (cm_db_get (res, i, 10))
            snprintf (number, sizeof number, "INC-%s", cm_db_get (res, i, 10));
        json_array_append_new (list, json_pack (
            "{s:I, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o}",
            "id", (json_int_t) cm_db_get_ll (res, i, 0), "route", s_str (res, i, 1),
            "folder", s_str (res, i, 2), "uid", (json_int_t) cm_db_get_ll (res, i, 3),
            "state", s_str (res, i, 4), "reason", s_str (res, i, 5),
            "subject", s_str (res, i, 6), "from", s_str (res, i, 7),
            "size", (json_int_t) cm_db_get_ll (res, i, 8),
            "fetched_at", json_time (cm_db_get (res, i, 9)),
            "incident", *number ? json_string (number) : json_null (),
            "flags", s_text_array (cm_db_get (res, i, 11)),
            "message_id", s_str (res, i, 12)));
    }
    page_reply (r, "messages", list, res, 0, &page);
    PQclear (res);
}

void
incidents_handle (router_t *self, const char *method, const char **parts,
                  int nparts, const query_t *query, json_t *body, reply_t *r)
{
    cm_db_t *db = router_db_get (self);
    if (!db) {
        reply_error (r, 503, NULL, "the database is not reachable");
        return;
    }
    bool get = strcmp (method, "GET") == 0;
    if (strcmp (parts [0], "incidents") == 0 && nparts == 1 && get)
        s_list (db, query, r);
    else if (strcmp (parts [0], "incidents") == 0 && nparts == 2 && get)
        s_show (db, parts [1], r);
    else if (strcmp (parts [0], "incidents") == 0 && nparts == 3
             && strcmp (parts [2], "email") == 0 && strcmp (method, "POST") == 0)
        outbound_queue (self, db, parts [1], body, r);
    else if (strcmp (parts [0], "attachments") == 0 && nparts == 2 && get)
        s_attachment (db, parts [1], r);
    else if (strcmp (parts [0], "inbox") == 0 && nparts == 1 && get)
        s_inbox (db, query, r);
    else if (strcmp (parts [0], "outbox") == 0 && get && nparts <= 2)
        outbound_list (db, nparts == 2 ? parts [1] : NULL, query, r);
    else
        reply_error (r, 404, NULL, "no such API call: %s /v1/%s", method, parts [0]);
    router_db_put (self, db);
}
