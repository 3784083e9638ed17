/*  fz_util: shared helpers; see fz_util.h. */

#include "fz_util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *s_err_names[FZ_ECOUNT] = {
    [FZ_OK] = "ok",
    [FZ_EMALFORMED] = "malformed",
    [FZ_EVERSION] = "version",
    [FZ_EUNKNOWN] = "unknown-type",
    [FZ_EINVALID] = "invalid",
    [FZ_ETOOLARGE] = "too-large",
    [FZ_ENOTFOUND] = "not-found",
    [FZ_EREFUSED] = "refused",
    [FZ_ECONFLICT] = "conflict",
    [FZ_EUNAVAILABLE] = "unavailable",
    [FZ_EINTERNAL] = "internal",
};

const char *fz_strerror(fz_err_t err)
{
    if ((int)err < 0 || err >= FZ_ECOUNT)
        return "internal";
    return s_err_names[err];
}

fz_err_t fz_err_from_name(const char *name)
{
    for (int i = 0; name && i < FZ_ECOUNT; i++)
        if (strcmp(s_err_names[i], name) == 0)
            return (fz_err_t)i;
    return FZ_EINTERNAL;
}

int64_t fz_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double fz_clock_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double fz_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static char s_progname[32] = "fz";
static fz_log_level_t s_level = FZ_LOG_INFO;

void fz_log_init(const char *progname, fz_log_level_t level)
{
    snprintf(s_progname, sizeof s_progname, "%s", progname ? progname : "fz");
    s_level = level;
    const char *env = getenv("FZ_LOG");
    if (env && strcmp(env, "debug") == 0)
        s_level = FZ_LOG_DEBUG;
    else if (env && strcmp(env, "quiet") == 0)
        s_level = FZ_LOG_WARN;
}

long fz_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return -1;
    }
    return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

size_t fz_log_escape(const char *in, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)in;
    size_t k = 0;
    for (; *s && k + 5 < size; s++) {
        /* C0 controls, DEL, and the C1 controls (UTF-8 C2 80..9F): they move cursors, erase
           lines and forge log entries on a terminal or in a file. */
        bool c1 = s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f;
        if (*s < 0x20 || *s == 0x7f || c1) {
            unsigned v = c1 ? *++s : *s;
            out[k++] = '\\';
            out[k++] = 'x';
            out[k++] = hex[v >> 4];
            out[k++] = hex[v & 15];
        } else
            out[k++] = (char)*s;
    }
    out[k] = 0;
    return k;
}

void fz_log(fz_log_level_t level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > s_level)
        return;
    char line[2048], text[1600];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d %s[%d] %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, s_progname, (int)getpid(), names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* What peers send (names, types, reasons) reaches the log through the arguments: every
       line is escaped here, once, rather than at each call. */
    if (n > 0 && (size_t)n < sizeof line)
        fz_log_escape(text, line + n, sizeof line - (size_t)n);
    /* One write per line, so lines of concurrent processes sharing stderr do not interleave. */
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    ssize_t rc = write(STDERR_FILENO, line, len);
    (void)rc;
}

/* strto* skip leading space and accept a sign the caller may not want: only plain
   decimal digits, after an optional '-', are numbers here. */
static bool s_plain_number(const char *s, bool sign)
{
    if (sign && *s == '-')
        s++;
    return *s >= '0' && *s <= '9';
}

bool fz_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !s_plain_number(s, true))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool fz_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !s_plain_number(s, false))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

bool fz_parse_double(const char *s, double min, double max, double *out)
{
    /* digits, '.' and '-' only: no space, no hex, no inf/nan */
    if (!s || !(s_plain_number(s, true) || (*s == '.' && s[1] >= '0' && s[1] <= '9')) ||
        strpbrk(s, "xXpP"))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

const char *fz_endpoint(const char *flag, const char *envvar, const char *dflt)
{
    if (flag && *flag)
        return flag;
    const char *env = envvar ? getenv(envvar) : NULL;
    return env && *env ? env : dflt;
}

bool fz_utf8_valid(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        int more;
        unsigned min;
        if ((c & 0xE0) == 0xC0)
            more = 1, min = 0x80, c &= 0x1F;
        else if ((c & 0xF0) == 0xE0)
            more = 2, min = 0x800, c &= 0x0F;
        else if ((c & 0xF8) == 0xF0)
            more = 3, min = 0x10000, c &= 0x07;
        else
            return false;
        if (end - p <= more)
            return false;
        for (int i = 1; i <= more; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (p[i] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        p += more + 1;
    }
    return true;
}

int fz_mkdirs(const char *path, unsigned mode)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

size_t fz_utf8_clean(const char *in, size_t max, char *out, size_t size)
{
    size_t n = 0, i = 0, len = strlen(in);
    if (size == 0)
        return 0;
    while (i < len) {
        /* the longest valid sequence (1..4 bytes) starting here, or none */
        size_t step = 0;
        for (size_t k = 1; k <= 4 && i + k <= len; k++)
            if (fz_utf8_valid(in + i, k)) {
                step = k;
                break;
            }
        const char *piece = step ? in + i : "?";
        size_t plen = step ? step : 1;
        if (n + plen > max || n + plen >= size)
            break; /* cut on a character boundary */
        memcpy(out + n, piece, plen);
        n += plen;
        i += step ? step : 1;
    }
    out[n] = 0;
    return n;
}

int fz_bad_flag(const char *prog, const char *flag, const char *value, const char *what)
{
    fprintf(stderr, "%s: %s '%s': %s\n", prog, flag, value, what);
    return 2;
}

int fz_bad_option(const char *prog, int c, char **argv)
{
    if (c == ':')
        fprintf(stderr, "%s: option '%s' needs a value (see --help)\n", prog, argv[optind - 1]);
    else
        fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, argv[optind - 1]);
    return 2;
}

int fz_no_more_args(const char *prog, int argc, char **argv)
{
    if (optind >= argc)
        return 0;
    fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, argv[optind]);
    return 2;
}

int fz_bad_value(const char *prog, const struct option *opts, int c, const char *value,
                 const char *what)
{
    char flag[64] = "option";
    for (; opts->name; opts++)
        if (opts->val == c) {
            snprintf(flag, sizeof flag, "--%s", opts->name);
            break;
        }
    return fz_bad_flag(prog, flag, value, what);
}

size_t fz_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max; /* s[n] is the first byte left out: it must not continue a character */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

void fz_strcopy(char *dst, size_t size, const char *src)
{
    size_t n = fz_utf8_cut(src, strlen(src), size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

int fz_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void fz_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

int fz_fdatasync(int fd)
{
    int rc;
    do
        rc = fdatasync(fd);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? errno : 0;
}
