/*  fz_web_scrape: /metrics from broker requests; see fz_web_scrape.h. */

#include "fz_web_scrape.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void s_counter(FILE *out, const char *name, const char *help, double v)
{
    fz_web_metric_family(out, name, "counter", help);
    fz_web_metric_sample(out, name, v, NULL);
}

/* The broker's own loop: turns and commits, and the seconds spent in them, since it started
   (rate(seconds) / rate(total) is the mean time of one). */
static void s_metrics_loop(fz_msg_t *st, FILE *out)
{
    if (!fz_msg_has(st, "turns"))
        return; /* an older broker */
    s_counter(out, "fz_broker_turns_total", "Loop turns of the broker since it started.",
              (double)fz_msg_uint(st, "turns", 0));
    s_counter(out, "fz_broker_turn_seconds_total",
              "Seconds the broker spent in its loop turns (their work, not their waits).",
              fz_msg_float(st, "turn_seconds", 0));
    s_counter(out, "fz_broker_commits_total", "Loop turns that committed writes to the store.",
              (double)fz_msg_uint(st, "commits", 0));
    s_counter(out, "fz_broker_commit_seconds_total",
              "Seconds the broker spent committing its loop turns' writes.",
              fz_msg_float(st, "commit_seconds", 0));
    if (fz_msg_has(st, "sync_seconds"))
        s_counter(out, "fz_broker_sync_seconds_total",
                  "Seconds the fdatasyncs of the broker's commits took (--sync full; beside the "
                  "loop, the commit's replies waiting for them).",
                  fz_msg_float(st, "sync_seconds", 0));
}

static void s_gauge(FILE *out, const char *name, const char *help, double v)
{
    fz_web_metric_family(out, name, "gauge", help);
    fz_web_metric_sample(out, name, v, NULL);
}

char *fz_web_scrape(fz_client_t *c, fz_web_stats_t *stats, fz_web_hub_t *hub, size_t *len_p)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, len_p);
    if (!out)
        return NULL;
    double t0 = fz_clock_s();
    fz_enc_t *req = fz_client_request(c, "status");
    fz_msg_t *st = NULL;
    char err[256];
    bool up = req && fz_client_ask(c, &req, "status", &st, err, sizeof err) == FZ_OK;
    double rtt = fz_clock_s() - t0;
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
        s_metrics_loop(st, out);
        s_metrics_workers(c, out);
        s_metrics_cost(c, "model", out);
        s_metrics_cost(c, "class", out);
    }
    fz_msg_destroy(&st);
    fz_web_stats_write(stats, out);
    uint64_t pushed, lost, readers;
    fz_web_hub_stats(hub, &pushed, &lost, &readers);
    s_gauge(out, "fz_web_sse_clients", "Browsers following the live stream now.", (double)readers);
    fz_web_metric_family(out, "fz_web_sse_frames_total", "counter",
                         "Events put on the live stream.");
    fz_web_metric_sample(out, "fz_web_sse_frames_total", (double)pushed, NULL);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
