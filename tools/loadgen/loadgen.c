/* orderpipe-loadgen: sends orders to the intake over HTTP, for the demo, the end-to-end tests
 * and the benchmarks. A libevent client with C keep-alive connections, each with one request in
 * flight, optionally paced to a fixed rate. It writes the ids of accepted orders and the
 * (Idempotency-Key, order id) pairs it saw, and prints one JSON line of figures.
 * SIGTERM or SIGINT ends the run early but cleanly: no new order is sent, the ones in flight are
 * answered, and the figures cover what was sent, so a test can drive load for as long as its
 * steps take on the machine at hand and then stop it. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "config.h"
#include "clock.h"
#include "mem.h"
#include "samples.h"

typedef enum {
    MIX_OK, MIX_OOS, MIX_DECLINE, MIX_FLAKY, MIX_HOT, MIX_DUP,
    MIX_PENDING, MIX_PEND_FAIL, MIX_PEND_NEVER, MIX_PEND_LATE, MIX_COUNT
} mix_kind;
static const char *const mix_names[MIX_COUNT] = {"ok", "oos", "decline", "flaky", "hot", "dup",
                                                 "pending", "pend_fail", "pend_never", "pend_late"};
/* The payment token of each kind (docs/design.md, payment providers). */
static const char *const mix_tokens[MIX_COUNT] = {
    [MIX_DECLINE] = "tok_decline", [MIX_FLAKY] = "tok_flaky", [MIX_PENDING] = "tok_pending",
    [MIX_PEND_FAIL] = "tok_pending_fail", [MIX_PEND_NEVER] = "tok_pending_never",
    [MIX_PEND_LATE] = "tok_pending_late",
};
#define LOADGEN_MAX_METHODS 8

typedef struct loadgen_config {
    const char *url;
    const char *api_key;
    const char *accepted_path;
    const char *idem_path;
    long orders;
    long rate;        /* orders/s; 0 = as fast as the connections go */
    long connections;
    long skus;        /* ordinary SKUs SKU-0001..SKU-n */
    int weights[MIX_COUNT];
    long seed;
    char *methods[LOADGEN_MAX_METHODS]; /* payment.method names taken in turn; none: omitted */
    int n_methods;
} loadgen_config;

typedef struct loadgen_conn loadgen_conn;

typedef struct loadgen {
    loadgen_config cfg;
    struct event_base *base;
    struct evhttp_connection **conns;
    char host[256];
    int port;
    long issued, completed;
    long status_count[600];
    long transport_errors;
    double *latency_ms;
    long latency_n;
    FILE *accepted, *idem;
    double start_ms;    /* clock_now_ms_f at the first request */
    struct event *pacer;
    struct event *stop_signals[2];
    long idle_conns;
    int *idle;          /* stack of idle connection indexes */
    unsigned rng;
    char last_key[64];
    char *last_body;    /* the body sent with last_key: a dup is a retry, the same request */
} loadgen;

typedef struct loadgen_req {
    loadgen *lg;
    int conn;
    double sent_ms;     /* clock_now_ms_f when it left */
    char key[64];
} loadgen_req;

static unsigned loadgen_rand(loadgen *lg)
{
    lg->rng = lg->rng * 1103515245u + 12345u;
    return lg->rng >> 8;
}

static mix_kind loadgen_pick(loadgen *lg)
{
    int total = 0;
    for (int i = 0; i < MIX_COUNT; i++)
        total += lg->cfg.weights[i];
    int r = (int)(loadgen_rand(lg) % (unsigned)total);
    for (int i = 0; i < MIX_COUNT; i++) {
        if (r < lg->cfg.weights[i])
            return (mix_kind)i;
        r -= lg->cfg.weights[i];
    }
    return MIX_OK;
}

/* The body of order number n of kind k; the caller frees it. */
static char *loadgen_body(loadgen *lg, mix_kind k, long n)
{
    char sku[32];
    const char *token = mix_tokens[k] ? mix_tokens[k] : "tok_ok";
    int qty = 1 + (int)(loadgen_rand(lg) % 3);
    switch (k) {
    case MIX_OOS: snprintf(sku, sizeof sku, "SKU-OOS"); break;
    case MIX_HOT: snprintf(sku, sizeof sku, "HOT-1"); qty = 1; break;
    default: snprintf(sku, sizeof sku, "SKU-%04ld", 1 + (long)(loadgen_rand(lg) % (unsigned)lg->cfg.skus));
    }
    json_t *lines = json_array();
    json_array_append_new(lines, json_pack("{ss si si}", "sku", sku, "quantity", qty,
                                           "unit_price", 100 + (int)(loadgen_rand(lg) % 5000)));
    /* Every fourth ordinary order has a second line, to exercise all-or-nothing reservation. */
    if ((k == MIX_OK || k == MIX_OOS) && n % 4 == 0) {
        char sku2[32];
        snprintf(sku2, sizeof sku2, "SKU-%04ld", 1 + (long)(loadgen_rand(lg) % (unsigned)lg->cfg.skus));
        if (strcmp(sku2, sku) != 0)
            json_array_append_new(lines, json_pack("{ss si si}", "sku", sku2, "quantity", 1,
                                                   "unit_price", 250));
    }
    char customer[32];
    snprintf(customer, sizeof customer, "c-%ld", n % 997);
    json_t *order = json_pack("{ss ss so s{ss} s{ss}}", "customer_id", customer, "currency", "EUR",
                              "lines", lines, "payment", "token", token, "notify", "email",
                              "buyer@example.com");
    if (lg->cfg.n_methods > 0)
        json_object_set_new(json_object_get(order, "payment"), "method",
                            json_string(lg->cfg.methods[n % lg->cfg.n_methods]));
    char *body = json_dumps(order, JSON_COMPACT);
    json_decref(order);
    return body;
}

