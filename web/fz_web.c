/*  fz-web: the factory as a live page, and /metrics for Prometheus.

    A client of the broker like fz-ctl and fz-watch: every page and endpoint is built from
    broker requests (status, budget, workers, list, get, cost, the controls), and the page
    stays live through server-sent events fed from the broker's PUB stream, with gaps filled
    from the `events` request as fz-watch does. It keeps nothing the broker does not have:
    a ring of recent events (fz_web_hub) and counts of what it saw (fz_web_stats).

    Threads: libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so
    an SSE stream may block waiting for events and a page may wait for the broker; each HTTP
    request talks to the broker over its own DEALER (a ZeroMQ socket belongs to one thread).
    The main thread reads the PUB stream into the hub. The page's files (web/static) are
    compiled in. */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fz_cli.h"
#include "fz_client.h"
#include "fz_event.h"
#include "fz_net.h"
#include "fz_web_api.h"
#include "fz_web_guard.h"
#include "fz_web_hub.h"
#include "fz_web_metrics.h"

#define S_DEFAULT_LISTEN "127.0.0.1:8570"
#define S_REQUEST_MS 4000
#define S_HUB_FRAMES 20000
#define S_HUB_BYTES (32u << 20)
#define S_KEEPALIVE_MS 15000
#define S_MAX_CONNECTIONS 512

struct fz_web_file {
    const char *path;
    const unsigned char *data;
    size_t size;
};
extern const struct fz_web_file fz_web_files[];

typedef struct {
    const char *broker, *events, *allow_host;
    char host[256]; /* the listen address, as Host headers name it */
    int port;
    char *token; /* NULL: controls off */
    fz_web_hub_t *hub;
    fz_web_stats_t *stats;
    /* the feed (main thread only) */
    fz_client_t *feed_client;
    uint64_t last_seq, replayed_to;
    int64_t replay_off_until;
} web_t;

static const char s_csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src "
                            "'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                            "base-uri 'none'; form-action 'none'";

/* ---------------------------------------------------------------- the feed */

/* The event as one line of JSON with its topic, for the page. */
static char *s_event_json(const fz_event_t *ev, size_t *len_p)
{
    char *text = NULL;
    FILE *mem = open_memstream(&text, len_p);
    if (!mem)
        return NULL;
    fz_cli_print_json_with(fz_event_map(ev), "topic", fz_event_topic(ev), mem);
    if (fclose(mem) != 0) {
        free(text);
        return NULL;
    }
    while (*len_p && text[*len_p - 1] == '\n')
        text[--*len_p] = 0;
    return text;
}

static void s_publish(web_t *web, const fz_event_t *ev)
{
    size_t len = 0;
    char *json = s_event_json(ev, &len);
    const char *topic = fz_event_topic(ev);
    fz_web_stats_event(web->stats, topic, fz_event_map(ev));
    if (json)
        fz_web_hub_push(web->hub, topic, fz_event_task(ev), strcmp(topic, "task.output") == 0, json,
                        len);
    free(json);
}

static fz_event_t *s_event_from(const msgpack_object *map)
{
    char topic[128], why[128];
    fz_obj_str(map, "event", topic, sizeof topic);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *map);
    fz_event_t *ev = fz_event_decode(topic, strlen(topic), sb.data, sb.size, why, sizeof why);
    msgpack_sbuffer_destroy(&sb);
    return ev;
}

/* Fills the gap before `upto` from the broker's recent events (as fz-watch does); returns
   the last seq accounted for. A failed ask is not repeated for 30 s. */
