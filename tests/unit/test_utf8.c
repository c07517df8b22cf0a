/* Unit tests for utf8: cuts never split a character, copies are always valid UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "utf8.h"

static void test_valid(void **state)
{
    (void)state;
    assert_true(utf8_valid("abc", 3));
    assert_true(utf8_valid("\xc3\xa9", 2));             /* é */
    assert_true(utf8_valid("\xf0\x9f\x98\x80", 4));     /* U+1F600 */
    assert_false(utf8_valid("\xc3", 1));                /* cut in half */
    assert_false(utf8_valid("\xc0\xaf", 2));            /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));        /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4));    /* past U+10FFFF */
    assert_false(utf8_valid("a\0b", 3));
}

static void test_truncate_on_boundary(void **state)
{
    (void)state;
    char s[64];
    strcpy(s, "\xc3\xa9\xc3\xa9\xc3\xa9"); /* ééé, 6 bytes */
    assert_int_equal(utf8_truncate(s, 5), 4);
    assert_true(utf8_valid(s, strlen(s)));
    strcpy(s, "ab\xf0\x9f\x98\x80");
    assert_int_equal(utf8_truncate(s, 5), 2);
    assert_string_equal(s, "ab");
    strcpy(s, "abc");
    assert_int_equal(utf8_truncate(s, 10), 3);
    strcpy(s, "ab\xc3"); /* a lead byte cut off by the end of the string itself */
    assert_int_equal(utf8_truncate(s, 10), 2);
    strcpy(s, "ab\xe2\x82"); /* two bytes of a three-byte character */
    assert_int_equal(utf8_truncate(s, 4), 2);
}

static void test_copy_replaces_and_fits(void **state)
{
    (void)state;
    char d[8];
    assert_int_equal(utf8_copy(d, sizeof d, "a\xff" "b"), 3);
    assert_string_equal(d, "a?b");
    /* 200 x é into a small buffer: whole characters only */
    char src[401];
    for (int i = 0; i < 200; i++)
        memcpy(src + 2 * i, "\xc3\xa9", 2);
    src[400] = '\0';
    size_t n = utf8_copy(d, sizeof d, src);
    assert_int_equal(n, 6);
    assert_true(utf8_valid(d, n));
    assert_int_equal(utf8_copy(d, sizeof d, NULL), 0);
    assert_string_equal(d, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_truncate_on_boundary),
        cmocka_unit_test(test_copy_replaces_and_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
