/*  common/oauth.c: client-credentials tokens (see oauth.h).

    POST {authority}/{tenant}/oauth2/v2.0/token with a form body (client_id,
    client_secret, scope = resource + "/.default", grant_type), TLS verified,
    answer capped at 64 KB and parsed with jansson. The secret travels in
    the body (never on a URL), the trace shows only the URL and the outcome.
    Errors from the endpoint are keyed on the AADSTS code of error_codes[0]
    (or of error_description), never on the wording. */
#include "oauth.h"
#include "imap.h"
#include "log.h"
#include "buf.h"
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TOKEN_ANSWER_MAX   (64 * 1024)
#define TOKEN_MARGIN_MS    (300 * 1000)       /* renew 5 minutes early */
#define TOKEN_TIMEOUT_MS   30000L

struct _cm_oauth_t {
    char *tenant;               /* GUID or domain */
    char *client_id;
    char *client_secret;        /* clear text, registered for redaction */
    char *token_url;            /* {authority}/{tenant}/oauth2/v2.0/token */
    char *scope;                /* resource + "/.default" */
    char *resource;             /* "https://host" */
    char *ca_file;              /* extra CA bundle or NULL */
    char *route;                /* for log lines */
    bool verbose;               /* route log level verbose */
    pthread_mutex_t lock;       /* guards the cache below */
    char *token;                /* cached access token or NULL */
    int64_t expires_ms;         /* monotonic time the token expires */
    int64_t lifetime_ms;        /* expires_in of the cached token */
    unsigned fetches;           /* tokens fetched so far */
};

/* ---------------------------------------------------------------------- */
/*  National clouds (EWS-NOTES section 7)                                  */
/* ---------------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *login;          /* sign-in (token authority) host */
    const char *ews;            /* EWS host = token resource host */
} s_clouds [] = {
    { "global",          "login.microsoftonline.com",        "outlook.office365.com" },
    { "china",           "login.partner.microsoftonline.cn", "partner.outlook.cn" },
    { "germany",         "login.microsoftonline.de",         "outlook.office.de" },
    { "usgovernment",    "login.microsoftonline.us",         "outlook.office365.us" },
    { "usgovernmentdod", "login.microsoftonline.us",         "outlook-dod.office365.us" },
};

static int
s_cloud (const char *name)
{
    if (!name || !*name)
        return 0;
    for (size_t i = 0; i < sizeof s_clouds / sizeof s_clouds [0]; i++)
        if (strcasecmp (name, s_clouds [i].name) == 0)
            return (int) i;
    return -1;
}

const char *
cm_oauth_cloud_ews_host (const char *national_cloud)
{
    int i = s_cloud (national_cloud);
    return i < 0 ? NULL : s_clouds [i].ews;
}

const char *
cm_oauth_cloud_login_host (const char *national_cloud)
{
    int i = s_cloud (national_cloud);
    return i < 0 ? NULL : s_clouds [i].login;
}

/* ---------------------------------------------------------------------- */
/*  Pure helpers (self-tested)                                            */
/* ---------------------------------------------------------------------- */

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long before expiry a token counts as used up: 5 minutes, or 10% of
   its lifetime when that is shorter (test tokens of a few seconds). */
static int64_t
s_margin_ms (int64_t lifetime_ms)
{
    int64_t tenth = lifetime_ms / 10;
    return tenth < TOKEN_MARGIN_MS ? tenth : TOKEN_MARGIN_MS;
}

/* True when a token expiring at expires_ms is still good to use at now. */
static bool
s_token_fresh (int64_t now_ms, int64_t expires_ms, int64_t lifetime_ms)
{
    return now_ms + s_margin_ms (lifetime_ms) < expires_ms;
}

/* AADSTS code of an error answer: error_codes[0], else the number after
   "AADSTS" in error_description; 0 when there is none. */
static long
s_aadsts (json_t *root)
{
    json_t *codes = json_object_get (root, "error_codes");
    if (json_is_array (codes) && json_is_integer (json_array_get (codes, 0)))
        return (long) json_integer_value (json_array_get (codes, 0));
    const char *desc = json_string_value (json_object_get (root, "error_description"));
    const char *p = desc ? strstr (desc, "AADSTS") : NULL;
    return p ? strtol (p + 6, NULL, 10) : 0;
}

