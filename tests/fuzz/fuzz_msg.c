/*  fuzz_msg: fuzz target for the protocol codec (proto/fz_msg.c, fz_spec.c, fz_util.c).

    Feeds arbitrary bytes to fz_msg_decode. On success it reads every field the spec knows
    through the accessors, checks that what the decoder accepted really obeys the spec (type,
    range, size, UTF-8, required fields, no duplicate keys), prints the message as JSON and
    parses that JSON back, and re-encodes the message and decodes it again. On failure it
    checks the failure contract (no message, a reason, a decode-time error code). It also
    compares fz_utf8_valid with an independent table-driven validator on the raw bytes.
    Any broken invariant calls abort(), which the fuzzer reports as a crash.

    Two builds (see README.md):
    - libFuzzer (clang -fsanitize=fuzzer,...): LLVMFuzzerTestOneInput below.
    - FZ_FUZZ_STANDALONE: a main() that replays corpus files and then runs N random mutations
      of them with a fixed seed; also writes the seed corpus and the dictionary. It runs as a
      ctest, and is the fallback where libFuzzer is not available.

    Re-encoding may legitimately be refused by the element cap (a frame of wide integers
    re-encodes into fewer bytes than the cap allows elements for); that one case is
    tolerated. */

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_msg.h"

/* Every message type, from the spec table itself. */
#define NTYPES fz_spec_count()
#define TYPE_AT(i) (fz_spec_at(i)->type)

static FILE *s_devnull;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_msg: invariant broken at line %d: %s: ", __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- reference UTF-8 */

/* Well-formed UTF-8 as the Unicode standard's table 3-7 lists it, minus NUL. Written from the
   table, independently of fz_utf8_valid, to compare the two. */
static bool s_ref_utf8(const unsigned char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 2;
        else if (c == 0xe0)
            n = 3, lo = 0xa0;
        else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
            n = 3;
        else if (c == 0xed)
            n = 3, hi = 0x9f;
        else if (c == 0xf0)
            n = 4, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            n = 4;
        else if (c == 0xf4)
            n = 4, hi = 0x8f;
        else
            return false;
        if (len - i < n)
            return false;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k < n; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                return false;
        i += n;
    }
    return true;
}

/* ---------------------------------------------------------------- checks of a decoded message */

static bool s_str_ok(const msgpack_object *o, size_t min, size_t max)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size >= min && o->via.str.size <= max &&
           fz_utf8_valid(o->via.str.ptr, o->via.str.size) &&
           s_ref_utf8((const unsigned char *)o->via.str.ptr, o->via.str.size);
}

static bool s_number_ok(double v, const fz_field_t *f)
{
    return isfinite(v) && v >= f->min && (f->max >= 1.8e19 || v <= f->max);
}

static bool s_same_key(const msgpack_object *a, const msgpack_object *b)
{
    return a->type == MSGPACK_OBJECT_STR && b->type == MSGPACK_OBJECT_STR &&
           a->via.str.size == b->via.str.size &&
           memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0;
}

/* Container levels of o, counting o itself. */
static int s_depth(const msgpack_object *o)
{
    int d = 0;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            int k = s_depth(&o->via.array.ptr[i]);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            int k = s_depth(&o->via.map.ptr[i].key);
            d = k > d ? k : d;
            k = s_depth(&o->via.map.ptr[i].val);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    return 0;
}

/* Reads map o through every fz_obj_* helper, as a reader of broker replies would. */
static void s_read_object(const msgpack_object *o)
{
    static const char *const keys[] = {"id",     "state",    "name",   "n",      "worker",
                                       "task",   "cost_usd", "paused", "prompt", "output",
                                       "labels", "models",   ""};
    char buf[8];
    size_t len;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        (void)fz_obj_get(o, keys[i]);
        (void)fz_obj_uint(o, keys[i], 1);
        (void)fz_obj_int(o, keys[i], -1);
        double d = fz_obj_float(o, keys[i], 0.5);
        CHECK(isfinite(d), "fz_obj_float gave a non-finite value");
        (void)fz_obj_bool(o, keys[i], true);
        const char *s = fz_obj_strn(o, keys[i], &len);
        CHECK(s != NULL, "fz_obj_strn gave NULL");
        for (size_t size = 1; size <= sizeof buf; size += 3) {
            fz_obj_str(o, keys[i], buf, size);
            CHECK(strlen(buf) < size, "fz_obj_str overran its buffer");
        }
    }
}

