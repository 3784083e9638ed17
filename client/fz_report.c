/*  fz_report: human-readable replies and events; see fz_report.h. */

#include "fz_report.h"

#include <string.h>

#include "fz_cli.h"
#include "fz_msg.h"

static const char *s_states[] = {"queued",    "waiting", "held",      "running",    "retrying",
                                 "succeeded", "failed",  "cancelled", "dep-failed", NULL};

bool fz_report_state_final(const char *state)
{
    return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
           strcmp(state, "cancelled") == 0 || strcmp(state, "dep-failed") == 0;
}

bool fz_report_state_known(const char *state)
{
    for (const char **s = s_states; *s; s++)
        if (strcmp(*s, state) == 0)
            return true;
    return false;
}

const char *fz_report_states(void)
{
    return "queued, waiting, held, running, retrying, succeeded, failed, cancelled, dep-failed";
}

/* ---------------------------------------------------------------- small pieces */

/* A string field, escaped to one line of at most max characters; "-" if empty. */
static char *s_text(const msgpack_object *obj, const char *key, size_t max, char *buf, size_t size)
{
    size_t len;
    const char *s = fz_obj_strn(obj, key, &len);
    if (len == 0)
        snprintf(buf, size, "-");
    else
        fz_cli_oneline(s, len, max, buf, size);
    return buf;
}

/* The model field; "any" when the task names none. */
static char *s_model(const msgpack_object *obj, const char *key, char *buf, size_t size)
{
    s_text(obj, key, 64, buf, size);
    if (strcmp(buf, "-") == 0)
        snprintf(buf, size, "any");
    return buf;
}

static bool s_has_text(const msgpack_object *obj, const char *key)
{
    size_t len;
    fz_obj_strn(obj, key, &len);
    return len > 0;
}

/* The last attempt of an array of attempt maps (the one with the highest n), or NULL. */
static const msgpack_object *s_last_attempt(const msgpack_object *attempts)
{
    const msgpack_object *last = NULL;
    if (!attempts || attempts->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    for (uint32_t i = 0; i < attempts->via.array.size; i++) {
        const msgpack_object *a = &attempts->via.array.ptr[i];
        if (a->type == MSGPACK_OBJECT_MAP &&
            (!last || fz_obj_uint(a, "n", 0) >= fz_obj_uint(last, "n", 0)))
            last = a;
    }
    return last;
}

/* A list field (array of str or uint) as "a, b, c"; "-" if empty. */
static char *s_list(const msgpack_object *obj, const char *key, char *buf, size_t size)
{
    const msgpack_object *arr = fz_obj_get(obj, key);
    size_t used = 0;
    buf[0] = 0;
    for (uint32_t i = 0; arr && arr->type == MSGPACK_OBJECT_ARRAY && i < arr->via.array.size; i++) {
        const msgpack_object *e = &arr->via.array.ptr[i];
        char item[80];
        if (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            snprintf(item, sizeof item, "%llu", (unsigned long long)e->via.u64);
        else if (e->type == MSGPACK_OBJECT_STR)
            fz_cli_oneline(e->via.str.ptr, e->via.str.size, 64, item, sizeof item);
        else
            continue;
        if (used + strlen(item) + 3 >= size)
            break;
        used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? ", " : "", item);
    }
    if (!used)
        snprintf(buf, size, "-");
    return buf;
}

/* The labels map as "k=v, k=v"; "-" if none. */
static char *s_labels(const msgpack_object *obj, char *buf, size_t size)
{
    const msgpack_object *map = fz_obj_get(obj, "labels");
    size_t used = 0;
    buf[0] = 0;
    for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key, *v = &map->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
            continue;
        char ks[80], vs[120];
        fz_cli_oneline(k->via.str.ptr, k->via.str.size, 64, ks, sizeof ks);
        fz_cli_oneline(v->via.str.ptr, v->via.str.size, 100, vs, sizeof vs);
        if (used + strlen(ks) + strlen(vs) + 4 >= size)
            break;
        used += (size_t)snprintf(buf + used, size - used, "%s%s=%s", used ? ", " : "", ks, vs);
    }
    if (!used)
        snprintf(buf, size, "-");
    return buf;
}

int fz_report_exit_code(const msgpack_object *task, const msgpack_object *attempts)
{
    char state[32], outcome[32];
    fz_obj_str(task, "state", state, sizeof state);
    if (strcmp(state, "succeeded") == 0)
        return FZ_EXIT_OK;
    if (strcmp(state, "cancelled") == 0)
        return FZ_EXIT_CANCELLED;
    if (strcmp(state, "dep-failed") == 0)
        return FZ_EXIT_FAILED;
    if (strcmp(state, "failed") != 0)
        return -1;
    /* The last attempt says how the task ended; the task's own copy serves without it. */
    const msgpack_object *last = s_last_attempt(attempts);
    fz_obj_str(last ? last : task, "outcome", outcome, sizeof outcome);
    return strcmp(outcome, "timeout") == 0 ? FZ_EXIT_TIMEOUT : FZ_EXIT_FAILED;
}

