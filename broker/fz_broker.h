/*  fz_broker: the broker — one single-threaded event loop that owns all state.

    It binds a ROUTER (clients and workers) and a PUB (events), keeps the live tasks in
    memory (the task table owns them), the workers (the worker table owns them), the
    scheduler's queues (which only point), the budget ledger and the store. Each loop turn
    reads what arrived, lets the scheduler dispatch, commits the turn's writes in one
    transaction, and only then sends the turn's replies, dispatches and events.

    No globals: a test can run two brokers in one process. */

#ifndef FZ_BROKER_H
#define FZ_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FZ_MAX_MODEL_CAPS 32

typedef struct {
    const char *bind;         /* ROUTER endpoint */
    const char *events;       /* PUB endpoint */
    const char *db;           /* SQLite path */
    uint32_t max_running;     /* global limit of running agents */
    double daily_budget;      /* USD per UTC day (used until `budget --set` stores one) */
    double default_task_cost; /* reservation of a task without --max-cost */
    uint32_t default_timeout; /* seconds; 0 = none */
    uint32_t kill_grace;      /* seconds between SIGTERM and SIGKILL */
    uint32_t heartbeat_ms;
    uint32_t default_retries;
    uint32_t backoff_min_ms, backoff_max_ms;
    const char *models; /* whitelist, comma-separated; NULL = any */
    struct {
        char name[65];
        uint32_t cap;
    } model_caps[FZ_MAX_MODEL_CAPS];
    int nmodel_caps;
    bool sync_full;          /* synchronous=FULL (default) or NORMAL */
    uint32_t max_depth;      /* subtask tree depth limit (a root is depth 1) */
    uint32_t max_children;   /* subtasks per task */
    double aging_s;          /* +1 effective priority per this many seconds queued; 0 off */
    double deadline_horizon; /* seconds before a deadline its boost starts */
    uint32_t stall_s;        /* default: no sign of life this long announces task.stalled */
    uint32_t stall_kill_s;   /* default: ... and this long stops the attempt (0 = never) */
    uint32_t key_ttl_s;      /* a submit's idempotency key is remembered this long */
    bool integrity_check;    /* check the store with integrity_check, not quick_check */

    /* CURVE (fz_auth): the broker's secret key file and the folder of peers' public keys
       (clients/, workers/, admins/); both NULL: no keys, every peer trusted. */
    const char *curve_secret;
    const char *keys_dir;
} fz_broker_config_t;

/* Fills a config with the documented defaults. */
void fz_broker_config_defaults(fz_broker_config_t *cfg);

typedef struct fz_broker_t fz_broker_t;

/* Opens the store, reloads unfinished tasks, binds the sockets. NULL on failure (err says
   why: bad endpoint, address in use, unreadable database). */
fz_broker_t *fz_broker_new(const fz_broker_config_t *cfg, char *err, size_t errlen);
void fz_broker_destroy(fz_broker_t **self_p);

/* One turn of the loop: waits for a message up to timeout_ms (less when a timer is due),
   then reads, runs timers, dispatches, commits and sends. For tests and embedders that run
   their own loop. 0, or -1 if polling failed. */
int fz_broker_step(fz_broker_t *self, int timeout_ms);

/* Runs the loop until SIGINT/SIGTERM (fz_net_interrupted). Returns 0 on a clean stop. */
int fz_broker_run(fz_broker_t *self);

#endif
