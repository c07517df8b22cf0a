/* worker: the process every saga worker runs (see worker.h; the parts are listed in
 * worker_internal.h).
 *
 * Owns the worker's life: signals, the loop of batches and housekeeping, start-up and the drain
 * on SIGTERM, and the accessors handlers use.
 */
#include <signal.h>
#include <unistd.h>

#include "worker_internal.h"

/* The one process-wide flag a signal handler may set; everything else lives in struct worker. */
static volatile sig_atomic_t worker_stop_requested;

static void worker_on_signal(int sig)
{
    (void)sig;
    worker_stop_requested = 1;
}

const char *worker_name(const worker *w) { return w->spec->name; }
bool worker_stopping(const worker *w) { (void)w; return worker_stop_requested != 0; }

bool worker_batch_has_time(const worker *w)
{
    return clock_ms_since(w->batch_started_ms) < (uint64_t)w->cfg.call_budget_ms;
}

long worker_batch_ms_left(const worker *w)
{
    return w->cfg.call_budget_ms - (long)clock_ms_since(w->batch_started_ms);
}

struct metrics_registry *worker_registry(const worker *w)
{
    return worker_metrics_registry(w->metrics);
}

static void worker_signals(void)
{
    struct sigaction sa = {.sa_handler = worker_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The event schemas: without them the worker could check nothing, a configuration error. */
static op_status worker_load_schemas(worker *w)
{
    char err[512];
    if (jsonschema_registry_load(w->cfg.schema_dir, &w->schemas, err, sizeof err) == OP_OK)
        return OP_OK;
    log_error(NULL, "cannot load schemas from %s: %s", w->cfg.schema_dir, err);
    return OP_ERR_PERMANENT;
}

/* The metrics endpoint, the connections and the spec's start-up. */
static op_status worker_start(worker *w)
{
    if (worker_metrics_start(&w->metrics, w->cfg.metrics_listen, w->spec->name) != OP_OK) {
        log_error(NULL, "cannot serve metrics on %s", w->cfg.metrics_listen);
        return OP_ERR_PERMANENT;
    }
    op_status st = worker_conn_open(w);
    if (st != OP_OK) {
        if (!worker_stopping(w))
            log_error(NULL, "start-up failed");
        return st;
    }
    if (w->spec->start && (st = w->spec->start(w, w->db, w->spec->arg)) != OP_OK) {
        log_error(NULL, "start-up failed: %s", db_last_error(w->db));
        return st;
    }
    log_info(NULL, "started: queue %s, prefetch %ld, batch %ld, linger %ld ms", w->cfg.queue,
             w->cfg.prefetch, w->cfg.batch, w->cfg.linger_ms);
    return OP_OK;
}

static void worker_loop(worker *w)
{
    while (!worker_stopping(w)) {
        if (worker_conn_ensure(w) != OP_OK)
            break;
        worker_batch_handle(w);
        if (w->given_back > 0)
            worker_failure_repair_routes(w);
        worker_housekeeping(w);
    }
}

/* What the worker handled is acked; what it committed is published now; unacked prefetched
 * deliveries go back to the queue when the consumer closes. */
static void worker_drain(worker *w)
{
    worker_housekeeping_flush_outbox(w);
    log_info(NULL, "drained, exiting");
}

static void worker_free(worker *w)
{
    worker_conn_close(w);
    worker_metrics_stop(w->metrics);
    jsonschema_registry_free(w->schemas);
}

int worker_main(const worker_spec *spec, int argc, char **argv)
{
    worker w = {.spec = spec};
    log_init(spec->program);
    bool help;
    if (worker_config_parse(&w.cfg, spec, argc, argv, &help) != OP_OK)
        return 2;
    if (help)
        return 0;
    w.seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    backoff_init(&w.route_backoff, 100, 5000, w.seed);
    if (worker_load_schemas(&w) != OP_OK)
        return 2;
    worker_signals();

    int rc = 1;
    if (worker_start(&w) == OP_OK) {
        worker_loop(&w);
        worker_drain(&w);
        rc = 0;
    }
    worker_free(&w);
    return rc;
}
