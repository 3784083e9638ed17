/*  fz_web_hub: the ring of recent SSE frames; see fz_web_hub.h. */

#include "fz_web_hub.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint64_t n, task;
    bool output;
    char *frame;
    size_t len;
} s_item_t;

struct fz_web_hub_t {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    s_item_t *ring; /* owns the frames; slot n % cap holds frame n */
    size_t cap, max_bytes, bytes;
    uint64_t first, next; /* oldest held, next to push (first == next: empty) */
    uint64_t lost, readers;
    bool stopping;
    char run[17];
};

static const char s_gap[] = "event: gap\ndata: {}\n\n";

fz_web_hub_t *fz_web_hub_new(size_t max_frames, size_t max_bytes)
{
    fz_web_hub_t *self = calloc(1, sizeof *self);
    if (!self || !(self->ring = calloc(max_frames ? max_frames : 1, sizeof *self->ring))) {
        free(self);
        return NULL;
    }
    self->cap = max_frames ? max_frames : 1;
    self->max_bytes = max_bytes;
    self->first = self->next = 1;
    pthread_mutex_init(&self->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cv, &attr);
    pthread_condattr_destroy(&attr);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
                    ((uint64_t)(uintptr_t)self << 16);
    snprintf(self->run, sizeof self->run, "%016" PRIx64, seed * 6364136223846793005u + 1);
    return self;
}

void fz_web_hub_stop(fz_web_hub_t *self)
{
    pthread_mutex_lock(&self->mu);
    self->stopping = true;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

void fz_web_hub_destroy(fz_web_hub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_web_hub_t *self = *self_p;
    fz_web_hub_stop(self);
    pthread_mutex_lock(&self->mu);
    while (self->readers) /* streams leave within one wait: they see `stopping` */
        pthread_cond_wait(&self->cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
    for (uint64_t n = self->first; n < self->next; n++)
        free(self->ring[n % self->cap].frame);
    free(self->ring);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

const char *fz_web_hub_run(const fz_web_hub_t *self)
{
    return self->run;
}

static void s_drop_oldest(fz_web_hub_t *self)
{
    s_item_t *it = &self->ring[self->first % self->cap];
    self->bytes -= it->len;
    free(it->frame);
    memset(it, 0, sizeof *it);
    self->first++;
}

uint64_t fz_web_hub_push(fz_web_hub_t *self, const char *topic, uint64_t task, bool output,
                         const char *json, size_t len)
{
    pthread_mutex_lock(&self->mu);
    uint64_t n = self->next;
    char id[64];
    snprintf(id, sizeof id, "%s.%" PRIu64, self->run, n);
    size_t flen = 0;
    char *frame = fz_web_sse_frame(id, "fz", json, len, &flen);
    if (!frame) {
        self->lost++;
        pthread_mutex_unlock(&self->mu);
        return 0;
    }
    (void)topic;
    while (self->first < self->next &&
           (self->next - self->first >= self->cap || self->bytes + flen > self->max_bytes))
        s_drop_oldest(self);
    self->ring[n % self->cap] = (s_item_t){n, task, output, frame, flen};
    self->bytes += flen;
    self->next++;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    return n;
}

uint64_t fz_web_hub_start(fz_web_hub_t *self, const char *last_event_id, bool *gap_p)
{
    char run[32];
    uint64_t n = 0;
    *gap_p = false;
    pthread_mutex_lock(&self->mu);
    uint64_t pos = self->next;
    if (last_event_id && *last_event_id) {
        if (fz_web_sse_parse_id(last_event_id, run, sizeof run, &n) &&
            strcmp(run, self->run) == 0 && n < self->next) {
            pos = n + 1;
            *gap_p = pos < self->first;
        } else
            *gap_p = true;
    }
    pthread_mutex_unlock(&self->mu);
    return pos;
}

static void s_deadline(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static char *s_dup(const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = 0;
    }
    return copy;
}

int fz_web_hub_next(fz_web_hub_t *self, uint64_t *pos_p, uint64_t task, int timeout_ms,
                    char **frame_p, size_t *len_p)
{
    struct timespec until;
    s_deadline(&until, timeout_ms);
    *frame_p = NULL;
    *len_p = 0;
    pthread_mutex_lock(&self->mu);
    int rc = 0;
    for (;;) {
        if (self->stopping) {
            rc = -1;
            break;
        }
        if (*pos_p < self->first) {
            *pos_p = self->first; /* it fell behind: say so, then go on from the oldest */
            *frame_p = s_dup(s_gap, sizeof s_gap - 1);
            *len_p = sizeof s_gap - 1;
            rc = *frame_p ? 1 : 0;
            break;
        }
        while (*pos_p < self->next) {
            const s_item_t *it = &self->ring[*pos_p % self->cap];
            (*pos_p)++;
            if (task ? it->task == task : !it->output) {
                *frame_p = s_dup(it->frame, it->len);
                *len_p = it->len;
                rc = *frame_p ? 1 : 0;
                break;
            }
        }
        if (*frame_p)
            break;
        if (pthread_cond_timedwait(&self->cv, &self->mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&self->mu);
    return rc;
}

void fz_web_hub_reader(fz_web_hub_t *self, int delta)
{
    pthread_mutex_lock(&self->mu);
    if (delta > 0)
        self->readers++;
    else if (self->readers) {
        self->readers--;
        pthread_cond_broadcast(&self->cv);
    }
    pthread_mutex_unlock(&self->mu);
}

void fz_web_hub_stats(fz_web_hub_t *self, uint64_t *pushed, uint64_t *lost, uint64_t *readers)
{
    pthread_mutex_lock(&self->mu);
    *pushed = self->next - 1;
    *lost = self->lost;
    *readers = self->readers;
    pthread_mutex_unlock(&self->mu);
}

/* ---------------------------------------------------------------- SSE framing */

/* Appends "NAME: VALUE\n" with CR and LF left out of value. */
static size_t s_field(char *out, const char *name, const char *value)
{
    size_t k = (size_t)sprintf(out, "%s: ", name);
    for (; *value; value++)
        if (*value != '\r' && *value != '\n')
            out[k++] = *value;
    out[k++] = '\n';
    return k;
}

char *fz_web_sse_frame(const char *id, const char *event, const char *data, size_t len,
                       size_t *len_p)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        if (data[i] == '\n' || (data[i] == '\r' && !(i + 1 < len && data[i + 1] == '\n')))
            lines++;
    size_t size = (id ? strlen(id) + 6 : 0) + (event ? strlen(event) + 9 : 0) + len + lines * 7 + 2;
    char *out = malloc(size);
    if (!out)
        return NULL;
    size_t k = 0;
    if (id)
        k += s_field(out + k, "id", id);
    if (event)
        k += s_field(out + k, "event", event);
    k += (size_t)sprintf(out + k, "data: ");
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r' || data[i] == '\n') {
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
                i++;
            k += (size_t)sprintf(out + k, "\ndata: ");
        } else
            out[k++] = data[i];
    }
    out[k++] = '\n';
    out[k++] = '\n';
    out[k] = 0;
    *len_p = k;
    return out;
}

bool fz_web_sse_parse_id(const char *id, char *run, size_t runsize, uint64_t *n_p)
{
    const char *dot = strchr(id, '.');
    if (!dot || dot == id || (size_t)(dot - id) >= runsize || !dot[1])
        return false;
    uint64_t n = 0;
    for (const char *p = dot + 1; *p; p++) {
        if (*p < '0' || *p > '9' || n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    memcpy(run, id, (size_t)(dot - id));
    run[dot - id] = 0;
    *n_p = n;
    return true;
}
