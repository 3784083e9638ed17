/*  views_test: the replies views build from the store's rows (broker/fz_views.c, fz_views.h),
    on a store in a temp dir. Each reply is decoded back with fz_msg_decode and read with
    fz_obj_*: the task object and list rows carry every submit field with the type a submit
    would; fallback and after come back as submitted, an absent one as an empty array; an
    attempt's output is bin; the decorator adds memory's fields; a list stops before 1.5 MiB,
    and with tail keeps the newest; counts name every state; cost rows add up to total_cost
    and an unknown grouping is invalid. (The rows themselves are store_test's.) */

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
#include <unistd.h>

#include "fz_msg.h"
#include "fz_store.h"
#include "fz_views.h"
#include "store_fixture.h"

/* ---------------------------------------------------------------- msgpack objects */

/* ---------------------------------------------------------------- task helpers */

/* Decodes what e holds as a protocol message (destroys e). */
static fz_msg_t *s_decode(fz_enc_t **e)
{
    size_t len = 0;
    const void *data = fz_enc_data(*e, &len);
    assert_non_null(data);
    fz_msg_t *msg = NULL;
    char why[256] = "";
    fz_err_t err = fz_msg_decode(data, len, &msg, NULL, why, sizeof why);
    fz_enc_destroy(e);
    if (err != FZ_OK) {
        print_error("decode: %s: %s\n", fz_strerror(err), why);
        fail();
    }
    return msg;
}

static void s_str_is(const msgpack_object *map, const char *key, const char *want)
{
    char buf[512];
    fz_obj_str(map, key, buf, sizeof buf);
    if (strcmp(buf, want) != 0 || !fz_obj_get(map, key)) {
        print_error("field '%s' is '%s', expected '%s'\n", key, buf, want);
        fail();
    }
}

/* ---------------------------------------------------------------- task, attempts, list */

typedef struct {
    uint64_t ids[40000];
    size_t n;
} decorated_t;

static void s_decorate(void *arg, uint64_t id, fz_enc_t *task)
{
    decorated_t *d = arg;
    if (d->n < 40000)
        d->ids[d->n] = id;
    d->n++;
    fz_enc_float(task, "effective", 42.5);
}

