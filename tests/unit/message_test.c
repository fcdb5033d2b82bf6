/*  tests/unit/message_test.c: tests of parser/message.c.
    Runs cm_message_selftest(), a set of hostile messages (each must give a
    record or a reason, never crash or hang), S/MIME opaque-signed messages
    (real CMS made with openssl, embedded below, and unsigned SignedData
    chains built here), the TNEF streams and uuencoded-file messages
    tests/tools/mktnef.py and mkuu.py wrote (tests/unit/tnef, tests/unit/uu)
    and the hunnysoft corpus (every file parsed and summarised, a few facts
    checked).
    Build (from the repo root):
      gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
          $(pkg-config --cflags gmime-3.0 openssl) \
          -o message_test tests/unit/message_test.c parser/message.c \
          parser/quote.c common/buf.c $(pkg-config --libs gmime-3.0 openssl) -lpthread
    Run: ./message_test [-v] [corpus-dir]  (default ../shared/corpus/hunnysoft)
         ./message_test --write-hostile DIR  (writes the hostile cases as fuzz seeds)
    Prints "ok - name" / "not ok - name" per case, "N passed, N failed" last;
    exits 1 on any failure. Timings are printed, never asserted; a case that
    runs over 60 s is killed by alarm() as a hang. */
#include "../../parser/message.h"
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int s_passed, s_failed;
static bool s_verbose;

static void
s_result (bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    printf ("%s - ", ok ? "ok" : "not ok");
    vprintf (fmt, ap);
    printf ("\n");
    va_end (ap);
    fflush (stdout);
    if (ok)
        s_passed++;
    else
        s_failed++;
}

