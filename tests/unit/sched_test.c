/*  sched_test: the scheduler (broker/fz_sched.c): ready queues per model, the held queue,
    running limits and the budget check of a pick.

    Tasks and workers are built by hand (fz_task_t, fz_worker_t), as the broker would hold
    them; no broker, no store. The promises checked are those of fz_sched.h: which worker
    serves which model, best rank first across the queues a worker serves, per-model caps
    and the global limit, budget holds while picking (reported, bounded per pick, smaller
    tasks behind still run), best-first release of held tasks, and removal from either
    queue. */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <string.h>

#include "fz_sched.h"

/* fz_sched.c holds at most this many tasks per pick (FZ_SCHED_HOLDS_PER_PICK, private). */
#define HOLDS_PER_PICK 8

/* ---------------------------------------------------------------- helpers */

static void s_task(fz_task_t *t, uint64_t id, double rank, const char *model, double max_cost)
{
    memset(t, 0, sizeof *t);
    t->id = id;
    t->rank = rank;
    t->priority = (int64_t)rank;
    snprintf(t->model, sizeof t->model, "%s", model);
    t->max_cost = max_cost;
    t->state = FZ_STATE_QUEUED;
    t->inherited = INT64_MIN;
}

/* A worker serving the models listed (NULL-terminated); none listed = any model. */
static void s_worker(fz_worker_t *w, const char *name, ...)
{
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    va_list ap;
    va_start(ap, name);
    const char *m;
    while ((m = va_arg(ap, const char *)) && w->nmodels < FZ_MAX_WORKER_MODELS)
        snprintf(w->models[w->nmodels++], sizeof w->models[0], "%s", m);
    va_end(ap);
    w->any_model = w->nmodels == 0;
}

/* Records what held_fn / release fn were told. */
typedef struct {
    fz_task_t *tasks[64];
    size_t n;
} seen_t;

static void s_seen(void *arg, fz_task_t *task)
{
    seen_t *s = arg;
    if (s->n < 64)
        s->tasks[s->n] = task;
    s->n++;
}

static void s_budget(fz_budget_t *b, double cap, double spent, double reserved)
{
    fz_budget_init(b, cap, spent, 1710028800.0);
    fz_budget_reserve(b, reserved);
}

static fz_sched_t *s_new(uint32_t max_running)
{
    fz_sched_t *s = fz_sched_new(max_running);
    assert_non_null(s);
    return s;
}

/* Picks for w with no budget and checks the id (0 = expects NULL). */
static void s_expect_pick(fz_sched_t *s, const fz_worker_t *w, uint64_t id, const char *file,
                          int line)
{
    fz_task_t *t = fz_sched_pick(s, w, NULL, 0, NULL, NULL);
    uint64_t got = t ? t->id : 0;
    if (got != id) {
        print_error("%s:%d: worker %s picked %llu, expected %llu\n", file, line, w->name,
                    (unsigned long long)got, (unsigned long long)id);
        _fail(file, line);
    }
    if (t && t->queue != NULL) {
        print_error("%s:%d: picked task %llu is still in a queue\n", file, line,
                    (unsigned long long)got);
        _fail(file, line);
    }
}
#define PICK(s, w, id) s_expect_pick((s), (w), (id), __FILE__, __LINE__)

/* ---------------------------------------------------------------- tests */

static void test_new_destroy(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(3);
    assert_int_equal(fz_sched_max_running(s), 3);
    assert_int_equal(fz_sched_running(s), 0);
    assert_int_equal(fz_sched_ready(s), 0);
    assert_int_equal(fz_sched_held(s), 0);
    fz_worker_t w;
    s_worker(&w, "w", NULL);
    PICK(s, &w, 0);
    fz_budget_t b;
    s_budget(&b, 10, 0, 0);
    assert_int_equal(fz_sched_release_budget(s, &b, 1, NULL, NULL), 0);
    fz_sched_destroy(&s);
    assert_null(s);
    fz_sched_destroy(&s);
    fz_sched_destroy(NULL);
}

