/*  fz_proctab: /proc reading, async-signal-safe; see fz_proctab.h. */

#include "fz_proctab.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A decimal number with an optional '-' in [p, end); returns where it stops, NULL if there
   is none. Values are capped (about 2^40) rather than overflowing. */
static const char *s_long(const char *p, const char *end, long *out)
{
    bool neg = p < end && *p == '-';
    p += neg;
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    long v = 0;
    while (p < end && *p >= '0' && *p <= '9' && v < (1L << 40))
        v = v * 10 + (*p++ - '0');
    *out = neg ? -v : v;
    return p;
}

bool fz_proctab_parse_stat(const char *buf, size_t len, fz_proc_t *proc)
{
    const char *p = NULL, *end = buf + len;
    for (size_t i = len; i > 0 && !p; i--)
        if (buf[i - 1] == ')')
            p = buf + i;
    /* p: " S PPID PGRP ..." */
    if (!p || end - p < 3 || p[0] != ' ' || !p[1] || p[2] != ' ')
        return false;
    long ppid, pgrp;
    char state = p[1];
    p = s_long(p + 3, end, &ppid);
    if (!p || p >= end || *p != ' ' || !s_long(p + 1, end, &pgrp))
        return false;
    proc->state = state;
    proc->ppid = (pid_t)ppid;
    proc->pgrp = (pid_t)pgrp;
    return true;
}

/* The hex mask after "\nKEY:" (KEY with its colon, e.g. "SigIgn:") in [buf, buf + len), then
   blanks: up to 16 hex digits. False if the line is not there or has no digits. */
static bool s_hex_field(const char *buf, size_t len, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen < len; i++) {
        if ((i > 0 && buf[i - 1] != '\n') || memcmp(buf + i, key, klen) != 0)
            continue;
        size_t j = i + klen, digits = 0;
        while (j < len && (buf[j] == ' ' || buf[j] == '\t'))
            j++;
        uint64_t v = 0;
        for (; j < len && digits < 16; j++, digits++) {
            char c = buf[j];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                break;
            v = v << 4 | (uint64_t)d;
        }
        if (digits == 0 || (j < len && buf[j] != '\n'))
            return false;
        *out = v;
        return true;
    }
    return false;
}

bool fz_proctab_parse_sigs(const char *buf, size_t len, uint64_t *not_default)
{
    uint64_t ign, cgt;
    if (!s_hex_field(buf, len, "SigIgn:", &ign) || !s_hex_field(buf, len, "SigCgt:", &cgt))
        return false;
    *not_default = ign | cgt;
    return true;
}

