/*  fz_sim: the simulated agent; see fz_sim.h. */

#include "fz_sim.h"
#include "fz_agent_int.h"
#include "fz_util.h"

#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the arithmetic (pure) */

fz_sim_point_t fz_sim_at(const fz_sim_plan_t *plan, int64_t t)
{
    if (plan->silent_ms > 0 && t > plan->silent_ms)
        t = plan->silent_ms;
    double frac = 1.0;
    if (plan->duration_ms > 0 && t < plan->duration_ms)
        frac = (double)t / (double)plan->duration_ms;
    fz_sim_point_t point;
    point.cost_usd = plan->cost_usd * frac;
    point.tokens_in = (uint64_t)((double)plan->tokens_in * frac);
    point.tokens_out = (uint64_t)((double)plan->tokens_out * frac);
    point.tokens_cache_read = (uint64_t)((double)plan->tokens_cache_read * frac);
    point.tokens_cache_write = (uint64_t)((double)plan->tokens_cache_write * frac);
    point.progress_pct = (int)(frac * 100);
    point.alive_t = t > 0 ? t : 0;
    return point;
}

int64_t fz_sim_end_at(const fz_sim_plan_t *plan, fz_agent_outcome_t *how)
{
    int64_t at = plan->duration_ms;
    *how = FZ_AGENT_EXITED;
    if (plan->timeout_ms > 0 && plan->timeout_ms < at) {
        at = plan->timeout_ms;
        *how = FZ_AGENT_TIMEOUT;
    }
    if (plan->max_cost > 0 && plan->cost_usd > plan->max_cost && plan->duration_ms > 0) {
        double crossing = (double)plan->duration_ms * plan->max_cost / plan->cost_usd;
        int64_t cap_at = (int64_t)crossing + 1;
        bool frozen_before = plan->silent_ms > 0 && cap_at > plan->silent_ms;
        if (cap_at < at && !frozen_before) {
            at = cap_at;
            *how = FZ_AGENT_COST_CAP;
        }
    }
    if (plan->silent_ms > 0 && plan->stall_kill_ms > 0 &&
        plan->silent_ms + plan->stall_kill_ms < at) {
        at = plan->silent_ms + plan->stall_kill_ms;
        *how = FZ_AGENT_STALLED;
    }
    return at;
}

/* ---------------------------------------------------------------- the driver */

/* Live values t ms after the start. */
static void s_update(fz_agent_t *self, int64_t t)
{
    fz_sim_point_t point = fz_sim_at(&self->sim, t);
    self->status.elapsed_ms = t;
    self->status.cost_usd = point.cost_usd;
    self->status.tokens_in = point.tokens_in;
    self->status.tokens_out = point.tokens_out;
    self->status.tokens_cache_read = point.tokens_cache_read;
    self->status.tokens_cache_write = point.tokens_cache_write;
    self->status.progress_pct = point.progress_pct;
    self->status.alive_ms = self->status.started_ms + point.alive_t;
}

static void s_end(fz_agent_t *self, fz_agent_outcome_t what, int64_t at, const char *reason)
{
    fz_agent_status_t *st = &self->status;
    s_update(self, at);
    st->outcome = what;
    st->duration_ms = at;
    if (what == FZ_AGENT_EXITED) {
        st->exit_code = self->sim_exit_code;
        st->signal = 0;
        st->tokens_in = self->sim.tokens_in;
        st->tokens_out = self->sim.tokens_out;
        st->tokens_cache_read = self->sim.tokens_cache_read;
        st->tokens_cache_write = self->sim.tokens_cache_write;
        st->cost_usd = self->sim.cost_usd;
        st->progress_pct = 100;
        st->alive_ms = st->started_ms + at; /* its exit and last report */
        if (self->sim_summary)
            fz_strcopy(st->summary, sizeof st->summary, self->sim_summary);
        if (st->exit_code != 0) {
            st->cls = self->sim_cls;
            st->reset_at = self->sim_reset_at;
            st->retry_after = self->sim_retry_after;
        }
    } else {
        st->exit_code = -1;
        st->signal = SIGTERM; /* as a real agent that obeyed the SIGTERM */
        fz_strcopy(st->reason, sizeof st->reason, reason);
    }
    fz_agent_end(self);
}

