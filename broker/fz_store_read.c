/*  fz_store_read: what the broker's memory reads back: live tasks on a restart, one task's
    scheduling fields, the model of an attempt, dependencies and trees, what was spent; see
    fz_store.h. */

#include "fz_store_int.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *SQL_TASK_MODEL = "SELECT model, fallback FROM tasks WHERE id = ?1";

int fz_store_task_model(fz_store_t *self, uint64_t id, uint32_t n, char *model)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_TASK_MODEL);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(model, 65, "%s", (const char *)sqlite3_column_text(st, 0));
        const void *blob = sqlite3_column_blob(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        if (n > 1 && blob && msgpack_unpack_next(&up, blob, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
            up.data.type == MSGPACK_OBJECT_ARRAY && up.data.via.array.size > 0) {
            uint32_t k = n - 2 < up.data.via.array.size ? n - 2 : up.data.via.array.size - 1;
            const msgpack_object *m = &up.data.via.array.ptr[k];
            if (m->type == MSGPACK_OBJECT_STR && m->via.str.size <= 64) {
                memcpy(model, m->via.str.ptr, m->via.str.size);
                model[m->via.str.size] = 0;
            }
        }
        msgpack_unpacked_destroy(&up);
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}

/* ---------------------------------------------------------------- reads */

#define LIVE_COLS                                                                                  \
    "SELECT t.id, t.state, t.priority, t.attempts, t.retries, t.timeout, t.max_cost,"              \
    " t.hold_reason, t.model, COALESCE(a.worker, ''),"                                             \
    " COALESCE(a.reserved, 0), t.model, t.parent, t.deadline, t.updated, t.attempt_base,"          \
    " t.cancel_requested, t.stall, t.stall_kill, t.not_before"                                     \
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
