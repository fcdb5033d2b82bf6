/*  sender/main.c: casemail-sender. Send threads (CASEMAIL_SENDER_THREADS,
    default 4) claim queued incident email with FOR UPDATE SKIP LOCKED
    (any number of senders side by side), mark it `sending` while holding
    a session lease on it (an advisory lock that dies with the process),
    build the MIME once and store it, send it over the route's outbound
    connection, and record the outcome: `sent` with the server's reply; a
    temporary failure back to `queued` with an exponential backoff
    (CASEMAIL_SEND_RETRY_BASE_MS, default 30 s, doubling, at most 1 h) up
    to CASEMAIL_SEND_MAX_ATTEMPTS (default 10); a permanent one `failed`
    at once with the server's answer. Over SMTP each recipient is settled
    on its own (s_fold): a refused one does not keep the email from the
    others, and a retry goes only to those still waiting. An email left
    `sending` by a dead
    sender goes back to `queued` and is sent again with the same bytes and
    Message-ID: delivery is at least once. A server that stalls (no byte
    moving for CASEMAIL_SEND_STALL_MS, default 60 s, outside the wait for
    the answer to the end of the data, or over EWS for the answer to the
    request) ends the attempt as a temporary failure naming the phase. The main thread keeps the bus
    (heartbeats, wakes) and rescans every second. */
#include "sender.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "route.h"
#include "routeauth.h"
#include "server.h"
#include "smtp.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEND_NAMESPACE 25454   /* advisory lock class of emails being sent */
#define THREADS_MAX 16

typedef struct {
    cm_server_t *srv;
    pthread_t threads [THREADS_MAX];
    int nthreads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    unsigned long long generation;   /* bumped by each wake */
    atomic_ullong sent, failed, retried, bounced_seen;
} sender_t;

static sender_t s_sender = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static void s_free_array (char **a);

/* Parses a text[] literal of plain addresses into a NULL-ended array;
   NULL when memory runs out. */
static char **
s_split_array (const char *lit, size_t *n)
{
    *n = 0;
    size_t cap = 8;
    char **out = calloc (cap + 1, sizeof *out);
    if (!out || !lit || *lit != '{')
        return out;
    const char *p = lit + 1;
    while (*p && *p != '}') {
        char item [400];
        size_t k = 0;
        bool quoted = *p == '"';
        if (quoted)
            p++;
        while (*p && (quoted ? *p != '"' : (*p != ',' && *p != '}'))) {
            if (*p == '\\' && p [1])
                p++;
            if (k < sizeof item - 1)
                item [k++] = *p;
            p++;
        }
        if (quoted && *p)
            p++;
        item [k] = 0;
        if (*n == cap) {
            char **grown = realloc (out, (cap * 2 + 1) * sizeof *out);
            if (!grown) {
                s_free_array (out);
                return NULL;
            }
            out = grown;
            cap *= 2;
        }
        if (!(out [*n] = strdup (item))) {
            s_free_array (out);
            return NULL;
        }
        out [++*n] = NULL;
        if (*p == ',')
            p++;
    }
    return out;
}

static void
s_free_array (char **a)
{
    for (size_t i = 0; a && a [i]; i++)
        free (a [i]);
    free (a);
}

/* Builds the MIME of outbox row id from its columns and attachments.
   NULL with err, and *retry set when the trouble is the sender's or
   the database's (out of memory, a statement that failed), not the
   email's. */
