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
    $CM_CRASH_LOG. Looked up at run time, so it links against
    nothing but libdl. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>

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
