/*  fz_slot: the worker's broker connection and agent supervision loop; see fz_slot.h. */

#include "fz_slot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_agent.h"
#include "fz_classify.h"
#include "fz_net.h"
#include "fz_vocab.h"

#define FZ_OUTPUT_EVERY_MS 250  /* output is streamed at most this often */
#define FZ_BACKOFF_MAX_MS 32000 /* reconnect backoff doubles up to this */
#define FZ_MAX_PENDING 16       /* unacknowledged results kept (oldest dropped past it) */

typedef struct {
    uint64_t task;
    uint32_t attempt;
    fz_enc_t *enc; /* the encoded result, resent until acknowledged */
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
    /* the current attempt */
    fz_agent_t *agent;
    uint64_t task;
    uint32_t attempt;
    char model[65];
    int64_t next_output_ms;
    pending_t pending[FZ_MAX_PENDING];
    size_t npending;
    int64_t next_resend_ms;
    bool stopping;         /* first signal seen */
    bool draining;         /* SIGUSR1: finish the agent, take nothing more, then leave */
    bool said_bye;         /* stopping, and the broker was told: no more dispatches */
    int64_t kill_grace_ms; /* of the current agent: how long stopping may take */
    bool interrupted;      /* the current agent was cancelled because the worker stops */
    int64_t stall_ms;      /* the current attempt's stall limit (announce-only; 0 none) */
    bool stall_logged;     /* the stall limit was passed and said in the log */
    int64_t busy_ms;       /* last time an agent ran or a result waited (--idle-exit) */
};

/* A result's contents: from the agent's status, or zeros for an attempt that ran none. */
typedef struct {
    uint64_t task;
    uint32_t attempt;
    fz_outcome_t outcome;
    const fz_agent_status_t *st; /* NULL: no agent ran (rejected, spawn-failed) */
    const char *model, *summary, *log;
    const char *tail;
    size_t tail_len;
} result_t;

/* ---------------------------------------------------------------- command templates */

/* Appends s single-quoted for /bin/sh. */
static void s_quote(zchunk_t *out, const char *s)
{
    zchunk_extend(out, "'", 1);
    for (; *s; s++) {
        if (*s == '\'')
            zchunk_extend(out, "'\\''", 4);
        else
            zchunk_extend(out, s, 1);
    }
    zchunk_extend(out, "'", 1);
}

char *fz_slot_expand(const char *tmpl, const char *model, uint64_t task, uint32_t attempt,
                     const char *workdir)
{
    zchunk_t *out = zchunk_new(NULL, strlen(tmpl) + 64);
    if (!out)
        return NULL;
    char num[32];
    for (const char *p = tmpl; *p;) {
        const char *value = NULL;
        size_t skip = 0;
        if (strncmp(p, "{model}", 7) == 0)
            value = model, skip = 7;
        else if (strncmp(p, "{workdir}", 9) == 0)
            value = workdir, skip = 9;
        else if (strncmp(p, "{task}", 6) == 0)
            snprintf(num, sizeof num, "%llu", (unsigned long long)task), value = num, skip = 6;
        else if (strncmp(p, "{attempt}", 9) == 0)
            snprintf(num, sizeof num, "%u", attempt), value = num, skip = 9;
        if (value) {
            s_quote(out, value);
            p += skip;
        } else
            zchunk_extend(out, p++, 1);
    }
    zchunk_extend(out, "", 1);
    char *s = strdup((const char *)zchunk_data(out));
    zchunk_destroy(&out);
    return s;
}

/* ---------------------------------------------------------------- sending */

/* Agent-reported text goes out as valid UTF-8 within the field's limit, and a cost within
   the codec's range: a result the broker refused would be resent for ever. */
static void s_enc_text(fz_enc_t *e, const char *key, const char *text, size_t max)
{
    char buf[4097];
    size_t n = fz_utf8_clean(text, max < sizeof buf - 1 ? max : sizeof buf - 1, buf, sizeof buf);
    fz_enc_strn(e, key, buf, n);
}

