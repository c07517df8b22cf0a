/* broker_url: one node of AMQP_URL, parsed for rabbitmq-c, with its TLS settings.
 *
 * Owns the URL forms every program accepts (they all reach the broker through lib/broker.c):
 *   amqp://user:pass@host[:5672][/vhost]
 *   amqps://user:pass@host[:5671][/vhost][?cacertfile=PATH&certfile=PATH&keyfile=PATH
 *                                          &server_name_indication=NAME&verify=verify_peer]
 * Query parameters are named as in RabbitMQ's URI query parameters. For amqps:// the environment
 * variables AMQP_CACERT, AMQP_CERT and AMQP_KEY stand in for a missing cacertfile, certfile and
 * keyfile; without a CA the system's trust store is used. Verification of the peer's certificate
 * and of its name is on unless the URL says verify=verify_none (the broker then warns at every
 * connect). TLS parameters on an amqp:// URL are refused rather than ignored.
 *
 * The files are loaded once here, so a missing or unreadable CA, certificate or key is a
 * configuration error at start-up, not a reconnect loop. Error texts never hold the password.
 */
#ifndef ORDERPIPE_BROKER_URL_H
#define ORDERPIPE_BROKER_URL_H

#include <amqp.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"

typedef struct broker_url {
    struct amqp_connection_info ci; /* host, port, vhost, user, password: point into text */
    char *text;                     /* owned; the URL without its query, decoded in place */
    bool tls;                       /* amqps:// */
    bool verify;                    /* peer and name verification (false only: verify_none) */
    char *cacert;                   /* owned; NULL: the system trust store */
    char *cert, *key;               /* owned; client certificate and key, both or neither */
    char *server_name;              /* owned; the name the certificate must carry, NULL: host */
    char label[300];                /* "host:port/vhost" for logs and metrics, no password */
} broker_url;

/* Parses one URL (no commas) into *out, which the caller frees with broker_url_free whatever
 * the result. OP_OK, or OP_ERR_PERMANENT with a sentence in err (errsize bytes) that quotes the
 * URL with its password masked. */
op_status broker_url_parse(const char *url, broker_url *out, char *err, size_t errsize);
void broker_url_free(broker_url *u);

/* The name the server's certificate must carry: server_name_indication, else the host. */
const char *broker_url_peer_name(const broker_url *u);

#endif
