/*  fz_bg: blocking work run off a ZeroMQ loop, on one thread of its own, one job at a time
    in the order given.

    What it is for: the worker's git (clone, fetch, worktree add, commit, push) can take
    minutes, and the broker's fdatasync of its WAL (fz_sync.h) can stall for seconds on a
    busy disk; the loop must keep its heartbeats going meanwhile (the broker declares a
    worker dead after three silent intervals, and a worker its broker). A job is a function run on
   the thread with a stop flag it must watch (fz_run and fz_workspace take it), and a done function
   run later on the loop's thread, from fz_bg_collect(), which the loop calls when fz_bg_fd() is
    readable. So everything but the job function itself stays single-threaded.

    Hold: while held (holds are counted: one per holder), no job starts (a running one goes
    on). The worker holds it while an
    agent process lives, because fz_agent's end-of-agent sweep kills and reaps every child
    of the process, which would take a job's git with it; and it starts an agent only when
    nothing is queued or running (fz_bg_idle), so the two never overlap.

    Signals: the thread blocks them all, so the process's signals reach the loop's thread.

    Ownership: the runner owns its thread, its pipe and its job records; a job's arg belongs
    to the caller, who gets it back in done (exactly once per job: after it ran, or with
    ran = false for a job dropped by fz_bg_destroy before it started). */

#ifndef FZ_BG_H
#define FZ_BG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fz_bg_t fz_bg_t;

/* Runs on the runner's thread. stop turns true when the job is to end early. */
typedef void(fz_bg_fn)(void *arg, const atomic_bool *stop);
/* Runs on the caller's thread (fz_bg_collect, fz_bg_destroy). ran is false for a job that
   was dropped before it started. */
typedef void(fz_bg_done_fn)(void *arg, bool ran);

/* A runner with its thread started. NULL if the thread or pipe cannot be made. */
fz_bg_t *fz_bg_new(void);

/* Stops the running job (its stop flag), waits for it, drops the queued ones, calling done
   for each, joins the thread and frees everything. Blocks as long as the running job takes
   to stop. Nulls *self_p; accepts NULL. */
void fz_bg_destroy(fz_bg_t **self_p);

/* Queues a job; returns its id (> 0), or 0 when out of memory (then nothing is called). */
uint64_t fz_bg_add(fz_bg_t *self, fz_bg_fn *fn, fz_bg_done_fn *done, void *arg);

/* Sets the stop flag of job id, queued or running; a queued one still runs, and sees it set
   at once. Unknown or finished ids are ignored. */
void fz_bg_stop(fz_bg_t *self, uint64_t id);

/* hold true adds a hold, false takes one away; while any is left no job starts. */
void fz_bg_hold(fz_bg_t *self, bool hold);

/* True when no job is queued, running or waiting for collect. */
bool fz_bg_idle(fz_bg_t *self);

/* Readable when finished jobs wait for collect: give it to poll (POLLIN). */
int fz_bg_fd(fz_bg_t *self);

/* Calls done for every finished job, in order; returns how many. Never blocks. */
size_t fz_bg_collect(fz_bg_t *self);

#endif