static void test_worker_serves(void **state)
{
    (void)state;
    fz_worker_t w;
    s_worker(&w, "ab", "a", "b", NULL);
    assert_false(w.any_model);
    assert_true(fz_worker_serves(&w, "a"));
    assert_true(fz_worker_serves(&w, "b"));
    assert_true(fz_worker_serves(&w, "")); /* "" = any model: every worker */
    assert_false(fz_worker_serves(&w, "c"));
    assert_false(fz_worker_serves(&w, "ab"));
    assert_false(fz_worker_serves(&w, "A"));

    fz_worker_t any;
    s_worker(&any, "any", NULL);
    assert_true(any.any_model);
    assert_true(fz_worker_serves(&any, "a"));
    assert_true(fz_worker_serves(&any, "zzz"));
    assert_true(fz_worker_serves(&any, ""));
}

static void test_worker_with_models_serves_only_those(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(100);
    fz_task_t t[4];
    s_task(&t[0], 1, 5, "a", 0);
    s_task(&t[1], 2, 5, "b", 0);
    s_task(&t[2], 3, 5, "c", 0);
    s_task(&t[3], 4, 5, "", 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fz_sched_enqueue(s, &t[i]), 0);
        assert_int_equal(fz_sched_where(s, &t[i]), FZ_SCHED_READY);
        assert_non_null(t[i].queue);
    }
    assert_int_equal(fz_sched_ready(s), 4);

    fz_worker_t ab, any;
    s_worker(&ab, "ab", "a", "b", NULL);
    s_worker(&any, "any", NULL);
    /* Equal ranks: by id, skipping c. */
    PICK(s, &ab, 1);
    PICK(s, &ab, 2);
    PICK(s, &ab, 4);
    PICK(s, &ab, 0); /* only c is left: not for this worker */
    assert_int_equal(fz_sched_ready(s), 1);
    assert_int_equal(fz_sched_where(s, &t[2]), FZ_SCHED_READY); /* untouched */
    PICK(s, &any, 3);
    assert_int_equal(fz_sched_ready(s), 0);
    PICK(s, &any, 0);

    /* A worker whose only model has no tasks gets the "" tasks only. */
    fz_worker_t z;
    s_worker(&z, "z", "z", NULL);
    s_task(&t[0], 10, 1, "a", 0);
    s_task(&t[1], 11, 0, "", 0);
    fz_sched_enqueue(s, &t[0]);
    fz_sched_enqueue(s, &t[1]);
    PICK(s, &z, 11);
    PICK(s, &z, 0);
    PICK(s, &any, 10);
    fz_sched_destroy(&s);
}

static void test_pick_best_rank_across_queues(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(100);
    fz_task_t t[9];
    s_task(&t[0], 1, 5, "a", 0);
    s_task(&t[1], 2, 7, "", 0);
    s_task(&t[2], 3, 6, "b", 0);
    s_task(&t[3], 4, 9, "c", 0); /* best of all, but not for worker ab */
    s_task(&t[4], 5, 6.5, "a", 0);
    s_task(&t[5], 6, 6, "a", 0); /* ties with id 3 (b): id 3 first */
    s_task(&t[6], 7, -2, "b", 0);
    s_task(&t[7], 8, 7, "b", 0);  /* ties with id 2 (""): id 2 first */
    s_task(&t[8], 9, 100, "", 0); /* enqueued last, runs first */
    for (int i = 0; i < 9; i++)
        assert_int_equal(fz_sched_enqueue(s, &t[i]), 0);
    fz_worker_t ab, any;
    s_worker(&ab, "ab", "a", "b", NULL);
    s_worker(&any, "any", NULL);
    PICK(s, &ab, 9);
    PICK(s, &ab, 2);
    PICK(s, &ab, 8);
    PICK(s, &ab, 5);
    PICK(s, &ab, 3);
    PICK(s, &ab, 6);
    PICK(s, &ab, 1);
    PICK(s, &ab, 7);
    PICK(s, &ab, 0);
    PICK(s, &any, 4);
    fz_sched_destroy(&s);
}

