/*  router/routes.c: route configuration and status over the API:
    add, change, remove, show, list, start, stop and the connection tests
    (docs/API.md). Settings are validated by common/route.c; secrets are
    sealed before they reach the database and never leave it in clear. */
#include "router.h"
#include "imap.h"
#include "log.h"
#include "route.h"
#include "route_ews.h"
#include "routeauth.h"
#include "smtp.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_COLUMNS \
    "r.id, r.name, r.config, r.desired, r.status, r.status_since, r.last_error," \
    " r.last_error_at, r.fail_count, r.created_at, r.updated_at," \
    " coalesce(c.fetched, 0), coalesce(c.parsed, 0), coalesce(c.rejected, 0)," \
    " coalesce(c.pending, 0), r.exchange_version_used"
#define ROUTE_FROM \
    " FROM routes r LEFT JOIN LATERAL (SELECT count(*) AS fetched," \
    " count(*) FILTER (WHERE state = 'parsed') AS parsed," \
    " count(*) FILTER (WHERE state = 'rejected') AS rejected," \
    " count(*) FILTER (WHERE state = 'fetched') AS pending" \
    " FROM messages m WHERE m.route_id = r.id) c ON true"

/* One result row as the API's ROUTE object. */
static json_t *
s_route_json (const PGresult *res, int row)
{
    json_t *config = json_loads (cm_db_get (res, row, 2), 0, NULL);
    json_t *out = cm_route_public (config ? config : json_object ());
    json_decref (config);
    json_object_set_new (out, "id", json_integer (cm_db_get_ll (res, row, 0)));
    json_object_set_new (out, "desired", json_string (cm_db_get (res, row, 3)));
    json_object_set_new (out, "status", json_string (cm_db_get (res, row, 4)));
    json_object_set_new (out, "status_since", json_time (cm_db_get (res, row, 5)));
    const char *err = cm_db_get (res, row, 6);
    json_object_set_new (out, "last_error", err ? json_string (err) : json_null ());
    json_object_set_new (out, "last_error_at", json_time (cm_db_get (res, row, 7)));
    json_object_set_new (out, "fail_count", json_integer (cm_db_get_ll (res, row, 8)));
    json_object_set_new (out, "counts", json_pack ("{s:I, s:I, s:I, s:I}",
        "fetched", (json_int_t) cm_db_get_ll (res, row, 11),
        "parsed", (json_int_t) cm_db_get_ll (res, row, 12),
        "rejected", (json_int_t) cm_db_get_ll (res, row, 13),
        "pending", (json_int_t) cm_db_get_ll (res, row, 14)));
    const char *vu = cm_db_get (res, row, 15);
    json_object_set_new (out, "exchange_version_used", vu ? json_string (vu) : json_null ());
    json_object_set_new (out, "created_at", json_time (cm_db_get (res, row, 9)));
    json_object_set_new (out, "updated_at", json_time (cm_db_get (res, row, 10)));
    return out;
}

/* Answers the route by name (200), or 404. */
static void
s_reply_route (cm_db_t *db, const char *name, int status, reply_t *r)
{
    const char *p [] = { name };
    PGresult *res = cm_db_query (db, "SELECT " ROUTE_COLUMNS ROUTE_FROM
                                 " WHERE r.name = $1", 1, p);
    if (!res)
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
    else if (PQntuples (res) == 0)
        reply_error (r, 404, NULL, "no route named %s", name);
    else
        reply_json (r, status, s_route_json (res, 0));
    PQclear (res);
}

static void
s_list (cm_db_t *db, reply_t *r)
{
    PGresult *res = cm_db_query (db, "SELECT " ROUTE_COLUMNS ROUTE_FROM
                                 " ORDER BY r.name", 0, NULL);
    if (!res) {
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        return;
    }
    json_t *list = json_array ();
    for (int i = 0; i < PQntuples (res); i++)
        json_array_append_new (list, s_route_json (res, i));
    PQclear (res);
    reply_json (r, 200, json_pack ("{s:o}", "routes", list));
}

