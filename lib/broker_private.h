/* broker_private: what the files of the broker module share and nothing else includes.
 *
 * The module is split by job: broker.c (connecting, logging in, reconnecting), broker_tls.c (TLS
 * settings and why a handshake failed), broker_declare.c (exchanges, queues, bindings, depths),
 * broker_publish.c (publishing and publisher confirms) and broker_consume.c (consuming, acks).
 * They all work on the one connection and channel described here.
 */
#ifndef ORDERPIPE_BROKER_PRIVATE_H
#define ORDERPIPE_BROKER_PRIVATE_H

#include <amqp.h>

#include "broker.h"
#include "broker_url.h"

/* Every AMQP method of the module goes on this channel: one broker, one channel. */
#define BROKER_CHANNEL 1
_Static_assert(BROKER_CHANNEL >= 1, "channel 0 is the connection's own");

struct broker {
    /* configuration, copied */
    broker_url *nodes;           /* owned; label: host:port/vhost, no password */
    int nnodes;
    int current;
    char *name;
    bool confirms;
    int heartbeat_s;
    int connect_timeout_ms;

    amqp_connection_state_t conn; /* non-NULL whenever open is true */
    bool open;
    uint64_t reconnects;
    bool connected_once;

    /* publisher confirms: sequence numbers (settled, published] are outstanding */
    uint64_t published;
    uint64_t settled_upto;       /* every seq <= this is settled */
    uint8_t *settled;            /* ring of flags for seqs above settled_upto; owned */
    size_t ring_size;            /* always more than published - settled_upto */
    bool nacked;                 /* since the last broker_wait_confirms */
    bool unroutable;             /* likewise: a publish came back with basic.return */
    bool return_pending;         /* a basic.return whose ack has not arrived yet */
    char return_reason[160];     /* the broker's words for the last basic.return */

    char error[512];
    char tls_error[256];         /* why the peer's certificate was refused, during one connect */
};

void broker_set_error(broker *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* OP_OK when b is connected; otherwise records "not connected" and returns OP_ERR_TRANSIENT. */
op_status broker_check_open(broker *b);

/* Describes a failed RPC reply in b->error and returns OP_ERR_TRANSIENT (OP_OK for a normal
 * reply). Server exceptions and library errors alike leave the channel unusable. */
op_status broker_reply_error(broker *b, amqp_rpc_reply_t r, const char *what);

/* Checks the reply of the RPC just made; on failure the connection is closed (broker_fail). On
 * success the reply's memory is handed back (broker_release), so the caller reads nothing of it. */
op_status broker_rpc_done(broker *b, const char *what);

/* Reads the next frame, waiting up to tv (zero: only what is already received). OP_OK with *f
 * filled, OP_TIMEOUT when none came, or OP_ERR_TRANSIENT when reading failed (the error names
 * `what`; the connection is closed). *f is only written on OP_OK. */
op_status broker_read_frame(broker *b, amqp_frame_t *f, const struct timeval *tv, const char *what);

/* Hands rabbitmq-c's decoding memory back for reuse (see broker.c). */
void broker_release(broker *b);

/* Any failure of the socket or protocol: the connection is done for. Returns OP_ERR_TRANSIENT. */
op_status broker_fail(broker *b);

/* Applies u's TLS settings to a new SSL socket of b (broker_tls.c). */
op_status broker_tls_setup(broker *b, amqp_socket_t *sock, const broker_url *u);

/* Records in b->error why amqp_socket_open failed for node u with rc (broker_tls.c). */
void broker_open_error(broker *b, const broker_url *u, int rc);

/* Resets the confirm bookkeeping for a new connection (broker_publish.c). */
void broker_confirms_reset(broker *b);

#endif
