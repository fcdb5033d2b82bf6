/*  tests/unit/imap_smtp_live.c: live test of common/imap.c and
    common/smtp.c against the private test stack (tests/stack/start.sh),
    built as bin/casemail-mail-test and run by tests/integration/
    mailclient.sh as the user carol.

    Usage:  tests/stack/start.sh DIR && . DIR/env && casemail-mail-test [-v]
            casemail-mail-test --selftest      (offline parser tests only)
    Reads CM_HOST, CM_IMAP_PORT, CM_IMAPS_PORT, CM_IMAP_NOTLS_HOST/_PORT,
    CM_IMAPS_UNTRUSTED_HOST/_PORT, CM_SUBMISSION_PORT, CM_SMTPS_PORT,
    CM_SMTP_NOTLS_PORT, CM_CA_FILE; CM_USER / CM_PASS (default alice).
    Prints one line per check and exits 1 if any failed. It changes the
    mailbox of CM_USER (appends and moves test messages).

    Build: make (bin/casemail-mail-test). */
#include "imap.h"
#include "smtp.h"
#include "log.h"
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int s_failed, s_passed;
static bool s_verbose;

#define EXPECT(cond, ...) do { \
    if (cond) { s_passed++; printf ("ok   "); } \
    else { s_failed++; printf ("FAIL "); } \
    printf (__VA_ARGS__); printf ("\n"); fflush (stdout); } while (0)

static const char *
s_env (const char *name, const char *dflt)
{
    const char *v = getenv (name);
    return v && *v ? v : dflt;
}

static cm_mailserver_t
s_srv (const char *protocol, const char *port_var)
{
    cm_mailserver_t srv = {
        .host = s_env ("CM_HOST", "127.0.0.1"),
        .port = atoi (s_env (port_var, "0")),
        .protocol = protocol,
        .username = s_env ("CM_USER", "alice@example.test"),
        .password = s_env ("CM_PASS", "alice-pw-Secret1"),
        .ca_file = getenv ("CM_CA_FILE"),
        .timeout_ms = 5000,
        .verbose = s_verbose,
        .route = "live",
        .helo = "casemail.test",
    };
    return srv;
}

static int64_t
s_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    const char *data;
    size_t left;
} s_src_t;

static size_t
s_read (char *buf, size_t size, size_t n, void *ud)
{
    s_src_t *s = ud;
    size_t k = size * n < s->left ? size * n : s->left;
    memcpy (buf, s->data, k);
    s->data += k;
    s->left -= k;
    return k;
}

static size_t
s_sink (char *p, size_t size, size_t n, void *ud)
{
    char *out = ud;
    size_t used = strlen (out);
    size_t k = size * n;
    if (used + k < 4000) {
        memcpy (out + used, p, k);
        out [used + k] = 0;
    }
    return k;
}

/* Side channel with plain libcurl: APPEND a message, or run a custom
   request and collect its untagged output. */
