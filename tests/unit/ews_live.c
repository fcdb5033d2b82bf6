/*  tests/unit/ews_live.c: live test of common/oauth.c and common/ews.c
    against the EWS / Microsoft sign-in stand-in (tests/ews/standin.py).
    Not part of the Makefile; a driver for development and review.

    Usage:
      tests/ews/start.sh DIR
      EWS_NAME=v2010 tests/ews/start.sh DIR tests/ews/config.json --server-version 2010sp2
      . DIR/ews.env; export EWS_2010_URL=$(. DIR/v2010.env; echo $EWS_URL)
      export EWS_2010_CONTROL_URL=$(. DIR/v2010.env; echo $EWS_CONTROL_URL)
      /tmp/ews_live [-v]
      tests/ews/stop.sh DIR; EWS_NAME=v2010 tests/ews/stop.sh DIR
    Reads EWS_URL, EWS_HTTP_URL, TOKEN_URL, EWS_CONTROL_URL, EWS_CA_FILE,
    EWS_2010_URL, EWS_2010_CONTROL_URL. It resets the first instance's
    mailboxes (control API) and changes the second one's server version.
    Writes its log to /tmp/ews_live.log (verbose traces) and checks that no
    secret appears there. Prints "ok - ..." / "not ok - ..." and
    "N passed, N failed"; exits 1 when any failed.

    Build: gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-format-truncation \
           -Icommon $(pkg-config --cflags libcurl libxml-2.0 jansson openssl) \
           tests/unit/ews_live.c common/ews.c common/oauth.c common/imap.c \
           common/log.c common/buf.c \
           $(pkg-config --libs libcurl libxml-2.0 jansson) -lpthread -o /tmp/ews_live */
#include "ews.h"
#include "oauth.h"
#include "log.h"
#include "buf.h"
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TENANT   "11111111-2222-3333-4444-555555555555"
#define APP      "aaaaaaaa-aaaa-4aaa-aaaa-aaaaaaaaaaaa"
#define SECRET   "Ews~App~Secret~1"
#define NOROLE   "bbbbbbbb-bbbb-4bbb-bbbb-bbbbbbbbbbbb"
#define NOROLE_SECRET "No~Role~Secret~2"
#define EXPIRED  "dddddddd-dddd-4ddd-dddd-dddddddddddd"
#define MB1      "ews1@contoso.test"
#define LOGFILE  "/tmp/ews_live.log"

static int s_passed, s_failed;
static bool s_verbose;
static const char *s_url, *s_http_url, *s_token_url, *s_control, *s_ca, *s_url2010, *s_control2010;

#define CHECK(cond, ...) do { bool ok_ = (cond); \
    printf ("%s - ", ok_ ? "ok" : "not ok"); printf (__VA_ARGS__); printf ("\n"); \
    fflush (stdout); ok_ ? s_passed++ : s_failed++; } while (0)

static const char *
s_env (const char *name)
{
    const char *v = getenv (name);
    if (!v || !*v) {
        fprintf (stderr, "ews_live: %s is not set (see the header of tests/unit/ews_live.c)\n", name);
        exit (2);
    }
    return v;
}

static size_t
s_collect (char *d, size_t s, size_t n, void *u)
{
    return cm_buf_append ((cm_buf_t *) u, d, s * n) == 0 ? s * n : 0;
}