/* Checks value o against field spec f, with no accessor: for nested maps. */
static void s_check_value(const fz_field_t *f, const msgpack_object *o)
{
    const char *k = f->key;
    switch (f->type) {
    case FZ_T_UINT:
        CHECK(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && s_number_ok((double)o->via.u64, f),
              "%s: bad uint", k);
        break;
    case FZ_T_INT:
        CHECK(
            (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && s_number_ok((double)o->via.u64, f)) ||
                (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && s_number_ok((double)o->via.i64, f)),
            "%s: bad int", k);
        break;
    case FZ_T_FLOAT:
        CHECK((o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && s_number_ok((double)o->via.u64, f)) ||
                  (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
                   s_number_ok((double)o->via.i64, f)) ||
                  ((o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) &&
                   s_number_ok(o->via.f64, f)),
              "%s: bad float", k);
        break;
    case FZ_T_BOOL:
        CHECK(o->type == MSGPACK_OBJECT_BOOLEAN, "%s: not a bool", k);
        break;
    case FZ_T_STR:
        CHECK(s_str_ok(o, (size_t)f->min, (size_t)f->max), "%s: bad str", k);
        break;
    case FZ_T_BIN:
        CHECK((o->type == MSGPACK_OBJECT_BIN || o->type == MSGPACK_OBJECT_STR) &&
                  o->via.bin.size <= f->max,
              "%s: bad bin", k);
        break;
    case FZ_T_STRMAP:
    case FZ_T_OBJECT:
        CHECK(o->type == MSGPACK_OBJECT_MAP && o->via.map.size <= f->max, "%s: bad map", k);
        break;
    case FZ_T_STRARR:
    case FZ_T_UINTARR:
    case FZ_T_OBJARR:
        CHECK(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= f->max, "%s: bad array", k);
        break;
    }
}

/* Checks map o against the fields of message type `type` with fz_msg_check_object; if it
   says FZ_OK, every known field must obey its spec. */
static void s_check_nested(const msgpack_object *o, const char *type)
{
    char why[128];
    memset(why, 'x', sizeof why);
    fz_err_t err = fz_msg_check_object(o, type, why, sizeof why);
    if (err != FZ_OK) { /* why is written on failure only */
        CHECK(memchr(why, 0, sizeof why) != NULL, "check_object: why not terminated");
        /* malformed: a duplicate key inside the nested map (PROTOCOL.md §2) */
        CHECK(err == FZ_EINVALID || err == FZ_ETOOLARGE || err == FZ_EMALFORMED,
              "check_object gave '%s'", fz_strerror(err));
        CHECK(why[0] != 0, "check_object: no reason");
        return;
    }
    CHECK(o->type == MSGPACK_OBJECT_MAP && o->via.map.size <= 64,
          "check_object: accepted a non-map");
    const fz_msgspec_t *spec = fz_spec_find(type, strlen(type));
    CHECK(spec != NULL, "check_object accepted unknown type %s", type);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        CHECK(o->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR, "check_object: non-string key");
        for (uint32_t j = i + 1; j < o->via.map.size; j++)
            CHECK(!s_same_key(&o->via.map.ptr[i].key, &o->via.map.ptr[j].key),
                  "check_object: duplicate key");
    }
    for (const fz_field_t *f = spec->fields; f->key; f++) {
        const msgpack_object *v = fz_obj_get(o, f->key);
        CHECK(v || !(f->flags & FZ_F_REQUIRED), "check_object: %s missing", f->key);
        if (v)
            s_check_value(f, v);
    }
}

/* Checks field f (present in msg as o) against its spec, and reads it through the accessor
   for its type. */
