/*  fz_life: the task life cycle (transitions, dispatch, retries, lost attempts, cancel, budget
    holds); see fz_broker_int.h. */

#include "fz_broker_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void fz_life_timed_add(fz_broker_t *self, fz_task_t *t)
{
    if (!zlistx_find(self->timed, t))
        zlistx_add_end(self->timed, t);
}

void fz_life_timed_remove(fz_broker_t *self, fz_task_t *t)
{
    void *handle = zlistx_find(self->timed, t);
    if (handle)
        zlistx_delete(self->timed, handle);
}

void fz_life_free_attempt(fz_broker_t *self, fz_task_t *t)
{
    t->attempt_base++;
    fz_store_task_flags(self->store, t->id, t->attempt_base, t->cancel_requested);
}

void fz_life_orphan(fz_broker_t *self, fz_task_t *t)
{
    t->worker = NULL;
    t->orphan_deadline_ms = fz_clock_ms() + FZ_ORPHAN_PERIODS * (int64_t)self->cfg.heartbeat_ms;
    fz_life_timed_add(self, t);
}

/* Forgets a task that reached a final state (the store keeps it). */
void fz_life_drop(fz_broker_t *self, fz_task_t *t)
{
    fz_sched_remove(self->sched, t);
    fz_life_timed_remove(self, t);
    char key[24];
    fz_broker_idkey(t->id, key);
    zhashx_delete(self->tasks, key);
}

/* ---------------------------------------------------------------- effective priority */

double fz_life_deadline_boost(const fz_broker_t *self, const fz_task_t *t, double now)
{
    return fz_rules_deadline_boost(t->deadline, self->cfg.deadline_horizon, now);
}

/* Aging adds +1 per --aging seconds in the queue to every ready task alike, so it is kept
   out of the stored rank (which would otherwise change every second) by subtracting each
   task's own start instead: rank differences are then exactly effective-priority
   differences. */
double fz_life_aging(const fz_broker_t *self, const fz_task_t *t, double now)
{
    return fz_rules_aging(self->cfg.aging_s, t->queued_at, now);
}

double fz_life_effective(const fz_broker_t *self, const fz_task_t *t, double now)
{
    return fz_rules_effective(t->priority, t->inherited, fz_life_deadline_boost(self, t, now),
                              fz_life_aging(self, t, now));
}

void fz_life_rerank(fz_broker_t *self, fz_task_t *t)
{
    double now = fz_wall();
    double rank = fz_life_effective(self, t, now);
    if (self->cfg.aging_s > 0)
        rank -= now / self->cfg.aging_s;
    if (rank != t->rank) {
        t->rank = rank;
        fz_sched_reorder(self->sched, t);
    }
}

/* Makes a task ready to run: into its model's queue, aging from now. */
void fz_life_ready(fz_broker_t *self, fz_task_t *t)
{
    t->queued_at = fz_wall();
    t->rank = 0;
    fz_life_rerank(self, t);
    fz_sched_enqueue(self->sched, t);
}

/* The store write that goes with a move: the attempt's row and the task's together when an
   attempt starts or ends, else the task's state (with the hold reason or dep-failed why). */
static int s_store_move(fz_broker_t *self, fz_task_t *t, fz_state_t to, const fz_move_t *how)
{
    if (how->result) {
        if (fz_store_attempt_finish(self->store, t->id, t->attempt, how->result, to) < 0)
            return -1;
        /* Held after an attempt (a quota): the reason goes with it. */
        return to == FZ_STATE_HELD ? fz_store_task_state(self->store, t->id, to, how->reason) : 0;
    }
    if (to == FZ_STATE_RUNNING)
        return fz_store_attempt_start(self->store, t->id, t->attempt,
                                      how->worker ? how->worker->name : "",
                                      how->model ? how->model : "", t->reserved);
    if (to == FZ_STATE_DEP_FAILED)
        return fz_store_task_depfail(self->store, t->id, how->summary ? how->summary : "");
    return fz_store_task_state(self->store, t->id, to, how->reason ? how->reason : "");
}

