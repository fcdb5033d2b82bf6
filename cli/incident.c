/*  cli/incident.c: "casemail incident ...", "inbox list", "attachment
    get" and "outbox list": what analysts do with incidents and their
    mail. Everything shown from mail (subjects, senders, bodies, file
    names) is cleaned of control characters before it reaches the
    terminal, and a downloaded attachment is written only to the file the
    user named, never to a name the server suggests. */
#include "api.h"
#include "cli.h"
#include "json.h"
#include "print.h"
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define S_BODY_MAX    (4u * 1024 * 1024)    /* --body-file, --html-file */
#define S_ATTACH_MAX  (32u * 1024 * 1024)   /* one --attach file */
#define S_TREE_LEVELS 16    /* attachment levels indented; deeper ones say their level */

static const char *const s_inbox_states [] = { "fetched", "parsed", "rejected", NULL };
static const char *const s_outbox_states [] = {
    "queued", "sending", "sent", "failed", "bounced", NULL
};

static const char *s_incident_usage =
    "usage:\n"
    "  casemail incident list [--route R] [--json]\n"
    "  casemail incident show INC-n [--json]\n"
    "  casemail incident email INC-n --to ADDR [--to ADDR ...] [--cc ADDR ...]\n"
    "         [--subject TEXT] (--body TEXT | --body-file FILE) [--html-file FILE]\n"
    "         [--attach FILE ...] [--attach-from ATTACHMENT-ID ...]\n"
    "         [--wait [--wait-timeout SECONDS]]\n";
static const char *s_inbox_usage =
    "usage: casemail inbox list [--route R] [--state fetched|parsed|rejected] [--json]\n";
static const char *s_attachment_usage =
    "usage: casemail attachment get ID -o FILE   (FILE '-' = stdout, not a terminal\n"
    "                                             unless --to-terminal)\n";
static const char *s_outbox_usage =
    "usage: casemail outbox list [--state queued|sending|sent|failed|bounced] [--json]\n";

enum {
    S_JSON = 1, S_ROUTE, S_STATE, S_OUTPUT, S_TO, S_CC, S_SUBJECT, S_BODY,
    S_BODY_FILE, S_HTML_FILE, S_ATTACH, S_ATTACH_FROM, S_WAIT, S_WAIT_TIMEOUT, S_TO_TERMINAL
};

/* Shared handling of the scanner's answers for the simple commands:
   returns -1 to go on with an option, otherwise the exit code. */
static int
s_scan_common (int what, const char *usage, const char *value,
               const char **args, int max, int *nargs)
{
    if (what == CLI_SCAN_HELP) {
        fputs (usage, stdout);
        return CLI_OK;
    }
    if (what == CLI_SCAN_ERROR)
        return CLI_USAGE;
    if (what == CLI_SCAN_ARG) {
        if (*nargs >= max) {
            cli_err ("unexpected argument '%s'", value);
            fputs (usage, stderr);
            return CLI_USAGE;
        }
        args [(*nargs)++] = value;
    }
    return -1;
}

/* True when text is an incident number as the router takes it: "INC-"
   (any case) or nothing, then digits only, 1 to LLONG_MAX. Printed
   and false otherwise, so that "", " 5" or "INC-+5" never reach a path. */
static bool
s_incident_arg (const char *text)
{
    const char *digits = strncasecmp (text, "INC-", 4) == 0 ? text + 4 : text;
    long long n = 0;
    bool ok = *digits != 0;
    for (const char *p = digits; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9' && n <= (LLONG_MAX - (*p - '0')) / 10;
        n = ok ? n * 10 + (*p - '0') : n;
    }
    if (ok && n > 0)
        return true;
    char clean [256];
    cli_err ("'%s' is not an incident number (INC-n)",
             cli_clean (text, false, clean, sizeof clean));
    return false;
}

/* Takes --route NAME, given once and not empty. Exit code. */
static int
s_route_opt (const char **route, const char **given, const char *opt,
             const char *value)
{
    if (cli_once (given, opt, "the route"))
        return CLI_USAGE;
    if (!*value) {
        cli_err ("%s: the route NAME is empty", opt);
        return CLI_USAGE;
    }
    *route = value;
    return CLI_OK;
}

/* Appends "&key=escaped" (or "?key=...") to path. 0 or -1. */
static int
s_query (char *path, size_t size, const char *key, const char *value)
{
    if (!value)
        return 0;
    char *esc = cli_api_escape (value);
    if (!esc)
        return -1;
    size_t len = strlen (path);
    int n = snprintf (path + len, size - len, "%c%s=%s",
                      strchr (path, '?') ? '&' : '?', key, esc);
    free (esc);
    return n < 0 || (size_t) n >= size - len ? -1 : 0;
}

/* GETs path and prints the JSON or, through print, a table. */
static int
s_get_and_print (const char *path, bool json, void (*print) (const json_t *))
{
    cli_api_t *api = NULL;
    json_t *reply = NULL;
    int rc = cli_api_connect (&api);
    if (rc == CLI_OK)
        rc = cli_api_call (api, "GET", path, NULL, CLI_API_TIMEOUT, &reply);
    if (rc == CLI_OK) {
        if (json)
            cli_api_print_json (reply);
        else
            print (reply);
    }
    json_decref (reply);
    cli_api_destroy (&api);
    return rc;
}

/* How a list command shows its items: the reply's array, a new table
   with its headers, and an item's row. */
typedef struct {
    const char *key;
    cli_table_t *(*table) (void);
    int (*row) (cli_table_t *table, const json_t *item);   /* 0 or -1 */
} list_view_t;

/* Prints one item of a streamed {"KEY": [...]} (the first one opens
   it) at the indent cli_api_print_json gives it: JSON text has no raw
   line breaks. 0, or -1 out of memory (nothing printed). */
