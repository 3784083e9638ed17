/*  fz_enc: build protocol messages key by key; see fz_enc.h. */

#include "fz_enc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct fz_enc_t {
    msgpack_sbuffer body; /* the pairs (or values) written so far */
    msgpack_packer pk;
    size_t pairs;
    msgpack_sbuffer out; /* header + body, made by fz_enc_data */
};

fz_enc_t *fz_enc_new_map(void)
{
    fz_enc_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    msgpack_sbuffer_init(&self->body);
    msgpack_sbuffer_init(&self->out);
    msgpack_packer_init(&self->pk, &self->body, msgpack_sbuffer_write);
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
    msgpack_sbuffer_destroy(&(*self_p)->body);
    msgpack_sbuffer_destroy(&(*self_p)->out);
    free(*self_p);
    *self_p = NULL;
}

static void s_key(fz_enc_t *self, const char *key)
{
    if (!key)
        return;
    size_t len = strlen(key);
    msgpack_pack_str_with_body(&self->pk, key, len);
    self->pairs++;
}

void fz_enc_uint(fz_enc_t *self, const char *key, uint64_t v)
{
    if (!self)
        return;
    s_key(self, key);
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
    msgpack_sbuffer_write(&self->body, data, len);
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
    if (!self)
        return NULL;
    msgpack_sbuffer_clear(&self->out);
    msgpack_packer hp;
    msgpack_packer_init(&hp, &self->out, msgpack_sbuffer_write);
    if (msgpack_pack_map(&hp, self->pairs) != 0 ||
        msgpack_sbuffer_write(&self->out, self->body.data ? self->body.data : "",
                              self->body.size) != 0)
        return NULL;
    *len_p = self->out.size;
    return self->out.data;
}

size_t fz_enc_size(const fz_enc_t *self)
{
    return self ? self->body.size : 0;
}
