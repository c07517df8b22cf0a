/* intake_db: the intake's PostgreSQL connection, driven by the libevent loop so that the loop
 * never waits for the database.
 *
 * Owns: one non-blocking libpq connection (PQconnectStartParams/PQconnectPoll, then
 * PQsendQueryParams/PQconsumeInput/PQisBusy on events of PQsocket), the FIFO of requests waiting
 * for it, their deadlines, reconnecting with backoff, and pruning old Idempotency-Keys.
 *
 * - One statement is in flight at a time. The orders waiting to be recorded (their payment token,
 *   and their Idempotency-Key claim if they have one) go out together as one statement (one
 *   commit for all of them: the group commit that keeps orders fast).
 * - Every request has a deadline (INTAKE_DB_TIMEOUT_MS from when it was queued). A statement
 *   that overruns the deadline of its oldest request means the server is stuck or unreachable:
 *   the connection is dropped (PQfinish does not wait for the server), every waiting request is
 *   answered as unavailable, and a new connection is made in the background after a backoff.
 *   While there is none, requests are refused at once; while one is being made, they wait (up
 *   to their deadline) for it.
 * - At most INTAKE_DB_MAX_QUEUE requests wait; past that they are refused at once.
 * - TCP keepalives (and a server-side statement_timeout) are asked for in the connection
 *   parameters; whatever the URL says itself wins.
 *
 * A request's callback is called exactly once, from the loop, never from inside intake_db_query.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "intake.h"
#include "log.h"

#define INTAKE_DB_BATCH 256            /* orders recorded per statement */
#define INTAKE_DB_CONNECT_MIN_MS 2000  /* a connection attempt gets at least this long */
#define INTAKE_DB_PRUNE_EVERY_S 60
#define INTAKE_DB_PRUNE_RETRY_S 10
#define INTAKE_DB_PRUNE_BATCH "1000"

typedef enum { IDB_QUERY, IDB_CLAIM } intake_db_kind;

typedef struct intake_db_req {
    intake_db_kind kind;
    uint64_t deadline_ms;
    const char *sql; /* IDB_QUERY: a literal */
    int nparams;
    char *params[5]; /* owned copies; IDB_CLAIM: client, key, hash, order id, payment token
                      * (key and hash "" for an order without an Idempotency-Key) */
    intake_db_result_fn on_result;
    intake_db_claim_fn on_claim;
    void *arg;
    struct intake_db_req *next;
} intake_db_req;

typedef enum { IDB_DOWN, IDB_CONNECTING, IDB_READY, IDB_BUSY } intake_db_state;

struct intake_db {
    intake *in;
    PGconn *conn;
    intake_db_state state;
    struct event *sock_ev;  /* PQsocket: connect polling, or results while connected */
    struct event *flush_ev; /* PQsocket writable while a statement is not sent whole */
    struct event *timer;    /* the next deadline, or the end of the backoff */
    struct event *prune_ev;
    backoff bo;
    bool connected_once;
    db_node node;           /* the server of the connection; a move to another is a failover */
    uint64_t connect_deadline_ms;
    uint64_t retry_at_ms;   /* IDB_DOWN: when to try again */
    intake_db_req *head, *tail; /* waiting, not sent */
    long queued;
    intake_db_req *busy;    /* the requests of the statement in flight */
    PGresult *result;
    bool result_error;
    metrics_family *refused;
};

/* Records orders: every one's payment token (kept for the payment step, never published; an
 * order id already recorded keeps its first token, which is the same body's when a keyed order is
 * retried), and every keyed one's claim: insert the key, or keep the row that is there and
 * return it either way (the no-op update locks and returns a row another transaction committed
 * meanwhile, which DO NOTHING would not return). The batch has no (client_id, key) twice:
 * intake_db_send_claims merges them. */
static const char intake_db_claim_sql[] =
    "with r as (select * from json_to_recordset($1::json) as r(client_id text, key text,"
    "  body_sha256 text, order_id uuid, token text)),"
    " t as (insert into payment_tokens (order_id, token) select order_id, token from r"
    "  on conflict do nothing)"
    " insert into idempotency_keys as k (client_id, key, body_sha256, order_id)"
    " select r.client_id, r.key, decode(r.body_sha256, 'hex'), r.order_id from r"
    " where r.key is not null"
    " on conflict (client_id, key) do update set client_id = k.client_id"
    " returning k.client_id, k.key, encode(k.body_sha256, 'hex'), k.order_id";

