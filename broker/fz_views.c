/*  fz_views: the read-only client requests (get, list, status, workers, budget, cost, events,
    ping; see fz_broker_int.h) and the replies built from the store's rows (fz_views.h). */

#include "fz_broker_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Why a task's effective priority is what it is, for `fz-ctl list`. */
void fz_views_priority_why(const fz_broker_t *self, const fz_task_t *t, double now, char *out,
                           size_t size)
{
    double age =
        t->state == FZ_STATE_QUEUED || t->state == FZ_STATE_HELD ? fz_life_aging(self, t, now) : 0;
    fz_rules_priority_why(t->priority, t->inherited, fz_life_deadline_boost(self, t, now), age, out,
                          size);
}

/* ---------------------------------------------------------------- replies from rows */

/* A stored msgpack array as it was submitted; none: an empty array. */
static void s_raw_array(fz_enc_t *e, const char *key, const void *data, size_t len)
{
    if (data)
        fz_enc_raw(e, key, data, len);
    else
        fz_enc_array(e, key, 0);
}

/* The task object of a row, fields in the order of the store's columns, prompt last. */
static fz_enc_t *s_task_map(const fz_store_task_row_t *t)
{
    fz_enc_t *e = fz_enc_new_map();
    fz_enc_uint(e, "id", t->id);
    fz_enc_str(e, "state", t->state);
    fz_enc_int(e, "priority", t->priority);
    fz_enc_str(e, "model", t->model);
    fz_enc_str(e, "name", t->name);
    fz_enc_uint(e, "timeout", t->timeout);
    fz_enc_float(e, "max_cost", t->max_cost);
    fz_enc_uint(e, "retries", t->retries);
    s_raw_array(e, "fallback", t->fallback, t->fallback_len);
    s_raw_array(e, "after", t->after, t->after_len);
    s_raw_array(e, "after_any", t->after_any, t->after_any_len);
    fz_enc_uint(e, "parent", t->parent);
    fz_enc_uint(e, "attempts", t->attempts);
    fz_enc_float(e, "created", t->created);
    fz_enc_float(e, "updated", t->updated);
    fz_enc_str(e, "worker", t->worker);
    fz_enc_str(e, "outcome", t->outcome);
    fz_enc_int(e, "exit_code", t->exit_code);
    fz_enc_float(e, "cost_usd", t->cost_usd);
    fz_enc_uint(e, "tokens_in", t->tokens_in);
    fz_enc_uint(e, "tokens_out", t->tokens_out);
    fz_enc_str(e, "summary", t->summary);
    fz_enc_str(e, "hold_reason", t->hold_reason);
    fz_enc_float(e, "deadline", t->deadline);
    fz_enc_str(e, "class", t->class_name);
    fz_enc_uint(e, "tokens_cache_read", t->tokens_cache_read);
    fz_enc_uint(e, "tokens_cache_write", t->tokens_cache_write);
    fz_enc_uint(e, "stall", t->stall);
    fz_enc_uint(e, "stall_kill", t->stall_kill);
    fz_enc_float(e, "not_before", t->not_before);
    fz_enc_str(e, "repo", t->repo);
    fz_enc_str(e, "base", t->base);
    fz_enc_str(e, "check", t->check);
    fz_enc_bool(e, "keep_worktree", t->keep_worktree);
    fz_enc_uint(e, "best_of", t->best_of);
    fz_enc_str(e, "branch", t->branch);
    fz_enc_str(e, "head_commit", t->head_commit);
    fz_enc_str(e, "submitted_by", t->submitted_by);
    fz_enc_strn(e, "prompt", t->prompt, t->prompt_len);
    return e;
}

