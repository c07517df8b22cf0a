/* Unit tests for idempotency: the body fingerprint ignores key order and whitespace, and sees
 * every change of a value, a key or a type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "idempotency.h"

static void hash(const char *body, char out[IDEMPOTENCY_HASH_LEN])
{
    assert_int_equal(idempotency_hash_body(body, strlen(body), out), OP_OK);
    assert_int_equal(strlen(out), 64);
}

static void test_known_vector(void **state)
{
    (void)state;
    char h[IDEMPOTENCY_HASH_LEN];
    /* sha256('{"a":1,"b":[1,2]}'), computed with sha256sum */
    hash("{ \"b\" : [1, 2],\n \"a\": 1 }", h);
    assert_string_equal(h, "8baa73198470c7bb4c3ce142a8fd651affc0310d878bb9bd159e37a573fb4874");
}

static void test_key_order_and_whitespace_do_not_count(void **state)
{
    (void)state;
    char a[IDEMPOTENCY_HASH_LEN], b[IDEMPOTENCY_HASH_LEN];
    hash("{\"customer_id\":\"c\",\"lines\":[{\"sku\":\"S\",\"quantity\":1}],\"currency\":\"EUR\"}", a);
    hash("{ \"currency\" : \"EUR\",\r\n\t\"lines\": [ { \"quantity\": 1, \"sku\": \"S\" } ],"
         " \"customer_id\": \"c\" }", b);
    assert_string_equal(a, b);
}

static void test_every_change_counts(void **state)
{
    (void)state;
    char base[IDEMPOTENCY_HASH_LEN], h[IDEMPOTENCY_HASH_LEN];
    hash("{\"a\":\"x\",\"n\":1,\"l\":[1,2]}", base);
    const char *other[] = {
        "{\"a\":\"y\",\"n\":1,\"l\":[1,2]}",     /* a value */
        "{\"a\":\"x\",\"n\":2,\"l\":[1,2]}",     /* a number */
        "{\"a\":\"x\",\"n\":\"1\",\"l\":[1,2]}", /* a type */
        "{\"a\":\"x\",\"n\":1,\"l\":[2,1]}",     /* array order counts */
        "{\"b\":\"x\",\"n\":1,\"l\":[1,2]}",     /* a key */
        "{\"a\":\"x\",\"n\":1,\"l\":[1,2],\"z\":null}", /* an extra member */
        "{\"a\":\"x \",\"n\":1,\"l\":[1,2]}",    /* whitespace inside a string counts */
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        hash(other[i], h);
        assert_string_not_equal(base, h);
    }
}

static void test_unicode_escapes_are_the_same_text(void **state)
{
    (void)state;
    char a[IDEMPOTENCY_HASH_LEN], b[IDEMPOTENCY_HASH_LEN];
    hash("{\"name\":\"\xc3\xa9t\xc3\xa9\"}", a);
    hash("{\"name\":\"\\u00e9t\\u00e9\"}", b);
    assert_string_equal(a, b);
}

static void test_not_json(void **state)
{
    (void)state;
    char h[IDEMPOTENCY_HASH_LEN] = "x";
    assert_int_equal(idempotency_hash_body("{\"a\":", 5, h), OP_ERR_PERMANENT);
    assert_string_equal(h, "");
    assert_int_equal(idempotency_hash_body("{\"a\":1,\"a\":2}", 13, h), OP_ERR_PERMANENT);
    assert_int_equal(idempotency_hash_json(NULL, h), OP_ERR_PERMANENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vector),
        cmocka_unit_test(test_key_order_and_whitespace_do_not_count),
        cmocka_unit_test(test_every_change_counts),
        cmocka_unit_test(test_unicode_escapes_are_the_same_text),
        cmocka_unit_test(test_not_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
