/*  common/seal.c: AES-256-GCM sealing of secrets (see seal.h). */
#include "seal.h"
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_LEN   32
#define NONCE_LEN 12
#define TAG_LEN   16

struct _cm_seal_t {
    unsigned char key [KEY_LEN];   /* the install's key */
};

static int
s_read_key (const char *path, unsigned char *key)
{
    int fd = open (path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read (fd, key, KEY_LEN);
    close (fd);
    return n == KEY_LEN ? 0 : -2;
}

cm_seal_t *
cm_seal_new (const char *key_file, bool create, char *err, size_t errlen)
{
    cm_seal_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    int rc = s_read_key (key_file, self->key);
    if (rc == -1 && errno == ENOENT && create) {
        unsigned char key [KEY_LEN];
        if (RAND_bytes (key, KEY_LEN) != 1) {
            snprintf (err, errlen, "no random bytes for the sealing key");
            free (self);
            return NULL;
        }
        /* O_EXCL: two processes starting at once agree on one key. */
        int fd = open (key_file, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) {
            ssize_t n = write (fd, key, KEY_LEN);
            if (fsync (fd) || n != KEY_LEN) {
                close (fd);
                unlink (key_file);
                snprintf (err, errlen, "cannot write key file %s", key_file);
                free (self);
                return NULL;
            }
            close (fd);
        }
        else if (errno != EEXIST) {
            snprintf (err, errlen, "cannot create key file %s: %s",
                      key_file, strerror (errno));
            free (self);
            return NULL;
        }
        OPENSSL_cleanse (key, sizeof key);
        rc = s_read_key (key_file, self->key);
    }
    if (rc) {
        snprintf (err, errlen, rc == -2 ? "key file %s is not %d bytes"
                  : "cannot read key file %s", key_file, KEY_LEN);
        free (self);
        return NULL;
    }
    struct stat st;
    if (stat (key_file, &st) == 0 && (st.st_mode & 077))
        chmod (key_file, 0600);
    return self;
}

void
cm_seal_destroy (cm_seal_t **self_p)
{
    if (self_p && *self_p) {
        OPENSSL_cleanse ((*self_p)->key, KEY_LEN);
        free (*self_p);
        *self_p = NULL;
    }
}

char *
cm_seal_seal (cm_seal_t *self, const char *clear)
{
    size_t clen = strlen (clear);
    size_t rawlen = NONCE_LEN + clen + TAG_LEN;
    unsigned char *raw = malloc (rawlen);
    char *out = malloc (3 + 4 * ((rawlen + 2) / 3) + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new ();
    int len = 0, ok = raw && out && ctx;
    ok = ok && RAND_bytes (raw, NONCE_LEN) == 1;
    ok = ok && EVP_EncryptInit_ex (ctx, EVP_aes_256_gcm (), NULL, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL);
    ok = ok && EVP_EncryptInit_ex (ctx, NULL, NULL, self->key, raw);
    ok = ok && EVP_EncryptUpdate (ctx, raw + NONCE_LEN, &len,
                                  (const unsigned char *) clear, (int) clen);
    ok = ok && EVP_EncryptFinal_ex (ctx, raw + NONCE_LEN + len, &len);
    ok = ok && EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
                                    raw + NONCE_LEN + clen);
    if (ok) {
        memcpy (out, "v1:", 3);
        EVP_EncodeBlock ((unsigned char *) out + 3, raw, (int) rawlen);
    }
    EVP_CIPHER_CTX_free (ctx);
    if (raw)
        OPENSSL_cleanse (raw, rawlen);
    free (raw);
    if (!ok) {
        free (out);
        return NULL;
    }
    return out;
}

char *
cm_seal_open (cm_seal_t *self, const char *sealed)
{
    if (!sealed || strncmp (sealed, "v1:", 3) != 0)
        return NULL;
    const char *b64 = sealed + 3;
    size_t blen = strlen (b64);
    if (blen % 4 || blen < 4)
        return NULL;
    unsigned char *raw = malloc (blen / 4 * 3 + 1);
    if (!raw)
        return NULL;
    int rawlen = EVP_DecodeBlock (raw, (const unsigned char *) b64, (int) blen);
    if (rawlen > 0 && b64 [blen - 1] == '=')
        rawlen -= (b64 [blen - 2] == '=') ? 2 : 1;
    char *clear = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    if (rawlen < NONCE_LEN + TAG_LEN)
        goto done;
    int clen = rawlen - NONCE_LEN - TAG_LEN, len = 0;
    clear = malloc ((size_t) clen + 1);
    ctx = EVP_CIPHER_CTX_new ();
    int ok = clear && ctx;
    ok = ok && EVP_DecryptInit_ex (ctx, EVP_aes_256_gcm (), NULL, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL);
    ok = ok && EVP_DecryptInit_ex (ctx, NULL, NULL, self->key, raw);
    ok = ok && EVP_DecryptUpdate (ctx, (unsigned char *) clear, &len,
                                  raw + NONCE_LEN, clen);
    ok = ok && EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                                    raw + NONCE_LEN + clen);
    ok = ok && EVP_DecryptFinal_ex (ctx, (unsigned char *) clear + len, &len) > 0;
    if (ok)
        clear [clen] = 0;
    else {
        if (clear)
            OPENSSL_cleanse (clear, (size_t) clen);
        free (clear);
        clear = NULL;
    }
done:
    EVP_CIPHER_CTX_free (ctx);
    OPENSSL_cleanse (raw, blen / 4 * 3 + 1);
    free (raw);
    return clear;
}

void
cm_seal_wipe (char **secret_p)
{
    if (secret_p && *secret_p) {
        OPENSSL_cleanse (*secret_p, strlen (*secret_p));
        free (*secret_p);
        *secret_p = NULL;
    }
}

int
cm_seal_test (bool verbose)
{
    char path [] = "/tmp/cm-seal-test-XXXXXX";
    int fd = mkstemp (path);
    if (fd < 0)
        return -1;
    close (fd);
    unlink (path);
    char err [256];
    int rc = -1;
    cm_seal_t *seal = cm_seal_new (path, true, err, sizeof err);
    cm_seal_t *again = NULL;
    char *sealed = NULL, *clear = NULL, *other = NULL;
    if (!seal)
        goto done;
    struct stat st;
    if (stat (path, &st) || (st.st_mode & 0777) != 0600)
        goto done;
    sealed = cm_seal_seal (seal, "hunter2-Secret");
    if (!sealed || strstr (sealed, "hunter2"))
        goto done;
    if (verbose)
        printf ("  sealed: %s\n", sealed);
    other = cm_seal_seal (seal, "hunter2-Secret");
    if (!other || strcmp (other, sealed) == 0)   /* fresh nonce each time */
        goto done;
    again = cm_seal_new (path, false, err, sizeof err);
    clear = again ? cm_seal_open (again, sealed) : NULL;
    if (!clear || strcmp (clear, "hunter2-Secret"))
        goto done;
    cm_seal_wipe (&clear);
    sealed [10] = sealed [10] == 'A' ? 'B' : 'A';   /* tamper */
    clear = cm_seal_open (again, sealed);
    if (clear)
        goto done;
    rc = 0;
done:
    cm_seal_wipe (&clear);
    free (sealed);
    free (other);
    cm_seal_destroy (&seal);
    cm_seal_destroy (&again);
    unlink (path);
    return rc;
}
