/* signature: the signed-request scheme of the payment notifications (docs/design.md §4).
 *
 * A channel signs "<t>.<raw body>" with HMAC-SHA256 under its secret and sends
 *     Orderpipe-Signature: t=<unix seconds>,v1=<64 lowercase hex>[,v1=<64 hex>...]
 * Several v1 entries let a provider sign with its old and its new secret during a rotation; one
 * match is enough. Entries with another key (v0=, v2=) are ignored, so the scheme can grow.
 * Everything here is pure (no clock, no I/O): the caller passes "now", which keeps the unit
 * tests and the fuzz target deterministic.
 */
#ifndef ORDERPIPE_SIGNATURE_H
#define ORDERPIPE_SIGNATURE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define SIGNATURE_MAC_LEN 32      /* HMAC-SHA256 */
#define SIGNATURE_HEX_LEN 64
#define SIGNATURE_MAX_V1 8        /* more v1 entries than this: malformed */
#define SIGNATURE_MAX_T_DIGITS 12 /* about 31,000 years of unix seconds; more: malformed */

/* One contiguous piece of a message; a MAC covers the pieces in order, as if concatenated. */
typedef struct signature_part {
    const void *data;
    size_t len;
} signature_part;

/* A parsed header. t_text is the timestamp exactly as sent (the MAC covers those digits). */
typedef struct signature_header {
    int64_t t;
    char t_text[SIGNATURE_MAX_T_DIGITS + 1];
    size_t nv1;
    unsigned char v1[SIGNATURE_MAX_V1][SIGNATURE_MAC_LEN];
} signature_header;

typedef enum {
    SIGNATURE_VALID,     /* a v1 entry matches one of the secrets, and t is within the tolerance */
    SIGNATURE_MALFORMED, /* no header, or not the form above */
    SIGNATURE_MISMATCH,  /* well formed, but no v1 entry matches any secret */
    SIGNATURE_STALE,     /* authentic, but t is further than the tolerance from now (either way) */
} signature_verdict;

/* The verdict's name, for logs and metrics ("valid", "malformed", "mismatch", "stale"). */
const char *signature_verdict_name(signature_verdict v);

/* HMAC-SHA256 of the parts under key (keylen bytes) into out. OP_OK, or OP_ERR_TRANSIENT when
 * the crypto library fails (out of memory). */
op_status signature_hmac_sha256(const void *key, size_t keylen, const signature_part *parts,
                                size_t nparts, unsigned char out[SIGNATURE_MAC_LEN]);

/* Parses header (NUL-terminated; NULL reads as missing). OP_OK with *out filled, or
 * OP_ERR_PERMANENT when missing or malformed: no t=, t= twice, t not 1..12 decimal digits, no
 * v1=, a v1 that is not 64 lowercase hex digits, more than SIGNATURE_MAX_V1 of them, an empty
 * entry or one without '='. Spaces around entries are allowed. */
op_status signature_parse(const char *header, signature_header *out);

/* The v1 value a sender puts in its header: hex of HMAC(secret, "<t_text>.<body>"), NUL-ended. */
op_status signature_sign(const char *secret, size_t secretlen, const char *t_text,
                         const void *body, size_t len, char out[SIGNATURE_HEX_LEN + 1]);

/* Verifies header over body (len bytes) against each of the nsecrets secrets (NUL-terminated,
 * borrowed) at time now (unix seconds), allowing |now - t| <= tolerance_s. Each comparison takes
 * the same time whatever the bytes (CRYPTO_memcmp). The MAC is checked before the time, so
 * "stale" is only ever said of a notification that really was signed by the channel. OP_OK with
 * *verdict set, or OP_ERR_TRANSIENT when the MAC could not be computed. */
op_status signature_verify(const char *header, const void *body, size_t len,
                           const char *const *secrets, size_t nsecrets, int64_t now,
                           int64_t tolerance_s, signature_verdict *verdict);

#endif
