/*  common/route.c: route settings: validation, defaults, sealing and
    endpoints (see route.h). The field table below is the one place that
    knows every setting; the API, the CLI and the database all carry the
    same names. */
#include "route.h"
#include <idn2.h>
#include "log.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { F_STR, F_INT, F_BOOL } ftype_t;

typedef struct {
    const char *name;        /* JSON key */
    ftype_t type;
    const char *const *values; /* allowed values for enums, NULL-terminated */
    const char *def;         /* default for strings/enums, NULL = none */
    bool secret;             /* write-only, sealed at rest */
} field_t;

static const char *const KINDS [] = { "two-way", "ingest", NULL };
static const char *const IN_PROTOS [] = { "imap", "imaps", "imap+starttls", NULL };
static const char *const OUT_PROTOS [] = { "smtp", "smtps", "smtp+starttls", NULL };
static const char *const LEVELS [] = { "low", "verbose", NULL };
static const char *const AUTHS [] = { "basic", "ntlm", "oauth2", NULL };
static const char *const VERSIONS [] = { "2007sp1", "2010", "2010sp1", "2010sp2", "other", NULL };
static const char *const CLOUDS [] = { "global", "china", "germany", "usgovernment", NULL };
static const char *const AFTER [] = { "keep", "seen", "move", NULL };

static const field_t FIELDS [] = {
    { "name",               F_STR,  NULL,       NULL,      false },
    { "kind",               F_STR,  KINDS,      "two-way", false },
    { "email",              F_STR,  NULL,       NULL,      false },
    { "username",           F_STR,  NULL,       NULL,      false },
    { "password",           F_STR,  NULL,       NULL,      true },
    { "folder",             F_STR,  NULL,       "INBOX",   false },
    { "inbound_host",       F_STR,  NULL,       NULL,      false },
    { "inbound_protocol",   F_STR,  IN_PROTOS,  NULL,      false },
    { "inbound_port",       F_INT,  NULL,       NULL,      false },
    { "outbound_host",      F_STR,  NULL,       NULL,      false },
    { "outbound_protocol",  F_STR,  OUT_PROTOS, NULL,      false },
    { "outbound_port",      F_INT,  NULL,       NULL,      false },
    { "ca_file",            F_STR,  NULL,       NULL,      false },
    { "log_level",          F_STR,  LEVELS,     "low",     false },
    { "exchange",           F_BOOL, NULL,       NULL,      false },
    { "exchange_host",      F_STR,  NULL,       NULL,      false },
    { "exchange_ssl",       F_BOOL, NULL,       NULL,      false },
    { "exchange_port",      F_INT,  NULL,       NULL,      false },
    { "auth",               F_STR,  AUTHS,      "basic",   false },
    { "exchange_version",   F_STR,  VERSIONS,   "other",   false },
    { "oauth_client_id",    F_STR,  NULL,       NULL,      false },
    { "oauth_client_secret",F_STR,  NULL,       NULL,      true },
    { "oauth_tenant_id",    F_STR,  NULL,       NULL,      false },
    { "national_cloud",     F_STR,  CLOUDS,     "global",  false },
    { "oauth_authority",    F_STR,  NULL,       NULL,      false },
    { "after_fetch",        F_STR,  AFTER,      "seen",    false },
    { "processed_folder",   F_STR,  NULL,       NULL,      false },
    { "since",              F_STR,  NULL,       NULL,      false },
    { "poll_interval",      F_INT,  NULL,       NULL,      false },
};
#define NFIELDS (sizeof FIELDS / sizeof FIELDS [0])

static const field_t *
s_field (const char *name)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (strcmp (FIELDS [i].name, name) == 0)
            return &FIELDS [i];
    return NULL;
}

const char *
cm_route_str (const json_t *config, const char *key)
{
    const char *v = json_string_value (json_object_get (config, key));
    return v && *v ? v : NULL;
}

const char *
cm_route_processed_folder (const json_t *config)
{
    const char *after = cm_route_str (config, "after_fetch");
    return after && strcmp (after, "move") == 0 ? cm_route_str (config, "processed_folder")
                                                : NULL;
}

long long
cm_route_int (const json_t *config, const char *key)
{
    return json_integer_value (json_object_get (config, key));
}