char *fz_report_outcome(const msgpack_object *obj, char *buf, size_t size)
{
    char outcome[40];
    s_text(obj, "outcome", 32, outcome, sizeof outcome);
    if (strcmp(outcome, "exited") == 0)
        snprintf(buf, size, "exited %lld", (long long)fz_obj_int(obj, "exit_code", 0));
    else if (strcmp(outcome, "signaled") == 0)
        snprintf(buf, size, "signaled %llu", (unsigned long long)fz_obj_uint(obj, "signal", 0));
    else
        snprintf(buf, size, "%s", outcome);
    return buf;
}

/* Sum of the attempts' durations in milliseconds. */
static uint64_t s_total_ms(const msgpack_object *attempts)
{
    uint64_t ms = 0;
    for (uint32_t i = 0;
         attempts && attempts->type == MSGPACK_OBJECT_ARRAY && i < attempts->via.array.size; i++)
        ms += fz_obj_uint(&attempts->via.array.ptr[i], "duration_ms", 0);
    return ms;
}

/* ---------------------------------------------------------------- one task */

void fz_report_task_line(const msgpack_object *task, const msgpack_object *attempts, FILE *out)
{
    char state[40], outcome[64], dur[32];
    uint64_t n = fz_obj_uint(task, "attempts", 0);
    fprintf(out, "task %llu %s", (unsigned long long)fz_obj_uint(task, "id", 0),
            s_text(task, "state", 16, state, sizeof state));
    fz_report_outcome(task, outcome, sizeof outcome);
    if (strcmp(outcome, "-") != 0 && strcmp(outcome, state) != 0)
        fprintf(out, " (%s)", outcome);
    fprintf(out, " after %llu attempt%s, %s, $%.4f\n", (unsigned long long)n, n == 1 ? "" : "s",
            fz_cli_duration(s_total_ms(attempts), dur, sizeof dur),
            fz_obj_float(task, "cost_usd", 0));
    size_t len;
    const char *summary = fz_obj_strn(task, "summary", &len);
    if (len)
        fz_cli_print_block(summary, len, "  ", 0, out);
}

/* s in single quotes for a POSIX shell, cut to fit. */
static char *s_shquote(const char *s, char *buf, size_t size)
{
    size_t o = 0;
    buf[o++] = '\'';
    for (; *s && o + 6 < size; s++) {
        if (*s == '\'') {
            memcpy(buf + o, "'\\''", 4);
            o += 4;
        } else
            buf[o++] = *s;
    }
    buf[o++] = '\'';
    buf[o] = 0;
    return buf;
}

/* The one command that shows what an attempt (or the task) changed: run where the user is
   for a local repository; for a URL, in any clone of it, after fetching the branch. */
static void s_print_diff(const msgpack_object *task, const char *base, const char *head,
                         const char *branch, FILE *out)
{
    char repo[FZ_MAX_REPO + 1], q[2 * FZ_MAX_REPO + 8];
    s_text(task, "repo", FZ_MAX_REPO, repo, sizeof repo);
    if (strstr(repo, "://"))
        fprintf(out, "  diff      git fetch %s %s && git diff %.12s FETCH_HEAD\n",
                s_shquote(repo, q, sizeof q), branch, base);
    else
        fprintf(out, "  diff      git -C %s diff %.12s %.12s\n", s_shquote(repo, q, sizeof q), base,
                head);
}

/* An attempt's workspace: its branch, diff stat and check. */
static void s_print_attempt_ws(const msgpack_object *task, const msgpack_object *a,
                               size_t out_lines, FILE *out)
{
    char branch[FZ_MAX_REF + 1], base[80], head[80], st[32];
    if (s_has_text(a, "branch")) {
        s_text(a, "branch", FZ_MAX_REF, branch, sizeof branch);
        s_text(a, "base_commit", 64, base, sizeof base);
        s_text(a, "head_commit", 64, head, sizeof head);
        fprintf(out, "  branch    %s   base %.12s   head %.12s   %llu file%s, +%llu -%llu\n",
                branch, base, head, (unsigned long long)fz_obj_uint(a, "files", 0),
                fz_obj_uint(a, "files", 0) == 1 ? "" : "s",
                (unsigned long long)fz_obj_uint(a, "insertions", 0),
                (unsigned long long)fz_obj_uint(a, "deletions", 0));
        if (strcmp(base, head) != 0)
            s_print_diff(task, base, head, branch, out);
    }
    if (!s_has_text(a, "check_status"))
        return;
    int64_t code = fz_obj_int(a, "check_exit", 0);
    fprintf(out, "  check     %s (%s %lld)\n", s_text(a, "check_status", 16, st, sizeof st),
            code < 0 ? "stopped at the timeout," : "exit", (long long)code);
    size_t len;
    const char *s = fz_obj_strn(a, "check_output", &len);
    if (len) {
        fprintf(out, "  check output (tail):\n");
        fz_cli_print_block(s, len, "    | ", out_lines, out);
    }
}

