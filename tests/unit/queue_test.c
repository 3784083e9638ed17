/*  queue_test: the ready queue (broker/fz_queue.c), a binary heap of tasks.

    The promises of fz_queue.h: order by rank (higher first), then id (lower first, so FIFO
    among equal ranks); each queued task knows its heap position (heap_index) and its queue,
    and a task that leaves gets queue NULL; remove and update keep the heap valid wherever the
    task sits. s_check verifies the heap invariant and every back-pointer after each
    operation; a randomized run checks 10^5 operations against a sorted-array model. */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_queue.h"

/* ---------------------------------------------------------------- helpers */

static void s_task(fz_task_t *t, uint64_t id, double rank)
{
    memset(t, 0, sizeof *t);
    t->id = id;
    t->rank = rank;
    t->state = FZ_STATE_QUEUED;
}

/* Fails unless q is a valid heap of exactly `size` tasks, each pointing back at its slot
   and at q. */
static void s_check(fz_queue_t *q, size_t size, const char *file, int line)
{
    if (fz_queue_size(q) != size) {
        print_error("%s:%d: size %zu, expected %zu\n", file, line, fz_queue_size(q), size);
        _fail(file, line);
    }
    for (size_t i = 0; i < size; i++) {
        fz_task_t *t = fz_queue_at(q, i);
        if (!t || t->heap_index != i || t->queue != (void *)q) {
            print_error("%s:%d: slot %zu: task %p heap_index %zu queue %p (queue is %p)\n", file,
                        line, i, (void *)t, t ? t->heap_index : 0, t ? t->queue : NULL, (void *)q);
            _fail(file, line);
        }
        if (i > 0 && fz_queue_before(t, fz_queue_at(q, (i - 1) / 2))) {
            print_error("%s:%d: heap order broken at slot %zu (id %llu rank %g above id %llu "
                        "rank %g)\n",
                        file, line, i, (unsigned long long)fz_queue_at(q, (i - 1) / 2)->id,
                        fz_queue_at(q, (i - 1) / 2)->rank, (unsigned long long)t->id, t->rank);
            _fail(file, line);
        }
    }
    if (fz_queue_at(q, size) != NULL) {
        print_error("%s:%d: fz_queue_at past the end is not NULL\n", file, line);
        _fail(file, line);
    }
    fz_task_t *top = fz_queue_peek(q);
    if (size ? top != fz_queue_at(q, 0) : top != NULL) {
        print_error("%s:%d: peek is not slot 0\n", file, line);
        _fail(file, line);
    }
}
#define CHECK(q, size) s_check((q), (size), __FILE__, __LINE__)

/* A task that left the queue is detached. */
#define ASSERT_DETACHED(t)                                                                         \
    do {                                                                                           \
        assert_null((t)->queue);                                                                   \
        assert_int_equal((t)->heap_index, (size_t)-1);                                             \
    } while (0)

/* Pops everything and checks the ids come out in `want` order. */
static void s_drain(fz_queue_t *q, const uint64_t *want, size_t n, const char *file, int line)
{
    for (size_t i = 0; i < n; i++) {
        fz_task_t *t = fz_queue_pop(q);
        if (!t || t->id != want[i]) {
            print_error("%s:%d: pop %zu gave id %llu, expected %llu\n", file, line, i,
                        t ? (unsigned long long)t->id : 0ULL, (unsigned long long)want[i]);
            _fail(file, line);
        }
        if (t->queue != NULL || t->heap_index != (size_t)-1) {
            print_error("%s:%d: popped task %llu still attached\n", file, line,
                        (unsigned long long)t->id);
            _fail(file, line);
        }
        s_check(q, n - i - 1, file, line);
    }
    if (fz_queue_pop(q) != NULL) {
        print_error("%s:%d: queue not empty after %zu pops\n", file, line, n);
        _fail(file, line);
    }
}
#define DRAIN(q, ...)                                                                              \
    do {                                                                                           \
        const uint64_t want_[] = {__VA_ARGS__};                                                    \
        s_drain((q), want_, sizeof want_ / sizeof *want_, __FILE__, __LINE__);                     \
    } while (0)

/* ---------------------------------------------------------------- tests */

static void test_empty(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    assert_non_null(q);
    CHECK(q, 0);
    assert_null(fz_queue_peek(q));
    assert_null(fz_queue_pop(q));
    assert_null(fz_queue_at(q, 0));
    assert_int_equal(fz_queue_size(q), 0);

    /* Removing or updating a task that is not in the queue changes nothing. */
    fz_task_t stranger;
    s_task(&stranger, 1, 5);
    fz_queue_remove(q, &stranger);
    fz_queue_update(q, &stranger);
    CHECK(q, 0);

    fz_queue_destroy(&q);
    assert_null(q);
    fz_queue_destroy(&q); /* NULL is fine */
    fz_queue_destroy(NULL);
}

