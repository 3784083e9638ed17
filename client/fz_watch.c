/*  fz-watch: print the broker's events as they happen, one line each, for people or (--json)
    for programs.

    Events are numbered by the broker (seq); a jump means this subscriber missed some (PUB/SUB
    drops under pressure), and that is said on stderr. Anything on the socket that is not a
    well-formed event is reported and skipped. The event stream is a view, not the record:
    fz-ctl show / list are the authority. */

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "fz_cli.h"
#include "fz_client.h"
#include "fz_event.h"
#include "fz_hook.h"
#include "fz_net.h"
#include "fz_report.h"

#define S_MAX_TEXT 200 /* characters of agent text (output, summaries) on one line */
#define S_TREE 4096    /* subtasks remembered, to show events under their parents */
#define S_DEPTH 8      /* ancestors shown in task=A/B/C */

typedef struct {
    const char *events, *broker;
    fz_client_t *client; /* to ask for missed events; made on the first gap */
    bool json;
    uint64_t task;  /* 0 = all */
    uint64_t count; /* 0 = no limit */
    double timeout; /* seconds, 0 = none */
    uint64_t last_seq;
    uint64_t replayed_to;     /* the newest seq a replay showed */
    int64_t replay_off_until; /* no asking before (the broker did not answer) */
    uint64_t since;
    bool since_given;
    uint64_t printed;
    /* task -> parent, learned from events that carry "parent": a ring, oldest forgotten */
    uint64_t kids[S_TREE], parents[S_TREE];
    size_t ntree;
    const char *on, *exec; /* --on TOPICS --exec CMD */
    uint64_t jobs;
    double hook_timeout;
    fz_hook_t *hook;
} watch_t;

static uint64_t s_parent_of(const watch_t *w, uint64_t task)
{
    size_t n = w->ntree < S_TREE ? w->ntree : S_TREE;
    for (size_t i = 0; i < n; i++)
        if (w->kids[i] == task)
            return w->parents[i];
    return 0;
}

static void s_learn(watch_t *w, const fz_event_t *ev)
{
    uint64_t task = fz_event_task(ev), parent = fz_obj_uint(fz_event_map(ev), "parent", 0);
    if (!task || !parent || s_parent_of(w, task))
        return;
    w->kids[w->ntree % S_TREE] = task;
    w->parents[w->ntree % S_TREE] = parent;
    w->ntree++;
}

/* True if task is id or one of its known descendants. */
static bool s_under(const watch_t *w, uint64_t task, uint64_t id)
{
    for (int depth = 0; task && depth <= S_DEPTH; depth++, task = s_parent_of(w, task))
        if (task == id)
            return true;
    return false;
}

/* "7/12": the task under its known ancestors, so subtask events read under their parent. */
static char *s_task_path(const watch_t *w, uint64_t task, char *buf, size_t size)
{
    uint64_t chain[S_DEPTH + 1];
    int n = 0;
    for (uint64_t t = task; t && n <= S_DEPTH; t = s_parent_of(w, t))
        chain[n++] = t;
    size_t k = 0;
    buf[0] = 0;
    while (n-- > 0 && k < size)
        k += (size_t)snprintf(buf + k, size - k, "%s%llu", k ? "/" : "",
                              (unsigned long long)chain[n]);
    return buf;
}

