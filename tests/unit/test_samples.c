/* Unit tests for samples: sorting, nearest-rank percentiles, the empty case, the clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "samples.h"

static void test_sort_then_nearest_rank(void **state)
{
    (void)state;
    double v[] = {9, 2, 7, 4, 5, 6, 3, 8, 1, 10};
    samples_sort(v, 10);
    for (int i = 0; i < 10; i++)
        assert_true(v[i] == (double)(i + 1));
    assert_true(samples_percentile(v, 10, 50) == 5);
    assert_true(samples_percentile(v, 10, 95) == 10);
    assert_true(samples_percentile(v, 10, 99) == 10);
    assert_true(samples_percentile(v, 10, 10) == 1);
    assert_true(samples_percentile(v, 10, 0) == 1);
    assert_true(samples_percentile(v, 10, 100) == 10);
}

static void test_empty_and_single(void **state)
{
    (void)state;
    double one[] = {42};
    assert_true(samples_percentile(one, 0, 50) == 0);
    samples_sort(one, 1);
    assert_true(samples_percentile(one, 1, 99) == 42);
}

static void test_clock_does_not_go_back(void **state)
{
    (void)state;
    double a = samples_now_ms(), b = samples_now_ms();
    assert_true(b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sort_then_nearest_rank),
        cmocka_unit_test(test_empty_and_single),
        cmocka_unit_test(test_clock_does_not_go_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
