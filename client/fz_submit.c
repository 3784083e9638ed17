/*  fz-submit: put one task (the prompt as an argument or on stdin) or many (-f, one per line)
    into the factory and print their ids; with --wait, follow them to the end and exit with
    the outcome.

    Every prompt is read and checked before the first is sent, so a bad line in a file is
    refused with nothing submitted. While waiting, `get` once a second is the authority on a
    task's state; events (subscribed to before submitting) only drive the progress lines and
    make the poll of a task that just ended come sooner. */

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fz_cli.h"
#include "fz_client.h"
#include "fz_event.h"
#include "fz_net.h"
#include "fz_pipeline.h"
#include "fz_report.h"
#include "fz_wait.h"

#define S_TIMEOUT_MS 5000 /* per request */
#define S_MAX_LABELS 32
#define S_MAX_FALLBACK 8
#define S_MAX_DEPS 256
/* Sends of one request whose reply is lost (each waits S_TIMEOUT_MS): about half a minute,
   time for a broker to restart. Safe because every submit carries an idempotency key. */
#define S_TRIES 6
#define S_MAX_KEY 100 /* --idempotency-key; "/LINE" is added per line of a -f file */

typedef struct {
    const char *broker, *events, *file, *model, *name;
    const char *repo, *base, *check; /* the workspace, NULL = none */
    bool keep_worktree;
    uint64_t best_of;
    int64_t priority;
    uint64_t timeout, retries, parent, stall, stall_kill;
    double max_cost, deadline;
    bool has_priority, has_timeout, has_retries, has_max_cost, has_stall, has_stall_kill;
    char label_keys[S_MAX_LABELS][FZ_CLI_MAX_NAME + 1];
    const char *label_values[S_MAX_LABELS];
    size_t nlabels;
    char fallback[S_MAX_FALLBACK][FZ_CLI_MAX_NAME + 1];
    size_t nfallback;
    uint64_t after[S_MAX_DEPS], after_any[S_MAX_DEPS];
    size_t nafter, nafter_any;
    bool wait, json, quiet;
    char key[S_MAX_KEY + 1]; /* --idempotency-key, or a random one of this run */
} opts_t;

typedef struct {
    char *text;
    size_t len;
    size_t line; /* in the -f file; 0 for a single prompt */
} prompt_t;

typedef struct {
    prompt_t *items;
    size_t n, cap;
} prompts_t;

/* ---------------------------------------------------------------- help and options */

