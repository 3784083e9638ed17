/*  fz_keeper: the small process that supervises an agent's process tree for the worker, and
    stays for the next agent.

    Owns: the keeper's code, which runs in a child forked without exec (from the worker, or
    from the keeper spawner with the worker as its parent) and so calls only
    async-signal-safe functions (see fz_keeper.c); the keepers of this process (one kept idle
    between agents, the others ended when their agent is); the requests and messages on a
    keeper's control socket; and the spawner. What the keeper does, and what it catches when
    the worker dies, is told in fz_agent.h ("The keeper"). The supervision (when to signal,
    end and sweep) is fz_agent's. */

#ifndef FZ_KEEPER_H
#define FZ_KEEPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What the keeper tells the worker. */
typedef enum {
    FZ_KEEPER_STARTED = 1,      /* value: the shell's pid */
    FZ_KEEPER_START_FAILED = 2, /* value: errno of the chdir, vfork or exec */
    FZ_KEEPER_EXITED = 3,       /* value: the shell's wait status (the shell is not reaped
                                   yet: its group id stays the agent's until the end) */
    FZ_KEEPER_DONE = 4,         /* the agent is ended: the group killed, the shell and every
                                   descendant reaped; value: how many would not die (0: nothing
                                   of the agent is left). After an END, or right after EXITED
                                   when no signal was asked for (an END crossing it gets a
                                   second DONE) */
} fz_keeper_kind_t;

/* One message: 8 bytes, one datagram of the control socket. */
typedef struct {
    int32_t kind; /* fz_keeper_kind_t */
    int32_t value;
} fz_keeper_msg_t;

/* An agent started under a keeper: the worker's ends. */
typedef struct {
    pid_t pid;          /* the keeper: our unreaped child */
    pid_t shell;        /* the agent's shell: the leader of the agent's process group */
    int in_fd;          /* the agent's stdin (nonblocking) */
    int out_fd;         /* the agent's stdout + stderr, merged (nonblocking) */
    int ctl_fd;         /* the keeper's messages, our requests (nonblocking); its EOF tells
                           the keeper that this process is gone */
    int64_t started_ms; /* fz_clock_ms () just before the request */
} fz_keeper_t;

/* Runs SHELL -c COMMAND with envp in workdir, stdin and stdout + stderr from new pipes, in
   a new process group led by the shell, under this process's idle keeper or a new one, and
   waits for the keeper's word that the shell was executed (a millisecond or two). 0 with
   *keeper filled, the caller owning in_fd and out_fd and the keeper until
   fz_keeper_release; or -1 with a one-line reason in err and nothing left open. Signals
   are blocked around a fork; the strings are only read. */
int fz_keeper_start(fz_keeper_t *keeper, const char *shell, const char *command, char *const *envp,
                    const char *workdir, char *err, size_t errlen);

/* Asks the keeper to send sig to the agent's group: it does while the shell is its
   unreaped child, so the group id cannot have been reused. 0, or -1 if the keeper is gone. */
int fz_keeper_signal(const fz_keeper_t *keeper, int sig);

/* Asks the keeper to end the agent: SIGKILL to the group, the shell reaped, then every
   descendant killed and reaped; FZ_KEEPER_DONE follows (it comes unasked when the shell
   exits with no signal asked for). 0, or -1 if the keeper is gone. */
int fz_keeper_end(const fz_keeper_t *keeper);

/* Gives the keeper back. reuse (its FZ_KEEPER_DONE came): it becomes this process's idle
   keeper when there is none, else it is ended. Otherwise it is ended: its socket closed (it
   kills whatever is left of its agent and exits), SIGKILL, reaped. ctl_fd is -1 after. */
void fz_keeper_release(fz_keeper_t *keeper, bool reuse);

/* Ends this process's idle keeper and its keeper spawner, and reaps both, so that nothing
   of this process outlives it (not even a zombie for init to reap). Call at exit, once no
   agent runs; a later start makes a new keeper, forked here. */
void fz_keeper_shutdown(void);

/* The idle keeper's pid (a child of this process that a sweep of its children must spare),
   else 0. */
pid_t fz_keeper_idle_pid(void);

/* Starts the keeper spawner (fz_keeper.c, "the spawner"): the program at path (fz-keeper,
   installed beside fz-worker) run as `fz-keeper --spawner`, a child of this process that from
   then on forks every keeper this process needs, with this process as the keeper's
   parent, so that this process itself never forks. Keepers are forked here as before when
   there is no spawner, and for good once the spawner is gone. 0, or -1 with a one-line
   reason in err (keepers are then forked here). Call once, before the first agent. */
int fz_keeper_spawner_start(const char *path, char *err, size_t errlen);

/* The spawner's pid while it serves (a child of this process that a sweep of its children
   must spare), else 0. */
pid_t fz_keeper_spawner_pid(void);

/* The spawner's body (fz-keeper --spawner): serves requests on sock until its other end
   closes, then exits. */
__attribute__((noreturn)) void fz_keeper_spawner_main(int sock);

/* Reads one message from a keeper's control socket. 1: a message; 0: none yet (nonblocking
   descriptor); -1: EOF or error, the keeper is gone. */
int fz_keeper_read(int fd, fz_keeper_msg_t *msg);

#endif
