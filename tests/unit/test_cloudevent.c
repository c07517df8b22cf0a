/* Unit tests for the CloudEvents envelope: building, parsing, every rejection, traceparent, and
 * reading an AMQP message in structured and binary mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "cloudevent.h"
#include "utf8.h"
#include "uuid.h"

static void test_new_then_parse(void **state)
{
    (void)state;
    json_t *ev = cloudevent_new("order.placed", "test", "00000000-0000-4000-8000-000000000001",
                           json_pack("{si}", "n", 1), NULL);
    assert_non_null(ev);
    char *text = json_dumps(ev, JSON_COMPACT);
    cloudevent_view v;
    char err[256];
    assert_int_equal(cloudevent_parse(text, strlen(text), &v, err, sizeof err), OP_OK);
    assert_string_equal(v.type, "order.placed");
    assert_string_equal(v.order_id, "00000000-0000-4000-8000-000000000001");
    assert_true(uuid_valid(v.id));
    assert_null(v.traceparent);
    assert_int_equal(json_integer_value(json_object_get(v.data, "n")), 1);
    assert_int_equal(strlen(v.time), 24);
    cloudevent_view_free(&v);
    free(text);
    json_decref(ev);
}

static void expect_bad(const char *body, const char *fragment)
{
    cloudevent_view v;
    char err[256] = "";
    assert_int_equal(cloudevent_parse(body, strlen(body), &v, err, sizeof err), OP_ERR_PERMANENT);
    assert_null(v.root);
    if (!strstr(err, fragment))
        fail_msg("error '%s' does not mention '%s'", err, fragment);
}

#define GOOD_HEAD "{\"specversion\":\"1.0\",\"id\":\"i\",\"source\":\"s\",\"type\":\"t\",\"time\":\"x\",\"orderid\":\"22222222-2222-4222-8222-222222222222\""

static void test_rejections(void **state)
{
    (void)state;
    expect_bad("{not json", "invalid JSON at line 1");
    expect_bad("[1,2]", "must be a JSON object");
    expect_bad("{\"id\":\"i\"}", "missing attribute 'specversion'");
    expect_bad("{\"specversion\":\"0.3\"}", "unsupported specversion");
    expect_bad("{\"specversion\":\"1.0\",\"source\":\"s\"}", "missing attribute 'id'");
    expect_bad("{\"specversion\":\"1.0\",\"id\":\"\"}", "'id' must be a non-empty string");
    expect_bad("{\"specversion\":\"1.0\",\"id\":7}", "'id' must be a non-empty string");
    expect_bad("{\"specversion\":\"1.0\",\"id\":\"i\",\"source\":\"s\",\"type\":\"t\",\"time\":\"x\","
               "\"orderid\":\"o-1\",\"data\":{}}",
               "'orderid' must be a UUID");
    expect_bad(GOOD_HEAD "}", "missing attribute 'data'");
    expect_bad(GOOD_HEAD ",\"data\":[]}", "'data' must be an object");
    expect_bad(GOOD_HEAD ",\"traceparent\":\"00-zz\",\"data\":{}}", "traceparent");
    expect_bad(GOOD_HEAD ",\"data\":{},\"data\":{}}", "invalid JSON");
    cloudevent_view v;
    char err[256];
    const char *ok = GOOD_HEAD ",\"data\":{}}";
    assert_int_equal(cloudevent_parse(ok, strlen(ok), &v, err, sizeof err), OP_OK);
    cloudevent_view_free(&v);
}

static void test_traceparent(void **state)
{
    (void)state;
    char a[56], b[56];
    cloudevent_traceparent(NULL, a);
    assert_int_equal(strlen(a), 55);
    assert_memory_equal(a, "00-", 3);
    cloudevent_traceparent(a, b);
    assert_memory_equal(a + 3, b + 3, 32);      /* same trace */
    assert_memory_not_equal(a + 36, b + 36, 16); /* new span */
    cloudevent_traceparent("garbage", b);
    assert_int_equal(strlen(b), 55);
    cloudevent_traceparent("00-00000000000000000000000000000000-0000000000000001-01", b);
    assert_memory_not_equal(b + 3, "00000000000000000000000000000000", 32);

    json_t *ev = cloudevent_new("t", "s", "22222222-2222-4222-8222-222222222222", json_object(), a);
    char *text = json_dumps(ev, JSON_COMPACT);
    cloudevent_view v;
    char err[256];
    assert_int_equal(cloudevent_parse(text, strlen(text), &v, err, sizeof err), OP_OK);
    assert_string_equal(v.traceparent, a);
    cloudevent_view_free(&v);
    free(text);
    json_decref(ev);
}

