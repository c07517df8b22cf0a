/* fake-provider: a payment provider for the tests of PAYMENT_PROVIDER=http (docs/design.md §4),
 * serving the provider API the payment worker calls:
 *
 *   POST /charges               {order_id, amount, currency, token}, Idempotency-Key = charge key:
 *                               200 succeeded | 202 pending | 402 declined | 5xx transient
 *   GET  /charges/{key}         the charge as it stands now (404 if never booked)
 *   POST /charges/{key}/void    200 voided | 409 too late (succeeded) | 404 never booked
 *   POST /refunds               {charge_key, order_id, amount}: 200 {id, amount refunded}
 *   GET  /settlement?date=D     the day's settled movements as CSV (fake_settlement.c)
 *   GET  /_stats                counters of charges, queries, voids and notifications
 *   POST /_control?name=value   faults and behaviours (fp_controls in fake_provider.h)
 *
 * A key is booked once, and a repeat of it answers as the booking now stands, as a real provider
 * does. A charge that succeeds is appended to a JSON-lines ledger (as is a refund of more than 0)
 * that the tests load into sim_provider_ledger, so the invariant check reads the provider's books;
 * a pending charge is written there only once it succeeds, a void writes nothing.
 * Tokens: tok_decline -> 402; tok_flaky -> 503 on its first two attempts; tok_pending -> pending,
 * succeeds after notify_delay_ms; tok_pending_fail -> pending, then fails; tok_pending_never ->
 * pending for ever; tok_pending_late -> pending, succeeds after late_ms (and with void_refuse=1
 * refuses a void with 409 "processing" meanwhile); any other token succeeds at once, unless
 * pending_percent makes it pending. Hostile answers: tok_decline_long -> 402 whose message is
 * 500 x "é" (1000 bytes), tok_long_ref -> charged, with a 4000-byte reference, tok_ctl_ref ->
 * charged, with a reference holding control characters and non-ASCII text.
 * A stalled provider (stall_ms) books at once and answers late (the caller's timeout loses the
 * answer, so its retry must not charge twice); a failing one (fail_percent) answers 500 without
 * booking. A completed pending charge is notified to --notify-url (fake_notify.c). */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_provider.h"
#include "mem.h"

#define BUCKETS 65536

struct fake_provider fp;
static booking *table[BUCKETS];

int fp_chance(int percent)
{
    return percent > 0 && (int)(rand_r(&fp.seed) % 100) < percent;
}

static unsigned key_hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % BUCKETS;
}

static booking *booking_find(const char *key, int create)
{
    unsigned h = key_hash(key);
    for (booking *b = table[h]; b; b = b->next)
        if (strcmp(b->key, key) == 0)
            return b;
    if (!create)
        return NULL;
    booking *b = mem_calloc(1, sizeof *b);
    b->key = mem_strdup(key);
    b->next = table[h];
    table[h] = b;
    if (fp.last)
        fp.last->later = b;
    else
        fp.first = b;
    fp.last = b;
    return b;
}

/* `unit` n times, in a new string. */
static char *repeat(const char *unit, int n)
{
    size_t u = strlen(unit);
    char *s = mem_alloc(u * (size_t)n + 1);
    for (int i = 0; i < n; i++)
        memcpy(s + u * (size_t)i, unit, u);
    s[u * (size_t)n] = '\0';
    return s;
}

typedef struct late_reply {
    struct evhttp_request *req;
    int status;
    char *body;
} late_reply;

static void reply_now(struct evhttp_request *req, int status, const char *type, const char *body)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", out);
    evbuffer_free(out);
}

static void reply_late(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    late_reply *p = arg;
    reply_now(p->req, p->status, "application/json", p->body);
    free(p->body);
    free(p);
}

/* Answers with body (a reference is taken), stall_ms late if the provider is stalled. */
static void reply(struct evhttp_request *req, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (fp.ctl.stall_ms <= 0) {
        reply_now(req, status, "application/json", s);
        free(s);
        return;
    }
    late_reply *p = mem_alloc(sizeof *p);
    *p = (late_reply){req, status, s};
    struct timeval tv = {fp.ctl.stall_ms / 1000, (fp.ctl.stall_ms % 1000) * 1000};
    event_base_once(fp.base, -1, EV_TIMEOUT, reply_late, p, &tv);
}

