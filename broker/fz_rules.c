/*  fz_rules: the broker's pure rules; see fz_rules.h. */

#include "fz_rules.h"

#include "fz_classify.h"

#include <math.h>
#include <stdio.h>

double fz_rules_deadline_boost(double deadline, double horizon, double now)
{
    if (deadline <= 0)
        return 0;
    double left = deadline - now;
    if (left >= horizon)
        return 0;
    if (left > 0)
        return 100.0 * (1.0 - left / horizon);
    double late = 100.0 - left / 60.0;
    return late < 1000.0 ? late : 1000.0;
}

double fz_rules_aging(double aging_s, double queued_at, double now)
{
    return aging_s > 0 ? (now - queued_at) / aging_s : 0;
}

double fz_rules_effective(int64_t priority, int64_t inherited, double boost, double aging)
{
    int64_t base = priority > inherited ? priority : inherited;
    return (double)base + boost + aging;
}

void fz_rules_priority_why(int64_t priority, int64_t inherited, double boost, double aging,
                           char *out, size_t size)
{
    int n = snprintf(out, size, "base %lld", (long long)priority);
    if (inherited > priority && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, ", inherited %lld from a dependent",
                      (long long)inherited);
    if (boost > 0 && n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, ", deadline +%.1f", boost);
    if (aging > 0 && n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, ", aging +%.1f", aging);
}

uint32_t fz_rules_backoff_ms(uint32_t min_ms, uint32_t max_ms, uint32_t failures, double random01)
{
    double exp = failures == 0 ? 0 : failures > 31 ? 30 : (double)failures - 1;
    double d = min_ms * pow(2.0, exp);
    if (d > max_ms)
        d = max_ms;
    /* Full jitter in the upper half: retries of many tasks spread out, none comes too soon. */
    return (uint32_t)(d * (0.5 + 0.5 * random01));
}

fz_state_t fz_rules_after_attempt(const fz_attempt_end_t *end)
{
    if (end->outcome == FZ_OUTCOME_EXITED && end->exit_code == 0)
        return FZ_STATE_SUCCEEDED;
    if (end->cancel_requested || end->outcome == FZ_OUTCOME_CANCELLED)
        return FZ_STATE_CANCELLED;
    /* The worker could not or would not run it (busy, being stopped): not the task's fault. */
    if (end->outcome == FZ_OUTCOME_REJECTED || end->outcome == FZ_OUTCOME_INTERRUPTED)
        return FZ_STATE_QUEUED;
    if (end->outcome == FZ_OUTCOME_EXITED && end->exit_code == FZ_EXIT_NO_RETRY)
        return FZ_STATE_FAILED;
    return end->made <= end->retries ? FZ_STATE_RETRYING : FZ_STATE_FAILED;
}

static double s_quota_wait(const fz_failure_t *f)
{
    if (f->reset_at > f->now)
        return f->reset_at - f->now;
    if (f->retry_after > 0)
        return f->retry_after;
    double w = FZ_QUOTA_WAIT_MIN_S * pow(2.0, f->waits > 10 ? 10 : f->waits);
    return w < FZ_QUOTA_WAIT_MAX_S ? w : FZ_QUOTA_WAIT_MAX_S;
}

fz_policy_t fz_rules_policy(const fz_failure_t *f)
{
    fz_policy_t p = {.next = fz_rules_after_attempt(&f->end)};
    /* The agent exited 0 but what it left failed after it: a failure like any other. */
    if (p.next == FZ_STATE_SUCCEEDED && fz_class_after_agent(f->cls))
        p.next = f->end.made <= f->end.retries ? FZ_STATE_RETRYING : FZ_STATE_FAILED;
    /* Success, cancel and not-the-task's-fault ends have no class to act on. */
    if (p.next == FZ_STATE_SUCCEEDED || p.next == FZ_STATE_CANCELLED || p.next == FZ_STATE_QUEUED)
        return p;
    switch (f->cls) {
    case FZ_CLASS_RATE_LIMIT:
    case FZ_CLASS_QUOTA:
        p.next = FZ_STATE_HELD;
        p.free = true;
        p.wait_s = s_quota_wait(f);
        break;
    case FZ_CLASS_AUTH:
        p.next = FZ_STATE_QUEUED;
        p.free = p.unhealthy_model = true;
        break;
    case FZ_CLASS_AGENT_MISSING:
        p.next = FZ_STATE_QUEUED;
        p.free = p.unhealthy_worker = true;
        break;
    case FZ_CLASS_MODEL_UNAVAILABLE:
        p.next = f->fallback_left ? FZ_STATE_RETRYING : FZ_STATE_FAILED;
        p.at_once = f->fallback_left;
        break;
    case FZ_CLASS_CONTEXT_TOO_LONG:
    case FZ_CLASS_PERMISSION_DENIED:
    case FZ_CLASS_WORKSPACE:      /* the same repository and bases fail the same way */
    case FZ_CLASS_MERGE_CONFLICT: /* the bases do not change by trying again */
        p.next = FZ_STATE_FAILED;
        break;
    case FZ_CLASS_CHECK_FAILED:
        /* The next attempt is given the check's output: no reason to wait. */
        p.at_once = true;
        break;
    default:
        break;
    }
    return p;
}

