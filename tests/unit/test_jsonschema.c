/* Unit tests for lib/jsonschema: error paths and messages, refused keywords, and the project's
 * own schemas in schemas/ (each loads; valid samples pass; invalid ones name the field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <string.h>

#include "jsonschema.h"
#include "utf8.h"

static jsonschema *compile(const char *text)
{
    json_t *doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    char err[256];
    jsonschema *s;
    op_status st = jsonschema_compile(doc, &s, err, sizeof err);
    json_decref(doc);
    assert_true(st == OP_OK ? s != NULL : s == NULL && err[0]);
    return s;
}

static void expect(const jsonschema *s, const char *doc_text, bool valid, const char *path,
                   const char *keyword)
{
    json_t *doc = json_loads(doc_text, JSON_DECODE_ANY, NULL);
    assert_non_null(doc);
    jsonschema_error e = {0};
    op_status st = jsonschema_validate(s, doc, &e);
    json_decref(doc);
    if (valid) {
        if (st != OP_OK)
            fail_msg("%s should be valid, got %s: %s", doc_text, e.path, e.message);
        return;
    }
    assert_int_equal(st, OP_ERR_PERMANENT);
    if (strcmp(e.path, path) != 0 || strcmp(e.keyword, keyword) != 0)
        fail_msg("%s: expected %s/%s, got %s/%s (%s)", doc_text, path, keyword, e.path, e.keyword,
                 e.message);
}

static void test_paths_and_keywords(void **state)
{
    (void)state;
    jsonschema *s = compile(
        "{\"type\":\"object\",\"required\":[\"a\"],\"additionalProperties\":false,"
        "\"properties\":{\"a\":{\"type\":\"array\",\"maxItems\":2,\"items\":{\"type\":\"object\","
        "\"properties\":{\"q\":{\"type\":\"integer\",\"minimum\":1}}}},"
        "\"s\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":3,\"pattern\":\"^[A-Z]+$\"},"
        "\"e\":{\"enum\":[\"x\",1]},\"u\":{\"format\":\"uuid\"},\"t\":{\"format\":\"date-time\"}}}");
    assert_non_null(s);
    expect(s, "{\"a\":[{\"q\":1}]}", true, NULL, NULL);
    expect(s, "{}", false, "$.a", "required");
    expect(s, "{\"a\":[],\"z\":1}", false, "$.z", "additionalProperties");
    expect(s, "{\"a\":[{\"q\":0}]}", false, "$.a[0].q", "minimum");
    expect(s, "{\"a\":[{},{\"q\":1.5}]}", false, "$.a[1].q", "type");
    expect(s, "{\"a\":[{},{},{}]}", false, "$.a", "maxItems");
    expect(s, "{\"a\":[],\"s\":\"A\"}", false, "$.s", "minLength");
    expect(s, "{\"a\":[],\"s\":\"ABCD\"}", false, "$.s", "maxLength");
    expect(s, "{\"a\":[],\"s\":\"ab\"}", false, "$.s", "pattern");
    expect(s, "{\"a\":[],\"s\":\"\xc3\xa9\xc3\xa9\"}", false, "$.s", "pattern");
    expect(s, "{\"a\":[],\"e\":2}", false, "$.e", "enum");
    expect(s, "{\"a\":[],\"e\":1.0}", true, NULL, NULL);
    expect(s, "{\"a\":[],\"u\":\"nope\"}", false, "$.u", "format");
    expect(s, "{\"a\":[],\"u\":\"00000000-0000-4000-8000-000000000001\"}", true, NULL, NULL);
    expect(s, "{\"a\":[],\"t\":\"2026-02-30T10:00:00Z\"}", false, "$.t", "format");
    expect(s, "{\"a\":[],\"t\":\"2026-11-24T23:40:00.123Z\"}", true, NULL, NULL);
    expect(s, "[1]", false, "$", "type");
    jsonschema_free(s);
}

static void test_refused_schemas(void **state)
{
    (void)state;
    assert_null(compile("{\"$ref\":\"#/definitions/x\"}"));
    assert_null(compile("{\"anyOf\":[{}]}"));
    assert_null(compile("{\"type\":\"strong\"}"));
    assert_null(compile("{\"minLength\":-1}"));
    assert_null(compile("{\"pattern\":\"(?=a)\"}"));
    assert_null(compile("{\"pattern\":\"[\"}"));
    assert_null(compile("{\"properties\":{\"a\":{\"oneOf\":[]}}}"));
    assert_null(compile("[]"));
    jsonschema *s = compile("{\"title\":\"t\",\"description\":\"d\",\"format\":\"email\"}");
    assert_non_null(s); /* annotations and unknown formats are accepted */
    jsonschema_free(s);
}

