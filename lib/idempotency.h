/* idempotency: the fingerprint of a request body that an Idempotency-Key is bound to.
 *
 * The same key with the same body must answer the same order, the same key with another body
 * must be refused (422 idempotency_key_reused). "The same body" means the same JSON document, not
 * the same bytes: the body is parsed and re-serialised canonically (object keys sorted, no
 * whitespace: json_dumps with JSON_SORT_KEYS | JSON_COMPACT) before hashing, so a client that
 * retries with its keys in another order or other spacing is not refused.
 *
 * No allocation is kept; the caller owns every buffer.
 */
#ifndef ORDERPIPE_IDEMPOTENCY_H
#define ORDERPIPE_IDEMPOTENCY_H

#include <jansson.h>
#include <stddef.h>

#include "status.h"

/* A SHA-256 as 64 lower-case hex digits and a NUL. */
#define IDEMPOTENCY_HASH_LEN 65

/* The SHA-256 of `doc`'s canonical JSON (doc borrowed). OP_ERR_PERMANENT when doc cannot be
 * serialised (e.g. out of memory); out is then "". */
op_status idempotency_hash_json(const json_t *doc, char out[IDEMPOTENCY_HASH_LEN]);

/* Parses `body` (len bytes, rejecting duplicate keys as the intake does) and hashes it as above.
 * OP_ERR_PERMANENT when body is not JSON; out is then "". */
op_status idempotency_hash_body(const char *body, size_t len, char out[IDEMPOTENCY_HASH_LEN]);

#endif
