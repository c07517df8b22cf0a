/* orderpipe-replay: inspects dead-lettered messages and sends them back to work.
 *
 *   list    [--queue Q]                         one line per dead letter: queue, order, reason, age
 *   show    MESSAGE_ID                          headers and body of one dead letter
 *   requeue [--queue Q] [--order ID] [--reason R] [--dry-run] [--limit N] [--rate R]
 *   redrive ORDER_ID                            restart a stalled order from its recorded state
 *
 * A scan consumes a DLQ without acking and closes the channel at the end, so every message it
 * does not move goes back to the queue. A moved message is published to its original queue with
 * a publisher confirm before its dead letter is acked: an interrupted requeue loses nothing, and
 * a message moved twice is absorbed by the consumer's inbox (same message id). The retry count
 * starts again at 1.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"
#include "log.h"
#include "redrive.h"
#include "topology.h"

typedef enum { REPLAY_LIST, REPLAY_SHOW, REPLAY_REQUEUE, REPLAY_REDRIVE } replay_command;

typedef struct replay_config {
    replay_command command;
    const char *amqp_url;
    const char *database_url; /* redrive */
    const char *queue;      /* NULL: every work queue's DLQ */
    const char *order_id;   /* --order filter; the order to redrive */
    const char *reason;
    const char *message_id; /* show */
    bool dry_run;
    long limit;             /* 0: no limit */
    long rate;              /* messages/s, 0: unpaced */
} replay_config;

typedef struct replay_stats {
    long seen, matched, moved;
} replay_stats;

