/*  fz_digest: the check-in, from the broker's requests; see fz_digest.h. */

#include "fz_digest.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fz_cli.h"

#define S_LIST_LIMIT 1000

/* ---------------------------------------------------------------- --since */

/* "1h30m" etc.: seconds, or -1. */
static double s_duration(const char *s)
{
    double total = 0;
    if (!*s)
        return -1;
    while (*s) {
        char *end = NULL;
        if (!isdigit((unsigned char)*s))
            return -1;
        double n = strtod(s, &end);
        double unit = 0;
        switch (*end) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        case 'w':
            unit = 7 * 86400;
            break;
        default:
            return -1;
        }
        total += n * unit;
        s = end + 1;
    }
    return total;
}

/* A UTC calendar time: "YYYY-MM-DD", with "THH:MM[:SS]" or " HH:MM[:SS]", and "Z". */
static bool s_utc(const char *s, double *out)
{
    struct tm tm = {0};
    int y, mo, d, h = 0, mi = 0, sec = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10)
        return false;
    const char *rest = s + used;
    if (*rest == 'T' || *rest == ' ') {
        int n2 = 0;
        if (sscanf(rest + 1, "%2d:%2d%n", &h, &mi, &n2) != 2 || n2 != 5)
            return false;
        rest += 1 + n2;
        if (*rest == ':') {
            if (sscanf(rest + 1, "%2d%n", &sec, &n2) != 1 || n2 != 2)
                return false;
            rest += 3;
        }
        if (*rest == 'Z')
            rest++;
    }
    if (*rest || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != d) /* 2026-02-30 */
        return false;
    *out = (double)t;
    return true;
}

bool fz_digest_parse_since(const char *arg, double now, double *since, char *err, size_t errlen)
{
    double v = -1;
    int h, mi, used = 0;
    if (!arg || !*arg) {
        snprintf(err, errlen, "--since needs a value (1h, 30m, 2d, 2026-12-01, 08:00, ...)");
        return false;
    }
    double d = s_duration(arg);
    if (d >= 0)
        v = now - d;
    else if (arg[0] == '@') {
        char *end = NULL;
        v = strtod(arg + 1, &end);
        if (end == arg + 1 || *end || !isdigit((unsigned char)arg[1]))
            v = -1;
    } else if (sscanf(arg, "%2d:%2d%n", &h, &mi, &used) == 2 && used == 5 && !arg[5] && h < 24 &&
               mi < 60 && h >= 0 && mi >= 0) {
        v = floor(now / 86400) * 86400 + h * 3600 + mi * 60;
        if (v > now)
            v -= 86400;
    } else if (!s_utc(arg, &v))
        v = -1;
    if (v < 0 || !isfinite(v)) {
        snprintf(err, errlen,
                 "--since: '%s' is not a duration (90s, 30m, 1h, 2d, 1w), a UTC date or time "
                 "(2026-12-01, 2026-12-01T08:00Z), a time of day (08:00) or @UNIXTIME",
                 arg);
        return false;
    }
    if (v > now + 1) {
        snprintf(err, errlen, "--since: '%s' is in the future", arg);
        return false;
    }
    *since = v;
    return true;
}

/* ---------------------------------------------------------------- requests */

/* The body of a reply as JSON (without v/type/rid). */
static json_t *s_body(fz_msg_t *reply)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem)
        return NULL;
    fz_cli_print_body_json(fz_msg_root(reply), mem);
    fclose(mem);
    json_t *j = json_loadb(text, len, 0, NULL);
    free(text);
    return j;
}

