/*  fz_sim: the simulated agent of dry-run workers.

    Owns: the arithmetic of a simulated run, pure (numbers in, numbers out): what it shows t ms
    after its start (cost, tokens and progress grow linearly), and when and how it ends (its
    own exit, the timeout, the cost passing the cap, or the stall limit once it went silent);
    and the driver behind fz_agent_simulate, which applies that arithmetic to an fz_agent_t
    by the clock alone. */

#ifndef FZ_SIM_H
#define FZ_SIM_H

#include "fz_agent.h"

#include <stdint.h>

/* A simulated run: what it would cost by its end, and the limits it runs under. */
typedef struct {
    int64_t duration_ms; /* 0 = ends at once */
    double cost_usd;
    uint64_t tokens_in, tokens_out;
    int64_t timeout_ms; /* 0 = none */
    double max_cost;    /* 0 = none */
    uint64_t tokens_cache_read, tokens_cache_write;
    int64_t silent_ms;     /* 0 = never; else from then on nothing grows: no sign of life */
    int64_t stall_kill_ms; /* 0 = none */
} fz_sim_plan_t;

/* What a run shows at one moment. */
typedef struct {
    double cost_usd;
    uint64_t tokens_in, tokens_out;
    int progress_pct;
    uint64_t tokens_cache_read, tokens_cache_write;
    int64_t alive_t; /* ms after the start of its last sign of life: t, or silent_ms */
} fz_sim_point_t;

/* The values t ms after the start: the plan's totals times t / duration (all of them from
   the duration on), frozen from silent_ms on. Pure. */
fz_sim_point_t fz_sim_at(const fz_sim_plan_t *plan, int64_t t);

/* When the run ends (ms after its start) and how, in *how: FZ_AGENT_EXITED at the duration,
   FZ_AGENT_TIMEOUT at the timeout, FZ_AGENT_COST_CAP at the first whole ms at which the
   linear cost is strictly above max_cost, or FZ_AGENT_STALLED stall_kill_ms after it went
   silent, whichever is first; ties go to the exit, then in that order. Pure. */
int64_t fz_sim_end_at(const fz_sim_plan_t *plan, fz_agent_outcome_t *how);

/* The driver, for fz_agent.c: brings a simulated agent to now (ending it if due); its due
   time (CLOCK_MONOTONIC ms); and a cancel at now (an end already due wins). */
void fz_sim_pump(fz_agent_t *self, int64_t now);
int64_t fz_sim_due_ms(fz_agent_t *self);
void fz_sim_cancel(fz_agent_t *self, int64_t now, const char *reason);

#endif
