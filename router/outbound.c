/*  router/outbound.c: incident email over the API. Validates an email an
    analyst sends from an incident (addresses, no CR/LF in any header
    value, attachments), gives it a Message-ID on the route's domain and
    the incident's thread (In-Reply-To the latest message, References the
    chain), and queues it in the outbox in the same transaction as its
    timeline entry; then wakes the senders. Also lists the outbox. */
#include "router.h"
#include "digest.h"
#include "log.h"
#include "route.h"
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFERENCES_MAX 20
#define TEXT_MAX (4u * 1024 * 1024)   /* body, html: as the CLI's files */
#define RECIPIENTS_MAX 100   /* per field (to, cc, bcc); the sender takes
                                every recipient of an email, none is cut */

static bool
s_has_control (const char *s)
{
    for (; *s; s++)
        if ((unsigned char) *s < 0x20 && *s != '\t')
            return true;
    return false;
}

/* Checks an array of addresses; fills a PostgreSQL text[] literal and a
   display list. -1 with a 400 reply. */
static int
s_addresses (json_t *list, const char *field, bool required, cm_buf_t *literal,
             cm_buf_t *display, reply_t *r)
{
    if (!list || json_is_null (list)) {
        if (required) {
            reply_error (r, 400, field, "at least one %s address is required", field);
            return -1;
        }
        cm_buf_append (literal, "{}", 2);
        return 0;
    }
    if (!json_is_array (list) || (required && json_array_size (list) == 0)) {
        reply_error (r, 400, field, "%s must be a list of addresses", field);
        return -1;
    }
    if (json_array_size (list) > RECIPIENTS_MAX) {
        reply_error (r, 400, field, "more than %d %s addresses (%zu given): the limit"
                     " is %d for each of to, cc and bcc", RECIPIENTS_MAX, field,
                     json_array_size (list), RECIPIENTS_MAX);
        return -1;
    }
    cm_buf_append (literal, "{", 1);
    size_t i;
    json_t *v;
    json_array_foreach (list, i, v) {
        const char *addr = json_string_value (v);
        if (!addr || s_has_control (addr)) {
            reply_error (r, 400, field, "%s address %zu contains a control character"
                         " (CR, LF or NUL)", field, i + 1);
            return -1;
        }
        char ascii [320], why [200];
        if (cm_route_ascii_address (addr, ascii, sizeof ascii, why, sizeof why)) {
            reply_error (r, 400, field, "%s address '%s' can't be used: %s", field, addr, why);
            return -1;
        }
        if (!cm_route_valid_address (ascii)) {
            reply_error (r, 400, field, "%s address '%s' is not a valid email address",
                         field, addr);
            return -1;
        }
        cm_buf_printf (literal, "%s\"%s\"", i ? "," : "", ascii);
        cm_buf_printf (display, "%s%s", display->len ? ", " : "", ascii);
    }
    cm_buf_append (literal, "}", 1);
    return 0;
}

static unsigned char *
s_base64 (const char *text, size_t *len)
{
    size_t tlen = strlen (text);
    unsigned char *out = malloc (tlen / 4 * 3 + 4);
    if (!out)
        return NULL;
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new ();
    int n = 0, m = 0;
    EVP_DecodeInit (ctx);
    if (EVP_DecodeUpdate (ctx, out, &n, (const unsigned char *) text, (int) tlen) < 0
        || EVP_DecodeFinal (ctx, out + n, &m) < 0) {
        EVP_ENCODE_CTX_free (ctx);
        free (out);
        return NULL;
    }
    EVP_ENCODE_CTX_free (ctx);
    *len = (size_t) (n + m);
    return out;
}

/* A JSON array of the database's array_to_json text; [] when absent. */
static json_t *
s_json_list (const char *text)
{
    json_t *a = text ? json_loads (text, 0, NULL) : NULL;
    if (!json_is_array (a)) {
        json_decref (a);
        a = json_array ();
    }
    return a;
}

/* The incident's thread: In-Reply-To (latest) and References (first and
   newest, capped). */
