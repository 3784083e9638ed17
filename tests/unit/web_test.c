/*  web_test: fz-web's pure parts: SSE framing and ids, the event ring (order, filters, gaps,
    bounds, stop), the Host/Origin/token guard, and the Prometheus text writers. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_web_guard.h"
#include "fz_web_hub.h"
#include "fz_web_metrics.h"

/* ---------------------------------------------------------------- SSE framing */

static void test_sse_frame_one_line(void **state)
{
    (void)state;
    size_t len = 0;
    char *f = fz_web_sse_frame("r.1", "fz", "{\"a\":1}", 7, &len);
    assert_string_equal(f, "id: r.1\nevent: fz\ndata: {\"a\":1}\n\n");
    assert_int_equal(len, strlen(f));
    free(f);
}

static void test_sse_frame_splits_lines_and_cleans_fields(void **state)
{
    (void)state;
    size_t len = 0;
    /* LF, CRLF and a lone CR each end a line; an id or event cannot smuggle a line in */
    char *f = fz_web_sse_frame("x\ny", "ev\r\nid: 9", "a\nb\r\nc\rd", 8, &len);
    assert_string_equal(f, "id: xy\nevent: evid: 9\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    free(f);
    f = fz_web_sse_frame(NULL, NULL, "", 0, &len);
    assert_string_equal(f, "data: \n\n");
    free(f);
    f = fz_web_sse_frame(NULL, NULL, "\n\n", 2, &len);
    assert_string_equal(f, "data: \ndata: \ndata: \n\n");
    assert_int_equal(len, strlen(f));
    free(f);
}

static void test_sse_parse_id(void **state)
{
    (void)state;
    char run[32];
    uint64_t n = 0;
    assert_true(fz_web_sse_parse_id("abc.42", run, sizeof run, &n));
    assert_string_equal(run, "abc");
    assert_int_equal(n, 42);
    assert_false(fz_web_sse_parse_id("abc", run, sizeof run, &n));
    assert_false(fz_web_sse_parse_id(".5", run, sizeof run, &n));
    assert_false(fz_web_sse_parse_id("a.", run, sizeof run, &n));
    assert_false(fz_web_sse_parse_id("a.5x", run, sizeof run, &n));
    assert_false(fz_web_sse_parse_id("a.-5", run, sizeof run, &n));
    assert_false(fz_web_sse_parse_id("a.99999999999999999999999", run, sizeof run, &n));
    assert_false(fz_web_sse_parse_id("0123456789012345678901234567890123.1", run, sizeof run, &n));
}

/* ---------------------------------------------------------------- the ring */

static char *s_next(fz_web_hub_t *hub, uint64_t *pos, uint64_t task, int timeout)
{
    char *frame = NULL;
    size_t len = 0;
    int rc = fz_web_hub_next(hub, pos, task, timeout, &frame, &len);
    return rc == 1 ? frame : NULL;
}

static void test_hub_order_and_filters(void **state)
{
    (void)state;
    fz_web_hub_t *hub = fz_web_hub_new(16, 1 << 20);
    bool gap = true;
    uint64_t all = fz_web_hub_start(hub, NULL, &gap), t7 = all;
    assert_false(gap);
    fz_web_hub_push(hub, "task.submitted", 7, false, "{\"n\":1}", 7);
    fz_web_hub_push(hub, "task.output", 7, true, "{\"n\":2}", 7);
    fz_web_hub_push(hub, "task.submitted", 8, false, "{\"n\":3}", 7);
    /* the overview stream: everything but output */
    char *f = s_next(hub, &all, 0, 0);
    assert_non_null(strstr(f, "{\"n\":1}"));
    char id[64];
    snprintf(id, sizeof id, "id: %s.1\n", fz_web_hub_run(hub));
    assert_non_null(strstr(f, id));
    free(f);
    f = s_next(hub, &all, 0, 0);
    assert_non_null(strstr(f, "{\"n\":3}"));
    free(f);
    assert_null(s_next(hub, &all, 0, 0)); /* nothing more: times out at once */
    /* a task's stream: its events, output too, and no other task's */
    f = s_next(hub, &t7, 7, 0);
    assert_non_null(strstr(f, "{\"n\":1}"));
    free(f);
    f = s_next(hub, &t7, 7, 0);
    assert_non_null(strstr(f, "{\"n\":2}"));
    free(f);
    assert_null(s_next(hub, &t7, 7, 0));
    fz_web_hub_destroy(&hub);
    assert_null(hub);
}

static void test_hub_resume_and_gaps(void **state)
{
    (void)state;
    fz_web_hub_t *hub = fz_web_hub_new(4, 1 << 20);
    for (int i = 1; i <= 6; i++)
        fz_web_hub_push(hub, "task.queued", 1, false, "{}", 2);
    char id[64];
    bool gap = false;
    /* resuming inside the ring: after frame 5 comes 6, no gap */
    snprintf(id, sizeof id, "%s.5", fz_web_hub_run(hub));
    uint64_t pos = fz_web_hub_start(hub, id, &gap);
    assert_false(gap);
    assert_int_equal(pos, 6);
    /* resuming behind the ring (it holds 3..6): a gap */
    snprintf(id, sizeof id, "%s.1", fz_web_hub_run(hub));
    pos = fz_web_hub_start(hub, id, &gap);
    assert_true(gap);
    /* another run's id, or garbage: a gap, then only new frames */
    pos = fz_web_hub_start(hub, "0000000000000000.3", &gap);
    assert_true(gap);
    assert_int_equal(pos, 7);
    pos = fz_web_hub_start(hub, "garbage", &gap);
    assert_true(gap);
    /* a reader that fell behind gets a gap frame, then the oldest held */
    pos = 1;
    char *f = s_next(hub, &pos, 0, 0);
    assert_string_equal(f, "event: gap\ndata: {}\n\n");
    free(f);
    f = s_next(hub, &pos, 0, 0);
    snprintf(id, sizeof id, "id: %s.3\n", fz_web_hub_run(hub));
    assert_non_null(strstr(f, id));
    free(f);
    fz_web_hub_destroy(&hub);
}

static void test_hub_bounded_in_bytes(void **state)
{
    (void)state;
    fz_web_hub_t *hub = fz_web_hub_new(1000, 4096);
    char big[1000];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 100; i++)
        fz_web_hub_push(hub, "task.output", 1, true, big, sizeof big);
    uint64_t pos = 1, frames = 0;
    char *f;
    while ((f = s_next(hub, &pos, 1, 0)) != NULL) {
        frames++;
        free(f);
    }
    assert_true(frames <= 5); /* a gap frame and at most four 1 KiB frames */
    assert_true(frames >= 2);
    uint64_t pushed, lost, readers;
    fz_web_hub_stats(hub, &pushed, &lost, &readers);
    assert_int_equal(pushed, 100);
    assert_int_equal(lost, 0);
    fz_web_hub_destroy(&hub);
}

