/* Unit tests for the partition keys and sizes of retention by partitions: the inbox's event-time
 * key (the same text always the same key, anything else '-infinity') and partition widths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "inbox.h"
#include "partitions.h"

static void expect_key(const char *time, const char *key)
{
    char out[INBOX_EVENT_AT_LEN];
    inbox_event_at(time, out);
    assert_string_equal(out, key);
}

static void test_event_at_rfc3339(void **state)
{
    (void)state;
    expect_key("2026-11-24T23:40:00.123Z", "2026-11-24T23:40:00.123000Z");
    expect_key("2026-11-24T23:40:00Z", "2026-11-24T23:40:00.000000Z");
    expect_key("2026-11-24t23:40:00.1234567z", "2026-11-24T23:40:00.123456Z");
    /* An offset gives the same instant, in UTC. */
    expect_key("2026-11-25T01:40:00.5+02:00", "2026-11-24T23:40:00.500000Z");
    expect_key("2026-11-24T20:10:00-03:30", "2026-11-24T23:40:00.000000Z");
    expect_key("2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000000Z");
}

static void test_event_at_refused(void **state)
{
    (void)state;
    const char *bad[] = {NULL, "", "yesterday", "2026-11-24", "2026-11-24T23:40:00",
                         "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z",
                         "2026-11-24T24:00:00Z", "2026-11-24T23:40:00.Z", "1969-12-31T23:59:59Z",
                         "2026-11-24T23:40:00+2:00", "2026-11-24T23:40:00Z ", "+2026-11-24T23:40:00Z",
                         "2026-11-24T23:40:00Z'; drop table inbox; --"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_key(bad[i], "-infinity");
}

static void test_widths(void **state)
{
    (void)state;
    assert_int_equal(partitions_width_s(0), 86400);            /* kept for ever: a day */
    assert_int_equal(partitions_width_s(7 * 86400), 86400);    /* at most a day */
    assert_int_equal(partitions_width_s(86400), 21600);        /* a quarter of the retention */
    assert_int_equal(partitions_width_s(30), PARTITIONS_MIN_WIDTH_S);
    assert_int_equal(partitions_ahead_s(30), PARTITIONS_MIN_AHEAD_S);
    assert_int_equal(partitions_ahead_s(21600), 43200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_at_rfc3339),
        cmocka_unit_test(test_event_at_refused),
        cmocka_unit_test(test_widths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
