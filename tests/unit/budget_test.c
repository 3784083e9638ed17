/*  budget_test: the daily spending ledger (broker/fz_budget.c).

    The promises of fz_budget.h: the day runs 00:00 to 24:00 UTC; a rollover happens only
    when the day moves forward and resets spent (not reserved); left = cap - spent - reserved
    and may go negative; a reservation that fits exactly fits, despite float sums of cents;
    settle and release move reservations into spend. Times are fixed Unix times, never the
    clock, so the tests mean the same on every day. */

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
#include <time.h>

#include "fz_budget.h"

/* Unix times of some 00:00 UTC (checked with Python's calendar.timegm). */
#define DAY 86400.0
#define T_2023_12_31 1703980800.0
#define T_2024_01_01 1704067200.0
#define T_2024_02_29 1709164800.0
#define T_2024_03_01 1709251200.0
#define T_2024_03_10 1710028800.0

/* Doubles that must be equal to the last bit (sums of exactly representable values). */
#define assert_double_exact(a, b) assert_true((a) == (b))
/* Doubles that carry float noise. */
#define assert_near(a, b) assert_float_equal((a), (b), 1e-12)

static void test_day_start_around_midnight(void **state)
{
    (void)state;
    assert_double_exact(fz_budget_day_start(0), 0);
    assert_double_exact(fz_budget_day_start(1), 0);
    assert_double_exact(fz_budget_day_start(DAY - 0.001), 0);
    assert_double_exact(fz_budget_day_start(DAY), DAY);
    assert_double_exact(fz_budget_day_start(DAY + 0.5), DAY);

    /* Around a real midnight: one millisecond before belongs to the day before. */
    assert_double_exact(fz_budget_day_start(T_2024_03_10), T_2024_03_10);
    assert_double_exact(fz_budget_day_start(T_2024_03_10 - 0.001), T_2024_03_10 - DAY);
    assert_double_exact(fz_budget_day_start(T_2024_03_10 + 0.001), T_2024_03_10);
    assert_double_exact(fz_budget_day_start(T_2024_03_10 + DAY - 0.001), T_2024_03_10);
    assert_double_exact(fz_budget_day_start(T_2024_03_10 + 12 * 3600), T_2024_03_10);
    /* Year and leap-day boundaries. */
    assert_double_exact(fz_budget_day_start(T_2024_01_01 - 1), T_2023_12_31);
    assert_double_exact(fz_budget_day_start(T_2024_03_01 - 1), T_2024_02_29);
    assert_double_exact(fz_budget_day_start(T_2024_03_01), T_2024_03_01);
}

static void test_init(void **state)
{
    (void)state;
    fz_budget_t b;
    memset(&b, 0xff, sizeof b); /* init must set every field */
    fz_budget_init(&b, 20, 3.5, T_2024_03_10 + 3600);
    assert_double_exact(b.cap, 20);
    assert_double_exact(b.spent, 3.5);
    assert_double_exact(b.reserved, 0);
    assert_double_exact(b.day_start, T_2024_03_10);
    assert_double_exact(fz_budget_left(&b), 16.5);
}