static uint64_t s_replay(web_t *web, uint64_t upto)
{
    uint64_t shown = web->last_seq;
    if (fz_clock_ms() < web->replay_off_until)
        return shown;
    if (!web->feed_client)
        web->feed_client =
            fz_client_new(fz_endpoint(web->broker, "FZ_BROKER", FZ_DEFAULT_BROKER), 2000);
    for (int asks = 0; asks < 64 && shown + 1 < upto; asks++) {
        fz_enc_t *req = web->feed_client ? fz_client_request(web->feed_client, "events") : NULL;
        if (!req)
            break;
        fz_enc_uint(req, "since", shown);
        fz_msg_t *reply = NULL;
        char err[256];
        if (fz_client_ask(web->feed_client, &req, "events", &reply, err, sizeof err) != FZ_OK) {
            fz_warn("cannot fetch missed events: %s", err);
            web->replay_off_until = fz_clock_ms() + 30000;
            break;
        }
        const msgpack_object *evs = fz_msg_obj(reply, "events");
        uint64_t before = shown;
        for (uint32_t i = 0; evs && i < evs->via.array.size; i++) {
            uint64_t seq = fz_obj_uint(&evs->via.array.ptr[i], "seq", 0);
            if (seq <= shown || seq >= upto)
                continue;
            if (seq > shown + 1)
                fz_web_stats_missed(web->stats, seq - shown - 1);
            fz_event_t *ev = s_event_from(&evs->via.array.ptr[i]);
            if (ev)
                s_publish(web, ev);
            fz_event_destroy(&ev);
            shown = seq;
        }
        bool more = fz_msg_uint(reply, "last", 0) > shown && shown > before;
        fz_msg_destroy(&reply);
        if (!more)
            break;
    }
    if (shown + 1 < upto && upto != UINT64_MAX)
        fz_web_stats_missed(web->stats, upto - shown - 1);
    if (shown > web->replayed_to)
        web->replayed_to = shown;
    return shown;
}

static void s_on_event(web_t *web, const fz_event_t *ev)
{
    uint64_t seq = fz_event_seq(ev);
    if (strcmp(fz_event_topic(ev), "broker.started") == 0) {
        web->replayed_to = 0;
        web->last_seq = 0; /* a new broker run numbers from 1 again */
    } else if (seq && seq <= web->replayed_to)
        return; /* a replay already published it */
    if (seq && web->last_seq && seq > web->last_seq + 1)
        web->last_seq = s_replay(web, seq);
    if (seq)
        web->last_seq = seq;
    s_publish(web, ev);
}

static int s_feed(web_t *web)
{
    const char *endpoint = fz_endpoint(web->events, "FZ_EVENTS", FZ_DEFAULT_EVENTS);
    zsock_t *sub = fz_net_socket(ZMQ_SUB);
    if (sub)
        zsock_set_subscribe(sub, "");
    if (!sub || zsock_connect(sub, "%s", endpoint) != 0) {
        zsock_destroy(&sub);
        fz_cli_error("cannot use event endpoint '%s'", endpoint);
        return FZ_EXIT_USAGE;
    }
    while (!fz_net_interrupted()) {
        zmq_pollitem_t item = {zsock_resolve(sub), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 500) <= 0 || !(item.revents & ZMQ_POLLIN))
            continue;
        char why[256];
        fz_event_t *ev = fz_event_recv(sub, why, sizeof why);
        if (ev)
            s_on_event(web, ev);
        else if (*why)
            fz_warn("ignored a bad event: %s", why);
        fz_event_destroy(&ev);
    }
    zsock_destroy(&sub);
    return FZ_EXIT_OK;
}

/* ---------------------------------------------------------------- HTTP helpers */

static enum MHD_Result s_send(struct MHD_Connection *conn, int status, const char *type, void *body,
                              size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Content-Security-Policy", s_csp);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result s_send_resp(struct MHD_Connection *conn, fz_web_resp_t resp)
{
    if (!resp.body)
        return s_send(conn, 500, "text/plain", "out of memory\n", 14, MHD_RESPMEM_PERSISTENT);
    return s_send(conn, resp.status, "application/json", resp.body, resp.len,
                  MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result s_send_error(struct MHD_Connection *conn, int status, const char *code,
                                    const char *message)
{
    return s_send_resp(conn, fz_web_api_error(status, code, message));
}

static const char *s_arg(struct MHD_Connection *conn, const char *key)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}

static const char *s_header(struct MHD_Connection *conn, const char *key)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, key);
}

