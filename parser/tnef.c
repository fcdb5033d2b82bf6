/*  parser/tnef.c: the files inside a TNEF stream ([MS-OXTNEF]).
    Outlook and Exchange sending "Rich Text" wrap every attachment and the
    message's properties into one application/ms-tnef part, winmail.dat.
    The stream is a signature (0x223E9F78), a legacy key, then attributes:
    a level byte (1 message, 2 attachment), a 4-byte id whose high word is
    its type, a 4-byte length, the data and a 2-byte checksum (the sum of
    the data bytes mod 65536). attAttachRendData starts an attachment;
    attAttachTitle names it (8.3), attAttachData holds its bytes and
    attAttachment a MAPI property list with its long name, MIME tag and,
    for an attached Outlook message, the message as a TNEF stream of its
    own (PR_ATTACH_DATA_OBJ). attBody is the plain text body, else
    PR_BODY among the message's properties (attMAPIProps), which also
    give its subject, sender, date and the display strings of its
    recipients (for such an attached message) and its RTF body; its
    recipients proper are the rows of attRecipTable, each a property
    list, and attDateSent its date when the properties have none.
    Hostile input: every length is checked against what remains before it
    is read; the first damage stops the reading (what was read before it
    stands); files and their bytes stop at the caller's limits; a property
    list is read to at most CM_TNEF_MAX_PROPS properties, the message's
    first recipient table (it has one) to CM_TNEF_MAX_RECIPS rows, any
    other not at all; a date outside 1970 to 9999 is none. A wrong checksum
    is counted, not fatal: the lengths, not the checksum, keep reads in
    bounds. The RTF body (PR_RTF_COMPRESSED among the message's
    properties) is decompressed (parser/rtf.c) once the attachments are
    read, within the bytes they left: the files come first; its damage,
    a wrong CRC or the budget is told in rtf_note, never fatal.
    Ownership: see parser/tnef.h. Errors: -1 only out of memory. */
#include "tnef.h"
#include "message.h"
#include "rtf.h"
#include "../common/buf.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SIGNATURE      0x223E9F78u
#define S_LVL_MESSAGE    1
#define S_LVL_ATTACHMENT 2
#define S_ATT_BODY       0x0006800Cu   /* attBody: text */
#define S_ATT_RENDDATA   0x00069002u   /* attAttachRendData: an attachment starts */
#define S_ATT_TITLE      0x00018010u   /* attAttachTitle: short name */
#define S_ATT_DATA       0x0006800Fu   /* attAttachData: the bytes */
#define S_ATT_ATTACHMENT 0x00069005u   /* attAttachment: MAPI properties */
#define S_ATT_CODEPAGE   0x00069007u   /* attOemCodepage */
#define S_ATT_MAPIPROPS  0x00069003u   /* attMAPIProps: the message's properties */
#define S_ATT_SUBJECT    0x00018004u   /* attSubject */
#define S_ATT_RECIPTABLE 0x00069004u   /* attRecipTable: rows of properties */
#define S_ATT_DATESENT   0x00038005u   /* attDateSent: seven 16-bit fields */

#define S_PR_BODY                 0x1000
#define S_PR_SUBJECT              0x0037
#define S_PR_SENT_REPR_NAME       0x0042
#define S_PR_SENT_REPR_EMAIL      0x0065
#define S_PR_SENDER_NAME          0x0C1A
#define S_PR_SENDER_EMAIL         0x0C1F
#define S_PR_SENDER_SMTP          0x5D01
#define S_PR_SENT_REPR_SMTP       0x5D02
#define S_PR_RTF_COMPRESSED       0x1009
#define S_PR_CLIENT_SUBMIT_TIME   0x0039
#define S_PR_DELIVERY_TIME        0x0E06
#define S_PR_DISPLAY_CC           0x0E03
#define S_PR_DISPLAY_TO           0x0E04
#define S_PR_RECIPIENT_TYPE       0x0C15
#define S_MAPI_P1                 0x10000000u  /* PR_RECIPIENT_TYPE's resend flag */
#define S_PR_DISPLAY_NAME         0x3001
#define S_PR_EMAIL_ADDRESS        0x3003
#define S_PR_SMTP_ADDRESS         0x39FE
#define S_PR_ATTACH_DATA_OBJ      0x3701
#define S_PR_ATTACH_FILENAME      0x3704
#define S_PR_ATTACH_METHOD        0x3705
#define S_PR_ATTACH_LONG_FILENAME 0x3707
#define S_PR_ATTACH_MIME_TAG      0x370E
#define S_ATTACH_EMBEDDED_MSG     5

#define S_PT_STRING8 0x001E
#define S_PT_UNICODE 0x001F
#define S_PT_BINARY  0x0102
#define S_PT_OBJECT  0x000D
#define S_PT_LONG    0x0003
#define S_PT_SYSTIME 0x0040
#define S_MV_FLAG    0x1000

/* IID_IMessage {00020307-0000-0000-C000-000000000046} as stored */
static const unsigned char s_iid_message [16] = {
    0x07, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46 };

/* What remains to be read. */
typedef struct {
    const unsigned char *p;
    size_t left;
} s_rd_t;

static bool
s_take (s_rd_t *rd, size_t n, const unsigned char **out)
{
    if (n > rd->left)
        return false;
    if (out)
        *out = rd->p;
    rd->p += n;
    rd->left -= n;
    return true;
}

/* Four bytes, little-endian. */
static uint32_t
s_le32 (const unsigned char *b)
{
    return (uint32_t) b [0] | (uint32_t) b [1] << 8 | (uint32_t) b [2] << 16
         | (uint32_t) b [3] << 24;
}

static bool
s_u32 (s_rd_t *rd, uint32_t *v)
{
    const unsigned char *b;
    if (!s_take (rd, 4, &b))
        return false;
    *v = s_le32 (b);
    return true;
}

/* The attachment being read. */
typedef struct {
    bool open;
    char *title;          /* attAttachTitle or PR_ATTACH_FILENAME (8-bit) */
    char *long_name;      /* PR_ATTACH_LONG_FILENAME */
    bool long_utf8;
    char *mime_type;
    unsigned char *data;
    size_t size;
    bool have_data;
    bool embedded;
    uint32_t method;
} s_att_t;

static void
s_att_clear (s_att_t *a)
{
    free (a->title);
    free (a->long_name);
    free (a->mime_type);
    free (a->data);
    memset (a, 0, sizeof *a);
}

/* A row of the recipient table being read. */
typedef struct {
    cm_tnef_recip_t r;
    cm_tnef_text_t email; /* PR_EMAIL_ADDRESS: r.addr when it has none */
    uint32_t type;        /* PR_RECIPIENT_TYPE, 0 when not given */
} s_row_t;

/* Whose properties a property list gives. */
typedef enum { S_OF_MESSAGE, S_OF_ATTACHMENT, S_OF_RECIPIENT } s_of_t;

/* Where the message's date came from, the better the higher. */
enum { S_DATE_NONE, S_DATE_SENT_ATTR, S_DATE_DELIVERY, S_DATE_SUBMIT };

typedef struct {
    cm_tnef_t *t;
    s_att_t att;
    int date_from;        /* S_DATE_*: what set t->date */
    bool recip_table;     /* the message's attRecipTable was met: a
                             message has one, a second is not read */
    size_t recips_room;   /* t->recips allocated, in rows */
    size_t max_files, max_bytes, bytes;
    bool stop;            /* damage or a limit: read no further */
    bool oom;
    const unsigned char *rtf;   /* PR_RTF_COMPRESSED's value in the stream */
    size_t rtf_len;
} s_state_t;

static void
s_stop (s_state_t *s, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
static void
s_stop (s_state_t *s, const char *fmt, ...)
{
    if (s->stop)
        return;
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (s->t->problem, sizeof s->t->problem, fmt, ap);
    va_end (ap);
    s->stop = true;
}

/* 8-bit text up to its first NUL, as a C string. */
static char *
s_string8 (const unsigned char *b, size_t n)
{
    const unsigned char *nul = memchr (b, 0, n);
    return strndup ((const char *) b, nul ? (size_t) (nul - b) : n);
}

/* UTF-16LE up to its first NUL as UTF-8; a lone surrogate becomes
   U+FFFD. */
static char *
s_utf16 (const unsigned char *b, size_t n)
{
    cm_buf_t out;
    cm_buf_init (&out, 0);
    int rc = 0;
    for (size_t i = 0; i + 1 < n && rc == 0; i += 2) {
        uint32_t c = (uint32_t) b [i] | (uint32_t) b [i + 1] << 8;
        if (c == 0)
            break;
        if (c >= 0xD800 && c < 0xDC00 && i + 3 < n) {
            uint32_t lo = (uint32_t) b [i + 2] | (uint32_t) b [i + 3] << 8;
            if (lo >= 0xDC00 && lo < 0xE000) {
                c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                i += 2;
            }
        }
        if (c >= 0xD800 && c < 0xE000)
            c = 0xFFFD;
        char u [4];
        rc = cm_buf_append (&out, u, cm_utf8_put (c, u));
    }
    if (rc == 0 && cm_buf_append (&out, "", 1) == 0) {
        char *s = cm_buf_take (&out, NULL);
        return s;
    }
    cm_buf_free (&out);
    return NULL;
}

/* A copy of n bytes counted against the limit on the files' bytes;
   NULL (and s->stop or s->oom) when it goes over or memory runs out. */
static unsigned char *
s_copy_bytes (s_state_t *s, const unsigned char *b, size_t n)
{
    if (n > s->max_bytes - s->bytes) {
        s_stop (s, "the files' bytes go over the message's decoded-bytes budget");
        return NULL;
    }
    unsigned char *copy = malloc (n ? n : 1);
    if (!copy) {
        s->oom = true;
        return NULL;
    }
    memcpy (copy, b, n);
    s->bytes += n;
    return copy;
}

/* Ends the attachment being read: with bytes it becomes a file. */
static void
s_flush (s_state_t *s)
{
    s_att_t *a = &s->att;
    if (!a->open)
        return;
    if (!a->have_data) {
        s->t->skipped++;
        s_att_clear (a);
        return;
    }
    if (s->t->nfiles >= s->max_files) {
        s_stop (s, "more than %zu files", s->max_files);
        s_att_clear (a);
        return;
    }
    cm_tnef_file_t *grown = realloc (s->t->files, (s->t->nfiles + 1) * sizeof *grown);
    if (!grown) {
        s->oom = true;
        s_att_clear (a);
        return;
    }
    s->t->files = grown;
    cm_tnef_file_t *f = &grown [s->t->nfiles++];
    memset (f, 0, sizeof *f);
    if (a->long_name && *a->long_name) {
        f->name = a->long_name;
        f->name_utf8 = a->long_utf8;
        a->long_name = NULL;
    }
    else {
        f->name = a->title;
        a->title = NULL;
    }
    f->mime_type = a->mime_type;
    f->data = a->data;
    f->size = a->size;
    f->embedded = a->embedded;
    a->mime_type = NULL;
    a->data = NULL;
    s_att_clear (a);
}

/* Fixed size of a value of a MAPI type in a property list (2-byte types
   padded to 4), 0 for a type of variable length, -1 unknown. */
static int
s_fixed_size (unsigned type)
{
    switch (type) {
        case 0x0001: case 0x0002: case 0x0003: case 0x0004: case 0x000A: case 0x000B:
            return 4;
        case 0x0005: case 0x0006: case 0x0007: case 0x0014: case 0x0040:
            return 8;
        case 0x0048:
            return 16;
        case S_PT_STRING8: case S_PT_UNICODE: case S_PT_BINARY: case S_PT_OBJECT:
            return 0;
        default:
            return -1;
    }
}

/* Takes what the attachment needs from one property's first value. */
static void
s_attach_prop (s_state_t *s, unsigned id, unsigned type, const unsigned char *v, size_t n)
{
    s_att_t *a = &s->att;
    if (id == S_PR_ATTACH_LONG_FILENAME && (type == S_PT_STRING8 || type == S_PT_UNICODE)
    &&  !a->long_name) {
        a->long_name = type == S_PT_UNICODE ? s_utf16 (v, n) : s_string8 (v, n);
        a->long_utf8 = type == S_PT_UNICODE;
        s->oom = s->oom || !a->long_name;
    }
    else
    if (id == S_PR_ATTACH_FILENAME && type == S_PT_STRING8 && !a->title) {
        a->title = s_string8 (v, n);
        s->oom = s->oom || !a->title;
    }
    else
    if (id == S_PR_ATTACH_MIME_TAG && (type == S_PT_STRING8 || type == S_PT_UNICODE)
    &&  !a->mime_type) {
        a->mime_type = type == S_PT_UNICODE ? s_utf16 (v, n) : s_string8 (v, n);
        s->oom = s->oom || !a->mime_type;
    }
    else
    if (id == S_PR_ATTACH_METHOD && type == S_PT_LONG && n >= 4)
        a->method = s_le32 (v);
    else
    if (id == S_PR_ATTACH_DATA_OBJ && !a->have_data
    &&  ((type == S_PT_OBJECT && n >= 16) || type == S_PT_BINARY)) {
        /* an object's value starts with its interface id; an attached
           Outlook message (IID_IMessage) follows as a TNEF stream */
        bool object = type == S_PT_OBJECT;
        if (object && memcmp (v, s_iid_message, 16) != 0)
            return;     /* an OLE storage or stream: not a file we read */
        const unsigned char *bytes = object ? v + 16 : v;
        size_t size = object ? n - 16 : n;
        if ((a->data = s_copy_bytes (s, bytes, size))) {
            a->size = size;
            a->have_data = true;
            a->embedded = object;
        }
    }
}

/* True when text can stand as an address in a header: a local part and
   a domain around one '@', at most CM_TNEF_MAX_ADDRESS bytes, no white
   space, control or other RFC 5322 special (<>,;:"()[]\) that would
   let it close the <> it is shown in and add a recipient of its own
   ("a@x.org>, \"CEO\" <ceo@corp.com"). Not an addr-spec check (a
   quoted local part is refused, a non-ASCII one kept): only what a
   display list needs. An Exchange DN has no '@'. (common/route.c's
   cm_route_valid_address is for what casemail sends: ASCII only.) */
static bool
s_is_address (const char *text)
{
    const char *at = strchr (text, '@');
    if (!at || at == text || !at [1] || strchr (at + 1, '@')
    ||  strlen (text) > CM_TNEF_MAX_ADDRESS)
        return false;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        if (*p <= 0x20 || *p == 0x7F || strchr ("<>,;:\"()[]\\", *p))
            return false;
    return true;
}

/* Keeps a text property of the message in *dst: the first given, or a
   Unicode one over an 8-bit one; with at, only an address
   (s_is_address). */
static void
s_message_text (s_state_t *s, cm_tnef_text_t *dst, unsigned type, const unsigned char *v,
                size_t n, bool at)
{
    bool unicode = type == S_PT_UNICODE;
    if (dst->text && (dst->utf8 || !unicode))
        return;
    char *text = unicode ? s_utf16 (v, n) : s_string8 (v, n);
    if (!text) {
        s->oom = true;
        return;
    }
    if (!*text || (at && !s_is_address (text))) {
        free (text);
        return;
    }
    free (dst->text);
    dst->text = text;
    dst->utf8 = unicode;
}

/* Days from 1970-01-01 to the given day of the proleptic Gregorian
   calendar (Howard Hinnant's days_from_civil). */
static long long
s_days (long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned) (y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long) doe - 719468;
}

