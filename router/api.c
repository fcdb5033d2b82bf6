/*  router/api.c: the JSON HTTP API on 127.0.0.1 (docs/API.md).
    libmicrohttpd runs a thread per connection; each request is
    authenticated with the bearer token, its body gathered (capped: a
    chunked one past the cap is read to its end and dropped), then
    dispatched to routes.c or incidents.c. Also the database pool and the
    guarded publisher the handlers share. */
#include "router.h"
#include "bus.h"
#include "json.h"
#include "log.h"
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define BODY_MAX (64u * 1024 * 1024)   /* email with attachments */
#define REQUEST_SECONDS 30             /* default of CASEMAIL_API_REQUEST_SECONDS */
#define PATH_PARTS 8

typedef struct {
    cm_buf_t body;          /* request body gathered so far */
    bool started;           /* the first call (headers only) was seen */
    bool authorized;        /* the bearer token is right (401 if not) */
    bool over;              /* a chunked body went over BODY_MAX: the rest
                               is read and dropped, the answer is a 413 */
    const char *bad_uri;    /* why the raw URI is refused, or NULL */
} request_t;

cm_db_t *
router_db_get (router_t *self)
{
    cm_db_t *db = NULL;
    pthread_mutex_lock (&self->pool_lock);
    if (self->npool > 0)
        db = self->pool [--self->npool];
    pthread_mutex_unlock (&self->pool_lock);
    if (db && !cm_db_alive (db))
        cm_db_destroy (&db);
    if (!db) {
        char err [512];
        db = cm_db_connect (cm_server_config (self->srv)->db, "casemail-router-api",
                            err, sizeof err);
        if (!db)
            cm_warn (NULL, "api: %s", err);
    }
    return db;
}

void
router_db_put (router_t *self, cm_db_t *db)
{
    if (!db)
        return;
    /* a connection left inside a transaction is not reusable */
    if (PQtransactionStatus (cm_db_conn (db)) != PQTRANS_IDLE) {
        cm_db_destroy (&db);
        return;
    }
    pthread_mutex_lock (&self->pool_lock);
    if (self->npool < ROUTER_POOL_MAX) {
        self->pool [self->npool++] = db;
        db = NULL;
    }
    pthread_mutex_unlock (&self->pool_lock);
    cm_db_destroy (&db);
}

void
router_publish (router_t *self, const char *topic, json_t *payload)
{
    pthread_mutex_lock (&self->pub_lock);
    if (self->pub)
        cm_bus_send (self->pub, NULL, topic, payload);
    pthread_mutex_unlock (&self->pub_lock);
}

void
reply_json (reply_t *r, int status, json_t *body)
{
    json_decref (r->body);
    r->status = status;
    r->body = body;
}

void
reply_error (reply_t *r, int status, const char *field, const char *fmt, ...)
{
    char text [1024];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (text, sizeof text, fmt, ap);
    va_end (ap);
    json_t *body = json_pack ("{s:s}", "error", text);
    if (field && *field)
        json_object_set_new (body, "field", json_string (field));
    reply_json (r, status, body);
}

/* A whole number in text: digits, with a leading '-' when sign; the
   strto* functions would also take spaces and '+'. */
static bool
s_number_text (const char *text, bool sign)
{
    if (sign && *text == '-')
        text++;
    if (!*text)
        return false;
    for (; *text; text++)
        if (*text < '0' || *text > '9')
            return false;
    return true;
}

int
page_parse (const query_t *query, page_t *page, reply_t *r)
{
    page->limit = PAGE_MAX;
    long long after = LLONG_MIN;
    if (query->limit) {
        errno = 0;
        long n = s_number_text (query->limit, false) ? strtol (query->limit, NULL, 10) : 0;
        if (errno || n < 1 || n > PAGE_MAX) {
            reply_error (r, 400, "limit", "limit must be a number from 1 to %d, not '%s'",
                         PAGE_MAX, query->limit);
            return -1;
        }
        page->limit = (int) n;
    }
    if (query->after) {
        errno = 0;
        bool ok = s_number_text (query->after, true);
        if (ok)
            after = strtoll (query->after, NULL, 10);
        if (!ok || errno) {
            reply_error (r, 400, "after", "after must be the \"next\" of an earlier page"
                         " (a number), not '%s'", query->after);
            return -1;
        }
    }
    snprintf (page->after, sizeof page->after, "%lld", after);
    snprintf (page->limit_text, sizeof page->limit_text, "%d", page->limit + 1);
    return 0;
}