static fz_enc_t *s_attempt_map(const fz_store_attempt_row_t *a)
{
    fz_enc_t *e = fz_enc_new_map();
    fz_enc_uint(e, "n", a->n);
    fz_enc_str(e, "worker", a->worker);
    fz_enc_str(e, "model", a->model);
    fz_enc_float(e, "started", a->started);
    fz_enc_float(e, "ended", a->ended);
    fz_enc_str(e, "outcome", a->outcome);
    fz_enc_int(e, "exit_code", a->exit_code);
    fz_enc_uint(e, "signal", a->signal);
    fz_enc_uint(e, "duration_ms", a->duration_ms);
    fz_enc_float(e, "cost_usd", a->cost_usd);
    fz_enc_uint(e, "tokens_in", a->tokens_in);
    fz_enc_uint(e, "tokens_out", a->tokens_out);
    fz_enc_str(e, "summary", a->summary);
    fz_enc_bin(e, "output", a->output, a->output_len);
    fz_enc_str(e, "log", a->log);
    fz_enc_float(e, "reserved", a->reserved);
    fz_enc_bool(e, "output_dropped", a->output_dropped);
    fz_enc_str(e, "class", a->class_name);
    fz_enc_float(e, "reset_at", a->reset_at);
    fz_enc_uint(e, "tokens_cache_read", a->tokens_cache_read);
    fz_enc_uint(e, "tokens_cache_write", a->tokens_cache_write);
    fz_enc_str(e, "branch", a->branch);
    fz_enc_str(e, "base_commit", a->base_commit);
    fz_enc_str(e, "head_commit", a->head_commit);
    fz_enc_uint(e, "files", a->files);
    fz_enc_uint(e, "insertions", a->insertions);
    fz_enc_uint(e, "deletions", a->deletions);
    fz_enc_str(e, "check_status", a->check_status);
    fz_enc_int(e, "check_exit", a->check_exit);
    fz_enc_bin(e, "check_output", a->check_output, a->check_output_len);
    if (a->suspect) {
        fz_enc_bool(e, "suspect", true);
        fz_enc_float(e, "charged", a->charged);
    }
    return e;
}

void fz_views_labels(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key)
{
    fz_enc_t *m = fz_enc_new_map();
    if (!m)
        return;
    fz_store_rows_t *rows = fz_store_labels(store, id);
    fz_store_label_row_t l;
    while (rows && fz_store_rows_label(rows, &l))
        fz_enc_str(m, l.key, l.value);
    fz_store_rows_destroy(&rows);
    fz_enc_sub(e, key, &m);
}

fz_err_t fz_views_task(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key,
                       fz_views_decorate_fn *fn, void *arg)
{
    fz_store_rows_t *rows = fz_store_task(store, id);
    if (!rows)
        return FZ_EUNAVAILABLE;
    fz_store_task_row_t row;
    fz_enc_t *t = fz_store_rows_task(rows, &row) ? s_task_map(&row) : NULL;
    fz_store_rows_destroy(&rows);
    if (!t)
        return FZ_ENOTFOUND;
    fz_views_labels(store, id, t, "labels");
    if (fn)
        fn(arg, id, t);
    fz_enc_sub(e, key, &t);
    return FZ_OK;
}

/* Rows built first: msgpack wants an array's length before its elements. */
typedef struct {
    fz_enc_t **v;
    size_t n, cap;
} maps_t;

static bool s_maps_add(maps_t *m, fz_enc_t **map_p)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        fz_enc_t **more = realloc(m->v, cap * sizeof *more);
        if (!more) {
            fz_enc_destroy(map_p);
            return false;
        }
        m->v = more;
        m->cap = cap;
    }
    m->v[m->n++] = *map_p;
    *map_p = NULL;
    return true;
}

/* Writes the maps as an array under key, the last first if reversed; frees them. */
static void s_maps_put(maps_t *m, fz_enc_t *e, const char *key, bool reversed)
{
    fz_enc_array(e, key, m->n);
    for (size_t i = 0; i < m->n; i++)
        fz_enc_sub(e, NULL, &m->v[reversed ? m->n - 1 - i : i]);
    free(m->v);
    *m = (maps_t){0};
}

