/*  msg_test: the protocol codec (proto/fz_msg.c, fz_spec.c, fz_util.c) against PROTOCOL.md.

    Most checks are driven by the spec table itself (fz_spec_find): for every message type and
    every field, a valid value must round-trip through the encoder and the decoder, and every
    kind of wrong value must be refused with the exact error code. Hand-written tests pin the
    wire bytes, the malformed-frame classes, versioning, the JSON printer and the helpers.

    The test_regression_* tests pin promises of PROTOCOL.md and fz_*.h that the codec once
    broke (element cap, nesting depth, too-large for bin, container minimums, JSON scalars,
    strict number parsing, long type names). */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fz_msg.h"

/* Every message type of protocol v1; test_spec_list_is_complete checks it against fz_spec.c. */
static const char *const s_types[] = {"submit",
                                      "submitted",
                                      "get",
                                      "task",
                                      "list",
                                      "tasks",
                                      "status",
                                      "workers",
                                      "cancel",
                                      "ok",
                                      "ping",
                                      "pong",
                                      "error",
                                      "hello",
                                      "welcome",
                                      "heartbeat",
                                      "dispatch",
                                      "started",
                                      "output",
                                      "result",
                                      "result-ack",
                                      "bye",
                                      "pause",
                                      "resume",
                                      "stop",
                                      "retry",
                                      "priority",
                                      "budget",
                                      "cost",
                                      "submit-batch",
                                      "submitted-batch",
                                      "escalate",
                                      "events",
                                      "purge",
                                      "backup"};
#define NTYPES (sizeof s_types / sizeof *s_types)

#define U64_LIMIT 1.8e19 /* a field max at or above this means "any uint64" */

/* ---------------------------------------------------------------- helpers */

static uint64_t s_rid;  /* rid reported by the last s_decode */
static char s_why[256]; /* reason reported by the last s_decode */

/* Decodes buf without judging: the result and the message (NULL unless FZ_OK). */
static fz_err_t s_try(const void *buf, size_t len, fz_msg_t **msg_p)
{
    *msg_p = (fz_msg_t *)&s_rid; /* must be overwritten */
    s_rid = 777777;              /* likewise */
    snprintf(s_why, sizeof s_why, "(not written)");
    return fz_msg_decode(buf, len, msg_p, &s_rid, s_why, sizeof s_why);
}

/* Fails the test unless err is `code`; also checks the failure contract (no message, a
   reason, a rid). Returns msg on FZ_OK (caller destroys), else NULL. Frees msg on failure. */
static fz_msg_t *s_judge(fz_err_t err, fz_msg_t *msg, fz_err_t code, const char *file, int line)
{
    if (err != code) {
        if (err == FZ_OK)
            fz_msg_destroy(&msg);
        print_error("%s:%d: expected '%s', got '%s' (%s)\n", file, line, fz_strerror(code),
                    fz_strerror(err), s_why);
        _fail(file, line);
    }
    if (err == FZ_OK && !msg) {
        print_error("%s:%d: FZ_OK without a message\n", file, line);
        _fail(file, line);
    }
    if (err != FZ_OK && (msg != NULL || s_why[0] == 0 || s_rid == 777777)) {
        print_error("%s:%d: failure must give msg NULL, a reason and a rid (why '%s')\n", file,
                    line, s_why);
        _fail(file, line);
    }
    return msg;
}

static fz_msg_t *s_decode(const void *buf, size_t len, fz_err_t code, const char *file, int line)
{
    fz_msg_t *msg;
    fz_err_t err = s_try(buf, len, &msg);
    return s_judge(err, msg, code, file, line);
}

/* DECODE keeps the message; CHECK only checks the code. */
#define DECODE(buf, len, code) s_decode((buf), (len), (code), __FILE__, __LINE__)
#define CHECK(buf, len, code)                                                                      \
    do {                                                                                           \
        fz_msg_t *m_ = s_decode((buf), (len), (code), __FILE__, __LINE__);                         \
        fz_msg_destroy(&m_);                                                                       \
    } while (0)

/* Decodes what an encoder built; destroys the encoder (before judging, so a failing test
   leaks nothing). */
static fz_msg_t *s_decode_enc(fz_enc_t **enc_p, fz_err_t code, const char *file, int line)
{
    size_t len = 0;
    const void *data = fz_enc_data(*enc_p, &len);
    fz_msg_t *msg = NULL;
    fz_err_t err = data ? s_try(data, len, &msg) : FZ_EINTERNAL;
    fz_enc_destroy(enc_p);
    if (!data) {
        print_error("%s:%d: fz_enc_data failed\n", file, line);
        _fail(file, line);
    }
    return s_judge(err, msg, code, file, line);
}
#define DECODE_ENC(enc, code) s_decode_enc(&(enc), (code), __FILE__, __LINE__)
#define CHECK_ENC(enc, code)                                                                       \
    do {                                                                                           \
        fz_msg_t *m_ = s_decode_enc(&(enc), (code), __FILE__, __LINE__);                           \
        fz_msg_destroy(&m_);                                                                       \
    } while (0)

/* A raw msgpack buffer, for frames the encoder cannot (or should not) make. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} raw_t;

static void s_raw_init(raw_t *r)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

static void s_raw_free(raw_t *r)
{
    msgpack_sbuffer_destroy(&r->sb);
}

static void s_raw_put(raw_t *r, const void *bytes, size_t len)
{
    msgpack_sbuffer_write(&r->sb, bytes, len);
}
#define RAW_PUT(r, lit) s_raw_put((r), (lit), sizeof(lit) - 1)

static void s_raw_str(raw_t *r, const char *s)
{
    msgpack_pack_str_with_body(&r->pk, s, strlen(s));
}

/* Map header of `pairs` pairs, then v: 1 and type: `type` (two of those pairs). */
static void s_raw_envelope(raw_t *r, size_t pairs, const char *type)
{
    msgpack_pack_map(&r->pk, pairs);
    s_raw_str(r, "v");
    msgpack_pack_uint64(&r->pk, FZ_PROTOCOL_VERSION);
    s_raw_str(r, "type");
    s_raw_str(r, type);
}

/* A string of n copies of c (caller frees). */
static char *s_fill(size_t n, char c)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

static void s_assert_double(double got, double want, const char *what)
{
    if (!(got == want)) {
        print_error("%s: got %.17g, want %.17g\n", what, got, want);
        fail();
    }
}

