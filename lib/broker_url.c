/* broker_url: AMQP URL parsing with TLS parameters (see broker_url.h). */
#include "broker_url.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mem.h"
#include "redact.h"

static op_status url_error(char *err, size_t errsize, const char *url, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static op_status url_error(char *err, size_t errsize, const char *url, const char *fmt, ...)
{
    char shown[256], why[256];
    redact_secrets(url, shown, sizeof shown);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(err, errsize, "AMQP URL '%s': %s", shown, why);
    return OP_ERR_PERMANENT;
}

/* Decodes %XX escapes of s in place; false when one is malformed. */
static bool percent_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        if (!isxdigit((unsigned char)r[1]) || !isxdigit((unsigned char)r[2]))
            return false;
        char hex[3] = {r[1], r[2], 0};
        long v = strtol(hex, NULL, 16);
        if (v == 0)
            return false; /* a NUL would silently shorten a path */
        *w++ = (char)v;
        r += 2;
    }
    *w = '\0';
    return true;
}

/* The last OpenSSL error as a sentence (the queue is cleared). */
static const char *ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, size);
    else
        snprintf(buf, size, "unknown error");
    ERR_clear_error();
    return buf;
}

/* Loads the CA, certificate and key once, so a bad file is reported at start-up. */
static op_status check_files(const broker_url *u, const char *url, char *err, size_t errsize)
{
    char why[256];
    op_status st = OP_OK;
    const char *const files[] = {u->cacert, u->cert, u->key};
    const char *const what[] = {"CA file", "client certificate", "client key"};
    for (int i = 0; i < 3; i++) {
        FILE *f = files[i] ? fopen(files[i], "r") : NULL;
        if (files[i] && !f)
            return url_error(err, errsize, url, "cannot read the %s '%s': %s", what[i], files[i],
                             strerror(errno));
        if (f)
            fclose(f);
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return url_error(err, errsize, url, "cannot set up TLS: %s", ssl_reason(why, sizeof why));
    if (u->cacert && SSL_CTX_load_verify_locations(ctx, u->cacert, NULL) != 1)
        st = url_error(err, errsize, url, "cannot load the CA file '%s': %s", u->cacert,
                       ssl_reason(why, sizeof why));
    else if (u->cert && SSL_CTX_use_certificate_chain_file(ctx, u->cert) != 1)
        st = url_error(err, errsize, url, "cannot load the client certificate '%s': %s", u->cert,
                       ssl_reason(why, sizeof why));
    else if (u->key && SSL_CTX_use_PrivateKey_file(ctx, u->key, SSL_FILETYPE_PEM) != 1)
        st = url_error(err, errsize, url, "cannot load the client key '%s': %s", u->key,
                       ssl_reason(why, sizeof why));
    else if (u->key && SSL_CTX_check_private_key(ctx) != 1)
        st = url_error(err, errsize, url, "the client key '%s' does not match the certificate '%s'",
                       u->key, u->cert);
    SSL_CTX_free(ctx);
    return st;
}

static op_status set_param(broker_url *u, const char *url, char *name, char *value, char *err,
                           size_t errsize)
{
    if (!percent_decode(value))
        return url_error(err, errsize, url, "parameter '%s' has a malformed %%-escape", name);
    char **slot = NULL;
    if (strcmp(name, "cacertfile") == 0)
        slot = &u->cacert;
    else if (strcmp(name, "certfile") == 0)
        slot = &u->cert;
    else if (strcmp(name, "keyfile") == 0)
        slot = &u->key;
    else if (strcmp(name, "server_name_indication") == 0)
        slot = &u->server_name;
    if (slot) {
        if (!*value)
            return url_error(err, errsize, url, "parameter '%s' is empty", name);
        free(*slot);
        *slot = mem_strdup(value);
        return OP_OK;
    }
    if (strcmp(name, "verify") == 0) {
        if (strcmp(value, "verify_peer") == 0)
            u->verify = true;
        else if (strcmp(value, "verify_none") == 0)
            u->verify = false;
        else
            return url_error(err, errsize, url, "verify must be verify_peer or verify_none");
        return OP_OK;
    }
    return url_error(err, errsize, url, "unknown parameter '%.64s' (known: cacertfile, certfile, "
                     "keyfile, server_name_indication, verify)", name);
}

static op_status parse_query(broker_url *u, const char *url, char *query, char *err,
                             size_t errsize)
{
    char *save = NULL;
    for (char *kv = strtok_r(query, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return url_error(err, errsize, url, "parameter '%.64s' has no value", kv);
        *eq = '\0';
        if (set_param(u, url, kv, eq + 1, err, errsize) != OP_OK)
            return OP_ERR_PERMANENT;
    }
    return OP_OK;
}

/* Environment variable `name` copied into *slot when the URL did not set it. */
static void env_default(char **slot, const char *name)
{
    const char *v = config_env_str(name, NULL);
    if (!*slot && v)
        *slot = mem_strdup(v);
}

op_status broker_url_parse(const char *url, broker_url *out, char *err, size_t errsize)
{
    assert(out && err && errsize > 0);
    memset(out, 0, sizeof *out);
    out->verify = true;
    if (!url || !*url)
        return url_error(err, errsize, "", "empty");
    out->text = mem_strdup(url);
    if (strchr(out->text, '#'))
        return url_error(err, errsize, url, "a fragment (#) is not allowed");
    char *query = strchr(out->text, '?');
    if (query)
        *query++ = '\0';
    amqp_default_connection_info(&out->ci);
    /* amqp_parse_url decodes in place: what it fills points into out->text */
    if (amqp_parse_url(out->text, &out->ci) != AMQP_STATUS_OK)
        return url_error(err, errsize, url, "not an AMQP URL (amqp://user:pass@host:port/vhost "
                         "or amqps://...)");
    out->tls = out->ci.ssl != 0;
    /* "amqp://host/" names the empty vhost; everyone means RabbitMQ's default "/". */
    if (!out->ci.vhost || !*out->ci.vhost)
        out->ci.vhost = "/";
    snprintf(out->label, sizeof out->label, "%s:%d/%s", out->ci.host, out->ci.port, out->ci.vhost);
    if (query && *query) {
        if (!out->tls)
            return url_error(err, errsize, url, "TLS parameters need an amqps:// URL (plain "
                             "amqp:// never uses TLS)");
        if (parse_query(out, url, query, err, errsize) != OP_OK)
            return OP_ERR_PERMANENT;
    }
    if (!out->tls)
        return OP_OK;
    env_default(&out->cacert, "AMQP_CACERT");
    env_default(&out->cert, "AMQP_CERT");
    env_default(&out->key, "AMQP_KEY");
    if (!out->cert != !out->key)
        return url_error(err, errsize, url, "a client certificate needs both certfile and keyfile "
                         "(or AMQP_CERT and AMQP_KEY)");
    return check_files(out, url, err, errsize);
}

void broker_url_free(broker_url *u)
{
    if (!u)
        return;
    char *owned[] = {u->text, u->cacert, u->cert, u->key, u->server_name};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        free(owned[i]);
    memset(u, 0, sizeof *u);
}

const char *broker_url_peer_name(const broker_url *u)
{
    return u->server_name ? u->server_name : u->ci.host;
}