static int
s_side (const cm_mailserver_t *srv, const char *folder, const char *custom,
        const char *append, char *out)
{
    char url [256];
    snprintf (url, sizeof url, "imaps://%s:%s/%s", srv->host,
              s_env ("CM_IMAPS_PORT", "0"), folder);
    CURL *h = curl_easy_init ();
    curl_easy_setopt (h, CURLOPT_URL, url);
    curl_easy_setopt (h, CURLOPT_USERNAME, srv->username);
    curl_easy_setopt (h, CURLOPT_PASSWORD, srv->password);
    curl_easy_setopt (h, CURLOPT_CAINFO, srv->ca_file);
    curl_easy_setopt (h, CURLOPT_NOSIGNAL, 1L);
    s_src_t src = { append, append ? strlen (append) : 0 };
    char dummy [4096] = "";
    if (append) {
        curl_easy_setopt (h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt (h, CURLOPT_READFUNCTION, s_read);
        curl_easy_setopt (h, CURLOPT_READDATA, &src);
        curl_easy_setopt (h, CURLOPT_INFILESIZE, (long) src.left);
    }
    if (custom)
        curl_easy_setopt (h, CURLOPT_CUSTOMREQUEST, custom);
    curl_easy_setopt (h, CURLOPT_WRITEFUNCTION, s_sink);
    curl_easy_setopt (h, CURLOPT_WRITEDATA, out ? out : dummy);
    if (out)
        out [0] = 0;
    CURLcode rc = curl_easy_perform (h);
    if (rc)
        printf ("     (side request %s on %s: %s)\n", custom ? custom : "APPEND",
                folder, curl_easy_strerror (rc));
    curl_easy_cleanup (h);
    return rc == CURLE_OK ? 0 : -1;
}

static const char *s_msg =
    "From: Carol <carol@example.test>\r\n"
    "To: alice@example.test\r\n"
    "Subject: live test\r\n"
    "Message-ID: <live-%d@example.test>\r\n"
    "\r\n"
    "Hello.\r\n"
    ".leading dot line\r\n";

typedef struct {
    cm_mailserver_t srv;
    int delay_ms;
} s_appender_t;

static void *
s_appender (void *arg)
{
    s_appender_t *a = arg;
    usleep ((useconds_t) a->delay_ms * 1000);
    char msg [512];
    snprintf (msg, sizeof msg, s_msg, (int) getpid () + 7);
    s_side (&a->srv, "INBOX", NULL, msg, NULL);
    return NULL;
}

typedef struct {
    const char *conf;
    const char *user;
} s_kicker_t;

static void *
s_kicker (void *arg)
{
    s_kicker_t *k = arg;
    char cmd [512];
    usleep (800000);
    snprintf (cmd, sizeof cmd, "doveadm -c '%s' kick '%s' >/dev/null 2>&1",
              k->conf, k->user);
    if (system (cmd) != 0)
        printf ("     (doveadm kick failed)\n");
    return NULL;
}

static void
s_imap_tests (void)
{
    char sum [512], err [512];
    cm_mailserver_t srv;

    srv = s_srv ("imap+starttls", "CM_IMAP_PORT");
    int r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == 0, "imap+starttls INBOX: %s", r ? err : sum);
    srv = s_srv ("imaps", "CM_IMAPS_PORT");
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == 0, "imaps INBOX: %s", r ? err : sum);
    srv = s_srv ("imap", "CM_IMAP_NOTLS_PORT");
    srv.host = s_env ("CM_IMAP_NOTLS_HOST", "127.0.0.2");
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == 0, "imap (no TLS) INBOX: %s", r ? err : sum);
    srv.protocol = "imap+starttls";
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strstr (err, "STARTTLS not offered by "),
            "imap+starttls without STARTTLS: %s", err);

    srv = s_srv ("imaps", "CM_IMAPS_PORT");
    srv.password = "wrong-pw";
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strncmp (err, "authentication failed for ", 26) == 0
                 && strcmp (err + 26, srv.username) == 0,
            "wrong password: %s", err);
    srv = s_srv ("imaps", "CM_IMAPS_PORT");
    srv.port = 1;
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strcmp (err, "connection refused: 127.0.0.1:1") == 0,
            "closed port: %s", err);
    srv = s_srv ("imaps", "CM_IMAPS_PORT");
    srv.host = "no-such-host.invalid";
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strcmp (err, "name not resolved: "
                               "no-such-host.invalid") == 0,
            "unknown host: %s", err);
    srv = s_srv ("imaps", "CM_IMAPS_PORT");
    srv.ca_file = NULL;
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strncmp (err, "certificate not trusted: ", 25) == 0,
            "no CA file: %s", err);
    srv = s_srv ("imaps", "CM_IMAPS_UNTRUSTED_PORT");
    srv.host = s_env ("CM_IMAPS_UNTRUSTED_HOST", "127.0.0.3");
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strncmp (err, "certificate not trusted: ", 25) == 0,
            "self-signed server: %s", err);
    srv = s_srv ("imap+starttls", "CM_IMAPS_PORT");
    srv.timeout_ms = 1500;
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1, "imap+starttls on the implicit TLS port: %s", err);

    srv = s_srv ("imaps", "CM_IMAPS_PORT");
    const char *bad [][2] = {
        { "Nope", "folder Nope does not exist" },
        { "Readonly", "folder Readonly is read-only" },
        { "Archive/2024", "folder Archive/2024 is a subfolder" },
        { "shared/bob/INBOX", "folder shared/bob/INBOX is in a shared "
                              "mailbox" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        r = cm_imap_test (&srv, bad [i][0], sum, sizeof sum, err, sizeof err);
        EXPECT (r == -1 && strcmp (err, bad [i][1]) == 0, "folder %s: %s",
                bad [i][0], r ? err : sum);
    }
    r = cm_imap_test (&srv, "inbox", sum, sizeof sum, err, sizeof err);
    EXPECT (r == 0, "folder inbox (any case): %s", r ? err : sum);
    /* a UTF-8 folder name travels as modified UTF-7 */
    s_side (&srv, "", "CREATE \"Entw&APw-rfe\"", NULL, NULL);
    r = cm_imap_test (&srv, "Entw\xc3\xbcrfe", sum, sizeof sum, err,
                      sizeof err);
    EXPECT (r == 0, "UTF-8 folder: %s", r ? err : sum);

    /* search, fetch, flags, move */
    cm_imap_t *imap = cm_imap_open (&srv, "INBOX", err, sizeof err);
    EXPECT (imap != NULL, "open INBOX: %s", imap ? "ok" : err);
    if (!imap)
        return;
    uint64_t next = cm_imap_uidnext (imap);
    char msg [512], out [4096];
    snprintf (msg, sizeof msg, s_msg, (int) getpid ());
    s_side (&srv, "INBOX", NULL, msg, NULL);
    s_side (&srv, "INBOX", NULL, msg, NULL);
    uint64_t *uids = NULL;
    size_t count = 0;
    r = cm_imap_search (imap, next, 0, NULL, 0, &uids, &count, err, sizeof err);
    EXPECT (r == 0 && count == 2 && uids [0] >= next,
            "search from UID %" PRIu64 ": %zu UIDs", next, count);
    if (count != 2) {
        free (uids);
        cm_imap_destroy (&imap);
        return;
    }
    uint64_t a = uids [0], b = uids [1];
    char cmd [64];
    free (uids);
    r = cm_imap_search (imap, next, 0, NULL, 1, &uids, &count, err, sizeof err);
    EXPECT (r == 0 && count == 1 && uids [0] == a, "search capped at 1");
    free (uids);
    r = cm_imap_search (imap, next, a, NULL, 0, &uids, &count, err, sizeof err);
    EXPECT (r == 0 && count == 1 && uids [0] == a, "search up to UID %" PRIu64
            " finds only it: %zu", a, count);
    free (uids);
    r = cm_imap_search (imap, b, a, NULL, 0, &uids, &count, err, sizeof err);
    EXPECT (r == 0 && count == 0, "search of an empty range finds nothing: %zu", count);
    free (uids);
    r = cm_imap_search (imap, b + 100, 0, NULL, 0, &uids, &count, err,
                        sizeof err);
    EXPECT (r == 0 && count == 0, "search above UIDNEXT finds nothing "
            "(n:* quirk): %zu", count);
    free (uids);
    r = cm_imap_search (imap, next, 0, "2001-01-01", 0, &uids, &count, err,
                        sizeof err);
    EXPECT (r == 0 && count == 2, "search SINCE 2001-01-01: %zu", count);
    free (uids);

    /* libcurl's APPEND stores messages as \Seen: make them unread */
    snprintf (cmd, sizeof cmd, "UID STORE %" PRIu64 ":%" PRIu64
              " -FLAGS (\\Seen)", a, b);
    s_side (&srv, "INBOX", cmd, NULL, NULL);
    char *data = NULL;
    size_t len = 0;
    bool too_big = false;
    r = cm_imap_fetch (imap, a, 1 << 20, true, &data, &len, &too_big, err,
                       sizeof err);
    EXPECT (r == 0 && len == strlen (msg) && memcmp (data, msg, len) == 0,
            "fetch UID %" PRIu64 " with peek: rc %d, %zu bytes %s", a, r,
            len, r ? err : "");
    free (data);
    /* without a prefetch the body session is read-write: the \Seen its
       BODY[] set is taken back for the batch */
    r = cm_imap_restore_unseen (imap, err, sizeof err);
    EXPECT (r == 0, "restore_unseen after a peek fetch %s", r ? err : "");
    snprintf (cmd, sizeof cmd, "UID FETCH %" PRIu64 " FLAGS", a);
    s_side (&srv, "INBOX", cmd, NULL, out);
    EXPECT (!strstr (out, "\\Seen"), "peek kept it unread: %.100s", out);
    r = cm_imap_fetch (imap, b, 10, false, &data, &len, &too_big, err,
                       sizeof err);
    EXPECT (r == 1 && too_big && len == strlen (msg),
            "fetch over max_bytes: rc %d, size %zu", r, len);
    r = cm_imap_fetch (imap, b + 1000, 1 << 20, false, &data, &len, &too_big,
                       err, sizeof err);
    EXPECT (r == 2, "fetch a missing UID: rc %d", r);
    r = cm_imap_fetch (imap, b, 1 << 20, false, &data, &len, &too_big, err,
                       sizeof err);
    EXPECT (r == 0, "fetch without peek: rc %d %s", r, r ? err : "");
    free (data);
    snprintf (cmd, sizeof cmd, "UID FETCH %" PRIu64 " FLAGS", b);
    s_side (&srv, "INBOX", cmd, NULL, out);
    EXPECT (strstr (out, "\\Seen") != NULL, "fetch without peek sets \\Seen");
    r = cm_imap_mark_seen (imap, a, err, sizeof err);
    snprintf (cmd, sizeof cmd, "UID FETCH %" PRIu64 " FLAGS", a);
    s_side (&srv, "INBOX", cmd, NULL, out);
    EXPECT (r == 0 && strstr (out, "\\Seen"), "mark_seen: %s",
            r ? err : out);
    EXPECT (cm_imap_folder_exists (imap, "Processed", err, sizeof err) == 1,
            "folder_exists Processed");
    EXPECT (cm_imap_folder_exists (imap, "Nope", err, sizeof err) == 0,
            "folder_exists Nope");
    /* a processed folder that is missing is created (the server's
       TRYCREATE), unless the server refuses that too */
    r = cm_imap_move (imap, a, "Readonly/Sub", err, sizeof err);
    EXPECT (r == -1 && strncmp (err, "folder Readonly/Sub does not exist and cannot be"
                                " created: ", 58) == 0,
            "move to a folder that cannot be created: %s", err);
    char made [64];
    snprintf (made, sizeof made, "Made%d", (int) getpid ());
    EXPECT (cm_imap_folder_exists (imap, made, err, sizeof err) == 0, "folder_exists %s", made);
    r = cm_imap_move (imap, a, made, err, sizeof err);
    EXPECT (r == 0 && cm_imap_folder_exists (imap, made, err, sizeof err) == 1,
            "move to a missing folder creates it: %s", r ? err : "ok");
    snprintf (cmd, sizeof cmd, "LSUB \"\" \"%s\"", made);
    s_side (&srv, "INBOX", cmd, NULL, out);
    EXPECT (strstr (out, made) != NULL, "and subscribes to it: %.100s", out);
    snprintf (cmd, sizeof cmd, "DELETE \"%s\"", made);
    s_side (&srv, "", cmd, NULL, NULL);     /* nothing left in the mailbox */
    r = cm_imap_move (imap, b, "Processed", err, sizeof err);
    EXPECT (r == 0, "move to Processed: %s", r ? err : "ok");
    r = cm_imap_search (imap, next, 0, NULL, 0, &uids, &count, err, sizeof err);
    EXPECT (r == 0 && count == 0, "moved messages gone: %zu left", count);
    free (uids);
    r = cm_imap_fetch (imap, a, 1 << 20, false, &data, &len, &too_big, err,
                       sizeof err);
    EXPECT (r == 2, "fetch of the moved UID: rc %d", r);
    EXPECT (cm_imap_noop (imap, err, sizeof err) == 0, "noop");

    /* waiting */
    volatile int stop = 0;
    int64_t t0 = s_ms ();
    r = cm_imap_wait (imap, 1000, &stop, err, sizeof err);
    EXPECT (r == 0 && s_ms () - t0 >= 900, "wait times out: rc %d after "
            "%" PRId64 " ms", r, s_ms () - t0);
    stop = 1;
    t0 = s_ms ();
    r = cm_imap_wait (imap, 10000, &stop, err, sizeof err);
    EXPECT (r == 0 && s_ms () - t0 < 2000, "wait with stop set: rc %d after "
            "%" PRId64 " ms", r, s_ms () - t0);
    stop = 0;
    uint64_t before = cm_imap_exists (imap);
    s_appender_t ap = { srv, 1000 };
    pthread_t th;
    pthread_create (&th, NULL, s_appender, &ap);
    t0 = s_ms ();
    r = cm_imap_wait (imap, 20000, &stop, err, sizeof err);
    EXPECT (r == 1 && s_ms () - t0 < 10000, "wait wakes on new mail: rc %d "
            "after %" PRId64 " ms, EXISTS %" PRIu64 " -> %" PRIu64, r,
            s_ms () - t0, before, cm_imap_exists (imap));
    pthread_join (th, NULL);
    r = cm_imap_search (imap, b + 1, 0, NULL, 0, &uids, &count, err, sizeof err);
    EXPECT (r == 0 && count == 1, "new mail found by search: %zu", count);
    free (uids);
    /* mail arriving during a command is reported by the next wait */
    s_side (&srv, "INBOX", NULL, msg, NULL);
    cm_imap_noop (imap, err, sizeof err);
    t0 = s_ms ();
    r = cm_imap_wait (imap, 5000, &stop, err, sizeof err);
    EXPECT (r == 1 && s_ms () - t0 < 100, "wait reports EXISTS seen by NOOP: "
            "rc %d", r);
    /* the server drops the session during IDLE: wait says so */
    const char *conf = getenv ("CM_DOVECOT_CONF");
    if (conf) {
        s_kicker_t k = { conf, srv.username };
        pthread_create (&th, NULL, s_kicker, &k);
        t0 = s_ms ();
        r = cm_imap_wait (imap, 10000, &stop, err, sizeof err);
        EXPECT (r == -1 && s_ms () - t0 < 5000, "kicked during IDLE: rc %d "
                "after %" PRId64 " ms: %s", r, s_ms () - t0, err);
        pthread_join (th, NULL);
        r = cm_imap_noop (imap, err, sizeof err);
        EXPECT (r == -1, "a broken session stays broken: %s", err);
    }
    cm_imap_destroy (&imap);
    cm_imap_destroy (&imap);
    EXPECT (imap == NULL, "destroy twice");

    /* a bearer token is only offered as XOAUTH2/OAUTHBEARER: a token the
       server refuses fails the login, with no fallback to the password
       (which would succeed). (Without the identity stand-in running,
       Dovecot can't check the token: NO [UNAVAILABLE], told as such.) */
    srv = s_srv ("imaps", "CM_IMAPS_PORT");
    srv.oauth_token = "ya29.live-test-token";
    r = cm_imap_test (&srv, "INBOX", sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && (strstr (err, "no supported authentication mechanism")
                        || strstr (err, "authentication failed")
                        || strstr (err, "login refused by 127.0.0.1:")),
            "a refused oauth token, no password fallback: %s", err);
}

