/*  fz_workspace: the git worktree one task attempt works in, and its result as a branch.

    A task names a repository, a local path or a URL, and zero or more bases (refs or commits:
    its own base ref, its dependencies' result branches; none = the repository's HEAD).
    fz_workspace_open() finds the repository's cache, the ONE shared copy the worker keeps per
    repository: for a local path the repository itself; for a URL a bare mirror under
    CACHE_DIR (`git clone --mirror` the first time, `git fetch` every later time). It resolves
    the bases, adds a worktree on a new branch fz/TASK-ATTEMPT from the first base and merges
    the others into it (fz's own merge commits), so the agent starts from their merge. The
    worktree holds only the repository's files: fz's report and log belong elsewhere.

    When the agent has ended, fz_workspace_seal() commits whatever it left uncommitted
    (author and committer "fz" <fz@localhost>, given per command with `git -c`, hooks skipped
    with --no-verify: fz's bookkeeping commit is not the agent's business) and records branch,
    base commit, head commit and the diff stat of base..head (the worker runs the task's check
    in the sealed worktree as a supervised agent of its own: fz_attempt_ws).
    fz_workspace_finish() pushes the branch back for a URL repository and removes the worktree
    (unless keep), leaving the branch. fz_workspace_promote() points the task's final branch
    fz/TASK at the successful attempt's head.

    Branch names: git cannot hold both fz/TASK and fz/TASK/ATTEMPT (a ref is a file, and
    fz/TASK would have to be a folder too), so attempts are fz/TASK-ATTEMPT and the task's
    final branch is fz/TASK (FZ_WS_ATTEMPT_FMT, FZ_WS_TASK_FMT).

    A local repository's checkout is never touched: the worktree starts from a commit (the
    base's), in its own folder, on its own new branch; fz never runs checkout, reset, stash or
    status-with-locks in the user's checkout. Uncommitted changes there are not part of the
    base; fz_workspace_dirty() says when a worktree started from HEAD lacks them (the worker
    then refuses the attempt: PROTOCOL.md section 8).
    fz only creates branches under fz/ and moves fz/TASK with `git branch -f`, which git
    refuses if fz/TASK is checked out somewhere.

    Failures: every function says what failed in err (a line ending with git's own message)
    and returns a class: FZ_WS_WORKSPACE ("workspace": a repository that does not exist or
    cannot be fetched, a base that does not resolve, a disk without room, git failing)
    or FZ_WS_MERGE_CONFLICT (the bases do not merge; the conflicting files are named). A
    failed open leaves nothing: no worktree (registered or on disk), no
    branch, no half-cloned mirror (clones go to a temporary folder renamed at the end).

    Concurrency: worktrees of one repository share lock files; every worktree add and remove,
    clone and fetch of one repository holds an flock on a lock file of its cache (fz.lock in
    the repository's git folder, or MIRROR.lock beside a mirror), across processes, and git
    commands that fail on someone else's index.lock / packed-refs.lock are retried.

    Ownership: a fz_workspace_t owns its worktree until finish (or destroy) and its strings;
    the caller's option strings are copied. Everything blocks: git runs through fz_run
    (posix_spawn, no shell, reaped before returning), the check up to its timeout. */

#ifndef FZ_WORKSPACE_H
#define FZ_WORKSPACE_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_vocab.h"

#define FZ_WS_ATTEMPT_FMT "fz/%" PRIu64 "-%" PRIu32 /* an attempt's branch */
#define FZ_WS_TASK_FMT "fz/%" PRIu64                /* the task's final branch */
#define FZ_WS_OID_MAX 65                            /* hex object id + NUL (SHA-256 too) */
#define FZ_WS_BRANCH_MAX 64
#define FZ_WS_CHECK_TAIL 4096                /* bytes of the check's output kept */
#define FZ_WS_MIN_FREE_DEFAULT (16ULL << 20) /* refuse to start below this much free disk */
#define FZ_WS_GIT_TIMEOUT_DEFAULT 900        /* seconds for one git command */
/* Beside a worktree folder PATH: PATH.live is flocked by the process that owns it (while
   open to finish); PATH.kept marks one finished with keep, for the user to remove. A
   worker's start-up clean-up (fz_wsclean) removes folders with neither in use. */
#define FZ_WS_LIVE_SUFFIX ".live"
#define FZ_WS_KEPT_SUFFIX ".kept"

