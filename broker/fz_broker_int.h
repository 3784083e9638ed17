/*  fz_broker_int: what the broker's own files share, and nothing else includes.

    The broker is one object (fz_broker_t, below) whose concerns live in separate files:
      fz_broker.c    the loop: sockets, turns, the handler table, timers, load and reload
      fz_outbox.c    what a turn sends once it has committed: replies, dispatches, events
      fz_life.c      the task life cycle: the one transition function, dispatch, retries,
                     lost attempts, cancel, budget holds and releases
      fz_graph.c     dependencies and subtasks: waiting counts, dep-failed, revival,
                     priority inheritance (plain loops over rows the store returns)
      fz_rules.c     the pure rules (priorities, backoff, what an attempt's end leads to,
                     which moves are allowed): numbers in, numbers out (fz_rules.h)
      fz_requests.c  client requests that change things (submit, cancel, retry, ...)
      fz_views.c     client requests that only read (get, list, status, workers, cost, ...),
                     and the replies built from the store's rows (fz_views.h)
      fz_workers.c   the worker registry and the worker messages (hello ... bye)
      fz_race.c      best-of-N rounds: a task's attempts that run at once
      fz_guard.c     results held to their attempt (suspect costs), workers that keep
                     losing their attempts (quarantine by name)
    Ownership: the task table owns every live fz_task_t, the worker table every fz_worker_t;
    the scheduler's queues, the timed list and workers only point at them. */

#ifndef FZ_BROKER_INT_H
#define FZ_BROKER_INT_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "fz_auth.h"
#include "fz_broker.h"
#include "fz_budget.h"
#include "fz_history.h"
#include "fz_msg.h"
#include "fz_net.h"
#include "fz_rules.h"
#include "fz_sched.h"
#include "fz_store.h"
#include "fz_store_rows.h"
#include "fz_sync.h"
#include "fz_util.h"
#include "fz_views.h"

/* Tasks with no current attempt result for this long after a restart are requeued: two
   dead-peer periods, so that workers have time to reconnect and say what they run. */
#define FZ_ORPHAN_PERIODS 6
/* Messages handled per loop turn before the turn commits: bounds the latency of acks. */
#define FZ_TURN_MAX 512
/* Lost attempts (worker died) beyond the task's retries before it is failed anyway: a task
   that keeps killing its workers must not loop forever. */
#define FZ_LOST_EXTRA 3
/* task.output bytes per second (and burst) one attempt may put on the event stream. */
#define FZ_OUTPUT_RATE (128 * 1024)
/* What a turn may queue to send before it stops reading requests (the rest wait for the next
   turn): one peer's large replies cannot hold everyone else's. */
#define FZ_TURN_BYTES (32u << 20)
/* Messages queued to one peer of the ROUTER before its replies are dropped: a peer that does
   not read costs the broker at most this many replies (of at most 1.5 MiB: 384 MiB). libzmq
   gives a pipe its room back only every HWM/2 messages read, so up to HWM/2 unanswered
   requests of one peer always find room (the protocol asks clients for at most 100). */
#define FZ_ROUTER_HWM 256
/* The PUB queue of one subscriber, in events: a stuck subscriber holds at most this many
   (each at most 16 KiB of output) before the broker drops its events. */
#define FZ_PUB_HWM 5000
/* How often expired idempotency keys are deleted (a lookup ignores them anyway). */
#define FZ_KEY_PRUNE_MS (3600 * 1000)
/* Tasks one priority inheritance may raise (a walk up a dependency graph). */
#define FZ_INHERIT_MAX 4096
/* Recent events kept for subscribers that missed some: at most this many, this many bytes. */
#define FZ_HISTORY_EVENTS 20000
#define FZ_HISTORY_BYTES (16u << 20)