static void *s_reader(void *arg)
{
    fz_web_hub_t *hub = arg;
    uint64_t pos = 1;
    char *frame = NULL;
    size_t len;
    fz_web_hub_reader(hub, +1);
    int rc;
    while ((rc = fz_web_hub_next(hub, &pos, 0, 60000, &frame, &len)) == 1)
        free(frame);
    fz_web_hub_reader(hub, -1);
    return (void *)(intptr_t)rc;
}

static void test_hub_stop_wakes_readers(void **state)
{
    (void)state;
    fz_web_hub_t *hub = fz_web_hub_new(16, 1 << 20);
    pthread_t t;
    pthread_create(&t, NULL, s_reader, hub);
    fz_web_hub_push(hub, "task.queued", 1, false, "{}", 2);
    struct timespec ms50 = {0, 50000000};
    nanosleep(&ms50, NULL);
    fz_web_hub_stop(hub); /* the reader waits up to 60 s: stop must end it now */
    void *rc;
    pthread_join(t, &rc);
    assert_int_equal((intptr_t)rc, -1);
    fz_web_hub_destroy(&hub);
}

/* ---------------------------------------------------------------- the guard */

static void test_host_check(void **state)
{
    (void)state;
    assert_true(fz_web_host_ok("127.0.0.1:8570", "127.0.0.1", 8570, NULL));
    assert_true(fz_web_host_ok("localhost:8570", "127.0.0.1", 8570, NULL));
    assert_true(fz_web_host_ok("[::1]:8570", "127.0.0.1", 8570, NULL));
    assert_false(fz_web_host_ok("127.0.0.1:8571", "127.0.0.1", 8570, NULL));    /* port */
    assert_false(fz_web_host_ok("127.0.0.1", "127.0.0.1", 8570, NULL));         /* no port */
    assert_false(fz_web_host_ok("evil.example:8570", "127.0.0.1", 8570, NULL)); /* rebinding */
    assert_false(fz_web_host_ok(NULL, "127.0.0.1", 8570, NULL));
    assert_false(fz_web_host_ok("", "127.0.0.1", 8570, NULL));
    assert_false(fz_web_host_ok(":8570", "127.0.0.1", 8570, NULL));
    assert_false(fz_web_host_ok("127.0.0.1:85x70", "127.0.0.1", 8570, NULL));
    /* a wildcard listener answers to IP literals and the names it is given */
    assert_true(fz_web_host_ok("10.1.2.3:80", "0.0.0.0", 80, NULL));
    assert_false(fz_web_host_ok("factory.lan:80", "0.0.0.0", 80, NULL));
    assert_true(fz_web_host_ok("factory.lan:80", "0.0.0.0", 80, "other,factory.lan"));
    assert_false(fz_web_host_ok("factory.la:80", "0.0.0.0", 80, "factory.lan"));
    /* a listener on a LAN address does not answer to a rebound loopback name */
    assert_false(fz_web_host_ok("localhost:80", "10.0.0.5", 80, NULL));
    assert_true(fz_web_host_ok("10.0.0.5:80", "10.0.0.5", 80, NULL));
}

