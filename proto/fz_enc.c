/*  fz_enc: build protocol messages key by key; see fz_enc.h. */

#include "fz_enc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One buffer per message: FZ_ENC_HEAD bytes of room, then the pairs. The map header (whose
   size depends on the count of pairs, known only at the end) is written into that room by
   fz_enc_data, right before the pairs, so the message is never copied to be framed. Small
   messages (most replies and events) live in the struct itself: one allocation each. */
#define FZ_ENC_HEAD 5 /* the largest map header: 0xdf and a 32-bit count */
#define FZ_ENC_INLINE 464

struct fz_enc_t {
    char *buf;       /* small, or a heap copy once it outgrew it */
    size_t len, cap; /* bytes used (FZ_ENC_HEAD included) and held */
    size_t pairs;
    bool failed; /* a write ran out of memory: the message is lost (fz_enc_data: NULL) */
    msgpack_packer pk;
    char small[FZ_ENC_INLINE];
};

/* Makes room for n more bytes (doubling); false when memory ran out (the message is lost). */
static bool s_grow(fz_enc_t *self, size_t n)
{
    if (self->failed)
        return false;
    if (n <= self->cap - self->len)
        return true;
    size_t cap = self->cap * 2;
    if (cap < self->len + n)
        cap = self->len + n;
    char *more = self->buf == self->small ? malloc(cap) : realloc(self->buf, cap);
    if (!more) {
        self->failed = true;
        return false;
    }
    if (self->buf == self->small)
        memcpy(more, self->small, self->len);
    self->buf = more;
    self->cap = cap;
    return true;
}

/* n bytes at the end to fill, or NULL (out of memory). */
static uint8_t *s_room(fz_enc_t *self, size_t n)
{
    if (!s_grow(self, n))
        return NULL;
    uint8_t *p = (uint8_t *)self->buf + self->len;
    self->len += n;
    return p;
}

/* The packer's writer (values other than the short ones written directly below). */
static int s_write(void *data, const char *bytes, size_t n)
{
    uint8_t *p = s_room(data, n);
    if (!p)
        return -1;
    if (n)
        memcpy(p, bytes, n);
    return 0;
}

/* A string shorter than 32 bytes (every key, most values) as a fixstr: header and bytes in one
   write, not the packer's two calls through its writer. */
static void s_short_str(fz_enc_t *self, const char *s, size_t len)
{
    uint8_t *p = s_room(self, 1 + len);
    if (p) {
        p[0] = (uint8_t)(0xa0 | len);
        if (len)
            memcpy(p + 1, s, len);
    }
}

fz_enc_t *fz_enc_new_map(void)
{
    fz_enc_t *self = malloc(sizeof *self);
    if (!self)
        return NULL;
    self->buf = self->small;
    self->len = FZ_ENC_HEAD;
    self->cap = sizeof self->small;
    self->pairs = 0;
    self->failed = false;
    msgpack_packer_init(&self->pk, self, s_write);
    return self;
}

fz_enc_t *fz_enc_new(const char *type, uint64_t rid)
{
    fz_enc_t *self = fz_enc_new_map();
    if (!self)
        return NULL;
    fz_enc_uint(self, "v", FZ_PROTOCOL_VERSION);
    fz_enc_str(self, "type", type);
    if (rid)
        fz_enc_uint(self, "rid", rid);
    return self;
}

fz_enc_t *fz_enc_reply(const char *type, uint64_t rid)
{
    fz_enc_t *self = fz_enc_new(type, 0);
    fz_enc_uint(self, "rid", rid);
    return self;
}

static fz_enc_t *s_error(fz_enc_t *e, fz_err_t code, fz_reason_t reason, const char *message)
{
    if (!e)
        return NULL;
    fz_enc_str(e, "code", fz_strerror(code));
    if (reason != FZ_REASON_NONE)
        fz_enc_str(e, "reason", fz_reason_name(reason));
    fz_enc_str(e, "message", message);
    if (code == FZ_EVERSION) {
        fz_enc_array(e, "supported", 1);
        fz_enc_uint(e, NULL, FZ_PROTOCOL_VERSION);
    }
    return e;
}

fz_enc_t *fz_enc_error(uint64_t rid, fz_err_t code, fz_reason_t reason, const char *message)
{
    return s_error(fz_enc_reply("error", rid), code, reason, message);
}

fz_enc_t *fz_enc_error_norid(fz_err_t code, fz_reason_t reason, const char *message)
{
    return s_error(fz_enc_new("error", 0), code, reason, message);
}

