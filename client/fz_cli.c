/*  fz_cli: shared helpers of the client tools; see fz_cli.h. */

#include "fz_cli.h"

#include "fz_curve.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fz_msg.h"
#include "fz_net.h"

static const struct {
    int code;
    const char *meaning;
} s_exit_codes[] = {
    {FZ_EXIT_OK, "ok (fz-submit --wait: the task succeeded)"},
    {FZ_EXIT_FAILED, "the task failed (agent failed, attempts spent, or a dependency failed)"},
    {FZ_EXIT_USAGE, "bad usage, or input refused (by this tool or by the broker)"},
    {FZ_EXIT_CANCELLED, "the task was cancelled"},
    {FZ_EXIT_TIMEOUT, "the task's last attempt timed out"},
    {FZ_EXIT_UNAVAILABLE, "broker unreachable (no reply within 5 s), or a protocol error"},
    {FZ_EXIT_NOTFOUND, "no such task"},
    {FZ_EXIT_CONFLICT, "conflict: the task is in a state where the request makes no sense"},
    {FZ_EXIT_INTERRUPTED, "interrupted by SIGINT/SIGTERM (a task being waited for goes on)"},
};

void fz_cli_print_exit_codes(const char *codes, FILE *out)
{
    fprintf(out, "Exit codes:\n");
    for (size_t i = 0; i < sizeof s_exit_codes / sizeof *s_exit_codes; i++) {
        char name[8];
        snprintf(name, sizeof name, ",%d,", s_exit_codes[i].code);
        char list[64];
        snprintf(list, sizeof list, ",%s,", codes);
        if (strstr(list, name))
            fprintf(out, "  %-4d %s\n", s_exit_codes[i].code, s_exit_codes[i].meaning);
    }
}

const char fz_cli_help_env[] =
    "Environment:\n"
    "  FZ_BROKER   broker request endpoint (default " FZ_DEFAULT_BROKER ")\n"
    "  FZ_EVENTS   broker event endpoint (default " FZ_DEFAULT_EVENTS ")\n"
    "  FZ_LOG      'debug' for more diagnostics, 'quiet' for fewer\n"
    "  FZ_CURVE_SECRET  this peer's secret key file (or --curve-secret FILE) and\n"
    "  FZ_BROKER_KEY    the broker's public key file (or --broker-key FILE): CURVE on;\n"
    "                   neither: no keys (loopback and ipc)\n";

static char s_progname[32] = "fz";

void fz_cli_init(const char *progname)
{
    snprintf(s_progname, sizeof s_progname, "%s", progname);
    fz_log_init(progname, FZ_LOG_WARN);
    fz_net_init();
}

int fz_cli_curve(int *argc, char **argv)
{
    char err[4400];
    if (fz_curve_client_args(argc, argv, err, sizeof err) == 0)
        return 0;
    fz_cli_usage_error("%s", err);
    return -1;
}

const char *fz_cli_progname(void)
{
    return s_progname;
}

int fz_cli_exit_code(fz_err_t err)
{
    switch (err) {
    case FZ_OK:
        return FZ_EXIT_OK;
    case FZ_EINVALID:
    case FZ_ETOOLARGE:
    case FZ_EREFUSED:
        return FZ_EXIT_USAGE;
    case FZ_ENOTFOUND:
        return FZ_EXIT_NOTFOUND;
    case FZ_ECONFLICT:
        return FZ_EXIT_CONFLICT;
    default: /* unreachable, unavailable, malformed, version, unknown-type, internal */
        return FZ_EXIT_UNAVAILABLE;
    }
}

static void s_vprint(const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "%s: %s\n", s_progname, line);
}

void fz_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vprint(fmt, ap);
    va_end(ap);
}

int fz_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vprint(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", s_progname);
    return FZ_EXIT_USAGE;
}

int fz_cli_version(void)
{
    printf("%s %s\n", s_progname, FZ_VERSION);
    return FZ_EXIT_OK;
}

