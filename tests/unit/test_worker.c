/* Unit tests for the worker engine's pure parts: configuration from flags and environment, the
 * failure fate of a delivery (ack, retry tier, dead letter) and its headers, the attempt header,
 * the delivery checks, order-id lists and the replay tool's requeue headers. None needs a
 * server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "republish.h"
#include "topology.h"
#include "utf8.h"
#include "wire.h"
#include "worker_internal.h"

static const worker_route test_routes[] = {
    {.type = "order.cancel_requested"},
    {.type = NULL},
};

static const worker_spec test_spec = {
    .name = "reservation",
    .program = "orderpipe-test",
    .summary = "a test worker",
    .routes = test_routes,
};

static const char *const config_env[] = {
    "AMQP_URL", "DATABASE_URL", "WORKER_PREFETCH", "WORKER_BATCH", "WORKER_BATCH_LINGER_MS",
    "WORKER_CALL_BUDGET_MS", "INBOX_RETENTION", "OUTBOX_RETENTION", "METRICS_LISTEN",
    "ORDERPIPE_SCHEMA_DIR", "TRANSITION_RETENTION", "RETENTION_INTERVAL", "RETENTION_PRUNE",
};

static int config_setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof config_env / sizeof *config_env; i++)
        unsetenv(config_env[i]);
    setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", 1);
    setenv("DATABASE_URL", "postgresql:///orderpipe", 1);
    return 0;
}

/* Parses argv (NULL-terminated, after the program name) as worker_main does. */
static op_status parse(worker_config *c, const worker_spec *spec, bool *help, ...)
{
    char *argv[16] = {"orderpipe-test"};
    int argc = 1;
    va_list ap;
    va_start(ap, help);
    for (char *a; argc < 15 && (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    optind = 0; /* glibc: start afresh */
    return worker_config_parse(c, spec, argc, argv, help);
}

static void test_config_defaults(void **state)
{
    (void)state;
    worker_config c;
    bool help = true;
    assert_int_equal(parse(&c, &test_spec, &help, NULL), OP_OK);
    assert_false(help);
    assert_string_equal(c.amqp_url, "amqp://guest:guest@127.0.0.1:5672/");
    assert_string_equal(c.database_url, "postgresql:///orderpipe");
    assert_string_equal(c.metrics_listen, "127.0.0.1:0");
    assert_int_equal(c.prefetch, 512);
    assert_int_equal(c.batch, 256);
    assert_int_equal(c.linger_ms, WORKER_DEFAULT_LINGER_MS);
    assert_int_equal(c.call_budget_ms, 20000);
    assert_int_equal(c.idle_wait_ms, 200);
    assert_int_equal(c.inbox_retention_s, 7 * 86400);
    assert_int_equal(c.outbox_retention_s, 86400);
    assert_int_equal(c.transition_retention_s, 0);
    assert_int_equal(c.prune_interval_s, 60);
    assert_false(c.prune_rows);
    assert_int_equal(worker_config_batch_max(&c), 256);
}

static void test_config_spec_linger_is_the_default(void **state)
{
    (void)state;
    worker_spec spec = test_spec;
    spec.linger_ms = 50;
    worker_config c;
    bool help;
    assert_int_equal(worker_config_default_linger_ms(&spec), 50);
    assert_int_equal(parse(&c, &spec, &help, NULL), OP_OK);
    assert_int_equal(c.linger_ms, 50);
    setenv("WORKER_BATCH_LINGER_MS", "0", 1);
    assert_int_equal(parse(&c, &spec, &help, NULL), OP_OK);
    assert_int_equal(c.linger_ms, 0);
}

static void test_config_env_then_flags(void **state)
{
    (void)state;
    setenv("WORKER_PREFETCH", "64", 1);
    setenv("WORKER_BATCH", "100", 1);
    setenv("INBOX_RETENTION", "2h", 1);
    setenv("OUTBOX_RETENTION", "90s", 1);
    setenv("TRANSITION_RETENTION", "400d", 1);
    setenv("RETENTION_INTERVAL", "5s", 1);
    setenv("RETENTION_PRUNE", "delete", 1);
    setenv("WORKER_CALL_BUDGET_MS", "100", 1);
    worker_config c;
    bool help;
    assert_int_equal(parse(&c, &test_spec, &help, NULL), OP_OK);
    assert_int_equal(c.prefetch, 64);
    assert_int_equal(c.batch, 100);
    assert_int_equal(worker_config_batch_max(&c), 64); /* no more than the prefetch */
    assert_int_equal(c.inbox_retention_s, 7200);
    assert_int_equal(c.outbox_retention_s, 90);
    assert_int_equal(c.transition_retention_s, 400L * 86400);
    assert_int_equal(c.prune_interval_s, 5);
    assert_true(c.prune_rows);
    assert_int_equal(c.call_budget_ms, 100);
    assert_int_equal(parse(&c, &test_spec, &help, "--batch", "20", "--prefetch=65535",
                           "--batch-linger-ms", "1000", "--amqp-url", "amqp://other/",
                           "--database-url", "postgresql://other/", "--metrics-listen",
                           "127.0.0.1:9100", "--schemas", "/tmp/s", NULL),
                     OP_OK);
    assert_int_equal(c.batch, 20);
    assert_int_equal(c.prefetch, 65535);
    assert_int_equal(c.linger_ms, 1000);
    assert_string_equal(c.amqp_url, "amqp://other/");
    assert_string_equal(c.database_url, "postgresql://other/");
    assert_string_equal(c.metrics_listen, "127.0.0.1:9100");
    assert_string_equal(c.schema_dir, "/tmp/s");
}

static void test_config_refuses_bad_flags(void **state)
{
    (void)state;
    worker_config c;
    bool help;
    assert_int_equal(parse(&c, &test_spec, &help, "--prefetch", "0", NULL), OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "--prefetch", "65536", NULL), OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "--batch", "10001", NULL), OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "--batch", "12x", NULL), OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "--batch-linger-ms", "-1", NULL),
                     OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "--batch-linger-ms", "1001", NULL),
                     OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "--no-such-flag", NULL), OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "extra", NULL), OP_ERR_PERMANENT);
}

