/*  fz_msg: decode protocol messages and read them; see fz_msg.h and PROTOCOL.md. */

#include "fz_msg.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fz_msg_t {
    char *buf;         /* our copy of the frame: decoded strings point into it */
    msgpack_zone zone; /* the object tree (and NUL-terminated copies of strings) */
    bool zoned;        /* zone initialised */
    msgpack_object data;
    const msgpack_object *root; /* a map, checked against spec */
    const fz_msgspec_t *spec;
    char type[64];
    uint64_t rid;
    bool rid_read;  /* the root is a map whose rid is a uint or absent */
    bool type_read; /* type[] holds the message's type string */
};

/* ---------------------------------------------------------------- structural walk */

typedef struct {
    const uint8_t *end;
    size_t elements; /* containers' elements seen so far */
    size_t max_elements;
    const char *why;
} walk_t;

static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Skips one value at p; returns the byte after it or NULL (w->why says why). Checks every
   length and count against the bytes that remain before trusting it. */
static const uint8_t *s_walk(walk_t *w, const uint8_t *p, int depth)
{
    if (p >= w->end) {
        w->why = "truncated";
        return NULL;
    }
    uint8_t b = *p++;
    size_t left = (size_t)(w->end - p);
    uint64_t n = 0;    /* payload bytes, or elements for containers */
    int container = 0; /* 1 array, 2 map */
    int hdr = 0;       /* bytes of length field */
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return p;
    if (b >= 0x80 && b <= 0x8f)
        n = b & 0x0f, container = 2;
    else if (b >= 0x90 && b <= 0x9f)
        n = b & 0x0f, container = 1;
    else if (b >= 0xa0 && b <= 0xbf)
        n = b & 0x1f;
    else {
        switch (b) {
        case 0xc4:
        case 0xd9:
            hdr = 1;
            break;
        case 0xc5:
        case 0xda:
            hdr = 2;
            break;
        case 0xc6:
        case 0xdb:
            hdr = 4;
            break;
        case 0xca:
            n = 4;
            break;
        case 0xcb:
            n = 8;
            break;
        case 0xcc:
        case 0xd0:
            n = 1;
            break;
        case 0xcd:
        case 0xd1:
            n = 2;
            break;
        case 0xce:
        case 0xd2:
            n = 4;
            break;
        case 0xcf:
        case 0xd3:
            n = 8;
            break;
        case 0xdc:
            hdr = 2;
            container = 1;
            break;
        case 0xdd:
            hdr = 4;
            container = 1;
            break;
        case 0xde:
            hdr = 2;
            container = 2;
            break;
        case 0xdf:
            hdr = 4;
            container = 2;
            break;
        default:
            w->why = "unsupported msgpack type (ext or reserved)";
            return NULL;
        }
        if (hdr) {
            if (left < (size_t)hdr) {
                w->why = "truncated length";
                return NULL;
            }
            n = s_be(p, hdr);
            p += hdr;
            left -= (size_t)hdr;
        }
    }
    if (!container) {
        if (n > left) {
            w->why = "length past end of frame";
            return NULL;
        }
        return p + n;
    }
    if (depth >= FZ_MAX_DEPTH) { /* containers at levels 0..7: the root and 7 more */
        w->why = "nested too deep";
        return NULL;
    }
    uint64_t items = container == 2 ? n * 2 : n;
    if (items > left) { /* every element needs at least one byte */
        w->why = "count past end of frame";
        return NULL;
    }
    w->elements += items;
    if (w->elements > w->max_elements) {
        w->why = "too many elements";
        return NULL;
    }
    for (uint64_t i = 0; i < items && p; i++)
        p = s_walk(w, p, depth + 1);
    return p;
}

/* ---------------------------------------------------------------- field checks */

static bool s_keyeq(const msgpack_object *k, const char *key)
{
    size_t len = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
           memcmp(k->via.str.ptr, key, len) == 0;
}

