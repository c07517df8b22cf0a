/* Unit tests for broker_url (AMQP URL forms and TLS parameters) and for what broker_connect
 * prints about a URL it cannot use: never the password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "broker_url.h"

/* A throwaway CA certificate (public data only). */
static const char test_ca_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBezCCASGgAwIBAgIUKJlg+4uJvbkfsJKkrzS3ddC1BbMwCgYIKoZIzj0EAwIw\n"
    "EjEQMA4GA1UEAwwHdW5pdCBjYTAgFw0yNjEyMDEyMzA1MjlaGA8yMTI2MTEwNzIz\n"
    "MDUyOVowEjEQMA4GA1UEAwwHdW5pdCBjYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
    "A0IABPemyNRHhknvKZkFF/1fDVKcOHAaYk+gOeI/TfrELr/AKqdBrCnlRVxxgOyJ\n"
    "06XEQfLhSsZ3C9LOsjWVoZZ9F4+jUzBRMB0GA1UdDgQWBBRtKDmBgaIzO3QVoOEJ\n"
    "HWDkVEGOfzAfBgNVHSMEGDAWgBRtKDmBgaIzO3QVoOEJHWDkVEGOfzAPBgNVHRMB\n"
    "Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQC9KPtNxq+Q3pxytifo1U11Ylky\n"
    "ibjSjhJfCiiivK3JmgIgbCce9O1eHIfTeoFG8SkojN07BR5R93arkLJnk3txvbc=\n"
    "-----END CERTIFICATE-----\n";

static char dir[] = "/tmp/test_broker_url.XXXXXX";
static char ca_path[128], key_path[128], junk_path[128];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/other.key", dir);
    snprintf(junk_path, sizeof junk_path, "%s/junk.pem", dir);
    write_file(ca_path, test_ca_pem);
    write_file(junk_path, "not a certificate\n");
    /* a key that belongs to no certificate here, made now so none is kept in the source */
    EVP_PKEY *k = EVP_EC_gen("P-256");
    FILE *f = fopen(key_path, "w");
    if (!k || !f || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1)
        return -1;
    fclose(f);
    EVP_PKEY_free(k);
    unsetenv("AMQP_CACERT");
    unsetenv("AMQP_CERT");
    unsetenv("AMQP_KEY");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(ca_path);
    unlink(key_path);
    unlink(junk_path);
    rmdir(dir);
    return 0;
}

static op_status parse(const char *url, broker_url *u, char *err, size_t n)
{
    err[0] = '\0';
    return broker_url_parse(url, u, err, n);
}

static void test_plain(void **state)
{
    (void)state;
    broker_url u;
    char err[512];
    assert_int_equal(parse("amqp://guest:guest@127.0.0.1:5672/orders", &u, err, sizeof err), OP_OK);
    assert_false(u.tls);
    assert_string_equal(u.ci.host, "127.0.0.1");
    assert_int_equal(u.ci.port, 5672);
    assert_string_equal(u.ci.vhost, "orders");
    assert_string_equal(u.ci.password, "guest");
    assert_string_equal(u.label, "127.0.0.1:5672/orders");
    broker_url_free(&u);
    assert_int_equal(parse("amqp://h", &u, err, sizeof err), OP_OK);
    assert_int_equal(u.ci.port, 5672);
    assert_string_equal(u.ci.vhost, "/");
    broker_url_free(&u);
}

static void test_amqps_defaults(void **state)
{
    (void)state;
    broker_url u;
    char err[512];
    assert_int_equal(parse("amqps://u:p@broker.example/v", &u, err, sizeof err), OP_OK);
    assert_true(u.tls);
    assert_true(u.verify); /* on unless asked otherwise */
    assert_int_equal(u.ci.port, 5671);
    assert_null(u.cacert); /* the system store */
    assert_null(u.cert);
    assert_string_equal(broker_url_peer_name(&u), "broker.example");
    broker_url_free(&u);
}