/* Creates a folder PREFIX<pid> (its name into folder) and appends n
   copies of s_msg (the text into msg); how many went in. */
static size_t
s_fill_folder (const cm_mailserver_t *srv, const char *prefix, size_t n, char *folder,
               size_t folderlen, char *msg, size_t msglen)
{
    char cmd [128];
    snprintf (folder, folderlen, "%s%d", prefix, (int) getpid ());
    snprintf (cmd, sizeof cmd, "CREATE %s", folder);
    s_side (srv, "", cmd, NULL, NULL);
    snprintf (msg, msglen, s_msg, (int) getpid ());
    size_t appended = 0;
    for (size_t i = 0; i < n; i++)
        appended += s_side (srv, folder, NULL, msg, NULL) == 0;
    return appended;
}

/* Batches as the fetcher runs them: prefetch, fetch each UID on the body
   session, then acknowledge on the control session. The body session is
   brought up to date before each batch without logging in again: after
   64 acknowledgements by NOOP, after more (too many flag news lines for
   libcurl: it drops the connection) by EXAMINE. Flags changed by another
   client count as news too. */
static void
s_batch_tests (void)
{
    enum { N = 320, BATCH = 64 };
    char err [512], folder [64], cmd [128], msg [512];
    cm_mailserver_t srv = s_srv ("imaps", "CM_IMAPS_PORT");
    int appended = (int) s_fill_folder (&srv, "Batches", N, folder, sizeof folder, msg,
                                        sizeof msg);
    EXPECT (appended == N, "batches: %d of %d messages appended to %s", appended, N, folder);
    cm_imap_t *imap = cm_imap_open (&srv, folder, err, sizeof err);
    EXPECT (imap != NULL, "batches: open %s: %s", folder, imap ? "ok" : err);
    if (!imap)
        return;
    uint64_t *uids = NULL;
    size_t count = 0;
    int r = cm_imap_search (imap, 1, 0, NULL, 0, &uids, &count, err, sizeof err);
    EXPECT (r == 0 && count == N, "batches: search finds %zu", count);
    /* libcurl's APPEND stores messages as \Seen: make them unread, so
       acknowledging them changes their flags (news for the body session) */
    s_side (&srv, folder, "STORE 1:* -FLAGS.SILENT (\\Seen)", NULL, NULL);
    size_t good = 0;
    for (size_t i = 0; r == 0 && i < count; i += BATCH) {
        size_t k = count - i < BATCH ? count - i : BATCH;
        r = cm_imap_prefetch (imap, uids + i, k, err, sizeof err);
        for (size_t j = 0; r == 0 && j < k; j++) {
            char *data = NULL;
            size_t len = 0;
            bool too_big = false;
            r = cm_imap_fetch (imap, uids [i + j], 1 << 20, true, &data, &len, &too_big,
                               err, sizeof err);
            good += r == 0 && len == strlen (msg) && memcmp (data, msg, len) == 0;
            free (data);
        }
        if (r == 0)
            r = cm_imap_restore_unseen (imap, err, sizeof err);
        if (r == 0)
            r = cm_imap_mark_seen_set (imap, uids + i, k, err, sizeof err);
    }
    EXPECT (r == 0 && good == count, "batches of %d: %zu of %zu messages fetched intact %s",
            BATCH, good, count, r ? err : "");
    size_t logins = 0, examines = 0;
    cm_imap_body_stats (imap, &logins, &examines);
    EXPECT (logins == 1, "batches of %d: the body session logged in once (%zu)", BATCH, logins);
    EXPECT (examines == 1, "batches of %d: opened once, then brought up to date by NOOP"
            " (%zu EXAMINEs for %d batches)", BATCH, examines, (N + BATCH - 1) / BATCH);
    /* all of them unread again by another client, then acknowledged at
       once: hundreds of flag news lines wait for the body session */
    s_side (&srv, folder, "STORE 1:* -FLAGS.SILENT (\\Seen)", NULL, NULL);
    r = cm_imap_mark_seen_set (imap, uids, count, err, sizeof err);
    EXPECT (r == 0, "batches: %zu acknowledged in one command %s", count, r ? err : "");
    r = cm_imap_prefetch (imap, uids, 1, err, sizeof err);
    char *data = NULL;
    size_t len = 0;
    bool too_big = false;
    if (r == 0)
        r = cm_imap_fetch (imap, uids [0], 1 << 20, true, &data, &len, &too_big, err,
                           sizeof err);
    EXPECT (r == 0 && len == strlen (msg), "batches: a fetch after %zu acknowledgements %s",
            count, r ? err : "");
    free (data);
    cm_imap_body_stats (imap, &logins, &examines);
    EXPECT (logins == 1, "batches: after %zu acknowledgements the body session still logged"
            " in once (%zu)", count, logins);
    EXPECT (examines == 2, "batches: after %zu acknowledgements it was opened again, not"
            " sent a NOOP (%zu EXAMINEs)", count, examines);
    free (uids);
    cm_imap_destroy (&imap);
    snprintf (cmd, sizeof cmd, "DELETE %s", folder);
    s_side (&srv, "", cmd, NULL, NULL);
}

