/*  fz_web_metrics: Prometheus text and the counts fz-web keeps; see fz_web_metrics.h. */

#include "fz_web_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fz_msg.h"

void fz_web_metric_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *fz_web_metric_escape(const char *value, char *buf, size_t size)
{
    size_t k = 0;
    for (; *value && k + 3 < size; value++) {
        if (*value == '\\' || *value == '"') {
            buf[k++] = '\\';
            buf[k++] = *value;
        } else if (*value == '\n') {
            buf[k++] = '\\';
            buf[k++] = 'n';
        } else
            buf[k++] = *value;
    }
    buf[k] = 0;
    return buf;
}

char *fz_web_metric_number(double v, char *buf, size_t size)
{
    if (isnan(v))
        snprintf(buf, size, "NaN");
    else if (isinf(v))
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, size, "%.0f", v);
    else
        snprintf(buf, size, "%.9g", v);
    return buf;
}

void fz_web_metric_sample(FILE *out, const char *name, double value, ...)
{
    va_list ap;
    va_start(ap, value);
    fputs(name, out);
    int n = 0;
    for (const char *key; (key = va_arg(ap, const char *)) != NULL; n++) {
        const char *val = va_arg(ap, const char *);
        char esc[512];
        fprintf(out, "%s%s=\"%s\"", n ? "," : "{", key,
                fz_web_metric_escape(val ? val : "", esc, sizeof esc));
    }
    va_end(ap);
    char num[64];
    fprintf(out, "%s %s\n", n ? "}" : "", fz_web_metric_number(value, num, sizeof num));
}

void fz_web_hist_init(fz_web_hist_t *h)
{
    static const double le[FZ_WEB_HIST_BUCKETS] = {0.1, 0.5, 1,   5,    15,   30,
                                                   60,  300, 900, 1800, 3600, 14400};
    memset(h, 0, sizeof *h);
    memcpy(h->le, le, sizeof le);
}

