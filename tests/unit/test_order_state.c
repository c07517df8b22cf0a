/* Unit tests for the order state machine (docs/design.md §2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "order_state.h"

static void test_allowed_transitions(void **state)
{
    (void)state;
    assert_true(order_state_can_move(ORDER_PENDING, ORDER_RESERVED));
    assert_true(order_state_can_move(ORDER_RESERVED, ORDER_PAID));
    assert_true(order_state_can_move(ORDER_PAID, ORDER_CONFIRMED));
    assert_true(order_state_can_move(ORDER_PENDING, ORDER_CANCELLED));
    assert_true(order_state_can_move(ORDER_RESERVED, ORDER_CANCELLED));
    assert_true(order_state_can_move(ORDER_PAID, ORDER_CANCELLED));
}

static void test_every_other_transition_refused(void **state)
{
    (void)state;
    int allowed = 0;
    for (int f = 0; f < ORDER_STATE_COUNT; f++)
        for (int t = 0; t < ORDER_STATE_COUNT; t++)
            allowed += order_state_can_move((order_state)f, (order_state)t);
    assert_int_equal(allowed, 6);
    assert_false(order_state_can_move(ORDER_CONFIRMED, ORDER_CANCELLED));
    assert_false(order_state_can_move(ORDER_CANCELLED, ORDER_PENDING));
    assert_false(order_state_can_move(ORDER_PENDING, ORDER_PAID));
    assert_false(order_state_can_move(ORDER_PENDING, ORDER_CONFIRMED));
    assert_false(order_state_can_move(ORDER_PAID, ORDER_PAID));
    assert_false(order_state_can_move(ORDER_STATE_INVALID, ORDER_PAID));
    assert_false(order_state_can_move(ORDER_PAID, (order_state)42));
}

static void test_names_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < ORDER_STATE_COUNT; i++)
        assert_int_equal(order_state_parse(order_state_name((order_state)i)), i);
    for (int i = 0; i < CANCEL_REASON_COUNT; i++)
        assert_int_equal(cancel_reason_parse(cancel_reason_name((cancel_reason)i)), i);
    assert_int_equal(order_state_parse("shipped"), ORDER_STATE_INVALID);
    assert_int_equal(order_state_parse(NULL), ORDER_STATE_INVALID);
    assert_int_equal(cancel_reason_parse("bored"), CANCEL_REASON_INVALID);
    assert_string_equal(order_state_name(ORDER_STATE_INVALID), "invalid");
}

static void test_terminal_states(void **state)
{
    (void)state;
    assert_true(order_state_is_terminal(ORDER_CONFIRMED));
    assert_true(order_state_is_terminal(ORDER_CANCELLED));
    assert_false(order_state_is_terminal(ORDER_PENDING));
    assert_false(order_state_is_terminal(ORDER_RESERVED));
    assert_false(order_state_is_terminal(ORDER_PAID));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_transitions),
        cmocka_unit_test(test_every_other_transition_refused),
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_terminal_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
