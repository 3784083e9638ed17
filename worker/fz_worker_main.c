/*  fz-worker: command line front of fz_slot. */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_agent.h"
#include "fz_curve.h"
#include "fz_keeper.h"
#include "fz_net.h"
#include "fz_slot.h"

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: fz-worker --agent 'COMMAND TEMPLATE' [OPTIONS]\n"
            "       fz-worker --dry-run [OPTIONS]\n"
            "\n"
            "One fz worker slot: runs one agent at a time for the broker.\n"
            "\n"
            "The agent runs as /bin/sh -c COMMAND in its own process group, in the folder\n"
            "WORKDIR/TASK_ID, with the prompt on stdin and in $FZ_PROMPT, and with FZ_TASK_ID,\n"
            "FZ_ATTEMPT, FZ_MODEL, FZ_BROKER, FZ_EVENTS, FZ_WORKER, FZ_WORKDIR and FZ_REPORT set.\n"
            "For a task with a repo it runs in the attempt's own git worktree instead (its\n"
            "path is FZ_WORKDIR and {workdir}), with FZ_WORKTREE, FZ_BRANCH and FZ_BASE set.\n"
            "In the template, {model} {task} {attempt} {workdir} expand (shell-quoted).\n"
            "The agent reports cost and progress by appending lines to $FZ_REPORT (see README).\n"
            "\n"
            "Options:\n"
            "  --broker EP          broker endpoint (default $FZ_BROKER or " FZ_DEFAULT_BROKER ")\n"
            "  --curve-secret FILE  this worker's secret key (default $FZ_CURVE_SECRET)\n"
            "  --broker-key FILE    the broker's public key (default $FZ_BROKER_KEY): both\n"
            "                       or neither (CURVE off: loopback and ipc)\n"
            "  --events EP          event endpoint given to agents (default $FZ_EVENTS or\n"
            "                       " FZ_DEFAULT_EVENTS ")\n"
            "  --agent CMD          the agent command template (required unless --dry-run)\n"
            "  --models a,b         models this worker serves (default: any)\n"
            "  --name NAME          worker name, unique per broker (default HOST-PID)\n"
            "  --labels k=v,...     labels announced to the broker\n"
            "  --workdir DIR        root of per-task folders (default $FZ_STATE/work/NAME)\n"
            "  --cache-dir DIR      repositories' caches (URL mirrors) and the attempts'\n"
            "                       worktrees, for tasks with a repo (default WORKDIR/.fz-cache);\n"
            "                       worktrees this worker left behind are removed at start\n"
            "  --heartbeat MS       heartbeat until the broker sets one (default 1000)\n"
            "  --dry-run            simulate agents without starting processes; task labels\n"
            "                       dry.duration, dry.cost, dry.exit, dry.fail-attempts,\n"
            "                       dry.tokens-in, dry.tokens-out override the flags below;\n"
            "                       dry.tokens-cache-read, dry.tokens-cache-write add cache\n"
            "                       tokens, dry.silent-after S stops all signs of life after\n"
            "                       S seconds (for stall limits), and dry.class NAME,\n"
            "                       dry.reset-at EPOCH, dry.retry-after S are reported when\n"
            "                       the run fails (a simulated rate limit, bad key...)\n"
            "  --dry-duration S     simulated duration (default 1)\n"
            "  --dry-cost USD       simulated cost (default 0.01)\n"
            "  --dry-exit N         simulated exit status (default 0)\n"
            "  --pass-env NAME,...  variables of the worker's environment the agent gets too\n"
            "                       (repeatable; NAME* is a prefix, '*' everything). Without\n"
            "                       it an agent gets only PATH, HOME, USER, LOGNAME, SHELL,\n"
            "                       LANG, LANGUAGE, LC_*, TERM, TZ, TMPDIR, the FZ_ variables\n"
            "                       of its task and those the adapters read (FZ_AGENTS_PREFIX,\n"
            "                       FZ_CLAUDE, FZ_CODEX, FZ_GEMINI, FZ_OPENCLAW, FZ_AGENT_*,\n"
            "                       FZ_PRICES, FZ_PRICE_DEFAULT, FZ_DRY_*, FZ_LOG): an API key\n"
            "                       must be named, e.g. --pass-env ANTHROPIC_API_KEY\n"
            "  --agent-key FILE     a client secret key that every agent gets (FZ_CURVE_SECRET,\n"
            "                       with FZ_BROKER_KEY), so that with CURVE on it can submit\n"
            "                       subtasks under a client key of its own; never the worker's\n"
            "  --once               take one task, run it, wait until the broker has its\n"
            "                       result, and exit 0 (for batch systems: a Slurm job array)\n"
            "  --idle-exit S        exit 0 after S seconds without a task (autoscalers)\n"
            "  --prefetch           take the next task while one runs, and start it the moment\n"
            "                       that one ends (short commands: no wait for the broker).\n"
            "                       The held task counts as running; a hello or a stop gives\n"
            "                       it back without using a retry\n"
            "  -v, --verbose        debug logging\n"
            "  -h, --help           this help\n"
            "  -V, --version        print the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop the running agent (SIGTERM, then SIGKILL after the\n"
            "grace), report it as interrupted (the broker requeues the task) and exit; a second\n"
            "signal exits at once (the agent is killed). SIGUSR1 drains: the worker takes no more\n"
            "tasks, lets the running agent finish, reports it and exits (for upgrades).\n"
            "\n"
            "Exit status: 0 after a signal, after --once's task (whatever its outcome: the\n"
            "broker has it) or after --idle-exit; 1 runtime error, 2 bad usage.\n");
}

