/*  fz_race: best-of-N rounds (PROTOCOL.md section 8); see fz_broker_int.h.

    A task with best_of N > 1 runs a round of up to N attempts at once. One of them is its
    primary attempt: t->attempt, t->worker and t->reserved, what every other part of the
    broker sees of a running task. The others are racers, held in t->race: their attempt
    numbers, workers and reservations. When the scheduler picks the task for an idle worker,
    the primary starts there as for any task (fz_life.c), the round's budget is reserved up
    front (N caps: fz_sched_reservation), and the racers start on the next idle workers that
    serve their models (the task's model and its fallback models in turn), before any other
    task is picked.

    A run that fails while others still run is recorded (its attempt row only) and drops out;
    when the primary is the one that drops out, a racer takes its place. So the task's own
    result path (fz_workers_result) sees only the attempt that won, or the last one standing
    when every run of the round failed, and applies the task's policy to it as to any
    attempt; the task's --retries count rounds. The winner cancels the others: their workers
    stay busy with them (w->left_task) until their results come, which are then recorded for
    their attempts (their branches kept). */

#include "fz_broker_int.h"

#include <stdlib.h>
#include <string.h>

#define FZ_CHAIN_MAX 9 /* a task's model and its at most 8 fallback models */

typedef struct {
    uint32_t n;
    fz_worker_t *worker;
    double reserved;
} racer_t;

typedef struct fz_race_t {
    uint32_t first;    /* the round's first attempt (the primary's at its start) */
    uint32_t top;      /* the highest attempt started */
    uint32_t to_start; /* racers of this round not yet started */
    uint32_t rounds;   /* rounds started: what --retries counts */
    double reserve;    /* reserved up front for the racers not yet started */
    uint32_t nracers;  /* running racers, in racers[0 .. nracers) */
    racer_t racers[FZ_MAX_BEST_OF];
} fz_race_t;

void fz_task_free(fz_task_t *task)
{
    if (task)
        free(task->race);
    free(task);
}

/* ---------------------------------------------------------------- helpers */

static void s_racing_remove(fz_broker_t *self, fz_task_t *t)
{
    void *handle = zlistx_find(self->racing, t);
    if (handle)
        zlistx_delete(self->racing, handle);
}

/* The model of attempt n of a round that started at first: the chain in turn. */
static void s_racer_model(fz_broker_t *self, const fz_task_t *t, uint32_t k, char *model)
{
    char chain[FZ_CHAIN_MAX][65];
    size_t n = fz_store_task_chain(self->store, t->id, chain, FZ_CHAIN_MAX);
    snprintf(model, 65, "%s", n ? chain[k % n] : t->model);
}

fz_enc_t *fz_race_event(fz_broker_t *self, fz_topic_t topic, fz_task_t *t, uint32_t n)
{
    uint32_t primary = t->attempt;
    t->attempt = n;
    fz_enc_t *e = fz_outbox_event(self, topic, t);
    t->attempt = primary;
    return e;
}

static int s_find(const fz_race_t *race, uint32_t n)
{
    for (uint32_t i = 0; race && i < race->nracers; i++)
        if (race->racers[i].n == n)
            return (int)i;
    return -1;
}

static void s_drop_racer(fz_race_t *race, int i)
{
    race->racers[i] = race->racers[--race->nracers];
}

/* ---------------------------------------------------------------- a round */

void fz_race_begin(fz_broker_t *self, fz_task_t *t)
{
    if (!t->race && !(t->race = calloc(1, sizeof *t->race)))
        return; /* no memory: the round is its primary alone */
    fz_race_t *race = t->race;
    uint32_t n = t->best_of > FZ_MAX_BEST_OF ? FZ_MAX_BEST_OF : t->best_of;
    race->first = race->top = t->attempt;
    race->to_start = n - 1;
    race->rounds++;
    race->nracers = 0;
    race->reserve = race->to_start * fz_life_attempt_cap(self, t);
    fz_budget_reserve(&self->budget, race->reserve);
    zlistx_add_end(self->racing, t);
}

