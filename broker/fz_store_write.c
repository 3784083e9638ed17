/*  fz_store_write: the writes of tasks, attempts and dependencies (every one opens the turn's
    transaction itself); see fz_store.h. Each statement is run to completion (fz_sql_done)
    before its function returns, so strings and blobs are bound without a copy. */

#include "fz_store_int.h"

#include <msgpack.h>
#include <string.h>

/* A msgpack object as a blob column (NULL when absent). */
static void s_bind_obj(sqlite3_stmt *st, int i, const msgpack_object *o)
{
    if (!o) {
        sqlite3_bind_null(st, i);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *o);
    sqlite3_bind_blob(st, i, sb.data, (int)sb.size, SQLITE_TRANSIENT);
    msgpack_sbuffer_destroy(&sb);
}

/* ---------------------------------------------------------------- writes */

static const char *SQL_TASK_ADD =
    "INSERT INTO tasks (state, priority, model, name, prompt, timeout, max_cost, retries,"
    " parent, fallback, after, after_any, created, updated, deadline, summary, stall, stall_kill,"
    " repo, base, check_cmd, keep_worktree, best_of)"
    " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?13,?14,?15,?16,?17,?18,?19,?20,?21,"
    "?22)";

static const char *SQL_LABEL_ADD = "INSERT OR REPLACE INTO task_labels VALUES (?1, ?2, ?3)";

static int s_add_labels(fz_store_t *self, uint64_t id, const msgpack_object *labels)
{
    if (!labels || labels->type != MSGPACK_OBJECT_MAP)
        return 0;
    for (uint32_t i = 0; i < labels->via.map.size; i++) {
        const msgpack_object *k = &labels->via.map.ptr[i].key, *v = &labels->via.map.ptr[i].val;
        sqlite3_stmt *st = fz_sql_stmt(self, SQL_LABEL_ADD);
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_text(st, 2, k->via.str.ptr, (int)k->via.str.size, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, v->via.str.ptr, (int)v->via.str.size, SQLITE_STATIC);
        if (fz_sql_done(self, st))
            return -1;
    }
    return 0;
}

static const char *SQL_LABEL_INHERIT =
    "INSERT OR IGNORE INTO task_labels SELECT ?1, key, value FROM task_labels WHERE task = ?2";

/* A subtask takes its parent's labels where it has none of its own. */
static int s_inherit_labels(fz_store_t *self, uint64_t id, uint64_t parent)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_LABEL_INHERIT);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)parent);
    return fz_sql_done(self, st);
}

uint64_t fz_store_task_add(fz_store_t *self, const fz_store_newtask_t *t)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_TASK_ADD);
    if (!st)
        return 0;
    fz_sql_bind_text_now(st, 1, fz_state_name(t->state));
    sqlite3_bind_int64(st, 2, t->priority);
    fz_sql_bind_text_now(st, 3, t->model);
    fz_sql_bind_text_now(st, 4, t->name);
    sqlite3_bind_text(st, 5, t->prompt, (int)t->prompt_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, t->timeout);
    sqlite3_bind_double(st, 7, t->max_cost);
    sqlite3_bind_int64(st, 8, t->retries);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)t->parent);
    s_bind_obj(st, 10, t->fallback);
    s_bind_obj(st, 11, t->after);
    s_bind_obj(st, 12, t->after_any);
    sqlite3_bind_double(st, 13, fz_wall());
    sqlite3_bind_double(st, 14, t->deadline);
    fz_sql_bind_text_now(st, 15, t->summary);
    sqlite3_bind_int64(st, 16, t->stall);
    sqlite3_bind_int64(st, 17, t->stall_kill);
    fz_sql_bind_text_now(st, 18, t->repo);
    fz_sql_bind_text_now(st, 19, t->base);
    fz_sql_bind_text_now(st, 20, t->check);
    sqlite3_bind_int(st, 21, t->keep_worktree);
    sqlite3_bind_int64(st, 22, t->best_of);
    if (fz_sql_done(self, st))
        return 0;
    uint64_t id = (uint64_t)sqlite3_last_insert_rowid(self->db);
    if (s_add_labels(self, id, t->labels))
        return 0;
    if (t->parent && s_inherit_labels(self, id, t->parent))
        return 0;
    return id;
}