static void test_single(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    fz_task_t a;
    s_task(&a, 7, 1.5);
    assert_int_equal(fz_queue_push(q, &a), 0);
    CHECK(q, 1);
    assert_ptr_equal(fz_queue_peek(q), &a);
    assert_int_equal(fz_queue_size(q), 1); /* peek does not remove */
    assert_ptr_equal(fz_queue_pop(q), &a);
    ASSERT_DETACHED(&a);
    CHECK(q, 0);
    assert_null(fz_queue_pop(q));
    /* Pushed again after it left: works as new. */
    assert_int_equal(fz_queue_push(q, &a), 0);
    CHECK(q, 1);
    fz_queue_remove(q, &a);
    ASSERT_DETACHED(&a);
    CHECK(q, 0);
    fz_queue_destroy(&q);
}

static void test_before(void **state)
{
    (void)state;
    fz_task_t a, b;
    s_task(&a, 1, 5);
    s_task(&b, 2, 5);
    assert_true(fz_queue_before(&a, &b)); /* equal rank: lower id first */
    assert_false(fz_queue_before(&b, &a));
    assert_false(fz_queue_before(&a, &a)); /* strict */
    b.rank = 5.000001;
    assert_true(fz_queue_before(&b, &a)); /* higher rank first, whatever the id */
    assert_false(fz_queue_before(&a, &b));
    a.rank = -1e9;
    b.rank = -1e9 - 1;
    assert_true(fz_queue_before(&a, &b));
}

static void test_order_rank_then_id(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    /* Pushed out of order; ids deliberately not in push order. */
    static const struct {
        uint64_t id;
        double rank;
    } in[] = {{10, 1},   {3, 5}, {8, 5}, {1, 0}, {5, 5},     {2, -3.5},
              {9, 7.25}, {4, 1}, {7, 5}, {6, 0}, {11, 7.25}, {12, -3.5}};
    fz_task_t t[sizeof in / sizeof *in];
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        s_task(&t[i], in[i].id, in[i].rank);
        assert_int_equal(fz_queue_push(q, &t[i]), 0);
        CHECK(q, i + 1);
    }
    assert_int_equal(fz_queue_peek(q)->id, 9);
    DRAIN(q, 9, 11, 3, 5, 7, 8, 4, 10, 1, 6, 2, 12);
    fz_queue_destroy(&q);
}

static void test_fifo_among_equals(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    /* 200 tasks of one rank, pushed in a scrambled id order: they come out by id. */
    enum { N = 200 };
    fz_task_t t[N];
    for (size_t i = 0; i < N; i++) {
        s_task(&t[i], (uint64_t)((i * 73) % N) + 1, 3);
        assert_int_equal(fz_queue_push(q, &t[i]), 0);
    }
    CHECK(q, N);
    for (uint64_t id = 1; id <= N; id++) {
        fz_task_t *p = fz_queue_pop(q);
        assert_non_null(p);
        assert_int_equal(p->id, id);
        CHECK(q, N - id);
    }
    fz_queue_destroy(&q);
}

/* 15 tasks: a full heap of 4 levels, so top, middle and leaves all exist. */
static void s_fill15(fz_queue_t *q, fz_task_t *t)
{
    for (uint64_t i = 0; i < 15; i++) {
        s_task(&t[i], i + 1, (double)(15 - i)); /* id 1 has the highest rank */
        assert_int_equal(fz_queue_push(q, &t[i]), 0);
    }
    CHECK(q, 15);
}

static void test_remove_top_middle_bottom(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    fz_task_t t[15];
    s_fill15(q, t);

    /* top */
    fz_task_t *top = fz_queue_peek(q);
    assert_int_equal(top->id, 1);
    fz_queue_remove(q, top);
    ASSERT_DETACHED(top);
    CHECK(q, 14);
    assert_int_equal(fz_queue_peek(q)->id, 2);

    /* the last slot (a leaf: no sift at all) */
    fz_task_t *last = fz_queue_at(q, 13);
    uint64_t last_id = last->id;
    fz_queue_remove(q, last);
    ASSERT_DETACHED(last);
    CHECK(q, 13);

    /* a middle slot (has children and a parent) */
    fz_task_t *mid = fz_queue_at(q, 2);
    uint64_t mid_id = mid->id;
    fz_queue_remove(q, mid);
    ASSERT_DETACHED(mid);
    CHECK(q, 12);

    /* a leaf that is not last */
    fz_task_t *leaf = fz_queue_at(q, 7);
    uint64_t leaf_id = leaf->id;
    fz_queue_remove(q, leaf);
    ASSERT_DETACHED(leaf);
    CHECK(q, 11);

    /* Removing again is a no-op (it is no longer in the queue). */
    fz_queue_remove(q, leaf);
    CHECK(q, 11);

    /* What is left pops in order and contains none of the removed. */
    uint64_t prev = 0;
    size_t n = 0;
    fz_task_t *p;
    while ((p = fz_queue_pop(q))) {
        assert_true(p->id > prev);
        assert_true(p->id != 1 && p->id != last_id && p->id != mid_id && p->id != leaf_id);
        prev = p->id;
        n++;
        CHECK(q, 11 - n);
    }
    assert_int_equal(n, 11);
    fz_queue_destroy(&q);
}

