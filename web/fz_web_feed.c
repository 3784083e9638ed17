/*  fz_web_feed: the PUB stream into the hub, gaps filled; see fz_web_feed.h. */

#include "fz_web_feed.h"

#include <stdlib.h>
#include <string.h>

#include "fz_cli.h"
#include "fz_client.h"
#include "fz_event.h"
#include "fz_net.h"

struct fz_web_feed_t {
    const char *broker, *events;
    fz_web_hub_t *hub;     /* the caller's */
    fz_web_stats_t *stats; /* the caller's */
    fz_client_t *client;   /* to ask for missed events; made on the first gap */
    uint64_t last_seq, replayed_to;
    int64_t replay_off_until;
};

fz_web_feed_t *fz_web_feed_new(const char *broker, const char *events, fz_web_hub_t *hub,
                               fz_web_stats_t *stats)
{
    fz_web_feed_t *self = calloc(1, sizeof *self);
    if (self)
        *self = (fz_web_feed_t){.broker = broker, .events = events, .hub = hub, .stats = stats};
    return self;
}

void fz_web_feed_destroy(fz_web_feed_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_client_destroy(&(*self_p)->client);
    free(*self_p);
    *self_p = NULL;
}

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

static void s_publish(fz_web_feed_t *web, const fz_event_t *ev)
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

static bool s_replay_show(void *arg, fz_event_t *ev)
{
    s_publish(arg, ev);
    return false;
}

static void s_replay_missed(void *arg, uint64_t first, uint64_t last)
{
    fz_web_feed_t *web = arg;
    fz_web_stats_missed(web->stats, last - first + 1);
}

/* Fills the gap before `upto` from the broker's recent events (as fz-watch does); returns
   the last seq accounted for. A failed ask is not repeated for 30 s. */
static uint64_t s_replay(fz_web_feed_t *web, uint64_t upto)
{
    uint64_t shown = web->last_seq;
    if (fz_clock_ms() < web->replay_off_until)
        return shown;
    if (!web->client)
        web->client = fz_client_new(fz_endpoint(web->broker, "FZ_BROKER", FZ_DEFAULT_BROKER), 2000);
    char err[256];
    bool failed;
    shown = fz_event_fill(web->client, shown, upto, s_replay_show, s_replay_missed, web, err,
                          sizeof err, &failed);
    if (failed) {
        fz_warn("cannot fetch missed events: %s", err);
        web->replay_off_until = fz_clock_ms() + 30000;
    }
    if (shown + 1 < upto && upto != UINT64_MAX)
        fz_web_stats_missed(web->stats, upto - shown - 1);
    if (shown > web->replayed_to)
        web->replayed_to = shown;
    return shown;
}

static void s_on_event(fz_web_feed_t *web, const fz_event_t *ev)
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

int fz_web_feed_run(fz_web_feed_t *web)
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
