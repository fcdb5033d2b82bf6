/*  common/log.c: logging with redaction (see log.h).
    The secret registry is process-wide and guarded by a mutex because
    fetcher and sender run route workers in threads. */
#include "log.h"
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192
#define SECRETS_MAX  4096    /* passwords, client secrets: kept */
#define TOKENS_MAX   512     /* short-lived tokens: a ring, oldest out */
#define REDACTED     "[REDACTED]"

static struct {
    char process [32];        /* name in every line */
    FILE *out;                /* log destination */
    int fd;                   /* its descriptor (2: standard error) */
    char *secrets [SECRETS_MAX];
    size_t nsecrets;
    char *tokens [TOKENS_MAX];
    size_t ntokens;            /* tokens registered so far (ring index) */
    pthread_mutex_t lock;
} s_log = { "casemail", NULL, 2, { NULL }, 0, { NULL }, 0, PTHREAD_MUTEX_INITIALIZER };

void
cm_log_init (const char *process, const char *path)
{
    snprintf (s_log.process, sizeof s_log.process, "%s", process);
    if (path) {
        FILE *f = fopen (path, "a");
        if (f) {
            setvbuf (f, NULL, _IOLBF, 0);
            s_log.out = f;
            s_log.fd = fileno (f);
        }
    }
}

void
cm_log_secret (const char *secret)
{
    if (!secret || strlen (secret) < 3)
        return;
    pthread_mutex_lock (&s_log.lock);
    for (size_t i = 0; i < s_log.nsecrets; i++)
        if (strcmp (s_log.secrets [i], secret) == 0) {
            pthread_mutex_unlock (&s_log.lock);
            return;
        }
    if (s_log.nsecrets == SECRETS_MAX) {
        free (s_log.secrets [0]);
        memmove (s_log.secrets, s_log.secrets + 1,
                 (SECRETS_MAX - 1) * sizeof (char *));
        s_log.nsecrets--;
    }
    char *copy = strdup (secret);
    if (copy)
        s_log.secrets [s_log.nsecrets++] = copy;
    pthread_mutex_unlock (&s_log.lock);
}

/* Replaces [start, start+len) of text by REDACTED, within size. */
static void
s_replace (char *text, size_t size, size_t start, size_t len)
{
    size_t tlen = strlen (text);
    size_t rlen = strlen (REDACTED);
    size_t tail = tlen - start - len;
    if (start + rlen + tail + 1 > size) {
        text [start] = 0;
        strncat (text, REDACTED, size - start - 1);
        return;
    }
    memmove (text + start + rlen, text + start + len, tail + 1);
    memcpy (text + start, REDACTED, rlen);
}

/* Redacts the rest of the word(s) after a credential keyword. words is how
   many whitespace-separated tokens after the keyword are secret. */
static void
s_redact_after (char *text, size_t size, const char *keyword, int words)
{
    size_t klen = strlen (keyword);
    char *p = text;
    while ((p = strcasestr (p, keyword)) != NULL) {
        if (p != text && isalnum ((unsigned char) keyword [0])
            && isalnum ((unsigned char) p [-1])) {
            p += klen;
            continue;
        }
        char *s = p + klen;
        for (int w = 0; w < words; w++) {
            while (*s == ' ' || *s == '\t' || *s == '=' || *s == ':')
                s++;
            if (!*s || *s == '\r' || *s == '\n')
                break;
            char *e = s;
            if (*e == '"') {
                e++;
                while (*e && *e != '"')
                    e += (*e == '\\' && e [1]) ? 2 : 1;
                if (*e)
                    e++;
            }
            else
                while (*e && !isspace ((unsigned char) *e) && *e != ','
                       && *e != '&' && *e != ';')
                    e++;
            if (strncmp (s, REDACTED, strlen (REDACTED)) != 0)
                s_replace (text, size, (size_t) (s - text), (size_t) (e - s));
            s += strlen (REDACTED);
            if (s > text + strlen (text))
                s = text + strlen (text);
        }
        p = s;
    }
}

void
cm_log_token (const char *token)
{
    if (!token || strlen (token) < 3)
        return;
    pthread_mutex_lock (&s_log.lock);
    for (size_t i = 0; i < TOKENS_MAX && i < s_log.ntokens; i++)
        if (s_log.tokens [i] && strcmp (s_log.tokens [i], token) == 0) {
            pthread_mutex_unlock (&s_log.lock);
            return;
        }
    size_t slot = s_log.ntokens++ % TOKENS_MAX;
    free (s_log.tokens [slot]);
    s_log.tokens [slot] = strdup (token);
    pthread_mutex_unlock (&s_log.lock);
}

static void
s_redact_one (char *text, size_t size, const char *secret)
{
    if (!secret)
        return;
    size_t slen = strlen (secret);
    char *p = text;
    while ((p = strstr (p, secret)) != NULL) {
        s_replace (text, size, (size_t) (p - text), slen);
        p += strlen (REDACTED);
    }
}

