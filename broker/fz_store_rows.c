/*  fz_store_rows: what replies show of the store: a task, its attempts, lists, counts, cost,
    children, a dispatch's payload; see fz_store.h. */

#include "fz_store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *SQL_DISPATCH = "SELECT prompt FROM tasks WHERE id = ?1";
static const char *SQL_LABELS = "SELECT key, value FROM task_labels WHERE task = ?1 ORDER BY key";

static void s_encode_labels(fz_store_t *self, uint64_t id, fz_enc_t *e)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_LABELS);
    fz_enc_t *m = fz_enc_new_map();
    while (st && m) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *k = (const char *)sqlite3_column_text(st, 0);
            fz_enc_str(m, k, (const char *)sqlite3_column_text(st, 1));
        }
        sqlite3_reset(st);
        break;
    }
    if (m)
        fz_enc_sub(e, "labels", &m);
}

int fz_store_encode_dispatch(fz_store_t *self, uint64_t id, fz_enc_t *e)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_DISPATCH);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        fz_enc_strn(e, "prompt", (const char *)sqlite3_column_text(st, 0),
                    (size_t)sqlite3_column_bytes(st, 0));
        rc = 0;
    }
    sqlite3_reset(st);
    if (rc == 0)
        s_encode_labels(self, id, e);
    return rc;
}

/* How each column of a row becomes a field of a reply object. */
typedef enum { COL_INT, COL_UINT, COL_FLOAT, COL_STR, COL_BIN, COL_MSGPACK, COL_BOOL } col_kind_t;

static void s_encode_column(sqlite3_stmt *st, int i, col_kind_t kind, fz_enc_t *e)
{
    const char *key = sqlite3_column_name(st, i);
    switch (kind) {
    case COL_INT:
        fz_enc_int(e, key, sqlite3_column_int64(st, i));
        break;
    case COL_UINT: {
        sqlite3_int64 v = sqlite3_column_int64(st, i);
        fz_enc_uint(e, key, v < 0 ? 0 : (uint64_t)v);
        break;
    }
    case COL_FLOAT:
        fz_enc_float(e, key, sqlite3_column_double(st, i));
        break;
    case COL_STR:
        fz_enc_strn(e, key, (const char *)sqlite3_column_text(st, i),
                    (size_t)sqlite3_column_bytes(st, i));
        break;
    case COL_BIN: {
        const void *b = sqlite3_column_blob(st, i);
        fz_enc_bin(e, key, b ? b : "", (size_t)sqlite3_column_bytes(st, i));
        break;
    }
    case COL_BOOL:
        fz_enc_bool(e, key, sqlite3_column_int64(st, i) != 0);
        break;
    case COL_MSGPACK: {
        const void *b = sqlite3_column_blob(st, i);
        if (b)
            fz_enc_raw(e, key, b, (size_t)sqlite3_column_bytes(st, i));
        else
            fz_enc_array(e, key, 0);
        break;
    }
    }
}

#define TASK_COLS                                                                                  \
    "id, state, priority, model, name, timeout, max_cost, retries, fallback, after, after_any,"    \
    " parent, attempts, created, updated, worker, outcome, exit_code, cost_usd, tokens_in,"        \
    " tokens_out, summary, hold_reason, deadline, class, tokens_cache_read, tokens_cache_write,"   \
    " stall, stall_kill, not_before"
static const col_kind_t s_task_kinds[] = {
    COL_UINT,    COL_STR,     COL_INT,     COL_STR,  COL_STR,  COL_UINT,  COL_FLOAT, COL_UINT,
    COL_MSGPACK, COL_MSGPACK, COL_MSGPACK, COL_UINT, COL_UINT, COL_FLOAT, COL_FLOAT, COL_STR,
    COL_STR,     COL_INT,     COL_FLOAT,   COL_UINT, COL_UINT, COL_STR,   COL_STR,   COL_FLOAT,
    COL_STR,     COL_UINT,    COL_UINT,    COL_UINT, COL_UINT, COL_FLOAT};
#define TASK_NCOLS ((int)(sizeof s_task_kinds / sizeof *s_task_kinds))

