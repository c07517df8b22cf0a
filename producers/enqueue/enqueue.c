/* orderpipe-enqueue: bulk import. Reads orders as NDJSON (a file or stdin), checks each exactly as
 * the HTTP intake does (lib/order_request), publishes the good ones with publisher confirms in
 * pipelined windows, and prints a JSON summary: accepted, and rejected with line numbers and
 * reasons. Exit 0 when every line was accepted, 1 when some were rejected, 2 on a broker failure
 * (then the summary says how many were confirmed before it).
 *
 * A line is an order body as POSTed, or {"client_id": "...", "idempotency_key": "...",
 * "order": {...}} to import on behalf of a client with a key, so that re-running an import (or
 * replaying it) makes no second order. Keys follow the HTTP intake's rule: a key is
 * bound to the body it was first used with (table idempotency_keys, shared with the intake), and
 * a line reusing a key with another body is rejected (idempotency_key_reused) and not published.
 * An order's payment token is not published (every consumer of order.placed would receive it):
 * it is recorded in payment_tokens, where the payment step reads it, before the window of events
 * that it belongs to is published. The import therefore needs DATABASE_URL; without the
 * database it stops (exit 2).
 * A line whose notify.webhook_url is not one of its client's webhook hosts
 * (ORDERPIPE_WEBHOOK_HOSTS, as for the intake) is rejected as webhook_not_allowed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "config.h"
#include "db.h"
#include "egress.h"
#include "idempotency.h"
#include "jsonschema.h"
#include "log.h"
#include "mem.h"
#include "order_request.h"
#include "topology.h"

#define ENQUEUE_WINDOW 256

typedef struct enqueue_config {
    const char *amqp_url;
    const char *database_url;
    const char *input;
    const char *client_id;
    const char *schema_dir;
    const char *webhook_hosts, *webhook_hosts_file;
    bool webhook_allow_http;
} enqueue_config;

static void enqueue_usage(FILE *out)
{
    fprintf(out,
            "usage: orderpipe-enqueue [--client ID] [--schemas DIR] [--database-url URL] [FILE]\n"
            "Publishes NDJSON orders (FILE or stdin) with confirms; prints a JSON summary.\n"
            "A line is an order body, or {\"client_id\",\"idempotency_key\",\"order\"}.\n"
            "  --client ID         client the orders are placed for (default: import)\n"
            "  --database-url URL  PostgreSQL (required): the payment tokens are kept there, and\n"
            "                      a key reused with another body is rejected [DATABASE_URL]\n"
            "  --webhook-hosts SPEC       'client=host,*.suffix;...': the webhook hosts each client\n"
            "                             may use, as for the intake [ORDERPIPE_WEBHOOK_HOSTS]\n"
            "  --webhook-hosts-file FILE  the same, an entry a line [ORDERPIPE_WEBHOOK_HOSTS_FILE]\n"
            "  --webhook-allow-http       accept http:// webhooks [ORDERPIPE_WEBHOOK_ALLOW_HTTP=1]\n"
            "  AMQP_URL            broker URLs (required)\n"
            "  PAYMENT_CHANNELS, PAYMENT_DEFAULT_METHOD  the valid payment.method names and the\n"
            "                      default, as for the intake\n"
            "exit: 0 all accepted, 1 some rejected, 2 broker or database failure\n");
}

/* Splits a line into (client, key, order text). The returned text is owned by *wrapper or line. */
static const char *enqueue_unwrap(const char *line, json_t **wrapper, const char **client,
                                  const char **key, char **owned)
{
    *wrapper = json_loads(line, 0, NULL);
    json_t *order = json_object_get(*wrapper, "order");
    if (!json_is_object(order))
        return line;
    const char *c = json_string_value(json_object_get(*wrapper, "client_id"));
    if (c)
        *client = c;
    *key = json_string_value(json_object_get(*wrapper, "idempotency_key"));
    *owned = json_dumps(order, JSON_COMPACT);
    return *owned;
}