static char *
s_build (cm_db_t *db, const PGresult *row, size_t *len, char *err, size_t errlen,
         bool *retry)
{
    size_t nto, ncc;
    char **to = s_split_array (PQgetvalue (row, 0, 3), &nto);
    char **cc = s_split_array (PQgetvalue (row, 0, 4), &ncc);
    const char *p [] = { PQgetvalue (row, 0, 0) };
    PGresult *ar = cm_db_query_binary (db, "SELECT filename, content_type, data"
        " FROM attachments WHERE outbox_id = $1 ORDER BY id", 1, p, NULL, NULL, 1);
    size_t natt = ar ? (size_t) PQntuples (ar) : 0;
    out_attachment_t *atts = calloc (natt + 1, sizeof *atts);
    for (size_t i = 0; atts && i < natt; i++) {
        atts [i].filename = PQgetvalue (ar, (int) i, 0);
        atts [i].content_type = PQgetvalue (ar, (int) i, 1);
        atts [i].data = (const unsigned char *) PQgetvalue (ar, (int) i, 2);
        atts [i].len = (size_t) PQgetlength (ar, (int) i, 2);
    }
    out_mail_t mail = {
        .from = PQgetvalue (row, 0, 2),
        .to = (const char *const *) to, .nto = nto,
        .cc = (const char *const *) cc, .ncc = ncc,
        .subject = PQgetvalue (row, 0, 5),
        .message_id = PQgetvalue (row, 0, 1),
        .in_reply_to = PQgetisnull (row, 0, 8) ? NULL : PQgetvalue (row, 0, 8),
        .references = PQgetisnull (row, 0, 9) ? NULL : PQgetvalue (row, 0, 9),
        .body = PQgetvalue (row, 0, 6),
        .html = PQgetisnull (row, 0, 7) ? NULL : PQgetvalue (row, 0, 7),
        .attachments = atts, .nattachments = natt,
    };
    char *mime = ar && to && cc && atts ? mime_build (&mail, len, err, errlen) : NULL;
    if (!ar)
        snprintf (err, errlen, "database: %s", cm_db_error (db));
    else if (!to || !cc || !atts)
        snprintf (err, errlen, "out of memory");
    *retry = !ar || !to || !cc || !atts;
    PQclear (ar);
    free (atts);
    s_free_array (to);
    s_free_array (cc);
    return mime;
}

/* One attempt's outcome for the email as a whole. */
typedef struct {
    cm_smtp_result_t result;
    char reply [1024];          /* the server's answer to the message, or the reason */
    char refusals [1024];       /* recipients refused for good now; "" none */
    char waiting [1024];        /* recipients refused for now; "" none */
    cm_buf_t delivered;         /* text[] literals of the recipients that */
    cm_buf_t refused;           /* took the message / refused it for good */
} outcome_t;

static long
s_max_attempts (void)
{
    return cm_config_env ("CASEMAIL_SEND_MAX_ATTEMPTS", 10);
}

/* Appends addr to the text[] literal b ("{" ... "}" closed by the caller). */
static void
s_lit_add (cm_buf_t *b, const char *addr)
{
    if (b->len > 1)
        cm_buf_append (b, ",", 1);
    cm_buf_append (b, "\"", 1);
    for (const char *p = addr; *p; p++) {
        if (*p == '"' || *p == '\\')
            cm_buf_append (b, "\\", 1);
        cm_buf_append (b, p, 1);
    }
    cm_buf_append (b, "\"", 1);
}

/* Appends "<lead>addr (reply)" to the list in to (1024 bytes). */
static void
s_error_add (char *to, const char *lead, const char *addr, const char *reply)
{
    size_t used = strlen (to);
    snprintf (to + used, 1024 - used, "%s%s%s (%s)", used ? "; " : "", lead, addr, reply);
}

/* Folds the answers to each recipient into the email's outcome. The
   recipients that took the message join `delivered`; those refused for
   good (5xx, or 4xx at the last attempt) join `refused`; those refused
   for now (4xx), or not reached because the send failed for a passing
   cause, are tried again: the email stays queued until none is left, and
   a later attempt goes to them alone. It ends `sent` when anyone took it,
   `failed` when nobody did. */
