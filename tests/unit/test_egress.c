/* Unit tests for egress: strict webhook URLs, host allow-lists, internal address ranges, CIDRs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "egress.h"

static void parses(const char *url, bool https, const char *host, unsigned port, bool is_ip)
{
    egress_url u;
    const char *why = NULL;
    if (egress_parse_url(url, &u, &why) != OP_OK)
        fail_msg("%s refused: %s", url, why);
    assert_int_equal(u.https, https);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_int_equal(u.host_is_ip, is_ip);
}

static void refused(const char *url)
{
    egress_url u;
    const char *why = NULL;
    if (egress_parse_url(url, &u, &why) == OP_OK)
        fail_msg("%s accepted as host '%s'", url, u.host);
    assert_non_null(why);
}

static void test_url_good(void **state)
{
    (void)state;
    parses("https://hooks.example.com/x?y=1", true, "hooks.example.com", 443, false);
    parses("HTTPS://Hooks.Example.COM", true, "hooks.example.com", 443, false);
    parses("http://a.example:8080/p", false, "a.example", 8080, false);
    parses("http://127.0.0.1/", false, "127.0.0.1", 80, true);
    parses("http://[::1]:9000/hook", false, "::1", 9000, true);
    parses("http://[0:0::1]/", false, "::1", 80, true);
    parses("https://xn--bcher-kva.example/", true, "xn--bcher-kva.example", 443, false);
    parses("https://h.example?q", true, "h.example", 443, false);
}

static void test_url_refused(void **state)
{
    (void)state;
    refused(NULL);
    refused("");
    refused("ftp://x.example/");
    refused("https//x.example/");
    refused("https:///path");
    refused("https://:443/");
    refused("https://user:pass@allowed.example/");
    refused("https://allowed.example@evil.example/");
    refused("https://evil.example\\@allowed.example/");
    refused("https://allowed.example/a b");
    refused("https://allowed.example/\r\nX: y");
    refused("https://allowed.example/#frag");
    refused("https://b\xc3\xbc" "cher.example/");      /* IDN host: only punycode is compared */
    refused("https://allowed.example:/");
    refused("https://allowed.example:0/");
    refused("https://allowed.example:65536/");
    refused("https://allowed.example:44a/");
    refused("https://allowed.example:-1/");
    refused("https://allowed.example./");
    refused("https://-bad.example/");
    refused("https://a..example/");
    refused("https://under_score.example/");
    refused("http://2130706433/");      /* 127.0.0.1 as one number */
    refused("http://127.1/");           /* short form */
    refused("http://0x7f.0.0.1/");      /* hex */
    refused("http://0177.0.0.1/");      /* octal */
    refused("http://[::1/");
    refused("http://[::1]x/");
    refused("http://[fe80::1%25eth0]/"); /* zone id */
    refused("http://[127.0.0.1]/");
}

static void internal(const char *text, const char *range)
{
    egress_addr a;
    assert_int_equal(egress_addr_parse(text, &a), 0);
    const char *got = egress_addr_internal(&a);
    if (!got)
        fail_msg("%s classified public", text);
    if (range && strcmp(got, range) != 0)
        fail_msg("%s classified '%s', want '%s'", text, got, range);
}

static void public(const char *text)
{
    egress_addr a;
    assert_int_equal(egress_addr_parse(text, &a), 0);
    const char *got = egress_addr_internal(&a);
    if (got)
        fail_msg("%s classified internal (%s)", text, got);
}

