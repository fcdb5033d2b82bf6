/*  common/server.c: the shared process skeleton (see server.h). */
#include "server.h"
#include "bus.h"
#include "log.h"
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define WAKE_PARSER 1u
#define WAKE_SENDER 2u
#define WAKE_FETCHER 4u
#define RECONNECT_MAX_MS 32000
#define WATCHDOG_MS 30000       /* CASEMAIL_WATCHDOG_MS; 0: none */

struct _cm_server_t {
    const cm_server_hooks_t *hooks;
    void *state;                /* the process's own context */
    const cm_config_t *cfg;
    cm_db_t *db;                /* main thread's connection */
    cm_seal_t *seal;
    zloop_t *loop;
    zsock_t *control;           /* DEALER to the router (stages) */
    zsock_t *events;            /* SUB to the router's PUB (stages) */
    int wake_fd;                /* eventfd: worker threads ask for wakes */
    atomic_uint wake_mask;      /* which kinds to wake */
    atomic_bool stopping;
    char id [128];              /* kind-host-pid */
    char host [64];
    time_t started_at;
    int64_t router_seen;        /* last time the router said anything */
    int reconnect_ms;           /* current reconnect backoff */
    int64_t reconnect_at;       /* when to reconnect, 0 = connected */
    _Atomic int64_t loop_seen;  /* the main loop's last heartbeat turn */
    long watchdog_ms;           /* limit of its silence, 0 = none */
    bool refused;               /* the database session is not its own: exit 1 */
};

void *cm_server_state (cm_server_t *srv) { return srv->state; }
const cm_config_t *cm_server_config (cm_server_t *srv) { return srv->cfg; }
cm_db_t *cm_server_db (cm_server_t *srv) { return srv->db; }
cm_seal_t *cm_server_seal (cm_server_t *srv) { return srv->seal; }
zloop_t *cm_server_loop (cm_server_t *srv) { return srv->loop; }
const char *cm_server_id (cm_server_t *srv) { return srv->id; }
bool cm_server_stopping (cm_server_t *srv) { return atomic_load (&srv->stopping) || zsys_interrupted; }

void
cm_server_wake (cm_server_t *srv, const char *target)
{
    unsigned bit = strcmp (target, "parser") == 0 ? WAKE_PARSER
                 : strcmp (target, "sender") == 0 ? WAKE_SENDER : WAKE_FETCHER;
    unsigned old = atomic_fetch_or (&srv->wake_mask, bit);
    if (!(old & bit)) {
        uint64_t one = 1;
        if (write (srv->wake_fd, &one, sizeof one) < 0) {
            /* eventfd full cannot happen with a counter; ignore */
        }
    }
}

/* A session that turns out not to be its own (a pooler handing out
   servers per transaction) ends the process at the loop's next turn,
   with the reason: going on would risk a route leased twice. */
bool
cm_server_db_ok (cm_server_t *srv)
{
    if (cm_db_alive (srv->db))
        return true;
    if (cm_db_foreign (srv->db) && !srv->refused) {
        srv->refused = true;
        cm_error (NULL, "database: %s", cm_db_error (srv->db));
    }
    return false;
}

static void
s_usage (const cm_server_hooks_t *hooks, FILE *out)
{
    fprintf (out,
        "usage: casemail-%s [--id NAME] [--help]\n"
        "  Configuration comes from the environment (CASEMAIL_HOME, CASEMAIL_DB,\n"
        "  CASEMAIL_CONTROL, CASEMAIL_EVENTS, ...; see README.md).\n",
        hooks->kind);
}

/* Connects the stage's DEALER and SUB sockets (again after a loss). */
static int s_on_control (zloop_t *loop, zsock_t *sock, void *arg);
static int s_on_events (zloop_t *loop, zsock_t *sock, void *arg);

static void
s_send_heartbeat (cm_server_t *srv, const char *type)
{
    json_t *hb = json_pack ("{s:s, s:s, s:i, s:s, s:I}",
        "id", srv->id, "kind", srv->hooks->kind, "pid", (int) getpid (),
        "host", srv->host, "started_at", (json_int_t) srv->started_at);
    json_t *counters = json_object ();
    if (srv->hooks->counters)
        srv->hooks->counters (srv, counters);
    json_object_set_new (hb, "counters", counters);
    cm_bus_send (srv->control, NULL, type, hb);
    json_decref (hb);
}

