/*  common/mailcurl.h: libcurl glue shared by the mail clients (imap.c,
    smtp.c, ews.c, oauth.c). Nothing here keeps state beyond the context
    the caller owns; reasons are written into the caller's buffers. */
#ifndef CM_MAILCURL_H
#define CM_MAILCURL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include "mailserver.h"

/* Per-handle context of the debug callback: traces protocol lines when the
   route is verbose (credentials redacted) and remembers what the reason
   mapping and the SMTP client need. Must outlive the easy handle's use. */
typedef struct {
    bool verbose;                   /* route log level is verbose */
    const char *route;              /* route name for log lines */
    bool in_auth;                   /* client is inside an AUTH exchange */
    bool auth_sent;                 /* client sent AUTH/AUTHENTICATE/LOGIN */
    bool auth_ok;                   /* SMTP 235 seen */
    bool auth_offered;              /* SMTP EHLO listed AUTH */
    bool login_disabled;            /* IMAP LOGINDISABLED seen */
    bool greeted;                   /* a first server line was seen */
    bool preauth;                   /* IMAP greeting was PREAUTH: the
                                       session was logged in before any
                                       command, no credentials sent */
    char reply [1024];              /* last complete server reply (SMTP) */
    char fail [1024];               /* last SMTP reply with a 4xx/5xx code */
    char partial [1024];            /* multi-line SMTP reply in progress */
    char command [400];             /* last SMTP command sent (AUTH redacted) */
    /* SMTP: called with each complete reply and the command it answers,
       for the client's own bookkeeping (recipients refused); may be NULL */
    void (*on_reply) (void *arg, const char *command, const char *reply);
    void *on_reply_arg;
    bool watch_io;                  /* keep last_io_ms (the SMTP stall watch);
                                       set after cm_mailcurl_setup */
    int64_t last_io_ms;             /* CLOCK_MONOTONIC ms of the last bytes
                                       in or out (0 none yet), if watch_io */
    char errbuf [CURL_ERROR_SIZE];  /* CURLOPT_ERRORBUFFER */
} cm_mailcurl_ctx_t;

/* curl_global_init exactly once per process (thread-safe). */
void cm_mailcurl_global_init (void);
/* Checks srv and builds "scheme://host:port/" + path into url, and picks
   the TLS mode; is_smtp chooses the protocol family. 0 ok, -1 with reason. */
int cm_mailcurl_url (const cm_mailserver_t *srv, bool is_smtp,
                     const char *path, char *url, size_t urllen,
                     char *err, size_t errlen);
/* Sets TLS (verify peer and host; CA file), credentials (password or
   XOAUTH2/OAUTHBEARER bearer), timeouts, NOSIGNAL and the debug trace on
   h for url. Registers the secrets with the log. 0 ok, -1 with reason. */
int cm_mailcurl_setup (CURL *h, const cm_mailserver_t *srv, const char *url,
                       bool is_smtp, cm_mailcurl_ctx_t *ctx,
                       char *err, size_t errlen);
/* Writes the person-readable reason for a libcurl failure. */
void cm_mailcurl_reason (CURLcode rc, const cm_mailcurl_ctx_t *ctx,
                         const cm_mailserver_t *srv, char *err, size_t errlen);
/* The libcurl debug callback cm_mailcurl_setup installs (userp is the
   cm_mailcurl_ctx_t): traces the chunk's lines and, if the context's
   watch_io is set, notes when bytes moved. */
int cm_mailcurl_debug (CURL *h, curl_infotype type, char *data, size_t size, void *userp);
/* Feeds one protocol line to the trace and bookkeeping of ctx, as the
   libcurl debug callback does (for self-tests). */
void cm_mailcurl_trace_line (cm_mailcurl_ctx_t *ctx, curl_infotype type, const char *line);
/* For a libcurl debug callback: splits a chunk of protocol text (types
   TEXT, HEADER_IN, HEADER_OUT; message bodies and TLS records are skipped)
   into lines (LF or CRLF ends; at most 1023 bytes of each; NUL bytes shown
   as '?') and calls fn with the type and each line as a C string. */
void cm_mailcurl_debug_lines (curl_infotype type, const char *data, size_t size,
                              void (*fn) (curl_infotype type, const char *line, size_t n,
                                          void *arg), void *arg);
#endif