/* Control API call; JSON answer (new reference) or NULL. */
static json_t *
s_ctl (const char *base, const char *method, const char *path, const char *body, size_t len)
{
    CURL *h = curl_easy_init ();
    cm_buf_t out;
    cm_buf_init (&out, 256 * 1024 * 1024);
    char url [1024];
    snprintf (url, sizeof url, "%s/%s", base, path);
    curl_easy_setopt (h, CURLOPT_URL, url);
    curl_easy_setopt (h, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt (h, CURLOPT_WRITEDATA, &out);
    if (strcmp (method, "POST") == 0) {
        curl_easy_setopt (h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt (h, CURLOPT_POSTFIELDSIZE, (long) (body ? len : 0));
    }
    CURLcode rc = curl_easy_perform (h);
    curl_easy_cleanup (h);
    json_t *j = NULL;
    if (rc == CURLE_OK && out.data)
        j = json_loads (out.data, 0, NULL);
    if (!j)
        fprintf (stderr, "control %s %s failed: %s\n", method, path, out.data ? out.data : "");
    cm_buf_free (&out);
    return j;
}

/* Delivers a message to ews1's inbox; returns its item id (malloc'd). */
static char *
s_deliver (const char *mime)
{
    json_t *j = s_ctl (s_control, "POST", "deliver?mailbox=" MB1 "&folder=inbox", mime, strlen (mime));
    const char *id = json_string_value (json_object_get (j, "id"));
    char *copy = id ? strdup (id) : NULL;
    json_decref (j);
    return copy;
}

static char *
s_make_mime (int n)
{
    char *m = NULL;
    if (asprintf (&m, "From: Alice <alice@example.test>\r\nTo: <" MB1 ">\r\n"
                  "Subject: live test %d \xc3\xa9t\xc3\xa9 <&>\r\nMessage-ID: <live-%d-%ld@example.test>\r\n"
                  "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n\r\nBody %d with ]]> and </t:MimeContent>\r\n",
                  n, n, (long) time (NULL), n) < 0)
        return NULL;
    return m;
}

/* One item of a folder listing by id; new reference or NULL. */
static json_t *
s_item_in (const char *folder, const char *key, const char *value, bool mime)
{
    char path [256];
    snprintf (path, sizeof path, "items?mailbox=" MB1 "&folder=%s%s", folder, mime ? "&mime=1" : "");
    json_t *j = s_ctl (s_control, "GET", path, NULL, 0);
    json_t *items = json_object_get (j, "items"), *it, *found = NULL;
    size_t i;
    json_array_foreach (items, i, it) {
        const char *v = json_string_value (json_object_get (it, key));
        if (v && strcmp (v, value) == 0) {
            found = json_incref (it);
            break;
        }
    }
    json_decref (j);
    return found;
}

static long
s_stat (const char *group, const char *key)
{
    json_t *j = s_ctl (s_control, "GET", "stats", NULL, 0);
    json_t *v = json_object_get (json_object_get (j, group), key);
    long n = json_is_integer (v) ? (long) json_integer_value (v) : 0;
    json_decref (j);
    return n;
}

static bool
s_has (const char *text, const char *needle)
{
    return text && needle && strstr (text, needle);
}

static cm_oauth_t *
s_oauth (const char *client, const char *secret, const char *tenant)
{
    return cm_oauth_new (tenant, client, secret, "global", s_token_url, "https://127.0.0.1",
                         s_ca, s_verbose, "live-oauth");
}

static void
s_test_oauth (void)
{
    char err [512];
    cm_oauth_t *o = s_oauth (APP, SECRET, TENANT);
    char *t1 = cm_oauth_token (o, err, sizeof err);
    char *t2 = cm_oauth_token (o, err, sizeof err);
    CHECK (t1 && t2 && strcmp (t1, t2) == 0 && cm_oauth_fetches (o) == 1,
           "oauth: token fetched once and cached");
    cm_oauth_invalidate (o);
    char *t3 = cm_oauth_token (o, err, sizeof err);
    CHECK (t3 && cm_oauth_fetches (o) == 2 && strcmp (t1 ? t1 : "", t3) != 0,
           "oauth: invalidate fetches a new token");
    free (t1);
    free (t2);
    free (t3);
    cm_oauth_destroy (&o);

    o = s_oauth (APP, "Wrong~Secret", TENANT);
    char *t = cm_oauth_token (o, err, sizeof err);
    CHECK (!t && s_has (err, "wrong client secret (AADSTS7000215)"), "oauth: wrong secret: %s", err);
    free (t);
    cm_oauth_destroy (&o);

    o = s_oauth (APP, SECRET, "fabrikam.test");
    t = cm_oauth_token (o, err, sizeof err);
    CHECK (!t && s_has (err, "unknown tenant fabrikam.test (AADSTS90002)"), "oauth: unknown tenant: %s", err);
    free (t);
    cm_oauth_destroy (&o);

    o = s_oauth ("99999999-9999-4999-9999-999999999999", SECRET, TENANT);
    t = cm_oauth_token (o, err, sizeof err);
    CHECK (!t && s_has (err, "not found in the directory") && s_has (err, "(AADSTS700016)"),
           "oauth: unknown client: %s", err);
    free (t);
    cm_oauth_destroy (&o);

    o = s_oauth (EXPIRED, "Old~Secret~4", "contoso.test");
    t = cm_oauth_token (o, err, sizeof err);
    CHECK (!t && s_has (err, "(AADSTS7000222)"), "oauth: expired secret: %s", err);
    free (t);
    cm_oauth_destroy (&o);

    o = cm_oauth_new (TENANT, APP, SECRET, "global", s_token_url, "https://graph.example.test",
                      s_ca, s_verbose, "live-oauth");
    t = cm_oauth_token (o, err, sizeof err);
    CHECK (!t && s_has (err, "(AADSTS500011)"), "oauth: unknown resource: %s", err);
    free (t);
    cm_oauth_destroy (&o);

    o = cm_oauth_new (TENANT, APP, SECRET, "global", "https://127.0.0.1:1", "https://127.0.0.1",
                      s_ca, s_verbose, "live-oauth");
    t = cm_oauth_token (o, err, sizeof err);
    CHECK (!t && s_has (err, "token endpoint https://127.0.0.1:1/") && s_has (err, "unreachable: connection refused"),
           "oauth: endpoint down: %s", err);
    free (t);
    cm_oauth_destroy (&o);

    o = cm_oauth_new (TENANT, APP, SECRET, "global", s_token_url, "https://127.0.0.1",
                      NULL, s_verbose, "live-oauth");
    t = cm_oauth_token (o, err, sizeof err);
    CHECK (!t && s_has (err, "certificate not trusted"), "oauth: untrusted certificate: %s", err);
    free (t);
    cm_oauth_destroy (&o);
}

/* test_inbound + test_outbound for one client. */
static void
s_both (cm_ews_t *c, const char *what, const char *folder)
{
    char sum [512] = "", err [512] = "";
    int rc = cm_ews_test_inbound (c, folder, sum, sizeof sum, err, sizeof err);
    CHECK (rc == 0, "%s: test inbound: %s", what, rc ? err : sum);
    rc = cm_ews_test_outbound (c, sum, sizeof sum, err, sizeof err);
    CHECK (rc == 0, "%s: test outbound: %s", what, rc ? err : sum);
}

static void
s_test_auth (cm_oauth_t *oauth)
{
    char sum [512], err [512];
    cm_ews_t *c = cm_ews_new (s_url, "basic", "ews1@contoso.test", "ews1-pw-Secret1", NULL, NULL,
                              "2010sp2", s_ca, s_verbose, "live-basic");
    s_both (c, "basic (UPN, 2010sp2)", "INBOX");
    cm_ews_destroy (&c);

    c = cm_ews_new (s_http_url, "basic", "CONTOSO\\ews5", "ews5-pw-Secret1", NULL, NULL,
                    "other", NULL, s_verbose, "live-basic-http");
    s_both (c, "basic over plain HTTP (CONTOSO\\ews5)", "Archive/2024");
    cm_ews_destroy (&c);

    long type1 = s_stat ("ntlm", "type1");
    c = cm_ews_new (s_url, "ntlm", "CONTOSO\\ews2", "ews2-pw-Secret1", NULL, NULL,
                    "other", s_ca, s_verbose, "live-ntlm");
    cm_ews_set_sender (c, "ews2@contoso.test");
    s_both (c, "ntlm (CONTOSO\\ews2)", "Processed");
    CHECK (s_stat ("ntlm", "type1") - type1 == 1,
           "ntlm: one handshake for all requests of the client (keep-alive), %ld",
           s_stat ("ntlm", "type1") - type1);
    cm_ews_destroy (&c);

    c = cm_ews_new (s_url, "ntlm", "ews4@contoso.test", "ews4-pw-Secret1", NULL, NULL,
                    "2010", s_ca, s_verbose, "live-ntlm-upn");
    s_both (c, "ntlm with a UPN (NTLM-only ews4)", "inbox");
    cm_ews_destroy (&c);

    c = cm_ews_new (s_url, "oauth2", NULL, NULL, oauth, MB1, "other", s_ca, s_verbose, "live-oauth2");
    s_both (c, "oauth2 (app impersonating " MB1 ")", "Processed");
    cm_ews_destroy (&c);

    /* refusals */
    c = cm_ews_new (s_url, "basic", "CONTOSO\\ews1", "wrong-password", NULL, NULL, "2010sp2",
                    s_ca, s_verbose, "live-bad");
    int rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "authentication failed (HTTP 401) for CONTOSO\\ews1: BASIC refused"),
           "basic wrong password: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "ntlm", "CONTOSO\\ews2", "wrong-password", NULL, NULL, "2010sp2",
                    s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "authentication failed (HTTP 401) for CONTOSO\\ews2: NTLM refused"),
           "ntlm wrong password: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "basic", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL, "2010sp2",
                    s_ca, s_verbose, "live-bad");
    cm_ews_set_sender (c, "ceo@example.test");
    rc = cm_ews_test_outbound (c, sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "sending as ceo@example.test refused (ErrorSendAsDenied)"),
           "test outbound with a From the account may not use: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "basic", "CONTOSO\\ews4", "ews4-pw-Secret1", NULL, NULL, "2010sp2",
                    s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "BASIC refused"), "basic for an NTLM-only user: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "basic", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL, "2010sp2",
                    s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "NoSuchFolder", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "folder NoSuchFolder not found (ErrorFolderNotFound)"),
           "missing folder: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "basic", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, "ews2@contoso.test",
                    "2010sp2", s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "impersonation of ews2@contoso.test refused (ErrorImpersonateUserDenied)"),
           "user without the impersonation right: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "ntlm", "CONTOSO\\svc-impersonator", "svc-pw-Secret1", NULL,
                    "ews3@contoso.test", "2010sp2", s_ca, s_verbose, "live-imp");
    s_both (c, "ntlm service account impersonating ews3", "INBOX");
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "oauth2", NULL, NULL, oauth, "restricted@contoso.test", "2010sp2",
                    s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "impersonation of restricted@contoso.test refused (ErrorAccessDenied)"),
           "app impersonating a mailbox it may not: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "oauth2", NULL, NULL, oauth, "nobody@contoso.test", "2010sp2",
                    s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "impersonation of nobody@contoso.test refused (ErrorNonExistentMailbox)"),
           "app impersonating a missing mailbox: %s", err);
    cm_ews_destroy (&c);

    cm_oauth_t *norole = s_oauth (NOROLE, NOROLE_SECRET, "contoso.test");
    c = cm_ews_new (s_url, "oauth2", NULL, NULL, norole, MB1, "2010sp2", s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "full_access_as_app") && s_has (err, "2000008"),
           "app without full_access_as_app: %s", err);
    cm_ews_destroy (&c);
    cm_oauth_destroy (&norole);
    cm_oauth_t *bad = s_oauth (APP, "Wrong~Secret", TENANT);
    c = cm_ews_new (s_url, "oauth2", NULL, NULL, bad, MB1, "2010sp2", s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "wrong client secret (AADSTS7000215)"),
           "oauth2 route with a wrong secret: %s", err);
    cm_ews_destroy (&c);
    cm_oauth_destroy (&bad);

    c = cm_ews_new ("https://127.0.0.1:1/EWS/Exchange.asmx", "basic", "CONTOSO\\ews1",
                    "ews1-pw-Secret1", NULL, NULL, "2010sp2", s_ca, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "connection refused: 127.0.0.1:1"), "EWS down: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "basic", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL, "2010sp2",
                    NULL, s_verbose, "live-bad");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "certificate not trusted"), "untrusted EWS certificate: %s", err);
    cm_ews_destroy (&c);
    CHECK (!cm_ews_new (s_url, "any", "u", "p", NULL, NULL, NULL, NULL, false, NULL)
           && !cm_ews_new (s_url, "basic", "u", "p", NULL, NULL, "Exchange2019", NULL, false, NULL)
           && !cm_ews_new (s_url, "oauth2", NULL, NULL, NULL, MB1, NULL, NULL, false, NULL),
           "bad arguments refused");
}

