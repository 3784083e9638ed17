/*  fz_history: a bounded ring of recent events; see fz_history.h. */

#include "fz_history.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t seq;
    void *data;
    size_t len;
} entry_t;

struct fz_history_t {
    entry_t *ring;
    size_t cap, head, count; /* head: the oldest */
    size_t bytes, max_bytes;
};

fz_history_t *fz_history_new(size_t max_events, size_t max_bytes)
{
    fz_history_t *self = calloc(1, sizeof *self);
    if (!self || !(self->ring = calloc(max_events ? max_events : 1, sizeof *self->ring))) {
        free(self);
        return NULL;
    }
    self->cap = max_events ? max_events : 1;
    self->max_bytes = max_bytes;
    return self;
}

static void s_drop_oldest(fz_history_t *self)
{
    entry_t *e = &self->ring[self->head];
    self->bytes -= e->len;
    free(e->data);
    memset(e, 0, sizeof *e);
    self->head = (self->head + 1) % self->cap;
    self->count--;
}

void fz_history_destroy(fz_history_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_history_t *self = *self_p;
    while (self->count)
        s_drop_oldest(self);
    free(self->ring);
    free(self);
    *self_p = NULL;
}

void fz_history_add(fz_history_t *self, uint64_t seq, const void *data, size_t len)
{
    if (len > self->max_bytes)
        return;
    while (self->count && (self->count == self->cap || self->bytes + len > self->max_bytes))
        s_drop_oldest(self);
    void *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, data, len);
    entry_t *e = &self->ring[(self->head + self->count) % self->cap];
    *e = (entry_t){seq, copy, len};
    self->count++;
    self->bytes += len;
}

size_t fz_history_encode(const fz_history_t *self, uint64_t since, fz_enc_t *e, const char *key,
                         size_t max_bytes)
{
    size_t start = 0, n = 0, bytes = 0;
    while (start < self->count && self->ring[(self->head + start) % self->cap].seq <= since)
        start++;
    while (start + n < self->count) {
        const entry_t *x = &self->ring[(self->head + start + n) % self->cap];
        if (bytes + x->len > max_bytes)
            break;
        bytes += x->len;
        n++;
    }
    fz_enc_array(e, key, n);
    for (size_t i = 0; i < n; i++) {
        const entry_t *x = &self->ring[(self->head + start + i) % self->cap];
        fz_enc_raw(e, NULL, x->data, x->len);
    }
    return n;
}

uint64_t fz_history_first(const fz_history_t *self)
{
    return self->count ? self->ring[self->head].seq : 0;
}

uint64_t fz_history_last(const fz_history_t *self)
{
    return self->count ? self->ring[(self->head + self->count - 1) % self->cap].seq : 0;
}
