/*  fz_slot: one worker slot — the fz-worker process's connection to the broker and the one
    agent it runs at a time.

    It says hello (name, models, labels, and the task it runs after a reconnect), keeps
    heartbeats flowing both ways (a running attempt's say how long its agent has been idle),
    starts an agent (fz_agent) for each dispatch with the dispatch's limits (timeout, cost
    cap, stall kill), holds one more dispatch with --prefetch until the running one ends, streams
   its progress and output, and sends the result, with its failure class (fz_classify), until the
   broker acknowledges it. When the broker goes silent it reconnects with backoff and the agent
   keeps running.

    The slot owns its socket, its agent and its unacknowledged results. Strings in the config
    are borrowed and must outlive the slot. */

#ifndef FZ_SLOT_H
#define FZ_SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *broker; /* ROUTER endpoint */
    const char *events; /* passed to agents as FZ_EVENTS */
    const char *agent;  /* command template: {model} {task} {attempt} {workdir} expand */
    const char *models; /* comma-separated; NULL or "" = any */
    const char *labels; /* comma-separated k=v; may be NULL */
    const char *name;
    const char *workroot;  /* per-task folders go under it */
    const char *cache_dir; /* repositories' caches and worktrees (fz_workspace) */
    bool dry_run;          /* simulate agents, no process */
    double dry_duration;   /* defaults of simulated agents (labels dry.* override) */
    double dry_cost;
    int dry_exit;
    uint32_t heartbeat_ms; /* until the broker's welcome says otherwise */
    /* NULL-terminated names (PREFIX*) agents get besides the basics (fz_agent_env_passes);
       may be NULL. --once: take one task, wait for its result's ack, leave. --idle-exit:
       leave after idle_exit_s seconds without a task (0 never). */
    const char *const *pass_env;
    /* --agent-key: a client secret key file (absolute) and the broker's public key file
       that every agent gets as FZ_CURVE_SECRET and FZ_BROKER_KEY, so that with CURVE on
       it can submit subtasks under a client key of its own; NULL: agents get no keys. */
    const char *agent_key, *agent_broker_key;
    bool once;
    uint32_t idle_exit_s;
    /* --prefetch: take one more dispatch while an agent runs, and start it the moment that
       agent's attempt ends (short commands: the next one does not wait for the broker). */
    bool prefetch;
} fz_slot_config_t;

typedef struct fz_slot_t fz_slot_t;

/* Creates the slot and connects (connecting never fails on an absent broker: it retries).
   NULL with err on a bad config or socket failure. */
fz_slot_t *fz_slot_new(const fz_slot_config_t *cfg, char *err, size_t errlen);
/* Stops any agent (SIGTERM, grace, SIGKILL), frees everything. */
void fz_slot_destroy(fz_slot_t **self_p);

/* Runs until SIGINT/SIGTERM. On the first signal the running agent is stopped, its result
   (outcome "interrupted": the broker requeues the task) is sent, and the slot says bye; a
   second signal leaves at once. Returns 0. */
int fz_slot_run(fz_slot_t *self);

#endif
