/*  fz_workers: the worker registry and the worker messages (hello, heartbeat, started, output,
    result, bye); see fz_broker_int.h. */

#include "fz_broker_int.h"

#include "fz_classify.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- workers */

/* A worker.joined or worker.left event with the worker's name and models. */
static fz_enc_t *s_worker_event(fz_broker_t *self, fz_topic_t topic, const fz_worker_t *w)
{
    fz_enc_t *e = fz_outbox_event(self, topic, NULL);
    fz_enc_str(e, "worker", w->name);
    fz_enc_bool(e, "any_model", w->any_model);
    fz_enc_array(e, "models", w->nmodels);
    for (size_t i = 0; i < w->nmodels; i++)
        fz_enc_str(e, NULL, w->models[i]);
    return e;
}

void fz_workers_gone(fz_broker_t *self, fz_worker_t *w, const char *reason)
{
    fz_info("worker %s left (%s)", w->name, reason);
    if (w->next) /* never started: requeued, and it does not use a retry */
        fz_workers_unprefetch(self, w, reason);
    if (w->task && !fz_race_lost(self, w->task, w, reason)) {
        fz_guard_lost(self, w, w->task); /* before: it may let this attempt off */
        fz_life_lost(self, w->task, reason);
    }
    fz_race_left_lost(self, w, reason);
    fz_enc_str(s_worker_event(self, FZ_TOPIC_WORKER_LEFT, w), "reason", reason);
    zhashx_delete(self->workers, w->key);
}

void fz_workers_unprefetch(fz_broker_t *self, fz_worker_t *w, const char *why)
{
    fz_task_t *t = w->next;
    fz_life_free_attempt(self, t);
    fz_life_lost(self, t, why);
}

/* Gives w back the orphan t: as what it runs, or (ahead) as what it holds next. */
static void s_take_back(fz_broker_t *self, fz_worker_t *w, fz_task_t *t, uint32_t attempt,
                        bool ahead)
{
    t->worker = w;
    if (ahead) {
        w->next = t;
        w->next_attempt = attempt;
    } else {
        w->task = t;
        w->attempt = attempt;
    }
    t->orphan_deadline_ms = 0;
    fz_life_timed_remove(self, t);
    fz_info("worker %s re-attached task %llu attempt %u%s", w->name, (unsigned long long)t->id,
            attempt, ahead ? " (held ahead)" : "");
    if (t->cancel_requested)
        fz_life_send_cancel(self, w, t->id, attempt, "cancelled");
}

/* The worker says it runs (task, attempt): take it back if that is the attempt we expect,
   else tell it to stop. */
void fz_workers_reattach(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt)
{
    /* A worker runs one agent: if it claims another task than the one we gave it, ours never
       started there (or was replaced) and is lost. */
    if (w->task && (w->task->id != task || w->attempt != attempt) &&
        !fz_race_lost(self, w->task, w, "the worker runs another task"))
        fz_life_lost(self, w->task, "the worker runs another task");
    fz_task_t *t = fz_broker_task(self, task);
    if (t && t->state == FZ_STATE_RUNNING && t->attempt == attempt && !t->worker) {
        s_take_back(self, w, t, attempt, false);
        return;
    }
    fz_warn("worker %s runs task %llu attempt %u, which is no longer expected: cancelling it",
            w->name, (unsigned long long)task, attempt);
    fz_life_send_cancel(self, w, task, attempt, "superseded");
}

