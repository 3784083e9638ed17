/*  fz_broker: the event loop, message handlers and task life cycle; see fz_broker.h. */

#include "fz_broker.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fz_budget.h"
#include "fz_history.h"
#include "fz_net.h"
#include "fz_sched.h"
#include "fz_store.h"

/* Tasks with no current attempt result for this long after a restart are requeued: two
   dead-peer periods, so that workers have time to reconnect and say what they run. */
#define FZ_ORPHAN_PERIODS 6
/* Messages handled per loop turn before the turn commits: bounds the latency of acks. */
#define FZ_TURN_MAX 512
/* Lost attempts (worker died) beyond the task's retries before it is failed anyway: a task
   that keeps killing its workers must not loop forever. */
#define FZ_LOST_EXTRA 3
/* Tasks one priority inheritance may raise (a walk up a dependency graph). */
#define FZ_INHERIT_MAX 4096
/* Recent events kept for subscribers that missed some: at most this many, this many bytes. */
#define FZ_HISTORY_EVENTS 20000
#define FZ_HISTORY_BYTES (16u << 20)
/* Exit status with which an agent says "do not retry me". */
#define FZ_EXIT_NO_RETRY 75

/* One message to send once the turn has committed. */
typedef struct {
    zframe_t *to;   /* routing id, or NULL for an event */
    char topic[32]; /* event topic */
    fz_enc_t *enc;
    bool reply;        /* a reply to a request: on a failed commit it becomes an error */
    uint64_t rid;      /* the request's id */
    uint64_t dispatch; /* task id when this is a dispatch */
} out_t;

struct fz_broker_t {
    fz_broker_config_t cfg;
    zsock_t *router, *pub;
    fz_store_t *store;
    fz_sched_t *sched;
    fz_budget_t budget;
    zhashx_t *tasks;   /* "id" -> fz_task_t, owner of every live task */
    zhashx_t *workers; /* hex routing id -> fz_worker_t, owner of every worker */
    zlistx_t *timed;   /* retrying and orphaned tasks (points into tasks) */
    char **allowed;    /* model whitelist, NULL = any */
    size_t nallowed;
    bool paused;
    out_t *out;
    size_t nout, capout;
    uint64_t seq;
    fz_history_t *history; /* recent events, for subscribers that missed some */
    int64_t next_heartbeat_ms;
    int64_t next_rerank_ms;
    bool budget_moved; /* spend, reservations or cap changed: release held tasks this turn */
    uint64_t rng;
};

/* ---------------------------------------------------------------- small helpers */

void fz_broker_config_defaults(fz_broker_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind = FZ_DEFAULT_BROKER;
    cfg->events = FZ_DEFAULT_EVENTS;
    cfg->db = NULL; /* the front end picks $FZ_STATE/fz.db */
    cfg->max_running = 3;
    cfg->daily_budget = 20.0;
    cfg->default_task_cost = 0.5;
    cfg->default_timeout = 3600;
    cfg->kill_grace = 10;
    cfg->heartbeat_ms = 1000;
    cfg->default_retries = 0;
    cfg->backoff_min_ms = 1000;
    cfg->backoff_max_ms = 60000;
    cfg->sync_full = true;
    cfg->max_depth = 5;
    cfg->max_children = 100;
    cfg->aging_s = 0;
    cfg->deadline_horizon = 3600;
}

static void s_idkey(uint64_t id, char key[24])
{
    snprintf(key, 24, "%llu", (unsigned long long)id);
}

static fz_task_t *s_task(fz_broker_t *self, uint64_t id)
{
    char key[24];
    s_idkey(id, key);
    return zhashx_lookup(self->tasks, key);
}

static void s_hexkey(zframe_t *frame, char *key, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *d = zframe_data(frame);
    size_t n = zframe_size(frame), k = 0;
    for (size_t i = 0; i < n && k + 2 < size; i++) {
        key[k++] = hex[d[i] >> 4];
        key[k++] = hex[d[i] & 15];
    }
    key[k] = 0;
}

static fz_worker_t *s_worker(fz_broker_t *self, zframe_t *from)
{
    char key[64];
    s_hexkey(from, key, sizeof key);
    return zhashx_lookup(self->workers, key);
}

static double s_random(fz_broker_t *self)
{
    /* xorshift64: jitter needs no quality, only no shared state */
    self->rng ^= self->rng << 13;
    self->rng ^= self->rng >> 7;
    self->rng ^= self->rng << 17;
    return (double)(self->rng >> 11) / 9007199254740992.0;
}