/* ms since the start; the clock never goes back. */
static int64_t s_t(fz_agent_t *self, int64_t now)
{
    if (now > self->sim_last_ms)
        self->sim_last_ms = now;
    int64_t t = self->sim_last_ms - self->status.started_ms;
    return t > 0 ? t : 0;
}

void fz_sim_pump(fz_agent_t *self, int64_t now)
{
    int64_t t = s_t(self, now);
    fz_agent_outcome_t what;
    int64_t at = fz_sim_end_at(&self->sim, &what);
    if (t < at)
        s_update(self, t);
    else
        s_end(self, what, at, fz_agent_outcome_name(what));
}

int64_t fz_sim_due_ms(fz_agent_t *self)
{
    fz_agent_outcome_t what;
    return self->status.started_ms + fz_sim_end_at(&self->sim, &what);
}

void fz_sim_cancel(fz_agent_t *self, int64_t now, const char *reason)
{
    fz_sim_pump(self, now); /* an end already due wins */
    if (self->state == FZ_AGENT_S_RUNNING)
        s_end(self, FZ_AGENT_CANCELLED, s_t(self, now), reason);
}

fz_agent_t *fz_agent_simulate(const fz_agent_sim_t *sim, const fz_agent_opts_t *opts, char *err,
                              size_t errlen)
{
    static const fz_agent_opts_t defaults;
    if (!opts)
        opts = &defaults;
    if (!sim) {
        fz_errf(err, errlen, "no simulation given");
        return NULL;
    }
    if (fz_agent_check_opts(opts, true, err, errlen) < 0 ||
        fz_agent_check_number(sim->duration_s, "duration", err, errlen) < 0 ||
        fz_agent_check_number(sim->cost_usd, "cost", err, errlen) < 0 ||
        fz_agent_check_number(sim->silent_after_s, "silent after", err, errlen) < 0 ||
        fz_agent_check_number(sim->reset_at, "reset at", err, errlen) < 0 ||
        fz_agent_check_number(sim->retry_after, "retry after", err, errlen) < 0)
        return NULL;
    fz_agent_t *self = fz_agent_new(opts, true, err, errlen);
    if (!self)
        return NULL;
    self->sim = (fz_sim_plan_t){.duration_ms = fz_agent_ms(sim->duration_s),
                                .cost_usd = sim->cost_usd,
                                .tokens_in = sim->tokens_in,
                                .tokens_out = sim->tokens_out,
                                .timeout_ms = self->timeout_ms,
                                .max_cost = self->max_cost,
                                .tokens_cache_read = sim->tokens_cache_read,
                                .tokens_cache_write = sim->tokens_cache_write,
                                .silent_ms = fz_agent_ms(sim->silent_after_s),
                                .stall_kill_ms = self->stall_kill_ms};
    self->sim_exit_code = sim->exit_code;
    self->sim_cls = (unsigned)sim->cls < FZ_CLASS_COUNT ? sim->cls : FZ_CLASS_NONE;
    self->sim_reset_at = sim->reset_at;
    self->sim_retry_after = sim->retry_after;
    self->sim_last_ms = self->status.started_ms;
    if (sim->model)
        fz_strcopy(self->status.model, sizeof self->status.model, sim->model);
    if (sim->summary && !(self->sim_summary = strdup(sim->summary))) {
        fz_errf(err, errlen, "out of memory");
        fz_agent_destroy(&self);
        return NULL;
    }
    if (fz_agent_open_log(self, opts->log_path, err, errlen) < 0) {
        fz_agent_destroy(&self);
        return NULL;
    }
    if (sim->output)
        fz_agent_output(self, sim->output, strlen(sim->output));
    s_update(self, 0);
    return self;
}
