/* Unit tests for samples (sorting, nearest-rank percentiles, the empty case) and the clock they
 * are taken with (lib/clock.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <regex.h>

#include "clock.h"
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
    double a = clock_now_ms_f(), b = clock_now_ms_f();
    assert_true(b >= a);
    uint64_t ms = clock_now_ms(), ns = clock_now_ns();
    assert_true(ns / 1000000u >= ms);
    assert_true(clock_now_ms() >= ms);
}

static void test_clock_ms_since(void **state)
{
    (void)state;
    uint64_t now = clock_now_ms();
    assert_true(clock_ms_since(now) < 60000); /* a reading just taken: nothing like a minute */
    assert_true(clock_ms_since(now - 5000) >= 5000);
    assert_int_equal(clock_ms_since(now + 3600000), 0); /* a start in the future: no negative wrap */
}

static void test_clock_utc_text(void **state)
{
    (void)state;
    char t[CLOCK_UTC_TEXT_LEN];
    clock_utc_text(t);
    regex_t re;
    assert_int_equal(regcomp(&re, "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]"
                                  "\\.[0-9]{3}Z$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regexec(&re, t, 0, NULL, 0), 0);
    regfree(&re);
    assert_int_equal(strlen(t), 24);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sort_then_nearest_rank),
        cmocka_unit_test(test_empty_and_single),
        cmocka_unit_test(test_clock_does_not_go_back),
        cmocka_unit_test(test_clock_ms_since),
        cmocka_unit_test(test_clock_utc_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