/* Removing a slot whose replacement (the last task) must move UP, not down: the last task
   can rank above the removed one's parent when they sit in different subtrees. */
static void test_remove_replacement_sifts_up(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    /* heap by rank:          100
                        50           90
                     40    45     80    85
       slot 6 (85) is last; removing slot 3 (40) brings 85 under 50: it must rise above 50. */
    static const double ranks[] = {100, 50, 90, 40, 45, 80, 85};
    fz_task_t t[7];
    for (size_t i = 0; i < 7; i++) {
        s_task(&t[i], i + 1, ranks[i]);
        assert_int_equal(fz_queue_push(q, &t[i]), 0);
    }
    CHECK(q, 7);
    /* Pushing in decreasing-parent order gives exactly this layout. */
    for (size_t i = 0; i < 7; i++)
        assert_ptr_equal(fz_queue_at(q, i), &t[i]);
    fz_queue_remove(q, &t[3]);
    CHECK(q, 6);
    assert_int_equal(t[6].heap_index, 1); /* 85 rose to 50's place */
    assert_int_equal(t[1].heap_index, 3);
    DRAIN(q, 1, 3, 7, 6, 2, 5);
    fz_queue_destroy(&q);
}

static void test_remove_foreign_task_is_noop(void **state)
{
    (void)state;
    fz_queue_t *q1 = fz_queue_new(), *q2 = fz_queue_new();
    fz_task_t a, b;
    s_task(&a, 1, 1);
    s_task(&b, 2, 1);
    fz_queue_push(q1, &a);
    fz_queue_push(q2, &b);
    /* Both sit at slot 0 of their own queue; removing b from q1 must not touch a. */
    fz_queue_remove(q1, &b);
    CHECK(q1, 1);
    CHECK(q2, 1);
    assert_ptr_equal(fz_queue_peek(q1), &a);
    fz_queue_update(q1, &b);
    CHECK(q1, 1);
    fz_queue_remove(q2, &b);
    fz_queue_remove(q1, &a);
    CHECK(q1, 0);
    CHECK(q2, 0);
    fz_queue_destroy(&q1);
    fz_queue_destroy(&q2);
}

static void test_update_up_and_down(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    fz_task_t t[15];
    s_fill15(q, t); /* ranks 15..1 for ids 1..15 */

    /* A leaf rises to the top. */
    fz_task_t *leaf = &t[14]; /* id 15, rank 1 */
    leaf->rank = 100;
    fz_queue_update(q, leaf);
    CHECK(q, 15);
    assert_ptr_equal(fz_queue_peek(q), leaf);

    /* The top sinks to the bottom. */
    leaf->rank = -100;
    fz_queue_update(q, leaf);
    CHECK(q, 15);
    assert_int_equal(fz_queue_peek(q)->id, 1);

    /* A middle one ties with another: the lower id goes first. */
    t[9].rank = 14; /* id 10 ties with id 2 */
    fz_queue_update(q, &t[9]);
    CHECK(q, 15);
    t[0].rank = 14; /* id 1 now ties too */
    fz_queue_update(q, &t[0]);
    CHECK(q, 15);

    /* Update without a change is harmless. */
    fz_queue_update(q, &t[5]);
    CHECK(q, 15);

    DRAIN(q, 1, 2, 10, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15);
    fz_queue_destroy(&q);
}

static void test_grows_past_initial_capacity(void **state)
{
    (void)state;
    fz_queue_t *q = fz_queue_new();
    enum { N = 1000 };
    fz_task_t *t = calloc(N, sizeof *t);
    assert_non_null(t);
    for (size_t i = 0; i < N; i++) {
        s_task(&t[i], i + 1, (double)(i % 7));
        assert_int_equal(fz_queue_push(q, &t[i]), 0);
    }
    CHECK(q, N);
    double rank = 1e300;
    uint64_t id = 0;
    for (size_t i = 0; i < N; i++) {
        fz_task_t *p = fz_queue_pop(q);
        assert_non_null(p);
        assert_true(p->rank < rank || (p->rank == rank && p->id > id));
        rank = p->rank;
        id = p->id;
    }
    CHECK(q, 0);
    fz_queue_destroy(&q);
    free(t);
}

/* ---------------------------------------------------------------- model check */

