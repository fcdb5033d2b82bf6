/*  common/routeauth.h: OAuth2 bearer tokens for a route's IMAP and SMTP
    sides (auth oauth2 without Exchange: Microsoft 365 over SASL XOAUTH2 /
    OAUTHBEARER). The token flow is common/oauth.c's client credentials;
    this module only derives its settings from the route. */
#ifndef CM_ROUTEAUTH_H
#define CM_ROUTEAUTH_H
#include <jansson.h>
#include <stddef.h>
#include "oauth.h"

/* A bearer token (malloc'd; the caller frees it) for the route in config
   (secrets opened). *cache is created on first use from the route's tenant,
   client id and secret, national cloud, authority and ca_file; the resource
   is https://<exchange_host> when set, else the cloud's outlook host. The
   caller owns *cache (cm_oauth_destroy). NULL with a reason in err, such as
   "wrong client secret (AADSTS7000215)". */
char *cm_route_oauth_token (const json_t *config, cm_oauth_t **cache,
                            char *err, size_t errlen);
#endif
