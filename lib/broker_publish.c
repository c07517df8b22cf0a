/* broker_publish: publishing persistent messages and settling their publisher confirms.
 *
 * With confirms on, each publish gets the next sequence number of the connection; the broker
 * acks or nacks them (one by one or "everything up to"), and a mandatory publish that no queue
 * takes comes back first as a basic.return and then as an ack. A ring of flags above the highest
 * sequence number settled in order tracks which of the outstanding ones are settled, so a caller
 * can wait for all of them (broker_wait_confirms) or be told of each (broker_poll_confirms).
 */
#include "broker_private.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "mem.h"

#define BROKER_RING_INITIAL 1024

void broker_confirms_reset(broker *b)
{
    if (!b->settled) {
        b->ring_size = BROKER_RING_INITIAL;
        b->settled = mem_calloc(b->ring_size, 1);
    }
    b->published = 0;
    b->settled_upto = 0;
    b->nacked = false;
    b->unroutable = false;
    b->return_pending = false;
    memset(b->settled, 0, b->ring_size);
}

/* Builds an AMQP table from a flat JSON object; entries point into `headers`' strings. The
 * caller frees t->entries. */
static void broker_table_from_json(json_t *headers, amqp_table_t *t)
{
    t->num_entries = 0;
    t->entries = NULL;
    if (!json_is_object(headers) || json_object_size(headers) == 0)
        return;
    t->entries = mem_calloc(json_object_size(headers), sizeof *t->entries);
    const char *key;
    json_t *v;
    json_object_foreach(headers, key, v) {
        amqp_table_entry_t *e = &t->entries[t->num_entries];
        e->key = amqp_cstring_bytes(key);
        if (json_is_string(v)) {
            e->value.kind = AMQP_FIELD_KIND_UTF8;
            e->value.value.bytes.bytes = (void *)json_string_value(v);
            e->value.value.bytes.len = json_string_length(v);
        } else if (json_is_integer(v)) {
            e->value.kind = AMQP_FIELD_KIND_I64;
            e->value.value.i64 = json_integer_value(v);
        } else if (json_is_boolean(v)) {
            e->value.kind = AMQP_FIELD_KIND_BOOLEAN;
            e->value.value.boolean = json_is_true(v);
        } else if (json_is_real(v)) {
            e->value.kind = AMQP_FIELD_KIND_F64;
            e->value.value.f64 = json_real_value(v);
        } else {
            continue; /* nested values are not headers we send */
        }
        t->num_entries++;
    }
}

/* Gives the next sequence number a flag, doubling the ring when every slot is outstanding. */
static void broker_track_publish(broker *b)
{
    b->published++;
    if (b->published - b->settled_upto >= b->ring_size) {
        size_t old = b->ring_size, nsize = old * 2;
        uint8_t *ring = mem_calloc(nsize, 1);
        for (uint64_t s = b->settled_upto + 1; s < b->published; s++)
            ring[s % nsize] = b->settled[s % old];
        free(b->settled);
        b->settled = ring;
        b->ring_size = nsize;
    }
    assert(b->published - b->settled_upto < b->ring_size);
    b->settled[b->published % b->ring_size] = 0;
}

op_status broker_publish(broker *b, const broker_message *m, uint64_t *seq)
{
    assert(m && m->routing_key);
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    amqp_basic_properties_t p = {0};
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.content_type = amqp_cstring_bytes(m->content_type ? m->content_type : BROKER_CONTENT_TYPE);
    p.delivery_mode = 2;
    if (m->message_id) {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = amqp_cstring_bytes(m->message_id);
    }
    if (m->correlation_id) {
        p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        p.correlation_id = amqp_cstring_bytes(m->correlation_id);
    }
    if (m->type) {
        p._flags |= AMQP_BASIC_TYPE_FLAG;
        p.type = amqp_cstring_bytes(m->type);
    }
    broker_table_from_json(m->headers, &p.headers);
    if (p.headers.num_entries)
        p._flags |= AMQP_BASIC_HEADERS_FLAG;
    amqp_bytes_t body = {.len = m->len, .bytes = (void *)m->body};
    const char *exchange = m->exchange ? m->exchange : BROKER_EVENTS_EXCHANGE;
    int rc = amqp_basic_publish(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(exchange),
                                amqp_cstring_bytes(m->routing_key), 1, 0, &p, body);
    free(p.headers.entries);
    if (rc != AMQP_STATUS_OK) {
        broker_set_error(b, "publishing to %s: %s", exchange, amqp_error_string2(rc));
        return broker_fail(b);
    }
    if (b->confirms)
        broker_track_publish(b);
    if (seq)
        *seq = b->published;
    return OP_OK;
}

