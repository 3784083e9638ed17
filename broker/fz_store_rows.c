/*  fz_store_rows: the rows views are built from (a task, its attempts, lists, labels, counts,
    cost, a prompt); see fz_store_rows.h. */

#include "fz_store_rows.h"
#include "fz_store_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { ROWS_TASK, ROWS_ATTEMPT, ROWS_LABEL, ROWS_COST } rows_kind_t;

struct fz_store_rows_t {
    sqlite3_stmt *st; /* one of the store's cached statements, bound and stepping */
    rows_kind_t kind;
};

static fz_store_rows_t *s_rows_new(sqlite3_stmt *st, rows_kind_t kind)
{
    fz_store_rows_t *self = st ? malloc(sizeof *self) : NULL;
    if (!self) {
        if (st)
            sqlite3_reset(st);
        return NULL;
    }
    self->st = st;
    self->kind = kind;
    return self;
}

void fz_store_rows_destroy(fz_store_rows_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sqlite3_reset((*self_p)->st);
    free(*self_p);
    *self_p = NULL;
}

static bool s_next(fz_store_rows_t *self, rows_kind_t kind)
{
    assert(self->kind == kind);
    return sqlite3_step(self->st) == SQLITE_ROW;
}

/* ---------------------------------------------------------------- column readers */

static const char *s_text(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

/* An unsigned column; a negative value (never written) reads as 0. */
static uint64_t s_uint(sqlite3_stmt *st, int i)
{
    sqlite3_int64 v = sqlite3_column_int64(st, i);
    return v < 0 ? 0 : (uint64_t)v;
}

/* A blob column: its bytes (NULL when NULL or empty) and length. */
static const void *s_blob(sqlite3_stmt *st, int i, size_t *len)
{
    const void *b = sqlite3_column_blob(st, i);
    *len = b ? (size_t)sqlite3_column_bytes(st, i) : 0;
    return b;
}

/* ---------------------------------------------------------------- tasks */

#define TASK_COLS                                                                                  \
    "id, state, priority, model, name, timeout, max_cost, retries, fallback, after, after_any,"    \
    " parent, attempts, created, updated, worker, outcome, exit_code, cost_usd, tokens_in,"        \
    " tokens_out, summary, hold_reason, deadline, class, tokens_cache_read, tokens_cache_write,"   \
    " stall, stall_kill, not_before, repo, base, check_cmd, keep_worktree, best_of, branch,"       \
    " head_commit, submitted_by"

static const char *SQL_TASK_GET = "SELECT " TASK_COLS ", prompt FROM tasks WHERE id = ?1";
/* Lists carry the prompt's first 80 characters, so unnamed tasks can be told apart. */
static const char *SQL_LIST_ALL =
    "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt FROM tasks ORDER BY id"
    " LIMIT ?1 OFFSET ?3";
static const char *SQL_LIST_STATE = "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt"
                                    " FROM tasks WHERE state = ?2 ORDER BY id LIMIT ?1 OFFSET ?3";
/* tail: the newest first, so that a reader who stops early keeps the newest. */
static const char *SQL_TAIL_ALL =
    "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt FROM tasks ORDER BY id DESC"
    " LIMIT ?1 OFFSET ?3";
static const char *SQL_TAIL_STATE = "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt"
                                    " FROM tasks WHERE state = ?2 ORDER BY id DESC LIMIT ?1"
                                    " OFFSET ?3";
static const char *SQL_COUNT_ALL = "SELECT COUNT(*) FROM tasks";
static const char *SQL_COUNT_STATE = "SELECT COUNT(*) FROM tasks WHERE state = ?1";

fz_store_rows_t *fz_store_task(fz_store_t *self, uint64_t id)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_TASK_GET);
    if (st)
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return s_rows_new(st, ROWS_TASK);
}

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

fz_store_rows_t *fz_store_list(fz_store_t *self, const char *state, uint64_t limit, bool tail,
                               const uint64_t *known, uint64_t *total)
{
    *total = known ? *known : s_count(self, state);
    sqlite3_stmt *st = fz_sql_stmt(self, tail ? (state ? SQL_TAIL_STATE : SQL_TAIL_ALL)
                                              : (state ? SQL_LIST_STATE : SQL_LIST_ALL));
    if (st) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)(limit < *total ? limit : *total));
        if (state)
            fz_sql_bind_text(st, 2, state);
        sqlite3_bind_int64(st, 3, 0);
    }
    return s_rows_new(st, ROWS_TASK);
}