static int s_help(void)
{
    printf(
        "Usage: fz-submit [OPTIONS] PROMPT|-\n"
        "       fz-submit [OPTIONS] -f FILE|-\n"
        "Submit a task to the fz broker and print its id. The prompt is the argument, or\n"
        "standard input when it is '-' or missing (and stdin is not a terminal). With -f,\n"
        "every non-empty line of FILE is one task, submitted with the same options; one id\n"
        "is printed per line. Prompts are UTF-8 text of at most 256 KiB; all are checked\n"
        "before the first is sent.\n"
        "\n"
        "A FILE whose first character is '{' is a pipeline: one JSON object per line with\n"
        "\"prompt\", an optional \"name\", \"after\"/\"after_any\" (names of other lines or\n"
        "ids of existing tasks) and any of priority, model, timeout, max_cost, labels,\n"
        "retries, fallback, parent, deadline, stall, stall_kill, repo, base, check,\n"
        "keep_worktree, best_of. Lines may come in any order; a cycle or an\n"
        "unknown name is refused before anything is sent, and the broker stores the whole\n"
        "graph or nothing. Options on the command line apply to every line that does not\n"
        "set them. Prints \"NAME ID\" per task, in the order they were stored.\n"
        "\n"
        "Options:\n"
        "  -f, --file FILE       one task per non-empty line of FILE ('-' = stdin)\n"
        "  -p, --priority N      higher runs first, -1000000..1000000 (default 0)\n"
        "  -m, --model M         run only on workers serving model M (default: any)\n"
        "  -t, --timeout SECS    wall-clock limit of one attempt (default: broker's)\n"
        "  -c, --max-cost USD    cost cap of one attempt (default: broker's)\n"
        "  -l, --label K=V       a label (repeatable, at most 32)\n"
        "  -r, --retries N       further attempts after a failure, 0..100\n"
        "      --fallback M2,M3  models for attempts 2, 3, ... (at most 8)\n"
        "      --after ID,ID     run only after all of these tasks succeeded\n"
        "      --after-any ID,ID run only after all of these tasks ended\n"
        "      --parent ID       the task this one is a subtask of (inside an agent:\n"
        "                        --parent \"$FZ_TASK_ID\")\n"
        "      --deadline TIME   raise the priority as TIME nears: unix seconds,\n"
        "                        YYYY-MM-DDTHH:MM[:SS]Z (UTC), or +N[s|m|h|d] from now\n"
        "      --stall SECS      announce the task as stalled after SECS without output,\n"
        "                        a report line or progress (default: broker's --stall)\n"
        "      --stall-kill SECS stop and retry it as stalled after SECS without a sign of\n"
        "                        life (default: broker's --stall-kill)\n"
        "      --repo REPO       work in a git worktree of REPO (a path on the worker host\n"
        "                        or a URL), one per attempt; the result is a branch\n"
        "      --base REF        start from REF (default: the results of the --after tasks\n"
        "                        on the same repository, else the repository's HEAD)\n"
        "      --check CMD       run CMD (sh -c) in the worktree after the agent exits 0;\n"
        "                        success needs both, and a retry is given its output\n"
        "      --keep-worktree   leave each attempt's worktree folder for inspection\n"
        "      --best-of N       race N attempts at once (2..16); the first to pass wins\n"
        "  -n, --name NAME       a human name (at most 128 bytes)\n"
        "      --idempotency-key K  the broker stores a submit with key K once: sending it\n"
        "                        again (within the broker's --key-ttl, a day) answers with\n"
        "                        the same task ids. With -f, line N of a file gets K/N and a\n"
        "                        pipeline K. Without it fz-submit makes a random key of its\n"
        "                        own, and resends a request whose reply is lost (up to 6\n"
        "                        times, 5 s each) so that a broker restart stores it once\n"
        "  -w, --wait            follow the task(s) to the end; the exit code tells the\n"
        "                        outcome (with -f: the worst one); progress goes to stderr\n"
        "  -j, --json            print {\"task\":ID,\"state\":S}, or with --wait the final task\n"
        "                        object, as one JSON object per line\n"
        "  -q, --quiet           no progress lines\n"
        "      --broker EP       broker endpoint (default $FZ_BROKER or " FZ_DEFAULT_BROKER ")\n"
        "      --events EP       event endpoint for --wait (default $FZ_EVENTS "
        "or " FZ_DEFAULT_EVENTS ")\n"
        "  -h, --help            this help\n"
        "  -V, --version         print the version\n"
        "\n"
        "%s\n",
        fz_cli_help_env);
    fz_cli_print_exit_codes("0,1,2,3,4,5,6,7,130", stdout);
    return FZ_EXIT_OK;
}

enum {
    OPT_FALLBACK = 256,
    OPT_AFTER,
    OPT_AFTER_ANY,
    OPT_PARENT,
    OPT_BROKER,
    OPT_EVENTS,
    OPT_DEADLINE,
    OPT_STALL,
    OPT_STALL_KILL,
    OPT_REPO,
    OPT_BASE,
    OPT_CHECK,
    OPT_KEEP_WORKTREE,
    OPT_BEST_OF,
    OPT_KEY
};

static const struct option s_long[] = {{"file", required_argument, NULL, 'f'},
                                       {"priority", required_argument, NULL, 'p'},
                                       {"model", required_argument, NULL, 'm'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"max-cost", required_argument, NULL, 'c'},
                                       {"label", required_argument, NULL, 'l'},
                                       {"retries", required_argument, NULL, 'r'},
                                       {"fallback", required_argument, NULL, OPT_FALLBACK},
                                       {"after", required_argument, NULL, OPT_AFTER},
                                       {"after-any", required_argument, NULL, OPT_AFTER_ANY},
                                       {"parent", required_argument, NULL, OPT_PARENT},
                                       {"deadline", required_argument, NULL, OPT_DEADLINE},
                                       {"stall", required_argument, NULL, OPT_STALL},
                                       {"stall-kill", required_argument, NULL, OPT_STALL_KILL},
                                       {"repo", required_argument, NULL, OPT_REPO},
                                       {"base", required_argument, NULL, OPT_BASE},
                                       {"check", required_argument, NULL, OPT_CHECK},
                                       {"keep-worktree", no_argument, NULL, OPT_KEEP_WORKTREE},
                                       {"best-of", required_argument, NULL, OPT_BEST_OF},
                                       {"name", required_argument, NULL, 'n'},
                                       {"idempotency-key", required_argument, NULL, OPT_KEY},
                                       {"wait", no_argument, NULL, 'w'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"quiet", no_argument, NULL, 'q'},
                                       {"broker", required_argument, NULL, OPT_BROKER},
                                       {"events", required_argument, NULL, OPT_EVENTS},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {NULL, 0, NULL, 0}};

