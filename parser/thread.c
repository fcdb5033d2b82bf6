/*  parser/thread.c: which incident does an inbound message continue?
    In order (DESIGN.md, Threading of replies): In-Reply-To, then
    References (newest first), against Message-IDs the system sent or
    received for an incident of this route; a delivery report by the
    Message-ID of the returned message; then the subject tag [INC-n] of
    an incident of this route. */
#include "parser.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long long
s_by_message_id (cm_db_t *db, const route_info_t *route, const char *message_id)
{
    if (!message_id || !*message_id)
        return 0;
    char rid [32];
    snprintf (rid, sizeof rid, "%lld", route->id);
    const char *p [] = { message_id, rid };
    PGresult *res = cm_db_query (db,
        "SELECT t.incident_id FROM thread_ids t JOIN incidents i ON i.id = t.incident_id"
        " WHERE t.message_id = $1 AND i.route_id = $2 ORDER BY t.incident_id DESC LIMIT 1",
        2, p);
    if (!res)
        return -1;
    long long id = PQntuples (res) ? cm_db_get_ll (res, 0, 0) : 0;
    PQclear (res);
    return id;
}

long long
thread_match (cm_db_t *db, const route_info_t *route, const cm_message_t *msg,
              const char **by)
{
    *by = NULL;
    if (!route->id)
        return 0;
    long long id = s_by_message_id (db, route, msg->in_reply_to);
    if (id) {
        *by = "in-reply-to";
        return id;
    }
    for (size_t i = msg->nreferences; i-- > 0;) {
        id = s_by_message_id (db, route, msg->references [i]);
        if (id) {
            *by = "references";
            return id;
        }
    }
    if (msg->dsn && msg->dsn_original_message_id) {
        id = s_by_message_id (db, route, msg->dsn_original_message_id);
        if (id) {
            *by = "bounce";
            return id;
        }
    }
    long number = cm_subject_tag (msg->subject, "INC");
    if (number > 0) {
        char num [32], rid [32];
        snprintf (num, sizeof num, "%ld", number);
        snprintf (rid, sizeof rid, "%lld", route->id);
        const char *p [] = { num, rid };
        PGresult *res = cm_db_query (db, "SELECT id FROM incidents WHERE number = $1"
                                     " AND route_id = $2", 2, p);
        if (!res)
            return -1;
        id = PQntuples (res) ? cm_db_get_ll (res, 0, 0) : 0;
        PQclear (res);
        if (id) {
            *by = "subject tag";
            return id;
        }
    }
    return 0;
}