static int s_help(void)
{
    printf("Usage: fz-watch [--events EP] [--json] [--task ID] [--since SEQ] [--count N]\n"
           "                [--timeout SECS] [--on TOPICS --exec CMD [--jobs N]\n"
           "                [--hook-timeout SECS]]\n"
           "Print the fz broker's events, one line each:\n"
           "  TIME (UTC) EVENT task=ID worker=NAME DETAILS\n"
           "A subtask's events read task=PARENT/ID (its known ancestors first).\n"
           "Agent output and summaries are shown escaped, cut to %d characters.\n"
           "When the event numbers jump (PUB/SUB dropped some), the missed events are asked\n"
           "from the broker's recent history and shown first; what it no longer holds is\n"
           "reported on stderr as 'missed N events'.\n"
           "\n"
           "Options:\n"
           "  -e, --events EP     event endpoint (default $FZ_EVENTS or " FZ_DEFAULT_EVENTS ")\n"
           "  -b, --broker EP     where to ask for missed events (default $FZ_BROKER or\n"
           "                      " FZ_DEFAULT_BROKER ")\n"
           "  -j, --json          one JSON object per event (its fields plus \"topic\")\n"
           "  -T, --task ID       only the events of task ID and its subtasks\n"
           "  -s, --since SEQ     first show the recent events after number SEQ (0: all the\n"
           "                      broker still holds), then follow\n"
           "  -n, --count N       exit after printing N events\n"
           "  -t, --timeout SECS  exit after SECS seconds\n"
           "      --on TOPICS     with --exec: the events to run CMD for, comma-separated\n"
           "                      (task.failed,task.succeeded; task.* for a prefix; * all)\n"
           "      --exec CMD      run CMD (/bin/sh -c) once per matching event, the event as\n"
           "                      one line of JSON on its stdin and FZ_EVENT_TOPIC, _SEQ, _TS,\n"
           "                      _TASK, _STATE, _MODEL, _WORKER, _CLASS, _SUMMARY set; its\n"
           "                      output goes to stderr; a failure is logged there. Never\n"
           "                      blocks the stream: at most --jobs run at once (default 4),\n"
           "                      1000 more wait, the rest are dropped (logged)\n"
           "      --jobs N        hooks run at once (1..64, default 4)\n"
           "      --hook-timeout SECS  a hook running longer gets SIGTERM, then SIGKILL\n"
           "                      (default 60)\n"
           "  -h, --help          this help\n"
           "  -V, --version       print the version\n"
           "Exits 0 on SIGINT/SIGTERM, after --count events, or at --timeout.\n"
           "\n"
           "%s\n",
           S_MAX_TEXT, fz_cli_help_env);
    fz_cli_print_exit_codes("0,2", stdout);
    return FZ_EXIT_OK;
}

/* Says on stderr that events first..last are gone for good. */
static void s_missed(uint64_t first, uint64_t last, const char *why)
{
    fz_cli_error("missed %llu events (seq %llu..%llu)%s", (unsigned long long)(last - first + 1),
                 (unsigned long long)first, (unsigned long long)last, why);
}

/* Says on stderr when event numbers jump (missed events) or restart (a new broker run). */
static void s_check_seq(watch_t *w, uint64_t seq)
{
    if (seq == 0)
        return; /* a broker that does not number its events */
    if (w->last_seq && seq > w->last_seq + 1)
        s_missed(w->last_seq + 1, seq - 1, "");
    else if (w->last_seq && seq <= w->last_seq)
        fz_cli_error("event numbers restarted at %llu (the broker restarted?)",
                     (unsigned long long)seq);
    w->last_seq = seq;
}

static void s_print_human(const watch_t *w, const fz_event_t *ev)
{
    char when[40], worker[80], details[1600], path[200];
    const msgpack_object *m = fz_event_map(ev);
    size_t len;
    const char *name = fz_obj_strn(m, "worker", &len);
    printf("%s %-16s", fz_cli_time_ms(fz_event_ts(ev), when, sizeof when), fz_event_topic(ev));
    if (fz_event_task(ev))
        printf(" task=%s", s_task_path(w, fz_event_task(ev), path, sizeof path));
    if (len)
        printf(" worker=%s", fz_cli_oneline(name, len, 64, worker, sizeof worker));
    printf(" %s\n", fz_report_event_details(ev, S_MAX_TEXT, false, details, sizeof details));
}

/* Prints one event (if it passes --task); returns true when --count is reached. */
static bool s_show(watch_t *w, const fz_event_t *ev)
{
    s_learn(w, ev);
    if (w->task && !s_under(w, fz_event_task(ev), w->task))
        return false;
    if (w->hook)
        fz_hook_event(w->hook, fz_event_topic(ev), fz_event_map(ev));
    if (w->json)
        fz_cli_print_json_with(fz_event_map(ev), "topic", fz_event_topic(ev), stdout);
    else
        s_print_human(w, ev);
    fflush(stdout);
    w->printed++;
    return w->count && w->printed >= w->count;
}

