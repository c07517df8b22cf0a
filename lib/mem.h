/* mem: allocation that cannot return NULL.
 *
 * Like PgBouncer, a program of the pipeline that runs out of memory logs it and exits (status 1)
 * rather than carrying on half-built: every caller of these would otherwise need a recovery path
 * that is never exercised. The supervisor restarts the program; whatever was not acknowledged is
 * redelivered. Use these for allocations whose failure cannot be answered sensibly; where an
 * answer exists (a fixed 500 body), check malloc's result instead.
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
