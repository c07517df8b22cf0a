/* broker: one AMQP 0-9-1 connection with one channel, on rabbitmq-c.
 *
 * Owns: connecting to the first reachable node of a comma-separated URL list, declaring
 * exchanges, queues and bindings, publisher confirms, consuming with prefetch, acks, and
 * reconnecting. It knows nothing of the pipeline's own exchanges and queues (lib/topology.h).
 * A program that both consumes and publishes (a worker and its outbox relay) opens two brokers,
 * so confirms and deliveries never mix on one socket. Not thread-safe: one broker belongs to one
 * loop.
 *
 * Memory: broker_connect allocates the broker, broker_close frees it. Deliveries returned by
 * broker_next own their strings and body until broker_delivery_free. Out of memory ends the
 * program (lib/mem.h).
 */
#ifndef ORDERPIPE_BROKER_H
#define ORDERPIPE_BROKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Where broker_publish sends a message that names no exchange. */
#define BROKER_EVENTS_EXCHANGE "orderpipe.events"
/* Every message is a CloudEvent in structured mode: the AMQP binding recognises it by this. */
#define BROKER_CONTENT_TYPE "application/cloudevents+json; charset=utf-8"

typedef struct broker broker;

typedef struct broker_options {
    const char *urls;        /* "amqp://u:p@h:port/vhost,amqp://..."; tried in order, required */
    const char *name;        /* connection name shown by the broker, e.g. "orderpipe-payment" */
    bool confirms;           /* put the channel in publisher-confirm mode */
    int heartbeat_s;         /* 0: the library default (30 s) */
    int connect_timeout_ms;  /* per node; 0: 2000 */
} broker_options;

/* Connects to the first node of opts->urls that answers, opens channel 1 and, if asked, enables
 * confirms. On OP_OK *out is a new broker (free with broker_close). On failure *out is still a
 * broker in the closed state (so broker_reconnect can be called later) unless the URL list is
 * unparseable (OP_ERR_PERMANENT, *out NULL). The options' strings are copied. */
op_status broker_connect(broker **out, const broker_options *opts);
void broker_close(broker *b);

/* True while the connection is believed usable. Any I/O error closes it. */
bool broker_is_open(const broker *b);

/* Tears down what is left of the connection and tries every node once more. */
op_status broker_reconnect(broker *b);

/* The last error as a human sentence; valid until the next call on b. */
const char *broker_last_error(const broker *b);

/* The URL (without password) of the node currently connected, for logs and metrics. */
const char *broker_current_node(const broker *b);

/* Number of successful reconnects since broker_connect (a metric). */
uint64_t broker_reconnect_count(const broker *b);

/* Declares a durable exchange of the given type ("topic", "direct", ...). Idempotent. */
op_status broker_declare_exchange(broker *b, const char *name, const char *type);

/* Declares a durable x-consistent-hash exchange (RabbitMQ's rabbitmq_consistent_hash_exchange
 * plugin) that hashes the message property hash_property ("correlation_id", "message_id", ...)
 * to pick one of its bound queues, each bound with its weight as routing key. Idempotent. */
op_status broker_declare_hash_exchange(broker *b, const char *name, const char *hash_property);

/* Deletes an exchange and every binding to and from it; deleting one that does not exist is
 * not an error. */
op_status broker_delete_exchange(broker *b, const char *name);

/* Binds exchange `destination` to exchange `source` with a routing key (exchange.bind). */
op_status broker_bind_exchange(broker *b, const char *destination, const char *source,
                               const char *key);

/* A durable queue and its arguments; fields left zero are not sent. */
typedef struct broker_queue_spec {
    const char *name;                    /* required */
    bool quorum;                         /* x-queue-type quorum; false: the broker's default */
    int message_ttl_ms;                  /* x-message-ttl; 0: none */
    const char *dead_letter_exchange;    /* x-dead-letter-exchange; "" is the default exchange */
    const char *dead_letter_routing_key; /* x-dead-letter-routing-key */
    bool dead_letter_at_least_once;      /* quorum with a dead-letter exchange only: a message
                                            is never lost on its way to the dead-letter target
                                            (x-dead-letter-strategy at-least-once, which needs
                                            x-overflow reject-publish) */
    bool single_active_consumer;         /* x-single-active-consumer: one consumer at a time
                                            gets deliveries, the others wait to take over */
} broker_queue_spec;

/* Declares q; idempotent while the arguments stay the same (a queue declared before with other
 * arguments is a channel error: OP_ERR_TRANSIENT, the connection closed). */
