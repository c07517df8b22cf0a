/* Unit tests for payment_channels (PAYMENT_CHANNELS, the default method, secrets with rotation,
 * errors that never quote a secret) and payment_notification (a body -> payment.notified, its
 * deterministic id, its refusals), and order_request's payment.method check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "payment_channels.h"
#include "payment_notification.h"

static jsonschema_registry *reg;

static int setup(void **state)
{
    (void)state;
    char err[256];
    return jsonschema_registry_load("schemas", &reg, err, sizeof err) == OP_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    jsonschema_registry_free(reg);
    return 0;
}

static void test_channels(void **state)
{
    (void)state;
    payment_channels pc;
    char err[256];
    assert_int_equal(payment_channels_parse(&pc, NULL, NULL, "http://p:1", err, sizeof err), OP_OK);
    assert_int_equal(pc.n, 1);
    assert_string_equal(pc.v[0].name, "card");
    assert_string_equal(pc.v[0].url, "http://p:1");
    assert_string_equal(pc.default_method, "card");
    payment_channels_free(&pc);
    assert_int_equal(payment_channels_parse(&pc, NULL, "wallet", NULL, err, sizeof err), OP_OK);
    assert_string_equal(pc.v[0].name, "wallet");
    assert_null(pc.v[0].url);
    payment_channels_free(&pc);
    assert_int_equal(payment_channels_parse(&pc, "card=http://a:1,wallet=http://b:2/x?y=1", NULL,
                                            "http://ignored", err, sizeof err), OP_OK);
    assert_int_equal(pc.n, 2);
    assert_string_equal(pc.default_method, "card");
    assert_string_equal(payment_channels_find(&pc, "wallet")->url, "http://b:2/x?y=1");
    assert_null(payment_channels_find(&pc, "bank"));
    assert_null(payment_channels_find(&pc, NULL));
    payment_channels_free(&pc);
    assert_int_equal(payment_channels_parse(&pc, "card=u,wallet=v", "wallet", NULL, err,
                                            sizeof err), OP_OK);
    assert_string_equal(pc.default_method, "wallet");
    payment_channels_free(&pc);
    /* Without PAYMENT_CHANNELS: the default method names the one channel, PAYMENT_URL its URL;
     * an empty PAYMENT_CHANNELS is unset. */
    assert_int_equal(payment_channels_parse(&pc, NULL, "bank", "http://p:9", err, sizeof err), OP_OK);
    assert_int_equal(pc.n, 1);
    assert_string_equal(pc.v[0].name, "bank");
    assert_string_equal(pc.v[0].url, "http://p:9");
    assert_string_equal(pc.default_method, "bank");
    payment_channels_free(&pc);
    assert_int_equal(payment_channels_parse(&pc, "", NULL, NULL, err, sizeof err), OP_OK);
    assert_string_equal(pc.v[0].name, "card");
    assert_null(pc.v[0].url);
    payment_channels_free(&pc);
    const char *bad[][2] = {
        {"card=u,card=v", NULL}, {"Card=u", NULL}, {"card", NULL}, {"card=", NULL},
        {"=u", NULL}, {"9card=u", NULL}, {",", NULL}, {"card=u", "wallet"},
        {"card=u", "Bad Method"}, {"a234567890123456789012345678901234=u", NULL},
        {"c@rd=u", NULL}, {"card=u,", NULL}, {"card=u,,wallet=v", NULL}, {",card=u", NULL},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=u", NULL}, /* 33 characters */
        {NULL, "Bad"}, {"", "9card"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        if (payment_channels_parse(&pc, bad[i][0], bad[i][1], NULL, err, sizeof err) !=
                OP_ERR_PERMANENT || !err[0])
            fail_msg("accepted PAYMENT_CHANNELS='%s' default '%s'", bad[i][0] ? bad[i][0] : "-",
                     bad[i][1] ? bad[i][1] : "-");
        assert_int_equal(pc.n, 0); /* nothing to free */
    }
    assert_true(payment_method_valid("a"));
    assert_true(payment_method_valid("wechat_pay-2"));
    assert_false(payment_method_valid(""));
    assert_false(payment_method_valid("_x"));
    assert_true(payment_method_valid("abcdefghijabcdefghijabcdefghijab")); /* 32: the longest */
    assert_false(payment_method_valid("abcdefghijabcdefghijabcdefghijabc"));
    assert_false(payment_method_valid("2card"));
    assert_false(payment_method_valid("card pay"));
    assert_false(payment_method_valid(NULL));
}

