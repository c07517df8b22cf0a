/* intake_conn: the intake's accepted connections: the connection limit, idle connections, and
 * the deadline by which a request's headers and body must have arrived.
 *
 * libevent 2.1 has no connection cap, and its timeout (evhttp_set_timeout) bounds only the time
 * between two reads: a client that sends nothing is closed after it, but one that trickles a
 * request a byte every second is never closed and holds its connection (and, by the hundred, the
 * process's descriptors) for as long as it likes. So each accepted connection is watched
 * (intake_conn): from the first byte of a request, its headers and body must have arrived within
 * the same timeout, or the connection is shut down. The watch follows the connection's buffers
 * (bytes in: a request is arriving; bytes out: it was answered, so it was read whole) and
 * libevent's reading state (read enabled and write not: still reading; a request being handled,
 * awaiting its confirm, has reading disabled and is never cut).
 *
 * Past max_connections open sockets the oldest idle one (between requests, nothing arriving) is
 * closed to make room, so idle connections cannot keep out the clients that send requests; and a
 * request on a connection past the limit is answered 503 (counted per connection in conn_set).
 *
 * Lifetime: the watch is created with the bufferevent (evhttp_set_bevcb), holds a reference on it
 * until, right after the accept, it has found the connection it belongs to and set the
 * connection's close callback; it ends in that callback, with its buffer callbacks removed. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "intake.h"
#include "clock.h"
#include "log.h"

struct intake_conn {
    intake *in;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;     /* NULL until attached */
    struct evbuffer_cb_entry *on_in, *on_out;
    struct event *attach;
    uint64_t opened_ms;
    uint64_t request_since_ms;           /* first byte of the request being read; 0: none */
    struct intake_conn *next;
};

static size_t intake_conn_slot(intake *in, void *conn)
{
    size_t h = ((uintptr_t)conn >> 4) % in->conn_cap;
    while (in->conn_set[h] && in->conn_set[h] != conn)
        h = (h + 1) % in->conn_cap;
    return h;
}

static void intake_conn_forget(intake *in, struct evhttp_connection *conn)
{
    size_t h = intake_conn_slot(in, conn);
    if (in->conn_set[h] != conn)
        return;
    in->conn_set[h] = NULL;
    in->connections--;
    /* Re-insert the rest of the probe run so lookups still find them. */
    for (size_t j = (h + 1) % in->conn_cap; in->conn_set[j]; j = (j + 1) % in->conn_cap) {
        void *c = in->conn_set[j];
        in->conn_set[j] = NULL;
        in->conn_set[intake_conn_slot(in, c)] = c;
    }
}

/* Unlinks and frees a watch; drops its reference when it never attached. */
static void intake_conn_free(intake_conn *c)
{
    intake *in = c->in;
    for (intake_conn **pp = &in->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            in->nconns--;
            break;
        }
    }
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->on_in);
    evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->on_out);
    if (c->attach)
        event_free(c->attach);
    if (!c->evcon)
        bufferevent_decref(c->bev);
    free(c);
}

/* The close callback of a watched connection: arg is its watch. */
static void intake_conn_on_close(struct evhttp_connection *conn, void *arg)
{
    intake_conn *c = arg;
    intake_conn_forget(c->in, conn);
    intake_conn_free(c);
}

static void intake_conn_on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    intake_conn *c = arg;
    if (info->n_added > 0 && c->request_since_ms == 0)
        c->request_since_ms = clock_now_ms();
}

static void intake_conn_on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    intake_conn *c = arg;
    if (info->n_added > 0) /* an answer: the request was read whole */
        c->request_since_ms = 0;
}

/* Right after the accept: libevent has made the connection around our bufferevent, and its
 * callbacks' argument is that connection. */
static void intake_conn_on_attach(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake_conn *c = arg;
    bufferevent_data_cb rcb = NULL;
    void *evcon = NULL;
    bufferevent_getcb(c->bev, &rcb, NULL, NULL, &evcon);
    if (!rcb || !evcon) { /* the connection is already gone */
        intake_conn_free(c);
        return;
    }
    c->evcon = evcon;
    evhttp_connection_set_closecb(c->evcon, intake_conn_on_close, c);
    bufferevent_decref(c->bev); /* the connection owns it now; the close callback ends us first */
}

/* Still reading a request (or waiting for one), as opposed to handling or answering one. */
static bool intake_conn_reading(const intake_conn *c)
{
    short e = bufferevent_get_enabled(c->bev);
    return c->evcon && (e & EV_READ) && !(e & EV_WRITE);
}

