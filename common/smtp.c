/*  common/smtp.c: SMTP client on libcurl (see smtp.h).

    The test uses CURLOPT_CONNECT_ONLY: libcurl connects, does TLS or
    STARTTLS, EHLO and AUTH in its connect phase and hands the connection
    over; we then send QUIT ourselves. libcurl silently skips AUTH when the
    server offers none, so the debug trace (shared with imap.c) tells us
    whether a 235 really came. Sending is one libcurl upload per message;
    the server's answers are taken from the same trace, so a rejection
    reaches the caller with the server's own words. */
#include "smtp.h"
#include "imap.h"
#include "log.h"
#include <ctype.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ADDR_MAX        320     /* RFC 5321 path limits, with margin */
#define DEFAULT_TIMEOUT 15000
#define DATA_END_SECS   600L    /* RFC 5321 4.5.3.2.6: the answer to the final dot */
#define STALL_MS        60000L  /* default: no byte moving this long ends a send */

/* The EHLO name goes into the URL path: a host name or address literal. */
static bool
s_helo_ok (const char *helo)
{
    if (!*helo || strlen (helo) > 255)
        return false;
    for (const char *p = helo; *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr (".-_:[]", *p))
            return false;
    return true;
}

/* An address for MAIL FROM / RCPT TO: no controls, no brackets, no space
   outside what a sane address has; we do not try to be a full RFC 5321
   parser, only to keep the command line intact. */
static bool
s_addr_ok (const char *addr, bool empty_ok)
{
    size_t len = strlen (addr);
    if (len > ADDR_MAX || (!empty_ok && len == 0))
        return false;
    if (len && !strchr (addr, '@'))
        return false;
    for (const unsigned char *p = (const unsigned char *) addr; *p; p++)
        if (*p < 0x21 || *p == 0x7F || *p == '<' || *p == '>')
            return false;
    return true;
}

static cm_smtp_result_t
s_class (long code)
{
    if (code >= 200 && code < 300)
        return CM_SMTP_SENT;
    if (code >= 500 && code < 600)
        return CM_SMTP_PERMFAIL;
    return CM_SMTP_TEMPFAIL;
}

/* Makes an easy handle for srv with the EHLO name in the URL path. */
static CURL *
s_handle (const cm_mailserver_t *srv, cm_mailcurl_ctx_t *ctx, char *err,
          size_t errlen)
{
    char url [700];
    const char *helo = srv->helo && *srv->helo ? srv->helo : "localhost";
    cm_mailcurl_global_init ();
    if (!s_helo_ok (helo)) {
        snprintf (err, errlen, "invalid EHLO name \"%.100s\"", helo);
        return NULL;
    }
    if (cm_mailcurl_url (srv, true, helo, url, sizeof url, err, errlen))
        return NULL;
    CURL *h = curl_easy_init ();
    if (!h) {
        snprintf (err, errlen, "libcurl initialisation failed");
        return NULL;
    }
    if (cm_mailcurl_setup (h, srv, url, true, ctx, err, errlen)) {
        curl_easy_cleanup (h);
        return NULL;
    }
    return h;
}

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Frees a connection-test handle, with libcurl's wait for the server
   while it closes bounded to 2 s (between the two tries too). Safe on
   NULL. */
static void
s_test_cleanup (CURL *h)
{
    if (!h)
        return;
    curl_easy_setopt (h, CURLOPT_SERVER_RESPONSE_TIMEOUT, 2L);
    curl_easy_cleanup (h);
}

