/* webhook-receiver: the customer's end of NOTIFY_CHANNEL=webhook, for the tests.
 *
 * Checks X-Orderpipe-Signature (HMAC-SHA256 of the body under the shared secret): a bad or
 * missing signature is answered 401 and not recorded. Each good delivery is appended to a JSON-lines
 * file as {"delivery": ..., "order_id": ..., "event": ...}, so a test counts deliveries and
 * duplicates. The test makes it "down" by stopping it and starting it again on the same port.
 * With a fourth argument "stall" it is a host that hangs instead: it reads every request and
 * never answers (the request is freed when the caller gives up and closes), recording nothing. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    struct event_base *base;
    FILE *out;
    const char *secret;
    int stall;
} wr;

static void reply(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static int signature_ok(const char *body, size_t len, const char *header)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), wr.secret, (int)strlen(wr.secret), (const unsigned char *)body, len, mac,
         &mac_len);
    char want[7 + 2 * EVP_MAX_MD_SIZE + 1] = "sha256=";
    for (unsigned i = 0; i < mac_len; i++)
        snprintf(want + 7 + 2 * i, 3, "%02x", mac[i]);
    return header && strlen(header) == strlen(want) &&
           CRYPTO_memcmp(header, want, strlen(want)) == 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (wr.stall)
        return;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = malloc(n + 1);
    evbuffer_remove(in, body, n);
    body[n] = '\0';
    const char *sig =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-Orderpipe-Signature");
    if (!signature_ok(body, n, sig)) {
        free(body);
        reply(req, 401, "{\"error\":\"bad signature\"}");
        return;
    }
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    json_t *line = json_pack("{sO? sO? sO?}", "delivery", json_object_get(j, "delivery_id"),
                             "order_id", json_object_get(j, "order_id"), "event",
                             json_object_get(j, "event"));
    char *s = json_dumps(line, JSON_COMPACT);
    fprintf(wr.out, "%s\n", s);
    fflush(wr.out);
    free(s);
    json_decref(line);
    json_decref(j);
    reply(req, 200, "{\"ok\":true}");
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    event_base_loopexit(wr.base, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: webhook-receiver HOST:PORT SECRET OUT.jsonl [stall]\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", argv[1]);
    char *colon = strrchr(host, ':');
    if (!colon)
        return 2;
    *colon = '\0';
    wr.secret = argv[2];
    wr.stall = argc == 5 && strcmp(argv[4], "stall") == 0;
    wr.out = fopen(argv[3], "a");
    if (!wr.out) {
        perror(argv[3]);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* a sender that timed out must not kill us when we answer */
    wr.base = event_base_new();
    struct evhttp *http = evhttp_new(wr.base);
    evhttp_set_gencb(http, on_request, NULL);
    if (evhttp_bind_socket(http, host, (unsigned short)atoi(colon + 1)) != 0) {
        fprintf(stderr, "webhook-receiver: cannot listen on %s\n", argv[1]);
        return 1;
    }
    struct event *term = evsignal_new(wr.base, SIGTERM, on_signal, NULL);
    event_add(term, NULL);
    event_base_dispatch(wr.base);
    event_free(term);
    evhttp_free(http);
    event_base_free(wr.base);
    fclose(wr.out);
    return 0;
}
