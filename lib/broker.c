/* broker: one AMQP connection and channel on rabbitmq-c (see broker.h). */
#include "broker.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "broker_url.h"
#include "log.h"
#include "redact.h"
#include "topology.h"
#include "utf8.h"

#define BROKER_CHANNEL 1

struct broker {
    /* configuration, copied */
    broker_url *nodes;           /* owned; label: host:port/vhost, no password */
    int nnodes;
    int current;
    char *name;
    bool confirms;
    int heartbeat_s;
    int connect_timeout_ms;

    amqp_connection_state_t conn;
    bool open;
    uint64_t reconnects;
    bool connected_once;

    /* publisher confirms: sequence numbers (settled, published] are outstanding */
    uint64_t published;
    uint64_t settled_upto;       /* every seq <= this is settled */
    uint8_t *settled;            /* ring of flags for seqs above settled_upto */
    size_t ring_size;
    bool nacked;                 /* since the last broker_wait_confirms */
    bool returned_pending;       /* a basic.return whose ack has not arrived yet */

    char error[512];
    char tls_error[256];         /* why the peer's certificate was refused, during one connect */
};

static void broker_set_error(broker *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void broker_set_error(broker *b, const char *fmt, ...)
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

/* Describes a failed RPC reply in b->error; returns OP_ERR_TRANSIENT. Server channel or
 * connection exceptions and library errors all leave the channel unusable. */
static op_status broker_reply_error(broker *b, amqp_rpc_reply_t r, const char *what)
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

/* Hands rabbitmq-c's decoding memory back for reuse. Every frame the library decodes (a
 * confirm, a basic.return, an RPC reply such as queue.declare-ok) is carved out of a per-channel
 * pool that only amqp_maybe_release_buffers recycles: without this call the pool grows by each
 * frame for the life of the connection (issue 19: +9.5 KB/s at 300 confirms/s, +0.5 KB/s from
 * an idle intake's backpressure queue depths). The library skips the release while frames are
 * queued (amqp_release_buffers_ok), so it is always safe to call; it invalidates every pointer
 * into frames decoded before it, so callers copy what they need first and call it between
 * frames, never while one is being read. */
static void broker_release(broker *b)
{
    if (b->conn)
        amqp_maybe_release_buffers(b->conn);
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

/* Any failure of the socket or protocol: the connection is done for. */
static op_status broker_fail(broker *b)
{
    if (b->conn)
        amqp_destroy_connection(b->conn);
    b->conn = NULL;
    b->open = false;
    return OP_ERR_TRANSIENT;
}

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
static op_status broker_tls_setup(broker *b, amqp_socket_t *sock, const broker_url *u)
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
static void broker_open_error(broker *b, const broker_url *u, int rc)
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

static op_status broker_open_node(broker *b, int i)
{
    broker_url *u = &b->nodes[i];
    struct amqp_connection_info *ci = &u->ci;
    b->tls_error[0] = '\0';
    b->conn = amqp_new_connection();
    amqp_socket_t *sock = NULL;
    if (b->conn)
        sock = u->tls ? amqp_ssl_socket_new(b->conn) : amqp_tcp_socket_new(b->conn);
    if (!sock) {
        broker_set_error(b, "out of memory creating the connection");
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
    /* consumer_cancel_notify: without it the broker stops delivering to a consumer whose queue
     * was deleted without telling it, and the consumer waits forever (merged with the library's
     * own capabilities). */
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
    amqp_rpc_reply_t r =
        amqp_login_with_properties(b->conn, ci->vhost, 0, 131072, b->heartbeat_s, &props,
                                   AMQP_SASL_METHOD_PLAIN, ci->user, ci->password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        broker_reply_error(b, r, u->label);
        return broker_fail(b);
    }
    b->open = true;
    amqp_channel_open(b->conn, BROKER_CHANNEL);
    if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), "opening the channel") != OP_OK)
        return broker_fail(b);
    if (b->confirms) {
        amqp_confirm_select(b->conn, BROKER_CHANNEL);
        if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), "confirm.select") != OP_OK)
            return broker_fail(b);
    }
    broker_release(b); /* the login's and channel.open's replies */
    b->current = i;
    b->published = 0;
    b->settled_upto = 0;
    b->nacked = false;
    b->returned_pending = false;
    memset(b->settled, 0, b->ring_size);
    return OP_OK;
}