static json_t *s_ask(fz_client_t *c, fz_enc_t *req, const char *expect, fz_err_t *code_p, char *err,
                     size_t errlen)
{
    fz_msg_t *reply = NULL;
    if (!req) {
        *code_p = FZ_EINTERNAL;
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fz_err_t rc = fz_client_ask(c, &req, expect, &reply, err, errlen);
    if (rc != FZ_OK) {
        *code_p = rc;
        return NULL;
    }
    json_t *j = s_body(reply);
    fz_msg_destroy(&reply);
    if (!j) {
        *code_p = FZ_EMALFORMED;
        snprintf(err, errlen, "the broker's %s reply could not be read as JSON", expect);
    }
    return j;
}

static json_t *s_list(fz_client_t *c, const char *state, fz_err_t *code_p, char *err, size_t errlen)
{
    fz_enc_t *req = fz_client_request(c, "list");
    if (req) {
        fz_enc_str(req, "state", state);
        fz_enc_uint(req, "limit", S_LIST_LIMIT);
        fz_enc_bool(req, "tail", true);
    }
    return s_ask(c, req, "tasks", code_p, err, errlen);
}

/* The fields of a listed task a digest shows (those present: the workspace fields of newer
   brokers too). */
static json_t *s_pick(json_t *task)
{
    static const char *keys[] = {
        "id",           "name",          "prompt",      "state",       "model",      "worker",
        "attempts",     "cost_usd",      "summary",     "class",       "outcome",    "exit_code",
        "updated",      "created",       "hold_reason", "hold_detail", "not_before", "waiting_for",
        "deps_pending", "stalled_since", "parent",      "repo",        "base",       "branch",
        "check",        "check_status",  "submitted_by"};
    json_t *out = json_object();
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        json_t *v = json_object_get(task, keys[i]);
        if (v)
            json_object_set(out, keys[i], v);
    }
    return out;
}

/* {"count": N, "tasks": [...]} of a list, those updated at or after `since` (0: all). */
static json_t *s_section(json_t *list, double since, bool retry_hint)
{
    json_t *tasks = json_array(), *all = json_object_get(list, "tasks");
    size_t i;
    json_t *t;
    json_array_foreach(all, i, t)
    {
        if (since > 0 && json_number_value(json_object_get(t, "updated")) < since)
            continue;
        json_t *p = s_pick(t);
        if (retry_hint) {
            char cmd[64];
            snprintf(cmd, sizeof cmd, "fz-ctl retry %lld",
                     (long long)json_integer_value(json_object_get(t, "id")));
            json_object_set_new(p, "retry", json_string(cmd));
        }
        json_array_append_new(tasks, p);
    }
    /* newest first */
    size_t n = json_array_size(tasks);
    json_t *rev = json_array();
    for (size_t k = n; k-- > 0;)
        json_array_append(rev, json_array_get(tasks, k));
    json_decref(tasks);
    json_t *sec = json_object();
    json_object_set_new(sec, "count", json_integer((json_int_t)n));
    if (since <= 0)
        json_object_set(sec, "count", json_object_get(list, "total"));
    json_object_set_new(sec, "tasks", rev);
    return sec;
}

static json_t *s_only_stalled(json_t *running)
{
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(running, "tasks"), i, t)
    {
        if (json_number_value(json_object_get(t, "stalled_since")) > 0)
            json_array_append_new(out, s_pick(t));
    }
    json_t *sec = json_object();
    json_object_set_new(sec, "count", json_integer((json_int_t)json_array_size(out)));
    json_object_set_new(sec, "tasks", out);
    return sec;
}

/* Queued tasks that cannot start (waiting_for), joined to the waiting ones. */
static void s_add_blocked(json_t *waiting, json_t *queued)
{
    json_t *tasks = json_object_get(waiting, "tasks");
    size_t i, extra = 0;
    json_t *t;
    json_array_foreach(json_object_get(queued, "tasks"), i, t)
    {
        const char *why = json_string_value(json_object_get(t, "waiting_for"));
        if (why && *why) {
            json_array_append_new(tasks, s_pick(t));
            extra++;
        }
    }
    json_int_t n = json_integer_value(json_object_get(waiting, "count"));
    json_object_set_new(waiting, "count", json_integer(n + (json_int_t)extra));
}

