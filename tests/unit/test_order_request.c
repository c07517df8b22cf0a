/* Unit tests for order_request: the checks shared by the intake and the bulk enqueue, the
 * idempotent ids, and the order.placed event it builds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "order_request.h"
#include "utf8.h"

static jsonschema_registry *reg;
static const jsonschema *schema;

static int setup(void **state)
{
    (void)state;
    char err[256];
    if (jsonschema_registry_load("schemas", &reg, err, sizeof err) != OP_OK)
        return -1;
    schema = jsonschema_registry_get(reg, "order.request");
    return schema ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    jsonschema_registry_free(reg);
    return 0;
}

#define GOOD "{\"customer_id\":\"c-42\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"SKU-1\"," \
             "\"quantity\":2,\"unit_price\":1999},{\"sku\":\"SKU-2\",\"quantity\":1,\"unit_price\":1}]," \
             "\"payment\":{\"token\":\"tok_ok\"}}"

static void test_builds_the_event(void **state)
{
    (void)state;
    json_t *ev;
    char id[UUID_STR_LEN];
    order_request_error err;
    char token[ORDER_REQUEST_TOKEN_SIZE];
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, NULL, "dev", NULL, NULL, "test",
                                         &ev, id, token, &err), OP_OK);
    assert_true(uuid_valid(id));
    /* The token is handed to the caller, never put in the event every consumer receives. */
    assert_string_equal(token, "tok_ok");
    char *text = json_dumps(ev, JSON_COMPACT);
    assert_null(strstr(text, token));
    assert_null(strstr(text, "\"payment\"")); /* only the method, as payment_method */
    free(text);
    json_t *data = json_object_get(ev, "data");
    assert_int_equal(json_integer_value(json_object_get(data, "total")), 3999);
    assert_string_equal(json_string_value(json_object_get(ev, "orderid")), id);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "order.placed");
    assert_true(json_is_object(json_object_get(data, "notify")));
    char err2[256];
    jsonschema_registry *r;
    assert_int_equal(jsonschema_registry_load("schemas", &r, err2, sizeof err2), OP_OK);
    jsonschema_error je;
    assert_int_equal(jsonschema_validate(jsonschema_registry_get(r, "order.placed"), data, &je), OP_OK);
    assert_int_equal(jsonschema_validate(jsonschema_registry_get(r, "cloudevent"), ev, &je), OP_OK);
    jsonschema_registry_free(r);
    json_decref(ev);
}

static void test_idempotent_ids(void **state)
{
    (void)state;
    json_t *a, *b, *c;
    char ida[UUID_STR_LEN], idb[UUID_STR_LEN], idc[UUID_STR_LEN];
    order_request_error err;
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, NULL, "dev", "k-1", NULL, "t", &a, ida, NULL, &err), OP_OK);
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, NULL, "dev", "k-1", NULL, "t", &b, idb, NULL, &err), OP_OK);
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, NULL, "other", "k-1", NULL, "t", &c, idc, NULL, &err), OP_OK);
    assert_string_equal(ida, idb);
    assert_string_not_equal(ida, idc);
    assert_string_equal(json_string_value(json_object_get(a, "id")), json_string_value(json_object_get(b, "id")));
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void expect_error(const char *body, const char *key, const char *code, const char *field)
{
    json_t *ev;
    char id[UUID_STR_LEN];
    order_request_error err;
    assert_int_equal(order_request_build(body, strlen(body), schema, NULL, "dev", key, NULL, "t", &ev, id, NULL, &err),
                     OP_ERR_PERMANENT);
    assert_null(ev);
    assert_int_equal(err.http_status, 400);
    if (strcmp(err.code, code) != 0 || strcmp(err.field, field) != 0)
        fail_msg("%s: expected %s/%s, got %s/%s: %s", body, code, field, err.code, err.field, err.message);
    assert_true(utf8_valid(err.message, strlen(err.message)));
    assert_true(utf8_valid(err.field, strlen(err.field)));
    char j[ORDER_REQUEST_ERROR_BODY_MAX];
    assert_int_equal(order_request_error_body(&err, j, sizeof j), 400);
    json_t *parsed = json_loads(j, 0, NULL);
    assert_non_null(parsed);
    assert_string_equal(json_string_value(json_object_get(parsed, "error")), code);
    if (field[0])
        assert_string_equal(json_string_value(json_object_get(parsed, "field")), field);
    json_decref(parsed);
}

/* n copies of s, in a static buffer */
static const char *rep(const char *s, int n)
{
    static char buf[4][8192];
    static int which;
    char *b = buf[which++ % 4];
    b[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(b, s);
    return b;
}

static char body_buf[16384];
#define BODY(...) (snprintf(body_buf, sizeof body_buf, __VA_ARGS__), body_buf)
#define LINE_BODY(line) BODY("{\"customer_id\":\"c\",\"currency\":\"EUR\",\"lines\":[%s]," \
                             "\"payment\":{\"token\":\"t\"}}", line)