/* Found by tests/fuzz/fuzz_jsonschema: glibc's regcomp copies the operand of every + and {m,n},
 * so nested repetitions took gigabytes, and + nested over empty-matching operands (or stacked
 * quantifiers) never finished compiling; such patterns are refused now. */
static void test_regex_blowup_refused(void **state)
{
    (void)state;
    char pat[256] = "{\"pattern\":\"^\\\\te";
    size_t n = strlen(pat);
    for (int i = 0; i < 120; i++)
        pat[n++] = '+';
    strcpy(pat + n, "-time\"}");
    assert_null(compile(pat));
    assert_null(compile("{\"pattern\":\"((a{99}){99}){99}\"}"));
    assert_null(compile("{\"pattern\":\"(((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+\"}"));
    assert_null(compile("{\"pattern\":\"[a-z]{1,100000}\"}"));
    assert_null(compile("{\"pattern\":\"^\\\\{+*+++++++me\"}")); /* stacked: never finished */
    assert_null(compile("{\"pattern\":\"^a*++\"}"));
    assert_null(compile("{\"pattern\":\"^(((a*)+)+)+\"}"));
    assert_null(compile("{\"pattern\":\"^((((a?){2,}){2,}){2,}){2,}\"}"));
    assert_null(compile("{\"pattern\":\"(a?){4000}\"}")); /* 130 MB: quadratic */
    assert_null(compile("{\"pattern\":\"((a|b?){64}){64}\"}")); /* 530 MB */
    /* found by fuzz_jsonschema: an escaped ] ended the POSIX bracket early, so the
     * stacked quantifiers the scan saw inside the bracket reached regcomp */
    assert_null(compile("{\"pattern\":\"^[\\\\w+\\\\]\\te++++++++++++++++++++++++]\"}"));
    assert_null(compile("{\"pattern\":\"[a\\\\-z]\"}"));
    assert_null(compile("{\"pattern\":\"[\\\\^a]\"}"));
    /* the same found again: \W in a bracket became a bracket in the bracket */
    assert_null(compile("{\"pattern\":\"^[a\\\\W\\\\te++++++++++++++++++++]\"}"));
    assert_null(compile("{\"pattern\":\"[\\\\S\\\\D]\"}"));
    assert_null(compile("{\"pattern\":\"[[:alpha:]]\"}"));
    const char *fine[] = {"{\"pattern\":\"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$\"}",
                          "{\"pattern\":\"(a{30}){30}\"}", "{\"pattern\":\"^(a+b?)*[)(]{2,}$\"}",
                          "{\"pattern\":\"a)b+\"}", "{\"pattern\":\"^((a*)+)+$\"}",
                          "{\"pattern\":\"^a+?b*?c??d{2}?e{1,}?[+*]{1}\\\\{x$\"}",
                          "{\"pattern\":\"^[]a]+[^]b]+[a^]$\"}",
                          "{\"pattern\":\"[]\\\\d+++++++++++++++++]\"}", /* one bracket, as POSIX reads it */ "{\"pattern\":\"^[\\\\d\\\\w.]+$\"}",
                          NULL};
    for (int i = 0; fine[i]; i++) {
        jsonschema *s = compile(fine[i]);
        if (!s)
            fail_msg("%s should compile", fine[i]);
        jsonschema_free(s);
    }
}

/* Found by tests/fuzz/fuzz_jsonschema (UBSan): a length or count bound beyond the range of long
 * was converted to long, which is undefined; such a bound now means "no bound". */
