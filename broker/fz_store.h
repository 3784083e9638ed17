/*  fz_store: the broker's durable state in one SQLite database (WAL).

    Tables: tasks, task_labels, attempts, meta, deps, submit_keys. The broker is the only writer.
    Writes of one loop turn go into one transaction, opened by the first write (fz_store_*
    writers call it themselves) and closed by fz_store_commit, or by fz_store_commit_unsynced
    with the WAL's fdatasync in the broker's sync thread; the broker sends a turn's replies
    and events only after that sync: an acknowledgement always follows its fsync.

    Readers run on the same connection, so they see the turn's own writes. The store returns
    rows and knows nothing of the protocol: what replies show comes as plain rows
    (fz_store_rows.h), which views build replies from.

    A failed write (disk full, I/O error) poisons the turn: its commit rolls everything back
    and fails, and the broker answers that turn's requests with `unavailable`. For tests, the
    environment variable FZ_STORE_MAX_PAGES caps the database's size (a full disk on demand). */

#ifndef FZ_STORE_H
#define FZ_STORE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "fz_task.h"

typedef struct fz_store_t fz_store_t;

/* Opens (creating if needed) the database at path. sync_full chooses synchronous=FULL (safe
   on power loss) over NORMAL (safe on process crash). NULL on failure, err says why. */
fz_store_t *fz_store_open(const char *path, bool sync_full, char *err, size_t errlen);
/* The same, checking an existing database with SQLite's full integrity_check (full_check:
   every index against its table, slower) instead of quick_check. */
fz_store_t *fz_store_open_checked(const char *path, bool sync_full, bool full_check, char *err,
                                  size_t errlen);
/* Rebuilds what SQLite can still read of the (damaged) database at path into a new file in
   fz's schema, table by table from the tables' own b-trees (indexes are rebuilt, never
   read), checks it with integrity_check, then moves the damaged file (and its -wal, -shm)
   aside to PATH.damaged-TIMESTAMP and puts the rebuilt one in its place. Refused while a
   broker holds the database. 0, or -1 (err says why; the damaged file is left where it
   was). report gets one line of what was done. */
int fz_store_recover(const char *path, char *report, size_t reportlen, char *err, size_t errlen);
void fz_store_destroy(fz_store_t **self_p);

/* True if the turn has written (a transaction is open, for fz_store_commit to close). */
bool fz_store_in_turn(const fz_store_t *self);
/* Commits the turn's transaction if one is open and, with sync_full, syncs it to the disk;
   0 on success, -1 (rolled back) when the commit or any write of the turn failed, or when
   the sync did (then the commit stands in the WAL, and whether it survives a power loss is
   unknown). */
int fz_store_commit(fz_store_t *self);
/* The same without the sync: the commit survives the process's crash at once, a power loss
   only once the WAL has been synced, by fz_store_sync or by an fdatasync of
   fz_store_wal_fd() in another thread (the broker's, fz_sync.h). */
int fz_store_commit_unsynced(fz_store_t *self);
/* fdatasync of the WAL: every commit before it survives a power loss. 0, or -1 (logged). */
int fz_store_sync(fz_store_t *self);
/* The WAL's descriptor for another thread's fdatasync; -1 without sync_full (the store's;
   valid until fz_store_destroy). */
int fz_store_wal_fd(const fz_store_t *self);
/* True when a write of the open turn failed (its commit will roll it back). */
bool fz_store_failed(const fz_store_t *self);
/* Makes the turn's commit fail (and roll back): for a change that must land whole. A failed
   write does the same by itself. */
void fz_store_fail_turn(fz_store_t *self);
/* Abandons the turn's transaction if one is open. */
void fz_store_rollback(fz_store_t *self);
/* Last SQLite error message. */
const char *fz_store_error(fz_store_t *self);

/* A new task as submitted; the msgpack objects (may be NULL) are stored as they are. */
typedef struct {
    const char *prompt;
    size_t prompt_len;
    int64_t priority;
    const char *model;
    const char *name;
    uint32_t timeout;
    double max_cost;
    uint32_t retries;
    uint64_t parent;
    const msgpack_object *labels, *fallback, *after, *after_any;
    double deadline;            /* unix time, 0 = none */
    uint32_t stall, stall_kill; /* seconds, 0 = the broker's default */
    const char *summary;        /* why, when stored already final (dep-failed at submit) */
    fz_state_t state;
    const char *repo, *base, *check; /* the workspace (PROTOCOL.md section 8); NULL = "" */
    bool keep_worktree;
    uint32_t best_of;
} fz_store_newtask_t;

/* What a dispatch needs of a task's workspace, copied out (fz_store_ws_free frees it). */
typedef struct {
    char *repo, *base, *check; /* never NULL once read */
    bool keep_worktree;
    uint32_t best_of;
    /* The head commits of the task's succeeded --after dependencies on the same repository,
       by dependency id (where a task with no base starts). */
    char **dep_heads;
    size_t ndep_heads;
    /* The check of attempt `prev` (0: none asked), when it failed: what the next prompt is
       given. check_output is NULL when there was none. */
    bool prev_failed;
    int64_t prev_exit;
    char *prev_output;
    size_t prev_output_len;
} fz_store_ws_t;

