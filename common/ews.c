/*  common/ews.c: Exchange Web Services client (see ews.h, EWS-NOTES.md).

    Every operation goes through s_call: it wraps the operation element in
    a SOAP 1.1 envelope (RequestServerVersion in the t: namespace, optional
    ExchangeImpersonation), POSTs it on the client's one easy handle and
    sorts the answer: HTTP 200 -> parsed document; 401 -> token renewal
    (oauth2, once) or an authentication reason; 500 with a SOAP fault ->
    version step-down (when negotiating) or a reason keyed on the fault's
    ResponseCode; anything else -> a reason with the HTTP status.
    Answers are capped (16 MB, or the MIME limit for GetItem) and parsed by
    libxml2 without network access, entity substitution or DTDs.

    Ownership and errors: see ews.h. Every returned reason names the
    server's code; MessageText (localized) is only appended for context. */
#include "ews.h"
#include "buf.h"
#include "imap.h"
#include "log.h"
#include "mailcurl.h"
#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NS_S "http://schemas.xmlsoap.org/soap/envelope/"
#define NS_M "http://schemas.microsoft.com/exchange/services/2006/messages"
#define NS_T "http://schemas.microsoft.com/exchange/services/2006/types"
#define NS_E "http://schemas.microsoft.com/exchange/services/2006/errors"

#define ANSWER_MAX      (16u * 1024 * 1024)   /* any answer but MIME */
#define MIME_MAX        (64u * 1024 * 1024)   /* largest message fetched or sent */
#define TRACE_MAX       6000                  /* bytes of XML per trace line */
#define HDR_MAX         2048                  /* kept WWW-Authenticate text */
#define EWS_BACKOFF_MAX_MS 600000             /* the most of a server's BackOffMilliseconds heeded */

/* Newest first: "other" starts at 0 and steps down (EWS-NOTES section 2). */
static const char *s_versions [] = {
    "Exchange2016", "Exchange2013_SP1", "Exchange2013", "Exchange2010_SP2",
    "Exchange2010_SP1", "Exchange2010", "Exchange2007_SP1"
};
#define NVERSIONS ((int) (sizeof s_versions / sizeof s_versions [0]))

typedef enum { AUTH_BASIC, AUTH_NTLM, AUTH_OAUTH2 } s_auth_t;

struct _cm_ews_t {
    char *url;                  /* https://host:port/EWS/Exchange.asmx */
    char host [256];            /* from url, for reasons */
    int port;
    s_auth_t auth;
    char *username;             /* DOMAIN\user or UPN (basic, ntlm) */
    char *password;             /* clear, registered for redaction */
    cm_oauth_t *oauth;          /* borrowed (oauth2) */
    char *impersonate;          /* ExchangeImpersonation address or NULL */
    char *sender;               /* From of the outbound test draft or NULL */
    int version;                /* index into s_versions in use */
    bool negotiate;             /* "other": step down on version faults */
    char *ca_file;
    bool verbose;
    char *route;
    CURL *h;                    /* one handle: keep-alive, NTLM per connection */
    cm_mailcurl_ctx_t ctx;      /* errbuf for cm_mailcurl_reason */
    cm_buf_t answer;            /* body of the current answer */
    char www_auth [HDR_MAX];    /* WWW-Authenticate values of the last answer */
    char diag [512];            /* x-ms-diagnostics of the last answer */
    long backoff_ms;            /* the last fault's BackOffMilliseconds */
    long retry_after_ms;        /* Retry-After of the last answer (seconds form), 0 none */
    volatile int *stop;         /* cm_ews_set_stop */
    long stall_ms;              /* cm_ews_set_stall: 0 none */
    struct {                    /* the stall watch of the request in flight */
        int64_t last_move_ms;   /* when a byte last moved (or the call began) */
        curl_off_t ul, dl;      /* the counts seen then */
        bool answering;         /* the server's answer has begun */
        char why [200];         /* the stall and its phase, once seen */
    } watch;
};

/* A parsed SOAP answer. */
typedef struct {
    xmlDocPtr doc;
    xmlNodePtr op;              /* first element in s:Body (response or Fault) */
    bool fault;                 /* op is s:Fault */
    char code [128];            /* fault ResponseCode (detail, else faultcode) */
    char text [256];            /* fault message */
    long backoff_ms;            /* the server's BackOffMilliseconds, 0 none */
} s_answer_t;

/* ---------------------------------------------------------------------- */
/*  Small helpers                                                         */
/* ---------------------------------------------------------------------- */

static pthread_once_t s_xml_once = PTHREAD_ONCE_INIT;

static void
s_xml_init (void)
{
    xmlInitParser ();
}

static char *
s_dup (const char *s)
{
    return s ? strdup (s) : NULL;
}

/* Appends s XML-escaped (text and attribute values); characters XML 1.0
   can't carry are dropped. */
static int
s_esc (cm_buf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *) (s ? s : ""); *p; p++) {
        const char *rep = NULL;
        switch (*p) {
            case '&': rep = "&amp;"; break;
            case '<': rep = "&lt;"; break;
            case '>': rep = "&gt;"; break;
            case '"': rep = "&quot;"; break;
            case '\'': rep = "&apos;"; break;
            default: break;
        }
        if (rep) {
            if (cm_buf_append (b, rep, strlen (rep)))
                return -1;
        }
        else if (*p >= 0x20 || *p == '\t' || *p == '\n' || *p == '\r') {
            if (cm_buf_append (b, p, 1))
                return -1;
        }
    }
    return 0;
}

static const char s_b64 [] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
s_b64_encode (cm_buf_t *b, const unsigned char *in, size_t len)
{
    char chunk [4096];
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t) in [i] << 16;
        if (i + 1 < len)
            v |= (uint32_t) in [i + 1] << 8;
        if (i + 2 < len)
            v |= in [i + 2];
        chunk [o++] = s_b64 [(v >> 18) & 63];
        chunk [o++] = s_b64 [(v >> 12) & 63];
        chunk [o++] = i + 1 < len ? s_b64 [(v >> 6) & 63] : '=';
        chunk [o++] = i + 2 < len ? s_b64 [v & 63] : '=';
        if (o + 4 > sizeof chunk) {
            if (cm_buf_append (b, chunk, o))
                return -1;
            o = 0;
        }
    }
    return o ? cm_buf_append (b, chunk, o) : 0;
}

/* Decodes base64 (whitespace ignored) into a malloc'd NUL-terminated
   buffer. -1 on bad input. */
