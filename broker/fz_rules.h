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

/* What the broker does after a failed attempt, by its failure class (PROTOCOL.md §7). */
typedef struct {
    fz_attempt_end_t end;
    fz_class_t cls;     /* the attempt's failure class */
    double reset_at;    /* rate-limit, quota: when the limit resets (unix time), 0 unknown */
    double retry_after; /* rate-limit: seconds the provider asked for, 0 unknown */
    double now;         /* unix time */
    uint32_t waits;     /* rate-limit waits this task already made (the backoff grows) */
    bool fallback_left; /* a next model in the fallback chain differs from this one */
} fz_failure_t;

typedef struct {
    fz_state_t next;
    bool free;             /* the attempt uses no retry (and the model chain does not move) */
    double wait_s;         /* held for a quota this long; the model waits as long */
    bool unhealthy_model;  /* the worker gets no more tasks of this model (auth) */
    bool unhealthy_worker; /* the worker gets no more tasks at all (agent missing) */
    bool at_once;          /* retry without a backoff (the next fallback model) */
} fz_policy_t;

/* Longest wait for a quota when the provider named no time, and the first one. */
#define FZ_QUOTA_WAIT_MIN_S 60.0
#define FZ_QUOTA_WAIT_MAX_S 1800.0

/* The policy: rate-limit and quota wait (held) until the reset, the provider's retry-after,
   or a backoff from 1 to 30 minutes, using no retry; auth and agent-missing send the task
   back to the queue for another worker and mark this one unhealthy; model-unavailable moves
   to the next fallback model at once (failed when none is left); context-too-long,
   permission-denied, workspace and merge-conflict fail at once; check-failed retries at once
   (the next attempt is given the check's output), and fails an attempt whose agent exited 0,
   as workspace and merge-conflict do; the rest follow fz_rules_after_attempt. Classes decide
   over exit 75, which stays the rule for the rest. */
fz_policy_t fz_rules_policy(const fz_failure_t *f);

/* A token bucket: may n bytes pass at now_ms? It refills at rate bytes/s up to burst, starts
   full (*last_ms == 0) and takes n when they pass. */
typedef struct {
    double tokens;
    int64_t last_ms;
} fz_bucket_t;
bool fz_rules_bucket_take(fz_bucket_t *b, int64_t now_ms, double rate, double burst, size_t n);

/* Results held to their attempt. A reported cost far beyond what the attempt could spend
   is not believed: more than FZ_SUSPECT_FACTOR times its cap (its max_cost or its budget
   reservation, whichever is larger), above FZ_SUSPECT_COST whatever the cap, or with a
   token count above FZ_SUSPECT_TOKENS. It is recorded as reported but charges the day's
   budget at most FZ_SUSPECT_CHARGE times the cap (FZ_SUSPECT_COST without a cap). A cost
   that is believed charges what it says. */
#define FZ_SUSPECT_FACTOR 10.0
#define FZ_SUSPECT_COST 10000.0
#define FZ_SUSPECT_TOKENS 1e10
#define FZ_SUSPECT_CHARGE 2.0
typedef struct {
    double reported;    /* cost_usd of the result */
    double cap;         /* the attempt's max_cost or reservation, the larger; 0 none */
    uint64_t tokens[4]; /* in, out, cache read, cache write */
} fz_charge_in_t;
typedef struct {
    bool suspect;
    double charged; /* what the budget books */
} fz_charge_t;
fz_charge_t fz_rules_charge(const fz_charge_in_t *in);

/* Workers that keep losing their attempts (hello, take the dispatch, vanish). recent = the
   worker's lost attempts within FZ_LOSS_WINDOW_MS, this one included; quarantines = how
   often it was quarantined before; exempted = lost attempts of this task already let off.
   A worker with FZ_LOSS_QUARANTINE recent losses gets no dispatch for quarantine_ms
   (FZ_QUARANTINE_MS, doubling per earlier quarantine, at most FZ_QUARANTINE_MAX_MS). From
   its second recent loss on, the task's attempt is let off (uses no retry), at most
   FZ_LOSS_EXEMPT_MAX times per task: such a worker cannot fail other people's tasks, and a
   task that really kills every worker it touches still ends. */
#define FZ_LOSS_WINDOW_MS (10 * 60 * 1000)
#define FZ_LOSS_QUARANTINE 3
#define FZ_QUARANTINE_MS (5 * 60 * 1000)
#define FZ_QUARANTINE_MAX_MS (60 * 60 * 1000)
#define FZ_LOSS_EXEMPT_MAX 4
typedef struct {
    bool exempt;           /* the lost attempt uses no retry */
    int64_t quarantine_ms; /* 0: not quarantined */
} fz_loss_t;
fz_loss_t fz_rules_loss(uint32_t recent, uint32_t quarantines, uint32_t exempted);

/* True if a live or ended task may move from `from` to `to` (the life cycle's table). */
bool fz_rules_move_allowed(fz_state_t from, fz_state_t to);

#endif