static void test_addr_classes(void **state)
{
    (void)state;
    internal("0.0.0.0", NULL);
    internal("0.255.1.2", NULL);
    internal("127.0.0.1", "loopback");
    internal("127.255.255.254", "loopback");
    internal("10.0.0.1", "private");
    internal("172.16.0.1", "private");
    internal("172.31.255.255", "private");
    internal("192.168.1.1", "private");
    internal("169.254.169.254", "metadata");
    internal("169.254.0.1", "link-local");
    internal("100.64.0.1", NULL);
    internal("100.127.255.255", NULL);
    internal("224.0.0.1", "multicast");
    internal("239.255.255.250", "multicast");
    internal("255.255.255.255", "broadcast");
    internal("240.0.0.1", "reserved");
    internal("::1", "loopback");
    internal("::", "unspecified");
    internal("fc00::1", "unique local");
    internal("fd12:3456::1", "unique local");
    internal("fe80::1", "link-local");
    internal("febf::1", "link-local");
    internal("ff02::1", "multicast");
    internal("::ffff:127.0.0.1", "loopback");          /* IPv4-mapped */
    internal("::ffff:169.254.169.254", "metadata");
    internal("::ffff:10.1.2.3", "private");
    internal("::127.0.0.1", "loopback");               /* IPv4-compatible */
    internal("64:ff9b::a9fe:a9fe", "metadata");        /* NAT64 of 169.254.169.254 */
    internal("2002:7f00:1::", "loopback");             /* 6to4 of 127.0.0.1 */
    public("8.8.8.8");
    public("172.15.255.255");
    public("172.32.0.0");
    public("100.63.255.255");
    public("100.128.0.0");
    public("169.253.255.255");
    public("11.0.0.1");
    public("2606:4700::1111");
    public("::ffff:8.8.8.8");
    public("2002:808:808::");
    egress_addr a;
    assert_int_equal(egress_addr_parse("localhost", &a), -1);
    assert_int_equal(egress_addr_parse("127.1", &a), -1);
    assert_int_equal(egress_addr_parse("fe80::1%eth0", &a), -1);
}

static void test_addr_sockaddr(void **state)
{
    (void)state;
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.168.0.7", &s6.sin6_addr);
    egress_addr a;
    assert_int_equal(egress_addr_from_sockaddr((struct sockaddr *)&s6, &a), 0);
    assert_int_equal(a.family, AF_INET);
    char text[64];
    egress_addr_format(&a, text, sizeof text);
    assert_string_equal(text, "192.168.0.7");
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "169.254.169.254", &s4.sin_addr);
    assert_int_equal(egress_addr_from_sockaddr((struct sockaddr *)&s4, &a), 0);
    assert_string_equal(egress_addr_internal(&a), "metadata");
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_int_equal(egress_addr_from_sockaddr(&other, &a), -1);
}

static bool in(const egress_cidrs *l, const char *text)
{
    egress_addr a;
    assert_int_equal(egress_addr_parse(text, &a), 0);
    return egress_cidrs_contain(l, &a);
}

static void test_cidrs(void **state)
{
    (void)state;
    egress_cidrs l = {0};
    char err[128];
    assert_int_equal(egress_cidrs_parse(&l, "127.0.0.1/32, 10.1.0.0/16,fd00::/8,::ffff:192.168.0.0/112,169.254.1.1", err, sizeof err), OP_OK);
    assert_int_equal(l.n, 5);
    assert_true(in(&l, "127.0.0.1"));
    assert_false(in(&l, "127.0.0.2"));
    assert_true(in(&l, "::ffff:127.0.0.1"));   /* mapped form of a listed IPv4 */
    assert_true(in(&l, "10.1.255.3"));
    assert_false(in(&l, "10.2.0.1"));
    assert_true(in(&l, "fd00::5"));
    assert_false(in(&l, "fe80::1"));
    assert_true(in(&l, "192.168.4.4"));
    assert_false(in(&l, "192.169.0.1"));
    assert_true(in(&l, "169.254.1.1"));
    assert_false(in(&l, "169.254.169.254"));
    assert_int_equal(egress_cidrs_parse(&l, "", err, sizeof err), OP_OK);
    assert_int_equal(egress_cidrs_parse(&l, NULL, err, sizeof err), OP_OK);
    assert_int_equal(l.n, 5);
    egress_cidrs_free(&l);
    const char *bad[] = {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0/8", "x", "10.0.0.0/a",
                         "::ffff:10.0.0.0/90", "1.2.3.4/-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        egress_cidrs b = {0};
        if (egress_cidrs_parse(&b, bad[i], err, sizeof err) == OP_OK)
            fail_msg("CIDR '%s' accepted", bad[i]);
        assert_non_null(strstr(err, "not an address"));
        egress_cidrs_free(&b);
    }
    egress_cidrs all = {0};
    assert_int_equal(egress_cidrs_parse(&all, "0.0.0.0/0", err, sizeof err), OP_OK);
    assert_true(in(&all, "10.0.0.1"));
    assert_false(in(&all, "::1"));
    egress_cidrs_free(&all);
}