/* The first second of 1970 and the last of 9999: the dates a Date
   header can say (four-digit years), none before the epoch that 0
   stands in for "no date". */
#define S_DATE_MIN 0LL
#define S_DATE_MAX 253402300799LL

/* Sets the message's date to epoch, come from from, unless a better
   source gave it or it is out of range (then the next source may). */
static void
s_date (s_state_t *s, long long epoch, int from, bool no_zone)
{
    if (from <= s->date_from || epoch < S_DATE_MIN || epoch > S_DATE_MAX)
        return;
    s->date_from = from;
    s->t->date = epoch;
    s->t->dated = true;
    s->t->date_no_zone = no_zone;
}

/* A PT_SYSTIME value (FILETIME: 100 ns since 1601-01-01 UTC) as the
   message's date. */
static void
s_filetime (s_state_t *s, const unsigned char *v, int from)
{
    uint64_t ft = (uint64_t) s_le32 (v) | (uint64_t) s_le32 (v + 4) << 32;
    s_date (s, (long long) (ft / 10000000u) - 11644473600LL, from, false);
}

/* attDateSent: year, month, day, hour, minute, second and weekday, 16
   bits each, without a zone. [MS-OXCMAIL] 2.1.3.2.7 has writers copy
   PidTagClientSubmitTime (UTC) into it, so it is read as UTC with the
   sender's zone unknown, RFC 5322's -0000 (some writers put local time
   there: [MS-OXTNEF]'s sample is 8 hours off, one reason it comes
   last). The weekday is not needed. */
