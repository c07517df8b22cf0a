/* mem: the out-of-memory policy of every program of the pipeline.
 *
 * Policy: an allocation whose failure no caller can answer sensibly dies: it logs
 * "out of memory: <what>" and exits with status 1, like PgBouncer and Redis, rather than carrying
 * on half-built; every caller would otherwise need a recovery path that is never exercised. The
 * supervisor restarts the program, and whatever was not acknowledged is redelivered, so nothing
 * is lost. jansson allocates through the same functions (set up before main), so a json_*
 * constructor or json_dumps returns NULL only for invalid input (text that is not UTF-8, a
 * format that does not match), never for want of memory.
 *
 * The checked variant is plain malloc/calloc with its result tested, kept only where a caller
 * has a real answer: the intake answers a request 500 with a fixed body, refuses one more
 * connection, or reports a configuration error, and keeps serving the others. Each such site
 * says so where it tests the result.
 */
#ifndef ORDERPIPE_MEM_H
#define ORDERPIPE_MEM_H

#include <stddef.h>

/* Logs "out of memory: <what>" and exits with status 1. */
void mem_die(const char *what) __attribute__((noreturn));

/* malloc/calloc/realloc/strdup/strndup that never return NULL (mem_die instead). The caller
 * owns the result (free). mem_alloc(0) returns a valid pointer. */
void *mem_alloc(size_t n);
void *mem_calloc(size_t count, size_t size);
void *mem_realloc(void *p, size_t n);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);

#endif
