/*  fz_graph: dependencies and subtasks (waiting counts, dep-failed, revival, inheritance); see
    fz_broker_int.h. */

#include "fz_broker_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void fz_walk_push(walk_t *w, uint64_t id, int state)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct item *v = realloc(w->v, cap * sizeof *v);
        if (!v)
            return; /* out of memory: the walk stops short, nothing breaks */
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = (struct item){id, state};
}

bool fz_walk_pop(walk_t *w, uint64_t *id, int *state)
{
    if (w->n == 0)
        return false;
    w->n--;
    *id = w->v[w->n].id;
    *state = w->v[w->n].state;
    return true;
}

/* A waiting task lends its priority to what it waits for, transitively, so a low-priority
   dependency of an urgent task does not wait behind the queue. */
void fz_graph_inherit(fz_broker_t *self, fz_task_t *t)
{
    walk_t todo = {0};
    fz_deps_t deps = {0};
    fz_walk_push(&todo, t->id, 0);
    uint64_t id;
    int unused;
    /* Bounded, so one submit cannot stall the loop on a huge graph: past this many tasks the
       priority is not lent further (aging still moves those tasks). */
    for (int visits = 0; visits < FZ_INHERIT_MAX && fz_walk_pop(&todo, &id, &unused); visits++) {
        fz_task_t *x = fz_broker_task(self, id);
        if (!x || fz_store_deps_of(self->store, id, &deps))
            continue;
        int64_t floor = x->priority > x->inherited ? x->priority : x->inherited;
        for (size_t i = 0; i < deps.n; i++) {
            fz_task_t *d = fz_broker_task(self, deps.v[i].id);
            if (!d || d->inherited >= floor)
                continue;
            d->inherited = floor;
            fz_life_rerank(self, d);
            if (d->state == FZ_STATE_WAITING)
                fz_walk_push(&todo, d->id, 0); /* terminates: floors only rise */
        }
    }
    fz_deps_free(&deps);
    free(todo.v);
}

/* Where a waiting task stands, from the stored states of its dependencies: counted afresh
   each time, so a dependency that ends twice (retried) is not counted twice. */
waitcount_t fz_graph_count(fz_broker_t *self, uint64_t id)
{
    waitcount_t w = {0};
    fz_deps_t deps = {0};
    fz_store_deps_of(self->store, id, &deps);
    for (size_t i = 0; i < deps.n; i++) {
        const fz_dep_t *d = &deps.v[i];
        if (d->state < 0 || !fz_state_final((fz_state_t)d->state))
            w.pending++;
        else if (d->kind == 0 && d->state != FZ_STATE_SUCCEEDED && !w.failed) {
            w.failed = d->id;
            w.failed_state = (fz_state_t)d->state;
        }
    }
    fz_deps_free(&deps);
    return w;
}

/* Ends a waiting task as dep-failed; its own dependents are walked by the caller. */
static void s_depfail(fz_broker_t *self, fz_task_t *d, const waitcount_t *w)
{
    char why[160];
    fz_graph_depfail_why(w->failed, w->failed_state, why, sizeof why);
    fz_life_move(self, d, FZ_STATE_DEP_FAILED, &(fz_move_t){.summary = why});
}

/* Moves a waiting task on: dep-failed (pushed on `ended` for its own dependents), ready, or
   still waiting with a fresh count. */
void fz_graph_recheck(fz_broker_t *self, fz_task_t *d, walk_t *ended)
{
    waitcount_t w = fz_graph_count(self, d->id);
    if (w.failed) {
        s_depfail(self, d, &w);
        fz_walk_push(ended, d->id, FZ_STATE_DEP_FAILED);
        fz_life_drop(self, d);
        return;
    }
    d->deps_pending = w.pending;
    if (w.pending == 0) {
        fz_life_move(self, d, FZ_STATE_QUEUED, NULL);
        fz_life_ready(self, d);
    }
}

/* The tasks in `ended` have ended: their waiting dependents move on, and those that end in
   turn (dep-failed) are walked too, until none is left. A loop, not a recursion. */
static void s_settle(fz_broker_t *self, walk_t *ended)
{
    fz_deps_t deps = {0};
    uint64_t id;
    int state;
    while (fz_walk_pop(ended, &id, &state)) {
        if (fz_store_dependents(self->store, id, &deps))
            continue;
        for (size_t i = 0; i < deps.n; i++) {
            fz_task_t *d = fz_broker_task(self, deps.v[i].id);
            if (d && d->state == FZ_STATE_WAITING)
                fz_graph_recheck(self, d, ended);
        }
    }
    fz_deps_free(&deps);
}