static double
s_now (void)
{
    struct timespec t;
    clock_gettime (CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

/* --------------------------------------------------------- growable text */

typedef struct {
    char *data;
    size_t len, alloc;
} s_text_t;

static void
s_add (s_text_t *t, const void *data, size_t len)
{
    if (t->len + len + 1 > t->alloc) {
        size_t want = t->alloc ? t->alloc : 4096;
        while (want < t->len + len + 1)
            want *= 2;
        char *grown = realloc (t->data, want);
        if (!grown) {
            fprintf (stderr, "out of memory\n");
            exit (2);
        }
        t->data = grown;
        t->alloc = want;
    }
    memcpy (t->data + t->len, data, len);
    t->len += len;
    t->data [t->len] = 0;
}

static void
s_addf (s_text_t *t, const char *fmt, ...)
{
    char buf [4096];
    va_list ap;
    va_start (ap, fmt);
    int n = vsnprintf (buf, sizeof buf, fmt, ap);
    va_end (ap);
    if (n > 0)
        s_add (t, buf, (size_t) n < sizeof buf ? (size_t) n : sizeof buf - 1);
}

static void
s_adds (s_text_t *t, const char *s)
{
    s_add (t, s, strlen (s));
}

/* --------------------------------------------------------- record checks */

static bool
s_utf8_ok (const char *s)
{
    const unsigned char *p = (const unsigned char *) s;
    while (*p) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        int n = (*p >= 0xC2 && *p <= 0xDF) ? 2 : (*p >= 0xE0 && *p <= 0xEF) ? 3
              : (*p >= 0xF0 && *p <= 0xF4) ? 4 : 0;
        if (!n)
            return false;
        for (int k = 1; k < n; k++)
            if ((p [k] & 0xC0) != 0x80)
                return false;
        p += n;
    }
    return true;
}

static bool
s_filename_ok (const char *name)
{
    if (!name || !*name || strlen (name) > 255 || !s_utf8_ok (name))
        return false;
    if (strchr (name, '/') || strchr (name, '\\') || strcmp (name, "..") == 0
    ||  strcmp (name, ".") == 0)
        return false;
    for (const unsigned char *p = (const unsigned char *) name; *p; p++)
        if (*p < 0x20 || *p == 0x7F)
            return false;
    return true;
}

/* Every field of a record is present, valid UTF-8, filenames are safe. */
static bool
s_record_ok (const cm_message_t *m, int level, char *why, size_t whylen)
{
    const char *must [] = { m->subject, m->from_name, m->from_addr, m->to, m->cc,
                            m->date_text, m->text, m->new_text };
    for (size_t i = 0; i < sizeof must / sizeof *must; i++)
        if (!must [i] || !s_utf8_ok (must [i])) {
            snprintf (why, whylen, "field %zu missing or not UTF-8", i);
            return false;
        }
    const char *maybe [] = { m->html, m->quoted_text, m->message_id, m->in_reply_to,
                             m->auto_reason, m->dsn_status, m->dsn_action,
                             m->dsn_recipient, m->dsn_original_message_id };
    for (size_t i = 0; i < sizeof maybe / sizeof *maybe; i++)
        if (maybe [i] && !s_utf8_ok (maybe [i])) {
            snprintf (why, whylen, "optional field %zu not UTF-8", i);
            return false;
        }
    for (size_t i = 0; i < m->nattachments; i++) {
        const cm_attachment_t *a = &m->attachments [i];
        if (!s_filename_ok (a->filename)) {
            snprintf (why, whylen, "unsafe filename");
            return false;
        }
        if (!a->content_type || !a->data || strlen (a->sha256) != 64) {
            snprintf (why, whylen, "attachment %zu incomplete", i);
            return false;
        }
        if (a->nested_index >= (int) m->nnested) {
            snprintf (why, whylen, "nested_index out of range");
            return false;
        }
        if (a->parent_index < -1 || a->parent_index >= (int) i) {
            snprintf (why, whylen, "parent_index not an earlier attachment");
            return false;
        }
    }
    if (m->nreferences > 100) {
        snprintf (why, whylen, "too many references");
        return false;
    }
    for (size_t i = 0; i < m->nnested; i++)
        if (!s_record_ok (m->nested [i], level + 1, why, whylen))
            return false;
    return true;
}

/* --------------------------------------------------------- hostile cases */

typedef enum { S_RECORD, S_REJECT, S_EITHER } s_expect_t;

/* --write-hostile DIR: each hostile case is also written there (fuzz seeds) */
static const char *s_write_dir;
static int s_written;

static void
s_write_seed (const char *data, size_t len)
{
    if (!s_write_dir || len > (4u << 20))
        return;
    char path [1024];
    snprintf (path, sizeof path, "%s/hostile-%03d.eml", s_write_dir, ++s_written);
    FILE *f = fopen (path, "wb");
    if (f) {
        fwrite (data, 1, len, f);
        fclose (f);
    }
}

/* Parses data; the outcome must match expect (and the reason, if given). */
static cm_message_t *
s_case (const char *name, const char *data, size_t len, s_expect_t expect,
        const char *reason_want)
{
    char reason [256] = "";
    s_write_seed (data, len);
    alarm (60);
    double t0 = s_now ();
    cm_message_t *m = cm_message_parse (data, len, NULL, reason, sizeof reason);
    double dt = s_now () - t0;
    alarm (0);
    char why [128] = "";
    bool ok = true;
    if (m && !s_record_ok (m, 0, why, sizeof why))
        ok = false;
    if (expect == S_RECORD && !m)
        ok = false;
    if (expect == S_REJECT && m)
        ok = false;
    if (!m && reason_want && strcmp (reason, reason_want) != 0)
        ok = false;
    if (!m && !*reason)
        ok = false;
    if (m)
        s_result (ok, "%s (record: %zu attachments, %zu nested%s%s; %.3f s; %zu bytes)",
                  name, m->nattachments, m->nnested, *why ? "; " : "", why, dt, len);
    else
        s_result (ok, "%s (rejected: %s; %.3f s; %zu bytes)", name, reason, dt, len);
    return m;
}

static void
s_case_free (const char *name, s_text_t *t, s_expect_t expect, const char *reason_want)
{
    cm_message_t *m = s_case (name, t->data ? t->data : "", t->len, expect, reason_want);
    cm_message_destroy (&m);
    free (t->data);
    memset (t, 0, sizeof *t);
}

static const char *s_head =
    "From: Eve <eve@evil.example>\nTo: soc@example.org\nSubject: hostile\n"
    "Date: Mon, 1 Jan 2024 00:00:00 +0000\nMIME-Version: 1.0\n";

/* After a case built in t: the message and the text freed. */
static void
s_case_done (cm_message_t **m, s_text_t *t)
{
    cm_message_destroy (m);
    free (t->data);
    memset (t, 0, sizeof *t);
}

/* After a calendar case: its description shown with -v, then freed. */
static void
s_calendar_done (cm_message_t **m, s_text_t *t)
{
    if (*m && s_verbose)
        printf ("# %.200s\n", (*m)->text);
    s_case_done (m, t);
}

static void
s_hostile (void)
{
    s_text_t t = { 0 };
    cm_message_t *m;

    s_adds (&t, s_head);
    for (int i = 0; i < 10000; i++)
        s_addf (&t, "Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n", i, i);
    s_adds (&t, "Content-Type: text/plain\n\nhello\n");
    s_case_free ("multipart nested 10,000 deep", &t, S_REJECT, "MIME nesting deeper than 32 levels");

    s_adds (&t, s_head);
    for (int i = 0; i < 10000; i++)
        s_adds (&t, "Content-Type: message/rfc822\n\n");
    s_adds (&t, "Subject: inner\n\nhello\n");
    s_case_free ("message/rfc822 nested 10,000 deep", &t, S_REJECT, "MIME nesting deeper than 32 levels");

    s_adds (&t, s_head);
    for (int i = 0; i < 10000; i++)
        s_addf (&t, "Content-Type: multipart/digest; boundary*0=\"d\"; boundary*1=\"%d\"\n\n--d%d\n\n", i, i);
    s_adds (&t, "hello\n");
    s_case_free ("digest (RFC 2231 boundaries) nested 10,000 deep", &t, S_REJECT,
                 "MIME nesting deeper than 32 levels");

    s_adds (&t, s_head);
    for (int i = 0; i < 10000; i++)
        s_addf (&t, "Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n", i, i);
    s_adds (&t, "Content-Type: text/plain\n\nhello\n");
    s_case_free ("nested 10,000 deep behind duplicate Content-Type fields", &t, S_REJECT,
                 "MIME nesting deeper than 32 levels");

    s_adds (&t, s_head);
    for (int i = 0; i < 10000; i++)
        s_addf (&t, "Content-Type: multipart/mixed; boundary=\"b%d\"\nContent-Type: text/plain\n\n--b%d\n", i, i);
    s_adds (&t, "Content-Type: text/plain\n\nhello\n");
    s_case_free ("duplicate Content-Type fields, multipart first", &t, S_EITHER, NULL);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n");
    for (int i = 0; i < 100000; i++)
        s_adds (&t, "--b\n\nx\n");
    s_adds (&t, "--b--\n");
    s_case_free ("100,000 parts", &t, S_REJECT, "more than 1000 MIME parts");

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n");
    for (int i = 0; i < 100000; i++)
        s_adds (&t, "--b\n");
    s_case_free ("100,000 empty boundary lines", &t, S_REJECT, "more than 1000 MIME parts");

    s_adds (&t, s_head);
    s_adds (&t, "X-Long: ");
    for (int i = 0; i < 1024 * 1024; i++)
        s_add (&t, "a", 1);
    s_adds (&t, "\n\nbody\n");
    s_case_free ("1 MB header line", &t, S_REJECT, "header section over 262144 bytes");

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Long: ");
    for (int i = 0; i < 1024 * 1024; i++)
        s_add (&t, "a", 1);
    s_adds (&t, "\n\nbody\n--b--\n");
    s_case_free ("1 MB header line in a MIME part", &t, S_REJECT, "header section over 262144 bytes");

    s_adds (&t, s_head);
    for (int i = 0; i < 30000; i++)
        s_adds (&t, "X-A: b\n");
    s_adds (&t, "\nbody\n");
    s_case_free ("30,000 header fields (210 KB) within limit", &t, S_RECORD, NULL);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: application/octet-stream");
    for (int i = 0; i < 100000; i++)
        s_addf (&t, ";\n name*%d*=utf-8''%%41", 99999 - i);
    s_adds (&t, "\n\nbody\n");
    s_case_free ("100,000 RFC 2231 parameters", &t, S_REJECT, "header section over 262144 bytes");

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: application/octet-stream");
    for (int i = 0; i < 15000; i++)
        s_addf (&t, "; name*%d=A", 14999 - i);
    s_adds (&t, "\n\nbody\n");
    m = s_case ("15,000 RFC 2231 parameters (under the header limit)", t.data, t.len, S_RECORD, NULL);
    s_result (m && m->nattachments == 1 && strlen (m->attachments [0].filename) <= 255,
              "RFC 2231 continuation filename capped at 255 bytes");
    s_case_done (&m, &t);

    s_adds (&t, "Subject: colons\nFrom: ");
    for (int i = 0; i < 50000; i++)
        s_add (&t, ":", 1);
    s_adds (&t, "\n\nbody\n");
    s_case_free ("From of 50,000 colons", &t, S_RECORD, NULL);

    s_adds (&t, "Subject: x\nFrom: ");
    for (int i = 0; i < 12000; i++)
        s_adds (&t, "a:b <c@d>, \"q\\\" (");
    s_adds (&t, "\n\nbody\n");
    s_case_free ("From of 12,000 broken groups/quotes/comments", &t, S_RECORD, NULL);

    s_adds (&t, "From: =?utf-8?q?=C3?= <a@b.c>\n"
                "Subject: =?\?= =?utf-8?b?w6k=?= =?utf-8?q?=C3?= =?utf-8?q?=A9?= =?bogus?q?x?= "
                "=?utf-8?b?####?= =?utf-8?x?y?= =?utf-8*de?q?z?= =?\n\nbody\n");
    m = s_case ("broken encoded words", t.data, t.len, S_RECORD, NULL);
    if (s_verbose && m)
        printf ("# subject: [%s]\n", m->subject);
    s_case_done (&m, &t);

    s_adds (&t, "Subject: ");
    for (int i = 0; i < 14000; i++)
        s_adds (&t, "=?utf-8?b?w6k=?= ");
    s_adds (&t, "\n\nbody\n");
    m = s_case ("14,000 encoded words in a subject", t.data, t.len, S_RECORD, NULL);
    {
        /* each word padded: GMime alone read one base64 stream and
           stopped after the first "é" */
        bool all = m && strlen (m->subject) == 28000;
        for (size_t i = 0; all && i < 28000; i += 2)
            all = memcmp (m->subject + i, "\xC3\xA9", 2) == 0;
        s_result (all, "14,000 padded encoded words decode to 14,000 characters (got %zu bytes)",
                  m ? strlen (m->subject) : 0);
    }
    s_case_done (&m, &t);

    s_adds (&t, "From: \"=?iso-8859-1?q?M=FCller?=\" <=?iso-8859-1?q?a?=@x.org>\n"
                "To: =?UTF-8?B?w5w=?= =?UTF-8?B?Yg==?= <b@x.org>, c@y.org\n"
                "Subject: =?utf-8?b?w5w=?=\t=?utf-8?Q?b?= =?utf-8?b?ZXI=?==?utf-8?b?w6k=?=\n\nbody\n");
    m = s_case ("encoded words in names, quoted names and addresses", t.data, t.len, S_RECORD, NULL);
    s_result (m && strcmp (m->from_name, "M\xC3\xBCller") == 0
              && strcmp (m->from_addr, "=?iso-8859-1?q?a?=@x.org") == 0
              && strcmp (m->to, "\xC3\x9C" "b <b@x.org>, c@y.org") == 0
              && strcmp (m->subject, "\xC3\x9C" "ber\xC3\xA9") == 0,
              "encoded words decoded in names and text, addresses left as sent [%s] [%s] [%s]",
              m ? m->from_addr : "", m ? m->to : "", m ? m->subject : "");
    s_case_done (&m, &t);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                "Content-Type: application/pdf; name=a.pdf\nContent-Transfer-Encoding: base64\n\n"
                "JVBER!!!i0xLjQK*@@\n=====\nAAA\n--b\n"
                "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
                "broken =ZZ soft=\nline =C3=A9 =\n=\n--b\n"
                "Content-Type: text/plain; name=x.txt\nContent-Transfer-Encoding: x-uue\n\n"
                "begin 644 x\nM9&%T80``\nend\n--b--\n");
    s_case_free ("broken base64, QP and uuencode", &t, S_RECORD, NULL);

    {
        static const char nul [] = "Subject: a\0b\nFrom: x@y.z\0\nTo: \0\n\nbo\0dy\0\0 with NULs\n";
        m = s_case ("NUL bytes", nul, sizeof nul - 1, S_RECORD, NULL);
        s_result (m && strstr (m->text, "dy with NULs"), "NUL bytes dropped from the body text");
        cm_message_destroy (&m);
    }

    /* text made valid: runs kept in one copy, controls, DEL, NUL; the
       subject on one line, the body with its lines and tabs */
    {
        static const char raw [] =
            "Subject: =?utf-8?q?tab=09cr=0Dok_=C3=A9_del=7F_end?=\n"
            "From: x@y.z\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit\n\n"
            "line one\tTAB\r\nline two \xc3\xa9 \x7f\x01end \xe2\x82\xac\n";
        m = s_case ("text cleaning", raw, sizeof raw - 1, S_RECORD, NULL);
        s_result (m && strcmp (m->subject, "tab cr ok \xc3\xa9 del end") == 0,
                  "subject: tab and CR to spaces, DEL dropped, UTF-8 kept [%s]",
                  m ? m->subject : "");
        s_result (m && strstr (m->text, "line one\tTAB") && strstr (m->text, "line two \xc3\xa9 "
                  "\x01end \xe2\x82\xac"),
                  "body: tabs and lines kept, DEL dropped, UTF-8 kept [%s]", m ? m->text : "");
        cm_message_destroy (&m);
    }

    /* base64 endings: padded, unpadded (GMime alone drops the last 1-2
       bytes), a pad short, and complete quanta */
    {
        static const struct { const char *enc, *dec; } b64 [] = {
            { "QUJDRA==", "ABCD" }, { "QUJDRA", "ABCD" }, { "QUJDREU=", "ABCDE" },
            { "QUJDREU", "ABCDE" }, { "QUJDRA=", "ABCD" }, { "QUJD", "ABC" },
            { "QUJD\nRA", "ABCD" }, { "QU JD RE U", "ABCDE" },
        };
        int good = 0;
        for (size_t i = 0; i < sizeof b64 / sizeof b64 [0]; i++) {
            s_adds (&t, s_head);
            s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                        "Content-Type: text/plain\n\nsee attached\n--b\n"
                        "Content-Type: application/octet-stream; name=a.bin\n"
                        "Content-Transfer-Encoding: base64\n\n");
            s_adds (&t, b64 [i].enc);
            s_adds (&t, "\n--b--\n");
            m = s_case ("base64 ending", t.data, t.len, S_RECORD, NULL);
            bool ok = m && m->nattachments == 1 && m->attachments [0].size == strlen (b64 [i].dec)
                      && memcmp (m->attachments [0].data, b64 [i].dec, strlen (b64 [i].dec)) == 0;
            if (!ok && m)
                printf ("# base64 %s: %zu bytes\n", b64 [i].enc,
                        m->nattachments ? m->attachments [0].size : 0);
            good += ok;
            cm_message_destroy (&m);
            free (t.data);
            memset (&t, 0, sizeof t);
        }
        s_result (good == (int) (sizeof b64 / sizeof b64 [0]),
                  "base64 with and without padding decodes to every byte");
    }

    s_adds (&t, "Subject: bare cr\rFrom: Ann <ann@x.org>\r\rbody line 1\rline 2\r");
    m = s_case ("bare CR line ends", t.data, t.len, S_RECORD, NULL);
    s_result (m && strcmp (m->subject, "bare cr") == 0 && strcmp (m->from_addr, "ann@x.org") == 0
              && strstr (m->text, "line 2"), "bare CR read as line breaks");
    s_case_done (&m, &t);

    s_adds (&t, "Subject: caf\xE9 \xFF\xFE \xC3\x28 \xED\xA0\x80 \xF4\x90\x80\x80\nFrom: J\xF6rg <j@x.org>\n"
                "Content-Type: text/plain; charset=utf-8\n\n\xC3\xA9t\xE9 \xC0\xAF \xF8\x88\x80\x80\x80\n");
    m = s_case ("invalid UTF-8 and 8-bit headers", t.data, t.len, S_RECORD, NULL);
    if (s_verbose && m)
        printf ("# subject: [%s] from: [%s] text: [%s]\n", m->subject, m->from_name, m->text);
    s_case_done (&m, &t);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: text/plain; charset=x-no-such-charset\n\nh\xE9llo\n");
    s_case_free ("unknown charset", &t, S_RECORD, NULL);

    /* A stateful charset with a bad sequence: GMime's charset filter lost
       the text after it and, its converter never reset, re-read the rest
       for each byte it skipped (a 270 kB UTF-7 part parsed for 5 s). */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: text/plain; charset=utf-7\n\n"
                "Gr+APw-\xDF +2AA-e, the rest counts +AOQ-.\r\n+0000\r\nlast line\r\n");
    m = s_case ("UTF-7 with bad base64 runs", t.data, t.len, S_RECORD, NULL);
    s_result (m && strstr (m->text, "Gr\xC3\xBC") && strstr (m->text, "the rest counts \xC3\xA4.")
              && strstr (m->text, "\xEF\xBF\xBD") && strstr (m->text, "last line"),
              "UTF-7: each bad sequence is U+FFFD, the text after it is read (%s)",
              m ? m->text : "rejected");
    s_case_done (&m, &t);
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: text/plain; charset=utf-7\n\nstart +0000\r\n");
    for (int i = 0; i < 2000; i++)
        s_adds (&t, "+AGE-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa +2AA-x\r\n");
    s_adds (&t, "end of text\r\n");
    m = s_case ("UTF-7, 200 kB with a bad sequence on each line", t.data, t.len, S_RECORD, NULL);
    s_result (m && strstr (m->text, "end of text"), "UTF-7: the last line of a long text is read");
    s_case_done (&m, &t);

    /* UTF-7 encoded words: GMime decodes them while it builds the message
       and turned all after a bad sequence into '?' (the next word's text
       too), re-reading the rest of the word for each '?' */
    s_adds (&t, "From: =?utf-7?Q?J+APw-rgen_+2AA-_M?= <j@x.org>\nTo: soc@example.org\n"
                "Subject: =?utf-7?B?R3IrQVB3LWUgKzJBQS1lLCByZXN0ICswMDAwIHN0YXlzICtBT1Et?= "
                "=?utf-7?Q?_tail_+AOQ-?=\nMIME-Version: 1.0\n"
                "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
                "--b\nContent-Type: application/octet-stream;\n"
                " name=\"=?utf-7?B?R3IrQVB3LWUgKzJBQS1lLCByZXN0ICswMDAwIHN0YXlzICtBT1Et?=.txt\"\n"
                "\nx\n--b--\n");
    m = s_case ("UTF-7 encoded words with bad base64 runs", t.data, t.len, S_RECORD, NULL);
    s_result (m && strstr (m->subject, "Gr\xC3\xBC") && strstr (m->subject, "stays \xC3\xA4 tail \xC3\xA4")
              && strstr (m->from_name, "\xEF\xBF\xBD M") && m->nattachments == 1
              && strstr (m->attachments [0].filename, "stays \xC3\xA4.txt"),
              "UTF-7 words: each bad sequence is U+FFFD, the text after it is read (%s | %s | %s)",
              m ? m->subject : "rejected", m ? m->from_name : "",
              m && m->nattachments ? m->attachments [0].filename : "");
    s_case_done (&m, &t);
    s_adds (&t, s_head);
    s_adds (&t, "X-Note: =?utf-7?Q?not_respelled?=\nContent-Type: text/plain\n\n"
                "=?utf-7?Q?+AOQ-?= stays as written in the body\n");
    m = s_case ("UTF-7 encoded word in a body", t.data, t.len, S_RECORD, NULL);
    s_result (m && strstr (m->text, "=?utf-7?Q?+AOQ-?= stays"),
              "UTF-7 words are respelled in header fields only (%s)", m ? m->text : "rejected");
    s_case_done (&m, &t);
    /* Header fields cost GMime an object each: 36 MiB of "X-A: b" lines
       spread over parts under the byte limits parsed for 19 s. */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n");
    for (int part = 0; part < 3; part++) {
        s_adds (&t, "--b\n");
        for (int i = 0; i < 17000; i++)
            s_adds (&t, "X-A: b\n");
        s_adds (&t, "Content-Type: text/plain\n\npart\n");
    }
    s_adds (&t, "--b--\n");
    s_case_free ("51,000 header fields in three parts", &t, S_REJECT, "more than 50000 header fields");

    s_adds (&t, "From: a@b.example\nSubject: =?utf-7?B?");
    for (int i = 0; i < 500; i++)
        s_adds (&t, "K0lnRUFBUWFRQ0FBRUFBQUFBQUFCQUFFQUFRZVFCZ0FJQUFBQUFHYWFhYWFhYWFhYWFhYWFh");
    s_adds (&t, "?= =?utf-7?Q?-_end?=\n\nbody\n");
    m = s_case ("UTF-7 Subject of 36 kB in one word", t.data, t.len, S_RECORD, NULL);
    s_result (m && strlen (m->subject) > 3 && !strcmp (m->subject + strlen (m->subject) - 3, "end"),
              "UTF-7 Subject: the word after a long broken one is read");
    s_case_done (&m, &t);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=never\n\n--never\n"
                "Content-Type: text/plain\n\nbody without end\n--never-- not quite\n--neverX\n");
    s_case_free ("boundary that never closes", &t, S_RECORD, NULL);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n"
                "--b\nContent-Type: application/octet-stream; name=\"../../etc/passwd\"\n\nx\n"
                "--b\nContent-Disposition: attachment; filename=\"/etc/shadow\"\n\nx\n"
                "--b\nContent-Disposition: attachment; filename=\"C:\\\\Windows\\\\evil.exe\"\n\nx\n"
                "--b\nContent-Disposition: attachment; filename*=UTF-8''a%0D%0Ab%07c%00d.txt\n\nx\n"
                "--b\nContent-Disposition: attachment; filename=\"..\"\n\nx\n"
                "--b\nContent-Disposition: attachment; filename=\"=?utf-8?q?..=2F=2E=2E=2Fx.sh?=\"\n\nx\n"
                "--b--\n");
    m = s_case ("attachment names with ../, absolute paths, control chars", t.data, t.len, S_RECORD, NULL);
    if (m && m->nattachments == 6) {
        const char *want [] = { "passwd", "shadow", "evil.exe", "abc", "attachment-5.txt", "x.sh" };
        bool all = true;
        for (int i = 0; i < 6; i++) {
            if (strcmp (m->attachments [i].filename, want [i]) != 0) {
                all = false;
                printf ("# name %d: [%s] want [%s]\n", i, m->attachments [i].filename, want [i]);
            }
        }
        s_result (all, "hostile filenames sanitised to base names");
    }
    else
        s_result (false, "hostile filenames sanitised to base names (got %zu attachments)",
                  m ? m->nattachments : 0);
    s_case_done (&m, &t);

    s_case ("empty message", "", 0, S_REJECT, "not an email message: no header fields");
    s_case ("NULL input", NULL, 0, S_REJECT, "not an email message: no header fields");
    {
        const char *plain = "hello, this is not an email\nreally not\n";
        s_case ("text without header fields", plain, strlen (plain), S_REJECT,
                "not an email message: no header fields");
    }
    {
        const char *ho = "From: a@b.c\nSubject: headers only";
        m = s_case ("headers only, no body, no final newline", ho, strlen (ho), S_RECORD, NULL);
        s_result (m && strcmp (m->subject, "headers only") == 0 && strcmp (m->text, "") == 0,
                  "headers-only message has subject and empty text");
        cm_message_destroy (&m);
    }
    {
        unsigned char bin [4096];
        unsigned int seed = 12345;
        for (size_t i = 0; i < sizeof bin; i++) {
            seed = seed * 1103515245u + 12345u;
            bin [i] = (unsigned char) (seed >> 16);
        }
        m = s_case ("4 KB of random bytes", (const char *) bin, sizeof bin, S_EITHER, NULL);
        cm_message_destroy (&m);
    }

    {
        cm_limits_t l;
        cm_limits_default (&l);
        size_t n = l.max_size + 1;
        char *big = malloc (n);
        if (big) {
            memset (big, 'a', n);
            memcpy (big, "Subject: big\n\n", 14);
            char want [128];
            snprintf (want, sizeof want, "message is %zu bytes, over the %zu-byte limit",
                      n, l.max_size);
            s_case ("size limit + 1 byte", big, n, S_REJECT, want);
            free (big);
        }
    }

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nsee attachment\n--b\n"
                "Content-Type: application/octet-stream; name=big.bin\nContent-Transfer-Encoding: base64\n\n");
    for (int i = 0; i < 250000; i++)
        s_adds (&t, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\n");
    s_adds (&t, "--b--\n");
    m = s_case ("16 MB base64 attachment", t.data, t.len, S_RECORD, NULL);
    s_result (m && m->nattachments == 1 && m->attachments [0].size == 12000000,
              "16 MB base64 attachment decodes to 12,000,000 bytes");
    s_case_done (&m, &t);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nsixty messages\n");
    for (int i = 0; i < 60; i++)
        s_addf (&t, "--b\nContent-Type: message/rfc822\n\nSubject: inner %d\nFrom: x@y.z\n\nbody %d\n", i, i);
    s_adds (&t, "--b--\n");
    m = s_case ("60 attached messages", t.data, t.len, S_RECORD, NULL);
    s_result (m && m->nnested == 50 && m->nattachments == 60 && m->attachments [59].note
              && m->attachments [59].nested_index == -1,
              "only the first 50 attached messages are parsed, the rest noted");
    s_case_done (&m, &t);

    /* .eml inside .eml inside ...: each level base64-encodes the previous */
    {
        s_text_t cur = { 0 };
        s_adds (&cur, "Subject: innermost\nFrom: a@b.c\n\nhi\n");
        for (int level = 0; level < 20; level++) {
            s_text_t next = { 0 };
            s_addf (&next, "Subject: level %d\nFrom: a@b.c\nContent-Type: multipart/mixed; boundary=L\n\n"
                           "--L\n\ntext\n--L\nContent-Type: application/octet-stream; name=m.eml\n"
                           "Content-Transfer-Encoding: base64\n\n", level);
            static const char b64 [] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            for (size_t i = 0; i < cur.len; i += 3) {
                unsigned v = (unsigned char) cur.data [i] << 16;
                if (i + 1 < cur.len) v |= (unsigned char) cur.data [i + 1] << 8;
                if (i + 2 < cur.len) v |= (unsigned char) cur.data [i + 2];
                char q [4] = { b64 [(v >> 18) & 63], b64 [(v >> 12) & 63],
                               i + 1 < cur.len ? b64 [(v >> 6) & 63] : '=',
                               i + 2 < cur.len ? b64 [v & 63] : '=' };
                s_add (&next, q, 4);
                if ((i / 3) % 19 == 18)
                    s_add (&next, "\n", 1);
            }
            s_adds (&next, "\n--L--\n");
            free (cur.data);
            cur = next;
            if (level == 9) {
                m = s_case (".eml in .eml, 10 levels", cur.data, cur.len, S_RECORD, NULL);
                int levels = 0;
                for (cm_message_t *p = m; p && p->nnested; p = p->nested [0])
                    levels++;
                s_result (levels == 10, ".eml chain parsed 10 levels deep (got %d)", levels);
                cm_message_destroy (&m);
            }
        }
        s_case (".eml in .eml, 20 levels", cur.data, cur.len, S_REJECT, "MIME nesting deeper than 32 levels");
        free (cur.data);
    }

    s_adds (&t, s_head);
    s_adds (&t, "References:");
    for (int i = 0; i < 20000; i++)
        s_addf (&t, " <%d@x>", i);
    s_adds (&t, "\n\nbody\n");
    m = s_case ("20,000 References", t.data, t.len, S_RECORD, NULL);
    s_result (m && m->nreferences == 100 && strcmp (m->references [0], "0@x") == 0
              && strcmp (m->references [99], "19999@x") == 0,
              "references capped at 100: root and latest 99");
    s_case_done (&m, &t);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: text/html\n\n");
    for (int i = 0; i < 200000; i++)
        s_adds (&t, "<a&#x<!-<script");
    s_case_free ("3 MB of broken HTML", &t, S_RECORD, NULL);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: text/html\n\n");
    for (int i = 0; i < 500000; i++)
        s_adds (&t, "<head>");
    s_case_free ("3 MB of unclosed <head> tags", &t, S_RECORD, NULL);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n");
    for (int i = 0; i < 990; i++) {
        s_adds (&t, "--b\nContent-Type: text/plain\n\n");
        for (int k = 0; k < 300; k++)
            s_adds (&t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
    }
    s_adds (&t, "--b--\n");
    s_case_free ("990 inline text parts of 24 KB (bodies appended)", &t, S_RECORD, NULL);

    /* message/rfc822 28 deep around a 6 MB attachment: each level's .eml
       repeats the bytes, which the decoded-bytes budget (4 x the size
       limit) stops */
    s_adds (&t, s_head);
    for (int i = 0; i < 28; i++)
        s_addf (&t, "Content-Type: message/rfc822\n\nSubject: level %d\n", i);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                "Content-Type: application/octet-stream; name=big.bin\n\n");
    for (int i = 0; i < 6 * 1024; i++) {
        char line [1024];
        memset (line, 'x', sizeof line - 1);
        line [sizeof line - 1] = '\n';
        s_add (&t, line, sizeof line);
    }
    s_adds (&t, "--b--\n");
    {
        cm_limits_t l;
        cm_limits_default (&l);
        char want [128];
        snprintf (want, sizeof want, "attachments decode to more than %zu bytes", 4 * l.max_size);
        s_case_free ("message/rfc822 28 deep around a 6 MB attachment", &t, S_REJECT, want);
    }

    s_adds (&t, s_head);
    s_adds (&t, "\n");
    for (int i = 0; i < 200000; i++)
        s_adds (&t, "On Monday\nFrom: x\n\n");
    s_case_free ("4 MB of near-miss reply markers", &t, S_RECORD, NULL);

    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=\"");
    for (int i = 0; i < 5000; i++)
        s_add (&t, "b", 1);
    s_adds (&t, "\"\n\n");
    for (int i = 0; i < 900; i++) {
        s_adds (&t, "--");
        for (int k = 0; k < 4999; k++)
            s_add (&t, "b", 1);
        s_adds (&t, "\n\nx\n");
    }
    s_case_free ("5,000-byte boundary with 900 near-miss lines", &t, S_RECORD, NULL);

    /* uuencoded files in a text body: the work stays linear, and nothing
       that is not a whole block leaves the text */
    static const char *full = "M````````````````````````````````````````````````````````````\n";
    static const struct { const char *what, *unit; } uu_text [] = {
        { "10 MB of uuencode begin lines", "begin 644 x.bin\n" },
        { "10 MB of begin lines each before a full line, no end", "begin 644 x.bin\n%s" },
        { "10 MB of begin-base64 lines each before a base64 line, no ====",
          "begin-base64 644 x.bin\nQUJD\n" },
    };
    for (size_t i = 0; i < sizeof uu_text / sizeof uu_text [0]; i++) {
        s_adds (&t, s_head);
        s_adds (&t, "\n");
        size_t body = t.len;
        while (t.len < 10 * 1024 * 1024)
            s_addf (&t, uu_text [i].unit, full);
        m = s_case (uu_text [i].what, t.data, t.len, S_RECORD, NULL);
        s_result (m && m->nattachments == 0 && strcmp (m->text, t.data + body) == 0,
                  "%s: the text is kept whole", uu_text [i].what);
        cm_message_destroy (&m);
        free (t.data);
        memset (&t, 0, sizeof t);
    }
    s_adds (&t, s_head);
    s_adds (&t, "\nbig file:\nbegin 644 big.bin\n");
    size_t lines = 0;
    for (; t.len < 10 * 1024 * 1024; lines++)
        s_adds (&t, full);
    s_adds (&t, "`\nend\nbye\n");
    m = s_case ("a 10 MB uuencoded file in a text body", t.data, t.len, S_RECORD, NULL);
    s_result (m && m->nattachments == 1 && m->attachments [0].size == lines * 45
              && strcmp (m->text, "big file:\n[attachment: big.bin]\nbye\n") == 0,
              "a 10 MB uuencoded file becomes one attachment of %zu bytes", lines * 45);
    s_case_done (&m, &t);
    /* an old encoder's spaces for zero, the trailing ones stripped in
       transit (CRLF lines): each line ends in a run of zero bytes, so
       most are shorter than their length character says */
    {
        enum { FILE_SIZE = 45 * 400 + 17 };
        unsigned char *file = malloc (FILE_SIZE);
        for (size_t i = 0; i < FILE_SIZE; i++)
            file [i] = i % 45 >= 45 - (i / 45) % 46 ? 0 : (unsigned char) (i * 7 + 1);
        s_adds (&t, s_head);
        s_adds (&t, "\r\nthe log:\r\nbegin 644 log.bin\r\n");
        for (size_t at = 0; at < FILE_SIZE; at += 45) {
            size_t n = FILE_SIZE - at < 45 ? FILE_SIZE - at : 45;
            char line [64];
            size_t len = 0;
            line [len++] = (char) (0x20 + n);
            for (size_t g = 0; g < n; g += 3) {
                unsigned char b [3] = { 0, 0, 0 };
                memcpy (b, file + at + g, n - g < 3 ? n - g : 3);
                unsigned char q [4] = { (unsigned char) (b [0] >> 2),
                    (unsigned char) ((b [0] & 3) << 4 | b [1] >> 4),
                    (unsigned char) ((b [1] & 15) << 2 | b [2] >> 6), (unsigned char) (b [2] & 63) };
                for (int k = 0; k < 4; k++)
                    line [len++] = (char) (0x20 + q [k]);     /* zero: a space */
            }
            while (len > 1 && line [len - 1] == ' ')
                len--;
            s_add (&t, line, len);
            s_adds (&t, "\r\n");
        }
        s_adds (&t, "\r\nend\r\nbye\r\n");
        m = s_case ("a uuencoded file whose trailing spaces were stripped", t.data, t.len,
                    S_RECORD, NULL);
        s_result (m && m->nattachments == 1 && m->attachments [0].size == FILE_SIZE
                  && memcmp (m->attachments [0].data, file, FILE_SIZE) == 0
                  && strcmp (m->text, "the log:\r\n[attachment: log.bin]\r\nbye\r\n") == 0,
                  "stripped uuencode: the file decoded whole (%d bytes, the missing"
                  " characters as zero), the text around it kept", FILE_SIZE);
        cm_message_destroy (&m);
        free (file);
        free (t.data);
        memset (&t, 0, sizeof t);
    }
    s_adds (&t, s_head);
    s_adds (&t, "\n");
    for (int i = 0; i < 100000; i++)
        s_adds (&t, "begin 644 empty\n`\nend\n");
    s_case_free ("100,000 empty uuencoded files", &t, S_REJECT,
                 "more than 1000 MIME parts and uuencoded files");

    /* a plain uuencoded file in a text part at the depth limit is kept,
       as the same file attached in MIME there would be: only a file that
       is opened (.eml, .p7m) can go deeper than the limit */
    {
        cm_limits_t lim;
        char reason [256] = "";
        s_adds (&t, s_head);
        s_adds (&t, "Content-Type: multipart/mixed; boundary=A\n\n--A\n"
                    "Content-Type: multipart/mixed; boundary=B\n\n--B\n"
                    "Content-Type: text/plain\n\nsee the file\n"
                    "begin 644 a.txt\n#:&D*\n`\nend\n\n--B--\n\n--A--\n");
        cm_limits_default (&lim);
        lim.max_depth = 3;
        m = cm_message_parse (t.data, t.len, &lim, reason, sizeof reason);
        s_result (m && m->nattachments == 1 && strcmp (m->attachments [0].filename, "a.txt") == 0
                  && m->attachments [0].size == 3 && memcmp (m->attachments [0].data, "hi\n", 3) == 0,
                  "a uuencoded a.txt in a text part at the depth limit is kept (%s)",
                  m ? "read" : reason);
        cm_message_destroy (&m);
        lim.max_depth = 2;
        m = cm_message_parse (t.data, t.len, &lim, reason, sizeof reason);
        s_result (!m && strcmp (reason, "MIME nesting deeper than 2 levels") == 0,
                  "... whose text part is itself at that limit (%s)", m ? "accepted" : reason);
        s_case_done (&m, &t);
    }

    /* a calendar-only message: only the start of the part is read */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: text/calendar; method=REQUEST\n\nBEGIN:VEVENT\nSUMMARY:big\n");
    while (t.len < 10 * 1024 * 1024)
        s_adds (&t, "ATTENDEE;CN=\"a:b;c\";PARTSTAT=ACCEPTED:mailto:x@y.z\r\n \\n\\\r\n\tBEGIN:VALARM\n");
    s_adds (&t, "END:VEVENT\n");
    m = s_case ("10 MB text/calendar of attendees and folds", t.data, t.len, S_RECORD, NULL);
    s_result (m && strncmp (m->text, "Meeting invitation: big\nAttendees (", 35) == 0
              && strlen (m->text) < 64 * 1024 && m->nattachments == 1
              && m->attachments [0].size > 10 * 1000 * 1000,
              "10 MB text/calendar: a bounded description, the whole .ics kept");
    s_calendar_done (&m, &t);

    /* a task request (VTODO) alone gets the same description, under the
       same caps: a 100 KB summary and 10 MB of statuses and attendees */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/alternative; boundary=A\n\n--A\nContent-Type: text/plain\n\n"
                "\n--A\nContent-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\n"
                "BEGIN:VTODO\nDUE:20240112T170000Z\nPRIORITY:2\nSTATUS:IN-PROCESS\nSUMMARY:");
    while (t.len < 100 * 1024)
        s_adds (&t, "patch ");
    s_adds (&t, "\n");
    while (t.len < 10 * 1024 * 1024)
        s_adds (&t, "STATUS:COMPLETED\nATTENDEE;CN=Bob:mailto:bob@y.z\nPRIORITY:9\n");
    s_adds (&t, "END:VTODO\nEND:VCALENDAR\n--A--\n");
    m = s_case ("10 MB task request (VTODO)", t.data, t.len, S_RECORD, NULL);
    s_result (m && strncmp (m->text, "Task request: patch patch", 25) == 0
              && strstr (m->text, "...\nDue: 20240112T170000Z\nStatus: in process\n"
                                  "Priority: 2 (high)\nAttendees (")
              && strlen (m->text) < 64 * 1024 && m->nattachments == 1,
              "10 MB task request: described (due, status, priority), bounded");
    s_calendar_done (&m, &t);
}