static const char *SQL_TASK_GET = "SELECT " TASK_COLS ", prompt FROM tasks WHERE id = ?1";

fz_err_t fz_store_encode_task(fz_store_t *self, uint64_t id, fz_enc_t *e, const char *key,
                              fz_store_decorate_fn *fn, void *arg)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_TASK_GET);
    if (!st)
        return FZ_EUNAVAILABLE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return FZ_ENOTFOUND;
    }
    fz_enc_t *t = fz_enc_new_map();
    for (int i = 0; i < TASK_NCOLS; i++)
        s_encode_column(st, i, s_task_kinds[i], t);
    s_encode_column(st, TASK_NCOLS, COL_STR, t);
    sqlite3_reset(st);
    s_encode_labels(self, id, t);
    if (fn)
        fn(arg, id, t);
    fz_enc_sub(e, key, &t);
    return FZ_OK;
}

/* Output tails of attempts numbered ?2 or less are left out (the reply must fit a frame). */
static const char *SQL_ATTEMPTS =
    "SELECT n, worker, model, started, ended, outcome, exit_code, signal, duration_ms,"
    " cost_usd, tokens_in, tokens_out, summary,"
    " CASE WHEN n > ?2 THEN output ELSE X'' END AS output, log, reserved,"
    " n <= ?2 AND length(output) > 0 AS output_dropped, class, reset_at, tokens_cache_read,"
    " tokens_cache_write FROM attempts WHERE task = ?1 ORDER BY n";
static const char *SQL_ATTEMPT_SIZES =
    "SELECT n, length(output) + length(summary) + length(log) + 200 FROM attempts WHERE task = ?1"
    " ORDER BY n DESC";
/* A `get` reply stays under this many bytes of attempts (FZ_MAX_FRAME is 4 MiB). */
#define FZ_ATTEMPTS_BYTES (3u * 1024 * 1024)

/* The newest attempts keep their output tails while they fit; older ones are cut. */
static int64_t s_output_cutoff(fz_store_t *self, uint64_t id)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_ATTEMPT_SIZES);
    if (!st)
        return 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int64_t cutoff = 0, bytes = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        bytes += sqlite3_column_int64(st, 1);
        if (bytes > FZ_ATTEMPTS_BYTES) {
            cutoff = sqlite3_column_int64(st, 0);
            break;
        }
    }
    sqlite3_reset(st);
    return cutoff;
}
static const col_kind_t s_attempt_kinds[] = {
    COL_UINT, COL_STR,   COL_STR,   COL_FLOAT, COL_FLOAT, COL_STR,  COL_INT,
    COL_UINT, COL_UINT,  COL_FLOAT, COL_UINT,  COL_UINT,  COL_STR,  COL_BIN,
    COL_STR,  COL_FLOAT, COL_BOOL,  COL_STR,   COL_FLOAT, COL_UINT, COL_UINT};

fz_err_t fz_store_encode_attempts(fz_store_t *self, uint64_t id, fz_enc_t *e, const char *key)
{
    int64_t cutoff = s_output_cutoff(self, id);
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_ATTEMPTS);
    if (!st)
        return FZ_EUNAVAILABLE;
    /* Rows first: msgpack wants the array length up front. */
    size_t n = 0, cap = 16;
    fz_enc_t **rows = malloc(cap * sizeof *rows);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, cutoff);
    while (rows && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            fz_enc_t **more = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!more)
                break;
            rows = more;
        }
        fz_enc_t *a = fz_enc_new_map();
        for (int i = 0; i < (int)(sizeof s_attempt_kinds / sizeof *s_attempt_kinds); i++)
            s_encode_column(st, i, s_attempt_kinds[i], a);
        rows[n++] = a;
    }
    sqlite3_reset(st);
    if (!rows)
        return FZ_EUNAVAILABLE;
    fz_enc_array(e, key, n);
    for (size_t i = 0; i < n; i++)
        fz_enc_sub(e, NULL, &rows[i]);
    free(rows);
    return FZ_OK;
}

/* Lists carry the prompt's first 80 characters, so unnamed tasks can be told apart. */
static const char *SQL_LIST_ALL =
    "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt FROM tasks ORDER BY id"
    " LIMIT ?1 OFFSET ?3";
