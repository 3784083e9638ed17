/*  fzb-spawn: the floor under fz's real-process rows of scripts/bench.

    K threads, each a bare loop of posix_spawn("/bin/sh", "-c", CMD) + waitpid: what running
    the agent costs with no broker, no worker, no keeper, no capture. fz-worker --agent CMD runs
    the same /bin/sh -c CMD per task, so the ratio of the two rates is fz's overhead. Prints the
    RESULT line of fzb_common.h plus self_cpu_us_per_op (this process) and
    child_cpu_us_per_op (the shells, from RUSAGE_CHILDREN). */

#include "fzb_common.h"

#include <pthread.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

static const char *prog = "fzb-spawn";

typedef struct {
    const char *cmd;
    long long total, warmup;
    long long next; /* the next spawn's index, under lock */
    int64_t stop_at;
    int64_t t0; /* when the warm-up ended */
    long long done;
    fzb_lat_t lat;
    pthread_mutex_t lock;
    struct rusage self0, kids0;
} spawn_run_t;

/* The next spawn's index, or -1 when the count or the time is used up. */
static long long s_take(spawn_run_t *r)
{
    pthread_mutex_lock(&r->lock);
    long long i = -1;
    if (r->next < r->total && (r->next < r->warmup || fzb_now_ns() < r->stop_at))
        i = r->next++;
    pthread_mutex_unlock(&r->lock);
    return i;
}

static void s_done(spawn_run_t *r, long long i, int64_t ns)
{
    pthread_mutex_lock(&r->lock);
    if (i >= r->warmup)
        fzb_lat_add(&r->lat, ns);
    if (++r->done == r->warmup) {
        /* Measured from here: the warm-up spawns are over (the others are not yet begun,
           or at most K-1 are in flight: counted as measured). */
        r->t0 = fzb_now_ns();
        getrusage(RUSAGE_SELF, &r->self0);
        getrusage(RUSAGE_CHILDREN, &r->kids0);
    }
    pthread_mutex_unlock(&r->lock);
}

static void *s_loop(void *arg)
{
    spawn_run_t *r = arg;
    char *argv[] = {"/bin/sh", "-c", (char *)r->cmd, NULL};
    for (long long i; (i = s_take(r)) >= 0;) {
        int64_t t = fzb_now_ns();
        pid_t pid;
        int st, rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
        if (rc)
            fzb_die(prog, "posix_spawn: %s", strerror(rc));
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR)
                fzb_die(prog, "waitpid: %s", strerror(errno));
        if (!WIFEXITED(st) || WEXITSTATUS(st))
            fzb_die(prog, "'%s' failed (status %d)", r->cmd, st);
        s_done(r, i, fzb_now_ns() - t);
    }
    return NULL;
}

static double s_us(const struct timeval *a, const struct timeval *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 + (double)(b->tv_usec - a->tv_usec);
}

int main(int argc, char **argv)
{
    fzb_opts_t o;
    fzb_opts_defaults(&o);
    o.warmup = 20;
    const char *cmd = "true";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cmd") && i + 1 < argc)
            cmd = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("Usage: fzb-spawn [--cmd CMD] --workers K [--n N] [--secs S] [--warmup N]\n"
                   "K threads, each looping posix_spawn(/bin/sh -c CMD) + waitpid (CMD: true).\n"
                   "Prints one RESULT line.\n");
            return 0;
        } else if (!fzb_opt(prog, argc, argv, &i, &o)) {
            fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, argv[i]);
            return 2;
        }
    }
    spawn_run_t r = {.cmd = cmd, .total = o.warmup + o.n, .warmup = o.warmup, .stop_at = INT64_MAX};
    pthread_mutex_init(&r.lock, NULL);
    fzb_lat_init(&r.lat, (size_t)o.n);
    if (!r.warmup) {
        r.t0 = fzb_now_ns();
        getrusage(RUSAGE_SELF, &r.self0);
        getrusage(RUSAGE_CHILDREN, &r.kids0);
    }
    /* The time cap counts from the start; the warm-up is short. */
    r.stop_at = fzb_now_ns() + o.secs * 1000000000LL;
    pthread_t *t = calloc((size_t)o.workers, sizeof *t);
    if (!t)
        fzb_die(prog, "out of memory");
    for (long long k = 0; k < o.workers; k++)
        if (pthread_create(&t[k], NULL, s_loop, &r))
            fzb_die(prog, "pthread_create failed");
    for (long long k = 0; k < o.workers; k++)
        pthread_join(t[k], NULL);
    int64_t t1 = fzb_now_ns();
    struct rusage self1, kids1;
    getrusage(RUSAGE_SELF, &self1);
    getrusage(RUSAGE_CHILDREN, &kids1);
    long long ops = r.done - r.warmup;
    fzb_result(&r.lat, ops, t1 - r.t0, -1, -1);
    double n = ops > 0 ? (double)ops : 1;
    printf(
        " workers=%lld self_cpu_us_per_op=%.1f child_cpu_us_per_op=%.1f\n", o.workers,
        (s_us(&r.self0.ru_utime, &self1.ru_utime) + s_us(&r.self0.ru_stime, &self1.ru_stime)) / n,
        (s_us(&r.kids0.ru_utime, &kids1.ru_utime) + s_us(&r.kids0.ru_stime, &kids1.ru_stime)) / n);
    free(t);
    fzb_lat_free(&r.lat);
    pthread_mutex_destroy(&r.lock);
    return 0;
}
