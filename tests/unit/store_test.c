/*  store_test: the broker's SQLite store (broker/fz_store.c), on a database in a temp dir.

    What is durable is checked through a second, read-only connection (s_ro_*), so a test
    tells the turn's own view (same connection) from what a crash would leave. Covered: the
    schema, task ids, turns (rollback, commit, fz_store_fail_turn, the FZ_STORE_MAX_PAGES
    full-disk seam), load_live, attempts recorded once, the fallback chain, dependencies and
    trees, the rows replies are built from (fz_store_rows.h: task, attempts and their output
    budget, labels, lists by id and newest first, counts, prompt), the cost rows against
    fz_store_spent, and meta. How views encode these rows (field types, the 1.5 MiB cut of
    lists) is views_test's.

    Tests named test_regression_* pin bugs these tests found and that are fixed (each explains
    its bug above it). */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_store.h"
#include "fz_store_rows.h"
#include "fz_util.h"
#include "store_fixture.h"

/* Closes and reopens the store: what survives is what was committed. */
static void s_reopen(fx_t *fx)
{
    fz_store_destroy(&fx->store);
    fx->store = s_open(fx->path);
    assert_non_null(fx->store);
}

/* ---------------------------------------------------------------- read-only peeks */

/* Runs sql on a fresh read-only connection; the first column of the first row. */
static sqlite3_stmt *s_ro_query(fx_t *fx, sqlite3 **db, const char *sql)
{
    assert_int_equal(sqlite3_open_v2(fx->path, db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(*db, sql, -1, &st, NULL) != SQLITE_OK) {
        print_error("ro prepare '%s': %s\n", sql, sqlite3_errmsg(*db));
        sqlite3_close(*db);
        fail();
    }
    return st;
}

static int64_t s_ro_int(fx_t *fx, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st = s_ro_query(fx, &db, sql);
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -999;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static double s_ro_double(fx_t *fx, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st = s_ro_query(fx, &db, sql);
    double v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_double(st, 0) : -999;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static char *s_ro_text(fx_t *fx, const char *sql, char *buf, size_t size)
{
    sqlite3 *db;
    sqlite3_stmt *st = s_ro_query(fx, &db, sql);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
    else
        snprintf(buf, size, "(no row)");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

/* ---------------------------------------------------------------- msgpack objects */

/* ---------------------------------------------------------------- task helpers */

static uint64_t s_add_model(fx_t *fx, const char *prompt, const char *model,
                            const msgpack_object *fallback)
{
    fz_store_newtask_t t = {0};
    t.prompt = prompt;
    t.prompt_len = strlen(prompt);
    t.model = model;
    t.fallback = fallback;
    t.state = FZ_STATE_QUEUED;
    uint64_t id = fz_store_task_add(fx->store, &t);
    assert_true(id > 0);
    return id;
}

static uint64_t s_add_child(fx_t *fx, const char *prompt, uint64_t parent, int64_t priority,
                            const msgpack_object *labels)
{
    fz_store_newtask_t t = {0};
    t.prompt = prompt;
    t.prompt_len = strlen(prompt);
    t.parent = parent;
    t.priority = priority;
    t.labels = labels;
    t.state = FZ_STATE_QUEUED;
    uint64_t id = fz_store_task_add(fx->store, &t);
    assert_true(id > 0);
    return id;
}

/* Reads task id's row into *t: the reader is returned, to destroy once t is checked. */
static fz_store_rows_t *s_task(fx_t *fx, uint64_t id, fz_store_task_row_t *t)
{
    fz_store_rows_t *rows = fz_store_task(fx->store, id);
    assert_non_null(rows);
    assert_true(fz_store_rows_task(rows, t));
    return rows;
}

/* Checks a task's labels: n pairs (key, value), in key order. */
static void s_labels_are(fx_t *fx, uint64_t id, size_t n, const char *kv[])
{
    fz_store_rows_t *rows = fz_store_labels(fx->store, id);
    assert_non_null(rows);
    fz_store_label_row_t l;
    for (size_t i = 0; i < n; i++) {
        assert_true(fz_store_rows_label(rows, &l));
        assert_string_equal(l.key, kv[2 * i]);
        assert_string_equal(l.value, kv[2 * i + 1]);
    }
    assert_false(fz_store_rows_label(rows, &l));
    fz_store_rows_destroy(&rows);
}

/* The ids of a list (at most max), in the order the reader gives them; how many. */
static size_t s_list_ids(fx_t *fx, const char *state, uint64_t limit, bool tail, uint64_t *total,
                         uint64_t *ids, size_t max)
{
    fz_store_rows_t *rows = fz_store_list(fx->store, state, limit, tail, NULL, total);
    assert_non_null(rows);
    fz_store_task_row_t t;
    size_t n = 0;
    while (fz_store_rows_task(rows, &t)) {
        assert_true(n < max);
        ids[n++] = t.id;
    }
    fz_store_rows_destroy(&rows);
    return n;
}

/* ---------------------------------------------------------------- open, schema, turns */

static void test_open_creates_schema(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(access(fx->path, F_OK), 0);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND"
                                  " name IN ('tasks','task_labels','attempts','meta','deps',"
                                  "'submit_keys')"),
                     6);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND"
                                  " name IN ('tasks_state','attempts_ended','deps_dep',"
                                  "'tasks_parent')"),
                     4);
    char buf[32];
    assert_string_equal(s_ro_text(fx, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    /* Empty. */
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 0);
    assert_false(fz_store_task_exists(fx->store, 1, NULL));

    /* Reopening an existing database keeps it (and its data). */
    s_add(fx, "kept");
    assert_int_equal(fz_store_commit(fx->store), 0);
    s_reopen(fx);
    assert_true(fz_store_task_exists(fx->store, 1, NULL));
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"), 6);

    /* A path that cannot be opened: NULL and a reason. */
    char err[256] = "";
    fz_store_t *bad = fz_store_open("/nonexistent-fz-dir/sub/fz.db", false, err, sizeof err);
    assert_null(bad);
    assert_non_null(strstr(err, "/nonexistent-fz-dir/sub/fz.db"));
    fz_store_destroy(&bad);

    /* One store per database: a second open is refused while the first is open. */
    char err2[256] = "";
    fz_store_t *second = fz_store_open(fx->path, false, err2, sizeof err2);
    assert_null(second);
    assert_non_null(strstr(err2, "another fz-broker uses this database"));
    fz_store_destroy(NULL);

    /* sync_full opens too. */
    fz_store_destroy(&fx->store);
    fx->store = fz_store_open(fx->path, true, err, sizeof err);
    assert_non_null(fx->store);
}

static void test_task_add_increasing_ids(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(s_add(fx, "one"), 1);
    assert_int_equal(s_add(fx, "two"), 2);
    assert_int_equal(s_add_as(fx, "three", FZ_STATE_WAITING), 3);
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_int_equal(s_add(fx, "four"), 4); /* the next turn goes on */
    assert_int_equal(fz_store_commit(fx->store), 0);

    fz_state_t st = FZ_STATE_COUNT;
    assert_true(fz_store_task_exists(fx->store, 1, &st));
    assert_int_equal(st, FZ_STATE_QUEUED);
    assert_true(fz_store_task_exists(fx->store, 3, &st));
    assert_int_equal(st, FZ_STATE_WAITING);
    assert_false(fz_store_task_exists(fx->store, 5, &st));
    assert_true(fz_store_task_exists(fx->store, 4, NULL)); /* state_p may be NULL */
    char buf[64];
    assert_string_equal(s_ro_text(fx, "SELECT prompt FROM tasks WHERE id = 2", buf, sizeof buf),
                        "two");
    assert_string_equal(s_ro_text(fx, "SELECT state FROM tasks WHERE id = 3", buf, sizeof buf),
                        "waiting");
}

static void test_rollback_then_commit(void **state)
{
    fx_t *fx = *state;
    uint64_t a = s_add(fx, "rolled back");
    assert_int_equal(fz_store_meta_set(fx->store, "k", 5), 0);
    /* The turn sees its own writes... */
    assert_true(fz_store_task_exists(fx->store, a, NULL));
    assert_true(fz_store_meta_get(fx->store, "k", -1) == 5);
    /* ...nobody else does before the commit. */
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 0);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM meta"), 0);

    fz_store_rollback(fx->store);
    assert_false(fz_store_task_exists(fx->store, a, NULL));
    assert_true(fz_store_meta_get(fx->store, "k", -1) == -1);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 0);
    fz_store_rollback(fx->store);                    /* nothing open: harmless */
    assert_int_equal(fz_store_commit(fx->store), 0); /* nothing open: success */

    uint64_t b = s_add(fx, "committed");
    assert_int_equal(fz_store_meta_set(fx->store, "k", 7), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    char buf[64];
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 1);
    assert_string_equal(s_ro_text(fx, "SELECT prompt FROM tasks", buf, sizeof buf), "committed");
    assert_true(s_ro_double(fx, "SELECT value FROM meta WHERE key = 'k'") == 7);
    s_reopen(fx);
    assert_true(fz_store_task_exists(fx->store, b, NULL));
    assert_true(fz_store_meta_get(fx->store, "k", -1) == 7);
}