static void s_check_field(fz_msg_t *msg, const fz_field_t *f, const msgpack_object *o)
{
    size_t len = 0;
    const char *k = f->key;
    s_check_value(f, o);
    switch (f->type) {
    case FZ_T_UINT:
        CHECK(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER, "%s: not a uint", k);
        CHECK(s_number_ok((double)o->via.u64, f), "%s: %llu out of range", k,
              (unsigned long long)o->via.u64);
        CHECK(fz_msg_uint(msg, k, 0) == o->via.u64, "%s: accessor disagrees", k);
        break;
    case FZ_T_INT:
        CHECK(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                  o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER,
              "%s: not an int", k);
        CHECK(s_number_ok((double)fz_msg_int(msg, k, 0), f), "%s: out of range", k);
        break;
    case FZ_T_FLOAT:
        CHECK(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                  o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || o->type == MSGPACK_OBJECT_FLOAT32 ||
                  o->type == MSGPACK_OBJECT_FLOAT64,
              "%s: not a number", k);
        CHECK(s_number_ok(fz_msg_float(msg, k, NAN), f), "%s: out of range", k);
        break;
    case FZ_T_BOOL:
        CHECK(o->type == MSGPACK_OBJECT_BOOLEAN, "%s: not a bool", k);
        (void)fz_msg_bool(msg, k, false);
        break;
    case FZ_T_STR: {
        CHECK(s_str_ok(o, (size_t)f->min, (size_t)f->max), "%s: bad str", k);
        const char *s = fz_msg_str(msg, k, NULL, &len);
        CHECK(s && strlen(s) == len && len == o->via.str.size, "%s: fz_msg_str", k);
        break;
    }
    case FZ_T_BIN: {
        CHECK(o->type == MSGPACK_OBJECT_BIN || o->type == MSGPACK_OBJECT_STR, "%s: not bin", k);
        CHECK(o->via.bin.size <= f->max, "%s: bin too long", k);
        const void *p = fz_msg_bin(msg, k, &len);
        CHECK(p && len == o->via.bin.size, "%s: fz_msg_bin", k);
        (void)fz_msg_str(msg, k, "", &len);
        break;
    }
    case FZ_T_STRMAP:
        CHECK(o->type == MSGPACK_OBJECT_MAP && o->via.map.size <= f->max, "%s: map", k);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            CHECK(s_str_ok(&kv->key, 1, 64) && s_str_ok(&kv->val, 0, 1024), "%s: entry", k);
            for (uint32_t j = i + 1; j < o->via.map.size; j++)
                CHECK(!s_same_key(&kv->key, &o->via.map.ptr[j].key), "%s: duplicate key", k);
        }
        s_read_object(o);
        break;
    case FZ_T_STRARR:
        CHECK(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= f->max, "%s: array", k);
        for (uint32_t i = 0; i < o->via.array.size; i++)
            CHECK(s_str_ok(&o->via.array.ptr[i], 1, FZ_MAX_NAME), "%s: element", k);
        break;
    case FZ_T_UINTARR:
        CHECK(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= f->max, "%s: array", k);
        for (uint32_t i = 0; i < o->via.array.size; i++)
            CHECK(o->via.array.ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER, "%s: elem", k);
        break;
    case FZ_T_OBJECT:
        CHECK(o->type == MSGPACK_OBJECT_MAP && o->via.map.size <= f->max, "%s: map", k);
        s_read_object(o);
        s_check_nested(o, "submit");
        s_check_nested(o, TYPE_AT(o->via.map.size % NTYPES));
        break;
    case FZ_T_OBJARR:
        CHECK(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size <= f->max, "%s: array", k);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            CHECK(o->via.array.ptr[i].type == MSGPACK_OBJECT_MAP, "%s: element", k);
            if (i < 8) { /* bounded work per input */
                s_read_object(&o->via.array.ptr[i]);
                s_check_nested(&o->via.array.ptr[i], "submit");
                s_check_nested(&o->via.array.ptr[i], TYPE_AT((i + o->via.array.size) % NTYPES));
            }
        }
        break;
    }
    fz_obj_print_json(o, s_devnull);
}

/* fz_obj_print_json must write JSON that parses, whatever bytes the strings hold. */
static void s_check_json(const msgpack_object *root)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return;
    fz_obj_print_json(root, f);
    fclose(f);
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    CHECK(j != NULL, "fz_obj_print_json wrote invalid JSON (%s): %.200s", err.text, text);
    CHECK(json_is_object(j), "a message printed as something other than an object");
    json_decref(j);
    free(text);
}

