/*  fz_enc: the protocol's encoder: builds one msgpack map key by key.

    The map header is written last (fz_enc_data), so callers never count fields. An fz_enc_t
    owns its buffers; fz_enc_sub takes ownership of the map it embeds. No I/O: fz_net sends the
    bytes, fz_msg decodes them. */

#ifndef FZ_ENC_H
#define FZ_ENC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_util.h"
#include "fz_vocab.h"

typedef struct fz_enc_t fz_enc_t;

/* A new message of `type` (v and type set; rid written when not 0): for messages that are
   not replies (worker messages, requests). NULL on no memory. */
fz_enc_t *fz_enc_new(const char *type, uint64_t rid);
/* A reply to a request whose rid is `rid`: rid is always written, 0 included. */
fz_enc_t *fz_enc_reply(const char *type, uint64_t rid);
/* An error reply (PROTOCOL.md section 3), carrying rid (0 included): its code, its
   machine-readable reason (left out when FZ_REASON_NONE) and a message for people; a version
   error lists the versions spoken. */
fz_enc_t *fz_enc_error(uint64_t rid, fz_err_t code, fz_reason_t reason, const char *message);
/* The same error reply without rid: the answer to a frame whose rid could not be read. */
fz_enc_t *fz_enc_error_norid(fz_err_t code, fz_reason_t reason, const char *message);
/* A new bare map, to be embedded with fz_enc_sub. */
fz_enc_t *fz_enc_new_map(void);
void fz_enc_destroy(fz_enc_t **self_p);

/* A NULL encoder (its constructor ran out of memory) swallows every write, and its data is
   NULL: callers need not check each step. */
/* Each writer adds `key: value` to the map; with key NULL it writes a bare value (an element
   of an array or a key/value of a map opened with fz_enc_array / fz_enc_map). */
void fz_enc_uint(fz_enc_t *self, const char *key, uint64_t v);
void fz_enc_int(fz_enc_t *self, const char *key, int64_t v);
void fz_enc_float(fz_enc_t *self, const char *key, double v);
void fz_enc_bool(fz_enc_t *self, const char *key, bool v);
void fz_enc_nil(fz_enc_t *self, const char *key);
void fz_enc_str(fz_enc_t *self, const char *key, const char *s);
void fz_enc_strn(fz_enc_t *self, const char *key, const char *s, size_t len);
void fz_enc_bin(fz_enc_t *self, const char *key, const void *data, size_t len);
/* Opens an array of n elements / a map of n pairs; the next n (2n) bare writes fill it. */
void fz_enc_array(fz_enc_t *self, const char *key, size_t n);
void fz_enc_map(fz_enc_t *self, const char *key, size_t n);
/* Embeds a msgpack object as it is. */
void fz_enc_obj(fz_enc_t *self, const char *key, const msgpack_object *obj);
/* Embeds already-encoded msgpack bytes (one value) as they are. */
void fz_enc_raw(fz_enc_t *self, const char *key, const void *data, size_t len);
/* Embeds the map built in *sub_p and destroys it. */
void fz_enc_sub(fz_enc_t *self, const char *key, fz_enc_t **sub_p);

/* The encoded message; valid until the next write or destroy. NULL if memory ran out. */
const void *fz_enc_data(fz_enc_t *self, size_t *len_p);
/* About how many bytes the message holds so far (its fields, without the map header). */
size_t fz_enc_size(const fz_enc_t *self);

#endif
