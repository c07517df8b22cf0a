/* orderpipe-notification: tells the customer that an order was confirmed or cancelled, once.
 *
 * The notification is claimed in a row (order, event) before sending and marked sent after, both
 * outside the send, so nothing waits on a transaction while a webhook answers. A crash between
 * send and mark sends again on redelivery; the delivery id in X-Orderpipe-Delivery (stable per
 * order and event) lets the receiver drop that duplicate. Channels: `log` (a JSON line appended
 * to a file, created 0600: it holds customers' personal data) and `webhook` (HTTP POST signed with
 * HMAC-SHA256; failures are retried with growing delays by the retry tiers, then dead-lettered).
 *
 * Egress (egress.h): the intake only lets a client name its own webhook hosts; here every URL is
 * parsed again, its host resolved by us, and the call refused (dead-lettered, permanent) when any
 * address is internal (loopback, private, link-local, metadata, ...) and not inside
 * NOTIFY_WEBHOOK_ALLOW_CIDRS; curl is pinned to the checked addresses (CURLOPT_RESOLVE, and its
 * open-socket callback checks again), follows no redirect and speaks https only (http too with
 * NOTIFY_WEBHOOK_ALLOW_HTTP). Each destination (scheme, host, port) has its own share of the
 * batch's call budget and a circuit breaker: after NOTIFY_BREAKER_FAILURES consecutive slow
 * failures (timeouts) its notifications go to the retry tiers at once, without a call, for
 * NOTIFY_BREAKER_OPEN_MS;
 * so one slow host cannot spend the time of every other customer's notifications.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "clock.h"
#include "egress.h"
#include "mem.h"
#include "metrics.h"
#include "worker.h"

/* Destinations remembered at once; the least recently used closed one makes room. */
#define NOTIFY_MAX_DESTS 1024

/* One webhook destination's circuit breaker and its spending in the current batch. */
typedef struct notify_dest {
    char key[EGRESS_HOST_MAX + 24]; /* "https://host:port" */
    int failures;                   /* consecutive failed calls */
    long long open_until_ms;        /* monotonic ms; calls are skipped before it */
    bool open;
    unsigned batch;                 /* the batch spent_ms belongs to */
    long long spent_ms;
    long long last_used_ms;
} notify_dest;

typedef enum { CHANNEL_LOG, CHANNEL_WEBHOOK } notify_channel;

typedef struct notify_ctx {
    notify_channel channel;
    const char *log_file;
    const char *webhook_url;
    const char *secret;
    long timeout_ms;
    CURL *curl;
    egress_cidrs allow_cidrs;  /* internal addresses that may be called anyway */
    bool allow_http;
    long breaker_failures, breaker_open_ms, host_budget_percent;
    notify_dest *dests;
    size_t ndests;
    unsigned batch;            /* counts batches, so a destination's spending starts at 0 */
    long long batch_budget_ms; /* the batch's call budget, as it started */
    metrics_family *m_calls, *m_open;
} notify_ctx;

static void notify_count(notify_ctx *ctx, const char *outcome)
{
    const char *l[] = {outcome};
    if (ctx->m_calls)
        metrics_add(ctx->m_calls, l, 1);
}

static void notify_set_open(notify_ctx *ctx, notify_dest *d, bool open)
{
    d->open = open;
    const char *l[] = {d->key};
    if (ctx->m_open)
        metrics_set(ctx->m_open, l, open ? 1 : 0);
}

/* The destination's state, created on first sight; NULL only when out of memory. */
static notify_dest *notify_dest_get(notify_ctx *ctx, const char *key)
{
    notify_dest *lru = NULL;
    for (size_t i = 0; i < ctx->ndests; i++) {
        if (strcmp(ctx->dests[i].key, key) == 0)
            return &ctx->dests[i];
        if (!ctx->dests[i].open && (!lru || ctx->dests[i].last_used_ms < lru->last_used_ms))
            lru = &ctx->dests[i];
    }
    notify_dest *d;
    if (ctx->ndests < NOTIFY_MAX_DESTS) {
        if (!ctx->dests && !(ctx->dests = calloc(NOTIFY_MAX_DESTS, sizeof *ctx->dests)))
            return NULL;
        d = &ctx->dests[ctx->ndests++];
    } else if (lru) {
        d = lru;
    } else {
        d = &ctx->dests[0]; /* every one open: forget the first */
    }
    memset(d, 0, sizeof *d);
    snprintf(d->key, sizeof d->key, "%s", key);
    return d;
}