bool fz_store_rows_task(fz_store_rows_t *rows, fz_store_task_row_t *row)
{
    if (!s_next(rows, ROWS_TASK))
        return false;
    sqlite3_stmt *st = rows->st;
    *row = (fz_store_task_row_t){
        .id = s_uint(st, 0),
        .state = s_text(st, 1),
        .priority = sqlite3_column_int64(st, 2),
        .model = s_text(st, 3),
        .name = s_text(st, 4),
        .timeout = s_uint(st, 5),
        .max_cost = sqlite3_column_double(st, 6),
        .retries = s_uint(st, 7),
        .parent = s_uint(st, 11),
        .attempts = s_uint(st, 12),
        .created = sqlite3_column_double(st, 13),
        .updated = sqlite3_column_double(st, 14),
        .worker = s_text(st, 15),
        .outcome = s_text(st, 16),
        .exit_code = sqlite3_column_int64(st, 17),
        .cost_usd = sqlite3_column_double(st, 18),
        .tokens_in = s_uint(st, 19),
        .tokens_out = s_uint(st, 20),
        .summary = s_text(st, 21),
        .hold_reason = s_text(st, 22),
        .deadline = sqlite3_column_double(st, 23),
        .class_name = s_text(st, 24),
        .tokens_cache_read = s_uint(st, 25),
        .tokens_cache_write = s_uint(st, 26),
        .stall = s_uint(st, 27),
        .stall_kill = s_uint(st, 28),
        .not_before = sqlite3_column_double(st, 29),
        .repo = s_text(st, 30),
        .base = s_text(st, 31),
        .check = s_text(st, 32),
        .keep_worktree = sqlite3_column_int(st, 33) != 0,
        .best_of = s_uint(st, 34),
        .branch = s_text(st, 35),
        .head_commit = s_text(st, 36),
        .submitted_by = s_text(st, 37),
    };
    row->fallback = s_blob(st, 8, &row->fallback_len);
    row->after = s_blob(st, 9, &row->after_len);
    row->after_any = s_blob(st, 10, &row->after_any_len);
    /* The text first: sqlite3_column_bytes then counts the text's bytes. */
    row->prompt = s_text(st, 38);
    row->prompt_len = (size_t)sqlite3_column_bytes(st, 38);
    return true;
}

/* ---------------------------------------------------------------- attempts */

/* Output tails of attempts numbered ?2 or less are left out (the reply must fit a frame). */
static const char *SQL_ATTEMPTS =
    "SELECT n, worker, model, started, ended, outcome, exit_code, signal, duration_ms,"
    " cost_usd, tokens_in, tokens_out, summary,"
    " CASE WHEN n > ?2 THEN output ELSE X'' END AS output, log, reserved,"
    " n <= ?2 AND length(output) > 0 AS output_dropped, class, reset_at, tokens_cache_read,"
    " tokens_cache_write, branch, base_commit, head_commit, files, insertions, deletions,"
    " check_status, check_exit, CASE WHEN n > ?2 THEN check_output ELSE X'' END,"
    " charged"
    " FROM attempts WHERE task = ?1 ORDER BY n";
static const char *SQL_ATTEMPT_SIZES = "SELECT n, length(output) + length(summary) + length(log) + "
                                       "ifnull(length(check_output), 0) + 400"
                                       " FROM attempts WHERE task = ?1"
                                       " ORDER BY n DESC";

/* The newest attempts keep their output tails while they fit; older ones are cut. */
static int64_t s_output_cutoff(fz_store_t *self, uint64_t id, uint64_t output_bytes)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_ATTEMPT_SIZES);
    if (!st)
        return 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int64_t cutoff = 0, bytes = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        bytes += sqlite3_column_int64(st, 1);
        if (bytes > (int64_t)output_bytes) {
            cutoff = sqlite3_column_int64(st, 0);
            break;
        }
    }
    sqlite3_reset(st);
    return cutoff;
}

fz_store_rows_t *fz_store_attempts(fz_store_t *self, uint64_t id, uint64_t output_bytes)
{
    int64_t cutoff = s_output_cutoff(self, id, output_bytes);
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_ATTEMPTS);
    if (st) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_int64(st, 2, cutoff);
    }
    return s_rows_new(st, ROWS_ATTEMPT);
}

bool fz_store_rows_attempt(fz_store_rows_t *rows, fz_store_attempt_row_t *row)
{
    if (!s_next(rows, ROWS_ATTEMPT))
        return false;
    sqlite3_stmt *st = rows->st;
    *row = (fz_store_attempt_row_t){
        .n = s_uint(st, 0),
        .worker = s_text(st, 1),
        .model = s_text(st, 2),
        .started = sqlite3_column_double(st, 3),
        .ended = sqlite3_column_double(st, 4),
        .outcome = s_text(st, 5),
        .exit_code = sqlite3_column_int64(st, 6),
        .signal = s_uint(st, 7),
        .duration_ms = s_uint(st, 8),
        .cost_usd = sqlite3_column_double(st, 9),
        .tokens_in = s_uint(st, 10),
        .tokens_out = s_uint(st, 11),
        .summary = s_text(st, 12),
        .log = s_text(st, 14),
        .reserved = sqlite3_column_double(st, 15),
        .output_dropped = sqlite3_column_int64(st, 16) != 0,
        .class_name = s_text(st, 17),
        .reset_at = sqlite3_column_double(st, 18),
        .tokens_cache_read = s_uint(st, 19),
        .suspect = sqlite3_column_type(st, 30) != SQLITE_NULL,
        .charged = sqlite3_column_double(st, 30),
        .tokens_cache_write = s_uint(st, 20),
        .branch = s_text(st, 21),
        .base_commit = s_text(st, 22),
        .head_commit = s_text(st, 23),
        .files = s_uint(st, 24),
        .insertions = s_uint(st, 25),
        .deletions = s_uint(st, 26),
        .check_status = s_text(st, 27),
        .check_exit = sqlite3_column_int64(st, 28),
    };
    row->check_output = s_blob(st, 29, &row->check_output_len);
    if (!row->check_output)
        row->check_output = "";
    row->output = s_blob(st, 13, &row->output_len);
    if (!row->output)
        row->output = "";
    return true;
}

