/* db: a libpq connection with retried transactions (see db.h). */
#include "db.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "log.h"
#include "mem.h"

/* First size of the set of prepared names; it doubles whenever it is half full, so a lookup
 * stays one or two probes however many statements a program prepares. */
#define DB_PREPARED_MIN 64

struct db {
    PGconn *conn;
    char *url;
    char *app;
    uint64_t reconnects;
    bool connected_once;
    db_node node; /* the server of the current (or last) connection */
    /* Names prepared on this connection: an open-addressing set (NULL = free slot) of pointers
     * to the callers' names, which outlive d (db.h). PostgreSQL refuses to prepare a name twice
     * on one connection, so a name missing here would fail every later call as permanent. */
    const char **prepared;
    size_t prepared_cap; /* a power of two, or 0 before the first statement */
    size_t nprepared;
    char error[512];
    char sqlstate[6];
};

PGconn *db_conn(db *d) { return d ? d->conn : NULL; }
bool db_is_open(const db *d) { return d && d->conn && PQstatus(d->conn) == CONNECTION_OK; }
uint64_t db_reconnect_count(const db *d) { return d ? d->reconnects : 0; }
const db_node *db_server(const db *d) { return &d->node; }
const char *db_last_error(const db *d) { return d ? d->error : "no database"; }
const char *db_last_sqlstate(const db *d) { return d ? d->sqlstate : ""; }

static void db_set_error(db *d, const char *msg, const char *state)
{
    snprintf(d->error, sizeof d->error, "%s", msg ? msg : "unknown error");
    size_t n = strlen(d->error);
    while (n > 0 && (d->error[n - 1] == '\n' || d->error[n - 1] == ' '))
        d->error[--n] = '\0';
    snprintf(d->sqlstate, sizeof d->sqlstate, "%s", state ? state : "");
}

op_status db_reconnect(db *d)
{
    if (d->conn)
        PQfinish(d->conn);
    /* A new connection has no prepared statements. */
    if (d->prepared)
        memset(d->prepared, 0, d->prepared_cap * sizeof *d->prepared);
    d->nprepared = 0;
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {d->url, d->app, "5", NULL};
    d->conn = PQconnectdbParams(keys, vals, 1);
    if (!d->conn || PQstatus(d->conn) != CONNECTION_OK) {
        db_set_error(d, d->conn ? PQerrorMessage(d->conn) : "out of memory", "08001");
        return OP_ERR_TRANSIENT;
    }
    if (d->connected_once)
        d->reconnects++;
    d->connected_once = true;
    char was[sizeof d->node.host + sizeof d->node.port + 1];
    snprintf(was, sizeof was, "%s:%s", d->node.host, d->node.port);
    if (db_node_note(&d->node, d->conn))
        log_info(NULL, "database connection moved from %s to %s:%s (%s)", was, d->node.host,
                 d->node.port, d->app);
    d->error[0] = '\0';
    d->sqlstate[0] = '\0';
    return OP_OK;
}

op_status db_connect(db **out, const char *url, const char *app)
{
    db *d = mem_calloc(1, sizeof *d);
    *out = d;
    d->url = mem_strdup(url ? url : "");
    d->app = mem_strdup(app ? app : "orderpipe");
    return db_reconnect(d);
}

void db_close(db *d)
{
    if (!d)
        return;
    if (d->conn)
        PQfinish(d->conn);
    free(d->prepared);
    free(d->url);
    free(d->app);
    free(d);
}

/* Transient: the connection went away, or the server asks us to try again. */
static bool db_state_transient(const char *s)
{
    if (!s || !*s)
        return true; /* no SQLSTATE: the connection itself failed */
    return strncmp(s, "08", 2) == 0 || strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 ||
           strcmp(s, "55P03") == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
           strcmp(s, "57P03") == 0 || strcmp(s, "53300") == 0;
}

/* The server turned read-only under an open connection: the primary was demoted (a switchover),
 * and only a new connection finds the new one. */