/* After a call: a success closes the breaker, a failure counts towards opening it. */
static void notify_dest_result(notify_ctx *ctx, notify_dest *d, bool failed, const log_ctx *lc)
{
    if (!failed) {
        d->failures = 0;
        if (d->open) {
            log_info(lc, "webhook destination %s answers again: circuit closed", d->key);
            notify_set_open(ctx, d, false);
        }
        return;
    }
    if (++d->failures >= ctx->breaker_failures) {
        d->open_until_ms = (long long)clock_now_ms() + ctx->breaker_open_ms;
        if (!d->open)
            log_warn(lc, "webhook destination %s failed %d times in a row: circuit open for %ld ms",
                     d->key, d->failures, ctx->breaker_open_ms);
        notify_set_open(ctx, d, true);
    }
}

/* Curl's open-socket callback: the last look at the address it is about to connect to, which
 * must be one notify_resolve approved (the pin makes it so; this makes sure). */
static curl_socket_t notify_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    notify_ctx *ctx = arg;
    egress_addr ea;
    if (purpose != CURLSOCKTYPE_IPCXN || egress_addr_from_sockaddr(&a->addr, &ea) != 0 ||
        (egress_addr_internal(&ea) && !egress_cidrs_contain(&ctx->allow_cidrs, &ea)))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype, a->protocol);
}

/* Resolves u's host and checks every address: OP_OK with the CURLOPT_RESOLVE entry
 * ("host:port:addr,addr") in pin (empty for an IP literal, which curl does not resolve);
 * OP_ERR_PERMANENT when an address is internal and not allowed; OP_ERR_TRANSIENT when the name
 * does not resolve now. */
static op_status notify_resolve(notify_ctx *ctx, const egress_url *u, char *pin, size_t pinlen,
                                char *err, size_t errlen)
{
    char port[8];
    snprintf(port, sizeof port, "%u", u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = u->host_is_ip ? AI_NUMERICHOST : 0};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "webhook host %s does not resolve: %s", u->host, gai_strerror(rc));
        return OP_ERR_TRANSIENT;
    }
    size_t len = (size_t)snprintf(pin, pinlen, "%s:%u:", u->host, u->port);
    int naddr = 0;
    op_status st = OP_OK;
    for (struct addrinfo *ai = res; ai && st == OP_OK; ai = ai->ai_next) {
        egress_addr a;
        if (egress_addr_from_sockaddr(ai->ai_addr, &a) != 0)
            continue;
        char text[64];
        egress_addr_format(&a, text, sizeof text);
        const char *range = egress_addr_internal(&a);
        if (range && !egress_cidrs_contain(&ctx->allow_cidrs, &a)) {
            snprintf(err, errlen, "webhook host %s resolves to %s (%s), which is not allowed "
                                  "(NOTIFY_WEBHOOK_ALLOW_CIDRS)", u->host, text, range);
            st = OP_ERR_PERMANENT;
            break;
        }
        if (len < pinlen)
            len += (size_t)snprintf(pin + len, pinlen - len, a.family == AF_INET6 ? "%s[%s]" : "%s%s",
                                    naddr ? "," : "", text);
        naddr++;
    }
    freeaddrinfo(res);
    if (st == OP_OK && naddr == 0) {
        snprintf(err, errlen, "webhook host %s has no IPv4 or IPv6 address", u->host);
        st = OP_ERR_TRANSIENT;
    } else if (st == OP_OK && len >= pinlen) { /* a cut pin would leave curl to resolve */
        snprintf(err, errlen, "webhook host %s has too many addresses", u->host);
        st = OP_ERR_TRANSIENT;
    }
    if (u->host_is_ip)
        pin[0] = '\0';
    return st;
}

