/*  fz_sync: the loop's fdatasync, as a job of an fz_bg runner; see fz_sync.h. */

#include "fz_sync.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fz_bg.h"
#include "fz_util.h"

struct fz_sync_t {
    fz_bg_t *bg;
    int fd;       /* the file synced (the caller's) */
    int delay_ms; /* test seam: FZ_STORE_SYNC_DELAY_MS, a slow disk on demand */
    bool busy;    /* a sync asked and its outcome not yet taken */
    bool ended;   /* its job's done has run (fz_bg_collect, on the loop's thread) */
    /* Written by the job on the runner's thread; read after its done (the runner's lock
       orders the two). */
    int err;
    double secs;
};

static void s_job(void *arg, const atomic_bool *stop)
{
    (void)stop; /* an fdatasync is not cut short: destroy waits for it */
    fz_sync_t *self = arg;
    double t0 = fz_clock_s();
    if (self->delay_ms > 0) {
        struct timespec ts = {self->delay_ms / 1000, (long)(self->delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    self->err = fz_fdatasync(self->fd);
    self->secs = fz_clock_s() - t0;
}

static void s_done(void *arg, bool ran)
{
    fz_sync_t *self = arg;
    if (!ran)
        self->err = ECANCELED;
    self->ended = true;
}

fz_sync_t *fz_sync_new(int fd, char *err, size_t errlen)
{
    fz_sync_t *self = calloc(1, sizeof *self);
    if (self)
        self->bg = fz_bg_new();
    if (!self || !self->bg) {
        free(self);
        fz_errf(err, errlen, "cannot start the sync thread: %s", strerror(errno));
        return NULL;
    }
    self->fd = fd;
    const char *delay = getenv("FZ_STORE_SYNC_DELAY_MS");
    self->delay_ms = delay ? atoi(delay) : 0;
    return self;
}

void fz_sync_destroy(fz_sync_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_bg_destroy(&(*self_p)->bg);
    free(*self_p);
    *self_p = NULL;
}

int fz_sync_start(fz_sync_t *self)
{
    if (self->busy)
        return -1;
    self->ended = false;
    if (!fz_bg_add(self->bg, s_job, s_done, self))
        return -1;
    self->busy = true;
    return 0;
}

bool fz_sync_busy(const fz_sync_t *self)
{
    return self->busy;
}

bool fz_sync_ended(fz_sync_t *self)
{
    if (self->busy && !self->ended)
        fz_bg_collect(self->bg);
    return self->busy && self->ended;
}

int fz_sync_fd(const fz_sync_t *self)
{
    return fz_bg_fd(self->bg);
}

int fz_sync_end(fz_sync_t *self, double *secs)
{
    if (secs)
        *secs = 0;
    if (!self->busy)
        return 0;
    while (!fz_sync_ended(self)) {
        struct pollfd p = {.fd = fz_bg_fd(self->bg), .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR) {
            int e = errno;
            self->busy = false;
            return e; /* cannot wait: as good as failed */
        }
    }
    self->busy = false;
    if (secs)
        *secs = self->secs;
    return self->err;
}
