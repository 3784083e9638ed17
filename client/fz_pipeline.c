/*  fz_pipeline: JSON-lines task graphs; see fz_pipeline.h. */

#include "fz_pipeline.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define FZ_PIPELINE_MAX 1000 /* a submit-batch holds at most this many tasks */

typedef struct {
    json_t *obj; /* the line's object (owned) */
    size_t line;
    const char *name;
    size_t *deps; /* indices of named dependencies (after, then after_any) */
    bool *dep_any;
    size_t ndeps;
    size_t order; /* position in submission order */
} node_t;

struct fz_pipeline_t {
    node_t *nodes;
    size_t n;
    size_t *sorted; /* node indices in submission order */
};

/* Fields a line may carry, with the JSON type each needs. */
static const struct {
    const char *key;
    json_type type; /* JSON_INTEGER also accepts nothing else; JSON_REAL accepts integers;
                       JSON_TRUE stands for a boolean */
} s_fields[] = {
    {"prompt", JSON_STRING},      {"name", JSON_STRING},      {"after", JSON_ARRAY},
    {"after_any", JSON_ARRAY},    {"priority", JSON_INTEGER}, {"model", JSON_STRING},
    {"timeout", JSON_INTEGER},    {"max_cost", JSON_REAL},    {"labels", JSON_OBJECT},
    {"retries", JSON_INTEGER},    {"fallback", JSON_ARRAY},   {"parent", JSON_INTEGER},
    {"deadline", JSON_REAL},      {"stall", JSON_INTEGER},    {"stall_kill", JSON_INTEGER},
    {"repo", JSON_STRING},        {"base", JSON_STRING},      {"check", JSON_STRING},
    {"keep_worktree", JSON_TRUE}, {"best_of", JSON_INTEGER},
};

static bool s_type_ok(json_t *v, json_type want)
{
    if (want == JSON_REAL)
        return json_is_number(v);
    if (want == JSON_TRUE)
        return json_is_boolean(v);
    return json_typeof(v) == want;
}

/* Checks one line's object; false with err filled. */
static bool s_check_line(json_t *obj, size_t line, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i, n = sizeof s_fields / sizeof *s_fields;
        for (i = 0; i < n && strcmp(s_fields[i].key, key) != 0; i++)
            ;
        if (i == n) {
            snprintf(err, errlen, "line %zu: unknown field '%s'", line, key);
            return false;
        }
        if (!s_type_ok(v, s_fields[i].type)) {
            snprintf(err, errlen, "line %zu: field '%s' has the wrong type", line, key);
            return false;
        }
    }
    json_t *prompt = json_object_get(obj, "prompt");
    if (!prompt || json_string_length(prompt) == 0) {
        snprintf(err, errlen, "line %zu: needs a non-empty \"prompt\"", line);
        return false;
    }
    return true;
}

static bool s_blank(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return *s == 0;
}

static ssize_t s_find(const fz_pipeline_t *self, const char *name)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->nodes[i].name && strcmp(self->nodes[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

/* Turns the names in after / after_any into node indices. */
static bool s_resolve(fz_pipeline_t *self, node_t *nd, char *err, size_t errlen)
{
    const char *keys[] = {"after", "after_any"};
    size_t cap = 0;
    for (int k = 0; k < 2; k++)
        cap += json_array_size(json_object_get(nd->obj, keys[k]));
    nd->deps = calloc(cap ? cap : 1, sizeof *nd->deps);
    nd->dep_any = calloc(cap ? cap : 1, sizeof *nd->dep_any);
    if (!nd->deps || !nd->dep_any) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (int k = 0; k < 2; k++) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(nd->obj, keys[k]), i, v)
        {
            if (json_is_integer(v) && json_integer_value(v) > 0)
                continue; /* an existing task's id: sent as it is */
            if (!json_is_string(v)) {
                snprintf(err, errlen,
                         "line %zu: %s holds something that is neither a name nor "
                         "a task id",
                         nd->line, keys[k]);
                return false;
            }
            ssize_t j = s_find(self, json_string_value(v));
            if (j < 0) {
                snprintf(err, errlen, "line %zu: %s names '%s', which no line defines", nd->line,
                         keys[k], json_string_value(v));
                return false;
            }
            nd->deps[nd->ndeps] = (size_t)j;
            nd->dep_any[nd->ndeps++] = k == 1;
        }
    }
    return true;
}