static int
s_connect_bus (cm_server_t *srv)
{
    zsock_destroy (&srv->control);
    zsock_destroy (&srv->events);
    srv->control = zsock_new (ZMQ_DEALER);
    srv->events = zsock_new (ZMQ_SUB);
    if (!srv->control || !srv->events)
        return -1;
    zsock_set_linger (srv->control, 0);
    zsock_set_sndhwm (srv->control, 1000);
    if (zsock_connect (srv->control, "%s", srv->cfg->control)
        || zsock_connect (srv->events, "%s", srv->cfg->events)) {
        cm_error (NULL, "bus: cannot connect to %s / %s", srv->cfg->control, srv->cfg->events);
        return -1;
    }
    for (const char *const *t = srv->hooks->topics; t && *t; t++)
        zsock_set_subscribe (srv->events, *t);
    zloop_reader (srv->loop, srv->control, s_on_control, srv);
    zloop_reader (srv->loop, srv->events, s_on_events, srv);
    srv->router_seen = zclock_mono ();
    s_send_heartbeat (srv, "READY");
    return 0;
}

static int
s_on_control (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void) loop;
    cm_server_t *srv = arg;
    char type [32];
    json_t *payload = NULL;
    if (cm_bus_recv (sock, NULL, type, sizeof type, &payload) == 0) {
        srv->router_seen = zclock_mono ();
        srv->reconnect_ms = 1000;
        json_decref (payload);
    }
    return 0;
}

static int
s_on_events (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void) loop;
    cm_server_t *srv = arg;
    char topic [64];
    json_t *payload = NULL;
    if (cm_bus_recv (sock, NULL, topic, sizeof topic, &payload) == 0) {
        if (srv->hooks->event)
            srv->hooks->event (srv, topic, payload);
        json_decref (payload);
    }
    return 0;
}

/* Heartbeat timer: say we are alive; reconnect when the router is lost. */
static int
s_on_heartbeat (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    cm_server_t *srv = arg;
    if (srv->refused)
        return -1;
    int hb = cm_bus_heartbeat_ms ();
    int64_t now = zclock_mono ();
    atomic_store (&srv->loop_seen, now);
    if (srv->reconnect_at && now >= srv->reconnect_at) {
        srv->reconnect_at = 0;
        cm_info (NULL, "bus: reconnecting to the router");
        zloop_reader_end (srv->loop, srv->control);
        zloop_reader_end (srv->loop, srv->events);
        s_connect_bus (srv);
        return 0;
    }
    if (!srv->reconnect_at && now - srv->router_seen > 3 * hb) {
        cm_warn (NULL, "bus: router silent for %lld ms, reconnecting in %d ms",
                 (long long) (now - srv->router_seen), srv->reconnect_ms);
        srv->reconnect_at = now + srv->reconnect_ms;
        if (srv->reconnect_ms < RECONNECT_MAX_MS)
            srv->reconnect_ms *= 2;
        srv->router_seen = now + srv->reconnect_ms;
    }
    s_send_heartbeat (srv, "HEARTBEAT");
    return 0;
}

/* The watchdog thread: a stage whose main loop has not turned for
   watchdog_ms (a call that never returns: a database that stopped
   answering, a library caught in a loop) exits, so that whatever runs it
   starts it again: the router in local mode (which kills a stage silent
   for three heartbeats sooner), Docker's restart policy in containers,
   where nothing else would (the router too, there). Exit code 70
   (EX_SOFTWARE). */
static void *
s_watchdog (void *arg)
{
    cm_server_t *srv = arg;
    int64_t step = srv->watchdog_ms / 10 < 250 ? srv->watchdog_ms / 10 : 250;
    int64_t checked = zclock_mono ();
    while (!atomic_load (&srv->stopping)) {
        zclock_sleep ((int) step);
        int64_t now = zclock_mono ();
        if (now - checked > 4 * step + 1000) {
            /* the watchdog itself slept long: the whole process was
               frozen (SIGSTOP, docker pause), not its loop: start over */
            atomic_store (&srv->loop_seen, now);
        }
        checked = now;
        int64_t silent = now - atomic_load (&srv->loop_seen);
        if (silent > srv->watchdog_ms && !atomic_load (&srv->stopping)) {
            /* the main thread may hold the log's locks: no cm_error */
            cm_log_last_words ("%s: main loop stuck for %lld ms (CASEMAIL_WATCHDOG_MS %ld):"
                               " exiting so that it is restarted", srv->id,
                               (long long) silent, srv->watchdog_ms);
            _exit (70);
        }
    }
    return NULL;
}