op_status broker_reconnect(broker *b)
{
    if (!b)
        return OP_ERR_PERMANENT;
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
    char *copy = strdup(urls), *save = NULL;
    int cap = 1;
    for (const char *p = urls; *p; p++)
        cap += *p == ',';
    b->nodes = calloc((size_t)cap, sizeof *b->nodes);
    if (!copy || !b->nodes) {
        free(copy);
        broker_set_error(b, "out of memory");
        return OP_ERR_PERMANENT;
    }
    op_status st = OP_OK;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
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
    broker *b = calloc(1, sizeof *b);
    *out = NULL;
    if (!b)
        return OP_ERR_TRANSIENT;
    b->name = strdup(opts->name ? opts->name : "orderpipe");
    b->confirms = opts->confirms;
    b->heartbeat_s = opts->heartbeat_s > 0 ? opts->heartbeat_s : 30;
    b->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 2000;
    b->ring_size = 1024;
    b->settled = calloc(b->ring_size, 1);
    if (!opts->urls || broker_parse_urls(b, opts->urls) != OP_OK) {
        if (!opts->urls)
            broker_set_error(b, "no AMQP URL given");
        fprintf(stderr, "broker: %s\n", b->error);
        broker_close(b);
        return OP_ERR_PERMANENT;
    }
    *out = b;
    return broker_reconnect(b);
}

/* --- headers ------------------------------------------------------------------------------- */

/* Builds an AMQP table from a flat JSON object; entries point into `headers`' strings. The
 * caller frees t->entries. */
static void broker_table_from_json(json_t *headers, amqp_table_t *t)
{
    t->num_entries = 0;
    t->entries = NULL;
    if (!json_is_object(headers) || json_object_size(headers) == 0)
        return;
    t->entries = calloc(json_object_size(headers), sizeof *t->entries);
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

static json_t *broker_json_from_field(const amqp_field_value_t *f)
{
    switch (f->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return json_stringn_nocheck(f->value.bytes.bytes, f->value.bytes.len);
    case AMQP_FIELD_KIND_BOOLEAN: return json_boolean(f->value.boolean);
    case AMQP_FIELD_KIND_I8: return json_integer(f->value.i8);
    case AMQP_FIELD_KIND_U8: return json_integer(f->value.u8);
    case AMQP_FIELD_KIND_I16: return json_integer(f->value.i16);
    case AMQP_FIELD_KIND_U16: return json_integer(f->value.u16);
    case AMQP_FIELD_KIND_I32: return json_integer(f->value.i32);
    case AMQP_FIELD_KIND_U32: return json_integer(f->value.u32);
    case AMQP_FIELD_KIND_I64: return json_integer(f->value.i64);
    case AMQP_FIELD_KIND_U64: return json_integer((json_int_t)f->value.u64);
    case AMQP_FIELD_KIND_TIMESTAMP: return json_integer((json_int_t)f->value.u64);
    case AMQP_FIELD_KIND_F32: return json_real(f->value.f32);
    case AMQP_FIELD_KIND_F64: return json_real(f->value.f64);
    default: return NULL; /* arrays and tables (x-death) are the broker's, not ours */
    }
}

static json_t *broker_json_from_table(const amqp_table_t *t)
{
    json_t *o = json_object();
    for (int i = 0; i < t->num_entries; i++) {
        json_t *v = broker_json_from_field(&t->entries[i].value);
        if (!v)
            continue;
        char key[256];
        size_t n = t->entries[i].key.len < sizeof key - 1 ? t->entries[i].key.len : sizeof key - 1;
        memcpy(key, t->entries[i].key.bytes, n);
        key[n] = '\0';
        json_object_set_new(o, key, v);
    }
    return o;
}

/* --- topology ------------------------------------------------------------------------------ */

static op_status broker_declare_queue(broker *b, const char *name, amqp_table_t args)
{
    amqp_queue_declare(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
    char what[200];
    snprintf(what, sizeof what, "declaring queue %s", name);
    if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), what) != OP_OK)
        return broker_fail(b);
    broker_release(b);
    return OP_OK;
}