/* Re-encodes msg pair by pair with fz_enc_obj. */
static fz_enc_t *s_reencode(const msgpack_object *root)
{
    fz_enc_t *enc = fz_enc_new_map();
    if (!enc)
        return NULL;
    char key[256];
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        size_t n = kv->key.via.str.size;
        if (n >= sizeof key) { /* keys with NUL or > 255 bytes cannot go through fz_enc_* */
            fz_enc_destroy(&enc);
            return NULL;
        }
        memcpy(key, kv->key.via.str.ptr, n);
        key[n] = 0;
        if (strlen(key) != n) {
            fz_enc_destroy(&enc);
            return NULL;
        }
        fz_enc_obj(enc, key, &kv->val);
    }
    return enc;
}

static void s_check_reencode(const fz_msg_t *msg)
{
    const msgpack_object *root = fz_msg_root(msg);
    fz_enc_t *enc = s_reencode(root);
    if (!enc)
        return;
    size_t len1;
    const void *data = fz_enc_data(enc, &len1);
    CHECK(data != NULL, "fz_enc_data failed");
    fz_msg_t *again = NULL;
    char why[256];
    uint64_t rid;
    fz_err_t err = fz_msg_decode(data, len1, &again, &rid, why, sizeof why);
    /* The element cap (len/2 + 1024) may refuse a frame whose integers shrank. */
    if (err == FZ_EMALFORMED && strstr(why, "too many elements")) {
        fz_enc_destroy(&enc);
        return;
    }
    CHECK(err == FZ_OK, "re-encoded message refused: %s (%s)", fz_strerror(err), why);
    CHECK(strcmp(fz_msg_type(again), fz_msg_type(msg)) == 0, "type changed");
    CHECK(fz_msg_rid(again) == fz_msg_rid(msg) && rid == fz_msg_rid(msg), "rid changed");
    /* The canonical encoding is a fixed point. */
    fz_enc_t *enc2 = s_reencode(fz_msg_root(again));
    CHECK(enc2 != NULL, "second re-encoding failed");
    size_t len2;
    const void *data2 = fz_enc_data(enc2, &len2);
    CHECK(data2 && len2 == len1 && memcmp(data, data2, len1) == 0, "encoding not stable");
    fz_enc_destroy(&enc2);
    fz_msg_destroy(&again);
    fz_enc_destroy(&enc);
}

static void s_check_ok(fz_msg_t *msg, uint64_t rid)
{
    const msgpack_object *root = fz_msg_root(msg);
    CHECK(root && root->type == MSGPACK_OBJECT_MAP, "root is not a map");
    CHECK(root->via.map.size <= 64, "more than 64 fields");
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        CHECK(root->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR, "non-string key");
        for (uint32_t j = i + 1; j < root->via.map.size; j++)
            CHECK(!s_same_key(&root->via.map.ptr[i].key, &root->via.map.ptr[j].key),
                  "duplicate key accepted");
    }
    CHECK(fz_msg_uint(msg, "v", 0) == FZ_PROTOCOL_VERSION, "wrong version accepted");
    CHECK(fz_msg_rid(msg) == rid, "rid_p and fz_msg_rid disagree");
    CHECK(fz_msg_uint(msg, "rid", 0) == rid, "rid field and fz_msg_rid disagree");
    const char *type = fz_msg_type(msg);
    CHECK(type && fz_msg_is(msg, type), "fz_msg_type / fz_msg_is");
    const fz_msgspec_t *spec = fz_spec_find(type, strlen(type));
    CHECK(spec != NULL, "unknown type '%s' accepted", type);
    size_t len;
    const char *t = fz_msg_str(msg, "type", NULL, &len);
    CHECK(t && strcmp(t, type) == 0, "type field and fz_msg_type disagree");

    for (const fz_field_t *f = spec->fields; f->key; f++) {
        const msgpack_object *o = fz_msg_obj(msg, f->key);
        CHECK(o || !(f->flags & FZ_F_REQUIRED), "required field %s missing", f->key);
        CHECK(!o == !fz_msg_has(msg, f->key), "fz_msg_has disagrees on %s", f->key);
        if (o)
            s_check_field(msg, f, o);
    }
    /* Fields of other types' specs are unknown here: reading them must be harmless. */
    for (size_t i = 0; i < NTYPES; i++) {
        const fz_msgspec_t *other = fz_spec_at(i);
        for (const fz_field_t *f = other ? other->fields : NULL; f && f->key; f++) {
            (void)fz_msg_uint(msg, f->key, 0);
            (void)fz_msg_int(msg, f->key, 0);
            (void)fz_msg_float(msg, f->key, 0);
            (void)fz_msg_bool(msg, f->key, false);
            (void)fz_msg_str(msg, f->key, "", &len);
            (void)fz_msg_bin(msg, f->key, &len);
        }
    }
    fz_obj_print_json(root, s_devnull);
    s_check_json(root);
    s_check_reencode(msg);
    /* PROTOCOL.md: at most 8 levels, the root map included. */
    CHECK(s_depth(root) <= FZ_MAX_DEPTH, "nested %d levels deep", s_depth(root));
}

