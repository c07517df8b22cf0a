/* payment_channels: channel names, URLs and secrets from the environment (see the header). */
#include "payment_channels.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mem.h"

bool payment_method_valid(const char *name)
{
    if (!name || name[0] < 'a' || name[0] > 'z')
        return false;
    size_t n = strlen(name);
    if (n > PAYMENT_METHOD_SIZE - 1)
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

const payment_channel *payment_channels_find(const payment_channels *pc, const char *name)
{
    for (size_t i = 0; name && i < pc->n; i++)
        if (strcmp(pc->v[i].name, name) == 0)
            return &pc->v[i];
    return NULL;
}

void payment_channels_free(payment_channels *pc)
{
    for (size_t i = 0; i < pc->n; i++) {
        for (size_t s = 0; s < pc->v[i].nsecrets; s++) {
            OPENSSL_cleanse(pc->v[i].secrets[s], strlen(pc->v[i].secrets[s]));
            free(pc->v[i].secrets[s]);
        }
        free(pc->v[i].secrets);
        free(pc->v[i].url);
    }
    free(pc->v);
    memset(pc, 0, sizeof *pc);
}

static void payment_channels_add(payment_channels *pc, const char *name, const char *url)
{
    pc->v = mem_realloc(pc->v, (pc->n + 1) * sizeof *pc->v);
    payment_channel *c = &pc->v[pc->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->url = url ? mem_strdup(url) : NULL;
}

op_status payment_channels_parse(payment_channels *out, const char *channels,
                                 const char *default_method, const char *payment_url, char *err,
                                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (default_method && !payment_method_valid(default_method)) {
        snprintf(err, errlen, "PAYMENT_DEFAULT_METHOD: '%.40s' is not a method name "
                              "(^[a-z][a-z0-9_-]{0,31}$)", default_method);
        return OP_ERR_PERMANENT;
    }
    if (!channels || !*channels) {
        /* The single-provider configuration: one channel, PAYMENT_URL's. */
        const char *name = default_method ? default_method : "card";
        payment_channels_add(out, name, payment_url);
        snprintf(out->default_method, sizeof out->default_method, "%s", name);
        return OP_OK;
    }
    /* Split by hand rather than with strtok: an empty entry ("a=x," or "a=x,,b=y") is a typo
     * to refuse, not a separator to skip. */
    char *copy = mem_strdup(channels);
    op_status st = OP_OK;
    int i = 0;
    for (char *e = copy, *next; e && st == OP_OK; e = next) {
        char *comma = strchr(e, ',');
        if (comma)
            *comma = '\0';
        next = comma ? comma + 1 : NULL;
        i++;
        char *eq = strchr(e, '=');
        if (eq)
            *eq = '\0';
        if (!eq || !payment_method_valid(e) || !eq[1]) {
            snprintf(err, errlen, "PAYMENT_CHANNELS: entry %d must be method=URL with a method "
                                  "matching ^[a-z][a-z0-9_-]{0,31}$", i);
            st = OP_ERR_PERMANENT;
        } else if (payment_channels_find(out, e)) {
            snprintf(err, errlen, "PAYMENT_CHANNELS: method '%s' appears twice", e);
            st = OP_ERR_PERMANENT;
        } else {
            payment_channels_add(out, e, eq + 1);
        }
    }
    free(copy);
    if (st == OP_OK && default_method && !payment_channels_find(out, default_method)) {
        snprintf(err, errlen, "PAYMENT_DEFAULT_METHOD: '%s' is not one of PAYMENT_CHANNELS",
                 default_method);
        st = OP_ERR_PERMANENT;
    }
    if (st != OP_OK) {
        payment_channels_free(out);
        return st;
    }
    snprintf(out->default_method, sizeof out->default_method, "%s",
             default_method ? default_method : out->v[0].name);
    return OP_OK;
}

op_status payment_channels_add_secrets(payment_channels *pc, const char *spec, char sep,
                                       const char *what, char *err, size_t errlen)
{
    char *copy = mem_strdup(spec ? spec : "");
    op_status st = OP_OK;
    int i = 0;
    for (char *p = copy; p && st == OP_OK; i++) {
        char *end = strchr(p, sep);
        if (end)
            *end = '\0';
        char *e = config_trim(p);
        p = end ? end + 1 : NULL;
        if ((sep == '\n' && (!*e || *e == '#')) || (sep != '\n' && !*e && !p && i == 0))
            continue; /* a blank or comment line; an empty variable */
        char *eq = strchr(e, '=');
        if (eq)
            *eq = '\0';
        payment_channel *c = eq ? (payment_channel *)payment_channels_find(pc, config_trim(e)) : NULL;
        char *secret = eq ? config_trim(eq + 1) : NULL;
        if (!eq || !*secret) {
            snprintf(err, errlen, "%s: %s %d must be method=secret with a secret", what,
                     sep == '\n' ? "line" : "entry", i + 1);
            st = OP_ERR_PERMANENT;
        } else if (!c) {
            snprintf(err, errlen, "%s: %s %d names '%.40s', which is not a payment channel "
                                  "(PAYMENT_CHANNELS)", what, sep == '\n' ? "line" : "entry",
                     i + 1, payment_method_valid(config_trim(e)) ? config_trim(e) : "?");
            st = OP_ERR_PERMANENT;
        } else {
            c->secrets = mem_realloc(c->secrets, (c->nsecrets + 1) * sizeof *c->secrets);
            c->secrets[c->nsecrets++] = mem_strdup(secret);
        }
    }
    OPENSSL_cleanse(copy, strlen(spec ? spec : ""));
    free(copy);
    return st;
}

/* The whole file (caller frees), or NULL with err set. */
static char *payment_read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "PAYMENT_CHANNEL_SECRETS_FILE: cannot read %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *text = mem_alloc(cap);
    size_t got;
    while ((got = fread(text + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            text = mem_realloc(text, cap *= 2);
    }
    bool failed = ferror(f);
    fclose(f);
    text[n] = '\0';
    if (failed || strlen(text) != n) {
        snprintf(err, errlen, "PAYMENT_CHANNEL_SECRETS_FILE: cannot read %s%s", path,
                 failed ? "" : ": it holds a NUL byte");
        OPENSSL_cleanse(text, n);
        free(text);
        return NULL;
    }
    return text;
}

op_status payment_channels_load_secrets(payment_channels *pc, const char *list, const char *path,
                                        char *err, size_t errlen)
{
    op_status st = list ? payment_channels_add_secrets(pc, list, ',', "PAYMENT_CHANNEL_SECRETS",
                                                       err, errlen)
                        : OP_OK;
    if (st == OP_OK && path) {
        char *text = payment_read_file(path, err, errlen);
        st = text ? payment_channels_add_secrets(pc, text, '\n', "PAYMENT_CHANNEL_SECRETS_FILE",
                                                 err, errlen)
                  : OP_ERR_PERMANENT;
        if (text) {
            OPENSSL_cleanse(text, strlen(text));
            free(text);
        }
    }
    return st;
}

op_status payment_channels_from_env(payment_channels *out, bool with_secrets, char *err,
                                    size_t errlen)
{
    if (payment_channels_parse(out, config_env_str("PAYMENT_CHANNELS", NULL),
                               config_env_str("PAYMENT_DEFAULT_METHOD", NULL),
                               config_env_str("PAYMENT_URL", NULL), err, errlen) != OP_OK)
        return OP_ERR_PERMANENT;
    if (with_secrets &&
        payment_channels_load_secrets(out, config_env_str("PAYMENT_CHANNEL_SECRETS", NULL),
                                      config_env_str("PAYMENT_CHANNEL_SECRETS_FILE", NULL), err,
                                      errlen) != OP_OK) {
        payment_channels_free(out);
        return OP_ERR_PERMANENT;
    }
    return OP_OK;
}
