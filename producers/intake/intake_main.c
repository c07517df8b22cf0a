/* orderpipe-intake: the HTTP front door (docs/design.md §4). main reads as the table of contents:
 * configuration, schemas and keys, the database and the broker, the HTTP server, the loop, the
 * drain on SIGTERM. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "clock.h"
#include "intake.h"
#include "log.h"
#include "topology.h"

static void intake_usage(FILE *out)
{
    fprintf(out,
            "usage: orderpipe-intake [options]\n"
            "The HTTP front door: POST /v1/orders, GET /v1/orders/{id}, POST /v1/orders/{id}/cancel,\n"
            "POST /v1/payment-notifications/{channel}, GET /healthz. An order is answered 202 only\n"
            "once the broker confirmed it.\n\n"
            "options (environment variable in brackets):\n"
            "  --listen HOST:PORT       address (default 127.0.0.1:38080) [INTAKE_LISTEN]\n"
            "  --metrics-listen HOST:PORT  GET /metrics and /healthz, not on the public port\n"
            "                           (default 127.0.0.1:0, any free port; logged) [METRICS_LISTEN]\n"
            "  --amqp-url URLS          AMQP URLs, first reachable wins [AMQP_URL]; amqps:// is\n"
            "                           verified TLS [AMQP_CACERT, AMQP_CERT, AMQP_KEY]\n"
            "  --database-url URL       PostgreSQL: order lookups, cancels, Idempotency-Keys [DATABASE_URL]\n"
            "  --api-keys-file FILE     lines 'client:key' [ORDERPIPE_API_KEYS_FILE]\n"
            "                           (or a comma list in ORDERPIPE_API_KEYS)\n"
            "  --schemas DIR            JSON Schemas [ORDERPIPE_SCHEMA_DIR]\n"
            "  --webhook-hosts SPEC     hosts each client may give in notify.webhook_url:\n"
            "                           'client=host,*.suffix;client2=host' (a client not listed\n"
            "                           may not use webhooks) [ORDERPIPE_WEBHOOK_HOSTS]\n"
            "  --webhook-hosts-file F   the same, one 'client=host,...' a line\n"
            "                           [ORDERPIPE_WEBHOOK_HOSTS_FILE]\n"
            "  --webhook-allow-http     accept http:// webhooks, not only https://\n"
            "                           [ORDERPIPE_WEBHOOK_ALLOW_HTTP=1]\n"
            "  --payment-channels LIST  'method=URL,...': the valid payment.method names\n"
            "                           (default: one channel, PAYMENT_DEFAULT_METHOD) [PAYMENT_CHANNELS]\n"
            "  --payment-default-method M  the method of an order without one (default: the\n"
            "                           first channel, or card) [PAYMENT_DEFAULT_METHOD]\n"
            "  --payment-channel-secrets-file F  'method=secret' a line: the secrets payment\n"
            "                           notifications are signed with [PAYMENT_CHANNEL_SECRETS_FILE]\n"
            "                           (or a comma list in PAYMENT_CHANNEL_SECRETS; a method may\n"
            "                           repeat: each of its secrets verifies)\n"
            "  --payment-notification-tolerance D  how far a notification's signed time may be\n"
            "                           from now (default 300s) [PAYMENT_NOTIFICATION_TOLERANCE]\n"
            "  --help                   this text\n\n"
            "limits (environment only): INTAKE_MAX_BODY (bytes, 65536), INTAKE_MAX_HEADERS (8192),\n"
            "INTAKE_MAX_CONNECTIONS (1024; past it the oldest idle one is closed), INTAKE_TIMEOUT\n"
            "(s, 10: idle, and from a request's first byte to its last), INTAKE_CONFIRM_TIMEOUT_MS\n"
            "(5000), INTAKE_RATE_PER_CLIENT / INTAKE_BURST_PER_CLIENT (orders/s, may be fractional;\n"
            "500 / 1000), "
            "INTAKE_RATE_GLOBAL / INTAKE_BURST_GLOBAL (1500 / 3000; past it, only clients over\n"
            "their share are refused).\n"
            "backpressure (environment only): INTAKE_MAX_QUEUE_DEPTH (ready messages in the work\n"
            "queues, 200000; 0 = off), INTAKE_MAX_OUTBOX_ROWS (unpublished outbox rows, 100000;\n"
            "0 = off), INTAKE_BACKPRESSURE_INTERVAL_MS (500).\n"
            "database (environment only): INTAKE_DB_TIMEOUT_MS (deadline of a lookup or key check,\n"
            "1000), INTAKE_DB_MAX_QUEUE (requests waiting for the database, 1000; past it 503),\n"
            "IDEMPOTENCY_RETENTION (how long Idempotency-Keys are kept, 7d). Logs: JSON lines on stderr.\n"
            "ORDERPIPE_SHARDS (environment only): work queues sharded by order id, e.g.\n"
            "\"notification=4\"; the same value in every program of a deployment.\n");
}

/* A rate or burst may be fractional: a rate of 0.001 (one token in 1000 s) lets a test assert an
 * exact count of refusals however slowly the machine sends its requests. */
