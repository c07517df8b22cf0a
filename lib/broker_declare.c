/* broker_declare: declaring exchanges, queues and bindings, and asking a queue's depth.
 *
 * Only the AMQP side of declarations lives here: which exchanges and queues an application
 * needs, and with which arguments, is the application's (lib/topology.c for the pipeline).
 * Every declaration is durable and idempotent, so many processes may make the same one.
 */
#include "broker_private.h"

#include <assert.h>
#include <stdio.h>

#define BROKER_MAX_QUEUE_ARGS 7

/* A durable exchange of `type` with its arguments. */
static op_status broker_declare_exchange_args(broker *b, const char *name, const char *type,
                                              amqp_table_t args)
{
    assert(name && type);
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    amqp_exchange_declare(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(name),
                          amqp_cstring_bytes(type), 0, 1, 0, 0, args);
    char what[200];
    snprintf(what, sizeof what, "declaring %s exchange %s", type, name);
    return broker_rpc_done(b, what);
}

op_status broker_declare_exchange(broker *b, const char *name, const char *type)
{
    return broker_declare_exchange_args(b, name, type, amqp_empty_table);
}

op_status broker_declare_hash_exchange(broker *b, const char *name, const char *hash_property)
{
    assert(hash_property);
    amqp_table_entry_t entry = {
        .key = amqp_cstring_bytes("hash-property"),
        .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(hash_property)}};
    return broker_declare_exchange_args(b, name, "x-consistent-hash",
                                        (amqp_table_t){.num_entries = 1, .entries = &entry});
}

op_status broker_delete_exchange(broker *b, const char *name)
{
    assert(name);
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    amqp_exchange_delete(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(name), 0);
    char what[200];
    snprintf(what, sizeof what, "deleting exchange %s", name);
    return broker_rpc_done(b, what);
}

op_status broker_bind_exchange(broker *b, const char *destination, const char *source,
                               const char *key)
{
    assert(destination && source && key);
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    amqp_exchange_bind(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(destination),
                       amqp_cstring_bytes(source), amqp_cstring_bytes(key), amqp_empty_table);
    char what[300];
    snprintf(what, sizeof what, "binding exchange %s to %s with %s", destination, source, key);
    return broker_rpc_done(b, what);
}

/* Appends a string argument to args. */
static void broker_arg_str(amqp_table_t *args, const char *key, const char *value)
{
    assert(args->num_entries < BROKER_MAX_QUEUE_ARGS);
    args->entries[args->num_entries++] = (amqp_table_entry_t){
        .key = amqp_cstring_bytes(key),
        .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(value)}};
}

op_status broker_declare_queue(broker *b, const broker_queue_spec *q)
{
    assert(q && q->name);
    assert(!q->dead_letter_at_least_once || (q->quorum && q->dead_letter_exchange));
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    amqp_table_entry_t entries[BROKER_MAX_QUEUE_ARGS];
    amqp_table_t args = {.num_entries = 0, .entries = entries};
    if (q->quorum)
        broker_arg_str(&args, "x-queue-type", "quorum");
    if (q->message_ttl_ms > 0) {
        entries[args.num_entries++] = (amqp_table_entry_t){
            .key = amqp_cstring_bytes("x-message-ttl"),
            .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = q->message_ttl_ms}};
    }
    if (q->dead_letter_exchange)
        broker_arg_str(&args, "x-dead-letter-exchange", q->dead_letter_exchange);
    if (q->dead_letter_routing_key)
        broker_arg_str(&args, "x-dead-letter-routing-key", q->dead_letter_routing_key);
    if (q->single_active_consumer) {
        entries[args.num_entries++] = (amqp_table_entry_t){
            .key = amqp_cstring_bytes("x-single-active-consumer"),
            .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}};
    }
    if (q->dead_letter_at_least_once) {
        /* RabbitMQ takes at-least-once dead-lettering only with reject-publish overflow: a full
         * target refuses the message rather than dropping the oldest. */
        broker_arg_str(&args, "x-dead-letter-strategy", "at-least-once");
        broker_arg_str(&args, "x-overflow", "reject-publish");
    }
    amqp_queue_declare(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(q->name), 0, 1, 0, 0, args);
    char what[200];
    snprintf(what, sizeof what, "declaring queue %s", q->name);
    return broker_rpc_done(b, what);
}

op_status broker_declare_quorum_queue(broker *b, const char *name)
{
    return broker_declare_queue(b, &(broker_queue_spec){.name = name, .quorum = true});
}

/* Adds (bind) or removes a queue's binding to an exchange with a routing key. */
static op_status broker_queue_binding(broker *b, const char *queue, const char *exchange,
                                      const char *key, bool bind)
{
    assert(queue && exchange && key);
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    if (bind)
        amqp_queue_bind(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(queue),
                        amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), amqp_empty_table);
    else
        amqp_queue_unbind(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(queue),
                          amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), amqp_empty_table);
    char what[300];
    snprintf(what, sizeof what, "%s queue %s %s %s with %s", bind ? "binding" : "unbinding",
             queue, bind ? "to" : "from", exchange, key);
    return broker_rpc_done(b, what);
}

op_status broker_bind_queue(broker *b, const char *queue, const char *exchange, const char *key)
{
    return broker_queue_binding(b, queue, exchange, key, true);
}

op_status broker_unbind_queue(broker *b, const char *queue, const char *exchange, const char *key)
{
    return broker_queue_binding(b, queue, exchange, key, false);
}

long broker_queue_depth(broker *b, const char *queue)
{
    assert(queue);
    if (broker_check_open(b) != OP_OK)
        return -1;
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(b->conn, BROKER_CHANNEL,
                                                     amqp_cstring_bytes(queue), 1, 0, 0, 0,
                                                     amqp_empty_table);
    char what[200];
    snprintf(what, sizeof what, "queue %s", queue);
    if (!ok || broker_reply_error(b, amqp_get_rpc_reply(b->conn), what) != OP_OK) {
        broker_fail(b);
        return -1;
    }
    long depth = (long)ok->message_count;
    broker_release(b); /* ok pointed into the pool; a watcher asks this every half second */
    return depth;
}