static const char *SQL_LIST_STATE = "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt"
                                    " FROM tasks WHERE state = ?2 ORDER BY id LIMIT ?1 OFFSET ?3";
/* tail: the newest first, so that a cut at FZ_LIST_BYTES drops the oldest; sent by id. */
static const char *SQL_TAIL_ALL =
    "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt FROM tasks ORDER BY id DESC"
    " LIMIT ?1 OFFSET ?3";
static const char *SQL_TAIL_STATE = "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt"
                                    " FROM tasks WHERE state = ?2 ORDER BY id DESC LIMIT ?1"
                                    " OFFSET ?3";
static const char *SQL_COUNT_ALL = "SELECT COUNT(*) FROM tasks";
static const char *SQL_COUNT_STATE = "SELECT COUNT(*) FROM tasks WHERE state = ?1";

static uint64_t s_count(fz_store_t *self, const char *state)
{
    sqlite3_stmt *st = fz_sql_stmt(self, state ? SQL_COUNT_STATE : SQL_COUNT_ALL);
    if (!st)
        return 0;
    if (state)
        fz_sql_bind_text(st, 1, state);
    uint64_t n = sqlite3_step(st) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return n;
}

/* A list reply must fit in one frame (FZ_MAX_FRAME): rows stop at this many bytes, and the
   reply says it was cut. */
#define FZ_LIST_BYTES (3u * 1024 * 1024)

fz_err_t fz_store_encode_list(fz_store_t *self, const char *state, uint64_t limit, bool tail,
                              fz_enc_t *e, fz_store_decorate_fn *fn, void *arg)
{
    uint64_t total = s_count(self, state);
    sqlite3_stmt *st = fz_sql_stmt(self, tail ? (state ? SQL_TAIL_STATE : SQL_TAIL_ALL)
                                              : (state ? SQL_LIST_STATE : SQL_LIST_ALL));
    if (!st)
        return FZ_EUNAVAILABLE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(limit < total ? limit : total));
    if (state)
        fz_sql_bind_text(st, 2, state);
    sqlite3_bind_int64(st, 3, 0);
    /* Rows are built first: msgpack wants the array's length before its elements. */
    size_t n = 0, cap = 256, bytes = 0;
    fz_enc_t **rows = malloc(cap * sizeof *rows);
    bool truncated = false;
    while (rows && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            fz_enc_t **more = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!more)
                break;
            rows = more;
        }
        fz_enc_t *t = fz_enc_new_map();
        for (int i = 0; i < TASK_NCOLS; i++)
            s_encode_column(st, i, s_task_kinds[i], t);
        s_encode_column(st, TASK_NCOLS, COL_STR, t);
        if (fn)
            fn(arg, (uint64_t)sqlite3_column_int64(st, 0), t);
        size_t len = 0;
        fz_enc_data(t, &len);
        if (bytes + len > FZ_LIST_BYTES) {
            fz_enc_destroy(&t);
            truncated = true;
            break;
        }
        bytes += len;
        rows[n++] = t;
    }
    sqlite3_reset(st);
    if (!rows)
        return FZ_EUNAVAILABLE;
    fz_enc_array(e, "tasks", n);
    for (size_t i = 0; i < n; i++)
        fz_enc_sub(e, NULL, &rows[tail ? n - 1 - i : i]);
    free(rows);
    fz_enc_uint(e, "total", total);
    if (truncated)
        fz_enc_bool(e, "truncated", true);
    return FZ_OK;
}

static const char *SQL_COUNTS = "SELECT state, COUNT(*) FROM tasks GROUP BY state";

fz_err_t fz_store_encode_counts(fz_store_t *self, fz_enc_t *e)
{
    uint64_t counts[FZ_STATE_COUNT] = {0};
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_COUNTS);
    if (!st)
        return FZ_EUNAVAILABLE;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int s = fz_state_from_name((const char *)sqlite3_column_text(st, 0));
        if (s >= 0)
            counts[s] = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    fz_enc_map(e, "counts", FZ_STATE_COUNT);
    for (int s = 0; s < FZ_STATE_COUNT; s++) {
        fz_enc_str(e, NULL, fz_state_name((fz_state_t)s));
        fz_enc_uint(e, NULL, counts[s]);
    }
    return FZ_OK;
}

