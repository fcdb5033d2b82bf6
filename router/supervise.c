/*  router/supervise.c: local mode, like Postfix's master: start the stage
    processes (CASEMAIL_FETCHERS, CASEMAIL_PARSERS, CASEMAIL_SENDERS
    copies, default 1, 2, 1), restart one that exits with a backoff that
    doubles from CASEMAIL_RESTART_MIN_MS (500) up to CASEMAIL_RESTART_MAX_MS
    (30000), reset after a minute of good service, and kill
    and restart one whose heartbeats stopped (three intervals). Children
    die with the router (PR_SET_PDEATHSIG) so a killed router leaves no
    orphans to run twice. Each child logs to STATE/log/<id>.log. */
#include "router.h"
#include "bus.h"
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILDREN_MAX 64
#define STEADY_MS 60000

typedef struct {
    char kind [16];         /* fetcher, parser, sender */
    char id [32];           /* stage id, e.g. parser-2 */
    pid_t pid;              /* 0 when not running */
    int64_t started;        /* zclock_mono at start */
    int64_t restart_at;     /* when to start again */
    int backoff_ms;
} child_t;

struct _supervisor_t {
    router_t *router;
    child_t children [CHILDREN_MAX];
    int nchildren;
};

static int
s_count (const char *env, int def)
{
    const char *v = getenv (env);
    int n = v ? atoi (v) : def;
    return n < 0 ? 0 : n > 16 ? 16 : n;
}

static int
s_backoff_min (void)
{
    const char *v = getenv ("CASEMAIL_RESTART_MIN_MS");
    return v && atoi (v) > 0 ? atoi (v) : 500;
}

static int
s_backoff_max (void)
{
    const char *v = getenv ("CASEMAIL_RESTART_MAX_MS");
    int max = v && atoi (v) > 0 ? atoi (v) : 30000;
    return max < s_backoff_min () ? s_backoff_min () : max;
}

static void
s_spawn (supervisor_t *self, child_t *c)
{
    const cm_config_t *cfg = cm_server_config (self->router->srv);
    char exe [700], logfile [700];
    snprintf (exe, sizeof exe, "%s/casemail-%s", cfg->bin_dir, c->kind);
    snprintf (logfile, sizeof logfile, "%s/%s.log", cfg->log_dir, c->id);
    pid_t router_pid = getpid ();
    pid_t pid = fork ();
    if (pid < 0) {
        cm_error (NULL, "cannot fork %s: %s", c->id, strerror (errno));
        c->restart_at = zclock_mono () + 1000;
        return;
    }
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGTERM);
        if (getppid () != router_pid)
            _exit (1);
        int fd = open (logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null = open ("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2 (fd, 1);
            dup2 (fd, 2);
        }
        if (null >= 0)
            dup2 (null, 0);
        for (int i = 3; i < 1024; i++)
            close (i);
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        signal (SIGTERM, SIG_DFL);
        signal (SIGINT, SIG_DFL);
        execl (exe, exe, "--id", c->id, (char *) NULL);
        fprintf (stderr, "cannot run %s: %s\n", exe, strerror (errno));
        _exit (127);
    }
    c->pid = pid;
    c->started = zclock_mono ();
    cm_info (NULL, "started %s (pid %d)", c->id, (int) pid);
}

supervisor_t *
supervisor_new (router_t *router)
{
    supervisor_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->router = router;
    static const struct { const char *kind; const char *env; int def; } kinds [] = {
        { "fetcher", "CASEMAIL_FETCHERS", 1 },
        { "parser", "CASEMAIL_PARSERS", 2 },
        { "sender", "CASEMAIL_SENDERS", 1 } };
    for (size_t k = 0; k < 3; k++) {
        int n = s_count (kinds [k].env, kinds [k].def);
        for (int i = 1; i <= n && self->nchildren < CHILDREN_MAX; i++) {
            child_t *c = &self->children [self->nchildren++];
            snprintf (c->kind, sizeof c->kind, "%s", kinds [k].kind);
            snprintf (c->id, sizeof c->id, "%s-%d", kinds [k].kind, i);
            c->backoff_ms = s_backoff_min ();
            s_spawn (self, c);
        }
    }
    return self;
}

/* True when the stage's last heartbeat is older than three intervals. */
static bool
s_lost (supervisor_t *self, child_t *c)
{
    int hb = cm_bus_heartbeat_ms ();
    if (zclock_mono () - c->started < 10 * hb + 5000)
        return false;           /* still starting (database, key, ...) */
    router_t *r = self->router;
    bool lost = false;
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    double now = (double) ts.tv_sec + ts.tv_nsec / 1e9;
    pthread_mutex_lock (&r->stages_lock);
    json_t *stage = json_object_get (r->stages, c->id);
    if (stage) {
        double last = json_real_value (json_object_get (stage, "last_heartbeat"));
        json_int_t pid = json_integer_value (json_object_get (stage, "pid"));
        lost = pid == c->pid && now - last > 3.0 * hb / 1000.0;
    }
    pthread_mutex_unlock (&r->stages_lock);
    return lost;
}

void
supervisor_check (supervisor_t *self)
{
    int status;
    pid_t pid;
    while ((pid = waitpid (-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < self->nchildren; i++) {
            child_t *c = &self->children [i];
            if (c->pid != pid)
                continue;
            int64_t ran = zclock_mono () - c->started;
            if (ran > STEADY_MS)
                c->backoff_ms = s_backoff_min ();
            if (WIFSIGNALED (status))
                cm_warn (NULL, "%s (pid %d) killed by signal %d; restart in %d ms",
                         c->id, (int) pid, WTERMSIG (status), c->backoff_ms);
            else
                cm_warn (NULL, "%s (pid %d) exited with %d; restart in %d ms",
                         c->id, (int) pid, WEXITSTATUS (status), c->backoff_ms);
            c->pid = 0;
            c->restart_at = zclock_mono () + c->backoff_ms;
            c->backoff_ms = c->backoff_ms * 2 > s_backoff_max () ? s_backoff_max ()
                                                                 : c->backoff_ms * 2;
        }
    }
    for (int i = 0; i < self->nchildren; i++) {
        child_t *c = &self->children [i];
        if (c->pid == 0 && zclock_mono () >= c->restart_at)
            s_spawn (self, c);
        else if (c->pid > 0 && s_lost (self, c)) {
            cm_warn (NULL, "%s (pid %d) stopped heartbeating: killing it", c->id, (int) c->pid);
            kill (c->pid, SIGKILL);
        }
    }
}

void
supervisor_stop_all (supervisor_t *self)
{
    for (int i = 0; i < self->nchildren; i++)
        if (self->children [i].pid > 0)
            kill (self->children [i].pid, SIGTERM);
    int64_t deadline = zclock_mono () + 10000;
    for (;;) {
        int alive = 0;
        for (int i = 0; i < self->nchildren; i++) {
            child_t *c = &self->children [i];
            if (c->pid > 0 && waitpid (c->pid, NULL, WNOHANG) == c->pid)
                c->pid = 0;
            alive += c->pid > 0;
        }
        if (!alive)
            break;
        if (zclock_mono () > deadline) {
            for (int i = 0; i < self->nchildren; i++)
                if (self->children [i].pid > 0) {
                    cm_warn (NULL, "%s did not stop in time: killing it", self->children [i].id);
                    kill (self->children [i].pid, SIGKILL);
                    waitpid (self->children [i].pid, NULL, 0);
                    self->children [i].pid = 0;
                }
            break;
        }
        zclock_sleep (50);
    }
}

void
supervisor_destroy (supervisor_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}
