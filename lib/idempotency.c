/* idempotency: canonical-JSON SHA-256 of request bodies (see idempotency.h). */
#include "idempotency.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

op_status idempotency_hash_json(const json_t *doc, char out[IDEMPOTENCY_HASH_LEN])
{
    out[0] = '\0';
    if (!doc)
        return OP_ERR_PERMANENT;
    /* JSON_ENCODE_ANY: the hash is of whatever document was sent, object or not. */
    char *text = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return OP_ERR_PERMANENT;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL);
    free(text);
    if (!ok || mdlen != 32)
        return OP_ERR_PERMANENT;
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * mdlen] = '\0';
    return OP_OK;
}

op_status idempotency_hash_body(const char *body, size_t len, char out[IDEMPOTENCY_HASH_LEN])
{
    out[0] = '\0';
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (!doc)
        return OP_ERR_PERMANENT;
    op_status st = idempotency_hash_json(doc, out);
    json_decref(doc);
    return st;
}
