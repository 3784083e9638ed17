/*  fzb-fz: the fz load generator of scripts/bench. A client like any other: a DEALER to the
    broker's ROUTER (and a SUB to its PUB for results), messages built and checked with the
    protocol codec (proto/fz_msg.h), nothing from the broker's internals.

      submit  `submit` requests, K in flight; an operation is done at its `submitted` reply,
              which the broker sends only after the task is committed to its database;
      cycle   a closed loop of whole task cycles with K tasks in flight: submit -> dispatch to
              a worker -> result -> recorded; an operation is done when its `task.succeeded`
              event arrives (events go out only after the result is committed). Waits for
              --workers workers to be connected and idle first. */

#include <msgpack.h>
#include <zmq.h>

#include "fz_msg.h"
#include "fzb_common.h"

static const char *prog = "fzb-fz";

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: fzb-fz submit --broker EP [OPTIONS]\n"
            "       fzb-fz cycle --broker EP --events EP --workers N [OPTIONS]\n"
            "       fzb-fz ping --broker EP [--secs S]\n"
            "       fzb-fz status --broker EP [--depth] [--n N]\n"
            "       fzb-fz drain --events EP --n N [--pid PID] [--secs S]\n"
            "\n"
            "fz load generator for scripts/bench: a DEALER client using the fz protocol codec.\n"
            "  submit   submits, K in flight; done at each 'submitted' reply (task committed)\n"
            "  cycle    whole task cycles, K tasks in flight; done at each task.succeeded event\n"
            "  drain    times N task-end events after the first (workers draining a queue)\n"
            "  ping     waits until the broker answers (at most --secs): its start-up time\n"
            "  status   N status requests one at a time (--depth: with the queue's depth)\n"
            "\n"
            "Options:\n"
            "  --broker EP    the broker's ROUTER endpoint (required)\n"
            "  --events EP    the broker's PUB endpoint (cycle)\n"
            "  --workers N    connected idle workers to wait for before starting "
            "(cycle)\n"
            "  --priority P   every task's priority (default 0)\n"
            "  --batch B      tasks per request, 1..1000 (submit-batch when > 1; an op is a "
            "request)\n"
            "  --depth        status: ask for by_model and by_label too\n" FZB_COMMON_HELP
            "  -h, --help     this help\n"
            "\n"
            "Prints one line 'RESULT ops=.. secs=.. rate=.. p50_us=.. p99_us=.. ...' on stdout.\n"
            "Exit status: 0 done, 1 runtime error, protocol error or timeout, 2 bad usage.\n");
}

/* ---------------------------------------------------------------- requests and replies */

static void s_send(void *dealer, fz_enc_t **e_p)
{
    size_t len;
    const void *data = fz_enc_data(*e_p, &len);
    if (!data || zmq_send(dealer, data, len, 0) < 0)
        fzb_die(prog, "send failed: %s", zmq_strerror(zmq_errno()));
    fz_enc_destroy(e_p);
}

/* One reply from the DEALER, decoded and checked; NULL (logged) if it is not valid. */
static fz_msg_t *s_recv(void *dealer)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, dealer, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return NULL;
    }
    fz_msg_t *msg = NULL;
    char why[256];
    if (fz_msg_decode(zmq_msg_data(&m), zmq_msg_size(&m), &msg, NULL, why, sizeof why) != FZ_OK)
        fprintf(stderr, "%s: bad reply: %s\n", prog, why);
    zmq_msg_close(&m);
    return msg;
}