static void test_host_match(void **state)
{
    (void)state;
    assert_true(egress_host_match("hooks.example.com", "hooks.example.com"));
    assert_false(egress_host_match("hooks.example.com", "xhooks.example.com"));
    assert_false(egress_host_match("hooks.example.com", "hooks.example.com.evil"));
    assert_true(egress_host_match("*.partner.example", "a.partner.example"));
    assert_true(egress_host_match("*.partner.example", "a.b.partner.example"));
    assert_false(egress_host_match("*.partner.example", "partner.example"));
    assert_false(egress_host_match("*.partner.example", "evilpartner.example"));
    assert_false(egress_host_match("*.partner.example", ".partner.example"));
}

static void test_policy(void **state)
{
    (void)state;
    egress_policy p = {0};
    char err[256], msg[256];
    assert_int_equal(egress_policy_parse(&p, " shop-a = Hooks.Example.com, *.partner.example ;"
                                             "shop-b=b.example\n# comment\nshop-a=[::1]",
                                         err, sizeof err), OP_OK);
    assert_int_equal(p.n, 2);
    const egress_client_hosts *a = egress_policy_client(&p, "shop-a");
    assert_non_null(a);
    assert_int_equal(a->n, 3);
    assert_string_equal(a->hosts[0], "hooks.example.com");
    assert_string_equal(a->hosts[2], "::1");
    assert_null(egress_policy_client(&p, "shop-c"));

    assert_int_equal(egress_policy_check(&p, "shop-a", "https://hooks.example.com/x", msg, sizeof msg), OP_OK);
    assert_int_equal(egress_policy_check(&p, "shop-a", "https://z.partner.example/", msg, sizeof msg), OP_OK);
    assert_int_equal(egress_policy_check(&p, "shop-a", "https://[0::1]:8443/", msg, sizeof msg), OP_OK);
    assert_int_equal(egress_policy_check(&p, "shop-a", "https://partner.example/", msg, sizeof msg), OP_ERR_PERMANENT);
    assert_non_null(strstr(msg, "'partner.example' is not in"));
    assert_int_equal(egress_policy_check(&p, "shop-a", "https://b.example/", msg, sizeof msg), OP_ERR_PERMANENT);
    assert_int_equal(egress_policy_check(&p, "shop-b", "https://b.example/", msg, sizeof msg), OP_OK);
    assert_int_equal(egress_policy_check(&p, "shop-a", "http://hooks.example.com/", msg, sizeof msg), OP_ERR_PERMANENT);
    assert_string_equal(msg, "webhook URLs must use https");
    assert_int_equal(egress_policy_check(&p, "shop-a", "https://u:p@hooks.example.com/", msg, sizeof msg), OP_ERR_PERMANENT);
    assert_non_null(strstr(msg, "user name or password"));
    assert_int_equal(egress_policy_check(&p, "shop-c", "https://hooks.example.com/", msg, sizeof msg), OP_ERR_PERMANENT);
    assert_non_null(strstr(msg, "may not use webhooks"));
    p.allow_http = true;
    assert_int_equal(egress_policy_check(&p, "shop-a", "http://hooks.example.com/", msg, sizeof msg), OP_OK);
    egress_policy_free(&p);

    const char *bad[] = {"noequals", "=a.example", "a=bad_host", "a=*.", "a=*.1.2.3.4", "a=*x.example",
                         "a=h.example,http://x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        egress_policy q = {0};
        if (egress_policy_parse(&q, bad[i], err, sizeof err) == OP_OK)
            fail_msg("policy '%s' accepted", bad[i]);
        egress_policy_free(&q);
    }
    egress_policy q = {0};
    assert_int_equal(egress_policy_load_file(&q, "/nonexistent/webhook-hosts", err, sizeof err), OP_ERR_PERMANENT);
    assert_non_null(strstr(err, "cannot read"));
    egress_policy_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_good),   cmocka_unit_test(test_url_refused),
        cmocka_unit_test(test_addr_classes), cmocka_unit_test(test_addr_sockaddr),
        cmocka_unit_test(test_cidrs),      cmocka_unit_test(test_host_match),
        cmocka_unit_test(test_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