static bool s_model_allowed(fz_broker_t *self, const char *model)
{
    if (!self->allowed || !*model)
        return true;
    for (size_t i = 0; i < self->nallowed; i++)
        if (strcmp(self->allowed[i], model) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- outbox and events */

static out_t *s_out_add(fz_broker_t *self, zframe_t *to, fz_enc_t *enc)
{
    if (self->nout == self->capout) {
        size_t cap = self->capout ? self->capout * 2 : 64;
        out_t *o = realloc(self->out, cap * sizeof *o);
        if (!o) {
            fz_enc_destroy(&enc);
            return NULL;
        }
        self->out = o;
        self->capout = cap;
    }
    out_t *o = &self->out[self->nout++];
    memset(o, 0, sizeof *o);
    o->to = to ? zframe_dup(to) : NULL;
    o->enc = enc;
    return o;
}

static void s_reply(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_enc_t *enc)
{
    out_t *o = s_out_add(self, to, enc);
    if (o) {
        o->reply = true;
        o->rid = rid;
    }
}

static void s_reply_error(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_err_t code,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void s_reply_error(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_err_t code,
                          const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    /* It goes through the outbox to keep replies in order. */
    out_t *o = s_out_add(self, to, fz_enc_error(rid, code, message));
    if (o) {
        o->reply = true;
        o->rid = rid;
    }
}

/* A new event map with the common task fields; finish with s_emit. */
static fz_enc_t *s_event(const char *topic, const fz_task_t *t)
{
    fz_enc_t *e = fz_enc_new_map();
    fz_enc_float(e, "ts", fz_wall());
    fz_enc_str(e, "event", topic);
    if (t) {
        fz_enc_uint(e, "task", t->id);
        fz_enc_str(e, "state", fz_state_name(t->state));
        fz_enc_int(e, "priority", t->priority);
        fz_enc_str(e, "model", t->model);
        if (t->attempt)
            fz_enc_uint(e, "attempt", t->attempt);
        if (t->parent)
            fz_enc_uint(e, "parent", t->parent);
    }
    return e;
}

static void s_emit(fz_broker_t *self, const char *topic, fz_enc_t **e_p)
{
    out_t *o = s_out_add(self, NULL, *e_p);
    *e_p = NULL;
    if (o)
        snprintf(o->topic, sizeof o->topic, "%s", topic);
}

/* Events that carry only the task's common fields. */
static void s_emit_task(fz_broker_t *self, const char *topic, const fz_task_t *t)
{
    fz_enc_t *e = s_event(topic, t);
    s_emit(self, topic, &e);
}

static void s_emit_now(fz_broker_t *self, const char *topic, fz_enc_t **e_p)
{
    fz_enc_uint(*e_p, "seq", ++self->seq);
    size_t len;
    const void *data = fz_enc_data(*e_p, &len);
    if (data) {
        zmq_send(zsock_resolve(self->pub), topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(zsock_resolve(self->pub), data, len, ZMQ_DONTWAIT);
        fz_history_add(self->history, self->seq, data, len);
    }
    fz_enc_destroy(e_p);
}

static void s_worker_gone(fz_broker_t *self, fz_worker_t *w, const char *reason);

/* Sends the turn's messages after its commit. A dispatch that cannot reach its worker means
   the worker is gone: its task goes back to the queue, recorded in the next turn. */
static void s_flush(fz_broker_t *self)
{
    char gone[64][64];
    size_t ngone = 0;
    for (size_t i = 0; i < self->nout; i++) {
        out_t *o = &self->out[i];
        if (!o->to) {
            s_emit_now(self, o->topic, &o->enc);
            continue;
        }
        if (fz_net_send(self->router, o->to, &o->enc) < 0 && o->dispatch && ngone < 64) {
            fz_warn("dispatch of task %llu failed (%s): worker is gone",
                    (unsigned long long)o->dispatch, strerror(errno));
            s_hexkey(o->to, gone[ngone++], sizeof gone[0]);
        }
        zframe_destroy(&o->to);
    }
    self->nout = 0;
    for (size_t i = 0; i < ngone; i++) {
        fz_worker_t *w = zhashx_lookup(self->workers, gone[i]);
        if (w)
            s_worker_gone(self, w, "unreachable");
    }
}

/* The store failed to commit: nothing of this turn happened. Replies become errors,
   dispatches and events are dropped, and memory is rebuilt from the store. */
static void s_reload(fz_broker_t *self);

static void s_abandon_turn(fz_broker_t *self)
{
    for (size_t i = 0; i < self->nout; i++) {
        out_t *o = &self->out[i];
        fz_enc_destroy(&o->enc);
        if (o->to && o->reply)
            fz_net_send_error(self->router, o->to, o->rid, FZ_EUNAVAILABLE,
                              "the broker could not store this change; try again");
        zframe_destroy(&o->to);
    }
    self->nout = 0;
    s_reload(self);
}

/* ---------------------------------------------------------------- task life cycle */

static void s_task_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_worker_free(void **item)
{
    fz_worker_t *w = *item;
    if (w)
        zframe_destroy(&w->routing_id);
    free(w);
    *item = NULL;
}

static void s_timed_add(fz_broker_t *self, fz_task_t *t)
{
    if (!zlistx_find(self->timed, t))
        zlistx_add_end(self->timed, t);
}

static void s_timed_remove(fz_broker_t *self, fz_task_t *t)
{
    void *handle = zlistx_find(self->timed, t);
    if (handle)
        zlistx_delete(self->timed, handle);
}

/* Forgets a task that reached a final state (the store keeps it). */
static void s_task_drop(fz_broker_t *self, fz_task_t *t)
{
    fz_sched_remove(self->sched, t);
    s_timed_remove(self, t);
    char key[24];
    s_idkey(t->id, key);
    zhashx_delete(self->tasks, key);
}

/* ---------------------------------------------------------------- effective priority */

/* How much a deadline adds: nothing until the horizon, then rising to +100 at the deadline,
   then +1 per minute late, at most +1000 (so `escalate`, which can reach the top base
   priority, still wins). */
static double s_deadline_boost(const fz_broker_t *self, const fz_task_t *t, double now)
{
    if (t->deadline <= 0)
        return 0;
    double left = t->deadline - now, horizon = self->cfg.deadline_horizon;
    if (left >= horizon)
        return 0;
    if (left > 0)
        return 100.0 * (1.0 - left / horizon);
    double late = 100.0 - left / 60.0;
    return late < 1000.0 ? late : 1000.0;
}

/* Aging adds +1 per --aging seconds in the queue to every ready task alike, so it is kept
   out of the stored rank (which would otherwise change every second) by subtracting each
   task's own start instead: rank differences are then exactly effective-priority
   differences. */
static double s_aging(const fz_broker_t *self, const fz_task_t *t, double now)
{
    return self->cfg.aging_s > 0 ? (now - t->queued_at) / self->cfg.aging_s : 0;
}

static double s_effective(const fz_broker_t *self, const fz_task_t *t, double now)
{
    int64_t base = t->priority > t->inherited ? t->priority : t->inherited;
    return (double)base + s_deadline_boost(self, t, now) + s_aging(self, t, now);
}

static void s_rerank(fz_broker_t *self, fz_task_t *t)
{
    double now = fz_wall();
    double rank = s_effective(self, t, now);
    if (self->cfg.aging_s > 0)
        rank -= now / self->cfg.aging_s;
    if (rank != t->rank) {
        t->rank = rank;
        fz_sched_reorder(self->sched, t);
    }
}

/* Makes a task ready to run: into its model's queue, aging from now. */
static void s_ready(fz_broker_t *self, fz_task_t *t)
{
    t->queued_at = fz_wall();
    t->rank = 0;
    s_rerank(self, t);
    fz_sched_enqueue(self->sched, t);
}

/* A stack of (id, state) pairs: graph walks use it instead of recursion, so a dependency
   chain of any length cannot overflow the C stack. */
typedef struct {
    struct item {
        uint64_t id;
        int state;
    } * v;
    size_t n, cap;
} walk_t;

static void s_walk_push(walk_t *w, uint64_t id, int state)
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

static bool s_walk_pop(walk_t *w, uint64_t *id, int *state)
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
    fz_task_t *d = s_task(in->self, id);
    if (!d || d->inherited >= in->floor)
        return;
    d->inherited = in->floor;
    s_rerank(in->self, d);
    if (d->state == FZ_STATE_WAITING)
        s_walk_push(in->todo, d->id, 0); /* terminates: floors only rise */
}

/* A waiting task lends its priority to what it waits for, transitively, so a low-priority
   dependency of an urgent task does not wait behind the queue. */
static void s_inherit(fz_broker_t *self, fz_task_t *t)
{
    walk_t todo = {0};
    s_walk_push(&todo, t->id, 0);
    uint64_t id;
    int unused;
    /* Bounded, so one submit cannot stall the loop on a huge graph: past this many tasks the
       priority is not lent further (aging still moves those tasks). */
    for (int visits = 0; visits < FZ_INHERIT_MAX && s_walk_pop(&todo, &id, &unused); visits++) {
        fz_task_t *x = s_task(self, id);
        if (!x)
            continue;
        inherit_t in = {self, x->priority > x->inherited ? x->priority : x->inherited, &todo};
        fz_store_deps_of(self->store, id, s_inherit_dep, &in);
    }
    free(todo.v);
}

/* Why a task's effective priority is what it is, for `fz-ctl list`. */
static void s_priority_why(const fz_broker_t *self, const fz_task_t *t, double now, char *out,
                           size_t size)
{
    int n = snprintf(out, size, "base %lld", (long long)t->priority);
    if (t->inherited > t->priority && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, ", inherited %lld from a dependent",
                      (long long)t->inherited);
    double boost = s_deadline_boost(self, t, now);
    if (boost > 0 && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, ", deadline +%.1f", boost);
    double age =
        t->state == FZ_STATE_QUEUED || t->state == FZ_STATE_HELD ? s_aging(self, t, now) : 0;
    if (age > 0 && n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, ", aging +%.1f", age);
}

/* Adds the live fields (effective priority and why) to a task object of a reply. */
static void s_decorate(void *arg, uint64_t id, fz_enc_t *e)
{
    fz_broker_t *self = arg;
    fz_task_t *t = s_task(self, id);
    if (!t)
        return;
    double now = fz_wall();
    char why[200];
    s_priority_why(self, t, now, why, sizeof why);
    fz_enc_float(e, "effective_priority", s_effective(self, t, now));
    fz_enc_str(e, "priority_why", why);
    if (t->state == FZ_STATE_WAITING)
        fz_enc_uint(e, "deps_pending", t->deps_pending);
    char detail[256];
    if (t->state == FZ_STATE_HELD) {
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
    }
}

static void s_depfail_why(uint64_t dep, fz_state_t state, char *why, size_t wl);

static void s_set_state(fz_broker_t *self, fz_task_t *t, fz_state_t state, const char *reason)
{
    t->state = state;
    fz_store_task_state(self->store, t->id, state, reason);
}

static void s_on_held(void *arg, fz_task_t *t)
{
    fz_broker_t *self = arg;
    fz_store_task_state(self->store, t->id, FZ_STATE_HELD, t->hold_reason);
    fz_enc_t *e = s_event("task.held", t);
    fz_enc_str(e, "reason", t->hold_reason);
    s_emit(self, "task.held", &e);
}

static void s_on_released(void *arg, fz_task_t *t)
{
    fz_broker_t *self = arg;
    fz_store_task_state(self->store, t->id, FZ_STATE_QUEUED, "");
    s_emit_task(self, "task.queued", t);
}

typedef struct {
    uint32_t pending;
    uint64_t failed;
    fz_state_t failed_state;
} waitcount_t;

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
static waitcount_t s_count_deps(fz_broker_t *self, uint64_t id)
{
    waitcount_t w = {0};
    fz_store_deps_of(self->store, id, s_count_dep, &w);
    return w;
}

/* Ends a waiting task as dep-failed; its own dependents are walked by the caller. */
static void s_depfail(fz_broker_t *self, fz_task_t *d, const waitcount_t *w)
{
    char why[160];
    s_depfail_why(w->failed, w->failed_state, why, sizeof why);
    d->state = FZ_STATE_DEP_FAILED;
    fz_store_task_depfail(self->store, d->id, why);
    fz_enc_t *ev = s_event("task.dep-failed", d);
    fz_enc_str(ev, "summary", why);
    s_emit(self, "task.dep-failed", &ev);
}

/* Moves a waiting task on: dep-failed (pushed on `ended` for its own dependents), ready, or
   still waiting with a fresh count. */
static void s_recheck_waiting(fz_broker_t *self, fz_task_t *d, walk_t *ended)
{
    waitcount_t w = s_count_deps(self, d->id);
    if (w.failed) {
        s_depfail(self, d, &w);
        s_walk_push(ended, d->id, FZ_STATE_DEP_FAILED);
        s_task_drop(self, d);
        return;
    }
    d->deps_pending = w.pending;
    if (w.pending == 0) {
        s_ready(self, d);
        fz_store_task_state(self->store, d->id, FZ_STATE_QUEUED, "");
        s_emit_task(self, "task.queued", d);
    }
}

typedef struct {
    fz_broker_t *self;
    walk_t *ended;
} ended_t;

static void s_on_dep_ended(void *arg, uint64_t id, int kind, int state)
{
    ended_t *e = arg;
    fz_task_t *d = s_task(e->self, id);
    if (d && d->state == FZ_STATE_WAITING)
        s_recheck_waiting(e->self, d, e->ended);
}

/* A task reached a final state (already stored): it leaves memory and its dependents move
   on, transitively (a dep-failed dependent fails its own), without recursion. */
static void s_task_final(fz_broker_t *self, fz_task_t *t)
{
    walk_t ended = {0};
    s_walk_push(&ended, t->id, (int)t->state);
    s_task_drop(self, t);
    uint64_t id;
    int state;
    ended_t e = {self, &ended};
    while (s_walk_pop(&ended, &id, &state))
        fz_store_dependents(self->store, id, s_on_dep_ended, &e);
    free(ended.v);
}

/* Spend or cap changed: held tasks are looked at once, at the end of the turn. */
static void s_release_budget(fz_broker_t *self)
{
    self->budget_moved = true;
}

static void s_release_now(fz_broker_t *self)
{
    if (!self->budget_moved)
        return;
    self->budget_moved = false;
    fz_sched_release_budget(self->sched, &self->budget, self->cfg.default_task_cost, s_on_released,
                            self);
}

/* Detaches a running task from its worker and the running counts. */
static void s_unrun(fz_broker_t *self, fz_task_t *t)
{
    if (t->worker) {
        t->worker->task = NULL;
        t->worker->idle_since_ms = fz_clock_ms();
    }
    t->worker = NULL;
    t->orphan_deadline_ms = 0;
    s_timed_remove(self, t); /* s_retry_later puts it back when it waits for a retry */
    fz_sched_ended(self->sched, t);
}

/* Schedules attempt n+1 after a backoff, on the next model of the fallback chain. */
static void s_retry_later(fz_broker_t *self, fz_task_t *t, uint32_t delay_ms)
{
    char model[65];
    if (fz_store_task_model(self->store, t->id, t->attempt - t->attempt_base + 1, model) == 0)
        snprintf(t->model, sizeof t->model, "%s", model);
    t->not_before_ms = fz_clock_ms() + delay_ms;
    s_timed_add(self, t);
    fz_enc_t *e = s_event("task.retrying", t);
    fz_enc_uint(e, "delay_ms", delay_ms);
    fz_enc_str(e, "next_model", t->model);
    s_emit(self, "task.retrying", &e);
}

static uint32_t s_backoff_ms(fz_broker_t *self, uint32_t failures)
{
    double d = self->cfg.backoff_min_ms * pow(2.0, failures > 30 ? 30 : (double)failures - 1);
    if (d > self->cfg.backoff_max_ms)
        d = self->cfg.backoff_max_ms;
    /* Full jitter in the upper half: retries of many tasks spread out, none comes too soon. */
    return (uint32_t)(d * (0.5 + 0.5 * s_random(self)));
}

/* A running attempt ended without a result (worker died, orphan expired): requeue it. */
static void s_attempt_lost(fz_broker_t *self, fz_task_t *t, const char *why)
{
    fz_result_t r = {.outcome = "lost", .summary = why};
    uint32_t made = t->attempt - t->attempt_base;
    bool give_up = !t->cancel_requested && made > t->retries + FZ_LOST_EXTRA;
    fz_state_t next = t->cancel_requested ? FZ_STATE_CANCELLED
                      : give_up           ? FZ_STATE_FAILED
                                          : FZ_STATE_QUEUED;
    fz_store_attempt_finish(self->store, t->id, t->attempt, &r, next);
    fz_budget_release(&self->budget, t->reserved);
    t->reserved = 0;
    s_release_budget(self);
    s_unrun(self, t);
    s_timed_remove(self, t);
    fz_enc_t *e;
    if (next == FZ_STATE_QUEUED) {
        s_ready(self, t);
        e = s_event("task.requeued", t);
        fz_enc_str(e, "reason", why);
        s_emit(self, "task.requeued", &e);
        return;
    }
    t->state = next;
    e = s_event(next == FZ_STATE_CANCELLED ? "task.cancelled" : "task.failed", t);
    fz_enc_str(e, "outcome", "lost");
    s_emit(self, next == FZ_STATE_CANCELLED ? "task.cancelled" : "task.failed", &e);
    s_task_final(self, t);
}

static void s_send_cancel(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt,
                          const char *reason)
{
    fz_enc_t *e = fz_enc_new("cancel", 0);
    fz_enc_uint(e, "task", task);
    fz_enc_uint(e, "attempt", attempt);
    fz_enc_str(e, "reason", reason);
    s_out_add(self, w->routing_id, e);
}

/* Starts attempt n+1 of t on w: reservation, records, dispatch message. */
static void s_start(fz_broker_t *self, fz_task_t *t, fz_worker_t *w)
{
    t->attempt++;
    t->reserved = fz_sched_reservation(t, self->cfg.default_task_cost);
    fz_budget_reserve(&self->budget, t->reserved);
    t->state = FZ_STATE_RUNNING;
    t->worker = w;
    w->task = t;
    fz_sched_started(self->sched, t);
    /* A task for any model runs on the worker's first allowed model: the whitelist holds
       for it too, and the attempt records the model it used. */
    const char *model = *t->model ? t->model : w->nmodels ? w->models[0] : "";
    fz_store_attempt_start(self->store, t->id, t->attempt, w->name, model, t->reserved);

    fz_enc_t *d = fz_enc_new("dispatch", 0);
    fz_enc_uint(d, "task", t->id);
    fz_enc_uint(d, "attempt", t->attempt);
    fz_store_encode_dispatch(self->store, t->id, d);
    fz_enc_str(d, "model", model);
    fz_enc_uint(d, "timeout", t->timeout_s);
    /* The cap the agent is held to is what was reserved: a task without --max-cost is held to
       the default reservation, so the budget's arithmetic holds for it too. */
    fz_enc_float(d, "max_cost", t->reserved);
    fz_enc_uint(d, "kill_grace", self->cfg.kill_grace);
    out_t *o = s_out_add(self, w->routing_id, d);
    if (o)
        o->dispatch = t->id;

    fz_enc_t *e = s_event("task.dispatched", t);
    fz_enc_str(e, "worker", w->name);
    fz_enc_float(e, "reserved", t->reserved);
    s_emit(self, "task.dispatched", &e);
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

static void s_dispatch(fz_broker_t *self)
{
    if (self->paused || fz_sched_ready(self->sched) == 0)
        return;
    size_t n = zhashx_size(self->workers), k = 0;
    fz_worker_t **idle = malloc((n ? n : 1) * sizeof *idle);
    if (!idle)
        return;
    int64_t now = fz_clock_ms();
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
        if (!w->task && !w->draining && now >= w->rest_until_ms)
            idle[k++] = w;
    qsort(idle, k, sizeof *idle, s_cmp_workers);
    for (size_t i = 0; i < k; i++) {
        fz_task_t *t = fz_sched_pick(self->sched, idle[i], &self->budget,
                                     self->cfg.default_task_cost, s_on_held, self);
        if (t)
            s_start(self, t, idle[i]);
    }
    free(idle);
}

/* ---------------------------------------------------------------- client requests */

typedef void(handler_fn)(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);

/* The state of any task, live or not; -1 if there is no such task. */
static int s_state_of(fz_broker_t *self, uint64_t id)
{
    fz_task_t *t = s_task(self, id);
    fz_state_t state;
    if (t)
        return (int)t->state;
    return fz_store_task_exists(self->store, id, &state) ? (int)state : -1;
}

/* The dependency ids of a submit map: explicit ids, then batch positions (before `index`)
   resolved through batch_ids. Writes at most 512; returns how many. */
static size_t s_dep_ids(const msgpack_object *m, const char *ids_key, const char *index_key,
                        const uint64_t *batch_ids, size_t index, uint64_t *out)
{
    size_t n = 0;
    const msgpack_object *a = fz_obj_get(m, ids_key);
    for (uint32_t i = 0; a && i < a->via.array.size && n < 512; i++)
        out[n++] = a->via.array.ptr[i].via.u64;
    a = fz_obj_get(m, index_key);
    for (uint32_t i = 0; a && batch_ids && i < a->via.array.size && n < 512; i++)
        if (a->via.array.ptr[i].via.u64 < index)
            out[n++] = batch_ids[a->via.array.ptr[i].via.u64];
    return n;
}

/* Checks a submit map against policy before anything is stored: FZ_OK or an error with a
   message for the submitter. */
static fz_err_t s_submit_check(fz_broker_t *self, const msgpack_object *m, size_t index, char *why,
                               size_t wl)
{
    char model[65];
    fz_obj_str(m, "model", model, sizeof model);
    if (!s_model_allowed(self, model)) {
        snprintf(why, wl, "model '%s' is not allowed (allowed: %s)", model, self->cfg.models);
        return FZ_EREFUSED;
    }
    const msgpack_object *fb = fz_obj_get(m, "fallback");
    for (uint32_t i = 0; fb && i < fb->via.array.size; i++) {
        snprintf(model, sizeof model, "%.*s", (int)fb->via.array.ptr[i].via.str.size,
                 fb->via.array.ptr[i].via.str.ptr);
        if (!s_model_allowed(self, model)) {
            snprintf(why, wl, "fallback model '%s' is not allowed (allowed: %s)", model,
                     self->cfg.models);
            return FZ_EREFUSED;
        }
    }
    const char *keys[] = {"after", "after_any"};
    for (int k = 0; k < 2; k++) {
        const msgpack_object *a = fz_obj_get(m, keys[k]);
        for (uint32_t i = 0; a && i < a->via.array.size; i++)
            if (s_state_of(self, a->via.array.ptr[i].via.u64) < 0) {
                snprintf(why, wl, "--%s names task %llu, which does not exist",
                         k ? "after-any" : "after",
                         (unsigned long long)a->via.array.ptr[i].via.u64);
                return FZ_EINVALID;
            }
    }
    const char *ikeys[] = {"after_index", "after_any_index"};
    for (int k = 0; k < 2; k++) {
        const msgpack_object *a = fz_obj_get(m, ikeys[k]);
        for (uint32_t i = 0; a && i < a->via.array.size; i++)
            if (a->via.array.ptr[i].via.u64 >= index) {
                snprintf(why, wl,
                         "task %zu of the batch depends on task %llu, which does not "
                         "come before it (a cycle or a forward reference)",
                         index, (unsigned long long)a->via.array.ptr[i].via.u64);
                return FZ_EINVALID;
            }
    }
    uint64_t parent = fz_obj_uint(m, "parent", 0);
    if (parent) {
        uint32_t depth, children;
        int64_t prio;
        if (s_state_of(self, parent) < 0) {
            snprintf(why, wl, "parent task %llu does not exist", (unsigned long long)parent);
            return FZ_EINVALID;
        }
        fz_store_tree_info(self->store, parent, &depth, &children, &prio);
        if (depth + 1 > self->cfg.max_depth) {
            snprintf(why, wl, "task %llu is at depth %u: subtasks would pass --max-depth %u",
                     (unsigned long long)parent, depth, self->cfg.max_depth);
            return FZ_EREFUSED;
        }
        if (children >= self->cfg.max_children) {
            snprintf(why, wl, "task %llu already has %u subtasks (--max-children %u)",
                     (unsigned long long)parent, children, self->cfg.max_children);
            return FZ_EREFUSED;
        }
    }
    return FZ_OK;
}

/* Where the dependencies of a new task leave it: pending count, or a failed one. */
typedef struct {
    uint32_t pending;
    uint64_t failed; /* an --after dependency that ended without success */
    fz_state_t failed_state;
} deps_t;

static void s_deps_state(fz_broker_t *self, const uint64_t *ids, size_t n, int kind, deps_t *d)
{
    for (size_t i = 0; i < n; i++) {
        int st = s_state_of(self, ids[i]);
        if (st < 0 || !fz_state_final((fz_state_t)st))
            d->pending++;
        else if (kind == 0 && st != FZ_STATE_SUCCEEDED && !d->failed) {
            d->failed = ids[i];
            d->failed_state = (fz_state_t)st;
        }
    }
}

static void s_depfail_why(uint64_t dep, fz_state_t state, char *why, size_t wl)
{
    snprintf(why, wl, "dependency %llu %s", (unsigned long long)dep,
             state == FZ_STATE_CANCELLED    ? "was cancelled"
             : state == FZ_STATE_DEP_FAILED ? "could not run (dep-failed)"
                                            : "failed");
}

static void s_ready(fz_broker_t *self, fz_task_t *t);
static void s_inherit(fz_broker_t *self, fz_task_t *t);

/* Stores one checked submit map and makes its task live. Returns its id, 0 on a store
   failure. */
static uint64_t s_submit_one(fz_broker_t *self, const msgpack_object *m, const uint64_t *batch,
                             size_t index, fz_state_t *state_p)
{
    char model[65], name[129], why[160] = "";
    fz_store_newtask_t nt = {0};
    nt.prompt = fz_obj_strn(m, "prompt", &nt.prompt_len);
    nt.priority = fz_obj_int(m, "priority", 0);
    nt.model = fz_obj_str(m, "model", model, sizeof model);
    nt.name = fz_obj_str(m, "name", name, sizeof name);
    nt.timeout = (uint32_t)fz_obj_uint(m, "timeout", 0);
    if (!nt.timeout)
        nt.timeout = self->cfg.default_timeout;
    nt.max_cost = fz_obj_float(m, "max_cost", 0);
    nt.retries = (uint32_t)fz_obj_uint(m, "retries", self->cfg.default_retries);
    nt.parent = fz_obj_uint(m, "parent", 0);
    nt.deadline = fz_obj_float(m, "deadline", 0);
    nt.labels = fz_obj_get(m, "labels");
    nt.fallback = fz_obj_get(m, "fallback");
    if (nt.parent) {
        uint32_t depth, children;
        int64_t prio;
        fz_store_tree_info(self->store, nt.parent, &depth, &children, &prio);
        if (prio > nt.priority)
            nt.priority = prio; /* a subtask is at least as urgent as its parent */
    }
    uint64_t after[512], any[512];
    size_t nafter = s_dep_ids(m, "after", "after_index", batch, index, after);
    size_t nany = s_dep_ids(m, "after_any", "after_any_index", batch, index, any);
    deps_t d = {0};
    s_deps_state(self, after, nafter, 0, &d);
    s_deps_state(self, any, nany, 1, &d);
    if (d.failed)
        s_depfail_why(d.failed, d.failed_state, why, sizeof why);
    nt.state = d.failed ? FZ_STATE_DEP_FAILED : d.pending ? FZ_STATE_WAITING : FZ_STATE_QUEUED;
    nt.summary = why;
    /* The stored after/after_any lists are the resolved ids. */
    msgpack_object_array arr_a = {0}, arr_any = {0};
    msgpack_object objs[1024], oa, oany;
    for (size_t i = 0; i < nafter; i++)
        objs[i] = (msgpack_object){.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = after[i]};
    for (size_t i = 0; i < nany; i++)
        objs[512 + i] =
            (msgpack_object){.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = any[i]};
    arr_a = (msgpack_object_array){(uint32_t)nafter, objs};
    arr_any = (msgpack_object_array){(uint32_t)nany, objs + 512};
    oa = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = arr_a};
    oany = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = arr_any};
    nt.after = &oa;
    nt.after_any = &oany;

    uint64_t id = fz_store_task_add(self->store, &nt);
    for (size_t i = 0; id && i < nafter; i++)
        if (fz_store_dep_add(self->store, id, after[i], 0))
            id = 0;
    for (size_t i = 0; id && i < nany; i++)
        if (fz_store_dep_add(self->store, id, any[i], 1))
            id = 0;
    fz_task_t *t = id && !d.failed ? calloc(1, sizeof *t) : NULL;
    *state_p = nt.state;
    if (!id || (!t && !d.failed))
        return 0;

    fz_task_t tmp = {0};
    fz_task_t *ev = t ? t : &tmp; /* a dep-failed task never lives in memory */
    ev->id = id;
    ev->state = nt.state;
    ev->priority = nt.priority;
    snprintf(ev->model, sizeof ev->model, "%s", nt.model);
    ev->retries = nt.retries;
    ev->timeout_s = nt.timeout;
    ev->max_cost = nt.max_cost;
    ev->parent = nt.parent;
    ev->deadline = nt.deadline;
    ev->deps_pending = d.pending;
    ev->inherited = INT64_MIN;
    fz_enc_t *e = s_event("task.submitted", ev);
    fz_enc_str(e, "name", nt.name);
    fz_enc_strn(e, "prompt", nt.prompt, nt.prompt_len < 200 ? nt.prompt_len : 200);
    s_emit(self, "task.submitted", &e);
    if (d.failed) {
        e = s_event("task.dep-failed", ev);
        fz_enc_str(e, "summary", why);
        s_emit(self, "task.dep-failed", &e);
        return id;
    }
    char key[24];
    s_idkey(id, key);
    zhashx_insert(self->tasks, key, t);
    if (t->state == FZ_STATE_QUEUED)
        s_ready(self, t);
    else
        s_inherit(self, t);
    return id;
}

static void s_on_submit(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    char why[512];
    uint64_t rid = fz_msg_rid(msg);
    fz_err_t err = s_submit_check(self, fz_msg_root(msg), 0, why, sizeof why);
    if (err) {
        s_reply_error(self, from, rid, err, "%s", why);
        return;
    }
    fz_state_t state;
    uint64_t id = s_submit_one(self, fz_msg_root(msg), NULL, 0, &state);
    if (!id) {
        s_reply_error(self, from, rid, FZ_EUNAVAILABLE, "the broker could not store the task: %s",
                      fz_store_error(self->store));
        return;
    }
    fz_enc_t *r = fz_enc_new("submitted", rid);
    fz_enc_uint(r, "task", id);
    fz_enc_str(r, "state", fz_state_name(state));
    s_reply(self, from, rid, r);
}

/* A graph of tasks in one request: all are checked before any is stored, and they are
   stored in the turn's one transaction, so the batch lands whole or not at all. */
static void s_on_submit_batch(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    char why[512];
    uint64_t rid = fz_msg_rid(msg);
    const msgpack_object *tasks = fz_msg_obj(msg, "tasks");
    size_t n = tasks->via.array.size;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *m = &tasks->via.array.ptr[i];
        fz_err_t err = fz_msg_check_object(m, "submit", why, sizeof why);
        if (!err)
            err = s_submit_check(self, m, i, why, sizeof why);
        if (err) {
            s_reply_error(self, from, rid, err, "batch task %zu: %s (nothing was stored)", i, why);
            return;
        }
    }
    uint64_t ids[1000];
    for (size_t i = 0; i < n; i++) {
        fz_state_t state;
        ids[i] = s_submit_one(self, &tasks->via.array.ptr[i], ids, i, &state);
        if (!ids[i]) {
            /* Abandon the whole turn: the batch must not land in part. */
            s_reply_error(self, from, rid, FZ_EUNAVAILABLE, "the broker could not store it");
            fz_store_fail_turn(self->store);
            return;
        }
    }
    fz_enc_t *r = fz_enc_new("submitted-batch", rid);
    fz_enc_array(r, "tasks", n);
    for (size_t i = 0; i < n; i++)
        fz_enc_uint(r, NULL, ids[i]);
    s_reply(self, from, rid, r);
}

static void s_on_get(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0);
    fz_enc_t *r = fz_enc_new("task", fz_msg_rid(msg));
    fz_err_t err = fz_store_encode_task(self->store, id, r, "task", s_decorate, self);
    if (!err)
        err = fz_store_encode_attempts(self->store, id, r, "attempts");
    if (!err)
        fz_store_encode_children(self->store, id, r, "children");
    if (err) {
        fz_enc_destroy(&r);
        s_reply_error(self, from, fz_msg_rid(msg), err, "no task %llu", (unsigned long long)id);
        return;
    }
    s_reply(self, from, fz_msg_rid(msg), r);
}