/* The reasons quote the publisher's text; cut at any size they stay valid UTF-8 (they go into
 * a dead-letter header). */
static void test_multibyte_reasons(void **state)
{
    (void)state;
    char body[2048], big[700] = "";
    for (int i = 0; i < 100; i++)
        strcat(big, "\xe2\x82\xac");
    const char *forms[] = {"{\"specversion\":\"%s\"}", "{\"id\":\"x\" %s}", "[\"%s\" %s"};
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++) {
        snprintf(body, sizeof body, forms[f], big, big);
        for (size_t errlen = 1; errlen < 200; errlen += 7) {
            char err[200];
            cloudevent_view v;
            assert_int_equal(cloudevent_parse(body, strlen(body), &v, err, errlen), OP_ERR_PERMANENT);
            assert_true(strlen(err) < errlen);
            assert_true(utf8_valid(err, strlen(err)));
        }
    }
}

static void test_new_names_subject_and_schema(void **state)
{
    (void)state;
    json_t *ev = cloudevent_new("stock.reserved", "test", "00000000-0000-4000-8000-000000000001",
                                json_object(), NULL);
    assert_string_equal(json_string_value(json_object_get(ev, "subject")),
                        "00000000-0000-4000-8000-000000000001");
    assert_string_equal(json_string_value(json_object_get(ev, "dataschema")),
                        "urn:orderpipe:schema:stock.reserved");
    assert_string_equal(json_string_value(json_object_get(ev, "datacontenttype")),
                        "application/json");
    json_decref(ev);
}

#define OID "22222222-2222-4222-8222-222222222222"

/* Binary-mode headers of the event GOOD_HEAD describes, with `prefix` ("cloudEvents:"/"_"). */
static json_t *binary_headers(const char *prefix)
{
    json_t *h = json_object();
    const char *attrs[][2] = {{"specversion", "1.0"}, {"id", "i"}, {"source", "s"}, {"type", "t"},
                              {"time", "x"}, {"subject", OID}};
    for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s%s", prefix, attrs[i][0]);
        json_object_set_new(h, key, json_string(attrs[i][1]));
    }
    json_object_set_new(h, "x-attempt", json_integer(2)); /* not an attribute: ignored */
    return h;
}

static void expect_same_view(const cloudevent_view *v)
{
    assert_string_equal(v->id, "i");
    assert_string_equal(v->source, "s");
    assert_string_equal(v->type, "t");
    assert_string_equal(v->time, "x");
    assert_string_equal(v->order_id, OID);
    assert_int_equal(json_integer_value(json_object_get(v->data, "n")), 1);
}

static void test_message_both_modes(void **state)
{
    (void)state;
    cloudevent_view v;
    char err[256] = "";
    const char *structured = GOOD_HEAD ",\"subject\":\"" OID "\",\"data\":{\"n\":1}}";
    const char *types[] = {"application/cloudevents+json; charset=utf-8",
                           "application/cloudevents+json", "Application/CloudEvents+JSON;charset=\"UTF-8\""};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        assert_int_equal(cloudevent_parse_message(types[i], NULL, structured, strlen(structured), &v,
                                                  err, sizeof err),
                         OP_OK);
        expect_same_view(&v);
        cloudevent_view_free(&v);
    }
    const char *prefixes[] = {"cloudEvents:", "cloudEvents_"};
    for (size_t i = 0; i < 2; i++) {
        json_t *h = binary_headers(prefixes[i]);
        const char *body = "{\"n\":1}";
        if (cloudevent_parse_message("application/json; charset=utf-8", h, body, strlen(body), &v,
                                     err, sizeof err) != OP_OK)
            fail_msg("binary mode %s refused: %s", prefixes[i], err);
        expect_same_view(&v);
        assert_string_equal(json_string_value(json_object_get(v.root, "datacontenttype")),
                            "application/json; charset=utf-8");
        cloudevent_view_free(&v);
        json_decref(h);
    }
}