static const msgpack_object *s_find(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen(key); /* once: every accessor of every message scans a map */
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
            memcmp(k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static bool s_is_str(const msgpack_object *o, size_t max)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size <= max &&
           fz_utf8_valid(o->via.str.ptr, o->via.str.size);
}

static bool s_has_dup_keys(const msgpack_object *map)
{
    const msgpack_object_kv *kv = map->via.map.ptr;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        for (uint32_t j = i + 1; j < map->via.map.size; j++)
            if (kv[i].key.type == MSGPACK_OBJECT_STR && kv[j].key.type == MSGPACK_OBJECT_STR &&
                kv[i].key.via.str.size == kv[j].key.via.str.size &&
                memcmp(kv[i].key.via.str.ptr, kv[j].key.via.str.ptr, kv[i].key.via.str.size) == 0)
                return true;
    return false;
}

static bool s_number_in(const msgpack_object *o, const fz_field_t *f, bool allow_neg,
                        bool allow_float)
{
    double v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (f->max < 1.8e19 && (double)o->via.u64 > f->max)
            return false;
        v = (double)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && allow_neg) {
        v = (double)o->via.i64;
    } else if ((o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) &&
               allow_float) {
        v = o->via.f64;
        if (!isfinite(v))
            return false;
    } else
        return false;
    return v >= f->min && (f->max >= 1.8e19 || v <= f->max);
}

/* Checks one field's value against its spec; returns FZ_OK or the error (why filled). */
static fz_err_t s_check_field(const msgpack_object *o, const fz_field_t *f, char *why, size_t wl)
{
    bool ok = true;
    switch (f->type) {
    case FZ_T_UINT:
        ok = s_number_in(o, f, false, false);
        break;
    case FZ_T_INT:
        ok = s_number_in(o, f, true, false);
        break;
    case FZ_T_FLOAT:
        ok = s_number_in(o, f, true, true);
        break;
    case FZ_T_BOOL:
        ok = o->type == MSGPACK_OBJECT_BOOLEAN;
        break;
    case FZ_T_STR:
        ok = o->type == MSGPACK_OBJECT_STR && fz_utf8_valid(o->via.str.ptr, o->via.str.size) &&
             o->via.str.size >= f->min;
        if (ok && o->via.str.size > f->max) {
            snprintf(why, wl, "field '%s' is %u bytes, over its limit of %.0f", f->key,
                     o->via.str.size, f->max);
            return FZ_ETOOLARGE;
        }
        break;
    case FZ_T_BIN:
        ok = o->type == MSGPACK_OBJECT_BIN || o->type == MSGPACK_OBJECT_STR;
        if (ok && o->via.bin.size > f->max) {
            snprintf(why, wl, "field '%s' is %u bytes, over its limit of %.0f", f->key,
                     o->via.bin.size, f->max);
            return FZ_ETOOLARGE;
        }
        break;
    case FZ_T_STRMAP:
        ok = o->type == MSGPACK_OBJECT_MAP && o->via.map.size <= f->max;
        if (ok && s_has_dup_keys(o)) { /* section 2: at any depth, a duplicate is malformed */
            snprintf(why, wl, "field '%s' has a duplicate key", f->key);
            return FZ_EMALFORMED;
        }
        for (uint32_t i = 0; ok && i < o->via.map.size; i++)
            ok = s_is_str(&o->via.map.ptr[i].key, 64) && o->via.map.ptr[i].key.via.str.size > 0 &&
                 s_is_str(&o->via.map.ptr[i].val, 1024);
        break;
    case FZ_T_STRARR:
        ok = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= f->max;
        for (uint32_t i = 0; ok && i < o->via.array.size; i++)
            ok = s_is_str(&o->via.array.ptr[i], FZ_MAX_NAME) &&
                 (o->via.array.ptr[i].via.str.size || (f->flags & FZ_F_EMPTY));
        break;
    case FZ_T_UINTARR:
        ok = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= f->max;
        for (uint32_t i = 0; ok && i < o->via.array.size; i++)
            ok = o->via.array.ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER;
        break;
    case FZ_T_OBJECT:
        ok = o->type == MSGPACK_OBJECT_MAP && o->via.map.size <= f->max;
        break;
    case FZ_T_OBJARR:
        ok = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= f->max;
        for (uint32_t i = 0; ok && i < o->via.array.size; i++)
            ok = o->via.array.ptr[i].type == MSGPACK_OBJECT_MAP;
        break;
    }
    if (ok && (o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP) &&
        (f->type >= FZ_T_STRMAP) && o->via.array.size < f->min)
        ok = false; /* a container below its minimum count (map and array sizes alias) */
    if (!ok) {
        snprintf(why, wl, "field '%s' must be %s within its limits", f->key, fz_type_name(f->type));
        return FZ_EINVALID;
    }
    return FZ_OK;
}