static double s_cost(double cost)
{
    return cost > 0 && cost < 1e12 ? cost : cost >= 1e12 ? 1e12 : 0;
}

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
    if (self->agent) {
        fz_enc_uint(e, "task", self->task);
        fz_enc_uint(e, "attempt", self->attempt);
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
    if (self->agent) {
        const fz_agent_status_t *st = fz_agent_status(self->agent);
        fz_enc_uint(e, "task", self->task);
        fz_enc_uint(e, "attempt", self->attempt);
        fz_enc_uint(e, "elapsed_ms", (uint64_t)st->elapsed_ms);
        int64_t idle_ms = fz_agent_idle_ms(self->agent, fz_clock_ms());
        fz_enc_uint(e, "idle_ms", (uint64_t)idle_ms);
        fz_enc_float(e, "cost_usd", s_cost(st->cost_usd));
        fz_enc_uint(e, "tokens_in", st->tokens_in);
        fz_enc_uint(e, "tokens_cache_read", st->tokens_cache_read);
        fz_enc_uint(e, "tokens_cache_write", st->tokens_cache_write);
        fz_enc_uint(e, "tokens_out", st->tokens_out);
        if (st->progress_pct >= 0 && st->progress_pct <= 100)
            fz_enc_uint(e, "progress", (uint64_t)st->progress_pct);
        s_enc_text(e, "progress_text", st->progress_text, 1024);
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

/* The failure class of a result (FZ_CLASS_NONE: none), as fz_classify decides it. */
static fz_class_t s_result_class(const result_t *r)
{
    return fz_classify(r->outcome, r->st ? r->st->exit_code : -1,
                       r->st ? r->st->cls : FZ_CLASS_NONE);
}

/* Every field of §5's result, so that a strict peer can read any of them; class only when
   the attempt failed, reset_at and retry_after only when the agent reported them. */
static fz_enc_t *s_result_enc(const result_t *r)
{
    static const fz_agent_status_t none = {.exit_code = -1};
    const fz_agent_status_t *st = r->st ? r->st : &none;
    fz_enc_t *e = fz_enc_new("result", 0);
    fz_enc_uint(e, "task", r->task);
    fz_enc_uint(e, "attempt", r->attempt);
    fz_enc_str(e, "outcome", fz_outcome_name(r->outcome));
    fz_enc_int(e, "exit_code", st->exit_code);
    fz_enc_uint(e, "signal", (uint64_t)(st->signal > 0 ? st->signal : 0));
    fz_enc_uint(e, "duration_ms", (uint64_t)(st->duration_ms > 0 ? st->duration_ms : 0));
    fz_enc_float(e, "cost_usd", s_cost(st->cost_usd));
    fz_enc_uint(e, "tokens_in", st->tokens_in);
    fz_enc_uint(e, "tokens_cache_read", st->tokens_cache_read);
    fz_enc_uint(e, "tokens_cache_write", st->tokens_cache_write);
    fz_enc_uint(e, "tokens_out", st->tokens_out);
    s_enc_text(e, "model", st->model[0] ? st->model : r->model ? r->model : "", FZ_MAX_NAME);
    s_enc_text(e, "summary", r->summary ? r->summary : st->summary, 4096);
    fz_enc_bin(e, "output", r->tail ? r->tail : "",
               r->tail_len > FZ_MAX_TAIL ? FZ_MAX_TAIL : r->tail_len);
    fz_enc_str(e, "log", r->log ? r->log : "");
    fz_class_t cls = s_result_class(r);
    if (cls != FZ_CLASS_NONE)
        fz_enc_str(e, "class", fz_class_name(cls));
    if (st->reset_at > 0 && st->reset_at < FZ_RFILE_RESET_AT_LIMIT)
        fz_enc_float(e, "reset_at", st->reset_at);
    if (st->retry_after > 0 && st->retry_after < FZ_RFILE_RETRY_AFTER_LIMIT)
        fz_enc_float(e, "retry_after", st->retry_after);
    return e;
}

/* The broker takes a worker whose agent is missing out of service (worker.unhealthy): say
   why where the operator looks. */
static void s_warn_agent_missing(fz_slot_t *self, const result_t *r, const char *why)
{
    if (s_result_class(r) != FZ_CLASS_AGENT_MISSING)
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
        enc = s_result_enc(&(result_t){
            .task = task, .attempt = attempt, .outcome = FZ_OUTCOME_EXITED, .summary = summary});
    }
    fz_msg_destroy(&check);
    if (self->npending == FZ_MAX_PENDING) {
        fz_warn("dropping the unacknowledged result of task %llu: too many pending",
                (unsigned long long)self->pending[0].task);
        fz_enc_destroy(&self->pending[0].enc);
        memmove(self->pending, self->pending + 1, (FZ_MAX_PENDING - 1) * sizeof *self->pending);
        self->npending--;
    }
    self->pending[self->npending++] = (pending_t){task, attempt, enc};
    s_send_copy(self, enc);
    self->next_resend_ms = fz_clock_ms() + self->hb_ms;
}

static void s_on_ack(fz_slot_t *self, fz_msg_t *msg)
{
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    for (size_t i = 0; i < self->npending; i++)
        if (self->pending[i].task == task && self->pending[i].attempt == attempt) {
            fz_enc_destroy(&self->pending[i].enc);
            memmove(self->pending + i, self->pending + i + 1,
                    (self->npending - i - 1) * sizeof *self->pending);
            self->npending--;
            return;
        }
}

/* A result for an attempt that never ran an agent (busy, spawn failure): every field, zero
   or empty. */
static void s_result_simple(fz_slot_t *self, uint64_t task, uint32_t attempt, fz_outcome_t outcome,
                            const char *model, const char *summary)
{
    result_t r = {
        .task = task, .attempt = attempt, .outcome = outcome, .model = model, .summary = summary};
    s_warn_agent_missing(self, &r, summary);
    s_result_pending(self, task, attempt, s_result_enc(&r));
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

/* The agent is over: its result goes out and stays pending until acknowledged. */
static void s_finish(fz_slot_t *self)
{
    s_stream_output(self);
    const fz_agent_status_t *st = fz_agent_status(self->agent);
    /* An ended agent's outcome is the protocol's (fz_agent.h); a cancel of our own because
       the worker stops is "interrupted": the broker requeues the task. */
    fz_outcome_t outcome = (fz_outcome_t)st->outcome;
    if (st->outcome == FZ_AGENT_CANCELLED && self->interrupted)
        outcome = FZ_OUTCOME_INTERRUPTED;
    char log[4096];
    snprintf(log, sizeof log, "%s/%llu/attempt-%u.log", self->cfg.workroot,
             (unsigned long long)self->task, self->attempt);
    result_t r = {.task = self->task,
                  .attempt = self->attempt,
                  .outcome = outcome,
                  .st = st,
                  .model = self->model,
                  .log = self->cfg.dry_run ? "" : log};
    r.tail = fz_agent_tail(self->agent, &r.tail_len);
    fz_class_t cls = s_result_class(&r);
    fz_info("task %llu attempt %u: %s%s%s (exit %d, %.4f USD, %lld ms)",
            (unsigned long long)self->task, self->attempt, fz_outcome_name(outcome),
            cls != FZ_CLASS_NONE ? ", class " : "", fz_class_name(cls), st->exit_code, st->cost_usd,
            (long long)st->duration_ms);
    char why[64] = "the agent reported it";
    if (st->cls != FZ_CLASS_AGENT_MISSING)
        snprintf(why, sizeof why, "exit %d", st->exit_code);
    s_warn_agent_missing(self, &r, why);
    s_result_pending(self, self->task, self->attempt, s_result_enc(&r));
    fz_agent_destroy(&self->agent);
    self->task = 0;
    self->attempt = 0;
    self->interrupted = false;
}

/* ---------------------------------------------------------------- dispatch */

static const char *s_label(fz_msg_t *msg, const char *key, char *buf, size_t size)
{
    const msgpack_object *labels = fz_msg_obj(msg, "labels");
    if (!fz_obj_get(labels, key))
        return NULL;
    return fz_obj_str(labels, key, buf, size);
}

static double s_label_num(fz_msg_t *msg, const char *key, double max, double dflt)
{
    char buf[64];
    double v;
    const char *s = s_label(msg, key, buf, sizeof buf);
    return s && fz_parse_double(s, 0, max, &v) ? v : dflt;
}

static fz_agent_t *s_start_sim(fz_slot_t *self, fz_msg_t *msg, const fz_agent_opts_t *opts,
                               char *err, size_t errlen)
{
    fz_agent_sim_t sim = {0};
    sim.duration_s = s_label_num(msg, "dry.duration", 1e9, self->cfg.dry_duration);
    sim.cost_usd = s_label_num(msg, "dry.cost", 1e9, self->cfg.dry_cost);
    sim.exit_code = (int)s_label_num(msg, "dry.exit", 1e9, self->cfg.dry_exit);
    /* dry.fail-attempts N: the first N attempts fail (to exercise retries without agents) */
    if (self->attempt <= (uint32_t)s_label_num(msg, "dry.fail-attempts", 1e9, 0))
        sim.exit_code = 1;
    sim.tokens_in = (uint64_t)s_label_num(msg, "dry.tokens-in", 1e9, 1000);
    sim.tokens_out = (uint64_t)s_label_num(msg, "dry.tokens-out", 1e9, 200);
    sim.tokens_cache_read = (uint64_t)s_label_num(msg, "dry.tokens-cache-read", 1e9, 0);
    sim.tokens_cache_write = (uint64_t)s_label_num(msg, "dry.tokens-cache-write", 1e9, 0);
    /* dry.silent-after S: no sign of life after S seconds (a stall, for the stall limits) */
    sim.silent_after_s = s_label_num(msg, "dry.silent-after", 1e9, 0);
    /* dry.class NAME, dry.reset-at EPOCH, dry.retry-after S: what a failing run reports, as
       an adapter would for a rate limit or a bad key */
    char cls[64];
    const char *name = s_label(msg, "dry.class", cls, sizeof cls);
    sim.cls = fz_class_from_name(name);
    if (name && sim.cls == FZ_CLASS_NONE)
        fz_warn("task %llu: label dry.class '%s' is not a failure class; ignored",
                (unsigned long long)self->task, name);
    sim.reset_at = s_label_num(msg, "dry.reset-at", FZ_RFILE_RESET_AT_LIMIT - 1, 0);
    sim.retry_after = s_label_num(msg, "dry.retry-after", FZ_RFILE_RETRY_AFTER_LIMIT - 1, 0);
    sim.model = self->model[0] ? self->model : "dry-run";
    sim.output = "dry-run: simulated agent output\n";
    sim.summary = sim.exit_code ? "dry-run: simulated failure" : "dry-run: simulated success";
    return fz_agent_simulate(&sim, opts, err, errlen);
}

static fz_agent_t *s_start_real(fz_slot_t *self, fz_msg_t *msg, fz_agent_opts_t *opts,
                                const char *workdir, char *err, size_t errlen)
{
    char *cmd = fz_slot_expand(self->cfg.agent, self->model, self->task, self->attempt, workdir);
    char env[6][512];
    snprintf(env[0], sizeof env[0], "FZ_TASK_ID=%llu", (unsigned long long)self->task);
    snprintf(env[1], sizeof env[1], "FZ_ATTEMPT=%u", self->attempt);
    snprintf(env[2], sizeof env[2], "FZ_MODEL=%s", self->model);
    snprintf(env[3], sizeof env[3], "FZ_BROKER=%s", self->cfg.broker);
    snprintf(env[4], sizeof env[4], "FZ_EVENTS=%s", self->cfg.events);
    snprintf(env[5], sizeof env[5], "FZ_WORKER=%s", self->cfg.name);
    /* Labels reach the agent as FZ_LABEL_<KEY> (upper case, other characters as _), so a
       script can read its task's labels without asking the broker. */
    const char *envp[6 + 32 + 1] = {env[0], env[1], env[2], env[3], env[4], env[5]};
    char labels[32][1200];
    size_t ne = 6;
    const msgpack_object *lm = fz_msg_obj(msg, "labels");
    for (uint32_t i = 0; lm && lm->type == MSGPACK_OBJECT_MAP && i < lm->via.map.size && i < 32;
         i++) {
        const msgpack_object *k = &lm->via.map.ptr[i].key, *v = &lm->via.map.ptr[i].val;
        int n = snprintf(labels[i], sizeof labels[i], "FZ_LABEL_");
        for (uint32_t j = 0; j < k->via.str.size && n < 80; j++) {
            char c = k->via.str.ptr[j];
            labels[i][n++] = (char)((c >= 'a' && c <= 'z')                               ? c - 32
                                    : ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ? c
                                                                                         : '_');
        }
        snprintf(labels[i] + n, sizeof labels[i] - (size_t)n, "=%.*s", (int)v->via.str.size,
                 v->via.str.ptr);
        envp[ne++] = labels[i];
    }
    envp[ne] = NULL;
    char log[4096], report[4096];
    snprintf(log, sizeof log, "%s/attempt-%u.log", workdir, self->attempt);
    snprintf(report, sizeof report, "%s/.fz-report-%u", workdir, self->attempt);
    size_t plen;
    opts->command = cmd;
    opts->prompt = fz_msg_str(msg, "prompt", "", &plen);
    opts->prompt_len = plen;
    opts->workdir = workdir;
    opts->log_path = log;
    opts->report_path = report;
    opts->env = envp;
    opts->pass_env = self->cfg.pass_env;
    fz_agent_t *agent = cmd ? fz_agent_start(opts, err, errlen) : NULL;
    free(cmd);
    return agent;
}

static void s_on_dispatch(fz_slot_t *self, fz_msg_t *msg)
{
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    if (self->agent && self->task == task && self->attempt == attempt) {
        fz_warn("dispatch of task %llu attempt %u again: it runs already; ignored",
                (unsigned long long)task, attempt);
        return;
    }
    if (self->agent || self->stopping || self->draining) {
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
    char workdir[4096], err[512];
    snprintf(workdir, sizeof workdir, "%s/%llu", self->cfg.workroot, (unsigned long long)task);
    fz_agent_opts_t opts = {0};
    opts.timeout_s = (double)fz_msg_uint(msg, "timeout", 0);
    opts.max_cost = fz_msg_float(msg, "max_cost", 0);
    opts.kill_grace_s = (double)fz_msg_uint(msg, "kill_grace", 10);
    opts.stall_s = (double)fz_msg_uint(msg, "stall", 0);
    opts.stall_kill_s = (double)fz_msg_uint(msg, "stall_kill", 0);
    self->stall_ms = (int64_t)(opts.stall_s * 1000);
    self->stall_logged = false;
    self->interrupted = false;
    self->kill_grace_ms = (int64_t)(opts.kill_grace_s * 1000);
    if (opts.kill_grace_s <= 0)
        opts.kill_grace_s = 0.001;
    self->agent = self->cfg.dry_run ? s_start_sim(self, msg, &opts, err, sizeof err)
                                    : s_start_real(self, msg, &opts, workdir, err, sizeof err);
    if (!self->agent) {
        fz_error("task %llu: agent did not start: %s", (unsigned long long)task, err);
        s_result_simple(self, task, attempt, FZ_OUTCOME_SPAWN_FAILED, self->model, err);
        self->task = 0;
        return;
    }
    fz_info("task %llu attempt %u started (model %s, pid %d)", (unsigned long long)task, attempt,
            self->model[0] ? self->model : "-", (int)fz_agent_pid(self->agent));
    fz_enc_t *e = fz_enc_new("started", 0);
    fz_enc_uint(e, "task", task);
    fz_enc_uint(e, "attempt", attempt);
    fz_enc_uint(e, "pid", (uint64_t)fz_agent_pid(self->agent));
    s_send(self, &e);
    self->next_output_ms = fz_clock_ms() + FZ_OUTPUT_EVERY_MS;
}

static void s_on_cancel(fz_slot_t *self, fz_msg_t *msg)
{
    uint64_t task = fz_msg_uint(msg, "task", 0);
    uint32_t attempt = (uint32_t)fz_msg_uint(msg, "attempt", 0);
    if (!self->agent || self->task != task || (attempt && self->attempt != attempt))
        return;
    const char *reason = fz_msg_str(msg, "reason", "cancelled", NULL);
    fz_info("task %llu: cancel (%s)", (unsigned long long)task, reason);
    fz_agent_cancel(self->agent, reason);
}

static void s_on_welcome(fz_slot_t *self, fz_msg_t *msg)
{
    self->welcomed = true;
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

static void s_recv(fz_slot_t *self)
{
    fz_msg_t *msg = fz_net_recv_msg(self->dealer);
    if (!msg)
        return;
    self->broker_seen_ms = fz_clock_ms();
    if (fz_msg_is(msg, "welcome"))
        s_on_welcome(self, msg);
    else if (fz_msg_is(msg, "dispatch"))
        s_on_dispatch(self, msg);
    else if (fz_msg_is(msg, "cancel"))
        s_on_cancel(self, msg);
    else if (fz_msg_is(msg, "result-ack"))
        s_on_ack(self, msg);
    else if (fz_msg_is(msg, "error"))
        s_on_error(self, msg);
    else if (!fz_msg_is(msg, "heartbeat"))
        fz_warn("ignored unexpected '%s' from the broker", fz_msg_type(msg));
    fz_msg_destroy(&msg);
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
    if (self->agent && now >= self->next_output_ms) {
        s_stream_output(self);
        self->next_output_ms = now + FZ_OUTPUT_EVERY_MS;
    }
}

static int s_timeout(fz_slot_t *self, int64_t now)
{
    int64_t next = self->next_hb_ms;
    if (self->npending && self->next_resend_ms < next)
        next = self->next_resend_ms;
    if (self->agent) {
        if (self->next_output_ms < next)
            next = self->next_output_ms;
        int t = fz_agent_timeout_ms(self->agent, now);
        if (t >= 0 && now + t < next)
            next = now + t;
    }
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
    if (fz_mkdirs(cfg->workroot, 0755) < 0) {
        snprintf(err, errlen, "cannot create work folder %s: %s", cfg->workroot, strerror(errno));
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
    fz_agent_destroy(&self->agent);
    for (size_t i = 0; i < self->npending; i++)
        fz_enc_destroy(&self->pending[i].enc);
    zsock_destroy(&self->dealer);
    free(self);
    *self_p = NULL;
}

/* --once: the first task taken (an agent, or a result owed) drains the worker; --idle-exit:
   so does a time without either. Draining does the rest (finish, report, ack, bye). */
static void s_once_or_idle(fz_slot_t *self, int64_t now)
{
    bool busy = self->agent || self->npending;
    if (busy || !self->busy_ms)
        self->busy_ms = now;
    bool once = self->cfg.once && busy;
    bool idle = self->cfg.idle_exit_s && now - self->busy_ms >= self->cfg.idle_exit_s * 1000LL;
    if (self->draining || (!once && !idle))
        return;
    self->draining = true;
    fz_info("%s", once ? "--once: this task is the last; leaving when its result is acknowledged"
                       : "--idle-exit: no task for that long; leaving");
    s_heartbeat(self);
}

/* First signal: stop the agent, report it and wait for the ack; second: leave now. */
static bool s_should_leave(fz_slot_t *self, int64_t now, int64_t *leave_at)
{
    int signals = fz_net_signal_count();
    if (signals >= 2)
        return true;
    if (fz_net_drain_requested() && !self->draining) {
        /* Draining: the broker hears it at once; the agent finishes in its own time. */
        self->draining = true;
        fz_info("draining: %s",
                self->agent ? "finishing the running agent, then leaving" : "no agent; leaving");
        s_heartbeat(self);
    }
    s_once_or_idle(self, now);
    if (self->draining && !self->stopping && !self->agent) {
        self->stopping = true;
        /* for the last result's acknowledgement; --once waits for it as long as it takes */
        *leave_at = self->cfg.once ? INT64_MAX : now + 5000;
    }
    if (signals == 1 && self->stopping && *leave_at == INT64_MAX)
        *leave_at = now + 5000; /* --once waiting for its ack: a signal bounds the wait */
    if (signals == 1 && !self->stopping) {
        self->stopping = true;
        fz_info("stopping: %s", self->agent ? "interrupting the running agent" : "no agent");
        if (self->agent) {
            const fz_agent_status_t *st = fz_agent_status(self->agent);
            /* a stop already under way (timeout, cancel...) keeps its outcome */
            self->interrupted = st->outcome == FZ_AGENT_RUNNING && !st->stopping;
            fz_agent_cancel(self->agent, "interrupted");
        }
        /* time for the agent to end within its grace, and for the result's ack */
        *leave_at = now + self->kill_grace_ms + 5000;
    }
    if (!self->stopping)
        return false;
    if (!self->agent && !self->said_bye && self->npending == 0) {
        /* Every result is acknowledged: the broker may forget us now. */
        fz_enc_t *bye = fz_enc_new("bye", 0);
        s_send(self, &bye);
        self->said_bye = true;
    }
    return now >= *leave_at || (!self->agent && self->npending == 0);
}

int fz_slot_run(fz_slot_t *self)
{
    int64_t leave_at = INT64_MAX;
    while (!s_should_leave(self, fz_clock_ms(), &leave_at)) {
        int64_t now = fz_clock_ms();
        zmq_pollitem_t items[1 + FZ_AGENT_MAX_POLLFDS];
        items[0] = (zmq_pollitem_t){zsock_resolve(self->dealer), 0, ZMQ_POLLIN, 0};
        int n = 1;
        if (self->agent) {
            struct pollfd fds[FZ_AGENT_MAX_POLLFDS];
            int k = fz_agent_pollfds(self->agent, fds, FZ_AGENT_MAX_POLLFDS);
            for (int i = 0; i < k; i++) {
                short ev = (short)((fds[i].events & POLLIN ? ZMQ_POLLIN : 0) |
                                   (fds[i].events & POLLOUT ? ZMQ_POLLOUT : 0));
                items[n++] = (zmq_pollitem_t){NULL, fds[i].fd, ev, 0};
            }
        }
        if (zmq_poll(items, n, s_timeout(self, now)) < 0 && errno != EINTR) {
            fz_error("poll failed: %s", zmq_strerror(errno));
            break;
        }
        while (zsock_events(self->dealer) & ZMQ_POLLIN)
            s_recv(self);
        now = fz_clock_ms();
        if (self->agent) {
            fz_agent_pump(self->agent, now);
            if (fz_agent_done(self->agent))
                s_finish(self);
        }
        s_timers(self, now);
    }
    if (!self->said_bye) {
        fz_enc_t *bye = fz_enc_new("bye", 0);
        s_send(self, &bye);
    }
    return 0;
}