static void test_fail_turn(void **state)
{
    fx_t *fx = *state;
    uint64_t keep = s_add(fx, "earlier turn");
    assert_int_equal(fz_store_commit(fx->store), 0);

    uint64_t a = s_add(fx, "doomed");
    assert_int_equal(fz_store_meta_set(fx->store, "x", 1), 0);
    fz_store_fail_turn(fx->store);
    assert_int_equal(fz_store_commit(fx->store), -1);
    assert_false(fz_store_task_exists(fx->store, a, NULL));
    assert_true(fz_store_task_exists(fx->store, keep, NULL));
    assert_true(fz_store_meta_get(fx->store, "x", -1) == -1);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 1);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM meta"), 0);

    /* The failure is over with that turn. */
    uint64_t c = s_add(fx, "next turn");
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 2);
    assert_true(fz_store_task_exists(fx->store, c, NULL));

    /* Failing a turn with no write still fails its commit, once. */
    fz_store_fail_turn(fx->store);
    assert_int_equal(fz_store_commit(fx->store), -1);
    assert_int_equal(fz_store_commit(fx->store), 0);
}

/* A store whose database cannot grow past a few pages beyond the empty schema. */
static void s_open_small(fx_t *fx, int extra_pages)
{
    int64_t pages = s_ro_int(fx, "PRAGMA page_count");
    assert_true(pages > 0);
    fz_store_destroy(&fx->store);
    char v[32];
    snprintf(v, sizeof v, "%d", (int)pages + extra_pages);
    setenv("FZ_STORE_MAX_PAGES", v, 1);
    fx->store = s_open(fx->path);
    unsetenv("FZ_STORE_MAX_PAGES");
    assert_non_null(fx->store);
}

static void test_max_pages_seam(void **state)
{
    fx_t *fx = *state;
    s_open_small(fx, 6);
    uint64_t keep = s_add(fx, "small, fits");
    assert_int_equal(fz_store_commit(fx->store), 0);

    /* A prompt far larger than the pages left: the write fails, the turn rolls back. */
    size_t len = 256 * 1024;
    char *big = malloc(len + 1);
    assert_non_null(big);
    memset(big, 'x', len);
    big[len] = 0;
    fz_store_newtask_t t = {.prompt = big, .prompt_len = len, .state = FZ_STATE_QUEUED};
    uint64_t before = s_add(fx, "same turn, before the failure");
    assert_int_equal(fz_store_task_add(fx->store, &t), 0);
    free(big);
    assert_int_equal(fz_store_commit(fx->store), -1);
    assert_false(fz_store_task_exists(fx->store, before, NULL));
    assert_true(fz_store_task_exists(fx->store, keep, NULL));
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 1);

    /* Usable afterwards: small writes go on landing. */
    uint64_t after = s_add(fx, "next turn");
    assert_int_equal(fz_store_meta_set(fx->store, "ok", 1), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_true(fz_store_task_exists(fx->store, after, NULL));
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 2);
    assert_true(s_ro_double(fx, "SELECT value FROM meta WHERE key = 'ok'") == 1);
}

/* Regression (s_begin): after a write failed with SQLITE_FULL, SQLite had rolled the whole
   transaction back by itself while the store still believed one open, so every later write
   of the turn autocommitted although the turn's commit reported failure (a client told its
   submit failed found the task stored). A failed turn now writes nothing more. */
static void test_regression_no_writes_after_a_failed_write(void **state)
{
    fx_t *fx = *state;
    s_open_small(fx, 6);
    assert_int_equal(fz_store_meta_set(fx->store, "before", 1), 0);
    size_t len = 256 * 1024;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, 'x', len);
    fz_store_newtask_t t = {.prompt = big, .prompt_len = len, .state = FZ_STATE_QUEUED};
    assert_int_equal(fz_store_task_add(fx->store, &t), 0); /* disk full */
    free(big);
    /* The rest of the turn's work, as the broker goes on handling messages. */
    fz_store_task_add(fx->store, &(fz_store_newtask_t){.prompt = "after the failure",
                                                       .prompt_len = 17,
                                                       .state = FZ_STATE_QUEUED});
    fz_store_meta_set(fx->store, "after", 2);
    assert_int_equal(fz_store_commit(fx->store), -1);
    /* Nothing of the turn may be durable. */
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM meta"), 0);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM tasks"), 0);
}

static void test_meta(void **state)
{
    fx_t *fx = *state;
    assert_true(fz_store_meta_get(fx->store, "budget", 12.5) == 12.5);
    assert_true(fz_store_meta_get(fx->store, "paused", 0) == 0);
    assert_int_equal(fz_store_meta_set(fx->store, "budget", 20.25), 0);
    assert_int_equal(fz_store_meta_set(fx->store, "paused", 1), 0);
    assert_true(fz_store_meta_get(fx->store, "budget", 12.5) == 20.25);
    assert_int_equal(fz_store_meta_set(fx->store, "budget", -3.5), 0); /* overwrite */
    assert_true(fz_store_meta_get(fx->store, "budget", 12.5) == -3.5);
    assert_true(fz_store_meta_get(fx->store, "other", 9) == 9);
    assert_int_equal(fz_store_commit(fx->store), 0);
    s_reopen(fx);
    assert_true(fz_store_meta_get(fx->store, "budget", 12.5) == -3.5);
    assert_true(fz_store_meta_get(fx->store, "paused", 0) == 1);
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM meta"), 2);
}

/* ---------------------------------------------------------------- live tasks, attempts */

typedef struct {
    fz_task_t tasks[32];
    char workers[32][65];
    size_t n;
} live_t;

static void s_on_live(void *arg, const fz_task_t *task, const char *worker)
{
    live_t *l = arg;
    if (l->n < 32) {
        l->tasks[l->n] = *task;
        snprintf(l->workers[l->n], sizeof l->workers[0], "%s", worker);
    }
    l->n++;
}