static void test_model_cap(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(100);
    assert_int_equal(fz_sched_set_cap(s, "a", 1), 0);
    assert_int_equal(fz_sched_set_cap(s, "b", 2), 0);
    fz_task_t a1, a2, b1, b2, b3, c1;
    s_task(&a1, 1, 9, "a", 0);
    s_task(&a2, 2, 8, "a", 0);
    s_task(&b1, 3, 7, "b", 0);
    s_task(&b2, 4, 6, "b", 0);
    s_task(&b3, 5, 5, "b", 0);
    s_task(&c1, 6, 1, "c", 0); /* no cap of its own */
    fz_task_t *all[] = {&a1, &a2, &b1, &b2, &b3, &c1};
    for (size_t i = 0; i < 6; i++)
        fz_sched_enqueue(s, all[i]);
    fz_worker_t w;
    s_worker(&w, "w", NULL);

    PICK(s, &w, 1);
    fz_sched_started(s, &a1);
    /* a is at its cap: a2 (rank 8) waits, b runs. */
    PICK(s, &w, 3);
    fz_sched_started(s, &b1);
    PICK(s, &w, 4);
    fz_sched_started(s, &b2);
    /* a and b at their caps: only c. */
    PICK(s, &w, 6);
    fz_sched_started(s, &c1);
    PICK(s, &w, 0);
    assert_int_equal(fz_sched_ready(s), 2); /* a2 and b3 stay queued */
    assert_int_equal(fz_sched_where(s, &a2), FZ_SCHED_READY);
    assert_int_equal(fz_sched_where(s, &b3), FZ_SCHED_READY);
    assert_int_equal(fz_sched_held(s), 0); /* a cap skips; it does not hold */
    assert_int_equal(fz_sched_running(s), 4);

    /* A b ends: b3 may run, a2 still may not. */
    fz_sched_ended(s, &b1);
    PICK(s, &w, 5);
    fz_sched_started(s, &b3);
    PICK(s, &w, 0);
    fz_sched_ended(s, &a1);
    PICK(s, &w, 2);

    /* A cap of 0 is no per-model limit. */
    fz_sched_set_cap(s, "a", 0);
    fz_task_t a3;
    s_task(&a3, 7, 1, "a", 0);
    fz_sched_started(s, &a2);
    fz_sched_enqueue(s, &a3);
    PICK(s, &w, 7);
    fz_sched_destroy(&s);
}

static void test_global_max_running(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(2);
    fz_task_t t[4];
    for (int i = 0; i < 4; i++) {
        s_task(&t[i], (uint64_t)i + 1, 0, i % 2 ? "a" : "b", 0);
        fz_sched_enqueue(s, &t[i]);
    }
    fz_worker_t w;
    s_worker(&w, "w", NULL);
    PICK(s, &w, 1);
    fz_sched_started(s, &t[0]);
    PICK(s, &w, 2);
    fz_sched_started(s, &t[1]);
    assert_int_equal(fz_sched_running(s), 2);
    PICK(s, &w, 0); /* at the global limit, whatever is ready */
    assert_int_equal(fz_sched_ready(s), 2);
    fz_sched_ended(s, &t[0]);
    assert_int_equal(fz_sched_running(s), 1);
    PICK(s, &w, 3);
    fz_sched_started(s, &t[2]);
    PICK(s, &w, 0);
    fz_sched_ended(s, &t[1]);
    fz_sched_ended(s, &t[2]);
    assert_int_equal(fz_sched_running(s), 0);
    fz_sched_ended(s, &t[2]); /* one end too many: no underflow */
    assert_int_equal(fz_sched_running(s), 0);
    PICK(s, &w, 4);
    fz_sched_destroy(&s);
}

static void test_budget_holds_big_task_and_picks_smaller(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(10);
    fz_budget_t b;
    s_budget(&b, 10, 3, 2); /* left 5 */
    fz_task_t big, dflt, small;
    s_task(&big, 1, 9, "a", 20);
    s_task(&dflt, 2, 8, "", 0); /* reserves the default cost: 6 > 5 */
    s_task(&small, 3, 1, "a", 1);
    fz_sched_enqueue(s, &big);
    fz_sched_enqueue(s, &dflt);
    fz_sched_enqueue(s, &small);
    fz_worker_t w;
    s_worker(&w, "w", "a", NULL);
    seen_t seen = {0};
    fz_task_t *t = fz_sched_pick(s, &w, &b, 6, s_seen, &seen);
    assert_ptr_equal(t, &small);
    assert_null(small.queue);
    assert_int_equal(seen.n, 2);
    assert_ptr_equal(seen.tasks[0], &big); /* best first */
    assert_ptr_equal(seen.tasks[1], &dflt);
    for (int i = 0; i < 2; i++) {
        fz_task_t *h = seen.tasks[i];
        assert_int_equal(fz_sched_where(s, h), FZ_SCHED_HELD);
        assert_string_equal(h->hold_reason, "budget");
        assert_non_null(h->queue);
    }
    assert_int_equal(fz_sched_held(s), 2);
    assert_int_equal(fz_sched_ready(s), 0);
    /* Held tasks are not picked. */
    seen.n = 0;
    assert_null(fz_sched_pick(s, &w, &b, 6, s_seen, &seen));
    assert_int_equal(seen.n, 0);
    fz_sched_destroy(&s);
}