/* A task reached a final state (already stored): it leaves memory and its dependents move
   on, transitively (a dep-failed dependent fails its own), without recursion. */
void fz_graph_final(fz_broker_t *self, fz_task_t *t)
{
    walk_t ended = {0};
    fz_walk_push(&ended, t->id, (int)t->state);
    fz_life_drop(self, t);
    s_settle(self, &ended);
    free(ended.v);
}

void fz_graph_depfail_why(uint64_t dep, fz_state_t state, char *why, size_t wl)
{
    snprintf(why, wl, "dependency %llu %s", (unsigned long long)dep,
             state == FZ_STATE_CANCELLED    ? "was cancelled"
             : state == FZ_STATE_DEP_FAILED ? "could not run (dep-failed)"
                                            : "failed");
}

/* Brings an ended task back to life with a fresh retry allowance, in `state` (queued or
   waiting). NULL if it cannot be loaded. */
fz_task_t *fz_graph_revive(fz_broker_t *self, uint64_t id, fz_state_t state)
{
    fz_task_t *t = calloc(1, sizeof *t);
    if (!t || fz_store_load_task(self->store, id, t)) {
        fz_task_free(t);
        return NULL;
    }
    t->attempt_base = t->attempt;
    t->cancel_requested = false;
    fz_store_task_flags(self->store, id, t->attempt_base, false);
    fz_broker_adopt(self, t);
    fz_life_move(self, t, state, NULL);
    if (state == FZ_STATE_QUEUED)
        fz_life_ready(self, t);
    return t;
}

/* A retried task takes back the dependents that failed because of it, transitively: they
   wait again (the rest of a pipeline re-runs from the retried step). */
void fz_graph_revive_dependents(fz_broker_t *self, uint64_t id)
{
    walk_t todo = {0}, revived = {0}, ended = {0};
    fz_deps_t deps = {0};
    fz_walk_push(&todo, id, 0);
    uint64_t x;
    int unused;
    while (fz_walk_pop(&todo, &x, &unused)) {
        if (x != id)
            fz_walk_push(&revived, x, 0);
        if (fz_store_dependents(self->store, x, &deps))
            continue;
        for (size_t i = 0; i < deps.n; i++) {
            uint64_t d = deps.v[i].id;
            if (fz_broker_state_of(self, d) == FZ_STATE_DEP_FAILED && !fz_broker_task(self, d) &&
                fz_graph_revive(self, d, FZ_STATE_WAITING))
                fz_walk_push(&todo, d, 0);
        }
    }
    /* Each waits for what it still needs (the retried task, at least). */
    while (fz_walk_pop(&revived, &x, &unused)) {
        fz_task_t *d = fz_broker_task(self, x);
        if (d && d->state == FZ_STATE_WAITING)
            fz_graph_recheck(self, d, &ended);
        s_settle(self, &ended);
    }
    fz_deps_free(&deps);
    free(todo.v);
    free(revived.v);
    free(ended.v);
}

/* Waiting tasks after a load: count what each still waits for (dependencies may have ended
   while they were stored), fail those whose dependency failed, lend priorities. */
void fz_graph_load_waiting(fz_broker_t *self)
{
    /* Ids, not pointers: failing one task may fail (and free) others of the list. */
    size_t n = 0, cap = zhashx_size(self->tasks);
    uint64_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
    if (!ids)
        return;
    for (fz_task_t *t = zhashx_first(self->tasks); t; t = zhashx_next(self->tasks))
        if (t->state == FZ_STATE_WAITING)
            ids[n++] = t->id;
    walk_t ended = {0};
    for (size_t i = 0; i < n; i++) {
        fz_task_t *t = fz_broker_task(self, ids[i]);
        if (t && t->state == FZ_STATE_WAITING)
            fz_graph_recheck(self, t, &ended);
        s_settle(self, &ended);
    }
    free(ended.v);
    for (size_t i = 0; i < n; i++) {
        fz_task_t *t = fz_broker_task(self, ids[i]);
        if (t && t->state == FZ_STATE_WAITING)
            fz_graph_inherit(self, t);
    }
    free(ids);
}