static void test_load_live(void **state)
{
    fx_t *fx = *state;
    double t0 = fz_wall();
    fz_store_newtask_t nt = {0};
    nt.prompt = "full";
    nt.prompt_len = 4;
    nt.priority = -7;
    nt.model = "opus";
    nt.name = "the first";
    nt.timeout = 60;
    nt.max_cost = 2.5;
    nt.retries = 3;
    nt.deadline = 1.9e9;
    nt.state = FZ_STATE_QUEUED;
    uint64_t q = fz_store_task_add(fx->store, &nt); /* 1 queued */
    nt = (fz_store_newtask_t){
        .prompt = "w", .prompt_len = 1, .parent = q, .state = FZ_STATE_WAITING};
    uint64_t w = fz_store_task_add(fx->store, &nt); /* 2 waiting */
    uint64_t h = s_add(fx, "held");                 /* 3 held */
    assert_int_equal(fz_store_task_state(fx->store, h, FZ_STATE_HELD, "budget"), 0);
    uint64_t r = s_add_model(fx, "running", "m4", NULL); /* 4 running */
    assert_int_equal(fz_store_attempt_start(fx->store, r, 1, "w1", "sonnet", 1.5), 0);
    uint64_t rt = s_add(fx, "retrying"); /* 5 retrying */
    assert_int_equal(fz_store_attempt_start(fx->store, rt, 1, "w2", "", 0.5), 0);
    assert_int_equal(s_finish(fx, rt, 1, 0.25, "", FZ_STATE_RETRYING), 1);
    uint64_t ok = s_add(fx, "succeeded"); /* 6 */
    assert_int_equal(fz_store_attempt_start(fx->store, ok, 1, "w1", "", 1), 0);
    assert_int_equal(s_finish(fx, ok, 1, 0.5, "", FZ_STATE_SUCCEEDED), 1);
    uint64_t f = s_add(fx, "failed"); /* 7 */
    assert_int_equal(fz_store_task_state(fx->store, f, FZ_STATE_FAILED, ""), 0);
    uint64_t c = s_add(fx, "cancelled"); /* 8 */
    assert_int_equal(fz_store_task_state(fx->store, c, FZ_STATE_CANCELLED, ""), 0);
    uint64_t d = s_add(fx, "dep-failed"); /* 9 */
    assert_int_equal(fz_store_task_depfail(fx->store, d, "dependency 7 failed"), 0);
    uint64_t q2 = s_add(fx, "queued again"); /* 10 */
    assert_int_equal(fz_store_commit(fx->store), 0);
    double t1 = fz_wall();

    s_reopen(fx); /* what a restarted broker loads */
    live_t l = {0};
    assert_int_equal(fz_store_load_live(fx->store, s_on_live, &l), 0);
    assert_int_equal(l.n, 6);
    const uint64_t want[] = {q, w, h, r, rt, q2};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(l.tasks[i].id, want[i]);
        assert_null(l.tasks[i].queue);
        assert_null(l.tasks[i].worker);
        assert_true(l.tasks[i].inherited == INT64_MIN);
        assert_true(l.tasks[i].queued_at >= t0 - 1 && l.tasks[i].queued_at <= t1 + 1);
    }
    fz_task_t *t = &l.tasks[0];
    assert_int_equal(t->state, FZ_STATE_QUEUED);
    assert_int_equal(t->priority, -7);
    assert_string_equal(t->model, "opus");
    assert_int_equal(t->attempt, 0);
    assert_int_equal(t->retries, 3);
    assert_int_equal(t->timeout_s, 60);
    assert_true(t->max_cost == 2.5);
    assert_string_equal(t->hold_reason, "");
    assert_true(t->reserved == 0);
    assert_int_equal(t->parent, 0);
    assert_true(t->deadline == 1.9e9);
    assert_string_equal(l.workers[0], "");

    assert_int_equal(l.tasks[1].state, FZ_STATE_WAITING);
    assert_int_equal(l.tasks[1].parent, q);
    assert_int_equal(l.tasks[2].state, FZ_STATE_HELD);
    assert_string_equal(l.tasks[2].hold_reason, "budget");

    t = &l.tasks[3];
    assert_int_equal(t->state, FZ_STATE_RUNNING);
    assert_int_equal(t->attempt, 1);
    assert_string_equal(t->model, "m4"); /* its own: the broker picks the attempt's model */
    assert_true(t->reserved == 1.5);
    assert_string_equal(l.workers[3], "w1");

    assert_int_equal(l.tasks[4].state, FZ_STATE_RETRYING);
    assert_int_equal(l.tasks[4].attempt, 1);
    assert_int_equal(l.tasks[5].state, FZ_STATE_QUEUED);

    /* load_task: the same fields, but the task's own model. */
    fz_task_t one;
    assert_int_equal(fz_store_load_task(fx->store, r, &one), 0);
    assert_int_equal(one.id, r);
    assert_int_equal(one.state, FZ_STATE_RUNNING);
    assert_string_equal(one.model, "m4");
    assert_true(one.reserved == 1.5);
    assert_int_equal(fz_store_load_task(fx->store, ok, &one), 0); /* finished ones too */
    assert_int_equal(one.state, FZ_STATE_SUCCEEDED);
    assert_int_equal(fz_store_load_task(fx->store, 999, &one), -1);
}

/* Regression: load_live once gave a retrying task the model of its LAST attempt (or the name
   its agent reported), so after a restart the retry ran on the model that had just failed.
   Now it gives the task's own model, and the broker asks fz_store_task_model for the
   attempt at hand (the next one of the fallback chain). */
