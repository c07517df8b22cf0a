/* Unit tests for tenants' demand and fair shares. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fairshare.h"

#define S 1000000000ull
#define MS 1000000ull

/* Tenant i asks `rate` requests/s from `from` for `secs` seconds. */
static void ask(fairshare *f, size_t i, double rate, uint64_t from, double secs)
{
    uint64_t step = (uint64_t)(1e9 / rate);
    for (uint64_t t = from; t < from + (uint64_t)(secs * 1e9); t += step)
        fairshare_note(f, i, t);
}

static void test_rate_converges_and_decays(void **state)
{
    (void)state;
    fairshare f;
    assert_int_equal(fairshare_init(&f, 2, 1, 5), 0);
    assert_true(fairshare_rate(&f, 0, S) == 0);
    ask(&f, 0, 100, S, 10);
    double r = fairshare_rate(&f, 0, 11 * S);
    assert_true(r > 95 && r < 105);
    /* Quiet for 3 tau: down to about 5 %. */
    r = fairshare_rate(&f, 0, 14 * S);
    assert_true(r > 4 && r < 6);
    assert_true(fairshare_rate(&f, 1, 14 * S) == 0);
    assert_true(fairshare_rate(&f, 7, 14 * S) == 0); /* out of range: nothing */
    fairshare_note(&f, 7, 14 * S);
    fairshare_free(&f);
}

static void test_active_tenants_expire(void **state)
{
    (void)state;
    fairshare f;
    assert_int_equal(fairshare_init(&f, 3, 1, 5), 0);
    assert_int_equal(fairshare_active(&f, 0), 0);
    fairshare_note(&f, 0, 0); /* time 0 counts */
    fairshare_note(&f, 1, 2 * S);
    assert_int_equal(fairshare_active(&f, 3 * S), 2);
    assert_int_equal(fairshare_active(&f, 6 * S), 1);
    assert_int_equal(fairshare_active(&f, 8 * S), 0);
    fairshare_free(&f);
}

static void test_over_fair_share_of_capacity(void **state)
{
    (void)state;
    fairshare f;
    assert_int_equal(fairshare_init(&f, 2, 1, 5), 0);
    ask(&f, 0, 500, 0, 5);
    /* Alone, A may have all of 1000/s. */
    assert_false(fairshare_over(&f, 0, 5 * S, 1000));
    assert_true(fairshare_over(&f, 0, 5 * S, 400));
    /* With B active, each has 500/s: A at ~500 is at the edge, B at 10 well under. */
    ask(&f, 1, 10, 5 * S, 2);
    ask(&f, 0, 900, 5 * S, 2);
    assert_true(fairshare_over(&f, 0, 7 * S, 1000));
    assert_false(fairshare_over(&f, 1, 7 * S, 1000));
    fairshare_free(&f);
}

static void test_heavy_tenants(void **state)
{
    (void)state;
    fairshare f;
    assert_int_equal(fairshare_init(&f, 3, 1, 5), 0);
    ask(&f, 0, 50, 0, 3);
    assert_true(fairshare_heavy(&f, 0, 3 * S)); /* alone: heavy */
    ask(&f, 1, 50, 0, 3);
    assert_true(fairshare_heavy(&f, 0, 3 * S)); /* alike: both heavy */
    assert_true(fairshare_heavy(&f, 1, 3 * S));
    ask(&f, 2, 2000, 0, 3);
    assert_true(fairshare_heavy(&f, 2, 3 * S)); /* the flood */
    assert_false(fairshare_heavy(&f, 0, 3 * S));
    assert_false(fairshare_heavy(&f, 1, 3 * S));
    /* The flood stops: within a few tau the others are the heavy ones again. */
    ask(&f, 0, 50, 3 * S, 5);
    ask(&f, 1, 50, 3 * S, 5);
    assert_true(fairshare_heavy(&f, 0, 8 * S));
    /* Tenant 2 has been quiet 5 s: no longer active, so not counted. */
    assert_int_equal(fairshare_active(&f, 8 * S + 10 * MS), 2);
    fairshare_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_converges_and_decays),
        cmocka_unit_test(test_active_tenants_expire),
        cmocka_unit_test(test_over_fair_share_of_capacity),
        cmocka_unit_test(test_heavy_tenants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