static void
s_fold (outcome_t *o, const char *const *rcpts, size_t n, const cm_smtp_rcpt_t *each,
        bool last_attempt, bool delivered_before)
{
    bool went = o->result == CM_SMTP_SENT;
    size_t took = 0, waiting = 0;
    for (size_t i = 0; i < n; i++) {
        int code = each [i].code;
        if (went && (code == 0 || code / 100 == 2)) {
            s_lit_add (&o->delivered, rcpts [i]);
            took++;
        }
        else if (code / 100 == 5 || (code / 100 == 4 && last_attempt)) {
            s_lit_add (&o->refused, rcpts [i]);
            s_error_add (o->refusals, "not delivered to ", rcpts [i], each [i].reply);
        }
        else if (code / 100 == 4) {
            waiting++;
            s_error_add (o->waiting, "not yet delivered to ", rcpts [i], each [i].reply);
        }
        else if (o->result == CM_SMTP_TEMPFAIL && !last_attempt)
            waiting++;          /* not reached: the whole send is tried again */
        else {
            s_lit_add (&o->refused, rcpts [i]);
            if (code)           /* accepted, but the message was refused */
                s_error_add (o->refusals, "not delivered to ", rcpts [i], o->reply);
        }
    }
    if (waiting)
        o->result = CM_SMTP_TEMPFAIL;
    else if (took || delivered_before)
        o->result = CM_SMTP_SENT;
    else
        o->result = CM_SMTP_PERMFAIL;
}

/* Writes one attempt's outcome: only while the row is still this
   attempt's (a sender whose database session broke mid-send may find its
   email queued again and claimed by another, whose outcome stands). The
   refusals for good of every attempt are kept (`refusals`) and lead the
   last error; a permanent failure after some recipients took the email
   leaves it `sent`, and one after a delivery report took back the last
   who had (dsn_status set) `bounced`. 0 ok. */
static int
s_write_outcome (cm_db_t *db, const char *id, const outcome_t *o, const char *reply,
                 const char *refusals, const char *waiting, const char *delay, int attempts)
{
    char n [16];
    snprintf (n, sizeof n, "%d", attempts);
    const char *p [] = { id, reply, delay, n, *refusals ? refusals : NULL,
                         o->delivered.data, o->refused.data, *waiting ? waiting : NULL };
    if (o->result == CM_SMTP_SENT)
        return cm_db_exec (db, "UPDATE outbox SET state = 'sent', smtp_reply = $2::text, sent_at = now(),"
                           " refusals = nullif(concat_ws('; ', refusals, $5::text), ''),"
                           " last_error = nullif(concat_ws('; ', refusals, $5::text), ''),"
                           " delivered = delivered || $6::text[], refused = refused || $7::text[]"
                           " WHERE id = $1 AND $3::text IS NOT NULL AND attempts = $4::int",
                           7, p);
    if (o->result == CM_SMTP_TEMPFAIL)
        return cm_db_exec (db, "UPDATE outbox SET state = 'queued',"
                           " refusals = nullif(concat_ws('; ', refusals, $5::text), ''),"
                           " last_error = concat_ws('; ', refusals, $5::text, coalesce($8::text, $2::text)),"
                           " next_attempt_at = now() + $3::interval,"
                           " delivered = delivered || $6::text[], refused = refused || $7::text[],"
                           " smtp_reply = CASE WHEN $6::text[] <> '{}' THEN $2::text ELSE smtp_reply END,"
                           " sent_at = CASE WHEN $6::text[] <> '{}' THEN now() ELSE sent_at END"
                           " WHERE id = $1 AND attempts = $4::int", 8, p);
    return cm_db_exec (db, "UPDATE outbox SET delivered = delivered || $6::text[],"
                       " refused = refused || $7::text[],"
                       " refusals = nullif(concat_ws('; ', refusals, $5::text), ''),"
                       " last_error = concat_ws('; ', refusals, coalesce($5::text, $8::text, $2::text)),"
                       " state = CASE WHEN delivered || $6::text[] <> '{}' THEN 'sent'"
                       "  WHEN dsn_status IS NOT NULL THEN 'bounced' ELSE 'failed' END,"
                       " smtp_reply = CASE WHEN delivered <> '{}' THEN smtp_reply ELSE $2::text END"
                       " WHERE id = $1 AND $3::text IS NOT NULL AND attempts = $4::int", 8, p);
}

