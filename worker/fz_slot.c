/*  fz_slot: the worker's broker connection and agent supervision loop; see fz_slot.h. */

#include "fz_slot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_agent.h"
#include "fz_attempt_ws.h"
#include "fz_bg.h"
#include "fz_classify.h"
#include "fz_launch.h"
#include "fz_net.h"
#include "fz_result.h"
#include "fz_spare.h"
#include "fz_vocab.h"
#include "fz_wsclean.h"

#define FZ_OUTPUT_EVERY_MS 250  /* output is streamed at most this often */
#define FZ_BACKOFF_MAX_MS 32000 /* reconnect backoff doubles up to this */
#define FZ_MAX_PENDING 16       /* unacknowledged results kept (oldest dropped past it) */
#define S_WS_STOP_MS 30000      /* on stop, how long sealing and removing a worktree may take */
#define S_DRAIN_RID 1           /* the rid of the drain's ping (the worker sends no other) */

typedef struct {
    uint64_t task;
    uint32_t attempt;
    fz_enc_t *enc; /* the encoded result, resent until acknowledged */
    char *repo;    /* with a sealed branch: what a promote in the ack needs (else NULL) */
    char head[FZ_WS_OID_MAX];
} pending_t;

struct fz_slot_t {
    fz_slot_config_t cfg;
    zsock_t *dealer;
    char nonce[17];
    char models[16][65];
    size_t nmodels;
    uint32_t hb_ms;
    bool welcomed;
    int64_t broker_seen_ms; /* last message from the broker */
    int64_t next_hb_ms;     /* next heartbeat we send */
    int64_t next_hello_ms;  /* next hello while not welcomed */
    uint32_t backoff_ms;    /* reconnect backoff */
    char cache_dir[4096];   /* the default one: WORKDIR/.fz-cache */
    char workroot[4096];    /* cfg.workroot resolved (realpath) once, for every attempt */
    fz_bg_t *bg;            /* git off the loop (fz_bg.h): attempts' workspaces and promotes */
    fz_spare_t *spare;      /* task folders made while idle (NULL: each attempt makes its own) */
    /* the current attempt: active from its dispatch to its result */
    bool active;
    fz_msg_t *dispatch;     /* kept until the agent starts (after the workspace is open) */
    fz_agent_opts_t limits; /* the dispatch's timeout, cost cap, grace and stall limits */
    fz_aws_t *aws;          /* its workspace and check (fz_attempt_ws.h) */
    bool agent_over;        /* the agent ended; the result waits for the workspace */
    char start_err[512];    /* the agent did not start: why */
    fz_agent_t *agent;
    uint64_t task;
    uint32_t attempt;
    char model[65];
    int64_t next_output_ms;
    /* --prefetch: the dispatch taken while the current attempt runs, started as it ends.
       Its agent has not started, so a hello drops it: the broker gives it again. */
    fz_msg_t *ahead;
    /* The held attempt a hello dropped, named in every hello until one is welcomed: a
       restarted broker, which holds it as an orphan, requeues it then and not after its
       orphan wait, and counts no retry for it. 0 = none. */
    uint64_t dropped_task;
    uint32_t dropped_attempt;
    pending_t pending[FZ_MAX_PENDING];
    size_t npending;
    int64_t next_resend_ms;
    bool stopping; /* first signal seen */
    bool draining; /* SIGUSR1: finish the agent, take nothing more, then leave */
    /* A dispatch the broker sent before it heard of the drain may still be on its way; the
       reply to a ping sent after the draining heartbeat comes behind it (one connection,
       in order), so until that pong (or drain_sync_ms) such a dispatch is still run. */
    bool drain_synced;
    int64_t drain_sync_ms;
    bool said_bye;         /* stopping, and the broker was told: no more dispatches */
    int64_t kill_grace_ms; /* of the current agent: how long stopping may take */
    bool interrupted;      /* the current agent was cancelled because the worker stops */
    int64_t stall_ms;      /* the current attempt's stall limit (announce-only; 0 none) */
    int64_t dispatched_ms; /* when the current attempt's dispatch came */
    bool stall_logged;     /* the stall limit was passed and said in the log */
    int64_t busy_ms;       /* last time an agent ran or a result waited (--idle-exit) */
};

/* ---------------------------------------------------------------- sending */

static void s_send(fz_slot_t *self, fz_enc_t **enc_p)
{
    if (fz_net_send(self->dealer, NULL, enc_p) < 0)
        fz_debug("send failed: %s", zmq_strerror(zmq_errno()));
}

static void s_send_copy(fz_slot_t *self, fz_enc_t *enc)
{
    size_t len;
    const void *data = fz_enc_data(enc, &len);
    if (data)
        zmq_send(zsock_resolve(self->dealer), data, len, ZMQ_DONTWAIT);
}

