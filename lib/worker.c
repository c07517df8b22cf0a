/* worker: the consume loop of every saga worker (see worker.h). */
#include "worker.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "inbox.h"
#include "jsonschema.h"
#include "outbox.h"
#include "topology.h"
#include "worker_metrics.h"

/* The one process-wide flag a signal handler may set; everything else lives in struct worker. */
static volatile sig_atomic_t worker_stop_requested;

typedef struct worker_config {
    const char *amqp_url;
    const char *database_url;
    const char *schema_dir;
    const char *metrics_listen;
    long prefetch;
    long batch;
    long idle_wait_ms;
} worker_config;

struct worker {
    const worker_spec *spec;
    worker_config cfg;
    broker *consumer;    /* deliveries only */
    broker *publisher;   /* confirms: outbox relay, retries, dead letters */
    db *db;
    outbox_relay *relay;
    jsonschema_registry *schemas;
    worker_metrics *metrics;
    struct timespec next_tick;
    unsigned seed;
};

static void worker_on_signal(int sig)
{
    (void)sig;
    worker_stop_requested = 1;
}

const char *worker_name(const worker *w) { return w->spec->name; }
bool worker_stopping(const worker *w) { (void)w; return worker_stop_requested != 0; }

/* --- configuration ------------------------------------------------------------------------- */

static void worker_usage(const worker_spec *spec, FILE *out)
{
    fprintf(out,
            "usage: %s [options]\n"
            "%s\n\n"
            "Consumes queue '%s' and handles each event in one PostgreSQL transaction with its\n"
            "inbox and outbox rows; acks after commit; retries transient failures through\n"
            "'%s.retry.N' and dead-letters the rest to '%s.dlq'.\n\n"
            "options (environment variable in brackets):\n"
            "  --amqp-url URLS       comma-separated AMQP URLs, first reachable wins [AMQP_URL]\n"
            "  --database-url URL    PostgreSQL connection [DATABASE_URL]\n"
            "  --prefetch N          unacked deliveries held at once (default 64) [WORKER_PREFETCH]\n"
            "  --batch N             deliveries handled between outbox flushes (default 32)\n"
            "                        [WORKER_BATCH]\n"
            "  --metrics-listen H:P  /metrics and /healthz address, port 0 = any (default\n"
            "                        127.0.0.1:0) [METRICS_LISTEN]\n"
            "  --schemas DIR         JSON Schemas of the events [ORDERPIPE_SCHEMA_DIR]\n"
            "  --help                this text\n"
            "%s%s"
            "\nLogs are JSON lines on stderr (LOG_LEVEL=debug|info|warn|error). SIGTERM drains.\n",
            spec->program, spec->summary, spec->name, spec->name, spec->name,
            spec->help_extra ? "\n" : "", spec->help_extra ? spec->help_extra : "");
}

