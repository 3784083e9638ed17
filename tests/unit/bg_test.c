/*  bg_test: fz_bg runs jobs on its thread in order, one at a time; done runs on the caller's
    thread from collect, exactly once per job; a stop reaches a running and a queued job; a
    hold keeps jobs from starting; destroy stops the running job and drops the queued ones
    (done with ran = false). */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fz_bg.h"
#include "fz_util.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

typedef struct {
    int order[16];
    atomic_int nran;
    int ndone, nnot_ran;
    pthread_t loop; /* the thread done must run on */
} log_t;

typedef struct {
    log_t *log;
    int id;
    int sleep_ms;      /* how long the job takes unless stopped */
    bool saw_stop;     /* the stop flag was set when it ended */
    bool done_on_loop; /* done ran on the loop's thread */
} job_t;

static void s_fn(void *arg, const atomic_bool *stop)
{
    job_t *j = arg;
    int n = atomic_fetch_add(&j->log->nran, 1);
    if (n < 16)
        j->log->order[n] = j->id;
    for (int t = 0; t < j->sleep_ms && !atomic_load(stop); t += 5)
        usleep(5000);
    j->saw_stop = atomic_load(stop);
}

static void s_done(void *arg, bool ran)
{
    job_t *j = arg;
    j->log->ndone++;
    if (!ran)
        j->log->nnot_ran++;
    j->done_on_loop = pthread_equal(pthread_self(), j->log->loop);
}

/* Collects until n jobs are done or 5 s passed, waiting on the runner's descriptor. */
static void s_collect(fz_bg_t *bg, log_t *log, int n)
{
    int64_t until = fz_clock_ms() + 5000;
    while (log->ndone < n && fz_clock_ms() < until) {
        struct pollfd p = {.fd = fz_bg_fd(bg), .events = POLLIN};
        poll(&p, 1, 100);
        fz_bg_collect(bg);
    }
    assert_int_equal(log->ndone, n);
}

static void t_order_and_done(void **state)
{
    (void)state;
    log_t log = {.loop = pthread_self()};
    job_t j[3] = {{&log, 1, 30, 0, 0}, {&log, 2, 0, 0, 0}, {&log, 3, 10, 0, 0}};
    fz_bg_t *bg = fz_bg_new();
    assert_non_null(bg);
    assert_true(fz_bg_idle(bg));
    for (int i = 0; i < 3; i++)
        assert_true(fz_bg_add(bg, s_fn, s_done, &j[i]) > 0);
    assert_false(fz_bg_idle(bg));
    s_collect(bg, &log, 3);
    assert_true(fz_bg_idle(bg));
    assert_int_equal(log.order[0], 1);
    assert_int_equal(log.order[1], 2);
    assert_int_equal(log.order[2], 3);
    for (int i = 0; i < 3; i++) {
        assert_true(j[i].done_on_loop);
        assert_false(j[i].saw_stop);
    }
    assert_int_equal(fz_bg_collect(bg), 0); /* nothing twice */
    fz_bg_destroy(&bg);
    assert_null(bg);
    fz_bg_destroy(&bg); /* accepts NULL */
}

static void t_stop(void **state)
{
    (void)state;
    log_t log = {.loop = pthread_self()};
    job_t slow = {&log, 1, 10000, 0, 0}, queued = {&log, 2, 10000, 0, 0};
    fz_bg_t *bg = fz_bg_new();
    uint64_t a = fz_bg_add(bg, s_fn, s_done, &slow);
    uint64_t b = fz_bg_add(bg, s_fn, s_done, &queued);
    while (atomic_load(&log.nran) == 0)
        usleep(1000);
    int64_t t0 = fz_clock_ms();
    fz_bg_stop(bg, a);
    fz_bg_stop(bg, b);
    fz_bg_stop(bg, 999); /* unknown: ignored */
    s_collect(bg, &log, 2);
    assert_true(fz_clock_ms() - t0 < 2000);
    assert_true(slow.saw_stop && queued.saw_stop);
    assert_int_equal(log.nnot_ran, 0);
    fz_bg_destroy(&bg);
}

/* The runner's thread blocks every signal: a process's SIGTERM must reach the loop. */
static void s_mask_fn(void *arg, const atomic_bool *stop)
{
    (void)stop;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    *(int *)arg = sigismember(&cur, SIGTERM) && sigismember(&cur, SIGINT);
}

static void t_signals_blocked(void **state)
{
    (void)state;
    int blocked = -1;
    fz_bg_t *bg = fz_bg_new();
    fz_bg_add(bg, s_mask_fn, NULL, &blocked);
    int64_t until = fz_clock_ms() + 5000;
    while (!fz_bg_idle(bg) && fz_clock_ms() < until) {
        struct pollfd p = {.fd = fz_bg_fd(bg), .events = POLLIN};
        poll(&p, 1, 100);
        fz_bg_collect(bg);
    }
    assert_int_equal(blocked, 1);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    assert_false(sigismember(&cur, SIGTERM)); /* the caller's own mask is as it was */
    fz_bg_destroy(&bg);
}

static void t_hold(void **state)
{
    (void)state;
    log_t log = {.loop = pthread_self()};
    job_t j = {&log, 1, 0, 0, 0};
    fz_bg_t *bg = fz_bg_new();
    fz_bg_hold(bg, true);
    fz_bg_hold(bg, true); /* two holders */
    fz_bg_add(bg, s_fn, s_done, &j);
    usleep(100 * 1000);
    assert_int_equal(atomic_load(&log.nran), 0); /* held: not started */
    assert_int_equal(fz_bg_collect(bg), 0);
    assert_false(fz_bg_idle(bg));
    fz_bg_hold(bg, false);
    usleep(50 * 1000);
    assert_int_equal(atomic_load(&log.nran), 0); /* one hold left */
    fz_bg_hold(bg, false);
    s_collect(bg, &log, 1);
    fz_bg_destroy(&bg);
}

static void t_destroy(void **state)
{
    (void)state;
    log_t log = {.loop = pthread_self()};
    job_t running = {&log, 1, 10000, 0, 0}, queued = {&log, 2, 0, 0, 0};
    fz_bg_t *bg = fz_bg_new();
    fz_bg_add(bg, s_fn, s_done, &running);
    fz_bg_add(bg, s_fn, s_done, &queued);
    while (atomic_load(&log.nran) == 0)
        usleep(1000);
    int64_t t0 = fz_clock_ms();
    fz_bg_destroy(&bg);
    assert_true(fz_clock_ms() - t0 < 2000);
    assert_int_equal(log.ndone, 2);
    assert_int_equal(log.nnot_ran, 1); /* the queued one never ran */
    assert_int_equal(atomic_load(&log.nran), 1);
    assert_true(running.saw_stop && running.done_on_loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_order_and_done),  cmocka_unit_test(t_stop),    cmocka_unit_test(t_hold),
        cmocka_unit_test(t_signals_blocked), cmocka_unit_test(t_destroy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
