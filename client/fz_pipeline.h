/*  fz_pipeline: a graph of tasks from a JSON-lines file, for one `submit-batch`.

    Each non-blank line is a JSON object: `prompt` (required), `name` (how other lines refer
    to it), `after` / `after_any` (names of other lines, or ids of existing tasks), and any
    submit option: `priority`, `model`, `timeout`, `max_cost`, `labels`, `retries`,
    `fallback`, `parent`, `deadline` (unix seconds). Lines may come in any order: the
    pipeline is sorted so that every task follows what it waits for, and a cycle or a name
    that no line defines is refused before anything is sent.

    The pipeline owns the parsed JSON; fz_pipeline_encode writes into the caller's encoder. */

#ifndef FZ_PIPELINE_H
#define FZ_PIPELINE_H

#include <stdbool.h>
#include <stdio.h>

#include "fz_msg.h"

typedef struct fz_pipeline_t fz_pipeline_t;

/* Reads and checks a pipeline. NULL with a one-line reason in err (naming the line). */
fz_pipeline_t *fz_pipeline_read(FILE *in, const char *path, char *err, size_t errlen);
void fz_pipeline_destroy(fz_pipeline_t **self_p);

/* Number of tasks. */
size_t fz_pipeline_size(const fz_pipeline_t *self);
/* File line of the i-th task in submission order (0 if out of range). */
size_t fz_pipeline_line(const fz_pipeline_t *self, size_t i);
/* Name of the i-th task in submission order ("" if it has none). */
const char *fz_pipeline_name(const fz_pipeline_t *self, size_t i);
/* Writes `tasks: [...]` (in submission order) into a submit-batch request. defaults_fn, when
   not NULL, adds the command line's options to each task map before its own fields. */
typedef void(fz_pipeline_defaults_fn)(void *arg, fz_enc_t *task, const char *const *own_keys,
                                      size_t nown);
void fz_pipeline_encode(const fz_pipeline_t *self, fz_enc_t *req, fz_pipeline_defaults_fn *fn,
                        void *arg);

/* True if the file looks like a pipeline: its first non-blank character is '{'. */
bool fz_pipeline_sniff(FILE *in);

#endif
