/*  rules_test: the broker's pure rules (broker/fz_rules.c), by value: deadline boost, aging,
    effective priority and its explanation, backoff with its jitter bounds, what the end of an
    attempt leads to, and the life cycle's table of moves. */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <string.h>

#include "fz_rules.h"

static void test_deadline_boost(void **state)
{
    (void)state;
    double h = 3600, now = 1e9;
    assert_true(fz_rules_deadline_boost(0, h, now) == 0);            /* none */
    assert_true(fz_rules_deadline_boost(now + 2 * h, h, now) == 0);  /* before the horizon */
    assert_true(fz_rules_deadline_boost(now + h, h, now) == 0);      /* at the horizon */
    assert_true(fz_rules_deadline_boost(now + h / 2, h, now) == 50); /* halfway */
    assert_true(fz_rules_deadline_boost(now + 0.0, h, now) == 100);  /* at the deadline */
    assert_true(fz_rules_deadline_boost(now - 600, h, now) == 110);  /* 10 minutes late */
    assert_true(fz_rules_deadline_boost(now - 1e6, h, now) == 1000); /* capped */
}

static void test_aging_and_effective(void **state)
{
    (void)state;
    assert_true(fz_rules_aging(0, 100, 200) == 0); /* off */
    assert_true(fz_rules_aging(10, 100, 150) == 5);
    assert_true(fz_rules_effective(3, INT64_MIN, 0, 0) == 3);
    assert_true(fz_rules_effective(3, 7, 0, 0) == 7); /* inherited is a floor */
    assert_true(fz_rules_effective(9, 7, 2.5, 1) == 12.5);
    char why[200];
    fz_rules_priority_why(3, 7, 12.5, 2, why, sizeof why);
    assert_string_equal(why, "base 3, inherited 7 from a dependent, deadline +12.5, aging +2.0");
    fz_rules_priority_why(5, INT64_MIN, 0, 0, why, sizeof why);
    assert_string_equal(why, "base 5");
    char tiny[8];
    fz_rules_priority_why(3, 7, 12.5, 2, tiny, sizeof tiny); /* cut, still terminated */
    assert_true(strlen(tiny) < sizeof tiny);
}

static void test_backoff(void **state)
{
    (void)state;
    /* Doubling from min, capped at max; jitter keeps it in the upper half. */
    assert_int_equal(fz_rules_backoff_ms(1000, 60000, 1, 0.0), 500);
    assert_int_equal(fz_rules_backoff_ms(1000, 60000, 1, 0.999999), 999);
    assert_int_equal(fz_rules_backoff_ms(1000, 60000, 2, 0.0), 1000);
    assert_int_equal(fz_rules_backoff_ms(1000, 60000, 3, 0.0), 2000);
    assert_int_equal(fz_rules_backoff_ms(1000, 60000, 7, 0.0), 30000); /* 64 s, capped */
    assert_int_equal(fz_rules_backoff_ms(1000, 60000, 4000000000u, 0.0), 30000);
    assert_int_equal(fz_rules_backoff_ms(1000, 60000, 0, 0.0), 500); /* nonsense in, sane out */
}

static fz_state_t s_after(fz_outcome_t o, int64_t code, bool cancel, uint32_t made, uint32_t r)
{
    fz_attempt_end_t end = {o, code, cancel, made, r};
    return fz_rules_after_attempt(&end);
}