static void s_hello(fz_slot_t *self)
{
    fz_enc_t *e = fz_enc_new("hello", 0);
    fz_enc_str(e, "name", self->cfg.name);
    fz_enc_array(e, "models", self->nmodels);
    for (size_t i = 0; i < self->nmodels; i++)
        fz_enc_str(e, NULL, self->models[i]);
    fz_enc_str(e, "nonce", self->nonce);
    /* labels k=v,k=v */
    size_t nl = 0;
    char labels[1024] = "", count[1024];
    if (self->cfg.labels)
        snprintf(labels, sizeof labels, "%s", self->cfg.labels);
    /* pairs are checked at start-up (fz-worker): count those with a '=' */
    memcpy(count, labels, sizeof count);
    char *save0 = NULL;
    for (char *kv = strtok_r(count, ",", &save0); kv; kv = strtok_r(NULL, ",", &save0))
        nl += strchr(kv, '=') != NULL;
    fz_enc_map(e, "labels", nl);
    char *save = NULL;
    for (char *kv = strtok_r(labels, ",", &save); kv && nl; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            continue;
        *eq = 0;
        fz_enc_str(e, NULL, kv);
        fz_enc_str(e, NULL, eq + 1);
    }
    if (self->active) {
        fz_enc_uint(e, "task", self->task);
        fz_enc_uint(e, "attempt", self->attempt);
    }
    if (self->cfg.prefetch)
        fz_enc_bool(e, "prefetch", true);
    if (self->ahead) {
        self->dropped_task = fz_msg_uint(self->ahead, "task", 0);
        self->dropped_attempt = (uint32_t)fz_msg_uint(self->ahead, "attempt", 0);
        fz_info("task %llu: dropped the dispatch held ahead (a new hello: the broker gives it "
                "again)",
                (unsigned long long)self->dropped_task);
        fz_msg_destroy(&self->ahead);
    }
    if (self->dropped_task) {
        fz_enc_uint(e, "dropped_task", self->dropped_task);
        fz_enc_uint(e, "dropped_attempt", self->dropped_attempt);
    }
    s_send(self, &e);
}

/* The broker announces a stall from the heartbeats' idle_ms; the worker's log says it too,
   once per attempt. */
static void s_note_stall(fz_slot_t *self, int64_t idle_ms)
{
    if (self->stall_ms <= 0 || self->stall_logged || idle_ms < self->stall_ms)
        return;
    self->stall_logged = true;
    fz_warn("task %llu attempt %u: no output or report line for %lld s (stall limit %lld s)",
            (unsigned long long)self->task, self->attempt, (long long)(idle_ms / 1000),
            (long long)(self->stall_ms / 1000));
}

static void s_heartbeat(fz_slot_t *self)
{
    fz_enc_t *e = fz_enc_new("heartbeat", 0);
    if (self->draining)
        fz_enc_bool(e, "draining", true);
    if (self->active && !self->agent) { /* the workspace is being made */
        fz_enc_uint(e, "task", self->task);
        fz_enc_uint(e, "attempt", self->attempt);
        fz_enc_uint(e, "elapsed_ms", (uint64_t)(fz_clock_ms() - self->dispatched_ms));
        fz_enc_uint(e, "idle_ms", 0);
    }
    if (self->agent) {
        /* after the agent, its final figures while the workspace seals, checks, finishes */
        const fz_agent_status_t *st = fz_agent_status(self->agent);
        fz_enc_uint(e, "task", self->task);
        fz_enc_uint(e, "attempt", self->attempt);
        fz_enc_uint(e, "elapsed_ms", (uint64_t)(fz_clock_ms() - self->dispatched_ms));
        int64_t idle_ms = fz_agent_idle_ms(self->agent, fz_clock_ms());
        fz_enc_uint(e, "idle_ms", (uint64_t)idle_ms);
        fz_enc_float(e, "cost_usd", fz_result_cost(st->cost_usd));
        fz_enc_uint(e, "tokens_in", st->tokens_in);
        fz_enc_uint(e, "tokens_cache_read", st->tokens_cache_read);
        fz_enc_uint(e, "tokens_cache_write", st->tokens_cache_write);
        fz_enc_uint(e, "tokens_out", st->tokens_out);
        if (st->progress_pct >= 0 && st->progress_pct <= 100)
            fz_enc_uint(e, "progress", (uint64_t)st->progress_pct);
        fz_result_text(e, "progress_text", st->progress_text, 1024);
        s_note_stall(self, idle_ms);
    }
    s_send(self, &e);
}

/* A new DEALER: the old one may hold a dead pipe, and libzmq gives a new routing id. */
static int s_connect(fz_slot_t *self)
{
    zsock_destroy(&self->dealer);
    self->dealer = fz_net_socket(ZMQ_DEALER);
    if (!self->dealer || zsock_connect(self->dealer, "%s", self->cfg.broker) < 0) {
        fz_error("cannot connect to %s: %s", self->cfg.broker, zmq_strerror(zmq_errno()));
        return -1;
    }
    self->welcomed = false;
    int64_t now = fz_clock_ms();
    self->broker_seen_ms = now;
    self->next_hello_ms = now + self->backoff_ms;
    s_hello(self);
    return 0;
}

/* ---------------------------------------------------------------- results */

/* The broker takes a worker whose agent is missing out of service (worker.unhealthy): say
   why where the operator looks. */
static void s_warn_agent_missing(fz_slot_t *self, const fz_result_t *r, const char *why)
{
    if (fz_result_class(r) != FZ_CLASS_AGENT_MISSING)
        return;
    fz_warn("task %llu attempt %u: the agent command %s%s%s is not installed or not runnable "
            "(%s); the broker gives this worker no tasks until it says hello again",
            (unsigned long long)r->task, r->attempt, self->cfg.dry_run ? "" : "'",
            self->cfg.dry_run ? "(simulated)" : self->cfg.agent, self->cfg.dry_run ? "" : "'", why);
}

