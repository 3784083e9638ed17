/*  fz_workers: the worker registry and the worker messages (hello, heartbeat, started, output,
    result, bye); see fz_broker_int.h. */

#include "fz_broker_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- workers */

void fz_workers_gone(fz_broker_t *self, fz_worker_t *w, const char *reason)
{
    fz_info("worker %s left (%s)", w->name, reason);
    if (w->task)
        fz_life_lost(self, w->task, reason);
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_WORKER_LEFT, NULL);
    fz_enc_str(e, "worker", w->name);
    fz_enc_str(e, "reason", reason);
    zhashx_delete(self->workers, w->key);
}

/* The worker says it runs (task, attempt): take it back if that is the attempt we expect,
   else tell it to stop. */
void fz_workers_reattach(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt)
{
    /* A worker runs one agent: if it claims another task than the one we gave it, ours never
       started there (or was replaced) and is lost. */
    if (w->task && (w->task->id != task || w->task->attempt != attempt))
        fz_life_lost(self, w->task, "the worker runs another task");
    fz_task_t *t = fz_broker_task(self, task);
    if (t && t->state == FZ_STATE_RUNNING && t->attempt == attempt && !t->worker) {
        t->worker = w;
        w->task = t;
        t->orphan_deadline_ms = 0;
        fz_life_timed_remove(self, t);
        fz_info("worker %s re-attached task %llu attempt %u", w->name, (unsigned long long)task,
                attempt);
        if (t->cancel_requested)
            fz_life_send_cancel(self, w, task, attempt, "cancelled");
        return;
    }
    fz_warn("worker %s runs task %llu attempt %u, which is no longer expected: cancelling it",
            w->name, (unsigned long long)task, attempt);
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

/* A hello on a connection we know: the worker re-introduces itself (it missed our welcome,
   or we restarted in between). Refresh it in place. */
static void s_rehello(fz_broker_t *self, fz_worker_t *w, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_new("welcome", fz_msg_rid(msg));
    fz_enc_uint(r, "heartbeat_ms", self->cfg.heartbeat_ms);
    fz_enc_str(r, "name", w->name);
    s_worker_models(self, w, msg, r);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    if (task && !(w->task && w->task->id == task && w->task->attempt == attempt))
        fz_workers_reattach(self, w, task, attempt);
}

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
        if (old->task && old->task->id == task && old->task->attempt == attempt) {
            old->task->worker = NULL; /* handed over below */
            old->task = NULL;
        }
        fz_workers_gone(self, old, "reconnected");
    }
    fz_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->routing_id = zframe_dup(from);
    fz_broker_hexkey(from, w->key, sizeof w->key);
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->nonce, sizeof w->nonce, "%s", fz_msg_str(msg, "nonce", "", NULL));
    w->last_seen_ms = w->idle_since_ms = fz_clock_ms();
    w->since = fz_wall();
    zhashx_insert(self->workers, w->key, w);

    fz_enc_t *r = fz_enc_new("welcome", fz_msg_rid(msg));
    fz_enc_uint(r, "heartbeat_ms", self->cfg.heartbeat_ms);
    fz_enc_str(r, "name", w->name);
    s_worker_models(self, w, msg, r);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
    if (task)
        fz_workers_reattach(self, w, task, attempt);

    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_WORKER_JOINED, NULL);
    fz_enc_str(e, "worker", w->name);
    fz_enc_bool(e, "any_model", w->any_model);
    fz_enc_array(e, "models", w->nmodels);
    for (size_t i = 0; i < w->nmodels; i++)
        fz_enc_str(e, NULL, w->models[i]);
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
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_TASK_PROGRESS, t);
    fz_enc_str(e, "worker", w->name);
    fz_enc_uint(e, "elapsed_ms", fz_msg_uint(msg, "elapsed_ms", 0));
    fz_enc_float(e, "cost_usd", fz_msg_float(msg, "cost_usd", 0));
    fz_enc_uint(e, "tokens_in", fz_msg_uint(msg, "tokens_in", 0));
    fz_enc_uint(e, "tokens_out", fz_msg_uint(msg, "tokens_out", 0));
    if (fz_msg_has(msg, "progress"))
        fz_enc_uint(e, "progress", fz_msg_uint(msg, "progress", 0));
    fz_enc_str(e, "progress_text", fz_msg_str(msg, "progress_text", "", NULL));
}

void fz_workers_started(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    fz_task_t *t = s_current(w, msg);
    if (!t)
        return;
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_TASK_STARTED, t);
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
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_TASK_OUTPUT, t);
    fz_enc_str(e, "worker", w->name);
    fz_enc_bin(e, "data", data ? data : "", len);
}

static void s_ack_result(fz_broker_t *self, zframe_t *from, uint64_t task, uint64_t attempt)
{
    fz_enc_t *a = fz_enc_new("result-ack", 0);
    fz_enc_uint(a, "task", task);
    fz_enc_uint(a, "attempt", attempt);
    fz_outbox_add(self, from, a);
}

void fz_workers_result(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    uint64_t id = fz_msg_uint(msg, "task", 0);
    uint32_t n = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    fz_task_t *t = fz_broker_task(self, id);
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
    fz_state_t next = fz_life_next_state(t, r.outcome, r.exit_code);
    /* Not the task's fault (rejected, interrupted): back to the queue, announced as such. */
    bool requeue = next == FZ_STATE_QUEUED;
    fz_topic_t topic = requeue                     ? FZ_TOPIC_TASK_REQUEUED
                       : next == FZ_STATE_RETRYING ? FZ_TOPIC_TASK_ATTEMPT_FAILED
                                                   : FZ_TOPIC_NONE;
    fz_enc_t *e = fz_life_move(
        self, t, next,
        &(fz_move_t){.result = &r, .topic = topic, .reason = requeue ? r.outcome : NULL});
    if (t->state != next)
        return; /* not stored, so not acknowledged: the worker sends it again */
    fz_budget_settle(&self->budget, t->reserved, r.cost_usd);
    t->reserved = 0;
    fz_life_unrun(self, t);
    if (w->task == t)
        w->task = NULL;
    s_ack_result(self, from, id, n);

    fz_enc_str(e, "worker", w->name);
    fz_enc_str(e, "outcome", r.outcome);
    fz_enc_int(e, "exit_code", r.exit_code);
    fz_enc_float(e, "cost_usd", r.cost_usd);
    fz_enc_uint(e, "duration_ms", r.duration_ms);
    fz_enc_str(e, "summary", r.summary);

    if (next == FZ_STATE_RETRYING)
        fz_life_retry_later(self, t, fz_life_backoff_ms(self, t->attempt - t->attempt_base));
    else if (next == FZ_STATE_QUEUED) {
        /* Not the task's fault: the attempt stays on record but does not use a retry, and a
           worker that refused gets no dispatch for a while (it may be stopping or busy). */
        t->attempt_base++;
        fz_store_task_flags(self->store, t->id, t->attempt_base, false);
        if (fz_outcome_from_name(r.outcome) == FZ_OUTCOME_REJECTED)
            w->rest_until_ms = fz_clock_ms() + 3 * (int64_t)self->cfg.heartbeat_ms;
        fz_life_ready(self, t);
    } else
        fz_graph_final(self, t);
    fz_life_budget_moved(self);
}

void fz_workers_bye(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w)
{
    fz_workers_gone(self, w, "bye");
}
