/* orderpipe-payment: charges reserved orders through the provider, exactly once per order, and
 * refunds on request.
 *
 * The charge is never made inside a database transaction: the attempt is recorded first (its own
 * commit), the provider is called with the order id as idempotency key, and the outcome is
 * recorded with the inbox row and the emitted event in a final transaction. A redelivery, or a
 * restart after a crash mid-charge, finds the attempt and charges again with the same key, which
 * the provider answers with the first result: one charge. It charges the total the reservation
 * recorded (computed from the lines), never an amount an event states, and refunds only
 * cancelled orders. The payment token is the one the producer recorded in payment_tokens (no
 * event carries it, so no other consumer receives it), and it is kept no longer than a charge
 * may need it: the tick deletes the tokens of orders past payment (paid, confirmed, cancelled)
 * and, after PAYMENT_TOKEN_RETENTION, of orders never recorded (an order.placed that was not
 * published, or dead-lettered and never replayed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "mem.h"
#include "provider.h"
#include "worker.h"

typedef struct payment_ctx {
    provider *provider;
    char token_retention_s[24]; /* PAYMENT_TOKEN_RETENTION in seconds, as a statement parameter */
} payment_ctx;

/* Outside any batch: deletes the tokens no charge will need again, a bounded number at a time so
 * the statement stays short however many accumulated. */
static op_status payment_forget_tokens(worker *w, db *d, void *arg)
{
    payment_ctx *ctx = arg;
    const char *params[] = {ctx->token_retention_s};
    long rows = 0;
    op_status st = db_exec_prepared_count(
        d, "payment_forget_tokens",
        "delete from payment_tokens where order_id in (select t.order_id from payment_tokens t "
        "left join orders o on o.id = t.order_id "
        "where o.status in ('paid', 'confirmed', 'cancelled') or (o.id is null and "
        "t.created_at < now() - make_interval(secs => $1::int)) limit 1000)",
        1, params, &rows);
    if (st == OP_OK && rows > 0)
        log_debug(NULL, "%s: forgot %ld payment tokens", worker_name(w), rows);
    return st;
}

/* What before_batch learned for one stock.reserved message, for its handler. */
typedef struct payment_state {
    bool charge;              /* the order awaited a charge and the provider was called */
    provider_result result;
    long long amount;
    char currency[4];
    char token[132];
    int attempt;
    char ref[128];
    char error[256];
} payment_state;

static void payment_free_state(void *state) { free(state); }

/* One statement for the batch: records an attempt for every order that awaits its charge (still
 * reserved, not settled with the provider) and fills in the state of its first message. */
static op_status payment_record_attempts(db *d, worker_msg *const *msgs, int n)
{
    worker_msg **reserved = mem_calloc((size_t)n, sizeof *reserved);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (msgs[i]->state)
            reserved[k++] = msgs[i];
    char *ids = worker_order_ids(reserved, k);
    free(reserved);
    const char *params[] = {ids};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "payment_attempts",
        "with o as (select id, total, currency, payment_token from orders "
        "  where id = any($1::uuid[]) and status = 'reserved' order by id for update), "
        "p as (insert into payments(order_id, amount, currency, status, charge_key, attempts) "
        "  select id, total, currency, 'pending', id::text, 1 from o "
        "  on conflict (order_id) do update set attempts = payments.attempts + 1, updated_at = now() "
        "  where payments.status = 'pending' returning order_id, attempts) "
        "select o.id::text, o.total, o.currency, coalesce(t.token, o.payment_token), p.attempts "
        "from o join p on p.order_id = o.id left join payment_tokens t on t.order_id = o.id",
        1, params, &st);
    free(ids);
    if (!r)
        return st;
    for (int row = 0; row < PQntuples(r); row++) {
        for (int i = 0; i < n; i++) {
            payment_state *s = msgs[i]->state;
            if (!s || strcasecmp(msgs[i]->ev->order_id, PQgetvalue(r, row, 0)) != 0)
                continue;
            /* A repeat of the order in this batch finds nothing to charge. */
            *s = (payment_state){.charge = true, .amount = atoll(PQgetvalue(r, row, 1)),
                                 .attempt = atoi(PQgetvalue(r, row, 4))};
            snprintf(s->currency, sizeof s->currency, "%s", PQgetvalue(r, row, 2));
            snprintf(s->token, sizeof s->token, "%s", PQgetvalue(r, row, 3));
            break;
        }
    }
    PQclear(r);
    return OP_OK;
}

/* Outside any transaction of ours: record the batch's attempts (one commit), then charge each
 * order that awaits it. The provider is never called inside a transaction; the sim provider
 * books the batch's charges in one transaction of its own books. */
