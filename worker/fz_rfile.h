/*  fz_rfile: the parser of an agent's report file (FZ_REPORT), and nothing else.

    Owns the line format: "KEY VALUE" lines, KEY one of
      cost_usd USD                 cumulative total
      tokens_in N                  cumulative fresh (uncached) input tokens
      tokens_cache_read N          cumulative input tokens read from the provider's cache
      tokens_cache_write N         cumulative input tokens written to it
      tokens_out N                 cumulative output tokens
      model NAME
      progress PCT [TEXT]          whole percent 0-100, a trailing % tolerated
      summary TEXT
      class NAME                   the failure class as the agent knows it (fz_vocab's
                                   names: rate-limit, quota, auth, ...)
      reset_at EPOCH               when a rate limit or quota resets: unix seconds, >= 0 and
                                   below 1e11
      retry_after SECONDS          how long the provider asked to wait: >= 0, below 1e7
    Numbers are plain decimals: integers are digits only (at most 20, within 64 bits); cost,
    reset_at and retry_after may have a fraction and an exponent but no sign, nan, inf or hex.
    The last value of each key wins. Unknown keys, unknown class names, malformed values
    (signs, nan, inf, hex, trailing junk, out of range), lines holding a NUL or another
    control character but tab, and lines over FZ_RFILE_LINE_MAX bytes are counted in
    `ignored` and skipped; blank lines are not counted at all.

    Pure: bytes in, values out. No I/O, no allocation (the line being assembled lives in the
    parser), no clock. Reading the file, following renames and truncation is fz_agent's job;
    it feeds what it read here. A line counts only once its newline arrives, unless the
    caller says the input is over (fz_rfile_finish). */

#ifndef FZ_RFILE_H
#define FZ_RFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_vocab.h"

#define FZ_RFILE_LINE_MAX 4096 /* longer report lines are ignored */
#define FZ_RFILE_MODEL_MAX 128 /* sizes of the text values, NUL included */
#define FZ_RFILE_PROGRESS_MAX 256
#define FZ_RFILE_RESET_AT_LIMIT 1e11   /* reset_at must be below this (the protocol's range) */
#define FZ_RFILE_RETRY_AFTER_LIMIT 1e7 /* retry_after must be below this */

/* What the report said so far. */
typedef struct {
    double cost_usd;
    uint64_t tokens_in; /* fresh input only: cache reads and writes are counted apart */
    uint64_t tokens_cache_read, tokens_cache_write;
    uint64_t tokens_out;
    char model[FZ_RFILE_MODEL_MAX];            /* no blanks; longer names are ignored */
    int progress_pct;                          /* -1 until reported */
    char progress_text[FZ_RFILE_PROGRESS_MAX]; /* cut on a UTF-8 boundary */
    char summary[FZ_RFILE_LINE_MAX + 1];
    fz_class_t cls;     /* FZ_CLASS_NONE until reported */
    double reset_at;    /* unix seconds; 0 until reported */
    double retry_after; /* seconds; 0 until reported */
    uint64_t lines;     /* accepted lines */
    uint64_t ignored;   /* unknown keys, malformed and overlong lines */
} fz_rfile_values_t;

/* The parser: values plus the partial line. Plain data, no destructor: copy or drop it. */
typedef struct {
    fz_rfile_values_t values;
    char line[FZ_RFILE_LINE_MAX + 1]; /* the line being assembled */
    size_t line_len;
    bool line_skip; /* discarding up to the next newline */
} fz_rfile_t;

/* Empty values (progress_pct -1), no partial line. */
void fz_rfile_init(fz_rfile_t *self);

/* Parses data[0..n), which continues what was fed before; may hold NULs and any byte. */
void fz_rfile_feed(fz_rfile_t *self, const char *data, size_t n);

/* Drops the partial line; with mid_line, what comes next continues a line we did not see
   the start of, and is skipped up to its newline. Values stay. */
void fz_rfile_restart(fz_rfile_t *self, bool mid_line);

/* The input is over: a last line without its newline counts, then as fz_rfile_restart. */
void fz_rfile_finish(fz_rfile_t *self);

#endif