/* Checks the envelope (v, type, rid) and every field; fills self->spec and self->type. */
static fz_err_t s_check(fz_msg_t *self, char *why, size_t wl)
{
    const msgpack_object *root = self->root;
    if (root->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, wl, "message is not a map");
        return FZ_EMALFORMED;
    }
    const msgpack_object *rid = s_find(root, "rid");
    if (!rid || rid->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        self->rid = rid ? rid->via.u64 : 0;
        self->rid_read = true;
    }
    if (root->via.map.size > 64) {
        snprintf(why, wl, "message has more than 64 fields");
        return FZ_EMALFORMED;
    }
    for (uint32_t i = 0; i < root->via.map.size; i++)
        if (root->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR) {
            snprintf(why, wl, "message has a key that is not a string");
            return FZ_EMALFORMED;
        }
    if (s_has_dup_keys(root)) {
        snprintf(why, wl, "message has a duplicate key");
        return FZ_EMALFORMED;
    }
    const msgpack_object *v = s_find(root, "v");
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        snprintf(why, wl, "field 'v' (protocol version, uint) is missing");
        return FZ_EINVALID;
    }
    if (v->via.u64 != FZ_PROTOCOL_VERSION) {
        snprintf(why, wl, "protocol version %llu is not supported (this side speaks %d)",
                 (unsigned long long)v->via.u64, FZ_PROTOCOL_VERSION);
        return FZ_EVERSION;
    }
    if (rid && rid->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        snprintf(why, wl, "field 'rid' must be uint");
        return FZ_EINVALID;
    }
    const msgpack_object *type = s_find(root, "type");
    if (!type || !s_is_str(type, 1024)) {
        snprintf(why, wl, "field 'type' (str) is missing");
        return FZ_EINVALID;
    }
    if (type->via.str.size >= sizeof self->type) {
        snprintf(why, wl, "unknown message type '%.40s...'", type->via.str.ptr);
        return FZ_EUNKNOWN;
    }
    memcpy(self->type, type->via.str.ptr, type->via.str.size);
    self->type[type->via.str.size] = 0;
    self->type_read = true;
    self->spec = fz_spec_find(type->via.str.ptr, type->via.str.size);
    if (!self->spec) {
        snprintf(why, wl, "unknown message type '%s'", self->type);
        return FZ_EUNKNOWN;
    }
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        const fz_field_t *f = fz_spec_field(self->spec, kv->key.via.str.ptr, kv->key.via.str.size);
        if (!f)
            continue; /* unknown keys are ignored: newer peers may add optional fields */
        fz_err_t err = s_check_field(&kv->val, f, why, wl);
        if (err)
            return err;
    }
    for (const fz_field_t *f = self->spec->fields; f->key; f++)
        if ((f->flags & FZ_F_REQUIRED) && !s_find(root, f->key)) {
            snprintf(why, wl, "'%s' needs field '%s' (%s)", self->type, f->key,
                     fz_type_name(f->type));
            return FZ_EINVALID;
        }
    return FZ_OK;
}

/* Each element needs a byte, so len bounds the count; half of it bounds the unpacker's
   allocation (24 bytes per object) to 12 x len, refusing only frames made mostly of one-byte
   values in containers, which no fz message is. */
const char *fz_msg_check_frame(const void *buf, size_t len)
{
    if (!buf || len == 0 || len > FZ_MAX_FRAME)
        return len ? "frame too large" : "empty frame";
    walk_t w = {(const uint8_t *)buf + len, 0, len / 2 + 1024, NULL};
    const uint8_t *end = s_walk(&w, buf, 0);
    if (!end)
        return w.why;
    return end == w.end ? NULL : "trailing bytes";
}

fz_err_t fz_msg_check_object(const msgpack_object *map, const char *type, char *why, size_t whylen)
{
    if (whylen)
        *why = 0;
    const fz_msgspec_t *spec = fz_spec_find(type, strlen(type));
    if (!spec || !map || map->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, whylen, "expected a map of '%s' fields", type);
        return FZ_EINVALID;
    }
    if (map->via.map.size > 64) {
        snprintf(why, whylen, "a '%s' map has more than 64 keys", type);
        return FZ_EINVALID;
    }
    if (s_has_dup_keys(map)) { /* section 2: at any depth, a duplicate is malformed */
        snprintf(why, whylen, "a '%s' map has a duplicate key", type);
        return FZ_EMALFORMED;
    }
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            snprintf(why, whylen, "a '%s' map has a key that is not a string", type);
            return FZ_EINVALID;
        }
        const fz_field_t *f = fz_spec_field(spec, kv->key.via.str.ptr, kv->key.via.str.size);
        fz_err_t err = f ? s_check_field(&kv->val, f, why, whylen) : FZ_OK;
        if (err)
            return err;
    }
    for (const fz_field_t *f = spec->fields; f->key; f++)
        if ((f->flags & FZ_F_REQUIRED) && !s_find(map, f->key)) {
            snprintf(why, whylen, "'%s' needs field '%s' (%s)", type, f->key,
                     fz_type_name(f->type));
            return FZ_EINVALID;
        }
    return FZ_OK;
}

