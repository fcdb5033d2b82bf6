/*  parser/message.h: the raw bytes of one email -> a parsed record.
    Pure and database-free: cm_message_parse() is the parser stage's core and
    the target of a fuzz harness, so it never crashes, hangs or grows without
    bound on hostile input. Limits (size, MIME depth, parts, header bytes) are
    checked on the raw bytes before GMime builds a tree, and again while the
    tree is walked.
    Ownership: cm_message_parse() returns a record the caller frees with
    cm_message_destroy(); every string in it is owned by the record, valid
    UTF-8 and free of NUL bytes. cm_subject_strip() returns malloc'd text.
    Errors: NULL plus a person-readable reason; nothing is logged. */
#ifndef CM_MESSAGE_H
#define CM_MESSAGE_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    size_t max_size;         /* bigger raw message -> rejected (36 MiB:
                                25 MB of content after base64) */
    int max_depth;           /* MIME nesting depth (32) */
    int max_parts;           /* MIME parts incl. nested messages (1000) */
    size_t max_header_bytes; /* header bytes of one message/part (256 KiB) */
    int max_header_fields;   /* header fields in all, every part and
                                attached message included (50000) */
    int max_nested_messages; /* attached messages parsed in turn (50) */
} cm_limits_t;

void cm_limits_default (cm_limits_t *l);

typedef struct cm_attachment_s {
    char *filename;       /* sanitised UTF-8 base name (no controls, no
                             bidi controls), never empty */
    char *content_type;   /* "type/subtype", lowercase */
    char *content_id;     /* without <>, or NULL */
    bool is_inline;       /* inline part referenced by Content-ID */
    unsigned char *data;  /* decoded bytes (never NULL, may be size 0) */
    size_t size;
    char sha256 [65];     /* lowercase hex of data */
    char *note;           /* why the part is only kept, or NULL */
    int nested_index;     /* index into msg->nested, or -1 */
    int parent_index;     /* index into msg->attachments of the attachment
                             holding this one (a file taken out of a
                             winmail.dat), always an earlier one, or -1 */
} cm_attachment_t;

/* One per-recipient block of a delivery status report. */
typedef struct cm_dsn_rcpt_s {
    char *recipient;      /* Final-Recipient address, or NULL */
    char *original;       /* Original-Recipient address (as we sent it), or NULL */
    char *action;         /* "failed", "delayed", ... lower case, or NULL */
    char *status;         /* "5.1.1", or NULL */
} cm_dsn_rcpt_t;

typedef struct cm_message_s {
    char *subject;        /* decoded, "" when absent */
    char *from_name;      /* first From mailbox, "" when absent */
    char *from_addr;      /* domain lowercased, "" when absent */
    char *to, *cc;        /* "Name <addr>, addr" lists, "" when absent */
    char **to_addrs, **cc_addrs;
    size_t nto, ncc;
    char *date_text;      /* Date header as sent, "" when absent */
    long long date_epoch; /* 0 when missing or unparseable */
    char *message_id;     /* without <>, or NULL */
    char *in_reply_to;    /* first msg-id without <>, or NULL */
    char **references;    /* msg-ids without <>: the root and the latest 99 */
    size_t nreferences;
    char *text;           /* text body; rendered from HTML when there is no
                             text or it is blank; "" when none */
    char *html;           /* HTML body, or NULL */
    char *new_text;       /* text without quoted history */
    char *quoted_text;    /* the history cut off, or NULL */
    cm_attachment_t *attachments;
    size_t nattachments;
    struct cm_message_s **nested;  /* attached messages, parsed */
    size_t nnested;
    bool encrypted;       /* S/MIME enveloped or PGP/MIME anywhere in its own
                             MIME tree (not in attached messages), or an
                             inline PGP body */
    bool signed_;         /* multipart/signed or S/MIME signed-data */
    bool auto_reply;      /* automatic mail (RFC 3834 and friends, read
                             receipts, a null return path on a non-bounce) */
    char *auto_reason;    /* e.g. "Auto-Submitted: auto-replied", or NULL */
    bool dsn;             /* delivery status notification (bounce) */
    char *dsn_status;     /* "5.1.1", or NULL */
    char *dsn_action;     /* "failed", "delayed", ..., or NULL */
    char *dsn_recipient;  /* Final-Recipient address, or NULL */
    char *dsn_original_message_id; /* of the returned message, or NULL */
    struct cm_dsn_rcpt_s *dsn_rcpts; /* every per-recipient block of the
                             report(s), in order (RFC 3464 2.3) */
    size_t ndsn_rcpts;
    bool null_return_path;/* Return-Path: <> */
} cm_message_t;

/* Parses raw (len bytes, need not be NUL-terminated). limits NULL means
   the defaults. Returns NULL when the message must be rejected, with a
   reason in reason (may be NULL). */
cm_message_t *cm_message_parse (const char *raw, size_t len,
                                const cm_limits_t *limits,
                                char *reason, size_t reasonlen);
void cm_message_destroy (cm_message_t **self_p);

/* Strips reply/forward prefixes (Re:, Fwd:, AW:, SV:, 回复: ... with
   optional [n] counters) and surrounding whitespace. Returns malloc'd
   text, or NULL only when out of memory. subject NULL is "". */
char *cm_subject_strip (const char *subject);
/* Number of the first "[PREFIX-n]" tag in subject (prefix matched
   case-insensitively), or 0. */
long cm_subject_tag (const char *subject, const char *prefix);

/* Helpers from parser/quote.c, usable on their own.
   Splits text at the first reply marker or trailing "> " block:
   *new_text gets a copy of the new part (== text when nothing is cut),
   *quoted_text the history or NULL. Returns 0, or -1 out of memory. */
int cm_quote_split (const char *text, char **new_text, char **quoted_text);
/* Renders HTML (UTF-8, len bytes) as readable text: tags stripped,
   entities decoded, block elements as line breaks, script/style/head
   skipped. Returns malloc'd text, or NULL out of memory. */
char *cm_html_to_text (const char *html, size_t len);
/* The character of a Windows-1252 byte: 0 for the five bytes it leaves
   out (0x81, 0x8D, 0x8F, 0x90, 0x9D). */
unsigned int cm_cp1252_char (unsigned char byte);

/* Offline unit tests; returns 0 when all pass. */
int cm_message_selftest (bool verbose);
/* For the parser's self-tests (message.c, calendar.c, uuencode.c, tnef.c): prints
   a check's outcome (a failure always, a pass when verbose); 1 when it
   failed, else 0. */
int cm_message_check (bool ok, const char *what, bool verbose);
/* Parses "From: a@b.c", "Subject: s", the header lines head, a blank
   line and body; reason may be NULL. */
cm_message_t *cm_message_parse_parts (const char *head, const char *body,
                                      const cm_limits_t *limits,
                                      char *reason, size_t reasonlen);
#endif