static void test_control_guard(void **state)
{
    (void)state;
    const char *h = "127.0.0.1:8570", *tok = "s3cret-token";
#define G(host, origin, xt, auth, token)                                                           \
    fz_web_guard_control(host, origin, xt, auth, token, "127.0.0.1", 8570, NULL)
    assert_int_equal(G(h, NULL, tok, NULL, tok), FZ_WEB_OK);
    assert_int_equal(G(h, "http://127.0.0.1:8570", tok, NULL, tok), FZ_WEB_OK);
    assert_int_equal(G(h, NULL, NULL, "Bearer s3cret-token", tok), FZ_WEB_OK);
    assert_int_equal(G(h, NULL, NULL, NULL, tok), FZ_WEB_NO_TOKEN);
    assert_int_equal(G(h, NULL, "s3cret-tokeN", NULL, tok), FZ_WEB_NO_TOKEN);
    assert_int_equal(G(h, NULL, "s3cret-token-and-more", NULL, tok), FZ_WEB_NO_TOKEN);
    assert_int_equal(G(h, NULL, "", NULL, tok), FZ_WEB_NO_TOKEN);
    assert_int_equal(G(h, NULL, NULL, "Basic s3cret-token", tok), FZ_WEB_NO_TOKEN);
    /* another origin is refused even with the token */
    assert_int_equal(G(h, "http://evil.example", tok, NULL, tok), FZ_WEB_CROSS_SITE);
    assert_int_equal(G(h, "https://127.0.0.1:8570", tok, NULL, tok), FZ_WEB_CROSS_SITE);
    assert_int_equal(G(h, "null", tok, NULL, tok), FZ_WEB_CROSS_SITE);
    assert_int_equal(G("evil.example:8570", "http://evil.example:8570", tok, NULL, tok),
                     FZ_WEB_BAD_HOST);
    /* no token configured: controls are off, whatever the request carries */
    assert_int_equal(G(h, NULL, tok, NULL, NULL), FZ_WEB_NO_ADMIN);
    assert_int_equal(G(h, NULL, "", NULL, ""), FZ_WEB_NO_ADMIN);
    assert_int_equal(fz_web_verdict_status(FZ_WEB_NO_TOKEN), 401);
    assert_int_equal(fz_web_verdict_status(FZ_WEB_CROSS_SITE), 403);
#undef G
}