static void s_result_pending(fz_slot_t *self, uint64_t task, uint32_t attempt, fz_enc_t *enc)
{
    /* Last line of defence: a result the broker would refuse is replaced by a plain one
       that says why, so that it is recorded rather than resent for ever. */
    size_t len;
    const void *data = fz_enc_data(enc, &len);
    fz_msg_t *check = NULL;
    char why[256];
    if (!data || fz_msg_decode(data, len, &check, NULL, why, sizeof why) != FZ_OK) {
        fz_error("task %llu attempt %u: result would be refused (%s); sending a plain one",
                 (unsigned long long)task, attempt, data ? why : "no memory");
        fz_enc_destroy(&enc);
        char summary[400];
        snprintf(summary, sizeof summary, "fz-worker: the agent's result could not be sent: %s",
                 data ? why : "no memory");
        enc = fz_result_enc(&(fz_result_t){
            .task = task, .attempt = attempt, .outcome = FZ_OUTCOME_EXITED, .summary = summary});
    }
    fz_msg_destroy(&check);
    if (self->npending == FZ_MAX_PENDING) {
        fz_warn("dropping the unacknowledged result of task %llu: too many pending",
                (unsigned long long)self->pending[0].task);
        fz_enc_destroy(&self->pending[0].enc);
        free(self->pending[0].repo);
        memmove(self->pending, self->pending + 1, (FZ_MAX_PENDING - 1) * sizeof *self->pending);
        self->npending--;
    }
    self->pending[self->npending++] = (pending_t){task, attempt, enc, NULL, ""};
    s_send_copy(self, enc);
    self->next_resend_ms = fz_clock_ms() + self->hb_ms;
}

static void s_on_ack(fz_slot_t *self, fz_msg_t *msg)
{
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    for (size_t i = 0; i < self->npending; i++)
        if (self->pending[i].task == task && self->pending[i].attempt == attempt) {
            pending_t *p = &self->pending[i];
            /* The broker says this attempt is the task's success: fz/TASK points at it. */
            if (p->repo && fz_msg_bool(msg, "promote", false) &&
                !fz_aws_promote(self->bg, self->cfg.cache_dir, p->repo, task, p->head))
                fz_warn("task %llu: cannot set its branch: out of memory",
                        (unsigned long long)task);
            free(p->repo);
            fz_enc_destroy(&self->pending[i].enc);
            memmove(self->pending + i, self->pending + i + 1,
                    (self->npending - i - 1) * sizeof *self->pending);
            self->npending--;
            return;
        }
}

static void s_on_dispatch(fz_slot_t *self, fz_msg_t **msg_p);

/* True if the dispatch held ahead is (task, attempt); attempt 0 matches any. */
static bool s_holds(const fz_slot_t *self, uint64_t task, uint32_t attempt)
{
    return self->ahead && fz_msg_uint(self->ahead, "task", 0) == task &&
           (!attempt || fz_msg_uint(self->ahead, "attempt", 0) == attempt);
}

/* The attempt is over: what was held ahead (--prefetch) starts now. */
static void s_take_ahead(fz_slot_t *self)
{
    fz_msg_t *next = self->ahead;
    self->ahead = NULL;
    if (next)
        s_on_dispatch(self, &next);
    fz_msg_destroy(&next);
}

/* A result for an attempt that never ran an agent (busy, spawn failure): every field, zero
   or empty. */
static void s_result_simple(fz_slot_t *self, uint64_t task, uint32_t attempt, fz_outcome_t outcome,
                            const char *model, const char *summary)
{
    fz_result_t r = {
        .task = task, .attempt = attempt, .outcome = outcome, .model = model, .summary = summary};
    s_warn_agent_missing(self, &r, summary);
    s_result_pending(self, task, attempt, fz_result_enc(&r));
}

static void s_stream_output(fz_slot_t *self)
{
    char buf[FZ_MAX_CHUNK];
    size_t n = fz_agent_take_new_output(self->agent, buf, sizeof buf);
    if (!n)
        return;
    fz_enc_t *e = fz_enc_new("output", 0);
    fz_enc_uint(e, "task", self->task);
    fz_enc_uint(e, "attempt", self->attempt);
    fz_enc_bin(e, "data", buf, n);
    s_send(self, &e);
}

/* Keeps what a promote in the ack will need: the repository and the sealed head. */
static void s_keep_for_promote(fz_slot_t *self, const fz_aws_result_t *ws)
{
    pending_t *p = &self->pending[self->npending - 1];
    if (!ws || !ws->sealed || !ws->ws.head[0] || p->task != self->task)
        return;
    p->repo = strdup(fz_msg_str(self->dispatch, "repo", "", NULL));
    fz_strcopy(p->head, sizeof p->head, ws->ws.head);
}

/* The attempt is over (agent, workspace, check): its result goes out and stays pending
   until acknowledged. */