static const char *SQL_TASK_STATE =
    "UPDATE tasks SET state = ?2, hold_reason = ?3, updated = ?4 WHERE id = ?1";

int fz_store_task_state(fz_store_t *self, uint64_t id, fz_state_t state, const char *reason)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_TASK_STATE);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    fz_sql_bind_text_now(st, 2, fz_state_name(state));
    fz_sql_bind_text_now(st, 3, reason);
    sqlite3_bind_double(st, 4, fz_wall());
    return fz_sql_done(self, st);
}

static const char *SQL_TASK_NOT_BEFORE = "UPDATE tasks SET not_before = ?2 WHERE id = ?1";

int fz_store_task_not_before(fz_store_t *self, uint64_t id, double not_before)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_TASK_NOT_BEFORE);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_double(st, 2, not_before);
    return fz_sql_done(self, st);
}

static const char *SQL_TASK_PRIORITY = "UPDATE tasks SET priority = ?2, updated = ?3 WHERE id = ?1";

int fz_store_task_priority(fz_store_t *self, uint64_t id, int64_t priority)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_TASK_PRIORITY);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, priority);
    sqlite3_bind_double(st, 3, fz_wall());
    return fz_sql_done(self, st);
}

static const char *SQL_TASK_FLAGS =
    "UPDATE tasks SET attempt_base = ?2, cancel_requested = ?3 WHERE id = ?1";

int fz_store_task_flags(fz_store_t *self, uint64_t id, uint32_t attempt_base, bool cancel)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_TASK_FLAGS);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, attempt_base);
    sqlite3_bind_int(st, 3, cancel);
    return fz_sql_done(self, st);
}

static const char *SQL_ATTEMPT_START =
    "INSERT OR REPLACE INTO attempts (task, n, worker, model, started, reserved)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char *SQL_TASK_RUNNING =
    "UPDATE tasks SET state = 'running', hold_reason = '', attempts = ?2, worker = ?3,"
    " updated = ?4 WHERE id = ?1";

