/*  common/bus.c: typed messages over ZeroMQ (see bus.h). */
#include "bus.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

int
cm_bus_send (zsock_t *sock, zframe_t *identity, const char *type, json_t *payload)
{
    json_t *empty = payload ? NULL : json_object ();
    char *text = json_dumps (payload ? payload : empty, JSON_COMPACT);
    json_decref (empty);
    if (!text)
        return -1;
    zmsg_t *msg = zmsg_new ();
    if (identity)
        zmsg_append (msg, &(zframe_t *) { zframe_dup (identity) });
    zmsg_addstr (msg, type);
    zmsg_addstr (msg, CM_BUS_VERSION);
    zmsg_addstr (msg, text);
    free (text);
    return zmsg_send (&msg, sock);
}

int
cm_bus_recv (zsock_t *sock, zframe_t **identity, char *type, size_t typelen,
             json_t **payload)
{
    zmsg_t *msg = zmsg_recv (sock);
    if (!msg)
        return -1;
    int rc = -1;
    zframe_t *id = NULL;
    if (identity) {
        id = zmsg_pop (msg);
        *identity = NULL;
    }
    char *t = zmsg_popstr (msg);
    char *v = zmsg_popstr (msg);
    char *p = zmsg_popstr (msg);
    if (!t || !v || !p || strcmp (v, CM_BUS_VERSION) != 0) {
        cm_warn (NULL, "bus: dropped a malformed message (type %s, version %s)",
                 t ? t : "?", v ? v : "?");
        goto done;
    }
    json_t *json = json_loads (p, 0, NULL);
    if (!json_is_object (json)) {
        cm_warn (NULL, "bus: dropped %s with a payload that is not a JSON object", t);
        json_decref (json);
        goto done;
    }
    snprintf (type, typelen, "%s", t);
    *payload = json;
    if (identity) {
        *identity = id;
        id = NULL;
    }
    rc = 0;
done:
    zframe_destroy (&id);
    free (t);
    free (v);
    free (p);
    zmsg_destroy (&msg);
    return rc;
}

int
cm_bus_heartbeat_ms (void)
{
    const char *v = getenv ("CASEMAIL_HEARTBEAT_MS");
    int ms = v ? atoi (v) : 0;
    return ms >= 50 ? ms : 1000;
}

int
cm_bus_test (bool verbose)
{
    (void) verbose;
    zsock_t *router = zsock_new_router ("inproc://cm-bus-test");
    zsock_t *dealer = zsock_new_dealer (">inproc://cm-bus-test");
    zsock_t *pair = zsock_new_pair ("@inproc://cm-bus-test-raw");
    zsock_t *pair2 = zsock_new_pair (">inproc://cm-bus-test-raw");
    int rc = -1;
    if (!router || !dealer || !pair || !pair2)
        goto done;
    zsock_set_rcvtimeo (router, 1000);
    zsock_set_rcvtimeo (dealer, 1000);
    zsock_set_rcvtimeo (pair, 1000);
    json_t *hello = json_pack ("{s:s, s:i}", "kind", "parser", "pid", 42);
    cm_bus_send (dealer, NULL, "READY", hello);
    json_decref (hello);
    zframe_t *id = NULL;
    json_t *got = NULL;
    char type [32];
    if (cm_bus_recv (router, &id, type, sizeof type, &got) || strcmp (type, "READY")
        || json_integer_value (json_object_get (got, "pid")) != 42) {
        json_decref (got);
        zframe_destroy (&id);
        goto done;
    }
    json_decref (got);
    cm_bus_send (router, id, "HEARTBEAT", NULL);
    zframe_destroy (&id);
    if (cm_bus_recv (dealer, NULL, type, sizeof type, &got) || strcmp (type, "HEARTBEAT"))
        goto done;
    json_decref (got);
    /* a wrong version is dropped, not trusted */
    zstr_sendx (pair2, "WAKE", "99", "{}", NULL);
    got = NULL;
    if (cm_bus_recv (pair, NULL, type, sizeof type, &got) == 0) {
        json_decref (got);
        goto done;
    }
    rc = 0;
done:
    zsock_destroy (&pair2);
    zsock_destroy (&pair);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    return rc;
}