static bool db_state_demoted(const char *s) { return s && strcmp(s, "25006") == 0; }

/* Checks a result; on error records it and returns NULL (the result is cleared). */
static PGresult *db_check(db *d, PGresult *r, op_status *st)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
        if (st)
            *st = OP_OK;
        d->sqlstate[0] = '\0'; /* the message of the last failure stays for logging */
        return r;
    }
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(d->conn);
    db_set_error(d, msg, state);
    bool demoted = db_state_demoted(state);
    if (st)
        *st = (db_state_transient(state) || demoted || PQstatus(d->conn) != CONNECTION_OK)
                  ? OP_ERR_TRANSIENT
                  : OP_ERR_PERMANENT;
    if (demoted) { /* closed: callers see the connection down and reconnect */
        PQfinish(d->conn);
        d->conn = NULL;
    }
    PQclear(r);
    return NULL;
}

PGresult *db_exec(db *d, const char *sql, int nparams, const char *const *params, op_status *st)
{
    if (!db_is_open(d)) {
        db_set_error(d, "not connected to the database", "08003");
        if (st)
            *st = OP_ERR_TRANSIENT;
        return NULL;
    }
    PGresult *r = nparams ? PQexecParams(d->conn, sql, nparams, NULL, params, NULL, NULL, 0)
                          : PQexec(d->conn, sql);
    return db_check(d, r, st);
}

