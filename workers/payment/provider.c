/* provider: sim and http payment providers (see provider.h). */
#include "provider.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "utf8.h"

typedef enum { PROVIDER_SIM, PROVIDER_HTTP } provider_kind;

struct provider {
    provider_kind kind;
    char *url;
    long timeout_ms;
    CURL *curl;
    json_t *sim_charges; /* the sim's bookings of the open batch, written by provider_batch_end */
};

provider *provider_new(const char *kind, const char *url, long timeout_ms)
{
    provider *p = mem_calloc(1, sizeof *p);
    if (strcmp(kind, "sim") == 0) {
        p->kind = PROVIDER_SIM;
        return p;
    }
    if (strcmp(kind, "http") == 0 && url && *url) {
        p->kind = PROVIDER_HTTP;
        p->url = mem_strdup(url);
        p->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        p->curl = curl_easy_init();
        return p;
    }
    free(p);
    return NULL;
}

void provider_free(provider *p)
{
    if (!p)
        return;
    if (p->curl)
        curl_easy_cleanup(p->curl);
    json_decref(p->sim_charges);
    free(p->url);
    free(p);
}

bool provider_is_remote(const provider *p) { return p->kind == PROVIDER_HTTP; }

/* --- sim ----------------------------------------------------------------------------------- */

static bool sim_pending_token(const char *token)
{
    return strcmp(token, "tok_pending") == 0 || strcmp(token, "tok_pending_never") == 0;
}

/* A pending token's charge: booked in sim_provider_pending at once (not with the batch), and
 * answered as that booking now stands. */
static provider_result sim_charge_pending(db *d, const provider_charge_req *q, char *ref,
                                          size_t refsize, char *err, size_t n)
{
    char amount[32];
    snprintf(amount, sizeof amount, "%lld", q->amount);
    const char *params[] = {q->key, q->order_id, amount, q->token};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "sim_charge_pending",
        "with ins as (insert into sim_provider_pending(key, order_id, amount, token) "
        "  values ($1, $2::uuid, $3::bigint, $4) on conflict do nothing returning status) "
        "select status from ins union all select status from sim_provider_pending where key = $1",
        4, params, &st);
    if (!r) {
        snprintf(err, n, "provider books unavailable: %s", db_last_error(d));
        return PROVIDER_TRANSIENT;
    }
    const char *status = PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "pending";
    provider_result res = strcmp(status, "succeeded") == 0 ? PROVIDER_OK
                          : strcmp(status, "voided") == 0 ? PROVIDER_DECLINED
                                                          : PROVIDER_PENDING;
    if (res == PROVIDER_DECLINED)
        snprintf(err, n, "the charge was voided");
    PQclear(r);
    snprintf(ref, refsize, "sim-%s", q->key);
    return res;
}

static provider_result sim_charge(provider *p, db *d, const provider_charge_req *q, char *ref,
                                  size_t refsize, char *err, size_t n)
{
    if (sim_pending_token(q->token))
        return sim_charge_pending(d, q, ref, refsize, err, n);
    if (strcmp(q->token, "tok_decline") == 0) {
        snprintf(err, n, "card declined");
        return PROVIDER_DECLINED;
    }
    if (strcmp(q->token, "tok_flaky") == 0 && q->attempt <= 2) {
        snprintf(err, n, "provider temporarily unavailable (flaky token, attempt %d)", q->attempt);
        return PROVIDER_TRANSIENT;
    }
    if (!p->sim_charges)
        p->sim_charges = json_array();
    if (json_array_append_new(p->sim_charges, json_pack("{ss ss sI}", "key", q->key, "order_id",
                                                        q->order_id, "amount",
                                                        (json_int_t)q->amount)) != 0) {
        snprintf(err, n, "out of memory");
        return PROVIDER_TRANSIENT;
    }
    snprintf(ref, refsize, "sim-%s", q->key);
    return PROVIDER_OK;
}