static void test_config_refuses_bad_env(void **state)
{
    (void)state;
    worker_config c;
    bool help;
    const char *bad[][2] = {
        {"WORKER_PREFETCH", "lots"},      {"WORKER_BATCH", "0"},
        {"WORKER_BATCH_LINGER_MS", "2000"}, {"WORKER_CALL_BUDGET_MS", "50001"},
        {"WORKER_CALL_BUDGET_MS", "99"},  {"INBOX_RETENTION", "500ms"},
        {"OUTBOX_RETENTION", "soon"},     {"TRANSITION_RETENTION", "500ms"},
        {"RETENTION_INTERVAL", "0"},      {"RETENTION_INTERVAL", "2d"},
        {"RETENTION_PRUNE", "truncate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        config_setup(NULL);
        setenv(bad[i][0], bad[i][1], 1);
        assert_int_equal(parse(&c, &test_spec, &help, NULL), OP_ERR_PERMANENT);
    }
}

static void test_config_needs_both_urls(void **state)
{
    (void)state;
    worker_config c;
    bool help;
    unsetenv("AMQP_URL");
    assert_int_equal(parse(&c, &test_spec, &help, NULL), OP_ERR_PERMANENT);
    assert_int_equal(parse(&c, &test_spec, &help, "--amqp-url", "amqp://x/", NULL), OP_OK);
    unsetenv("DATABASE_URL");
    assert_int_equal(parse(&c, &test_spec, &help, "--amqp-url", "amqp://x/", NULL),
                     OP_ERR_PERMANENT);
}

static void test_config_help(void **state)
{
    (void)state;
    worker_config c;
    bool help = false;
    unsetenv("AMQP_URL"); /* --help needs no configuration */
    assert_int_equal(parse(&c, &test_spec, &help, "--help", NULL), OP_OK);
    assert_true(help);
}

static void test_fate_of_handled_messages_is_ack(void **state)
{
    (void)state;
    assert_int_equal(worker_failure_fate(OP_OK, 1, NULL).kind, WORKER_FATE_ACK);
    assert_int_equal(worker_failure_fate(OP_DUPLICATE, 3, NULL).kind, WORKER_FATE_ACK);
    assert_int_equal(worker_failure_fate(OP_OK, TOPOLOGY_RETRY_TIERS + 1, NULL).kind,
                     WORKER_FATE_ACK);
}

static void test_fate_of_permanent_failures_is_the_dlq(void **state)
{
    (void)state;
    worker_fate f = worker_failure_fate(OP_ERR_PERMANENT, 1, NULL);
    assert_int_equal(f.kind, WORKER_FATE_DEAD_LETTER);
    assert_string_equal(f.reason, WIRE_REASON_HANDLER_REFUSED);
    f = worker_failure_fate(OP_ERR_PERMANENT, 2, "not_order_owner");
    assert_int_equal(f.kind, WORKER_FATE_DEAD_LETTER);
    assert_string_equal(f.reason, "not_order_owner");
}

static void test_fate_of_transient_failures_walks_the_tiers(void **state)
{
    (void)state;
    for (int attempt = 1; attempt <= TOPOLOGY_RETRY_TIERS; attempt++) {
        worker_fate f = worker_failure_fate(OP_ERR_TRANSIENT, attempt, "ignored");
        assert_int_equal(f.kind, WORKER_FATE_RETRY);
        assert_int_equal(f.tier, attempt - 1);
        assert_int_equal(f.next_attempt, attempt + 1);
    }
    worker_fate f = worker_failure_fate(OP_TIMEOUT, 1, NULL); /* anything else is transient */
    assert_int_equal(f.kind, WORKER_FATE_RETRY);
    assert_int_equal(f.tier, 0);
    f = worker_failure_fate(OP_ERR_TRANSIENT, TOPOLOGY_RETRY_TIERS + 1, NULL);
    assert_int_equal(f.kind, WORKER_FATE_DEAD_LETTER);
    assert_string_equal(f.reason, WIRE_REASON_RETRIES_EXHAUSTED);
}

static broker_delivery delivery(const char *routing_key, json_t *headers)
{
    broker_delivery d;
    memset(&d, 0, sizeof d);
    d.routing_key = (char *)routing_key;
    d.headers = headers ? headers : json_object();
    d.content_type = (char *)BROKER_CONTENT_TYPE; /* structured mode, as every publisher sends */
    return d;
}

static void test_attempt_header_is_clamped(void **state)
{
    (void)state;
    struct {
        json_t *value;
        int attempt;
    } cases[] = {
        {NULL, 1},
        {json_integer(3), 3},
        {json_integer(0), 1},
        {json_integer(-7), 1},
        {json_integer(99), TOPOLOGY_RETRY_TIERS + 1},
        {json_string("3"), 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        broker_delivery d = delivery("order.placed", NULL);
        if (cases[i].value)
            json_object_set_new(d.headers, WIRE_HDR_ATTEMPT, cases[i].value);
        assert_int_equal(worker_attempt(&d), cases[i].attempt);
        json_decref(d.headers);
    }
}

static void test_retry_headers(void **state)
{
    (void)state;
    broker_delivery d = delivery("order.placed",
                                 json_pack("{ss si}", WIRE_HDR_TRACEPARENT, "00-abc",
                                           WIRE_HDR_ATTEMPT, 2));
    worker_fate f = worker_failure_fate(OP_ERR_TRANSIENT, 2, NULL);
    json_t *h = worker_failure_fate_headers(&d, &f, "deadlock detected", 2, "reservation",
                                            "2024-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_TRACEPARENT)), "00-abc");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_ORIGINAL_ROUTING_KEY)),
                        "order.placed");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_LAST_ERROR)),
                        "deadlock detected");
    assert_int_equal(json_integer_value(json_object_get(h, WIRE_HDR_ATTEMPT)), 3);
    assert_null(json_object_get(h, WIRE_HDR_DEAD_REASON));
    assert_null(json_object_get(h, WIRE_HDR_DEAD_AT));
    /* The delivery's own headers are left alone. */
    assert_int_equal(json_integer_value(json_object_get(d.headers, WIRE_HDR_ATTEMPT)), 2);
    assert_null(json_object_get(d.headers, WIRE_HDR_LAST_ERROR));
    json_decref(h);
    json_decref(d.headers);
}

