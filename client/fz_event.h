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

#endif
