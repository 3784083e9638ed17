/*  fz_store_rows: the rows the store hands to views (a task, its attempts, lists, labels,
    counts, cost, a prompt); fz_store_rows.c owns the queries. Rows are plain C: numbers, C strings,
    and bytes with a length. Nothing here knows the protocol: views (broker/fz_views.c) name
    the fields and build the replies, and choose how much of a reply fits a frame.

    A query's rows come through a reader (fz_store_rows_t), one row at a time: a row's strings
    and bytes stay valid until the next read from that reader or its destroy. A reader holds
    one of the store's cached statements: while it is open the store may be read through other
    calls but must not be written, and no second reader of the same query may be open.

    The task's fallback, after and after_any are stored as the msgpack arrays the submit
    carried; they come out as those bytes (NULL when the task had none), so a reply can carry
    them exactly as they were sent, with no decoding or re-encoding. */

#ifndef FZ_STORE_ROWS_H
#define FZ_STORE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_store.h"
#include "fz_vocab.h"

typedef struct fz_store_rows_t fz_store_rows_t;

/* One task, as stored. Strings are never NULL. */
typedef struct {
    uint64_t id;
    const char *state;
    int64_t priority;
    const char *model, *name;
    uint64_t timeout;
    double max_cost;
    uint64_t retries;
    const void *fallback, *after, *after_any; /* msgpack arrays as submitted, or NULL */
    size_t fallback_len, after_len, after_any_len;
    uint64_t parent, attempts;
    double created, updated;
    const char *worker, *outcome;
    int64_t exit_code;
    double cost_usd;
    uint64_t tokens_in, tokens_out;
    const char *summary, *hold_reason;
    double deadline;
    const char *class_name;
    uint64_t tokens_cache_read, tokens_cache_write, stall, stall_kill;
    double not_before;
    const char *repo, *base, *check; /* the workspace */
    bool keep_worktree;
    uint64_t best_of;
    const char *branch, *head_commit; /* the task's result branch, once it succeeded */
    /* The ZAP user id of the key that submitted it ("client:alice"); "" without CURVE. */
    const char *submitted_by;
    const char *prompt; /* whole (fz_store_task) or its first 80 characters (lists) */
    size_t prompt_len;
} fz_store_task_row_t;

/* One attempt. output is empty (never NULL) when there is none or it was left out. */
typedef struct {
    uint64_t n;
    const char *worker, *model;
    double started, ended;
    const char *outcome;
    int64_t exit_code;
    uint64_t signal, duration_ms;
    double cost_usd;
    uint64_t tokens_in, tokens_out;
    const char *summary;
    const void *output;
    size_t output_len;
    const char *log;
    double reserved;
    bool output_dropped; /* it had an output, left out for size */
    const char *class_name;
    double reset_at;
    uint64_t tokens_cache_read, tokens_cache_write;
    const char *branch, *base_commit, *head_commit;
    uint64_t files, insertions, deletions;
    const char *check_status;
    int64_t check_exit;
    const void *check_output; /* never NULL */
    size_t check_output_len;
    bool suspect;   /* its reported cost was not believed: */
    double charged; /* ... the budget booked this instead */
} fz_store_attempt_row_t;

/* One label of a task. */
typedef struct {
    const char *key, *value;
} fz_store_label_row_t;

/* What cost rows are grouped by. */
typedef enum {
    FZ_STORE_COST_DAY, /* key: YYYY-MM-DD (UTC) of the attempt's end */
    FZ_STORE_COST_MODEL,
    FZ_STORE_COST_TASK, /* key: the task id in decimal */
    FZ_STORE_COST_WORKER,
    FZ_STORE_COST_LABEL, /* key: the value of one label, "" for tasks without it */
    FZ_STORE_COST_CLASS,
    FZ_STORE_COST_COUNT
} fz_store_cost_by_t;

/* Finished attempts of one group. */
typedef struct {
    const char *key;
    uint64_t attempts;
    double cost_usd;
    uint64_t tokens_in, tokens_out, duration_ms;
} fz_store_cost_row_t;

/* Readers; each returns NULL on a store error. The caller destroys them. */

/* The task, whole: no row if there is no such task. */
fz_store_rows_t *fz_store_task(fz_store_t *self, uint64_t id);
/* The tasks in state (NULL: all), prompts cut to 80 characters: the first `limit` by id, or
   with tail the last `limit` newest first (so that a reader who stops early keeps the
   newest). *total gets how many tasks there are in that state: *known when not NULL (the
   broker keeps the count), else counted here (a pass over the state's index entries). */
fz_store_rows_t *fz_store_list(fz_store_t *self, const char *state, uint64_t limit, bool tail,
                               const uint64_t *known, uint64_t *total);
/* The attempts of a task by n. The newest keep their outputs while the attempts' outputs,
   check outputs, summaries and logs (and 400 bytes each) add up to at most output_bytes;
   older ones come with no output nor check output, and output_dropped set. */
fz_store_rows_t *fz_store_attempts(fz_store_t *self, uint64_t id, uint64_t output_bytes);
/* The labels of a task, by key. */
fz_store_rows_t *fz_store_labels(fz_store_t *self, uint64_t id);
/* Finished attempts grouped by `by` (label_key names the label for FZ_STORE_COST_LABEL),
   ended at or after since (unix seconds), by key. */
fz_store_rows_t *fz_store_cost(fz_store_t *self, fz_store_cost_by_t by, const char *label_key,
                               double since);

/* The next row into *row; false at the end (or on an error: the rows read are all there
   are). Each reads only the rows of its own kind of reader. */
bool fz_store_rows_task(fz_store_rows_t *rows, fz_store_task_row_t *row);
bool fz_store_rows_attempt(fz_store_rows_t *rows, fz_store_attempt_row_t *row);
bool fz_store_rows_label(fz_store_rows_t *rows, fz_store_label_row_t *row);
bool fz_store_rows_cost(fz_store_rows_t *rows, fz_store_cost_row_t *row);
/* Ends the query (the statement goes back to the store) and frees the reader; NULL is ok. */
void fz_store_rows_destroy(fz_store_rows_t **self_p);

/* Single answers, copied out. */

/* The number of tasks in each state (indexed by fz_state_t). 0, or -1 on a store error. */
int fz_store_counts(fz_store_t *self, uint64_t counts[FZ_STATE_COUNT]);
/* A task's whole prompt, NUL-terminated (it may hold NULs: *len is its length), which the
   caller frees; NULL if there is no such task or on no memory. */
char *fz_store_prompt(fz_store_t *self, uint64_t id, size_t *len);

#endif
