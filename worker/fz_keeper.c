/*  fz_keeper: the keeper process, its requests and the keepers of this process; see
    fz_keeper.h.

    Async-signal-safety: everything called from s_keeper_main on runs in a forked child and
    must stay async-signal-safe (no malloc, stdio, locks or errno-reporting helpers of ours):
    hence its own s_keeper_default instead of sigaction, and raw loops instead of fz_util's
    helpers. What it borrows is safe by contract: fz_clock_ms (clock_gettime only) and
    fz_proctab (read, getdents64, kill, waitpid). */

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

/* ---------------------------------------------------------------- requests

   On a keeper's control socket (SOCK_SEQPACKET: one request or message per datagram): a
   s_req_t, for FZ_REQ_START followed by the shell, command, workdir and nenv environment
   strings, each NUL-terminated, with the agent's stdin and stdout + stderr pipe ends in
   SCM_RIGHTS. The keeper answers a start with STARTED or START_FAILED, says EXITED when the
   shell exits, and answers an end with DONE (fz_keeper_msg_t). The spawner's socket carries
   FZ_REQ_KEEPER with one descriptor (the new keeper's end of its control socket) and gets
   an int32 back: the keeper's pid, or -errno. */

#define S_REQ_MAGIC 0x326b7a66u  /* "fzk2" */
#define S_REQ_MAX (512 * 1024)   /* the strings of one start */
#define S_REQ_ENV_MAX 4096       /* environment strings per start */
#define S_REQ_FDS 2              /* a start's: stdin, output */
#define S_KEEPER_CTL 3           /* the control socket, in the keeper */
#define S_SPAWNER_SOCK 3         /* the spawner's end, in the spawner */
#define S_SPAWNER_REPLY_MS 10000 /* a keeper or spawner slower than this is taken for dead */

enum { FZ_REQ_START = 1, FZ_REQ_SIGNAL = 2, FZ_REQ_END = 3, FZ_REQ_KEEPER = 4 };

typedef struct {
    uint32_t magic;
    uint32_t kind;
    int32_t value;   /* FZ_REQ_SIGNAL: the signal */
    uint32_t nenv;   /* FZ_REQ_START: environment strings */
    uint32_t nbytes; /* FZ_REQ_START: bytes of the strings that follow */
} s_req_t;

/* One request in: 0 with the strings in buf[0..head->nbytes) and up to maxfds descriptors
   in fds (*nfds of them), 1 on EOF, -1 on a malformed one (its descriptors closed), -2 when
   none is there after all (a nonblocking socket). */