static void s_on_list(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    const char *state = fz_msg_str(msg, "state", NULL, NULL);
    if (state && fz_state_from_name(state) < 0) {
        s_reply_error(self, from, fz_msg_rid(msg), FZ_EINVALID,
                      "unknown state '%s' (queued, waiting, held, running, retrying, "
                      "succeeded, failed, cancelled, dep-failed)",
                      state);
        return;
    }
    fz_enc_t *r = fz_enc_new("tasks", fz_msg_rid(msg));
    fz_err_t err = fz_store_encode_list(self->store, state, fz_msg_uint(msg, "limit", 1000),
                                        fz_msg_bool(msg, "tail", false), r, s_decorate, self);
    if (err) {
        fz_enc_destroy(&r);
        s_reply_error(self, from, fz_msg_rid(msg), err, "cannot list tasks");
        return;
    }
    s_reply(self, from, fz_msg_rid(msg), r);
}

static void s_on_status(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_new("status", fz_msg_rid(msg));
    fz_store_encode_counts(self->store, r);
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
    s_reply(self, from, fz_msg_rid(msg), r);
}

static void s_on_workers(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_new("workers", fz_msg_rid(msg));
    fz_enc_array(r, "workers", zhashx_size(self->workers));
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
        fz_enc_t *o = fz_enc_new_map();
        fz_enc_str(o, "name", w->name);
        fz_enc_array(o, "models", w->nmodels);
        for (size_t i = 0; i < w->nmodels; i++)
            fz_enc_str(o, NULL, w->models[i]);
        fz_enc_bool(o, "any_model", w->any_model);
        fz_enc_str(o, "state", w->draining ? "drain" : w->task ? "busy" : "idle");
        fz_enc_uint(o, "task", w->task ? w->task->id : 0);
        fz_enc_float(o, "since", w->since);
        fz_enc_float(o, "last_seen", fz_wall() - (fz_clock_ms() - w->last_seen_ms) / 1000.0);
        fz_enc_sub(r, NULL, &o);
    }
    s_reply(self, from, fz_msg_rid(msg), r);
}