/* Sends QUIT on a handed-over connection and waits briefly for 221. */
static void
s_quit (CURL *h, const cm_mailserver_t *srv)
{
    curl_socket_t sock = CURL_SOCKET_BAD;
    if (curl_easy_getinfo (h, CURLINFO_ACTIVESOCKET, &sock)
        || sock == CURL_SOCKET_BAD)
        return;
    cm_trace (srv->verbose, srv->route, "C: QUIT");
    const char *quit = "QUIT\r\n";
    size_t off = 0, n;
    int64_t deadline = s_now_ms () + 2000;
    while (off < 6 && s_now_ms () < deadline) {
        CURLcode rc = curl_easy_send (h, quit + off, 6 - off, &n);
        if (rc == CURLE_AGAIN) {
            struct pollfd pfd = { sock, POLLOUT, 0 };
            poll (&pfd, 1, 100);
            continue;
        }
        if (rc)
            return;
        off += n;
    }
    char buf [512];
    size_t got = 0;
    while (got < sizeof buf - 1 && s_now_ms () < deadline) {
        CURLcode rc = curl_easy_recv (h, buf + got, sizeof buf - 1 - got, &n);
        if (rc == CURLE_AGAIN) {
            struct pollfd pfd = { sock, POLLIN, 0 };
            poll (&pfd, 1, 100);
            continue;
        }
        if (rc || n == 0)
            break;
        got += n;
        if (memchr (buf, '\n', got))
            break;
    }
    buf [got] = 0;
    buf [strcspn (buf, "\r\n")] = 0;
    if (got)
        cm_trace (srv->verbose, srv->route, "S: %s", buf);
}

int
cm_smtp_test (const cm_mailserver_t *srv, char *summary, size_t sumlen,
              char *err, size_t errlen)
{
    cm_mailcurl_ctx_t *ctx = calloc (1, sizeof *ctx);
    CURL *h = NULL;
    int rc = -1;
    if (errlen)
        err [0] = 0;
    if (!ctx) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    long timeout = srv->timeout_ms > 0 ? srv->timeout_ms : DEFAULT_TIMEOUT;
    CURLcode crc = CURLE_OK;
    /* A 4xx answer to AUTH is the server's trouble, not the credentials'
       (Postfix answers 454 when it lost its connection to the
       authentication service, and connects again for the next client):
       one more try on a new connection, a second later (a server that
       answers 4xx to throttle logins is not hit again at once), then the
       answer is reported (cm_mailcurl_reason calls it temporary). */
    for (int attempt = 0; attempt < 2; attempt++) {
        if (attempt)
            sleep (1);
        s_test_cleanup (h);
        memset (ctx, 0, sizeof *ctx);
        h = s_handle (srv, ctx, err, errlen);
        if (!h)
            goto done;
        curl_easy_setopt (h, CURLOPT_CONNECT_ONLY, 1L);
        curl_easy_setopt (h, CURLOPT_TIMEOUT_MS, timeout);
        crc = curl_easy_perform (h);
        if (crc != CURLE_LOGIN_DENIED || !ctx->auth_sent || ctx->fail [0] != '4')
            break;
    }
    if (crc) {
        cm_mailcurl_reason (crc, ctx, srv, err, errlen);
        goto done;
    }
    bool creds = srv->username && *srv->username
              && ((srv->password && *srv->password)
                  || (srv->oauth_token && *srv->oauth_token));
    if (creds && !ctx->auth_ok) {
        if (!ctx->auth_offered)
            snprintf (err, errlen, "authentication not offered by %s:%d%s",
                      srv->host, srv->port,
                      strcmp (srv->protocol, "smtp") == 0
                      ? " (try SMTP with STARTTLS)" : "");
        else
            snprintf (err, errlen, "authentication failed for %s",
                      srv->username);
        goto done;
    }
    s_quit (h, srv);
    if (creds)
        snprintf (summary, sumlen, "%s://%s:%d accepted the credentials of %s",
                  srv->protocol, srv->host, srv->port, srv->username);
    else
        snprintf (summary, sumlen, "%s://%s:%d accepted the connection "
                  "(no credentials configured)", srv->protocol, srv->host,
                  srv->port);
    rc = 0;
done:
    s_test_cleanup (h);
    free (ctx);
    return rc;
}

typedef struct {
    const char *data;           /* what is left to upload */
    size_t left;
} s_source_t;

static size_t
s_read_msg (char *buf, size_t size, size_t nmemb, void *userp)
{
    s_source_t *src = (s_source_t *) userp;
    size_t n = size * nmemb;
    if (n > src->left)
        n = src->left;
    memcpy (buf, src->data, n);
    src->data += n;
    src->left -= n;
    return n;
}

