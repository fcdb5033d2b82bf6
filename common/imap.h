/*  common/imap.h: IMAP client of the inbound side of a route, on libcurl.

    A session holds two connections to the mailbox:
    - a control connection: libcurl logs in (TLS, CAPABILITY, SASL/LOGIN)
      with CURLOPT_CONNECT_ONLY and hands it over; this module then runs
      its own tagged commands on it (CAPABILITY, NAMESPACE, LIST, SELECT,
      UID SEARCH, UID FETCH n (FLAGS RFC822.SIZE), UID STORE, UID MOVE,
      IDLE, NOOP) and parses only line-oriented answers;
    - a body connection: ordinary libcurl URL transfers
      imap(s)://host:port/FOLDER;UIDVALIDITY=v;UID=n on one easy handle
      kept for the session, so the login and SELECT are reused. Message
      bodies never travel on the control connection (see DESIGN.md,
      Known traps).

    Ownership: a session copies what it needs from the cm_mailserver_t;
    buffers returned through pointers are malloc'd and owned by the caller.
    Errors: functions return 0 / -1 (or the documented codes) and write a
    reason a person can read into err; reasons for connection failures
    follow the wording the router prints after
    "Failed to test Service connectivity: ".
    Threads: a session is used by one thread at a time; sessions in
    different threads are independent. No secret is ever logged. */
#ifndef CM_IMAP_H
#define CM_IMAP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include "mailserver.h"
#include "mailcurl.h"

typedef struct _cm_imap_t cm_imap_t;

/* Connects, logs in, checks the folder (exists, not read-only, not a
   subfolder, not in a shared mailbox) and SELECTs it. NULL with a reason
   in err. folder is UTF-8; it is sent in modified UTF-7. */
cm_imap_t *cm_imap_open (const cm_mailserver_t *srv, const char *folder,
                         char *err, size_t errlen);
/* Inbound connection test: open + checks, then a one line summary like
   "imaps://host:993, folder INBOX (12 messages)". 0 ok, -1 with reason. */
int cm_imap_test (const cm_mailserver_t *srv, const char *folder,
                  char *summary, size_t sumlen, char *err, size_t errlen);
/* The same, and then the route's processed folder when it has one (NULL:
   none): the summary says whether it exists or the first move will try
   to create it; a name that can't be sent, a folder that can't hold
   messages (\Noselect), a refused LIST or a broken connection fail. */
int cm_imap_test_route (const cm_mailserver_t *srv, const char *folder,
                        const char *processed, char *summary, size_t sumlen,
                        char *err, size_t errlen);

/* What the last SELECT (and later untagged answers) said; 0 if unknown. */
uint64_t cm_imap_uidvalidity (cm_imap_t *self);
uint64_t cm_imap_uidnext (cm_imap_t *self);
/* The highest UID the folder holds now: UIDNEXT - 1 of the SELECT, or,
   from a server that gave none (or one over 2^32), the last message's UID
   (FETCH *); 0 for an empty folder. 0 ok, 1 not known (the server refused
   FETCH *), -1 connection broken (reason in err). */
int cm_imap_top_uid (cm_imap_t *self, uint64_t *top, char *err, size_t errlen);
uint64_t cm_imap_exists (cm_imap_t *self);
/* The server greeted PREAUTH (RFC 9051 7.1.4): the session was logged in
   before any command, as over a tunnel; no username or password was sent. */
bool cm_imap_preauth (cm_imap_t *self);

/* UID SEARCH UNDELETED for UIDs >= from_uid, and <= to_uid unless that
   is 0 (and SINCE when since is "YYYY-MM-DD"). Fills *uids with a malloc'd ascending array (NULL when
   *count is 0), at most max_uids entries (0 = no limit): the lowest ones,
   the rest come next time (the next cm_imap_wait then returns 1 at once).
   With max_uids, a folder of more messages than that is searched in
   windows of UIDs (up to the last message's, FETCH *), so that no answer
   holds more than
   64 * max_uids UIDs however big the folder; a server that refuses
   FETCH * gets one open-ended search. Runs NOOP first, as servers show
   new messages only at a sync point. 0 ok, -1 with reason. */
int cm_imap_search (cm_imap_t *self, uint64_t from_uid, uint64_t to_uid,
                    const char *since, size_t max_uids, uint64_t **uids,
                    size_t *count, char *err, size_t errlen);

