/*  fz_vocab: name tables; see fz_vocab.h. */

#include "fz_vocab.h"

#include <string.h>

static const char *const s_states[] = {"queued",    "waiting", "held",      "running",   "retrying",
                                       "succeeded", "failed",  "cancelled", "dep-failed"};
_Static_assert(sizeof s_states / sizeof *s_states == FZ_STATE_COUNT, "one name per value");

static const char *const s_outcomes[] = {"exited",    "signaled",     "timeout",  "cost-cap",
                                         "cancelled", "spawn-failed", "rejected", "interrupted",
                                         "lost",      "stalled"};
_Static_assert(sizeof s_outcomes / sizeof *s_outcomes == FZ_OUTCOME_COUNT, "one name per value");

static const char *const s_topics[] = {"",
                                       "task.submitted",
                                       "task.queued",
                                       "task.held",
                                       "task.dispatched",
                                       "task.started",
                                       "task.progress",
                                       "task.output",
                                       "task.succeeded",
                                       "task.failed",
                                       "task.cancelled",
                                       "task.dep-failed",
                                       "task.attempt-failed",
                                       "task.retrying",
                                       "task.requeued",
                                       "task.priority",
                                       "task.stalled",
                                       "worker.joined",
                                       "worker.left",
                                       "worker.unhealthy",
                                       "broker.started",
                                       "broker.paused",
                                       "broker.resumed",
                                       "broker.budget",
                                       "broker.stopping"};
_Static_assert(sizeof s_topics / sizeof *s_topics == FZ_TOPIC_COUNT, "one name per value");

static const char *const s_reasons[] = {"",
                                        "malformed",
                                        "unknown-type",
                                        "bad-field",
                                        "no-such-task",
                                        "no-such-dependency",
                                        "no-such-parent",
                                        "bad-dependency",
                                        "model-not-allowed",
                                        "too-deep",
                                        "too-many-children",
                                        "not-ended",
                                        "ended",
                                        "already-succeeded",
                                        "dependency-failed",
                                        "name-taken",
                                        "unknown-peer",
                                        "store-failed",
                                        "forbidden"};
_Static_assert(sizeof s_reasons / sizeof *s_reasons == FZ_REASON_COUNT, "one name per value");

static const char *const s_classes[] = {"",
                                        "rate-limit",
                                        "quota",
                                        "auth",
                                        "model-unavailable",
                                        "context-too-long",
                                        "permission-denied",
                                        "timeout",
                                        "stalled",
                                        "cost-cap",
                                        "task-failed",
                                        "crashed",
                                        "agent-missing",
                                        "check-failed",
                                        "merge-conflict",
                                        "workspace"};
_Static_assert(sizeof s_classes / sizeof *s_classes == FZ_CLASS_COUNT, "one name per value");

/* Index of name in a table of n names; -1 if absent. */
static int s_find(const char *const *table, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(table[i], name) == 0)
            return i;
    return -1;
}

const char *fz_state_name(fz_state_t state)
{
    return (unsigned)state < FZ_STATE_COUNT ? s_states[state] : "unknown";
}

int fz_state_from_name(const char *name)
{
    return s_find(s_states, FZ_STATE_COUNT, name);
}

bool fz_state_final(fz_state_t state)
{
    return state >= FZ_STATE_SUCCEEDED && state < FZ_STATE_COUNT;
}

const char *fz_outcome_name(fz_outcome_t outcome)
{
    return (unsigned)outcome < FZ_OUTCOME_COUNT ? s_outcomes[outcome] : "unknown";
}

int fz_outcome_from_name(const char *name)
{
    return s_find(s_outcomes, FZ_OUTCOME_COUNT, name);
}

const char *fz_topic_name(fz_topic_t topic)
{
    return (unsigned)topic < FZ_TOPIC_COUNT ? s_topics[topic] : "unknown";
}

int fz_topic_from_name(const char *name)
{
    return name && *name ? s_find(s_topics, FZ_TOPIC_COUNT, name) : -1;
}

fz_topic_t fz_topic_of_state(fz_state_t state)
{
    switch (state) {
    case FZ_STATE_RUNNING:
        return FZ_TOPIC_TASK_DISPATCHED;
    case FZ_STATE_RETRYING:
        return FZ_TOPIC_TASK_RETRYING;
    case FZ_STATE_QUEUED:
        return FZ_TOPIC_TASK_QUEUED;
    case FZ_STATE_HELD:
        return FZ_TOPIC_TASK_HELD;
    case FZ_STATE_SUCCEEDED:
        return FZ_TOPIC_TASK_SUCCEEDED;
    case FZ_STATE_FAILED:
        return FZ_TOPIC_TASK_FAILED;
    case FZ_STATE_CANCELLED:
        return FZ_TOPIC_TASK_CANCELLED;
    case FZ_STATE_DEP_FAILED:
        return FZ_TOPIC_TASK_DEP_FAILED;
    default:
        return FZ_TOPIC_NONE;
    }
}

const char *fz_class_name(fz_class_t cls)
{
    return (unsigned)cls < FZ_CLASS_COUNT ? s_classes[cls] : "";
}

fz_class_t fz_class_from_name(const char *name)
{
    int i = name && *name ? s_find(s_classes, FZ_CLASS_COUNT, name) : -1;
    return i < 0 ? FZ_CLASS_NONE : (fz_class_t)i;
}

const char *fz_reason_name(fz_reason_t reason)
{
    return (unsigned)reason < FZ_REASON_COUNT ? s_reasons[reason] : "";
}

fz_reason_t fz_reason_from_name(const char *name)
{
    int i = name && *name ? s_find(s_reasons, FZ_REASON_COUNT, name) : -1;
    return i < 0 ? FZ_REASON_NONE : (fz_reason_t)i;
}