/* Orders the nodes so that each follows its dependencies (Kahn, stable by line); a cycle
   leaves nodes unplaced. */
static bool s_sort(fz_pipeline_t *self, char *err, size_t errlen)
{
    self->sorted = calloc(self->n, sizeof *self->sorted);
    bool *placed = calloc(self->n, sizeof *placed);
    if (!self->sorted || !placed) {
        free(placed);
        snprintf(err, errlen, "out of memory");
        return false;
    }
    size_t done = 0;
    for (bool progress = true; progress && done < self->n;) {
        progress = false;
        for (size_t i = 0; i < self->n; i++) {
            if (placed[i])
                continue;
            bool ready = true;
            for (size_t d = 0; d < self->nodes[i].ndeps && ready; d++)
                ready = placed[self->nodes[i].deps[d]];
            if (!ready)
                continue;
            placed[i] = true;
            self->nodes[i].order = done;
            self->sorted[done++] = i;
            progress = true;
        }
    }
    if (done < self->n) {
        int k = snprintf(err, errlen, "the pipeline has a cycle through:");
        for (size_t i = 0; i < self->n && k > 0 && (size_t)k < errlen; i++)
            if (!placed[i])
                k += snprintf(err + k, errlen - (size_t)k, " %s (line %zu)",
                              self->nodes[i].name ? self->nodes[i].name : "?", self->nodes[i].line);
    }
    free(placed);
    return done == self->n;
}

static bool s_add_line(fz_pipeline_t *self, const char *text, size_t line, char *err, size_t errlen)
{
    if (self->n == FZ_PIPELINE_MAX) {
        snprintf(err, errlen, "more than %d tasks in one pipeline", FZ_PIPELINE_MAX);
        return false;
    }
    json_error_t jerr;
    json_t *obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj || !json_is_object(obj)) {
        snprintf(err, errlen, "line %zu: %s", line, obj ? "not a JSON object" : jerr.text);
        json_decref(obj);
        return false;
    }
    if (!s_check_line(obj, line, err, errlen)) {
        json_decref(obj);
        return false;
    }
    node_t *nd = &self->nodes[self->n++];
    memset(nd, 0, sizeof *nd);
    nd->obj = obj;
    nd->line = line;
    json_t *name = json_object_get(obj, "name");
    nd->name = name ? json_string_value(name) : NULL;
    if (nd->name && s_find(self, nd->name) != (ssize_t)(self->n - 1)) {
        snprintf(err, errlen, "line %zu: name '%s' is used twice", line, nd->name);
        return false;
    }
    return true;
}

fz_pipeline_t *fz_pipeline_read(FILE *in, const char *path, char *err, size_t errlen)
{
    fz_pipeline_t *self = calloc(1, sizeof *self);
    if (self)
        self->nodes = calloc(FZ_PIPELINE_MAX, sizeof *self->nodes);
    if (!self || !self->nodes) {
        free(self);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char *text = NULL;
    size_t size = 0, line = 0;
    bool ok = true;
    while (ok && getline(&text, &size, in) >= 0) {
        line++;
        if (!s_blank(text))
            ok = s_add_line(self, text, line, err, errlen);
    }
    free(text);
    if (ok && self->n == 0) {
        snprintf(err, errlen, "'%s' holds no task", path);
        ok = false;
    }
    for (size_t i = 0; ok && i < self->n; i++)
        ok = s_resolve(self, &self->nodes[i], err, errlen);
    ok = ok && s_sort(self, err, errlen);
    if (!ok)
        fz_pipeline_destroy(&self);
    return self;
}

void fz_pipeline_destroy(fz_pipeline_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_pipeline_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        json_decref(self->nodes[i].obj);
        free(self->nodes[i].deps);
        free(self->nodes[i].dep_any);
    }
    free(self->nodes);
    free(self->sorted);
    free(self);
    *self_p = NULL;
}