static const char intake_db_prune_sql[] =
    "delete from idempotency_keys where ctid = any(array(select ctid from idempotency_keys"
    " where created_at < now() - make_interval(secs => $1::int) limit $2::int))";

static void intake_db_arm(intake_db *d);
static void intake_db_dispatch(intake_db *d);

static void intake_db_req_free(intake_db_req *r)
{
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    free(r);
}

static void intake_db_answer(intake_db *d, intake_db_req *r, PGresult *res)
{
    if (r->kind == IDB_QUERY) {
        r->on_result(d->in, res, r->arg);
    } else if (r->params[1][0] == '\0') {
        /* No key: recorded when the statement succeeded; the order is this request's own. */
        r->on_claim(d->in, res != NULL, r->params[2], r->params[3], r->arg);
    } else {
        const char *hash = NULL, *order_id = NULL;
        for (int i = 0; res && i < PQntuples(res) && !hash; i++)
            if (strcmp(PQgetvalue(res, i, 0), r->params[0]) == 0 &&
                strcmp(PQgetvalue(res, i, 1), r->params[1]) == 0) {
                hash = PQgetvalue(res, i, 2);
                order_id = PQgetvalue(res, i, 3);
            }
        r->on_claim(d->in, hash != NULL, hash, order_id, r->arg);
    }
    intake_db_req_free(r);
}

/* Answers every request of `list` as unavailable (callbacks may queue new requests meanwhile). */
static void intake_db_fail_list(intake_db *d, intake_db_req *list)
{
    while (list) {
        intake_db_req *r = list;
        list = r->next;
        intake_db_answer(d, r, NULL);
    }
}

static void intake_db_refuse(intake_db *d, const char *reason)
{
    metrics_add(d->refused, (const char *const[]){reason}, 1);
}

/* Drops the connection, answers everything waiting as unavailable, and schedules a new attempt. */
static void intake_db_drop(intake_db *d, const char *why)
{
    log_warn(NULL, "database connection dropped (%s); %ld requests answered 503, reconnecting", why,
             d->queued + (d->busy ? 1 : 0));
    if (d->sock_ev) {
        event_free(d->sock_ev);
        d->sock_ev = NULL;
    }
    if (d->flush_ev) {
        event_free(d->flush_ev);
        d->flush_ev = NULL;
    }
    if (d->conn) {
        PQfinish(d->conn); /* sends Terminate without waiting: the socket is non-blocking */
        d->conn = NULL;
    }
    if (d->result) {
        PQclear(d->result);
        d->result = NULL;
    }
    d->state = IDB_DOWN;
    d->retry_at_ms = clock_now_ms() + (uint64_t)backoff_next_ms(&d->bo);
    intake_db_req *busy = d->busy, *queued = d->head;
    d->busy = d->head = d->tail = NULL;
    d->queued = 0;
    intake_db_fail_list(d, busy);
    intake_db_fail_list(d, queued);
    intake_db_arm(d);
}

/* --- connecting ---------------------------------------------------------------------------- */

static void intake_db_on_socket(evutil_socket_t fd, short what, void *arg);

static void intake_db_watch(intake_db *d, short what)
{
    if (d->sock_ev)
        event_free(d->sock_ev);
    d->sock_ev = event_new(d->in->base, PQsocket(d->conn), what, intake_db_on_socket, d);
    event_add(d->sock_ev, NULL);
}

static void intake_db_connected(intake_db *d)
{
    if (PQsetnonblocking(d->conn, 1) != 0) {
        intake_db_drop(d, "cannot make the connection non-blocking");
        return;
    }
    if (d->connected_once) {
        metrics_add(d->in->m.reconnects, (const char *const[]){"database"}, 1);
        log_info(NULL, "database connection re-established");
    }
    d->connected_once = true;
    if (db_node_note(&d->node, d->conn))
        log_info(NULL, "database connection moved to %s:%s", d->node.host, d->node.port);
    db_node_metrics_update(&d->in->m.db_node, &d->node,
                           (uint64_t)metrics_value(d->in->m.reconnects,
                                                   (const char *const[]){"database"}));
    backoff_reset(&d->bo);
    d->state = IDB_READY;
    intake_db_watch(d, EV_READ | EV_PERSIST);
    intake_db_dispatch(d);
    intake_db_arm(d);
}

