/* payment_channels: the payment channels of a deployment, from the environment.
 *
 *   PAYMENT_CHANNELS            "method=URL,method=URL": the channels and their provider URLs
 *   PAYMENT_DEFAULT_METHOD      the method of an order that names none (default: the first
 *                               channel, or "card")
 *   PAYMENT_URL                 without PAYMENT_CHANNELS: the one channel's URL
 *   PAYMENT_CHANNEL_SECRETS     "method=secret,..." (a method may repeat: each secret verifies)
 *   PAYMENT_CHANNEL_SECRETS_FILE  the same, one "method=secret" a line, '#' comments
 *
 * The intake reads the method names (the valid payment.method values) and the secrets (the
 * signatures of payment notifications); the payment worker the URLs. Secrets are never quoted
 * in an error message: errors name the variable, the method or the line, never the value.
 */
#ifndef ORDERPIPE_PAYMENT_CHANNELS_H
#define ORDERPIPE_PAYMENT_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define PAYMENT_METHOD_SIZE 33 /* ^[a-z][a-z0-9_-]{0,31}$ and the NUL */

typedef struct payment_channel {
    char name[PAYMENT_METHOD_SIZE];
    char *url;       /* owned; NULL when not configured */
    char **secrets;  /* owned, NUL-terminated each; nsecrets of them */
    size_t nsecrets;
} payment_channel;

typedef struct payment_channels {
    payment_channel *v; /* owned, n of them, in configuration order */
    size_t n;
    char default_method[PAYMENT_METHOD_SIZE];
} payment_channels;

/* True if name is a well-formed method name (^[a-z][a-z0-9_-]{0,31}$). */
bool payment_method_valid(const char *name);

/* Fills *out from the three strings (each may be NULL: unset). OP_OK, or OP_ERR_PERMANENT with
 * err (errlen bytes) saying which entry is wrong; *out is then empty (nothing to free). */
op_status payment_channels_parse(payment_channels *out, const char *channels,
                                 const char *default_method, const char *payment_url, char *err,
                                 size_t errlen);

/* Adds the secrets of `spec`: entries "method=secret" separated by `sep` (',' for the variable,
 * '\n' for the file, where blank lines and lines starting with '#' are skipped and spaces around
 * an entry are cut). A method that is not a channel, or an empty secret, is an error
 * (OP_ERR_PERMANENT, err names the variable `what` and the entry's number, not its value). */
op_status payment_channels_add_secrets(payment_channels *pc, const char *spec, char sep,
                                       const char *what, char *err, size_t errlen);

/* The secrets of list (entries "method=secret" separated by ',', may be NULL) and of the file at
 * path (one a line, may be NULL): payment_channels_add_secrets of each. */
op_status payment_channels_load_secrets(payment_channels *pc, const char *list, const char *path,
                                        char *err, size_t errlen);

/* payment_channels_parse of the environment, then, when with_secrets, the secrets of
 * PAYMENT_CHANNEL_SECRETS and PAYMENT_CHANNEL_SECRETS_FILE (both may be set: all count).
 * OP_ERR_PERMANENT with err set when anything is malformed or the file cannot be read. */
op_status payment_channels_from_env(payment_channels *out, bool with_secrets, char *err,
                                    size_t errlen);

/* The channel named `name`, or NULL (name may be anything, NULL included). */
const payment_channel *payment_channels_find(const payment_channels *pc, const char *name);

/* Frees what *pc owns (wiping the secrets) and leaves it empty. */
void payment_channels_free(payment_channels *pc);

#endif
