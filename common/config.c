/*  common/config.c: state folder, endpoints and small state files
    (see config.h). */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static cm_config_t s_cfg;
static bool s_loaded;

static const char *
s_env (const char *name, const char *fallback)
{
    const char *v = getenv (name);
    return v && *v ? v : fallback;
}

/* Folder of the running binary, from /proc or argv0. */
static void
s_bin_dir (const char *argv0, char *out, size_t size)
{
    char path [PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", path, sizeof path - 1);
    if (n > 0)
        path [n] = 0;
    else if (!argv0 || !realpath (argv0, path))
        snprintf (path, sizeof path, "./casemail");
    char *slash = strrchr (path, '/');
    if (slash)
        *slash = 0;
    snprintf (out, size, "%s", path);
}

const cm_config_t *
cm_config_load (const char *argv0)
{
    if (s_loaded)
        return &s_cfg;
    cm_config_t *c = &s_cfg;
    const char *home = s_env ("CASEMAIL_HOME", "./var");
    if (home [0] == '/')
        snprintf (c->home, sizeof c->home, "%s", home);
    else {
        char cwd [PATH_MAX];
        if (!getcwd (cwd, sizeof cwd))
            return NULL;
        const char *rel = strncmp (home, "./", 2) == 0 ? home + 2 : home;
        snprintf (c->home, sizeof c->home, "%s/%s", cwd, rel);
    }
    snprintf (c->run_dir, sizeof c->run_dir, "%s/run", c->home);
    snprintf (c->log_dir, sizeof c->log_dir, "%s/log", c->home);
    snprintf (c->pg_dir, sizeof c->pg_dir, "%s/pg", c->home);
    const char *db = getenv ("CASEMAIL_DB");
    if (db && *db) {
        snprintf (c->db, sizeof c->db, "%s", db);
        c->embedded_db = false;
    }
    else {
        snprintf (c->db, sizeof c->db,
                  "host=%s/run port=5432 dbname=casemail user=casemail",
                  c->pg_dir);
        c->embedded_db = true;
    }
    char def [700];
    snprintf (def, sizeof def, "ipc://%s/control", c->run_dir);
    snprintf (c->control, sizeof c->control, "%s", s_env ("CASEMAIL_CONTROL", def));
    snprintf (def, sizeof def, "ipc://%s/events", c->run_dir);
    snprintf (c->events, sizeof c->events, "%s", s_env ("CASEMAIL_EVENTS", def));
    c->api_port = atoi (s_env ("CASEMAIL_API_PORT", "0"));
    snprintf (c->api_url_file, sizeof c->api_url_file, "%s/api.url", c->run_dir);
    snprintf (c->token_file, sizeof c->token_file, "%s/api.token", c->home);
    snprintf (def, sizeof def, "%s/secret.key", c->home);
    snprintf (c->key_file, sizeof c->key_file, "%s", s_env ("CASEMAIL_KEY_FILE", def));
    c->local = strcmp (s_env ("CASEMAIL_LOCAL", "1"), "0") != 0;
    const char *bin = getenv ("CASEMAIL_BIN");
    if (bin && *bin)
        snprintf (c->bin_dir, sizeof c->bin_dir, "%s", bin);
    else
        s_bin_dir (argv0, c->bin_dir, sizeof c->bin_dir);
    s_loaded = true;
    return c;
}

int
cm_config_mkdirs (const cm_config_t *cfg)
{
    const char *dirs [] = { cfg->home, cfg->run_dir, cfg->log_dir };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs [0]; i++)
        if (mkdir (dirs [i], 0700) && errno != EEXIST)
            return -1;
    return 0;
}

int
cm_config_read_file (const char *path, char *out, int outlen)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    size_t n = fread (out, 1, (size_t) outlen - 1, f);
    fclose (f);
    out [n] = 0;
    while (n > 0 && (out [n - 1] == '\n' || out [n - 1] == '\r'
                     || out [n - 1] == ' '))
        out [--n] = 0;
    return n > 0 ? 0 : -1;
}

int
cm_config_write_file (const char *path, const char *text, int mode)
{
    char tmp [1024];
    snprintf (tmp, sizeof tmp, "%s.%d.tmp", path, (int) getpid ());
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen (text);
    int rc = write (fd, text, len) == (ssize_t) len ? 0 : -1;
    if (fchmod (fd, (mode_t) mode))
        rc = -1;
    if (close (fd))
        rc = -1;
    if (rc == 0 && rename (tmp, path))
        rc = -1;
    if (rc)
        unlink (tmp);
    return rc;
}

long
cm_config_env (const char *name, long def)
{
    const char *v = getenv (name);
    long n = v ? atol (v) : 0;
    return n > 0 ? n : def;
}
