/*  fz_queue: the priority queue of tasks ready to run.

    A binary heap ordered by rank (higher first: the effective priority, see fz_task.h),
    then id (older first, so FIFO among equals). Each task records its own heap position, so remove
   and reprioritise are O(log n) rather than a scan. The queue does not own its tasks. */

#ifndef FZ_QUEUE_H
#define FZ_QUEUE_H

#include "fz_task.h"

typedef struct fz_queue_t fz_queue_t;

fz_queue_t *fz_queue_new(void);
void fz_queue_destroy(fz_queue_t **self_p);

/* Adds a task not in any queue; -1 on no memory. */
int fz_queue_push(fz_queue_t *self, fz_task_t *task);
/* The first task, or NULL when empty; does not remove it. */
fz_task_t *fz_queue_peek(fz_queue_t *self);
/* Removes and returns the first task, or NULL. */
fz_task_t *fz_queue_pop(fz_queue_t *self);
/* Removes a task that is in this queue. */
void fz_queue_remove(fz_queue_t *self, fz_task_t *task);
/* Restores order after task->rank changed. */
void fz_queue_update(fz_queue_t *self, fz_task_t *task);
size_t fz_queue_size(const fz_queue_t *self);
/* The i-th task in heap order (not priority order), for iteration; NULL past the end. */
fz_task_t *fz_queue_at(const fz_queue_t *self, size_t i);
/* True if a runs before b. */
bool fz_queue_before(const fz_task_t *a, const fz_task_t *b);

#endif