static void
s_thread (cm_db_t *db, const char *incident_id, char *irt, size_t irtlen, cm_buf_t *refs)
{
    const char *p [] = { incident_id };
    PGresult *res = cm_db_query (db, "SELECT message_id FROM timeline WHERE incident_id = $1"
                                 " AND message_id IS NOT NULL AND message_id <> ''"
                                 " ORDER BY id", 1, p);
    irt [0] = 0;
    int n = res ? PQntuples (res) : 0;
    for (int i = 0; i < n; i++) {
        if (i != 0 && i < n - (REFERENCES_MAX - 1))
            continue;
        const char *id = cm_db_get (res, i, 0);
        /* one too long to name whole (a hostile sender's) is left out:
           cut, it would name nothing, or end inside a character */
        if (s_has_control (id) || strchr (id, '>') || strchr (id, '<')
            || strlen (id) >= irtlen)
            continue;
        cm_buf_printf (refs, "%s<%s>", refs->len ? " " : "", id);
        snprintf (irt, irtlen, "%s", id);
    }
    PQclear (res);
}

void
outbound_queue (router_t *self, cm_db_t *db, const char *incident, json_t *body, reply_t *r)
{
    long long number = incident_number (incident);
    if (!number) {
        reply_error (r, 400, NULL, "'%s' is not an incident number (INC-n)", incident);
        return;
    }
    if (!json_is_object (body)) {
        reply_error (r, 400, NULL, "the request body must be a JSON object");
        return;
    }
    char num [32];
    snprintf (num, sizeof num, "%lld", number);
    const char *np [] = { num };
    PGresult *res = cm_db_query (db, "SELECT i.id, i.title, r.id, r.config->>'email',"
        " r.name FROM incidents i LEFT JOIN routes r ON r.id = i.route_id"
        " WHERE i.number = $1::bigint", 1, np);
    if (!res || PQntuples (res) == 0) {
        if (res)
            reply_error (r, 404, NULL, "no incident INC-%lld", number);
        else
            reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        PQclear (res);
        return;
    }
    char incident_id [32], route_id [32] = "", from [320] = "", title [512];
    snprintf (incident_id, sizeof incident_id, "%s", cm_db_get (res, 0, 0));
    snprintf (title, sizeof title, "%s", cm_db_get (res, 0, 1));
    if (cm_db_get (res, 0, 2)) {
        snprintf (route_id, sizeof route_id, "%s", cm_db_get (res, 0, 2));
        snprintf (from, sizeof from, "%s", cm_db_get (res, 0, 3));
    }
    PQclear (res);
    if (!*route_id) {
        reply_error (r, 409, NULL, "INC-%lld has no email route to send through", number);
        return;
    }
    cm_buf_t to, cc, bcc, to_text, cc_text, refs;
    cm_buf_init (&to, 0); cm_buf_init (&cc, 0); cm_buf_init (&bcc, 0);
    cm_buf_init (&to_text, 0); cm_buf_init (&cc_text, 0); cm_buf_init (&refs, 0);
    unsigned char **datas = NULL;
    char *subject = NULL;
    size_t natt = 0;
    bool began = false;
    cm_buf_t ignored;
    cm_buf_init (&ignored, 0);
    if (s_addresses (json_object_get (body, "to"), "to", true, &to, &to_text, r)
        || s_addresses (json_object_get (body, "cc"), "cc", false, &cc, &cc_text, r)
        || s_addresses (json_object_get (body, "bcc"), "bcc", false, &bcc, &ignored, r))
        goto done;
    const char *subj = json_string_value (json_object_get (body, "subject"));
    if (json_object_get (body, "subject") && !json_is_null (json_object_get (body, "subject"))
        && !subj) {
        reply_error (r, 400, "subject", "subject must be a string");
        goto done;
    }
    if (subj && (s_has_control (subj) || strlen (subj) > 900)) {
        reply_error (r, 400, "subject", s_has_control (subj)
                     ? "subject contains a control character (CR, LF or NUL)"
                     : "subject is longer than 900 characters");
        goto done;
    }
    const char *text = json_string_value (json_object_get (body, "body"));
    const char *html = json_string_value (json_object_get (body, "html"));
    if (!text) {
        reply_error (r, 400, "body", "body is required (the text of the email)");
        goto done;
    }
    /* as the CLI's --body-file and --html-file: a text that size is a
       file to attach, not a message to read */
    if (strlen (text) > TEXT_MAX || (html && strlen (html) > TEXT_MAX)) {
        const char *field = strlen (text) > TEXT_MAX ? "body" : "html";
        reply_error (r, 400, field, "%s is longer than %u bytes (4 MiB); attach it as a file",
                     field, TEXT_MAX);
        goto done;
    }
    /* the tag once: not again when the subject already carries it */
    char tag [40];
    snprintf (tag, sizeof tag, "[INC-%lld]", number);
    const char *base = subj && *subj ? subj : title;
    if (strcasestr (base, tag))
        subject = strdup (base);
    else if (asprintf (&subject, "%s %s", tag, base) < 0)
        subject = NULL;
    if (!subject) {
        reply_error (r, 500, NULL, "out of memory");
        goto done;
    }
    /* Message-ID on the route's domain, random left part */
    unsigned char rnd [12];
    RAND_bytes (rnd, sizeof rnd);
    char message_id [400], hex [25];
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf (hex + 2 * i, 3, "%02x", rnd [i]);
    const char *at = strrchr (from, '@');
    snprintf (message_id, sizeof message_id, "casemail.%lld.%s@%s", number, hex,
              at ? at + 1 : "localhost");
    char irt [400];
    s_thread (db, incident_id, irt, sizeof irt, &refs);

    json_t *atts = json_object_get (body, "attachments");
    json_t *att_ids = json_object_get (body, "attachment_ids");
    if ((atts && !json_is_array (atts) && !json_is_null (atts))
        || (att_ids && !json_is_array (att_ids) && !json_is_null (att_ids))) {
        reply_error (r, 400, "attachments", "attachments and attachment_ids must be lists");
        goto done;
    }
    natt = json_array_size (atts);
    datas = calloc (natt + 1, sizeof *datas);
    size_t *lens = calloc (natt + 1, sizeof *lens);
    for (size_t i = 0; i < natt; i++) {
        json_t *a = json_array_get (atts, i);
        const char *name = json_string_value (json_object_get (a, "filename"));
        const char *b64 = json_string_value (json_object_get (a, "data_base64"));
        if (!name || !*name || s_has_control (name) || strchr (name, '/') || !b64) {
            reply_error (r, 400, "attachments", "attachment %zu needs a plain file name"
                         " (no path, no control characters) and data_base64", i + 1);
            free (lens);
            goto done;
        }
        datas [i] = s_base64 (b64, &lens [i]);
        if (!datas [i]) {
            reply_error (r, 400, "attachments", "attachment %s is not valid base64", name);
            free (lens);
            goto done;
        }
    }
    if (cm_db_exec (db, "BEGIN", 0, NULL)) {
        reply_error (r, 503, NULL, "database: %s", cm_db_error (db));
        free (lens);
        goto done;
    }
    began = true;
    const char *op [] = { incident_id, route_id, message_id, from, to.data, cc.data,
                          bcc.data, subject, text, html, *irt ? irt : NULL,
                          refs.len ? refs.data : NULL };
    res = cm_db_query (db, "INSERT INTO outbox (incident_id, route_id, message_id, mail_from,"
        " rcpt_to, cc, bcc, subject, body, html, in_reply_to, refs) VALUES ($1, $2, $3, $4,"
        " $5::text[], $6::text[], $7::text[], $8, $9, $10, $11, $12) RETURNING id", 12, op);
    char outbox_id [32] = "", timeline_id [32] = "";
    if (res && PQntuples (res) == 1)
        snprintf (outbox_id, sizeof outbox_id, "%s", cm_db_get (res, 0, 0));
    PQclear (res);
    if (*outbox_id) {
        const char *tp [] = { incident_id, outbox_id, message_id, from, to_text.data ? to_text.data : "",
                              cc_text.data ? cc_text.data : "", subject, text, html };
        res = cm_db_query (db, "INSERT INTO timeline (incident_id, direction, outbox_id,"
            " message_id, from_addr, to_text, cc_text, subject, body_text, new_text, html)"
            " VALUES ($1, 'out', $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING id", 9, tp);
        if (res && PQntuples (res) == 1)
            snprintf (timeline_id, sizeof timeline_id, "%s", cm_db_get (res, 0, 0));
        PQclear (res);
    }
    bool ok = *timeline_id != 0;
    if (ok) {
        const char *thp [] = { message_id, incident_id };
        ok = cm_db_exec (db, "INSERT INTO thread_ids (message_id, incident_id) VALUES ($1, $2)",
                         2, thp) == 0;
    }
    for (size_t i = 0; ok && i < natt; i++) {
        json_t *a = json_array_get (atts, i);
        const char *ct = json_string_value (json_object_get (a, "content_type"));
        if (!ct || !strchr (ct, '/') || s_has_control (ct))
            ct = "application/octet-stream";
        char size [32], sha [65];
        snprintf (size, sizeof size, "%zu", lens [i]);
        cm_sha256_hex (datas [i], lens [i], sha);
        const char *ap [] = { incident_id, timeline_id, outbox_id,
                              json_string_value (json_object_get (a, "filename")), ct, size,
                              sha, (const char *) datas [i] };
        int alen [8] = { 0, 0, 0, 0, 0, 0, 0, (int) lens [i] };
        int afmt [8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
        PGresult *ar = cm_db_query_binary (db, "INSERT INTO attachments (incident_id,"
            " timeline_id, outbox_id, filename, content_type, size, sha256, data)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", 8, ap, alen, afmt, 0);
        ok = ar != NULL;
        PQclear (ar);
    }
    size_t j;
    json_t *idv;
    json_array_foreach (att_ids, j, idv) {
        if (!ok)
            break;
        if (!json_is_integer (idv)) {
            reply_error (r, 400, "attachment_ids", "attachment_ids must be numbers");
            ok = false;
            break;
        }
        char aid [32];
        snprintf (aid, sizeof aid, "%lld", (long long) json_integer_value (idv));
        const char *cp [] = { incident_id, timeline_id, outbox_id, aid };
        res = cm_db_query (db, "INSERT INTO attachments (incident_id, timeline_id, outbox_id,"
            " filename, content_type, size, sha256, data) SELECT $1, $2, $3, filename,"
            " content_type, size, sha256, data FROM attachments WHERE id = $4::bigint", 4, cp);
        if (!res || atoi (PQcmdTuples (res)) != 1) {
            reply_error (r, 404, "attachment_ids", "no attachment %s", aid);
            ok = false;
        }
        PQclear (res);
    }
    free (lens);
    if (!ok || cm_db_exec (db, "COMMIT", 0, NULL)) {
        if (!r->body)               /* no answer yet: the database's failure */
            reply_error (r, 503, NULL, "email not queued: %s", cm_db_error (db));
        goto done;
    }
    began = false;
    cm_info (NULL, "INC-%lld: email %s queued to %s", number, outbox_id, to_text.data);
    json_t *wake = json_pack ("{s:s}", "target", "sender");
    router_publish (self, "wake.sender", wake);
    json_decref (wake);
    reply_json (r, 201, json_pack ("{s:I, s:s, s:s, s:s}", "id",
        (json_int_t) atoll (outbox_id), "state", "queued", "message_id", message_id,
        "subject", subject));
done:
    if (began)
        cm_db_exec (db, "ROLLBACK", 0, NULL);
    for (size_t i = 0; datas && i < natt; i++)
        free (datas [i]);
    free (datas);
    free (subject);
    cm_buf_free (&to); cm_buf_free (&cc); cm_buf_free (&bcc);
    cm_buf_free (&to_text); cm_buf_free (&cc_text); cm_buf_free (&refs); cm_buf_free (&ignored);
}

void
outbound_list (cm_db_t *db, const char *id, const query_t *query, reply_t *r)
{
    if (id && !api_id (id)) {
        /* PostgreSQL would read " 5" and "+5" as 5 */
        reply_error (r, 400, NULL, "'%s' is not an email id", id);
        return;
    }
    const char *state = query->state;
    static const char *const states [] = { "queued", "sending", "sent", "failed", "bounced", NULL };
    if (state) {
        bool known = false;
        for (const char *const *s = states; *s; s++)
            known |= strcmp (*s, state) == 0;
        if (!known) {
            reply_error (r, 400, "state", "unknown state '%s' (expected queued, sending, sent,"
                         " failed or bounced)", state);
            return;
        }
    }
    page_t page;
    const query_t whole = { NULL, NULL, NULL, NULL };   /* one email: no page */
    if (page_parse (id ? &whole : query, &page, r))
        return;
    const char *p [] = { id, state, page.after, page.limit_text };
    PGresult *res = cm_db_query (db,
        "SELECT o.id, i.number, array_to_string(o.rcpt_to, ', '), o.subject, o.state,"
        " o.attempts, o.last_error, o.next_attempt_at, o.sent_at, o.message_id, o.smtp_reply,"
        " array_to_string(o.cc, ', '), o.dsn_status, o.created_at,"
        " array_to_json(o.delivered), array_to_json(o.refused)"
        " FROM outbox o JOIN incidents i ON i.id = o.incident_id"
        " WHERE ($1::bigint IS NULL OR o.id = $1::bigint) AND ($2::text IS NULL OR o.state = $2)"
        " AND o.id > $3::bigint ORDER BY o.id LIMIT $4::int", 4, p);
    if (!res) {
        reply_error (r, id ? 404 : 503, NULL, "%s", id ? "no such email" : cm_db_error (db));
        return;
    }
    json_t *list = json_array ();
    for (int i = 0; i < PQntuples (res) && i < page.limit; i++) {
        char number [32];
        snprintf (number, sizeof number, "INC-%s", cm_db_get (res, i, 1));
        json_t *e = json_pack ("{s:I, s:s, s:s, s:s, s:s, s:I, s:s?, s:o, s:o, s:s, s:s?,"
                               " s:s, s:s?, s:o}",
            "id", (json_int_t) cm_db_get_ll (res, i, 0), "incident", number,
            "to", cm_db_get (res, i, 2), "subject", cm_db_get (res, i, 3),
            "state", cm_db_get (res, i, 4), "attempts", (json_int_t) cm_db_get_ll (res, i, 5),
            "last_error", cm_db_get (res, i, 6),
            "next_attempt_at", json_time (cm_db_get (res, i, 7)),
            "sent_at", json_time (cm_db_get (res, i, 8)),
            "message_id", cm_db_get (res, i, 9), "smtp_reply", cm_db_get (res, i, 10),
            "cc", cm_db_get (res, i, 11), "dsn_status", cm_db_get (res, i, 12),
            "created_at", json_time (cm_db_get (res, i, 13)));
        json_object_set (e, "reply", json_object_get (e, "smtp_reply"));
        /* recipients settled so far: took it, refused it for good */
        json_object_set_new (e, "delivered", s_json_list (cm_db_get (res, i, 14)));
        json_object_set_new (e, "refused", s_json_list (cm_db_get (res, i, 15)));
        json_array_append_new (list, e);
    }
    if (id) {
        if (PQntuples (res) == 0)
            reply_error (r, 404, NULL, "no email %s in the outbox", id);
        else {
            json_t *one = json_incref (json_array_get (list, 0));
            reply_json (r, 200, one);
        }
        json_decref (list);
    }
    else
        page_reply (r, "emails", list, res, 0, &page);
    PQclear (res);
}
