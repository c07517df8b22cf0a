/* intake_notify: POST /v1/payment-notifications/{channel}, the signed asynchronous results of the
 * payment channels (docs/design.md §4).
 *
 * No API key: the channel's signature (signature.h) under one of its secrets is what admits a
 * notification, and it is checked before the body is parsed, so an unsigned body costs one HMAC
 * per secret and nothing else. Checks in order: channel (404), content type (415), size (413),
 * signature (401), JSON and schema (400), charge key (422), broker (503); then payment.notified
 * is published and the answer, 200 {"status":"received"}, waits for the broker's confirm. No
 * error path publishes anything. A repeated event_id publishes the same message id again, which
 * the payment worker's inbox drops, and is answered 200 like the first.
 *
 * orderpipe_intake_payment_notifications_total{channel,result} counts each answer: accepted,
 * bad_signature, stale, invalid, unknown_channel, unavailable (503). A channel label is always a
 * configured channel (INTAKE_NOTIFY_UNKNOWN otherwise), so a caller cannot grow the series.
 */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "intake.h"
#include "log.h"
#include "payment_notification.h"
#include "signature.h"

#define INTAKE_NOTIFY_UNKNOWN "_unknown" /* not a method name: no channel can be called so */

static void intake_notify_count(intake *in, const char *channel, const char *result)
{
    const char *labels[] = {channel, result};
    metrics_add(in->m.notifications, labels, 1);
}

static void intake_notify_unavailable(intake *in, struct evhttp_request *req, const char *channel,
                                      const char *why)
{
    intake_notify_count(in, channel, "unavailable");
    intake_reply_error(in, req, 503, "broker_unavailable", why, NULL, INTAKE_NOTIFY_ROUTE);
}

/* The publish's confirm settled it; arg is the channel's name (lives as long as the intake). */
static void intake_notify_confirmed(intake *in, struct evhttp_request *req, bool ok,
                                    const char *why, void *arg)
{
    const char *channel = arg;
    if (!ok) {
        log_warn(NULL, "payment notification of channel %s not accepted: %s", channel, why);
        intake_notify_unavailable(in, req, channel,
                                  "the broker did not confirm the notification; retry later");
        return;
    }
    intake_notify_count(in, channel, "accepted");
    json_t *body = json_pack("{ss}", "status", "received");
    intake_reply_json(in, req, 200, body, INTAKE_NOTIFY_ROUTE);
    json_decref(body);
}

/* Answers 401 unless the signature of body is the channel's and fresh. */
static bool intake_notify_signed(intake *in, struct evhttp_request *req, const payment_channel *ch,
                                 const char *body, size_t len)
{
    const char *header =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Orderpipe-Signature");
    signature_verdict v;
    if (signature_verify(header, body, len, (const char *const *)ch->secrets, ch->nsecrets,
                         (int64_t)time(NULL), in->cfg.notification_tolerance_s, &v) != OP_OK) {
        log_error(NULL, "cannot compute an HMAC for channel %s; answering 500", ch->name);
        intake_reply_error(in, req, 500, "internal_error", "the signature could not be checked",
                           NULL, INTAKE_NOTIFY_ROUTE);
        return false;
    }
    if (v == SIGNATURE_VALID)
        return true;
    if (v == SIGNATURE_STALE) {
        char msg[160];
        snprintf(msg, sizeof msg, "the signature's timestamp t is more than %ld s from now; "
                                  "sign again with the current time", in->cfg.notification_tolerance_s);
        intake_notify_count(in, ch->name, "stale");
        intake_reply_error(in, req, 401, "stale_signature", msg, "Orderpipe-Signature",
                           INTAKE_NOTIFY_ROUTE);
        return false;
    }
    intake_notify_count(in, ch->name, "bad_signature");
    log_info(NULL, "payment notification of channel %s refused: signature %s", ch->name,
             signature_verdict_name(v));
    intake_reply_error(in, req, 401, "bad_signature",
                       v == SIGNATURE_MALFORMED
                           ? "an Orderpipe-Signature header t=<unix seconds>,v1=<hex HMAC-SHA256> "
                             "is required"
                           : "the signature does not match the channel's secret",
                       "Orderpipe-Signature", INTAKE_NOTIFY_ROUTE);
    return false;
}

void intake_notify_post(intake *in, struct evhttp_request *req, const char *name)
{
    const char *route = INTAKE_NOTIFY_ROUTE;
    const payment_channel *ch = payment_channels_find(&in->channels, name);
    if (!ch || ch->nsecrets == 0) {
        intake_notify_count(in, INTAKE_NOTIFY_UNKNOWN, "unknown_channel");
        intake_reply_error(in, req, 404, "unknown_channel",
                           "no payment channel of that name takes notifications here", "channel",
                           route);
        return;
    }
    if (!intake_json_content_type(req)) {
        intake_notify_count(in, ch->name, "invalid");
        intake_reply_error(in, req, 415, "unsupported_media_type",
                           "Content-Type must be application/json", NULL, route);
        return;
    }
    size_t len;
    char *body = intake_body(in, req, PAYMENT_NOTIFICATION_MAX_BODY, &len, route);
    if (!body) {
        intake_notify_count(in, ch->name, "invalid");
        return;
    }
    if (!intake_notify_signed(in, req, ch, body, len)) {
        free(body);
        return;
    }
    json_t *ev;
    char order_id[UUID_STR_LEN];
    order_request_error err;
    const char *tp = evhttp_find_header(evhttp_request_get_input_headers(req), "traceparent");
    op_status built = payment_notification_build(body, len, in->notification_schema, ch->name, tp,
                                                 &ev, order_id, &err);
    free(body);
    if (built != OP_OK) {
        intake_notify_count(in, ch->name, "invalid");
        intake_reply_error(in, req, err.http_status, err.code, err.message, err.field, route);
        return;
    }
    /* Checked last: a notification that can never be accepted is told so (4xx, final) even
     * while the broker is away, rather than asked to come back (503). */
    const char *tpe = json_string_value(json_object_get(ev, "traceparent"));
    if (intake_publish_cb(in, req, ev, "payment.notified", order_id, tpe, intake_notify_confirmed,
                          (void *)ch->name) != 0)
        intake_notify_unavailable(in, req, ch->name,
                                  "the broker is unavailable; nothing was accepted, retry later");
    else
        log_info(&(log_ctx){.order_id = order_id,
                            .message_id = json_string_value(json_object_get(ev, "id"))},
                 "payment notification of channel %s published", ch->name);
    json_decref(ev);
}

int intake_notify_load(intake *in)
{
    char err[320];
    const intake_config *c = &in->cfg;
    payment_channels *pc = &in->channels;
    op_status st = payment_channels_parse(pc, c->payment_channels, c->payment_default_method,
                                          config_env_str("PAYMENT_URL", NULL), err, sizeof err);
    if (st == OP_OK)
        st = payment_channels_load_secrets(pc, config_env_str("PAYMENT_CHANNEL_SECRETS", NULL),
                                           c->payment_secrets_file, err, sizeof err);
    if (st != OP_OK) {
        log_error(NULL, "%s", err);
        payment_channels_free(pc);
        return -1;
    }
    for (size_t i = 0; i < pc->n; i++)
        if (pc->v[i].nsecrets == 0)
            log_info(NULL, "payment channel %s has no secret (PAYMENT_CHANNEL_SECRETS): its "
                           "notifications are refused", pc->v[i].name);
    return 0;
}
