/*  fz_rules: the broker's rules as pure functions, numbers in and numbers out.

    Effective priority (deadline boost, aging, inheritance), retry backoff, what the end of an
    attempt leads to, and which state moves are allowed. No I/O, no clock, no broker: the
    broker passes times and random numbers in, so each rule is tested by value
    (tests/unit/rules_test.c). */

#ifndef FZ_RULES_H
#define FZ_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_vocab.h"

/* Exit status with which an agent says "do not retry me". */
#define FZ_EXIT_NO_RETRY 75

/* How much a deadline adds at `now`: nothing without one (deadline <= 0) or before the
   horizon, then rising to +100 at the deadline, then +1 per minute late, at most +1000 (so
   `escalate`, which can reach the top base priority, still wins). */
double fz_rules_deadline_boost(double deadline, double horizon, double now);

/* Aging: +1 per aging_s seconds since queued_at (0 when aging is off). */
double fz_rules_aging(double aging_s, double queued_at, double now);

/* Effective priority: the higher of base and inherited, plus the boosts. */
double fz_rules_effective(int64_t priority, int64_t inherited, double boost, double aging);

/* "base 3, inherited 7 from a dependent, deadline +12.5, aging +2.0" into out. */
void fz_rules_priority_why(int64_t priority, int64_t inherited, double boost, double aging,
                           char *out, size_t size);

/* Backoff before the retry that follows `failures` failed attempts (1 = the first): doubling
   from min_ms, at most max_ms, with jitter in the upper half (random01 in [0, 1)). */
uint32_t fz_rules_backoff_ms(uint32_t min_ms, uint32_t max_ms, uint32_t failures, double random01);

/* What the end of an attempt leads to. made = attempts made since the last manual retry
   (this one included); retries = further attempts allowed after a failure. */
typedef struct {
    fz_outcome_t outcome; /* -1 (unknown name) counts as a failure */
    int64_t exit_code;
    bool cancel_requested;
    uint32_t made, retries;
} fz_attempt_end_t;

/* succeeded, cancelled, queued (not the task's fault: rejected, interrupted; no retry
   used), failed (retries spent, or the agent asked not to be retried) or retrying. */
fz_state_t fz_rules_after_attempt(const fz_attempt_end_t *end);

/* True if a live or ended task may move from `from` to `to` (the life cycle's table). */
bool fz_rules_move_allowed(fz_state_t from, fz_state_t to);

#endif
