/*  parser/calendar.c: a calendar invitation as readable text.
    Outlook, Google Calendar and Teams send invitations whose only content
    is a text/calendar part (RFC 5545, method=REQUEST); the incident would
    have no description. cm_calendar_text() renders the first VEVENT (or
    VTODO, a task request) as a few labelled lines: folded lines joined (CRLF + space or tab), text
    values unescaped (\n \, \; \\), mailto: dropped from people.
    Bounded: at most CM_CALENDAR_MAX_BYTES and S_MAX_LINES content lines
    are read, each value is cut at a byte limit, and the attendees listed
    are capped (all are counted). Linear in what is read.
    Ownership: see parser/calendar.h. Errors: -1 only out of memory. */
#include "calendar.h"
#include "message.h"
#include "../common/buf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_MAX_LINES 10000       /* content lines read */
#define S_MAX_SHORT 512         /* bytes of a summary, location, person */
#define S_MAX_DESCRIPTION (32 * 1024)
#define S_MAX_LISTED 50         /* attendees named; the rest are counted */

/* One content line: NAME *(;PARAM) : VALUE. */
typedef struct {
    const char *name;
    size_t namelen;
    const char *params;   /* from the first ';' (or empty) up to the ':' */
    size_t paramslen;
    const char *value;
    size_t valuelen;
} s_prop_t;

/* What is kept of the event (or task). */
typedef struct {
    bool todo;            /* a VTODO: due, status and priority are shown */
    char *method, *summary, *start, *end, *location, *organizer, *description;
    char *due, *status, *priority;
    cm_buf_t attendees;   /* "a, b, c" of the first S_MAX_LISTED */
    size_t nattendees;
} s_event_t;

/* Splits a content line; false when it is not one (no name, no ':'). */
static bool
s_prop (const char *line, size_t len, s_prop_t *p)
{
    size_t k = 0;
    while (k < len && line [k] != ';' && line [k] != ':')
        k++;
    if (k == 0 || k == len)
        return false;
    p->name = line;
    p->namelen = k;
    size_t params = k;
    bool quoted = false;
    while (k < len && (quoted || line [k] != ':')) {
        if (line [k] == '"')
            quoted = !quoted;
        k++;
    }
    if (k == len)
        return false;
    p->params = line + params;
    p->paramslen = k - params;
    p->value = line + k + 1;
    p->valuelen = len - k - 1;
    return true;
}

static bool
s_is (const char *s, size_t len, const char *word)
{
    return strlen (word) == len && strncasecmp (s, word, len) == 0;
}

/* Value of parameter name in p's parameters, quotes removed. */
static bool
s_param (const s_prop_t *p, const char *name, const char **value, size_t *len)
{
    const char *s = p->params, *end = p->params + p->paramslen;
    while (s < end) {
        if (*s == ';')
            s++;
        const char *eq = s;
        while (eq < end && *eq != '=' && *eq != ';')
            eq++;
        const char *v = eq < end && *eq == '=' ? eq + 1 : eq;
        const char *ve = v;
        bool quoted = false;
        while (ve < end && (quoted || *ve != ';')) {
            if (*ve == '"')
                quoted = !quoted;
            ve++;
        }
        if (eq < end && *eq == '=' && s_is (s, (size_t) (eq - s), name)) {
            if (ve - v >= 2 && *v == '"' && ve [-1] == '"') {
                v++;
                ve--;
            }
            *value = v;
            *len = (size_t) (ve - v);
            return true;
        }
        s = ve;
    }
    return false;
}

/* Cuts s to at most max bytes on a UTF-8 boundary, marking the cut. */
static void
s_cut (char *s, size_t max)
{
    size_t n = strlen (s);
    if (n <= max)
        return;
    while (max && ((unsigned char) s [max] & 0xC0) == 0x80)
        max--;
    s [max] = 0;
    if (max >= 3)
        memcpy (s + max - 3, "...", 4);
}

/* A TEXT value unescaped (\n \N \, \; \\), at most max bytes; oneline
   turns line breaks into spaces. NULL out of memory. */
