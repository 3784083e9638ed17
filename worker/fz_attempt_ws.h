/*  fz_attempt_ws: what the worker does around one attempt's agent when the dispatch names a
    repository or a check (PROTOCOL.md section 8): before the agent, the attempt's git
    worktree; after it, the seal (what the agent left is committed), the check, the finish
    (push for a URL, the worktree removed unless kept), and the result's workspace fields.

    Phases, in order (fz_aws_phase):
      PREPARING  fz_workspace_open runs on the fz_bg thread (or fz_bg is still busy with
                 earlier work: an agent never starts while a job runs, see fz_bg.h)
      READY      the caller may start its agent now: in fz_aws_cwd(), with fz_aws_env()
      AGENT      the caller's agent runs (fz_aws_agent_started)
      POST       after fz_aws_agent_ended: seal (bg), the check (a supervised fz_agent:
                 /bin/sh -c CHECK in the worktree, or in the attempt's folder without a
                 repository, bounded by what the agent left of the task's timeout; the caller
                 keeps pumping through fz_aws_pollfds / fz_aws_timeout_ms / fz_aws_pump, so
                 heartbeats go on), finish (bg)
      DONE       fz_aws_result() is final
    A failed or cancelled open goes from PREPARING to DONE with no agent (the result then
    has opened false, and cls/summary say why). An attempt with neither repository nor check
    is READY as soon as fz_bg is idle and DONE as soon as its agent ended.

    Cancel (fz_aws_cancel): stops an open under way (its clean-up runs: nothing is left) or
    a running check; a check not started yet is skipped; seal and finish still run, so the
    branch keeps what the agent did.

    Ownership: an fz_aws_t owns its workspace, its check agent and copies of every option
    string; the fz_bg runner is borrowed and must outlive it, and the caller must collect the
    runner's jobs (fz_bg_collect) whenever its descriptor is readable. */

#ifndef FZ_ATTEMPT_WS_H
#define FZ_ATTEMPT_WS_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_bg.h"
#include "fz_enc.h"
#include "fz_msg.h"
#include "fz_vocab.h"
#include "fz_workspace.h"

typedef struct fz_aws_t fz_aws_t;

typedef enum {
    FZ_AWS_PREPARING,
    FZ_AWS_READY,
    FZ_AWS_AGENT,
    FZ_AWS_POST,
    FZ_AWS_DONE,
} fz_aws_phase_t;

typedef struct {
    fz_bg_t *bg;              /* required, borrowed */
    const char *cache_dir;    /* required with a repo: fz_workspace's cache */
    const char *workdir;      /* required: the attempt's own folder (fz's files: the check's
                                 log and report; the check's cwd without a repo) */
    const char *repo;         /* NULL or "" = none */
    const char *const *bases; /* nbases refs or commits; none = the repository's HEAD */
    size_t nbases;
    const char *check;      /* NULL or "" = none */
    bool keep;              /* keep_worktree */
    uint64_t task;          /* > 0 */
    uint32_t attempt;       /* > 0 */
    double timeout_s;       /* the task's timeout, 0 none: the check gets what the agent left */
    double kill_grace_s;    /* for the check, as for the agent */
    const char *const *env; /* NULL-terminated KEY=VALUE for the check (the agent's own) */
    const char *const *pass_env; /* what the check is passed of the worker's environment, as
                                    the agent (fz_agent.h); borrowed: must outlive self */
} fz_aws_opts_t;

/* What the result says of the workspace and the check. */
typedef struct {
    bool has_repo;
    bool opened;              /* the worktree was made (the agent could start) */
    bool sealed;              /* ws holds the branch, commits and diff stat */
    fz_ws_result_t ws;        /* branch, base, head, diff stat (branch and base once opened) */
    fz_class_t cls;           /* workspace, merge-conflict, check-failed; NONE if none */
    char summary[1024];       /* the one-line reason, with cls */
    const char *check_status; /* "" (no check ran to a verdict), "passed", "failed" */
    int check_exit;           /* its exit status; -1 killed (the timeout, a signal) or none */
    char check_output[FZ_WS_CHECK_TAIL];
    size_t check_len;
} fz_aws_result_t;

