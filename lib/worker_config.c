/* worker_config: a worker's configuration from its environment and flags, and its --help.
 *
 * Owns worker_config: every value is read from the environment first and a flag overrides it;
 * each is range-checked here so the rest of the engine never sees a value it cannot use.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "worker_internal.h"

long worker_config_default_linger_ms(const worker_spec *spec)
{
    return spec->linger_ms > 0 ? spec->linger_ms : WORKER_DEFAULT_LINGER_MS;
}

int worker_config_batch_max(const worker_config *c)
{
    return (int)(c->batch < c->prefetch ? c->batch : c->prefetch);
}

static void worker_config_usage(const worker_spec *spec, FILE *out)
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
            "  --shard I             the shard consumed when ORDERPIPE_SHARDS shards this queue:\n"
            "                        '%s.shard.I', 0 <= I < its shard count [WORKER_SHARD]\n"
            "  ORDERPIPE_SHARDS      queues sharded by order id, e.g. \"%s=4\" (default none);\n"
            "                        every program of a deployment must have the same value\n"
            "  INBOX_RETENTION / OUTBOX_RETENTION  how long handled message ids and published\n"
            "                        events are kept (default 7d / 1d)\n"
            "  TRANSITION_RETENTION  how long order_transitions are kept (default 0: for ever)\n"
            "  RETENTION_PRUNE       partition (default): drop whole time partitions past\n"
            "                        retention; delete: delete rows in small batches instead\n"
            "  RETENTION_INTERVAL    how often retention runs, plus up to half of it or 30 s at\n"
            "                        random (default 60s)\n"
            "%s%s"
            "\nLogs are JSON lines on stderr (LOG_LEVEL=debug|info|warn|error). SIGTERM drains.\n",
            spec->program, spec->summary, spec->name, spec->name, spec->name,
            worker_config_default_linger_ms(spec), spec->name, spec->name, spec->help_extra ? "\n" : "",
            spec->help_extra ? spec->help_extra : "");
}

static op_status worker_config_env(worker_config *c, const worker_spec *spec)
{
    c->amqp_url = config_env_str("AMQP_URL", NULL);
    c->database_url = config_env_str("DATABASE_URL", NULL);
    c->schema_dir = config_env_str("ORDERPIPE_SCHEMA_DIR", jsonschema_default_dir());
    c->metrics_listen = config_env_str("METRICS_LISTEN", "127.0.0.1:0");
    c->idle_wait_ms = 200;
    if (config_env_long("WORKER_PREFETCH", 512, 1, 65535, &c->prefetch) != 0 ||
        config_env_long("WORKER_BATCH", 256, 1, 10000, &c->batch) != 0 ||
        config_env_long("WORKER_BATCH_LINGER_MS", worker_config_default_linger_ms(spec), 0, 1000,
                        &c->linger_ms) != 0 ||
        config_env_long("WORKER_CALL_BUDGET_MS", 20000, 100, 50000, &c->call_budget_ms) != 0 ||
        config_env_long("WORKER_SHARD", -1, -1, TOPOLOGY_MAX_SHARDS - 1, &c->shard) != 0)
        return OP_ERR_PERMANENT;
    long inbox_ms, outbox_ms, transition_ms, interval_ms;
    if (config_parse_duration_ms(config_env_str("INBOX_RETENTION", "7d"), &inbox_ms) != 0 ||
        config_parse_duration_ms(config_env_str("OUTBOX_RETENTION", "1d"), &outbox_ms) != 0 ||
        inbox_ms < 1000 || outbox_ms < 1000 || inbox_ms / 1000 > 2147483647L ||
        outbox_ms / 1000 > 2147483647L) {
        fprintf(stderr, "INBOX_RETENTION / OUTBOX_RETENTION must be durations of 1s or more\n");
        return OP_ERR_PERMANENT;
    }
    if (config_parse_duration_ms(config_env_str("TRANSITION_RETENTION", "0"), &transition_ms) != 0 ||
        (transition_ms != 0 && transition_ms < 1000) || transition_ms / 1000 > 2147483647L) {
        fprintf(stderr, "TRANSITION_RETENTION must be 0 (kept for ever) or a duration of 1s or more\n");
        return OP_ERR_PERMANENT;
    }
    if (config_parse_duration_ms(config_env_str("RETENTION_INTERVAL", "60s"), &interval_ms) != 0 ||
        interval_ms < 1000 || interval_ms > 86400000L) {
        fprintf(stderr, "RETENTION_INTERVAL must be a duration from 1s to 1d\n");
        return OP_ERR_PERMANENT;
    }
    const char *prune = config_env_str("RETENTION_PRUNE", "partition");
    if (strcmp(prune, "partition") != 0 && strcmp(prune, "delete") != 0) {
        fprintf(stderr, "RETENTION_PRUNE must be partition or delete\n");
        return OP_ERR_PERMANENT;
    }
    c->inbox_retention_s = inbox_ms / 1000;
    c->outbox_retention_s = outbox_ms / 1000;
    c->transition_retention_s = transition_ms / 1000;
    c->prune_interval_s = interval_ms / 1000;
    c->prune_rows = strcmp(prune, "delete") == 0;
    return OP_OK;
}

/* The queue consumed: a sharded queue needs a shard within its count, an unsharded one none. */
static op_status worker_config_shard(worker_config *c, const worker_spec *spec)
{
    if (topology_check_shards() != OP_OK)
        return OP_ERR_PERMANENT;
    int shards = topology_shards(spec->name);
    if (shards == 0 && c->shard >= 0) {
        fprintf(stderr, "%s: WORKER_SHARD / --shard given, but ORDERPIPE_SHARDS does not shard "
                        "queue '%s'\n", spec->program, spec->name);
        return OP_ERR_PERMANENT;
    }
    if (shards > 0 && (c->shard < 0 || c->shard >= shards)) {
        fprintf(stderr, "%s: queue '%s' is sharded over %d queues (ORDERPIPE_SHARDS): set "
                        "WORKER_SHARD / --shard to 0..%d\n", spec->program, spec->name, shards,
                shards - 1);
        return OP_ERR_PERMANENT;
    }
    topology_consume_queue(spec->name, (int)c->shard, c->queue, sizeof c->queue);
    return OP_OK;
}