/* A request and its reply (rid 1), retried every 200 ms until one comes: NULL after 20 s. */
static fz_msg_t *s_call(void *dealer, const char *type)
{
    zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
    int64_t give_up = fzb_now_ns() + 20 * 1000000000LL;
    while (fzb_now_ns() < give_up) {
        fz_enc_t *e = fz_enc_new(type, 1);
        s_send(dealer, &e);
        int64_t until = fzb_now_ns() + 200 * 1000000LL;
        while (fzb_now_ns() < until) {
            if (zmq_poll(&item, 1, 50) <= 0)
                continue;
            fz_msg_t *msg = s_recv(dealer);
            if (msg && fz_msg_rid(msg) == 1)
                return msg;
            fz_msg_destroy(&msg);
        }
    }
    return NULL;
}

static char *s_prompt(long long size)
{
    static const char head[] = "benchmark task: print the answer and exit. ";
    char *p = malloc((size_t)size + 1);
    if (!p)
        fzb_die(prog, "out of memory");
    for (long long i = 0; i < size; i++)
        p[i] = i < (long long)sizeof head - 1 ? head[i] : (char)('a' + i % 26);
    p[size] = 0;
    return p;
}

/* What every submit carries beyond its prompt (flags of this generator, not common ones). */
static long long g_priority;  /* --priority: 0 is the broker's default */
static long long g_batch = 1; /* --batch: tasks per request (> 1: submit-batch) */

/* One task's fields: the prompt, and the priority when one was asked for. */
static void s_task_fields(fz_enc_t *e, const char *prompt)
{
    fz_enc_str(e, "prompt", prompt);
    if (g_priority)
        fz_enc_int(e, "priority", g_priority);
}

/* One request: a submit, or a submit-batch of g_batch tasks (one commit for all of them: the
   fast way to fill a store for the scale rows). */
static void s_submit(void *dealer, uint64_t rid, const char *prompt)
{
    if (g_batch <= 1) {
        fz_enc_t *e = fz_enc_new("submit", rid);
        s_task_fields(e, prompt);
        s_send(dealer, &e);
        return;
    }
    fz_enc_t *e = fz_enc_new("submit-batch", rid);
    fz_enc_array(e, "tasks", (size_t)g_batch);
    for (long long i = 0; i < g_batch; i++) {
        fz_enc_t *t = fz_enc_new_map();
        s_task_fields(t, prompt);
        fz_enc_sub(e, NULL, &t);
    }
    s_send(dealer, &e);
}

/* ---------------------------------------------------------------- task ids -> requests */

/* What is known of a task id: which request created it, and when its final event came (an
   event may in principle overtake the reply: they travel on different sockets). */
typedef struct {
    long long req; /* request index + 1; 0 unknown */
    int64_t ended; /* ns; 0 not yet */
    bool failed;
} idinfo_t;

typedef struct {
    idinfo_t *v;
    size_t cap;
} idmap_t;

static idinfo_t *s_id(idmap_t *m, uint64_t id)
{
    if (id > 100000000)
        return NULL;
    if (id >= m->cap) {
        size_t cap = m->cap ? m->cap : 1024;
        while (cap <= id)
            cap *= 2;
        idinfo_t *v = realloc(m->v, cap * sizeof *v);
        if (!v)
            fzb_die(prog, "out of memory");
        memset(v + m->cap, 0, (cap - m->cap) * sizeof *v);
        m->v = v;
        m->cap = cap;
    }
    return &m->v[id];
}

/* ---------------------------------------------------------------- the run */

typedef struct {
    void *dealer, *sub;
    bool cycle;
    const fzb_opts_t *o;
    const char *prompt;
    int64_t *sent_at;
    idmap_t ids;
    fzb_lat_t lat;
    long long sent, done, failed, errors, total;
} run_t;

/* A request or task is over: count it, and its latency when it is measured. */
static void s_complete(run_t *r, long long req, int64_t at, bool failed)
{
    if (req < 0 || req >= r->total)
        return;
    r->done++;
    if (failed)
        r->failed++;
    if (req >= r->o->warmup)
        fzb_lat_add(&r->lat, at - r->sent_at[req]);
}