static json_t *read_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *s = mem_alloc(n + 1);
    evbuffer_remove(in, s, n);
    s[n] = '\0';
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    return j;
}

static void ledger_append(const booking *b)
{
    fprintf(fp.ledger, "{\"key\":\"%s\",\"order_id\":\"%s\",\"kind\":\"%s\",\"amount\":%lld}\n",
            b->key, b->order_id, b->is_refund ? "refund" : "charge", b->amount);
    fflush(fp.ledger);
}

static const char *state_name(const booking *b)
{
    switch (b->state) {
    case CH_PENDING: return "pending";
    case CH_SUCCEEDED: return b->refunded > 0 ? "refunded" : "succeeded";
    case CH_VOIDED: return "voided";
    default: return "failed";
    }
}

static void charge_succeed(booking *b)
{
    b->state = CH_SUCCEEDED;
    b->settled_at = time(NULL);
    ledger_append(b);
}

/* A pending charge's time has come: it succeeds or fails, unless voided meanwhile. */
static void charge_complete(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    booking *b = arg;
    if (b->state != CH_PENDING)
        return;
    if (b->end == END_FAIL) {
        b->state = CH_FAILED;
        b->message = mem_strdup("declined by the issuer");
    } else {
        charge_succeed(b);
    }
    notify_completed(b);
}

static void charge_pend(booking *b, pending_end end)
{
    b->state = CH_PENDING;
    b->end = end;
    if (end == END_NEVER)
        return;
    long ms = end == END_LATE ? fp.ctl.late_ms : fp.ctl.notify_delay_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_once(fp.base, -1, EV_TIMEOUT, charge_complete, b, &tv);
}

/* Books a new charge from its request body; 0, or the HTTP status of a transient refusal. */
static int charge_book(booking *b, json_t *body)
{
    const char *token = json_string_value(json_object_get(body, "token"));
    if (!token)
        token = "";
    if (strcmp(token, "tok_flaky") == 0 && b->attempts <= 2)
        return 503;
    char id[64];
    snprintf(id, sizeof id, "ch_%ld", ++fp.next_id);
    b->id = mem_strdup(id);
    b->charge_key = b->key;
    b->order_id = mem_strdup(json_string_value(json_object_get(body, "order_id")));
    b->amount = json_integer_value(json_object_get(body, "amount"));
    const char *cur = json_string_value(json_object_get(body, "currency"));
    snprintf(b->currency, sizeof b->currency, "%s", cur ? cur : "EUR");
    if (strncmp(token, "tok_decline", 11) == 0) {
        b->state = CH_DECLINED;
        if (strcmp(token, "tok_decline_long") == 0)
            b->message = repeat("\xc3\xa9", 500);
    } else if (strcmp(token, "tok_pending") == 0) {
        charge_pend(b, END_SUCCEED);
    } else if (strcmp(token, "tok_pending_fail") == 0) {
        charge_pend(b, END_FAIL);
    } else if (strcmp(token, "tok_pending_never") == 0) {
        charge_pend(b, END_NEVER);
    } else if (strcmp(token, "tok_pending_late") == 0) {
        charge_pend(b, END_LATE);
    } else if (fp_chance(fp.ctl.pending_percent)) {
        charge_pend(b, END_SUCCEED);
    } else {
        if (strcmp(token, "tok_long_ref") == 0) {
            free(b->id);
            b->id = repeat("r", 4000);
        } else if (strcmp(token, "tok_ctl_ref") == 0) {
            free(b->id);
            b->id = mem_strdup("ch_\x01\x1b[31m\t\xe2\x82\xac\x7f_end");
        }
        charge_succeed(b);
    }
    return 0;
}

