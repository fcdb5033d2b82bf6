/*  common/bus.h: typed internal messages over ZeroMQ.
    A message is frames [TYPE][VERSION][JSON payload]; on the router's
    ROUTER socket an identity frame comes first, on the PUB socket TYPE is
    the topic ("route", "wake.parser", ...). Everything on the bus is a
    signal: losing it delays work, never loses data (the database is the
    record). Types: READY, HEARTBEAT, WAKE (stage -> router), HEARTBEAT
    (router -> stage), and published topics "route" (route started,
    stopped or changed) and "wake.<kind>". Payloads are borrowed on send
    and new references on receive. A malformed message from our own
    processes is logged and dropped. */
#ifndef CM_BUS_H
#define CM_BUS_H
#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>

#define CM_BUS_VERSION "1"

/* Sends [identity?][type][version][payload]. identity may be NULL. */
int cm_bus_send (zsock_t *sock, zframe_t *identity, const char *type, json_t *payload);
/* Receives one message. On success fills type, the identity frame (when
   identity is not NULL and the socket is a ROUTER) and payload; returns 0.
   Returns -1 for a malformed or wrong-version message (logged). */
int cm_bus_recv (zsock_t *sock, zframe_t **identity, char *type, size_t typelen,
                 json_t **payload);
/* Heartbeat interval (CASEMAIL_HEARTBEAT_MS, default 1000); a peer is
   lost after three intervals without a word. */
int cm_bus_heartbeat_ms (void);
int cm_bus_test (bool verbose);
#endif