void
page_reply (reply_t *r, const char *key, json_t *list, const PGresult *res,
            int keycol, const page_t *page)
{
    json_t *next = PQntuples (res) > page->limit
                 ? json_integer (cm_db_get_ll (res, page->limit - 1, keycol)) : json_null ();
    reply_json (r, 200, json_pack ("{s:o, s:o}", key, list, "next", next));
}

json_t *
json_time (const char *pg_time)
{
    if (!pg_time)
        return json_null ();
    /* "2026-11-28 11:23:01.123456+00" -> "2026-11-28T11:23:01Z" */
    char out [40];
    snprintf (out, sizeof out, "%.10sT%.8sZ", pg_time, pg_time + 11);
    return json_string (out);
}

/* Constant-time comparison of the presented token. The scheme's name
   is case-insensitive (RFC 9110, 11.1): "bearer" is "Bearer". */
static bool
s_authorized (router_t *self, struct MHD_Connection *conn)
{
    const char *auth = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth || strncasecmp (auth, "Bearer ", 7) != 0)
        return false;
    const char *token = auth + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen (self->token);
    return strlen (token) == len && CRYPTO_memcmp (token, self->token, len) == 0;
}

/* Seconds on a clock that a change of the wall clock does not move (a
   step forward would close every open connection). */
static time_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* A connection opens or closes: it gets a slot whose deadline is for
   its first request. Without one, 64 connections that send a byte now
   and then (or nothing, for two minutes at a time) would hold every
   thread libmicrohttpd may start, and the API would answer no one. */
static void
s_conn_notify (void *cls, struct MHD_Connection *conn, void **socket_context,
               enum MHD_ConnectionNotificationCode code)
{
    router_t *self = cls;
    pthread_mutex_lock (&self->conns_lock);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info (conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        for (int i = 0; info && i < ROUTER_API_CONNS; i++)
            if (!self->conns [i].used) {
                self->conns [i] = (api_conn_t) {
                    true, info->connect_fd, s_now () + self->request_seconds, false
                };
                *socket_context = &self->conns [i];
                break;
            }
    }
    else if (*socket_context) {
        /* before libmicrohttpd closes the socket: the tick never shuts
           down a descriptor that is someone else's by then */
        ((api_conn_t *) *socket_context)->used = false;
        *socket_context = NULL;
    }
    pthread_mutex_unlock (&self->conns_lock);
}