op_status broker_declare_queue(broker *b, const broker_queue_spec *q);

/* Binds queue to exchange with a routing key. Idempotent. */
op_status broker_bind_queue(broker *b, const char *queue, const char *exchange, const char *key);

/* Removes that binding; removing one that does not exist is not an error. */
op_status broker_unbind_queue(broker *b, const char *queue, const char *exchange, const char *key);

typedef struct broker_message {
    const char *exchange;        /* NULL: BROKER_EVENTS_EXCHANGE; "" : the default exchange */
    const char *routing_key;     /* required */
    const void *body;
    size_t len;
    const char *message_id;      /* AMQP message-id property; may be NULL */
    const char *correlation_id;  /* may be NULL */
    const char *type;            /* AMQP type property (the event type); may be NULL */
    const char *content_type;    /* NULL: BROKER_CONTENT_TYPE; a copy keeps its original's */
    json_t *headers;             /* flat object of string/integer/bool values; may be NULL; borrowed */
} broker_message;

/* Publishes a persistent message (delivery-mode 2, mandatory).
 * With confirms on, *seq (may be NULL) receives its confirm sequence number, 1, 2, ... per
 * connection. OP_ERR_TRANSIENT when the connection is down or fails (it is then closed). */
op_status broker_publish(broker *b, const broker_message *m, uint64_t *seq);

/* Blocks until every message published so far is confirmed or timeout_ms passes.
 * OP_OK: all acked. OP_ERR_UNROUTABLE: at least one came back unroutable (no queue is bound for
 * its key, or its queue is gone). OP_ERR_PERMANENT: at least one was nacked. OP_TIMEOUT: not all
 * confirms arrived. OP_ERR_TRANSIENT: the connection failed. The connection stays open on all
 * but the last. */
op_status broker_wait_confirms(broker *b, int timeout_ms);

/* Event-loop use (the intake): the socket to watch for readability, and a non-blocking read of
 * every confirm already received. cb is called once per confirm; with multiple set, every
 * sequence number <= seq is settled. Returns OP_OK, or OP_ERR_TRANSIENT when the connection died
 * (the caller then fails every unsettled publish). Returns -1 from broker_fd when closed. */
typedef void (*broker_confirm_cb)(uint64_t seq, bool multiple, bool ack, void *arg);
int broker_fd(const broker *b);
op_status broker_poll_confirms(broker *b, broker_confirm_cb cb, void *arg);

/* Holds the connection's writes back (TCP_CORK) until broker_cork(b, false), so that publishes
 * made one after another leave in as few segments as possible; the broker then reads them
 * together, which costs it less per message. Uncorking sends what was held at once. */
op_status broker_cork(broker *b, bool cork);

/* Starts consuming `queue` with the given prefetch (basic.qos). */
op_status broker_consume(broker *b, const char *queue, uint16_t prefetch);

typedef struct broker_delivery {
    uint64_t tag;
    bool redelivered;
    char *exchange;
    char *routing_key;
    char *message_id;        /* NULL if the publisher set none */
    char *correlation_id;
    char *type;
    char *content_type;      /* NULL if the publisher set none */
    json_t *headers;         /* object, never NULL (empty when there were none) */
    char *body;              /* NUL-terminated copy of the body */
    size_t len;
} broker_delivery;

/* Waits up to timeout_ms (0: do not wait, -1: forever) for the next delivery.
 * OP_OK: *out filled (free with broker_delivery_free). OP_TIMEOUT: nothing yet.
 * OP_ERR_TRANSIENT: the connection failed (reconnect and consume again). */
op_status broker_next(broker *b, int timeout_ms, broker_delivery *out);
void broker_delivery_free(broker_delivery *d);

op_status broker_ack(broker *b, uint64_t tag, bool multiple);
/* basic.reject; with requeue false the message is dropped or dead-lettered by its queue. */
op_status broker_reject(broker *b, uint64_t tag, bool requeue);

/* Declares a durable quorum queue with no other argument (benchmarks, tools). */
op_status broker_declare_quorum_queue(broker *b, const char *name);

/* Number of messages ready in a queue (passive declare), or -1 on error. */
long broker_queue_depth(broker *b, const char *queue);

/* Bounds how long each later RPC (declarations, channel close) waits for the broker's reply
 * (30 s after broker_connect), so a caller that must finish in time, such as the intake's
 * reconnect thread, is not held by a broker that stopped answering. */
op_status broker_set_rpc_timeout(broker *b, int timeout_ms);

#endif
