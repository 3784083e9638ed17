/*  fz_web_metrics: Prometheus text exposition (format 0.0.4) for fz-web's /metrics, and the
    numbers fz-web counts itself from the event stream.

    The writers are pure (FILE * in, text out), so a test checks the format byte by byte:
    every family gets # HELP and # TYPE once, label values are escaped (\\, \", \n), numbers
    are printed so that Prometheus parses them (+Inf, integers without exponent).

    fz_web_stats_t counts, from the events fz-web sees (so they start at 0 when it starts, as
    counters may): attempts that ended, by outcome and failure class, and the dispatch
    latency (from task.submitted to the task's first task.started) as a histogram. It is
    thread-safe (one lock). */

#ifndef FZ_WEB_METRICS_H
#define FZ_WEB_METRICS_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

/* "# HELP name help\n# TYPE name type\n" (type: gauge, counter, histogram). */
void fz_web_metric_family(FILE *out, const char *name, const char *type, const char *help);
/* "name{k1="v1",k2="v2"} value\n": labels are pairs of strings ending in NULL. */
void fz_web_metric_sample(FILE *out, const char *name, double value, ...) __attribute__((sentinel));
/* A label value with \\, \" and newlines escaped, into buf (cut to fit). Returns buf. */
char *fz_web_metric_escape(const char *value, char *buf, size_t size);
/* A sample value as Prometheus reads it ("3", "0.25", "+Inf", "NaN"). Returns buf. */
char *fz_web_metric_number(double v, char *buf, size_t size);

#define FZ_WEB_HIST_BUCKETS 12
typedef struct {
    double le[FZ_WEB_HIST_BUCKETS]; /* upper bounds, increasing; +Inf is implied */
    uint64_t counts[FZ_WEB_HIST_BUCKETS + 1];
    double sum;
    uint64_t count;
} fz_web_hist_t;

/* A histogram with the dispatch-latency buckets (0.1 s .. 4 h). */
void fz_web_hist_init(fz_web_hist_t *h);
void fz_web_hist_observe(fz_web_hist_t *h, double v);
/* name_bucket{le=...} (cumulative), name_sum, name_count; the family line first. */
void fz_web_metric_histogram(FILE *out, const char *name, const char *help, const fz_web_hist_t *h);

typedef struct fz_web_stats_t fz_web_stats_t;
fz_web_stats_t *fz_web_stats_new(void);
void fz_web_stats_destroy(fz_web_stats_t **self_p);
/* Counts one event (its topic and map). */
void fz_web_stats_event(fz_web_stats_t *self, const char *topic, const msgpack_object *map);
/* Counts events the stream missed for good (a gap the broker could not fill). */
void fz_web_stats_missed(fz_web_stats_t *self, uint64_t n);
/* Writes the families it counts (fz_attempts_ended_total, fz_dispatch_latency_seconds,
   fz_web_events_total, fz_web_events_missed_total). */
void fz_web_stats_write(fz_web_stats_t *self, FILE *out);

#endif
