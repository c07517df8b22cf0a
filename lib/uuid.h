/* uuid: RFC 4122 identifiers in their 36-character text form.
 * v4 (random, from the OS) for message ids; v5 (name-based, SHA-1) for order ids derived from a
 * client and its Idempotency-Key, so the same request maps to the same id in every process. */
#ifndef ORDERPIPE_UUID_H
#define ORDERPIPE_UUID_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define UUID_STR_LEN 37 /* 36 characters and the NUL */

/* Writes a random v4 UUID into out. OP_OK, or OP_ERR_TRANSIENT if the OS has no randomness. */
op_status uuid_v4(char out[UUID_STR_LEN]);

/* Writes the v5 UUID of `name` (len bytes) in namespace `ns` (text form) into out. OP_OK,
 * OP_ERR_PERMANENT if ns is not a UUID, OP_ERR_TRANSIENT if SHA-1 could not be computed. */
op_status uuid_v5(const char *ns, const void *name, size_t len, char out[UUID_STR_LEN]);

/* True if s is a UUID in canonical text form (any version, either case). */
bool uuid_valid(const char *s);

#endif
