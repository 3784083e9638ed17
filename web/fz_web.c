/*  fz-web: the factory as a live page, and /metrics for Prometheus.

    A client of the broker like fz-ctl and fz-watch: every page and endpoint is built from
    broker requests (status, budget, workers, list, get, cost, the controls), and the page
    stays live through server-sent events fed from the broker's PUB stream, with gaps filled
    from the `events` request as fz-watch does. It keeps nothing the broker does not have:
    a ring of recent events (fz_web_hub) and counts of what it saw (fz_web_stats).

    Threads: libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so
    an SSE stream may block waiting for events and a page may wait for the broker; each HTTP
    request talks to the broker over its own DEALER (a ZeroMQ socket belongs to one thread).
    The main thread reads the PUB stream into the hub (fz_web_feed); /metrics is gathered at
    scrape time (fz_web_scrape); the JSON endpoints are fz_web_api. This file is the HTTP
    side: routes, the SSE streams, the static files (web/static, compiled in) and main. */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fz_cli.h"
#include "fz_client.h"
#include "fz_net.h"
#include "fz_web_api.h"
#include "fz_web_feed.h"
#include "fz_web_guard.h"
#include "fz_web_hub.h"
#include "fz_web_metrics.h"
#include "fz_web_scrape.h"

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
} web_t;

static const char s_csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src "
                            "'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                            "base-uri 'none'; form-action 'none'";

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

/* ---------------------------------------------------------------- routing */

static enum MHD_Result s_metrics(web_t *web, struct MHD_Connection *conn)
{
    fz_client_t *c = s_client(web);
    size_t len = 0;
    char *text = c ? fz_web_scrape(c, web->stats, web->hub, &len) : NULL;
    fz_client_destroy(&c);
    if (!text)
        return s_send_error(conn, 500, "internal", "out of memory");
    return s_send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
                  MHD_RESPMEM_MUST_FREE);
}

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
    if (fz_cli_curve(&argc, argv) != 0)
        return FZ_EXIT_USAGE;
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
        fz_web_feed_t *feed = fz_web_feed_new(web.broker, web.events, web.hub, web.stats);
        code = feed ? fz_web_feed_run(feed) : FZ_EXIT_FAILED;
        fz_web_feed_destroy(&feed);
        fz_web_hub_stop(web.hub);
        MHD_stop_daemon(d);
    }
    fz_web_hub_destroy(&web.hub);
    fz_web_stats_destroy(&web.stats);
    free(web.token);
    return code;
}
