/*  fz_launch: a dispatch's agent started; see fz_launch.h. */

#include "fz_launch.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <czmq.h>

#include "fz_util.h"

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

char *fz_launch_expand(const char *tmpl, const char *model, uint64_t task, uint32_t attempt,
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

fz_agent_t *fz_launch_sim(const fz_launch_t *l, fz_msg_t *msg, const fz_agent_opts_t *opts,
                          char *err, size_t errlen)
{
    fz_agent_sim_t sim = {0};
    sim.duration_s = s_label_num(msg, "dry.duration", 1e9, l->dry_duration);
    sim.cost_usd = s_label_num(msg, "dry.cost", 1e9, l->dry_cost);
    sim.exit_code = (int)s_label_num(msg, "dry.exit", 1e9, l->dry_exit);
    /* dry.fail-attempts N: the first N attempts fail (to exercise retries without agents) */
    if (l->attempt <= (uint32_t)s_label_num(msg, "dry.fail-attempts", 1e9, 0))
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
                (unsigned long long)l->task, name);
    sim.reset_at = s_label_num(msg, "dry.reset-at", FZ_RFILE_RESET_AT_LIMIT - 1, 0);
    sim.retry_after = s_label_num(msg, "dry.retry-after", FZ_RFILE_RETRY_AFTER_LIMIT - 1, 0);
    sim.model = l->model[0] ? l->model : "dry-run";
    sim.output = "dry-run: simulated agent output\n";
    sim.summary = sim.exit_code ? "dry-run: simulated failure" : "dry-run: simulated success";
    return fz_agent_simulate(&sim, opts, err, errlen);
}

void fz_launch_base_env(const fz_launch_t *l, char (*env)[512], const char **envp)
{
    snprintf(env[0], 512, "FZ_TASK_ID=%llu", (unsigned long long)l->task);
    snprintf(env[1], 512, "FZ_ATTEMPT=%u", l->attempt);
    snprintf(env[2], 512, "FZ_MODEL=%s", l->model);
    snprintf(env[3], 512, "FZ_BROKER=%s", l->broker);
    snprintf(env[4], 512, "FZ_EVENTS=%s", l->events);
    snprintf(env[5], 512, "FZ_WORKER=%s", l->worker);
    for (int i = 0; i < FZ_LAUNCH_BASE_ENV; i++)
        envp[i] = env[i];
}

fz_agent_t *fz_launch_real(const fz_launch_t *l, fz_msg_t *msg, fz_agent_opts_t *opts,
                           const char *workdir, const char *cwd, const char *const *extra,
                           char *err, size_t errlen)
{
    char *cmd = fz_launch_expand(l->agent, l->model, l->task, l->attempt, cwd);
    char env[FZ_LAUNCH_BASE_ENV][512];
    /* Labels reach the agent as FZ_LABEL_<KEY> (upper case, other characters as _), so a
       script can read its task's labels without asking the broker. */
    const char *envp[FZ_LAUNCH_BASE_ENV + 32 + 2 + FZ_LAUNCH_EXTRA_ENV + 1];
    fz_launch_base_env(l, env, envp);
    char labels[32][1200];
    size_t ne = FZ_LAUNCH_BASE_ENV;
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
    /* The agent's own client key (fz-worker --agent-key), never the worker's. */
    char keys[2][PATH_MAX + 20];
    if (l->agent_key && l->broker_key) {
        snprintf(keys[0], sizeof keys[0], "FZ_CURVE_SECRET=%s", l->agent_key);
        snprintf(keys[1], sizeof keys[1], "FZ_BROKER_KEY=%s", l->broker_key);
        envp[ne++] = keys[0];
        envp[ne++] = keys[1];
    }
    /* FZ_WORKTREE, FZ_BRANCH, FZ_BASE with a repository (the workspace's own variables) */
    for (size_t i = 0; extra && extra[i] && i < FZ_LAUNCH_EXTRA_ENV; i++)
        envp[ne++] = extra[i];
    envp[ne] = NULL;
    char log[4096], report[4096];
    snprintf(log, sizeof log, "%s/attempt-%u.log", workdir, l->attempt);
    snprintf(report, sizeof report, "%s/.fz-report-%u", workdir, l->attempt);
    size_t plen;
    opts->command = cmd;
    opts->prompt = fz_msg_str(msg, "prompt", "", &plen);
    opts->prompt_len = plen;
    opts->fresh_workdir = opts->fresh_workdir && strcmp(cwd, workdir) == 0;
    opts->workdir = cwd;
    opts->log_path = log;
    opts->report_path = report;
    opts->env = envp;
    opts->pass_env = l->pass_env;
    fz_agent_t *agent = cmd ? fz_agent_start(opts, err, errlen) : NULL;
    free(cmd);
    return agent;
}