/* ---------------------------------------------------------------- parsing */

bool fz_cli_parse_uint(const char *flag, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (fz_parse_uint(arg, max, &v) && v >= min) {
        *out = v;
        return true;
    }
    fz_cli_usage_error("%s: '%s' is not a whole number from %llu to %llu", flag, arg,
                       (unsigned long long)min, (unsigned long long)max);
    return false;
}

bool fz_cli_parse_int(const char *flag, const char *arg, int64_t min, int64_t max, int64_t *out)
{
    if (fz_parse_int(arg, min, max, out))
        return true;
    fz_cli_usage_error("%s: '%s' is not a whole number from %lld to %lld", flag, arg,
                       (long long)min, (long long)max);
    return false;
}

bool fz_cli_parse_double(const char *flag, const char *arg, double min, double max, double *out)
{
    if (fz_parse_double(arg, min, max, out))
        return true;
    fz_cli_usage_error("%s: '%s' is not a number from %g to %g", flag, arg, min, max);
    return false;
}

bool fz_cli_parse_ids(const char *flag, const char *arg, uint64_t *ids, size_t max, size_t *n_p)
{
    size_t n = 0;
    const char *p = arg;
    while (true) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        uint64_t id;
        if (len == 0 || len >= sizeof item) {
            fz_cli_usage_error("%s: '%s' is not a comma-separated list of task ids", flag, arg);
            return false;
        }
        memcpy(item, p, len);
        item[len] = 0;
        if (!fz_parse_uint(item, UINT64_MAX, &id) || id == 0) {
            fz_cli_usage_error("%s: '%s' is not a task id", flag, item);
            return false;
        }
        if (n == max) {
            fz_cli_usage_error("%s: more than %zu task ids", flag, max);
            return false;
        }
        ids[n++] = id;
        if (!comma)
            break;
        p = comma + 1;
    }
    *n_p = n;
    return true;
}

bool fz_cli_parse_names(const char *flag, const char *arg, char (*names)[FZ_CLI_MAX_NAME + 1],
                        size_t max, size_t *n_p)
{
    size_t n = 0;
    const char *p = arg;
    while (true) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len > FZ_CLI_MAX_NAME || !fz_utf8_valid(p, len)) {
            fz_cli_usage_error("%s: '%s' is not a comma-separated list of names (1..%d bytes "
                               "each)",
                               flag, arg, FZ_CLI_MAX_NAME);
            return false;
        }
        if (n == max) {
            fz_cli_usage_error("%s: more than %zu names", flag, max);
            return false;
        }
        memcpy(names[n], p, len);
        names[n++][len] = 0;
        if (!comma)
            break;
        p = comma + 1;
    }
    *n_p = n;
    return true;
}

bool fz_cli_parse_label(const char *flag, const char *arg, char key[FZ_CLI_MAX_NAME + 1],
                        const char **value_p)
{
    const char *eq = strchr(arg, '=');
    size_t klen = eq ? (size_t)(eq - arg) : 0;
    if (!eq || klen == 0) {
        fz_cli_usage_error("%s: '%s' is not KEY=VALUE", flag, arg);
        return false;
    }
    if (klen > FZ_CLI_MAX_NAME || !fz_utf8_valid(arg, klen)) {
        fz_cli_usage_error("%s: the key of '%s' must be 1..%d bytes of UTF-8", flag, arg,
                           FZ_CLI_MAX_NAME);
        return false;
    }
    if (strlen(eq + 1) > 1024 || !fz_utf8_valid(eq + 1, strlen(eq + 1))) {
        fz_cli_usage_error("%s: the value of '%.*s' must be at most 1024 bytes of UTF-8", flag,
                           (int)klen, arg);
        return false;
    }
    memcpy(key, arg, klen);
    key[klen] = 0;
    *value_p = eq + 1;
    return true;
}