/* A JSON array of the messages' (order, event) pairs: [{"id": order id, "type": event}, ...]. */
static char *notify_pairs_json(worker_msg *const *msgs, int n)
{
    json_t *pairs = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(pairs, json_pack("{ss ss}", "id", msgs[i]->ev->order_id, "type",
                                               msgs[i]->ev->type));
    char *text = json_dumps(pairs, JSON_COMPACT);
    json_decref(pairs);
    return text;
}

static void notify_hmac_hex(const char *secret, const char *body, char out[65])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, strlen(body), mac,
         &len);
    for (unsigned i = 0; i < len && i < 32; i++)
        sprintf(out + 2 * i, "%02x", mac[i]);
    out[64] = '\0';
}

/* POSTs body to url, or refuses to. OP_ERR_PERMANENT: the destination is not allowed (never
 * retried); OP_ERR_TRANSIENT: failed, skipped by its breaker or out of time (retry tiers). The
 * error names the destination (scheme, host, port), never the whole URL: its path and query
 * may carry a client's secrets. */
static op_status notify_webhook(notify_ctx *ctx, worker *w, const char *url, const char *body,
                                const char *delivery, const log_ctx *lc, char *err, size_t errlen)
{
    egress_url u;
    const char *why;
    if (egress_parse_url(url, &u, &why) != OP_OK) {
        snprintf(err, errlen, "webhook URL refused: %s", why);
        notify_count(ctx, "refused");
        return OP_ERR_PERMANENT;
    }
    if (!u.https && !ctx->allow_http) {
        snprintf(err, errlen, "webhook URL refused: http is not allowed (NOTIFY_WEBHOOK_ALLOW_HTTP)");
        notify_count(ctx, "refused");
        return OP_ERR_PERMANENT;
    }
    char key[EGRESS_HOST_MAX + 24];
    snprintf(key, sizeof key, strchr(u.host, ':') ? "%s://[%s]:%u" : "%s://%s:%u",
             u.https ? "https" : "http", u.host, u.port);
    notify_dest *d = notify_dest_get(ctx, key);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return OP_ERR_TRANSIENT;
    }
    long long now = (long long)clock_now_ms();
    d->last_used_ms = now;
    if (d->batch != ctx->batch) {
        d->batch = ctx->batch;
        d->spent_ms = 0;
    }
    if (d->open && now < d->open_until_ms) {
        snprintf(err, errlen, "webhook destination %s: circuit open after %d failures; not called",
                 key, d->failures);
        notify_count(ctx, "breaker_open");
        return OP_ERR_TRANSIENT;
    }
    /* Past its open time the breaker lets calls through again; one more failure reopens it. */
    long long host_left = ctx->batch_budget_ms * ctx->host_budget_percent / 100 - d->spent_ms;
    long long timeout = ctx->timeout_ms;
    if (host_left < timeout)
        timeout = host_left;
    if (w && worker_batch_ms_left(w) < timeout)
        timeout = worker_batch_ms_left(w);
    if (timeout <= 0) {
        snprintf(err, errlen, "the batch's time for webhook destination %s ran out before this one",
                 key);
        notify_count(ctx, "out_of_time");
        return OP_ERR_TRANSIENT;
    }
    char pin[EGRESS_HOST_MAX + 512];
    op_status st = notify_resolve(ctx, &u, pin, sizeof pin, err, errlen);
    if (st != OP_OK) {
        notify_count(ctx, st == OP_ERR_PERMANENT ? "refused" : "failed");
        d->spent_ms += (long long)clock_now_ms() - now;
        return st;
    }
    /* curl is given the URL as we parsed it (host lower-cased), so it cannot read another host
     * out of it than the one checked and pinned. */
    bool v6 = strchr(u.host, ':') != NULL; /* curl keeps an IPv6 literal's brackets */
    CURLU *cu = curl_url();
    char *curl_host = NULL;
    if (!cu || curl_url_set(cu, CURLUPART_URL, url, 0) != CURLUE_OK ||
        (!v6 && curl_url_set(cu, CURLUPART_HOST, u.host, 0) != CURLUE_OK) ||
        curl_url_get(cu, CURLUPART_HOST, &curl_host, 0) != CURLUE_OK ||
        (!v6 && strcmp(curl_host, u.host) != 0)) {
        curl_free(curl_host);
        curl_url_cleanup(cu);
        snprintf(err, errlen, "webhook URL refused: curl reads it differently");
        notify_count(ctx, "refused");
        return OP_ERR_PERMANENT;
    }
    curl_free(curl_host);
    char sig[65], sig_hdr[100], del_hdr[200];
    notify_hmac_hex(ctx->secret, body, sig);
    snprintf(sig_hdr, sizeof sig_hdr, "X-Orderpipe-Signature: sha256=%s", sig);
    snprintf(del_hdr, sizeof del_hdr, "X-Orderpipe-Delivery: %s", delivery);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, sig_hdr);
    h = curl_slist_append(h, del_hdr);
    struct curl_slist *resolve = pin[0] ? curl_slist_append(NULL, pin) : NULL;
    const char *protocols = ctx->allow_http ? "http,https" : "https";
    CURL *c = ctx->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_CURLU, cu);
    curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, notify_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, ctx);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* a proxy from the environment would bypass the pin */
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, NULL);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (devnull)
        fclose(devnull);
    curl_easy_setopt(c, CURLOPT_CURLU, NULL);
    curl_url_cleanup(cu);
    curl_slist_free_all(h);
    curl_slist_free_all(resolve);
    long long took = (long long)clock_now_ms() - now;
    d->spent_ms += took;
    /* Only a slow failure counts towards the breaker: a host that refuses connections or answers
     * 503 at once costs the others nothing, and opening on it would only burn its notifications'
     * retry attempts while it comes back. */
    bool slow = rc == CURLE_OPERATION_TIMEDOUT || took * 4 >= ctx->timeout_ms;
    bool failed = rc != CURLE_OK || status >= 500 || status == 429;
    if (!failed || slow)
        notify_dest_result(ctx, d, failed, lc);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "webhook %s: %s", key, curl_easy_strerror(rc));
        notify_count(ctx, "failed");
        return OP_ERR_TRANSIENT;
    }
    if (status < 200 || status >= 300) {
        snprintf(err, errlen, "webhook %s answered %ld", key, status);
        notify_count(ctx, "failed");
        return OP_ERR_TRANSIENT;
    }
    notify_count(ctx, "sent");
    return OP_OK;
}

