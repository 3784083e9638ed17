/*  fz-broker: command line front of fz_broker. */

#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_broker.h"
#include "fz_curve.h"
#include "fz_keydir.h"
#include "fz_net.h"
#include "fz_peers.h"
#include "fz_store.h"

static void s_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: fz-broker [OPTIONS]\n"
        "\n"
        "The fz broker: durable priority queue, budget and dispatcher of agent tasks.\n"
        "\n"
        "Options:\n"
        "  --bind EP              ROUTER endpoint for clients and workers\n"
        "                         (default $FZ_BROKER or " FZ_DEFAULT_BROKER ")\n"
        "  --events EP            PUB endpoint for events (default $FZ_EVENTS or " FZ_DEFAULT_EVENTS
        ")\n"
        "  --db PATH              SQLite database (default $FZ_STATE/fz.db, FZ_STATE=./state)\n"
        "  --max-running N        agents running at once, all workers together (default 3)\n"
        "  --daily-budget USD     spending cap per UTC day (default 20; `fz-ctl budget --set`\n"
        "                         stores a cap that then wins over this flag)\n"
        "  --default-task-cost USD  budget reservation of a task without --max-cost (default 0.5)\n"
        "  --default-timeout S    timeout of a task without --timeout (default 3600)\n"
        "  --kill-grace S         seconds between SIGTERM and SIGKILL of an agent (default 10)\n"
        "  --heartbeat MS         heartbeat interval; a peer is dead after 3 (default 1000)\n"
        "  --retries N            retries of a task without --retries (default 0)\n"
        "  --backoff-min MS       first retry delay (default 1000), doubling per failure\n"
        "  --backoff-max MS       longest retry delay (default 60000)\n"
        "  --models a,b,c         model whitelist (default: any model)\n"
        "  --model-cap NAME=N     at most N running agents of model NAME (repeatable)\n"
        "  --sync full|normal     SQLite synchronous mode (default full: survives power loss)\n"
        "  --max-depth N          depth limit of subtask trees, a root is 1 (default 5)\n"
        "  --max-children N       subtasks per task (default 100)\n"
        "  --aging S              +1 effective priority per S seconds queued (default 0: off)\n"
        "  --deadline-horizon S   a task's deadline starts raising its priority S seconds\n"
        "                         before it: +100 at the deadline, +1/minute late (default 3600)\n"
        "  --stall S              an attempt without output, report line or progress for S\n"
        "                         seconds is announced as stalled (default 600; 0 off)\n"
        "  --stall-kill S         ... and stopped as stalled, and retried, after S seconds\n"
        "                         (default 0: never; a task's --stall-kill wins)\n"
        "  --integrity-check      check the store at start with SQLite's full integrity_check\n"
        "                         (every index against its table; slower on a big store)\n"
        "                         instead of quick_check; damage refuses the start (exit 1)\n"
        "  --recover              do not start: rebuild what SQLite can read of a damaged\n"
        "                         --db into a new file (with the sqlite3 tool's .recover),\n"
        "                         check it, keep the damaged one as DB.damaged-TIME and put\n"
        "                         the rebuilt one in its place (exit 0; 1 if it failed)\n"
        "  --key-ttl S            a submit's idempotency key is remembered S seconds\n"
        "                         (default 86400: a retry within a day finds its tasks)\n"
        "  --curve-secret FILE    the broker's secret key (fz-ctl keygen): CURVE on both\n"
        "                         sockets, every peer needs a known key (with --keys)\n"
        "  --keys DIR             known public keys: DIR/clients, DIR/workers, DIR/admins\n"
        "                         (the folder gives the role; read again at each connection)\n"
        "  --max-peers N          connections at most (clients, workers, subscribers); more\n"
        "                         are closed as they come (default: the open-files limit,\n"
        "                         raised to its hard limit at start, less 64)\n"
        "  -v, --verbose          log every message\n"
        "  -h, --help             this help\n"
        "  -V, --version          print the version\n"
        "\n"
        "Exit status: 0 stopped by SIGTERM/SIGINT, 1 runtime error (endpoint in use,\n"
        "database unusable, an fdatasync of the store failed), 2 bad usage (a key file or\n"
        "key folder that cannot be used too).\n");
}