/* Records the outcome of one attempt and releases the email's lease. */
static void
s_record (sender_t *self, cm_db_t *db, const char *id, outcome_t *o, int attempts)
{
    long base = cm_config_env ("CASEMAIL_SEND_RETRY_BASE_MS", 30000);
    char delay [32];
    long long ms = base;
    for (int i = 1; i < attempts && ms < 3600000; i++)
        ms *= 2;
    if (ms > 3600000)
        ms = 3600000;
    snprintf (delay, sizeof delay, "%lld milliseconds", ms);
    if (o->result == CM_SMTP_TEMPFAIL && attempts >= s_max_attempts ())
        o->result = CM_SMTP_PERMFAIL;
    atomic_fetch_add (o->result == CM_SMTP_SENT ? &self->sent
                      : o->result == CM_SMTP_TEMPFAIL ? &self->retried : &self->failed, 1);
    cm_buf_append (&o->delivered, "}", 1);
    cm_buf_append (&o->refused, "}", 1);
    /* the server's words, storable as text whatever it sent */
    cm_text_scrub (o->reply);
    cm_text_scrub (o->refusals);
    cm_text_scrub (o->waiting);
    if (s_write_outcome (db, id, o, o->reply, o->refusals, o->waiting, delay, attempts)) {
        /* never leave the row sending while its lease goes: it would be
           queued again at once and sent again. Once more without the
           server's words, which are all this adds. */
        cm_error (NULL, "database: recording email %s: %s", id, cm_db_error (db));
        if (s_write_outcome (db, id, o, "(the server's reply could not be stored)",
                             *o->refusals ? "(the server's reply could not be stored)" : "",
                             *o->waiting ? "(the server's reply could not be stored)" : "",
                             delay, attempts)) {
            cm_error (NULL, "database: recording email %s again: %s", id, cm_db_error (db));
            /* and last the state alone, from fixed text: an email the
               server took is never left to be sent again every second */
            char n [16];
            snprintf (n, sizeof n, "%d", attempts);
            const char *p [] = { id, n, o->result == CM_SMTP_SENT ? "sent"
                                 : o->result == CM_SMTP_TEMPFAIL ? "queued" : "failed", delay };
            if (cm_db_exec (db, "UPDATE outbox SET state = $3::text, last_error ="
                            " '(the outcome could not be stored)', next_attempt_at = now()"
                            " + $4::interval, sent_at = CASE WHEN $3::text = 'sent' THEN now() END"
                            " WHERE id = $1::bigint AND attempts = $2::int", 4, p))
                cm_error (NULL, "database: recording email %s's state: %s", id, cm_db_error (db));
        }
    }
    char ns [16];
    snprintf (ns, sizeof ns, "%d", SEND_NAMESPACE);
    const char *up [] = { ns, id };
    cm_db_exec (db, "SELECT pg_advisory_unlock($1::int, $2::int)", 2, up);
}

/* The route's outbound server, with the sender's stall time. */
static void
s_outbound (const json_t *config, cm_mailserver_t *srv)
{
    cm_route_outbound (config, srv);
    srv->stall_ms = cm_config_env ("CASEMAIL_SEND_STALL_MS", 60000);
}

/* SMTP with SASL XOAUTH2/OAUTHBEARER for an auth oauth2 route (not
   Exchange): a token from the route's token endpoint (one cache per send),
   and once more with a fresh token when the server refuses it. A token
   that can't be had is a temporary failure with the sign-in's reason. */
static cm_smtp_result_t
s_send_oauth (const json_t *config, const char *from, const char *const *rcpts,
              size_t n, const char *mime, size_t mimelen, cm_smtp_rcpt_t *each,
              int *code, char *reply, size_t replylen)
{
    cm_oauth_t *oauth = NULL;
    cm_smtp_result_t result = CM_SMTP_TEMPFAIL;
    cm_mailserver_t srv;
    s_outbound (config, &srv);
    for (int attempt = 0; attempt < 2; attempt++) {
        char err [512];
        char *token = cm_route_oauth_token (config, &oauth, err, sizeof err);
        if (!token) {
            snprintf (reply, replylen, "OAuth2 sign-in failed: %s", err);
            result = CM_SMTP_TEMPFAIL;
            break;
        }
        srv.oauth_token = token;
        result = cm_smtp_send (&srv, from, rcpts, n, mime, mimelen, each, code,
                               reply, replylen);
        srv.oauth_token = NULL;
        free (token);
        if (result == CM_SMTP_SENT || !strstr (reply, "authentication failed"))
            break;
        cm_oauth_invalidate (oauth);
    }
    cm_oauth_destroy (&oauth);
    return result;
}