/* The task's workspace: repository, base, check, and its result branch. */
static void s_print_task_ws(const msgpack_object *task, const msgpack_object *attempts, FILE *out)
{
    char repo[FZ_MAX_REPO + 1], b[FZ_MAX_CHECK + 1], head[80];
    if (!s_has_text(task, "repo") && !s_has_text(task, "check"))
        return;
    if (s_has_text(task, "repo")) {
        fprintf(out, "  repo      %s", s_text(task, "repo", FZ_MAX_REPO, repo, sizeof repo));
        fprintf(out, "   base %s",
                s_has_text(task, "base") ? s_text(task, "base", FZ_MAX_REF, b, sizeof b)
                                         : "(the --after tasks' results, else HEAD)");
        if (fz_obj_uint(task, "best_of", 0) > 1)
            fprintf(out, "   best of %llu", (unsigned long long)fz_obj_uint(task, "best_of", 0));
        fprintf(out, "\n");
    }
    if (s_has_text(task, "check"))
        fprintf(out, "  check     %s\n", s_text(task, "check", 1000, b, sizeof b));
    if (!s_has_text(task, "branch"))
        return;
    s_text(task, "head_commit", 64, head, sizeof head);
    fprintf(out, "  branch    %s at %.12s\n", s_text(task, "branch", FZ_MAX_REF, b, sizeof b),
            head);
    /* The diff from where the winning attempt started. */
    for (uint32_t i = 0;
         attempts && attempts->type == MSGPACK_OBJECT_ARRAY && i < attempts->via.array.size; i++) {
        const msgpack_object *a = &attempts->via.array.ptr[i];
        char h[80], base[80];
        if (strcmp(s_text(a, "head_commit", 64, h, sizeof h), head) == 0) {
            s_print_diff(task, s_text(a, "base_commit", 64, base, sizeof base), b, b, out);
            break;
        }
    }
}

static void s_print_attempt(const msgpack_object *task, const msgpack_object *a, size_t out_lines,
                            FILE *out)
{
    char worker[80], model[80], outcome[64], t1[32], t2[32], dur[32];
    fprintf(
        out, "\nattempt %llu: %s on worker %s, model %s\n",
        (unsigned long long)fz_obj_uint(a, "n", 0), fz_report_outcome(a, outcome, sizeof outcome),
        s_text(a, "worker", 64, worker, sizeof worker), s_model(a, "model", model, sizeof model));
    double ended = fz_obj_float(a, "ended", 0);
    fprintf(out, "  started   %s   ended %s   duration %s\n",
            fz_cli_time(fz_obj_float(a, "started", 0), t1, sizeof t1),
            ended > 0 ? fz_cli_time(ended, t2, sizeof t2) : "(running)",
            fz_cli_duration(fz_obj_uint(a, "duration_ms", 0), dur, sizeof dur));
    fprintf(out, "  cost      $%.4f   tokens %llu in / %llu out", fz_obj_float(a, "cost_usd", 0),
            (unsigned long long)fz_obj_uint(a, "tokens_in", 0),
            (unsigned long long)fz_obj_uint(a, "tokens_out", 0));
    uint64_t cr = fz_obj_uint(a, "tokens_cache_read", 0),
             cw = fz_obj_uint(a, "tokens_cache_write", 0);
    if (cr || cw)
        fprintf(out, " (cache: %llu read, %llu written)", (unsigned long long)cr,
                (unsigned long long)cw);
    fprintf(out, "\n");
    if (fz_obj_bool(a, "suspect", false))
        fprintf(out, "  SUSPECT   the reported cost cannot be real: the budget was charged $%.4f\n",
                fz_obj_float(a, "charged", 0));
    if (s_has_text(a, "class")) {
        char cls[40], reset[32];
        fprintf(out, "  failure   %s", s_text(a, "class", 32, cls, sizeof cls));
        double reset_at = fz_obj_float(a, "reset_at", 0);
        if (reset_at > 0)
            fprintf(out, "   resets %s", fz_cli_time(reset_at, reset, sizeof reset));
        fprintf(out, "\n");
    }
    size_t len;
    const char *s = fz_obj_strn(a, "log", &len);
    if (len) {
        char log[600];
        fprintf(out, "  log       %s\n", fz_cli_oneline(s, len, 512, log, sizeof log));
    }
    s = fz_obj_strn(a, "summary", &len);
    if (len) {
        fprintf(out, "  summary:\n");
        fz_cli_print_block(s, len, "    ", 0, out);
    }
    s = fz_obj_strn(a, "output", &len);
    if (len) {
        fprintf(out, "  output (tail):\n");
        fz_cli_print_block(s, len, "    | ", out_lines, out);
    }
    s_print_attempt_ws(task, a, out_lines, out);
}

