/*  sender/ews.c: sends an incident email over Exchange Web Services
    (CreateItem SendAndSaveCopy with the MIME built for SMTP), for routes
    with exchange on. EWS takes the recipients from the MIME headers, so
    Bcc recipients (never in our MIME) are added as a Bcc header, which
    Exchange strips from what it transmits. EWS returns no item id: the
    message is correlated by its own Message-ID, already in the MIME. */
#include "sender.h"
#include "config.h"
#include "log.h"
#include "route.h"
#include "route_ews.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One client per sender thread, kept while the route's settings stay the
   same, so the token (and an NTLM-authenticated connection) serves many
   emails. Keyed by the route's whole config (secrets opened). */
static __thread cm_oauth_t *s_oauth;
static __thread cm_ews_t *s_ews;
static __thread char *s_key;

static void
s_forget (void)
{
    cm_route_ews_close (&s_oauth, &s_ews);
    free (s_key);
    s_key = NULL;
}

cm_smtp_result_t
sender_ews_send (const json_t *config, const char *mime, size_t len,
                 char *const *bcc, size_t nbcc, char *reply, size_t replylen)
{
    char err [1024];
    char *key = json_dumps (config, JSON_SORT_KEYS | JSON_COMPACT);
    if (!key || !s_key || strcmp (key, s_key) != 0 || !s_ews) {
        s_forget ();
        if (cm_route_ews_open (config, &s_oauth, &s_ews, err, sizeof err)) {
            free (key);
            snprintf (reply, replylen, "%s", err);
            return CM_SMTP_PERMFAIL;
        }
        s_key = key;
        /* the stall time SMTP sends have (CASEMAIL_SEND_STALL_MS) */
        cm_ews_set_stall (s_ews, cm_config_env ("CASEMAIL_SEND_STALL_MS", 60000));
    }
    else
        free (key);
    cm_ews_t *ews = s_ews;
    char *copy = NULL;
    size_t copylen = len;
    if (nbcc) {
        size_t need = 8;
        for (size_t i = 0; i < nbcc; i++)
            need += strlen (bcc [i]) + 4;
        copy = malloc (need + len + 1);
        if (!copy) {
            snprintf (reply, replylen, "out of memory");
            return CM_SMTP_TEMPFAIL;
        }
        size_t o = (size_t) sprintf (copy, "Bcc: ");
        for (size_t i = 0; i < nbcc; i++)
            o += (size_t) sprintf (copy + o, "%s%s", i ? ",\r\n " : "", bcc [i]);
        o += (size_t) sprintf (copy + o, "\r\n");
        memcpy (copy + o, mime, len);
        copylen = o + len;
        copy [copylen] = 0;
    }
    int rc = cm_ews_send (ews, copy ? copy : mime, copylen, reply, replylen);
    cm_smtp_result_t result = rc == 0 ? CM_SMTP_SENT : rc == 1 ? CM_SMTP_TEMPFAIL
                                                                : CM_SMTP_PERMFAIL;
    if (rc == 0)
        snprintf (reply, replylen, "sent over EWS (%s)", cm_ews_version (ews));
    free (copy);
    if (rc != 0)
        s_forget ();                /* a fresh client (and token) next time */
    return result;
}