bool fz_race_waiting(const fz_broker_t *self)
{
    return zlistx_size(self->racing) > 0;
}

/* Starts the next racer of t on w. */
static void s_start_racer(fz_broker_t *self, fz_task_t *t, fz_worker_t *w, const char *model)
{
    fz_race_t *race = t->race;
    racer_t *r = &race->racers[race->nracers++];
    r->n = ++race->top;
    r->worker = w;
    r->reserved = fz_life_attempt_cap(self, t);
    race->reserve -= r->reserved;
    if (race->reserve < 0)
        race->reserve = 0;
    if (--race->to_start == 0)
        s_racing_remove(self, t);
    w->task = t;
    w->attempt = r->n;
    fz_sched_started(self->sched, t);
    fz_store_attempt_start(self->store, t->id, r->n, w->name, model, r->reserved);
    fz_enc_t *e = fz_race_event(self, FZ_TOPIC_TASK_DISPATCHED, t, r->n);
    fz_enc_str(e, "worker", w->name);
    fz_enc_float(e, "reserved", r->reserved);
    fz_life_send_dispatch(self, t, w, r->n, race->first - 1, model, r->reserved);
}

bool fz_race_join(fz_broker_t *self, fz_worker_t *w)
{
    if (fz_sched_running(self->sched) >= fz_sched_max_running(self->sched))
        return false;
    for (fz_task_t *t = zlistx_first(self->racing); t; t = zlistx_next(self->racing)) {
        if (t->state != FZ_STATE_RUNNING || t->cancel_requested || !t->race->to_start)
            continue;
        char model[65];
        s_racer_model(self, t, t->race->top + 1 - t->race->first, model);
        if (!fz_worker_serves(w, model))
            continue;
        s_start_racer(self, t, w, fz_worker_model_for(w, model));
        return true;
    }
    return false;
}

/* The round starts no more racers; what was reserved for them goes back. */
static void s_close(fz_broker_t *self, fz_task_t *t)
{
    fz_race_t *race = t->race;
    fz_budget_release(&self->budget, race->reserve);
    race->reserve = 0;
    race->to_start = 0;
    s_racing_remove(self, t);
    fz_life_budget_moved(self);
}

void fz_race_cancel(fz_broker_t *self, fz_task_t *t, const char *reason)
{
    if (!t->race)
        return;
    s_close(self, t);
    for (uint32_t i = 0; i < t->race->nracers; i++)
        fz_life_send_cancel(self, t->race->racers[i].worker, t->id, t->race->racers[i].n, reason);
}

void fz_race_end(fz_broker_t *self, fz_task_t *t, uint32_t winner)
{
    fz_race_t *race = t->race;
    if (!race)
        return;
    s_close(self, t);
    char why[64];
    snprintf(why, sizeof why, "best-of: attempt %u won", winner);
    for (uint32_t i = 0; i < race->nracers; i++) {
        racer_t *r = &race->racers[i];
        if (winner)
            fz_life_send_cancel(self, r->worker, t->id, r->n, why);
        /* Its worker stays busy with it until its result comes (then recorded). */
        r->worker->task = NULL;
        r->worker->left_task = t->id;
        r->worker->left_attempt = r->n;
        r->worker->left_cap = r->reserved;
        fz_sched_ended(self->sched, t);
        fz_budget_release(&self->budget, r->reserved);
    }
    race->nracers = 0;
}

uint32_t fz_race_last_attempt(const fz_task_t *t)
{
    return t->race && t->race->top > t->attempt ? t->race->top : t->attempt;
}

uint32_t fz_race_rounds(const fz_task_t *t)
{
    if (t->race)
        return t->race->rounds;
    /* Loaded after a restart: as many rounds as its attempts fill. */
    uint32_t made = t->attempt - t->attempt_base, n = t->best_of > 1 ? t->best_of : 1;
    return (made + n - 1) / n;
}

bool fz_race_runs(const fz_task_t *t, uint32_t n)
{
    return s_find(t->race, n) >= 0;
}

