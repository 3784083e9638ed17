/*  fz_keeper: the keeper process and its start; see fz_keeper.h.

    Async-signal-safety: everything called from s_keeper_main on runs in the forked child and
    must stay async-signal-safe (no malloc, stdio, locks or errno-reporting helpers of ours):
    hence its own s_keeper_default instead of sigaction, and raw loops instead of fz_util's
    helpers. What it borrows is safe by contract: fz_clock_ms (clock_gettime only) and
    fz_proctab (read, getdents64, kill). */

#include "fz_keeper.h"
#include "fz_proctab.h"
#include "fz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if !defined(__GLIBC__)
#error "fz_keeper needs glibc >= 2.34 (_Fork, closefrom)"
#elif !__GLIBC_PREREQ(2, 34)
#error "fz_keeper needs glibc >= 2.34 (_Fork, closefrom)"
#endif

/* ---------------------------------------------------------------- the keeper process

   The keeper is forked from the worker (with _Fork: no atfork handlers run) and never execs,
   so it is a copy of a process that had other threads: it uses only async-signal-safe calls
   (no malloc, stdio or locks) on memory prepared before the fork. It leads the agent's
   process group, is a child subreaper, keeps every signal but SIGCHLD blocked for its whole
   life (signals sent to the group stay pending on it, never acted on), and starts the shell
   with vfork + execve. Then it waits for two things at once:
   - its children: when the shell exits, its wait status goes to the worker (FZ_KEEPER_EXITED).
     The keeper stays while any descendant lives (orphans reparent to it, their subreaper),
     so the group keeps its guard during a grace period, then exits mirroring the shell;
   - the death pipe: only the worker holds its write end (close-on-exec, closed in the keeper
     before the shell starts), so read() returns 0 exactly when the worker process is gone,
     however it died. The keeper then SIGKILLs its group and every descendant, and exits. */

typedef struct {
    const char *shell;
    char *const *argv;
    char *const *envp;
    const char *workdir;
    int in_fd, out_fd; /* become the agent's stdin, and its stdout + stderr */
    int death_fd;      /* read end of the death pipe */
    int status_fd;     /* write end of the status pipe */
    uint64_t reset;    /* signals (bit N-1: signal N) the agent must get back at SIG_DFL */
    bool reset_known;  /* reset was worked out before the fork (the spawner's, once) */
} s_keeper_args_t;

#define S_KEEPER_DEATH_FD 3
#define S_KEEPER_STATUS_FD 4
#define S_KEEPER_FREE_FD 5

static void s_keeper_on_child(int sig)
{
    (void)sig; /* only there to interrupt ppoll */
}

static void s_keeper_send(int fd, int32_t kind, int32_t value)
{
    fz_keeper_msg_t msg = {kind, value};
    while (write(fd, &msg, sizeof msg) < 0 && errno == EINTR)
        ;
}

static __attribute__((noreturn)) void s_keeper_fail(int status_fd, int err)
{
    s_keeper_send(status_fd, FZ_KEEPER_START_FAILED, err);
    _exit(127);
}

/* A raw rt_sigaction to SIG_DFL (an all-zero kernel sigaction on every architecture):
   sanitizer runtimes intercept sigaction() and keep their own SIGSEGV handler, which would
   turn the mirrored death into an error report. */
static void s_keeper_default(int sig)
{
    unsigned long zero[8] = {0};
    syscall(SYS_rt_sigaction, sig, zero, NULL, (size_t)(_NSIG / 8));
}

/* Exits as the shell did: same exit code, or death by the same signal (never with a core
   dump of the keeper). */
static __attribute__((noreturn)) void s_keeper_mirror(int wstatus)
{
    if (WIFSIGNALED(wstatus)) {
        int sig = WTERMSIG(wstatus);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        s_keeper_default(sig);
        kill(getpid(), sig); /* pending: every signal is blocked */
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        _exit(128 + sig); /* not reached for a signal that can kill */
    }
    _exit(WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 127);
}

/* SIGKILL to a member of our group that is not our child. Through a pidfd where the kernel
   has them, checking the group again once the pidfd pins the process, so that a pid freed
   and reused between the scan and the signal is never hit. */
static void s_keeper_kill_member(pid_t pid, pid_t self)
{
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_send_signal)
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        fz_proc_t proc;
        if (fz_proctab_read(pid, &proc) && proc.pgrp == self)
            syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        close(fd);
        return;
    }
    if (errno != ENOSYS)
        return; /* gone already */