static void
s_date_sent (s_state_t *s, const unsigned char *b, size_t n)
{
    if (n < 12)
        return;
    unsigned f [6];
    for (int i = 0; i < 6; i++)
        f [i] = (unsigned) b [2 * i] | (unsigned) b [2 * i + 1] << 8;
    static const unsigned char mdays [12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (f [0] % 4 == 0 && f [0] % 100 != 0) || f [0] % 400 == 0;
    if (f [0] < 1970 || f [0] > 9999 || f [1] < 1 || f [1] > 12 || f [2] < 1
    ||  f [2] > mdays [f [1] - 1] || (f [1] == 2 && f [2] == 29 && !leap)
    ||  f [3] > 23 || f [4] > 59 || f [5] > 59)
        return;
    s_date (s, s_days (f [0], f [1], f [2]) * 86400 + f [3] * 3600 + f [4] * 60 + f [5],
            S_DATE_SENT_ATTR, true);
}

/* Takes what the message needs from one property's first value: PR_BODY
   (when there is no attBody), its subject and sender, the display
   strings of its recipients, its date and PR_RTF_COMPRESSED. */
static void
s_message_prop (s_state_t *s, unsigned id, unsigned type, const unsigned char *v, size_t n)
{
    cm_tnef_t *t = s->t;
    bool text = type == S_PT_STRING8 || type == S_PT_UNICODE;
    if (id == S_PR_BODY && text && !t->body) {
        t->body = type == S_PT_UNICODE ? s_utf16 (v, n) : s_string8 (v, n);
        s->oom = s->oom || !t->body;
        t->body_len = t->body ? strlen (t->body) : 0;
    }
    else
    if (text && (id == S_PR_SUBJECT || id == S_PR_SENT_REPR_NAME || id == S_PR_SENDER_NAME
                 || id == S_PR_SENDER_SMTP || id == S_PR_SENT_REPR_SMTP
                 || id == S_PR_SENDER_EMAIL || id == S_PR_SENT_REPR_EMAIL
                 || id == S_PR_DISPLAY_TO || id == S_PR_DISPLAY_CC)) {
        cm_tnef_text_t *dst = id == S_PR_SUBJECT ? &t->subject
                            : id == S_PR_DISPLAY_TO ? &t->display_to
                            : id == S_PR_DISPLAY_CC ? &t->display_cc
                            : id == S_PR_SENT_REPR_NAME || id == S_PR_SENDER_NAME
                            ? &t->from_name : &t->from_addr;
        s_message_text (s, dst, type, v, n, dst == &t->from_addr);
    }
    else
    if (type == S_PT_SYSTIME && (id == S_PR_CLIENT_SUBMIT_TIME || id == S_PR_DELIVERY_TIME))
        s_filetime (s, v, id == S_PR_CLIENT_SUBMIT_TIME ? S_DATE_SUBMIT : S_DATE_DELIVERY);
    else
    if (id == S_PR_RTF_COMPRESSED && type == S_PT_BINARY && !s->rtf) {
        s->rtf = v;     /* decompressed after the files (s_rtf) */
        s->rtf_len = n;
    }
}

/* Takes what a recipient needs from one property's first value of its
   row. */
static void
s_recip_prop (s_state_t *s, s_row_t *row, unsigned id, unsigned type, const unsigned char *v,
              size_t n)
{
    bool text = type == S_PT_STRING8 || type == S_PT_UNICODE;
    if (id == S_PR_RECIPIENT_TYPE && type == S_PT_LONG)
        row->type = s_le32 (v);
    else
    if (id == S_PR_DISPLAY_NAME && text)
        s_message_text (s, &row->r.name, type, v, n, false);
    else
    if (id == S_PR_SMTP_ADDRESS && text)
        s_message_text (s, &row->r.addr, type, v, n, true);
    else
    if (id == S_PR_EMAIL_ADDRESS && text)
        s_message_text (s, &row->email, type, v, n, true);
}

/* Reads a MAPI property list from rd (attAttachment, attMAPIProps, a
   row of attRecipTable), its values those of of: the attachment being
   read, the message, or row. false when it does not add up (s->stop
   and the problem set). */
static bool
s_props_read (s_state_t *s, s_rd_t *rd, s_of_t of, s_row_t *row)
{
    uint32_t count;
    if (!s_u32 (rd, &count)) {
        s_stop (s, "a property list cut short");
        return false;
    }
    if (count > CM_TNEF_MAX_PROPS) {
        s_stop (s, "a property list of %u properties (more than %d)", count, CM_TNEF_MAX_PROPS);
        return false;
    }
    for (uint32_t i = 0; i < count && !s->oom && !s->stop; i++) {
        uint32_t tag, kind, v32;
        if (!s_u32 (rd, &tag))
            goto short_;
        unsigned type = tag & 0xFFFF, id = tag >> 16;
        if (id >= 0x8000) {
            /* a named property: GUID, kind, then a number or a name */
            if (!s_take (rd, 16, NULL) || !s_u32 (rd, &kind))
                goto short_;
            if (kind == 0) {
                if (!s_u32 (rd, &v32))
                    goto short_;
            }
            else
            if (kind == 1) {
                if (!s_u32 (rd, &v32) || v32 > rd->left || !s_take (rd, v32, NULL))
                    goto short_;
                s_take (rd, (4 - v32 % 4) % 4 < rd->left ? (4 - v32 % 4) % 4 : rd->left, NULL);
            }
            else {
                s_stop (s, "a named property of unknown kind %u", kind);
                return false;
            }
        }
        bool mv = (type & S_MV_FLAG) != 0;
        unsigned base = type & ~(unsigned) (S_MV_FLAG | 0x2000);
        int fixed = s_fixed_size (base);
        if (fixed < 0) {
            s_stop (s, "a property of unknown type 0x%04x", type);
            return false;
        }
        uint32_t nvalues = 1;
        if ((mv || fixed == 0) && !s_u32 (rd, &nvalues))
            goto short_;
        /* every value takes 4 bytes at least: a count beyond that lies */
        if (nvalues > rd->left / 4 + 1)
            goto short_;
        for (uint32_t k = 0; k < nvalues; k++) {
            const unsigned char *v;
            size_t n = (size_t) fixed;
            if (fixed == 0) {
                if (!s_u32 (rd, &v32))
                    goto short_;
                n = v32;
            }
            if (!s_take (rd, n, &v))
                goto short_;
            if (fixed == 0)
                s_take (rd, (4 - n % 4) % 4 < rd->left ? (4 - n % 4) % 4 : rd->left, NULL);
            if (k > 0 || mv)
                continue;       /* a list's first value says enough */
            if (of == S_OF_ATTACHMENT)
                s_attach_prop (s, id, base, v, n);
            else
            if (of == S_OF_RECIPIENT)
                s_recip_prop (s, row, id, base, v, n);
            else
                s_message_prop (s, id, base, v, n);
        }
    }
    return !s->stop;
short_:
    s_stop (s, "a property list cut short");
    return false;
}

static bool
s_props (s_state_t *s, const unsigned char *data, size_t len, s_of_t of)
{
    s_rd_t rd = { data, len };
    return s_props_read (s, &rd, of, NULL);
}

/* Reads attRecipTable: a row count, then each row a property list. Its
   To and Cc rows are kept; the rows read before damage stand. false
   when it does not add up (s->stop and the problem set). */
static bool
s_recip_table (s_state_t *s, const unsigned char *data, size_t len)
{
    cm_tnef_t *t = s->t;
    s_rd_t rd = { data, len };
    uint32_t rows;
    if (!s_u32 (&rd, &rows)) {
        s_stop (s, "a recipient table cut short");
        return false;
    }
    if (rows > CM_TNEF_MAX_RECIPS) {
        s_stop (s, "a recipient table of %u rows (more than %d)", rows, CM_TNEF_MAX_RECIPS);
        return false;
    }
    /* every row takes 4 bytes at least: a count beyond that lies */
    if (rows > rd.left / 4) {
        s_stop (s, "a recipient table cut short");
        return false;
    }
    for (uint32_t i = 0; i < rows && !s->stop && !s->oom; i++) {
        s_row_t row = { .type = 0 };
        bool whole = s_props_read (s, &rd, S_OF_RECIPIENT, &row);
        /* high bits of the type are flags (MAPI_SUBMITTED, MAPI_P1); a
           MAPI_P1 row is a resend's copy of another row: not listed twice */
        uint32_t type = (row.type & S_MAPI_P1) ? 0 : row.type & 0x0FFFFFFFu;
        if (!row.r.addr.text) {
            row.r.addr = row.email;
            row.email.text = NULL;
        }
        row.r.cc = type == 2;
        if (whole && !s->oom && (type == 1 || type == 2) && (row.r.name.text || row.r.addr.text)) {
            if (t->nrecips == s->recips_room) {
                /* doubled, so a table of many rows is not copied row by row */
                size_t room = s->recips_room ? 2 * s->recips_room : 8;
                cm_tnef_recip_t *grown = realloc (t->recips, room * sizeof *grown);
                if (grown) {
                    t->recips = grown;
                    s->recips_room = room;
                }
                else
                    s->oom = true;
            }
            if (!s->oom) {
                t->recips [t->nrecips++] = row.r;
                row.r.name.text = row.r.addr.text = NULL;
            }
        }
        free (row.r.name.text);
        free (row.r.addr.text);
        free (row.email.text);
    }
    return !s->stop;
}

/* Decompresses the RTF body within the bytes the files left, and says
   in rtf_note what came of it. */
static void
s_rtf (s_state_t *s)
{
    cm_tnef_t *t = s->t;
    cm_rtf_t r;
    if (cm_rtf_decompress (s->rtf, s->rtf_len, s->max_bytes - s->bytes, &r)) {
        s->oom = true;
        return;
    }
    if (r.len) {
        t->rtf = r.data;
        t->rtf_len = r.len;
        s->bytes += r.len;
        r.data = NULL;
    }
    const char *crc = r.crc_wrong ? ", its CRC wrong" : "";
    if (!t->rtf)
        snprintf (t->rtf_note, sizeof t->rtf_note, "RTF body not read: %s",
                  r.problem [0] ? r.problem : "empty");
    else
    if (r.problem [0])
        snprintf (t->rtf_note, sizeof t->rtf_note, "RTF body read in part (%s)%s", r.problem, crc);
    else
        snprintf (t->rtf_note, sizeof t->rtf_note, "RTF body read%s", crc);
    cm_rtf_free (&r);
}

bool
cm_tnef_signature (const unsigned char *data, size_t len)
{
    return len >= 4 && data [0] == 0x78 && data [1] == 0x9F && data [2] == 0x3E
        && data [3] == 0x22;
}

int
cm_tnef_read (const unsigned char *data, size_t len, size_t max_files,
              size_t max_bytes, cm_tnef_t *tnef)
{
    memset (tnef, 0, sizeof *tnef);
    s_state_t s = { .t = tnef, .max_files = max_files, .max_bytes = max_bytes };
    s_rd_t rd = { data, len };
    if (!cm_tnef_signature (data, len)) {
        s_stop (&s, "not TNEF: bad signature");
        return 0;
    }
    s_take (&rd, 4, NULL);
    if (!s_take (&rd, 2, NULL)) {
        s_stop (&s, "cut short after the signature");
        return 0;
    }
    while (rd.left && !s.stop && !s.oom) {
        size_t at = len - rd.left;
        const unsigned char *lvl, *body, *sum;
        uint32_t id, n;
        if (!s_take (&rd, 1, &lvl) || !s_u32 (&rd, &id) || !s_u32 (&rd, &n)) {
            s_stop (&s, "an attribute cut short at byte %zu", at);
            break;
        }
        if (*lvl != S_LVL_MESSAGE && *lvl != S_LVL_ATTACHMENT) {
            s_stop (&s, "an attribute of unknown level %u at byte %zu", *lvl, at);
            break;
        }
        if (!s_take (&rd, n, &body) || !s_take (&rd, 2, &sum)) {
            s_stop (&s, "an attribute longer than the stream at byte %zu", at);
            break;
        }
        unsigned check = 0;
        for (uint32_t i = 0; i < n; i++)
            check = (check + body [i]) & 0xFFFF;
        if (check != ((unsigned) sum [0] | (unsigned) sum [1] << 8))
            tnef->bad_checksums++;
        s_att_t *a = &s.att;
        switch (id) {
            case S_ATT_RENDDATA:
                s_flush (&s);
                a->open = !s.stop && !s.oom;
                break;
            case S_ATT_TITLE:
                if (a->open && !a->title && !(a->title = s_string8 (body, n)))
                    s.oom = true;
                break;
            case S_ATT_DATA:
                if (a->open && !a->have_data && (a->data = s_copy_bytes (&s, body, n))) {
                    a->size = n;
                    a->have_data = true;
                }
                break;
            case S_ATT_ATTACHMENT:
                if (a->open)
                    s_props (&s, body, n, S_OF_ATTACHMENT);
                break;
            case S_ATT_BODY:
                if (*lvl == S_LVL_MESSAGE && !tnef->body) {
                    if (!(tnef->body = s_string8 (body, n)))
                        s.oom = true;
                    else
                        tnef->body_len = strlen (tnef->body);
                }
                break;
            case S_ATT_MAPIPROPS:
            case S_ATT_RECIPTABLE:
                /* read only for the message's headers: damage there is
                   no reason to stop before the attachments. A message
                   has one recipient table: more would each add up to
                   CM_TNEF_MAX_RECIPS rows, so only the first is read */
                if (id == S_ATT_RECIPTABLE && *lvl == S_LVL_MESSAGE && s.recip_table)
                    break;
                if (id == S_ATT_RECIPTABLE && *lvl == S_LVL_MESSAGE)
                    s.recip_table = true;
                if (*lvl == S_LVL_MESSAGE
                &&  !(id == S_ATT_MAPIPROPS ? s_props (&s, body, n, S_OF_MESSAGE)
                                            : s_recip_table (&s, body, n))
                &&  !s.oom) {
                    s.stop = false;
                    tnef->problem [0] = 0;
                }
                break;
            case S_ATT_DATESENT:
                if (*lvl == S_LVL_MESSAGE)
                    s_date_sent (&s, body, n);
                break;
            case S_ATT_SUBJECT:
                if (*lvl == S_LVL_MESSAGE)
                    s_message_text (&s, &tnef->subject, S_PT_STRING8, body, n, false);
                break;
            case S_ATT_CODEPAGE:
                if (n >= 4)
                    tnef->codepage = s_le32 (body);
                break;
            default:
                break;
        }
    }
    /* the last attachment, or the one the damage cut: its bytes stand */
    if (!s.oom && !s.stop)
        s_flush (&s);
    else
    if (!s.oom && s.att.have_data && tnef->nfiles < max_files) {
        s.stop = false;
        s_flush (&s);
        s.stop = true;
    }
    s_att_clear (&s.att);
    if (!s.oom && s.rtf)
        s_rtf (&s);
    if (s.oom) {
        cm_tnef_free (tnef);
        return -1;
    }
    return 0;
}

void
cm_tnef_free (cm_tnef_t *tnef)
{
    for (size_t i = 0; i < tnef->nfiles; i++) {
        free (tnef->files [i].name);
        free (tnef->files [i].mime_type);
        free (tnef->files [i].data);
    }
    free (tnef->files);
    free (tnef->body);
    free (tnef->rtf);
    free (tnef->subject.text);
    free (tnef->from_name.text);
    free (tnef->from_addr.text);
    for (size_t i = 0; i < tnef->nrecips; i++) {
        free (tnef->recips [i].name.text);
        free (tnef->recips [i].addr.text);
    }
    free (tnef->recips);
    free (tnef->display_to.text);
    free (tnef->display_cc.text);
    memset (tnef, 0, sizeof *tnef);
}

/* ------------------------------------------------------------ self-test */

#include <openssl/evp.h>

/* A TNEF writer for the tests: attributes with their checksums. */
static void
s_put32 (cm_buf_t *b, uint32_t v)
{
    unsigned char x [4] = { (unsigned char) v, (unsigned char) (v >> 8),
                            (unsigned char) (v >> 16), (unsigned char) (v >> 24) };
    cm_buf_append (b, x, 4);
}

static void
s_attr (cm_buf_t *b, int level, uint32_t id, const void *data, size_t n)
{
    unsigned char lvl = (unsigned char) level;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ((const unsigned char *) data) [i];
    unsigned char ck [2] = { (unsigned char) sum, (unsigned char) (sum >> 8) };
    cm_buf_append (b, &lvl, 1);
    s_put32 (b, id);
    s_put32 (b, (uint32_t) n);
    cm_buf_append (b, data, n);
    cm_buf_append (b, ck, 2);
}

/* One variable-length value: size, bytes, padding to 4. */
static void
s_value (cm_buf_t *b, const void *data, size_t n)
{
    s_put32 (b, (uint32_t) n);
    cm_buf_append (b, data, n);
    cm_buf_append (b, "\0\0\0", (4 - n % 4) % 4);
}

/* "Rechnung März.pdf" in UTF-16LE with its NUL */
static const char s_long_utf16 [] =
    "R\0e\0c\0h\0n\0u\0n\0g\0 \0M\0\xE4\0r\0z\0.\0p\0d\0f\0\0";

/* A stream of an Outlook "Rich Text" mail: a PDF with a long Unicode
   name and a MIME tag (after a multi-valued and a named property), a
   file known by its 8.3 name only, an attached Outlook message, the
   plain text body. */
static void
s_sample (cm_buf_t *b)
{
    s_put32 (b, S_SIGNATURE);
    cm_buf_append (b, "\x01\x00", 2);
    s_attr (b, S_LVL_MESSAGE, 0x00089006, "\0\0\1\0", 4);           /* attTnefVersion */
    s_attr (b, S_LVL_MESSAGE, S_ATT_CODEPAGE, "\xE4\x04\0\0\0\0\0\0", 8);   /* 1252 */
    s_attr (b, S_LVL_MESSAGE, S_ATT_BODY, "Please pay the attached invoice.\r\n", 34);
    /* the PDF */
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0\xFF\xFF\xFF\xFF\0\0\0\0\0\0\0\0", 14);
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_TITLE, "RECHNU~1.PDF", 13);
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_DATA, "%PDF-1.4 invoice\n", 17);
    cm_buf_t p;
    cm_buf_init (&p, 0);
    s_put32 (&p, 5);
    s_put32 (&p, 0x3705u << 16 | S_PT_LONG);            /* PR_ATTACH_METHOD 1 */
    s_put32 (&p, 1);
    s_put32 (&p, 0x1003u << 16 | 0x1003);               /* PT_MV_LONG, 2 values */
    s_put32 (&p, 2);
    s_put32 (&p, 7);
    s_put32 (&p, 9);
    s_put32 (&p, 0x8005u << 16 | S_PT_UNICODE);         /* named, by string */
    cm_buf_append (&p, "0123456789abcdef", 16);
    s_put32 (&p, 1);
    s_value (&p, "K\0e\0y\0\0", 8);
    s_put32 (&p, 1);
    s_value (&p, "v\0\0", 3);
    s_put32 (&p, (uint32_t) S_PR_ATTACH_LONG_FILENAME << 16 | S_PT_UNICODE);
    s_put32 (&p, 1);
    s_value (&p, s_long_utf16, sizeof s_long_utf16);
    s_put32 (&p, (uint32_t) S_PR_ATTACH_MIME_TAG << 16 | S_PT_STRING8);
    s_put32 (&p, 1);
    s_value (&p, "Application/PDF", 16);
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_ATTACHMENT, p.data, p.len);
    cm_buf_reset (&p);
    /* the 8.3 name only, in CP1252 */
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0\xFF\xFF\xFF\xFF\0\0\0\0\0\0\0\0", 14);
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_TITLE, "CAF\xC9.TXT", 9);
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_DATA, "menu\n", 5);
    /* an attached Outlook message */
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0\xFF\xFF\xFF\xFF\0\0\0\0\0\0\0\0", 14);
    s_put32 (&p, 3);
    s_put32 (&p, 0x3705u << 16 | S_PT_LONG);
    s_put32 (&p, S_ATTACH_EMBEDDED_MSG);
    s_put32 (&p, 0x3001u << 16 | S_PT_STRING8);         /* PR_DISPLAY_NAME */
    s_put32 (&p, 1);
    s_value (&p, "Fwd: login", 11);
    s_put32 (&p, (uint32_t) S_PR_ATTACH_DATA_OBJ << 16 | S_PT_OBJECT);
    s_put32 (&p, 1);
    s_put32 (&p, 16 + 10);
    cm_buf_append (&p, s_iid_message, 16);
    cm_buf_append (&p, "\x78\x9F\x3E\x22\1\0\1\0\0\0", 10);
    cm_buf_append (&p, "\0\0", 2);
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_ATTACHMENT, p.data, p.len);
    cm_buf_free (&p);
}