static void test_amqps_query(void **state)
{
    (void)state;
    broker_url u;
    char err[512], url[512];
    snprintf(url, sizeof url,
             "amqps://u:p@10.0.0.5:5679/%%2f?cacertfile=%s&server_name_indication=mq.internal"
             "&verify=verify_peer", ca_path);
    assert_int_equal(parse(url, &u, err, sizeof err), OP_OK);
    assert_string_equal(u.cacert, ca_path);
    assert_string_equal(u.ci.vhost, "/");
    assert_int_equal(u.ci.port, 5679);
    assert_string_equal(broker_url_peer_name(&u), "mq.internal");
    broker_url_free(&u);
    /* verify_none is possible, never by accident */
    assert_int_equal(parse("amqps://u:p@h/?verify=verify_none", &u, err, sizeof err), OP_OK);
    assert_false(u.verify);
    broker_url_free(&u);
}

static void test_env_defaults(void **state)
{
    (void)state;
    broker_url u;
    char err[512], url[512];
    setenv("AMQP_CACERT", ca_path, 1);
    assert_int_equal(parse("amqps://u:p@h/", &u, err, sizeof err), OP_OK);
    assert_string_equal(u.cacert, ca_path);
    broker_url_free(&u);
    /* the URL wins over the environment */
    snprintf(url, sizeof url, "amqps://u:p@h/?cacertfile=%s", junk_path);
    assert_int_equal(parse(url, &u, err, sizeof err), OP_ERR_PERMANENT);
    assert_non_null(strstr(err, "cannot load the CA file"));
    broker_url_free(&u);
    /* a plain URL never reads them */
    assert_int_equal(parse("amqp://u:p@h/", &u, err, sizeof err), OP_OK);
    assert_null(u.cacert);
    broker_url_free(&u);
    unsetenv("AMQP_CACERT");
}

static void expect_error(const char *url, const char *needle)
{
    broker_url u;
    char err[512];
    assert_int_equal(parse(url, &u, err, sizeof err), OP_ERR_PERMANENT);
    if (!strstr(err, needle))
        fail_msg("'%s': expected '%s' in '%s'", url, needle, err);
    if (strstr(err, "s3cret"))
        fail_msg("password in the error: %s", err);
    broker_url_free(&u);
}

static void test_errors(void **state)
{
    (void)state;
    char url[512];
    expect_error("amqp://u:s3cret@h:notaport/v", "not an AMQP URL");
    expect_error("amqp://u:s3cret@h/v?cacertfile=/x", "need an amqps:// URL");
    expect_error("amqps://u:s3cret@h/v?cafile=/x", "unknown parameter 'cafile'");
    expect_error("amqps://u:s3cret@h/v?verify=maybe", "verify must be");
    expect_error("amqps://u:s3cret@h/v?cacertfile", "has no value");
    expect_error("amqps://u:s3cret@h/v?cacertfile=", "is empty");
    expect_error("amqps://u:s3cret@h/v?cacertfile=%zz", "malformed");
    expect_error("amqps://u:s3cret@h/v#frag", "fragment");
    expect_error("amqps://u:s3cret@h/v?cacertfile=/nonexistent/ca.pem", "cannot read the CA file");
    expect_error("", "empty");
    snprintf(url, sizeof url, "amqps://u:s3cret@h/?certfile=%s", ca_path);
    expect_error(url, "needs both certfile and keyfile");
    snprintf(url, sizeof url, "amqps://u:s3cret@h/?certfile=%s&keyfile=%s", ca_path, key_path);
    expect_error(url, "cannot load the client key"); /* it belongs to another certificate */
    snprintf(url, sizeof url, "amqps://u:s3cret@h/?certfile=%s&keyfile=%s", junk_path, key_path);
    expect_error(url, "cannot load the client certificate");
}

/* broker_connect prints why a URL list is unusable; the password must not be in it. */
static void test_connect_never_prints_password(void **state)
{
    (void)state;
    char path[160], text[1024] = "";
    snprintf(path, sizeof path, "%s/stderr", dir);
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    dup2(fileno(f), 2);
    broker *b = (broker *)1;
    broker_options o = {.urls = "amqp://u:s3cret@h1/v,amqp://u:s3cret@h2:x/v", .name = "t"};
    op_status st = broker_connect(&b, &o);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    assert_int_equal(st, OP_ERR_PERMANENT);
    assert_null(b);
    assert_non_null(strstr(text, "amqp://u:***@h2:x/v"));
    assert_null(strstr(text, "s3cret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_amqps_defaults),
        cmocka_unit_test(test_amqps_query),
        cmocka_unit_test(test_env_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_connect_never_prints_password),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
