/* Runs the official JSON-Schema-Test-Suite (Debian package json-schema-test-suite, draft 7) for
 * every keyword lib/jsonschema claims, and prints the counts. A group whose schema uses a keyword
 * we do not support is counted as skipped (and named), never as passed; the files below are the
 * claimed keywords, so any skip or failure in them fails the test. Every invalid case must be
 * reported with a path starting at "$". Suite location: JSON_SCHEMA_TEST_SUITE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdbool.h>

#include "jsonschema.h"

static const char *const claimed[] = {
    "type.json", "properties.json", "patternProperties.json", "required.json",
    "additionalProperties.json", "items.json", "additionalItems.json", "enum.json", "const.json",
    "minimum.json", "maximum.json", "exclusiveMinimum.json", "exclusiveMaximum.json",
    "multipleOf.json", "minLength.json", "maxLength.json", "pattern.json", "minItems.json",
    "maxItems.json", "minProperties.json", "maxProperties.json", "boolean_schema.json",
    "optional/format/date-time.json", NULL,
};

static long total_passed, total_failed, total_skipped;

static void run_file(const char *name)
{
    const char *base = getenv("JSON_SCHEMA_TEST_SUITE");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s",
             base ? base : "/usr/share/json-schema-test-suite/tests/draft7", name);
    json_error_t je;
    json_t *groups = json_load_file(path, 0, &je);
    if (!groups)
        fail_msg("cannot read %s: %s", path, je.text);
    long passed = 0, failed = 0, skipped = 0;
    size_t gi;
    json_t *g;
    json_array_foreach(groups, gi, g) {
        char err[256];
        jsonschema *s;
        op_status st = jsonschema_compile(json_object_get(g, "schema"), &s, err, sizeof err);
        json_t *tests = json_object_get(g, "tests");
        if (st != OP_OK) {
            skipped += (long)json_array_size(tests);
            printf("  %s: skipped group '%s': %s\n", name,
                   json_string_value(json_object_get(g, "description")), err);
            continue;
        }
        size_t ti;
        json_t *t;
        json_array_foreach(tests, ti, t) {
            jsonschema_error e = {0};
            bool expect = json_is_true(json_object_get(t, "valid"));
            bool got = jsonschema_validate(s, json_object_get(t, "data"), &e) == OP_OK;
            bool ok = got == expect && (got || (e.path[0] == '$' && e.message[0]));
            if (ok) {
                passed++;
            } else {
                failed++;
                printf("  %s: FAILED '%s' / '%s' (expected %s)\n", name,
                       json_string_value(json_object_get(g, "description")),
                       json_string_value(json_object_get(t, "description")),
                       expect ? "valid" : "invalid");
            }
        }
        jsonschema_free(s);
    }
    json_decref(groups);
    total_passed += passed;
    total_failed += failed;
    total_skipped += skipped;
    assert_int_equal(failed, 0);
    assert_int_equal(skipped, 0);
}

#define SUITE_TEST(i)                                                                      \
    static void test_file_##i(void **state)                                                \
    {                                                                                      \
        (void)state;                                                                       \
        run_file(claimed[i]);                                                              \
    }
SUITE_TEST(0) SUITE_TEST(1) SUITE_TEST(2) SUITE_TEST(3) SUITE_TEST(4) SUITE_TEST(5)
SUITE_TEST(6) SUITE_TEST(7) SUITE_TEST(8) SUITE_TEST(9) SUITE_TEST(10) SUITE_TEST(11)
SUITE_TEST(12) SUITE_TEST(13) SUITE_TEST(14) SUITE_TEST(15) SUITE_TEST(16) SUITE_TEST(17)
SUITE_TEST(18) SUITE_TEST(19) SUITE_TEST(20) SUITE_TEST(21) SUITE_TEST(22)

static int print_totals(void **state)
{
    (void)state;
    printf("jsonschema suite: %ld cases passed, %ld failed, %ld skipped (unsupported keyword)\n",
           total_passed, total_failed, total_skipped);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_0), cmocka_unit_test(test_file_1), cmocka_unit_test(test_file_2),
        cmocka_unit_test(test_file_3), cmocka_unit_test(test_file_4), cmocka_unit_test(test_file_5),
        cmocka_unit_test(test_file_6), cmocka_unit_test(test_file_7), cmocka_unit_test(test_file_8),
        cmocka_unit_test(test_file_9), cmocka_unit_test(test_file_10), cmocka_unit_test(test_file_11),
        cmocka_unit_test(test_file_12), cmocka_unit_test(test_file_13), cmocka_unit_test(test_file_14),
        cmocka_unit_test(test_file_15), cmocka_unit_test(test_file_16), cmocka_unit_test(test_file_17),
        cmocka_unit_test(test_file_18), cmocka_unit_test(test_file_19), cmocka_unit_test(test_file_20),
        cmocka_unit_test(test_file_21), cmocka_unit_test(test_file_22),
    };
    return cmocka_run_group_tests(tests, NULL, print_totals);
}