typedef struct fz_workspace_t fz_workspace_t;

typedef enum {
    FZ_WS_OK = 0,
    FZ_WS_WORKSPACE,      /* "workspace": repository, base, disk or git failed */
    FZ_WS_MERGE_CONFLICT, /* the bases do not merge: FZ_CLASS_MERGE_CONFLICT */
} fz_ws_err_t;

typedef struct {
    const char *cache_dir;   /* required: mirrors (and default worktrees) go here */
    const char *repo;        /* required: a local repository's path, or a URL */
    const char *const *base; /* refs or commits to start from, merged; NULL/0 = HEAD */
    size_t nbase;
    uint64_t task;           /* required (> 0) */
    uint32_t attempt;        /* required (> 0) */
    const char *path;        /* where the worktree goes, must not exist; NULL =
                                CACHE_DIR/worktrees/TASK-ATTEMPT */
    bool keep;               /* finish leaves the worktree folder (still registered) */
    uint64_t min_free;       /* bytes that must be free where the worktree goes; 0 =
                                FZ_WS_MIN_FREE_DEFAULT */
    int git_timeout_s;       /* per git command; 0 = FZ_WS_GIT_TIMEOUT_DEFAULT */
    const atomic_bool *stop; /* NULL = none; set from another thread, it ends open (its git
                                commands, the wait for the lock; open then cleans up and
                                fails with "stopped"), a check and a push. Sealing and
                                removing the worktree are not stopped: they are short and
                                leave the branch whole. Must outlive the workspace. */
} fz_ws_opts_t;

typedef struct {
    char branch[FZ_WS_BRANCH_MAX];
    char base[FZ_WS_OID_MAX]; /* the commit the agent started from (the bases' merge) */
    char head[FZ_WS_OID_MAX]; /* the branch's head after sealing */
    uint32_t files, insertions, deletions; /* git diff --shortstat base head */
    bool committed;                        /* fz committed changes the agent left */
    bool pushed;                           /* the branch was pushed back (URL repositories) */
} fz_ws_result_t;

/* "" for FZ_WS_OK, "workspace", "merge-conflict" (the vocab's names). */
const char *fz_workspace_class_name(fz_ws_err_t cls);

/* Prepares the attempt's worktree. Returns it, or NULL with the class in *cls (may be NULL)
   and a one-line reason in err; then nothing of it is left. */
fz_workspace_t *fz_workspace_open(const fz_ws_opts_t *opts, fz_ws_err_t *cls, char *err,
                                  size_t errlen);

/* Frees the workspace. One never finished is abandoned: its worktree is removed and its
   branch deleted (it never was a result), unless keep. Nulls *self_p; accepts NULL. */
void fz_workspace_destroy(fz_workspace_t **self_p);

/* The worktree's absolute path, its branch, and the base commit (hex). Owned by self. */
const char *fz_workspace_path(const fz_workspace_t *self);
const char *fz_workspace_branch(const fz_workspace_t *self);
const char *fz_workspace_base(const fz_workspace_t *self);
/* True if the base was a local repository's HEAD and its checkout had uncommitted changes
   to tracked files (which the base does not contain). */
bool fz_workspace_dirty(const fz_workspace_t *self);

/* Commits what the agent left uncommitted and fills out (may be NULL). Again after a seal
   it commits anything new. FZ_WS_OK or FZ_WS_WORKSPACE with err. */
fz_ws_err_t fz_workspace_seal(fz_workspace_t *self, fz_ws_result_t *out, char *err, size_t errlen);

/* Seals if not sealed, pushes the branch for a URL repository, removes the worktree unless
   keep, and fills out (may be NULL). The worktree is removed even when the push failed
   (then FZ_WS_WORKSPACE, out->pushed false). Once only; later calls only fill out. */
fz_ws_err_t fz_workspace_finish(fz_workspace_t *self, fz_ws_result_t *out, char *err,
                                size_t errlen);

/* Points the task's final branch fz/TASK at head (a commit of the repository's cache) and,
   for a URL repository, pushes it (forced: a later success may replace it). stop as in the
   options (NULL = none). */
fz_ws_err_t fz_workspace_promote(const char *cache_dir, const char *repo, uint64_t task,
                                 const char *head, const atomic_bool *stop, char *err,
                                 size_t errlen);

#endif