fz_enc_t *fz_life_move(fz_broker_t *self, fz_task_t *t, fz_state_t to, const fz_move_t *how)
{
    static const fz_move_t plain = {0};
    how = how ? how : &plain;
    if (!fz_rules_move_allowed(t->state, to)) {
        fz_error("task %llu: refused move %s -> %s (a bug: the life cycle's table says no)",
                 (unsigned long long)t->id, fz_state_name(t->state), fz_state_name(to));
        return NULL;
    }
    /* A failed write fails the turn's commit: the turn is abandoned and memory reloaded, so
       memory is left as it was. */
    if (s_store_move(self, t, to, how) < 0)
        return NULL;
    fz_broker_count_move(self, (int)t->state, (int)to);
    t->state = to;
    if (to == FZ_STATE_HELD && how->reason && how->reason != t->hold_reason)
        snprintf(t->hold_reason, sizeof t->hold_reason, "%s", how->reason);
    fz_topic_t topic = how->topic ? how->topic : fz_topic_of_state(to);
    fz_enc_t *e = topic ? fz_outbox_event(self, topic, t) : NULL;
    if (how->reason && *how->reason)
        fz_enc_str(e, "reason", how->reason);
    if (how->summary)
        fz_enc_str(e, "summary", how->summary);
    return e;
}

/* The scheduler moved a task to its held queue (budget): record it. */
static void s_on_held(void *arg, fz_task_t *t)
{
    fz_life_move(arg, t, FZ_STATE_HELD, &(fz_move_t){.reason = t->hold_reason});
}

/* The scheduler moved a held task back to its ready queue. */
static void s_on_released(void *arg, fz_task_t *t)
{
    fz_life_move(arg, t, FZ_STATE_QUEUED, NULL);
}

/* Spend or cap changed: held tasks are looked at once, at the end of the turn. */
void fz_life_budget_moved(fz_broker_t *self)
{
    self->budget_moved = true;
}

void fz_life_release_held(fz_broker_t *self)
{
    if (!self->budget_moved)
        return;
    self->budget_moved = false;
    fz_sched_release_budget(self->sched, &self->budget, self->cfg.default_task_cost, s_on_released,
                            self);
}

/* Detaches a running task from its worker and the running counts. */
void fz_life_unrun(fz_broker_t *self, fz_task_t *t)
{
    fz_worker_t *w = t->worker;
    if (w && w->next == t) {
        w->next = NULL; /* a prefetched attempt that ended before it started */
    } else if (w) {
        fz_worker_take_next(w); /* it starts what it held by itself as this one ends */
        if (!w->task)
            w->idle_since_ms = fz_clock_ms();
    }
    t->worker = NULL;
    t->orphan_deadline_ms = 0;
    fz_life_timed_remove(self, t); /* fz_life_retry_later puts it back when it waits for a retry */
    fz_sched_ended(self->sched, t);
    fz_race_end(self, t, t->attempt); /* a best-of round's other attempts are cancelled */
}

/* Schedules attempt n+1 after a backoff, on the next model of the fallback chain. */
void fz_life_retry_later(fz_broker_t *self, fz_task_t *t, uint32_t delay_ms)
{
    char model[65];
    if (fz_store_task_model(self->store, t->id, t->attempt - t->attempt_base + 1, model) == 0)
        snprintf(t->model, sizeof t->model, "%s", model);
    t->not_before_ms = fz_clock_ms() + delay_ms;
    fz_life_timed_add(self, t);
    /* Not a move (it is retrying already): the announcement of when and on what. */
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_TASK_RETRYING, t);
    fz_enc_uint(e, "delay_ms", delay_ms);
    fz_enc_str(e, "next_model", t->model);
}

uint32_t fz_life_backoff_ms(fz_broker_t *self, uint32_t failures)
{
    return fz_rules_backoff_ms(self->cfg.backoff_min_ms, self->cfg.backoff_max_ms, failures,
                               fz_broker_random(self));
}

