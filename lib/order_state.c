/* order_state: the transition table of docs/design.md §2 (see order_state.h). */
#include "order_state.h"

#include <string.h>

static const char *const order_state_names[ORDER_STATE_COUNT] = {
    "pending", "reserved", "paid", "confirmed", "cancelled",
};

static const char *const cancel_reason_names[CANCEL_REASON_COUNT] = {
    "out_of_stock", "payment_declined", "reservation_expired", "customer_cancelled",
    "payment_timeout",
};

/* allowed[from][to] */
static const bool order_state_allowed[ORDER_STATE_COUNT][ORDER_STATE_COUNT] = {
    [ORDER_PENDING] = {[ORDER_RESERVED] = true, [ORDER_CANCELLED] = true},
    [ORDER_RESERVED] = {[ORDER_PAID] = true, [ORDER_CANCELLED] = true},
    [ORDER_PAID] = {[ORDER_CONFIRMED] = true, [ORDER_CANCELLED] = true},
};

const char *order_state_name(order_state s)
{
    return (s >= 0 && s < ORDER_STATE_COUNT) ? order_state_names[s] : "invalid";
}

order_state order_state_parse(const char *name)
{
    for (int i = 0; name && i < ORDER_STATE_COUNT; i++)
        if (strcmp(name, order_state_names[i]) == 0)
            return (order_state)i;
    return ORDER_STATE_INVALID;
}

const char *cancel_reason_name(cancel_reason r)
{
    return (r >= 0 && r < CANCEL_REASON_COUNT) ? cancel_reason_names[r] : "invalid";
}

cancel_reason cancel_reason_parse(const char *name)
{
    for (int i = 0; name && i < CANCEL_REASON_COUNT; i++)
        if (strcmp(name, cancel_reason_names[i]) == 0)
            return (cancel_reason)i;
    return CANCEL_REASON_INVALID;
}

bool order_state_is_terminal(order_state s)
{
    return s == ORDER_CONFIRMED || s == ORDER_CANCELLED;
}

bool order_state_can_move(order_state from, order_state to)
{
    if (from < 0 || from >= ORDER_STATE_COUNT || to < 0 || to >= ORDER_STATE_COUNT)
        return false;
    return order_state_allowed[from][to];
}