static bool s_add_label(opts_t *o, const char *arg)
{
    char key[FZ_CLI_MAX_NAME + 1];
    const char *value;
    if (!fz_cli_parse_label("--label", arg, key, &value))
        return false;
    for (size_t i = 0; i < o->nlabels; i++)
        if (strcmp(o->label_keys[i], key) == 0) {
            fz_cli_usage_error("--label: '%s' given twice", key);
            return false;
        }
    if (o->nlabels == S_MAX_LABELS) {
        fz_cli_usage_error("--label: more than %d labels", S_MAX_LABELS);
        return false;
    }
    strcpy(o->label_keys[o->nlabels], key);
    o->label_values[o->nlabels++] = value;
    return true;
}

static bool s_text_option(const char *flag, const char *arg, size_t max)
{
    if (strlen(arg) <= max && fz_utf8_valid(arg, strlen(arg)))
        return true;
    fz_cli_usage_error("%s: must be at most %zu bytes of UTF-8", flag, max);
    return false;
}

/* A deadline as unix seconds, an ISO-8601 UTC time, or "+N[smhd]" from now. */
static bool s_parse_deadline(const char *arg, double *out)
{
    double v;
    if (arg[0] == '+') {
        char *end;
        double n = strtod(arg + 1, &end);
        double unit = *end == 's' || !*end ? 1
                      : *end == 'm'        ? 60
                      : *end == 'h'        ? 3600
                      : *end == 'd'        ? 86400
                                           : 0;
        if (end == arg + 1 || unit == 0 || (*end && end[1]) || !(n >= 0 && n < 1e8))
            goto bad;
        *out = fz_wall() + n * unit;
        return true;
    }
    if (fz_parse_double(arg, 1, 1e11, &v)) {
        *out = v;
        return true;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(arg, "%Y-%m-%dT%H:%M", &tm);
    if (end && *end == ':')
        end = strptime(end, ":%S", &tm);
    if (end && (*end == 'Z' || *end == 0) && (!*end || !end[1])) {
        *out = (double)timegm(&tm);
        return true;
    }
bad:
    fz_cli_usage_error("--deadline '%s': expected unix seconds, YYYY-MM-DDTHH:MM[:SS]Z or "
                       "+N[s|m|h|d]",
                       arg);
    return false;
}

/* --repo: a folder here is sent as its absolute path (the worker's working directory is not
   ours); anything else (a URL, a path on another host) as it is. */
static bool s_repo_option(opts_t *o, const char *arg)
{
    static char abs[PATH_MAX];
    struct stat st;
    o->repo = arg;
    if (!strstr(arg, "://") && stat(arg, &st) == 0 && S_ISDIR(st.st_mode) && realpath(arg, abs))
        o->repo = abs;
    return s_text_option("--repo", o->repo, FZ_MAX_REPO);
}

/* Reads one option into o; false (after printing why) if its value is bad. */
static bool s_option(opts_t *o, int c, const char *arg)
{
    switch (c) {
    case 'f':
        o->file = arg;
        return true;
    case 'p':
        o->has_priority = true;
        return fz_cli_parse_int("--priority", arg, -1000000, 1000000, &o->priority);
    case 'm':
        o->model = arg;
        return s_text_option("--model", arg, FZ_CLI_MAX_NAME);
    case 't':
        o->has_timeout = true;
        return fz_cli_parse_uint("--timeout", arg, 0, 31536000, &o->timeout);
    case 'c':
        o->has_max_cost = true;
        return fz_cli_parse_double("--max-cost", arg, 0, 1e6, &o->max_cost);
    case 'l':
        return s_add_label(o, arg);
    case 'r':
        o->has_retries = true;
        return fz_cli_parse_uint("--retries", arg, 0, 100, &o->retries);
    case OPT_FALLBACK:
        return fz_cli_parse_names("--fallback", arg, o->fallback, S_MAX_FALLBACK, &o->nfallback);
    case OPT_AFTER:
        return fz_cli_parse_ids("--after", arg, o->after, S_MAX_DEPS, &o->nafter);
    case OPT_AFTER_ANY:
        return fz_cli_parse_ids("--after-any", arg, o->after_any, S_MAX_DEPS, &o->nafter_any);
    case OPT_PARENT:
        return fz_cli_parse_uint("--parent", arg, 1, UINT64_MAX, &o->parent);
    case OPT_DEADLINE:
        return s_parse_deadline(arg, &o->deadline);
    case OPT_STALL:
        o->has_stall = true;
        return fz_cli_parse_uint("--stall", arg, 0, 31536000, &o->stall);
    case OPT_STALL_KILL:
        o->has_stall_kill = true;
        return fz_cli_parse_uint("--stall-kill", arg, 0, 31536000, &o->stall_kill);
    case OPT_REPO:
        return s_repo_option(o, arg);
    case OPT_BASE:
        o->base = arg;
        return s_text_option("--base", arg, FZ_MAX_REF);
    case OPT_CHECK:
        o->check = arg;
        return s_text_option("--check", arg, FZ_MAX_CHECK);
    case OPT_KEEP_WORKTREE:
        o->keep_worktree = true;
        return true;
    case OPT_BEST_OF:
        return fz_cli_parse_uint("--best-of", arg, 1, FZ_MAX_BEST_OF, &o->best_of);
    case 'n':
        o->name = arg;
        return s_text_option("--name", arg, 128);
    case OPT_KEY:
        if (!*arg) {
            fz_cli_usage_error("--idempotency-key: must not be empty");
            return false;
        }
        snprintf(o->key, sizeof o->key, "%s", arg);
        return s_text_option("--idempotency-key", arg, S_MAX_KEY);
    case 'w':
        o->wait = true;
        return true;
    case 'j':
        o->json = true;
        return true;
    case 'q':
        o->quiet = true;
        return true;
    case OPT_BROKER:
        o->broker = arg;
        return true;
    case OPT_EVENTS:
        o->events = arg;
        return true;
    default:
        return false; /* getopt already said what is wrong */
    }
}

/* ---------------------------------------------------------------- prompts */

static void s_prompts_free(prompts_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].text);
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* Checks a prompt as the broker would, so that refusals come early and clearly. */
static bool s_check_prompt(const char *text, size_t len, size_t line)
{
    char where[48] = "";
    if (line)
        snprintf(where, sizeof where, "line %zu: ", line);
    if (len > FZ_MAX_PROMPT) {
        fz_cli_error("%sthe prompt is %zu bytes, over the limit of %u (256 KiB)", where, len,
                     FZ_MAX_PROMPT);
        return false;
    }
    if (!fz_utf8_valid(text, len)) {
        fz_cli_error("%sthe prompt is not UTF-8 text (or holds a NUL byte)", where);
        return false;
    }
    return true;
}