/* conn's slot (s_conn_notify), or NULL; read it under conns_lock. */
static api_conn_t *
s_conn_slot (struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info (conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? (api_conn_t *) info->socket_context : NULL;
}

/* Sets the deadline of conn's slot: 0 while a request is ours to
   answer, seconds from now for the next one. */
static void
s_conn_deadline (router_t *self, struct MHD_Connection *conn, bool next)
{
    api_conn_t *slot = s_conn_slot (conn);
    pthread_mutex_lock (&self->conns_lock);
    if (slot)
        slot->deadline = next ? s_now () + self->request_seconds : 0;
    pthread_mutex_unlock (&self->conns_lock);
}

/* Whether the connection's deadline passed. A client that keeps
   sending is not stopped by the shutdown alone (the kernel still takes
   its bytes, and the thread reads them): the next piece of its body
   closes the connection from its own thread. */
static bool
s_conn_expired (router_t *self, struct MHD_Connection *conn)
{
    api_conn_t *slot = s_conn_slot (conn);
    pthread_mutex_lock (&self->conns_lock);
    bool expired = slot && slot->expired;
    pthread_mutex_unlock (&self->conns_lock);
    return expired;
}

void
router_api_tick (router_t *self)
{
    time_t now = s_now ();
    int closed = 0;
    pthread_mutex_lock (&self->conns_lock);
    for (int i = 0; i < ROUTER_API_CONNS; i++) {
        api_conn_t *c = &self->conns [i];
        if (c->used && c->deadline && now >= c->deadline) {
            /* its thread reads the end of the stream and closes it */
            shutdown (c->fd, SHUT_RDWR);
            c->deadline = 0;
            c->expired = true;
            closed++;
        }
    }
    pthread_mutex_unlock (&self->conns_lock);
    if (closed)
        cm_info (NULL, "api: closed %d connection%s that sent no whole request in %d s",
                 closed, closed == 1 ? "" : "s", self->request_seconds);
}

static enum MHD_Result
s_send (struct MHD_Connection *conn, reply_t *r)
{
    struct MHD_Response *resp;
    if (r->raw) {
        resp = MHD_create_response_from_buffer (r->rawlen, r->raw, MHD_RESPMEM_MUST_FREE);
        r->raw = NULL;
        MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                 r->raw_type ? r->raw_type : "application/octet-stream");
    }
    else {
        char *text = cm_json_dumps (r->body ? r->body : json_object (), JSON_COMPACT);
        if (!text)
            text = strdup ("{}");
        size_t len = strlen (text);
        text = realloc (text, len + 2);
        text [len] = '\n';
        text [len + 1] = 0;
        resp = MHD_create_response_from_buffer (len + 1, text, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    }
    if (r->allow)
        MHD_add_response_header (resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    enum MHD_Result ret = MHD_queue_response (conn, (unsigned) r->status, resp);
    MHD_destroy_response (resp);
    json_decref (r->body);
    r->body = NULL;
    return ret;
}

/* The depth of pending work: messages waiting for a parser, email
   waiting for a sender. Nulls when the database is down. */
static json_t *
s_pending (router_t *self)
{
    cm_db_t *db = router_db_get (self);
    PGresult *res = db ? cm_db_query (db,
        "SELECT (SELECT count(*) FROM messages WHERE state = 'fetched'),"
        " (SELECT count(*) FROM outbox WHERE state IN ('queued', 'sending'))", 0, NULL) : NULL;
    json_t *out = res
        ? json_pack ("{s:I, s:I}", "parse", (json_int_t) cm_db_get_ll (res, 0, 0),
                     "send", (json_int_t) cm_db_get_ll (res, 0, 1))
        : json_pack ("{s:n, s:n}", "parse", "send");
    PQclear (res);
    router_db_put (self, db);
    return out;
}

/* Splits "/v1/routes/NAME/start" into parts after "v1"; -1 if not /v1. */
static int
s_split (char *path, const char **parts)
{
    int n = 0;
    char *save = NULL;
    char *tok = strtok_r (path, "/", &save);
    if (!tok || strcmp (tok, "v1"))
        return -1;
    while ((tok = strtok_r (NULL, "/", &save)) != NULL && n < PATH_PARTS)
        parts [n++] = tok;
    return n;
}

/* The API's paths (parts after /v1, "*" for a name or number) and the
   methods each takes, as its Allow: header says them. HEAD is GET
   without the body (RFC 9110, 9.3.2): libmicrohttpd sends GET's
   headers, Content-Length included, and no body. */
static const struct {
    const char *path;
    const char *allow;
} s_paths [] = {
    { "routes",                 "GET, HEAD, POST" },
    { "routes/*",               "GET, HEAD, PATCH, DELETE" },
    { "routes/*/start",         "POST" },
    { "routes/*/stop",          "POST" },
    { "routes/*/test-inbound",  "POST" },
    { "routes/*/test-outbound", "POST" },
    { "test-inbound",           "POST" },
    { "test-outbound",          "POST" },
    { "stages",                 "GET, HEAD" },
    { "incidents",              "GET, HEAD" },
    { "incidents/*",            "GET, HEAD" },
    { "incidents/*/email",      "POST" },
    { "attachments/*",          "GET, HEAD" },
    { "inbox",                  "GET, HEAD" },
    { "outbox",                 "GET, HEAD" },
    { "outbox/*",               "GET, HEAD" },
};

/* The Allow list of the path in parts, or NULL if the API has no such
   path (a 404 whatever the method). */
static const char *
s_path_allow (const char **parts, int nparts)
{
    for (size_t i = 0; i < sizeof s_paths / sizeof s_paths [0]; i++) {
        const char *p = s_paths [i].path;
        int n = 0;
        for (; n < nparts && *p; n++) {
            size_t len = strcspn (p, "/");
            if (!(len == 1 && *p == '*')
                && (strlen (parts [n]) != len || strncmp (parts [n], p, len)))
                break;
            p += len + (p [len] == '/');
        }
        if (n == nparts && !*p)
            return s_paths [i].allow;
    }
    return NULL;
}

/* Whether method is one of an Allow list ("GET, HEAD, POST"). Methods
   are case-sensitive (RFC 9110, 9.1). */
static bool
s_method_allowed (const char *allow, const char *method)
{
    size_t len = strlen (method);
    for (const char *p = allow; *p; ) {
        size_t n = strcspn (p, ",");
        if (n == len && strncmp (p, method, len) == 0)
            return true;
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return false;
}

/* Opens a request's state with a look at its URI as sent: libmicrohttpd
   decodes the path before s_handle sees it, so "%2F" would split a
   name into two path parts ("/v1/routes/a%2Fstart" started route a)
   and "%00" would end the path or a query value early
   ("/v1/routes/a%00x" was route a). Neither is in any name the API
   has. NULL out of memory (s_handle then closes the connection: a
   request whose URI was not looked at is never answered). */
static void *
s_uri_seen (void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void) cls;
    (void) conn;
    request_t *req = calloc (1, sizeof *req);
    if (!req)
        return NULL;
    cm_buf_init (&req->body, BODY_MAX);
    size_t pathlen = strcspn (uri, "?");
    for (const char *p = uri; (p = strchr (p, '%')) != NULL; p++) {
        if (p [1] == '0' && p [2] == '0') {
            req->bad_uri = "the request's URI has a percent-encoded NUL (%00)";
            break;
        }
        if ((size_t) (p - uri) < pathlen && p [1] == '2' && (p [2] == 'f' || p [2] == 'F')) {
            req->bad_uri = "the path has a percent-encoded '/' (%2F); no name in the API"
                           " holds one";
            break;
        }
    }
    return req;
}

/* What s_arg_check finds in the query arguments. */
typedef struct {
    const char *bad;        /* a name not UTF-8 text ("" if the name isn't) */
    const char *twice;      /* an argument the API reads, given twice */
    const char *bare;       /* an argument the API reads, given without a value */
    int seen [4];           /* how often each of s_args came */
} args_check_t;

static const char *const s_args [4] = { "route", "state", "limit", "after" };

/* MHD_KeyValueIterator: stops at a query argument that is not UTF-8
   text (PostgreSQL would refuse it with an error, a reply would lose
   the text quoting it), or at the second of an argument the API reads
   (?route=a&route=b was route a: which one counts must not depend on
   the server). */
static enum MHD_Result
s_arg_check (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void) kind;
    args_check_t *check = cls;
    if (!cm_utf8_valid (key, strlen (key)) || (value && !cm_utf8_valid (value, strlen (value)))) {
        check->bad = cm_utf8_valid (key, strlen (key)) ? key : "";
        return MHD_NO;
    }
    for (int i = 0; i < 4; i++) {
        if (strcmp (key, s_args [i]) != 0)
            continue;
        if (++check->seen [i] > 1) {
            check->twice = s_args [i];
            return MHD_NO;
        }
        if (!value) {       /* "?route" alone was no filter at all */
            check->bare = s_args [i];
            return MHD_NO;
        }
    }
    return MHD_YES;
}

/* Whether the request announces a body over BODY_MAX (Content-Length);
   libmicrohttpd has refused a Content-Length that is not a number. */
static bool
s_body_too_big (struct MHD_Connection *conn)
{
    const char *length = MHD_lookup_connection_value (conn, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!length)
        return false;
    errno = 0;
    unsigned long long n = strtoull (length, NULL, 10);
    return errno == ERANGE || n > BODY_MAX;
}

static enum MHD_Result
s_handle (void *cls, struct MHD_Connection *conn, const char *url,
          const char *method, const char *version, const char *upload,
          size_t *upload_size, void **con_cls)
{
    (void) version;
    router_t *self = cls;
    request_t *req = *con_cls;
    if (!req)
        return MHD_NO;      /* s_uri_seen ran out of memory: the connection closes */
    if (!req->started) {
        req->started = true;
        req->authorized = s_authorized (self, conn);
        if (s_body_too_big (conn)) {
            /* answered before the body: no "100 Continue", nothing of
               it read, and libmicrohttpd closes the connection after */
            s_conn_deadline (self, conn, false);
            reply_t r = { 413, NULL, NULL, 0, NULL, NULL };
            if (!req->authorized)
                reply_error (&r, 401, NULL, "missing or wrong bearer token");
            else
                reply_error (&r, 413, NULL, "request body over %u bytes", BODY_MAX);
            return s_send (conn, &r);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (s_conn_expired (self, conn))
            return MHD_NO;          /* its deadline passed: closed, no answer */
        /* A chunked body has no length to refuse it by before it comes,
           and libmicrohttpd 0.9.75 (Debian 12) queues no answer while a
           body comes in: the 413 waits for the body's end. Past the cap
           the rest is read and dropped, not kept, so memory stays at
           the cap; the connection's deadline (s_conn_deadline, still
           running) closes a body that never ends. A body without the
           token gets the 401 whatever it holds: none of it is kept. */
        if (req->authorized && !req->over
            && cm_buf_append (&req->body, upload, *upload_size)) {
            if (!req->body.overflow)
                return MHD_NO;      /* out of memory: closed without an answer */
            req->over = true;
            cm_buf_free (&req->body);
            cm_info (NULL, "api: a chunked body went over %u bytes: the rest is dropped,"
                     " the answer is a 413", BODY_MAX);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    /* the whole request is in: the time from here on is ours */
    s_conn_deadline (self, conn, false);
    reply_t r = { 404, NULL, NULL, 0, NULL, NULL };
    if (!req->authorized) {
        reply_error (&r, 401, NULL, "missing or wrong bearer token");
        return s_send (conn, &r);
    }
    if (req->over) {
        /* the body was read to its last chunk: the connection stays
           in step and open for the next request */
        reply_error (&r, 413, NULL, "request body over %u bytes", BODY_MAX);
        return s_send (conn, &r);
    }
    if (req->bad_uri) {
        reply_error (&r, 400, NULL, "%s", req->bad_uri);
        return s_send (conn, &r);
    }
    if (!cm_utf8_valid (url, strlen (url))) {
        reply_error (&r, 400, NULL, "the path is not valid UTF-8 once percent-decoded");
        return s_send (conn, &r);
    }
    args_check_t args = { NULL, NULL, NULL, { 0 } };
    MHD_get_connection_values (conn, MHD_GET_ARGUMENT_KIND, s_arg_check, &args);
    if (args.bad) {
        reply_error (&r, 400, *args.bad ? args.bad : NULL, "query argument %s is not valid UTF-8"
                     " once percent-decoded", *args.bad ? args.bad : "(its name)");
        return s_send (conn, &r);
    }
    if (args.twice) {
        reply_error (&r, 400, args.twice, "query argument %s is given twice", args.twice);
        return s_send (conn, &r);
    }
    if (args.bare) {
        reply_error (&r, 400, args.bare, "query argument %s has no value (%s=...)",
                     args.bare, args.bare);
        return s_send (conn, &r);
    }
    /* a path cut to fit would be another path ("/v1/routes/a/////...x"
       cut after the slashes was DELETE of route a) */
    char path [1024];
    if (strlen (url) >= sizeof path) {
        reply_error (&r, 414, NULL, "the path is longer than %zu bytes", sizeof path - 1);
        return s_send (conn, &r);
    }
    snprintf (path, sizeof path, "%s", url);
    const char *parts [PATH_PARTS] = { NULL };
    int nparts = s_split (path, parts);
    const char *allow = nparts >= 1 ? s_path_allow (parts, nparts) : NULL;
    if (!allow) {
        reply_error (&r, 404, NULL, "no such API path %s", url);
        return s_send (conn, &r);
    }
    if (!s_method_allowed (allow, method)) {
        r.allow = allow;
        /* a method is a token (RFC 9110, 5.6.2); quoted only if it is one */
        bool token = *method && method [strspn (method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~")] == 0 && strlen (method) <= 32;
        reply_error (&r, 405, NULL, "%s is not a method of %s: it takes %s",
                     token ? method : "that", url, allow);
        return s_send (conn, &r);
    }
    if (strcmp (method, "HEAD") == 0)
        method = "GET";     /* libmicrohttpd leaves the body out */
    /* Route fields may carry a \u0000 so that common/route.c refuses it
       naming the field (CR, LF, NUL); elsewhere it stays a JSON error. */
    bool route_call = nparts >= 1 && (strcmp (parts [0], "routes") == 0
                                      || strncmp (parts [0], "test-", 5) == 0);
    json_t *body = NULL;
    if (req->body.len) {
        json_error_t jerr;
        /* a key given twice is refused: which one counts would depend
           on the parser (jansson took the last "to", a proxy may check
           the first) */
        body = json_loadb (req->body.data, req->body.len,
                           JSON_REJECT_DUPLICATES | (route_call ? JSON_ALLOW_NUL : 0), &jerr);
        if (!body) {
            /* jansson's text names its own flag, of no use to a client */
            if (json_error_code (&jerr) == json_error_null_character)
                reply_error (&r, 400, NULL, "request body: a string holds a NUL (\\u0000),"
                             " which no field here takes");
            else
                reply_error (&r, 400, NULL, "request body is not valid JSON: %s", jerr.text);
            return s_send (conn, &r);
        }
    }
    /* the path and its method are known (s_paths) from here on */
    if (route_call)
        routes_handle (self, method, parts, nparts, body, &r);
    else if (strcmp (parts [0], "stages") == 0)
        reply_json (&r, 200, json_pack ("{s:o, s:o}", "stages", stages_list (self),
                                        "pending", s_pending (self)));
    else {
        query_t query = {
            MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "route"),
            MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "state"),
            MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "limit"),
            MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "after")
        };
        incidents_handle (self, method, parts, nparts, &query, body, &r);
    }
    json_decref (body);
    return s_send (conn, &r);
}

static void
s_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode code)
{
    (void) code;
    s_conn_deadline (cls, conn, true);
    request_t *req = *con_cls;
    if (req) {
        cm_buf_free (&req->body);
        free (req);
        *con_cls = NULL;
    }
}

/* Reads the token file, creating it (mode 0600) at first start. */
static int
s_load_token (router_t *self, const cm_config_t *cfg, char *err, size_t errlen)
{
    if (cm_config_read_file (cfg->token_file, self->token, sizeof self->token) == 0)
        return 0;
    unsigned char raw [32];
    if (RAND_bytes (raw, sizeof raw) != 1) {
        snprintf (err, errlen, "no random bytes for the API token");
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf (self->token + 2 * i, 3, "%02x", raw [i]);
    char line [80];
    snprintf (line, sizeof line, "%s\n", self->token);
    if (cm_config_write_file (cfg->token_file, line, 0600)) {
        snprintf (err, errlen, "cannot write the API token file %s", cfg->token_file);
        return -1;
    }
    return 0;
}

int
router_api_start (router_t *self, char *err, size_t errlen)
{
    const cm_config_t *cfg = cm_server_config (self->srv);
    if (s_load_token (self, cfg, err, errlen))
        return -1;
    self->request_seconds = (int) cm_config_env ("CASEMAIL_API_REQUEST_SECONDS", REQUEST_SECONDS);
    struct sockaddr_in addr;
    memset (&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons ((uint16_t) cfg->api_port);
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    self->httpd = MHD_start_daemon (
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD
        | MHD_USE_ERROR_LOG,
        0, NULL, NULL, s_handle, self,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
        MHD_OPTION_URI_LOG_CALLBACK, s_uri_seen, self,
        MHD_OPTION_NOTIFY_CONNECTION, s_conn_notify, self,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 120,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned) ROUTER_API_CONNS,
        MHD_OPTION_END);
    if (!self->httpd) {
        snprintf (err, errlen, "cannot listen on 127.0.0.1:%d for the API", cfg->api_port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->httpd,
                                                            MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : cfg->api_port;
    char url [128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d\n", port);
    if (cm_config_write_file (cfg->api_url_file, url, 0600)) {
        snprintf (err, errlen, "cannot write %s", cfg->api_url_file);
        return -1;
    }
    cm_info (NULL, "API listening on http://127.0.0.1:%d", port);
    return 0;
}

void
router_api_stop (router_t *self)
{
    if (self->httpd) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->httpd,
                                                                MHD_DAEMON_INFO_BIND_PORT);
        char mine [128], text [128];
        snprintf (mine, sizeof mine, "http://127.0.0.1:%d", info ? info->port : -1);
        MHD_stop_daemon (self->httpd);
        self->httpd = NULL;
        /* the URL file is ours only while it names our port */
        const char *file = cm_server_config (self->srv)->api_url_file;
        if (cm_config_read_file (file, text, sizeof text) == 0 && strcmp (text, mine) == 0)
            unlink (file);
    }
}