static void test_budget_exact_fit_and_no_budget(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(10);
    fz_budget_t b;
    s_budget(&b, 1.0, 0.25, 0.25); /* left 0.5 */
    fz_task_t t1, t2;
    s_task(&t1, 1, 0, "", 0.5);
    s_task(&t2, 2, 0, "", 0); /* default 0.5 */
    fz_sched_enqueue(s, &t1);
    fz_sched_enqueue(s, &t2);
    fz_worker_t w;
    s_worker(&w, "w", NULL);
    /* held_fn may be NULL. */
    assert_ptr_equal(fz_sched_pick(s, &w, &b, 0.5, NULL, NULL), &t1);
    assert_ptr_equal(fz_sched_pick(s, &w, &b, 0.5, NULL, NULL), &t2);
    assert_int_equal(fz_sched_held(s), 0);

    /* No budget (NULL): no check at all. */
    fz_task_t huge;
    s_task(&huge, 3, 0, "", 1e6);
    fz_sched_enqueue(s, &huge);
    assert_ptr_equal(fz_sched_pick(s, &w, NULL, 0.5, NULL, NULL), &huge);

    /* A negative left refuses even a free task (nothing fits). */
    fz_budget_settle(&b, 0, 5);
    fz_task_t freebie;
    s_task(&freebie, 4, 0, "", 0);
    fz_sched_enqueue(s, &freebie);
    seen_t seen = {0};
    assert_null(fz_sched_pick(s, &w, &b, 0, s_seen, &seen));
    assert_int_equal(seen.n, 1);
    assert_int_equal(fz_sched_where(s, &freebie), FZ_SCHED_HELD);
    fz_sched_destroy(&s);
}

static void test_holds_bounded_per_pick(void **state)
{
    (void)state;
    enum { NBIG = 20 };
    fz_sched_t *s = s_new(10);
    fz_budget_t b;
    s_budget(&b, 10, 0, 0);
    fz_task_t big[NBIG], small;
    for (int i = 0; i < NBIG; i++) {
        s_task(&big[i], (uint64_t)i + 1, 100 - i, i % 2 ? "a" : "", 50);
        fz_sched_enqueue(s, &big[i]);
    }
    s_task(&small, 100, 1, "a", 1);
    fz_sched_enqueue(s, &small);
    fz_worker_t w;
    s_worker(&w, "w", "a", NULL);
    seen_t seen = {0};

    /* Each pick holds at most HOLDS_PER_PICK, best first, then gives up for this turn. */
    assert_null(fz_sched_pick(s, &w, &b, 1, s_seen, &seen));
    assert_int_equal(seen.n, HOLDS_PER_PICK);
    assert_int_equal(fz_sched_held(s), HOLDS_PER_PICK);
    assert_int_equal(fz_sched_ready(s), NBIG + 1 - HOLDS_PER_PICK);
    for (size_t i = 0; i < HOLDS_PER_PICK; i++)
        assert_ptr_equal(seen.tasks[i], &big[i]);
    assert_int_equal(fz_sched_where(s, &big[HOLDS_PER_PICK]),
                     FZ_SCHED_READY); /* the next stays ready */

    assert_null(fz_sched_pick(s, &w, &b, 1, s_seen, &seen));
    assert_int_equal(seen.n, 2 * HOLDS_PER_PICK);
    assert_int_equal(fz_sched_held(s), 2 * HOLDS_PER_PICK);

    /* The last 4 big ones are held and the small one behind them is picked. */
    assert_ptr_equal(fz_sched_pick(s, &w, &b, 1, s_seen, &seen), &small);
    assert_int_equal(seen.n, NBIG);
    assert_int_equal(fz_sched_held(s), NBIG);
    assert_int_equal(fz_sched_ready(s), 0);
    for (int i = 0; i < NBIG; i++) {
        assert_ptr_equal(seen.tasks[i], &big[i]);
        assert_int_equal(fz_sched_where(s, &big[i]), FZ_SCHED_HELD);
        assert_string_equal(big[i].hold_reason, "budget");
    }
    fz_sched_destroy(&s);
}