static void s_on_reply(run_t *r, fz_msg_t *msg, int64_t now)
{
    long long req = (long long)fz_msg_rid(msg) - 2; /* rids 2.. are requests 0.. */
    if (fz_msg_is(msg, "error")) {
        if (r->errors++ < 5)
            fprintf(stderr, "%s: error reply: %s: %s\n", prog, fz_msg_str(msg, "code", "", NULL),
                    fz_msg_str(msg, "message", "", NULL));
        s_complete(r, req, now, true);
        return;
    }
    if (!fz_msg_is(msg, "submitted") && !fz_msg_is(msg, "submitted-batch"))
        return;
    if (!r->cycle) {
        s_complete(r, req, now, false);
        return;
    }
    idinfo_t *in = s_id(&r->ids, fz_msg_uint(msg, "task", 0));
    if (!in)
        return;
    in->req = req + 1;
    if (in->ended)
        s_complete(r, req, in->ended, in->failed);
}

static void s_on_event(run_t *r, int64_t now)
{
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&topic, r->sub, ZMQ_DONTWAIT) < 0)
        goto out;
    if (!zmq_msg_more(&topic) || zmq_msg_recv(&body, r->sub, 0) < 0)
        goto out;
    bool failed = zmq_msg_size(&topic) != strlen("task.succeeded") ||
                  memcmp(zmq_msg_data(&topic), "task.succeeded", 14) != 0;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    if (msgpack_unpack_next(&up, zmq_msg_data(&body), zmq_msg_size(&body), NULL) ==
            MSGPACK_UNPACK_SUCCESS &&
        up.data.type == MSGPACK_OBJECT_MAP) {
        idinfo_t *in = s_id(&r->ids, fz_obj_uint(&up.data, "task", 0));
        if (in && !in->ended) {
            in->ended = now;
            in->failed = failed;
            if (in->req)
                s_complete(r, in->req - 1, now, failed);
        }
    }
    msgpack_unpacked_destroy(&up);
out:
    while (zmq_msg_more(&body) && zmq_msg_recv(&body, r->sub, 0) >= 0)
        ;
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
}

/* Reads what arrived within timeout_ms. */
static void s_pump(run_t *r, int timeout_ms)
{
    zmq_pollitem_t items[2] = {{r->dealer, 0, ZMQ_POLLIN, 0}, {r->sub, 0, ZMQ_POLLIN, 0}};
    int rc = zmq_poll(items, r->sub ? 2 : 1, timeout_ms);
    if (rc < 0 && zmq_errno() != EINTR)
        fzb_die(prog, "poll: %s", zmq_strerror(zmq_errno()));
    int64_t now = fzb_now_ns();
    for (int burst = 0; burst < 4096; burst++) {
        bool any = false;
        fz_msg_t *msg = s_recv(r->dealer);
        if (msg) {
            s_on_reply(r, msg, now);
            fz_msg_destroy(&msg);
            any = true;
        }
        if (r->sub) {
            int ev = 0;
            size_t sz = sizeof ev;
            zmq_getsockopt(r->sub, ZMQ_EVENTS, &ev, &sz);
            if (ev & ZMQ_POLLIN) {
                s_on_event(r, now);
                any = true;
            }
        }
        if (!any)
            break;
    }
}

/* The SUB sees events only once its subscription reached the broker: submit probe tasks
   until the event of one comes back. */