void fz_enc_destroy(fz_enc_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    if ((*self_p)->buf != (*self_p)->small)
        free((*self_p)->buf);
    free(*self_p);
    *self_p = NULL;
}

static void s_key(fz_enc_t *self, const char *key)
{
    if (!key)
        return;
    size_t len = strlen(key);
    if (len < 32)
        s_short_str(self, key, len);
    else
        msgpack_pack_str_with_body(&self->pk, key, len);
    self->pairs++;
}

void fz_enc_uint(fz_enc_t *self, const char *key, uint64_t v)
{
    if (!self)
        return;
    s_key(self, key);
    uint8_t *p;
    if (v < 128 && (p = s_room(self, 1)))
        p[0] = (uint8_t)v; /* a positive fixint */
    else if (v >= 128)
        msgpack_pack_uint64(&self->pk, v);
}

void fz_enc_int(fz_enc_t *self, const char *key, int64_t v)
{
    if (!self)
        return;
    s_key(self, key);
    msgpack_pack_int64(&self->pk, v);
}

void fz_enc_float(fz_enc_t *self, const char *key, double v)
{
    if (!self)
        return;
    s_key(self, key);
    msgpack_pack_double(&self->pk, isfinite(v) ? v : 0.0);
}

void fz_enc_bool(fz_enc_t *self, const char *key, bool v)
{
    if (!self)
        return;
    s_key(self, key);
    if (v)
        msgpack_pack_true(&self->pk);
    else
        msgpack_pack_false(&self->pk);
}

void fz_enc_nil(fz_enc_t *self, const char *key)
{
    if (!self)
        return;
    s_key(self, key);
    msgpack_pack_nil(&self->pk);
}

void fz_enc_str(fz_enc_t *self, const char *key, const char *s)
{
    fz_enc_strn(self, key, s ? s : "", s ? strlen(s) : 0);
}

void fz_enc_strn(fz_enc_t *self, const char *key, const char *s, size_t len)
{
    if (!self)
        return;
    s_key(self, key);
    if (len < 32)
        s_short_str(self, s, len);
    else
        msgpack_pack_str_with_body(&self->pk, s, len);
}

void fz_enc_bin(fz_enc_t *self, const char *key, const void *data, size_t len)
{
    if (!self)
        return;
    s_key(self, key);
    msgpack_pack_bin_with_body(&self->pk, data, len);
}

void fz_enc_array(fz_enc_t *self, const char *key, size_t n)
{
    if (!self)
        return;
    s_key(self, key);
    msgpack_pack_array(&self->pk, n);
}

void fz_enc_map(fz_enc_t *self, const char *key, size_t n)
{
    if (!self)
        return;
    s_key(self, key);
    msgpack_pack_map(&self->pk, n);
}

void fz_enc_obj(fz_enc_t *self, const char *key, const msgpack_object *obj)
{
    if (!self)
        return;
    s_key(self, key);
    msgpack_pack_object(&self->pk, *obj);
}

void fz_enc_raw(fz_enc_t *self, const char *key, const void *data, size_t len)
{
    if (!self)
        return;
    s_key(self, key);
    uint8_t *p = s_room(self, len);
    if (p && len)
        memcpy(p, data, len);
}

void fz_enc_sub(fz_enc_t *self, const char *key, fz_enc_t **sub_p)
{
    if (!self) {
        fz_enc_destroy(sub_p);
        return;
    }
    size_t len;
    const void *data = fz_enc_data(*sub_p, &len);
    if (data)
        fz_enc_raw(self, key, data, len);
    else
        fz_enc_nil(self, key);
    fz_enc_destroy(sub_p);
}

const void *fz_enc_data(fz_enc_t *self, size_t *len_p)
{
    if (!self || self->failed)
        return NULL;
    uint8_t *body = (uint8_t *)self->buf + FZ_ENC_HEAD, *h;
    size_t n = self->pairs;
    if (n < 16) {
        h = body - 1;
        h[0] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h = body - 3;
        h[0] = 0xde;
        h[1] = (uint8_t)(n >> 8);
        h[2] = (uint8_t)n;
    } else {
        h = body - 5;
        h[0] = 0xdf;
        h[1] = (uint8_t)(n >> 24);
        h[2] = (uint8_t)(n >> 16);
        h[3] = (uint8_t)(n >> 8);
        h[4] = (uint8_t)n;
    }
    *len_p = self->len - (size_t)(h - (uint8_t *)self->buf);
    return h;
}

size_t fz_enc_size(const fz_enc_t *self)
{
    return self ? self->len - FZ_ENC_HEAD : 0;
}