/* Person-readable reason for a token endpoint answer that is not a token. */
static void
s_error_reason (long http, const char *body, size_t len, const char *url,
                const char *tenant, const char *client_id, const char *scope,
                char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = body && len ? json_loadb (body, len, 0, &jerr) : NULL;
    const char *error = root ? json_string_value (json_object_get (root, "error")) : NULL;
    if (!json_is_object (root) || !error) {
        snprintf (err, errlen, "token endpoint %s answered HTTP %ld without an "
                  "OAuth error (wrong authority URL?)", url, http);
        json_decref (root);
        return;
    }
    long code = s_aadsts (root);
    switch (code) {
        case 7000215:
            snprintf (err, errlen, "wrong client secret (AADSTS7000215): use the "
                      "secret's value, not its ID");
            break;
        case 7000218:
            snprintf (err, errlen, "no client secret configured (AADSTS7000218)");
            break;
        case 7000222:
            snprintf (err, errlen, "client secret expired (AADSTS7000222): create "
                      "a new one for application %s", client_id);
            break;
        case 700016:
            snprintf (err, errlen, "application %s not found in the directory of "
                      "tenant %s (AADSTS700016): check the client ID and tenant ID",
                      client_id, tenant);
            break;
        case 90002:
            snprintf (err, errlen, "unknown tenant %s (AADSTS90002): check the "
                      "tenant ID and the national cloud", tenant);
            break;
        case 50059:
            snprintf (err, errlen, "tenant %s does not name one directory "
                      "(AADSTS50059): use the tenant ID or domain", tenant);
            break;
        case 500011:
            snprintf (err, errlen, "resource of scope %s unknown to tenant %s "
                      "(AADSTS500011): check the Exchange host and national cloud",
                      scope, tenant);
            break;
        case 70011:
        case 1002012:
            snprintf (err, errlen, "scope %s refused (AADSTS%ld)", scope, code);
            break;
        default: {
            /* first line of the description, without trace ids */
            const char *desc = json_string_value (json_object_get (root, "error_description"));
            char first [256] = "";
            if (desc) {
                size_t n = strcspn (desc, "\r\n");
                if (n >= sizeof first)
                    n = sizeof first - 1;
                memcpy (first, desc, n);
                first [n] = 0;
            }
            if (code)
                snprintf (err, errlen, "token request refused: %s (AADSTS%ld)%s%s",
                          error, code, *first ? ": " : "", first);
            else
                snprintf (err, errlen, "token request refused: %s (HTTP %ld)%s%s",
                          error, http, *first ? ": " : "", first);
            break;
        }
    }
    json_decref (root);
}

/* Parses a 200 answer: access_token and expires_in. 0 ok, -1 malformed. */
static int
s_parse_token (const char *body, size_t len, char **token, int64_t *lifetime_ms)
{
    json_error_t jerr;
    json_t *root = json_loadb (body, len, 0, &jerr);
    if (!json_is_object (root)) {
        json_decref (root);
        return -1;
    }
    const char *tok = json_string_value (json_object_get (root, "access_token"));
    const char *type = json_string_value (json_object_get (root, "token_type"));
    json_t *exp = json_object_get (root, "expires_in");
    long long secs = -1;
    if (json_is_integer (exp))
        secs = json_integer_value (exp);
    else if (json_is_real (exp) && json_real_value (exp) > 0
             && json_real_value (exp) < 86400.0 * 7)
        secs = (long long) json_real_value (exp);
    else if (json_is_string (exp))         /* v1 endpoints send a string */
        secs = strtoll (json_string_value (exp), NULL, 10);
    else if (!exp)
        secs = 3600;    /* only RECOMMENDED (RFC 6749 5.1): an hour, and a
                           token refused before then is fetched anew */
    int rc = -1;
    if (tok && *tok && strlen (tok) < 16384 && secs > 0 && secs < 86400 * 7
        && (!type || strcasecmp (type, "Bearer") == 0)) {
        for (const char *p = tok; *p; p++)
            if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f)
                goto done;      /* would break the Authorization header */
        *token = strdup (tok);
        *lifetime_ms = (int64_t) secs * 1000;
        rc = *token ? 0 : -1;
    }