op_status broker_declare_quorum_queue(broker *b, const char *name)
{
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
    amqp_table_entry_t e = {.key = amqp_cstring_bytes("x-queue-type"),
                            .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                      .value.bytes = amqp_cstring_bytes("quorum")}};
    amqp_table_t args = {.num_entries = 1, .entries = &e};
    return broker_declare_queue(b, name, args);
}

op_status broker_declare_topology(broker *b)
{
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
    amqp_exchange_declare(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(BROKER_EVENTS_EXCHANGE),
                          amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), "declaring the events exchange") != OP_OK)
        return broker_fail(b);

    amqp_table_entry_t quorum_e = {.key = amqp_cstring_bytes("x-queue-type"),
                                   .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                             .value.bytes = amqp_cstring_bytes("quorum")}};
    amqp_table_t quorum = {.num_entries = 1, .entries = &quorum_e};
    for (const topology_queue *q = topology_queues; q->name; q++) {
        if (broker_declare_queue(b, q->name, quorum) != OP_OK)
            return OP_ERR_TRANSIENT;
        for (int k = 0; k < TOPOLOGY_MAX_KEYS && q->keys[k]; k++) {
            amqp_queue_bind(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(q->name),
                            amqp_cstring_bytes(BROKER_EVENTS_EXCHANGE),
                            amqp_cstring_bytes(q->keys[k]), amqp_empty_table);
            if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), "binding a queue") != OP_OK)
                return broker_fail(b);
            broker_release(b);
        }
        char name[128];
        /* Retry tiers wait out their TTL, then dead-letter straight back to the work queue
         * through the default exchange, so a retry reaches only the consumer that failed. They
         * are quorum queues like the rest, so a waiting retry survives a node's loss and the
         * topology can be declared while any majority of a cluster is up; dead-lettering is
         * at-least-once (which needs overflow reject-publish): a retry is never dropped on its
         * way back. */
        for (int tier = 0; tier < TOPOLOGY_RETRY_TIERS; tier++) {
            amqp_table_entry_t e[6] = {
                quorum_e,
                {.key = amqp_cstring_bytes("x-message-ttl"),
                 .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = topology_retry_delay_ms(tier)}},
                {.key = amqp_cstring_bytes("x-dead-letter-exchange"),
                 .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("")}},
                {.key = amqp_cstring_bytes("x-dead-letter-routing-key"),
                 .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(q->name)}},
                {.key = amqp_cstring_bytes("x-dead-letter-strategy"),
                 .value = {.kind = AMQP_FIELD_KIND_UTF8,
                           .value.bytes = amqp_cstring_bytes("at-least-once")}},
                {.key = amqp_cstring_bytes("x-overflow"),
                 .value = {.kind = AMQP_FIELD_KIND_UTF8,
                           .value.bytes = amqp_cstring_bytes("reject-publish")}},
            };
            amqp_table_t args = {.num_entries = 6, .entries = e};
            if (broker_declare_queue(b, topology_retry_queue(q->name, tier, name, sizeof name),
                                     args) != OP_OK)
                return OP_ERR_TRANSIENT;
        }
        if (broker_declare_queue(b, topology_dlq(q->name, name, sizeof name), quorum) != OP_OK)
            return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}

/* --- publishing and confirms --------------------------------------------------------------- */

