/*  fz_web_hub: the recent events as server-sent-event frames, shared by the thread that
    reads the broker's PUB stream (the one writer) and the HTTP threads that stream them to
    browsers (the readers).

    The hub is a ring of the newest frames, bounded in count and in bytes: it is a cache of
    what the broker published, not state of its own. Each frame has the hub's own number
    (1, 2, ...), which is its SSE `id` as "RUN.N" (RUN is drawn when the hub is made), so a
    browser that reconnects with Last-Event-ID resumes where it stopped, and one that comes
    back to another fz-web run, or later than the ring reaches, is told with a `gap` frame to
    reload what it shows.

    Thread-safe: every function takes the hub's lock. fz_web_hub_read blocks (up to its
    timeout) until there is something to send. */

#ifndef FZ_WEB_HUB_H
#define FZ_WEB_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fz_web_hub_t fz_web_hub_t;

/* A hub holding at most max_frames frames and max_bytes bytes of them. NULL on no memory. */
fz_web_hub_t *fz_web_hub_new(size_t max_frames, size_t max_bytes);
/* Wakes every reader (they return -1), then frees the hub once none is left inside. */
void fz_web_hub_destroy(fz_web_hub_t **self_p);

/* The hub's run id (16 hex characters). */
const char *fz_web_hub_run(const fz_web_hub_t *self);

/* Adds one event (json: its map as one line of JSON) about `task` (0: none); `output` marks
   a task.output event, sent only to streams that follow that task. Returns its number, or 0
   on no memory (the event is then lost to browsers, and counted). */
uint64_t fz_web_hub_push(fz_web_hub_t *self, const char *topic, uint64_t task, bool output,
                         const char *json, size_t len);

/* Wakes the readers so they return -1: fz-web is stopping. */
void fz_web_hub_stop(fz_web_hub_t *self);

/* Where a new stream starts: after the frame named by last_event_id ("RUN.N", from the
   browser's Last-Event-ID header, or NULL), or, for none or one of another run, after the
   newest frame. *gap_p is set when the browser missed frames the hub no longer holds (or
   that another run sent): its first frame must then be a gap. */
uint64_t fz_web_hub_start(fz_web_hub_t *self, const char *last_event_id, bool *gap_p);

/* The next frame numbered *pos_p or later that this stream sends: those of `task` only
   (their output too) or, for task 0, every frame but output; waits up to timeout_ms for one.
   A stream whose *pos_p fell behind the ring gets a gap frame first. Advances *pos_p past
   what it returned or skipped. Returns 1 with *frame_p a malloc'd copy (the caller frees it)
   and its length in *len_p, 0 on timeout (or no memory), -1 when the hub stops. */
int fz_web_hub_next(fz_web_hub_t *self, uint64_t *pos_p, uint64_t task, int timeout_ms,
                    char **frame_p, size_t *len_p);

/* Counts a stream in (+1) or out (-1), for /metrics and so destroy waits for none. */
void fz_web_hub_reader(fz_web_hub_t *self, int delta);

/* Numbers for /metrics: frames pushed, frames dropped for lack of memory, readers now. */
void fz_web_hub_stats(fz_web_hub_t *self, uint64_t *pushed, uint64_t *lost, uint64_t *readers);

/* ---- SSE framing (pure) */

/* One server-sent event: "id: ID\nevent: EVENT\ndata: LINE\n" for each line of data (a
   CR, LF or CRLF ends a line), then a blank line. id and event may be NULL (left out); they
   must not hold CR or LF (those are dropped). Returns a malloc'd, NUL-terminated frame and
   its length in *len_p, or NULL on no memory. */
char *fz_web_sse_frame(const char *id, const char *event, const char *data, size_t len,
                       size_t *len_p);

/* Parses "RUN.N" into run (up to runsize-1 characters) and *n_p. False if malformed. */
bool fz_web_sse_parse_id(const char *id, char *run, size_t runsize, uint64_t *n_p);

#endif