/* A message's JSON as printed by fz_obj_print_json (caller frees). */
static char *s_json_of(const msgpack_object *obj)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    fz_obj_print_json(obj, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* ---------------------------------------------------------------- spec-driven values */

static uint64_t s_good_uint(const fz_field_t *f, unsigned idx)
{
    if (f->max >= U64_LIMIT)
        return UINT64_MAX - idx; /* exercises all 64 bits */
    uint64_t v = (uint64_t)f->min + 1 + idx;
    return v > (uint64_t)f->max ? (uint64_t)f->max : v;
}

static int64_t s_good_int(const fz_field_t *f, unsigned idx)
{
    int64_t v = -(int64_t)idx - 7;
    return v < (int64_t)f->min ? (int64_t)f->min : v;
}

static double s_good_float(const fz_field_t *f, unsigned idx)
{
    double v = f->min + 0.25 + idx; /* exactly representable */
    return v > f->max ? f->max : v;
}

static void s_good_str(const fz_field_t *f, unsigned idx, char *buf, size_t size)
{
    snprintf(buf, size, "\xc3\xa9-%s-%u", f->key, idx);
    if (strlen(buf) > f->max)
        snprintf(buf, size, "x");
}

static void s_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static const unsigned char s_bin4[] = {0x00, 0xff, 0x80};

/* Packs a valid value for field f; idx makes values differ from field to field. */
static void s_pack_good(msgpack_packer *pk, const fz_field_t *f, unsigned idx)
{
    char buf[128];
    unsigned char bin[4];
    switch (f->type) {
    case FZ_T_UINT:
        msgpack_pack_uint64(pk, s_good_uint(f, idx));
        break;
    case FZ_T_INT:
        msgpack_pack_int64(pk, s_good_int(f, idx));
        break;
    case FZ_T_FLOAT:
        msgpack_pack_double(pk, s_good_float(f, idx));
        break;
    case FZ_T_BOOL:
        msgpack_pack_true(pk);
        break;
    case FZ_T_STR:
        s_good_str(f, idx, buf, sizeof buf);
        s_pack_str(pk, buf);
        break;
    case FZ_T_BIN:
        memcpy(bin, s_bin4, 3);
        bin[3] = (unsigned char)idx;
        msgpack_pack_bin_with_body(pk, bin, 4);
        break;
    case FZ_T_STRMAP:
        msgpack_pack_map(pk, 2);
        s_pack_str(pk, "k");
        snprintf(buf, sizeof buf, "v%u", idx);
        s_pack_str(pk, buf);
        s_pack_str(pk, "k\xc3\xa9");
        s_pack_str(pk, "");
        break;
    case FZ_T_STRARR:
        msgpack_pack_array(pk, 2);
        s_pack_str(pk, "m-a");
        snprintf(buf, sizeof buf, "m-%u", idx);
        s_pack_str(pk, buf);
        break;
    case FZ_T_UINTARR:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint64(pk, 1);
        msgpack_pack_uint64(pk, idx + 2);
        msgpack_pack_uint64(pk, UINT64_MAX);
        break;
    case FZ_T_OBJECT:
        msgpack_pack_map(pk, 2);
        s_pack_str(pk, "id");
        msgpack_pack_uint64(pk, idx);
        s_pack_str(pk, "name");
        s_pack_str(pk, "n");
        break;
    case FZ_T_OBJARR:
        msgpack_pack_array(pk, 2);
        msgpack_pack_map(pk, 1);
        s_pack_str(pk, "n");
        msgpack_pack_uint64(pk, 1);
        msgpack_pack_map(pk, 1);
        s_pack_str(pk, "n");
        msgpack_pack_uint64(pk, idx);
        break;
    }
}

/* Checks, through the accessors, that field f of msg holds what s_pack_good packed. */
static void s_check_good(fz_msg_t *msg, const fz_field_t *f, unsigned idx)
{
    char want[128], got[128];
    size_t len = 99;
    const msgpack_object *o = fz_msg_obj(msg, f->key);
    assert_non_null(o);
    assert_true(fz_msg_has(msg, f->key));
    switch (f->type) {
    case FZ_T_UINT:
        assert_true(fz_msg_uint(msg, f->key, 0) == s_good_uint(f, idx));
        break;
    case FZ_T_INT:
        assert_true(fz_msg_int(msg, f->key, 0) == s_good_int(f, idx));
        break;
    case FZ_T_FLOAT:
        s_assert_double(fz_msg_float(msg, f->key, -1), s_good_float(f, idx), f->key);
        break;
    case FZ_T_BOOL:
        assert_true(fz_msg_bool(msg, f->key, false));
        break;
    case FZ_T_STR: {
        s_good_str(f, idx, want, sizeof want);
        const char *s = fz_msg_str(msg, f->key, NULL, &len);
        assert_non_null(s);
        assert_string_equal(s, want);
        assert_int_equal(len, strlen(want));
        break;
    }
    case FZ_T_BIN: {
        const unsigned char *p = fz_msg_bin(msg, f->key, &len);
        assert_non_null(p);
        assert_int_equal(len, 4);
        assert_memory_equal(p, s_bin4, 3);
        assert_int_equal(p[3], (unsigned char)idx);
        break;
    }
    case FZ_T_STRMAP:
        assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
        assert_int_equal(o->via.map.size, 2);
        snprintf(want, sizeof want, "v%u", idx);
        assert_string_equal(fz_obj_str(o, "k", got, sizeof got), want);
        assert_non_null(fz_obj_get(o, "k\xc3\xa9"));
        fz_obj_strn(o, "k\xc3\xa9", &len);
        assert_int_equal(len, 0);
        break;
    case FZ_T_STRARR:
        assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal(o->via.array.size, 2);
        snprintf(want, sizeof want, "m-%u", idx);
        assert_int_equal(o->via.array.ptr[1].type, MSGPACK_OBJECT_STR);
        assert_int_equal(o->via.array.ptr[1].via.str.size, strlen(want));
        assert_memory_equal(o->via.array.ptr[1].via.str.ptr, want, strlen(want));
        break;
    case FZ_T_UINTARR:
        assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal(o->via.array.size, 3);
        assert_true(o->via.array.ptr[0].via.u64 == 1);
        assert_true(o->via.array.ptr[1].via.u64 == idx + 2);
        assert_true(o->via.array.ptr[2].via.u64 == UINT64_MAX);
        break;
    case FZ_T_OBJECT:
        assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
        assert_true(fz_obj_uint(o, "id", 9999) == idx);
        assert_string_equal(fz_obj_str(o, "name", got, sizeof got), "n");
        break;
    case FZ_T_OBJARR:
        assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal(o->via.array.size, 2);
        assert_true(fz_obj_uint(&o->via.array.ptr[0], "n", 9999) == 1);
        assert_true(fz_obj_uint(&o->via.array.ptr[1], "n", 9999) == idx);
        break;
    }
}

/* Every way a value can be wrong. s_pack_bad says which apply to a field. */
typedef enum {
    B_NIL,
    B_WRONG_FAMILY,
    B_NEGATIVE,      /* uint: -1 */
    B_FLOAT_FOR_INT, /* uint/int: 1.0 */
    B_ABOVE_MAX,     /* numbers */
    B_BELOW_MIN,     /* numbers with a lower bound above what the family allows */
    B_NAN,           /* float */
    B_INF,           /* float */
    B_STR_TOO_LONG,  /* str: max + 1 bytes -> too-large */
    B_STR_BAD_UTF8,  /* str: "a\xff" */
    B_STR_NUL,       /* str: "a\0b" */
    B_STR_SURROGATE, /* str: U+D800 encoded */
    B_STR_OVERLONG,  /* str: '/' as 2 bytes */
    B_STR_AS_BIN,    /* str: sent as bin */
    B_STR_EMPTY,     /* str with min 1: "" */
    B_TOO_MANY,      /* containers: max + 1 entries */
    B_ELEM_WRONG,    /* containers: an element (or map value) of the wrong type */
    B_MAP_KEY_INT,   /* map<str,str>: integer key */
    B_MAP_KEY_EMPTY, /* map<str,str>: "" key */
    B_MAP_KEY_LONG,  /* map<str,str>: 65-byte key */
    B_MAP_VAL_LONG,  /* map<str,str>: 1025-byte value */
    B_MAP_DUP_KEY,   /* map<str,str>: same key twice */
    B_MAP_VAL_UTF8,  /* map<str,str>: invalid UTF-8 value */
    B_ARR_EMPTY_STR, /* array<str>: "" */
    B_ARR_LONG_STR,  /* array<str>: 65 bytes */
    B_ARR_NEGATIVE,  /* array<uint>: -1 */
    B_ARR_FLOAT,     /* array<uint>: 1.0 */
    B_COUNT
} bad_t;

static const char *const s_bad_names[B_COUNT] = {"nil",
                                                 "wrong family",
                                                 "negative",
                                                 "float for integer",
                                                 "above max",
                                                 "below min",
                                                 "NaN",
                                                 "inf",
                                                 "str too long",
                                                 "str bad utf-8",
                                                 "str with NUL",
                                                 "str surrogate",
                                                 "str overlong",
                                                 "str as bin",
                                                 "empty str",
                                                 "too many entries",
                                                 "element of wrong type",
                                                 "map int key",
                                                 "map empty key",
                                                 "map long key",
                                                 "map long value",
                                                 "map duplicate key",
                                                 "map value utf-8",
                                                 "array empty str",
                                                 "array long str",
                                                 "array negative",
                                                 "array float"};

static void s_pack_strn(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str_with_body(pk, s, len);
}

/* Packs bad value `bad` for field f and sets *code to the error it must give; false (nothing
   packed) when that kind of mistake does not apply to f. */
static bool s_pack_bad(msgpack_packer *pk, const fz_field_t *f, bad_t bad, fz_err_t *code)
{
    bool number = f->type == FZ_T_UINT || f->type == FZ_T_INT || f->type == FZ_T_FLOAT;
    bool integer = f->type == FZ_T_UINT || f->type == FZ_T_INT;
    bool container = f->type >= FZ_T_STRMAP;
    *code = FZ_EINVALID;
    switch (bad) {
    case B_NIL:
        msgpack_pack_nil(pk);
        return true;
    case B_WRONG_FAMILY:
        if (number)
            s_pack_str(pk, "1");
        else if (f->type == FZ_T_BOOL || f->type == FZ_T_STR || f->type == FZ_T_BIN)
            msgpack_pack_uint64(pk, 1);
        else if (f->type == FZ_T_STRMAP || f->type == FZ_T_OBJECT)
            msgpack_pack_array(pk, 0);
        else
            msgpack_pack_map(pk, 0);
        return true;
    case B_NEGATIVE:
        if (f->type != FZ_T_UINT)
            return false;
        msgpack_pack_int64(pk, -1);
        return true;
    case B_FLOAT_FOR_INT:
        if (!integer)
            return false;
        msgpack_pack_double(pk, 1.0);
        return true;
    case B_ABOVE_MAX:
        if (!number || f->max >= U64_LIMIT)
            return false;
        if (f->type == FZ_T_FLOAT)
            msgpack_pack_double(pk, f->max * 2 + 1);
        else
            msgpack_pack_uint64(pk, (uint64_t)f->max + 1);
        return true;
    case B_BELOW_MIN:
        if (!number || (f->type == FZ_T_UINT && f->min <= 0))
            return false;
        if (f->type == FZ_T_FLOAT)
            msgpack_pack_double(pk, f->min - 1);
        else if (f->type == FZ_T_INT)
            msgpack_pack_int64(pk, (int64_t)f->min - 1);
        else
            msgpack_pack_uint64(pk, (uint64_t)f->min - 1);
        return true;
    case B_NAN:
    case B_INF:
        if (f->type != FZ_T_FLOAT)
            return false;
        msgpack_pack_double(pk, bad == B_NAN ? NAN : INFINITY);
        return true;
    case B_STR_TOO_LONG: {
        if (f->type != FZ_T_STR)
            return false;
        char *s = s_fill((size_t)f->max + 1, 'a');
        s_pack_str(pk, s);
        free(s);
        *code = FZ_ETOOLARGE;
        return true;
    }
    case B_STR_BAD_UTF8:
    case B_STR_NUL:
    case B_STR_SURROGATE:
    case B_STR_OVERLONG:
        if (f->type != FZ_T_STR)
            return false;
        if (bad == B_STR_BAD_UTF8)
            s_pack_strn(pk, "a\xff", 2);
        else if (bad == B_STR_NUL)
            s_pack_strn(pk, "a\0b", 3);
        else if (bad == B_STR_SURROGATE)
            s_pack_strn(pk, "\xed\xa0\x80", 3);
        else
            s_pack_strn(pk, "\xc0\xaf", 2);
        return true;
    case B_STR_AS_BIN:
        if (f->type != FZ_T_STR)
            return false;
        msgpack_pack_bin_with_body(pk, "abc", 3);
        return true;
    case B_STR_EMPTY:
        if (f->type != FZ_T_STR || f->min < 1)
            return false;
        s_pack_str(pk, "");
        return true;
    case B_TOO_MANY: {
        /* Elements are big enough (>= 5 bytes) to stay clear of the decoder's element cap,
           and the whole frame must fit in FZ_MAX_FRAME. */
        if (!container || f->max > 200000)
            return false;
        uint32_t n = (uint32_t)f->max + 1;
        char key[32];
        if (f->type == FZ_T_STRMAP || f->type == FZ_T_OBJECT) {
            msgpack_pack_map(pk, n);
            for (uint32_t i = 0; i < n; i++) {
                snprintf(key, sizeof key, "key-%05u", (unsigned)i);
                s_pack_str(pk, key);
                s_pack_str(pk, "value");
            }
        } else {
            msgpack_pack_array(pk, n);
            for (uint32_t i = 0; i < n; i++) {
                if (f->type == FZ_T_STRARR) {
                    snprintf(key, sizeof key, "model-%05u", (unsigned)i);
                    s_pack_str(pk, key);
                } else if (f->type == FZ_T_UINTARR) {
                    msgpack_pack_uint64(pk, 100000 + i); /* 5 bytes each */
                } else {
                    msgpack_pack_map(pk, 1);
                    s_pack_str(pk, "abcdefghijk");
                    msgpack_pack_uint64(pk, i & 0x7f);
                }
            }
        }
        return true;
    }
    case B_ELEM_WRONG:
        if (f->type == FZ_T_STRMAP) {
            msgpack_pack_map(pk, 1);
            s_pack_str(pk, "k");
            msgpack_pack_uint64(pk, 1);
        } else if (f->type == FZ_T_STRARR || f->type == FZ_T_OBJARR) {
            msgpack_pack_array(pk, 1);
            msgpack_pack_uint64(pk, 1);
        } else if (f->type == FZ_T_UINTARR) {
            msgpack_pack_array(pk, 1);
            s_pack_str(pk, "1");
        } else
            return false;
        return true;
    case B_MAP_KEY_INT:
    case B_MAP_KEY_EMPTY:
    case B_MAP_KEY_LONG:
    case B_MAP_VAL_LONG:
    case B_MAP_VAL_UTF8: {
        if (f->type != FZ_T_STRMAP)
            return false;
        msgpack_pack_map(pk, 1);
        char *s = s_fill(bad == B_MAP_KEY_LONG ? 65 : 1025, 'k');
        if (bad == B_MAP_KEY_INT)
            msgpack_pack_uint64(pk, 7);
        else if (bad == B_MAP_KEY_EMPTY)
            s_pack_str(pk, "");
        else if (bad == B_MAP_KEY_LONG)
            s_pack_str(pk, s);
        else
            s_pack_str(pk, "k");
        if (bad == B_MAP_VAL_LONG)
            s_pack_str(pk, s);
        else if (bad == B_MAP_VAL_UTF8)
            s_pack_strn(pk, "\xe2\x82", 2);
        else
            s_pack_str(pk, "v");
        free(s);
        return true;
    }
    case B_MAP_DUP_KEY:
        if (f->type != FZ_T_STRMAP)
            return false;
        *code = FZ_EMALFORMED; /* section 2: a duplicated key, at any depth */
        msgpack_pack_map(pk, 2);
        s_pack_str(pk, "k");
        s_pack_str(pk, "1");
        s_pack_str(pk, "k");
        s_pack_str(pk, "2");
        return true;
    case B_ARR_EMPTY_STR:
    case B_ARR_LONG_STR: {
        if (f->type != FZ_T_STRARR)
            return false;
        char *s = s_fill(bad == B_ARR_EMPTY_STR ? 0 : 65, 'm');
        msgpack_pack_array(pk, 1);
        s_pack_str(pk, s);
        free(s);
        return true;
    }
    case B_ARR_NEGATIVE:
    case B_ARR_FLOAT:
        if (f->type != FZ_T_UINTARR)
            return false;
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint64(pk, 1);
        if (bad == B_ARR_NEGATIVE)
            msgpack_pack_int64(pk, -1);
        else
            msgpack_pack_double(pk, 1.0);
        return true;
    case B_COUNT:
        break;
    }
    return false;
}

/* Builds a `spec` message holding every required field (valid), plus field `over` with bad
   value `bad` (over may be required or optional). False if `bad` does not apply to `over`. */
static bool s_build_bad(raw_t *r, const fz_msgspec_t *spec, const fz_field_t *over, bad_t bad,
                        fz_err_t *code)
{
    size_t pairs = 2;
    for (const fz_field_t *f = spec->fields; f->key; f++)
        if ((f->flags & FZ_F_REQUIRED) || f == over)
            pairs++;
    /* Pack the bad value first, to know whether it applies. */
    raw_t val;
    s_raw_init(&val);
    if (!s_pack_bad(&val.pk, over, bad, code)) {
        s_raw_free(&val);
        return false;
    }
    s_raw_envelope(r, pairs, spec->type);
    unsigned idx = 0;
    for (const fz_field_t *f = spec->fields; f->key; f++, idx++) {
        if (f == over) {
            s_raw_str(r, f->key);
            s_raw_put(r, val.sb.data, val.sb.size);
        } else if (f->flags & FZ_F_REQUIRED) {
            s_raw_str(r, f->key);
            s_pack_good(&r->pk, f, idx);
        }
    }
    s_raw_free(&val);
    return true;
}

/* ---------------------------------------------------------------- the spec table */

static void test_spec_types_known(void **state)
{
    (void)state;
    for (size_t i = 0; i < NTYPES; i++) {
        const fz_msgspec_t *spec = fz_spec_find(s_types[i], strlen(s_types[i]));
        assert_non_null(spec);
        assert_string_equal(spec->type, s_types[i]);
        for (const fz_field_t *f = spec->fields; f->key; f++) {
            assert_true(fz_spec_field(spec, f->key, strlen(f->key)) == f);
            assert_true(f->min <= f->max || f->type == FZ_T_BOOL);
            assert_true(strcmp(fz_type_name(f->type), "?") != 0);
        }
        assert_null(fz_spec_field(spec, "no-such-field", 13));
    }
    assert_null(fz_spec_find("frobnicate", 10));
    assert_null(fz_spec_find("", 0));
    assert_null(fz_spec_find("Submit", 6));
    /* Lengths are honoured: a prefix is looked up, not the C string. */
    const fz_msgspec_t *spec = fz_spec_find("submitted", 6);
    assert_non_null(spec);
    assert_string_equal(spec->type, "submit");
    assert_null(fz_spec_find("submit", 5));
    assert_string_equal(fz_type_name(FZ_T_UINT), "uint");
    assert_string_equal(fz_type_name(FZ_T_STRMAP), "map<str,str>");
    assert_string_equal(fz_type_name((fz_type_t)999), "?");
}

/* The list of types this test visits (s_types) is the spec table's, both ways: a type added
   to fz_spec.c without a test here fails, and so does a stale entry here. */
static void test_spec_list_is_complete(void **state)
{
    (void)state;
    for (size_t i = 0; i < fz_spec_count(); i++) {
        const char *name = fz_spec_at(i)->type;
        bool listed = false;
        for (size_t k = 0; k < NTYPES; k++)
            listed = listed || strcmp(s_types[k], name) == 0;
        if (!listed)
            fail_msg("message type '%s' of fz_spec.c is not in msg_test's s_types", name);
    }
    assert_int_equal(fz_spec_count(), NTYPES);
    assert_null(fz_spec_at(fz_spec_count()));
}

/* ---------------------------------------------------------------- round trips */

/* Every type, every field set to a valid value (plus rid and an unknown field): decodes, and
   the accessors give back exactly what was sent. */
static void test_roundtrip_every_type_every_field(void **state)
{
    (void)state;
    for (size_t t = 0; t < NTYPES; t++) {
        const fz_msgspec_t *spec = fz_spec_find(s_types[t], strlen(s_types[t]));
        assert_non_null(spec);
        fz_enc_t *enc = fz_enc_new(spec->type, 1000 + t);
        assert_non_null(enc);
        unsigned idx = 0;
        for (const fz_field_t *f = spec->fields; f->key; f++, idx++) {
            raw_t val;
            s_raw_init(&val);
            s_pack_good(&val.pk, f, idx);
            fz_enc_raw(enc, f->key, val.sb.data, val.sb.size);
            s_raw_free(&val);
        }
        fz_enc_str(enc, "x-future-field", "ignored");
        fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
        assert_string_equal(fz_msg_type(msg), spec->type);
        assert_true(fz_msg_is(msg, spec->type));
        assert_false(fz_msg_is(msg, "no-such-type"));
        assert_true(fz_msg_rid(msg) == 1000 + t);
        assert_true(s_rid == 1000 + t);
        idx = 0;
        for (const fz_field_t *f = spec->fields; f->key; f++, idx++)
            s_check_good(msg, f, idx);
        fz_msg_destroy(&msg);
        assert_null(msg);
    }
}

/* Every type with only its required fields decodes; without any one of them it is invalid,
   and the reason names the field. */
static void test_required_fields(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t t = 0; t < NTYPES; t++) {
        const fz_msgspec_t *spec = fz_spec_find(s_types[t], strlen(s_types[t]));
        for (const fz_field_t *skip_f = NULL;;) {
            size_t pairs = 2;
            for (const fz_field_t *f = spec->fields; f->key; f++)
                if ((f->flags & FZ_F_REQUIRED) && f != skip_f)
                    pairs++;
            raw_t r;
            s_raw_init(&r);
            s_raw_envelope(&r, pairs, spec->type);
            unsigned idx = 0;
            for (const fz_field_t *f = spec->fields; f->key; f++, idx++)
                if ((f->flags & FZ_F_REQUIRED) && f != skip_f) {
                    s_raw_str(&r, f->key);
                    s_pack_good(&r.pk, f, idx);
                }
            if (!skip_f) {
                fz_msg_t *msg = DECODE(r.sb.data, r.sb.size, FZ_OK);
                for (const fz_field_t *f = spec->fields; f->key; f++)
                    if (!(f->flags & FZ_F_REQUIRED))
                        assert_false(fz_msg_has(msg, f->key));
                fz_msg_destroy(&msg);
            } else {
                CHECK(r.sb.data, r.sb.size, FZ_EINVALID);
                if (!strstr(s_why, skip_f->key))
                    fail_msg("%s without %s: reason '%s' does not name it", spec->type, skip_f->key,
                             s_why);
                checked++;
            }
            s_raw_free(&r);
            /* next required field to leave out */
            const fz_field_t *next = skip_f ? skip_f + 1 : spec->fields;
            while (next->key && !(next->flags & FZ_F_REQUIRED))
                next++;
            if (!next->key)
                break;
            skip_f = next;
        }
    }
    assert_true(checked >= 20); /* the spec has about 25 required fields */
}

