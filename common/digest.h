/*  common/digest.h: SHA-256 of bytes as lowercase hex, the fingerprint
    casemail stores for raw messages and attachments. The caller owns the
    65-byte output buffer. */
#ifndef CM_DIGEST_H
#define CM_DIGEST_H
#include <stddef.h>

void cm_sha256_hex (const void *data, size_t len, char hex [65]);
#endif