/* --------------------------------------------------------- S/MIME signed data */

/* CMS SignedData made with "openssl smime -sign -nodetach -binary" (EC
   P-256 key, certificate /CN=t) over this MIME entity (CRLF lines):
     Content-Type: multipart/mixed; boundary="in"
     --in / text/plain; charset=utf-8: "Signed report: click
     https://evil.example/x \u00fc" / --in / application/octet-stream,
     attachment "ioc.txt": "evil.example" / --in--
   s_smime_der is DER (with the certificate), s_smime_ber the same
   content streamed (-stream -nocerts: indefinite lengths, the content as
   a constructed OCTET STRING). s_smime_pdf signs a small "%PDF-1.4" file
   (no MIME entity inside); s_smime_env is CMS EnvelopedData ("openssl
   cms -encrypt") of a text entity. s_smime_pdf2 signs s_smime_pdf's DER
   again (a contract.pdf.p7m.p7m: "openssl cms -sign -nodetach -binary
   -nocerts -noattr", another throwaway P-256 key), s_smime_txt the same
   way a text file that opens like a header field:
   "Subject: quarterly figures\r\n\r\nRevenue up.\r\n". */
static const char s_smime_der [] =
    "MIIESgYJKoZIhvcNAQcCoIIEOzCCBDcCAQExDzANBglghkgBZQMEAgEFADCCAS8G\n"
    "CSqGSIb3DQEHAaCCASAEggEcQ29udGVudC1UeXBlOiBtdWx0aXBhcnQvbWl4ZWQ7\n"
    "IGJvdW5kYXJ5PSJpbiINCg0KLS1pbg0KQ29udGVudC1UeXBlOiB0ZXh0L3BsYWlu\n"
    "OyBjaGFyc2V0PXV0Zi04DQoNClNpZ25lZCByZXBvcnQ6IGNsaWNrIGh0dHBzOi8v\n"
    "ZXZpbC5leGFtcGxlL3ggw7wNCi0taW4NCkNvbnRlbnQtVHlwZTogYXBwbGljYXRp\n"
    "b24vb2N0ZXQtc3RyZWFtOyBuYW1lPSJpb2MudHh0Ig0KQ29udGVudC1EaXNwb3Np\n"
    "dGlvbjogYXR0YWNobWVudDsgZmlsZW5hbWU9ImlvYy50eHQiDQoNCmV2aWwuZXhh\n"
    "bXBsZQ0KLS1pbi0tDQqgggFwMIIBbDCCAROgAwIBAgIUV1ebN6wRojGP8gwqHvWJ\n"
    "dQe66H0wCgYIKoZIzj0EAwIwDDEKMAgGA1UEAwwBdDAeFw0yNjExMjkxNjEzNDda\n"
    "Fw0yNjExMzAxNjEzNDdaMAwxCjAIBgNVBAMMAXQwWTATBgcqhkjOPQIBBggqhkjO\n"
    "PQMBBwNCAAQiCRjk0koDA/IzGJV/Ch6a8ZymjH2d/gmOf37l+x4eYswGJKjbRBf8\n"
    "4/qVjx2MxcsbL/C1QzzehRqN5g0iDQl6o1MwUTAdBgNVHQ4EFgQUIP03YVp4inKR\n"
    "fdWvIJl4jv+Zn7gwHwYDVR0jBBgwFoAUIP03YVp4inKRfdWvIJl4jv+Zn7gwDwYD\n"
    "VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiA3yhPEQE6hYHayPBfhb+5O\n"
    "eUAm7i1lJdO/9yr2Iz8W/QIgNvhssGT5KHB3IwvW62FTkz0YcKUvHYhhM0wZHkUa\n"
    "16gxggF4MIIBdAIBATAkMAwxCjAIBgNVBAMMAXQCFFdXmzesEaIxj/IMKh71iXUH\n"
    "uuh9MA0GCWCGSAFlAwQCAQUAoIHkMBgGCSqGSIb3DQEJAzELBgkqhkiG9w0BBwEw\n"
    "HAYJKoZIhvcNAQkFMQ8XDTI2MTEyOTE2MTUwNVowLwYJKoZIhvcNAQkEMSIEIO3I\n"
    "TEjDahX4ST6Mc2UlDMywePNSuhIJc1NuxMnEMKB4MHkGCSqGSIb3DQEJDzFsMGow\n"
    "CwYJYIZIAWUDBAEqMAsGCWCGSAFlAwQBFjALBglghkgBZQMEAQIwCgYIKoZIhvcN\n"
    "AwcwDgYIKoZIhvcNAwICAgCAMA0GCCqGSIb3DQMCAgFAMAcGBSsOAwIHMA0GCCqG\n"
    "SIb3DQMCAgEoMAoGCCqGSM49BAMCBEcwRQIgYrLcvUUD3uFMU2DrbQlKa+4fAB9z\n"
    "197BjeNEJDs0DlkCIQCst9n2WGJtIRLhUKzXDHUljSb7n4X8sWgSJfUzL7onyA==\n";