/* Every type x every field x every applicable mistake: the exact error code, and a reason
   that names the field. */
static void test_every_field_rejects_bad_values(void **state)
{
    (void)state;
    size_t checked = 0;
    for (size_t t = 0; t < NTYPES; t++) {
        const fz_msgspec_t *spec = fz_spec_find(s_types[t], strlen(s_types[t]));
        for (const fz_field_t *f = spec->fields; f->key; f++) {
            for (int b = 0; b < B_COUNT; b++) {
                raw_t r;
                s_raw_init(&r);
                fz_err_t want;
                if (!s_build_bad(&r, spec, f, (bad_t)b, &want)) {
                    s_raw_free(&r);
                    continue;
                }
                fz_msg_t *msg = NULL;
                char why[256] = "";
                fz_err_t got = fz_msg_decode(r.sb.data, r.sb.size, &msg, NULL, why, sizeof why);
                s_raw_free(&r);
                fz_msg_destroy(&msg);
                if (got != want)
                    fail_msg("%s.%s (%s), %s: expected '%s', got '%s' (%s)", spec->type, f->key,
                             fz_type_name(f->type), s_bad_names[b], fz_strerror(want),
                             fz_strerror(got), why);
                if (!strstr(why, f->key))
                    fail_msg("%s.%s, %s: reason '%s' does not name the field", spec->type, f->key,
                             s_bad_names[b], why);
                checked++;
            }
        }
    }
    print_message("%zu bad values refused\n", checked);
    assert_true(checked > 300);
}

/* The simplest message, byte by byte as PROTOCOL.md describes it. */
static void test_wire_bytes_ping(void **state)
{
    (void)state;
    static const char ping[] = "\x82\xa1v\x01\xa4type\xa4ping";
    fz_msg_t *msg = DECODE(ping, sizeof ping - 1, FZ_OK);
    assert_string_equal(fz_msg_type(msg), "ping");
    assert_true(fz_msg_rid(msg) == 0);
    assert_true(s_rid == 0);
    fz_msg_destroy(&msg);

    /* The encoder writes the same bytes (v first, then type, no rid when 0). */
    fz_enc_t *enc = fz_enc_new("ping", 0);
    size_t len;
    const void *data = fz_enc_data(enc, &len);
    assert_int_equal(len, sizeof ping - 1);
    assert_memory_equal(data, ping, len);
    /* fz_enc_data is repeatable. */
    data = fz_enc_data(enc, &len);
    assert_int_equal(len, sizeof ping - 1);
    assert_memory_equal(data, ping, len);
    fz_enc_destroy(&enc);
    assert_null(enc);
    fz_enc_destroy(&enc); /* NULL is fine */
    fz_enc_destroy(NULL);
    fz_msg_destroy(NULL);

    /* Any msgpack encoding of the same values is accepted (str8 / uint64 / map16 forms). */
    static const char wide[] = "\xde\x00\x02\xd9\x01v\xcf\x00\x00\x00\x00\x00\x00\x00\x01"
                               "\xda\x00\x04type\xdb\x00\x00\x00\x04ping";
    msg = DECODE(wide, sizeof wide - 1, FZ_OK);
    assert_string_equal(fz_msg_type(msg), "ping");
    fz_msg_destroy(&msg);
    /* Positive values in signed encodings are integers like any other. */
    static const char signd[] = "\x83\xa1v\xd0\x01\xa4type\xa4ping\xa3rid\xd3\x00\x00\x00\x00"
                                "\x00\x00\x00\x2a";
    msg = DECODE(signd, sizeof signd - 1, FZ_OK);
    assert_true(fz_msg_rid(msg) == 42);
    fz_msg_destroy(&msg);
}

static void test_roundtrip_submit(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("submit", 77);
    fz_enc_str(enc, "prompt", "fix the 404 page \xe2\x9c\x93");
    fz_enc_int(enc, "priority", -1000000);
    fz_enc_str(enc, "model", "claude");
    fz_enc_uint(enc, "timeout", 3600);
    fz_enc_float(enc, "max_cost", 2.5);
    fz_enc_map(enc, "labels", 2);
    fz_enc_str(enc, NULL, "team");
    fz_enc_str(enc, NULL, "web");
    fz_enc_str(enc, NULL, "ticket");
    fz_enc_str(enc, NULL, "JIRA-1");
    fz_enc_uint(enc, "retries", 100);
    fz_enc_array(enc, "fallback", 1);
    fz_enc_str(enc, NULL, "codex");
    fz_enc_array(enc, "after", 2);
    fz_enc_uint(enc, NULL, 3);
    fz_enc_uint(enc, NULL, 1ull << 40);
    fz_enc_array(enc, "after_any", 0);
    fz_enc_uint(enc, "parent", 9);
    fz_enc_str(enc, "name", "");
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);

    size_t len;
    char buf[64];
    assert_true(fz_msg_is(msg, "submit"));
    assert_true(fz_msg_rid(msg) == 77);
    assert_string_equal(fz_msg_str(msg, "prompt", NULL, &len), "fix the 404 page \xe2\x9c\x93");
    assert_int_equal(len, 20);
    assert_true(fz_msg_int(msg, "priority", 0) == -1000000);
    assert_string_equal(fz_msg_str(msg, "model", "", NULL), "claude");
    assert_true(fz_msg_uint(msg, "timeout", 0) == 3600);
    s_assert_double(fz_msg_float(msg, "max_cost", 0), 2.5, "max_cost");
    const msgpack_object *labels = fz_msg_obj(msg, "labels");
    assert_string_equal(fz_obj_str(labels, "team", buf, sizeof buf), "web");
    assert_string_equal(fz_obj_str(labels, "ticket", buf, sizeof buf), "JIRA-1");
    assert_true(fz_msg_uint(msg, "retries", 0) == 100);
    const msgpack_object *after = fz_msg_obj(msg, "after");
    assert_int_equal(after->via.array.size, 2);
    assert_true(after->via.array.ptr[1].via.u64 == 1ull << 40);
    assert_int_equal(fz_msg_obj(msg, "after_any")->via.array.size, 0);
    assert_string_equal(fz_msg_str(msg, "name", "dflt", &len), "");
    assert_int_equal(len, 0);
    /* Defaults for what is absent. */
    assert_false(fz_msg_has(msg, "nothing"));
    assert_null(fz_msg_obj(msg, "nothing"));
    assert_true(fz_msg_uint(msg, "nothing", 5) == 5);
    assert_true(fz_msg_int(msg, "nothing", -5) == -5);
    s_assert_double(fz_msg_float(msg, "nothing", 0.5), 0.5, "default");
    assert_true(fz_msg_bool(msg, "nothing", true));
    assert_string_equal(fz_msg_str(msg, "nothing", "dflt", &len), "dflt");
    assert_int_equal(len, 4);
    assert_null(fz_msg_str(msg, "nothing", NULL, &len));
    assert_int_equal(len, 0);
    assert_null(fz_msg_bin(msg, "nothing", &len));
    assert_int_equal(len, 0);
    /* Accessors of the wrong kind give the default too. */
    assert_true(fz_msg_uint(msg, "priority", 5) == 5);
    assert_true(fz_msg_bool(msg, "timeout", true));
    assert_string_equal(fz_msg_str(msg, "timeout", "d", NULL), "d");
    /* int accessors read uint fields; float accessors read integer fields. */
    assert_true(fz_msg_int(msg, "timeout", 0) == 3600);
    s_assert_double(fz_msg_float(msg, "timeout", 0), 3600.0, "float of uint");
    s_assert_double(fz_msg_float(msg, "priority", 0), -1000000.0, "float of int");
    fz_msg_destroy(&msg);
}