static fz_client_t *s_client(web_t *web)
{
    return fz_client_new(fz_endpoint(web->broker, "FZ_BROKER", FZ_DEFAULT_BROKER), S_REQUEST_MS);
}

/* ---------------------------------------------------------------- static files */

static const char *s_type_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (dot && strcmp(dot, ".png") == 0)
        return "image/png";
    if (dot && strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    return "text/html; charset=utf-8";
}

static enum MHD_Result s_static(struct MHD_Connection *conn, const char *url)
{
    if (strcmp(url, "/") == 0)
        url = "/index.html";
    for (const struct fz_web_file *f = fz_web_files; f->path; f++)
        if (strcmp(f->path, url) == 0)
            return s_send(conn, 200, s_type_of(url), (void *)f->data, f->size,
                          MHD_RESPMEM_PERSISTENT);
    return s_send_error(conn, 404, "not-found", "no such page");
}

/* ---------------------------------------------------------------- SSE */

typedef struct {
    web_t *web;
    uint64_t pos, task;
    bool started, gap;
    char *frame; /* being sent */
    size_t len, off;
} sse_t;

static size_t s_put(char *buf, size_t max, size_t k, const char *s, size_t n)
{
    size_t take = n < max - k ? n : max - k;
    memcpy(buf + k, s, take);
    return take;
}

static ssize_t s_sse_read(void *cls, uint64_t offset, char *buf, size_t max)
{
    (void)offset;
    sse_t *s = cls;
    size_t k = 0;
    if (!s->started) {
        static const char hello[] = "retry: 2000\n\n";
        static const char gap[] = "event: gap\ndata: {}\n\n";
        s->started = true;
        k += s_put(buf, max, k, hello, sizeof hello - 1);
        if (s->gap)
            k += s_put(buf, max, k, gap, sizeof gap - 1);
        return (ssize_t)k;
    }
    while (k < max) {
        if (s->frame) {
            size_t n = s_put(buf, max, k, s->frame + s->off, s->len - s->off);
            k += n;
            s->off += n;
            if (s->off < s->len)
                break;
            free(s->frame);
            s->frame = NULL;
        }
        int rc = fz_web_hub_next(s->web->hub, &s->pos, s->task, k ? 0 : S_KEEPALIVE_MS, &s->frame,
                                 &s->len);
        s->off = 0;
        if (rc < 0)
            return k ? (ssize_t)k : MHD_CONTENT_READER_END_OF_STREAM;
        if (rc == 0) {
            if (!k) {
                static const char ka[] = ": keepalive\n\n";
                k += s_put(buf, max, k, ka, sizeof ka - 1);
            }
            break;
        }
    }
    return (ssize_t)k;
}

static void s_sse_free(void *cls)
{
    sse_t *s = cls;
    fz_web_hub_reader(s->web->hub, -1);
    free(s->frame);
    free(s);
}