static void loadgen_issue(loadgen *lg, int conn);

static void loadgen_on_response(struct evhttp_request *req, void *arg)
{
    loadgen_req *r = arg;
    loadgen *lg = r->lg;
    double lat = clock_now_ms_f() - r->sent_ms;
    lg->completed++;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code <= 0 || code >= 600) {
        lg->transport_errors++;
    } else {
        lg->status_count[code]++;
        lg->latency_ms[lg->latency_n++] = lat;
    }
    if (code == 202) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        char *text = mem_alloc(len + 1);
        evbuffer_remove(in, text, len);
        text[len] = '\0';
        json_t *resp = json_loads(text, 0, NULL);
        const char *id = json_string_value(json_object_get(resp, "order_id"));
        if (id) {
            if (lg->accepted)
                fprintf(lg->accepted, "%s\n", id);
            if (lg->idem)
                fprintf(lg->idem, "%s %s\n", r->key, id);
        }
        json_decref(resp);
        free(text);
    }
    int conn = r->conn;
    free(r);
    if (lg->completed >= lg->cfg.orders) {
        event_base_loopexit(lg->base, NULL);
        return;
    }
    if (lg->cfg.rate > 0)
        lg->idle[lg->idle_conns++] = conn;
    else
        loadgen_issue(lg, conn);
}

static void loadgen_issue(loadgen *lg, int conn)
{
    if (lg->issued >= lg->cfg.orders)
        return;
    long n = lg->issued++;
    mix_kind k = loadgen_pick(lg);
    loadgen_req *r = mem_calloc(1, sizeof *r);
    r->lg = lg;
    r->conn = conn;
    char *body;
    /* A dup repeats the previous request whole: the same key with another body would be
     * refused 422 idempotency_key_reused. */
    if (k == MIX_DUP && lg->last_key[0] && lg->last_body) {
        snprintf(r->key, sizeof r->key, "%s", lg->last_key);
        body = mem_strdup(lg->last_body);
    } else {
        snprintf(r->key, sizeof r->key, "lg-%ld-%ld", lg->cfg.seed, n);
        snprintf(lg->last_key, sizeof lg->last_key, "%s", r->key);
        body = loadgen_body(lg, k == MIX_DUP ? MIX_OK : k, n);
        free(lg->last_body);
        lg->last_body = body ? mem_strdup(body) : NULL;
    }
    if (!body) {
        lg->transport_errors++;
        lg->completed++;
        free(r);
        return;
    }
    struct evhttp_request *req = evhttp_request_new(loadgen_on_response, r);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char auth[300];
    snprintf(auth, sizeof auth, "Bearer %s", lg->cfg.api_key);
    evhttp_add_header(h, "Host", lg->host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Authorization", auth);
    evhttp_add_header(h, "Idempotency-Key", r->key);
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    free(body);
    r->sent_ms = clock_now_ms_f();
    if (evhttp_make_request(lg->conns[conn], req, EVHTTP_REQ_POST, "/v1/orders") != 0) {
        lg->transport_errors++;
        lg->completed++;
        free(r);
    }
}

/* SIGTERM/SIGINT: the run ends with the orders already sent. */
static void loadgen_on_stop(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    loadgen *lg = arg;
    lg->cfg.orders = lg->issued;
    if (lg->completed >= lg->issued)
        event_base_loopexit(lg->base, NULL);
}

/* Paced mode: every tick issues the orders due by now on idle connections. */
static void loadgen_on_pace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    loadgen *lg = arg;
    double elapsed = clock_now_ms_f() - lg->start_ms;
    long due = (long)(elapsed * (double)lg->cfg.rate / 1000.0) + 1;
    if (due > lg->cfg.orders)
        due = lg->cfg.orders;
    while (lg->issued < due && lg->idle_conns > 0)
        loadgen_issue(lg, lg->idle[--lg->idle_conns]);
}

