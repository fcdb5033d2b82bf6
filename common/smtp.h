/*  common/smtp.h: SMTP client of the outbound side of a route, on libcurl.

    Tests the outbound connection (connect, TLS, EHLO, AUTH; no mail) and
    sends one ready-made RFC 5322 message per call on a fresh connection.
    TLS follows the route's protocol: smtps implicit, smtp+starttls
    required (fails closed when STARTTLS is not offered), smtp without TLS.
    Certificates are always verified. Credentials: password (SASL PLAIN or
    LOGIN) or a bearer token (XOAUTH2/OAUTHBEARER); never logged.

    Ownership: nothing returned needs freeing; text goes into the caller's
    buffers. Errors: reasons read like the IMAP ones (see imap.h) so the
    router can print "Failed to test Service connectivity: <reason>". */
#ifndef CM_SMTP_H
#define CM_SMTP_H
#include <stdbool.h>
#include <stddef.h>
#include "mailserver.h"

/* Outbound connection test: connect, TLS, EHLO, AUTH with the route's
   credentials, QUIT; no mail sent. The server must actually accept the
   credentials (a server that offers no AUTH fails the test when
   credentials are configured). Summary like "smtp+starttls://host:587
   accepted the credentials of alice@example.test". 0 ok, -1 with reason. */
int cm_smtp_test (const cm_mailserver_t *srv, char *summary, size_t sumlen,
                  char *err, size_t errlen);

typedef enum {
    CM_SMTP_SENT = 0,
    CM_SMTP_TEMPFAIL = 1,       /* 4xx, or no SMTP answer (network, TLS) */
    CM_SMTP_PERMFAIL = 2        /* 5xx, bad arguments */
} cm_smtp_result_t;

/* What the server answered one RCPT TO: code 0 when it was never asked
   (the send ended before), else the SMTP code and reply. */
typedef struct {
    int code;
    char reply [256];
} cm_smtp_rcpt_t;

/* Sends msg (a full RFC 5322 message with CRLF line endings; libcurl does
   the dot-stuffing) with MAIL FROM:<from> and one RCPT TO per rcpt.
   With each (nrcpts entries) a refused recipient does not stop the send:
   the message goes to the recipients the server accepted, and each[i]
   gets the answer to rcpts[i]; the send fails (with the last refusal)
   only when every recipient was refused. Without each, any refused
   recipient fails the whole send. *code gets the SMTP code of the last
   answer (0 when there was none); reply gets that answer's text (e.g.
   "250 2.0.0 Ok: queued as ABC") or, without an answer, the reason.
   Authentication failure is "authentication failed for <user>" with code
   535 (PERMFAIL; a 454 is TEMPFAIL). from may be "" for the null sender. */
cm_smtp_result_t cm_smtp_send (const cm_mailserver_t *srv, const char *from,
                               const char *const *rcpts, size_t nrcpts,
                               const char *msg, size_t msglen,
                               cm_smtp_rcpt_t *each, int *code,
                               char *reply, size_t replylen);
/* Offline tests (address checks, reply classing); 0 ok. */
int cm_smtp_selftest (bool verbose);
#endif
