/*  fz_attempt_ws: an attempt's workspace and check around its agent; see fz_attempt_ws.h. */

#include "fz_attempt_ws.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_agent.h"
#include "fz_run.h"
#include "fz_spec.h"
#include "fz_util.h"

/* Where the attempt is; the public phase is a coarser view (s_phase). */
typedef enum {
    S_OPEN,       /* the open job runs */
    S_WAIT_BG,    /* opened (or nothing to open): READY once the runner is idle */
    S_READY,      /* the agent may start */
    S_AGENT,      /* the agent runs */
    S_SEAL,       /* the seal job runs */
    S_CHECK_WAIT, /* the check starts once the runner is idle */
    S_CHECK,      /* the check runs */
    S_FINISH,     /* the finish job (or the discard of a cancelled open) runs */
    S_DONE,
} step_t;

struct fz_aws_t {
    fz_bg_t *bg;
    step_t step;
    uint64_t job; /* the runner's job under way for us, 0 none */
    bool dying;   /* destroy waits for the job: its done queues nothing more */
    bool cancelled;
    atomic_bool stop; /* read by the workspace's git: set by a cancel while opening, and by
                         destroy (a cancel later must not stop the push of the branch) */
    char *cache_dir, *workdir, *repo, *check;
    char **bases;
    size_t nbases;
    char **env; /* opts env (nenv copies), then ours (pointers into ws_env), for the check */
    size_t nenv;
    bool keep;
    uint64_t task;
    uint32_t attempt;
    double timeout_s, kill_grace_s;
    const char *const *pass_env; /* borrowed */
    /* Written by a job on the runner's thread, read on the loop's after its done. */
    fz_workspace_t *ws;
    fz_ws_err_t jcls;
    char jerr[1024];
    fz_ws_result_t jres;
    /* The loop's */
    int agent_outcome, agent_exit;
    double agent_elapsed_s;
    fz_agent_t *checker;
    char ws_env[3][PATH_MAX + 16];
    const char *ws_envp[4];
    fz_aws_result_t res;
};

/* ---------------------------------------------------------------- pure parts */

fz_class_t fz_aws_class(const fz_aws_result_t *r, bool agent_ran, int outcome, int exit_code,
                        fz_class_t reported)
{
    bool clean = !agent_ran || (outcome == FZ_OUTCOME_EXITED && exit_code == 0);
    if (r && r->cls != FZ_CLASS_NONE && clean)
        return r->cls;
    return reported;
}

double fz_aws_check_timeout(double timeout_s, double agent_elapsed_s)
{
    if (!(timeout_s > 0))
        return 0;
    double left = timeout_s - (agent_elapsed_s > 0 ? agent_elapsed_s : 0);
    return left > 0.001 ? left : 0.001;
}

void fz_aws_encode(const fz_aws_result_t *r, fz_enc_t *e)
{
    if (r->has_repo && r->opened) {
        fz_enc_str(e, "branch", r->ws.branch);
        fz_enc_str(e, "base_commit", r->ws.base);
        fz_enc_str(e, "head_commit", r->sealed ? r->ws.head : "");
        fz_enc_uint(e, "files", r->sealed ? r->ws.files : 0);
        fz_enc_uint(e, "insertions", r->sealed ? r->ws.insertions : 0);
        fz_enc_uint(e, "deletions", r->sealed ? r->ws.deletions : 0);
    }
    if (r->check_status) {
        fz_enc_str(e, "check_status", r->check_status);
        fz_enc_int(e, "check_exit", r->check_exit);
        fz_enc_bin(e, "check_output", r->check_output, r->check_len);
    }
}

/* ---------------------------------------------------------------- options */

static char **s_strv(const char *const *v, size_t n, size_t extra)
{
    char **out = calloc(n + extra + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            for (size_t k = 0; k < i; k++)
                free(out[k]);
            free(out);
            return NULL;
        }
    return out;
}