static int
s_b64_decode (const char *in, size_t inlen, char **out, size_t *outlen)
{
    char *buf = malloc (inlen / 4 * 3 + 4);
    if (!buf)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int n = 0, pad = 0;
    for (size_t i = 0; i < inlen; i++) {
        unsigned char c = (unsigned char) in [i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = cm_base64_value (c);
        if (pad || v < 0) {
            free (buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t) v;
        if (++n == 4) {
            buf [o++] = (char) (acc >> 16);
            buf [o++] = (char) (acc >> 8);
            buf [o++] = (char) acc;
            acc = 0;
            n = 0;
        }
    }
    if (n == 1 || pad > 2) {
        free (buf);
        return -1;
    }
    if (n == 2)
        buf [o++] = (char) (acc >> 4);
    else if (n == 3) {
        buf [o++] = (char) (acc >> 10);
        buf [o++] = (char) (acc >> 2);
    }
    buf [o] = 0;
    *out = buf;
    *outlen = o;
    return 0;
}

/* Copies xml into out with the content of every MimeContent element
   replaced by "[N bytes of MIME]", at most TRACE_MAX bytes. */
static void
s_elide (const char *xml, size_t len, cm_buf_t *out)
{
    size_t i = 0;
    while (i < len && out->len < TRACE_MAX) {
        const char *tag = memmem (xml + i, len - i, "MimeContent", 11);
        if (!tag) {
            cm_buf_append (out, xml + i, len - i);
            break;
        }
        size_t at = (size_t) (tag - xml);
        const char *gt = memchr (tag, '>', len - at);
        bool start = at > 0 && (xml [at - 1] == '<' || xml [at - 1] == ':')
                  && gt && gt [-1] != '/';
        if (start) {
            /* a start tag: check it is not the closing one */
            size_t k = at;
            while (k > 0 && xml [k - 1] != '<')
                k--;
            if (k > 0 && xml [k] == '/')
                start = false;
        }
        if (!start) {
            size_t upto = gt ? (size_t) (gt - xml) + 1 : len;
            cm_buf_append (out, xml + i, upto - i);
            i = upto;
            continue;
        }
        size_t content = (size_t) (gt - xml) + 1;
        const char *lt = memchr (xml + content, '<', len - content);
        size_t end = lt ? (size_t) (lt - xml) : len;
        cm_buf_append (out, xml + i, content - i);
        cm_buf_printf (out, "[%zu bytes of MIME]", end - content);
        i = end;
    }
    if (out->len >= TRACE_MAX || out->overflow)
        cm_buf_printf (out, "...");
}

static void
s_trace_xml (cm_ews_t *self, const char *dir, const char *xml, size_t len)
{
    if (!self->verbose)
        return;
    cm_buf_t out;
    cm_buf_init (&out, TRACE_MAX + 64);
    s_elide (xml, len, &out);
    cm_trace (true, self->route, "ews %s %s", dir, out.data ? out.data : "");
    cm_buf_free (&out);
}

/* ---------------------------------------------------------------------- */
/*  XML reading                                                           */
/* ---------------------------------------------------------------------- */

static bool
s_is (xmlNodePtr n, const char *ns, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href
        && strcmp ((const char *) n->ns->href, ns) == 0
        && strcmp ((const char *) n->name, name) == 0;
}

static xmlNodePtr
s_first (xmlNodePtr parent)
{
    for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            return c;
    return NULL;
}

static xmlNodePtr
s_next (xmlNodePtr n)
{
    for (n = n ? n->next : NULL; n; n = n->next)
        if (n->type == XML_ELEMENT_NODE)
            return n;
    return NULL;
}

static xmlNodePtr
s_child (xmlNodePtr parent, const char *ns, const char *name)
{
    for (xmlNodePtr c = s_first (parent); c; c = s_next (c))
        if (s_is (c, ns, name))
            return c;
    return NULL;
}

/* First descendant (depth first) with that name. */
static xmlNodePtr
s_find (xmlNodePtr n, const char *ns, const char *name)
{
    for (xmlNodePtr c = s_first (n); c; c = s_next (c)) {
        if (s_is (c, ns, name))
            return c;
        xmlNodePtr d = s_find (c, ns, name);
        if (d)
            return d;
    }
    return NULL;
}

/* Text of n into out (trimmed, truncated); "" when n is NULL. */
static void
s_text (xmlNodePtr n, char *out, size_t size)
{
    out [0] = 0;
    if (!n)
        return;
    xmlChar *t = xmlNodeGetContent (n);
    if (!t)
        return;
    const char *s = (const char *) t;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    snprintf (out, size, "%s", s);
    size_t l = strlen (out);
    while (l && (out [l - 1] == ' ' || out [l - 1] == '\r' || out [l - 1] == '\n'
                 || out [l - 1] == '\t'))
        out [--l] = 0;
    xmlFree (t);
}

/* Attribute value as a malloc'd string or NULL. */
static char *
s_attr (xmlNodePtr n, const char *name)
{
    if (!n)
        return NULL;
    xmlChar *v = xmlGetNoNsProp (n, (const xmlChar *) name);
    if (!v)
        return NULL;
    char *copy = strdup ((const char *) v);
    xmlFree (v);
    return copy;
}

/* Throttling: the BackOffMilliseconds of a MessageXml (a fault's detail
   has t:MessageXml, an error ResponseMessage m:MessageXml) as
   <t:Value Name="BackOffMilliseconds">n</t:Value>; at most
   EWS_BACKOFF_MAX_MS, 0 when there is none. */
static long
s_backoff (xmlNodePtr message_xml)
{
    long found = 0;
    for (xmlNodePtr v = s_first (message_xml); v; v = s_next (v)) {
        char *name = s_is (v, NS_T, "Value") ? s_attr (v, "Name") : NULL;
        if (name && strcmp (name, "BackOffMilliseconds") == 0) {
            char num [32];
            s_text (v, num, sizeof num);
            long ms = strtol (num, NULL, 10);
            found = ms > 0 ? (ms > EWS_BACKOFF_MAX_MS ? EWS_BACKOFF_MAX_MS : ms) : 0;
        }
        free (name);
    }
    return found;
}

static void
s_answer_free (s_answer_t *a)
{
    if (a->doc)
        xmlFreeDoc (a->doc);
    memset (a, 0, sizeof *a);
}

/* True when the prolog (before the root element) holds a DOCTYPE. */
static bool
s_has_doctype (const char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        char c = p [i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || (unsigned char) c == 0xEF
            || (unsigned char) c == 0xBB || (unsigned char) c == 0xBF) {
            i++;
            continue;
        }
        if (c != '<' || i + 1 >= len)
            return false;
        if (p [i + 1] == '?' || (i + 3 < len && memcmp (p + i, "<!--", 4) == 0)) {
            const char *end = p [i + 1] == '?' ? memmem (p + i, len - i, "?>", 2)
                                               : memmem (p + i, len - i, "-->", 3);
            if (!end)
                return false;
            i = (size_t) (end - p) + 2;
            continue;
        }
        return p [i + 1] == '!';     /* <!DOCTYPE or anything else odd */
    }
    return false;
}

/* Parses a SOAP answer. 0: a->op is the first element of s:Body (a fault
   fills code/text); -1: not a SOAP envelope (reason in err). */
static int
s_parse (const char *data, size_t len, s_answer_t *a, char *err, size_t errlen)
{
    memset (a, 0, sizeof *a);
    pthread_once (&s_xml_once, s_xml_init);
    if (!data || !len) {
        snprintf (err, errlen, "empty answer");
        return -1;
    }
    if (s_has_doctype (data, len)) {
        snprintf (err, errlen, "answer carries a DTD (refused)");
        return -1;
    }
    if (len > INT32_MAX) {
        snprintf (err, errlen, "answer too large");
        return -1;
    }
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;
    if (len > 8u * 1024 * 1024)
        opts |= XML_PARSE_HUGE;     /* MimeContent text nodes beyond 10 MB */
    a->doc = xmlReadMemory (data, (int) len, "ews-answer.xml", NULL, opts);
    if (!a->doc) {
        snprintf (err, errlen, "answer is not well-formed XML");
        return -1;
    }
    if (a->doc->intSubset || a->doc->extSubset) {
        snprintf (err, errlen, "answer carries a DTD (refused)");
        s_answer_free (a);
        return -1;
    }
    xmlNodePtr root = xmlDocGetRootElement (a->doc);
    xmlNodePtr body = s_is (root, NS_S, "Envelope") ? s_child (root, NS_S, "Body") : NULL;
    a->op = s_first (body);
    if (!a->op) {
        snprintf (err, errlen, "answer is not a SOAP 1.1 envelope with a body");
        s_answer_free (a);
        return -1;
    }
    if (s_is (a->op, NS_S, "Fault")) {
        a->fault = true;
        xmlNodePtr detail = NULL;
        /* faultcode/detail are unqualified in SOAP 1.1 */
        for (xmlNodePtr c = s_first (a->op); c; c = s_next (c))
            if (!c->ns && strcmp ((const char *) c->name, "detail") == 0)
                detail = c;
        xmlNodePtr rc = detail ? s_find (detail, NS_E, "ResponseCode") : NULL;
        s_text (rc, a->code, sizeof a->code);
        if (!*a->code) {
            char fc [128] = "";
            for (xmlNodePtr c = s_first (a->op); c; c = s_next (c))
                if (strcmp ((const char *) c->name, "faultcode") == 0)
                    s_text (c, fc, sizeof fc);
            const char *colon = strrchr (fc, ':');
            snprintf (a->code, sizeof a->code, "%s", colon ? colon + 1 : fc);
        }
        a->backoff_ms = detail ? s_backoff (s_find (detail, NS_T, "MessageXml")) : 0;
        xmlNodePtr msg = detail ? s_find (detail, NS_E, "Message") : NULL;
        if (msg)
            s_text (msg, a->text, sizeof a->text);
        else
            for (xmlNodePtr c = s_first (a->op); c; c = s_next (c))
                if (strcmp ((const char *) c->name, "faultstring") == 0)
                    s_text (c, a->text, sizeof a->text);
    }
    return 0;
}

/* The first ResponseMessage of an operation answer. 0 Success/Warning,
   1 Error (code and text filled), -1 malformed. */
static int
s_message (s_answer_t *a, xmlNodePtr *msg, char *code, size_t codelen,
           char *text, size_t textlen)
{
    code [0] = text [0] = 0;
    xmlNodePtr msgs = s_child (a->op, NS_M, "ResponseMessages");
    xmlNodePtr m = s_first (msgs);
    if (!m || !m->ns || strcmp ((const char *) m->ns->href, NS_M) != 0)
        return -1;
    *msg = m;
    char *cls = s_attr (m, "ResponseClass");
    s_text (s_child (m, NS_M, "ResponseCode"), code, codelen);
    s_text (s_child (m, NS_M, "MessageText"), text, textlen);
    bool error = cls && strcmp (cls, "Error") == 0;
    free (cls);
    if (error)
        a->backoff_ms = s_backoff (s_child (m, NS_M, "MessageXml"));
    if (!error && !*code)
        snprintf (code, codelen, "NoError");
    return error ? 1 : 0;
}

static bool
s_transient_code (const char *code)
{
    static const char *list [] = {
        "ErrorServerBusy", "ErrorTimeoutExpired", "ErrorInternalServerTransientError",
        "ErrorMailboxStoreUnavailable", "ErrorConnectionFailed", "ErrorMailboxMoveInProgress",
        "ErrorInternalServerError", "ErrorTooManyObjectsOpened", "ErrorBatchProcessingStopped",
        "ErrorExceededConnectionCount", "ErrorInsufficientResources",
    };
    for (size_t i = 0; i < sizeof list / sizeof list [0]; i++)
        if (strcmp (code, list [i]) == 0)
            return true;
    return false;
}

/* An error code of one item, not of the server, the account or the
   route: what only this item gets (it has no MIME form, it is damaged,
   it has no such property). Every other code (transient ones, AD or
   mailbox outages, rights, impersonation, codes not known here) stops
   the round, so that no item is passed over for a fault of the server. */
static bool
s_item_code (const char *code)
{
    static const char *of_item [] = {
        "ErrorUnsupportedMimeConversion", "ErrorMimeContentConversionFailed",
        "ErrorMimeContentInvalid", "ErrorMimeContentInvalidBase64String",
        "ErrorItemCorrupt", "ErrorCorruptData", "ErrorInvalidIdMalformed",
        "ErrorInvalidItemForOperation", "ErrorInvalidPropertySet",
        "ErrorInvalidPropertyForOperation", "ErrorUpdatePropertyMismatch",
        "ErrorIrresolvableConflict", "ErrorStaleObject", "ErrorItemPropertyRequestFailed",
    };
    for (size_t i = 0; i < sizeof of_item / sizeof of_item [0]; i++)
        if (strcmp (code, of_item [i]) == 0)
            return true;
    return false;
}

/* Reason for a response or fault code. what names the object (folder). */
static void
s_code_reason (cm_ews_t *self, const char *code, const char *text, const char *what,
               char *err, size_t errlen)
{
    const char *imp = self && self->impersonate ? self->impersonate : NULL;
    if (strcmp (code, "ErrorFolderNotFound") == 0)
        snprintf (err, errlen, "folder %s not found (ErrorFolderNotFound)", what ? what : "");
    else if (strcmp (code, "ErrorAccessDenied") == 0)
        snprintf (err, errlen, "access denied%s%s (ErrorAccessDenied)",
                  what ? " to " : "", what ? what : "");
    else if (strcmp (code, "ErrorInvalidServerVersion") == 0)
        snprintf (err, errlen, "version %s refused by the server (ErrorInvalidServerVersion)",
                  self ? s_versions [self->version] : "?");
    else if (imp && (strcmp (code, "ErrorInvalidExchangeImpersonationHeaderData") == 0
                     || strcmp (code, "ErrorImpersonateUserDenied") == 0
                     || strcmp (code, "ErrorImpersonationDenied") == 0
                     || strcmp (code, "ErrorNonExistentMailbox") == 0
                     || strcmp (code, "ErrorImpersonationFailed") == 0))
        snprintf (err, errlen, "impersonation of %s refused (%s)", imp, code);
    else if (strcmp (code, "ErrorInvalidExchangeImpersonationHeaderData") == 0)
        snprintf (err, errlen, "the server requires impersonation of a mailbox (%s): "
                  "set the route's email", code);
    else if (strcmp (code, "ErrorNonExistentMailbox") == 0)
        snprintf (err, errlen, "no mailbox for this account (ErrorNonExistentMailbox)");
    else if (strcmp (code, "ErrorItemNotFound") == 0)
        snprintf (err, errlen, "item not found (ErrorItemNotFound)");
    else if (strcmp (code, "ErrorSendAsDenied") == 0)
        snprintf (err, errlen, "sending as %s refused (ErrorSendAsDenied)",
                  what ? what : "the message's From address");
    else if (strcmp (code, "ErrorServerBusy") == 0)
        snprintf (err, errlen, "server busy, try again later (ErrorServerBusy)");
    else if (strcmp (code, "ErrorInvalidSyncStateData") == 0)
        snprintf (err, errlen, "sync state refused by the server (ErrorInvalidSyncStateData)");
    else if (strcmp (code, "ErrorMessageSizeExceeded") == 0)
        snprintf (err, errlen, "message larger than the server accepts (ErrorMessageSizeExceeded)");
    else if (*text)
        snprintf (err, errlen, "%s: %s", code, text);
    else
        snprintf (err, errlen, "%s", code);
}

/* ---------------------------------------------------------------------- */
/*  Requests                                                              */
/* ---------------------------------------------------------------------- */

/* The whole envelope around body (the operation element). */
static int
s_envelope (cm_buf_t *b, const char *version, const char *impersonate, const char *body,
            size_t bodylen)
{
    int rc = cm_buf_printf (b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
                            "<s:Envelope xmlns:s=\"" NS_S "\" xmlns:m=\"" NS_M "\" "
                            "xmlns:t=\"" NS_T "\"><s:Header>"
                            "<t:RequestServerVersion Version=\"%s\"/>", version);
    if (!rc && impersonate && *impersonate) {
        rc = cm_buf_printf (b, "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>");
        if (!rc)
            rc = s_esc (b, impersonate);
        if (!rc)
            rc = cm_buf_printf (b, "</t:PrimarySmtpAddress></t:ConnectingSID>"
                                "</t:ExchangeImpersonation>");
    }
    if (!rc)
        rc = cm_buf_printf (b, "</s:Header><s:Body>");
    if (!rc)
        rc = cm_buf_append (b, body, bodylen);
    if (!rc)
        rc = cm_buf_printf (b, "</s:Body></s:Envelope>");
    return rc;
}

/* The distinguished folder ids this client writes as DistinguishedFolderId. */
static bool
s_distinguished (const char *id)
{
    static const char *names [] = {
        "inbox", "sentitems", "drafts", "deleteditems", "junkemail", "outbox",
        "msgfolderroot", "root", "archiveinbox", "archivemsgfolderroot", "calendar",
        "contacts", "tasks", "notes", "journal", "searchfolders",
    };
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
        if (strcmp (id, names [i]) == 0)
            return true;
    return false;
}

/* <t:DistinguishedFolderId Id=.../> or <t:FolderId Id=... ChangeKey=.../>. */
static int
s_folder_ref (cm_buf_t *b, const char *folder_id)
{
    const char *tab = strchr (folder_id, '\t');
    if (!tab && s_distinguished (folder_id)) {
        return cm_buf_printf (b, "<t:DistinguishedFolderId Id=\"%s\"/>", folder_id);
    }
    int rc = cm_buf_printf (b, "<t:FolderId Id=\"");
    char *id = strndup (folder_id, tab ? (size_t) (tab - folder_id) : strlen (folder_id));
    if (!id)
        return -1;
    if (!rc)
        rc = s_esc (b, id);
    free (id);
    if (!rc && tab && tab [1]) {
        rc = cm_buf_printf (b, "\" ChangeKey=\"");
        if (!rc)
            rc = s_esc (b, tab + 1);
    }
    if (!rc)
        rc = cm_buf_printf (b, "\"/>");
    return rc;
}

static int
s_item_ref (cm_buf_t *b, const cm_ews_item_t *item, bool with_key)
{
    int rc = cm_buf_printf (b, "<t:ItemId Id=\"");
    if (!rc)
        rc = s_esc (b, item->item_id);
    if (!rc && with_key && item->change_key && *item->change_key) {
        rc = cm_buf_printf (b, "\" ChangeKey=\"");
        if (!rc)
            rc = s_esc (b, item->change_key);
    }
    if (!rc)
        rc = cm_buf_printf (b, "\"/>");
    return rc;
}

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t
s_write_cb (char *data, size_t size, size_t nmemb, void *userp)
{
    cm_ews_t *self = (cm_ews_t *) userp;
    size_t n = size * nmemb;
    return cm_buf_append (&self->answer, data, n) == 0 ? n : 0;
}

/* Keeps the headers of the final answer the reasons need. */
static size_t
s_header_cb (char *data, size_t size, size_t nmemb, void *userp)
{
    cm_ews_t *self = (cm_ews_t *) userp;
    size_t n = size * nmemb;
    char line [HDR_MAX];
    size_t l = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy (line, data, l);
    line [l] = 0;
    line [strcspn (line, "\r\n")] = 0;
    if (self->stall_ms > 0) {
        /* the status line says whether an answer the watch may cut has
           begun: an interim 1xx (102 Processing, a late 100 Continue)
           leaves the request waiting for its answer, exempt; a 2xx is
           the server saying it did the work (a send has gone out), so
           the rest of it is waited for too (the 10-minute low-speed
           limit): cut and tried again, the email could go out twice.
           Any other answer (a 401 of a handshake, a fault, an error
           page) is watched. The lines after a status line belong to it. */
        if (strncmp (line, "HTTP/", 5) == 0) {
            const char *sp = strchr (line, ' ');
            long code = sp ? strtol (sp + 1, NULL, 10) : 0;
            self->watch.answering = !(code >= 100 && code <= 299);
        }
        self->watch.last_move_ms = s_now_ms ();
    }
    if (strncmp (line, "HTTP/", 5) == 0) {
        self->www_auth [0] = 0;
        self->diag [0] = 0;
        self->retry_after_ms = 0;
        cm_buf_reset (&self->answer);   /* a body of an interim 401 */
    }
    else if (strncasecmp (line, "WWW-Authenticate:", 17) == 0) {
        const char *v = line + 17;
        while (*v == ' ')
            v++;
        size_t have = strlen (self->www_auth);
        snprintf (self->www_auth + have, sizeof self->www_auth - have, "%s%s",
                  have ? "\n" : "", v);
    }
    else if (strncasecmp (line, "Retry-After:", 12) == 0) {
        /* delta-seconds (RFC 9110 10.2.3); an HTTP-date is left to the backoff */
        const char *v = line + 12;
        while (*v == ' ')
            v++;
        char *end;
        long secs = strtol (v, &end, 10);
        if (end != v && *end == 0 && secs > 0)
            self->retry_after_ms = secs > EWS_BACKOFF_MAX_MS / 1000 ? EWS_BACKOFF_MAX_MS
                                 : secs * 1000;
    }
    else if (strncasecmp (line, "x-ms-diagnostics:", 17) == 0) {
        const char *v = line + 17;
        while (*v == ' ')
            v++;
        snprintf (self->diag, sizeof self->diag, "%s", v);
    }
    return n;
}

/* Verbose trace of HTTP headers; Authorization values never shown. */
static void
s_debug_each (curl_infotype type, const char *text, size_t n, void *arg)
{
    cm_ews_t *self = arg;
    if (!n)
        return;
    const char *dir = type == CURLINFO_HEADER_OUT ? ">"
                    : type == CURLINFO_HEADER_IN ? "<" : "*";
    if (strncasecmp (text, "Authorization:", 14) == 0
        || strncasecmp (text, "Proxy-Authorization:", 20) == 0) {
        char line [1024];
        snprintf (line, sizeof line, "%s", text);
        line [strcspn (line, ":") + 1] = 0;
        cm_trace (true, self->route, "ews %s %s [REDACTED]", dir, line);
    }
    else if (type != CURLINFO_TEXT || strncmp (text, "reached ", 8) != 0)
        cm_trace (true, self->route, "ews %s %s", dir, text);
}

static int
s_debug_cb (CURL *h, curl_infotype type, char *data, size_t size, void *userp)
{
    (void) h;
    cm_mailcurl_debug_lines (type, data, size, s_debug_each, userp);
    return 0;
}

/* First token of each WWW-Authenticate value, e.g. "Negotiate, NTLM, Basic". */
static void
s_offered (const char *www, char *out, size_t size)
{
    out [0] = 0;
    const char *p = www;
    while (p && *p) {
        size_t n = strcspn (p, " ,\n");
        size_t have = strlen (out);
        if (n && have + n + 3 < size)
            snprintf (out + have, size - have, "%s%.*s", have ? ", " : "", (int) n, p);
        p = strchr (p, '\n');
        if (p)
            p++;
    }
    if (!*out)
        snprintf (out, size, "nothing");
}

static bool
s_offers (const char *www, const char *scheme)
{
    size_t l = strlen (scheme);
    const char *p = www;
    while (p && *p) {
        if (strncasecmp (p, scheme, l) == 0 && (p [l] == 0 || p [l] == ' ' || p [l] == '\n'
                                               || p [l] == ','))
            return true;
        p = strchr (p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* Reason for a final 401. */
static void
s_401_reason (cm_ews_t *self, char *err, size_t errlen)
{
    char offered [256];
    s_offered (self->www_auth, offered, sizeof offered);
    if (self->auth == AUTH_OAUTH2) {
        long diag = self->diag [0] ? strtol (self->diag, NULL, 10) : 0;
        const char *why =
              diag == 2000001 ? "token invalid or expired"
            : diag == 2000003 ? "token issued for another resource (check the Exchange host "
                                "and national cloud)"
            : diag == 2000008 ? "application lacks the full_access_as_app permission"
            : strstr (self->www_auth, "invalid_token") ? "token refused"
            : !s_offers (self->www_auth, "Bearer") ? "server does not accept OAuth"
            : "token refused";
        if (diag)
            snprintf (err, errlen, "authentication failed (HTTP 401) for the application "
                      "impersonating %s: %s (x-ms-diagnostics %ld)",
                      self->impersonate ? self->impersonate : "?", why, diag);
        else
            snprintf (err, errlen, "authentication failed (HTTP 401) for the application "
                      "impersonating %s: %s (server offers %s)",
                      self->impersonate ? self->impersonate : "?", why, offered);
        return;
    }
    const char *scheme = self->auth == AUTH_NTLM ? "NTLM" : "Basic";
    if (!s_offers (self->www_auth, scheme))
        snprintf (err, errlen, "authentication failed (HTTP 401) for %s: %s not offered "
                  "by the server (it offers %s)", self->username ? self->username : "",
                  self->auth == AUTH_NTLM ? "NTLM" : "BASIC", offered);
    else
        snprintf (err, errlen, "authentication failed (HTTP 401) for %s: %s refused "
                  "(wrong user name, domain or password)", self->username ? self->username : "",
                  self->auth == AUTH_NTLM ? "NTLM" : "BASIC");
}

/* One EWS operation. body: the operation element. cap: largest answer.
   0 with a parsed non-fault answer in *a; -1 with a reason (and
   *transient set when trying again later may help; *overflow when the
   answer was bigger than cap). */
static int
s_call (cm_ews_t *self, const char *body, size_t bodylen, size_t cap, s_answer_t *a,
        bool *transient, bool *overflow, char *err, size_t errlen)
{
    memset (a, 0, sizeof *a);
    self->backoff_ms = 0;           /* only the answer to this call's */
    bool dummy_t, dummy_o;
    if (!transient)
        transient = &dummy_t;
    if (!overflow)
        overflow = &dummy_o;
    *transient = false;
    *overflow = false;
    cm_buf_t req;
    cm_buf_init (&req, bodylen + 8192);
    struct curl_slist *hdrs = NULL;
    char *token = NULL;
    bool token_retried = false;
    int rc = -1;

    for (int attempt = 0; attempt < NVERSIONS + 2; attempt++) {
        cm_buf_reset (&req);
        if (s_envelope (&req, s_versions [self->version], self->impersonate, body, bodylen)) {
            snprintf (err, errlen, "request too large");
            goto done;
        }
        curl_slist_free_all (hdrs);
        hdrs = NULL;
        hdrs = curl_slist_append (hdrs, "Content-Type: text/xml; charset=utf-8");
        hdrs = curl_slist_append (hdrs, "Accept: text/xml");
        hdrs = curl_slist_append (hdrs, "Expect:");
        if (self->impersonate && *self->impersonate) {
            char anchor [512];
            snprintf (anchor, sizeof anchor, "X-AnchorMailbox: %s", self->impersonate);
            hdrs = curl_slist_append (hdrs, anchor);
        }
        if (self->auth == AUTH_OAUTH2) {
            free (token);
            token = cm_oauth_token (self->oauth, err, errlen);
            if (!token) {
                *transient = true;
                goto done;
            }
            cm_log_token (token);
            char *line = NULL;
            if (asprintf (&line, "Authorization: Bearer %s", token) < 0) {
                snprintf (err, errlen, "out of memory");
                goto done;
            }
            hdrs = curl_slist_append (hdrs, line);
            memset (line, 0, strlen (line));
            free (line);
        }
        if (!hdrs) {
            snprintf (err, errlen, "out of memory");
            goto done;
        }
        cm_buf_free (&self->answer);
        cm_buf_init (&self->answer, cap);
        self->www_auth [0] = self->diag [0] = 0;
        self->ctx.errbuf [0] = 0;
        curl_easy_setopt (self->h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt (self->h, CURLOPT_POSTFIELDS, req.data);
        curl_easy_setopt (self->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req.len);
        s_trace_xml (self, "request", req.data, req.len);
        memset (&self->watch, 0, sizeof self->watch);
        self->watch.last_move_ms = s_now_ms ();
        CURLcode cc = curl_easy_perform (self->h);
        curl_easy_setopt (self->h, CURLOPT_HTTPHEADER, NULL);
        long http = 0;
        curl_easy_getinfo (self->h, CURLINFO_RESPONSE_CODE, &http);
        if (cc == CURLE_WRITE_ERROR && self->answer.overflow) {
            *overflow = true;
            snprintf (err, errlen, "answer from %s larger than %zu bytes", self->url, cap);
            goto done;
        }
        if (cc == CURLE_ABORTED_BY_CALLBACK && self->watch.why [0]) {
            snprintf (err, errlen, "%s", self->watch.why);
            *transient = true;      /* the server's passing trouble: tried again later */
            goto done;
        }
        if (cc) {
            cm_mailserver_t srv = { .host = self->host, .port = self->port,
                                    .username = self->username };
            cm_mailcurl_reason (cc, &self->ctx, &srv, err, errlen);
            *transient = true;
            goto done;
        }
        if (self->answer.len)
            s_trace_xml (self, "answer", self->answer.data, self->answer.len);
        if (http == 401) {
            if (self->auth == AUTH_OAUTH2 && !token_retried
                && strstr (self->www_auth, "invalid_token")) {
                cm_trace (self->verbose, self->route, "ews: token refused, fetching a new one");
                cm_oauth_invalidate (self->oauth);
                token_retried = true;
                continue;
            }
            s_401_reason (self, err, errlen);
            /* an expired token or a changed password is the route's problem */
            *transient = self->auth == AUTH_OAUTH2;
            goto done;
        }
        if (http != 200 && http != 500) {
            snprintf (err, errlen, "%s answered HTTP %ld%s", self->url, http,
                      http == 403 ? " (forbidden: SSL required or EWS disabled for the account?)"
                      : http == 404 ? " (no EWS at this URL?)" : "");
            *transient = http >= 500 || http == 429;
            self->backoff_ms = self->retry_after_ms;    /* 503, 429: the wait asked */
            goto done;
        }
        char perr [256];
        if (s_parse (self->answer.data, self->answer.len, a, perr, sizeof perr)) {
            snprintf (err, errlen, "%s answered HTTP %ld: %s", self->url, http, perr);
            *transient = http >= 500;
            goto done;
        }
        if (!a->fault) {
            if (http != 200) {
                snprintf (err, errlen, "%s answered HTTP %ld without a SOAP fault", self->url, http);
                *transient = true;
                s_answer_free (a);
                goto done;
            }
            self->negotiate = false;        /* this version works: keep it */
            rc = 0;
            goto done;
        }
        if (strcmp (a->code, "ErrorInvalidServerVersion") == 0 && self->negotiate
            && self->version + 1 < NVERSIONS) {
            cm_trace (self->verbose, self->route, "ews: %s refused, trying %s",
                      s_versions [self->version], s_versions [self->version + 1]);
            self->version++;
            s_answer_free (a);
            continue;
        }
        if (strcmp (a->code, "ErrorInvalidServerVersion") == 0 && self->negotiate)
            snprintf (err, errlen, "no schema version accepted by the server, down to %s "
                      "(ErrorInvalidServerVersion)", s_versions [self->version]);
        else if (self->impersonate && (strcmp (a->code, "ErrorAccessDenied") == 0
                                       || strcmp (a->code, "ErrorNonExistentMailbox") == 0))
            /* a header-level fault while impersonating is about the impersonation */
            snprintf (err, errlen, "impersonation of %s refused (%s)", self->impersonate, a->code);
        else
            s_code_reason (self, a->code, a->text, NULL, err, errlen);
        *transient = s_transient_code (a->code);
        self->backoff_ms = a->backoff_ms;
        s_answer_free (a);
        goto done;
    }
    snprintf (err, errlen, "no usable answer from %s", self->url);
done:
    if (token) {
        memset (token, 0, strlen (token));
        free (token);
    }
    curl_slist_free_all (hdrs);
    cm_buf_free (&req);
    cm_buf_free (&self->answer);        /* the document holds what we need */
    return rc;
}

/* s_call for a one-message operation: 0 Success, 1 Error (code/text filled
   and *msg set), -1 call failed (reason in err). */
static int
s_call1 (cm_ews_t *self, cm_buf_t *body, size_t cap, s_answer_t *a, xmlNodePtr *msg,
         char *code, size_t codelen, char *text, size_t textlen, bool *transient,
         char *err, size_t errlen)
{
    code [0] = text [0] = 0;
    if (body->overflow) {
        snprintf (err, errlen, "request too large");
        return -1;
    }
    if (s_call (self, body->data, body->len, cap, a, transient, NULL, err, errlen))
        return -1;
    int rc = s_message (a, msg, code, codelen, text, textlen);
    if (rc < 0) {
        snprintf (err, errlen, "answer without a ResponseMessage");
        s_answer_free (a);
        return -1;
    }
    if (rc > 0)
        self->backoff_ms = a->backoff_ms;
    return rc;
}

/* A one-message operation, its request in body (freed here). 0 Success:
   *a holds the answer (the caller frees it) and *msg its message. On an
   EWS Error the answer is freed, code holds the error code and err the
   reason (what names the object, as in s_code_reason): 2 when the code
   is gone_code (the item or state is gone), 1 otherwise. -1 when the
   call itself failed (reason in err). */
static int
s_operation (cm_ews_t *self, cm_buf_t *body, const char *what, const char *gone_code,
             s_answer_t *a, xmlNodePtr *msg, char *code, size_t codelen,
             char *err, size_t errlen)
{
    char text [256];
    *msg = NULL;
    int rc = s_call1 (self, body, ANSWER_MAX, a, msg, code, codelen, text, sizeof text,
                      NULL, err, errlen);
    cm_buf_free (body);
    if (rc <= 0)
        return rc;
    s_code_reason (self, code, text, what, err, errlen);
    s_answer_free (a);
    return gone_code && strcmp (code, gone_code) == 0 ? 2 : 1;
}

/* ---------------------------------------------------------------------- */
/*  Object                                                                */
/* ---------------------------------------------------------------------- */

/* Index of a route's version value; *negotiate for "other". -1 unknown. */
static int
s_version_index (const char *v, bool *negotiate)
{
    *negotiate = false;
    if (!v || !*v || strcasecmp (v, "other") == 0) {
        *negotiate = true;
        return 0;
    }
    static const struct { const char *route; const char *schema; } map [] = {
        { "2007sp1", "Exchange2007_SP1" }, { "2010", "Exchange2010" },
        { "2010sp1", "Exchange2010_SP1" }, { "2010sp2", "Exchange2010_SP2" },
    };
    const char *schema = v;
    for (size_t i = 0; i < sizeof map / sizeof map [0]; i++)
        if (strcasecmp (v, map [i].route) == 0)
            schema = map [i].schema;
    for (int i = 0; i < NVERSIONS; i++)
        if (strcmp (schema, s_versions [i]) == 0)     /* schema values: case matters */
            return i;
    return -1;
}

cm_ews_t *
cm_ews_new (const char *url, const char *auth, const char *username, const char *password,
            cm_oauth_t *oauth, const char *impersonate, const char *version,
            const char *ca_file, bool verbose, const char *route)
{
    if (!url || !auth)
        return NULL;
    bool https = strncasecmp (url, "https://", 8) == 0;
    if (!https && strncasecmp (url, "http://", 7) != 0)
        return NULL;
    s_auth_t kind;
    if (strcasecmp (auth, "basic") == 0)
        kind = AUTH_BASIC;
    else if (strcasecmp (auth, "ntlm") == 0)
        kind = AUTH_NTLM;
    else if (strcasecmp (auth, "oauth2") == 0)
        kind = AUTH_OAUTH2;
    else
        return NULL;
    if (kind == AUTH_OAUTH2 && (!oauth || !impersonate || !*impersonate))
        return NULL;
    if (kind != AUTH_OAUTH2 && (!username || !*username || !password))
        return NULL;
    if (impersonate && strpbrk (impersonate, "\r\n"))
        return NULL;
    bool negotiate;
    int vi = s_version_index (version, &negotiate);
    if (vi < 0)
        return NULL;

    cm_mailcurl_global_init ();
    pthread_once (&s_xml_once, s_xml_init);
    cm_ews_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->auth = kind;
    self->version = vi;
    self->negotiate = negotiate;
    self->verbose = verbose;
    self->oauth = oauth;
    self->url = strdup (url);
    self->username = kind == AUTH_OAUTH2 ? NULL : s_dup (username);
    self->password = kind == AUTH_OAUTH2 ? NULL : s_dup (password);
    self->impersonate = impersonate && *impersonate ? strdup (impersonate) : NULL;
    self->ca_file = ca_file && *ca_file ? strdup (ca_file) : NULL;
    self->route = s_dup (route);
    cm_buf_init (&self->answer, ANSWER_MAX);
    self->h = curl_easy_init ();
    if (!self->url || !self->h || (kind != AUTH_OAUTH2 && (!self->username || !self->password))) {
        cm_ews_destroy (&self);
        return NULL;
    }
    cm_log_secret (self->password);

    /* host and port for reasons */
    const char *hp = url + (https ? 8 : 7);
    size_t hl;
    if (*hp == '[') {
        const char *rb = strchr (hp, ']');
        hl = rb ? (size_t) (rb - hp) + 1 : strlen (hp);
    }
    else
        hl = strcspn (hp, ":/");
    if (hl >= sizeof self->host)
        hl = sizeof self->host - 1;
    memcpy (self->host, hp, hl);
    self->host [hl] = 0;
    self->port = hp [hl] == ':' ? atoi (hp + hl + 1) : https ? 443 : 80;

    CURLcode cc = CURLE_OK;
#define SET(opt, val) if (!cc) cc = curl_easy_setopt (self->h, opt, val)
    SET (CURLOPT_URL, self->url);
    SET (CURLOPT_PROTOCOLS_STR, https ? "https" : "http");
    SET (CURLOPT_NOSIGNAL, 1L);
    SET (CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
    SET (CURLOPT_SSL_VERIFYPEER, 1L);
    SET (CURLOPT_SSL_VERIFYHOST, 2L);
    if (self->ca_file)
        SET (CURLOPT_CAINFO, self->ca_file);
    SET (CURLOPT_CONNECTTIMEOUT_MS, 15000L);
    /* A silent server is given 10 minutes (a send it is scanning, as
       SMTP's answer to the final dot: given up sooner, the message is sent
       again); a transfer that moves, an hour (64 MB at 20 KB/s). */
    SET (CURLOPT_TIMEOUT, 3600L);
    SET (CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET (CURLOPT_LOW_SPEED_TIME, 600L);
    SET (CURLOPT_TCP_KEEPALIVE, 1L);
    SET (CURLOPT_FOLLOWLOCATION, 0L);
    SET (CURLOPT_USERAGENT, "casemail");
    SET (CURLOPT_POST, 1L);
    SET (CURLOPT_WRITEFUNCTION, s_write_cb);
    SET (CURLOPT_WRITEDATA, self);
    SET (CURLOPT_HEADERFUNCTION, s_header_cb);
    SET (CURLOPT_HEADERDATA, self);
    SET (CURLOPT_ERRORBUFFER, self->ctx.errbuf);
    if (kind != AUTH_OAUTH2) {
        /* NTLM explicitly, never CURLAUTH_ANY: Debian's libcurl would pick
           Negotiate against on-premises Exchange (EWS-NOTES trap 4) */
        SET (CURLOPT_HTTPAUTH, kind == AUTH_NTLM ? (long) CURLAUTH_NTLM : (long) CURLAUTH_BASIC);
        SET (CURLOPT_USERNAME, self->username);
        SET (CURLOPT_PASSWORD, self->password);
    }
    if (verbose) {
        SET (CURLOPT_DEBUGFUNCTION, s_debug_cb);
        SET (CURLOPT_DEBUGDATA, self);
        SET (CURLOPT_VERBOSE, 1L);
    }
#undef SET
    self->ctx.verbose = verbose;
    self->ctx.route = self->route;
    if (cc) {
        cm_ews_destroy (&self);
        return NULL;
    }
    return self;
}

void
cm_ews_destroy (cm_ews_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cm_ews_t *self = *self_p;
    if (self->h)
        curl_easy_cleanup (self->h);
    free (self->url);
    free (self->username);
    if (self->password) {
        memset (self->password, 0, strlen (self->password));
        free (self->password);
    }
    free (self->impersonate);
    free (self->sender);
    free (self->ca_file);
    free (self->route);
    cm_buf_free (&self->answer);
    free (self);
    *self_p = NULL;
}

/* libcurl calls this about once a second while a request is in flight.
   It ends the request when the route stops (cm_ews_set_stop), and, with
   a stall time (cm_ews_set_stall), when no byte has moved for that long
   while the request was being sent or an answer other than a success
   read (s_header_cb). The wait between the two is exempt, as SMTP's
   answer to the end of the data: Exchange may scan a message before it
   answers, and a send given up then may have gone out (the 10-minute
   low-speed limit rules there); so is the rest of a success. */
static int
s_xfer_cb (void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
           curl_off_t ulnow)
{
    (void) dltotal;
    cm_ews_t *self = userp;
    if (self->stop && *self->stop)
        return 1;                   /* non-zero: libcurl aborts the transfer */
    if (self->stall_ms <= 0)
        return 0;
    int64_t now = s_now_ms ();
    if (ulnow != self->watch.ul || dlnow != self->watch.dl) {
        /* a request goes out, or a new one began (libcurl counts each of
           an NTLM handshake's requests, and a retry, from 0): any answer
           seen was to an earlier one */
        if (ulnow != self->watch.ul || dlnow < self->watch.dl)
            self->watch.answering = false;
        self->watch.ul = ulnow;
        self->watch.dl = dlnow;
        self->watch.last_move_ms = now;
        return 0;
    }
    bool sending = ultotal > 0 && ulnow < ultotal;
    if ((!sending && !self->watch.answering) || now - self->watch.last_move_ms < self->stall_ms)
        return 0;
    long secs = (self->stall_ms + 999) / 1000;
    if (sending)
        snprintf (self->watch.why, sizeof self->watch.why, "the server stalled: no byte moved"
                  " for %ld s while the request was sent (%lld of %lld bytes taken)", secs,
                  (long long) ulnow, (long long) ultotal);
    else
        snprintf (self->watch.why, sizeof self->watch.why, "the server stalled: no byte moved"
                  " for %ld s while its answer was read (%lld bytes in)", secs,
                  (long long) dlnow);
    return 1;
}

/* The progress callback serves both the stop and the stall watch. */
static void
s_progress (cm_ews_t *self)
{
    bool on = (self->stop != NULL) || self->stall_ms > 0;
    curl_easy_setopt (self->h, CURLOPT_XFERINFOFUNCTION, s_xfer_cb);
    curl_easy_setopt (self->h, CURLOPT_XFERINFODATA, (void *) self);
    curl_easy_setopt (self->h, CURLOPT_NOPROGRESS, on ? 0L : 1L);
}

void
cm_ews_set_stop (cm_ews_t *self, volatile int *stop)
{
    if (!self || !self->h)
        return;
    self->stop = stop;
    s_progress (self);
}

void
cm_ews_set_stall (cm_ews_t *self, long stall_ms)
{
    if (!self || !self->h)
        return;
    self->stall_ms = stall_ms > 0 ? stall_ms : 0;
    s_progress (self);
}

void
cm_ews_set_sender (cm_ews_t *self, const char *email)
{
    if (!self || (email && strpbrk (email, "\r\n<>")))
        return;
    free (self->sender);
    self->sender = email && *email ? strdup (email) : NULL;
}

const char *
cm_ews_version (cm_ews_t *self)
{
    return self ? s_versions [self->version] : NULL;
}

long
cm_ews_backoff_ms (cm_ews_t *self)
{
    return self ? self->backoff_ms : 0;
}

void
cm_ews_item_free (cm_ews_item_t *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++) {
        free (items [i].item_id);
        free (items [i].change_key);
    }
    free (items);
}

/* ---------------------------------------------------------------------- */
/*  Folders                                                               */
/* ---------------------------------------------------------------------- */

/* FindFolder Shallow under parent for DisplayName = name. 0 found
   (*found = "id\tkey"), -1 error or not found. */
static int
s_find_folder (cm_ews_t *self, const char *parent, const char *name, const char *path,
               char **found, char *err, size_t errlen)
{
    cm_buf_t b;
    cm_buf_init (&b, 16384);
    cm_buf_printf (&b, "<m:FindFolder Traversal=\"Shallow\"><m:FolderShape><t:BaseShape>"
                   "IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI "
                   "FieldURI=\"folder:DisplayName\"/></t:AdditionalProperties></m:FolderShape>"
                   "<m:Restriction><t:IsEqualTo><t:FieldURI FieldURI=\"folder:DisplayName\"/>"
                   "<t:FieldURIOrConstant><t:Constant Value=\"");
    s_esc (&b, name);
    cm_buf_printf (&b, "\"/></t:FieldURIOrConstant></t:IsEqualTo></m:Restriction>"
                   "<m:ParentFolderIds>");
    s_folder_ref (&b, parent);
    cm_buf_printf (&b, "</m:ParentFolderIds></m:FindFolder>");
    s_answer_t a;
    xmlNodePtr msg;
    char code [128];
    if (s_operation (self, &b, path, NULL, &a, &msg, code, sizeof code, err, errlen))
        return -1;
    xmlNodePtr folders = s_find (msg, NS_T, "Folders");
    xmlNodePtr fid = NULL;
    for (xmlNodePtr f = s_first (folders); f && !fid; f = s_next (f))
        fid = s_child (f, NS_T, "FolderId");
    char *id = s_attr (fid, "Id");
    char *key = s_attr (fid, "ChangeKey");
    int rc = -1;
    if (!id)
        snprintf (err, errlen, "folder %s not found (ErrorFolderNotFound)", path);
    else if (asprintf (found, "%s\t%s", id, key ? key : "") >= 0)
        rc = 0;
    else
        snprintf (err, errlen, "out of memory");
    free (id);
    free (key);
    s_answer_free (&a);
    return rc;
}

int
cm_ews_folder_id (cm_ews_t *self, const char *folder, char **folder_id, char *err, size_t errlen)
{
    *folder_id = NULL;
    if (!self || !folder || !*folder || strlen (folder) > 1024) {
        snprintf (err, errlen, "no folder name");
        return -1;
    }
    char *copy = strdup (folder);
    if (!copy) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    char *save = NULL;
    char *seg = strtok_r (copy, "/", &save);
    char *parent = NULL;
    int rc = -1;
    if (seg && strcasecmp (seg, "inbox") == 0) {
        parent = strdup ("inbox");
        seg = strtok_r (NULL, "/", &save);
    }
    else
        parent = strdup ("msgfolderroot");
    if (!parent) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    for (; seg; seg = strtok_r (NULL, "/", &save)) {
        char *next = NULL;
        if (s_find_folder (self, parent, seg, folder, &next, err, errlen))
            goto done;
        free (parent);
        parent = next;
    }
    *folder_id = parent;
    parent = NULL;
    rc = 0;
done:
    free (parent);
    free (copy);
    return rc;
}

/* GetFolder (Default shape) of folder_id: total count and display name. */
static int
s_get_folder (cm_ews_t *self, const char *folder_id, const char *what, long *total,
              char *name, size_t namelen, char *err, size_t errlen)
{
    cm_buf_t b;
    cm_buf_init (&b, 16384);
    cm_buf_printf (&b, "<m:GetFolder><m:FolderShape><t:BaseShape>Default</t:BaseShape>"
                   "</m:FolderShape><m:FolderIds>");
    s_folder_ref (&b, folder_id);
    cm_buf_printf (&b, "</m:FolderIds></m:GetFolder>");
    s_answer_t a;
    xmlNodePtr msg;
    char code [128];
    if (s_operation (self, &b, what, NULL, &a, &msg, code, sizeof code, err, errlen))
        return -1;
    char num [32];
    s_text (s_find (msg, NS_T, "TotalCount"), num, sizeof num);
    *total = *num ? strtol (num, NULL, 10) : -1;
    if (name)
        s_text (s_find (msg, NS_T, "DisplayName"), name, namelen);
    s_answer_free (&a);
    return 0;
}

int
cm_ews_test_inbound (cm_ews_t *self, const char *folder, char *summary, size_t sumlen,
                     char *err, size_t errlen)
{
    if (!self) {
        snprintf (err, errlen, "no EWS client");
        return -1;
    }
    if (self->auth == AUTH_OAUTH2) {
        /* the token first, so its reason is reported as such */
        char *token = cm_oauth_token (self->oauth, err, errlen);
        if (!token)
            return -1;
        memset (token, 0, strlen (token));
        free (token);
    }
    char *fid = NULL;
    if (cm_ews_folder_id (self, folder, &fid, err, errlen))
        return -1;
    long total = -1;
    int rc = s_get_folder (self, fid, folder, &total, NULL, 0, err, errlen);
    free (fid);
    if (rc)
        return -1;
    snprintf (summary, sumlen, "EWS %s (%s), folder %s (%ld messages)", self->url,
              s_versions [self->version], folder, total);
    return 0;
}

/* ---------------------------------------------------------------------- */
/*  Items                                                                 */
/* ---------------------------------------------------------------------- */

/* Reads Id and ChangeKey of the first t:ItemId under n into item. */
static void
s_take_id (xmlNodePtr n, cm_ews_item_t *item)
{
    xmlNodePtr idn = s_find (n, NS_T, "ItemId");
    char *id = s_attr (idn, "Id");
    char *key = s_attr (idn, "ChangeKey");
    if (id) {
        free (item->item_id);
        item->item_id = id;
    }
    if (key) {
        free (item->change_key);
        item->change_key = key;
    }
}

int
cm_ews_test_outbound (cm_ews_t *self, char *summary, size_t sumlen, char *err, size_t errlen)
{
    if (!self) {
        snprintf (err, errlen, "no EWS client");
        return -1;
    }
    long total;
    if (s_get_folder (self, "sentitems", "Sent Items", &total, NULL, 0, err, errlen))
        return -1;
    const char *from = self->sender ? self->sender : self->impersonate;
    /* a draft, never sent: proves the right to create items (and send-as) */
    cm_buf_t mime, b;
    cm_buf_init (&mime, 4096);
    cm_buf_init (&b, 16384);
    time_t now = time (NULL);
    struct tm tm;
    gmtime_r (&now, &tm);
    char date [64];
    strftime (date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (from)
        cm_buf_printf (&mime, "From: <%s>\r\nTo: <%s>\r\n", from, from);
    cm_buf_printf (&mime, "Subject: casemail outbound test (draft, not sent)\r\n"
                   "Date: %s\r\nMessage-ID: <ews-test-%ld-%d@casemail.invalid>\r\n"
                   "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                   "Saved and deleted by a connection test.\r\n", date, (long) now, (int) (((uintptr_t) self >> 4) & 0xffff));
    cm_buf_printf (&b, "<m:CreateItem MessageDisposition=\"SaveOnly\"><m:SavedItemFolderId>"
                   "<t:DistinguishedFolderId Id=\"drafts\"/></m:SavedItemFolderId><m:Items>"
                   "<t:Message><t:MimeContent CharacterSet=\"UTF-8\">");
    s_b64_encode (&b, (const unsigned char *) mime.data, mime.len);
    cm_buf_printf (&b, "</t:MimeContent></t:Message></m:Items></m:CreateItem>");
    cm_buf_free (&mime);
    s_answer_t a;
    xmlNodePtr msg = NULL;
    char code [128], text [256];
    int rc = s_call1 (self, &b, ANSWER_MAX, &a, &msg, code, sizeof code, text, sizeof text,
                      NULL, err, errlen);
    cm_buf_free (&b);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        s_code_reason (self, code, text,
                       strcmp (code, "ErrorSendAsDenied") == 0 ? from : "Drafts", err, errlen);
        s_answer_free (&a);
        return -1;
    }
    cm_ews_item_t draft = { NULL, NULL };
    s_take_id (msg, &draft);
    s_answer_free (&a);
    if (!draft.item_id) {
        snprintf (err, errlen, "CreateItem of a draft returned no ItemId");
        return -1;
    }
    cm_buf_init (&b, 16384);
    cm_buf_printf (&b, "<m:DeleteItem DeleteType=\"HardDelete\"><m:ItemIds>");
    s_item_ref (&b, &draft, false);
    cm_buf_printf (&b, "</m:ItemIds></m:DeleteItem>");
    rc = s_call1 (self, &b, ANSWER_MAX, &a, &msg, code, sizeof code, text, sizeof text,
                  NULL, err, errlen);
    cm_buf_free (&b);
    free (draft.item_id);
    free (draft.change_key);
    if (rc < 0)
        return -1;
    s_answer_free (&a);
    if (rc == 1) {
        char why [256];
        s_code_reason (self, code, text, NULL, why, sizeof why);
        snprintf (err, errlen, "test draft saved in Drafts but not deleted: %s", why);
        return -1;
    }
    snprintf (summary, sumlen, "EWS %s (%s), mailbox %s may create items%s%s "
              "(test draft saved and deleted, nothing sent)", self->url,
              s_versions [self->version], from ? from : self->username,
              from ? " and send as " : "", from ? from : "");
    return 0;
}

int
cm_ews_sync (cm_ews_t *self, const char *folder_id, const char *sync_state, int max,
             cm_ews_item_t **items, size_t *n, char **new_state, bool *more,
             char *err, size_t errlen)
{
    *items = NULL;
    *n = 0;
    *new_state = NULL;
    *more = false;
    if (!self || !folder_id) {
        snprintf (err, errlen, "no folder");
        return -1;
    }
    if (max < 1)
        max = 1;
    if (max > 512)
        max = 512;
    cm_buf_t b;
    /* room for the SyncState, however long the server made it (escaped:
       at most 6 bytes a character) */
    cm_buf_init (&b, (sync_state ? strlen (sync_state) * 6 : 0) + 64 * 1024);
    cm_buf_printf (&b, "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
                   "</m:ItemShape><m:SyncFolderId>");
    s_folder_ref (&b, folder_id);
    cm_buf_printf (&b, "</m:SyncFolderId>");
    if (sync_state && *sync_state) {
        cm_buf_printf (&b, "<m:SyncState>");
        s_esc (&b, sync_state);
        cm_buf_printf (&b, "</m:SyncState>");
    }
    cm_buf_printf (&b, "<m:MaxChangesReturned>%d</m:MaxChangesReturned></m:SyncFolderItems>", max);
    s_answer_t a;
    xmlNodePtr msg;
    char code [128];
    int rc = s_operation (self, &b, NULL, "ErrorInvalidSyncStateData", &a, &msg,
                          code, sizeof code, err, errlen);
    if (rc)
        return rc == 2 ? 2 : -1;
    xmlNodePtr st = s_child (msg, NS_M, "SyncState");
    xmlChar *state = st ? xmlNodeGetContent (st) : NULL;
    char last [16];
    s_text (s_child (msg, NS_M, "IncludesLastItemInRange"), last, sizeof last);
    xmlNodePtr changes = s_child (msg, NS_M, "Changes");
    size_t count = 0;
    for (xmlNodePtr c = s_first (changes); c; c = s_next (c))
        if (s_is (c, NS_T, "Create"))
            count++;
    rc = -1;
    if (!state || !*state) {
        snprintf (err, errlen, "SyncFolderItems answer without a SyncState");
        goto done;
    }
    *new_state = strdup ((const char *) state);
    *items = count ? calloc (count, sizeof **items) : NULL;
    if (!*new_state || (count && !*items)) {
        snprintf (err, errlen, "out of memory");
        goto done;
    }
    for (xmlNodePtr c = s_first (changes); c; c = s_next (c)) {
        if (!s_is (c, NS_T, "Create"))
            continue;
        cm_ews_item_t it = { NULL, NULL };
        s_take_id (c, &it);
        if (!it.item_id) {
            free (it.change_key);
            continue;
        }
        (*items) [(*n)++] = it;
    }
    *more = strcmp (last, "false") == 0 || strcmp (last, "0") == 0;   /* xs:boolean */
    rc = 0;
done:
    if (state)
        xmlFree (state);
    if (rc) {
        cm_ews_item_free (*items, *n);
        *items = NULL;
        *n = 0;
        free (*new_state);
        *new_state = NULL;
    }
    s_answer_free (&a);
    return rc;
}

/* GetItem IdOnly (+ item:Size): current ChangeKey and size. 0, 2 gone, -1. */
static int
s_item_info (cm_ews_t *self, cm_ews_item_t *item, long long *size, char *err, size_t errlen)
{
    cm_buf_t b;
    cm_buf_init (&b, 16384);
    cm_buf_printf (&b, "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
                   "<t:AdditionalProperties><t:FieldURI FieldURI=\"item:Size\"/>"
                   "</t:AdditionalProperties></m:ItemShape><m:ItemIds>");
    s_item_ref (&b, item, false);
    cm_buf_printf (&b, "</m:ItemIds></m:GetItem>");
    s_answer_t a;
    xmlNodePtr msg;
    char code [128];
    int rc = s_operation (self, &b, NULL, "ErrorItemNotFound", &a, &msg, code, sizeof code,
                          err, errlen);
    if (rc)
        return rc == 2 ? 2 : -1;
    s_take_id (msg, item);
    if (size) {
        char num [32];
        s_text (s_find (msg, NS_T, "Size"), num, sizeof num);
        *size = *num ? strtoll (num, NULL, 10) : -1;
    }
    s_answer_free (&a);
    return 0;
}

int
cm_ews_get_mime (cm_ews_t *self, cm_ews_item_t *item, size_t max_bytes, char **data,
                 size_t *len, char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    if (!self || !item || !item->item_id) {
        snprintf (err, errlen, "no item");
        return -1;
    }
    if (max_bytes == 0 || max_bytes > MIME_MAX)
        max_bytes = MIME_MAX;
    /* base64 of max_bytes plus room for the envelope and line breaks */
    size_t cap = max_bytes / 3 * 4 + max_bytes / 38 + 256 * 1024;
    cm_buf_t b;
    cm_buf_init (&b, 16384);
    cm_buf_printf (&b, "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>"
                   "<t:IncludeMimeContent>true</t:IncludeMimeContent></m:ItemShape><m:ItemIds>");
    s_item_ref (&b, item, false);
    cm_buf_printf (&b, "</m:ItemIds></m:GetItem>");
    s_answer_t a;
    bool overflow = false;
    int rc = s_call (self, b.data, b.len, cap, &a, NULL, &overflow, err, errlen);
    cm_buf_free (&b);
    if (rc && overflow) {
        /* too big: learn the size without the content */
        long long size = -1;
        int ir = s_item_info (self, item, &size, err, errlen);
        if (ir)
            return ir;
        *len = size > 0 ? (size_t) size : max_bytes + 1;
        snprintf (err, errlen, "message larger than %zu bytes", max_bytes);
        return 1;
    }
    if (rc)
        return -1;
    xmlNodePtr msg = NULL;
    char code [128], text [256];
    rc = s_message (&a, &msg, code, sizeof code, text, sizeof text);
    if (rc) {
        if (rc < 0)
            snprintf (err, errlen, "answer without a ResponseMessage");
        else
            s_code_reason (self, code, text, NULL, err, errlen);
        s_answer_free (&a);
        if (rc == 1 && strcmp (code, "ErrorItemNotFound") == 0)
            return 2;
        /* an error of this item (a contact or task in the folder:
           ErrorUnsupportedMimeConversion), not of the server */
        return rc == 1 && s_item_code (code) ? 3 : -1;
    }
    if (strcmp (code, "NoError") != 0) {
        /* ResponseClass Warning: not processed (a store offline, a batch
           stopped): the server's, tried again */
        s_code_reason (self, code, text, NULL, err, errlen);
        s_answer_free (&a);
        return -1;
    }
    s_take_id (msg, item);
    xmlNodePtr mc = s_find (msg, NS_T, "MimeContent");
    xmlChar *b64 = mc ? xmlNodeGetContent (mc) : NULL;
    rc = 3;                     /* a Success without it: what is wrong is this item's */
    if (!b64)
        snprintf (err, errlen, "GetItem answer without MimeContent");
    else if (s_b64_decode ((const char *) b64, strlen ((const char *) b64), data, len))
        snprintf (err, errlen, "MimeContent is not valid base64");
    else if (*len == 0) {
        free (*data);
        *data = NULL;
        snprintf (err, errlen, "GetItem answer with an empty MimeContent");
    }
    else if (*len > max_bytes) {
        free (*data);
        *data = NULL;
        snprintf (err, errlen, "message larger than %zu bytes", max_bytes);
        rc = 1;
    }
    else
        rc = 0;
    if (b64)
        xmlFree (b64);
    s_answer_free (&a);
    return rc;
}

static bool
s_stale_key (const char *code)
{
    return strcmp (code, "ErrorIrresolvableConflict") == 0
        || strcmp (code, "ErrorStaleObject") == 0
        || strcmp (code, "ErrorChangeKeyRequiredForWriteOperations") == 0
        || strcmp (code, "ErrorInvalidChangeKey") == 0;
}

int
cm_ews_mark_read (cm_ews_t *self, cm_ews_item_t *item, char *err, size_t errlen)
{
    if (!self || !item || !item->item_id) {
        snprintf (err, errlen, "no item");
        return -1;
    }
    if (!item->change_key || !*item->change_key) {
        int ir = s_item_info (self, item, NULL, err, errlen);
        if (ir)
            return ir;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        cm_buf_t b;
        cm_buf_init (&b, 16384);
        cm_buf_printf (&b, "<m:UpdateItem MessageDisposition=\"SaveOnly\" "
                       "ConflictResolution=\"AutoResolve\"><m:ItemChanges><t:ItemChange>");
        s_item_ref (&b, item, true);
        cm_buf_printf (&b, "<t:Updates><t:SetItemField><t:FieldURI FieldURI=\"message:IsRead\"/>"
                       "<t:Message><t:IsRead>true</t:IsRead></t:Message></t:SetItemField>"
                       "</t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>");
        s_answer_t a;
        xmlNodePtr msg;
        char code [128];
        int rc = s_operation (self, &b, NULL, "ErrorItemNotFound", &a, &msg, code,
                              sizeof code, err, errlen);
        if (rc == 0) {
            s_take_id (msg, item);
            s_answer_free (&a);
            return 0;
        }
        if (rc != 1)
            return rc;              /* -1 failed, 2 gone */
        if (attempt == 0 && s_stale_key (code)) {
            cm_trace (self->verbose, self->route, "ews: %s on UpdateItem, fetching the "
                      "current ChangeKey", code);
            int ir = s_item_info (self, item, NULL, err, errlen);
            if (ir)
                return ir;
            continue;
        }
        return s_item_code (code) ? 3 : -1;    /* err says why */
    }
    return -1;
}

int
cm_ews_move (cm_ews_t *self, cm_ews_item_t *item, const char *folder_id, char *err, size_t errlen)
{
    if (!self || !item || !item->item_id || !folder_id) {
        snprintf (err, errlen, "no item or folder");
        return -1;
    }
    cm_buf_t b;
    cm_buf_init (&b, 16384);
    cm_buf_printf (&b, "<m:MoveItem><m:ToFolderId>");
    s_folder_ref (&b, folder_id);
    cm_buf_printf (&b, "</m:ToFolderId><m:ItemIds>");
    s_item_ref (&b, item, false);
    cm_buf_printf (&b, "</m:ItemIds></m:MoveItem>");
    s_answer_t a;
    xmlNodePtr msg;
    char code [128];
    int rc = s_operation (self, &b, "(move target)", "ErrorItemNotFound", &a, &msg, code,
                          sizeof code, err, errlen);
    if (rc)
        return rc == 2 ? 2 : rc == 1 && s_item_code (code) ? 3 : -1;
    s_take_id (msg, item);      /* the moved item's new id */
    s_answer_free (&a);
    return 0;
}

int
cm_ews_send (cm_ews_t *self, const char *mime, size_t len, char *reply, size_t replylen)
{
    if (!self || !mime || !len) {
        snprintf (reply, replylen, "empty message");
        return 2;
    }
    if (len > MIME_MAX) {
        snprintf (reply, replylen, "message of %zu bytes larger than %u bytes", len, MIME_MAX);
        return 2;
    }
    cm_buf_t b;
    cm_buf_init (&b, len / 3 * 4 + 16384);
    cm_buf_printf (&b, "<m:CreateItem MessageDisposition=\"SendAndSaveCopy\">"
                   "<m:SavedItemFolderId><t:DistinguishedFolderId Id=\"sentitems\"/>"
                   "</m:SavedItemFolderId><m:Items><t:Message>"
                   "<t:MimeContent CharacterSet=\"UTF-8\">");
    s_b64_encode (&b, (const unsigned char *) mime, len);
    cm_buf_printf (&b, "</t:MimeContent></t:Message></m:Items></m:CreateItem>");
    s_answer_t a;
    xmlNodePtr msg = NULL;
    char code [128], text [256];
    bool transient = false;
    int rc = s_call1 (self, &b, ANSWER_MAX, &a, &msg, code, sizeof code, text, sizeof text,
                      &transient, reply, replylen);
    cm_buf_free (&b);
    if (rc < 0)
        return transient ? 1 : 2;
    s_answer_free (&a);
    if (rc == 0)
        return 0;
    char why [256];
    s_code_reason (self, code, text, NULL, why, sizeof why);
    if (*text && !strstr (why, text))
        snprintf (reply, replylen, "%s: %s", why, text);
    else
        snprintf (reply, replylen, "%s", why);
    return s_transient_code (code) ? 1 : 2;
}

/* ---------------------------------------------------------------------- */
/*  Self-test                                                             */
/* ---------------------------------------------------------------------- */

int
cm_ews_selftest (bool verbose)
{
    int failed = 0;
#define CHECK(cond, what) do { if (!(cond)) { failed++; \
        printf ("  FAIL ews: %s\n", what); } \
        else if (verbose) printf ("  ok ews: %s\n", what); } while (0)
    bool neg;
    /* Retry-After of a 503 or 429: the wait the server asks, in seconds */
    cm_ews_t *hs = calloc (1, sizeof *hs);
    if (hs) {
        char h1 [] = "HTTP/1.1 503 Service Unavailable\r\n", h2 [] = "Retry-After: 120\r\n",
             h3 [] = "Retry-After: Wed, 21 Oct 2026 07:28:00 GMT\r\n",
             h4 [] = "Retry-After: 99999\r\n";
        s_header_cb (h1, 1, strlen (h1), hs);
        s_header_cb (h2, 1, strlen (h2), hs);
        CHECK (hs->retry_after_ms == 120000, "Retry-After: 120 asks 2 minutes");
        s_header_cb (h1, 1, strlen (h1), hs);
        CHECK (hs->retry_after_ms == 0, "a new answer forgets the last Retry-After");
        s_header_cb (h3, 1, strlen (h3), hs);
        CHECK (hs->retry_after_ms == 0, "an HTTP-date Retry-After is left to the backoff");
        s_header_cb (h4, 1, strlen (h4), hs);
        CHECK (hs->retry_after_ms == EWS_BACKOFF_MAX_MS, "a Retry-After past 10 minutes is cut there");
        free (hs);
    }
    CHECK (s_version_index ("2007sp1", &neg) == 6 && !neg, "2007sp1 -> Exchange2007_SP1");
    CHECK (strcmp (s_versions [s_version_index ("2010", &neg)], "Exchange2010") == 0, "2010");
    CHECK (strcmp (s_versions [s_version_index ("2010sp1", &neg)], "Exchange2010_SP1") == 0, "2010sp1");
    CHECK (strcmp (s_versions [s_version_index ("2010sp2", &neg)], "Exchange2010_SP2") == 0, "2010sp2");
    CHECK (s_version_index ("other", &neg) == 0 && neg, "other negotiates from Exchange2016");
    CHECK (s_version_index (NULL, &neg) == 0 && neg, "no version negotiates");
    CHECK (s_version_index ("Exchange2013", &neg) == 2 && !neg, "schema value accepted");
    CHECK (s_version_index ("exchange2013", &neg) == -1, "schema value case matters");
    CHECK (s_version_index ("Exchange2007_SP2", &neg) == -1, "non-schema value refused");
    CHECK (s_version_index ("2019", &neg) == -1, "unknown version refused");

    cm_buf_t b;
    cm_buf_init (&b, 0);
    s_esc (&b, "a<b>&\"c'\x01");
    CHECK (strcmp (b.data, "a&lt;b&gt;&amp;&quot;c&apos;") == 0, "escaping");
    cm_buf_reset (&b);
    s_envelope (&b, "Exchange2010_SP2", "x<y@z", "<m:GetFolder/>", 14);
    CHECK (strstr (b.data, "<s:Header><t:RequestServerVersion Version=\"Exchange2010_SP2\"/>")
           && strstr (b.data, "xmlns:t=\"" NS_T "\"")
           && strstr (b.data, "<t:PrimarySmtpAddress>x&lt;y@z</t:PrimarySmtpAddress>")
           && strstr (b.data, "<s:Body><m:GetFolder/></s:Body>"), "envelope");
    /* the envelope is well-formed and namespace-correct */
    s_answer_t a;
    char err [256];
    {
        pthread_once (&s_xml_once, s_xml_init);
        xmlDocPtr d = xmlReadMemory (b.data, (int) b.len, "e.xml", NULL, XML_PARSE_NONET);
        xmlNodePtr root = d ? xmlDocGetRootElement (d) : NULL;
        xmlNodePtr hdr = s_child (root, NS_S, "Header");
        CHECK (s_child (hdr, NS_T, "RequestServerVersion") && s_child (hdr, NS_T, "ExchangeImpersonation"),
               "version and impersonation headers in t:");
        if (d)
            xmlFreeDoc (d);
    }
    cm_buf_reset (&b);
    s_folder_ref (&b, "inbox");
    CHECK (strcmp (b.data, "<t:DistinguishedFolderId Id=\"inbox\"/>") == 0, "distinguished folder");
    cm_buf_reset (&b);
    s_folder_ref (&b, "AAMk=\tCQAA\"");
    CHECK (strcmp (b.data, "<t:FolderId Id=\"AAMk=\" ChangeKey=\"CQAA&quot;\"/>") == 0, "folder id");
    cm_buf_reset (&b);
    cm_ews_item_t it = { "id1", "ck1" };
    s_item_ref (&b, &it, true);
    CHECK (strcmp (b.data, "<t:ItemId Id=\"id1\" ChangeKey=\"ck1\"/>") == 0, "item id");

    /* fault of EWS-NOTES section 2 */
    const char *fault =
        "<s:Envelope xmlns:s=\"" NS_S "\"><s:Body><s:Fault>"
        "<faultcode xmlns:a=\"" NS_T "\">a:ErrorInvalidServerVersion</faultcode>"
        "<faultstring xml:lang=\"en-US\">Die angegebene Serverversion ist ungueltig.</faultstring>"
        "<detail><e:ResponseCode xmlns:e=\"" NS_E "\">ErrorInvalidServerVersion</e:ResponseCode>"
        "<e:Message xmlns:e=\"" NS_E "\">The specified server version is invalid.</e:Message></detail>"
        "</s:Fault></s:Body></s:Envelope>";
    CHECK (s_parse (fault, strlen (fault), &a, err, sizeof err) == 0 && a.fault
           && strcmp (a.code, "ErrorInvalidServerVersion") == 0, "version fault parsed");
    s_answer_free (&a);
    const char *fault2 =
        "<s:Envelope xmlns:s=\"" NS_S "\"><s:Body><s:Fault>"
        "<faultcode xmlns:a=\"" NS_T "\">a:ErrorServerBusy</faultcode>"
        "<faultstring>busy</faultstring></s:Fault></s:Body></s:Envelope>";
    CHECK (s_parse (fault2, strlen (fault2), &a, err, sizeof err) == 0 && a.fault
           && strcmp (a.code, "ErrorServerBusy") == 0 && s_transient_code (a.code),
           "faultcode without detail, transient");
    CHECK (a.backoff_ms == 0, "no BackOffMilliseconds: no wait asked");
    s_answer_free (&a);
    /* throttling, as Exchange Online sends it (EWS-NOTES section 4) */
    const char *fault3 =
        "<s:Envelope xmlns:s=\"" NS_S "\"><s:Body><s:Fault>"
        "<faultcode xmlns:a=\"" NS_T "\">a:ErrorServerBusy</faultcode>"
        "<faultstring>The server cannot service this request right now.</faultstring>"
        "<detail><e:ResponseCode xmlns:e=\"" NS_E "\">ErrorServerBusy</e:ResponseCode>"
        "<t:MessageXml xmlns:t=\"" NS_T "\"><t:Value Name=\"Policy\">EWS</t:Value>"
        "<t:Value Name=\"BackOffMilliseconds\">29930</t:Value></t:MessageXml></detail>"
        "</s:Fault></s:Body></s:Envelope>";
    CHECK (s_parse (fault3, strlen (fault3), &a, err, sizeof err) == 0 && a.fault
           && strcmp (a.code, "ErrorServerBusy") == 0 && a.backoff_ms == 29930,
           "BackOffMilliseconds of a throttling fault");
    s_answer_free (&a);
    const char *fault4 =
        "<s:Envelope xmlns:s=\"" NS_S "\"><s:Body><s:Fault>"
        "<faultcode xmlns:a=\"" NS_T "\">a:ErrorServerBusy</faultcode>"
        "<detail><e:ResponseCode xmlns:e=\"" NS_E "\">ErrorServerBusy</e:ResponseCode>"
        "<t:MessageXml xmlns:t=\"" NS_T "\">"
        "<t:Value Name=\"BackOffMilliseconds\">999999999</t:Value></t:MessageXml></detail>"
        "</s:Fault></s:Body></s:Envelope>";
    CHECK (s_parse (fault4, strlen (fault4), &a, err, sizeof err) == 0
           && a.backoff_ms == EWS_BACKOFF_MAX_MS, "a BackOffMilliseconds past 10 minutes is cut there");
    s_answer_free (&a);
    const char *busy_msg =
        "<s:Envelope xmlns:s=\"" NS_S "\"><s:Body><m:GetItemResponse xmlns:m=\"" NS_M "\""
        " xmlns:t=\"" NS_T "\"><m:ResponseMessages><m:GetItemResponseMessage ResponseClass=\"Error\">"
        "<m:MessageText>busy</m:MessageText><m:ResponseCode>ErrorServerBusy</m:ResponseCode>"
        "<m:MessageXml><t:Value Name=\"BackOffMilliseconds\">5000</t:Value></m:MessageXml>"
        "</m:GetItemResponseMessage></m:ResponseMessages></m:GetItemResponse></s:Body></s:Envelope>";
    xmlNodePtr bm = NULL;
    char bcode [64], btext [64];
    CHECK (s_parse (busy_msg, strlen (busy_msg), &a, err, sizeof err) == 0
           && s_message (&a, &bm, bcode, sizeof bcode, btext, sizeof btext) == 1
           && strcmp (bcode, "ErrorServerBusy") == 0 && a.backoff_ms == 5000,
           "BackOffMilliseconds of an error ResponseMessage");
    s_answer_free (&a);
    /* response message error, with a default-namespace prefix layout */
    const char *resp =
        "<?xml version=\"1.0\"?><!-- c --><Envelope xmlns=\"" NS_S "\"><Body>"
        "<GetFolderResponse xmlns=\"" NS_M "\"><ResponseMessages>"
        "<GetFolderResponseMessage ResponseClass=\"Error\"><MessageText>nicht gefunden"
        "</MessageText><ResponseCode>ErrorFolderNotFound</ResponseCode></GetFolderResponseMessage>"
        "</ResponseMessages></GetFolderResponse></Body></Envelope>";
    xmlNodePtr msg = NULL;
    char code [128], text [256];
    CHECK (s_parse (resp, strlen (resp), &a, err, sizeof err) == 0 && !a.fault
           && s_message (&a, &msg, code, sizeof code, text, sizeof text) == 1
           && strcmp (code, "ErrorFolderNotFound") == 0, "error ResponseMessage parsed");
    s_code_reason (NULL, code, text, "Processed", err, sizeof err);
    CHECK (strcmp (err, "folder Processed not found (ErrorFolderNotFound)") == 0, err);
    s_answer_free (&a);
    /* a wrong namespace is not EWS */
    const char *wrongns = "<Envelope xmlns=\"urn:x\"><Body><a/></Body></Envelope>";
    CHECK (s_parse (wrongns, strlen (wrongns), &a, err, sizeof err) == -1, "wrong namespace refused");
    /* DTDs and entities refused */
    const char *dtd = "<?xml version=\"1.0\"?><!DOCTYPE s [<!ENTITY x \"y\">]>"
                      "<s:Envelope xmlns:s=\"" NS_S "\"><s:Body><a>&x;</a></s:Body></s:Envelope>";
    CHECK (s_parse (dtd, strlen (dtd), &a, err, sizeof err) == -1 && strstr (err, "DTD"),
           "DTD refused");
    const char *ext = "<!DOCTYPE s SYSTEM \"file:///etc/passwd\"><s/>";
    CHECK (s_parse (ext, strlen (ext), &a, err, sizeof err) == -1, "external DTD refused");
    CHECK (s_parse ("<a>", 3, &a, err, sizeof err) == -1, "malformed XML refused");
    CHECK (s_parse ("", 0, &a, err, sizeof err) == -1, "empty answer refused");

    /* base64 */
    cm_buf_reset (&b);
    s_b64_encode (&b, (const unsigned char *) "Subject: x\r\n\r\nhi", 17);
    char *dec = NULL;
    size_t dl = 0;
    CHECK (s_b64_decode (b.data, b.len, &dec, &dl) == 0 && dl == 17
           && memcmp (dec, "Subject: x\r\n\r\nhi", 17) == 0, "base64 round trip");
    free (dec);
    dec = NULL;
    CHECK (s_b64_decode ("YW\r\nJj\n", 7, &dec, &dl) == 0 && dl == 3 && memcmp (dec, "abc", 3) == 0,
           "base64 with line breaks");
    free (dec);
    dec = NULL;
    CHECK (s_b64_decode ("YW*j", 4, &dec, &dl) == -1, "bad base64 refused");
    CHECK (s_b64_decode ("Y", 1, &dec, &dl) == -1, "truncated base64 refused");

    /* traces elide MIME */
    const char *tr = "<t:Message><t:MimeContent CharacterSet=\"UTF-8\">U2VjcmV0</t:MimeContent>"
                     "</t:Message><MimeContent>QUJD</MimeContent><t:MimeContent/>";
    cm_buf_t out;
    cm_buf_init (&out, TRACE_MAX + 64);
    s_elide (tr, strlen (tr), &out);
    CHECK (strcmp (out.data, "<t:Message><t:MimeContent CharacterSet=\"UTF-8\">[8 bytes of MIME]"
                   "</t:MimeContent></t:Message><MimeContent>[4 bytes of MIME]</MimeContent>"
                   "<t:MimeContent/>") == 0, "MIME elided in traces");
    if (verbose && out.data)
        printf ("  elided: %s\n", out.data);
    cm_buf_free (&out);
    cm_buf_free (&b);

    /* 401 reasons and offered schemes */
    cm_ews_t fake;
    memset (&fake, 0, sizeof fake);
    fake.auth = AUTH_NTLM;
    fake.username = "CONTOSO\\ews2";
    snprintf (fake.www_auth, sizeof fake.www_auth, "Negotiate\nNTLM\nBasic realm=\"h\"");
    s_401_reason (&fake, err, sizeof err);
    CHECK (strcmp (err, "authentication failed (HTTP 401) for CONTOSO\\ews2: NTLM refused "
                   "(wrong user name, domain or password)") == 0, err);
    fake.auth = AUTH_BASIC;
    snprintf (fake.www_auth, sizeof fake.www_auth, "Negotiate\nNTLM");
    s_401_reason (&fake, err, sizeof err);
    CHECK (strstr (err, "BASIC not offered by the server (it offers Negotiate, NTLM)") != NULL, err);
    fake.auth = AUTH_OAUTH2;
    fake.impersonate = "a@b";
    snprintf (fake.www_auth, sizeof fake.www_auth, "Bearer client_id=\"x\", error=\"invalid_token\"");
    snprintf (fake.diag, sizeof fake.diag, "2000008;reason=\"x\"");
    s_401_reason (&fake, err, sizeof err);
    CHECK (strstr (err, "full_access_as_app") && strstr (err, "2000008"), err);
    fake.version = 2;
    s_code_reason (&fake, "ErrorInvalidServerVersion", "", NULL, err, sizeof err);
    CHECK (strcmp (err, "version Exchange2013 refused by the server (ErrorInvalidServerVersion)") == 0, err);
    s_code_reason (&fake, "ErrorImpersonateUserDenied", "", NULL, err, sizeof err);
    CHECK (strcmp (err, "impersonation of a@b refused (ErrorImpersonateUserDenied)") == 0, err);
#undef CHECK
    return failed ? -1 : 0;
}