/* Loads a route's stored config (sealed secrets). NULL + reply on error. */
static json_t *
s_load_config (cm_db_t *db, const char *name, long long *id, reply_t *r)
{
    const char *p [] = { name };
    PGresult *res = cm_db_query (db, "SELECT id, config FROM routes WHERE name = $1", 1, p);
    json_t *config = NULL;
    if (!res)
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
    else if (PQntuples (res) == 0)
        reply_error (r, 404, NULL, "no route named %s", name);
    else {
        if (id)
            *id = cm_db_get_ll (res, 0, 0);
        config = json_loads (cm_db_get (res, 0, 1), 0, NULL);
        if (!config)
            reply_error (r, 500, NULL, "route %s has an unreadable configuration", name);
    }
    PQclear (res);
    return config;
}

/* The one-route-per-account rule; 0 when free, -1 with a 409 reply. */
static int
s_check_account (cm_db_t *db, const char *account, const char *name, reply_t *r)
{
    const char *p [] = { account, name };
    PGresult *res = cm_db_query (db, "SELECT name FROM routes WHERE account = $1"
                                 " AND name <> $2", 2, p);
    if (!res) {
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        return -1;
    }
    int rc = 0;
    if (PQntuples (res) > 0) {
        reply_error (r, 409, "username",
            "the account %s is already used by route %s (a mailbox account may belong"
            " to one route only)", account, cm_db_get (res, 0, 0));
        rc = -1;
    }
    PQclear (res);
    return rc;
}

static void
s_publish_route (router_t *self, const char *name, const char *action)
{
    json_t *ev = json_pack ("{s:s, s:s}", "name", name, "action", action);
    router_publish (self, "route", ev);
    json_decref (ev);
}

/* POST /v1/routes and PATCH /v1/routes/NAME. */
static void
s_save (router_t *self, cm_db_t *db, const char *name, json_t *body, reply_t *r)
{
    bool creating = name == NULL;
    if (!json_is_object (body)) {
        reply_error (r, 400, NULL, "the request body must be a JSON object of route fields");
        return;
    }
    json_t *config;
    if (creating) {
        config = json_object ();
        name = json_string_value (json_object_get (body, "name"));
    }
    else {
        config = s_load_config (db, name, NULL, r);
        if (!config)
            return;
        const char *newname = json_string_value (json_object_get (body, "name"));
        if (newname && strcmp (newname, name)) {
            reply_error (r, 400, "name", "a route can't be renamed; add a new one");
            json_decref (config);
            return;
        }
    }
    char err [512];
    const char *field = NULL;
    if (cm_route_apply (config, body, creating, err, sizeof err, &field)) {
        reply_error (r, 400, field, "%s", err);
        json_decref (config);
        return;
    }
    name = cm_route_str (config, "name");
    char account [600];
    cm_route_account (config, account, sizeof account);
    if (s_check_account (db, account, name, r)
        || cm_route_seal (config, cm_server_seal (self->srv))) {
        if (r->status != 409 && r->status != 503)
            reply_error (r, 500, NULL, "cannot seal the route's secrets");
        json_decref (config);
        return;
    }
    char *text = json_dumps (config, JSON_COMPACT);
    const char *p [] = { name, text, account };
    PGresult *res = cm_db_query (db, creating
        ? "INSERT INTO routes (name, config, account) VALUES ($1, $2::jsonb, $3)"
          " ON CONFLICT DO NOTHING RETURNING id"
        : "UPDATE routes SET config = $2::jsonb, account = $3, updated_at = now()"
          " WHERE name = $1 RETURNING id", 3, p);
    free (text);
    if (!res)
        reply_error (r, 409, NULL, "route %s not saved: %s", name, cm_db_error (db));
    else if (PQntuples (res) == 0)
        reply_error (r, creating ? 409 : 404, "name", creating
                     ? "a route named %s exists already" : "no route named %s", name);
    else {
        cm_info (name, "route %s %s", name, creating ? "added" : "changed");
        if (!creating)
            s_publish_route (self, name, "changed");
        s_reply_route (db, name, creating ? 201 : 200, r);
    }
    PQclear (res);
    json_decref (config);
}

