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

/* ---------------------------------------------------------------- structural check */

typedef struct {
    const uint8_t *end;
    int max_depth;
    const char *why;
} s_walk_t;

static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Header of the value at p: how many bytes its length field takes (hdr), its fixed payload
   (n, when hdr is 0) and whether it is an array (1) or map (2). False for ext/reserved. */
static bool s_header(uint8_t b, int *hdr, uint64_t *n, int *container)
{
    *hdr = 0, *n = 0, *container = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return true;
    if (b >= 0x80 && b <= 0x9f) {
        *n = b & 0x0f;
        *container = b <= 0x8f ? 2 : 1;
        return true;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        *n = b & 0x1f;
        return true;
    }
    switch (b) {
    case 0xc4: case 0xd9: *hdr = 1; return true;
    case 0xc5: case 0xda: *hdr = 2; return true;
    case 0xc6: case 0xdb: *hdr = 4; return true;
    case 0xcc: case 0xd0: *n = 1; return true;
    case 0xcd: case 0xd1: *n = 2; return true;
    case 0xca: case 0xce: case 0xd2: *n = 4; return true;
    case 0xcb: case 0xcf: case 0xd3: *n = 8; return true;
    case 0xdc: *hdr = 2, *container = 1; return true;
    case 0xdd: *hdr = 4, *container = 1; return true;
    case 0xde: *hdr = 2, *container = 2; return true;
    case 0xdf: *hdr = 4, *container = 2; return true;
    default: return false; /* ext types and 0xc1 */
    }
}

/* Skips the value at p; returns the byte after it, or NULL with w->why set. A count is
   trusted only if every element could still get one byte of the frame. */
static const uint8_t *s_walk(s_walk_t *w, const uint8_t *p, int depth)
{
    int hdr, container;
    uint64_t n;
    if (depth > w->max_depth) {
        w->why = "nested too deep";
        return NULL;
    }
    if (p >= w->end) {
        w->why = "truncated";
        return NULL;
    }
    if (!s_header(*p++, &hdr, &n, &container)) {
        w->why = "unsupported msgpack type (ext or reserved)";
        return NULL;
    }
    size_t left = (size_t) (w->end - p);
    if ((size_t) hdr > left) {
        w->why = "truncated length";
        return NULL;
    }
    if (hdr) {
        n = s_be(p, hdr);
        p += hdr;
        left -= (size_t) hdr;
    }
    if (!container) {
        if (n > left) {
            w->why = "length past the end of the frame";
            return NULL;
        }
        return p + n;
    }
    uint64_t items = container == 2 ? n * 2 : n;
    if (items > left) {
        w->why = "count past the end of the frame";
        return NULL;
    }
    for (uint64_t i = 0; i < items && p; i++)
        p = s_walk(w, p, depth + 1);
    return p;
}

const char *fz_event_check(const void *buf, size_t len, int max_depth)
{
    if (!buf || len == 0)
        return "empty frame";
    s_walk_t w = {(const uint8_t *) buf + len, max_depth, NULL};
    const uint8_t *end = s_walk(&w, buf, 0);
    if (!end)
        return w.why;
    return end == w.end ? NULL : "trailing bytes after the value";
}

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
        if ((unsigned char) topic[i] < 0x20)
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
    const char *bad =
        len > FZ_MAX_FRAME ? "frame too large" : fz_event_check(data, len, FZ_MAX_DEPTH);
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