fz_err_t fz_views_attempts(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key)
{
    fz_store_rows_t *rows = fz_store_attempts(store, id, FZ_VIEWS_REPLY_BYTES);
    if (!rows)
        return FZ_EUNAVAILABLE;
    maps_t maps = {0};
    fz_store_attempt_row_t row;
    while (fz_store_rows_attempt(rows, &row)) {
        fz_enc_t *a = s_attempt_map(&row);
        if (!s_maps_add(&maps, &a))
            break;
    }
    fz_store_rows_destroy(&rows);
    s_maps_put(&maps, e, key, false);
    return FZ_OK;
}

void fz_views_children(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key)
{
    fz_deps_t kids = {0};
    fz_store_children(store, id, &kids);
    fz_enc_array(e, key, kids.n);
    for (size_t i = 0; i < kids.n; i++)
        fz_enc_uint(e, NULL, kids.v[i].id);
    fz_deps_free(&kids);
}

fz_err_t fz_views_list_tasks(fz_store_t *store, const char *state, uint64_t limit, bool tail,
                             const uint64_t counts[FZ_STATE_COUNT], fz_enc_t *e,
                             fz_views_decorate_fn *fn, void *arg)
{
    uint64_t total = 0, known = 0;
    int s = state ? fz_state_from_name(state) : -1;
    for (int i = 0; counts && i < FZ_STATE_COUNT; i++)
        known += !state || i == s ? counts[i] : 0;
    fz_store_rows_t *rows =
        fz_store_list(store, state, limit, tail, counts ? &known : NULL, &total);
    if (!rows)
        return FZ_EUNAVAILABLE;
    /* With tail the rows come newest first: a cut drops the oldest; they are sent by id. */
    maps_t maps = {0};
    size_t bytes = 0;
    bool truncated = false;
    fz_store_task_row_t row;
    while (fz_store_rows_task(rows, &row)) {
        fz_enc_t *t = s_task_map(&row);
        if (fn)
            fn(arg, row.id, t);
        size_t len = 0;
        fz_enc_data(t, &len);
        if (bytes + len > FZ_VIEWS_REPLY_BYTES) {
            fz_enc_destroy(&t);
            truncated = true;
            break;
        }
        bytes += len;
        if (!s_maps_add(&maps, &t))
            break;
    }
    fz_store_rows_destroy(&rows);
    s_maps_put(&maps, e, "tasks", tail);
    fz_enc_uint(e, "total", total);
    if (truncated)
        fz_enc_bool(e, "truncated", true);
    return FZ_OK;
}

void fz_views_counts(const uint64_t counts[FZ_STATE_COUNT], fz_enc_t *e)
{
    fz_enc_map(e, "counts", FZ_STATE_COUNT);
    for (int s = 0; s < FZ_STATE_COUNT; s++) {
        fz_enc_str(e, NULL, fz_state_name((fz_state_t)s));
        fz_enc_uint(e, NULL, counts[s]);
    }
}

/* The names of `cost --by`, by fz_store_cost_by_t. */
static const char *const s_cost_by[FZ_STORE_COST_COUNT] = {
    [FZ_STORE_COST_DAY] = "day",     [FZ_STORE_COST_MODEL] = "model",
    [FZ_STORE_COST_TASK] = "task",   [FZ_STORE_COST_WORKER] = "worker",
    [FZ_STORE_COST_LABEL] = "label", [FZ_STORE_COST_CLASS] = "class",
};