static char *
s_text (const char *v, size_t len, size_t max, bool oneline)
{
    cm_buf_t b;
    cm_buf_init (&b, 0);
    if (cm_buf_reserve (&b, len < max + 4 ? len : max + 4))
        return NULL;
    b.data [0] = 0;     /* a reservation alone leaves no terminator */
    for (size_t i = 0; i < len && b.len <= max; i++) {
        char c = v [i];
        if (c == '\\' && i + 1 < len) {
            char e = v [++i];
            c = e == 'n' || e == 'N' ? '\n' : e;
            if (c != '\n' && c != ',' && c != ';' && c != '\\') {
                cm_buf_append (&b, "\\", 1);   /* not an escape: as sent */
                c = e;
            }
        }
        if (c == '\r' || (oneline && c == '\n'))
            c = oneline ? ' ' : 0;
        if (c && cm_buf_append (&b, &c, 1)) {
            cm_buf_free (&b);
            return NULL;
        }
    }
    char *s = cm_buf_take (&b, NULL);
    if (s)
        s_cut (s, max);
    return s;
}

/* "Name <addr>" of an ORGANIZER or ATTENDEE (mailto: dropped), with its
   reply when it gave one. */
static char *
s_person (const s_prop_t *p)
{
    const char *addr = p->value;
    size_t alen = p->valuelen;
    if (alen >= 7 && strncasecmp (addr, "mailto:", 7) == 0) {
        addr += 7;
        alen -= 7;
    }
    const char *cn = NULL, *ps = NULL;
    size_t cnlen = 0, pslen = 0;
    s_param (p, "CN", &cn, &cnlen);
    s_param (p, "PARTSTAT", &ps, &pslen);
    cm_buf_t b;
    cm_buf_init (&b, 0);
    int rc = 0;
    if (cn && cnlen && !(cnlen == alen && strncasecmp (cn, addr, alen) == 0))
        rc = cm_buf_printf (&b, "%.*s <%.*s>", (int) cnlen, cn, (int) alen, addr);
    else
        rc = cm_buf_append (&b, addr, alen);
    if (!rc && ps && pslen && !s_is (ps, pslen, "NEEDS-ACTION")) {
        rc = cm_buf_printf (&b, " (%.*s)", (int) pslen, ps);
        for (size_t i = b.len - pslen - 1; !rc && i < b.len - 1; i++)
            if (b.data [i] >= 'A' && b.data [i] <= 'Z')
                b.data [i] = (char) (b.data [i] - 'A' + 'a');
    }
    char *s = rc ? NULL : cm_buf_take (&b, NULL);
    cm_buf_free (&b);
    if (s)
        s_cut (s, S_MAX_SHORT);
    return s;
}

/* A DTSTART or DTEND as given, with its TZID. */
static char *
s_time (const s_prop_t *p)
{
    const char *tz = NULL;
    size_t tzlen = 0;
    cm_buf_t b;
    cm_buf_init (&b, 0);
    int rc = s_param (p, "TZID", &tz, &tzlen) && tzlen
           ? cm_buf_printf (&b, "%.*s (%.*s)", (int) (p->valuelen < S_MAX_SHORT ? p->valuelen : S_MAX_SHORT),
                            p->value, (int) (tzlen < S_MAX_SHORT ? tzlen : S_MAX_SHORT), tz)
           : cm_buf_append (&b, p->value, p->valuelen < S_MAX_SHORT ? p->valuelen : S_MAX_SHORT);
    char *s = rc ? NULL : cm_buf_take (&b, NULL);
    cm_buf_free (&b);
    if (s)
        s_cut (s, S_MAX_SHORT * 2);
    return s;
}

/* A STATUS as words: "NEEDS-ACTION" is "needs action". */
static char *
s_status (const s_prop_t *p)
{
    char *s = s_text (p->value, p->valuelen, 32, true);
    for (char *c = s; c && *c; c++)
        *c = *c == '-' ? ' ' : *c >= 'A' && *c <= 'Z' ? (char) (*c - 'A' + 'a') : *c;
    return s;
}

/* A PRIORITY with its meaning (RFC 5545, 3.8.1.9): 1-4 high, 5 medium,
   6-9 low; 0 is none (an empty string). Anything else as given. */
