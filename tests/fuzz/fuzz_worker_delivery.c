/* libFuzzer target: an AMQP delivery (routing key, headers, body) through what the worker engine
 * (lib/worker_check.c, worker_failure.c) does before any handler runs: worker_check_delivery
 * (CloudEvent envelope, route, schema of the type with the registry's strict integers),
 * worker_attempt, and for a refused delivery the dead-letter headers (worker_failure_headers)
 * whose x-last-error must be a valid JSON string.
 *
 * Input: "ROUTING_KEY\nNAME=VALUE\n...\n\nBODY": header lines up to an empty line, each value as
 * broker.c gives it (the publisher's bytes, unchecked; a value of digits is an integer), then the
 * body. Without an empty line the whole input is the body. A header line "content-type=T" sets
 * the AMQP content type instead (none: the structured-mode type; "content-type=" alone: no
 * content type), so both modes of the AMQP binding and every refusal are reached. Schemas as in
 * fuzz_order_request. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_schemas.h"
#include "utf8.h"
#include "uuid.h"
#include "wire.h"
#include "worker.h"


static jsonschema_registry *reg;

/* Every event type some worker consumes; the handlers are never called. */
static const worker_route routes[] = {
    {.type = "order.placed"},       {.type = "order.cancel_requested"},
    {.type = "order.cancelled"},    {.type = "order.confirmed"},
    {.type = "payment.failed"},     {.type = "payment.refund_requested"},
    {.type = "payment.succeeded"},  {.type = "reservation.expired"},
    {.type = "stock.reserved"},     {.type = NULL},
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    reg = fuzz_schemas_load("fuzz_worker_delivery", "order.placed");
    log_set_level(LOG_ERROR); /* the checks log nothing; keep the output quiet anyway */
    return 0;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    broker_delivery d;
    memset(&d, 0, sizeof d);
    d.headers = json_object();
    const char *blank = NULL;
    for (const char *q = p; q + 1 < end; q++)
        if (q[0] == '\n' && q[1] == '\n') {
            blank = q;
            break;
        }
    if (blank) {
        const char *nl = memchr(p, '\n', (size_t)(blank - p) + 1);
        d.routing_key = strndup(p, (size_t)(nl - p));
        for (const char *l = nl + 1; l < blank;) {
            const char *e = memchr(l, '\n', (size_t)(blank - l) + 1);
            const char *eq = memchr(l, '=', (size_t)(e - l));
            if (eq && eq > l) {
                char *name = strndup(l, (size_t)(eq - l));
                size_t vn = (size_t)(e - eq - 1);
                json_t *v = all_digits(eq + 1, vn) ? json_integer(strtoll(eq + 1, NULL, 10))
                                                   : json_stringn_nocheck(eq + 1, vn);
                json_object_set_new_nocheck(d.headers, name, v);
                free(name);
            }
            l = e + 1;
        }
        p = blank + 2;
    } else {
        d.routing_key = strdup("order.placed");
    }
    json_t *ct = json_object_get(d.headers, "content-type");
    if (!ct)
        d.content_type = strdup(BROKER_CONTENT_TYPE);
    else if (json_is_string(ct) && json_string_length(ct) > 0)
        d.content_type = strndup(json_string_value(ct), json_string_length(ct));
    json_object_del(d.headers, "content-type");
    d.len = (size_t)(end - p);
    d.body = malloc(d.len + 1); /* broker.c keeps a NUL-terminated copy */
    memcpy(d.body, p, d.len);
    d.body[d.len] = '\0';

    int attempt = worker_attempt(&d);
    if (attempt < 1 || attempt > 64)
        abort();
    cloudevent_view ev;
    const worker_route *route;
    char err[1024];
    const char *reason = worker_check_delivery(routes, "fuzz", reg, &d, &ev, &route, err,
                                               sizeof err);
    if (reason) {
        if (!utf8_valid(err, strlen(err)))
            abort();
        json_t *h = worker_failure_headers(&d, err);
        json_t *last = json_object_get(h, WIRE_HDR_LAST_ERROR);
        if (!json_is_string(last) || strcmp(json_string_value(last), err) != 0)
            abort();
        json_decref(h);
    } else if (!route || !ev.root || !ev.type || !json_is_object(ev.data) ||
               !uuid_valid(ev.order_id)) {
        abort();
    }
    cloudevent_view_free(&ev);
    json_decref(d.headers);
    free(d.routing_key);
    free(d.content_type);
    free(d.body);
    return 0;
}
