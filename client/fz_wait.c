/*  fz_wait: following tasks to their end; see fz_wait.h. */

#include "fz_wait.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

#include "fz_cli.h"
#include "fz_event.h"
#include "fz_net.h"
#include "fz_report.h"

#define S_POLL_MS 1000     /* how often each waited-for task is asked about */
#define S_POLL_BATCH 50    /* at most this many `get`s per poll turn */
#define S_GIVE_UP_MS 60000 /* a broker silent this long while we wait is gone */

typedef struct {
    uint64_t id;
    int64_t next_poll; /* monotonic ms */
    bool done;
} waited_t;

struct fz_wait_t {
    zsock_t *sub;
    bool json, quiet;
    waited_t *w;
    size_t n, cap;
};

fz_wait_t *fz_wait_new(const char *events, bool json, bool quiet)
{
    fz_wait_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->json = json;
    self->quiet = quiet;
    self->sub = fz_net_socket(ZMQ_SUB);
    if (self->sub)
        zsock_set_subscribe(self->sub, "task.");
    if (!self->sub || zsock_connect(self->sub, "%s", events) != 0) {
        fz_wait_destroy(&self);
        return NULL;
    }
    return self;
}

void fz_wait_destroy(fz_wait_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zsock_destroy(&(*self_p)->sub);
    free((*self_p)->w);
    free(*self_p);
    *self_p = NULL;
}

int fz_wait_add(fz_wait_t *self, uint64_t id)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        waited_t *w = realloc(self->w, cap * sizeof *w);
        if (!w)
            return -1;
        self->w = w;
        self->cap = cap;
    }
    self->w[self->n++] = (waited_t){id, 0, false};
    return 0;
}

size_t fz_wait_count(const fz_wait_t *self)
{
    return self->n;
}

static waited_t *s_find_waited(waited_t *w, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (w[i].id == id && !w[i].done)
            return &w[i];
    return NULL;
}

/* Events shown as progress lines; the end of a task is told by the poll that follows. */
static bool s_is_progress(const char *what)
{
    static const char *shown[] = {"dispatched", "started",  "progress",       "requeued",
                                  "held",       "retrying", "attempt-failed", NULL};
    for (const char **s = shown; *s; s++)
        if (strcmp(what, *s) == 0)
            return true;
    return false;
}

/* Shows an event about one of our tasks on stderr; an end event makes its poll come now. */
static void s_on_event(const fz_event_t *ev, waited_t *w, size_t n, const fz_wait_t *o)
{
    waited_t *t = s_find_waited(w, n, fz_event_task(ev));
    if (!t)
        return;
    const char *what = fz_event_topic(ev) + strlen("task.");
    char state[32];
    fz_obj_str(fz_event_map(ev), "state", state, sizeof state);
    if (fz_report_state_final(what) || fz_report_state_final(state))
        t->next_poll = 0;
    else if (!o->quiet && s_is_progress(what)) {
        char details[1600];
        fz_cli_error("task %llu %s: %s", (unsigned long long)t->id, what,
                     fz_report_event_details(ev, 120, true, details, sizeof details));
    }
}

/* Reads events until `wait_ms` passes or an end event asks for a poll. */
static void s_pump_events(zsock_t *sub, int64_t wait_ms, waited_t *w, size_t n, const fz_wait_t *o)
{
    int64_t deadline = fz_clock_ms() + wait_ms;
    while (!fz_net_interrupted()) {
        int64_t left = deadline - fz_clock_ms();
        zmq_pollitem_t item = {zsock_resolve(sub), 0, ZMQ_POLLIN, 0};
        if (left <= 0 || zmq_poll(&item, 1, (long)left) <= 0 || !(item.revents & ZMQ_POLLIN))
            return;
        char why[256];
        fz_event_t *ev = fz_event_recv(sub, why, sizeof why);
        if (ev)
            s_on_event(ev, w, n, o);
        else if (*why)
            fz_debug("ignored a bad event: %s", why);
        bool poll_now = false;
        for (size_t i = 0; i < n; i++)
            poll_now |= !w[i].done && w[i].next_poll == 0;
        fz_event_destroy(&ev);
        if (poll_now)
            return;
    }
}