/* The database connection, made or remade on first use; OP_OK or the failure (reported). */
static op_status enqueue_db(db **d, const char *url)
{
    if (!url) {
        fprintf(stderr, "orderpipe-enqueue: DATABASE_URL is required (the payment tokens are "
                        "kept there)\n");
        return OP_ERR_PERMANENT;
    }
    if ((!*d && db_connect(d, url, "orderpipe-enqueue") != OP_OK) ||
        (!db_is_open(*d) && db_reconnect(*d) != OP_OK)) {
        fprintf(stderr, "orderpipe-enqueue: database: %s\n", db_last_error(*d));
        return OP_ERR_TRANSIENT;
    }
    return OP_OK;
}

/* Binds (client, key) to the line's body as the intake does (intake_db.c): OP_OK with *reused
 * set when the key was used before with another body; an error status when the database is
 * unavailable (the import then stops: a keyed line must not go out unchecked). */
static op_status enqueue_claim_key(db **d, const char *url, const char *client, const char *key,
                                   const char *text, const char *order_id, bool *reused)
{
    *reused = false;
    char hash[IDEMPOTENCY_HASH_LEN];
    if (idempotency_hash_body(text, strlen(text), hash) != OP_OK)
        return OP_ERR_PERMANENT; /* cannot happen: the line was parsed already */
    op_status st = enqueue_db(d, url);
    if (st != OP_OK)
        return st;
    const char *params[] = {client, key, hash, order_id};
    PGresult *r = db_exec_prepared(
        *d, "enqueue_claim_key",
        "insert into idempotency_keys as k (client_id, key, body_sha256, order_id)"
        " values ($1, $2, decode($3, 'hex'), $4::uuid)"
        " on conflict (client_id, key) do update set client_id = k.client_id"
        " returning encode(k.body_sha256, 'hex')",
        4, params, &st);
    if (!r) {
        fprintf(stderr, "orderpipe-enqueue: database: %s\n", db_last_error(*d));
        return st;
    }
    *reused = PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), hash) != 0;
    PQclear(r);
    return OP_OK;
}

/* The events of a window, waiting for their payment tokens to be recorded. */
typedef struct enqueue_window {
    json_t *events; /* array of order.placed events */
    json_t *tokens; /* array of {"order_id","token"} */
} enqueue_window;

/* Records the window's tokens (one statement, one commit), then publishes its events and waits
 * for their confirms. OP_OK: every event confirmed (*accepted += their number); else the import
 * stops, having reported why. The window is emptied either way. */
static op_status enqueue_flush(enqueue_window *w, broker *b, db **d, const char *url,
                               long *accepted)
{
    op_status st = OP_OK;
    size_t n = json_array_size(w->events);
    if (n == 0)
        return OP_OK;
    char *rows = json_dumps(w->tokens, JSON_COMPACT);
    if (!rows)
        mem_die("serialising payment tokens");
    st = enqueue_db(d, url);
    if (st == OP_OK) {
        const char *params[] = {rows};
        PGresult *r = db_exec_prepared(
            *d, "enqueue_tokens",
            "insert into payment_tokens (order_id, token) select order_id, token"
            " from json_to_recordset($1::json) as r(order_id uuid, token text) on conflict do nothing",
            1, params, &st);
        if (!r)
            fprintf(stderr, "orderpipe-enqueue: database: %s\n", db_last_error(*d));
        PQclear(r);
    }
    free(rows);
    size_t i;
    json_t *ev;
    if (st != OP_OK)
        goto done; /* the database failed, and said so: nothing of the window is published */
    json_array_foreach(w->events, i, ev) {
        if (st != OP_OK)
            break;
        char *body = json_dumps(ev, JSON_COMPACT);
        if (!body) /* the event holds only checked, valid UTF-8: only memory can fail */
            mem_die("serialising an order.placed event");
        json_t *h = json_pack("{ss}", "traceparent",
                              json_string_value(json_object_get(ev, "traceparent")));
        broker_message m = {.routing_key = "order.placed", .body = body, .len = strlen(body),
                            .message_id = json_string_value(json_object_get(ev, "id")),
                            .type = "order.placed", .headers = h};
        st = broker_publish(b, &m, NULL);
        free(body);
        json_decref(h);
    }
    if (st == OP_OK)
        st = broker_wait_confirms(b, 30000);
    if (st == OP_OK)
        *accepted += (long)n;
    else
        fprintf(stderr, "orderpipe-enqueue: broker: a window of %zu orders not confirmed: %s\n", n,
                broker_last_error(b));
done:
    json_array_clear(w->events);
    json_array_clear(w->tokens);
    return st;
}

