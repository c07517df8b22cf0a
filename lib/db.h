/* db: a PostgreSQL connection (libpq) with transactions that retry what is worth retrying.
 *
 * Owns: connecting (and reconnecting after the server went away), running a caller's function
 * inside BEGIN/COMMIT, retrying it on serialization failures (40001) and deadlocks (40P01) with
 * backoff, classifying errors as transient or permanent, and prepared statements by name.
 *
 * Memory: db_connect allocates, db_close frees. PGresults returned by db_exec* belong to the
 * caller (PQclear). Not thread-safe: one db per loop.
 */
#ifndef ORDERPIPE_DB_H
#define ORDERPIPE_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "db_node.h"
#include "status.h"

typedef struct db db;

/* Connects to `url` (a libpq conninfo or URI) with application_name `app`. On failure returns
 * OP_ERR_TRANSIENT with *out still allocated in the closed state (db_reconnect may be called). */
op_status db_connect(db **out, const char *url, const char *app);
void db_close(db *d);

PGconn *db_conn(db *d);
bool db_is_open(const db *d);
op_status db_reconnect(db *d);
uint64_t db_reconnect_count(const db *d);
/* The server of the current (or last) connection and how often a reconnect moved (borrowed). */
const db_node *db_server(const db *d);

/* The last error message and SQLSTATE ("" if none); valid until the next call on d. */
const char *db_last_error(const db *d);
const char *db_last_sqlstate(const db *d);

/* Runs `sql` with text parameters. Returns the result (PGRES_COMMAND_OK or TUPLES_OK) or NULL on
 * error, with *st (may be NULL) set to OP_ERR_TRANSIENT for connection loss, serialization
 * failure, deadlock, lock timeout, admin shutdown, a server turned read-only (the connection is
 * then closed, so the next reconnect finds the new primary), and OP_ERR_PERMANENT otherwise. */
PGresult *db_exec(db *d, const char *sql, int nparams, const char *const *params, op_status *st);

/* Like db_exec for a statement prepared once per connection under `name` (re-prepared after a
 * reconnect). `name` and `sql` must be string literals or otherwise outlive d. */
PGresult *db_exec_prepared(db *d, const char *name, const char *sql, int nparams,
                           const char *const *params, op_status *st);

/* A PostgreSQL array literal built one element at a time, for passing a batch's ids as one
 * `$n::type[]` parameter. Each element is quoted and escaped, so any text is one element. */
typedef struct db_array {
    char *text; /* "{...}" once db_array_text has closed it; owned (db_array_free) */
    size_t len, cap;
    int n;
} db_array;

void db_array_init(db_array *a);
void db_array_append(db_array *a, const char *element);
/* The literal ("{}" when empty); valid until the next append or db_array_free. */
const char *db_array_text(db_array *a);
void db_array_free(db_array *a);

/* db_exec_prepared for a statement that changes rows: *rows (may be NULL) gets how many. */
op_status db_exec_prepared_count(db *d, const char *name, const char *sql, int nparams,
                                 const char *const *params, long *rows);

/* Runs prepared statement `sql` (under `name`), whose $1 is a retention in seconds and $2 a row
 * limit (`batch`, <= 0: 1000), and reports the rows it deleted in *deleted (may be NULL): the
 * retention sweeps of the inbox and the outbox delete in small batches so that a sweep never
 * holds locks for long. */
op_status db_prune(db *d, const char *name, const char *sql, long retention_s, int batch,
                   long *deleted);

/* Runs a command and discards its result. */
op_status db_command(db *d, const char *sql, int nparams, const char *const *params);

/* The body of a transaction: runs statements on d and returns OP_OK to commit, anything else to
 * roll back. It may run more than once (after a serialization failure), so it must not have
 * effects outside the database, and must reset any output it fills at its start. */
typedef op_status (*db_txn_fn)(db *d, void *arg);

/* BEGIN; fn; COMMIT — retried up to `max_attempts` times (0: 5) while the failure is transient
 * and the connection can be re-established. Returns fn's status, or the commit's. */
op_status db_transaction(db *d, db_txn_fn fn, void *arg, int max_attempts);

#endif
