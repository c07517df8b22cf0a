/* cloudevent: CloudEvents 1.0 envelopes and their AMQP binding (see cloudevent.h). */
#include "cloudevent.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "utf8.h"
#include "uuid.h"

void cloudevent_time_now(char out[32])
{
    clock_utc_text(out);
}

json_t *cloudevent_new(const char *type, const char *source, const char *order_id, json_t *data,
                  const char *traceparent)
{
    char id[UUID_STR_LEN], now[32];
    if (uuid_v4(id) != OP_OK) {
        json_decref(data);
        return NULL;
    }
    cloudevent_time_now(now);
    char schema[128];
    snprintf(schema, sizeof schema, CLOUDEVENT_SCHEMA_PREFIX "%s", type);
    json_t *ev = json_pack("{ss ss ss ss ss ss ss ss ss}", "specversion", "1.0", "id", id, "source",
                           source, "type", type, "time", now, "subject", order_id,
                           "datacontenttype", "application/json", "dataschema", schema, "orderid",
                           order_id);
    if (!ev) {
        json_decref(data);
        return NULL;
    }
    if ((traceparent && *traceparent &&
         json_object_set_new(ev, "traceparent", json_string(traceparent)) != 0) ||
        json_object_set_new(ev, "data", data ? data : json_object()) != 0) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

/* Formats the reason into err: it quotes the message, so it is cut on a character boundary and
 * stays valid UTF-8 (it ends up in a dead-letter header and a log line). */
static void cloudevent_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cloudevent_fail(char *err, size_t errlen, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_copy(err, errlen, msg);
}

static const char *cloudevent_required_string(json_t *root, const char *key, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (!v) {
        snprintf(err, errlen, "missing attribute '%s'", key);
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(err, errlen, "attribute '%s' must be a non-empty string", key);
        return NULL;
    }
    return json_string_value(v);
}

static bool cloudevent_traceparent_valid(const char *tp)
{
    /* 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero */
    if (strlen(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
        return false;
    bool trace_nonzero = false, span_nonzero = false;
    for (int i = 0; i < 55; i++) {
        if (i == 2 || i == 35 || i == 52)
            continue;
        char c = tp[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        if (c != '0' && i > 2 && i < 35) trace_nonzero = true;
        if (c != '0' && i > 35 && i < 52) span_nonzero = true;
    }
    return tp[0] == '0' && tp[1] == '0' && trace_nonzero && span_nonzero;
}

/* The attribute `key`, or NULL when absent; false (err filled) when present but not a non-empty
 * string. */
static bool cloudevent_optional_string(json_t *root, const char *key, const char **out, char *err,
                                       size_t errlen)
{
    json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v)
        return true;
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(err, errlen, "attribute '%s' must be a non-empty string", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* Compares a media type, parameters aside, with `want`; a charset parameter must be utf-8. */
static bool cloudevent_media_type_is(const char *ct, const char *want)
{
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n != strlen(want) || strncasecmp(ct, want, n) != 0)
        return false;
    for (const char *p = strchr(ct, ';'); p; p = strchr(p + 1, ';')) {
        const char *q = p + 1 + strspn(p + 1, " \t");
        if (strncasecmp(q, "charset=", 8) != 0)
            continue;
        q += 8;
        if (*q == '"')
            q++;
        if (strncasecmp(q, "utf-8", 5) != 0 || (q[5] && strchr("\"; \t", q[5]) == NULL))
            return false;
    }
    return true;
}

/* Checks a loaded envelope and fills *out from it; takes root either way. */
static op_status cloudevent_check(json_t *root, cloudevent_view *out, char *err, size_t errlen)
{
    const char *subject, *dct;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "an event must be a JSON object");
        goto bad;
    }
    const char *sv = cloudevent_required_string(root, "specversion", err, errlen);
    if (!sv)
        goto bad;
    if (strcmp(sv, "1.0") != 0) {
        char q[64];
        utf8_copy(q, sizeof q, sv);
        cloudevent_fail(err, errlen, "unsupported specversion '%s' (expected 1.0)", q);
        goto bad;
    }
    if (!(out->id = cloudevent_required_string(root, "id", err, errlen)) ||
        !(out->source = cloudevent_required_string(root, "source", err, errlen)) ||
        !(out->type = cloudevent_required_string(root, "type", err, errlen)) ||
        !(out->time = cloudevent_required_string(root, "time", err, errlen)) ||
        !cloudevent_optional_string(root, "orderid", &out->order_id, err, errlen) ||
        !cloudevent_optional_string(root, "subject", &subject, err, errlen) ||
        !cloudevent_optional_string(root, "datacontenttype", &dct, err, errlen))
        goto bad;
    if (!out->order_id)
        out->order_id = subject;
    if (!out->order_id) {
        snprintf(err, errlen, "missing attribute 'orderid' (or 'subject'): the order id");
        goto bad;
    }
    /* Handlers cast it to uuid for the whole batch: one bad id would fail every message in it. */
    if (!uuid_valid(out->order_id)) {
        snprintf(err, errlen, "attribute 'orderid' must be a UUID");
        goto bad;
    }
    if (subject && strcmp(subject, out->order_id) != 0) {
        snprintf(err, errlen, "attributes 'subject' and 'orderid' name different orders");
        goto bad;
    }
    if (dct && !cloudevent_media_type_is(dct, "application/json")) {
        snprintf(err, errlen, "attribute 'datacontenttype' must be application/json");
        goto bad;
    }
    json_t *tp = json_object_get(root, "traceparent");
    if (tp) {
        if (!json_is_string(tp) || !cloudevent_traceparent_valid(json_string_value(tp))) {
            snprintf(err, errlen, "attribute 'traceparent' is not a W3C traceparent");
            goto bad;
        }
        out->traceparent = json_string_value(tp);
    }
    out->data = json_object_get(root, "data");
    if (!out->data) {
        snprintf(err, errlen, "missing attribute 'data'");
        goto bad;
    }
    if (!json_is_object(out->data)) {
        snprintf(err, errlen, "attribute 'data' must be an object");
        goto bad;
    }
    out->root = root;
    return OP_OK;
bad:
    json_decref(root);
    memset(out, 0, sizeof *out);
    return OP_ERR_PERMANENT;
}

static json_t *cloudevent_load(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char text[sizeof je.text];
        utf8_copy(text, sizeof text, je.text);
        cloudevent_fail(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column,
                        text);
    }
    return root;
}

op_status cloudevent_parse(const char *body, size_t len, cloudevent_view *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *root = cloudevent_load(body, len, err, errlen);
    return root ? cloudevent_check(root, out, err, errlen) : OP_ERR_PERMANENT;
}

/* An attribute name as the spec allows it: lowercase letters and digits, 1 to 20 of them. */
static bool cloudevent_attribute_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')))
            return false;
    return true;
}