static int intake_env_rate(const char *name, long def, double *out)
{
    const char *v = config_env_str(name, NULL);
    if (!v) {
        *out = (double)def;
        return 0;
    }
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= 0 && d <= 100000000)) {
        fprintf(stderr, "%s: must be a number in [0, 100000000], got '%s'\n", name, v);
        return -1;
    }
    *out = d;
    return 0;
}

/* 0: go on; 1: --help shown; 2: bad usage. */
static int intake_parse_config(intake_config *c, int argc, char **argv)
{
    c->listen = config_env_str("INTAKE_LISTEN", "127.0.0.1:38080");
    c->metrics_listen = config_env_str("METRICS_LISTEN", "127.0.0.1:0");
    c->amqp_url = config_env_str("AMQP_URL", NULL);
    c->database_url = config_env_str("DATABASE_URL", NULL);
    c->keys_file = config_env_str("ORDERPIPE_API_KEYS_FILE", NULL);
    c->keys_env = config_env_str("ORDERPIPE_API_KEYS", NULL);
    c->schema_dir = config_env_str("ORDERPIPE_SCHEMA_DIR", NULL);
    c->webhook_hosts = config_env_str("ORDERPIPE_WEBHOOK_HOSTS", NULL);
    c->webhook_hosts_file = config_env_str("ORDERPIPE_WEBHOOK_HOSTS_FILE", NULL);
    if (config_env_bool("ORDERPIPE_WEBHOOK_ALLOW_HTTP", false, &c->webhook_allow_http) != OP_OK)
        return 2;
    if (config_env_long("INTAKE_MAX_BODY", 65536, 256, 16 << 20, &c->max_body) ||
        config_env_long("INTAKE_MAX_HEADERS", 8192, 1024, 1 << 20, &c->max_headers) ||
        config_env_long("INTAKE_MAX_CONNECTIONS", 1024, 1, 1000000, &c->max_connections) ||
        config_env_long("INTAKE_TIMEOUT", 10, 1, 3600, &c->timeout_s) ||
        config_env_long("INTAKE_CONFIRM_TIMEOUT_MS", 5000, 10, 600000, &c->confirm_timeout_ms) ||
        /* The global rate is about what the pipeline completes end to end on the reference
         * machine (BENCHMARKS.md), and one client may have a third of it. */
        intake_env_rate("INTAKE_RATE_PER_CLIENT", 500, &c->rate_per_client) ||
        intake_env_rate("INTAKE_BURST_PER_CLIENT", 1000, &c->burst_per_client) ||
        intake_env_rate("INTAKE_RATE_GLOBAL", 1500, &c->rate_global) ||
        intake_env_rate("INTAKE_BURST_GLOBAL", 3000, &c->burst_global) ||
        config_env_long("INTAKE_MAX_QUEUE_DEPTH", 200000, 0, 1L << 40, &c->max_queue_depth) ||
        config_env_long("INTAKE_MAX_OUTBOX_ROWS", 100000, 0, 1L << 40, &c->max_outbox_rows) ||
        config_env_long("INTAKE_BACKPRESSURE_INTERVAL_MS", 500, 10, 60000,
                        &c->backpressure_interval_ms) ||
        config_env_long("INTAKE_DB_TIMEOUT_MS", 1000, 10, 600000, &c->db_timeout_ms) ||
        config_env_long("INTAKE_DB_MAX_QUEUE", 1000, 1, 1000000, &c->db_max_queue))
        return 2;
    long retention_ms;
    if (config_parse_duration_ms(config_env_str("IDEMPOTENCY_RETENTION", "7d"), &retention_ms) != OP_OK ||
        retention_ms < 1000 || retention_ms / 1000 > 2147483647L) {
        fprintf(stderr, "IDEMPOTENCY_RETENTION: must be a duration of 1s or more (e.g. 24h, 7d)\n");
        return 2;
    }
    c->idempotency_retention_s = retention_ms / 1000;
    if (topology_check_shards() != OP_OK) /* the queues it declares and watches */
        return 2;
    c->payment_channels = config_env_str("PAYMENT_CHANNELS", NULL);
    c->payment_default_method = config_env_str("PAYMENT_DEFAULT_METHOD", NULL);
    c->payment_secrets_file = config_env_str("PAYMENT_CHANNEL_SECRETS_FILE", NULL);
    const char *tolerance = config_env_str("PAYMENT_NOTIFICATION_TOLERANCE", "300s");
    static const struct option opts[] = {
        {"listen", 1, NULL, 'l'}, {"amqp-url", 1, NULL, 'a'}, {"database-url", 1, NULL, 'd'},
        {"api-keys-file", 1, NULL, 'k'}, {"schemas", 1, NULL, 's'}, {"help", 0, NULL, 'h'},
        {"metrics-listen", 1, NULL, 'm'},
        {"webhook-hosts", 1, NULL, 'W'}, {"webhook-hosts-file", 1, NULL, 'F'},
        {"webhook-allow-http", 0, NULL, 'H'},
        {"payment-channels", 1, NULL, 'P'}, {"payment-default-method", 1, NULL, 'D'},
        {"payment-channel-secrets-file", 1, NULL, 'S'},
        {"payment-notification-tolerance", 1, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'l': c->listen = optarg; break;
        case 'm': c->metrics_listen = optarg; break;
        case 'a': c->amqp_url = optarg; break;
        case 'd': c->database_url = optarg; break;
        case 'k': c->keys_file = optarg; break;
        case 's': c->schema_dir = optarg; break;
        case 'W': c->webhook_hosts = optarg; break;
        case 'F': c->webhook_hosts_file = optarg; break;
        case 'H': c->webhook_allow_http = true; break;
        case 'P': c->payment_channels = optarg; break;
        case 'D': c->payment_default_method = optarg; break;
        case 'S': c->payment_secrets_file = optarg; break;
        case 'T': tolerance = optarg; break;
        case 'h': intake_usage(stdout); return 1;
        default: intake_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "orderpipe-intake: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!c->amqp_url) {
        fprintf(stderr, "orderpipe-intake: AMQP_URL (or --amqp-url) is required\n");
        return 2;
    }
    long tolerance_ms;
    if (config_parse_duration_ms(tolerance, &tolerance_ms) != OP_OK || tolerance_ms < 1000 ||
        tolerance_ms > 86400000L) {
        fprintf(stderr, "PAYMENT_NOTIFICATION_TOLERANCE: must be a duration from 1s to 1d "
                        "(e.g. 300s, 5m)\n");
        return 2;
    }
    c->notification_tolerance_s = tolerance_ms / 1000;
    if (!c->schema_dir)
        c->schema_dir = jsonschema_default_dir();
    return 0;
}

static void intake_metrics_init(intake *in)
{
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
    in->m.reg = metrics_registry_new();
    in->m.requests = metrics_counter(in->m.reg, "orderpipe_http_requests_total",
                                     "HTTP requests answered, by route and status.", "route,status");
    in->m.publish_latency = metrics_histogram(in->m.reg, "orderpipe_intake_publish_seconds",
                                              "Time from publish to publisher confirm.", "outcome",
                                              buckets, (int)(sizeof buckets / sizeof *buckets));
    in->m.inflight = metrics_gauge(in->m.reg, "orderpipe_intake_inflight",
                                   "Publishes waiting for their confirm.", NULL);
    in->m.rate_limited = metrics_counter(in->m.reg, "orderpipe_rate_limited_total",
                                         "Requests refused with 429, by client.", "client");
    in->m.reconnects = metrics_counter(in->m.reg, "orderpipe_reconnects_total",
                                       "Reconnects to a server (broker, database) since start.", "server");
    in->m.backpressure_refused = metrics_counter(
        in->m.reg, "orderpipe_intake_backpressure_refused_total",
        "Orders refused with 429 because the work queues or the outbox were past their bounds.", NULL);
    metrics_add(in->m.backpressure_refused, NULL, 0);
    in->m.notifications = metrics_counter(
        in->m.reg, "orderpipe_intake_payment_notifications_total",
        "Payment notifications answered, by channel and result (accepted, bad_signature, stale, "
        "invalid, unknown_channel, unavailable).", "channel,result");
    for (size_t i = 0; i < in->channels.n; i++)
        metrics_add(in->m.notifications,
                    (const char *[]){in->channels.v[i].name, "accepted"}, 0);
    const char *b[] = {"broker"}, *d[] = {"database"};
    metrics_add(in->m.reconnects, b, 0);
    metrics_add(in->m.reconnects, d, 0);
    db_node_metrics_init(&in->m.db_node, in->m.reg);
}

/* SIGTERM/SIGINT: stop accepting, answer what is in flight (their confirms, bounded by the
 * confirm timeout), then leave the loop. */
static void intake_on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake *in = arg;
    if (in->inflight == 0 && intake_db_pending(in) == 0)
        event_base_loopexit(in->base, NULL);
}