static const char *replay_header(const broker_delivery *d, const char *key)
{
    json_t *v = json_object_get(d->headers, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The order id from the body's CloudEvents "orderid", or "-" (the body may be any garbage). */
static void replay_order_id(const broker_delivery *d, char *out, size_t size)
{
    json_t *root = json_loadb(d->body, d->len, 0, NULL);
    const char *id = json_string_value(json_object_get(root, "orderid"));
    snprintf(out, size, "%s", id ? id : "-");
    json_decref(root);
}

static long replay_age_s(const broker_delivery *d)
{
    const char *at = replay_header(d, "x-dead-at");
    struct tm tm = {0};
    if (!at || !strptime(at, "%Y-%m-%dT%H:%M:%S", &tm))
        return -1;
    return (long)(time(NULL) - timegm(&tm));
}

static bool replay_matches(const replay_config *c, const broker_delivery *d, const char *order_id)
{
    if (c->order_id && strcmp(c->order_id, order_id) != 0)
        return false;
    const char *reason = replay_header(d, "x-dead-reason");
    if (c->reason && (!reason || strcmp(c->reason, reason) != 0))
        return false;
    if (c->message_id && (!d->message_id || strcmp(c->message_id, d->message_id) != 0))
        return false;
    return true;
}

static void replay_print_line(const char *queue, const broker_delivery *d, const char *order_id)
{
    const char *reason = replay_header(d, "x-dead-reason");
    const char *err = replay_header(d, "x-last-error");
    json_t *attempts = json_object_get(d->headers, "x-attempts");
    long age = replay_age_s(d);
    printf("%-18s %-36s %-36s %-18s %3lld %7lds  %s\n", queue, d->message_id ? d->message_id : "-",
           order_id, reason ? reason : "-",
           json_is_integer(attempts) ? (long long)json_integer_value(attempts) : 0LL, age,
           err ? err : "");
}

static void replay_print_full(const char *queue, const broker_delivery *d)
{
    json_t *out = json_pack("{ss ss* ss* sO}", "queue", queue, "message_id", d->message_id,
                            "routing_key", d->routing_key, "headers", d->headers);
    json_t *body = json_loadb(d->body, d->len, 0, NULL);
    json_object_set_new(out, "body", body ? body : json_stringn_nocheck(d->body, d->len));
    char *text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(out);
}

/* Publishes d back to its original queue and waits for the confirm. */
static op_status replay_move(broker *pub, const broker_delivery *d, const char *queue)
{
    json_t *h = json_deep_copy(d->headers);
    const char *drop[] = {"x-dead-reason", "x-dead-at", "x-attempts", "x-attempt",
                          "x-original-queue", "x-last-error"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++)
        json_object_del(h, drop[i]);
    json_object_set_new(h, "x-replayed", json_integer(1));
    broker_message m = {.exchange = "", .routing_key = queue, .body = d->body, .len = d->len,
                        .message_id = d->message_id, .correlation_id = d->correlation_id,
                        .type = d->type, .content_type = d->content_type, .headers = h};
    op_status st = broker_publish(pub, &m, NULL);
    if (st == OP_OK)
        st = broker_wait_confirms(pub, 10000);
    json_decref(h);
    return st;
}

/* Scans one work queue's DLQ. Returns 0, or 1 when the broker failed. */
static int replay_scan(const replay_config *c, const char *queue, replay_stats *stats)
{
    char dlq[128];
    topology_dlq(queue, dlq, sizeof dlq);
    broker_options bo = {.urls = c->amqp_url, .name = "orderpipe-replay/scan"};
    broker *con = NULL, *pub = NULL;
    int rc = 1;
    if (broker_connect(&con, &bo) != OP_OK) {
        fprintf(stderr, "replay: cannot connect: %s\n", con ? broker_last_error(con) : "AMQP_URL is not usable");
        goto out;
    }
    long depth = broker_queue_depth(con, dlq);
    if (depth < 0) {
        fprintf(stderr, "replay: queue %s: %s\n", dlq, broker_last_error(con));
        goto out;
    }
    rc = 0;
    if (depth == 0)
        goto out;
    if (c->command == REPLAY_REQUEUE && !c->dry_run) {
        bo.name = "orderpipe-replay/publish";
        bo.confirms = true;
        if (broker_connect(&pub, &bo) != OP_OK) {
            fprintf(stderr, "replay: cannot connect: %s\n", broker_last_error(pub));
            rc = 1;
            goto out;
        }
    }
    /* Prefetch the whole depth: nothing is acked until moved, so the scan must see every
     * message once without the broker redelivering the unacked ones to us. */
    if (broker_consume(con, dlq, (uint16_t)(depth > 65535 ? 65535 : depth)) != OP_OK) {
        fprintf(stderr, "replay: consume %s: %s\n", dlq, broker_last_error(con));
        rc = 1;
        goto out;
    }
    struct timespec pace = {0, c->rate > 0 ? 1000000000L / c->rate : 0};
    for (long i = 0; i < depth; i++) {
        broker_delivery d;
        op_status st = broker_next(con, 2000, &d);
        if (st == OP_TIMEOUT)
            break;
        if (st != OP_OK) {
            fprintf(stderr, "replay: reading %s: %s\n", dlq, broker_last_error(con));
            rc = 1;
            break;
        }
        stats->seen++;
        char order_id[64];
        replay_order_id(&d, order_id, sizeof order_id);
        bool match = replay_matches(c, &d, order_id) &&
                     (c->limit == 0 || stats->matched < c->limit);
        if (match) {
            stats->matched++;
            const char *target = replay_header(&d, "x-original-queue");
            if (!target)
                target = queue;
            if (c->command == REPLAY_LIST)
                replay_print_line(queue, &d, order_id);
            else if (c->command == REPLAY_SHOW)
                replay_print_full(queue, &d);
            else if (c->dry_run)
                printf("would requeue %s (order %s) to %s\n", d.message_id ? d.message_id : "-",
                       order_id, target);
            else if (replay_move(pub, &d, target) == OP_OK &&
                     broker_ack(con, d.tag, false) == OP_OK) {
                stats->moved++;
                printf("requeued %s (order %s) to %s\n", d.message_id ? d.message_id : "-",
                       order_id, target);
                if (pace.tv_nsec)
                    nanosleep(&pace, NULL);
            } else {
                fprintf(stderr, "replay: moving %s failed: %s\n", d.message_id ? d.message_id : "-",
                        broker_last_error(pub));
                rc = 1;
                broker_delivery_free(&d);
                break;
            }
        }
        broker_delivery_free(&d);
    }
out:
    broker_close(pub);
    broker_close(con); /* unacked dead letters return to the DLQ */
    return rc;
}

static void replay_usage(FILE *out)
{
    fprintf(out,
            "usage: orderpipe-replay list [--queue Q] [--order ID] [--reason R]\n"
            "       orderpipe-replay show MESSAGE_ID [--queue Q]\n"
            "       orderpipe-replay requeue [--queue Q] [--order ID] [--reason R] [--dry-run]\n"
            "                                [--limit N] [--rate R]\n"
            "       orderpipe-replay redrive ORDER_ID\n\n"
            "Lists, shows and requeues dead-lettered messages (<queue>.dlq) of the work queues.\n"
            "requeue sends each matching message back to its original queue, confirmed before\n"
            "its dead letter is removed; --limit caps how many (a batch), --rate paces them\n"
            "(messages/s). Re-running after an interruption continues where it stopped.\n"
            "redrive restarts a stalled order (reserved or paid) from its recorded state by\n"
            "re-emitting its last event through the outbox; terminal orders are left alone.\n\n"
            "  --amqp-url URLS   AMQP URLs [AMQP_URL]\n"
            "  DATABASE_URL      PostgreSQL connection string (redrive)\n");
}

static int replay_parse(replay_config *c, int argc, char **argv)
{
    c->amqp_url = config_env_str("AMQP_URL", NULL);
    c->database_url = config_env_str("DATABASE_URL", NULL);
    if (argc < 2) {
        replay_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        replay_usage(stdout);
        return 1;
    }
    if (strcmp(argv[1], "list") == 0) c->command = REPLAY_LIST;
    else if (strcmp(argv[1], "show") == 0) c->command = REPLAY_SHOW;
    else if (strcmp(argv[1], "requeue") == 0) c->command = REPLAY_REQUEUE;
    else if (strcmp(argv[1], "redrive") == 0) c->command = REPLAY_REDRIVE;
    else {
        fprintf(stderr, "replay: unknown command '%s'\n", argv[1]);
        replay_usage(stderr);
        return 2;
    }
    static const struct option opts[] = {
        {"queue", 1, NULL, 'q'}, {"order", 1, NULL, 'o'}, {"reason", 1, NULL, 'r'},
        {"dry-run", 0, NULL, 'n'}, {"limit", 1, NULL, 'l'}, {"rate", 1, NULL, 'R'},
        {"amqp-url", 1, NULL, 'a'}, {"help", 0, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int o;
    optind = 2;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'q': c->queue = optarg; break;
        case 'o': c->order_id = optarg; break;
        case 'r': c->reason = optarg; break;
        case 'n': c->dry_run = true; break;
        case 'a': c->amqp_url = optarg; break;
        case 'l':
        case 'R':
            if (config_parse_long(optarg, 0, 1000000, o == 'l' ? &c->limit : &c->rate) != 0) {
                fprintf(stderr, "replay: --%s takes a whole number\n", o == 'l' ? "limit" : "rate");
                return 2;
            }
            break;
        case 'h': replay_usage(stdout); return 1;
        default: replay_usage(stderr); return 2;
        }
    }
    if (c->command == REPLAY_SHOW || c->command == REPLAY_REDRIVE) {
        if (optind >= argc) {
            fprintf(stderr, "replay: %s needs %s\n", argv[1],
                    c->command == REPLAY_SHOW ? "a MESSAGE_ID" : "an ORDER_ID");
            return 2;
        }
        if (c->command == REPLAY_SHOW)
            c->message_id = argv[optind++];
        else
            c->order_id = argv[optind++];
    }
    if (c->command == REPLAY_REDRIVE && !c->database_url) {
        fprintf(stderr, "replay: redrive needs DATABASE_URL\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "replay: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (c->queue && !topology_find(c->queue)) {
        fprintf(stderr, "replay: '%s' is not a work queue\n", c->queue);
        return 2;
    }
    if (!c->amqp_url) {
        fprintf(stderr, "replay: AMQP_URL (or --amqp-url) is required\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    replay_config c = {0};
    log_init("orderpipe-replay");
    int rc = replay_parse(&c, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (c.command == REPLAY_REDRIVE)
        return redrive_order(c.amqp_url, c.database_url, c.order_id);
    if (c.command == REPLAY_LIST)
        printf("%-18s %-36s %-36s %-18s %3s %8s  %s\n", "queue", "message_id", "order_id",
               "reason", "att", "age", "last error");
    replay_stats stats = {0};
    rc = 0;
    for (const topology_queue *q = topology_queues; q->name; q++)
        if (!c.queue || strcmp(c.queue, q->name) == 0)
            rc |= replay_scan(&c, q->name, &stats);
    if (c.command == REPLAY_REQUEUE)
        fprintf(stderr, "replay: %ld dead letters seen, %ld matched, %ld %s\n", stats.seen,
                stats.matched, c.dry_run ? stats.matched : stats.moved,
                c.dry_run ? "would be requeued" : "requeued");
    if (c.command == REPLAY_SHOW && stats.matched == 0) {
        fprintf(stderr, "replay: no dead letter with message id %s\n", c.message_id);
        return 1;
    }
    return rc;
}
