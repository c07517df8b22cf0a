/* fake-provider internals shared by its three modules:
 *   fake_provider.c    the HTTP API (charges, queries, voids, refunds, controls, stats) and main
 *   fake_notify.c      signed payment notifications, with loss, copies, forgeries and reordering
 *   fake_settlement.c  the settlement CSV of a day, with deliberate discrepancies on request
 * The books are one table of bookings by Idempotency-Key, also chained in booking order for the
 * settlement file. Bookings are never freed: the program lives for one test. */
#ifndef FAKE_PROVIDER_H
#define FAKE_PROVIDER_H

#include <event2/event.h>
#include <stdio.h>
#include <time.h>

typedef enum { CH_PENDING, CH_SUCCEEDED, CH_FAILED, CH_VOIDED, CH_DECLINED } charge_state;

/* How a pending charge ends: after the notify delay (succeeds or fails), never, or after late_ms. */
typedef enum { END_SUCCEED, END_FAIL, END_NEVER, END_LATE } pending_end;

typedef struct booking {
    char *key;         /* Idempotency-Key; a charge's is its charge key */
    char *id;          /* the provider's reference; NULL until booked (tok_flaky's first tries) */
    int is_refund;
    char *charge_key;  /* a refund: the charge it refunds; a charge: its own key */
    char *order_id;
    char currency[4];
    long long amount;  /* a charge: what it charges; a refund: what it refunded */
    long long refunded; /* a charge: what has been refunded of it */
    int attempts;
    charge_state state;
    pending_end end;
    char *message;     /* why it was declined or failed, when not the usual message */
    time_t settled_at; /* a charge: when it succeeded; a refund: when it was booked; 0 otherwise */
    struct booking *next;  /* hash chain */
    struct booking *later; /* the next booking in booking order */
} booking;

/* Run-time controls, set with POST /_control?name=value&... */
typedef struct fp_controls {
    long stall_ms;        /* answers are sent this late (the booking is made at once) */
    int fail_percent;     /* answers 500 without booking */
    long notify_delay_ms; /* a pending charge completes (and is notified) this long after it */
    long late_ms;         /* when tok_pending_late succeeds */
    int pending_percent;  /* share of ordinary charges answered pending */
    int void_refuse;      /* tok_pending_late's void answers 409 "processing" while pending */
    int lose_percent, dup_percent, forge_percent;
    int reorder;          /* hold notifications and send each batch in reverse */
    int reorder_batch;    /* a held batch is sent when it has this many (or after 5 s) */
    int discrepancies;    /* the settlement file carries deliberate differences */
} fp_controls;

struct fake_provider {
    struct event_base *base;
    FILE *ledger;
    booking *first, *last; /* booking order */
    fp_controls ctl;
    long next_id;
    unsigned seed;
    long queries, voids_voided, voids_refused, voids_unknown;
};
extern struct fake_provider fp;

/* True with probability percent/100 (the fake's own seeded generator: runs repeat). */
int fp_chance(int percent);

/* Starts notifications to url, signed with secret (both copied). Returns 0, or -1 if the URL is
 * not http://HOST[:PORT][/PATH]. Without a call, completed charges are not notified. */
int notify_init(const char *url, const char *secret);

/* A pending charge has completed (succeeded or failed): notify it, as the controls say. */
void notify_completed(const booking *b);

/* The notification counters as a new JSON object (caller owns it; a json_t *). */
void *notify_stats(void);

/* Drops held notifications and frees what notify_init kept. */
void notify_shutdown(void);

/* The settlement CSV of the UTC day `date` (YYYY-MM-DD) in a new string the caller frees, or NULL
 * if date is not a valid date. */
char *settlement_csv(const char *date);

#endif
