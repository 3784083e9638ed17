/*  fz_views: the replies built from the store's rows (fz_store_rows.h). Here the protocol's
    field names, types and order are given to the rows, and a reply is cut to fit a frame;
    the store encodes nothing. The request handlers that use these (get, list, status, cost,
    ...) are fz_views.c's too, declared in fz_broker_int.h. */

#ifndef FZ_VIEWS_H
#define FZ_VIEWS_H

#include <stdbool.h>
#include <stdint.h>

#include "fz_msg.h"
#include "fz_store.h"
#include "fz_store_rows.h"

/* List, get and events replies stay under this many bytes of rows (FZ_MAX_FRAME is 4 MiB);
   with FZ_ROUTER_HWM replies queued, what a peer that does not read can cost. */
#define FZ_VIEWS_REPLY_BYTES (1536u * 1024)

/* Adds fields that only memory knows to a task object being written. */
typedef void(fz_views_decorate_fn)(void *arg, uint64_t id, fz_enc_t *task);

/* Writes the task object under key (with its labels; fn may be NULL); FZ_ENOTFOUND if there
   is no such task, FZ_EUNAVAILABLE on a store error. */
fz_err_t fz_views_task(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key,
                       fz_views_decorate_fn *fn, void *arg);
/* Writes the array of a task's attempt objects under key; the oldest lose their outputs
   beyond FZ_VIEWS_REPLY_BYTES. */
fz_err_t fz_views_attempts(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key);
/* Writes the ids of a task's children under key. */
void fz_views_children(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key);
/* Writes the map of a task's labels under key. */
void fz_views_labels(fz_store_t *store, uint64_t id, fz_enc_t *e, const char *key);
/* Writes `tasks` (array of task summaries, by id: the first `limit`, or the last with tail),
   `total`, and `truncated` when the rows stopped at FZ_VIEWS_REPLY_BYTES (with tail, the
   oldest are the ones left out); state may be NULL (all). counts: the number of tasks in
   each state, when the caller keeps them (the broker), else NULL (the store counts). */
fz_err_t fz_views_list_tasks(fz_store_t *store, const char *state, uint64_t limit, bool tail,
                             const uint64_t counts[FZ_STATE_COUNT], fz_enc_t *e,
                             fz_views_decorate_fn *fn, void *arg);
/* Writes `counts`: a map of every state to its number of tasks (the broker's tally). */
void fz_views_counts(const uint64_t counts[FZ_STATE_COUNT], fz_enc_t *e);
/* Writes `rows` and `total_cost` of finished attempts grouped by `by` (day, model, task,
   worker, label or class; label_key names the label), ended at or after since (unix
   seconds). FZ_EINVALID for another `by`. */
fz_err_t fz_views_cost_rows(fz_store_t *store, const char *by, const char *label_key, double since,
                            fz_enc_t *e);

#endif
