/* orderpipe-latency-floor: the floor under the saga's placed -> confirmed latency on this machine.
 *
 * Between an order's placement and its confirmation lie, one after the other, three trips through
 * a quorum queue (order.placed, stock.reserved, payment.succeeded: each published persistent and
 * delivered to a consumer on another connection) and four commits (the reservation's, the payment
 * attempt's, the provider's booking, the payment's outcome; the confirmed transition is written
 * before its own commit). This program runs exactly those durable steps for one order at a time,
 * with no batching, no other order and no work besides them: one-row inserts for the commits,
 * 700-byte messages for the hops. What it measures is what no pipeline with the same durability
 * can beat on the same machine, so `scripts/bench refs` reports it beside the latency figures.
 *
 * Uses AMQP_URL (a quorum queue orderpipe.latency-floor is declared) and DATABASE_URL (a table
 * latency_floor_probe is created and dropped). Prints one JSON line.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "samples.h"

#define FLOOR_QUEUE "orderpipe.latency-floor"
#define FLOOR_HOPS 3
#define FLOOR_BODY_SIZE 700

/* The saga's commits between placed and confirmed, by the hop they follow (docs/design.md §2):
 * after order.placed the reservation commits once; after stock.reserved the payment commits its
 * attempt, the provider its booking, the payment its outcome; after payment.succeeded the
 * confirmed transition is timestamped inside the transaction, before its commit. */
static const int floor_commits_after_hop[FLOOR_HOPS] = {1, 3, 0};

static int floor_commits_per_order(void)
{
    int n = 0;
    for (int h = 0; h < FLOOR_HOPS; h++)
        n += floor_commits_after_hop[h];
    return n;
}

typedef struct floor_config {
    const char *amqp_url;
    const char *db_url;
    long orders;
} floor_config;

/* What one run measured, in ms; each array holds one value per sample. Owned by floor_run's
 * caller (floor_samples_free). */
typedef struct floor_samples {
    double *chain, *hop, *commit;
    long nchain, nhop, ncommit;
} floor_samples;

static void floor_usage(FILE *out)
{
    fprintf(out,
            "usage: orderpipe-latency-floor [--orders N]\n"
            "Runs the saga's sequential durable steps (3 quorum-queue hops, 4 one-row commits) for\n"
            "N orders (default 300), one at a time, and prints one JSON line: the chain's\n"
            "p50/p95/p99/max and each kind of step's p50/p99, in ms.\n"
            "Environment: AMQP_URL (declares the quorum queue " FLOOR_QUEUE "),\n"
            "DATABASE_URL (creates and drops the table latency_floor_probe).\n");
}

/* 0 on success, 1 on bad arguments (message printed), -1 for --help. */
static int floor_parse_config(floor_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"orders", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    cfg->orders = 300;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h')
            return -1;
        if (c != 'n' || config_parse_long(optarg, 1, 1000000, &cfg->orders) != OP_OK) {
            fprintf(stderr, "latency-floor: bad arguments\n");
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "latency-floor: unexpected argument '%s'\n", argv[optind]);
        return 1;
    }
    cfg->amqp_url = config_env_str("AMQP_URL", NULL);
    cfg->db_url = config_env_str("DATABASE_URL", NULL);
    if (!cfg->amqp_url || !cfg->db_url) {
        fprintf(stderr, "latency-floor: AMQP_URL and DATABASE_URL are required\n");
        return 1;
    }
    return 0;
}

/* One hop: publishes a persistent message and waits until the consumer has it. Messages left in
 * the queue by an earlier, interrupted run are acked and skipped (they carry other ids). */
static op_status floor_hop(broker *pub, broker *sub, const char *body, const char *id)
{
    broker_message m = {.exchange = "", .routing_key = FLOOR_QUEUE, .body = body,
                        .len = FLOOR_BODY_SIZE, .message_id = id};
    if (broker_publish(pub, &m, NULL) != OP_OK)
        return OP_ERR_TRANSIENT;
    for (;;) {
        broker_delivery d;
        if (broker_next(sub, 10000, &d) != OP_OK)
            return OP_ERR_TRANSIENT;
        bool ours = d.message_id && strcmp(d.message_id, id) == 0;
        op_status st = broker_ack(sub, d.tag, false);
        broker_delivery_free(&d);
        if (st != OP_OK)
            return st;
        if (ours)
            return OP_OK;
    }
}

