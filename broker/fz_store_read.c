/*  fz_store_read: what the broker's memory reads back: live tasks on a restart, one task's
    scheduling fields, the model of an attempt, dependencies and trees, what was spent; see
    fz_store.h. */

#include "fz_store_int.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fz_store_task_model(fz_store_t *self, uint64_t id, uint32_t n, char *model)
{
    char chain[9][65];
    size_t len = fz_store_task_chain(self, id, chain, 9);
    if (len == 0)
        return -1;
    /* Attempt 1 runs the task's model, attempt k+1 fallback k; the last one repeats. */
    size_t k = n > 1 ? n - 1 : 0;
    snprintf(model, 65, "%s", chain[k < len ? k : len - 1]);
    return 0;
}

/* ---------------------------------------------------------------- reads */

#define LIVE_COLS                                                                                  \
    "SELECT t.id, t.state, t.priority, t.attempts, t.retries, t.timeout, t.max_cost,"              \
    " t.hold_reason, t.model, COALESCE(a.worker, ''),"                                             \
    " COALESCE(a.reserved, 0), t.model, t.parent, t.deadline, t.updated, t.attempt_base,"          \
    " t.cancel_requested, t.stall, t.stall_kill, t.not_before, t.best_of"                          \
    " FROM tasks t LEFT JOIN attempts a ON a.task = t.id AND a.n = t.attempts"
static const char *SQL_LIVE =
    LIVE_COLS " WHERE t.state IN ('queued','waiting','held','running','retrying') ORDER BY t.id";
static const char *SQL_ONE = LIVE_COLS " WHERE t.id = ?1";

static void s_row_task(sqlite3_stmt *st, fz_task_t *t)
{
    memset(t, 0, sizeof *t);
    t->id = (uint64_t)sqlite3_column_int64(st, 0);
    int state = fz_state_from_name((const char *)sqlite3_column_text(st, 1));
    t->state = state < 0 ? FZ_STATE_QUEUED : (fz_state_t)state;
    t->priority = sqlite3_column_int64(st, 2);
    t->attempt = (uint32_t)sqlite3_column_int64(st, 3);
    t->retries = (uint32_t)sqlite3_column_int64(st, 4);
    t->timeout_s = (uint32_t)sqlite3_column_int64(st, 5);
    t->max_cost = sqlite3_column_double(st, 6);
    snprintf(t->hold_reason, sizeof t->hold_reason, "%s", sqlite3_column_text(st, 7));
    snprintf(t->model, sizeof t->model, "%s", sqlite3_column_text(st, 8));
    t->reserved = sqlite3_column_double(st, 10);
    t->parent = (uint64_t)sqlite3_column_int64(st, 12);
    t->deadline = sqlite3_column_double(st, 13);
    t->queued_at = sqlite3_column_double(st, 14);
    t->attempt_base = (uint32_t)sqlite3_column_int64(st, 15);
    t->cancel_requested = sqlite3_column_int64(st, 16) != 0;
    t->stall_s = (uint32_t)sqlite3_column_int64(st, 17);
    t->stall_kill_s = (uint32_t)sqlite3_column_int64(st, 18);
    t->not_before = sqlite3_column_double(st, 19);
    t->best_of = (uint32_t)sqlite3_column_int64(st, 20);
    t->inherited = INT64_MIN;
}

int fz_store_load_task(fz_store_t *self, uint64_t id, fz_task_t *task)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_ONE);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        s_row_task(st, task);
        snprintf(task->model, sizeof task->model, "%s", sqlite3_column_text(st, 11));
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}

int fz_store_load_live(fz_store_t *self, fz_store_live_fn *fn, void *arg)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_LIVE);
    if (!st)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        fz_task_t t;
        s_row_task(st, &t);
        fn(arg, &t, (const char *)sqlite3_column_text(st, 9));
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static const char *SQL_SPENT = "SELECT COALESCE(SUM(COALESCE(charged, cost_usd)), 0) FROM attempts"
                               " WHERE ended >= ?1 AND ended < ?2";

double fz_store_spent(fz_store_t *self, double from, double to)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_SPENT);
    if (!st)
        return 0;
    sqlite3_bind_double(st, 1, from);
    sqlite3_bind_double(st, 2, to);
    double v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_double(st, 0) : 0;
    sqlite3_reset(st);
    return v;
}

static const char *SQL_ATTEMPT_WORKER = "SELECT worker FROM attempts WHERE task = ?1 AND n = ?2";