static void s_wait_subscribed(run_t *r)
{
    int64_t give_up = fzb_now_ns() + 20 * 1000000000LL;
    for (uint64_t probe = 0; fzb_now_ns() < give_up; probe++) {
        fz_enc_t *e = fz_enc_new("submit", 1000000000ULL + probe);
        fz_enc_str(e, "prompt", "subscription probe");
        s_send(r->dealer, &e);
        int64_t until = fzb_now_ns() + 500 * 1000000LL;
        while (fzb_now_ns() < until) {
            zmq_pollitem_t item = {r->sub, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&item, 1, 50) > 0) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                while (zmq_msg_recv(&m, r->sub, ZMQ_DONTWAIT) >= 0)
                    ;
                zmq_msg_close(&m);
                /* Let the remaining probes finish, then forget their replies. */
                zmq_poll(&item, 1, 200);
                while (zmq_msg_init(&m) == 0 && zmq_msg_recv(&m, r->sub, ZMQ_DONTWAIT) >= 0)
                    zmq_msg_close(&m);
                zmq_msg_close(&m);
                while (zmq_msg_init(&m) == 0 && zmq_msg_recv(&m, r->dealer, ZMQ_DONTWAIT) >= 0)
                    zmq_msg_close(&m);
                zmq_msg_close(&m);
                return;
            }
        }
    }
    fzb_die(prog, "no task event came back within 20 s (are workers running?)");
}

