/*  fz_task: the broker's in-memory record of one live task (not yet finished).

    Only what scheduling needs lives here; the prompt, labels and history stay in the store
    and are read when needed. The broker's task table (fz_broker) owns every fz_task_t; the
    queues and workers only point at them. A task leaves memory when it finishes. */

#ifndef FZ_TASK_H
#define FZ_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_rules.h"
#include "fz_vocab.h"

struct fz_worker_t;
struct fz_race_t;

typedef struct fz_task_t {
    uint64_t id;
    fz_state_t state;
    int64_t priority;
    char model[65];        /* model of the next (or current) attempt; "" = any */
    uint32_t attempt;      /* attempts started so far; the current one when running */
    uint32_t retries;      /* further attempts allowed after a failure */
    uint32_t attempt_base; /* attempts made before the last manual retry */
    uint32_t timeout_s;
    double max_cost;                /* cap of one attempt; also its budget reservation */
    double reserved;                /* reservation held while running */
    char hold_reason[16];           /* why HELD: "budget" (the scheduler's), "quota" */
    int64_t not_before_ms;          /* RETRYING: monotonic time of the next attempt */
    int64_t orphan_deadline_ms;     /* RUNNING without a worker (broker restarted): requeue after */
    double not_before;              /* HELD for a quota: wall time the wait ends (0 = none) */
    uint32_t stall_s, stall_kill_s; /* no sign of life this long: stalled, stopped (0 = off) */
    bool stalled;                   /* task.stalled was announced for the current attempt */
    double stalled_since;           /* wall time of its last sign of life while stalled, or 0 */
    fz_bucket_t output;             /* task.output events of this attempt, rate-limited */
    uint64_t output_dropped;        /* output bytes of this attempt over the limit */
    uint32_t quota_waits;           /* rate-limit waits so far: the wait without a reset grows */
    uint32_t lost_exempt;           /* lost attempts let off (fz_guard_lost) in this broker run */
    bool cancel_requested;          /* a cancel was sent to the worker; the result decides */
    uint32_t deps_pending;          /* WAITING: dependencies not yet ended */
    uint64_t parent;                /* 0 = a root task */
    double queued_at;               /* wall time it became ready: the start of its aging */
    double deadline;                /* unix time, 0 = none */
    int64_t inherited;              /* priority inherited from waiting dependents (a floor);
                                       INT64_MIN = none */
    double rank;                    /* the queue's order key: effective priority minus the aging
                                       every ready task shares (see fz_sched) */
    size_t heap_index;              /* position in its queue, kept by fz_queue */
    void *queue;                    /* the fz_queue_t holding it, or NULL; kept by fz_queue */
    struct fz_worker_t *worker;     /* the worker running it, or NULL */
    uint32_t best_of;               /* attempts one round races (0, 1: one; fz_race) */
    bool bare;                      /* known at its submit: no labels, no repo, no check, so
                                       a dispatch reads only its prompt (false: look) */
    struct fz_race_t *race;         /* a best-of task's round: its other attempts, or NULL */
} fz_task_t;

/* Frees a task and what it owns (its race). */
void fz_task_free(fz_task_t *task);

#endif