/* One step of PQconnectPoll; it may move to another host of a multi-host URL (another socket). */
static void intake_db_connect_step(intake_db *d)
{
    switch (PQconnectPoll(d->conn)) {
    case PGRES_POLLING_READING: intake_db_watch(d, EV_READ); break;
    case PGRES_POLLING_WRITING: intake_db_watch(d, EV_WRITE); break;
    case PGRES_POLLING_OK: intake_db_connected(d); break;
    default: {
        char why[300];
        snprintf(why, sizeof why, "connect failed: %s", PQerrorMessage(d->conn));
        why[strcspn(why, "\n")] = '\0';
        intake_db_drop(d, why);
    }
    }
}

static void intake_db_connect(intake_db *d)
{
    char timeout[64], opts[96];
    snprintf(timeout, sizeof timeout, "%ld", (d->in->cfg.db_timeout_ms + 999) / 1000 + 1);
    snprintf(opts, sizeof opts, "-c statement_timeout=%ld", d->in->cfg.db_timeout_ms);
    /* Ours first, then the URL (expand_dbname): a later keyword overrides an earlier one, so
     * whatever the URL sets itself wins. */
    const char *keys[] = {"application_name", "keepalives", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "connect_timeout", "options",
                          "dbname", NULL};
    const char *vals[] = {"orderpipe-intake", "1", "30", "10", "3", timeout, opts,
                          d->in->cfg.database_url, NULL};
    d->conn = PQconnectStartParams(keys, vals, 1);
    d->connect_deadline_ms = clock_now_ms() + (uint64_t)(d->in->cfg.db_timeout_ms > INTAKE_DB_CONNECT_MIN_MS
                                                              ? d->in->cfg.db_timeout_ms
                                                              : INTAKE_DB_CONNECT_MIN_MS);
    if (!d->conn || PQstatus(d->conn) == CONNECTION_BAD) {
        intake_db_drop(d, d->conn ? PQerrorMessage(d->conn) : "out of memory");
        return;
    }
    d->state = IDB_CONNECTING;
    intake_db_connect_step(d);
    intake_db_arm(d);
}

/* --- statements ---------------------------------------------------------------------------- */

static void intake_db_on_flush(evutil_socket_t fd, short what, void *arg);

/* After PQsend*: sends what did not fit in the socket's buffer when it becomes writable. */
static void intake_db_flush(intake_db *d)
{
    int f = PQflush(d->conn);
    if (f < 0) {
        intake_db_drop(d, "sending a statement failed");
        return;
    }
    if (f == 1) {
        if (!d->flush_ev)
            d->flush_ev = event_new(d->in->base, PQsocket(d->conn), EV_WRITE, intake_db_on_flush, d);
        event_add(d->flush_ev, NULL);
    }
}

static void intake_db_on_flush(evutil_socket_t fd, short what, void *arg)
{
    intake_db *d = arg;
    if (d->state == IDB_BUSY)
        intake_db_flush(d);
}

/* Unlinks *pp (whose predecessor in the waiting queue is prev) from the queue and returns it. */
static intake_db_req *intake_db_unqueue(intake_db *d, intake_db_req **pp, intake_db_req *prev)
{
    intake_db_req *r = *pp;
    *pp = r->next;
    if (d->tail == r)
        d->tail = prev;
    d->queued--;
    r->next = NULL;
    return r;
}