static op_status floor_run(broker *pub, broker *sub, db *d, long orders, floor_samples *s)
{
    char body[FLOOR_BODY_SIZE + 1];
    memset(body, 'x', FLOOR_BODY_SIZE);
    body[FLOOR_BODY_SIZE] = '\0';
    for (long i = 0; i < orders; i++) {
        double start = clock_now_ms_f();
        for (int h = 0; h < FLOOR_HOPS; h++) {
            char id[96];
            /* The pid and the time keep an interrupted run's leftovers from passing for ours. */
            snprintf(id, sizeof id, "floor-%ld-%ld-%d-%ld", (long)getpid(), (long)time(NULL), h, i);
            double t = clock_now_ms_f();
            if (floor_hop(pub, sub, body, id) != OP_OK) {
                fprintf(stderr, "latency-floor: hop %d of order %ld: %s / %s\n", h + 1, i,
                        broker_last_error(pub), broker_last_error(sub));
                return OP_ERR_TRANSIENT;
            }
            s->hop[s->nhop++] = clock_now_ms_f() - t;
            /* The publisher's confirm is not on the chain (the next worker gets the message
             * whether or not its publisher has heard back yet), so it is collected off the clock. */
            double off = clock_now_ms_f();
            if (broker_wait_confirms(pub, 10000) != OP_OK) {
                fprintf(stderr, "latency-floor: confirm of order %ld: %s\n", i, broker_last_error(pub));
                return OP_ERR_TRANSIENT;
            }
            start += clock_now_ms_f() - off;
            for (int c = 0; c < floor_commits_after_hop[h]; c++) {
                t = clock_now_ms_f();
                if (db_command(d, "insert into latency_floor_probe(v) values (1)", 0, NULL) != OP_OK) {
                    fprintf(stderr, "latency-floor: commit of order %ld: %s\n", i, db_last_error(d));
                    return OP_ERR_TRANSIENT;
                }
                s->commit[s->ncommit++] = clock_now_ms_f() - t;
            }
        }
        s->chain[s->nchain++] = clock_now_ms_f() - start;
    }
    return OP_OK;
}

static void floor_print(floor_samples *s)
{
    samples_sort(s->chain, s->nchain);
    samples_sort(s->hop, s->nhop);
    samples_sort(s->commit, s->ncommit);
    printf("{\"orders\":%ld,\"hops\":%d,\"commits\":%ld,"
           "\"chain_ms\":{\"p50\":%.1f,\"p95\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
           "\"hop_ms\":{\"p50\":%.2f,\"p99\":%.2f},\"commit_ms\":{\"p50\":%.2f,\"p99\":%.2f}}\n",
           s->nchain, FLOOR_HOPS, (long)floor_commits_per_order(),
           samples_percentile(s->chain, s->nchain, 50), samples_percentile(s->chain, s->nchain, 95),
           samples_percentile(s->chain, s->nchain, 99), s->chain[s->nchain - 1],
           samples_percentile(s->hop, s->nhop, 50), samples_percentile(s->hop, s->nhop, 99),
           samples_percentile(s->commit, s->ncommit, 50), samples_percentile(s->commit, s->ncommit, 99));
}

static void floor_samples_free(floor_samples *s)
{
    free(s->chain);
    free(s->hop);
    free(s->commit);
}

int main(int argc, char **argv)
{
    log_init("orderpipe-latency-floor");
    floor_config cfg;
    int parsed = floor_parse_config(&cfg, argc, argv);
    if (parsed != 0) {
        floor_usage(parsed < 0 ? stdout : stderr);
        return parsed < 0 ? 0 : 2;
    }

    broker *pub = NULL, *sub = NULL;
    db *d = NULL;
    broker_options po = {.urls = cfg.amqp_url, .name = "orderpipe-latency-floor", .confirms = true};
    broker_options so = {.urls = cfg.amqp_url, .name = "orderpipe-latency-floor-consumer"};
    int rc = 1;
    if (broker_connect(&pub, &po) != OP_OK || broker_declare_quorum_queue(pub, FLOOR_QUEUE) != OP_OK) {
        fprintf(stderr, "latency-floor: publisher: %s\n", pub ? broker_last_error(pub) : "bad AMQP_URL");
        goto out;
    }
    if (broker_connect(&sub, &so) != OP_OK || broker_consume(sub, FLOOR_QUEUE, 16) != OP_OK) {
        fprintf(stderr, "latency-floor: consumer: %s\n", sub ? broker_last_error(sub) : "bad AMQP_URL");
        goto out;
    }
    if (db_connect(&d, cfg.db_url, "orderpipe-latency-floor") != OP_OK ||
        db_command(d, "create table if not exists latency_floor_probe(id bigserial primary key, v int)",
                   0, NULL) != OP_OK) {
        fprintf(stderr, "latency-floor: %s\n", d ? db_last_error(d) : "bad DATABASE_URL");
        goto out;
    }

    floor_samples s = {
        .chain = calloc((size_t)cfg.orders, sizeof(double)),
        .hop = calloc((size_t)cfg.orders * FLOOR_HOPS, sizeof(double)),
        .commit = calloc((size_t)cfg.orders * (size_t)floor_commits_per_order(), sizeof(double)),
    };
    if (!s.chain || !s.hop || !s.commit)
        fprintf(stderr, "latency-floor: out of memory for %ld orders\n", cfg.orders);
    else if (floor_run(pub, sub, d, cfg.orders, &s) == OP_OK) {
        floor_print(&s);
        rc = 0;
    }
    floor_samples_free(&s);
    if (db_command(d, "drop table latency_floor_probe", 0, NULL) != OP_OK)
        fprintf(stderr, "latency-floor: dropping latency_floor_probe: %s\n", db_last_error(d));

out:
    db_close(d);
    broker_close(sub);
    broker_close(pub);
    return rc;
}