static void expect_bad_message(const char *content_type, json_t *headers, const char *body,
                               const char *fragment)
{
    cloudevent_view v;
    char err[256] = "";
    assert_int_equal(cloudevent_parse_message(content_type, headers, body, strlen(body), &v, err,
                                              sizeof err),
                     OP_ERR_PERMANENT);
    assert_null(v.root);
    if (!strstr(err, fragment))
        fail_msg("error '%s' does not mention '%s'", err, fragment);
    assert_true(utf8_valid(err, strlen(err)));
}

static void test_message_rejections(void **state)
{
    (void)state;
    const char *structured = GOOD_HEAD ",\"data\":{}}";
    /* A structured body sent as plain JSON is, by the binding, binary mode without attributes. */
    expect_bad_message("application/json", NULL, structured, "without the 'cloudEvents:' headers");
    expect_bad_message(NULL, NULL, structured, "no content type");
    expect_bad_message("text/plain", NULL, structured, "unsupported content type 'text/plain'");
    expect_bad_message("application/cloudevents+jsonx", NULL, structured, "unsupported content type");
    expect_bad_message("application/cloudevents+json; charset=latin1", NULL, structured,
                       "unsupported content type");
    expect_bad_message("application/cloudevents-batch+json", NULL, "[]", "unsupported content type");
    expect_bad_message("\xff\xfe", NULL, structured, "unsupported content type");
    expect_bad_message("application/cloudevents+json",
                       NULL, GOOD_HEAD ",\"subject\":\"33333333-3333-4333-8333-333333333333\",\"data\":{}}",
                       "name different orders");
    expect_bad_message("application/cloudevents+json", NULL,
                       GOOD_HEAD ",\"datacontenttype\":\"text/xml\",\"data\":{}}",
                       "'datacontenttype' must be application/json");
    expect_bad_message("application/cloudevents+json", NULL,
                       "{\"specversion\":\"1.0\",\"id\":\"i\",\"source\":\"s\",\"type\":\"t\","
                       "\"time\":\"x\",\"data\":{}}",
                       "missing attribute 'orderid' (or 'subject')");

    json_t *h = binary_headers("cloudEvents:");
    expect_bad_message("application/json", h, "{\"n\":", "invalid JSON");
    expect_bad_message("application/json", h, "[1]", "'data' must be an object");
    expect_bad_message("application/xml", h, "{}", "unsupported content type");
    json_object_del(h, "cloudEvents:id");
    expect_bad_message("application/json", h, "{}", "missing attribute 'id'");
    json_object_set_new(h, "cloudEvents:id", json_integer(5));
    expect_bad_message("application/json", h, "{}", "must be a UTF-8 string");
    json_object_set_new(h, "cloudEvents:id", json_stringn_nocheck("\xff", 1));
    expect_bad_message("application/json", h, "{}", "must be a UTF-8 string");
    json_object_set_new(h, "cloudEvents:id", json_string("i"));
    json_object_set_new(h, "cloudEvents_id", json_string("j"));
    expect_bad_message("application/json", h, "{}", "given twice");
    json_object_del(h, "cloudEvents_id");
    json_object_set_new(h, "cloudEvents:Type", json_string("u"));
    expect_bad_message("application/json", h, "{}", "does not name an attribute");
    json_object_del(h, "cloudEvents:Type");
    json_object_set_new(h, "cloudEvents:data", json_string("{}"));
    expect_bad_message("application/json", h, "{}", "does not name an attribute");
    json_object_del(h, "cloudEvents:data");
    json_object_set_new(h, "cloudEvents:datacontenttype", json_string("application/json"));
    expect_bad_message("application/json", h, "{}", "the content type is the datacontenttype");
    json_object_del(h, "cloudEvents:datacontenttype");
    json_object_set_new(h, "cloudEvents:specversion", json_string("0.3"));
    expect_bad_message("application/json", h, "{}", "unsupported specversion");
    json_decref(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_then_parse),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_multibyte_reasons),
        cmocka_unit_test(test_new_names_subject_and_schema),
        cmocka_unit_test(test_message_both_modes),
        cmocka_unit_test(test_message_rejections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
