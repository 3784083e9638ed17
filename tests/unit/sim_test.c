/*  sim_test: the simulated agent's arithmetic (fz_sim_at, fz_sim_end_at), pure: no clock,
    no agent. The driver is tested through fz_agent_simulate in agent_test. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../worker/fz_sim.h"

static void test_linear_growth(void **state)
{
    (void)state;
    fz_sim_plan_t plan = {
        .duration_ms = 1000, .cost_usd = 2.0, .tokens_in = 1000, .tokens_out = 300};
    fz_sim_point_t p = fz_sim_at(&plan, 0);
    assert_true(p.cost_usd == 0);
    assert_int_equal(p.tokens_in, 0);
    assert_int_equal(p.progress_pct, 0);
    p = fz_sim_at(&plan, 250);
    assert_true(p.cost_usd == 0.5);
    assert_int_equal(p.tokens_in, 250);
    assert_int_equal(p.tokens_out, 75);
    assert_int_equal(p.progress_pct, 25);
    p = fz_sim_at(&plan, 999);
    assert_int_equal(p.tokens_in, 999);
    assert_int_equal(p.progress_pct, 99);
    p = fz_sim_at(&plan, 1000); /* from the duration on: the totals */
    assert_true(p.cost_usd == 2.0);
    assert_int_equal(p.tokens_out, 300);
    assert_int_equal(p.progress_pct, 100);
    p = fz_sim_at(&plan, 5000);
    assert_int_equal(p.tokens_in, 1000);
    assert_int_equal(p.progress_pct, 100);
    /* no duration: everything at once */
    fz_sim_plan_t instant = {.duration_ms = 0, .cost_usd = 1.0, .tokens_in = 10, .tokens_out = 20};
    p = fz_sim_at(&instant, 0);
    assert_true(p.cost_usd == 1.0);
    assert_int_equal(p.tokens_out, 20);
    assert_int_equal(p.progress_pct, 100);
}

static void test_end_by_itself(void **state)
{
    (void)state;
    fz_agent_outcome_t how = FZ_AGENT_RUNNING;
    fz_sim_plan_t plan = {.duration_ms = 1500, .cost_usd = 1.0};
    assert_int_equal(fz_sim_end_at(&plan, &how), 1500);
    assert_int_equal(how, FZ_AGENT_EXITED);
    plan.timeout_ms = 2000; /* later than the exit: no effect */
    plan.max_cost = 1.0;    /* never strictly above */
    assert_int_equal(fz_sim_end_at(&plan, &how), 1500);
    assert_int_equal(how, FZ_AGENT_EXITED);
    plan.timeout_ms = 1500; /* a tie goes to the exit */
    assert_int_equal(fz_sim_end_at(&plan, &how), 1500);
    assert_int_equal(how, FZ_AGENT_EXITED);
}

static void test_end_by_timeout(void **state)
{
    (void)state;
    fz_agent_outcome_t how;
    fz_sim_plan_t plan = {.duration_ms = 10000, .cost_usd = 1.0, .timeout_ms = 3000};
    assert_int_equal(fz_sim_end_at(&plan, &how), 3000);
    assert_int_equal(how, FZ_AGENT_TIMEOUT);
}

static void test_end_by_cost_cap(void **state)
{
    (void)state;
    fz_agent_outcome_t how;
    /* 4 USD over 1000 ms, cap 1 USD: 1 USD exactly at 250 ms, strictly above from 251 */
    fz_sim_plan_t plan = {.duration_ms = 1000, .cost_usd = 4.0, .max_cost = 1.0};
    assert_int_equal(fz_sim_end_at(&plan, &how), 251);
    assert_int_equal(how, FZ_AGENT_COST_CAP);
    assert_true(fz_sim_at(&plan, 251).cost_usd > 1.0);
    assert_true(fz_sim_at(&plan, 250).cost_usd <= 1.0);
    /* a timeout before the crossing wins */
    plan.timeout_ms = 200;
    assert_int_equal(fz_sim_end_at(&plan, &how), 200);
    assert_int_equal(how, FZ_AGENT_TIMEOUT);
    /* the crossing and the timeout at the same ms: the timeout (checked first) */
    plan.timeout_ms = 251;
    assert_int_equal(fz_sim_end_at(&plan, &how), 251);
    assert_int_equal(how, FZ_AGENT_TIMEOUT);
    /* no duration: the cost is all there at once, and the run simply exits */
    fz_sim_plan_t instant = {.duration_ms = 0, .cost_usd = 4.0, .max_cost = 1.0};
    assert_int_equal(fz_sim_end_at(&instant, &how), 0);
    assert_int_equal(how, FZ_AGENT_EXITED);
}

