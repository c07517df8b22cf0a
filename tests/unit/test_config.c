/* Unit tests for config parsing helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>

#include "config.h"

static void test_parse_long(void **state)
{
    (void)state;
    long v = 7;
    assert_int_equal(config_parse_long("42", 0, 100, &v), OP_OK);
    assert_int_equal(v, 42);
    assert_int_equal(config_parse_long("101", 0, 100, &v), OP_ERR_PERMANENT);
    assert_int_equal(config_parse_long("-1", 0, 100, &v), OP_ERR_PERMANENT);
    assert_int_equal(config_parse_long("12x", 0, 100, &v), OP_ERR_PERMANENT);
    assert_int_equal(config_parse_long("", 0, 100, &v), OP_ERR_PERMANENT);
    assert_int_equal(config_parse_long(NULL, 0, 100, &v), OP_ERR_PERMANENT);
    assert_int_equal(config_parse_long("99999999999999999999999", 0, 100, &v), OP_ERR_PERMANENT);
    assert_int_equal(v, 42);
}

static void test_parse_duration(void **state)
{
    (void)state;
    long ms = 0;
    assert_int_equal(config_parse_duration_ms("250", &ms), OP_OK);
    assert_int_equal(ms, 250);
    assert_int_equal(config_parse_duration_ms("250ms", &ms), OP_OK);
    assert_int_equal(ms, 250);
    assert_int_equal(config_parse_duration_ms("3s", &ms), OP_OK);
    assert_int_equal(ms, 3000);
    assert_int_equal(config_parse_duration_ms("2m", &ms), OP_OK);
    assert_int_equal(ms, 120000);
    assert_int_equal(config_parse_duration_ms("2h", &ms), OP_OK);
    assert_int_equal(ms, 7200000);
    assert_int_equal(config_parse_duration_ms("7d", &ms), OP_OK);
    assert_int_equal(ms, 604800000);
    assert_int_equal(config_parse_duration_ms("2w", &ms), OP_ERR_PERMANENT);
    assert_int_equal(config_parse_duration_ms("-5s", &ms), OP_ERR_PERMANENT);
    assert_int_equal(config_parse_duration_ms("s", &ms), OP_ERR_PERMANENT);
}

static void test_env(void **state)
{
    (void)state;
    long v;
    bool b;
    unsetenv("OP_TEST_X");
    assert_string_equal(config_env_str("OP_TEST_X", "dflt"), "dflt");
    assert_int_equal(config_env_long("OP_TEST_X", 5, 0, 10, &v), OP_OK);
    assert_int_equal(v, 5);
    setenv("OP_TEST_X", "", 1);
    assert_string_equal(config_env_str("OP_TEST_X", "dflt"), "dflt");
    setenv("OP_TEST_X", "11", 1);
    assert_int_equal(config_env_long("OP_TEST_X", 5, 0, 10, &v), OP_ERR_PERMANENT);
    setenv("OP_TEST_X", "yes", 1);
    assert_int_equal(config_env_bool("OP_TEST_X", false, &b), OP_OK);
    assert_true(b);
    setenv("OP_TEST_X", "OFF", 1);
    assert_int_equal(config_env_bool("OP_TEST_X", true, &b), OP_OK);
    assert_false(b);
    setenv("OP_TEST_X", "maybe", 1);
    assert_int_equal(config_env_bool("OP_TEST_X", true, &b), OP_ERR_PERMANENT);
    unsetenv("OP_TEST_X");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