bool fz_proctab_self_sigs(uint64_t *not_default)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t have = 0;
    ssize_t n;
    while (have < sizeof buf &&
           ((n = read(fd, buf + have, sizeof buf - have)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            have += (size_t)n;
    close(fd);
    return fz_proctab_parse_sigs(buf, have, not_default);
}

/* "/proc/PID/stat" into path (at least 32 bytes) without snprintf. */
static void s_stat_path(pid_t pid, char *path)
{
    char digits[16];
    size_t n = 0;
    unsigned long v = (unsigned long)pid;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0 && n < sizeof digits);
    memcpy(path, "/proc/", 6);
    for (size_t i = 0; i < n; i++)
        path[6 + i] = digits[n - 1 - i];
    memcpy(path + 6 + n, "/stat", sizeof "/stat");
}

bool fz_proctab_read(pid_t pid, fz_proc_t *proc)
{
    if (pid <= 0)
        return false;
    char path[32], buf[512];
    s_stat_path(pid, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    if (!fz_proctab_parse_stat(buf, (size_t)n, proc))
        return false;
    proc->pid = pid;
    return true;
}

/* A /proc entry's name as a pid: digits only, 1..INT_MAX. */
static pid_t s_entry_pid(const char *name)
{
    long pid;
    const char *end = *name == '-' ? NULL : s_long(name, name + strlen(name), &pid);
    if (!end || *end || pid <= 0 || pid > INT_MAX)
        return 0;
    return (pid_t)pid;
}

typedef bool(visit_fn)(const fz_proc_t *proc, void *arg);

/* Calls entry(dir, name, pid, ctx) for each entry of the folder dir whose name is a pid, until
   it returns false. */
static void
s_each_pid_entry(int dir, bool (*entry)(int dir, const char *name, pid_t pid, void *ctx), void *ctx)
{
    union {
        struct dirent64 entry;
        char bytes[16384];
    } buf;
    ssize_t n;
    bool more = true;
    while (more && (n = getdents64(dir, buf.bytes, sizeof buf.bytes)) > 0)
        for (ssize_t off = 0; more && off < n;) {
            struct dirent64 *e = (struct dirent64 *)(void *)(buf.bytes + off);
            off += e->d_reclen;
            pid_t pid = s_entry_pid(e->d_name);
            if (pid > 0)
                more = entry(dir, e->d_name, pid, ctx);
        }
}

typedef struct {
    visit_fn *visit;
    void *arg;
    bool more; /* the visitor wants more */
    int rc;    /* -1: a children list could not be read */
} walk_t;

/* The process whose pid is the text [p, end): read and visited. */
static void s_visit_text(walk_t *w, const char *p, const char *end)
{
    long pid;
    fz_proc_t proc;
    if (p < end && s_long(p, end, &pid) && pid > 0 && pid <= INT_MAX &&
        fz_proctab_read((pid_t)pid, &proc))
        w->more = w->visit(&proc, w->arg);
}

static bool s_proc_entry(int dir, const char *name, pid_t pid, void *ctx)
{
    (void)dir, (void)name;
    walk_t *w = ctx;
    fz_proc_t proc;
    if (fz_proctab_read(pid, &proc))
        w->more = w->visit(&proc, w->arg);
    return w->more;
}

int fz_proctab_each(visit_fn *visit, void *arg)
{
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    walk_t w = {visit, arg, true, 0};
    s_each_pid_entry(dir, s_proc_entry, &w);
    close(dir);
    return 0;
}

/* Visits each pid listed in the thread's TID/children (space-separated decimals; dir is the
   task folder). Sets w->rc -1 if the list cannot be read. */
static bool s_thread_entry(int dir, const char *tid, pid_t pid, void *ctx)
{
    (void)pid;
    walk_t *w = ctx;
    char path[64];
    size_t len = strlen(tid);
    if (len > 32)
        return true;
    memcpy(path, tid, len);
    memcpy(path + len, "/children", sizeof "/children");
    int fd = openat(dir, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) /* ENOENT: the thread ended meanwhile */
            w->rc = -1;
        return w->rc == 0;
    }
    char list[4096];
    size_t have = 0;
    ssize_t got;
    /* Read in chunks; a number cut at a chunk's end is kept for the next one. */
    while (w->more && (got = read(fd, list + have, sizeof list - 1 - have)) > 0) {
        have += (size_t)got;
        size_t start = 0;
        for (size_t i = 0; i < have && w->more; i++)
            if (list[i] < '0' || list[i] > '9') {
                s_visit_text(w, list + start, list + i);
                start = i + 1;
            }
        memmove(list, list + start, have - start);
        have -= start;
    }
    if (w->more) /* the last number, when the file does not end with a space */
        s_visit_text(w, list, list + have);
    close(fd);
    return w->more;
}

/* The calling process's children from /proc/self/task/TID/children (one list per thread:
   an orphan reparented to us, a subreaper, may sit under any of them), each visited as by
   fz_proctab_each. O(threads + children) where a scan of /proc is O(every process on the
   host). -1 if the lists cannot be read (a kernel without CONFIG_PROC_CHILDREN). */
static int s_each_own_child(visit_fn *visit, void *arg)
{
    int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    walk_t w = {visit, arg, true, 0};
    s_each_pid_entry(dir, s_thread_entry, &w);
    close(dir);
    return w.rc;
}

typedef struct {
    pid_t pgrp;
    bool alive;
} s_group_t;

static bool s_group_visit(const fz_proc_t *proc, void *arg)
{
    s_group_t *group = arg;
    if (proc->pgrp == group->pgrp && proc->pid != group->pgrp && proc->state != 'Z' &&
        proc->state != 'X')
        group->alive = true;
    return !group->alive;
}

bool fz_proctab_group_alive(pid_t pgrp)
{
    s_group_t group = {pgrp, false};
    fz_proctab_each(s_group_visit, &group);
    return group.alive;
}

typedef struct {
    pid_t parent;
    int seen;
    const pid_t *spare;
    size_t nspare;
} s_sweep_t;

static bool s_sweep_visit(const fz_proc_t *proc, void *arg)
{
    s_sweep_t *sweep = arg;
    if (proc->ppid != sweep->parent)
        return true;
    for (size_t i = 0; i < sweep->nspare; i++)
        if (sweep->spare[i] > 0 && proc->pid == sweep->spare[i])
            return true;
    sweep->seen++;
    if (proc->state == 'Z')
        waitpid(proc->pid, NULL, WNOHANG);
    else
        kill(proc->pid, SIGKILL);
    return true;
}

int fz_proctab_sweep_children(pid_t parent)
{
    return fz_proctab_sweep_children_but(parent, NULL, 0);
}

int fz_proctab_sweep_children_but(pid_t parent, const pid_t *spare, size_t nspare)
{
    s_sweep_t sweep = {parent, 0, spare, nspare};
    if (parent != getpid() || s_each_own_child(s_sweep_visit, &sweep) < 0) {
        sweep.seen = 0;
        fz_proctab_each(s_sweep_visit, &sweep);
    }
    return sweep.seen;
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pid_t fz_proctab_reap_within(pid_t pid, int *wstatus, int64_t ms)
{
    int64_t give_up = s_now_ms() + ms;
    int fd = -1;
#ifdef SYS_pidfd_open
    fd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    pid_t r;
    for (;;) {
        r = waitpid(pid, wstatus, WNOHANG);
        if (r < 0 && errno == EINTR)
            continue;
        int64_t left = give_up - s_now_ms();
        if (r != 0 || left <= 0)
            break;
        struct pollfd exited = {fd, POLLIN, 0};
        if (fd < 0 ||
            (poll(&exited, 1, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR)) {
            struct timespec tick = {0, 200000L};
            nanosleep(&tick, NULL);
        }
    }
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return r;
}