static void s_check_one(const uint8_t *data, size_t size)
{
    fz_msg_t *msg = (fz_msg_t *)&s_devnull; /* must be overwritten */
    uint64_t rid = 12345;
    char why[128];
    memset(why, 'x', sizeof why);
    fz_err_t err = fz_msg_decode(data, size, &msg, &rid, why, sizeof why);
    CHECK(memchr(why, 0, sizeof why) != NULL, "why not terminated");
    if (err == FZ_OK) {
        CHECK(msg != NULL, "FZ_OK without a message");
        s_check_ok(msg, rid);
        fz_msg_destroy(&msg);
        CHECK(msg == NULL, "fz_msg_destroy did not clear the pointer");
    } else {
        CHECK(msg == NULL, "a failure returned a message");
        CHECK(err == FZ_EMALFORMED || err == FZ_EVERSION || err == FZ_EUNKNOWN ||
                  err == FZ_EINVALID || err == FZ_ETOOLARGE || err == FZ_EINTERNAL,
              "decode gave '%s'", fz_strerror(err));
        CHECK(why[0] != 0, "no reason for '%s'", fz_strerror(err));
        CHECK(rid != 12345, "rid not written");
    }
    /* Decoding is deterministic. */
    fz_msg_t *again = NULL;
    uint64_t rid2 = 0;
    fz_err_t err2 = fz_msg_decode(data, size, &again, &rid2, NULL, 0);
    CHECK(err2 == err && rid2 == rid, "second decode differs");
    fz_msg_destroy(&again);

    /* The raw bytes as a string: fz_utf8_valid against the reference, and the parsers. */
    CHECK(fz_utf8_valid((const char *)data, size) == s_ref_utf8(data, size),
          "fz_utf8_valid disagrees with the reference on %zu bytes", size);
    if (size < 64) {
        char s[64];
        memcpy(s, data, size);
        s[size] = 0;
        int64_t i;
        uint64_t u;
        double d;
        if (fz_parse_int(s, -1000, 1000, &i))
            CHECK(i >= -1000 && i <= 1000, "fz_parse_int out of range");
        if (fz_parse_uint(s, 1000, &u))
            CHECK(u <= 1000, "fz_parse_uint out of range");
        if (fz_parse_double(s, -1.5, 1e6, &d))
            CHECK(isfinite(d) && d >= -1.5 && d <= 1e6, "fz_parse_double out of range");
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    s_devnull = fopen("/dev/null", "w");
    if (!s_devnull)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_devnull)
        LLVMFuzzerInitialize(NULL, NULL);
    s_check_one(data, size);
    return 0;
}

/* ================================================================ standalone driver */

#ifdef FZ_FUZZ_STANDALONE

#include <dirent.h>
#include <sys/stat.h>

typedef struct {
    uint8_t *data;
    size_t size;
} blob_t;

static blob_t *s_corpus;
static size_t s_ncorpus;

static void s_add(const uint8_t *data, size_t size)
{
    s_corpus = realloc(s_corpus, (s_ncorpus + 1) * sizeof *s_corpus);
    if (!s_corpus)
        abort();
    s_corpus[s_ncorpus].data = malloc(size ? size : 1);
    if (!s_corpus[s_ncorpus].data)
        abort();
    memcpy(s_corpus[s_ncorpus].data, data, size);
    s_corpus[s_ncorpus++].size = size;
}

static int s_load_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_msg: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    static uint8_t buf[FZ_MAX_FRAME + 1];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    s_add(buf, n);
    return 0;
}

static int s_load(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "fuzz_msg: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return s_load_file(path);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        rc |= s_load_file(sub);
    }
    closedir(dir);
    return rc;
}

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static uint64_t s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

