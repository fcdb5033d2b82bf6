/*  fetcher/main.c: casemail-fetcher, the inbound stage. Every tick (and
    at once on a route event from the router) it compares the routes
    desired running with its route workers: starts a worker for a route
    whose lease is free, stops the worker of a route that was stopped,
    removed or changed, and joins workers that ended. */
#include "fetcher.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS_MAX 256

typedef struct {
    worker_t *workers [WORKERS_MAX];
    int nworkers;
} fetcher_t;

static fetcher_t s_fetcher;

static worker_t *
s_find (fetcher_t *self, long long id)
{
    for (int i = 0; i < self->nworkers; i++)
        if (self->workers [i]->route_id == id)
            return self->workers [i];
    return NULL;
}

static void
s_reconcile (cm_server_t *srv)
{
    fetcher_t *self = cm_server_state (srv);
    /* join finished workers */
    for (int i = 0; i < self->nworkers;) {
        if (atomic_load (&self->workers [i]->done)) {
            worker_destroy (&self->workers [i]);
            self->workers [i] = self->workers [--self->nworkers];
        }
        else
            i++;
    }
    if (!cm_server_db_ok (srv))
        return;
    char ns [16];
    snprintf (ns, sizeof ns, "%d", LEASE_NAMESPACE);
    const char *p [] = { ns };
    /* Routes desired running, and whether some session holds the lease. */
    PGresult *res = cm_db_query (cm_server_db (srv),
        "SELECT r.id, r.name, r.updated_at::text, EXISTS (SELECT 1 FROM pg_locks l"
        "  WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid"
        "  AND l.objid = r.id::int::oid AND l.objsubid = 2"
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
        " FROM routes r WHERE r.desired = 'running'", 1, p);
    if (!res)
        return;
    /* stop workers whose route is no longer wanted or changed */
    for (int i = 0; i < self->nworkers; i++) {
        worker_t *w = self->workers [i];
        bool wanted = false;
        for (int r = 0; r < PQntuples (res); r++)
            if (cm_db_get_ll (res, r, 0) == w->route_id
                && strcmp (cm_db_get (res, r, 2), w->version) == 0)
                wanted = true;
        if (!wanted && !w->stop) {
            cm_info (w->name, "route %s stopped or changed: releasing it", w->name);
            w->stop = 1;
        }
    }
    for (int r = 0; r < PQntuples (res); r++) {
        long long id = cm_db_get_ll (res, r, 0);
        bool held = strcmp (cm_db_get (res, r, 3), "t") == 0;
        if (held || s_find (self, id) || self->nworkers == WORKERS_MAX)
            continue;
        worker_t *w = worker_start (srv, id, cm_db_get (res, r, 1), cm_db_get (res, r, 2));
        if (w)
            self->workers [self->nworkers++] = w;
    }
    PQclear (res);
}

static void
s_event (cm_server_t *srv, const char *topic, json_t *payload)
{
    (void) payload;
    if (strcmp (topic, "route") == 0)
        s_reconcile (srv);
}

static void
s_stop (cm_server_t *srv)
{
    fetcher_t *self = cm_server_state (srv);
    for (int i = 0; i < self->nworkers; i++)
        self->workers [i]->stop = 1;
    for (int i = 0; i < self->nworkers; i++)
        worker_destroy (&self->workers [i]);
    self->nworkers = 0;
}

static void
s_counters (cm_server_t *srv, json_t *out)
{
    fetcher_t *self = cm_server_state (srv);
    int leased = 0;
    for (int i = 0; i < self->nworkers; i++)
        leased += atomic_load (&self->workers [i]->leased) && !atomic_load (&self->workers [i]->done);
    json_object_set_new (out, "routes", json_integer (leased));
    json_object_set_new (out, "fetched", json_integer ((json_int_t) atomic_load (&fetch_counters.fetched)));
    json_object_set_new (out, "duplicates", json_integer ((json_int_t) atomic_load (&fetch_counters.duplicates)));
    json_object_set_new (out, "too_big", json_integer ((json_int_t) atomic_load (&fetch_counters.too_big)));
    json_object_set_new (out, "errors", json_integer ((json_int_t) atomic_load (&fetch_counters.errors)));
}

int
main (int argc, char **argv)
{
    static const char *const topics [] = { "route", NULL };
    static const cm_server_hooks_t hooks = {
        .kind = "fetcher",
        .topics = topics,
        .event = s_event,
        .tick = s_reconcile,
        .tick_ms = 1000,
        .stop = s_stop,
        .counters = s_counters,
    };
    return cm_server_main (argc, argv, &hooks, &s_fetcher);
}
