/* orderpipe-outbox-relay: publishes the outbox on its own, beside (or instead of) the relays the
 * workers run after each batch. Wakes on LISTEN/NOTIFY, polls as a fallback, publishes batches
 * with confirms, and drains on SIGTERM. Several may run at once (rows are claimed with
 * FOR UPDATE SKIP LOCKED). */
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "config.h"
#include "log.h"
#include "outbox.h"
#include "topology.h"

static volatile sig_atomic_t relay_stop;
static void relay_on_signal(int sig) { (void)sig; relay_stop = 1; }

typedef struct relay_config {
    const char *amqp_url;
    const char *database_url;
    long batch;
    long poll_ms;
    bool once;
} relay_config;

static void relay_usage(FILE *out)
{
    fprintf(out,
            "usage: orderpipe-outbox-relay [options]\n"
            "Publishes unpublished outbox rows with publisher confirms and marks them published.\n\n"
            "  --amqp-url URLS      [AMQP_URL]\n"
            "  --database-url URL   [DATABASE_URL]\n"
            "  --batch N            rows per claim (default 200) [OUTBOX_BATCH]\n"
            "  --poll-ms N          fallback poll interval without notifications (1000)\n"
            "  --once               publish what is there, then exit\n"
            "  --help\n");
}

static int relay_parse(relay_config *c, int argc, char **argv)
{
    c->amqp_url = config_env_str("AMQP_URL", NULL);
    c->database_url = config_env_str("DATABASE_URL", NULL);
    c->poll_ms = 1000;
    if (config_env_long("OUTBOX_BATCH", 200, 1, 100000, &c->batch) != OP_OK)
        return 2;
    static const struct option opts[] = {
        {"amqp-url", 1, NULL, 'a'}, {"database-url", 1, NULL, 'd'}, {"batch", 1, NULL, 'b'},
        {"poll-ms", 1, NULL, 'p'}, {"once", 0, NULL, 'o'}, {"help", 0, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'a': c->amqp_url = optarg; break;
        case 'd': c->database_url = optarg; break;
        case 'o': c->once = true; break;
        case 'b':
        case 'p':
            if (config_parse_long(optarg, 1, 1000000, o == 'b' ? &c->batch : &c->poll_ms) != OP_OK) {
                fprintf(stderr, "orderpipe-outbox-relay: bad number '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': relay_usage(stdout); return 1;
        default: relay_usage(stderr); return 2;
        }
    }
    if (!c->amqp_url || !c->database_url) {
        fprintf(stderr, "orderpipe-outbox-relay: AMQP_URL and DATABASE_URL are required\n");
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    relay_config cfg = {0};
    log_init("orderpipe-outbox-relay");
    int rc = relay_parse(&cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct sigaction sa = {.sa_handler = relay_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    broker *b = NULL;
    db *d = NULL;
    broker_options bo = {.urls = cfg.amqp_url, .name = "orderpipe-outbox-relay", .confirms = true};
    if (broker_connect(&b, &bo) == OP_ERR_PERMANENT)
        return 2;
    if (broker_is_open(b) && topology_declare(b) != OP_OK)
        log_warn(NULL, "declaring the topology failed: %s", broker_last_error(b));
    db_connect(&d, cfg.database_url, "orderpipe-outbox-relay");
    outbox_relay *relay;
    outbox_relay_new(&relay, d, b, (int)cfg.batch);
    backoff bk;
    backoff_init(&bk, 100, 5000, (unsigned)getpid());
    /* LISTEN lasts as long as its connection: each new one (a reconnect, a failover to another
     * server) listens again, or NOTIFYs would go unheard until the next poll. */
    uint64_t listened_on = UINT64_MAX; /* db_reconnect_count of the connection that listens */
    long total = 0;
    while (!relay_stop) {
        if (!db_is_open(d) && db_reconnect(d) != OP_OK) {
            usleep((useconds_t)backoff_next_ms(&bk) * 1000);
            continue;
        }
        if (!broker_is_open(b) && broker_reconnect(b) != OP_OK) {
            log_warn(NULL, "broker unreachable: %s", broker_last_error(b));
            usleep((useconds_t)backoff_next_ms(&bk) * 1000);
            continue;
        }
        if (listened_on != db_reconnect_count(d) && outbox_listen(d) == OP_OK)
            listened_on = db_reconnect_count(d);
        int published = 0;
        if (outbox_relay_flush(relay, &published) != OP_OK) {
            log_warn(NULL, "flush failed: %s / %s", broker_last_error(b), db_last_error(d));
            usleep((useconds_t)backoff_next_ms(&bk) * 1000);
            continue;
        }
        backoff_reset(&bk);
        total += published;
        if (published > 0)
            continue;
        if (cfg.once)
            break;
        /* Idle: sleep until a NOTIFY arrives on the connection, or the poll interval passes. */
        struct pollfd p = {.fd = PQsocket(db_conn(d)), .events = POLLIN};
        poll(&p, 1, (int)cfg.poll_ms);
        outbox_drain_notifications(d);
    }
    log_info(NULL, "stopping after publishing %ld rows", total);
    outbox_relay_free(relay);
    broker_close(b);
    db_close(d);
    return 0;
}
