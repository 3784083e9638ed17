/*  fz_keeper: the small process that leads each agent's process group.

    Owns: the keeper's code, which runs in a child forked without exec (from the worker, or
    from the keeper spawner with the worker as its parent) and so calls only
    async-signal-safe functions (see fz_keeper.c); the fork with its pipes and the start-up
    handshake; the spawner and its requests; and the messages the keeper sends the worker on
    its status pipe. What
    the keeper does, and what it catches when the worker dies, is told in fz_agent.h ("The
    keeper"). The supervision (when to signal, reap and sweep) is fz_agent's. */

#ifndef FZ_KEEPER_H
#define FZ_KEEPER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What the keeper tells the worker. */
typedef enum {
    FZ_KEEPER_STARTED = 1,      /* value: the shell's pid */
    FZ_KEEPER_START_FAILED = 2, /* value: errno of the chdir, vfork or exec */
    FZ_KEEPER_EXITED = 3,       /* value: the shell's wait status */
    FZ_KEEPER_EMPTY = 4,        /* just before the keeper exits by itself: every descendant
                                   of the agent has ended and been reaped (value 0) */
} fz_keeper_kind_t;

/* One message: 8 bytes, so each write and read is atomic on a pipe. */
typedef struct {
    int32_t kind; /* fz_keeper_kind_t */
    int32_t value;
} fz_keeper_msg_t;

/* A started keeper: the worker's ends of its pipes. */
typedef struct {
    pid_t pid;          /* the keeper: leader of the agent's group, so also the group id */
    int in_fd;          /* the agent's stdin (nonblocking) */
    int out_fd;         /* the agent's stdout + stderr, merged (nonblocking) */
    int status_fd;      /* the keeper's messages (nonblocking) */
    int death_fd;       /* hold until the keeper is reaped: its EOF tells the keeper we died */
    int64_t started_ms; /* fz_clock_ms () just before the fork */
} fz_keeper_t;

/* Forks a keeper that runs SHELL -c COMMAND with envp in workdir, stdin and stdout + stderr
   from new pipes, and waits for its word that the shell was executed (a millisecond or two).
   0 with *keeper filled, the caller owning its descriptors and its unreaped child; or -1
   with a one-line reason in err, nothing left open and no child left. Signals are blocked
   around the fork; the strings are only read. */
int fz_keeper_start(fz_keeper_t *keeper, const char *shell, const char *command, char *const *envp,
                    const char *workdir, char *err, size_t errlen);

/* Starts the keeper spawner (fz_keeper.c, "the spawner"): the program at path (fz-keeper,
   installed beside fz-worker) run as `fz-keeper --spawner`, a child of this process that from
   then on forks every keeper fz_keeper_start asks for, with this process as the keeper's
   parent, so that this process itself never forks. Keepers are forked here as before when a
   request cannot be made (too large, no spawner), and for good once the spawner is gone. 0,
   or -1 with a one-line reason in err (keepers are then forked here). Call once, before the
   first agent. */
int fz_keeper_spawner_start(const char *path, char *err, size_t errlen);

/* The spawner's pid while it serves (a child of this process that a sweep of its children
   must spare), else 0. */
pid_t fz_keeper_spawner_pid(void);

/* The spawner's body (fz-keeper --spawner): serves requests on sock until its other end
   closes, then exits. */
__attribute__((noreturn)) void fz_keeper_spawner_main(int sock);

/* Reads one message from the status pipe. 1: a message; 0: none yet (nonblocking
   descriptor); -1: EOF or error, the keeper is gone. */
int fz_keeper_read(int fd, fz_keeper_msg_t *msg);

#endif
