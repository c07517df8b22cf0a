/* admin_http: the /metrics and /healthz endpoints every program serves.
 *
 * Two ways to run it: admin_http_attach adds the routes to an evhttp the program already runs on
 * its own event loop (the intake); admin_http_start runs a small evhttp server on a thread of its
 * own (workers, whose main loop blocks in rabbitmq-c and libpq), so a scrape never waits for a
 * batch. The health callback may then run on that thread: it must only read state that is safe
 * to read concurrently (atomics).
 * admin_http_start_on serves on a listener of its own but from the caller's event loop (the
 * intake's admin listener, kept off the public port), so the health callback runs on that loop.
 * Memory: admin_http_start(_on) allocates, admin_http_stop joins the thread (if any) and frees it.
 */
#ifndef ORDERPIPE_ADMIN_HTTP_H
#define ORDERPIPE_ADMIN_HTTP_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "status.h"

/* Fills reason (size n) and returns false when the program is not healthy. */
typedef bool (*admin_health_fn)(void *arg, char *reason, size_t n);

typedef struct admin_http admin_http;

/* GET /metrics (unless reg is NULL) and GET /healthz on `http`; other methods on them get 405.
 * The admin listeners' /healthz (admin_http_start, _start_on) also names the database server
 * (db_node_health); the attached one, on a public port, does not. */
void admin_http_attach(struct evhttp *http, metrics_registry *reg, admin_health_fn health,
                       void *arg);

/* Serves on `listen` ("host:port", port 0 = any free port) from a new thread. */
op_status admin_http_start(admin_http **out, const char *listen, metrics_registry *reg,
                           admin_health_fn health, void *arg);
/* Serves on `listen` from `base` (borrowed; must outlive the server), on the caller's thread. */
op_status admin_http_start_on(admin_http **out, struct event_base *base, const char *listen,
                              metrics_registry *reg, admin_health_fn health, void *arg);
int admin_http_port(const admin_http *a);
void admin_http_stop(admin_http *a);

/* Splits "host:port" into host (size n) and port. OP_OK, or OP_ERR_PERMANENT when malformed. */
op_status admin_http_parse_listen(const char *listen, char *host, size_t n, int *port);

#endif
