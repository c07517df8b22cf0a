/* Unit tests for linger: the gap between deliveries, the cap after the first, no linger at 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "linger.h"

static void test_a_lone_delivery_waits_a_gap(void **state)
{
    (void)state;
    assert_int_equal(linger_gap_ms(10), 2);
    assert_int_equal(linger_wait_ms(0, 1, 10), 2);
    assert_int_equal(linger_gap_ms(3000), 600);
    assert_int_equal(linger_wait_ms(100, 1, 3000), 600);
}

static void test_a_second_delivery_waits_out_the_linger(void **state)
{
    (void)state;
    assert_int_equal(linger_wait_ms(1, 2, 10), 9);
    assert_int_equal(linger_wait_ms(4, 7, 10), 6);
    assert_int_equal(linger_wait_ms(450, 2, 3000), 2550);
}

static void test_never_past_the_linger(void **state)
{
    (void)state;
    assert_int_equal(linger_wait_ms(9, 1, 10), 1);
    assert_int_equal(linger_wait_ms(10, 1, 10), 0);
    assert_int_equal(linger_wait_ms(10, 5, 10), 0);
    assert_int_equal(linger_wait_ms(250, 9, 10), 0);
    assert_int_equal(linger_wait_ms(2900, 1, 3000), 100);
}

static void test_short_lingers_wait_at_least_a_ms(void **state)
{
    (void)state;
    assert_int_equal(linger_gap_ms(1), 1);
    assert_int_equal(linger_wait_ms(0, 1, 1), 1);
    assert_int_equal(linger_wait_ms(0, 1, 4), 1);
    assert_int_equal(linger_wait_ms(-3, 1, 4), 1); /* a clock step back counts as no time */
}

static void test_zero_means_take_only_what_is_there(void **state)
{
    (void)state;
    assert_int_equal(linger_gap_ms(0), 0);
    assert_int_equal(linger_wait_ms(0, 1, 0), 0);
    assert_int_equal(linger_wait_ms(0, 3, -5), 0);
    assert_int_equal(linger_wait_ms(0, 0, 10), 0); /* an empty batch is the idle wait's */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_lone_delivery_waits_a_gap),
        cmocka_unit_test(test_a_second_delivery_waits_out_the_linger),
        cmocka_unit_test(test_never_past_the_linger),
        cmocka_unit_test(test_short_lingers_wait_at_least_a_ms),
        cmocka_unit_test(test_zero_means_take_only_what_is_there),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