/* Claims, sends and records one email. 1 done, 0 nothing to do, -1 db. */
static int
s_send_one (sender_t *self, cm_db_t *db)
{
    char ns [16];
    snprintf (ns, sizeof ns, "%d", SEND_NAMESPACE);
    if (cm_db_exec (db, "BEGIN", 0, NULL))
        return -1;
    const char *np [] = { ns };
    PGresult *res = cm_db_query_binary (db,
        "SELECT o.id, o.message_id, o.mail_from, o.rcpt_to, o.cc, o.subject, o.body, o.html,"
        " o.in_reply_to, o.refs, o.mime, o.attempts + 1, r.config, o.bcc,"
        " o.delivered || o.refused, o.delivered <> '{}'"
        " FROM outbox o LEFT JOIN routes r ON r.id = o.route_id"
        " WHERE o.state = 'queued' AND o.next_attempt_at <= now() AND $1::int > 0"
        " ORDER BY o.next_attempt_at, o.id LIMIT 1 FOR NO KEY UPDATE OF o SKIP LOCKED",
        1, np, NULL, NULL, 0);
    if (!res) {
        cm_error (NULL, "database: claiming email: %s", cm_db_error (db));
        cm_db_exec (db, "ROLLBACK", 0, NULL);
        return -1;
    }
    if (PQntuples (res) == 0) {
        PQclear (res);
        cm_db_exec (db, "COMMIT", 0, NULL);
        return 0;
    }
    char id [32];
    snprintf (id, sizeof id, "%s", PQgetvalue (res, 0, 0));
    /* The lease on this email: held by our session until the outcome is
       recorded, so a rescan can tell a live send from a dead sender's. */
    const char *lp [] = { ns, id };
    PGresult *lr = cm_db_query (db, "SELECT pg_try_advisory_lock($1::int, $2::int)", 2, lp);
    bool leased = lr && strcmp (cm_db_get (lr, 0, 0), "t") == 0;
    PQclear (lr);
    if (!leased) {
        PQclear (res);
        cm_db_exec (db, "ROLLBACK", 0, NULL);
        return 0;
    }
    int attempts = atoi (PQgetvalue (res, 0, 11));
    char err [1024] = "";
    bool retry = false;         /* no MIME, for a reason of the moment */
    size_t mimelen = 0;
    char *mime = NULL;
    if (!PQgetisnull (res, 0, 10)) {
        size_t n = 0;
        unsigned char *raw = PQunescapeBytea ((const unsigned char *) PQgetvalue (res, 0, 10), &n);
        mime = raw ? malloc (n + 1) : NULL;
        if (mime) {
            memcpy (mime, raw, n);
            mime [n] = 0;
            mimelen = n;
        }
        else {
            snprintf (err, sizeof err, "out of memory");
            retry = true;
        }
        if (raw)
            PQfreemem (raw);
    }
    else
        mime = s_build (db, res, &mimelen, err, sizeof err, &retry);
    json_t *config = PQgetisnull (res, 0, 12) ? NULL : json_loads (PQgetvalue (res, 0, 12), 0, NULL);
    size_t nto, ncc, nbcc;
    char **to = s_split_array (PQgetvalue (res, 0, 3), &nto);
    char **cc = s_split_array (PQgetvalue (res, 0, 4), &ncc);
    char **bcc = s_split_array (PQgetvalue (res, 0, 13), &nbcc);
    size_t ndone;
    char **done = s_split_array (PQgetvalue (res, 0, 14), &ndone);
    bool delivered_before = strcmp (PQgetvalue (res, 0, 15), "t") == 0;
    char from [320];
    snprintf (from, sizeof from, "%s", PQgetvalue (res, 0, 2));
    PQclear (res);
    /* mark it sending (its lease is our advisory lock) and keep the MIME */
    char alen [16];
    snprintf (alen, sizeof alen, "%d", attempts);
    const char *mp [] = { id, mime, alen };
    int ml [3] = { 0, (int) mimelen, 0 }, mf [3] = { 0, 1, 0 };
    PGresult *mr = cm_db_query_binary (db, "UPDATE outbox SET state = 'sending',"
        " attempts = $3::int, mime = coalesce(mime, $2) WHERE id = $1", 3, mp, ml, mf, 0);
    bool ok = mr != NULL;
    PQclear (mr);
    if (!ok || cm_db_exec (db, "COMMIT", 0, NULL)) {
        cm_db_exec (db, "ROLLBACK", 0, NULL);
        cm_db_exec (db, "SELECT pg_advisory_unlock($1::int, $2::int)", 2, lp);
        free (mime);
        json_decref (config);
        s_free_array (to); s_free_array (cc); s_free_array (bcc); s_free_array (done);
        return -1;
    }
    outcome_t o = { .result = CM_SMTP_PERMFAIL };
    cm_buf_init (&o.delivered, 0);
    cm_buf_init (&o.refused, 0);
    cm_buf_append (&o.delivered, "{", 1);
    cm_buf_append (&o.refused, "{", 1);
    int code = 0;
    const char *route = config ? cm_route_str (config, "name") : NULL;
    /* the recipients still to take it: a later attempt goes to those an
       earlier one could not reach, never again to one that took it. All
       of them: the API limits how many an email has, the sender cuts
       none (a server that takes fewer answers 452 to the rest, who wait
       for the next attempt). */
    bool lists_ok = to && cc && bcc && done;
    const char **rcpts = lists_ok ? calloc (nto + ncc + nbcc + 1, sizeof *rcpts) : NULL;
    size_t n = 0;
    char **lists [] = { to, cc, bcc };
    for (size_t l = 0; l < 3 && rcpts; l++)
        for (size_t i = 0; lists [l][i]; i++) {
            bool settled = false;
            for (size_t k = 0; k < ndone && !settled; k++)
                settled = strcmp (done [k], lists [l][i]) == 0;
            if (!settled)
                rcpts [n++] = lists [l][i];
        }
    cm_smtp_rcpt_t *each = calloc (n ? n : 1, sizeof *each);
    bool smtp = false;
    if (!each || !rcpts || (!mime && retry)) {
        /* the sender's or the database's trouble, not the email's:
           tried again later */
        o.result = CM_SMTP_TEMPFAIL;
        snprintf (o.reply, sizeof o.reply, "cannot build the message now: %s",
                  !mime && retry ? err : "out of memory in the sender");
    }
    else if (!mime)
        snprintf (o.reply, sizeof o.reply, "cannot build the message: %s", err);
    else if (!config)
        snprintf (o.reply, sizeof o.reply, "the incident's route was removed");
    else if (cm_route_unseal (config, cm_server_seal (self->srv)))
        snprintf (o.reply, sizeof o.reply, "the route's password can't be opened with this"
                  " install's key file");
    else if (cm_route_bool (config, "exchange"))
        o.result = sender_ews_send (config, mime, mimelen, bcc, nbcc, o.reply, sizeof o.reply);
    else if (n == 0 && ndone > 0) {
        o.result = delivered_before ? CM_SMTP_SENT : CM_SMTP_PERMFAIL;
        snprintf (o.reply, sizeof o.reply, "every recipient was settled by an earlier attempt");
    }
    else if (strcmp (cm_route_str (config, "auth"), "oauth2") == 0) {
        smtp = true;
        o.result = s_send_oauth (config, from, rcpts, n, mime, mimelen, each, &code,
                                 o.reply, sizeof o.reply);
    }
    else {
        smtp = true;
        cm_mailserver_t srv;
        s_outbound (config, &srv);
        o.result = cm_smtp_send (&srv, from, rcpts, n, mime, mimelen, each, &code,
                                 o.reply, sizeof o.reply);
    }
    if (smtp)
        s_fold (&o, rcpts, n, each, attempts >= s_max_attempts (), delivered_before);
    cm_info (route, "email %s attempt %d: %s: %s%s%s", id, attempts,
             o.result == CM_SMTP_SENT ? "sent" : o.result == CM_SMTP_TEMPFAIL ? "deferred" : "failed",
             o.reply, *o.refusals ? "; " : "", o.refusals);
    s_record (self, db, id, &o, attempts);
    cm_buf_free (&o.delivered);
    cm_buf_free (&o.refused);
    free (each);
    free (rcpts);
    free (mime);
    json_decref (config);
    s_free_array (to); s_free_array (cc); s_free_array (bcc); s_free_array (done);
    return 1;
}

