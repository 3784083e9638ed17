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

typedef struct {
    fz_broker_t *self;
    walk_t *ended;
} ended_t;

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

typedef struct {
    fz_broker_t *self;
    int64_t floor;
    walk_t *todo;
} inherit_t;

static void s_inherit_dep(void *arg, uint64_t id, int kind, int state)
{
    inherit_t *in = arg;
    fz_task_t *d = fz_broker_task(in->self, id);
    if (!d || d->inherited >= in->floor)
        return;
    d->inherited = in->floor;
    fz_life_rerank(in->self, d);
    if (d->state == FZ_STATE_WAITING)
        fz_walk_push(in->todo, d->id, 0); /* terminates: floors only rise */
}

/* A waiting task lends its priority to what it waits for, transitively, so a low-priority
   dependency of an urgent task does not wait behind the queue. */
void fz_graph_inherit(fz_broker_t *self, fz_task_t *t)
{
    walk_t todo = {0};
    fz_walk_push(&todo, t->id, 0);
    uint64_t id;
    int unused;
    /* Bounded, so one submit cannot stall the loop on a huge graph: past this many tasks the
       priority is not lent further (aging still moves those tasks). */
    for (int visits = 0; visits < FZ_INHERIT_MAX && fz_walk_pop(&todo, &id, &unused); visits++) {
        fz_task_t *x = fz_broker_task(self, id);
        if (!x)
            continue;
        inherit_t in = {self, x->priority > x->inherited ? x->priority : x->inherited, &todo};
        fz_store_deps_of(self->store, id, s_inherit_dep, &in);
    }
    free(todo.v);
}

static void s_count_dep(void *arg, uint64_t id, int kind, int state)
{
    waitcount_t *w = arg;
    if (state < 0 || !fz_state_final((fz_state_t)state))
        w->pending++;
    else if (kind == 0 && state != FZ_STATE_SUCCEEDED && !w->failed) {
        w->failed = id;
        w->failed_state = (fz_state_t)state;
    }
}

/* Where a waiting task stands, from the stored states of its dependencies: counted afresh
   each time, so a dependency that ends twice (retried) is not counted twice. */
waitcount_t fz_graph_count(fz_broker_t *self, uint64_t id)
{
    waitcount_t w = {0};
    fz_store_deps_of(self->store, id, s_count_dep, &w);
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

static void s_on_dep_ended(void *arg, uint64_t id, int kind, int state)
{
    ended_t *e = arg;
    fz_task_t *d = fz_broker_task(e->self, id);
    if (d && d->state == FZ_STATE_WAITING)
        fz_graph_recheck(e->self, d, e->ended);
}

/* A task reached a final state (already stored): it leaves memory and its dependents move
   on, transitively (a dep-failed dependent fails its own), without recursion. */
void fz_graph_final(fz_broker_t *self, fz_task_t *t)
{
    walk_t ended = {0};
    fz_walk_push(&ended, t->id, (int)t->state);
    fz_life_drop(self, t);
    uint64_t id;
    int state;
    ended_t e = {self, &ended};
    while (fz_walk_pop(&ended, &id, &state))
        fz_store_dependents(self->store, id, s_on_dep_ended, &e);
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
        free(t);
        return NULL;
    }
    t->attempt_base = t->attempt;
    t->cancel_requested = false;
    fz_store_task_flags(self->store, id, t->attempt_base, false);
    char key[24];
    fz_broker_idkey(id, key);
    zhashx_insert(self->tasks, key, t);
    fz_life_move(self, t, state, NULL);
    if (state == FZ_STATE_QUEUED)
        fz_life_ready(self, t);
    return t;
}

typedef struct {
    fz_broker_t *self;
    walk_t *todo;
} revive_t;

static void s_revive_dep(void *arg, uint64_t id, int kind, int state)
{
    revive_t *r = arg;
    if (fz_broker_state_of(r->self, id) == FZ_STATE_DEP_FAILED && !fz_broker_task(r->self, id) &&
        fz_graph_revive(r->self, id, FZ_STATE_WAITING))
        fz_walk_push(r->todo, id, 0);
}

/* A retried task takes back the dependents that failed because of it, transitively: they
   wait again (the rest of a pipeline re-runs from the retried step). */
void fz_graph_revive_dependents(fz_broker_t *self, uint64_t id)
{
    walk_t todo = {0}, revived = {0};
    fz_walk_push(&todo, id, 0);
    revive_t r = {self, &todo};
    uint64_t x;
    int unused;
    while (fz_walk_pop(&todo, &x, &unused)) {
        if (x != id)
            fz_walk_push(&revived, x, 0);
        fz_store_dependents(self->store, x, s_revive_dep, &r);
    }
    /* Each waits for what it still needs (the retried task, at least). */
    walk_t ended = {0};
    ended_t e = {self, &ended};
    while (fz_walk_pop(&revived, &x, &unused)) {
        fz_task_t *d = fz_broker_task(self, x);
        if (d && d->state == FZ_STATE_WAITING)
            fz_graph_recheck(self, d, &ended);
        while (fz_walk_pop(&ended, &x, &unused))
            fz_store_dependents(self->store, x, s_on_dep_ended, &e);
    }
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
    ended_t e = {self, &ended};
    for (size_t i = 0; i < n; i++) {
        fz_task_t *t = fz_broker_task(self, ids[i]);
        if (t && t->state == FZ_STATE_WAITING)
            fz_graph_recheck(self, t, &ended);
        uint64_t id;
        int state;
        while (fz_walk_pop(&ended, &id, &state))
            fz_store_dependents(self->store, id, s_on_dep_ended, &e);
    }
    free(ended.v);
    for (size_t i = 0; i < n; i++) {
        fz_task_t *t = fz_broker_task(self, ids[i]);
        if (t && t->state == FZ_STATE_WAITING)
            fz_graph_inherit(self, t);
    }
    free(ids);
}
