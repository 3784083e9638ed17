/*  fz_guard: results held to their attempt, and workers that keep losing theirs; see
    fz_broker_int.h. The decisions are fz_rules' (fz_rules_charge, fz_rules_loss); this file
    applies them: the store, the budget, the events, the record of each worker name.

    The record outlives the worker's connection (that is the point: a worker that says
    hello, takes a dispatch and vanishes comes back as a new connection), so it is kept by
    name, or with CURVE on by the worker's key (a key cannot shed its record by taking a
    new name), at most S_MAX_NAMES of them; past that, records without recent losses and no
    quarantine are forgotten first, and when every one is recent a new one goes unrecorded
    (its losses count against tasks as they did before). Without CURVE keys a name is all
    there is to go by: a peer that takes a new name for every dispatch is not caught here
    (each of its losses still counts against the task, so a task ends). */

#include "fz_broker_int.h"

#include <stdlib.h>
#include <string.h>

#define S_MAX_NAMES 4096

typedef struct {
    int64_t loss_ms[FZ_LOSS_QUARANTINE]; /* its recent lost attempts, oldest first */
    uint32_t nloss;
    uint32_t quarantines;
    int64_t until_ms; /* quarantined until then */
} s_record_t;

static void s_record_free(void **item)
{
    free(*item);
    *item = NULL;
}

zhashx_t *fz_guard_new(void)
{
    zhashx_t *names = zhashx_new();
    if (names)
        zhashx_set_destructor(names, s_record_free);
    return names;
}

/* Drops the losses that left the window. */
static void s_age(s_record_t *r, int64_t now)
{
    uint32_t keep = 0;
    for (uint32_t i = 0; i < r->nloss; i++)
        if (now - r->loss_ms[i] < FZ_LOSS_WINDOW_MS)
            r->loss_ms[keep++] = r->loss_ms[i];
    r->nloss = keep;
}

/* Forgets the records that no longer matter, so a new name fits; O(names), only when the
   table is full. */
static void s_trim(zhashx_t *names, int64_t now)
{
    zlistx_t *keys = zhashx_keys(names);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        s_record_t *r = zhashx_lookup(names, k);
        s_age(r, now);
        if (!r->nloss && now >= r->until_ms)
            zhashx_delete(names, k);
    }
    zlistx_destroy(&keys);
}

static s_record_t *s_record(fz_broker_t *self, const char *name, int64_t now)
{
    s_record_t *r = self->guard ? zhashx_lookup(self->guard, name) : NULL;
    if (r || !self->guard)
        return r;
    if (zhashx_size(self->guard) >= S_MAX_NAMES)
        s_trim(self->guard, now);
    if (zhashx_size(self->guard) >= S_MAX_NAMES || !(r = calloc(1, sizeof *r)))
        return NULL;
    zhashx_insert(self->guard, name, r);
    return r;
}

/* What a worker's record is kept by: its key's user id, or its name with CURVE off. */
static const char *s_who(const fz_worker_t *w)
{
    return *w->user ? w->user : w->name;
}

void fz_guard_hello(fz_broker_t *self, fz_worker_t *w)
{
    s_record_t *r = self->guard ? zhashx_lookup(self->guard, s_who(w)) : NULL;
    int64_t now = fz_clock_ms();
    if (!r || now >= r->until_ms)
        return;
    w->rest_until_ms = r->until_ms;
    fz_warn("worker %s is quarantined for %lld s more (it kept losing its attempts): no "
            "dispatch to it until then",
            w->name, (long long)((r->until_ms - now) / 1000));
}

void fz_guard_lost(fz_broker_t *self, fz_worker_t *w, fz_task_t *t)
{
    int64_t now = fz_clock_ms();
    s_record_t *r = s_record(self, s_who(w), now);
    if (!r)
        return;
    s_age(r, now);
    if (r->nloss == FZ_LOSS_QUARANTINE)
        memmove(r->loss_ms, r->loss_ms + 1, (FZ_LOSS_QUARANTINE - 1) * sizeof *r->loss_ms),
            r->nloss--;
    r->loss_ms[r->nloss++] = now;
    fz_loss_t v = fz_rules_loss(r->nloss, r->quarantines, t->lost_exempt);
    if (v.exempt) {
        /* Not the task's fault: this attempt does not count against its retries. */
        t->lost_exempt++;
        t->attempt_base++;
        fz_store_task_flags(self->store, t->id, t->attempt_base, t->cancel_requested);
    }
    if (!v.quarantine_ms)
        return;
    r->until_ms = now + v.quarantine_ms;
    r->quarantines++;
    r->nloss = 0;
    w->rest_until_ms = r->until_ms;
    fz_warn("worker %s lost %d attempts within %d minutes: quarantined for %lld s (no "
            "dispatch to %s)",
            w->name, FZ_LOSS_QUARANTINE, FZ_LOSS_WINDOW_MS / 60000,
            (long long)(v.quarantine_ms / 1000), *w->user ? w->user : "that name");
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_WORKER_UNHEALTHY, NULL);
    fz_enc_str(e, "worker", w->name);
    fz_enc_str(e, "class", "quarantined");
    fz_enc_str(e, "model", "");
    fz_enc_float(e, "until", fz_wall() + v.quarantine_ms / 1000.0);
}

double fz_guard_charge(fz_broker_t *self, uint64_t id, uint32_t n, double cap, const fz_result_t *r,
                       fz_enc_t *e)
{
    fz_charge_in_t in = {
        .reported = r->cost_usd,
        .cap = cap,
        .tokens = {r->tokens_in, r->tokens_out, r->tokens_cache_read, r->tokens_cache_write}};
    fz_charge_t c = fz_rules_charge(&in);
    if (!c.suspect)
        return r->cost_usd;
    fz_store_attempt_charged(self->store, id, n, c.charged);
    fz_warn("task %llu attempt %u: reported cost %.4g USD (tokens %llu in, %llu out) cannot be "
            "real for a cap of %.4g USD: recorded as reported, charged %.4g USD",
            (unsigned long long)id, n, r->cost_usd, (unsigned long long)r->tokens_in,
            (unsigned long long)r->tokens_out, in.cap, c.charged);
    fz_enc_bool(e, "suspect", true);
    fz_enc_float(e, "charged", c.charged);
    return c.charged;
}
