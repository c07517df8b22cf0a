/* broker: the connection itself (see broker.h): parsing the node list, connecting and logging
 * in to the first node that answers, opening the channel, reconnecting past a dead node, and the
 * error and reply handling the other files of the module share (broker_private.h).
 */
#include "broker_private.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <assert.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

void broker_set_error(broker *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->error, sizeof b->error, fmt, ap);
    va_end(ap);
}

const char *broker_last_error(const broker *b) { return b ? b->error : "no broker"; }
bool broker_is_open(const broker *b) { return b && b->open; }
uint64_t broker_reconnect_count(const broker *b) { return b ? b->reconnects : 0; }
int broker_fd(const broker *b) { return b && b->open ? amqp_get_sockfd(b->conn) : -1; }

const char *broker_current_node(const broker *b)
{
    return b && b->nnodes ? b->nodes[b->current].label : "";
}

op_status broker_check_open(broker *b)
{
    if (!b)
        return OP_ERR_TRANSIENT;
    if (!b->open) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
    assert(b->conn);
    return OP_OK;
}

op_status broker_reply_error(broker *b, amqp_rpc_reply_t r, const char *what)
{
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return OP_OK;
    case AMQP_RESPONSE_NONE:
        broker_set_error(b, "%s: missing RPC reply", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        broker_set_error(b, "%s: %s", what, amqp_error_string2(r.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *m = r.reply.decoded;
            broker_set_error(b, "%s: server closed the connection: %u %.*s", what, m->reply_code,
                             (int)m->reply_text.len, (char *)m->reply_text.bytes);
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *m = r.reply.decoded;
            broker_set_error(b, "%s: server closed the channel: %u %.*s", what, m->reply_code,
                             (int)m->reply_text.len, (char *)m->reply_text.bytes);
        } else {
            broker_set_error(b, "%s: unexpected server method 0x%08X", what, r.reply.id);
        }
        break;
    }
    return OP_ERR_TRANSIENT;
}

/* Every frame rabbitmq-c decodes (a confirm, a basic.return, an RPC reply such as
 * queue.declare-ok) is carved out of a per-channel pool that only amqp_maybe_release_buffers
 * recycles: without this call the pool grows by each frame for the life of the connection. The
 * library skips the release while frames are queued (amqp_release_buffers_ok), so it is always
 * safe to call; it invalidates every pointer into frames decoded before it, so callers copy what
 * they need first and call it between frames, never while one is being read. */
void broker_release(broker *b)
{
    if (b->conn)
        amqp_maybe_release_buffers(b->conn);
}

op_status broker_rpc_done(broker *b, const char *what)
{
    if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), what) != OP_OK)
        return broker_fail(b);
    broker_release(b);
    return OP_OK;
}

op_status broker_read_frame(broker *b, amqp_frame_t *f, const struct timeval *tv, const char *what)
{
    int rc = amqp_simple_wait_frame_noblock(b->conn, f, tv);
    if (rc == AMQP_STATUS_TIMEOUT)
        return OP_TIMEOUT;
    if (rc != AMQP_STATUS_OK) {
        broker_set_error(b, "%s: %s", what, amqp_error_string2(rc));
        return broker_fail(b);
    }
    return OP_OK;
}

static void broker_drop(broker *b)
{
    if (b->conn) {
        if (b->open) {
            /* A connection dropped to be replaced may be stuck (an overdue confirm): waiting the
             * usual RPC timeout for the close's reply would freeze the caller, the intake's
             * event loop included, for a minute. Half a second is plenty for one that answers. */
            struct timeval close_tv = {0, 500000};
            amqp_set_rpc_timeout(b->conn, &close_tv);
            amqp_channel_close(b->conn, BROKER_CHANNEL, AMQP_REPLY_SUCCESS);
            amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(b->conn);
    }
    b->conn = NULL;
    b->open = false;
}

op_status broker_fail(broker *b)
{
    if (b->conn)
        amqp_destroy_connection(b->conn);
    b->conn = NULL;
    b->open = false;
    return OP_ERR_TRANSIENT;
}

/* Logs in with the connection's name and capabilities. consumer_cancel_notify: without it the
 * broker stops delivering to a consumer whose queue was deleted without telling it, and the
 * consumer waits forever (merged with the library's own capabilities). */
static amqp_rpc_reply_t broker_login(broker *b, const struct amqp_connection_info *ci)
{
    amqp_table_entry_t cap = {.key = amqp_cstring_bytes("consumer_cancel_notify"),
                              .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}};
    amqp_table_entry_t prop[] = {
        {.key = amqp_cstring_bytes("connection_name"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(b->name)}},
        {.key = amqp_cstring_bytes("capabilities"),
         .value = {.kind = AMQP_FIELD_KIND_TABLE,
                   .value.table = {.num_entries = 1, .entries = &cap}}},
    };
    amqp_table_t props = {.num_entries = 2, .entries = prop};
    return amqp_login_with_properties(b->conn, ci->vhost, 0, 131072, b->heartbeat_s, &props,
                                      AMQP_SASL_METHOD_PLAIN, ci->user, ci->password);
}