void fz_report_task(const msgpack_object *reply, size_t out_lines, FILE *out)
{
    const msgpack_object *task = fz_obj_get(reply, "task");
    const msgpack_object *attempts = fz_obj_get(reply, "attempts");
    char a[160], b[400], c[40];
    fprintf(out, "task %llu", (unsigned long long)fz_obj_uint(task, "id", 0));
    if (s_has_text(task, "name"))
        fprintf(out, "  %s", s_text(task, "name", 128, a, sizeof a));
    fprintf(out, "\n  state     %s", s_text(task, "state", 16, a, sizeof a));
    fz_report_outcome(task, b, sizeof b);
    /* A task that never ran (dep-failed, cancelled while queued) has no last attempt. */
    if (strcmp(b, "-") != 0 && fz_obj_uint(task, "attempts", 0) > 0)
        fprintf(out, " (last attempt: %s)", b);
    /* Not in every broker's task object: why a held task waits (budget, pause, model cap). */
    if (s_has_text(task, "hold_reason"))
        fprintf(out, "\n  held      %s", s_text(task, "hold_reason", 200, b, sizeof b));
    if (s_has_text(task, "hold_detail"))
        fprintf(out, ": %s", s_text(task, "hold_detail", 300, b, sizeof b));
    if (s_has_text(task, "waiting_for"))
        fprintf(out, "\n  waiting   %s", s_text(task, "waiting_for", 300, b, sizeof b));
    double stalled = fz_obj_float(task, "stalled_since", 0); /* only while running */
    if (stalled > 0)
        fprintf(out, "\n  stalled   since %s (no output, report line or progress)",
                fz_cli_time(stalled, c, sizeof c));
    if (s_has_text(task, "class"))
        fprintf(out, "\n  failure   %s (the last attempt's class)",
                s_text(task, "class", 32, b, sizeof b));
    uint64_t pending = fz_obj_uint(task, "deps_pending", 0); /* only while waiting */
    if (pending)
        fprintf(out, "\n  waiting   for %llu dependenc%s to end", (unsigned long long)pending,
                pending == 1 ? "y" : "ies");
    if (s_has_text(task, "priority_why"))
        fprintf(out, "\n  effective %.1f (%s)", fz_obj_float(task, "effective_priority", 0),
                s_text(task, "priority_why", 200, b, sizeof b));
    fprintf(out, "\n  priority  %lld\n", (long long)fz_obj_int(task, "priority", 0));
    fprintf(out, "  model     %s", s_model(task, "model", a, sizeof a));
    fprintf(out, "   fallback %s\n", s_list(task, "fallback", b, sizeof b));
    fprintf(out, "  labels    %s\n", s_labels(task, b, sizeof b));
    /* No --max-cost: the broker's --default-task-cost caps it, an amount the task lacks. */
    double max_cost = fz_obj_float(task, "max_cost", 0);
    if (max_cost > 0)
        snprintf(c, sizeof c, "$%.4f", max_cost);
    else
        snprintf(c, sizeof c, "the broker's default");
    fprintf(out, "  limits    timeout %llus, max cost %s, retries %llu\n",
            (unsigned long long)fz_obj_uint(task, "timeout", 0), c,
            (unsigned long long)fz_obj_uint(task, "retries", 0));
    fprintf(out, "  after     %s", s_list(task, "after", b, sizeof b));
    fprintf(out, "   after-any %s", s_list(task, "after_any", b, sizeof b));
    uint64_t parent = fz_obj_uint(task, "parent", 0);
    if (parent)
        fprintf(out, "   parent %llu", (unsigned long long)parent);
    if (fz_obj_get(reply, "children"))
        fprintf(out, "   subtasks %s", s_list(reply, "children", b, sizeof b));
    fprintf(out, "\n  created   %s", fz_cli_time(fz_obj_float(task, "created", 0), c, sizeof c));
    fprintf(out, "   updated %s\n", fz_cli_time(fz_obj_float(task, "updated", 0), c, sizeof c));
    /* The key that submitted it ("role:name"); none when the broker runs without CURVE. */
    if (s_has_text(task, "submitted_by"))
        fprintf(out, "  submitter %s\n", s_text(task, "submitted_by", 80, a, sizeof a));
    else
        fprintf(out, "  submitter - (no key: CURVE off)\n");
    fprintf(out, "  worker    %s   attempts %llu\n", s_text(task, "worker", 64, a, sizeof a),
            (unsigned long long)fz_obj_uint(task, "attempts", 0));
    fprintf(out, "  cost      $%.4f   tokens %llu in / %llu out\n",
            fz_obj_float(task, "cost_usd", 0),
            (unsigned long long)fz_obj_uint(task, "tokens_in", 0),
            (unsigned long long)fz_obj_uint(task, "tokens_out", 0));
    s_print_task_ws(task, attempts, out);
    for (uint32_t i = 0;
         attempts && attempts->type == MSGPACK_OBJECT_ARRAY && i < attempts->via.array.size; i++)
        s_print_attempt(task, &attempts->via.array.ptr[i], out_lines, out);
    size_t len;
    const char *s = fz_obj_strn(task, "summary", &len);
    if (len) {
        fprintf(out, "\nsummary:\n");
        fz_cli_print_block(s, len, "  ", 0, out);
    }
    s = fz_obj_strn(task, "prompt", &len);
    if (len) {
        fprintf(out, "\nprompt:\n");
        fz_cli_print_block(s, len, "  ", 0, out);
    }
}