static void
s_test_versions (void)
{
    char sum [512], err [512];
    long refused = s_stat ("version_refused", "Exchange2016");
    cm_ews_t *c = cm_ews_new (s_url, "basic", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL,
                              "other", s_ca, s_verbose, "live-ver");
    int rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == 0 && strcmp (cm_ews_version (c), "Exchange2016") == 0
           && s_stat ("version_refused", "Exchange2016") == refused,
           "other on a current server: %s, no fault (%s)", cm_ews_version (c), rc ? err : sum);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url, "basic", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL,
                    "2010sp2", s_ca, s_verbose, "live-ver");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == 0 && strcmp (cm_ews_version (c), "Exchange2010_SP2") == 0,
           "explicit 2010sp2 on a current server: %s", rc ? err : sum);
    cm_ews_destroy (&c);

    c = cm_ews_new (s_url2010, "basic", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL,
                    "other", s_ca, s_verbose, "live-ver");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == 0 && strcmp (cm_ews_version (c), "Exchange2010_SP2") == 0,
           "other on a 2010sp2 server settles on %s (%s)", cm_ews_version (c), rc ? err : sum);
    /* remembered: the next operations send Exchange2010_SP2 straight away */
    json_t *j = s_ctl (s_control2010, "GET", "stats", NULL, 0);
    long before = (long) json_integer_value (json_object_get (json_object_get (j, "version_refused"), "Exchange2016"));
    json_decref (j);
    rc = cm_ews_test_outbound (c, sum, sizeof sum, err, sizeof err);
    j = s_ctl (s_control2010, "GET", "stats", NULL, 0);
    long after = (long) json_integer_value (json_object_get (json_object_get (j, "version_refused"), "Exchange2016"));
    json_decref (j);
    CHECK (rc == 0 && before >= 1 && after == before, "negotiated version remembered (%ld refusals before, %ld after)",
           before, after);
    cm_ews_destroy (&c);

    json_decref (s_ctl (s_control2010, "POST", "server-version?value=2007sp1", "", 0));
    c = cm_ews_new (s_url2010, "ntlm", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL,
                    "2010", s_ca, s_verbose, "live-ver");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == -1 && s_has (err, "version Exchange2010 refused by the server (ErrorInvalidServerVersion)"),
           "2010 on a 2007sp1 server: %s", err);
    cm_ews_destroy (&c);
    c = cm_ews_new (s_url2010, "ntlm", "CONTOSO\\ews1", "ews1-pw-Secret1", NULL, NULL,
                    "other", s_ca, s_verbose, "live-ver");
    rc = cm_ews_test_inbound (c, "INBOX", sum, sizeof sum, err, sizeof err);
    CHECK (rc == 0 && strcmp (cm_ews_version (c), "Exchange2007_SP1") == 0,
           "other on a 2007sp1 server settles on %s", cm_ews_version (c));
    cm_ews_destroy (&c);
    json_decref (s_ctl (s_control2010, "POST", "server-version?value=2010sp2", "", 0));
}