/* Takes ownership of text. */
static bool s_prompts_add(prompts_t *p, char *text, size_t len, size_t line)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        prompt_t *items = realloc(p->items, cap * sizeof *items);
        if (!items) {
            free(text);
            fz_cli_error("out of memory");
            return false;
        }
        p->items = items, p->cap = cap;
    }
    p->items[p->n++] = (prompt_t){text, len, line};
    return true;
}

static bool s_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] == 0 || !strchr(" \t\r\n\v\f", s[i]))
            return false;
    return true;
}

/* Reads all of `in` as one prompt, refusing more than FZ_MAX_PROMPT bytes without reading
   them all. */
static bool s_read_prompt(FILE *in, prompts_t *p)
{
    size_t cap = 4096, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len, in)) > 0) {
        len += got;
        if (len < cap)
            continue;
        if (cap > FZ_MAX_PROMPT)
            break; /* over the limit already: no need to read the rest */
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger, cap *= 2;
    }
    if (!buf || ferror(in)) {
        free(buf);
        fz_cli_error("cannot read the prompt from standard input");
        return false;
    }
    if (len > FZ_MAX_PROMPT || s_blank(buf, len) || !s_check_prompt(buf, len, 0)) {
        if (len > FZ_MAX_PROMPT)
            fz_cli_error("the prompt on standard input is over the limit of %u bytes (256 KiB)",
                         FZ_MAX_PROMPT);
        else if (s_blank(buf, len))
            fz_cli_error("the prompt on standard input is empty");
        free(buf);
        return false;
    }
    return s_prompts_add(p, buf, len, 0);
}

/* The prompt given as an argument. */
static bool s_take_arg(const char *arg, prompts_t *p)
{
    size_t len = strlen(arg);
    if (s_blank(arg, len)) {
        fz_cli_error("the prompt is empty");
        return false;
    }
    if (!s_check_prompt(arg, len, 0))
        return false;
    char *text = strdup(arg);
    if (!text) {
        fz_cli_error("out of memory");
        return false;
    }
    return s_prompts_add(p, text, len, 0);
}