static void test_encode_task_and_attempts(void **state)
{
    fx_t *fx = *state;
    char prompt[300];
    uint64_t dep;
    uint64_t id = s_add_rich_task(fx, prompt, sizeof prompt, &dep);

    fz_enc_t *e = fz_enc_new("task", 1);
    decorated_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    assert_int_equal(fz_views_task(fx->store, id, e, "task", s_decorate, d), FZ_OK);
    assert_int_equal(d->n, 1);
    assert_int_equal(d->ids[0], id);
    assert_int_equal(fz_views_attempts(fx->store, id, e, "attempts"), FZ_OK);
    fz_msg_t *msg = s_decode(&e);
    const msgpack_object *t = fz_msg_obj(msg, "task");
    assert_non_null(t);
    char why[256];
    /* Every submit field it carries has the type and range a submit would. */
    assert_int_equal(fz_msg_check_object(t, "submit", why, sizeof why), FZ_OK);
    assert_int_equal(fz_obj_uint(t, "id", 0), id);
    s_str_is(t, "state", "running");
    assert_int_equal(fz_obj_int(t, "priority", 0), -12);
    s_str_is(t, "model", "opus");
    s_str_is(t, "name", "named");
    assert_int_equal(fz_obj_uint(t, "timeout", 0), 600);
    assert_true(fz_obj_float(t, "max_cost", 0) == 2.5);
    assert_int_equal(fz_obj_uint(t, "retries", 0), 2);
    const msgpack_object *o = fz_obj_get(t, "fallback");
    assert_true(o && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 1);
    assert_int_equal(o->via.array.ptr[0].via.str.size, 6);
    assert_memory_equal(o->via.array.ptr[0].via.str.ptr, "sonnet", 6);
    o = fz_obj_get(t, "after");
    assert_true(o && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 1);
    assert_int_equal(o->via.array.ptr[0].via.u64, dep);
    o = fz_obj_get(t, "after_any"); /* not given: an empty array */
    assert_true(o && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 0);
    assert_int_equal(fz_obj_uint(t, "parent", 99), 0);
    assert_int_equal(fz_obj_uint(t, "attempts", 0), 2);
    s_str_is(t, "worker", "w2");
    s_str_is(t, "outcome", "exited");
    assert_int_equal(fz_obj_int(t, "exit_code", 0), -3);
    assert_true(fz_obj_float(t, "cost_usd", 0) == 0.75);
    assert_int_equal(fz_obj_uint(t, "tokens_in", 0), 1000);
    assert_int_equal(fz_obj_uint(t, "tokens_out", 0), 50);
    s_str_is(t, "summary", "it broke");
    s_str_is(t, "hold_reason", "");
    assert_true(fz_obj_float(t, "deadline", 0) == 1.8e9);
    assert_true(fz_obj_float(t, "created", 0) > 1.6e9);
    assert_true(fz_obj_float(t, "updated", 0) >= fz_obj_float(t, "created", 0));
    s_str_is(t, "prompt", prompt); /* whole, not cut */
    assert_true(fz_obj_float(t, "effective", 0) == 42.5);
    const msgpack_object *lab = fz_obj_get(t, "labels");
    assert_true(lab && lab->type == MSGPACK_OBJECT_MAP && lab->via.map.size == 2);
    s_str_is(lab, "team", "web");
    s_str_is(lab, "dry.cost", "0.1");

    const msgpack_object *as = fz_msg_obj(msg, "attempts");
    assert_true(as && as->type == MSGPACK_OBJECT_ARRAY && as->via.array.size == 2);
    const msgpack_object *a1 = &as->via.array.ptr[0], *a2 = &as->via.array.ptr[1];
    assert_int_equal(fz_obj_uint(a1, "n", 0), 1);
    s_str_is(a1, "worker", "w1");
    s_str_is(a1, "model", "opus");
    s_str_is(a1, "outcome", "exited");
    assert_int_equal(fz_obj_int(a1, "exit_code", 0), -3);
    assert_int_equal(fz_obj_uint(a1, "duration_ms", 0), 1234);
    assert_true(fz_obj_float(a1, "cost_usd", 0) == 0.75);
    assert_int_equal(fz_obj_uint(a1, "tokens_in", 0), 1000);
    s_str_is(a1, "summary", "it broke");
    s_str_is(a1, "log", "/var/log/a.log");
    assert_true(fz_obj_float(a1, "reserved", 0) == 2.5);
    assert_true(fz_obj_float(a1, "ended", 0) >= fz_obj_float(a1, "started", 1e12));
    o = fz_obj_get(a1, "output");
    assert_true(o && o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 7);
    assert_memory_equal(o->via.bin.ptr, "out\0put", 7);
    assert_int_equal(fz_obj_uint(a2, "n", 0), 2);
    s_str_is(a2, "outcome", "running");
    assert_true(fz_obj_float(a2, "ended", 1) == 0);
    o = fz_obj_get(a2, "output"); /* none yet: an empty bin */
    assert_true(o && o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == 0);
    fz_msg_destroy(&msg);

    /* No such task. */
    e = fz_enc_new("task", 1);
    assert_int_equal(fz_views_task(fx->store, 999, e, "task", s_decorate, d), FZ_ENOTFOUND);
    assert_int_equal(d->n, 1);
    fz_enc_destroy(&e);
    free(d);

    /* The dispatch payload: prompt and labels. */
    e = fz_enc_new("dispatch", 1);
    fz_enc_uint(e, "task", id);
    fz_enc_uint(e, "attempt", 3);
    size_t plen = 0;
    char *p = fz_store_prompt(fx->store, id, &plen); /* as fz_life_dispatch builds it */
    assert_non_null(p);
    fz_enc_strn(e, "prompt", p, plen);
    free(p);
    fz_views_labels(fx->store, id, e, "labels");
    msg = s_decode(&e);
    assert_string_equal(fz_msg_str(msg, "prompt", "", NULL), prompt);
    lab = fz_msg_obj(msg, "labels");
    assert_true(lab && lab->type == MSGPACK_OBJECT_MAP && lab->via.map.size == 2);
    s_str_is(lab, "team", "web");
    fz_msg_destroy(&msg);
}

