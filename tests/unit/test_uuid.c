/* Unit tests for uuid: v4 shape and uniqueness, v5 against the RFC's DNS example, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "uuid.h"

static void test_v4(void **state)
{
    (void)state;
    char a[UUID_STR_LEN], b[UUID_STR_LEN];
    assert_int_equal(uuid_v4(a), OP_OK);
    assert_int_equal(uuid_v4(b), OP_OK);
    assert_true(uuid_valid(a));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_true(strchr("89ab", a[19]) != NULL);
}

static void test_v5_known_vector(void **state)
{
    (void)state;
    char out[UUID_STR_LEN];
    assert_int_equal(uuid_v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com", 15, out), OP_OK);
    assert_string_equal(out, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
    char again[UUID_STR_LEN];
    assert_int_equal(uuid_v5("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "www.example.com", 15, again), OP_OK);
    assert_string_equal(out, again);
    assert_int_equal(uuid_v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.org", 15, again), OP_OK);
    assert_string_not_equal(out, again);
    assert_int_equal(uuid_v5("not-a-uuid", "x", 1, out), OP_ERR_PERMANENT);
}

static void test_valid(void **state)
{
    (void)state;
    assert_true(uuid_valid("00000000-0000-4000-8000-000000000001"));
    assert_false(uuid_valid("00000000-0000-4000-8000-00000000000"));
    assert_false(uuid_valid("00000000-0000-4000-8000-0000000000011"));
    assert_false(uuid_valid("00000000x0000-4000-8000-000000000001"));
    assert_false(uuid_valid("g0000000-0000-4000-8000-000000000001"));
    assert_false(uuid_valid(""));
    assert_false(uuid_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4),
        cmocka_unit_test(test_v5_known_vector),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
