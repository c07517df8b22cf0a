/* order_state: the order state machine of docs/design.md §2.
 *
 * pending -> reserved -> paid -> confirmed; pending|reserved|paid -> cancelled(reason).
 * confirmed and cancelled are terminal. Workers ask order_state_can_move before every update and
 * refuse (log, never apply) a transition that is not on the list; the database trigger
 * orders_guard_transition is the backstop behind this. */
#ifndef ORDERPIPE_ORDER_STATE_H
#define ORDERPIPE_ORDER_STATE_H

#include <stdbool.h>

typedef enum {
    ORDER_PENDING = 0,
    ORDER_RESERVED,
    ORDER_PAID,
    ORDER_CONFIRMED,
    ORDER_CANCELLED,
    ORDER_STATE_COUNT,
    ORDER_STATE_INVALID = -1,
} order_state;

typedef enum {
    CANCEL_OUT_OF_STOCK = 0,
    CANCEL_PAYMENT_DECLINED,
    CANCEL_RESERVATION_EXPIRED,
    CANCEL_CUSTOMER_CANCELLED,
    CANCEL_PAYMENT_TIMEOUT, /* a payment pending at the provider never completed */
    CANCEL_REASON_COUNT,
    CANCEL_REASON_INVALID = -1,
} cancel_reason;

/* Text forms as stored in orders.status / orders.cancel_reason. */
const char *order_state_name(order_state s);
order_state order_state_parse(const char *name);
const char *cancel_reason_name(cancel_reason r);
cancel_reason cancel_reason_parse(const char *name);

bool order_state_is_terminal(order_state s);

/* True if `from` -> `to` is a transition of docs/design.md §2. Staying in the same state is not a
 * transition (false): callers treat it as "already done". */
bool order_state_can_move(order_state from, order_state to);

#endif