/* ---------------------------------------------------------------- strict checks */

static bool s_is_envelope(const msgpack_object *k)
{
    return s_keyeq(k, "v") || s_keyeq(k, "type") || s_keyeq(k, "rid");
}

static fz_err_t s_strict(const msgpack_object *map, const fz_msgspec_t *spec, bool envelope,
                         char *why, size_t wl);

/* The maps inside field f (of spec) against the spec of what it holds, if it has one. */
static fz_err_t s_strict_inside(const msgpack_object *o, const fz_msgspec_t *spec,
                                const fz_field_t *f, char *why, size_t wl)
{
    const fz_msgspec_t *holds = fz_spec_holds(spec, f->key);
    if (!holds || (f->type != FZ_T_OBJECT && f->type != FZ_T_OBJARR))
        return FZ_OK;
    uint32_t n = f->type == FZ_T_OBJECT ? 1 : o->via.array.size;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *m = f->type == FZ_T_OBJECT ? o : &o->via.array.ptr[i];
        const fz_msgspec_t *sub = holds;
        if (strcmp(holds->type, "event") == 0) { /* each event by its topic */
            const msgpack_object *ev = s_find(m, "event");
            sub = ev && ev->type == MSGPACK_OBJECT_STR
                      ? fz_spec_event_named(ev->via.str.ptr, ev->via.str.size)
                      : NULL;
            if (!sub) {
                snprintf(why, wl, "%s.%s[%u]: an event of no known topic", spec->type, f->key, i);
                return FZ_EINVALID;
            }
        }
        char inner[256] = "";
        fz_err_t err = s_strict(m, sub, false, inner, sizeof inner);
        if (err && f->type == FZ_T_OBJECT)
            snprintf(why, wl, "%s.%s: %s", spec->type, f->key, inner);
        else if (err)
            snprintf(why, wl, "%s.%s[%u]: %s", spec->type, f->key, i, inner);
        if (err)
            return err;
    }
    return FZ_OK;
}

static fz_err_t s_strict(const msgpack_object *map, const fz_msgspec_t *spec, bool envelope,
                         char *why, size_t wl)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) {
        snprintf(why, wl, "'%s' is not a map", spec->type);
        return FZ_EINVALID;
    }
    if (s_has_dup_keys(map)) {
        snprintf(why, wl, "'%s' has a duplicate key", spec->type);
        return FZ_EMALFORMED;
    }
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            snprintf(why, wl, "'%s' has a key that is not a string", spec->type);
            return FZ_EINVALID;
        }
        if (envelope && s_is_envelope(&kv->key))
            continue;
        const fz_field_t *f = fz_spec_field(spec, kv->key.via.str.ptr, kv->key.via.str.size);
        if (!f) {
            snprintf(why, wl, "'%s' has a field '%.*s' its spec does not list", spec->type,
                     (int)kv->key.via.str.size, kv->key.via.str.ptr);
            return FZ_EINVALID;
        }
        char inner[256] = "";
        fz_err_t err = s_check_field(&kv->val, f, inner, sizeof inner);
        if (err) {
            snprintf(why, wl, "'%s': %s", spec->type, inner);
            return err;
        }
        err = s_strict_inside(&kv->val, spec, f, why, wl);
        if (err)
            return err;
    }
    for (const fz_field_t *f = spec->fields; f->key; f++)
        if ((f->flags & FZ_F_REQUIRED) && !s_find(map, f->key)) {
            snprintf(why, wl, "'%s' needs field '%s' (%s)", spec->type, f->key,
                     fz_type_name(f->type));
            return FZ_EINVALID;
        }
    return FZ_OK;
}

fz_err_t fz_obj_check_strict(const msgpack_object *map, const fz_msgspec_t *spec, char *why,
                             size_t whylen)
{
    if (whylen)
        *why = 0;
    if (!spec) {
        snprintf(why, whylen, "no spec");
        return FZ_EINVALID;
    }
    return s_strict(map, spec, false, why, whylen);
}

