/* fake_settlement: the settlement file of one UTC day, as a channel publishes it.
 *
 *   charge_key,provider_ref,amount,currency,status,settled_at
 *
 * One line per movement settled that day, in booking order: a succeeded charge (status
 * `succeeded`, provider_ref = the charge id, settled when it succeeded) and a refund of more than
 * 0 (status `refunded`, provider_ref = the refund id, amount = what was refunded). A field holding
 * a comma, a quote or a line break is quoted (RFC 4180). With the control discrepancies=1 the
 * file differs from the books on purpose, so that a reconciliation has something to find: among
 * the day's charges that were not refunded, in booking order, the 1st is listed with its amount
 * plus 1, the 2nd with another currency, the 3rd is left out, and the 4th is followed by a refund
 * line for it (id re_disc_1) that never happened; and a charge unknown to the merchant is added
 * at the end, its key a UUID derived from the date (the same file on every request). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_provider.h"

/* The start of the UTC day YYYY-MM-DD into *start; 0, or -1 if s is not such a date. */
static int day_start(const char *s, time_t *start)
{
    int y, m, d, n = 0;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 ||
        s[4] != '-' || s[7] != '-')
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    *start = timegm(&tm);
    struct tm back;
    gmtime_r(start, &back);
    return back.tm_year == y - 1900 && back.tm_mon == m - 1 && back.tm_mday == d ? 0 : -1;
}

static void csv_field(FILE *out, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void line(FILE *out, const char *key, const char *ref, long long amount,
                 const char *currency, const char *status, time_t at)
{
    char when[32];
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    csv_field(out, key);
    fputc(',', out);
    csv_field(out, ref);
    fprintf(out, ",%lld,", amount);
    csv_field(out, currency);
    fprintf(out, ",%s,%s\n", status, when);
}

/* A UUID derived from name (FNV-1a, two seeds), for the charge the merchant never made. */
static void derived_uuid(const char *name, char out[37])
{
    uint64_t h[2] = {14695981039346656037ull, 1099511628211ull * 7919};
    for (int k = 0; k < 2; k++)
        for (const char *p = name; *p; p++)
            h[k] = (h[k] ^ (unsigned char)*p) * 1099511628211ull;
    snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)(h[0] >> 32),
             (unsigned)(h[0] >> 16) & 0xffff, (unsigned)h[0] & 0xfff, (unsigned)(h[1] >> 52) & 0xfff,
             (unsigned long long)(h[1] & 0xffffffffffffull));
}

char *settlement_csv(const char *date)
{
    time_t start;
    if (day_start(date, &start) != 0)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    fputs("charge_key,provider_ref,amount,currency,status,settled_at\n", out);
    int twisted = 0; /* unrefunded charges seen, while discrepancies are being made */
    time_t last = start;
    for (const booking *b = fp.first; b; b = b->later) {
        if (!b->id || b->settled_at < start || b->settled_at >= start + 86400)
            continue;
        if (b->is_refund) {
            if (b->amount > 0)
                line(out, b->charge_key, b->id, b->amount, b->currency, "refunded", b->settled_at);
            continue;
        }
        if (b->state != CH_SUCCEEDED)
            continue;
        last = b->settled_at;
        long long amount = b->amount;
        const char *currency = b->currency;
        int twist = fp.ctl.discrepancies && b->refunded == 0 ? ++twisted : 0;
        if (twist == 1)
            amount++;
        else if (twist == 2)
            currency = strcmp(b->currency, "USD") == 0 ? "EUR" : "USD";
        if (twist != 3)
            line(out, b->key, b->id, amount, currency, "succeeded", b->settled_at);
        if (twist == 4)
            line(out, b->key, "re_disc_1", b->amount, b->currency, "refunded", b->settled_at);
    }
    if (fp.ctl.discrepancies) {
        char name[64], key[37];
        snprintf(name, sizeof name, "missing-here:%s", date);
        derived_uuid(name, key);
        line(out, key, "ch_disc_1", 1234, "EUR", "succeeded", last);
    }
    fclose(out);
    return text;
}