bool fz_cli_valid_date(const char *s)
{
    int y, m, d, used = 0;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
        sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 || used != 10)
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > days[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

/* ---------------------------------------------------------------- formatting */

char *fz_cli_time(double ts, char *buf, size_t size)
{
    struct tm tm;
    time_t t = ts > 0 && ts < 1e15 ? (time_t)ts : 0; /* a cast out of range is undefined */
    if (t <= 0 || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "-");
    return buf;
}

char *fz_cli_time_ms(double ts, char *buf, size_t size)
{
    struct tm tm;
    time_t t = ts > 0 && ts < 1e15 ? (time_t)ts : 0; /* a cast out of range is undefined */
    char whole[32];
    if (t <= 0 || !gmtime_r(&t, &tm) ||
        strftime(whole, sizeof whole, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, size, "-");
        return buf;
    }
    int ms = (int)((ts - (double)t) * 1000.0);
    snprintf(buf, size, "%s.%03dZ", whole, ms < 0 ? 0 : ms > 999 ? 999 : ms);
    return buf;
}

char *fz_cli_duration(uint64_t ms, char *buf, size_t size)
{
    uint64_t s = ms / 1000;
    if (ms < 1000)
        snprintf(buf, size, "%llums", (unsigned long long)ms);
    else if (s < 60)
        snprintf(buf, size, "%.1fs", (double)ms / 1000.0);
    else if (s < 3600)
        snprintf(buf, size, "%llum%02llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    else
        snprintf(buf, size, "%lluh%02llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
    return buf;
}

/* Length of the valid UTF-8 character at p (1..4), or 0 if the bytes there are not one. */
static size_t s_utf8_len(const char *p, size_t left)
{
    for (size_t step = 1; step <= 4 && step <= left; step++)
        if (fz_utf8_valid(p, step))
            return step;
    return 0;
}

/* Escapes s into buf, at most max characters and size-1 bytes; returns true if all of s
   fit. A multi-byte character counts as one, an escape as its length. */
static bool s_escape(const char *s, size_t len, size_t max, char *buf, size_t size)
{
    size_t out = 0, chars = 0, i = 0;
    while (i < len) {
        char piece[8];
        size_t plen, step = 1, width;
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\t' || c == '\r' || c == '\\')
            plen = (size_t)snprintf(piece, sizeof piece, "\\%c",
                                    c == '\n'   ? 'n'
                                    : c == '\t' ? 't'
                                    : c == '\r' ? 'r'
                                                : '\\');
        else if (c < 0x20 || c == 0x7f)
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02x", c);
        else if (c < 0x80)
            piece[0] = (char)c, plen = 1;
        else if ((step = s_utf8_len(s + i, len - i)) == 2 && c == 0xc2 &&
                 (unsigned char)s[i + 1] < 0xa0)
            /* U+0080..U+009F: C1 controls (CSI among them) drive terminals: escaped */
            plen = (size_t)snprintf(piece, sizeof piece, "\\u%04x", (unsigned char)s[i + 1]);
        else if (step > 0)
            memcpy(piece, s + i, step), plen = step;
        else
            step = 1, plen = (size_t)snprintf(piece, sizeof piece, "\\x%02x", c);
        width = c >= 0x80 && plen == step ? 1 : plen;
        if (chars + width > max || out + plen >= size)
            break;
        memcpy(buf + out, piece, plen);
        out += plen;
        chars += width;
        i += step;
    }
    buf[out] = 0;
    return i == len;
}

char *fz_cli_oneline(const char *s, size_t len, size_t max, char *buf, size_t size)
{
    if (size == 0)
        return buf;
    if (s_escape(s, len, max, buf, size))
        return buf;
    /* Cut again leaving room for the mark, so the line stays within max and size. */
    size_t room = size > 4 ? size - 3 : 1;
    s_escape(s, len, max > 3 ? max - 3 : 0, buf, room);
    if (size > 4)
        strcat(buf, "...");
    return buf;
}

void fz_cli_print_block(const char *s, size_t len, const char *indent, size_t max_lines, FILE *out)
{
    while (len > 0 && s[len - 1] == '\n')
        len--; /* a final newline ends the last line; it does not start another */
    size_t lines = len ? 1 : 0, skip = 0;
    for (size_t i = 0; i < len; i++)
        lines += s[i] == '\n';
    if (max_lines && lines > max_lines) {
        skip = lines - max_lines;
        fprintf(out, "%s(%zu earlier line%s not shown)\n", indent, skip, skip == 1 ? "" : "s");
    }
    const char *p = s, *end = s + len;
    char line[8192];
    for (size_t n = 0; p < end; n++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n >= skip)
            fprintf(out, "%s%s\n", indent, fz_cli_oneline(p, llen, 2000, line, sizeof line));
        if (!nl)
            break;
        p = nl + 1;
    }
}

/* ---------------------------------------------------------------- JSON */

/* Prints obj as JSON, with the characters JSON lets through raw but a terminal acts on
   escaped: DEL and the C1 controls U+0080..U+009F (CSI among them) become \u00XX, as the
   text views escape them. A program reads the same strings. Outside strings the JSON is
   ASCII, and 0xC2 only ever leads a character, so the bytes matched are those characters. */
static void s_print_json(const msgpack_object *obj, FILE *out)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return;
    fz_obj_print_json(obj, mem);
    if (fclose(mem) != 0) {
        free(text);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == 0x7f)
            fputs("\\u007F", out);
        else if (c == 0xc2 && i + 1 < len && (unsigned char)text[i + 1] < 0xa0)
            fprintf(out, "\\u%04X", (unsigned char)text[++i]);
        else
            fputc(c, out);
    }
    free(text);
}

