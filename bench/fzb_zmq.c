/*  fzb-zmq: the raw ZeroMQ baseline of the fz benchmarks. Only libzmq, no fz code.

    The server is one thread with one ROUTER, like fz-broker, and speaks a tiny binary
    protocol: one frame per message, [type: 1 byte][id: 8 bytes][rest].

      'E' echo     client -> server -> client, unchanged: the bare DEALER->ROUTER->DEALER hop
      'S' submit   client -> server: acknowledged at once with 'A' [id], the payload is kept
                   in memory and dispatched to an idle worker as
                   'T' [id][client id length: 1][client id][payload]
      'H' hello    worker -> server: the worker is idle
      'R' result   worker -> server: 'R' [id][client id length][client id]; the server sends
                   'D' [id] to that client and counts the worker idle again
      'Q' query    client -> server: answered with 'q' [number of workers that said hello]

    So 'S' -> 'T' -> 'R' -> 'D' is the message flow of an fz task cycle (submit, dispatch,
    result, recorded) with nothing stored, validated or scheduled: the floor under any broker
    on this transport. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <zmq.h>

#include "fzb_common.h"

static const char *prog = "fzb-zmq";

#define CID_MAX 32

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: fzb-zmq server EP\n"
            "       fzb-zmq workers EP N\n"
            "       fzb-zmq echo|submit|cycle EP [OPTIONS]\n"
            "\n"
            "Raw ZeroMQ baseline for scripts/bench (no fz code).\n"
            "  server   a ROUTER on EP: echo, and a null broker (submits acked at once, kept in\n"
            "           memory, dispatched to idle workers, results reported to the submitter)\n"
            "  workers  N worker threads, each a DEALER that answers every task at once\n"
            "  echo     client: round trips through the server\n"
            "  submit   client: submits acknowledged by the server (its queue grows)\n"
            "  cycle    client: submit -> dispatch -> result -> done, K tasks in flight;\n"
            "           waits for --workers N workers first\n"
            "\n"
            "Options:\n" FZB_COMMON_HELP "  --workers N    workers to wait for (cycle; default 4)\n"
            "  -h, --help     this help\n"
            "\n"
            "Prints one line 'RESULT ops=.. secs=.. rate=.. p50_us=.. p99_us=.. ...' on stdout.\n"
            "Exit status: 0 done, 1 runtime error or timeout, 2 bad usage.\n");
}

static void s_put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint64_t s_get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---------------------------------------------------------------- server */

typedef struct {
    unsigned char cid[CID_MAX];
    size_t cidlen;
    uint64_t id;
    unsigned char *payload;
    size_t len;
} task_t;

typedef struct {
    task_t *v;
    size_t head, n, cap; /* ring buffer */
} fifo_t;

static void s_fifo_push(fifo_t *q, const task_t *t)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 1024;
        task_t *v = malloc(cap * sizeof *v);
        if (!v)
            fzb_die(prog, "out of memory");
        for (size_t i = 0; i < q->n; i++)
            v[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = v;
        q->head = 0;
        q->cap = cap;
    }
    q->v[(q->head + q->n) % q->cap] = *t;
    q->n++;
}

static task_t s_fifo_pop(fifo_t *q)
{
    task_t t = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    return t;
}

typedef struct {
    unsigned char id[CID_MAX];
    size_t len;
} peer_t;

