/*  fz_vocab: the names that cross the wire, as enums with name tables.

    Task states, attempt outcomes, event topics and error reasons are spelled here once; every
    binary converts between the enum and its protocol name through this module, so no handler
    compares protocol strings and no peer parses a human message. PROTOCOL.md lists the same
    names; tests/unit/vocab_test.c checks that it does, and the Python client's names are
    checked against PROTOCOL.md too. The tables are static and read-only. */

#ifndef FZ_VOCAB_H
#define FZ_VOCAB_H

#include <stdbool.h>

/* ---------------------------------------------------------------- task states */

typedef enum {
    FZ_STATE_QUEUED,
    FZ_STATE_WAITING,
    FZ_STATE_HELD,
    FZ_STATE_RUNNING,
    FZ_STATE_RETRYING,
    FZ_STATE_SUCCEEDED,
    FZ_STATE_FAILED,
    FZ_STATE_CANCELLED,
    FZ_STATE_DEP_FAILED,
    FZ_STATE_COUNT
} fz_state_t;

/* Protocol name of a state ("queued", "dep-failed", ...); "unknown" out of range. */
const char *fz_state_name(fz_state_t state);
/* State from its name; -1 if unknown (or NULL). */
int fz_state_from_name(const char *name);
/* True for succeeded, failed, cancelled and dep-failed. */
bool fz_state_final(fz_state_t state);

/* ---------------------------------------------------------------- attempt outcomes */

/* How an attempt ended, as a result or the broker records it. */
typedef enum {
    FZ_OUTCOME_EXITED,       /* the agent exited by itself (exit_code says how) */
    FZ_OUTCOME_SIGNALED,     /* killed by a signal nobody in fz sent */
    FZ_OUTCOME_TIMEOUT,      /* stopped at its wall-clock limit */
    FZ_OUTCOME_COST_CAP,     /* stopped at its cost cap */
    FZ_OUTCOME_CANCELLED,    /* stopped by a cancel */
    FZ_OUTCOME_SPAWN_FAILED, /* the agent could not be started */
    FZ_OUTCOME_REJECTED,     /* the worker did not take the dispatch (busy, stopping) */
    FZ_OUTCOME_INTERRUPTED,  /* the worker was stopped under it: not the task's fault */
    FZ_OUTCOME_LOST,         /* broker only: the worker went away without a result */
    FZ_OUTCOME_STALLED,      /* stopped after showing no sign of life for its stall limit */
    FZ_OUTCOME_COUNT
} fz_outcome_t;

const char *fz_outcome_name(fz_outcome_t outcome);
/* Outcome from its name; -1 if unknown. */
int fz_outcome_from_name(const char *name);

/* ---------------------------------------------------------------- failure classes */

/* Why an attempt failed, decided by the worker from the agent's own report first and its
   outcome and exit status last (fz_class_decide); the broker has a policy for each. */
typedef enum {
    FZ_CLASS_NONE,              /* it did not fail */
    FZ_CLASS_RATE_LIMIT,        /* the provider said "slow down" (429): wait, then again */
    FZ_CLASS_QUOTA,             /* a usage quota ran out; it resets at reset_at */
    FZ_CLASS_AUTH,              /* the key or login was refused: fix the worker's setup */
    FZ_CLASS_MODEL_UNAVAILABLE, /* the model does not exist or is not served */
    FZ_CLASS_CONTEXT_TOO_LONG,  /* the prompt does not fit the model */
    FZ_CLASS_PERMISSION_DENIED, /* the agent was not allowed to do what the task needs */
    FZ_CLASS_TIMEOUT,           /* past the task's --timeout */
    FZ_CLASS_STALLED,           /* no sign of life for the stall limit */
    FZ_CLASS_COST_CAP,          /* past the task's --max-cost */
    FZ_CLASS_TASK_FAILED,       /* the agent ran and said it failed (non-zero exit) */
    FZ_CLASS_CRASHED,           /* the agent died of a signal nobody in fz sent */
    FZ_CLASS_AGENT_MISSING,     /* the agent command is not installed or not runnable */
    FZ_CLASS_CHECK_FAILED,      /* the task's check command failed on the result */
    FZ_CLASS_MERGE_CONFLICT,    /* the dependencies' branches do not merge */
    FZ_CLASS_WORKSPACE,         /* the repository, a base, the disk or git failed */
    FZ_CLASS_COUNT
} fz_class_t;