static int worker_parse_config(worker *w, int argc, char **argv)
{
    worker_config *c = &w->cfg;
    c->amqp_url = config_env_str("AMQP_URL", NULL);
    c->database_url = config_env_str("DATABASE_URL", NULL);
    c->schema_dir = config_env_str("ORDERPIPE_SCHEMA_DIR", jsonschema_default_dir());
    c->metrics_listen = config_env_str("METRICS_LISTEN", "127.0.0.1:0");
    if (config_env_long("WORKER_PREFETCH", 64, 1, 65535, &c->prefetch) != 0 ||
        config_env_long("WORKER_BATCH", 32, 1, 10000, &c->batch) != 0)
        return 2;
    c->idle_wait_ms = 200;

    static const struct option opts[] = {
        {"amqp-url", required_argument, NULL, 'a'},
        {"database-url", required_argument, NULL, 'd'},
        {"prefetch", required_argument, NULL, 'p'},
        {"batch", required_argument, NULL, 'b'},
        {"metrics-listen", required_argument, NULL, 'm'},
        {"schemas", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a': c->amqp_url = optarg; break;
        case 'd': c->database_url = optarg; break;
        case 'm': c->metrics_listen = optarg; break;
        case 's': c->schema_dir = optarg; break;
        case 'p':
            if (config_parse_long(optarg, 1, 65535, &c->prefetch) != 0) {
                fprintf(stderr, "--prefetch: must be an integer in [1, 65535]\n");
                return 2;
            }
            break;
        case 'b':
            if (config_parse_long(optarg, 1, 10000, &c->batch) != 0) {
                fprintf(stderr, "--batch: must be an integer in [1, 10000]\n");
                return 2;
            }
            break;
        case 'h': worker_usage(w->spec, stdout); return 1;
        default: worker_usage(w->spec, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", w->spec->program, argv[optind]);
        return 2;
    }
    if (!c->amqp_url || !c->database_url) {
        fprintf(stderr, "%s: AMQP_URL and DATABASE_URL (or --amqp-url, --database-url) are required\n",
                w->spec->program);
        return 2;
    }
    return 0;
}

/* --- connections --------------------------------------------------------------------------- */

/* Blocks (with backoff, until stopped) until the consumer, the publisher and the database are
 * all up, the topology declared and the queue consumed. */
static op_status worker_ensure_connected(worker *w)
{
    backoff bo;
    backoff_init(&bo, 100, 5000, w->seed);
    for (;;) {
        bool ok = true;
        if (!db_is_open(w->db) && db_reconnect(w->db) != OP_OK) {
            log_warn(NULL, "database unreachable: %s", db_last_error(w->db));
            ok = false;
        } else if (!db_is_open(w->db)) {
            ok = false;
        }
        if (ok && !broker_is_open(w->publisher)) {
            if (broker_reconnect(w->publisher) != OP_OK ||
                broker_declare_topology(w->publisher) != OP_OK) {
                log_warn(NULL, "broker unreachable (publisher): %s", broker_last_error(w->publisher));
                ok = false;
            }
        }
        if (ok && !broker_is_open(w->consumer)) {
            if (broker_reconnect(w->consumer) != OP_OK ||
                broker_consume(w->consumer, w->spec->name, (uint16_t)w->cfg.prefetch) != OP_OK) {
                log_warn(NULL, "broker unreachable (consumer): %s", broker_last_error(w->consumer));
                ok = false;
            } else {
                log_info(NULL, "consuming '%s' from %s", w->spec->name,
                         broker_current_node(w->consumer));
            }
        }
        if (ok)
            return OP_OK;
        if (worker_stop_requested)
            return OP_ERR_TRANSIENT;
        usleep((useconds_t)backoff_next_ms(&bo) * 1000);
    }
}

static op_status worker_connect(worker *w)
{
    char name[128];
    broker_options bo = {.urls = w->cfg.amqp_url, .name = name};
    snprintf(name, sizeof name, "%s/consume", w->spec->program);
    if (broker_connect(&w->consumer, &bo) == OP_ERR_PERMANENT) {
        log_error(NULL, "AMQP_URL is not usable: %s", w->cfg.amqp_url);
        return OP_ERR_PERMANENT;
    }
    snprintf(name, sizeof name, "%s/publish", w->spec->program);
    bo.confirms = true;
    if (broker_connect(&w->publisher, &bo) == OP_ERR_PERMANENT)
        return OP_ERR_PERMANENT;
    /* The consumer connected before the topology existed: consume after declaring. */
    if (broker_is_open(w->publisher) && broker_declare_topology(w->publisher) != OP_OK)
        log_warn(NULL, "declaring the topology failed: %s", broker_last_error(w->publisher));
    if (broker_is_open(w->consumer) &&
        broker_consume(w->consumer, w->spec->name, (uint16_t)w->cfg.prefetch) != OP_OK)
        log_warn(NULL, "consume failed: %s", broker_last_error(w->consumer));
    db_connect(&w->db, w->cfg.database_url, w->spec->program);
    if (!w->db || !w->consumer || !w->publisher)
        return OP_ERR_PERMANENT;
    if (outbox_relay_new(&w->relay, w->db, w->publisher, 0) != OP_OK)
        return OP_ERR_PERMANENT;
    return worker_ensure_connected(w);
}

/* --- failure routing ----------------------------------------------------------------------- */

static long worker_header_long(const broker_delivery *d, const char *key, long def)
{
    json_t *v = json_object_get(d->headers, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : def;
}

static const char *worker_original_key(const broker_delivery *d)
{
    json_t *v = json_object_get(d->headers, "x-original-routing-key");
    return json_is_string(v) ? json_string_value(v) : d->routing_key;
}

/* Publishes a copy of d to `queue` through the default exchange with `headers` and waits for the
 * broker's confirm, so the original may be acked. */
static op_status worker_republish(worker *w, const broker_delivery *d, const char *queue,
                                  json_t *headers)
{
    broker_message m = {
        .exchange = "",
        .routing_key = queue,
        .body = d->body,
        .len = d->len,
        .message_id = d->message_id,
        .correlation_id = d->correlation_id,
        .type = d->type,
        .headers = headers,
    };
    op_status st = broker_publish(w->publisher, &m, NULL);
    if (st == OP_OK)
        st = broker_wait_confirms(w->publisher, 10000);
    return st;
}

static json_t *worker_failure_headers(const broker_delivery *d, const char *error)
{
    json_t *h = json_deep_copy(d->headers);
    json_object_set_new(h, "x-original-routing-key", json_string(worker_original_key(d)));
    json_t *err = json_string(error);
    json_object_set_new(h, "x-last-error", err ? err : json_string("(error not valid UTF-8)"));
    return h;
}

/* Sends d to `<queue>.dlq` with why in its headers, then acks it. */
static op_status worker_dead_letter(worker *w, const broker_delivery *d, const char *reason,
                                    const char *error, int attempts, const log_ctx *lc)
{
    char dlq[128], now[32];
    topology_dlq(w->spec->name, dlq, sizeof dlq);
    event_time_now(now);
    json_t *h = worker_failure_headers(d, error);
    json_object_set_new(h, "x-dead-reason", json_string(reason));
    json_object_set_new(h, "x-attempts", json_integer(attempts));
    json_object_set_new(h, "x-original-queue", json_string(w->spec->name));
    json_object_set_new(h, "x-dead-at", json_string(now));
    op_status st = worker_republish(w, d, dlq, h);
    json_decref(h);
    if (st != OP_OK) {
        log_error(lc, "dead-lettering failed (%s); the message stays unacked", op_status_name(st));
        return st;
    }
    log_warn(lc, "dead-lettered to %s: %s: %s", dlq, reason, error);
    worker_metrics_dead_lettered(w->metrics, reason);
    return broker_ack(w->consumer, d->tag, false);
}

/* Sends d to the retry tier for its attempt, or to the DLQ once the tiers are used up. */
static op_status worker_retry(worker *w, const broker_delivery *d, int attempt, const char *error,
                              const log_ctx *lc)
{
    if (attempt > TOPOLOGY_RETRY_TIERS)
        return worker_dead_letter(w, d, "retries_exhausted", error, attempt, lc);
    char queue[128];
    topology_retry_queue(w->spec->name, attempt - 1, queue, sizeof queue);
    json_t *h = worker_failure_headers(d, error);
    json_object_set_new(h, "x-attempt", json_integer(attempt + 1));
    op_status st = worker_republish(w, d, queue, h);
    json_decref(h);
    if (st != OP_OK) {
        log_error(lc, "scheduling a retry failed (%s); the message stays unacked", op_status_name(st));
        return st;
    }
    log_warn(lc, "attempt %d failed, retrying through %s in %d ms: %s", attempt, queue,
             topology_retry_delay_ms[attempt - 1], error);
    worker_metrics_retried(w->metrics);
    return broker_ack(w->consumer, d->tag, false);
}

/* --- handling one delivery ----------------------------------------------------------------- */

static const worker_route *worker_find_route(const worker *w, const char *type)
{
    for (const worker_route *r = w->spec->routes; r->type; r++)
        if (strcmp(r->type, type) == 0)
            return r;
    return NULL;
}

typedef struct worker_txn_call {
    worker_msg *m;
    worker_handler_fn fn;
    void *arg;
} worker_txn_call;

static op_status worker_txn_body(db *d, void *arg)
{
    worker_txn_call *c = arg;
    op_status st = inbox_record(d, c->m->w->spec->name, c->m->ev->id);
    if (st != OP_OK)
        return st; /* OP_DUPLICATE rolls back: the first delivery's effects stand alone */
    c->m->error[0] = '\0';
    return c->fn(c->m, c->arg);
}

op_status worker_txn(worker_msg *m, worker_handler_fn fn, void *arg)
{
    worker_txn_call c = {m, fn, arg};
    return db_transaction(m->db, worker_txn_body, &c, 0);
}

/* Envelope, type and schema checks; on failure fills err and returns the DLQ reason. */
static const char *worker_check(worker *w, const broker_delivery *d, event_view *ev,
                                const worker_route **route, char *err, size_t errlen)
{
    if (event_parse(d->body, d->len, ev, err, errlen) != OP_OK)
        return "invalid_message";
    *route = worker_find_route(w, ev->type);
    if (!*route) {
        snprintf(err, errlen, "no handler for event type '%s' on queue '%s'", ev->type,
                 w->spec->name);
        return "unknown_type";
    }
    const jsonschema *schema = jsonschema_registry_get(w->schemas, ev->type);
    if (!schema) {
        snprintf(err, errlen, "no schema for event type '%s'", ev->type);
        return "unknown_type";
    }
    jsonschema_error je;
    if (jsonschema_validate(schema, ev->data, &je) != OP_OK) {
        snprintf(err, errlen, "data%s: %s", je.path + 1, je.message);
        return "schema_violation";
    }
    return NULL;
}

static void worker_handle(worker *w, broker_delivery *d)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    event_view ev = {0};
    const worker_route *route = NULL;
    char err[512];
    int attempt = (int)worker_header_long(d, "x-attempt", 1);
    log_ctx lc = {.message_id = d->message_id, .correlation_id = d->correlation_id};

    const char *bad = worker_check(w, d, &ev, &route, err, sizeof err);
    if (ev.root) {
        lc.order_id = ev.order_id;
        lc.traceparent = ev.traceparent;
    }
    if (bad) {
        worker_dead_letter(w, d, bad, err, attempt, &lc);
        worker_metrics_handled(w->metrics, ev.root ? ev.type : "invalid", "dead_lettered", &t0);
        event_view_free(&ev);
        return;
    }

    worker_msg m = {.w = w, .db = w->db, .ev = &ev, .delivery = d, .attempt = attempt, .log = lc};
    op_status st;
    for (;;) {
        st = route->handle ? worker_txn(&m, route->handle, w->spec->arg)
                           : route->handle_raw(&m, w->spec->arg);
        /* Lost the database: wait for it and handle the same delivery again, without spending
         * one of its retry attempts on an outage. */
        if (st == OP_ERR_TRANSIENT && !db_is_open(w->db) && !worker_stop_requested) {
            log_warn(&lc, "database connection lost while handling; reconnecting");
            if (worker_ensure_connected(w) == OP_OK && broker_is_open(w->consumer))
                continue;
        }
        break;
    }

    const char *outcome;
    switch (st) {
    case OP_OK:
    case OP_DUPLICATE:
        outcome = st == OP_OK ? "ok" : "duplicate";
        if (st == OP_DUPLICATE) {
            log_info(&lc, "%s already handled: redelivery ignored", ev.type);
            worker_metrics_duplicate(w->metrics);
        }
        broker_ack(w->consumer, d->tag, false);
        break;
    case OP_ERR_PERMANENT:
        outcome = "dead_lettered";
        worker_dead_letter(w, d, "handler_refused", m.error[0] ? m.error : db_last_error(w->db),
                           attempt, &lc);
        break;
    default:
        outcome = "retried";
        worker_retry(w, d, attempt, m.error[0] ? m.error : db_last_error(w->db), &lc);
        break;
    }
    worker_metrics_handled(w->metrics, ev.type, outcome, &t0);
    event_view_free(&ev);
}

/* --- emitting ------------------------------------------------------------------------------ */

op_status worker_emit_free(worker *w, db *d, const char *type, const char *order_id, json_t *data,
                           const char *traceparent)
{
    char tp[56];
    event_traceparent(traceparent, tp);
    json_t *ev = event_new(type, w->spec->program, order_id, data, tp);
    if (!ev)
        return OP_ERR_TRANSIENT;
    json_t *headers = json_pack("{ss}", "traceparent", tp);
    op_status st = outbox_write(d, type, ev, headers);
    json_decref(headers);
    json_decref(ev);
    return st;
}

op_status worker_emit(worker_msg *m, const char *type, const char *order_id, json_t *data)
{
    return worker_emit_free(m->w, m->db, type, order_id, data, m->ev->traceparent);
}

/* --- the loop ------------------------------------------------------------------------------ */

static void worker_flush_outbox(worker *w)
{
    int published;
    do {
        published = 0;
        if (!broker_is_open(w->publisher) || !db_is_open(w->db))
            return;
        if (outbox_relay_flush(w->relay, &published) != OP_OK) {
            log_warn(NULL, "outbox relay: %s / %s", broker_last_error(w->publisher),
                     db_last_error(w->db));
            return;
        }
        worker_metrics_published(w->metrics, published);
    } while (published > 0 && !worker_stop_requested);
}

static bool worker_tick_due(worker *w)
{
    if (!w->spec->tick)
        return false;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < w->next_tick.tv_sec ||
        (now.tv_sec == w->next_tick.tv_sec && now.tv_nsec < w->next_tick.tv_nsec))
        return false;
    long ms = w->spec->tick_ms > 0 ? w->spec->tick_ms : 1000;
    w->next_tick = now;
    w->next_tick.tv_sec += ms / 1000;
    w->next_tick.tv_nsec += (ms % 1000) * 1000000L;
    if (w->next_tick.tv_nsec >= 1000000000L) {
        w->next_tick.tv_sec++;
        w->next_tick.tv_nsec -= 1000000000L;
    }
    return true;
}

static void worker_loop(worker *w)
{
    while (!worker_stop_requested) {
        if (worker_ensure_connected(w) != OP_OK)
            break;
        int handled = 0;
        while (handled < w->cfg.batch && !worker_stop_requested) {
            broker_delivery d;
            op_status st = broker_next(w->consumer, handled == 0 ? (int)w->cfg.idle_wait_ms : 0, &d);
            if (st != OP_OK)
                break;
            worker_handle(w, &d);
            broker_delivery_free(&d);
            handled++;
        }
        worker_flush_outbox(w);
        if (worker_tick_due(w) && db_is_open(w->db)) {
            if (w->spec->tick(w, w->db, w->spec->arg) != OP_OK)
                log_warn(NULL, "periodic work failed: %s", db_last_error(w->db));
            worker_flush_outbox(w);
        }
    }
}

int worker_main(const worker_spec *spec, int argc, char **argv)
{
    worker w = {.spec = spec};
    log_init(spec->program);
    int rc = worker_parse_config(&w, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    w.seed = (unsigned)getpid() ^ (unsigned)time(NULL);

    char err[512];
    w.schemas = jsonschema_registry_load(w.cfg.schema_dir, err, sizeof err);
    if (!w.schemas) {
        log_error(NULL, "cannot load schemas from %s: %s", w.cfg.schema_dir, err);
        return 2;
    }
    struct sigaction sa = {.sa_handler = worker_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = 1;
    if (worker_metrics_start(&w.metrics, w.cfg.metrics_listen, spec->name) != OP_OK) {
        log_error(NULL, "cannot serve metrics on %s", w.cfg.metrics_listen);
        goto out;
    }
    if (worker_connect(&w) != OP_OK) {
        if (!worker_stop_requested)
            log_error(NULL, "start-up failed");
        goto out;
    }
    if (spec->start && spec->start(&w, w.db, spec->arg) != OP_OK) {
        log_error(NULL, "start-up failed: %s", db_last_error(w.db));
        goto out;
    }
    log_info(NULL, "started: queue %s, prefetch %ld, batch %ld", spec->name, w.cfg.prefetch,
             w.cfg.batch);
    worker_loop(&w);
    /* Drain: what we handled is acked; publish what we committed; unacked prefetched deliveries
     * go back to the queue when the consumer closes. */
    worker_flush_outbox(&w);
    log_info(NULL, "drained, exiting");
    rc = 0;
out:
    outbox_relay_free(w.relay);
    broker_close(w.consumer);
    broker_close(w.publisher);
    db_close(w.db);
    worker_metrics_stop(w.metrics);
    jsonschema_registry_free(w.schemas);
    return rc;
}