static void s_send2(void *router, const void *to, size_t tolen, const void *data, size_t len)
{
    if (zmq_send(router, to, tolen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    zmq_send(router, data, len, ZMQ_DONTWAIT);
}

static void s_dispatch(void *router, fifo_t *q, peer_t *idle, size_t *nidle, unsigned char *buf)
{
    while (q->n && *nidle) {
        task_t t = s_fifo_pop(q);
        peer_t *w = &idle[--*nidle];
        buf[0] = 'T';
        s_put64(buf + 1, t.id);
        buf[9] = (unsigned char)t.cidlen;
        memcpy(buf + 10, t.cid, t.cidlen);
        memcpy(buf + 10 + t.cidlen, t.payload, t.len);
        s_send2(router, w->id, w->len, buf, 10 + t.cidlen + t.len);
        free(t.payload);
    }
}

static int s_server(const char *ep)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int hwm = 100000;
    zmq_setsockopt(router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind(router, ep) < 0)
        fzb_die(prog, "cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
    fifo_t q = {0};
    size_t cap_idle = 4096, nidle = 0;
    uint64_t nworkers = 0;
    peer_t *idle = calloc(cap_idle, sizeof *idle);
    unsigned char *out = malloc(70000);
    zmq_msg_t from, body;
    zmq_msg_init(&from);
    zmq_msg_init(&body);
    for (;;) {
        if (zmq_msg_recv(&from, router, 0) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (!zmq_msg_more(&from) || zmq_msg_recv(&body, router, 0) < 0)
            continue;
        const unsigned char *cid = zmq_msg_data(&from), *d = zmq_msg_data(&body);
        size_t cidlen = zmq_msg_size(&from), len = zmq_msg_size(&body);
        if (len < 9 || cidlen > CID_MAX)
            continue;
        switch (d[0]) {
        case 'E':
            s_send2(router, cid, cidlen, d, len);
            break;
        case 'S': {
            task_t t = {.cidlen = cidlen, .id = s_get64(d + 1), .len = len - 9};
            memcpy(t.cid, cid, cidlen);
            t.payload = malloc(t.len ? t.len : 1);
            if (!t.payload || t.len > 65000)
                break;
            memcpy(t.payload, d + 9, t.len);
            s_fifo_push(&q, &t);
            unsigned char ack[9] = {'A'};
            memcpy(ack + 1, d + 1, 8);
            s_send2(router, cid, cidlen, ack, sizeof ack);
            break;
        }
        case 'H':
        case 'R':
            if (d[0] == 'H')
                nworkers++;
            else if (len >= 10 && len >= 10 + (size_t)d[9] && d[9] <= CID_MAX) {
                unsigned char done[9] = {'D'};
                memcpy(done + 1, d + 1, 8);
                s_send2(router, d + 10, d[9], done, sizeof done);
            }
            if (nidle < cap_idle) {
                memcpy(idle[nidle].id, cid, cidlen);
                idle[nidle++].len = cidlen;
            }
            break;
        case 'Q': {
            unsigned char r[9] = {'q'};
            s_put64(r + 1, nworkers);
            s_send2(router, cid, cidlen, r, sizeof r);
            break;
        }
        default:
            break;
        }
        s_dispatch(router, &q, idle, &nidle, out);
    }
    return 0;
}

/* ---------------------------------------------------------------- workers */

typedef struct {
    void *ctx;
    const char *ep;
} worker_arg_t;

static void *s_worker(void *arg)
{
    worker_arg_t *wa = arg;
    void *dealer = zmq_socket(wa->ctx, ZMQ_DEALER);
    if (zmq_connect(dealer, wa->ep) < 0)
        fzb_die(prog, "cannot connect %s: %s", wa->ep, zmq_strerror(zmq_errno()));
    unsigned char hello[9] = {'H'};
    zmq_send(dealer, hello, sizeof hello, 0);
    unsigned char *buf = malloc(70000);
    for (;;) {
        int n = zmq_recv(dealer, buf, 70000, 0);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (n < 10 || buf[0] != 'T' || (size_t)n < 10 + (size_t)buf[9])
            continue;
        buf[0] = 'R';
        zmq_send(dealer, buf, 10 + buf[9], 0);
    }
    return NULL;
}

static int s_workers(const char *ep, int n)
{
    void *ctx = zmq_ctx_new();
    pthread_t *th = calloc((size_t)n, sizeof *th);
    worker_arg_t wa = {ctx, ep};
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, s_worker, &wa))
            fzb_die(prog, "cannot start a thread");
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return 0;
}

/* ---------------------------------------------------------------- clients */

typedef enum { MODE_ECHO, MODE_SUBMIT, MODE_CYCLE } client_mode_t;

/* One request, and what it takes to complete it: the echo, the ack, or the done. */
static int s_client(const char *ep, client_mode_t mode, const fzb_opts_t *o)
{
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 0;
    zmq_setsockopt(dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_connect(dealer, ep) < 0)
        fzb_die(prog, "cannot connect %s: %s", ep, zmq_strerror(zmq_errno()));
    size_t msglen = 9 + (size_t)o->size;
    unsigned char *msg = malloc(msglen), buf[256];
    memset(msg, 'x', msglen);
    unsigned char done_type = mode == MODE_ECHO ? 'E' : mode == MODE_SUBMIT ? 'A' : 'D';
    msg[0] = mode == MODE_ECHO ? 'E' : 'S';
    zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};

    /* Connected (and, for a cycle, every worker there)? */
    int64_t give_up = fzb_now_ns() + 20 * 1000000000LL;
    for (;;) {
        unsigned char q[9] = {'Q'};
        zmq_send(dealer, q, sizeof q, 0);
        if (zmq_poll(&item, 1, 200) > 0 && zmq_recv(dealer, buf, sizeof buf, 0) == 9 &&
            buf[0] == 'q' && (mode != MODE_CYCLE || s_get64(buf + 1) >= (uint64_t)o->workers))
            break;
        if (fzb_now_ns() > give_up)
            fzb_die(prog, "server at %s not ready (workers) within 20 s", ep);
    }
    while (zmq_poll(&item, 1, 0) > 0)
        zmq_recv(dealer, buf, sizeof buf, 0);

    long long total = o->warmup + o->n;
    int64_t *sent_at = calloc((size_t)total, sizeof *sent_at);
    fzb_lat_t lat;
    fzb_lat_init(&lat, (size_t)o->n);
    long long sent = 0, done = 0, measured_from = o->warmup;
    int64_t t0 = 0, stop_at = INT64_MAX;
    fzb_cpu_t cpu0 = {-1, -1};
    bool warm = o->warmup == 0;
    if (warm) {
        t0 = fzb_now_ns();
        stop_at = t0 + o->secs * 1000000000LL;
        cpu0 = fzb_cpu(o->pid);
    }
    int64_t last_progress = fzb_now_ns();
    while (done < sent || (sent < total && fzb_now_ns() < stop_at)) {
        while (sent < total && sent - done < o->inflight && (!warm || fzb_now_ns() < stop_at) &&
               (warm || sent < o->warmup)) {
            s_put64(msg + 1, (uint64_t)sent);
            sent_at[sent] = fzb_now_ns();
            if (zmq_send(dealer, msg, msglen, 0) < 0)
                fzb_die(prog, "send: %s", zmq_strerror(zmq_errno()));
            sent++;
        }
        int rc = zmq_poll(&item, 1, 1000);
        if (rc < 0 && zmq_errno() != EINTR)
            fzb_die(prog, "poll: %s", zmq_strerror(zmq_errno()));
        while (zmq_poll(&item, 1, 0) > 0) {
            int n = zmq_recv(dealer, buf, sizeof buf, 0);
            if (n < 9 || buf[0] != done_type)
                continue;
            uint64_t id = s_get64(buf + 1);
            if (id >= (uint64_t)total)
                continue;
            int64_t now = fzb_now_ns();
            if ((long long)id >= measured_from)
                fzb_lat_add(&lat, now - sent_at[id]);
            done++;
            last_progress = now;
        }
        if (!warm && done == o->warmup) {
            warm = true;
            t0 = fzb_now_ns();
            stop_at = t0 + o->secs * 1000000000LL;
            cpu0 = fzb_cpu(o->pid);
        }
        if (fzb_now_ns() - last_progress > 10 * 1000000000LL)
            fzb_die(prog, "no progress for 10 s (%lld of %lld done)", done, sent);
    }
    int64_t t1 = fzb_now_ns();
    fzb_cpu_t cpu1 = fzb_cpu(o->pid);
    fzb_result_cpu(&lat, done - o->warmup, t1 - t0, cpu0, cpu1);
    printf(" inflight=%lld size=%lld\n", o->inflight, o->size);
    fzb_lat_free(&lat);
    free(sent_at);
    free(msg);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (argc < 3) {
        s_usage(stderr);
        return 2;
    }
    const char *ep = argv[2];
    if (ep[0] == '-') {
        fprintf(stderr, "%s: %s wants an endpoint first (try --help)\n", prog, cmd);
        return 2;
    }
    if (!strcmp(cmd, "server"))
        return s_server(ep);
    if (!strcmp(cmd, "workers")) {
        if (argc != 4) {
            s_usage(stderr);
            return 2;
        }
        return s_workers(ep, (int)fzb_num(prog, "N", argv[3], 1, 1024));
    }
    client_mode_t mode;
    if (!strcmp(cmd, "echo"))
        mode = MODE_ECHO;
    else if (!strcmp(cmd, "submit"))
        mode = MODE_SUBMIT;
    else if (!strcmp(cmd, "cycle"))
        mode = MODE_CYCLE;
    else {
        fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
        return 2;
    }
    fzb_opts_t o;
    fzb_opts_defaults(&o);
    for (int i = 3; i < argc; i++) {
        if (!fzb_opt(prog, argc, argv, &i, &o)) {
            fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, argv[i]);
            return 2;
        }
    }
    return s_client(ep, mode, &o);
}