#define COST_AGG                                                                                   \
    " COUNT(*), SUM(a.cost_usd), SUM(a.tokens_in), SUM(a.tokens_out), SUM(a.duration_ms)"          \
    " FROM attempts a"
static const char *SQL_COST_DAY =
    "SELECT date(a.ended, 'unixepoch')," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0"
    " GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_MODEL =
    "SELECT a.model," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_TASK =
    "SELECT CAST(a.task AS TEXT)," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0"
    " GROUP BY a.task ORDER BY a.task";
static const char *SQL_COST_CLASS =
    "SELECT a.class," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_WORKER =
    "SELECT a.worker," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_LABEL = "SELECT COALESCE(l.value, '')," COST_AGG
                                    " LEFT JOIN task_labels l ON l.task = a.task AND l.key = ?2"
                                    " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";

fz_err_t fz_store_encode_cost(fz_store_t *self, const char *by, const char *label_key, double since,
                              fz_enc_t *e)
{
    const char *sql = strcmp(by, "day") == 0      ? SQL_COST_DAY
                      : strcmp(by, "model") == 0  ? SQL_COST_MODEL
                      : strcmp(by, "task") == 0   ? SQL_COST_TASK
                      : strcmp(by, "worker") == 0 ? SQL_COST_WORKER
                      : strcmp(by, "label") == 0  ? SQL_COST_LABEL
                      : strcmp(by, "class") == 0  ? SQL_COST_CLASS
                                                  : NULL;
    if (!sql)
        return FZ_EINVALID;
    sqlite3_stmt *st = fz_sql_stmt(self, sql);
    if (!st)
        return FZ_EUNAVAILABLE;
    sqlite3_bind_double(st, 1, since);
    if (sql == SQL_COST_LABEL)
        fz_sql_bind_text(st, 2, label_key);
    /* Rows are few (days, models, labels) or bounded by tasks; build them first. */
    size_t n = 0, cap = 64;
    fz_enc_t **rows = malloc(cap * sizeof *rows);
    double total = 0;
    while (rows && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            fz_enc_t **more = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!more)
                break;
            rows = more;
        }
        fz_enc_t *r = fz_enc_new_map();
        fz_enc_str(r, "key", (const char *)sqlite3_column_text(st, 0));
        fz_enc_uint(r, "attempts", (uint64_t)sqlite3_column_int64(st, 1));
        fz_enc_float(r, "cost_usd", sqlite3_column_double(st, 2));
        fz_enc_uint(r, "tokens_in", (uint64_t)sqlite3_column_int64(st, 3));
        fz_enc_uint(r, "tokens_out", (uint64_t)sqlite3_column_int64(st, 4));
        fz_enc_uint(r, "duration_ms", (uint64_t)sqlite3_column_int64(st, 5));
        total += sqlite3_column_double(st, 2);
        rows[n++] = r;
    }
    sqlite3_reset(st);
    fz_enc_array(e, "rows", n);
    for (size_t i = 0; i < n; i++)
        fz_enc_sub(e, NULL, &rows[i]);
    free(rows);
    fz_enc_float(e, "total_cost", total);
    return FZ_OK;
}

static const char *SQL_CHILDREN = "SELECT id FROM tasks WHERE parent = ?1 ORDER BY id";

void fz_store_encode_children(fz_store_t *self, uint64_t id, fz_enc_t *e, const char *key)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_CHILDREN);
    size_t n = 0, cap = 64;
    uint64_t *ids = malloc(cap * sizeof *ids);
    if (st && ids) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (n == cap) {
                uint64_t *more = realloc(ids, (cap *= 2) * sizeof *ids);
                if (!more)
                    break;
                ids = more;
            }
            ids[n++] = (uint64_t)sqlite3_column_int64(st, 0);
        }
        sqlite3_reset(st);
    }
    fz_enc_array(e, key, n);
    for (size_t i = 0; i < n; i++)
        fz_enc_uint(e, NULL, ids[i]);
    free(ids);
}