static void
s_remove (router_t *self, cm_db_t *db, const char *name, reply_t *r)
{
    const char *p [] = { name };
    PGresult *res = cm_db_query (db, "DELETE FROM routes WHERE name = $1 RETURNING id", 1, p);
    if (!res)
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
    else if (PQntuples (res) == 0)
        reply_error (r, 404, NULL, "no route named %s", name);
    else {
        cm_info (name, "route %s removed", name);
        s_publish_route (self, name, "removed");
        reply_json (r, 200, json_pack ("{s:s}", "deleted", name));
    }
    PQclear (res);
}

static void
s_start_stop (router_t *self, cm_db_t *db, const char *name, bool start, reply_t *r)
{
    const char *p [] = { name };
    /* Starting a running route changes nothing; stopping is at once: a
       fetcher only writes status while the route is desired running. */
    PGresult *res = cm_db_query (db, start
        ? "UPDATE routes SET desired = 'running', status = 'STARTING',"
          " status_since = now(), fail_count = 0, last_error = NULL, last_error_at = NULL"
          " WHERE name = $1 AND desired <> 'running' RETURNING id"
        : "UPDATE routes SET desired = 'stopped', status = 'STOPPED',"
          " status_since = now(), fail_count = 0"
          " WHERE name = $1 AND (desired <> 'stopped' OR status <> 'STOPPED') RETURNING id",
        1, p);
    if (!res) {
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        return;
    }
    if (PQntuples (res) > 0) {
        cm_info (name, "route %s %s", name, start ? "starting" : "stopped");
        s_publish_route (self, name, start ? "start" : "stop");
    }
    PQclear (res);
    s_reply_route (db, name, 200, r);
}

/* Runs a connection test on a route config with clear secrets. */
static void
s_test (const json_t *config, bool inbound, reply_t *r)
{
    char summary [512] = "", err [512] = "";
    int rc = -1;
    const char *name = cm_route_str (config, "name");
    if (cm_route_bool (config, "exchange"))
        rc = cm_route_ews_test (config, inbound, summary, sizeof summary, err, sizeof err);
    else {
        cm_mailserver_t srv;
        cm_oauth_t *oauth = NULL;      /* auth oauth2: SASL XOAUTH2/OAUTHBEARER */
        char *token = NULL;
        if (strcmp (cm_route_str (config, "auth"), "oauth2") == 0) {
            token = cm_route_oauth_token (config, &oauth, err, sizeof err);
            cm_oauth_destroy (&oauth);
            if (!token)
                goto tested;
        }
        if (inbound) {
            cm_route_inbound (config, &srv);
            srv.oauth_token = token;
            rc = cm_imap_test_route (&srv, cm_route_str (config, "folder"),
                                     cm_route_processed_folder (config), summary,
                                     sizeof summary, err, sizeof err);
        }
        else {
            cm_route_outbound (config, &srv);
            srv.oauth_token = token;
            rc = cm_smtp_test (&srv, summary, sizeof summary, err, sizeof err);
        }
        free (token);
    }
tested:
    if (rc == 0) {
        cm_info (name, "%s test passed: %s", inbound ? "inbound" : "outbound", summary);
        reply_json (r, 200, json_pack ("{s:b, s:s}", "ok", 1, "summary", summary));
    }
    else {
        cm_info (name, "%s test failed: %s", inbound ? "inbound" : "outbound", err);
        reply_json (r, 200, json_pack ("{s:b, s:s}", "ok", 0, "error", err));
    }
}

/* POST /v1/test-inbound|outbound: a route that is not saved. Fields of
   the other side are not needed for the test. */
