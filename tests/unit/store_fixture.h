/*  store_fixture: what the store's tests share (store_test, views_test): a fresh database
    in a temp dir per test, removed after it (the test fails if anything was left in the dir),
    msgpack object literals, and a few rows written the way the broker writes them. Include
    it after cmocka.h in a test; everything is static. */

#ifndef FZ_STORE_FIXTURE_H
#define FZ_STORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_store.h"
#include "testdir.h"

/* ---------------------------------------------------------------- fixture */

typedef struct {
    char dir[64];
    char path[128];
    fz_store_t *store;
} fx_t;

static fz_store_t *s_open(const char *path)
{
    char err[256] = "";
    fz_store_t *s = fz_store_open(path, false, err, sizeof err);
    if (!s)
        print_error("fz_store_open(%s): %s\n", path, err);
    return s;
}

static int s_setup(void **state)
{
    unsetenv("FZ_STORE_MAX_PAGES"); /* a stray seam must not shrink every test's disk */
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    if (!fz_testdir(fx->dir, sizeof fx->dir, "fz-store-test")) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof fx->path, "%s/fz.db", fx->dir);
    fx->store = s_open(fx->path);
    *state = fx;
    return fx->store ? 0 : -1;
}

static int s_teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    fz_store_destroy(&fx->store);
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", ".lock"};
    for (size_t i = 0; i < 5; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", fx->path, suffixes[i]);
        unlink(p);
    }
    int rc = rmdir(fx->dir);
    if (rc)
        print_error("cannot remove %s: something was left in it\n", fx->dir);
    free(fx);
    *state = NULL;
    return rc;
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)

#define MP_STR(s)                                                                                  \
    ((msgpack_object){.type = MSGPACK_OBJECT_STR,                                                  \
                      .via.str = {.size = (uint32_t)strlen(s), .ptr = (s)}})
#define MP_UINT(u) ((msgpack_object){.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = (u)})
#define MP_ARRAY(items, n)                                                                         \
    ((msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = {.size = (n), .ptr = (items)}})
#define MP_MAP(kvs, n)                                                                             \
    ((msgpack_object){.type = MSGPACK_OBJECT_MAP, .via.map = {.size = (n), .ptr = (kvs)}})

static uint64_t s_add_as(fx_t *fx, const char *prompt, fz_state_t state)
{
    fz_store_newtask_t t = {0};
    t.prompt = prompt;
    t.prompt_len = strlen(prompt);
    t.state = state;
    uint64_t id = fz_store_task_add(fx->store, &t);
    assert_true(id > 0);
    return id;
}

static uint64_t s_add(fx_t *fx, const char *prompt)
{
    return s_add_as(fx, prompt, FZ_STATE_QUEUED);
}

/* Finishes attempt n with a cost; returns fz_store_attempt_finish's result. */
static int s_finish(fx_t *fx, uint64_t id, uint32_t n, double cost, const char *model,
                    fz_state_t state)
{
    fz_result_t r = {0};
    r.outcome = "exited";
    r.exit_code = state == FZ_STATE_SUCCEEDED ? 0 : 1;
    r.cost_usd = cost;
    r.tokens_in = 100;
    r.tokens_out = 10;
    r.duration_ms = 1000;
    r.model = model;
    r.summary = "done";
    return fz_store_attempt_finish(fx->store, id, n, &r, state);
}
/* A task with every field set (labels, fallback, an after dependency, a long prompt of 'p's
   in prompt[size]), its first attempt ended (retrying) and its second running, committed. */
static uint64_t s_add_rich_task(fx_t *fx, char *prompt, size_t size, uint64_t *dep_p)
{
    msgpack_object_kv kv[] = {{.key = MP_STR("team"), .val = MP_STR("web")},
                              {.key = MP_STR("dry.cost"), .val = MP_STR("0.1")}};
    msgpack_object labels = MP_MAP(kv, 2);
    msgpack_object fb_items[] = {MP_STR("sonnet")};
    msgpack_object fb = MP_ARRAY(fb_items, 1);
    *dep_p = s_add(fx, "dependency");
    msgpack_object after_items[] = {MP_UINT(*dep_p)};
    msgpack_object after = MP_ARRAY(after_items, 1);
    memset(prompt, 'p', size - 1);
    prompt[size - 1] = 0;
    fz_store_newtask_t nt = {.prompt = prompt,
                             .prompt_len = strlen(prompt),
                             .priority = -12,
                             .model = "opus",
                             .name = "named",
                             .timeout = 600,
                             .max_cost = 2.5,
                             .retries = 2,
                             .labels = &labels,
                             .fallback = &fb,
                             .after = &after,
                             .deadline = 1.8e9,
                             .state = FZ_STATE_QUEUED};
    uint64_t id = fz_store_task_add(fx->store, &nt);
    assert_true(id > 0);
    assert_int_equal(fz_store_attempt_start(fx->store, id, 1, "w1", "opus", 2.5), 0);
    fz_result_t r = {.outcome = "exited",
                     .exit_code = -3,
                     .signal = 0,
                     .duration_ms = 1234,
                     .cost_usd = 0.75,
                     .tokens_in = 1000,
                     .tokens_out = 50,
                     .summary = "it broke",
                     .output = "out\0put",
                     .output_len = 7,
                     .log = "/var/log/a.log"};
    assert_int_equal(fz_store_attempt_finish(fx->store, id, 1, &r, FZ_STATE_RETRYING), 1);
    assert_int_equal(fz_store_attempt_start(fx->store, id, 2, "w2", "sonnet", 2.5), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    return id;
}

#endif
