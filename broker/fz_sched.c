/*  fz_sched: ready queues per model, held queue, running limits; see fz_sched.h. */

#include "fz_sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_util.h"

#define FZ_SCHED_HOLDS_PER_PICK 8

typedef struct {
    char name[65];
    fz_queue_t *ready;
    uint32_t running;
    uint32_t cap;             /* 0 = no per-model limit */
    int64_t blocked_until_ms; /* rate-limited: none of its tasks starts before (monotonic) */
} model_t;

struct fz_sched_t {
    model_t *models; /* O(models) lookups: models are few */
    size_t nmodels, capmodels;
    fz_queue_t *held;
    uint32_t running, max_running;
};

static bool s_unhealthy_for(const fz_worker_t *w, const char *model)
{
    for (size_t i = 0; i < w->nunhealthy; i++)
        if (strcmp(w->unhealthy[i], model) == 0)
            return true;
    return false;
}

bool fz_worker_serves(const fz_worker_t *w, const char *model)
{
    if (w->unhealthy_all || (*model && s_unhealthy_for(w, model)))
        return false;
    if (w->any_model)
        return true;
    if (!*model) /* a task for any model: a worker with at least one allowed model runs it */
        return w->nmodels > 0;
    for (size_t i = 0; i < w->nmodels; i++)
        if (strcmp(w->models[i], model) == 0)
            return true;
    return false;
}

const char *fz_worker_model_for(const fz_worker_t *w, const char *model)
{
    if (*model)
        return model;
    for (size_t i = 0; i < w->nmodels; i++)
        if (!s_unhealthy_for(w, w->models[i]))
            return w->models[i];
    return "";
}

void fz_worker_take_next(fz_worker_t *w)
{
    w->task = w->next;
    w->attempt = w->next_attempt;
    w->next = NULL;
}

void fz_worker_set_unhealthy(fz_worker_t *w, const char *model)
{
    if (!*model) {
        w->unhealthy_all = true;
        return;
    }
    if (!s_unhealthy_for(w, model) && w->nunhealthy < FZ_MAX_WORKER_MODELS)
        snprintf(w->unhealthy[w->nunhealthy++], sizeof w->unhealthy[0], "%s", model);
}

fz_sched_t *fz_sched_new(uint32_t max_running)
{
    fz_sched_t *self = calloc(1, sizeof *self);
    if (!self || !(self->held = fz_queue_new())) {
        free(self);
        return NULL;
    }
    self->max_running = max_running;
    return self;
}

void fz_sched_destroy(fz_sched_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_sched_t *self = *self_p;
    for (size_t i = 0; i < self->nmodels; i++)
        fz_queue_destroy(&self->models[i].ready);
    free(self->models);
    fz_queue_destroy(&self->held);
    free(self);
    *self_p = NULL;
}

static model_t *s_model(fz_sched_t *self, const char *name, bool create)
{
    for (size_t i = 0; i < self->nmodels; i++)
        if (strcmp(self->models[i].name, name) == 0)
            return &self->models[i];
    if (!create)
        return NULL;
    if (self->nmodels == self->capmodels) {
        size_t cap = self->capmodels ? self->capmodels * 2 : 8;
        model_t *m = realloc(self->models, cap * sizeof *m);
        if (!m)
            return NULL;
        self->models = m;
        self->capmodels = cap;
    }
    model_t *m = &self->models[self->nmodels];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    if (!(m->ready = fz_queue_new()))
        return NULL;
    self->nmodels++;
    return m;
}

int fz_sched_set_cap(fz_sched_t *self, const char *model, uint32_t cap)
{
    model_t *m = s_model(self, model, true);
    if (!m)
        return -1;
    m->cap = cap;
    return 0;
}

uint32_t fz_sched_max_running(const fz_sched_t *self)
{
    return self->max_running;
}

int fz_sched_enqueue(fz_sched_t *self, fz_task_t *task)
{
    model_t *m = s_model(self, task->model, true);
    if (!m)
        return -1;
    task->hold_reason[0] = 0;
    return fz_queue_push(m->ready, task);
}

int fz_sched_hold(fz_sched_t *self, fz_task_t *task, const char *reason)
{
    char why[sizeof task->hold_reason];
    snprintf(why, sizeof why, "%s", reason); /* reason may be task->hold_reason itself */
    fz_sched_remove(self, task);
    memcpy(task->hold_reason, why, sizeof why);
    return fz_queue_push(self->held, task);
}

void fz_sched_remove(fz_sched_t *self, fz_task_t *task)
{
    (void)self;
    if (task->queue)
        fz_queue_remove(task->queue, task);
}

