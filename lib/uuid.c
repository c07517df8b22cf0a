/* uuid: RFC 4122 v4 and v5 identifiers (see uuid.h). */
#include "uuid.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static void uuid_format(const uint8_t b[16], char out[UUID_STR_LEN])
{
    snprintf(out, UUID_STR_LEN,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static int uuid_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static op_status uuid_parse(const char *s, uint8_t b[16])
{
    if (!uuid_valid(s))
        return OP_ERR_PERMANENT;
    for (int i = 0, j = 0; i < 36; i++) {
        if (s[i] == '-')
            continue;
        b[j / 2] = (uint8_t)(j % 2 ? (b[j / 2] | uuid_hex(s[i])) : (uuid_hex(s[i]) << 4));
        j++;
    }
    return OP_OK;
}

bool uuid_valid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? s[i] != '-' : uuid_hex(s[i]) < 0)
            return false;
    }
    return true;
}

op_status uuid_v4(char out[UUID_STR_LEN])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n <= 0)
            return OP_ERR_TRANSIENT;
        got += (size_t)n;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    uuid_format(b, out);
    return OP_OK;
}

op_status uuid_v5(const char *ns, const void *name, size_t len, char out[UUID_STR_LEN])
{
    uint8_t nsb[16], digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    if (uuid_parse(ns, nsb) != OP_OK)
        return OP_ERR_PERMANENT;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(ctx, nsb, sizeof nsb) && EVP_DigestUpdate(ctx, name, len) &&
             EVP_DigestFinal_ex(ctx, digest, &dlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || dlen < 16)
        return OP_ERR_TRANSIENT; /* OpenSSL could not allocate its context */
    digest[6] = (uint8_t)((digest[6] & 0x0f) | 0x50);
    digest[8] = (uint8_t)((digest[8] & 0x3f) | 0x80);
    uuid_format(digest, out);
    return OP_OK;
}