size_t fz_pipeline_size(const fz_pipeline_t *self)
{
    return self->n;
}

size_t fz_pipeline_line(const fz_pipeline_t *self, size_t i)
{
    return i < self->n ? self->nodes[self->sorted[i]].line : 0;
}

const char *fz_pipeline_name(const fz_pipeline_t *self, size_t i)
{
    const char *name = self->nodes[self->sorted[i]].name;
    return name ? name : "";
}

/* Writes one JSON value with the msgpack type its field needs. */
static void s_encode_value(fz_enc_t *e, const char *key, json_t *v)
{
    size_t i;
    const char *k;
    json_t *x;
    switch (json_typeof(v)) {
    case JSON_STRING:
        fz_enc_strn(e, key, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        if (json_integer_value(v) >= 0)
            fz_enc_uint(e, key, (uint64_t)json_integer_value(v));
        else
            fz_enc_int(e, key, json_integer_value(v));
        break;
    case JSON_REAL:
        fz_enc_float(e, key, json_real_value(v));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        fz_enc_bool(e, key, json_is_true(v));
        break;
    case JSON_ARRAY:
        fz_enc_array(e, key, json_array_size(v));
        json_array_foreach(v, i, x) s_encode_value(e, NULL, x);
        break;
    case JSON_OBJECT:
        fz_enc_map(e, key, json_object_size(v));
        json_object_foreach(v, k, x)
        {
            fz_enc_str(e, NULL, k);
            s_encode_value(e, NULL, x);
        }
        break;
    default:
        fz_enc_nil(e, key);
        break;
    }
}

/* after / after_any: existing ids stay in the field, names become batch positions. */
static void s_encode_deps(const fz_pipeline_t *self, const node_t *nd, fz_enc_t *e, bool any)
{
    json_t *arr = json_object_get(nd->obj, any ? "after_any" : "after");
    size_t nids = 0, npos = 0, i;
    json_t *v;
    json_array_foreach(arr, i, v) nids += json_is_integer(v);
    for (size_t d = 0; d < nd->ndeps; d++)
        npos += nd->dep_any[d] == any;
    if (nids) {
        fz_enc_array(e, any ? "after_any" : "after", nids);
        json_array_foreach(arr, i, v) if (json_is_integer(v))
            fz_enc_uint(e, NULL, (uint64_t)json_integer_value(v));
    }
    if (npos) {
        fz_enc_array(e, any ? "after_any_index" : "after_index", npos);
        for (size_t d = 0; d < nd->ndeps; d++)
            if (nd->dep_any[d] == any)
                fz_enc_uint(e, NULL, self->nodes[nd->deps[d]].order);
    }
}

void fz_pipeline_encode(const fz_pipeline_t *self, fz_enc_t *req, fz_pipeline_defaults_fn *fn,
                        void *arg)
{
    fz_enc_array(req, "tasks", self->n);
    for (size_t s = 0; s < self->n; s++) {
        const node_t *nd = &self->nodes[self->sorted[s]];
        fz_enc_t *t = fz_enc_new_map();
        const char *own[32];
        size_t nown = 0;
        const char *key;
        json_t *v;
        json_object_foreach(nd->obj, key, v) if (nown < 32) own[nown++] = key;
        if (fn)
            fn(arg, t, own, nown);
        json_object_foreach(nd->obj, key, v)
        {
            if (strcmp(key, "after") && strcmp(key, "after_any"))
                s_encode_value(t, key, v);
        }
        s_encode_deps(self, nd, t, false);
        s_encode_deps(self, nd, t, true);
        fz_enc_sub(req, NULL, &t);
    }
}

bool fz_pipeline_sniff(FILE *in)
{
    int c;
    while ((c = getc(in)) != EOF && isspace(c))
        ;
    if (c != EOF)
        ungetc(c, in);
    return c == '{';
}