static void test_after_attempt(void **state)
{
    (void)state;
    assert_int_equal(s_after(FZ_OUTCOME_EXITED, 0, false, 1, 0), FZ_STATE_SUCCEEDED);
    assert_int_equal(s_after(FZ_OUTCOME_EXITED, 0, true, 1, 0), FZ_STATE_SUCCEEDED);
    assert_int_equal(s_after(FZ_OUTCOME_EXITED, 1, true, 1, 5), FZ_STATE_CANCELLED);
    assert_int_equal(s_after(FZ_OUTCOME_CANCELLED, 0, false, 1, 5), FZ_STATE_CANCELLED);
    assert_int_equal(s_after(FZ_OUTCOME_REJECTED, 0, false, 9, 0), FZ_STATE_QUEUED);
    assert_int_equal(s_after(FZ_OUTCOME_INTERRUPTED, 0, false, 9, 0), FZ_STATE_QUEUED);
    assert_int_equal(s_after(FZ_OUTCOME_EXITED, FZ_EXIT_NO_RETRY, false, 1, 5), FZ_STATE_FAILED);
    assert_int_equal(s_after(FZ_OUTCOME_EXITED, 1, false, 1, 1), FZ_STATE_RETRYING);
    assert_int_equal(s_after(FZ_OUTCOME_EXITED, 1, false, 2, 1), FZ_STATE_FAILED);
    assert_int_equal(s_after(FZ_OUTCOME_TIMEOUT, 0, false, 1, 1), FZ_STATE_RETRYING);
    assert_int_equal(s_after(FZ_OUTCOME_COST_CAP, 0, false, 1, 0), FZ_STATE_FAILED);
    assert_int_equal(s_after((fz_outcome_t)-1, 0, false, 1, 0), FZ_STATE_FAILED);
}

static void test_move_table(void **state)
{
    (void)state;
    assert_true(fz_rules_move_allowed(FZ_STATE_QUEUED, FZ_STATE_RUNNING));
    assert_true(fz_rules_move_allowed(FZ_STATE_QUEUED, FZ_STATE_HELD));
    assert_true(fz_rules_move_allowed(FZ_STATE_HELD, FZ_STATE_QUEUED));
    assert_true(fz_rules_move_allowed(FZ_STATE_WAITING, FZ_STATE_DEP_FAILED));
    assert_true(fz_rules_move_allowed(FZ_STATE_RUNNING, FZ_STATE_RETRYING));
    assert_true(fz_rules_move_allowed(FZ_STATE_RUNNING, FZ_STATE_QUEUED)); /* lost, rejected */
    assert_true(fz_rules_move_allowed(FZ_STATE_RETRYING, FZ_STATE_QUEUED));
    assert_true(fz_rules_move_allowed(FZ_STATE_FAILED, FZ_STATE_WAITING)); /* retry */
    assert_true(fz_rules_move_allowed(FZ_STATE_DEP_FAILED, FZ_STATE_QUEUED));
    assert_false(fz_rules_move_allowed(FZ_STATE_SUCCEEDED, FZ_STATE_QUEUED));
    assert_false(fz_rules_move_allowed(FZ_STATE_QUEUED, FZ_STATE_SUCCEEDED));
    assert_false(fz_rules_move_allowed(FZ_STATE_WAITING, FZ_STATE_RUNNING));
    assert_false(fz_rules_move_allowed(FZ_STATE_HELD, FZ_STATE_RUNNING));
    assert_false(fz_rules_move_allowed(FZ_STATE_RETRYING, FZ_STATE_RUNNING));
    assert_false(fz_rules_move_allowed(FZ_STATE_FAILED, FZ_STATE_FAILED));
    assert_false(fz_rules_move_allowed(FZ_STATE_COUNT, FZ_STATE_QUEUED));
    assert_false(fz_rules_move_allowed(FZ_STATE_QUEUED, (fz_state_t)-1));
    /* Every final state but succeeded can come back; no state moves to itself. */
    for (int s = 0; s < FZ_STATE_COUNT; s++)
        assert_false(fz_rules_move_allowed((fz_state_t)s, (fz_state_t)s));
}

static fz_policy_t s_policy(fz_class_t cls, int64_t code, uint32_t made, uint32_t retries,
                            bool fallback_left)
{
    fz_failure_t f = {.end = {FZ_OUTCOME_EXITED, code, false, made, retries},
                      .cls = cls,
                      .now = 1e9,
                      .fallback_left = fallback_left};
    return fz_rules_policy(&f);
}

