/*  cli/api.c: HTTP client of the router's API over libcurl (see api.h).
    Replies are capped (CLI_API_MAX_REPLY) so a confused peer can't make
    the CLI grow without bound; an attachment streams to a temporary
    file that replaces its FILE only when complete. The token is sent
    only as an Authorization header and never printed. */
#include "api.h"
#include "buf.h"
#include "cli.h"
#include "json.h"
#include "print.h"
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLI_API_MAX_REPLY  (64u * 1024 * 1024)
#define CLI_API_CONNECT_TIMEOUT  5L

struct _cli_api_t {
    CURL *curl;                 /* one handle, connections reused */
    char url [512];             /* base URL without a trailing slash */
    char auth [600];            /* "Authorization: Bearer TOKEN" */
};

/* The router's own last error since it last started (the end of
   router.log), so "not running" comes with why it stopped (a database
   it refused, say); "" when there is none. */
static void
s_router_last_error (const cm_config_t *cfg, char *out, size_t size)
{
    *out = 0;
    char path [700];
    snprintf (path, sizeof path, "%s/router.log", cfg->log_dir);
    FILE *f = fopen (path, "r");
    if (!f)
        return;
    if (fseek (f, -16384L, SEEK_END))
        rewind (f);
    char line [2048];
    while (fgets (line, sizeof line, f)) {
        line [strcspn (line, "\n")] = 0;
        const char *e = strstr (line, " - error: ");   /* the router's own, no route's */
        if (e)
            snprintf (out, size, "%s", e + 10);
        else
        if (strstr (line, " info: router-") && strstr (line, " started ("))
            *out = 0;          /* a later start: older errors are history */
    }
    fclose (f);
}

cli_api_t *
cli_api_new (const cm_config_t *cfg, bool quiet)
{
    char url [512], token [512];
    const char *env = getenv ("CASEMAIL_API_URL");
    if (env && *env)
        snprintf (url, sizeof url, "%s", env);
    else
    if (cm_config_read_file (cfg->api_url_file, url, sizeof url)) {
        if (!quiet) {
            char why [1024];
            s_router_last_error (cfg, why, sizeof why);
            cli_err ("the router is not running (no %s); start it with "
                     "'casemail up'%s%s", cfg->api_url_file,
                     *why ? "; it stopped on: " : "", why);
        }
        return NULL;
    }
    env = getenv ("CASEMAIL_TOKEN");
    if (env && *env)
        snprintf (token, sizeof token, "%s", env);
    else
    if (cm_config_read_file (cfg->token_file, token, sizeof token)) {
        if (!quiet)
            cli_err ("cannot read the API token %s (%s); set CASEMAIL_TOKEN "
                     "or start the router with 'casemail up'",
                     cfg->token_file, strerror (errno));
        return NULL;
    }
    if (strpbrk (token, "\r\n")) {
        if (!quiet)
            cli_err ("the API token contains a line break");
        return NULL;
    }
    cli_api_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    size_t len = strlen (url);
    while (len > 0 && url [len - 1] == '/')
        url [--len] = 0;
    snprintf (self->url, sizeof self->url, "%s", url);
    snprintf (self->auth, sizeof self->auth, "Authorization: Bearer %s", token);
    memset (token, 0, sizeof token);
    self->curl = curl_easy_init ();
    if (!self->curl) {
        free (self);
        if (!quiet)
            cli_err ("cannot initialise libcurl");
        return NULL;
    }
    return self;
}

void
cli_api_destroy (cli_api_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cli_api_t *self = *self_p;
    curl_easy_cleanup (self->curl);
    memset (self->auth, 0, sizeof self->auth);
    free (self);
    *self_p = NULL;
}

const char *
cli_api_url (cli_api_t *self)
{
    return self->url;
}

int
cli_api_connect (cli_api_t **self_p)
{
    const cm_config_t *cfg = cm_config_load (cli_argv0);
    if (!cfg) {
        cli_err ("cannot resolve the state folder (CASEMAIL_HOME)");
        return CLI_FAIL;
    }
    *self_p = cli_api_new (cfg, false);
    return *self_p ? CLI_OK : CLI_FAIL;
}