/* Checks a comma-separated list (models, or k=v labels) against the protocol's limits, so
   that the hello is never refused; false after saying why. */
static bool s_check_list(const char *flag, const char *list, size_t max_items, bool pairs)
{
    if (!list || !*list)
        return true;
    char copy[4096];
    if (strlen(list) >= sizeof copy || !fz_utf8_valid(list, strlen(list))) {
        fprintf(stderr, "fz-worker: %s: too long or not UTF-8\n", flag);
        return false;
    }
    strcpy(copy, list);
    size_t n = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = pairs ? strchr(item, '=') : NULL;
        size_t klen = eq ? (size_t)(eq - item) : strlen(item);
        bool ok = ++n <= max_items && klen > 0 && klen <= 64 && (!pairs || eq) &&
                  (!eq || strlen(eq + 1) <= 1024);
        if (!ok) {
            fprintf(stderr, "fz-worker: %s: '%s': %s\n", flag, item,
                    n > max_items ? "too many entries"
                    : pairs       ? "expected KEY=VALUE (key 1-64 bytes, value up to 1 KiB)"
                                  : "a name is 1 to 64 bytes");
            return false;
        }
    }
    return true;
}

enum {
    OPT_BROKER = 256,
    OPT_EVENTS,
    OPT_AGENT,
    OPT_MODELS,
    OPT_NAME,
    OPT_LABELS,
    OPT_WORKDIR,
    OPT_HB,
    OPT_DRY,
    OPT_DRYDUR,
    OPT_DRYCOST,
    OPT_DRYEXIT,
    OPT_CACHE,
    OPT_PASS_ENV,
    OPT_ONCE,
    OPT_PREFETCH,
    OPT_IDLE_EXIT,
    OPT_AGENT_KEY
};

/* --pass-env names, copied out of their comma-separated arguments. */
#define S_MAX_PASS 64
typedef struct {
    char names[S_MAX_PASS][65];
    const char *list[S_MAX_PASS + 1]; /* NULL-terminated, into names */
    size_t n;
} s_pass_t;