void fz_workers_reattach_next(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt)
{
    fz_task_t *t = fz_broker_task(self, task);
    if (t && t->state == FZ_STATE_RUNNING && t->attempt == attempt && !t->worker && !w->next &&
        w->task) {
        s_take_back(self, w, t, attempt, true);
        return;
    }
    fz_life_send_cancel(self, w, task, attempt, "superseded");
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
        if (!fz_broker_model_allowed(self, name)) {
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

/* The hello names the attempt the worker held ahead (--prefetch) and dropped unstarted at a
   reconnect. A restarted broker holds it as an orphan, which would wait for a result that
   cannot come and then count as a lost attempt: it is requeued now and uses no retry. Only
   the worker it was dispatched to can give it back. */
static void s_dropped(fz_broker_t *self, fz_worker_t *w, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "dropped_task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "dropped_attempt", 0);
    fz_task_t *t = id ? fz_broker_task(self, id) : NULL;
    char to[65];
    if (!t || t->state != FZ_STATE_RUNNING || t->worker || t->attempt != attempt ||
        fz_store_attempt_worker(self->store, id, attempt, to) < 0 || strcmp(to, w->name) != 0)
        return; /* handed back already (the broker saw the reconnect), or not this one's */
    fz_info("worker %s gave back task %llu attempt %u, held ahead and not started", w->name,
            (unsigned long long)id, attempt);
    fz_life_free_attempt(self, t);
    fz_life_lost(self, t, "held ahead by a worker that reconnected: not started");
}

/* A hello on a connection we know: the worker re-introduces itself (it missed our welcome,
   or we restarted in between). Refresh it in place. */
static void s_rehello(fz_broker_t *self, fz_worker_t *w, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_reply("welcome", fz_msg_rid(msg));
    fz_enc_uint(r, "heartbeat_ms", self->cfg.heartbeat_ms);
    fz_enc_str(r, "name", w->name);
    s_worker_models(self, w, msg, r);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
    /* A worker that says hello again was restarted or fixed: healthy until shown otherwise. */
    w->nunhealthy = 0;
    w->unhealthy_all = false;
    w->prefetch = fz_msg_bool(msg, "prefetch", false);
    /* A hello drops a dispatch held ahead (fz-worker does): it is given again. */
    if (w->next)
        fz_workers_unprefetch(self, w, "the worker said hello again");
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    if (task && !(w->task && w->task->id == task && w->attempt == attempt))
        fz_workers_reattach(self, w, task, attempt);
    s_dropped(self, w, msg);
}

_Static_assert(sizeof(((fz_worker_t *)0)->user) >= FZ_AUTH_USER, "a user id fits a worker");

void fz_workers_hello(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_worker_t *same = fz_broker_worker(self, from);
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
    /* With CURVE on, only the key that registered a name may come back as it: another key
       could otherwise evict a live worker (a hello without a nonce) and take its task. */
    if (old && strcmp(old->user, self->peer_user) != 0) {
        fz_outbox_error(self, from, fz_msg_rid(msg), FZ_ECONFLICT, FZ_REASON_NAME_TAKEN,
                        "worker name '%s' is registered by another key: give this worker "
                        "another --name (it is retried until the other one leaves)",
                        name);
        return;
    }
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    /* The same name from another process (its nonce differs) while the first is alive: two
       workers would take each other's place forever. The newcomer waits its turn. */
    const char *nonce = fz_msg_str(msg, "nonce", "", NULL);
    if (old && *nonce && strcmp(old->nonce, nonce) != 0 &&
        fz_clock_ms() - old->last_seen_ms <= 3 * (int64_t)self->cfg.heartbeat_ms) {
        fz_outbox_error(self, from, fz_msg_rid(msg), FZ_ECONFLICT, FZ_REASON_NAME_TAKEN,
                        "worker name '%s' is taken by another live worker process: give this one "
                        "another --name (it is retried until the other one leaves)",
                        name);
        return;
    }
    if (old) {
        /* (A best-of racer is not handed over: it is lost, and the new connection told to
           stop it.) */
        if (old->task && old->task->id == task && old->attempt == attempt &&
            old->task->worker == old) {
            old->task->worker = NULL; /* handed over below */
            old->task = NULL;
        }
        /* It started what it held (--prefetch) while cut off: that moves over, and the
           attempt before ended there, its result on its way again (the worker resends it
           until acknowledged; a result is recorded for a task running with nobody). */
        if (old->next && old->next->id == task && old->next_attempt == attempt) {
            old->next->worker = NULL;
            old->next = NULL;
            if (old->task && old->task->worker == old && old->attempt == old->task->attempt) {
                fz_life_orphan(self, old->task);
                old->task = NULL;
            }
        }
        fz_workers_gone(self, old, "reconnected");
    }
    fz_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->rid_len = zframe_size(from) < sizeof w->rid ? zframe_size(from) : sizeof w->rid;
    memcpy(w->rid, zframe_data(from), w->rid_len);
    fz_broker_hexkey(from, w->key, sizeof w->key);
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->nonce, sizeof w->nonce, "%s", fz_msg_str(msg, "nonce", "", NULL));
    fz_strcopy(w->user, sizeof w->user, self->peer_user);
    w->last_seen_ms = w->idle_since_ms = fz_clock_ms();
    w->since = fz_wall();
    w->prefetch = fz_msg_bool(msg, "prefetch", false);
    zhashx_insert(self->workers, w->key, w);
    fz_guard_hello(self, w);

    fz_enc_t *r = fz_enc_reply("welcome", fz_msg_rid(msg));
    fz_enc_uint(r, "heartbeat_ms", self->cfg.heartbeat_ms);
    fz_enc_str(r, "name", w->name);
    s_worker_models(self, w, msg, r);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
    if (task)
        fz_workers_reattach(self, w, task, attempt);
    s_dropped(self, w, msg);

    s_worker_event(self, FZ_TOPIC_WORKER_JOINED, w);
    fz_info("worker %s joined (%zu models%s)", w->name, w->nmodels, w->any_model ? ", any" : "");
}

/* The task a worker message is about, if it is the worker's current attempt (a best-of
   task's primary or one of its racers). */
static fz_task_t *s_current(fz_worker_t *w, fz_msg_t *msg)
{
    fz_task_t *t = w->task;
    if (t && t->id == fz_msg_uint(msg, "task", 0) && w->attempt == fz_msg_uint(msg, "attempt", 0))
        return t;
    return NULL;
}

/* An attempt that showed no sign of life for its stall limit is announced, once; it counts
   as alive again as soon as the worker sees output or a report line. */
static void s_check_stall(fz_broker_t *self, fz_worker_t *w, fz_task_t *t, uint64_t idle_ms)
{
    uint32_t stall = t->stall_s ? t->stall_s : self->cfg.stall_s;
    if (!stall || idle_ms < (uint64_t)stall * 1000) {
        t->stalled_since = 0;
        return;
    }
    if (t->stalled_since == 0)
        t->stalled_since = fz_wall() - (double)idle_ms / 1000.0;
    if (t->stalled)
        return;
    t->stalled = true;
    fz_warn("task %llu attempt %u on %s: no sign of life for %llu s", (unsigned long long)t->id,
            t->attempt, w->name, (unsigned long long)(idle_ms / 1000));
    fz_enc_t *e = fz_race_event(self, FZ_TOPIC_TASK_STALLED, t, w->attempt);
    fz_enc_str(e, "worker", w->name);
    fz_enc_uint(e, "idle_ms", idle_ms);
}

void fz_workers_heartbeat(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    if (fz_msg_bool(msg, "draining", false) && !w->draining) {
        w->draining = true; /* it finishes what it runs and takes nothing more */
        fz_info("worker %s is draining", w->name);
    }
    /* A worker that runs a task we hold as orphaned (after a reload) claims it here too, so
       re-attaching does not wait for a hello that a connected worker never sends. */
    uint64_t claimed = fz_msg_uint(msg, "task", 0);
    if (claimed && !w->task) {
        fz_task_t *o = fz_broker_task(self, claimed);
        if (o && o->state == FZ_STATE_RUNNING && !o->worker)
            fz_workers_reattach(self, w, claimed, (uint32_t)fz_msg_uint(msg, "attempt", 0));
    }
    fz_task_t *t = s_current(w, msg);
    if (!t || !fz_msg_has(msg, "elapsed_ms"))
        return;
    s_check_stall(self, w, t, fz_msg_uint(msg, "idle_ms", 0));
    fz_enc_t *e = fz_race_event(self, FZ_TOPIC_TASK_PROGRESS, t, w->attempt);
    fz_enc_str(e, "worker", w->name);
    fz_enc_uint(e, "elapsed_ms", fz_msg_uint(msg, "elapsed_ms", 0));
    fz_enc_float(e, "cost_usd", fz_msg_float(msg, "cost_usd", 0));
    fz_enc_uint(e, "tokens_in", fz_msg_uint(msg, "tokens_in", 0));
    fz_enc_uint(e, "tokens_cache_read", fz_msg_uint(msg, "tokens_cache_read", 0));
    fz_enc_uint(e, "tokens_cache_write", fz_msg_uint(msg, "tokens_cache_write", 0));
    fz_enc_uint(e, "tokens_out", fz_msg_uint(msg, "tokens_out", 0));
    fz_enc_uint(e, "idle_ms", fz_msg_uint(msg, "idle_ms", 0));
    if (fz_msg_has(msg, "progress"))
        fz_enc_uint(e, "progress", fz_msg_uint(msg, "progress", 0));
    fz_enc_str(e, "progress_text", fz_msg_str(msg, "progress_text", "", NULL));
}

void fz_workers_started(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    fz_task_t *t = s_current(w, msg);
    if (!t)
        return;
    fz_enc_t *e = fz_race_event(self, FZ_TOPIC_TASK_STARTED, t, w->attempt);
    fz_enc_str(e, "worker", w->name);
    fz_enc_uint(e, "pid", fz_msg_uint(msg, "pid", 0));
}

void fz_workers_output(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    fz_task_t *t = s_current(w, msg);
    if (!t)
        return;
    size_t len;
    const void *data = fz_msg_bin(msg, "data", &len);
    /* fz-worker streams at most 64 KiB/s; a peer that floods is cut back to twice that, so
       subscribers (and the PUB queue of one that does not read) stay bounded. */
    if (!fz_rules_bucket_take(&t->output, fz_clock_ms(), FZ_OUTPUT_RATE, FZ_OUTPUT_RATE, len)) {
        if (t->output_dropped == 0)
            fz_warn("task %llu attempt %u: %s streams output faster than %d KiB/s; the excess "
                    "is dropped from the event stream (the worker's log keeps it all)",
                    (unsigned long long)t->id, t->attempt, w->name, FZ_OUTPUT_RATE / 1024);
        t->output_dropped += len;
        return;
    }
    fz_enc_t *e = fz_race_event(self, FZ_TOPIC_TASK_OUTPUT, t, w->attempt);
    fz_enc_str(e, "worker", w->name);
    fz_enc_bin(e, "data", data ? data : "", len);
    if (t->output_dropped)
        fz_enc_uint(e, "dropped", t->output_dropped);
}

static void s_ack_result(fz_broker_t *self, zframe_t *from, uint64_t task, uint64_t attempt,
                         bool promote)
{
    fz_enc_t *a = fz_enc_new("result-ack", 0);
    fz_enc_uint(a, "task", task);
    fz_enc_uint(a, "attempt", attempt);
    if (promote)
        fz_enc_bool(a, "promote", true); /* PROTOCOL.md section 8: the task's branch */
    fz_outbox_add(self, from, a);
}

/* The result's fields; strings point into msg. */
static void s_read_result(fz_msg_t *msg, fz_result_t *r, fz_class_t *cls, double *retry_after)
{
    r->outcome = fz_msg_str(msg, "outcome", "exited", NULL);
    r->exit_code = fz_msg_int(msg, "exit_code", 0);
    r->signal = (uint32_t)fz_msg_uint(msg, "signal", 0);
    r->duration_ms = fz_msg_uint(msg, "duration_ms", 0);
    r->cost_usd = fz_msg_float(msg, "cost_usd", 0);
    r->tokens_in = fz_msg_uint(msg, "tokens_in", 0);
    r->tokens_out = fz_msg_uint(msg, "tokens_out", 0);
    r->tokens_cache_read = fz_msg_uint(msg, "tokens_cache_read", 0);
    r->tokens_cache_write = fz_msg_uint(msg, "tokens_cache_write", 0);
    r->model = fz_msg_str(msg, "model", "", NULL);
    r->summary = fz_msg_str(msg, "summary", "", NULL);
    r->output = fz_msg_bin(msg, "output", &r->output_len);
    r->log = fz_msg_str(msg, "log", "", NULL);
    r->reset_at = fz_msg_float(msg, "reset_at", 0);
    *retry_after = fz_msg_float(msg, "retry_after", 0);
    r->branch = fz_msg_str(msg, "branch", "", NULL);
    r->base_commit = fz_msg_str(msg, "base_commit", "", NULL);
    r->head_commit = fz_msg_str(msg, "head_commit", "", NULL);
    r->files = fz_msg_uint(msg, "files", 0);
    r->insertions = fz_msg_uint(msg, "insertions", 0);
    r->deletions = fz_msg_uint(msg, "deletions", 0);
    r->check_status = fz_msg_str(msg, "check_status", "", NULL);
    r->check_exit = fz_msg_int(msg, "check_exit", 0);
    r->check_output = fz_msg_bin(msg, "check_output", &r->check_output_len);
    /* A peer that sends no class is classified here as the worker would have. */
    *cls = fz_classify(fz_outcome_from_name(r->outcome), r->exit_code,
                       fz_class_from_name(fz_msg_str(msg, "class", "", NULL)));
    r->class_name = fz_class_name(*cls);
}

/* A result sent again: did its attempt make the task succeed? (Its ack was lost: the worker
   must still point the task's branch at it.) */
static bool s_won(fz_broker_t *self, uint64_t id, fz_msg_t *msg)
{
    const char *head = fz_msg_str(msg, "head_commit", "", NULL);
    char won[FZ_STORE_OID_MAX];
    return *head && fz_store_task_head(self->store, id, won) == 0 && strcmp(won, head) == 0;
}

void fz_workers_event_result(fz_enc_t *e, const fz_worker_t *w, const fz_result_t *r)
{
    if (w)
        fz_enc_str(e, "worker", w->name);
    fz_enc_str(e, "outcome", r->outcome);
    fz_enc_int(e, "exit_code", r->exit_code);
    fz_enc_float(e, "cost_usd", r->cost_usd);
    fz_enc_uint(e, "duration_ms", r->duration_ms);
    fz_enc_str(e, "summary", r->summary ? r->summary : "");
    if (r->class_name && *r->class_name)
        fz_enc_str(e, "class", r->class_name);
    /* What it says of the attempt's workspace, when it had one. */
    if ((!r->branch || !*r->branch) && (!r->check_status || !*r->check_status))
        return;
    fz_enc_str(e, "branch", r->branch);
    fz_enc_str(e, "base_commit", r->base_commit);
    fz_enc_str(e, "head_commit", r->head_commit);
    fz_enc_uint(e, "files", r->files);
    fz_enc_uint(e, "insertions", r->insertions);
    fz_enc_uint(e, "deletions", r->deletions);
    fz_enc_str(e, "check_status", r->check_status);
    fz_enc_int(e, "check_exit", r->check_exit);
}

/* True if the next model of the task's fallback chain differs from this attempt's. */
static bool s_fallback_left(fz_broker_t *self, const fz_task_t *t)
{
    char now[65], next[65];
    uint32_t made = t->attempt - t->attempt_base;
    return fz_store_task_model(self->store, t->id, made, now) == 0 &&
           fz_store_task_model(self->store, t->id, made + 1, next) == 0 && strcmp(now, next) != 0;
}

/* The task's event after its attempt ended: which topic, and the reason it carries. */
static fz_topic_t s_end_topic(fz_state_t next)
{
    return next == FZ_STATE_QUEUED     ? FZ_TOPIC_TASK_REQUEUED
           : next == FZ_STATE_RETRYING ? FZ_TOPIC_TASK_ATTEMPT_FAILED
                                       : FZ_TOPIC_NONE;
}

static void s_unhealthy(fz_broker_t *self, fz_worker_t *w, fz_class_t cls, const char *model)
{
    fz_worker_set_unhealthy(w, model);
    fz_warn("worker %s is unhealthy (%s%s%s): no more of %s for it until it says hello again",
            w->name, fz_class_name(cls), *model ? ", model " : "", model,
            *model ? "this model's tasks" : "any task");
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_WORKER_UNHEALTHY, NULL);
    fz_enc_str(e, "worker", w->name);
    fz_enc_str(e, "class", fz_class_name(cls));
    fz_enc_str(e, "model", model);
}