static void s_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static size_t s_count(const char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static char *s_dup(const char *s)
{
    return s && *s ? strdup(s) : NULL;
}

static int s_copy_opts(fz_aws_t *self, const fz_aws_opts_t *o)
{
    self->bg = o->bg;
    self->keep = o->keep;
    self->task = o->task, self->attempt = o->attempt;
    self->timeout_s = o->timeout_s, self->kill_grace_s = o->kill_grace_s;
    self->pass_env = o->pass_env;
    self->workdir = s_dup(o->workdir);
    self->cache_dir = s_dup(o->cache_dir);
    self->repo = s_dup(o->repo);
    self->check = s_dup(o->check);
    self->nbases = o->nbases;
    self->bases = s_strv(o->bases, o->nbases, 0);
    self->nenv = s_count(o->env);
    self->env = s_strv(o->env, self->nenv, 3); /* room for ours */
    if (!self->workdir || !self->bases || !self->env || (o->repo && *o->repo && !self->repo) ||
        (o->check && *o->check && !self->check) || (self->repo && !self->cache_dir))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- jobs (runner thread) */

static void s_open_fn(void *arg, const atomic_bool *stop)
{
    (void)stop; /* ours (self->stop) is the one the workspace keeps */
    fz_aws_t *self = arg;
    fz_ws_opts_t o = {.cache_dir = self->cache_dir,
                      .repo = self->repo,
                      .base = (const char *const *)self->bases,
                      .nbase = self->nbases,
                      .task = self->task,
                      .attempt = self->attempt,
                      .keep = self->keep,
                      .stop = &self->stop};
    self->ws = fz_workspace_open(&o, &self->jcls, self->jerr, sizeof self->jerr);
}

static void s_seal_fn(void *arg, const atomic_bool *stop)
{
    (void)stop;
    fz_aws_t *self = arg;
    self->jcls = fz_workspace_seal(self->ws, &self->jres, self->jerr, sizeof self->jerr);
}

static void s_finish_fn(void *arg, const atomic_bool *stop)
{
    (void)stop;
    fz_aws_t *self = arg;
    self->jcls = fz_workspace_finish(self->ws, &self->jres, self->jerr, sizeof self->jerr);
}

/* A workspace opened for an attempt cancelled meanwhile: removed with its branch. */
static void s_discard_fn(void *arg, const atomic_bool *stop)
{
    (void)stop;
    fz_aws_t *self = arg;
    fz_workspace_destroy(&self->ws);
}

/* ---------------------------------------------------------------- steps (loop thread) */

static void s_fail(fz_aws_t *self, fz_class_t cls, const char *why)
{
    if (self->res.cls != FZ_CLASS_NONE)
        return; /* the first failure is the one to tell */
    self->res.cls = cls;
    fz_strcopy(self->res.summary, sizeof self->res.summary, why);
}

static fz_class_t s_ws_class(fz_ws_err_t e)
{
    return e == FZ_WS_MERGE_CONFLICT ? FZ_CLASS_MERGE_CONFLICT : FZ_CLASS_WORKSPACE;
}

static void s_job(fz_aws_t *self, fz_bg_fn *fn, fz_bg_done_fn *done, step_t step)
{
    self->step = step;
    self->job = fz_bg_add(self->bg, fn, done, self);
    if (!self->job) {
        s_fail(self, FZ_CLASS_WORKSPACE, "fz-worker: out of memory");
        self->step = S_DONE;
    }
}

static void s_finish_done(void *arg, bool ran);

/* After the agent (and the check): finish a workspace, or be done. */
static void s_to_finish(fz_aws_t *self)
{
    if (self->ws && !self->dying)
        s_job(self, s_finish_fn, s_finish_done, S_FINISH);
    else
        self->step = S_DONE;
}

static void s_finish_done(void *arg, bool ran)
{
    fz_aws_t *self = arg;
    self->job = 0;
    if (ran && self->jcls == FZ_WS_OK) {
        self->res.ws = self->jres;
        self->res.sealed = self->res.sealed || self->jres.head[0];
    } else
        s_fail(self, FZ_CLASS_WORKSPACE, ran ? self->jerr : "fz-worker: stopped");
    self->step = S_DONE;
}

static void s_seal_done(void *arg, bool ran)
{
    fz_aws_t *self = arg;
    self->job = 0;
    bool ok = ran && self->jcls == FZ_WS_OK;
    if (ok) {
        self->res.ws = self->jres;
        self->res.sealed = true;
    } else
        s_fail(self, FZ_CLASS_WORKSPACE, ran ? self->jerr : "fz-worker: stopped");
    bool check = ok && self->check && !self->cancelled &&
                 self->agent_outcome == FZ_OUTCOME_EXITED && self->agent_exit == 0;
    if (check && !self->dying)
        self->step = S_CHECK_WAIT;
    else
        s_to_finish(self);
}

static void s_discard_done(void *arg, bool ran)
{
    (void)ran;
    fz_aws_t *self = arg;
    self->job = 0;
    self->step = S_DONE;
}

static void s_set_env(fz_aws_t *self)
{
    snprintf(self->ws_env[0], sizeof self->ws_env[0], "FZ_WORKTREE=%s",
             fz_workspace_path(self->ws));
    snprintf(self->ws_env[1], sizeof self->ws_env[1], "FZ_BRANCH=%s",
             fz_workspace_branch(self->ws));
    snprintf(self->ws_env[2], sizeof self->ws_env[2], "FZ_BASE=%s", fz_workspace_base(self->ws));
    for (size_t i = 0; i < 3; i++)
        self->ws_envp[i] = self->env[self->nenv + i] = self->ws_env[i];
    fz_strcopy(self->res.ws.branch, sizeof self->res.ws.branch, fz_workspace_branch(self->ws));
    fz_strcopy(self->res.ws.base, sizeof self->res.ws.base, fz_workspace_base(self->ws));
}

static void s_open_done(void *arg, bool ran)
{
    fz_aws_t *self = arg;
    self->job = 0;
    if (!self->ws) {
        s_fail(self, s_ws_class(ran ? self->jcls : FZ_WS_WORKSPACE),
               ran ? self->jerr : "fz-worker: stopped");
        self->step = S_DONE;
        return;
    }
    if (self->cancelled || self->dying) { /* nothing ran in it: nothing of it stays */
        if (!self->dying)
            s_job(self, s_discard_fn, s_discard_done, S_FINISH);
        return;
    }
    if (fz_workspace_dirty(self->ws)) {
        /* Starting from HEAD would leave out what the user has not committed, which the task
           may be about: ask rather than guess. An explicit base says which (fz never touches
           the checkout either way). */
        char why[600];
        snprintf(why, sizeof why,
                 "%.300s has uncommitted changes to tracked files, which an attempt started "
                 "from its HEAD would not see: commit or stash them, or submit with --base "
                 "HEAD to start from the last commit without them",
                 self->repo);
        fz_warn("task %llu attempt %u: %s", (unsigned long long)self->task, self->attempt, why);
        s_fail(self, FZ_CLASS_WORKSPACE, why);
        s_job(self, s_discard_fn, s_discard_done, S_FINISH);
        return;
    }
    self->res.opened = true;
    s_set_env(self);
    self->step = S_WAIT_BG;
}

/* ---------------------------------------------------------------- the check */

static void s_check_start(fz_aws_t *self)
{
    char log[PATH_MAX], report[PATH_MAX], err[512];
    snprintf(log, sizeof log, "%.4000s/check-%u.log", self->workdir, self->attempt);
    snprintf(report, sizeof report, "%.4000s/.fz-check-report-%u", self->workdir, self->attempt);
    fz_agent_opts_t o = {.command = self->check,
                         .workdir = self->ws ? fz_workspace_path(self->ws) : self->workdir,
                         .log_path = log,
                         .report_path = report,
                         .env = (const char *const *)self->env,
                         .pass_env = self->pass_env,
                         .tail_max = FZ_WS_CHECK_TAIL,
                         .timeout_s = fz_aws_check_timeout(self->timeout_s, self->agent_elapsed_s),
                         .kill_grace_s = self->kill_grace_s > 0 ? self->kill_grace_s : 0.001};
    fz_bg_hold(self->bg, true); /* no git while the check's processes live (fz_bg.h) */
    self->checker = fz_agent_start(&o, err, sizeof err);
    if (!self->checker) {
        fz_bg_hold(self->bg, false);
        char why[600];
        snprintf(why, sizeof why, "cannot run the check: %s", err);
        s_fail(self, FZ_CLASS_WORKSPACE, why);
        s_to_finish(self);
        return;
    }
    self->step = S_CHECK;
}

/* The check's verdict from its agent's status. */
static void s_check_verdict(fz_aws_t *self)
{
    const fz_agent_status_t *st = fz_agent_status(self->checker);
    size_t len;
    const char *tail = fz_agent_tail(self->checker, &len);
    fz_aws_result_t *r = &self->res;
    r->check_len = len < sizeof r->check_output ? len : sizeof r->check_output;
    memcpy(r->check_output, tail + len - r->check_len, r->check_len);
    r->check_exit = st->outcome == FZ_AGENT_EXITED ? st->exit_code : -1;
    if (st->outcome == FZ_AGENT_CANCELLED) {
        r->check_status = ""; /* stopped before its verdict */
        return;
    }
    bool passed = st->outcome == FZ_AGENT_EXITED && st->exit_code == 0;
    r->check_status = passed ? "passed" : "failed";
    if (passed)
        return;
    char line[256], why[600];
    fz_run_last_line(r->check_len ? tail + len - r->check_len : "", line, sizeof line);
    if (st->outcome == FZ_AGENT_TIMEOUT)
        snprintf(why, sizeof why,
                 "check timed out after %.0f s (what was left of the task's "
                 "timeout)%s%s",
                 (double)st->duration_ms / 1000, line[0] ? ": " : "", line);
    else if (st->outcome == FZ_AGENT_SIGNALED)
        snprintf(why, sizeof why, "check killed by signal %d%s%s", st->signal, line[0] ? ": " : "",
                 line);
    else
        snprintf(why, sizeof why, "check failed with exit status %d%s%s", st->exit_code,
                 line[0] ? ": " : "", line);
    s_fail(self, FZ_CLASS_CHECK_FAILED, why);
}

static void s_check_pump(fz_aws_t *self, int64_t now)
{
    fz_agent_pump(self->checker, now);
    if (!fz_agent_done(self->checker))
        return;
    s_check_verdict(self);
    fz_agent_destroy(&self->checker);
    fz_bg_hold(self->bg, false);
    s_to_finish(self);
}

/* ---------------------------------------------------------------- public */

fz_aws_t *fz_aws_new(const fz_aws_opts_t *opts, char *err, size_t errlen)
{
    if (!opts || !opts->bg || !opts->workdir || !opts->task || !opts->attempt ||
        (opts->nbases && !opts->bases)) {
        fz_errf(err, errlen, "bad attempt workspace options");
        return NULL;
    }
    fz_aws_t *self = calloc(1, sizeof *self);
    if (!self || s_copy_opts(self, opts) < 0) {
        fz_errf(err, errlen, "%s", self ? "out of memory or no cache folder" : "out of memory");
        fz_aws_destroy(&self);
        return NULL;
    }
    atomic_init(&self->stop, false);
    self->res.has_repo = self->repo != NULL;
    self->res.check_exit = -1;
    if (self->repo)
        s_job(self, s_open_fn, s_open_done, S_OPEN);
    else
        self->step = S_WAIT_BG;
    return self;
}

fz_aws_t *fz_aws_for_dispatch(const fz_aws_opts_t *opts, fz_msg_t *dispatch, char *err,
                              size_t errlen)
{
    enum { MAX_BASES = 257 }; /* fz_spec's limit of dispatch.bases */
    const char *bases[MAX_BASES];
    char refs[MAX_BASES][FZ_MAX_REF + 1];
    size_t nb = 0;
    const msgpack_object *b = fz_msg_obj(dispatch, "bases");
    for (uint32_t i = 0;
         b && b->type == MSGPACK_OBJECT_ARRAY && i < b->via.array.size && i < MAX_BASES; i++) {
        const msgpack_object *o = &b->via.array.ptr[i];
        snprintf(refs[nb], sizeof refs[nb], "%.*s", (int)o->via.str.size, o->via.str.ptr);
        bases[nb] = refs[nb];
        nb++;
    }
    fz_aws_opts_t o = *opts;
    o.repo = fz_msg_str(dispatch, "repo", "", NULL);
    o.bases = bases, o.nbases = nb;
    o.check = fz_msg_str(dispatch, "check", "", NULL);
    o.keep = fz_msg_bool(dispatch, "keep_worktree", false);
    return fz_aws_new(&o, err, errlen);
}

void fz_aws_destroy(fz_aws_t **self_p)
{
    fz_aws_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    self->dying = true;
    atomic_store(&self->stop, true);
    if (self->checker) {
        fz_agent_destroy(&self->checker);
        fz_bg_hold(self->bg, false);
    }
    while (self->job) { /* its done clears it; other jobs' dones run too, as they would */
        struct pollfd p = {.fd = fz_bg_fd(self->bg), .events = POLLIN};
        poll(&p, 1, 100);
        fz_bg_collect(self->bg);
    }
    fz_workspace_destroy(&self->ws);
    free(self->cache_dir), free(self->workdir), free(self->repo), free(self->check);
    s_strv_free(self->bases);
    if (self->env) /* our entries point into ws_env: cut them off before freeing the copies */
        self->env[self->nenv] = NULL;
    s_strv_free(self->env);
    free(self);
    *self_p = NULL;
}

fz_aws_phase_t fz_aws_phase(fz_aws_t *self)
{
    switch (self->step) {
    case S_OPEN:
    case S_WAIT_BG:
        return FZ_AWS_PREPARING;
    case S_READY:
        return FZ_AWS_READY;
    case S_AGENT:
        return FZ_AWS_AGENT;
    case S_DONE:
        return FZ_AWS_DONE;
    default:
        return FZ_AWS_POST;
    }
}

const char *fz_aws_cwd(fz_aws_t *self)
{
    return self->ws && self->res.opened ? fz_workspace_path(self->ws) : NULL;
}

const char *const *fz_aws_env(fz_aws_t *self)
{
    return self->ws_envp; /* all NULL until s_set_env */
}

void fz_aws_agent_started(fz_aws_t *self)
{
    if (self->step == S_READY)
        self->step = S_AGENT;
}

void fz_aws_agent_ended(fz_aws_t *self, int outcome, int exit_code, double elapsed_s)
{
    if (self->step != S_AGENT && self->step != S_READY)
        return;
    self->agent_outcome = outcome, self->agent_exit = exit_code;
    self->agent_elapsed_s = elapsed_s;
    if (self->ws)
        s_job(self, s_seal_fn, s_seal_done, S_SEAL);
    else if (self->check && !self->cancelled && outcome == FZ_OUTCOME_EXITED && exit_code == 0)
        self->step = S_CHECK_WAIT;
    else
        self->step = S_DONE;
}

void fz_aws_cancel(fz_aws_t *self)
{
    if (self->cancelled)
        return;
    self->cancelled = true;
    if (self->step == S_OPEN)
        atomic_store(&self->stop, true);
    if (self->checker)
        fz_agent_cancel(self->checker, "cancelled");
    if (self->step == S_WAIT_BG || self->step == S_READY) {
        if (self->ws)
            s_job(self, s_discard_fn, s_discard_done, S_FINISH);
        else
            self->step = S_DONE;
    }
}

bool fz_aws_cancelled(fz_aws_t *self)
{
    return self->cancelled;
}

int fz_aws_pollfds(fz_aws_t *self, struct pollfd *fds, int max)
{
    return self->checker ? fz_agent_pollfds(self->checker, fds, max) : 0;
}

int fz_aws_timeout_ms(fz_aws_t *self, int64_t now_ms)
{
    /* Waiting for the runner to be idle needs no timer: the job it waits for writes to
       fz_bg_fd when it ends, and the caller pumps after collecting it. */
    return self->checker ? fz_agent_timeout_ms(self->checker, now_ms) : -1;
}

void fz_aws_pump(fz_aws_t *self, int64_t now_ms)
{
    if (self->step == S_WAIT_BG && fz_bg_idle(self->bg))
        self->step = S_READY;
    if (self->step == S_CHECK_WAIT && fz_bg_idle(self->bg))
        s_check_start(self);
    if (self->step == S_CHECK && self->checker)
        s_check_pump(self, now_ms);
}

const fz_aws_result_t *fz_aws_result(fz_aws_t *self)
{
    return &self->res;
}

/* ---------------------------------------------------------------- promote */

typedef struct {
    char *cache_dir, *repo;
    uint64_t task;
    char head[FZ_WS_OID_MAX];
    fz_ws_err_t cls;
    char err[1024];
} promote_t;

static void s_promote_fn(void *arg, const atomic_bool *stop)
{
    promote_t *p = arg;
    p->cls =
        fz_workspace_promote(p->cache_dir, p->repo, p->task, p->head, stop, p->err, sizeof p->err);
}

static void s_promote_done(void *arg, bool ran)
{
    promote_t *p = arg;
    if (!ran)
        fz_warn("task %llu: fz/%llu was not set: the worker stopped first",
                (unsigned long long)p->task, (unsigned long long)p->task);
    else if (p->cls != FZ_WS_OK)
        fz_warn("task %llu: cannot set fz/%llu: %s", (unsigned long long)p->task,
                (unsigned long long)p->task, p->err);
    else
        fz_info("task %llu: fz/%llu is %.12s", (unsigned long long)p->task,
                (unsigned long long)p->task, p->head);
    free(p->cache_dir), free(p->repo), free(p);
}

uint64_t fz_aws_promote(fz_bg_t *bg, const char *cache_dir, const char *repo, uint64_t task,
                        const char *head)
{
    promote_t *p = calloc(1, sizeof *p);
    if (!p)
        return 0;
    p->cache_dir = strdup(cache_dir), p->repo = strdup(repo), p->task = task;
    fz_strcopy(p->head, sizeof p->head, head);
    uint64_t id = p->cache_dir && p->repo ? fz_bg_add(bg, s_promote_fn, s_promote_done, p) : 0;
    if (!id)
        free(p->cache_dir), free(p->repo), free(p);
    return id;
}