json_t *fz_digest_build(fz_client_t *c, double since, fz_err_t *code_p, char *err, size_t errlen)
{
    static const char *states[] = {"succeeded", "failed",  "dep-failed", "cancelled", "held",
                                   "running",   "waiting", "queued",     "retrying"};
    enum { N_STATES = sizeof states / sizeof *states };
    json_t *lists[N_STATES] = {0};
    json_t *status = s_ask(c, fz_client_request(c, "status"), "status", code_p, err, errlen);
    json_t *budget =
        status ? s_ask(c, fz_client_request(c, "budget"), "budget", code_p, err, errlen) : NULL;
    bool ok = budget != NULL;
    for (int i = 0; ok && i < N_STATES; i++)
        ok = (lists[i] = s_list(c, states[i], code_p, err, errlen)) != NULL;
    char day[16];
    time_t t = (time_t)since;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, sizeof day, "%Y-%m-%d", &tm);
    json_t *cost = NULL;
    if (ok) {
        fz_enc_t *req = fz_client_request(c, "cost");
        if (req) {
            fz_enc_str(req, "by", "model");
            fz_enc_str(req, "since", day);
        }
        ok = (cost = s_ask(c, req, "cost", code_p, err, errlen)) != NULL;
    }
    json_t *d = NULL;
    if (ok) {
        d = json_object();
        json_object_set_new(d, "since", json_real(since));
        json_object_set_new(d, "now", json_real(fz_wall()));
        json_object_set(d, "status", status);
        json_object_set(d, "budget", budget);
        json_object_set_new(d, "succeeded", s_section(lists[0], since, false));
        json_t *failed = s_section(lists[1], since, true);
        json_t *depf = s_section(lists[2], since, false);
        json_object_set_new(d, "failed", failed);
        json_object_set_new(d, "dep_failed", depf);
        json_object_set_new(d, "cancelled", s_section(lists[3], since, false));
        json_object_set_new(d, "held", s_section(lists[4], 0, false));
        json_object_set_new(d, "stalled", s_only_stalled(lists[5]));
        json_object_set_new(d, "retrying", s_section(lists[8], 0, false));
        json_t *waiting = s_section(lists[6], 0, false);
        s_add_blocked(waiting, lists[7]);
        json_object_set_new(d, "waiting", waiting);
        json_object_set_new(d, "cost_since_day", json_string(day));
        json_object_set(d, "cost", cost);
    }
    for (int i = 0; i < N_STATES; i++)
        json_decref(lists[i]);
    json_decref(status);
    json_decref(budget);
    json_decref(cost);
    return d;
}

/* ---------------------------------------------------------------- printing */

static double s_num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static const char *s_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static const char *s_line(const char *s, size_t max, char *buf, size_t size)
{
    return fz_cli_oneline(s, strlen(s), max, buf, size);
}

/* "#12 name" or "#12 prompt...", escaped. */
static void s_print_head(const json_t *t, FILE *out)
{
    char buf[256];
    const char *name = s_str(t, "name");
    fprintf(out, "  #%lld %s", (long long)json_integer_value(json_object_get(t, "id")),
            s_line(*name ? name : s_str(t, "prompt"), 40, buf, sizeof buf));
}

static void s_print_tasks(const json_t *sec, const char *title, size_t max, FILE *out,
                          void (*detail)(const json_t *t, FILE *out))
{
    json_int_t count = json_integer_value(json_object_get(sec, "count"));
    const json_t *tasks = json_object_get(sec, "tasks");
    fprintf(out, "%s (%lld)%s\n", title, (long long)count, count ? ":" : "");
    size_t i;
    const json_t *t;
    json_array_foreach(tasks, i, t)
    {
        if (i == max) {
            fprintf(out, "  ... and %lld more (fz-ctl digest --json has them all)\n",
                    (long long)(count - (json_int_t)max));
            break;
        }
        s_print_head(t, out);
        detail(t, out);
        fputc('\n', out);
    }
}

static void s_detail_ok(const json_t *t, FILE *out)
{
    char buf[256];
    fprintf(out, "  $%.2f", s_num(t, "cost_usd"));
    if (*s_str(t, "branch"))
        fprintf(out, "  branch %s", s_line(s_str(t, "branch"), 60, buf, sizeof buf));
    if (*s_str(t, "summary"))
        fprintf(out, "  -- %s", s_line(s_str(t, "summary"), 100, buf, sizeof buf));
}