static int s_model_cap(fz_broker_config_t *cfg, const char *arg)
{
    const char *eq = strchr(arg, '=');
    uint64_t n;
    if (!eq || eq == arg || eq - arg > 64 || !fz_parse_uint(eq + 1, 100000, &n))
        return fz_bad_flag("fz-broker", "--model-cap", arg, "expected NAME=N");
    if (cfg->nmodel_caps == FZ_MAX_MODEL_CAPS)
        return fz_bad_flag("fz-broker", "--model-cap", arg, "too many model caps");
    snprintf(cfg->model_caps[cfg->nmodel_caps].name, 65, "%.*s", (int)(eq - arg), arg);
    cfg->model_caps[cfg->nmodel_caps++].cap = (uint32_t)n;
    return 0;
}

/* --curve-secret and --keys go together, and both must be usable: a bad key is bad usage. */
static int s_check_curve(const fz_broker_config_t *cfg)
{
    if (!cfg->curve_secret && !cfg->keys_dir)
        return 0;
    if (!cfg->curve_secret || !cfg->keys_dir)
        return fz_bad_flag("fz-broker", cfg->keys_dir ? "--keys" : "--curve-secret",
                           cfg->keys_dir ? cfg->keys_dir : cfg->curve_secret,
                           cfg->keys_dir ? "needs --curve-secret FILE too"
                                         : "needs --keys DIR too");
    char pub[FZ_CURVE_KEY], sec[FZ_CURVE_KEY], err[4400];
    if (fz_curve_load_secret(cfg->curve_secret, pub, sec, err, sizeof err))
        return fz_bad_flag("fz-broker", "--curve-secret", cfg->curve_secret, err);
    fz_keydir_t *kd = fz_keydir_load(cfg->keys_dir, false, err, sizeof err);
    if (!kd)
        return fz_bad_flag("fz-broker", "--keys", cfg->keys_dir, err);
    fz_keydir_destroy(&kd);
    return 0;
}

enum {
    OPT_BIND = 256,
    OPT_EVENTS,
    OPT_DB,
    OPT_MAXRUN,
    OPT_BUDGET,
    OPT_TASKCOST,
    OPT_TIMEOUT,
    OPT_GRACE,
    OPT_HB,
    OPT_RETRIES,
    OPT_BMIN,
    OPT_BMAX,
    OPT_MODELS,
    OPT_MODELCAP,
    OPT_SYNC,
    OPT_DEPTH,
    OPT_CHILDREN,
    OPT_AGING,
    OPT_HORIZON,
    OPT_STALL,
    OPT_STALL_KILL,
    OPT_KEY_TTL,
    OPT_INTEGRITY,
    OPT_RECOVER,
    OPT_CURVE_SECRET,
    OPT_KEYS,
    OPT_MAX_PEERS
};