static void *
s_thread (void *arg)
{
    sender_t *self = arg;
    cm_db_t *db = NULL;
    unsigned long long seen = 0;
    while (!cm_server_stopping (self->srv)) {
        if (!db || !cm_db_alive (db)) {
            char err [512];
            cm_db_destroy (&db);
            db = cm_db_connect (cm_server_config (self->srv)->db, "casemail-sender-thread",
                                err, sizeof err);
            if (!db) {
                cm_warn (NULL, "%s", err);
                struct timespec ts = { 1, 0 };
                nanosleep (&ts, NULL);
                continue;
            }
        }
        int rc = s_send_one (self, db);
        if (rc > 0)
            continue;
        /* nothing due: sleep until a wake or the next rescan */
        pthread_mutex_lock (&self->lock);
        if (self->generation == seen) {
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait (&self->wake, &self->lock, &until);
        }
        seen = self->generation;
        pthread_mutex_unlock (&self->lock);
    }
    cm_db_destroy (&db);
    return NULL;
}

static void
s_wake_threads (sender_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->generation++;
    pthread_cond_broadcast (&self->wake);
    pthread_mutex_unlock (&self->lock);
}

/* Emails left `sending` by a sender that died go back to the queue. */
static void
s_tick (cm_server_t *srv)
{
    if (!cm_server_db_ok (srv))
        return;
    char ns [16];
    snprintf (ns, sizeof ns, "%d", SEND_NAMESPACE);
    const char *p [] = { ns };
    PGresult *res = cm_db_query (cm_server_db (srv),
        "UPDATE outbox SET state = 'queued' WHERE state = 'sending' AND NOT EXISTS"
        " (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
        "  AND l.classid = $1::int::oid AND l.objid = outbox.id::int::oid AND l.objsubid = 2"
        "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
        " RETURNING id", 1, p);
    if (res && PQntuples (res) > 0)
        cm_warn (NULL, "%d email(s) left sending by a stopped sender queued again (they may"
                 " be delivered twice, with the same Message-ID)", PQntuples (res));
    PQclear (res);
    s_wake_threads (cm_server_state (srv));
}

