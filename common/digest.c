/*  common/digest.c: SHA-256 as hex (see digest.h). */
#include "digest.h"
#include <openssl/evp.h>
#include <stdio.h>

void
cm_sha256_hex (const void *data, size_t len, char hex [65])
{
    unsigned char md [32];
    unsigned int mdlen = 0;
    if (EVP_Digest (data, len, md, &mdlen, EVP_sha256 (), NULL) != 1) {
        hex [0] = 0;
        return;
    }
    for (unsigned i = 0; i < 32; i++)
        snprintf (hex + 2 * i, 3, "%02x", md [i]);
}