/* The stall watch of one send: libcurl calls s_watch about once a
   second in every phase (greeting, TLS, EHLO, AUTH, MAIL, RCPT, DATA and
   the upload). When no byte has moved either way for stall_ms, it ends
   the transfer and names the phase. The answer to the end of the data is
   exempt: RFC 5321 gives the server 10 minutes there (content scanning),
   and a message given up then may have been delivered. */
typedef struct {
    cm_mailcurl_ctx_t *ctx;
    const s_source_t *src;
    size_t msglen;
    long stall_ms;
    int64_t start_ms;           /* when the send began */
    char why [400];             /* the stall and its phase, once seen */
} s_watch_t;

/* The phase of a send, from the upload and the last command and answer
   the trace saw (mailcurl forgets a command once it is answered). The
   wait for the answer to the end of the data never gets here (s_watch). */
static void
s_phase (const s_watch_t *w, char *out, size_t outlen)
{
    const cm_mailcurl_ctx_t *ctx = w->ctx;
    if (w->src->left < w->msglen)
        snprintf (out, outlen, "while the message was sent (%zu of %zu bytes taken)",
                  w->msglen - w->src->left, w->msglen);
    else if (ctx->command [0])
        snprintf (out, outlen, "waiting for the answer to %.300s", ctx->command);
    else if (ctx->reply [0])
        snprintf (out, outlen, "after the server's answer '%.200s'", ctx->reply);
    else
        snprintf (out, outlen, "before the server's greeting");
}

static int
s_watch (void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
         curl_off_t ulnow)
{
    (void) dltotal; (void) dlnow; (void) ultotal;
    s_watch_t *w = arg;
    const cm_mailcurl_ctx_t *ctx = w->ctx;
    if (w->src->left == 0 && ulnow >= (curl_off_t) w->msglen)
        return 0;               /* all sent: the end of the data, DATA_END_SECS rules */
    int64_t now = s_now_ms ();
    int64_t last = ctx->last_io_ms > w->start_ms ? ctx->last_io_ms : w->start_ms;
    if (now - last < w->stall_ms)
        return 0;
    char phase [360];
    s_phase (w, phase, sizeof phase);
    snprintf (w->why, sizeof w->why, "the server stalled: no byte moved for %ld s %s",
              (w->stall_ms + 999) / 1000, phase);
    return 1;                   /* CURLE_ABORTED_BY_CALLBACK */
}

/* The answers to RCPT TO, matched to the recipients by address (libcurl
   sends them in order and waits for each answer). */
typedef struct {
    const char *const *rcpts;
    size_t n;
    cm_smtp_rcpt_t *each;
} s_rcpts_t;

static void
s_on_reply (void *arg, const char *command, const char *reply)
{
    s_rcpts_t *r = arg;
    if (strncasecmp (command, "RCPT TO:<", 9) != 0)
        return;
    const char *addr = command + 9;
    const char *end = strrchr (addr, '>');
    size_t len = end ? (size_t) (end - addr) : strlen (addr);
    for (size_t i = 0; i < r->n; i++)
        if (r->each [i].code == 0 && strlen (r->rcpts [i]) == len
            && strncmp (r->rcpts [i], addr, len) == 0) {
            int code = atoi (reply);
            r->each [i].code = code > 0 ? code : 500;
            snprintf (r->each [i].reply, sizeof r->each [i].reply, "%s", reply);
            return;
        }
}