static void test_secrets(void **state)
{
    (void)state;
    payment_channels pc;
    char err[256];
    assert_int_equal(payment_channels_parse(&pc, "card=u,wallet=v", NULL, NULL, err, sizeof err), OP_OK);
    assert_int_equal(payment_channels_add_secrets(&pc, "card=s1,wallet=w=1,card=s2", ',', "X", err,
                                                  sizeof err), OP_OK);
    const payment_channel *card = payment_channels_find(&pc, "card");
    assert_int_equal(card->nsecrets, 2);
    assert_string_equal(card->secrets[1], "s2");
    assert_string_equal(payment_channels_find(&pc, "wallet")->secrets[0], "w=1");
    /* The file form: comments, blank lines, CRLF, spaces around. */
    char path[] = "/tmp/orderpipe-secrets-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# channel secrets\n\n  card = s3 \r\nwallet=w,2\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(payment_channels_load_secrets(&pc, NULL, path, err, sizeof err), OP_OK);
    assert_int_equal(card->nsecrets, 3);
    assert_string_equal(card->secrets[2], "s3");
    assert_string_equal(payment_channels_find(&pc, "wallet")->secrets[1], "w,2");
    unlink(path);
    /* Errors name the entry, never the secret. */
    assert_int_equal(payment_channels_add_secrets(&pc, "card=ok,bank=topsecret", ',',
                                                  "PAYMENT_CHANNEL_SECRETS", err, sizeof err),
                     OP_ERR_PERMANENT);
    assert_non_null(strstr(err, "entry 2"));
    assert_null(strstr(err, "topsecret"));
    assert_int_equal(payment_channels_add_secrets(&pc, "card=", ',', "X", err, sizeof err),
                     OP_ERR_PERMANENT);
    assert_int_equal(payment_channels_add_secrets(&pc, "cardtopsecret", ',', "X", err, sizeof err),
                     OP_ERR_PERMANENT);
    assert_null(strstr(err, "topsecret"));
    assert_int_equal(payment_channels_load_secrets(&pc, NULL, "/nonexistent/x", err, sizeof err),
                     OP_ERR_PERMANENT);
    payment_channels_free(&pc);
    assert_int_equal(pc.n, 0);
}

#define OID "7c1e4f0a-2b3d-4e5f-8a9b-0c1d2e3f4a5b"
#define NOTE(extra) "{\"event_id\":\"ev-1\",\"charge_key\":\"" OID "\",\"provider_ref\":\"ch_1\"," \
                    "\"status\":\"succeeded\",\"amount\":1999,\"currency\":\"EUR\"" extra "}"

static op_status build(const char *body, json_t **ev, order_request_error *err)
{
    char order_id[UUID_STR_LEN];
    return payment_notification_build(body, strlen(body),
                                      jsonschema_registry_get(reg, "payment.notification"),
                                      "card", NULL, ev, order_id, err);
}

