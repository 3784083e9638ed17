/*  fz_hook: commands run for events; see fz_hook.h. */

#include "fz_hook.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fz_cli.h"
#include "fz_msg.h"

extern char **environ;

#define S_ENV_VARS 9
#define S_KILL_GRACE_MS 5000

typedef struct {
    char *json;
    size_t len;
    char *env[S_ENV_VARS]; /* "FZ_EVENT_X=value" */
    char what[96];         /* "task.failed seq 12 task 5", for logs */
} s_job_t;

typedef struct {
    pid_t pid;
    int64_t started, term_sent;
    char what[96];
} s_run_t;

struct fz_hook_t {
    char *topics, *cmd;
    int jobs;
    size_t queue;
    int64_t timeout_ms;
    s_job_t *waiting; /* a ring of `queue` */
    size_t head, count;
    s_run_t *running; /* `jobs` slots, pid 0 = free */
    int nrunning;
    uint64_t started, failed, dropped;
};

/* ---------------------------------------------------------------- topics */

static bool s_item_matches(const char *item, size_t len, const char *topic)
{
    if (len == 1 && item[0] == '*')
        return true;
    if (len >= 2 && item[len - 1] == '*')
        return strncmp(topic, item, len - 1) == 0;
    return strlen(topic) == len && strncmp(topic, item, len) == 0;
}

bool fz_hook_matches(const char *topics, const char *topic)
{
    for (const char *p = topics; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len && s_item_matches(p, len, topic))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

bool fz_hook_topics_valid(const char *topics, char *err, size_t errlen)
{
    if (!topics || !*topics) {
        snprintf(err, errlen, "--on needs event topics (task.failed,task.succeeded, task.*)");
        return false;
    }
    for (const char *p = topics; p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        bool ok = len > 0 && len <= 64;
        for (size_t i = 0; ok && i < len; i++) {
            char c = p[i];
            ok = (c >= 'a' && c <= 'z') || c == '.' || c == '-' || (c == '*' && i == len - 1);
        }
        if (!ok) {
            snprintf(err, errlen,
                     "--on: '%.*s' is not an event topic (like task.failed, task.*, or *)",
                     (int)(len > 64 ? 64 : len), p);
            return false;
        }
        p = end ? end + 1 : NULL;
    }
    return true;
}

/* ---------------------------------------------------------------- life */

fz_hook_t *fz_hook_new(const char *topics, const char *cmd, int jobs, size_t queue, double timeout)
{
    fz_hook_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->topics = strdup(topics);
    self->cmd = strdup(cmd);
    self->jobs = jobs > 0 ? jobs : 1;
    self->queue = queue > 0 ? queue : 1;
    self->timeout_ms = (int64_t)(timeout * 1000);
    self->waiting = calloc(self->queue, sizeof *self->waiting);
    self->running = calloc((size_t)self->jobs, sizeof *self->running);
    if (!self->topics || !self->cmd || !self->waiting || !self->running) {
        fz_hook_destroy(&self, 0);
        return NULL;
    }
    return self;
}

static void s_job_free(s_job_t *job)
{
    free(job->json);
    for (int i = 0; i < S_ENV_VARS; i++)
        free(job->env[i]);
    memset(job, 0, sizeof *job);
}

/* Logs how a hook ended, when it failed. */
static void s_ended(fz_hook_t *self, s_run_t *run, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !run->term_sent)
        ;
    else {
        self->failed++;
        if (run->term_sent)
            fz_cli_error("hook for %s: stopped after %.0f s (--hook-timeout)", run->what,
                         (double)self->timeout_ms / 1000);
        else if (WIFEXITED(status))
            fz_cli_error("hook for %s: exited %d", run->what, WEXITSTATUS(status));
        else
            fz_cli_error("hook for %s: killed by signal %d", run->what, WTERMSIG(status));
    }
    run->pid = 0;
    self->nrunning--;
}

static void s_reap(fz_hook_t *self, bool block)
{
    for (int i = 0; i < self->jobs; i++) {
        s_run_t *run = &self->running[i];
        if (!run->pid)
            continue;
        int status = 0;
        pid_t got = waitpid(run->pid, &status, block ? 0 : WNOHANG);
        if (got == run->pid || (got < 0 && errno == ECHILD))
            s_ended(self, run, got == run->pid ? status : 0);
    }
}

static void s_signal_all(fz_hook_t *self, int sig)
{
    for (int i = 0; i < self->jobs; i++)
        if (self->running[i].pid) {
            kill(-self->running[i].pid, sig);
            if (!self->running[i].term_sent)
                self->running[i].term_sent = fz_clock_ms();
        }
}