static void s_reply_ok(fz_broker_t *self, zframe_t *from, uint64_t rid, uint64_t task,
                       const char *state)
{
    fz_enc_t *r = fz_enc_new("ok", rid);
    if (task)
        fz_enc_uint(r, "task", task);
    if (state)
        fz_enc_str(r, "state", state);
    s_reply(self, from, rid, r);
}

/* Ends a task that is not running, as cancelled. */
static void s_cancel_idle(fz_broker_t *self, fz_task_t *t)
{
    fz_sched_remove(self->sched, t);
    s_set_state(self, t, FZ_STATE_CANCELLED, "");
    s_emit_task(self, "task.cancelled", t);
    s_task_final(self, t);
}

/* Cancels one live task: at once if it is not running, else through its worker. */
static void s_cancel_live(fz_broker_t *self, fz_task_t *t)
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
        s_send_cancel(self, t->worker, t->id, t->attempt, "cancelled");
}

typedef struct {
    fz_broker_t *self;
    uint64_t count;
} subtree_t;

static void s_cancel_sub(void *arg, uint64_t id, int kind, int state)
{
    subtree_t *st = arg;
    fz_task_t *t = s_task(st->self, id);
    if (t) {
        s_cancel_live(st->self, t);
        st->count++;
    }
}

static void s_on_cancel(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0), rid = fz_msg_rid(msg);
    int state = s_state_of(self, id);
    if (state < 0) {
        s_reply_error(self, from, rid, FZ_ENOTFOUND, "no task %llu", (unsigned long long)id);
        return;
    }
    /* Cancelling a task cancels its subtree: the subtasks its agent created. */
    subtree_t sub = {self, 0};
    fz_store_subtree(self->store, id, s_cancel_sub, &sub);
    fz_task_t *t = s_task(self, id);
    if (!t && !sub.count) {
        s_reply_error(self, from, rid, FZ_ECONFLICT, "task %llu already %s", (unsigned long long)id,
                      fz_state_name((fz_state_t)state));
        return;
    }
    if (t)
        s_cancel_live(self, t);
    t = s_task(self, id);
    fz_enc_t *r = fz_enc_new("ok", rid);
    fz_enc_uint(r, "task", id);
    fz_enc_str(r, "state", fz_state_name(t ? t->state : (fz_state_t)s_state_of(self, id)));
    fz_enc_uint(r, "count", sub.count);
    s_reply(self, from, rid, r);
}