uint32_t fz_race_running(const fz_task_t *t)
{
    return t->race ? t->race->nracers : 0;
}

/* ---------------------------------------------------------------- runs that end */

/* Racer i becomes the primary (the one the task's result path sees); the primary, if any,
   takes its slot as a racer. */
static void s_promote(fz_task_t *t, int i)
{
    racer_t r = t->race->racers[i];
    if (t->worker)
        t->race->racers[i] = (racer_t){t->attempt, t->worker, t->reserved};
    else
        s_drop_racer(t->race, i);
    t->attempt = r.n;
    t->worker = r.worker;
    t->reserved = r.reserved;
    t->stalled = false;
    t->stalled_since = 0;
}

void fz_race_won(fz_task_t *t, uint32_t n)
{
    int i = s_find(t->race, n);
    if (i >= 0)
        s_promote(t, i);
}

/* Records a run that dropped out of the round, and its event. */
static void s_record(fz_broker_t *self, fz_task_t *t, uint32_t n, fz_worker_t *w,
                     const fz_result_t *r, double reserved)
{
    fz_store_attempt_end(self->store, t->id, n, r);
    fz_enc_t *e = fz_race_event(self, FZ_TOPIC_TASK_ATTEMPT_FAILED, t, n);
    fz_workers_event_result(e, w, r);
    fz_budget_settle(&self->budget, reserved, fz_guard_charge(self, t->id, n, reserved, r, e));
    fz_life_budget_moved(self);
    fz_sched_ended(self->sched, t);
    if (w) {
        w->task = NULL;
        w->idle_since_ms = fz_clock_ms();
    }
}

bool fz_race_drop(fz_broker_t *self, fz_task_t *t, uint32_t n, const fz_result_t *r)
{
    if (!t->race)
        return false;
    int i = s_find(t->race, n);
    if (i >= 0) {
        racer_t x = t->race->racers[i];
        s_drop_racer(t->race, i);
        s_record(self, t, n, x.worker, r, x.reserved);
        return true;
    }
    /* The primary drops out while a racer runs (or may still start): one takes its place. */
    if (n != t->attempt || (t->race->nracers == 0))
        return false;
    fz_worker_t *w = t->worker;
    double reserved = t->reserved;
    t->worker = NULL;
    s_promote(t, 0);
    s_record(self, t, n, w, r, reserved);
    return true;
}

bool fz_race_lost(fz_broker_t *self, fz_task_t *t, fz_worker_t *w, const char *why)
{
    if (!t->race || t->state != FZ_STATE_RUNNING)
        return false;
    uint32_t n = w == t->worker ? t->attempt : w->attempt;
    fz_result_t r = {.outcome = fz_outcome_name(FZ_OUTCOME_LOST), .summary = why};
    return fz_race_drop(self, t, n, &r);
}

bool fz_race_late(fz_broker_t *self, fz_worker_t *w, uint64_t id, uint32_t n, const fz_result_t *r)
{
    if (!w->left_task || w->left_task != id || w->left_attempt != n)
        return false;
    /* Reserved no more (released when the round was won): what it spent is charged, held to
       what it had reserved. */
    fz_store_attempt_end(self->store, id, n, r);
    fz_budget_settle(&self->budget, 0, fz_guard_charge(self, id, n, w->left_cap, r, NULL));
    fz_life_budget_moved(self);
    w->left_task = 0;
    w->left_attempt = 0;
    w->left_cap = 0;
    w->idle_since_ms = fz_clock_ms();
    fz_info("task %llu attempt %u (a best-of round's loser) ended: %s", (unsigned long long)id, n,
            r->outcome);
    return true;
}

void fz_race_left_lost(fz_broker_t *self, fz_worker_t *w, const char *why)
{
    if (!w->left_task)
        return;
    fz_result_t r = {.outcome = fz_outcome_name(FZ_OUTCOME_LOST), .summary = why};
    fz_race_late(self, w, w->left_task, w->left_attempt, &r);
}
