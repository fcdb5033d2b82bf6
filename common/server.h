/*  common/server.h: the one server skeleton every casemail process runs:
    options, configuration, logging, signals, the database (connected and
    migrated), the sealing key, the ZeroMQ bus and the zloop. A process's
    main.c states its hooks and calls cm_server_main().

    Stages (fetcher, parser, sender) connect a DEALER to the router's
    control socket, announce themselves with READY and heartbeat both ways
    (Paranoid Pirate: the router is lost after three silent intervals and
    the stage reconnects with capped backoff), and subscribe to the
    router's PUB socket for the topics they name. The router sets
    is_router and owns the bound sockets itself.

    The server owns everything it hands out; hooks borrow it. */
#ifndef CM_SERVER_H
#define CM_SERVER_H
#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include "config.h"
#include "db.h"
#include "seal.h"

typedef struct _cm_server_t cm_server_t;

typedef struct {
    const char *kind;          /* "router", "fetcher", "parser", "sender" */
    bool is_router;            /* no client bus: the router binds its own */
    const char *const *topics; /* PUB topics to subscribe, NULL-terminated */
    /* After setup, before the loop; -1 aborts start (exit 1). */
    int (*start) (cm_server_t *srv);
    /* On SIGTERM/SIGINT, before teardown: finish or release held work. */
    void (*stop) (cm_server_t *srv);
    /* A published message arrived on a subscribed topic. */
    void (*event) (cm_server_t *srv, const char *topic, json_t *payload);
    /* Called every tick_ms (periodic rescan of pending work). */
    void (*tick) (cm_server_t *srv);
    int tick_ms;
    /* Adds this stage's counters to each heartbeat. */
    void (*counters) (cm_server_t *srv, json_t *out);
} cm_server_hooks_t;

/* Runs the process: returns the exit code (0 clean stop, 1 failure,
   2 bad usage). state is handed back by cm_server_state(). */
int cm_server_main (int argc, char **argv, const cm_server_hooks_t *hooks, void *state);

void *cm_server_state (cm_server_t *srv);
const cm_config_t *cm_server_config (cm_server_t *srv);
cm_db_t *cm_server_db (cm_server_t *srv);
cm_seal_t *cm_server_seal (cm_server_t *srv);
zloop_t *cm_server_loop (cm_server_t *srv);
const char *cm_server_id (cm_server_t *srv);
/* Asks the router to wake every stage of that kind ("parser", "sender").
   Safe from any thread; wakes are coalesced. */
void cm_server_wake (cm_server_t *srv, const char *target);
/* For long work on the main thread (a batch of big messages): says the
   stage is alive, to the router (a heartbeat, at most one per interval)
   and to its watchdog, between units of work that each end. Main thread
   only. */
void cm_server_touch (cm_server_t *srv);
/* True once a stop signal arrived; worker threads poll it. */
bool cm_server_stopping (cm_server_t *srv);
/* Makes sure the main database connection is usable (reconnects after a
   PostgreSQL restart). */
bool cm_server_db_ok (cm_server_t *srv);
#endif