int fz_store_attempt_worker(fz_store_t *self, uint64_t id, uint32_t n, char *worker)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_ATTEMPT_WORKER);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(st, 0);
        snprintf(worker, 65, "%s", name ? (const char *)name : "");
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}

static const char *SQL_EXISTS = "SELECT state FROM tasks WHERE id = ?1";

bool fz_store_task_exists(fz_store_t *self, uint64_t id, fz_state_t *state_p)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_EXISTS);
    if (!st)
        return false;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found && state_p) {
        int s = fz_state_from_name((const char *)sqlite3_column_text(st, 0));
        *state_p = s < 0 ? FZ_STATE_FAILED : (fz_state_t)s;
    }
    sqlite3_reset(st);
    return found;
}

/* ---------------------------------------------------------------- dependencies, trees */

static const char *SQL_DEPS_OF =
    "SELECT d.dep, d.kind, t.state FROM deps d JOIN tasks t ON t.id = d.dep WHERE d.task = ?1";
static const char *SQL_DEPENDENTS = "SELECT task, kind FROM deps WHERE dep = ?1";

/* Collects rows first: callers write to the store, which must not happen mid-statement. */
/* Fills out with the rows of a (id, kind[, state]) query about id. */
static int s_pairs(fz_store_t *self, const char *sql, uint64_t id, int ncols, fz_deps_t *out)
{
    out->n = 0;
    sqlite3_stmt *st = fz_sql_stmt(self, sql);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 16;
            fz_dep_t *more = realloc(out->v, cap * sizeof *more);
            if (!more)
                break;
            out->v = more;
            out->cap = cap;
        }
        fz_dep_t *d = &out->v[out->n++];
        d->id = (uint64_t)sqlite3_column_int64(st, 0);
        d->kind = sqlite3_column_int(st, 1);
        d->state = ncols > 2 ? fz_state_from_name((const char *)sqlite3_column_text(st, 2)) : -1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

void fz_deps_free(fz_deps_t *deps)
{
    free(deps->v);
    *deps = (fz_deps_t){0};
}

int fz_store_deps_of(fz_store_t *self, uint64_t task, fz_deps_t *out)
{
    return s_pairs(self, SQL_DEPS_OF, task, 3, out);
}

int fz_store_dependents(fz_store_t *self, uint64_t dep, fz_deps_t *out)
{
    return s_pairs(self, SQL_DEPENDENTS, dep, 2, out);
}

static const char *SQL_SUBTREE = "WITH RECURSIVE sub(id) AS (SELECT id FROM tasks WHERE parent = ?1"
                                 " UNION SELECT t.id FROM tasks t JOIN sub ON t.parent = sub.id)"
                                 " SELECT id, 0 FROM sub ORDER BY id";

int fz_store_subtree(fz_store_t *self, uint64_t task, fz_deps_t *out)
{
    return s_pairs(self, SQL_SUBTREE, task, 2, out);
}

static const char *SQL_CHILDREN = "SELECT id, 0 FROM tasks WHERE parent = ?1 ORDER BY id";

int fz_store_children(fz_store_t *self, uint64_t task, fz_deps_t *out)
{
    return s_pairs(self, SQL_CHILDREN, task, 2, out);
}

static const char *SQL_DEPTH =
    "WITH RECURSIVE up(id, depth) AS (SELECT ?1, 1 UNION ALL"
    " SELECT t.parent, up.depth + 1 FROM tasks t JOIN up ON t.id = up.id"
    " WHERE t.parent != 0 AND up.depth < 1000) SELECT MAX(depth) FROM up";
static const char *SQL_NCHILDREN = "SELECT COUNT(*) FROM tasks WHERE parent = ?1";
static const char *SQL_PARENT_INFO = "SELECT priority FROM tasks WHERE id = ?1";

