/* mem: allocation that dies on out-of-memory (see mem.h). */
#include "mem.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void mem_die(const char *what)
{
    /* log_error itself allocates and may fail silently: write a fixed line first. */
    static const char line[] = "{\"level\":\"error\",\"msg\":\"out of memory\"}\n";
    ssize_t w = write(STDERR_FILENO, line, sizeof line - 1);
    (void)w;
    log_error(NULL, "out of memory: %s", what);
    exit(1);
}

void *mem_alloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        mem_die("malloc");
    return p;
}

void *mem_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        mem_die("calloc");
    return p;
}

void *mem_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        mem_die("realloc");
    return q;
}

char *mem_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        mem_die("strdup");
    return d;
}

char *mem_strndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d)
        mem_die("strndup");
    return d;
}

/* jansson's allocations follow the same policy (see mem.h). Set before main, so before any
 * json_t exists: jansson requires its allocator not to change while it holds memory. Every
 * program links this file (db and jsonschema use it). */
static void *mem_json_alloc(size_t n) { return mem_alloc(n); }

__attribute__((constructor)) static void mem_json_policy(void)
{
    json_set_alloc_funcs(mem_json_alloc, free);
}