/* Messages built from long multibyte input are cut on character boundaries: each gives a valid
 * 400 body (cut mid-character, json_pack refused them and the reply got a NULL). */
static void test_multibyte_messages(void **state)
{
    (void)state;
    char field[256];
    snprintf(field, sizeof field, "$.%s", rep("\xc3\xa9", 126)); /* as many as fit whole */
    /* an unknown property named 200 x "é": the path is cut on a character boundary */
    expect_error(BODY("%.*s,\"%s\":1}", (int)strlen(GOOD) - 1, GOOD, rep("\xc3\xa9", 200)), NULL,
                 "schema_violation", field);
    /* the same nested deep: the path is full before the key */
    const char *k = rep("\xc3\xa9", 200);
    json_t *ev;
    char id[UUID_STR_LEN];
    order_request_error err;
    const char *deep = BODY("{\"customer_id\":\"c\",\"currency\":\"EUR\",\"payment\":{\"token\":\"t\"},"
                            "\"lines\":[{\"sku\":\"s\",\"quantity\":1,\"unit_price\":1}],"
                            "\"notify\":{\"%s\":{\"%s\":{\"%s\":1}}}}", k, k, k);
    assert_int_equal(order_request_build(deep, strlen(deep), schema, NULL, "dev", NULL, NULL, "t", &ev,
                                         id, NULL, &err), OP_ERR_PERMANENT);
    assert_string_equal(err.code, "schema_violation");
    assert_true(utf8_valid(err.field, strlen(err.field)));
    assert_true(utf8_valid(err.message, strlen(err.message)));
    /* 3-byte and 4-byte characters at every alignment */
    for (int pad = 0; pad < 4; pad++) {
        char key[2048];
        snprintf(key, sizeof key, "%s%s", rep("a", pad), rep("\xe2\x82\xac\xf0\x9f\x98\x80", 60));
        expect_error(BODY("{\"%s\":1}", key), NULL, "schema_violation", "$.customer_id");
        const char *b = BODY("%.*s,\"%s\":1}", (int)strlen(GOOD) - 1, GOOD, key);
        assert_int_equal(order_request_build(b, strlen(b), schema, NULL, "dev", NULL, NULL, "t", &ev, id, NULL,
                                             &err), OP_ERR_PERMANENT);
        assert_true(utf8_valid(err.field, strlen(err.field)));
        char j[ORDER_REQUEST_ERROR_BODY_MAX];
        assert_int_equal(order_request_error_body(&err, j, sizeof j), 400);
        assert_memory_equal(err.field, "$.", 2);
        assert_true(strlen(err.field) > 200);
    }
    /* long multibyte strings in fields that fail their pattern */
    expect_error(BODY("{\"customer_id\":\"c\",\"currency\":\"%s\",\"payment\":{\"token\":\"t\"},"
                      "\"lines\":[{\"sku\":\"s\",\"quantity\":1,\"unit_price\":1}]}",
                      rep("\xc3\xa9", 300)), NULL, "schema_violation", "$.currency");
    expect_error(BODY("{\"customer_id\":\"c\",\"currency\":\"EUR\",\"payment\":{\"token\":\"%s\"},"
                      "\"lines\":[{\"sku\":\"s\",\"quantity\":1,\"unit_price\":1}]}",
                      rep("\xe2\x82\xac", 40)), NULL, "schema_violation", "$.payment.token");
    char sku_line[256];
    snprintf(sku_line, sizeof sku_line, "{\"sku\":\"%s!\",\"quantity\":1,\"unit_price\":1}",
             rep("\xc3\xa9", 30));
    expect_error(LINE_BODY(sku_line), NULL, "schema_violation", "$.lines[0].sku");
    /* a parse error after multibyte text: jansson quotes the text near it */
    expect_error(BODY("{\"customer_id\":\"%s\" %s}", rep("\xc3\xa9", 100), rep("\xc3\xa9", 100)), NULL,
                 "invalid_json", "");
    expect_error(BODY("[%s", rep("\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\",", 60)), NULL, "invalid_json", "");
    expect_error(BODY("{\"a\":%s}", rep("\xf0\x9f\x98\x80", 100)), NULL, "invalid_json", "");
    /* invalid UTF-8 in the body */
    expect_error("{\"customer_id\":\"\xc3\x28\"}", NULL, "invalid_json", "");
    expect_error("{\"\xed\xa0\x80\":1}", NULL, "invalid_json", "");
}

/* Integer fields take only integers: 2.0 or 1e8 read as integers would give a total of 0, and
 * the reservation would dead-letter an order answered 202. */
