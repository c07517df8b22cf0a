/* broker_tls: TLS for the broker's connection: the settings of an amqps:// node (protocol
 * versions, CA, client certificate, peer verification) and, when a connect fails, why, in words
 * that name the node, the certificate and the name expected (see broker_url.h for the URL forms).
 */
#include "broker_private.h"

#include <amqp_ssl_socket.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>

#include "log.h"
#include "utf8.h"

/* Records the first reason OpenSSL gives for refusing the peer's certificate chain or name; the
 * handshake then fails (SSL_VERIFY_PEER) and broker_open_node reports this reason. */
static int broker_tls_verify_cb(int ok, X509_STORE_CTX *st)
{
    if (ok)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
    broker *b = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    if (b && !b->tls_error[0]) {
        char subject[128] = "";
        X509 *cert = X509_STORE_CTX_get_current_cert(st);
        if (cert)
            X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
        char clean[128];
        utf8_copy(clean, sizeof clean, subject); /* the server chose that text */
        snprintf(b->tls_error, sizeof b->tls_error, "%s (certificate '%s')",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(st)), clean);
    }
    return ok;
}

/* Applies u's TLS settings to a new SSL socket. Verification is done by OpenSSL during the
 * handshake (SSL_VERIFY_PEER with the expected host name or IP address in the verify
 * parameters), so a refused certificate stops the handshake before any AMQP byte is sent;
 * rabbitmq-c's own name check is off because it only reads DNS names (an amqps:// URL with an
 * IP address would always fail) and cannot check a name other than the host dialled. */
op_status broker_tls_setup(broker *b, amqp_socket_t *sock, const broker_url *u)
{
    SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
    char why[200];
    ERR_clear_error();
    if (amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST) != AMQP_STATUS_OK) {
        broker_set_error(b, "%s: cannot require TLS 1.2 or later", u->label);
        return OP_ERR_TRANSIENT;
    }
    int rc = u->cacert ? amqp_ssl_socket_set_cacert(sock, u->cacert)
                       : (SSL_CTX_set_default_verify_paths(ctx) == 1 ? AMQP_STATUS_OK
                                                                    : AMQP_STATUS_SSL_ERROR);
    if (rc != AMQP_STATUS_OK) {
        ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
        broker_set_error(b, "%s: cannot load the CA %s: %s", u->label,
                         u->cacert ? u->cacert : "(system store)", why);
        return OP_ERR_TRANSIENT;
    }
    if (u->cert && amqp_ssl_socket_set_key(sock, u->cert, u->key) != AMQP_STATUS_OK) {
        ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
        broker_set_error(b, "%s: cannot load the client certificate %s / key %s: %s", u->label,
                         u->cert, u->key, why);
        return OP_ERR_TRANSIENT;
    }
    amqp_ssl_socket_set_verify_hostname(sock, 0);
    if (!u->verify) {
        amqp_ssl_socket_set_verify_peer(sock, 0);
        log_warn(NULL, "TLS to %s WITHOUT certificate verification (verify=verify_none): anyone "
                 "on the network path can impersonate the broker and read its traffic", u->label);
        return OP_OK;
    }
    amqp_ssl_socket_set_verify_peer(sock, 1);
    const char *name = broker_url_peer_name(u);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
               : X509_VERIFY_PARAM_set1_host(param, name, 0)) != 1) {
        broker_set_error(b, "%s: cannot verify against the name '%s'", u->label, name);
        return OP_ERR_TRANSIENT;
    }
    SSL_CTX_set_app_data(ctx, b);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, broker_tls_verify_cb);
    return OP_OK;
}

/* Why amqp_socket_open failed, as one sentence naming the node (never its password). */
void broker_open_error(broker *b, const broker_url *u, int rc)
{
    if (!u->tls) {
        broker_set_error(b, "connecting to %s: %s", u->label, amqp_error_string2(rc));
        return;
    }
    if (b->tls_error[0]) {
        broker_set_error(b, "connecting to %s over TLS: the server's certificate was refused: %s "
                         "(expected name '%s', CA %s)", u->label, b->tls_error,
                         broker_url_peer_name(u), u->cacert ? u->cacert : "(system store)");
        return;
    }
    unsigned long e = ERR_peek_last_error();
    if (e) {
        char why[200];
        ERR_error_string_n(e, why, sizeof why);
        broker_set_error(b, "connecting to %s over TLS: handshake failed: %s (is this a TLS "
                         "port?)", u->label, why);
        return;
    }
    broker_set_error(b, "connecting to %s over TLS: %s", u->label, amqp_error_string2(rc));
}