/* The answer to a charge request, as the booking now stands. */
static void charge_answer(struct evhttp_request *req, const booking *b)
{
    switch (b->state) {
    case CH_PENDING:
        reply(req, 202, json_pack("{ss ss}", "id", b->id, "status", "pending"));
        break;
    case CH_SUCCEEDED:
        reply(req, 200, json_pack("{ss ss sI}", "id", b->id, "status", "succeeded", "amount",
                                  (json_int_t)b->amount));
        break;
    case CH_VOIDED:
        reply(req, 402, json_pack("{ss ss}", "id", b->id, "message", "charge voided"));
        break;
    default:
        reply(req, 402, json_pack("{ss ss}", "id", b->id, "message",
                                  b->message ? b->message : "card declined"));
    }
}

/* What every POST of a booking shares: the checks of the method, the Idempotency-Key, the body's
 * order_id, the injected failures, then the key's booking (made if new) with one more attempt.
 * Returns the booking, or NULL once it has answered. */
static booking *post_booking(struct evhttp_request *req, json_t *body)
{
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST || !key || !*key ||
        !json_string_value(json_object_get(body, "order_id"))) {
        reply_now(req, 400, "application/json",
                  "{\"message\":\"POST with Idempotency-Key and order_id\"}");
        return NULL;
    }
    if (fp_chance(fp.ctl.fail_percent)) {
        reply_now(req, 500, "application/json", "{\"message\":\"provider failure (injected)\"}");
        return NULL;
    }
    booking *b = booking_find(key, 1);
    b->attempts++;
    return b;
}

static void on_charge(struct evhttp_request *req, void *arg)
{
    (void)arg;
    json_t *body = read_body(req);
    booking *b = post_booking(req, body);
    if (b) {
        int refused = b->id ? 0 : charge_book(b, body);
        if (refused)
            reply_now(req, refused, "application/json",
                      "{\"message\":\"temporarily unavailable (flaky token)\"}");
        else
            charge_answer(req, b);
    }
    json_decref(body);
}

static void on_refund(struct evhttp_request *req, void *arg)
{
    (void)arg;
    json_t *body = read_body(req);
    booking *b = post_booking(req, body);
    if (b) {
        if (!b->id) {
            char id[64];
            snprintf(id, sizeof id, "re_%ld", ++fp.next_id);
            b->id = mem_strdup(id);
            b->is_refund = 1;
            b->order_id = mem_strdup(json_string_value(json_object_get(body, "order_id")));
            const char *ck = json_string_value(json_object_get(body, "charge_key"));
            booking *charge = ck ? booking_find(ck, 0) : NULL;
            b->charge_key = mem_strdup(ck ? ck : "");
            if (charge && !charge->is_refund && charge->state == CH_SUCCEEDED) {
                b->amount = charge->amount - charge->refunded;
                charge->refunded += b->amount;
                memcpy(b->currency, charge->currency, sizeof b->currency);
            }
            b->state = CH_SUCCEEDED;
            b->settled_at = time(NULL);
            if (b->amount > 0)
                ledger_append(b);
        }
        reply(req, 200, json_pack("{ss sI}", "id", b->id, "amount", (json_int_t)b->amount));
    }
    json_decref(body);
}

static json_t *charge_json(const booking *b)
{
    json_t *j = json_pack("{ss ss ss sI ss}", "id", b->id, "charge_key", b->key, "status",
                          state_name(b), "amount", (json_int_t)b->amount, "currency", b->currency);
    if (b->state == CH_FAILED || b->state == CH_DECLINED)
        json_object_set_new(j, "reason",
                            json_string(b->message ? b->message : "card declined"));
    return j;
}

static void on_void(struct evhttp_request *req, booking *b)
{
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
    if (!key || !*key) {
        reply_now(req, 400, "application/json", "{\"message\":\"POST with Idempotency-Key\"}");
        return;
    }
    if (!b) {
        fp.voids_unknown++;
        reply(req, 404, json_pack("{ss}", "message", "no such charge"));
    } else if (b->state == CH_SUCCEEDED) {
        fp.voids_refused++;
        reply(req, 409, json_pack("{ss}", "status", state_name(b)));
    } else if (b->state == CH_PENDING && b->end == END_LATE && fp.ctl.void_refuse) {
        fp.voids_refused++;
        reply(req, 409, json_pack("{ss}", "status", "processing"));
    } else {
        if (b->state == CH_PENDING)
            b->state = CH_VOIDED;
        fp.voids_voided++;
        reply(req, 200, json_pack("{ss}", "status", "voided"));
    }
}