static void test_integers_only(void **state)
{
    (void)state;
    const char *prices[] = {"100000000.0", "2.0", "1e8", "1E2", "1e0", "-0.0", "2.5"};
    for (size_t i = 0; i < sizeof prices / sizeof *prices; i++) {
        char line[128];
        snprintf(line, sizeof line, "{\"sku\":\"S\",\"quantity\":1,\"unit_price\":%s}", prices[i]);
        expect_error(LINE_BODY(line), NULL, "schema_violation", "$.lines[0].unit_price");
    }
    expect_error(LINE_BODY("{\"sku\":\"S\",\"quantity\":3.0,\"unit_price\":1}"), NULL,
                 "schema_violation", "$.lines[0].quantity");
    expect_error(LINE_BODY("{\"sku\":\"S\",\"quantity\":1,\"unit_price\":1},"
                           "{\"sku\":\"S\",\"quantity\":1e1,\"unit_price\":1}"), NULL,
                 "schema_violation", "$.lines[1].quantity");
    /* the largest order the schema allows has the exact total */
    char lines[8192] = "";
    for (int i = 0; i < 100; i++)
        strcat(lines, i ? ",{\"sku\":\"S\",\"quantity\":1000,\"unit_price\":100000000}"
                        : "{\"sku\":\"S\",\"quantity\":1000,\"unit_price\":100000000}");
    const char *b = LINE_BODY(lines);
    json_t *ev;
    char id[UUID_STR_LEN];
    order_request_error err;
    assert_int_equal(order_request_build(b, strlen(b), schema, NULL, "dev", NULL, NULL, "t", &ev, id, NULL, &err), OP_OK);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "data"), "total")),
                     10000000000000LL);
    json_decref(ev);
}

/* A malformed traceparent is replaced by a new one, never copied into the event. */
static void test_traceparent_replaced(void **state)
{
    (void)state;
    const char *bad[] = {"garbage", "00-\xc3\xa9\xc3\xa9-x-01",
                         "00-00000000000000000000000000000000-0000000000000000-01",
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *ev;
        char id[UUID_STR_LEN];
        order_request_error err;
        assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, NULL, "dev", "k", bad[i], "t",
                                             &ev, id, NULL, &err), OP_OK);
        const char *tp = json_string_value(json_object_get(ev, "traceparent"));
        assert_non_null(tp);
        assert_int_equal(strlen(tp), 55);
        assert_memory_equal(tp, "00-", 3);
        assert_string_not_equal(tp, bad[i]);
        json_decref(ev);
    }
}

/* The error body is built whatever err holds, and keeps the status. */
static void test_error_body_never_fails(void **state)
{
    (void)state;
    order_request_error err;
    memset(&err, 0, sizeof err);
    err.http_status = 400;
    strcpy(err.code, "schema_violation");
    memset(err.message, 0xc3, sizeof err.message - 1); /* half characters only */
    memset(err.field, 0xff, sizeof err.field - 1);
    char j[ORDER_REQUEST_ERROR_BODY_MAX];
    assert_int_equal(order_request_error_body(&err, j, sizeof j), 400);
    json_t *parsed = json_loads(j, 0, NULL);
    assert_non_null(parsed);
    json_decref(parsed);
    /* too small a buffer: the fixed 500 body, never a cut one */
    char small[16 + sizeof ORDER_REQUEST_INTERNAL_BODY];
    assert_int_equal(order_request_error_body(&err, small, sizeof small), 500);
    assert_string_equal(small, ORDER_REQUEST_INTERNAL_BODY);
    order_request_error_set(&err, 404, "not_found", NULL, rep("\xc3\xa9", 400));
    assert_true(utf8_valid(err.message, strlen(err.message)));
    assert_string_equal(err.field, "");
    assert_int_equal(order_request_error_body(&err, j, sizeof j), 404);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("{", NULL, "invalid_json", "");
    expect_error("{\"a\":\"\xff\"}", NULL, "invalid_json", "");
    expect_error(GOOD, "", "invalid_idempotency_key", "");
    expect_error(GOOD, "bad\x01key", "invalid_idempotency_key", "");
    expect_error("{\"customer_id\":\"c\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"S\",\"quantity\":0,"
                 "\"unit_price\":1}],\"payment\":{\"token\":\"t\"}}", NULL, "schema_violation", "$.lines[0].quantity");
    expect_error("{\"customer_id\":\"c\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"S\",\"quantity\":1,"
                 "\"unit_price\":1}]}", NULL, "schema_violation", "$.payment");
    char long_key[200];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    expect_error(GOOD, long_key, "invalid_idempotency_key", "");
    assert_true(order_request_key_valid("a b~"));
    assert_false(order_request_key_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builds_the_event),
        cmocka_unit_test(test_idempotent_ids),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_multibyte_messages),
        cmocka_unit_test(test_integers_only),
        cmocka_unit_test(test_traceparent_replaced),
        cmocka_unit_test(test_error_body_never_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