static int s_recv_req(int sock, char *buf, size_t size, s_req_t *head, int *fds, int maxfds,
                      int *nfds)
{
    struct iovec iov[2] = {{head, sizeof *head}, {buf, size}};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct msghdr m = {
        .msg_iov = iov, .msg_iovlen = 2, .msg_control = &ctl, .msg_controllen = sizeof ctl};
    ssize_t n;
    do
        n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *nfds = 0;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -2;
    if (n <= 0)
        return 1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (*nfds < maxfds)
                    fds[(*nfds)++] = fd;
                else
                    close(fd);
            }
        }
    bool ok = !(m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && (size_t)n >= sizeof *head &&
              head->magic == S_REQ_MAGIC;
    if (ok && head->kind == FZ_REQ_START)
        ok = *nfds == S_REQ_FDS && head->nbytes == (size_t)n - sizeof *head && head->nbytes > 0 &&
             buf[head->nbytes - 1] == '\0' && head->nenv < S_REQ_ENV_MAX;
    else if (ok && head->kind == FZ_REQ_KEEPER)
        ok = *nfds == 1;
    if (!ok) {
        for (int i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
    }
    return ok ? 0 : -1;
}

static int s_send_req(int sock, const s_req_t *head, const void *body, size_t len, const int *fds,
                      int nfds)
{
    struct iovec iov[2] = {{(void *)head, sizeof *head}, {(void *)body, len}};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (nfds > 0) {
        m.msg_control = &ctl;
        m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(sock, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- the keeper process

   The keeper is forked from the worker (with _Fork: no atfork handlers run) or from the
   spawner, never execs, and serves one agent after another. A copy of a process that may
   have had other threads, it uses only async-signal-safe calls on memory prepared before the
   fork. It leads a process group of its own, is a child subreaper, and keeps every signal
   but SIGCHLD blocked for its whole life. For each start it vforks the shell, which makes
   itself the leader of a new process group before it execs: the agent's group. Then it
   waits for three things at once:
   - its children: when the shell exits, its wait status goes to the worker (EXITED) while
     the shell stays unreaped (waitid WNOWAIT), so its pid, which is the group id, cannot be
     reused: the keeper signals the group for the worker (SIGNAL) until the end. Other
     children (orphans of the agent: the keeper is their subreaper) are reaped as they die;
   - the end: SIGKILL to the group, the shell reaped, then its own children killed and
     reaped, pass after pass (an escapee whose parent died is its child by the next pass),
     bounded; DONE says how many would not die, and the keeper waits for the next start. It
     comes on the worker's END, or at once when the shell exits with no stop under way (no
     SIGNAL asked for: the worker would ask for the end at once anyway);
   - the control socket's EOF: only the worker holds its other end (close-on-exec, never
     given to an agent), so it comes exactly when the worker process is gone, however it
     died, or when the worker ends this keeper. The keeper then SIGKILLs the agent's group,
     its members and every descendant, and exits. */

typedef struct {
    uint64_t reset;   /* signals (bit N-1: signal N) an agent must get back at SIG_DFL */
    bool reset_known; /* worked out before the fork (the spawner's, once) */
} s_keeper_args_t;

/* What the vfork child needs: on the keeper's stack, read before the exec. */
typedef struct {
    const char *shell;
    char *const *argv;
    char *const *envp;
    const char *workdir;
    int in_fd, out_fd, err_fd;
    uint64_t reset;
} s_exec_t;

static void s_keeper_on_child(int sig)
{
    (void)sig; /* only there to interrupt ppoll */
}

static void s_keeper_send(int32_t kind, int32_t value)
{
    fz_keeper_msg_t msg = {kind, value};
    while (send(S_KEEPER_CTL, &msg, sizeof msg, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

/* A raw rt_sigaction to SIG_DFL (an all-zero kernel sigaction on every architecture):
   sanitizer runtimes intercept sigaction() and keep their own SIGSEGV handler. */
static void s_keeper_default(int sig)
{
    unsigned long zero[8] = {0};
    syscall(SYS_rt_sigaction, sig, zero, NULL, (size_t)(_NSIG / 8));
}

/* SIGKILL to a member of the group that is not our child. Through a pidfd where the kernel
   has them, checking the group again once the pidfd pins the process, so that a pid freed
   and reused between the scan and the signal is never hit. */
static void s_keeper_kill_member(pid_t pid, pid_t group)
{
#if defined(SYS_pidfd_open) && defined(SYS_pidfd_send_signal)
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        fz_proc_t proc;
        if (fz_proctab_read(pid, &proc) && proc.pgrp == group)
            syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        close(fd);
        return;
    }
    if (errno != ENOSYS)
        return; /* gone already */
#else
    (void)group;
#endif
    kill(pid, SIGKILL);
}

typedef struct {
    pid_t self, group;
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
    } else if (pass->group > 0 && proc->pgrp == pass->group) {
        s_keeper_kill_member(proc->pid, pass->group);
        pass->seen++;
    }
    return true;
}

/* The worker is gone: kill the agent's group and every descendant, and exit. Each pass over
   /proc kills the group's members and our children; a descendant that left the group is our
   child as soon as its parent died, so the next pass gets it. Bounded: a process in
   uninterruptible sleep cannot die. The group id is safe while shell is our unreaped child
   (the pidfd check covers the members). */
static __attribute__((noreturn)) void s_keeper_guard(pid_t self, pid_t shell)
{
    if (shell > 0)
        kill(-shell, SIGKILL);
    int64_t give_up = fz_clock_ms() + FZ_PROCTAB_SWEEP_MAX_MS;
    for (;;) {
        /* Idle, nothing is in a group of ours: our own children are all there can be. */
        s_keeper_pass_t pass = {self, shell, 0};
        int seen = shell == 0 ? fz_proctab_sweep_children(self)
                   : fz_proctab_each(s_keeper_pass_visit, &pass) < 0 ? -1
                                                                     : pass.seen;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (seen <= 0 || fz_clock_ms() >= give_up)
            break;
        struct timespec tick = {0, 1000000L};
        nanosleep(&tick, NULL);
    }
    _exit(0);
}

/* The vfork child: the agent itself. Its own process group; every signal that is not at its
   default back to SIG_DFL before the mask opens (an ignored one would survive the exec, and
   a caught one pending now would run a handler of ours in this child instead of reaching
   the agent); empty mask; stdio from the pipes, nothing else open; cwd the workdir. On
   failure the errno goes through err_fd, which close-on-exec closes on success. */
static __attribute__((noreturn)) void s_keeper_exec(const s_exec_t *x)
{
    int err = 0;
    setpgid(0, 0);
    for (int sig = 1; sig < _NSIG && sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && (x->reset >> (sig - 1) & 1))
            s_keeper_default(sig);
    if (dup2(x->in_fd, STDIN_FILENO) < 0 || dup2(x->out_fd, STDOUT_FILENO) < 0 ||
        dup2(x->out_fd, STDERR_FILENO) < 0)
        err = errno;
    else {
        /* everything but 0..2 and err_fd (above 3: the control socket is 3) */
        close_range(3, (unsigned)x->err_fd - 1, 0);
        close_range((unsigned)x->err_fd + 1, ~0U, 0);
        if (chdir(x->workdir) < 0)
            err = errno;
        else {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            execve(x->shell, x->argv, x->envp);
            err = errno;
        }
    }
    while (write(x->err_fd, &err, sizeof err) < 0 && errno == EINTR)
        ;
    _exit(127);
}

/* Its own function, so that nothing in the keeper's frame lives across the vfork. */
static __attribute__((noinline)) pid_t s_keeper_vfork(const s_exec_t *x)
{
    pid_t pid = vfork();
    if (pid == 0)
        s_keeper_exec(x);
    return pid;
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

/* A start: the shell in its own group, or START_FAILED with why. The shell's pid, or 0. */
static pid_t s_keeper_start(char *buf, const s_req_t *head, const int fds[S_REQ_FDS],
                            uint64_t reset)
{
    static char *strs[3 + S_REQ_ENV_MAX + 1];
    int err = EINVAL, err_pipe[2] = {-1, -1};
    pid_t pid = 0;
    bool split = s_split(buf, head->nbytes, strs, 3 + head->nenv);
    if (split && pipe2(err_pipe, O_CLOEXEC) < 0)
        err = errno;
    else if (split) {
        strs[3 + head->nenv] = NULL;
        char *argv[] = {strs[0], (char *)"-c", strs[1], NULL};
        s_exec_t x = {strs[0], argv, strs + 3, strs[2], fds[0], fds[1], err_pipe[1], reset};
        pid = s_keeper_vfork(&x);
        err = pid < 0 ? errno : 0;
        close(err_pipe[1]);
        if (pid > 0 && read(err_pipe[0], &err, sizeof err) == (ssize_t)sizeof err) {
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            pid = 0;
        } else if (pid > 0)
            err = 0;
        close(err_pipe[0]);
    }
    close(fds[0]); /* the agent's pipes are the agent's alone: EPIPE and EOF as it expects */
    close(fds[1]);
    if (pid > 0)
        s_keeper_send(FZ_KEEPER_STARTED, pid);
    else
        s_keeper_send(FZ_KEEPER_START_FAILED, err ? err : EINVAL);
    return pid > 0 ? pid : 0;
}

/* A child's end as a wait status (what waitpid would have said). */
static int s_wstatus(const siginfo_t *info)
{
    if (info->si_code == CLD_EXITED)
        return (info->si_status & 0xff) << 8;
    if (info->si_code == CLD_DUMPED)
        return (info->si_status & 0x7f) | 0x80;
    return info->si_status & 0x7f;
}

/* Reaps the children that ended, but not the shell: its exit is reported once, and it
   stays unreaped (with WNOWAIT) until the end. The shell, our first child, is found before
   any orphan that reparented to us later. */
static void s_keeper_children(pid_t shell, bool *exited)
{
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0)
            return;
        if (info.si_pid == shell) {
            if (!*exited)
                s_keeper_send(FZ_KEEPER_EXITED, s_wstatus(&info));
            *exited = true;
            return;
        }
        waitpid(info.si_pid, NULL, WNOHANG);
    }
}

/* The end of an agent: the group killed while the shell still holds its id, the shell
   reaped, then our children killed and reaped until none is left or the bound is reached.
   Returns how many would not die. */
static int s_keeper_end(pid_t self, pid_t shell)
{
    int64_t give_up = fz_clock_ms() + FZ_PROCTAB_SWEEP_MAX_MS;
    if (shell > 0) {
        kill(-shell, SIGKILL);
        kill(shell, SIGKILL);
        struct timespec tick = {0, 200000L};
        while (waitpid(shell, NULL, WNOHANG) == 0 && fz_clock_ms() < give_up)
            nanosleep(&tick, NULL);
    }
    for (;;) {
        int seen = fz_proctab_sweep_children(self);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (seen <= 0 || fz_clock_ms() >= give_up)
            return seen > 0 ? seen : 0;
        struct timespec tick = {0, 1000000L};
        nanosleep(&tick, NULL);
    }
}

/* Ends the agent of *shell (if any) and says DONE: the keeper is idle after it. */
static void s_keeper_done(pid_t self, pid_t *shell, bool *exited)
{
    int left = s_keeper_end(self, *shell);
    *shell = 0;
    *exited = false;
    s_keeper_send(FZ_KEEPER_DONE, left);
}

/* The keeper's descriptors: the control socket on 3, /dev/null on 0..2, nothing else. */
static int s_keeper_fds(int ctl)
{
    if (ctl != S_KEEPER_CTL && dup3(ctl, S_KEEPER_CTL, O_CLOEXEC) < 0)
        return -1;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return -1;
    for (int fd = 0; fd <= 2; fd++)
        if (null != fd && dup2(null, fd) < 0)
            return -1;
    if (close_range(S_KEEPER_CTL + 1, ~0U, 0) < 0)
        closefrom(S_KEEPER_CTL + 1);
    return 0;
}

static __attribute__((noreturn)) void s_keeper_main(int ctl, s_keeper_args_t args)
{
    static char buf[S_REQ_MAX];
    pid_t self = getpid();
    setpgid(0, 0); /* out of the worker's group: what is sent to it is not for us */

    /* Every signal stays blocked (blocked around the fork) except SIGCHLD, and that one only
       inside ppoll: what anyone sends us never acts, whatever its disposition. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_handler = s_keeper_on_child;
    action.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
    /* What an agent must get back at SIG_DFL: one read of /proc instead of 64 sigactions
       (all of them if it cannot be read), or what the spawner read once for every keeper. */
    if (!args.reset_known && !fz_proctab_self_sigs(&args.reset))
        args.reset = ~(uint64_t)0;
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* Wakes a stopped keeper (kill -STOP of its pid) when the worker's thread ends; the
       socket's EOF then says the rest. */
    prctl(PR_SET_PDEATHSIG, SIGCONT, 0, 0, 0);
    if (s_keeper_fds(ctl) < 0)
        _exit(127); /* the worker sees the socket close and forks no agent here */

    sigset_t wait_mask;
    sigfillset(&wait_mask);
    sigdelset(&wait_mask, SIGCHLD);
    pid_t shell = 0;
    bool exited = false, signalled = false;
    for (;;) {
        s_keeper_children(shell, &exited);
        /* Ended by itself with no stop under way: the worker would ask for the end at once
           (only a stop gives the group a grace), so it is done now, saving a round trip. An
           END that crosses it is answered again, from idle. */
        if (shell > 0 && exited && !signalled)
            s_keeper_done(self, &shell, &exited);
        struct pollfd p = {S_KEEPER_CTL, POLLIN, 0};
        if (ppoll(&p, 1, NULL, &wait_mask) <= 0)
            continue; /* SIGCHLD */
        s_req_t head;
        int fds[S_REQ_FDS], nfds;
        int rc = s_recv_req(S_KEEPER_CTL, buf, sizeof buf, &head, fds, S_REQ_FDS, &nfds);
        if (rc == 1)
            s_keeper_guard(self, shell); /* the worker is gone, or ends us */
        if (rc != 0)
            continue;
        if (head.kind == FZ_REQ_START && shell == 0) {
            shell = s_keeper_start(buf, &head, fds, args.reset);
            exited = signalled = false;
        } else if (head.kind == FZ_REQ_START) {
            close(fds[0]), close(fds[1]);
            s_keeper_send(FZ_KEEPER_START_FAILED, EBUSY);
        } else if (head.kind == FZ_REQ_SIGNAL && shell > 0 && head.value > 0 &&
                   head.value < _NSIG) {
            kill(-shell, head.value);
            signalled = true; /* a stop: the end waits for the worker's word */
        } else if (head.kind == FZ_REQ_END)
            s_keeper_done(self, &shell, &exited);
    }
}

int fz_keeper_read(int fd, fz_keeper_msg_t *msg)
{
    ssize_t n;
    do
        n = recv(fd, msg, sizeof *msg, 0);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof *msg)
        return 1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return -1;
}

/* ---------------------------------------------------------------- descriptors */

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

static int s_pair(int fds[2], bool socket)
{
    if (socket ? socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0
               : pipe2(fds, O_CLOEXEC) < 0)
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

/* For a descriptor made just now: no status flag but the access mode (which F_SETFL leaves
   alone) is set yet, so there is nothing to read back first. */
static int s_nonblock(int fd)
{
    return fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* ---------------------------------------------------------------- the spawner

   fz-keeper --spawner: a small process, started once per worker, that forks each keeper with
   CLONE_PARENT, so that the keeper is the worker's own child exactly as when the worker
   forks it (same pid safety, waitpid, the control socket's EOF, subreaper) while the worker
   itself never forks: a fork of the worker copies its 186 mappings and write-protects its
   pages, and the keeper would fault every text page of a large program in again. The
   spawner has every signal blocked and at its default (the keeper inherits both), and exits
   when the worker's end of the socket closes. */

static int s_spawner_fd = -1; /* the worker's end; -1: keepers are forked by the worker */
static pid_t s_spawner;
static pid_t s_spawner_owner; /* the process that started it: a fork of it inherits the socket,
                                 but the spawner's keepers would be its parent's children */

void fz_keeper_spawner_main(int sock)
{
    /* Every keeper starts with this process's dispositions plus its own SIGCHLD handler, so
       what its agents must get back at SIG_DFL is read once here. */
    s_keeper_args_t args = {~(uint64_t)0, true};
    if (fz_proctab_self_sigs(&args.reset))
        args.reset |= (uint64_t)1 << (SIGCHLD - 1);
    for (;;) {
        s_req_t head;
        int fd, nfds;
        int rc = s_recv_req(sock, NULL, 0, &head, &fd, 1, &nfds);
        if (rc > 0)
            _exit(0); /* the worker is gone */
        int32_t reply = -EINVAL;
        if (rc == 0 && head.kind == FZ_REQ_KEEPER) {
            /* A fork whose parent is ours: the worker's. The child runs on a copy of this
               stack, as after fork. */
            long pid =
                syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), NULL, NULL, NULL, 0UL);
            if (pid == 0)
                s_keeper_main(fd, args);
            reply = pid > 0 ? (int32_t)pid : -errno;
            close(fd);
        } else if (rc == 0)
            close(fd);
        while (send(sock, &reply, sizeof reply, MSG_NOSIGNAL) < 0 && errno == EINTR)
            ;
    }
}

/* The spawner failed or is gone: from now on keepers are forked here. It is reaped now (our
   unreaped child, so its pid is safe to signal). */
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

/* Waits up to ms for fd to be readable. */
static bool s_wait_readable(int fd, int64_t ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int64_t until = fz_clock_ms() + ms;
    for (;;) {
        int64_t left = until - fz_clock_ms();
        int n = poll(&p, 1, left > 0 ? (int)left : 0);
        if (n > 0)
            return true;
        if (n == 0 || errno != EINTR || fz_clock_ms() >= until)
            return false;
    }
}

/* Asks the spawner for a keeper on ctl (the keeper's end). Its pid, 0 when none was made
   (no spawner, refused, clone failed: the caller forks), or -1 when the spawner failed after
   taking it (a keeper may exist: it ends when the caller closes its end of the socket). */
static pid_t s_spawner_ask(int ctl)
{
    if (s_spawner_fd < 0 || getpid() != s_spawner_owner)
        return 0;
    s_req_t head = {S_REQ_MAGIC, FZ_REQ_KEEPER, 0, 0, 0};
    if (s_send_req(s_spawner_fd, &head, NULL, 0, &ctl, 1) < 0) {
        s_spawner_stop(); /* gone: from now on the worker forks */
        return 0;
    }
    int32_t reply = 0;
    ssize_t n = -1;
    if (s_wait_readable(s_spawner_fd, S_SPAWNER_REPLY_MS))
        do
            n = recv(s_spawner_fd, &reply, sizeof reply, 0);
        while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof reply || reply == 0) {
        s_spawner_stop();
        return -1;
    }
    if (reply < 0) {
        errno = -reply;
        return 0; /* no keeper was made: fork */
    }
    return (pid_t)reply;
}

/* ---------------------------------------------------------------- the keepers of this process */

static fz_keeper_t s_idle = {0, 0, -1, -1, -1, 0};
static pid_t s_idle_owner; /* a fork of this process inherits the socket, not the keeper */

pid_t fz_keeper_idle_pid(void)
{
    return s_idle.ctl_fd >= 0 && getpid() == s_idle_owner ? s_idle.pid : 0;
}

/* A new keeper: its pid and our end of its socket in *k, 0; or -1 with errno. */
static int s_new_keeper(fz_keeper_t *k)
{
    int sv[2];
    if (s_pair(sv, true) < 0)
        return -1;
    pid_t pid = s_spawner_ask(sv[1]);
    int fork_errno = errno;
    if (pid == 0) {
        sigset_t all, old;
        sigfillset(&all);
        /* The keeper starts with every signal blocked: no handler of ours may run in it. */
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pid = _Fork();
        if (pid == 0) {
            close(sv[0]);
            s_keeper_main(sv[1], (s_keeper_args_t){0, false});
        }
        fork_errno = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    close(sv[1]);
    if (pid < 0 || s_nonblock(sv[0]) < 0) {
        close(sv[0]); /* a keeper the spawner may have made ends at this EOF */
        errno = pid < 0 ? fork_errno : errno;
        return -1;
    }
    k->pid = pid;
    k->ctl_fd = sv[0];
    return 0;
}

/* Closes k's socket (the keeper kills what is left of its agent and exits), then reaps it:
   after its guard (a few ms at most when something of an agent is left, bounded), else
   SIGKILL. */
static void s_end_keeper(fz_keeper_t *k)
{
    fz_close(&k->ctl_fd);
    if (k->pid > 0 && fz_proctab_reap_within(k->pid, NULL, FZ_PROCTAB_SWEEP_MAX_MS + 500) == 0) {
        kill(k->pid, SIGKILL);
        while (waitpid(k->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    k->pid = 0;
}

void fz_keeper_shutdown(void)
{
    if (fz_keeper_idle_pid() > 0)
        s_end_keeper(&s_idle);
    if (fz_keeper_spawner_pid() > 0)
        s_spawner_stop();
}

/* Sends a start and waits for its answer: 1 started (k->shell set), 0 refused (errno set;
   the keeper is fine), -1 the keeper is gone or silent. */
static int s_ask_start(fz_keeper_t *k, const char *shell, const char *command, char *const *envp,
                       const char *workdir, const int fds[S_REQ_FDS])
{
    size_t nenv = 0, nbytes = strlen(shell) + strlen(command) + strlen(workdir) + 3;
    for (; envp[nenv]; nenv++)
        nbytes += strlen(envp[nenv]) + 1;
    if (nbytes > S_REQ_MAX || nenv >= S_REQ_ENV_MAX) {
        errno = E2BIG;
        return 0;
    }
    char *body = malloc(nbytes), *p = body;
    if (!body) {
        errno = ENOMEM;
        return 0;
    }
    const char *fixed[] = {shell, command, workdir};
    for (size_t i = 0; i < 3 + nenv; i++) {
        const char *str = i < 3 ? fixed[i] : envp[i - 3];
        size_t len = strlen(str) + 1;
        memcpy(p, str, len);
        p += len;
    }
    s_req_t head = {S_REQ_MAGIC, FZ_REQ_START, 0, (uint32_t)nenv, (uint32_t)nbytes};
    int rc = s_send_req(k->ctl_fd, &head, body, nbytes, fds, S_REQ_FDS);
    free(body);
    /* The answer, past anything an earlier agent left unread (a keeper says nothing while
       idle, but a stale word must never be taken for this start's). */
    fz_keeper_msg_t msg = {0, 0};
    int64_t until = fz_clock_ms() + S_SPAWNER_REPLY_MS;
    do {
        int64_t left = until - fz_clock_ms();
        if (rc < 0 || left <= 0 || !s_wait_readable(k->ctl_fd, left) ||
            fz_keeper_read(k->ctl_fd, &msg) < 0)
            return -1;
    } while (msg.kind != FZ_KEEPER_STARTED && msg.kind != FZ_KEEPER_START_FAILED);
    if (msg.kind == FZ_KEEPER_STARTED && msg.value > 0) {
        k->shell = msg.value;
        return 1;
    }
    errno = msg.kind == FZ_KEEPER_START_FAILED ? msg.value : EPROTO;
    return msg.kind == FZ_KEEPER_START_FAILED ? 0 : -1;
}

int fz_keeper_start(fz_keeper_t *keeper, const char *shell, const char *command, char *const *envp,
                    const char *workdir, char *err, size_t errlen)
{
    *keeper = (fz_keeper_t){0, 0, -1, -1, -1, 0};
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if (s_pair(in, false) < 0 || s_pair(out, false) < 0 || s_nonblock(in[1]) < 0 ||
        s_nonblock(out[0]) < 0) {
        fz_errf(err, errlen, "cannot create pipes: %s", strerror(errno));
        fz_close(&in[0]), fz_close(&in[1]), fz_close(&out[0]), fz_close(&out[1]);
        return -1;
    }
    keeper->started_ms = fz_clock_ms();
    int fds[S_REQ_FDS] = {in[0], out[1]};
    int rc = -1;
    bool said = false;
    /* The idle keeper first; one that died meanwhile is ended and a new one made. */
    for (int tries = 0; tries < 2 && rc < 0; tries++) {
        if (tries == 0 && fz_keeper_idle_pid() > 0) {
            *keeper = s_idle, keeper->started_ms = fz_clock_ms();
            s_idle = (fz_keeper_t){0, 0, -1, -1, -1, 0};
        } else if (s_new_keeper(keeper) < 0) {
            fz_errf(err, errlen, "cannot start the agent's keeper: %s", strerror(errno));
            said = true;
            break;
        }
        rc = s_ask_start(keeper, shell, command, envp, workdir, fds);
        if (rc < 0)
            s_end_keeper(keeper);
    }
    fz_close(&in[0]);
    fz_close(&out[1]); /* else the worker would never see EOF on the output */
    if (rc == 1) {
        keeper->in_fd = in[1];
        keeper->out_fd = out[0];
        return 0;
    }
    if (rc == 0) {
        fz_errf(err, errlen, "cannot execute %s in %s: %s", shell, workdir, strerror(errno));
        fz_keeper_release(keeper, true);
    } else if (!said)
        fz_errf(err, errlen, "the agent's keeper died before starting %s", shell);
    fz_close(&in[1]);
    fz_close(&out[0]);
    keeper->pid = 0;
    return -1;
}

static int s_request(const fz_keeper_t *keeper, uint32_t kind, int32_t value)
{
    if (!keeper || keeper->ctl_fd < 0)
        return -1;
    s_req_t head = {S_REQ_MAGIC, kind, value, 0, 0};
    return s_send_req(keeper->ctl_fd, &head, NULL, 0, NULL, 0);
}

int fz_keeper_signal(const fz_keeper_t *keeper, int sig)
{
    return s_request(keeper, FZ_REQ_SIGNAL, sig);
}

int fz_keeper_end(const fz_keeper_t *keeper)
{
    return s_request(keeper, FZ_REQ_END, 0);
}

void fz_keeper_release(fz_keeper_t *keeper, bool reuse)
{
    if (!keeper || keeper->ctl_fd < 0)
        return;
    if (reuse && fz_keeper_idle_pid() == 0 && keeper->pid > 0) {
        if (s_idle.ctl_fd >= 0 && getpid() != s_idle_owner)
            close(s_idle.ctl_fd); /* inherited from the process that forked us: not ours */
        s_idle = (fz_keeper_t){keeper->pid, 0, -1, -1, keeper->ctl_fd, 0};
        s_idle_owner = getpid();
        keeper->ctl_fd = -1;
        keeper->pid = 0;
        return;
    }
    s_end_keeper(keeper);
}