static void test_regression_load_live_model(void **state)
{
    fx_t *fx = *state;
    msgpack_object fb_items[] = {MP_STR("sonnet"), MP_STR("haiku")};
    msgpack_object fb = MP_ARRAY(fb_items, 2);
    uint64_t id = s_add_model(fx, "retry me", "opus", &fb);
    assert_int_equal(fz_store_attempt_start(fx->store, id, 1, "w1", "opus", 1), 0);
    assert_int_equal(s_finish(fx, id, 1, 0.5, "claude-opus-4-reported", FZ_STATE_RETRYING), 1);
    assert_int_equal(fz_store_commit(fx->store), 0);
    char next[65];
    assert_int_equal(fz_store_task_model(fx->store, id, 2, next), 0);
    assert_string_equal(next, "sonnet");
    live_t l = {0};
    assert_int_equal(fz_store_load_live(fx->store, s_on_live, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.tasks[0].state, FZ_STATE_RETRYING);
    assert_string_equal(l.tasks[0].model, "opus"); /* own model, not the reported name */
}

static void test_attempt_finish_records_once(void **state)
{
    fx_t *fx = *state;
    uint64_t id = s_add_model(fx, "work", "opus", NULL);
    assert_int_equal(fz_store_attempt_start(fx->store, id, 1, "w1", "opus", 2), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    char buf[64];
    assert_string_equal(s_ro_text(fx, "SELECT state FROM tasks", buf, sizeof buf), "running");
    assert_int_equal(s_ro_int(fx, "SELECT attempts FROM tasks"), 1);
    assert_string_equal(s_ro_text(fx, "SELECT worker FROM tasks", buf, sizeof buf), "w1");
    assert_true(s_ro_double(fx, "SELECT reserved FROM attempts") == 2);
    assert_string_equal(s_ro_text(fx, "SELECT outcome FROM attempts", buf, sizeof buf), "running");

    assert_int_equal(s_finish(fx, id, 1, 0.5, "", FZ_STATE_RETRYING), 1);
    /* The same result again (the worker resent it): not recorded, not counted. */
    assert_int_equal(s_finish(fx, id, 1, 9, "x", FZ_STATE_FAILED), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_true(s_ro_double(fx, "SELECT cost_usd FROM tasks") == 0.5);
    assert_int_equal(s_ro_int(fx, "SELECT tokens_in FROM tasks"), 100);
    assert_string_equal(s_ro_text(fx, "SELECT state FROM tasks", buf, sizeof buf), "retrying");
    assert_true(s_ro_double(fx, "SELECT cost_usd FROM attempts WHERE n = 1") == 0.5);
    assert_string_equal(s_ro_text(fx, "SELECT model FROM attempts WHERE n = 1", buf, sizeof buf),
                        "opus"); /* "" kept the dispatched model */
    assert_true(fz_store_spent(fx->store, 0, fz_wall() + 10) == 0.5);

    /* Attempt 2 adds up; a reported model replaces the dispatched one. */
    assert_int_equal(fz_store_attempt_start(fx->store, id, 2, "w2", "sonnet", 1), 0);
    assert_int_equal(s_finish(fx, id, 2, 0.25, "sonnet-4", FZ_STATE_SUCCEEDED), 1);
    assert_int_equal(s_finish(fx, id, 2, 0.25, "sonnet-4", FZ_STATE_SUCCEEDED), 0);
    /* An attempt that never started cannot finish. */
    assert_int_equal(s_finish(fx, id, 3, 1, "", FZ_STATE_FAILED), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_true(s_ro_double(fx, "SELECT cost_usd FROM tasks") == 0.75);
    assert_int_equal(s_ro_int(fx, "SELECT tokens_in FROM tasks"), 200);
    assert_int_equal(s_ro_int(fx, "SELECT tokens_out FROM tasks"), 20);
    assert_string_equal(s_ro_text(fx, "SELECT state FROM tasks", buf, sizeof buf), "succeeded");
    assert_string_equal(s_ro_text(fx, "SELECT model FROM attempts WHERE n = 2", buf, sizeof buf),
                        "sonnet-4");
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM attempts"), 2);
    assert_true(fz_store_spent(fx->store, 0, fz_wall() + 10) == 0.75);
    /* The task's own model is untouched by attempts. */
    assert_string_equal(s_ro_text(fx, "SELECT model FROM tasks", buf, sizeof buf), "opus");
}

static void test_task_model_fallback_chain(void **state)
{
    fx_t *fx = *state;
    msgpack_object items[] = {MP_STR("sonnet"), MP_STR("haiku")};
    msgpack_object fb = MP_ARRAY(items, 2);
    uint64_t a = s_add_model(fx, "a", "opus", &fb);
    uint64_t b = s_add_model(fx, "b", "opus", NULL);
    msgpack_object empty = MP_ARRAY(NULL, 0);
    uint64_t c = s_add_model(fx, "c", "opus", &empty);
    msgpack_object one[] = {MP_STR("x")};
    msgpack_object fb1 = MP_ARRAY(one, 1);
    uint64_t d = s_add_model(fx, "d", "", &fb1);
    assert_int_equal(fz_store_commit(fx->store), 0);

    char m[65];
    static const struct {
        uint32_t n;
        const char *model;
    } chain[] = {{0, "opus"},  {1, "opus"},    {2, "sonnet"},         {3, "haiku"},
                 {4, "haiku"}, {100, "haiku"}, {4000000000u, "haiku"}};
    for (size_t i = 0; i < sizeof chain / sizeof *chain; i++) {
        memset(m, '?', sizeof m);
        assert_int_equal(fz_store_task_model(fx->store, a, chain[i].n, m), 0);
        assert_string_equal(m, chain[i].model);
    }
    for (uint32_t n = 1; n < 4; n++) {
        assert_int_equal(fz_store_task_model(fx->store, b, n, m), 0);
        assert_string_equal(m, "opus");
        assert_int_equal(fz_store_task_model(fx->store, c, n, m), 0);
        assert_string_equal(m, "opus");
    }
    assert_int_equal(fz_store_task_model(fx->store, d, 1, m), 0);
    assert_string_equal(m, "");
    assert_int_equal(fz_store_task_model(fx->store, d, 2, m), 0);
    assert_string_equal(m, "x");
    assert_int_equal(fz_store_task_model(fx->store, d, 9, m), 0);
    assert_string_equal(m, "x");
    assert_int_equal(fz_store_task_model(fx->store, 999, 1, m), -1);
}

static void test_state_priority_depfail(void **state)
{
    fx_t *fx = *state;
    uint64_t id = s_add(fx, "t");
    assert_int_equal(fz_store_task_state(fx->store, id, FZ_STATE_HELD, "budget"), 0);
    assert_int_equal(fz_store_task_priority(fx->store, id, 42), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    fz_task_t t;
    assert_int_equal(fz_store_load_task(fx->store, id, &t), 0);
    assert_int_equal(t.state, FZ_STATE_HELD);
    assert_string_equal(t.hold_reason, "budget");
    assert_int_equal(t.priority, 42);
    assert_int_equal(fz_store_task_state(fx->store, id, FZ_STATE_QUEUED, ""), 0);
    assert_int_equal(fz_store_load_task(fx->store, id, &t), 0);
    assert_int_equal(t.state, FZ_STATE_QUEUED);
    assert_string_equal(t.hold_reason, "");
    assert_int_equal(fz_store_task_depfail(fx->store, id, "dependency 3 failed"), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    fz_state_t st;
    assert_true(fz_store_task_exists(fx->store, id, &st));
    assert_int_equal(st, FZ_STATE_DEP_FAILED);
    char buf[64];
    assert_string_equal(s_ro_text(fx, "SELECT summary FROM tasks", buf, sizeof buf),
                        "dependency 3 failed");
    assert_string_equal(s_ro_text(fx, "SELECT outcome FROM tasks", buf, sizeof buf), "dep-failed");
}

/* ---------------------------------------------------------------- dependencies, trees */

typedef struct {
    uint64_t id[64];
    int kind[64], state[64];
    size_t n;
} rows_t;

/* Appends the rows of one graph query to r; its return code. */
static int s_rows(int (*query)(fz_store_t *, uint64_t, fz_deps_t *), fz_store_t *store, uint64_t id,
                  rows_t *r)
{
    fz_deps_t d = {0};
    int rc = query(store, id, &d);
    for (size_t i = 0; i < d.n; i++, r->n++)
        if (r->n < 64) {
            r->id[r->n] = d.v[i].id;
            r->kind[r->n] = d.v[i].kind;
            r->state[r->n] = d.v[i].state;
        }
    fz_deps_free(&d);
    return rc;
}

/* Sorts rows by id (deps_of and dependents promise no order). */
static void s_sort_rows(rows_t *r)
{
    for (size_t i = 1; i < r->n; i++)
        for (size_t j = i; j > 0 && r->id[j - 1] > r->id[j]; j--) {
            uint64_t id = r->id[j];
            int k = r->kind[j], s = r->state[j];
            r->id[j] = r->id[j - 1], r->kind[j] = r->kind[j - 1], r->state[j] = r->state[j - 1];
            r->id[j - 1] = id, r->kind[j - 1] = k, r->state[j - 1] = s;
        }
}

static void test_deps(void **state)
{
    fx_t *fx = *state;
    uint64_t a = s_add(fx, "a"), b = s_add(fx, "b"), c = s_add(fx, "c"), e = s_add(fx, "e");
    assert_int_equal(fz_store_dep_add(fx->store, b, a, 0), 0);
    assert_int_equal(fz_store_dep_add(fx->store, c, a, 1), 0);
    assert_int_equal(fz_store_dep_add(fx->store, c, b, 0), 0);
    assert_int_equal(fz_store_dep_add(fx->store, c, b, 1), 0); /* again: ignored */
    assert_int_equal(fz_store_task_state(fx->store, a, FZ_STATE_SUCCEEDED, ""), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);

    rows_t r = {0};
    assert_int_equal(s_rows(fz_store_deps_of, fx->store, c, &r), 0);
    s_sort_rows(&r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.id[0], a);
    assert_int_equal(r.kind[0], 1);
    assert_int_equal(r.state[0], FZ_STATE_SUCCEEDED);
    assert_int_equal(r.id[1], b);
    assert_int_equal(r.kind[1], 0); /* the first add won */
    assert_int_equal(r.state[1], FZ_STATE_QUEUED);

    r = (rows_t){0};
    assert_int_equal(s_rows(fz_store_dependents, fx->store, a, &r), 0);
    s_sort_rows(&r);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.id[0], b);
    assert_int_equal(r.kind[0], 0);
    assert_int_equal(r.state[0], -1); /* not asked for */
    assert_int_equal(r.id[1], c);
    assert_int_equal(r.kind[1], 1);
    assert_int_equal(r.state[1], -1);

    r = (rows_t){0};
    assert_int_equal(s_rows(fz_store_deps_of, fx->store, e, &r), 0);
    assert_int_equal(s_rows(fz_store_dependents, fx->store, c, &r), 0);
    assert_int_equal(r.n, 0);
}

static void test_tree(void **state)
{
    fx_t *fx = *state;
    msgpack_object_kv root_kv[] = {{.key = MP_STR("team"), .val = MP_STR("web")},
                                   {.key = MP_STR("x"), .val = MP_STR("1")}};
    msgpack_object root_labels = MP_MAP(root_kv, 2);
    msgpack_object_kv kid_kv[] = {{.key = MP_STR("x"), .val = MP_STR("2")}};
    msgpack_object kid_labels = MP_MAP(kid_kv, 1);
    uint64_t other = s_add(fx, "unrelated");
    uint64_t root = s_add_child(fx, "root", 0, 5, &root_labels);
    uint64_t kid = s_add_child(fx, "kid", root, 5, &kid_labels);
    uint64_t grandkid = s_add_child(fx, "grandkid", kid, 1, NULL);
    uint64_t kid2 = s_add_child(fx, "kid2", root, 9, NULL);
    uint64_t ggkid = s_add_child(fx, "ggkid", grandkid, 0, NULL);
    assert_int_equal(fz_store_commit(fx->store), 0);

    rows_t r = {0};
    assert_int_equal(s_rows(fz_store_subtree, fx->store, root, &r), 0);
    assert_int_equal(r.n, 4); /* by id */
    assert_int_equal(r.id[0], kid);
    assert_int_equal(r.id[1], grandkid);
    assert_int_equal(r.id[2], kid2);
    assert_int_equal(r.id[3], ggkid);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(r.kind[i], 0);
        assert_int_equal(r.state[i], -1);
    }
    r = (rows_t){0};
    assert_int_equal(s_rows(fz_store_subtree, fx->store, kid, &r), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.id[0], grandkid);
    assert_int_equal(r.id[1], ggkid);
    r = (rows_t){0};
    assert_int_equal(s_rows(fz_store_subtree, fx->store, ggkid, &r), 0);
    assert_int_equal(s_rows(fz_store_subtree, fx->store, other, &r), 0);
    assert_int_equal(r.n, 0);

    uint32_t depth = 0, children = 0;
    int64_t prio = 0;
    assert_int_equal(fz_store_tree_info(fx->store, root, &depth, &children, &prio), 0);
    assert_int_equal(depth, 1);
    assert_int_equal(children, 2);
    assert_int_equal(prio, 5);
    assert_int_equal(fz_store_tree_info(fx->store, kid, &depth, &children, &prio), 0);
    assert_int_equal(depth, 2);
    assert_int_equal(children, 1);
    assert_int_equal(fz_store_tree_info(fx->store, ggkid, &depth, &children, &prio), 0);
    assert_int_equal(depth, 4);
    assert_int_equal(children, 0);
    assert_int_equal(prio, 0);
    assert_int_equal(fz_store_tree_info(fx->store, kid2, &depth, &children, &prio), 0);
    assert_int_equal(depth, 2);
    assert_int_equal(prio, 9);

    /* children: ids in order; labels: a child inherits what it does not set. */
    s_labels_are(fx, kid, 2, (const char *[]){"team", "web", "x", "2"});
    fz_store_task_row_t t;
    fz_store_rows_t *rows = s_task(fx, kid, &t);
    assert_int_equal(t.parent, root);
    fz_store_rows_destroy(&rows);
    fz_deps_t ch = {0};
    assert_int_equal(fz_store_children(fx->store, root, &ch), 0);
    assert_int_equal(ch.n, 2);
    assert_int_equal(ch.v[0].id, kid);
    assert_int_equal(ch.v[1].id, kid2);
    assert_int_equal(ch.v[0].state, -1);
    fz_deps_free(&ch);
    /* The grandchild inherited through its parent. */
    s_labels_are(fx, ggkid, 2, (const char *[]){"team", "web", "x", "2"});
}

/* ---------------------------------------------------------------- rows */

/* The msgpack bytes of a stored array, decoded: its object in *up (destroy it). */
static const msgpack_object *s_unpack(const void *data, size_t len, msgpack_unpacked *up)
{
    msgpack_unpacked_init(up);
    assert_non_null(data);
    assert_int_equal(msgpack_unpack_next(up, data, len, NULL), MSGPACK_UNPACK_SUCCESS);
    return &up->data;
}

static void test_task_and_attempt_rows(void **state)
{
    fx_t *fx = *state;
    char prompt[300];
    uint64_t dep;
    uint64_t id = s_add_rich_task(fx, prompt, sizeof prompt, &dep);

    fz_store_task_row_t t;
    fz_store_rows_t *rows = s_task(fx, id, &t);
    assert_int_equal(t.id, id);
    assert_string_equal(t.state, "running");
    assert_int_equal(t.priority, -12);
    assert_string_equal(t.model, "opus");
    assert_string_equal(t.name, "named");
    assert_int_equal(t.timeout, 600);
    assert_true(t.max_cost == 2.5);
    assert_int_equal(t.retries, 2);
    /* The arrays come out as the msgpack the submit carried. */
    msgpack_unpacked up;
    const msgpack_object *o = s_unpack(t.fallback, t.fallback_len, &up);
    assert_true(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 1);
    assert_int_equal(o->via.array.ptr[0].via.str.size, 6);
    assert_memory_equal(o->via.array.ptr[0].via.str.ptr, "sonnet", 6);
    msgpack_unpacked_destroy(&up);
    o = s_unpack(t.after, t.after_len, &up);
    assert_true(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 1);
    assert_int_equal(o->via.array.ptr[0].via.u64, dep);
    msgpack_unpacked_destroy(&up);
    assert_null(t.after_any); /* not given: none (the reply shows an empty array) */
    assert_int_equal(t.after_any_len, 0);
    assert_int_equal(t.parent, 0);
    assert_int_equal(t.attempts, 2);
    assert_string_equal(t.worker, "w2");
    assert_string_equal(t.outcome, "exited");
    assert_int_equal(t.exit_code, -3);
    assert_true(t.cost_usd == 0.75);
    assert_int_equal(t.tokens_in, 1000);
    assert_int_equal(t.tokens_out, 50);
    assert_string_equal(t.summary, "it broke");
    assert_string_equal(t.hold_reason, "");
    assert_true(t.deadline == 1.8e9);
    assert_true(t.created > 1.6e9);
    assert_true(t.updated >= t.created);
    assert_int_equal(t.prompt_len, strlen(prompt)); /* whole, not cut */
    assert_memory_equal(t.prompt, prompt, t.prompt_len);
    assert_false(fz_store_rows_task(rows, &t)); /* one row */
    fz_store_rows_destroy(&rows);
    s_labels_are(fx, id, 2, (const char *[]){"dry.cost", "0.1", "team", "web"}); /* by key */

    rows = fz_store_attempts(fx->store, id, 3u << 20);
    assert_non_null(rows);
    fz_store_attempt_row_t a;
    assert_true(fz_store_rows_attempt(rows, &a));
    assert_int_equal(a.n, 1);
    assert_string_equal(a.worker, "w1");
    assert_string_equal(a.model, "opus");
    assert_string_equal(a.outcome, "exited");
    assert_int_equal(a.exit_code, -3);
    assert_int_equal(a.duration_ms, 1234);
    assert_true(a.cost_usd == 0.75);
    assert_int_equal(a.tokens_in, 1000);
    assert_string_equal(a.summary, "it broke");
    assert_string_equal(a.log, "/var/log/a.log");
    assert_true(a.reserved == 2.5);
    assert_true(a.ended >= a.started);
    assert_int_equal(a.output_len, 7);
    assert_memory_equal(a.output, "out\0put", 7);
    assert_false(a.output_dropped);
    assert_true(fz_store_rows_attempt(rows, &a));
    assert_int_equal(a.n, 2);
    assert_string_equal(a.outcome, "running");
    assert_true(a.ended == 0);
    assert_non_null(a.output); /* none yet: empty */
    assert_int_equal(a.output_len, 0);
    assert_false(fz_store_rows_attempt(rows, &a));
    fz_store_rows_destroy(&rows);

    /* An output budget the attempts exceed: the oldest loses its output. */
    rows = fz_store_attempts(fx->store, id, 100);
    assert_true(fz_store_rows_attempt(rows, &a));
    assert_int_equal(a.n, 1);
    assert_int_equal(a.output_len, 0);
    assert_true(a.output_dropped);
    fz_store_rows_destroy(&rows);

    /* No such task: no row. */
    rows = fz_store_task(fx->store, 999);
    assert_non_null(rows);
    assert_false(fz_store_rows_task(rows, &t));
    fz_store_rows_destroy(&rows);
    fz_store_rows_destroy(&rows); /* NULL is ok */

    /* The dispatch payload: the whole prompt (labels as above). */
    size_t plen = 0;
    char *p = fz_store_prompt(fx->store, id, &plen);
    assert_non_null(p);
    assert_int_equal(plen, strlen(prompt));
    assert_string_equal(p, prompt);
    free(p);
    assert_null(fz_store_prompt(fx->store, 999, &plen));
}

static void test_list_rows_and_counts(void **state)
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

    uint64_t total = 0;
    fz_store_rows_t *rows = fz_store_list(fx->store, NULL, 100, false, NULL, &total);
    assert_non_null(rows);
    assert_int_equal(total, 5);
    fz_store_task_row_t t;
    for (uint32_t i = 0; i < 5; i++) {
        assert_true(fz_store_rows_task(rows, &t));
        assert_int_equal(t.id, i + 1);
        assert_int_equal(t.prompt_len, 80); /* lists carry the first 80 characters */
        for (size_t k = 0; k < t.prompt_len; k++)
            assert_int_equal(t.prompt[k], 'a' + (int)i);
        if (i == 1) {
            assert_string_equal(t.state, "held");
            assert_string_equal(t.hold_reason, "budget");
        }
    }
    assert_false(fz_store_rows_task(rows, &t));
    fz_store_rows_destroy(&rows);

    /* By state, with a limit under the total: the lowest ids, total of that state. */
    uint64_t ids[8];
    assert_int_equal(s_list_ids(fx, "queued", 2, false, &total, ids, 8), 2);
    assert_int_equal(total, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    /* tail: the newest of that state, newest first. */
    assert_int_equal(s_list_ids(fx, "queued", 2, true, &total, ids, 8), 2);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 3);
    assert_int_equal(s_list_ids(fx, "running", 100, false, &total, ids, 8), 0);
    assert_int_equal(total, 0);

    /* Counts: every state, zeros included. */
    uint64_t counts[FZ_STATE_COUNT];
    assert_int_equal(fz_store_counts(fx->store, counts), 0);
    assert_int_equal(counts[FZ_STATE_QUEUED], 3);
    assert_int_equal(counts[FZ_STATE_HELD], 1);
    assert_int_equal(counts[FZ_STATE_FAILED], 1);
    assert_int_equal(counts[FZ_STATE_DEP_FAILED], 0);
    assert_int_equal(counts[FZ_STATE_RUNNING], 0);
}

/* A list of many tasks: the reader gives every row the limit allows, by id or newest first
   with tail (the reply's 1.5 MiB cut is the view's: views_test). */
static void test_list_rows_many(void **state)
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
    for (int tail = 0; tail < 2; tail++) {
        uint64_t total = 0;
        fz_store_rows_t *rows = fz_store_list(fx->store, NULL, 100000, tail, NULL, &total);
        assert_int_equal(total, N);
        fz_store_task_row_t t;
        uint32_t n = 0;
        while (fz_store_rows_task(rows, &t)) {
            uint64_t want = tail ? N - n : n + 1;
            assert_int_equal(t.id, want);
            char w[16];
            snprintf(w, sizeof w, "%06u", (unsigned)want);
            assert_int_equal(t.prompt_len, 80);
            assert_memory_equal(t.prompt, w, 6);
            n++;
        }
        assert_int_equal(n, N);
        fz_store_rows_destroy(&rows);
    }
    uint64_t total = 0, ids[16];
    assert_int_equal(s_list_ids(fx, NULL, 10, false, &total, ids, 16), 10);
    assert_int_equal(total, N);
}

/* ---------------------------------------------------------------- cost */

typedef struct {
    char key[64];
    uint64_t attempts, tokens_in, duration_ms;
    double cost;
} cost_row_t;

/* Runs a cost report and returns its rows (at most 16) and their total. */
static size_t s_cost(fx_t *fx, fz_store_cost_by_t by, const char *label, double since,
                     cost_row_t *out, double *total)
{
    fz_store_rows_t *rows = fz_store_cost(fx->store, by, label, since);
    assert_non_null(rows);
    size_t n = 0;
    fz_store_cost_row_t r;
    *total = 0;
    while (fz_store_rows_cost(rows, &r)) {
        assert_true(n < 16);
        snprintf(out[n].key, sizeof out[n].key, "%s", r.key);
        out[n].attempts = r.attempts;
        out[n].tokens_in = r.tokens_in;
        out[n].duration_ms = r.duration_ms;
        out[n].cost = r.cost_usd;
        *total += r.cost_usd;
        n++;
    }
    fz_store_rows_destroy(&rows);
    return n;
}

static void test_cost_report_matches_spent(void **state)
{
    fx_t *fx = *state;
    msgpack_object_kv web_kv[] = {{.key = MP_STR("team"), .val = MP_STR("web")}};
    msgpack_object_kv ops_kv[] = {{.key = MP_STR("team"), .val = MP_STR("ops")}};
    msgpack_object web = MP_MAP(web_kv, 1), ops = MP_MAP(ops_kv, 1);
    double t0 = fz_wall();
    uint64_t a = s_add_child(fx, "a", 0, 0, &web);
    uint64_t b = s_add_child(fx, "b", 0, 0, &ops);
    uint64_t c = s_add(fx, "c");
    uint64_t r = s_add(fx, "running");
    /* Costs exact in binary, so sums compare exactly. */
    assert_int_equal(fz_store_attempt_start(fx->store, a, 1, "w", "m1", 1), 0);
    assert_int_equal(s_finish(fx, a, 1, 0.5, "", FZ_STATE_RETRYING), 1);
    assert_int_equal(fz_store_attempt_start(fx->store, a, 2, "w", "m1", 1), 0);
    assert_int_equal(s_finish(fx, a, 2, 0.25, "", FZ_STATE_SUCCEEDED), 1);
    assert_int_equal(fz_store_attempt_start(fx->store, b, 1, "w", "m2", 1), 0);
    assert_int_equal(s_finish(fx, b, 1, 1.0, "", FZ_STATE_SUCCEEDED), 1);
    assert_int_equal(s_finish(fx, b, 1, 1.0, "", FZ_STATE_SUCCEEDED), 0); /* duplicate */
    assert_int_equal(fz_store_attempt_start(fx->store, c, 1, "w", "m2", 1), 0);
    assert_int_equal(s_finish(fx, c, 1, 0.125, "m2-reported", FZ_STATE_FAILED), 1);
    assert_int_equal(fz_store_attempt_start(fx->store, r, 1, "w", "m1", 1), 0); /* not ended */
    assert_int_equal(fz_store_commit(fx->store), 0);
    double t1 = fz_wall();

    double spent = fz_store_spent(fx->store, t0 - 1, t1 + 1);
    assert_true(spent == 1.875);
    assert_true(fz_store_spent(fx->store, t1 + 1, t1 + 86400) == 0); /* [from, to) */
    assert_true(fz_store_spent(fx->store, 0, t0 - 1) == 0);

    cost_row_t rows[16];
    double total;
    size_t n = s_cost(fx, FZ_STORE_COST_MODEL, NULL, 0, rows, &total);
    assert_true(total == spent);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].key, "m1");
    assert_int_equal(rows[0].attempts, 2); /* the running attempt is not counted */
    assert_true(rows[0].cost == 0.75);
    assert_int_equal(rows[0].tokens_in, 200);
    assert_int_equal(rows[0].duration_ms, 2000);
    assert_string_equal(rows[1].key, "m2");
    assert_int_equal(rows[1].attempts, 1);
    assert_true(rows[1].cost == 1.0);
    assert_string_equal(rows[2].key, "m2-reported");
    assert_true(rows[2].cost == 0.125);

    n = s_cost(fx, FZ_STORE_COST_TASK, NULL, 0, rows, &total);
    assert_true(total == spent);
    assert_int_equal(n, 3);
    char key[24];
    snprintf(key, sizeof key, "%llu", (unsigned long long)a);
    assert_string_equal(rows[0].key, key);
    assert_true(rows[0].cost == 0.75);
    assert_int_equal(rows[0].attempts, 2);
    snprintf(key, sizeof key, "%llu", (unsigned long long)c);
    assert_string_equal(rows[2].key, key);

    n = s_cost(fx, FZ_STORE_COST_LABEL, "team", 0, rows, &total);
    assert_true(total == spent);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].key, ""); /* tasks without the label */
    assert_true(rows[0].cost == 0.125);
    assert_string_equal(rows[1].key, "ops");
    assert_true(rows[1].cost == 1.0);
    assert_string_equal(rows[2].key, "web");
    assert_true(rows[2].cost == 0.75);
    assert_int_equal(rows[2].attempts, 2);

    n = s_cost(fx, FZ_STORE_COST_DAY, NULL, 0, rows, &total);
    assert_true(total == spent);
    assert_true(n >= 1 && n <= 2); /* 2 only if the test ran across midnight UTC */
    assert_int_equal(strlen(rows[0].key), 10);
    uint64_t attempts = 0;
    for (size_t i = 0; i < n; i++)
        attempts += rows[i].attempts;
    assert_int_equal(attempts, 4);

    /* since: only what ended at or after it. */
    n = s_cost(fx, FZ_STORE_COST_MODEL, NULL, t1 + 1, rows, &total);
    assert_int_equal(n, 0);
    assert_true(total == 0);

    assert_null(fz_store_cost(fx->store, FZ_STORE_COST_COUNT, NULL, 0)); /* no such grouping */
}