void
cm_server_touch (cm_server_t *srv)
{
    int64_t now = zclock_mono ();
    if (srv->hooks->is_router || now - atomic_load (&srv->loop_seen) < cm_bus_heartbeat_ms ())
        return;
    atomic_store (&srv->loop_seen, now);
    if (!srv->reconnect_at)
        s_send_heartbeat (srv, "HEARTBEAT");
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    cm_server_t *srv = arg;
    if (srv->refused)
        return -1;
    if (srv->hooks->tick)
        srv->hooks->tick (srv);
    if (srv->refused)
        return -1;
    atomic_store (&srv->loop_seen, zclock_mono ());   /* the loop turned (the router's
                                                         only turn: it has no heartbeat) */
    return 0;
}

/* Worker threads asked for wakes: forward them to the router. */
static int
s_on_wake_fd (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    (void) item;
    cm_server_t *srv = arg;
    uint64_t n;
    if (read (srv->wake_fd, &n, sizeof n) < 0)
        return 0;
    unsigned mask = atomic_exchange (&srv->wake_mask, 0);
    static const struct { unsigned bit; const char *name; } kinds [] = {
        { WAKE_PARSER, "parser" }, { WAKE_SENDER, "sender" }, { WAKE_FETCHER, "fetcher" } };
    for (size_t i = 0; i < 3; i++)
        if (mask & kinds [i].bit) {
            json_t *w = json_pack ("{s:s}", "target", kinds [i].name);
            if (srv->control)
                cm_bus_send (srv->control, NULL, "WAKE", w);
            else if (srv->hooks->event) {
                /* the router wakes through its own hook */
                char topic [64];
                snprintf (topic, sizeof topic, "wake.%s", kinds [i].name);
                srv->hooks->event (srv, topic, w);
            }
            json_decref (w);
        }
    return 0;
}

/* Connects to PostgreSQL, retrying while it is not up yet. */
static cm_db_t *
s_connect_db (cm_server_t *srv)
{
    char err [512];
    char name [64];
    snprintf (name, sizeof name, "casemail-%s", srv->hooks->kind);
    int delay = 250;
    for (int attempt = 0; !zsys_interrupted; attempt++) {
        cm_db_t *db = cm_db_connect (srv->cfg->db, name, err, sizeof err);
        if (!db && cm_db_refused (err)) {
            cm_error (NULL, "%s", err);    /* connecting again would not help */
            return NULL;
        }
        if (db) {
            if (cm_db_migrate (db, err, sizeof err) == 0)
                return db;
            cm_error (NULL, "%s", err);
            cm_db_destroy (&db);
            return NULL;
        }
        if (attempt == 0 || attempt % 20 == 0)
            cm_warn (NULL, "%s (retrying)", err);
        zclock_sleep (delay);
        if (delay < 4000)
            delay *= 2;
    }
    return NULL;
}