static void s_set_paused(fz_broker_t *self, bool paused)
{
    self->paused = paused;
    fz_store_meta_set(self->store, "paused", paused);
    fz_enc_t *e = s_event(paused ? "broker.paused" : "broker.resumed", NULL);
    s_emit(self, paused ? "broker.paused" : "broker.resumed", &e);
}

static void s_on_pause(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (!self->paused)
        s_set_paused(self, true);
    s_reply_ok(self, from, fz_msg_rid(msg), 0, NULL);
}

static void s_on_resume(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (self->paused)
        s_set_paused(self, false);
    s_reply_ok(self, from, fz_msg_rid(msg), 0, NULL);
}

static void s_on_stop(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (!self->paused)
        s_set_paused(self, true);
    uint64_t n = 0;
    for (fz_task_t *t = zhashx_first(self->tasks); t; t = zhashx_next(self->tasks))
        if (t->state == FZ_STATE_RUNNING) {
            t->cancel_requested = true;
            fz_store_task_flags(self->store, t->id, t->attempt_base, true);
            if (t->worker)
                s_send_cancel(self, t->worker, t->id, t->attempt, "stop");
            n++;
        }
    fz_enc_t *r = fz_enc_new("ok", fz_msg_rid(msg));
    fz_enc_uint(r, "count", n);
    s_reply(self, from, fz_msg_rid(msg), r);
}

/* Brings an ended task back to life with a fresh retry allowance, in `state` (queued or
   waiting). NULL if it cannot be loaded. */
static fz_task_t *s_revive(fz_broker_t *self, uint64_t id, fz_state_t state)
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
    s_idkey(id, key);
    zhashx_insert(self->tasks, key, t);
    s_set_state(self, t, state, "");
    if (state == FZ_STATE_QUEUED) {
        s_ready(self, t);
        s_emit_task(self, "task.queued", t);
    }
    return t;
}

typedef struct {
    fz_broker_t *self;
    walk_t *todo;
} revive_t;

static void s_revive_dep(void *arg, uint64_t id, int kind, int state)
{
    revive_t *r = arg;
    if (s_state_of(r->self, id) == FZ_STATE_DEP_FAILED && !s_task(r->self, id) &&
        s_revive(r->self, id, FZ_STATE_WAITING))
        s_walk_push(r->todo, id, 0);
}

/* A retried task takes back the dependents that failed because of it, transitively: they
   wait again (the rest of a pipeline re-runs from the retried step). */
static void s_revive_dependents(fz_broker_t *self, uint64_t id)
{
    walk_t todo = {0}, revived = {0};
    s_walk_push(&todo, id, 0);
    revive_t r = {self, &todo};
    uint64_t x;
    int unused;
    while (s_walk_pop(&todo, &x, &unused)) {
        if (x != id)
            s_walk_push(&revived, x, 0);
        fz_store_dependents(self->store, x, s_revive_dep, &r);
    }
    /* Each waits for what it still needs (the retried task, at least). */
    walk_t ended = {0};
    ended_t e = {self, &ended};
    while (s_walk_pop(&revived, &x, &unused)) {
        fz_task_t *d = s_task(self, x);
        if (d && d->state == FZ_STATE_WAITING)
            s_recheck_waiting(self, d, &ended);
        while (s_walk_pop(&ended, &x, &unused))
            fz_store_dependents(self->store, x, s_on_dep_ended, &e);
    }
    free(todo.v);
    free(revived.v);
    free(ended.v);
}

static void s_on_retry(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0), rid = fz_msg_rid(msg);
    int state = s_state_of(self, id);
    if (state < 0 || s_task(self, id)) {
        s_reply_error(self, from, rid, state < 0 ? FZ_ENOTFOUND : FZ_ECONFLICT,
                      state < 0 ? "no task %llu" : "task %llu has not ended",
                      (unsigned long long)id);
        return;
    }
    if (state == FZ_STATE_SUCCEEDED) {
        s_reply_error(self, from, rid, FZ_ECONFLICT, "task %llu already succeeded",
                      (unsigned long long)id);
        return;
    }
    fz_state_t next = FZ_STATE_QUEUED;
    if (state == FZ_STATE_DEP_FAILED) {
        /* It runs only if what it waits for can still succeed. */
        waitcount_t w = s_count_deps(self, id);
        if (w.failed) {
            s_reply_error(self, from, rid, FZ_ECONFLICT,
                          "task %llu waits for task %llu, which %s: retry that one (its "
                          "dependents come back with it)",
                          (unsigned long long)id, (unsigned long long)w.failed,
                          fz_state_name(w.failed_state));
            return;
        }
        next = w.pending ? FZ_STATE_WAITING : FZ_STATE_QUEUED;
    }
    fz_task_t *t = s_revive(self, id, next);
    if (!t) {
        s_reply_error(self, from, rid, FZ_EUNAVAILABLE, "cannot load task %llu",
                      (unsigned long long)id);
        return;
    }
    if (next == FZ_STATE_WAITING) {
        t->deps_pending = s_count_deps(self, id).pending;
        s_inherit(self, t);
    }
    s_revive_dependents(self, id);
    s_reply_ok(self, from, rid, id, fz_state_name(next));
}

static void s_set_priority(fz_broker_t *self, zframe_t *from, uint64_t rid, uint64_t id,
                           int64_t prio)
{
    if (s_state_of(self, id) < 0) {
        s_reply_error(self, from, rid, FZ_ENOTFOUND, "no task %llu", (unsigned long long)id);
        return;
    }
    fz_store_task_priority(self->store, id, prio);
    fz_task_t *t = s_task(self, id);
    if (t) {
        t->priority = prio;
        s_rerank(self, t);
        if (t->state == FZ_STATE_WAITING)
            s_inherit(self, t);
        s_emit_task(self, "task.priority", t);
    }
    fz_enc_t *r = fz_enc_new("ok", rid);
    fz_enc_uint(r, "task", id);
    if (t)
        fz_enc_str(r, "state", fz_state_name(t->state));
    fz_enc_int(r, "priority", prio);
    s_reply(self, from, rid, r);
}

static void s_on_priority(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    s_set_priority(self, from, fz_msg_rid(msg), fz_msg_uint(msg, "task", 0),
                   fz_msg_int(msg, "priority", 0));
}

/* Escalate: above every live task's effective priority, so it goes next. */
static void s_on_escalate(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0);
    fz_task_t *t = s_task(self, id);
    if (!t) {
        int state = s_state_of(self, id);
        s_reply_error(self, from, fz_msg_rid(msg), state < 0 ? FZ_ENOTFOUND : FZ_ECONFLICT,
                      state < 0 ? "no task %llu" : "task %llu has ended", (unsigned long long)id);
        return;
    }
    double now = fz_wall(), top = (double)t->priority;
    for (fz_task_t *o = zhashx_first(self->tasks); o; o = zhashx_next(self->tasks))
        if (o != t && s_effective(self, o, now) > top)
            top = s_effective(self, o, now);
    int64_t prio = (int64_t)ceil(top) + 1;
    if (prio > 1000000)
        prio = 1000000;
    s_set_priority(self, from, fz_msg_rid(msg), id, prio > t->priority ? prio : t->priority);
}

static void s_on_budget(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (fz_msg_has(msg, "set")) {
        self->budget.cap = fz_msg_float(msg, "set", self->budget.cap);
        fz_store_meta_set(self->store, "budget", self->budget.cap);
        s_release_budget(self);
        fz_enc_t *e = s_event("broker.budget", NULL);
        fz_enc_float(e, "cap", self->budget.cap);
        s_emit(self, "broker.budget", &e);
    }
    char day[11];
    fz_budget_day_name(&self->budget, day);
    fz_enc_t *r = fz_enc_new("budget", fz_msg_rid(msg));
    fz_enc_float(r, "cap", self->budget.cap);
    fz_enc_float(r, "spent", self->budget.spent);
    fz_enc_float(r, "reserved", self->budget.reserved);
    fz_enc_float(r, "left", fz_budget_left(&self->budget));
    fz_enc_str(r, "day", day);
    s_reply(self, from, fz_msg_rid(msg), r);
}

static void s_on_cost(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
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
            s_reply_error(self, from, rid, FZ_EINVALID, "since must be YYYY-MM-DD, not '%s'",
                          since_s);
            return;
        }
        since = (double)timegm(&tm);
    }
    if (strcmp(by, "label") == 0 && !*label) {
        s_reply_error(self, from, rid, FZ_EINVALID, "cost by label needs the label key");
        return;
    }
    fz_enc_t *r = fz_enc_new("cost", rid);
    fz_err_t err = fz_store_encode_cost(self->store, by, label, since, r);
    if (err) {
        fz_enc_destroy(&r);
        s_reply_error(self, from, rid, err,
                      "cost by must be day, model, task, worker or label, not '%s'", by);
        return;
    }
    s_reply(self, from, rid, r);
}

/* Retention: ended tasks older than `before` go. Today's stay whatever is asked: the budget
   is counted from them. */