/* A rate limit or quota: the task waits without using a retry, its model with it. */
static void s_wait_quota(fz_broker_t *self, fz_task_t *t, const char *model, double wait_s)
{
    t->not_before = fz_wall() + wait_s;
    t->quota_waits++;
    fz_store_task_not_before(self->store, t->id, t->not_before);
    fz_life_timed_add(self, t);
    fz_sched_block(self->sched, model, fz_clock_ms() + (int64_t)(wait_s * 1000));
}

/* What the policy asks for once the attempt is recorded. */
static void s_apply(fz_broker_t *self, fz_worker_t *w, fz_task_t *t, const fz_policy_t *p,
                    fz_class_t cls, const char *model, bool rejected)
{
    if (p->free)
        fz_life_free_attempt(self, t);
    if (p->unhealthy_model || p->unhealthy_worker)
        s_unhealthy(self, w, cls, p->unhealthy_worker ? "" : model);
    switch (p->next) {
    case FZ_STATE_RETRYING:
        fz_life_retry_later(
            self, t, p->at_once ? 0 : fz_life_backoff_ms(self, t->attempt - t->attempt_base));
        break;
    case FZ_STATE_HELD:
        s_wait_quota(self, t, model, p->wait_s);
        break;
    case FZ_STATE_QUEUED:
        /* A worker that refused gets no dispatch for a while (it may be stopping or busy). */
        if (rejected)
            w->rest_until_ms = fz_clock_ms() + 3 * (int64_t)self->cfg.heartbeat_ms;
        fz_life_ready(self, t);
        break;
    default:
        fz_graph_final(self, t);
        break;
    }
}

