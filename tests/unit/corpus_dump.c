/*  tests/unit/corpus_dump.c: prints the parsed record of each email file
    named on the command line, for checking the parser by eye.
    Build (from the repo root):
      gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
          $(pkg-config --cflags gmime-3.0 openssl) \
          -o corpus_dump tests/unit/corpus_dump.c parser/message.c \
          parser/quote.c common/buf.c $(pkg-config --libs gmime-3.0 openssl) -lpthread
    Usage: corpus_dump [-t] FILE...   (-t also prints text/new/quoted bodies)
    Exit 1 when a file could not be read or was rejected. */
#include "../../parser/message.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
s_or (const char *s)
{
    return s ? s : "(null)";
}

static void
s_dump (const cm_message_t *m, int level, bool bodies)
{
    char pad [64];
    snprintf (pad, sizeof pad, "%*s", level * 4, "");
    printf ("%ssubject: %s\n", pad, m->subject);
    printf ("%sfrom: %s <%s>\n", pad, m->from_name, m->from_addr);
    printf ("%sto: %s (%zu)\n", pad, m->to, m->nto);
    printf ("%scc: %s (%zu)\n", pad, m->cc, m->ncc);
    printf ("%sdate: %s (%lld)\n", pad, m->date_text, m->date_epoch);
    printf ("%smessage-id: %s in-reply-to: %s references: %zu\n", pad,
            s_or (m->message_id), s_or (m->in_reply_to), m->nreferences);
    printf ("%sflags:%s%s%s%s%s auto_reason=%s\n", pad,
            m->signed_ ? " signed" : "", m->encrypted ? " encrypted" : "",
            m->auto_reply ? " auto" : "", m->dsn ? " dsn" : "",
            m->null_return_path ? " null-return-path" : "", s_or (m->auto_reason));
    if (m->dsn)
        printf ("%sdsn: status=%s action=%s recipient=%s original=%s\n", pad,
                s_or (m->dsn_status), s_or (m->dsn_action), s_or (m->dsn_recipient),
                s_or (m->dsn_original_message_id));
    printf ("%stext: %zu bytes, new %zu, quoted %zu, html %s\n", pad, strlen (m->text),
            strlen (m->new_text), m->quoted_text ? strlen (m->quoted_text) : 0,
            m->html ? "yes" : "no");
    if (bodies)
        printf ("%s--- text ---\n%s\n--- new ---\n%s\n--- quoted ---\n%s\n--- end ---\n",
                pad, m->text, m->new_text, s_or (m->quoted_text));
    for (size_t i = 0; i < m->nattachments; i++) {
        const cm_attachment_t *a = &m->attachments [i];
        printf ("%sattachment %zu: %s %s %zu bytes sha256=%.16s... cid=%s%s%s%s\n", pad, i,
                a->filename, a->content_type, a->size, a->sha256, s_or (a->content_id),
                a->is_inline ? " inline" : "", a->nested_index >= 0 ? " nested" : "",
                a->note ? " note" : "");
        if (a->note)
            printf ("%s    note: %s\n", pad, a->note);
    }
    for (size_t i = 0; i < m->nnested; i++) {
        printf ("%snested %zu:\n", pad, i);
        s_dump (m->nested [i], level + 1, bodies);
    }
}

int
main (int argc, char **argv)
{
    int rc = 0;
    bool bodies = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "-t") == 0) {
            bodies = true;
            continue;
        }
        FILE *f = fopen (argv [i], "rb");
        if (!f) {
            fprintf (stderr, "%s: cannot open\n", argv [i]);
            rc = 1;
            continue;
        }
        char *raw = NULL;
        size_t len = 0, alloc = 0, n;
        char buf [65536];
        while ((n = fread (buf, 1, sizeof buf, f)) > 0) {
            if (len + n > alloc) {
                alloc = (len + n) * 2;
                char *grown = realloc (raw, alloc);
                if (!grown)
                    break;
                raw = grown;
            }
            memcpy (raw + len, buf, n);
            len += n;
        }
        fclose (f);
        char reason [256];
        cm_message_t *m = cm_message_parse (raw ? raw : "", len, NULL, reason, sizeof reason);
        printf ("== %s (%zu bytes)\n", argv [i], len);
        if (m)
            s_dump (m, 0, bodies);
        else {
            printf ("rejected: %s\n", reason);
            rc = 1;
        }
        cm_message_destroy (&m);
        free (raw);
    }
    return rc;
}