static int s_run(const char *broker, const char *events, bool cycle, const fzb_opts_t *o)
{
    fz_log_init(prog, FZ_LOG_WARN);
    void *ctx = zmq_ctx_new();
    run_t r = {0};
    r.cycle = cycle;
    r.o = o;
    r.dealer = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(r.dealer, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(r.dealer, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(r.dealer, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(r.dealer, broker) < 0)
        fzb_die(prog, "cannot connect %s: %s", broker, zmq_strerror(zmq_errno()));

    fz_msg_t *msg = s_call(r.dealer, "ping");
    if (!msg)
        fzb_die(prog, "broker at %s does not answer", broker);
    fz_msg_destroy(&msg);
    if (cycle) {
        int64_t give_up = fzb_now_ns() + 30 * 1000000000LL;
        for (;;) {
            msg = s_call(r.dealer, "status");
            uint64_t idle = msg ? fz_msg_uint(msg, "idle_workers", 0) : 0;
            fz_msg_destroy(&msg);
            if (idle >= (uint64_t)o->workers)
                break;
            if (fzb_now_ns() > give_up)
                fzb_die(prog, "only %llu of %lld workers idle after 30 s", (unsigned long long)idle,
                        o->workers);
            usleep(50000);
        }
        r.sub = zmq_socket(ctx, ZMQ_SUB);
        zmq_setsockopt(r.sub, ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(r.sub, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(r.sub, ZMQ_SUBSCRIBE, "task.succeeded", 14);
        zmq_setsockopt(r.sub, ZMQ_SUBSCRIBE, "task.failed", 11);
        zmq_setsockopt(r.sub, ZMQ_SUBSCRIBE, "task.cancelled", 14);
        if (zmq_connect(r.sub, events) < 0)
            fzb_die(prog, "cannot connect %s: %s", events, zmq_strerror(zmq_errno()));
        s_wait_subscribed(&r);
    }

    char *prompt = s_prompt(o->size);
    r.prompt = prompt;
    r.total = o->warmup + o->n;
    r.sent_at = calloc((size_t)r.total, sizeof *r.sent_at);
    fzb_lat_init(&r.lat, (size_t)o->n);
    bool warm = o->warmup == 0;
    int64_t t0 = warm ? fzb_now_ns() : 0, stop_at = INT64_MAX, last_progress = fzb_now_ns();
    fzb_cpu_t cpu0 = fzb_cpu(warm ? o->pid : 0);
    if (warm)
        stop_at = t0 + o->secs * 1000000000LL;
    while (r.done < r.sent || (r.sent < r.total && fzb_now_ns() < stop_at)) {
        while (r.sent < r.total && r.sent - r.done < o->inflight && (warm || r.sent < o->warmup) &&
               (!warm || fzb_now_ns() < stop_at)) {
            r.sent_at[r.sent] = fzb_now_ns();
            s_submit(r.dealer, (uint64_t)r.sent + 2, prompt);
            r.sent++;
        }
        long long before = r.done;
        s_pump(&r, 1000);
        if (r.done != before)
            last_progress = fzb_now_ns();
        if (!warm && r.done == o->warmup) {
            warm = true;
            t0 = fzb_now_ns();
            stop_at = t0 + o->secs * 1000000000LL;
            cpu0 = fzb_cpu(o->pid);
        }
        if (fzb_now_ns() - last_progress > 15 * 1000000000LL)
            fzb_die(prog, "no progress for 15 s (%lld of %lld done)", r.done, r.sent);
    }
    int64_t t1 = fzb_now_ns();
    fzb_cpu_t cpu1 = fzb_cpu(o->pid);
    long long ops = r.done - o->warmup;

    /* What the broker itself says: every measured task must be there. */
    msg = s_call(r.dealer, "status");
    const msgpack_object *counts = msg ? fz_msg_obj(msg, "counts") : NULL;
    unsigned long long succeeded = fz_obj_uint(counts, "succeeded", 0),
                       queued = fz_obj_uint(counts, "queued", 0);
    fz_msg_destroy(&msg);

    fzb_result_cpu(&r.lat, ops, t1 - t0, cpu0, cpu1);
    printf(" inflight=%lld size=%lld failed=%lld errors=%lld broker_succeeded=%llu "
           "broker_queued=%llu\n",
           o->inflight, o->size, r.failed, r.errors, succeeded, queued);
    fflush(stdout);
    fzb_lat_free(&r.lat);
    free(r.sent_at);
    free(r.ids.v);
    free(prompt);
    zmq_close(r.dealer);
    if (r.sub)
        zmq_close(r.sub);
    zmq_ctx_term(ctx);
    return r.failed || r.errors ? 1 : 0;
}

/* Counts task-end events from the broker's PUB socket: n of them after the first, timed and
   charged (broker CPU) from the first. Started before workers connect to a filled queue, it
   measures dispatch and completion out of a queue of that depth (the tasks it counts drain
   that queue: keep n well below the depth). */
static int s_drain(const char *events, const fzb_opts_t *o)
{
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "task.succeeded", 14);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "task.failed", 11);
    if (zmq_connect(sub, events) < 0)
        fzb_die(prog, "cannot connect %s: %s", events, zmq_strerror(zmq_errno()));
    fzb_lat_t lat;
    fzb_lat_init(&lat, 1);
    long long seen = 0, failed = 0;
    int64_t t0 = 0;
    fzb_cpu_t cpu0 = {-1, -1};
    zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
    while (seen <= o->n) {
        if (zmq_poll(&item, 1, (int)o->secs * 1000) <= 0)
            fzb_die(prog, "no task event for %lld s (%lld seen)", o->secs, seen);
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sub, 0) < 0)
            fzb_die(prog, "recv: %s", zmq_strerror(zmq_errno()));
        if (zmq_msg_size(&m) == 11)
            failed++;
        while (zmq_msg_more(&m) && zmq_msg_recv(&m, sub, 0) >= 0)
            ;
        zmq_msg_close(&m);
        if (seen++ == 0) {
            t0 = fzb_now_ns();
            cpu0 = fzb_cpu(o->pid);
        }
    }
    int64_t t1 = fzb_now_ns();
    fzb_result_cpu(&lat, o->n, t1 - t0, cpu0, fzb_cpu(o->pid));
    printf(" failed=%lld\n", failed);
    fflush(stdout);
    fzb_lat_free(&lat);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return failed ? 1 : 0;
}

/* Until the broker answers a ping (at most secs): how long a starting broker takes to serve
   (it binds only once its store is loaded). */
static int s_ping(const char *broker, long long secs)
{
    fz_log_init(prog, FZ_LOG_WARN);
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    int64_t t0 = fzb_now_ns(), give_up = t0 + secs * 1000000000LL;
    fz_msg_t *msg = NULL;
    if (zmq_connect(dealer, broker) == 0)
        while (!msg && fzb_now_ns() < give_up)
            msg = s_call(dealer, "ping");
    int rc = msg ? 0 : 1;
    if (msg)
        printf("RESULT ops=1 secs=%.3f rate=0\n", (double)(fzb_now_ns() - t0) / 1e9);
    fz_msg_destroy(&msg);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    return rc;
}