static provider_result sim_refund(db *d, const char *charge_key, const char *order_id,
                                  long long *refunded, char *err, size_t n)
{
    const char *params[] = {charge_key, order_id};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "sim_refund",
        "with ins as (insert into sim_provider_ledger(key, order_id, kind, amount) "
        "  select 'refund:' || $1, $2::uuid, 'refund', amount from sim_provider_ledger "
        "  where key = $1 and kind = 'charge' on conflict do nothing) "
        "select coalesce((select amount from sim_provider_ledger where key = 'refund:' || $1), "
        "  (select amount from sim_provider_ledger where key = $1 and kind = 'charge'), 0)",
        2, params, &st);
    if (!r) {
        snprintf(err, n, "provider books unavailable: %s", db_last_error(d));
        return PROVIDER_TRANSIENT;
    }
    *refunded = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return PROVIDER_OK;
}

/* A query completes a tok_pending charge 2 s after it was made: it is booked then. */
static provider_result sim_query(db *d, const char *key, provider_charge_info *out, char *err,
                                 size_t n)
{
    const char *params[] = {key};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "sim_query",
        "with done as (update sim_provider_pending set status = 'succeeded' where key = $1 "
        "  and status = 'pending' and token = 'tok_pending' and at <= now() - interval '2 seconds' "
        "  returning key, order_id, amount), "
        "book as (insert into sim_provider_ledger(key, order_id, kind, amount) "
        "  select key, order_id, 'charge', amount from done on conflict do nothing) "
        "select coalesce((select 'succeeded' from done), s.status), s.amount from sim_provider_pending s "
        "where s.key = $1 "
        "union all select 'succeeded', l.amount from sim_provider_ledger l where l.key = $1 "
        "  and l.kind = 'charge' and not exists (select 1 from sim_provider_pending where key = $1)",
        1, params, &st);
    if (!r) {
        snprintf(err, n, "provider books unavailable: %s", db_last_error(d));
        return PROVIDER_TRANSIENT;
    }
    *out = (provider_charge_info){.status = PROVIDER_CHARGE_UNKNOWN};
    if (PQntuples(r) > 0) {
        const char *status = PQgetvalue(r, 0, 0);
        out->status = strcmp(status, "succeeded") == 0 ? PROVIDER_CHARGE_SUCCEEDED
                      : strcmp(status, "voided") == 0  ? PROVIDER_CHARGE_VOIDED
                                                       : PROVIDER_CHARGE_PENDING;
        out->amount = atoll(PQgetvalue(r, 0, 1));
        snprintf(out->ref, sizeof out->ref, "sim-%s", key);
    }
    PQclear(r);
    return PROVIDER_OK;
}

/* Voids a pending charge; one that succeeded (pending or at once) is too late. */
static provider_void_result sim_void(db *d, const char *key, char *err, size_t n)
{
    const char *params[] = {key};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "sim_void",
        "with v as (update sim_provider_pending set status = 'voided' where key = $1 "
        "  and status = 'pending' returning 1) "
        "select case when exists (select 1 from v) then 'voided' "
        "  when exists (select 1 from sim_provider_ledger where key = $1 and kind = 'charge') "
        "  then 'succeeded' else 'voided' end",
        1, params, &st);
    if (!r) {
        snprintf(err, n, "provider books unavailable: %s", db_last_error(d));
        return PROVIDER_VOID_FAILED;
    }
    provider_void_result res = strcmp(PQgetvalue(r, 0, 0), "succeeded") == 0 ? PROVIDER_VOID_TOO_LATE
                                                                             : PROVIDER_VOIDED;
    PQclear(r);
    return res;
}

/* --- http ---------------------------------------------------------------------------------- */

/* Copies text a provider sent into dst (size n): valid UTF-8 cut on a character boundary
 * (utf8_copy), its control characters replaced by '?' (they would reach logs and tables). */