static void
s_event (cm_server_t *srv, const char *topic, json_t *payload)
{
    (void) payload;
    if (strcmp (topic, "wake.sender") == 0)
        s_wake_threads (cm_server_state (srv));
}

static int
s_start (cm_server_t *srv)
{
    sender_t *self = cm_server_state (srv);
    self->srv = srv;
    int n = (int) cm_config_env ("CASEMAIL_SENDER_THREADS", 4);
    if (n > THREADS_MAX)
        n = THREADS_MAX;
    for (int i = 0; i < n; i++)
        if (pthread_create (&self->threads [self->nthreads], NULL, s_thread, self) == 0)
            self->nthreads++;
    return self->nthreads ? 0 : -1;
}

static void
s_stop (cm_server_t *srv)
{
    sender_t *self = cm_server_state (srv);
    s_wake_threads (self);
    for (int i = 0; i < self->nthreads; i++)
        pthread_join (self->threads [i], NULL);
    self->nthreads = 0;
}

static void
s_counters (cm_server_t *srv, json_t *out)
{
    sender_t *self = cm_server_state (srv);
    json_object_set_new (out, "sent", json_integer ((json_int_t) atomic_load (&self->sent)));
    json_object_set_new (out, "failed", json_integer ((json_int_t) atomic_load (&self->failed)));
    json_object_set_new (out, "retried", json_integer ((json_int_t) atomic_load (&self->retried)));
}

int
main (int argc, char **argv)
{
    static const char *const topics [] = { "wake.sender", NULL };
    static const cm_server_hooks_t hooks = {
        .kind = "sender",
        .topics = topics,
        .start = s_start,
        .stop = s_stop,
        .event = s_event,
        .tick = s_tick,
        .tick_ms = 1000,
        .counters = s_counters,
    };
    return cm_server_main (argc, argv, &hooks, &s_sender);
}
