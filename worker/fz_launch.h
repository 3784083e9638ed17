/*  fz_launch: how fz-worker turns a dispatch into a started agent: the command template
    ({model} {task} {attempt} {workdir}, shell-quoted), the agent's environment (FZ_TASK_ID,
    FZ_ATTEMPT, FZ_MODEL, FZ_BROKER, FZ_EVENTS, FZ_WORKER, one FZ_LABEL_<KEY> per label,
    FZ_CURVE_SECRET and FZ_BROKER_KEY when the worker has an agent key, and the caller's
    extra variables: the workspace's FZ_WORKTREE, FZ_BRANCH, FZ_BASE), its log
    and report files, and for dry-run workers the simulation the task's dry.* labels ask for.

    Owns nothing past a call: the agent returned belongs to the caller, the strings of a
    fz_launch_t are borrowed. */

#ifndef FZ_LAUNCH_H
#define FZ_LAUNCH_H

#include <stdint.h>

#include "fz_agent.h"
#include "fz_msg.h"

#define FZ_LAUNCH_BASE_ENV 6  /* variables of fz_launch_base_env */
#define FZ_LAUNCH_EXTRA_ENV 3 /* at most this many extra variables are passed on */

typedef struct {
    const char *agent;  /* the command template (real agents) */
    const char *broker; /* FZ_BROKER */
    const char *events; /* FZ_EVENTS */
    const char *worker; /* FZ_WORKER: the worker's name */
    const char *model;  /* the dispatch's model ("" any) */
    uint64_t task;
    uint32_t attempt;
    const char *const *pass_env;   /* variables passed on besides the basics (fz_agent.h) */
    const char *agent_key;         /* FZ_CURVE_SECRET for the agent (NULL: none) */
    const char *broker_key;        /* FZ_BROKER_KEY for the agent, with agent_key */
    double dry_duration, dry_cost; /* a simulation's defaults (labels override) */
    int dry_exit;
} fz_launch_t;

/* Expands {model} {task} {attempt} {workdir} in a command template, single-quoting each
   value for /bin/sh. Returns a malloc'd string (caller frees) or NULL. */
char *fz_launch_expand(const char *tmpl, const char *model, uint64_t task, uint32_t attempt,
                       const char *workdir);

/* The FZ_LAUNCH_BASE_ENV variables every agent and check is told of its attempt, formatted
   into env and pointed at from envp[0..FZ_LAUNCH_BASE_ENV). */
void fz_launch_base_env(const fz_launch_t *l, char (*env)[512], const char **envp);

/* Starts the dispatch's agent with opts' limits: /bin/sh -c the expanded template in cwd
   (the worktree, or the attempt's folder), its log and report in workdir (fz's folder of the
   task, never inside a worktree), extra (NULL-terminated, may be NULL) added to the
   environment. opts' command, prompt, folders and env are filled in for the call. NULL with
   err. */
fz_agent_t *fz_launch_real(const fz_launch_t *l, fz_msg_t *msg, fz_agent_opts_t *opts,
                           const char *workdir, const char *cwd, const char *const *extra,
                           char *err, size_t errlen);

/* A simulated agent for a dry-run worker, as the dispatch's dry.* labels say. */
fz_agent_t *fz_launch_sim(const fz_launch_t *l, fz_msg_t *msg, const fz_agent_opts_t *opts,
                          char *err, size_t errlen);

#endif