static void test_notification(void **state)
{
    (void)state;
    json_t *ev;
    order_request_error err;
    assert_int_equal(build(NOTE(",\"reason\":\"\""), &ev, &err), OP_OK);
    assert_string_equal(json_string_value(json_object_get(ev, "type")), "payment.notified");
    assert_string_equal(json_string_value(json_object_get(ev, "subject")), OID);
    assert_string_equal(json_string_value(json_object_get(ev, "source")),
                        "/intake/payment-notifications/card");
    json_t *data = json_object_get(ev, "data");
    assert_string_equal(json_string_value(json_object_get(data, "order_id")), OID);
    assert_string_equal(json_string_value(json_object_get(data, "channel")), "card");
    jsonschema_error se;
    assert_int_equal(jsonschema_validate(jsonschema_registry_get(reg, "payment.notified"), data, &se),
                     OP_OK);
    assert_int_equal(jsonschema_validate(jsonschema_registry_get(reg, "cloudevent"), ev, &se), OP_OK);
    /* The id: the same (channel, event_id) always, another channel or event another. */
    char id[UUID_STR_LEN], id2[UUID_STR_LEN];
    assert_int_equal(payment_notification_event_id("card", "ev-1", id), OP_OK);
    assert_string_equal(json_string_value(json_object_get(ev, "id")), id);
    assert_int_equal(payment_notification_event_id("wallet", "ev-1", id2), OP_OK);
    assert_string_not_equal(id, id2);
    assert_int_equal(payment_notification_event_id("card", "ev-2", id2), OP_OK);
    assert_string_not_equal(id, id2);
    json_decref(ev);

    struct { const char *body; int status; const char *code, *field; } bad[] = {
        {"{", 400, "invalid_json", ""},
        {"", 400, "invalid_json", ""},
        {"[]", 400, "schema_violation", "$"},
        {NOTE(",\"extra\":1"), 400, "schema_violation", "$.extra"},
        {NOTE(",\"reason\":7"), 400, "schema_violation", "$.reason"},
        {"{\"event_id\":\"e\",\"charge_key\":\"" OID "\",\"provider_ref\":\"r\",\"status\":\"pending\","
         "\"amount\":1,\"currency\":\"EUR\"}", 400, "schema_violation", "$.status"},
        {"{\"event_id\":\"e\",\"charge_key\":\"" OID "\",\"provider_ref\":\"r\",\"status\":\"failed\","
         "\"amount\":2.0,\"currency\":\"EUR\"}", 400, "schema_violation", "$.amount"},
        {"{\"event_id\":\"e\",\"charge_key\":\"" OID "\",\"provider_ref\":\"r\",\"status\":\"failed\","
         "\"amount\":0,\"currency\":\"EUR\"}", 400, "schema_violation", "$.amount"},
        {"{\"event_id\":\"\",\"charge_key\":\"" OID "\",\"provider_ref\":\"r\",\"status\":\"failed\","
         "\"amount\":1,\"currency\":\"EUR\"}", 400, "schema_violation", "$.event_id"},
        {"{\"event_id\":\"e\",\"charge_key\":\"order-42\",\"provider_ref\":\"r\",\"status\":\"failed\","
         "\"amount\":1,\"currency\":\"EUR\"}", 422, "unknown_charge_key", "$.charge_key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&err, 0, sizeof err);
        if (build(bad[i].body, &ev, &err) != OP_ERR_PERMANENT || ev)
            fail_msg("accepted: %s", bad[i].body);
        assert_int_equal(err.http_status, bad[i].status);
        assert_string_equal(err.code, bad[i].code);
        assert_string_equal(err.field, bad[i].field);
    }
}

#define ORDER(pay) "{\"customer_id\":\"c\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"S\"," \
                   "\"quantity\":1,\"unit_price\":1}],\"payment\":" pay "}"

static void test_order_payment_method(void **state)
{
    (void)state;
    payment_channels pc;
    char err[256], id[UUID_STR_LEN];
    assert_int_equal(payment_channels_parse(&pc, "card=u,wallet=v", "wallet", NULL, err, sizeof err), OP_OK);
    const jsonschema *s = jsonschema_registry_get(reg, "order.request");
    json_t *ev;
    order_request_error oe;
    const char *b = ORDER("{\"token\":\"t\"}");
    assert_int_equal(order_request_build(b, strlen(b), s, &pc, "dev", NULL, NULL, "t", &ev, id,
                                         NULL, &oe), OP_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "data"),
                                                          "payment_method")), "wallet");
    jsonschema_error se;
    assert_int_equal(jsonschema_validate(jsonschema_registry_get(reg, "order.placed"),
                                         json_object_get(ev, "data"), &se), OP_OK);
    json_decref(ev);
    b = ORDER("{\"token\":\"t\",\"method\":\"card\"}");
    assert_int_equal(order_request_build(b, strlen(b), s, &pc, "dev", NULL, NULL, "t", &ev, id,
                                         NULL, &oe), OP_OK);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "data"),
                                                          "payment_method")), "card");
    json_decref(ev);
    b = ORDER("{\"token\":\"t\",\"method\":\"bank\"}");
    assert_int_equal(order_request_build(b, strlen(b), s, &pc, "dev", NULL, NULL, "t", &ev, id,
                                         NULL, &oe), OP_ERR_PERMANENT);
    assert_string_equal(oe.code, "unknown_payment_method");
    assert_non_null(strstr(oe.message, "'bank'")); /* quoted from the body, still alive */
    assert_string_equal(oe.field, "$.payment.method");
    assert_int_equal(oe.http_status, 400);
    b = ORDER("{\"token\":\"t\",\"method\":\"Bank!\"}");
    assert_int_equal(order_request_build(b, strlen(b), s, &pc, "dev", NULL, NULL, "t", &ev, id,
                                         NULL, &oe), OP_ERR_PERMANENT);
    assert_string_equal(oe.code, "schema_violation");
    payment_channels_free(&pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channels),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_notification),
        cmocka_unit_test(test_order_payment_method),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