/* GET /charges/{key} and POST /charges/{key}/void; anything else is 404. */
static void on_other(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    char *decoded = path ? evhttp_uridecode(path, 0, NULL) : NULL;
    const char *rest = decoded && strncmp(decoded, "/charges/", 9) == 0 ? decoded + 9 : NULL;
    size_t n = rest ? strcspn(rest, "/") : 0;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (n > 0 && fp_chance(fp.ctl.fail_percent)) {
        reply_now(req, 500, "application/json", "{\"message\":\"provider failure (injected)\"}");
    } else if (n > 0 && rest[n] == '\0' && cmd == EVHTTP_REQ_GET) {
        fp.queries++;
        booking *b = booking_find(rest, 0);
        if (b && b->id && !b->is_refund)
            reply(req, 200, charge_json(b));
        else
            reply(req, 404, json_pack("{ss}", "message", "no such charge"));
    } else if (n > 0 && strcmp(rest + n, "/void") == 0 && cmd == EVHTTP_REQ_POST) {
        char *ck = mem_strndup(rest, n);
        booking *b = booking_find(ck, 0);
        free(ck);
        on_void(req, b && b->id && !b->is_refund ? b : NULL);
    } else {
        reply_now(req, 404, "application/json", "{\"message\":\"no such resource\"}");
    }
    free(decoded);
}

static void on_settlement(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evkeyvalq q;
    evhttp_parse_query(evhttp_request_get_uri(req), &q);
    const char *date = evhttp_find_header(&q, "date");
    char *csv = date ? settlement_csv(date) : NULL;
    if (csv)
        reply_now(req, 200, "text/csv; charset=utf-8", csv);
    else
        reply_now(req, 400, "application/json", "{\"message\":\"date=YYYY-MM-DD is required\"}");
    free(csv);
    evhttp_clear_headers(&q);
}

static void on_stats(struct evhttp_request *req, void *arg)
{
    (void)arg;
    long by_state[CH_DECLINED + 1] = {0};
    long refunds = 0;
    long long refunded = 0;
    for (const booking *b = fp.first; b; b = b->later) {
        if (!b->id)
            continue;
        if (b->is_refund) {
            refunds++;
            refunded += b->amount;
        } else {
            by_state[b->state]++;
        }
    }
    json_t *j = json_pack(
        "{s{si si si si si} s{si sI} si s{si si si} so}", "charges", "pending",
        (int)by_state[CH_PENDING], "succeeded", (int)by_state[CH_SUCCEEDED], "failed",
        (int)by_state[CH_FAILED], "voided", (int)by_state[CH_VOIDED], "declined",
        (int)by_state[CH_DECLINED], "refunds", "count", (int)refunds, "amount",
        (json_int_t)refunded, "queries", (int)fp.queries, "voids", "voided",
        (int)fp.voids_voided, "refused", (int)fp.voids_refused, "unknown",
        (int)fp.voids_unknown, "notifications", (json_t *)notify_stats());
    char *s = json_dumps(j, JSON_COMPACT);
    reply_now(req, 200, "application/json", s);
    free(s);
    json_decref(j);
}