static int
s_print_json_item (const char *key, const json_t *item, bool first)
{
    char *text = cm_json_dumps (item, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
    if (!text)
        return -1;
    if (first)
        printf ("{\n  \"%s\": [\n    ", key);
    else
        fputs (",\n    ", stdout);
    for (const char *p = text; *p; p++) {
        putchar (*p);
        if (*p == '\n')
            fputs ("    ", stdout);
    }
    free (text);
    return 0;
}

/* GETs a list page by page (the router answers at most a page at a
   time, with the key to ask "after" for the next) and prints each page
   as it comes: into one table, or as one JSON document {"KEY": [...]}
   as cli_api_print_json would print the whole list. So neither the
   router nor this command holds more than a page. A list broken off
   midway exits non-zero, and leaves a JSON document unended: what reads
   it fails rather than taking a part for the whole. */
static int
s_list_pages (const char *base, bool json, const list_view_t *view)
{
    cli_api_t *api = NULL;
    cli_table_t *table = NULL;
    int rc = cli_api_connect (&api);
    if (rc == CLI_OK && !json && !(table = view->table ())) {
        cli_err ("out of memory");
        rc = CLI_FAIL;
    }
    size_t count = 0;
    long long after = 0;
    bool more = rc == CLI_OK, first = true;
    while (more) {
        char path [1200];
        int n = snprintf (path, sizeof path, "%s%climit=1000", base,
                          strchr (base, '?') ? '&' : '?');
        if (n > 0 && (size_t) n < sizeof path && !first)
            n += snprintf (path + n, sizeof path - (size_t) n, "&after=%lld", after);
        if (n < 0 || (size_t) n >= sizeof path) {
            cli_err ("the list's address is too long");
            rc = CLI_USAGE;
            break;
        }
        json_t *reply = NULL;
        rc = cli_api_call (api, "GET", path, NULL, CLI_API_TIMEOUT, &reply);
        if (rc != CLI_OK)
            break;
        size_t i;
        json_t *item;
        json_array_foreach (json_object_get (reply, view->key), i, item) {
            if (json ? s_print_json_item (view->key, item, count == 0) : view->row (table, item)) {
                cli_err ("out of memory");
                rc = CLI_FAIL;
                break;
            }
            count++;
        }
        json_t *next = json_object_get (reply, "next");
        more = rc == CLI_OK && json_is_integer (next);
        if (more && !first && json_integer_value (next) <= after) {
            cli_err ("the router's list went back from %lld to %lld: stopped",
                     after, (long long) json_integer_value (next));
            rc = CLI_FAIL;
            more = false;
        }
        if (more)
            after = json_integer_value (next);
        first = false;
        json_decref (reply);
        if (table && cli_table_print (table, stdout)) {
            cli_err ("out of memory");
            rc = CLI_FAIL;
            more = false;
        }
        fflush (stdout);
    }
    if (json && rc == CLI_OK) {
        if (count)
            fputs ("\n  ]\n}\n", stdout);
        else
            printf ("{\n  \"%s\": []\n}\n", view->key);
    }
    cli_table_destroy (&table);
    cli_api_destroy (&api);
    return rc;
}

/* Path "PREFIX/ESCAPED-ID[SUFFIX]" into out. 0 or -1. */
static int
s_object_path (char *out, size_t size, const char *prefix, const char *id,
               const char *suffix)
{
    char *esc = cli_api_escape (id);
    if (!esc)
        return -1;
    int n = snprintf (out, size, "%s/%s%s", prefix, esc, suffix);
    free (esc);
    return n < 0 || (size_t) n >= size ? -1 : 0;
}

/* --------------------------------------------------------- incident list */

static cli_table_t *
s_incidents_table (void)
{
    static const char *const headers [] = {
        "NUMBER", "ROUTE", "STATUS", "CREATED", "REPORTER", "TITLE"
    };
    cli_table_t *table = cli_table_new (6, headers);
    if (table) {
        cli_table_max (table, 4, 40);
        cli_table_flex (table, 5, 16, 70);
    }
    return table;
}

static int
s_incidents_row (cli_table_t *table, const json_t *inc)
{
    char number [64], created [64];
    const char *cells [6] = {
        cli_json_text (json_object_get (inc, "number"), number, sizeof number),
        cli_json_str (inc, "route"), cli_json_str (inc, "status"),
        cli_time (cli_json_str (inc, "created_at"), created, sizeof created),
        cli_json_str (inc, "reporter"), cli_json_str (inc, "title")
    };
    return cli_table_add (table, cells);
}

static const list_view_t s_incidents_view = {
    "incidents", s_incidents_table, s_incidents_row
};

static int
s_incident_list (int argc, char **argv)
{
    static const cli_opt_t table [] = {
        { "--route", true, S_ROUTE }, { "--json", false, S_JSON }, { NULL, false, 0 }
    };
    cli_scan_t scan;
    cli_scan_init (&scan, argc, argv, 1);
    const char *route = NULL, *value, *route_given = NULL, *json_given = NULL;
    const cli_opt_t *opt;
    bool json = false;
    int what, nargs = 0;
    while ((what = cli_scan_next (&scan, table, &opt, &value)) != CLI_SCAN_END) {
        int rc = s_scan_common (what, s_incident_usage, value, NULL, 0, &nargs);
        if (rc >= 0)
            return rc;
        if (what != CLI_SCAN_OPT)
            continue;
        if (opt->id == S_JSON) {
            if (cli_once (&json_given, opt->name, opt->name))
                return CLI_USAGE;
            json = true;
        }
        else
        if (s_route_opt (&route, &route_given, opt->name, value))
            return CLI_USAGE;
    }
    char path [1024] = "/v1/incidents";
    if (s_query (path, sizeof path, "route", route)) {
        cli_err ("--route: the name is too long");
        return CLI_USAGE;
    }
    return s_list_pages (path, json, &s_incidents_view);
}

/* --------------------------------------------------------- incident show */

/* Prints text indented, each line cleaned. */
static void
s_print_block (const char *text, const char *indent)
{
    size_t len = strlen (text);
    char *clean = malloc (len + 1);
    if (!clean)
        return;
    cli_clean (text, true, clean, len + 1);
    len = strlen (clean);
    while (len > 0 && clean [len - 1] == '\n')
        clean [--len] = 0;
    for (char *line = clean, *next; line; line = next) {
        next = strchr (line, '\n');
        if (next)
            *next++ = 0;
        printf ("%s%s\n", indent, line);
    }
    free (clean);
}

static void
s_line (const char *key, const json_t *value)
{
    char text [4096];
    printf ("%-13s %s\n", key, cli_json_text (value, text, sizeof text));
}

/* Prints one attachment's line at a level of the tree (0: a file of the
   mail itself), then, for an attached message, its subject, sender and
   date just under it, where its own files follow. */
static void
s_print_attachment (const json_t *a, size_t level)
{
    char id [32], name [512], type [256], size [32], sha [16], note [1024];
    cli_json_text (json_object_get (a, "id"), id, sizeof id);
    cli_json_text (json_object_get (a, "filename"), name, sizeof name);
    cli_json_text (json_object_get (a, "content_type"), type, sizeof type);
    const json_t *bytes = json_object_get (a, "size");
    if (json_is_integer (bytes))
        snprintf (size, sizeof size, "%" JSON_INTEGER_FORMAT " B", json_integer_value (bytes));
    else
        snprintf (size, sizeof size, "-");
    cli_clean (cli_json_str (a, "sha256"), false, sha, 13);
    cli_json_text (json_object_get (a, "note"), note, sizeof note);
    /* the indent stops growing, so a chain of any length prints in
       lines of bounded width; the level it stands for is then written */
    int indent = 4 + 2 * (int) (level < S_TREE_LEVELS ? level : S_TREE_LEVELS);
    printf ("%*s", indent, "");
    if (level > S_TREE_LEVELS)
        printf ("[level %zu] ", level);
    printf ("#%s  %s  %s  %s  sha256:%s", id, name, type, size, *sha ? sha : "-");
    if (json_is_true (json_object_get (a, "inline")))
        printf ("  inline");
    if (json_is_true (json_object_get (a, "nested")))
        printf ("  nested");
    if (strcmp (note, "-") != 0)
        printf ("  (%s)", note);
    putchar ('\n');
    const json_t *h = json_object_get (a, "headers");
    if (!json_is_object (h))
        return;
    char subject [1024], from [1040], from_name [512], from_addr [512];
    cli_json_text (json_object_get (h, "subject"), subject, sizeof subject);
    cli_clean (cli_json_str (h, "from_name"), false, from_name, sizeof from_name);
    cli_clean (cli_json_str (h, "from"), false, from_addr, sizeof from_addr);
    if (*from_name && *from_addr)
        snprintf (from, sizeof from, "%s <%s>", from_name, from_addr);
    else
        snprintf (from, sizeof from, "%s", *from_addr ? from_addr : *from_name ? from_name : "-");
    printf ("%*ssubject: %s\n", indent + 2, "", *subject ? subject : "-");
    printf ("%*sfrom:    %s\n", indent + 2, "", from);
    /* when it was sent tells a forwarded mail from a fresh one; as its
       Date header says it, for a message that has one */
    char date [256];
    cli_clean (cli_json_str (h, "date"), false, date, sizeof date);
    if (*date)
        printf ("%*sdate:    %s\n", indent + 2, "", date);
}

/* One attachment of an entry while they are put in tree order. */
typedef struct {
    const json_t *json;         /* the attachment, owned by the reply */
    size_t index;               /* its place in the reply */
    bool has_id;                /* "id" is an integer */
    json_int_t id;
    size_t parent;              /* holder's node, S_NONE: top level */
    size_t child;               /* first child (id order), S_NONE */
    size_t last;                /* last child so far, S_NONE */
    size_t next;                /* next sibling, S_NONE */
    size_t walk;                /* the loop search that passed it, + 1 */
    bool done;                  /* printed */
} att_node_t;

#define S_NONE SIZE_MAX

/* Id order; attachments without an integer id after those with one;
   ties in the reply's order. */
static int
s_node_cmp (const void *x, const void *y)
{
    const att_node_t *a = x, *b = y;
    if (a->has_id != b->has_id)
        return a->has_id ? -1 : 1;
    if (a->has_id && a->id != b->id)
        return a->id < b->id ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The first node (in id order) with the id, or S_NONE. */
static size_t
s_node_find (const att_node_t *nodes, size_t n, json_int_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (nodes [mid].has_id && nodes [mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && nodes [lo].has_id && nodes [lo].id == id ? lo : S_NONE;
}

/* Prints root and, depth first, what hangs under it that is not printed
   yet, each child under its parent one level deeper. Iterative (stack
   holds at most every node once), so no depth of nesting can exhaust the
   call stack. */
static void
s_print_subtree (att_node_t *nodes, size_t *stack, size_t root)
{
    size_t top = 0;
    nodes [root].done = true;
    s_print_attachment (nodes [root].json, 0);
    stack [top++] = root;
    while (top) {
        att_node_t *cur = &nodes [stack [top - 1]];
        size_t c = cur->child;
        while (c != S_NONE && nodes [c].done)
            c = nodes [c].next;
        if (c == S_NONE) {
            cur->child = S_NONE;
            top--;
            continue;
        }
        cur->child = nodes [c].next;        /* the child cursor moves on */
        nodes [c].done = true;
        s_print_attachment (nodes [c].json, top);
        stack [top++] = c;
    }
}

/* Where to break the loop of parents that node i, printed under no
   top-level node, hangs from: the loop's first node in id order. The
   walk up from i marks what it passes, and meets a node twice only on
   the loop; no node is walked twice in all, since what a loop holds is
   printed with it. */
static size_t
s_loop_start (att_node_t *nodes, size_t n, size_t i)
{
    size_t x = i;
    for (size_t steps = 0; nodes [x].walk != i + 1 && steps < n; steps++) {
        nodes [x].walk = i + 1;
        if (nodes [x].parent == S_NONE)
            return x;                   /* not a loop after all */
        x = nodes [x].parent;
    }
    size_t first = x;
    for (size_t y = nodes [x].parent; y != x && y != S_NONE; y = nodes [y].parent)
        if (y < first)
            first = y;
    return first;
}

/* Prints an entry's attachments as the tree that parent_id makes: each
   one followed by those it holds (the files of an attached message, those
   taken out of a winmail.dat), indented a level deeper, siblings in id
   order, whatever order the reply has. None is lost to data that makes
   no tree: one whose parent is not in the list, or is itself, prints at
   the top level, and so does the lowest id of a loop of parents, with the
   rest of the loop and what hangs from it under it, after the rest. Out
   of memory, they print in the reply's order, at the top level. */
static void
s_print_attachments (const json_t *atts)
{
    size_t n = json_array_size (atts);
    att_node_t *nodes = n ? calloc (n, sizeof *nodes) : NULL;
    size_t *stack = n ? calloc (n, sizeof *stack) : NULL;
    if (!nodes || !stack) {
        for (size_t i = 0; i < n; i++)
            s_print_attachment (json_array_get (atts, i), 0);
        free (nodes);
        free (stack);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get (atts, i);
        const json_t *id = json_object_get (a, "id");
        nodes [i].json = a;
        nodes [i].index = i;
        nodes [i].has_id = json_is_integer (id);
        nodes [i].id = json_integer_value (id);
    }
    qsort (nodes, n, sizeof *nodes, s_node_cmp);
    for (size_t i = 0; i < n; i++) {
        nodes [i].child = nodes [i].last = nodes [i].next = S_NONE;
        const json_t *parent = json_object_get (nodes [i].json, "parent_id");
        size_t p = json_is_integer (parent)
                 ? s_node_find (nodes, n, json_integer_value (parent)) : S_NONE;
        nodes [i].parent = p == i ? S_NONE : p;
    }
    /* children are linked in id order, as i runs */
    for (size_t i = 0; i < n; i++) {
        size_t p = nodes [i].parent;
        if (p == S_NONE)
            continue;
        if (nodes [p].last == S_NONE)
            nodes [p].child = i;
        else
            nodes [nodes [p].last].next = i;
        nodes [p].last = i;
    }
    for (size_t i = 0; i < n; i++)
        if (nodes [i].parent == S_NONE)
            s_print_subtree (nodes, stack, i);
    for (size_t i = 0; i < n; i++)         /* what only a loop holds */
        if (!nodes [i].done)
            s_print_subtree (nodes, stack, s_loop_start (nodes, n, i));
    free (stack);
    free (nodes);
}

/* True when a member is worth a line: not absent, null, "" or []. */
static bool
s_present (const json_t *v)
{
    return v && !json_is_null (v)
        && !(json_is_string (v) && !*json_string_value (v))
        && !(json_is_array (v) && json_array_size (v) == 0);
}

static void
s_print_entry (size_t index, const json_t *e)
{
    char id [32], when [64], dir [16], kind [32];
    cli_json_text (json_object_get (e, "id"), id, sizeof id);
    cli_json_text (json_object_get (e, "direction"), dir, sizeof dir);
    cli_json_text (json_object_get (e, "kind"), kind, sizeof kind);
    /* "date" is the mail's own Date header; created_at is when we saw it. */
    const char *seen = cli_json_str (e, "created_at");
    cli_time (seen ? seen : cli_json_str (e, "date"), when, sizeof when);
    printf ("\n--- %zu. %s %s #%s  %s\n", index + 1,
            strcmp (dir, "out") == 0 ? "outbound" : strcmp (dir, "in") == 0 ? "inbound" : dir,
            kind, id, when);
    static const char *const keys [][2] = {
        { "from", "from:" }, { "to", "to:" }, { "cc", "cc:" },
        { "subject", "subject:" }, { "date", "date:" },
        { "message_id", "message-id:" }, { "state", "state:" },
        { "flags", "flags:" }, { "smtp_reply", "smtp reply:" },
        { "dsn_status", "dsn status:" }, { "last_error", "last error:" },
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys [0]; k++) {
        const json_t *v = json_object_get (e, keys [k][0]);
        if (s_present (v) || k == 0 || k == 1 || k == 3)
            s_line (keys [k][1], v);
    }
    const char *text = cli_json_str (e, "new_text");
    if (!text || !*text)
        text = cli_json_str (e, "text");
    if (text && *text) {
        putchar ('\n');
        s_print_block (text, "    ");
    }
    const char *quoted = cli_json_str (e, "quoted_text");
    if (quoted && *quoted && text != quoted) {
        size_t lines = 1;
        for (const char *p = quoted; *p; p++)
            lines += *p == '\n' && p [1];
        printf ("    (quoted text: %zu line%s not shown; --json has it)\n",
                lines, lines == 1 ? "" : "s");
    }
    const json_t *atts = json_object_get (e, "attachments");
    if (json_is_array (atts) && json_array_size (atts)) {
        printf ("attachments:\n");
        s_print_attachments (atts);
    }
}

static void
s_print_incident (const json_t *inc)
{
    char number [64], title [1024];
    cli_json_text (json_object_get (inc, "number"), number, sizeof number);
    cli_json_text (json_object_get (inc, "title"), title, sizeof title);
    printf ("%s: %s\n", number, title);
    char created [64];
    s_line ("route:", json_object_get (inc, "route"));
    s_line ("status:", json_object_get (inc, "status"));
    s_line ("reporter:", json_object_get (inc, "reporter"));
    printf ("%-13s %s\n", "created:",
            cli_time (cli_json_str (inc, "created_at"), created, sizeof created));
    const json_t *count = json_object_get (inc, "messages");
    if (count)
        s_line ("messages:", count);
    else
        printf ("%-13s %zu\n", "messages:", json_array_size (json_object_get (inc, "timeline")));
    const char *description = cli_json_str (inc, "description");
    if (description && *description) {
        printf ("description:\n");
        s_print_block (description, "    ");
    }
    size_t i;
    json_t *e;
    json_array_foreach (json_object_get (inc, "timeline"), i, e)
        s_print_entry (i, e);
}

static int
s_incident_show (int argc, char **argv)
{
    static const cli_opt_t table [] = { { "--json", false, S_JSON }, { NULL, false, 0 } };
    cli_scan_t scan;
    cli_scan_init (&scan, argc, argv, 1);
    const char *args [1] = { NULL }, *value, *json_given = NULL;
    const cli_opt_t *opt;
    bool json = false;
    int what, nargs = 0;
    while ((what = cli_scan_next (&scan, table, &opt, &value)) != CLI_SCAN_END) {
        int rc = s_scan_common (what, s_incident_usage, value, args, 1, &nargs);
        if (rc >= 0)
            return rc;
        if (what == CLI_SCAN_OPT) {
            if (cli_once (&json_given, opt->name, opt->name))
                return CLI_USAGE;
            json = true;
        }
    }
    if (!args [0]) {
        cli_err ("missing incident number (usage: casemail incident show INC-n [--json])");
        return CLI_USAGE;
    }
    if (!s_incident_arg (args [0]))
        return CLI_USAGE;
    char path [512];
    if (s_object_path (path, sizeof path, "/v1/incidents", args [0], "")) {
        cli_err ("the incident number is too long");
        return CLI_USAGE;
    }
    return s_get_and_print (path, json, s_print_incident);
}

/* -------------------------------------------------------- incident email */

static char *
s_base64 (const unsigned char *data, size_t len)
{
    static const char digits [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc ((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t) data [i] << 16;
        if (i + 1 < len)
            v |= (uint32_t) data [i + 1] << 8;
        if (i + 2 < len)
            v |= data [i + 2];
        out [o++] = digits [(v >> 18) & 63];
        out [o++] = digits [(v >> 12) & 63];
        out [o++] = i + 1 < len ? digits [(v >> 6) & 63] : '=';
        out [o++] = i + 2 < len ? digits [v & 63] : '=';
    }
    out [o] = 0;
    return out;
}

/* A MIME type from the file name's extension. */
static const char *
s_content_type (const char *name)
{
    static const char *const types [][2] = {
        { "txt", "text/plain" }, { "log", "text/plain" }, { "csv", "text/csv" },
        { "htm", "text/html" }, { "html", "text/html" }, { "xml", "application/xml" },
        { "json", "application/json" }, { "pdf", "application/pdf" },
        { "zip", "application/zip" }, { "gz", "application/gzip" },
        { "tar", "application/x-tar" }, { "7z", "application/x-7z-compressed" },
        { "png", "image/png" }, { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" },
        { "gif", "image/gif" }, { "svg", "image/svg+xml" }, { "webp", "image/webp" },
        { "eml", "message/rfc822" }, { "msg", "application/vnd.ms-outlook" },
        { "doc", "application/msword" },
        { "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document" },
        { "xls", "application/vnd.ms-excel" },
        { "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
        { "ppt", "application/vnd.ms-powerpoint" },
        { "pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation" },
        { "pcap", "application/vnd.tcpdump.pcap" }, { "ics", "text/calendar" },
    };
    const char *dot = strrchr (name, '.');
    if (dot && dot != name)
        for (size_t i = 0; i < sizeof types / sizeof types [0]; i++)
            if (strcasecmp (dot + 1, types [i][0]) == 0)
                return types [i][1];
    return "application/octet-stream";
}

/* Reads FILE into an attachment object {filename, content_type,
   data_base64}; NULL with a message. */
static json_t *
s_attachment (const char *path)
{
    size_t len;
    char *data = cli_read_file ("--attach", path, S_ATTACH_MAX, &len);
    if (!data)
        return NULL;
    char *b64 = s_base64 ((const unsigned char *) data, len);
    free (data);
    const char *base = strrchr (path, '/');
    base = base ? base + 1 : path;
    json_t *name = json_string (base);
    json_t *att = json_object ();
    if (!b64 || !name || !att || !*base) {
        cli_err ("--attach: cannot use %s (empty or non-UTF-8 file name?)", path);
        free (b64);
        json_decref (name);
        json_decref (att);
        return NULL;
    }
    json_object_set_new (att, "filename", name);
    json_object_set_new (att, "content_type", json_string (s_content_type (base)));
    json_object_set_new (att, "data_base64", json_string_nocheck (b64));
    free (b64);
    return att;
}

/* Adds an address to the array, refusing CR and LF. Exit code. */
static int
s_add_header_text (json_t *array, const char *opt, const char *value)
{
    if (strpbrk (value, "\r\n")) {
        cli_err ("%s: line breaks are not allowed", opt);
        return CLI_USAGE;
    }
    if (!*value) {
        cli_err ("%s: the value is empty", opt);
        return CLI_USAGE;
    }
    json_t *s = json_string (value);
    if (!s) {
        cli_err ("%s: the value is not valid UTF-8", opt);
        return CLI_USAGE;
    }
    json_array_append_new (array, s);
    return CLI_OK;
}

/* Polls the outbox until the email is final; exit code. */
static int
s_wait_email (cli_api_t *api, json_int_t id, long timeout_s)
{
    char path [64], idtext [32];
    snprintf (idtext, sizeof idtext, "%" JSON_INTEGER_FORMAT, id);
    snprintf (path, sizeof path, "/v1/outbox/%s", idtext);
    struct timespec start, now;
    clock_gettime (CLOCK_MONOTONIC, &start);
    char state [64] = "queued";
    while (1) {
        json_t *reply = NULL;
        int rc = cli_api_call (api, "GET", path, NULL, CLI_API_TIMEOUT, &reply);
        if (rc != CLI_OK)
            return rc;
        cli_clean (cli_json_str (reply, "state"), false, state, sizeof state);
        char text [2048];
        if (strcmp (state, "sent") == 0) {
            const char *what = cli_json_str (reply, "reply");
            if (!what)
                what = cli_json_str (reply, "smtp_reply");
            if (!what)
                what = cli_json_str (reply, "message_id");
            printf ("email %s sent: %s\n", idtext,
                    cli_clean (what ? what : "-", false, text, sizeof text));
            /* recipients the server refused while the others took it */
            const char *refused = cli_json_str (reply, "last_error");
            if (refused && *refused)
                printf ("email %s %s\n", idtext,
                        cli_clean (refused, false, text, sizeof text));
            json_decref (reply);
            return CLI_OK;
        }
        if (strcmp (state, "failed") == 0 || strcmp (state, "bounced") == 0) {
            const char *error = cli_json_str (reply, "last_error");
            printf ("email %s failed: %s%s\n", idtext,
                    strcmp (state, "bounced") == 0 ? "bounced: " : "",
                    cli_clean (error ? error : "-", false, text, sizeof text));
            json_decref (reply);
            return CLI_FAIL;
        }
        json_decref (reply);
        clock_gettime (CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s) {
            printf ("email %s is still %s after %ld s\n", idtext, state, timeout_s);
            return CLI_FAIL;
        }
        struct timespec pause = { 0, 500 * 1000 * 1000 };
        nanosleep (&pause, NULL);
    }
}

static int
s_incident_email (int argc, char **argv)
{
    static const cli_opt_t table [] = {
        { "--to", true, S_TO }, { "--cc", true, S_CC },
        { "--subject", true, S_SUBJECT }, { "--body", true, S_BODY },
        { "--body-file", true, S_BODY_FILE }, { "--html-file", true, S_HTML_FILE },
        { "--attach", true, S_ATTACH }, { "--attach-from", true, S_ATTACH_FROM },
        { "--wait", false, S_WAIT }, { "--wait-timeout", true, S_WAIT_TIMEOUT },
        { NULL, false, 0 }
    };
    json_t *body = json_object (), *to = json_array (), *cc = json_array ();
    json_t *atts = json_array (), *ids = json_array ();
    const char *args [1] = { NULL }, *value;
    /* the option that gave each single value (cli_once) */
    const char *text_opt = NULL, *html_opt = NULL, *subject_opt = NULL;
    const char *wait_opt = NULL, *timeout_opt = NULL;
    const cli_opt_t *opt;
    bool wait = false;
    long wait_timeout = 120, n;
    int what, nargs = 0, rc = CLI_OK;
    cli_api_t *api = NULL;
    json_t *reply = NULL;
    if (!body || !to || !cc || !atts || !ids) {
        rc = CLI_FAIL;
        goto done;
    }
    cli_scan_t scan;
    cli_scan_init (&scan, argc, argv, 1);
    while (rc == CLI_OK
       && (what = cli_scan_next (&scan, table, &opt, &value)) != CLI_SCAN_END) {
        int r = s_scan_common (what, s_incident_usage, value, args, 1, &nargs);
        if (r >= 0) {
            rc = r;
            goto done;
        }
        if (what != CLI_SCAN_OPT)
            continue;
        switch (opt->id) {
            case S_TO:
            case S_CC:
                rc = s_add_header_text (opt->id == S_TO ? to : cc, opt->name, value);
                break;
            case S_SUBJECT:
                if (cli_once (&subject_opt, opt->name, "the subject"))
                    rc = CLI_USAGE;
                else
                if (strpbrk (value, "\r\n")) {
                    cli_err ("--subject: line breaks are not allowed");
                    rc = CLI_USAGE;
                }
                else
                if (json_object_set_new (body, "subject", json_string (value))) {
                    cli_err ("--subject: the value is not valid UTF-8");
                    rc = CLI_USAGE;
                }
                break;
            case S_BODY:
            case S_BODY_FILE:
            case S_HTML_FILE: {
                const char *field = opt->id == S_HTML_FILE ? "html" : "body";
                if (cli_once (opt->id == S_HTML_FILE ? &html_opt : &text_opt,
                              opt->name, opt->id == S_HTML_FILE ? "the HTML" : "the body")) {
                    rc = CLI_USAGE;
                    break;
                }
                char *text = opt->id == S_BODY ? strdup (value)
                           : cli_read_text (opt->name, value, S_BODY_MAX);
                if (!text) {
                    rc = CLI_USAGE;
                    break;
                }
                if (json_object_set_new (body, field, json_string (text))) {
                    cli_err ("%s: the text is not valid UTF-8", opt->name);
                    rc = CLI_USAGE;
                }
                free (text);
                break;
            }
            case S_ATTACH: {
                json_t *att = s_attachment (value);
                if (att)
                    json_array_append_new (atts, att);
                else
                    rc = CLI_USAGE;
                break;
            }
            case S_ATTACH_FROM:
                if (cli_parse_int (value, 1, LONG_MAX, &n)) {
                    cli_err ("--attach-from: '%s' is not an attachment ID", value);
                    rc = CLI_USAGE;
                }
                else
                    json_array_append_new (ids, json_integer (n));
                break;
            case S_WAIT:
                if (cli_once (&wait_opt, opt->name, opt->name))
                    rc = CLI_USAGE;
                wait = true;
                break;
            case S_WAIT_TIMEOUT:
                if (cli_once (&timeout_opt, opt->name, opt->name))
                    rc = CLI_USAGE;
                else
                if (cli_parse_int (value, 1, 86400, &wait_timeout)) {
                    cli_err ("--wait-timeout: '%s' is not a number of seconds (1-86400)", value);
                    rc = CLI_USAGE;
                }
                break;
        }
    }
    if (rc != CLI_OK)
        goto done;
    if (!args [0]) {
        cli_err ("missing incident number (usage: casemail incident email INC-n --to ADDR ...)");
        rc = CLI_USAGE;
        goto done;
    }
    if (!s_incident_arg (args [0])) {
        rc = CLI_USAGE;
        goto done;
    }
    if (json_array_size (to) == 0) {
        cli_err ("give at least one --to ADDR");
        rc = CLI_USAGE;
        goto done;
    }
    if (!text_opt) {
        cli_err ("give the text with --body TEXT or --body-file FILE");
        rc = CLI_USAGE;
        goto done;
    }
    json_object_set (body, "to", to);
    if (json_array_size (cc))
        json_object_set (body, "cc", cc);
    if (json_array_size (atts))
        json_object_set (body, "attachments", atts);
    if (json_array_size (ids))
        json_object_set (body, "attachment_ids", ids);

    char path [512];
    if (s_object_path (path, sizeof path, "/v1/incidents", args [0], "/email")) {
        cli_err ("the incident number is too long");
        rc = CLI_USAGE;
        goto done;
    }
    rc = cli_api_connect (&api);
    if (rc == CLI_OK)
        rc = cli_api_call (api, "POST", path, body, CLI_API_TIMEOUT, &reply);
    if (rc != CLI_OK)
        goto done;
    json_t *id = json_object_get (reply, "id");
    char idtext [32], state [64];
    cli_json_text (id, idtext, sizeof idtext);
    cli_clean (cli_json_str (reply, "state"), false, state, sizeof state);
    printf ("queued email %s (%s)\n", idtext, *state ? state : "-");
    if (wait) {
        fflush (stdout);
        if (!json_is_integer (id)) {
            cli_err ("the router's answer has no email id to wait for");
            rc = CLI_FAIL;
        }
        else
            rc = s_wait_email (api, json_integer_value (id), wait_timeout);
    }
done:
    json_decref (reply);
    cli_api_destroy (&api);
    json_decref (ids);
    json_decref (atts);
    json_decref (cc);
    json_decref (to);
    json_decref (body);
    return rc;
}

int
cli_incident_main (int argc, char **argv)
{
    if (argc < 2) {
        fputs (s_incident_usage, stderr);
        return CLI_USAGE;
    }
    const char *verb = argv [1];
    if (strcmp (verb, "--help") == 0 || strcmp (verb, "-h") == 0
    ||  strcmp (verb, "help") == 0) {
        fputs (s_incident_usage, stdout);
        return CLI_OK;
    }
    if (strcmp (verb, "list") == 0)
        return s_incident_list (argc - 1, argv + 1);
    if (strcmp (verb, "show") == 0)
        return s_incident_show (argc - 1, argv + 1);
    if (strcmp (verb, "email") == 0)
        return s_incident_email (argc - 1, argv + 1);
    if (verb [0] == '-')
        cli_err ("unknown option %s", verb);
    else
        cli_err ("unknown incident command '%s' (see 'casemail incident --help')", verb);
    return CLI_USAGE;
}

/* ------------------------------------------------------------ inbox list */

static cli_table_t *
s_inbox_table (void)
{
    static const char *const headers [] = {
        "ID", "ROUTE", "UID", "STATE", "INCIDENT", "SUBJECT", "REASON"
    };
    cli_table_t *table = cli_table_new (7, headers);
    if (table) {
        cli_table_max (table, 5, 50);
        cli_table_flex (table, 6, 16, 60);
    }
    return table;
}

static int
s_inbox_row (cli_table_t *table, const json_t *m)
{
    char id [32], uid [32], inc [64];
    const char *cells [7] = {
        cli_json_text (json_object_get (m, "id"), id, sizeof id),
        cli_json_str (m, "route"),
        cli_json_text (json_object_get (m, "uid"), uid, sizeof uid),
        cli_json_str (m, "state"),
        cli_json_text (json_object_get (m, "incident"), inc, sizeof inc),
        cli_json_str (m, "subject"), cli_json_str (m, "reason")
    };
    return cli_table_add (table, cells);
}

static const list_view_t s_inbox_view = { "messages", s_inbox_table, s_inbox_row };

/* Lists with --route/--state/--json into path; shared by inbox and outbox. */
static int
s_list_filtered (int argc, char **argv, const char *usage, const char *base,
                 bool has_route, const char *const *states, const list_view_t *view)
{
    static const cli_opt_t with_route [] = {
        { "--route", true, S_ROUTE }, { "--state", true, S_STATE },
        { "--json", false, S_JSON }, { NULL, false, 0 }
    };
    const cli_opt_t *table = has_route ? with_route : with_route + 1;
    if (argc < 2 || strcmp (argv [1], "list") != 0) {
        if (argc >= 2 && (strcmp (argv [1], "--help") == 0 || strcmp (argv [1], "-h") == 0)) {
            fputs (usage, stdout);
            return CLI_OK;
        }
        if (argc >= 2 && argv [1][0] == '-')
            cli_err ("unknown option %s", argv [1]);
        else
        if (argc >= 2)
            cli_err ("unknown %s command '%s'", argv [0], argv [1]);
        fputs (usage, stderr);
        return CLI_USAGE;
    }
    cli_scan_t scan;
    cli_scan_init (&scan, argc - 1, argv + 1, 1);
    const char *route = NULL, *state = NULL, *value;
    const char *route_given = NULL, *state_given = NULL, *json_given = NULL;
    const cli_opt_t *opt;
    bool json = false;
    int what, nargs = 0;
    while ((what = cli_scan_next (&scan, table, &opt, &value)) != CLI_SCAN_END) {
        int rc = s_scan_common (what, usage, value, NULL, 0, &nargs);
        if (rc >= 0)
            return rc;
        if (what != CLI_SCAN_OPT)
            continue;
        if (opt->id == S_JSON) {
            if (cli_once (&json_given, opt->name, opt->name))
                return CLI_USAGE;
            json = true;
        }
        else
        if (opt->id == S_ROUTE) {
            if (s_route_opt (&route, &route_given, opt->name, value))
                return CLI_USAGE;
        }
        else
        if (cli_once (&state_given, opt->name, opt->name))
            return CLI_USAGE;
        else
        if (!cli_in_list (value, states)) {
            cli_err ("--state: '%s' is not one of %s", value, cli_list_text (states));
            return CLI_USAGE;
        }
        else
            state = value;
    }
    char path [1024];
    snprintf (path, sizeof path, "%s", base);
    if (s_query (path, sizeof path, "route", route)
    ||  s_query (path, sizeof path, "state", state)) {
        cli_err ("--route: the name is too long");
        return CLI_USAGE;
    }
    return s_list_pages (path, json, view);
}

int
cli_inbox_main (int argc, char **argv)
{
    return s_list_filtered (argc, argv, s_inbox_usage, "/v1/inbox", true,
                            s_inbox_states, &s_inbox_view);
}

/* ----------------------------------------------------------- outbox list */

static cli_table_t *
s_outbox_table (void)
{
    static const char *const headers [] = {
        "ID", "INCIDENT", "STATE", "TRIES", "TO", "SUBJECT", "SENT / NEXT TRY",
        "LAST ERROR"
    };
    cli_table_t *table = cli_table_new (8, headers);
    if (table) {
        cli_table_max (table, 4, 40);
        cli_table_max (table, 5, 40);
        cli_table_flex (table, 7, 16, 60);
    }
    return table;
}

static int
s_outbox_row (cli_table_t *table, const json_t *m)
{
    char id [32], inc [64], tries [32], to [1024], when [64];
    const char *sent = cli_json_str (m, "sent_at");
    const char *cells [8] = {
        cli_json_text (json_object_get (m, "id"), id, sizeof id),
        cli_json_text (json_object_get (m, "incident"), inc, sizeof inc),
        cli_json_str (m, "state"),
        cli_json_text (json_object_get (m, "attempts"), tries, sizeof tries),
        cli_json_text (json_object_get (m, "to"), to, sizeof to),
        cli_json_str (m, "subject"),
        cli_time (sent ? sent : cli_json_str (m, "next_attempt_at"), when, sizeof when),
        cli_json_str (m, "last_error")
    };
    return cli_table_add (table, cells);
}

static const list_view_t s_outbox_view = { "emails", s_outbox_table, s_outbox_row };

int
cli_outbox_main (int argc, char **argv)
{
    return s_list_filtered (argc, argv, s_outbox_usage, "/v1/outbox", false,
                            s_outbox_states, &s_outbox_view);
}

/* -------------------------------------------------------- attachment get */

int
cli_attachment_main (int argc, char **argv)
{
    static const cli_opt_t table [] = {
        { "-o", true, S_OUTPUT }, { "--output", true, S_OUTPUT },
        { "--to-terminal", false, S_TO_TERMINAL }, { NULL, false, 0 }
    };
    if (argc < 2 || strcmp (argv [1], "get") != 0) {
        if (argc >= 2 && (strcmp (argv [1], "--help") == 0 || strcmp (argv [1], "-h") == 0)) {
            fputs (s_attachment_usage, stdout);
            return CLI_OK;
        }
        if (argc >= 2 && argv [1][0] == '-')
            cli_err ("unknown option %s", argv [1]);
        else
        if (argc >= 2)
            cli_err ("unknown attachment command '%s'", argv [1]);
        fputs (s_attachment_usage, stderr);
        return CLI_USAGE;
    }
    cli_scan_t scan;
    cli_scan_init (&scan, argc - 1, argv + 1, 1);
    const char *args [1] = { NULL }, *output = NULL, *value, *output_given = NULL;
    const char *terminal_given = NULL;
    const cli_opt_t *opt;
    int what, nargs = 0;
    while ((what = cli_scan_next (&scan, table, &opt, &value)) != CLI_SCAN_END) {
        int rc = s_scan_common (what, s_attachment_usage, value, args, 1, &nargs);
        if (rc >= 0)
            return rc;
        if (what == CLI_SCAN_OPT && opt->id == S_TO_TERMINAL) {
            if (cli_once (&terminal_given, opt->name, opt->name))
                return CLI_USAGE;
        }
        else
        if (what == CLI_SCAN_OPT) {
            if (cli_once (&output_given, opt->name, "the output file"))
                return CLI_USAGE;
            output = value;
        }
    }
    long id;
    if (!args [0] || cli_parse_int (args [0], 1, LONG_MAX, &id)) {
        if (args [0])
            cli_err ("'%s' is not an attachment ID", args [0]);
        else
            cli_err ("missing attachment ID");
        fputs (s_attachment_usage, stderr);
        return CLI_USAGE;
    }
    if (!output || !*output) {
        cli_err ("give the file to write with -o FILE ('-o -' for stdout)");
        return CLI_USAGE;
    }
    /* As curl does: an attachment's raw bytes (an executable, a file
       with escape sequences) are not for a terminal to interpret. */
    if (strcmp (output, "-") == 0 && !terminal_given && isatty (STDOUT_FILENO)) {
        cli_err ("stdout is a terminal: not writing the attachment's raw bytes there;"
                 " redirect stdout (> FILE or | COMMAND), use -o FILE, or add --to-terminal");
        return CLI_USAGE;
    }
    char path [64];
    snprintf (path, sizeof path, "/v1/attachments/%ld", id);
    cli_api_t *api = NULL;
    int rc = cli_api_connect (&api);
    if (rc == CLI_OK)
        rc = cli_api_download (api, path, output);
    cli_api_destroy (&api);
    return rc;
}