typedef struct {
    watch_t *w;
    bool *done;
} replay_t;

static bool s_replay_show(void *arg, fz_event_t *ev)
{
    replay_t *r = arg;
    return *r->done = s_show(r->w, ev);
}

static void s_replay_missed(void *arg, uint64_t first, uint64_t last)
{
    (void)arg;
    s_missed(first, last, ", older than the broker keeps");
}

/* Events before `upto` that the subscription missed, from the broker's recent history,
   asked in as many replies as it takes. Returns the last seq accounted for; stops early on
   --count. After a failed ask it does not ask again for 30 s (each ask waits up to 2 s). */
static uint64_t s_replay(watch_t *w, uint64_t upto, bool *done)
{
    uint64_t shown = w->last_seq;
    if (fz_clock_ms() < w->replay_off_until)
        return shown;
    if (!w->client)
        w->client = fz_client_new(fz_endpoint(w->broker, "FZ_BROKER", FZ_DEFAULT_BROKER), 2000);
    char err[256];
    bool failed;
    replay_t r = {w, done};
    shown = fz_event_fill(w->client, shown, upto, s_replay_show, s_replay_missed, &r, err,
                          sizeof err, &failed);
    if (failed) {
        fz_cli_error("cannot fetch missed events: %s", err);
        w->replay_off_until = fz_clock_ms() + 30000;
    }
    if (shown > w->replayed_to)
        w->replayed_to = shown;
    return shown;
}

/* Handles one event: first what was missed before it (asked from the broker), then it.
   Returns true when --count is reached. */
static bool s_on_event(watch_t *w, const fz_event_t *ev)
{
    uint64_t seq = fz_event_seq(ev);
    bool done = false;
    if (strcmp(fz_event_topic(ev), "broker.started") == 0)
        w->replayed_to = 0; /* a new broker run numbers from 1 again */
    else if (seq && seq <= w->replayed_to)
        return false; /* already shown by a replay (it raced the subscription) */
    if (seq && w->last_seq && seq > w->last_seq + 1) {
        w->last_seq = s_replay(w, seq, &done);
        if (done)
            return true;
    }
    s_check_seq(w, seq);
    return s_show(w, ev);
}

static int s_watch(watch_t *w)
{
    const char *endpoint = fz_endpoint(w->events, "FZ_EVENTS", FZ_DEFAULT_EVENTS);
    zsock_t *sub = fz_net_socket(ZMQ_SUB);
    if (sub)
        zsock_set_subscribe(sub, "");
    if (!sub || zsock_connect(sub, "%s", endpoint) != 0) {
        zsock_destroy(&sub);
        return fz_cli_usage_error("cannot use event endpoint '%s'", endpoint);
    }
    int64_t deadline = w->timeout > 0 ? fz_clock_ms() + (int64_t)(w->timeout * 1000) : 0;
    bool done = false;
    /* A SUB socket cannot tell that nobody publishes: ask the broker once, so a wrong
       endpoint is said rather than waited on in silence. */
    const char *broker = fz_endpoint(w->broker, "FZ_BROKER", FZ_DEFAULT_BROKER);
    if (!w->client)
        w->client = fz_client_new(broker, 1000);
    fz_enc_t *ping = w->client ? fz_client_request(w->client, "ping") : NULL;
    fz_msg_t *pong = NULL;
    char err[256];
    if (ping && fz_client_ask(w->client, &ping, "pong", &pong, err, sizeof err) != FZ_OK)
        fz_cli_error("warning: no broker answers at %s (%s); waiting for events at %s anyway",
                     broker, err, endpoint);
    fz_msg_destroy(&pong);
    if (w->since_given) {
        /* What came before we subscribed; a gap to the first live event is filled then. */
        w->last_seq = w->since;
        w->last_seq = s_replay(w, UINT64_MAX, &done);
    }
    while (!done && !fz_net_interrupted() && !ferror(stdout)) {
        long wait = 1000;
        if (w->hook) {
            fz_hook_poll(w->hook);
            if (fz_hook_busy(w->hook))
                wait = 100;
        }
        if (deadline) {
            int64_t left = deadline - fz_clock_ms();
            if (left <= 0)
                break;
            wait = left < wait ? (long)left : wait;
        }
        zmq_pollitem_t item = {zsock_resolve(sub), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, wait) <= 0 || !(item.revents & ZMQ_POLLIN))
            continue;
        char why[256];
        fz_event_t *ev = fz_event_recv(sub, why, sizeof why);
        if (ev)
            done = s_on_event(w, ev);
        else if (*why)
            fz_cli_error("ignored a bad event: %s", why);
        fz_event_destroy(&ev);
    }
    zsock_destroy(&sub);
    /* Hooks still running finish (an interrupt gives them 5 s), then are killed. */
    fz_hook_destroy(&w->hook, fz_net_interrupted() ? 5 : w->hook_timeout + 5);
    return FZ_EXIT_OK;
}

