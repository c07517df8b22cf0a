/* fake-provider: a payment provider for the tests of PAYMENT_PROVIDER=http (docs/design.md §4).
 *
 * POST /charges and POST /refunds with an Idempotency-Key: a key is booked once, and a repeat of
 * it answers the first booking again, as a real provider does. Every new booking is appended to a
 * JSON-lines ledger that the tests load into sim_provider_ledger, so the invariant check reads the
 * provider's books. Tokens: tok_decline -> 402, tok_flaky -> 503 on its first two attempts;
 * hostile answers: tok_decline_long -> 402 whose message is 500 x "é" (1000 bytes),
 * tok_long_ref -> charged, with a 4000-byte reference, tok_ctl_ref -> charged, with a reference
 * holding control characters and non-ASCII text.
 * Faults are switched at run time with POST /_control?stall_ms=N&fail_percent=P: a stalled
 * provider books the charge and then answers late (the caller's timeout loses the answer, so its
 * retry must not charge twice); a failing one answers 500 without booking. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct booking {
    char *key;
    char *id;
    long long amount;
    int attempts;
    int status; /* HTTP status the booking answers with */
    char *message; /* a decline's message when not the usual one */
    struct booking *next;
} booking;

#define BUCKETS 65536

static struct {
    struct event_base *base;
    FILE *ledger;
    booking *table[BUCKETS];
    long stall_ms;
    int fail_percent;
    long next_id;
    unsigned seed;
} fp;

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
    for (booking *b = fp.table[h]; b; b = b->next)
        if (strcmp(b->key, key) == 0)
            return b;
    if (!create)
        return NULL;
    booking *b = calloc(1, sizeof *b);
    b->key = strdup(key);
    b->next = fp.table[h];
    fp.table[h] = b;
    return b;
}

/* `unit` n times, in a new string. */
static char *repeat(const char *unit, int n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * (size_t)n + 1);
    for (int i = 0; i < n; i++)
        memcpy(s + u * (size_t)i, unit, u);
    s[u * (size_t)n] = '\0';
    return s;
}

typedef struct pending_reply {
    struct evhttp_request *req;
    int status;
    char *body;
} pending_reply;

static void reply_now(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", out);
    evbuffer_free(out);
}

static void reply_late(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pending_reply *p = arg;
    reply_now(p->req, p->status, p->body);
    free(p->body);
    free(p);
}

static void reply(struct evhttp_request *req, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (fp.stall_ms <= 0) {
        reply_now(req, status, s);
        free(s);
        return;
    }
    pending_reply *p = malloc(sizeof *p);
    *p = (pending_reply){req, status, s};
    struct timeval tv = {fp.stall_ms / 1000, (fp.stall_ms % 1000) * 1000};
    event_base_once(fp.base, -1, EV_TIMEOUT, reply_late, p, &tv);
}

static json_t *read_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *s = malloc(n + 1);
    evbuffer_remove(in, s, n);
    s[n] = '\0';
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    return j;
}

static void ledger_append(const char *key, const char *order_id, const char *kind, long long amount)
{
    fprintf(fp.ledger, "{\"key\":\"%s\",\"order_id\":\"%s\",\"kind\":\"%s\",\"amount\":%lld}\n", key,
            order_id, kind, amount);
    fflush(fp.ledger);
}