static void s_on_purge(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    double before = fz_msg_float(msg, "before", 0);
    if (before > self->budget.day_start)
        before = self->budget.day_start;
    int64_t n = fz_store_purge(self->store, before);
    if (n < 0) {
        s_reply_error(self, from, fz_msg_rid(msg), FZ_EUNAVAILABLE, "purge failed: %s",
                      fz_store_error(self->store));
        return;
    }
    fz_enc_t *r = fz_enc_new("ok", fz_msg_rid(msg));
    fz_enc_uint(r, "count", (uint64_t)n);
    s_reply(self, from, fz_msg_rid(msg), r);
    fz_info("purged %lld ended tasks", (long long)n);
}

/* Events a subscriber missed (it saw a gap in seq), from the recent history. */
static void s_on_events(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_new("events", fz_msg_rid(msg));
    fz_history_encode(self->history, fz_msg_uint(msg, "since", 0), r, "events", 3u << 20);
    fz_enc_uint(r, "first", fz_history_first(self->history));
    fz_enc_uint(r, "last", fz_history_last(self->history));
    s_reply(self, from, fz_msg_rid(msg), r);
}

static void s_on_ping(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_new("pong", fz_msg_rid(msg));
    fz_enc_uint(r, "version", FZ_PROTOCOL_VERSION);
    fz_enc_str(r, "broker", FZ_VERSION);
    s_reply(self, from, fz_msg_rid(msg), r);
}

/* ---------------------------------------------------------------- workers */

static void s_worker_gone(fz_broker_t *self, fz_worker_t *w, const char *reason)
{
    fz_info("worker %s left (%s)", w->name, reason);
    if (w->task)
        s_attempt_lost(self, w->task, reason);
    fz_enc_t *e = s_event("worker.left", NULL);
    fz_enc_str(e, "worker", w->name);
    fz_enc_str(e, "reason", reason);
    s_emit(self, "worker.left", &e);
    zhashx_delete(self->workers, w->key);
}

/* The worker says it runs (task, attempt): take it back if that is the attempt we expect,
   else tell it to stop. */
static void s_reattach(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt)
{
    /* A worker runs one agent: if it claims another task than the one we gave it, ours never
       started there (or was replaced) and is lost. */
    if (w->task && (w->task->id != task || w->task->attempt != attempt))
        s_attempt_lost(self, w->task, "the worker runs another task");
    fz_task_t *t = s_task(self, task);
    if (t && t->state == FZ_STATE_RUNNING && t->attempt == attempt && !t->worker) {
        t->worker = w;
        w->task = t;
        t->orphan_deadline_ms = 0;
        s_timed_remove(self, t);
        fz_info("worker %s re-attached task %llu attempt %u", w->name, (unsigned long long)task,
                attempt);
        if (t->cancel_requested)
            s_send_cancel(self, w, task, attempt, "cancelled");
        return;
    }
    fz_warn("worker %s runs task %llu attempt %u, which is no longer expected: cancelling it",
            w->name, (unsigned long long)task, attempt);
    s_send_cancel(self, w, task, attempt, "superseded");
}

static void s_worker_models(fz_broker_t *self, fz_worker_t *w, fz_msg_t *msg, fz_enc_t *welcome)
{
    const msgpack_object *models = fz_msg_obj(msg, "models");
    size_t n = models ? models->via.array.size : 0, refused = 0;
    const msgpack_object *bad[64];
    w->nmodels = 0;
    w->any_model = n == 0;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *m = &models->via.array.ptr[i];
        char name[65];
        snprintf(name, sizeof name, "%.*s", (int)m->via.str.size, m->via.str.ptr);
        if (!s_model_allowed(self, name)) {
            bad[refused++] = m;
            continue;
        }
        if (w->nmodels < FZ_MAX_WORKER_MODELS)
            snprintf(w->models[w->nmodels++], sizeof w->models[0], "%s", name);
    }
    if (refused) {
        fz_warn("worker %s announced %zu model(s) outside the whitelist (%s); it will not get "
                "their tasks",
                w->name, refused, self->cfg.models);
        fz_enc_array(welcome, "refused_models", refused);
        for (size_t i = 0; i < refused; i++)
            fz_enc_obj(welcome, NULL, bad[i]);
    }
}

/* A hello on a connection we know: the worker re-introduces itself (it missed our welcome,
   or we restarted in between). Refresh it in place. */
static void s_rehello(fz_broker_t *self, fz_worker_t *w, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_new("welcome", fz_msg_rid(msg));
    fz_enc_uint(r, "heartbeat_ms", self->cfg.heartbeat_ms);
    fz_enc_str(r, "name", w->name);
    s_worker_models(self, w, msg, r);
    s_reply(self, from, fz_msg_rid(msg), r);
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    if (task && !(w->task && w->task->id == task && w->task->attempt == attempt))
        s_reattach(self, w, task, attempt);
}

static void s_on_hello(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_worker_t *same = s_worker(self, from);
    if (same) {
        s_rehello(self, same, from, msg);
        return;
    }
    const char *name = fz_msg_str(msg, "name", "", NULL);
    /* A worker with this name on another connection is this worker's past self. Its task,
       if the hello claims it, moves over; otherwise it is lost. */
    fz_worker_t *old = NULL;
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
        if (strcmp(w->name, name) == 0)
            old = w;
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    /* The same name from another process (its nonce differs) while the first is alive: two
       workers would take each other's place forever. The newcomer waits its turn. */
    const char *nonce = fz_msg_str(msg, "nonce", "", NULL);
    if (old && *nonce && strcmp(old->nonce, nonce) != 0 &&
        fz_clock_ms() - old->last_seen_ms <= 3 * (int64_t)self->cfg.heartbeat_ms) {
        s_reply_error(self, from, fz_msg_rid(msg), FZ_ECONFLICT,
                      "worker name '%s' is taken by another live worker process: give this one "
                      "another --name (it is retried until the other one leaves)",
                      name);
        return;
    }
    if (old) {
        if (old->task && old->task->id == task && old->task->attempt == attempt) {
            old->task->worker = NULL; /* handed over below */
            old->task = NULL;
        }
        s_worker_gone(self, old, "reconnected");
    }
    fz_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->routing_id = zframe_dup(from);
    s_hexkey(from, w->key, sizeof w->key);
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->nonce, sizeof w->nonce, "%s", fz_msg_str(msg, "nonce", "", NULL));
    w->last_seen_ms = w->idle_since_ms = fz_clock_ms();
    w->since = fz_wall();
    zhashx_insert(self->workers, w->key, w);

    fz_enc_t *r = fz_enc_new("welcome", fz_msg_rid(msg));
    fz_enc_uint(r, "heartbeat_ms", self->cfg.heartbeat_ms);
    fz_enc_str(r, "name", w->name);
    s_worker_models(self, w, msg, r);
    s_reply(self, from, fz_msg_rid(msg), r);
    if (task)
        s_reattach(self, w, task, attempt);

    fz_enc_t *e = s_event("worker.joined", NULL);
    fz_enc_str(e, "worker", w->name);
    fz_enc_bool(e, "any_model", w->any_model);
    fz_enc_array(e, "models", w->nmodels);
    for (size_t i = 0; i < w->nmodels; i++)
        fz_enc_str(e, NULL, w->models[i]);
    s_emit(self, "worker.joined", &e);
    fz_info("worker %s joined (%zu models%s)", w->name, w->nmodels, w->any_model ? ", any" : "");
}

/* The task a worker message is about, if it is the worker's current attempt. */
static fz_task_t *s_current(fz_worker_t *w, fz_msg_t *msg)
{
    fz_task_t *t = w->task;
    if (t && t->id == fz_msg_uint(msg, "task", 0) && t->attempt == fz_msg_uint(msg, "attempt", 0))
        return t;
    return NULL;
}

static void s_on_heartbeat(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    if (fz_msg_bool(msg, "draining", false) && !w->draining) {
        w->draining = true; /* it finishes what it runs and takes nothing more */
        fz_info("worker %s is draining", w->name);
    }
    /* A worker that runs a task we hold as orphaned (after a reload) claims it here too, so
       re-attaching does not wait for a hello that a connected worker never sends. */
    uint64_t claimed = fz_msg_uint(msg, "task", 0);
    if (claimed && !w->task) {
        fz_task_t *o = s_task(self, claimed);
        if (o && o->state == FZ_STATE_RUNNING && !o->worker)
            s_reattach(self, w, claimed, (uint32_t)fz_msg_uint(msg, "attempt", 0));
    }
    fz_task_t *t = s_current(w, msg);
    if (!t || !fz_msg_has(msg, "elapsed_ms"))
        return;
    fz_enc_t *e = s_event("task.progress", t);
    fz_enc_str(e, "worker", w->name);
    fz_enc_uint(e, "elapsed_ms", fz_msg_uint(msg, "elapsed_ms", 0));
    fz_enc_float(e, "cost_usd", fz_msg_float(msg, "cost_usd", 0));
    fz_enc_uint(e, "tokens_in", fz_msg_uint(msg, "tokens_in", 0));
    fz_enc_uint(e, "tokens_out", fz_msg_uint(msg, "tokens_out", 0));
    if (fz_msg_has(msg, "progress"))
        fz_enc_uint(e, "progress", fz_msg_uint(msg, "progress", 0));
    fz_enc_str(e, "progress_text", fz_msg_str(msg, "progress_text", "", NULL));
    s_emit(self, "task.progress", &e);
}

static void s_on_started(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    fz_task_t *t = s_current(w, msg);
    if (!t)
        return;
    fz_enc_t *e = s_event("task.started", t);
    fz_enc_str(e, "worker", w->name);
    fz_enc_uint(e, "pid", fz_msg_uint(msg, "pid", 0));
    s_emit(self, "task.started", &e);
}

static void s_on_output(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    fz_task_t *t = s_current(w, msg);
    if (!t)
        return;
    size_t len;
    const void *data = fz_msg_bin(msg, "data", &len);
    fz_enc_t *e = s_event("task.output", t);
    fz_enc_str(e, "worker", w->name);
    fz_enc_bin(e, "data", data ? data : "", len);
    s_emit(self, "task.output", &e);
}

