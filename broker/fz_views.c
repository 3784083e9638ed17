/*  fz_views: the read-only client requests (get, list, status, workers, budget, cost, events,
    ping); see fz_broker_int.h. */

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
    fz_err_t err = fz_store_encode_task(self->store, id, r, "task", s_decorate, self);
    if (!err)
        err = fz_store_encode_attempts(self->store, id, r, "attempts");
    if (!err)
        fz_store_encode_children(self->store, id, r, "children");
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
    fz_err_t err = fz_store_encode_list(self->store, state, fz_msg_uint(msg, "limit", 1000),
                                        fz_msg_bool(msg, "tail", false), r, s_decorate, self);
    if (err) {
        fz_enc_destroy(&r);
        fz_outbox_error(self, from, fz_msg_rid(msg), err, FZ_REASON_NONE, "cannot list tasks");
        return;
    }
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

void fz_views_status(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    fz_enc_t *r = fz_enc_reply("status", fz_msg_rid(msg));
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
    fz_err_t err = fz_store_encode_cost(self->store, by, label, since, r);
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
    fz_history_encode(self->history, fz_msg_uint(msg, "since", 0), r, "events", 3u << 20);
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
