/*  fz_rfile: the report-file parser; see fz_rfile.h. */

#include "fz_rfile.h"
#include "fz_util.h"

#include <ctype.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void fz_rfile_init(fz_rfile_t *self)
{
    memset(self, 0, sizeof *self);
    self->values.progress_pct = -1;
}

/* strtod in the C locale whatever the worker's locale: reports always use '.'. */
static double s_strtod_c(const char *s, char **end)
{
    static locale_t c_locale;
    if (!c_locale)
        c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    return c_locale ? strtod_l(s, end, c_locale) : strtod(s, end);
}

/* A plain non-negative decimal (exponent allowed) below limit: no sign, hex, nan or inf. */
static bool s_parse_float(const char *s, double limit, double *out)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64 || strspn(s, "0123456789.eE+-") != len)
        return false;
    if (!isdigit((unsigned char)s[0]) && s[0] != '.')
        return false;
    char *end;
    errno = 0;
    double v = s_strtod_c(s, &end);
    if (errno != 0 || end != s + len || !isfinite(v) || v < 0 || !(v < limit))
        return false;
    *out = v;
    return true;
}

/* Digits only: strtoull alone would take "-5" as a huge number. */
static bool s_parse_u64(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    if (len == 0 || len > 20 || strspn(s, "0123456789") != len)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end != s + len)
        return false;
    *out = v;
    return true;
}

static bool s_on_cost(fz_rfile_t *self, char *value)
{
    return s_parse_float(value, INFINITY, &self->values.cost_usd);
}

static bool s_on_tokens_in(fz_rfile_t *self, char *value)
{
    return s_parse_u64(value, &self->values.tokens_in);
}

static bool s_on_tokens_cache_read(fz_rfile_t *self, char *value)
{
    return s_parse_u64(value, &self->values.tokens_cache_read);
}

static bool s_on_tokens_cache_write(fz_rfile_t *self, char *value)
{
    return s_parse_u64(value, &self->values.tokens_cache_write);
}

static bool s_on_tokens_out(fz_rfile_t *self, char *value)
{
    return s_parse_u64(value, &self->values.tokens_out);
}

static bool s_on_model(fz_rfile_t *self, char *value)
{
    size_t len = strlen(value);
    if (len == 0 || len >= sizeof self->values.model || strcspn(value, " \t") != len)
        return false;
    fz_strcopy(self->values.model, sizeof self->values.model, value);
    return true;
}

/* "progress 40 running tests": a whole percent (a trailing % is tolerated), then text. */
static bool s_on_progress(fz_rfile_t *self, char *value)
{
    char *text = value + strcspn(value, " \t");
    if (*text) {
        *text++ = '\0';
        text += strspn(text, " \t");
    }
    size_t len = strlen(value);
    if (len > 0 && value[len - 1] == '%')
        value[len - 1] = '\0';
    uint64_t pct;
    if (!s_parse_u64(value, &pct) || pct > 100)
        return false;
    self->values.progress_pct = (int)pct;
    fz_strcopy(self->values.progress_text, sizeof self->values.progress_text, text);
    return true;
}

static bool s_on_summary(fz_rfile_t *self, char *value)
{
    if (!*value)
        return false;
    fz_strcopy(self->values.summary, sizeof self->values.summary, value);
    return true;
}

/* One of fz_vocab's class names, exactly; an unknown one (a newer adapter's) is ignored. */
static bool s_on_class(fz_rfile_t *self, char *value)
{
    fz_class_t cls = fz_class_from_name(value);
    if (cls == FZ_CLASS_NONE)
        return false;
    self->values.cls = cls;
    return true;
}

static bool s_on_reset_at(fz_rfile_t *self, char *value)
{
    return s_parse_float(value, FZ_RFILE_RESET_AT_LIMIT, &self->values.reset_at);
}

static bool s_on_retry_after(fz_rfile_t *self, char *value)
{
    return s_parse_float(value, FZ_RFILE_RETRY_AFTER_LIMIT, &self->values.retry_after);
}

static const struct {
    const char *key;
    bool (*handle)(fz_rfile_t *self, char *value);
} s_report_keys[] = {
    {"cost_usd", s_on_cost},
    {"tokens_in", s_on_tokens_in},
    {"tokens_cache_read", s_on_tokens_cache_read},
    {"tokens_cache_write", s_on_tokens_cache_write},
    {"tokens_out", s_on_tokens_out},
    {"model", s_on_model},
    {"progress", s_on_progress},
    {"summary", s_on_summary},
    {"class", s_on_class},
    {"reset_at", s_on_reset_at},
    {"retry_after", s_on_retry_after},
};

/* One complete line (line has room for a NUL at line[len]). Blank lines are not counted. */
static void s_report_line(fz_rfile_t *self, char *line, size_t len)
{
    bool ok = false;
    if (memchr(line, '\0', len))
        goto done;
    line[len] = '\0';
    while (len > 0 && isspace((unsigned char)line[len - 1]))
        line[--len] = '\0';
    char *key = line + strspn(line, " \t");
    if (!*key)
        return;
    for (const char *p = key; *p; p++)
        if ((iscntrl((unsigned char)*p) && *p != '\t'))
            goto done;
    char *value = key + strcspn(key, " \t");
    if (*value) {
        *value++ = '\0';
        value += strspn(value, " \t");
    }
    for (size_t i = 0; i < sizeof s_report_keys / sizeof s_report_keys[0]; i++)
        if (strcmp(key, s_report_keys[i].key) == 0) {
            ok = s_report_keys[i].handle(self, value);
            break;
        }
done:
    if (ok)
        self->values.lines++;
    else
        self->values.ignored++;
}

void fz_rfile_feed(fz_rfile_t *self, const char *data, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t seg = nl ? (size_t)(nl - data) : n;
        if (!self->line_skip) {
            if (self->line_len + seg > FZ_RFILE_LINE_MAX) {
                self->line_skip = true;
                self->line_len = 0;
                self->values.ignored++;
            } else {
                memcpy(self->line + self->line_len, data, seg);
                self->line_len += seg;
            }
        }
        if (!nl)
            return; /* a partial line waits for its newline */
        if (!self->line_skip)
            s_report_line(self, self->line, self->line_len);
        self->line_skip = false;
        self->line_len = 0;
        data += seg + 1;
        n -= seg + 1;
    }
}

void fz_rfile_restart(fz_rfile_t *self, bool mid_line)
{
    self->line_len = 0;
    self->line_skip = mid_line;
}

void fz_rfile_finish(fz_rfile_t *self)
{
    if (!self->line_skip && self->line_len > 0)
        s_report_line(self, self->line, self->line_len);
    fz_rfile_restart(self, false);
}