static void test_roundtrip_result_and_replies(void **state)
{
    (void)state;
    /* result: binary output with NULs and invalid UTF-8 comes back byte for byte. */
    unsigned char out[300];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (unsigned char)(i * 7);
    fz_enc_t *enc = fz_enc_new("result", 0);
    fz_enc_uint(enc, "task", 12);
    fz_enc_uint(enc, "attempt", 2);
    fz_enc_str(enc, "outcome", "signaled");
    fz_enc_int(enc, "exit_code", -1);
    fz_enc_uint(enc, "signal", 9);
    fz_enc_float(enc, "cost_usd", 0.125);
    fz_enc_bin(enc, "output", out, sizeof out);
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
    size_t len;
    const void *p = fz_msg_bin(msg, "output", &len);
    assert_int_equal(len, sizeof out);
    assert_memory_equal(p, out, sizeof out);
    assert_true(fz_msg_int(msg, "exit_code", 0) == -1);
    assert_true(fz_msg_uint(msg, "signal", 0) == 9);
    s_assert_double(fz_msg_float(msg, "cost_usd", 0), 0.125, "cost_usd");
    fz_msg_destroy(&msg);

    /* error with supported versions, the reply to a version mismatch. */
    enc = fz_enc_new("error", 5);
    fz_enc_str(enc, "code", fz_strerror(FZ_EVERSION));
    fz_enc_str(enc, "message", "speak v1");
    fz_enc_array(enc, "supported", 1);
    fz_enc_uint(enc, NULL, 1);
    msg = DECODE_ENC(enc, FZ_OK);
    assert_int_equal(fz_err_from_name(fz_msg_str(msg, "code", "", NULL)), FZ_EVERSION);
    assert_true(fz_msg_obj(msg, "supported")->via.array.ptr[0].via.u64 == 1);
    fz_msg_destroy(&msg);

    /* task reply: objects built with fz_enc_sub, read back with fz_obj_*. */
    fz_enc_t *task = fz_enc_new_map();
    fz_enc_uint(task, "id", 12);
    fz_enc_str(task, "state", "running");
    fz_enc_int(task, "priority", -3);
    fz_enc_float(task, "created", 1700000000.5);
    fz_enc_bool(task, "flag", true);
    fz_enc_nil(task, "nothing");
    enc = fz_enc_new("task", 9);
    fz_enc_sub(enc, "task", &task);
    assert_null(task);
    fz_enc_array(enc, "attempts", 1);
    fz_enc_t *att = fz_enc_new_map();
    fz_enc_uint(att, "n", 1);
    fz_enc_strn(att, "worker", "w1-and-more", 2);
    fz_enc_sub(enc, NULL, &att);
    msg = DECODE_ENC(enc, FZ_OK);
    const msgpack_object *o = fz_msg_obj(msg, "task");
    char buf[16];
    assert_true(fz_obj_uint(o, "id", 0) == 12);
    assert_string_equal(fz_obj_str(o, "state", buf, sizeof buf), "running");
    assert_true(fz_obj_int(o, "priority", 0) == -3);
    s_assert_double(fz_obj_float(o, "created", 0), 1700000000.5, "created");
    assert_true(fz_obj_bool(o, "flag", false));
    assert_non_null(fz_obj_get(o, "nothing"));
    assert_int_equal(fz_obj_get(o, "nothing")->type, MSGPACK_OBJECT_NIL);
    /* mistyped or missing: defaults */
    assert_true(fz_obj_uint(o, "state", 4) == 4);
    assert_true(fz_obj_uint(o, "priority", 4) == 4);
    assert_true(fz_obj_int(o, "state", 4) == 4);
    s_assert_double(fz_obj_float(o, "state", 4), 4, "float of str");
    assert_false(fz_obj_bool(o, "id", false));
    fz_obj_strn(o, "id", &len);
    assert_int_equal(len, 0);
    assert_string_equal(fz_obj_strn(o, "missing", &len), "");
    /* truncation to the buffer */
    assert_string_equal(fz_obj_str(o, "state", buf, 4), "run");
    assert_null(fz_obj_get(NULL, "id"));
    assert_null(fz_obj_get(fz_msg_obj(msg, "attempts"), "id")); /* not a map */
    const msgpack_object *a = &fz_msg_obj(msg, "attempts")->via.array.ptr[0];
    assert_string_equal(fz_obj_str(a, "worker", buf, sizeof buf), "w1");
    fz_msg_destroy(&msg);
}

/* fz_enc_obj copies a decoded object into a new message; fz_enc_float never writes NaN. */
static void test_encoder_helpers(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("hello", 0);
    fz_enc_str(enc, "name", "w1");
    fz_enc_map(enc, "labels", 1);
    fz_enc_str(enc, NULL, "gpu");
    fz_enc_str(enc, NULL, "yes");
    fz_msg_t *hello = DECODE_ENC(enc, FZ_OK);
    assert_false(fz_msg_has(hello, "rid"));

    enc = fz_enc_new("dispatch", 3);
    fz_enc_uint(enc, "task", 1);
    fz_enc_uint(enc, "attempt", 1);
    fz_enc_str(enc, "prompt", "");
    fz_enc_obj(enc, "labels", fz_msg_obj(hello, "labels"));
    fz_enc_float(enc, "max_cost", NAN);
    static const char raw_model[] = "\xa3gpt";
    fz_enc_raw(enc, "model", raw_model, sizeof raw_model - 1);
    fz_msg_destroy(&hello);
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
    char buf[8];
    assert_string_equal(fz_obj_str(fz_msg_obj(msg, "labels"), "gpu", buf, sizeof buf), "yes");
    s_assert_double(fz_msg_float(msg, "max_cost", -1), 0.0, "NaN encodes as 0");
    assert_string_equal(fz_msg_str(msg, "model", "", NULL), "gpt");
    fz_msg_destroy(&msg);

    /* fz_enc_str(NULL) writes "" */
    enc = fz_enc_new("hello", 0);
    fz_enc_str(enc, "name", "w");
    fz_enc_str(enc, "nonce", NULL);
    msg = DECODE_ENC(enc, FZ_OK);
    size_t len = 9;
    assert_string_equal(fz_msg_str(msg, "nonce", "d", &len), "");
    assert_int_equal(len, 0);
    fz_msg_destroy(&msg);
}

/* The decoder copies the frame: the caller's buffer may go away at once. */
static void test_message_owns_its_memory(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("output", 0);
    fz_enc_uint(enc, "task", 1);
    fz_enc_uint(enc, "attempt", 1);
    fz_enc_bin(enc, "data", "hello", 5);
    size_t len;
    const void *data = fz_enc_data(enc, &len);
    char *copy = malloc(len);
    memcpy(copy, data, len);
    fz_enc_destroy(&enc);
    fz_msg_t *msg = DECODE(copy, len, FZ_OK);
    memset(copy, 0xc1, len);
    free(copy);
    size_t n;
    const char *p = fz_msg_bin(msg, "data", &n);
    assert_int_equal(n, 5);
    assert_memory_equal(p, "hello", 5);
    /* fz_msg_str gives a NUL-terminated copy, twice the same. */
    const char *s1 = fz_msg_str(msg, "data", NULL, &n);
    const char *s2 = fz_msg_str(msg, "data", NULL, NULL);
    assert_string_equal(s1, "hello");
    assert_string_equal(s2, "hello");
    assert_string_equal(fz_msg_type(msg), "output");
    fz_msg_destroy(&msg);
}

/* ---------------------------------------------------------------- malformed frames */

static void test_malformed_not_a_map(void **state)
{
    (void)state;
    CHECK("\x01", 1, FZ_EMALFORMED);
    CHECK("\xc0", 1, FZ_EMALFORMED);
    CHECK("\xc3", 1, FZ_EMALFORMED);
    CHECK("\xa4ping", 5, FZ_EMALFORMED);
    CHECK("\x92\x01\x02", 3, FZ_EMALFORMED);
    CHECK("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9, FZ_EMALFORMED);
    CHECK("", 0, FZ_EMALFORMED);
    assert_true(s_rid == 0);
    /* An empty map is a map: it is invalid (no v), not malformed. */
    CHECK("\x80", 1, FZ_EINVALID);
    /* JSON is not msgpack. */
    static const char json[] = "{\"v\":1,\"type\":\"ping\"}";
    CHECK(json, sizeof json - 1, FZ_EMALFORMED);
}

static void test_malformed_truncated(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("submit", 42);
    fz_enc_str(enc, "prompt", "a prompt long enough to need a str8 header, 32 bytes+");
    fz_enc_map(enc, "labels", 1);
    fz_enc_str(enc, NULL, "k");
    fz_enc_str(enc, NULL, "v");
    fz_enc_array(enc, "after", 1);
    fz_enc_uint(enc, NULL, 1ull << 33);
    fz_enc_float(enc, "max_cost", 1.5);
    size_t len;
    const char *data = fz_enc_data(enc, &len);
    CHECK(data, len, FZ_OK);
    /* Every proper prefix is malformed, and no rid can be trusted from it. */
    for (size_t n = 1; n < len; n++) {
        CHECK(data, n, FZ_EMALFORMED);
        assert_true(s_rid == 0);
    }
    fz_enc_destroy(&enc);
    /* Truncated inside a length field. */
    CHECK("\xdb\x00\x00", 3, FZ_EMALFORMED);
    CHECK("\xde\x00", 2, FZ_EMALFORMED);
    CHECK("\xcf\x00\x00\x00", 4, FZ_EMALFORMED);
}

static void test_malformed_trailing_bytes(void **state)
{
    (void)state;
    static const char two[] = "\x82\xa1v\x01\xa4type\xa4ping"
                              "\x82\xa1v\x01\xa4type\xa4ping";
    CHECK(two, sizeof two - 1, FZ_EMALFORMED);
    CHECK(two, (sizeof two - 1) / 2, FZ_OK);
    static const char nul[] = "\x82\xa1v\x01\xa4type\xa4ping\x00";
    CHECK(nul, sizeof nul - 1, FZ_EMALFORMED);
    assert_non_null(strstr(s_why, "trailing"));
}

/* Builds {v:1, type:"ping", x: <levels - 1 nested arrays>} whose innermost array holds one
   integer: `levels` containers counting the root map. */
static void s_nested(raw_t *r, int levels)
{
    s_raw_envelope(r, 3, "ping");
    s_raw_str(r, "x");
    for (int i = 1; i < levels; i++)
        msgpack_pack_array(&r->pk, 1);
    msgpack_pack_uint64(&r->pk, 1);
}

static void test_malformed_deep_nesting(void **state)
{
    (void)state;
    raw_t r;
    /* 8 levels (the root map and 7 arrays) are allowed ... */
    s_raw_init(&r);
    s_nested(&r, 8);
    CHECK(r.sb.data, r.sb.size, FZ_OK);
    s_raw_free(&r);
    /* ... far more are not: checked before msgpack-c's unpacker sees the frame. */
    for (int levels = 11; levels <= 1000; levels = levels * 3) {
        s_raw_init(&r);
        s_nested(&r, levels);
        CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
        assert_non_null(strstr(s_why, "deep"));
        s_raw_free(&r);
    }
    /* 100000 nested arrays: no stack overflow. */
    size_t n = 100000;
    char *deep = s_fill(n + 1, '\x91');
    deep[n] = 1;
    CHECK(deep, n + 1, FZ_EMALFORMED);
    free(deep);
}

static void test_malformed_huge_counts(void **state)
{
    (void)state;
    /* Headers that claim far more than the frame holds, answered before any allocation:
       array32 / map32 / str32 / bin32 of 4 billion, array16 of 65535. */
    static const struct {
        const char *bytes;
        size_t len;
    } tails[] = {
        {"\xdd\xff\xff\xff\xff", 5},     {"\xdf\xff\xff\xff\xff", 5},
        {"\xdb\xff\xff\xff\xff", 5},     {"\xc6\xff\xff\xff\xff", 5},
        {"\xdc\xff\xff\x01\x02\x03", 6}, {"\xdd\x00\x00\x00\x02\x01", 6},
    };
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
        raw_t r;
        s_raw_init(&r);
        s_raw_envelope(&r, 4, "ping");
        s_raw_str(&r, "rid");
        msgpack_pack_uint64(&r.pk, 5);
        s_raw_str(&r, "x");
        s_raw_put(&r, tails[i].bytes, tails[i].len);
        CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
        assert_true(s_rid == 0);
        s_raw_free(&r);
    }
    /* The root itself claiming 4 billion pairs. */
    CHECK("\xdf\xff\xff\xff\xff\xa1v\x01", 8, FZ_EMALFORMED);
    /* A frame over FZ_MAX_FRAME is refused whatever it holds. */
    size_t big = FZ_MAX_FRAME + 1;
    char *buf = calloc(1, big);
    assert_non_null(buf);
    CHECK(buf, big, FZ_EMALFORMED);
    free(buf);
}

/* A frame of exactly FZ_MAX_FRAME bytes is fine. */
static void test_max_frame_boundary(void **state)
{
    (void)state;
    size_t pad = 100000, len;
    char *zeros = calloc(1, FZ_MAX_FRAME);
    assert_non_null(zeros);
    fz_enc_t *enc = fz_enc_new("ping", 0);
    fz_enc_bin(enc, "pad", zeros, pad);
    fz_enc_data(enc, &len);
    fz_enc_destroy(&enc);
    pad += FZ_MAX_FRAME - len; /* same bin32 header */
    enc = fz_enc_new("ping", 0);
    fz_enc_bin(enc, "pad", zeros, pad);
    const void *data = fz_enc_data(enc, &len);
    assert_int_equal(len, FZ_MAX_FRAME);
    CHECK(data, len, FZ_OK);
    fz_enc_destroy(&enc);
    free(zeros);
}