/* Retention: ended tasks go with their attempts, labels and dependency rows; what a live
   task still needs (a dependency, a parent) stays; live tasks stay. */
static void test_purge(void **state)
{
    fx_t *fx = *state;
    uint64_t done = s_add(fx, "done");
    assert_int_equal(fz_store_attempt_start(fx->store, done, 1, "w", "m", 0), 0);
    assert_int_equal(s_finish(fx, done, 1, 0.5, "m", FZ_STATE_SUCCEEDED), 1);
    uint64_t needed = s_add(fx, "needed by a live task");
    assert_int_equal(fz_store_task_state(fx->store, needed, FZ_STATE_FAILED, ""), 0);
    uint64_t waiting = s_add_as(fx, "waits", FZ_STATE_WAITING);
    assert_int_equal(fz_store_dep_add(fx->store, waiting, needed, 1), 0);
    uint64_t parent = s_add(fx, "parent of a live task");
    assert_int_equal(fz_store_task_state(fx->store, parent, FZ_STATE_SUCCEEDED, ""), 0);
    uint64_t child = s_add_child(fx, "child", parent, 0, NULL);
    uint64_t live = s_add(fx, "live");
    assert_int_equal(fz_store_commit(fx->store), 0);

    assert_int_equal(fz_store_purge(fx->store, 1.0), 0); /* nothing ended that long ago */
    assert_int_equal(fz_store_purge(fx->store, 1e11), 1);
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_false(fz_store_task_exists(fx->store, done, NULL));
    assert_int_equal(s_ro_int(fx, "SELECT COUNT(*) FROM attempts"), 0);
    assert_true(fz_store_task_exists(fx->store, needed, NULL));
    assert_true(fz_store_task_exists(fx->store, parent, NULL));
    assert_true(fz_store_task_exists(fx->store, waiting, NULL));
    assert_true(fz_store_task_exists(fx->store, child, NULL));
    assert_true(fz_store_task_exists(fx->store, live, NULL));
}

