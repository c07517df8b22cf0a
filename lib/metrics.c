/* metrics: a small Prometheus registry (see metrics.h). */
#include "metrics.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } metrics_kind;

typedef struct metrics_series {
    char *values[METRICS_MAX_LABELS];
    double value;          /* counter / gauge */
    double sum;            /* histogram */
    unsigned long count;
    unsigned long *buckets; /* cumulative counts are computed at render time */
    struct metrics_series *next;
} metrics_series;

struct metrics_family {
    metrics_registry *reg;
    metrics_kind kind;
    char *name;
    char *help;
    char *labels[METRICS_MAX_LABELS];
    int nlabels;
    double *bounds;
    int nbounds;
    metrics_series *series;
    struct metrics_family *next;
};

struct metrics_registry {
    pthread_mutex_t lock;
    metrics_family *families, *last;
    time_t start;
};

metrics_registry *metrics_registry_new(void)
{
    metrics_registry *r = calloc(1, sizeof *r);
    if (r) {
        pthread_mutex_init(&r->lock, NULL);
        r->start = time(NULL);
    }
    return r;
}

void metrics_registry_free(metrics_registry *r)
{
    if (!r)
        return;
    metrics_family *f = r->families;
    while (f) {
        metrics_family *nf = f->next;
        metrics_series *s = f->series;
        while (s) {
            metrics_series *ns = s->next;
            for (int i = 0; i < f->nlabels; i++)
                free(s->values[i]);
            free(s->buckets);
            free(s);
            s = ns;
        }
        for (int i = 0; i < f->nlabels; i++)
            free(f->labels[i]);
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
        f = nf;
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static bool metrics_valid_name(const char *s)
{
    if (!s || !(isalpha((unsigned char)*s) || *s == '_' || *s == ':'))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == ':'))
            return false;
    return true;
}

static metrics_family *metrics_register(metrics_registry *r, metrics_kind kind, const char *name,
                                        const char *help, const char *labels)
{
    if (!r || !metrics_valid_name(name))
        return NULL;
    for (metrics_family *f = r->families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return NULL;
    metrics_family *f = mem_calloc(1, sizeof *f);
    f->reg = r;
    f->kind = kind;
    f->name = mem_strdup(name);
    f->help = mem_strdup(help ? help : "");
    if (labels && *labels) {
        char *copy = mem_strdup(labels), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (f->nlabels == METRICS_MAX_LABELS || !metrics_valid_name(t) || t[0] == '_' ||
                (kind == KIND_HISTOGRAM && strcmp(t, "le") == 0)) {
                free(copy);
                for (int i = 0; i < f->nlabels; i++)
                    free(f->labels[i]);
                free(f->name);
                free(f->help);
                free(f);
                return NULL;
            }
            f->labels[f->nlabels++] = mem_strdup(t);
        }
        free(copy);
    }
    pthread_mutex_lock(&r->lock);
    if (r->last)
        r->last->next = f;
    else
        r->families = f;
    r->last = f;
    pthread_mutex_unlock(&r->lock);
    return f;
}

metrics_family *metrics_counter(metrics_registry *r, const char *name, const char *help,
                                const char *labels)
{
    return metrics_register(r, KIND_COUNTER, name, help, labels);
}

metrics_family *metrics_gauge(metrics_registry *r, const char *name, const char *help,
                              const char *labels)
{
    return metrics_register(r, KIND_GAUGE, name, help, labels);
}

metrics_family *metrics_histogram(metrics_registry *r, const char *name, const char *help,
                                  const char *labels, const double *buckets, int nbuckets)
{
    for (int i = 1; i < nbuckets; i++)
        if (buckets[i] <= buckets[i - 1])
            return NULL;
    metrics_family *f = metrics_register(r, KIND_HISTOGRAM, name, help, labels);
    if (f) {
        f->bounds = mem_alloc(sizeof(double) * (size_t)(nbuckets > 0 ? nbuckets : 1));
        memcpy(f->bounds, buckets, sizeof(double) * (size_t)nbuckets);
        f->nbounds = nbuckets;
    }
    return f;
}

/* The series for `values`, created on first sight; called with the lock held. */
static metrics_series *metrics_find(metrics_family *f, const char *const *values)
{
    metrics_series *s;
    for (s = f->series; s; s = s->next) {
        bool same = true;
        for (int i = 0; i < f->nlabels && same; i++)
            same = strcmp(s->values[i], values[i] ? values[i] : "") == 0;
        if (same)
            return s;
    }
    s = mem_calloc(1, sizeof *s);
    for (int i = 0; i < f->nlabels; i++)
        s->values[i] = mem_strdup(values[i] ? values[i] : "");
    if (f->kind == KIND_HISTOGRAM)
        s->buckets = mem_calloc((size_t)f->nbounds + 1, sizeof(unsigned long));
    s->next = f->series;
    f->series = s;
    return s;
}

void metrics_add(metrics_family *f, const char *const *values, double by)
{
    if (!f || (f->kind == KIND_COUNTER && by < 0))
        return;
    pthread_mutex_lock(&f->reg->lock);
    metrics_find(f, values)->value += by;
    pthread_mutex_unlock(&f->reg->lock);
}

