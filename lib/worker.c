/* worker: the consume loop of every saga worker (see worker.h). */
#include "worker.h"

#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "inbox.h"
#include "jsonschema.h"
#include "linger.h"
#include "mem.h"
#include "outbox.h"
#include "redact.h"
#include "topology.h"
#include "utf8.h"
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
    long linger_ms;             /* how long a batch waits for more after its first delivery */
    long call_budget_ms;        /* a batch's time for calls to outside services */
    long inbox_retention_s;  /* inbox rows older than this are pruned */
    long outbox_retention_s; /* published outbox rows older than this are pruned */
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
    time_t last_backlog;
    time_t next_prune;
    struct timespec next_relay; /* when the relay next looks for rows nobody published */
    bool relay_now;             /* a direct publish failed: the relay should look at once */
    int given_back;             /* failed deliveries given back since the last batch */
    struct timespec batch_started; /* when the batch being handled started (its budget) */
    backoff route_backoff;      /* the pause after given-back deliveries, until routing works */
    unsigned seed;
};

static void worker_on_signal(int sig)
{
    (void)sig;
    worker_stop_requested = 1;
}

const char *worker_name(const worker *w) { return w->spec->name; }
bool worker_stopping(const worker *w) { (void)w; return worker_stop_requested != 0; }

/* Whole milliseconds on CLOCK_MONOTONIC since `since`. */
static long long worker_ms_since(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return ((long long)(now.tv_sec - since->tv_sec) * 1000000000LL +
            (now.tv_nsec - since->tv_nsec)) / 1000000;
}

bool worker_batch_has_time(const worker *w)
{
    return worker_ms_since(&w->batch_started) < w->cfg.call_budget_ms;
}

long worker_batch_ms_left(const worker *w)
{
    return (long)(w->cfg.call_budget_ms - worker_ms_since(&w->batch_started));
}

struct metrics_registry *worker_registry(const worker *w)
{
    return worker_metrics_registry(w->metrics);
}

/* --- configuration ------------------------------------------------------------------------- */

static long worker_default_linger_ms(const worker_spec *spec)
{
    return spec->linger_ms > 0 ? spec->linger_ms : WORKER_DEFAULT_LINGER_MS;
}

static void worker_usage(const worker_spec *spec, FILE *out)
{
    fprintf(out,
            "usage: %s [options]\n"
            "%s\n\n"
            "Consumes queue '%s' and handles each event in one PostgreSQL transaction with its\n"
            "inbox and outbox rows; acks after commit; retries transient failures through\n"
            "'%s.retry.N' and dead-letters the rest to '%s.dlq'.\n\n"
            "options (environment variable in brackets):\n"
            "  --amqp-url URLS       comma-separated AMQP URLs, first reachable wins [AMQP_URL];\n"
            "                        amqps://...?cacertfile=PATH is TLS, verified (CA also from\n"
            "                        [AMQP_CACERT], client certificate [AMQP_CERT], [AMQP_KEY])\n"
            "  --database-url URL    PostgreSQL connection [DATABASE_URL] (?sslmode=verify-full)\n"
            "  --prefetch N          unacked deliveries held at once (default 512) [WORKER_PREFETCH]\n"
            "  --batch N             deliveries handled in one transaction (default 256)\n"
            "                        [WORKER_BATCH]\n"
            "  --batch-linger-ms MS  a lone delivery waits MS/5 (at least 1 ms) for a second; a\n"
            "                        batch that got one waits for more until MS after its first\n"
            "                        (default %ld, at most 1000; 0 = take only what is there)\n"
            "                        [WORKER_BATCH_LINGER_MS]\n"
            "  WORKER_CALL_BUDGET_MS how long a batch may spend calling a provider or webhooks\n"
            "                        (default 20000, 100 to 50000); what does not fit is retried\n"
            "  --metrics-listen H:P  /metrics and /healthz address, port 0 = any (default\n"
            "                        127.0.0.1:0) [METRICS_LISTEN]\n"
            "  --schemas DIR         JSON Schemas of the events [ORDERPIPE_SCHEMA_DIR]\n"
            "  --help                this text\n"
            "  INBOX_RETENTION / OUTBOX_RETENTION  how long handled message ids and published\n"
            "                        events are kept (default 7d / 1d); pruned in small batches\n"
            "%s%s"
            "\nLogs are JSON lines on stderr (LOG_LEVEL=debug|info|warn|error). SIGTERM drains.\n",
            spec->program, spec->summary, spec->name, spec->name, spec->name,
            worker_default_linger_ms(spec), spec->help_extra ? "\n" : "",
            spec->help_extra ? spec->help_extra : "");
}

