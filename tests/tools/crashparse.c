/*  tests/tools/crashparse.c: a poison message for the parser, for
    tests/integration/poison.sh. Preloaded (LD_PRELOAD) into the stages,
    it wraps GMime's g_mime_parser_construct_message: when the parsed
    message's Subject contains $CM_CRASH_SUBJECT, the process kills
    itself with SIGKILL, as the kernel's OOM killer or a crash in a
    library would end it, in the middle of a claimed batch. With
    CM_CRASH_HOW=stall it never returns instead (a call caught in a loop),
    for the stages' watchdog; with CM_CRASH_HOW=slow it returns after
    CM_CRASH_SLOW_MS (a big message), so that a batch of them outlasts the
    watchdog without any one message doing so, and notes it in
    $CM_CRASH_LOG.

    With CM_LATE_TRY_SUBJECT, it also wraps libpq's PQexecParams and
    PQexecPrepared: once a parser's claim (the statement whose answer has
    the columns raw and error) has locked a message whose raw bytes hold
    that text, it counts one more try of it in parse_claims, on a
    connection of its own, once per file $CM_LATE_TRY_ONCE (which then
    holds what the database said: "INSERT 0 1"): the try of a
    parser that died on the message after the claim's snapshot was taken
    and before its lock was. Everything is looked up at run time, so it
    links against nothing but libdl. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>

#define LIBPQ_SYM(name) (dlsym (RTLD_DEFAULT, name))

typedef void *(*construct_fn) (void *parser, void *options);
typedef const char *(*subject_fn) (void *message);

void *
g_mime_parser_construct_message (void *parser, void *options)
{
    static construct_fn real;
    static subject_fn subject;
    if (!real) {
        real = (construct_fn) dlsym (RTLD_NEXT, "g_mime_parser_construct_message");
        subject = (subject_fn) dlsym (RTLD_DEFAULT, "g_mime_message_get_subject");
    }
    if (!real)
        abort ();
    void *message = real (parser, options);
    const char *marker = getenv ("CM_CRASH_SUBJECT");
    const char *s = message && subject && marker && *marker ? subject (message) : NULL;
    const char *how = getenv ("CM_CRASH_HOW");
    if (s && strstr (s, marker) && how && strcmp (how, "stall") == 0)
        for (;;)
            pause ();           /* the main thread, for good */
    if (s && strstr (s, marker) && how && strcmp (how, "slow") == 0) {
        const char *ms = getenv ("CM_CRASH_SLOW_MS"), *log = getenv ("CM_CRASH_LOG");
        usleep ((useconds_t) (ms ? atoi (ms) : 500) * 1000);
        int fd = log ? open (log, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
        if (fd >= 0) {      /* one line per message held: the test counts them */
            char line [64];
            struct timespec ts;
            clock_gettime (CLOCK_REALTIME, &ts);
            int n = snprintf (line, sizeof line, "slow %d %ld.%03ld\n", (int) getpid (),
                              (long) ts.tv_sec, ts.tv_nsec / 1000000);
            (void) !write (fd, line, (size_t) n);
            close (fd);
        }
        return message;
    }
    if (s && strstr (s, marker))
        raise (SIGKILL);
    return message;
}

/* the late try: see the head of the file */
static void
s_late_try (void *conn, void *res)
{
    const char *marker = getenv ("CM_LATE_TRY_SUBJECT"), *once = getenv ("CM_LATE_TRY_ONCE");
    if (!res || !marker || !*marker || !once)
        return;
    int (*nfields) (void *) = LIBPQ_SYM ("PQnfields");
    char *(*fname) (void *, int) = LIBPQ_SYM ("PQfname");
    int (*ntuples) (void *) = LIBPQ_SYM ("PQntuples");
    char *(*getvalue) (void *, int, int) = LIBPQ_SYM ("PQgetvalue");
    int (*getlength) (void *, int, int) = LIBPQ_SYM ("PQgetlength");
    if (!nfields || nfields (res) != 5 || strcmp (fname (res, 2), "raw") != 0
        || strcmp (fname (res, 4), "error") != 0)
        return;
    for (int i = 0; i < ntuples (res); i++) {
        if (!memmem (getvalue (res, i, 2), (size_t) getlength (res, i, 2), marker, strlen (marker)))
            continue;
        int fd = open (once, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
            return;             /* done before (or the test's file is wrong: it says so) */
        /* a connection like the parser's: every option it was given */
        typedef struct { char *keyword, *envvar, *compiled, *val, *label, *dispchar; int size; } opt_t;
        opt_t *(*conninfo) (void *) = LIBPQ_SYM ("PQconninfo");
        void (*free_opts) (opt_t *) = LIBPQ_SYM ("PQconninfoFree");
        void *(*connect) (const char *const *, const char *const *, int) = LIBPQ_SYM ("PQconnectdbParams");
        int (*status) (void *) = LIBPQ_SYM ("PQstatus");
        void *(*exec) (void *, const char *) = LIBPQ_SYM ("PQexec");
        char *(*cmd_status) (void *) = LIBPQ_SYM ("PQcmdStatus");
        char *(*error) (void *) = LIBPQ_SYM ("PQerrorMessage");
        void (*clear) (void *) = LIBPQ_SYM ("PQclear"), (*finish) (void *) = LIBPQ_SYM ("PQfinish");
        opt_t *opts = conninfo (conn);
        const char *keys [64], *values [64];
        int k = 0;
        for (opt_t *o = opts; o && o->keyword && k < 63; o++)
            if (o->val) {
                keys [k] = o->keyword;
                values [k++] = o->val;
            }
        keys [k] = values [k] = NULL;
        void *side = connect (keys, values, 0);
        free_opts (opts);
        char sql [128];
        snprintf (sql, sizeof sql, "INSERT INTO parse_claims (message_ids) VALUES ('{%s}')",
                  getvalue (res, i, 0));
        void *r = status (side) == 0 ? exec (side, sql) : NULL;    /* CONNECTION_OK */
        /* what came of it, for the test to check: "INSERT 0 1" */
        const char *said = r ? cmd_status (r) : error (side);
        (void) !write (fd, said, strlen (said));
        close (fd);
        clear (r);
        finish (side);
        return;
    }
}

typedef void *(*exec_params_fn) (void *, const char *, int, const unsigned *, const char *const *,
                                 const int *, const int *, int);
typedef void *(*exec_prepared_fn) (void *, const char *, int, const char *const *, const int *,
                                   const int *, int);

void *
PQexecParams (void *conn, const char *command, int n, const unsigned *types,
              const char *const *values, const int *lengths, const int *formats, int result)
{
    static exec_params_fn real;
    if (!real && !(real = (exec_params_fn) dlsym (RTLD_NEXT, "PQexecParams")))
        abort ();
    void *res = real (conn, command, n, types, values, lengths, formats, result);
    s_late_try (conn, res);
    return res;
}

void *
PQexecPrepared (void *conn, const char *name, int n, const char *const *values,
                const int *lengths, const int *formats, int result)
{
    static exec_prepared_fn real;
    if (!real && !(real = (exec_prepared_fn) dlsym (RTLD_NEXT, "PQexecPrepared")))
        abort ();
    void *res = real (conn, name, n, values, lengths, formats, result);
    s_late_try (conn, res);
    return res;
}