/* Moves every waiting claim (up to a batch) to d->busy and sends them as one statement. */
static int intake_db_send_claims(intake_db *d)
{
    json_t *rows = json_array();
    intake_db_req **pp = &d->head, *last_busy = NULL, *prev = NULL;
    int n = 0;
    bool failed = !rows;
    while (*pp && n < INTAKE_DB_BATCH) {
        intake_db_req *r = *pp;
        if (r->kind != IDB_CLAIM) {
            prev = r;
            pp = &r->next;
            continue;
        }
        intake_db_unqueue(d, pp, prev);
        if (last_busy)
            last_busy->next = r;
        else
            d->busy = r;
        last_busy = r;
        n++;
        /* The same (client, key) twice in one batch: one row; both compare with it. */
        bool keyed = r->params[1][0] != '\0', seen = false;
        for (intake_db_req *b = d->busy; keyed && b != r && !seen; b = b->next)
            seen = strcmp(b->params[0], r->params[0]) == 0 && strcmp(b->params[1], r->params[1]) == 0;
        if (!seen && json_array_append_new(rows, json_pack("{ss ss? ss? ss ss}", "client_id",
                                                           r->params[0], "key",
                                                           keyed ? r->params[1] : NULL,
                                                           "body_sha256",
                                                           keyed ? r->params[2] : NULL, "order_id",
                                                           r->params[3], "token", r->params[4])))
            failed = true; /* out of memory, or a client id that is not UTF-8 */
    }
    char *text = !failed && n > 0 ? json_dumps(rows, JSON_COMPACT) : NULL;
    json_decref(rows);
    if (!text)
        return -1;
    const char *params[] = {text};
    int ok = PQsendQueryParams(d->conn, intake_db_claim_sql, 1, NULL, params, NULL, NULL, 0);
    free(text);
    return ok ? 0 : -1;
}

/* Sends the next statement if the connection is idle and someone waits. */
static void intake_db_dispatch(intake_db *d)
{
    uint64_t now = clock_now_ms();
    /* Whoever waited past its deadline already is answered rather than sent. */
    intake_db_req **pp = &d->head, *prev = NULL, *expired = NULL;
    while (*pp) {
        intake_db_req *r = *pp;
        if (r->deadline_ms > now) {
            prev = r;
            pp = &r->next;
            continue;
        }
        intake_db_unqueue(d, pp, prev);
        r->next = expired;
        expired = r;
        intake_db_refuse(d, "deadline");
    }
    intake_db_fail_list(d, expired);
    if (d->state != IDB_READY || !d->head)
        return;
    int ok;
    if (d->head->kind == IDB_CLAIM) {
        ok = intake_db_send_claims(d);
    } else {
        intake_db_req *r = intake_db_unqueue(d, &d->head, NULL);
        d->busy = r;
        ok = PQsendQueryParams(d->conn, r->sql, r->nparams, NULL, (const char *const *)r->params,
                               NULL, NULL, 0)
                 ? 0
                 : -1;
    }
    if (ok != 0) {
        char why[300];
        snprintf(why, sizeof why, "cannot send a statement: %s", PQerrorMessage(d->conn));
        why[strcspn(why, "\n")] = '\0';
        intake_db_drop(d, why);
        return;
    }
    d->state = IDB_BUSY;
    d->result_error = false;
    intake_db_flush(d);
}

/* The statement in flight has all its results: answer its requests, then send the next. */
static void intake_db_finish(intake_db *d)
{
    PGresult *res = d->result;
    d->result = NULL;
    intake_db_req *list = d->busy;
    d->busy = NULL;
    d->state = IDB_READY;
    bool demoted = false;
    if (d->result_error) {
        log_warn(NULL, "database statement failed: %s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(d->conn));
        /* read_only_sql_transaction: the primary was demoted under the connection (a
         * switchover); only a new connection finds the new primary. */
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        demoted = state && strcmp(state, "25006") == 0;
        PQclear(res);
        res = NULL;
    }
    while (list) {
        intake_db_req *r = list;
        list = r->next;
        intake_db_answer(d, r, res);
    }
    PQclear(res);
    if (demoted) {
        intake_db_drop(d, "the server turned read-only");
        return;
    }
    if (d->state == IDB_READY)
        intake_db_dispatch(d);
    intake_db_arm(d);
}

static void intake_db_on_socket(evutil_socket_t fd, short what, void *arg)
{
    intake_db *d = arg;
    if (d->state == IDB_CONNECTING) {
        intake_db_connect_step(d);
        return;
    }
    if (!PQconsumeInput(d->conn)) {
        char why[300];
        snprintf(why, sizeof why, "connection lost: %s", PQerrorMessage(d->conn));
        why[strcspn(why, "\n")] = '\0';
        intake_db_drop(d, why);
        return;
    }
    while (d->state == IDB_BUSY && !PQisBusy(d->conn)) {
        PGresult *r = PQgetResult(d->conn);
        if (!r) {
            intake_db_finish(d);
            return;
        }
        ExecStatusType s = PQresultStatus(r);
        if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK)
            d->result_error = true;
        if (d->result)
            PQclear(d->result);
        d->result = r;
    }
    if (d->state == IDB_READY && PQstatus(d->conn) == CONNECTION_BAD)
        intake_db_drop(d, "the server closed the connection");
}