static void test_huge_bounds(void **state)
{
    (void)state;
    jsonschema *s = compile("{\"minLength\":1e300,\"maxItems\":1e19,\"maxProperties\":9.3e18}");
    assert_non_null(s);
    expect(s, "\"x\"", false, "$", "minLength");
    expect(s, "[1,2,3]", true, NULL, NULL);
    expect(s, "{\"a\":1}", true, NULL, NULL);
    jsonschema_free(s);
}

static void test_project_schemas(void **state)
{
    (void)state;
    char err[512];
    jsonschema_registry *r;
    if (jsonschema_registry_load("schemas", &r, err, sizeof err) != OP_OK)
        fail_msg("schemas/ does not load: %s", err);
    const char *names[] = {"order.request", "cloudevent", "order.placed", "stock.reserved",
                           "payment.succeeded", "payment.failed", "order.confirmed",
                           "order.cancelled", "payment.refund_requested",
                           "order.cancel_requested", "reservation.expired", NULL};
    for (int i = 0; names[i]; i++)
        if (!jsonschema_registry_get(r, names[i]))
            fail_msg("schema %s missing", names[i]);
    assert_null(jsonschema_registry_get(r, "no.such"));
    const jsonschema *req = jsonschema_registry_get(r, "order.request");
    expect(req, "{\"customer_id\":\"c-42\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"SKU-1\","
                "\"quantity\":2,\"unit_price\":1999}],\"payment\":{\"token\":\"tok_ok\"},"
                "\"notify\":{\"email\":\"a@example.com\"}}", true, NULL, NULL);
    expect(req, "{\"customer_id\":\"c\",\"currency\":\"eur\",\"lines\":[{\"sku\":\"S\","
                "\"quantity\":1,\"unit_price\":1}],\"payment\":{\"token\":\"t\"}}",
           false, "$.currency", "pattern");
    expect(req, "{\"customer_id\":\"c\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"S\","
                "\"quantity\":-1,\"unit_price\":1}],\"payment\":{\"token\":\"t\"}}",
           false, "$.lines[0].quantity", "minimum");
    expect(req, "{\"customer_id\":\"c\",\"currency\":\"EUR\",\"lines\":[],"
                "\"payment\":{\"token\":\"t\"}}", false, "$.lines", "minItems");
    const jsonschema *cancelled = jsonschema_registry_get(r, "order.cancelled");
    expect(cancelled, "{\"order_id\":\"00000000-0000-4000-8000-000000000001\",\"reason\":\"bored\","
                      "\"customer_id\":\"c\",\"notify\":{}}", false, "$.reason", "enum");
    jsonschema_registry_free(r);
    assert_int_equal(jsonschema_registry_load("/nonexistent", &r, err, sizeof err), OP_ERR_PERMANENT);
    assert_null(r);
}

/* Strict integers (the registry's mode): only numbers written without fraction or exponent. The
 * standard mode (the official suite) keeps counting 2.0 as an integer. */