/* Appends the batch's lines to the log file in one write: lines from several processes never
 * mix, and the batch costs one system call. */
static op_status notify_log_lines(notify_ctx *ctx, const char *text, size_t len, char *err,
                                  size_t errlen)
{
    int fd = open(ctx->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s", ctx->log_file);
        return OP_ERR_TRANSIENT;
    }
    ssize_t w = write(fd, text, len);
    close(fd);
    if (w != (ssize_t)len) {
        snprintf(err, errlen, "cannot write %s", ctx->log_file);
        return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}

/* What before_batch did for one message, for its handler. */
typedef struct notify_state {
    bool already_sent;
    op_status sent;
    char error[640]; /* names the destination (up to 253 characters of host); the worker keeps
                        the first 255 bytes, all ASCII, in the DLQ headers */
} notify_state;

static void notify_free_state(void *state) { free(state); }

/* One statement for the batch: claims every (order, event) not claimed yet and learns which were
 * sent already. A repeat of a pair within the batch counts as sent by its first message. */
static op_status notify_claim_batch(db *d, notify_ctx *ctx, worker_msg *const *msgs, int n)
{
    char *pairs = notify_pairs_json(msgs, n);
    if (!pairs)
        return OP_ERR_TRANSIENT;
    const char *params[] = {pairs, ctx->channel == CHANNEL_LOG ? "log" : "webhook"};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "notify_claim_batch",
        "with x as (select t.k::int as k, (t.r->>'id')::uuid as id, t.r->>'type' as type "
        "  from json_array_elements($1::json) with ordinality as t(r, k)), "
        "ins as (insert into notifications(order_id, event_type, channel, status) "
        "  select distinct id, type, $2, 'pending' from x on conflict do nothing) "
        "select x.k, coalesce(n.status, 'pending') from x left join notifications n "
        "  on n.order_id = x.id and n.event_type = x.type "
        "  and n.order_id = any(array(select id from x)) order by x.k",
        2, params, &st);
    free(pairs);
    if (!r)
        return st;
    if (PQntuples(r) != n) {
        PQclear(r);
        return OP_ERR_TRANSIENT;
    }
    for (int i = 0; i < n; i++) {
        notify_state *s = msgs[i]->state;
        s->already_sent = strcmp(PQgetvalue(r, i, 1), "sent") == 0;
        for (int j = 0; j < i && !s->already_sent; j++)
            s->already_sent = strcmp(msgs[j]->ev->order_id, msgs[i]->ev->order_id) == 0 &&
                              strcmp(msgs[j]->ev->type, msgs[i]->ev->type) == 0;
    }
    PQclear(r);
    return OP_OK;
}