/* Silent from silent_ms on: the values freeze and the last sign of life stays there. */
static void test_silent_freezes(void **state)
{
    (void)state;
    fz_sim_plan_t plan = {.duration_ms = 1000,
                          .cost_usd = 1.0,
                          .tokens_in = 1000,
                          .tokens_cache_read = 4000,
                          .tokens_cache_write = 200,
                          .silent_ms = 400};
    fz_sim_point_t p = fz_sim_at(&plan, 200);
    assert_int_equal(p.tokens_cache_read, 800);
    assert_int_equal(p.tokens_cache_write, 40);
    assert_int_equal(p.alive_t, 200);
    p = fz_sim_at(&plan, 900);
    assert_true(p.cost_usd == 0.4);
    assert_int_equal(p.tokens_in, 400);
    assert_int_equal(p.tokens_cache_read, 1600);
    assert_int_equal(p.progress_pct, 40);
    assert_int_equal(p.alive_t, 400);
    /* never silent: alive at every moment */
    plan.silent_ms = 0;
    p = fz_sim_at(&plan, 900);
    assert_int_equal(p.alive_t, 900);
    assert_int_equal(p.tokens_cache_read, 3600);
}

static void test_end_by_stall(void **state)
{
    (void)state;
    fz_agent_outcome_t how;
    fz_sim_plan_t plan = {.duration_ms = 10000, .silent_ms = 1000, .stall_kill_ms = 2000};
    assert_int_equal(fz_sim_end_at(&plan, &how), 3000);
    assert_int_equal(how, FZ_AGENT_STALLED);
    /* silent without a stall limit, or a stall limit without silence: it exits */
    plan.stall_kill_ms = 0;
    assert_int_equal(fz_sim_end_at(&plan, &how), 10000);
    assert_int_equal(how, FZ_AGENT_EXITED);
    plan.stall_kill_ms = 2000;
    plan.silent_ms = 0;
    assert_int_equal(fz_sim_end_at(&plan, &how), 10000);
    assert_int_equal(how, FZ_AGENT_EXITED);
    /* ties: the exit, then the timeout win over the stall */
    plan.silent_ms = 8000;
    assert_int_equal(fz_sim_end_at(&plan, &how), 10000);
    assert_int_equal(how, FZ_AGENT_EXITED);
    plan.silent_ms = 1000;
    plan.timeout_ms = 3000;
    assert_int_equal(fz_sim_end_at(&plan, &how), 3000);
    assert_int_equal(how, FZ_AGENT_TIMEOUT);
    plan.timeout_ms = 3001;
    assert_int_equal(fz_sim_end_at(&plan, &how), 3000);
    assert_int_equal(how, FZ_AGENT_STALLED);
    /* the cost freezes with the rest: a cap it would have crossed later is never reached */
    fz_sim_plan_t capped = {.duration_ms = 1000, .cost_usd = 4.0, .max_cost = 1.0};
    capped.silent_ms = 250; /* 1 USD exactly: not above */
    assert_int_equal(fz_sim_end_at(&capped, &how), 1000);
    assert_int_equal(how, FZ_AGENT_EXITED);
    capped.silent_ms = 251;
    assert_int_equal(fz_sim_end_at(&capped, &how), 251);
    assert_int_equal(how, FZ_AGENT_COST_CAP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_growth),  cmocka_unit_test(test_end_by_itself),
        cmocka_unit_test(test_end_by_timeout), cmocka_unit_test(test_end_by_cost_cap),
        cmocka_unit_test(test_silent_freezes), cmocka_unit_test(test_end_by_stall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