/* One prompt per non-empty line of the file ("-" = stdin). */
static bool s_read_file(const char *path, prompts_t *p)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!in) {
        fz_cli_error("cannot open '%s': %s", path, strerror(errno));
        return false;
    }
    char *line = NULL;
    size_t size = 0, lineno = 0;
    ssize_t got;
    bool ok = true;
    while (ok && (got = getline(&line, &size, in)) >= 0) {
        size_t len = (size_t)got;
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (s_blank(line, len))
            continue;
        ok = s_check_prompt(line, len, lineno);
        char *text = ok ? strndup(line, len) : NULL;
        if (ok && !text)
            fz_cli_error("out of memory");
        ok = ok && text && s_prompts_add(p, text, len, lineno);
    }
    if (ok && ferror(in)) {
        fz_cli_error("cannot read '%s': %s", path, strerror(errno));
        ok = false;
    }
    if (ok && p->n == 0) {
        fz_cli_error("'%s' holds no prompt (no non-empty line)", path);
        ok = false;
    }
    free(line);
    if (in != stdin)
        fclose(in);
    return ok;
}

/* ---------------------------------------------------------------- submitting */

static bool s_skip(const char *key, const char *const *own, size_t nown)
{
    for (size_t i = 0; i < nown; i++)
        if (strcmp(own[i], key) == 0)
            return true;
    return false;
}

/* Writes the command line's task options, except the keys in own (a pipeline line's). */
static void s_encode_options(const opts_t *o, fz_enc_t *req, const char *const *own, size_t nown)
{
    if (o->has_priority && !s_skip("priority", own, nown))
        fz_enc_int(req, "priority", o->priority);
    if (o->model && !s_skip("model", own, nown))
        fz_enc_str(req, "model", o->model);
    if (o->has_timeout && !s_skip("timeout", own, nown))
        fz_enc_uint(req, "timeout", o->timeout);
    if (o->has_max_cost && !s_skip("max_cost", own, nown))
        fz_enc_float(req, "max_cost", o->max_cost);
    if (o->nlabels && !s_skip("labels", own, nown)) {
        fz_enc_map(req, "labels", o->nlabels);
        for (size_t i = 0; i < o->nlabels; i++) {
            fz_enc_str(req, NULL, o->label_keys[i]);
            fz_enc_str(req, NULL, o->label_values[i]);
        }
    }
    if (o->has_retries && !s_skip("retries", own, nown))
        fz_enc_uint(req, "retries", o->retries);
    if (o->nfallback && !s_skip("fallback", own, nown)) {
        fz_enc_array(req, "fallback", o->nfallback);
        for (size_t i = 0; i < o->nfallback; i++)
            fz_enc_str(req, NULL, o->fallback[i]);
    }
    if (o->parent && !s_skip("parent", own, nown))
        fz_enc_uint(req, "parent", o->parent);
    if (o->deadline > 0 && !s_skip("deadline", own, nown))
        fz_enc_float(req, "deadline", o->deadline);
    if (o->has_stall && !s_skip("stall", own, nown))
        fz_enc_uint(req, "stall", o->stall);
    if (o->has_stall_kill && !s_skip("stall_kill", own, nown))
        fz_enc_uint(req, "stall_kill", o->stall_kill);
    if (o->repo && !s_skip("repo", own, nown))
        fz_enc_str(req, "repo", o->repo);
    if (o->base && !s_skip("base", own, nown))
        fz_enc_str(req, "base", o->base);
    if (o->check && !s_skip("check", own, nown))
        fz_enc_str(req, "check", o->check);
    if (o->keep_worktree && !s_skip("keep_worktree", own, nown))
        fz_enc_bool(req, "keep_worktree", true);
    if (o->best_of > 1 && !s_skip("best_of", own, nown))
        fz_enc_uint(req, "best_of", o->best_of);
}

static void s_pipeline_defaults(void *arg, fz_enc_t *task, const char *const *own, size_t nown)
{
    s_encode_options(arg, task, own, nown);
}

/* The idempotency key of one prompt: the run's key, and for a line of a -f file "/LINE". */
static void s_prompt_key(const opts_t *o, const prompt_t *pr, char *key, size_t size)
{
    if (o->file)
        snprintf(key, size, "%s/%zu", o->key, pr->line);
    else
        snprintf(key, size, "%s", o->key);
}