/* Outside any transaction: claim the batch (one commit), then send what is not sent yet. */
static op_status notify_before_batch(worker *w, db *d, worker_msg *const *msgs, int n, void *arg)
{
    notify_ctx *ctx = arg;
    ctx->batch++;
    ctx->batch_budget_ms = worker_batch_ms_left(w);
    for (int i = 0; i < n; i++)
        if (!(msgs[i]->state = calloc(1, sizeof(notify_state))))
            return OP_ERR_TRANSIENT;
    op_status st = notify_claim_batch(d, ctx, msgs, n);
    if (st != OP_OK)
        return st;
    size_t cap = 0, len = 0;
    char *lines = NULL;
    for (int i = 0; i < n; i++) {
        notify_state *s = msgs[i]->state;
        if (s->already_sent)
            continue;
        if (ctx->channel != CHANNEL_LOG && !worker_batch_has_time(w)) {
            s->sent = OP_ERR_TRANSIENT;
            snprintf(s->error, sizeof s->error,
                     "the batch's time for webhook calls ran out before this one");
            continue;
        }
        const cloudevent_view *ev = msgs[i]->ev;
        char delivery[120];
        snprintf(delivery, sizeof delivery, "%s/%s", ev->order_id, ev->type);
        json_t *note = json_pack("{ss ss ss sO}", "delivery_id", delivery, "order_id",
                                 ev->order_id, "event", ev->type, "data", ev->data);
        char *body = json_dumps(note, JSON_COMPACT);
        json_decref(note);
        if (ctx->channel == CHANNEL_LOG) {
            size_t bl = strlen(body);
            if (len + bl + 1 > cap) {
                cap = (len + bl + 1) * 2;
                lines = mem_realloc(lines, cap);
            }
            memcpy(lines + len, body, bl);
            len += bl;
            lines[len++] = '\n';
        } else {
            const char *url =
                json_string_value(json_object_get(json_object_get(ev->data, "notify"), "webhook_url"));
            s->sent = notify_webhook(ctx, w, url ? url : ctx->webhook_url, body, delivery,
                                     &msgs[i]->log, s->error, sizeof s->error);
        }
        free(body);
    }
    if (ctx->channel == CHANNEL_LOG && len > 0) {
        char err[256];
        st = notify_log_lines(ctx, lines, len, err, sizeof err);
        for (int i = 0; i < n && st != OP_OK; i++) {
            notify_state *s = msgs[i]->state;
            s->sent = st;
            snprintf(s->error, sizeof s->error, "%s", err);
        }
    }
    free(lines);
    return OP_OK;
}

