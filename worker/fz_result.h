/*  fz_result: the result message fz-worker sends for an attempt (PROTOCOL.md section 5), from
    its figures: the agent's status (or none: rejected, spawn-failed, a workspace that could
    not be made), the workspace's and the check's (fz_attempt_ws), and the failure class
    fz_classify decides from them. Also the two guards every message of the worker needs:
    text as valid UTF-8 within a field's limit, and a cost within the codec's range (a
    message the broker refused would be resent for ever). Pure: no I/O.

    Owns nothing: a fz_result_t borrows every pointer; the encoder returned is the caller's. */

#ifndef FZ_RESULT_H
#define FZ_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_agent.h"
#include "fz_attempt_ws.h"
#include "fz_enc.h"
#include "fz_vocab.h"

/* A result's contents: from the agent's status, or zeros for an attempt that ran none. */
typedef struct {
    uint64_t task;
    uint32_t attempt;
    fz_outcome_t outcome;
    const fz_agent_status_t *st; /* NULL: no agent ran (rejected, spawn-failed) */
    const fz_aws_result_t *ws;   /* the workspace and check; NULL: none */
    const char *model, *summary, *log;
    const char *tail;
    size_t tail_len;
} fz_result_t;

/* The failure class (FZ_CLASS_NONE: none): the workspace's when no agent ran or it exited 0
   (fz_aws_class), then fz_classify. */
fz_class_t fz_result_class(const fz_result_t *r);

/* Every field of the result: all of section 5's, so that a strict peer can read any of
   them; class only when the attempt failed, reset_at and retry_after only when the agent
   reported them, the workspace's fields when there is one (fz_aws_encode). */
fz_enc_t *fz_result_enc(const fz_result_t *r);

/* The attempt's outcome: the agent's (agent_outcome, an fz_outcome_t; -1 when no agent
   ran: cancelled if cancelled, else spawn-failed); a cancel after an agent that exited (the
   check was stopped) is a cancel; a cancel because the worker stops is "interrupted" (the
   broker requeues the task). */
fz_outcome_t fz_result_outcome(int agent_outcome, bool cancelled, bool interrupted);

/* The summary to send: the workspace's or the check's reason when its class is the
   result's, else NULL (the agent's own) or start_err when no agent ran. */
const char *fz_result_summary(const fz_result_t *r, const char *start_err);

/* text as valid UTF-8, cut to max bytes (and 4 KiB), under key. */
void fz_result_text(fz_enc_t *e, const char *key, const char *text, size_t max);

/* A cost the codec accepts: 0 for negative or NaN, at most 1e12. */
double fz_result_cost(double cost);

#endif