/* Reads task id's workspace and, with prev > 0, attempt prev's check. 0, or -1 on a store
   error or no memory (then *ws is freed). */
int fz_store_task_ws(fz_store_t *self, uint64_t id, uint32_t prev, fz_store_ws_t *ws);
void fz_store_ws_free(fz_store_ws_t *ws);

/* The head commit of a task's successful attempt ("" if none) into head; -1 if no task. */
#define FZ_STORE_OID_MAX 65
int fz_store_task_head(fz_store_t *self, uint64_t id, char head[FZ_STORE_OID_MAX]);

/* Inserts a task; returns its id, 0 on failure. */
uint64_t fz_store_task_add(fz_store_t *self, const fz_store_newtask_t *t);
/* Sets a task's state (and hold reason, "" for none). */
int fz_store_task_state(fz_store_t *self, uint64_t id, fz_state_t state, const char *reason);
/* The model of attempt n (1-based): the task's model, then its fallback chain; the last
   model repeats. Writes into model[65]. */
int fz_store_task_model(fz_store_t *self, uint64_t id, uint32_t n, char *model);

/* Keeps what the task's memory record must not lose on a restart: how many attempts do not
   count against its retries, and whether a cancel was asked while it ran. */
int fz_store_task_flags(fz_store_t *self, uint64_t id, uint32_t attempt_base, bool cancel);
/* Keeps when a task's wait for a quota reset ends (unix time, 0 = none). */
int fz_store_task_not_before(fz_store_t *self, uint64_t id, double not_before);
/* Records which key submitted a task: its ZAP user id ("client:alice"; "" with CURVE off). */
int fz_store_task_set_owner(fz_store_t *self, uint64_t id, const char *user);
/* Who submitted task id, into user[size]; -1 if there is no such task. */
int fz_store_task_owner(fz_store_t *self, uint64_t id, char *user, size_t size);
/* Changes a task's base priority. */
int fz_store_task_priority(fz_store_t *self, uint64_t id, int64_t priority);
/* Loads one task's scheduling fields (as fz_store_load_live does); -1 if not found. The
   model is the task's own (first-attempt) model. */
int fz_store_load_task(fz_store_t *self, uint64_t id, fz_task_t *task);

/* Records the start of attempt n on worker: attempt row, task running. */
int fz_store_attempt_start(fz_store_t *self, uint64_t id, uint32_t n, const char *worker,
                           const char *model, double reserved);

typedef struct {
    const char *outcome;
    int64_t exit_code;
    uint32_t signal;
    uint64_t duration_ms;
    double cost_usd;
    uint64_t tokens_in, tokens_out;
    const char *model;
    const char *summary;
    const void *output;
    size_t output_len;
    const char *log;
    const char *class_name; /* failure class, "" on success */
    double reset_at;        /* rate-limit, quota: when it resets (unix time), 0 unknown */
    uint64_t tokens_cache_read, tokens_cache_write;
    /* The workspace's result; NULL strings = "" (no repository, no check). */
    const char *branch, *base_commit, *head_commit;
    uint64_t files, insertions, deletions;
    const char *check_status; /* "", "passed", "failed" */
    int64_t check_exit;
    const void *check_output;
    size_t check_output_len;
} fz_result_t;

/* Attempt n's reported cost was not believed (fz_rules_charge): the budget books `charged`
   for it (attempts.charged; cost_usd keeps what was reported). 0 or -1. */
int fz_store_attempt_charged(fz_store_t *self, uint64_t id, uint32_t n, double charged);

/* Records the end of attempt n and the task's new state. Returns 1 if recorded, 0 if that
   attempt had already ended (a duplicate result), -1 on error. */
int fz_store_attempt_finish(fz_store_t *self, uint64_t id, uint32_t n, const fz_result_t *r,
                            fz_state_t state);
/* Ends attempt n's row (a best-of round's attempt that dropped out or lost) and adds what it
   spent, cost and tokens, to the task's totals; its state stays. 0, or -1 on a store error.
   An attempt ended already is left as it is, and counted once. */
int fz_store_attempt_end(fz_store_t *self, uint64_t id, uint32_t n, const fz_result_t *r);
/* Ends, as lost with summary why, every attempt still open that is not its task's running
   attempt (a best-of round's other attempts, after a restart). How many, or -1. */
int fz_store_close_racers(fz_store_t *self, const char *why);
/* The task's model and its fallback models, in order, into models (at most max); how many. */
size_t fz_store_task_chain(fz_store_t *self, uint64_t id, char (*models)[65], size_t max);

/* Calls fn for each unfinished task (state not final), oldest first, with the worker of its
   current attempt ("" if none) and that attempt's reservation. The task's model is its own
   (first-attempt) model: the caller picks the fallback for the attempt at hand. */
typedef void(fz_store_live_fn)(void *arg, const fz_task_t *task, const char *worker);
int fz_store_load_live(fz_store_t *self, fz_store_live_fn *fn, void *arg);

/* The name of the worker attempt n of task id was dispatched to, into worker[65]; -1 if
   there is no such attempt. */
