/*  common/mailcurl.c: the libcurl glue shared by the mail clients (IMAP,
    SMTP, EWS, OAuth token requests): one-time global init, URL building
    with the TLS mode of the route's protocol, TLS and credential options,
    the redacting protocol trace, and the mapping of libcurl failures to
    reasons a person can act on. See mailcurl.h. */
#include "mailcurl.h"
#include "buf.h"
#include "log.h"
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TIMEOUT 15000

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;

static void
s_curl_init (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
}

void
cm_mailcurl_global_init (void)
{
    pthread_once (&s_curl_once, s_curl_init);
}

/* Host names go into URLs: allow what DNS names and IP literals use. */
static bool
s_host_ok (const char *host)
{
    if (!host || !*host || strlen (host) > 253)
        return false;
    for (const char *p = host; *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr (".-_:[]", *p))
            return false;
    return true;
}

int
cm_mailcurl_url (const cm_mailserver_t *srv, bool is_smtp, const char *path,
                 char *url, size_t urllen, char *err, size_t errlen)
{
    const char *proto = srv->protocol ? srv->protocol : "";
    const char *scheme = NULL;
    if (!is_smtp) {
        if (strcmp (proto, "imaps") == 0)
            scheme = "imaps";
        else if (strcmp (proto, "imap") == 0
              || strcmp (proto, "imap+starttls") == 0)
            scheme = "imap";
    }
    else {
        if (strcmp (proto, "smtps") == 0)
            scheme = "smtps";
        else if (strcmp (proto, "smtp") == 0
              || strcmp (proto, "smtp+starttls") == 0)
            scheme = "smtp";
    }
    if (!scheme) {
        snprintf (err, errlen, "unknown protocol \"%s\"", proto);
        return -1;
    }
    if (!s_host_ok (srv->host)) {
        snprintf (err, errlen, "invalid host name \"%s\"",
                  srv->host ? srv->host : "");
        return -1;
    }
    if (srv->port < 1 || srv->port > 65535) {
        snprintf (err, errlen, "invalid port %d", srv->port);
        return -1;
    }
    bool v6 = strchr (srv->host, ':') && srv->host [0] != '[';
    int n = snprintf (url, urllen, "%s://%s%s%s:%d/%s", scheme,
                      v6 ? "[" : "", srv->host, v6 ? "]" : "", srv->port,
                      path ? path : "");
    if (n < 0 || (size_t) n >= urllen) {
        snprintf (err, errlen, "URL too long");
        return -1;
    }
    return 0;
}

/* Traces one protocol line and notes what the reason mapping and the SMTP
   client need. Credentials never reach the log: the arguments of
   AUTH/AUTHENTICATE/LOGIN and every client line of a SASL exchange are
   replaced before cm_trace (which redacts registered secrets too). */