/* Ingest and send through one oauth2 client (the fetcher's and sender's path). */
static void
s_test_ingest (cm_oauth_t *oauth)
{
    char err [512];
    json_decref (s_ctl (s_control, "POST", "reset", "", 0));
    cm_ews_t *c = cm_ews_new (s_url, "oauth2", NULL, NULL, oauth, MB1, "other", s_ca,
                              s_verbose, "live-ingest");
    char *inbox = NULL;
    int rc = cm_ews_folder_id (c, "INBOX", &inbox, err, sizeof err);
    CHECK (rc == 0 && inbox && strcmp (inbox, "inbox") == 0, "folder id of INBOX: %s", inbox ? inbox : err);

    enum { N = 8 };
    char *mime [N] = { NULL }, *ids [N] = { NULL };
    int delivered = 0;
    for (; delivered < 3; delivered++) {
        mime [delivered] = s_make_mime (delivered);
        ids [delivered] = s_deliver (mime [delivered]);
    }
    cm_ews_item_t *all = calloc (64, sizeof *all);
    size_t nall = 0;
    char *state = NULL;
    bool more = true;
    int calls = 0;
    bool paged_ok = true;
    /* three pages of 2 with new mail between pages, then until done */
    while ((more || calls < 3) && calls < 20) {
        cm_ews_item_t *items = NULL;
        size_t n = 0;
        char *next = NULL;
        rc = cm_ews_sync (c, inbox, state, 2, &items, &n, &next, &more, err, sizeof err);
        calls++;
        if (rc) {
            paged_ok = false;
            printf ("# sync failed: %s\n", err);
            break;
        }
        if (n > 2)
            paged_ok = false;
        for (size_t i = 0; i < n && nall < 64; i++)
            all [nall++] = items [i];
        free (items);
        free (state);
        state = next;
        if (calls <= 2 && delivered < N) {       /* mail arrives between pages */
            for (int k = 0; k < 2 + calls && delivered < N; k++, delivered++) {
                mime [delivered] = s_make_mime (delivered);
                ids [delivered] = s_deliver (mime [delivered]);
            }
        }
        if (calls == 3)
            CHECK (more, "sync: still more after 3 calls of 2 (paging)");
    }
    bool all_found = nall == (size_t) delivered;
    for (int d = 0; d < delivered; d++) {
        int seen = 0;
        for (size_t i = 0; i < nall; i++)
            if (ids [d] && strcmp (all [i].item_id, ids [d]) == 0)
                seen++;
        if (seen != 1)
            all_found = false;
    }
    CHECK (paged_ok && all_found && !more, "sync: %d messages delivered during paging, %zu found "
           "exactly once over %d calls", delivered, nall, calls);
    /* nothing new: an empty page with the same contract */
    cm_ews_item_t *none = NULL;
    size_t nn = 9;
    char *st2 = NULL;
    rc = cm_ews_sync (c, inbox, state, 10, &none, &nn, &st2, &more, err, sizeof err);
    CHECK (rc == 0 && nn == 0 && !more && st2, "sync: no changes after the last page");
    cm_ews_item_free (none, nn);
    free (st2);
    st2 = NULL;
    rc = cm_ews_sync (c, inbox, "AAAAbogus", 10, &none, &nn, &st2, &more, err, sizeof err);
    CHECK (rc == 2 && s_has (err, "ErrorInvalidSyncStateData"), "sync: bogus state -> 2: %s", err);

    /* MIME identical to what was delivered */
    int same = 0;
    for (size_t i = 0; i < nall; i++) {
        char *data = NULL;
        size_t len = 0;
        rc = cm_ews_get_mime (c, &all [i], 1024 * 1024, &data, &len, err, sizeof err);
        for (int d = 0; d < delivered; d++)
            if (rc == 0 && ids [d] && strcmp (ids [d], all [i].item_id) == 0
                && len == strlen (mime [d]) && memcmp (data, mime [d], len) == 0)
                same++;
        if (rc)
            printf ("# get_mime: %s\n", err);
        free (data);
    }
    CHECK (same == (int) nall && nall > 0, "get_mime: %d of %zu messages byte-identical", same, nall);
    char *data = NULL;
    size_t len = 0;
    rc = cm_ews_get_mime (c, &all [0], 20, &data, &len, err, sizeof err);
    CHECK (rc == 1 && !data && len == strlen (mime [0]), "get_mime: over max_bytes -> 1 with size %zu", len);

    /* a 12 MB message: beyond libxml2's default text node limit */
    {
        size_t big = 12 * 1024 * 1024;
        char *m = malloc (big + 1);
        int hl = snprintf (m, big, "From: <" MB1 ">\r\nTo: <b@example.test>\r\nSubject: big\r\n"
                           "Message-ID: <big-%ld@example.test>\r\n\r\n", (long) time (NULL));
        for (size_t k = (size_t) hl; k < big; k++)
            m [k] = (k % 78 == 76) ? '\r' : (k % 78 == 77) ? '\n' : (char) ('a' + k % 26);
        m [big] = 0;
        cm_ews_item_t bi = { s_deliver (m), NULL };
        char *bd = NULL;
        size_t bl = 0;
        rc = cm_ews_get_mime (c, &bi, 64 * 1024 * 1024, &bd, &bl, err, sizeof err);
        CHECK (rc == 0 && bl == big && memcmp (bd, m, big) == 0, "get_mime: 12 MB message byte-identical %s",
               rc ? err : "");
        free (bd);
        bd = NULL;
        rc = cm_ews_get_mime (c, &bi, 1024 * 1024, &bd, &bl, err, sizeof err);
        CHECK (rc == 1 && !bd && bl == big, "get_mime: 12 MB over a 1 MB limit -> 1, size %zu, answer capped", bl);
        char reply [512];
        rc = cm_ews_send (c, m, big, reply, sizeof reply);
        CHECK (rc == 0, "send: 12 MB message %s", rc ? reply : "");
        free (bi.item_id);
        free (bi.change_key);
        free (m);
    }

    /* mark read with the current key, then with a stale one */
    char *old_key = strdup (all [0].change_key);
    rc = cm_ews_mark_read (c, &all [0], err, sizeof err);
    json_t *it = s_item_in ("inbox", "id", all [0].item_id, false);
    CHECK (rc == 0 && it && json_is_true (json_object_get (it, "is_read"))
           && strcmp (old_key, all [0].change_key) != 0,
           "mark_read: stand-in shows IsRead, new ChangeKey %s", rc ? err : "");
    json_decref (it);
    cm_ews_item_t stale = { strdup (all [0].item_id), old_key };
    long refused = s_stat ("operations", "UpdateItem");
    rc = cm_ews_mark_read (c, &stale, err, sizeof err);
    CHECK (rc == 0 && s_stat ("operations", "UpdateItem") - refused == 2,
           "mark_read: stale ChangeKey fetched again and retried once %s", rc ? err : "");
    free (stale.item_id);
    free (stale.change_key);
    cm_ews_item_t nokey = { strdup (all [1].item_id), NULL };
    rc = cm_ews_mark_read (c, &nokey, err, sizeof err);
    CHECK (rc == 0 && nokey.change_key, "mark_read: without a ChangeKey it is fetched first");
    free (nokey.item_id);
    free (nokey.change_key);

    /* move to Processed */
    char *processed = NULL;
    rc = cm_ews_folder_id (c, "Processed", &processed, err, sizeof err);
    CHECK (rc == 0 && processed && strchr (processed, '\t'), "folder id of Processed");
    char *old_id = strdup (all [1].item_id);
    rc = processed ? cm_ews_move (c, &all [1], processed, err, sizeof err) : -1;
    it = s_item_in ("Processed", "id", all [1].item_id, false);
    json_t *gone = s_item_in ("inbox", "id", old_id, false);
    CHECK (rc == 0 && it && !gone && strcmp (old_id, all [1].item_id) != 0,
           "move: item in Processed with a new id, gone from inbox %s", rc ? err : "");
    json_decref (it);
    json_decref (gone);
    cm_ews_item_t moved = { old_id, NULL };
    rc = processed ? cm_ews_move (c, &moved, processed, err, sizeof err) : -1;
    CHECK (rc == 2, "move: the old id again -> 2 (already moved): %s", err);
    rc = cm_ews_get_mime (c, &moved, 1024, &data, &len, err, sizeof err);
    CHECK (rc == 2, "get_mime: old id after the move -> 2");
    rc = cm_ews_mark_read (c, &moved, err, sizeof err);
    CHECK (rc == 2, "mark_read: old id after the move -> 2");
    free (moved.item_id);
    free (moved.change_key);

    /* token expiry mid-run: invalidate-and-retry, transparent to the caller */
    unsigned fetches = cm_oauth_fetches (oauth);
    long expired = s_stat ("auth_refused", "bearer expired");
    json_decref (s_ctl (s_control, "POST", "expire-tokens", "", 0));
    rc = cm_ews_get_mime (c, &all [2], 1024 * 1024, &data, &len, err, sizeof err);
    CHECK (rc == 0 && cm_oauth_fetches (oauth) == fetches + 1
           && s_stat ("auth_refused", "bearer expired") == expired + 1,
           "token expired mid-run: one 401, one new token, operation succeeded %s", rc ? err : "");
    free (data);
    data = NULL;

    /* send: sentitems holds the identical MIME */
    char msgid [128];
    snprintf (msgid, sizeof msgid, "<send-%ld-%d@casemail.test>", (long) time (NULL), getpid ());
    char *out = NULL;
    if (asprintf (&out, "From: <" MB1 ">\r\nTo: <someone@example.test>\r\nSubject: [INC-42] "
                  "live send\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; "
                  "charset=utf-8\r\n\r\nHello \xe2\x82\xac\r\n", msgid) < 0)
        out = NULL;
    char reply [512] = "";
    rc = cm_ews_send (c, out, strlen (out), reply, sizeof reply);
    it = s_item_in ("sentitems", "message_id", msgid, true);
    const char *sent_mime = json_string_value (json_object_get (it, "mime"));
    CHECK (rc == 0 && sent_mime && strcmp (sent_mime, out) == 0,
           "send: Sent Items holds the identical MIME %s", reply);
    json_decref (it);
    free (out);

    const char *spoof = "From: <ceo@example.test>\r\nTo: <x@example.test>\r\nSubject: s\r\n\r\nx\r\n";
    rc = cm_ews_send (c, spoof, strlen (spoof), reply, sizeof reply);
    CHECK (rc == 2 && s_has (reply, "sending as the message's From address refused (ErrorSendAsDenied)"), "send as another address -> 2: %s", reply);
    const char *norcpt = "From: <" MB1 ">\r\nSubject: s\r\n\r\nx\r\n";
    rc = cm_ews_send (c, norcpt, strlen (norcpt), reply, sizeof reply);
    CHECK (rc == 2 && s_has (reply, "ErrorInvalidRecipients"), "send without recipients -> 2: %s", reply);
    json_decref (s_ctl (s_control, "POST", "inject?operation=CreateItem&count=1", "", 0));
    const char *ok = "From: <" MB1 ">\r\nTo: <x@example.test>\r\nSubject: s\r\n\r\nx\r\n";
    rc = cm_ews_send (c, ok, strlen (ok), reply, sizeof reply);
    CHECK (rc == 1 && s_has (reply, "ErrorServerBusy"), "send while the server is busy -> 1: %s", reply);
    rc = cm_ews_send (c, ok, strlen (ok), reply, sizeof reply);
    CHECK (rc == 0, "send after the busy spell -> 0 %s", rc ? reply : "");
    cm_ews_t *badc = cm_ews_new ("https://127.0.0.1:1/EWS/Exchange.asmx", "basic", "CONTOSO\\ews1",
                                 "ews1-pw-Secret1", NULL, NULL, "2010sp2", s_ca, false, "live-bad");
    rc = cm_ews_send (badc, ok, strlen (ok), reply, sizeof reply);
    CHECK (rc == 1 && s_has (reply, "connection refused"), "send with the server down -> 1: %s", reply);
    cm_ews_destroy (&badc);

    cm_ews_item_free (all, nall);
    for (int d = 0; d < N; d++) {
        free (mime [d]);
        free (ids [d]);
    }
    free (state);
    free (inbox);
    free (processed);
    cm_ews_destroy (&c);
    CHECK (c == NULL, "destroy nulls the pointer");
}