static void broker_settle(broker *b, uint64_t tag, bool multiple)
{
    if (tag > b->published)
        tag = b->published;
    if (multiple) {
        if (tag > b->settled_upto)
            b->settled_upto = tag;
    } else if (tag > b->settled_upto) {
        b->settled[tag % b->ring_size] = 1;
    }
    while (b->settled_upto < b->published &&
           b->settled[(b->settled_upto + 1) % b->ring_size]) {
        b->settled[(b->settled_upto + 1) % b->ring_size] = 0;
        b->settled_upto++;
    }
}

/* A basic.return: the message follows it and is read and dropped; the ack that comes after it
 * settles the publish as failed. */
static op_status broker_on_return(broker *b, const amqp_frame_t *f)
{
    amqp_basic_return_t *r = f->payload.method.decoded;
    snprintf(b->return_reason, sizeof b->return_reason, "message returned unroutable: %u %.*s",
             r->reply_code, (int)r->reply_text.len, (char *)r->reply_text.bytes);
    b->return_pending = true;
    amqp_message_t msg;
    amqp_rpc_reply_t rr = amqp_read_message(b->conn, f->channel, &msg, 0);
    if (rr.reply_type != AMQP_RESPONSE_NORMAL) {
        broker_reply_error(b, rr, "reading a returned message");
        return broker_fail(b);
    }
    amqp_destroy_message(&msg);
    return OP_OK;
}

/* Reads one frame (waiting up to tv; a zero tv: only what is already buffered) and handles it.
 * Returns OP_OK when a frame was handled, OP_TIMEOUT when none came, OP_ERR_* on failure. */
static op_status broker_read_confirm(broker *b, const struct timeval *tv, broker_confirm_cb cb, void *arg)
{
    /* The frame read last has been handled and nothing points into it any more. */
    broker_release(b);
    amqp_frame_t f;
    op_status st = broker_read_frame(b, &f, tv, "reading confirms");
    if (st != OP_OK)
        return st;
    if (f.frame_type != AMQP_FRAME_METHOD)
        return OP_OK;
    switch (f.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = f.payload.method.decoded;
        bool ok = !b->return_pending;
        b->return_pending = false;
        if (!ok)
            b->unroutable = true;
        broker_settle(b, a->delivery_tag, a->multiple);
        if (cb)
            cb(a->delivery_tag, a->multiple, ok, arg);
        return OP_OK;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *n = f.payload.method.decoded;
        b->nacked = true;
        broker_settle(b, n->delivery_tag, n->multiple);
        if (cb)
            cb(n->delivery_tag, n->multiple, false, arg);
        return OP_OK;
    }
    case AMQP_BASIC_RETURN_METHOD:
        return broker_on_return(b, &f);
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
        broker_reply_error(b, (amqp_rpc_reply_t){.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
                                                 .reply = f.payload.method},
                           "reading confirms");
        return broker_fail(b);
    default:
        return OP_OK;
    }
}

op_status broker_wait_confirms(broker *b, int timeout_ms)
{
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    uint64_t start_ms = clock_now_ms();
    while (b->settled_upto < b->published) {
        uint64_t spent = clock_ms_since(start_ms);
        long left = spent >= (uint64_t)timeout_ms ? 0 : timeout_ms - (long)spent;
        if (left == 0) {
            broker_set_error(b, "%llu publishes not confirmed within %d ms",
                             (unsigned long long)(b->published - b->settled_upto), timeout_ms);
            return OP_TIMEOUT;
        }
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        st = broker_read_confirm(b, &tv, NULL, NULL);
        if (st != OP_OK && st != OP_TIMEOUT)
            return st;
    }
    /* An unroutable publish names a missing route, which declaring the topology repairs; a
     * nack is the broker refusing the message, which it does not explain. */
    st = OP_OK;
    if (b->unroutable) {
        broker_set_error(b, "%s", b->return_reason);
        st = OP_ERR_UNROUTABLE;
    } else if (b->nacked) {
        broker_set_error(b, "the broker refused (nacked) a publish");
        st = OP_ERR_PERMANENT;
    }
    b->unroutable = false;
    b->nacked = false;
    return st;
}

op_status broker_poll_confirms(broker *b, broker_confirm_cb cb, void *arg)
{
    op_status st = broker_check_open(b);
    /* Drain the socket and rabbitmq-c's own buffer: a zero timeout reads what is there. */
    while (st == OP_OK) {
        struct timeval zero = {0, 0};
        st = broker_read_confirm(b, &zero, cb, arg);
    }
    return st == OP_TIMEOUT ? OP_OK : st;
}

op_status broker_cork(broker *b, bool cork)
{
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    int fd = amqp_get_sockfd(b->conn), on = cork ? 1 : 0;
    if (fd < 0) {
        broker_set_error(b, "TCP_CORK: the connection has no socket");
        return OP_ERR_TRANSIENT;
    }
    if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) != 0) {
        broker_set_error(b, "TCP_CORK: %s", strerror(errno));
        return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}
