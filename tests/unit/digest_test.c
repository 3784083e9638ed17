/*  digest_test: fz-ctl digest's --since: durations, UTC dates and times, times of day,
    @UNIX, and what is refused. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "fz_digest.h"

/* 2026-12-01T21:30:00Z */
#define NOW 1796160600.0

static double s_since(const char *arg)
{
    char err[256];
    double v = -1;
    assert_true(fz_digest_parse_since(arg, NOW, &v, err, sizeof err));
    return v;
}

static void s_refused(const char *arg, const char *why)
{
    char err[256] = "";
    double v = -1;
    assert_false(fz_digest_parse_since(arg, NOW, &v, err, sizeof err));
    assert_non_null(strstr(err, why));
    assert_true(v == -1); /* untouched */
}

static void test_durations(void **state)
{
    (void)state;
    assert_true(s_since("1h") == NOW - 3600);
    assert_true(s_since("30m") == NOW - 1800);
    assert_true(s_since("90s") == NOW - 90);
    assert_true(s_since("2d") == NOW - 2 * 86400);
    assert_true(s_since("1w") == NOW - 7 * 86400);
    assert_true(s_since("1h30m") == NOW - 5400);
    assert_true(s_since("0s") == NOW);
    assert_true(s_since("1.5h") == NOW - 5400);
}

static void test_times(void **state)
{
    (void)state;
    assert_true(s_since("2026-12-01") == 1796083200.0);
    assert_true(s_since("2026-12-01T08:00") == 1796083200.0 + 8 * 3600);
    assert_true(s_since("2026-12-01T08:00Z") == 1796083200.0 + 8 * 3600);
    assert_true(s_since("2026-12-01 08:00:30") == 1796083200.0 + 8 * 3600 + 30);
    assert_true(s_since("@1796000000") == 1796000000.0);
    /* a time of day: today's, or yesterday's when today's is still to come */
    assert_true(s_since("08:00") == 1796083200.0 + 8 * 3600);
    assert_true(s_since("22:00") == 1796083200.0 - 86400 + 22 * 3600);
}

static void test_refused(void **state)
{
    (void)state;
    s_refused("", "needs a value");
    s_refused("2x", "is not a duration");
    s_refused("h", "is not a duration");
    s_refused("1h-", "is not a duration");
    s_refused("-1h", "is not a duration");
    s_refused("2026-02-30", "is not a duration");
    s_refused("2026-13-01", "is not a duration");
    s_refused("2026-12-01T25:00", "is not a duration");
    s_refused("2026-12-01X", "is not a duration");
    s_refused("25:00", "is not a duration");
    s_refused("@", "is not a duration");
    s_refused("@12x", "is not a duration");
    s_refused("2027-01-01", "in the future");
    s_refused("@1896160600", "in the future");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
