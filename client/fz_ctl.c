/*  fz-ctl: look at and steer the factory: status, list, show, cancel, workers, the kill switch
    (pause/resume/stop), retry, priority, budget and cost reports, ping.

    One handler per command, chosen from a table. Every handler makes one request and prints
    the reply for people, or as JSON with --json. Options are parsed by hand rather than with
    getopt so that `fz-ctl priority 12 -5` reads -5 as a number. */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fz_cli.h"
#include "fz_client.h"
#include "fz_curve.h"
#include "fz_digest.h"
#include "fz_net.h"
#include "fz_report.h"

#define S_TIMEOUT_MS 5000
#define S_MAX_POSITIONAL 8

typedef struct {
    const char *broker;
    bool json, tree;
    const char *state, *limit, *lines, *set, *by, *since, *label, *before; /* raw values */
    char given[16]; /* letters of the options given, checked against the command's */
    int npos;
    const char *pos[S_MAX_POSITIONAL]; /* pos[0] is the command */
    fz_client_t *client;
} ctl_t;

typedef int (*ctl_fn)(ctl_t *ctl);

typedef struct {
    const char *name;
    ctl_fn fn;
    int args;            /* positionals after the command name */
    const char *options; /* letters of the options it takes, besides the global ones */
} command_t;

/* ---------------------------------------------------------------- help */

static int s_help(void)
{
    printf(
        "Usage: fz-ctl [--broker EP] [--json] COMMAND [ARGS]\n"
        "Look at and steer an fz broker.\n"
        "\n"
        "Commands:\n"
        "  status                     queue counts, running agents, workers, today's budget\n"
        "  list [--state S] [--limit N] [--tree]\n"
        "                             the newest tasks (default 1000), by id, with base (PRIO) "
        "and\n"
        "                             effective (EFF) priority and why they differ; --tree\n"
        "                             shows subtasks under their parents\n"
        "  show ID [--lines N]        a task: fields, every attempt with the last N lines\n"
        "                             of its output (default 20, 0 = all), summary, prompt\n"
        "  cancel ID                  cancel a task (a running one when its worker reports)\n"
        "  workers                    connected workers\n"
        "  pause                      stop dispatching new tasks\n"
        "  resume                     dispatch again\n"
        "  stop                       the kill switch: pause and cancel every running task\n"
        "  retry ID                   run a failed, cancelled or dep-failed task again (the\n"
        "                             tasks that failed because of it come back too)\n"
        "  priority ID N              set a task's priority (-1000000..1000000)\n"
        "  escalate ID                raise a task's priority above every live task's\n"
        "  budget [--set USD]         today's budget (cap, spent, reserved, left); set the cap\n"
        "  cost [--by day|model|task|worker|label|class] [--since YYYY-MM-DD] [--label KEY]\n"
        "                             spending report (default by day; --by label groups by\n"
        "                             the values of label KEY)\n"
        "  purge --before YYYY-MM-DD  delete tasks that ended before that day (UTC), with their\n"
        "                             attempts; never today's (the budget counts them) nor\n"
        "                             any a live task still waits for\n"
        "  backup FILE                an online, consistent copy of the broker's database,\n"
        "                             written at FILE on the broker's host (a relative FILE is\n"
        "                             made absolute here first)\n"
        "  digest [--since 1h|TIME]   the check-in: what succeeded and failed since then (default\n"
        "                             24h; also 30m, 2d, 2026-12-01, 2026-12-01T08:00Z, 08:00,\n"
        "                             @UNIX), what is held, stalled or waiting and why, cost\n"
        "                             by model, the budget left\n"
        "  ping                       check that the broker answers\n"
        "  keygen NAME                write a new CURVE key pair, NAME.key (secret, mode 600)\n"
        "                             and NAME.pub (public), in the zcert format; needs no\n"
        "                             broker\n"
        "\n"
        "Options:\n"
        "  --broker EP    broker endpoint (default $FZ_BROKER or " FZ_DEFAULT_BROKER ")\n"
        "  --curve-secret FILE, --broker-key FILE   CURVE keys (see the environment below)\n"
        "  --json         print the broker's reply as one JSON object\n"
        "  -h, --help     this help\n"
        "  -V, --version  print the version\n"
        "States: %s.\n"
        "Times are shown in UTC (ISO-8601).\n"
        "\n"
        "%s\n",
        fz_report_states(), fz_cli_help_env);
    fz_cli_print_exit_codes("0,2,5,6,7,130", stdout);
    return FZ_EXIT_OK;
}

