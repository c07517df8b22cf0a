/* pay_channels: the payment channels of a deployment, from PAYMENT_CHANNELS.
 *
 * PAYMENT_CHANNELS is a comma-separated list of `method=URL` (method names match
 * ^[a-z][a-z0-9_-]{0,31}$, each at most once). Unset or empty: one channel named by
 * PAYMENT_DEFAULT_METHOD (default "card") whose URL is PAYMENT_URL, so a single-provider
 * configuration keeps working. The default method (of an order that names none) is
 * PAYMENT_DEFAULT_METHOD, else the first channel. Pure parsing, no I/O.
 */
#ifndef ORDERPIPE_PAY_CHANNELS_H
#define ORDERPIPE_PAY_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define PAY_CHANNELS_MAX 16
#define PAY_METHOD_SIZE 33
#define PAY_URL_SIZE 1024

typedef struct pay_channel_conf {
    char method[PAY_METHOD_SIZE];
    char url[PAY_URL_SIZE]; /* "" when none was given (the sim provider needs none) */
} pay_channel_conf;

typedef struct pay_channels_conf {
    int n;
    pay_channel_conf ch[PAY_CHANNELS_MAX];
    char default_method[PAY_METHOD_SIZE];
} pay_channels_conf;

/* True if m is a valid method name. */
bool pay_method_valid(const char *m);

/* Fills *out from the three settings (each may be NULL). OP_OK, or OP_ERR_PERMANENT with err
 * (n bytes) saying what is wrong: a bad name, a duplicate, an empty URL, too many channels, a
 * default method that is not a channel. */
op_status pay_channels_parse(const char *channels, const char *fallback_url,
                             const char *default_method, pay_channels_conf *out, char *err,
                             size_t n);

/* The index of method among the channels, or -1. */
int pay_channels_find(const pay_channels_conf *c, const char *method);

#endif
