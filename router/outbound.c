/*  router/outbound.c: incident email over the API: validate and queue an
    email in the outbox (in the same transaction as its timeline entry),
    and list the outbox. The sender stage builds and sends it. */
#include "router.h"
#include <stdio.h>

void
outbound_queue (router_t *self, cm_db_t *db, const char *incident,
                json_t *body, reply_t *r)
{
    (void) self;
    (void) db;
    (void) body;
    reply_error (r, 501, NULL, "sending email from %s is not available yet", incident);
}

void
outbound_list (cm_db_t *db, const char *id, const char *state, reply_t *r)
{
    (void) db;
    (void) id;
    (void) state;
    reply_error (r, 501, NULL, "the outbox is not available yet");
}