#else
    (void)self;
#endif
    kill(pid, SIGKILL);
}

typedef struct {
    pid_t self;
    int seen;
} s_keeper_pass_t;

static bool s_keeper_pass_visit(const fz_proc_t *proc, void *arg)
{
    s_keeper_pass_t *pass = arg;
    if (proc->pid == pass->self || proc->state == 'Z' || proc->state == 'X')
        return true;
    if (proc->ppid == pass->self) {
        kill(proc->pid, SIGKILL);
        pass->seen++;
    } else if (proc->pgrp == pass->self) {
        s_keeper_kill_member(proc->pid, pass->self);
        pass->seen++;
    }
    return true;
}

/* One pass over /proc: SIGKILL to our children (safe: unreaped children keep their pids)
   and to the other members of our group. Returns how many live ones it saw, -1 if /proc
   cannot be read. */
static int s_keeper_kill_pass(pid_t self)
{
    s_keeper_pass_t pass = {self, 0};
    return fz_proctab_each(s_keeper_pass_visit, &pass) < 0 ? -1 : pass.seen;
}

/* The worker is gone: kill the group and every descendant. Each pass kills the group and
   our children; a descendant that left the group is our child as soon as its parent died,
   so the next pass gets it. Bounded: a process in uninterruptible sleep cannot die. */
static __attribute__((noreturn)) void s_keeper_guard(pid_t self)
{
    int64_t give_up = fz_clock_ms() + FZ_PROCTAB_SWEEP_MAX_MS;
    for (;;) {
        int seen = s_keeper_kill_pass(self);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (seen <= 0 || fz_clock_ms() >= give_up)
            break;
        struct timespec tick = {0, 1000000L};
        nanosleep(&tick, NULL);
    }
    kill(0, SIGKILL); /* whatever is left of the group, and ourselves */
    _exit(137);
}

/* The vfork child: the agent itself. Every signal that is not at its default back to
   SIG_DFL before the mask opens (an ignored one would survive the exec, and a caught one
   pending now would run a handler of the worker's in this child instead of reaching the
   agent), empty mask, cwd the workdir. On failure the errno goes through err_fd, which
   close-on-exec closes on success. */
static __attribute__((noreturn)) void s_keeper_exec(const s_keeper_args_t *args, int err_fd)
{
    for (int sig = 1; sig < _NSIG && sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && (args->reset >> (sig - 1) & 1))
            s_keeper_default(sig);
    int err = 0;
    if (chdir(args->workdir) < 0)
        err = errno;
    else {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(args->shell, args->argv, args->envp);
        err = errno;
    }
    while (write(err_fd, &err, sizeof err) < 0 && errno == EINTR)
        ;
    _exit(127);
}

/* Its own function, so that nothing in the keeper's frame lives across the vfork. */
static __attribute__((noinline)) pid_t s_keeper_vfork(const s_keeper_args_t *args, int err_fd)
{
    pid_t pid = vfork();
    if (pid == 0)
        s_keeper_exec(args, err_fd);
    return pid;
}

/* Arranges the keeper's descriptors: the agent's stdio on 0..2, the death pipe on 3, the
   status pipe on 4 (both close-on-exec), nothing else. */
static int s_keeper_fds(const s_keeper_args_t *args, int *status)
{
    int death = args->death_fd, moved;
    *status = args->status_fd;
    if (dup2(args->in_fd, STDIN_FILENO) < 0 || dup2(args->out_fd, STDOUT_FILENO) < 0 ||
        dup2(args->out_fd, STDERR_FILENO) < 0)
        return -1;
    if (*status == S_KEEPER_DEATH_FD) {
        if ((moved = fcntl(*status, F_DUPFD_CLOEXEC, S_KEEPER_FREE_FD)) < 0)
            return -1;
        *status = moved;
    }
    if (death != S_KEEPER_DEATH_FD && dup3(death, S_KEEPER_DEATH_FD, O_CLOEXEC) < 0)
        return -1;
    if (*status != S_KEEPER_STATUS_FD) {
        if (dup3(*status, S_KEEPER_STATUS_FD, O_CLOEXEC) < 0)
            return -1;
        *status = S_KEEPER_STATUS_FD;
    }
    if (close_range(S_KEEPER_FREE_FD, ~0U, 0) < 0)
        closefrom(S_KEEPER_FREE_FD);
    return 0;
}