static void intake_on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake *in = arg;
    if (in->draining)
        return;
    in->draining = true;
    log_info(NULL, "draining: %ld publishes in flight", in->inflight);
    intake_http_stop_accepting(in);
    in->drain_check = event_new(in->base, -1, EV_PERSIST, intake_on_drain_check, in);
    struct timeval tv = {0, 20000};
    event_add(in->drain_check, &tv);
    struct timeval limit = {(in->cfg.confirm_timeout_ms / 1000) + 1, 0};
    event_base_loopexit(in->base, &limit);
}

int main(int argc, char **argv)
{
    intake in = {0};
    log_init("orderpipe-intake");
    signal(SIGPIPE, SIG_IGN);
    int rc = intake_parse_config(&in.cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;

    char err[512];
    jsonschema_registry_load(in.cfg.schema_dir, &in.schemas, err, sizeof err); /* NULL: err */
    in.order_schema = jsonschema_registry_get(in.schemas, "order.request");
    in.notification_schema = jsonschema_registry_get(in.schemas, "payment.notification");
    if (!in.order_schema || !in.notification_schema) {
        log_error(NULL, "cannot load schemas/order.request.json and payment.notification.json "
                        "from %s: %s", in.cfg.schema_dir, in.schemas ? "missing" : err);
        jsonschema_registry_free(in.schemas);
        return 2;
    }
    if (intake_notify_load(&in) != 0) {
        jsonschema_registry_free(in.schemas);
        return 2;
    }
    if (intake_auth_load(&in) != 0) {
        intake_auth_free(&in); /* a clean exit, so the sanitized build's leak check passes */
        payment_channels_free(&in.channels);
        jsonschema_registry_free(in.schemas);
        return 2;
    }
    ratelimit_init(&in.global_bucket, in.cfg.rate_global, in.cfg.burst_global,
                   clock_now_ns());
    if (fairshare_init(&in.fair, in.nclients, INTAKE_FAIR_TAU_S, INTAKE_FAIR_ACTIVE_S) != 0)
        return 1;
    intake_metrics_init(&in);
    in.base = event_base_new();
    if (intake_db_start(&in) != 0)
        return 2;
    if (intake_publish_start(&in) != 0 || intake_backpressure_start(&in) != 0 ||
        intake_http_start(&in) != 0)
        return 1;
    in.sigterm = evsignal_new(in.base, SIGTERM, intake_on_signal, &in);
    in.sigint = evsignal_new(in.base, SIGINT, intake_on_signal, &in);
    event_add(in.sigterm, NULL);
    event_add(in.sigint, NULL);

    event_base_dispatch(in.base);

    log_info(NULL, "stopped; %ld publishes were still unconfirmed", in.inflight);
    intake_backpressure_stop(&in);
    intake_db_stop(&in);
    intake_publish_stop(&in);
    event_free(in.sigterm);
    event_free(in.sigint);
    if (in.drain_check)
        event_free(in.drain_check);
    admin_http_stop(in.admin);
    intake_http_free(&in);
    event_base_free(in.base);
    intake_auth_free(&in);
    fairshare_free(&in.fair);
    payment_channels_free(&in.channels);
    jsonschema_registry_free(in.schemas);
    metrics_registry_free(in.m.reg);
    return 0;
}