void metrics_set(metrics_family *f, const char *const *values, double v)
{
    if (!f || f->kind != KIND_GAUGE)
        return;
    pthread_mutex_lock(&f->reg->lock);
    metrics_find(f, values)->value = v;
    pthread_mutex_unlock(&f->reg->lock);
}

void metrics_observe(metrics_family *f, const char *const *values, double v)
{
    if (!f || f->kind != KIND_HISTOGRAM)
        return;
    pthread_mutex_lock(&f->reg->lock);
    metrics_series *s = metrics_find(f, values);
    int i = 0;
    while (i < f->nbounds && v > f->bounds[i])
        i++;
    s->buckets[i]++;
    s->sum += v;
    s->count++;
    pthread_mutex_unlock(&f->reg->lock);
}

double metrics_value(metrics_family *f, const char *const *values)
{
    if (!f)
        return 0;
    pthread_mutex_lock(&f->reg->lock);
    double v = metrics_find(f, values)->value;
    pthread_mutex_unlock(&f->reg->lock);
    return v;
}

/* --- rendering ----------------------------------------------------------------------------- */

typedef struct metrics_buf {
    char *p;
    size_t len, cap;
} metrics_buf;

static void buf_printf(metrics_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(metrics_buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0);
        b->p = mem_realloc(b->p, b->cap);
    }
}

static void buf_escaped(metrics_buf *b, const char *s, bool help)
{
    for (; *s; s++) {
        if (*s == '\\') buf_printf(b, "\\\\");
        else if (*s == '\n') buf_printf(b, "\\n");
        else if (*s == '"' && !help) buf_printf(b, "\\\"");
        else buf_printf(b, "%c", *s);
    }
}

static void buf_number(metrics_buf *b, double v)
{
    if (v == (double)(long long)v && v < 1e15 && v > -1e15)
        buf_printf(b, "%lld", (long long)v);
    else
        buf_printf(b, "%.17g", v);
}

/* {a="x",b="y"[,le="..."]} or nothing */
static void buf_labels(metrics_buf *b, const metrics_family *f, const metrics_series *s,
                       const char *le)
{
    if (f->nlabels == 0 && !le)
        return;
    buf_printf(b, "{");
    for (int i = 0; i < f->nlabels; i++) {
        buf_printf(b, "%s%s=\"", i ? "," : "", f->labels[i]);
        buf_escaped(b, s->values[i], false);
        buf_printf(b, "\"");
    }
    if (le)
        buf_printf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    buf_printf(b, "}");
}

static void metrics_render_process(metrics_buf *b, const metrics_registry *r)
{
    long rss_pages = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp) {
        long size;
        if (fscanf(fp, "%ld %ld", &size, &rss_pages) != 2)
            rss_pages = 0;
        fclose(fp);
    }
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    buf_printf(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                  "# TYPE process_resident_memory_bytes gauge\n"
                  "process_resident_memory_bytes %ld\n",
               rss_pages * sysconf(_SC_PAGESIZE));
    buf_printf(b, "# HELP process_cpu_seconds_total Total user and system CPU time in seconds.\n"
                  "# TYPE process_cpu_seconds_total counter\n"
                  "process_cpu_seconds_total %.3f\n",
               (double)cpu.tv_sec + (double)cpu.tv_nsec / 1e9);
    buf_printf(b, "# HELP process_start_time_seconds Start time of the process since the epoch.\n"
                  "# TYPE process_start_time_seconds gauge\n"
                  "process_start_time_seconds %lld\n",
               (long long)r->start);
}

char *metrics_render(metrics_registry *r)
{
    metrics_buf b = {mem_alloc(4096), 0, 4096};
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&r->lock);
    for (metrics_family *f = r->families; f; f = f->next) {
        buf_printf(&b, "# HELP %s ", f->name);
        buf_escaped(&b, f->help, true);
        buf_printf(&b, "\n# TYPE %s %s\n", f->name, kinds[f->kind]);
        /* A family without labels shows its zero before the first update. */
        if (!f->series && f->nlabels == 0)
            metrics_find(f, NULL);
        for (metrics_series *s = f->series; s; s = s->next) {
            if (f->kind != KIND_HISTOGRAM) {
                buf_printf(&b, "%s", f->name);
                buf_labels(&b, f, s, NULL);
                buf_printf(&b, " ");
                buf_number(&b, s->value);
                buf_printf(&b, "\n");
                continue;
            }
            unsigned long cum = 0;
            for (int i = 0; i <= f->nbounds; i++) {
                char le[40];
                cum += s->buckets[i];
                if (i < f->nbounds)
                    snprintf(le, sizeof le, "%g", f->bounds[i]);
                else
                    snprintf(le, sizeof le, "+Inf");
                buf_printf(&b, "%s_bucket", f->name);
                buf_labels(&b, f, s, le);
                buf_printf(&b, " %lu\n", cum);
            }
            buf_printf(&b, "%s_sum", f->name);
            buf_labels(&b, f, s, NULL);
            buf_printf(&b, " ");
            buf_number(&b, s->sum);
            buf_printf(&b, "\n%s_count", f->name);
            buf_labels(&b, f, s, NULL);
            buf_printf(&b, " %lu\n", s->count);
        }
    }
    metrics_render_process(&b, r);
    pthread_mutex_unlock(&r->lock);
    return b.p;
}
