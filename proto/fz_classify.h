/*  fz_classify: the failure class of an attempt, from what is known of its end.

    Pure: the agent's own report first (an adapter that read the CLI's JSON knows a rate limit
    from a bad key), the outcome and exit status last (PROTOCOL.md §7, "Failure classes").
    The worker calls it for every result; the broker calls it for results of peers that sent
    no class, so both sides agree. */

#ifndef FZ_CLASSIFY_H
#define FZ_CLASSIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "fz_vocab.h"

/* True for the classes the worker finds after the agent exited (check-failed, workspace,
   merge-conflict): they fail an attempt whose agent exited 0. */
bool fz_class_after_agent(fz_class_t cls);

/* FZ_CLASS_NONE for a success (exited 0, and no class found after the agent) and for ends that are
   nobody's failure (cancelled, rejected, interrupted, lost); else the reported class if any, else
   one from the outcome: timeout, cost-cap, stalled, crashed (signaled), agent-missing
   (spawn-failed, exit 126 or 127), task-failed (any other non-zero exit or an unknown outcome). */
fz_class_t fz_classify(int outcome, int64_t exit_code, fz_class_t reported);

#endif
