/*  fz_agent: run and supervise ONE agent process for fz-worker.

    fz_agent_start() runs `/bin/sh -c COMMAND` in its own process group, in a work folder it
    creates, with the prompt on stdin (and in FZ_PROMPT when small), under a keeper, a small
    process that stays for the next agent (see "The keeper" below). It
    captures stdout and stderr merged in order of arrival into a log file and a bounded
    in-memory tail, follows the agent's report file (cost, tokens, model, progress, summary,
    failure class), enforces the wall-clock timeout, the cost cap, the stall limit and cancel
    (SIGTERM to the group, SIGKILL after a grace period), and reaps everything it started.
    fz_agent_simulate() is a process-less stand-in for dry-run workers with the same status
    API, so the worker's accounting is identical in both modes. Libc and Linux only; no
    threads, no signal handlers in the caller's process, nothing blocks except destroy.

    Ownership: an fz_agent_t owns its processes, pipes, log and report descriptors and buffers.
    The caller's strings in fz_agent_opts_t / fz_agent_sim_t are copied or used only during
    the constructor. Pointers returned by getters belong to the agent: the status stays valid
    until fz_agent_destroy() (its contents change on each pump), the tail until the next
    fz_agent_pump().

    Contract with the caller (the worker loop):
    - one thread; one running agent per process at a time;
    - each turn: fz_agent_pollfds() + fz_agent_timeout_ms() into poll/zmq_poll, then call
      fz_agent_pump() after EVERY poll return, whatever fired (it is cheap and non-blocking);
    - now_ms arguments are CLOCK_MONOTONIC milliseconds (fz_agent_now_ms());
    - ignore SIGPIPE process-wide (the module's own pipe writes are safe either way);
    - keep SIGCHLD at SIG_DFL and never reap children yourself (no waitpid(-1), no
      SIG_IGN): the module only signals a process group or pid while that process is its own
      unreaped child, which is what makes the ids safe from reuse;
    - call fz_agent_init_subreaper() once at start-up, before the first agent.

    The keeper: every agent runs under a keeper, a small process that is this process's
    child and serves agent after agent: the module keeps one idle between agents (a second
    agent alive at the same time gets a keeper of its own, ended with it). A keeper is forked
    (no exec) by the keeper spawner with this process as its parent when one runs
    (fz_keeper_spawner_start: then this process never forks), else by this process. It
    leads a process group of its own, is a child subreaper and keeps every signal but
    SIGCHLD blocked. For each agent it vforks the shell, which makes itself the leader of a
    new process group, the agent's: fz_agent_pid() is the shell's pid, which is the group
    id. The keeper tells the module when the shell exits and how (the status and outcome are
    the shell's, exactly as without a keeper) and keeps the shell its unreaped child until
    the module ends the agent, so the group id cannot be reused: the module's signals to the
    group (SIGTERM, SIGCONT, SIGKILL) are sent by the keeper on its request. At the end the
    keeper SIGKILLs the group, reaps the shell, kills and reaps its own children (the
    agent's escapees: it is their subreaper) until none is left, and says so; then it waits
    for the next agent. Its control socket's other end only the worker process holds (closed
    on exec, never given to the agent): its EOF comes exactly when the worker process is
    gone, however it went (SIGKILL, crash, exit or exec without fz_agent_destroy). The
    keeper then SIGKILLs everything of the agent and exits, within a few milliseconds. A
    socket rather than PR_SET_PDEATHSIG: that follows the forking thread, not the process,
    and cannot act on the group by itself. What the agent sends its group (kill 0) reaches
    the agent alone. Cost: the keeper's fork once, not per agent; per agent a vfork and one
    request, and three messages back.

    What is caught, while the worker lives: the whole process group (the shell and every
    descendant that keeps the group, e.g. `sleep 1000 &`) gets SIGTERM then SIGKILL on
    timeout, cost cap or cancel, and SIGKILL as soon as the shell exits even with status 0.
    Descendants that left the group (setsid, setpgid, double fork) reparent to the keeper when
    their parents die, and the keeper kills and reaps them at the agent's end, pass after
    pass until none is left. If the keeper is gone (killed on its own), what it held
    reparents to the worker; with the worker's subreaper on, the module then SIGKILLs and
    reaps every child of the worker process, repeating until none is left (so their own
    children are caught too).

    What is caught when the worker dies (for any reason, SIGKILL included): everything above,
    by the keeper alone. It SIGKILLs the members of the agent's group and its own children, and
    repeats: a descendant that left the group becomes its child as soon as its parent is
    killed, so setsid'd and double-forked escapees die in the next pass (a few ms each). It
    also covers the grace period after a SIGTERM, when the shell is gone but group members
    still run. It gives up after 2 s on processes that will not die.

    What is not caught: without the worker's subreaper, descendants that left the group live
    on under init once the agent has ended normally. Work handed to another daemon
    (systemd-run, at, an already running tmux server, docker, ssh) is outside the process
    tree; only a cgroup or container would catch it. The sweep after a lost keeper kills ANY
    other child of the worker process but the keeper spawner and the idle keeper: the worker
    must not fork children of its own (the sweep is skipped while another fz_agent is alive
    in the process); a child it forks without exec would also hold the keeper's socket and
    delay its reaction to the worker's death until that child ends. If the keeper itself is
    SIGKILLed on its own (OOM killer, kill -9 of its pid), the module ends the agent as killed
    by SIGKILL and sweeps; if the worker then dies too, nothing guards the rest. A stopped
    keeper (kill -STOP of its pid) acts only once continued (the worker's death sends it
    SIGCONT). A process stuck in uninterruptible sleep cannot be killed; the
    module gives up on it after a bounded wait and says so on stderr. The agent stays in the
    worker's session: if the worker has a controlling terminal, an agent that reads /dev/tty
    is stopped (SIGTTIN) until its timeout.

    The report file (FZ_REPORT, truncated at start): the agent appends lines "KEY VALUE":
    cost_usd USD (cumulative total), tokens_in N (fresh, uncached input), tokens_cache_read N,
    tokens_cache_write N, tokens_out N (all cumulative), model NAME, progress PCT [TEXT]
    (whole percent 0-100), summary TEXT, and when it fails class NAME (a failure class of
    fz_vocab: rate-limit, quota, auth, ...), reset_at EPOCH (unix seconds the limit resets
    at, below 1e11) and retry_after SECONDS (below 1e7). The last value of each key wins.
    Unknown keys, unknown class names, malformed values (signs, nan, inf, hex, trailing junk,
    out of range) and lines over FZ_AGENT_REPORT_LINE_MAX bytes are counted in
    report_ignored and skipped; fz_rfile.h has the exact grammar. The file is
    read every 250 ms and once more after the exit; a line counts only once its newline is
    there, except the last one after the exit. A truncated file is read again from the
    start, a file renamed over the path is followed; anything but a regular file is not read.
    Output goes to the log and the tail as raw bytes: not necessarily valid UTF-8.

    Signs of life: output read from the agent, or a report line accepted (seen when the file
    is read, so up to 250 ms late). status.alive_ms is the time of the last one (started_ms
    until the first); with stall_kill_s set, an agent that shows none for that long is
    stopped like a timeout (outcome FZ_AGENT_STALLED); just before calling it stalled the
    report file is read once more. A simulated agent shows life as long as its values grow. */

