/* Unit tests for pay_channels: PAYMENT_CHANNELS parsing, the fallback to PAYMENT_URL and the
 * default method. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pay_channels.h"

static void test_list(void **state)
{
    (void)state;
    pay_channels_conf c;
    char err[200];
    assert_int_equal(pay_channels_parse("card=http://a:1,wallet=http://b:2/x", NULL, NULL, &c, err,
                                        sizeof err), OP_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ch[0].method, "card");
    assert_string_equal(c.ch[0].url, "http://a:1");
    assert_string_equal(c.ch[1].method, "wallet");
    assert_string_equal(c.ch[1].url, "http://b:2/x");
    assert_string_equal(c.default_method, "card");
    assert_int_equal(pay_channels_find(&c, "wallet"), 1);
    assert_int_equal(pay_channels_find(&c, "bank"), -1);
    assert_int_equal(pay_channels_parse("card=http://a,wallet=http://b", NULL, "wallet", &c, err,
                                        sizeof err), OP_OK);
    assert_string_equal(c.default_method, "wallet");
}

static void test_fallback(void **state)
{
    (void)state;
    pay_channels_conf c;
    char err[200];
    assert_int_equal(pay_channels_parse(NULL, "http://p:9", NULL, &c, err, sizeof err), OP_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.ch[0].method, "card");
    assert_string_equal(c.ch[0].url, "http://p:9");
    assert_int_equal(pay_channels_parse("", NULL, "bank", &c, err, sizeof err), OP_OK);
    assert_string_equal(c.ch[0].method, "bank");
    assert_string_equal(c.ch[0].url, "");
    assert_string_equal(c.default_method, "bank");
}

static void test_refused(void **state)
{
    (void)state;
    pay_channels_conf c;
    char err[200];
    const char *bad[] = {"card", "card=", "=http://x", "Card=http://x", "card=http://a,card=http://b",
                         "c@rd=http://x", "card=http://a,", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=http://x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(pay_channels_parse(bad[i], NULL, NULL, &c, err, sizeof err), OP_ERR_PERMANENT);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(pay_channels_parse("card=http://a", NULL, "wallet", &c, err, sizeof err),
                     OP_ERR_PERMANENT);
    assert_int_equal(pay_channels_parse(NULL, NULL, "Bad", &c, err, sizeof err), OP_ERR_PERMANENT);
}

static void test_method_names(void **state)
{
    (void)state;
    assert_true(pay_method_valid("card"));
    assert_true(pay_method_valid("we-chat_2"));
    assert_true(pay_method_valid("abcdefghijabcdefghijabcdefghijab")); /* 32 */
    assert_false(pay_method_valid("abcdefghijabcdefghijabcdefghijabc"));
    assert_false(pay_method_valid("2card"));
    assert_false(pay_method_valid(""));
    assert_false(pay_method_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_method_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