fz_err_t fz_msg_check_strict(const fz_msg_t *msg, char *why, size_t whylen)
{
    if (whylen)
        *why = 0;
    return s_strict(msg->root, msg->spec, true, why, whylen);
}

fz_err_t fz_msg_decode(const void *buf, size_t len, fz_msg_t **msg_p, uint64_t *rid_p, char *why,
                       size_t whylen)
{
    fz_msg_head_t head;
    fz_err_t err = fz_msg_decode_head(buf, len, msg_p, &head, why, whylen);
    if (rid_p)
        *rid_p = head.rid;
    return err;
}

fz_err_t fz_msg_decode_head(const void *buf, size_t len, fz_msg_t **msg_p, fz_msg_head_t *head,
                            char *why, size_t whylen)
{
    char dummy[8];
    if (!why || !whylen)
        why = dummy, whylen = sizeof dummy;
    *why = 0;
    *msg_p = NULL;
    memset(head, 0, sizeof *head);
    if (len == 0 || len > FZ_MAX_FRAME) {
        snprintf(why, whylen, "frame of %zu bytes (must be 1..%u)", len, FZ_MAX_FRAME);
        return FZ_EMALFORMED;
    }
    const char *bad = fz_msg_check_frame(buf, len);
    if (bad) {
        snprintf(why, whylen, "not one msgpack value: %s", bad);
        return FZ_EMALFORMED;
    }
    /* malloc and clear: glibc's calloc bypasses its per-thread cache (one per message) */
    fz_msg_t *self = malloc(sizeof *self);
    if (self)
        memset(self, 0, sizeof *self);
    if (!self || !(self->buf = malloc(len))) {
        free(self);
        snprintf(why, whylen, "out of memory");
        return FZ_EINTERNAL;
    }
    memcpy(self->buf, buf, len);
    /* A zone sized to the frame: msgpack's default takes 8 KiB from malloc for every message
       (beyond the allocator's per-thread cache), where a heartbeat's tree needs a few hundred
       bytes; a bigger tree takes more chunks as it goes. */
    size_t chunk = len < 128 ? 512 : len < 2048 ? 4 * len : 8192;
    if (!(self->zoned = msgpack_zone_init(&self->zone, chunk))) {
        fz_msg_destroy(&self);
        snprintf(why, whylen, "out of memory");
        return FZ_EINTERNAL;
    }
    size_t off = 0;
    if (msgpack_unpack(self->buf, len, &off, &self->zone, &self->data) != MSGPACK_UNPACK_SUCCESS ||
        off != len) {
        snprintf(why, whylen, "msgpack could not unpack the frame");
        fz_msg_destroy(&self);
        return FZ_EMALFORMED;
    }
    self->root = &self->data;
    fz_err_t err = s_check(self, why, whylen);
    head->rid_read = self->rid_read;
    head->rid = self->rid;
    if (self->type_read)
        memcpy(head->type, self->type, sizeof head->type);
    if (err) {
        fz_msg_destroy(&self);
        return err;
    }
    *msg_p = self;
    return FZ_OK;
}

void fz_msg_destroy(fz_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_msg_t *self = *self_p;
    if (self->zoned)
        msgpack_zone_destroy(&self->zone);
    free(self->buf);
    free(self);
    *self_p = NULL;
}

const char *fz_msg_type(const fz_msg_t *self)
{
    return self->type;
}

bool fz_msg_is(const fz_msg_t *self, const char *type)
{
    return strcmp(self->type, type) == 0;
}

uint64_t fz_msg_rid(const fz_msg_t *self)
{
    return self->rid;
}

bool fz_msg_has(const fz_msg_t *self, const char *key)
{
    const msgpack_object *o = s_find(self->root, key);
    return o && o->type != MSGPACK_OBJECT_NIL;
}

const msgpack_object *fz_msg_obj(const fz_msg_t *self, const char *key)
{
    return s_find(self->root, key);
}

const msgpack_object *fz_msg_root(const fz_msg_t *self)
{
    return self->root;
}

uint64_t fz_msg_uint(const fz_msg_t *self, const char *key, uint64_t dflt)
{
    return fz_obj_uint(self->root, key, dflt);
}

int64_t fz_msg_int(const fz_msg_t *self, const char *key, int64_t dflt)
{
    return fz_obj_int(self->root, key, dflt);
}