static op_status payment_before_batch(worker *w, db *d, worker_msg *const *msgs, int n, void *arg)
{
    payment_ctx *ctx = arg;
    int reserved = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(msgs[i]->ev->type, "stock.reserved") != 0)
            continue;
        /* Without its state the handler would take the order for settled: fail the batch. */
        if (!(msgs[i]->state = calloc(1, sizeof(payment_state))))
            return OP_ERR_TRANSIENT;
        reserved++;
    }
    if (reserved == 0)
        return OP_OK;
    op_status st = payment_record_attempts(d, msgs, n);
    if (st != OP_OK)
        return st;
    if (provider_batch_begin(ctx->provider, d) != OP_OK)
        return OP_ERR_TRANSIENT;
    for (int i = 0; i < n; i++) {
        payment_state *s = msgs[i]->state;
        if (!s || !s->charge)
            continue;
        if (!worker_batch_has_time(w)) { /* its attempt is recorded: the retry charges once */
            s->result = PROVIDER_TRANSIENT;
            snprintf(s->error, sizeof s->error,
                     "the batch's time for provider calls ran out before this charge");
            continue;
        }
        provider_charge_req req = {.key = msgs[i]->ev->order_id, .order_id = msgs[i]->ev->order_id,
                                   .amount = s->amount, .currency = s->currency, .token = s->token,
                                   .attempt = s->attempt};
        s->result = provider_charge(ctx->provider, d, &req, s->ref, sizeof s->ref, s->error,
                                    sizeof s->error);
    }
    if (provider_batch_end(ctx->provider, d) != OP_OK) {
        /* The books of the batch did not commit: nothing was charged; every charge retries. */
        for (int i = 0; i < n; i++) {
            payment_state *s = msgs[i]->state;
            if (s && s->charge) {
                s->result = PROVIDER_TRANSIENT;
                snprintf(s->error, sizeof s->error, "provider books unavailable: %s", db_last_error(d));
            }
        }
    }
    return OP_OK;
}

/* The settle statement for the k messages with a provider's answer (outcomes, in their order),
 * and the events it calls for. */
static op_status payment_settle_batch(db *d, json_t *outcomes, worker_msg *const *settled, int k)
{
    char *text = json_dumps(outcomes, JSON_COMPACT);
    const char *params[] = {text};
    op_status st;
    PGresult *r = db_exec_prepared(d, "payment_settle",
                                   "select k, event, prior from payment_settle($1::json) order by k",
                                   1, params, &st);
    free(text);
    if (!r)
        return st;
    if (PQntuples(r) != k) {
        PQclear(r);
        return OP_ERR_TRANSIENT;
    }
    for (int i = 0; i < k && st == OP_OK; i++) {
        worker_msg *m = settled[i];
        payment_state *s = m->state;
        const char *id = m->ev->order_id, *event = PQgetvalue(r, i, 1);
        if (PQgetisnull(r, i, 1)) {
            snprintf(m->error, sizeof m->error, "charged order %s does not exist", id);
            st = OP_ERR_PERMANENT; /* cannot happen (payments references orders): batch fails */
        } else if (strcmp(event, "payment.failed") == 0) {
            st = worker_emit(m, event, id, json_pack("{ss ss ss}", "order_id", id, "reason",
                                                     "declined", "message", s->error));
        } else if (strcmp(event, "payment.succeeded") == 0) {
            st = worker_emit(m, event, id, json_pack("{ss sI ss ss}", "order_id", id, "amount",
                                                     (json_int_t)s->amount, "currency",
                                                     s->currency, "provider_ref", s->ref));
        } else {
            /* Cancelled (expired) while we were charging: give the money back. */
            log_warn(&m->log, "charged an order that is now %s: refunding", PQgetvalue(r, i, 2));
            st = worker_emit(m, event, id, json_pack("{ss sI ss}", "order_id", id, "amount",
                                                     (json_int_t)s->amount, "reason",
                                                     "order_cancelled"));
        }
    }
    PQclear(r);
    return st;
}

/* In the batch transaction: the provider's answers, the orders' states and the events, for the
 * whole batch in one call (sql/functions/payment_settle.sql). */
static op_status payment_on_reserved(worker_msg *const *msgs, int n, void *arg)
{
    (void)arg;
    json_t *outcomes = json_array();
    worker_msg **settled = mem_calloc((size_t)n, sizeof *settled);
    int k = 0;
    for (int i = 0; i < n; i++) {
        worker_msg *m = msgs[i];
        payment_state *s = m->state;
        if (!s || !s->charge) {
            log_info(&m->log, "nothing to charge (order not reserved, or already settled)");
        } else if (s->result == PROVIDER_TRANSIENT) {
            worker_msg_fail(m, OP_ERR_TRANSIENT, "%s", s->error);
        } else {
            bool ok = s->result == PROVIDER_OK;
            json_t *o = json_pack("{ss ss ss ss}", "id", m->ev->order_id, "result",
                                  ok ? "ok" : "declined", "ref", s->ref, "error", s->error);
            if (!o || json_array_append_new(outcomes, o) != 0) {
                worker_msg_fail(m, OP_ERR_TRANSIENT, "cannot build the provider's outcome");
                continue;
            }
            settled[k++] = m;
        }
    }
    op_status st = k > 0 ? payment_settle_batch(msgs[0]->db, outcomes, settled, k) : OP_OK;
    json_decref(outcomes);
    free(settled);
    return st;
}