void
cm_log_redact (char *text, size_t size)
{
    pthread_mutex_lock (&s_log.lock);
    for (size_t i = 0; i < s_log.nsecrets; i++)
        s_redact_one (text, size, s_log.secrets [i]);
    for (size_t i = 0; i < TOKENS_MAX && i < s_log.ntokens; i++)
        s_redact_one (text, size, s_log.tokens [i]);
    pthread_mutex_unlock (&s_log.lock);
    /* Patterns: IMAP "LOGIN user pass", SASL continuation data after
       AUTHENTICATE/AUTH mech, HTTP Authorization, and key=value forms. */
    s_redact_after (text, size, " LOGIN ", 2);
    s_redact_after (text, size, "AUTHENTICATE PLAIN", 1);
    s_redact_after (text, size, "AUTHENTICATE XOAUTH2", 1);
    s_redact_after (text, size, "AUTHENTICATE OAUTHBEARER", 1);
    s_redact_after (text, size, "AUTH PLAIN", 1);
    s_redact_after (text, size, "AUTH LOGIN", 1);
    s_redact_after (text, size, "AUTH XOAUTH2", 1);
    s_redact_after (text, size, "AUTH OAUTHBEARER", 1);
    s_redact_after (text, size, "Authorization: Bearer", 1);
    s_redact_after (text, size, "Authorization: Basic", 1);
    s_redact_after (text, size, "Authorization: NTLM", 1);
    s_redact_after (text, size, "Authorization: Negotiate", 1);
    s_redact_after (text, size, "password=", 1);
    s_redact_after (text, size, "client_secret=", 1);
    s_redact_after (text, size, "access_token", 1);
    s_redact_after (text, size, "\"password\"", 1);
    s_redact_after (text, size, "\"client_secret\"", 1);
}

/* The time of a log line: UTC, milliseconds, "2026-11-29T04:35:58.123Z". */
static void
s_stamp (char *out, size_t size)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r (&ts.tv_sec, &tm);
    char day [32];
    strftime (day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (out, size, "%s.%03ldZ", day, ts.tv_nsec / 1000000);
}

static void
s_vlog (cm_loglevel_t level, const char *route, const char *fmt, va_list ap)
{
    static const char *names [] = { "error", "warn", "info", "trace" };
    char line [LOG_LINE_MAX];
    vsnprintf (line, sizeof line, fmt, ap);
    /* Control characters from peers would forge log lines: show them. */
    for (char *p = line; *p; p++)
        if ((unsigned char) *p < 0x20 && *p != '\t')
            *p = '?';
    cm_log_redact (line, sizeof line);
    char stamp [48];
    s_stamp (stamp, sizeof stamp);
    FILE *out = s_log.out ? s_log.out : stderr;
    fprintf (out, "%s %s[%d] %s %s: %s\n", stamp, s_log.process, (int) getpid (),
             route && *route ? route : "-", names [level], line);
}

void
cm_log_last_words (const char *fmt, ...)
{
    char line [512], out [700];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (line, sizeof line, fmt, ap);
    va_end (ap);
    char stamp [48];
    s_stamp (stamp, sizeof stamp);
    int n = snprintf (out, sizeof out, "%s %s[%d] - error: %s\n", stamp,
                      s_log.process, (int) getpid (), line);
    int fd = s_log.fd;          /* not through the FILE: no lock */
    int fl = fcntl (fd, F_GETFL);
    if (fl >= 0)
        fcntl (fd, F_SETFL, fl | O_NONBLOCK);
    if (n > 0 && write (fd, out, (size_t) n < sizeof out ? (size_t) n : sizeof out - 1) < 0) {
        /* nowhere left to say it */
    }
}

void
cm_log (cm_loglevel_t level, const char *route, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    s_vlog (level, route, fmt, ap);
    va_end (ap);
}

void
cm_trace (bool verbose, const char *route, const char *fmt, ...)
{
    if (!verbose)
        return;
    va_list ap;
    va_start (ap, fmt);
    s_vlog (CM_LOG_TRACE, route, fmt, ap);
    va_end (ap);
}

int
cm_log_test (bool verbose)
{
    char line [256];
    cm_log_secret ("s3cr3t-Pass");
    snprintf (line, sizeof line, "A1 LOGIN alice \"s3cr3t-Pass\"");
    cm_log_redact (line, sizeof line);
    if (verbose)
        printf ("  %s\n", line);
    if (strstr (line, "s3cr3t") || strstr (line, "alice"))
        return -1;
    snprintf (line, sizeof line, "> Authorization: Bearer eyJ0eXAi.abc.def");
    cm_log_redact (line, sizeof line);
    if (strstr (line, "eyJ0"))
        return -1;
    snprintf (line, sizeof line, "C: AUTH PLAIN AGFsaWNlAHB3");
    cm_log_redact (line, sizeof line);
    if (strstr (line, "AGFsaWNl"))
        return -1;
    snprintf (line, sizeof line, "x s3cr3t-Pass y s3cr3t-Pass");
    cm_log_redact (line, sizeof line);
    if (strstr (line, "s3cr3t") || !strstr (line, "x [REDACTED] y"))
        return -1;
    /* a small buffer must stay terminated */
    char small [16] = "pw=s3cr3t-Pass";
    cm_log_redact (small, sizeof small);
    if (strlen (small) >= sizeof small || strstr (small, "s3cr3t"))
        return -1;
    return 0;
}