/* ---------------------------------------------------------------- damage */

/* Opens the store at fx->path expecting a refusal that mentions `words`. */
static void s_open_refused(fx_t *fx, const char *words)
{
    char err[512] = "";
    fz_store_t *s = fz_store_open(fx->path, false, err, sizeof err);
    if (s)
        fz_store_destroy(&s);
    assert_null(s);
    if (!strstr(err, words))
        fail_msg("refusal without '%s': %s", words, err);
    assert_non_null(strstr(err, "backup"));
}

/* An empty or truncated file where the database was is refused, not taken as a new store. */
static void test_empty_or_truncated_file_is_refused(void **state)
{
    fx_t *fx = *state;
    s_add(fx, "keep me");
    assert_int_equal(fz_store_commit(fx->store), 0);
    fz_store_destroy(&fx->store);
    assert_int_equal(truncate(fx->path, 0), 0);
    s_open_refused(fx, "empty file");
    assert_int_equal(truncate(fx->path, 300), 0);
    s_open_refused(fx, "truncated");
    unlink(fx->path);
    fx->store = s_open(fx->path); /* gone altogether: a new store, as on a first start */
    assert_non_null(fx->store);
}

/* A store with flipped bytes in its pages is refused at open with quick_check's words. */
static void test_damaged_store_is_refused(void **state)
{
    fx_t *fx = *state;
    for (int i = 0; i < 300; i++)
        s_add(fx, "a task with a prompt long enough to fill a few pages of the table and index");
    assert_int_equal(fz_store_commit(fx->store), 0);
    fz_store_destroy(&fx->store); /* the last connection: the WAL is checkpointed */
    FILE *f = fopen(fx->path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    assert_true(size > 8 * 4096);
    /* Every page but the first (the schema): its header and cells become garbage. */
    for (long page = 4096; page + 4096 <= size; page += 4096) {
        fseek(f, page + 8, SEEK_SET);
        for (int k = 0; k < 64; k++)
            fputc(0xa5, f);
    }
    fclose(f);
    s_open_refused(fx, "damaged");
}

/* A backup is what was committed, not the turn's open transaction, and opens as a store. */
static void test_backup(void **state)
{
    fx_t *fx = *state;
    s_add(fx, "committed");
    assert_int_equal(fz_store_commit(fx->store), 0);
    s_add(fx, "not yet committed");
    char copy[200], err[512] = "";
    snprintf(copy, sizeof copy, "%s/copy.db", fx->dir);
    int64_t bytes = fz_store_backup(fx->store, copy, err, sizeof err);
    assert_true(bytes >= 4096);
    assert_int_equal(fz_store_backup(fx->store, fx->path, err, sizeof err), -2);
    assert_non_null(strstr(err, "the database itself"));
    char nowhere[200];
    snprintf(nowhere, sizeof nowhere, "%s/no/such/dir/x.db", fx->dir);
    assert_int_equal(fz_store_backup(fx->store, nowhere, err, sizeof err), -1);
    fz_store_rollback(fx->store);
    fz_store_t *c = fz_store_open(copy, false, err, sizeof err);
    assert_non_null(c);
    assert_true(fz_store_task_exists(c, 1, NULL));
    assert_false(fz_store_task_exists(c, 2, NULL));
    fz_store_destroy(&c);
    static const char *const suffixes[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < 4; i++) {
        char p[220];
        snprintf(p, sizeof p, "%s%s", copy, suffixes[i]);
        unlink(p);
    }
}

/* Idempotency keys: stored with the turn (a rolled-back turn forgets its key), found by
   age, replaced once expired, pruned; a batch's ids come back in order. */
static void test_submit_keys(void **state)
{
    fx_t *fx = *state;
    fz_store_key_t k;
    uint64_t one = s_add(fx, "single");
    assert_int_equal(fz_store_key_add(fx->store, "a", 1000, &one, 1, FZ_STATE_QUEUED), 0);
    uint64_t batch[3] = {7, 9, 8};
    assert_int_equal(fz_store_key_add(fx->store, "b", 2000, batch, 3, -1), 0);
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_int_equal(fz_store_key_find(fx->store, "a", 500, &k), 1);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.ids[0], one);
    assert_int_equal(k.state, FZ_STATE_QUEUED);
    assert_int_equal(fz_store_key_find(fx->store, "b", 500, &k), 1);
    assert_int_equal(k.n, 3);
    assert_int_equal(k.ids[0], 7);
    assert_int_equal(k.ids[1], 9);
    assert_int_equal(k.ids[2], 8);
    assert_int_equal(k.state, -1);
    /* Too old for the lookup: not found; and unknown keys are not found. */
    assert_int_equal(fz_store_key_find(fx->store, "a", 1500, &k), 0);
    assert_int_equal(fz_store_key_find(fx->store, "nope", 0, &k), 0);
    /* A rolled-back turn takes its key with it. */
    assert_int_equal(fz_store_key_add(fx->store, "c", 3000, &one, 1, FZ_STATE_QUEUED), 0);
    fz_store_rollback(fx->store);
    assert_int_equal(fz_store_key_find(fx->store, "c", 0, &k), 0);
    /* An expired key may be used again: the new row replaces it. */
    uint64_t two = 42;
    assert_int_equal(fz_store_key_add(fx->store, "a", 4000, &two, 1, FZ_STATE_WAITING), 0);
    assert_int_equal(fz_store_key_find(fx->store, "a", 3500, &k), 1);
    assert_int_equal(k.ids[0], 42);
    /* Pruning removes what is older than the bound, and only that. */
    assert_int_equal(fz_store_key_prune(fx->store, 2500), 1);
    assert_int_equal(fz_store_commit(fx->store), 0);
    assert_int_equal(fz_store_key_find(fx->store, "b", 0, &k), 0);
    assert_int_equal(fz_store_key_find(fx->store, "a", 0, &k), 1);
}