/* One message to send once the turn has committed. */
typedef struct {
    uint8_t to[255];  /* routing id (ZeroMQ allows 1..255 bytes), copied: no frame per message */
    uint8_t to_len;   /* 0: an event */
    fz_topic_t topic; /* event topic */
    fz_enc_t *enc;
    bool reply;        /* a reply to a request: on a failed commit it becomes an error */
    uint64_t rid;      /* the request's id */
    uint64_t dispatch; /* task id when this is a dispatch */
    bool norid;        /* an error to a frame whose rid could not be read: sent as it is */
} out_t;
struct fz_broker_t {
    fz_broker_config_t cfg;
    zsock_t *router, *pub;
    fz_store_t *store;
    fz_sched_t *sched;
    fz_budget_t budget;
    zhashx_t *tasks; /* "id" -> fz_task_t, owner of every live task */
    /* "id" of the live tasks with a deadline (most have none): the once-a-second re-rank
       walks these, not every task; ids of tasks that left are dropped by that walk. */
    zhashx_t *deadlined;
    zhashx_t *workers; /* hex routing id -> fz_worker_t, owner of every worker */
    zlistx_t *timed;   /* retrying and orphaned tasks (points into tasks) */
    zlistx_t *racing;  /* best-of tasks whose round waits for workers (points into tasks) */
    char **allowed;    /* model whitelist, NULL = any */
    size_t nallowed;
    bool paused;
    /* Tasks per state in the store, finished ones included: read once by each load (one
       pass over the tasks_state index), then kept by fz_life_move and the submits, so that
       a status costs nothing however many tasks the store holds. */
    uint64_t counts[FZ_STATE_COUNT];
    out_t *out; /* what the turns since the last commit send once it is durable */
    size_t nout, capout;
    /* --sync full: the WAL's fdatasync runs in a thread beside the loop, which goes on
       with its timers meanwhile. The messages of the commit being synced wait in held;
       what turns write and queue meanwhile waits, open, for the next commit. */
    fz_sync_t *sync;
    out_t *held;
    size_t nheld, capheld, held_bytes;
    bool sync_failed; /* an fdatasync failed: the loop stops (what waited for it is not sent) */
    zframe_t *from;   /* the routing id of the message being handled (one frame, reset for each) */
    size_t out_bytes; /* what the outbox holds, about: a turn stops reading past a bound */
    uint64_t seq;
    fz_history_t *history; /* recent events, for subscribers that missed some */
    int64_t next_heartbeat_ms;
    int64_t next_rerank_ms;
    bool budget_moved; /* spend, reservations or cap changed: release held tasks this turn */
    struct {
        uint64_t turns, commits; /* since start: loop turns, and those that wrote the store */
        double turn_s, commit_s; /* seconds spent in them (commit: of the turns that wrote) */
        double sync_s;           /* --sync full: the commits' fdatasyncs, beside the loop */
    } loop;
    int64_t next_key_prune_ms; /* when expired idempotency keys are next deleted */
    zhashx_t *guard;           /* worker name -> its record of lost attempts (fz_guard.c) */
    uint64_t rng;
    fz_auth_t *auth;              /* the ZAP handler; NULL: CURVE off, every peer is admin */
    fz_role_t peer_role;          /* the role of the message being handled */
    char peer_user[FZ_AUTH_USER]; /* its ZAP user id ("client:alice"); "" with CURVE off */
};

/* A stack of (id, state) pairs: graph walks use it instead of recursion, so a dependency
   chain of any length cannot overflow the C stack. */
typedef struct {
    struct item {
        uint64_t id;
        int state;
    } * v;
    size_t n, cap;
} walk_t;

/* Where a waiting task stands: dependencies not yet ended, or the first --after one that
   ended without success. */
typedef struct {
    uint32_t pending;
    uint64_t failed;
    fz_state_t failed_state;
} waitcount_t;