/* "rate-limit", ...; "" for FZ_CLASS_NONE and out of range. */
const char *fz_class_name(fz_class_t cls);
/* Class from its name; FZ_CLASS_NONE if unknown or NULL. */
fz_class_t fz_class_from_name(const char *name);

/* ---------------------------------------------------------------- event topics */

typedef enum {
    FZ_TOPIC_NONE, /* no event (name "") */
    FZ_TOPIC_TASK_SUBMITTED,
    FZ_TOPIC_TASK_QUEUED,
    FZ_TOPIC_TASK_HELD,
    FZ_TOPIC_TASK_DISPATCHED,
    FZ_TOPIC_TASK_STARTED,
    FZ_TOPIC_TASK_PROGRESS,
    FZ_TOPIC_TASK_OUTPUT,
    FZ_TOPIC_TASK_SUCCEEDED,
    FZ_TOPIC_TASK_FAILED,
    FZ_TOPIC_TASK_CANCELLED,
    FZ_TOPIC_TASK_DEP_FAILED,
    FZ_TOPIC_TASK_ATTEMPT_FAILED,
    FZ_TOPIC_TASK_RETRYING,
    FZ_TOPIC_TASK_REQUEUED,
    FZ_TOPIC_TASK_PRIORITY,
    FZ_TOPIC_TASK_STALLED,
    FZ_TOPIC_WORKER_JOINED,
    FZ_TOPIC_WORKER_LEFT,
    FZ_TOPIC_WORKER_UNHEALTHY,
    FZ_TOPIC_BROKER_STARTED,
    FZ_TOPIC_BROKER_PAUSED,
    FZ_TOPIC_BROKER_RESUMED,
    FZ_TOPIC_BROKER_BUDGET,
    FZ_TOPIC_BROKER_STOPPING,
    FZ_TOPIC_COUNT
} fz_topic_t;

/* "task.queued", ...; "unknown" out of range. */
const char *fz_topic_name(fz_topic_t topic);
int fz_topic_from_name(const char *name);
/* The topic a task announces when it enters this state: task.queued, task.held,
   task.dispatched (running), task.retrying, task.succeeded, ...; FZ_TOPIC_NONE for waiting
   (a task waits from its submission on, or again after a retry, announced as such). */
fz_topic_t fz_topic_of_state(fz_state_t state);

/* ---------------------------------------------------------------- error reasons */

/* The machine-readable why of an `error` reply (its `reason` field), finer than its code.
   Peers decide on the reason; `message` is for people. */
typedef enum {
    FZ_REASON_NONE,               /* no finer reason than the code */
    FZ_REASON_MALFORMED,          /* the frame is not a valid message */
    FZ_REASON_UNKNOWN_TYPE,       /* no such message type (or not a request) */
    FZ_REASON_BAD_FIELD,          /* a field's type, size or range is wrong */
    FZ_REASON_NO_SUCH_TASK,       /* the task id names nothing */
    FZ_REASON_NO_SUCH_DEPENDENCY, /* after/after_any names a task that does not exist */
    FZ_REASON_NO_SUCH_PARENT,     /* parent names a task that does not exist */
    FZ_REASON_BAD_DEPENDENCY,     /* a batch task depends on one that does not come before it */
    FZ_REASON_MODEL_NOT_ALLOWED,  /* the model (or a fallback) is outside the whitelist */
    FZ_REASON_TOO_DEEP,           /* a subtask would pass --max-depth */
    FZ_REASON_TOO_MANY_CHILDREN,  /* a subtask would pass --max-children */
    FZ_REASON_NOT_ENDED,          /* retry of a task that has not ended */
    FZ_REASON_ENDED,              /* the task has ended (cancel, escalate) */
    FZ_REASON_ALREADY_SUCCEEDED,  /* retry of a succeeded task */
    FZ_REASON_DEPENDENCY_FAILED,  /* retry of a task whose dependency failed */
    FZ_REASON_NAME_TAKEN,         /* hello: another live worker process has the name */
    FZ_REASON_UNKNOWN_PEER,       /* a worker message from a connection that said no hello */
    FZ_REASON_STORE_FAILED,       /* the broker could not store the change: try again */
    FZ_REASON_FORBIDDEN,          /* the sender's key (its role) may not send this (CURVE on) */
    FZ_REASON_COUNT
} fz_reason_t;

const char *fz_reason_name(fz_reason_t reason);
/* Reason from its name; FZ_REASON_NONE if unknown or NULL (a newer broker's reason reads as
   "no finer reason": decide on the code). */
fz_reason_t fz_reason_from_name(const char *name);

#endif