static void test_malformed_ext_and_reserved(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } ext[] = {
        {"\xd4\x01\x00", 3},                              /* fixext 1 */
        {"\xd5\x01\x00\x00", 4},                          /* fixext 2 */
        {"\xd6\xff\x00\x00\x00\x00", 6},                  /* timestamp 32 */
        {"\xd7\x01\x00\x00\x00\x00\x00\x00\x00\x00", 10}, /* fixext 8 */
        {"\xd8\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 18},
        {"\xc7\x01\x05\x00", 4},             /* ext 8 */
        {"\xc8\x00\x01\x05\x00", 5},         /* ext 16 */
        {"\xc9\x00\x00\x00\x01\x05\x00", 7}, /* ext 32 */
        {"\xc1", 1},                         /* never used */
    };
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        /* as an (unknown) field's value */
        raw_t r;
        s_raw_init(&r);
        s_raw_envelope(&r, 3, "ping");
        s_raw_str(&r, "x");
        s_raw_put(&r, ext[i].bytes, ext[i].len);
        CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
        s_raw_free(&r);
        /* nested in an array */
        s_raw_init(&r);
        s_raw_envelope(&r, 3, "ping");
        s_raw_str(&r, "x");
        msgpack_pack_array(&r.pk, 2);
        msgpack_pack_uint64(&r.pk, 1);
        s_raw_put(&r, ext[i].bytes, ext[i].len);
        CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
        s_raw_free(&r);
        /* as the whole frame */
        CHECK(ext[i].bytes, ext[i].len, FZ_EMALFORMED);
    }
}

static void test_malformed_duplicate_keys(void **state)
{
    (void)state;
    raw_t r;
    s_raw_init(&r);
    s_raw_envelope(&r, 4, "ping");
    s_raw_str(&r, "rid");
    msgpack_pack_uint64(&r.pk, 8);
    s_raw_str(&r, "v");
    msgpack_pack_uint64(&r.pk, 1);
    CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
    assert_non_null(strstr(s_why, "duplicate"));
    assert_true(s_rid == 8); /* a map could be read: its rid is reported */
    s_raw_free(&r);
    /* Unknown keys may not repeat either. */
    s_raw_init(&r);
    s_raw_envelope(&r, 4, "ping");
    s_raw_str(&r, "x");
    msgpack_pack_uint64(&r.pk, 1);
    s_raw_str(&r, "x");
    msgpack_pack_uint64(&r.pk, 1);
    CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
    s_raw_free(&r);
    /* A duplicate inside a field's map (labels) is as malformed as one at the top. */
    fz_enc_t *enc = fz_enc_new("submit", 9);
    fz_enc_str(enc, "prompt", "p");
    fz_enc_map(enc, "labels", 2);
    fz_enc_str(enc, NULL, "team");
    fz_enc_str(enc, NULL, "a");
    fz_enc_str(enc, NULL, "team");
    fz_enc_str(enc, NULL, "b");
    CHECK_ENC(enc, FZ_EMALFORMED);
    assert_non_null(strstr(s_why, "duplicate"));
    assert_true(s_rid == 9);
    /* Keys that differ only in encoding are the same key. */
    static const char enc2[] = "\x83\xa1v\x01\xa4type\xa4ping\xd9\x04type\xa4ping";
    CHECK(enc2, sizeof enc2 - 1, FZ_EMALFORMED);
    /* Keys that differ only in case are different keys. */
    static const char caps[] = "\x83\xa1v\x01\xa4type\xa4ping\xa4TYPE\xa4ping";
    CHECK(caps, sizeof caps - 1, FZ_OK);
}

static void test_malformed_non_string_keys(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "\x01",     "\xc0",          "\xc2", "\xc4\x01x",
        "\x91\x01", "\x81\xa1x\x01", "\xff", "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"};
    static const size_t lens[] = {1, 1, 1, 3, 2, 4, 1, 9};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        raw_t r;
        s_raw_init(&r);
        s_raw_envelope(&r, 3, "ping");
        s_raw_put(&r, keys[i], lens[i]);
        msgpack_pack_uint64(&r.pk, 1);
        CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
        assert_non_null(strstr(s_why, "key"));
        s_raw_free(&r);
    }
}

/* Builds a ping with `fields` fields in all (v and type included). */
static void s_wide(raw_t *r, size_t fields)
{
    s_raw_envelope(r, fields, "ping");
    for (size_t i = 2; i < fields; i++) {
        char key[32];
        snprintf(key, sizeof key, "key%03zu", i);
        s_raw_str(r, key);
        s_raw_str(r, "value");
    }
}

static void test_malformed_too_many_fields(void **state)
{
    (void)state;
    raw_t r;
    s_raw_init(&r);
    s_wide(&r, 64);
    CHECK(r.sb.data, r.sb.size, FZ_OK);
    s_raw_free(&r);
    s_raw_init(&r);
    s_wide(&r, 65);
    CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
    assert_non_null(strstr(s_why, "64"));
    s_raw_free(&r);
    s_raw_init(&r);
    s_wide(&r, 1000);
    CHECK(r.sb.data, r.sb.size, FZ_EMALFORMED);
    s_raw_free(&r);
}

/* ---------------------------------------------------------------- envelope: v, type, rid */

static void s_envelope_msg(raw_t *r, const char *vbytes, size_t vlen, const char *type,
                           uint64_t rid)
{
    msgpack_pack_map(&r->pk, 3);
    s_raw_str(r, "rid");
    msgpack_pack_uint64(&r->pk, rid);
    s_raw_str(r, "v");
    s_raw_put(r, vbytes, vlen);
    s_raw_str(r, "type");
    s_raw_str(r, type);
}