/* A numeric flag's value into *out, or a message naming the flag and its range. */
static op_status worker_config_flag_long(const char *flag, const char *text, long min, long max,
                                         long *out)
{
    if (config_parse_long(text, min, max, out) == 0)
        return OP_OK;
    fprintf(stderr, "--%s: must be an integer in [%ld, %ld]\n", flag, min, max);
    return OP_ERR_PERMANENT;
}

op_status worker_config_parse(worker_config *c, const worker_spec *spec, int argc, char **argv,
                              bool *help)
{
    static const struct option opts[] = {
        {"amqp-url", required_argument, NULL, 'a'},
        {"database-url", required_argument, NULL, 'd'},
        {"prefetch", required_argument, NULL, 'p'},
        {"batch", required_argument, NULL, 'b'},
        {"batch-linger-ms", required_argument, NULL, 'l'},
        {"metrics-listen", required_argument, NULL, 'm'},
        {"schemas", required_argument, NULL, 's'},
        {"shard", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *help = false;
    *c = (worker_config){0};
    if (worker_config_env(c, spec) != OP_OK)
        return OP_ERR_PERMANENT;
    op_status st = OP_OK;
    int opt;
    while (st == OP_OK && (opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a': c->amqp_url = optarg; break;
        case 'd': c->database_url = optarg; break;
        case 'm': c->metrics_listen = optarg; break;
        case 's': c->schema_dir = optarg; break;
        case 'p': st = worker_config_flag_long("prefetch", optarg, 1, 65535, &c->prefetch); break;
        case 'b': st = worker_config_flag_long("batch", optarg, 1, 10000, &c->batch); break;
        case 'S':
            st = worker_config_flag_long("shard", optarg, 0, TOPOLOGY_MAX_SHARDS - 1, &c->shard);
            break;
        case 'l':
            st = worker_config_flag_long("batch-linger-ms", optarg, 0, 1000, &c->linger_ms);
            break;
        case 'h':
            worker_config_usage(spec, stdout);
            *help = true;
            return OP_OK;
        default:
            worker_config_usage(spec, stderr);
            return OP_ERR_PERMANENT;
        }
    }
    if (st != OP_OK)
        return st;
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", spec->program, argv[optind]);
        return OP_ERR_PERMANENT;
    }
    if (!c->amqp_url || !c->database_url) {
        fprintf(stderr,
                "%s: AMQP_URL and DATABASE_URL (or --amqp-url, --database-url) are required\n",
                spec->program);
        return OP_ERR_PERMANENT;
    }
    return worker_config_shard(c, spec);
}