/* Nothing secret in the log; traces redact Authorization and elide MIME. */
static void
s_test_log (const char *token)
{
    FILE *f = fopen (LOGFILE, "r");
    cm_buf_t log;
    cm_buf_init (&log, 512 * 1024 * 1024);
    char chunk [65536];
    size_t n;
    while (f && (n = fread (chunk, 1, sizeof chunk, f)) > 0)
        cm_buf_append (&log, chunk, n);
    if (f)
        fclose (f);
    const char *text = log.data ? log.data : "";
    static const char *secrets [] = {
        SECRET, NOROLE_SECRET, "ews1-pw-Secret1", "ews2-pw-Secret1", "ews4-pw-Secret1",
        "ews5-pw-Secret1", "svc-pw-Secret1", "Old~Secret~4", "Wrong~Secret", "wrong-password",
    };
    bool clean = true;
    for (size_t i = 0; i < sizeof secrets / sizeof secrets [0]; i++)
        if (strstr (text, secrets [i])) {
            printf ("# secret %zu found in the log\n", i);
            clean = false;
        }
    if (token && strstr (text, token))
        clean = false;
    if (s_verbose) {
        CHECK (clean && log.len > 0, "no password, client secret or token in %zu bytes of verbose log", log.len);
        int sent = 0, bare = 0;
        for (const char *p = strstr (text, "> Authorization:"); p; p = strstr (p + 1, "> Authorization:")) {
            sent++;
            if (strncmp (p, "> Authorization: [REDACTED]\n", 28) != 0)
                bare++;
        }
        CHECK (sent > 0 && bare == 0 && !strstr (text, "Bearer ey") && !strstr (text, "Basic Q"),
               "Authorization headers redacted in traces (%d sent, %d shown)", sent, bare);
        CHECK (strstr (text, "bytes of MIME]") != NULL, "MIME elided in traces");
        CHECK (strstr (text, "<t:RequestServerVersion") != NULL, "SOAP requests traced");
    }
    else
        CHECK (clean, "no password, client secret or token in the log (run with -v for traces)");
    cm_buf_free (&log);
}

