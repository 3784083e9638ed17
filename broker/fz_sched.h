/*  fz_sched: which ready task runs next, and where.

    Ready tasks wait in one priority queue per model ("" = any model), so a worker finds the
    best task it can serve by looking at the tops of the queues of its models: O(models),
    not O(tasks). Tasks whose reservation does not fit the budget wait in a held queue and are
    released, as many as fit, when the budget moves. The global and per-model running limits
    are enforced here: a model at its cap is skipped (its tasks stay queued).

    The scheduler points at tasks and workers; the broker owns both. It changes no task state
    (only which of its queues a task is in, and a held task's reason): the broker moves the
    state (fz_life_move) when the scheduler says what it did. */

#ifndef FZ_SCHED_H
#define FZ_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "fz_budget.h"
#include "fz_queue.h"
#include "fz_task.h"

#define FZ_MAX_WORKER_MODELS 16
/* A routing id (1..255 bytes) in hex, NUL included. */
#define FZ_RID_KEY (2 * 255 + 1)

/* A connected worker. Owned by the broker's worker table. Its connection is only data here
   (the routing id's bytes): sockets and frames are the broker's business. */
typedef struct fz_worker_t {
    uint8_t rid[255]; /* the ROUTER's routing id of its connection (ZeroMQ allows 1..255 B) */
    size_t rid_len;
    char key[FZ_RID_KEY]; /* routing id in hex: the table key (whole: no two ids share one) */
    char name[65];
    char nonce[65];
    /* Its CURVE key's user id ("worker:w1"), "" with CURVE off: with keys on, a name belongs
       to the key that registered it, and the guard's record follows the key, not the name. */
    char user[80];
    char models[FZ_MAX_WORKER_MODELS][65];
    size_t nmodels;
    bool any_model;   /* announced no models: serves every task */
    fz_task_t *task;  /* running task or NULL (the task table owns it) */
    uint32_t attempt; /* the attempt of task it runs (a best-of task runs several at once) */
    /* --prefetch: the worker takes one more dispatch while it runs task and starts it as
       soon as task ends, without waiting for the broker's round trip and commit. next is
       that attempt (RUNNING in the store and the counts from its dispatch), or NULL. */
    bool prefetch;
    fz_task_t *next;
    uint32_t next_attempt;
    /* An attempt it still runs of a task that ended meanwhile (a best-of round was won by
       another attempt, which cancelled this one): busy until its result comes, which is then
       recorded for that attempt. 0 = none. */
    uint64_t left_task;
    uint32_t left_attempt;
    double left_cap; /* what it had reserved: a suspect cost is held to it */
    int64_t last_seen_ms;
    int64_t idle_since_ms; /* when it last became idle: the longest idle goes first */
    int64_t rest_until_ms; /* no dispatch before (it refused one) */
    bool draining;         /* finishing its task, then leaving: no dispatch */
    double since;
    /* Unhealthy (an attempt failed with class auth for a model, or agent-missing for all):
       no tasks for those models until the worker says hello again. */
    char unhealthy[FZ_MAX_WORKER_MODELS][65];
    size_t nunhealthy;
    bool unhealthy_all;
} fz_worker_t;

/* True if the worker may run tasks of model. Model "" (any) runs on a worker that announced
   no models or has at least one allowed model; a worker whose models were all refused by
   the whitelist runs nothing. */
bool fz_worker_serves(const fz_worker_t *w, const char *model);
/* The model an attempt of a task for `model` runs on this worker: the task's own, or for a
   task of any model the worker's first healthy allowed model ("" if it announced none). */
const char *fz_worker_model_for(const fz_worker_t *w, const char *model);
/* Its attempt ended: what it held ahead (--prefetch) is the one it runs now, or nothing. */
void fz_worker_take_next(fz_worker_t *w);
/* Marks the worker unhealthy for model ("" = for every model). */
void fz_worker_set_unhealthy(fz_worker_t *w, const char *model);

typedef struct fz_sched_t fz_sched_t;

fz_sched_t *fz_sched_new(uint32_t max_running);
void fz_sched_destroy(fz_sched_t **self_p);

/* Limits of concurrent attempts of one model (0 = only the global limit). */
int fz_sched_set_cap(fz_sched_t *self, const char *model, uint32_t cap);
uint32_t fz_sched_max_running(const fz_sched_t *self);

/* Puts a task in the ready queue of its model. */
int fz_sched_enqueue(fz_sched_t *self, fz_task_t *task);
/* Puts a task in the held queue; reason is copied into the task. */
int fz_sched_hold(fz_sched_t *self, fz_task_t *task, const char *reason);
/* Takes a task out of whichever queue holds it (no-op if none). */
void fz_sched_remove(fz_sched_t *self, fz_task_t *task);
/* Restores order after a task's priority changed. */
void fz_sched_reorder(fz_sched_t *self, fz_task_t *task);

/* Called for each task the scheduler holds while picking (budget, model-cap). */
typedef void(fz_sched_held_fn)(void *arg, fz_task_t *task);

/* The best ready task this idle worker can run now, taken out of its queue; NULL if none
   (or the global limit is reached). Tasks whose reservation does not fit the budget are
   moved to held ("budget") on the way, each reported to held_fn (a few per call). */
fz_task_t *fz_sched_pick(fz_sched_t *self, const fz_worker_t *worker, const fz_budget_t *budget,
                         double default_cost, fz_sched_held_fn *held_fn, void *arg);

/* Rate limit: no task of `model` starts before until_ms (monotonic; a later block wins). */
int fz_sched_block(fz_sched_t *self, const char *model, int64_t until_ms);
/* Until when model is blocked (0 = never was). */
int64_t fz_sched_blocked_until(const fz_sched_t *self, const char *model);

/* Counts a task as running / no longer running (global and per model). */
void fz_sched_started(fz_sched_t *self, const fz_task_t *task);
void fz_sched_ended(fz_sched_t *self, const fz_task_t *task);
uint32_t fz_sched_running(const fz_sched_t *self);

/* Moves budget-held tasks back to ready, best first, while the best one fits in what is left
   of the budget. O(1) when none fits. Returns how many moved. */
size_t fz_sched_release_budget(fz_sched_t *self, const fz_budget_t *budget, double default_cost,
                               fz_sched_held_fn *fn, void *arg);

/* Which of the scheduler's queues holds a task. */
typedef enum { FZ_SCHED_NOWHERE, FZ_SCHED_READY, FZ_SCHED_HELD } fz_sched_where_t;
fz_sched_where_t fz_sched_where(const fz_sched_t *self, const fz_task_t *task);

/* Tasks in ready queues / held. */
size_t fz_sched_ready(const fz_sched_t *self);
size_t fz_sched_held(const fz_sched_t *self);

/* What one attempt of task reserves and is held to: its --max-cost, or default_cost. */
double fz_sched_attempt_cap(const fz_task_t *task, double default_cost);
/* The reservation a task makes when dispatched: one attempt's cap, or a best-of-N round's
   N caps, reserved up front. */
double fz_sched_reservation(const fz_task_t *task, double default_cost);

#endif