/* One random edit of buf (size *size_p, capacity cap). */
static void s_mutate(uint8_t *buf, size_t *size_p, size_t cap)
{
    static const uint8_t magic[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc6, 0xc7, 0xca, 0xcb,
                                    0xcc, 0xcf, 0xd0, 0xd3, 0xd4, 0xd9, 0xdb, 0xdc, 0xdd,
                                    0xde, 0xdf, 0xe0, 0xed, 0xf4, 0xff};
    size_t size = *size_p;
    size_t pos = size ? s_rand() % size : 0;
    switch (s_rand() % 8) {
    case 0: /* flip a bit */
        if (size)
            buf[pos] ^= (uint8_t)(1u << (s_rand() % 8));
        break;
    case 1: /* a msgpack marker or an edge value */
        if (size)
            buf[pos] = magic[s_rand() % sizeof magic];
        break;
    case 2: /* random byte */
        if (size)
            buf[pos] = (uint8_t)s_rand();
        break;
    case 3: /* insert a byte */
        if (size < cap) {
            memmove(buf + pos + 1, buf + pos, size - pos);
            buf[pos] = magic[s_rand() % sizeof magic];
            size++;
        }
        break;
    case 4: /* delete a run */
        if (size) {
            size_t n = 1 + s_rand() % (size - pos < 8 ? size - pos : 8);
            memmove(buf + pos, buf + pos + n, size - pos - n);
            size -= n;
        }
        break;
    case 5: /* truncate */
        size = pos;
        break;
    case 6: { /* duplicate a run */
        size_t n = size ? 1 + s_rand() % (size - pos < 16 ? size - pos : 16) : 0;
        if (size + n <= cap) {
            memmove(buf + pos + n, buf + pos, size - pos);
            size += n;
        }
        break;
    }
    case 7: { /* splice in a piece of another corpus entry */
        const blob_t *b = &s_corpus[s_rand() % s_ncorpus];
        if (b->size) {
            size_t from = s_rand() % b->size;
            size_t n = 1 + s_rand() % (b->size - from);
            if (pos + n <= cap) {
                memcpy(buf + pos, b->data + from, n);
                if (pos + n > size)
                    size = pos + n;
            }
        }
        break;
    }
    }
    *size_p = size;
}

/* ---------------------------------------------------------------- seeds and dictionary */

/* A valid value for field f, as the seeds use it. */
static void s_seed_value(fz_enc_t *enc, const fz_field_t *f, unsigned idx)
{
    switch (f->type) {
    case FZ_T_UINT:
        fz_enc_uint(enc, f->key, (uint64_t)f->min + (f->max > f->min + idx ? idx : 0));
        break;
    case FZ_T_INT:
        fz_enc_int(enc, f->key, f->min < 0 ? -(int64_t)idx : (int64_t)f->min);
        break;
    case FZ_T_FLOAT:
        fz_enc_float(enc, f->key, f->min + 0.5);
        break;
    case FZ_T_BOOL:
        fz_enc_bool(enc, f->key, true);
        break;
    case FZ_T_STR:
        fz_enc_str(enc, f->key, f->max >= 8 ? "caf\xc3\xa9!" : "x");
        break;
    case FZ_T_BIN:
        fz_enc_bin(enc, f->key,
                   "\x00\xff\xc3\xa9"
                   "ab",
                   6);
        break;
    case FZ_T_STRMAP:
        fz_enc_map(enc, f->key, 2);
        fz_enc_str(enc, NULL, "team");
        fz_enc_str(enc, NULL, "web");
        fz_enc_str(enc, NULL, "k");
        fz_enc_str(enc, NULL, "");
        break;
    case FZ_T_STRARR:
        fz_enc_array(enc, f->key, 2);
        fz_enc_str(enc, NULL, "claude");
        fz_enc_str(enc, NULL, "codex");
        break;
    case FZ_T_UINTARR:
        fz_enc_array(enc, f->key, 2);
        fz_enc_uint(enc, NULL, 1);
        fz_enc_uint(enc, NULL, 1ull << 40);
        break;
    case FZ_T_OBJECT: {
        fz_enc_t *obj = fz_enc_new_map();
        fz_enc_uint(obj, "id", 7);
        fz_enc_str(obj, "state", "queued");
        fz_enc_float(obj, "cost_usd", 0.25);
        fz_enc_sub(enc, f->key, &obj);
        break;
    }
    case FZ_T_OBJARR: {
        fz_enc_array(enc, f->key, 1);
        fz_enc_t *obj = fz_enc_new_map();
        fz_enc_uint(obj, "n", 1);
        fz_enc_str(obj, "worker", "w1");
        fz_enc_sub(enc, NULL, &obj);
        break;
    }
    }
}