op_status broker_publish(broker *b, const broker_message *m, uint64_t *seq)
{
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
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
    if (b->confirms) {
        b->published++;
        /* Grow the ring so every outstanding sequence number has a flag. */
        if (b->published - b->settled_upto >= b->ring_size) {
            size_t old = b->ring_size, nsize = old * 2;
            uint8_t *ring = calloc(nsize, 1);
            for (uint64_t s = b->settled_upto + 1; s < b->published; s++)
                ring[s % nsize] = b->settled[s % old];
            free(b->settled);
            b->settled = ring;
            b->ring_size = nsize;
        }
        b->settled[b->published % b->ring_size] = 0;
    }
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

/* Reads one frame (waiting up to tv; NULL = not at all beyond what is buffered) and handles it.
 * Returns OP_OK when a frame was handled, OP_TIMEOUT when none came, OP_ERR_* on failure. */
static op_status broker_read_confirm(broker *b, struct timeval *tv, broker_confirm_cb cb, void *arg)
{
    /* The frame read last has been handled and nothing points into it any more. */
    broker_release(b);
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(b->conn, &f, tv);
    if (rc == AMQP_STATUS_TIMEOUT)
        return OP_TIMEOUT;
    if (rc != AMQP_STATUS_OK) {
        broker_set_error(b, "reading confirms: %s", amqp_error_string2(rc));
        return broker_fail(b);
    }
    if (f.frame_type != AMQP_FRAME_METHOD)
        return OP_OK;
    switch (f.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = f.payload.method.decoded;
        bool ok = !b->returned_pending;
        b->returned_pending = false;
        if (!ok)
            b->nacked = true;
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
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_basic_return_t *r = f.payload.method.decoded;
        broker_set_error(b, "message returned unroutable: %u %.*s", r->reply_code,
                         (int)r->reply_text.len, (char *)r->reply_text.bytes);
        b->returned_pending = true;
        amqp_message_t msg;
        amqp_rpc_reply_t rr = amqp_read_message(b->conn, f.channel, &msg, 0);
        if (rr.reply_type != AMQP_RESPONSE_NORMAL)
            return broker_fail(b);
        amqp_destroy_message(&msg);
        return OP_OK;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *c = f.payload.method.decoded;
        broker_set_error(b, "server closed the channel: %u %.*s", c->reply_code,
                         (int)c->reply_text.len, (char *)c->reply_text.bytes);
        return broker_fail(b);
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_t *c = f.payload.method.decoded;
        broker_set_error(b, "server closed the connection: %u %.*s", c->reply_code,
                         (int)c->reply_text.len, (char *)c->reply_text.bytes);
        return broker_fail(b);
    }
    default:
        return OP_OK;
    }
}

op_status broker_wait_confirms(broker *b, int timeout_ms)
{
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (b->settled_upto < b->published) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = timeout_ms - ((now.tv_sec - start.tv_sec) * 1000 +
                                  (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0) {
            broker_set_error(b, "%llu publishes not confirmed within %d ms",
                             (unsigned long long)(b->published - b->settled_upto), timeout_ms);
            return OP_TIMEOUT;
        }
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        op_status st = broker_read_confirm(b, &tv, NULL, NULL);
        if (st != OP_OK && st != OP_TIMEOUT)
            return st;
    }
    bool nacked = b->nacked;
    b->nacked = false;
    if (nacked) {
        if (!strstr(b->error, "returned"))
            broker_set_error(b, "the broker refused (nacked) a publish");
        return OP_ERR_PERMANENT;
    }
    return OP_OK;
}

op_status broker_poll_confirms(broker *b, broker_confirm_cb cb, void *arg)
{
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
    /* Drain the socket and rabbitmq-c's own buffer: a zero timeout reads what is there. */
    for (;;) {
        struct timeval zero = {0, 0};
        op_status st = broker_read_confirm(b, &zero, cb, arg);
        if (st == OP_TIMEOUT)
            return OP_OK;
        if (st != OP_OK)
            return st;
    }
}

/* --- consuming ----------------------------------------------------------------------------- */

op_status broker_consume(broker *b, const char *queue, uint16_t prefetch)
{
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
    amqp_basic_qos(b->conn, BROKER_CHANNEL, 0, prefetch, 0);
    if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), "basic.qos") != OP_OK)
        return broker_fail(b);
    amqp_basic_consume(b->conn, BROKER_CHANNEL, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0,
                       0, amqp_empty_table);
    char what[200];
    snprintf(what, sizeof what, "consuming %s", queue);
    if (broker_reply_error(b, amqp_get_rpc_reply(b->conn), what) != OP_OK)
        return broker_fail(b);
    broker_release(b);
    return OP_OK;
}