static void test_release_budget_best_first_stops_at_first_misfit(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(10);
    fz_task_t t[5];
    s_task(&t[0], 1, 9, "a", 3);
    s_task(&t[1], 2, 8, "", 0); /* the default cost: 2 */
    s_task(&t[2], 3, 7, "b", 4);
    s_task(&t[3], 4, 6, "a", 1); /* would fit what is left, but waits behind id 3 */
    s_task(&t[4], 5, 5, "a", 0.5);
    /* Held in scrambled order: the held queue orders them. */
    static const int order[] = {3, 0, 4, 2, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fz_sched_hold(s, &t[order[i]], "budget"), 0);
        assert_int_equal(fz_sched_where(s, &t[order[i]]), FZ_SCHED_HELD);
    }
    assert_int_equal(fz_sched_held(s), 5);
    assert_int_equal(fz_sched_ready(s), 0);

    fz_budget_t b;
    s_budget(&b, 10, 3, 1); /* left 6 */
    seen_t seen = {0};
    /* 3 fits (left 3), 2 fits (left 1), 4 does not: stop, though 1 would fit. */
    assert_int_equal(fz_sched_release_budget(s, &b, 2, s_seen, &seen), 2);
    assert_int_equal(seen.n, 2);
    assert_ptr_equal(seen.tasks[0], &t[0]);
    assert_ptr_equal(seen.tasks[1], &t[1]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fz_sched_where(s, &t[i]), FZ_SCHED_READY);
        assert_string_equal(t[i].hold_reason, "");
    }
    for (int i = 2; i < 5; i++)
        assert_int_equal(fz_sched_where(s, &t[i]), FZ_SCHED_HELD);
    assert_int_equal(fz_sched_held(s), 3);
    assert_int_equal(fz_sched_ready(s), 2);
    /* The budget itself is not touched: reservations happen at dispatch. */
    assert_true(b.reserved == 1 && b.spent == 3);

    /* Released tasks are ready for their workers. */
    fz_worker_t w;
    s_worker(&w, "w", NULL);
    PICK(s, &w, 1);
    PICK(s, &w, 2);

    /* Nothing fits: O(1), nothing moves, fn not called. */
    s_budget(&b, 10, 7, 0); /* left 3 < 4 */
    seen.n = 0;
    assert_int_equal(fz_sched_release_budget(s, &b, 2, s_seen, &seen), 0);
    assert_int_equal(seen.n, 0);
    assert_int_equal(fz_sched_held(s), 3);

    /* Exact fit of all the rest: 4 + 1 + 0.5 = 5.5, within the epsilon of left. */
    s_budget(&b, 10, 4.5, 0);
    assert_int_equal(fz_sched_release_budget(s, &b, 2, NULL, NULL), 3);
    assert_int_equal(fz_sched_held(s), 0);
    assert_int_equal(fz_sched_ready(s), 3);
    PICK(s, &w, 3);
    PICK(s, &w, 4);
    PICK(s, &w, 5);

    /* An exact fit through float noise: 0.7 - 3 x 0.1 is 0.3999999999999999 in doubles,
       and a task of 0.4 still fits (as fz_budget_fits would say). */
    fz_task_t c;
    s_task(&c, 6, 1, "", 0.4);
    fz_sched_hold(s, &c, "budget");
    fz_budget_init(&b, 0.7, 0, 1710028800.0);
    for (int i = 0; i < 3; i++)
        fz_budget_reserve(&b, 0.1);
    assert_true(fz_budget_left(&b) < 0.4);
    assert_true(fz_budget_fits(&b, 0.4));
    assert_int_equal(fz_sched_release_budget(s, &b, 1, NULL, NULL), 1);
    PICK(s, &w, 6);
    fz_sched_destroy(&s);
}

