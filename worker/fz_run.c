/*  fz_run: run one short-lived program and capture its output; see fz_run.h. */

#include "fz_run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fz_util.h"

extern char **environ;

#define FZ_RUN_DRAIN_MS 500 /* after the exit, how long output of escaped processes is read */

typedef struct {
    char *data;
    size_t len, cap, total;
} tail_t;

typedef struct {
    pid_t pid;
    int fd[2]; /* read ends of stdout, stderr; -1 once at EOF */
    tail_t tail[2];
    bool exited; /* exited (a zombie, not yet reaped) */
    int64_t deadline, kill_at, drain_until;
    const atomic_bool *stop;
} run_t;

/* Variables that would make git act on another repository or as someone else. */
static const char *const s_drop[] = {"GIT_DIR=",
                                     "GIT_WORK_TREE=",
                                     "GIT_INDEX_FILE=",
                                     "GIT_COMMON_DIR=",
                                     "GIT_OBJECT_DIRECTORY=",
                                     "GIT_ALTERNATE_OBJECT_DIRECTORIES=",
                                     "GIT_NAMESPACE=",
                                     "GIT_PREFIX=",
                                     "GIT_CEILING_DIRECTORIES=",
                                     "GIT_AUTHOR_",
                                     "GIT_COMMITTER_",
                                     "GIT_CONFIG_PARAMETERS=",
                                     "GIT_CONFIG_COUNT=",
                                     "GIT_TERMINAL_PROMPT=",
                                     "LC_ALL=",
                                     NULL};

static bool s_dropped(const char *var)
{
    for (size_t i = 0; s_drop[i]; i++)
        if (strncmp(var, s_drop[i], strlen(s_drop[i])) == 0)
            return true;
    return false;
}

/* The child's environment: the caller's, filtered, plus fz's two. Pointers into environ. */
static char **s_env(void)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 3, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!s_dropped(environ[i]))
            env[k++] = environ[i];
    env[k++] = "LC_ALL=C";
    env[k++] = "GIT_TERMINAL_PROMPT=0";
    return env;
}

static int64_t s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends keeping the last cap bytes. */
static void s_tail_add(tail_t *t, const char *buf, size_t n)
{
    t->total += n;
    if (n >= t->cap) {
        memcpy(t->data, buf + n - t->cap, t->cap);
        t->len = t->cap;
        return;
    }
    if (t->len + n > t->cap) {
        size_t drop = t->len + n - t->cap;
        memmove(t->data, t->data + drop, t->len - drop);
        t->len -= drop;
    }
    memcpy(t->data + t->len, buf, n);
    t->len += n;
}

static int s_actions(posix_spawn_file_actions_t *fa, const fz_run_opts_t *o, int out_w, int err_w)
{
    int rc = posix_spawn_file_actions_init(fa);
    if (rc)
        return rc;
    rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(fa, out_w, 1);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(fa, o->merge ? out_w : err_w, 2);
    if (!rc && o->cwd)
        rc = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
    if (!rc)
        rc = posix_spawn_file_actions_addclosefrom_np(fa, 3);
    if (rc)
        posix_spawn_file_actions_destroy(fa);
    return rc;
}

static int s_attrs(posix_spawnattr_t *at)
{
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    int rc = posix_spawnattr_init(at);
    if (rc)
        return rc;
    rc = posix_spawnattr_setflags(at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                          POSIX_SPAWN_SETSIGDEF);
    if (!rc)
        rc = posix_spawnattr_setpgroup(at, 0);
    if (!rc)
        rc = posix_spawnattr_setsigmask(at, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault(at, &all);
    if (rc)
        posix_spawnattr_destroy(at);
    return rc;
}

/* Spawns with pipes[i][0] kept as the read ends; returns 0 or an errno. */
static int s_spawn(run_t *r, const fz_run_opts_t *o, int pipes[2][2])
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int rc = s_actions(&fa, o, pipes[0][1], pipes[1][1]);
    if (rc)
        return rc;
    rc = s_attrs(&at);
    if (rc) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    char **env = s_env();
    if (!env)
        rc = ENOMEM;
    else
        rc = posix_spawnp(&r->pid, o->argv[0], &fa, &at, (char *const *)o->argv, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (!rc)
        setpgid(r->pid, r->pid); /* also in the parent: no window before the child's */
    return rc;
}

static int s_open_pipes(int pipes[2][2])
{
    pipes[0][0] = pipes[0][1] = pipes[1][0] = pipes[1][1] = -1;
    for (int i = 0; i < 2; i++) {
        if (pipe2(pipes[i], O_CLOEXEC) < 0)
            return errno;
        fcntl(pipes[i][0], F_SETFL, O_NONBLOCK);
    }
    return 0;
}

/* Reads what is there; closes the descriptor at EOF. */
static void s_read(run_t *r, int i)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(r->fd[i], buf, sizeof buf);
        if (n > 0) {
            s_tail_add(&r->tail[i], buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            fz_close(&r->fd[i]);
        return;
    }
}

/* Notices the exit without reaping (the zombie keeps the group id ours), then kills what is
   left of the group: only after that is the child reaped. */
static void s_check_exit(run_t *r, int64_t now)
{
    if (r->exited)
        return;
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)r->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
        return;
    r->exited = true;
    kill(-r->pid, SIGKILL);
    r->drain_until = now + FZ_RUN_DRAIN_MS;
}