static void loadgen_usage(FILE *out)
{
    fprintf(out,
            "usage: orderpipe-loadgen [options]\n"
            "Sends orders to the intake and prints one JSON line of figures.\n\n"
            "  --url URL            intake base URL [INTAKE_URL]\n"
            "  --api-key KEY        API key [ORDERPIPE_API_KEY]\n"
            "  --orders N           orders to send (default 1000); SIGTERM or SIGINT stops\n"
            "                       sooner, after the answers to the orders in flight\n"
            "  --rate R             orders/s, 0 = as fast as possible (default 0)\n"
            "  --connections C      keep-alive connections (default 32)\n"
            "  --skus N             ordinary SKUs SKU-0001..SKU-N (default 50)\n"
            "  --mix k=w,...        weights of kinds ok, oos (SKU-OOS), decline, flaky, hot\n"
            "                       (HOT-1), dup (repeat the previous Idempotency-Key),\n"
            "                       pending, pend_fail, pend_never, pend_late (the provider's\n"
            "                       tok_pending* tokens) (default ok=1)\n"
            "  --methods M,...      payment.method of each order, taken in turn (default:\n"
            "                       none sent, the intake's default channel)\n"
            "  --accepted FILE      append the ids of accepted orders\n"
            "  --idempotency FILE   append 'KEY ORDER_ID' per accepted response\n"
            "  --seed N             varies keys and choices between runs (default: time)\n");
}

static int loadgen_parse_mix(loadgen_config *c, const char *spec)
{
    memset(c->weights, 0, sizeof c->weights);
    char *copy = mem_strdup(spec), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        long w;
        int found = 0;
        if (!eq || config_parse_long(eq + 1, 0, 1000000, &w) != OP_OK) { rc = -1; break; }
        *eq = '\0';
        for (int i = 0; i < MIX_COUNT; i++)
            if (strcmp(tok, mix_names[i]) == 0) { c->weights[i] = (int)w; found = 1; }
        if (!found) { rc = -1; break; }
    }
    free(copy);
    int total = 0;
    for (int i = 0; i < MIX_COUNT; i++) total += c->weights[i];
    return rc == 0 && total > 0 ? 0 : -1;
}