double fz_msg_float(const fz_msg_t *self, const char *key, double dflt)
{
    return fz_obj_float(self->root, key, dflt);
}

bool fz_msg_bool(const fz_msg_t *self, const char *key, bool dflt)
{
    return fz_obj_bool(self->root, key, dflt);
}

const char *fz_msg_str(fz_msg_t *self, const char *key, const char *dflt, size_t *len_p)
{
    const msgpack_object *o = s_find(self->root, key);
    if (!o || (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN)) {
        if (len_p)
            *len_p = dflt ? strlen(dflt) : 0;
        return dflt;
    }
    char *s = msgpack_zone_malloc(&self->zone, o->via.str.size + 1);
    if (!s)
        return dflt;
    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = 0;
    if (len_p)
        *len_p = o->via.str.size;
    return s;
}

const void *fz_msg_bin(const fz_msg_t *self, const char *key, size_t *len_p)
{
    const msgpack_object *o = s_find(self->root, key);
    if (!o || (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN)) {
        *len_p = 0;
        return NULL;
    }
    *len_p = o->via.bin.size;
    return o->via.bin.ptr;
}

/* ---------------------------------------------------------------- object helpers */

const msgpack_object *fz_obj_get(const msgpack_object *map, const char *key)
{
    return s_find(map, key);
}

uint64_t fz_obj_uint(const msgpack_object *map, const char *key, uint64_t dflt)
{
    const msgpack_object *o = s_find(map, key);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : dflt;
}

int64_t fz_obj_int(const msgpack_object *map, const char *key, int64_t dflt)
{
    const msgpack_object *o = s_find(map, key);
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        return (int64_t)o->via.u64;
    return dflt;
}

double fz_obj_float(const msgpack_object *map, const char *key, double dflt)
{
    const msgpack_object *o = s_find(map, key);
    if (!o)
        return dflt;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return isfinite(o->via.f64) ? o->via.f64 : dflt;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return (double)o->via.i64;
    default:
        return dflt;
    }
}

bool fz_obj_bool(const msgpack_object *map, const char *key, bool dflt)
{
    const msgpack_object *o = s_find(map, key);
    return o && o->type == MSGPACK_OBJECT_BOOLEAN ? o->via.boolean : dflt;
}

const char *fz_obj_strn(const msgpack_object *map, const char *key, size_t *len_p)
{
    const msgpack_object *o = s_find(map, key);
    if (!o || (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN)) {
        *len_p = 0;
        return "";
    }
    *len_p = o->via.str.size;
    return o->via.str.ptr;
}

char *fz_obj_str(const msgpack_object *map, const char *key, char *buf, size_t size)
{
    if (size == 0)
        return buf;
    size_t len;
    const char *s = fz_obj_strn(map, key, &len);
    if (len >= size)
        len = size - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    return buf;
}

/* Bytes as a JSON string: valid UTF-8 passes, every other byte becomes U+FFFD. */
static json_t *s_json_bytes(const char *p, size_t len)
{
    if (fz_utf8_valid(p, len))
        return json_stringn(p, len);
    char *out = malloc(len * 3 + 1);
    if (!out)
        return json_null();
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t step = 1;
        while (step <= 4 && i + step <= len && !fz_utf8_valid(p + i, step))
            step++;
        if (step <= 4 && i + step <= len && p[i] != 0) {
            memcpy(out + n, p + i, step);
            n += step;
            i += step;
        } else {
            memcpy(out + n, "\xef\xbf\xbd", 3);
            n += 3;
            i++;
        }
    }
    json_t *j = json_stringn(out, n);
    free(out);
    return j;
}

static json_t *s_to_json(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer(o->via.u64 > INT64_MAX ? INT64_MAX : (json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return isfinite(o->via.f64) ? json_real(o->via.f64) : json_null();
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        return s_json_bytes(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(a, s_to_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR)
                continue;
            char key[256];
            size_t kl = k->via.str.size < sizeof key ? k->via.str.size : sizeof key - 1;
            memcpy(key, k->via.str.ptr, kl);
            key[kl] = 0;
            json_object_set_new(m, key, s_to_json(&o->via.map.ptr[i].val));
        }
        return m;
    }
    default:
        return json_null();
    }
}

void fz_obj_print_json(const msgpack_object *obj, FILE *out)
{
    json_t *j = s_to_json(obj);
    json_dumpf(j, out, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref(j);
}