static void test_a_retry_keeps_the_original_routing_key(void **state)
{
    (void)state;
    /* A retry comes back through the default exchange, routed by its queue's name. */
    broker_delivery d = delivery("reservation",
                                 json_pack("{ss}", WIRE_HDR_ORIGINAL_ROUTING_KEY,
                                           "order.cancel_requested"));
    json_t *h = worker_failure_headers(&d, "x");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_ORIGINAL_ROUTING_KEY)),
                        "order.cancel_requested");
    json_decref(h);
    json_decref(d.headers);
}

static void test_dead_letter_headers(void **state)
{
    (void)state;
    broker_delivery d = delivery("order.placed", json_pack("{si}", WIRE_HDR_ATTEMPT, 5));
    worker_fate f = worker_failure_fate(OP_ERR_TRANSIENT, 5, NULL);
    json_t *h = worker_failure_fate_headers(&d, &f, "timeout", 5, "payment",
                                            "2024-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_DEAD_REASON)),
                        WIRE_REASON_RETRIES_EXHAUSTED);
    assert_int_equal(json_integer_value(json_object_get(h, WIRE_HDR_ATTEMPTS)), 5);
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_ORIGINAL_QUEUE)), "payment");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_DEAD_AT)),
                        "2024-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_LAST_ERROR)), "timeout");
    assert_int_equal(json_integer_value(json_object_get(h, WIRE_HDR_ATTEMPT)), 5);
    json_decref(h);
    json_decref(d.headers);
}