static const char s_smime_ber [] =
    "MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0B\n"
    "BwGggCSABIIBHENvbnRlbnQtVHlwZTogbXVsdGlwYXJ0L21peGVkOyBib3VuZGFy\n"
    "eT0iaW4iDQoNCi0taW4NCkNvbnRlbnQtVHlwZTogdGV4dC9wbGFpbjsgY2hhcnNl\n"
    "dD11dGYtOA0KDQpTaWduZWQgcmVwb3J0OiBjbGljayBodHRwczovL2V2aWwuZXhh\n"
    "bXBsZS94IMO8DQotLWluDQpDb250ZW50LVR5cGU6IGFwcGxpY2F0aW9uL29jdGV0\n"
    "LXN0cmVhbTsgbmFtZT0iaW9jLnR4dCINCkNvbnRlbnQtRGlzcG9zaXRpb246IGF0\n"
    "dGFjaG1lbnQ7IGZpbGVuYW1lPSJpb2MudHh0Ig0KDQpldmlsLmV4YW1wbGUNCi0t\n"
    "aW4tLQ0KAAAAAAAAMYIBeDCCAXQCAQEwJDAMMQowCAYDVQQDDAF0AhRXV5s3rBGi\n"
    "MY/yDCoe9Yl1B7rofTANBglghkgBZQMEAgEFAKCB5DAYBgkqhkiG9w0BCQMxCwYJ\n"
    "KoZIhvcNAQcBMBwGCSqGSIb3DQEJBTEPFw0yNjExMjkxNjE1MDVaMC8GCSqGSIb3\n"
    "DQEJBDEiBCDtyExIw2oV+Ek+jHNlJQzMsHjzUroSCXNTbsTJxDCgeDB5BgkqhkiG\n"
    "9w0BCQ8xbDBqMAsGCWCGSAFlAwQBKjALBglghkgBZQMEARYwCwYJYIZIAWUDBAEC\n"
    "MAoGCCqGSIb3DQMHMA4GCCqGSIb3DQMCAgIAgDANBggqhkiG9w0DAgIBQDAHBgUr\n"
    "DgMCBzANBggqhkiG9w0DAgIBKDAKBggqhkjOPQQDAgRHMEUCIQDzONjjALduxXgb\n"
    "oQuQNRfedL+3LpMc/0u7G88agSpLggIgGzg/qx5xT/BRBpw0I1duS0iTxgV0V0uV\n"
    "CyaD6spqSU4AAAAAAAA=\n";
static const char s_smime_pdf [] =
    "MIIB7QYJKoZIhvcNAQcCoIIB3jCCAdoCAQExDzANBglghkgBZQMEAgEFADBIBgkq\n"
    "hkiG9w0BBwGgOwQ5JVBERi0xLjQKJeLjz9MKMSAwIG9iaiA8PCAvVHlwZSAvQ2F0\n"
    "YWxvZyA+PiBlbmRvYmoKJSVFT0YKMYIBeDCCAXQCAQEwJDAMMQowCAYDVQQDDAF0\n"
    "AhRXV5s3rBGiMY/yDCoe9Yl1B7rofTANBglghkgBZQMEAgEFAKCB5DAYBgkqhkiG\n"
    "9w0BCQMxCwYJKoZIhvcNAQcBMBwGCSqGSIb3DQEJBTEPFw0yNjExMjkxNjE1MDVa\n"
    "MC8GCSqGSIb3DQEJBDEiBCAYc5g5f8XZkHvTfkJb70BkgttI5+CwytVSNmxP2iDU\n"
    "hjB5BgkqhkiG9w0BCQ8xbDBqMAsGCWCGSAFlAwQBKjALBglghkgBZQMEARYwCwYJ\n"
    "YIZIAWUDBAECMAoGCCqGSIb3DQMHMA4GCCqGSIb3DQMCAgIAgDANBggqhkiG9w0D\n"
    "AgIBQDAHBgUrDgMCBzANBggqhkiG9w0DAgIBKDAKBggqhkjOPQQDAgRHMEUCIQCx\n"
    "y1O/XL01mmqWZ8klJrE15j2my0mZn+6moR8IDTN2MAIgYQajJRsKRwcwgaCJJl+x\n"
    "f30GW8KoGl2SB6/FbHbC7Zg=\n";
static const char s_smime_env [] =
    "MIIBLgYJKoZIhvcNAQcDoIIBHzCCARsCAQIxgbehgbQCAQOgUaFPMAkGByqGSM49\n"
    "AgEDQgAEff9tARG5Ytuns6Qs7pDPqYd+rQ/vUmg7Q6nVH1HyQZZ0qwxs9epoTcZK\n"
    "1RJzi68NgOpfqezV3pC/6n+E2vLS3DAYBgkrgQUQhkg/AAIwCwYJYIZIAWUDBAEF\n"
    "MEIwQDAkMAwxCjAIBgNVBAMMAXQCFFdXmzesEaIxj/IMKh71iXUHuuh9BBi4on6/\n"
    "w8+p3yoGUqRGuZgWsXT+If9/3o4wXAYJKoZIhvcNAQcBMB0GCWCGSAFlAwQBAgQQ\n"
    "rn+6+FM8Oj0IdEe7j5VyFIAwUpWWMNu+eyrXY2B6kcLKktwF4XpOkIjZ96u2nPFF\n"
    "TeBCp7RG+ispqW4duh5gkPAj\n";

static const char s_smime_pdf2 [] =
    "MIICvwYJKoZIhvcNAQcCoIICsDCCAqwCAQExDTALBglghkgBZQMEAgEwggIEBgkq\n"
    "hkiG9w0BBwGgggH1BIIB8TCCAe0GCSqGSIb3DQEHAqCCAd4wggHaAgEBMQ8wDQYJ\n"
    "YIZIAWUDBAIBBQAwSAYJKoZIhvcNAQcBoDsEOSVQREYtMS40CiXi48/TCjEgMCBv\n"
    "YmogPDwgL1R5cGUgL0NhdGFsb2cgPj4gZW5kb2JqCiUlRU9GCjGCAXgwggF0AgEB\n"
    "MCQwDDEKMAgGA1UEAwwBdAIUV1ebN6wRojGP8gwqHvWJdQe66H0wDQYJYIZIAWUD\n"
    "BAIBBQCggeQwGAYJKoZIhvcNAQkDMQsGCSqGSIb3DQEHATAcBgkqhkiG9w0BCQUx\n"
    "DxcNMjYxMTI5MTYxNTA1WjAvBgkqhkiG9w0BCQQxIgQgGHOYOX/F2ZB7035CW+9A\n"
    "ZILbSOfgsMrVUjZsT9og1IYweQYJKoZIhvcNAQkPMWwwajALBglghkgBZQMEASow\n"
    "CwYJYIZIAWUDBAEWMAsGCWCGSAFlAwQBAjAKBggqhkiG9w0DBzAOBggqhkiG9w0D\n"
    "AgICAIAwDQYIKoZIhvcNAwICAUAwBwYFKw4DAgcwDQYIKoZIhvcNAwICASgwCgYI\n"
    "KoZIzj0EAwIERzBFAiEAsctTv1y9NZpqlmfJJSaxNeY9pstJmZ/upqEfCA0zdjAC\n"
    "IGEGoyUbCkcHMIGgiSZfsX99BlvCqBpdkgevxWx2wu2YMYGPMIGMAgEBMCQwDDEK\n"
    "MAgGA1UEAwwBdAIUUgs8RyKEErdTpeC+mLaRblvLNWAwCwYJYIZIAWUDBAIBMAoG\n"
    "CCqGSM49BAMCBEgwRgIhAOwebbD9LqFwZfPHW18Hu37DyosVss9FjQlFQJ/Itgef\n"
    "AiEArUbp9pgsASZNyKJjFezKjvr7xWoEOP7CRNprvYmrh7w=\n";
static const char s_smime_txt [] =
    "MIHxBgkqhkiG9w0BBwKggeMwgeACAQExDTALBglghkgBZQMEAgEwOgYJKoZIhvcN\n"
    "AQcBoC0EK1N1YmplY3Q6IHF1YXJ0ZXJseSBmaWd1cmVzDQoNClJldmVudWUgdXAu\n"
    "DQoxgY8wgYwCAQEwJDAMMQowCAYDVQQDDAF0AhRSCzxHIoQSt1Ol4L6YtpFuW8s1\n"
    "YDALBglghkgBZQMEAgEwCgYIKoZIzj0EAwIESDBGAiEAqdj9UfE3hum/Chsm+cVE\n"
    "y+dcozC+KQXH/0R+UERHVu8CIQCcRjDzO7tGrXwCSQj6/MSo+j/h+1oZ22YtMe6R\n"
    "DYfMww==\n";

/* The signed PDF inside s_smime_pdf: 57 bytes, this SHA-256. */
#define S_SIGNED_PDF_SHA256 "187398397fc5d9907bd37e425bef406482db48e7e0b0cad552366c4fda20d486"

/* Parses text with the given limits (NULL: the defaults); text is also
   a fuzz seed (--write-hostile). */
static cm_message_t *
s_parse_with (const char *text, const cm_limits_t *limits, char *reason, size_t reasonlen)
{
    if (!limits)
        s_write_seed (text, strlen (text));
    return cm_message_parse (text, strlen (text), limits, reason, reasonlen);
}

/* Same, for len bytes that may hold NULs (a binary part). */
static cm_message_t *
s_parse_len (const char *data, size_t len, char *reason, size_t reasonlen)
{
    s_write_seed (data, len);
    return cm_message_parse (data, len, NULL, reason, reasonlen);
}

/* Bytes of the base64 text b64 (line breaks and padding passed over),
   as raw DER for a part sent with Content-Transfer-Encoding: binary. */
static void
s_add_unbase64 (s_text_t *t, const char *b64)
{
    unsigned int acc = 0;
    int bits = 0;
    for (const char *p = b64; *p; p++) {
        const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *hit = strchr (alphabet, *p);
        if (!hit)
            continue;
        acc = ((acc << 6) | (unsigned int) (hit - alphabet)) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char c = (unsigned char) (acc >> bits);
            s_add (t, &c, 1);
        }
    }
}

static cm_message_t *
s_parse_len_with (const char *data, size_t len, const cm_limits_t *limits,
                  char *reason, size_t reasonlen)
{
    return cm_message_parse (data, len, limits, reason, reasonlen);
}