static int worker_parse_config(worker *w, int argc, char **argv)
{
    worker_config *c = &w->cfg;
    c->amqp_url = config_env_str("AMQP_URL", NULL);
    c->database_url = config_env_str("DATABASE_URL", NULL);
    c->schema_dir = config_env_str("ORDERPIPE_SCHEMA_DIR", jsonschema_default_dir());
    c->metrics_listen = config_env_str("METRICS_LISTEN", "127.0.0.1:0");
    if (config_env_long("WORKER_PREFETCH", 512, 1, 65535, &c->prefetch) != 0 ||
        config_env_long("WORKER_BATCH", 256, 1, 10000, &c->batch) != 0 ||
        config_env_long("WORKER_BATCH_LINGER_MS", worker_default_linger_ms(w->spec), 0, 1000,
                        &c->linger_ms) != 0 ||
        config_env_long("WORKER_CALL_BUDGET_MS", 20000, 100, 50000, &c->call_budget_ms) != 0)
        return 2;
    long inbox_ms, outbox_ms;
    if (config_parse_duration_ms(config_env_str("INBOX_RETENTION", "7d"), &inbox_ms) != 0 ||
        config_parse_duration_ms(config_env_str("OUTBOX_RETENTION", "1d"), &outbox_ms) != 0 ||
        inbox_ms < 1000 || outbox_ms < 1000) {
        fprintf(stderr, "INBOX_RETENTION / OUTBOX_RETENTION must be durations of 1s or more\n");
        return 2;
    }
    c->inbox_retention_s = inbox_ms / 1000;
    c->outbox_retention_s = outbox_ms / 1000;
    c->idle_wait_ms = 200;

    static const struct option opts[] = {
        {"amqp-url", required_argument, NULL, 'a'},
        {"database-url", required_argument, NULL, 'd'},
        {"prefetch", required_argument, NULL, 'p'},
        {"batch", required_argument, NULL, 'b'},
        {"batch-linger-ms", required_argument, NULL, 'l'},
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
        case 'l':
            if (config_parse_long(optarg, 0, 1000, &c->linger_ms) != 0) {
                fprintf(stderr, "--batch-linger-ms: must be an integer in [0, 1000]\n");
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

/* Health and reconnects for /healthz and /metrics; the outbox backlog at most once a second. */
static void worker_report(worker *w)
{
    bool broker_ok = broker_is_open(w->consumer) && broker_is_open(w->publisher);
    worker_metrics_set_health(w->metrics, broker_ok, db_is_open(w->db),
                              broker_reconnect_count(w->consumer) + broker_reconnect_count(w->publisher),
                              db_reconnect_count(w->db));
    time_t now = time(NULL);
    long rows;
    double age;
    if (now != w->last_backlog && db_is_open(w->db) && outbox_backlog(w->db, &rows, &age) == OP_OK) {
        w->last_backlog = now;
        worker_metrics_set_backlog(w->metrics, rows, age);
    }
}

/* Blocks (with backoff, until stopped) until the consumer, the publisher and the database are
 * all up, the topology declared and the queue consumed. */
static op_status worker_ensure_connected(worker *w)
{
    backoff bo;
    backoff_init(&bo, 100, 5000, w->seed);
    bool told = false;
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
                topology_declare(w->publisher) != OP_OK) {
                log_warn(NULL, "broker unreachable (publisher): %s", broker_last_error(w->publisher));
                ok = false;
            }
        }
        if (ok && !broker_is_open(w->consumer)) {
            if (!told && broker_last_error(w->consumer)[0]) {
                log_warn(NULL, "consumer connection lost (%s); reconnecting",
                         broker_last_error(w->consumer));
                told = true;
            }
            /* Declared again first: the queue may be what went away. */
            if (broker_reconnect(w->consumer) != OP_OK ||
                topology_declare(w->consumer) != OP_OK ||
                broker_consume(w->consumer, w->spec->name, (uint16_t)w->cfg.prefetch) != OP_OK) {
                log_warn(NULL, "broker unreachable (consumer): %s", broker_last_error(w->consumer));
                ok = false;
            } else {
                log_info(NULL, "consuming '%s' from %s", w->spec->name,
                         broker_current_node(w->consumer));
            }
        }
        worker_report(w);
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
        char shown[512];
        log_error(NULL, "AMQP_URL is not usable: %s",
                  redact_secrets(w->cfg.amqp_url, shown, sizeof shown));
        return OP_ERR_PERMANENT;
    }
    snprintf(name, sizeof name, "%s/publish", w->spec->program);
    bo.confirms = true;
    if (broker_connect(&w->publisher, &bo) == OP_ERR_PERMANENT)
        return OP_ERR_PERMANENT;
    /* The consumer connected before the topology existed: consume after declaring. */
    if (broker_is_open(w->publisher) && topology_declare(w->publisher) != OP_OK)
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

/* The delivery's attempt (1 on a first delivery). Anyone can publish, so a header out of range
 * is clamped: below 1 it would name a retry tier that does not exist, and the message could be
 * neither retried nor dead-lettered. */
int worker_attempt(const broker_delivery *d)
{
    json_t *v = json_object_get(d->headers, "x-attempt");
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return 1;
    json_int_t a = json_integer_value(v);
    return a > TOPOLOGY_RETRY_TIERS + 1 ? TOPOLOGY_RETRY_TIERS + 1 : (int)a;
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

json_t *worker_failure_headers(const broker_delivery *d, const char *error)
{
    json_t *h = json_deep_copy(d->headers);
    if (!h)
        h = json_object();
    if (!h)
        mem_die("failure headers");
    /* Header strings are the publisher's bytes (broker.c keeps them unchecked), and so is the
     * routing key: carried over as bytes, since a retry must route exactly as the original. */
    const char *key = worker_original_key(d);
    json_object_set_new(h, "x-original-routing-key", json_stringn_nocheck(key, strlen(key)));
    char cut[512];
    utf8_copy(cut, sizeof cut, error);
    json_object_set_new(h, "x-last-error", json_string(cut));
    return h;
}

/* Routing a failed delivery elsewhere failed (the publisher is down): give it back to its queue
 * now (it keeps its attempt count), rather than leaving it unacked on a consumer that may stay
 * up for days, holding a slot of the prefetch window. */
static void worker_give_back(worker *w, const broker_delivery *d)
{
    broker_reject(w->consumer, d->tag, true);
    w->given_back++;
}

/* A given-back delivery comes straight back: without a pause the worker would spin on it. The
 * route may be gone (a retry or dead-letter queue deleted while we run), so the topology is
 * declared again; the pause grows while routing keeps failing and resets once it works. */
static void worker_repair_routes(worker *w)
{
    int ms = backoff_next_ms(&w->route_backoff);
    log_warn(NULL, "%d failed deliveries could not be routed and went back to their queue; "
                   "declaring the topology again and pausing %d ms", w->given_back, ms);
    w->given_back = 0;
    if (broker_is_open(w->publisher) && topology_declare(w->publisher) != OP_OK)
        log_warn(NULL, "declaring the topology failed: %s", broker_last_error(w->publisher));
    usleep((useconds_t)ms * 1000); /* SIGTERM ends it early */
}

/* Sends d to `<queue>.dlq` with why in its headers, then acks it. */
static op_status worker_dead_letter(worker *w, const broker_delivery *d, const char *reason,
                                    const char *error, int attempts, const log_ctx *lc)
{
    char dlq[128], now[32];
    topology_dlq(w->spec->name, dlq, sizeof dlq);
    cloudevent_time_now(now);
    json_t *h = worker_failure_headers(d, error);
    json_object_set_new(h, "x-dead-reason", json_string(reason));
    json_object_set_new(h, "x-attempts", json_integer(attempts));
    json_object_set_new(h, "x-original-queue", json_string(w->spec->name));
    json_object_set_new(h, "x-dead-at", json_string(now));
    op_status st = worker_republish(w, d, dlq, h);
    json_decref(h);
    if (st != OP_OK) {
        log_error(lc, "dead-lettering failed (%s); the message goes back to its queue",
                  op_status_name(st));
        worker_give_back(w, d);
        return st;
    }
    backoff_reset(&w->route_backoff);
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
        log_error(lc, "scheduling a retry failed (%s); the message goes back to its queue",
                  op_status_name(st));
        worker_give_back(w, d);
        return st;
    }
    backoff_reset(&w->route_backoff);
    log_warn(lc, "attempt %d failed, retrying through %s in %d ms: %s", attempt, queue,
             topology_retry_delay_ms(attempt - 1), error);
    worker_metrics_retried(w->metrics);
    return broker_ack(w->consumer, d->tag, false);
}

/* --- handling one delivery ----------------------------------------------------------------- */

typedef struct worker_txn_call {
    worker_msg *m;
    worker_handler_fn fn;
    void *arg;
} worker_txn_call;

/* Forgets what an earlier run of the message's transaction queued (the body may run again). */
static void worker_msg_reset(worker_msg *m)
{
    m->error[0] = '\0';
    m->reason = NULL;
    m->outcome = OP_OK;
    json_decref(m->emits);
    m->emits = NULL;
}

static op_status worker_txn_body(db *d, void *arg)
{
    worker_txn_call *c = arg;
    worker_msg_reset(c->m);
    op_status st = inbox_record(d, c->m->w->spec->name, c->m->ev->id);
    if (st != OP_OK)
        return st; /* OP_DUPLICATE rolls back: the first delivery's effects stand alone */
    st = c->fn(c->m, c->arg);
    if (st == OP_OK && c->m->emits)
        st = outbox_write_rows(d, c->m->emits);
    return st;
}

op_status worker_txn(worker_msg *m, worker_handler_fn fn, void *arg)
{
    worker_txn_call c = {m, fn, arg};
    return db_transaction(m->db, worker_txn_body, &c, 0);
}

void worker_msg_fail(worker_msg *m, op_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof m->error, fmt, ap);
    va_end(ap);
    m->outcome = st == OP_OK ? OP_ERR_TRANSIENT : st;
    json_decref(m->emits);
    m->emits = NULL;
}

