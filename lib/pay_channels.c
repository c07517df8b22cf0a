/* pay_channels: parses PAYMENT_CHANNELS (see pay_channels.h). */
#include "pay_channels.h"

#include <stdio.h>
#include <string.h>

bool pay_method_valid(const char *m)
{
    if (!m || !(*m >= 'a' && *m <= 'z'))
        return false;
    size_t len = strlen(m);
    if (len > PAY_METHOD_SIZE - 1)
        return false;
    for (const char *c = m + 1; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return false;
    return true;
}

int pay_channels_find(const pay_channels_conf *c, const char *method)
{
    for (int i = 0; method && i < c->n; i++)
        if (strcmp(c->ch[i].method, method) == 0)
            return i;
    return -1;
}

/* Adds the channel method=url (url of len bytes) to out. */
static op_status pay_channels_add(pay_channels_conf *out, const char *method, const char *url,
                                  size_t len, char *err, size_t n)
{
    if (!pay_method_valid(method)) {
        snprintf(err, n, "payment method '%.40s' must match ^[a-z][a-z0-9_-]{0,31}$", method);
        return OP_ERR_PERMANENT;
    }
    if (pay_channels_find(out, method) >= 0) {
        snprintf(err, n, "payment method '%s' is listed twice", method);
        return OP_ERR_PERMANENT;
    }
    if (out->n == PAY_CHANNELS_MAX) {
        snprintf(err, n, "at most %d payment channels", PAY_CHANNELS_MAX);
        return OP_ERR_PERMANENT;
    }
    if (len >= PAY_URL_SIZE) {
        snprintf(err, n, "the URL of payment method '%s' is too long", method);
        return OP_ERR_PERMANENT;
    }
    pay_channel_conf *c = &out->ch[out->n++];
    snprintf(c->method, sizeof c->method, "%s", method);
    memcpy(c->url, url, len);
    c->url[len] = '\0';
    return OP_OK;
}

op_status pay_channels_parse(const char *channels, const char *fallback_url,
                             const char *default_method, pay_channels_conf *out, char *err,
                             size_t n)
{
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    if (default_method && !*default_method)
        default_method = NULL;
    op_status st = OP_OK;
    if (!channels || !*channels) {
        const char *url = fallback_url ? fallback_url : "";
        st = pay_channels_add(out, default_method ? default_method : "card", url, strlen(url),
                              err, n);
    }
    /* p runs over the elements; after a comma one must follow ("a=x," is refused). */
    for (const char *p = channels && *channels ? channels : NULL; st == OP_OK && p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char method[PAY_METHOD_SIZE + 1];
        size_t mlen = eq ? (size_t)(eq - p) : 0;
        if (!eq || mlen == 0 || mlen >= sizeof method || eq + 1 == p + len) {
            snprintf(err, n, "PAYMENT_CHANNELS: '%.*s' is not method=URL", (int)(len > 60 ? 60 : len), p);
            return OP_ERR_PERMANENT;
        }
        memcpy(method, p, mlen);
        method[mlen] = '\0';
        st = pay_channels_add(out, method, eq + 1, (size_t)(p + len - eq - 1), err, n);
        p = end ? end + 1 : NULL;
    }
    if (st != OP_OK)
        return st;
    if (out->n == 0) {
        snprintf(err, n, "PAYMENT_CHANNELS lists no channel");
        return OP_ERR_PERMANENT;
    }
    const char *def = default_method ? default_method : out->ch[0].method;
    if (pay_channels_find(out, def) < 0) {
        snprintf(err, n, "PAYMENT_DEFAULT_METHOD '%.40s' is not a payment channel", def);
        return OP_ERR_PERMANENT;
    }
    snprintf(out->default_method, sizeof out->default_method, "%s", def);
    return OP_OK;
}
