/*  cli/stack.c: "casemail up" and "casemail down", the local stack.

    up: creates (first time) and starts the private PostgreSQL cluster
    under STATE/pg unless CASEMAIL_DB names another database, creates the
    database "casemail", then starts casemail-router in its own session
    (it starts the stages) and waits until its API answers. down: stops
    the router by its pid file (SIGTERM; it stops its stages), then the
    cluster. Both are idempotent.

    initdb refuses to run as root, so as root the cluster belongs to the
    user postgres and every server command runs through "runuser -u
    postgres --". When postgres can't reach the state folder (say under
    /root, mode 0700) the cluster lives in /var/lib/casemail/HASH and
    STATE/pg is a symlink to it; clients keep using STATE/pg/run as the
    socket folder through the link, and the server's log is linked into
    STATE/log. Commands are run with execvp, never through a shell, so
    paths with spaces or quotes are safe. Errors are printed here; the
    entry points return exit codes (cli.h). */
#include "api.h"
#include "cli.h"
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_PG_FALLBACK_BIN  "/usr/lib/postgresql/15/bin"
#define S_PG_SHARED_ROOT   "/var/lib/casemail"
#define S_PG_PORT          "5432"
#define S_ROUTER_COMM      "casemail-router"
#define S_UP_TIMEOUT_MS    30000
#define S_DOWN_TIMEOUT_MS  15000
#define S_OUTPUT_MAX       16384

/* Where the embedded cluster is and how to run its commands. */
typedef struct {
    char bindir [PATH_MAX];     /* initdb, pg_ctl, psql, createdb */
    char real [PATH_MAX];       /* cluster folder (STATE/pg or its target) */
    char data [PATH_MAX + 8];   /* real/data */
    char server_run [PATH_MAX + 8]; /* real/run: the server's socket folder */
    char client_run [PATH_MAX + 8]; /* STATE/pg/run: the clients' path to it */
    char log [PATH_MAX + 16];   /* server log */
    bool as_postgres;           /* root: run server commands as postgres */
    uid_t pg_uid;
    gid_t pg_gid;
} s_pg_t;

static void
s_sleep_ms (long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep (&t, NULL);
}

