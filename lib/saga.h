/* saga: the order-state and stock operations the workers share, inside their transactions.
 *
 * A state change in C goes through saga_move, which asks order_state_can_move first and refuses
 * (logs, changes nothing) what docs/design.md §2 does not allow, then records the transition with its
 * time and the deadline by which the order must leave its new state. The batch steps of
 * sql/functions/ make the same moves set-based (pending -> reserved / cancelled,
 * reserved -> paid, paid -> confirmed); the orders table's transition trigger checks both. Stock
 * moves between available, reserved and sold only here and in those functions, so inventory
 * always adds up.
 */
#ifndef ORDERPIPE_SAGA_H
#define ORDERPIPE_SAGA_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "log.h"
#include "order_state.h"
#include "status.h"

/* Room for a text field the schemas bound to 64 characters: up to 4 bytes each in UTF-8. A
 * smaller buffer would cut a multibyte id in half, and jansson would refuse the events built
 * from it. */
#define SAGA_ID_TEXT_MAX (64 * 4 + 1)

typedef struct saga_order {
    char id[40];
    order_state state;
    long long total;
    char currency[4];
    char customer_id[SAGA_ID_TEXT_MAX];
    char client_id[SAGA_ID_TEXT_MAX]; /* the API client that placed it: its owner */
    json_t *notify;          /* owned; saga_order_clear releases it */
} saga_order;

/* True when `client_id` (a requester named by an event) is the order's owner. */
bool saga_order_owned_by(const saga_order *o, const char *client_id);

/* Locks the order row (FOR UPDATE) and reads it. OP_OK, OP_NOT_FOUND when there is no such
 * order (not recorded yet, or never), or an error. On OP_OK the caller owns out->notify
 * (saga_order_clear); otherwise out holds nothing to release. */
op_status saga_order_load(db *d, const char *order_id, saga_order *out);
void saga_order_clear(saga_order *o);

/* Moves o from its state to `to` (reason for cancelled, else NULL), with a deadline
 * `deadline_s` seconds from now for non-terminal states (<= 0: none). OP_ERR_PERMANENT when the
 * transition is not allowed (logged with lc, nothing changed). */
op_status saga_move(db *d, saga_order *o, order_state to, const char *reason, long deadline_s,
                    const log_ctx *lc);

/* Puts the order's held reservations back to available. */
op_status saga_release_stock(db *d, const char *order_id);

/* Locks, in SKU order, the inventory rows of the given SKUs (a JSON array text) and those held
 * by the given orders (a Postgres uuid[] literal); either may be NULL. Called first in a batch
 * so concurrent batches take their locks in one global order and never deadlock. */
op_status saga_lock_skus(db *d, const char *skus_json, const char *order_ids);

/* The data of order.cancelled / order.confirmed for o (new references). */
json_t *saga_cancelled_data(const saga_order *o, const char *reason);
json_t *saga_confirmed_data(const saga_order *o);

#endif