#ifndef FZ_AGENT_H
#define FZ_AGENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fz_rfile.h"
#include "fz_vocab.h"

typedef struct fz_agent_t fz_agent_t;

#define FZ_AGENT_TAIL_DEFAULT (64 * 1024) /* bytes of output kept in memory */
#define FZ_AGENT_GRACE_DEFAULT 10.0       /* seconds between SIGTERM and SIGKILL */
/* FZ_PROMPT is set only for prompts up to this size without NUL bytes; larger ones arrive on
   stdin only (FZ_PROMPT unset, FZ_PROMPT_BYTES still set): Linux caps one environment
   string at 128 KiB, and a silently cut prompt is worse than none. */
#define FZ_AGENT_ENV_PROMPT_MAX (100 * 1024)
#define FZ_AGENT_REPORT_LINE_MAX FZ_RFILE_LINE_MAX /* longer report lines are ignored */
#define FZ_AGENT_MAX_POLLFDS 3

/* How the agent ended. Every value but RUNNING is the fz_outcome_t of the same name (the
   protocol's, fz_vocab.h), so an ended agent's outcome goes on the wire as it is. */
typedef enum {
    FZ_AGENT_RUNNING = -1,
    FZ_AGENT_EXITED = FZ_OUTCOME_EXITED,       /* ended by itself; exit_code says how */
    FZ_AGENT_SIGNALED = FZ_OUTCOME_SIGNALED,   /* killed by a signal fz did not send */
    FZ_AGENT_TIMEOUT = FZ_OUTCOME_TIMEOUT,     /* stopped by fz: wall-clock timeout */
    FZ_AGENT_COST_CAP = FZ_OUTCOME_COST_CAP,   /* stopped by fz: reported cost above max_cost */
    FZ_AGENT_CANCELLED = FZ_OUTCOME_CANCELLED, /* stopped by fz: fz_agent_cancel() */
    FZ_AGENT_SPAWN_FAILED = FZ_OUTCOME_SPAWN_FAILED, /* never reported by an agent (start
                              returns NULL); for the worker's own records of an attempt that
                              could not start */
    FZ_AGENT_STALLED = FZ_OUTCOME_STALLED, /* stopped by fz: no sign of life for stall_kill_s */
} fz_agent_outcome_t;