static const struct option s_long[] = {{"events", required_argument, NULL, 'e'},
                                       {"broker", required_argument, NULL, 'b'},
                                       {"since", required_argument, NULL, 's'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"task", required_argument, NULL, 'T'},
                                       {"count", required_argument, NULL, 'n'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"on", required_argument, NULL, 'O'},
                                       {"exec", required_argument, NULL, 'X'},
                                       {"jobs", required_argument, NULL, 'J'},
                                       {"hook-timeout", required_argument, NULL, 'H'},
                                       {NULL, 0, NULL, 0}};

int main(int argc, char **argv)
{
    fz_cli_init("fz-watch");
    if (fz_cli_curve(&argc, argv) != 0)
        return FZ_EXIT_USAGE;
    watch_t w = {0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":e:b:s:jT:n:t:hV", s_long, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'e':
            w.events = optarg;
            break;
        case 'b':
            w.broker = optarg;
            break;
        case 's':
            w.since_given = true;
            ok = fz_cli_parse_uint("--since", optarg, 0, UINT64_MAX, &w.since);
            break;
        case 'j':
            w.json = true;
            break;
        case 'T':
            ok = fz_cli_parse_uint("--task", optarg, 1, UINT64_MAX, &w.task);
            break;
        case 'n':
            ok = fz_cli_parse_uint("--count", optarg, 1, UINT64_MAX, &w.count);
            break;
        case 't':
            ok = fz_cli_parse_double("--timeout", optarg, 0.001, 1e9, &w.timeout);
            break;
        case 'O': {
            char err[256];
            w.on = optarg;
            ok = fz_hook_topics_valid(optarg, err, sizeof err) ||
                 (fz_cli_usage_error("%s", err), false);
            break;
        }
        case 'X':
            w.exec = optarg;
            ok = *optarg || (fz_cli_usage_error("--exec needs a command"), false);
            break;
        case 'J':
            ok = fz_cli_parse_uint("--jobs", optarg, 1, 64, &w.jobs);
            break;
        case 'H':
            ok = fz_cli_parse_double("--hook-timeout", optarg, 0.1, 86400, &w.hook_timeout);
            break;
        case 'h':
            return s_help();
        case 'V':
            return fz_cli_version();
        case ':':
            return fz_cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return optopt ? fz_cli_usage_error("unknown option '-%c'", optopt)
                          : fz_cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
        if (!ok)
            return FZ_EXIT_USAGE;
    }
    if (optind < argc)
        return fz_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!w.on != !w.exec)
        return fz_cli_usage_error("--on and --exec go together");
    w.jobs = w.jobs ? w.jobs : 4;                              /* --jobs is 1..64 when given */
    w.hook_timeout = w.hook_timeout > 0 ? w.hook_timeout : 60; /* --hook-timeout >= 0.1 */
    if (w.exec && !(w.hook = fz_hook_new(w.on, w.exec, (int)w.jobs, 1000, w.hook_timeout))) {
        fz_cli_error("out of memory");
        return FZ_EXIT_UNAVAILABLE;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int code = s_watch(&w);
    fz_hook_destroy(&w.hook, 0);
    fz_client_destroy(&w.client);
    return code;
}
