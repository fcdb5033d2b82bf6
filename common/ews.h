/*  common/ews.h: Exchange Web Services client (SOAP 1.1 over libcurl,
    responses parsed namespace-aware with libxml2), for the inbound and
    outbound sides of an Exchange route. Facts and traps: EWS-NOTES.md.

    A client holds one libcurl easy handle for its life, so HTTP/1.1
    keep-alive keeps NTLM's three-message handshake and the authenticated
    connection. Authentication: BASIC, NTLM (asked for explicitly, never
    "any": Debian's libcurl would pick Negotiate) or OAUTH2 (bearer token
    from cm_oauth_token, ExchangeImpersonation + X-AnchorMailbox; a 401
    with error="invalid_token" invalidates the token and retries once).
    Version "other" negotiates: newest schema first, one step down on each
    ErrorInvalidServerVersion fault; the value that worked is kept.

    Ownership: cm_ews_new copies its strings but borrows oauth (it must
    outlive the client). Strings and arrays returned through pointers are
    malloc'd and owned by the caller (cm_ews_item_free for item arrays).
    Errors: 0 / -1 (and the documented codes) with a reason a person can
    act on, naming the server's ResponseCode (never its localized text).
    Threads: one client per thread; clients in different threads are
    independent. Secrets: password, client secret and tokens are registered
    with cm_log_secret; verbose traces show SOAP requests and answers with
    Authorization headers redacted and MIME bodies elided. */
#ifndef CM_EWS_H
#define CM_EWS_H
#include <stdbool.h>
#include <stddef.h>
#include "oauth.h"

typedef struct _cm_ews_t cm_ews_t;

/* Opens a client (no network yet). url: https://host:port/EWS/Exchange.asmx
   (http when the route's exchange_ssl is false). auth "basic"|"ntlm"|"oauth2".
   For oauth2, oauth != NULL (borrowed) and impersonate = the route's email.
   impersonate, when set, is sent as ExchangeImpersonation (PrimarySmtpAddress)
   + X-AnchorMailbox with any auth (a BASIC/NTLM service account with the
   ApplicationImpersonation role); NULL for a user's own mailbox.
   version: 2007sp1|2010|2010sp1|2010sp2 (or a schema value such as
   "Exchange2010_SP2"); "other", "" or NULL negotiates. NULL on bad
   arguments (unknown auth, version, URL scheme, oauth2 without oauth). */
cm_ews_t *cm_ews_new (const char *url, const char *auth, const char *username,
                      const char *password, cm_oauth_t *oauth, const char *impersonate,
                      const char *version, const char *ca_file, bool verbose,
                      const char *route);
void cm_ews_destroy (cm_ews_t **self_p);
/* The address outbound mail is sent from (the route's email). Optional:
   cm_ews_test_outbound puts it in the From of its draft, so a missing
   send-as right shows up (ErrorSendAsDenied). impersonate is the default. */
void cm_ews_set_sender (cm_ews_t *self, const char *email);
/* A request in flight is given up (an error) once *stop is non-zero: a
   route that stops does not wait out a silent server. */
void cm_ews_set_stop (cm_ews_t *self, volatile int *stop);
/* A request is given up (a temporary failure naming the stall and its
   phase) when no byte has moved for stall_ms while it was being sent or
   an answer other than a success (2xx) read; the wait for the answer in
   between, and the rest of a success, are exempt (the server may scan a
   message first; a success means it went out). 0: no watch (the
   default). */
void cm_ews_set_stall (cm_ews_t *self, long stall_ms);
/* The schema version in use ("Exchange2010_SP2", ...); while negotiating
   and before the first answer, the value that will be tried next. */
const char *cm_ews_version (cm_ews_t *self);
/* How long the last call's answer asked the client to wait before the
   next (a throttling fault's BackOffMilliseconds, at most 10 minutes); 0
   when it asked nothing. */
long cm_ews_backoff_ms (cm_ews_t *self);

