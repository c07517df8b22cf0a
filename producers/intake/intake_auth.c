/* intake_auth: API keys per client, from a file of "client:key" lines or a comma list in the
 * environment. Keys are compared in constant time (CRYPTO_memcmp) against every client, so the
 * time taken says nothing about which key, or how much of one, matched. Also each client's
 * webhook hosts (ORDERPIPE_WEBHOOK_HOSTS[_FILE], egress.h): a client with none may not give a
 * webhook URL at all. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "clock.h"
#include "log.h"
#include "mem.h"

static int intake_auth_add(intake *in, const char *entry)
{
    const char *colon = strchr(entry, ':');
    if (!colon || colon == entry || !colon[1]) {
        log_error(NULL, "API key entry is not 'client:key'");
        return -1;
    }
    size_t klen = strlen(colon + 1);
    while (klen && (colon[klen] == '\n' || colon[klen] == '\r' || colon[klen] == ' '))
        klen--;
    if (klen < 16) {
        log_error(NULL, "API key of client '%.*s' is shorter than 16 characters",
                  (int)(colon - entry), entry);
        return -1;
    }
    in->clients = mem_realloc(in->clients, (in->nclients + 1) * sizeof *in->clients);
    intake_client *c = &in->clients[in->nclients++];
    c->id = mem_strndup(entry, (size_t)(colon - entry));
    c->key = mem_strndup(colon + 1, klen);
    c->key_len = klen;
    return 0;
}

int intake_auth_load(intake *in)
{
    if (in->cfg.keys_file) {
        FILE *f = fopen(in->cfg.keys_file, "r");
        if (!f) {
            log_error(NULL, "cannot read API keys file %s", in->cfg.keys_file);
            return -1;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] == '\0' || line[0] == '#')
                continue;
            if (intake_auth_add(in, line) != 0) {
                fclose(f);
                return -1;
            }
        }
        fclose(f);
    }
    if (in->cfg.keys_env) {
        char *copy = mem_strdup(in->cfg.keys_env), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (intake_auth_add(in, t) != 0) {
                free(copy);
                return -1;
            }
        free(copy);
    }
    if (in->nclients == 0) {
        log_error(NULL, "no API keys: set ORDERPIPE_API_KEYS_FILE or ORDERPIPE_API_KEYS");
        return -1;
    }
    char err[300];
    in->webhooks.allow_http = in->cfg.webhook_allow_http;
    if ((in->cfg.webhook_hosts_file &&
         egress_policy_load_file(&in->webhooks, in->cfg.webhook_hosts_file, err, sizeof err) != OP_OK) ||
        egress_policy_parse(&in->webhooks, in->cfg.webhook_hosts, err, sizeof err) != OP_OK) {
        log_error(NULL, "webhook hosts: %s", err);
        return -1;
    }
    for (size_t i = 0; i < in->webhooks.n; i++) {
        bool known = false;
        for (size_t j = 0; j < in->nclients && !known; j++)
            known = strcmp(in->clients[j].id, in->webhooks.clients[i].client) == 0;
        if (!known) /* most likely a typo that leaves the real client without webhooks */
            log_warn(NULL, "webhook hosts are configured for client '%s', which has no API key",
                     in->webhooks.clients[i].client);
    }
    uint64_t now = clock_now_ns();
    for (size_t i = 0; i < in->nclients; i++)
        ratelimit_init(&in->clients[i].bucket, in->cfg.rate_per_client, in->cfg.burst_per_client, now);
    return 0;
}

void intake_auth_free(intake *in)
{
    for (size_t i = 0; i < in->nclients; i++) {
        OPENSSL_cleanse(in->clients[i].key, in->clients[i].key_len);
        free(in->clients[i].key);
        free(in->clients[i].id);
    }
    free(in->clients);
    in->clients = NULL;
    in->nclients = 0;
    egress_policy_free(&in->webhooks);
}

op_status intake_auth_webhook_allowed(const intake *in, const intake_client *c, const char *url,
                                      char *msg, size_t msglen)
{
    return egress_policy_check(&in->webhooks, c->id, url, msg, msglen);
}

intake_client *intake_auth_client(intake *in, const char *authorization)
{
    if (!authorization || strncmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *key = authorization + 7;
    size_t len = strlen(key);
    intake_client *found = NULL;
    /* Compare against every key (no early exit) over the stored key's length. */
    for (size_t i = 0; i < in->nclients; i++) {
        intake_client *c = &in->clients[i];
        int same = len == c->key_len && CRYPTO_memcmp(key, c->key, c->key_len) == 0;
        if (same)
            found = c;
    }
    return found;
}
