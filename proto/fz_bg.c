/*  fz_bg: blocking jobs on a thread of their own; see fz_bg.h. */

#include "fz_bg.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "fz_util.h"

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED } job_state_t;

typedef struct job_t {
    struct job_t *next;
    uint64_t id;
    job_state_t state;
    atomic_bool stop;
    fz_bg_fn *fn;
    fz_bg_done_fn *done;
    void *arg;
} job_t;

struct fz_bg_t {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *head, *tail; /* in order: finished ones first, then the running one, then queued */
    uint64_t next_id;
    int held; /* holds left */
    bool quit;
    int fd[2]; /* [0] polled by the loop, [1] written by the thread after each job */
};

/* The first queued job, if the runner may start it. Under the lock. */
static job_t *s_next(fz_bg_t *self)
{
    if (self->held)
        return NULL;
    for (job_t *j = self->head; j; j = j->next)
        if (j->state == JOB_QUEUED)
            return j;
    return NULL;
}

static void *s_thread(void *arg)
{
    fz_bg_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        job_t *j = NULL;
        while (!self->quit && !(j = s_next(self)))
            pthread_cond_wait(&self->cv, &self->mu);
        if (self->quit)
            break;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&self->mu);
        j->fn(j->arg, &j->stop);
        pthread_mutex_lock(&self->mu);
        j->state = JOB_FINISHED;
        char one = 1;
        if (write(self->fd[1], &one, 1) < 0) {
            /* full: the loop has a byte to read already, and collect takes every job */
        }
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

fz_bg_t *fz_bg_new(void)
{
    fz_bg_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->next_id = 1;
    self->fd[0] = self->fd[1] = -1;
    if (pipe2(self->fd, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    /* The thread blocks every signal (it inherits the mask): SIGTERM, SIGINT, SIGUSR1 go to
       the loop's thread, whose poll they interrupt. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&self->thread, NULL, s_thread, self);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fz_close(&self->fd[0]);
        fz_close(&self->fd[1]);
        pthread_cond_destroy(&self->cv);
        pthread_mutex_destroy(&self->mu);
        free(self);
        return NULL;
    }
    return self;
}

void fz_bg_destroy(fz_bg_t **self_p)
{
    fz_bg_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    pthread_mutex_lock(&self->mu);
    self->quit = true;
    for (job_t *j = self->head; j; j = j->next)
        atomic_store(&j->stop, true);
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->thread, NULL);
    for (job_t *j = self->head, *next; j; j = next) {
        next = j->next;
        if (j->done)
            j->done(j->arg, j->state == JOB_FINISHED);
        free(j);
    }
    fz_close(&self->fd[0]);
    fz_close(&self->fd[1]);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

uint64_t fz_bg_add(fz_bg_t *self, fz_bg_fn *fn, fz_bg_done_fn *done, void *arg)
{
    job_t *j = calloc(1, sizeof *j);
    if (!j)
        return 0;
    j->fn = fn, j->done = done, j->arg = arg;
    atomic_init(&j->stop, false);
    pthread_mutex_lock(&self->mu);
    j->id = self->next_id++;
    if (self->tail)
        self->tail->next = j;
    else
        self->head = j;
    self->tail = j;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    return j->id;
}

void fz_bg_stop(fz_bg_t *self, uint64_t id)
{
    pthread_mutex_lock(&self->mu);
    for (job_t *j = self->head; j; j = j->next)
        if (j->id == id && j->state != JOB_FINISHED)
            atomic_store(&j->stop, true);
    pthread_mutex_unlock(&self->mu);
}

void fz_bg_hold(fz_bg_t *self, bool hold)
{
    pthread_mutex_lock(&self->mu);
    self->held += hold ? 1 : self->held > 0 ? -1 : 0;
    /* Only a release can let a job start, and only a queued one: waking the thread for
       nothing cost two context switches per attempt (every agent holds, then releases). */
    if (s_next(self))
        pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

bool fz_bg_idle(fz_bg_t *self)
{
    pthread_mutex_lock(&self->mu);
    bool idle = self->head == NULL;
    pthread_mutex_unlock(&self->mu);
    return idle;
}

int fz_bg_fd(fz_bg_t *self)
{
    return self->fd[0];
}

size_t fz_bg_collect(fz_bg_t *self)
{
    char buf[64];
    while (read(self->fd[0], buf, sizeof buf) > 0)
        ;
    pthread_mutex_lock(&self->mu);
    job_t *done = NULL, **end = &done;
    while (self->head && self->head->state == JOB_FINISHED) {
        job_t *j = self->head;
        self->head = j->next;
        j->next = NULL;
        *end = j, end = &j->next;
    }
    if (!self->head)
        self->tail = NULL;
    pthread_mutex_unlock(&self->mu);
    size_t n = 0;
    for (job_t *j = done, *next; j; j = next, n++) {
        next = j->next;
        if (j->done)
            j->done(j->arg, true);
        free(j);
    }
    return n;
}