static void test_token_equal(void **state)
{
    (void)state;
    assert_true(fz_web_token_equal("abcdefgh", "abcdefgh"));
    assert_false(fz_web_token_equal("abcdefgx", "abcdefgh"));
    assert_false(fz_web_token_equal("abcdefg", "abcdefgh"));
    assert_false(fz_web_token_equal("", "abcdefgh"));
    assert_false(fz_web_token_equal("", ""));
}

/* ---------------------------------------------------------------- metrics text */

static char *s_capture(void (*fn)(FILE *, void *), void *arg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fn(f, arg);
    fclose(f);
    return text;
}

static void s_samples(FILE *f, void *arg)
{
    (void)arg;
    fz_web_metric_family(f, "fz_x_total", "counter", "Things.");
    fz_web_metric_sample(f, "fz_x_total", 3, "model", "a\"b\\c\nd", "state", "ok", NULL);
    fz_web_metric_sample(f, "fz_y", 0.25, NULL);
    fz_web_metric_sample(f, "fz_z", 1e20, NULL);
}

static void test_metric_lines(void **state)
{
    (void)state;
    char *t = s_capture(s_samples, NULL);
    assert_string_equal(t, "# HELP fz_x_total Things.\n# TYPE fz_x_total counter\n"
                           "fz_x_total{model=\"a\\\"b\\\\c\\nd\",state=\"ok\"} 3\n"
                           "fz_y 0.25\nfz_z 1e+20\n");
    free(t);
    char buf[32];
    assert_string_equal(fz_web_metric_number(INFINITY, buf, sizeof buf), "+Inf");
    assert_string_equal(fz_web_metric_number(-INFINITY, buf, sizeof buf), "-Inf");
    assert_string_equal(fz_web_metric_number(NAN, buf, sizeof buf), "NaN");
    assert_string_equal(fz_web_metric_number(12, buf, sizeof buf), "12");
    assert_string_equal(fz_web_metric_number(-0.5, buf, sizeof buf), "-0.5");
}

static void s_hist(FILE *f, void *arg)
{
    fz_web_metric_histogram(f, "fz_lat_seconds", "Latency.", arg);
}