static void test_last_error_is_cut_on_a_character(void **state)
{
    (void)state;
    char error[1201];
    for (int i = 0; i < 600; i++)
        memcpy(error + 2 * i, "\xc3\xa9", 2); /* é */
    error[1200] = '\0';
    broker_delivery d = delivery("order.placed", NULL);
    json_t *h = worker_failure_headers(&d, error);
    const char *cut = json_string_value(json_object_get(h, WIRE_HDR_LAST_ERROR));
    assert_non_null(cut);
    assert_true(strlen(cut) < 512 && strlen(cut) > 400);
    assert_true(utf8_valid(cut, strlen(cut)));
    json_decref(h);
    json_decref(d.headers);
}

static void test_requeue_headers_start_afresh(void **state)
{
    (void)state;
    json_t *dead = json_pack("{ss ss si si ss ss ss ss}", WIRE_HDR_TRACEPARENT, "00-abc",
                             WIRE_HDR_ORIGINAL_ROUTING_KEY, "order.placed", WIRE_HDR_ATTEMPT, 5,
                             WIRE_HDR_ATTEMPTS, 5, WIRE_HDR_DEAD_REASON, "retries_exhausted",
                             WIRE_HDR_DEAD_AT, "2024-01-01T00:00:00Z", WIRE_HDR_ORIGINAL_QUEUE,
                             "payment", WIRE_HDR_LAST_ERROR, "timeout");
    json_t *h = republish_requeue_headers(dead);
    assert_int_equal(json_object_size(h), 3);
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_TRACEPARENT)), "00-abc");
    assert_string_equal(json_string_value(json_object_get(h, WIRE_HDR_ORIGINAL_ROUTING_KEY)),
                        "order.placed");
    assert_int_equal(json_integer_value(json_object_get(h, WIRE_HDR_REPLAYED)), 1);
    assert_int_equal(json_object_size(dead), 8); /* the dead letter's own are left alone */
    json_decref(h);
    json_decref(dead);
    h = republish_requeue_headers(NULL);
    assert_int_equal(json_object_size(h), 1);
    json_decref(h);
}

static jsonschema_registry *load_schemas(void)
{
    char err[512];
    jsonschema_registry *r = NULL;
    if (jsonschema_registry_load("schemas", &r, err, sizeof err) != OP_OK)
        fail_msg("schemas: %s", err);
    return r;
}

/* Runs the checks on body (message id mid) and returns the reason; err filled. */
static const char *check(const jsonschema_registry *schemas, const char *body, const char *mid,
                         char *err, size_t errlen, const worker_route **route)
{
    broker_delivery d = delivery("order.cancel_requested", NULL);
    d.body = (char *)body;
    d.len = strlen(body);
    d.message_id = (char *)mid;
    cloudevent_view ev;
    const char *reason = worker_check_delivery(test_routes, "reservation", schemas, &d, &ev,
                                               route, err, errlen);
    cloudevent_view_free(&ev);
    json_decref(d.headers);
    return reason;
}

/* A CloudEvent as a string (the caller frees it), with `over` replacing attributes. */
static char *event(const char *type, const char *id, json_t *data, json_t *over)
{
    json_t *ev = json_pack("{ss ss ss ss ss ss so}", "specversion", "1.0", "id", id, "source",
                           "test", "type", type, "time", "2024-01-01T00:00:00Z", "orderid",
                           "22222222-2222-4222-8222-222222222222", "data", data);
    if (over) {
        json_object_update(ev, over);
        json_decref(over);
    }
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return text;
}

static json_t *cancel_data(void)
{
    return json_pack("{ss ss ss}", "order_id", "22222222-2222-4222-8222-222222222222",
                     "requested_at", "2024-01-01T00:00:00Z", "client_id", "c1");
}

