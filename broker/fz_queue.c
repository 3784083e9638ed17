/*  fz_queue: binary heap of tasks; see fz_queue.h. */

#include "fz_queue.h"

#include <stdlib.h>

struct fz_queue_t {
    fz_task_t **items;
    size_t size, cap;
};

fz_queue_t *fz_queue_new(void)
{
    return calloc(1, sizeof(fz_queue_t));
}

void fz_queue_destroy(fz_queue_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->items);
    free(*self_p);
    *self_p = NULL;
}

bool fz_queue_before(const fz_task_t *a, const fz_task_t *b)
{
    if (a->rank != b->rank)
        return a->rank > b->rank;
    return a->id < b->id;
}

static void s_set(fz_queue_t *self, size_t i, fz_task_t *t)
{
    self->items[i] = t;
    t->heap_index = i;
}

static void s_up(fz_queue_t *self, size_t i)
{
    fz_task_t *t = self->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!fz_queue_before(t, self->items[parent]))
            break;
        s_set(self, i, self->items[parent]);
        i = parent;
    }
    s_set(self, i, t);
}

static void s_down(fz_queue_t *self, size_t i)
{
    fz_task_t *t = self->items[i];
    for (;;) {
        size_t best = i, l = 2 * i + 1, r = l + 1;
        fz_task_t *b = t;
        if (l < self->size && fz_queue_before(self->items[l], b))
            best = l, b = self->items[l];
        if (r < self->size && fz_queue_before(self->items[r], b))
            best = r, b = self->items[r];
        if (best == i)
            break;
        s_set(self, i, b);
        i = best;
    }
    s_set(self, i, t);
}

int fz_queue_push(fz_queue_t *self, fz_task_t *task)
{
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        fz_task_t **items = realloc(self->items, cap * sizeof *items);
        if (!items)
            return -1;
        self->items = items;
        self->cap = cap;
    }
    task->queue = self;
    s_set(self, self->size++, task);
    s_up(self, task->heap_index);
    return 0;
}

fz_task_t *fz_queue_peek(fz_queue_t *self)
{
    return self->size ? self->items[0] : NULL;
}

void fz_queue_remove(fz_queue_t *self, fz_task_t *task)
{
    size_t i = task->heap_index;
    if (i >= self->size || self->items[i] != task)
        return;
    fz_task_t *last = self->items[--self->size];
    task->heap_index = (size_t)-1;
    task->queue = NULL;
    if (last == task)
        return;
    s_set(self, i, last);
    s_up(self, i);
    s_down(self, last->heap_index);
}

fz_task_t *fz_queue_pop(fz_queue_t *self)
{
    fz_task_t *t = fz_queue_peek(self);
    if (t)
        fz_queue_remove(self, t);
    return t;
}

void fz_queue_update(fz_queue_t *self, fz_task_t *task)
{
    size_t i = task->heap_index;
    if (i >= self->size || self->items[i] != task)
        return;
    s_up(self, i);
    s_down(self, task->heap_index);
}

size_t fz_queue_size(const fz_queue_t *self)
{
    return self->size;
}

fz_task_t *fz_queue_at(const fz_queue_t *self, size_t i)
{
    return i < self->size ? self->items[i] : NULL;
}
