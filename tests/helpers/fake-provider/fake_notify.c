/* fake_notify: the fake provider's payment notifications, as a channel sends them.
 *
 * A completed pending charge is POSTed to the notify URL as
 *   {"event_id","charge_key","provider_ref","status","amount","currency","reason"?}
 * with the header `Orderpipe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 * The controls make the channel misbehave the ways real ones do: lose_percent drops a
 * notification, dup_percent sends it twice (same event_id), forge_percent sends an extra copy
 * signed with a wrong secret (the receiver must refuse it with 401), reorder holds notifications
 * and sends each batch (reorder_batch of them, or what is held 5 s after the first) last first,
 * one after the other (each once the previous one was answered), so they arrive in that order.
 * Each notification is sent once: one that is not answered 2xx is left to the merchant's
 * queries, so a test sees the query path whatever the receiver did. Every answer is counted by
 * HTTP status ("error" when there was none) for GET /_stats. */
#include <stdbool.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_provider.h"
#include "mem.h"

#define HELD_MAX 4096
#define FLUSH_MS 5000

static struct {
    char *host, *path, *secret;
    int port;
    long sent, lost, duplicated, forged, reordered, posts;
    json_t *answers;         /* HTTP status (text) -> count */
    char *held[HELD_MAX];    /* bodies held for reordering, in completion order */
    int nheld;
    char *release[HELD_MAX]; /* a flushed batch still to send, last completed first */
    int nrelease, next_release;
    struct event *flush_timer;
} nt;

int notify_init(const char *url, const char *secret)
{
    struct evhttp_uri *u = evhttp_uri_parse(url);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    if (!scheme || strcmp(scheme, "http") != 0 || !host || !*host) {
        if (u)
            evhttp_uri_free(u);
        return -1;
    }
    const char *path = evhttp_uri_get_path(u);
    const char *query = evhttp_uri_get_query(u);
    size_t n = strlen(path ? path : "") + strlen(query ? query : "") + 3;
    nt.path = mem_alloc(n);
    snprintf(nt.path, n, "%s%s%s", path && *path ? path : "/", query ? "?" : "", query ? query : "");
    nt.host = mem_strdup(host);
    nt.port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    nt.secret = mem_strdup(secret);
    nt.answers = json_object();
    evhttp_uri_free(u);
    return 0;
}

static void release_next(void);

/* arg is non-NULL for the post of a released batch, whose answer sends the next one. */
static void on_answer(struct evhttp_request *req, void *arg)
{
    int code = req ? evhttp_request_get_response_code(req) : 0;
    char key[16];
    if (code > 0)
        snprintf(key, sizeof key, "%d", code);
    else
        snprintf(key, sizeof key, "error");
    json_t *n = json_object_get(nt.answers, key);
    json_object_set_new(nt.answers, key, json_integer(json_integer_value(n) + 1));
    if (arg)
        release_next();
}

/* The signature header of body under secret, at time t, into out. */
static void sign(const char *secret, long long t, const char *body, char *out, size_t outlen)
{
    size_t n = strlen(body) + 32;
    char *signed_text = mem_alloc(n);
    int len = snprintf(signed_text, n, "%lld.%s", t, body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)signed_text,
         (size_t)len, mac, &mac_len);
    free(signed_text);
    int w = snprintf(out, outlen, "t=%lld,v1=", t);
    for (unsigned i = 0; i < mac_len && (size_t)w + 2 < outlen; i++)
        w += snprintf(out + w, outlen - (size_t)w, "%02x", mac[i]);
}