static int s_parse(int argc, char **argv, fz_broker_config_t *cfg, bool *verbose, bool *recover,
                   long *max_peers)
{
    static const struct option opts[] = {{"bind", 1, 0, OPT_BIND},
                                         {"events", 1, 0, OPT_EVENTS},
                                         {"db", 1, 0, OPT_DB},
                                         {"max-running", 1, 0, OPT_MAXRUN},
                                         {"daily-budget", 1, 0, OPT_BUDGET},
                                         {"default-task-cost", 1, 0, OPT_TASKCOST},
                                         {"default-timeout", 1, 0, OPT_TIMEOUT},
                                         {"kill-grace", 1, 0, OPT_GRACE},
                                         {"heartbeat", 1, 0, OPT_HB},
                                         {"retries", 1, 0, OPT_RETRIES},
                                         {"backoff-min", 1, 0, OPT_BMIN},
                                         {"backoff-max", 1, 0, OPT_BMAX},
                                         {"models", 1, 0, OPT_MODELS},
                                         {"model-cap", 1, 0, OPT_MODELCAP},
                                         {"sync", 1, 0, OPT_SYNC},
                                         {"max-depth", 1, 0, OPT_DEPTH},
                                         {"max-children", 1, 0, OPT_CHILDREN},
                                         {"aging", 1, 0, OPT_AGING},
                                         {"deadline-horizon", 1, 0, OPT_HORIZON},
                                         {"stall", 1, 0, OPT_STALL},
                                         {"stall-kill", 1, 0, OPT_STALL_KILL},
                                         {"key-ttl", 1, 0, OPT_KEY_TTL},
                                         {"integrity-check", 0, 0, OPT_INTEGRITY},
                                         {"recover", 0, 0, OPT_RECOVER},
                                         {"curve-secret", 1, 0, OPT_CURVE_SECRET},
                                         {"keys", 1, 0, OPT_KEYS},
                                         {"max-peers", 1, 0, OPT_MAX_PEERS},
                                         {"verbose", 0, 0, 'v'},
                                         {"help", 0, 0, 'h'},
                                         {"version", 0, 0, 'V'},
                                         {0, 0, 0, 0}};
    int c;
    uint64_t u;
    double d;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":vhV", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BIND:
            cfg->bind = optarg;
            break;
        case OPT_EVENTS:
            cfg->events = optarg;
            break;
        case OPT_DB:
            cfg->db = optarg;
            break;
        case OPT_MODELS:
            cfg->models = optarg;
            break;
        case OPT_CURVE_SECRET:
            cfg->curve_secret = optarg;
            break;
        case OPT_KEYS:
            cfg->keys_dir = optarg;
            break;
        case OPT_MAX_PEERS:
            if (!fz_parse_uint(optarg, 100000000, &u) || u == 0)
                return fz_bad_value("fz-broker", opts, c, optarg,
                                    "expected a positive whole number");
            *max_peers = (long)u;
            break;
        case OPT_MODELCAP:
            if (s_model_cap(cfg, optarg))
                return 2;
            break;
        case OPT_SYNC:
            if (strcmp(optarg, "full") && strcmp(optarg, "normal"))
                return fz_bad_flag("fz-broker", "--sync", optarg, "expected full or normal");
            cfg->sync_full = strcmp(optarg, "full") == 0;
            break;
        case OPT_MAXRUN:
        case OPT_TIMEOUT:
        case OPT_GRACE:
        case OPT_HB:
        case OPT_RETRIES:
        case OPT_BMIN:
        case OPT_BMAX:
        case OPT_STALL:
        case OPT_STALL_KILL:
        case OPT_KEY_TTL:
            if (!fz_parse_uint(optarg, c == OPT_HB ? 3600000 : 100000000, &u) ||
                (u == 0 && (c == OPT_MAXRUN || c == OPT_HB || c == OPT_KEY_TTL)))
                return fz_bad_value("fz-broker", opts, c, optarg,
                                    "expected a positive whole number");
            if (c == OPT_MAXRUN)
                cfg->max_running = (uint32_t)u;
            if (c == OPT_TIMEOUT)
                cfg->default_timeout = (uint32_t)u;
            if (c == OPT_GRACE)
                cfg->kill_grace = (uint32_t)u;
            if (c == OPT_HB)
                cfg->heartbeat_ms = (uint32_t)(u < 10 ? 10 : u);
            if (c == OPT_RETRIES)
                cfg->default_retries = (uint32_t)u;
            if (c == OPT_BMIN)
                cfg->backoff_min_ms = (uint32_t)u;
            if (c == OPT_BMAX)
                cfg->backoff_max_ms = (uint32_t)u;
            if (c == OPT_STALL)
                cfg->stall_s = (uint32_t)u;
            if (c == OPT_STALL_KILL)
                cfg->stall_kill_s = (uint32_t)u;
            if (c == OPT_KEY_TTL)
                cfg->key_ttl_s = (uint32_t)u;
            break;
        case OPT_DEPTH:
        case OPT_CHILDREN:
            if (!fz_parse_uint(optarg, 1000000, &u) || u == 0)
                return fz_bad_value("fz-broker", opts, c, optarg,
                                    "expected a positive whole number");
            if (c == OPT_DEPTH)
                cfg->max_depth = (uint32_t)u;
            else
                cfg->max_children = (uint32_t)u;
            break;
        case OPT_AGING:
        case OPT_HORIZON:
            if (!fz_parse_double(optarg, 0, 1e9, &d) || (c == OPT_HORIZON && d <= 0))
                return fz_bad_value("fz-broker", opts, c, optarg, "expected seconds");
            if (c == OPT_AGING)
                cfg->aging_s = d;
            else
                cfg->deadline_horizon = d;
            break;
        case OPT_BUDGET:
        case OPT_TASKCOST:
            if (!fz_parse_double(optarg, 0, 1e9, &d))
                return fz_bad_value("fz-broker", opts, c, optarg, "expected an amount in USD");
            if (c == OPT_BUDGET)
                cfg->daily_budget = d;
            else
                cfg->default_task_cost = d;
            break;
        case OPT_INTEGRITY:
            cfg->integrity_check = true;
            break;
        case OPT_RECOVER:
            *recover = true;
            break;
        case 'v':
            *verbose = true;
            break;
        case 'h':
            s_usage(stdout);
            exit(0);
        case 'V':
            printf("fz-broker " FZ_VERSION "\n");
            exit(0);
        default:
            return fz_bad_option("fz-broker", c, argv);
        }
    }
    if (fz_no_more_args("fz-broker", argc, argv))
        return 2;
    return s_check_curve(cfg);
}