static void test_policy_by_class(void **state)
{
    (void)state;
    fz_policy_t p = s_policy(FZ_CLASS_RATE_LIMIT, 1, 3, 0, false);
    assert_int_equal(p.next, FZ_STATE_HELD);
    assert_true(p.free && p.wait_s == FZ_QUOTA_WAIT_MIN_S);
    /* The provider's time wins: a reset two hours away waits two hours, once. */
    fz_failure_t f = {.end = {FZ_OUTCOME_EXITED, 1, false, 1, 2},
                      .cls = FZ_CLASS_QUOTA,
                      .reset_at = 1e9 + 7200,
                      .now = 1e9};
    p = fz_rules_policy(&f);
    assert_true(p.next == FZ_STATE_HELD && p.wait_s == 7200);
    f.reset_at = 1e9 - 5; /* past: the retry-after, then the backoff */
    f.retry_after = 9.5;
    assert_true(fz_rules_policy(&f).wait_s == 9.5);
    f.retry_after = 0;
    f.waits = 3;
    assert_true(fz_rules_policy(&f).wait_s == 480);
    f.waits = 40;
    assert_true(fz_rules_policy(&f).wait_s == FZ_QUOTA_WAIT_MAX_S);
    /* Classes decide over exit 75. */
    p = s_policy(FZ_CLASS_AUTH, 75, 1, 0, false);
    assert_true(p.next == FZ_STATE_QUEUED && p.free && p.unhealthy_model && !p.unhealthy_worker);
    p = s_policy(FZ_CLASS_AGENT_MISSING, 127, 1, 0, false);
    assert_true(p.next == FZ_STATE_QUEUED && p.free && p.unhealthy_worker);
    p = s_policy(FZ_CLASS_MODEL_UNAVAILABLE, 75, 1, 0, true);
    assert_true(p.next == FZ_STATE_RETRYING && p.at_once && !p.free);
    assert_int_equal(s_policy(FZ_CLASS_MODEL_UNAVAILABLE, 75, 1, 5, false).next, FZ_STATE_FAILED);
    assert_int_equal(s_policy(FZ_CLASS_CONTEXT_TOO_LONG, 1, 1, 5, true).next, FZ_STATE_FAILED);
    assert_int_equal(s_policy(FZ_CLASS_PERMISSION_DENIED, 1, 1, 5, true).next, FZ_STATE_FAILED);
    /* The rest follow the retries, and 75. */
    assert_int_equal(s_policy(FZ_CLASS_TASK_FAILED, 1, 1, 1, false).next, FZ_STATE_RETRYING);
    assert_int_equal(s_policy(FZ_CLASS_TIMEOUT, 1, 2, 1, false).next, FZ_STATE_FAILED);
    assert_int_equal(s_policy(FZ_CLASS_TASK_FAILED, 75, 1, 5, false).next, FZ_STATE_FAILED);
    /* What fails after the agent exited 0 is a failure: a check retries at once while
       retries remain; a workspace or a merge conflict fails at once. */
    p = s_policy(FZ_CLASS_CHECK_FAILED, 0, 1, 1, false);
    assert_true(p.next == FZ_STATE_RETRYING && p.at_once && !p.free);
    assert_int_equal(s_policy(FZ_CLASS_CHECK_FAILED, 0, 2, 1, false).next, FZ_STATE_FAILED);
    assert_int_equal(s_policy(FZ_CLASS_WORKSPACE, 0, 1, 5, false).next, FZ_STATE_FAILED);
    assert_int_equal(s_policy(FZ_CLASS_WORKSPACE, 1, 1, 5, false).next, FZ_STATE_FAILED);
    assert_int_equal(s_policy(FZ_CLASS_MERGE_CONFLICT, 0, 1, 5, false).next, FZ_STATE_FAILED);
    /* No class acts on a success, a cancel or a rejected dispatch. */
    assert_int_equal(s_policy(FZ_CLASS_AUTH, 0, 1, 0, false).next, FZ_STATE_SUCCEEDED);
    f = (fz_failure_t){.end = {FZ_OUTCOME_REJECTED, 0, false, 1, 0}, .cls = FZ_CLASS_QUOTA};
    assert_int_equal(fz_rules_policy(&f).next, FZ_STATE_QUEUED);
    assert_false(fz_rules_policy(&f).free);
}