/* FNV-1a: names are short literals, and equal names hash alike wherever they are stored. */
static size_t db_name_hash(const char *name)
{
    size_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* The slot of `name` in the set, or the free slot where it belongs. */
static size_t db_prepared_slot(const db *d, const char *name)
{
    assert(d->prepared_cap > 0 && (d->prepared_cap & (d->prepared_cap - 1)) == 0);
    size_t mask = d->prepared_cap - 1, i = db_name_hash(name) & mask;
    while (d->prepared[i] && d->prepared[i] != name && strcmp(d->prepared[i], name) != 0)
        i = (i + 1) & mask;
    return i;
}

static bool db_prepared_has(const db *d, const char *name)
{
    return d->prepared_cap > 0 && d->prepared[db_prepared_slot(d, name)] != NULL;
}

static void db_prepared_add(db *d, const char *name)
{
    if (2 * (d->nprepared + 1) > d->prepared_cap) {
        const char **old = d->prepared;
        size_t old_cap = d->prepared_cap;
        d->prepared_cap = old_cap ? 2 * old_cap : DB_PREPARED_MIN;
        d->prepared = mem_calloc(d->prepared_cap, sizeof *d->prepared);
        for (size_t i = 0; i < old_cap; i++)
            if (old[i])
                d->prepared[db_prepared_slot(d, old[i])] = old[i];
        free(old);
    }
    size_t i = db_prepared_slot(d, name);
    assert(d->prepared[i] == NULL); /* only a name not prepared yet is added */
    d->prepared[i] = name;
    d->nprepared++;
}

PGresult *db_exec_prepared(db *d, const char *name, const char *sql, int nparams,
                           const char *const *params, op_status *st)
{
    if (!db_is_open(d)) {
        db_set_error(d, "not connected to the database", "08003");
        if (st)
            *st = OP_ERR_TRANSIENT;
        return NULL;
    }
    if (!db_prepared_has(d, name)) {
        PGresult *p = db_check(d, PQprepare(d->conn, name, sql, nparams, NULL), st);
        if (!p)
            return NULL;
        PQclear(p);
        db_prepared_add(d, name);
    }
    return db_check(d, PQexecPrepared(d->conn, name, nparams, params, NULL, NULL, 0), st);
}

void db_array_init(db_array *a)
{
    a->cap = 64;
    a->text = mem_alloc(a->cap);
    a->text[0] = '{';
    a->len = 1;
    a->n = 0;
}

/* Room for `more` bytes and the closing "}" with its terminator. */
static void db_array_reserve(db_array *a, size_t more)
{
    if (a->len + more + 2 <= a->cap)
        return;
    while (a->len + more + 2 > a->cap)
        a->cap *= 2;
    a->text = mem_realloc(a->text, a->cap);
}

void db_array_append(db_array *a, const char *element)
{
    assert(a->text && a->len >= 1 && a->text[0] == '{');
    db_array_reserve(a, 2 * strlen(element) + 3);
    if (a->n++ > 0)
        a->text[a->len++] = ',';
    a->text[a->len++] = '"';
    for (const char *p = element; *p; p++) {
        if (*p == '"' || *p == '\\')
            a->text[a->len++] = '\\';
        a->text[a->len++] = *p;
    }
    a->text[a->len++] = '"';
}

const char *db_array_text(db_array *a)
{
    db_array_reserve(a, 0);
    a->text[a->len] = '}';
    a->text[a->len + 1] = '\0';
    return a->text;
}

void db_array_free(db_array *a)
{
    free(a->text);
    a->text = NULL;
}

op_status db_exec_prepared_count(db *d, const char *name, const char *sql, int nparams,
                                 const char *const *params, long *rows)
{
    op_status st;
    PGresult *r = db_exec_prepared(d, name, sql, nparams, params, &st);
    if (!r)
        return st;
    if (rows)
        *rows = atol(PQcmdTuples(r));
    PQclear(r);
    return OP_OK;
}

op_status db_prune(db *d, const char *name, const char *sql, long retention_s, int batch,
                   long *deleted)
{
    char ret[32], lim[32];
    snprintf(ret, sizeof ret, "%ld", retention_s);
    snprintf(lim, sizeof lim, "%d", batch > 0 ? batch : 1000);
    const char *params[] = {ret, lim};
    return db_exec_prepared_count(d, name, sql, 2, params, deleted);
}

op_status db_command(db *d, const char *sql, int nparams, const char *const *params)
{
    op_status st;
    PGresult *r = db_exec(d, sql, nparams, params, &st);
    PQclear(r);
    return st;
}

/* Rolls back after a failed body; a rollback that fails means the connection is gone. */
static void db_rollback(db *d)
{
    if (!db_is_open(d))
        return;
    char saved[sizeof d->error], state[sizeof d->sqlstate];
    memcpy(saved, d->error, sizeof saved);
    memcpy(state, d->sqlstate, sizeof state);
    PGresult *r = PQexec(d->conn, "rollback");
    PQclear(r);
    memcpy(d->error, saved, sizeof saved);
    memcpy(d->sqlstate, state, sizeof state);
}

op_status db_transaction(db *d, db_txn_fn fn, void *arg, int max_attempts)
{
    assert(d && fn);
    if (max_attempts <= 0)
        max_attempts = 5;
    backoff bo;
    backoff_init(&bo, 5, 500, (unsigned)getpid() ^ (unsigned)time(NULL));
    op_status st = OP_ERR_TRANSIENT;
    for (int attempt = 1; attempt <= max_attempts; attempt++) {
        if (!db_is_open(d) && db_reconnect(d) != OP_OK)
            return OP_ERR_TRANSIENT;
        st = db_command(d, "begin", 0, NULL);
        if (st == OP_OK) {
            st = fn(d, arg);
            if (st == OP_OK) {
                st = db_command(d, "commit", 0, NULL);
                if (st == OP_OK)
                    return OP_OK;
            } else {
                db_rollback(d);
            }
        }
        /* Only a serialization failure or deadlock is worth an immediate retry here; other
         * transient errors (connection loss) go back to the caller, which waits for the
         * server with its own backoff. */
        bool retry = strcmp(d->sqlstate, "40001") == 0 || strcmp(d->sqlstate, "40P01") == 0;
        if (st != OP_ERR_TRANSIENT || !retry)
            return st;
        usleep((useconds_t)backoff_next_ms(&bo) * 1000);
    }
    return st;
}
