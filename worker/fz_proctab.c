/*  fz_proctab: /proc reading, async-signal-safe; see fz_proctab.h. */

#include "fz_proctab.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
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

/* Visits each pid listed in TID/children (space-separated decimals) under the task folder
   dir. 0, or -1 if the list cannot be read. */
static int s_each_child_of_thread(int dir, const char *tid,
                                  bool (*visit)(const fz_proc_t *proc, void *arg), void *arg)
{
    char path[64];
    size_t len = strlen(tid);
    if (len > 32)
        return 0;
    memcpy(path, tid, len);
    memcpy(path + len, "/children", sizeof "/children");
    int fd = openat(dir, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1; /* ENOENT: the thread ended meanwhile */
    char list[4096];
    size_t have = 0;
    ssize_t got;
    bool more = true;
    /* Read in chunks; a number cut at a chunk's end is kept for the next one. */
    while (more && (got = read(fd, list + have, sizeof list - 1 - have)) > 0) {
        have += (size_t)got;
        size_t start = 0;
        for (size_t i = 0; i <= have && more; i++) {
            if (i < have && list[i] >= '0' && list[i] <= '9')
                continue;
            if (i == have)
                break; /* maybe cut: kept */
            long pid;
            fz_proc_t proc;
            if (i > start && s_long(list + start, list + i, &pid) && pid > 0 && pid <= INT_MAX &&
                fz_proctab_read((pid_t)pid, &proc))
                more = visit(&proc, arg);
            start = i + 1;
        }
        memmove(list, list + start, have - start);
        have -= start;
    }
    if (more && have) { /* the last number, at the end of the file */
        long pid;
        fz_proc_t proc;
        if (s_long(list, list + have, &pid) && pid > 0 && pid <= INT_MAX &&
            fz_proctab_read((pid_t)pid, &proc))
            visit(&proc, arg);
    }
    close(fd);
    return 0;
}

int fz_proctab_each(bool (*visit)(const fz_proc_t *proc, void *arg), void *arg)
{
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    union {
        struct dirent64 entry;
        char bytes[16384];
    } buf;
    ssize_t n;
    bool more = true;
    while (more && (n = getdents64(dir, buf.bytes, sizeof buf.bytes)) > 0) {
        for (ssize_t off = 0; more && off < n;) {
            struct dirent64 *entry = (struct dirent64 *)(void *)(buf.bytes + off);
            off += entry->d_reclen;
            pid_t pid = s_entry_pid(entry->d_name);
            fz_proc_t proc;
            if (pid > 0 && fz_proctab_read(pid, &proc))
                more = visit(&proc, arg);
        }
    }
    close(dir);
    return 0;
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
} s_sweep_t;

static bool s_sweep_visit(const fz_proc_t *proc, void *arg)
{
    s_sweep_t *sweep = arg;
    if (proc->ppid != sweep->parent)
        return true;
    sweep->seen++;
    if (proc->state == 'Z')
        waitpid(proc->pid, NULL, WNOHANG);
    else
        kill(proc->pid, SIGKILL);
    return true;
}

/* The calling process's children from /proc/self/task/TID/children (one list per thread:
   an orphan reparented to us, a subreaper, may sit under any of them), each visited as by
   fz_proctab_each. O(threads + children) where a scan of /proc is O(every process on the
   host). -1 if the lists cannot be read (a kernel without CONFIG_PROC_CHILDREN). */
static int s_each_own_child(bool (*visit)(const fz_proc_t *proc, void *arg), void *arg)
{
    int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    union {
        struct dirent64 entry;
        char bytes[4096];
    } buf;
    int rc = 0;
    ssize_t n;
    while (rc == 0 && (n = getdents64(dir, buf.bytes, sizeof buf.bytes)) > 0)
        for (ssize_t off = 0; rc == 0 && off < n;) {
            struct dirent64 *entry = (struct dirent64 *)(void *)(buf.bytes + off);
            off += entry->d_reclen;
            if (s_entry_pid(entry->d_name) > 0)
                rc = s_each_child_of_thread(dir, entry->d_name, visit, arg);
        }
    close(dir);
    return rc;
}

int fz_proctab_sweep_children(pid_t parent)
{
    s_sweep_t sweep = {parent, 0};
    if (parent != getpid() || s_each_own_child(s_sweep_visit, &sweep) < 0) {
        sweep.seen = 0;
        fz_proctab_each(s_sweep_visit, &sweep);
    }
    return sweep.seen;
}