/* ---------------------------------------------------------------- calling */

/* Makes the call, expecting a reply of type `expect`; on failure prints the error and
   returns the exit code, on success 0. */
static int s_call(ctl_t *ctl, fz_enc_t **req_p, const char *expect, fz_msg_t **reply_p)
{
    char err[512];
    if (!*req_p) {
        fz_cli_error("out of memory");
        return FZ_EXIT_UNAVAILABLE;
    }
    fz_err_t rc = fz_client_ask(ctl->client, req_p, expect, reply_p, err, sizeof err);
    if (rc == FZ_OK)
        return FZ_EXIT_OK;
    if (fz_net_interrupted())
        return FZ_EXIT_INTERRUPTED;
    fz_cli_error("%s", err);
    return fz_cli_exit_code(rc);
}

/* A task id positional. */
static bool s_task_id(const char *arg, uint64_t *id)
{
    if (fz_parse_uint(arg, UINT64_MAX, id) && *id > 0)
        return true;
    fz_cli_usage_error("'%s' is not a task id (a whole number from 1)", arg);
    return false;
}

/* How a command prints its reply for people (--json prints the reply itself). */
typedef void(print_fn)(fz_msg_t *reply, const void *arg);

/* Sends *req_p, waits for its reply of type `expect`, prints it (JSON, or print(reply, arg))
   and frees it: the shape of every command. */
static int s_ask(ctl_t *ctl, fz_enc_t **req_p, const char *expect, print_fn *print, const void *arg)
{
    fz_msg_t *reply = NULL;
    int code = s_call(ctl, req_p, expect, &reply);
    if (code)
        return code;
    if (ctl->json)
        fz_cli_print_body_json(fz_msg_root(reply), stdout);
    else
        print(reply, arg);
    fz_msg_destroy(&reply);
    return FZ_EXIT_OK;
}

typedef struct {
    uint64_t id;
    const char *done;
} task_done_t;

static void s_print_task_done(fz_msg_t *reply, const void *arg)
{
    const task_done_t *d = arg;
    const char *state = fz_msg_str(reply, "state", "", NULL);
    uint64_t count = fz_msg_uint(reply, "count", 0);
    printf("task %llu: %s", (unsigned long long)d->id, d->done);
    if (*state)
        printf(" (now %s)", state);
    if (count)
        printf("; %llu subtask%s too", (unsigned long long)count, count == 1 ? "" : "s");
    printf("\n");
}

/* A request of `type` about the task id in the first argument, answered `ok`. */
static int s_task_request(ctl_t *ctl, const char *type, const char *done)
{
    task_done_t d = {0, done};
    if (!s_task_id(ctl->pos[1], &d.id))
        return FZ_EXIT_USAGE;
    fz_enc_t *req = fz_client_request(ctl->client, type);
    fz_enc_uint(req, "task", d.id);
    return s_ask(ctl, &req, "ok", s_print_task_done, &d);
}

static void s_print_line(fz_msg_t *reply, const void *line)
{
    printf("%s\n", (const char *)line);
}

/* A request with no fields, answered `ok`: prints `done`. */
static int s_simple_request(ctl_t *ctl, const char *type, const char *done)
{
    fz_enc_t *req = fz_client_request(ctl->client, type);
    return s_ask(ctl, &req, "ok", s_print_line, done);
}

/* A report of the reply (or of one field of it, when field is not NULL). */
typedef struct {
    void (*report)(const msgpack_object *, FILE *);
    const char *field;
} report_t;

static void s_print_report(fz_msg_t *reply, const void *arg)
{
    const report_t *r = arg;
    r->report(r->field ? fz_msg_obj(reply, r->field) : fz_msg_root(reply), stdout);
}

/* ---------------------------------------------------------------- commands */