/* Splits "card,wallet" into c->methods: pointers into spec, which the run keeps to its end. */
static int loadgen_parse_methods(loadgen_config *c, char *spec)
{
    char *save = NULL;
    c->n_methods = 0;
    for (char *m = strtok_r(spec, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        if (c->n_methods == LOADGEN_MAX_METHODS)
            return -1;
        c->methods[c->n_methods++] = m;
    }
    return c->n_methods > 0 ? 0 : -1;
}

static int loadgen_parse(loadgen_config *c, int argc, char **argv)
{
    c->url = config_env_str("INTAKE_URL", "http://127.0.0.1:38080");
    c->api_key = config_env_str("ORDERPIPE_API_KEY", NULL);
    c->orders = 1000;
    c->connections = 32;
    c->skus = 50;
    c->weights[MIX_OK] = 1;
    c->seed = (long)time(NULL);
    static const struct option opts[] = {
        {"url", 1, NULL, 'u'}, {"api-key", 1, NULL, 'k'}, {"orders", 1, NULL, 'n'},
        {"rate", 1, NULL, 'r'}, {"connections", 1, NULL, 'c'}, {"skus", 1, NULL, 's'},
        {"mix", 1, NULL, 'm'}, {"accepted", 1, NULL, 'a'}, {"idempotency", 1, NULL, 'i'},
        {"seed", 1, NULL, 'S'}, {"methods", 1, NULL, 'M'}, {"help", 0, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (o) {
        case 'u': c->url = optarg; break;
        case 'k': c->api_key = optarg; break;
        case 'n': bad = config_parse_long(optarg, 1, 100000000, &c->orders) != OP_OK; break;
        case 'r': bad = config_parse_long(optarg, 0, 10000000, &c->rate) != OP_OK; break;
        case 'c': bad = config_parse_long(optarg, 1, 4096, &c->connections) != OP_OK; break;
        case 's': bad = config_parse_long(optarg, 1, 9999, &c->skus) != OP_OK; break;
        case 'm': bad = loadgen_parse_mix(c, optarg); break;
        case 'a': c->accepted_path = optarg; break;
        case 'i': c->idem_path = optarg; break;
        case 'S': bad = config_parse_long(optarg, 0, 1L << 40, &c->seed) != OP_OK; break;
        case 'M': bad = loadgen_parse_methods(c, mem_strdup(optarg)); break;
        case 'h': loadgen_usage(stdout); return 1;
        default: loadgen_usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "orderpipe-loadgen: bad option value '%s' (see --help)\n", optarg);
            return 2;
        }
    }
    if (!c->api_key) {
        fprintf(stderr, "orderpipe-loadgen: --api-key or ORDERPIPE_API_KEY is required\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    loadgen lg = {0};
    signal(SIGPIPE, SIG_IGN); /* a connection the server closed is counted, not fatal */
    int rc = loadgen_parse(&lg.cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct evhttp_uri *uri = evhttp_uri_parse(lg.cfg.url);
    if (!uri || !evhttp_uri_get_host(uri)) {
        fprintf(stderr, "orderpipe-loadgen: bad --url '%s'\n", lg.cfg.url);
        return 2;
    }
    snprintf(lg.host, sizeof lg.host, "%s", evhttp_uri_get_host(uri));
    lg.port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
    evhttp_uri_free(uri);

    lg.rng = (unsigned)lg.cfg.seed;
    lg.base = event_base_new();
    lg.latency_ms = mem_calloc((size_t)lg.cfg.orders, sizeof(double));
    lg.conns = mem_calloc((size_t)lg.cfg.connections, sizeof *lg.conns);
    lg.idle = mem_calloc((size_t)lg.cfg.connections, sizeof *lg.idle);
    if (lg.cfg.accepted_path && !(lg.accepted = fopen(lg.cfg.accepted_path, "a"))) {
        perror(lg.cfg.accepted_path);
        return 2;
    }
    if (lg.cfg.idem_path && !(lg.idem = fopen(lg.cfg.idem_path, "a"))) {
        perror(lg.cfg.idem_path);
        return 2;
    }
    /* Line-buffered: a test counts the accepted ids while the run goes on. */
    if (lg.accepted)
        setvbuf(lg.accepted, NULL, _IOLBF, 0);
    static const int stop_signals[2] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        lg.stop_signals[i] = evsignal_new(lg.base, stop_signals[i], loadgen_on_stop, &lg);
        event_add(lg.stop_signals[i], NULL);
    }
    for (long i = 0; i < lg.cfg.connections; i++) {
        lg.conns[i] = evhttp_connection_base_new(lg.base, NULL, lg.host, (unsigned short)lg.port);
        evhttp_connection_set_timeout(lg.conns[i], 30);
    }
    lg.start_ms = clock_now_ms_f();
    if (lg.cfg.rate > 0) {
        for (long i = 0; i < lg.cfg.connections; i++)
            lg.idle[lg.idle_conns++] = (int)i;
        lg.pacer = event_new(lg.base, -1, EV_PERSIST, loadgen_on_pace, &lg);
        struct timeval tick = {0, 1000};
        event_add(lg.pacer, &tick);
    } else {
        for (long i = 0; i < lg.cfg.connections && lg.issued < lg.cfg.orders; i++)
            loadgen_issue(&lg, (int)i);
    }
    event_base_dispatch(lg.base);
    double secs = (clock_now_ms_f() - lg.start_ms) / 1e3;

    samples_sort(lg.latency_ms, lg.latency_n);
    json_t *status = json_object();
    for (int s = 0; s < 600; s++)
        if (lg.status_count[s]) {
            char k[16];
            snprintf(k, sizeof k, "%d", s);
            json_object_set_new(status, k, json_integer(lg.status_count[s]));
        }
    json_t *out = json_pack(
        "{si si so si sf sf s{sf sf sf sf}}", "sent", (int)lg.completed, "accepted",
        (int)lg.status_count[202], "status", status, "transport_errors", (int)lg.transport_errors,
        "seconds", secs, "accepted_per_s", secs > 0 ? (double)lg.status_count[202] / secs : 0.0,
        "latency_ms", "p50", samples_percentile(lg.latency_ms, lg.latency_n, 50), "p95",
        samples_percentile(lg.latency_ms, lg.latency_n, 95), "p99",
        samples_percentile(lg.latency_ms, lg.latency_n, 99), "max",
        lg.latency_n ? lg.latency_ms[lg.latency_n - 1] : 0.0);
    /* Its own CPU time, so a benchmark can count it: the generator has exited by the time the
     * benchmark reads the other processes' times. */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        json_object_set_new(out, "cpu_ms",
                            json_real((double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                                      (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3));
    char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(out);

    if (lg.accepted) fclose(lg.accepted);
    if (lg.idem) fclose(lg.idem);
    for (long i = 0; i < lg.cfg.connections; i++)
        evhttp_connection_free(lg.conns[i]);
    if (lg.pacer) event_free(lg.pacer);
    for (int i = 0; i < 2; i++)
        event_free(lg.stop_signals[i]);
    event_base_free(lg.base);
    free(lg.conns);
    free(lg.idle);
    free(lg.latency_ms);
    free(lg.last_body);
    return lg.transport_errors ? 1 : 0;
}
