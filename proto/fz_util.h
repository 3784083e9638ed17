/*  fz_util: the small things every fz binary shares.

    - one error enum (FZ_OK = 0) with the protocol's error code names;
    - clocks: monotonic milliseconds for deadlines, wall seconds for records;
    - logging to stderr with a level and the program name, printf-checked;
    - strict number parsing for flags and files;
    - the default endpoints and their environment overrides.

    Nothing here allocates except fz_strdup-style helpers, whose result the caller frees. */

#ifndef FZ_UTIL_H
#define FZ_UTIL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FZ_PROTOCOL_VERSION 1

#define FZ_DEFAULT_BROKER "tcp://127.0.0.1:5570"
#define FZ_DEFAULT_EVENTS "tcp://127.0.0.1:5571"

/* Error codes; the names (fz_strerror) are the `code` strings of the protocol's error reply. */
typedef enum {
    FZ_OK = 0,
    FZ_EMALFORMED,
    FZ_EVERSION,
    FZ_EUNKNOWN,
    FZ_EINVALID,
    FZ_ETOOLARGE,
    FZ_ENOTFOUND,
    FZ_EREFUSED,
    FZ_ECONFLICT,
    FZ_EUNAVAILABLE,
    FZ_EINTERNAL,
    FZ_ECOUNT
} fz_err_t;

/* Protocol name of an error code ("malformed", "not-found", ...). Never NULL. */
const char *fz_strerror(fz_err_t err);
/* Reverse of fz_strerror; FZ_EINTERNAL for an unknown name. */
fz_err_t fz_err_from_name(const char *name);

/* Milliseconds from CLOCK_MONOTONIC: for deadlines, timeouts and heartbeats. Only
   clock_gettime, so async-signal-safe: the agent's keeper (a forked child) uses it too. */
int64_t fz_clock_ms(void);
/* The same clock in seconds with its full resolution: for measuring short spans. */
double fz_clock_s(void);
/* Unix time in seconds (CLOCK_REALTIME) with sub-second precision: for records only. */
double fz_wall(void);

typedef enum { FZ_LOG_ERROR, FZ_LOG_WARN, FZ_LOG_INFO, FZ_LOG_DEBUG } fz_log_level_t;

/* Sets the name printed in front of every log line and the most verbose level printed. */
void fz_log_init(const char *progname, fz_log_level_t level);
/* Raises the soft limit of open files to the hard one (every peer costs the broker a
   descriptor; ZeroMQ aborts the process when it runs out). The new limit, or -1. */
long fz_raise_nofile(void);

/* Logs one line on stderr, control characters escaped (fz_log_escape). */
void fz_log(fz_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies in to out[size] with C0 controls, DEL and C1 controls written as \xNN; returns the
   length written (cut to fit, always terminated). */
size_t fz_log_escape(const char *in, char *out, size_t size);
#define fz_error(...) fz_log(FZ_LOG_ERROR, __VA_ARGS__)
#define fz_warn(...) fz_log(FZ_LOG_WARN, __VA_ARGS__)
#define fz_info(...) fz_log(FZ_LOG_INFO, __VA_ARGS__)
#define fz_debug(...) fz_log(FZ_LOG_DEBUG, __VA_ARGS__)

/* Strict parsers: the whole string must be the number, in range; false otherwise. */
bool fz_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
bool fz_parse_uint(const char *s, uint64_t max, uint64_t *out);
bool fz_parse_double(const char *s, double min, double max, double *out);

/* For the servers' option parsing: prints "PROG: FLAG 'VALUE': WHAT" on stderr and returns
   2 (bad usage). fz_bad_value names the flag from the getopt_long table by its value c
   (argv[optind - 1] is the value itself when given apart). */
int fz_bad_flag(const char *prog, const char *flag, const char *value, const char *what);
/* getopt_long (with a leading ':' in its optstring) returned ':' (an option lacks its value)
   or '?' (an unknown option): says which, on stderr; returns 2. */
int fz_bad_option(const char *prog, int c, char **argv);
/* 2, after saying so, if a positional argument is left at optind (servers take none); 0. */
int fz_no_more_args(const char *prog, int argc, char **argv);
int fz_bad_value(const char *prog, const struct option *opts, int c, const char *value,
                 const char *what);

/* Endpoint from a flag value, else the environment variable, else the default. */
const char *fz_endpoint(const char *flag, const char *envvar, const char *dflt);

/* True if buf[0..len) is valid UTF-8 with no NUL byte. */
bool fz_utf8_valid(const char *buf, size_t len);

/* Copies in (a C string) to out as valid UTF-8 of at most max bytes: invalid bytes become
   '?', and the cut falls between characters. Returns the length written (out is always
   NUL-terminated when size > 0). For text from agents that must pass the codec's checks. */
size_t fz_utf8_clean(const char *in, size_t max, char *out, size_t size);

/* mkdir -p; 0 on success, -1 with errno set. */
int fz_mkdirs(const char *path, unsigned mode);

/* How many of the len bytes at s to keep so that at most max remain, cut between UTF-8
   characters: s[0..result) is valid UTF-8 when s[0..len) is. */
size_t fz_utf8_cut(const char *s, size_t len, size_t max);

/* Copies the C string src into dst (size > 0), cut short on a UTF-8 character boundary if it
   does not fit, so that text which was valid UTF-8 stays so. Bytes are not checked. */
void fz_strcopy(char *dst, size_t size, const char *src);

/* For constructors that return a one-line reason: formats it into err (when err and errlen
   are non-zero) and returns -1, so a check can `return fz_errf (err, errlen, ...)`. */
int fz_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Closes *fd if it is open (>= 0) and sets it to -1. */
void fz_close(int *fd);

/* fdatasync(fd), tried again when a signal cuts it short: 0 once what was written to fd is
   on the disk, else the errno of the failure. */
int fz_fdatasync(int fd);

#endif