bool
cm_route_bool (const json_t *config, const char *key)
{
    return json_is_true (json_object_get (config, key));
}

static bool
s_has_control (const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

bool
cm_route_valid_address (const char *addr)
{
    if (!addr || s_has_control (addr) || strlen (addr) > 254)
        return false;
    const char *at = strrchr (addr, '@');
    if (!at || at == addr || at - addr > 64 || !at [1])
        return false;
    for (const char *p = addr; p < at; p++)
        if (!isalnum ((unsigned char) *p) && !strchr ("!#$%&'*+/=?^_`{|}~.-", *p))
            return false;
    if (addr [0] == '.' || at [-1] == '.' || strstr (addr, ".."))
        return false;
    const char *d = at + 1;
    if (*d == '.' || d [strlen (d) - 1] == '.' || !strchr (d, '.'))
        return false;
    for (const char *p = d; *p; p++)
        if (!isalnum ((unsigned char) *p) && *p != '-' && *p != '.')
            return false;
    return true;
}

int
cm_route_ascii_address (const char *addr, char *out, size_t outlen, char *why, size_t whylen)
{
    *out = 0;
    *why = 0;
    const char *at = addr ? strrchr (addr, '@') : NULL;
    bool ascii = true;
    for (const char *p = addr; p && *p && ascii; p++)
        ascii = (unsigned char) *p < 0x80;
    if (ascii || !at) {
        if (!addr || strlen (addr) >= outlen) {
            snprintf (why, whylen, "it is too long");
            return -1;
        }
        strcpy (out, addr);
        return 0;
    }
    for (const char *p = addr; p < at; p++)
        if ((unsigned char) *p >= 0x80) {
            snprintf (why, whylen, "the part before the @ is not ASCII, and mail to such an"
                      " address needs SMTPUTF8 (RFC 6531), which casemail does not send");
            return -1;
        }
    char *domain = NULL;
    int rc = idn2_to_ascii_8z (at + 1, &domain, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) {
        snprintf (why, whylen, "its domain is not a valid internationalised domain name"
                  " (IDNA2008: %s)", idn2_strerror (rc));
        return -1;
    }
    int n = snprintf (out, outlen, "%.*s@%s", (int) (at - addr), addr, domain);
    idn2_free (domain);
    if (n < 0 || (size_t) n >= outlen) {
        *out = 0;
        snprintf (why, whylen, "it is too long");
        return -1;
    }
    return 0;
}

static bool
s_valid_host (const char *h)
{
    if (!h || !*h || strlen (h) > 253)
        return false;
    for (const char *p = h; *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr (".-:[]_", *p))
            return false;
    return true;
}

bool
cm_route_valid_date (const char *text)
{
    int y, m, d, n = 0;
    if (strlen (text) != 10 || text [4] != '-' || text [7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (text [i] < '0' || text [i] > '9'))
            return false;
    if (sscanf (text, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10)
        return false;
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    /* a day the month has: 2026-02-30 would be March 2nd */
    struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = 12 };
    time_t t = timegm (&tm);
    struct tm back;
    return gmtime_r (&t, &back) && back.tm_mday == d && back.tm_mon == m - 1;
}

#define FAIL(f, ...) do { snprintf (err, errlen, __VA_ARGS__); \
                          s_set_field (field, (f)); return -1; } while (0)

static void
s_set_field (const char **field, const char *name)
{
    if (field)
        *field = name;
}

/* Copies one changed field into config after type checks. */
static int
s_apply_field (json_t *config, const char *key, json_t *value,
               char *err, size_t errlen, const char **field)
{
    const field_t *f = s_field (key);
    if (!f) {
        if (field)
            *field = "";
        snprintf (err, errlen, "unknown field %s", key);
        return -1;
    }
    if (json_is_null (value)) {
        json_object_del (config, key);
        return 0;
    }
    switch (f->type) {
    case F_STR: {
        if (!json_is_string (value))
            FAIL (f->name, "%s must be a string", f->name);
        const char *s = json_string_value (value);
        if (json_string_length (value) != strlen (s) || s_has_control (s))
            FAIL (f->name, "%s must not contain control characters (CR, LF, NUL)", f->name);
        if (strlen (s) > 1024)
            FAIL (f->name, "%s is longer than 1024 characters", f->name);
        if (f->values && *s) {
            bool ok = false;
            char list [256] = "";
            for (const char *const *v = f->values; *v; v++) {
                if (strcmp (*v, s) == 0)
                    ok = true;
                snprintf (list + strlen (list), sizeof list - strlen (list),
                          "%s%s", list [0] ? ", " : "", *v);
            }
            if (!ok)
                FAIL (f->name, "unknown %s '%s' (expected one of: %s)", f->name, s, list);
        }
        if (f->secret)
            json_object_del (config, key [0] == 'p' ? "password_sealed"
                                                    : "oauth_client_secret_sealed");
        json_object_set (config, key, value);
        break;
    }
    case F_INT:
        if (!json_is_integer (value))
            FAIL (f->name, "%s must be a whole number", f->name);
        json_object_set (config, key, value);
        break;
    case F_BOOL:
        if (!json_is_boolean (value))
            FAIL (f->name, "%s must be true or false", f->name);
        json_object_set (config, key, value);
        break;
    }
    return 0;
}

static int
s_default_port (const char *proto)
{
    static const struct { const char *p; int port; } ports [] = {
        { "imap", 143 }, { "imaps", 993 }, { "imap+starttls", 143 },
        { "smtp", 25 }, { "smtps", 465 }, { "smtp+starttls", 587 } };
    for (size_t i = 0; proto && i < sizeof ports / sizeof ports [0]; i++)
        if (strcmp (ports [i].p, proto) == 0)
            return ports [i].port;
    return 0;
}

static bool
s_present (const json_t *config, const char *key)
{
    return cm_route_str (config, key) != NULL;
}

static bool
s_secret_present (const json_t *config, const char *key)
{
    char sealed [64];
    snprintf (sealed, sizeof sealed, "%s_sealed", key);
    return s_present (config, key) || s_present (config, sealed);
}

int
cm_route_apply (json_t *config, json_t *changes, bool creating,
                char *err, size_t errlen, const char **field)
{
    if (!json_is_object (changes))
        FAIL ("", "the route must be a JSON object");
    const char *key;
    json_t *value;
    json_object_foreach (changes, key, value)
        if (s_apply_field (config, key, value, err, errlen, field))
            return -1;
    /* defaults */
    for (size_t i = 0; i < NFIELDS; i++)
        if (FIELDS [i].def && !s_present (config, FIELDS [i].name))
            json_object_set_new (config, FIELDS [i].name, json_string (FIELDS [i].def));
    if (!json_is_boolean (json_object_get (config, "exchange")))
        json_object_set_new (config, "exchange", json_false ());
    if (!json_is_boolean (json_object_get (config, "exchange_ssl")))
        json_object_set_new (config, "exchange_ssl", json_true ());
    if (!json_object_get (config, "poll_interval"))
        json_object_set_new (config, "poll_interval",
                             json_integer (cm_route_bool (config, "exchange") ? 5 : 30));

    const char *name = cm_route_str (config, "name");
    if (!name)
        FAIL ("name", "name is required");
    if (strlen (name) > 64)
        FAIL ("name", "name is longer than 64 characters");
    for (const char *p = name; *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr ("._-", *p))
            FAIL ("name", "name may only contain letters, digits, '.', '_' and '-'");
    /* a route is addressed as /v1/routes/NAME, where "." and ".." are
       path segments (the current and parent folder), not a name */
    if (strcmp (name, ".") == 0 || strcmp (name, "..") == 0)
        FAIL ("name", "name may not be '.' or '..' (they can't name a route in "
              "the API's path /v1/routes/NAME)");
    (void) creating;

    bool exchange = cm_route_bool (config, "exchange");
    const char *auth = cm_route_str (config, "auth");
    bool oauth = strcmp (auth, "oauth2") == 0;
    if (!s_present (config, "email"))
        FAIL ("email", "email is required");
    if (!cm_route_valid_address (cm_route_str (config, "email")))
        FAIL ("email", "email '%s' is not a valid email address",
              cm_route_str (config, "email"));
    if (!s_present (config, "username") && !(exchange && oauth))   /* app-only EWS: none */
        FAIL ("username", "username is required");
    if (!exchange && strcmp (auth, "ntlm") == 0)
        FAIL ("auth", "auth ntlm is only for Exchange routes (--exchange)");
    if (!oauth && !s_secret_present (config, "password"))
        FAIL ("password", "password is required");
    if (oauth) {
        if (!s_present (config, "oauth_client_id"))
            FAIL ("oauth_client_id", "oauth_client_id is required when auth is oauth2");
        if (!s_secret_present (config, "oauth_client_secret"))
            FAIL ("oauth_client_secret", "oauth_client_secret is required when auth is oauth2");
        if (!s_present (config, "oauth_tenant_id"))
            FAIL ("oauth_tenant_id", "oauth_tenant_id is required when auth is oauth2");
    }
    const char *authority = cm_route_str (config, "oauth_authority");
    if (authority && strncmp (authority, "https://", 8) && strncmp (authority, "http://", 7))
        FAIL ("oauth_authority", "oauth_authority must be an http(s) URL");
    if (exchange) {
        if (!s_valid_host (cm_route_str (config, "exchange_host")))
            FAIL ("exchange_host", s_present (config, "exchange_host")
                  ? "exchange_host is not a valid host name"
                  : "exchange_host is required for an Exchange route");
        if (!json_object_get (config, "exchange_port"))
            json_object_set_new (config, "exchange_port",
                json_integer (cm_route_bool (config, "exchange_ssl") ? 443 : 80));
    }
    else {
        static const char *const sides [][3] = {
            { "inbound_host", "inbound_protocol", "inbound_port" },
            { "outbound_host", "outbound_protocol", "outbound_port" } };
        for (int i = 0; i < 2; i++) {
            if (!s_present (config, sides [i][0]))
                FAIL (sides [i][0], "%s is required", sides [i][0]);
            if (!s_valid_host (cm_route_str (config, sides [i][0])))
                FAIL (sides [i][0], "%s is not a valid host name", sides [i][0]);
            if (!s_present (config, sides [i][1]))
                FAIL (sides [i][1], "%s is required", sides [i][1]);
            if (!json_object_get (config, sides [i][2]))
                json_object_set_new (config, sides [i][2], json_integer (
                    s_default_port (cm_route_str (config, sides [i][1]))));
        }
    }
    static const char *const ports [] = { "inbound_port", "outbound_port", "exchange_port" };
    for (size_t i = 0; i < 3; i++) {
        json_t *p = json_object_get (config, ports [i]);
        if (p && (json_integer_value (p) < 1 || json_integer_value (p) > 65535))
            FAIL (ports [i], "%s %lld is outside 1-65535", ports [i],
                  (long long) json_integer_value (p));
    }
    long long poll = cm_route_int (config, "poll_interval");
    if (poll < 1 || poll > 3600)
        FAIL ("poll_interval", "poll_interval must be 1 to 3600 seconds");
    const char *ca = cm_route_str (config, "ca_file");
    if (ca && ca [0] != '/')
        FAIL ("ca_file", "ca_file must be an absolute path");
    const char *since = cm_route_str (config, "since");
    if (since && !cm_route_valid_date (since))
        FAIL ("since", "since '%s' is not a date (YYYY-MM-DD, from 1970)", since);
    if (strcmp (cm_route_str (config, "after_fetch"), "move") == 0
        && !s_present (config, "processed_folder"))
        FAIL ("processed_folder", "processed_folder is required when after_fetch is move");
    if (cm_route_move_loops (config, err, errlen)) {
        s_set_field (field, "processed_folder");
        return -1;
    }
    return 0;
}

bool
cm_route_move_loops (const json_t *config, char *why, size_t whylen)
{
    const char *folder = cm_route_str (config, "folder");
    const char *processed = cm_route_processed_folder (config);
    /* INBOX is any case in IMAP (RFC 9051 5.1), and every name is in
       Exchange; a moved message would come back as new mail, over and
       over (a duplicate each time, never stored, never done) */
    if (!folder || !processed
        || !(strcmp (folder, processed) == 0
             || (strcasecmp (folder, processed) == 0
                 && (cm_route_bool (config, "exchange") || strcasecmp (folder, "INBOX") == 0))))
        return false;
    snprintf (why, whylen, "processed_folder '%s' is the route's folder: mail moved"
              " there would be fetched again as new mail; name another folder", processed);
    return true;
}

int
cm_route_seal (json_t *config, cm_seal_t *seal)
{
    static const char *const secrets [] = { "password", "oauth_client_secret" };
    for (int i = 0; i < 2; i++) {
        const char *clear = cm_route_str (config, secrets [i]);
        if (!clear)
            continue;
        char *sealed = cm_seal_seal (seal, clear);
        if (!sealed)
            return -1;
        char key [64];
        snprintf (key, sizeof key, "%s_sealed", secrets [i]);
        json_object_set_new (config, key, json_string (sealed));
        free (sealed);
        json_object_del (config, secrets [i]);
    }
    return 0;
}

int
cm_route_unseal (json_t *config, cm_seal_t *seal)
{
    static const char *const secrets [] = { "password", "oauth_client_secret" };
    for (int i = 0; i < 2; i++) {
        char key [64];
        snprintf (key, sizeof key, "%s_sealed", secrets [i]);
        const char *sealed = cm_route_str (config, key);
        if (!sealed)
            continue;
        char *clear = cm_seal_open (seal, sealed);
        if (!clear)
            return -1;
        cm_log_secret (clear);
        json_object_set_new (config, secrets [i], json_string (clear));
        cm_seal_wipe (&clear);
    }
    return 0;
}

json_t *
cm_route_public (const json_t *config)
{
    json_t *out = json_object ();
    for (size_t i = 0; i < NFIELDS; i++) {
        const field_t *f = &FIELDS [i];
        if (f->secret) {
            char key [64];
            snprintf (key, sizeof key, "%s_set", f->name);
            json_object_set_new (out, key, json_boolean (s_secret_present (config, f->name)));
            continue;
        }
        json_t *v = json_object_get (config, f->name);
        json_object_set (out, f->name, v ? v : json_null ());
    }
    return out;
}

void
cm_route_account (const json_t *config, char *out, size_t size)
{
    const char *host = cm_route_bool (config, "exchange")
        ? cm_route_str (config, "exchange_host")
        : cm_route_str (config, "inbound_host");
    const char *user = cm_route_str (config, "username");
    if (!user)                       /* oauth2: the mailbox is the route's address */
        user = cm_route_str (config, "email");
    snprintf (out, size, "%s@%s", user ? user : "", host ? host : "");
    for (char *p = out; *p; p++)
        *p = (char) tolower ((unsigned char) *p);
}

static void
s_endpoint (const json_t *config, cm_mailserver_t *srv, const char *side)
{
    char key [64];
    memset (srv, 0, sizeof *srv);
    snprintf (key, sizeof key, "%s_host", side);
    srv->host = cm_route_str (config, key);
    snprintf (key, sizeof key, "%s_port", side);
    srv->port = (int) cm_route_int (config, key);
    snprintf (key, sizeof key, "%s_protocol", side);
    srv->protocol = cm_route_str (config, key);
    srv->username = cm_route_str (config, "username");
    srv->password = cm_route_str (config, "password");
    srv->ca_file = cm_route_str (config, "ca_file");
    srv->timeout_ms = 15000;
    const char *level = cm_route_str (config, "log_level");
    srv->verbose = level && strcmp (level, "verbose") == 0;
    srv->route = cm_route_str (config, "name");
}

void
cm_route_inbound (const json_t *config, cm_mailserver_t *srv)
{
    s_endpoint (config, srv, "inbound");
}

void
cm_route_outbound (const json_t *config, cm_mailserver_t *srv)
{
    s_endpoint (config, srv, "outbound");
}

int
cm_route_test (bool verbose)
{
    char err [256];
    const char *field = NULL;
    json_t *config = json_object ();
    json_t *changes = json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
        "name", "soc", "email", "soc@example.test", "username", "soc",
        "password", "pw-Secret", "inbound_host", "imap.example.test",
        "inbound_protocol", "imaps", "outbound_host", "smtp.example.test",
        "outbound_protocol", "smtp+starttls");
    int rc = -1;
    if (cm_route_apply (config, changes, true, err, sizeof err, &field)) {
        if (verbose)
            printf ("  unexpected: %s\n", err);
        goto done;
    }
    if (cm_route_int (config, "inbound_port") != 993
        || cm_route_int (config, "outbound_port") != 587
        || strcmp (cm_route_str (config, "folder"), "INBOX")
        || strcmp (cm_route_str (config, "kind"), "two-way"))
        goto done;
    /* each invalid change is refused naming its field */
    static const struct { const char *json; const char *field; } bad [] = {
        { "{\"inbound_port\": 70000}", "inbound_port" },
        { "{\"inbound_protocol\": \"pop3\"}", "inbound_protocol" },
        { "{\"kind\": \"one-way\"}", "kind" },
        { "{\"auth\": \"kerberos\"}", "auth" },
        { "{\"exchange_version\": \"2013\"}", "exchange_version" },
        { "{\"national_cloud\": \"mars\"}", "national_cloud" },
        { "{\"email\": \"not an address\"}", "email" },
        { "{\"folder\": \"IN\\r\\nBOX\"}", "folder" },
        { "{\"username\": \"a\\nb\"}", "username" },
        { "{\"auth\": \"oauth2\"}", "oauth_client_id" },
        { "{\"after_fetch\": \"move\"}", "processed_folder" },
        { "{\"after_fetch\": \"move\", \"processed_folder\": \"INBOX\"}", "processed_folder" },
        { "{\"after_fetch\": \"move\", \"processed_folder\": \"inbox\"}", "processed_folder" },
        { "{\"outbound_host\": null}", "outbound_host" },
        { "{\"name\": \".\"}", "name" },
        { "{\"name\": \"..\"}", "name" },
        { "{\"since\": \"2026-02-30\"}", "since" },
        { "{\"since\": \"2026-13-01\"}", "since" },
        { "{\"since\": \"1969-12-31\"}", "since" },
        { "{\"since\": \"2026-1-011\"}", "since" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        json_t *copy = json_deep_copy (config);
        json_t *change = json_loads (bad [i].json, 0, NULL);
        field = NULL;
        int r = cm_route_apply (copy, change, false, err, sizeof err, &field);
        if (verbose)
            printf ("  %s -> %s (%s)\n", bad [i].json, err, field ? field : "");
        json_decref (copy);
        json_decref (change);
        if (r == 0 || !field || strcmp (field, bad [i].field))
            goto done;
    }
    json_t *pub = cm_route_public (config);
    char *text = json_dumps (pub, 0);
    json_decref (pub);
    bool leaked = !text || strstr (text, "pw-Secret") != NULL;
    free (text);
    if (leaked)
        goto done;
    char account [256];
    cm_route_account (config, account, sizeof account);
    if (strcmp (account, "soc@imap.example.test"))
        goto done;
    if (!cm_route_valid_address ("a.b+c@x-y.example") || cm_route_valid_address ("a@b")
        || cm_route_valid_address ("a b@c.d") || cm_route_valid_address ("@c.d"))
        goto done;
    /* a Unicode domain becomes its A-label; a Unicode local part and a
       domain IDNA2008 refuses are named; ASCII passes unchanged */
    static const struct { const char *in, *out, *why; } idn [] = {
        { "hans@b\xc3\xbc" "cher.example", "hans@xn--bcher-kva.example", NULL },
        { "Ops@M\xc3\x9cLLER.example", "Ops@xn--mller-kva.example", NULL },
        { "a@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", "a@xn--fsqu00a.xn--4rr70v", NULL },
        { "a.b+c@x-y.example", "a.b+c@x-y.example", NULL },
        { "j\xc3\xb6rg@example.test", NULL, "not ASCII" },
        { "x@\xe2\x98\x83\xe2\x80\x8d.example", NULL, "IDNA2008" },
        { "x@b\xc3\xbc\xff.example", NULL, "IDNA2008" },
    };
    for (size_t i = 0; i < sizeof idn / sizeof idn [0]; i++) {
        char out [320], why [200];
        int r = cm_route_ascii_address (idn [i].in, out, sizeof out, why, sizeof why);
        bool good = idn [i].out ? r == 0 && strcmp (out, idn [i].out) == 0
                                : r == -1 && strstr (why, idn [i].why) != NULL;
        if (verbose)
            printf ("  address %s -> %s%s\n", idn [i].in, r ? "refused: " : "", r ? why : out);
        if (!good)
            goto done;
    }
    rc = 0;
done:
    json_decref (config);
    json_decref (changes);
    return rc;
}