static char *
s_priority (const s_prop_t *p)
{
    if (p->valuelen == 1 && p->value [0] >= '0' && p->value [0] <= '9') {
        int n = p->value [0] - '0';
        char text [16] = "";
        if (n)
            snprintf (text, sizeof text, "%d (%s)", n, n < 5 ? "high" : n == 5 ? "medium" : "low");
        return strdup (text);
    }
    return s_text (p->value, p->valuelen, 32, true);
}

/* Sets *field to the value made by make (first one wins). -1 out of memory. */
#define S_KEEP(field, make) \
    do { if (!(field) && !((field) = (make))) return -1; } while (0)

/* One property of the event. -1 out of memory. */
static int
s_event_prop (s_event_t *e, const s_prop_t *p)
{
    if (s_is (p->name, p->namelen, "SUMMARY"))
        S_KEEP (e->summary, s_text (p->value, p->valuelen, S_MAX_SHORT, true));
    else
    if (s_is (p->name, p->namelen, "LOCATION"))
        S_KEEP (e->location, s_text (p->value, p->valuelen, S_MAX_SHORT, true));
    else
    if (s_is (p->name, p->namelen, "DESCRIPTION"))
        S_KEEP (e->description, s_text (p->value, p->valuelen, S_MAX_DESCRIPTION, false));
    else
    if (s_is (p->name, p->namelen, "DTSTART"))
        S_KEEP (e->start, s_time (p));
    else
    if (s_is (p->name, p->namelen, "DTEND"))
        S_KEEP (e->end, s_time (p));
    else
    if (s_is (p->name, p->namelen, "DUE"))
        S_KEEP (e->due, s_time (p));
    else
    if (s_is (p->name, p->namelen, "STATUS"))
        S_KEEP (e->status, s_status (p));
    else
    if (s_is (p->name, p->namelen, "PRIORITY"))
        S_KEEP (e->priority, s_priority (p));
    else
    if (s_is (p->name, p->namelen, "ORGANIZER"))
        S_KEEP (e->organizer, s_person (p));
    else
    if (s_is (p->name, p->namelen, "ATTENDEE")) {
        if (e->nattendees++ >= S_MAX_LISTED)
            return 0;
        char *who = s_person (p);
        if (!who)
            return -1;
        int rc = (e->attendees.len && cm_buf_append (&e->attendees, ", ", 2))
              || cm_buf_append (&e->attendees, who, strlen (who));
        free (who);
        return rc ? -1 : 0;
    }
    return 0;
}

size_t
cm_calendar_unfold (char *s, size_t len)
{
    size_t w = 0;
    for (size_t r = 0; r < len; r++) {
        if (s [r] == '\r' && r + 2 < len && s [r + 1] == '\n' && (s [r + 2] == ' ' || s [r + 2] == '\t')) {
            r += 2;
            continue;
        }
        if (s [r] == '\n' && r + 1 < len && (s [r + 1] == ' ' || s [r + 1] == '\t')) {
            r += 1;
            continue;
        }
        s [w++] = s [r];
    }
    return w;
}

/* What the message is, by METHOD: for an event and for a task. */
static const struct {
    const char *method, *event, *task;
} s_kinds [] = {
    { "REQUEST", "Meeting invitation", "Task request" },
    { "CANCEL", "Meeting cancelled", "Task cancelled" },
    { "REPLY", "Meeting reply", "Task reply" },
    { "COUNTER", "Meeting counter-proposal", "Task counter-proposal" },
    { NULL, "Calendar event", "Task" },
};

