/*  fzb-beanstalk: the beanstalkd load generator of scripts/bench, a minimal client of
    beanstalkd's text protocol over TCP (doc/protocol.txt of beanstalkd).

      put    `put` commands pipelined on one connection, K in flight; an operation is done at
             its INSERTED reply (with -b, the job was written to the binlog first);
      cycle  a closed loop with K jobs in flight: one producer connection puts, N consumer
             connections (one thread each) `reserve` and `delete`; an operation is done at
             its DELETED reply (the delete is in the binlog). The fz equivalent is
             submit -> dispatch -> result -> recorded. */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "fzb_common.h"

static const char *prog = "fzb-beanstalk";

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: fzb-beanstalk put --port P [OPTIONS]\n"
            "       fzb-beanstalk cycle --port P --workers N [OPTIONS]\n"
            "\n"
            "beanstalkd load generator for scripts/bench (text protocol over TCP).\n"
            "  put      puts pipelined on one connection, K in flight; done at INSERTED\n"
            "  cycle    put -> reserve -> delete, K jobs in flight, N consumer connections;\n"
            "           done at DELETED\n"
            "\n"
            "Options:\n"
            "  --host A       beanstalkd address (default 127.0.0.1)\n"
            "  --port P       beanstalkd port (required)\n"
            "  --workers N    consumer connections (cycle; default 4)\n" FZB_COMMON_HELP
            "  -h, --help     this help\n"
            "\n"
            "Prints one line 'RESULT ops=.. secs=.. rate=.. p50_us=.. p99_us=.. ...' on stdout.\n"
            "Exit status: 0 done, 1 runtime error or timeout, 2 bad usage.\n");
}

/* ---------------------------------------------------------------- a connection */

typedef struct {
    int fd;
    char buf[131072];
    size_t start, end; /* unread bytes are buf[start..end) */
} conn_t;

