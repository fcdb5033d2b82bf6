/*  common/route_ews.c: an Exchange route's EWS (+ OAuth2) clients from its
    settings. See route_ews.h. */
#include "route_ews.h"
#include "route.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
cm_route_ews_open (const json_t *config, cm_oauth_t **oauth, cm_ews_t **ews,
                   char *err, size_t errlen)
{
    *oauth = NULL;
    *ews = NULL;
    const char *host = cm_route_str (config, "exchange_host");
    const char *name = cm_route_str (config, "name");
    const char *ca = cm_route_str (config, "ca_file");
    const char *auth = cm_route_str (config, "auth");
    const char *level = cm_route_str (config, "log_level");
    bool verbose = level && strcmp (level, "verbose") == 0;
    if (!host || !*host) {
        snprintf (err, errlen, "the route has no exchange_host");
        return -1;
    }
    if (!auth)
        auth = "basic";
    bool ssl = cm_route_bool (config, "exchange_ssl");
    long long port = cm_route_int (config, "exchange_port");
    if (port <= 0)
        port = ssl ? 443 : 80;
    char url [512];
    bool v6 = strchr (host, ':') != NULL;
    snprintf (url, sizeof url, "%s://%s%s%s:%lld/EWS/Exchange.asmx", ssl ? "https" : "http",
              v6 ? "[" : "", host, v6 ? "]" : "", port);
    const char *impersonate = NULL;
    if (strcmp (auth, "oauth2") == 0) {
        char resource [300];
        snprintf (resource, sizeof resource, "https://%s", host);
        const char *authority = cm_route_str (config, "oauth_authority");
        *oauth = cm_oauth_new (cm_route_str (config, "oauth_tenant_id"),
                               cm_route_str (config, "oauth_client_id"),
                               cm_route_str (config, "oauth_client_secret"),
                               cm_route_str (config, "national_cloud"),
                               authority && *authority ? authority : NULL,
                               resource, ca, verbose, name);
        if (!*oauth) {
            snprintf (err, errlen, "the route's OAuth2 settings are incomplete or unusable"
                      " (tenant, client id, client secret, national cloud, authority)");
            return -1;
        }
        impersonate = cm_route_str (config, "email");
    }
    *ews = cm_ews_new (url, auth, cm_route_str (config, "username"),
                       cm_route_str (config, "password"), *oauth, impersonate,
                       cm_route_str (config, "exchange_version"), ca, verbose, name);
    if (!*ews) {
        snprintf (err, errlen, "the route's Exchange settings are unusable (%s, auth %s,"
                  " version %s)", url, auth,
                  cm_route_str (config, "exchange_version") ? cm_route_str (config, "exchange_version")
                                                            : "other");
        cm_oauth_destroy (oauth);
        return -1;
    }
    const char *email = cm_route_str (config, "email");
    if (email && *email)
        cm_ews_set_sender (*ews, email);
    return 0;
}

void
cm_route_ews_close (cm_oauth_t **oauth, cm_ews_t **ews)
{
    cm_ews_destroy (ews);
    cm_oauth_destroy (oauth);
}

int
cm_route_ews_test (const json_t *config, bool inbound, char *summary, size_t sumlen,
                   char *err, size_t errlen)
{
    cm_oauth_t *oauth = NULL;
    cm_ews_t *ews = NULL;
    if (cm_route_ews_open (config, &oauth, &ews, err, errlen))
        return -1;
    const char *folder = cm_route_str (config, "folder");
    int rc = inbound
        ? cm_ews_test_inbound (ews, folder ? folder : "inbox", summary, sumlen, err, errlen)
        : cm_ews_test_outbound (ews, summary, sumlen, err, errlen);
    const char *processed = inbound ? cm_route_processed_folder (config) : NULL;
    if (rc == 0 && processed) {
        /* the fetcher looks it up at the start and does not make it: one
           that is missing would leave the route FAILED */
        char *id = NULL, why [300];
        size_t n = strlen (summary);
        if (cm_ews_folder_id (ews, processed, &id, why, sizeof why)) {
            snprintf (err, errlen, "processed folder: %s", why);   /* why names it */
            rc = -1;
        }
        else
            snprintf (summary + n, sumlen - n, "; processed folder %s exists", processed);
        free (id);
    }
    cm_route_ews_close (&oauth, &ews);
    return rc;
}