/* Fetches and checks uids [0 .. k) on imap as the fetcher does a batch.
   0 or -1; *good counts the messages fetched intact. */
static int
s_fetch_batch (cm_imap_t *imap, const uint64_t *uids, size_t k, const char *msg,
               size_t *good, char *err, size_t errlen)
{
    int r = cm_imap_prefetch (imap, uids, k, err, errlen);
    for (size_t j = 0; r == 0 && j < k; j++) {
        char *data = NULL;
        size_t len = 0;
        bool too_big = false;
        r = cm_imap_fetch (imap, uids [j], 1 << 20, true, &data, &len, &too_big, err,
                           errlen);
        *good += r == 0 && len == strlen (msg) && memcmp (data, msg, len) == 0;
        free (data);
    }
    return r ? r : cm_imap_restore_unseen (imap, err, errlen);
}

/* Two sessions in one folder, as the fetcher's two lanes run a long pass
   (fetcher/lanes.c): batches fetched in turn with nothing acknowledged,
   then all of them acknowledged at once on the first session. Each body
   session logs in and
   opens the folder once for the pass (no news comes while nobody
   changes a flag); the first one's next fetch, after news of all the
   messages, opens the folder again rather than sending a NOOP that
   libcurl would drop. CM_LANES_BATCH changes the batch. */