/* Adds the names of one --pass-env argument; 0, or 2 after saying why. */
static int s_pass_env(s_pass_t *pass, const char *arg)
{
    const char *p = arg;
    while (*p) {
        size_t len = strcspn(p, ",");
        size_t word = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
        bool star = word < len && p[word] == '*' && word + 1 == len;
        if (len == 0 || len > 64 || (word != len && !star) || (word && p[0] >= '0' && p[0] <= '9'))
            return fz_bad_flag("fz-worker", "--pass-env", arg,
                               "expected variable names (NAME or PREFIX*), comma-separated");
        if (pass->n == S_MAX_PASS)
            return fz_bad_flag("fz-worker", "--pass-env", arg, "more than 64 names");
        snprintf(pass->names[pass->n], sizeof pass->names[0], "%.*s", (int)len, p);
        pass->list[pass->n] = pass->names[pass->n];
        pass->n++;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int s_parse(int argc, char **argv, fz_slot_config_t *cfg, s_pass_t *pass, bool *verbose)
{
    static const struct option opts[] = {{"broker", 1, 0, OPT_BROKER},
                                         {"events", 1, 0, OPT_EVENTS},
                                         {"agent", 1, 0, OPT_AGENT},
                                         {"models", 1, 0, OPT_MODELS},
                                         {"name", 1, 0, OPT_NAME},
                                         {"labels", 1, 0, OPT_LABELS},
                                         {"workdir", 1, 0, OPT_WORKDIR},
                                         {"heartbeat", 1, 0, OPT_HB},
                                         {"dry-run", 0, 0, OPT_DRY},
                                         {"dry-duration", 1, 0, OPT_DRYDUR},
                                         {"dry-cost", 1, 0, OPT_DRYCOST},
                                         {"dry-exit", 1, 0, OPT_DRYEXIT},
                                         {"cache-dir", 1, 0, OPT_CACHE},
                                         {"pass-env", 1, 0, OPT_PASS_ENV},
                                         {"once", 0, 0, OPT_ONCE},
                                         {"prefetch", 0, 0, OPT_PREFETCH},
                                         {"idle-exit", 1, 0, OPT_IDLE_EXIT},
                                         {"agent-key", 1, 0, OPT_AGENT_KEY},
                                         {"verbose", 0, 0, 'v'},
                                         {"help", 0, 0, 'h'},
                                         {"version", 0, 0, 'V'},
                                         {0, 0, 0, 0}};
    int c;
    uint64_t u;
    int64_t i;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":vhV", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BROKER:
            cfg->broker = optarg;
            break;
        case OPT_EVENTS:
            cfg->events = optarg;
            break;
        case OPT_AGENT:
            cfg->agent = optarg;
            break;
        case OPT_MODELS:
            cfg->models = optarg;
            break;
        case OPT_LABELS:
            cfg->labels = optarg;
            break;
        case OPT_WORKDIR:
            cfg->workroot = optarg;
            break;
        case OPT_CACHE:
            cfg->cache_dir = optarg;
            break;
        case OPT_DRY:
            cfg->dry_run = true;
            break;
        case OPT_NAME:
            if (!*optarg || strlen(optarg) > 64 || !fz_utf8_valid(optarg, strlen(optarg)))
                return fz_bad_flag("fz-worker", "--name", optarg, "expected 1 to 64 bytes of text");
            cfg->name = optarg;
            break;
        case OPT_HB:
            if (!fz_parse_uint(optarg, 3600000, &u) || u < 10)
                return fz_bad_flag("fz-worker", "--heartbeat", optarg,
                                   "expected milliseconds, at least 10");
            cfg->heartbeat_ms = (uint32_t)u;
            break;
        case OPT_DRYDUR:
        case OPT_DRYCOST:
            if (!fz_parse_double(optarg, 0, 1e7,
                                 c == OPT_DRYDUR ? &cfg->dry_duration : &cfg->dry_cost))
                return fz_bad_value("fz-worker", opts, c, optarg, "expected a number, 0 or more");
            break;
        case OPT_DRYEXIT:
            if (!fz_parse_int(optarg, 0, 255, &i))
                return fz_bad_flag("fz-worker", "--dry-exit", optarg, "expected 0 to 255");
            cfg->dry_exit = (int)i;
            break;
        case OPT_PASS_ENV:
            if (s_pass_env(pass, optarg))
                return 2;
            cfg->pass_env = pass->list;
            break;
        case OPT_ONCE:
            cfg->once = true;
            break;
        case OPT_PREFETCH:
            cfg->prefetch = true;
            break;
        case OPT_AGENT_KEY:
            cfg->agent_key = optarg;
            break;
        case OPT_IDLE_EXIT:
            if (!fz_parse_uint(optarg, 31536000, &u) || u == 0)
                return fz_bad_flag("fz-worker", "--idle-exit", optarg,
                                   "expected seconds, at least 1");
            cfg->idle_exit_s = (uint32_t)u;
            break;
        case 'v':
            *verbose = true;
            break;
        case 'h':
            s_usage(stdout);
            exit(0);
        case 'V':
            printf("fz-worker " FZ_VERSION "\n");
            exit(0);
        default:
            return fz_bad_option("fz-worker", c, argv);
        }
    }
    if (fz_no_more_args("fz-worker", argc, argv))
        return 2;
    if (!s_check_list("--models", cfg->models, 16, false) ||
        !s_check_list("--labels", cfg->labels, 32, true))
        return 2;
    if (cfg->prefetch && cfg->once) {
        fprintf(stderr, "fz-worker: --prefetch and --once do not go together (--once takes "
                        "one task)\n");
        return 2;
    }
    if (!cfg->dry_run && (!cfg->agent || !*cfg->agent)) {
        fprintf(stderr, "fz-worker: --agent 'COMMAND' is required (or --dry-run)\n");
        return 2;
    }
    return 0;
}