/* Prepends a DER tag and length to t[from..). */
static void
s_der_wrap (s_text_t *t, size_t from, unsigned char tag)
{
    size_t len = t->len - from;
    unsigned char head [6] = { tag };
    size_t n = 1;
    if (len < 0x80)
        head [n++] = (unsigned char) len;
    else {
        int bytes = len > 0xFFFFFF ? 4 : len > 0xFFFF ? 3 : len > 0xFF ? 2 : 1;
        head [n++] = (unsigned char) (0x80 | bytes);
        for (int i = bytes - 1; i >= 0; i--)
            head [n++] = (unsigned char) (len >> (8 * i));
    }
    s_add (t, head, n);     /* grow, then move the body behind the head */
    memmove (t->data + from + n, t->data + from, len);
    memcpy (t->data + from, head, n);
}

/* A CMS ContentInfo of EnvelopedData (no recipients, 16 bytes of
   "ciphertext"), DER, appended to ci: what an encrypted .p7m holds. */
static void
s_der_enveloped (s_text_t *ci)
{
    static const unsigned char enveloped_oid [] = { 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03 };
    static const unsigned char data_oid [] = { 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01 };
    static const unsigned char aes_oid [] = { 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02 };
    s_text_t alg = { 0 }, eci = { 0 }, env = { 0 };
    s_add (&alg, aes_oid, sizeof aes_oid);
    s_add (&alg, "\x04\x10" "0123456789abcdef", 18);      /* IV */
    s_der_wrap (&alg, 0, 0x30);
    s_add (&eci, data_oid, sizeof data_oid);
    s_add (&eci, alg.data, alg.len);
    s_add (&eci, "\x80\x10" "fedcba9876543210", 18);      /* [0] ciphertext */
    s_der_wrap (&eci, 0, 0x30);
    s_add (&env, "\x02\x01\x00\x31\x00", 5);           /* version 0, no recipients */
    s_add (&env, eci.data, eci.len);
    s_der_wrap (&env, 0, 0x30);
    s_der_wrap (&env, 0, 0xA0);
    size_t from = ci->len;
    s_add (ci, enveloped_oid, sizeof enveloped_oid);
    s_add (ci, env.data, env.len);
    s_der_wrap (ci, from, 0x30);
    free (alg.data); free (eci.data); free (env.data);
}

/* Appends a uuencoded block ("begin 644 NAME" ... "end") of data. */
static void
s_uu_add (s_text_t *t, const char *name, const unsigned char *data, size_t len)
{
    char line [128];
    snprintf (line, sizeof line, "begin 644 %s\n", name);
    s_adds (t, line);
    for (size_t at = 0; at < len; at += 45) {
        size_t n = len - at < 45 ? len - at : 45, o = 0;
        line [o++] = (char) (0x20 + n);
        for (size_t g = 0; g < n; g += 3) {
            unsigned char b [3] = { 0, 0, 0 };
            memcpy (b, data + at + g, n - g < 3 ? n - g : 3);
            unsigned char q [4] = { (unsigned char) (b [0] >> 2),
                (unsigned char) ((b [0] & 3) << 4 | b [1] >> 4),
                (unsigned char) ((b [1] & 15) << 2 | b [2] >> 6), (unsigned char) (b [2] & 63) };
            for (int k = 0; k < 4; k++)
                line [o++] = q [k] ? (char) (0x20 + q [k]) : '`';
        }
        line [o++] = '\n';
        s_add (t, line, o);
    }
    s_adds (t, "`\nend\n");
}

/* Wraps t in a CMS SignedData holding it as content, DER, with no
   signers: enough for a parser that does not verify, and made here
   so a test can nest it as deep as it likes. */
static void
s_der_signed (s_text_t *t)
{
    static const unsigned char data_oid [] = { 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01 };
    static const unsigned char signed_oid [] = { 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02 };
    s_der_wrap (t, 0, 0x04);                    /* eContent OCTET STRING */
    s_der_wrap (t, 0, 0xA0);                    /* [0] EXPLICIT */
    s_text_t head = { 0 };
    s_add (&head, data_oid, sizeof data_oid);   /* encapContentInfo */
    s_add (&head, t->data, t->len);
    s_der_wrap (&head, 0, 0x30);
    s_text_t sd = { 0 };
    s_add (&sd, "\x02\x01\x01\x31\x00", 5);   /* version 1, no digest algorithms */
    s_add (&sd, head.data, head.len);
    s_add (&sd, "\x31\x00", 2);                 /* no signers */
    s_der_wrap (&sd, 0, 0x30);
    s_der_wrap (&sd, 0, 0xA0);
    t->len = 0;
    s_add (t, signed_oid, sizeof signed_oid);
    s_add (t, sd.data, sd.len);
    s_der_wrap (t, 0, 0x30);
    free (head.data);
    free (sd.data);
}

/* Appends data base64-encoded, in lines of 76. */
static void
s_p7m_base64 (s_text_t *t, const s_text_t *data)
{
    static const char alphabet [] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *d = (const unsigned char *) data->data;
    for (size_t i = 0; i < data->len; i += 3) {
        unsigned v = (unsigned) d [i] << 16;
        if (i + 1 < data->len) v |= (unsigned) d [i + 1] << 8;
        if (i + 2 < data->len) v |= d [i + 2];
        char quad [4] = { alphabet [v >> 18], alphabet [(v >> 12) & 63],
                          i + 1 < data->len ? alphabet [(v >> 6) & 63] : '=',
                          i + 2 < data->len ? alphabet [v & 63] : '=' };
        s_add (t, quad, 4);
        if (i % 57 == 54)
            s_adds (t, "\n");
    }
}

/* A message with der attached base64-encoded as "x.pdf" plus levels
   times ".p7m". */
static void
s_p7m_message (s_text_t *t, const s_text_t *der, int levels)
{
    s_adds (t, s_head);
    s_adds (t, "Content-Type: multipart/mixed; boundary=C\n\n--C\n\nchain\n--C\n"
               "Content-Type: application/octet-stream\n"
               "Content-Disposition: attachment; filename=\"x.pdf");
    for (int i = 0; i < levels; i++)
        s_adds (t, ".p7m");
    s_adds (t, "\"\nContent-Transfer-Encoding: base64\n\n");
    s_p7m_base64 (t, der);
    s_adds (t, "\n--C--\n");
}

/* Index of the attachment called name, or -1. */
static int
s_attachment (const cm_message_t *m, const char *name)
{
    for (size_t i = 0; m && i < m->nattachments; i++)
        if (strcmp (m->attachments [i].filename, name) == 0)
            return (int) i;
    return -1;
}

/* S/MIME opaque-signed mail: the signed content inside the CMS structure
   is the message's text and attachments; the .p7m stays as the
   signature. Limits count what is inside. */
/* Raw 8-bit header text (no RFC 2047) is read in the charsets the
   message's parts declare before windows-1252, one charset for a whole
   value: GBK, Shift_JIS and windows-1251 mail as Chinese, Japanese and
   Russian clients send it, and the guards that keep other text as it was. */
static void
s_declared_charsets (void)
{
    s_text_t t = { 0 };
    cm_message_t *m;
    /* GBK: "关于安全事件的报告" from "张三", a file "报告.docx" */
    s_adds (&t, "From: \xD5\xC5\xC8\xFD <zs@example.cn>\nTo: soc@example.org\n"
                "Subject: \xB9\xD8\xD3\xDA\xB0\xB2\xC8\xAB\xCA\xC2\xBC\xFE\xB5\xC4\xB1\xA8\xB8\xE6\n"
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
                "--XX\nContent-Type: text/plain; charset=gbk\nContent-Transfer-Encoding: 8bit\n\n"
                "\xD5\xFD\xCE\xC4\n--XX\nContent-Type: application/octet-stream;"
                " name=\"\xB1\xA8\xB8\xE6.docx\"\nContent-Disposition: attachment;"
                " filename=\"\xB1\xA8\xB8\xE6.docx\"\n\ndata\n--XX--\n");
    m = s_case ("raw GBK header text, the body declaring gbk", t.data, t.len, S_RECORD, NULL);
    s_result (m && strcmp (m->subject, "\xE5\x85\xB3\xE4\xBA\x8E\xE5\xAE\x89\xE5\x85\xA8"
                           "\xE4\xBA\x8B\xE4\xBB\xB6\xE7\x9A\x84\xE6\x8A\xA5\xE5\x91\x8A") == 0,
              "... the Subject is read as GBK (%s)", m ? m->subject : "rejected");
    s_result (m && strcmp (m->from_name, "\xE5\xBC\xA0\xE4\xB8\x89") == 0,
              "... the sender's name too (%s)", m ? m->from_name : "rejected");
    s_result (m && m->nattachments == 1
              && strcmp (m->attachments [0].filename, "\xE6\x8A\xA5\xE5\x91\x8A.docx") == 0,
              "... and the file name (%s)", m && m->nattachments ? m->attachments [0].filename : "none");
    s_case_done (&m, &t);

    /* A charset declared only inside an attached .eml (base64, so read
       after the outer Subject): the outer Latin-1 Subject took
       windows-1252, and the attached KOI8-R one must still get KOI8-R */
    s_adds (&t, "From: a@example.de\nSubject: f\xFCr Caf\xE9\nMIME-Version: 1.0\n"
                "Content-Type: multipart/mixed; boundary=XX\n\n--XX\n"
                "Content-Type: text/plain; charset=gbk\n\nx\n--XX\n"
                "Content-Type: application/octet-stream; name=fwd.eml\n"
                "Content-Disposition: attachment; filename=fwd.eml\n"
                "Content-Transfer-Encoding: base64\n\n");
    /* From: b@example.ru, Subject: "Привет мир" in KOI8-R, text/plain; charset=koi8-r */
    s_adds (&t, "RnJvbTogYkBleGFtcGxlLnJ1ClN1YmplY3Q6IPDSydfF1CDNydIKTUlNRS1WZXJzaW9uOiAx\n"
                "LjAKQ29udGVudC1UeXBlOiB0ZXh0L3BsYWluOyBjaGFyc2V0PWtvaTgtcgoK9MXL09QK\n--XX--\n");
    m = s_case ("raw 8-bit Subjects outside and inside an attached .eml", t.data, t.len,
                S_RECORD, NULL);
    s_result (m && strcmp (m->subject, "f\xC3\xBCr Caf\xC3\xA9") == 0 && m->nnested == 1
              && strcmp (m->nested [0]->subject, "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2"
                         "\xD0\xB5\xD1\x82 \xD0\xBC\xD0\xB8\xD1\x80") == 0,
              "... windows-1252 outside, KOI8-R inside (%s | %s)", m ? m->subject : "rejected",
              m && m->nnested ? m->nested [0]->subject : "none");
    s_case_done (&m, &t);

    /* Made-up charset names first take no place of the few kept */
    s_adds (&t, "From: a@example.cn\nSubject: \xB1\xA8\xB8\xE6\nMIME-Version: 1.0\n"
                "Content-Type: multipart/mixed; boundary=XX\n\n");
    for (int i = 0; i < 6; i++) {
        char part [128];
        snprintf (part, sizeof part, "--XX\nContent-Type: text/plain; charset=x-made-up-%d\n\nx\n", i);
        s_adds (&t, part);
    }
    s_adds (&t, "--XX\nContent-Type: text/plain; charset=gbk\n\nx\n--XX--\n");
    m = s_case ("six made-up charsets before gbk", t.data, t.len, S_RECORD, NULL);
    s_result (m && strcmp (m->subject, "\xE6\x8A\xA5\xE5\x91\x8A") == 0,
              "... the raw Subject is still read as GBK (%s)", m ? m->subject : "rejected");
    s_case_done (&m, &t);

    /* Subjects alone: the message, the Subject it must give, and how */
    static const struct { const char *name, *raw, *subject, *how; } subjects [] = {
        /* Shift_JIS "会議の件", the part's charset quoted and in capitals */
        { "raw Shift_JIS Subject", "From: a@example.jp\nSubject: \x89\xEF\x8B\x63\x82\xCC\x8C\x8F\n"
          "MIME-Version: 1.0\nContent-Type: text/plain; charset=\"SHIFT_JIS\"\n\n\x96\x7B\x95\xB6\n",
          "\xE4\xBC\x9A\xE8\xAD\xB0\xE3\x81\xAE\xE4\xBB\xB6", "read as Shift_JIS" },
        /* windows-1251 "Фишинг" declared by the second part only */
        { "raw windows-1251 Subject", "From: a@example.ru\nSubject: \xD4\xE8\xF8\xE8\xED\xE3\n"
          "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=Z\n\n"
          "--Z\nContent-Type: text/plain\n\nplain\n--Z\n"
          "Content-Type: text/html; charset=windows-1251\n\n<p>\xD2\xE5\xEA\xF1\xF2</p>\n--Z--\n",
          "\xD0\xA4\xD0\xB8\xD1\x88\xD0\xB8\xD0\xBD\xD0\xB3", "read as windows-1251" },
        /* Latin-1 in a message that declares gbk: "f\xFCr" fits GBK as a
           word, not the whole value */
        { "raw Latin-1 Subject, the body declaring gbk",
          "From: a@example.de\nSubject: R\xE9sum\xE9 f\xFCr Caf\xE9\n"
          "MIME-Version: 1.0\nContent-Type: text/plain; charset=gbk\n\nx\n",
          "R\xC3\xA9sum\xC3\xA9 f\xC3\xBCr Caf\xC3\xA9", "read as windows-1252 as a whole" },
        /* UTF-8 first */
        { "raw UTF-8 Subject, the body declaring gbk",
          "From: a@example.org\nSubject: R\xC3\xA9sum\xC3\xA9 \xE6\x8A\xA5\xE5\x91\x8A\n"
          "MIME-Version: 1.0\nContent-Type: text/plain; charset=gbk\n\nx\n",
          "R\xC3\xA9sum\xC3\xA9 \xE6\x8A\xA5\xE5\x91\x8A", "read as UTF-8" },
        /* a charset that does not keep ASCII as ASCII is never tried */
        { "raw Latin-1 Subject, the body declaring utf-16",
          "From: a@example.org\nSubject: Caf\xE9 cr\xE8me\n"
          "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-16\n\nx\n",
          "Caf\xC3\xA9 cr\xC3\xA8me", "read as windows-1252, not UTF-16" },
    };
    for (size_t i = 0; i < sizeof subjects / sizeof subjects [0]; i++) {
        s_adds (&t, subjects [i].raw);
        m = s_case (subjects [i].name, t.data, t.len, S_RECORD, NULL);
        s_result (m && strcmp (m->subject, subjects [i].subject) == 0, "... %s (%s)",
                  subjects [i].how, m ? m->subject : "rejected");
        s_case_done (&m, &t);
    }
}

