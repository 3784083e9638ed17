/*  fz_budget: the daily spending ledger.

    The day runs from 00:00 to 24:00 UTC. A task reserves its cost cap when it is dispatched
    and settles to the cost its agent reported when its attempt ends; a dispatch happens only
    if its reservation fits in cap - spent - reserved. So the day's recorded spend can pass the
    cap only by what agents report beyond their own caps (they are stopped when they do).

    Plain value type, no allocation: the broker embeds one. Wall-clock time (UTC) decides the
    day; amounts are USD. */

#ifndef FZ_BUDGET_H
#define FZ_BUDGET_H

#include <stdbool.h>

typedef struct {
    double cap;       /* daily cap */
    double spent;     /* settled cost of attempts that ended today */
    double reserved;  /* sum of reservations of running attempts */
    double day_start; /* unix time of today's 00:00 UTC */
} fz_budget_t;

/* Unix time of 00:00 UTC of the day holding `now`. */
double fz_budget_day_start(double now);
/* Starts the ledger for the day of now with what was already spent today. */
void fz_budget_init(fz_budget_t *self, double cap, double spent_today, double now);
/* True if the day changed since the last call (spent is then reset to 0). */
bool fz_budget_rollover(fz_budget_t *self, double now);
/* What is left to reserve: cap - spent - reserved (may be negative). */
double fz_budget_left(const fz_budget_t *self);
/* True if a reservation of amount fits now. */
bool fz_budget_fits(const fz_budget_t *self, double amount);
void fz_budget_reserve(fz_budget_t *self, double amount);
/* Releases a reservation and books the actual cost (ended_today: the attempt ended in the
   ledger's current day). */
void fz_budget_settle(fz_budget_t *self, double reserved, double cost);
/* Releases a reservation without cost (attempt lost before it reported). */
void fz_budget_release(fz_budget_t *self, double reserved);
/* Writes today's date as YYYY-MM-DD. */
void fz_budget_day_name(const fz_budget_t *self, char out[11]);

#endif
