/* Unit tests for the token bucket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

#define S 1000000000ull

static void test_burst_then_refuse(void **state)
{
    (void)state;
    ratelimit r;
    ratelimit_init(&r, 10, 5, 0);
    for (int i = 0; i < 5; i++)
        assert_true(ratelimit_take(&r, 0, NULL));
    int retry = 0;
    assert_false(ratelimit_take(&r, 0, &retry));
    assert_int_equal(retry, 1);
}

static void test_refill_at_rate_and_cap(void **state)
{
    (void)state;
    ratelimit r;
    ratelimit_init(&r, 2, 2, 0);
    assert_true(ratelimit_take(&r, 0, NULL));
    assert_true(ratelimit_take(&r, 0, NULL));
    assert_false(ratelimit_take(&r, S / 4, NULL)); /* 0.5 token */
    assert_true(ratelimit_take(&r, S / 2, NULL));  /* 1 token */
    assert_true(ratelimit_take(&r, 100 * S, NULL));
    assert_true(ratelimit_take(&r, 100 * S, NULL));
    assert_false(ratelimit_take(&r, 100 * S, NULL)); /* capped at burst 2 */
}

static void test_retry_after_for_slow_rates(void **state)
{
    (void)state;
    ratelimit r;
    ratelimit_init(&r, 0.1, 1, 0);
    assert_true(ratelimit_take(&r, 0, NULL));
    int retry = 0;
    assert_false(ratelimit_take(&r, 0, &retry));
    assert_int_equal(retry, 10);
    assert_false(ratelimit_take(&r, 5 * S, &retry));
    assert_int_equal(retry, 5);
}

static void test_unlimited_and_refund_and_clock_going_back(void **state)
{
    (void)state;
    ratelimit r;
    ratelimit_init(&r, 0, 1, 0);
    for (int i = 0; i < 1000; i++)
        assert_true(ratelimit_take(&r, 0, NULL));
    ratelimit_init(&r, 1, 1, 10 * S);
    assert_true(ratelimit_take(&r, 10 * S, NULL));
    assert_false(ratelimit_take(&r, 5 * S, NULL)); /* an earlier time adds nothing */
    ratelimit_refund(&r);
    assert_true(ratelimit_take(&r, 10 * S, NULL));
    ratelimit_refund(&r);
    ratelimit_refund(&r); /* never beyond the burst */
    assert_true(ratelimit_take(&r, 10 * S, NULL));
    assert_false(ratelimit_take(&r, 10 * S, NULL));
}

static void test_overdraft_is_bounded_and_repaid(void **state)
{
    (void)state;
    ratelimit r;
    ratelimit_init(&r, 10, 2, 0);
    assert_true(ratelimit_take(&r, 0, NULL));
    assert_true(ratelimit_take(&r, 0, NULL));
    assert_false(ratelimit_take(&r, 0, NULL));
    /* Past the spent bucket down to -3 tokens, and no further. */
    for (int i = 0; i < 3; i++)
        assert_true(ratelimit_take_overdraft(&r, 0, 3, NULL));
    int retry = 0;
    assert_false(ratelimit_take_overdraft(&r, 0, 3, &retry));
    assert_int_equal(retry, 1);
    /* The debt is repaid before a plain take succeeds: 4 tokens at 10/s. */
    assert_false(ratelimit_take(&r, S / 5, NULL));
    assert_true(ratelimit_take(&r, S * 4 / 10 + 1, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refuse),
        cmocka_unit_test(test_refill_at_rate_and_cap),
        cmocka_unit_test(test_retry_after_for_slow_rates),
        cmocka_unit_test(test_unlimited_and_refund_and_clock_going_back),
        cmocka_unit_test(test_overdraft_is_bounded_and_repaid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