static __attribute__((noreturn)) void s_keeper_main(s_keeper_args_t *args)
{
    pid_t self = getpid();
    setpgid(0, 0); /* the parent does it too: whoever comes first */

    /* Every signal stays blocked (the worker blocked them around the fork) except SIGCHLD,
       and that one only inside ppoll. Signals sent to the group are for the agent: blocked,
       they stay pending here and never act, whatever their disposition (what the worker
       installed is inherited and never runs), so nothing needs to be ignored one by one. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_handler = s_keeper_on_child;
    action.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
    /* What the agent must get back at SIG_DFL: one read of /proc instead of 64 sigactions
       (all of them if it cannot be read), or what the spawner read once for every keeper. */
    if (!args->reset_known && !fz_proctab_self_sigs(&args->reset))
        args->reset = ~(uint64_t)0;
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* Wakes a keeper stopped with its group (kill -STOP 0) when the worker's thread ends;
       the death pipe then says the rest. */
    prctl(PR_SET_PDEATHSIG, SIGCONT, 0, 0, 0);

    int status_fd;
    if (s_keeper_fds(args, &status_fd) < 0)
        s_keeper_fail(status_fd, errno);
    int err_pipe[2];
    if (pipe2(err_pipe, O_CLOEXEC) < 0)
        s_keeper_fail(S_KEEPER_STATUS_FD, errno);
    pid_t shell = s_keeper_vfork(args, err_pipe[1]);
    int vfork_errno = errno;
    close(err_pipe[1]);
    int exec_errno = 0;
    ssize_t got = shell > 0 ? read(err_pipe[0], &exec_errno, sizeof exec_errno) : 0;
    close(err_pipe[0]);
    /* The agent's pipes are the agent's alone: it must see EPIPE and EOF as it would. */
    close(STDIN_FILENO);
    close(STDOUT_FILENO);
    close(STDERR_FILENO);
    if (shell < 0)
        s_keeper_fail(S_KEEPER_STATUS_FD, vfork_errno);
    if (got == (ssize_t)sizeof exec_errno) {
        waitpid(shell, NULL, 0);
        s_keeper_fail(S_KEEPER_STATUS_FD, exec_errno);
    }
    s_keeper_send(S_KEEPER_STATUS_FD, FZ_KEEPER_STARTED, shell);

    sigset_t wait_mask;
    sigfillset(&wait_mask);
    sigdelset(&wait_mask, SIGCHLD);
    bool shell_done = false;
    int shell_status = 0;
    for (;;) {
        pid_t r;
        int wstatus;
        while ((r = waitpid(-1, &wstatus, WNOHANG)) > 0)
            if (r == shell) {
                shell_done = true;
                shell_status = wstatus;
                s_keeper_send(S_KEEPER_STATUS_FD, FZ_KEEPER_EXITED, wstatus);
            }
        if (r < 0 && errno == ECHILD && shell_done) {
            /* Nothing of the agent is left: every descendant was our child (we are their
               subreaper) and all are reaped, so the worker need not sweep after us. */
            s_keeper_send(S_KEEPER_STATUS_FD, FZ_KEEPER_EMPTY, 0);
            s_keeper_mirror(shell_status);
        }
        struct pollfd death = {S_KEEPER_DEATH_FD, POLLIN, 0};
        if (ppoll(&death, 1, NULL, &wait_mask) > 0) {
            char byte;
            ssize_t n = read(S_KEEPER_DEATH_FD, &byte, 1);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                s_keeper_guard(self);
        }
    }
}

int fz_keeper_read(int fd, fz_keeper_msg_t *msg)
{
    ssize_t n;
    do
        n = read(fd, msg, sizeof *msg);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof *msg)
        return 1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return -1;
}

/* Keeps our pipe ends off 0..2: if the worker runs with stdio closed, pipe2 could hand out
   0, 1 or 2 and the child's dup2 onto its stdio would clobber them. */
static int s_above_stdio(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fd);
    errno = saved;
    return moved;
}

static int s_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    fds[0] = s_above_stdio(fds[0]);
    fds[1] = s_above_stdio(fds[1]);
    if (fds[0] >= 0 && fds[1] >= 0)
        return 0;
    int saved = errno;
    fz_close(&fds[0]);
    fz_close(&fds[1]);
    errno = saved;
    return -1;
}

/* For a pipe end made just now: no status flag but the access mode (which F_SETFL leaves
   alone) is set yet, so there is nothing to read back first. */