/* In the batch transaction: marks the batch's sent notifications in one statement; one that
 * could not be sent is left for a retry. */
static op_status notify_on_events(worker_msg *const *msgs, int n, void *arg)
{
    (void)arg;
    worker_msg **sent = mem_calloc((size_t)n, sizeof *sent);
    int k = 0;
    for (int i = 0; i < n; i++) {
        worker_msg *m = msgs[i];
        notify_state *s = m->state;
        if (s->already_sent)
            log_info(&m->log, "%s already notified", m->ev->type);
        else if (s->sent != OP_OK)
            worker_msg_fail(m, s->sent, "%s", s->error);
        else
            sent[k++] = m;
    }
    char *pairs = k > 0 ? notify_pairs_json(sent, k) : NULL;
    free(sent);
    if (k == 0)
        return OP_OK;
    if (!pairs)
        return OP_ERR_TRANSIENT;
    const char *params[] = {pairs};
    op_status st = db_command(msgs[0]->db,
                              "update notifications n set status = 'sent', sent_at = now(), "
                              "attempts = n.attempts + 1 from json_to_recordset($1::json) "
                              "as x(id uuid, type text) where n.order_id = x.id and n.event_type = x.type "
                              "and n.order_id = any(array(select (e->>'id')::uuid "
                              "from json_array_elements($1::json) e))",
                              1, params);
    free(pairs);
    return st;
}

static const worker_route notify_routes[] = {
    {.type = "order.confirmed", .handle_set = notify_on_events},
    {.type = "order.cancelled", .handle_set = notify_on_events},
    {.type = NULL},
};

/* Registers the webhook metrics once connected (the registry exists by then). */
static op_status notify_start(worker *w, db *d, void *arg)
{
    (void)d;
    notify_ctx *ctx = arg;
    metrics_registry *r = worker_registry(w);
    if (ctx->channel != CHANNEL_WEBHOOK || !r)
        return OP_OK;
    ctx->m_calls = metrics_counter(r, "orderpipe_notify_webhooks_total",
                                   "Webhook notifications by outcome: sent, failed, refused (not an "
                                   "allowed destination), breaker_open, out_of_time (not called).",
                                   "outcome");
    ctx->m_open = metrics_gauge(r, "orderpipe_notify_breaker_open",
                                "1 while a webhook destination's circuit breaker is open.",
                                "destination");
    return OP_OK;
}

/* Takes this program's own flags out of argv (worker_main parses the rest). 0, or 2 on a bad
 * value. */
static int notify_flags(int *argc, char **argv, const char **cidrs, bool *allow_http)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--webhook-allow-http") == 0) {
            *allow_http = true;
        } else if (strncmp(a, "--webhook-allow-cidrs=", 22) == 0) {
            *cidrs = a + 22;
        } else if (strcmp(a, "--webhook-allow-cidrs") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "--webhook-allow-cidrs needs a value\n");
                return 2;
            }
            *cidrs = argv[++i];
        } else {
            argv[out++] = argv[i];
        }
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

