/*  fz_budget: daily spending ledger; see fz_budget.h. */

#include "fz_budget.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

/* Amounts are compared with a small tolerance so that float sums of cents do not refuse a
   reservation that fits exactly. */
#define FZ_EPSILON 1e-9

double fz_budget_day_start(double now)
{
    return floor(now / 86400.0) * 86400.0;
}

void fz_budget_init(fz_budget_t *self, double cap, double spent_today, double now)
{
    self->cap = cap;
    self->spent = spent_today;
    self->reserved = 0;
    self->day_start = fz_budget_day_start(now);
}

bool fz_budget_rollover(fz_budget_t *self, double now)
{
    double start = fz_budget_day_start(now);
    if (start <= self->day_start)
        return false;
    self->day_start = start;
    self->spent = 0;
    return true;
}

double fz_budget_left(const fz_budget_t *self)
{
    return self->cap - self->spent - self->reserved;
}

bool fz_budget_fits(const fz_budget_t *self, double amount)
{
    return amount <= fz_budget_left(self) + FZ_EPSILON;
}

void fz_budget_reserve(fz_budget_t *self, double amount)
{
    self->reserved += amount;
}

void fz_budget_settle(fz_budget_t *self, double reserved, double cost)
{
    fz_budget_release(self, reserved);
    self->spent += cost;
}

void fz_budget_release(fz_budget_t *self, double reserved)
{
    self->reserved -= reserved;
    if (self->reserved < FZ_EPSILON)
        self->reserved = 0;
}

void fz_budget_day_name(const fz_budget_t *self, char out[11])
{
    time_t t = (time_t)self->day_start;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}