/* A running attempt ended without a result (worker died, orphan expired): requeue it. */
void fz_life_lost(fz_broker_t *self, fz_task_t *t, const char *why)
{
    fz_result_t r = {.outcome = fz_outcome_name(FZ_OUTCOME_LOST), .summary = why};
    uint32_t made = t->attempt - t->attempt_base;
    bool give_up = !t->cancel_requested && made > t->retries + FZ_LOST_EXTRA;
    fz_state_t next = t->cancel_requested ? FZ_STATE_CANCELLED
                      : give_up           ? FZ_STATE_FAILED
                                          : FZ_STATE_QUEUED;
    fz_budget_release(&self->budget, t->reserved);
    t->reserved = 0;
    fz_life_budget_moved(self);
    fz_life_unrun(self, t);
    if (next == FZ_STATE_QUEUED) {
        fz_life_move(self, t, next,
                     &(fz_move_t){.result = &r, .topic = FZ_TOPIC_TASK_REQUEUED, .reason = why});
        fz_life_ready(self, t);
        return;
    }
    fz_enc_t *e = fz_life_move(self, t, next, &(fz_move_t){.result = &r});
    fz_enc_str(e, "outcome", r.outcome);
    fz_graph_final(self, t);
}

void fz_life_send_cancel(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt,
                         const char *reason)
{
    fz_enc_t *e = fz_enc_new("cancel", 0);
    fz_enc_uint(e, "task", task);
    fz_enc_uint(e, "attempt", attempt);
    fz_enc_str(e, "reason", reason);
    fz_outbox_add_to(self, w, e);
}

/* The prompt of the next attempt: the task's, and when the previous attempt's check failed,
   what it said (PROTOCOL.md section 8), cut so that the whole stays within FZ_MAX_PROMPT.
   NULL on no memory. */
static char *s_prompt_with_check(const char *prompt, size_t plen, const fz_store_ws_t *ws,
                                 uint32_t prev, size_t *len)
{
    enum { HEAD = 600 };
    size_t room = plen + HEAD + ws->prev_output_len < FZ_MAX_PROMPT ? ws->prev_output_len
                  : plen + HEAD < FZ_MAX_PROMPT                     ? FZ_MAX_PROMPT - plen - HEAD
                                                                    : 0;
    /* The output is bytes: as text, NULs and invalid UTF-8 become '?'. */
    char *raw = malloc(room + 1), *clean = malloc(room + 1);
    size_t cmdlen = fz_utf8_cut(ws->check, strlen(ws->check), 200);
    char *out = malloc(plen + HEAD + room + 1);
    if (!raw || !clean || !out) {
        free(raw), free(clean), free(out);
        return NULL;
    }
    const char *tail = ws->prev_output + ws->prev_output_len - room;
    for (size_t i = 0; i < room; i++)
        raw[i] = tail[i] ? tail[i] : '?';
    raw[room] = 0;
    size_t clen = fz_utf8_clean(raw, room, clean, room + 1);
    memcpy(out, prompt, plen);
    int n =
        snprintf(out + plen, HEAD + room + 1,
                 "\n\n## The check failed on attempt %u\n\nCommand: %.*s%s\nExit status: %lld%s\n"
                 "\nLast lines of its output:\n%s%s",
                 prev, (int)cmdlen, ws->check, cmdlen < strlen(ws->check) ? " ..." : "",
                 (long long)ws->prev_exit, ws->prev_exit < 0 ? " (stopped at the timeout)" : "",
                 clen ? clean : "(none)", clen && clean[clen - 1] != '\n' ? "\n" : "");
    free(raw), free(clean);
    *len = plen + (n > 0 ? (size_t)n : 0);
    if (*len > FZ_MAX_PROMPT)
        *len = plen + fz_utf8_cut(out + plen, *len - plen, FZ_MAX_PROMPT - plen);
    return out;
}