/* Binary mode: the envelope from the "cloudEvents:" (or "cloudEvents_") headers, the body as
 * data. Returns the root, or NULL with err filled. */
static json_t *cloudevent_from_binary(const char *content_type, json_t *headers, const char *body,
                                      size_t len, char *err, size_t errlen)
{
    json_t *root = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(headers, key, v) {
        if (strncmp(key, "cloudEvents:", 12) != 0 && strncmp(key, "cloudEvents_", 12) != 0)
            continue;
        const char *name = key + 12;
        char q[64];
        utf8_copy(q, sizeof q, name);
        if (!cloudevent_attribute_name_valid(name) || strcmp(name, "data") == 0) {
            cloudevent_fail(err, errlen, "header '%.12s%s' does not name an attribute", key, q);
            goto bad;
        }
        if (!json_is_string(v) || !utf8_valid(json_string_value(v), json_string_length(v))) {
            cloudevent_fail(err, errlen, "header '%.12s%s' must be a UTF-8 string", key, name);
            goto bad;
        }
        if (json_object_get(root, name)) {
            cloudevent_fail(err, errlen, "attribute '%s' is given twice", name);
            goto bad;
        }
        json_object_set(root, name, v);
    }
    if (json_object_size(root) == 0) {
        snprintf(err, errlen, "content type application/json without the 'cloudEvents:' headers "
                              "of a binary-mode event");
        goto bad;
    }
    if (json_object_get(root, "datacontenttype")) {
        snprintf(err, errlen, "in binary mode the content type is the datacontenttype; no "
                              "'cloudEvents:datacontenttype' header");
        goto bad;
    }
    json_t *data = cloudevent_load(body, len, err, errlen);
    if (!data)
        goto bad;
    json_object_set_new(root, "data", data);
    json_object_set_new(root, "datacontenttype", json_string(content_type));
    return root;
bad:
    json_decref(root);
    return NULL;
}

op_status cloudevent_parse_message(const char *content_type, json_t *headers, const char *body,
                                   size_t len, cloudevent_view *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (content_type && cloudevent_media_type_is(content_type, CLOUDEVENT_STRUCTURED_TYPE))
        return cloudevent_parse(body, len, out, err, errlen);
    if (content_type && cloudevent_media_type_is(content_type, "application/json") &&
        utf8_valid(content_type, strlen(content_type))) {
        json_t *root = cloudevent_from_binary(content_type, headers, body, len, err, errlen);
        return root ? cloudevent_check(root, out, err, errlen) : OP_ERR_PERMANENT;
    }
    char q[96];
    utf8_copy(q, sizeof q, content_type ? content_type : "");
    if (content_type)
        cloudevent_fail(err, errlen, "unsupported content type '%s' (expected %s, or "
                        "application/json with the attributes in headers)", q,
                        CLOUDEVENT_STRUCTURED_TYPE);
    else
        snprintf(err, errlen, "no content type (expected %s)", CLOUDEVENT_STRUCTURED_TYPE);
    return OP_ERR_PERMANENT;
}

void cloudevent_view_free(cloudevent_view *v)
{
    if (v && v->root)
        json_decref(v->root);
    if (v)
        memset(v, 0, sizeof *v);
}

static void cloudevent_random_hex(char *out, size_t nbytes)
{
    unsigned char b[16];
    static const char hex[] = "0123456789abcdef";
    for (;;) {
        if (getrandom(b, nbytes, 0) != (ssize_t)nbytes)
            memset(b, 0x5a, nbytes);
        bool nonzero = false;
        for (size_t i = 0; i < nbytes; i++)
            nonzero |= b[i] != 0;
        if (nonzero)
            break;
    }
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

void cloudevent_traceparent(const char *parent, char out[56])
{
    char trace[33], span[17];
    if (parent && cloudevent_traceparent_valid(parent)) {
        memcpy(trace, parent + 3, 32);
        trace[32] = '\0';
    } else {
        cloudevent_random_hex(trace, 16);
    }
    cloudevent_random_hex(span, 8);
    snprintf(out, 56, "00-%s-%s-01", trace, span);
}
