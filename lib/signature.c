/* signature: HMAC-SHA256 signed requests (see signature.h). */
#include "signature.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *signature_verdict_name(signature_verdict v)
{
    switch (v) {
    case SIGNATURE_VALID: return "valid";
    case SIGNATURE_MALFORMED: return "malformed";
    case SIGNATURE_MISMATCH: return "mismatch";
    case SIGNATURE_STALE: return "stale";
    }
    return "unknown";
}

op_status signature_hmac_sha256(const void *key, size_t keylen, const signature_part *parts,
                                size_t nparts, unsigned char out[SIGNATURE_MAC_LEN])
{
    /* EVP_MAC takes a key of any length, the empty one included (HMAC pads or hashes it). */
    static const unsigned char none[1];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t outlen = 0;
    bool ok = ctx && EVP_MAC_init(ctx, keylen ? key : none, keylen, params);
    for (size_t i = 0; ok && i < nparts; i++)
        ok = parts[i].len == 0 || EVP_MAC_update(ctx, parts[i].data, parts[i].len);
    ok = ok && EVP_MAC_final(ctx, out, &outlen, SIGNATURE_MAC_LEN) && outlen == SIGNATURE_MAC_LEN;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? OP_OK : OP_ERR_TRANSIENT;
}

static int signature_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case too: the scheme says lowercase */
}

/* One entry "key=value" of [s, s + n), spaces around it already cut. */
static op_status signature_parse_entry(const char *s, size_t n, signature_header *out, bool *have_t)
{
    const char *eq = memchr(s, '=', n);
    if (!eq || eq == s)
        return OP_ERR_PERMANENT;
    size_t klen = (size_t)(eq - s), vlen = n - klen - 1;
    const char *v = eq + 1;
    if (klen == 1 && s[0] == 't') {
        if (*have_t || vlen < 1 || vlen > SIGNATURE_MAX_T_DIGITS)
            return OP_ERR_PERMANENT;
        int64_t t = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return OP_ERR_PERMANENT;
            t = t * 10 + (v[i] - '0'); /* at most 12 digits: no overflow */
        }
        memcpy(out->t_text, v, vlen);
        out->t_text[vlen] = '\0';
        out->t = t;
        *have_t = true;
    } else if (klen == 2 && s[0] == 'v' && s[1] == '1') {
        if (vlen != SIGNATURE_HEX_LEN || out->nv1 == SIGNATURE_MAX_V1)
            return OP_ERR_PERMANENT;
        unsigned char *mac = out->v1[out->nv1];
        for (size_t i = 0; i < SIGNATURE_MAC_LEN; i++) {
            int hi = signature_hex_digit(v[2 * i]), lo = signature_hex_digit(v[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return OP_ERR_PERMANENT;
            mac[i] = (unsigned char)(hi << 4 | lo);
        }
        out->nv1++;
    }
    return OP_OK; /* another scheme's entry: not ours to judge */
}

op_status signature_parse(const char *header, signature_header *out)
{
    memset(out, 0, sizeof *out);
    if (!header)
        return OP_ERR_PERMANENT;
    bool have_t = false;
    const char *p = header;
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *s = p, *e = p + n;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (s == e || signature_parse_entry(s, (size_t)(e - s), out, &have_t) != OP_OK)
            return OP_ERR_PERMANENT;
        if (!p[n])
            break;
        p += n + 1;
    }
    return have_t && out->nv1 > 0 ? OP_OK : OP_ERR_PERMANENT;
}

static op_status signature_mac(const char *secret, size_t secretlen, const char *t_text,
                               const void *body, size_t len, unsigned char out[SIGNATURE_MAC_LEN])
{
    signature_part parts[] = {{t_text, strlen(t_text)}, {".", 1}, {body, len}};
    return signature_hmac_sha256(secret, secretlen, parts, 3, out);
}

op_status signature_sign(const char *secret, size_t secretlen, const char *t_text,
                         const void *body, size_t len, char out[SIGNATURE_HEX_LEN + 1])
{
    unsigned char mac[SIGNATURE_MAC_LEN];
    if (signature_mac(secret, secretlen, t_text, body, len, mac) != OP_OK)
        return OP_ERR_TRANSIENT;
    for (size_t i = 0; i < SIGNATURE_MAC_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return OP_OK;
}

op_status signature_verify(const char *header, const void *body, size_t len,
                           const char *const *secrets, size_t nsecrets, int64_t now,
                           int64_t tolerance_s, signature_verdict *verdict)
{
    signature_header h;
    if (signature_parse(header, &h) != OP_OK) {
        *verdict = SIGNATURE_MALFORMED;
        return OP_OK;
    }
    bool match = false;
    for (size_t s = 0; s < nsecrets && !match; s++) {
        unsigned char mac[SIGNATURE_MAC_LEN];
        if (signature_mac(secrets[s], strlen(secrets[s]), h.t_text, body, len, mac) != OP_OK)
            return OP_ERR_TRANSIENT;
        for (size_t i = 0; i < h.nv1; i++)
            match |= CRYPTO_memcmp(mac, h.v1[i], SIGNATURE_MAC_LEN) == 0;
    }
    /* t has at most 12 digits and now is a real clock: the difference cannot overflow. */
    int64_t skew = now - h.t;
    if (!match)
        *verdict = SIGNATURE_MISMATCH;
    else if (skew > tolerance_s || skew < -tolerance_s)
        *verdict = SIGNATURE_STALE;
    else
        *verdict = SIGNATURE_VALID;
    return OP_OK;
}