static int s_write(const char *dir, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "fuzz_msg: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* One seed per message type with every field set, and a few hand-made edge cases. */
static int s_write_seeds(const char *dir)
{
    int rc = 0;
    for (size_t t = 0; t < NTYPES; t++) {
        const fz_msgspec_t *spec = fz_spec_at(t);
        if (!spec)
            continue;
        fz_enc_t *enc = fz_enc_new(spec->type, t + 1);
        unsigned idx = 0;
        for (const fz_field_t *f = spec->fields; f->key; f++, idx++)
            s_seed_value(enc, f, idx);
        size_t len;
        const void *data = fz_enc_data(enc, &len);
        char name[64];
        snprintf(name, sizeof name, "%s.mp", spec->type);
        rc |= s_write(dir, name, data, len);
        fz_enc_destroy(&enc);
    }
#define EDGE(name, lit)                                                                            \
    {                                                                                              \
        name, lit, sizeof lit - 1                                                                  \
    }
    static const struct {
        const char *name, *bytes;
        size_t len;
    } edge[] = {
        EDGE("edge-ping-minimal.mp", "\x82\xa1v\x01\xa4type\xa4ping"),
        EDGE("edge-version-2.mp", "\x83\xa1v\x02\xa4type\xa4ping\xa3rid\x07"),
        EDGE("edge-nested.mp",
             "\x83\xa1v\x01\xa4type\xa4ping\xa1x\x91\x91\x91\x91\x91\x91\x91\x01"),
        EDGE("edge-wide-ints.mp", "\xde\x00\x03\xd9\x01v\xcf\x00\x00\x00\x00\x00\x00\x00\x01"
                                  "\xda\x00\x04type\xdb\x00\x00\x00\x03get\xa4task"
                                  "\xd3\x00\x00\x00\x00\x00\x00\x00\x05"),
        EDGE("edge-floats.mp", "\x84\xa1v\x01\xa4type\xa9heartbeat\xa8"
                               "cost_usd"
                               "\xca\x3f\xc0\x00\x00\xa8progress\x64"),
    };
#undef EDGE
    /* a batch whose elements are real submit maps, for fz_msg_check_object */
    fz_enc_t *enc = fz_enc_new("submit-batch", 9);
    fz_enc_array(enc, "tasks", 2);
    fz_enc_t *t = fz_enc_new_map();
    fz_enc_str(t, "prompt", "build it");
    fz_enc_int(t, "priority", 5);
    fz_enc_map(t, "labels", 1);
    fz_enc_str(t, NULL, "team");
    fz_enc_str(t, NULL, "web");
    fz_enc_sub(enc, NULL, &t);
    t = fz_enc_new_map();
    fz_enc_str(t, "prompt", "test it");
    fz_enc_array(t, "after_index", 1);
    fz_enc_uint(t, NULL, 0);
    fz_enc_float(t, "max_cost", 1.5);
    fz_enc_sub(enc, NULL, &t);
    size_t blen;
    const void *bdata = fz_enc_data(enc, &blen);
    rc |= s_write(dir, "edge-batch.mp", bdata, blen);
    fz_enc_destroy(&enc);
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++)
        rc |= s_write(dir, edge[i].name, edge[i].bytes, edge[i].len);
    return rc;
}

