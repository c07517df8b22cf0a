/* inbox: consumed message ids per consumer (see inbox.h). */
#include "inbox.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "mem.h"

/* Reads n digits at *p into *out, advancing *p; false if any is not a digit. */
static bool inbox_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return false;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return true;
}

void inbox_event_at(const char *time, char out[INBOX_EVENT_AT_LEN])
{
    strcpy(out, "-infinity");
    if (!time)
        return;
    const char *p = time;
    int y, mo, d, h, mi, s, oh = 0, om = 0, sign = 0;
    long usec = 0;
    if (!inbox_digits(&p, 4, &y) || *p++ != '-' || !inbox_digits(&p, 2, &mo) || *p++ != '-' ||
        !inbox_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' ') || !*p++ ||
        !inbox_digits(&p, 2, &h) || *p++ != ':' || !inbox_digits(&p, 2, &mi) || *p++ != ':' ||
        !inbox_digits(&p, 2, &s))
        return;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 6)
                usec = usec * 10 + (*p - '0');
        if (digits == 0)
            return;
        for (; digits < 6; digits++)
            usec *= 10;
    }
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (!inbox_digits(&p, 2, &oh) || *p++ != ':' || !inbox_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            return;
    } else
        return;
    if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60)
        return;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = s};
    time_t t = timegm(&tm) - sign * (oh * 3600 + om * 60);
    struct tm utc;
    if (t < 0 || !gmtime_r(&t, &utc) || utc.tm_year + 1900 > 9999)
        return;
    snprintf(out, INBOX_EVENT_AT_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", utc.tm_year + 1900,
             utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, usec);
}

op_status inbox_record(db *d, const char *consumer, const inbox_msg *m)
{
    char at[INBOX_EVENT_AT_LEN];
    inbox_event_at(m->time, at);
    const char *params[] = {consumer, m->id, at};
    long inserted = 0;
    op_status st = db_exec_prepared_count(d, "inbox_record",
                                          "insert into inbox(consumer, message_id, event_at) "
                                          "values ($1, $2, $3::timestamptz) on conflict do nothing",
                                          3, params, &inserted);
    if (st != OP_OK)
        return st;
    return inserted == 1 ? OP_OK : OP_DUPLICATE;
}

op_status inbox_record_in_savepoint(db *d, const char *savepoint, bool release_previous,
                                    const char *consumer, const inbox_msg *m)
{
    PGconn *c = db_conn(d);
    if (!c)
        return db_command(d, "select 1", 0, NULL); /* reports "not connected" */
    char at[INBOX_EVENT_AT_LEN];
    inbox_event_at(m->time, at);
    char *con = PQescapeLiteral(c, consumer, strlen(consumer));
    char *mid = PQescapeLiteral(c, m->id, strlen(m->id));
    char *sp = PQescapeIdentifier(c, savepoint, strlen(savepoint));
    op_status st = OP_ERR_PERMANENT;
    if (con && mid && sp) {
        /* Simple protocol: several statements, one round trip; the result is the last one's. */
        size_t n = strlen(con) + strlen(mid) + 2 * strlen(sp) + sizeof at + 200;
        char *sql = mem_alloc(n);
        snprintf(sql, n, "%s%s%ssavepoint %s; insert into inbox(consumer, message_id, event_at) "
                         "values (%s, %s, '%s') on conflict do nothing",
                 release_previous ? "release savepoint " : "", release_previous ? sp : "",
                 release_previous ? "; " : "", sp, con, mid, at);
        PGresult *r = db_exec(d, sql, 0, NULL, &st);
        free(sql);
        if (r) {
            st = atoi(PQcmdTuples(r)) == 1 ? OP_OK : OP_DUPLICATE;
            PQclear(r);
        }
    }
    PQfreemem(con);
    PQfreemem(mid);
    PQfreemem(sp);
    return st;
}

/* The messages as a JSON array text of [id, event_at] pairs (the caller frees it), so any text
 * is passed safely. */
static char *inbox_msgs_json(const inbox_msg *msgs, int n)
{
    json_t *arr = json_array();
    char at[INBOX_EVENT_AT_LEN];
    for (int i = 0; i < n; i++) {
        inbox_event_at(msgs[i].time, at);
        json_array_append_new(arr, json_pack("[ss]", msgs[i].id, at));
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return text;
}

op_status inbox_record_many(db *d, const char *consumer, const inbox_msg *msgs, int n, bool *fresh)
{
    assert(n >= 0 && (n == 0 || (msgs && fresh)));
    for (int i = 0; i < n; i++)
        fresh[i] = false;
    char *text = inbox_msgs_json(msgs, n);
    if (!text)
        return OP_ERR_TRANSIENT;
    const char *params[] = {consumer, text};
    op_status st;
    PGresult *r = db_exec_prepared(d, "inbox_record_many",
                                   "insert into inbox(consumer, message_id, event_at) "
                                   "select $1, x->>0, (x->>1)::timestamptz "
                                   "from json_array_elements($2::json) x "
                                   "on conflict do nothing returning message_id",
                                   2, params, &st);
    free(text);
    if (!r)
        return st;
    /* Each returned row makes the first of its messages fresh; a repeat within the batch stays
     * a duplicate of it. */
    for (int row = 0; row < PQntuples(r); row++) {
        const char *id = PQgetvalue(r, row, 0);
        for (int i = 0; i < n; i++) {
            if (!fresh[i] && strcmp(msgs[i].id, id) == 0) {
                fresh[i] = true;
                break;
            }
        }
    }
    PQclear(r);
    return OP_OK;
}

op_status inbox_forget_many(db *d, const char *consumer, const inbox_msg *msgs, int n)
{
    char *text = inbox_msgs_json(msgs, n);
    if (!text)
        return OP_ERR_TRANSIENT;
    const char *params[] = {consumer, text};
    op_status st = db_command(d, "delete from inbox where consumer = $1 and (message_id, event_at) "
                                 "in (select x->>0, (x->>1)::timestamptz "
                                 "from json_array_elements($2::json) x)",
                              2, params);
    free(text);
    return st;
}

op_status inbox_prune(db *d, long retention_s, int batch, long *deleted)
{
    return db_prune(d, "inbox_prune",
                    "delete from inbox where ctid = any(array(select ctid from inbox "
                    "where received_at < now() - make_interval(secs => $1::int) limit $2::int))",
                    retention_s, batch, deleted);
}
