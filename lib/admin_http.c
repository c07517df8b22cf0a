/* admin_http: /metrics and /healthz (see admin_http.h). */
#include "admin_http.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db_node.h"

typedef struct admin_routes {
    metrics_registry *reg;
    admin_health_fn health;
    void *arg;
    bool detail; /* /healthz names the database server: only on the admin listener */
} admin_routes;

struct admin_http {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    int port;
    bool own_base;  /* admin_http_start: the base and the thread running it are ours */
    admin_routes routes;
};

static void admin_http_reply(struct evhttp_request *req, int code, const char *type,
                             const char *body)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", out);
    evbuffer_free(out);
}

static bool admin_http_get_only(struct evhttp_request *req)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET)
        return true;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
    admin_http_reply(req, 405, "application/json",
                     "{\"error\":\"method_not_allowed\",\"message\":\"only GET is allowed here\"}");
    return false;
}

static void admin_http_on_metrics(struct evhttp_request *req, void *arg)
{
    admin_routes *r = arg;
    if (!admin_http_get_only(req))
        return;
    char *text = metrics_render(r->reg);
    admin_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text);
    free(text);
}

static void admin_http_on_health(struct evhttp_request *req, void *arg)
{
    admin_routes *r = arg;
    if (!admin_http_get_only(req))
        return;
    char reason[256] = "";
    bool ok = !r->health || r->health(r->arg, reason, sizeof reason);
    json_t *j = json_pack("{ss}", "status", ok ? "ok" : "unavailable");
    if (!ok)
        json_object_set_new(j, "reason", json_string(reason));
    json_t *database = r->detail ? db_node_health() : NULL;
    if (database)
        json_object_set_new(j, "database", database);
    char *t = json_dumps(j, JSON_COMPACT);
    char body[1024];
    snprintf(body, sizeof body, "%s", t ? t : "{\"status\":\"unavailable\"}");
    free(t);
    json_decref(j);
    admin_http_reply(req, ok ? 200 : 503, "application/json", body);
}

static void admin_http_on_other(struct evhttp_request *req, void *arg)
{
    (void)arg;
    admin_http_reply(req, 404, "application/json",
                     "{\"error\":\"not_found\",\"message\":\"no such path\"}");
}

void admin_http_attach(struct evhttp *http, metrics_registry *reg, admin_health_fn health,
                       void *arg)
{
    /* The routes live as long as the process: one small allocation, freed at exit. */
    static admin_routes routes;
    routes = (admin_routes){reg, health, arg, false};
    if (reg)
        evhttp_set_cb(http, "/metrics", admin_http_on_metrics, &routes);
    evhttp_set_cb(http, "/healthz", admin_http_on_health, &routes);
}

op_status admin_http_parse_listen(const char *listen, char *host, size_t n, int *port)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    long p;
    if (!colon || (size_t)(colon - listen) >= n ||
        config_parse_long(colon + 1, 0, 65535, &p) != OP_OK)
        return OP_ERR_PERMANENT;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (!*host)
        snprintf(host, n, "127.0.0.1");
    *port = (int)p;
    return OP_OK;
}

static void *admin_http_thread(void *arg)
{
    admin_http *a = arg;
    event_base_dispatch(a->base);
    return NULL;
}

/* Binds a's server (on a->base) to `listen` and adds the routes; a->port gets the bound port. */
static op_status admin_http_bind(admin_http *a, const char *listen)
{
    char host[256];
    int port;
    if (admin_http_parse_listen(listen, host, sizeof host, &port) != OP_OK)
        return OP_ERR_PERMANENT;
    a->http = evhttp_new(a->base);
    struct evhttp_bound_socket *sock =
        a->http ? evhttp_bind_socket_with_handle(a->http, host, (unsigned short)port) : NULL;
    if (!sock)
        return OP_ERR_PERMANENT;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &len);
    a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    evhttp_set_cb(a->http, "/metrics", admin_http_on_metrics, &a->routes);
    evhttp_set_cb(a->http, "/healthz", admin_http_on_health, &a->routes);
    evhttp_set_gencb(a->http, admin_http_on_other, NULL);
    evhttp_set_timeout(a->http, 10);
    return OP_OK;
}

static void admin_http_free(admin_http *a)
{
    if (a->http)
        evhttp_free(a->http);
    if (a->own_base && a->base)
        event_base_free(a->base);
    free(a);
}

op_status admin_http_start(admin_http **out, const char *listen, metrics_registry *reg,
                           admin_health_fn health, void *arg)
{
    *out = NULL;
    evthread_use_pthreads();
    admin_http *a = calloc(1, sizeof *a);
    if (!a)
        return OP_ERR_PERMANENT;
    a->routes = (admin_routes){reg, health, arg, true};
    a->own_base = true;
    a->base = event_base_new();
    if (!a->base || admin_http_bind(a, listen) != OP_OK ||
        pthread_create(&a->thread, NULL, admin_http_thread, a) != 0) {
        admin_http_free(a);
        return OP_ERR_PERMANENT;
    }
    *out = a;
    return OP_OK;
}

op_status admin_http_start_on(admin_http **out, struct event_base *base, const char *listen,
                              metrics_registry *reg, admin_health_fn health, void *arg)
{
    *out = NULL;
    admin_http *a = calloc(1, sizeof *a);
    if (!a)
        return OP_ERR_PERMANENT;
    a->routes = (admin_routes){reg, health, arg, true};
    a->base = base;
    if (admin_http_bind(a, listen) != OP_OK) {
        admin_http_free(a);
        return OP_ERR_PERMANENT;
    }
    *out = a;
    return OP_OK;
}

int admin_http_port(const admin_http *a) { return a ? a->port : -1; }

static void admin_http_break(evutil_socket_t fd, short what, void *base)
{
    event_base_loopbreak(base);
}

void admin_http_stop(admin_http *a)
{
    if (!a)
        return;
    if (a->own_base) {
        /* A plain loopbreak is lost when the thread has not entered its loop yet (a program
         * that fails right at start-up): event_base_loop clears the flag as it starts, and the
         * join then waits forever. An event scheduled now breaks the loop whenever it runs. */
        const struct timeval now = {0, 0};
        if (event_base_once(a->base, -1, EV_TIMEOUT, admin_http_break, a->base, &now) != 0)
            event_base_loopbreak(a->base);
        pthread_join(a->thread, NULL);
    }
    admin_http_free(a);
}