done:
    json_decref (root);
    return rc;
}

/* ---------------------------------------------------------------------- */
/*  Object                                                                */
/* ---------------------------------------------------------------------- */

static char *
s_dup (const char *s)
{
    return s ? strdup (s) : NULL;
}

cm_oauth_t *
cm_oauth_new (const char *tenant, const char *client_id, const char *client_secret,
              const char *national_cloud, const char *authority, const char *resource,
              const char *ca_file, bool verbose, const char *route)
{
    if (!tenant || !*tenant || !client_id || !*client_id || !client_secret
        || !resource || !*resource)
        return NULL;
    int cloud = s_cloud (national_cloud);
    if (cloud < 0)
        return NULL;
    /* the tenant goes into the URL path: GUIDs and domain names only */
    for (const char *p = tenant; *p; p++)
        if (!(*p == '-' || *p == '.' || (*p >= '0' && *p <= '9')
              || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return NULL;
    char base [512];
    if (authority && *authority) {
        if (strncasecmp (authority, "https://", 8) != 0 || strlen (authority) >= sizeof base)
            return NULL;
        snprintf (base, sizeof base, "%s", authority);
        size_t n = strlen (base);
        while (n > 8 && base [n - 1] == '/')
            base [--n] = 0;
    }
    else
        snprintf (base, sizeof base, "https://%s", s_clouds [cloud].login);

    cm_oauth_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init (&self->lock, NULL);
    self->tenant = strdup (tenant);
    self->client_id = strdup (client_id);
    self->client_secret = strdup (client_secret);
    self->resource = strdup (resource);
    size_t rl = strlen (resource);
    while (rl > 0 && resource [rl - 1] == '/')
        rl--;
    if (self->resource)
        self->resource [rl] = 0;
    if (asprintf (&self->scope, "%s/.default", self->resource ? self->resource : "") < 0)
        self->scope = NULL;
    if (asprintf (&self->token_url, "%s/%s/oauth2/v2.0/token", base, tenant) < 0)
        self->token_url = NULL;
    self->ca_file = ca_file && *ca_file ? strdup (ca_file) : NULL;
    self->route = s_dup (route);
    self->verbose = verbose;
    if (!self->tenant || !self->client_id || !self->client_secret || !self->resource
        || !self->scope || !self->token_url || (ca_file && *ca_file && !self->ca_file)
        || (route && !self->route)) {
        cm_oauth_destroy (&self);
        return NULL;
    }
    cm_log_secret (self->client_secret);
    return self;
}

void
cm_oauth_destroy (cm_oauth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cm_oauth_t *self = *self_p;
    free (self->tenant);
    free (self->client_id);
    free (self->client_secret);
    free (self->token_url);
    free (self->scope);
    free (self->resource);
    free (self->ca_file);
    free (self->route);
    free (self->token);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

static size_t
s_write (char *data, size_t size, size_t nmemb, void *userp)
{
    cm_buf_t *buf = (cm_buf_t *) userp;
    size_t n = size * nmemb;
    return cm_buf_append (buf, data, n) == 0 ? n : 0;
}

/* Form field: name=urlencoded(value)&. -1 on allocation failure. */
static int
s_form (cm_buf_t *form, CURL *h, const char *name, const char *value)
{
    char *esc = curl_easy_escape (h, value, 0);
    if (!esc)
        return -1;
    int rc = cm_buf_printf (form, "%s%s=%s", form->len ? "&" : "", name, esc);
    /* the escaped secret sits in the form: wipe our copy */
    memset (esc, 0, strlen (esc));
    curl_free (esc);
    return rc;
}

/* One request to the token endpoint; caller holds the lock. */
static int
s_fetch (cm_oauth_t *self, char *err, size_t errlen)
{
    cm_mailcurl_global_init ();
    int rc = -1;
    cm_buf_t form, answer;
    cm_buf_init (&form, 32 * 1024);
    cm_buf_init (&answer, TOKEN_ANSWER_MAX);
    struct curl_slist *hdrs = NULL;
    cm_mailcurl_ctx_t ctx;
    memset (&ctx, 0, sizeof ctx);
    CURL *h = curl_easy_init ();
    if (!h) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    if (s_form (&form, h, "client_id", self->client_id)
        || s_form (&form, h, "client_secret", self->client_secret)
        || s_form (&form, h, "scope", self->scope)
        || s_form (&form, h, "grant_type", "client_credentials")) {
        snprintf (err, errlen, "token request too large");
        goto done;
    }
    hdrs = curl_slist_append (hdrs, "Content-Type: application/x-www-form-urlencoded");
    hdrs = curl_slist_append (hdrs, "Accept: application/json");
    CURLcode cc = CURLE_OK;
#define SET(opt, val) if (!cc) cc = curl_easy_setopt (h, opt, val)
    SET (CURLOPT_URL, self->token_url);
    SET (CURLOPT_PROTOCOLS_STR, "https");
    SET (CURLOPT_NOSIGNAL, 1L);
    SET (CURLOPT_SSL_VERIFYPEER, 1L);
    SET (CURLOPT_SSL_VERIFYHOST, 2L);
    if (self->ca_file)
        SET (CURLOPT_CAINFO, self->ca_file);
    SET (CURLOPT_CONNECTTIMEOUT_MS, 15000L);
    SET (CURLOPT_TIMEOUT_MS, TOKEN_TIMEOUT_MS);
    SET (CURLOPT_FOLLOWLOCATION, 0L);
    SET (CURLOPT_HTTPHEADER, hdrs);
    SET (CURLOPT_POSTFIELDS, form.data);
    SET (CURLOPT_POSTFIELDSIZE, (long) form.len);
    SET (CURLOPT_WRITEFUNCTION, s_write);
    SET (CURLOPT_WRITEDATA, &answer);
    SET (CURLOPT_ERRORBUFFER, ctx.errbuf);
    SET (CURLOPT_USERAGENT, "casemail");
#undef SET
    if (cc) {
        snprintf (err, errlen, "libcurl setup failed: %s", curl_easy_strerror (cc));
        goto done;
    }
    cm_trace (self->verbose, self->route, "oauth: POST %s (client %s, scope %s)",
              self->token_url, self->client_id, self->scope);
    cc = curl_easy_perform (h);
    long http = 0;
    curl_easy_getinfo (h, CURLINFO_RESPONSE_CODE, &http);
    if (cc == CURLE_WRITE_ERROR && answer.overflow) {
        snprintf (err, errlen, "token endpoint %s answered more than %d bytes",
                  self->token_url, TOKEN_ANSWER_MAX);
        goto done;
    }
    if (cc) {
        /* host and port for the reason: from the URL */
        char host [256] = "";
        int port = 443;
        const char *p = self->token_url + 8;
        size_t n = strcspn (p, ":/");
        if (n >= sizeof host)
            n = sizeof host - 1;
        memcpy (host, p, n);
        host [n] = 0;
        if (p [n] == ':')
            port = atoi (p + n + 1);
        cm_mailserver_t srv = { .host = host, .port = port };
        char why [512];
        cm_mailcurl_reason (cc, &ctx, &srv, why, sizeof why);
        snprintf (err, errlen, "token endpoint %s unreachable: %s", self->token_url, why);
        cm_trace (self->verbose, self->route, "oauth: %s", err);
        goto done;
    }
    if (http == 200) {
        char *token = NULL;
        int64_t lifetime = 0;
        if (s_parse_token (answer.data ? answer.data : "", answer.len, &token, &lifetime)) {
            snprintf (err, errlen, "token endpoint %s answered 200 without a usable "
                      "bearer token", self->token_url);
            goto done;
        }
        cm_log_token (token);
        free (self->token);
        self->token = token;
        self->lifetime_ms = lifetime;
        self->expires_ms = s_now_ms () + lifetime;
        self->fetches++;
        cm_trace (self->verbose, self->route, "oauth: token received, expires in %lld s",
                  (long long) (lifetime / 1000));
        rc = 0;
        goto done;
    }
    s_error_reason (http, answer.data, answer.len, self->token_url, self->tenant,
                    self->client_id, self->scope, err, errlen);
    cm_trace (self->verbose, self->route, "oauth: HTTP %ld: %s", http, err);
done:
    if (form.data)
        memset (form.data, 0, form.len);
    cm_buf_free (&form);
    cm_buf_free (&answer);
    curl_slist_free_all (hdrs);
    if (h)
        curl_easy_cleanup (h);
    return rc;
}

char *
cm_oauth_token (cm_oauth_t *self, char *err, size_t errlen)
{
    if (!self) {
        snprintf (err, errlen, "no OAuth settings");
        return NULL;
    }
    char *copy = NULL;
    pthread_mutex_lock (&self->lock);
    if (!self->token || !s_token_fresh (s_now_ms (), self->expires_ms, self->lifetime_ms)) {
        free (self->token);
        self->token = NULL;
        if (s_fetch (self, err, errlen))
            goto done;
    }
    copy = strdup (self->token);
    if (!copy)
        snprintf (err, errlen, "out of memory");
done:
    pthread_mutex_unlock (&self->lock);
    return copy;
}

void
cm_oauth_invalidate (cm_oauth_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    free (self->token);
    self->token = NULL;
    pthread_mutex_unlock (&self->lock);
}

unsigned
cm_oauth_fetches (cm_oauth_t *self)
{
    if (!self)
        return 0;
    pthread_mutex_lock (&self->lock);
    unsigned n = self->fetches;
    pthread_mutex_unlock (&self->lock);
    return n;
}

/* ---------------------------------------------------------------------- */
/*  Self-test                                                             */
/* ---------------------------------------------------------------------- */

int
cm_oauth_selftest (bool verbose)
{
    int failed = 0;
#define CHECK(cond, what) do { if (!(cond)) { failed++; \
        printf ("  FAIL oauth: %s\n", what); } \
        else if (verbose) printf ("  ok oauth: %s\n", what); } while (0)
    char err [512];
    static const struct { long http; const char *json; const char *want; } cases [] = {
        { 401, "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid "
               "client secret provided.\\r\\nTrace ID: x\",\"error_codes\":[7000215]}",
          "wrong client secret (AADSTS7000215)" },
        { 400, "{\"error\":\"invalid_request\",\"error_description\":\"AADSTS90002: Tenant "
               "'contoso.test' not found.\"}", "unknown tenant contoso.test (AADSTS90002)" },
        { 400, "{\"error\":\"unauthorized_client\",\"error_codes\":[700016]}",
          "application app-1 not found in the directory of tenant contoso.test (AADSTS700016)" },
        { 401, "{\"error\":\"invalid_client\",\"error_codes\":[7000222]}", "(AADSTS7000222)" },
        { 400, "{\"error\":\"invalid_resource\",\"error_codes\":[500011]}", "(AADSTS500011)" },
        { 400, "{\"error\":\"weird\",\"error_description\":\"AADSTS12345: Something.\\r\\nTrace\"}",
          "token request refused: weird (AADSTS12345): AADSTS12345: Something." },
        { 404, "<html>not found</html>", "answered HTTP 404" },
        { 400, "{\"error\":\"invalid_request\"}", "invalid_request (HTTP 400)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        s_error_reason (cases [i].http, cases [i].json, strlen (cases [i].json),
                        "https://login.example/t/oauth2/v2.0/token", "contoso.test",
                        "app-1", "https://outlook.office365.com/.default", err, sizeof err);
        if (verbose)
            printf ("  reason: %s\n", err);
        CHECK (strstr (err, cases [i].want), cases [i].want);
    }
    char *tok = NULL;
    int64_t life = 0;
    const char *good = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"eyJ.a.b\"}";
    CHECK (s_parse_token (good, strlen (good), &tok, &life) == 0 && tok
           && strcmp (tok, "eyJ.a.b") == 0 && life == 3599000, "token answer parsed");
    free (tok);
    tok = NULL;
    static const struct { const char *answer; int64_t life; const char *what; } lives [] = {
        { "{\"token_type\":\"Bearer\",\"expires_in\":\"60\",\"access_token\":\"x.y.z\"}",
          60000, "expires_in as a string" },
        { "{\"token_type\":\"Bearer\",\"expires_in\":3599.0,\"access_token\":\"x.y.z\"}",
          3599000, "expires_in as a JSON decimal" },
        { "{\"token_type\":\"Bearer\",\"access_token\":\"x.y.z\"}",
          3600000, "no expires_in (RFC 6749: only recommended): an hour" },
    };
    for (size_t i = 0; i < sizeof lives / sizeof lives [0]; i++) {
        life = 0;
        CHECK (s_parse_token (lives [i].answer, strlen (lives [i].answer), &tok, &life) == 0
               && life == lives [i].life, lives [i].what);
        free (tok);
        tok = NULL;
    }
    const char *bad [] = {
        "{\"token_type\":\"Bearer\",\"expires_in\":3599}",
        "{\"token_type\":\"Bearer\",\"expires_in\":0,\"access_token\":\"a\"}",
        "{\"token_type\":\"Bearer\",\"expires_in\":10,\"access_token\":\"a\\r\\nX: y\"}",
        "{\"token_type\":\"mac\",\"expires_in\":10,\"access_token\":\"a\"}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        CHECK (s_parse_token (bad [i], strlen (bad [i]), &tok, &life) == -1, bad [i]);
        free (tok);
        tok = NULL;
    }
    /* expiry: an hour token is renewed 5 minutes early, a 10 s one 1 s early */
    CHECK (s_token_fresh (0, 3599000, 3599000), "fresh hour token");
    CHECK (s_token_fresh (3299000 - 1000, 3599000, 3599000), "hour token 6 min before expiry");
    CHECK (!s_token_fresh (3299000, 3599000, 3599000), "hour token 5 min before expiry");
    CHECK (s_token_fresh (8000, 10000, 10000), "10 s token at 8 s");
    CHECK (!s_token_fresh (9000, 10000, 10000), "10 s token at 9 s");
    CHECK (!s_token_fresh (20000, 10000, 10000), "expired token");
    /* cloud table */
    CHECK (strcmp (cm_oauth_cloud_login_host (NULL), "login.microsoftonline.com") == 0, "global login");
    CHECK (strcmp (cm_oauth_cloud_ews_host ("global"), "outlook.office365.com") == 0, "global ews");
    CHECK (strcmp (cm_oauth_cloud_login_host ("china"), "login.partner.microsoftonline.cn") == 0, "china login");
    CHECK (strcmp (cm_oauth_cloud_ews_host ("china"), "partner.outlook.cn") == 0, "china ews");
    CHECK (strcmp (cm_oauth_cloud_login_host ("germany"), "login.microsoftonline.de") == 0, "germany login");
    CHECK (strcmp (cm_oauth_cloud_ews_host ("germany"), "outlook.office.de") == 0, "germany ews");
    CHECK (strcmp (cm_oauth_cloud_login_host ("USGovernment"), "login.microsoftonline.us") == 0, "usgov login");
    CHECK (strcmp (cm_oauth_cloud_ews_host ("usgovernment"), "outlook.office365.us") == 0, "usgov ews");
    CHECK (cm_oauth_cloud_ews_host ("mars") == NULL, "unknown cloud");
    /* constructor: URL shape and refusals */
    cm_oauth_t *o = cm_oauth_new ("contoso.test", "id", "Sel~Test~Secret", "china", NULL,
                                  "https://partner.outlook.cn/", NULL, false, "t");
    CHECK (o && strcmp (o->token_url, "https://login.partner.microsoftonline.cn/contoso.test"
                        "/oauth2/v2.0/token") == 0
           && strcmp (o->scope, "https://partner.outlook.cn/.default") == 0, "china token URL and scope");
    cm_oauth_destroy (&o);
    cm_oauth_destroy (&o);
    CHECK (o == NULL, "destroy nulls and is safe twice");
    o = cm_oauth_new ("t", "id", "s3cret", NULL, "https://127.0.0.1:1/", "https://h", NULL, false, NULL);
    CHECK (o && strcmp (o->token_url, "https://127.0.0.1:1/t/oauth2/v2.0/token") == 0, "authority override");
    cm_oauth_destroy (&o);
    CHECK (!cm_oauth_new ("t", "id", "s", NULL, "http://plain", "https://h", NULL, false, NULL),
           "plain-http authority refused");
    CHECK (!cm_oauth_new ("../x", "id", "s", NULL, NULL, "https://h", NULL, false, NULL),
           "tenant with a slash refused");
    CHECK (!cm_oauth_new ("t", "id", "s", "mars", NULL, "https://h", NULL, false, NULL),
           "unknown cloud refused");
#undef CHECK
    return failed ? -1 : 0;
}