int main(int argc, char **argv)
{
    enqueue_config cfg = {.client_id = "import"};
    log_init("orderpipe-enqueue");
    cfg.amqp_url = config_env_str("AMQP_URL", NULL);
    cfg.database_url = config_env_str("DATABASE_URL", NULL);
    cfg.schema_dir = config_env_str("ORDERPIPE_SCHEMA_DIR", jsonschema_default_dir());
    cfg.webhook_hosts = config_env_str("ORDERPIPE_WEBHOOK_HOSTS", NULL);
    cfg.webhook_hosts_file = config_env_str("ORDERPIPE_WEBHOOK_HOSTS_FILE", NULL);
    if (config_env_bool("ORDERPIPE_WEBHOOK_ALLOW_HTTP", false, &cfg.webhook_allow_http) != OP_OK)
        return 2;
    static const struct option opts[] = {
        {"client", 1, NULL, 'c'}, {"schemas", 1, NULL, 's'}, {"database-url", 1, NULL, 'd'},
        {"help", 0, NULL, 'h'}, {"webhook-hosts", 1, NULL, 'W'},
        {"webhook-hosts-file", 1, NULL, 'F'}, {"webhook-allow-http", 0, NULL, 'H'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'c') cfg.client_id = optarg;
        else if (o == 's') cfg.schema_dir = optarg;
        else if (o == 'd') cfg.database_url = optarg;
        else if (o == 'W') cfg.webhook_hosts = optarg;
        else if (o == 'F') cfg.webhook_hosts_file = optarg;
        else if (o == 'H') cfg.webhook_allow_http = true;
        else if (o == 'h') { enqueue_usage(stdout); return 0; }
        else { enqueue_usage(stderr); return 2; }
    }
    if (optind < argc)
        cfg.input = argv[optind];
    if (!cfg.amqp_url) {
        fprintf(stderr, "orderpipe-enqueue: AMQP_URL is required\n");
        return 2;
    }
    char err[512];
    /* The intake's rule: payment.method must name a channel (PAYMENT_CHANNELS). */
    payment_channels channels;
    if (payment_channels_from_env(&channels, false, err, sizeof err) != OP_OK) {
        fprintf(stderr, "orderpipe-enqueue: %s\n", err);
        return 2;
    }
    egress_policy hooks = {.allow_http = cfg.webhook_allow_http};
    if ((cfg.webhook_hosts_file &&
         egress_policy_load_file(&hooks, cfg.webhook_hosts_file, err, sizeof err) != OP_OK) ||
        egress_policy_parse(&hooks, cfg.webhook_hosts, err, sizeof err) != OP_OK) {
        fprintf(stderr, "orderpipe-enqueue: webhook hosts: %s\n", err);
        egress_policy_free(&hooks);
        payment_channels_free(&channels);
        return 2;
    }
    jsonschema_registry *reg;
    if (jsonschema_registry_load(cfg.schema_dir, &reg, err, sizeof err) == OP_OK &&
        !jsonschema_registry_get(reg, "order.request"))
        snprintf(err, sizeof err, "order.request.json is missing");
    const jsonschema *schema = jsonschema_registry_get(reg, "order.request");
    if (!schema) {
        fprintf(stderr, "orderpipe-enqueue: cannot load schemas from %s: %s\n", cfg.schema_dir,
                err);
        jsonschema_registry_free(reg);
        egress_policy_free(&hooks);
        payment_channels_free(&channels);
        return 2;
    }
    FILE *in = cfg.input ? fopen(cfg.input, "r") : stdin;
    if (!in) {
        fprintf(stderr, "orderpipe-enqueue: cannot read %s\n", cfg.input);
        jsonschema_registry_free(reg);
        egress_policy_free(&hooks);
        payment_channels_free(&channels);
        return 2;
    }
    broker *b;
    broker_options bo = {.urls = cfg.amqp_url, .name = "orderpipe-enqueue", .confirms = true};
    if (broker_connect(&b, &bo) != OP_OK || topology_declare(b) != OP_OK) {
        fprintf(stderr, "orderpipe-enqueue: broker: %s\n", b ? broker_last_error(b) : "bad AMQP_URL");
        broker_close(b);
        if (in != stdin)
            fclose(in);
        jsonschema_registry_free(reg);
        egress_policy_free(&hooks);
        payment_channels_free(&channels);
        return 2;
    }
    db *d = NULL;
    bool db_failed = false; /* the broker is fine: what it holds is still confirmed below */
    json_t *rejected = json_array();
    long lineno = 0, accepted = 0;
    enqueue_window win = {json_array(), json_array()};
    int rc = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) > 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        json_t *wrapper = NULL;
        const char *client = cfg.client_id, *key = NULL;
        char *owned = NULL;
        const char *text = enqueue_unwrap(line, &wrapper, &client, &key, &owned);
        json_t *ev;
        char order_id[UUID_STR_LEN], token[ORDER_REQUEST_TOKEN_SIZE];
        order_request_error oe;
        bool reused = false;
        op_status built = order_request_build(text, strlen(text), schema, &channels, client, key, NULL,
                                              "orderpipe-enqueue", &ev, order_id, token, &oe);
        /* The intake's rule (intake_http.c): only the client's webhook hosts. */
        const char *hook = built != OP_OK ? NULL : order_request_webhook_url(ev);
        if (hook && egress_policy_check(&hooks, client, hook, oe.message, sizeof oe.message) != OP_OK) {
            json_decref(ev);
            snprintf(oe.code, sizeof oe.code, "webhook_not_allowed");
            snprintf(oe.field, sizeof oe.field, "$.notify.webhook_url");
            built = OP_ERR_PERMANENT;
        }
        if (built != OP_OK) {
            json_array_append_new(rejected, json_pack("{sI ss ss ss}", "line", (json_int_t)lineno,
                                                      "error", oe.code, "message", oe.message,
                                                      "field", oe.field));
        } else if (key && (enqueue_claim_key(&d, cfg.database_url, client, key, text, order_id,
                                             &reused) != OP_OK || reused)) {
            json_decref(ev);
            if (reused) {
                json_array_append_new(
                    rejected, json_pack("{sI ss ss ss}", "line", (json_int_t)lineno, "error",
                                        "idempotency_key_reused", "message",
                                        "this idempotency_key was used before with a different "
                                        "order; a new order needs a new key",
                                        "field", "idempotency_key"));
            } else {
                rc = 2;
                db_failed = true;
            }
        } else {
            if (json_array_append_new(win.events, ev) != 0 ||
                json_array_append_new(win.tokens, json_pack("{ss ss}", "order_id", order_id,
                                                            "token", token)) != 0)
                mem_die("an import window");
            if (json_array_size(win.events) == ENQUEUE_WINDOW &&
                enqueue_flush(&win, b, &d, cfg.database_url, &accepted) != OP_OK) {
                fprintf(stderr, "orderpipe-enqueue: stopped at line %ld\n", lineno);
                rc = 2;
            }
        }
        free(owned);
        json_decref(wrapper);
        if (rc)
            break;
    }
    /* A database failure on a keyed line stops the import after what was accepted before it;
     * those lines' tokens can still be recorded unless the database is what failed. */
    if ((rc == 0 || db_failed) &&
        enqueue_flush(&win, b, &d, cfg.database_url, &accepted) != OP_OK)
        rc = 2;
    json_decref(win.events);
    json_decref(win.tokens);
    free(line);
    if (in != stdin)
        fclose(in);
    if (rc == 0 && json_array_size(rejected) > 0)
        rc = 1;
    json_t *summary = json_pack("{sI sI so}", "lines", (json_int_t)lineno, "accepted",
                                (json_int_t)accepted, "rejected", rejected);
    char *text = json_dumps(summary, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(summary);
    broker_close(b);
    db_close(d);
    jsonschema_registry_free(reg);
    egress_policy_free(&hooks);
    payment_channels_free(&channels);
    return rc;
}
