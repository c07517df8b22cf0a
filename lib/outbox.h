/* outbox: events written in the business transaction, published later by a relay.
 *
 * outbox_write adds a row in the caller's transaction. The relay claims unpublished rows in id
 * order with FOR UPDATE SKIP LOCKED (so several relays never publish the same row at once),
 * skipping rows of an order whose earlier events are still unpublished (so one order's events
 * leave in the order they were written), publishes them with pipelined confirms, marks them
 * published and commits. A relay killed at any point loses nothing: unmarked rows are claimed
 * again (and may go out twice; consumers' inboxes make that harmless).
 *
 * Memory: outbox_relay_new allocates, outbox_relay_free frees; db and broker stay the caller's.
 */
#ifndef ORDERPIPE_OUTBOX_H
#define ORDERPIPE_OUTBOX_H

#include <jansson.h>

#include "broker.h"
#include "db.h"

/* Inside the caller's transaction: queues `event` (a CloudEvent, see event.h; borrowed) for
 * publishing with `routing_key` (the event type). The message id is the event's "id"; the
 * aggregate is its "orderid". `headers` (may be NULL; borrowed) become AMQP headers, e.g.
 * traceparent. */
op_status outbox_write(db *d, const char *routing_key, json_t *event, json_t *headers);

/* The same in two steps, so a batch's events go in one statement: outbox_row makes the row
 * (a new reference; NULL if the event lacks "id" or "orderid" or memory ran out; event and
 * headers borrowed), outbox_write_rows inserts a JSON array of rows in array order. */
json_t *outbox_row(const char *routing_key, json_t *event, json_t *headers);
op_status outbox_write_rows(db *d, json_t *rows);

typedef struct outbox_relay outbox_relay;

/* `b` must have confirms enabled. batch: rows per claim (0: 200). */
op_status outbox_relay_new(outbox_relay **out, db *d, broker *b, int batch);
void outbox_relay_free(outbox_relay *r);

/* Publishes one batch: claim, publish, wait for confirms, mark, commit. *published (may be NULL)
 * gets the number of rows marked. OP_OK with 0 published means nothing was waiting. */
op_status outbox_relay_flush(outbox_relay *r, int *published);

/* The writer's fast path, right after its transaction committed `rows` (outbox_row objects):
 * the same claim, publish and mark, for those rows only. A row a relay claimed first is left to
 * it, so nothing goes out twice; the mark's commit does not wait for the disk (a lost mark only
 * makes the relay publish the row again). `consumed` (a JSON array of message ids, may be NULL;
 * borrowed) are the events the writer consumed to write these rows: they went out already, even
 * while their own publisher has not marked them yet, so they do not hold back a later event of
 * their order. *published says how many went out. */
op_status outbox_relay_publish_written(outbox_relay *r, json_t *rows, json_t *consumed,
                                       int *published);

/* LISTEN on the outbox channel (once per connection) so the caller can wait on db_conn's socket
 * and call outbox_relay_flush when notified; polling stays as a fallback. */
op_status outbox_listen(db *d);
/* Consumes pending notifications; returns how many arrived. */
int outbox_drain_notifications(db *d);

/* Unpublished rows and the age in seconds of the oldest (0 when none), for metrics. */
op_status outbox_backlog(db *d, long *rows, double *oldest_age_s);

/* Deletes up to `batch` published rows older than `retention_s`. */
op_status outbox_prune(db *d, long retention_s, int batch, long *deleted);

/* Test hook: when env OUTBOX_RELAY_CRASH is "after_publish" or "before_publish", the relay
 * _exit(137)s at that point of its first batch, to prove a killed relay loses nothing. */

#endif