/* The dispatch's workspace fields and its prompt (with the check's failure of attempt prev). */
static void s_dispatch_ws(fz_broker_t *self, const fz_task_t *t, uint32_t prev, fz_enc_t *d)
{
    size_t plen = 0;
    char *prompt = fz_store_prompt(self->store, t->id, &plen);
    if (t->bare) { /* no workspace, no check: nothing more to read */
        if (prompt)
            fz_enc_strn(d, "prompt", prompt, plen);
        free(prompt);
        return;
    }
    fz_store_ws_t ws;
    if (!prompt || fz_store_task_ws(self->store, t->id, prev, &ws)) {
        free(prompt);
        return; /* a store read failed: the dispatch lacks its prompt; the worker refuses it */
    }
    char *full = NULL;
    size_t flen = 0;
    if (ws.prev_failed && *ws.check)
        full = s_prompt_with_check(prompt, plen, &ws, prev, &flen);
    if (full)
        fz_enc_strn(d, "prompt", full, flen);
    else
        fz_enc_strn(d, "prompt", prompt, plen);
    free(full);
    free(prompt);
    if (*ws.repo) {
        fz_enc_str(d, "repo", ws.repo);
        /* Its own base, else where its dependencies on the same repository ended. */
        size_t nb = *ws.base ? 1 : ws.ndep_heads;
        fz_enc_array(d, "bases", nb);
        for (size_t i = 0; i < nb; i++)
            fz_enc_str(d, NULL, *ws.base ? ws.base : ws.dep_heads[i]);
        fz_enc_bool(d, "keep_worktree", ws.keep_worktree);
    }
    if (*ws.check)
        fz_enc_str(d, "check", ws.check);
    fz_store_ws_free(&ws);
}

void fz_life_send_dispatch(fz_broker_t *self, const fz_task_t *t, fz_worker_t *w, uint32_t n,
                           uint32_t prev, const char *model, double reserved)
{
    fz_enc_t *d = fz_enc_new("dispatch", 0);
    fz_enc_uint(d, "task", t->id);
    fz_enc_uint(d, "attempt", n);
    s_dispatch_ws(self, t, prev, d);
    if (t->bare)
        fz_enc_map(d, "labels", 0);
    else
        fz_views_labels(self->store, t->id, d, "labels");
    fz_enc_str(d, "model", model);
    fz_enc_uint(d, "timeout", t->timeout_s);
    /* The cap the agent is held to is what was reserved: a task without --max-cost is held to
       the default reservation, so the budget's arithmetic holds for it too. */
    fz_enc_float(d, "max_cost", reserved);
    fz_enc_uint(d, "kill_grace", self->cfg.kill_grace);
    fz_enc_uint(d, "stall", t->stall_s ? t->stall_s : self->cfg.stall_s);
    fz_enc_uint(d, "stall_kill", t->stall_kill_s ? t->stall_kill_s : self->cfg.stall_kill_s);
    out_t *o = fz_outbox_add_to(self, w, d);
    if (o)
        o->dispatch = t->id;
}

double fz_life_attempt_cap(const fz_broker_t *self, const fz_task_t *t)
{
    return fz_sched_attempt_cap(t, self->cfg.default_task_cost);
}

/* Starts attempt n+1 of t on w: reservation, records, dispatch message. ahead: w runs a
   task, and holds this one until that ends (--prefetch). */
static void s_start(fz_broker_t *self, fz_task_t *t, fz_worker_t *w, bool ahead)
{
    t->attempt = fz_race_last_attempt(t) + 1;
    t->reserved = fz_life_attempt_cap(self, t);
    fz_budget_reserve(&self->budget, t->reserved);
    t->worker = w;
    if (ahead) {
        w->next = t;
        w->next_attempt = t->attempt;
    } else {
        w->task = t;
        w->attempt = t->attempt;
    }
    fz_sched_started(self->sched, t);
    /* A task for any model runs on the worker's first allowed model: the whitelist holds
       for it too, and the attempt records the model it used. */
    const char *model = fz_worker_model_for(w, t->model);
    t->stalled = false;
    t->stalled_since = 0;
    t->output = (fz_bucket_t){0};
    t->output_dropped = 0;
    fz_enc_t *e =
        fz_life_move(self, t, FZ_STATE_RUNNING, &(fz_move_t){.worker = w, .model = model});
    fz_enc_str(e, "worker", w->name);
    fz_enc_float(e, "reserved", t->reserved);
    fz_life_send_dispatch(self, t, w, t->attempt, t->attempt - 1, model, t->reserved);
    if (t->best_of > 1)
        fz_race_begin(self, t); /* the round's other attempts start on other idle workers */
}