/* ---------------------------------------------------------------- tables */

/* Width of a column: the longest escaped value of `key` in the rows, within [min, max]. */
static int s_width(const msgpack_object *rows, const char *key, int min, int max)
{
    int w = min;
    for (uint32_t i = 0; rows && rows->type == MSGPACK_OBJECT_ARRAY && i < rows->via.array.size;
         i++) {
        char buf[256];
        int len = (int)strlen(s_text(&rows->via.array.ptr[i], key, (size_t)max, buf, sizeof buf));
        if (len > w)
            w = len;
    }
    return w < max ? w : max;
}

/* One row of the task table; depth indents the name (for --tree). */
static void s_task_row(const msgpack_object *t, int wm, int ww, int depth, FILE *out)
{
    char state[40], model[80], worker[80], name[200], eff[24] = "-";
    if (!s_has_text(t, "name"))
        s_text(t, "prompt", 40, name, sizeof name);
    else
        s_text(t, "name", 40, name, sizeof name);
    const msgpack_object *e = fz_obj_get(t, "effective_priority");
    if (e)
        snprintf(eff, sizeof eff, "%.1f", fz_obj_float(t, "effective_priority", 0));
    fprintf(out, "%-8llu %-10s %8lld %8s %-*s %4llu %-*s %*s%s%s",
            (unsigned long long)fz_obj_uint(t, "id", 0),
            s_text(t, "state", 10, state, sizeof state), (long long)fz_obj_int(t, "priority", 0),
            eff, wm, s_text(t, "model", (size_t)wm, model, sizeof model),
            (unsigned long long)fz_obj_uint(t, "attempts", 0), ww,
            s_text(t, "worker", (size_t)ww, worker, sizeof worker), depth * 2, "",
            depth ? "└ " : "", name);
    /* Why the effective priority differs from the base one. */
    char why[200];
    s_text(t, "priority_why", 120, why, sizeof why);
    if (strchr(why, ','))
        fprintf(out, "  [%s]", why);
    fputc('\n', out);
}

static bool s_listed(const msgpack_object *tasks, uint64_t id)
{
    for (uint32_t i = 0; id && i < tasks->via.array.size; i++)
        if (fz_obj_uint(&tasks->via.array.ptr[i], "id", 0) == id)
            return true;
    return false;
}

/* Prints the subtree under parent (depth-first, by id). O(n^2): lists are at most a few
   thousand rows. */
static void s_tree(const msgpack_object *tasks, uint64_t parent, int depth, int wm, int ww,
                   FILE *out)
{
    for (uint32_t i = 0; i < tasks->via.array.size && depth < 32; i++) {
        const msgpack_object *t = &tasks->via.array.ptr[i];
        uint64_t p = fz_obj_uint(t, "parent", 0);
        bool root = depth == 0 && !s_listed(tasks, p);
        if ((depth == 0 && !root) || (depth > 0 && p != parent))
            continue;
        s_task_row(t, wm, ww, depth, out);
        s_tree(tasks, fz_obj_uint(t, "id", 0), depth + 1, wm, ww, out);
    }
}

void fz_report_tasks(const msgpack_object *tasks, uint64_t total, bool tree, FILE *out)
{
    uint32_t n = tasks && tasks->type == MSGPACK_OBJECT_ARRAY ? tasks->via.array.size : 0;
    int wm = s_width(tasks, "model", 5, 20), ww = s_width(tasks, "worker", 6, 20);
    fprintf(out, "%-8s %-10s %8s %8s %-*s %4s %-*s %s\n", "ID", "STATE", "PRIO", "EFF", wm, "MODEL",
            "ATT", ww, "WORKER", "NAME");
    if (tree && n)
        s_tree(tasks, 0, 0, wm, ww, out);
    else
        for (uint32_t i = 0; i < n; i++)
            s_task_row(&tasks->via.array.ptr[i], wm, ww, 0, out);
    if (total > n)
        fprintf(out, "(the newest %u of %llu tasks shown; --limit N shows more)\n", n,
                (unsigned long long)total);
}