int fz_store_attempt_worker(fz_store_t *self, uint64_t id, uint32_t n, char *worker);

/* Sum of the costs of attempts that ended in [from, to). */
double fz_store_spent(fz_store_t *self, double from, double to);
/* True if a task with this id exists; *state_p gets its state. */
bool fz_store_task_exists(fz_store_t *self, uint64_t id, fz_state_t *state_p);

/* Dependencies: kind 0 = after (needs success), 1 = after_any (needs an end). */
int fz_store_dep_add(fz_store_t *self, uint64_t task, uint64_t dep, int kind);
/* Rows of the dependency graph: a task's id, the kind of the edge, its state (-1 where not
   asked for). Owned by the caller: filled (from n = 0) by the calls below, which grow v as
   needed, and freed with fz_deps_free; one fz_deps_t may be reused for many calls. */
typedef struct {
    uint64_t id;
    int kind;
    int state;
} fz_dep_t;
typedef struct {
    fz_dep_t *v;
    size_t n, cap;
} fz_deps_t;
void fz_deps_free(fz_deps_t *deps);
/* The dependencies of task, with their current states. 0, or -1 on a store error. */
int fz_store_deps_of(fz_store_t *self, uint64_t task, fz_deps_t *out);
/* The tasks that depend on dep, with the kind of dependency (state -1). */
int fz_store_dependents(fz_store_t *self, uint64_t dep, fz_deps_t *out);
/* Every subtask below task, transitively, by id (kind 0, state -1). */
int fz_store_subtree(fz_store_t *self, uint64_t task, fz_deps_t *out);
/* The children of task (one level down), by id (kind 0, state -1). */
int fz_store_children(fz_store_t *self, uint64_t task, fz_deps_t *out);
/* Depth of task in its tree (1 = a root), its number of children, and its priority. */
int fz_store_tree_info(fz_store_t *self, uint64_t task, uint32_t *depth, uint32_t *children,
                       int64_t *priority);
/* Ends a task as dep-failed, saying why in its summary. */
int fz_store_task_depfail(fz_store_t *self, uint64_t id, const char *why);

/* Deletes the tasks that ended before `before` (unix time) with their attempts, labels and
   dependency rows, except those a live task still needs (as a dependency or parent).
   Returns how many tasks went, -1 on error. */
int64_t fz_store_purge(fz_store_t *self, double before);
/* Writes a consistent copy of what is committed to `path` (SQLite's backup API, from a
   read-only connection of its own, so the turn's open transaction is not in it), through a
   temporary file renamed into place. Its size in bytes; -2 if path is the database itself,
   -1 if the copy failed (err says why). */
int64_t fz_store_backup(fz_store_t *self, const char *path, char *err, size_t errlen);

/* Idempotency keys of submits: what a key created (the ids of one submit or a whole batch,
   in order, and the state a single submit was stored in; -1 for a batch). Written in the
   turn's transaction with the tasks, so a key is stored exactly when its tasks are. */
#define FZ_STORE_KEY_IDS 1000
typedef struct {
    uint64_t ids[FZ_STORE_KEY_IDS];
    size_t n;
    int state;
} fz_store_key_t;
/* Finds key among the keys created at or after `since` (unix time): 1 found (out filled),
   0 not found, -1 on a store error. */
int fz_store_key_find(fz_store_t *self, const char *key, double since, fz_store_key_t *out);
/* Stores (or replaces an expired) key with what it created; 0, or -1 (the turn fails). */
int fz_store_key_add(fz_store_t *self, const char *key, double created, const uint64_t *ids,
                     size_t n, int state);
/* Forgets the keys created before `before`: how many, -1 on error. */
int64_t fz_store_key_prune(fz_store_t *self, double before);

/* Queue depth for autoscalers: per model or per label ("k=v"), how many unfinished tasks
   are in each of these states (the columns of counts, in this order). The broker counts the
   models from its task table; labels are only in the store. */
#define FZ_STORE_DEPTH_N 5
extern const fz_state_t fz_store_depth_states[FZ_STORE_DEPTH_N];
/* The column of counts a task in state s counts in, or -1 (an ended task). */
int fz_store_depth_slot(int state);
typedef struct {
    char key[1100]; /* a model, or KEY=VALUE of a label (64 + 1 + 1024 bytes at most) */
    uint64_t counts[FZ_STORE_DEPTH_N];
} fz_store_depth_t;
typedef void(fz_store_depth_fn)(void *arg, const fz_store_depth_t *row);
/* Calls fn for each label with unfinished tasks, in key order, at most max_rows times. 0, 1
   when rows were left out past max_rows, -1 on a store error. live: about how many
   unfinished tasks there are (the broker knows); the pass goes over the labels when there
   are fewer label rows than that, else over the tasks. */
int fz_store_depth_labels(fz_store_t *self, uint64_t live, size_t max_rows, fz_store_depth_fn *fn,
                          void *arg);

/* Small persistent settings (paused, budget). get returns dflt when unset. */
double fz_store_meta_get(fz_store_t *self, const char *key, double dflt);
int fz_store_meta_set(fz_store_t *self, const char *key, double value);

#endif