/* --- the timer: deadlines and reconnects --------------------------------------------------- */

static void intake_db_on_timer(evutil_socket_t fd, short what, void *arg)
{
    intake_db *d = arg;
    uint64_t now = clock_now_ms();
    switch (d->state) {
    case IDB_DOWN:
        if (now >= d->retry_at_ms) {
            intake_db_connect(d);
            return;
        }
        break;
    case IDB_CONNECTING:
        if (now >= d->connect_deadline_ms) {
            intake_db_drop(d, "connecting took too long");
            return;
        }
        intake_db_dispatch(d); /* answers the requests that waited too long */
        break;
    case IDB_BUSY:
        if (d->busy && now >= d->busy->deadline_ms) {
            intake_db_refuse(d, "deadline");
            intake_db_drop(d, "a statement overran its deadline");
            return;
        }
        intake_db_dispatch(d);
        break;
    case IDB_READY:
        intake_db_dispatch(d);
        break;
    }
    intake_db_arm(d);
}

/* Sets the timer to the earliest moment something must happen. */
static void intake_db_arm(intake_db *d)
{
    uint64_t at = UINT64_MAX;
    if (d->state == IDB_DOWN)
        at = d->retry_at_ms;
    if (d->state == IDB_CONNECTING)
        at = d->connect_deadline_ms;
    if (d->busy && d->busy->deadline_ms < at)
        at = d->busy->deadline_ms;
    if (d->head && d->head->deadline_ms < at) /* the oldest waiting request */
        at = d->head->deadline_ms;
    if (at == UINT64_MAX) {
        event_del(d->timer);
        return;
    }
    uint64_t now = clock_now_ms();
    uint64_t in_ms = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(in_ms / 1000), (suseconds_t)(in_ms % 1000) * 1000};
    event_add(d->timer, &tv);
}

/* --- pruning ------------------------------------------------------------------------------- */

static void intake_db_on_pruned(intake *in, PGresult *r, void *arg)
{
    long n = r ? atol(PQcmdTuples(r)) : 0;
    if (n > 0)
        log_info(NULL, "pruned %ld idempotency keys past retention", n);
    /* A full batch: more are due, go on soon rather than in a minute; a failure: try again soon. */
    struct timeval tv = {!r ? INTAKE_DB_PRUNE_RETRY_S
                            : n >= atol(INTAKE_DB_PRUNE_BATCH) ? 1 : INTAKE_DB_PRUNE_EVERY_S + rand() % 30,
                         0};
    event_add(in->dbq->prune_ev, &tv);
}

static void intake_db_on_prune(evutil_socket_t fd, short what, void *arg)
{
    intake *in = arg;
    char ret[32];
    snprintf(ret, sizeof ret, "%ld", in->cfg.idempotency_retention_s);
    const char *params[] = {ret, INTAKE_DB_PRUNE_BATCH};
    if (intake_db_query(in, intake_db_prune_sql, 2, params, intake_db_on_pruned, NULL) != 0) {
        struct timeval tv = {INTAKE_DB_PRUNE_RETRY_S, 0};
        event_add(in->dbq->prune_ev, &tv);
    }
}

/* --- the interface ------------------------------------------------------------------------- */

static intake_db_req *intake_db_enqueue(intake *in, intake_db_kind kind)
{
    intake_db *d = in->dbq;
    if (!d)
        return NULL;
    if (d->state == IDB_DOWN) {
        intake_db_refuse(d, "disconnected");
        return NULL;
    }
    if (d->queued >= in->cfg.db_max_queue) {
        intake_db_refuse(d, "queue_full");
        return NULL;
    }
    intake_db_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = kind;
    r->deadline_ms = clock_now_ms() + (uint64_t)in->cfg.db_timeout_ms;
    return r;
}