static enum MHD_Result s_events(web_t *web, struct MHD_Connection *conn)
{
    uint64_t task = 0;
    const char *t = s_arg(conn, "task");
    if (t && (!fz_parse_uint(t, UINT64_MAX, &task) || !task))
        return s_send_error(conn, 400, "invalid", "task must be a task id");
    sse_t *s = calloc(1, sizeof *s);
    if (!s)
        return MHD_NO;
    s->web = web;
    s->task = task;
    s->pos = fz_web_hub_start(web->hub, s_header(conn, "Last-Event-ID"), &s->gap);
    fz_web_hub_reader(web->hub, +1);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, s_sse_read, s, s_sse_free);
    if (!r) {
        s_sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* ---------------------------------------------------------------- /metrics */

static void s_metrics_tasks(fz_client_t *c, const msgpack_object *counts, FILE *out)
{
    fz_web_metric_family(out, "fz_tasks", "gauge",
                         "Tasks by state and model (model \"*\": beyond the first 20000 of a "
                         "state, not broken down).");
    for (uint32_t i = 0; counts && counts->type == MSGPACK_OBJECT_MAP && i < counts->via.map.size;
         i++) {
        char state[32];
        const msgpack_object *k = &counts->via.map.ptr[i].key;
        uint64_t total = counts->via.map.ptr[i].val.via.u64;
        snprintf(state, sizeof state, "%.*s", (int)k->via.str.size, k->via.str.ptr);
        uint64_t listed = 0;
        fz_enc_t *req = total ? fz_client_request(c, "list") : NULL;
        fz_msg_t *reply = NULL;
        char err[256];
        if (req) {
            fz_enc_str(req, "state", state);
            fz_enc_uint(req, "limit", 20000);
        }
        if (req && fz_client_ask(c, &req, "tasks", &reply, err, sizeof err) == FZ_OK) {
            const msgpack_object *tasks = fz_msg_obj(reply, "tasks");
            /* models in order of first sight; O(n * models): fine for the few models a
               factory runs */
            char models[64][65];
            uint64_t n[64];
            size_t nm = 0;
            for (uint32_t j = 0; tasks && j < tasks->via.array.size; j++) {
                char model[65];
                fz_obj_str(&tasks->via.array.ptr[j], "model", model, sizeof model);
                size_t m = 0;
                while (m < nm && strcmp(models[m], model))
                    m++;
                if (m == nm && nm < 64) {
                    memcpy(models[nm], model, sizeof model);
                    n[nm++] = 0;
                }
                if (m < nm) {
                    n[m]++;
                    listed++;
                }
            }
            for (size_t m = 0; m < nm; m++)
                fz_web_metric_sample(out, "fz_tasks", (double)n[m], "state", state, "model",
                                     models[m], NULL);
        }
        fz_msg_destroy(&reply);
        if (total > listed || !total)
            fz_web_metric_sample(out, "fz_tasks", (double)(total - listed), "state", state, "model",
                                 total ? "*" : "", NULL);
    }
}

static void s_metrics_workers(fz_client_t *c, FILE *out)
{
    fz_enc_t *req = fz_client_request(c, "workers");
    fz_msg_t *reply = NULL;
    char err[256];
    uint64_t idle = 0, busy = 0, drain = 0, unhealthy = 0;
    if (req && fz_client_ask(c, &req, "workers", &reply, err, sizeof err) == FZ_OK) {
        const msgpack_object *ws = fz_msg_obj(reply, "workers");
        for (uint32_t i = 0; ws && i < ws->via.array.size; i++) {
            char state[16];
            const msgpack_object *w = &ws->via.array.ptr[i];
            fz_obj_str(w, "state", state, sizeof state);
            idle += strcmp(state, "idle") == 0;
            busy += strcmp(state, "busy") == 0;
            drain += strcmp(state, "drain") == 0;
            const msgpack_object *u = fz_obj_get(w, "unhealthy");
            unhealthy += u && u->type == MSGPACK_OBJECT_ARRAY && u->via.array.size > 0;
        }
    }
    fz_msg_destroy(&reply);
    fz_web_metric_family(out, "fz_workers", "gauge", "Connected workers by state.");
    fz_web_metric_sample(out, "fz_workers", (double)idle, "state", "idle", NULL);
    fz_web_metric_sample(out, "fz_workers", (double)busy, "state", "busy", NULL);
    fz_web_metric_sample(out, "fz_workers", (double)drain, "state", "drain", NULL);
    fz_web_metric_family(out, "fz_workers_unhealthy", "gauge",
                         "Workers marked unhealthy for at least one model (auth, agent "
                         "missing).");
    fz_web_metric_sample(out, "fz_workers_unhealthy", (double)unhealthy, NULL);
}

/* One family of a cost reply's rows: `field` of each row (a duration in ms is made seconds),
   labelled by its key as `label` (and direction, for the token families). */
static void s_cost_family(FILE *out, const msgpack_object *rows, const char *name, const char *help,
                          const char *label, const char *field, const char *direction, double scale)
{
    if (help)
        fz_web_metric_family(out, name, "counter", help);
    for (uint32_t i = 0; rows && i < rows->via.array.size; i++) {
        const msgpack_object *r = &rows->via.array.ptr[i];
        char key[128];
        fz_obj_str(r, "key", key, sizeof key);
        double v = fz_obj_float(r, field, 0) * scale;
        if (direction)
            fz_web_metric_sample(out, name, v, label, key, "direction", direction, NULL);
        else
            fz_web_metric_sample(out, name, v, label, key, NULL);
    }
}

static void s_metrics_cost(fz_client_t *c, const char *by, FILE *out)
{
    fz_enc_t *req = fz_client_request(c, "cost");
    fz_msg_t *reply = NULL;
    char err[256];
    if (req)
        fz_enc_str(req, "by", by);
    if (!req || fz_client_ask(c, &req, "cost", &reply, err, sizeof err) != FZ_OK)
        return;
    const msgpack_object *rows = fz_msg_obj(reply, "rows");
    if (strcmp(by, "model") == 0) {
        s_cost_family(out, rows, "fz_cost_usd_total",
                      "Cost of ended attempts, USD, by model (every day the store holds).", "model",
                      "cost_usd", NULL, 1);
        s_cost_family(out, rows, "fz_tokens_total",
                      "Tokens of ended attempts by model and direction.", "model", "tokens_in",
                      "in", 1);
        s_cost_family(out, rows, "fz_tokens_total", NULL, "model", "tokens_out", "out", 1);
        s_cost_family(out, rows, "fz_attempts_total", "Ended attempts by model.", "model",
                      "attempts", NULL, 1);
        s_cost_family(out, rows, "fz_attempt_seconds_total", "Run time of ended attempts by model.",
                      "model", "duration_ms", NULL, 0.001);
    } else
        s_cost_family(out, rows, "fz_attempts_by_class_total",
                      "Ended attempts by failure class (\"\": it did not fail).", "class",
                      "attempts", NULL, 1);
    fz_msg_destroy(&reply);
}

static void s_gauge(FILE *out, const char *name, const char *help, double v)
{
    fz_web_metric_family(out, name, "gauge", help);
    fz_web_metric_sample(out, name, v, NULL);
}

static enum MHD_Result s_metrics(web_t *web, struct MHD_Connection *conn)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    fz_client_t *c = s_client(web);
    if (!out || !c) {
        if (out)
            fclose(out);
        free(text);
        fz_client_destroy(&c);
        return s_send_error(conn, 500, "internal", "out of memory");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fz_enc_t *req = fz_client_request(c, "status");
    fz_msg_t *st = NULL;
    char err[256];
    bool up = req && fz_client_ask(c, &req, "status", &st, err, sizeof err) == FZ_OK;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double rtt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    s_gauge(out, "fz_broker_up", "1 if the broker answered this scrape's status request.", up);
    if (up) {
        s_gauge(out, "fz_broker_status_seconds",
                "Round trip of this scrape's status request to the broker.", rtt);
        s_metrics_tasks(c, fz_msg_obj(st, "counts"), out);
        s_gauge(out, "fz_running_agents", "Agents running now.",
                (double)fz_msg_uint(st, "running", 0));
        s_gauge(out, "fz_max_running", "The broker's limit of agents running at once.",
                (double)fz_msg_uint(st, "max_running", 0));
        s_gauge(out, "fz_paused", "1 while dispatch is paused.", fz_msg_bool(st, "paused", 0));
        s_gauge(out, "fz_budget_spent_today_usd", "Spent today (UTC day), USD.",
                fz_msg_float(st, "spent_today", 0));
        s_gauge(out, "fz_budget_reserved_usd", "Reserved by running attempts now, USD.",
                fz_msg_float(st, "reserved", 0));
        s_gauge(out, "fz_budget_cap_usd", "Today's cost cap, USD.", fz_msg_float(st, "budget", 0));
        s_metrics_workers(c, out);
        s_metrics_cost(c, "model", out);
        s_metrics_cost(c, "class", out);
    }
    fz_msg_destroy(&st);
    fz_client_destroy(&c);
    fz_web_stats_write(web->stats, out);
    uint64_t pushed, lost, readers;
    fz_web_hub_stats(web->hub, &pushed, &lost, &readers);
    s_gauge(out, "fz_web_sse_clients", "Browsers following the live stream now.", (double)readers);
    fz_web_metric_family(out, "fz_web_sse_frames_total", "counter",
                         "Events put on the live stream.");
    fz_web_metric_sample(out, "fz_web_sse_frames_total", (double)pushed, NULL);
    if (fclose(out) != 0) {
        free(text);
        return s_send_error(conn, 500, "internal", "out of memory");
    }
    return s_send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
                  MHD_RESPMEM_MUST_FREE);
}