/* Asks for one task. Returns -1 if it has not ended, else its exit code (after printing the
   result). *reached says whether the broker answered at all. */
static int s_poll(fz_client_t *client, waited_t *t, const fz_wait_t *o, bool *reached)
{
    char err[512];
    fz_enc_t *req = fz_client_request(client, "get");
    fz_msg_t *reply = NULL;
    if (req)
        fz_enc_uint(req, "task", t->id);
    fz_err_t rc = req ? fz_client_ask(client, &req, "task", &reply, err, sizeof err) : FZ_EINTERNAL;
    *reached = rc != FZ_EUNAVAILABLE;
    if (rc == FZ_EUNAVAILABLE)
        return -1;
    if (rc != FZ_OK) {
        fz_cli_error("task %llu: %s", (unsigned long long)t->id, err);
        return fz_cli_exit_code(rc);
    }
    const msgpack_object *task = fz_msg_obj(reply, "task");
    const msgpack_object *attempts = fz_msg_obj(reply, "attempts");
    int code = fz_report_exit_code(task, attempts);
    if (code >= 0 && o->json)
        fz_cli_print_body_json(task, stdout);
    else if (code >= 0)
        fz_report_task_line(task, attempts, stdout);
    fflush(stdout);
    fz_msg_destroy(&reply);
    return code;
}

/* Follows every task in w to its end; returns the worst exit code. */
static int s_wait(fz_client_t *client, zsock_t *sub, waited_t *w, size_t n, const fz_wait_t *o)
{
    size_t left = n;
    int worst = FZ_EXIT_OK;
    int64_t last_reply = fz_clock_ms();
    bool warned = false;
    while (left > 0) {
        int64_t now = fz_clock_ms(), next = now + S_POLL_MS;
        for (size_t i = 0; i < n; i++)
            if (!w[i].done && w[i].next_poll < next)
                next = w[i].next_poll;
        s_pump_events(sub, next - now, w, n, o);
        for (size_t i = 0, asked = 0; i < n && asked < S_POLL_BATCH; i++) {
            if (fz_net_interrupted())
                break;
            if (w[i].done || w[i].next_poll > fz_clock_ms())
                continue;
            bool reached;
            int code = s_poll(client, &w[i], o, &reached);
            asked++;
            /* Space polls out so that many tasks cost about S_POLL_BATCH gets a second. */
            w[i].next_poll = fz_clock_ms() + S_POLL_MS * (int64_t)(1 + left / S_POLL_BATCH);
            if (!reached) {
                if (fz_clock_ms() - last_reply > S_GIVE_UP_MS) {
                    fz_cli_error("no reply from broker at %s for %d s; giving up (the tasks "
                                 "may still run)",
                                 fz_client_endpoint(client), S_GIVE_UP_MS / 1000);
                    return FZ_EXIT_UNAVAILABLE;
                }
                if (!warned && !fz_net_interrupted())
                    fz_cli_error("broker at %s is not answering; still waiting",
                                 fz_client_endpoint(client));
                warned = true;
                break;
            }
            last_reply = fz_clock_ms();
            warned = false;
            if (code >= 0) {
                w[i].done = true;
                left--;
                worst = code > worst ? code : worst;
            }
        }
        if (fz_net_interrupted()) {
            if (n == 1)
                fz_cli_error("interrupted; task %llu goes on (fz-ctl cancel %llu stops it)",
                             (unsigned long long)w[0].id, (unsigned long long)w[0].id);
            else
                fz_cli_error("interrupted; the tasks go on (fz-ctl cancel ID stops one)");
            return FZ_EXIT_INTERRUPTED;
        }
    }
    return worst;
}

int fz_wait_run(fz_wait_t *self, fz_client_t *client)
{
    return s_wait(client, self->sub, self->w, self->n, self);
}