static fz_enc_t *s_submit_request(fz_client_t *client, const opts_t *o, const prompt_t *pr)
{
    fz_enc_t *req = fz_client_request(client, "submit");
    if (!req)
        return NULL;
    char key[S_MAX_KEY + 32];
    s_prompt_key(o, pr, key, sizeof key);
    fz_enc_str(req, "idempotency_key", key);
    fz_enc_strn(req, "prompt", pr->text, pr->len);
    s_encode_options(o, req, NULL, 0);
    if (o->nafter) {
        fz_enc_array(req, "after", o->nafter);
        for (size_t i = 0; i < o->nafter; i++)
            fz_enc_uint(req, NULL, o->after[i]);
    }
    if (o->nafter_any) {
        fz_enc_array(req, "after_any", o->nafter_any);
        for (size_t i = 0; i < o->nafter_any; i++)
            fz_enc_uint(req, NULL, o->after_any[i]);
    }
    if (o->name)
        fz_enc_str(req, "name", o->name);
    return req;
}

/* Builds a request afresh (a new rid, the same idempotency key) for each send. */
typedef fz_enc_t *(s_build_fn)(fz_client_t *client, const void *arg);

/* Sends what build makes and waits for the reply. When the reply is lost (no reply in
   time from a broker the socket had reached: the request may have landed) or the broker
   could not store it, sends it again, up
   to S_TRIES sends: its idempotency key makes the broker store it once and answer the
   resend with what the first send stored. */
static fz_err_t s_ask_retrying(fz_client_t *client, s_build_fn *build, const void *arg,
                               const char *expect, fz_msg_t **reply_p, char *err, size_t errlen)
{
    fz_err_t rc = FZ_EINTERNAL;
    for (int i = 1; i <= S_TRIES; i++) {
        fz_enc_t *req = build(client, arg);
        if (!req) {
            snprintf(err, errlen, "out of memory");
            return FZ_EINTERNAL;
        }
        rc = fz_client_ask(client, &req, expect, reply_p, err, errlen);
        /* A broker that was never reached is unreachable (exit 5 at once), not restarting. */
        bool lost = fz_client_may_have_landed(client);
        if (rc != FZ_EUNAVAILABLE || fz_net_interrupted() || i == S_TRIES ||
            (!lost && fz_client_reason(client) != FZ_REASON_STORE_FAILED))
            return rc;
        fprintf(stderr, "%s: %s; sending it again (%d of %d, same idempotency key)\n",
                fz_cli_progname(), err, i + 1, S_TRIES);
        if (!lost)
            zclock_sleep(1000); /* the broker said it could not store: give it a moment */
    }
    return rc;
}

typedef struct {
    const opts_t *o;
    const prompt_t *pr;
} s_one_t;

static fz_enc_t *s_build_one(fz_client_t *client, const void *arg)
{
    const s_one_t *one = arg;
    return s_submit_request(client, one->o, one->pr);
}

/* Submits one prompt and prints its id; returns an exit code, *id_p set on success. */
static int s_submit(fz_client_t *client, const opts_t *o, const prompt_t *pr, uint64_t *id_p)
{
    char err[512];
    fz_msg_t *reply = NULL;
    s_one_t one = {o, pr};
    fz_err_t rc = s_ask_retrying(client, s_build_one, &one, "submitted", &reply, err, sizeof err);
    if (rc != FZ_OK) {
        if (fz_net_interrupted())
            return FZ_EXIT_INTERRUPTED;
        if (pr->line)
            fz_cli_error("line %zu: %s", pr->line, err);
        else
            fz_cli_error("%s", err);
        return fz_cli_exit_code(rc);
    }
    *id_p = fz_msg_uint(reply, "task", 0);
    if (o->json && !o->wait)
        fz_cli_print_body_json(fz_msg_root(reply), stdout);
    else if (!o->json)
        printf("%llu\n", (unsigned long long)*id_p);
    fflush(stdout);
    fz_msg_destroy(&reply);
    return FZ_EXIT_OK;
}

/* ---------------------------------------------------------------- pipelines */

static int s_run(const opts_t *o, prompts_t *prompts);

typedef struct {
    const opts_t *o;
    fz_pipeline_t *pl;
} s_batch_t;