static void test_rollover_forward_only(void **state)
{
    (void)state;
    fz_budget_t b;
    fz_budget_init(&b, 10, 4, T_2024_03_10 + 100);
    fz_budget_reserve(&b, 2);

    /* Later the same day: nothing changes. */
    assert_false(fz_budget_rollover(&b, T_2024_03_10 + DAY - 0.001));
    assert_double_exact(b.spent, 4);
    assert_double_exact(b.day_start, T_2024_03_10);

    /* The clock stepped back into yesterday: not a new day, spent kept. */
    assert_false(fz_budget_rollover(&b, T_2024_03_10 - 1));
    assert_double_exact(b.spent, 4);
    assert_double_exact(b.day_start, T_2024_03_10);
    assert_false(fz_budget_rollover(&b, T_2024_03_10 - 30 * DAY));
    assert_double_exact(b.spent, 4);
    assert_double_exact(b.day_start, T_2024_03_10);

    /* Midnight: a new day. spent resets; reservations of running attempts stay. */
    assert_true(fz_budget_rollover(&b, T_2024_03_10 + DAY));
    assert_double_exact(b.spent, 0);
    assert_double_exact(b.reserved, 2);
    assert_double_exact(b.day_start, T_2024_03_10 + DAY);
    assert_double_exact(fz_budget_left(&b), 8);

    /* Only once per day. */
    fz_budget_settle(&b, 2, 1.25);
    assert_false(fz_budget_rollover(&b, T_2024_03_10 + DAY + 5));
    assert_double_exact(b.spent, 1.25);

    /* Skipping several days is one rollover to the day of now. */
    assert_true(fz_budget_rollover(&b, T_2024_03_10 + 5 * DAY + 7));
    assert_double_exact(b.spent, 0);
    assert_double_exact(b.day_start, T_2024_03_10 + 5 * DAY);

    /* And back in time after that: still no change. */
    assert_false(fz_budget_rollover(&b, T_2024_03_10 + DAY + 5));
    assert_double_exact(b.day_start, T_2024_03_10 + 5 * DAY);
}

static void test_fits_and_left(void **state)
{
    (void)state;
    fz_budget_t b;
    fz_budget_init(&b, 10, 3, T_2024_03_10);
    fz_budget_reserve(&b, 2);
    assert_double_exact(b.reserved, 2);
    assert_double_exact(fz_budget_left(&b), 5);
    assert_true(fz_budget_fits(&b, 0));
    assert_true(fz_budget_fits(&b, 4.99));
    assert_true(fz_budget_fits(&b, 5));         /* exact fit */
    assert_true(fz_budget_fits(&b, 5 + 1e-10)); /* within the epsilon (1e-9) */
    assert_false(fz_budget_fits(&b, 5 + 1e-8)); /* beyond it */
    assert_false(fz_budget_fits(&b, 5.01));

    /* A zero cap fits only zero. */
    fz_budget_init(&b, 0, 0, T_2024_03_10);
    assert_true(fz_budget_fits(&b, 0));
    assert_false(fz_budget_fits(&b, 0.01));
}

static void test_exact_fit_with_float_sums(void **state)
{
    (void)state;
    fz_budget_t b;
    fz_budget_init(&b, 0.7, 0, T_2024_03_10);
    for (int i = 0; i < 3; i++)
        fz_budget_reserve(&b, 0.1);
    /* 0.1 * 3 in floats is 0.30000000000000004: left is a hair under 0.4. */
    assert_true(fz_budget_left(&b) < 0.4);
    assert_near(fz_budget_left(&b), 0.4);
    assert_true(fz_budget_fits(&b, 0.4)); /* still fits: the epsilon */
    fz_budget_reserve(&b, 0.4);
    assert_false(fz_budget_fits(&b, 0.01));

    /* Spent made of cents: 0.1 + 0.2 > 0.3 in floats; a cap of 0.3 still fits 0. */
    fz_budget_init(&b, 0.3, 0, T_2024_03_10);
    fz_budget_settle(&b, 0, 0.1);
    fz_budget_settle(&b, 0, 0.2);
    assert_true(fz_budget_left(&b) < 0);
    assert_true(fz_budget_fits(&b, 0));
    assert_false(fz_budget_fits(&b, 0.001));
}

