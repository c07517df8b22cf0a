/* System test of lib/db against the real PostgreSQL (the harness's per-test database in
 * DATABASE_URL): prepared statements by name, many more than the first size of the set that
 * remembers them, each prepared once per connection and again after a reconnect; the
 * statuses of a transaction body; and array literals as PostgreSQL reads them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "systest.h"

#define NAMES 300

/* Names and statements outlive the connection, as db_exec_prepared requires. */
static char names[NAMES][32];
static char sqls[NAMES][48];

/* Runs statement i and returns OP_OK when it answers i. */
static op_status run(db *d, int i, char *err, size_t errlen)
{
    op_status st;
    PGresult *r = db_exec_prepared(d, names[i], sqls[i], 0, NULL, &st);
    if (!r) {
        snprintf(err, errlen, "%s: %s (%s)", names[i], db_last_error(d), op_status_name(st));
        return st;
    }
    st = atoi(PQgetvalue(r, 0, 0)) == i ? OP_OK : OP_ERR_PERMANENT;
    if (st != OP_OK)
        snprintf(err, errlen, "%s answered %s", names[i], PQgetvalue(r, 0, 0));
    PQclear(r);
    return st;
}

/* Runs every statement `rounds` times; the first failure is in err. */
static int run_all(db *d, int rounds, char *err, size_t errlen)
{
    int ok = 0;
    for (int round = 0; round < rounds; round++)
        for (int i = 0; i < NAMES; i++)
            if (run(d, i, err, errlen) == OP_OK)
                ok++;
    return ok;
}

/* How many statements this connection has prepared (pg_prepared_statements is per session). */
static int prepared_on_server(db *d)
{
    PGresult *r = db_exec(d, "select count(*) from pg_prepared_statements where name like 'td_%'",
                          0, NULL, NULL);
    int n = r ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

static op_status body_not_found(db *d, void *arg)
{
    (void)d;
    (void)arg;
    return OP_NOT_FOUND;
}

int main(void)
{
    const char *url = getenv("DATABASE_URL");
    if (!url) {
        printf("not ok - DATABASE_URL is not set\n");
        return 1;
    }
    for (int i = 0; i < NAMES; i++) {
        snprintf(names[i], sizeof names[i], "td_%d", i);
        snprintf(sqls[i], sizeof sqls[i], "select %d", i);
    }
    db *d;
    CHECK(db_connect(&d, url, "systest_db") == OP_OK, "connect");
    char err[600] = "";
    CHECK(run_all(d, 3, err, sizeof err) == 3 * NAMES,
          "%d prepared statements each run 3 times on one connection %s", NAMES, err);
    CHECK(prepared_on_server(d) == NAMES, "each was prepared once on the server (%d)",
          prepared_on_server(d));

    /* A name given by another pointer with the same text is the same statement. */
    char copy[32];
    snprintf(copy, sizeof copy, "%s", names[7]);
    op_status st;
    PGresult *r = db_exec_prepared(d, copy, sqls[7], 0, NULL, &st);
    CHECK(r && st == OP_OK && strcmp(PQgetvalue(r, 0, 0), "7") == 0,
          "the same name in another buffer runs the prepared statement");
    PQclear(r);

    /* A new connection has none of them: each is prepared again, once. */
    CHECK(db_reconnect(d) == OP_OK, "reconnect");
    CHECK(prepared_on_server(d) == 0, "the new connection has no prepared statement");
    err[0] = '\0';
    CHECK(run_all(d, 2, err, sizeof err) == 2 * NAMES, "all %d run again after the reconnect %s",
          NAMES, err);
    CHECK(prepared_on_server(d) == NAMES, "each was prepared once on the new connection");

    /* A server turned read-only under the connection (a demoted primary) is a transient
     * failure that closes the connection, so the next reconnect looks for the new primary. */
    CHECK(db_command(d, "set default_transaction_read_only = on", 0, NULL) == OP_OK,
          "the session turns read-only");
    PGresult *ro = db_exec(d, "create table td_read_only(x int)", 0, NULL, &st);
    PQclear(ro);
    CHECK(!ro && st == OP_ERR_TRANSIENT && strcmp(db_last_sqlstate(d), "25006") == 0,
          "a write refused as read-only (%s) is transient", db_last_sqlstate(d));
    CHECK(!db_is_open(d), "and the connection is closed");
    uint64_t before = db_reconnect_count(d);
    CHECK(db_reconnect(d) == OP_OK && db_reconnect_count(d) == before + 1, "reconnect");
    CHECK(db_server(d)->failovers == 0, "the same server is no failover");

    /* An outcome that is not a failure still rolls back, and comes back unchanged. */
    CHECK(db_transaction(d, body_not_found, NULL, 0) == OP_NOT_FOUND,
          "a transaction body's not_found is returned as it is");
    CHECK(db_command(d, "select 1", 0, NULL) == OP_OK, "the connection is usable after it");

    /* An array literal PostgreSQL reads back element for element, whatever the text. */
    const char *elements[] = {"plain", "with \"quotes\"", "back\\slash", "a,comma", "{braces}",
                              "", "NULL", " spaced ", "é"};
    int ne = (int)(sizeof elements / sizeof *elements);
    db_array a;
    db_array_init(&a);
    CHECK(strcmp(db_array_text(&a), "{}") == 0, "an empty array literal is {}");
    for (int round = 0; round < 40; round++) /* past the first allocation */
        for (int i = 0; i < ne; i++)
            db_array_append(&a, elements[i]);
    const char *arr[] = {db_array_text(&a)};
    r = db_exec(d, "select array_length($1::text[], 1), ($1::text[])[2], ($1::text[])[3], "
                   "($1::text[])[4], ($1::text[])[6] = '', ($1::text[])[7] is not null, "
                   "($1::text[])[8]", 1, arr, &st);
    CHECK(r && atoi(PQgetvalue(r, 0, 0)) == 40 * ne, "the array has every element (%s)",
          r ? PQgetvalue(r, 0, 0) : db_last_error(d));
    CHECK(r && strcmp(PQgetvalue(r, 0, 1), elements[1]) == 0 &&
              strcmp(PQgetvalue(r, 0, 2), elements[2]) == 0 &&
              strcmp(PQgetvalue(r, 0, 3), elements[3]) == 0 &&
              strcmp(PQgetvalue(r, 0, 4), "t") == 0 && strcmp(PQgetvalue(r, 0, 5), "t") == 0 &&
              strcmp(PQgetvalue(r, 0, 6), elements[7]) == 0,
          "quotes, backslashes, commas, empty text, NULL and spaces come back as they were");
    PQclear(r);
    db_array_free(&a);

    db_close(d);
    printf("%s\n", failures ? "FAILED" : "PASSED");
    return failures ? 1 : 0;
}