static void s_detail_failed(const json_t *t, FILE *out)
{
    char buf[256];
    fprintf(out, "  [%s]", *s_str(t, "class") ? s_str(t, "class") : s_str(t, "state"));
    if (*s_str(t, "summary"))
        fprintf(out, " %s", s_line(s_str(t, "summary"), 90, buf, sizeof buf));
    if (*s_str(t, "retry"))
        fprintf(out, "  (%s)", s_str(t, "retry"));
}

static void s_detail_wait(const json_t *t, FILE *out)
{
    char buf[256];
    const char *why = *s_str(t, "hold_detail")   ? s_str(t, "hold_detail")
                      : *s_str(t, "waiting_for") ? s_str(t, "waiting_for")
                      : *s_str(t, "hold_reason") ? s_str(t, "hold_reason")
                                                 : "";
    if (s_num(t, "deps_pending") > 0)
        fprintf(out, "  waits for %.0f dependencies", s_num(t, "deps_pending"));
    else if (*why)
        fprintf(out, "  %s", s_line(why, 100, buf, sizeof buf));
    if (s_num(t, "stalled_since") > 0) {
        char when[40];
        fprintf(out, "  no sign of life since %s on %s",
                fz_cli_time(s_num(t, "stalled_since"), when, sizeof when),
                s_line(s_str(t, "worker"), 40, buf, sizeof buf));
    }
    if (strcmp(s_str(t, "state"), "retrying") == 0 && *s_str(t, "class"))
        fprintf(out, "  after %s", s_str(t, "class"));
}

void fz_digest_print(const json_t *d, size_t per, FILE *out)
{
    char a[40], b[40];
    const json_t *st = json_object_get(d, "status"), *bu = json_object_get(d, "budget");
    const json_t *counts = json_object_get(st, "counts");
    fprintf(out, "fz digest since %s (now %s)\n", fz_cli_time(s_num(d, "since"), a, sizeof a),
            fz_cli_time(s_num(d, "now"), b, sizeof b));
    fprintf(out, "Budget %s: spent $%.2f of $%.2f, $%.2f reserved, $%.2f left%s\n",
            s_str(bu, "day"), s_num(bu, "spent"), s_num(bu, "cap"), s_num(bu, "reserved"),
            s_num(bu, "left"),
            json_is_true(json_object_get(st, "paused")) ? "; dispatch is PAUSED" : "");
    fprintf(out,
            "Now: %.0f running, %.0f queued, %.0f waiting, %.0f held, %.0f retrying; "
            "%.0f workers (%.0f idle)\n\n",
            s_num(counts, "running"), s_num(counts, "queued"), s_num(counts, "waiting"),
            s_num(counts, "held"), s_num(counts, "retrying"), s_num(st, "workers"),
            s_num(st, "idle_workers"));
    s_print_tasks(json_object_get(d, "succeeded"), "Succeeded", per, out, s_detail_ok);
    s_print_tasks(json_object_get(d, "failed"), "Failed", per, out, s_detail_failed);
    s_print_tasks(json_object_get(d, "dep_failed"), "Dep-failed", per, out, s_detail_failed);
    fprintf(
        out, "Cancelled (%lld)\n",
        (long long)json_integer_value(json_object_get(json_object_get(d, "cancelled"), "count")));
    s_print_tasks(json_object_get(d, "held"), "Held now", per, out, s_detail_wait);
    s_print_tasks(json_object_get(d, "stalled"), "Stalled now", per, out, s_detail_wait);
    s_print_tasks(json_object_get(d, "retrying"), "Retrying now", per, out, s_detail_wait);
    s_print_tasks(json_object_get(d, "waiting"), "Waiting now", per, out, s_detail_wait);
    const json_t *cost = json_object_get(d, "cost");
    fprintf(out, "Cost by model since %s: $%.2f", s_str(d, "cost_since_day"),
            s_num(cost, "total_cost"));
    size_t i;
    const json_t *row;
    json_array_foreach(json_object_get(cost, "rows"), i, row)
    {
        char buf[128];
        const char *key = s_str(row, "key");
        fprintf(out, "%s %s $%.2f (%.0f attempts)", i ? "," : ";",
                s_line(*key ? key : "(any)", 40, buf, sizeof buf), s_num(row, "cost_usd"),
                s_num(row, "attempts"));
    }
    fputc('\n', out);
}