static void test_check_delivery(void **state)
{
    (void)state;
    jsonschema_registry *schemas = load_schemas();
    char err[512], long_id[WORKER_MAX_EVENT_ID + 2];
    memset(long_id, 'i', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    const worker_route *route;

    char *good = event("order.cancel_requested", "e1", cancel_data(), NULL);
    assert_null(check(schemas, good, "e1", err, sizeof err, &route));
    assert_ptr_equal(route, &test_routes[0]);
    assert_string_equal(check(schemas, good, long_id, err, sizeof err, &route),
                        WIRE_REASON_INVALID_MESSAGE);
    assert_non_null(strstr(err, "AMQP message-id"));
    free(good);

    assert_string_equal(check(schemas, "not json", "m", err, sizeof err, &route),
                        WIRE_REASON_INVALID_MESSAGE);
    assert_null(route);

    char *text = event("order.cancel_requested", long_id, cancel_data(), NULL);
    assert_string_equal(check(schemas, text, "m", err, sizeof err, &route),
                        WIRE_REASON_INVALID_MESSAGE);
    assert_non_null(strstr(err, "attribute 'id'"));
    free(text);

    text = event("order.cancel_requested", "e2", cancel_data(), json_pack("{si}", "subject", 7));
    assert_string_equal(check(schemas, text, "m", err, sizeof err, &route),
                        WIRE_REASON_INVALID_MESSAGE);
    assert_non_null(strstr(err, "subject"));
    free(text);

    text = event("order.placed", "e3", cancel_data(), NULL);
    assert_string_equal(check(schemas, text, "m", err, sizeof err, &route),
                        WIRE_REASON_UNKNOWN_TYPE);
    assert_non_null(strstr(err, "no handler for event type 'order.placed'"));
    free(text);

    json_t *data = cancel_data();
    json_object_del(data, "client_id");
    text = event("order.cancel_requested", "e4", data, NULL);
    assert_string_equal(check(schemas, text, "m", err, sizeof err, &route),
                        WIRE_REASON_SCHEMA_VIOLATION);
    assert_non_null(strstr(err, "client_id"));
    free(text);
    jsonschema_registry_free(schemas);
}

static void test_order_id_lists(void **state)
{
    (void)state;
    cloudevent_view a = {.type = "order.placed", .order_id = "11111111-1111-4111-8111-111111111111"};
    cloudevent_view b = {.type = "order.cancelled",
                         .order_id = "22222222-2222-4222-8222-222222222222"};
    const cloudevent_view *evs[] = {&a, &b, &a};
    char *ids = worker_event_order_ids(evs, 3, NULL);
    assert_string_equal(ids, "{\"11111111-1111-4111-8111-111111111111\","
                             "\"22222222-2222-4222-8222-222222222222\","
                             "\"11111111-1111-4111-8111-111111111111\"}");
    free(ids);
    ids = worker_event_order_ids(evs, 3, "order.cancelled");
    assert_string_equal(ids, "{\"22222222-2222-4222-8222-222222222222\"}");
    free(ids);
    ids = worker_event_order_ids(evs, 3, "order.confirmed");
    assert_string_equal(ids, "{}");
    free(ids);
    worker_msg m1 = {.ev = &b}, m2 = {.ev = &a};
    worker_msg *msgs[] = {&m1, &m2};
    ids = worker_order_ids(msgs, 2);
    assert_string_equal(ids, "{\"22222222-2222-4222-8222-222222222222\","
                             "\"11111111-1111-4111-8111-111111111111\"}");
    free(ids);
    ids = worker_order_ids(msgs, 0);
    assert_string_equal(ids, "{}");
    free(ids);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_config_defaults, config_setup),
        cmocka_unit_test_setup(test_config_spec_linger_is_the_default, config_setup),
        cmocka_unit_test_setup(test_config_env_then_flags, config_setup),
        cmocka_unit_test_setup(test_config_refuses_bad_flags, config_setup),
        cmocka_unit_test_setup(test_config_refuses_bad_env, config_setup),
        cmocka_unit_test_setup(test_config_needs_both_urls, config_setup),
        cmocka_unit_test_setup(test_config_help, config_setup),
        cmocka_unit_test(test_fate_of_handled_messages_is_ack),
        cmocka_unit_test(test_fate_of_permanent_failures_is_the_dlq),
        cmocka_unit_test(test_fate_of_transient_failures_walks_the_tiers),
        cmocka_unit_test(test_attempt_header_is_clamped),
        cmocka_unit_test(test_retry_headers),
        cmocka_unit_test(test_a_retry_keeps_the_original_routing_key),
        cmocka_unit_test(test_dead_letter_headers),
        cmocka_unit_test(test_last_error_is_cut_on_a_character),
        cmocka_unit_test(test_requeue_headers_start_afresh),
        cmocka_unit_test(test_check_delivery),
        cmocka_unit_test(test_order_id_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
