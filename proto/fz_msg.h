/*  fz_msg: the protocol codec (PROTOCOL.md), used by every fz binary and test.

    Decoding checks a frame completely before anyone reads it: the structure is walked once
    (every count must fit in the bytes left, depth is bounded, nothing trails the value), then
    the message is checked against fz_spec (version, type, every known field's type and
    limits, required fields, no duplicate keys). A decoded fz_msg_t owns its memory; strings it
    returns live as long as it does.

    Encoding is fz_enc (included here). The codec does no I/O: fz_net moves the bytes. */

#ifndef FZ_MSG_H
#define FZ_MSG_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_enc.h"
#include "fz_spec.h"
#include "fz_util.h"
#include "fz_vocab.h"

typedef struct fz_msg_t fz_msg_t;

/* Decodes one frame. On FZ_OK *msg_p owns a new message. On failure *msg_p is NULL, *rid_p
   (if not NULL) holds the request id when one could be read (else 0), and why[] says what
   is wrong in one line. */
fz_err_t fz_msg_decode(const void *buf, size_t len, fz_msg_t **msg_p, uint64_t *rid_p, char *why,
                       size_t whylen);

/* What decoding could read of a frame's envelope, also when it refused the frame. */
typedef struct {
    bool rid_read; /* the frame is a map whose `rid` is a uint or absent (then rid is 0) */
    uint64_t rid;
    char type[64]; /* the `type` string when it could be read (and fits), else "" */
} fz_msg_head_t;

/* As fz_msg_decode, and fills *head (not NULL) whatever the outcome: a peer answers a frame
   whose rid could not be read with an error that carries no rid (PROTOCOL.md section 3). */
fz_err_t fz_msg_decode_head(const void *buf, size_t len, fz_msg_t **msg_p, fz_msg_head_t *head,
                            char *why, size_t whylen);
void fz_msg_destroy(fz_msg_t **self_p);
/* The structural check decode starts with, for frames that are not protocol messages
   (events): NULL if buf holds exactly one msgpack value, nested at most FZ_MAX_DEPTH deep,
   whose every count fits in the bytes left; else the reason. Safe on any bytes. */
const char *fz_msg_check_frame(const void *buf, size_t len);
/* Checks a nested map (an element of an array field) against the fields of message type
   `type`, as decode checks a whole message. FZ_OK or the error, with why. */
fz_err_t fz_msg_check_object(const msgpack_object *map, const char *type, char *why, size_t whylen);

/* Strict conformance checks, for tests (decoding is lenient: it ignores unknown keys, and
   leaves the objects of replies to their readers). FZ_OK, or the error with why when the map
   has a key its spec does not list, a value of the wrong type or out of its limits, or lacks
   a required key; the maps inside its OBJECT and OBJARR fields are checked the same way
   against the spec of what they hold (fz_spec_holds): a task's attempts, a list's tasks, the
   events of an `events` reply (each by its topic). */
fz_err_t fz_obj_check_strict(const msgpack_object *map, const fz_msgspec_t *spec, char *why,
                             size_t whylen);
/* A decoded message, strictly: its envelope (v, type, rid) and the fields of its type. */
fz_err_t fz_msg_check_strict(const fz_msg_t *msg, char *why, size_t whylen);

/* The message type ("submit", ...); never NULL. */
const char *fz_msg_type(const fz_msg_t *self);
/* True if the type is `type`. */
bool fz_msg_is(const fz_msg_t *self, const char *type);
uint64_t fz_msg_rid(const fz_msg_t *self);
bool fz_msg_has(const fz_msg_t *self, const char *key);

/* Field accessors; a missing field gives the default. Types were checked at decode. */
uint64_t fz_msg_uint(const fz_msg_t *self, const char *key, uint64_t dflt);
int64_t fz_msg_int(const fz_msg_t *self, const char *key, int64_t dflt);
double fz_msg_float(const fz_msg_t *self, const char *key, double dflt);
bool fz_msg_bool(const fz_msg_t *self, const char *key, bool dflt);
/* NUL-terminated string owned by the message; dflt if missing. *len_p gets the length. */
const char *fz_msg_str(fz_msg_t *self, const char *key, const char *dflt, size_t *len_p);
/* Binary field: pointer into the message and its size; NULL if missing. */
const void *fz_msg_bin(const fz_msg_t *self, const char *key, size_t *len_p);
/* Any field as a msgpack object (containers); NULL if missing. */
const msgpack_object *fz_msg_obj(const fz_msg_t *self, const char *key);
/* The whole message as a msgpack map (for printing as JSON, etc.). */
const msgpack_object *fz_msg_root(const fz_msg_t *self);

/* Helpers on msgpack objects received in OBJECT/OBJARR fields. Missing or mistyped values
   give the default, so a reader of broker replies never trusts their shape. */
const msgpack_object *fz_obj_get(const msgpack_object *map, const char *key);
uint64_t fz_obj_uint(const msgpack_object *map, const char *key, uint64_t dflt);
int64_t fz_obj_int(const msgpack_object *map, const char *key, int64_t dflt);
double fz_obj_float(const msgpack_object *map, const char *key, double dflt);
bool fz_obj_bool(const msgpack_object *map, const char *key, bool dflt);
/* String or bin as pointer + length (not NUL-terminated); "" if missing. */
const char *fz_obj_strn(const msgpack_object *map, const char *key, size_t *len_p);
/* Copies a string into buf (NUL-terminated, truncated to fit); returns buf. */
char *fz_obj_str(const msgpack_object *map, const char *key, char *buf, size_t size);
/* Writes any msgpack object as JSON (bin as a string with invalid bytes escaped). */
void fz_obj_print_json(const msgpack_object *obj, FILE *out);

#endif
