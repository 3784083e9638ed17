/*  fzb_common: what the three load generators of bench/ share (header only).

    - a monotonic clock in nanoseconds;
    - latency samples and their percentiles;
    - the CPU time of another process, all its threads (schedstat of each thread, exact; and
      utime + stime of /proc/PID/stat, tick-sampled);
    - strict number flags;
    - the one RESULT line every generator prints on stdout for scripts/bench to read:
          RESULT ops=N secs=S rate=R p50_us=.. p99_us=.. max_us=.. [server_cpu_us_per_op=..]
      followed by generator-specific key=value pairs. Diagnostics go to stderr.

    Nothing here knows fz: the raw ZeroMQ and beanstalkd generators use it too. */

#ifndef FZB_COMMON_H
#define FZB_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline int64_t fzb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void fzb_die(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
static inline void fzb_die(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---------------------------------------------------------------- latency samples */

typedef struct {
    int64_t *v; /* nanoseconds */
    size_t n, cap;
} fzb_lat_t;

static inline void fzb_lat_init(fzb_lat_t *l, size_t cap)
{
    l->n = 0;
    l->cap = cap ? cap : 1;
    l->v = malloc(l->cap * sizeof *l->v);
    if (!l->v) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

static inline void fzb_lat_add(fzb_lat_t *l, int64_t ns)
{
    if (l->n < l->cap)
        l->v[l->n++] = ns;
}

static int fzb_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Percentile p (0..100) in microseconds of the sorted samples; 0 without samples. */
static inline double fzb_lat_pct(const fzb_lat_t *l, double p)
{
    if (!l->n)
        return 0;
    size_t k = (size_t)(p / 100.0 * (double)l->n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > l->n)
        k = l->n;
    return (double)l->v[k - 1] / 1000.0;
}

static inline void fzb_lat_free(fzb_lat_t *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* ---------------------------------------------------------------- CPU of a process */

/* utime + stime of every thread of pid (/proc/PID/stat), in microseconds; -1 if it cannot be
   read. The kernel samples these at the clock tick (10 ms here): fine for long runs. */
static inline int64_t fzb_proc_cpu_us_stat(long pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    /* Fields after the command name, which may hold spaces and parentheses. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    unsigned long long utime = 0, stime = 0;
    /* state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime */
    if (sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return (int64_t)((utime + stime) * 1000000ULL / (unsigned long long)hz);
}

/* CPU time of every live thread of pid in microseconds, from /proc/PID/task/TID/schedstat
   (nanoseconds on the CPU, exact rather than tick-sampled); falls back to /proc/PID/stat. */
static inline int64_t fzb_proc_cpu_us(long pid)
{
    if (pid <= 0)
        return -1;
    char path[96];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return fzb_proc_cpu_us_stat(pid);
    unsigned long long total = 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/%ld/task/%.20s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        unsigned long long ns;
        if (f && fscanf(f, "%llu", &ns) == 1) {
            total += ns;
            n++;
        }
        if (f)
            fclose(f);
    }
    closedir(d);
    return n ? (int64_t)(total / 1000) : fzb_proc_cpu_us_stat(pid);
}

/* ---------------------------------------------------------------- flags */

static inline long long fzb_num(const char *prog, const char *flag, const char *s, long long min,
                                long long max)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < min || v > max) {
        fprintf(stderr, "%s: %s wants an integer in %lld..%lld, not '%s'\n", prog, flag, min, max,
                s ? s : "");
        exit(2);
    }
    return v;
}

/* The options every client takes. */
typedef struct {
    long long n;        /* measured operations */
    long long inflight; /* requests (or tasks) in flight at once */
    long long size;     /* payload bytes: prompt, job body, message */
    long long secs;     /* stop issuing new work after this many seconds */
    long long workers;  /* consumers (cycle) */
    long long warmup;   /* unmeasured operations first */
    long pid;           /* server to charge CPU to (0: none) */
} fzb_opts_t;

static inline void fzb_opts_defaults(fzb_opts_t *o)
{
    o->n = 10000;
    o->inflight = 1;
    o->size = 256;
    o->secs = 30;
    o->workers = 4;
    o->warmup = 200;
    o->pid = 0;
}

/* Takes one common option at argv[*i] (and its value); false if it is not one. */
static inline bool fzb_opt(const char *prog, int argc, char **argv, int *i, fzb_opts_t *o)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long *dst = NULL, min = 0, max = 0;
    if (!strcmp(a, "--n"))
        dst = &o->n, min = 1, max = 100000000;
    else if (!strcmp(a, "--inflight"))
        dst = &o->inflight, min = 1, max = 100000;
    else if (!strcmp(a, "--size"))
        dst = &o->size, min = 1, max = 60000;
    else if (!strcmp(a, "--secs"))
        dst = &o->secs, min = 1, max = 3600;
    else if (!strcmp(a, "--workers"))
        dst = &o->workers, min = 1, max = 1024;
    else if (!strcmp(a, "--warmup"))
        dst = &o->warmup, min = 0, max = 1000000;
    else if (!strcmp(a, "--pid")) {
        o->pid = (long)fzb_num(prog, a, v, 0, 1L << 30);
        (*i)++;
        return true;
    } else
        return false;
    *dst = fzb_num(prog, a, v, min, max);
    (*i)++;
    return true;
}

#define FZB_COMMON_HELP                                                                            \
    "  --n N          measured operations (default 10000)\n"                                       \
    "  --inflight K   operations in flight at once (default 1: wait for each)\n"                   \
    "  --size B       payload bytes (default 256)\n"                                               \
    "  --secs S       stop issuing work after S seconds, finish what is in flight (default 30)\n"  \
    "  --warmup N     unmeasured operations first (default 200)\n"                                 \
    "  --pid PID      report the CPU time this server process spent per measured operation\n"

/* Prints the RESULT line (without a newline: callers may add fields) from samples that the
   function sorts. */
static inline void fzb_result(fzb_lat_t *lat, long long ops, int64_t elapsed_ns, int64_t cpu_us,
                              int64_t stat_us)
{
    qsort(lat->v, lat->n, sizeof *lat->v, fzb_cmp_i64);
    double secs = (double)elapsed_ns / 1e9;
    printf("RESULT ops=%lld secs=%.3f rate=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f", ops, secs,
           secs > 0 ? (double)ops / secs : 0.0, fzb_lat_pct(lat, 50), fzb_lat_pct(lat, 99),
           fzb_lat_pct(lat, 100));
    if (cpu_us >= 0 && ops > 0)
        printf(" server_cpu_us_per_op=%.1f server_cpu_ms=%.0f", (double)cpu_us / (double)ops,
               (double)cpu_us / 1000.0);
    if (stat_us >= 0 && ops > 0)
        printf(" server_stat_us_per_op=%.1f", (double)stat_us / (double)ops);
}

/* The CPU of the server at the start and end of the measured part: exact and tick-sampled. */
typedef struct {
    int64_t exact, stat;
} fzb_cpu_t;

static inline fzb_cpu_t fzb_cpu(long pid)
{
    fzb_cpu_t c = {fzb_proc_cpu_us(pid), fzb_proc_cpu_us_stat(pid)};
    return c;
}

static inline void fzb_result_cpu(fzb_lat_t *lat, long long ops, int64_t elapsed_ns, fzb_cpu_t c0,
                                  fzb_cpu_t c1)
{
    fzb_result(lat, ops, elapsed_ns, c0.exact >= 0 && c1.exact >= 0 ? c1.exact - c0.exact : -1,
               c0.stat >= 0 && c1.stat >= 0 ? c1.stat - c0.stat : -1);
}

#endif