/* The state a finished attempt leads to. */
static fz_state_t s_next_state(fz_task_t *t, const char *outcome, int64_t exit_code)
{
    if (strcmp(outcome, "exited") == 0 && exit_code == 0)
        return FZ_STATE_SUCCEEDED;
    if (t->cancel_requested || strcmp(outcome, "cancelled") == 0)
        return FZ_STATE_CANCELLED;
    /* The worker could not or would not run it (busy, being stopped): not the task's fault. */
    if (strcmp(outcome, "rejected") == 0 || strcmp(outcome, "interrupted") == 0)
        return FZ_STATE_QUEUED;
    if (strcmp(outcome, "exited") == 0 && exit_code == FZ_EXIT_NO_RETRY)
        return FZ_STATE_FAILED;
    if (t->attempt - t->attempt_base <= t->retries)
        return FZ_STATE_RETRYING;
    return FZ_STATE_FAILED;
}

static void s_ack_result(fz_broker_t *self, zframe_t *from, uint64_t task, uint64_t attempt)
{
    fz_enc_t *a = fz_enc_new("result-ack", 0);
    fz_enc_uint(a, "task", task);
    fz_enc_uint(a, "attempt", attempt);
    s_out_add(self, from, a);
}

static void s_on_result(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    uint64_t id = fz_msg_uint(msg, "task", 0);
    uint32_t n = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    fz_task_t *t = s_task(self, id);
    if (!t || t->state != FZ_STATE_RUNNING || t->attempt != n) {
        /* Recorded already, or superseded (the attempt was declared lost): exactly one
           record per attempt, so only acknowledge. */
        fz_info("result of task %llu attempt %u is a duplicate or stale; acknowledged",
                (unsigned long long)id, n);
        if (w->task && w->task->id == id && w->task->attempt == n)
            w->task = NULL;
        s_ack_result(self, from, id, n);
        return;
    }
    fz_result_t r = {0};
    r.outcome = fz_msg_str(msg, "outcome", "exited", NULL);
    r.exit_code = fz_msg_int(msg, "exit_code", 0);
    r.signal = (uint32_t)fz_msg_uint(msg, "signal", 0);
    r.duration_ms = fz_msg_uint(msg, "duration_ms", 0);
    r.cost_usd = fz_msg_float(msg, "cost_usd", 0);
    r.tokens_in = fz_msg_uint(msg, "tokens_in", 0);
    r.tokens_out = fz_msg_uint(msg, "tokens_out", 0);
    r.model = fz_msg_str(msg, "model", "", NULL);
    r.summary = fz_msg_str(msg, "summary", "", NULL);
    r.output = fz_msg_bin(msg, "output", &r.output_len);
    r.log = fz_msg_str(msg, "log", "", NULL);
    fz_state_t next = s_next_state(t, r.outcome, r.exit_code);
    if (fz_store_attempt_finish(self->store, id, n, &r, next) < 0)
        return; /* not acknowledged: the worker sends it again */
    fz_budget_settle(&self->budget, t->reserved, r.cost_usd);
    t->reserved = 0;
    s_unrun(self, t);
    if (w->task == t)
        w->task = NULL;
    s_ack_result(self, from, id, n);

    const char *topic = next == FZ_STATE_SUCCEEDED   ? "task.succeeded"
                        : next == FZ_STATE_CANCELLED ? "task.cancelled"
                        : next == FZ_STATE_FAILED    ? "task.failed"
                                                     : "task.attempt-failed";
    t->state = next;
    fz_enc_t *e = s_event(topic, t);
    fz_enc_str(e, "worker", w->name);
    fz_enc_str(e, "outcome", r.outcome);
    fz_enc_int(e, "exit_code", r.exit_code);
    fz_enc_float(e, "cost_usd", r.cost_usd);
    fz_enc_uint(e, "duration_ms", r.duration_ms);
    fz_enc_str(e, "summary", r.summary);
    s_emit(self, topic, &e);

    if (next == FZ_STATE_RETRYING)
        s_retry_later(self, t, s_backoff_ms(self, t->attempt - t->attempt_base));
    else if (next == FZ_STATE_QUEUED) {
        /* Not the task's fault: the attempt stays on record but does not use a retry, and a
           worker that refused gets no dispatch for a while (it may be stopping or busy). */
        t->attempt_base++;
        fz_store_task_flags(self->store, t->id, t->attempt_base, false);
        if (strcmp(r.outcome, "rejected") == 0)
            w->rest_until_ms = fz_clock_ms() + 3 * (int64_t)self->cfg.heartbeat_ms;
        s_ready(self, t);
    } else
        s_task_final(self, t);
    s_release_budget(self);
}

static void s_on_bye(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    s_worker_gone(self, w, "bye");
}

/* ---------------------------------------------------------------- dispatch of messages */

typedef void(worker_fn)(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w);

static const struct {
    const char *type;
    handler_fn *client;
    worker_fn *worker;
} s_handlers[] = {
    {"submit", s_on_submit, NULL},
    {"get", s_on_get, NULL},
    {"list", s_on_list, NULL},
    {"status", s_on_status, NULL},
    {"workers", s_on_workers, NULL},
    {"cancel", s_on_cancel, NULL},
    {"pause", s_on_pause, NULL},
    {"resume", s_on_resume, NULL},
    {"stop", s_on_stop, NULL},
    {"retry", s_on_retry, NULL},
    {"priority", s_on_priority, NULL},
    {"budget", s_on_budget, NULL},
    {"cost", s_on_cost, NULL},
    {"ping", s_on_ping, NULL},
    {"submit-batch", s_on_submit_batch, NULL},
    {"escalate", s_on_escalate, NULL},
    {"events", s_on_events, NULL},
    {"purge", s_on_purge, NULL},
    {"hello", s_on_hello, NULL},
    {"heartbeat", NULL, s_on_heartbeat},
    {"started", NULL, s_on_started},
    {"output", NULL, s_on_output},
    {"result", NULL, s_on_result},
    {"bye", NULL, s_on_bye},
};

static void s_handle(fz_broker_t *self, zframe_t *from, const void *data, size_t len)
{
    fz_msg_t *msg = NULL;
    uint64_t rid = 0;
    char why[256];
    fz_err_t err = fz_msg_decode(data, len, &msg, &rid, why, sizeof why);
    fz_worker_t *w = s_worker(self, from);
    if (w)
        w->last_seen_ms = fz_clock_ms();
    if (err) {
        fz_warn("bad message from peer %s: %s", w ? w->name : "(client)", why);
        s_reply_error(self, from, rid, err, "%s", why);
        return;
    }
    for (size_t i = 0; i < sizeof s_handlers / sizeof *s_handlers; i++) {
        if (!fz_msg_is(msg, s_handlers[i].type))
            continue;
        if (s_handlers[i].client)
            s_handlers[i].client(self, from, msg);
        else if (w)
            s_handlers[i].worker(self, from, msg, w);
        else
            s_reply_error(self, from, rid, FZ_ECONFLICT,
                          "'%s' is a worker message: say hello first", fz_msg_type(msg));
        fz_msg_destroy(&msg);
        return;
    }
    s_reply_error(self, from, rid, FZ_EUNKNOWN, "the broker does not accept '%s'",
                  fz_msg_type(msg));
    fz_msg_destroy(&msg);
}

/* Reads one ROUTER message, [routing id][payload], without blocking; false when none is
   waiting. (zmq directly: CZMQ's zsock_events costs a poll and a getpid per message.) */
static bool s_recv(fz_broker_t *self)
{
    void *router = zsock_resolve(self->router);
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return false;
    }
    bool more = zmq_msg_more(&part), handled = false;
    zframe_t *from = zframe_new(zmq_msg_data(&part), zmq_msg_size(&part));
    zmq_msg_close(&part);
    /* The rest of a message is there already (ZeroMQ delivers messages whole); only one
       payload frame is valid, any other shape gets `malformed`. */
    for (int frames = 1; more; frames++) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, router, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (frames == 1 && !more) {
            s_handle(self, from, zmq_msg_data(&part), zmq_msg_size(&part));
            handled = true;
        }
        zmq_msg_close(&part);
    }
    if (!handled)
        s_reply_error(self, from, 0, FZ_EMALFORMED, "a message must be exactly one frame");
    zframe_destroy(&from);
    return true;
}

/* ---------------------------------------------------------------- timers */

static void s_tick(fz_broker_t *self, int64_t now, bool drained)
{
    /* While messages wait unread, a worker's heartbeat may be among them: judge silence only
       once the socket is drained. */
    int64_t dead_after = drained ? 3 * (int64_t)self->cfg.heartbeat_ms : INT64_MAX / 2;
    /* Collect first: removing a worker while iterating the hash is not allowed. */
    fz_worker_t *dead[256];
    size_t ndead = 0;
    for (fz_worker_t *w = zhashx_first(self->workers); w && ndead < 256;
         w = zhashx_next(self->workers))
        if (now - w->last_seen_ms > dead_after)
            dead[ndead++] = w;
    for (size_t i = 0; i < ndead; i++)
        s_worker_gone(self, dead[i], "silent");

    if (now >= self->next_heartbeat_ms) {
        self->next_heartbeat_ms = now + self->cfg.heartbeat_ms;
        for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
            fz_enc_t *hb = fz_enc_new("heartbeat", 0);
            fz_net_send(self->router, w->routing_id, &hb);
        }
    }

    fz_task_t *t = zlistx_first(self->timed);
    while (t) {
        fz_task_t *next = zlistx_next(self->timed);
        if (t->state == FZ_STATE_RETRYING && now >= t->not_before_ms) {
            s_timed_remove(self, t);
            s_ready(self, t);
            fz_store_task_state(self->store, t->id, FZ_STATE_QUEUED, "");
            s_emit_task(self, "task.queued", t);
        } else if (t->state == FZ_STATE_RUNNING && !t->worker && t->orphan_deadline_ms &&
                   now >= t->orphan_deadline_ms) {
            s_attempt_lost(self, t, "worker did not come back after a broker restart");
        }
        t = next;
    }

    /* Deadlines raise priorities as they near: re-rank those tasks once a second. */
    if (now >= self->next_rerank_ms) {
        self->next_rerank_ms = now + 1000;
        for (fz_task_t *x = zhashx_first(self->tasks); x; x = zhashx_next(self->tasks))
            if (x->deadline > 0 && x->queue)
                s_rerank(self, x);
    }

    if (fz_budget_rollover(&self->budget, fz_wall()))
        s_release_budget(self);
}