static void
s_lanes_tests (void)
{
    int batch = atoi (s_env ("CM_LANES_BATCH", "64"));
    size_t n = (size_t) batch * 8;
    char err [512], folder [64], cmd [128], msg [512];
    cm_mailserver_t srv = s_srv ("imaps", "CM_IMAPS_PORT");
    size_t appended = s_fill_folder (&srv, "Lanes", n, folder, sizeof folder, msg,
                                     sizeof msg);
    s_side (&srv, folder, "STORE 1:* -FLAGS.SILENT (\\Seen)", NULL, NULL);
    cm_imap_t *lane [2] = { cm_imap_open (&srv, folder, err, sizeof err), NULL };
    if (lane [0])
        lane [1] = cm_imap_open (&srv, folder, err, sizeof err);
    EXPECT (appended == n && lane [0] && lane [1], "lanes: %zu messages in %s, two"
            " sessions open %s", appended, folder, lane [1] ? "" : err);
    uint64_t *uids = NULL;
    size_t count = 0, good = 0;
    int r = lane [1] ? cm_imap_search (lane [0], 1, 0, NULL, 0, &uids, &count, err,
                                       sizeof err) : -1;
    for (size_t i = 0; r == 0 && i < count; i += (size_t) batch) {
        size_t k = count - i < (size_t) batch ? count - i : (size_t) batch;
        r = s_fetch_batch (lane [(i / (size_t) batch) % 2], uids + i, k, msg, &good, err,
                           sizeof err);
    }
    EXPECT (r == 0 && good == n, "lanes of %d: %zu of %zu messages fetched intact %s",
            batch, good, n, r ? err : "");
    for (int l = 0; l < 2 && lane [1]; l++) {
        size_t logins = 0, examines = 0;
        cm_imap_body_stats (lane [l], &logins, &examines);
        EXPECT (logins == 1 && examines == 1, "lanes of %d: session %d's body connection"
                " logged in and opened the folder once for the pass (%zu logins, %zu"
                " EXAMINEs)", batch, l + 1, logins, examines);
    }
    if (r == 0)
        r = cm_imap_mark_seen_set (lane [0], uids, count, err, sizeof err);
    char flags [4096] = "";
    s_side (&srv, folder, "SEARCH UNSEEN", NULL, flags);
    EXPECT (r == 0 && strstr (flags, "* SEARCH\r\n") != NULL, "lanes: every message"
            " acknowledged at the pass's end %s(%.60s)", r ? err : "", flags);
    good = 0;
    if (r == 0 && count)
        r = s_fetch_batch (lane [0], uids + count - 1, 1, msg, &good, err, sizeof err);
    size_t logins = 0, examines = 0;
    if (lane [0])
        cm_imap_body_stats (lane [0], &logins, &examines);
    EXPECT (r == 0 && good == 1 && logins == 1 && examines == 2, "lanes: after news of"
            " %zu messages, the first session's body connection opened the folder again"
            " (%zu logins, %zu EXAMINEs) %s", count, logins, examines, r ? err : "");
    free (uids);
    cm_imap_destroy (&lane [0]);
    cm_imap_destroy (&lane [1]);
    snprintf (cmd, sizeof cmd, "DELETE %s", folder);
    s_side (&srv, "", cmd, NULL, NULL);
}