static void test_strict_integers(void **state)
{
    (void)state;
    json_t *doc = json_loads("{\"type\":\"integer\",\"minimum\":0}", 0, NULL);
    char err[256];
    jsonschema *strict, *standard;
    assert_int_equal(jsonschema_compile_flags(doc, JSONSCHEMA_STRICT_INTEGER, &strict, err, sizeof err),
                     OP_OK);
    assert_int_equal(jsonschema_compile(doc, &standard, err, sizeof err), OP_OK);
    json_decref(doc);
    assert_non_null(strict);
    assert_non_null(standard);
    const char *ints[] = {"0", "-0", "2", "100000000", "9223372036854775807"};
    const char *reals[] = {"2.0", "100000000.0", "1e8", "1E2", "1e0", "-0.0", "0.0", "2.00"};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        expect(strict, ints[i], true, NULL, NULL);
        expect(standard, ints[i], true, NULL, NULL);
    }
    for (size_t i = 0; i < sizeof reals / sizeof *reals; i++) {
        expect(strict, reals[i], false, "$", "type");
        expect(standard, reals[i], true, NULL, NULL);
    }
    expect(strict, "2.5", false, "$", "type");
    expect(standard, "2.5", false, "$", "type");
    /* the message says why */
    json_t *v = json_loads("2.0", JSON_DECODE_ANY, NULL);
    jsonschema_error e;
    assert_int_equal(jsonschema_validate(strict, v, &e), OP_ERR_PERMANENT);
    assert_non_null(strstr(e.message, "without a fraction or an exponent"));
    json_decref(v);
    jsonschema_free(strict);
    jsonschema_free(standard);

    /* "number" still takes both */
    doc = json_loads("{\"type\":\"number\"}", 0, NULL);
    assert_int_equal(jsonschema_compile_flags(doc, JSONSCHEMA_STRICT_INTEGER, &strict, err, sizeof err),
                     OP_OK);
    json_decref(doc);
    expect(strict, "2.0", true, NULL, NULL);
    expect(strict, "2", true, NULL, NULL);
    jsonschema_free(strict);

    /* the registry is strict: the order's prices and quantities */
    jsonschema_registry *r;
    assert_int_equal(jsonschema_registry_load("schemas", &r, err, sizeof err), OP_OK);
    expect(jsonschema_registry_get(r, "order.request"),
           "{\"customer_id\":\"c\",\"currency\":\"EUR\",\"payment\":{\"token\":\"t\"},"
           "\"lines\":[{\"sku\":\"s\",\"quantity\":1,\"unit_price\":2.0}]}",
           false, "$.lines[0].unit_price", "type");
    jsonschema_registry_free(r);
}

/* Paths and messages hold client property names and schema text: they are cut on a character
 * boundary, whatever the alignment, so they are always valid UTF-8. */
static void test_multibyte_paths(void **state)
{
    (void)state;
    jsonschema *s = compile("{\"type\":\"object\",\"additionalProperties\":false,"
                            "\"properties\":{\"a\":{\"type\":\"object\"}}}");
    jsonschema *open = compile("{\"properties\":{\"x\":{\"type\":\"string\"}},"
                               "\"additionalProperties\":{\"additionalProperties\":"
                               "{\"additionalProperties\":{\"type\":\"string\"}}}}");
    const char *chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (int c = 0; c < 3; c++)
        for (int pad = 0; pad < 4; pad++) {
            char key[1200] = "";
            for (int i = 0; i < pad; i++)
                strcat(key, "a");
            for (int i = 0; i < 300 / (c + 2); i++)
                strcat(key, chars[c]);
            json_t *doc = json_object();
            json_object_set_new(doc, key, json_integer(1));
            jsonschema_error e;
            assert_int_equal(jsonschema_validate(s, doc, &e), OP_ERR_PERMANENT);
            assert_true(utf8_valid(e.path, strlen(e.path)));
            assert_true(utf8_valid(e.message, strlen(e.message)));
            assert_true(strlen(e.path) > 240);
            json_decref(doc);
            /* nested: the second and third keys do not fit at all */
            doc = json_pack("{s{s{si}}}", key, key, key, 1);
            assert_non_null(doc);
            assert_int_equal(jsonschema_validate(open, doc, &e), OP_ERR_PERMANENT);
            assert_true(utf8_valid(e.path, strlen(e.path)));
            json_decref(doc);
        }
    jsonschema_free(s);
    jsonschema_free(open);
    /* a long multibyte pattern quoted in the message */
    char schema[1024] = "{\"pattern\":\"^";
    for (int i = 0; i < 100; i++)
        strcat(schema, "\xe2\x82\xac");
    strcat(schema, "$\"}");
    s = compile(schema);
    assert_non_null(s);
    json_t *v = json_string("x");
    jsonschema_error e;
    assert_int_equal(jsonschema_validate(s, v, &e), OP_ERR_PERMANENT);
    assert_true(utf8_valid(e.message, strlen(e.message)));
    json_decref(v);
    jsonschema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_and_keywords),
        cmocka_unit_test(test_refused_schemas),
        cmocka_unit_test(test_regex_blowup_refused),
        cmocka_unit_test(test_huge_bounds),
        cmocka_unit_test(test_project_schemas),
        cmocka_unit_test(test_strict_integers),
        cmocka_unit_test(test_multibyte_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