/* Whether the worker's variable "KEY=VALUE" reaches an agent: the basics (PATH, HOME,
   USER, LOGNAME, SHELL, LANG, LANGUAGE, LC_*, TERM, TZ, TMPDIR), the fz variables the
   adapters read (FZ_AGENTS_PREFIX, FZ_CLAUDE, FZ_CODEX, FZ_GEMINI, FZ_OPENCLAW, FZ_AGENT_*,
   FZ_PRICES, FZ_PRICE_DEFAULT, FZ_DRY_*, FZ_LOG), and what pass (NULL-terminated names, a
   trailing '*' for a prefix; may be NULL) allows. Pure. */
bool fz_agent_env_passes(const char *entry, const char *const *pass);

typedef struct {
    const char *command;     /* required: run as SHELL -c COMMAND */
    const char *shell;       /* default "/bin/sh" */
    const char *prompt;      /* written to stdin, then stdin is closed; may be NULL */
    size_t prompt_len;       /* bytes of prompt (may contain NULs) */
    const char *workdir;     /* required: created like mkdir -p; the agent's cwd */
    bool fresh_workdir;      /* the caller made workdir just now, empty: it is not made
                                again, and holds no report of an earlier run to remove */
    const char *log_path;    /* output appended here; NULL = no log file */
    const char *report_path; /* truncated at start; NULL = WORKDIR/.fz-report */
    const char *const *env;  /* NULL-terminated "KEY=VALUE" added to what the agent gets of
                                the worker's environment (fz_agent_env_passes); FZ_REPORT,
                                FZ_WORKDIR, FZ_PROMPT and FZ_PROMPT_BYTES win */
    size_t tail_max;         /* bytes of output kept; 0 = FZ_AGENT_TAIL_DEFAULT */
    double timeout_s;        /* wall clock; 0 = none */
    double max_cost;         /* USD; stop when reported cost > max_cost; 0 = none. A cost
                                first seen after the agent exited leaves it EXITED */
    double kill_grace_s;     /* 0 = FZ_AGENT_GRACE_DEFAULT; use e.g. 0.001 for "at once" */
    double stall_s;          /* announce-only: the agent does not act on it (the broker
                                announces a stall from the idle time the worker reports);
                                checked like the other limits; 0 = none */
    double stall_kill_s;     /* stop as FZ_AGENT_STALLED after this long without a sign of
                                life (see "Signs of life"); 0 = none */
    bool no_pidfd;           /* look for the exit on a 100 ms timer instead of through a
                                polled descriptor (tests); the name is historical */
    /* NULL-terminated names (or PREFIX*) of the worker's own variables the agent gets
       besides the basics (fz_agent_env_passes); may be NULL */
    const char *const *pass_env;
} fz_agent_opts_t;

/* What a simulated agent does: cost and tokens grow linearly over duration_s, then it exits
   with exit_code. Timeout, cost cap and stall kill from the opts apply as for a real agent. */
typedef struct {
    double duration_s;
    double cost_usd;
    uint64_t tokens_in, tokens_out;
    int exit_code;
    const char *model;   /* may be NULL */
    const char *output;  /* put in the tail (and log) at start; may be NULL */
    const char *summary; /* reported when it exits by itself; may be NULL */
    uint64_t tokens_cache_read, tokens_cache_write; /* grow as the other tokens */
    double silent_after_s;        /* 0 = never; else from then on its values freeze: no
                                     sign of life, so that a stall_kill_s applies */
    fz_class_t cls;               /* reported when it exits by itself with exit_code != 0 */
    double reset_at, retry_after; /* reported with cls; 0 = not reported */
} fz_agent_sim_t;

typedef struct {
    fz_agent_outcome_t outcome; /* RUNNING until the agent is over */
    int exit_code;              /* exit status, or -1 if it did not exit by itself */
    int signal;                 /* signal that killed it, or 0 */
    char reason[64];            /* why fz stopped it ("timeout", "cost-cap", cancel reason) */
    bool stopping;              /* SIGTERM sent, not over yet */
    int64_t started_ms;         /* CLOCK_MONOTONIC ms at start */
    int64_t elapsed_ms;         /* live; frozen at the end */
    int64_t duration_ms;        /* 0 until over */
    int64_t alive_ms;           /* CLOCK_MONOTONIC ms of the last sign of life (output, an
                                   accepted report line); started_ms until the first */
    /* From the report file (last value wins); simulated ones grow linearly. */
    double cost_usd;
    uint64_t tokens_in; /* fresh (uncached) input */
    uint64_t tokens_cache_read, tokens_cache_write;
    uint64_t tokens_out;
    char model[FZ_RFILE_MODEL_MAX];
    int progress_pct; /* -1 until reported */
    char progress_text[FZ_RFILE_PROGRESS_MAX];
    char summary[FZ_AGENT_REPORT_LINE_MAX + 1];
    fz_class_t cls;          /* the failure class the agent reported; FZ_CLASS_NONE if none */
    double reset_at;         /* unix seconds the agent's limit resets at; 0 if not reported */
    double retry_after;      /* seconds the provider asked to wait; 0 if not reported */
    uint64_t report_lines;   /* accepted report lines */
    uint64_t report_ignored; /* unknown keys, malformed and overlong lines */
    uint64_t output_bytes;   /* stdout + stderr bytes seen */
    int log_errno;           /* first log write error (logging then stops), or 0 */
    bool log_made;           /* the log file was opened: the agent printed something */
} fz_agent_status_t;