static void s_finish(fz_slot_t *self)
{
    const fz_agent_status_t *st = self->agent ? fz_agent_status(self->agent) : NULL;
    char log[4096];
    snprintf(log, sizeof log, "%s/%llu/attempt-%u.log", self->cfg.workroot,
             (unsigned long long)self->task, self->attempt);
    fz_result_t r = {.task = self->task,
                     .attempt = self->attempt,
                     .outcome = fz_result_outcome(st ? (int)st->outcome : -1,
                                                  self->aws && fz_aws_cancelled(self->aws),
                                                  self->interrupted),
                     .st = st,
                     .ws = fz_aws_result(self->aws),
                     .model = self->model,
                     /* the log is made by the agent's first byte of output: a silent
                        agent has none, and the result names none */
                     .log = self->cfg.dry_run || !st || !st->log_made ? "" : log};
    r.summary = fz_result_summary(&r, self->start_err);
    if (self->agent)
        r.tail = fz_agent_tail(self->agent, &r.tail_len);
    fz_class_t cls = fz_result_class(&r);
    fz_info("task %llu attempt %u: %s%s%s (exit %d, %.4f USD, %lld ms)%s%s",
            (unsigned long long)self->task, self->attempt, fz_outcome_name(r.outcome),
            cls != FZ_CLASS_NONE ? ", class " : "", fz_class_name(cls), st ? st->exit_code : -1,
            st ? st->cost_usd : 0, st ? (long long)st->duration_ms : 0LL, r.summary ? ": " : "",
            r.summary ? r.summary : "");
    char why[600] = "the agent reported it";
    if (!st)
        snprintf(why, sizeof why, "%s", self->start_err);
    else if (st->cls != FZ_CLASS_AGENT_MISSING)
        snprintf(why, sizeof why, "exit %d", st->exit_code);
    s_warn_agent_missing(self, &r, why);
    /* A folder the attempt left empty goes back to the spares (fz_spare.h) before anyone
       hears of the result: nothing of the attempt runs any more. */
    if (!self->cfg.dry_run && (!st || !st->log_made)) {
        char name[32];
        snprintf(name, sizeof name, "%llu", (unsigned long long)self->task);
        fz_spare_give_back(self->spare, name);
    }
    s_result_pending(self, self->task, self->attempt, fz_result_enc(&r));
    s_keep_for_promote(self, r.ws);
    fz_agent_destroy(&self->agent);
    fz_aws_destroy(&self->aws);
    fz_msg_destroy(&self->dispatch);
    self->active = self->agent_over = false;
    self->start_err[0] = 0;
    self->task = 0;
    self->attempt = 0;
    self->interrupted = false;
    s_take_ahead(self);
}

/* The agent ended: the workspace seals, checks and finishes before the result goes. */
static void s_agent_over(fz_slot_t *self)
{
    s_stream_output(self);
    self->agent_over = true;
    fz_bg_hold(self->bg, false);
    const fz_agent_status_t *st = fz_agent_status(self->agent);
    fz_aws_agent_ended(self->aws, (int)st->outcome, st->exit_code,
                       (double)st->duration_ms / 1000.0);
}

/* ---------------------------------------------------------------- dispatch */

/* What fz_launch needs of the current attempt. */
static fz_launch_t s_launch(fz_slot_t *self)
{
    return (fz_launch_t){.agent = self->cfg.agent,
                         .broker = self->cfg.broker,
                         .events = self->cfg.events,
                         .worker = self->cfg.name,
                         .model = self->model,
                         .task = self->task,
                         .attempt = self->attempt,
                         .pass_env = self->cfg.pass_env,
                         .agent_key = self->cfg.agent_key,
                         .broker_key = self->cfg.agent_broker_key,
                         .dry_duration = self->cfg.dry_duration,
                         .dry_cost = self->cfg.dry_cost,
                         .dry_exit = self->cfg.dry_exit};
}

/* The dispatch's workspace and check (with neither, it only orders the agent after fz_bg's
   work). NULL with err. */
static fz_aws_t *s_new_aws(fz_slot_t *self, fz_msg_t *msg, const char *workdir, char *err,
                           size_t errlen)
{
    char env[FZ_LAUNCH_BASE_ENV][512];
    const char *envp[FZ_LAUNCH_BASE_ENV + 1] = {NULL};
    fz_launch_t l = s_launch(self);
    fz_launch_base_env(&l, env, envp);
    fz_aws_opts_t o = {.bg = self->bg,
                       .cache_dir = self->cfg.cache_dir,
                       .workdir = workdir,
                       .task = self->task,
                       .attempt = self->attempt,
                       .timeout_s = self->limits.timeout_s,
                       .kill_grace_s = self->limits.kill_grace_s,
                       .env = envp,
                       .pass_env = self->cfg.pass_env};
    return fz_aws_for_dispatch(&o, msg, err, errlen);
}

/* Starts the agent once the workspace is ready; an agent that cannot start still lets the
   workspace finish (its worktree is removed) before the spawn-failed result. */