static void test_version(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        size_t len;
        fz_err_t want;
    } cases[] = {
        {"\x01", 1, FZ_OK},
        {"\xcf\x00\x00\x00\x00\x00\x00\x00\x01", 9, FZ_OK},
        {"\x02", 1, FZ_EVERSION},
        {"\x00", 1, FZ_EVERSION},
        {"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, FZ_EVERSION},
        {"\xff", 1, FZ_EINVALID},                                 /* -1 */
        {"\xa1\x31", 2, FZ_EINVALID},                             /* "1" */
        {"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9, FZ_EINVALID}, /* 1.0 */
        {"\xc0", 1, FZ_EINVALID},                                 /* nil */
        {"\xc3", 1, FZ_EINVALID},                                 /* true */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        raw_t r;
        s_raw_init(&r);
        s_envelope_msg(&r, cases[i].v, cases[i].len, "ping", 4242);
        CHECK(r.sb.data, r.sb.size, cases[i].want);
        assert_true(s_rid == 4242); /* reported whatever the outcome */
        s_raw_free(&r);
    }
    /* The version is checked before the type and the fields: a v2 peer may send types and
       fields this side does not know, and must still be told "version". */
    raw_t r;
    s_raw_init(&r);
    s_envelope_msg(&r, "\x02", 1, "frobnicate", 9);
    CHECK(r.sb.data, r.sb.size, FZ_EVERSION);
    assert_true(s_rid == 9);
    s_raw_free(&r);
    s_raw_init(&r);
    s_envelope_msg(&r, "\x02", 1, "submit", 10); /* no prompt */
    CHECK(r.sb.data, r.sb.size, FZ_EVERSION);
    assert_true(s_rid == 10);
    s_raw_free(&r);
    /* No v at all: invalid. */
    static const char nov[] = "\x82\xa3rid\x05\xa4type\xa4ping";
    CHECK(nov, sizeof nov - 1, FZ_EINVALID);
    assert_true(s_rid == 5);
}

static void test_rid(void **state)
{
    (void)state;
    static const char neg[] = "\x83\xa1v\x01\xa4type\xa4ping\xa3rid\xff";
    CHECK(neg, sizeof neg - 1, FZ_EINVALID);
    assert_true(s_rid == 0);
    static const char str[] = "\x83\xa1v\x01\xa4type\xa4ping\xa3rid\xa1\x35";
    CHECK(str, sizeof str - 1, FZ_EINVALID);
    assert_true(s_rid == 0);
    static const char big[] = "\x83\xa1v\x01\xa4type\xa4ping\xa3rid\xcf\xff\xff\xff\xff\xff\xff"
                              "\xff\xff";
    fz_msg_t *msg = DECODE(big, sizeof big - 1, FZ_OK);
    assert_true(fz_msg_rid(msg) == UINT64_MAX);
    fz_msg_destroy(&msg);
    static const char zero[] = "\x83\xa1v\x01\xa4type\xa4ping\xa3rid\x00";
    msg = DECODE(zero, sizeof zero - 1, FZ_OK);
    assert_true(fz_msg_rid(msg) == 0);
    fz_msg_destroy(&msg);
    /* rid is reported for invalid messages, so the error reply can carry it. */
    fz_enc_t *enc = fz_enc_new("get", 31);
    CHECK_ENC(enc, FZ_EINVALID); /* no task */
    assert_true(s_rid == 31);
    /* rid_p and why are optional; why is NUL-terminated however small. */
    fz_msg_t *m = NULL;
    assert_int_equal(fz_msg_decode("\x01", 1, &m, NULL, NULL, 0), FZ_EMALFORMED);
    assert_null(m);
    char why[5] = "xxxx";
    assert_int_equal(fz_msg_decode("\x01", 1, &m, NULL, why, 1), FZ_EMALFORMED);
    assert_int_equal(why[0], 0);
    assert_int_equal(fz_msg_decode("\x01", 1, &m, NULL, why, sizeof why), FZ_EMALFORMED);
    assert_int_equal(strlen(why), 4);
}

static void test_type_field(void **state)
{
    (void)state;
    raw_t r;
    static const struct {
        const char *type;
        size_t len;
        fz_err_t want;
    } cases[] = {
        {"frobnicate", 10, FZ_EUNKNOWN}, {"", 0, FZ_EUNKNOWN},         {"SUBMIT", 6, FZ_EUNKNOWN},
        {"submit ", 7, FZ_EUNKNOWN},     {"pin", 3, FZ_EUNKNOWN},      {"ping\0", 5, FZ_EINVALID},
        {"p\xffng", 4, FZ_EINVALID},     {"\xc3\xa9", 2, FZ_EUNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        s_raw_init(&r);
        msgpack_pack_map(&r.pk, 3);
        s_raw_str(&r, "v");
        msgpack_pack_uint64(&r.pk, 1);
        s_raw_str(&r, "rid");
        msgpack_pack_uint64(&r.pk, 66);
        s_raw_str(&r, "type");
        s_pack_strn(&r.pk, cases[i].type, cases[i].len);
        CHECK(r.sb.data, r.sb.size, cases[i].want);
        assert_true(s_rid == 66);
        s_raw_free(&r);
    }
    /* type missing, or not a str */
    static const char notype[] = "\x82\xa1v\x01\xa3rid\x07";
    CHECK(notype, sizeof notype - 1, FZ_EINVALID);
    assert_true(s_rid == 7);
    static const char bintype[] = "\x82\xa1v\x01\xa4type\xc4\x04ping";
    CHECK(bintype, sizeof bintype - 1, FZ_EINVALID);
    static const char inttype[] = "\x82\xa1v\x01\xa4type\x01";
    CHECK(inttype, sizeof inttype - 1, FZ_EINVALID);
}

/* ---------------------------------------------------------------- field semantics */

static void test_unknown_fields_ignored(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("submit", 1);
    fz_enc_str(enc, "prompt", "p");
    fz_enc_bin(enc, "x-blob", "\xff\x00", 2);
    fz_enc_map(enc, "x-map", 1);
    fz_enc_uint(enc, NULL, 1); /* non-string key, but inside an unknown field */
    fz_enc_nil(enc, NULL);
    fz_enc_int(enc, "x-neg", -5);
    fz_enc_float(enc, "x-float", 1.5);
    fz_enc_str(enc, "x-bad-utf8", "\xff");
    fz_enc_array(enc, "x-arr", 2);
    fz_enc_array(enc, NULL, 0);
    fz_enc_map(enc, NULL, 0);
    fz_enc_nil(enc, "x-nil");
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
    assert_non_null(fz_msg_obj(msg, "x-map"));
    assert_false(fz_msg_has(msg, "x-nil")); /* nil counts as absent for has */
    assert_non_null(fz_msg_obj(msg, "x-nil"));
    fz_msg_destroy(&msg);
    /* Known field names of other message types are unknown here: ignored. */
    enc = fz_enc_new("ping", 1);
    fz_enc_str(enc, "prompt", "\xff");
    fz_enc_int(enc, "task", -1);
    CHECK_ENC(enc, FZ_OK);
}

static void test_float_accepts_integers(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        fz_err_t want;
        double value;
    } cases[] = {
        {"\x00", 1, FZ_OK, 0.0},
        {"\x05", 1, FZ_OK, 5.0},
        {"\xcd\x03\xe8", 3, FZ_OK, 1000.0},
        {"\xca\x3f\xc0\x00\x00", 5, FZ_OK, 1.5}, /* float32 */
        {"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9, FZ_OK, 1.5},
        {"\xce\x00\x0f\x42\x40", 5, FZ_OK, 1e6}, /* the max, inclusive */
        {"\xce\x00\x0f\x42\x41", 5, FZ_EINVALID, 0},
        {"\xff", 1, FZ_EINVALID, 0},                             /* -1 < min 0 */
        {"\xcb\x80\x00\x00\x00\x00\x00\x00\x00", 9, FZ_OK, 0.0}, /* -0.0 */
        {"\xca\x7f\xc0\x00\x00", 5, FZ_EINVALID, 0},             /* float32 NaN */
        {"\xca\xff\x80\x00\x00", 5, FZ_EINVALID, 0},             /* float32 -inf */
        {"\xc2", 1, FZ_EINVALID, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        raw_t r;
        s_raw_init(&r);
        s_raw_envelope(&r, 4, "submit");
        s_raw_str(&r, "prompt");
        s_raw_str(&r, "p");
        s_raw_str(&r, "max_cost");
        s_raw_put(&r, cases[i].bytes, cases[i].len);
        fz_msg_t *msg = DECODE(r.sb.data, r.sb.size, cases[i].want);
        if (msg) {
            s_assert_double(fz_msg_float(msg, "max_cost", -1), cases[i].value, "max_cost");
            assert_true(fz_msg_has(msg, "max_cost"));
        }
        fz_msg_destroy(&msg);
        s_raw_free(&r);
    }
}

/* Range edges of a few fields, both sides. */
static void test_ranges(void **state)
{
    (void)state;
    static const struct {
        const char *type, *key;
        int64_t value;
        fz_err_t want;
    } cases[] = {
        {"submit", "priority", -1000000, FZ_OK},
        {"submit", "priority", -1000001, FZ_EINVALID},
        {"submit", "priority", 1000000, FZ_OK},
        {"submit", "priority", 1000001, FZ_EINVALID},
        {"submit", "priority", INT64_MIN, FZ_EINVALID},
        {"submit", "retries", 100, FZ_OK},
        {"submit", "retries", 101, FZ_EINVALID},
        {"heartbeat", "progress", 100, FZ_OK},
        {"heartbeat", "progress", 101, FZ_EINVALID},
        {"heartbeat", "progress", 0, FZ_OK},
        {"welcome", "heartbeat_ms", 9, FZ_EINVALID},
        {"welcome", "heartbeat_ms", 10, FZ_OK},
        {"get", "task", 0, FZ_EINVALID},
        {"get", "task", 1, FZ_OK},
        {"started", "pid", 4294967295, FZ_OK},
        {"started", "pid", 4294967296, FZ_EINVALID},
        {"result", "exit_code", -1000, FZ_OK},
        {"result", "exit_code", -1001, FZ_EINVALID},
        {"result", "signal", 128, FZ_OK},
        {"result", "signal", 129, FZ_EINVALID},
        {"list", "limit", 100000, FZ_OK},
        {"list", "limit", 100001, FZ_EINVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const fz_msgspec_t *spec = fz_spec_find(cases[i].type, strlen(cases[i].type));
        fz_enc_t *enc = fz_enc_new(cases[i].type, 0);
        unsigned idx = 0;
        for (const fz_field_t *f = spec->fields; f->key; f++, idx++)
            if ((f->flags & FZ_F_REQUIRED) && strcmp(f->key, cases[i].key) != 0) {
                raw_t val;
                s_raw_init(&val);
                s_pack_good(&val.pk, f, idx);
                fz_enc_raw(enc, f->key, val.sb.data, val.sb.size);
                s_raw_free(&val);
            }
        fz_enc_int(enc, cases[i].key, cases[i].value);
        fz_msg_t *msg = DECODE_ENC(enc, cases[i].want);
        if (msg)
            assert_true(fz_msg_int(msg, cases[i].key, 7) == cases[i].value);
        fz_msg_destroy(&msg);
    }
}

/* Strings: the prompt's limits, UTF-8 and NUL, and str-vs-bin. */
static void test_prompt_and_strings(void **state)
{
    (void)state;
    char *big = s_fill(FZ_MAX_PROMPT + 1, 'p');
    fz_enc_t *enc = fz_enc_new("submit", 3);
    fz_enc_strn(enc, "prompt", big, FZ_MAX_PROMPT);
    CHECK_ENC(enc, FZ_OK);
    enc = fz_enc_new("submit", 3);
    fz_enc_strn(enc, "prompt", big, FZ_MAX_PROMPT + 1);
    CHECK_ENC(enc, FZ_ETOOLARGE);
    assert_true(s_rid == 3);
    assert_non_null(strstr(s_why, "prompt"));
    /* A 4-byte character straddling the limit: too large, not invalid. */
    memcpy(big + FZ_MAX_PROMPT - 2, "\xf0\x9f\x98\x80", 4);
    enc = fz_enc_new("submit", 3);
    fz_enc_strn(enc, "prompt", big, FZ_MAX_PROMPT + 2);
    CHECK_ENC(enc, FZ_ETOOLARGE);
    free(big);

    static const struct {
        const char *s;
        size_t len;
        fz_err_t want;
    } prompts[] = {
        {"", 0, FZ_EINVALID},
        {"a", 1, FZ_OK},
        {"\xe2\x9c\x93 ok", 6, FZ_OK},
        {"a\0b", 3, FZ_EINVALID},
        {"\0", 1, FZ_EINVALID},
        {"ab\xff", 3, FZ_EINVALID},
        {"\xc3", 1, FZ_EINVALID},
        {"\xf4\x90\x80\x80", 4, FZ_EINVALID},
        {"\xef\xbb\xbf"
         "bom",
         6, FZ_OK}, /* a BOM is just a character */
    };
    for (size_t i = 0; i < sizeof prompts / sizeof *prompts; i++) {
        enc = fz_enc_new("submit", 0);
        fz_enc_strn(enc, "prompt", prompts[i].s, prompts[i].len);
        CHECK_ENC(enc, prompts[i].want);
    }
    /* bin where str is required: invalid, even when the bytes are fine. */
    enc = fz_enc_new("submit", 0);
    fz_enc_bin(enc, "prompt", "abc", 3);
    CHECK_ENC(enc, FZ_EINVALID);
    /* str where bin is expected: accepted. */
    enc = fz_enc_new("output", 0);
    fz_enc_uint(enc, "task", 1);
    fz_enc_uint(enc, "attempt", 1);
    fz_enc_str(enc, "data", "text");
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
    size_t len;
    assert_memory_equal(fz_msg_bin(msg, "data", &len), "text", 4);
    assert_int_equal(len, 4);
    fz_msg_destroy(&msg);
    /* bin at its limit */
    char *chunk = s_fill(FZ_MAX_CHUNK, '\xff');
    enc = fz_enc_new("output", 0);
    fz_enc_uint(enc, "task", 1);
    fz_enc_uint(enc, "attempt", 1);
    fz_enc_bin(enc, "data", chunk, FZ_MAX_CHUNK);
    CHECK_ENC(enc, FZ_OK);
    free(chunk);
}

static void test_labels(void **state)
{
    (void)state;
    /* 32 labels with 64-byte keys and 1 KiB values: the limits, inclusive. */
    char *val = s_fill(1024, 'v');
    fz_enc_t *enc = fz_enc_new("submit", 0);
    fz_enc_str(enc, "prompt", "p");
    fz_enc_map(enc, "labels", 32);
    for (int i = 0; i < 32; i++) {
        char key[65];
        memset(key, 'k', 64);
        key[0] = (char)('a' + i / 10);
        key[1] = (char)('0' + i % 10);
        fz_enc_strn(enc, NULL, key, 64);
        fz_enc_str(enc, NULL, val);
    }
    CHECK_ENC(enc, FZ_OK);
    free(val);
    /* a non-string value, in the middle */
    enc = fz_enc_new("submit", 0);
    fz_enc_str(enc, "prompt", "p");
    fz_enc_map(enc, "labels", 3);
    fz_enc_str(enc, NULL, "a");
    fz_enc_str(enc, NULL, "1");
    fz_enc_str(enc, NULL, "b");
    fz_enc_int(enc, NULL, 2);
    fz_enc_str(enc, NULL, "c");
    fz_enc_str(enc, NULL, "3");
    CHECK_ENC(enc, FZ_EINVALID);
    assert_non_null(strstr(s_why, "labels"));
    /* a map value, or nil */
    enc = fz_enc_new("hello", 0);
    fz_enc_str(enc, "name", "w");
    fz_enc_map(enc, "labels", 1);
    fz_enc_str(enc, NULL, "a");
    fz_enc_nil(enc, NULL);
    CHECK_ENC(enc, FZ_EINVALID);
}

/* array<uint> at its limit: 256 dependency ids. */
static void test_after_limit(void **state)
{
    (void)state;
    for (uint32_t n = 255; n <= 257; n++) {
        fz_enc_t *enc = fz_enc_new("submit", 0);
        fz_enc_str(enc, "prompt", "p");
        fz_enc_array(enc, "after_any", n);
        for (uint32_t i = 0; i < n; i++)
            fz_enc_uint(enc, NULL, 1000000 + i); /* uint32: 5 bytes each */
        CHECK_ENC(enc, n <= 256 ? FZ_OK : FZ_EINVALID);
    }
}

/* A worker object of a `workers` reply, with one field changed: `what` "ok", "extra" (a key
   the spec does not list), "type" (a wrong type), "missing" (no `since`), "empty-model". */
static void s_enc_worker(fz_enc_t *e, const char *what)
{
    fz_enc_str(e, "name", "w1");
    fz_enc_array(e, "models", 1);
    fz_enc_str(e, NULL, strcmp(what, "empty-model") == 0 ? "" : "m1");
    fz_enc_bool(e, "any_model", false);
    fz_enc_str(e, "state", "idle");
    fz_enc_uint(e, "task", 0);
    if (strcmp(what, "missing") != 0)
        fz_enc_float(e, "since", 1.5);
    if (strcmp(what, "type") == 0)
        fz_enc_str(e, "last_seen", "now");
    else
        fz_enc_float(e, "last_seen", 2.5);
    fz_enc_array(e, "unhealthy", 1);
    fz_enc_str(e, NULL, ""); /* every model: "" is an element here, not in `models` */
    if (strcmp(what, "extra") == 0)
        fz_enc_uint(e, "x-future", 1);
}

/* fz_obj_check_strict / fz_msg_check_strict: what lenient decoding lets through, strictness
   refuses; inside a reply, each object against the spec of what its field holds. */
static void test_check_strict(void **state)
{
    (void)state;
    const char *cases[] = {"ok", "extra", "type", "missing", "empty-model"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fz_enc_t *enc = fz_enc_reply("workers", 3);
        fz_enc_array(enc, "workers", 1);
        fz_enc_t *w = fz_enc_new_map();
        s_enc_worker(w, cases[i]);
        fz_enc_sub(enc, NULL, &w);
        fz_msg_t *msg = DECODE_ENC(enc, FZ_OK); /* decoding does not look inside */
        char why[512];
        fz_err_t want = i == 0 ? FZ_OK : FZ_EINVALID;
        const msgpack_object *arr = fz_msg_obj(msg, "workers");
        assert_int_equal(
            fz_obj_check_strict(&arr->via.array.ptr[0], fz_spec_object("worker"), why, sizeof why),
            want);
        if (fz_msg_check_strict(msg, why, sizeof why) != want)
            fail_msg("%s: %s", cases[i], why);
        if (i == 1)
            assert_non_null(strstr(why, "x-future"));
        fz_msg_destroy(&msg);
    }
    /* The envelope is allowed in a message, not in an object; an unknown top-level key not. */
    fz_enc_t *enc = fz_enc_reply("pong", 9);
    fz_enc_uint(enc, "version", 1);
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
    char why[512];
    assert_int_equal(fz_msg_check_strict(msg, why, sizeof why), FZ_OK);
    assert_int_equal(
        fz_obj_check_strict(fz_msg_root(msg), fz_spec_find("pong", 4), why, sizeof why),
        FZ_EINVALID);
    assert_int_equal(fz_obj_check_strict(fz_msg_root(msg), NULL, why, sizeof why), FZ_EINVALID);
    fz_msg_destroy(&msg);
    enc = fz_enc_reply("pong", 9);
    fz_enc_str(enc, "broker", "x");
    fz_enc_str(enc, "build", "y");
    msg = DECODE_ENC(enc, FZ_OK);
    assert_int_equal(fz_msg_check_strict(msg, why, sizeof why), FZ_EINVALID);
    fz_msg_destroy(&msg);
    /* events in an `events` reply, each by its topic */
    enc = fz_enc_reply("events", 1);
    fz_enc_array(enc, "events", 2);
    fz_enc_t *ev = fz_enc_new_map();
    fz_enc_uint(ev, "seq", 1);
    fz_enc_float(ev, "ts", 1.0);
    fz_enc_str(ev, "event", "broker.budget");
    fz_enc_float(ev, "cap", 3.0);
    fz_enc_sub(enc, NULL, &ev);
    ev = fz_enc_new_map();
    fz_enc_uint(ev, "seq", 2);
    fz_enc_float(ev, "ts", 1.0);
    fz_enc_str(ev, "event", "broker.paused");
    fz_enc_float(ev, "cap", 3.0); /* not a field of broker.paused */
    fz_enc_sub(enc, NULL, &ev);
    msg = DECODE_ENC(enc, FZ_OK);
    assert_int_equal(fz_msg_check_strict(msg, why, sizeof why), FZ_EINVALID);
    assert_non_null(strstr(why, "events[1]"));
    fz_msg_destroy(&msg);
}

/* fz_msg_check_object: a nested map (a submit-batch element) against a type's fields. */
static void test_check_object(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("submit-batch", 4);
    fz_enc_array(enc, "tasks", 9);
    fz_enc_t *t = fz_enc_new_map(); /* 0: fine, with an unknown field */
    fz_enc_str(t, "prompt", "first");
    fz_enc_array(t, "after_index", 0);
    fz_enc_str(t, "x-future", "ignored");
    fz_enc_sub(enc, NULL, &t);
    t = fz_enc_new_map(); /* 1: no prompt */
    fz_enc_int(t, "priority", 3);
    fz_enc_sub(enc, NULL, &t);
    t = fz_enc_new_map(); /* 2: prompt too long */
    char *big = s_fill(FZ_MAX_PROMPT + 1, 'p');
    fz_enc_str(t, "prompt", big);
    free(big);
    fz_enc_sub(enc, NULL, &t);
    t = fz_enc_new_map(); /* 3: wrong type */
    fz_enc_str(t, "prompt", "p");
    fz_enc_str(t, "priority", "high");
    fz_enc_sub(enc, NULL, &t);
    t = fz_enc_new_map(); /* 4: duplicate key */
    fz_enc_str(t, "prompt", "p");
    fz_enc_str(t, "prompt", "q");
    fz_enc_sub(enc, NULL, &t);
    fz_enc_map(enc, NULL, 2); /* 5: non-string key */
    fz_enc_str(enc, NULL, "prompt");
    fz_enc_str(enc, NULL, "p");
    fz_enc_uint(enc, NULL, 1);
    fz_enc_str(enc, NULL, "p");
    t = fz_enc_new_map(); /* 6: 65 keys */
    fz_enc_str(t, "prompt", "p");
    for (int i = 0; i < 64; i++) {
        char key[16];
        snprintf(key, sizeof key, "x%02d", i);
        fz_enc_uint(t, key, 1);
    }
    fz_enc_sub(enc, NULL, &t);
    t = fz_enc_new_map(); /* 7: invalid UTF-8 in a label */
    fz_enc_str(t, "prompt", "p");
    fz_enc_map(t, "labels", 1);
    fz_enc_str(t, NULL, "k");
    fz_enc_str(t, NULL, "\xff");
    fz_enc_sub(enc, NULL, &t);
    t = fz_enc_new_map(); /* 8: every limit respected */
    fz_enc_str(t, "prompt", "p");
    fz_enc_int(t, "priority", -1000000);
    fz_enc_float(t, "deadline", 0);
    fz_enc_array(t, "after_any_index", 1);
    fz_enc_uint(t, NULL, 0);
    fz_enc_sub(enc, NULL, &t);
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK); /* the elements are maps: structure is fine */

    static const fz_err_t want[] = {FZ_OK,       FZ_EINVALID,   FZ_ETOOLARGE,
                                    FZ_EINVALID, FZ_EMALFORMED, FZ_EINVALID,
                                    FZ_EINVALID, FZ_EINVALID,   FZ_OK};
    const msgpack_object *tasks = fz_msg_obj(msg, "tasks");
    assert_int_equal(tasks->via.array.size, sizeof want / sizeof *want);
    for (uint32_t i = 0; i < tasks->via.array.size; i++) {
        char why[256] = "";
        fz_err_t err = fz_msg_check_object(&tasks->via.array.ptr[i], "submit", why, sizeof why);
        if (err != want[i])
            fail_msg("batch element %u: expected '%s', got '%s' (%s)", (unsigned)i,
                     fz_strerror(want[i]), fz_strerror(err), why);
        if (err != FZ_OK && !why[0])
            fail_msg("batch element %u: no reason", (unsigned)i);
    }
    char why[256];
    /* missing prompt: the reason names it */
    fz_msg_check_object(&tasks->via.array.ptr[1], "submit", why, sizeof why);
    assert_non_null(strstr(why, "prompt"));
    /* not a map, NULL, an unknown type */
    assert_int_equal(fz_msg_check_object(tasks, "submit", why, sizeof why), FZ_EINVALID);
    assert_int_equal(fz_msg_check_object(NULL, "submit", why, sizeof why), FZ_EINVALID);
    assert_int_equal(fz_msg_check_object(&tasks->via.array.ptr[0], "no-such-type", why, sizeof why),
                     FZ_EINVALID);
    /* the same map against other types' fields */
    assert_int_equal(fz_msg_check_object(&tasks->via.array.ptr[0], "ping", why, sizeof why), FZ_OK);
    assert_int_equal(fz_msg_check_object(&tasks->via.array.ptr[0], "get", why, sizeof why),
                     FZ_EINVALID); /* get needs task */
    fz_msg_destroy(&msg);
}

/* ---------------------------------------------------------------- JSON */

static void test_json_invalid_utf8_bin(void **state)
{
    (void)state;
    /* Each invalid byte becomes U+FFFD; valid sequences (é) pass; NUL is replaced. */
    static const char data[] = "a\xff"
                               "b\x00"
                               "c\xc3\xa9\xe2\x82"
                               "A\xed\xa0\x80\xc3";
    static const char want[] = "a\xef\xbf\xbd"
                               "b\xef\xbf\xbd"
                               "c\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd"
                               "A\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";
    fz_enc_t *enc = fz_enc_new("output", 7);
    fz_enc_uint(enc, "task", 3);
    fz_enc_uint(enc, "attempt", 1);
    fz_enc_bin(enc, "data", data, sizeof data - 1);
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
    char *text = s_json_of(fz_msg_root(msg));
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j)
        fail_msg("invalid JSON (%s): %s", err.text, text);
    assert_true(json_is_object(j));
    assert_string_equal(json_string_value(json_object_get(j, "type")), "output");
    assert_int_equal(json_integer_value(json_object_get(j, "v")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "rid")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "task")), 3);
    json_t *d = json_object_get(j, "data");
    assert_true(json_is_string(d));
    assert_int_equal(json_string_length(d), sizeof want - 1);
    assert_memory_equal(json_string_value(d), want, sizeof want - 1);
    json_decref(j);
    free(text);
    fz_msg_destroy(&msg);

    /* All 256 byte values, in a binary result tail. */
    unsigned char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (unsigned char)(i < 256 ? i : 511 - i);
    enc = fz_enc_new("result", 0);
    fz_enc_uint(enc, "task", 1);
    fz_enc_uint(enc, "attempt", 1);
    fz_enc_str(enc, "outcome", "exited");
    fz_enc_bin(enc, "output", all, sizeof all);
    msg = DECODE_ENC(enc, FZ_OK);
    text = s_json_of(fz_msg_root(msg));
    j = json_loads(text, 0, &err);
    if (!j)
        fail_msg("invalid JSON (%s)", err.text);
    assert_true(json_is_string(json_object_get(j, "output")));
    /* 127 printable-or-control ASCII bytes (not NUL) survive twice, in order */
    const char *s = json_string_value(json_object_get(j, "output"));
    assert_non_null(strstr(s, "0123456789"));
    assert_non_null(strstr(s, "9876543210"));
    json_decref(j);
    free(text);
    fz_msg_destroy(&msg);
}

