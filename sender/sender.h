/*  sender/sender.h: the outbound stage's pieces, private to the sender
    folder. main.c claims queued incident email and sends it; mime.c
    builds the message with GMime (built once, stored, and resent byte for
    byte, so a resend after a crash carries the same Message-ID). */
#ifndef CM_SENDER_H
#define CM_SENDER_H
#include <stddef.h>
#include <jansson.h>
#include "smtp.h"

typedef struct {
    const char *filename;           /* UTF-8 file name */
    const char *content_type;       /* type/subtype */
    const unsigned char *data;
    size_t len;
} out_attachment_t;

typedef struct {
    const char *from;               /* the route's address */
    const char *const *to;  size_t nto;
    const char *const *cc;  size_t ncc;
    const char *subject;            /* UTF-8, tag included */
    const char *message_id;         /* without <> */
    const char *in_reply_to;        /* without <>, or NULL */
    const char *references;         /* "<a> <b>", or NULL */
    const char *body;               /* UTF-8 text */
    const char *html;               /* UTF-8 HTML alternative, or NULL */
    const out_attachment_t *attachments;
    size_t nattachments;
} out_mail_t;

/* Builds the message with CRLF line endings. Returns malloc'd bytes and
   their length, or NULL with a reason. */
char *mime_build (const out_mail_t *mail, size_t *len, char *err, size_t errlen);

/* ews.c: sends the built message over the Exchange route's EWS (config
   with clear secrets); bcc recipients are added as a Bcc header. SENT /
   TEMPFAIL / PERMFAIL with the reply ("sent over EWS (Exchange2016)"). */
cm_smtp_result_t sender_ews_send (const json_t *config, const char *mime, size_t len,
                                  char *const *bcc, size_t nbcc, char *reply,
                                  size_t replylen);
#endif