static int s_nonblock(int fd)
{
    return fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* ---------------------------------------------------------------- the spawner

   fz-keeper --spawner: a small process, started once per worker, that forks each keeper with
   CLONE_PARENT, so that the keeper is the worker's own child exactly as when the worker
   forks it (same pid safety, waitid, SIGCHLD, death pipe, subreaper) while the worker itself
   never forks: a fork of the worker copies its 186 mappings and write-protects its pages
   (copy-on-write faults in the worker after each attempt), and the keeper then faults every
   text page of a large program in again; a fork of this process costs a fraction of that.
   One request per keeper on a SOCK_SEQPACKET socket: a s_req_head_t, then shell, command,
   workdir and nenv environment strings, each NUL-terminated, with the keeper's four pipe ends
   (stdin, output, death, status) in SCM_RIGHTS; the answer is an int32: the keeper's pid, or
   -errno. The spawner has every signal blocked and at its default (the keeper inherits both),
   and exits when the worker's end of the socket closes. */

#define S_REQ_MAGIC 0x316b7a66u  /* "fzk1" */
#define S_REQ_MAX (512 * 1024)   /* larger requests fork as before */
#define S_REQ_ENV_MAX 4096       /* environment strings per request */
#define S_REQ_FDS 4              /* stdin, output, death, status */
#define S_SPAWNER_SOCK 3         /* the spawner's end, in the spawner */
#define S_SPAWNER_REPLY_MS 10000 /* a spawner slower than this is taken for dead */

typedef struct {
    uint32_t magic;
    uint32_t nenv;
    uint32_t nbytes; /* of the strings that follow */
} s_req_head_t;

static int s_spawner_fd = -1; /* the worker's end; -1: keepers are forked by the worker */
static pid_t s_spawner;
static pid_t s_spawner_owner; /* the process that started it: a fork of it inherits the socket,
                                 but the spawner's keepers would be its parent's children */

/* One request in: 0 with the strings in buf and the descriptors in fds, 1 on EOF, -1 on a
   malformed one (its descriptors closed). */
static int s_spawner_recv(int sock, char *buf, size_t size, s_req_head_t *head, int *fds)
{
    struct iovec iov[2] = {{head, sizeof *head}, {buf, size}};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(S_REQ_FDS * sizeof(int))];
    } ctl;
    struct msghdr m = {
        .msg_iov = iov, .msg_iovlen = 2, .msg_control = &ctl, .msg_controllen = sizeof ctl};
    ssize_t n;
    do
        n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return 1;
    int got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (got < S_REQ_FDS)
                    fds[got++] = fd;
                else
                    close(fd);
            }
        }
    bool ok = got == S_REQ_FDS && !(m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) &&
              (size_t)n >= sizeof *head && head->magic == S_REQ_MAGIC &&
              head->nbytes == (size_t)n - sizeof *head && head->nbytes > 0 &&
              buf[head->nbytes - 1] == '\0' && head->nenv < S_REQ_ENV_MAX;
    if (!ok)
        for (int i = 0; i < got; i++)
            close(fds[i]);
    return ok ? 0 : -1;
}

/* Points strs[0..want) at the NUL-terminated strings of buf[0..len); false if fewer. */
static bool s_split(char *buf, size_t len, char **strs, size_t want)
{
    size_t k = 0;
    for (size_t off = 0; off < len && k < want; k++) {
        strs[k] = buf + off;
        off += strlen(buf + off) + 1;
    }
    return k == want;
}

void fz_keeper_spawner_main(int sock)
{
    static char buf[S_REQ_MAX];
    static char *strs[3 + S_REQ_ENV_MAX + 1];
    /* Every keeper starts with this process's dispositions plus its own SIGCHLD handler
       (s_keeper_main), so what its agent must get back at SIG_DFL is read once here instead
       of from /proc in every keeper. */
    uint64_t reset = ~(uint64_t)0;
    if (fz_proctab_self_sigs(&reset))
        reset |= (uint64_t)1 << (SIGCHLD - 1);
    for (;;) {
        s_req_head_t head;
        int fds[S_REQ_FDS];
        int rc = s_spawner_recv(sock, buf, sizeof buf, &head, fds);
        if (rc > 0)
            _exit(0); /* the worker is gone */
        int32_t reply = -EINVAL;
        if (rc == 0 && s_split(buf, head.nbytes, strs, 3 + head.nenv)) {
            strs[3 + head.nenv] = NULL;
            char *argv[] = {strs[0], (char *)"-c", strs[1], NULL};
            s_keeper_args_t args = {strs[0], argv,   strs + 3, strs[2], fds[0],
                                    fds[1],  fds[2], fds[3],   reset,   true};
            /* A fork whose parent is ours: the worker's. The child runs on a copy of this
               stack, as after fork. */
            long pid =
                syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), NULL, NULL, NULL, 0UL);
            if (pid == 0)
                s_keeper_main(&args);
            reply = pid > 0 ? (int32_t)pid : -errno;
        }
        if (rc == 0)
            for (int i = 0; i < S_REQ_FDS; i++)
                close(fds[i]);
        while (send(sock, &reply, sizeof reply, MSG_NOSIGNAL) < 0 && errno == EINTR)
            ;
    }
}