/* Agents run in their task's work folder, so a relative program path in the template would
   not be found there: the program (the first word after any VAR=value assignments) is made
   absolute here, and a path that does not name an executable is refused at start. Returns
   the template to use (malloc'd) or NULL after printing why. */
static char *s_resolve_agent(const char *tmpl)
{
    const char *p = tmpl;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, " \t");
        const char *eq = memchr(p, '=', len);
        bool assignment = eq && eq > p &&
                          strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
                                    "rstuvwxyz0123456789_") == (size_t)(eq - p);
        if (!assignment)
            break;
        p += len;
    }
    size_t len = strcspn(p, " \t");
    char prog[4096];
    if (len == 0 || len >= sizeof prog || !memchr(p, '/', len) || strchr("'\"$`~", *p))
        return strdup(tmpl); /* a command from PATH, or shell syntax: left to the shell */
    memcpy(prog, p, len);
    prog[len] = 0;
    char abs[PATH_MAX];
    if (!realpath(prog, abs) || access(abs, X_OK) != 0) {
        fprintf(stderr, "fz-worker: --agent: '%s' is not an executable file (%s)\n", prog,
                strerror(errno ? errno : EACCES));
        return NULL;
    }
    size_t head = (size_t)(p - tmpl), total = head + strlen(abs) + strlen(p + len) + 1;
    char *out = malloc(total);
    if (out)
        snprintf(out, total, "%.*s%s%s", (int)head, tmpl, abs, p + len);
    return out;
}

/* --agent-key: needs the worker's own CURVE keys (it names the broker's key for the
   agents), must be a readable secret key file, and is made absolute (agents run in their
   task's folder). 0, or -1 after printing why. */
static int s_check_agent_key(fz_slot_config_t *cfg, char abs[PATH_MAX])
{
    char pub[FZ_CURVE_KEY], sec[FZ_CURVE_KEY], err[4200];
    if (!fz_curve_client_on()) {
        fprintf(stderr, "fz-worker: --agent-key needs CURVE on: --curve-secret and --broker-key "
                        "(or FZ_CURVE_SECRET and FZ_BROKER_KEY)\n");
        return -1;
    }
    if (fz_curve_load_secret(cfg->agent_key, pub, sec, err, sizeof err) != 0) {
        fprintf(stderr, "fz-worker: --agent-key: %s\n", err);
        return -1;
    }
    if (!realpath(cfg->agent_key, abs)) {
        fprintf(stderr, "fz-worker: --agent-key %s: %s\n", cfg->agent_key, strerror(errno));
        return -1;
    }
    cfg->agent_key = abs;
    cfg->agent_broker_key = fz_curve_client_broker_key();
    return 0;
}

