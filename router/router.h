/*  router/router.h: the route supervisor's shared context, private to the
    router folder. The router owns route configuration and status (in
    PostgreSQL), serves the HTTP API (api.c, handlers in routes.c and
    incidents.c), tracks stage heartbeats and relays wakes and route
    events over ZeroMQ (stages.c), and in local mode starts and supervises
    the stage processes (supervise.c). HTTP handlers run in libmicrohttpd
    threads: they take database connections from a small pool and publish
    through a mutex-guarded PUB socket. */
#ifndef CM_ROUTER_H
#define CM_ROUTER_H
#include <czmq.h>
#include <jansson.h>
#include <pthread.h>
#include "server.h"
#include "buf.h"

#define ROUTER_POOL_MAX 16
#define ROUTER_API_CONNS 64     /* open API connections at most */
#define LEASE_NAMESPACE 25453   /* advisory lock class of route leases ("cm") */

typedef struct _supervisor_t supervisor_t;

/* An open API connection, so that one that sends no whole request in
   time can be closed (router_api_tick). */
typedef struct {
    bool used;
    int fd;                        /* its socket */
    time_t deadline;               /* whole request by then; 0: none (ours to answer) */
    bool expired;                  /* the deadline passed: its socket was shut down */
} api_conn_t;

typedef struct {
    cm_server_t *srv;
    zsock_t *control;              /* ROUTER: stages' DEALERs */
    zsock_t *pub;                  /* PUB: route events and wakes */
    pthread_mutex_t pub_lock;      /* HTTP threads publish too */
    struct MHD_Daemon *httpd;
    char token [80];               /* API bearer token */
    pthread_mutex_t pool_lock;
    cm_db_t *pool [ROUTER_POOL_MAX];  /* idle database connections */
    int npool;
    pthread_mutex_t stages_lock;
    json_t *stages;                /* id -> stage object (heartbeats) */
    supervisor_t *supervisor;      /* local mode, or NULL */
    pthread_mutex_t conns_lock;    /* HTTP threads and the tick */
    api_conn_t conns [ROUTER_API_CONNS];
    int request_seconds;           /* for a whole request (line, headers, body) */
} router_t;

/* An HTTP answer built by a handler. */
typedef struct {
    int status;                    /* HTTP status */
    json_t *body;                  /* JSON answer (owned), or NULL */
    char *raw;                     /* raw bytes answer (owned), or NULL */
    size_t rawlen;
    const char *raw_type;          /* content type of raw */
    const char *allow;             /* methods of the path, sent as Allow: (405) */
} reply_t;

/* api.c */
int router_api_start (router_t *self, char *err, size_t errlen);
void router_api_stop (router_t *self);
/* Closes the API connections past their deadline (the router's tick). */
void router_api_tick (router_t *self);
cm_db_t *router_db_get (router_t *self);          /* NULL: database down */
void router_db_put (router_t *self, cm_db_t *db);
void router_publish (router_t *self, const char *topic, json_t *payload);
void reply_json (reply_t *r, int status, json_t *body);   /* takes body */
void reply_error (reply_t *r, int status, const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
/* Formats a timestamptz text as RFC 3339 UTC; json null for NULL. */
json_t *json_time (const char *pg_time);

/* routes.c: /v1/routes..., /v1/test-... */
void routes_handle (router_t *self, const char *method, const char **parts,
                    int nparts, json_t *body, reply_t *r);
/* Marks RUNNING routes whose lease nobody holds as STARTING again. */
void routes_check_leases (router_t *self);

/* A request's query arguments (NULL when absent). */
typedef struct {
    const char *route, *state;
    const char *limit, *after;     /* a list's page (page_parse) */
} query_t;

/* incidents.c: /v1/incidents, /v1/inbox, /v1/attachments, /v1/outbox */
void incidents_handle (router_t *self, const char *method, const char **parts,
                       int nparts, const query_t *query, json_t *body, reply_t *r);

/* A list answers one page at a time, so that what the router holds for
   it is bounded whatever the database holds: at most limit items
   (1 to PAGE_MAX, default PAGE_MAX) whose key is greater than after
   (any key when absent), in key order, and "next", the key to ask after
   for the following page (null on the last one). The query compares
   with a plain "key > $n", which a cached generic plan can still use as
   an index bound. */
#define PAGE_MAX 1000
typedef struct {
    int limit;
    char limit_text [16];          /* limit + 1: the query's LIMIT */
    char after [32];               /* the lower bound (exclusive) */
} page_t;
/* 0, or -1 with a 400 naming the argument in r. */
int page_parse (const query_t *query, page_t *page, reply_t *r);
/* Answers {key: list, "next": ...} for a query run with LIMIT limit + 1,
   whose column keycol is the key; list holds the first limit rows.
   Takes list. */
void page_reply (reply_t *r, const char *key, json_t *list, const PGresult *res,
                 int keycol, const page_t *page);

/* An id in a path: digits only ("", " 5", "+5", "5x" are not) ->
   1..LLONG_MAX; 0 when not, or when too large for a bigint. */
long long api_id (const char *text);
/* "INC-42" or "42" -> 42; 0 when not an incident number. */
long long incident_number (const char *text);

/* outbound.c: queue incident email and show the outbox. */
void outbound_queue (router_t *self, cm_db_t *db, const char *incident,
                     json_t *body, reply_t *r);
void outbound_list (cm_db_t *db, const char *id, const query_t *query, reply_t *r);

/* stages.c */
int stages_start (router_t *self);
json_t *stages_list (router_t *self);             /* new reference */
void stages_expire (router_t *self);

/* supervise.c */
supervisor_t *supervisor_new (router_t *router);
void supervisor_destroy (supervisor_t **self_p);
void supervisor_check (supervisor_t *self);       /* reap, restart, kill lost */
void supervisor_stop_all (supervisor_t *self);
#endif
