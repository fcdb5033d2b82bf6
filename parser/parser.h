/*  parser/parser.h: the parser stage's pieces, private to the parser
    folder. main.c claims committed raw messages (FOR UPDATE SKIP LOCKED,
    so any number of parsers run side by side); store.c turns one parsed
    message into an incident or a timeline entry, in the claiming
    transaction; thread.c finds the incident a reply belongs to.
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

/* store.c: stores one message inside the open transaction. msg NULL means
   rejected with reason. 0 or -1 (database error: roll back). */
int store_message (cm_db_t *db, long long message_row, const route_info_t *route,
                   const cm_message_t *msg, const char *reason);
#endif