int
main (int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp (argv [i], "-v") == 0)
            s_verbose = true;
    s_url = s_env ("EWS_URL");
    s_http_url = s_env ("EWS_HTTP_URL");
    s_token_url = s_env ("TOKEN_URL");
    s_control = s_env ("EWS_CONTROL_URL");
    s_ca = s_env ("EWS_CA_FILE");
    s_url2010 = s_env ("EWS_2010_URL");
    s_control2010 = s_env ("EWS_2010_CONTROL_URL");
    unlink (LOGFILE);
    cm_log_init ("ews_live", LOGFILE);
    curl_global_init (CURL_GLOBAL_DEFAULT);

    CHECK (cm_oauth_selftest (false) == 0, "cm_oauth_selftest");
    CHECK (cm_ews_selftest (false) == 0, "cm_ews_selftest");
    json_decref (s_ctl (s_control, "POST", "reset", "", 0));
    s_test_oauth ();
    cm_oauth_t *oauth = s_oauth (APP, SECRET, TENANT);
    s_test_auth (oauth);
    s_test_versions ();
    s_test_ingest (oauth);
    char err [256];
    char *token = cm_oauth_token (oauth, err, sizeof err);
    s_test_log (token);
    free (token);
    cm_oauth_destroy (&oauth);
    curl_global_cleanup ();
    printf ("%d passed, %d failed\n", s_passed, s_failed);
    return s_failed ? 1 : 0;
}
