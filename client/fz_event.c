/*  fz_event: checked decoding of event frames; see fz_event.h. */

#include "fz_event.h"

#include <stdlib.h>
#include <string.h>

#include "fz_client.h"
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

/* ---------------------------------------------------------------- filling gaps */

fz_event_t *fz_event_from_map(const msgpack_object *map)
{
    char topic[S_MAX_TOPIC + 1], why[128];
    fz_obj_str(map, "event", topic, sizeof topic);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *map);
    fz_event_t *ev = fz_event_decode(topic, strlen(topic), sb.data, sb.size, why, sizeof why);
    msgpack_sbuffer_destroy(&sb);
    return ev;
}

/* The events of one reply: returns the last seq accounted for; *stop when show asked. */
static uint64_t s_fill_reply(const msgpack_object *evs, uint64_t shown, uint64_t upto,
                             fz_event_show_fn *show, fz_event_missed_fn *missed, void *arg,
                             bool *stop)
{
    for (uint32_t i = 0; evs && i < evs->via.array.size && !*stop; i++) {
        uint64_t seq = fz_obj_uint(&evs->via.array.ptr[i], "seq", 0);
        if (seq <= shown || seq >= upto)
            continue;
        if (seq > shown + 1)
            missed(arg, shown + 1, seq - 1);
        fz_event_t *ev = fz_event_from_map(&evs->via.array.ptr[i]);
        if (ev)
            *stop = show(arg, ev);
        fz_event_destroy(&ev);
        shown = seq;
    }
    return shown;
}

uint64_t fz_event_fill(fz_client_t *client, uint64_t shown, uint64_t upto, fz_event_show_fn *show,
                       fz_event_missed_fn *missed, void *arg, char *err, size_t errlen,
                       bool *failed)
{
    bool stop = false;
    *failed = false;
    for (int asks = 0; asks < 64 && !stop && shown + 1 < upto; asks++) {
        fz_enc_t *req = client ? fz_client_request(client, "events") : NULL;
        if (!req)
            break;
        fz_enc_uint(req, "since", shown);
        fz_msg_t *reply = NULL;
        if (fz_client_ask(client, &req, "events", &reply, err, errlen) != FZ_OK) {
            *failed = true;
            break;
        }
        uint64_t before = shown;
        shown = s_fill_reply(fz_msg_obj(reply, "events"), shown, upto, show, missed, arg, &stop);
        bool more = fz_msg_uint(reply, "last", 0) > shown && shown > before;
        fz_msg_destroy(&reply);
        if (!more)
            break;
    }
    return shown;
}