static void on_control(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evkeyvalq q;
    evhttp_parse_query(evhttp_request_get_uri(req), &q);
    static const struct {
        const char *name;
        size_t offset;
        int is_long;
    } knobs[] = {
#define KNOB(f, l) {#f, offsetof(fp_controls, f), l}
        KNOB(stall_ms, 1),      KNOB(fail_percent, 0),   KNOB(notify_delay_ms, 1),
        KNOB(late_ms, 1),       KNOB(pending_percent, 0), KNOB(void_refuse, 0),
        KNOB(lose_percent, 0),  KNOB(dup_percent, 0),    KNOB(forge_percent, 0),
        KNOB(reorder, 0),       KNOB(reorder_batch, 0),  KNOB(discrepancies, 0),
#undef KNOB
    };
    json_t *now = json_object();
    for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
        char *field = (char *)&fp.ctl + knobs[i].offset;
        const char *v = evhttp_find_header(&q, knobs[i].name);
        if (v && knobs[i].is_long)
            *(long *)field = atol(v);
        else if (v)
            *(int *)field = atoi(v);
        json_object_set_new(now, knobs[i].name,
                            json_integer(knobs[i].is_long ? *(long *)field : *(int *)field));
    }
    evhttp_clear_headers(&q);
    char *s = json_dumps(now, JSON_COMPACT);
    reply_now(req, 200, "application/json", s);
    free(s);
    json_decref(now);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    event_base_loopexit(fp.base, NULL);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: fake-provider [--notify-url URL] [--secret SECRET] HOST:PORT LEDGER.jsonl\n"
            "  --notify-url URL  [FAKE_PROVIDER_NOTIFY_URL] where completed pending charges are\n"
            "                    notified (POST, header Orderpipe-Signature: t=..,v1=..)\n"
            "  --secret SECRET   [FAKE_PROVIDER_SECRET] the channel's notification secret\n"
            "  POST /charges, GET /charges/KEY, POST /charges/KEY/void, POST /refunds\n"
            "  GET /settlement?date=YYYY-MM-DD, GET /_stats\n"
            "  POST /_control?stall_ms=N&fail_percent=P&notify_delay_ms=N&late_ms=N\n"
            "      &pending_percent=P&void_refuse=0|1&lose_percent=P&dup_percent=P\n"
            "      &forge_percent=P&reorder=0|1&reorder_batch=N&discrepancies=0|1\n");
}

int main(int argc, char **argv)
{
    const char *notify_url = getenv("FAKE_PROVIDER_NOTIFY_URL");
    const char *secret = getenv("FAKE_PROVIDER_SECRET");
    static const struct option opts[] = {{"notify-url", required_argument, NULL, 'u'},
                                         {"secret", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'u')
            notify_url = optarg;
        else if (c == 's')
            secret = optarg;
        else if (c == 'h')
            return usage(stdout), 0;
        else
            return usage(stderr), 2;
    }
    if (argc - optind != 2)
        return usage(stderr), 2;
    char host[256];
    snprintf(host, sizeof host, "%s", argv[optind]);
    char *colon = strrchr(host, ':');
    if (!colon)
        return usage(stderr), 2;
    *colon = '\0';
    if (notify_url && *notify_url && (!secret || !*secret)) {
        fprintf(stderr, "fake-provider: --notify-url needs --secret\n");
        return 2;
    }
    fp.ledger = fopen(argv[optind + 1], "a");
    if (!fp.ledger) {
        perror(argv[optind + 1]);
        return 1;
    }
    fp.seed = 42;
    fp.ctl.notify_delay_ms = 200;
    fp.ctl.late_ms = 1000;
    fp.ctl.reorder_batch = 10;
    signal(SIGPIPE, SIG_IGN); /* a caller that timed out must not kill us when we answer late */
    fp.base = event_base_new();
    if (notify_url && *notify_url && notify_init(notify_url, secret) != 0) {
        fprintf(stderr, "fake-provider: --notify-url must be http://HOST[:PORT][/PATH]\n");
        return 2;
    }
    struct evhttp *http = evhttp_new(fp.base);
    evhttp_set_cb(http, "/charges", on_charge, NULL);
    evhttp_set_cb(http, "/refunds", on_refund, NULL);
    evhttp_set_cb(http, "/settlement", on_settlement, NULL);
    evhttp_set_cb(http, "/_control", on_control, NULL);
    evhttp_set_cb(http, "/_stats", on_stats, NULL);
    evhttp_set_gencb(http, on_other, NULL);
    if (evhttp_bind_socket(http, host, (unsigned short)atoi(colon + 1)) != 0) {
        fprintf(stderr, "fake-provider: cannot listen on %s\n", argv[optind]);
        return 1;
    }
    struct event *term = evsignal_new(fp.base, SIGTERM, on_signal, NULL);
    event_add(term, NULL);
    event_base_dispatch(fp.base);
    event_free(term);
    evhttp_free(http);
    notify_shutdown();
    event_base_free(fp.base);
    fclose(fp.ledger);
    return 0;
}