static void s_start_agent(fz_slot_t *self)
{
    char workdir[4096], name[32];
    snprintf(workdir, sizeof workdir, "%s/%llu", self->cfg.workroot,
             (unsigned long long)self->task);
    /* The task's folder from a spare made while idle (fz_spare.h); fz_agent makes it when
       none is ready, and finds it there otherwise. */
    snprintf(name, sizeof name, "%llu", (unsigned long long)self->task);
    bool fresh = !self->cfg.dry_run && fz_spare_take(self->spare, name);
    const char *cwd = fz_aws_cwd(self->aws);
    fz_agent_opts_t opts = self->limits;
    opts.fresh_workdir = fresh;
    fz_launch_t l = s_launch(self);
    char *err = self->start_err;
    size_t errlen = sizeof self->start_err;
    fz_bg_hold(self->bg, true); /* no git while the agent's processes live (fz_bg.h) */
    self->agent = self->cfg.dry_run
                      ? fz_launch_sim(&l, self->dispatch, &opts, err, errlen)
                      : fz_launch_real(&l, self->dispatch, &opts, workdir, cwd ? cwd : workdir,
                                       fz_aws_env(self->aws), err, errlen);
    if (!self->agent) {
        fz_bg_hold(self->bg, false);
        fz_error("task %llu: agent did not start: %s", (unsigned long long)self->task,
                 self->start_err);
        fz_aws_agent_ended(self->aws, FZ_OUTCOME_SPAWN_FAILED, -1, 0);
        return;
    }
    fz_aws_agent_started(self->aws);
    fz_info("task %llu attempt %u started (model %s, pid %d%s%s)", (unsigned long long)self->task,
            self->attempt, self->model[0] ? self->model : "-", (int)fz_agent_pid(self->agent),
            cwd ? ", in " : "", cwd ? cwd : "");
    fz_enc_t *e = fz_enc_new("started", 0);
    fz_enc_uint(e, "task", self->task);
    fz_enc_uint(e, "attempt", self->attempt);
    fz_enc_uint(e, "pid", (uint64_t)fz_agent_pid(self->agent));
    s_send(self, &e);
    self->next_output_ms = fz_clock_ms() + FZ_OUTPUT_EVERY_MS;
}

/* One step of the current attempt: start the agent when ready, send the result when done. */
static void s_attempt_step(fz_slot_t *self, int64_t now)
{
    if (!self->active)
        return;
    if (self->agent && !self->agent_over) {
        fz_agent_pump(self->agent, now);
        if (fz_agent_done(self->agent))
            s_agent_over(self);
    }
    fz_aws_pump(self->aws, now);
    fz_aws_phase_t phase = fz_aws_phase(self->aws);
    if (phase == FZ_AWS_READY && !self->agent)
        s_start_agent(self);
    else if (phase == FZ_AWS_DONE)
        s_finish(self);
}

static void s_on_dispatch(fz_slot_t *self, fz_msg_t **msg_p)
{
    fz_msg_t *msg = *msg_p;
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    if ((self->active && self->task == task && self->attempt == attempt) ||
        (attempt && s_holds(self, task, attempt))) {
        fz_warn("dispatch of task %llu attempt %u again: it runs already; ignored",
                (unsigned long long)task, attempt);
        return;
    }
    if (self->active && self->cfg.prefetch && !self->ahead && !self->stopping && !self->draining) {
        self->ahead = msg; /* ours now: it starts as the current attempt ends */
        *msg_p = NULL;
        return;
    }
    /* Draining, a dispatch sent before the broker heard of it is run (not --once: one task) */
    bool late = self->draining && !self->drain_synced && !self->cfg.once;
    if (self->active || self->stopping || (self->draining && !late)) {
        fz_warn("dispatch of task %llu while %s: rejected", (unsigned long long)task,
                self->stopping || self->draining ? "stopping" : "busy");
        s_result_simple(self, task, attempt, FZ_OUTCOME_REJECTED, "", "worker busy");
        return;
    }
    self->task = task;
    self->attempt = attempt;
    /* The broker names the model (a task for any model gets this worker's first allowed
       one), so a model the whitelist refused is never picked here. */
    snprintf(self->model, sizeof self->model, "%s", fz_msg_str(msg, "model", "", NULL));
    fz_agent_opts_t *opts = &self->limits;
    *opts = (fz_agent_opts_t){0};
    opts->timeout_s = (double)fz_msg_uint(msg, "timeout", 0);
    opts->max_cost = fz_msg_float(msg, "max_cost", 0);
    opts->kill_grace_s = (double)fz_msg_uint(msg, "kill_grace", 10);
    opts->stall_s = (double)fz_msg_uint(msg, "stall", 0);
    opts->stall_kill_s = (double)fz_msg_uint(msg, "stall_kill", 0);
    self->stall_ms = (int64_t)(opts->stall_s * 1000);
    self->stall_logged = false;
    self->interrupted = false;
    self->kill_grace_ms = (int64_t)(opts->kill_grace_s * 1000);
    if (opts->kill_grace_s <= 0)
        opts->kill_grace_s = 0.001;
    char workdir[4096], err[512];
    snprintf(workdir, sizeof workdir, "%s/%llu", self->cfg.workroot, (unsigned long long)task);
    self->aws = s_new_aws(self, msg, workdir, err, sizeof err);
    if (!self->aws) {
        fz_error("task %llu: %s", (unsigned long long)task, err);
        s_result_simple(self, task, attempt, FZ_OUTCOME_SPAWN_FAILED, self->model, err);
        self->task = 0;
        return;
    }
    self->active = true;
    self->dispatch = msg; /* ours now: the agent may start later */
    *msg_p = NULL;
    self->dispatched_ms = fz_clock_ms();
    s_attempt_step(self, fz_clock_ms()); /* without a workspace the agent starts now */
}