op_status worker_msg_refuse(worker_msg *m, const char *reason, const char *fmt, ...)
{
    /* Formatted wider than m->error, then copied on a character boundary: the text may hold what
     * a client sent, and half a character would make jansson refuse the DLQ header. */
    char text[2 * sizeof m->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    utf8_copy(m->error, sizeof m->error, text);
    m->reason = reason;
    m->outcome = OP_ERR_PERMANENT;
    json_decref(m->emits);
    m->emits = NULL;
    return OP_ERR_PERMANENT;
}

/* The longest envelope attributes a delivery may carry. Anyone with the broker's credentials can
 * publish: the id becomes the inbox key (a btree entry is limited to about 2.7 KB, and one that
 * does not fit fails the whole batch's statement), and the others reach logs and headers. The
 * same bounds are in schemas/cloudevent.json. */
#define WORKER_MAX_EVENT_ID 128
#define WORKER_MAX_SOURCE 128
#define WORKER_MAX_TYPE 64
#define WORKER_MAX_TIME 64
#define WORKER_MAX_SUBJECT 256
#define WORKER_MAX_MESSAGE_ID 128

/* The length bounds of the envelope's attributes (in bytes) and the AMQP message id; on failure
 * fills err and returns false. Only what the parse found is checked, so run after it. */
static bool worker_check_bounds(const broker_delivery *d, const cloudevent_view *ev, char *err,
                                size_t errlen)
{
    json_t *subject = json_object_get(ev->root, "subject");
    const char *subject_text = json_is_string(subject) ? json_string_value(subject) : NULL;
    const struct {
        const char *name;
        const char *value;
        size_t max;
    } attrs[] = {
        {"id", ev->id, WORKER_MAX_EVENT_ID},
        {"source", ev->source, WORKER_MAX_SOURCE},
        {"type", ev->type, WORKER_MAX_TYPE},
        {"time", ev->time, WORKER_MAX_TIME},
        {"subject", subject_text, WORKER_MAX_SUBJECT},
        {"AMQP message-id", d->message_id, WORKER_MAX_MESSAGE_ID},
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        size_t n = attrs[i].value ? strlen(attrs[i].value) : 0;
        if (n > attrs[i].max) {
            snprintf(err, errlen, "attribute '%s' is %zu bytes long, at most %zu allowed",
                     attrs[i].name, n, attrs[i].max);
            return false;
        }
    }
    if (subject && !json_is_string(subject)) {
        snprintf(err, errlen, "attribute 'subject' must be a string");
        return false;
    }
    return true;
}

const char *worker_check_delivery(const worker_route *routes, const char *queue,
                                  const jsonschema_registry *schemas, const broker_delivery *d,
                                  cloudevent_view *ev, const worker_route **route, char *err,
                                  size_t errlen)
{
    *route = NULL;
    if (cloudevent_parse(d->body, d->len, ev, err, errlen) != OP_OK)
        return "invalid_message";
    if (!worker_check_bounds(d, ev, err, errlen))
        return "invalid_message";
    /* The type, the path and the message quote the publisher's text: each is cut on a
     * character boundary so the reason stays valid UTF-8 in the dead-letter headers. */
    char type[128], msg[1024];
    utf8_copy(type, sizeof type, ev->type);
    for (const worker_route *r = routes; r->type && !*route; r++)
        if (strcmp(r->type, ev->type) == 0)
            *route = r;
    const char *reason = NULL;
    const jsonschema *schema = NULL;
    jsonschema_error je;
    if (!*route) {
        snprintf(msg, sizeof msg, "no handler for event type '%s' on queue '%.200s'", type, queue);
        reason = "unknown_type";
    } else if (!(schema = jsonschema_registry_get(schemas, ev->type))) {
        snprintf(msg, sizeof msg, "no schema for event type '%s'", type);
        reason = "unknown_type";
    } else if (jsonschema_validate(schema, ev->data, &je) != OP_OK) {
        snprintf(msg, sizeof msg, "data%s: %s", je.path + 1, je.message);
        reason = "schema_violation";
    }
    if (reason)
        utf8_copy(err, errlen, msg);
    return reason;
}

/* Envelope, type and schema checks; on failure fills err and returns the DLQ reason. */
static const char *worker_check(worker *w, const broker_delivery *d, cloudevent_view *ev,
                                const worker_route **route, char *err, size_t errlen)
{
    return worker_check_delivery(w->spec->routes, w->spec->name, w->schemas, d, ev, route, err,
                                 errlen);
}

/* One delivery of a batch, from receipt to ack. */
typedef struct worker_item {
    broker_delivery d;
    cloudevent_view ev;
    const worker_route *route;
    worker_msg m;
    op_status st;
    uint64_t generation;   /* consumer connection it arrived on: acks are only valid there */
    struct timespec t0;
} worker_item;

/* Settles one item after its transaction: retry or dead-letter, or leave its ack to the batch
 * (*ack_later); then metrics. */
static void worker_settle(worker *w, worker_item *it, bool *ack_later)
{
    const log_ctx *lc = &it->m.log;
    const char *type = it->ev.type;
    const char *outcome;
    /* A delivery from a consumer connection that has since been replaced cannot be acked: the
     * broker has already put it back, and the inbox makes its second delivery a no-op. */
    bool same_conn = broker_is_open(w->consumer) &&
                     broker_reconnect_count(w->consumer) == it->generation;
    switch (it->st) {
    case OP_OK:
    case OP_DUPLICATE:
        outcome = it->st == OP_OK ? "ok" : "duplicate";
        if (it->st == OP_DUPLICATE) {
            log_info(lc, "%s already handled: redelivery ignored", type);
            worker_metrics_duplicate(w->metrics);
        }
        if (same_conn)
            *ack_later = true; /* the batch's acks go together (worker_handle_batch) */
        break;
    case OP_ERR_PERMANENT:
        outcome = "dead_lettered";
        if (same_conn)
            worker_dead_letter(w, &it->d, it->m.reason ? it->m.reason : "handler_refused",
                               it->m.error[0] ? it->m.error : db_last_error(w->db), it->m.attempt, lc);
        break;
    default:
        outcome = "retried";
        if (same_conn)
            worker_retry(w, &it->d, it->m.attempt,
                         it->m.error[0] ? it->m.error : db_last_error(w->db), lc);
        break;
    }
    worker_metrics_handled(w->metrics, type, outcome, &it->t0);
}

typedef struct worker_batch {
    worker *w;
    worker_item **items;   /* the items handled in the shared transaction */
    int n;
    bool one_by_one;       /* each message in its own savepoint, not set-based */
} worker_batch;

/* Calls the item's handler, or its route's set handler with this one message. */
static op_status worker_handle_one(worker *w, worker_item *it)
{
    worker_msg *one[] = {&it->m};
    op_status st = it->route->handle ? it->route->handle(&it->m, w->spec->arg)
                                     : it->route->handle_set(one, 1, w->spec->arg);
    return st == OP_OK ? it->m.outcome : st;
}

/* The outbox rows the handled items emitted, in order (a new array). */
static json_t *worker_emitted_rows(worker_item **items, int n)
{
    json_t *rows = json_array();
    for (int i = 0; i < n; i++)
        if (items[i]->st == OP_OK && items[i]->m.emits)
            json_array_extend(rows, items[i]->m.emits);
    return rows;
}

/* The outbox rows of the batch's handled messages, in one statement before the commit. */
static op_status worker_write_emits(db *d, worker_batch *b)
{
    json_t *rows = worker_emitted_rows(b->items, b->n);
    op_status st = outbox_write_rows(d, rows);
    json_decref(rows);
    return st;
}

/* Each message in its own savepoint, so one that fails rolls back alone and the rest commit
 * together. The savepoint of a message is released together with the next message's opening
 * (the commit releases the last): one round trip per message for its isolation and inbox row. */
static op_status worker_batch_one_by_one(db *d, worker_batch *b)
{
    worker *w = b->w;
    for (int i = 0; i < b->n; i++) {
        worker_item *it = b->items[i];
        op_status st = inbox_record_in_savepoint(d, "worker_msg", i > 0, w->spec->name, it->ev.id);
        if (st == OP_DUPLICATE) { /* handled before: nothing was done, nothing to undo */
            it->st = st;
            continue;
        }
        if (st != OP_OK)
            return st;
        it->st = st = worker_handle_one(w, it);
        if (st != OP_OK) {
            json_decref(it->m.emits);
            it->m.emits = NULL;
            if (!db_is_open(d))
                return OP_ERR_TRANSIENT;
            if ((st = db_command(d, "rollback to savepoint worker_msg", 0, NULL)) != OP_OK)
                return st;
        }
    }
    return worker_write_emits(d, b);
}

/* The whole batch set-based: the inbox rows in one statement, then each route's set handler once
 * with its fresh messages. Fails as a whole if a handler fails; messages a handler gave up on
 * (worker_msg_fail) lose their inbox rows again. */
static op_status worker_batch_set(db *d, worker_batch *b)
{
    worker *w = b->w;
    int n = b->n, nfailed = 0;
    const char *ids[n], *failed[n];
    bool fresh[n];
    for (int i = 0; i < n; i++)
        ids[i] = b->items[i]->ev.id;
    op_status st = inbox_record_many(d, w->spec->name, ids, n, fresh);
    if (st != OP_OK)
        return st;
    for (int i = 0; i < n; i++)
        b->items[i]->st = fresh[i] ? OP_OK : OP_DUPLICATE;
    for (const worker_route *r = w->spec->routes; r->type; r++) {
        worker_msg *msgs[n];
        int k = 0;
        for (int i = 0; i < n; i++)
            if (fresh[i] && b->items[i]->route == r)
                msgs[k++] = &b->items[i]->m;
        if (k > 0 && (st = r->handle_set(msgs, k, w->spec->arg)) != OP_OK)
            return st;
    }
    for (int i = 0; i < n; i++) {
        worker_item *it = b->items[i];
        if (fresh[i] && it->m.outcome != OP_OK) {
            it->st = it->m.outcome;
            failed[nfailed++] = ids[i];
        }
    }
    if (nfailed > 0 && (st = inbox_forget_many(d, w->spec->name, failed, nfailed)) != OP_OK)
        return st;
    return worker_write_emits(d, b);
}

/* The body of a batch transaction (it may run again after a deadlock: it starts afresh). */
static op_status worker_batch_body(db *d, void *arg)
{
    worker_batch *b = arg;
    worker *w = b->w;
    for (int i = 0; i < b->n; i++)
        worker_msg_reset(&b->items[i]->m);
    if (w->spec->prepare_batch) {
        const cloudevent_view *evs[b->n];
        for (int i = 0; i < b->n; i++)
            evs[i] = &b->items[i]->ev;
        op_status st = w->spec->prepare_batch(w, d, evs, b->n, b->one_by_one, w->spec->arg);
        if (st != OP_OK)
            return st;
    }
    return b->one_by_one ? worker_batch_one_by_one(d, b) : worker_batch_set(d, b);
}

/* Handles the transactional items of a batch in one transaction: set-based when every route
 * has a set handler, else (or once that failed) one by one. Lost the database: wait for it and
 * run the batch again, without spending the messages' retry attempts on an outage. */
static void worker_run_batch(worker *w, worker_item **items, int n)
{
    if (n == 0)
        return;
    worker_batch b = {w, items, n, false};
    clock_gettime(CLOCK_MONOTONIC, &w->batch_started);
    for (int i = 0; i < n; i++)
        if (!items[i]->route->handle_set)
            b.one_by_one = true;
    if (w->spec->before_batch) {
        worker_msg *msgs[n];
        for (int i = 0; i < n; i++)
            msgs[i] = &items[i]->m;
        if (w->spec->before_batch(w, w->db, msgs, n, w->spec->arg) != OP_OK) {
            for (int i = 0; i < n; i++) {
                items[i]->st = OP_ERR_TRANSIENT;
                if (!items[i]->m.error[0])
                    snprintf(items[i]->m.error, sizeof items[i]->m.error, "%s",
                             db_last_error(w->db));
            }
            return;
        }
    }
    for (;;) {
        op_status st = db_transaction(w->db, worker_batch_body, &b, 0);
        if (st == OP_OK)
            return;
        if (!db_is_open(w->db) && !worker_stop_requested) {
            log_warn(NULL, "database connection lost while handling a batch; reconnecting");
            if (worker_ensure_connected(w) == OP_OK)
                continue;
        }
        if (!b.one_by_one && db_is_open(w->db)) {
            log_info(NULL, "a set-based batch of %d failed (%s: %s); handling them one by one", n,
                     op_status_name(st), db_last_error(w->db));
            b.one_by_one = true;
            continue;
        }
        /* The batch as a whole failed (e.g. its commit): every message counts as failed
         * transiently and goes through the retry tiers. */
        for (int i = 0; i < n; i++) {
            items[i]->st = OP_ERR_TRANSIENT;
            if (!items[i]->m.error[0])
                snprintf(items[i]->m.error, sizeof items[i]->m.error, "%s", db_last_error(w->db));
        }
        return;
    }
}

static void worker_run_raw(worker *w, worker_item *it)
{
    for (;;) {
        it->st = it->route->handle_raw(&it->m, w->spec->arg);
        if (it->st == OP_ERR_TRANSIENT && !db_is_open(w->db) && !worker_stop_requested) {
            log_warn(&it->m.log, "database connection lost while handling; reconnecting");
            if (worker_ensure_connected(w) == OP_OK)
                continue;
        }
        return;
    }
}

/* The fast path of the outbox: right after the commit, publishes the rows the batch wrote and
 * marks them, so the next worker gets them without waiting for the relay. A failure leaves them
 * to the relay (worker_flush_outbox), which looks at once. */
static void worker_publish_emits(worker *w, worker_item **items, int n)
{
    json_t *rows = worker_emitted_rows(items, n);
    size_t count = json_array_size(rows);
    int published = 0;
    if (count > 0) {
        /* What the batch consumed is out already, even before its publisher marks it: it must
         * not hold back the events it caused (they would wait for the relay). */
        json_t *consumed = json_array();
        for (int i = 0; i < n; i++)
            if (items[i]->st == OP_OK && items[i]->m.emits)
                json_array_append_new(consumed, json_string(items[i]->ev.id));
        op_status st = outbox_relay_publish_written(w->relay, rows, consumed, &published);
        json_decref(consumed);
        if (st != OP_OK) {
            log_warn(NULL, "publishing %zu committed events failed (%s / %s); the relay will", count,
                     broker_last_error(w->publisher), db_last_error(w->db));
            w->relay_now = true;
        }
        worker_metrics_published(w->metrics, published);
    }
    json_decref(rows);
}

/* Receives up to cfg.batch deliveries, dead-letters the malformed ones, handles the rest
 * (transactional handlers together, raw handlers one by one), then settles each. Returns the
 * number of deliveries received. */
static int worker_handle_batch(worker *w)
{
    /* No more than the prefetch can arrive before this batch is acked: lingering for more than
     * that would only wait. */
    int max = (int)(w->cfg.batch < w->cfg.prefetch ? w->cfg.batch : w->cfg.prefetch), got = 0,
        ntxn = 0;
    worker_item *items = calloc((size_t)max, sizeof *items);
    worker_item **txn = calloc((size_t)max, sizeof *txn);
    if (!items || !txn) {
        free(items);
        free(txn);
        return 0;
    }
    uint64_t generation = broker_reconnect_count(w->consumer);
    /* A delivery given back comes straight back: the batch stops gathering at once, and the
     * loop pauses (worker_repair_routes) before the next. */
    while (got < max && !worker_stop_requested && w->given_back == 0) {
        worker_item *it = &items[got];
        /* Lingering (linger.h) trades a ms or two of a lone delivery's latency for bigger
         * batches: taking only what is already there makes every message pay a batch's round
         * trips alone at a moderate rate, which keeps the cores busy and everyone waiting. */
        int wait_ms = (int)w->cfg.idle_wait_ms;
        if (got > 0)
            wait_ms = (int)linger_wait_ms((long)worker_ms_since(&items[0].t0), got,
                                          w->cfg.linger_ms);
        if (broker_next(w->consumer, wait_ms, &it->d) != OP_OK)
            break;
        got++;
        clock_gettime(CLOCK_MONOTONIC, &it->t0);
        it->generation = generation;
        char err[512];
        int attempt = worker_attempt(&it->d);
        it->m = (worker_msg){.w = w, .db = w->db, .ev = &it->ev, .delivery = &it->d,
                             .attempt = attempt};
        it->m.log = (log_ctx){.message_id = it->d.message_id,
                              .correlation_id = it->d.correlation_id};
        const char *bad = worker_check(w, &it->d, &it->ev, &it->route, err, sizeof err);
        if (it->ev.root) {
            it->m.log.order_id = it->ev.order_id;
            it->m.log.traceparent = it->ev.traceparent;
        }
        if (bad) {
            worker_dead_letter(w, &it->d, bad, err, attempt, &it->m.log);
            worker_metrics_handled(w->metrics, it->ev.root ? it->ev.type : "invalid",
                                   "dead_lettered", &it->t0);
            it->route = NULL;
        } else if (!it->route->handle_raw) {
            txn[ntxn++] = it;
        }
    }
    worker_run_batch(w, txn, ntxn);
    worker_publish_emits(w, txn, ntxn);
    /* Raw handlers each run their own transactions; their events go out together afterwards
     * (in txn's array, which the batch is done with). */
    worker_item **raw = txn;
    int nraw = 0;
    for (int i = 0; i < got; i++)
        if (items[i].route && items[i].route->handle_raw) {
            worker_run_raw(w, &items[i]);
            raw[nraw++] = &items[i];
        }
    worker_publish_emits(w, raw, nraw);
    uint64_t acks[got > 0 ? got : 1];
    int nacks = 0;
    for (int i = 0; i < got; i++) {
        worker_item *it = &items[i];
        bool ack_later = false;
        if (it->route)
            worker_settle(w, it, &ack_later);
        if (ack_later)
            acks[nacks++] = it->d.tag;
        if (it->m.state && w->spec->free_state)
            w->spec->free_state(it->m.state);
        json_decref(it->m.emits);
        cloudevent_view_free(&it->ev);
        broker_delivery_free(&it->d);
    }
    /* Deliveries arrive in tag order on one channel: when every one of the batch is to be acked,
     * one ack with `multiple` settles them all (a broker frame per batch, not per message). */
    if (nacks > 0 && nacks == got)
        broker_ack(w->consumer, acks[nacks - 1], true);
    else
        for (int i = 0; i < nacks; i++)
            broker_ack(w->consumer, acks[i], false);
    free(items);
    free(txn);
    return got;
}

char *worker_order_ids(worker_msg *const *msgs, int n)
{
    const cloudevent_view *evs[n > 0 ? n : 1];
    for (int i = 0; i < n; i++)
        evs[i] = msgs[i]->ev;
    return worker_event_order_ids(evs, n, NULL);
}

char *worker_event_order_ids(const cloudevent_view *const *evs, int n, const char *type)
{
    size_t cap = (size_t)n * 40 + 3, len = 0;
    char *ids = malloc(cap);
    if (!ids)
        return NULL;
    ids[len++] = '{';
    for (int i = 0; i < n; i++)
        if (!type || strcmp(evs[i]->type, type) == 0)
            len += (size_t)snprintf(ids + len, cap - len, "%s%.36s", len > 1 ? "," : "",
                                    evs[i]->order_id);
    ids[len++] = '}';
    ids[len] = '\0';
    return ids;
}

/* --- emitting ------------------------------------------------------------------------------ */

/* The outbox row of a new event (a new reference), or NULL when out of memory or when data is
 * NULL: a failed json_pack (say, of text that is not valid UTF-8) must not become an event with
 * empty data, which its consumer would dead-letter while the saga waits for it. */
static json_t *worker_event_row(worker *w, const char *type, const char *order_id, json_t *data,
                                const char *traceparent)
{
    if (!data) {
        log_error(&(log_ctx){.order_id = order_id}, "the data of a %s event could not be built",
                  type);
        return NULL;
    }
    char tp[56];
    cloudevent_traceparent(traceparent, tp);
    json_t *ev = cloudevent_new(type, w->spec->program, order_id, data, tp);
    if (!ev)
        return NULL;
    json_t *headers = json_pack("{ss}", "traceparent", tp);
    json_t *row = outbox_row(type, ev, headers);
    json_decref(headers);
    json_decref(ev);
    return row;
}

op_status worker_emit_free(worker *w, db *d, const char *type, const char *order_id, json_t *data,
                           const char *traceparent)
{
    json_t *rows = json_array(), *row = worker_event_row(w, type, order_id, data, traceparent);
    op_status st = row && json_array_append_new(rows, row) == 0 ? outbox_write_rows(d, rows)
                                                                : OP_ERR_TRANSIENT;
    json_decref(rows);
    return st;
}

op_status worker_emit(worker_msg *m, const char *type, const char *order_id, json_t *data)
{
    json_t *row = worker_event_row(m->w, type, order_id, data, m->ev->traceparent);
    if (!row) {
        snprintf(m->error, sizeof m->error, "the data of its %s event could not be built", type);
        return OP_ERR_TRANSIENT;
    }
    if (!m->emits)
        m->emits = json_array();
    return json_array_append_new(m->emits, row) == 0 ? OP_OK : OP_ERR_TRANSIENT;
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

/* Once a minute, a few small deletes of what is past its retention: short transactions that
 * never hold the hot rows long, whichever of the worker processes gets there. */
static void worker_prune(worker *w)
{
    time_t now = time(NULL);
    if (now < w->next_prune || !db_is_open(w->db))
        return;
    w->next_prune = now + 60 + (time_t)(rand_r(&w->seed) % 30);
    long inbox = 0, outbox = 0, n;
    for (int i = 0; i < 10; i++) {
        if (inbox_prune(w->db, w->cfg.inbox_retention_s, 1000, &n) != OP_OK || n == 0)
            break;
        inbox += n;
    }
    for (int i = 0; i < 10; i++) {
        if (outbox_prune(w->db, w->cfg.outbox_retention_s, 1000, &n) != OP_OK || n == 0)
            break;
        outbox += n;
    }
    if (inbox || outbox)
        log_info(NULL, "pruned %ld inbox and %ld outbox rows past retention", inbox, outbox);
}

/* Once a second, or at once after a direct publish failed: the relay looks for rows nobody
 * published (a crashed process's, a failed publish's, the replay tool's). */
static bool worker_relay_due(worker *w)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!w->relay_now && (now.tv_sec < w->next_relay.tv_sec ||
                          (now.tv_sec == w->next_relay.tv_sec && now.tv_nsec < w->next_relay.tv_nsec)))
        return false;
    w->relay_now = false;
    w->next_relay = now;
    w->next_relay.tv_sec += 1;
    return true;
}

static void worker_loop(worker *w)
{
    while (!worker_stop_requested) {
        if (worker_ensure_connected(w) != OP_OK)
            break;
        worker_handle_batch(w);
        if (w->given_back > 0)
            worker_repair_routes(w);
        if (worker_relay_due(w))
            worker_flush_outbox(w);
        if (worker_tick_due(w) && db_is_open(w->db)) {
            if (w->spec->tick(w, w->db, w->spec->arg) != OP_OK)
                log_warn(NULL, "periodic work failed: %s", db_last_error(w->db));
            /* The tick wrote its events directly (worker_emit_free): publish them now. */
            worker_flush_outbox(w);
        }
        worker_prune(w);
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
    backoff_init(&w.route_backoff, 100, 5000, w.seed);

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
    log_info(NULL, "started: queue %s, prefetch %ld, batch %ld, linger %ld ms", spec->name,
             w.cfg.prefetch, w.cfg.batch, w.cfg.linger_ms);
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