bool fz_rules_bucket_take(fz_bucket_t *b, int64_t now_ms, double rate, double burst, size_t n)
{
    if (b->last_ms == 0)
        b->tokens = burst;
    else if (now_ms > b->last_ms)
        b->tokens += rate * (double)(now_ms - b->last_ms) / 1000.0;
    if (b->tokens > burst)
        b->tokens = burst;
    b->last_ms = now_ms;
    if ((double)n > b->tokens)
        return false;
    b->tokens -= (double)n;
    return true;
}

/* [from][to]: the moves the life cycle makes. Ended tasks come back only through retry
   (queued or waiting again); a succeeded one never. */
#define Q (1u << FZ_STATE_QUEUED)
#define W (1u << FZ_STATE_WAITING)
#define H (1u << FZ_STATE_HELD)
#define R (1u << FZ_STATE_RUNNING)
#define T (1u << FZ_STATE_RETRYING)
#define S (1u << FZ_STATE_SUCCEEDED)
#define F (1u << FZ_STATE_FAILED)
#define C (1u << FZ_STATE_CANCELLED)
#define D (1u << FZ_STATE_DEP_FAILED)
static const unsigned s_moves[FZ_STATE_COUNT] = {
    [FZ_STATE_QUEUED] = H | R | C,
    [FZ_STATE_WAITING] = Q | D | C,
    [FZ_STATE_HELD] = Q | C,
    [FZ_STATE_RUNNING] = Q | H | T | S | F | C, /* held: waiting for a quota to reset */
    [FZ_STATE_RETRYING] = Q | C,
    [FZ_STATE_SUCCEEDED] = 0,
    [FZ_STATE_FAILED] = Q | W,
    [FZ_STATE_CANCELLED] = Q | W,
    [FZ_STATE_DEP_FAILED] = Q | W,
};

bool fz_rules_move_allowed(fz_state_t from, fz_state_t to)
{
    if ((unsigned)from >= FZ_STATE_COUNT || (unsigned)to >= FZ_STATE_COUNT)
        return false;
    return (s_moves[from] >> to) & 1u;
}

fz_charge_t fz_rules_charge(const fz_charge_in_t *in)
{
    double cap = in->cap > 0 ? in->cap : 0;
    bool suspect =
        in->reported > FZ_SUSPECT_COST || (cap > 0 && in->reported > FZ_SUSPECT_FACTOR * cap);
    for (int i = 0; i < 4; i++)
        suspect = suspect || (double)in->tokens[i] > FZ_SUSPECT_TOKENS;
    double bound = cap > 0 ? FZ_SUSPECT_CHARGE * cap : FZ_SUSPECT_COST;
    return (fz_charge_t){suspect, suspect && in->reported > bound ? bound : in->reported};
}

fz_loss_t fz_rules_loss(uint32_t recent, uint32_t quarantines, uint32_t exempted)
{
    fz_loss_t v = {recent >= 2 && exempted < FZ_LOSS_EXEMPT_MAX, 0};
    if (recent >= FZ_LOSS_QUARANTINE) {
        int64_t ms = FZ_QUARANTINE_MS;
        for (uint32_t i = 0; i < quarantines && ms < FZ_QUARANTINE_MAX_MS; i++)
            ms *= 2;
        v.quarantine_ms = ms < FZ_QUARANTINE_MAX_MS ? ms : FZ_QUARANTINE_MAX_MS;
    }
    return v;
}