fz_err_t fz_views_cost_rows(fz_store_t *store, const char *by, const char *label_key, double since,
                            fz_enc_t *e)
{
    int k = 0;
    while (k < FZ_STORE_COST_COUNT && strcmp(by, s_cost_by[k]) != 0)
        k++;
    if (k == FZ_STORE_COST_COUNT)
        return FZ_EINVALID;
    fz_store_rows_t *rows = fz_store_cost(store, (fz_store_cost_by_t)k, label_key, since);
    if (!rows)
        return FZ_EUNAVAILABLE;
    /* Rows are few (days, models, labels) or bounded by tasks. */
    maps_t maps = {0};
    double total = 0;
    fz_store_cost_row_t row;
    while (fz_store_rows_cost(rows, &row)) {
        fz_enc_t *r = fz_enc_new_map();
        fz_enc_str(r, "key", row.key);
        fz_enc_uint(r, "attempts", row.attempts);
        fz_enc_float(r, "cost_usd", row.cost_usd);
        fz_enc_uint(r, "tokens_in", row.tokens_in);
        fz_enc_uint(r, "tokens_out", row.tokens_out);
        fz_enc_uint(r, "duration_ms", row.duration_ms);
        total += row.cost_usd;
        if (!s_maps_add(&maps, &r))
            break;
    }
    fz_store_rows_destroy(&rows);
    s_maps_put(&maps, e, "rows", false);
    fz_enc_float(e, "total_cost", total);
    return FZ_OK;
}

/* ---------------------------------------------------------------- requests */

/* Adds the live fields (effective priority and why) to a task object of a reply. */
static void s_decorate(void *arg, uint64_t id, fz_enc_t *e)
{
    fz_broker_t *self = arg;
    fz_task_t *t = fz_broker_task(self, id);
    if (!t)
        return;
    double now = fz_wall();
    char why[200];
    fz_views_priority_why(self, t, now, why, sizeof why);
    fz_enc_float(e, "effective_priority", fz_life_effective(self, t, now));
    fz_enc_str(e, "priority_why", why);
    if (t->state == FZ_STATE_WAITING)
        fz_enc_uint(e, "deps_pending", t->deps_pending);
    char detail[256];
    if (t->state == FZ_STATE_RUNNING && t->stalled_since > 0)
        fz_enc_float(e, "stalled_since", t->stalled_since);
    if (t->state == FZ_STATE_HELD && t->not_before > 0) {
        snprintf(detail, sizeof detail,
                 "model '%s' is rate-limited: waiting %.0f s more for its limit to reset "
                 "(no retry is used)",
                 t->model, t->not_before > now ? t->not_before - now : 0);
        fz_enc_str(e, "hold_detail", detail);
    } else if (t->state == FZ_STATE_HELD) {
        /* Why it is held, in amounts; and whether it can ever fit. */
        double need = fz_sched_reservation(t, self->cfg.default_task_cost);
        snprintf(detail, sizeof detail, "needs %.2f USD, %.2f left of today's %.2f%s", need,
                 fz_budget_left(&self->budget), self->budget.cap,
                 need > self->budget.cap ? "; more than the whole daily cap: raise the cap "
                                           "(fz-ctl budget --set) or lower its --max-cost"
                                         : "");
        fz_enc_str(e, "hold_detail", detail);
    }
    if (t->state == FZ_STATE_QUEUED) {
        bool served = false;
        for (fz_worker_t *w = zhashx_first(self->workers); w && !served;
             w = zhashx_next(self->workers))
            served = fz_worker_serves(w, t->model);
        if (!served) {
            snprintf(detail, sizeof detail, "no connected worker serves %s%s%s",
                     *t->model ? "model '" : "tasks without a model", t->model,
                     *t->model ? "'" : "");
            fz_enc_str(e, "waiting_for", detail);
        } else if (self->paused)
            fz_enc_str(e, "waiting_for", "dispatch is paused (fz-ctl resume)");
        else if (*t->model && fz_sched_blocked_until(self->sched, t->model) > fz_clock_ms()) {
            snprintf(detail, sizeof detail, "model '%s' is rate-limited for %lld s more", t->model,
                     (long long)((fz_sched_blocked_until(self->sched, t->model) - fz_clock_ms()) /
                                 1000));
            fz_enc_str(e, "waiting_for", detail);
        }
    }
}