static void
s_debug_line (cm_mailcurl_ctx_t *ctx, curl_infotype type, const char *line)
{
    if (type == CURLINFO_TEXT) {
        if (strncmp (line, "Connected to ", 13) == 0)
            ctx->greeted = false;   /* a new connection: its greeting next */
        if (strncmp (line, "reached ", 8) == 0)
            return;             /* libcurl's internal progress notes */
        cm_trace (ctx->verbose, ctx->route, "* %s", line);
        return;
    }
    if (type == CURLINFO_HEADER_OUT) {
        /* skip an IMAP tag */
        const char *cmd = line;
        const char *sp = strchr (line, ' ');
        if (sp && strncasecmp (line, "AUTH ", 5) != 0
            && strncasecmp (line, "EHLO", 4) != 0
            && strncasecmp (line, "HELO", 4) != 0)
            cmd = sp + 1;
        if (strncasecmp (cmd, "AUTHENTICATE ", 13) == 0
            || strncasecmp (line, "AUTH ", 5) == 0
            || strncasecmp (cmd, "LOGIN ", 6) == 0) {
            ctx->in_auth = true;
            ctx->auth_sent = true;
            ctx->fail [0] = 0;      /* this login's refusal, not an earlier one's */
            /* keep the command and mechanism, drop the rest */
            const char *end = strchr (cmd, ' ');
            if (end && strncasecmp (cmd, "LOGIN ", 6) != 0) {
                const char *mech_end = strchr (end + 1, ' ');
                if (mech_end)
                    end = mech_end;
                else
                    end = end + strlen (end);
            }
            int keep = (int) ((end ? end : cmd + strlen (cmd)) - line);
            cm_trace (ctx->verbose, ctx->route, "C: %.*s%s", keep, line,
                      (end && *end) ? " [REDACTED]" : "");
        }
        else if (ctx->in_auth)
            cm_trace (ctx->verbose, ctx->route, "C: [REDACTED]");
        else
            cm_trace (ctx->verbose, ctx->route, "C: %s", line);
        if (strncasecmp (line, "EHLO", 4) == 0) {
            ctx->auth_offered = false;
            ctx->partial [0] = 0;
        }
        if (ctx->on_reply)          /* only a client that asks pays for it */
            snprintf (ctx->command, sizeof ctx->command, "%s", ctx->in_auth ? "AUTH" : line);
        return;
    }
    if (type != CURLINFO_HEADER_IN)
        return;
    cm_trace (ctx->verbose, ctx->route, "S: %.400s%s", line,
              strlen (line) > 400 ? "..." : "");
    if (strstr (line, "LOGINDISABLED"))
        ctx->login_disabled = true;
    if (!ctx->greeted) {
        /* RFC 9051 7.1.4: a server that knows the client (a tunnel,
           a pre-authenticated connection) greets PREAUTH; libcurl then
           sends no LOGIN, and can no longer start TLS */
        ctx->greeted = true;
        ctx->preauth = strncasecmp (line, "* PREAUTH", 9) == 0
                       && (line [9] == ' ' || line [9] == 0);
    }
    bool smtp_line = isdigit ((unsigned char) line [0])
                  && isdigit ((unsigned char) line [1])
                  && isdigit ((unsigned char) line [2])
                  && (line [3] == ' ' || line [3] == '-' || line [3] == 0);
    if (smtp_line) {
        if (strncasecmp (line + 4, "AUTH ", 5) == 0
            || strncasecmp (line + 4, "AUTH=", 5) == 0)
            ctx->auth_offered = true;
        if (line [3] == '-') {
            size_t used = strlen (ctx->partial);
            snprintf (ctx->partial + used, sizeof ctx->partial - used,
                      "%s%s", used ? " " : "", line);
            return;
        }
        size_t used = strlen (ctx->partial), need = strlen (line) + 1;
        if (used && used + need + 1 > sizeof ctx->partial && need + 6 < sizeof ctx->partial) {
            /* the last line (the queue id, the final word) always stays:
               the earlier lines give way */
            used = sizeof ctx->partial - need - 6;
            while (used && ((unsigned char) ctx->partial [used] & 0xc0) == 0x80)
                used--;             /* not inside a character */
            memcpy (ctx->partial + used, " ...", 5);
            used += 4;
        }
        snprintf (ctx->partial + used, sizeof ctx->partial - used, "%s%s",
                  used ? " " : "", line);
        memcpy (ctx->reply, ctx->partial, sizeof ctx->reply);
        if (line [0] == '4' || line [0] == '5')
            memcpy (ctx->fail, ctx->partial, sizeof ctx->fail);
        if (ctx->on_reply)
            ctx->on_reply (ctx->on_reply_arg, ctx->command, ctx->partial);
        ctx->command [0] = 0;       /* one reply per command */
        ctx->partial [0] = 0;
        if (strncmp (line, "235", 3) == 0)
            ctx->auth_ok = true;
        if (strncmp (line, "334", 3) != 0)
            ctx->in_auth = false;
        return;
    }
    /* IMAP: a tagged answer ends a SASL exchange; "+" continues it. A
       refusal of the login is kept with its response code (RFC 5530:
       [LIMIT], [UNAVAILABLE], ... say why, other than the password). */
    if (line [0] != '*' && line [0] != '+') {
        const char *answer = strchr (line, ' ');
        if (ctx->in_auth && answer && (strncasecmp (answer + 1, "NO ", 3) == 0
                                       || strncasecmp (answer + 1, "BAD ", 4) == 0))
            snprintf (ctx->fail, sizeof ctx->fail, "%s", answer + 1);
        ctx->in_auth = false;
    }
}