static void s_enforce(run_t *r, int64_t now, fz_run_res_t *res)
{
    if (r->exited)
        return;
    bool stop = r->stop && atomic_load(r->stop);
    if (((r->deadline && now >= r->deadline) || stop) && !r->kill_at) {
        if (stop)
            res->stopped = true;
        else
            res->timed_out = true;
        kill(-r->pid, SIGTERM);
        r->kill_at = now + FZ_RUN_GRACE_MS;
    }
    if (r->kill_at && now >= r->kill_at)
        kill(-r->pid, SIGKILL);
}

static int s_poll_ms(const run_t *r, int64_t now)
{
    int64_t ms = 50; /* exit is checked at least this often while the pipes stay open */
    int64_t next = r->exited ? r->drain_until : (r->kill_at ? r->kill_at : r->deadline);
    if (next && next - now < ms)
        ms = next - now;
    if (r->exited && r->fd[0] < 0 && r->fd[1] < 0)
        ms = 0;
    return ms < 0 ? 0 : (int)ms;
}

/* The loop: output until EOF (or the drain time after the exit), and the limits. */
static void s_pump(run_t *r, fz_run_res_t *res)
{
    for (;;) {
        int64_t now = s_now();
        s_check_exit(r, now);
        s_enforce(r, now, res);
        bool open = r->fd[0] >= 0 || r->fd[1] >= 0;
        if (r->exited && (!open || now >= r->drain_until))
            return;
        struct pollfd pf[2];
        int n = 0, idx[2];
        for (int i = 0; i < 2; i++)
            if (r->fd[i] >= 0) {
                pf[n] = (struct pollfd){.fd = r->fd[i], .events = POLLIN};
                idx[n++] = i;
            }
        if (n == 0) { /* both at EOF, still running: wait for the exit */
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (poll(pf, (nfds_t)n, s_poll_ms(r, now)) <= 0)
            continue;
        for (int k = 0; k < n; k++)
            if (pf[k].revents)
                s_read(r, idx[k]);
    }
}

static void s_reap(run_t *r, fz_run_res_t *res)
{
    int st = 0;
    while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR)
        ;
    res->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    res->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static int s_res_init(fz_run_res_t *res, run_t *r, size_t cap)
{
    memset(res, 0, sizeof *res);
    res->status = -1;
    for (int i = 0; i < 2; i++) {
        r->fd[i] = -1;
        r->tail[i] = (tail_t){.data = malloc(cap + 1), .cap = cap};
        if (!r->tail[i].data)
            return -1;
    }
    return 0;
}

static void s_res_fill(fz_run_res_t *res, run_t *r)
{
    for (int i = 0; i < 2; i++) {
        fz_close(&r->fd[i]);
        if (r->tail[i].data)
            r->tail[i].data[r->tail[i].len] = 0;
    }
    res->out = r->tail[0].data, res->out_len = r->tail[0].len;
    res->err = r->tail[1].data, res->err_len = r->tail[1].len;
    res->out_total = r->tail[0].total;
    if (!res->out || !res->err) { /* out of memory: keep the promise of non-NULL buffers */
        free(res->out), free(res->err);
        res->out = calloc(1, 1), res->err = calloc(1, 1);
        res->out_len = res->err_len = 0;
    }
}

int fz_run(const fz_run_opts_t *opts, fz_run_res_t *res)
{
    run_t r = {0};
    size_t cap = opts->cap ? opts->cap : FZ_RUN_CAP_DEFAULT;
    int pipes[2][2] = {{-1, -1}, {-1, -1}};
    int rc = s_res_init(res, &r, cap) ? ENOMEM : s_open_pipes(pipes);
    r.stop = opts->stop;
    if (!rc && r.stop && atomic_load(r.stop))
        rc = ECANCELED, res->stopped = true;
    if (!rc)
        rc = s_spawn(&r, opts, pipes);
    for (int i = 0; i < 2; i++) {
        fz_close(&pipes[i][1]);
        r.fd[i] = pipes[i][0];
    }
    if (rc) {
        res->spawn_errno = rc;
        s_res_fill(res, &r);
        return -1;
    }
    r.deadline = opts->timeout_ms > 0 ? s_now() + opts->timeout_ms : 0;
    s_pump(&r, res);
    s_reap(&r, res);
    s_res_fill(res, &r);
    return 0;
}

void fz_run_res_free(fz_run_res_t *res)
{
    free(res->out);
    free(res->err);
    memset(res, 0, sizeof *res);
}

void fz_run_last_line(const char *s, char *buf, size_t size)
{
    const char *end = s + strlen(s);
    while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > s && start[-1] != '\n')
        start--;
    size_t n = (size_t)(end - start);
    if (size == 0)
        return;
    if (n >= size)
        n = size - 1;
    memcpy(buf, start, n);
    buf[n] = 0;
}