int fz_store_attempt_start(fz_store_t *self, uint64_t id, uint32_t n, const char *worker,
                           const char *model, double reserved)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_ATTEMPT_START);
    if (!st)
        return -1;
    double now = fz_wall();
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    fz_sql_bind_text_now(st, 3, worker);
    fz_sql_bind_text_now(st, 4, model);
    sqlite3_bind_double(st, 5, now);
    sqlite3_bind_double(st, 6, reserved);
    if (fz_sql_done(self, st) || !(st = fz_sql_stmt(self, SQL_TASK_RUNNING)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    fz_sql_bind_text_now(st, 3, worker);
    sqlite3_bind_double(st, 4, now);
    return fz_sql_done(self, st);
}

static const char *SQL_ATTEMPT_FINISH =
    "UPDATE attempts SET ended = ?3, outcome = ?4, exit_code = ?5, signal = ?6,"
    " duration_ms = ?7, cost_usd = ?8, tokens_in = ?9, tokens_out = ?10,"
    " model = CASE WHEN ?11 = '' THEN model ELSE ?11 END, summary = ?12, output = ?13,"
    " log = ?14, class = ?15, reset_at = ?16, tokens_cache_read = ?17,"
    " tokens_cache_write = ?18, branch = ?19, base_commit = ?20, head_commit = ?21, files = ?22,"
    " insertions = ?23, deletions = ?24, check_status = ?25, check_exit = ?26,"
    " check_output = ?27 WHERE task = ?1 AND n = ?2 AND ended = 0";
static const char *SQL_TASK_FINISH =
    "UPDATE tasks SET state = ?2, outcome = ?3, exit_code = ?4, cost_usd = cost_usd + ?5,"
    " tokens_in = tokens_in + ?6, tokens_out = tokens_out + ?7, summary = ?8, updated = ?9,"
    " hold_reason = '', class = ?10, tokens_cache_read = tokens_cache_read + ?11,"
    " tokens_cache_write = tokens_cache_write + ?12,"
    " branch = CASE WHEN ?13 != '' THEN ?13 ELSE branch END,"
    " head_commit = CASE WHEN ?13 != '' THEN ?14 ELSE head_commit END WHERE id = ?1";

/* The workspace columns of SQL_ATTEMPT_FINISH, ?19 .. ?27. */
static void s_bind_ws(sqlite3_stmt *st, const fz_result_t *r)
{
    fz_sql_bind_text_now(st, 19, r->branch);
    fz_sql_bind_text_now(st, 20, r->base_commit);
    fz_sql_bind_text_now(st, 21, r->head_commit);
    sqlite3_bind_int64(st, 22, (sqlite3_int64)r->files);
    sqlite3_bind_int64(st, 23, (sqlite3_int64)r->insertions);
    sqlite3_bind_int64(st, 24, (sqlite3_int64)r->deletions);
    fz_sql_bind_text_now(st, 25, r->check_status);
    sqlite3_bind_int64(st, 26, r->check_exit);
    if (r->check_output_len)
        sqlite3_bind_blob(st, 27, r->check_output, (int)r->check_output_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 27);
}

/* The attempt's row: 1 written, 0 ended already, -1 failed. */
static int s_attempt_end(fz_store_t *self, uint64_t id, uint32_t n, const fz_result_t *r)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_ATTEMPT_FINISH);
    if (!st)
        return -1;
    double now = fz_wall();
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    sqlite3_bind_double(st, 3, now);
    fz_sql_bind_text_now(st, 4, r->outcome);
    sqlite3_bind_int64(st, 5, r->exit_code);
    sqlite3_bind_int64(st, 6, r->signal);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)r->duration_ms);
    sqlite3_bind_double(st, 8, r->cost_usd);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)r->tokens_in);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)r->tokens_out);
    fz_sql_bind_text_now(st, 11, r->model);
    fz_sql_bind_text_now(st, 12, r->summary);
    sqlite3_bind_blob(st, 13, r->output ? r->output : "", (int)r->output_len, SQLITE_STATIC);
    fz_sql_bind_text_now(st, 14, r->log);
    fz_sql_bind_text_now(st, 15, r->class_name);
    sqlite3_bind_double(st, 16, r->reset_at);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)r->tokens_cache_read);
    sqlite3_bind_int64(st, 18, (sqlite3_int64)r->tokens_cache_write);
    s_bind_ws(st, r);
    if (fz_sql_done(self, st))
        return -1;
    if (sqlite3_changes(self->db) == 0)
        return 0;
    return 1;
}

/* The task's row after its attempt ended: 1 written, -1 failed. */
static int s_task_finish(fz_store_t *self, uint64_t id, const fz_result_t *r, fz_state_t state)
{
    sqlite3_stmt *st;
    double now = fz_wall();
    if (!(st = fz_sql_stmt(self, SQL_TASK_FINISH)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    fz_sql_bind_text_now(st, 2, fz_state_name(state));
    fz_sql_bind_text_now(st, 3, r->outcome);
    sqlite3_bind_int64(st, 4, r->exit_code);
    sqlite3_bind_double(st, 5, r->cost_usd);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)r->tokens_in);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)r->tokens_out);
    fz_sql_bind_text_now(st, 8, r->summary);
    sqlite3_bind_double(st, 9, now);
    fz_sql_bind_text_now(st, 10, r->class_name);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)r->tokens_cache_read);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)r->tokens_cache_write);
    /* The task's branch names the attempt that made it succeed (the worker points it there
       when the result-ack says promote). */
    char branch[32] = "";
    if (state == FZ_STATE_SUCCEEDED && r->head_commit && *r->head_commit)
        snprintf(branch, sizeof branch, "fz/%llu", (unsigned long long)id);
    fz_sql_bind_text_now(st, 13, branch);
    fz_sql_bind_text_now(st, 14, r->head_commit);
    return fz_sql_done(self, st) ? -1 : 1;
}

