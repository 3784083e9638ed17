/*  fz_agent_start: starting a real agent (fz_agent_start) and what a simulated one shares
    with it: option checks, the new struct, the work folder, report and log files, and the
    agent's environment. The fork itself is fz_keeper's. See fz_agent.h. */

#include "fz_agent_int.h"
#include "fz_keeper.h"
#include "fz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p, and the path must then be a folder (fz_mkdirs accepts a file already there).
   Mode 0777 less the umask. 0 or -1 with errno. One mkdir when only the last folder is
   missing (a task's folder under the work root): the walk from / costs a syscall per
   component, paid per attempt. */
static int s_mkdir_p(const char *path)
{
    if (mkdir(path, 0777) == 0)
        return 0;
    struct stat st;
    if (errno != EEXIST && fz_mkdirs(path, 0777) < 0)
        return -1;
    if (stat(path, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Creates the folder a file will live in. */
static int s_mkdir_parent(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash || slash == file)
        return 0;
    char *dir = strndup(file, (size_t)(slash - file));
    if (!dir)
        return -1;
    int rc = s_mkdir_p(dir);
    int saved = errno;
    free(dir);
    errno = saved;
    return rc;
}

/* ---------------------------------------------------------------- start */

int fz_agent_check_number(double v, const char *name, char *err, size_t errlen)
{
    if (v >= 0 && isfinite(v))
        return 0;
    return fz_errf(err, errlen, "%s must be a finite number >= 0", name);
}

int fz_agent_check_opts(const fz_agent_opts_t *opts, bool simulated, char *err, size_t errlen)
{
    if (!opts)
        return fz_errf(err, errlen, "no options");
    if (!simulated && (!opts->command || !*opts->command))
        return fz_errf(err, errlen, "no command");
    if (!simulated && (!opts->workdir || !*opts->workdir))
        return fz_errf(err, errlen, "no workdir");
    if (!simulated && opts->prompt_len > 0 && !opts->prompt)
        return fz_errf(err, errlen, "prompt_len without prompt");
    if (opts->tail_max > FZ_AGENT_TAIL_MAX_LIMIT)
        return fz_errf(err, errlen, "tail_max above %zu bytes", FZ_AGENT_TAIL_MAX_LIMIT);
    for (const char *const *e = simulated ? NULL : opts->env; e && *e; e++)
        if (!strchr(*e, '=') || **e == '=')
            return fz_errf(err, errlen, "env entry \"%s\" is not KEY=VALUE", *e);
    if (fz_agent_check_number(opts->timeout_s, "timeout", err, errlen) < 0 ||
        fz_agent_check_number(opts->max_cost, "max cost", err, errlen) < 0 ||
        fz_agent_check_number(opts->kill_grace_s, "kill grace", err, errlen) < 0 ||
        fz_agent_check_number(opts->stall_s, "stall", err, errlen) < 0 ||
        fz_agent_check_number(opts->stall_kill_s, "stall kill", err, errlen) < 0)
        return -1;
    return 0;
}

fz_agent_t *fz_agent_new(const fz_agent_opts_t *opts, bool simulated, char *err, size_t errlen)
{
    fz_agent_t *self = calloc(1, sizeof *self);
    if (!self) {
        fz_errf(err, errlen, "out of memory");
        return NULL;
    }
    self->simulated = simulated;
    self->state = FZ_AGENT_S_RUNNING;
    self->shell_wstatus = -1;
    self->keeper = (fz_keeper_t){0, 0, -1, -1, -1, 0};
    self->in_fd = self->out_fd = self->log_fd = self->report_fd = -1;
    self->timeout_ms = fz_agent_ms(opts->timeout_s);
    self->stall_kill_ms = fz_agent_ms(opts->stall_kill_s);
    self->grace_ms = opts->kill_grace_s > 0 ? fz_agent_ms(opts->kill_grace_s)
                                            : fz_agent_ms(FZ_AGENT_GRACE_DEFAULT);
    self->max_cost = opts->max_cost;
    self->tail_max = opts->tail_max ? opts->tail_max : FZ_AGENT_TAIL_DEFAULT;
    self->tail = malloc(2 * self->tail_max + 1);
    self->status.outcome = FZ_AGENT_RUNNING;
    self->status.exit_code = -1;
    self->status.progress_pct = -1;
    fz_rfile_init(&self->report);
    self->status.started_ms = self->status.alive_ms = fz_agent_now_ms();
    if (!self->tail) {
        fz_errf(err, errlen, "out of memory");
        fz_agent_destroy(&self);
        return NULL;
    }
    self->tail[0] = '\0';
    return self;
}

int fz_agent_open_log(fz_agent_t *self, const char *log_path, char *err, size_t errlen)
{
    if (!log_path)
        return 0;
    if (s_mkdir_parent(log_path) < 0)
        return fz_errf(err, errlen, "cannot create the folder of log %s: %s", log_path,
                       strerror(errno));
    /* Opened at the first output (fz_agent.c, s_log_write): an attempt that prints nothing
       creates no file, one inode fewer per attempt. A log that cannot be opened then is
       reported like one that cannot be written (log_errno), and the agent runs on. */
    free(self->log_path);
    self->log_path = strdup(log_path);
    if (!self->log_path)
        return fz_errf(err, errlen, "out of memory");
    return 0;
}

/* True if file's folder is dir, as strings ("DIR/NAME"). */
static bool s_in_folder(const char *file, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(file, dir, n) == 0 && file[n] == '/' && file[n + 1] &&
           !strchr(file + n + 1, '/');
}

/* True if path is absolute with no "." or ".." component and no empty one ("//", a
   trailing '/'): what realpath would return for it unless a component is a symlink. */
static bool s_plain_absolute(const char *path)
{
    if (path[0] != '/' || !path[1])
        return false;
    for (const char *p = path; *p; p++) {
        if (*p != '/')
            continue;
        const char *c = p + 1;
        if (*c == '/' || !*c || (c[0] == '.' && (!c[1] || c[1] == '/')) ||
            (c[0] == '.' && c[1] == '.' && (!c[2] || c[2] == '/')))
            return false;
    }
    return true;
}

/* The absolute path of file, whose folder exists: realpath of the folder + its name (the
   file itself need not exist). Malloc'ed; NULL with errno set. */
static char *s_abs_path(const char *file)
{
    const char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, (size_t)(slash - file)) : strdup(".");
    char *real = dir ? realpath(*dir ? dir : "/", NULL) : NULL;
    char *abs = NULL;
    if (real &&
        asprintf(&abs, "%s/%s", strcmp(real, "/") ? real : "", slash ? slash + 1 : file) < 0)
        abs = NULL;
    free(dir);
    free(real);
    return abs;
}

/* Work folder, report path and log. FZ_WORKDIR and FZ_REPORT get absolute paths: the agent
   runs in another cwd. The report file is not created here: the agent's first append makes
   it, and every read follows the path (s_report_follow), so an agent that reports nothing
   costs no inode (creating files was the worker's largest cost per attempt: ext4's inode
   allocation). A file already at the path (an earlier run of this attempt) is removed, so
   its lines do not count. */
static int s_prepare_files(fz_agent_t *self, const fz_agent_opts_t *opts, char *err, size_t errlen)
{
    const char *wd = opts->workdir;
    if (!opts->fresh_workdir && s_mkdir_p(wd) < 0)
        return fz_errf(err, errlen, "cannot create workdir %s: %s", wd, strerror(errno));
    /* An absolute path without . or .. is taken as it is (symlinks in it stay): realpath
       costs a readlink per component, per attempt; fz-worker's work root is resolved once. */
    self->workdir = s_plain_absolute(wd) ? strdup(wd) : realpath(wd, NULL);
    if (!self->workdir)
        return fz_errf(err, errlen, "workdir %s: %s", wd, strerror(errno));

    char *report = opts->report_path ? strdup(opts->report_path) : NULL;
    if (!opts->report_path && asprintf(&report, "%s/.fz-report", self->workdir) < 0)
        report = NULL;
    if (!report)
        return fz_errf(err, errlen, "out of memory");
    /* The report and the log usually live in the workdir, made and resolved just above. */
    bool here = s_in_folder(report, wd) || s_in_folder(report, self->workdir);
    int rc = here ? 0 : s_mkdir_parent(report);
    /* An earlier run's report at the path would count: removed, unless the folder is new. */
    bool stale = !(here && opts->fresh_workdir);
    if (rc == 0 && (!stale || unlink(report) == 0 || errno == ENOENT)) {
        if (!here)
            self->report_path = s_abs_path(report);
        else if (asprintf(&self->report_path, "%s%s", self->workdir, strrchr(report, '/')) < 0)
            self->report_path = NULL;
    }
    if (!self->report_path)
        fz_errf(err, errlen, "cannot prepare report file %s: %s", report, strerror(errno));
    free(report);
    if (!self->report_path)
        return -1;
    if (opts->log_path && s_in_folder(opts->log_path, wd)) {
        self->log_path = strdup(opts->log_path); /* its folder is the workdir: made */
        return self->log_path ? 0 : fz_errf(err, errlen, "out of memory");
    }
    return fz_agent_open_log(self, opts->log_path, err, errlen);
}

/* Same KEY in two "KEY=VALUE" (or bare "KEY") strings. */
static bool s_same_key(const char *a, const char *b)
{
    while (*a && *a != '=' && *a == *b) {
        a++;
        b++;
    }
    return (*a == '=' || !*a) && (*b == '=' || !*b);
}

static bool s_key_listed(const char *entry, const char *const *list)
{
    for (; list && *list; list++)
        if (s_same_key(entry, *list))
            return true;
    return false;
}

static const char *const s_own_keys[] = {"FZ_PROMPT", "FZ_PROMPT_BYTES", "FZ_REPORT", "FZ_WORKDIR",
                                         NULL};

/* What an agent gets of the worker's own environment without being asked (README,
   "Agents"): the basics every program expects, and the fz variables the adapters of
   scripts/agents read. Everything else (API keys, tokens, the worker's CURVE secret) stays
   with the worker unless --pass-env names it. A trailing '*' matches a prefix. */
static const char *const s_basic_env[] = {"PATH",
                                          "HOME",
                                          "USER",
                                          "LOGNAME",
                                          "SHELL",
                                          "LANG",
                                          "LANGUAGE",
                                          "LC_*",
                                          "TERM",
                                          "TZ",
                                          "TMPDIR",
                                          "FZ_AGENTS_PREFIX",
                                          "FZ_CLAUDE",
                                          "FZ_CODEX",
                                          "FZ_GEMINI",
                                          "FZ_OPENCLAW",
                                          "FZ_AGENT_*",
                                          "FZ_PRICES",
                                          "FZ_PRICE_DEFAULT",
                                          "FZ_DRY_*",
                                          "FZ_LOG",
                                          NULL};

/* Does "KEY=VALUE" match the name or PREFIX* pattern? */
static bool s_env_match(const char *entry, const char *pattern)
{
    size_t plen = strlen(pattern);
    if (plen && pattern[plen - 1] == '*')
        return strncmp(entry, pattern, plen - 1) == 0;
    return s_same_key(entry, pattern);
}

bool fz_agent_env_passes(const char *entry, const char *const *pass)
{
    for (const char *const *p = s_basic_env; *p; p++)
        if (s_env_match(entry, *p))
            return true;
    for (; pass && *pass; pass++)
        if (s_env_match(entry, *pass))
            return true;
    return false;
}

/* The worker's environment as far as it passes (fz_agent_env_passes), minus keys set by
   the caller or by us, plus those. The strings are borrowed: free only the array. */
static char **s_env_build(const char *const *extra, char *const *own, const char *const *pass)
{
    size_t n = 0, m = 0, k = 0;
    while (environ && environ[n])
        n++;
    while (extra && extra[m])
        m++;
    while (own[k])
        k++;
    char **envp = calloc(n + m + k + 1, sizeof *envp);
    if (!envp)
        return NULL;
    size_t i = 0;
    for (size_t j = 0; j < n; j++)
        if (strchr(environ[j], '=') && fz_agent_env_passes(environ[j], pass) &&
            !s_key_listed(environ[j], s_own_keys) && !s_key_listed(environ[j], extra))
            envp[i++] = environ[j];
    for (size_t j = 0; j < m; j++)
        if (!s_key_listed(extra[j], s_own_keys))
            envp[i++] = (char *)extra[j];
    for (size_t j = 0; j < k; j++)
        envp[i++] = own[j];
    return envp;
}

/* asprintf that leaves *slot NULL on failure, so the caller can free a NULL-ended list. */
static int s_format(char **slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_format(char **slot, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(slot, fmt, ap);
    va_end(ap);
    if (rc < 0)
        *slot = NULL;
    return rc < 0 ? -1 : 0;
}

/* Fills own[] (at least 5 slots, NULL-terminated) with the variables the module sets. */
static int s_env_own(fz_agent_t *self, char **own)
{
    size_t k = 0;
    const char *prompt = self->prompt ? self->prompt : "";
    if (self->prompt_len <= FZ_AGENT_ENV_PROMPT_MAX && !memchr(prompt, '\0', self->prompt_len)) {
        own[k] = malloc(sizeof "FZ_PROMPT=" + self->prompt_len);
        if (!own[k])
            return -1;
        memcpy(own[k], "FZ_PROMPT=", sizeof "FZ_PROMPT=" - 1);
        memcpy(own[k] + sizeof "FZ_PROMPT=" - 1, prompt, self->prompt_len);
        own[k][sizeof "FZ_PROMPT=" - 1 + self->prompt_len] = '\0';
        k++;
    }
    if (s_format(&own[k++], "FZ_PROMPT_BYTES=%zu", self->prompt_len) < 0 ||
        s_format(&own[k++], "FZ_REPORT=%s", self->report_path) < 0 ||
        s_format(&own[k++], "FZ_WORKDIR=%s", self->workdir) < 0)
        return -1;
    return 0;
}

static int s_launch(fz_agent_t *self, const fz_agent_opts_t *opts, char *err, size_t errlen)
{
    self->iobuf = malloc(FZ_AGENT_IOBUF);
    if (opts->prompt_len > 0) {
        self->prompt = malloc(opts->prompt_len);
        if (self->prompt)
            memcpy(self->prompt, opts->prompt, opts->prompt_len);
        self->prompt_len = opts->prompt_len;
    }
    if (!self->iobuf || (opts->prompt_len > 0 && !self->prompt))
        return fz_errf(err, errlen, "out of memory");

    char *own[6] = {NULL};
    char **envp = NULL;
    fz_keeper_t keeper;
    int rc = s_env_own(self, own);
    if (rc == 0)
        envp = s_env_build(opts->env, own, opts->pass_env);
    if (!envp)
        rc = fz_errf(err, errlen, "out of memory");
    else
        rc = fz_keeper_start(&keeper, opts->shell ? opts->shell : "/bin/sh", opts->command, envp,
                             self->workdir, err, errlen);
    free(envp);
    for (size_t i = 0; own[i]; i++)
        free(own[i]);
    if (rc < 0)
        return -1;
    self->pid = keeper.shell;
    self->keeper = keeper;
    self->in_fd = keeper.in_fd;
    self->out_fd = keeper.out_fd;
    self->status.started_ms = self->status.alive_ms = keeper.started_ms;

    self->poll_status = !opts->no_pidfd;
    fz_agent_count_live(self);
    self->report_due_ms = self->status.started_ms + FZ_AGENT_REPORT_EVERY_MS;
    return 0;
}

fz_agent_t *fz_agent_start(const fz_agent_opts_t *opts, char *err, size_t errlen)
{
    if (fz_agent_check_opts(opts, false, err, errlen) < 0)
        return NULL;
    fz_agent_t *self = fz_agent_new(opts, false, err, errlen);
    if (!self)
        return NULL;
    if (s_prepare_files(self, opts, err, errlen) < 0 || s_launch(self, opts, err, errlen) < 0) {
        fz_agent_destroy(&self);
        return NULL;
    }
    fz_agent_feed_stdin(self);
    return self;
}
