/* notification-receiver: the merchant's end of a payment channel's notifications, for the tests
 * of the fake provider on its own (the intake's endpoint is what production runs).
 *
 * Checks the header `Orderpipe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` against
 * HMAC-SHA256(secret, "<t>.<raw body>") (one matching v1 is enough, compared in constant time):
 * 200 {"status":"received"} if it matches, 401 {"error":"bad_signature"} if not. The timestamp's
 * age is not checked: the test checks the signature itself with openssl. Every POST is appended
 * to a JSON-lines file as {"status": <answer>, "signature": <header>, "body": <raw body>}, in
 * arrival order, so a test counts copies, forgeries and the order of arrival. */
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

#include "mem.h"

static struct {
    struct event_base *base;
    FILE *out;
    const char *secret;
} nr;

static void reply(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", b);
    evbuffer_free(b);
}

/* True if one v1= of header is the HMAC of "<t>.<body>". */
static int signature_ok(const char *body, size_t len, const char *header)
{
    if (!header || strncmp(header, "t=", 2) != 0)
        return 0;
    size_t tlen = strcspn(header + 2, ",");
    if (tlen == 0 || tlen > 20 || header[2 + tlen] != ',')
        return 0;
    char *text = mem_alloc(tlen + 1 + len);
    memcpy(text, header + 2, tlen);
    text[tlen] = '.';
    memcpy(text + tlen + 1, body, len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), nr.secret, (int)strlen(nr.secret), (const unsigned char *)text,
         tlen + 1 + len, mac, &mac_len);
    free(text);
    char want[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < mac_len; i++)
        snprintf(want + 2 * i, 3, "%02x", mac[i]);
    int ok = 0;
    for (const char *p = strstr(header, ",v1="); p; p = strstr(p + 1, ",v1=")) {
        const char *hex = p + 4;
        size_t n = strcspn(hex, ",");
        if (n == 2 * mac_len && CRYPTO_memcmp(hex, want, n) == 0)
            ok = 1;
    }
    return ok;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = mem_alloc(n + 1);
    evbuffer_remove(in, body, n);
    body[n] = '\0';
    const char *sig =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Orderpipe-Signature");
    int status = signature_ok(body, n, sig) ? 200 : 401;
    json_t *line = json_pack("{si ss? s o}", "status", status, "signature", sig, "body",
                             json_stringn_nocheck(body, n));
    char *s = json_dumps(line, JSON_COMPACT);
    fprintf(nr.out, "%s\n", s);
    fflush(nr.out);
    free(s);
    json_decref(line);
    free(body);
    if (status == 200)
        reply(req, 200, "{\"status\":\"received\"}");
    else
        reply(req, 401, "{\"error\":\"bad_signature\",\"message\":\"signature does not match\"}");
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    event_base_loopexit(nr.base, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: notification-receiver HOST:PORT SECRET OUT.jsonl\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", argv[1]);
    char *colon = strrchr(host, ':');
    if (!colon)
        return 2;
    *colon = '\0';
    nr.secret = argv[2];
    nr.out = fopen(argv[3], "a");
    if (!nr.out) {
        perror(argv[3]);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    nr.base = event_base_new();
    struct evhttp *http = evhttp_new(nr.base);
    evhttp_set_gencb(http, on_request, NULL);
    if (evhttp_bind_socket(http, host, (unsigned short)atoi(colon + 1)) != 0) {
        fprintf(stderr, "notification-receiver: cannot listen on %s\n", argv[1]);
        return 1;
    }
    struct event *term = evsignal_new(nr.base, SIGTERM, on_signal, NULL);
    event_add(term, NULL);
    event_base_dispatch(nr.base);
    event_free(term);
    evhttp_free(http);
    event_base_free(nr.base);
    fclose(nr.out);
    return 0;
}