/* n status requests, one at a time: what a dashboard's or an autoscaler's look costs. */
static int s_status(const char *broker, bool depth, const fzb_opts_t *o)
{
    fz_log_init(prog, FZ_LOG_WARN);
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(dealer, broker) != 0)
        fzb_die(prog, "cannot connect to %s", broker);
    fzb_lat_t lat;
    fzb_lat_init(&lat, (size_t)o->n);
    zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
    int64_t t0 = fzb_now_ns(), give_up = t0 + o->secs * 1000000000LL;
    long long done = 0;
    for (uint64_t rid = 1; done < o->n && fzb_now_ns() < give_up; rid++) {
        fz_enc_t *e = fz_enc_new("status", rid);
        if (depth)
            fz_enc_bool(e, "depth", true);
        int64_t sent = fzb_now_ns();
        s_send(dealer, &e);
        fz_msg_t *msg = NULL;
        while (!msg && fzb_now_ns() < give_up) {
            if (zmq_poll(&item, 1, 100) <= 0)
                continue;
            msg = s_recv(dealer);
            if (msg && (fz_msg_rid(msg) != rid || !fz_msg_is(msg, "status")))
                fz_msg_destroy(&msg);
        }
        if (!msg)
            break;
        fzb_lat_add(&lat, fzb_now_ns() - sent);
        fz_msg_destroy(&msg);
        done++;
    }
    if (done == o->n) {
        fzb_result(&lat, done, fzb_now_ns() - t0, -1, -1);
        printf("\n");
    } else
        fprintf(stderr, "%s: %lld of %lld status replies came within %lld s\n", prog, done, o->n,
                o->secs);
    fzb_lat_free(&lat);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    return done == o->n ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    bool cycle, ping = false, drain = false, status = false, depth = false;
    if (!strcmp(argv[1], "submit"))
        cycle = false;
    else if (!strcmp(argv[1], "status"))
        cycle = false, status = true;
    else if (!strcmp(argv[1], "ping"))
        cycle = false, ping = true;
    else if (!strcmp(argv[1], "drain"))
        cycle = false, drain = true;
    else if (!strcmp(argv[1], "cycle"))
        cycle = true;
    else {
        fprintf(stderr, "%s: unknown command '%s' (try --help)\n", prog, argv[1]);
        return 2;
    }
    fzb_opts_t o;
    fzb_opts_defaults(&o);
    const char *broker = NULL, *events = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--broker") && i + 1 < argc)
            broker = argv[++i];
        else if (!strcmp(argv[i], "--events") && i + 1 < argc)
            events = argv[++i];
        else if (!strcmp(argv[i], "--priority"))
            g_priority =
                fzb_num(prog, argv[i], i + 1 < argc ? argv[i + 1] : NULL, -1000000, 1000000),
            i++;
        else if (!strcmp(argv[i], "--depth"))
            depth = true;
        else if (!strcmp(argv[i], "--batch"))
            g_batch = fzb_num(prog, argv[i], i + 1 < argc ? argv[i + 1] : NULL, 1, 1000), i++;
        else if (!fzb_opt(prog, argc, argv, &i, &o)) {
            fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, argv[i]);
            return 2;
        }
    }
    if (drain && events)
        return s_drain(events, &o);
    if (!broker || (cycle && !events)) {
        fprintf(stderr, "%s: --broker%s is required (try --help)\n", prog,
                cycle ? " and --events" : "");
        return 2;
    }
    if (status)
        return s_status(broker, depth, &o);
    return ping ? s_ping(broker, o.secs) : s_run(broker, events, cycle, &o);
}