/* A request handler (clients) and a worker-message handler (w: the sender, known). */
typedef void(handler_fn)(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
typedef void(worker_fn)(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w);

/* broker */
void fz_broker_idkey(uint64_t id, char key[24]);
fz_task_t *fz_broker_task(fz_broker_t *self, uint64_t id);
/* Takes t into the task table (its owner), and among the tasks with a deadline if it has one. */
void fz_broker_adopt(fz_broker_t *self, fz_task_t *t);
void fz_broker_hexkey(zframe_t *frame, char *key, size_t size);
/* The same of a routing id's bytes. */
void fz_broker_hexkey_of(const void *id, size_t n, char *key, size_t size);
fz_worker_t *fz_broker_worker(fz_broker_t *self, zframe_t *from);
double fz_broker_random(fz_broker_t *self);
bool fz_broker_model_allowed(fz_broker_t *self, const char *model);
int fz_broker_state_of(fz_broker_t *self, uint64_t id);
/* A task of the store moved from state `from` (-1: it is new) to `to`: keeps counts. */
void fz_broker_count_move(fz_broker_t *self, int from, int to);
void fz_broker_reload(fz_broker_t *self);

/* outbox */
out_t *fz_outbox_add(fz_broker_t *self, zframe_t *to, fz_enc_t *enc);
/* The same, to a routing id given as bytes (len 0: an event). */
out_t *fz_outbox_add_id(fz_broker_t *self, const void *to, size_t len, fz_enc_t *enc);
/* The same, to a worker's connection. */
out_t *fz_outbox_add_to(fz_broker_t *self, const fz_worker_t *w, fz_enc_t *enc);
void fz_outbox_reply(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_enc_t *enc);
/* Queues an error reply: its code, its reason for programs and a message for people. */
void fz_outbox_error(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_err_t code,
                     fz_reason_t reason, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* The same for task `index` of a batch (the reply names it). */
void fz_outbox_error_at(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_err_t code,
                        fz_reason_t reason, size_t index, const char *message);
/* Queues the error reply to a frame the codec refused: it carries the frame's rid when that
   could be read (head, or NULL: it could not), and none otherwise (PROTOCOL.md section 3). */
void fz_outbox_refuse(fz_broker_t *self, zframe_t *to, const fz_msg_head_t *head, fz_err_t code,
                      fz_reason_t reason, const char *message);
/* Queues an event of `topic` with the common task fields (t may be NULL) and returns it, so
   the caller can add fields until the turn is sent; NULL (swallowing writes) on no memory. */
fz_enc_t *fz_outbox_event(fz_broker_t *self, fz_topic_t topic, const fz_task_t *t);
void fz_outbox_flush(fz_broker_t *self);
/* The turn's commit failed (rolled back): its replies become `unavailable` errors, the rest
   is dropped, and memory is reloaded from the store; sent at once unless a sync is under way
   (then after the messages it holds, in order). */
void fz_outbox_abandon(fz_broker_t *self);
/* The commit just made waits for its sync: its messages move to held (held is empty). */
void fz_outbox_hold(fz_broker_t *self);
/* Its sync has ended: the held messages are sent (as fz_outbox_flush sends). */
void fz_outbox_release(fz_broker_t *self);
/* Its sync failed: the held messages are dropped unsent. */
void fz_outbox_drop_held(fz_broker_t *self);

/* life */

/* What goes with a move (fz_life_move); every field may be left out. */
typedef struct {
    fz_topic_t topic;          /* the event; FZ_TOPIC_NONE: the new state's own */
    const char *reason;        /* stored with the state (a hold's reason); on the event */
    const char *summary;       /* dep-failed: why (the task's summary); on the event */
    const fz_result_t *result; /* the attempt that ended: stored with the state in one write */
    const fz_worker_t *worker; /* running: where attempt t->attempt starts */
    const char *model;         /* running: the model it runs */
} fz_move_t;

/* The one place a task's state changes: checks the move against the life cycle's table
   (fz_rules_move_allowed), writes the store, sets it in memory and queues its event. Returns
   the event (add fields until the turn is sent), or NULL if the move was refused or not
   stored (then memory is unchanged and the turn will not commit). Queues, timers and the
   budget are the caller's: a move says what happened, not where the task now waits. */
fz_enc_t *fz_life_move(fz_broker_t *self, fz_task_t *t, fz_state_t to, const fz_move_t *how);
void fz_life_timed_add(fz_broker_t *self, fz_task_t *t);
void fz_life_timed_remove(fz_broker_t *self, fz_task_t *t);
/* The attempt t made stays on record but uses no retry (attempt_base, stored). */
void fz_life_free_attempt(fz_broker_t *self, fz_task_t *t);
/* Running with nobody (a restart, a worker cut off): its worker may still claim it or send
   its result; after FZ_ORPHAN_PERIODS heartbeats without either it is lost. */
void fz_life_orphan(fz_broker_t *self, fz_task_t *t);
void fz_life_drop(fz_broker_t *self, fz_task_t *t);
double fz_life_deadline_boost(const fz_broker_t *self, const fz_task_t *t, double now);
double fz_life_aging(const fz_broker_t *self, const fz_task_t *t, double now);
double fz_life_effective(const fz_broker_t *self, const fz_task_t *t, double now);
void fz_life_rerank(fz_broker_t *self, fz_task_t *t);
void fz_life_ready(fz_broker_t *self, fz_task_t *t);
void fz_life_budget_moved(fz_broker_t *self);
void fz_life_release_held(fz_broker_t *self);
void fz_life_unrun(fz_broker_t *self, fz_task_t *t);
void fz_life_retry_later(fz_broker_t *self, fz_task_t *t, uint32_t delay_ms);
uint32_t fz_life_backoff_ms(fz_broker_t *self, uint32_t failures);
void fz_life_lost(fz_broker_t *self, fz_task_t *t, const char *why);
void fz_life_send_cancel(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt,
                         const char *reason);
void fz_life_dispatch(fz_broker_t *self);
void fz_life_cancel(fz_broker_t *self, fz_task_t *t);

/* The dispatch of attempt n of t to w, on model, held to reserved; a failed check of attempt
   prev (0: none) goes with the prompt. */
void fz_life_send_dispatch(fz_broker_t *self, const fz_task_t *t, fz_worker_t *w, uint32_t n,
                           uint32_t prev, const char *model, double reserved);
/* What one attempt of t reserves and is held to: its --max-cost, or the broker's default. */
double fz_life_attempt_cap(const fz_broker_t *self, const fz_task_t *t);

/* race (best-of-N rounds, fz_race.c) */
/* A round starts: its primary attempt has started; its racers wait for idle workers. */
void fz_race_begin(fz_broker_t *self, fz_task_t *t);
/* True if some round waits for workers. */
bool fz_race_waiting(const fz_broker_t *self);
/* Gives the idle worker w a racer of a round that waits, if it serves one; true if so. */
bool fz_race_join(fz_broker_t *self, fz_worker_t *w);
/* Sends cancel to the round's racers and starts no more (the task is being cancelled). */
void fz_race_cancel(fz_broker_t *self, fz_task_t *t, const char *reason);
/* The round is over (its primary ended): the racers still running are cancelled, their
   workers busy with them until their results come (w->left_task); reservations released. */
void fz_race_end(fz_broker_t *self, fz_task_t *t, uint32_t winner);
/* The attempt number the next attempt of t follows (after every attempt a round started). */
uint32_t fz_race_last_attempt(const fz_task_t *t);
/* Rounds t has started (what --retries counts for a best-of task). */
uint32_t fz_race_rounds(const fz_task_t *t);
/* True if attempt n of t is one of its running racers. */
bool fz_race_runs(const fz_task_t *t, uint32_t n);
/* The racer n succeeded: it becomes the primary, whose result the task takes. */
void fz_race_won(fz_task_t *t, uint32_t n);
/* Attempt n of t ended without success while another of its round runs: records it and
   drops it from the round (a racer takes the primary's place). False if n is the last one
   standing: then the task's own policy applies. */
bool fz_race_drop(fz_broker_t *self, fz_task_t *t, uint32_t n, const fz_result_t *r);
/* w, running an attempt of t, is gone: as fz_race_drop with outcome lost. */
bool fz_race_lost(fz_broker_t *self, fz_task_t *t, fz_worker_t *w, const char *why);
/* The result of an attempt w ran for a task whose round another attempt won: recorded; true
   if it was that. */
bool fz_race_late(fz_broker_t *self, fz_worker_t *w, uint64_t id, uint32_t n, const fz_result_t *r);
/* w is gone while it ran such an attempt: recorded as lost. */
void fz_race_left_lost(fz_broker_t *self, fz_worker_t *w, const char *why);
/* An event about t whose attempt field is n (a racer's) rather than the primary's. */
fz_enc_t *fz_race_event(fz_broker_t *self, fz_topic_t topic, fz_task_t *t, uint32_t n);

/* graph */
void fz_walk_push(walk_t *w, uint64_t id, int state);
bool fz_walk_pop(walk_t *w, uint64_t *id, int *state);
void fz_graph_inherit(fz_broker_t *self, fz_task_t *t);
waitcount_t fz_graph_count(fz_broker_t *self, uint64_t id);
void fz_graph_recheck(fz_broker_t *self, fz_task_t *d, walk_t *ended);
void fz_graph_final(fz_broker_t *self, fz_task_t *t);
void fz_graph_depfail_why(uint64_t dep, fz_state_t state, char *why, size_t wl);
fz_task_t *fz_graph_revive(fz_broker_t *self, uint64_t id, fz_state_t state);
void fz_graph_revive_dependents(fz_broker_t *self, uint64_t id);
void fz_graph_load_waiting(fz_broker_t *self);

/* views */
void fz_views_priority_why(const fz_broker_t *self, const fz_task_t *t, double now, char *out,
                           size_t size);
void fz_views_get(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_views_list(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_views_status(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_views_workers(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_views_budget(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_views_cost(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_views_events(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_views_ping(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);

/* requests */
void fz_requests_submit(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_submit_batch(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_cancel(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_pause(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_resume(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_stop(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_retry(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_priority(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_escalate(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_purge(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_requests_backup(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
/* Deletes expired idempotency keys, at most once per FZ_KEY_PRUNE_MS (and at the first
   call): one indexed DELETE. */
void fz_requests_prune_keys(fz_broker_t *self, int64_t now_ms);

/* guard */
/* The table of worker records (owner of them), NULL on no memory (then nothing is kept). */
zhashx_t *fz_guard_new(void);
/* A worker said hello: a name under quarantine gets no dispatch until it ends. */
void fz_guard_hello(fz_broker_t *self, fz_worker_t *w);
/* Worker w lost its attempt of t (it left with it): recorded against its name; the attempt
   may be let off (uses no retry) and the name quarantined (worker.unhealthy). */
void fz_guard_lost(fz_broker_t *self, fz_worker_t *w, fz_task_t *t);
/* What the result r of attempt n of task id, held to cap, charges the budget: its cost, or a
   suspect one held to the cap (stored, logged, and said on the event e, which may be NULL). */
double fz_guard_charge(fz_broker_t *self, uint64_t id, uint32_t n, double cap, const fz_result_t *r,
                       fz_enc_t *e);

/* workers */
void fz_workers_gone(fz_broker_t *self, fz_worker_t *w, const char *reason);
void fz_workers_reattach(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt);
/* The attempt w held ahead (--prefetch) is given back without using a retry: it never ran. */
void fz_workers_unprefetch(fz_broker_t *self, fz_worker_t *w, const char *why);
/* After a reload: w holds (task, attempt) ahead; take it back if the store has it running
   with nobody, else tell the worker to drop it. */
void fz_workers_reattach_next(fz_broker_t *self, fz_worker_t *w, uint64_t task, uint32_t attempt);
void fz_workers_hello(fz_broker_t *self, zframe_t *from, fz_msg_t *msg);
void fz_workers_heartbeat(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w);
void fz_workers_started(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w);
void fz_workers_output(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w);
void fz_workers_result(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w);
void fz_workers_bye(fz_broker_t *self, zframe_t *from, fz_msg_t *msg, fz_worker_t *w);
/* What a task event says of an attempt that ended: worker (w may be NULL), outcome, exit
   code, cost, duration, summary, class, and its workspace's branch, diff stat and check. */
void fz_workers_event_result(fz_enc_t *e, const fz_worker_t *w, const fz_result_t *r);

#endif