/* ---------------------------------------------------------------- routing */

static enum MHD_Result s_api_get(web_t *web, struct MHD_Connection *conn, const char *url)
{
    if (strcmp(url, "/api/config") == 0) {
        char body[256];
        int n = snprintf(body, sizeof body, "{\"admin\":%s,\"version\":\"%s\"}",
                         web->token ? "true" : "false", FZ_VERSION);
        char *copy = strdup(body);
        return copy ? s_send(conn, 200, "application/json", copy, (size_t)n, MHD_RESPMEM_MUST_FREE)
                    : MHD_NO;
    }
    fz_client_t *c = s_client(web);
    if (!c)
        return s_send_error(conn, 502, "unavailable", "cannot make a broker connection");
    fz_web_resp_t r;
    uint64_t id = 0, limit = 200;
    if (strcmp(url, "/api/overview") == 0)
        r = fz_web_api_overview(c);
    else if (strncmp(url, "/api/task/", 10) == 0) {
        r = fz_parse_uint(url + 10, UINT64_MAX, &id) && id
                ? fz_web_api_task(c, id)
                : fz_web_api_error(400, "invalid", "not a task id");
    } else if (strcmp(url, "/api/tasks") == 0) {
        const char *l = s_arg(conn, "limit"), *state = s_arg(conn, "state");
        const char *tail = s_arg(conn, "tail");
        if (l && (!fz_parse_uint(l, 100000, &limit) || !limit))
            r = fz_web_api_error(400, "invalid", "limit must be 1..100000");
        else
            r = fz_web_api_list(c, state && *state ? state : NULL, limit,
                                !tail || strcmp(tail, "0") != 0);
    } else if (strcmp(url, "/api/cost") == 0) {
        const char *by = s_arg(conn, "by"), *since = s_arg(conn, "since");
        r = fz_web_api_cost(c, by ? by : "day", since && *since ? since : NULL);
    } else if (strcmp(url, "/api/digest") == 0)
        r = fz_web_api_digest(c, s_arg(conn, "since"));
    else
        r = fz_web_api_error(404, "not-found", "no such endpoint");
    fz_client_destroy(&c);
    return s_send_resp(conn, r);
}