static void test_json_every_kind(void **state)
{
    (void)state;
    fz_enc_t *obj = fz_enc_new_map();
    fz_enc_uint(obj, "big", UINT64_MAX);
    fz_enc_int(obj, "neg", -42);
    fz_enc_float(obj, "f", 0.5);
    fz_enc_bool(obj, "t", true);
    fz_enc_nil(obj, "nil");
    fz_enc_str(obj, "quote", "\"\\\n\t");
    fz_enc_array(obj, "arr", 2);
    fz_enc_uint(obj, NULL, 1);
    fz_enc_map(obj, NULL, 0);
    fz_enc_uint(obj, "\xff\xfe", 1); /* a key that is not UTF-8 */
    fz_enc_map(obj, "m", 2);
    fz_enc_uint(obj, NULL, 5); /* a non-string key inside */
    fz_enc_uint(obj, NULL, 6);
    fz_enc_str(obj, NULL, "ok");
    fz_enc_bool(obj, NULL, false);
    fz_enc_t *enc = fz_enc_new("task", 0);
    fz_enc_sub(enc, "task", &obj);
    fz_msg_t *msg = DECODE_ENC(enc, FZ_OK);
    char *text = s_json_of(fz_msg_root(msg));
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j)
        fail_msg("invalid JSON (%s): %s", err.text, text);
    json_t *t = json_object_get(j, "task");
    assert_true(json_is_object(t));
    assert_true(json_is_integer(json_object_get(t, "big")));
    assert_int_equal(json_integer_value(json_object_get(t, "neg")), -42);
    s_assert_double(json_real_value(json_object_get(t, "f")), 0.5, "f");
    assert_true(json_is_true(json_object_get(t, "t")));
    assert_true(json_is_null(json_object_get(t, "nil")));
    assert_string_equal(json_string_value(json_object_get(t, "quote")), "\"\\\n\t");
    assert_int_equal(json_array_size(json_object_get(t, "arr")), 2);
    assert_true(json_is_false(json_object_get(json_object_get(t, "m"), "ok")));
    json_decref(j);
    free(text);
    fz_msg_destroy(&msg);
}

/* ---------------------------------------------------------------- fz_util */

static void test_utf8_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        bool ok;
    } cases[] = {
        {"", 0, true},
        {"hello", 5, true},
        {"\x7f", 1, true},             /* U+007F */
        {"\xc2\x80", 2, true},         /* U+0080 */
        {"\xdf\xbf", 2, true},         /* U+07FF */
        {"\xe0\xa0\x80", 3, true},     /* U+0800 */
        {"\xed\x9f\xbf", 3, true},     /* U+D7FF, last before the surrogates */
        {"\xee\x80\x80", 3, true},     /* U+E000, first after */
        {"\xef\xbf\xbf", 3, true},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 4, true}, /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 4, true}, /* U+10FFFF */
        {"\xe2\x82\xac"
         "1",
         4, true},        /* € then ASCII */
        {"\0", 1, false}, /* NUL */
        {"a\0b", 3, false},
        {"\x80", 1, false}, /* lone continuation */
        {"\xbf", 1, false},
        {"\xc0\x80", 2, false},                 /* overlong NUL */
        {"\xc0\xaf", 2, false},                 /* overlong '/' */
        {"\xc1\xbf", 2, false},                 /* overlong U+007F */
        {"\xe0\x80\x80", 3, false},             /* overlong 3-byte */
        {"\xe0\x9f\xbf", 3, false},             /* overlong U+07FF */
        {"\xf0\x80\x80\x80", 4, false},         /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 4, false},         /* overlong U+FFFF */
        {"\xed\xa0\x80", 3, false},             /* U+D800 */
        {"\xed\xbf\xbf", 3, false},             /* U+DFFF */
        {"\xed\xa0\xbd\xed\xb8\x80", 6, false}, /* CESU-8 surrogate pair */
        {"\xf4\x90\x80\x80", 4, false},         /* U+110000 */
        {"\xf5\x80\x80\x80", 4, false},
        {"\xf7\xbf\xbf\xbf", 4, false},
        {"\xf8\x88\x80\x80\x80", 5, false}, /* 5-byte form */
        {"\xfc\x84\x80\x80\x80\x80", 6, false},
        {"\xfe", 1, false},
        {"\xff", 1, false},
        {"\xc3", 1, false}, /* truncated */
        {"\xe2\x82", 2, false},
        {"\xf0\x9f\x98", 3, false},
        {"\xc3"
         "A",
         2, false}, /* continuation missing */
        {"\xe2\x82"
         "A",
         3, false},
        {"\xf0\x9f\x98"
         "A",
         4, false},
        {"\xc3\xa9\xa9", 3, false}, /* extra continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (fz_utf8_valid(cases[i].s, cases[i].len) != cases[i].ok)
            fail_msg("case %zu: fz_utf8_valid should be %s", i, cases[i].ok ? "true" : "false");
    /* len is honoured: the bad byte past it is not read. */
    assert_true(fz_utf8_valid("abc\xff", 3));
    assert_false(fz_utf8_valid("abc\xff", 4));
    assert_true(fz_utf8_valid("\xc3\xa9\xc3", 2));
}