static int
s_render (const s_event_t *e, char **out)
{
    size_t k = 0;
    while (s_kinds [k].method && !(e->method && !strcasecmp (e->method, s_kinds [k].method)))
        k++;
    cm_buf_t b;
    cm_buf_init (&b, 0);
    int rc = cm_buf_printf (&b, "%s", e->todo ? s_kinds [k].task : s_kinds [k].event);
    if (!rc && e->summary && *e->summary)
        rc = cm_buf_printf (&b, ": %s", e->summary);
    if (!rc && e->start && *e->start)
        rc = cm_buf_printf (&b, "\nStart: %s", e->start);
    if (!rc && e->end && *e->end)
        rc = cm_buf_printf (&b, "\nEnd: %s", e->end);
    if (!rc && e->todo && e->due && *e->due)
        rc = cm_buf_printf (&b, "\nDue: %s", e->due);
    if (!rc && e->todo && e->status && *e->status)
        rc = cm_buf_printf (&b, "\nStatus: %s", e->status);
    if (!rc && e->todo && e->priority && *e->priority)
        rc = cm_buf_printf (&b, "\nPriority: %s", e->priority);
    if (!rc && e->location && *e->location)
        rc = cm_buf_printf (&b, "\nLocation: %s", e->location);
    if (!rc && e->organizer && *e->organizer)
        rc = cm_buf_printf (&b, "\nOrganizer: %s", e->organizer);
    if (!rc && e->nattendees)
        rc = cm_buf_printf (&b, "\nAttendees (%zu): %s%s", e->nattendees,
                            e->attendees.data ? e->attendees.data : "",
                            e->nattendees > S_MAX_LISTED ? ", ..." : "");
    if (!rc && e->description && *e->description)
        rc = cm_buf_printf (&b, "\n\n%s", e->description);
    if (!rc)
        rc = cm_buf_append (&b, "\n", 1);
    *out = rc ? NULL : cm_buf_take (&b, NULL);
    cm_buf_free (&b);
    return *out ? 0 : -1;
}

int
cm_calendar_text (const char *ics, size_t len, const char *method, char **out)
{
    *out = NULL;
    if (len > CM_CALENDAR_MAX_BYTES)
        len = CM_CALENDAR_MAX_BYTES;
    char *copy = malloc (len + 1);
    if (!copy)
        return -1;
    memcpy (copy, ics, len);
    len = cm_calendar_unfold (copy, len);
    copy [len] = 0;
    s_event_t e;
    memset (&e, 0, sizeof e);
    cm_buf_init (&e.attendees, 0);
    int rc = 0, lines = 0, inner = 0;
    bool in_event = false, found = false;
    size_t pos = 0;
    while (pos < len && lines++ < S_MAX_LINES && !(found && !in_event)) {
        const char *line = copy + pos;
        const char *nl = memchr (line, '\n', len - pos);
        size_t n = nl ? (size_t) (nl - line) : len - pos;
        pos += n + 1;
        if (n && line [n - 1] == '\r')
            n--;
        s_prop_t p;
        if (!s_prop (line, n, &p))
            continue;
        bool begin = s_is (p.name, p.namelen, "BEGIN");
        if (begin || s_is (p.name, p.namelen, "END")) {
            if (!in_event) {
                e.todo = begin && s_is (p.value, p.valuelen, "VTODO");
                if (e.todo || (begin && s_is (p.value, p.valuelen, "VEVENT")))
                    in_event = found = true;
            }
            else
            if (begin)
                inner++;        /* VALARM and such: not the event's own */
            else
            if (inner)
                inner--;
            else
                in_event = false;
            continue;
        }
        if (!in_event) {
            if (!e.method && s_is (p.name, p.namelen, "METHOD")
            &&  !(e.method = s_text (p.value, p.valuelen, 32, true)))
                rc = -1;
        }
        else
        if (!inner)
            rc = s_event_prop (&e, &p);
        if (rc)
            break;
    }
    if (!rc && found && !e.method && method && !(e.method = s_text (method, strlen (method), 32, true)))
        rc = -1;
    if (!rc && found)
        rc = s_render (&e, out);
    free (e.method);
    free (e.summary);
    free (e.start);
    free (e.end);
    free (e.location);
    free (e.organizer);
    free (e.description);
    free (e.due);
    free (e.status);
    free (e.priority);
    cm_buf_free (&e.attendees);
    free (copy);
    return rc;
}

/* ------------------------------------------------------------ self-test */

#define s_check cm_message_check

static cm_message_t *
s_parse (const char *head, const char *body)
{
    return cm_message_parse_parts (head, body, NULL, NULL, 0);
}

/* An Outlook invitation: a time zone before the event, an alarm inside
   it, folds (one splitting a UTF-8 sequence, one with a tab), escapes. */
