/*  common/log.h: one-line-per-event logging with secret redaction.
    Every line: time, process, route, level, message. Secrets registered
    with cm_log_secret() and well-known credential patterns (IMAP LOGIN,
    SASL AUTH, Authorization headers, password= fields) are redacted at
    every level, including protocol traces. Nothing returned is owned by
    the caller. Logging never fails visibly: a write error is ignored. */
#ifndef CM_LOG_H
#define CM_LOG_H
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    CM_LOG_ERROR = 0,
    CM_LOG_WARN,
    CM_LOG_INFO,      /* route level "low" logs up to here */
    CM_LOG_TRACE      /* route level "verbose": protocol traces */
} cm_loglevel_t;

/* Names the process in every line; path NULL logs to stderr. */
void cm_log_init (const char *process, const char *path);
/* Registers a secret (password, token, client secret) to be replaced by
   "[REDACTED]" wherever it appears in any later line. Copies the string. */
void cm_log_secret (const char *secret);
/* Registers a short-lived secret (an OAuth token): kept in a ring of the
   latest 512, so tokens never push passwords out of the registry. */
void cm_log_token (const char *token);
/* Logs one event. route may be NULL. Lines are redacted before writing. */
void cm_log (cm_loglevel_t level, const char *route, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
/* An error line for a process about to _exit from another thread while
   its main thread may hold the log's locks (the watchdog): formatted on
   the stack, no redaction (the text must hold no secret), one write(2)
   that does not wait for a full pipe. */
void cm_log_last_words (const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));
/* Protocol trace: logged only when verbose is true (the route's level). */
void cm_trace (bool verbose, const char *route, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
/* Redacts registered secrets and credential patterns in place.
   Never grows the string beyond size-1 bytes. */
void cm_log_redact (char *text, size_t size);
/* Self-test; returns 0 on success. */
int cm_log_test (bool verbose);

#define cm_error(route, ...) cm_log (CM_LOG_ERROR, route, __VA_ARGS__)
#define cm_warn(route, ...)  cm_log (CM_LOG_WARN, route, __VA_ARGS__)
#define cm_info(route, ...)  cm_log (CM_LOG_INFO, route, __VA_ARGS__)
#endif