void fz_workers_result(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    uint64_t id = fz_msg_uint(msg, "task", 0);
    uint32_t n = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    fz_task_t *t = fz_broker_task(self, id);
    fz_result_t r = {0};
    fz_class_t cls;
    double retry_after;
    s_read_result(msg, &r, &cls, &retry_after);
    if (!t || t->state != FZ_STATE_RUNNING || (t->attempt != n && !fz_race_runs(t, n))) {
        /* Recorded already, or superseded (the attempt was declared lost): exactly one
           record per attempt, so only acknowledge; but a best-of round's loser, cancelled
           when another attempt won, is recorded now. */
        if (!fz_race_late(self, w, id, n, &r))
            fz_info("result of task %llu attempt %u is a duplicate or stale; acknowledged",
                    (unsigned long long)id, n);
        if (w->task && w->task->id == id && w->attempt == n)
            fz_worker_take_next(w);
        s_ack_result(self, from, id, n, s_won(self, id, msg));
        return;
    }
    /* A best-of task's --retries count rounds. */
    uint32_t made = t->best_of > 1 ? fz_race_rounds(t) : t->attempt - t->attempt_base;
    fz_failure_t f = {.end = {.outcome = (fz_outcome_t)fz_outcome_from_name(r.outcome),
                              .exit_code = r.exit_code,
                              .cancel_requested = t->cancel_requested,
                              .made = made,
                              .retries = t->retries},
                      .cls = cls,
                      .reset_at = r.reset_at,
                      .retry_after = retry_after,
                      .now = fz_wall(),
                      .waits = t->quota_waits,
                      .fallback_left =
                          cls == FZ_CLASS_MODEL_UNAVAILABLE && s_fallback_left(self, t)};
    fz_policy_t p = fz_rules_policy(&f);
    /* A dispatch held ahead (--prefetch) that comes back never ran: it uses no retry. */
    if (w->next == t && t->worker == w)
        p.free = true;
    /* A run of a best-of round: one that fails while another runs drops out; the winner
       becomes the attempt the task takes. */
    if (p.next != FZ_STATE_SUCCEEDED && fz_race_drop(self, t, n, &r)) {
        s_ack_result(self, from, id, n, false);
        return;
    }
    if (n != t->attempt)
        fz_race_won(t, n);
    const char *model = fz_worker_model_for(w, t->model);
    const char *reason = p.next == FZ_STATE_HELD ? "quota"
                         : cls != FZ_CLASS_NONE  ? r.class_name
                                                 : r.outcome;
    fz_enc_t *e = fz_life_move(
        self, t, p.next,
        &(fz_move_t){.result = &r,
                     .topic = s_end_topic(p.next),
                     .reason =
                         p.next == FZ_STATE_QUEUED || p.next == FZ_STATE_HELD ? reason : NULL});
    if (t->state != p.next)
        return; /* not stored, so not acknowledged: the worker sends it again */
    double cap = t->max_cost > t->reserved ? t->max_cost : t->reserved;
    fz_budget_settle(&self->budget, t->reserved,
                     fz_guard_charge(self, t->id, t->attempt, cap, &r, e));
    t->reserved = 0;
    fz_life_unrun(self, t);
    if (w->task == t)
        w->task = NULL;
    s_ack_result(self, from, id, n, p.next == FZ_STATE_SUCCEEDED && *r.head_commit);

    fz_workers_event_result(e, w, &r);
    if (p.next == FZ_STATE_HELD)
        fz_enc_float(e, "until", fz_wall() + p.wait_s);
    s_apply(self, w, t, &p, cls, model, fz_outcome_from_name(r.outcome) == FZ_OUTCOME_REJECTED);
    fz_life_budget_moved(self);
}

void fz_workers_bye(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    fz_workers_gone(self, w, "bye");
}