static void test_bucket(void **state)
{
    (void)state;
    fz_bucket_t b = {0};
    /* Starts full: a burst of up to `burst` passes, then only what refills. */
    assert_true(fz_rules_bucket_take(&b, 1000, 100, 300, 200));
    assert_true(fz_rules_bucket_take(&b, 1000, 100, 300, 100));
    assert_false(fz_rules_bucket_take(&b, 1000, 100, 300, 1));
    assert_false(fz_rules_bucket_take(&b, 1500, 100, 300, 60)); /* 50 refilled */
    assert_true(fz_rules_bucket_take(&b, 1500, 100, 300, 50));
    assert_true(fz_rules_bucket_take(&b, 99000, 100, 300, 300)); /* capped at the burst */
    assert_false(fz_rules_bucket_take(&b, 99000, 100, 300, 1));
    assert_false(fz_rules_bucket_take(&b, 98000, 100, 300, 1)); /* a clock going back adds none */
}

/* A cost far beyond the attempt's cap is held to it; a believable one is charged whole. */
static void test_charge(void **state)
{
    (void)state;
    fz_charge_t c = fz_rules_charge(&(fz_charge_in_t){.reported = 1e6, .cap = 1});
    assert_true(c.suspect);
    assert_true(c.charged == 2.0);
    c = fz_rules_charge(&(fz_charge_in_t){.reported = 1.3, .cap = 1}); /* a killed overshoot */
    assert_false(c.suspect);
    assert_true(c.charged == 1.3);
    c = fz_rules_charge(&(fz_charge_in_t){.reported = 10, .cap = 1}); /* 10x: still believed */
    assert_false(c.suspect);
    assert_true(c.charged == 10);
    c = fz_rules_charge(&(fz_charge_in_t){.reported = 10.5, .cap = 1});
    assert_true(c.suspect);
    assert_true(c.charged == 2.0);
    /* No cap: only the absolute bound. */
    c = fz_rules_charge(&(fz_charge_in_t){.reported = 500, .cap = 0});
    assert_false(c.suspect);
    c = fz_rules_charge(&(fz_charge_in_t){.reported = 2e4, .cap = 0});
    assert_true(c.suspect);
    assert_true(c.charged == FZ_SUSPECT_COST);
    /* A token count that cannot be real makes even a small cost suspect (charged as is,
       within the bound). */
    c = fz_rules_charge(&(fz_charge_in_t){.reported = 0.5, .cap = 1, .tokens = {0, 0, 2e10, 0}});
    assert_true(c.suspect);
    assert_true(c.charged == 0.5);
}

/* Lost attempts: the first counts; later ones of the same worker are let off (a bounded
   number of times per task); the third quarantines it, longer each time. */
static void test_loss(void **state)
{
    (void)state;
    fz_loss_t v = fz_rules_loss(1, 0, 0);
    assert_false(v.exempt);
    assert_int_equal(v.quarantine_ms, 0);
    v = fz_rules_loss(2, 0, 0);
    assert_true(v.exempt);
    assert_int_equal(v.quarantine_ms, 0);
    v = fz_rules_loss(3, 0, 1);
    assert_true(v.exempt);
    assert_int_equal(v.quarantine_ms, FZ_QUARANTINE_MS);
    v = fz_rules_loss(3, 1, 1);
    assert_int_equal(v.quarantine_ms, 2 * FZ_QUARANTINE_MS);
    v = fz_rules_loss(5, 30, 1);
    assert_int_equal(v.quarantine_ms, FZ_QUARANTINE_MAX_MS);
    v = fz_rules_loss(3, 0, FZ_LOSS_EXEMPT_MAX);
    assert_false(v.exempt); /* the task's let-offs are spent: it counts */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_boost), cmocka_unit_test(test_aging_and_effective),
        cmocka_unit_test(test_backoff),        cmocka_unit_test(test_after_attempt),
        cmocka_unit_test(test_move_table),     cmocka_unit_test(test_policy_by_class),
        cmocka_unit_test(test_bucket),         cmocka_unit_test(test_charge),
        cmocka_unit_test(test_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