/* Text labelled UTF-8 with bytes that are not UTF-8: the valid sequences
   kept, each stray byte read as windows-1252 (reading the whole text as
   windows-1252 had turned every other non-ASCII character into two). */
static void
s_utf8_strays (void)
{
    static const struct { const char *name, *body, *want, *how; } cases [] = {
        { "UTF-8 text with a Latin-1 footer",
          "Gr\xC3\xBC\xC3\x9F" "e aus K\xC3\xB6ln, \xE2\x82\xAC 5\n--\nAvis l\xE9gal: confidentiel.\n",
          "Gr\xC3\xBC\xC3\x9F" "e aus K\xC3\xB6ln, \xE2\x82\xAC 5\n--\nAvis l\xC3\xA9gal: confidentiel.",
          "the UTF-8 kept, the footer's byte as windows-1252" },
        { "UTF-8 CJK text with a stray byte",
          "\xE6\x8A\xA5\xE5\x91\x8A \x93ok\x94 \x81 end\n",
          "\xE6\x8A\xA5\xE5\x91\x8A \xE2\x80\x9Cok\xE2\x80\x9D \xEF\xBF\xBD end",
          "CJK kept, 0x93 0x94 as quotes, 0x81 (no character) as U+FFFD" },
        { "Latin-1 text labelled UTF-8",
          "Caf\xE9 cr\xE8me br\xFBl\xE9" "e\n", "Caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e",
          "every byte as windows-1252, as before" },
        { "a UTF-8 sequence cut short at the end",
          "fin \xE2\x82", "fin \xC3\xA2\xE2\x80\x9A", "its bytes as windows-1252" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        s_text_t t = { 0 };
        s_adds (&t, "From: a@example.org\nSubject: strays\nMIME-Version: 1.0\n"
                    "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n");
        s_adds (&t, cases [i].body);
        cm_message_t *m = s_case (cases [i].name, t.data, t.len, S_RECORD, NULL);
        bool ok = m && strstr (m->text, cases [i].want);
        s_result (ok, "... %s", cases [i].how);
        if (!ok)
            printf ("# text: [%s]\n", m ? m->text : "rejected");
        s_case_done (&m, &t);
    }
}

static void
s_smime (void)
{
    char reason [256] = "", why [128] = "";
    s_text_t t = { 0 };
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: application/x-pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\n"
                "Content-Disposition: attachment; filename=\"smime.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_der);
    cm_message_t *m = s_parse_with (t.data, NULL, reason, sizeof reason);
    int ioc = s_attachment (m, "ioc.txt"), p7m = s_attachment (m, "smime.p7m");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_ && !m->encrypted
              && strcmp (m->text, "Signed report: click https://evil.example/x \xC3\xBC") == 0
              && m->nattachments == 2 && ioc == 0 && p7m == 1
              && m->attachments [ioc].size == 12
              && memcmp (m->attachments [ioc].data, "evil.example", 12) == 0
              && strcmp (m->attachments [p7m].content_type, "application/x-pkcs7-mime") == 0
              && m->attachments [p7m].note,
              "S/MIME opaque-signed (DER): signed text is the body, its attachment read, "
              "smime.p7m kept (%s)", m ? m->text : reason);
    cm_message_destroy (&m);

    /* the content counts against the limits: depth and parts */
    cm_limits_t lim;
    cm_limits_default (&lim);
    lim.max_depth = 2;
    m = s_parse_with (t.data, &lim, reason, sizeof reason);
    s_result (!m && strcmp (reason, "MIME nesting deeper than 2 levels") == 0,
              "S/MIME opaque-signed: the signed entity's depth counts (%s)",
              m ? "accepted" : reason);
    cm_message_destroy (&m);
    cm_limits_default (&lim);
    lim.max_parts = 3;
    m = s_parse_with (t.data, &lim, reason, sizeof reason);
    s_result (!m && strcmp (reason, "more than 3 MIME parts") == 0,
              "S/MIME opaque-signed: the signed entity's parts count (%s)",
              m ? "accepted" : reason);
    s_case_done (&m, &t);

    /* header fields count in every part and attached message */
    s_adds (&t, s_head);    /* 5 fields */
    s_adds (&t, "Content-Type: multipart/mixed; boundary=H\n\n--H\n");
    for (int i = 0; i < 40; i++)
        s_addf (&t, "X-P%d: v\n", i);
    s_adds (&t, "\npart\n--H\nContent-Type: application/octet-stream; name=\"fw.eml\"\n"
                "Content-Transfer-Encoding: base64\n\n"
                "RnJvbTogYkBjLmV4YW1wbGUKU3ViamVjdDogaW5uZXIKWC1JMDogdgpYLUkxOiB2ClgtSTI6IHYK\n"
                "WC1JMzogdgpYLUk0OiB2ClgtSTU6IHYKWC1JNjogdgpYLUk3OiB2ClgtSTg6IHYKWC1JOTogdgpY\n"
                "LUkxMDogdgpYLUkxMTogdgpYLUkxMjogdgpYLUkxMzogdgpYLUkxNDogdgpYLUkxNTogdgpYLUkx\n"
                "NjogdgpYLUkxNzogdgpYLUkxODogdgpYLUkxOTogdgpYLUkyMDogdgpYLUkyMTogdgpYLUkyMjog\n"
                "dgpYLUkyMzogdgpYLUkyNDogdgpYLUkyNTogdgpYLUkyNjogdgpYLUkyNzogdgpYLUkyODogdgpY\n"
                "LUkyOTogdgpYLUkzMDogdgpYLUkzMTogdgpYLUkzMjogdgpYLUkzMzogdgpYLUkzNDogdgpYLUkz\n"
                "NTogdgpYLUkzNjogdgpYLUkzNzogdgpYLUkzODogdgpYLUkzOTogdgoKaW5uZXIgYm9keQo=\n"
                "--H--\n");
    cm_limits_default (&lim);
    lim.max_header_fields = 90;
    m = s_parse_with (t.data, &lim, reason, sizeof reason);
    s_result (m && m->nnested == 1, "48 header fields and an attached message's 42 within 90 (%s)",
              m ? "accepted" : reason);
    cm_message_destroy (&m);
    lim.max_header_fields = 89;
    m = s_parse_with (t.data, &lim, reason, sizeof reason);
    s_result (!m && strcmp (reason, "more than 89 header fields") == 0,
              "an attached message's header fields count with the rest (%s)",
              m ? "accepted" : reason);
    s_case_done (&m, &t);

    /* a .p7m sent as octet-stream without smime-type, BER-encoded, next to
       a gateway's disclaimer: signed, not taken for encrypted */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=G\n\n--G\n"
                "Content-Type: application/octet-stream; name=\"smime.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_ber);
    s_adds (&t, "--G\nContent-Type: text/plain\n\nScanned by the gateway.\n--G--\n");
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    ioc = s_attachment (m, "ioc.txt");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_ && !m->encrypted
              && strcmp (m->text, "Signed report: click https://evil.example/x \xC3\xBC"
                                  "\nScanned by the gateway.") == 0
              && m->nattachments == 2 && ioc == 0
              && strcmp (m->attachments [1].filename, "smime.p7m") == 0,
              "S/MIME signed .p7m as octet-stream, BER, no smime-type: read, not rejected (%s)",
              m ? m->text : reason);
    s_case_done (&m, &t);

    /* signed data that holds no MIME entity (a signed PDF, Italian "firma
       digitale"): the PDF is an attachment of its own, the .p7m is kept */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=P\n\n--P\n\nSee the contract.\n--P\n"
                "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"contract.pdf.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_pdf);
    s_adds (&t, "--P--\n");
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    int pdf = s_attachment (m, "contract.pdf");
    p7m = s_attachment (m, "contract.pdf.p7m");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_ && !m->encrypted
              && strcmp (m->text, "See the contract.") == 0
              && m->nattachments == 2 && pdf == 0 && p7m == 1
              && strcmp (m->attachments [pdf].content_type, "application/pdf") == 0
              && m->attachments [pdf].size == 57
              && memcmp (m->attachments [pdf].data, "%PDF-1.4\n", 9) == 0
              && strcmp (m->attachments [pdf].sha256, S_SIGNED_PDF_SHA256) == 0
              && !m->attachments [pdf].note && m->attachments [pdf].nested_index == -1
              && strcmp (m->attachments [p7m].content_type, "application/pkcs7-mime") == 0
              && m->attachments [p7m].note && strstr (m->attachments [p7m].note, "is read"),
              "S/MIME signed data holding a PDF: contract.pdf extracted (application/pdf), "
              "the .p7m kept (%s)", m ? m->text : reason);
    s_case_done (&m, &t);

    /* the same signed PDF named smime.p7m: the file is named by its
       bytes (smime.pdf), not left without an extension */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=P\n\n--P\n\nSee the contract.\n--P\n"
                "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_pdf);
    s_adds (&t, "--P--\n");
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    pdf = s_attachment (m, "smime.pdf");
    s_result (m && pdf >= 0 && strcmp (m->attachments [pdf].content_type, "application/pdf") == 0
              && strcmp (m->attachments [pdf].sha256, S_SIGNED_PDF_SHA256) == 0
              && s_attachment (m, "smime.p7m") >= 0,
              "S/MIME smime.p7m holding a PDF: smime.pdf, typed application/pdf (%s)",
              m ? (m->nattachments ? m->attachments [0].filename : m->text) : reason);
    s_case_done (&m, &t);

    /* signed twice (contract.pdf.p7m.p7m): unwrapped to the PDF, each
       level kept, within the depth limit */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=N\n\n--N\n\nSigned twice.\n--N\n"
                "Content-Type: application/octet-stream\n"
                "Content-Disposition: attachment; filename=\"Contract.PDF.p7m.P7M\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_pdf2);
    s_adds (&t, "--N--\n");
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    pdf = s_attachment (m, "Contract.PDF");
    int mid = s_attachment (m, "Contract.PDF.p7m");
    p7m = s_attachment (m, "Contract.PDF.p7m.P7M");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_ && !m->encrypted
              && m->nattachments == 3 && mid == 0 && pdf == 1 && p7m == 2
              && strcmp (m->attachments [pdf].content_type, "application/pdf") == 0
              && strcmp (m->attachments [pdf].sha256, S_SIGNED_PDF_SHA256) == 0
              && strcmp (m->attachments [mid].content_type, "application/pkcs7-mime") == 0
              && m->attachments [mid].size == 497 && m->attachments [mid].note
              && m->attachments [p7m].note,
              "S/MIME signed twice (x.pdf.p7m.p7m): unwrapped to the PDF, the inner .p7m "
              "kept (%s)", m ? m->text : reason);
    cm_message_destroy (&m);
    cm_limits_default (&lim);
    lim.max_depth = 3;
    m = s_parse_with (t.data, &lim, reason, sizeof reason);
    s_result (!m && strcmp (reason, "MIME nesting deeper than 3 levels") == 0,
              "S/MIME signed twice: each level counts against the depth limit (%s)",
              m ? "accepted" : reason);
    cm_message_destroy (&m);
    lim.max_depth = 4;
    m = s_parse_with (t.data, &lim, reason, sizeof reason);
    s_result (m && m->nattachments == 3,
              "S/MIME signed twice: read at the depth it needs (%s)", m ? "read" : reason);
    s_case_done (&m, &t);

    /* encrypted, then signed: SignedData around an EnvelopedData (made
       here: no recipients, 16 bytes of "ciphertext") is encrypted mail,
       rejected as such, not an attachment of unreadable bytes */
    {
        s_text_t ci = { 0 };
        s_der_enveloped (&ci);
        s_der_signed (&ci);
        s_adds (&t, s_head);
        s_adds (&t, "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\n"
                    "Content-Transfer-Encoding: base64\n\n");
        s_p7m_base64 (&t, &ci);
        s_adds (&t, "\n");
        m = s_parse_with (t.data, NULL, reason, sizeof reason);
        s_result (!m && strstr (reason, "ncrypted"),
                  "S/MIME encrypted, then signed: rejected as encrypted (%s)",
                  m ? (m->nattachments ? m->attachments [0].filename : "accepted") : reason);
        cm_message_destroy (&m);
        free (t.data);
        memset (&t, 0, sizeof t);
        free (ci.data);
    }

    /* a .p7m uuencoded in a text body: enveloped data makes the message
       encrypted, as the same file attached would; bytes that are no CMS
       (a file in prose named .p7m) are kept, with a note, and the
       message stays readable */
    {
        s_text_t ci = { 0 };
        s_der_enveloped (&ci);
        s_adds (&t, s_head);
        s_adds (&t, "\nthe file:\n");
        s_uu_add (&t, "secret.p7m", (const unsigned char *) ci.data, ci.len);
        m = s_parse_with (t.data, NULL, reason, sizeof reason);
        s_result (!m && strcmp (reason, "encrypted email is not supported") == 0,
                  "a uuencoded .p7m of enveloped data: rejected as encrypted (%s)",
                  m ? "accepted" : reason);
        cm_message_destroy (&m);
        free (t.data);
        memset (&t, 0, sizeof t);
        s_adds (&t, s_head);
        s_adds (&t, "\nthe file:\n");
        s_uu_add (&t, "notes.p7m", (const unsigned char *) "not cms at all\n", 15);
        m = s_parse_with (t.data, NULL, reason, sizeof reason);
        s_result (m && !m->encrypted && m->nattachments == 1 && m->attachments [0].size == 15
                  && m->attachments [0].note && strstr (m->attachments [0].note, "neither signed nor"),
                  "a uuencoded .p7m that is no CMS: kept with a note, the message read (%s)",
                  m ? (m->nattachments && m->attachments [0].note ? m->attachments [0].note : "no note")
                    : reason);
        s_case_done (&m, &t);
        free (ci.data);
    }

    /* deeper chains (unsigned SignedData made here): every level is a
       part one deeper and its bytes count against the budget */
    s_text_t chain = { 0 };
    s_add (&chain, "%PDF-1.4\n", 9);
    for (int i = 0; i < 33; i++)
        s_der_signed (&chain);
    s_p7m_message (&t, &chain, 33);
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    s_result (!m && strcmp (reason, "MIME nesting deeper than 32 levels") == 0,
              "S/MIME signed 33 times: over the default depth limit (%s)", m ? "accepted" : reason);
    s_case_done (&m, &t);
    free (chain.data);
    memset (&chain, 0, sizeof chain);
    for (int levels = 4; levels <= 8; levels += 4) {
        static const char pdf_head [] = "%PDF-1.4\n";
        for (int i = 0; i < 64 * 1024; i++)
            s_add (&chain, &pdf_head [i % 9], 1);
        for (int i = 0; i < levels; i++)
            s_der_signed (&chain);
        s_p7m_message (&t, &chain, levels);
        cm_limits_default (&lim);
        lim.max_size = 100000;  /* 400,000 decoded bytes; 64 KiB per level */
        m = s_parse_len_with (t.data, t.len, &lim, reason, sizeof reason);
        if (levels == 4)
            s_result (m && m->nattachments == 5 && s_attachment (m, "x.pdf") == 3,
                      "S/MIME signed 4 times, 64 KiB: 5 copies within the decoded-bytes budget (%s)",
                      m ? "read" : reason);
        else
            s_result (!m && strcmp (reason, "attachments decode to more than 400000 bytes") == 0,
                      "S/MIME signed 8 times, 64 KiB: 9 copies over the decoded-bytes budget (%s)",
                      m ? "accepted" : reason);
        cm_message_destroy (&m);
        free (t.data);
        memset (&t, 0, sizeof t);
        free (chain.data);
        memset (&chain, 0, sizeof chain);
    }

    /* a signed text file that opens like a header field: its name says
       it is a file, so it is not read as the body */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=T\n\n--T\n\nFigures attached.\n--T\n"
                "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"figures.txt.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_txt);
    s_adds (&t, "--T--\n");
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    int txt = s_attachment (m, "figures.txt");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_
              && strcmp (m->text, "Figures attached.") == 0
              && m->nattachments == 2 && txt == 0
              && strcmp (m->attachments [txt].content_type, "text/plain") == 0
              && m->attachments [txt].size == 43
              && memcmp (m->attachments [txt].data, "Subject: quarterly figures\r\n\r\nRevenue up.\r\n", 43) == 0,
              "S/MIME signed text file (figures.txt.p7m) opening like a header: extracted, "
              "not read as MIME (%s)", m ? m->text : reason);
    s_case_done (&m, &t);

    /* an enveloped .p7m named like a signed file is still encrypted mail */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=V\n\n--V\n\nSee the contract.\n--V\n"
                "Content-Type: application/octet-stream; name=\"contract.pdf.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_env);
    s_adds (&t, "--V--\n");
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    s_result (!m && strcmp (reason, "encrypted email is not supported") == 0,
              "S/MIME enveloped contract.pdf.p7m still rejected (%s)", m ? "accepted" : reason);
    s_case_done (&m, &t);

    /* raw DER sent with Content-Transfer-Encoding: binary (its bytes hold
       bare CRs and NULs) is read like base64: signed, the signed entity
       read, the .p7m kept byte for byte */
    s_text_t der = { 0 };
    s_add_unbase64 (&der, s_smime_der);
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
                "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\r\n"
                "Content-Transfer-Encoding: binary\r\n\r\n");
    s_add (&t, der.data, der.len);
    s_adds (&t, "\r\n--B--\r\n");
    m = s_parse_len (t.data, t.len, reason, sizeof reason);
    p7m = s_attachment (m, "smime.p7m");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_ && !m->encrypted
              && strcmp (m->text, "Signed report: click https://evil.example/x \xC3\xBC") == 0
              && s_attachment (m, "ioc.txt") == 0 && p7m == 1
              && m->attachments [p7m].size == der.len
              && memcmp (m->attachments [p7m].data, der.data, der.len) == 0,
              "S/MIME signed .p7m as raw DER (Content-Transfer-Encoding: binary): read, "
              "kept byte for byte (%s)", m ? m->text : reason);
    s_case_done (&m, &t);
    free (der.data);
    memset (&der, 0, sizeof der);

    /* the same for 8bit, LF line ends, a signed PDF */
    s_add_unbase64 (&der, s_smime_pdf);
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=E\n\n--E\n\nSee the contract.\n--E\n"
                "Content-Type: application/octet-stream; name=\"contract.pdf.p7m\"\n"
                "Content-Transfer-Encoding: 8bit\n\n");
    s_add (&t, der.data, der.len);
    s_adds (&t, "\n--E--\n");
    m = s_parse_len (t.data, t.len, reason, sizeof reason);
    p7m = s_attachment (m, "contract.pdf.p7m");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_ && !m->encrypted
              && p7m >= 0 && m->attachments [p7m].size == der.len
              && memcmp (m->attachments [p7m].data, der.data, der.len) == 0,
              "S/MIME signed .p7m as raw DER (8bit, no smime-type): signed, not taken for "
              "encrypted (%s)", m ? m->text : reason);
    s_case_done (&m, &t);
    free (der.data);
    memset (&der, 0, sizeof der);

    /* a .p7m file that is text: PEM, sent as 7bit; bare base64 (the
       file's bytes are base64, and base64 again for the mail) */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: multipart/mixed; boundary=X\n\n--X\n\nSee the contract.\n--X\n"
                "Content-Type: application/octet-stream; name=\"contract.pdf.p7m\"\n\n"
                "-----BEGIN PKCS7-----\n");
    s_adds (&t, s_smime_pdf);
    s_adds (&t, "-----END PKCS7-----\n--X\n"
                "Content-Type: application/octet-stream; name=\"again.pdf.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_text_t b64 = { 0 }, again = { 0 };
    s_adds (&b64, s_smime_pdf);
    s_p7m_base64 (&again, &b64);
    s_adds (&t, again.data);
    s_adds (&t, "\n--X--\n");
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    pdf = s_attachment (m, "contract.pdf");
    int pdf2 = s_attachment (m, "again.pdf");
    s_result (m && s_record_ok (m, 0, why, sizeof why) && m->signed_ && !m->encrypted
              && m->nattachments == 4 && pdf >= 0 && pdf2 >= 0
              && strcmp (m->attachments [pdf].sha256, S_SIGNED_PDF_SHA256) == 0
              && strcmp (m->attachments [pdf2].sha256, S_SIGNED_PDF_SHA256) == 0
              && s_attachment (m, "contract.pdf.p7m") >= 0 && s_attachment (m, "again.pdf.p7m") >= 0,
              "S/MIME signed .p7m saved as PEM or bare base64: read, not rejected as encrypted (%s)",
              m ? m->text : reason);
    s_case_done (&m, &t);
    free (b64.data);
    free (again.data);

    /* enveloped data without smime-type is still encrypted mail */
    s_adds (&t, s_head);
    s_adds (&t, "Content-Type: application/pkcs7-mime; name=\"smime.p7m\"\n"
                "Content-Transfer-Encoding: base64\n\n");
    s_adds (&t, s_smime_env);
    m = s_parse_with (t.data, NULL, reason, sizeof reason);
    s_result (!m && strcmp (reason, "encrypted email is not supported") == 0,
              "S/MIME enveloped data without smime-type rejected (%s)", m ? "accepted" : reason);
    s_case_done (&m, &t);
}

