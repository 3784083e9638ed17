/*  fz_agent_int: the fz_agent_t struct, shared by the files of the agent supervisor and by
    nothing else (callers use fz_agent.h).

    Owns: the one struct and the helpers the supervisor's files call across each other:
    fz_agent.c (supervision: pump, limits, reaping, sweep, output, destroy), fz_agent_start.c
    (starting a real agent: options, files, environment) and fz_sim.c (the simulated agent).
    The keeper, the process table and the report parser are modules of their own, which
    know nothing of this struct. */

#ifndef FZ_AGENT_INT_H
#define FZ_AGENT_INT_H

#include "fz_agent.h"
#include "fz_keeper.h"
#include "fz_rfile.h"
#include "fz_sim.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define FZ_AGENT_IOBUF (64 * 1024)   /* bytes read at once from the output and the report */
#define FZ_AGENT_REPORT_EVERY_MS 250 /* how often the report file is read */
#define FZ_AGENT_TAIL_MAX_LIMIT ((size_t)256 * 1024 * 1024)
#define FZ_AGENT_MS_MAX ((int64_t)1 << 50) /* longer than anyone waits; sums do not overflow */

/* Where an agent is in its life: the one state of the supervision. In order: a state before
   FZ_AGENT_S_LOST may signal the group (its leader is our unreaped child). A simulated agent
   uses only RUNNING and DONE. ENDED and LOST last only within one pump. */
typedef enum {
    FZ_AGENT_S_RUNNING,  /* the shell runs; no stop asked */
    FZ_AGENT_S_STOPPING, /* SIGTERM sent to the group; SIGKILL due at kill_at_ms */
    FZ_AGENT_S_KILLING,  /* SIGKILL sent; waiting for the keeper's word */
    FZ_AGENT_S_LINGER,   /* the shell ended during a stop: the rest of the group keeps its
                            grace until it is gone or the SIGKILL is due */
    FZ_AGENT_S_ENDED,    /* the leader ended: reap it and settle the outcome now */
    FZ_AGENT_S_LOST,     /* the keeper was reaped by someone else: its ids are not ours */
    FZ_AGENT_S_SWEEP,    /* reaped; killing and reaping escaped children of this process */
    FZ_AGENT_S_DONE,     /* descriptors closed; status, tail and new output stay readable */
} fz_agent_state_t;

struct fz_agent_t {
    fz_agent_status_t status;
    fz_agent_state_t state;
    bool simulated;
    bool counted; /* included in s_live_agents */
    int64_t timeout_ms;
    int64_t stall_kill_ms; /* 0 = none */
    int64_t grace_ms;
    double max_cost;
    char *workdir; /* absolute */
    char *report_path;

    pid_t pid;          /* the shell: the group leader, so also the process group id */
    fz_keeper_t keeper; /* its keeper: ctl_fd carries its reports and our requests */
    bool keeper_gone;   /* its socket closed: it died, or was ended here */
    bool poll_status;   /* ctl_fd goes to the caller's poll (else: looked at on a timer) */
    int shell_wstatus;  /* the shell's wait status as the keeper reported it, -1 until then
                           (wait statuses are never negative) */
    bool tree_empty;    /* the keeper said it reaped every descendant: no sweep here */
    bool signalled;     /* a signal went to the keeper for the group: the end is ours to ask */
    fz_agent_outcome_t stop_outcome;
    int64_t kill_at_ms;
    int64_t group_check_ms;
    int64_t sweep_until_ms;

    int in_fd; /* our end of the agent's stdin */
    char *prompt;
    size_t prompt_len, prompt_off;

    int out_fd; /* our end of the agent's stdout + stderr */
    int log_fd;
    char *log_path; /* opened at the first output (log_fd -1 until then); NULL = no log */
    char *iobuf;
    /* Sliding tail: up to 2 * tail_max bytes, the newest tail_max of them are "the tail";
       sliding costs one memmove per tail_max bytes and keeps the tail contiguous. */
    char *tail;
    size_t tail_max, tail_len;
    uint64_t taken; /* output_bytes already handed out by take_new_output */

    int report_fd;
    off_t report_off;
    int64_t report_due_ms;
    fz_rfile_t report; /* the parser, fed what the file gains */

    fz_sim_plan_t sim; /* a simulated agent's run */
    int sim_exit_code;
    int64_t sim_last_ms;
    char *sim_summary;
    fz_class_t sim_cls; /* what a failing simulation reports */
    double sim_reset_at, sim_retry_after;
};

/* A new agent with the options' limits and an empty tail, not started: NULL on error, with
   the reason in err (fz_agent_start.c). */
fz_agent_t *fz_agent_new(const fz_agent_opts_t *opts, bool simulated, char *err, size_t errlen);
/* Checks opts (simulated: only what a simulation uses); 0, or -1 with the reason in err. */
int fz_agent_check_opts(const fz_agent_opts_t *opts, bool simulated, char *err, size_t errlen);
/* 0 if v is finite and >= 0, else -1 with "NAME must be ..." in err. */
int fz_agent_check_number(double v, const char *name, char *err, size_t errlen);
/* Sets the log (appending, its folder created now) if log_path is set; the file itself is made
   at the first byte of output. 0 or -1 with err. */
int fz_agent_open_log(fz_agent_t *self, const char *log_path, char *err, size_t errlen);

/* Seconds to milliseconds: 0 for none (<= 0, NaN), at least 1 otherwise, at most
   FZ_AGENT_MS_MAX (fz_agent.c, as are the following). */
int64_t fz_agent_ms(double seconds);
/* Counts a started real agent among the process's live ones (see s_live_agents). */
void fz_agent_count_live(fz_agent_t *self);
/* Output from the agent: to the log, the tail and the byte count. */
void fz_agent_output(fz_agent_t *self, const char *data, size_t n);
/* Writes what the stdin pipe takes of the prompt; closes it when all is written. */
void fz_agent_feed_stdin(fz_agent_t *self);
/* The end: the pipe drained, every descriptor closed, state FZ_AGENT_S_DONE. Idempotent. */
void fz_agent_end(fz_agent_t *self);

#endif
