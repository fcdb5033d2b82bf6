/*  common/routeauth.c: OAuth2 bearer tokens for a route's IMAP and SMTP
    sides (see routeauth.h). */
#include <stdio.h>
#include <string.h>
#include "route.h"
#include "routeauth.h"

char *
cm_route_oauth_token (const json_t *config, cm_oauth_t **cache, char *err, size_t errlen)
{
    if (!*cache) {
        const char *cloud = cm_route_str (config, "national_cloud");
        const char *host = cm_route_str (config, "exchange_host");
        if (!host || !*host)
            host = cm_oauth_cloud_ews_host (cloud);
        if (!host) {
            snprintf (err, errlen, "unknown national cloud %s", cloud ? cloud : "");
            return NULL;
        }
        char resource [300];
        snprintf (resource, sizeof resource, "https://%s", host);
        const char *authority = cm_route_str (config, "oauth_authority");
        const char *level = cm_route_str (config, "log_level");
        *cache = cm_oauth_new (cm_route_str (config, "oauth_tenant_id"),
                               cm_route_str (config, "oauth_client_id"),
                               cm_route_str (config, "oauth_client_secret"),
                               cloud, authority && *authority ? authority : NULL,
                               resource, cm_route_str (config, "ca_file"),
                               level && strcmp (level, "verbose") == 0,
                               cm_route_str (config, "name"));
        if (!*cache) {
            snprintf (err, errlen, "the route's OAuth2 settings are incomplete or unusable"
                      " (tenant id, client id, client secret, national cloud, authority)");
            return NULL;
        }
    }
    return cm_oauth_token (*cache, err, errlen);
}