void
cm_mailcurl_debug_lines (curl_infotype type, const char *data, size_t size,
                         void (*fn) (curl_infotype type, const char *line, size_t n,
                                     void *arg), void *arg)
{
    if (type != CURLINFO_TEXT && type != CURLINFO_HEADER_IN && type != CURLINFO_HEADER_OUT)
        return;
    const char *p = data, *end = data + size;
    while (p < end) {
        const char *nl = memchr (p, '\n', (size_t) (end - p));
        size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
        if (n && p [n - 1] == '\r')
            n--;
        char line [1024];
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy (line, p, n);
        line [n] = 0;
        for (size_t i = 0; i < n; i++)
            if (line [i] == 0)
                line [i] = '?';
        cm_text_scrub (line);   /* a server's Latin-1, or a sequence cut above */
        fn (type, line, n, arg);
        p = nl ? nl + 1 : end;
    }
}

static void
s_debug_each (curl_infotype type, const char *line, size_t n, void *ctx)
{
    if (n || type != CURLINFO_TEXT)
        s_debug_line (ctx, type, line);
}

int
cm_mailcurl_debug (CURL *h, curl_infotype type, char *data, size_t size, void *userp)
{
    (void) h;
    cm_mailcurl_ctx_t *ctx = userp;
    if (ctx->watch_io && type != CURLINFO_TEXT) {
        /* bytes moved either way: the SMTP client's stall watch (only a
           client that asks reads the clock on every chunk) */
        struct timespec ts;
        clock_gettime (CLOCK_MONOTONIC, &ts);
        ctx->last_io_ms = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    cm_mailcurl_debug_lines (type, data, size, s_debug_each, userp);
    return 0;
}

int
cm_mailcurl_setup (CURL *h, const cm_mailserver_t *srv, const char *url,
                   bool is_smtp, cm_mailcurl_ctx_t *ctx,
                   char *err, size_t errlen)
{
    const char *proto = srv->protocol ? srv->protocol : "";
    long tls = strstr (proto, "+starttls") || strcmp (proto, "imaps") == 0
            || strcmp (proto, "smtps") == 0
             ? (long) CURLUSESSL_ALL : (long) CURLUSESSL_NONE;
    long timeout = srv->timeout_ms > 0 ? srv->timeout_ms : DEFAULT_TIMEOUT;
    memset (ctx, 0, sizeof *ctx);
    ctx->verbose = srv->verbose;
    ctx->route = srv->route;
    cm_log_secret (srv->password);
    cm_log_token (srv->oauth_token);

    CURLcode rc = CURLE_OK;
#define SET(opt, val) if (!rc) rc = curl_easy_setopt (h, opt, val)
    SET (CURLOPT_URL, url);
    SET (CURLOPT_PROTOCOLS_STR, is_smtp ? "smtp,smtps" : "imap,imaps");
    SET (CURLOPT_NOSIGNAL, 1L);
    SET (CURLOPT_USE_SSL, tls);
    SET (CURLOPT_SSL_VERIFYPEER, 1L);
    SET (CURLOPT_SSL_VERIFYHOST, 2L);
    if (srv->ca_file && *srv->ca_file)
        SET (CURLOPT_CAINFO, srv->ca_file);
    SET (CURLOPT_CONNECTTIMEOUT_MS, timeout);
    SET (CURLOPT_SERVER_RESPONSE_TIMEOUT, timeout / 1000 < 60 ? 60L
                                          : timeout / 1000);
    if (srv->username && *srv->username)
        SET (CURLOPT_USERNAME, srv->username);
    if (srv->oauth_token && *srv->oauth_token) {
        SET (CURLOPT_XOAUTH2_BEARER, srv->oauth_token);
        /* libcurl prefers OAUTHBEARER when both are offered */
        SET (CURLOPT_LOGIN_OPTIONS, "AUTH=XOAUTH2;AUTH=OAUTHBEARER");
    }
    else if (srv->password) {
        SET (CURLOPT_PASSWORD, srv->password);
        /* Not GSSAPI/NTLM/DIGEST: libcurl would pick them first when
           offered (Exchange offers GSSAPI) and fail without a ticket. */
        SET (CURLOPT_LOGIN_OPTIONS, "AUTH=PLAIN;AUTH=LOGIN");
    }
    SET (CURLOPT_ERRORBUFFER, ctx->errbuf);
    SET (CURLOPT_DEBUGFUNCTION, cm_mailcurl_debug);
    SET (CURLOPT_DEBUGDATA, ctx);
    SET (CURLOPT_VERBOSE, 1L);   /* feeds cm_mailcurl_debug; traced only if verbose */
#undef SET
    if (rc) {
        snprintf (err, errlen, "libcurl option refused: %s",
                  curl_easy_strerror (rc));
        return -1;
    }
    return 0;
}

/* An IMAP login's NO whose response code (RFC 5530) says the server
   refused it for another reason than the credentials: too many
   connections (LIMIT, INUSE), the server unable to check them now
   (UNAVAILABLE, SERVERBUG). Any other code (AUTHENTICATIONFAILED,
   EXPIRED, ...), or none, is taken for the credentials'. */
static bool
s_refused_not_credentials (const char *fail)
{
    static const char *codes [] = { "LIMIT]", "INUSE]", "UNAVAILABLE]", "SERVERBUG]" };
    if (strncasecmp (fail, "NO [", 4))
        return false;
    for (size_t i = 0; i < sizeof codes / sizeof codes [0]; i++)
        if (strncasecmp (fail + 4, codes [i], strlen (codes [i])) == 0)
            return true;
    return false;
}

void
cm_mailcurl_reason (CURLcode rc, const cm_mailcurl_ctx_t *ctx,
                    const cm_mailserver_t *srv, char *err, size_t errlen)
{
    const char *detail = ctx && ctx->errbuf [0] ? ctx->errbuf
                                                 : curl_easy_strerror (rc);
    const char *host = srv->host ? srv->host : "";
    const char *user = srv->username ? srv->username : "";
    switch (rc) {
        case CURLE_COULDNT_RESOLVE_HOST:
            snprintf (err, errlen, "name not resolved: %s", host);
            break;
        case CURLE_COULDNT_CONNECT:
            snprintf (err, errlen, "connection refused: %s:%d", host,
                      srv->port);
            break;
        case CURLE_OPERATION_TIMEDOUT:
            snprintf (err, errlen, "timeout connecting to %s:%d", host,
                      srv->port);
            break;
        case CURLE_PEER_FAILED_VERIFICATION:   /* == CURLE_SSL_CACERT */
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
            snprintf (err, errlen, "certificate not trusted: %s", detail);
            break;
        case CURLE_USE_SSL_FAILED:
            if (ctx && ctx->preauth)
                /* libcurl will not STARTTLS after PREAUTH: the session is
                   logged in, and RFC 9051 allows STARTTLS only before */
                snprintf (err, errlen, "%s:%d greeted PREAUTH (logged in before TLS could"
                          " start), so STARTTLS cannot protect the session: use imaps,"
                          " or a server that asks for a login", host, srv->port);
            else
                snprintf (err, errlen, "STARTTLS not offered by %s:%d", host,
                          srv->port);
            break;
        case CURLE_LOGIN_DENIED:
            if (ctx && !ctx->auth_sent && ctx->login_disabled)
                snprintf (err, errlen, "plain-text login disabled by %s:%d "
                          "(use TLS or STARTTLS)", host, srv->port);
            else if (ctx && !ctx->auth_sent)
                snprintf (err, errlen, "no supported authentication "
                          "mechanism offered by %s:%d", host, srv->port);
            else if (ctx && ctx->fail [0] == '4')
                /* a 4xx answer to AUTH is the server's trouble, not the
                   credentials' (Postfix: 454 when it lost its connection
                   to the authentication service) */
                snprintf (err, errlen, "temporary authentication failure at %s:%d: %s",
                          host, srv->port, ctx->fail);
            else if (ctx && s_refused_not_credentials (ctx->fail))
                /* IMAP: refused for another reason than the credentials
                   (a limit of connections, the server unavailable): the
                   server's words */
                snprintf (err, errlen, "login refused by %s:%d: %s", host, srv->port,
                          ctx->fail);
            else
                snprintf (err, errlen, "authentication failed for %s", user);
            break;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CLIENTCERT:
            snprintf (err, errlen, "TLS handshake failed: %s", detail);
            break;
        default:
            if (ctx && ctx->errbuf [0])
                snprintf (err, errlen, "%s: %s", curl_easy_strerror (rc),
                          ctx->errbuf);
            else
                snprintf (err, errlen, "%s", curl_easy_strerror (rc));
            break;
    }
}

void
cm_mailcurl_trace_line (cm_mailcurl_ctx_t *ctx, curl_infotype type, const char *line)
{
    s_debug_line (ctx, type, line);
}
