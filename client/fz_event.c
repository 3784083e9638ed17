/*  fz_event: checked decoding of event frames; see fz_event.h. */

#include "fz_event.h"

#include <stdlib.h>
#include <string.h>

#include "fz_msg.h"
#include "fz_util.h"

#define S_MAX_TOPIC 128

struct fz_event_t {
    char topic[S_MAX_TOPIC + 1];
    char *buf;                 /* our copy of the map frame: the object tree points into it */
    msgpack_unpacked unpacked; /* owns the zone */
    const msgpack_object *map;
};

/* ---------------------------------------------------------------- events */

static bool s_keys_are_strings(const msgpack_object *map)
{
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (map->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR)
            return false;
    return true;
}

static bool s_topic_ok(const char *topic, size_t len)
{
    if (len > S_MAX_TOPIC || !fz_utf8_valid(topic, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)topic[i] < 0x20)
            return false;
    return true;
}

fz_event_t *fz_event_decode(const void *topic, size_t topic_len, const void *data, size_t len,
                            char *why, size_t whylen)
{
    *why = 0;
    if (!s_topic_ok(topic, topic_len)) {
        snprintf(why, whylen, "topic is not a short line of UTF-8 text");
        return NULL;
    }
    const char *bad = fz_msg_check_frame(data, len);
    if (bad) {
        snprintf(why, whylen, "not one msgpack value: %s", bad);
        return NULL;
    }
    fz_event_t *self = calloc(1, sizeof *self);
    if (!self || !(self->buf = malloc(len))) {
        free(self);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    memcpy(self->topic, topic, topic_len);
    self->topic[topic_len] = 0;
    memcpy(self->buf, data, len);
    msgpack_unpacked_init(&self->unpacked);
    size_t off = 0;
    if (msgpack_unpack_next(&self->unpacked, self->buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len) {
        snprintf(why, whylen, "msgpack could not unpack the frame");
        fz_event_destroy(&self);
        return NULL;
    }
    self->map = &self->unpacked.data;
    if (self->map->type != MSGPACK_OBJECT_MAP || !s_keys_are_strings(self->map)) {
        snprintf(why, whylen, "not a map with string keys");
        fz_event_destroy(&self);
    }
    return self;
}

void fz_event_destroy(fz_event_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_event_t *self = *self_p;
    msgpack_unpacked_destroy(&self->unpacked);
    free(self->buf);
    free(self);
    *self_p = NULL;
}

fz_event_t *fz_event_recv(zsock_t *sub, char *why, size_t whylen)
{
    *why = 0;
    zmsg_t *zmsg = zmsg_recv(sub);
    if (!zmsg)
        return NULL;
    fz_event_t *event = NULL;
    if (zmsg_size(zmsg) != 2)
        snprintf(why, whylen, "event of %zu frames (expected 2)", zmsg_size(zmsg));
    else {
        zframe_t *topic = zmsg_first(zmsg);
        zframe_t *map = zmsg_next(zmsg);
        event = fz_event_decode(zframe_data(topic), zframe_size(topic), zframe_data(map),
                                zframe_size(map), why, whylen);
    }
    zmsg_destroy(&zmsg);
    return event;
}

const char *fz_event_topic(const fz_event_t *self)
{
    return self->topic;
}

const msgpack_object *fz_event_map(const fz_event_t *self)
{
    return self->map;
}

uint64_t fz_event_seq(const fz_event_t *self)
{
    return fz_obj_uint(self->map, "seq", 0);
}

double fz_event_ts(const fz_event_t *self)
{
    return fz_obj_float(self->map, "ts", 0);
}

uint64_t fz_event_task(const fz_event_t *self)
{
    return fz_obj_uint(self->map, "task", 0);
}