/* A message whose only part is the stream as winmail.dat. */
/* Appends a winmail.dat part holding tnef, base64, to b. -1 out of
   memory. */
static int
s_winmail_part (cm_buf_t *b, const unsigned char *tnef, size_t len)
{
    char *b64 = malloc (4 * (len / 3 + 1) + 1);
    if (!b64)
        return -1;
    EVP_EncodeBlock ((unsigned char *) b64, tnef, (int) len);
    int rc = cm_buf_printf (b, "Content-Type: application/ms-tnef; name=\"winmail.dat\"\n"
                            "Content-Transfer-Encoding: base64\n\n");
    for (size_t i = 0, n = strlen (b64); rc == 0 && i < n; i += 76)
        rc = cm_buf_printf (b, "%.76s\n", b64 + i);
    free (b64);
    return rc;
}

/* The same with one more part after the winmail.dat (NULL: none). */
static cm_message_t *
s_mail_then (const unsigned char *tnef, size_t len, const char *then,
             const cm_limits_t *limits, char *reason, size_t reasonlen)
{
    cm_buf_t body;
    cm_buf_init (&body, 0);
    cm_buf_printf (&body, "--B\n");
    bool ok = s_winmail_part (&body, tnef, len) == 0;
    if (then)
        cm_buf_printf (&body, "--B\n%s", then);
    cm_buf_printf (&body, "--B--\n");
    cm_message_t *m = !ok ? NULL
                    : cm_message_parse_parts ("Content-Type: multipart/mixed; boundary=B\n",
                                              body.data ? body.data : "", limits, reason, reasonlen);
    cm_buf_free (&body);
    return m;
}

static cm_message_t *
s_mail (const unsigned char *tnef, size_t len, const cm_limits_t *limits, char *reason,
        size_t reasonlen)
{
    return s_mail_then (tnef, len, NULL, limits, reason, reasonlen);
}

/* A stream with an RTF body (PR_RTF_COMPRESSED, the value given) among
   the message's properties, attBody when body, and files files "x". */
static void
s_rtf_sample (cm_buf_t *h, const void *rtf, size_t n, const char *body, int files)
{
    cm_buf_reset (h);
    s_put32 (h, S_SIGNATURE);
    cm_buf_append (h, "\1\0", 2);
    if (body)
        s_attr (h, S_LVL_MESSAGE, S_ATT_BODY, body, strlen (body));
    cm_buf_t p;
    cm_buf_init (&p, 0);
    s_put32 (&p, 1);
    s_put32 (&p, (uint32_t) S_PR_RTF_COMPRESSED << 16 | S_PT_BINARY);
    s_put32 (&p, 1);
    s_value (&p, rtf, n);
    s_attr (h, S_LVL_MESSAGE, S_ATT_MAPIPROPS, p.data, p.len);
    cm_buf_free (&p);
    for (int i = 0; i < files; i++) {
        s_attr (h, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
        s_attr (h, S_LVL_ATTACHMENT, S_ATT_TITLE, "X.TXT", 6);
        s_attr (h, S_LVL_ATTACHMENT, S_ATT_DATA, "x", 1);
    }
}

/* [MS-OXRTFCP] 3.1.1's example: "{\rtf1\ansi\ansicpg1252\pard hello world}\r\n" */
static const unsigned char s_rtf_hello [] = {
    0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5, 0xc7, 0xa7,
    0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42, 0x32, 0x0a, 0xf3, 0x20,
    0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0, 0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f,
    0xa0 };

/* Appends an attachment that is an attached Outlook message, its stream
   inner[0..n). */
static void
s_attach_message (cm_buf_t *b, const void *inner, size_t n)
{
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
    cm_buf_t p;
    cm_buf_init (&p, 0);
    s_put32 (&p, 2);
    s_put32 (&p, 0x3705u << 16 | S_PT_LONG);
    s_put32 (&p, S_ATTACH_EMBEDDED_MSG);
    s_put32 (&p, (uint32_t) S_PR_ATTACH_DATA_OBJ << 16 | S_PT_OBJECT);
    s_put32 (&p, 1);
    s_put32 (&p, (uint32_t) (16 + n));
    cm_buf_append (&p, s_iid_message, 16);
    cm_buf_append (&p, inner, n);
    cm_buf_append (&p, "\0\0\0", (4 - n % 4) % 4);
    s_attr (b, S_LVL_ATTACHMENT, S_ATT_ATTACHMENT, p.data, p.len);
    cm_buf_free (&p);
}

/* A stream whose attached Outlook message attaches one in turn, levels
   deep; the innermost has the text "bottom"; with rtf, every level has
   that RTF body (PR_RTF_COMPRESSED, n bytes). */
static void
s_chain_rtf (cm_buf_t *b, int levels, const void *rtf, size_t n)
{
    cm_buf_t inner;
    cm_buf_init (&inner, 0);
    if (levels > 1)
        s_chain_rtf (&inner, levels - 1, rtf, n);
    s_put32 (b, S_SIGNATURE);
    cm_buf_append (b, "\1\0", 2);
    if (rtf) {
        cm_buf_t p;
        cm_buf_init (&p, 0);
        s_put32 (&p, 1);
        s_put32 (&p, (uint32_t) S_PR_RTF_COMPRESSED << 16 | S_PT_BINARY);
        s_put32 (&p, 1);
        s_value (&p, rtf, n);
        s_attr (b, S_LVL_MESSAGE, S_ATT_MAPIPROPS, p.data, p.len);
        cm_buf_free (&p);
    }
    if (levels == 1) {
        s_attr (b, S_LVL_MESSAGE, S_ATT_BODY, "bottom", 6);
        cm_buf_free (&inner);
        return;
    }
    char subject [32];
    snprintf (subject, sizeof subject, "level %d", levels);
    s_attr (b, S_LVL_MESSAGE, S_ATT_SUBJECT, subject, strlen (subject) + 1);
    s_attach_message (b, inner.data, inner.len);
    cm_buf_free (&inner);
}

static void
s_chain (cm_buf_t *b, int levels)
{
    s_chain_rtf (b, levels, NULL, 0);
}

#define s_check cm_message_check

/* Outlook messages attached in TNEF, read as attached messages within
   the depth and the limit on attached messages. */
static int
s_embedded_selftest (bool verbose)
{
    int failures = 0;
    char reason [256] = "";
    cm_buf_t b;
    cm_buf_init (&b, 0);
    s_chain (&b, 3);
    cm_message_t *m = s_mail ((const unsigned char *) b.data, b.len, NULL, reason, sizeof reason);
    const cm_message_t *n1 = m && m->nnested == 1 ? m->nested [0] : NULL;
    const cm_message_t *n2 = n1 && n1->nnested == 1 ? n1->nested [0] : NULL;
    failures += s_check (n1 && n2 && m->nattachments == 2 && m->attachments [1].nested_index == 0
                         && strcmp (n1->subject, "level 2") == 0 && n1->nattachments == 1
                         && n1->attachments [0].nested_index == 0 && n1->attachments [0].parent_index == -1
                         && strcmp (n2->subject, "") == 0 && strcmp (n2->text, "bottom") == 0
                         && n2->nattachments == 0 && strcmp (n2->new_text, "bottom") == 0,
                         "tnef: attached Outlook messages read in turn as nested messages", verbose);
    cm_message_destroy (&m);

    /* deeper than the depth limit: kept as its stream, noted */
    cm_buf_reset (&b);
    s_chain (&b, 40);
    m = s_mail ((const unsigned char *) b.data, b.len, NULL, reason, sizeof reason);
    const cm_message_t *deep = m;
    int levels = 0;
    while (deep && deep->nnested == 1) {
        deep = deep->nested [0];
        levels++;
    }
    const cm_attachment_t *last = deep && deep->nattachments ? &deep->attachments [deep->nattachments - 1] : NULL;
    failures += s_check (m && levels == 30 && last && last->nested_index == -1 && last->note
                         && strstr (last->note, "not read: nested deeper than 32 levels"),
                         "tnef: attached Outlook messages stop at the depth limit (30 read"
                         " under a 32-level limit: the multipart and the winmail.dat count)", verbose);
    if (verbose)
        printf ("selftest: tnef deep %d levels [%s]\n", levels, last && last->note ? last->note : "-");
    cm_message_destroy (&m);

    /* the limit on attached messages */
    cm_limits_t limits;
    cm_limits_default (&limits);
    limits.max_nested_messages = 1;
    cm_buf_reset (&b);
    s_chain (&b, 3);
    m = s_mail ((const unsigned char *) b.data, b.len, &limits, reason, sizeof reason);
    n1 = m && m->nnested == 1 ? m->nested [0] : NULL;
    failures += s_check (n1 && n1->nnested == 0 && n1->nattachments == 1 && n1->attachments [0].note
                         && strcmp (n1->attachments [0].note, "an Outlook message attached in TNEF,"
                                    " not read: more than 1 attached messages; kept as its TNEF"
                                    " stream") == 0,
                         "tnef: attached Outlook messages count against the attached-message limit",
                         verbose);
    cm_message_destroy (&m);

    /* the allowance is shared by the levels: a level's RTF body counts
       before a deeper stream is read. Four levels, each with an RTF body
       of 10201 bytes in 1296 ('A', then 600 references of 17 bytes), in a
       message whose budget (4 times its size limit, S_BYTES_FACTOR in
       parser/message.c) holds three of them */
    cm_buf_t z;
    cm_buf_init (&z, 0);
    cm_buf_append (&z, "\xFE" "A", 2);
    size_t wpos = 208;
    int flags = 1;
    for (int k = 0; k < 601; k++) {
        if (flags == 8) {
            cm_buf_append (&z, "\xFF", 1);
            flags = 0;
        }
        unsigned v = k < 600 ? (unsigned) ((wpos + 4095) % 4096) << 4 | 15 : (unsigned) wpos << 4;
        unsigned char two [2] = { (unsigned char) (v >> 8), (unsigned char) v };
        cm_buf_append (&z, two, 2);
        wpos = (wpos + 17) % 4096;
        flags++;
    }
    uint32_t crc = 0;
    for (size_t k = 0; k < z.len; k++) {
        crc ^= (unsigned char) z.data [k];
        for (int j = 0; j < 8; j++)
            crc = crc & 1 ? crc >> 1 ^ 0xEDB88320u : crc >> 1;
    }
    cm_buf_t rtf;
    cm_buf_init (&rtf, 0);
    s_put32 (&rtf, (uint32_t) (12 + z.len));
    s_put32 (&rtf, 10201);
    s_put32 (&rtf, 0x75465A4Cu);
    s_put32 (&rtf, crc);
    cm_buf_append (&rtf, z.data, z.len);
    cm_buf_reset (&b);
    s_chain_rtf (&b, 4, rtf.data, rtf.len);
    cm_limits_default (&limits);
    limits.max_size = 9000;
    m = s_mail ((const unsigned char *) b.data, b.len, &limits, reason, sizeof reason);
    size_t held = 0, rtfs = 0, texts = 0;
    for (const cm_message_t *at = m; at; at = at->nnested ? at->nested [0] : NULL) {
        texts += strlen (at->text);
        for (size_t i = 0; i < at->nattachments; i++) {
            if (at != m || i > 0)       /* not the winmail.dat, a MIME part */
                held += at->attachments [i].size;
            rtfs += strcmp (at->attachments [i].filename, "body.rtf") == 0;
        }
    }
    failures += s_check (m && rtfs >= 1 && held <= 4 * (size_t) limits.max_size,
                         "tnef: the TNEF allowance is shared by attached Outlook messages:"
                         " each level's RTF body counts before the next is read", verbose);
    /* (and the innermost level's attBody, "bottom") */
    failures += s_check (m && strlen (m->text) == limits.max_size && texts == limits.max_size + 6,
                         "tnef: the RTF bodies' text, all levels, stops at the size limit", verbose);
    /* and the notes say so: the first level's text is cut, the next's
       left out (the RTF of each is kept whole as body.rtf) */
    const cm_message_t *m2 = m && m->nnested ? m->nested [0] : NULL;
    const char *note1 = m && m->nattachments ? m->attachments [0].note : NULL;
    const char *note2 = NULL;
    for (size_t i = 0; m && i < m->nattachments; i++)
        if (m->attachments [i].nested_index == 0)
            note2 = m->attachments [i].note;
    failures += s_check (note1 && strstr (note1, "RTF body read, its text cut at the message size limit")
                         && note2 && m2 && strstr (note2, "RTF body read, its text left out: the"
                                                   " message size limit was reached"),
                         "tnef: a cut RTF text, and one left out, say so in their notes", verbose);
    if (verbose)
        printf ("selftest: tnef cut notes [%s] [%s]\n", note1 ? note1 : "", note2 ? note2 : "");
    if (verbose)
        printf ("selftest: tnef shared %zu bytes in TNEF files, %zu RTF bodies, budget %zu,"
                " %zu bytes of text [%s]\n", held, rtfs, 4 * (size_t) limits.max_size, texts,
                m ? "" : reason);
    cm_message_destroy (&m);
    cm_buf_free (&rtf);
    cm_buf_free (&z);
    cm_buf_free (&b);
    return failures;
}

/* With -v: a parsed message's attachments, a line each. */
static void
s_list (const cm_message_t *m, const char *label, bool verbose)
{
    if (!m || !verbose)
        return;
    for (size_t i = 0; i < m->nattachments; i++)
        printf ("selftest: %s [%s] %s %zu %s\n", label, m->attachments [i].filename,
                m->attachments [i].content_type, m->attachments [i].size,
                m->attachments [i].note ? m->attachments [i].note : "-");
}

/* The RTF body: read alone and through the parser, within the budget
   and the files' allowance. */
static int
s_rtf_selftest (bool verbose)
{
    int failures = 0;
    char reason [256] = "";
    cm_buf_t h;
    cm_buf_init (&h, 0);
    s_rtf_sample (&h, s_rtf_hello, sizeof s_rtf_hello, NULL, 1);
    cm_tnef_t t;
    int rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 1 && !t.body && t.rtf && t.rtf_len == 43
                         && memcmp (t.rtf, "{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n", 43) == 0
                         && strcmp (t.rtf_note, "RTF body read") == 0 && !t.problem [0],
                         "tnef: PR_RTF_COMPRESSED decompressed after the files", verbose);
    cm_tnef_free (&t);
    rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 43, &t);
    failures += s_check (rc == 0 && t.nfiles == 1 && !t.rtf
                         && strcmp (t.rtf_note, "RTF body not read: its 43 bytes go over the"
                                    " decoded-bytes budget") == 0 && !t.problem [0],
                         "tnef: the RTF body gets what the files leave of the budget", verbose);
    cm_tnef_free (&t);

    cm_message_t *m = s_mail ((const unsigned char *) h.data, h.len, NULL, reason, sizeof reason);
    failures += s_check (m && strcmp (m->text, "hello world") == 0,
                         "tnef: an RTF body alone is the text of a message without one", verbose);
    failures += s_check (m && m->nattachments == 3
                         && strcmp (m->attachments [2].filename, "body.rtf") == 0
                         && strcmp (m->attachments [2].content_type, "application/rtf") == 0
                         && m->attachments [2].parent_index == 0 && m->attachments [2].size == 43
                         && m->attachments [0].note
                         && strcmp (m->attachments [0].note, "TNEF (winmail.dat): 2 files taken"
                                    " out; RTF body read") == 0,
                         "tnef: the RTF body kept as body.rtf under the winmail.dat, noted", verbose);
    s_list (m, "tnef rtf", verbose);
    cm_message_destroy (&m);

    /* the files' allowance full: the text still, no body.rtf */
    cm_limits_t limits;
    cm_limits_default (&limits);
    limits.max_parts = 2;   /* the multipart and winmail.dat; two files */
    s_rtf_sample (&h, s_rtf_hello, sizeof s_rtf_hello, NULL, 2);
    m = s_mail ((const unsigned char *) h.data, h.len, &limits, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 3 && strcmp (m->text, "hello world") == 0
                         && m->attachments [0].note
                         && strcmp (m->attachments [0].note, "TNEF (winmail.dat): 2 files taken out;"
                                    " RTF body read, not kept as a file: no files left in the"
                                    " message's TNEF allowance") == 0,
                         "tnef: with no file left, the RTF body gives the text, not a file", verbose);
    if (m && verbose)
        printf ("selftest: tnef rtf note [%s]\n", m->attachments [0].note);
    cm_message_destroy (&m);

    /* the RTF body's 8-bit text through the message's decoder: a code
       page per font, one iconv lacks read as CP1252, \'hh a byte in the
       code page even where the bytes would pass for UTF-8, \mac (CP10000,
       which iconv calls MACINTOSH) */
    static const char doc [] = "{\\rtf1\\ansi\\ansicpg99999{\\fonttbl{\\f1\\fcharset204 C;}}"
                               "caf\\'e9 {\\f1 \\'cf\\'f0\\'e8}\\~\\'c3\\'a9\\u8364 ?\\mac\\'8e}";
    cm_buf_t mela;
    cm_buf_init (&mela, 0);
    s_put32 (&mela, (uint32_t) (12 + sizeof doc - 1));
    s_put32 (&mela, (uint32_t) (sizeof doc - 1));
    s_put32 (&mela, 0x414C454Du);
    s_put32 (&mela, 0);
    cm_buf_append (&mela, doc, sizeof doc - 1);
    s_rtf_sample (&h, mela.data, mela.len, NULL, 0);
    m = s_mail ((const unsigned char *) h.data, h.len, NULL, reason, sizeof reason);
    failures += s_check (m && strcmp (m->text, "caf\xC3\xA9 \xD0\x9F\xD1\x80\xD0\xB8\xC2\xA0"
                                      "\xC3\x83\xC2\xA9\xE2\x82\xAC\xC3\xA9") == 0,
                         "tnef: the RTF body's text in the code pages of its fonts", verbose);
    if (m && verbose)
        printf ("selftest: tnef rtf code pages [%s]\n", m->text);
    cm_message_destroy (&m);
    cm_buf_free (&mela);

    /* attBody wins over the RTF body */
    s_rtf_sample (&h, s_rtf_hello, sizeof s_rtf_hello, "plain\r\n", 1);
    m = s_mail ((const unsigned char *) h.data, h.len, NULL, reason, sizeof reason);
    failures += s_check (m && strcmp (m->text, "plain\r\n") == 0 && m->nattachments == 3,
                         "tnef: attBody is the text even with an RTF body", verbose);
    cm_message_destroy (&m);

    /* damaged: cut after its first 30 bytes, with COMPSIZE saying more */
    s_rtf_sample (&h, s_rtf_hello, 30, NULL, 1);
    m = s_mail ((const unsigned char *) h.data, h.len, NULL, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 3 && m->attachments [0].note
                         && strcmp (m->attachments [0].note, "TNEF (winmail.dat): 2 files taken out;"
                                    " RTF body read in part (cut short before its end)") == 0
                         && m->attachments [2].size > 0 && m->attachments [2].size < 43,
                         "tnef: a cut RTF body: what came out is kept, the note says so", verbose);
    if (m && verbose)
        printf ("selftest: tnef rtf cut [%s] %zu\n", m->attachments [0].note,
                m->nattachments == 3 ? m->attachments [2].size : 0);
    cm_message_destroy (&m);
    cm_buf_free (&h);
    return failures;
}