void fz_web_hist_observe(fz_web_hist_t *h, double v)
{
    int i = 0;
    while (i < FZ_WEB_HIST_BUCKETS && v > h->le[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void fz_web_metric_histogram(FILE *out, const char *name, const char *help, const fz_web_hist_t *h)
{
    char metric[128], le[64];
    fz_web_metric_family(out, name, "histogram", help);
    snprintf(metric, sizeof metric, "%s_bucket", name);
    uint64_t cum = 0;
    for (int i = 0; i <= FZ_WEB_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        fz_web_metric_number(i < FZ_WEB_HIST_BUCKETS ? h->le[i] : INFINITY, le, sizeof le);
        fz_web_metric_sample(out, metric, (double)cum, "le", le, NULL);
    }
    snprintf(metric, sizeof metric, "%s_sum", name);
    fz_web_metric_sample(out, metric, h->sum, NULL);
    snprintf(metric, sizeof metric, "%s_count", name);
    fz_web_metric_sample(out, metric, (double)h->count, NULL);
}

/* ---------------------------------------------------------------- counted from events */

#define S_PAIRS 256     /* distinct (outcome, class) pairs counted; more are folded */
#define S_SUBMITS 65536 /* tasks whose submit time is remembered (by id, direct-mapped) */
#define S_TOPICS 64

typedef struct {
    char outcome[32], class_[32];
    uint64_t n;
} s_pair_t;

struct fz_web_stats_t {
    pthread_mutex_t mu;
    s_pair_t pairs[S_PAIRS];
    size_t npairs;
    fz_web_hist_t latency;
    uint64_t submit_task[S_SUBMITS];
    double submit_ts[S_SUBMITS];
    char topics[S_TOPICS][32];
    uint64_t topic_n[S_TOPICS];
    size_t ntopics;
    uint64_t missed;
};

fz_web_stats_t *fz_web_stats_new(void)
{
    fz_web_stats_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    fz_web_hist_init(&self->latency);
    return self;
}

void fz_web_stats_destroy(fz_web_stats_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pthread_mutex_destroy(&(*self_p)->mu);
    free(*self_p);
    *self_p = NULL;
}

static void s_count_pair(fz_web_stats_t *self, const char *outcome, const char *class_)
{
    size_t i = 0;
    while (i < self->npairs &&
           (strcmp(self->pairs[i].outcome, outcome) || strcmp(self->pairs[i].class_, class_)))
        i++;
    if (i == self->npairs) {
        if (self->npairs == S_PAIRS) {
            i = S_PAIRS - 1; /* a peer inventing names cannot grow us: fold into the last */
        } else {
            self->npairs++;
            fz_strcopy(self->pairs[i].outcome, sizeof self->pairs[i].outcome, outcome);
            fz_strcopy(self->pairs[i].class_, sizeof self->pairs[i].class_, class_);
        }
    }
    self->pairs[i].n++;
}

static void s_count_topic(fz_web_stats_t *self, const char *topic)
{
    size_t i = 0;
    while (i < self->ntopics && strcmp(self->topics[i], topic))
        i++;
    if (i == self->ntopics) {
        if (self->ntopics == S_TOPICS)
            return;
        fz_strcopy(self->topics[i], sizeof self->topics[i], topic);
        self->ntopics++;
    }
    self->topic_n[i]++;
}

void fz_web_stats_event(fz_web_stats_t *self, const char *topic, const msgpack_object *map)
{
    uint64_t task = fz_obj_uint(map, "task", 0);
    double ts = fz_obj_float(map, "ts", 0);
    char outcome[32], class_[32];
    fz_obj_str(map, "outcome", outcome, sizeof outcome);
    fz_obj_str(map, "class", class_, sizeof class_);
    pthread_mutex_lock(&self->mu);
    s_count_topic(self, topic);
    size_t slot = (size_t)(task % S_SUBMITS);
    if (task && strcmp(topic, "task.submitted") == 0) {
        self->submit_task[slot] = task;
        self->submit_ts[slot] = ts;
    } else if (task && strcmp(topic, "task.started") == 0 && self->submit_task[slot] == task) {
        double d = ts - self->submit_ts[slot];
        fz_web_hist_observe(&self->latency, d > 0 ? d : 0);
        self->submit_task[slot] = 0; /* the first start only */
    }
    if (*outcome && strncmp(topic, "task.", 5) == 0 && fz_obj_get(map, "outcome"))
        s_count_pair(self, outcome, class_);
    pthread_mutex_unlock(&self->mu);
}

void fz_web_stats_missed(fz_web_stats_t *self, uint64_t n)
{
    pthread_mutex_lock(&self->mu);
    self->missed += n;
    pthread_mutex_unlock(&self->mu);
}

void fz_web_stats_write(fz_web_stats_t *self, FILE *out)
{
    pthread_mutex_lock(&self->mu);
    fz_web_metric_family(out, "fz_attempts_ended_total", "counter",
                         "Attempts that ended, by outcome and failure class, seen by this "
                         "fz-web since it started.");
    for (size_t i = 0; i < self->npairs; i++)
        fz_web_metric_sample(out, "fz_attempts_ended_total", (double)self->pairs[i].n, "outcome",
                             self->pairs[i].outcome, "class", self->pairs[i].class_, NULL);
    fz_web_metric_histogram(out, "fz_dispatch_latency_seconds",
                            "Time from a task's submit to the start of its first attempt.",
                            &self->latency);
    fz_web_metric_family(out, "fz_web_events_total", "counter",
                         "Broker events received by this fz-web, by topic.");
    for (size_t i = 0; i < self->ntopics; i++)
        fz_web_metric_sample(out, "fz_web_events_total", (double)self->topic_n[i], "topic",
                             self->topics[i], NULL);
    fz_web_metric_family(out, "fz_web_events_missed_total", "counter",
                         "Events the stream missed and the broker no longer held.");
    fz_web_metric_sample(out, "fz_web_events_missed_total", (double)self->missed, NULL);
    pthread_mutex_unlock(&self->mu);
}
