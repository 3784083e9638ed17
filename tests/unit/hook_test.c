/*  hook_test: fz-watch --on/--exec: topic lists, and real hooks (/bin/sh children): the
    event on stdin and in FZ_EVENT_*, the bound on hooks at once, the queue that drops
    instead of blocking, failures counted, the timeout that kills, and nothing left
    unreaped. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fz_hook.h"
#include "fz_util.h"

static void test_topics(void **state)
{
    (void)state;
    char err[256];
    assert_true(fz_hook_topics_valid("task.failed,task.succeeded", err, sizeof err));
    assert_true(fz_hook_topics_valid("task.*", err, sizeof err));
    assert_true(fz_hook_topics_valid("*", err, sizeof err));
    assert_true(fz_hook_topics_valid("task.dep-failed", err, sizeof err));
    assert_false(fz_hook_topics_valid("", err, sizeof err));
    assert_false(fz_hook_topics_valid("task.failed,", err, sizeof err));
    assert_false(fz_hook_topics_valid("Task.Failed", err, sizeof err));
    assert_false(fz_hook_topics_valid("task.*x", err, sizeof err));
    assert_false(fz_hook_topics_valid("task failed", err, sizeof err));
    assert_non_null(strstr(err, "'task failed'"));
    assert_true(fz_hook_matches("task.failed,task.succeeded", "task.succeeded"));
    assert_false(fz_hook_matches("task.failed,task.succeeded", "task.failed2"));
    assert_false(fz_hook_matches("task.failed", "task.fail"));
    assert_true(fz_hook_matches("task.*", "task.output"));
    assert_false(fz_hook_matches("task.*", "worker.joined"));
    assert_true(fz_hook_matches("*", "broker.paused"));
}

typedef struct {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
} s_ev_t;

/* {"seq": seq, "task": task, "state": state, "summary": summary} */
static void s_event(s_ev_t *ev, uint64_t seq, uint64_t task, const char *state, const char *summary)
{
    msgpack_sbuffer_init(&ev->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ev->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_str_with_body(&pk, "task", 4);
    msgpack_pack_uint64(&pk, task);
    msgpack_pack_str_with_body(&pk, "state", 5);
    msgpack_pack_str_with_body(&pk, state, strlen(state));
    msgpack_pack_str_with_body(&pk, "summary", 7);
    msgpack_pack_str_with_body(&pk, summary, strlen(summary));
    msgpack_unpacked_init(&ev->u);
    size_t off = 0;
    msgpack_unpack_next(&ev->u, ev->sb.data, ev->sb.size, &off);
}

static void s_event_free(s_ev_t *ev)
{
    msgpack_unpacked_destroy(&ev->u);
    msgpack_sbuffer_destroy(&ev->sb);
}

static void s_offer(fz_hook_t *h, const char *topic, uint64_t seq, const char *summary)
{
    s_ev_t ev;
    s_event(&ev, seq, 40 + seq, "failed", summary);
    fz_hook_event(h, topic, &ev.u.data);
    s_event_free(&ev);
}

/* Polls until no hook runs or waits; returns the seconds it took. */
static double s_drain(fz_hook_t *h, double max)
{
    int64_t t0 = fz_clock_ms();
    while (fz_hook_busy(h) && fz_clock_ms() - t0 < (int64_t)(max * 1000)) {
        fz_hook_poll(h);
        usleep(10000);
    }
    return (double)(fz_clock_ms() - t0) / 1000;
}

static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_runs_with_event(void **state)
{
    (void)state;
    char dir[] = "/tmp/fz-hook-test-XXXXXX", cmd[512], path[300];
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd,
             "cat > %s/in.$FZ_EVENT_SEQ; printf '%%s\\n' \"$FZ_EVENT_TOPIC|$FZ_EVENT_TASK|"
             "$FZ_EVENT_STATE|$FZ_EVENT_SUMMARY|$FZ_EVENT_MODEL\" > %s/env.$FZ_EVENT_SEQ; exit "
             "$((FZ_EVENT_SEQ %% 2))",
             dir, dir);
    fz_hook_t *h = fz_hook_new("task.failed", cmd, 2, 10, 10);
    s_offer(h, "task.succeeded", 1, "not for us");
    s_offer(h, "task.failed", 2, "line1\nline2 \x1b[31m");
    s_offer(h, "task.failed", 3, "odd exits 1");
    s_drain(h, 10);
    uint64_t started, failed, dropped;
    fz_hook_counts(h, &started, &failed, &dropped);
    assert_int_equal(started, 2);
    assert_int_equal(failed, 1); /* seq 3 exited 1: logged and counted */
    assert_int_equal(dropped, 0);
    snprintf(path, sizeof path, "%s/in.2", dir);
    char *in = s_slurp(path);
    assert_non_null(in);
    assert_non_null(strstr(in, "\"topic\":\"task.failed\""));
    assert_non_null(strstr(in, "\"seq\":2"));
    assert_non_null(strstr(in, "\"summary\":\"line1\\nline2 \\u001B[31m\""));
    free(in);
    snprintf(path, sizeof path, "%s/env.2", dir);
    char *env = s_slurp(path);
    /* control characters escaped in the variables: one line, no raw ESC */
    assert_string_equal(env, "task.failed|42|failed|line1\\nline2 \\x1b[31m|\n");
    free(env);
    snprintf(path, sizeof path, "%s/in.1", dir);
    assert_int_equal(access(path, F_OK), -1); /* task.succeeded did not match */
    fz_hook_destroy(&h, 5);
    assert_null(h);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* every child reaped */
    assert_int_equal(errno, ECHILD);
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
}

