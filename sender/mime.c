/*  sender/mime.c: incident email as MIME, with GMime. Subject, names and
    file names are encoded (RFC 2047, RFC 2231) by GMime; text goes
    quoted-printable or 7bit as needed, attachments base64; lines end in
    CRLF for SMTP. The caller owns the returned bytes. */
#include "sender.h"
#include <gmime/gmime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static void
s_init (void)
{
    g_mime_init ();
}

static GMimeObject *
s_text (const char *subtype, const char *text)
{
    GMimeTextPart *part = g_mime_text_part_new_with_subtype (subtype);
    /* GMime picks the smallest charset that holds the text (us-ascii,
       iso-8859-1, else utf-8) and labels the part with it. */
    g_mime_text_part_set_text (part, text);
    return GMIME_OBJECT (part);
}

static GMimeObject *
s_attachment (const out_attachment_t *a)
{
    const char *ct = a->content_type && strchr (a->content_type, '/')
                   ? a->content_type : "application/octet-stream";
    char type [128], subtype [128];
    if (sscanf (ct, "%127[^/]/%127s", type, subtype) != 2) {
        snprintf (type, sizeof type, "application");
        snprintf (subtype, sizeof subtype, "octet-stream");
    }
    GMimePart *part = g_mime_part_new_with_type (type, subtype);
    g_mime_object_set_disposition (GMIME_OBJECT (part), "attachment");
    g_mime_part_set_filename (part, a->filename);
    GMimeStream *stream = g_mime_stream_mem_new_with_buffer ((const char *) a->data, a->len);
    GMimeDataWrapper *content = g_mime_data_wrapper_new_with_stream (stream,
                                                GMIME_CONTENT_ENCODING_DEFAULT);
    g_mime_part_set_content (part, content);
    g_mime_part_set_content_encoding (part, GMIME_CONTENT_ENCODING_BASE64);
    g_object_unref (content);
    g_object_unref (stream);
    return GMIME_OBJECT (part);
}

static void
s_addresses (GMimeMessage *msg, GMimeAddressType type, const char *const *addrs, size_t n)
{
    InternetAddressList *list = g_mime_message_get_addresses (msg, type);
    for (size_t i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_mailbox_new (NULL, addrs [i]);
        internet_address_list_add (list, ia);
        g_object_unref (ia);
    }
}

char *
mime_build (const out_mail_t *m, size_t *len, char *err, size_t errlen)
{
    pthread_once (&s_once, s_init);
    GMimeMessage *msg = g_mime_message_new (TRUE);
    s_addresses (msg, GMIME_ADDRESS_TYPE_FROM, &m->from, 1);
    s_addresses (msg, GMIME_ADDRESS_TYPE_TO, m->to, m->nto);
    s_addresses (msg, GMIME_ADDRESS_TYPE_CC, m->cc, m->ncc);
    g_mime_message_set_subject (msg, m->subject, "utf-8");
    g_mime_message_set_message_id (msg, m->message_id);
    GDateTime *now = g_date_time_new_now_utc ();
    g_mime_message_set_date (msg, now);
    g_date_time_unref (now);
    if (m->in_reply_to && *m->in_reply_to) {
        char irt [1024];
        snprintf (irt, sizeof irt, "<%s>", m->in_reply_to);
        g_mime_object_set_header (GMIME_OBJECT (msg), "In-Reply-To", irt, NULL);
    }
    if (m->references && *m->references)
        g_mime_object_set_header (GMIME_OBJECT (msg), "References", m->references, NULL);

    GMimeObject *body = s_text ("plain", m->body ? m->body : "");
    if (m->html && *m->html) {
        GMimeMultipart *alt = g_mime_multipart_new_with_subtype ("alternative");
        g_mime_multipart_add (alt, body);
        g_object_unref (body);
        GMimeObject *html = s_text ("html", m->html);
        g_mime_multipart_add (alt, html);
        g_object_unref (html);
        body = GMIME_OBJECT (alt);
    }
    if (m->nattachments) {
        GMimeMultipart *mixed = g_mime_multipart_new_with_subtype ("mixed");
        g_mime_multipart_add (mixed, body);
        g_object_unref (body);
        for (size_t i = 0; i < m->nattachments; i++) {
            GMimeObject *a = s_attachment (&m->attachments [i]);
            g_mime_multipart_add (mixed, a);
            g_object_unref (a);
        }
        body = GMIME_OBJECT (mixed);
    }
    g_mime_message_set_mime_part (msg, body);
    g_object_unref (body);
    g_mime_object_encode (GMIME_OBJECT (msg), GMIME_ENCODING_CONSTRAINT_7BIT);

    GMimeFormatOptions *opts = g_mime_format_options_new ();
    g_mime_format_options_set_newline_format (opts, GMIME_NEWLINE_FORMAT_DOS);
    GMimeStream *out = g_mime_stream_mem_new ();
    char *bytes = NULL;
    if (g_mime_object_write_to_stream (GMIME_OBJECT (msg), opts, out) < 0)
        snprintf (err, errlen, "cannot write the MIME message");
    else {
        GByteArray *array = g_mime_stream_mem_get_byte_array (GMIME_STREAM_MEM (out));
        bytes = malloc (array->len + 1);
        if (bytes) {
            memcpy (bytes, array->data, array->len);
            bytes [array->len] = 0;
            *len = array->len;
        }
        else
            snprintf (err, errlen, "out of memory");
    }
    g_object_unref (out);
    g_mime_format_options_free (opts);
    g_object_unref (msg);
    return bytes;
}
