/* orderpipe-notification: tells the customer that an order was confirmed or cancelled, once.
 *
 * The notification is claimed in a row (order, event) before sending and marked sent after, both
 * outside the send, so nothing waits on a transaction while a webhook answers. A crash between
 * send and mark sends again on redelivery; the delivery id in X-Orderpipe-Delivery (stable per
 * order and event) lets the receiver drop that duplicate. Channels: `log` (a JSON line appended
 * to a file) and `webhook` (HTTP POST signed with HMAC-SHA256; failures are retried with growing
 * delays by the retry tiers, then dead-lettered).
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "worker.h"

typedef enum { CHANNEL_LOG, CHANNEL_WEBHOOK } notify_channel;

typedef struct notify_ctx {
    notify_channel channel;
    const char *log_file;
    const char *webhook_url;
    const char *secret;
    long timeout_ms;
    CURL *curl;
} notify_ctx;

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

static op_status notify_webhook(notify_ctx *ctx, const char *url, const char *body,
                                const char *delivery, char *err, size_t errlen)
{
    char sig[65], sig_hdr[100], del_hdr[200];
    notify_hmac_hex(ctx->secret, body, sig);
    snprintf(sig_hdr, sizeof sig_hdr, "X-Orderpipe-Signature: sha256=%s", sig);
    snprintf(del_hdr, sizeof del_hdr, "X-Orderpipe-Delivery: %s", delivery);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, sig_hdr);
    h = curl_slist_append(h, del_hdr);
    CURL *c = ctx->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ctx->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, NULL);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (devnull)
        fclose(devnull);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "webhook %s: %s", url, curl_easy_strerror(rc));
        return OP_ERR_TRANSIENT;
    }
    if (status < 200 || status >= 300) {
        snprintf(err, errlen, "webhook %s answered %ld", url, status);
        return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}

/* Appends the batch's lines to the log file in one write: lines from several processes never
 * mix, and the batch costs one system call. */
static op_status notify_log_lines(notify_ctx *ctx, const char *text, size_t len, char *err,
                                  size_t errlen)
{
    int fd = open(ctx->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
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
    char error[256];
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
                lines = realloc(lines, cap);
            }
            memcpy(lines + len, body, bl);
            len += bl;
            lines[len++] = '\n';
        } else {
            const char *url =
                json_string_value(json_object_get(json_object_get(ev->data, "notify"), "webhook_url"));
            s->sent = notify_webhook(ctx, url ? url : ctx->webhook_url, body, delivery, s->error,
                                     sizeof s->error);
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
    worker_msg *sent[n];
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
    if (k == 0)
        return OP_OK;
    char *pairs = notify_pairs_json(sent, k);
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

int main(int argc, char **argv)
{
    static notify_ctx ctx;
    const char *channel = config_env_str("NOTIFY_CHANNEL", "log");
    ctx.log_file = config_env_str("NOTIFY_LOG_FILE", "notifications.log");
    ctx.webhook_url = config_env_str("NOTIFY_WEBHOOK_URL", NULL);
    ctx.secret = config_env_str("NOTIFY_WEBHOOK_SECRET", NULL);
    if (config_env_long("NOTIFY_TIMEOUT_MS", 5000, 10, 600000, &ctx.timeout_ms) != 0)
        return 2;
    if (strcmp(channel, "log") == 0) {
        ctx.channel = CHANNEL_LOG;
    } else if (strcmp(channel, "webhook") == 0) {
        if (!ctx.webhook_url || !ctx.secret) {
            fprintf(stderr, "NOTIFY_CHANNEL=webhook needs NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET\n");
            return 2;
        }
        ctx.channel = CHANNEL_WEBHOOK;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        ctx.curl = curl_easy_init();
    } else {
        fprintf(stderr, "NOTIFY_CHANNEL must be 'log' or 'webhook'\n");
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
        /* Off the placed -> confirmed path: bigger batches leave the cores to the workers on
         * it (BENCHMARKS.md), and a customer does not notice 50 ms. */
        .linger_ms = 50,
        .help_extra = "  NOTIFY_CHANNEL        log (default) or webhook\n"
                      "  NOTIFY_LOG_FILE       where the log channel appends (notifications.log)\n"
                      "  NOTIFY_WEBHOOK_URL    default webhook (an order's notify.webhook_url wins)\n"
                      "  NOTIFY_WEBHOOK_SECRET HMAC-SHA256 key of X-Orderpipe-Signature\n"
                      "  NOTIFY_TIMEOUT_MS     webhook timeout (5000)\n",
    };
    int rc = worker_main(&spec, argc, argv);
    if (ctx.curl)
        curl_easy_cleanup(ctx.curl);
    return rc;
}
