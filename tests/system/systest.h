/* systest: the TAP-style check of the C system tests (tests/system/test_*.c, run by tests/run as
 * build/tests/systest_*): "ok - ..." or "not ok - ..." per check, counted in `failures`, which
 * the test's main turns into its exit status. */
#ifndef ORDERPIPE_SYSTEST_H
#define ORDERPIPE_SYSTEST_H

#include <stdio.h>

static int failures;
#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            printf("ok - ");                                                               \
        } else {                                                                           \
            printf("not ok - ");                                                           \
            failures++;                                                                    \
        }                                                                                  \
        printf(__VA_ARGS__);                                                               \
        printf("\n");                                                                      \
        fflush(stdout);                                                                    \
    } while (0)

#endif