/* The keeper spawner (fz_keeper.h), fz-keeper beside this program: without it every keeper
   is a fork of this process, which works the same and costs more per attempt. */
static void s_start_spawner(void)
{
    char self[PATH_MAX], path[PATH_MAX + 16], err[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *slash = n > 0 ? memrchr(self, '/', (size_t)n) : NULL;
    if (!slash) {
        fz_warn("cannot find this program's folder: keepers are forked by the worker");
        return;
    }
    snprintf(path, sizeof path, "%.*s/fz-keeper", (int)(slash - self), self);
    if (access(path, X_OK) != 0)
        fz_warn("%s not found (%s): keepers are forked by the worker", path, strerror(errno));
    else if (fz_keeper_spawner_start(path, err, sizeof err) < 0)
        fz_warn("%s; keepers are forked by the worker", err);
}

int main(int argc, char **argv)
{
    fz_slot_config_t cfg = {0};
    cfg.dry_duration = 1.0;
    cfg.dry_cost = 0.01;
    bool verbose = false;
    char keyerr[4400];
    if (fz_curve_client_args(&argc, argv, keyerr, sizeof keyerr) != 0) {
        fprintf(stderr, "fz-worker: %s\n", keyerr);
        return 2;
    }
    static s_pass_t pass; /* outlives the slot, which borrows it */
    int rc = s_parse(argc, argv, &cfg, &pass, &verbose);
    if (rc)
        return rc;
    cfg.broker = fz_endpoint(cfg.broker, "FZ_BROKER", FZ_DEFAULT_BROKER);
    cfg.events = fz_endpoint(cfg.events, "FZ_EVENTS", FZ_DEFAULT_EVENTS);
    char name[80], workroot[4096];
    if (!cfg.name) {
        char host[64] = "worker";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        snprintf(name, sizeof name, "%.40s-%d", host, (int)getpid());
        cfg.name = name;
    }
    if (!cfg.workroot) {
        const char *state = getenv("FZ_STATE");
        snprintf(workroot, sizeof workroot, "%s/work/%s", state && *state ? state : "state",
                 cfg.name);
        cfg.workroot = workroot;
    }
    char agent_key[PATH_MAX];
    if (cfg.agent_key && s_check_agent_key(&cfg, agent_key))
        return 2;
    char *agent = cfg.dry_run ? NULL : s_resolve_agent(cfg.agent);
    if (!cfg.dry_run && !agent)
        return 2;
    if (agent)
        cfg.agent = agent;
    fz_log_init("fz-worker", verbose ? FZ_LOG_DEBUG : FZ_LOG_INFO);
    long nofile = fz_raise_nofile();
    if (nofile >= 0 && nofile < 4096)
        fz_warn("only %ld open files allowed (ulimit -n): each peer takes one; raise the hard "
                "limit (LimitNOFILE= in a systemd unit)",
                nofile);
    fz_net_init();
    if (!cfg.dry_run && fz_agent_init_subreaper() < 0)
        fz_warn("cannot become a child subreaper: agents that call setsid may outlive a kill");
    char err[512];
    if (!cfg.dry_run)
        s_start_spawner();
    fz_slot_t *slot = fz_slot_new(&cfg, err, sizeof err);
    if (!slot) {
        fprintf(stderr, "fz-worker: %s\n", err);
        fz_keeper_shutdown();
        free(agent);
        return 1;
    }
    fz_info("worker %s (%s) serving %s", cfg.name, cfg.dry_run ? "dry-run" : cfg.agent,
            cfg.models && *cfg.models ? cfg.models : "any model");
    rc = fz_slot_run(slot);
    fz_slot_destroy(&slot);
    fz_keeper_shutdown();
    free(agent);
    return rc;
}