/* TEST INBOUND: token (oauth2), then GetFolder of folder ("INBOX"/"inbox" ->
   distinguished inbox; other names -> FindFolder under msgfolderroot by
   DisplayName, "a/b" walks down); summary like "EWS https://host/EWS/Exchange.asmx
   (Exchange2010_SP2), folder INBOX (12 messages)". 0 / -1 with reason. */
int cm_ews_test_inbound (cm_ews_t *self, const char *folder, char *summary, size_t sumlen,
                         char *err, size_t errlen);
/* TEST OUTBOUND without sending: GetFolder sentitems, CreateItem SaveOnly of
   a draft (From = the sender address when known, To = itself) into drafts,
   then DeleteItem HardDelete of that draft. Proves authentication, mailbox
   access, the right to create items and, with a From, send-as. */
int cm_ews_test_outbound (cm_ews_t *self, char *summary, size_t sumlen, char *err, size_t errlen);
/* Resolves a folder name to a FolderId: malloc'd "id\tchangekey", or a
   distinguished id ("inbox"). 0 / -1 with reason. */
int cm_ews_folder_id (cm_ews_t *self, const char *folder, char **folder_id,
                      char *err, size_t errlen);

typedef struct { char *item_id; char *change_key; } cm_ews_item_t;
/* SyncFolderItems: new items since sync_state (NULL = from the start); max
   per call (1..512); fills a malloc'd array of created items (Create
   changes; Update/Delete/ReadFlagChange are ignored), *new_state (malloc'd)
   and *more (IncludesLastItemInRange false). 0 ok; 2 the server refused the
   state (ErrorInvalidSyncStateData: start again from NULL, relying on
   duplicate detection); -1 other errors. */
int cm_ews_sync (cm_ews_t *self, const char *folder_id, const char *sync_state, int max,
                 cm_ews_item_t **items, size_t *n, char **new_state, bool *more,
                 char *err, size_t errlen);
/* GetItem with MimeContent: the raw RFC 822 bytes (base64-decoded, *data
   NUL-terminated), 0. 1 = bigger than max_bytes (*len = its size, nothing
   kept). 2 = ErrorItemNotFound. 3 = this item cannot be had as MIME (an
   error of the item, not of the server: ErrorUnsupportedMimeConversion,
   no or empty MimeContent; reason in err). -1 error. Updates
   item->change_key. */
int cm_ews_get_mime (cm_ews_t *self, cm_ews_item_t *item, size_t max_bytes, char **data,
                     size_t *len, char *err, size_t errlen);
/* UpdateItem IsRead=true with the current ChangeKey (on a stale key the key
   is fetched again and the update retried once). 0 ok (item->change_key
   updated), 2 item gone, 3 the server refused it for this item (an error
   that is not transient; reason in err), -1 error. */
int cm_ews_mark_read (cm_ews_t *self, cm_ews_item_t *item, char *err, size_t errlen);
/* MoveItem to folder_id. 0 ok (item gets its new id and key: a moved item
   has a new ItemId), 2 item gone (already moved), 3 refused for this item
   (not transient; reason in err), -1 error. */
int cm_ews_move (cm_ews_t *self, cm_ews_item_t *item, const char *folder_id,
                 char *err, size_t errlen);
/* CreateItem SendAndSaveCopy into sentitems with the message as MimeContent.
   EWS returns no item id: correlate by the message's own Message-ID.
   0 sent; 1 temporary failure (ErrorServerBusy and other transient codes,
   HTTP 5xx, network, authentication or token failures: the route, not the
   message, is at fault); 2 permanent (reply holds the server's ResponseCode
   and MessageText). reply is also filled on 1. */
int cm_ews_send (cm_ews_t *self, const char *mime, size_t len, char *reply, size_t replylen);
void cm_ews_item_free (cm_ews_item_t *items, size_t n);
/* Offline: SOAP building, response/fault parsing, version mapping. */
int cm_ews_selftest (bool verbose);
#endif