static void test_parse_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t min, max;
        bool ok;
        int64_t v;
    } ints[] = {
        {"0", -5, 5, true, 0},
        {"-5", -5, 5, true, -5},
        {"5", -5, 5, true, 5},
        {"6", -5, 5, false, 0},
        {"-6", -5, 5, false, 0},
        {"", -5, 5, false, 0},
        {"5x", -5, 5, false, 0},
        {"5 ", -5, 5, false, 0},
        {"1.0", -5, 5, false, 0},
        {"0x1", -5, 5, false, 0},
        {"x", -5, 5, false, 0},
        {"-", -5, 5, false, 0},
        {"9223372036854775807", INT64_MIN, INT64_MAX, true, INT64_MAX},
        {"-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN},
        {"9223372036854775808", INT64_MIN, INT64_MAX, false, 0},
        {"-9223372036854775809", INT64_MIN, INT64_MAX, false, 0},
        {"1e3", 0, 10000, false, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        int64_t v = 12345;
        bool ok = fz_parse_int(ints[i].s, ints[i].min, ints[i].max, &v);
        if (ok != ints[i].ok || (ok && v != ints[i].v))
            fail_msg("fz_parse_int(\"%s\") gave %d, %lld", ints[i].s, ok, (long long)v);
        if (!ok && v != 12345)
            fail_msg("fz_parse_int(\"%s\") wrote its output on failure", ints[i].s);
    }
    int64_t iv;
    assert_false(fz_parse_int(NULL, 0, 1, &iv));

    static const struct {
        const char *s;
        uint64_t max;
        bool ok;
        uint64_t v;
    } uints[] = {
        {"0", 10, true, 0},
        {"10", 10, true, 10},
        {"11", 10, false, 0},
        {"-1", 10, false, 0},
        {"-1", UINT64_MAX, false, 0},
        {"+1", 10, false, 0},
        {"-0", 10, false, 0},
        {"", 10, false, 0},
        {"1x", 10, false, 0},
        {"18446744073709551615", UINT64_MAX, true, UINT64_MAX},
        {"18446744073709551616", UINT64_MAX, false, 0},
        {"99999999999999999999999", UINT64_MAX, false, 0},
        {"0x10", 100, false, 0},
    };
    for (size_t i = 0; i < sizeof uints / sizeof *uints; i++) {
        uint64_t v = 12345;
        bool ok = fz_parse_uint(uints[i].s, uints[i].max, &v);
        if (ok != uints[i].ok || (ok && v != uints[i].v))
            fail_msg("fz_parse_uint(\"%s\") gave %d, %llu", uints[i].s, ok, (unsigned long long)v);
    }
    uint64_t uv;
    assert_false(fz_parse_uint(NULL, 10, &uv));

    static const struct {
        const char *s;
        double min, max;
        bool ok;
        double v;
    } dbls[] = {
        {"0", 0, 10, true, 0},
        {"1.5", 0, 10, true, 1.5},
        {"10", 0, 10, true, 10},
        {"10.0001", 0, 10, false, 0},
        {"-0.5", -1, 1, true, -0.5},
        {"-0.5", 0, 1, false, 0},
        {"2e1", 0, 100, true, 20},
        {"nan", -1e300, 1e300, false, 0},
        {"NaN", -1e300, 1e300, false, 0},
        {"inf", -1e300, 1e300, false, 0},
        {"-inf", -1e300, 1e300, false, 0},
        {"1e400", -1e300, 1e308, false, 0},
        {"", 0, 1, false, 0},
        {"1.5x", 0, 10, false, 0},
        {"1.5 ", 0, 10, false, 0},
        {".", 0, 10, false, 0},
        {"abc", 0, 10, false, 0},
    };
    for (size_t i = 0; i < sizeof dbls / sizeof *dbls; i++) {
        double v = 12345;
        bool ok = fz_parse_double(dbls[i].s, dbls[i].min, dbls[i].max, &v);
        if (ok != dbls[i].ok || (ok && v != dbls[i].v))
            fail_msg("fz_parse_double(\"%s\") gave %d, %g", dbls[i].s, ok, v);
    }
    double dv;
    assert_false(fz_parse_double(NULL, 0, 1, &dv));
}

static void test_errors_and_names(void **state)
{
    (void)state;
    static const char *const names[FZ_ECOUNT] = {
        "ok",        "malformed", "version",  "unknown-type", "invalid", "too-large",
        "not-found", "refused",   "conflict", "unavailable",  "internal"};
    assert_int_equal(FZ_OK, 0);
    for (int i = 0; i < FZ_ECOUNT; i++) {
        assert_string_equal(fz_strerror((fz_err_t)i), names[i]);
        assert_int_equal(fz_err_from_name(names[i]), i);
    }
    assert_string_equal(fz_strerror((fz_err_t)-1), "internal");
    assert_string_equal(fz_strerror(FZ_ECOUNT), "internal");
    assert_int_equal(fz_err_from_name("no-such-code"), FZ_EINTERNAL);
    assert_int_equal(fz_err_from_name("Malformed"), FZ_EINTERNAL);
    assert_int_equal(fz_err_from_name(NULL), FZ_EINTERNAL);
}

static void test_endpoint_and_clocks(void **state)
{
    (void)state;
    const char *var = "FZ_MSG_TEST_ENDPOINT";
    unsetenv(var);
    assert_string_equal(fz_endpoint(NULL, var, "tcp://d"), "tcp://d");
    assert_string_equal(fz_endpoint("", var, "tcp://d"), "tcp://d");
    setenv(var, "ipc:///tmp/x", 1);
    assert_string_equal(fz_endpoint(NULL, var, "tcp://d"), "ipc:///tmp/x");
    assert_string_equal(fz_endpoint("tcp://flag", var, "tcp://d"), "tcp://flag");
    setenv(var, "", 1);
    assert_string_equal(fz_endpoint(NULL, var, "tcp://d"), "tcp://d");
    assert_string_equal(fz_endpoint(NULL, NULL, "tcp://d"), "tcp://d");
    unsetenv(var);

    int64_t t0 = fz_clock_ms();
    usleep(20000);
    int64_t t1 = fz_clock_ms();
    assert_in_range(t1 - t0, 15, 5000);
    assert_true(fz_wall() > 1.6e9);
}

static void test_mkdirs(void **state)
{
    (void)state;
    char base[] = "/tmp/fz-msg-test-XXXXXX";
    assert_non_null(mkdtemp(base));
    char path[256];
    snprintf(path, sizeof path, "%s/a/b/c", base);
    assert_int_equal(fz_mkdirs(path, 0700), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fz_mkdirs(path, 0700), 0); /* exists: fine */
    char file[300];
    snprintf(file, sizeof file, "%s/f", base);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/f/sub", base);
    assert_int_equal(fz_mkdirs(path, 0700), -1); /* a file in the way */
    rmdir(strcat(strcpy(path, base), "/a/b/c"));
    rmdir(strcat(strcpy(path, base), "/a/b"));
    rmdir(strcat(strcpy(path, base), "/a"));
    unlink(file);
    assert_int_equal(rmdir(base), 0);
}

/* ---------------------------------------------------------------- regressions (bugs found by these
 * tests, fixed) */

/* PROTOCOL.md §2 lets array<uint> fields hold 256 ids, but the decoder caps the number of
   msgpack elements at len/4 + 64, so dense but valid frames are refused as malformed. */
static void test_regression_element_cap(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("submit", 0);
    fz_enc_str(enc, "prompt", "x");
    fz_enc_array(enc, "after", 100);
    for (int i = 1; i <= 100; i++)
        fz_enc_uint(enc, NULL, (uint64_t)i);
    CHECK_ENC(enc, FZ_OK);
}

/* PROTOCOL.md §4: submit-batch holds 1..1000 maps, and fz_spec.c says min 1, but
   s_check_field checks only the max of containers: an empty batch decodes. */
static void test_regression_container_min(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("submit-batch", 0);
    fz_enc_array(enc, "tasks", 0);
    CHECK_ENC(enc, FZ_EINVALID);
}

/* The element cap again, on a realistic message: 1000 batch tasks with short prompts. */
static void test_regression_element_cap_batch(void **state)
{
    (void)state;
    fz_enc_t *enc = fz_enc_new("submit-batch", 0);
    fz_enc_array(enc, "tasks", 1000);
    for (int i = 0; i < 1000; i++) {
        fz_enc_t *t = fz_enc_new_map();
        fz_enc_str(t, "prompt", "x");
        fz_enc_sub(enc, NULL, &t);
    }
    CHECK_ENC(enc, FZ_OK);
}

/* PROTOCOL.md §2: "Nesting is at most 8 levels deep". The walk allows 10 (root included). */
static void test_regression_depth(void **state)
{
    (void)state;
    raw_t r;
    s_raw_init(&r);
    s_raw_envelope(&r, 3, "ping");
    s_raw_str(&r, "x");
    for (int i = 1; i < 10; i++)
        msgpack_pack_array(&r.pk, i == 9 ? 0 : 1);
    char frame[64];
    size_t len = r.sb.size;
    assert_true(len <= sizeof frame);
    memcpy(frame, r.sb.data, len);
    s_raw_free(&r);
    CHECK(frame, len, FZ_EMALFORMED);
}

/* PROTOCOL.md §3: too-large is for "the prompt or another payload"; a bin field over its
   limit (output data, result tail) gives invalid. s_check_field's `toolarge` is never set. */
static void test_regression_bin_too_large(void **state)
{
    (void)state;
    char *chunk = s_fill(FZ_MAX_CHUNK + 1, 'd');
    fz_enc_t *enc = fz_enc_new("output", 0);
    fz_enc_uint(enc, "task", 1);
    fz_enc_uint(enc, "attempt", 1);
    fz_enc_bin(enc, "data", chunk, FZ_MAX_CHUNK + 1);
    free(chunk);
    CHECK_ENC(enc, FZ_ETOOLARGE);
}

/* fz_msg.h: "Writes any msgpack object as JSON". Jansson's json_dumpf writes nothing for a
   scalar root unless JSON_ENCODE_ANY is given. */
static void test_regression_json_scalar(void **state)
{
    (void)state;
    msgpack_object o;
    o.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    o.via.u64 = 5;
    char *text = s_json_of(&o);
    char got[32];
    snprintf(got, sizeof got, "%s", text);
    free(text);
    assert_string_equal(got, "5");
}

/* fz_util.h: "the whole string must be the number". strtoll/strtoull/strtod skip leading
   white space, and strtoull negates: " -5" parses as 18446744073709551611. */
static void test_regression_parse_whitespace(void **state)
{
    (void)state;
    int64_t i;
    uint64_t u;
    double d;
    assert_false(fz_parse_int(" 5", 0, 10, &i));
    assert_false(fz_parse_uint(" 5", 10, &u));
    assert_false(fz_parse_uint(" -5", UINT64_MAX, &u));
    assert_false(fz_parse_double(" 1", 0, 10, &d));
}

/* PROTOCOL.md §3: a type the broker does not accept is unknown-type. A type string longer
   than 31 bytes is reported as invalid, "field 'type' (str) is missing". */
static void test_regression_long_type(void **state)
{
    (void)state;
    raw_t r;
    s_raw_init(&r);
    s_raw_envelope(&r, 2, "a-message-type-name-of-forty-bytes-12345");
    char frame[64];
    size_t len = r.sb.size;
    assert_true(len <= sizeof frame);
    memcpy(frame, r.sb.data, len);
    s_raw_free(&r);
    CHECK(frame, len, FZ_EUNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_types_known),
        cmocka_unit_test(test_spec_list_is_complete),
        cmocka_unit_test(test_roundtrip_every_type_every_field),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_every_field_rejects_bad_values),
        cmocka_unit_test(test_wire_bytes_ping),
        cmocka_unit_test(test_roundtrip_submit),
        cmocka_unit_test(test_roundtrip_result_and_replies),
        cmocka_unit_test(test_encoder_helpers),
        cmocka_unit_test(test_message_owns_its_memory),
        cmocka_unit_test(test_malformed_not_a_map),
        cmocka_unit_test(test_malformed_truncated),
        cmocka_unit_test(test_malformed_trailing_bytes),
        cmocka_unit_test(test_malformed_deep_nesting),
        cmocka_unit_test(test_malformed_huge_counts),
        cmocka_unit_test(test_max_frame_boundary),
        cmocka_unit_test(test_malformed_ext_and_reserved),
        cmocka_unit_test(test_malformed_duplicate_keys),
        cmocka_unit_test(test_malformed_non_string_keys),
        cmocka_unit_test(test_malformed_too_many_fields),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_rid),
        cmocka_unit_test(test_type_field),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_float_accepts_integers),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_prompt_and_strings),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_after_limit),
        cmocka_unit_test(test_check_object),
        cmocka_unit_test(test_check_strict),
        cmocka_unit_test(test_json_invalid_utf8_bin),
        cmocka_unit_test(test_json_every_kind),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_errors_and_names),
        cmocka_unit_test(test_endpoint_and_clocks),
        cmocka_unit_test(test_mkdirs),
        cmocka_unit_test(test_regression_element_cap),
        cmocka_unit_test(test_regression_element_cap_batch),
        cmocka_unit_test(test_regression_container_min),
        cmocka_unit_test(test_regression_depth),
        cmocka_unit_test(test_regression_bin_too_large),
        cmocka_unit_test(test_regression_json_scalar),
        cmocka_unit_test(test_regression_parse_whitespace),
        cmocka_unit_test(test_regression_long_type),
    };
    return cmocka_run_group_tests_name("msg", tests, NULL, NULL);
}
