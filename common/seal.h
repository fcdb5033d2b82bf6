/*  common/seal.h: secrets sealed at rest with AES-256-GCM.
    The key is 32 random bytes in a per-install key file outside the
    database (config: CASEMAIL_KEY_FILE), created with mode 0600 on first
    use. A sealed secret is the text "v1:" + base64(nonce | ciphertext |
    tag). Returned strings are malloc'd and owned by the caller; unsealed
    secrets should be wiped (cm_seal_wipe) and freed after use. */
#ifndef CM_SEAL_H
#define CM_SEAL_H
#include <stdbool.h>
#include <stddef.h>

typedef struct _cm_seal_t cm_seal_t;

/* Loads the key file, creating it when create is true and it is missing.
   NULL with a reason in err. */
cm_seal_t *cm_seal_new (const char *key_file, bool create, char *err, size_t errlen);
void cm_seal_destroy (cm_seal_t **self_p);
/* Seals clear text; NULL on failure. */
char *cm_seal_seal (cm_seal_t *self, const char *clear);
/* Opens a sealed text; NULL if it was not sealed with this key or was
   tampered with. */
char *cm_seal_open (cm_seal_t *self, const char *sealed);
/* Overwrites and frees a secret string; safe on NULL. */
void cm_seal_wipe (char **secret_p);
int cm_seal_test (bool verbose);
#endif
