/*  router/stages.c: the router's side of the bus. Binds the ROUTER
    control socket (stages' READY, HEARTBEAT and WAKE) and the PUB socket
    (route events, wakes), answers every heartbeat, and keeps the table of
    stages the API shows: kind, pid, uptime, last heartbeat, counters, and
    `lost` after three silent heartbeat intervals. */
#include "router.h"
#include "bus.h"
#include "log.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

#define FORGET_AFTER_S 300   /* a lost stage leaves the list after this */

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
s_record (router_t *self, json_t *payload)
{
    const char *id = json_string_value (json_object_get (payload, "id"));
    if (!id)
        return;
    pthread_mutex_lock (&self->stages_lock);
    json_t *stage = json_object_get (self->stages, id);
    if (!stage) {
        cm_info (NULL, "stage %s joined", id);
        stage = json_object ();
        json_object_set_new (self->stages, id, stage);
    }
    json_object_update (stage, payload);
    json_object_set_new (stage, "last_heartbeat", json_real (s_now ()));
    pthread_mutex_unlock (&self->stages_lock);
}

static int
s_on_control (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void) loop;
    router_t *self = arg;
    zframe_t *identity = NULL;
    json_t *payload = NULL;
    char type [32];
    if (cm_bus_recv (sock, &identity, type, sizeof type, &payload))
        return 0;
    if (strcmp (type, "READY") == 0 || strcmp (type, "HEARTBEAT") == 0) {
        s_record (self, payload);
        cm_bus_send (sock, identity, "HEARTBEAT", NULL);
    }
    else if (strcmp (type, "WAKE") == 0) {
        const char *target = json_string_value (json_object_get (payload, "target"));
        if (target && strlen (target) < 32) {
            char topic [48];
            snprintf (topic, sizeof topic, "wake.%s", target);
            router_publish (self, topic, payload);
        }
    }
    else
        cm_warn (NULL, "bus: unknown message type %s dropped", type);
    zframe_destroy (&identity);
    json_decref (payload);
    return 0;
}

int
stages_start (router_t *self)
{
    const cm_config_t *cfg = cm_server_config (self->srv);
    self->stages = json_object ();
    self->control = zsock_new (ZMQ_ROUTER);
    self->pub = zsock_new (ZMQ_PUB);
    if (!self->control || !self->pub)
        return -1;
    zsock_set_linger (self->control, 0);
    zsock_set_linger (self->pub, 0);
    /* A stale ipc socket file from a killed router would block bind. */
    if (strncmp (cfg->control, "ipc://", 6) == 0)
        unlink (cfg->control + 6);
    if (strncmp (cfg->events, "ipc://", 6) == 0)
        unlink (cfg->events + 6);
    if (zsock_bind (self->control, "%s", cfg->control) < 0
        || zsock_bind (self->pub, "%s", cfg->events) < 0) {
        cm_error (NULL, "bus: cannot bind %s or %s: %s", cfg->control, cfg->events,
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    zloop_reader (cm_server_loop (self->srv), self->control, s_on_control, self);
    return 0;
}

json_t *
stages_list (router_t *self)
{
    double now = s_now ();
    double lost_after = 3.0 * cm_bus_heartbeat_ms () / 1000.0;
    json_t *list = json_array ();
    pthread_mutex_lock (&self->stages_lock);
    const char *id;
    json_t *stage;
    json_object_foreach (self->stages, id, stage) {
        json_t *out = json_deep_copy (stage);
        double last = json_real_value (json_object_get (stage, "last_heartbeat"));
        json_int_t started = json_integer_value (json_object_get (stage, "started_at"));
        json_object_set_new (out, "state", json_string (now - last > lost_after ? "lost" : "alive"));
        json_object_set_new (out, "uptime_s", json_integer ((json_int_t) now - started));
        time_t t = (time_t) last;
        struct tm tm;
        gmtime_r (&t, &tm);
        char stamp [32];
        strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_object_set_new (out, "last_heartbeat", json_string (stamp));
        json_object_set_new (out, "heartbeat_age_s", json_real (now - last));
        t = (time_t) started;
        gmtime_r (&t, &tm);
        strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_object_set_new (out, "started_at", json_string (stamp));
        json_array_append_new (list, out);
    }
    pthread_mutex_unlock (&self->stages_lock);
    return list;
}

/* Forgets stages silent for long (their processes are gone). */
void
stages_expire (router_t *self)
{
    double now = s_now ();
    pthread_mutex_lock (&self->stages_lock);
    const char *id;
    json_t *stage;
    void *tmp;
    json_object_foreach_safe (self->stages, tmp, id, stage) {
        double last = json_real_value (json_object_get (stage, "last_heartbeat"));
        if (now - last > FORGET_AFTER_S)
            json_object_del (self->stages, id);
    }
    pthread_mutex_unlock (&self->stages_lock);
}