static int s_cmd_status(ctl_t *ctl)
{
    fz_enc_t *req = fz_client_request(ctl->client, "status");
    /* by_model and by_label, for autoscalers, are only in the JSON; the broker makes them with
       a pass over every unfinished task (about a second with a million queued). */
    if (ctl->json)
        fz_enc_bool(req, "depth", true);
    return s_ask(ctl, &req, "status", s_print_report, &(report_t){fz_report_status, NULL});
}

static void s_print_tasks(fz_msg_t *reply, const void *tree)
{
    fz_report_tasks(fz_msg_obj(reply, "tasks"), fz_msg_uint(reply, "total", 0), *(const bool *)tree,
                    stdout);
}

static int s_cmd_list(ctl_t *ctl)
{
    uint64_t limit = 0;
    if (ctl->state && !fz_report_state_known(ctl->state))
        return fz_cli_usage_error("--state: '%s' is not a state (one of %s)", ctl->state,
                                  fz_report_states());
    if (ctl->limit && !fz_cli_parse_uint("--limit", ctl->limit, 1, 100000, &limit))
        return FZ_EXIT_USAGE;
    fz_enc_t *req = fz_client_request(ctl->client, "list");
    if (ctl->state)
        fz_enc_str(req, "state", ctl->state);
    if (limit)
        fz_enc_uint(req, "limit", limit);
    fz_enc_bool(req, "tail", true); /* the newest tasks are the ones a person looks for */
    return s_ask(ctl, &req, "tasks", s_print_tasks, &ctl->tree);
}

static void s_print_show(fz_msg_t *reply, const void *lines)
{
    fz_report_task(fz_msg_root(reply), *(const uint64_t *)lines, stdout);
}

static int s_cmd_show(ctl_t *ctl)
{
    uint64_t id, lines = 20;
    if (!s_task_id(ctl->pos[1], &id))
        return FZ_EXIT_USAGE;
    if (ctl->lines && !fz_cli_parse_uint("--lines", ctl->lines, 0, 1000000, &lines))
        return FZ_EXIT_USAGE;
    fz_enc_t *req = fz_client_request(ctl->client, "get");
    fz_enc_uint(req, "task", id);
    return s_ask(ctl, &req, "task", s_print_show, &lines);
}

static int s_cmd_cancel(ctl_t *ctl)
{
    return s_task_request(ctl, "cancel", "cancel requested");
}

static int s_cmd_retry(ctl_t *ctl)
{
    return s_task_request(ctl, "retry", "retry requested");
}

static int s_cmd_workers(ctl_t *ctl)
{
    fz_enc_t *req = fz_client_request(ctl->client, "workers");
    return s_ask(ctl, &req, "workers", s_print_report, &(report_t){fz_report_workers, "workers"});
}

static int s_cmd_pause(ctl_t *ctl)
{
    return s_simple_request(ctl, "pause",
                            "dispatch paused (running tasks go on; "
                            "fz-ctl resume to restart)");
}

static int s_cmd_resume(ctl_t *ctl)
{
    return s_simple_request(ctl, "resume", "dispatch resumed");
}

static void s_print_stop(fz_msg_t *reply, const void *arg)
{
    uint64_t n = fz_msg_uint(reply, "count", 0);
    printf("dispatch paused; %llu running task%s being cancelled (fz-ctl resume to restart)\n",
           (unsigned long long)n, n == 1 ? "" : "s");
}

static int s_cmd_stop(ctl_t *ctl)
{
    fz_enc_t *req = fz_client_request(ctl->client, "stop");
    return s_ask(ctl, &req, "ok", s_print_stop, NULL);
}

static void s_print_priority(fz_msg_t *reply, const void *id)
{
    printf("task %llu: priority %lld\n", (unsigned long long)*(const uint64_t *)id,
           (long long)fz_msg_int(reply, "priority", 0));
}

static int s_cmd_priority(ctl_t *ctl)
{
    uint64_t id;
    int64_t prio;
    if (!s_task_id(ctl->pos[1], &id) ||
        !fz_cli_parse_int("priority", ctl->pos[2], -1000000, 1000000, &prio))
        return FZ_EXIT_USAGE;
    fz_enc_t *req = fz_client_request(ctl->client, "priority");
    fz_enc_uint(req, "task", id);
    fz_enc_int(req, "priority", prio);
    return s_ask(ctl, &req, "ok", s_print_priority, &id);
}