static long
s_now_ms (void)
{
    struct timespec t;
    clock_gettime (CLOCK_MONOTONIC, &t);
    return (long) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Runs argv (as postgres when asked), stdin from /dev/null, stdout and
   stderr captured into out. The exit status, or -1 if it couldn't run. */
static int
s_run (const char *const *argv, bool as_postgres, char *out, size_t size)
{
    const char *full [32];
    int n = 0;
    if (as_postgres) {
        full [n++] = "runuser";
        full [n++] = "-u";
        full [n++] = "postgres";
        full [n++] = "--";
    }
    for (int i = 0; argv [i] && n < 31; i++)
        full [n++] = argv [i];
    full [n] = NULL;
    if (out && size)
        out [0] = 0;

    int fds [2];
    if (pipe2 (fds, O_CLOEXEC))
        return -1;
    pid_t pid = fork ();
    if (pid < 0) {
        close (fds [0]);
        close (fds [1]);
        return -1;
    }
    if (pid == 0) {
        int null = open ("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2 (null, STDIN_FILENO);
        dup2 (fds [1], STDOUT_FILENO);
        dup2 (fds [1], STDERR_FILENO);
        /* postgres may not be allowed into the caller's folder. */
        if (chdir ("/"))
            _exit (126);
        execvp (full [0], (char *const *) full);
        fprintf (stderr, "cannot run %s: %s\n", full [0], strerror (errno));
        _exit (127);
    }
    close (fds [1]);
    size_t len = 0;
    char chunk [4096];
    while (1) {
        ssize_t got = read (fds [0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (out && len + 1 < size) {
            size_t keep = (size_t) got < size - 1 - len ? (size_t) got : size - 1 - len;
            memcpy (out + len, chunk, keep);
            len += keep;
            out [len] = 0;
        }
    }
    close (fds [0]);
    int status;
    while (waitpid (pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* Prints the last lines of a log file on stderr. */
static void
s_tail (const char *path, int lines)
{
    FILE *f = fopen (path, "r");
    if (!f) {
        fprintf (stderr, "casemail: (no %s)\n", path);
        return;
    }
    char buf [8192];
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    long from = size > (long) sizeof buf - 1 ? size - (long) sizeof buf + 1 : 0;
    fseek (f, from, SEEK_SET);
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    fclose (f);
    buf [n] = 0;
    char *start = buf + n;
    int seen = 0;
    while (start > buf) {
        if (start [-1] == '\n' && start != buf + n && ++seen > lines)
            break;
        start--;
    }
    fprintf (stderr, "---- last lines of %s ----\n%s", path, start);
    if (n && buf [n - 1] != '\n')
        fputc ('\n', stderr);
    fprintf (stderr, "----\n");
}

/* True when pid runs, is not a zombie, and is named comm. */
static bool
s_alive (pid_t pid, const char *comm)
{
    char path [64], stat [512];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return false;
    size_t n = fread (stat, 1, sizeof stat - 1, f);
    fclose (f);
    stat [n] = 0;
    char *open = strchr (stat, '('), *close = strrchr (stat, ')');
    if (!open || !close || close < open || close [1] != ' ')
        return false;
    *close = 0;
    return strcmp (open + 1, comm) == 0 && close [2] != 'Z';
}

/* The pid in router.pid if that process is a live casemail-router. */
static pid_t
s_router_pid (const cm_config_t *cfg)
{
    char path [700], text [64];
    snprintf (path, sizeof path, "%s/router.pid", cfg->run_dir);
    long pid;
    if (cm_config_read_file (path, text, sizeof text))
        return 0;
    text [strcspn (text, " \n")] = 0;
    if (cli_parse_int (text, 2, INT_MAX, &pid))
        return 0;
    return s_alive ((pid_t) pid, S_ROUTER_COMM) ? (pid_t) pid : 0;
}

/* ------------------------------------------------------------ PostgreSQL */

/* FNV-1a of the state folder: names its cluster under /var/lib/casemail. */
static uint64_t
s_hash (const char *text)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *text; text++)
        h = (h ^ (unsigned char) *text) * 1099511628211ULL;
    return h;
}

static bool
s_executable (const char *dir, const char *name)
{
    char path [PATH_MAX + 64];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    return access (path, X_OK) == 0;
}

static int
s_find_bindir (s_pg_t *pg)
{
    char out [PATH_MAX];
    const char *argv [] = { "pg_config", "--bindir", NULL };
    if (s_run (argv, false, out, sizeof out) == 0) {
        out [strcspn (out, "\r\n")] = 0;
        if (s_executable (out, "initdb") && s_executable (out, "pg_ctl")) {
            snprintf (pg->bindir, sizeof pg->bindir, "%s", out);
            return 0;
        }
    }
    if (s_executable (S_PG_FALLBACK_BIN, "initdb")) {
        snprintf (pg->bindir, sizeof pg->bindir, "%s", S_PG_FALLBACK_BIN);
        return 0;
    }
    cli_err ("no PostgreSQL server programs (initdb, pg_ctl) found with "
             "pg_config or in %s; install PostgreSQL 15 ('make deps') or "
             "set CASEMAIL_DB to an existing database", S_PG_FALLBACK_BIN);
    return -1;
}

/* Makes a folder for the cluster: mode 0700, owned by postgres when
   running as root. 0 or -1 (printed). */
static int
s_make_owned (const s_pg_t *pg, const char *path)
{
    if (mkdir (path, 0700) && errno != EEXIST) {
        cli_err ("cannot create %s: %s", path, strerror (errno));
        return -1;
    }
    if (pg->as_postgres && chown (path, pg->pg_uid, pg->pg_gid)) {
        cli_err ("cannot give %s to postgres: %s", path, strerror (errno));
        return -1;
    }
    return 0;
}

/* Decides where the cluster lives and makes its folders. */
static int
s_pg_locate (const cm_config_t *cfg, s_pg_t *pg)
{
    struct stat st;
    if (lstat (cfg->pg_dir, &st) == 0) {
        if (!realpath (cfg->pg_dir, pg->real)) {
            cli_err ("%s points to a missing folder (%s); remove the link "
                     "to create a new cluster", cfg->pg_dir, strerror (errno));
            return -1;
        }
    }
    else
    if (!pg->as_postgres)
        snprintf (pg->real, sizeof pg->real, "%s", cfg->pg_dir);
    else {
        /* Can postgres reach STATE? (test -x fails for any closed parent.) */
        const char *argv [] = { "test", "-x", cfg->home, NULL };
        if (s_run (argv, true, NULL, 0) == 0)
            snprintf (pg->real, sizeof pg->real, "%s", cfg->pg_dir);
        else {
            snprintf (pg->real, sizeof pg->real, "%s/%016llx", S_PG_SHARED_ROOT,
                      (unsigned long long) s_hash (cfg->home));
            if (mkdir (S_PG_SHARED_ROOT, 0755) && errno != EEXIST) {
                cli_err ("cannot create %s: %s", S_PG_SHARED_ROOT, strerror (errno));
                return -1;
            }
            if (access (pg->real, F_OK) == 0)
                printf ("reusing the database cluster in %s\n", pg->real);
            if (s_make_owned (pg, pg->real))
                return -1;
            if (symlink (pg->real, cfg->pg_dir)) {
                cli_err ("cannot link %s to %s: %s", cfg->pg_dir, pg->real,
                         strerror (errno));
                return -1;
            }
        }
    }
    if (s_make_owned (pg, pg->real))
        return -1;
    snprintf (pg->data, sizeof pg->data, "%s/data", pg->real);
    snprintf (pg->server_run, sizeof pg->server_run, "%s/run", pg->real);
    snprintf (pg->client_run, sizeof pg->client_run, "%s/run", cfg->pg_dir);
    if (s_make_owned (pg, pg->server_run))
        return -1;
    if (pg->as_postgres) {
        /* postgres can't write STATE/log: log in the cluster, link it. */
        char link [700];
        snprintf (pg->log, sizeof pg->log, "%s/postgres.log", pg->real);
        snprintf (link, sizeof link, "%s/postgres.log", cfg->log_dir);
        if (lstat (link, &st) && symlink (pg->log, link))
            cli_err ("warning: cannot link %s: %s", link, strerror (errno));
    }
    else
        snprintf (pg->log, sizeof pg->log, "%s/postgres.log", cfg->log_dir);
    return 0;
}

/* Appends a quoted postgresql.conf string value. */
static void
s_conf_quote (FILE *f, const char *text)
{
    fputc ('\'', f);
    for (; *text; text++) {
        if (*text == '\'' || *text == '\\')
            fputc (*text == '\'' ? '\'' : '\\', f);
        fputc (*text, f);
    }
    fputc ('\'', f);
}

/* Runs initdb and appends our settings. */
static int
s_pg_init (const s_pg_t *pg)
{
    char tool [PATH_MAX + 16], out [S_OUTPUT_MAX];
    snprintf (tool, sizeof tool, "%s/initdb", pg->bindir);
    const char *argv [] = {
        tool, "-D", pg->data, "-A", "trust", "-U", "casemail", "-E", "UTF8",
        "--locale=C", "--no-instructions", NULL
    };
    printf ("creating the database cluster in %s\n", pg->data);
    fflush (stdout);
    if (s_run (argv, pg->as_postgres, out, sizeof out) != 0) {
        cli_err ("initdb failed:\n%s", out);
        return -1;
    }
    char conf [PATH_MAX + 32];
    snprintf (conf, sizeof conf, "%s/postgresql.conf", pg->data);
    FILE *f = fopen (conf, "a");
    if (!f) {
        cli_err ("cannot append to %s: %s", conf, strerror (errno));
        return -1;
    }
    fputs ("\n# casemail: a private cluster reached only through its socket\n"
           "listen_addresses = ''\n"
           "unix_socket_directories = ", f);
    s_conf_quote (f, pg->server_run);
    fputs ("\nport = " S_PG_PORT "\n"
           "# this is the system of record: keep every commit durable\n"
           "fsync = on\n"
           "synchronous_commit = on\n", f);
    if (fclose (f)) {
        cli_err ("cannot write %s: %s", conf, strerror (errno));
        return -1;
    }
    return 0;
}

/* pg_ctl status: true when the cluster's server runs. */
static bool
s_pg_running (const s_pg_t *pg)
{
    char tool [PATH_MAX + 16];
    snprintf (tool, sizeof tool, "%s/pg_ctl", pg->bindir);
    const char *argv [] = { tool, "status", "-D", pg->data, NULL };
    return s_run (argv, pg->as_postgres, NULL, 0) == 0;
}

/* Creates the database "casemail" when it is missing. */
static int
s_pg_create_db (const s_pg_t *pg)
{
    char tool [PATH_MAX + 16], out [S_OUTPUT_MAX];
    snprintf (tool, sizeof tool, "%s/psql", pg->bindir);
    const char *query [] = {
        tool, "-X", "-h", pg->client_run, "-p", S_PG_PORT, "-U", "casemail",
        "-d", "postgres", "-tAc",
        "SELECT 1 FROM pg_database WHERE datname='casemail'", NULL
    };
    if (s_run (query, false, out, sizeof out) != 0) {
        cli_err ("cannot query the database server:\n%s", out);
        return -1;
    }
    if (strncmp (out, "1", 1) == 0)
        return 0;
    snprintf (tool, sizeof tool, "%s/createdb", pg->bindir);
    const char *create [] = {
        tool, "-h", pg->client_run, "-p", S_PG_PORT, "-U", "casemail", "casemail", NULL
    };
    if (s_run (create, false, out, sizeof out) != 0) {
        cli_err ("createdb failed:\n%s", out);
        return -1;
    }
    return 0;
}

/* Creates (first time) and starts the embedded cluster. */
static int
s_pg_up (const cm_config_t *cfg)
{
    s_pg_t pg = { .as_postgres = geteuid () == 0 };
    if (pg.as_postgres) {
        struct passwd *pw = getpwnam ("postgres");
        if (!pw) {
            cli_err ("running as root, the embedded database needs the user "
                     "'postgres' (install PostgreSQL 15 with 'make deps')");
            return -1;
        }
        pg.pg_uid = pw->pw_uid;
        pg.pg_gid = pw->pw_gid;
    }
    if (s_find_bindir (&pg) || s_pg_locate (cfg, &pg))
        return -1;
    char version [PATH_MAX + 16];
    snprintf (version, sizeof version, "%s/PG_VERSION", pg.data);
    if (access (version, F_OK) && s_pg_init (&pg))
        return -1;
    if (!s_pg_running (&pg)) {
        char tool [PATH_MAX + 16], out [S_OUTPUT_MAX];
        snprintf (tool, sizeof tool, "%s/pg_ctl", pg.bindir);
        const char *argv [] = {
            tool, "-D", pg.data, "-l", pg.log, "-w", "-t", "30", "start", NULL
        };
        if (s_run (argv, pg.as_postgres, out, sizeof out) != 0) {
            cli_err ("the database server did not start:\n%s", out);
            s_tail (pg.log, 20);
            return -1;
        }
    }
    return s_pg_create_db (&pg);
}

/* Stops the embedded cluster if it runs. */
static int
s_pg_down (const cm_config_t *cfg)
{
    s_pg_t pg = { .as_postgres = geteuid () == 0 };
    struct stat st;
    if (lstat (cfg->pg_dir, &st))
        return 0;                       /* never created */
    if (!realpath (cfg->pg_dir, pg.real))
        return 0;                       /* dangling link: nothing runs */
    snprintf (pg.data, sizeof pg.data, "%s/data", pg.real);
    char version [PATH_MAX + 16];
    snprintf (version, sizeof version, "%s/PG_VERSION", pg.data);
    if (access (version, F_OK))
        return 0;
    if (s_find_bindir (&pg))
        return -1;
    if (!s_pg_running (&pg))
        return 0;
    char tool [PATH_MAX + 16], out [S_OUTPUT_MAX];
    snprintf (tool, sizeof tool, "%s/pg_ctl", pg.bindir);
    const char *argv [] = {
        tool, "-D", pg.data, "-m", "fast", "-w", "-t", "60", "stop", NULL
    };
    if (s_run (argv, pg.as_postgres, out, sizeof out) != 0) {
        cli_err ("the database server did not stop:\n%s", out);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- router */

/* Starts the router in its own session, output appended to its log.
   The child's pid, or -1. */
static pid_t
s_router_spawn (const cm_config_t *cfg, const char *log)
{
    char path [700];
    snprintf (path, sizeof path, "%s/casemail-router", cfg->bin_dir);
    if (access (path, X_OK)) {
        cli_err ("cannot run %s: %s (build it with 'make', or set CASEMAIL_BIN)",
                 path, strerror (errno));
        return -1;
    }
    fflush (NULL);
    pid_t pid = fork ();
    if (pid < 0) {
        cli_err ("cannot start the router: %s", strerror (errno));
        return -1;
    }
    if (pid > 0)
        return pid;
    setsid ();
    int null = open ("/dev/null", O_RDONLY);
    int out = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null < 0 || out < 0)
        _exit (127);
    dup2 (null, STDIN_FILENO);
    dup2 (out, STDOUT_FILENO);
    dup2 (out, STDERR_FILENO);
    closefrom (3);
    /* The router resolves the state folder itself: make it the same. */
    setenv ("CASEMAIL_HOME", cfg->home, 1);
    execl (path, "casemail-router", (char *) NULL);
    fprintf (stderr, "casemail: cannot run %s: %s\n", path, strerror (errno));
    _exit (127);
}

/* True when the API answers GET /v1/routes with 200; *url gets its URL. */
static bool
s_api_ready (const cm_config_t *cfg, char *url, size_t size)
{
    cli_api_t *api = cli_api_new (cfg, true);
    if (!api)
        return false;
    long status = 0;
    json_t *reply = NULL;
    bool ready = cli_api_request (api, "GET", "/v1/routes", NULL, 3, true,
                                  &status, &reply) == 0 && status == 200;
    if (ready)
        snprintf (url, size, "%s", cli_api_url (api));
    json_decref (reply);
    cli_api_destroy (&api);
    return ready;
}

/* Starts the router unless it runs, then waits for its API. */
static int
s_router_up (const cm_config_t *cfg, char *url, size_t size)
{
    char log [700], pidfile [700];
    snprintf (log, sizeof log, "%s/router.log", cfg->log_dir);
    snprintf (pidfile, sizeof pidfile, "%s/router.pid", cfg->run_dir);
    pid_t pid = s_router_pid (cfg);
    pid_t child = 0;
    if (!pid) {
        child = pid = s_router_spawn (cfg, log);
        if (pid < 0)
            return -1;
        char text [32];
        snprintf (text, sizeof text, "%d\n", (int) pid);
        if (cm_config_write_file (pidfile, text, 0600))
            cli_err ("warning: cannot write %s", pidfile);
    }
    long deadline = s_now_ms () + S_UP_TIMEOUT_MS;
    while (1) {
        if (child) {
            int status;
            if (waitpid (child, &status, WNOHANG) == child) {
                if (WIFEXITED (status))
                    cli_err ("the router exited while starting (status %d)",
                             WEXITSTATUS (status));
                else
                    cli_err ("the router died while starting (signal %d)",
                             WIFSIGNALED (status) ? WTERMSIG (status) : 0);
                unlink (pidfile);
                s_tail (log, 20);
                return -1;
            }
        }
        else
        if (!s_alive (pid, S_ROUTER_COMM)) {
            cli_err ("the router (pid %d) stopped", (int) pid);
            s_tail (log, 20);
            return -1;
        }
        if (s_api_ready (cfg, url, size))
            return 0;
        if (s_now_ms () > deadline) {
            cli_err ("the router (pid %d) runs but its API did not answer "
                     "within %d s (is %s stale?)", (int) pid,
                     S_UP_TIMEOUT_MS / 1000, cfg->api_url_file);
            s_tail (log, 20);
            return -1;
        }
        s_sleep_ms (200);
    }
}

/* Describes CASEMAIL_DB without its password. */
static void
s_describe_db (const cm_config_t *cfg, char *out, size_t size)
{
    if (cfg->embedded_db) {
        snprintf (out, size, "embedded in %s", cfg->pg_dir);
        return;
    }
    const char *host = NULL, *port = NULL, *dbname = NULL;
    PQconninfoOption *opts = PQconninfoParse (cfg->db, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (strcmp (o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp (o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp (o->keyword, "dbname") == 0)
            dbname = o->val;
    }
    snprintf (out, size, "CASEMAIL_DB (host %s%s%s, database %s)",
              host ? host : "default", port ? ":" : "", port ? port : "",
              dbname ? dbname : "default");
    PQconninfoFree (opts);
}

/* Accepts only --help; exit code, or -1 to go on. */
static int
s_no_options (int argc, char **argv, const char *usage)
{
    cli_scan_t scan;
    cli_scan_init (&scan, argc, argv, 1);
    const cli_opt_t *opt;
    const char *value;
    static const cli_opt_t none [] = { { NULL, false, 0 } };
    int what = cli_scan_next (&scan, none, &opt, &value);
    if (what == CLI_SCAN_END)
        return -1;
    if (what == CLI_SCAN_HELP) {
        fputs (usage, stdout);
        return CLI_OK;
    }
    if (what == CLI_SCAN_ARG)
        cli_err ("unexpected argument '%s' (%s)", value, usage);
    return CLI_USAGE;
}

int
cli_stack_up (int argc, char **argv)
{
    int rc = s_no_options (argc, argv,
                           "usage: casemail up   start the database (if embedded), "
                           "the router and its stages\n");
    if (rc >= 0)
        return rc;
    const cm_config_t *cfg = cm_config_load (cli_argv0);
    if (!cfg) {
        cli_err ("cannot resolve the state folder (CASEMAIL_HOME)");
        return CLI_FAIL;
    }
    if (cm_config_mkdirs (cfg)) {
        cli_err ("cannot create the state folder %s: %s", cfg->home, strerror (errno));
        return CLI_FAIL;
    }
    if (cfg->embedded_db && s_pg_up (cfg))
        return CLI_FAIL;
    char url [512], db [1024];
    if (s_router_up (cfg, url, sizeof url))
        return CLI_FAIL;
    s_describe_db (cfg, db, sizeof db);
    printf ("casemail is up: API %s, database %s\n", url, db);
    return CLI_OK;
}

int
cli_stack_down (int argc, char **argv)
{
    int rc = s_no_options (argc, argv,
                           "usage: casemail down   stop the router, its stages "
                           "and the embedded database\n");
    if (rc >= 0)
        return rc;
    const cm_config_t *cfg = cm_config_load (cli_argv0);
    if (!cfg) {
        cli_err ("cannot resolve the state folder (CASEMAIL_HOME)");
        return CLI_FAIL;
    }
    rc = CLI_OK;
    pid_t pid = s_router_pid (cfg);
    if (pid && kill (pid, SIGTERM) == 0) {
        long deadline = s_now_ms () + S_DOWN_TIMEOUT_MS;
        while (s_alive (pid, S_ROUTER_COMM) && s_now_ms () < deadline)
            s_sleep_ms (100);
        if (s_alive (pid, S_ROUTER_COMM)) {
            cli_err ("the router (pid %d) did not stop within %d s; killing it",
                     (int) pid, S_DOWN_TIMEOUT_MS / 1000);
            kill (pid, SIGKILL);
            deadline = s_now_ms () + 5000;
            while (s_alive (pid, S_ROUTER_COMM) && s_now_ms () < deadline)
                s_sleep_ms (100);
            rc = CLI_FAIL;
        }
    }
    if (!s_router_pid (cfg)) {
        /* Whatever router.pid named is gone: its files are stale. */
        char pidfile [700];
        snprintf (pidfile, sizeof pidfile, "%s/router.pid", cfg->run_dir);
        if (access (pidfile, F_OK) == 0) {
            unlink (pidfile);
            unlink (cfg->api_url_file);
        }
    }
    if (cfg->embedded_db && s_pg_down (cfg))
        rc = CLI_FAIL;
    if (rc == CLI_OK)
        printf ("casemail is down\n");
    return rc;
}