static conn_t *s_connect(const char *host, int port)
{
    conn_t *c = calloc(1, sizeof *c);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (!c || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        fzb_die(prog, "bad address %s", host);
    int64_t give_up = fzb_now_ns() + 10 * 1000000000LL;
    for (;;) {
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        if (c->fd >= 0)
            close(c->fd);
        if (fzb_now_ns() > give_up)
            fzb_die(prog, "cannot connect to %s:%d: %s", host, port, strerror(errno));
        usleep(20000);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

static void s_write(conn_t *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(c->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fzb_die(prog, "write: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Makes at least `need` unread bytes available. */
static void s_fill(conn_t *c, size_t need)
{
    if (need > sizeof c->buf)
        fzb_die(prog, "reply too large");
    if (c->end - c->start >= need)
        return;
    if (c->start + need > sizeof c->buf) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    while (c->end - c->start < need) {
        ssize_t n = read(c->fd, c->buf + c->end, sizeof c->buf - c->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fzb_die(prog, "read: %s", n ? strerror(errno) : "connection closed");
        c->end += (size_t)n;
    }
}

/* The next reply line, NUL-terminated in place, without its \r\n. */
static char *s_line(conn_t *c)
{
    for (size_t scanned = 0;;) {
        char *nl = memchr(c->buf + c->start + scanned, '\n', c->end - c->start - scanned);
        if (nl) {
            char *line = c->buf + c->start;
            *nl = 0;
            if (nl > line && nl[-1] == '\r')
                nl[-1] = 0;
            c->start = (size_t)(nl - c->buf) + 1;
            return line;
        }
        scanned = c->end - c->start;
        s_fill(c, scanned + 1);
    }
}

/* ---------------------------------------------------------------- jobs */

#define STOP_PRI 4294967295ULL /* least urgent: after every real job */

/* Tags the jobs of this run, so that jobs left in the server by someone else are not
   counted. */
static unsigned long long s_run_id;

/* A put command with a body of `size` bytes that starts with "RUN:INDEX " (or "STOP "). */
static size_t s_put_cmd(char *out, size_t cap, unsigned long long pri, long long index,
                        long long size)
{
    int h = snprintf(out, cap, "put %llu 0 60 %lld\r\n", pri, size);
    char *body = out + h;
    memset(body, 'x', (size_t)size);
    char tag[32];
    int t = index < 0 ? snprintf(tag, sizeof tag, "STOP ")
                      : snprintf(tag, sizeof tag, "%llx:%lld ", s_run_id, index);
    memcpy(body, tag, (size_t)t < (size_t)size ? (size_t)t : (size_t)size);
    memcpy(body + size, "\r\n", 2);
    return (size_t)h + (size_t)size + 2;
}

static void s_expect_inserted(conn_t *c)
{
    char *line = s_line(c);
    if (strncmp(line, "INSERTED ", 9) != 0)
        fzb_die(prog, "put: unexpected reply '%s'", line);
}

/* ---------------------------------------------------------------- put */

static int s_put(const char *host, int port, const fzb_opts_t *o)
{
    conn_t *c = s_connect(host, port);
    long long total = o->warmup + o->n;
    size_t cap = (size_t)o->size + 64;
    char *cmd = malloc(cap);
    int64_t *sent_at = calloc((size_t)total, sizeof *sent_at);
    fzb_lat_t lat;
    fzb_lat_init(&lat, (size_t)o->n);
    long long sent = 0, done = 0;
    bool warm = o->warmup == 0;
    int64_t t0 = warm ? fzb_now_ns() : 0, stop_at = warm ? t0 + o->secs * 1000000000LL : INT64_MAX;
    fzb_cpu_t cpu0 = fzb_cpu(warm ? o->pid : 0);
    /* Replies come in order: the oldest outstanding put is the one answered. */
    while (done < sent || (sent < total && fzb_now_ns() < stop_at)) {
        while (sent < total && sent - done < o->inflight && (warm || sent < o->warmup) &&
               (!warm || fzb_now_ns() < stop_at)) {
            size_t len = s_put_cmd(cmd, cap, 0, sent, o->size);
            sent_at[sent] = fzb_now_ns();
            s_write(c, cmd, len);
            sent++;
        }
        s_expect_inserted(c);
        if (done >= o->warmup)
            fzb_lat_add(&lat, fzb_now_ns() - sent_at[done]);
        done++;
        if (!warm && done == o->warmup) {
            warm = true;
            t0 = fzb_now_ns();
            stop_at = t0 + o->secs * 1000000000LL;
            cpu0 = fzb_cpu(o->pid);
        }
    }
    int64_t t1 = fzb_now_ns();
    fzb_cpu_t cpu1 = fzb_cpu(o->pid);
    fzb_result_cpu(&lat, done - o->warmup, t1 - t0, cpu0, cpu1);
    printf(" inflight=%lld size=%lld\n", o->inflight, o->size);
    fzb_lat_free(&lat);
    free(sent_at);
    free(cmd);
    close(c->fd);
    free(c);
    return 0;
}

/* ---------------------------------------------------------------- cycle */

typedef struct {
    const char *host;
    int port;
    const fzb_opts_t *o;
    long long total;
    int64_t *sent_at;
    int64_t *ended_at; /* per job index, written by the consumer that deleted it */
    atomic_llong done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool producer_waits;
} cycle_t;

static void *s_consumer(void *arg)
{
    cycle_t *cy = arg;
    conn_t *c = s_connect(cy->host, cy->port);
    char cmd[64];
    for (;;) {
        s_write(c, "reserve\r\n", 9);
        char *line = s_line(c);
        unsigned long long id;
        size_t bytes;
        if (sscanf(line, "RESERVED %llu %zu", &id, &bytes) != 2)
            fzb_die(prog, "reserve: unexpected reply '%s'", line);
        s_fill(c, bytes + 2);
        char *body = c->buf + c->start;
        bool stop = bytes >= 4 && memcmp(body, "STOP", 4) == 0;
        char *end = NULL;
        long long index = -1;
        if (!stop && strtoull(body, &end, 16) == s_run_id && end && *end == ':')
            index = strtoll(end + 1, NULL, 10);
        c->start += bytes + 2;
        int n = snprintf(cmd, sizeof cmd, "delete %llu\r\n", id);
        s_write(c, cmd, (size_t)n);
        line = s_line(c);
        if (strcmp(line, "DELETED") != 0)
            fzb_die(prog, "delete: unexpected reply '%s'", line);
        if (stop)
            break;
        if (index < 0 || index >= cy->total)
            continue; /* not a job of this run */
        cy->ended_at[index] = fzb_now_ns();
        atomic_fetch_add(&cy->done, 1);
        pthread_mutex_lock(&cy->mu);
        if (cy->producer_waits)
            pthread_cond_signal(&cy->cv);
        pthread_mutex_unlock(&cy->mu);
    }
    close(c->fd);
    free(c);
    return NULL;
}

/* Blocks until fewer than `limit` jobs are in flight (or 15 s without progress: fatal). */
static long long s_wait_below(cycle_t *cy, long long sent, long long limit)
{
    long long done = atomic_load(&cy->done);
    if (sent - done < limit)
        return done;
    pthread_mutex_lock(&cy->mu);
    int64_t last = fzb_now_ns();
    long long seen = done;
    while (sent - (done = atomic_load(&cy->done)) >= limit) {
        if (done != seen) {
            seen = done;
            last = fzb_now_ns();
        }
        if (fzb_now_ns() - last > 15 * 1000000000LL)
            fzb_die(prog, "no progress for 15 s (%lld of %lld done)", done, sent);
        cy->producer_waits = true;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cy->cv, &cy->mu, &ts);
        cy->producer_waits = false;
    }
    pthread_mutex_unlock(&cy->mu);
    return done;
}

static int s_cycle(const char *host, int port, const fzb_opts_t *o)
{
    cycle_t cy = {.host = host, .port = port, .o = o, .total = o->warmup + o->n};
    s_run_id = ((unsigned long long)getpid() << 32) ^ (unsigned long long)fzb_now_ns();
    pthread_mutex_init(&cy.mu, NULL);
    pthread_cond_init(&cy.cv, NULL);
    atomic_init(&cy.done, 0);
    cy.sent_at = calloc((size_t)cy.total, sizeof *cy.sent_at);
    cy.ended_at = calloc((size_t)cy.total, sizeof *cy.ended_at);
    conn_t *c = s_connect(host, port);
    pthread_t *th = calloc((size_t)o->workers, sizeof *th);
    for (long long i = 0; i < o->workers; i++)
        if (pthread_create(&th[i], NULL, s_consumer, &cy))
            fzb_die(prog, "cannot start a thread");
    size_t cap = (size_t)o->size + 64;
    char *batch = malloc(cap * (size_t)(o->inflight + 1));

    long long sent = 0;
    bool warm = o->warmup == 0;
    int64_t t0 = 0, stop_at = INT64_MAX;
    fzb_cpu_t cpu0 = {-1, -1};
    if (warm) {
        t0 = fzb_now_ns();
        stop_at = t0 + o->secs * 1000000000LL;
        cpu0 = fzb_cpu(o->pid);
    }
    while (sent < cy.total) {
        long long limit = warm ? cy.total : o->warmup;
        if (sent >= limit) {
            s_wait_below(&cy, sent, 1); /* the warm-up is over when all of it is */
            warm = true;
            t0 = fzb_now_ns();
            stop_at = t0 + o->secs * 1000000000LL;
            cpu0 = fzb_cpu(o->pid);
            continue;
        }
        if (fzb_now_ns() >= stop_at)
            break;
        long long done = s_wait_below(&cy, sent, o->inflight);
        long long k = o->inflight - (sent - done);
        if (k > o->inflight)
            k = o->inflight;
        if (k > limit - sent)
            k = limit - sent;
        /* The puts of one batch go in one write; their replies are read after. */
        size_t len = 0;
        int64_t now = fzb_now_ns();
        for (long long i = 0; i < k; i++) {
            cy.sent_at[sent + i] = now;
            len += s_put_cmd(batch + len, cap, 0, sent + i, o->size);
        }
        s_write(c, batch, len);
        for (long long i = 0; i < k; i++)
            s_expect_inserted(c);
        sent += k;
    }
    s_wait_below(&cy, sent, 1);
    int64_t t1 = fzb_now_ns();
    fzb_cpu_t cpu1 = fzb_cpu(o->pid);

    /* One stop job per consumer, least urgent, so they come after every real job. */
    for (long long i = 0; i < o->workers; i++) {
        size_t len = s_put_cmd(batch, cap, STOP_PRI, -1, o->size);
        s_write(c, batch, len);
        s_expect_inserted(c);
    }
    for (long long i = 0; i < o->workers; i++)
        pthread_join(th[i], NULL);

    fzb_lat_t lat;
    fzb_lat_init(&lat, (size_t)o->n);
    long long ops = sent - o->warmup;
    for (long long i = o->warmup; i < sent; i++)
        fzb_lat_add(&lat, cy.ended_at[i] - cy.sent_at[i]);
    fzb_result_cpu(&lat, ops, t1 - t0, cpu0, cpu1);
    printf(" inflight=%lld size=%lld workers=%lld\n", o->inflight, o->size, o->workers);
    fzb_lat_free(&lat);
    free(batch);
    free(th);
    free(cy.sent_at);
    free(cy.ended_at);
    close(c->fd);
    free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    bool cycle;
    if (!strcmp(argv[1], "put"))
        cycle = false;
    else if (!strcmp(argv[1], "cycle"))
        cycle = true;
    else {
        fprintf(stderr, "%s: unknown command '%s' (try --help)\n", prog, argv[1]);
        return 2;
    }
    fzb_opts_t o;
    fzb_opts_defaults(&o);
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = (int)fzb_num(prog, "--port", argv[++i], 1, 65535);
        else if (!fzb_opt(prog, argc, argv, &i, &o)) {
            fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, argv[i]);
            return 2;
        }
    }
    if (!port) {
        fprintf(stderr, "%s: --port is required (try --help)\n", prog);
        return 2;
    }
    return cycle ? s_cycle(host, port, &o) : s_put(host, port, &o);
}