static void provider_copy_text(char *dst, size_t n, const char *src)
{
    utf8_copy(dst, n, src);
    for (char *c = dst; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

typedef struct http_body {
    char *p;
    size_t len;
} http_body;

static size_t http_collect(char *data, size_t size, size_t nmemb, void *arg)
{
    http_body *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > 65536)
        return 0;
    b->p = mem_realloc(b->p, b->len + n + 1);
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* One call: method "GET" (req NULL) or "POST" (req JSON, key its Idempotency-Key). *status
 * gets the HTTP status (0 when none came), *resp the JSON answer (NULL when none). OP_OK when
 * an answer came, else OP_ERR_TRANSIENT with err saying why. */
static op_status http_call(provider *p, const char *method, const char *path, const char *key,
                           json_t *req, long *status, json_t **resp, char *err, size_t n)
{
    char url[1280], hdr[300];
    snprintf(url, sizeof url, "%s%s", p->url, path);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", key ? key : "");
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (key)
        h = curl_slist_append(h, hdr);
    http_body out = {0};
    CURL *c = p->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "{}");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    free(body);
    *resp = out.p ? json_loads(out.p, 0, NULL) : NULL;
    free(out.p);
    if (rc != CURLE_OK) {
        snprintf(err, n, "provider %s: %s", path, curl_easy_strerror(rc));
        return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}

/* err = "provider PATH answered STATUS: <its message>". */
static void http_error(char *err, size_t n, const char *path, long status, json_t *resp)
{
    const char *msg = json_string_value(json_object_get(resp, "message"));
    int len = snprintf(err, n, "provider %s answered %ld%s", path, status, msg ? ": " : "");
    /* The provider's text, cut on a character boundary: half a character at the end would make
     * jansson refuse the payment.failed event built from it, and the decline would go round
     * the retries as if it were a failure. */
    if (msg && len > 0 && (size_t)len < n)
        provider_copy_text(err + len, n - (size_t)len, msg);
}

/* POST: 2xx success (202 pending), 402 declined, anything else transient. */
static provider_result http_post(provider *p, const char *path, const char *key, json_t *req,
                                 json_t **resp, char *err, size_t n)
{
    long status;
    if (http_call(p, "POST", path, key, req, &status, resp, err, n) != OP_OK)
        return PROVIDER_TRANSIENT;
    if (status == 202 ||
        (status == 200 && strcmp(json_string_value(json_object_get(*resp, "status")) ?: "", "pending") == 0))
        return PROVIDER_PENDING;
    if (status >= 200 && status < 300)
        return PROVIDER_OK;
    http_error(err, n, path, status, *resp);
    return status == 402 ? PROVIDER_DECLINED : PROVIDER_TRANSIENT;
}

op_status provider_batch_begin(provider *p, db *d)
{
    (void)d;
    json_decref(p->sim_charges);
    p->sim_charges = NULL;
    return OP_OK;
}

op_status provider_batch_end(provider *p, db *d)
{
    if (p->kind != PROVIDER_SIM || json_array_size(p->sim_charges) == 0)
        return OP_OK;
    /* One statement books the batch: all of its charges or none. */
    char *rows = json_dumps(p->sim_charges, JSON_COMPACT);
    json_decref(p->sim_charges);
    p->sim_charges = NULL;
    if (!rows)
        return OP_ERR_TRANSIENT;
    const char *params[] = {rows};
    op_status st = db_command(d, "insert into sim_provider_ledger(key, order_id, kind, amount) "
                                 "select key, order_id, 'charge', amount from json_to_recordset($1::json) "
                                 "as (key text, order_id uuid, amount bigint) on conflict do nothing",
                              1, params);
    free(rows);
    return st;
}

provider_result provider_charge(provider *p, db *d, const provider_charge_req *q, char *ref,
                                size_t refsize, char *err, size_t n)
{
    ref[0] = err[0] = '\0';
    if (p->kind == PROVIDER_SIM)
        return sim_charge(p, d, q, ref, refsize, err, n);
    json_t *req = json_pack("{ss sI ss ss}", "order_id", q->order_id, "amount",
                            (json_int_t)q->amount, "currency", q->currency, "token", q->token);
    json_t *resp = NULL;
    provider_result r = http_post(p, "/charges", q->key, req, &resp, err, n);
    if (r == PROVIDER_OK || r == PROVIDER_PENDING) {
        /* Written with the size of ref, not of err: a long reference overflowed it. */
        provider_copy_text(ref, refsize, json_string_value(json_object_get(resp, "id")));
        if (!ref[0])
            provider_copy_text(ref, refsize, q->key);
    }
    json_decref(req);
    json_decref(resp);
    return r;
}

provider_result provider_refund(provider *p, db *d, const char *charge_key, const char *order_id,
                                long long amount, long long *refunded, char *err, size_t n)
{
    err[0] = '\0';
    *refunded = 0;
    if (p->kind == PROVIDER_SIM)
        return sim_refund(d, charge_key, order_id, refunded, err, n);
    char key[200];
    snprintf(key, sizeof key, "refund:%s", charge_key);
    json_t *req = json_pack("{ss ss sI}", "charge_key", charge_key, "order_id", order_id,
                            "amount", (json_int_t)amount);
    json_t *resp = NULL;
    provider_result r = http_post(p, "/refunds", key, req, &resp, err, n);
    if (r == PROVIDER_OK)
        *refunded = (long long)json_integer_value(json_object_get(resp, "amount"));
    json_decref(req);
    json_decref(resp);
    return r;
}

static provider_charge_status http_charge_status(const char *s)
{
    static const struct {
        const char *name;
        provider_charge_status status;
    } names[] = {{"pending", PROVIDER_CHARGE_PENDING},   {"succeeded", PROVIDER_CHARGE_SUCCEEDED},
                 {"failed", PROVIDER_CHARGE_FAILED},     {"voided", PROVIDER_CHARGE_VOIDED},
                 {"refunded", PROVIDER_CHARGE_REFUNDED}};
    for (size_t i = 0; s && i < sizeof names / sizeof *names; i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].status;
    return PROVIDER_CHARGE_UNKNOWN;
}

provider_result provider_query(provider *p, db *d, const char *key, provider_charge_info *out,
                               char *err, size_t n)
{
    *out = (provider_charge_info){.status = PROVIDER_CHARGE_UNKNOWN};
    err[0] = '\0';
    if (p->kind == PROVIDER_SIM)
        return sim_query(d, key, out, err, n);
    char path[256];
    snprintf(path, sizeof path, "/charges/%s", key);
    json_t *resp = NULL;
    long status;
    provider_result res = PROVIDER_TRANSIENT;
    if (http_call(p, "GET", path, NULL, NULL, &status, &resp, err, n) != OP_OK) {
        /* err says why */
    } else if (status == 404) {
        res = PROVIDER_OK;
    } else if (status == 200 && json_is_object(resp)) {
        const char *st = json_string_value(json_object_get(resp, "status"));
        out->status = http_charge_status(st);
        if (out->status == PROVIDER_CHARGE_UNKNOWN) {
            snprintf(err, n, "provider %s answered an unknown status", path);
        } else {
            out->amount = (long long)json_integer_value(json_object_get(resp, "amount"));
            provider_copy_text(out->currency, sizeof out->currency,
                               json_string_value(json_object_get(resp, "currency")));
            provider_copy_text(out->ref, sizeof out->ref, json_string_value(json_object_get(resp, "id")));
            provider_copy_text(out->reason, sizeof out->reason,
                               json_string_value(json_object_get(resp, "reason")));
            res = PROVIDER_OK;
        }
    } else {
        http_error(err, n, path, status, resp);
    }
    json_decref(resp);
    return res;
}

provider_void_result provider_void(provider *p, db *d, const char *key, char *err, size_t n)
{
    err[0] = '\0';
    if (p->kind == PROVIDER_SIM)
        return sim_void(d, key, err, n);
    char path[256], vkey[200];
    snprintf(path, sizeof path, "/charges/%s/void", key);
    snprintf(vkey, sizeof vkey, "void:%s", key);
    json_t *req = json_object(), *resp = NULL;
    long status;
    provider_void_result res = PROVIDER_VOID_FAILED;
    if (http_call(p, "POST", path, vkey, req, &status, &resp, err, n) != OP_OK) {
        /* err says why */
    } else if (status == 200 || status == 404) {
        res = PROVIDER_VOIDED;
    } else if (status == 409 &&
               strcmp(json_string_value(json_object_get(resp, "status")) ?: "", "succeeded") == 0) {
        res = PROVIDER_VOID_TOO_LATE;
    } else {
        /* 409 "processing" and the rest: the void is tried again later. */
        http_error(err, n, path, status, resp);
    }
    json_decref(req);
    json_decref(resp);
    return res;
}