static void test_release_budget_after_pick_hold(void **state)
{
    (void)state;
    /* The round trip the broker makes: held at pick, released when the cap is raised. */
    fz_sched_t *s = s_new(10);
    fz_budget_t b;
    s_budget(&b, 1, 0, 0);
    fz_task_t t;
    s_task(&t, 1, 3, "a", 2);
    fz_sched_enqueue(s, &t);
    fz_worker_t w;
    s_worker(&w, "w", "a", NULL);
    seen_t seen = {0};
    assert_null(fz_sched_pick(s, &w, &b, 1, s_seen, &seen));
    assert_int_equal(seen.n, 1);
    assert_int_equal(fz_sched_release_budget(s, &b, 1, NULL, NULL), 0);
    b.cap = 2;
    assert_int_equal(fz_sched_release_budget(s, &b, 1, NULL, NULL), 1);
    assert_int_equal(fz_sched_where(s, &t), FZ_SCHED_READY);
    seen.n = 0;
    assert_ptr_equal(fz_sched_pick(s, &w, &b, 1, s_seen, &seen), &t);
    assert_int_equal(seen.n, 0);
    fz_sched_destroy(&s);
}

static void test_reservation(void **state)
{
    (void)state;
    fz_task_t t;
    s_task(&t, 1, 0, "", 2.5);
    assert_true(fz_sched_reservation(&t, 1) == 2.5);
    t.max_cost = 0;
    assert_true(fz_sched_reservation(&t, 1) == 1);
    assert_true(fz_sched_reservation(&t, 0.75) == 0.75);
    assert_true(fz_sched_reservation(&t, 0) == 0);
    t.max_cost = 0.01;
    assert_true(fz_sched_reservation(&t, 5) == 0.01);
}

static void test_remove_queued_and_held(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(10);
    fz_task_t q1, q2, h1, h2, loose;
    s_task(&q1, 1, 5, "a", 0);
    s_task(&q2, 2, 4, "a", 0);
    s_task(&h1, 3, 9, "", 0);
    s_task(&h2, 4, 8, "", 0);
    s_task(&loose, 5, 1, "", 0);
    fz_sched_enqueue(s, &q1);
    fz_sched_enqueue(s, &q2);
    fz_sched_hold(s, &h1, "budget");
    fz_sched_hold(s, &h2, "budget");
    assert_int_equal(fz_sched_ready(s), 2);
    assert_int_equal(fz_sched_held(s), 2);

    fz_sched_remove(s, &q1); /* the top of a ready queue */
    assert_null(q1.queue);
    assert_int_equal(fz_sched_ready(s), 1);
    fz_sched_remove(s, &h1); /* the top of the held queue */
    assert_null(h1.queue);
    assert_int_equal(fz_sched_held(s), 1);
    fz_sched_remove(s, &loose); /* in no queue: no-op */
    fz_sched_remove(s, &q1);    /* twice: no-op */
    assert_int_equal(fz_sched_ready(s), 1);
    assert_int_equal(fz_sched_held(s), 1);

    fz_worker_t w;
    s_worker(&w, "w", NULL);
    PICK(s, &w, 2);
    PICK(s, &w, 0);
    fz_budget_t b;
    s_budget(&b, 100, 0, 0);
    seen_t seen = {0};
    assert_int_equal(fz_sched_release_budget(s, &b, 1, s_seen, &seen), 1);
    assert_ptr_equal(seen.tasks[0], &h2);
    PICK(s, &w, 4);
    PICK(s, &w, 0);
    fz_sched_destroy(&s);
}

static void test_hold_moves_between_queues(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(10);
    fz_task_t t;
    s_task(&t, 1, 5, "a", 0);
    fz_sched_enqueue(s, &t);
    /* hold takes it out of its ready queue first */
    assert_int_equal(fz_sched_hold(s, &t, "model-cap"), 0);
    assert_int_equal(fz_sched_ready(s), 0);
    assert_int_equal(fz_sched_held(s), 1);
    assert_string_equal(t.hold_reason, "model-cap");
    /* the reason may be the task's own field (a restart re-holds with it) */
    assert_int_equal(fz_sched_hold(s, &t, t.hold_reason), 0);
    assert_string_equal(t.hold_reason, "model-cap");
    assert_int_equal(fz_sched_held(s), 1);
    /* a long reason is cut to fit */
    fz_sched_hold(s, &t, "a-reason-longer-than-fifteen");
    assert_string_equal(t.hold_reason, "a-reason-longer");
    assert_int_equal(fz_sched_held(s), 1);
    /* enqueue (after a remove) clears the hold */
    fz_sched_remove(s, &t);
    assert_int_equal(fz_sched_held(s), 0);
    assert_int_equal(fz_sched_where(s, &t), FZ_SCHED_NOWHERE);
    assert_int_equal(t.state, FZ_STATE_QUEUED); /* the scheduler writes no state */
    assert_int_equal(fz_sched_enqueue(s, &t), 0);
    assert_int_equal(fz_sched_where(s, &t), FZ_SCHED_READY);
    assert_string_equal(t.hold_reason, "");
    assert_int_equal(fz_sched_held(s), 0);
    assert_int_equal(fz_sched_ready(s), 1);
    fz_sched_destroy(&s);
}

