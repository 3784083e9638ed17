/*  fz_cli: what fz-submit, fz-watch and fz-ctl share, so they print, parse and exit alike.

    - the exit-code table (one for all three tools) and the mapping from protocol errors;
    - usage errors, --version, and the common help text (environment, exit codes);
    - strict flag parsing that prints one clear line on failure (built on fz_parse_*);
    - formatting: UTC ISO-8601 times, one-line escaped text, money, durations;
    - JSON output of a reply without its envelope.

    Nothing here keeps state beyond the program name. Buffers are the caller's; functions that
    allocate say so. */

#ifndef FZ_CLI_H
#define FZ_CLI_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fz_util.h"

/* Exit codes of every fz client tool. */
enum {
    FZ_EXIT_OK = 0,           /* done; the task succeeded */
    FZ_EXIT_FAILED = 1,       /* the task failed (agent failed, attempts spent, dep-failed) */
    FZ_EXIT_USAGE = 2,        /* bad usage, or input refused (by the tool or by the broker) */
    FZ_EXIT_CANCELLED = 3,    /* the task was cancelled */
    FZ_EXIT_TIMEOUT = 4,      /* the task's last attempt timed out */
    FZ_EXIT_UNAVAILABLE = 5,  /* broker unreachable, or a protocol error */
    FZ_EXIT_NOTFOUND = 6,     /* no such task (or other object) */
    FZ_EXIT_CONFLICT = 7,     /* the object is in a state where the request makes no sense */
    FZ_EXIT_INTERRUPTED = 130 /* SIGINT/SIGTERM while waiting (the task goes on) */
};

/* The help text's environment section, shared by all tools. */
extern const char fz_cli_help_env[];
/* Prints the exit-code table for the codes listed in `codes` ("0,2,5"). */
void fz_cli_print_exit_codes(const char *codes, FILE *out);

/* Sets the program name for messages and logging, and takes signal handling from CZMQ
   (fz_net_init). Call first in main. */
void fz_cli_init(const char *progname);
const char *fz_cli_progname(void);
/* Takes the CURVE flags out of argv and loads the keys (fz_curve_client_args); on a bad flag
   or key prints why and returns -1 (exit FZ_EXIT_USAGE). Call after fz_cli_init. */
int fz_cli_curve(int *argc, char **argv);

/* Exit code for an error of a call (an error reply's code, or the client's own). */
int fz_cli_exit_code(fz_err_t err);

/* Prints "PROG: message" to stderr. */
void fz_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "PROG: message" and a hint to run --help; returns FZ_EXIT_USAGE. */
int fz_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "PROG VERSION" on stdout; returns FZ_EXIT_OK. */
int fz_cli_version(void);

/* Flag parsers: on bad input they print why (naming the flag) and return false. */
bool fz_cli_parse_uint(const char *flag, const char *arg, uint64_t min, uint64_t max,
                       uint64_t *out);
bool fz_cli_parse_int(const char *flag, const char *arg, int64_t min, int64_t max, int64_t *out);
bool fz_cli_parse_double(const char *flag, const char *arg, double min, double max, double *out);
/* "ID,ID,..." of task ids (each >= 1) into ids[max]; *n_p gets the count. */
bool fz_cli_parse_ids(const char *flag, const char *arg, uint64_t *ids, size_t max, size_t *n_p);
/* "m1,m2" into names[max] (each 1..FZ_CLI_MAX_NAME bytes of UTF-8); *n_p gets the count. */
#define FZ_CLI_MAX_NAME 64
bool fz_cli_parse_names(const char *flag, const char *arg, char (*names)[FZ_CLI_MAX_NAME + 1],
                        size_t max, size_t *n_p);
/* "KEY=VALUE" (key 1..64 bytes, value up to 1 KiB, both UTF-8): on success key[] holds the
   key and *value_p points into arg at the value. */
bool fz_cli_parse_label(const char *flag, const char *arg, char key[FZ_CLI_MAX_NAME + 1],
                        const char **value_p);
/* True if s is a real calendar date written YYYY-MM-DD. */
bool fz_cli_valid_date(const char *s);

/* ts (unix seconds) as "2025-01-31T12:00:00Z" into buf; "-" for 0. Returns buf. */
char *fz_cli_time(double ts, char *buf, size_t size);
/* ts with milliseconds: "2025-01-31T12:00:00.123Z". Returns buf. */
char *fz_cli_time_ms(double ts, char *buf, size_t size);
/* A duration in milliseconds as "850ms", "12.3s", "4m05s", "2h03m". Returns buf. */
char *fz_cli_duration(uint64_t ms, char *buf, size_t size);

/* Bytes as one line of text of at most `max` characters: control characters and newlines
   become escapes (\n, \t, \xNN), invalid UTF-8 becomes \xNN, and a cut is marked with "...".
   Writes into buf (NUL-terminated, never more than size); returns buf. */
char *fz_cli_oneline(const char *s, size_t len, size_t max, char *buf, size_t size);

/* Prints text as lines, each behind `indent`, with control characters escaped; only the last
   max_lines lines (0 = all), after a note saying how many were left out. */
void fz_cli_print_block(const char *s, size_t len, const char *indent, size_t max_lines, FILE *out);

/* Prints a reply map as one line of JSON, without its envelope keys (v, type, rid). */
void fz_cli_print_body_json(const msgpack_object *root, FILE *out);
/* Prints a map as one line of JSON with `key: value` (a string) added first. */
void fz_cli_print_json_with(const msgpack_object *map, const char *key, const char *value,
                            FILE *out);

#endif
