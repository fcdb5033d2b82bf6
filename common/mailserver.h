/*  common/mailserver.h: how to reach one mail server (IMAP or SMTP side of
    a route). A plain description borrowed by the IMAP and SMTP clients;
    they never keep the pointers beyond the call or the session that was
    opened with them (sessions copy what they need). */
#ifndef CM_MAILSERVER_H
#define CM_MAILSERVER_H
#include <stdbool.h>

typedef struct {
    const char *host;
    int port;               /* 1-65535 */
    const char *protocol;   /* imap | imaps | imap+starttls |
                               smtp | smtps | smtp+starttls */
    const char *username;
    const char *password;   /* clear text, in memory only */
    const char *oauth_token;/* bearer token for XOAUTH2/OAUTHBEARER, or NULL */
    const char *ca_file;    /* extra trusted CA bundle, NULL = system store */
    long timeout_ms;        /* connect timeout; 0 = 15000 */
    long stall_ms;          /* SMTP send: give up when no byte has moved
                               for this long (except while the server
                               answers the end of the data); 0 = 60000 */
    bool verbose;           /* route log level "verbose": protocol traces */
    const char *route;      /* route name for log lines, may be NULL */
    const char *helo;       /* SMTP EHLO name, NULL = "localhost" */
} cm_mailserver_t;

#endif