/* Bounds the connections (fz_peers) below what the open-files limit allows. */
static void s_bound_peers(long asked, long nofile)
{
    long bound = fz_peers_init(asked, nofile < 0 ? 1024 : nofile);
    if (bound < 0)
        fz_warn("cannot bound connections: out of memory");
    else if (asked > bound)
        fz_warn("--max-peers %ld is more than %ld open files allow: at most %ld connections", asked,
                nofile, bound);
    else
        fz_info("at most %ld connections", bound);
}

int main(int argc, char **argv)
{
    fz_broker_config_t cfg;
    fz_broker_config_defaults(&cfg);
    cfg.bind = fz_endpoint(NULL, "FZ_BROKER", FZ_DEFAULT_BROKER);
    cfg.events = fz_endpoint(NULL, "FZ_EVENTS", FZ_DEFAULT_EVENTS);
    bool verbose = false, recover = false;
    long max_peers = 0;
    int rc = s_parse(argc, argv, &cfg, &verbose, &recover, &max_peers);
    if (rc)
        return rc;
    fz_log_init("fz-broker", verbose ? FZ_LOG_DEBUG : FZ_LOG_INFO);
    long nofile = fz_raise_nofile();
    if (nofile >= 0 && nofile < 4096)
        fz_warn("only %ld open files allowed (ulimit -n): each peer takes one; raise the hard "
                "limit (LimitNOFILE= in a systemd unit)",
                nofile);
    s_bound_peers(max_peers, nofile);
    char dbpath[4096];
    if (!cfg.db) {
        const char *state = getenv("FZ_STATE");
        state = state && *state ? state : "state";
        if (fz_mkdirs(state, 0755) < 0) {
            fprintf(stderr, "fz-broker: cannot create state folder %s\n", state);
            return 1;
        }
        snprintf(dbpath, sizeof dbpath, "%s/fz.db", state);
        cfg.db = dbpath;
    }
    char err[512];
    if (recover) {
        char report[1024] = "";
        if (fz_store_recover(cfg.db, report, sizeof report, err, sizeof err) < 0) {
            fprintf(stderr, "fz-broker: recovery of %s failed: %s\n", cfg.db, err);
            return 1;
        }
        printf("fz-broker: %s\n", report);
        return 0;
    }
    fz_net_init();
    /* libzmq's I/O thread as SCHED_BATCH (no wake-up preemption): each message a turn sends
       wakes it, and on the loop's own core it preempted the loop once per message, before the
       next one was queued. Now it runs when the loop sleeps (or on another core) and writes
       what the turn queued in one pass. CZMQ allows this only before the first socket. */
    zsys_set_thread_sched_policy(SCHED_BATCH);
    fz_broker_t *broker = fz_broker_new(&cfg, err, sizeof err);
    if (!broker) {
        fprintf(stderr, "fz-broker: %s\n", err);
        return 1;
    }
    rc = fz_broker_run(broker);
    fz_broker_destroy(&broker);
    return rc;
}