static void test_reorder(void **state)
{
    (void)state;
    fz_sched_t *s = s_new(10);
    fz_task_t t[4];
    for (int i = 0; i < 3; i++) {
        s_task(&t[i], (uint64_t)i + 1, 10 - i, "a", 0);
        fz_sched_enqueue(s, &t[i]);
    }
    /* In the ready queue: the last rises to the top. */
    t[2].rank = 50;
    fz_sched_reorder(s, &t[2]);
    fz_worker_t w;
    s_worker(&w, "w", NULL);
    PICK(s, &w, 3);
    /* And the first sinks. */
    t[0].rank = -1;
    fz_sched_reorder(s, &t[0]);
    PICK(s, &w, 2);
    PICK(s, &w, 1);

    /* In the held queue: reordering changes the release order. */
    s_task(&t[0], 1, 3, "", 1);
    s_task(&t[1], 2, 2, "", 1);
    fz_sched_hold(s, &t[0], "budget");
    fz_sched_hold(s, &t[1], "budget");
    t[1].rank = 4;
    fz_sched_reorder(s, &t[1]);
    fz_budget_t b;
    s_budget(&b, 1, 0, 0); /* room for one */
    seen_t seen = {0};
    assert_int_equal(fz_sched_release_budget(s, &b, 1, s_seen, &seen), 1);
    assert_ptr_equal(seen.tasks[0], &t[1]);

    /* Reordering a task in no queue is a no-op. */
    s_task(&t[3], 9, 1, "", 0);
    fz_sched_reorder(s, &t[3]);
    assert_null(t[3].queue);
    fz_sched_destroy(&s);
}

static void test_many_models(void **state)
{
    (void)state;
    /* More models than the initial table (8): the table grows and keeps every queue. */
    enum { NM = 40 };
    fz_sched_t *s = s_new(1000);
    fz_task_t t[NM];
    char name[16];
    for (int i = 0; i < NM; i++) {
        snprintf(name, sizeof name, "m%d", i);
        s_task(&t[i], (uint64_t)i + 1, i, name, 0);
        assert_int_equal(fz_sched_enqueue(s, &t[i]), 0);
        if (i % 3 == 0)
            assert_int_equal(fz_sched_set_cap(s, name, 1), 0);
    }
    assert_int_equal(fz_sched_ready(s), NM);
    fz_worker_t w;
    s_worker(&w, "w", "m5", "m39", "m0", NULL);
    PICK(s, &w, 40);
    PICK(s, &w, 6);
    PICK(s, &w, 1);
    PICK(s, &w, 0);
    fz_worker_t any;
    s_worker(&any, "any", NULL);
    for (int i = NM - 1; i >= 0; i--)
        if (i != 39 && i != 5 && i != 0)
            PICK(s, &any, (uint64_t)i + 1);
    PICK(s, &any, 0);
    fz_sched_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroy),
        cmocka_unit_test(test_worker_serves),
        cmocka_unit_test(test_worker_with_models_serves_only_those),
        cmocka_unit_test(test_pick_best_rank_across_queues),
        cmocka_unit_test(test_model_cap),
        cmocka_unit_test(test_global_max_running),
        cmocka_unit_test(test_budget_holds_big_task_and_picks_smaller),
        cmocka_unit_test(test_budget_exact_fit_and_no_budget),
        cmocka_unit_test(test_holds_bounded_per_pick),
        cmocka_unit_test(test_release_budget_best_first_stops_at_first_misfit),
        cmocka_unit_test(test_release_budget_after_pick_hold),
        cmocka_unit_test(test_reservation),
        cmocka_unit_test(test_remove_queued_and_held),
        cmocka_unit_test(test_hold_moves_between_queues),
        cmocka_unit_test(test_reorder),
        cmocka_unit_test(test_many_models),
    };
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
