/*  parser/calendar.h: a calendar invitation as readable text
    (parser/calendar.c).
    Ownership: cm_calendar_text() hands back malloc'd text the caller frees.
    Errors: -1 only when memory runs out. */
#ifndef CM_CALENDAR_H
#define CM_CALENDAR_H
#include <stdbool.h>
#include <stddef.h>

/* Bytes of a text/calendar part that are read at most. */
#define CM_CALENDAR_MAX_BYTES (256 * 1024)

/* The first VEVENT or VTODO of iCalendar text (UTF-8, len bytes) as
   lines a person reads: what kind of message (METHOD), summary, start
   and end (as given, with their TZID), for a task its due time, status
   and priority, location, organizer, attendees and the description.
   method (may be NULL) is the part's Content-Type method, for a calendar
   that names none. *out gets the text, or NULL when there is no event
   or task.
   Reads at most CM_CALENDAR_MAX_BYTES and a bounded number of lines.
   0, or -1 out of memory. */
int cm_calendar_text (const char *ics, size_t len, const char *method, char **out);

/* Joins folded lines (CRLF or LF, then a space or tab) in place, before
   the bytes are read in their charset: a fold may split a UTF-8
   sequence. Returns the new length. */
size_t cm_calendar_unfold (char *s, size_t len);

/* Offline unit tests; returns the failures. */
int cm_calendar_selftest (bool verbose);
#endif