typedef struct {
    fz_store_depth_t rows[8];
    size_t n;
} depth_rows_t;

static void s_depth_collect(void *arg, const fz_store_depth_t *row)
{
    depth_rows_t *d = arg;
    if (d->n < 8)
        d->rows[d->n++] = *row;
}

/* Queue depth by label: by state, ended tasks left out; capped rows say so. The same rows
   whichever side the pass walks (the model's depth is the broker's, from memory). */
static void test_depth(void **state)
{
    fx_t *fx = *state;
    fz_store_newtask_t t = {0};
    t.prompt = "p";
    t.prompt_len = 1;
    t.model = "sonnet";
    t.state = FZ_STATE_QUEUED;
    msgpack_object_kv kv = {{.type = MSGPACK_OBJECT_STR, .via.str = {4, "team"}},
                            {.type = MSGPACK_OBJECT_STR, .via.str = {3, "web"}}};
    msgpack_object labels = {.type = MSGPACK_OBJECT_MAP, .via.map = {1, &kv}};
    t.labels = &labels;
    assert_true(fz_store_task_add(fx->store, &t) > 0);
    t.state = FZ_STATE_HELD;
    assert_true(fz_store_task_add(fx->store, &t) > 0);
    t.state = FZ_STATE_SUCCEEDED; /* ended: not counted */
    assert_true(fz_store_task_add(fx->store, &t) > 0);
    t.model = "";
    t.labels = NULL;
    t.state = FZ_STATE_QUEUED;
    assert_true(fz_store_task_add(fx->store, &t) > 0);
    msgpack_object_kv kv2 = {{.type = MSGPACK_OBJECT_STR, .via.str = {4, "team"}},
                             {.type = MSGPACK_OBJECT_STR, .via.str = {3, "api"}}};
    msgpack_object labels2 = {.type = MSGPACK_OBJECT_MAP, .via.map = {1, &kv2}};
    t.labels = &labels2;
    t.state = FZ_STATE_RUNNING;
    assert_true(fz_store_task_add(fx->store, &t) > 0);
    assert_int_equal(fz_store_commit(fx->store), 0);

    /* Over the tasks (live 0: no fewer labels than that) and over the labels (fewer than a
       thousand): the same rows, in key order. */
    depth_rows_t d = {0};
    for (int plan = 0; plan < 2; plan++) {
        memset(&d, 0, sizeof d);
        assert_int_equal(fz_store_depth_labels(fx->store, plan ? 1000 : 0, 10, s_depth_collect, &d),
                         0);
        assert_int_equal(d.n, 2);
        assert_string_equal(d.rows[0].key, "team=api");
        assert_int_equal(d.rows[0].counts[fz_store_depth_slot(FZ_STATE_RUNNING)], 1);
        assert_string_equal(d.rows[1].key, "team=web");
        assert_int_equal(d.rows[1].counts[fz_store_depth_slot(FZ_STATE_QUEUED)], 1);
        assert_int_equal(d.rows[1].counts[fz_store_depth_slot(FZ_STATE_HELD)], 1);
    }
    memset(&d, 0, sizeof d);
    assert_int_equal(fz_store_depth_labels(fx->store, 0, 1, s_depth_collect, &d), 1);
    assert_int_equal(d.n, 1);
    assert_int_equal(fz_store_depth_slot(FZ_STATE_SUCCEEDED), -1);
}

int main(void)
{
    fz_log_init("store_test", FZ_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        TEST(test_open_creates_schema),
        TEST(test_empty_or_truncated_file_is_refused),
        TEST(test_damaged_store_is_refused),
        TEST(test_backup),
        TEST(test_task_add_increasing_ids),
        TEST(test_rollback_then_commit),
        TEST(test_fail_turn),
        TEST(test_max_pages_seam),
        TEST(test_regression_no_writes_after_a_failed_write),
        TEST(test_meta),
        TEST(test_load_live),
        TEST(test_regression_load_live_model),
        TEST(test_attempt_finish_records_once),
        TEST(test_task_model_fallback_chain),
        TEST(test_state_priority_depfail),
        TEST(test_deps),
        TEST(test_tree),
        TEST(test_task_and_attempt_rows),
        TEST(test_list_rows_and_counts),
        TEST(test_list_rows_many),
        TEST(test_cost_report_matches_spent),
        TEST(test_purge),
        TEST(test_submit_keys),
        TEST(test_depth),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