void fz_sched_reorder(fz_sched_t *self, fz_task_t *task)
{
    (void)self;
    if (task->queue)
        fz_queue_update(task->queue, task);
}

double fz_sched_attempt_cap(const fz_task_t *task, double default_cost)
{
    return task->max_cost > 0 ? task->max_cost : default_cost;
}

double fz_sched_reservation(const fz_task_t *task, double default_cost)
{
    double one = fz_sched_attempt_cap(task, default_cost);
    return task->best_of > 1 ? one * task->best_of : one; /* a round reserves all at once */
}

static bool s_at_cap(const model_t *m, int64_t now_ms)
{
    return (m->cap && m->running >= m->cap) || now_ms < m->blocked_until_ms;
}

int fz_sched_block(fz_sched_t *self, const char *model, int64_t until_ms)
{
    model_t *m = s_model(self, model, true);
    if (!m)
        return -1;
    if (until_ms > m->blocked_until_ms)
        m->blocked_until_ms = until_ms;
    return 0;
}

int64_t fz_sched_blocked_until(const fz_sched_t *self, const char *model)
{
    for (size_t i = 0; i < self->nmodels; i++)
        if (strcmp(self->models[i].name, model) == 0)
            return self->models[i].blocked_until_ms;
    return 0;
}

/* The best top among the queues this worker serves, skipping capped models. */
static model_t *s_best_queue(fz_sched_t *self, const fz_worker_t *w)
{
    model_t *best = NULL;
    int64_t now = fz_clock_ms();
    for (size_t i = 0; i < self->nmodels; i++) {
        model_t *m = &self->models[i];
        fz_task_t *top = fz_queue_peek(m->ready);
        if (!top || s_at_cap(m, now) || !fz_worker_serves(w, m->name))
            continue;
        if (!best || fz_queue_before(top, fz_queue_peek(best->ready)))
            best = m;
    }
    return best;
}

fz_task_t *fz_sched_pick(fz_sched_t *self, const fz_worker_t *worker, const fz_budget_t *budget,
                         double default_cost, fz_sched_held_fn *held_fn, void *arg)
{
    if (self->running >= self->max_running)
        return NULL;
    model_t *m;
    int holds = 0;
    while ((m = s_best_queue(self, worker))) {
        fz_task_t *task = fz_queue_peek(m->ready);
        if (budget && !fz_budget_fits(budget, fz_sched_reservation(task, default_cost))) {
            /* Held tasks leave the queue, so smaller ones behind can run; a bounded number
               per pick, so that an exhausted budget does not hold a whole backlog in one
               turn (the rest is held as it reaches the top). */
            if (holds++ == FZ_SCHED_HOLDS_PER_PICK)
                return NULL;
            fz_sched_hold(self, task, "budget");
            if (held_fn)
                held_fn(arg, task);
            continue;
        }
        return fz_queue_pop(m->ready);
    }
    return NULL;
}

void fz_sched_started(fz_sched_t *self, const fz_task_t *task)
{
    self->running++;
    model_t *m = s_model(self, task->model, true);
    if (m)
        m->running++;
}

void fz_sched_ended(fz_sched_t *self, const fz_task_t *task)
{
    if (self->running)
        self->running--;
    model_t *m = s_model(self, task->model, false);
    if (m && m->running)
        m->running--;
}

uint32_t fz_sched_running(const fz_sched_t *self)
{
    return self->running;
}

size_t fz_sched_release_budget(fz_sched_t *self, const fz_budget_t *budget, double default_cost,
                               fz_sched_held_fn *fn, void *arg)
{
    /* In priority order, while the best held task fits: O(1) when nothing fits, so it can
       run every turn whatever the backlog. A big task at the top keeps smaller ones behind it
       waiting, as the queue's order says. */
    double left = fz_budget_left(budget);
    size_t moved = 0;
    fz_task_t *t;
    while ((t = fz_queue_peek(self->held))) {
        double need = fz_sched_reservation(t, default_cost);
        if (need > left + 1e-9)
            break;
        left -= need;
        fz_queue_pop(self->held);
        fz_sched_enqueue(self, t);
        moved++;
        if (fn)
            fn(arg, t);
    }
    return moved;
}

size_t fz_sched_ready(const fz_sched_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nmodels; i++)
        n += fz_queue_size(self->models[i].ready);
    return n;
}

size_t fz_sched_held(const fz_sched_t *self)
{
    return fz_queue_size(self->held);
}

fz_sched_where_t fz_sched_where(const fz_sched_t *self, const fz_task_t *task)
{
    if (!task->queue)
        return FZ_SCHED_NOWHERE;
    return task->queue == self->held ? FZ_SCHED_HELD : FZ_SCHED_READY;
}
