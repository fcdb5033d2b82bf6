/*  common/route_ews.h: opens an Exchange route's EWS client (and, for
    auth oauth2, its OAuth2 token cache) from the route's settings. Shared
    by the fetcher (inbound), the sender (outbound) and the router (tests).

    URL: https (http when exchange_ssl is false)://exchange_host:exchange_port
    /EWS/Exchange.asmx. OAuth2: resource https://<exchange_host>, authority
    the route's oauth_authority or the national cloud's default, app-only
    with ExchangeImpersonation of the route's email.
    Ownership: *oauth (may be NULL) must outlive *ews; destroy ews first
    (cm_route_ews_close does both). Both clients copy their strings. */
#ifndef CM_ROUTE_EWS_H
#define CM_ROUTE_EWS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "ews.h"
#include "oauth.h"

/* 0 with *ews (and *oauth when auth is oauth2), or -1 with a reason. */
int cm_route_ews_open (const json_t *config, cm_oauth_t **oauth, cm_ews_t **ews,
                       char *err, size_t errlen);
void cm_route_ews_close (cm_oauth_t **oauth, cm_ews_t **ews);
/* TEST INBOUND (GetFolder of the route's folder) or TEST OUTBOUND
   (authentication and send permission, nothing sent): 0 with a summary,
   -1 with the reason. */
int cm_route_ews_test (const json_t *config, bool inbound, char *summary, size_t sumlen,
                       char *err, size_t errlen);
#endif