/* The whole pipeline as one submit-batch, with the run's idempotency key. */
static fz_enc_t *s_build_batch(fz_client_t *client, const void *arg)
{
    const s_batch_t *b = arg;
    fz_enc_t *req = fz_client_request(client, "submit-batch");
    if (req) {
        fz_enc_str(req, "idempotency_key", b->o->key);
        fz_pipeline_encode(b->pl, req, s_pipeline_defaults, (void *)b->o);
    }
    return req;
}

/* Submits a whole pipeline in one submit-batch; with --wait follows every task. */
static int s_run_pipeline(const opts_t *o, fz_pipeline_t *pl)
{
    const char *broker = fz_endpoint(o->broker, "FZ_BROKER", FZ_DEFAULT_BROKER);
    const char *events = fz_endpoint(o->events, "FZ_EVENTS", FZ_DEFAULT_EVENTS);
    fz_client_t *client = fz_client_new(broker, S_TIMEOUT_MS);
    if (!client)
        return fz_cli_usage_error("cannot use broker endpoint '%s'", broker);
    fz_wait_t *wait = o->wait ? fz_wait_new(events, o->json, o->quiet) : NULL;
    if (o->wait && !wait) {
        fz_client_destroy(&client);
        return fz_cli_usage_error("cannot use event endpoint '%s'", events);
    }
    char err[512];
    fz_msg_t *reply = NULL;
    s_batch_t batch = {o, pl};
    fz_enc_t *req = s_build_batch(client, &batch);
    /* A frame over the limit would make the broker drop the connection without a word. */
    size_t len = 0;
    bool fits = req && fz_enc_data(req, &len) && len <= FZ_MAX_FRAME;
    fz_enc_destroy(&req);
    if (!fits && len > FZ_MAX_FRAME) {
        fz_wait_destroy(&wait);
        fz_client_destroy(&client);
        return fz_cli_usage_error("%s: the pipeline is %zu bytes, over the %u-byte limit of one "
                                  "request: split it",
                                  o->file, len, FZ_MAX_FRAME);
    }
    fz_err_t rc = fits ? s_ask_retrying(client, s_build_batch, &batch, "submitted-batch", &reply,
                                        err, sizeof err)
                       : FZ_EINTERNAL;
    int code = FZ_EXIT_OK;
    int64_t idx = rc != FZ_OK ? fz_client_error_index(client) : -1;
    if (idx >= 0 && (size_t)idx < fz_pipeline_size(pl)) {
        /* The broker counts in submission order; people count lines. */
        fz_cli_error("%s: line %zu: %s", o->file, fz_pipeline_line(pl, (size_t)idx), err);
    } else if (rc != FZ_OK) {
        fz_cli_error("%s", fits || rc != FZ_EINTERNAL ? err : "out of memory");
    }
    if (rc != FZ_OK) {
        code = fz_net_interrupted() ? FZ_EXIT_INTERRUPTED : fz_cli_exit_code(rc);
    }
    const msgpack_object *ids = reply ? fz_msg_obj(reply, "tasks") : NULL;
    size_t n = ids ? ids->via.array.size : 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = ids->via.array.ptr[i].via.u64;
        const char *name = i < fz_pipeline_size(pl) ? fz_pipeline_name(pl, i) : "";
        if (o->json && !o->wait) {
            json_t *j = json_pack("{s:s,s:I}", "name", name, "task", (json_int_t)id);
            if (j)
                json_dumpf(j, stdout, JSON_COMPACT);
            json_decref(j);
            putchar('\n');
        } else if (!o->json) {
            char shown[300];
            printf("%s %llu\n",
                   *name ? fz_cli_oneline(name, strlen(name), 200, shown, sizeof shown) : "-",
                   (unsigned long long)id);
        }
        if (wait && fz_wait_add(wait, id) < 0)
            code = FZ_EXIT_UNAVAILABLE;
    }
    fflush(stdout);
    if (wait && code == FZ_EXIT_OK && fz_wait_count(wait))
        code = fz_wait_run(wait, client);
    fz_wait_destroy(&wait);
    fz_msg_destroy(&reply);
    fz_client_destroy(&client);
    return code;
}