/* The spawner failed or is gone: from now on keepers are forked here. It is reaped now (our
   unreaped child, so its pid is safe to signal): the sweep after an agent no longer runs
   when the keeper says nothing of the agent is left, and would not reap it. */
static void s_spawner_stop(void)
{
    fz_close(&s_spawner_fd);
    if (s_spawner > 0) {
        kill(s_spawner, SIGKILL);
        while (waitpid(s_spawner, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    s_spawner = 0;
}

pid_t fz_keeper_spawner_pid(void)
{
    return s_spawner_fd >= 0 && getpid() == s_spawner_owner ? s_spawner : 0;
}

int fz_keeper_spawner_start(const char *path, char *err, size_t errlen)
{
    int sv[2];
    if (s_spawner_fd >= 0)
        return 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return fz_errf(err, errlen, "cannot create the keeper spawner's socket: %s",
                       strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t all;
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, sv[1], S_SPAWNER_SOCK);
    posix_spawn_file_actions_addclosefrom_np(&fa, S_SPAWNER_SOCK + 1);
    /* Every signal blocked and at its default: what a keeper starts with (s_keeper_main). */
    posix_spawnattr_setsigmask(&attr, &all);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {(char *)path, (char *)"--spawner", NULL}, *envp[] = {NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    if (rc != 0) {
        close(sv[0]);
        return fz_errf(err, errlen, "cannot start the keeper spawner %s: %s", path, strerror(rc));
    }
    s_spawner_fd = sv[0];
    s_spawner = pid;
    s_spawner_owner = getpid();
    return 0;
}

/* Asks the spawner for a keeper. The pid, 0 when no keeper was made (too large, no spawner,
   refused, clone failed: the caller forks), or -1 when the spawner failed after taking it
   (the caller must not start the agent again on these pipes: a keeper may exist; it ends
   when the caller closes its death pipe, and the final sweep reaps it). */
static pid_t s_spawner_ask(const char *shell, const char *command, char *const *envp,
                           const char *workdir, const int fds[S_REQ_FDS])
{
    if (s_spawner_fd < 0 || getpid() != s_spawner_owner)
        return 0;
    size_t nenv = 0, nbytes = strlen(shell) + strlen(command) + strlen(workdir) + 3;
    for (; envp[nenv]; nenv++)
        nbytes += strlen(envp[nenv]) + 1;
    if (nbytes > S_REQ_MAX || nenv >= S_REQ_ENV_MAX)
        return 0;
    char *body = malloc(nbytes), *p = body;
    if (!body)
        return 0;
    const char *fixed[] = {shell, command, workdir};
    for (size_t i = 0; i < 3 + nenv; i++) {
        const char *str = i < 3 ? fixed[i] : envp[i - 3];
        size_t len = strlen(str) + 1;
        memcpy(p, str, len);
        p += len;
    }
    s_req_head_t head = {S_REQ_MAGIC, (uint32_t)nenv, (uint32_t)nbytes};
    struct iovec iov[2] = {{&head, sizeof head}, {body, nbytes}};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(S_REQ_FDS * sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {
        .msg_iov = iov, .msg_iovlen = 2, .msg_control = &ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(S_REQ_FDS * sizeof(int));
    memcpy(CMSG_DATA(c), fds, S_REQ_FDS * sizeof(int));
    ssize_t n;
    do
        n = sendmsg(s_spawner_fd, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    free(body);
    if (n < 0) {
        if (errno != EMSGSIZE)
            s_spawner_stop(); /* gone: from now on the worker forks */
        return 0;
    }
    int32_t reply = 0;
    struct pollfd pfd = {s_spawner_fd, POLLIN, 0};
    int64_t until = fz_clock_ms() + S_SPAWNER_REPLY_MS;
    do {
        int64_t left = until - fz_clock_ms();
        n = poll(&pfd, 1, left > 0 ? (int)left : 0) > 0
                ? recv(s_spawner_fd, &reply, sizeof reply, 0)
                : -1;
    } while (n < 0 && errno == EINTR && fz_clock_ms() < until);
    if (n != (ssize_t)sizeof reply || reply == 0) {
        s_spawner_stop();
        return -1;
    }
    if (reply < 0) {
        errno = -reply;
        return 0; /* no keeper was made (a clone that failed, a refused request): fork */
    }
    return (pid_t)reply;
}

/* ---------------------------------------------------------------- the start (in the worker)

   The keeper does what
   PITFALLS asks before the exec: own process group, empty signal mask, every handler back to
   default, stdio from our pipes, every other descriptor closed, cwd the workdir, a failed
   chdir or exec reported back (through us, as this function's error). */
static int s_spawn(fz_keeper_t *self, const char *shell, const char *command, char *const *envp,
                   const char *workdir, int in_r, int out_w, char *err, size_t errlen)
{
    int death[2] = {-1, -1}, status[2] = {-1, -1};
    if (s_pipe(death) < 0 || s_pipe(status) < 0) {
        fz_errf(err, errlen, "cannot create pipes: %s", strerror(errno));
        fz_close(&death[0]), fz_close(&death[1]), fz_close(&status[0]), fz_close(&status[1]);
        return -1;
    }
    char *argv[] = {(char *)shell, (char *)"-c", (char *)command, NULL};
    s_keeper_args_t args = {shell, argv, envp, workdir, in_r, out_w, death[0], status[1], 0, false};
    self->started_ms = fz_clock_ms();
    int fds[S_REQ_FDS] = {in_r, out_w, death[0], status[1]};
    pid_t pid = s_spawner_ask(shell, command, envp, workdir, fds);
    int fork_errno = errno;
    if (pid == 0) {
        sigset_t all, old;
        sigfillset(&all);
        /* The keeper starts with every signal blocked: no handler of ours may run in it. */
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pid = _Fork();
        if (pid == 0)
            s_keeper_main(&args);
        fork_errno = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    fz_close(&death[0]);
    fz_close(&status[1]);
    self->death_fd = death[1];
    self->status_fd = status[0];
    if (pid < 0) {
        fz_close(&self->death_fd); /* a keeper the spawner may have made ends at this EOF */
        fz_close(&self->status_fd);
        return fz_errf(err, errlen, "cannot start the agent's keeper: %s", strerror(fork_errno));
    }
    /* Also from the parent, closing the race PITFALLS describes. */
    setpgid(pid, pid);

    fz_keeper_msg_t msg = {0, 0};
    int rc = fz_keeper_read(self->status_fd, &msg);
    if (rc == 1 && msg.kind == FZ_KEEPER_STARTED && s_nonblock(self->status_fd) == 0) {
        self->pid = pid;
        return 0;
    }
    if (rc == 1 && msg.kind == FZ_KEEPER_START_FAILED)
        fz_errf(err, errlen, "cannot execute %s in %s: %s", shell, workdir, strerror(msg.value));
    else
        fz_errf(err, errlen, "the agent's keeper died before starting %s", shell);
    /* Our unreaped child: its pid and group are still ours to signal. */
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    fz_close(&self->death_fd);
    fz_close(&self->status_fd);
    return -1;
}

int fz_keeper_start(fz_keeper_t *keeper, const char *shell, const char *command, char *const *envp,
                    const char *workdir, char *err, size_t errlen)
{
    *keeper = (fz_keeper_t){0, -1, -1, -1, -1, 0};
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    int rc = -1;
    if (s_pipe(in) < 0 || s_pipe(out) < 0 || s_nonblock(in[1]) < 0 || s_nonblock(out[0]) < 0)
        fz_errf(err, errlen, "cannot create pipes: %s", strerror(errno));
    else
        rc = s_spawn(keeper, shell, command, envp, workdir, in[0], out[1], err, errlen);
    fz_close(&in[0]);
    fz_close(&out[1]); /* else the worker would never see EOF on the output */
    if (rc == 0) {
        keeper->in_fd = in[1];
        keeper->out_fd = out[0];
    } else {
        fz_close(&in[1]);
        fz_close(&out[0]);
    }
    return rc;
}
