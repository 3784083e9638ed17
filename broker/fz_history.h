/*  fz_history: the broker's most recent events, so a subscriber that saw a gap in the event
    numbers (PUB/SUB drops under pressure) can ask for what it missed.

    A ring bounded both in events and in bytes; the oldest go first. It owns copies of the
    encoded event maps. */

#ifndef FZ_HISTORY_H
#define FZ_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "fz_msg.h"

typedef struct fz_history_t fz_history_t;

fz_history_t *fz_history_new(size_t max_events, size_t max_bytes);
void fz_history_destroy(fz_history_t **self_p);

/* Keeps a copy of one encoded event (seq increases by one per call). */
void fz_history_add(fz_history_t *self, uint64_t seq, const void *data, size_t len);

/* Writes the events with seq > since, oldest first, as an array under key, stopping before
   max_bytes; returns how many. */
size_t fz_history_encode(const fz_history_t *self, uint64_t since, fz_enc_t *e, const char *key,
                         size_t max_bytes);

/* The oldest and newest seq held (0 when empty). */
uint64_t fz_history_first(const fz_history_t *self);
uint64_t fz_history_last(const fz_history_t *self);

#endif