void fz_report_workers(const msgpack_object *workers, FILE *out)
{
    uint32_t n = workers && workers->type == MSGPACK_OBJECT_ARRAY ? workers->via.array.size : 0;
    int wn = s_width(workers, "name", 4, 32);
    fprintf(out, "%-*s %-5s %8s %-20s %-20s %s\n", wn, "NAME", "STATE", "TASK", "SINCE",
            "LAST SEEN", "MODELS");
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *w = &workers->via.array.ptr[i];
        char name[80], state[40], since[32], seen[32], models[400], task[48];
        uint64_t id = fz_obj_uint(w, "task", 0), next = fz_obj_uint(w, "next", 0);
        if (id && next) /* --prefetch: the task it runs, then the one it holds */
            snprintf(task, sizeof task, "%llu+%llu", (unsigned long long)id,
                     (unsigned long long)next);
        else if (id)
            snprintf(task, sizeof task, "%llu", (unsigned long long)id);
        else
            snprintf(task, sizeof task, "-");
        s_list(w, "models", models, sizeof models);
        const msgpack_object *bad = fz_obj_get(w, "unhealthy");
        if (bad && bad->type == MSGPACK_OBJECT_ARRAY && bad->via.array.size > 0) {
            char list[200];
            s_list(w, "unhealthy", list, sizeof list);
            bool all = bad->via.array.ptr[0].type == MSGPACK_OBJECT_STR &&
                       bad->via.array.ptr[0].via.str.size == 0;
            size_t used = strlen(models);
            snprintf(models + used, sizeof models - used, "  UNHEALTHY: %s",
                     all ? "every model (agent missing)" : list);
        }
        fprintf(out, "%-*s %-5s %8s %-20s %-20s %s\n", wn,
                s_text(w, "name", (size_t)wn, name, sizeof name),
                s_text(w, "state", 5, state, sizeof state), task,
                fz_cli_time(fz_obj_float(w, "since", 0), since, sizeof since),
                fz_cli_time(fz_obj_float(w, "last_seen", 0), seen, sizeof seen),
                strcmp(models, "-")                 ? models
                : fz_obj_bool(w, "any_model", true) ? "(any)"
                                                    : "(none allowed)");
    }
    if (n == 0)
        fprintf(out, "(no workers connected)\n");
}

void fz_report_status(const msgpack_object *st, FILE *out)
{
    bool paused = fz_obj_bool(st, "paused", false);
    double spent = fz_obj_float(st, "spent_today", 0), reserved = fz_obj_float(st, "reserved", 0);
    double cap = fz_obj_float(st, "budget", 0);
    fprintf(out, "dispatch  %s\n", paused ? "PAUSED (fz-ctl resume to restart)" : "running");
    fprintf(out, "agents    %llu running (at most %llu)\n",
            (unsigned long long)fz_obj_uint(st, "running", 0),
            (unsigned long long)fz_obj_uint(st, "max_running", 0));
    fprintf(out, "workers   %llu connected, %llu idle\n",
            (unsigned long long)fz_obj_uint(st, "workers", 0),
            (unsigned long long)fz_obj_uint(st, "idle_workers", 0));
    fprintf(out, "budget    $%.2f spent + $%.2f reserved of $%.2f today ($%.2f left)\n", spent,
            reserved, cap, cap - spent - reserved > 0 ? cap - spent - reserved : 0.0);
    fprintf(out, "tasks    ");
    const msgpack_object *counts = fz_obj_get(st, "counts");
    bool any = false;
    for (const char **s = s_states; *s; s++) {
        uint64_t c = fz_obj_uint(counts, *s, 0);
        if (c) {
            fprintf(out, "%s %s %llu", any ? "," : "", *s, (unsigned long long)c);
            any = true;
        }
    }
    fprintf(out, "%s\n", any ? "" : " none");
}

void fz_report_budget(const msgpack_object *b, FILE *out)
{
    char day[40];
    fprintf(out, "day       %s (UTC)\n", s_text(b, "day", 16, day, sizeof day));
    fprintf(out, "cap       $%.2f\n", fz_obj_float(b, "cap", 0));
    fprintf(out, "spent     $%.4f\n", fz_obj_float(b, "spent", 0));
    fprintf(out, "reserved  $%.4f\n", fz_obj_float(b, "reserved", 0));
    fprintf(out, "left      $%.4f\n", fz_obj_float(b, "left", 0));
}