static void test_bounded_never_blocks(void **state)
{
    (void)state;
    /* one hook at a time, two waiting: of five events offered at once, two are dropped,
       and offering them takes no time although each hook sleeps */
    fz_hook_t *h = fz_hook_new("*", "sleep 0.3", 1, 2, 10);
    int64_t t0 = fz_clock_ms();
    for (uint64_t i = 1; i <= 5; i++)
        s_offer(h, "task.failed", i, "");
    assert_true(fz_clock_ms() - t0 < 200);
    uint64_t started, failed, dropped;
    fz_hook_counts(h, &started, &failed, &dropped);
    assert_int_equal(started, 1);
    assert_int_equal(dropped, 2);
    double took = s_drain(h, 10);
    assert_true(took >= 0.5); /* three hooks of 0.3 s one after another */
    fz_hook_counts(h, &started, &failed, &dropped);
    assert_int_equal(started, 3);
    assert_int_equal(failed, 0);
    fz_hook_destroy(&h, 5);
}

static void test_timeout_kills_group(void **state)
{
    (void)state;
    /* the hook and its child both go: SIGTERM reaches the whole process group */
    fz_hook_t *h = fz_hook_new("*", "sleep 30 & sleep 30; wait", 1, 1, 0.3);
    s_offer(h, "task.failed", 1, "");
    double took = s_drain(h, 10);
    assert_true(took < 3);
    uint64_t started, failed, dropped;
    fz_hook_counts(h, &started, &failed, &dropped);
    assert_int_equal(failed, 1);
    fz_hook_destroy(&h, 0);
}

static void test_destroy_kills_what_runs(void **state)
{
    (void)state;
    fz_hook_t *h = fz_hook_new("*", "sleep 30", 2, 4, 60);
    s_offer(h, "task.failed", 1, "");
    s_offer(h, "task.failed", 2, "");
    s_offer(h, "task.failed", 3, ""); /* waits: dropped at destroy */
    int64_t t0 = fz_clock_ms();
    fz_hook_destroy(&h, 0.2);
    assert_true(fz_clock_ms() - t0 < 3000);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_runs_with_event),
        cmocka_unit_test(test_bounded_never_blocks),
        cmocka_unit_test(test_timeout_kills_group),
        cmocka_unit_test(test_destroy_kills_what_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
