/*  common/route.h: an email route's settings, as one JSON document (the
    fields of the case manager's 2-Way Email settings, docs/API.md).
    This module validates and normalises a route (defaults, enums, ports,
    addresses, control characters), seals and opens its secrets, and
    derives the mail-server endpoints the stages connect to.
    Documents are jansson objects; functions returning json_t* give the
    caller a new reference. Validation errors name the field. */
#ifndef CM_ROUTE_H
#define CM_ROUTE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "mailserver.h"
#include "seal.h"

/* Merges changes into config (both JSON objects; config is modified),
   then validates the whole route. creating: a new route (name required).
   Secrets arrive in clear as "password" / "oauth_client_secret" and stay
   in config in clear until cm_route_seal(). On error: -1, a message in
   err and the offending field name in field (static string). */
int cm_route_apply (json_t *config, json_t *changes, bool creating,
                    char *err, size_t errlen, const char **field);
/* Replaces clear secrets by their sealed forms (*_sealed). 0 or -1. */
int cm_route_seal (json_t *config, cm_seal_t *seal);
/* Opens the sealed secrets back into "password" / "oauth_client_secret"
   and registers them for log redaction. 0 or -1 (key mismatch). */
int cm_route_unseal (json_t *config, cm_seal_t *seal);
/* A copy for the API: no secret in any form, "password_set" and
   "oauth_client_secret_set" booleans instead. */
json_t *cm_route_public (const json_t *config);
/* The account a mailbox login is, for the one-route-per-account rule:
   lower-case "username@host" of the inbound side. */
void cm_route_account (const json_t *config, char *out, size_t size);
/* Fills endpoints from config; strings point into config (borrowed). */
void cm_route_inbound (const json_t *config, cm_mailserver_t *srv);
void cm_route_outbound (const json_t *config, cm_mailserver_t *srv);
/* Field accessors with defaults. */
const char *cm_route_str (const json_t *config, const char *key);
/* The folder mail is moved to after its commit; NULL unless after_fetch
   is move. */
const char *cm_route_processed_folder (const json_t *config);
/* True, with why filled, when after_fetch move would put mail back into
   the route's own folder (fetched again as new mail, for ever): route add
   and set refuse it, and a fetcher will not run a route saved so before
   the refusal existed. */
bool cm_route_move_loops (const json_t *config, char *why, size_t whylen);
long long cm_route_int (const json_t *config, const char *key);
bool cm_route_bool (const json_t *config, const char *key);
/* True when an email address is syntactically acceptable (addr-spec,
   no display name, no control characters). */
bool cm_route_valid_address (const char *addr);
/* An address in the form mail can carry without SMTPUTF8: a domain in
   Unicode (bücher.example) becomes its A-label (xn--bcher-kva.example,
   IDNA2008); ASCII is copied as it is. -1 with why filled when it can't
   be: a non-ASCII part before the @, a domain IDNA refuses, or longer
   than outlen. The result still needs cm_route_valid_address. */
int cm_route_ascii_address (const char *addr, char *out, size_t outlen, char *why,
                            size_t whylen);
/* True for a calendar date YYYY-MM-DD from 1970 on that exists
   (not 2026-02-30). */
bool cm_route_valid_date (const char *text);
int cm_route_test (bool verbose);
#endif
