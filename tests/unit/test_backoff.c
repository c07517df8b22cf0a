/* Unit tests for backoff: growth, cap, jitter bounds, determinism, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void test_ceiling_grows_and_caps(void **state)
{
    (void)state;
    backoff b;
    backoff_init(&b, 100, 1000, 1);
    int expect[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++) {
        assert_int_equal(backoff_ceiling_ms(&b), expect[i]);
        int d = backoff_next_ms(&b);
        assert_true(d >= 1 && d <= expect[i]);
    }
}

static void test_many_attempts_never_overflow(void **state)
{
    (void)state;
    backoff b;
    backoff_init(&b, 50, 30000, 7);
    for (int i = 0; i < 1000; i++) {
        int d = backoff_next_ms(&b);
        assert_true(d >= 1 && d <= 30000);
    }
    assert_int_equal(backoff_ceiling_ms(&b), 30000);
}

static void test_same_seed_same_sequence_and_reset(void **state)
{
    (void)state;
    backoff a, b;
    backoff_init(&a, 10, 5000, 42);
    backoff_init(&b, 10, 5000, 42);
    for (int i = 0; i < 20; i++)
        assert_int_equal(backoff_next_ms(&a), backoff_next_ms(&b));
    backoff_reset(&a);
    assert_int_equal(backoff_ceiling_ms(&a), 10);
}

static void test_jitter_spreads(void **state)
{
    (void)state;
    backoff b;
    int distinct = 0, last = -1;
    for (unsigned s = 0; s < 50; s++) {
        backoff_init(&b, 1000, 1000, s);
        int d = backoff_next_ms(&b);
        if (d != last)
            distinct++;
        last = d;
    }
    assert_true(distinct > 10);
}

static void test_bad_parameters_are_clamped(void **state)
{
    (void)state;
    backoff b;
    backoff_init(&b, 0, -5, 3);
    assert_int_equal(backoff_ceiling_ms(&b), 1);
    assert_int_equal(backoff_next_ms(&b), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ceiling_grows_and_caps),
        cmocka_unit_test(test_many_attempts_never_overflow),
        cmocka_unit_test(test_same_seed_same_sequence_and_reset),
        cmocka_unit_test(test_jitter_spreads),
        cmocka_unit_test(test_bad_parameters_are_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
