/* wire: the AMQP header names and dead-letter reason codes the programs exchange.
 *
 * A header one program writes is read by another (a worker writes x-dead-reason, the replay tool
 * filters on it; a retry tier carries x-attempt back to the worker), so each name is spelt once,
 * here. The reason codes are what operators filter dead letters by (orderpipe-replay --reason)
 * and what docs/operations.md lists; a handler's own codes (worker_msg_refuse) are its program's.
 */
#ifndef ORDERPIPE_WIRE_H
#define ORDERPIPE_WIRE_H

/* W3C trace context of the event, copied from its envelope so tracing needs no body parse. */
#define WIRE_HDR_TRACEPARENT "traceparent"

/* Written on every failed delivery republished to a retry tier or the DLQ. */
#define WIRE_HDR_ATTEMPT "x-attempt"                   /* integer: the attempt it arrives as */
#define WIRE_HDR_ORIGINAL_ROUTING_KEY "x-original-routing-key"
#define WIRE_HDR_LAST_ERROR "x-last-error"             /* why the last attempt failed */

/* Written on a dead letter only. */
#define WIRE_HDR_DEAD_REASON "x-dead-reason"           /* one of WIRE_REASON_* or a handler's */
#define WIRE_HDR_ATTEMPTS "x-attempts"                 /* integer: attempts spent */
#define WIRE_HDR_ORIGINAL_QUEUE "x-original-queue"     /* the work queue it came from */
#define WIRE_HDR_DEAD_AT "x-dead-at"                   /* RFC 3339 UTC time */

/* Marks of the operator tools, so a requeued or redriven message is recognisable. */
#define WIRE_HDR_REPLAYED "x-replayed"
#define WIRE_HDR_REDRIVEN "x-redriven"

/* The dead-letter reasons of the worker engine (x-dead-reason). */
#define WIRE_REASON_INVALID_MESSAGE "invalid_message"     /* not a CloudEvent within bounds */
#define WIRE_REASON_UNKNOWN_TYPE "unknown_type"           /* no route or no schema for its type */
#define WIRE_REASON_SCHEMA_VIOLATION "schema_violation"   /* data does not match its schema */
#define WIRE_REASON_RETRIES_EXHAUSTED "retries_exhausted" /* transient failures past the tiers */
#define WIRE_REASON_HANDLER_REFUSED "handler_refused"     /* a handler's permanent failure */

#endif