static void test_encode_list_and_counts(void **state)
{
    fx_t *fx = *state;
    char prompt[200];
    for (int i = 0; i < 5; i++) {
        memset(prompt, 'a' + i, sizeof prompt - 1);
        prompt[sizeof prompt - 1] = 0;
        s_add(fx, prompt);
    }
    assert_int_equal(fz_store_task_state(fx->store, 2, FZ_STATE_HELD, "budget"), 0);
    assert_int_equal(fz_store_task_state(fx->store, 4, FZ_STATE_FAILED, ""), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);

    decorated_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    fz_enc_t *e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, NULL, 100, false, NULL, e, s_decorate, d),
                     FZ_OK);
    fz_msg_t *msg = s_decode(&e);
    assert_int_equal(fz_msg_uint(msg, "total", 0), 5);
    assert_false(fz_msg_has(msg, "truncated"));
    const msgpack_object *rows = fz_msg_obj(msg, "tasks");
    assert_int_equal(rows->via.array.size, 5);
    assert_int_equal(d->n, 5);
    char why[256];
    for (uint32_t i = 0; i < 5; i++) {
        const msgpack_object *t = &rows->via.array.ptr[i];
        assert_int_equal(fz_msg_check_object(t, "submit", why, sizeof why), FZ_OK);
        assert_int_equal(fz_obj_uint(t, "id", 0), i + 1);
        assert_int_equal(d->ids[i], i + 1);
        size_t len = 0;
        const char *p = fz_obj_strn(t, "prompt", &len);
        assert_int_equal(len, 80); /* lists carry the first 80 characters */
        for (size_t k = 0; k < len; k++)
            assert_int_equal(p[k], 'a' + (int)i);
        assert_true(fz_obj_float(t, "effective", 0) == 42.5);
    }
    s_str_is(&rows->via.array.ptr[1], "state", "held");
    s_str_is(&rows->via.array.ptr[1], "hold_reason", "budget");
    fz_msg_destroy(&msg);

    /* By state, with a limit under the total: the lowest ids, total of that state. */
    e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, "queued", 2, false, NULL, e, NULL, NULL),
                     FZ_OK);
    msg = s_decode(&e);
    assert_int_equal(fz_msg_uint(msg, "total", 0), 3);
    rows = fz_msg_obj(msg, "tasks");
    assert_int_equal(rows->via.array.size, 2);
    assert_int_equal(fz_obj_uint(&rows->via.array.ptr[0], "id", 0), 1);
    assert_int_equal(fz_obj_uint(&rows->via.array.ptr[1], "id", 0), 3);
    fz_msg_destroy(&msg);

    /* With the counts a caller keeps (the broker's tally), the total is theirs: no count. */
    uint64_t kept[FZ_STATE_COUNT] = {0};
    kept[FZ_STATE_QUEUED] = 7, kept[FZ_STATE_FAILED] = 2;
    e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, "queued", 2, false, kept, e, NULL, NULL),
                     FZ_OK);
    msg = s_decode(&e);
    assert_int_equal(fz_msg_uint(msg, "total", 0), 7);
    assert_int_equal(fz_msg_obj(msg, "tasks")->via.array.size, 2);
    fz_msg_destroy(&msg);
    e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, NULL, 1, false, kept, e, NULL, NULL), FZ_OK);
    msg = s_decode(&e);
    assert_int_equal(fz_msg_uint(msg, "total", 0), 9);
    fz_msg_destroy(&msg);

    /* tail: the newest of that state, still by id. */
    e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, "queued", 2, true, NULL, e, NULL, NULL), FZ_OK);
    msg = s_decode(&e);
    rows = fz_msg_obj(msg, "tasks");
    assert_int_equal(rows->via.array.size, 2);
    assert_true(fz_obj_uint(&rows->via.array.ptr[0], "id", 0) == 3);
    assert_true(fz_obj_uint(&rows->via.array.ptr[1], "id", 0) > 3);
    fz_msg_destroy(&msg);
    e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, "running", 100, false, NULL, e, NULL, NULL),
                     FZ_OK);
    msg = s_decode(&e);
    assert_int_equal(fz_msg_uint(msg, "total", 99), 0);
    assert_int_equal(fz_msg_obj(msg, "tasks")->via.array.size, 0);
    fz_msg_destroy(&msg);

    /* Counts (the store's, read by the broker at each load): every state, zeros included. */
    uint64_t tally[FZ_STATE_COUNT];
    assert_int_equal(fz_store_counts(fx->store, tally), 0);
    e = fz_enc_new("status", 1);
    fz_views_counts(tally, e);
    msg = s_decode(&e);
    const msgpack_object *counts = fz_msg_obj(msg, "counts");
    assert_int_equal(counts->via.map.size, FZ_STATE_COUNT);
    assert_int_equal(fz_obj_uint(counts, "queued", 99), 3);
    assert_int_equal(fz_obj_uint(counts, "held", 99), 1);
    assert_int_equal(fz_obj_uint(counts, "failed", 99), 1);
    assert_int_equal(fz_obj_uint(counts, "dep-failed", 99), 0);
    assert_int_equal(fz_obj_uint(counts, "running", 99), 0);
    fz_msg_destroy(&msg);
    free(d);
}

