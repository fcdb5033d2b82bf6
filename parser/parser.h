/*  parser/parser.h: the parser stage's pieces, private to the parser
    folder. main.c claims committed raw messages (FOR UPDATE SKIP LOCKED,
    so any number of parsers run side by side); store.c turns parsed
    messages into incidents or timeline entries, in the claiming
    transaction, a batch at a time; thread.c finds the incident a reply
    belongs to.
    message.c/quote.c are the database-free parsing library. */
#ifndef CM_PARSER_H
#define CM_PARSER_H
#include <stdatomic.h>
#include <stdbool.h>
#include "db.h"
#include "message.h"

typedef struct {
    atomic_ullong parsed;       /* messages stored as parsed */
    atomic_ullong rejected;     /* messages rejected with a reason */
    atomic_ullong incidents;    /* incidents opened */
    atomic_ullong replies;      /* messages added to an existing incident */
    atomic_ullong flagged;      /* automatic mail, bounces, own address */
} parse_counters_t;

extern parse_counters_t parse_counters;

/* The route facts the parser needs. */
typedef struct {
    long long id;               /* 0 when the route was removed */
    char kind [16];             /* two-way | ingest */
    char email [256];           /* the route's own address */
} route_info_t;

/* thread.c: the incident (id) a message answers on this route, or 0.
   Sets *by to how it matched ("in-reply-to", "references", "subject
   tag", "bounce"). -1 on database error. */
long long thread_match (cm_db_t *db, const route_info_t *route,
                        const cm_message_t *msg, const char **by);

/* store.c: a batch of messages stored inside the open transaction, in a
   few statements for the whole batch. store_add takes msg (NULL means
   rejected with reason); it may flush first: when the batch is full, holds
   STORE_BATCH_BYTES of decoded mail, or msg answers a message still in it
   (so threading sees that message's incident). store_flush stores what is
   pending. Both return 0 or -1 (database error: the caller calls
   store_batch_reset and rolls back). */
#define STORE_BATCH_MAX   32
#define STORE_BATCH_BYTES (16u << 20)
typedef struct store_batch_s store_batch_t;
store_batch_t *store_batch_new (void);
void store_batch_destroy (store_batch_t **self_p);
int store_add (store_batch_t *self, cm_db_t *db, long long message_row,
               const route_info_t *route, cm_message_t *msg, const char *reason);
int store_flush (store_batch_t *self, cm_db_t *db);
/* Drops what is pending and what was counted (after a rollback). */
void store_batch_reset (store_batch_t *self);
/* After the commit: adds what was stored to parse_counters. */
void store_batch_committed (store_batch_t *self);

#endif