/* POST /api/pause|resume|stop, /api/task/ID/cancel|retry|escalate */
static enum MHD_Result s_api_post(web_t *web, struct MHD_Connection *conn, const char *url)
{
    fz_web_verdict_t v = fz_web_guard_control(
        s_header(conn, "Host"), s_header(conn, "Origin"), s_header(conn, "X-FZ-Token"),
        s_header(conn, "Authorization"), web->token, web->host, web->port, web->allow_host);
    if (v != FZ_WEB_OK) {
        fz_info("refused %s: %s", url, fz_web_verdict_text(v));
        return s_send_error(conn, fz_web_verdict_status(v), "refused", fz_web_verdict_text(v));
    }
    uint64_t id = 0;
    char what[32] = "";
    if (strncmp(url, "/api/task/", 10) == 0) {
        char *end = NULL;
        id = strtoull(url + 10, &end, 10);
        if (!id || *end != '/' || strlen(end + 1) >= sizeof what)
            return s_send_error(conn, 404, "not-found", "no such control");
        snprintf(what, sizeof what, "%s", end + 1);
    } else if (strlen(url + 5) < sizeof what)
        snprintf(what, sizeof what, "%s", url + 5);
    fz_client_t *c = s_client(web);
    if (!c)
        return s_send_error(conn, 502, "unavailable", "cannot make a broker connection");
    fz_web_resp_t r = fz_web_api_control(c, what, id);
    fz_client_destroy(&c);
    if (r.status == 200)
        fz_info("control %s%s%s done", what, id ? " of task " : "", id ? url + 10 : "");
    return s_send_resp(conn, r);
}

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    web_t *web = cls;
    static int s_seen;
    if (!*con_cls) { /* the headers: wait for the body (ignored) before answering */
        *con_cls = &s_seen;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (!fz_web_host_ok(s_header(conn, "Host"), web->host, web->port, web->allow_host))
        return s_send_error(conn, 421, "refused", fz_web_verdict_text(FZ_WEB_BAD_HOST));
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(method, "POST") == 0 && strncmp(url, "/api/", 5) == 0)
        return s_api_post(web, conn, url);
    if (!get)
        return s_send_error(conn, 405, "invalid", "method not allowed");
    if (strcmp(url, "/metrics") == 0)
        return s_metrics(web, conn);
    if (strcmp(url, "/events") == 0)
        return s_events(web, conn);
    if (strncmp(url, "/api/", 5) == 0)
        return s_api_get(web, conn, url);
    return s_static(conn, url);
}