static void test_encode_list_truncates_before_3mib(void **state)
{
    fx_t *fx = *state;
    enum { N = 20000 };
    char prompt[201];
    for (int i = 0; i < N; i++) {
        snprintf(prompt, sizeof prompt, "%06d", i + 1);
        memset(prompt + 6, 'q', sizeof prompt - 7);
        prompt[200] = 0;
        fz_store_newtask_t nt = {.prompt = prompt, .prompt_len = 200, .state = FZ_STATE_QUEUED};
        assert_int_equal(fz_store_task_add(fx->store, &nt), (uint64_t)i + 1);
    }
    assert_int_equal(fz_store_commit(fx->store), 0);

    decorated_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    fz_enc_t *e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, NULL, 100000, false, NULL, e, s_decorate, d),
                     FZ_OK);
    size_t len = 0;
    assert_non_null(fz_enc_data(e, &len));
    const size_t cap = FZ_VIEWS_REPLY_BYTES;
    assert_true(len <= cap + 64);  /* rows stop at 1.5 MiB (plus the small envelope) */
    assert_true(len > cap - 1024); /* and not long before: a row is a few hundred bytes */
    assert_true(len < FZ_MAX_FRAME);
    fz_msg_t *msg = s_decode(&e);
    assert_true(fz_msg_bool(msg, "truncated", false));
    assert_int_equal(fz_msg_uint(msg, "total", 0), N);
    const msgpack_object *rows = fz_msg_obj(msg, "tasks");
    uint32_t n = rows->via.array.size;
    assert_true(n > 1000 && n < N);
    /* The decorator saw every row kept (and may have seen the one that did not fit). */
    assert_true(d->n == n || d->n == n + 1);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(d->ids[i], i + 1);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *t = &rows->via.array.ptr[i];
        assert_int_equal(fz_obj_uint(t, "id", 0), i + 1);
        size_t plen = 0;
        const char *p = fz_obj_strn(t, "prompt", &plen);
        char want[16];
        snprintf(want, sizeof want, "%06u", i + 1);
        assert_int_equal(plen, 80);
        assert_memory_equal(p, want, 6);
    }
    fz_msg_destroy(&msg);

    /* A limit under the cap: not truncated. */
    e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, NULL, 10, false, NULL, e, NULL, NULL), FZ_OK);
    msg = s_decode(&e);
    assert_false(fz_msg_bool(msg, "truncated", false));
    assert_int_equal(fz_msg_obj(msg, "tasks")->via.array.size, 10);
    assert_int_equal(fz_msg_uint(msg, "total", 0), N);
    fz_msg_destroy(&msg);

    /* tail, cut at 1.5 MiB: the newest tasks are kept (the oldest left out), still by id. */
    e = fz_enc_new("tasks", 1);
    assert_int_equal(fz_views_list_tasks(fx->store, NULL, 100000, true, NULL, e, NULL, NULL),
                     FZ_OK);
    msg = s_decode(&e);
    assert_true(fz_msg_bool(msg, "truncated", false));
    rows = fz_msg_obj(msg, "tasks");
    n = rows->via.array.size;
    assert_true(n > 1000 && n < N);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(fz_obj_uint(&rows->via.array.ptr[i], "id", 0), N - n + 1 + i);
    fz_msg_destroy(&msg);
    free(d);
}

