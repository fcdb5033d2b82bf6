/*  router/main.c: casemail-router, the route supervisor. Hooks for the
    shared server skeleton: bind the bus, serve the API, supervise local
    stages, and every second check route leases and stage liveness. */
#include "router.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

static router_t s_router = {
    .pub_lock = PTHREAD_MUTEX_INITIALIZER,
    .pool_lock = PTHREAD_MUTEX_INITIALIZER,
    .stages_lock = PTHREAD_MUTEX_INITIALIZER,
    .conns_lock = PTHREAD_MUTEX_INITIALIZER,
};

static int
s_start (cm_server_t *srv)
{
    router_t *self = cm_server_state (srv);
    self->srv = srv;
    const cm_config_t *cfg = cm_server_config (srv);
    char pid [32], path [700], err [512];
    /* One router per state folder: a second one would supervise a second
       set of stages and fight over the pid file. The lock dies with us. */
    snprintf (path, sizeof path, "%s/router.lock", cfg->run_dir);
    int lock = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock (lock, LOCK_EX | LOCK_NB)) {
        cm_error (NULL, "another casemail-router already runs for %s (%s)", cfg->home,
                  lock < 0 ? strerror (errno) : "router.lock is held");
        if (lock >= 0)
            close (lock);
        return -1;
    }
    snprintf (pid, sizeof pid, "%d\n", (int) getpid ());
    snprintf (path, sizeof path, "%s/router.pid", cfg->run_dir);
    cm_config_write_file (path, pid, 0644);
    if (stages_start (self))
        return -1;
    if (router_api_start (self, err, sizeof err)) {
        cm_error (NULL, "%s", err);
        return -1;
    }
    if (cfg->local)
        self->supervisor = supervisor_new (self);
    return 0;
}

static void
s_tick (cm_server_t *srv)
{
    router_t *self = cm_server_state (srv);
    router_api_tick (self);
    routes_check_leases (self);
    stages_expire (self);
    if (self->supervisor)
        supervisor_check (self->supervisor);
}

/* Wakes asked for by the router itself go straight out on PUB. */
static void
s_event (cm_server_t *srv, const char *topic, json_t *payload)
{
    router_publish (cm_server_state (srv), topic, payload);
}

static void
s_stop (cm_server_t *srv)
{
    router_t *self = cm_server_state (srv);
    router_api_stop (self);
    if (self->supervisor) {
        supervisor_stop_all (self->supervisor);
        supervisor_destroy (&self->supervisor);
    }
    pthread_mutex_lock (&self->pub_lock);
    zsock_destroy (&self->pub);
    pthread_mutex_unlock (&self->pub_lock);
    zsock_destroy (&self->control);
    for (int i = 0; i < self->npool; i++)
        cm_db_destroy (&self->pool [i]);
    self->npool = 0;
    json_decref (self->stages);
    self->stages = NULL;
    /* the pid file is ours only while it names us */
    char path [700], text [32];
    snprintf (path, sizeof path, "%s/router.pid", cm_server_config (srv)->run_dir);
    if (cm_config_read_file (path, text, sizeof text) == 0 && atoi (text) == (int) getpid ())
        unlink (path);
}

int
main (int argc, char **argv)
{
    static const cm_server_hooks_t hooks = {
        .kind = "router",
        .is_router = true,
        .start = s_start,
        .stop = s_stop,
        .tick = s_tick,
        .tick_ms = 500,
        .event = s_event,
    };
    return cm_server_main (argc, argv, &hooks, &s_router);
}