static char *broker_dup_bytes(amqp_bytes_t v)
{
    char *s = malloc(v.len + 1);
    if (s) {
        memcpy(s, v.bytes, v.len);
        s[v.len] = '\0';
    }
    return s;
}

op_status broker_next(broker *b, int timeout_ms, broker_delivery *out)
{
    memset(out, 0, sizeof *out);
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return OP_ERR_TRANSIENT;
    }
    amqp_envelope_t env;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    broker_release(b);
    amqp_rpc_reply_t r = amqp_consume_message(b->conn, &env, timeout_ms < 0 ? NULL : &tv, 0);
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        return OP_TIMEOUT;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        /* A method other than a delivery: only a close can come to a consuming channel. */
        amqp_frame_t f;
        struct timeval zero = {0, 0};
        if (amqp_simple_wait_frame_noblock(b->conn, &f, &zero) == AMQP_STATUS_OK &&
            f.frame_type == AMQP_FRAME_METHOD &&
            (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
             f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)) {
            broker_set_error(b, "server closed the consumer (queue deleted or node down)");
            return broker_fail(b);
        }
        if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_CANCEL_METHOD) {
            broker_set_error(b, "the broker cancelled the consumer (its queue was deleted)");
            return broker_fail(b);
        }
        return OP_TIMEOUT;
    }
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        broker_reply_error(b, r, "consuming");
        return broker_fail(b);
    }
    amqp_basic_properties_t *p = &env.message.properties;
    out->tag = env.delivery_tag;
    out->redelivered = env.redelivered;
    out->exchange = broker_dup_bytes(env.exchange);
    out->routing_key = broker_dup_bytes(env.routing_key);
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        out->message_id = broker_dup_bytes(p->message_id);
    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        out->correlation_id = broker_dup_bytes(p->correlation_id);
    if (p->_flags & AMQP_BASIC_TYPE_FLAG)
        out->type = broker_dup_bytes(p->type);
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        out->content_type = broker_dup_bytes(p->content_type);
    out->headers = (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? broker_json_from_table(&p->headers)
                                                         : json_object();
    out->body = broker_dup_bytes(env.message.body);
    out->len = env.message.body.len;
    amqp_destroy_envelope(&env);
    return OP_OK;
}

void broker_delivery_free(broker_delivery *d)
{
    if (!d)
        return;
    free(d->exchange);
    free(d->routing_key);
    free(d->message_id);
    free(d->correlation_id);
    free(d->type);
    free(d->content_type);
    free(d->body);
    json_decref(d->headers);
    memset(d, 0, sizeof *d);
}

op_status broker_ack(broker *b, uint64_t tag, bool multiple)
{
    if (!broker_is_open(b))
        return OP_ERR_TRANSIENT;
    int rc = amqp_basic_ack(b->conn, BROKER_CHANNEL, tag, multiple);
    if (rc != AMQP_STATUS_OK) {
        broker_set_error(b, "ack: %s", amqp_error_string2(rc));
        return broker_fail(b);
    }
    return OP_OK;
}

op_status broker_reject(broker *b, uint64_t tag, bool requeue)
{
    if (!broker_is_open(b))
        return OP_ERR_TRANSIENT;
    int rc = amqp_basic_reject(b->conn, BROKER_CHANNEL, tag, requeue);
    if (rc != AMQP_STATUS_OK) {
        broker_set_error(b, "reject: %s", amqp_error_string2(rc));
        return broker_fail(b);
    }
    return OP_OK;
}

long broker_queue_depth(broker *b, const char *queue)
{
    if (!broker_is_open(b)) {
        broker_set_error(b, "not connected");
        return -1;
    }
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

op_status broker_cork(broker *b, bool cork)
{
    if (!broker_is_open(b))
        return OP_ERR_TRANSIENT;
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

op_status broker_set_rpc_timeout(broker *b, int timeout_ms)
{
    if (!broker_is_open(b))
        return OP_ERR_TRANSIENT;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (amqp_set_rpc_timeout(b->conn, &tv) != AMQP_STATUS_OK) {
        broker_set_error(b, "setting the RPC timeout");
        return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}
