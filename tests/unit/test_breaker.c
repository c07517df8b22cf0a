/* Unit tests for breaker: closed -> open after N consecutive failures, open for open_ms, then
 * half-open with one probe whose outcome closes or reopens it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "breaker.h"

static void test_opens_after_consecutive_failures(void **state)
{
    (void)state;
    breaker b;
    breaker_init(&b, 3, 1000);
    assert_true(breaker_allow(&b, 0));
    assert_false(breaker_failure(&b, 0));
    assert_false(breaker_failure(&b, 1));
    assert_false(breaker_is_open(&b, 1));
    assert_true(breaker_allow(&b, 2));
    assert_true(breaker_failure(&b, 2)); /* the third in a row trips it */
    assert_true(breaker_is_open(&b, 2));
    assert_false(breaker_allow(&b, 3));
    assert_false(breaker_allow(&b, 1001));
}

static void test_success_resets_the_count(void **state)
{
    (void)state;
    breaker b;
    breaker_init(&b, 2, 1000);
    assert_false(breaker_failure(&b, 0));
    breaker_success(&b);
    assert_false(breaker_failure(&b, 1)); /* not consecutive: still closed */
    assert_true(breaker_allow(&b, 2));
    assert_true(breaker_failure(&b, 2));
}

static void test_half_open_lets_one_probe_through(void **state)
{
    (void)state;
    breaker b;
    breaker_init(&b, 1, 500);
    assert_true(breaker_failure(&b, 100));
    assert_false(breaker_allow(&b, 599));
    assert_true(breaker_allow(&b, 600));   /* the probe */
    assert_false(breaker_is_open(&b, 600));
    assert_false(breaker_allow(&b, 601));  /* while it is out, nobody else */
    breaker_success(&b);
    assert_int_equal(b.state, BREAKER_CLOSED);
    assert_true(breaker_allow(&b, 602));
    assert_true(breaker_allow(&b, 603));
}

static void test_failed_probe_reopens(void **state)
{
    (void)state;
    breaker b;
    breaker_init(&b, 5, 500);
    for (int i = 0; i < 4; i++)
        assert_false(breaker_failure(&b, 0));
    assert_true(breaker_failure(&b, 0));
    assert_true(breaker_allow(&b, 500));
    assert_true(breaker_failure(&b, 500)); /* one failure is enough when half-open */
    assert_true(breaker_is_open(&b, 999));
    assert_false(breaker_allow(&b, 999));
    assert_true(breaker_allow(&b, 1000));
}

static void test_bad_threshold_means_one(void **state)
{
    (void)state;
    breaker b;
    breaker_init(&b, 0, -5);
    assert_true(breaker_failure(&b, 10));
    assert_true(breaker_allow(&b, 10)); /* open for 0 ms: the next call is a probe */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_consecutive_failures),
        cmocka_unit_test(test_success_resets_the_count),
        cmocka_unit_test(test_half_open_lets_one_probe_through),
        cmocka_unit_test(test_failed_probe_reopens),
        cmocka_unit_test(test_bad_threshold_means_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
