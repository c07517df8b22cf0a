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

/* --- sim ----------------------------------------------------------------------------------- */

static provider_result sim_charge(provider *p, const provider_charge_req *q, char *ref,
                                  size_t refsize, char *err, size_t n)
{
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

static provider_result http_post(provider *p, const char *path, const char *key, json_t *req,
                                 json_t **resp, char *err, size_t n)
{
    char url[1024], hdr[300];
    snprintf(url, sizeof url, "%s%s", p->url, path);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s", key);
    char *body = json_dumps(req, JSON_COMPACT);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, hdr);
    http_body out = {0};
    CURL *c = p->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, p->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    free(body);
    *resp = out.p ? json_loads(out.p, 0, NULL) : NULL;
    free(out.p);
    if (rc != CURLE_OK) {
        snprintf(err, n, "provider %s: %s", path, curl_easy_strerror(rc));
        return PROVIDER_TRANSIENT;
    }
    if (status >= 200 && status < 300)
        return PROVIDER_OK;
    const char *msg = json_string_value(json_object_get(*resp, "message"));
    int len = snprintf(err, n, "provider %s answered %ld%s", path, status, msg ? ": " : "");
    /* The provider's text, cut on a character boundary: half a character at the end would make
     * jansson refuse the payment.failed event built from it, and the decline would go round
     * the retries as if it were a failure. */
    if (msg && len > 0 && (size_t)len < n)
        provider_copy_text(err + len, n - (size_t)len, msg);
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
        return sim_charge(p, q, ref, refsize, err, n);
    json_t *req = json_pack("{ss sI ss ss}", "order_id", q->order_id, "amount",
                            (json_int_t)q->amount, "currency", q->currency, "token", q->token);
    json_t *resp = NULL;
    provider_result r = http_post(p, "/charges", q->key, req, &resp, err, n);
    if (r == PROVIDER_OK) {
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