/* A new attempt workspace; with a repo, its open is queued on the runner at once. NULL
   with err on bad options or no memory. */
fz_aws_t *fz_aws_new(const fz_aws_opts_t *opts, char *err, size_t errlen);

/* fz_aws_new with the dispatch's repo, bases, check and keep_worktree (PROTOCOL.md
   section 5) in place of those of opts. */
fz_aws_t *fz_aws_for_dispatch(const fz_aws_opts_t *opts, fz_msg_t *dispatch, char *err,
                              size_t errlen);

/* Stops what runs (open, check: as cancel), waits for its bg job, kills the check, and frees
   everything; a workspace never finished is discarded (worktree and branch). Blocks for as
   long as a stopped job takes to end; the runner must not be held. Nulls *self_p. */
void fz_aws_destroy(fz_aws_t **self_p);

fz_aws_phase_t fz_aws_phase(fz_aws_t *self);

/* Where the agent runs (the worktree), or NULL without a repo (the caller's folder). */
const char *fz_aws_cwd(fz_aws_t *self);

/* FZ_WORKTREE, FZ_BRANCH, FZ_BASE for the agent (the only variables the workspace adds),
   NULL-terminated, owned by self; empty without a repo or before READY. */
const char *const *fz_aws_env(fz_aws_t *self);

/* The caller started its agent (READY -> AGENT). */
void fz_aws_agent_started(fz_aws_t *self);

/* The agent ended with this outcome and exit code after elapsed_s (AGENT -> POST); the
   check runs only after outcome exited with exit code 0. */
void fz_aws_agent_ended(fz_aws_t *self, int outcome, int exit_code, double elapsed_s);

/* Stops an open or a check (see above). Idempotent. */
void fz_aws_cancel(fz_aws_t *self);
/* True once fz_aws_cancel was called. */
bool fz_aws_cancelled(fz_aws_t *self);

/* The check agent's descriptors and timer, for the caller's poll (0 / -1 when none). */
int fz_aws_pollfds(fz_aws_t *self, struct pollfd *fds, int max);
int fz_aws_timeout_ms(fz_aws_t *self, int64_t now_ms);

/* Moves on: call it after every poll return, after collecting the runner's jobs (a job's
   end is what a waiting attempt waits for). */
void fz_aws_pump(fz_aws_t *self, int64_t now_ms);

/* The result so far (final in DONE). Owned by self. */
const fz_aws_result_t *fz_aws_result(fz_aws_t *self);

/* Adds the result's workspace fields (PROTOCOL.md section 5: branch, base_commit,
   head_commit, files, insertions, deletions with a repo; check_status, check_exit,
   check_output with a check) to a result being encoded. */
void fz_aws_encode(const fz_aws_result_t *r, fz_enc_t *e);

/* The class the result carries, from the agent's outcome, exit code and reported class
   and the workspace's: a workspace class counts when no agent ran or it exited 0 (an agent
   that failed keeps its own). Pure. */
fz_class_t fz_aws_class(const fz_aws_result_t *r, bool agent_ran, int outcome, int exit_code,
                        fz_class_t reported);

/* The check's remaining time: timeout_s less what the agent used; 0 (none) without a
   timeout; at least 1 ms when used up (the check is then stopped at once). Pure. */
double fz_aws_check_timeout(double timeout_s, double agent_elapsed_s);

/* Queues fz_workspace_promote on the runner (strings copied): fz/TASK points at head; the
   done side logs what happened. 0 if it could not be queued. */
uint64_t fz_aws_promote(fz_bg_t *bg, const char *cache_dir, const char *repo, uint64_t task,
                        const char *head);

#endif
