/* clock: monotonic readings and UTC timestamps (see clock.h). */
#include "clock.h"

#include <stdio.h>
#include <time.h>

static struct timespec clock_monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* cannot fail for CLOCK_MONOTONIC on Linux */
    return t;
}

uint64_t clock_now_ms(void)
{
    struct timespec t = clock_monotonic();
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

uint64_t clock_now_ns(void)
{
    struct timespec t = clock_monotonic();
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

double clock_now_ms_f(void)
{
    struct timespec t = clock_monotonic();
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

uint64_t clock_ms_since(uint64_t start_ms)
{
    uint64_t now = clock_now_ms();
    return now > start_ms ? now - start_ms : 0;
}

void clock_utc_text(char out[CLOCK_UTC_TEXT_LEN])
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(out, CLOCK_UTC_TEXT_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, CLOCK_UTC_TEXT_LEN - n, ".%03ldZ", now.tv_nsec / 1000000);
}