static int s_cmd_escalate(ctl_t *ctl)
{
    return s_task_request(ctl, "escalate", "escalated");
}

static void s_print_purge(fz_msg_t *reply, const void *arg)
{
    printf("%llu ended tasks purged\n", (unsigned long long)fz_msg_uint(reply, "count", 0));
}

static int s_cmd_purge(ctl_t *ctl)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = ctl->before ? strptime(ctl->before, "%Y-%m-%d", &tm) : NULL;
    if (!end || *end)
        return fz_cli_usage_error("purge needs --before YYYY-MM-DD (UTC)");
    fz_enc_t *req = fz_client_request(ctl->client, "purge");
    fz_enc_float(req, "before", (double)timegm(&tm));
    return s_ask(ctl, &req, "ok", s_print_purge, NULL);
}

static int s_cmd_budget(ctl_t *ctl)
{
    double cap = 0;
    if (ctl->set && !fz_cli_parse_double("--set", ctl->set, 0, 1e6, &cap))
        return FZ_EXIT_USAGE;
    fz_enc_t *req = fz_client_request(ctl->client, "budget");
    if (ctl->set)
        fz_enc_float(req, "set", cap);
    return s_ask(ctl, &req, "budget", s_print_report, &(report_t){fz_report_budget, NULL});
}

static void s_print_cost(fz_msg_t *reply, const void *by)
{
    fz_report_cost(fz_msg_root(reply), by, stdout);
}

static int s_cmd_cost(ctl_t *ctl)
{
    const char *by = ctl->by ? ctl->by : "day";
    if (strcmp(by, "day") && strcmp(by, "model") && strcmp(by, "task") && strcmp(by, "worker") &&
        strcmp(by, "label") && strcmp(by, "class"))
        return fz_cli_usage_error("--by: '%s' is not one of day, model, task, worker, label, class",
                                  by);
    if (ctl->since && !fz_cli_valid_date(ctl->since))
        return fz_cli_usage_error("--since: '%s' is not a date (YYYY-MM-DD)", ctl->since);
    if (strcmp(by, "label") == 0 && !ctl->label)
        return fz_cli_usage_error("--by label needs --label KEY (the label to group by)");
    if (ctl->label && (!*ctl->label || strlen(ctl->label) > 64 || strchr(ctl->label, '=')))
        return fz_cli_usage_error("--label: '%s' is not a label key (1..64 bytes, no '=')",
                                  ctl->label);
    fz_enc_t *req = fz_client_request(ctl->client, "cost");
    fz_enc_str(req, "by", by);
    if (ctl->since)
        fz_enc_str(req, "since", ctl->since);
    if (ctl->label)
        fz_enc_str(req, "label", ctl->label);
    return s_ask(ctl, &req, "cost", s_print_cost, by);
}

typedef struct {
    const ctl_t *ctl;
    int64_t start;
} ping_t;

static void s_print_pong(fz_msg_t *reply, const void *arg)
{
    const ping_t *p = arg;
    printf("pong from fz-broker %s at %s (protocol %llu) in %lld ms\n",
           fz_msg_str(reply, "broker", "?", NULL), fz_client_endpoint(p->ctl->client),
           (unsigned long long)fz_msg_uint(reply, "version", 0),
           (long long)(fz_clock_ms() - p->start));
}

static void s_print_backup(fz_msg_t *reply, const void *path)
{
    printf("backup written to %s (%llu bytes)\n", (const char *)path,
           (unsigned long long)fz_msg_uint(reply, "bytes", 0));
}

static int s_cmd_backup(ctl_t *ctl)
{
    char path[4096], cwd[4096];
    const char *file = ctl->pos[1];
    /* The broker writes the file: a relative name would be relative to its folder. */
    int n = file[0] == '/'            ? snprintf(path, sizeof path, "%s", file)
            : getcwd(cwd, sizeof cwd) ? snprintf(path, sizeof path, "%s/%s", cwd, file)
                                      : -1;
    if (n <= 0 || (size_t)n >= sizeof path)
        return fz_cli_usage_error("backup: cannot make '%s' an absolute path", file);
    fz_enc_t *req = fz_client_request(ctl->client, "backup");
    fz_enc_str(req, "path", path);
    return s_ask(ctl, &req, "ok", s_print_backup, path);
}

