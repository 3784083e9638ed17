/*  fz_event: the broker's events (PROTOCOL.md §6) as the client tools receive them.

    An event is two frames, [topic][msgpack map], and is not a request message (no `v`, no
    `type`), so fz_msg_decode does not apply. This module checks the map's structure before
    unpacking it (every count must fit in the bytes left, depth bounded, nothing trailing), so
    garbage on the PUB socket is refused with a reason and never crashes or balloons a
    subscriber. Field types are not trusted either: read them with fz_obj_* (fz_msg.h), which
    give defaults for missing or mistyped values.

    A decoded fz_event_t owns its copy of both frames; the map and strings it returns live as
    long as it does. */

#ifndef FZ_EVENT_H
#define FZ_EVENT_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fz_event_t fz_event_t;

/* Decodes one event. NULL if it is not a valid event (why[] says why in one line). */
fz_event_t *fz_event_decode(const void *topic, size_t topic_len, const void *data, size_t len,
                            char *why, size_t whylen);
void fz_event_destroy(fz_event_t **self_p);

/* Receives and decodes one event from a SUB socket. NULL on interrupt (why[] empty) or on a
   bad event (why[] says why). */
fz_event_t *fz_event_recv(zsock_t *sub, char *why, size_t whylen);

/* The topic as a NUL-terminated string ("task.started"). */
const char *fz_event_topic(const fz_event_t *self);
/* The event map (always a map with string keys). */
const msgpack_object *fz_event_map(const fz_event_t *self);
/* Common fields; 0 when missing. */
uint64_t fz_event_seq(const fz_event_t *self);
double fz_event_ts(const fz_event_t *self);
uint64_t fz_event_task(const fz_event_t *self);

/* One event of an `events` reply (a map whose "event" field is its topic) as an fz_event_t;
   NULL if it is not a valid event. */
fz_event_t *fz_event_from_map(const msgpack_object *map);

/* Filling a gap of the stream (PROTOCOL.md section 4, events): asks client for the events
   numbered after `shown`, in as many replies as it takes (at most 64), and hands those
   before `upto` to show in order, which returns true to stop; a hole the broker no longer
   keeps goes to missed(first, last) before the event after it. Returns the last seq
   accounted for. On a failed ask it stops, with *failed set and the reason in err. */
struct fz_client_t;
typedef bool(fz_event_show_fn)(void *arg, fz_event_t *ev);
typedef void(fz_event_missed_fn)(void *arg, uint64_t first, uint64_t last);
uint64_t fz_event_fill(struct fz_client_t *client, uint64_t shown, uint64_t upto,
                       fz_event_show_fn *show, fz_event_missed_fn *missed, void *arg, char *err,
                       size_t errlen, bool *failed);

#endif