int
cm_server_main (int argc, char **argv, const cm_server_hooks_t *hooks, void *state)
{
    static const struct option opts [] = {
        { "id", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 } };
    char id_opt [96] = "";
    int c;
    opterr = 0;
    while ((c = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            snprintf (id_opt, sizeof id_opt, "%s", optarg);
            break;
        case 'h':
            s_usage (hooks, stdout);
            return 0;
        default:
            fprintf (stderr, "casemail-%s: unknown option %s\n", hooks->kind,
                     argv [optind - 1]);
            s_usage (hooks, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "casemail-%s: unexpected argument %s\n", hooks->kind, argv [optind]);
        return 2;
    }
    char process [64];
    snprintf (process, sizeof process, "casemail-%s", hooks->kind);
    cm_log_init (process, NULL);
    zsys_init ();
    zsys_set_logstream (NULL);

    cm_server_t *srv = calloc (1, sizeof *srv);
    if (!srv)
        return 1;
    srv->hooks = hooks;
    srv->state = state;
    srv->wake_fd = -1;
    srv->reconnect_ms = 1000;
    srv->started_at = time (NULL);
    gethostname (srv->host, sizeof srv->host - 1);
    if (*id_opt)
        snprintf (srv->id, sizeof srv->id, "%s", id_opt);
    else
        snprintf (srv->id, sizeof srv->id, "%s-%s-%d", hooks->kind, srv->host, (int) getpid ());
    int rc = 1;
    char err [512];
    pthread_t watchdog;
    bool watching = false;
    srv->cfg = cm_config_load (argv [0]);
    if (!srv->cfg || cm_config_mkdirs (srv->cfg)) {
        cm_error (NULL, "cannot use the state folder %s", srv->cfg ? srv->cfg->home : "?");
        goto done;
    }
    /* czmq's handler turns SIGTERM and SIGINT into a flag
       (zsys_interrupted) that ends the zloop. */
    zsys_catch_interrupts ();
    signal (SIGPIPE, SIG_IGN);

    srv->seal = cm_seal_new (srv->cfg->key_file, hooks->is_router, err, sizeof err);
    if (!srv->seal && !hooks->is_router) {
        /* stages may start before the router created the key: wait */
        for (int i = 0; i < 100 && !srv->seal && !zsys_interrupted; i++) {
            zclock_sleep (100);
            srv->seal = cm_seal_new (srv->cfg->key_file, false, err, sizeof err);
        }
    }
    if (!srv->seal) {
        cm_error (NULL, "%s", err);
        goto done;
    }
    srv->db = s_connect_db (srv);
    if (!srv->db)
        goto done;
    srv->loop = zloop_new ();
    srv->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    zmq_pollitem_t item = { NULL, srv->wake_fd, ZMQ_POLLIN, 0 };
    zloop_poller (srv->loop, &item, s_on_wake_fd, srv);
    if (!hooks->is_router) {
        if (s_connect_bus (srv))
            goto done;
        zloop_timer (srv->loop, (size_t) cm_bus_heartbeat_ms (), 0, s_on_heartbeat, srv);
    }
    /* the watchdog, for stages (their loop turns at least every heartbeat),
       from before their start hook; its limit is at least three heartbeats.
       A router watches itself only when it runs no stages (containers):
       in local mode its exit would take the stack's supervisor with it,
       and nothing would start it again. */
    if (!hooks->is_router || !srv->cfg->local) {
        int hb = cm_bus_heartbeat_ms ();
        const char *off = getenv ("CASEMAIL_WATCHDOG_MS");
        srv->watchdog_ms = off && strcmp (off, "0") == 0 ? 0
                         : cm_config_env ("CASEMAIL_WATCHDOG_MS", WATCHDOG_MS);
        /* at least three turns: heartbeats, or the router's ticks */
        long turn = hooks->is_router && hooks->tick_ms > hb ? hooks->tick_ms : hb;
        if (srv->watchdog_ms > 0 && srv->watchdog_ms < 3L * turn)
            srv->watchdog_ms = 3L * turn;
        atomic_store (&srv->loop_seen, zclock_mono ());
        watching = srv->watchdog_ms > 0
                   && pthread_create (&watchdog, NULL, s_watchdog, srv) == 0;
    }
    if (hooks->start && hooks->start (srv))
        goto done;
    if (hooks->tick)
        zloop_timer (srv->loop, (size_t) (hooks->tick_ms > 0 ? hooks->tick_ms : 1000),
                     0, s_on_tick, srv);
    cm_info (NULL, "%s started (%s)", srv->id, srv->cfg->home);
    zloop_start (srv->loop);
    atomic_store (&srv->stopping, true);
    cm_info (NULL, "%s stopping", srv->id);
    if (hooks->stop)
        hooks->stop (srv);
    rc = srv->refused ? 1 : 0;
done:
    atomic_store (&srv->stopping, true);
    if (watching)
        pthread_join (watchdog, NULL);
    zloop_destroy (&srv->loop);
    zsock_destroy (&srv->control);
    zsock_destroy (&srv->events);
    if (srv->wake_fd >= 0)
        close (srv->wake_fd);
    cm_db_destroy (&srv->db);
    cm_seal_destroy (&srv->seal);
    free (srv);
    return rc;
}