static bool s_is_envelope(const msgpack_object *key)
{
    static const char *names[] = {"v", "type", "rid"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen(names[i]) &&
            memcmp(key->via.str.ptr, names[i], key->via.str.size) == 0)
            return true;
    return false;
}

void fz_cli_print_body_json(const msgpack_object *root, FILE *out)
{
    if (root->type != MSGPACK_OBJECT_MAP) {
        s_print_json(root, out);
        fputc('\n', out);
        return;
    }
    /* A shallow copy that only points at the reply's keys and values. */
    uint32_t n = root->via.map.size;
    msgpack_object_kv *kv = calloc(n ? n : 1, sizeof *kv);
    if (!kv)
        return;
    msgpack_object body = {.type = MSGPACK_OBJECT_MAP};
    for (uint32_t i = 0; i < n; i++)
        if (!s_is_envelope(&root->via.map.ptr[i].key))
            kv[body.via.map.size++] = root->via.map.ptr[i];
    body.via.map.ptr = kv;
    s_print_json(&body, out);
    fputc('\n', out);
    free(kv);
}

void fz_cli_print_json_with(const msgpack_object *map, const char *key, const char *value,
                            FILE *out)
{
    uint32_t n = map->type == MSGPACK_OBJECT_MAP ? map->via.map.size : 0;
    msgpack_object_kv *kv = calloc(n + 1, sizeof *kv);
    if (!kv)
        return;
    kv[0].key.type = MSGPACK_OBJECT_STR;
    kv[0].key.via.str.ptr = key;
    kv[0].key.via.str.size = (uint32_t)strlen(key);
    kv[0].val.type = MSGPACK_OBJECT_STR;
    kv[0].val.via.str.ptr = value;
    kv[0].val.via.str.size = (uint32_t)strlen(value);
    msgpack_object all = {.type = MSGPACK_OBJECT_MAP};
    all.via.map.size = 1;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            continue; /* ours replaces theirs: JSON objects must not repeat a key */
        kv[all.via.map.size++] = map->via.map.ptr[i];
    }
    all.via.map.ptr = kv;
    s_print_json(&all, out);
    fputc('\n', out);
    free(kv);
}