/* -f FILE: a pipeline when it starts with '{', else one prompt per line. */
static int s_run_file(const opts_t *o, prompts_t *prompts)
{
    FILE *in = strcmp(o->file, "-") == 0 ? stdin : fopen(o->file, "r");
    if (!in) {
        fz_cli_error("cannot open '%s': %s", o->file, strerror(errno));
        return FZ_EXIT_USAGE;
    }
    bool pipeline = fz_pipeline_sniff(in);
    if (in != stdin)
        fclose(in);
    if (!pipeline)
        return s_read_file(o->file, prompts) ? s_run(o, prompts) : FZ_EXIT_USAGE;
    if (o->name || o->nafter || o->nafter_any)
        return fz_cli_usage_error("--name, --after and --after-any belong in the pipeline's "
                                  "lines");
    in = strcmp(o->file, "-") == 0 ? stdin : fopen(o->file, "r");
    char err[512];
    fz_pipeline_t *pl = in ? fz_pipeline_read(in, o->file, err, sizeof err) : NULL;
    if (in && in != stdin)
        fclose(in);
    if (!pl)
        return fz_cli_usage_error("%s: %s", o->file, in ? err : strerror(errno));
    int code = s_run_pipeline(o, pl);
    fz_pipeline_destroy(&pl);
    return code;
}

/* ---------------------------------------------------------------- main */

/* Submits every prompt; with --wait follows them. Returns the exit code. */
static int s_run(const opts_t *o, prompts_t *prompts)
{
    const char *broker = fz_endpoint(o->broker, "FZ_BROKER", FZ_DEFAULT_BROKER);
    const char *events = fz_endpoint(o->events, "FZ_EVENTS", FZ_DEFAULT_EVENTS);
    fz_client_t *client = fz_client_new(broker, S_TIMEOUT_MS);
    if (!client)
        return fz_cli_usage_error("cannot use broker endpoint '%s'", broker);
    /* Subscribe before submitting, so the first events of a quick task are not missed (the
       poll would still catch its end). */
    fz_wait_t *wait = o->wait ? fz_wait_new(events, o->json, o->quiet) : NULL;
    if (o->wait && !wait) {
        fz_client_destroy(&client);
        return fz_cli_usage_error("cannot use event endpoint '%s'", events);
    }
    int code = FZ_EXIT_OK;
    for (size_t i = 0; i < prompts->n && code == FZ_EXIT_OK; i++) {
        uint64_t id = 0;
        code = s_submit(client, o, &prompts->items[i], &id);
        if (code == FZ_EXIT_OK && wait && fz_wait_add(wait, id) < 0) {
            fz_cli_error("out of memory");
            code = FZ_EXIT_UNAVAILABLE;
        }
    }
    /* Tasks submitted before a refusal still run: wait for them too, then report the worst. */
    if (wait && fz_wait_count(wait) > 0 && code != FZ_EXIT_INTERRUPTED) {
        int waited_code = fz_wait_run(wait, client);
        code = waited_code > code ? waited_code : code;
    }
    fz_wait_destroy(&wait);
    fz_client_destroy(&client);
    return code;
}

int main(int argc, char **argv)
{
    fz_cli_init("fz-submit");
    if (fz_cli_curve(&argc, argv) != 0)
        return FZ_EXIT_USAGE;
    opts_t o;
    memset(&o, 0, sizeof o);
    int c;
    opterr = 0; /* we word the errors ourselves */
    while ((c = getopt_long(argc, argv, ":f:p:m:t:c:l:r:n:wjqhV", s_long, NULL)) != -1) {
        if (c == 'h')
            return s_help();
        if (c == 'V')
            return fz_cli_version();
        if (c == '?')
            return optopt ? fz_cli_usage_error("unknown option '-%c'", optopt)
                          : fz_cli_usage_error("unknown option '%s'", argv[optind - 1]);
        if (c == ':')
            return fz_cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        if (!s_option(&o, c, optarg))
            return FZ_EXIT_USAGE;
    }
    int rest = argc - optind;
    if (rest > 1)
        return fz_cli_usage_error("too many arguments: quote the prompt ('%s ...')", argv[optind]);
    if (o.file && rest == 1)
        return fz_cli_usage_error("give either -f FILE or a PROMPT, not both");
    if (!o.file && rest == 0 && isatty(STDIN_FILENO))
        return fz_cli_usage_error("missing PROMPT (or '-' to read it from standard input)");
    if (!*o.key)
        fz_client_new_key(o.key);
    prompts_t prompts = {0};
    bool ok;
    if (o.file) {
        int code = s_run_file(&o, &prompts);
        s_prompts_free(&prompts);
        return code;
    }
    if (rest == 0 || strcmp(argv[optind], "-") == 0)
        ok = s_read_prompt(stdin, &prompts);
    else
        ok = s_take_arg(argv[optind], &prompts);
    int code = ok ? s_run(&o, &prompts) : FZ_EXIT_USAGE;
    s_prompts_free(&prompts);
    return code;
}
