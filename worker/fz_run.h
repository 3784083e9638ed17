/*  fz_run: run one short-lived program to its end and capture what it says, for fz_workspace
    (git, and the task's check command).

    fz_run() posix_spawns argv[0] (searched in PATH) with no shell, in its own process group,
    in cwd, with the signal mask and every handler reset and every descriptor above 2 closed,
    and with an environment of the caller's own minus the variables that would point git at
    another repository or another identity (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE,
    GIT_AUTHOR_*, GIT_COMMITTER_*...), plus LC_ALL=C (messages fz parses) and
    GIT_TERMINAL_PROMPT=0 (a URL that wants a password fails instead of waiting). It reads
    stdout and stderr together (poll, non-blocking) to the end, keeping the LAST cap bytes of
    each and counting all of them, and enforces a wall-clock timeout: SIGTERM to the group,
    SIGKILL one second later. When the program exits, whatever it left in its group is
    SIGKILLed, so a `sleep 100 &` of a check cannot keep the pipes (and fz) waiting. A stop
    flag, set from another thread, ends the program as the timeout does (within 50 ms), so a
    clone or fetch run off the worker's loop can be cancelled.

    Ownership: a fz_run_res_t owns its two buffers (fz_run_res_free). fz_run blocks until the
    program and its group are over; it reaps only its own child (waitpid of that pid), so it
    keeps fz_agent's contract (SIGCHLD at SIG_DFL, no waitpid(-1)). Not for programs that
    read stdin: theirs is /dev/null. */

#ifndef FZ_RUN_H
#define FZ_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define FZ_RUN_CAP_DEFAULT (64 * 1024) /* bytes of each stream kept */
#define FZ_RUN_GRACE_MS 1000           /* between SIGTERM and SIGKILL on timeout */

typedef struct {
    const char *const *argv; /* required; argv[0] is looked up in PATH */
    const char *cwd;         /* NULL = the caller's */
    int timeout_ms;          /* 0 = none */
    bool merge;              /* stderr goes where stdout goes (out); err stays empty */
    size_t cap;              /* bytes kept of each stream; 0 = FZ_RUN_CAP_DEFAULT */
    const atomic_bool *stop; /* NULL = none; once true, the program is stopped (SIGTERM,
                                SIGKILL after FZ_RUN_GRACE_MS), or not started */
} fz_run_opts_t;

typedef struct {
    int status;      /* exit status, or -1 if it did not exit by itself */
    int signal;      /* the signal that ended it, or 0 */
    bool timed_out;  /* fz stopped it at the timeout */
    bool stopped;    /* fz stopped it (or did not start it) because the stop flag was set */
    int spawn_errno; /* the program could not be started (ENOENT...); then status is -1 */
    char *out, *err; /* the last cap bytes of stdout / stderr, NUL-terminated (never NULL
                        after fz_run returned) */
    size_t out_len, err_len;
    size_t out_total; /* bytes stdout produced, of which out_len were kept */
} fz_run_res_t;

/* Runs the program to its end. 0 if it ran (whatever its status), -1 if it could not be
   started (spawn_errno says why: ECANCELED for a stop flag already set) or out of memory; res is
   filled either way and must be freed with fz_run_res_free. */
int fz_run(const fz_run_opts_t *opts, fz_run_res_t *res);

/* Frees the buffers and zeroes res; accepts a zeroed or already freed res. */
void fz_run_res_free(fz_run_res_t *res);

/* The last non-empty line of s (a program's stderr), without its newline, copied into buf. */
void fz_run_last_line(const char *s, char *buf, size_t size);

#endif