static op_status broker_open_node(broker *b, int i)
{
    assert(i >= 0 && i < b->nnodes && !b->conn);
    broker_url *u = &b->nodes[i];
    struct amqp_connection_info *ci = &u->ci;
    b->tls_error[0] = '\0';
    b->conn = amqp_new_connection();
    if (!b->conn)
        mem_die("an AMQP connection");
    amqp_socket_t *sock = u->tls ? amqp_ssl_socket_new(b->conn) : amqp_tcp_socket_new(b->conn);
    if (!sock) {
        broker_set_error(b, "%s: cannot create the %s socket", u->label, u->tls ? "TLS" : "TCP");
        return broker_fail(b);
    }
    if (u->tls && broker_tls_setup(b, sock, u) != OP_OK)
        return broker_fail(b);
    struct timeval tv = {b->connect_timeout_ms / 1000, (b->connect_timeout_ms % 1000) * 1000};
    ERR_clear_error();
    int rc = amqp_socket_open_noblock(sock, ci->host, ci->port, &tv);
    if (rc != AMQP_STATUS_OK) {
        broker_open_error(b, u, rc);
        ERR_clear_error();
        return broker_fail(b);
    }
    amqp_set_handshake_timeout(b->conn, &tv);
    struct timeval rpc_tv = {30, 0};
    amqp_set_rpc_timeout(b->conn, &rpc_tv);
    if (broker_reply_error(b, broker_login(b, ci), u->label) != OP_OK)
        return broker_fail(b);
    b->open = true;
    amqp_channel_open(b->conn, BROKER_CHANNEL);
    if (broker_rpc_done(b, "opening the channel") != OP_OK)
        return OP_ERR_TRANSIENT;
    if (b->confirms) {
        amqp_confirm_select(b->conn, BROKER_CHANNEL);
        if (broker_rpc_done(b, "confirm.select") != OP_OK)
            return OP_ERR_TRANSIENT;
    }
    b->current = i;
    broker_confirms_reset(b);
    return OP_OK;
}

op_status broker_reconnect(broker *b)
{
    if (!b)
        return OP_ERR_PERMANENT;
    assert(b->nnodes > 0);
    broker_drop(b);
    /* Start after the node that failed so a dead cluster node is skipped at once. */
    int start = b->connected_once ? (b->current + 1) % b->nnodes : 0;
    for (int k = 0; k < b->nnodes; k++) {
        int i = (start + k) % b->nnodes;
        if (broker_open_node(b, i) == OP_OK) {
            if (b->connected_once)
                b->reconnects++;
            b->connected_once = true;
            return OP_OK;
        }
    }
    return OP_ERR_TRANSIENT;
}

static op_status broker_parse_urls(broker *b, const char *urls)
{
    if (!urls) {
        broker_set_error(b, "no AMQP URL given");
        return OP_ERR_PERMANENT;
    }
    char *copy = mem_strdup(urls), *save = NULL;
    int cap = 1;
    for (const char *p = urls; *p; p++)
        cap += *p == ',';
    b->nodes = mem_calloc((size_t)cap, sizeof *b->nodes);
    op_status st = OP_OK;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        assert(b->nnodes < cap);
        /* counted before parsing: broker_close frees whatever a failed parse left */
        broker_url *u = &b->nodes[b->nnodes++];
        if (broker_url_parse(tok, u, b->error, sizeof b->error) != OP_OK) {
            st = OP_ERR_PERMANENT;
            break;
        }
    }
    free(copy);
    if (st == OP_OK && b->nnodes == 0) {
        broker_set_error(b, "no AMQP URL given");
        st = OP_ERR_PERMANENT;
    }
    return st;
}

void broker_close(broker *b)
{
    if (!b)
        return;
    broker_drop(b);
    for (int i = 0; i < b->nnodes; i++)
        broker_url_free(&b->nodes[i]);
    free(b->nodes);
    free(b->name);
    free(b->settled);
    free(b);
}

op_status broker_connect(broker **out, const broker_options *opts)
{
    assert(out && opts);
    broker *b = mem_calloc(1, sizeof *b);
    *out = NULL;
    b->name = mem_strdup(opts->name ? opts->name : "orderpipe");
    b->confirms = opts->confirms;
    b->heartbeat_s = opts->heartbeat_s > 0 ? opts->heartbeat_s : 30;
    b->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 2000;
    if (broker_parse_urls(b, opts->urls) != OP_OK) {
        fprintf(stderr, "broker: %s\n", b->error);
        broker_close(b);
        return OP_ERR_PERMANENT;
    }
    *out = b;
    return broker_reconnect(b);
}

op_status broker_set_rpc_timeout(broker *b, int timeout_ms)
{
    op_status st = broker_check_open(b);
    if (st != OP_OK)
        return st;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (amqp_set_rpc_timeout(b->conn, &tv) != AMQP_STATUS_OK) {
        broker_set_error(b, "setting the RPC timeout");
        return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}