/* Makes this process a child subreaper, so descendants that call setsid() reparent to it
   and can be killed and reaped, and puts SIGCHLD back to SIG_DFL if it was ignored (possibly
   inherited), which would auto-reap agents. Call once at start-up. 0, or -1 with errno. */
int fz_agent_init_subreaper(void);

/* CLOCK_MONOTONIC in milliseconds: the clock every now_ms argument uses. */
int64_t fz_agent_now_ms(void);

/* Starts an agent. Returns it, or NULL with a one-line reason in err (bad options, workdir
   or log not creatable, the shell cannot be executed, out of memory). */
fz_agent_t *fz_agent_start(const fz_agent_opts_t *opts, char *err, size_t errlen);

/* A simulated agent: no process, driven only by the clock. opts may be NULL; only
   tail_max, timeout_s, max_cost, stall_kill_s and log_path are used. NULL on error, reason
   in err. */
fz_agent_t *fz_agent_simulate(const fz_agent_sim_t *sim, const fz_agent_opts_t *opts, char *err,
                              size_t errlen);

/* Kills whatever is still running (SIGKILL to the group, then the sweep), reaps it, frees
   everything and nulls *self_p. Blocks only if it had to kill: about 1 ms normally, at most
   about 4 s for processes that will not die. */
void fz_agent_destroy(fz_agent_t **self_p);

/* Fills fds (events POLLIN/POLLOUT) with what the caller should poll; returns how many,
   at most FZ_AGENT_MAX_POLLFDS (0 when simulated or over): poll(2)'s (fz_net_wait's) own;
   for zmq_poll, map POLLIN to ZMQ_POLLIN and POLLOUT to ZMQ_POLLOUT (the values differ). */
int fz_agent_pollfds(fz_agent_t *self, struct pollfd *fds, int max);

/* Milliseconds until the agent needs a pump (deadline, stall kill, kill escalation, report
   re-read), 0 if due now, -1 if nothing is pending. */
int fz_agent_timeout_ms(fz_agent_t *self, int64_t now_ms);

/* Does all pending work without blocking: writes the prompt, reads output and the report
   file, enforces timeout / cost cap / stall kill / kill escalation, reaps. */
void fz_agent_pump(fz_agent_t *self, int64_t now_ms);

/* True once the agent is over and everything it started is reaped. */
bool fz_agent_done(fz_agent_t *self);

/* Stops a running agent: outcome FZ_AGENT_CANCELLED with reason (NULL = "cancelled").
   A real agent gets SIGTERM now and SIGKILL after the grace; keep pumping until done.
   A simulated one is over at once. Ignored if already stopping or over. */
void fz_agent_cancel(fz_agent_t *self, const char *reason);

/* Live status, final once fz_agent_done(). Owned by the agent. */
const fz_agent_status_t *fz_agent_status(fz_agent_t *self);

/* Milliseconds since the agent last showed life (now_ms - status.alive_ms, at least 0); 0
   once it is over or for NULL. */
int64_t fz_agent_idle_ms(fz_agent_t *self, int64_t now_ms);

/* "running", else the protocol's name of the outcome (fz_outcome_name): "exited",
   "signaled", "timeout", "cost-cap", "cancelled", "spawn-failed", "stalled". */
const char *fz_agent_outcome_name(fz_agent_outcome_t outcome);

/* The last tail_max bytes of output, contiguous and NUL-terminated (the output itself may
   contain NULs: use *len). Owned by the agent. */
const char *fz_agent_tail(fz_agent_t *self, size_t *len);

/* Copies output produced since the previous call into buf (not NUL-terminated) and returns
   its length, at most max. When more is pending than fits (or than the tail still holds),
   the oldest part is dropped and replaced by a line "[fz: N bytes of output skipped]"
   (max >= 64 always leaves room for it). */
size_t fz_agent_take_new_output(fz_agent_t *self, char *buf, size_t max);

/* The pid of the agent's shell, which leads its process group: the group id. The shell is
   the keeper's child, not ours. 0 if simulated. It may already be reaped: never signal or
   wait for it yourself, use fz_agent_cancel(). */
pid_t fz_agent_pid(fz_agent_t *self);

#endif