/* Test helpers: one property of a list, its first and only value. */
static void
s_prop_var (cm_buf_t *p, unsigned id, unsigned type, const void *v, size_t n)
{
    s_put32 (p, (uint32_t) id << 16 | type);
    s_put32 (p, 1);
    s_value (p, v, n);
}

static void
s_prop_u32 (cm_buf_t *p, unsigned id, unsigned type, uint32_t v)
{
    s_put32 (p, (uint32_t) id << 16 | type);
    s_put32 (p, v);
}

/* A FILETIME of the Unix time epoch. */
static void
s_prop_time (cm_buf_t *p, unsigned id, long long epoch)
{
    uint64_t ft = (uint64_t) (epoch + 11644473600LL) * 10000000u;
    s_prop_u32 (p, id, S_PT_SYSTIME, (uint32_t) ft);
    s_put32 (p, (uint32_t) (ft >> 32));
}

/* attRecipTable's body: To "Ann Müller" (Unicode, SMTP, its type flagged
   MAPI_SUBMITTED), Cc "Björn" (8-bit, an email address), a Bcc, To "Doe,
   John" with an Exchange DN only, To with an email address before its
   SMTP one, and a row with no type. */
static void
s_recip_rows (cm_buf_t *r)
{
    s_put32 (r, 6);
    s_put32 (r, 3);
    s_prop_u32 (r, S_PR_RECIPIENT_TYPE, S_PT_LONG, 0x80000001u);
    s_prop_var (r, S_PR_DISPLAY_NAME, S_PT_UNICODE, "A\0n\0n\0 \0M\0\xFC\0l\0l\0""e\0r\0\0", 22);
    s_prop_var (r, S_PR_SMTP_ADDRESS, S_PT_UNICODE, "a\0n\0n\0@\0E\0x\0.\0O\0R\0G\0\0", 22);
    s_put32 (r, 4);
    s_prop_u32 (r, S_PR_RECIPIENT_TYPE, S_PT_LONG, 2);
    s_prop_u32 (r, 0x0FFF, S_PT_LONG, 7);         /* one it does not need */
    s_prop_var (r, S_PR_DISPLAY_NAME, S_PT_STRING8, "Bj\xF6rn", 6);
    s_prop_var (r, S_PR_EMAIL_ADDRESS, S_PT_STRING8, "bjorn@x.org", 12);
    s_put32 (r, 3);
    s_prop_u32 (r, S_PR_RECIPIENT_TYPE, S_PT_LONG, 3);
    s_prop_var (r, S_PR_DISPLAY_NAME, S_PT_STRING8, "Secret", 7);
    s_prop_var (r, S_PR_SMTP_ADDRESS, S_PT_STRING8, "secret@x.org", 13);
    s_put32 (r, 3);
    s_prop_u32 (r, S_PR_RECIPIENT_TYPE, S_PT_LONG, 1);
    s_prop_var (r, S_PR_DISPLAY_NAME, S_PT_STRING8, "Doe, John", 10);
    s_prop_var (r, S_PR_EMAIL_ADDRESS, S_PT_STRING8, "/O=EX/OU=FIRST/CN=RECIPIENTS/CN=JD", 35);
    s_put32 (r, 3);
    s_prop_u32 (r, S_PR_RECIPIENT_TYPE, S_PT_LONG, 1);
    s_prop_var (r, S_PR_EMAIL_ADDRESS, S_PT_STRING8, "first@x.org", 12);
    s_prop_var (r, S_PR_SMTP_ADDRESS, S_PT_STRING8, "smtp@x.org", 11);
    s_put32 (r, 1);
    s_prop_var (r, S_PR_DISPLAY_NAME, S_PT_STRING8, "Nobody", 7);
}

enum { S_HAS_TABLE = 1, S_HAS_SUBMIT = 2, S_HAS_DELIVERY = 4, S_HAS_DATESENT = 8,
       S_HAS_DISPLAY = 16 };

/* 2024-01-02 10:00:00 UTC, five minutes later, and an attDateSent an
   hour after the first */
#define S_T_SUBMIT   1704189600LL
#define S_T_DELIVERY 1704189900LL
#define S_T_SENT     1704193200LL

/* A stream with what has says (S_HAS_*), table the recipient table's
   body (else s_recip_rows'), datesent attDateSent's seven fields (else
   2024-01-02 11:00:00, a Tuesday), and a file "x". */