static void post(const char *body, const char *secret, void *answer_arg)
{
    char sig[160];
    sign(secret, (long long)time(NULL), body, sig, sizeof sig);
    struct evhttp_connection *c =
        evhttp_connection_base_new(fp.base, NULL, nt.host, (unsigned short)nt.port);
    evhttp_connection_set_timeout(c, 10);
    struct evhttp_request *r = evhttp_request_new(on_answer, answer_arg);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    evhttp_add_header(h, "Host", nt.host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Orderpipe-Signature", sig);
    /* One connection per post, closed once answered: free_on_completion frees it then. */
    evhttp_add_header(h, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(r), body, strlen(body));
    nt.posts++;
    if (evhttp_make_request(c, r, EVHTTP_REQ_POST, nt.path) != 0) {
        on_answer(NULL, answer_arg); /* the request was freed by the failed call */
        evhttp_connection_free(c);
        return;
    }
    evhttp_connection_free_on_completion(c);
}

/* Sends one notification with the copies the controls ask for; answer_arg as for post. */
static void send_one(const char *body, void *answer_arg)
{
    nt.sent++;
    post(body, nt.secret, answer_arg);
    if (fp_chance(fp.ctl.dup_percent)) {
        nt.duplicated++;
        post(body, nt.secret, NULL);
    }
    if (fp_chance(fp.ctl.forge_percent)) {
        nt.forged++;
        post(body, "not-the-channel-secret", NULL);
    }
}

/* Sends the next body of the released batch; its answer calls this again. */
static void release_next(void)
{
    if (nt.next_release >= nt.nrelease) {
        nt.nrelease = nt.next_release = 0;
        return;
    }
    char *body = nt.release[nt.next_release];
    nt.release[nt.next_release++] = NULL;
    send_one(body, &nt);
    free(body);
}

/* Moves the held batch, last completed first, behind what a previous release still has to send. */
static void flush_held(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (nt.nheld > 1)
        nt.reordered += nt.nheld;
    bool idle = nt.next_release >= nt.nrelease;
    if (idle)
        nt.nrelease = nt.next_release = 0;
    while (nt.nheld > 0 && nt.nrelease < HELD_MAX)
        nt.release[nt.nrelease++] = nt.held[--nt.nheld];
    while (nt.nheld > 0) { /* no room behind the release under way: send at once */
        char *body = nt.held[--nt.nheld];
        send_one(body, NULL);
        free(body);
    }
    if (idle)
        release_next();
}

void notify_completed(const booking *b)
{
    if (!nt.host)
        return;
    if (fp_chance(fp.ctl.lose_percent)) {
        nt.lost++;
        return;
    }
    char event_id[64];
    snprintf(event_id, sizeof event_id, "evt_%s", b->id);
    json_t *j = json_pack("{ss ss ss ss sI ss}", "event_id", event_id, "charge_key", b->key,
                          "provider_ref", b->id, "status",
                          b->state == CH_SUCCEEDED ? "succeeded" : "failed", "amount",
                          (json_int_t)b->amount, "currency", b->currency);
    if (b->state != CH_SUCCEEDED && b->message)
        json_object_set_new(j, "reason", json_string(b->message));
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!fp.ctl.reorder) {
        send_one(body, NULL);
        free(body);
        return;
    }
    if (nt.nheld == HELD_MAX)
        flush_held(-1, 0, NULL);
    nt.held[nt.nheld++] = body;
    int batch = fp.ctl.reorder_batch > 0 ? fp.ctl.reorder_batch : 1;
    if (!nt.flush_timer)
        nt.flush_timer = evtimer_new(fp.base, flush_held, NULL);
    if (nt.nheld >= batch) {
        evtimer_del(nt.flush_timer);
        flush_held(-1, 0, NULL);
    } else if (nt.nheld == 1) {
        struct timeval tv = {FLUSH_MS / 1000, (FLUSH_MS % 1000) * 1000};
        evtimer_add(nt.flush_timer, &tv);
    }
}

void *notify_stats(void)
{
    return json_pack("{si si si si si si si so}", "sent", (int)nt.sent, "lost", (int)nt.lost,
                     "duplicated", (int)nt.duplicated, "forged", (int)nt.forged, "reordered",
                     (int)nt.reordered, "posts", (int)nt.posts, "held", nt.nheld, "answers",
                     nt.answers ? json_copy(nt.answers) : json_object());
}

void notify_shutdown(void)
{
    while (nt.nheld > 0)
        free(nt.held[--nt.nheld]);
    while (nt.next_release < nt.nrelease)
        free(nt.release[nt.next_release++]);
    if (nt.flush_timer)
        event_free(nt.flush_timer);
    json_decref(nt.answers);
    free(nt.host);
    free(nt.path);
    free(nt.secret);
}
