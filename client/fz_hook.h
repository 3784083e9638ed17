/*  fz_hook: fz-watch --on TOPICS --exec CMD: run a command for each matching event.

    CMD runs with /bin/sh -c, once per matching event, with the event as one line of JSON on
    its stdin (its fields plus "topic", as fz-watch --json prints it) and FZ_EVENT_TOPIC,
    FZ_EVENT_SEQ, FZ_EVENT_TS, FZ_EVENT_TASK, FZ_EVENT_STATE, FZ_EVENT_MODEL, FZ_EVENT_WORKER,
    FZ_EVENT_CLASS and FZ_EVENT_SUMMARY in its environment (control characters escaped; ""
    when the event has no such field). Its stdout and stderr go to fz-watch's stderr, so
    fz-watch's own output stays clean.

    It never blocks the stream: the JSON waits in a memory file (not a pipe a slow hook could
    fill), at most `jobs` hooks run at once, up to `queue` more events wait their turn and the
    rest are dropped (each drop is logged). A hook that runs longer than `timeout` seconds gets
    SIGTERM, then SIGKILL 5 s later, to its whole process group. A hook that exits non-zero,
    is killed, or cannot start is logged on stderr with the event it was for. Every child is
    reaped (fz_hook_poll, fz_hook_destroy). Not thread-safe. */

#ifndef FZ_HOOK_H
#define FZ_HOOK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fz_hook_t fz_hook_t;

/* True if `topics` (comma-separated: "task.failed", "task.*" for a prefix, "*" for all) is
   well-formed; else false with err set. Pure. */
bool fz_hook_topics_valid(const char *topics, char *err, size_t errlen);
/* True if topic is one of topics. Pure. */
bool fz_hook_matches(const char *topics, const char *topic);

/* A hook running cmd for events in topics. NULL on no memory. The strings are copied. */
fz_hook_t *fz_hook_new(const char *topics, const char *cmd, int jobs, size_t queue, double timeout);
/* Waits up to `grace` seconds for running hooks (queued ones are dropped and logged), then
   kills what is left, reaps everything and frees the hook. */
void fz_hook_destroy(fz_hook_t **self_p, double grace);

/* Offers one event (topic, map): queued if it matches. Never blocks. */
void fz_hook_event(fz_hook_t *self, const char *topic, const msgpack_object *map);
/* Reaps hooks that ended (logging failures), stops overdue ones, starts queued ones. Call
   often (fz-watch does every 100 ms while a hook runs). */
void fz_hook_poll(fz_hook_t *self);
/* True while a hook runs or waits. */
bool fz_hook_busy(const fz_hook_t *self);
/* Counts: started, failed (non-zero exit, signal, timeout, spawn error), dropped. */
void fz_hook_counts(const fz_hook_t *self, uint64_t *started, uint64_t *failed, uint64_t *dropped);

#endif