/* Fetches the raw message UID through a URL transfer on the body
   connection. Reads FLAGS and RFC822.SIZE first on the control connection:
   - 0: *data is a malloc'd NUL-terminated copy of *len bytes;
   - 1: the message is bigger than max_bytes; *too_big is true and *len its
        size (nothing downloaded when the server announced the size);
   - 2: no message with that UID (expunged);
   - -1: error, reason in err.
   URL fetches use BODY[], which sets \Seen unless the body session is
   read-only (see cm_imap_prefetch); when peek is true, the message was not
   \Seen before and the session was read-write (libcurl logged in again),
   it is remembered, and cm_imap_restore_unseen() removes \Seen again
   from all of them in one command (call it after each batch). */
int cm_imap_fetch (cm_imap_t *self, uint64_t uid, size_t max_bytes, bool peek,
                   char **data, size_t *len, bool *too_big,
                   char *err, size_t errlen);
/* Reads FLAGS and RFC822.SIZE of a batch of UIDs (ascending) in one
   command; cm_imap_fetch() then needs no command of its own for them.
   0 ok, -1 with reason. */
int cm_imap_prefetch (cm_imap_t *self, const uint64_t *uids, size_t n,
                      char *err, size_t errlen);
/* Logs the body connection in and opens the folder read-only now, rather
   than at the first batch, so a server that allows no more sessions says
   so at once. 0 ok, -1 with reason. */
int cm_imap_body_open (cm_imap_t *self, char *err, size_t errlen);
/* Marks a batch of UIDs (ascending) \Seen / moves them, in one command on
   the control connection. (cm_imap_prefetch() brings the body connection
   up to date once per batch, read-only so its BODY[] sets no \Seen, and
   drains the flag news these commands cause there, so libcurl never meets
   an unsolicited FETCH it can't parse: a NOOP after up to
   CM_IMAP_NOOP_NEWS_MAX changes, an EXAMINE after more. Past some 160
   to 190 news lines, libcurl 7.88 drops the connection on a NOOP's
   answer: measured with Dovecot 2.3, lines of \Seen alone.) */
#define CM_IMAP_NOOP_NEWS_MAX 64
int cm_imap_mark_seen_set (cm_imap_t *self, const uint64_t *uids, size_t n,
                           char *err, size_t errlen);
int cm_imap_move_set (cm_imap_t *self, const uint64_t *uids, size_t n,
                      const char *folder, char *err, size_t errlen);
/* Removes \Seen from the messages fetched with peek that were unread.
   0 ok, -1 with reason. */
int cm_imap_restore_unseen (cm_imap_t *self, char *err, size_t errlen);
/* UID STORE uid +FLAGS.SILENT (\Seen). 0 ok, -1 with reason. */
int cm_imap_mark_seen (cm_imap_t *self, uint64_t uid, char *err, size_t errlen);
/* Moves uid into folder: UID MOVE when offered, else UID COPY, \Deleted and
   UID EXPUNGE (UIDPLUS; without UIDPLUS the copy stays flagged \Deleted
   and is not expunged, so other messages are never expunged by us).
   0 ok, -1 with reason. */
int cm_imap_move (cm_imap_t *self, uint64_t uid, const char *folder,
                  char *err, size_t errlen);
/* 1 the folder exists and can hold messages, 0 no, -1 error. */
int cm_imap_folder_exists (cm_imap_t *self, const char *folder,
                           char *err, size_t errlen);
/* Waits for new mail up to timeout_ms: IDLE when offered, else NOOP every
   CM_IMAP_POLL_MS. 1 new mail (EXISTS grew, also when it grew during an
   earlier command), 0 timeout or *stop, -1 connection broken (reason in
   err). Notices *stop within about 200 ms. Keep timeout_ms well below the
   29 minutes of RFC 2177. */
int cm_imap_wait (cm_imap_t *self, int timeout_ms, volatile int *stop,
                  char *err, size_t errlen);
#define CM_IMAP_POLL_MS 10000
/* NOOP on the control connection: 0 alive, -1 broken (reason in err). */
int cm_imap_noop (cm_imap_t *self, char *err, size_t errlen);
/* How many times the body connection logged in (1 once it was used; more
   when libcurl found it broken and opened a new one), and how often it
   was opened again with EXAMINE rather than brought up to date by NOOP. */
void cm_imap_body_stats (cm_imap_t *self, size_t *logins, size_t *examines);
/* Logs out and frees; safe on NULL, nulls *self_p. */
void cm_imap_destroy (cm_imap_t **self_p);
/* Offline tests of parsers, encoders and the reason mapping; 0 ok. */
int cm_imap_selftest (bool verbose);

#endif