cm_smtp_result_t
cm_smtp_send (const cm_mailserver_t *srv, const char *from,
              const char *const *rcpts, size_t nrcpts, const char *msg,
              size_t msglen, cm_smtp_rcpt_t *each, int *code, char *reply,
              size_t replylen)
{
    cm_mailcurl_ctx_t *ctx = calloc (1, sizeof *ctx);
    struct curl_slist *list = NULL;
    CURL *h = NULL;
    cm_smtp_result_t result = CM_SMTP_TEMPFAIL;
    char path [ADDR_MAX + 3];
    *code = 0;
    if (replylen)
        reply [0] = 0;
    if (!ctx) {
        snprintf (reply, replylen, "out of memory");
        goto done;
    }
    result = CM_SMTP_PERMFAIL;
    if (!from || !s_addr_ok (from, true)) {
        snprintf (reply, replylen, "invalid sender address \"%.100s\"",
                  from ? from : "");
        goto done;
    }
    if (nrcpts == 0 || !rcpts) {
        snprintf (reply, replylen, "no recipients");
        goto done;
    }
    for (size_t i = 0; i < nrcpts; i++) {
        if (!rcpts [i] || !s_addr_ok (rcpts [i], false)) {
            snprintf (reply, replylen, "invalid recipient address \"%.100s\"",
                      rcpts [i] ? rcpts [i] : "");
            goto done;
        }
        snprintf (path, sizeof path, "<%s>", rcpts [i]);
        struct curl_slist *grown = curl_slist_append (list, path);
        if (!grown) {
            snprintf (reply, replylen, "out of memory");
            result = CM_SMTP_TEMPFAIL;
            goto done;
        }
        list = grown;
    }
    h = s_handle (srv, ctx, reply, replylen);
    if (!h)
        goto done;              /* bad route settings: permanent */
    result = CM_SMTP_TEMPFAIL;
    snprintf (path, sizeof path, "<%s>", from);
    s_source_t src = { msg, msglen };
    s_rcpts_t answers = { rcpts, nrcpts, each };
    if (each) {
        memset (each, 0, nrcpts * sizeof *each);
        ctx->on_reply = s_on_reply;
        ctx->on_reply_arg = &answers;
        /* a refused recipient does not keep the message from the others */
#if LIBCURL_VERSION_NUM >= 0x080200
        curl_easy_setopt (h, CURLOPT_MAIL_RCPT_ALLOWFAILS, 1L);
#else
        curl_easy_setopt (h, CURLOPT_MAIL_RCPT_ALLLOWFAILS, 1L);
#endif
    }
    curl_easy_setopt (h, CURLOPT_MAIL_FROM, path);
    curl_easy_setopt (h, CURLOPT_MAIL_RCPT, list);
    curl_easy_setopt (h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt (h, CURLOPT_READFUNCTION, s_read_msg);
    curl_easy_setopt (h, CURLOPT_READDATA, &src);
    curl_easy_setopt (h, CURLOPT_INFILESIZE_LARGE, (curl_off_t) msglen);
    /* RFC 5321 4.5.3.2.6: a server may take 10 minutes to answer the end
       of the data (content scanning, before-queue filters); libcurl waits
       for that answer under its low-speed check too. Given up sooner, the
       message the server then accepts is sent again. */
    curl_easy_setopt (h, CURLOPT_SERVER_RESPONSE_TIMEOUT, DATA_END_SECS);
    curl_easy_setopt (h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt (h, CURLOPT_LOW_SPEED_TIME, DATA_END_SECS);
    /* every other wait ends after the stall time (s_watch) */
    ctx->watch_io = true;
    s_watch_t watch = { ctx, &src, msglen, srv->stall_ms > 0 ? srv->stall_ms : STALL_MS,
                        s_now_ms (), "" };
    curl_easy_setopt (h, CURLOPT_XFERINFOFUNCTION, s_watch);
    curl_easy_setopt (h, CURLOPT_XFERINFODATA, &watch);
    curl_easy_setopt (h, CURLOPT_NOPROGRESS, 0L);
    CURLcode crc = curl_easy_perform (h);
    long rcode = 0;
    curl_easy_getinfo (h, CURLINFO_RESPONSE_CODE, &rcode);
    if (crc == CURLE_OK) {
        *code = (int) rcode;
        snprintf (reply, replylen, "%s", ctx->reply);
        result = CM_SMTP_SENT;
    }
    else if (crc == CURLE_ABORTED_BY_CALLBACK && watch.why [0]) {
        /* a stall is the server's passing trouble: tried again later */
        snprintf (reply, replylen, "%s", watch.why);
        result = CM_SMTP_TEMPFAIL;
    }
    else if (crc == CURLE_LOGIN_DENIED) {
        char why [300];
        cm_mailcurl_reason (crc, ctx, srv, why, sizeof why);
        *code = rcode >= 400 ? (int) rcode : 0;
        if (ctx->fail [0] && !strstr (why, ctx->fail))
            snprintf (reply, replylen, "%s (%s)", why, ctx->fail);
        else
            snprintf (reply, replylen, "%s", why);
        result = rcode >= 400 && rcode < 500 ? CM_SMTP_TEMPFAIL
                                             : CM_SMTP_PERMFAIL;
    }
    else if (rcode >= 400 && ctx->fail [0]) {
        *code = (int) rcode;
        snprintf (reply, replylen, "%s", ctx->fail);
        result = s_class (rcode);
    }
    else {
        char why [600];
        cm_mailcurl_reason (crc, ctx, srv, why, sizeof why);
        if (src.left == 0 && msglen > 0)
            /* the whole message went out: the server may have taken it */
            snprintf (reply, replylen, "no answer to the end of the message (%s); it may"
                      " have been delivered, and is sent again", why);
        else
            snprintf (reply, replylen, "%s", why);
        result = CM_SMTP_TEMPFAIL;
    }
    cm_trace (srv->verbose, srv->route, "SMTP send to %zu recipient%s: %s %d "
              "%s", nrcpts, nrcpts == 1 ? "" : "s",
              result == CM_SMTP_SENT ? "sent" : result == CM_SMTP_TEMPFAIL
              ? "tempfail" : "permfail", *code, reply);
done:
    if (h) {
        curl_easy_setopt (h, CURLOPT_SERVER_RESPONSE_TIMEOUT, 5L);
        curl_easy_cleanup (h);
    }
    curl_slist_free_all (list);
    free (ctx);
    return result;
}

#define CHECK(cond) do { if (!(cond)) { \
    if (verbose) printf ("  smtp selftest failed at line %d: %s\n", \
                         __LINE__, #cond); \
    return -1; } } while (0)

static void
s_feed (curl_infotype type, const char *line, size_t n, void *arg)
{
    (void) n;
    cm_mailcurl_trace_line ((cm_mailcurl_ctx_t *) arg, type, line);
}

int
cm_smtp_selftest (bool verbose)
{
    CHECK (s_addr_ok ("alice@example.test", false));
    CHECK (s_addr_ok ("", true) && !s_addr_ok ("", false));
    CHECK (!s_addr_ok ("alice@example.test>\r\nRCPT TO:<x@y", false));
    CHECK (!s_addr_ok ("a b@example.test", false));
    CHECK (!s_addr_ok ("alice", false));
    CHECK (s_helo_ok ("casemail.example.test") && s_helo_ok ("[127.0.0.1]"));
    CHECK (!s_helo_ok ("a/b") && !s_helo_ok (""));
    CHECK (s_class (250) == CM_SMTP_SENT && s_class (451) == CM_SMTP_TEMPFAIL
           && s_class (550) == CM_SMTP_PERMFAIL
           && s_class (0) == CM_SMTP_TEMPFAIL);
    /* argument errors are permanent and never touch the network */
    cm_mailserver_t srv = { .host = "127.0.0.1", .port = 1,
                            .protocol = "smtp" };
    const char *bad [] = { "x@y\r\nDATA" };
    int code = -1;
    char reply [256];
    CHECK (cm_smtp_send (&srv, "a@b.test", bad, 1, "x", 1, NULL, &code, reply,
                         sizeof reply) == CM_SMTP_PERMFAIL && code == 0
           && strstr (reply, "invalid recipient"));
    srv.protocol = "smtq";
    const char *good [] = { "x@y.test" };
    CHECK (cm_smtp_send (&srv, "a@b.test", good, 1, "x", 1, NULL, &code, reply,
                         sizeof reply) == CM_SMTP_PERMFAIL
           && strstr (reply, "unknown protocol"));
    char sum [128], err [256];
    CHECK (cm_smtp_test (&srv, sum, sizeof sum, err, sizeof err) == -1
           && strstr (err, "unknown protocol"));
    /* a server's reply as the trace takes it: a long multi-line reply
       keeps its last line (the queue id); Latin-1 bytes become '?' */
    cm_mailcurl_ctx_t *ctx = calloc (1, sizeof *ctx);
    CHECK (ctx);
    char chunk [4096] = "";
    for (int i = 0; i < 30; i++)
        snprintf (chunk + strlen (chunk), sizeof chunk - strlen (chunk),
                  "250-2.0.0 line %02d of a long answer, on and on\r\n", i);
    strcat (chunk, "250 2.0.0 Ok: re\xe7u, queued as 4ABC123\r\n");
    cm_mailcurl_debug_lines (CURLINFO_HEADER_IN, chunk, strlen (chunk), s_feed, ctx);
    size_t rl = strlen (ctx->reply);
    const char *tail = "250 2.0.0 Ok: re?u, queued as 4ABC123";
    CHECK (rl < sizeof ctx->reply && rl >= strlen (tail)
           && strcmp (ctx->reply + rl - strlen (tail), tail) == 0
           && strncmp (ctx->reply, "250-2.0.0 line 00", 17) == 0 && strstr (ctx->reply, " ... "));
    /* each recipient gets the answer to its own RCPT TO, a multi-line one
       whole; an AUTH exchange and other commands are not taken for one */
    memset (ctx, 0, sizeof *ctx);
    const char *two [] = { "a@x.test", "b@x.test", "c@x.test" };
    cm_smtp_rcpt_t each [3] = { { 0, "" } };
    s_rcpts_t answers = { two, 3, each };
    ctx->on_reply = s_on_reply;
    ctx->on_reply_arg = &answers;
    static const char *const talk [][2] = {
        { "O", "AUTH PLAIN AGFAYgBj" }, { "I", "235 2.7.0 Authentication successful" },
        { "O", "MAIL FROM:<s@x.test>" }, { "I", "250 2.1.0 Ok" },
        { "O", "RCPT TO:<b@x.test>" }, { "I", "550-5.1.1 <b@x.test>: Recipient" },
        { "I", "550 5.1.1 address rejected" },
        { "O", "RCPT TO:<a@x.test>" }, { "I", "250 2.1.5 Ok" },
        { "O", "RCPT TO:<c@x.test>" }, { "I", "452 4.2.2 Mailbox full" },
        { "O", "DATA" }, { "I", "354 End data with <CR><LF>.<CR><LF>" },
    };
    for (size_t i = 0; i < sizeof talk / sizeof talk [0]; i++)
        cm_mailcurl_trace_line (ctx, talk [i][0][0] == 'O' ? CURLINFO_HEADER_OUT
                                : CURLINFO_HEADER_IN, talk [i][1]);
    CHECK (each [0].code == 250 && each [1].code == 550 && each [2].code == 452);
    CHECK (strcmp (each [1].reply, "550-5.1.1 <b@x.test>: Recipient 550 5.1.1 address rejected") == 0
           && strcmp (each [2].reply, "452 4.2.2 Mailbox full") == 0);
    /* the trace reads the clock for the stall watch only when asked:
       the SMTP send asks, the other clients do not */
    memset (ctx, 0, sizeof *ctx);
    char greeting [] = "220 mx.example.test ESMTP\r\n";
    cm_mailcurl_debug (NULL, CURLINFO_HEADER_IN, greeting, strlen (greeting), ctx);
    CHECK (ctx->last_io_ms == 0 && strncmp (ctx->reply, "220 ", 4) == 0);
    ctx->watch_io = true;
    cm_mailcurl_debug (NULL, CURLINFO_HEADER_IN, greeting, strlen (greeting), ctx);
    CHECK (ctx->last_io_ms > 0);
    free (ctx);
    return 0;
}