/* ---------------------------------------------------------------- cost */

static void test_cost_rows(void **state)
{
    fx_t *fx = *state;
    uint64_t a = s_add(fx, "a"), b = s_add(fx, "b");
    assert_int_equal(fz_store_attempt_start(fx->store, a, 1, "w", "m1", 1), 0);
    assert_int_equal(s_finish(fx, a, 1, 0.5, "", FZ_STATE_SUCCEEDED), 1);
    assert_int_equal(fz_store_attempt_start(fx->store, b, 1, "w", "m2", 1), 0);
    assert_int_equal(s_finish(fx, b, 1, 0.25, "", FZ_STATE_SUCCEEDED), 1);
    assert_int_equal(fz_store_commit(fx->store), 0);
    fz_enc_t *e = fz_enc_new("cost", 1);
    assert_int_equal(fz_views_cost_rows(fx->store, "model", NULL, 0, e), FZ_OK);
    fz_msg_t *msg = s_decode(&e);
    const msgpack_object *rows = fz_msg_obj(msg, "rows");
    assert_true(rows && rows->type == MSGPACK_OBJECT_ARRAY && rows->via.array.size == 2);
    const msgpack_object *r = &rows->via.array.ptr[0];
    s_str_is(r, "key", "m1");
    assert_int_equal(fz_obj_uint(r, "attempts", 0), 1);
    assert_true(fz_obj_float(r, "cost_usd", 0) == 0.5);
    assert_int_equal(fz_obj_uint(r, "tokens_in", 0), 100);
    assert_int_equal(fz_obj_uint(r, "tokens_out", 0), 10);
    assert_int_equal(fz_obj_uint(r, "duration_ms", 0), 1000);
    s_str_is(&rows->via.array.ptr[1], "key", "m2");
    assert_true(fz_msg_float(msg, "total_cost", -1) == 0.75);
    fz_msg_destroy(&msg);

    static const char *const by[] = {"day", "task", "worker", "class"};
    for (size_t i = 0; i < 4; i++) {
        e = fz_enc_new("cost", 1);
        assert_int_equal(fz_views_cost_rows(fx->store, by[i], NULL, 0, e), FZ_OK);
        msg = s_decode(&e);
        assert_true(fz_msg_float(msg, "total_cost", -1) == 0.75);
        fz_msg_destroy(&msg);
    }
    e = fz_enc_new("cost", 1);
    assert_int_equal(fz_views_cost_rows(fx->store, "label", "team", 0, e), FZ_OK);
    msg = s_decode(&e);
    rows = fz_msg_obj(msg, "rows");
    assert_int_equal(rows->via.array.size, 1);
    s_str_is(&rows->via.array.ptr[0], "key", ""); /* tasks without the label */
    fz_msg_destroy(&msg);

    e = fz_enc_new("cost", 1);
    assert_int_equal(fz_views_cost_rows(fx->store, "week", NULL, 0, e), FZ_EINVALID);
    fz_enc_destroy(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_encode_task_and_attempts),
        TEST(test_encode_list_and_counts),
        TEST(test_encode_list_truncates_before_3mib),
        TEST(test_cost_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
