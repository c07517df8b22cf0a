/* broker_consume: consuming one queue, turning deliveries into broker_delivery copies that
 * outlive the library's buffers, and settling them (ack, reject).
 *
 * A consuming channel receives deliveries and, in between, the methods that end it: a
 * channel.close or connection.close, or a basic.cancel when its queue is deleted (the connection
 * asks for consumer_cancel_notify). rabbitmq-c hands those back as "unexpected state" with the
 * frame left queued; broker_next reads it and closes the connection, so the caller reconnects
 * and consumes again instead of waiting on a consumer the broker has forgotten.
 */
#include "broker_private.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

op_status broker_consume(broker *b, const char *queue, uint16_t prefetch)
{
    assert(queue);
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    amqp_basic_qos(b->conn, BROKER_CHANNEL, 0, prefetch, 0);
    if (broker_rpc_done(b, "basic.qos") != OP_OK)
        return OP_ERR_TRANSIENT;
    amqp_basic_consume(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0,
                       0, amqp_empty_table);
    char what[200];
    snprintf(what, sizeof what, "consuming %s", queue);
    return broker_rpc_done(b, what);
}

static char *broker_dup_bytes(amqp_bytes_t v)
{
    char *s = mem_alloc(v.len + 1);
    memcpy(s, v.bytes, v.len);
    s[v.len] = '\0';
    return s;
}

/* A header value as JSON; NULL for what JSON cannot hold (a NaN or infinite float, which any
 * publisher may send) and for the kinds no program of ours sends (arrays and tables such as
 * x-death belong to the broker). */
static json_t *broker_json_from_field(const amqp_field_value_t *f)
{
    json_t *v;
    switch (f->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        /* rabbitmq-c gives an empty string no bytes at all (NULL), which jansson refuses. */
        v = f->value.bytes.len ? json_stringn_nocheck(f->value.bytes.bytes, f->value.bytes.len)
                               : json_string("");
        break;
    case AMQP_FIELD_KIND_BOOLEAN: v = json_boolean(f->value.boolean); break;
    case AMQP_FIELD_KIND_I8: v = json_integer(f->value.i8); break;
    case AMQP_FIELD_KIND_U8: v = json_integer(f->value.u8); break;
    case AMQP_FIELD_KIND_I16: v = json_integer(f->value.i16); break;
    case AMQP_FIELD_KIND_U16: v = json_integer(f->value.u16); break;
    case AMQP_FIELD_KIND_I32: v = json_integer(f->value.i32); break;
    case AMQP_FIELD_KIND_U32: v = json_integer(f->value.u32); break;
    case AMQP_FIELD_KIND_I64: v = json_integer(f->value.i64); break;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP: v = json_integer((json_int_t)f->value.u64); break;
    case AMQP_FIELD_KIND_F32:
        if (!isfinite(f->value.f32))
            return NULL;
        v = json_real(f->value.f32);
        break;
    case AMQP_FIELD_KIND_F64:
        if (!isfinite(f->value.f64))
            return NULL;
        v = json_real(f->value.f64);
        break;
    default: return NULL;
    }
    if (!v)
        mem_die("a delivery's header");
    return v;
}

/* The headers of a delivery as a flat JSON object (a new reference). */
static json_t *broker_json_from_table(const amqp_table_t *t)
{
    json_t *o = json_object();
    if (!o)
        mem_die("a delivery's headers");
    for (int i = 0; t && i < t->num_entries; i++) {
        json_t *v = broker_json_from_field(&t->entries[i].value);
        if (!v)
            continue;
        char key[256];
        size_t n = t->entries[i].key.len < sizeof key - 1 ? t->entries[i].key.len : sizeof key - 1;
        memcpy(key, t->entries[i].key.bytes, n);
        key[n] = '\0';
        if (json_object_set_new(o, key, v) != 0)
            mem_die("a delivery's headers");
    }
    return o;
}

/* amqp_consume_message met a method other than a delivery and left it queued. Only the end of
 * the consumer is expected there; anything else is read and passed over. */
static op_status broker_next_interrupted(broker *b)
{
    amqp_frame_t f;
    struct timeval zero = {0, 0};
    op_status st = broker_read_frame(b, &f, &zero, "consuming");
    if (st != OP_OK)
        return st;
    if (f.frame_type != AMQP_FRAME_METHOD)
        return OP_TIMEOUT;
    switch (f.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        broker_set_error(b, "server closed the consumer (queue deleted or node down)");
        return broker_fail(b);
    case AMQP_BASIC_CANCEL_METHOD:
        broker_set_error(b, "the broker cancelled the consumer (its queue was deleted)");
        return broker_fail(b);
    default:
        return OP_TIMEOUT;
    }
}

/* Copies what the caller keeps of env into out. */
static void broker_delivery_fill(broker_delivery *out, const amqp_envelope_t *env)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    out->tag = env->delivery_tag;
    out->redelivered = env->redelivered;
    out->exchange = broker_dup_bytes(env->exchange);
    out->routing_key = broker_dup_bytes(env->routing_key);
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        out->message_id = broker_dup_bytes(p->message_id);
    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        out->correlation_id = broker_dup_bytes(p->correlation_id);
    if (p->_flags & AMQP_BASIC_TYPE_FLAG)
        out->type = broker_dup_bytes(p->type);
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        out->content_type = broker_dup_bytes(p->content_type);
    out->headers = broker_json_from_table(p->_flags & AMQP_BASIC_HEADERS_FLAG ? &p->headers : NULL);
    out->body = broker_dup_bytes(env->message.body);
    out->len = env->message.body.len;
}

op_status broker_next(broker *b, int timeout_ms, broker_delivery *out)
{
    assert(out);
    memset(out, 0, sizeof *out);
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    amqp_envelope_t env;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    broker_release(b);
    amqp_rpc_reply_t r = amqp_consume_message(b->conn, &env, timeout_ms < 0 ? NULL : &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        return OP_TIMEOUT;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE)
        return broker_next_interrupted(b);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        broker_reply_error(b, r, "consuming");
        return broker_fail(b);
    }
    broker_delivery_fill(out, &env);
    amqp_destroy_envelope(&env);
    return OP_OK;
}

void broker_delivery_free(broker_delivery *d)
{
    if (!d)
        return;
    char *owned[] = {d->exchange, d->routing_key, d->message_id, d->correlation_id, d->type,
                     d->content_type, d->body};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        free(owned[i]);
    json_decref(d->headers);
    memset(d, 0, sizeof *d);
}

/* Sends basic.ack for tag (flag: multiple) or basic.reject (flag: requeue). */
static op_status broker_settle_delivery(broker *b, uint64_t tag, bool ack, bool flag)
{
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    int rc = ack ? amqp_basic_ack(b->conn, BROKER_CHANNEL, tag, flag)
                 : amqp_basic_reject(b->conn, BROKER_CHANNEL, tag, flag);
    if (rc != AMQP_STATUS_OK) {
        broker_set_error(b, "%s: %s", ack ? "ack" : "reject", amqp_error_string2(rc));
        return broker_fail(b);
    }
    return OP_OK;
}

op_status broker_ack(broker *b, uint64_t tag, bool multiple)
{
    return broker_settle_delivery(b, tag, true, multiple);
}

op_status broker_reject(broker *b, uint64_t tag, bool requeue)
{
    return broker_settle_delivery(b, tag, false, requeue);
}