void fz_report_cost(const msgpack_object *cost, const char *by, FILE *out)
{
    const msgpack_object *rows = fz_obj_get(cost, "rows");
    uint32_t n = rows && rows->type == MSGPACK_OBJECT_ARRAY ? rows->via.array.size : 0;
    int wk = s_width(rows, "key", (int)strlen(by) < 5 ? 5 : (int)strlen(by), 40);
    char upper[16];
    size_t i;
    for (i = 0; by[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(by[i] >= 'a' && by[i] <= 'z' ? by[i] - 32 : by[i]);
    upper[i] = 0;
    fprintf(out, "%-*s %8s %12s %12s %12s %10s\n", wk, upper, "ATTEMPTS", "COST", "TOKENS IN",
            "TOKENS OUT", "DURATION");
    for (uint32_t r = 0; r < n; r++) {
        const msgpack_object *row = &rows->via.array.ptr[r];
        char key[200], dur[32];
        fprintf(out, "%-*s %8llu %12.4f %12llu %12llu %10s\n", wk,
                s_text(row, "key", (size_t)wk, key, sizeof key),
                (unsigned long long)fz_obj_uint(row, "attempts", 0),
                fz_obj_float(row, "cost_usd", 0),
                (unsigned long long)fz_obj_uint(row, "tokens_in", 0),
                (unsigned long long)fz_obj_uint(row, "tokens_out", 0),
                fz_cli_duration(fz_obj_uint(row, "duration_ms", 0), dur, sizeof dur));
    }
    fprintf(out, "%-*s %8s %12.4f\n", wk, "total", "", fz_obj_float(cost, "total_cost", 0));
}

/* ---------------------------------------------------------------- events */

/* What every detail formatter gets: the event's map, the cut for agent text, whether to name
   the worker, and the output buffer. */
typedef struct {
    const msgpack_object *m;
    size_t max;
    bool with_worker;
    char *buf;
    size_t size;
} details_t;

static unsigned long long s_attempt(const details_t *d)
{
    return (unsigned long long)fz_obj_uint(d->m, "attempt", 0);
}

/* " on w1" / " to w1" when the worker is wanted and known. */
static char *s_worker_part(const details_t *d, const char *prep, char *buf, size_t size)
{
    char name[80];
    buf[0] = 0;
    if (d->with_worker && s_has_text(d->m, "worker"))
        snprintf(buf, size, " %s %s", prep, s_text(d->m, "worker", 64, name, sizeof name));
    return buf;
}

static void s_ev_submitted(const details_t *d)
{
    char model[80], text[1200];
    size_t len;
    const char *s = fz_obj_strn(d->m, "name", &len);
    if (!len)
        s = fz_obj_strn(d->m, "prompt", &len);
    snprintf(d->buf, d->size, "priority %lld, model %s: %s",
             (long long)fz_obj_int(d->m, "priority", 0),
             s_model(d->m, "model", model, sizeof model),
             fz_cli_oneline(s, len, d->max, text, sizeof text));
}

static void s_ev_dispatched(const details_t *d)
{
    char w[100], model[80];
    snprintf(d->buf, d->size, "attempt %llu%s, model %s", s_attempt(d),
             s_worker_part(d, "to", w, sizeof w), s_model(d->m, "model", model, sizeof model));
}

static void s_ev_started(const details_t *d)
{
    char w[100], pid[32] = "";
    uint64_t n = fz_obj_uint(d->m, "pid", 0);
    if (n) /* a dry-run worker starts no process */
        snprintf(pid, sizeof pid, ", pid %llu", (unsigned long long)n);
    snprintf(d->buf, d->size, "attempt %llu%s%s", s_attempt(d), s_worker_part(d, "on", w, sizeof w),
             pid);
}

static void s_ev_progress(const details_t *d)
{
    char elapsed[32], text[1200] = "";
    if (s_has_text(d->m, "progress_text")) {
        strcpy(text, ": ");
        s_text(d->m, "progress_text", d->max, text + 2, sizeof text - 2);
    }
    snprintf(d->buf, d->size, "attempt %llu: %llu%%, $%.4f, %s elapsed%s", s_attempt(d),
             (unsigned long long)fz_obj_uint(d->m, "progress", 0),
             fz_obj_float(d->m, "cost_usd", 0),
             fz_cli_duration(fz_obj_uint(d->m, "elapsed_ms", 0), elapsed, sizeof elapsed), text);
}

static void s_ev_output(const details_t *d)
{
    size_t len;
    const char *s = fz_obj_strn(d->m, "data", &len);
    fz_cli_oneline(s, len, d->max, d->buf, d->size);
}

/* An attempt that ended: task.succeeded, failed, cancelled, attempt-failed. */
static void s_ev_ended(const details_t *d)
{
    char w[100], outcome[64], dur[32], text[1200] = "";
    if (s_has_text(d->m, "summary")) {
        strcpy(text, ": ");
        s_text(d->m, "summary", d->max, text + 2, sizeof text - 2);
    }
    char cls[48] = "";
    if (s_has_text(d->m, "class")) {
        strcpy(cls, " [");
        s_text(d->m, "class", 32, cls + 2, sizeof cls - 3);
        strcat(cls, "]");
    }
    char ws[400] = "";
    if (s_has_text(d->m, "branch")) {
        char br[FZ_MAX_REF + 1];
        snprintf(ws, sizeof ws, ", %s (+%llu -%llu in %llu file%s)",
                 s_text(d->m, "branch", FZ_MAX_REF, br, sizeof br),
                 (unsigned long long)fz_obj_uint(d->m, "insertions", 0),
                 (unsigned long long)fz_obj_uint(d->m, "deletions", 0),
                 (unsigned long long)fz_obj_uint(d->m, "files", 0),
                 fz_obj_uint(d->m, "files", 0) == 1 ? "" : "s");
    }
    if (s_has_text(d->m, "check_status")) {
        char st[32];
        snprintf(ws + strlen(ws), sizeof ws - strlen(ws), ", check %s",
                 s_text(d->m, "check_status", 16, st, sizeof st));
    }
    snprintf(d->buf, d->size, "attempt %llu%s %s%s, %s, $%.4f%s%s", s_attempt(d),
             s_worker_part(d, "on", w, sizeof w), fz_report_outcome(d->m, outcome, sizeof outcome),
             cls, fz_cli_duration(fz_obj_uint(d->m, "duration_ms", 0), dur, sizeof dur),
             fz_obj_float(d->m, "cost_usd", 0), ws, text);
}

static void s_ev_retrying(const details_t *d)
{
    char dur[32], model[80];
    snprintf(d->buf, d->size, "attempt %llu failed; next in %s, model %s", s_attempt(d),
             fz_cli_duration(fz_obj_uint(d->m, "delay_ms", 0), dur, sizeof dur),
             s_model(d->m, "next_model", model, sizeof model));
}

/* Events whose point is a reason or summary: held, requeued, dep-failed. */
static void s_ev_reason(const details_t *d)
{
    char text[1200];
    const char *key = s_has_text(d->m, "reason") ? "reason" : "summary";
    snprintf(d->buf, d->size, "%s", s_text(d->m, key, d->max, text, sizeof text));
}

static void s_ev_priority(const details_t *d)
{
    char state[40];
    snprintf(d->buf, d->size, "priority %lld, %s", (long long)fz_obj_int(d->m, "priority", 0),
             s_text(d->m, "state", 16, state, sizeof state));
}

static void s_ev_stalled(const details_t *d)
{
    char w[100], dur[32];
    snprintf(d->buf, d->size, "attempt %llu%s: no sign of life for %s", s_attempt(d),
             s_worker_part(d, "on", w, sizeof w),
             fz_cli_duration(fz_obj_uint(d->m, "idle_ms", 0), dur, sizeof dur));
}

static void s_ev_unhealthy(const details_t *d)
{
    char cls[40], model[80];
    snprintf(d->buf, d->size, "%s: no more tasks %s%s until it says hello again",
             s_text(d->m, "class", 32, cls, sizeof cls),
             s_has_text(d->m, "model") ? "of model " : "at all",
             s_has_text(d->m, "model") ? s_text(d->m, "model", 64, model, sizeof model) : "");
}

static void s_ev_worker(const details_t *d)
{
    char models[400], reason[120];
    s_list(d->m, "models", models, sizeof models);
    snprintf(d->buf, d->size, "models %s",
             strcmp(models, "-")                    ? models
             : fz_obj_bool(d->m, "any_model", true) ? "(any)"
                                                    : "(none allowed)");
    if (s_has_text(d->m, "reason"))
        snprintf(d->buf + strlen(d->buf), d->size - strlen(d->buf), " (%s)",
                 s_text(d->m, "reason", 100, reason, sizeof reason));
}

static void s_ev_broker(const details_t *d)
{
    const msgpack_object *v = fz_obj_get(d->m, "version");
    char text[80];
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(d->buf, d->size, "version %llu", (unsigned long long)v->via.u64);
    else if (v)
        snprintf(d->buf, d->size, "version %s", s_text(d->m, "version", 32, text, sizeof text));
    else if (fz_obj_get(d->m, "cap"))
        snprintf(d->buf, d->size, "daily cap $%.2f", fz_obj_float(d->m, "cap", 0));
    else
        d->buf[0] = 0;
}

/* Anything else: its state and reason, whatever of them it has. */
static void s_ev_other(const details_t *d)
{
    char state[40], text[1200];
    d->buf[0] = 0;
    if (s_has_text(d->m, "state"))
        snprintf(d->buf, d->size, "%s", s_text(d->m, "state", 16, state, sizeof state));
    if (s_has_text(d->m, "reason") || s_has_text(d->m, "summary")) {
        s_ev_reason(&(details_t){d->m, d->max, d->with_worker, text, sizeof text});
        snprintf(d->buf + strlen(d->buf), d->size - strlen(d->buf), "%s%s", d->buf[0] ? ": " : "",
                 text);
    }
}

static const struct {
    const char *topic; /* exact, or a prefix ending in '.' */
    void (*fn)(const details_t *d);
} s_formatters[] = {{"task.submitted", s_ev_submitted},
                    {"task.dispatched", s_ev_dispatched},
                    {"task.started", s_ev_started},
                    {"task.progress", s_ev_progress},
                    {"task.output", s_ev_output},
                    {"task.succeeded", s_ev_ended},
                    {"task.failed", s_ev_ended},
                    {"task.cancelled", s_ev_ended},
                    {"task.attempt-failed", s_ev_ended},
                    {"task.retrying", s_ev_retrying},
                    {"task.held", s_ev_reason},
                    {"task.requeued", s_ev_reason},
                    {"task.dep-failed", s_ev_reason},
                    {"task.priority", s_ev_priority},
                    {"task.queued", s_ev_priority},
                    {"task.stalled", s_ev_stalled},
                    {"worker.unhealthy", s_ev_unhealthy},
                    {"worker.", s_ev_worker},
                    {"broker.", s_ev_broker},
                    {NULL, s_ev_other}};

char *fz_report_event_details(const fz_event_t *event, size_t max, bool with_worker, char *buf,
                              size_t size)
{
    const char *topic = fz_event_topic(event);
    details_t d = {fz_event_map(event), max, with_worker, buf, size};
    size_t i = 0;
    for (; s_formatters[i].topic; i++) {
        const char *t = s_formatters[i].topic;
        size_t len = strlen(t);
        if (t[len - 1] == '.' ? strncmp(topic, t, len) == 0 : strcmp(topic, t) == 0)
            break;
    }
    s_formatters[i].fn(&d);
    return buf;
}
