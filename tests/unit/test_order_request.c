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

static jsonschema_registry *reg;
static const jsonschema *schema;

static int setup(void **state)
{
    (void)state;
    char err[256];
    reg = jsonschema_registry_load("schemas", err, sizeof err);
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
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, "dev", NULL, NULL, "test",
                                         &ev, id, &err), OP_OK);
    assert_true(uuid_valid(id));
    json_t *data = json_object_get(ev, "data");
    assert_int_equal(json_integer_value(json_object_get(data, "total")), 3999);
    assert_string_equal(json_string_value(json_object_get(ev, "orderid")), id);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "order.placed");
    assert_true(json_is_object(json_object_get(data, "notify")));
    char err2[256];
    jsonschema_registry *r = jsonschema_registry_load("schemas", err2, sizeof err2);
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
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, "dev", "k-1", NULL, "t", &a, ida, &err), OP_OK);
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, "dev", "k-1", NULL, "t", &b, idb, &err), OP_OK);
    assert_int_equal(order_request_build(GOOD, strlen(GOOD), schema, "other", "k-1", NULL, "t", &c, idc, &err), OP_OK);
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
    assert_int_equal(order_request_build(body, strlen(body), schema, "dev", key, NULL, "t", &ev, id, &err),
                     OP_ERR_PERMANENT);
    assert_null(ev);
    assert_int_equal(err.http_status, 400);
    if (strcmp(err.code, code) != 0 || strcmp(err.field, field) != 0)
        fail_msg("%s: expected %s/%s, got %s/%s: %s", body, code, field, err.code, err.field, err.message);
    char *j = order_request_error_json(&err);
    json_t *parsed = json_loads(j, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(parsed, "error")), code);
    json_decref(parsed);
    free(j);
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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