static int s_cmp_workers(const void *a, const void *b)
{
    /* Specialised workers choose first, so a worker that serves anything does not take the
       only task a specialised one could run. */
    const fz_worker_t *x = *(fz_worker_t *const *)a, *y = *(fz_worker_t *const *)b;
    if (x->any_model != y->any_model)
        return x->any_model ? 1 : -1;
    if (x->nmodels != y->nmodels)
        return x->nmodels > y->nmodels ? 1 : -1;
    /* Then the longest idle first: work spreads over the workers. */
    return (x->idle_since_ms > y->idle_since_ms) - (x->idle_since_ms < y->idle_since_ms);
}

/* A worker that may take a dispatch ahead: it asked for it, runs a task of its own (not a
   best-of round's, not one left over from a round), and would take a dispatch now. */
static bool s_takes_ahead(const fz_worker_t *w, int64_t now)
{
    return w->prefetch && w->task && !w->next && !w->left_task && !w->draining &&
           now >= w->rest_until_ms && !w->task->race && w->task->best_of <= 1 &&
           w->attempt == w->task->attempt;
}

/* What is still ready after the idle workers chose goes ahead to --prefetch workers, one
   each. A best-of task is put back: its round starts on idle workers only. */
static void s_prefetch(fz_broker_t *self, int64_t now)
{
    for (fz_worker_t *w = zhashx_first(self->workers); w && fz_sched_ready(self->sched);
         w = zhashx_next(self->workers)) {
        if (!s_takes_ahead(w, now))
            continue;
        fz_task_t *t = fz_sched_pick(self->sched, w, &self->budget, self->cfg.default_task_cost,
                                     s_on_held, self);
        if (t && t->best_of > 1) {
            fz_sched_enqueue(self->sched, t);
            continue;
        }
        if (t)
            s_start(self, t, w, true);
    }
}

void fz_life_dispatch(fz_broker_t *self)
{
    if (self->paused || (fz_sched_ready(self->sched) == 0 && !fz_race_waiting(self)))
        return;
    size_t n = zhashx_size(self->workers), k = 0;
    fz_worker_t **idle = malloc((n ? n : 1) * sizeof *idle);
    if (!idle)
        return;
    int64_t now = fz_clock_ms();
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
        if (!w->task && !w->left_task && !w->draining && now >= w->rest_until_ms)
            idle[k++] = w;
    qsort(idle, k, sizeof *idle, s_cmp_workers);
    for (size_t i = 0; i < k; i++) {
        /* A best-of round that waits for workers goes first: it was picked already. */
        if (fz_race_join(self, idle[i]))
            continue;
        fz_task_t *t = fz_sched_pick(self->sched, idle[i], &self->budget,
                                     self->cfg.default_task_cost, s_on_held, self);
        if (t)
            s_start(self, t, idle[i], false);
    }
    free(idle);
    s_prefetch(self, now);
}

/* Ends a task that is not running, as cancelled. */
static void s_cancel_idle(fz_broker_t *self, fz_task_t *t)
{
    fz_sched_remove(self->sched, t);
    fz_life_move(self, t, FZ_STATE_CANCELLED, NULL);
    fz_graph_final(self, t);
}

/* Cancels one live task: at once if it is not running, else through its worker. */
void fz_life_cancel(fz_broker_t *self, fz_task_t *t)
{
    if (t->state != FZ_STATE_RUNNING) {
        s_cancel_idle(self, t);
        return;
    }
    if (t->cancel_requested)
        return;
    t->cancel_requested = true;
    fz_store_task_flags(self->store, t->id, t->attempt_base, true);
    if (t->worker)
        fz_life_send_cancel(self, t->worker, t->id, t->attempt, "cancelled");
    fz_race_cancel(self, t, "cancelled");
}
