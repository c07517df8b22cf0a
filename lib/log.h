/* log: JSON-lines logging to stderr, one object per line.
 *
 * Every line has ts, level, program and msg; callers add context fields (order_id, message_id,
 * correlation_id, traceparent) through log_ctx so one order can be followed across programs.
 * Safe from any thread once log_init has run (the intake's broker and backpressure threads log
 * too): a line is built in locals and written with one write(2); the program name and level are
 * set by log_init before any thread starts, and log_set_level is for tests.
 */
#ifndef ORDERPIPE_LOG_H
#define ORDERPIPE_LOG_H

#include <stdarg.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Context that identifies what a log line is about; any field may be NULL. Borrowed, not copied. */
typedef struct log_ctx {
    const char *order_id;
    const char *message_id;
    const char *correlation_id;
    const char *traceparent;
} log_ctx;

/* Sets the program name printed on every line and the minimum level (from LOG_LEVEL if set:
 * debug|info|warn|error). `program` must outlive all logging (a string literal). */
void log_init(const char *program);
void log_set_level(log_level level);
log_level log_get_level(void);

/* Logs printf-style `fmt` with `ctx` (may be NULL). */
void log_msg(log_level level, const log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(log_level level, const log_ctx *ctx, const char *fmt, va_list ap);

#define log_debug(ctx, ...) log_msg(LOG_DEBUG, ctx, __VA_ARGS__)
#define log_info(ctx, ...)  log_msg(LOG_INFO, ctx, __VA_ARGS__)
#define log_warn(ctx, ...)  log_msg(LOG_WARN, ctx, __VA_ARGS__)
#define log_error(ctx, ...) log_msg(LOG_ERROR, ctx, __VA_ARGS__)

#endif