static void
s_recip_sample (cm_buf_t *h, int has, const cm_buf_t *table, const unsigned short *datesent)
{
    cm_buf_reset (h);
    s_put32 (h, S_SIGNATURE);
    cm_buf_append (h, "\1\0", 2);
    s_attr (h, S_LVL_MESSAGE, S_ATT_CODEPAGE, "\xE4\x04\0\0\0\0\0\0", 8);
    if (has & S_HAS_DATESENT) {
        static const unsigned short sent [7] = { 2024, 1, 2, 11, 0, 0, 2 };
        unsigned char d [14];
        for (int i = 0; i < 7; i++) {
            d [2 * i] = (unsigned char) (datesent ? datesent : sent) [i];
            d [2 * i + 1] = (unsigned char) ((datesent ? datesent : sent) [i] >> 8);
        }
        s_attr (h, S_LVL_MESSAGE, S_ATT_DATESENT, d, 14);
    }
    cm_buf_t p;
    cm_buf_init (&p, 0);
    s_put32 (&p, (uint32_t) (1 + !!(has & S_HAS_SUBMIT) + !!(has & S_HAS_DELIVERY)
                             + 2 * !!(has & S_HAS_DISPLAY)));
    s_prop_var (&p, S_PR_SUBJECT, S_PT_STRING8, "Minutes", 8);
    if (has & S_HAS_DELIVERY)
        s_prop_time (&p, S_PR_DELIVERY_TIME, S_T_DELIVERY);
    if (has & S_HAS_SUBMIT)
        s_prop_time (&p, S_PR_CLIENT_SUBMIT_TIME, S_T_SUBMIT);
    if (has & S_HAS_DISPLAY) {
        s_prop_var (&p, S_PR_DISPLAY_TO, S_PT_UNICODE,
                    "A\0n\0n\0 \0M\0\xFC\0l\0l\0""e\0r\0;\0 \0D\0o\0""e\0,\0 \0J\0o\0h\0n\0\0", 44);
        s_prop_var (&p, S_PR_DISPLAY_CC, S_PT_STRING8, "Bj\xF6rn", 6);
    }
    s_attr (h, S_LVL_MESSAGE, S_ATT_MAPIPROPS, p.data, p.len);
    cm_buf_reset (&p);
    if (has & S_HAS_TABLE) {
        if (!table)
            s_recip_rows (&p);
        s_attr (h, S_LVL_MESSAGE, S_ATT_RECIPTABLE, table ? table->data : p.data,
                table ? table->len : p.len);
    }
    cm_buf_free (&p);
    s_attr (h, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
    s_attr (h, S_LVL_ATTACHMENT, S_ATT_DATA, "x", 1);
}

static bool
s_text_is (const cm_tnef_text_t *v, const char *text, bool utf8)
{
    return text ? v->text && strcmp (v->text, text) == 0 && v->utf8 == utf8 : !v->text;
}

/* The attached Outlook message of a winmail.dat holding the stream
   inner[0..n), parsed within limits (NULL: the defaults), in *top (the caller destroys it); NULL when it
   was not read. */
static const cm_message_t *
s_nested_of (const cm_buf_t *inner, const cm_limits_t *limits, cm_message_t **top)
{
    char reason [256] = "";
    cm_buf_t b;
    cm_buf_init (&b, 0);
    s_put32 (&b, S_SIGNATURE);
    cm_buf_append (&b, "\1\0", 2);
    s_attach_message (&b, inner->data, inner->len);
    *top = s_mail ((const unsigned char *) b.data, b.len, limits, reason, sizeof reason);
    cm_buf_free (&b);
    return *top && (*top)->nnested == 1 ? (*top)->nested [0] : NULL;
}

/* A stream whose sender (PR_SENDER_NAME "Ann", PR_SENDER_SMTP addr)
   and one To row (PR_DISPLAY_NAME "Ann", PR_SMTP_ADDRESS addr, then
   PR_EMAIL_ADDRESS email when not NULL) give addr, and a file "x". */
static void
s_address_sample (cm_buf_t *h, const char *addr, const char *email)
{
    cm_buf_reset (h);
    s_put32 (h, S_SIGNATURE);
    cm_buf_append (h, "\1\0", 2);
    cm_buf_t p;
    cm_buf_init (&p, 0);
    s_put32 (&p, 2);
    s_prop_var (&p, S_PR_SENDER_NAME, S_PT_STRING8, "Ann", 4);
    s_prop_var (&p, S_PR_SENDER_SMTP, S_PT_STRING8, addr, strlen (addr) + 1);
    s_attr (h, S_LVL_MESSAGE, S_ATT_MAPIPROPS, p.data, p.len);
    cm_buf_reset (&p);
    s_put32 (&p, 1);
    s_put32 (&p, email ? 4 : 3);
    s_prop_u32 (&p, S_PR_RECIPIENT_TYPE, S_PT_LONG, 1);
    s_prop_var (&p, S_PR_DISPLAY_NAME, S_PT_STRING8, "Ann", 4);
    s_prop_var (&p, S_PR_SMTP_ADDRESS, S_PT_STRING8, addr, strlen (addr) + 1);
    if (email)
        s_prop_var (&p, S_PR_EMAIL_ADDRESS, S_PT_STRING8, email, strlen (email) + 1);
    s_attr (h, S_LVL_MESSAGE, S_ATT_RECIPTABLE, p.data, p.len);
    cm_buf_free (&p);
    s_attr (h, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
    s_attr (h, S_LVL_ATTACHMENT, S_ATT_DATA, "x", 1);
}

/* What is no address, as a recipient's or the sender's: the name alone
   stays, never a forged list of recipients. */
static int
s_address_selftest (bool verbose)
{
    int failures = 0;
    static const char *const bad [] = {
        "ann@x.org>, \"CEO\" <ceo@corp.com", "ann @x.org", "ann@x.org\tx", "ann@x\x01.org",
        "@x.org", "ann@", "ann", "a@b@x.org", "<ann@x.org>", "ann,bob@x.org", "ann;bob@x.org",
        "\"ann\"@x.org", "(c)ann@x.org", "ann@[10.0.0.1]", "ann\\@x.org", "Undisclosed:ann@x.org",
    };
    cm_buf_t h;
    cm_buf_init (&h, 0);
    cm_tnef_t t;
    bool all_refused = true;
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        s_address_sample (&h, bad [i], NULL);
        int rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
        bool ok = rc == 0 && t.nfiles == 1 && !t.from_addr.text && t.nrecips == 1
               && s_text_is (&t.recips [0].name, "Ann", false) && !t.recips [0].addr.text
               && s_text_is (&t.from_name, "Ann", false);
        if (!ok && verbose)
            printf ("selftest: tnef address taken: [%s]\n", bad [i]);
        all_refused = all_refused && ok;
        cm_tnef_free (&t);
    }
    failures += s_check (all_refused, "tnef: an address with white space, a control, a special"
                         " or no local part or domain is none, the sender's or a recipient's",
                         verbose);
    char longest [CM_TNEF_MAX_ADDRESS + 2];
    memset (longest, 'a', sizeof longest - 1);
    memcpy (longest + sizeof longest - 1 - 6, "@x.org", 7);
    s_address_sample (&h, longest, NULL);
    int rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nrecips == 1 && !t.recips [0].addr.text && !t.from_addr.text,
                         "tnef: an address of 255 bytes is none", verbose);
    cm_tnef_free (&t);
    longest [0] = 0;
    memmove (longest, longest + 1, sizeof longest - 1);
    s_address_sample (&h, longest, NULL);
    rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nrecips == 1 && s_text_is (&t.recips [0].addr, longest, false)
                         && s_text_is (&t.from_addr, longest, false),
                         "tnef: an address of 254 bytes is one", verbose);
    cm_tnef_free (&t);
    s_address_sample (&h, "ann@x.org>, \"CEO\" <ceo@corp.com", "ann.m\xFCller@x.org");
    rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nrecips == 1
                         && s_text_is (&t.recips [0].addr, "ann.m\xFCller@x.org", false),
                         "tnef: a row's SMTP address that is none gives way to its email"
                         " address", verbose);
    cm_tnef_free (&t);

    /* through the parser: the forged list is no recipient */
    cm_message_t *m = NULL;
    s_address_sample (&h, "ann@x.org>, \"CEO\" <ceo@corp.com", NULL);
    const cm_message_t *n = s_nested_of (&h, NULL, &m);
    failures += s_check (n && strcmp (n->to, "Ann") == 0 && n->nto == 0 && !*n->from_addr
                         && strcmp (n->from_name, "Ann") == 0,
                         "tnef: an attached Outlook message's forged address list adds no"
                         " recipient and no sender address", verbose);
    if (n && verbose)
        printf ("selftest: tnef forged to [%s] from [%s]\n", n->to, n->from_addr);
    cm_message_destroy (&m);
    cm_buf_free (&h);
    return failures;
}

/* A stream with a subject of 20,000 bytes, a sender named "x" and 300
   e-acutes (601 bytes), rows To and Cc in turn each named so and with
   an address (r0@x.org, ...), and a PR_DISPLAY_TO of names display
   names ("Name0000; Name0001"; with controls, every tenth of them
   only control characters, blank once cleaned), and a file "x". */