static void intake_db_append(intake *in, intake_db_req *r)
{
    intake_db *d = in->dbq;
    if (d->tail)
        d->tail->next = r;
    else
        d->head = r;
    d->tail = r;
    d->queued++;
    /* An idle connection sends at the end of this loop turn (a zero timer), so that the claims
     * of every request the turn handled share one statement, and no callback ever runs inside
     * intake_db_query. */
    if (d->state == IDB_READY) {
        struct timeval zero = {0, 0};
        event_add(d->timer, &zero);
        return;
    }
    intake_db_arm(d);
}

static int intake_db_copy_params(intake_db_req *r, int nparams, const char *const *params)
{
    if (nparams > 5)
        return -1;
    for (int i = 0; i < nparams; i++) {
        r->params[i] = strdup(params[i] ? params[i] : "");
        if (!r->params[i])
            return -1;
        r->nparams = i + 1;
    }
    return 0;
}

int intake_db_query(intake *in, const char *sql, int nparams, const char *const *params,
                    intake_db_result_fn cb, void *arg)
{
    intake_db_req *r = intake_db_enqueue(in, IDB_QUERY);
    if (!r)
        return -1;
    r->sql = sql;
    r->on_result = cb;
    r->arg = arg;
    if (intake_db_copy_params(r, nparams, params) != 0) {
        intake_db_req_free(r);
        return -1;
    }
    intake_db_append(in, r);
    return 0;
}

int intake_db_record_order(intake *in, const char *client_id, const char *key,
                           const char *body_sha256, const char *order_id, const char *token,
                           intake_db_claim_fn cb, void *arg)
{
    intake_db_req *r = intake_db_enqueue(in, IDB_CLAIM);
    if (!r)
        return -1;
    r->on_claim = cb;
    r->arg = arg;
    const char *params[] = {client_id, key, key ? body_sha256 : NULL, order_id, token};
    if (intake_db_copy_params(r, 5, params) != 0) {
        intake_db_req_free(r);
        return -1;
    }
    intake_db_append(in, r);
    return 0;
}

long intake_db_pending(const intake *in)
{
    const intake_db *d = in->dbq;
    if (!d)
        return 0;
    long n = d->queued;
    for (const intake_db_req *r = d->busy; r; r = r->next)
        n++;
    return n;
}

int intake_db_start(intake *in)
{
    if (!in->cfg.database_url)
        return 0;
    PQconninfoOption *opts = NULL;
    char *err = NULL;
    opts = PQconninfoParse(in->cfg.database_url, &err);
    if (!opts) {
        /* libpq's message names the bad part, never the password. */
        log_error(NULL, "DATABASE_URL is not a valid libpq URL or conninfo: %s",
                  err ? err : "out of memory");
        PQfreemem(err);
        return -1;
    }
    PQconninfoFree(opts);
    intake_db *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->in = in;
    in->dbq = d;
    backoff_init(&d->bo, 100, 5000, (unsigned)clock_now_ms());
    d->refused = metrics_counter(in->m.reg, "orderpipe_intake_db_refused_total",
                                 "Database requests answered 503 without a result, by reason "
                                 "(disconnected, queue_full, deadline).", "reason");
    static const char *const reasons[] = {"disconnected", "queue_full", "deadline"};
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
        metrics_add(d->refused, &reasons[i], 0);
    d->timer = event_new(in->base, -1, 0, intake_db_on_timer, d);
    d->prune_ev = event_new(in->base, -1, 0, intake_db_on_prune, in);
    struct timeval first = {5 + rand() % 30, 0};
    event_add(d->prune_ev, &first);
    intake_db_connect(d);
    return 0;
}

void intake_db_stop(intake *in)
{
    intake_db *d = in->dbq;
    if (!d)
        return;
    intake_db_req *busy = d->busy, *queued = d->head;
    d->busy = d->head = d->tail = NULL;
    d->queued = 0;
    d->state = IDB_DOWN;
    intake_db_fail_list(d, busy);
    intake_db_fail_list(d, queued);
    if (d->sock_ev)
        event_free(d->sock_ev);
    if (d->flush_ev)
        event_free(d->flush_ev);
    event_free(d->timer);
    event_free(d->prune_ev);
    if (d->result)
        PQclear(d->result);
    if (d->conn)
        PQfinish(d->conn);
    free(d);
    in->dbq = NULL;
}