/* ---------------------------------------------------------------- main */

static int s_help(void)
{
    printf(
        "Usage: fz-web [--listen HOST:PORT] [--broker EP] [--events EP]\n"
        "              [--admin-token-file FILE] [--allow-host NAMES]\n"
        "Serve the factory as a live page (http://HOST:PORT/) and Prometheus metrics\n"
        "(/metrics). A client of the broker: it holds nothing the broker does not have.\n"
        "\n"
        "Options:\n"
        "  -l, --listen HOST:PORT   where to serve (default " S_DEFAULT_LISTEN "; port 0:\n"
        "                           any free one, printed at start)\n"
        "  -b, --broker EP          broker endpoint (default $FZ_BROKER or " FZ_DEFAULT_BROKER ")\n"
        "  -e, --events EP          event endpoint (default $FZ_EVENTS or " FZ_DEFAULT_EVENTS ")\n"
        "  -a, --admin-token-file FILE\n"
        "                           turn the controls on (pause, resume, stop, cancel, retry,\n"
        "                           escalate): a request must carry the token in FILE (its\n"
        "                           first line) in the X-FZ-Token header, from this origin\n"
        "  -H, --allow-host NAMES   more host names this server answers to (comma-separated;\n"
        "                           loopback names always, IP literals on 0.0.0.0)\n"
        "  -h, --help               this help\n"
        "  -V, --version            print the version\n"
        "\n"
        "Endpoints: / (the page), /events (server-sent events; ?task=ID), /metrics,\n"
        "/api/overview, /api/tasks?state=S&limit=N, /api/task/ID, /api/cost?by=day|model,\n"
        "/api/digest?since=1h, POST /api/pause|resume|stop, POST /api/task/ID/cancel|retry|\n"
        "escalate.\n"
        "Exits 0 on SIGINT/SIGTERM, 1 when it cannot listen, 2 on bad usage.\n"
        "\n"
        "%s\n",
        fz_cli_help_env);
    return FZ_EXIT_OK;
}