static void s_on_cancel(fz_slot_t *self, fz_msg_t *msg)
{
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    if (s_holds(self, task, attempt)) {
        /* Held ahead, never started: given back as not taken. A cancel the broker asked for
           ends the task as cancelled all the same (PROTOCOL.md section 5). */
        fz_info("task %llu: cancel of the dispatch held ahead (%s)", (unsigned long long)task,
                fz_msg_str(msg, "reason", "cancelled", NULL));
        s_result_simple(self, task, (uint32_t)fz_msg_uint(self->ahead, "attempt", 0),
                        FZ_OUTCOME_REJECTED, fz_msg_str(self->ahead, "model", "", NULL),
                        "cancelled before it started");
        fz_msg_destroy(&self->ahead);
        return;
    }
    if (!self->active || self->task != task || (attempt && self->attempt != attempt))
        return;
    const char *reason = fz_msg_str(msg, "reason", "cancelled", NULL);
    fz_info("task %llu: cancel (%s)", (unsigned long long)task, reason);
    if (self->agent && !self->agent_over)
        fz_agent_cancel(self->agent, reason);
    fz_aws_cancel(self->aws);
}

static void s_on_welcome(fz_slot_t *self, fz_msg_t *msg)
{
    self->welcomed = true;
    self->dropped_task = 0; /* that hello said it */
    self->backoff_ms = 1000;
    self->hb_ms = (uint32_t)fz_msg_uint(msg, "heartbeat_ms", self->hb_ms);
    /* The broker's interval may be shorter than ours: the next heartbeat keeps to it. */
    int64_t next = fz_clock_ms() + self->hb_ms;
    if (next < self->next_hb_ms)
        self->next_hb_ms = next;
    const msgpack_object *refused = fz_msg_obj(msg, "refused_models");
    for (uint32_t i = 0; refused && i < refused->via.array.size; i++)
        fz_warn("the broker does not allow model '%.*s': this worker gets no tasks for it",
                (int)refused->via.array.ptr[i].via.str.size, refused->via.array.ptr[i].via.str.ptr);
    fz_info("connected to %s (heartbeat %u ms)", self->cfg.broker, self->hb_ms);
    /* Results the broker has not acknowledged go again at once. */
    for (size_t i = 0; i < self->npending; i++)
        s_send_copy(self, self->pending[i].enc);
}

static void s_on_error(fz_slot_t *self, fz_msg_t *msg)
{
    const char *code = fz_msg_str(msg, "code", "", NULL);
    const char *text = fz_msg_str(msg, "message", "", NULL);
    fz_reason_t reason = fz_reason_from_name(fz_msg_str(msg, "reason", "", NULL));
    fz_warn("broker error %s: %s", code, text);
    if (reason == FZ_REASON_NAME_TAKEN) {
        self->welcomed = false; /* the hello timer asks again */
        return;
    }
    if (reason == FZ_REASON_UNKNOWN_PEER && self->welcomed && !self->said_bye) {
        /* The broker restarted and does not know us: introduce ourselves again, once (the
           errors for messages already on their way must not each cause a hello). */
        self->welcomed = false;
        self->next_hello_ms = fz_clock_ms() + self->hb_ms;
        s_hello(self);
    }
}

/* Handles one message from the broker, if one is waiting; false when none was. */
static bool s_recv(fz_slot_t *self)
{
    bool got;
    fz_msg_t *msg = fz_net_recv_now(self->dealer, &got);
    if (!msg)
        return got;
    self->broker_seen_ms = fz_clock_ms();
    if (fz_msg_is(msg, "welcome"))
        s_on_welcome(self, msg);
    else if (fz_msg_is(msg, "dispatch"))
        s_on_dispatch(self, &msg);
    else if (fz_msg_is(msg, "cancel"))
        s_on_cancel(self, msg);
    else if (fz_msg_is(msg, "result-ack"))
        s_on_ack(self, msg);
    else if (fz_msg_is(msg, "error"))
        s_on_error(self, msg);
    else if (fz_msg_is(msg, "pong"))
        self->drain_synced |= self->draining && fz_msg_uint(msg, "rid", 0) == S_DRAIN_RID;
    else if (!fz_msg_is(msg, "heartbeat"))
        fz_warn("ignored unexpected '%s' from the broker", fz_msg_type(msg));
    fz_msg_destroy(&msg);
    return true;
}

/* ---------------------------------------------------------------- timers */

/* How long the broker may stay silent before the connection is given up: three heartbeats,
   but before its first welcome at least FZ_WELCOME_GRACE_MS. A new connection needs several
   round trips (TCP, the ZMTP and CURVE handshakes, ZAP, hello) and a lost SYN alone costs a
   second: over a slow, lossy link, giving up sooner replaces a connection the broker has
   just accepted, and the dispatch it sent there is lost. */
#define FZ_WELCOME_GRACE_MS 10000

static int64_t s_silence_limit(const fz_slot_t *self)
{
    int64_t limit = 3 * (int64_t)self->hb_ms;
    return !self->welcomed && limit < FZ_WELCOME_GRACE_MS ? FZ_WELCOME_GRACE_MS : limit;
}