static void on_payment(struct evhttp_request *req, void *arg)
{
    int is_refund = arg != NULL;
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
    json_t *body = read_body(req);
    const char *order_id = json_string_value(json_object_get(body, "order_id"));
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST || !key || !*key || !order_id) {
        json_decref(body);
        reply_now(req, 400, "{\"message\":\"POST with Idempotency-Key and order_id\"}");
        return;
    }
    if (fp.fail_percent > 0 && (int)(rand_r(&fp.seed) % 100) < fp.fail_percent) {
        json_decref(body);
        reply_now(req, 500, "{\"message\":\"provider failure (injected)\"}");
        return;
    }
    booking *b = booking_find(key, 1);
    b->attempts++;
    if (!b->id) {
        const char *token = json_string_value(json_object_get(body, "token"));
        if (!is_refund && token && strcmp(token, "tok_flaky") == 0 && b->attempts <= 2) {
            json_decref(body);
            reply_now(req, 503, "{\"message\":\"temporarily unavailable (flaky token)\"}");
            return;
        }
        char id[64];
        snprintf(id, sizeof id, "%s_%ld", is_refund ? "re" : "ch", ++fp.next_id);
        b->id = strdup(id);
        if (!is_refund && token && strncmp(token, "tok_decline", 11) == 0) {
            b->status = 402;
            if (strcmp(token, "tok_decline_long") == 0)
                b->message = repeat("\xc3\xa9", 500);
        } else if (is_refund) {
            const char *ck = json_string_value(json_object_get(body, "charge_key"));
            booking *charge = ck ? booking_find(ck, 0) : NULL;
            b->amount = charge && charge->status == 200 ? charge->amount : 0;
            b->status = 200;
            if (b->amount > 0)
                ledger_append(key, order_id, "refund", b->amount);
        } else {
            b->amount = json_integer_value(json_object_get(body, "amount"));
            b->status = 200;
            if (token && strcmp(token, "tok_long_ref") == 0) {
                free(b->id);
                b->id = repeat("r", 4000);
            } else if (token && strcmp(token, "tok_ctl_ref") == 0) {
                free(b->id);
                b->id = strdup("ch_\x01\x1b[31m\t\xe2\x82\xac\x7f_end");
            }
            ledger_append(key, order_id, "charge", b->amount);
        }
    }
    json_decref(body);
    if (b->status == 402)
        reply(req, 402, json_pack("{ss ss}", "id", b->id, "message",
                                  b->message ? b->message : "card declined"));
    else
        reply(req, 200, json_pack("{ss sI}", "id", b->id, "amount", (json_int_t)b->amount));
}

static void on_control(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evkeyvalq q;
    evhttp_parse_query(evhttp_request_get_uri(req), &q);
    const char *v;
    if ((v = evhttp_find_header(&q, "stall_ms")))
        fp.stall_ms = atol(v);
    if ((v = evhttp_find_header(&q, "fail_percent")))
        fp.fail_percent = atoi(v);
    evhttp_clear_headers(&q);
    char s[100];
    snprintf(s, sizeof s, "{\"stall_ms\":%ld,\"fail_percent\":%d}", fp.stall_ms, fp.fail_percent);
    reply_now(req, 200, s);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    event_base_loopexit(fp.base, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: fake-provider HOST:PORT LEDGER.jsonl\n"
                        "  POST /charges, POST /refunds (Idempotency-Key), POST /_control?stall_ms=N&fail_percent=P\n");
        return argc == 2 ? 0 : 2;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", argv[1]);
    char *colon = strrchr(host, ':');
    if (!colon)
        return 2;
    *colon = '\0';
    fp.ledger = fopen(argv[2], "a");
    if (!fp.ledger) {
        perror(argv[2]);
        return 1;
    }
    fp.seed = 42;
    signal(SIGPIPE, SIG_IGN); /* a caller that timed out must not kill us when we answer late */
    fp.base = event_base_new();
    struct evhttp *http = evhttp_new(fp.base);
    evhttp_set_cb(http, "/charges", on_payment, NULL);
    evhttp_set_cb(http, "/refunds", on_payment, (void *)1);
    evhttp_set_cb(http, "/_control", on_control, NULL);
    if (evhttp_bind_socket(http, host, (unsigned short)atoi(colon + 1)) != 0) {
        fprintf(stderr, "fake-provider: cannot listen on %s\n", argv[1]);
        return 1;
    }
    struct event *term = evsignal_new(fp.base, SIGTERM, on_signal, NULL);
    event_add(term, NULL);
    event_base_dispatch(fp.base);
    event_free(term);
    evhttp_free(http);
    event_base_free(fp.base);
    fclose(fp.ledger);
    return 0;
}