void fz_views_get(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0);
    fz_enc_t *r = fz_enc_reply("task", fz_msg_rid(msg));
    fz_err_t err = fz_views_task(self->store, id, r, "task", s_decorate, self);
    if (!err)
        err = fz_views_attempts(self->store, id, r, "attempts");
    if (!err)
        fz_views_children(self->store, id, r, "children");
    if (err) {
        fz_enc_destroy(&r);
        fz_outbox_error(self, from, fz_msg_rid(msg), err,
                        err == FZ_ENOTFOUND ? FZ_REASON_NO_SUCH_TASK : FZ_REASON_NONE,
                        "no task %llu", (unsigned long long)id);
        return;
    }
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

void fz_views_list(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    const char *state = fz_msg_str(msg, "state", NULL, NULL);
    if (state && fz_state_from_name(state) < 0) {
        fz_outbox_error(self, from, fz_msg_rid(msg), FZ_EINVALID, FZ_REASON_BAD_FIELD,
                        "unknown state '%s' (queued, waiting, held, running, retrying, "
                        "succeeded, failed, cancelled, dep-failed)",
                        state);
        return;
    }
    fz_enc_t *r = fz_enc_reply("tasks", fz_msg_rid(msg));
    fz_err_t err =
        fz_views_list_tasks(self->store, state, fz_msg_uint(msg, "limit", 1000),
                            fz_msg_bool(msg, "tail", false), self->counts, r, s_decorate, self);
    if (err) {
        fz_enc_destroy(&r);
        fz_outbox_error(self, from, fz_msg_rid(msg), err, FZ_REASON_NONE, "cannot list tasks");
        return;
    }
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

/* Rows of the queue depth, at most this many per kind: a status stays small. */
#define S_DEPTH_ROWS 256

static void s_depth_row(void *arg, const fz_store_depth_t *row)
{
    fz_enc_t *o = fz_enc_new_map();
    fz_enc_str(o, "key", row->key);
    for (int i = 0; i < FZ_STORE_DEPTH_N; i++)
        fz_enc_uint(o, fz_state_name(fz_store_depth_states[i]), row->counts[i]);
    fz_enc_sub(arg, NULL, &o);
}

typedef struct {
    fz_store_depth_t *v; /* at most S_DEPTH_ROWS */
    size_t n;
} depth_rows_t;

static void s_depth_keep(void *arg, const fz_store_depth_t *row)
{
    depth_rows_t *rows = arg;
    if (rows->n < S_DEPTH_ROWS)
        rows->v[rows->n++] = *row;
}

typedef struct {
    char key[sizeof((fz_task_t *)0)->model];
    uint64_t counts[FZ_STORE_DEPTH_N];
} model_row_t;

static int s_model_row_cmp(const void *a, const void *b)
{
    return strcmp(((const model_row_t *)a)->key, ((const model_row_t *)b)->key);
}

/* by_model from the task table, which holds every unfinished task with the model its next
   (or current) attempt asks for: one walk in memory, where the store's GROUP BY read every
   unfinished task's row (half a second with a million queued). The first S_DEPTH_ROWS
   models in key order go to rows. 0, 1 when models were left out, -1 out of memory. */
static int s_depth_models(fz_broker_t *self, depth_rows_t *rows)
{
    zhashx_t *index = zhashx_new(); /* model -> its row's position + 1 */
    model_row_t *all = NULL;
    size_t n = 0, cap = 0, last = 0;
    int rc = index ? 0 : -1;
    for (fz_task_t *t = zhashx_first(self->tasks); t && rc == 0; t = zhashx_next(self->tasks)) {
        int slot = fz_store_depth_slot((int)t->state);
        if (slot < 0)
            continue;
        /* Most queues hold a few models: the last one found is tried before the index. */
        size_t at = last && strcmp(t->model, all[last - 1].key) == 0
                        ? last
                        : (size_t)(uintptr_t)zhashx_lookup(index, t->model);
        if (at == 0) {
            if (n == cap) {
                size_t ncap = cap ? 2 * cap : 16;
                model_row_t *grown = realloc(all, ncap * sizeof *all);
                if (!grown) {
                    rc = -1;
                    break;
                }
                all = grown, cap = ncap;
            }
            memset(&all[n], 0, sizeof all[n]);
            snprintf(all[n].key, sizeof all[n].key, "%s", t->model);
            at = ++n;
            zhashx_insert(index, t->model, (void *)(uintptr_t)at);
        }
        all[at - 1].counts[slot]++;
        last = at;
    }
    if (rc == 0) {
        if (n > 1) /* no rows: all is NULL, which qsort may not get */
            qsort(all, n, sizeof *all, s_model_row_cmp);
        for (size_t i = 0; i < n && rows->n < S_DEPTH_ROWS; i++) {
            fz_store_depth_t *row = &rows->v[rows->n++];
            snprintf(row->key, sizeof row->key, "%s", all[i].key);
            memcpy(row->counts, all[i].counts, sizeof row->counts);
        }
        rc = n > S_DEPTH_ROWS ? 1 : 0;
    }
    free(all);
    zhashx_destroy(&index);
    return rc;
}

/* status { depth: true }: by_model and by_label, for autoscalers. by_model comes from memory;
   by_label is one pass over the store's labels of the unfinished tasks (labels stay in the
   store), kept here until it ends: a msgpack array's size comes before its items. */
static void s_depth(fz_broker_t *self, fz_enc_t *r)
{
    bool truncated = false;
    depth_rows_t rows = {calloc(S_DEPTH_ROWS, sizeof *rows.v), 0};
    for (int by_label = 0; by_label < 2; by_label++) {
        rows.n = 0;
        int rc = !rows.v    ? -1
                 : by_label ? fz_store_depth_labels(self->store, zhashx_size(self->tasks),
                                                    S_DEPTH_ROWS, s_depth_keep, &rows)
                            : s_depth_models(self, &rows);
        fz_enc_array(r, by_label ? "by_label" : "by_model", rc < 0 ? 0 : rows.n);
        for (size_t i = 0; rc >= 0 && i < rows.n; i++)
            s_depth_row(r, &rows.v[i]);
        truncated = truncated || rc == 1;
    }
    free(rows.v);
    if (truncated)
        fz_enc_bool(r, "depth_truncated", true);
}

void fz_views_status(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_reply("status", fz_msg_rid(msg));
    fz_views_counts(self->counts, r);
    size_t idle = 0;
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
        idle += w->task == NULL;
    fz_enc_uint(r, "running", fz_sched_running(self->sched));
    fz_enc_uint(r, "workers", zhashx_size(self->workers));
    fz_enc_uint(r, "idle_workers", idle);
    fz_enc_uint(r, "max_running", fz_sched_max_running(self->sched));
    fz_enc_bool(r, "paused", self->paused);
    fz_enc_float(r, "spent_today", self->budget.spent);
    fz_enc_float(r, "budget", self->budget.cap);
    fz_enc_float(r, "reserved", self->budget.reserved);
    fz_enc_uint(r, "turns", self->loop.turns);
    fz_enc_float(r, "turn_seconds", self->loop.turn_s);
    fz_enc_uint(r, "commits", self->loop.commits);
    fz_enc_float(r, "commit_seconds", self->loop.commit_s);
    if (self->sync)
        fz_enc_float(r, "sync_seconds", self->loop.sync_s);
    if (fz_msg_bool(msg, "depth", false))
        s_depth(self, r);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

void fz_views_workers(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_reply("workers", fz_msg_rid(msg));
    fz_enc_array(r, "workers", zhashx_size(self->workers));
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
        fz_enc_t *o = fz_enc_new_map();
        fz_enc_str(o, "name", w->name);
        fz_enc_array(o, "models", w->nmodels);
        for (size_t i = 0; i < w->nmodels; i++)
            fz_enc_str(o, NULL, w->models[i]);
        fz_enc_bool(o, "any_model", w->any_model);
        fz_enc_str(o, "state", w->draining ? "drain" : w->task ? "busy" : "idle");
        /* Models it gets no tasks for (an auth failure), or "" for all (agent missing). */
        fz_enc_array(o, "unhealthy", w->unhealthy_all ? 1 : w->nunhealthy);
        if (w->unhealthy_all)
            fz_enc_str(o, NULL, "");
        for (size_t i = 0; !w->unhealthy_all && i < w->nunhealthy; i++)
            fz_enc_str(o, NULL, w->unhealthy[i]);
        fz_enc_uint(o, "task", w->task ? w->task->id : 0);
        if (w->prefetch) /* --prefetch: the task it holds ahead, 0 = none */
            fz_enc_uint(o, "next", w->next ? w->next->id : 0);
        fz_enc_float(o, "since", w->since);
        fz_enc_float(o, "last_seen", fz_wall() - (fz_clock_ms() - w->last_seen_ms) / 1000.0);
        fz_enc_sub(r, NULL, &o);
    }
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

void fz_views_budget(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (fz_msg_has(msg, "set")) {
        self->budget.cap = fz_msg_float(msg, "set", self->budget.cap);
        fz_store_meta_set(self->store, "budget", self->budget.cap);
        fz_life_budget_moved(self);
        fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_BROKER_BUDGET, NULL);
        fz_enc_float(e, "cap", self->budget.cap);
    }
    char day[11];
    fz_budget_day_name(&self->budget, day);
    fz_enc_t *r = fz_enc_reply("budget", fz_msg_rid(msg));
    fz_enc_float(r, "cap", self->budget.cap);
    fz_enc_float(r, "spent", self->budget.spent);
    fz_enc_float(r, "reserved", self->budget.reserved);
    fz_enc_float(r, "left", fz_budget_left(&self->budget));
    fz_enc_str(r, "day", day);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

void fz_views_cost(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t rid = fz_msg_rid(msg);
    const char *by = fz_msg_str(msg, "by", "day", NULL);
    const char *since_s = fz_msg_str(msg, "since", NULL, NULL);
    const char *label = fz_msg_str(msg, "label", "", NULL);
    double since = 0;
    if (since_s) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(since_s, "%Y-%m-%d", &tm);
        if (!end || *end) {
            fz_outbox_error(self, from, rid, FZ_EINVALID, FZ_REASON_BAD_FIELD,
                            "since must be YYYY-MM-DD, not '%s'", since_s);
            return;
        }
        since = (double)timegm(&tm);
    }
    if (strcmp(by, "label") == 0 && !*label) {
        fz_outbox_error(self, from, rid, FZ_EINVALID, FZ_REASON_BAD_FIELD,
                        "cost by label needs the label key");
        return;
    }
    fz_enc_t *r = fz_enc_reply("cost", rid);
    fz_err_t err = fz_views_cost_rows(self->store, by, label, since, r);
    if (err) {
        fz_enc_destroy(&r);
        fz_outbox_error(self, from, rid, err, FZ_REASON_BAD_FIELD,
                        "cost by must be day, model, task, worker, label or class, not '%s'", by);
        return;
    }
    fz_outbox_reply(self, from, rid, r);
}

/* Events a subscriber missed (it saw a gap in seq), from the recent history. */
void fz_views_events(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_reply("events", fz_msg_rid(msg));
    fz_history_encode(self->history, fz_msg_uint(msg, "since", 0), r, "events",
                      FZ_VIEWS_REPLY_BYTES);
    fz_enc_uint(r, "first", fz_history_first(self->history));
    fz_enc_uint(r, "last", fz_history_last(self->history));
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

void fz_views_ping(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_reply("pong", fz_msg_rid(msg));
    fz_enc_uint(r, "version", FZ_PROTOCOL_VERSION);
    fz_enc_str(r, "broker", FZ_VERSION);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}
