/* orderpipe-amqp-probe: small broker tasks for tests, benchmarks and operators.
 *
 *   declare                          declare the pipeline's topology
 *   depth QUEUE                      messages ready in QUEUE
 *   publish KEY BODY [--exchange E] [--message-id ID] [--header K=V ...] [--content-type T]
 *     (an integer V goes as one; without --content-type, a structured CloudEvent's)
 *                                    publish one persistent message, exit 0 once confirmed
 *   publish-rate N [--size B] [--window W]
 *                                    the broker's raw publish-with-confirm rate on a quorum queue
 *                                    (W publishes in flight before waiting for their confirms)
 *   consume-rate N                   the broker's raw consume+ack rate on that queue
 * The rates print one JSON line; they are the references the benchmarks compare against.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "samples.h"
#include "topology.h"

#define PROBE_QUEUE "orderpipe.probe"
#define PROBE_WINDOW 256 /* the default: like the outbox relay's batches */

static void probe_usage(FILE *out)
{
    fprintf(out, "usage: orderpipe-amqp-probe declare | depth QUEUE | publish KEY BODY [--exchange E] "
                 "[--message-id ID] [--header K=V]... [--content-type T] | publish-rate N [--size B] [--window W] | consume-rate N\n"
                 "Uses AMQP_URL. The rates use the quorum queue " PROBE_QUEUE ".\n");
}

static int probe_publish_rate(broker *b, long n, long size, long window)
{
    char *body = mem_alloc((size_t)size + 1);
    memset(body, 'x', (size_t)size);
    body[size] = '\0';
    /* Pipelined like the outbox relay: a window of publishes, then wait for their confirms. */
    double t0 = clock_now_ms_f();
    for (long i = 0; i < n; i++) {
        broker_message m = {.exchange = "", .routing_key = PROBE_QUEUE, .body = body, .len = (size_t)size};
        if (broker_publish(b, &m, NULL) != OP_OK) {
            fprintf(stderr, "probe: %s\n", broker_last_error(b));
            free(body);
            return 1;
        }
        if ((i + 1) % window == 0 && broker_wait_confirms(b, 30000) != OP_OK) {
            fprintf(stderr, "probe: %s\n", broker_last_error(b));
            free(body);
            return 1;
        }
    }
    if (broker_wait_confirms(b, 30000) != OP_OK) {
        fprintf(stderr, "probe: %s\n", broker_last_error(b));
        free(body);
        return 1;
    }
    double secs = (clock_now_ms_f() - t0) / 1e3;
    printf("{\"published\":%ld,\"size\":%ld,\"window\":%ld,\"seconds\":%.3f,\"rate\":%.1f}\n", n, size,
           window, secs, (double)n / secs);
    free(body);
    return 0;
}

static int probe_consume_rate(broker *b, long n)
{
    if (broker_consume(b, PROBE_QUEUE, 1000) != OP_OK) {
        fprintf(stderr, "probe: %s\n", broker_last_error(b));
        return 1;
    }
    double t0 = clock_now_ms_f();
    long got = 0;
    broker_delivery d;
    while (got < n && broker_next(b, 2000, &d) == OP_OK) {
        got++;
        if (got % 100 == 0 || got == n)
            broker_ack(b, d.tag, true);
        broker_delivery_free(&d);
    }
    double secs = (clock_now_ms_f() - t0) / 1e3;
    printf("{\"consumed\":%ld,\"seconds\":%.3f,\"rate\":%.1f}\n", got, secs, (double)got / secs);
    return got == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    log_init("orderpipe-amqp-probe");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        probe_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *url = config_env_str("AMQP_URL", NULL);
    if (!url) {
        fprintf(stderr, "probe: AMQP_URL is required\n");
        return 2;
    }
    const char *cmd = argv[1];
    broker *b;
    broker_options o = {.urls = url, .name = "orderpipe-amqp-probe", .confirms = strcmp(cmd, "consume-rate") != 0};
    if (broker_connect(&b, &o) != OP_OK) {
        fprintf(stderr, "probe: %s\n", b ? broker_last_error(b) : "bad AMQP_URL");
        broker_close(b);
        return 1;
    }
    int rc = 2;
    if (strcmp(cmd, "declare") == 0) {
        rc = topology_declare(b) == OP_OK ? 0 : 1;
    } else if (strcmp(cmd, "publish") == 0 && argc >= 4) {
        const char *exchange = NULL, *message_id = NULL, *content_type = NULL;
        json_t *headers = json_object();
        static const struct option opts[] = {
            {"exchange", 1, NULL, 'e'}, {"message-id", 1, NULL, 'm'}, {"header", 1, NULL, 'H'},
            {"content-type", 1, NULL, 'c'}, {NULL, 0, NULL, 0}};
        int c;
        optind = 4;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
            if (c == 'e') exchange = optarg;
            else if (c == 'm') message_id = optarg;
            else if (c == 'c') content_type = optarg;
            else if (c == 'H' && strchr(optarg, '=')) {
                char *eq = strchr(optarg, '=');
                *eq = '\0';
                /* An integer value goes as one (x-attempt is read as an integer). */
                char *end;
                long long n = strtoll(eq + 1, &end, 10);
                json_object_set_new(headers, optarg,
                                    eq[1] && !*end ? json_integer(n) : json_string(eq + 1));
            }
        }
        broker_message m = {.exchange = exchange, .routing_key = argv[2], .body = argv[3],
                            .len = strlen(argv[3]), .message_id = message_id, .type = argv[2],
                            .content_type = content_type, .headers = headers};
        rc = (broker_publish(b, &m, NULL) == OP_OK && broker_wait_confirms(b, 10000) == OP_OK) ? 0 : 1;
        if (rc)
            fprintf(stderr, "probe: %s\n", broker_last_error(b));
        json_decref(headers);
    } else if (strcmp(cmd, "depth") == 0 && argc >= 3) {
        long depth = broker_queue_depth(b, argv[2]);
        if (depth >= 0)
            printf("%ld\n", depth);
        rc = depth >= 0 ? 0 : 1;
    } else if (strcmp(cmd, "publish-rate") == 0 && argc >= 3) {
        long n, size = 300, window = PROBE_WINDOW;
        bool ok = config_parse_long(argv[2], 1, 100000000, &n) == OP_OK;
        for (int i = 3; ok && i < argc; i += 2) {
            if (i + 1 >= argc)
                ok = false;
            else if (strcmp(argv[i], "--size") == 0)
                ok = config_parse_long(argv[i + 1], 1, 1 << 20, &size) == OP_OK;
            else if (strcmp(argv[i], "--window") == 0)
                ok = config_parse_long(argv[i + 1], 1, 65535, &window) == OP_OK;
            else
                ok = false;
        }
        if (ok)
            rc = broker_declare_quorum_queue(b, PROBE_QUEUE) == OP_OK ? probe_publish_rate(b, n, size, window) : 1;
    } else if (strcmp(cmd, "consume-rate") == 0 && argc >= 3) {
        long n;
        if (config_parse_long(argv[2], 1, 100000000, &n) == OP_OK)
            rc = probe_consume_rate(b, n);
    }
    if (rc == 2)
        probe_usage(stderr);
    broker_close(b);
    return rc;
}