static int s_cmd_digest(ctl_t *ctl)
{
    char err[512];
    double since = 0;
    if (!fz_digest_parse_since(ctl->since ? ctl->since : "24h", fz_wall(), &since, err, sizeof err))
        return fz_cli_usage_error("%s", err);
    fz_err_t code = FZ_OK;
    json_t *d = fz_digest_build(ctl->client, since, &code, err, sizeof err);
    if (!d) {
        if (fz_net_interrupted())
            return FZ_EXIT_INTERRUPTED;
        fz_cli_error("%s", err);
        return fz_cli_exit_code(code);
    }
    if (ctl->json) {
        json_dumpf(d, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
    } else
        fz_digest_print(d, 15, stdout);
    json_decref(d);
    return FZ_EXIT_OK;
}

static int s_cmd_ping(ctl_t *ctl)
{
    fz_enc_t *req = fz_client_request(ctl->client, "ping");
    ping_t p = {ctl, fz_clock_ms()};
    return s_ask(ctl, &req, "pong", s_print_pong, &p);
}

/* keygen NAME: no broker involved, so main runs it before making a client. */
static int s_keygen(int npos, const char *const *pos)
{
    if (npos != 2)
        return fz_cli_usage_error("'keygen' takes 1 argument (NAME: writes NAME.key, NAME.pub)");
    char err[4400];
    if (fz_curve_keygen(pos[1], err, sizeof err) != 0) {
        fz_cli_error("%s", err);
        return FZ_EXIT_USAGE;
    }
    printf("%s.key (secret: keep it on this host) and %s.pub (public: copy it to the broker's "
           "key folder, or to peers as --broker-key)\n",
           pos[1], pos[1]);
    return FZ_EXIT_OK;
}

static const command_t s_commands[] = {
    {"status", s_cmd_status, 0, ""},     {"list", s_cmd_list, 0, "slt"},
    {"show", s_cmd_show, 1, "n"},        {"cancel", s_cmd_cancel, 1, ""},
    {"workers", s_cmd_workers, 0, ""},   {"pause", s_cmd_pause, 0, ""},
    {"resume", s_cmd_resume, 0, ""},     {"stop", s_cmd_stop, 0, ""},
    {"retry", s_cmd_retry, 1, ""},       {"priority", s_cmd_priority, 2, ""},
    {"escalate", s_cmd_escalate, 1, ""}, {"purge", s_cmd_purge, 0, "P"},
    {"backup", s_cmd_backup, 1, ""},     {"budget", s_cmd_budget, 0, "S"},
    {"cost", s_cmd_cost, 0, "BDL"},      {"digest", s_cmd_digest, 0, "D"},
    {"ping", s_cmd_ping, 0, ""},         {NULL, NULL, 0, NULL}};

/* ---------------------------------------------------------------- arguments */

typedef struct {
    const char *name;
    char id;
    bool has_arg;
    size_t field; /* offset of the value in ctl_t, for options with an argument */
} option_t;

static const option_t s_options[] = {{"json", 'j', false, 0},
                                     {"tree", 't', false, 0},
                                     {"help", 'h', false, 0},
                                     {"version", 'V', false, 0},
                                     {"broker", 'b', true, offsetof(ctl_t, broker)},
                                     {"state", 's', true, offsetof(ctl_t, state)},
                                     {"limit", 'l', true, offsetof(ctl_t, limit)},
                                     {"lines", 'n', true, offsetof(ctl_t, lines)},
                                     {"set", 'S', true, offsetof(ctl_t, set)},
                                     {"by", 'B', true, offsetof(ctl_t, by)},
                                     {"since", 'D', true, offsetof(ctl_t, since)},
                                     {"label", 'L', true, offsetof(ctl_t, label)},
                                     {"before", 'P', true, offsetof(ctl_t, before)},
                                     {NULL, 0, false, 0}};

static const option_t *s_find_option(const char *arg, const char **value)
{
    *value = NULL;
    if (strcmp(arg, "-h") == 0)
        arg = "--help";
    else if (strcmp(arg, "-V") == 0)
        arg = "--version";
    if (strncmp(arg, "--", 2) != 0)
        return NULL;
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    for (const option_t *o = s_options; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
            *value = eq ? eq + 1 : NULL;
            return o;
        }
    return NULL;
}

/* True for an argument that is a number, not an option: "-5". */
static bool s_is_negative_number(const char *arg)
{
    return arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9';
}

/* Fills ctl from argv. Returns -1 to go on, or an exit code (help, version, usage error). */
static int s_parse(ctl_t *ctl, int argc, char **argv)
{
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value;
        if (only_positional || arg[0] != '-' || arg[1] == 0 || s_is_negative_number(arg)) {
            if (ctl->npos == S_MAX_POSITIONAL)
                return fz_cli_usage_error("too many arguments");
            ctl->pos[ctl->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        const option_t *o = s_find_option(arg, &value);
        if (!o)
            return fz_cli_usage_error("unknown option '%s'", arg);
        if (o->id == 'h')
            return s_help();
        if (o->id == 'V')
            return fz_cli_version();
        if (o->id == 'j' || o->id == 't') {
            if (value)
                return fz_cli_usage_error("--%s takes no value", o->name);
            if (o->id == 'j')
                ctl->json = true;
            else
                ctl->tree = true;
            size_t n = strlen(ctl->given);
            if (o->id == 't' && n < sizeof ctl->given - 1 && !strchr(ctl->given, 't'))
                ctl->given[n] = 't';
            continue;
        }
        if (!value && i + 1 >= argc)
            return fz_cli_usage_error("--%s needs a value", o->name);
        *(const char **)((char *)ctl + o->field) = value ? value : argv[++i];
        size_t n = strlen(ctl->given);
        if (n < sizeof ctl->given - 1 && !strchr(ctl->given, o->id))
            ctl->given[n] = o->id;
    }
    return -1;
}

/* Checks the command's arguments and options against its table entry. */
static int s_check(const ctl_t *ctl, const command_t *cmd)
{
    for (const char *g = ctl->given; *g; g++) {
        if (*g == 'b' || strchr(cmd->options, *g))
            continue;
        for (const option_t *o = s_options; o->name; o++)
            if (o->id == *g)
                return fz_cli_usage_error("'%s' does not take --%s", cmd->name, o->name);
    }
    if (ctl->npos - 1 < cmd->args)
        return fz_cli_usage_error("'%s' needs %d argument%s", cmd->name, cmd->args,
                                  cmd->args == 1 ? " (a task id)" : "s (ID N)");
    if (ctl->npos - 1 > cmd->args)
        return fz_cli_usage_error("'%s' takes %d argument%s, got '%s' too", cmd->name, cmd->args,
                                  cmd->args == 1 ? "" : "s", ctl->pos[cmd->args + 1]);
    return -1;
}

int main(int argc, char **argv)
{
    fz_cli_init("fz-ctl");
    if (fz_cli_curve(&argc, argv) != 0)
        return FZ_EXIT_USAGE;
    ctl_t ctl = {0};
    int code = s_parse(&ctl, argc, argv);
    if (code >= 0)
        return code;
    if (ctl.npos == 0)
        return fz_cli_usage_error("missing COMMAND");
    if (strcmp(ctl.pos[0], "help") == 0)
        return s_help();
    if (strcmp(ctl.pos[0], "keygen") == 0)
        return s_keygen(ctl.npos, ctl.pos);
    const command_t *cmd = s_commands;
    while (cmd->name && strcmp(cmd->name, ctl.pos[0]) != 0)
        cmd++;
    if (!cmd->name)
        return fz_cli_usage_error("unknown command '%s'", ctl.pos[0]);
    if ((code = s_check(&ctl, cmd)) >= 0)
        return code;
    const char *endpoint = fz_endpoint(ctl.broker, "FZ_BROKER", FZ_DEFAULT_BROKER);
    ctl.client = fz_client_new(endpoint, S_TIMEOUT_MS);
    if (!ctl.client)
        return fz_cli_usage_error("cannot use broker endpoint '%s' (expected e.g. %s)", endpoint,
                                  FZ_DEFAULT_BROKER);
    code = cmd->fn(&ctl);
    fz_client_destroy(&ctl.client);
    return code;
}