typedef struct payment_refund {
    long long refunded;
} payment_refund;

static op_status payment_record_refund(worker_msg *m, void *arg)
{
    payment_refund *r = arg;
    char amount[32];
    snprintf(amount, sizeof amount, "%lld", r->refunded);
    return db_command(m->db, "update payments set status = 'refunded', refunded_amount = $2::bigint, "
                             "updated_at = now() where order_id = $1::uuid and status <> 'declined'",
                      2, (const char *[]){m->ev->order_id, amount});
}

/* A refund is owed only for a cancelled order (compensation and payment_settle emit the request
 * in the transaction that cancels it or finds it cancelled). Anyone with the broker's credentials
 * can publish: a request for an order that is paid, confirmed or unknown would give a customer
 * back the money of goods that ship. OP_OK when the order is cancelled; otherwise m is refused
 * (OP_ERR_PERMANENT) or the lookup failed (its status). */
static op_status payment_refund_owed(worker_msg *m)
{
    const char *params[] = {m->ev->order_id};
    op_status st;
    PGresult *r = db_exec_prepared(m->db, "payment_refund_order",
                                   "select status from orders where id = $1::uuid", 1, params, &st);
    if (!r) {
        snprintf(m->error, sizeof m->error, "%s", db_last_error(m->db));
        return st;
    }
    char status[16] = "";
    if (PQntuples(r) == 1)
        snprintf(status, sizeof status, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (strcmp(status, "cancelled") == 0)
        return OP_OK;
    if (!status[0])
        return worker_msg_refuse(m, "order_not_cancelled", "refund requested for an unknown order");
    return worker_msg_refuse(m, "order_not_cancelled", "refund requested for an order that is %s",
                             status);
}

static op_status payment_on_refund(worker_msg *m, void *arg)
{
    payment_ctx *ctx = arg;
    const char *id = m->ev->order_id;
    op_status owed = payment_refund_owed(m);
    if (owed != OP_OK)
        return owed;
    long long amount = json_integer_value(json_object_get(m->ev->data, "amount"));
    long long refunded = 0;
    char err[256];
    provider_result res = provider_refund(ctx->provider, m->db, id, id, amount, &refunded, err,
                                          sizeof err);
    if (res != PROVIDER_OK) {
        snprintf(m->error, sizeof m->error, "%s", err);
        return res == PROVIDER_TRANSIENT ? OP_ERR_TRANSIENT : OP_ERR_PERMANENT;
    }
    log_info(&m->log, "refunded %lld", refunded);
    payment_refund r = {refunded};
    op_status st = worker_txn(m, payment_record_refund, &r);
    return st; /* OP_DUPLICATE: the worker logs and counts the ignored redelivery */
}

static const worker_route payment_routes[] = {
    {.type = "stock.reserved", .handle_set = payment_on_reserved},
    {.type = "payment.refund_requested", .handle_raw = payment_on_refund},
    {.type = NULL},
};

int main(int argc, char **argv)
{
    static payment_ctx ctx;
    long timeout_ms;
    long token_retention_ms;
    if (config_env_long("PAYMENT_TIMEOUT_MS", 5000, 10, 600000, &timeout_ms) != OP_OK)
        return 2;
    if (config_parse_duration_ms(config_env_str("PAYMENT_TOKEN_RETENTION", "7d"),
                                 &token_retention_ms) != OP_OK || token_retention_ms < 1000) {
        fprintf(stderr, "PAYMENT_TOKEN_RETENTION must be a duration of 1s or more\n");
        return 2;
    }
    snprintf(ctx.token_retention_s, sizeof ctx.token_retention_s, "%ld", token_retention_ms / 1000);
    const char *kind = config_env_str("PAYMENT_PROVIDER", "sim");
    ctx.provider = provider_new(kind, config_env_str("PAYMENT_URL", NULL), timeout_ms);
    if (!ctx.provider) {
        fprintf(stderr, "PAYMENT_PROVIDER must be 'sim', or 'http' with PAYMENT_URL set\n");
        return 2;
    }
    worker_spec spec = {
        .name = "payment",
        .program = "orderpipe-payment",
        .summary = "Charges reserved orders exactly once through the payment provider; refunds on request.",
        .routes = payment_routes,
        .arg = &ctx,
        .before_batch = payment_before_batch,
        .free_state = payment_free_state,
        .tick = payment_forget_tokens,
        .tick_ms = 1000,
        .help_extra = "  PAYMENT_PROVIDER      sim (default) or http\n"
                      "  PAYMENT_URL           base URL of the http provider\n"
                      "  PAYMENT_TIMEOUT_MS    provider call timeout (5000)\n"
                      "  PAYMENT_TOKEN_RETENTION  how long the token of an order never recorded is\n"
                      "                        kept (7d); tokens of orders past payment go at once\n",
    };
    int rc = worker_main(&spec, argc, argv);
    provider_free(ctx.provider);
    return rc;
}