static void
s_test_unsaved (const char *what, json_t *body, reply_t *r)
{
    bool inbound = strcmp (what, "test-inbound") == 0;
    if (!inbound && strcmp (what, "test-outbound")) {
        reply_error (r, 404, NULL, "no such API path /v1/%s", what);
        return;
    }
    if (!json_is_object (body)) {
        reply_error (r, 400, NULL, "the request body must be a JSON object of route fields");
        return;
    }
    json_t *config = json_object ();
    json_t *changes = json_deep_copy (body);
    if (!json_object_get (changes, "name"))
        json_object_set_new (changes, "name", json_string ("unsaved"));
    const char *other = inbound ? "outbound" : "inbound";
    char key [64];
    snprintf (key, sizeof key, "%s_host", other);
    if (!json_object_get (changes, key))
        json_object_set_new (changes, key, json_string ("unused.invalid"));
    snprintf (key, sizeof key, "%s_protocol", other);
    if (!json_object_get (changes, key))
        json_object_set_new (changes, key, json_string (inbound ? "smtp" : "imap"));
    char err [512];
    const char *field = NULL;
    if (cm_route_apply (config, changes, true, err, sizeof err, &field))
        reply_error (r, 400, field, "%s", err);
    else {
        const char *pw = cm_route_str (config, "password");
        if (pw)
            cm_log_secret (pw);
        s_test (config, inbound, r);
    }
    json_decref (changes);
    json_decref (config);
}

void
routes_handle (router_t *self, const char *method, const char **parts,
               int nparts, json_t *body, reply_t *r)
{
    bool get = strcmp (method, "GET") == 0, post = strcmp (method, "POST") == 0;
    if (strncmp (parts [0], "test-", 5) == 0) {
        s_test_unsaved (parts [0], body, r);    /* api.c let only POST through */
        return;
    }
    cm_db_t *db = router_db_get (self);
    if (!db) {
        reply_error (r, 503, NULL, "the database is not reachable");
        return;
    }
    const char *name = nparts > 1 ? parts [1] : NULL;
    if (nparts == 1 && get)
        s_list (db, r);
    else if (nparts == 1 && post)
        s_save (self, db, NULL, body, r);
    else if (nparts == 2 && get)
        s_reply_route (db, name, 200, r);
    else if (nparts == 2 && strcmp (method, "PATCH") == 0)
        s_save (self, db, name, body, r);
    else if (nparts == 2 && strcmp (method, "DELETE") == 0)
        s_remove (self, db, name, r);
    else if (nparts == 3 && post && (strcmp (parts [2], "start") == 0
                                     || strcmp (parts [2], "stop") == 0))
        s_start_stop (self, db, name, strcmp (parts [2], "start") == 0, r);
    else if (nparts == 3 && post && (strcmp (parts [2], "test-inbound") == 0
                                     || strcmp (parts [2], "test-outbound") == 0)) {
        json_t *config = s_load_config (db, name, NULL, r);
        router_db_put (self, db);
        db = NULL;
        if (config && cm_route_unseal (config, cm_server_seal (self->srv)))
            reply_error (r, 500, NULL, "the secrets of route %s can't be opened with this"
                         " install's key file", name);
        else if (config)
            s_test (config, strcmp (parts [2], "test-inbound") == 0, r);
        json_decref (config);
    }
    else
        reply_error (r, 404, NULL, "no such API call: %s /v1/routes/...", method);
    router_db_put (self, db);
}

void
routes_check_leases (router_t *self)
{
    cm_db_t *db = cm_server_db (self->srv);
    if (!cm_server_db_ok (self->srv))
        return;
    char ns [16];
    snprintf (ns, sizeof ns, "%d", LEASE_NAMESPACE);
    const char *p [] = { ns };
    cm_db_exec (db,
        "UPDATE routes SET status = 'STARTING', status_since = now()"
        " WHERE desired = 'running' AND status = 'RUNNING' AND NOT EXISTS"
        " (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
        "  AND l.classid = $1::int::oid AND l.objid = routes.id::int::oid"
        "  AND l.objsubid = 2"
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        1, p);
}