static void
s_big_sample (cm_buf_t *h, int rows, int names, bool controls)
{
    cm_buf_t p, big;
    cm_buf_init (&p, 0);
    cm_buf_init (&big, 0);
    cm_buf_reset (h);
    s_put32 (h, S_SIGNATURE);
    cm_buf_append (h, "\1\0", 2);
    s_put32 (&p, 3);
    for (int i = 0; i < 20000; i++)
        cm_buf_append (&big, "s", 1);
    s_prop_var (&p, S_PR_SUBJECT, S_PT_STRING8, big.data, big.len + 1);
    cm_buf_reset (&big);
    cm_buf_append (&big, "x\0", 2);
    for (int i = 0; i < 300; i++)
        cm_buf_append (&big, "\xE9\0", 2);
    cm_buf_append (&big, "\0\0", 2);
    s_prop_var (&p, S_PR_SENDER_NAME, S_PT_UNICODE, big.data, big.len);
    cm_buf_t list;
    cm_buf_init (&list, 0);
    for (int i = 0; i < names; i++)
        if (controls && i % 10 == 9)
            cm_buf_printf (&list, "%s\x01\x7F\x1B", i ? "; " : "");
        else
            cm_buf_printf (&list, "%sName%04d", i ? "; " : "", i);
    s_prop_var (&p, S_PR_DISPLAY_TO, S_PT_STRING8, list.len ? list.data : "", list.len + 1);
    cm_buf_free (&list);
    s_attr (h, S_LVL_MESSAGE, S_ATT_MAPIPROPS, p.data, p.len);
    if (rows) {
        cm_buf_reset (&p);
        s_put32 (&p, (uint32_t) rows);
        for (int i = 0; i < rows; i++) {
            char addr [32];
            int n = snprintf (addr, sizeof addr, "r%d@x.org", i);
            s_put32 (&p, 3);
            s_prop_u32 (&p, S_PR_RECIPIENT_TYPE, S_PT_LONG, 1 + i % 2);
            s_prop_var (&p, S_PR_DISPLAY_NAME, S_PT_UNICODE, big.data, big.len);
            s_prop_var (&p, S_PR_SMTP_ADDRESS, S_PT_STRING8, addr, (size_t) n + 1);
        }
        s_attr (h, S_LVL_MESSAGE, S_ATT_RECIPTABLE, p.data, p.len);
    }
    cm_buf_free (&big);
    cm_buf_free (&p);
    s_attr (h, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
    s_attr (h, S_LVL_ATTACHMENT, S_ATT_DATA, "x", 1);
}

/* The note of the attachment that holds top's attached message. */
static const char *
s_nested_note (const cm_message_t *top)
{
    for (size_t i = 0; top && i < top->nattachments; i++)
        if (top->attachments [i].nested_index == 0)
            return top->attachments [i].note;
    return NULL;
}

/* An attached Outlook message's header fields are as bounded as a MIME
   message's header section: names cut at 512 bytes on a character, the
   subject and the To and Cc lists in all at the header limit, the
   recipients left out counted in its note. */
static int
s_bounds_selftest (bool verbose)
{
    int failures = 0;
    cm_limits_t limits;
    cm_limits_default (&limits);
    limits.max_header_bytes = 8192;
    cm_buf_t h;
    cm_buf_init (&h, 0);
    cm_message_t *m = NULL;
    char name [600] = "x";
    for (int i = 0; i < 255; i++)
        memcpy (name + 1 + 2 * i, "\xC3\xA9", 3);     /* 511 bytes: 512 would cut an e */
    char first [640];
    snprintf (first, sizeof first, "%s <r0@x.org>, ", name);

    s_big_sample (&h, 100, 0, false);
    const cm_message_t *n = s_nested_of (&h, &limits, &m);
    const char *note = s_nested_note (m);
    char expect [128];
    snprintf (expect, sizeof expect, "message, %zu recipients left out (its To and Cc over 8192"
              " bytes); TNEF", n ? 100 - n->nto - n->ncc : 0);
    failures += s_check (n && strlen (n->to) + strlen (n->cc) <= 8192 && n->nto + n->ncc > 2
                         && n->nto + n->ncc < 100 && strncmp (n->to, first, strlen (first)) == 0
                         && note && strstr (note, expect),
                         "tnef: an attached Outlook message's recipients stop at the header limit,"
                         " its note counting those left out; names cut at 512 bytes", verbose);
    failures += s_check (n && strlen (n->subject) == 8192 && strcmp (n->from_name, name) == 0,
                         "tnef: an attached Outlook message's subject stops at the header limit,"
                         " its sender's name at 512 bytes", verbose);
    if (n && verbose)
        printf ("selftest: tnef bounded to %zu cc %zu subject %zu; %s\n", strlen (n->to),
                strlen (n->cc), strlen (n->subject), note ? note : "-");
    cm_message_destroy (&m);

    for (int k = 0; k < 2; k++) {
        /* the names left out are counted as read: a name of control
           characters alone is no name, there or in the list */
        s_big_sample (&h, 0, 5000, k == 1);
        n = s_nested_of (&h, &limits, &m);
        note = s_nested_note (m);
        size_t listed = 0;
        for (const char *p = n ? n->to : ""; (p = strstr (p, "Name")); p += 4)
            listed++;
        snprintf (expect, sizeof expect, "message, %zu recipients left out (its To and Cc over"
                  " 8192 bytes); TNEF", (k ? 4500 : 5000) - listed);
        size_t len = n ? strlen (n->to) : 0;
        failures += s_check (n && len <= 8192 && len > (k ? 7000u : 8000u) && listed > 100 && note
                             && strstr (note, expect) && strncmp (n->to + len - 8, "Name", 4) == 0
                             && !strchr (n->to, '\x01'),
                             k ? "tnef: PR_DISPLAY_TO's names of control characters alone are"
                                 " neither listed nor counted as left out"
                               : "tnef: PR_DISPLAY_TO's names stop at the header limit, none cut,"
                                 " its note counting those left out", verbose);
        if (n && verbose)
            printf ("selftest: tnef bounded display to %zu (%zu names); %s\n", len, listed,
                    note ? note : "-");
        cm_message_destroy (&m);
    }
    cm_buf_free (&h);
    return failures;
}

/* The recipients and the date of a message: its recipient table, else
   its display strings; its submit time, else its delivery time, else
   attDateSent; each within bounds, whatever the table says. */
static int
s_recip_selftest (bool verbose)
{
    int failures = 0;
    cm_buf_t h, table;
    cm_buf_init (&h, 0);
    cm_buf_init (&table, 0);
    cm_tnef_t t;
    int all = S_HAS_TABLE | S_HAS_SUBMIT | S_HAS_DELIVERY | S_HAS_DATESENT | S_HAS_DISPLAY;
    s_recip_sample (&h, all, NULL, NULL);
    int rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 1 && !t.problem [0] && t.nrecips == 4
                         && s_text_is (&t.recips [0].name, "Ann M\xC3\xBCller", true)
                         && s_text_is (&t.recips [0].addr, "ann@Ex.ORG", true) && !t.recips [0].cc
                         && s_text_is (&t.recips [1].name, "Bj\xF6rn", false)
                         && s_text_is (&t.recips [1].addr, "bjorn@x.org", false) && t.recips [1].cc
                         && s_text_is (&t.recips [2].name, "Doe, John", false)
                         && s_text_is (&t.recips [2].addr, NULL, false) && !t.recips [2].cc
                         && s_text_is (&t.recips [3].name, NULL, false)
                         && s_text_is (&t.recips [3].addr, "smtp@x.org", false),
                         "tnef: the recipient table's To and Cc rows (Bcc, an Exchange DN and a"
                         " row without a type left out; SMTP over email address)", verbose);
    failures += s_check (rc == 0 && t.dated && t.date == S_T_SUBMIT && !t.date_no_zone,
                         "tnef: the date is PR_CLIENT_SUBMIT_TIME first", verbose);
    cm_tnef_free (&t);

    /* the date's sources in turn, and out of range */
    const struct {
        int has;
        const unsigned short *sent;
        long long date;         /* -1: none */
        const char *what;
    } dates [] = {
        { S_HAS_DELIVERY | S_HAS_DATESENT, NULL, S_T_DELIVERY,
          "tnef: without a submit time, PR_MESSAGE_DELIVERY_TIME" },
        { S_HAS_DATESENT, NULL, S_T_SENT, "tnef: without either, attDateSent" },
        { 0, NULL, -1, "tnef: no date given, none" },
        { S_HAS_DATESENT, (const unsigned short []) { 2023, 2, 29, 0, 0, 0, 3 }, -1,
          "tnef: an attDateSent of February 29 in a common year is no date" },
        { S_HAS_DATESENT, (const unsigned short []) { 2024, 13, 1, 0, 0, 0, 0 }, -1,
          "tnef: an attDateSent of month 13 is no date" },
        { S_HAS_DATESENT, (const unsigned short []) { 1969, 12, 31, 23, 59, 59, 3 }, -1,
          "tnef: an attDateSent before 1970 is no date" },
        { S_HAS_DATESENT, (const unsigned short []) { 9999, 12, 31, 23, 59, 59, 5 },
          253402300799LL, "tnef: an attDateSent of 9999-12-31 23:59:59, the last date read" },
    };
    for (size_t i = 0; i < sizeof dates / sizeof dates [0]; i++) {
        s_recip_sample (&h, dates [i].has, NULL, dates [i].sent);
        rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
        failures += s_check (rc == 0 && t.nfiles == 1
                             && (dates [i].date < 0 ? !t.dated && t.date == 0
                                                    : t.dated && t.date == dates [i].date
                                                      && t.date_no_zone == (dates [i].has == S_HAS_DATESENT)),
                             dates [i].what, verbose);
        cm_tnef_free (&t);
    }

    /* FILETIMEs out of range: 0 (1601) and all ones (year 58457) are
       ignored, the next source taken */
    for (int round = 0; round < 2; round++) {
        cm_buf_reset (&h);
        s_put32 (&h, S_SIGNATURE);
        cm_buf_append (&h, "\1\0", 2);
        cm_buf_t p;
        cm_buf_init (&p, 0);
        s_put32 (&p, 2);
        s_prop_u32 (&p, S_PR_CLIENT_SUBMIT_TIME, S_PT_SYSTIME, round ? 0xFFFFFFFFu : 0);
        s_put32 (&p, round ? 0xFFFFFFFFu : 0);
        s_prop_time (&p, S_PR_DELIVERY_TIME, S_T_DELIVERY);
        s_attr (&h, S_LVL_MESSAGE, S_ATT_MAPIPROPS, p.data, p.len);
        cm_buf_free (&p);
        rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
        failures += s_check (rc == 0 && t.dated && t.date == S_T_DELIVERY,
                             round ? "tnef: a FILETIME past 9999 is ignored"
                                   : "tnef: a FILETIME of 0 (1601) is ignored", verbose);
        cm_tnef_free (&t);
    }

    /* every cut of the table, in a whole attribute: read within bounds,
       the rows before the cut kept, the file still taken */
    s_recip_rows (&table);
    bool cuts_ok = true;
    size_t kept = 0;
    for (size_t n = 0; cuts_ok && n <= table.len; n++) {
        cm_buf_t cut;
        cm_buf_init (&cut, 0);
        cm_buf_append (&cut, table.data, n);
        s_recip_sample (&h, S_HAS_TABLE, &cut, NULL);
        cm_buf_free (&cut);
        unsigned char *exact = malloc (h.len);     /* exact size: ASan sees overreads */
        memcpy (exact, h.data, h.len);
        if (cm_tnef_read (exact, h.len, 100, 1 << 20, &t) || t.nfiles != 1 || t.nrecips < kept
        ||  t.nrecips > 4 || (n == table.len && t.nrecips != 4) || t.problem [0])
            cuts_ok = false;
        kept = t.nrecips;
        cm_tnef_free (&t);
        free (exact);
    }
    failures += s_check (cuts_ok, "tnef: every cut of a recipient table is read within bounds,"
                         " the files still taken", verbose);

    /* a resend's duplicate row (MAPI_P1) is not listed */
    cm_buf_reset (&table);
    s_put32 (&table, 2);
    for (int i = 0; i < 2; i++) {
        s_put32 (&table, 3);
        s_prop_u32 (&table, S_PR_RECIPIENT_TYPE, S_PT_LONG, i ? S_MAPI_P1 | 1 : 1);
        s_prop_var (&table, S_PR_DISPLAY_NAME, S_PT_STRING8, "Ann", 4);
        s_prop_var (&table, S_PR_SMTP_ADDRESS, S_PT_STRING8, "ann@x.org", 10);
    }
    s_recip_sample (&h, S_HAS_TABLE, &table, NULL);
    rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nrecips == 1
                         && s_text_is (&t.recips [0].addr, "ann@x.org", false),
                         "tnef: a row flagged MAPI_P1, a resend's duplicate, is left out", verbose);
    cm_tnef_free (&t);

    /* a second recipient table is not read: each could add 4096 rows */
    s_recip_sample (&h, S_HAS_TABLE, NULL, NULL);
    cm_buf_reset (&table);
    s_recip_rows (&table);
    s_attr (&h, S_LVL_MESSAGE, S_ATT_RECIPTABLE, table.data, table.len);
    s_attr (&h, S_LVL_MESSAGE, S_ATT_RECIPTABLE, table.data, table.len);
    rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 1 && t.nrecips == 4 && !t.problem [0],
                         "tnef: only the first recipient table is read", verbose);
    cm_tnef_free (&t);

    /* counts that lie: rows over the cap, rows beyond the table, a row's
       properties beyond it */
    static const struct {
        const char *table;
        size_t len;
        const char *what;
    } lies [] = {
        { "\xFF\xFF\xFF\xFF", 4, "tnef: a recipient table of 2^32-1 rows reads nothing" },
        { "\x01\x10\0\0\0\0\0\0", 8, "tnef: a recipient table of 4097 rows reads nothing" },
        { "\x03\0\0\0\0\0\0\0", 8, "tnef: a recipient table of more rows than it holds reads nothing" },
        { "\x01\0\0\0\xFF\x0F\0\0\x03\0\x15\x0C\1\0\0\0", 16,
          "tnef: a row of more properties than it holds is left out" },
        { "\x01\0\0\0\x01\0\0\0\x1E\0\x01\x30\xFF\xFF\xFF\x0F", 16,
          "tnef: a row whose name is longer than the table is left out" },
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies [0]; i++) {
        cm_buf_reset (&table);
        cm_buf_append (&table, lies [i].table, lies [i].len);
        s_recip_sample (&h, S_HAS_TABLE | S_HAS_DISPLAY, &table, NULL);
        rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
        failures += s_check (rc == 0 && t.nfiles == 1 && t.nrecips == 0 && !t.problem [0]
                             && s_text_is (&t.display_to, "Ann M\xC3\xBCller; Doe, John", true),
                             lies [i].what, verbose);
        cm_tnef_free (&t);
    }

    /* through the parser: the attached message's to, cc and date as an
       attached .eml's would be */
    cm_message_t *m = NULL;
    s_recip_sample (&h, all, NULL, NULL);
    const cm_message_t *n = s_nested_of (&h, NULL, &m);
    failures += s_check (n && strcmp (n->to, "Ann M\xC3\xBCller <ann@ex.org>, \"Doe, John\","
                                      " smtp@x.org") == 0
                         && n->nto == 2 && strcmp (n->to_addrs [0], "ann@ex.org") == 0
                         && strcmp (n->to_addrs [1], "smtp@x.org") == 0
                         && strcmp (n->cc, "Bj\xC3\xB6rn <bjorn@x.org>") == 0 && n->ncc == 1
                         && strcmp (n->cc_addrs [0], "bjorn@x.org") == 0,
                         "tnef: an attached Outlook message's To and Cc from its recipient table",
                         verbose);
    failures += s_check (n && strcmp (n->date_text, "Tue, 02 Jan 2024 10:00:00 +0000") == 0
                         && n->date_epoch == S_T_SUBMIT,
                         "tnef: an attached Outlook message's date as a Date header", verbose);
    if (n && verbose)
        printf ("selftest: tnef nested to [%s] cc [%s] date [%s]\n", n->to, n->cc, n->date_text);
    cm_message_destroy (&m);
    s_recip_sample (&h, S_HAS_DISPLAY | S_HAS_DATESENT, NULL, NULL);
    n = s_nested_of (&h, NULL, &m);
    failures += s_check (n && strcmp (n->to, "Ann M\xC3\xBCller, \"Doe, John\"") == 0 && n->nto == 0
                         && strcmp (n->cc, "Bj\xC3\xB6rn") == 0 && n->ncc == 0,
                         "tnef: without a recipient table, the display strings' names, no"
                         " addresses", verbose);
    failures += s_check (n && strcmp (n->date_text, "Tue, 02 Jan 2024 11:00:00 -0000") == 0
                         && n->date_epoch == S_T_SENT,
                         "tnef: attDateSent is UTC, its sender's zone unknown (-0000)", verbose);
    if (n && verbose)
        printf ("selftest: tnef nested to [%s] cc [%s] date [%s]\n", n->to, n->cc, n->date_text);
    cm_message_destroy (&m);
    s_recip_sample (&h, 0, NULL, NULL);
    n = s_nested_of (&h, NULL, &m);
    failures += s_check (n && !*n->to && !*n->cc && !n->nto && !n->ncc && !*n->date_text
                         && n->date_epoch == 0,
                         "tnef: no recipients or date given: empty, as a .eml without them", verbose);
    cm_message_destroy (&m);
    cm_buf_free (&table);
    cm_buf_free (&h);
    return failures;
}