/* The first line of the token file; NULL (said why) if unreadable, empty or short. */
static char *s_read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fz_cli_error("--admin-token-file: cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    char line[1024] = "";
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    if (!got || strlen(line) < 8) {
        fz_cli_error("--admin-token-file: '%s' must hold a token of at least 8 characters on "
                     "its first line",
                     path);
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 0077))
        fz_cli_error("warning: '%s' can be read by other users (chmod 600 it)", path);
    return strdup(line);
}

/* "HOST:PORT" / "[V6]:PORT" into web->host/port and a socket address. */
static bool s_parse_listen(const char *arg, web_t *web, struct sockaddr_storage *sa, bool *v6)
{
    const char *colon = strrchr(arg, ':');
    uint64_t port = 0;
    if (!colon || colon == arg || !fz_parse_uint(colon + 1, 65535, &port))
        return false;
    size_t len = (size_t)(colon - arg);
    if (len >= sizeof web->host)
        return false;
    memcpy(web->host, arg, len);
    web->host[len] = 0;
    char name[256];
    snprintf(name, sizeof name, "%s", web->host);
    if (name[0] == '[') {
        if (name[len - 1] != ']')
            return false;
        name[len - 1] = 0;
        memmove(name, name + 1, len - 1);
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(name, colon + 1, &hints, &res) != 0 || !res)
        return false;
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    web->port = (int)port;
    return true;
}

static const struct option s_long[] = {{"listen", required_argument, NULL, 'l'},
                                       {"broker", required_argument, NULL, 'b'},
                                       {"events", required_argument, NULL, 'e'},
                                       {"admin-token-file", required_argument, NULL, 'a'},
                                       {"allow-host", required_argument, NULL, 'H'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"version", no_argument, NULL, 'V'},
                                       {NULL, 0, NULL, 0}};

int main(int argc, char **argv)
{
    fz_cli_init("fz-web");
    web_t web = {0};
    const char *listen = S_DEFAULT_LISTEN, *token_file = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":l:b:e:a:H:hV", s_long, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'b':
            web.broker = optarg;
            break;
        case 'e':
            web.events = optarg;
            break;
        case 'a':
            token_file = optarg;
            break;
        case 'H':
            web.allow_host = optarg;
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
    }
    if (optind < argc)
        return fz_cli_usage_error("unexpected argument '%s'", argv[optind]);
    struct sockaddr_storage sa = {0};
    bool v6 = false;
    if (!s_parse_listen(listen, &web, &sa, &v6))
        return fz_cli_usage_error("--listen: '%s' is not HOST:PORT (127.0.0.1:8570, [::1]:8570)",
                                  listen);
    if (token_file && !(web.token = s_read_token(token_file)))
        return FZ_EXIT_USAGE;
    web.hub = fz_web_hub_new(S_HUB_FRAMES, S_HUB_BYTES);
    web.stats = fz_web_stats_new();
    if (!web.hub || !web.stats) {
        fz_cli_error("out of memory");
        return FZ_EXIT_FAILED;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)web.port, NULL, NULL, s_handle, &web, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)S_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    int code = FZ_EXIT_FAILED;
    if (!d)
        fz_cli_error("cannot listen on %s: %s", listen, strerror(errno));
    else {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        if (info && info->port)
            web.port = info->port;
        printf("fz-web: serving http://%s:%d/ (controls %s)\n", web.host, web.port,
               web.token ? "on, with the admin token" : "off");
        fflush(stdout);
        code = s_feed(&web);
        fz_web_hub_stop(web.hub);
        MHD_stop_daemon(d);
    }
    fz_client_destroy(&web.feed_client);
    fz_web_hub_destroy(&web.hub);
    fz_web_stats_destroy(&web.stats);
    free(web.token);
    return code;
}