/* --------------------------------------------------------- TNEF */

/* "\r" and "\n" as the .expect files write them, undone in place. */
static void
s_unescape (char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p [0] == '\\' && (p [1] == 'r' || p [1] == 'n')) {
            *o++ = p [1] == 'r' ? '\r' : '\n';
            p++;
        }
        else
            *o++ = *p;
    }
    *o = 0;
}

static char *s_read_file (const char *path, size_t *len);

/* The n strings of list joined by ",", "" for none; NULL out of
   memory. */
static char *
s_joined (char *const *list, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen (list [i]) + 1;
    char *out = malloc (len);
    if (!out)
        return NULL;
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat (out, ",");
        strcat (out, list [i]);
    }
    return out;
}

/* The streams tests/tools/mktnef.py writes (tests/unit/tnef), each sent
   as a message's winmail.dat: the files under it, the winmail.dat's
   note and the text, and what an attached Outlook message's were read
   as (its headers, its files), must be what NAME.expect says. */
static void
s_tnef (const char *dir)
{
    static const char *names [] = { "outlook", "checksum", "truncated", "nodata", "mapibody", "png",
                                    "rtfbody", "rtfhtml", "rtfstored", "rtfboth", "rtfcrc",
                                    "rtfdamaged", "embedded", "rtfwrap", "recipients",
                                    "displayto" };
    for (size_t n = 0; n < sizeof names / sizeof names [0]; n++) {
        char path [4096];
        size_t len = 0, elen = 0;
        snprintf (path, sizeof path, "%s/%s.tnef", dir, names [n]);
        char *stream = s_read_file (path, &len);
        snprintf (path, sizeof path, "%s/%s.expect", dir, names [n]);
        char *expect = s_read_file (path, &elen);
        if (!stream || !expect) {
            s_result (false, "tnef %s: %s.tnef and .expect found in %s", names [n], names [n], dir);
            free (stream);
            free (expect);
            continue;
        }
        s_text_t data = { stream, len, len }, t = { 0 };
        s_adds (&t, s_head);
        s_adds (&t, "Content-Type: multipart/mixed; boundary=T\n\n--T\n"
                    "Content-Type: application/ms-tnef; name=\"winmail.dat\"\n"
                    "Content-Disposition: attachment; filename=\"winmail.dat\"\n"
                    "Content-Transfer-Encoding: base64\n\n");
        s_p7m_base64 (&t, &data);
        s_adds (&t, "\n--T--\n");
        char reason [256] = "", why [128] = "";
        cm_message_t *m = s_parse_len (t.data, t.len, reason, sizeof reason);
        bool ok = m && m->nattachments >= 1 && s_record_ok (m, 0, why, sizeof why)
               && strcmp (m->attachments [0].filename, "winmail.dat") == 0
               && m->attachments [0].size == len;
        size_t k = 1, nk = 0;
        const cm_message_t *nm = NULL;     /* the message of the last "nested" line */
        char *save = NULL;
        for (char *line = strtok_r (expect, "\n", &save); ok && line; line = strtok_r (NULL, "\n", &save)) {
            s_unescape (line);
            char *f [7] = { 0 };
            int nf = 0;
            for (char *q = line; nf < 7 && q; nf++) {
                f [nf] = q;
                q = strchr (q, '\t');
                if (q)
                    *q++ = 0;
            }
            if (strcmp (f [0], "note") == 0 && nf == 2) {
                ok = m->attachments [0].note && strcmp (m->attachments [0].note, f [1]) == 0;
                if (!ok)
                    snprintf (why, sizeof why, "note [%.80s]", m->attachments [0].note ? m->attachments [0].note : "");
            }
            else
            if (strcmp (f [0], "text") == 0 && nf == 2) {
                ok = strcmp (m->text, f [1]) == 0;
                if (!ok)
                    snprintf (why, sizeof why, "text [%.80s]", m->text);
            }
            else
            if (strcmp (f [0], "nested") == 0 && nf == 6) {
                /* the attached Outlook message read from the last file */
                const cm_attachment_t *a = k >= 2 && k - 1 < m->nattachments ? &m->attachments [k - 1] : NULL;
                nm = a && a->nested_index >= 0 && (size_t) a->nested_index < m->nnested
                   ? m->nested [a->nested_index] : NULL;
                nk = 0;
                ok = nm && strcmp (nm->subject, f [1]) == 0 && strcmp (nm->from_name, f [2]) == 0
                  && strcmp (nm->from_addr, f [3]) == 0 && nm->nattachments == strtoull (f [4], NULL, 10)
                  && strcmp (nm->text, f [5]) == 0;
                if (!ok)
                    snprintf (why, sizeof why, "nested: [%.30s] [%.20s] [%.20s] %zu [%.30s]",
                              nm ? nm->subject : "(none)", nm ? nm->from_name : "",
                              nm ? nm->from_addr : "", nm ? nm->nattachments : 0, nm ? nm->text : "");
            }
            else
            if (strcmp (f [0], "nhead") == 0 && nf == 7) {
                /* that message's recipients and date */
                char *to = nm ? s_joined (nm->to_addrs, nm->nto) : NULL;
                char *cc = nm ? s_joined (nm->cc_addrs, nm->ncc) : NULL;
                ok = nm && to && cc && strcmp (nm->to, f [1]) == 0 && strcmp (to, f [2]) == 0
                  && strcmp (nm->cc, f [3]) == 0 && strcmp (cc, f [4]) == 0
                  && strcmp (nm->date_text, f [5]) == 0 && nm->date_epoch == strtoll (f [6], NULL, 10);
                if (!ok)
                    snprintf (why, sizeof why, "nested head: to [%.40s] (%.20s) cc [%.40s] (%.20s) [%.32s] %lld",
                              nm ? nm->to : "(none)", to ? to : "", nm ? nm->cc : "", cc ? cc : "",
                              nm ? nm->date_text : "", nm ? nm->date_epoch : 0);
                free (to);
                free (cc);
            }
            else
            if (strcmp (f [0], "nfile") == 0 && nf == 6) {
                const cm_attachment_t *a = nm && nk < nm->nattachments ? &nm->attachments [nk] : NULL;
                ok = a && a->parent_index == -1 && strcmp (a->filename, f [1]) == 0
                  && strcmp (a->content_type, f [2]) == 0 && a->size == strtoull (f [3], NULL, 10)
                  && strcmp (a->sha256, f [4]) == 0
                  && (strcmp (f [5], "-") == 0 ? !a->note : a->note && strcmp (a->note, f [5]) == 0);
                if (!ok)
                    snprintf (why, sizeof why, "nested file %zu: %.40s %.30s %zu %.40s", nk,
                              a ? a->filename : "(none)", a ? a->content_type : "", a ? a->size : 0,
                              a && a->note ? a->note : "-");
                nk++;
            }
            else
            if (strcmp (f [0], "file") == 0 && nf == 6) {
                const cm_attachment_t *a = k < m->nattachments ? &m->attachments [k] : NULL;
                ok = a && a->parent_index == 0 && strcmp (a->filename, f [1]) == 0
                  && strcmp (a->content_type, f [2]) == 0 && a->size == strtoull (f [3], NULL, 10)
                  && strcmp (a->sha256, f [4]) == 0
                  && (strcmp (f [5], "-") == 0 ? !a->note : a->note && strcmp (a->note, f [5]) == 0);
                if (!ok)
                    snprintf (why, sizeof why, "file %zu: %.40s %.30s %zu", k, a ? a->filename : "(none)",
                              a ? a->content_type : "", a ? a->size : 0);
                k++;
            }
            else {
                ok = false;
                snprintf (why, sizeof why, "bad .expect line");
            }
        }
        if (ok && k != (m ? m->nattachments : 0)) {
            ok = false;
            snprintf (why, sizeof why, "%zu attachments, %zu expected", m->nattachments, k);
        }
        s_result (ok, "tnef %s: files under winmail.dat as mktnef.py wrote them%s%s%s",
                  names [n], m ? "" : " (rejected: ", m ? "" : reason, m ? "" : ")");
        if (!ok && *why)
            printf ("#   %s\n", why);
        cm_message_destroy (&m);
        free (t.data);
        free (stream);
        free (expect);
    }
}