static void test_reserve_settle_release(void **state)
{
    (void)state;
    fz_budget_t b;
    fz_budget_init(&b, 10, 0, T_2024_03_10);
    fz_budget_reserve(&b, 2);
    fz_budget_reserve(&b, 3);
    assert_double_exact(b.reserved, 5);
    assert_double_exact(fz_budget_left(&b), 5);

    /* Settle: the reservation goes, the actual cost is booked. */
    fz_budget_settle(&b, 2, 1.5);
    assert_double_exact(b.reserved, 3);
    assert_double_exact(b.spent, 1.5);
    assert_double_exact(fz_budget_left(&b), 5.5);

    /* Release: the reservation goes, nothing is booked. */
    fz_budget_release(&b, 3);
    assert_double_exact(b.reserved, 0);
    assert_double_exact(b.spent, 1.5);
    assert_double_exact(fz_budget_left(&b), 8.5);

    /* Float residue of released reservations is cleared to an exact 0. */
    for (int i = 0; i < 3; i++)
        fz_budget_reserve(&b, 0.1);
    fz_budget_release(&b, 0.1);
    fz_budget_release(&b, 0.1);
    fz_budget_settle(&b, 0.1, 0.05);
    assert_double_exact(b.reserved, 0);
    assert_near(b.spent, 1.55);

    /* Releasing more than is reserved never leaves a negative reservation. */
    fz_budget_reserve(&b, 1);
    fz_budget_release(&b, 4);
    assert_double_exact(b.reserved, 0);
    assert_near(fz_budget_left(&b), 8.45);

    /* A settle with a cost of 0 is a release. */
    fz_budget_reserve(&b, 2);
    fz_budget_settle(&b, 2, 0);
    assert_double_exact(b.reserved, 0);
    assert_near(b.spent, 1.55);
}

static void test_left_negative_after_overshoot(void **state)
{
    (void)state;
    fz_budget_t b;
    fz_budget_init(&b, 5, 0, T_2024_03_10);
    fz_budget_reserve(&b, 2);
    fz_budget_reserve(&b, 1);
    /* The agent reported more than its cap before it was stopped. */
    fz_budget_settle(&b, 2, 7);
    assert_double_exact(b.spent, 7);
    assert_double_exact(b.reserved, 1);
    assert_double_exact(fz_budget_left(&b), -3);
    assert_false(fz_budget_fits(&b, 0)); /* not even a free task: nothing is left */
    assert_false(fz_budget_fits(&b, 0.5));

    /* Init with more already spent than the cap (the cap was lowered). */
    fz_budget_init(&b, 2, 3, T_2024_03_10);
    assert_double_exact(fz_budget_left(&b), -1);
    /* The next day starts afresh. */
    assert_true(fz_budget_rollover(&b, T_2024_03_10 + DAY));
    assert_double_exact(fz_budget_left(&b), 2);
    assert_true(fz_budget_fits(&b, 2));
}

static void test_day_name(void **state)
{
    (void)state;
    /* The name is of the UTC day whatever the local zone: run it 10 hours west of UTC, where
       00:00 UTC is still the day before. */
    const char *tz = getenv("TZ");
    char saved[64] = "";
    if (tz)
        snprintf(saved, sizeof saved, "%s", tz);
    setenv("TZ", "XYZ+10", 1);
    tzset();
    static const struct {
        double now;
        const char *name;
    } cases[] = {
        {0, "1970-01-01"},
        {DAY - 0.001, "1970-01-01"},
        {T_2024_03_10, "2024-03-10"},
        {T_2024_03_10 - 0.001, "2024-03-09"},
        {T_2024_03_10 + DAY - 1, "2024-03-10"},
        {T_2024_01_01 - 1, "2023-12-31"},
        {T_2024_01_01, "2024-01-01"},
        {T_2024_02_29 + 43200, "2024-02-29"},
        {T_2024_03_01, "2024-03-01"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fz_budget_t b;
        fz_budget_init(&b, 1, 0, cases[i].now);
        char out[11];
        memset(out, 'x', sizeof out);
        fz_budget_day_name(&b, out);
        assert_string_equal(out, cases[i].name);
    }
    /* The name follows a rollover. */
    fz_budget_t b;
    fz_budget_init(&b, 1, 0, T_2024_02_29 + 10);
    fz_budget_rollover(&b, T_2024_03_01 + 10);
    char out[11];
    fz_budget_day_name(&b, out);
    if (tz)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    assert_string_equal(out, "2024-03-01");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_day_start_around_midnight),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_rollover_forward_only),
        cmocka_unit_test(test_fits_and_left),
        cmocka_unit_test(test_exact_fit_with_float_sums),
        cmocka_unit_test(test_reserve_settle_release),
        cmocka_unit_test(test_left_negative_after_overshoot),
        cmocka_unit_test(test_day_name),
    };
    return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