/* ---------------------------------------------------------------- labels, prompt */

static const char *SQL_LABELS = "SELECT key, value FROM task_labels WHERE task = ?1 ORDER BY key";

fz_store_rows_t *fz_store_labels(fz_store_t *self, uint64_t id)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_LABELS);
    if (st)
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    return s_rows_new(st, ROWS_LABEL);
}

bool fz_store_rows_label(fz_store_rows_t *rows, fz_store_label_row_t *row)
{
    if (!s_next(rows, ROWS_LABEL))
        return false;
    row->key = s_text(rows->st, 0);
    row->value = s_text(rows->st, 1);
    return true;
}

static const char *SQL_PROMPT = "SELECT prompt FROM tasks WHERE id = ?1";

char *fz_store_prompt(fz_store_t *self, uint64_t id, size_t *len)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_PROMPT);
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    char *prompt = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *text = s_text(st, 0);
        *len = (size_t)sqlite3_column_bytes(st, 0);
        if ((prompt = malloc(*len + 1))) {
            memcpy(prompt, text, *len);
            prompt[*len] = 0;
        }
    }
    sqlite3_reset(st);
    return prompt;
}

/* ---------------------------------------------------------------- counts, cost */

static const char *SQL_COUNTS = "SELECT state, COUNT(*) FROM tasks GROUP BY state";

int fz_store_counts(fz_store_t *self, uint64_t counts[FZ_STATE_COUNT])
{
    memset(counts, 0, FZ_STATE_COUNT * sizeof *counts);
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_COUNTS);
    if (!st)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int s = fz_state_from_name((const char *)sqlite3_column_text(st, 0));
        if (s >= 0)
            counts[s] = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return 0;
}

#define COST_AGG                                                                                   \
    " COUNT(*), SUM(COALESCE(a.charged, a.cost_usd)), SUM(a.tokens_in), SUM(a.tokens_out),"        \
    " SUM(a.duration_ms)"                                                                          \
    " FROM attempts a"
/* By fz_store_cost_by_t. */
static const char *const s_cost_sql[FZ_STORE_COST_COUNT] = {
    [FZ_STORE_COST_DAY] = "SELECT date(a.ended, 'unixepoch')," COST_AGG
                          " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1",
    [FZ_STORE_COST_MODEL] =
        "SELECT a.model," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1",
    [FZ_STORE_COST_TASK] = "SELECT CAST(a.task AS TEXT)," COST_AGG
                           " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY a.task ORDER BY a.task",
    [FZ_STORE_COST_WORKER] =
        "SELECT a.worker," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1",
    [FZ_STORE_COST_LABEL] = "SELECT COALESCE(l.value, '')," COST_AGG
                            " LEFT JOIN task_labels l ON l.task = a.task AND l.key = ?2"
                            " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1",
    [FZ_STORE_COST_CLASS] =
        "SELECT a.class," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1",
};

fz_store_rows_t *fz_store_cost(fz_store_t *self, fz_store_cost_by_t by, const char *label_key,
                               double since)
{
    if ((unsigned)by >= FZ_STORE_COST_COUNT)
        return NULL;
    sqlite3_stmt *st = fz_sql_stmt(self, s_cost_sql[by]);
    if (st) {
        sqlite3_bind_double(st, 1, since);
        if (by == FZ_STORE_COST_LABEL)
            fz_sql_bind_text(st, 2, label_key);
    }
    return s_rows_new(st, ROWS_COST);
}

bool fz_store_rows_cost(fz_store_rows_t *rows, fz_store_cost_row_t *row)
{
    if (!s_next(rows, ROWS_COST))
        return false;
    sqlite3_stmt *st = rows->st;
    *row = (fz_store_cost_row_t){.key = s_text(st, 0),
                                 .attempts = (uint64_t)sqlite3_column_int64(st, 1),
                                 .cost_usd = sqlite3_column_double(st, 2),
                                 .tokens_in = (uint64_t)sqlite3_column_int64(st, 3),
                                 .tokens_out = (uint64_t)sqlite3_column_int64(st, 4),
                                 .duration_ms = (uint64_t)sqlite3_column_int64(st, 5)};
    return true;
}