/* The message at PATH ("." the message, "0" its first attached message,
   "0.1" that one's second ...) of m, or NULL. */
static const cm_message_t *
s_at_path (const cm_message_t *m, const char *path)
{
    if (strcmp (path, ".") == 0)
        return m;
    for (const char *p = path; m && *p; ) {
        char *end;
        unsigned long i = strtoul (p, &end, 10);
        if (end == p || i >= m->nnested)
            return NULL;
        m = m->nested [i];
        p = *end == '.' ? end + 1 : end;
    }
    return m;
}

/* The messages tests/tools/mkuu.py writes (tests/unit/uu): files
   uuencoded in a text body read as the same files attached in MIME
   would be (an .eml as an attached message, a .p7m's signed file taken
   out, a winmail.dat's files, an .msg marked), as NAME.expect says. */
static void
s_uu_files (const char *dir)
{
    static const char *names [] = { "eml", "p7m", "entity", "legacy", "chain15", "chain16" };
    for (size_t n = 0; n < sizeof names / sizeof names [0]; n++) {
        char path [4096];
        size_t len = 0, elen = 0;
        snprintf (path, sizeof path, "%s/%s.eml", dir, names [n]);
        char *raw = s_read_file (path, &len);
        snprintf (path, sizeof path, "%s/%s.expect", dir, names [n]);
        char *expect = s_read_file (path, &elen);
        if (!raw || !expect) {
            s_result (false, "uuencoded %s: %s.eml and .expect found in %s", names [n], names [n], dir);
            free (raw);
            free (expect);
            continue;
        }
        char reason [256] = "", why [256] = "";
        cm_message_t *m = s_parse_len (raw, len, reason, sizeof reason);
        bool ok = true;
        char *save = NULL;
        for (char *line = strtok_r (expect, "\n", &save); ok && line; line = strtok_r (NULL, "\n", &save)) {
            s_unescape (line);
            char *f [10] = { 0 };
            int nf = 0;
            for (char *q = line; nf < 10 && q; nf++) {
                f [nf] = q;
                q = strchr (q, '\t');
                if (q)
                    *q++ = 0;
            }
            if (strcmp (f [0], "reason") == 0 && nf == 2) {
                ok = !m && strcmp (reason, f [1]) == 0;
                snprintf (why, sizeof why, "%s", m ? "accepted" : reason);
                continue;
            }
            if (!m) {
                ok = false;
                snprintf (why, sizeof why, "rejected: %s", reason);
                break;
            }
            if (strcmp (f [0], "levels") == 0 && nf == 2) {
                int levels = 0;
                for (const cm_message_t *p = m; p->nnested; p = p->nested [0])
                    levels++;
                ok = levels == atoi (f [1]);
                snprintf (why, sizeof why, "%d levels", levels);
                continue;
            }
            const cm_message_t *at = nf >= 3 ? s_at_path (m, f [0]) : NULL;
            if (!at) {
                ok = false;
                snprintf (why, sizeof why, "no message at %s", f [0]);
            }
            else
            if (strcmp (f [1], "subject") == 0 || strcmp (f [1], "from") == 0
            ||  strcmp (f [1], "text") == 0) {
                const char *v = f [1][0] == 's' ? at->subject : f [1][0] == 'f' ? at->from_addr : at->text;
                ok = nf == 3 && strcmp (v, f [2]) == 0;
                snprintf (why, sizeof why, "%s %s [%.120s]", f [0], f [1], v);
            }
            else
            if (strcmp (f [1], "signed") == 0 && nf == 3) {
                ok = at->signed_ == (atoi (f [2]) == 1);
                snprintf (why, sizeof why, "%s signed %d", f [0], at->signed_);
            }
            else
            if (strcmp (f [1], "count") == 0 && nf == 4) {
                ok = at->nattachments == strtoull (f [2], NULL, 10)
                  && at->nnested == strtoull (f [3], NULL, 10);
                snprintf (why, sizeof why, "%s: %zu attachments, %zu attached messages",
                          f [0], at->nattachments, at->nnested);
            }
            else
            if (strcmp (f [1], "file") == 0 && nf == 10) {
                size_t i = strtoull (f [2], NULL, 10);
                const cm_attachment_t *a = i < at->nattachments ? &at->attachments [i] : NULL;
                ok = a && strcmp (a->filename, f [3]) == 0 && strcmp (a->content_type, f [4]) == 0
                  && a->size == strtoull (f [5], NULL, 10) && strcmp (a->sha256, f [6]) == 0
                  && a->nested_index == atoi (f [7]) && a->parent_index == atoi (f [8])
                  && (strcmp (f [9], "-") == 0 ? !a->note : a->note && strcmp (a->note, f [9]) == 0);
                snprintf (why, sizeof why, "%s file %zu: %.40s %.30s %zu nested %d parent %d note [%.80s]",
                          f [0], i, a ? a->filename : "(none)", a ? a->content_type : "",
                          a ? a->size : 0, a ? a->nested_index : 0, a ? a->parent_index : 0,
                          a && a->note ? a->note : "-");
            }
            else {
                ok = false;
                snprintf (why, sizeof why, "bad .expect line");
            }
        }
        if (m && ok && !s_record_ok (m, 0, why, sizeof why))
            ok = false;
        s_result (ok, "uuencoded %s: read as the same file attached in MIME, as mkuu.py expects",
                  names [n]);
        if (!ok && *why)
            printf ("#   %s\n", why);
        cm_message_destroy (&m);
        free (raw);
        free (expect);
    }
}

/* --------------------------------------------------------- corpus */

static char *
s_read_file (const char *path, size_t *len)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    s_text_t t = { 0 };
    char buf [65536];
    size_t n;
    while ((n = fread (buf, 1, sizeof buf, f)) > 0)
        s_add (&t, buf, n);
    fclose (f);
    *len = t.len;
    return t.data ? t.data : calloc (1, 1);
}

static int
s_cmp (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Known facts, checked by reading the raw files. */
typedef struct {
    const char *file;
    const char *subject;        /* NULL: not checked */
    const char *from_addr;
    int nattachments;           /* -1: not checked */
    const char *attachment;     /* a filename that must be present, or NULL */
    int nnested;                /* -1: not checked */
    const char *to_contains;    /* substring of the To list, or NULL */
    const char *note_contains;  /* substring of some attachment note, or NULL */
} s_fact_t;

static const s_fact_t s_facts [] = {
    /* folded Subject, 8-bit Latin-1 name in To */
    { "m0001.txt", "Die Hasen und die Fr\xC3\xB6sche (Microsoft Outlook 00)",
      "doug@example.com", 0, NULL, 0, "J\xC3\xBCrgen Schm\xC3\xBCrgen <schmuergen@example.com>", NULL },
    /* RFC 2047 subject (Netscape) */
    { "m1001.txt", "Die Hasen und die Fr\xC3\xB6sche (Netscape Communicator 4.7)",
      "dwsauder@example.com", 0, NULL, 0, NULL, NULL },
    /* RFC 2047 inside a quoted filename parameter */
    { "m1015.txt", NULL, NULL, 1, "HasenundFr\xC3\xB6sche.txt", 0, NULL, NULL },
    { "m0024.txt", "Persil, abeilles ...", "blablafakeemail@provider.fr", 1,
      "Biodiversite de semaine en semaine.doc", 0, NULL, NULL },
    { "github-115.txt", "Test message from Microsoft Outlook 00", "doug@example.com", 3,
      "redball.png", 0, NULL, NULL },
    { "m3001.txt", "Test message from PINE", "doug@penguin.example.com", 2, "blueball.png", 0, NULL, NULL },
    /* a winmail.dat that is really a PNG: kept, with a note saying why */
    { "m4006.txt", "Read: invitation", "sender@email.test", 1, "winmail.dat", 0, NULL,
      "TNEF (winmail.dat) kept as is: not TNEF: bad signature" },
    /* message/rfc822 body holding a multipart/digest */
    { "m4007.txt", "Test multipart-digest", "sender@email.test", 1, "submsg.eml", 1, NULL, NULL },
    /* 8-bit Latin-1 filename, binhex parts kept */
    { "m2011.txt", NULL, NULL, 2, "HasenundFr\xC3\xB6sche.txt", 0, NULL, NULL },
    { "m4009.txt", "Attachment", "meint@example.com", 1, "test10Mb.db", 0, NULL, NULL },
    /* Outlook 2000 plain text with three files uuencoded in the body */
    { "m0018.txt", "Test message from Microsoft Outlook 00", "doug@example.com", 3,
      "greenball.png", 0, NULL, NULL },
    { NULL, NULL, NULL, 0, NULL, 0, NULL, NULL }
};

static void
s_corpus (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d) {
        printf ("# corpus skipped: cannot open %s\n", dir);
        return;
    }
    char **names = NULL;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir (d))) {
        size_t n = strlen (e->d_name);
        if (n > 4 && strcmp (e->d_name + n - 4, ".txt") == 0) {
            names = realloc (names, (count + 1) * sizeof *names);
            names [count++] = strdup (e->d_name);
        }
    }
    closedir (d);
    qsort (names, count, sizeof *names, s_cmp);
    int parsed = 0, rejected = 0;
    for (size_t i = 0; i < count; i++) {
        char path [4096];
        snprintf (path, sizeof path, "%s/%s", dir, names [i]);
        size_t len = 0;
        char *raw = s_read_file (path, &len);
        char reason [256] = "";
        double t0 = s_now ();
        cm_message_t *m = raw ? cm_message_parse (raw, len, NULL, reason, sizeof reason) : NULL;
        double dt = s_now () - t0;
        char why [128] = "";
        if (m) {
            parsed++;
            printf ("# %s: subject=[%s] from=[%s <%s>] nested=%zu%s%s%s att=%zu",
                    names [i], m->subject, m->from_name, m->from_addr, m->nnested,
                    m->signed_ ? " signed" : "", m->auto_reply ? " auto" : "",
                    m->dsn ? " dsn" : "", m->nattachments);
            for (size_t k = 0; k < m->nattachments; k++)
                printf (" {%s %s %zu%s%s}", m->attachments [k].filename,
                        m->attachments [k].content_type, m->attachments [k].size,
                        m->attachments [k].nested_index >= 0 ? " nested" : "",
                        m->attachments [k].note ? " noted" : "");
            printf (" text=%zuB (%.3f s)\n", strlen (m->text), dt);
            s_result (s_record_ok (m, 0, why, sizeof why), "corpus %s parses to a sound record%s%s",
                      names [i], *why ? ": " : "", why);
        }
        else {
            rejected++;
            printf ("# %s: rejected: %s\n", names [i], reason);
            s_result (false, "corpus %s parses (rejected: %s)", names [i], reason);
        }
        for (size_t f = 0; s_facts [f].file; f++) {
            const s_fact_t *fact = &s_facts [f];
            if (strcmp (fact->file, names [i]) != 0)
                continue;
            bool ok = m != NULL;
            if (ok && fact->subject && strcmp (m->subject, fact->subject) != 0)
                ok = false;
            if (ok && fact->from_addr && strcmp (m->from_addr, fact->from_addr) != 0)
                ok = false;
            if (ok && fact->nattachments >= 0 && (int) m->nattachments != fact->nattachments)
                ok = false;
            if (ok && fact->nnested >= 0 && (int) m->nnested != fact->nnested)
                ok = false;
            if (ok && fact->to_contains && !strstr (m->to, fact->to_contains))
                ok = false;
            if (ok && fact->note_contains) {
                bool found = false;
                for (size_t k = 0; k < m->nattachments; k++)
                    found = found || (m->attachments [k].note
                                      && strstr (m->attachments [k].note, fact->note_contains));
                ok = found;
            }
            if (ok && fact->attachment) {
                bool found = false;
                for (size_t k = 0; k < m->nattachments; k++)
                    found = found || strcmp (m->attachments [k].filename, fact->attachment) == 0;
                ok = found;
            }
            s_result (ok, "corpus fact %s: subject/from/attachments/nested as read in the raw file",
                      fact->file);
        }
        if (strcmp (names [i], "m4007.txt") == 0)
            s_result (m && m->nnested == 1 && strcmp (m->nested [0]->subject, "submsg") == 0
                      && m->nested [0]->nnested == 2
                      && strcmp (m->nested [0]->nested [1]->subject, "m2") == 0
                      && strcmp (m->nested [0]->nested [1]->from_addr, "m2@example.com") == 0,
                      "corpus m4007.txt: digest inside the attached message gives m1 and m2");
        if (strcmp (names [i], "m4001.txt") == 0)
            s_result (m && m->signed_ && m->nattachments == 1
                      && strcmp (m->attachments [0].content_type, "application/pgp-signature") == 0,
                      "corpus m4001.txt: PGP/MIME signed, signature kept");
        cm_message_destroy (&m);
        free (raw);
        free (names [i]);
    }
    free (names);
    printf ("# corpus: %zu files, %d parsed, %d rejected\n", count, parsed, rejected);
    s_result (count > 0, "corpus has files");
}

/* tests/unit/NAME (the fixtures: tnef, uu) of the tree the binary was
   built in (BIN/..), or of the working folder. */
static const char *
s_fixture_dir (const char *argv0, const char *name)
{
    static char dir [4096];
    const char *slash = strrchr (argv0, '/');
    snprintf (dir, sizeof dir, "%.*s/../tests/unit/%s", slash ? (int) (slash - argv0) : 1,
              slash ? argv0 : ".", name);
    if (access (dir, R_OK) != 0)
        snprintf (dir, sizeof dir, "tests/unit/%s", name);
    return dir;
}

int
main (int argc, char **argv)
{
    const char *dir = "../shared/corpus/hunnysoft";
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "-v") == 0)
            s_verbose = true;
        else if (strcmp (argv [i], "--write-hostile") == 0 && i + 1 < argc) {
            s_write_dir = argv [++i];
            s_hostile ();
            s_smime ();
            s_tnef (s_fixture_dir (argv [0], "tnef"));
            s_uu_files (s_fixture_dir (argv [0], "uu"));
            printf ("%d hostile messages written to %s\n", s_written, s_write_dir);
            return 0;
        }
        else
            dir = argv [i];
    }
    s_result (cm_message_selftest (s_verbose) == 0, "cm_message_selftest");
    s_hostile ();
    s_declared_charsets ();
    s_utf8_strays ();
    s_smime ();
    s_tnef (s_fixture_dir (argv [0], "tnef"));
    s_uu_files (s_fixture_dir (argv [0], "uu"));
    s_corpus (dir);
    printf ("%d passed, %d failed\n", s_passed, s_failed);
    return s_failed ? 1 : 0;
}