static const char *SQL_TASK_ADD_SPEND =
    "UPDATE tasks SET cost_usd = cost_usd + ?2, tokens_in = tokens_in + ?3,"
    " tokens_out = tokens_out + ?4, tokens_cache_read = tokens_cache_read + ?5,"
    " tokens_cache_write = tokens_cache_write + ?6 WHERE id = ?1";

/* Adds what an attempt that did not end its task spent to the task's totals. */
static int s_task_add_spend(fz_store_t *self, uint64_t id, const fz_result_t *r)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_TASK_ADD_SPEND);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_double(st, 2, r->cost_usd);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->tokens_in);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->tokens_out);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)r->tokens_cache_read);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)r->tokens_cache_write);
    return fz_sql_done(self, st) ? -1 : 0;
}

int fz_store_attempt_end(fz_store_t *self, uint64_t id, uint32_t n, const fz_result_t *r)
{
    int rc = s_attempt_end(self, id, n, r);
    return rc <= 0 ? rc : s_task_add_spend(self, id, r);
}

int fz_store_attempt_finish(fz_store_t *self, uint64_t id, uint32_t n, const fz_result_t *r,
                            fz_state_t state)
{
    int rc = s_attempt_end(self, id, n, r);
    return rc <= 0 ? rc : s_task_finish(self, id, r, state);
}

/* ---------------------------------------------------------------- dependencies, trees */

static const char *SQL_DEP_ADD = "INSERT OR IGNORE INTO deps VALUES (?1, ?2, ?3)";

int fz_store_dep_add(fz_store_t *self, uint64_t task, uint64_t dep, int kind)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_DEP_ADD);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)dep);
    sqlite3_bind_int(st, 3, kind);
    return fz_sql_done(self, st);
}

static const char *SQL_DEPFAIL =
    "UPDATE tasks SET state = 'dep-failed', outcome = 'dep-failed', summary = ?2, updated = ?3,"
    " hold_reason = '' WHERE id = ?1";

int fz_store_task_depfail(fz_store_t *self, uint64_t id, const char *why)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_DEPFAIL);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    fz_sql_bind_text_now(st, 2, why);
    sqlite3_bind_double(st, 3, fz_wall());
    return fz_sql_done(self, st);
}

static const char *SQL_CLOSE_RACERS =
    "UPDATE attempts SET outcome = 'lost', ended = ?1, summary = ?2 WHERE ended = 0 AND"
    " EXISTS (SELECT 1 FROM tasks t WHERE t.id = attempts.task AND"
    " (t.state != 'running' OR t.attempts != attempts.n))";

int fz_store_close_racers(fz_store_t *self, const char *why)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_CLOSE_RACERS);
    if (!st)
        return -1;
    sqlite3_bind_double(st, 1, fz_wall());
    fz_sql_bind_text_now(st, 2, why);
    if (fz_sql_done(self, st))
        return -1;
    int n = sqlite3_changes(self->db);
    if (n > 0)
        fz_warn("%d attempt(s) of best-of rounds recorded as lost: %s", n, why);
    return n;
}

static const char *SQL_ATTEMPT_CHARGED =
    "UPDATE attempts SET charged = ?3 WHERE task = ?1 AND n = ?2";

int fz_store_attempt_charged(fz_store_t *self, uint64_t id, uint32_t n, double charged)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_ATTEMPT_CHARGED);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    sqlite3_bind_double(st, 3, charged);
    return fz_sql_done(self, st);
}