static void s_timers(fz_slot_t *self, int64_t now)
{
    if (now - self->broker_seen_ms > s_silence_limit(self)) {
        fz_warn("broker silent for %lld ms: reconnecting (next try in %u ms)",
                (long long)(now - self->broker_seen_ms), self->backoff_ms);
        s_connect(self);
        self->broker_seen_ms = now + self->backoff_ms; /* give the new link time */
        self->backoff_ms =
            self->backoff_ms * 2 > FZ_BACKOFF_MAX_MS ? FZ_BACKOFF_MAX_MS : self->backoff_ms * 2;
        return;
    }
    if (!self->welcomed && now >= self->next_hello_ms) {
        s_hello(self);
        self->next_hello_ms = now + self->hb_ms;
    }
    if (now >= self->next_hb_ms) {
        if (self->welcomed && !self->said_bye) /* before the welcome, the hello speaks */
            s_heartbeat(self);
        self->next_hb_ms = now + self->hb_ms;
    }
    if (self->npending && now >= self->next_resend_ms) {
        for (size_t i = 0; i < self->npending; i++)
            s_send_copy(self, self->pending[i].enc);
        self->next_resend_ms = now + self->hb_ms;
    }
    if (self->agent && !self->agent_over && now >= self->next_output_ms) {
        s_stream_output(self);
        self->next_output_ms = now + FZ_OUTPUT_EVERY_MS;
    }
}

static int s_timeout(fz_slot_t *self, int64_t now)
{
    int64_t next = self->next_hb_ms;
    if (self->npending && self->next_resend_ms < next)
        next = self->next_resend_ms;
    if (self->agent && !self->agent_over) {
        if (self->next_output_ms < next)
            next = self->next_output_ms;
        int t = fz_agent_timeout_ms(self->agent, now);
        if (t >= 0 && now + t < next)
            next = now + t;
    }
    int t = self->aws ? fz_aws_timeout_ms(self->aws, now) : -1;
    if (t >= 0 && now + t < next)
        next = now + t;
    /* no pong by then: leave without it (once past, it wakes the loop no more) */
    if (self->draining && !self->drain_synced && self->drain_sync_ms > now &&
        self->drain_sync_ms < next)
        next = self->drain_sync_ms;
    int64_t ms = next - now;
    return ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
}

/* ---------------------------------------------------------------- life cycle */

fz_slot_t *fz_slot_new(const fz_slot_config_t *cfg, char *err, size_t errlen)
{
    fz_slot_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    if (!cfg->cache_dir || !*cfg->cache_dir) {
        snprintf(self->cache_dir, sizeof self->cache_dir, "%s/.fz-cache", cfg->workroot);
        self->cfg.cache_dir = self->cache_dir;
    }
    self->hb_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 1000;
    self->kill_grace_ms = 10000;
    self->backoff_ms = 1000;
    snprintf(self->nonce, sizeof self->nonce, "%08x%08x", (unsigned)getpid(),
             (unsigned)fz_clock_ms());
    if (cfg->models && *cfg->models) {
        char copy[2048];
        snprintf(copy, sizeof copy, "%s", cfg->models);
        char *save = NULL;
        for (char *m = strtok_r(copy, ",", &save); m && self->nmodels < 16;
             m = strtok_r(NULL, ",", &save))
            snprintf(self->models[self->nmodels++], sizeof self->models[0], "%s", m);
    }
    if (fz_mkdirs(cfg->workroot, 0755) < 0 || !realpath(cfg->workroot, self->workroot)) {
        snprintf(err, errlen, "cannot create work folder %s: %s", cfg->workroot, strerror(errno));
        free(self);
        return NULL;
    }
    /* Agents get absolute, resolved folders (FZ_WORKDIR): resolved here once, not per
       attempt (fz_agent takes a plain absolute path as it is). */
    self->cfg.workroot = self->workroot;
    /* Worktrees a killed worker left in this cache go before anything new is made. */
    fz_wsclean_run(self->cfg.cache_dir);
    if (!cfg->dry_run && !(self->spare = fz_spare_new(self->workroot)))
        fz_warn("no spare task folders in %s (%s): each attempt makes its own", self->workroot,
                strerror(errno));
    if (!(self->bg = fz_bg_new())) {
        snprintf(err, errlen, "cannot start the git thread: %s", strerror(errno));
        fz_spare_destroy(&self->spare);
        free(self);
        return NULL;
    }
    if (s_connect(self) < 0) {
        snprintf(err, errlen, "cannot connect to %s", cfg->broker);
        fz_slot_destroy(&self);
        return NULL;
    }
    self->next_hb_ms = fz_clock_ms() + self->hb_ms;
    return self;
}

void fz_slot_destroy(fz_slot_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_slot_t *self = *self_p;
    if (self->agent && !self->agent_over)
        fz_bg_hold(self->bg, false);
    fz_agent_destroy(&self->agent);
    fz_aws_destroy(&self->aws); /* an unfinished worktree is removed */
    fz_msg_destroy(&self->dispatch);
    fz_msg_destroy(&self->ahead);
    fz_bg_destroy(&self->bg);
    fz_spare_destroy(&self->spare);
    for (size_t i = 0; i < self->npending; i++) {
        fz_enc_destroy(&self->pending[i].enc);
        free(self->pending[i].repo);
    }
    zsock_destroy(&self->dealer);
    free(self);
    *self_p = NULL;
}

/* Tells the broker this worker drains, then pings it: see drain_synced. */
static void s_start_draining(fz_slot_t *self, int64_t now)
{
    self->draining = true;
    s_heartbeat(self);
    fz_enc_t *ping = fz_enc_new("ping", S_DRAIN_RID);
    s_send(self, &ping);
    /* a broker that does not answer (down, unreachable) holds the leaving up to this */
    int64_t wait = 2 * (int64_t)self->hb_ms;
    self->drain_sync_ms = now + (wait < 5000 ? wait : 5000);
}