int
cm_tnef_selftest (bool verbose)
{
    int failures = cm_rtf_selftest (verbose) + s_rtf_selftest (verbose)
                 + s_embedded_selftest (verbose) + s_recip_selftest (verbose)
                 + s_address_selftest (verbose) + s_bounds_selftest (verbose);
    char reason [256] = "";
    cm_buf_t b;
    cm_buf_init (&b, 0);
    s_sample (&b);
    const unsigned char *sample = (const unsigned char *) b.data;

    /* the reader alone */
    cm_tnef_t t;
    int rc = cm_tnef_read (sample, b.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 3 && !t.problem [0] && !t.bad_checksums
                         && t.codepage == 1252 && t.skipped == 0, "tnef: three files, no problem",
                         verbose);
    failures += s_check (rc == 0 && t.nfiles == 3 && t.files [0].name_utf8
                         && strcmp (t.files [0].name, "Rechnung M\xC3\xA4rz.pdf") == 0
                         && strcmp (t.files [0].mime_type, "Application/PDF") == 0
                         && t.files [0].size == 17 && memcmp (t.files [0].data, "%PDF-1.4", 8) == 0,
                         "tnef: the long Unicode name and the MIME tag, past a multi-valued "
                         "and a named property", verbose);
    failures += s_check (rc == 0 && t.nfiles == 3 && !t.files [1].name_utf8
                         && strcmp (t.files [1].name, "CAF\xC9.TXT") == 0 && t.files [1].size == 5
                         && !t.files [1].mime_type,
                         "tnef: a file with its 8.3 name only", verbose);
    failures += s_check (rc == 0 && t.nfiles == 3 && t.files [2].embedded && t.files [2].size == 10
                         && cm_tnef_signature (t.files [2].data, t.files [2].size),
                         "tnef: an attached message is its TNEF stream", verbose);
    failures += s_check (rc == 0 && t.body && strcmp (t.body, "Please pay the attached invoice.\r\n") == 0,
                         "tnef: attBody", verbose);
    cm_tnef_free (&t);

    /* limits: files, bytes */
    rc = cm_tnef_read (sample, b.len, 1, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 1 && strcmp (t.problem, "more than 1 files") == 0,
                         "tnef: files stop at the limit", verbose);
    cm_tnef_free (&t);
    rc = cm_tnef_read (sample, b.len, 100, 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 1 && strstr (t.problem, "decoded-bytes budget"),
                         "tnef: bytes stop at the budget", verbose);
    cm_tnef_free (&t);

    /* every cut of the stream reads within bounds and says why it
       stopped, unless it falls between two attributes (a shorter
       stream, whole) */
    bool *between = calloc (b.len + 1, sizeof *between);
    for (size_t at = 6; between && at + 9 <= b.len; ) {
        between [at] = true;
        size_t len = (size_t) sample [at + 5] | (size_t) sample [at + 6] << 8
                   | (size_t) sample [at + 7] << 16 | (size_t) sample [at + 8] << 24;
        at += 9 + len + 2;
    }
    bool cuts_ok = between != NULL;
    for (size_t n = 0; cuts_ok && n < b.len; n++) {
        unsigned char *cut = malloc (n ? n : 1);    /* exact size: ASan sees overreads */
        memcpy (cut, sample, n);
        if (cm_tnef_read (cut, n, 100, 1 << 20, &t) || t.nfiles > 3
        ||  (!t.problem [0] && !between [n]))
            cuts_ok = false;
        cm_tnef_free (&t);
        free (cut);
    }
    free (between);
    failures += s_check (cuts_ok, "tnef: every truncation is read within bounds, and a cut"
                         " inside an attribute is named", verbose);

    /* a wrong checksum is counted, the files still come out */
    unsigned char *bad = malloc (b.len);
    memcpy (bad, sample, b.len);
    bad [6 + 9 + 4] ^= 1;      /* a byte of attTnefVersion's data */
    rc = cm_tnef_read (bad, b.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 3 && t.bad_checksums == 1 && !t.problem [0],
                         "tnef: a wrong checksum is counted, not fatal", verbose);
    cm_tnef_free (&t);
    free (bad);

    /* a property count that lies */
    cm_buf_t h;
    cm_buf_init (&h, 0);
    s_put32 (&h, S_SIGNATURE);
    cm_buf_append (&h, "\1\0", 2);
    s_attr (&h, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
    s_attr (&h, S_LVL_ATTACHMENT, S_ATT_DATA, "x", 1);
    s_attr (&h, S_LVL_ATTACHMENT, S_ATT_ATTACHMENT, "\xFF\xFF\xFF\x7F", 4);
    rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 1 && strstr (t.problem, "more than 4096"),
                         "tnef: a property count over the cap stops the reading", verbose);
    cm_tnef_free (&t);
    cm_buf_reset (&h);
    s_put32 (&h, S_SIGNATURE);
    cm_buf_append (&h, "\1\0", 2);
    s_attr (&h, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
    s_attr (&h, S_LVL_ATTACHMENT, S_ATT_ATTACHMENT,
            "\1\0\0\0\x1E\0\x07\x37\xFF\xFF\0\0", 12);     /* 65535 values in 0 bytes */
    rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
    failures += s_check (rc == 0 && t.nfiles == 0
                         && strcmp (t.problem, "a property list cut short") == 0,
                         "tnef: a value count beyond the list stops the reading", verbose);
    cm_tnef_free (&t);
    cm_buf_free (&h);

    /* no attBody: PR_BODY (here PT_UNICODE) of the message's properties;
       a message property list that does not add up stops nothing */
    cm_buf_init (&h, 0);
    for (int round = 0; round < 2; round++) {
        cm_buf_reset (&h);
        s_put32 (&h, S_SIGNATURE);
        cm_buf_append (&h, "\1\0", 2);
        cm_buf_t p;
        cm_buf_init (&p, 0);
        s_put32 (&p, 2);
        s_put32 (&p, 0x0E07u << 16 | S_PT_LONG);
        s_put32 (&p, 1);
        s_put32 (&p, (uint32_t) S_PR_BODY << 16 | (round ? 0x0999 : S_PT_UNICODE));
        s_put32 (&p, 1);
        s_value (&p, "H\0i\0\r\0\n\0\0", 10);
        s_attr (&h, S_LVL_MESSAGE, S_ATT_MAPIPROPS, p.data, p.len);
        cm_buf_free (&p);
        s_attr (&h, S_LVL_ATTACHMENT, S_ATT_RENDDATA, "\1\0", 2);
        s_attr (&h, S_LVL_ATTACHMENT, S_ATT_DATA, "x", 1);
        rc = cm_tnef_read ((const unsigned char *) h.data, h.len, 100, 1 << 20, &t);
        if (round == 0)
            failures += s_check (rc == 0 && t.nfiles == 1 && t.body && strcmp (t.body, "Hi\r\n") == 0
                                 && !t.problem [0], "tnef: PR_BODY of attMAPIProps when there is "
                                 "no attBody", verbose);
        else
            failures += s_check (rc == 0 && t.nfiles == 1 && !t.body && !t.problem [0],
                                 "tnef: damaged message properties do not stop the files", verbose);
        cm_tnef_free (&t);
    }
    cm_buf_free (&h);

    /* through the parser: files under the winmail.dat, attBody as text */
    cm_message_t *m = s_mail (sample, b.len, NULL, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 4
                         && strcmp (m->attachments [0].filename, "winmail.dat") == 0
                         && m->attachments [0].parent_index == -1
                         && m->attachments [1].parent_index == 0
                         && m->attachments [2].parent_index == 0
                         && m->attachments [3].parent_index == 0,
                         "tnef: winmail.dat kept, three files under it", verbose);
    failures += s_check (m && m->nattachments == 4 && m->attachments [0].note
                         && strcmp (m->attachments [0].note, "TNEF (winmail.dat): 3 files taken out") == 0,
                         "tnef: winmail.dat's note counts the files", verbose);
    failures += s_check (m && m->nattachments == 4
                         && strcmp (m->attachments [1].filename, "Rechnung M\xC3\xA4rz.pdf") == 0
                         && strcmp (m->attachments [1].content_type, "application/pdf") == 0
                         && m->attachments [1].size == 17 && !m->attachments [1].note
                         && strcmp (m->attachments [1].sha256,
                                    "51ab41ce8e86e2830dddfc47fb304b62721840cd9062a309ff8407c8adfc4d00") == 0,
                         "tnef: the PDF by its long name and MIME tag", verbose);
    failures += s_check (m && m->nattachments == 4
                         && strcmp (m->attachments [2].filename, "CAF\xC3\x89.TXT") == 0
                         && strcmp (m->attachments [2].content_type, "text/plain") == 0,
                         "tnef: an 8.3 name read in CP1252, typed by its name", verbose);
    failures += s_check (m && m->nattachments == 4
                         && strcmp (m->attachments [3].filename, "attached-message.tnef") == 0
                         && strcmp (m->attachments [3].content_type, "application/vnd.ms-tnef") == 0
                         && m->attachments [3].note && strstr (m->attachments [3].note, "not read"),
                         "tnef: an attached Outlook message kept with a note", verbose);
    failures += s_check (m && strcmp (m->text, "Please pay the attached invoice.\r\n") == 0,
                         "tnef: attBody is the text of a message without one", verbose);
    s_list (m, "tnef", verbose);
    cm_message_destroy (&m);

    /* the parts limit stops the files, not the message */
    cm_limits_t limits;
    cm_limits_default (&limits);
    limits.max_parts = 2;   /* the multipart and winmail.dat; two files */
    m = s_mail (sample, b.len, &limits, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 3 && m->attachments [0].note
                         && strcmp (m->attachments [0].note, "TNEF (winmail.dat): 2 files taken out; "
                                    "reading stopped: more than 2 files in the message's TNEF"
                                    " attachments") == 0,
                         "tnef: the parts limit stops the files, the message is kept", verbose);
    if (m && verbose)
        printf ("selftest: tnef note [%s]\n", m->attachments [0].note);
    cm_message_destroy (&m);

    /* the files take nothing from the parts and bytes a later part needs:
       with the parts limit at what the MIME parts use, a part after the
       winmail.dat is kept and the files still come out */
    static const char *then = "Content-Type: text/plain; name=\"after.txt\"\n"
                              "Content-Disposition: attachment\n\nafter the winmail.dat\n";
    limits.max_parts = 3;   /* the multipart, winmail.dat and after.txt */
    m = s_mail_then (sample, b.len, then, &limits, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 5
                         && strcmp (m->attachments [4].filename, "after.txt") == 0,
                         "tnef: a part after a winmail.dat is not pushed over a limit", verbose);
    if (!m && verbose)
        printf ("selftest: tnef rejected: %s\n", reason);
    cm_message_destroy (&m);

    /* the allowance is the message's, shared by all its TNEF streams:
       of a second winmail.dat, only what the first left comes out */
    cm_buf_t second;
    cm_buf_init (&second, 0);
    bool made = s_winmail_part (&second, sample, b.len) == 0;
    limits.max_parts = 4;   /* the multipart and two winmail.dat; four files */
    m = made ? s_mail_then (sample, b.len, second.data, &limits, reason, sizeof reason)
                    : NULL;
    failures += s_check (m && m->nattachments == 6 && m->attachments [4].note
                         && strcmp (m->attachments [4].note, "TNEF (winmail.dat): 1 file taken out;"
                                    " reading stopped: more than 4 files in the message's TNEF"
                                    " attachments") == 0,
                         "tnef: the files' allowance is shared by the message's TNEF streams",
                         verbose);
    if (m && verbose)
        for (size_t i = 0; i < m->nattachments; i++)
            printf ("selftest: tnef two [%s] %s\n", m->attachments [i].filename,
                    m->attachments [i].note ? m->attachments [i].note : "-");
    cm_message_destroy (&m);
    cm_buf_free (&second);

    /* not TNEF at all, and cut short */
    m = s_mail ((const unsigned char *) "\x89PNG\r\n\x1a\n", 8, NULL, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 1 && m->attachments [0].note
                         && strcmp (m->attachments [0].note,
                                    "TNEF (winmail.dat) kept as is: not TNEF: bad signature") == 0,
                         "tnef: a winmail.dat that is no TNEF is kept with a note", verbose);
    cm_message_destroy (&m);
    m = s_mail (sample, 100, NULL, reason, sizeof reason);
    failures += s_check (m && m->nattachments == 1 && m->attachments [0].note
                         && strstr (m->attachments [0].note, "kept as is: an attribute")
                         && strcmp (m->text, "Please pay the attached invoice.\r\n") == 0,
                         "tnef: a cut stream is kept with a note; what was read stands", verbose);
    if (m && verbose)
        printf ("selftest: tnef cut note [%s]\n", m->attachments [0].note);
    cm_message_destroy (&m);
    cm_buf_free (&b);
    return failures;
}
