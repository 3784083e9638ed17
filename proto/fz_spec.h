/*  fz_spec: the protocol's messages and fields as data (PROTOCOL.md in a table).

    The decoder checks every received message against this table, so adding a field is one
    line here and one row in PROTOCOL.md. The table is static and read-only. */

#ifndef FZ_SPEC_H
#define FZ_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#include "fz_vocab.h"

typedef enum {
    FZ_T_UINT,  /* positive integer */
    FZ_T_INT,   /* any integer */
    FZ_T_FLOAT, /* float or integer, finite */
    FZ_T_BOOL,
    FZ_T_STR,     /* UTF-8, no NUL, max = bytes */
    FZ_T_BIN,     /* bin or str, max = bytes */
    FZ_T_STRMAP,  /* map<str,str>, max = entries */
    FZ_T_STRARR,  /* array<str>, max = entries */
    FZ_T_UINTARR, /* array<uint>, max = entries */
    FZ_T_OBJECT,  /* map, structure checked only */
    FZ_T_OBJARR   /* array of maps, structure checked only */
} fz_type_t;

#define FZ_F_REQUIRED 1u
#define FZ_F_EMPTY 2u /* array<str>: "" is an element too (a worker's `unhealthy`) */

typedef struct {
    const char *key;
    fz_type_t type;
    unsigned flags;
    double min, max; /* numbers: range; str/bin: max bytes; containers: max entries */
} fz_field_t;

typedef struct {
    const char *type;
    const fz_field_t *fields; /* terminated by a NULL key */
} fz_msgspec_t;

/* Size limits shared by the codec and the tools. */
#define FZ_MAX_FRAME (4u * 1024 * 1024)
#define FZ_MAX_PROMPT (256u * 1024)
#define FZ_MAX_TAIL (64u * 1024)
#define FZ_MAX_CHUNK (16u * 1024)
#define FZ_MAX_NAME 64
#define FZ_MAX_REPO 4096       /* a repository's path or URL */
#define FZ_MAX_REF 256         /* a git ref or commit */
#define FZ_MAX_CHECK 16384     /* a check command */
#define FZ_MAX_CHECK_TAIL 4096 /* the check output a result carries */
#define FZ_MAX_BEST_OF 16      /* attempts one task may race */
#define FZ_MAX_DEPTH 8

/* How many message types there are, and the i-th (for tools and tests that visit them all);
   NULL past the end. */
size_t fz_spec_count(void);
const fz_msgspec_t *fz_spec_at(size_t i);
/* The spec of a message type, or NULL if the type is unknown. */
const fz_msgspec_t *fz_spec_find(const char *type, size_t len);
/* The spec of one field of a message, or NULL. */
const fz_field_t *fz_spec_field(const fz_msgspec_t *spec, const char *key, size_t len);
/* The objects of PROTOCOL.md section 7 that replies embed, and the event maps of section 6,
   as field lists like a message's. Decoding does not check them (clients read them with
   fz_obj_*, trusting nothing); conformance tests do, strictly (fz_obj_check_strict). */
size_t fz_spec_object_count(void);
const fz_msgspec_t *fz_spec_object_at(size_t i);
/* The spec of an object: "task" (in a `get` reply), "task-listed" (in a `list` reply),
   "attempt", "worker", "cost-row", "counts" (status); NULL if unknown. */
const fz_msgspec_t *fz_spec_object(const char *name);
/* The map of the events of `topic` (its type is the topic's name); NULL for FZ_TOPIC_NONE
   and out of range. */
const fz_msgspec_t *fz_spec_event(fz_topic_t topic);
/* The event spec of the topic `name` (len bytes), or NULL. */
const fz_msgspec_t *fz_spec_event_named(const char *name, size_t len);
/* What the OBJECT or OBJARR field `key` of `spec` holds: the spec of its maps (an object, or
   a message's for the tasks of a submit-batch), or NULL when it is free-form. The `events`
   reply's maps are events, each of the topic its `event` field names: for them this gives
   the spec named "event" (the fields every event carries). */
const fz_msgspec_t *fz_spec_holds(const fz_msgspec_t *spec, const char *key);

/* Name of a field type, for error messages ("uint", "map<str,str>", ...). */
const char *fz_type_name(fz_type_t type);

#endif