static void intake_conn_shut(intake_conn *c, const char *why)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        return;
    log_info(NULL, "closing a connection: %s", why);
    /* libevent then reads the end of the stream and frees the connection itself. */
    shutdown(fd, SHUT_RDWR);
}

static void intake_conn_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake *in = arg;
    uint64_t now = clock_now_ms(), limit = (uint64_t)in->cfg.timeout_s * 1000;
    for (intake_conn *c = in->conns; c; c = c->next) {
        if (c->request_since_ms && now - c->request_since_ms > limit && intake_conn_reading(c)) {
            intake_conn_shut(c, "its request did not arrive within the timeout");
            c->request_since_ms = 0;
        }
    }
}

/* Past the limit: closes the oldest connection waiting for a request with nothing arriving. */
static void intake_conn_evict_idle(intake *in)
{
    intake_conn *oldest = NULL;
    for (intake_conn *c = in->conns; c; c = c->next)
        if (c->request_since_ms == 0 && intake_conn_reading(c) &&
            (!oldest || c->opened_ms < oldest->opened_ms))
            oldest = c;
    if (oldest) {
        intake_conn_shut(oldest, "idle while the intake is at its connection limit");
        oldest->opened_ms = UINT64_MAX; /* not chosen again before it is gone */
    }
}

/* evhttp_set_bevcb: the bufferevent of each accepted connection, watched as above. */
static struct bufferevent *intake_conn_new(struct event_base *base, void *arg)
{
    intake *in = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    intake_conn *c = bev ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return bev; /* unwatched (admit sets its close callback), but served */
    c->in = in;
    c->bev = bev;
    c->opened_ms = clock_now_ms();
    c->on_in = evbuffer_add_cb(bufferevent_get_input(bev), intake_conn_on_input, c);
    c->on_out = evbuffer_add_cb(bufferevent_get_output(bev), intake_conn_on_output, c);
    c->attach = evtimer_new(base, intake_conn_on_attach, c);
    struct timeval now = {0, 0};
    if (!c->on_in || !c->on_out || !c->attach || evtimer_add(c->attach, &now) != 0) {
        if (c->on_in)
            evbuffer_remove_cb_entry(bufferevent_get_input(bev), c->on_in);
        if (c->on_out)
            evbuffer_remove_cb_entry(bufferevent_get_output(bev), c->on_out);
        if (c->attach)
            event_free(c->attach);
        free(c);
        return bev;
    }
    bufferevent_incref(bev);
    if (in->nconns >= (size_t)in->cfg.max_connections)
        intake_conn_evict_idle(in);
    c->next = in->conns;
    in->conns = c;
    in->nconns++;
    return bev;
}

static void intake_conn_on_close_unwatched(struct evhttp_connection *conn, void *arg)
{
    intake_conn_forget(arg, conn);
}

/* False when the request's connection is over the limit (it has been answered 503). */
bool intake_conn_admit(intake *in, struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (!conn)
        return true;
    size_t h = intake_conn_slot(in, conn);
    if (in->conn_set[h] == conn)
        return true;
    if (in->connections >= in->cfg.max_connections) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        intake_reply_error(in, req, 503, "too_many_connections",
                           "the intake has too many open connections; retry later", NULL, "limit");
        return false;
    }
    in->conn_set[h] = conn;
    in->connections++;
    bool watched = false;
    for (intake_conn *c = in->conns; c && !watched; c = c->next)
        watched = c->evcon == conn;
    if (!watched) /* a watched one's close callback forgets it too */
        evhttp_connection_set_closecb(conn, intake_conn_on_close_unwatched, in);
    return true;
}

int intake_conn_start(intake *in)
{
    in->conn_cap = (size_t)in->cfg.max_connections * 2 + 1;
    in->conn_set = calloc(in->conn_cap, sizeof(void *));
    if (!in->conn_set)
        return -1;
    evhttp_set_bevcb(in->http, intake_conn_new, in);
    in->conn_sweep = event_new(in->base, -1, EV_PERSIST, intake_conn_sweep, in);
    struct timeval sweep = {0, 250000};
    if (!in->conn_sweep || event_add(in->conn_sweep, &sweep) != 0)
        return -1;
    return 0;
}

void intake_conn_stop(intake *in)
{
    if (in->conn_sweep)
        event_free(in->conn_sweep);
    in->conn_sweep = NULL;
    while (in->conns)
        intake_conn_free(in->conns);
    free(in->conn_set);
    in->conn_set = NULL;
}