/* --once: the first task taken (an agent, or a result owed) drains the worker; --idle-exit:
   so does a time without either. Draining does the rest (finish, report, ack, bye). */
static void s_once_or_idle(fz_slot_t *self, int64_t now)
{
    bool busy = self->active || self->npending;
    if (busy || !self->busy_ms)
        self->busy_ms = now;
    bool once = self->cfg.once && busy;
    bool idle = self->cfg.idle_exit_s && now - self->busy_ms >= self->cfg.idle_exit_s * 1000LL;
    if (self->draining || (!once && !idle))
        return;
    fz_info("%s", once ? "--once: this task is the last; leaving when its result is acknowledged"
                       : "--idle-exit: no task for that long; leaving");
    s_start_draining(self, now);
}

/* First signal: stop the agent, report it and wait for the ack; second: leave now. */
static bool s_should_leave(fz_slot_t *self, int64_t now, int64_t *leave_at)
{
    int signals = fz_net_signal_count();
    if (signals >= 2)
        return true;
    if (fz_net_drain_requested() && !self->draining) {
        /* Draining: the broker hears it at once; the agent finishes in its own time. */
        fz_info("draining: %s", self->active ? "finishing the running agent, then leaving"
                                             : "no agent; leaving once the broker has heard it");
        s_start_draining(self, now);
    }
    s_once_or_idle(self, now);
    if (self->draining && !self->stopping && !self->active &&
        (self->drain_synced || now >= self->drain_sync_ms)) {
        self->stopping = true;
        /* for the last result's acknowledgement; --once waits for it as long as it takes */
        *leave_at = self->cfg.once ? INT64_MAX : now + 5000;
    }
    if (signals == 1 && self->stopping && *leave_at == INT64_MAX)
        *leave_at = now + 5000; /* --once waiting for its ack: a signal bounds the wait */
    if (signals == 1 && !self->stopping) {
        self->stopping = true;
        fz_info("stopping: %s", self->active ? "interrupting the running agent" : "no agent");
        if (self->agent && !self->agent_over) {
            const fz_agent_status_t *st = fz_agent_status(self->agent);
            /* a stop already under way (timeout, cancel...) keeps its outcome */
            self->interrupted = st->outcome == FZ_AGENT_RUNNING && !st->stopping;
            fz_agent_cancel(self->agent, "interrupted");
        } else if (self->active)
            self->interrupted = !fz_aws_cancelled(self->aws);
        if (self->active)
            fz_aws_cancel(self->aws);
        /* time for the agent to end within its grace, the workspace to be sealed and
           removed, and for the result's ack */
        *leave_at = now + self->kill_grace_ms + 5000 +
                    (self->aws && fz_aws_result(self->aws)->has_repo ? S_WS_STOP_MS : 0);
    }
    if (!self->stopping)
        return false;
    if (!self->active && !self->said_bye && self->npending == 0) {
        /* Every result is acknowledged: the broker may forget us now. */
        fz_enc_t *bye = fz_enc_new("bye", 0);
        s_send(self, &bye);
        self->said_bye = true;
    }
    /* a promote the last ack asked for is done before leaving (fz_bg_destroy would stop it) */
    return now >= *leave_at || (!self->active && self->npending == 0 && fz_bg_idle(self->bg));
}

int fz_slot_run(fz_slot_t *self)
{
    int64_t leave_at = INT64_MAX;
    while (!s_should_leave(self, fz_clock_ms(), &leave_at)) {
        int64_t now = fz_clock_ms();
        /* The bg runner's, the agent's or the workspace's, and the dealer's descriptor. */
        struct pollfd fds[2 + FZ_AGENT_MAX_POLLFDS];
        fds[0] = (struct pollfd){.fd = fz_bg_fd(self->bg), .events = POLLIN};
        int n = 1;
        if (self->active)
            n += self->agent && !self->agent_over
                     ? fz_agent_pollfds(self->agent, fds + 1, FZ_AGENT_MAX_POLLFDS)
                     : fz_aws_pollfds(self->aws, fds + 1, FZ_AGENT_MAX_POLLFDS);
        /* Idle (no attempt): the next task's folder is made now, off the path from its
           dispatch to its agent. */
        if (!self->active)
            fz_spare_fill(self->spare);
        void *dealer = zsock_resolve(self->dealer);
        /* fds[n] stays as set here when the socket had a message before any poll. */
        fds[n] = (struct pollfd){.fd = -1, .revents = POLLIN};
        int rc = fz_net_wait(&dealer, 1, fds, n, s_timeout(self, now));
        if (rc < 0 && errno != EINTR) {
            fz_error("poll failed: %s", strerror(errno));
            break;
        }
        /* Woken by the agent, the keeper or git only: nothing came from the broker (the
           next wait looks at the socket's events first), so no read is tried. */
        while ((rc < 0 || fds[n].revents) && s_recv(self))
            ;
        fz_bg_collect(self->bg); /* finished git jobs move their attempts on */
        now = fz_clock_ms();
        s_attempt_step(self, now);
        s_timers(self, now);
    }
    if (!self->said_bye) {
        fz_enc_t *bye = fz_enc_new("bye", 0);
        s_send(self, &bye);
    }
    return 0;
}