static uint64_t s_rng = 0x9E3779B97F4A7C15ULL;
static uint64_t s_rand(void)
{
    /* xorshift64*: the same sequence on every libc */
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 0x2545F4914F6CDD1DULL;
}
static size_t s_below(size_t n)
{
    return (size_t)(s_rand() % n);
}

/* Inserts t into the sorted model of n tasks, keeping it sorted (order is total: ids are
   unique). */
static void s_model_insert(fz_task_t **model, size_t *n, fz_task_t *t)
{
    size_t k = 0;
    while (k < *n && fz_queue_before(model[k], t))
        k++;
    memmove(model + k + 1, model + k, (*n - k) * sizeof *model);
    model[k] = t;
    (*n)++;
}

static void s_model_erase(fz_task_t **model, size_t *n, size_t k)
{
    memmove(model + k, model + k + 1, (*n - k - 1) * sizeof *model);
    (*n)--;
}

/* 10^5 random operations (push, pop, peek, remove anywhere, update up or down) against a
   sorted array; the heap is checked in full after every operation. Ranks come from a small
   set so that ties (decided by id) are frequent. */
static void test_model_random(void **state)
{
    (void)state;
    enum { POOL = 600, OPS = 100000 };
    s_rng = 0x9E3779B97F4A7C15ULL;
    fz_queue_t *q = fz_queue_new();
    fz_task_t *pool = calloc(POOL, sizeof *pool);
    fz_task_t **model = calloc(POOL, sizeof *model); /* sorted: model[0] runs first */
    fz_task_t **out = calloc(POOL, sizeof *out);     /* tasks not queued */
    assert_true(q && pool && model && out);
    /* Unique ids, not in pool order. */
    for (size_t i = 0; i < POOL; i++) {
        s_task(&pool[i], (uint64_t)((i * 389) % POOL) + 1, 0);
        pool[i].heap_index = (size_t)-1;
        out[i] = &pool[i];
    }
    size_t n = 0, nout = POOL;
    size_t counts[6] = {0};
    for (int op = 0; op < OPS; op++) {
        unsigned kind = (unsigned)s_below(100);
        /* Keep the size wandering: favour pushes when small, pops when large. */
        if (n < 20 && kind >= 40)
            kind = (unsigned)s_below(40);
        if (n > 400 && kind < 40)
            kind = 40 + (unsigned)s_below(60);
        if (kind < 40 && nout > 0) { /* push */
            size_t k = s_below(nout);
            fz_task_t *t = out[k];
            out[k] = out[--nout];
            t->rank = (double)s_below(9) - 4;
            assert_int_equal(fz_queue_push(q, t), 0);
            s_model_insert(model, &n, t);
            counts[0]++;
        } else if (kind < 55) { /* pop */
            fz_task_t *t = fz_queue_pop(q);
            if (n == 0) {
                assert_null(t);
            } else {
                assert_ptr_equal(t, model[0]);
                s_model_erase(model, &n, 0);
                ASSERT_DETACHED(t);
                out[nout++] = t;
            }
            counts[1]++;
        } else if (kind < 60) { /* peek */
            fz_task_t *t = fz_queue_peek(q);
            assert_ptr_equal(t, n ? model[0] : NULL);
            counts[2]++;
        } else if (kind < 80 && n > 0) { /* remove any */
            size_t k = s_below(n);
            fz_task_t *t = model[k];
            fz_queue_remove(q, t);
            s_model_erase(model, &n, k);
            ASSERT_DETACHED(t);
            out[nout++] = t;
            counts[3]++;
        } else if (n > 0) { /* update: up, down or same */
            size_t k = s_below(n);
            fz_task_t *t = model[k];
            s_model_erase(model, &n, k);
            t->rank += (double)s_below(7) - 3;
            fz_queue_update(q, t);
            s_model_insert(model, &n, t);
            counts[4]++;
        } else {
            counts[5]++;
        }
        CHECK(q, n);
        if (n)
            assert_ptr_equal(fz_queue_peek(q), model[0]);
    }
    /* The operations really were mixed. */
    for (int i = 0; i < 5; i++)
        assert_true(counts[i] > 3000);
    /* Drain in model order. */
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(fz_queue_pop(q), model[i]);
    CHECK(q, 0);
    fz_queue_destroy(&q);
    free(pool);
    free(model);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_single),
        cmocka_unit_test(test_before),
        cmocka_unit_test(test_order_rank_then_id),
        cmocka_unit_test(test_fifo_among_equals),
        cmocka_unit_test(test_remove_top_middle_bottom),
        cmocka_unit_test(test_remove_replacement_sifts_up),
        cmocka_unit_test(test_remove_foreign_task_is_noop),
        cmocka_unit_test(test_update_up_and_down),
        cmocka_unit_test(test_grows_past_initial_capacity),
        cmocka_unit_test(test_model_random),
    };
    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