static int s_poll_timeout(fz_broker_t *self, int64_t now)
{
    int64_t next = self->next_heartbeat_ms;
    for (fz_task_t *t = zlistx_first(self->timed); t; t = zlistx_next(self->timed)) {
        int64_t at = t->state == FZ_STATE_RETRYING                ? t->not_before_ms
                     : t->state == FZ_STATE_RUNNING && !t->worker ? t->orphan_deadline_ms
                                                                  : 0;
        if (at && at < next)
            next = at;
    }
    int64_t ms = next - now;
    return ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
}

/* ---------------------------------------------------------------- start, reload, run */

static void s_load_one(void *arg, const fz_task_t *row, const char *worker)
{
    fz_broker_t *self = arg;
    fz_task_t *t = malloc(sizeof *t);
    if (!t)
        return;
    *t = *row;
    t->queue = NULL;
    char key[24];
    s_idkey(t->id, key);
    zhashx_insert(self->tasks, key, t);
    /* The model of the attempt at hand: the running one's, or the next one's. */
    char model[65];
    uint32_t n = (t->state == FZ_STATE_RUNNING ? t->attempt : t->attempt + 1) - t->attempt_base;
    if (n > 1 && fz_store_task_model(self->store, t->id, n, model) == 0)
        snprintf(t->model, sizeof t->model, "%s", model);
    switch (t->state) {
    case FZ_STATE_RUNNING:
        /* Its agent may still run: wait for the worker to come back and claim it. */
        fz_sched_started(self->sched, t);
        fz_budget_reserve(&self->budget, t->reserved);
        t->orphan_deadline_ms = fz_clock_ms() + FZ_ORPHAN_PERIODS * (int64_t)self->cfg.heartbeat_ms;
        s_timed_add(self, t);
        break;
    case FZ_STATE_HELD:
        s_rerank(self, t);
        fz_sched_hold(self->sched, t, t->hold_reason);
        break;
    case FZ_STATE_RETRYING:
        t->not_before_ms = fz_clock_ms();
        s_timed_add(self, t);
        break;
    case FZ_STATE_WAITING:
        break; /* counted in s_load_waiting, once every task is in memory */
    default:
        s_rerank(self, t);
        fz_sched_enqueue(self->sched, t);
        break;
    }
}

/* Waiting tasks after a load: count what each still waits for (dependencies may have ended
   while they were stored), fail those whose dependency failed, lend priorities. */
static void s_load_waiting(fz_broker_t *self)
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
        fz_task_t *t = s_task(self, ids[i]);
        if (t && t->state == FZ_STATE_WAITING)
            s_recheck_waiting(self, t, &ended);
        uint64_t id;
        int state;
        while (s_walk_pop(&ended, &id, &state))
            fz_store_dependents(self->store, id, s_on_dep_ended, &e);
    }
    free(ended.v);
    for (size_t i = 0; i < n; i++) {
        fz_task_t *t = s_task(self, ids[i]);
        if (t && t->state == FZ_STATE_WAITING)
            s_inherit(self, t);
    }
    free(ids);
}

static int s_load(fz_broker_t *self)
{
    double now = fz_wall(), day = fz_budget_day_start(now);
    double cap = fz_store_meta_get(self->store, "budget", self->cfg.daily_budget);
    if (cap != self->cfg.daily_budget)
        fz_info("daily budget %.2f USD, as set with fz-ctl budget --set (it wins over "
                "--daily-budget %.2f)",
                cap, self->cfg.daily_budget);
    fz_budget_init(&self->budget, cap, fz_store_spent(self->store, day, day + 86400), now);
    self->paused = fz_store_meta_get(self->store, "paused", 0) != 0;
    if (fz_store_load_live(self->store, s_load_one, self))
        return -1;
    s_load_waiting(self);
    /* Reservations of held tasks are re-checked against the reloaded ledger. */
    s_release_budget(self);
    return 0;
}

static void s_reload(fz_broker_t *self)
{
    fz_store_rollback(self->store);
    /* Workers keep running what they run: remember who runs what, re-attach after the load
       (the store holds those attempts as running, committed in earlier turns). */
    size_t nbusy = 0;
    struct busy {
        char key[64];
        uint64_t task;
        uint32_t attempt;
    } *busy = calloc(zhashx_size(self->workers) + 1, sizeof *busy);
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
        if (w->task && busy) {
            snprintf(busy[nbusy].key, sizeof busy[nbusy].key, "%s", w->key);
            busy[nbusy].task = w->task->id;
            busy[nbusy++].attempt = w->task->attempt;
        }
        w->task = NULL;
    }
    zlistx_purge(self->timed);
    fz_sched_destroy(&self->sched);
    zhashx_purge(self->tasks);
    self->sched = fz_sched_new(self->cfg.max_running);
    for (int i = 0; i < self->cfg.nmodel_caps; i++)
        fz_sched_set_cap(self->sched, self->cfg.model_caps[i].name, self->cfg.model_caps[i].cap);
    int rc = s_load(self);
    for (size_t i = 0; i < nbusy; i++) {
        fz_worker_t *w = zhashx_lookup(self->workers, busy[i].key);
        if (w)
            s_reattach(self, w, busy[i].task, busy[i].attempt);
    }
    free(busy);
    s_release_now(self);
    if (rc || fz_store_commit(self->store))
        fz_error("reload from the store failed: %s", fz_store_error(self->store));
}

static int s_parse_whitelist(fz_broker_t *self)
{
    if (!self->cfg.models || !*self->cfg.models)
        return 0;
    char *copy = strdup(self->cfg.models);
    if (!copy)
        return -1;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        char **more = realloc(self->allowed, (self->nallowed + 1) * sizeof *more);
        if (!more)
            break;
        self->allowed = more;
        self->allowed[self->nallowed++] = strdup(tok);
    }
    free(copy);
    return 0;
}

fz_broker_t *fz_broker_new(const fz_broker_config_t *cfg, char *err, size_t errlen)
{
    fz_broker_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    self->rng = (uint64_t)fz_clock_ms() * 2654435761u + (uint64_t)getpid();
    self->tasks = zhashx_new();
    self->workers = zhashx_new();
    self->timed = zlistx_new();
    self->sched = fz_sched_new(cfg->max_running);
    self->history = fz_history_new(FZ_HISTORY_EVENTS, FZ_HISTORY_BYTES);
    zhashx_set_destructor(self->tasks, s_task_free);
    zhashx_set_destructor(self->workers, s_worker_free);
    s_parse_whitelist(self);
    for (int i = 0; self->sched && i < cfg->nmodel_caps; i++)
        fz_sched_set_cap(self->sched, cfg->model_caps[i].name, cfg->model_caps[i].cap);
    self->store = fz_store_open(cfg->db, cfg->sync_full, err, errlen);
    if (!self->store)
        goto fail;
    int rc = s_load(self);
    s_release_now(self);
    if (rc || fz_store_commit(self->store)) {
        snprintf(err, errlen, "cannot load tasks from %s: %s", cfg->db,
                 fz_store_error(self->store));
        goto fail;
    }
    self->router = fz_net_socket(ZMQ_ROUTER);
    self->pub = fz_net_socket(ZMQ_PUB);
    if (!self->router || !self->pub) {
        snprintf(err, errlen, "cannot create sockets: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    zsock_set_sndhwm(self->pub, 100000);
    if (fz_net_ipc_in_use(cfg->bind) || fz_net_ipc_in_use(cfg->events)) {
        snprintf(err, errlen, "cannot bind %s / %s: endpoint in use (another fz-broker?)",
                 cfg->bind, cfg->events);
        goto fail;
    }
    if (zsock_bind(self->router, "%s", cfg->bind) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", cfg->bind, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zsock_bind(self->pub, "%s", cfg->events) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", cfg->events, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return self;
fail:
    fz_broker_destroy(&self);
    return NULL;
}

void fz_broker_destroy(fz_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_broker_t *self = *self_p;
    for (size_t i = 0; i < self->nout; i++) {
        fz_enc_destroy(&self->out[i].enc);
        zframe_destroy(&self->out[i].to);
    }
    free(self->out);
    if (self->store)
        fz_store_commit(self->store);
    fz_store_destroy(&self->store);
    zlistx_destroy(&self->timed);
    fz_history_destroy(&self->history);
    fz_sched_destroy(&self->sched);
    zhashx_destroy(&self->workers);
    zhashx_destroy(&self->tasks);
    for (size_t i = 0; i < self->nallowed; i++)
        free(self->allowed[i]);
    free(self->allowed);
    zsock_destroy(&self->router);
    zsock_destroy(&self->pub);
    free(self);
    *self_p = NULL;
}

/* One turn: read what arrived, run timers, dispatch, commit, then send. */
static void s_turn(fz_broker_t *self)
{
    int i = 0;
    while (i < FZ_TURN_MAX && s_recv(self))
        i++;
    s_tick(self, fz_clock_ms(), i < FZ_TURN_MAX);
    s_release_now(self);
    s_dispatch(self);
    if (fz_store_commit(self->store) < 0)
        s_abandon_turn(self);
    else
        s_flush(self);
}

int fz_broker_run(fz_broker_t *self)
{
    fz_info("listening on %s, events on %s, store %s (%zu live tasks%s)", self->cfg.bind,
            self->cfg.events, self->cfg.db, zhashx_size(self->tasks),
            self->paused ? ", paused" : "");
    fz_enc_t *e = s_event("broker.started", NULL);
    fz_enc_str(e, "version", FZ_VERSION);
    s_emit(self, "broker.started", &e);
    zmq_pollitem_t item = {zsock_resolve(self->router), 0, ZMQ_POLLIN, 0};
    while (!fz_net_interrupted()) {
        s_turn(self);
        int rc = zmq_poll(&item, 1, s_poll_timeout(self, fz_clock_ms()));
        if (rc < 0 && errno != EINTR) {
            fz_error("poll failed: %s", zmq_strerror(errno));
            return 1;
        }
    }
    e = s_event("broker.stopping", NULL);
    fz_enc_str(e, "version", FZ_VERSION);
    s_emit(self, "broker.stopping", &e);
    s_turn(self);
    fz_info("stopped (signal %d); running agents go on and their workers will reconnect",
            fz_net_signal());
    return 0;
}