void fz_hook_destroy(fz_hook_t **self_p, double grace)
{
    if (!self_p || !*self_p)
        return;
    fz_hook_t *self = *self_p;
    if (self->count)
        fz_cli_error("%zu queued hooks not run: fz-watch is stopping", self->count);
    while (self->count) {
        s_job_free(&self->waiting[self->head]);
        self->head = (self->head + 1) % self->queue;
        self->count--;
    }
    int64_t until = fz_clock_ms() + (int64_t)(grace * 1000);
    while (self->running && self->nrunning && fz_clock_ms() < until) {
        s_reap(self, false);
        if (self->nrunning)
            usleep(20000);
    }
    if (self->running && self->nrunning) {
        s_signal_all(self, SIGKILL);
        s_reap(self, true);
    }
    free(self->waiting);
    free(self->running);
    free(self->topics);
    free(self->cmd);
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------- events */

static char *s_var(const char *name, const char *value, size_t len)
{
    char clean[1200];
    fz_cli_oneline(value, len, 1000, clean, sizeof clean);
    size_t n = strlen(name) + strlen(clean) + 2;
    char *v = malloc(n);
    if (v)
        snprintf(v, n, "%s=%s", name, clean);
    return v;
}

static char *s_var_field(const msgpack_object *map, const char *name, const char *key)
{
    size_t len = 0;
    const msgpack_object *o = fz_obj_get(map, key);
    char num[32] = "";
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(num, sizeof num, "%llu", (unsigned long long)o->via.u64);
    else if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf(num, sizeof num, "%lld", (long long)o->via.i64);
    else if (o && (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32))
        snprintf(num, sizeof num, "%.3f", o->via.f64);
    if (*num)
        return s_var(name, num, strlen(num));
    const char *s = fz_obj_strn(map, key, &len);
    return s_var(name, s, len);
}

static char *s_event_json(const char *topic, const msgpack_object *map, size_t *len_p)
{
    char *text = NULL;
    FILE *mem = open_memstream(&text, len_p);
    if (!mem)
        return NULL;
    fz_cli_print_json_with(map, "topic", topic, mem);
    if (fclose(mem) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

void fz_hook_event(fz_hook_t *self, const char *topic, const msgpack_object *map)
{
    if (!fz_hook_matches(self->topics, topic))
        return;
    uint64_t seq = fz_obj_uint(map, "seq", 0), task = fz_obj_uint(map, "task", 0);
    if (self->count == self->queue) {
        self->dropped++;
        fz_cli_error("hook queue full (%zu waiting): event %s seq %llu not handed to the hook",
                     self->queue, topic, (unsigned long long)seq);
        return;
    }
    s_job_t *job = &self->waiting[(self->head + self->count) % self->queue];
    job->json = s_event_json(topic, map, &job->len);
    job->env[0] = s_var("FZ_EVENT_TOPIC", topic, strlen(topic));
    job->env[1] = s_var_field(map, "FZ_EVENT_SEQ", "seq");
    job->env[2] = s_var_field(map, "FZ_EVENT_TS", "ts");
    job->env[3] = s_var_field(map, "FZ_EVENT_TASK", "task");
    job->env[4] = s_var_field(map, "FZ_EVENT_STATE", "state");
    job->env[5] = s_var_field(map, "FZ_EVENT_MODEL", "model");
    job->env[6] = s_var_field(map, "FZ_EVENT_WORKER", "worker");
    job->env[7] = s_var_field(map, "FZ_EVENT_CLASS", "class");
    job->env[8] = s_var_field(map, "FZ_EVENT_SUMMARY", "summary");
    snprintf(job->what, sizeof job->what, "%s seq %llu task %llu", topic, (unsigned long long)seq,
             (unsigned long long)task);
    bool ok = job->json != NULL;
    for (int i = 0; i < S_ENV_VARS; i++)
        ok = ok && job->env[i];
    if (!ok) {
        fz_cli_error("hook for %s: out of memory", job->what);
        s_job_free(job);
        self->failed++;
        return;
    }
    self->count++;
    fz_hook_poll(self);
}

/* environ without FZ_EVENT_* plus the job's variables; NULL-terminated, strings borrowed. */
static char **s_environment(s_job_t *job)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + S_ENV_VARS + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FZ_EVENT_", 9) != 0)
            env[k++] = environ[i];
    for (int i = 0; i < S_ENV_VARS; i++)
        env[k++] = job->env[i];
    return env;
}

/* Starts one job; false (logged) if it could not. */
static bool s_spawn(fz_hook_t *self, s_job_t *job, s_run_t *run)
{
    int fd = memfd_create("fz-hook-event", MFD_CLOEXEC);
    bool ok = fd >= 0 && write(fd, job->json, job->len) == (ssize_t)job->len &&
              lseek(fd, 0, SEEK_SET) == 0;
    char **env = ok ? s_environment(job) : NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, fd, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    char *argv[] = {"/bin/sh", "-c", self->cmd, NULL};
    pid_t pid = 0;
    int rc = env ? posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env) : errno ? errno : ENOMEM;
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(env);
    if (fd >= 0)
        close(fd);
    if (rc != 0) {
        fz_cli_error("hook for %s: cannot start /bin/sh: %s", job->what, strerror(rc));
        self->failed++;
        return false;
    }
    *run = (s_run_t){pid, fz_clock_ms(), 0, ""};
    memcpy(run->what, job->what, sizeof run->what);
    self->nrunning++;
    self->started++;
    return true;
}

void fz_hook_poll(fz_hook_t *self)
{
    s_reap(self, false);
    int64_t now = fz_clock_ms();
    for (int i = 0; i < self->jobs; i++) {
        s_run_t *run = &self->running[i];
        if (!run->pid)
            continue;
        if (!run->term_sent && self->timeout_ms > 0 && now - run->started > self->timeout_ms) {
            kill(-run->pid, SIGTERM);
            run->term_sent = now;
        } else if (run->term_sent && now - run->term_sent > S_KILL_GRACE_MS)
            kill(-run->pid, SIGKILL);
    }
    for (int i = 0; i < self->jobs && self->count; i++) {
        if (self->running[i].pid)
            continue;
        s_job_t *job = &self->waiting[self->head];
        s_spawn(self, job, &self->running[i]);
        s_job_free(job);
        self->head = (self->head + 1) % self->queue;
        self->count--;
    }
}

bool fz_hook_busy(const fz_hook_t *self)
{
    return self->nrunning > 0 || self->count > 0;
}

void fz_hook_counts(const fz_hook_t *self, uint64_t *started, uint64_t *failed, uint64_t *dropped)
{
    *started = self->started;
    *failed = self->failed;
    *dropped = self->dropped;
}
