/* log: JSON-lines logging (see log.h). Lines are built in one buffer and written with a single
 * write(2) so lines from several processes sharing stderr never interleave. */
#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "utf8.h"

static const char *log_program = "orderpipe";
static log_level log_min_level = LOG_INFO;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *program)
{
    const char *env = getenv("LOG_LEVEL");
    log_program = program;
    if (env) {
        for (int i = LOG_DEBUG; i <= LOG_ERROR; i++)
            if (strcasecmp(env, log_level_names[i]) == 0)
                log_min_level = (log_level)i;
    }
}

void log_set_level(log_level level) { log_min_level = level; }
log_level log_get_level(void) { return log_min_level; }

static void log_add(json_t *line, const char *key, const char *value)
{
    if (value && *value)
        json_object_set_new(line, key, json_string(value));
}

void log_vmsg(log_level level, const log_ctx *ctx, const char *fmt, va_list ap)
{
    if (level < log_min_level)
        return;

    char msg[2048];
    if (vsnprintf(msg, sizeof msg, fmt, ap) >= (int)sizeof msg)
        utf8_truncate(msg, sizeof msg - 1); /* a cut inside a character would lose the line */

    char ts[CLOCK_UTC_TEXT_LEN];
    clock_utc_text(ts);

    json_t *line = json_object();
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(log_level_names[level]));
    json_object_set_new(line, "program", json_string(log_program));
    json_object_set_new(line, "pid", json_integer(getpid()));
    if (ctx) {
        log_add(line, "order_id", ctx->order_id);
        log_add(line, "message_id", ctx->message_id);
        log_add(line, "correlation_id", ctx->correlation_id);
        log_add(line, "traceparent", ctx->traceparent);
    }
    /* json_string rejects invalid UTF-8; fall back so a bad byte never drops the line. */
    json_t *m = json_string(msg);
    json_object_set_new(line, "msg", m ? m : json_string("(message not valid UTF-8)"));

    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    text[len] = '\0';
    char *out = malloc(len + 2);
    if (out) {
        memcpy(out, text, len);
        out[len] = '\n';
        ssize_t w = write(STDERR_FILENO, out, len + 1);
        (void)w;
        free(out);
    }
    free(text);
}

void log_msg(log_level level, const log_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, ctx, fmt, ap);
    va_end(ap);
}