/* A libFuzzer dictionary: every key and type name as a msgpack fixstr, and the markers. */
static int s_write_dict(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "# fz protocol dictionary for libFuzzer (-dict=); made by fuzz_msg_replay "
               "--write-dict\n");
    const char *names[512];
    size_t nn = 0;
    names[nn++] = "v";
    names[nn++] = "type";
    names[nn++] = "rid";
    for (size_t t = 0; t < NTYPES; t++) {
        const fz_msgspec_t *spec = fz_spec_at(t);
        if (!spec)
            continue;
        names[nn++] = spec->type;
        for (const fz_field_t *fl = spec->fields; fl->key && nn < 510; fl++)
            names[nn++] = fl->key;
    }
    for (size_t i = 0; i < nn; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup = dup || strcmp(names[i], names[j]) == 0;
        size_t len = strlen(names[i]);
        if (dup || len > 31)
            continue;
        fprintf(f, "\"\\x%02x%s\"\n", 0xa0u | (unsigned)len, names[i]);
    }
    static const char *const markers[] = {"\\x82\\xa1v\\x01\\xa4type",
                                          "\\xc0",
                                          "\\xc2",
                                          "\\xc3",
                                          "\\xca",
                                          "\\xcb",
                                          "\\xcc",
                                          "\\xcd",
                                          "\\xce",
                                          "\\xcf",
                                          "\\xd0",
                                          "\\xd3",
                                          "\\xd9",
                                          "\\xda",
                                          "\\xdb",
                                          "\\xc4",
                                          "\\xc5",
                                          "\\xc6",
                                          "\\xdc",
                                          "\\xdd",
                                          "\\xde",
                                          "\\xdf",
                                          "\\xd4",
                                          "\\xc7",
                                          "\\xff\\xff\\xff\\xff",
                                          "\\xed\\xa0\\x80",
                                          "\\xf4\\x90\\x80\\x80",
                                          "\\xc0\\x80"};
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++)
        fprintf(f, "\"%s\"\n", markers[i]);
    return fclose(f);
}

static void s_usage(FILE *out)
{
    fprintf(out, "Usage: fuzz_msg_replay [-n N] [-s SEED] FILE|DIR...\n"
                 "       fuzz_msg_replay --write-seeds DIR | --write-dict FILE\n"
                 "Replays every FILE (every file of DIR) through the codec checks, then runs N\n"
                 "random mutations of them (default 0) from SEED. Exit 0 if no invariant broke\n"
                 "(a broken one aborts), 2 on usage errors.\n");
}

int main(int argc, char **argv)
{
    long long iterations = 0;
    int first = 1;
    LLVMFuzzerInitialize(&argc, &argv);
    for (; first < argc && argv[first][0] == '-'; first++) {
        const char *opt = argv[first];
        if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        if (first + 1 >= argc) {
            s_usage(stderr);
            return 2;
        }
        const char *val = argv[++first];
        uint64_t u;
        if (strcmp(opt, "-n") == 0 && fz_parse_uint(val, 1ull << 40, &u))
            iterations = (long long)u;
        else if (strcmp(opt, "-s") == 0 && fz_parse_uint(val, UINT64_MAX, &u))
            s_rng = u ? u : 1;
        else if (strcmp(opt, "--write-seeds") == 0)
            return s_write_seeds(val) ? 1 : 0;
        else if (strcmp(opt, "--write-dict") == 0)
            return s_write_dict(val) ? 1 : 0;
        else {
            s_usage(stderr);
            return 2;
        }
    }
    if (first >= argc) {
        s_usage(stderr);
        return 2;
    }
    for (int i = first; i < argc; i++)
        if (s_load(argv[i]) < 0)
            return 2;
    if (s_ncorpus == 0) {
        fprintf(stderr, "fuzz_msg: empty corpus\n");
        return 2;
    }
    uint64_t seed = s_rng;
    for (size_t i = 0; i < s_ncorpus; i++)
        s_check_one(s_corpus[i].data, s_corpus[i].size);

    size_t cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    if (!buf)
        abort();
    long long ok = 0;
    for (long long it = 0; it < iterations; it++) {
        const blob_t *b = &s_corpus[s_rand() % s_ncorpus];
        size_t size = b->size < cap ? b->size : cap;
        memcpy(buf, b->data, size);
        for (int k = 1 + (int)(s_rand() % 4); k > 0; k--)
            s_mutate(buf, &size, cap);
        /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
        uint8_t *exact = malloc(size ? size : 1);
        if (!exact)
            abort();
        memcpy(exact, buf, size);
        fz_msg_t *msg = NULL;
        if (fz_msg_decode(exact, size, &msg, NULL, NULL, 0) == FZ_OK)
            ok++;
        fz_msg_destroy(&msg);
        s_check_one(exact, size);
        free(exact);
    }
    free(buf);
    printf("fuzz_msg: %zu corpus files replayed, %lld mutations (seed %llu), %lld decoded ok; "
           "no invariant broken\n",
           s_ncorpus, iterations, (unsigned long long)seed, ok);
    for (size_t i = 0; i < s_ncorpus; i++)
        free(s_corpus[i].data);
    free(s_corpus);
    fclose(s_devnull);
    return 0;
}

#endif