static const char s_outlook [] =
    "BEGIN:VCALENDAR\r\nPRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r\n"
    "VERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n"
    "BEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
    "BEGIN:VEVENT\r\nORGANIZER;CN=\"Doe, Ann\":mailto:ann@example.org\r\n"
    "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Bob Roe:MAILTO:bob@\r\n"
    " example.org\r\n"
    "ATTENDEE;PARTSTAT=ACCEPTED;CN=carol@example.org:mailto:carol@example.org\r\n"
    "DESCRIPTION;LANGUAGE=en-US:Please review the Q3 numbers\\, and\r\n"
    "\t the \\;list\\;.\\nJoin: https://teams.example/l/meetup-join/19%3ameeting\\n\\nC:\\\\share\r\n"
    "SUMMARY;LANGUAGE=en-US:Q3 review \xE2\x80\x93 caf\xC3\r\n \xA9\r\n"
    "DTSTART;TZID=W. Europe Standard Time:20240115T100000\r\n"
    "DTEND;TZID=W. Europe Standard Time:20240115T110000\r\n"
    "LOCATION:Room 4\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:REMINDER\r\n"
    "TRIGGER;RELATED=START:-PT15M\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

int
cm_calendar_selftest (bool verbose)
{
    int failures = 0;

    /* the only part is the invitation */
    cm_message_t *m = s_parse ("Content-Type: text/calendar; charset=utf-8; method=REQUEST\n"
                               "Content-Transfer-Encoding: 8bit\n", s_outlook);
    const char *want =
        "Meeting invitation: Q3 review \xE2\x80\x93 caf\xC3\xA9\n"
        "Start: 20240115T100000 (W. Europe Standard Time)\n"
        "End: 20240115T110000 (W. Europe Standard Time)\n"
        "Location: Room 4\nOrganizer: Doe, Ann <ann@example.org>\n"
        "Attendees (2): Bob Roe <bob@example.org>, carol@example.org (accepted)\n\n"
        "Please review the Q3 numbers, and the ;list;.\n"
        "Join: https://teams.example/l/meetup-join/19%3ameeting\n\nC:\\share\n";
    failures += s_check (m && strcmp (m->text, want) == 0,
                         "calendar: a text/calendar-only invitation gets a text body", verbose);
    if (m && verbose && strcmp (m->text, want) != 0)
        printf ("selftest: calendar text [%s]\n", m->text);
    failures += s_check (m && m->nattachments == 1
                         && strcmp (m->attachments [0].content_type, "text/calendar") == 0
                         && m->attachments [0].size == strlen (s_outlook),
                         "calendar: the .ics stays an attachment", verbose);
    cm_message_destroy (&m);

    /* multipart/alternative: a blank text part, an empty HTML part and
       the invitation, quoted-printable in windows-1252 */
    m = s_parse ("Content-Type: multipart/alternative; boundary=A\n",
                 "--A\nContent-Type: text/plain; charset=utf-8\n\n\n"
                 "--A\nContent-Type: text/html\n\n<html><body><p></p></body></html>\n"
                 "--A\nContent-Type: text/calendar; charset=windows-1252; method=CANCEL\n"
                 "Content-Transfer-Encoding: quoted-printable\n\n"
                 "BEGIN:VCALENDAR\nMETHOD:CANCEL\nBEGIN:VEVENT\nSUMMARY:Caf=E9 =96 talk\n"
                 "DTSTART;VALUE=DATE:20240301\nEND:VEVENT\nEND:VCALENDAR\n--A--\n");
    failures += s_check (m && strcmp (m->text, "Meeting cancelled: Caf\xC3\xA9 \xE2\x80\x93 talk\n"
                                               "Start: 20240301\n") == 0
                         && m->nattachments == 1,
                         "calendar: the only non-empty alternative, charset and QP decoded", verbose);
    if (m && verbose)
        printf ("selftest: calendar text [%s]\n", m->text);
    cm_message_destroy (&m);

    /* labelled application/ics, as some clients and servers send it */
    m = s_parse ("Content-Type: multipart/mixed; boundary=A\n",
                 "--A\nContent-Type: text/plain\n\n\n"
                 "--A\nContent-Type: application/ics; name=invite.ics\n"
                 "Content-Disposition: attachment; filename=invite.ics\n\n"
                 "BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nSUMMARY:Review\n"
                 "DTSTART:20240301T100000Z\nEND:VEVENT\nEND:VCALENDAR\n--A--\n");
    failures += s_check (m && strstr (m->text, "Review") && strstr (m->text, "20240301T100000Z")
                         && m->nattachments == 1,
                         "calendar: an application/ics invitation is described too", verbose);
    if (m && verbose)
        printf ("selftest: calendar text [%s]\n", m->text);
    cm_message_destroy (&m);

    /* a body with text keeps it */
    m = s_parse ("Content-Type: multipart/mixed; boundary=A\n",
                 "--A\nContent-Type: text/plain\n\nAgenda below.\n"
                 "--A\nContent-Type: text/calendar; method=REQUEST\n\n"
                 "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n--A--\n");
    failures += s_check (m && strcmp (m->text, "Agenda below.") == 0 && m->nattachments == 1,
                         "calendar: a body with text is left as it is", verbose);
    cm_message_destroy (&m);

    /* a task request (VTODO): due, status and priority too; an alarm's
       description is not the task's */
    m = s_parse ("Content-Type: text/calendar; charset=utf-8\n",
                 "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VTODO\r\n"
                 "ORGANIZER;CN=Ann:mailto:ann@example.org\r\n"
                 "ATTENDEE;PARTSTAT=IN-PROCESS;CN=Bob:mailto:bob@example.org\r\n"
                 "SUMMARY:Rotate the VPN keys\r\nDTSTART:20240110T090000Z\r\n"
                 "DUE;TZID=Europe/Berlin:20240112T170000\r\nSTATUS:NEEDS-ACTION\r\n"
                 "PRIORITY:1\r\nDESCRIPTION:Old keys leaked\\, see INC-4.\r\n"
                 "BEGIN:VALARM\r\nTRIGGER:-PT1H\r\nDESCRIPTION:ALARM\r\nEND:VALARM\r\n"
                 "END:VTODO\r\nBEGIN:VEVENT\r\nSUMMARY:later\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n");
    want = "Task request: Rotate the VPN keys\nStart: 20240110T090000Z\n"
           "Due: 20240112T170000 (Europe/Berlin)\nStatus: needs action\nPriority: 1 (high)\n"
           "Organizer: Ann <ann@example.org>\nAttendees (1): Bob <bob@example.org> (in-process)\n\n"
           "Old keys leaked, see INC-4.\n";
    failures += s_check (m && strcmp (m->text, want) == 0 && m->nattachments == 1,
                         "calendar: a task request (VTODO) is described", verbose);
    if (m && verbose && strcmp (m->text, want) != 0)
        printf ("selftest: calendar text [%s]\n", m->text);
    cm_message_destroy (&m);
    static const struct { const char *method, *ics, *want; } tasks [] = {
        { "CANCEL", "BEGIN:VTODO\nSUMMARY:x\nSTATUS:CANCELLED\nPRIORITY:0\nEND:VTODO\n",
          "Task cancelled: x\nStatus: cancelled\n" },
        { "REPLY", "BEGIN:VTODO\nSUMMARY:y\nSTATUS:COMPLETED\nPRIORITY:7\nDUE;VALUE=DATE:20240301\n"
          "END:VTODO\n", "Task reply: y\nDue: 20240301\nStatus: completed\nPriority: 7 (low)\n" },
        { "PUBLISH", "BEGIN:VTODO\nPRIORITY:5\nEND:VTODO\n", "Task\nPriority: 5 (medium)\n" },
        { NULL, "BEGIN:VTODO\nPRIORITY:urgent\nSTATUS:\nEND:VTODO\n", "Task\nPriority: urgent\n" },
        /* an event's STATUS and PRIORITY are not shown, as before */
        { "REQUEST", "BEGIN:VEVENT\nSUMMARY:z\nSTATUS:CONFIRMED\nPRIORITY:1\nEND:VEVENT\n"
          "BEGIN:VTODO\nSUMMARY:t\nEND:VTODO\n", "Meeting invitation: z\n" },
    };
    for (size_t i = 0; i < sizeof tasks / sizeof tasks [0]; i++) {
        char head [128];
        snprintf (head, sizeof head, "Content-Type: text/calendar%s%s\n",
                  tasks [i].method ? "; method=" : "", tasks [i].method ? tasks [i].method : "");
        m = s_parse (head, tasks [i].ics);
        char what [96];
        snprintf (what, sizeof what, "calendar: task %zu (%s) described", i,
                  tasks [i].method ? tasks [i].method : "no method");
        failures += s_check (m && strcmp (m->text, tasks [i].want) == 0, what, verbose);
        if (m && verbose && strcmp (m->text, tasks [i].want) != 0)
            printf ("selftest: calendar text [%s]\n", m->text);
        cm_message_destroy (&m);
    }

    /* many attendees: all counted, the first 50 named */
    cm_buf_t b;
    cm_buf_init (&b, 0);
    cm_buf_printf (&b, "BEGIN:VEVENT\n");
    for (int i = 0; i < 60; i++)
        cm_buf_printf (&b, "ATTENDEE:mailto:a%d@x.org\n", i);
    cm_buf_printf (&b, "END:VEVENT\n");
    m = s_parse ("Content-Type: text/calendar\n", b.data ? b.data : "");
    failures += s_check (m && strncmp (m->text, "Calendar event\nAttendees (60): a0@x.org, a1@x.org", 48) == 0
                         && strstr (m->text, "a49@x.org, ...\n") && !strstr (m->text, "a50@"),
                         "calendar: 60 attendees counted, 50 named", verbose);
    cm_message_destroy (&m);
    cm_buf_free (&b);

    /* garbage: no crash, no event, no text made up */
    static const char *garbage [] = {
        "",
        "\xFF\xFE\x00garbage ::::;;;;\"\"\"\n",
        "BEGIN:VCALENDAR\nSUMMARY:not in an event\nEND:VCALENDAR\n",
        "END:VEVENT\nEND:VTODO\nBEGIN:VJOURNAL\nSUMMARY:x\nEND:VJOURNAL\n",
        ":\n;\n;:\n:VEVENT\nBEGIN\nBEGIN;X=\"a:b\n",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage [0]; i++) {
        m = s_parse ("Content-Type: text/calendar; method=REQUEST\n", garbage [i]);
        char what [96];
        snprintf (what, sizeof what, "calendar: garbage %zu gives no event text", i);
        failures += s_check (m && strcmp (m->text, "") == 0 && m->nattachments == 1, what, verbose);
        cm_message_destroy (&m);
    }
    static const char *odd [] = {
        "BEGIN:VEVENT",
        "BEGIN:VEVENT\nSUMMARY:\nLOCATION:\nDESCRIPTION:\nORGANIZER:\nATTENDEE:\nEND:VEVENT\n",
        ("BEGIN:VEVENT\nATTENDEE;CN=\"unterminated:mailto:x\nSUMMARY:\\\nORGANIZER;CN=\"\":\n"
         "DTSTART;TZID=:\nBEGIN:VALARM\nEND:VEVENT\nDESCRIPTION:\\n\\\\\\x\n"),
    };
    for (size_t i = 0; i < sizeof odd / sizeof odd [0]; i++) {
        m = s_parse ("Content-Type: text/calendar\n", odd [i]);
        char what [96];
        snprintf (what, sizeof what, "calendar: broken event %zu read without harm", i);
        failures += s_check (m && strncmp (m->text, "Calendar event", 14) == 0, what, verbose);
        if (m && verbose)
            printf ("selftest: calendar text [%s]\n", m->text);
        cm_message_destroy (&m);
    }
    /* a description folded 200,000 times is cut */
    cm_buf_init (&b, 0);
    cm_buf_printf (&b, "BEGIN:VEVENT\nSUMMARY:long\nDESCRIPTION:");
    for (int i = 0; i < 200000; i++)
        cm_buf_append (&b, "\r\n x", 4);
    cm_buf_printf (&b, "\r\nEND:VEVENT\r\n");
    m = s_parse ("Content-Type: text/calendar\n", b.data ? b.data : "");
    failures += s_check (m && strncmp (m->text, "Calendar event: long\n\nxxx", 25) == 0
                         && strlen (m->text) < S_MAX_DESCRIPTION + 100,
                         "calendar: an endless description is cut", verbose);
    cm_message_destroy (&m);
    cm_buf_free (&b);
    return failures;
}