static void test_histogram(void **state)
{
    (void)state;
    fz_web_hist_t h;
    fz_web_hist_init(&h);
    fz_web_hist_observe(&h, 0.05); /* <= 0.1 */
    fz_web_hist_observe(&h, 0.1);  /* le is inclusive */
    fz_web_hist_observe(&h, 2);    /* <= 5 */
    fz_web_hist_observe(&h, 1e6);  /* +Inf only */
    char *t = s_capture(s_hist, &h);
    assert_non_null(strstr(t, "# TYPE fz_lat_seconds histogram\n"));
    assert_non_null(strstr(t, "fz_lat_seconds_bucket{le=\"0.1\"} 2\n"));
    assert_non_null(strstr(t, "fz_lat_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(t, "fz_lat_seconds_bucket{le=\"5\"} 3\n"));
    assert_non_null(strstr(t, "fz_lat_seconds_bucket{le=\"14400\"} 3\n"));
    assert_non_null(strstr(t, "fz_lat_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(t, "fz_lat_seconds_sum 1000002.15\n"));
    assert_non_null(strstr(t, "fz_lat_seconds_count 4\n"));
    free(t);
}

/* An event map {"task": id, "ts": ts, "outcome"?: o, "class"?: c}, unpacked from its own
   buffer (the strings point into it). */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
} s_ev_t;

static void s_event(s_ev_t *ev, uint64_t task, double ts, const char *outcome, const char *cls)
{
    msgpack_sbuffer_init(&ev->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ev->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, outcome ? 4 : 2);
    msgpack_pack_str_with_body(&pk, "task", 4);
    msgpack_pack_uint64(&pk, task);
    msgpack_pack_str_with_body(&pk, "ts", 2);
    msgpack_pack_double(&pk, ts);
    if (outcome) {
        msgpack_pack_str_with_body(&pk, "outcome", 7);
        msgpack_pack_str_with_body(&pk, outcome, strlen(outcome));
        msgpack_pack_str_with_body(&pk, "class", 5);
        msgpack_pack_str_with_body(&pk, cls, strlen(cls));
    }
    msgpack_unpacked_init(&ev->u);
    size_t off = 0;
    msgpack_unpack_next(&ev->u, ev->sb.data, ev->sb.size, &off);
}

static void s_event_free(s_ev_t *ev)
{
    msgpack_unpacked_destroy(&ev->u);
    msgpack_sbuffer_destroy(&ev->sb);
}

static void s_stats(FILE *f, void *arg)
{
    fz_web_stats_write(arg, f);
}

static void test_stats_from_events(void **state)
{
    (void)state;
    fz_web_stats_t *st = fz_web_stats_new();
    s_ev_t a, b, c, d, e;
    s_event(&a, 5, 100.0, NULL, NULL);
    s_event(&b, 5, 102.5, NULL, NULL);
    s_event(&c, 5, 103.0, NULL, NULL);
    s_event(&d, 5, 110, "exited", "task-failed");
    s_event(&e, 6, 111, "timeout", "timeout");
    fz_web_stats_event(st, "task.submitted", &a.u.data);
    fz_web_stats_event(st, "task.started", &b.u.data);
    fz_web_stats_event(st, "task.started", &c.u.data); /* a second start: not counted again */
    fz_web_stats_event(st, "task.attempt-failed", &d.u.data);
    fz_web_stats_event(st, "task.failed", &e.u.data);
    s_ev_t f;
    s_event(&f, 6, 112, NULL, NULL);
    fz_web_stats_event(st, "task.started", &f.u.data); /* never seen submitted: no latency */
    fz_web_stats_missed(st, 3);
    char *t = s_capture(s_stats, st);
    assert_non_null(
        strstr(t, "fz_attempts_ended_total{outcome=\"exited\",class=\"task-failed\"} 1\n"));
    assert_non_null(
        strstr(t, "fz_attempts_ended_total{outcome=\"timeout\",class=\"timeout\"} 1\n"));
    assert_non_null(strstr(t, "fz_dispatch_latency_seconds_count 1\n"));
    assert_non_null(strstr(t, "fz_dispatch_latency_seconds_sum 2.5\n"));
    assert_non_null(strstr(t, "fz_dispatch_latency_seconds_bucket{le=\"1\"} 0\n"));
    assert_non_null(strstr(t, "fz_dispatch_latency_seconds_bucket{le=\"5\"} 1\n"));
    assert_non_null(strstr(t, "fz_web_events_total{topic=\"task.started\"} 3\n"));
    assert_non_null(strstr(t, "fz_web_events_missed_total 3\n"));
    free(t);
    s_ev_t *all[] = {&a, &b, &c, &d, &e, &f};
    for (size_t i = 0; i < 6; i++)
        s_event_free(all[i]);
    fz_web_stats_destroy(&st);
    assert_null(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_frame_one_line),
        cmocka_unit_test(test_sse_frame_splits_lines_and_cleans_fields),
        cmocka_unit_test(test_sse_parse_id),
        cmocka_unit_test(test_hub_order_and_filters),
        cmocka_unit_test(test_hub_resume_and_gaps),
        cmocka_unit_test(test_hub_bounded_in_bytes),
        cmocka_unit_test(test_hub_stop_wakes_readers),
        cmocka_unit_test(test_host_check),
        cmocka_unit_test(test_control_guard),
        cmocka_unit_test(test_token_equal),
        cmocka_unit_test(test_metric_lines),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_stats_from_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