int main(int argc, char **argv)
{
    static notify_ctx ctx;
    const char *channel = config_env_str("NOTIFY_CHANNEL", "log");
    ctx.log_file = config_env_str("NOTIFY_LOG_FILE", "notifications.log");
    ctx.webhook_url = config_env_str("NOTIFY_WEBHOOK_URL", NULL);
    ctx.secret = config_env_str("NOTIFY_WEBHOOK_SECRET", NULL);
    const char *cidrs = config_env_str("NOTIFY_WEBHOOK_ALLOW_CIDRS", NULL);
    if (config_env_long("NOTIFY_TIMEOUT_MS", 5000, 10, 600000, &ctx.timeout_ms) != OP_OK ||
        config_env_bool("NOTIFY_WEBHOOK_ALLOW_HTTP", false, &ctx.allow_http) != OP_OK ||
        config_env_long("NOTIFY_BREAKER_FAILURES", 3, 1, 1000, &ctx.breaker_failures) != OP_OK ||
        config_env_long("NOTIFY_BREAKER_OPEN_MS", 10000, 100, 3600000, &ctx.breaker_open_ms) != OP_OK ||
        config_env_long("NOTIFY_HOST_BUDGET_PERCENT", 25, 1, 100, &ctx.host_budget_percent) != OP_OK ||
        notify_flags(&argc, argv, &cidrs, &ctx.allow_http) != 0)
        return 2;
    char err[160];
    if (egress_cidrs_parse(&ctx.allow_cidrs, cidrs, err, sizeof err) != OP_OK) {
        fprintf(stderr, "NOTIFY_WEBHOOK_ALLOW_CIDRS: %s\n", err);
        return 2;
    }
    if (strcmp(channel, "log") == 0) {
        ctx.channel = CHANNEL_LOG;
    } else if (strcmp(channel, "webhook") == 0) {
        if (!ctx.webhook_url || !ctx.secret) {
            fprintf(stderr, "NOTIFY_CHANNEL=webhook needs NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET\n");
            egress_cidrs_free(&ctx.allow_cidrs);
            return 2;
        }
        ctx.channel = CHANNEL_WEBHOOK;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        ctx.curl = curl_easy_init();
    } else {
        fprintf(stderr, "NOTIFY_CHANNEL must be 'log' or 'webhook'\n");
        egress_cidrs_free(&ctx.allow_cidrs);
        return 2;
    }
    worker_spec spec = {
        .name = "notification",
        .program = "orderpipe-notification",
        .summary = "Tells the customer once that an order was confirmed or cancelled.",
        .routes = notify_routes,
        .arg = &ctx,
        .before_batch = notify_before_batch,
        .free_state = notify_free_state,
        .start = notify_start,
        /* Off the placed -> confirmed path: bigger batches leave the cores to the workers on
         * it (BENCHMARKS.md), and a customer does not notice 50 ms. */
        .linger_ms = 50,
        .help_extra =
            "  NOTIFY_CHANNEL        log (default) or webhook\n"
            "  NOTIFY_LOG_FILE       where the log channel appends, created 0600\n"
            "                        (notifications.log)\n"
            "  NOTIFY_WEBHOOK_URL    default webhook (an order's notify.webhook_url wins)\n"
            "  NOTIFY_WEBHOOK_SECRET HMAC-SHA256 key of X-Orderpipe-Signature\n"
            "  NOTIFY_TIMEOUT_MS     webhook timeout (5000)\n"
            "  --webhook-allow-cidrs CIDRS  internal addresses webhooks may reach anyway, e.g.\n"
            "                        127.0.0.1/32,10.1.0.0/16; any other loopback, private,\n"
            "                        link-local or metadata address is refused (dead-lettered)\n"
            "                        [NOTIFY_WEBHOOK_ALLOW_CIDRS]\n"
            "  --webhook-allow-http  call http:// webhooks too, not only https://\n"
            "                        [NOTIFY_WEBHOOK_ALLOW_HTTP=1]\n"
            "  NOTIFY_HOST_BUDGET_PERCENT  share of WORKER_CALL_BUDGET_MS one destination may\n"
            "                        spend in a batch (25); the rest of its notifications retry\n"
            "  NOTIFY_BREAKER_FAILURES / NOTIFY_BREAKER_OPEN_MS  consecutive slow failures (timed\n"
            "                        out, or a quarter of NOTIFY_TIMEOUT_MS spent) that open a\n"
            "                        destination's circuit (3), and for how long (10000): its\n"
            "                        notifications then retry without a call (each skip uses\n"
            "                        one of their retry attempts: keep it under the tiers' span)\n",
    };
    int rc = worker_main(&spec, argc, argv);
    if (ctx.curl)
        curl_easy_cleanup(ctx.curl);
    egress_cidrs_free(&ctx.allow_cidrs);
    free(ctx.dests);
    return rc;
}