static void
s_smtp_tests (void)
{
    char sum [512], err [512], reply [512];
    cm_mailserver_t srv;
    int r, code;

    srv = s_srv ("smtp+starttls", "CM_SUBMISSION_PORT");
    r = cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err);
    EXPECT (r == 0, "smtp+starttls submission: %s", r ? err : sum);
    srv = s_srv ("smtps", "CM_SMTPS_PORT");
    r = cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err);
    EXPECT (r == 0, "smtps: %s", r ? err : sum);
    srv.password = "wrong-pw";
    r = cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strncmp (err, "authentication failed for ", 26) == 0
                 && strcmp (err + 26, srv.username) == 0,
            "smtps wrong password: %s", err);
    srv = s_srv ("smtp+starttls", "CM_SMTP_NOTLS_PORT");
    r = cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strncmp (err, "STARTTLS not offered by ", 24) == 0,
            "smtp+starttls on the no-TLS port: %s", err);
    srv.protocol = "smtp";
    r = cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1, "smtp without AUTH offered: %s", r ? err : sum);
    srv = s_srv ("smtps", "CM_SMTPS_PORT");
    srv.ca_file = NULL;
    r = cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strncmp (err, "certificate not trusted: ", 25) == 0,
            "smtps without CA: %s", err);
    srv = s_srv ("smtps", "CM_SMTPS_PORT");
    srv.port = 1;
    r = cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err);
    EXPECT (r == -1 && strcmp (err, "connection refused: 127.0.0.1:1") == 0,
            "smtps closed port: %s", err);

    char msg [512];
    snprintf (msg, sizeof msg, "From: alice@example.test\r\n"
              "To: bob@example.test\r\nSubject: smtp live %d\r\n"
              "Message-ID: <smtp-live-%d@example.test>\r\n\r\nHi Bob.\r\n"
              ".\r\n..two dots\r\n", (int) getpid (), (int) getpid ());
    srv = s_srv ("smtp+starttls", "CM_SUBMISSION_PORT");
    const char *to [] = { "bob@example.test" };
    cm_smtp_result_t res = cm_smtp_send (&srv, "alice@example.test", to, 1,
                                         msg, strlen (msg), NULL, &code, reply,
                                         sizeof reply);
    EXPECT (res == CM_SMTP_SENT && code == 250, "send: %d %d %s", res, code,
            reply);
    const char *to2 [] = { "bob@example.test", "x@reject.test" };
    res = cm_smtp_send (&srv, "alice@example.test", to2, 2, msg, strlen (msg),
                        NULL, &code, reply, sizeof reply);
    EXPECT (res == CM_SMTP_PERMFAIL && code == 550, "rejected rcpt: %d %d %s",
            res, code, reply);
    /* with the answers asked for, the refused recipient does not stop it */
    cm_smtp_rcpt_t each [2];
    res = cm_smtp_send (&srv, "alice@example.test", to2, 2, msg, strlen (msg),
                        each, &code, reply, sizeof reply);
    EXPECT (res == CM_SMTP_SENT && code == 250 && each [0].code == 250
            && each [1].code == 550 && strstr (each [1].reply, "Recipient rejected"),
            "one refused rcpt of two: %d %d %s / %d %s / %d %s", res, code, reply,
            each [0].code, each [0].reply, each [1].code, each [1].reply);
    const char *to3 [] = { "x@reject.test", "y@reject.test" };
    res = cm_smtp_send (&srv, "alice@example.test", to3, 2, msg, strlen (msg),
                        each, &code, reply, sizeof reply);
    EXPECT (res == CM_SMTP_PERMFAIL && each [0].code == 550 && each [1].code == 550,
            "every rcpt refused: %d %d %s / %d / %d", res, code, reply,
            each [0].code, each [1].code);
    srv.password = "wrong-pw";
    res = cm_smtp_send (&srv, "alice@example.test", to, 1, msg, strlen (msg),
                        NULL, &code, reply, sizeof reply);
    EXPECT (res == CM_SMTP_PERMFAIL && code == 535
            && strncmp (reply, "authentication failed", 21) == 0,
            "send with wrong password: %d %d %s", res, code, reply);
    srv = s_srv ("smtps", "CM_SMTPS_PORT");
    srv.port = 1;
    res = cm_smtp_send (&srv, "alice@example.test", to, 1, msg, strlen (msg),
                        NULL, &code, reply, sizeof reply);
    EXPECT (res == CM_SMTP_TEMPFAIL && code == 0, "send to a closed port: "
            "%d %d %s", res, code, reply);

    /* the sent message reached bob, dot-stuffing intact */
    cm_mailserver_t bob = s_srv ("imaps", "CM_IMAPS_PORT");
    bob.username = "bob@example.test";
    bob.password = "bob-pw-Secret1";
    char body [4096] = "";
    int64_t until = s_ms () + 5000;
    while (s_ms () < until) {
        char search [128];
        snprintf (search, sizeof search, "UID SEARCH HEADER Message-ID "
                  "\"smtp-live-%d\"", (int) getpid ());
        s_side (&bob, "INBOX", search, NULL, body);
        if (strstr (body, "SEARCH ") && strcspn (body + 9, "0123456789")
            < strlen (body + 9))
            break;
        usleep (200000);
    }
    EXPECT (strstr (body, "* SEARCH 1") || strstr (body, "* SEARCH "),
            "bob received it: %.60s", body);
}

int
main (int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "-v") == 0)
            s_verbose = true;
        if (strcmp (argv [i], "--selftest") == 0) {
            int r1 = cm_imap_selftest (true), r2 = cm_smtp_selftest (true);
            printf ("imap selftest %s, smtp selftest %s\n",
                    r1 ? "FAILED" : "ok", r2 ? "FAILED" : "ok");
            return r1 || r2;
        }
    }
    cm_log_init ("live", s_env ("CM_LIVE_LOG", NULL));
    if (!getenv ("CM_IMAPS_PORT")) {
        printf ("skipped: no test stack (source DIR/env of "
                "tests/stack/start.sh)\n");
        return 0;
    }
    cm_mailcurl_global_init ();
    EXPECT (cm_imap_selftest (true) == 0, "imap selftest");
    EXPECT (cm_smtp_selftest (true) == 0, "smtp selftest");
    s_imap_tests ();
    s_batch_tests ();
    s_lanes_tests ();
    s_smtp_tests ();
    printf ("%d passed, %d failed\n", s_passed, s_failed);
    return s_failed ? 1 : 0;
}
