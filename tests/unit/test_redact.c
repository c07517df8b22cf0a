/* Unit tests for redact: no password of a URL, a URL list or a libpq string survives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "redact.h"
#include "utf8.h"

static const char *r(const char *in)
{
    static char out[512];
    return redact_secrets(in, out, sizeof out);
}

static void test_url_passwords(void **state)
{
    (void)state;
    assert_string_equal(r("amqp://guest:guest@127.0.0.1:5672/"), "amqp://guest:***@127.0.0.1:5672/");
    assert_string_equal(r("amqps://u:s3cr%40t@h/v?cacertfile=/ca.pem"),
                        "amqps://u:***@h/v?cacertfile=/ca.pem");
    assert_string_equal(r("postgresql://app:pw@db:5432/x?sslmode=verify-full"),
                        "postgresql://app:***@db:5432/x?sslmode=verify-full");
    /* no password: unchanged */
    assert_string_equal(r("amqp://guest@h:5672/v"), "amqp://guest@h:5672/v");
    assert_string_equal(r("amqp://h:5672/v"), "amqp://h:5672/v");
    assert_string_equal(r("amqp://[::1]:5672/v"), "amqp://[::1]:5672/v");
    assert_string_equal(r("no url here"), "no url here");
    assert_string_equal(r(NULL), "");
}

static void test_lists_and_messages(void **state)
{
    (void)state;
    assert_string_equal(r("amqp://a:1@h1/,amqps://b:2@h2:5671/v"), "amqp://a:***@h1/,amqps://b:***@h2:5671/v");
    assert_string_equal(r("not an AMQP URL: 'amqp://u:topsecret@h/v?x'"),
                        "not an AMQP URL: 'amqp://u:***@h/v?x'");
}

static void test_malformed_urls(void **state)
{
    (void)state;
    /* '/' and '@' inside the password (unencoded): the whole password still goes */
    assert_string_equal(r("amqp://u:pa/ss@h/v"), "amqp://u:***@h/v");
    assert_string_equal(r("amqp://u:p@ss@h/v"), "amqp://u:***@h/v");
    /* a ',' in the password splits the list: the part before looks like a non-numeric port */
    assert_string_equal(r("amqp://u:pa,ss@h/v"), "amqp://u:***,ss@h/v");
    /* a password with '?' after the '@': the userinfo still ends at the first '@' before it */
    assert_string_equal(r("amqp://u:pw@h/v?password=x&b=1"), "amqp://u:***@h/v?password=***&b=1");
    assert_string_equal(r("amqp://u:@h"), "amqp://u:***@h");
}

static void test_password_parameters(void **state)
{
    (void)state;
    assert_string_equal(r("host=db user=app password=hunter2 dbname=x"),
                        "host=db user=app password=*** dbname=x");
    assert_string_equal(r("host=db password='a b\\'c' dbname=x"), "host=db password=*** dbname=x");
    assert_string_equal(r("postgresql://db/x?user=a&password=b"), "postgresql://db/x?user=a&password=***");
    /* only whole parameter names */
    assert_string_equal(r("nopassword=1"), "nopassword=1");
}

static void test_small_buffers(void **state)
{
    (void)state;
    char out[12];
    redact_secrets("amqp://u:secretsecret@h", out, sizeof out);
    assert_null(strstr(out, "secret"));
    assert_string_equal(out, "amqp://u:**");
    /* never half a character */
    char small[6];
    redact_secrets("abcd\xc3\xa9", small, sizeof small);
    assert_string_equal(small, "abcd");
    assert_true(utf8_valid(small, strlen(small)));
    char one[1];
    assert_string_equal(redact_secrets("amqp://u:p@h", one, sizeof one), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_passwords),
        cmocka_unit_test(test_lists_and_messages),
        cmocka_unit_test(test_malformed_urls),
        cmocka_unit_test(test_password_parameters),
        cmocka_unit_test(test_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