char *
cli_api_escape (const char *text)
{
    CURL *curl = curl_easy_init ();
    char *esc = curl ? curl_easy_escape (curl, text, 0) : NULL;
    char *copy = esc ? strdup (esc) : NULL;
    curl_free (esc);
    curl_easy_cleanup (curl);
    return copy;
}

static size_t
s_write_buf (char *data, size_t size, size_t nmemb, void *arg)
{
    cm_buf_t *buf = arg;
    return cm_buf_append (buf, data, size * nmemb) ? 0 : size * nmemb;
}

/* Sets what every request shares: URL, headers, timeouts, no proxy for
   loopback, HTTP only, no redirects, the path sent as given. */
static void
s_prepare (cli_api_t *self, const char *method, const char *path,
           struct curl_slist *headers, long timeout_s)
{
    char url [2048];
    snprintf (url, sizeof url, "%s%s", self->url, path);
    CURL *c = self->curl;
    curl_easy_reset (c);
    curl_easy_setopt (c, CURLOPT_URL, url);
    curl_easy_setopt (c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, CLI_API_CONNECT_TIMEOUT);
    if (timeout_s > 0)
        curl_easy_setopt (c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt (c, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
    curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (c, CURLOPT_FOLLOWLOCATION, 0L);
    /* libcurl would remove "." and ".." segments (a route named "." would
       become /v1/routes/, the list): the router says what they are */
    curl_easy_setopt (c, CURLOPT_PATH_AS_IS, 1L);
}

/* Explains a transport failure. */
static void
s_transport_error (cli_api_t *self, CURLcode rc, long timeout_s)
{
    if (rc == CURLE_COULDNT_CONNECT)
        cli_err ("the router is not running (cannot connect to %s); "
                 "start it with 'casemail up'", self->url);
    else
    if (rc == CURLE_OPERATION_TIMEDOUT)
        cli_err ("the router at %s did not answer within %ld s",
                 self->url, timeout_s);
    else
        cli_err ("request to the router at %s failed: %s",
                 self->url, curl_easy_strerror (rc));
}

int
cli_api_request (cli_api_t *self, const char *method, const char *path,
                 json_t *body, long timeout_s, bool quiet,
                 long *status, json_t **reply)
{
    int rc = -1;
    char *text = NULL;
    cm_buf_t buf;
    cm_buf_init (&buf, CLI_API_MAX_REPLY);
    *status = 0;
    *reply = NULL;

    struct curl_slist *headers = curl_slist_append (NULL, self->auth);
    headers = curl_slist_append (headers, "Accept: application/json");
    if (body)
        headers = curl_slist_append (headers, "Content-Type: application/json");
    /* Send large bodies (attachments) at once, without a 100-continue wait. */
    headers = curl_slist_append (headers, "Expect:");
    if (!headers)
        goto done;
    s_prepare (self, method, path, headers, timeout_s);
    if (body) {
        text = json_dumps (body, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text)
            goto done;
        curl_easy_setopt (self->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt (self->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                          (curl_off_t) strlen (text));
    }
    else
    if (strcmp (method, "POST") == 0) {
        curl_easy_setopt (self->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt (self->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 0);
    }
    curl_easy_setopt (self->curl, CURLOPT_WRITEFUNCTION, s_write_buf);
    curl_easy_setopt (self->curl, CURLOPT_WRITEDATA, &buf);
    CURLcode crc = curl_easy_perform (self->curl);
    if (crc != CURLE_OK) {
        if (!quiet) {
            if (buf.overflow)
                cli_err ("the router's answer is larger than %u bytes",
                         CLI_API_MAX_REPLY);
            else
                s_transport_error (self, crc, timeout_s);
        }
        goto done;
    }
    curl_easy_getinfo (self->curl, CURLINFO_RESPONSE_CODE, status);
    if (buf.len)
        *reply = json_loadb (buf.data, buf.len, 0, NULL);
    rc = 0;
done:
    if (text) {
        memset (text, 0, strlen (text));    /* may hold a password */
        free (text);
    }
    curl_slist_free_all (headers);
    cm_buf_free (&buf);
    return rc;
}

/* Prints an error answer and returns its exit code. */
static int
s_error_answer (long status, const json_t *reply)
{
    const char *error = json_string_value (json_object_get (reply, "error"));
    char clean [4096];      /* it may quote a mail server or a name: no controls */
    if (error)
        cli_err ("%s", cli_clean (error, false, clean, sizeof clean));
    else
        cli_err ("the router answered HTTP %ld", status);
    if (status == 401)
        fprintf (stderr, "casemail: (check CASEMAIL_TOKEN or the token file "
                 "of the router's state folder)\n");
    return status == 400 || status == 404 || status == 409 ? CLI_USAGE : CLI_FAIL;
}

int
cli_api_call (cli_api_t *self, const char *method, const char *path,
              json_t *body, long timeout_s, json_t **reply)
{
    long status;
    json_t *answer;
    *reply = NULL;
    if (cli_api_request (self, method, path, body, timeout_s, false,
                         &status, &answer))
        return CLI_FAIL;
    if (status < 200 || status > 299) {
        int rc = s_error_answer (status, answer);
        json_decref (answer);
        return rc;
    }
    if (!answer) {
        cli_err ("the router's answer to %s %s is not JSON", method, path);
        return CLI_FAIL;
    }
    *reply = answer;
    return CLI_OK;
}

/* Download state. A regular FILE (or a new one) is written through a
   temporary file beside it, opened at the first byte of a 200 and
   renamed onto FILE only once everything arrived and is on disk: a
   failure leaves FILE as it was. Anything else (a device, a pipe, "-")
   is written directly. */
typedef struct {
    cli_api_t *api;
    const char *out_path;
    int fd;                     /* -1 until opened */
    bool to_stdout;
    bool direct;                /* written in place: not a regular file */
    char target [PATH_MAX];     /* FILE, its symlinks resolved */
    char tmp [PATH_MAX + 32];   /* the temporary file, "" until made */
    mode_t mode;                /* FILE's mode, or 0644 less the umask */
    bool write_error;
    int saved_errno;
    cm_buf_t error;             /* body of a non-200 answer */
} s_download_t;

/* Where and how to write: decided before the request, created later. */
static int
s_download_plan (s_download_t *d)
{
    struct stat st;
    if (d->to_stdout)
        return 0;
    if (stat (d->out_path, &st) == 0) {
        if (!S_ISREG (st.st_mode)) {
            d->direct = true;
            return 0;
        }
        if (!realpath (d->out_path, d->target))
            return -1;
        d->mode = st.st_mode & 0777;
    }
    else {
        if (errno != ENOENT)
            return -1;
        snprintf (d->target, sizeof d->target, "%s", d->out_path);
        mode_t mask = umask (0);
        umask (mask);
        d->mode = 0644 & ~mask;
    }
    return 0;
}

static int
s_download_open (s_download_t *d)
{
    if (d->fd >= 0)
        return 0;
    if (d->to_stdout)
        d->fd = STDOUT_FILENO;
    else
    if (d->direct)
        d->fd = open (d->out_path, O_WRONLY | O_CLOEXEC);
    else {
        /* ".NAME.XXXXXX" in FILE's own folder, so rename () is atomic
           (NAME cut so that a long one still makes a valid file name) */
        const char *slash = strrchr (d->target, '/');
        int dirlen = slash ? (int) (slash - d->target) + 1 : 0;
        snprintf (d->tmp, sizeof d->tmp, "%.*s.%.200s.XXXXXX", dirlen, d->target,
                  slash ? slash + 1 : d->target);
        d->fd = mkostemp (d->tmp, O_CLOEXEC);
        if (d->fd < 0)
            d->tmp [0] = 0;
    }
    if (d->fd < 0) {
        d->write_error = true;
        d->saved_errno = errno;
        return -1;
    }
    return 0;
}

/* Makes the temporary file FILE: mode, fsync, rename, fsync the folder.
   0 or -1 with errno. */
static int
s_download_commit (s_download_t *d)
{
    if (fchmod (d->fd, d->mode) || fsync (d->fd))
        return -1;
    int fd = d->fd;
    d->fd = -1;
    if (close (fd) || rename (d->tmp, d->target))
        return -1;
    d->tmp [0] = 0;
    /* the rename itself survives a crash once the folder is synced */
    const char *slash = strrchr (d->target, '/');
    char dir [PATH_MAX];
    snprintf (dir, sizeof dir, "%.*s", slash ? (int) (slash - d->target) + 1 : 1,
              slash ? d->target : ".");
    int dfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync (dfd);
        close (dfd);
    }
    return 0;
}

static size_t
s_write_download (char *data, size_t size, size_t nmemb, void *arg)
{
    s_download_t *d = arg;
    size_t len = size * nmemb;
    long status = 0;
    curl_easy_getinfo (d->api->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return cm_buf_append (&d->error, data, len) ? 0 : len;
    if (s_download_open (d))
        return 0;
    for (size_t done = 0; done < len; ) {
        ssize_t n = write (d->fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            d->write_error = true;
            d->saved_errno = errno;
            return 0;
        }
        done += (size_t) n;
    }
    return len;
}

int
cli_api_download (cli_api_t *self, const char *path, const char *out_path)
{
    int rc = CLI_FAIL;
    s_download_t d = { .api = self, .out_path = out_path, .fd = -1,
                       .to_stdout = strcmp (out_path, "-") == 0 };
    cm_buf_init (&d.error, 1024 * 1024);
    struct curl_slist *headers = NULL;
    if (s_download_plan (&d)) {
        cli_err ("cannot write %s: %s", out_path, strerror (errno));
        goto done;
    }
    headers = curl_slist_append (NULL, self->auth);
    if (!headers)
        goto done;
    /* A large attachment may take long: fail on a stall, not on size. */
    s_prepare (self, "GET", path, headers, 0);
    curl_easy_setopt (self->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt (self->curl, CURLOPT_LOW_SPEED_TIME, (long) CLI_API_TIMEOUT);
    curl_easy_setopt (self->curl, CURLOPT_WRITEFUNCTION, s_write_download);
    curl_easy_setopt (self->curl, CURLOPT_WRITEDATA, &d);
    CURLcode crc = curl_easy_perform (self->curl);
    long status = 0;
    curl_easy_getinfo (self->curl, CURLINFO_RESPONSE_CODE, &status);
    if (d.write_error) {
        cli_err ("cannot write %s: %s", out_path, strerror (d.saved_errno));
        goto done;
    }
    if (crc != CURLE_OK) {
        s_transport_error (self, crc, CLI_API_TIMEOUT);
        goto done;
    }
    if (status != 200) {
        json_t *reply = d.error.len
                      ? json_loadb (d.error.data, d.error.len, 0, NULL) : NULL;
        rc = s_error_answer (status, reply);
        json_decref (reply);
        goto done;
    }
    if (s_download_open (&d)) {     /* an empty attachment */
        cli_err ("cannot write %s: %s", out_path, strerror (d.saved_errno));
        goto done;
    }
    if (d.tmp [0] && s_download_commit (&d)) {
        cli_err ("cannot write %s: %s", out_path, strerror (errno));
        goto done;
    }
    rc = CLI_OK;
done:
    if (d.fd >= 0 && !d.to_stdout && close (d.fd) && rc == CLI_OK) {
        cli_err ("cannot write %s: %s", out_path, strerror (errno));
        rc = CLI_FAIL;
    }
    /* Never leave a partial file; FILE itself is untouched. */
    if (d.tmp [0])
        unlink (d.tmp);
    curl_slist_free_all (headers);
    cm_buf_free (&d.error);
    return rc;
}

void
cli_api_print_json (const json_t *reply)
{
    char *text = cm_json_dumps (reply, JSON_INDENT (2) | JSON_PRESERVE_ORDER);
    if (text) {
        puts (text);
        free (text);
    }
}