int fz_store_tree_info(fz_store_t *self, uint64_t task, uint32_t *depth, uint32_t *children,
                       int64_t *priority)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_DEPTH);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    *depth = sqlite3_step(st) == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (!(st = fz_sql_stmt(self, SQL_NCHILDREN)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    *children = sqlite3_step(st) == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (!(st = fz_sql_stmt(self, SQL_PARENT_INFO)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    *priority = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return 0;
}

/* ---------------------------------------------------------------- workspaces */

static const char *SQL_TASK_WS =
    "SELECT repo, base, check_cmd, keep_worktree, best_of FROM tasks WHERE id = ?1";
/* Where a task with no base starts: its succeeded --after dependencies' results on the same
   repository. */
static const char *SQL_DEP_HEADS =
    "SELECT t.head_commit FROM deps d JOIN tasks t ON t.id = d.dep WHERE d.task = ?1"
    " AND d.kind = 0 AND t.state = 'succeeded' AND t.head_commit != '' AND t.repo = ?2"
    " ORDER BY d.dep";
static const char *SQL_PREV_CHECK =
    "SELECT check_exit, check_output FROM attempts WHERE task = ?1 AND n = ?2"
    " AND check_status = 'failed'";

static char *s_dup_col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return strdup(s ? s : "");
}

static int s_ws_task(fz_store_t *self, uint64_t id, fz_store_ws_t *ws)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_TASK_WS);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        ws->repo = s_dup_col(st, 0);
        ws->base = s_dup_col(st, 1);
        ws->check = s_dup_col(st, 2);
        ws->keep_worktree = sqlite3_column_int(st, 3) != 0;
        ws->best_of = (uint32_t)sqlite3_column_int64(st, 4);
        rc = ws->repo && ws->base && ws->check ? 0 : -1;
    }
    sqlite3_reset(st);
    return rc;
}

static int s_ws_dep_heads(fz_store_t *self, uint64_t id, fz_store_ws_t *ws)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_DEP_HEADS);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    fz_sql_bind_text(st, 2, ws->repo);
    int rc = 0;
    size_t cap = 0;
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        if (ws->ndep_heads == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            char **v = realloc(ws->dep_heads, ncap * sizeof *v);
            if (!v) {
                rc = -1;
                break;
            }
            ws->dep_heads = v;
            cap = ncap;
        }
        if (!(ws->dep_heads[ws->ndep_heads] = s_dup_col(st, 0)))
            rc = -1;
        else
            ws->ndep_heads++;
    }
    sqlite3_reset(st);
    return rc;
}

static int s_ws_prev_check(fz_store_t *self, uint64_t id, uint32_t prev, fz_store_ws_t *ws)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_PREV_CHECK);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, prev);
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        ws->prev_failed = true;
        ws->prev_exit = sqlite3_column_int64(st, 0);
        const void *b = sqlite3_column_blob(st, 1);
        size_t len = b ? (size_t)sqlite3_column_bytes(st, 1) : 0;
        if (len) {
            if (!(ws->prev_output = malloc(len)))
                rc = -1;
            else {
                memcpy(ws->prev_output, b, len);
                ws->prev_output_len = len;
            }
        }
    }
    sqlite3_reset(st);
    return rc;
}

int fz_store_task_ws(fz_store_t *self, uint64_t id, uint32_t prev, fz_store_ws_t *ws)
{
    memset(ws, 0, sizeof *ws);
    if (s_ws_task(self, id, ws) || (*ws->repo && s_ws_dep_heads(self, id, ws)) ||
        (prev && s_ws_prev_check(self, id, prev, ws))) {
        fz_store_ws_free(ws);
        return -1;
    }
    return 0;
}

void fz_store_ws_free(fz_store_ws_t *ws)
{
    free(ws->repo);
    free(ws->base);
    free(ws->check);
    for (size_t i = 0; i < ws->ndep_heads; i++)
        free(ws->dep_heads[i]);
    free(ws->dep_heads);
    free(ws->prev_output);
    memset(ws, 0, sizeof *ws);
}

static const char *SQL_TASK_HEAD = "SELECT head_commit FROM tasks WHERE id = ?1";

int fz_store_task_head(fz_store_t *self, uint64_t id, char head[FZ_STORE_OID_MAX])
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_TASK_HEAD);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 0);
        snprintf(head, FZ_STORE_OID_MAX, "%s", h ? h : "");
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}

static const char *SQL_TASK_CHAIN = "SELECT model, fallback FROM tasks WHERE id = ?1";

size_t fz_store_task_chain(fz_store_t *self, uint64_t id, char (*models)[65], size_t max)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_TASK_CHAIN);
    if (!st || max == 0)
        return 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    size_t n = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(models[n++], 65, "%s", (const char *)sqlite3_column_text(st, 0));
        const void *blob = sqlite3_column_blob(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        if (blob && msgpack_unpack_next(&up, blob, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
            up.data.type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t i = 0; i < up.data.via.array.size && n < max; i++) {
                const msgpack_object *m = &up.data.via.array.ptr[i];
                if (m->type == MSGPACK_OBJECT_STR && m->via.str.size <= 64)
                    snprintf(models[n++], 65, "%.*s", (int)m->via.str.size, m->via.str.ptr);
            }
        msgpack_unpacked_destroy(&up);
    }
    sqlite3_reset(st);
    return n;
}
