/*  common/oauth.h: OAuth 2.0 client-credentials tokens from the Microsoft
    identity platform (v2.0 token endpoint), cached per route.

    One cm_oauth_t per route holds the settings and the cached token; it is
    thread-safe (a mutex guards the cache, and a fetch runs under it, so
    threads sharing a route fetch once). There is no refresh token in this
    flow: a token is asked for again before expires_in runs out, and after
    the resource server refused it (cm_oauth_invalidate).

    Ownership: cm_oauth_new copies its arguments; cm_oauth_token returns a
    malloc'd copy the caller frees. Errors: NULL / -1 with a reason a person
    can act on, naming the server's AADSTS code. The client secret and
    every token are registered with cm_log_secret and never logged. */
#ifndef CM_OAUTH_H
#define CM_OAUTH_H
#include <stdbool.h>
#include <stddef.h>

typedef struct _cm_oauth_t cm_oauth_t;   /* one per route: cache + settings */

/* authority: route's oauth_authority or NULL for the cloud's default sign-in
   host (global login.microsoftonline.com, china login.partner.microsoftonline.cn,
   germany login.microsoftonline.de, usgovernment login.microsoftonline.us);
   resource: "https://<EWS host>" for EWS (scope = resource + "/.default"); for
   IMAP/SMTP (Microsoft 365 without EWS) the cloud's outlook host (see
   cm_oauth_cloud_ews_host) unless the route sets exchange_host.
   national_cloud: global | china | germany | usgovernment | usgovernmentdod
   (NULL = global). NULL when an argument is missing or unusable (an
   authority that is not an https URL, an unknown cloud). */
cm_oauth_t *cm_oauth_new (const char *tenant, const char *client_id,
                          const char *client_secret, const char *national_cloud,
                          const char *authority, const char *resource,
                          const char *ca_file, bool verbose, const char *route);
void cm_oauth_destroy (cm_oauth_t **self_p);
/* A valid bearer token (malloc'd copy), fetched when none is cached or the
   cached one expires within 5 minutes (10% of its lifetime for short
   tokens); NULL with a reason such as "wrong client secret (AADSTS7000215)"
   or "token endpoint https://... unreachable: connection refused: ...". */
char *cm_oauth_token (cm_oauth_t *self, char *err, size_t errlen);
/* Forgets the cached token (after a 401 with error="invalid_token"). */
void cm_oauth_invalidate (cm_oauth_t *self);
/* How many tokens this object fetched (for tests and status). */
unsigned cm_oauth_fetches (cm_oauth_t *self);
/* The cloud's default EWS (outlook) host and sign-in host; NULL for an
   unknown cloud. NULL or "" means global. */
const char *cm_oauth_cloud_ews_host (const char *national_cloud);
const char *cm_oauth_cloud_login_host (const char *national_cloud);
/* Offline self-test: error JSON -> reason, expiry logic, cloud table. */
int cm_oauth_selftest (bool verbose);
#endif
