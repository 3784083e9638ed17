/*  fz_classify: failure classes; see fz_classify.h. */

#include "fz_classify.h"

bool fz_class_after_agent(fz_class_t cls)
{
    return cls == FZ_CLASS_CHECK_FAILED || cls == FZ_CLASS_WORKSPACE ||
           cls == FZ_CLASS_MERGE_CONFLICT;
}

fz_class_t fz_classify(int outcome, int64_t exit_code, fz_class_t reported)
{
    switch (outcome) {
    case FZ_OUTCOME_EXITED:
        if (exit_code == 0)
            return fz_class_after_agent(reported) ? reported : FZ_CLASS_NONE;
        break;
    case FZ_OUTCOME_CANCELLED:
    case FZ_OUTCOME_REJECTED:
    case FZ_OUTCOME_INTERRUPTED:
    case FZ_OUTCOME_LOST:
        return FZ_CLASS_NONE;
    default:
        break;
    }
    if (reported != FZ_CLASS_NONE && (unsigned)reported < FZ_CLASS_COUNT)
        return reported;
    switch (outcome) {
    case FZ_OUTCOME_TIMEOUT:
        return FZ_CLASS_TIMEOUT;
    case FZ_OUTCOME_COST_CAP:
        return FZ_CLASS_COST_CAP;
    case FZ_OUTCOME_STALLED:
        return FZ_CLASS_STALLED;
    case FZ_OUTCOME_SIGNALED:
        return FZ_CLASS_CRASHED;
    case FZ_OUTCOME_SPAWN_FAILED:
        return FZ_CLASS_AGENT_MISSING;
    case FZ_OUTCOME_EXITED:
        return exit_code == 126 || exit_code == 127 ? FZ_CLASS_AGENT_MISSING : FZ_CLASS_TASK_FAILED;
    default:
        return FZ_CLASS_TASK_FAILED;
    }
}
