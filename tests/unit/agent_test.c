/*  agent_test: fz_agent supervising real processes, and simulating them.

    Each test runs in its own temporary folder with a bounded run loop; the teardown destroys
    the agent (so a failed assert kills its processes too), removes the folder and checks that
    this process has no child left. main() makes the test a subreaper, as fz-worker does. */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../worker/fz_agent.h"
#include "../../worker/fz_keeper.h"

#include "testdir.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_LIMIT_MS 10000

typedef struct {
    char dir[PATH_MAX];
    char work[PATH_MAX + 16];
    char log[PATH_MAX + 32];
    fz_agent_t *agent;
    char err[256];
} ctx_t;

/* ---------------------------------------------------------------- helpers */

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void s_rm_rf(const char *path)
{
    nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Children of this process, from /proc: what an escaped agent would leave behind. */
static int s_children(void)
{
    int count = 0;
    DIR *dir = opendir("/proc");
    struct dirent *entry;
    while (dir && (entry = readdir(dir))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *f = entry->d_name[0] >= '0' && entry->d_name[0] <= '9' ? fopen(path, "r") : NULL;
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        char state;
        int ppid;
        /* the keeper spawner (FZ_KEEPER_SPAWNER) is a child for the whole run, the idle
           keeper between agents */
        if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid() &&
            atoi(entry->d_name) != fz_keeper_spawner_pid() &&
            atoi(entry->d_name) != fz_keeper_idle_pid())
            count++;
    }
    if (dir)
        closedir(dir);
    return count;
}

static char *s_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            char *bigger = realloc(buf, cap + 1);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static char *s_work_file(ctx_t *ctx, const char *name)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", ctx->work, name);
    return s_slurp(path, NULL);
}

/* WORK/name once it holds at least `lines` lines, waiting up to limit_ms. */
static char *s_wait_file(ctx_t *ctx, const char *name, int lines, int limit_ms)
{
    int64_t until = fz_agent_now_ms() + limit_ms;
    do {
        char *text = s_work_file(ctx, name);
        int got = 0;
        for (const char *p = text; p && *p; p++)
            got += *p == '\n';
        if (text && got >= lines)
            return text;
        free(text);
        poll(NULL, 0, 5);
    } while (fz_agent_now_ms() < until);
    return NULL;
}

static fz_agent_opts_t s_opts(ctx_t *ctx, const char *command)
{
    fz_agent_opts_t opts = {
        .command = command,
        .workdir = ctx->work,
        .log_path = ctx->log,
        .kill_grace_s = 0.5,
    };
    return opts;
}

static fz_agent_t *s_start(ctx_t *ctx, const fz_agent_opts_t *opts)
{
    ctx->agent = fz_agent_start(opts, ctx->err, sizeof ctx->err);
    if (!ctx->agent)
        fail_msg("fz_agent_start: %s", ctx->err);
    return ctx->agent;
}

/* The worker's loop in miniature: poll what the agent asks for, then pump. */
static void s_pump_for(fz_agent_t *agent, int64_t ms)
{
    int64_t until = fz_agent_now_ms() + ms;
    while (!fz_agent_done(agent)) {
        int64_t now = fz_agent_now_ms();
        if (now >= until)
            return;
        struct pollfd fds[FZ_AGENT_MAX_POLLFDS];
        int n = fz_agent_pollfds(agent, fds, FZ_AGENT_MAX_POLLFDS);
        int timeout = fz_agent_timeout_ms(agent, now);
        if (timeout < 0 || timeout > until - now)
            timeout = (int)(until - now);
        poll(fds, (nfds_t)n, timeout);
        fz_agent_pump(agent, fz_agent_now_ms());
    }
}

static const fz_agent_status_t *s_run(fz_agent_t *agent)
{
    s_pump_for(agent, TEST_LIMIT_MS);
    if (!fz_agent_done(agent))
        fail_msg("agent still running after %d ms", TEST_LIMIT_MS);
    return fz_agent_status(agent);
}

static const char *s_tail(fz_agent_t *agent)
{
    return fz_agent_tail(agent, NULL);
}

static void s_src_dir(char *out, size_t size)
{
    const char *env = getenv("FZ_SRC");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return;
    }
    /* This file is SRC/tests/unit/agent_test.c; __FILE__ may be relative to the build cwd. */
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s", __FILE__);
    char *cut = strstr(file, "tests/unit/agent_test.c");
    if (cut)
        *cut = '\0';
    char *real = realpath(cut && cut != file ? file : ".", NULL);
    snprintf(out, size, "%s", real ? real : ".");
    free(real);
}

static long s_status_kb(const char *key)
{
    char *text = s_slurp("/proc/self/status", NULL);
    long kb = -1;
    char *p = text ? strstr(text, key) : NULL;
    if (p)
        kb = strtol(p + strlen(key) + 1, NULL, 10);
    free(text);
    return kb;
}

static void s_assert_all_dead(ctx_t *ctx, const char *pid_file, int expected)
{
    char *pids = s_work_file(ctx, pid_file);
    assert_non_null(pids);
    int count = 0;
    for (char *p = strtok(pids, " \n"); p; p = strtok(NULL, " \n")) {
        pid_t pid = (pid_t)atoi(p);
        assert_true(pid > 1);
        errno = 0;
        if (kill(pid, 0) == 0 || errno != ESRCH)
            fail_msg("process %d survived", (int)pid);
        count++;
    }
    assert_int_equal(count, expected);
    free(pids);
}

static int s_setup(void **state)
{
    ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return -1;
    if (!fz_testdir(ctx->dir, sizeof ctx->dir, "fz-agent-test")) {
        free(ctx);
        return -1;
    }
    snprintf(ctx->work, sizeof ctx->work, "%s/work", ctx->dir);
    snprintf(ctx->log, sizeof ctx->log, "%s/output.log", ctx->work);
    *state = ctx;
    return 0;
}

static int s_teardown(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_destroy(&ctx->agent);
    s_rm_rf(ctx->dir);
    free(ctx);
    int left = s_children();
    if (left) {
        fprintf(stderr, "teardown: %d child process(es) left\n", left);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- real agents */

static void test_echo(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo hello; echo oops >&2; exit 0");
    fz_agent_t *agent = s_start(ctx, &opts);
    assert_true(fz_agent_pid(agent) > 0);
    const fz_agent_status_t *st = s_run(agent);
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_string_equal(fz_agent_outcome_name(st->outcome), "exited");
    assert_int_equal(st->exit_code, 0);
    assert_int_equal(st->signal, 0);
    assert_string_equal(st->reason, "");
    size_t len;
    const char *tail = fz_agent_tail(agent, &len);
    assert_int_equal(len, 11);
    assert_string_equal(tail, "hello\noops\n");
    assert_int_equal(st->output_bytes, 11);
    char *log = s_slurp(ctx->log, NULL);
    assert_non_null(log);
    assert_string_equal(log, "hello\noops\n");
    free(log);
    assert_int_equal(fz_agent_pollfds(agent, NULL, 0), 0);
    assert_int_equal(fz_agent_timeout_ms(agent, fz_agent_now_ms()), -1);
}

static void test_nonzero_exit(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo failing; exit 3");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 3);
    assert_string_equal(s_tail(ctx->agent), "failing\n");
}

static void test_signaled(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "kill -USR1 $$; sleep 5");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_SIGNALED);
    assert_string_equal(fz_agent_outcome_name(st->outcome), "signaled");
    assert_int_equal(st->signal, SIGUSR1);
    assert_int_equal(st->exit_code, -1);
}

/* FZ_WORKDIR and FZ_REPORT are absolute: a workdir with "." or ".." (or relative) is
   resolved by realpath; a plain absolute one is taken as it is, a symlink in it kept (so
   no readlink per component per attempt; fz-worker resolves its work root once). */
static void test_workdir_paths(void **state)
{
    ctx_t *ctx = *state;
    char real[PATH_MAX + 64], link[PATH_MAX + 64], dotted[PATH_MAX * 2], expected[PATH_MAX * 8];
    snprintf(real, sizeof real, "%s/real", ctx->dir);
    snprintf(link, sizeof link, "%s/link", ctx->dir);
    assert_int_equal(mkdir(real, 0755), 0);
    assert_int_equal(symlink(real, link), 0);
    char *base = realpath(ctx->dir, NULL);
    assert_non_null(base);

    /* through ..: resolved, the symlink too */
    snprintf(dotted, sizeof dotted, "%s/link/../link/task1", ctx->dir);
    fz_agent_opts_t opts = s_opts(ctx, "printf '%s|%s' \"$FZ_WORKDIR\" \"$FZ_REPORT\" > w.txt");
    opts.workdir = dotted;
    opts.log_path = NULL;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->exit_code, 0);
    snprintf(expected, sizeof expected, "%s/real/task1/w.txt", ctx->dir);
    char *got = s_slurp(expected, NULL);
    snprintf(expected, sizeof expected, "%s/real/task1|%s/real/task1/.fz-report", base, base);
    assert_non_null(got);
    assert_string_equal(got, expected);
    free(got);
    fz_agent_destroy(&ctx->agent);

    /* plain absolute through the symlink: kept as given; the report beside it */
    snprintf(dotted, sizeof dotted, "%s/task2", link);
    char report[PATH_MAX * 3];
    snprintf(report, sizeof report, "%s/.fz-report-1", dotted);
    opts.workdir = dotted;
    opts.report_path = report;
    st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->exit_code, 0);
    snprintf(expected, sizeof expected, "%s/w.txt", dotted);
    got = s_slurp(expected, NULL);
    snprintf(expected, sizeof expected, "%s|%s", dotted, report);
    assert_non_null(got);
    assert_string_equal(got, expected);
    free(got);
    free(base);
}

static void test_prompt_stdin_and_env(void **state)
{
    ctx_t *ctx = *state;
    static const char prompt[] = "fix the bug\nline two\n";
    const char *env[] = {"FZ_TASK_ID=42", "FZ_ATTEMPT=1", "FZ_REPORT=/caller/loses", NULL};
    setenv("FZ_PROMPT", "stale value from the worker", 1);
    setenv("FZ_AGENT_TEST_INHERITED", "yes", 1);
    fz_agent_opts_t opts = s_opts(ctx, "cat > stdin.txt; printf %s \"$FZ_PROMPT\" > env.txt; "
                                       "printf '%s|%s|%s|%s|%s|%s' \"$FZ_TASK_ID\" "
                                       "\"$FZ_ATTEMPT\" \"$FZ_PROMPT_BYTES\" \"$FZ_REPORT\" "
                                       "\"$FZ_WORKDIR\" \"$FZ_AGENT_TEST_INHERITED\" > vars.txt; "
                                       "pwd -P > pwd.txt");
    opts.prompt = prompt;
    opts.prompt_len = strlen(prompt);
    opts.env = env;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    unsetenv("FZ_PROMPT");
    unsetenv("FZ_AGENT_TEST_INHERITED");
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);

    char *in = s_work_file(ctx, "stdin.txt"), *envp = s_work_file(ctx, "env.txt");
    char *vars = s_work_file(ctx, "vars.txt"), *pwd = s_work_file(ctx, "pwd.txt");
    char *work = realpath(ctx->work, NULL), expected[PATH_MAX * 3];
    assert_non_null(in);
    assert_non_null(envp);
    assert_non_null(vars);
    assert_non_null(pwd);
    assert_non_null(work);
    assert_string_equal(in, prompt);
    assert_string_equal(envp, prompt);
    snprintf(expected, sizeof expected, "42|1|%zu|%s/.fz-report|%s|yes", strlen(prompt), work,
             work);
    assert_string_equal(vars, expected);
    snprintf(expected, sizeof expected, "%s\n", work);
    assert_string_equal(pwd, expected);
    free(in), free(envp), free(vars), free(pwd), free(work);
}

/* The agent's environment is clean: the basics and what --pass-env names, never the rest
   of the worker's (a key, the worker's CURVE secret). */
static void test_env_is_clean(void **state)
{
    ctx_t *ctx = *state;
    assert_true(fz_agent_env_passes("PATH=/bin", NULL));
    assert_true(fz_agent_env_passes("LC_ALL=C", NULL));
    assert_true(fz_agent_env_passes("FZ_DRY_COST=1", NULL));
    assert_false(fz_agent_env_passes("PATHX=/bin", NULL));
    assert_false(fz_agent_env_passes("ANTHROPIC_API_KEY=k", NULL));
    assert_false(fz_agent_env_passes("FZ_CURVE_SECRET=s", NULL));
    const char *pass[] = {"ANTHROPIC_API_KEY", "OPENAI_*", NULL};
    assert_true(fz_agent_env_passes("ANTHROPIC_API_KEY=k", pass));
    assert_false(fz_agent_env_passes("ANTHROPIC_API_KEYS=k", pass));
    assert_true(fz_agent_env_passes("OPENAI_BASE_URL=u", pass));
    const char *all[] = {"*", NULL};
    assert_true(fz_agent_env_passes("ANYTHING=1", all));

    setenv("FZ_TEST_SECRET_TOKEN", "hunter2", 1);
    setenv("FZ_CURVE_SECRET", "/keys/worker.secret", 1);
    setenv("FZ_TEST_PASSED", "yes", 1);
    setenv("FZ_TESTPFX_ONE", "1", 1);
    const char *names[] = {"FZ_TEST_PASSED", "FZ_TESTPFX_*", NULL};
    fz_agent_opts_t opts = s_opts(ctx, "env > env.txt");
    opts.pass_env = names;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    unsetenv("FZ_TEST_SECRET_TOKEN");
    unsetenv("FZ_CURVE_SECRET");
    unsetenv("FZ_TEST_PASSED");
    unsetenv("FZ_TESTPFX_ONE");
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    char *env = s_work_file(ctx, "env.txt");
    assert_non_null(env);
    assert_null(strstr(env, "hunter2"));
    assert_null(strstr(env, "FZ_CURVE_SECRET"));
    assert_non_null(strstr(env, "FZ_TEST_PASSED=yes"));
    assert_non_null(strstr(env, "FZ_TESTPFX_ONE=1"));
    assert_non_null(strstr(env, "PATH="));
    free(env);
}

static char *s_big_prompt(size_t len)
{
    char *prompt = malloc(len);
    assert_non_null(prompt);
    memset(prompt, 'p', len);
    return prompt;
}

static void test_big_prompt_unread(void **state)
{
    ctx_t *ctx = *state;
    size_t len = 256 * 1024;
    char *prompt = s_big_prompt(len);
    fz_agent_opts_t opts =
        s_opts(ctx, "sleep 0.3; echo \"env:${FZ_PROMPT-unset}:$FZ_PROMPT_BYTES\"");
    opts.prompt = prompt;
    opts.prompt_len = len;
    s_start(ctx, &opts);
    free(prompt); /* the agent keeps its own copy */
    int64_t t0 = fz_agent_now_ms();
    const fz_agent_status_t *st = s_run(ctx->agent);
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);
    assert_string_equal(s_tail(ctx->agent), "env:unset:262144\n");
    assert_true(fz_agent_now_ms() - t0 < 3000);
}

static void test_big_prompt_read(void **state)
{
    ctx_t *ctx = *state;
    size_t len = 256 * 1024;
    char *prompt = s_big_prompt(len);
    fz_agent_opts_t opts = s_opts(ctx, "wc -c");
    opts.prompt = prompt;
    opts.prompt_len = len;
    s_start(ctx, &opts);
    free(prompt);
    const fz_agent_status_t *st = s_run(ctx->agent);
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(atoi(s_tail(ctx->agent)), 262144);
}

static void test_empty_prompt_gives_eof(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "cat; echo \"after eof [${FZ_PROMPT}]\"");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_string_equal(s_tail(ctx->agent), "after eof []\n");
}

/* The environment cannot carry a NUL: such a prompt comes on stdin only, byte for byte. */
static void test_prompt_with_nul(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "tr '\\0' '@'; echo \" [${FZ_PROMPT-unset}]\"");
    opts.prompt = "a\0b";
    opts.prompt_len = 3;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->exit_code, 0);
    assert_string_equal(s_tail(ctx->agent), "a@b [unset]\n");
}

/* A log that cannot be written (disk full) is reported, and the agent runs on. */
static void test_log_write_error(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo still captured");
    opts.log_path = "/dev/full";
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->log_errno, ENOSPC);
    assert_string_equal(s_tail(ctx->agent), "still captured\n");
}

/* Only 0, 1 and 2 reach the agent (3 is ls's own directory): not the caller's descriptor
   without close-on-exec, not the module's pipes, log, report or pidfd. */
static void test_no_descriptor_leaks(void **state)
{
    ctx_t *ctx = *state;
    int leaky = dup2(STDERR_FILENO, 50);
    assert_int_equal(leaky, 50);
    fz_agent_opts_t opts = s_opts(ctx, "exec ls /proc/self/fd");
    opts.prompt = "x";
    opts.prompt_len = 1;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    close(leaky);
    assert_int_equal(st->exit_code, 0);
    assert_string_equal(s_tail(ctx->agent), "0\n1\n2\n3\n");
}

static void test_flood_50mib(void **state)
{
    ctx_t *ctx = *state;
    char src[PATH_MAX], command[PATH_MAX + 64];
    s_src_dir(src, sizeof src);
    snprintf(command, sizeof command, "'%s/scripts/agents/dry-run' --duration 0", src);
    const char *env[] = {"FZ_DRY_OUTPUT_BYTES=52428800", NULL};
    fz_agent_opts_t opts = s_opts(ctx, command);
    opts.env = env;

    /* Reset the peak RSS to now (Linux >= 4.0), so VmHWM afterwards is this test's peak. */
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    bool hwm_reset = fd >= 0 && write(fd, "5", 1) == 1;
    if (fd >= 0)
        close(fd);
    long rss_before = s_status_kb("VmRSS:");
    int64_t t0 = fz_agent_now_ms();
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    int64_t took = fz_agent_now_ms() - t0;
    long rss_peak = s_status_kb(hwm_reset ? "VmHWM:" : "VmRSS:");

    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);
    assert_true(st->output_bytes >= 52428800);
    size_t len;
    fz_agent_tail(ctx->agent, &len);
    assert_int_equal(len, FZ_AGENT_TAIL_DEFAULT);
    assert_non_null(strstr(s_tail(ctx->agent), "dry-run: done, exit 0"));
    struct stat log;
    assert_int_equal(stat(ctx->log, &log), 0);
    assert_int_equal((uint64_t)log.st_size, st->output_bytes);
    print_message("    50 MiB flood: %lld ms, RSS %ld kB -> peak %ld kB (growth %ld kB)\n",
                  (long long)took, rss_before, rss_peak, rss_peak - rss_before);
    assert_true(rss_peak - rss_before < 8 * 1024);
}

static void test_report_parsing(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(
        ctx, "printf '%s\\n' 'cost_usd 0.0123' 'tokens_in 1200' '  tokens_out\t340  ' "
             "'model claude-x' 'progress 40 running tests' 'summary all good' "
             "'tokens_cache_read 900' 'tokens_cache_write 80' 'class quota' "
             "'reset_at 1760000000' 'retry_after 12.5' 'class no-such-class' "
             "'bogus line' 'cost_usd nan' 'cost_usd -1' 'cost_usd inf' 'cost_usd 0x10' "
             "'tokens_in -5' 'tokens_in 12abc' 'progress 101' 'model two words' "
             "'unknown_key 5' '' 'cost_usd' >> \"$FZ_REPORT\"; "
             "head -c 5000 /dev/zero | tr '\\0' a >> \"$FZ_REPORT\"; echo >> \"$FZ_REPORT\"; "
             "printf 'cost_usd 1.5e-1\\r\\n' >> \"$FZ_REPORT\"; "
             "printf 'summary final words' >> \"$FZ_REPORT\"");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_true(fabs(st->cost_usd - 0.15) < 1e-12);
    assert_int_equal(st->tokens_in, 1200);
    assert_int_equal(st->tokens_out, 340);
    assert_string_equal(st->model, "claude-x");
    assert_int_equal(st->progress_pct, 40);
    assert_string_equal(st->progress_text, "running tests");
    assert_string_equal(st->summary, "final words"); /* no newline: taken at exit */
    assert_int_equal(st->tokens_cache_read, 900);
    assert_int_equal(st->tokens_cache_write, 80);
    assert_int_equal(st->cls, FZ_CLASS_QUOTA);
    assert_true(st->reset_at == 1760000000);
    assert_true(st->retry_after == 12.5);
    assert_int_equal(st->report_lines, 13);
    assert_int_equal(st->report_ignored, 13); /* 12 bad lines + the 5000-byte one */
}

/* A line is not consumed before its newline while the agent runs. */
static void test_report_partial_line(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "printf 'cost_usd 0.' >> \"$FZ_REPORT\"; echo one; "
                                       "sleep 0.8; printf '5\\n' >> \"$FZ_REPORT\"; echo two; "
                                       "sleep 0.8");
    fz_agent_t *agent = s_start(ctx, &opts);
    const fz_agent_status_t *st = fz_agent_status(agent);
    while (!strstr(s_tail(agent), "one") && !fz_agent_done(agent))
        s_pump_for(agent, 10);
    s_pump_for(agent, 400);
    assert_false(fz_agent_done(agent));
    assert_true(st->cost_usd == 0);
    assert_int_equal(st->report_lines, 0);
    while (!strstr(s_tail(agent), "two") && !fz_agent_done(agent))
        s_pump_for(agent, 10);
    s_pump_for(agent, 400);
    assert_true(st->cost_usd == 0.5);
    s_run(agent);
    assert_int_equal(st->report_lines, 1);
    assert_int_equal(st->report_ignored, 0);
}

/* A silent agent that reports nothing leaves no report file and no log (neither is made before
   it is needed: creating them was most of the worker's CPU per attempt); a report left at the
   path by an earlier run is removed first, so its lines do not count. */
static void test_silent_agent_makes_no_files(void **state)
{
    ctx_t *ctx = *state;
    char stale[PATH_MAX * 2];
    snprintf(stale, sizeof stale, "%s/.fz-report", ctx->work);
    mkdir(ctx->work, 0755);
    FILE *f = fopen(stale, "w");
    assert_non_null(f);
    fputs("cost_usd 9\nprogress 50\n", f);
    fclose(f);
    fz_agent_opts_t opts = s_opts(ctx, "true");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);
    assert_int_equal(st->report_lines, 0);
    assert_true(st->cost_usd == 0);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(ctx->log, F_OK), -1);
    assert_int_equal(st->log_errno, 0);
    assert_false(st->log_made);
}

/* The first report line creates the file; the first output byte creates the log. */
static void test_report_and_log_made_by_first_write(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "sleep 0.3; echo 'cost_usd 0.25' >> \"$FZ_REPORT\"; "
                                       "sleep 0.3; echo late");
    fz_agent_t *agent = s_start(ctx, &opts);
    s_pump_for(agent, 150);
    assert_int_equal(access(ctx->log, F_OK), -1);
    const fz_agent_status_t *st = s_run(agent);
    assert_true(st->cost_usd == 0.25);
    assert_int_equal(st->report_lines, 1);
    assert_true(st->log_made);
    char *log = s_slurp(ctx->log, NULL);
    assert_non_null(log);
    assert_string_equal(log, "late\n");
    free(log);
}

/* `>` instead of `>>` truncates the file: the reader starts over. */
static void test_report_truncated(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo 'cost_usd 0.20' >> \"$FZ_REPORT\"; "
                                       "echo 'cost_usd 0.30' >> \"$FZ_REPORT\"; sleep 0.4; "
                                       "echo 'cost_usd 0.1' > \"$FZ_REPORT\"");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_true(st->cost_usd == 0.1);
}

/* Written elsewhere and renamed over FZ_REPORT: the reader follows the path. */
static void test_report_replaced(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo 'cost_usd 0.20' >> \"$FZ_REPORT\"; sleep 0.4; "
                                       "printf 'cost_usd 0.7\\nmodel renamed' > new; "
                                       "mv new \"$FZ_REPORT\"");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_true(st->cost_usd == 0.7);
    assert_string_equal(st->model, "renamed");
    assert_int_equal(st->report_ignored, 0);
}

/* A FIFO put in its place is not opened in a blocking way, nor read. */
static void test_report_fifo_ignored(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo 'cost_usd 0.3' >> \"$FZ_REPORT\"; sleep 0.3; "
                                       "rm \"$FZ_REPORT\"; mkfifo \"$FZ_REPORT\"; sleep 0.4");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_true(st->cost_usd == 0.3);
}

/* main() ignored SIGCHLD before fz_agent_init_subreaper(), as an inherited SIG_IGN would. */
static void test_init_restores_sigchld(void **state)
{
    (void)state;
    struct sigaction action;
    assert_int_equal(sigaction(SIGCHLD, NULL, &action), 0);
    assert_true(action.sa_handler == SIG_DFL);
}

/* The shell ignores SIGTERM, has a background child and two setsid'd ones (one with a
   child of its own); all record their pids. Everything must be gone after timeout + grace. */
static const char s_escapers[] =
    "trap '' TERM; "
    "sleep 1000 & echo $! >> pids; "
    "setsid sh -c 'echo $$ >> pids; exec sleep 1000' & "
    "setsid sh -c 'sleep 1000 & echo $! >> pids; echo $$ >> pids; exec sleep 1000' & "
    "while [ $(cat pids 2>/dev/null | wc -l) -lt 4 ]; do sleep 0.01; done; echo ready; ";

static void test_timeout_kills_everything(void **state)
{
    ctx_t *ctx = *state;
    char command[1024];
    snprintf(command, sizeof command, "%s sleep 1000", s_escapers);
    fz_agent_opts_t opts = s_opts(ctx, command);
    opts.timeout_s = 0.5;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_TIMEOUT);
    assert_string_equal(fz_agent_outcome_name(st->outcome), "timeout");
    assert_string_equal(st->reason, "timeout");
    assert_int_equal(st->signal, SIGKILL); /* it ignored SIGTERM */
    assert_true(st->duration_ms >= 950 && st->duration_ms < 3000);
    assert_non_null(strstr(s_tail(ctx->agent), "ready"));
    s_assert_all_dead(ctx, "pids", 4);
    assert_int_equal(s_children(), 0);
}

static void test_exit_kills_leftovers(void **state)
{
    ctx_t *ctx = *state;
    char command[1024];
    snprintf(command, sizeof command, "%s exit 0", s_escapers);
    fz_agent_opts_t opts = s_opts(ctx, command);
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);
    assert_true(st->duration_ms < 3000);
    s_assert_all_dead(ctx, "pids", 4);
    assert_int_equal(s_children(), 0);
}

/* A stopped agent is continued so that it sees the SIGTERM. */
static void test_timeout_stopped_agent(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "kill -STOP $$; sleep 30");
    opts.timeout_s = 0.3;
    opts.kill_grace_s = 5;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_TIMEOUT);
    assert_int_equal(st->signal, SIGTERM);
    assert_true(st->duration_ms < 1500);
}

/* An agent that obeys SIGTERM ends at once, without waiting out the grace. */
static void test_timeout_term_obeyed(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "sleep 30");
    opts.timeout_s = 0.3;
    opts.kill_grace_s = 5;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_TIMEOUT);
    assert_int_equal(st->signal, SIGTERM);
    assert_true(st->duration_ms >= 280 && st->duration_ms < 1500);
}

/* The shell dies on SIGTERM but a group member ignores it: it gets SIGKILL at the end of
   the grace, not before (its grace is respected) and not never. */
static void test_grace_then_kill_straggler(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts =
        s_opts(ctx, "(trap '' TERM; sh -c 'echo $PPID' > pids; exec sleep 1000) & sleep 30");
    opts.timeout_s = 0.3;
    opts.kill_grace_s = 0.7;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_TIMEOUT);
    assert_int_equal(st->signal, SIGTERM);
    assert_true(st->duration_ms >= 950 && st->duration_ms < 2500);
    s_assert_all_dead(ctx, "pids", 1);
}

/* A group member that needs a moment after SIGTERM gets it; we go on once it is gone. */
static void test_grace_ends_when_group_exits(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "(trap 'sleep 0.2; echo cleaned; exit 0' TERM; "
                                       "while :; do sleep 0.05; done) & sleep 30");
    opts.timeout_s = 0.3;
    opts.kill_grace_s = 5;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_TIMEOUT);
    assert_true(st->duration_ms >= 450 && st->duration_ms < 2000);
    assert_non_null(strstr(s_tail(ctx->agent), "cleaned"));
}

static void test_cost_cap(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo 'cost_usd 0.05' >> \"$FZ_REPORT\"; sleep 0.3; "
                                       "echo 'cost_usd 0.5' >> \"$FZ_REPORT\"; sleep 30");
    opts.max_cost = 0.1;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_COST_CAP);
    assert_string_equal(fz_agent_outcome_name(st->outcome), "cost-cap");
    assert_string_equal(st->reason, "cost-cap");
    assert_true(st->cost_usd == 0.5);
    assert_int_equal(st->signal, SIGTERM);
    assert_true(st->duration_ms >= 300 && st->duration_ms < 2000);
}

/* Printed once, then silent: stopped as stalled after stall_kill, like a timeout (SIGTERM,
   the grace), with its output kept. The poll wakes for the stall deadline, not only for the
   report file's timer. */
static void test_stall_kill(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo started; sleep 30");
    opts.stall_kill_s = 0.6;
    opts.stall_s = 0.2; /* announce-only: no effect on the agent */
    fz_agent_t *agent = s_start(ctx, &opts);
    const fz_agent_status_t *st = fz_agent_status(agent);
    while (!strstr(s_tail(agent), "started") && !fz_agent_done(agent))
        s_pump_for(agent, 10);
    int64_t alive = st->alive_ms;
    assert_true(alive > st->started_ms || strstr(s_tail(agent), "started"));
    s_pump_for(agent, 300);
    int64_t now = fz_agent_now_ms();
    if (!st->stopping) { /* unless a slow machine took longer than the limit */
        assert_int_equal(st->alive_ms, alive);
        assert_true(fz_agent_idle_ms(agent, now) >= 290);
        assert_true(fz_agent_timeout_ms(agent, now) <= alive + 600 - now);
    }
    st = s_run(agent);
    assert_int_equal(st->outcome, FZ_AGENT_STALLED);
    assert_string_equal(fz_agent_outcome_name(st->outcome), "stalled");
    assert_string_equal(st->reason, "stalled");
    assert_int_equal(st->signal, SIGTERM);
    assert_true(st->duration_ms >= 580 && st->duration_ms < 2500);
    assert_true(st->alive_ms - st->started_ms < 500);
    assert_string_equal(s_tail(agent), "started\n");
    assert_int_equal(fz_agent_idle_ms(agent, fz_agent_now_ms()), 0); /* over */
}

/* Output keeps it alive past many stall limits. */
static void test_stall_not_while_printing(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts =
        s_opts(ctx, "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo tick; sleep 0.1; done");
    opts.stall_kill_s = 0.5;
    fz_agent_t *agent = s_start(ctx, &opts);
    s_pump_for(agent, 700);
    if (!fz_agent_done(agent))
        assert_true(fz_agent_idle_ms(agent, fz_agent_now_ms()) < 500);
    const fz_agent_status_t *st = s_run(agent);
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);
    assert_true(st->duration_ms >= 1100);
    assert_int_equal(st->output_bytes, 12 * 5);
}

/* Report lines are signs of life too, even one written since the last read of the file: it
   is read again before the agent is called stalled. Pumped with chosen times, so that the
   stall deadline comes before the next timed read. */
static void test_stall_not_while_reporting(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "sleep 0.5; echo 'progress 5' >> \"$FZ_REPORT\"; sleep 30");
    opts.stall_kill_s = 0.31;
    fz_agent_t *agent = s_start(ctx, &opts);
    const fz_agent_status_t *st = fz_agent_status(agent);
    int64_t t0 = st->started_ms;
    fz_agent_pump(agent, t0 + 300); /* reads the (empty) report: the next read is at +550 */
    assert_false(st->stopping);
    assert_int_equal(st->alive_ms, t0);
    char *report = s_wait_file(ctx, ".fz-report", 1, 5000);
    assert_non_null(report);
    free(report);
    fz_agent_pump(agent, t0 + 320); /* past the deadline (+310), before the next read */
    assert_false(st->stopping);
    assert_int_equal(st->report_lines, 1);
    assert_int_equal(st->progress_pct, 5);
    assert_int_equal(st->alive_ms, t0 + 320);
    st = s_run(agent); /* then silent for good */
    assert_int_equal(st->outcome, FZ_AGENT_STALLED);
}

static void test_cancel(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo started; sleep 30");
    fz_agent_t *agent = s_start(ctx, &opts);
    s_pump_for(agent, 200);
    assert_false(fz_agent_done(agent));
    fz_agent_cancel(agent, "stop");
    assert_true(fz_agent_status(agent)->stopping);
    fz_agent_cancel(agent, "second cancel is ignored");
    const fz_agent_status_t *st = s_run(agent);
    assert_int_equal(st->outcome, FZ_AGENT_CANCELLED);
    assert_string_equal(fz_agent_outcome_name(st->outcome), "cancelled");
    assert_string_equal(st->reason, "stop");
    assert_int_equal(st->signal, SIGTERM);
    assert_false(st->stopping);
    assert_true(st->duration_ms < 1500);
    fz_agent_cancel(agent, "after the end is ignored");
    assert_int_equal(st->outcome, FZ_AGENT_CANCELLED);
}

static void test_destroy_while_running(void **state)
{
    ctx_t *ctx = *state;
    char command[1024];
    snprintf(command, sizeof command, "%s sleep 1000", s_escapers);
    fz_agent_opts_t opts = s_opts(ctx, command);
    fz_agent_t *agent = s_start(ctx, &opts);
    while (!strstr(s_tail(agent), "ready") && !fz_agent_done(agent))
        s_pump_for(agent, 10);
    int64_t t0 = fz_agent_now_ms();
    fz_agent_destroy(&ctx->agent);
    assert_null(ctx->agent);
    assert_true(fz_agent_now_ms() - t0 < 1000);
    s_assert_all_dead(ctx, "pids", 4);
    assert_int_equal(s_children(), 0);
}

static int s_count_fds(void)
{
    int n = 0;
    DIR *dir = opendir("/proc/self/fd");
    while (dir && readdir(dir))
        n++;
    if (dir)
        closedir(dir);
    return n;
}

static void test_start_errors(void **state)
{
    ctx_t *ctx = *state;
    int fds = s_count_fds();
    char err[256];

    fz_agent_opts_t opts = s_opts(ctx, "true");
    opts.shell = "/nonexistent/shell";
    assert_null(fz_agent_start(&opts, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/shell"));
    assert_non_null(strstr(err, "No such file"));

    char file[PATH_MAX + 16], bad[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/plain", ctx->dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(bad, sizeof bad, "%s/sub", file);
    opts = s_opts(ctx, "true");
    opts.workdir = bad;
    assert_null(fz_agent_start(&opts, err, sizeof err));
    assert_non_null(strstr(err, "cannot create workdir"));
    assert_non_null(strstr(err, "Not a directory"));

    opts = s_opts(ctx, NULL);
    assert_null(fz_agent_start(&opts, err, sizeof err));
    assert_string_equal(err, "no command");

    const char *env[] = {"NO_EQUALS_SIGN", NULL};
    opts = s_opts(ctx, "true");
    opts.env = env;
    assert_null(fz_agent_start(&opts, err, sizeof err));
    assert_non_null(strstr(err, "NO_EQUALS_SIGN"));

    opts = s_opts(ctx, "true");
    opts.timeout_s = NAN;
    assert_null(fz_agent_start(&opts, err, sizeof err));
    assert_non_null(strstr(err, "timeout"));
    opts.timeout_s = -1;
    assert_null(fz_agent_start(&opts, NULL, 0));

    assert_null(fz_agent_start(NULL, err, sizeof err));
    assert_int_equal(s_count_fds(), fds);
    assert_int_equal(s_children(), 0);
    fz_agent_destroy(NULL);
}

/* A command the shell cannot find is not a start error: sh exits 127, as in a terminal. */
static void test_missing_command_exits_127(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "/nonexistent/agent --flag");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 127);
    assert_non_null(strstr(s_tail(ctx->agent), "not found"));
}

static void test_no_pidfd_fallback(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "sleep 0.2; echo fallback; exit 4");
    opts.no_pidfd = true;
    fz_agent_t *agent = s_start(ctx, &opts);
    struct pollfd fds[FZ_AGENT_MAX_POLLFDS];
    assert_int_equal(fz_agent_pollfds(agent, fds, FZ_AGENT_MAX_POLLFDS), 1); /* output only */
    assert_int_equal(fds[0].events, POLLIN);
    int timeout = fz_agent_timeout_ms(agent, fz_agent_now_ms());
    assert_true(timeout >= 0 && timeout <= 100);
    const fz_agent_status_t *st = s_run(agent);
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 4);
    assert_string_equal(s_tail(agent), "fallback\n");
}

static void test_pollfds_with_pidfd(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "sleep 0.5");
    char prompt[200 * 1024];
    memset(prompt, 'q', sizeof prompt);
    opts.prompt = prompt;
    opts.prompt_len = sizeof prompt; /* more than a pipe holds: stdin stays in the set */
    fz_agent_t *agent = s_start(ctx, &opts);
    struct pollfd fds[FZ_AGENT_MAX_POLLFDS];
    int n = fz_agent_pollfds(agent, fds, FZ_AGENT_MAX_POLLFDS);
    assert_int_equal(n, 3);
    assert_int_equal(fds[0].events, POLLIN);
    assert_int_equal(fds[1].events, POLLOUT);
    assert_int_equal(fds[2].events, POLLIN);
    assert_int_equal(fz_agent_pollfds(agent, fds, 1), 1);
    int timeout = fz_agent_timeout_ms(agent, fz_agent_now_ms());
    assert_true(timeout >= 0 && timeout <= 250);
    s_run(agent);
    assert_int_equal(fz_agent_status(agent)->exit_code, 0);
}

static void test_take_new_output(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts =
        s_opts(ctx, "printf 'abc\\n'; sleep 0.2; printf 'def\\n'; sleep 0.2; printf 'ghi\\n'");
    fz_agent_t *agent = s_start(ctx, &opts);
    char got[256] = "", buf[64];
    size_t len = 0;
    int chunks = 0;
    while (!fz_agent_done(agent)) {
        s_pump_for(agent, 20);
        size_t n = fz_agent_take_new_output(agent, buf, sizeof buf);
        assert_true(len + n < sizeof got);
        memcpy(got + len, buf, n);
        len += n;
        chunks += n > 0;
    }
    size_t n = fz_agent_take_new_output(agent, buf, sizeof buf);
    memcpy(got + len, buf, n);
    len += n;
    got[len] = '\0';
    assert_string_equal(got, "abc\ndef\nghi\n");
    assert_true(chunks >= 2);
    assert_int_equal(fz_agent_take_new_output(agent, buf, sizeof buf), 0);
}

/* More pending than asked for: the oldest part becomes a marker, the newest is kept. */
static void test_take_new_output_bounded(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "yes 0123456789 | head -c 10000; printf END");
    opts.tail_max = 4096;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->output_bytes, 10003);
    char buf[200];
    size_t n = fz_agent_take_new_output(ctx->agent, buf, sizeof buf);
    assert_true(n > 100 && n <= sizeof buf);
    assert_memory_equal(buf, "\n[fz: ", 6);
    assert_memory_equal(buf + n - 3, "END", 3);
    char *close_bracket = memchr(buf, ']', n);
    assert_non_null(close_bracket);
    unsigned long skipped = strtoul(buf + 6, NULL, 10);
    size_t kept = n - (size_t)(close_bracket + 2 - buf);
    assert_int_equal(skipped + kept, 10003);
    assert_int_equal(fz_agent_take_new_output(ctx->agent, buf, sizeof buf), 0);
    size_t len;
    fz_agent_tail(ctx->agent, &len);
    assert_int_equal(len, 4096);
}

static void test_dry_run_script(void **state)
{
    ctx_t *ctx = *state;
    char src[PATH_MAX], command[PATH_MAX + 128];
    s_src_dir(src, sizeof src);
    snprintf(command, sizeof command,
             "'%s/scripts/agents/dry-run' --duration 0.2 --cost 0.05 --exit 3", src);
    const char *env[] = {"FZ_MODEL=test-model", "FZ_TASK_ID=7", NULL};
    static const char prompt[] = "fix the login page\nmore details\n";
    fz_agent_opts_t opts = s_opts(ctx, command);
    opts.prompt = prompt;
    opts.prompt_len = strlen(prompt);
    opts.env = env;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 3);
    assert_true(st->cost_usd == 0.05);
    assert_string_equal(st->model, "test-model");
    assert_int_equal(st->progress_pct, 100);
    assert_true(st->tokens_in > 0 && st->tokens_out > 0);
    assert_string_equal(st->summary, "dry run finished");
    assert_int_equal(st->report_ignored, 0);
    assert_non_null(strstr(s_tail(ctx->agent), "prompt: fix the login page\n"));
    assert_true(st->duration_ms >= 180);
}

static int s_dry_run_attempt(ctx_t *ctx, const char *attempt_var)
{
    char src[PATH_MAX], command[PATH_MAX + 64];
    s_src_dir(src, sizeof src);
    snprintf(command, sizeof command, "'%s/scripts/agents/dry-run' --duration 0", src);
    const char *env[] = {"FZ_DRY_FAIL_ATTEMPTS=1", attempt_var, NULL};
    fz_agent_opts_t opts = s_opts(ctx, command);
    opts.env = env;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    int code = st->exit_code;
    fz_agent_destroy(&ctx->agent);
    return code;
}

static void test_dry_run_fail_attempts(void **state)
{
    ctx_t *ctx = *state;
    assert_int_equal(s_dry_run_attempt(ctx, "FZ_ATTEMPT=1"), 1);
    assert_int_equal(s_dry_run_attempt(ctx, "FZ_ATTEMPT=2"), 0);
}

static void test_dry_run_help(void **state)
{
    ctx_t *ctx = *state;
    char src[PATH_MAX], command[PATH_MAX + 64];
    s_src_dir(src, sizeof src);
    snprintf(command, sizeof command, "'%s/scripts/agents/dry-run' --help", src);
    fz_agent_opts_t opts = s_opts(ctx, command);
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->exit_code, 0);
    assert_non_null(strstr(s_tail(ctx->agent), "FZ_DRY_DURATION"));
    assert_non_null(strstr(s_tail(ctx->agent), "--fail-attempts"));
}

/* ---------------------------------------------------------------- the keeper */

/* True once pid is gone or a zombie: it runs no more. */
/* A small /proc file's text into buf (NUL-terminated); false if it cannot be opened. */
static bool s_proc_text(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return true;
}

static bool s_dead(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!s_proc_text(path, buf, sizeof buf))
        return true;
    char *p = strrchr(buf, ')');
    return !p || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X';
}

/* Live processes of process group pgrp, from /proc, appended to pids. */
static int s_group_pids(pid_t pgrp, pid_t *pids, int n, int max)
{
    DIR *dir = opendir("/proc");
    struct dirent *entry;
    while (dir && n < max && (entry = readdir(dir))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *f = entry->d_name[0] >= '0' && entry->d_name[0] <= '9' ? fopen(path, "r") : NULL;
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *p = strrchr(buf, ')');
        char state;
        int ppid, group;
        if (p && sscanf(p + 1, " %c %d %d", &state, &ppid, &group) == 3 && group == pgrp &&
            state != 'Z')
            pids[n++] = (pid_t)atoi(entry->d_name);
    }
    if (dir)
        closedir(dir);
    return n;
}

/* The parent of pid, from /proc; 0 if it cannot be read. */
static pid_t s_ppid(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!s_proc_text(path, buf, sizeof buf))
        return 0;
    char *p = strrchr(buf, ')');
    char state;
    int ppid;
    return p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 ? (pid_t)ppid : 0;
}

/* A miniature fz-worker in a child process: it starts the agent through fz_agent, writes
   fz_agent_pid() (the shell, leader of the agent's group) to WORK/group and its keeper's pid
   (the shell's parent) to WORK/keeper, and runs the usual poll + pump loop until the agent
   is done, then waits to be killed (its keeper idle). */
static pid_t s_fork_worker(ctx_t *ctx, const fz_agent_opts_t *opts)
{
    pid_t worker = fork();
    assert_true(worker >= 0);
    if (worker > 0)
        return worker;
    fz_agent_init_subreaper();
    char err[256], path[PATH_MAX * 2];
    fz_agent_t *agent = fz_agent_start(opts, err, sizeof err);
    if (!agent) {
        fprintf(stderr, "worker: fz_agent_start: %s\n", err);
        _exit(2);
    }
    pid_t ids[2] = {fz_agent_pid(agent), s_ppid(fz_agent_pid(agent))};
    const char *names[2] = {"group", "keeper"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s.tmp", ctx->work, names[i]);
        FILE *f = fopen(path, "w");
        if (!f)
            _exit(3);
        fprintf(f, "%d\n", (int)ids[i]);
        fclose(f);
        char final[PATH_MAX * 2];
        snprintf(final, sizeof final, "%s/%s", ctx->work, names[i]);
        rename(path, final);
    }
    while (!fz_agent_done(agent))
        s_pump_for(agent, 1000);
    for (;;)
        pause();
}

/* Reaps what was reparented to this process (the test is a subreaper, like fz-worker): the
   keeper of a killed worker's agent, once it has killed everything and exited. */
static void s_reap_strays(void)
{
    int64_t until = fz_agent_now_ms() + 3000;
    while (s_children() > 0 && fz_agent_now_ms() < until) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        poll(NULL, 0, 5);
    }
}

/* SIGKILLs the worker and checks that every pid dies within a second, without anyone
   calling fz_agent_destroy. Returns how long it took. */
static int64_t s_kill_worker(pid_t worker, const pid_t *pids, int n)
{
    assert_int_equal(kill(worker, SIGKILL), 0);
    int64_t t0 = fz_agent_now_ms();
    assert_int_equal(waitpid(worker, NULL, 0), worker);
    for (;;) {
        int alive = 0;
        for (int i = 0; i < n; i++)
            alive += !s_dead(pids[i]);
        if (!alive)
            break;
        if (fz_agent_now_ms() - t0 > 1000)
            for (int i = 0; i < n; i++)
                if (!s_dead(pids[i]))
                    fail_msg("process %d survived the SIGKILL of its worker", (int)pids[i]);
        poll(NULL, 0, 2);
    }
    int64_t took = fz_agent_now_ms() - t0;
    s_reap_strays();
    assert_int_equal(s_children(), 0);
    return took;
}

static int s_read_pids(ctx_t *ctx, const char *name, pid_t *pids, int n, int max)
{
    char *text = s_work_file(ctx, name);
    assert_non_null(text);
    for (char *p = strtok(text, " \n"); p && n < max; p = strtok(NULL, " \n")) {
        pids[n] = (pid_t)atoi(p);
        assert_true(pids[n] > 1);
        n++;
    }
    free(text);
    return n;
}

/* The worker dies with SIGKILL while its agent runs: the keeper kills the shell, its
   background children (one ignoring SIGTERM) and a setsid'd escapee. */
static void test_worker_sigkill_kills_agent(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "sleep 1000 & echo $! >> pids; "
                                       "(trap '' TERM; exec sleep 1000) & echo $! >> pids; "
                                       "setsid sleep 1000 & echo $! >> pids; "
                                       "echo $$ >> pids; sleep 1000");
    pid_t worker = s_fork_worker(ctx, &opts);
    char *text = s_wait_file(ctx, "pids", 4, 5000);
    char *keeper_text = s_wait_file(ctx, "keeper", 1, 5000);
    bool started = text && keeper_text;
    free(text);
    if (!started) {
        kill(worker, SIGKILL);
        fail_msg("the agent did not start");
    }
    pid_t keeper = (pid_t)atoi(keeper_text);
    free(keeper_text);
    char *group_text = s_wait_file(ctx, "group", 1, 5000);
    assert_non_null(group_text);
    pid_t group = (pid_t)atoi(group_text);
    free(group_text);
    pid_t pids[64];
    int n = s_read_pids(ctx, "pids", pids, 0, 64);
    assert_int_equal(n, 4);
    assert_int_equal(group, pids[3]); /* the shell leads the agent's group */
    pids[n++] = keeper;
    n = s_group_pids(group, pids, n, 64); /* also the foreground sleep */
    assert_true(n >= 7);                  /* 4 + keeper + the group's sleep 1000 (+ dups) */
    int64_t took = s_kill_worker(worker, pids, n);
    print_message("    agent tree gone %" PRId64 " ms after its worker's SIGKILL\n", took);
}

/* The worker dies while a stopped agent's group member still has its grace: the shell died
   of SIGTERM, its keeper still holds it (the group id stays the agent's), and the straggler
   and the keeper die with the worker. */
static void test_worker_sigkill_during_grace(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "(trap '' TERM; exec sleep 1000) & echo $! >> pids; "
                                       "echo $$ > shell; sleep 1000");
    opts.timeout_s = 0.2;
    opts.kill_grace_s = 60;
    pid_t worker = s_fork_worker(ctx, &opts);
    char *shell_text = s_wait_file(ctx, "shell", 1, 5000);
    char *keeper_text = s_wait_file(ctx, "keeper", 1, 5000);
    if (!shell_text || !keeper_text) {
        kill(worker, SIGKILL);
        fail_msg("the agent did not start");
    }
    pid_t shell = (pid_t)atoi(shell_text), keeper = (pid_t)atoi(keeper_text);
    free(shell_text);
    free(keeper_text);
    int64_t until = fz_agent_now_ms() + 5000;
    while (!s_dead(shell) && fz_agent_now_ms() < until)
        poll(NULL, 0, 5);
    assert_true(s_dead(shell)); /* timed out, died of SIGTERM */
    pid_t pids[8];
    int n = s_read_pids(ctx, "pids", pids, 0, 8);
    assert_int_equal(n, 1);
    assert_false(s_dead(pids[0])); /* has its grace */
    assert_false(s_dead(keeper));  /* stays with it */
    pids[n++] = keeper;
    s_kill_worker(worker, pids, n);
}

/* Live children of pid (its main thread's list: a keeper has no other thread). */
static int s_children_of(pid_t pid)
{
    char path[96], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    if (!s_proc_text(path, buf, sizeof buf))
        return 0;
    int count = 0;
    for (char *p = strtok(buf, " \n"); p; p = strtok(NULL, " \n"))
        count += !s_dead((pid_t)atoi(p));
    return count;
}

/* One keeper serves agent after agent: two agents in a row have the same keeper, which is
   this process's child and waits idle between them; when its worker dies, the idle keeper
   goes too. */
static void test_keeper_stays_between_agents(void **state)
{
    ctx_t *ctx = *state;
    pid_t keepers[2];
    for (int i = 0; i < 2; i++) {
        fz_agent_opts_t opts = s_opts(ctx, "echo $PPID");
        const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
        assert_int_equal(st->exit_code, 0);
        keepers[i] = (pid_t)atoi(s_tail(ctx->agent));
        fz_agent_destroy(&ctx->agent);
        assert_true(keepers[i] > 1);
        assert_int_equal(fz_keeper_idle_pid(), keepers[i]);
        assert_int_equal(s_ppid(keepers[i]), getpid());
    }
    assert_int_equal(keepers[0], keepers[1]);

    fz_agent_opts_t opts = s_opts(ctx, "sleep 0.2"); /* alive while its keeper is looked up */
    pid_t worker = s_fork_worker(ctx, &opts);
    char *keeper_text = s_wait_file(ctx, "keeper", 1, 5000);
    if (!keeper_text) {
        kill(worker, SIGKILL);
        fail_msg("the agent did not start");
    }
    pid_t keeper = (pid_t)atoi(keeper_text);
    free(keeper_text);
    int64_t until = fz_agent_now_ms() + 5000;
    while (s_children_of(keeper) > 0 && fz_agent_now_ms() < until)
        poll(NULL, 0, 5); /* the agent ended: its keeper idles */
    assert_false(s_dead(keeper));
    s_kill_worker(worker, &keeper, 1);
}

/* The keeper SIGKILLed on its own while its agent runs (the OOM killer, kill -9): the agent
   ends as killed by SIGKILL, what the keeper held (the shell, a setsid'd escapee) reparents
   to this process and the sweep kills it, and the next agent gets a new keeper. */
static void test_keeper_killed(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "setsid sleep 1000 & echo $! >> pids; "
                                       "echo $$ >> pids; sleep 1000");
    fz_agent_t *agent = s_start(ctx, &opts);
    pid_t keeper = s_ppid(fz_agent_pid(agent));
    assert_true(keeper > 1);
    int64_t until = fz_agent_now_ms() + 5000;
    char *text = NULL;
    while (!(text = s_wait_file(ctx, "pids", 2, 50)) && fz_agent_now_ms() < until)
        s_pump_for(agent, 20);
    assert_non_null(text);
    free(text);
    pid_t pids[4];
    int n = s_read_pids(ctx, "pids", pids, 0, 4);
    assert_int_equal(n, 2);
    assert_int_equal(kill(keeper, SIGKILL), 0);
    const fz_agent_status_t *st = s_run(agent);
    assert_int_equal(st->outcome, FZ_AGENT_SIGNALED);
    assert_int_equal(st->signal, SIGKILL);
    for (int i = 0; i < n; i++)
        assert_true(s_dead(pids[i]));
    assert_int_equal(s_children(), 0);
    fz_agent_destroy(&ctx->agent);
    opts = s_opts(ctx, "echo $PPID");
    st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->exit_code, 0);
    assert_int_not_equal(atoi(s_tail(ctx->agent)), keeper);
}

/* The agent's group is its own (the keeper is not in it): what the agent sends its group
   reaches it alone, and fz reports its own death exactly. */
static void test_own_signals_reported(void **state)
{
    ctx_t *ctx = *state;
    static const struct {
        const char *command;
        int sig;
    } cases[] = {{"kill -TERM $$; sleep 5", SIGTERM},
                 {"kill -SEGV $$; sleep 5", SIGSEGV},
                 {"kill -INT $$; sleep 5", SIGINT},
                 {"kill -KILL $$; sleep 5", SIGKILL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fz_agent_opts_t opts = s_opts(ctx, cases[i].command);
        const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
        assert_int_equal(st->outcome, FZ_AGENT_SIGNALED);
        assert_int_equal(st->signal, cases[i].sig);
        assert_int_equal(st->exit_code, -1);
        fz_agent_destroy(&ctx->agent);
    }
    fz_agent_opts_t opts = s_opts(ctx, "kill -TERM 0; echo survived");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts)); /* to the group: same */
    assert_int_equal(st->outcome, FZ_AGENT_SIGNALED);
    assert_int_equal(st->signal, SIGTERM);
    assert_string_equal(s_tail(ctx->agent), "");
}

/* fz_agent_pid() is the shell, the leader of the agent's process group; its parent is the
   keeper, a child of this process in a group of its own. */
static void test_pid_is_the_group(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_opts_t opts = s_opts(ctx, "echo $$ $(cut -d' ' -f5 /proc/$$/stat) "
                                       "$(cut -d' ' -f5 /proc/$PPID/stat) $PPID");
    fz_agent_t *agent = s_start(ctx, &opts);
    pid_t pid = fz_agent_pid(agent);
    const fz_agent_status_t *st = s_run(agent);
    assert_int_equal(st->exit_code, 0);
    int keeper = atoi(strrchr(s_tail(agent), ' ') + 1); /* the shell's $PPID */
    char expected[96];
    snprintf(expected, sizeof expected, "%d %d %d %d\n", (int)pid, (int)pid, keeper, keeper);
    assert_string_equal(s_tail(agent), expected);
    assert_int_equal(fz_keeper_idle_pid(), keeper); /* idle now, our child */
    assert_int_equal(s_ppid(keeper), getpid());
}

/* An agent that traps SIGTERM keeps running after it (the keeper waits with it) and gets
   SIGKILL at the end of the grace, on timeout and on cancel alike. */
static void test_term_trapped_then_killed(void **state)
{
    ctx_t *ctx = *state;
    const char *command = "trap 'echo got TERM' TERM; while :; do sleep 0.05; done";
    fz_agent_opts_t opts = s_opts(ctx, command);
    opts.timeout_s = 0.3;
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_TIMEOUT);
    assert_int_equal(st->signal, SIGKILL);
    assert_true(st->duration_ms >= 750 && st->duration_ms < 2500);
    assert_non_null(strstr(s_tail(ctx->agent), "got TERM"));
    fz_agent_destroy(&ctx->agent);

    opts = s_opts(ctx, command);
    fz_agent_t *agent = s_start(ctx, &opts);
    s_pump_for(agent, 200);
    fz_agent_cancel(agent, "stop");
    int64_t t0 = fz_agent_now_ms();
    st = s_run(agent);
    assert_int_equal(st->outcome, FZ_AGENT_CANCELLED);
    assert_int_equal(st->signal, SIGKILL);
    assert_true(fz_agent_now_ms() - t0 >= 450);
    assert_non_null(strstr(s_tail(agent), "got TERM"));
}

/* ---------------------------------------------------------------- simulation */

static fz_agent_t *s_simulate(ctx_t *ctx, const fz_agent_sim_t *sim, const fz_agent_opts_t *opts)
{
    ctx->agent = fz_agent_simulate(sim, opts, ctx->err, sizeof ctx->err);
    if (!ctx->agent)
        fail_msg("fz_agent_simulate: %s", ctx->err);
    return ctx->agent;
}

static void test_sim_success(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_sim_t sim = {.duration_s = 2,
                          .cost_usd = 0.2,
                          .tokens_in = 1000,
                          .tokens_out = 500,
                          .model = "sim-model",
                          .output = "hello from the simulation\n",
                          .summary = "did it"};
    fz_agent_opts_t opts = {.log_path = ctx->log};
    fz_agent_t *agent = s_simulate(ctx, &sim, &opts);
    const fz_agent_status_t *st = fz_agent_status(agent);
    int64_t t0 = st->started_ms;
    assert_int_equal(fz_agent_pid(agent), 0);
    assert_int_equal(fz_agent_pollfds(agent, NULL, 0), 0);
    assert_int_equal(fz_agent_timeout_ms(agent, t0), 2000);
    fz_agent_pump(agent, t0 + 1000);
    assert_false(fz_agent_done(agent));
    assert_int_equal(st->outcome, FZ_AGENT_RUNNING);
    assert_true(fabs(st->cost_usd - 0.1) < 1e-9);
    assert_int_equal(st->tokens_in, 500);
    assert_int_equal(st->progress_pct, 50);
    assert_int_equal(st->elapsed_ms, 1000);
    assert_string_equal(st->model, "sim-model");
    assert_int_equal(fz_agent_timeout_ms(agent, t0 + 1000), 1000);
    fz_agent_pump(agent, t0 + 2500);
    assert_true(fz_agent_done(agent));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);
    assert_int_equal(st->duration_ms, 2000);
    assert_true(st->cost_usd == 0.2);
    assert_int_equal(st->tokens_in, 1000);
    assert_int_equal(st->tokens_out, 500);
    assert_string_equal(st->summary, "did it");
    assert_string_equal(s_tail(agent), "hello from the simulation\n");
    assert_int_equal(fz_agent_timeout_ms(agent, t0 + 2500), -1);
    char *log = s_slurp(ctx->log, NULL);
    assert_non_null(log);
    assert_string_equal(log, "hello from the simulation\n");
    free(log);
}

static void test_sim_failure_exit(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_sim_t sim = {.duration_s = 0.5, .cost_usd = 0.01, .exit_code = 2};
    fz_agent_t *agent = s_simulate(ctx, &sim, NULL);
    const fz_agent_status_t *st = s_run(agent); /* real time, as the worker would */
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 2);
    assert_int_equal(st->duration_ms, 500);
}

static void test_sim_timeout(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_sim_t sim = {.duration_s = 10, .cost_usd = 1.0};
    fz_agent_opts_t opts = {.timeout_s = 1};
    fz_agent_t *agent = s_simulate(ctx, &sim, &opts);
    const fz_agent_status_t *st = fz_agent_status(agent);
    int64_t t0 = st->started_ms;
    assert_int_equal(fz_agent_timeout_ms(agent, t0), 1000);
    fz_agent_pump(agent, t0 + 999);
    assert_false(fz_agent_done(agent));
    fz_agent_pump(agent, t0 + 5000);
    assert_true(fz_agent_done(agent));
    assert_int_equal(st->outcome, FZ_AGENT_TIMEOUT);
    assert_string_equal(st->reason, "timeout");
    assert_int_equal(st->duration_ms, 1000);
    assert_true(fabs(st->cost_usd - 0.1) < 1e-9);
    assert_int_equal(st->signal, SIGTERM);
    assert_int_equal(st->exit_code, -1);
}

static void test_sim_cost_cap(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_sim_t sim = {.duration_s = 4, .cost_usd = 1.0};
    fz_agent_opts_t opts = {.max_cost = 0.25, .timeout_s = 60};
    fz_agent_t *agent = s_simulate(ctx, &sim, &opts);
    const fz_agent_status_t *st = fz_agent_status(agent);
    int64_t t0 = st->started_ms;
    assert_int_equal(fz_agent_timeout_ms(agent, t0), 1001);
    fz_agent_pump(agent, t0 + 1000);
    assert_false(fz_agent_done(agent));
    assert_true(st->cost_usd <= 0.25);
    fz_agent_pump(agent, t0 + 1001);
    assert_true(fz_agent_done(agent));
    assert_int_equal(st->outcome, FZ_AGENT_COST_CAP);
    assert_string_equal(st->reason, "cost-cap");
    assert_true(st->cost_usd > 0.25 && st->cost_usd < 0.2505);
}

static void test_sim_cancel(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_sim_t sim = {.duration_s = 10, .cost_usd = 1.0};
    fz_agent_t *agent = s_simulate(ctx, &sim, NULL);
    const fz_agent_status_t *st = fz_agent_status(agent);
    fz_agent_pump(agent, st->started_ms + 100);
    fz_agent_cancel(agent, NULL);
    assert_true(fz_agent_done(agent));
    assert_int_equal(st->outcome, FZ_AGENT_CANCELLED);
    assert_string_equal(st->reason, "cancelled");
    assert_true(st->duration_ms >= 100 && st->duration_ms < 1000);
    assert_true(st->cost_usd > 0 && st->cost_usd < 0.1);
}

/* A simulation that goes silent is stopped as stalled, at a time known in advance; one that
   does not is alive at every moment. */
static void test_sim_stall(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_sim_t sim = {.duration_s = 10, .cost_usd = 1.0, .silent_after_s = 1};
    fz_agent_opts_t opts = {.stall_kill_s = 2};
    fz_agent_t *agent = s_simulate(ctx, &sim, &opts);
    const fz_agent_status_t *st = fz_agent_status(agent);
    int64_t t0 = st->started_ms;
    assert_int_equal(fz_agent_timeout_ms(agent, t0), 3000);
    fz_agent_pump(agent, t0 + 500);
    assert_int_equal(fz_agent_idle_ms(agent, t0 + 500), 0);
    fz_agent_pump(agent, t0 + 2000);
    assert_false(fz_agent_done(agent));
    assert_int_equal(st->alive_ms, t0 + 1000);
    assert_int_equal(fz_agent_idle_ms(agent, t0 + 2000), 1000);
    assert_true(fabs(st->cost_usd - 0.1) < 1e-9); /* frozen */
    fz_agent_pump(agent, t0 + 3000);
    assert_true(fz_agent_done(agent));
    assert_int_equal(st->outcome, FZ_AGENT_STALLED);
    assert_string_equal(st->reason, "stalled");
    assert_int_equal(st->duration_ms, 3000);
    assert_int_equal(st->signal, SIGTERM);
    fz_agent_destroy(&ctx->agent);

    fz_agent_sim_t busy = {.duration_s = 3, .cost_usd = 1.0};
    opts.stall_kill_s = 1;
    agent = s_simulate(ctx, &busy, &opts);
    st = fz_agent_status(agent);
    t0 = st->started_ms;
    assert_int_equal(fz_agent_timeout_ms(agent, t0), 3000);
    fz_agent_pump(agent, t0 + 2500);
    assert_int_equal(fz_agent_idle_ms(agent, t0 + 2500), 0);
    fz_agent_pump(agent, t0 + 3000);
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
}

/* A failing simulation reports its class, reset time and cache tokens; a succeeding one
   reports no class. */
static void test_sim_class(void **state)
{
    ctx_t *ctx = *state;
    fz_agent_sim_t sim = {.duration_s = 1,
                          .exit_code = 1,
                          .tokens_in = 100,
                          .tokens_cache_read = 1000,
                          .tokens_cache_write = 50,
                          .cls = FZ_CLASS_RATE_LIMIT,
                          .reset_at = 1760000000,
                          .retry_after = 30};
    fz_agent_t *agent = s_simulate(ctx, &sim, NULL);
    const fz_agent_status_t *st = fz_agent_status(agent);
    int64_t t0 = st->started_ms;
    fz_agent_pump(agent, t0 + 500);
    assert_int_equal(st->tokens_cache_read, 500);
    assert_int_equal(st->cls, FZ_CLASS_NONE); /* reported at the end */
    fz_agent_pump(agent, t0 + 1000);
    assert_true(fz_agent_done(agent));
    assert_int_equal(st->exit_code, 1);
    assert_int_equal(st->cls, FZ_CLASS_RATE_LIMIT);
    assert_true(st->reset_at == 1760000000);
    assert_true(st->retry_after == 30);
    assert_int_equal(st->tokens_cache_read, 1000);
    assert_int_equal(st->tokens_cache_write, 50);
    fz_agent_destroy(&ctx->agent);

    sim.exit_code = 0;
    agent = s_simulate(ctx, &sim, NULL);
    st = fz_agent_status(agent);
    fz_agent_pump(agent, st->started_ms + 1000);
    assert_true(fz_agent_done(agent));
    assert_int_equal(st->cls, FZ_CLASS_NONE);
    assert_true(st->reset_at == 0);
}

static void test_sim_errors(void **state)
{
    (void)state;
    char err[128];
    fz_agent_sim_t sim = {.duration_s = NAN};
    assert_null(fz_agent_simulate(&sim, NULL, err, sizeof err));
    assert_non_null(strstr(err, "duration"));
    sim.duration_s = 1;
    sim.cost_usd = -1;
    assert_null(fz_agent_simulate(&sim, NULL, err, sizeof err));
    assert_null(fz_agent_simulate(NULL, NULL, err, sizeof err));
    assert_string_equal(fz_agent_outcome_name(FZ_AGENT_SPAWN_FAILED), "spawn-failed");
    assert_string_equal(fz_agent_outcome_name(FZ_AGENT_RUNNING), "running");
    assert_string_equal(fz_agent_outcome_name(FZ_AGENT_STALLED), "stalled");
    /* every ended outcome is the protocol's of the same name */
    static const fz_agent_outcome_t ended[] = {
        FZ_AGENT_EXITED,    FZ_AGENT_SIGNALED,     FZ_AGENT_TIMEOUT, FZ_AGENT_COST_CAP,
        FZ_AGENT_CANCELLED, FZ_AGENT_SPAWN_FAILED, FZ_AGENT_STALLED};
    for (size_t i = 0; i < sizeof ended / sizeof *ended; i++)
        assert_int_equal(fz_outcome_from_name(fz_agent_outcome_name(ended[i])), (int)ended[i]);
    sim.duration_s = 1;
    sim.cost_usd = 0;
    sim.silent_after_s = -1;
    assert_null(fz_agent_simulate(&sim, NULL, err, sizeof err));
    sim.silent_after_s = 0;
    fz_agent_opts_t opts = {.stall_kill_s = NAN};
    assert_null(fz_agent_simulate(&sim, &opts, err, sizeof err));
    assert_non_null(strstr(err, "stall kill"));
}

/* The keeper spawner killed, and the idle keeper (unit.agent_test_spawner only; the last test
   there): the next agent starts all the same, its keeper forked by this process, and the
   dead spawner and keeper are reaped when the module finds them gone, leaving no child
   behind. */
static void test_spawner_gone(void **state)
{
    ctx_t *ctx = *state;
    pid_t spawner = fz_keeper_spawner_pid();
    if (spawner <= 0)
        skip();
    assert_int_equal(kill(spawner, SIGKILL), 0);
    siginfo_t info;
    assert_int_equal(waitid(P_PID, (id_t)spawner, &info, WEXITED | WNOWAIT), 0);
    /* and the idle keeper, so that the next agent needs a new one */
    pid_t idle = fz_keeper_idle_pid();
    if (idle > 0) {
        assert_int_equal(kill(idle, SIGKILL), 0);
        assert_int_equal(waitid(P_PID, (id_t)idle, &info, WEXITED | WNOWAIT), 0);
    }
    fz_agent_opts_t opts = s_opts(ctx, "echo still-here");
    const fz_agent_status_t *st = s_run(s_start(ctx, &opts));
    assert_int_equal(st->outcome, FZ_AGENT_EXITED);
    assert_int_equal(st->exit_code, 0);
    assert_non_null(strstr(s_tail(ctx->agent), "still-here"));
    assert_int_equal(fz_keeper_spawner_pid(), 0);
    assert_int_equal(s_children(), 0);
}

int main(void)
{
    signal(SIGCHLD, SIG_IGN);
    if (fz_agent_init_subreaper() < 0)
        perror("fz_agent_init_subreaper");
    /* FZ_KEEPER_SPAWNER=PATH: the same tests with every keeper forked by the spawner
       (unit.agent_test_spawner), as fz-worker does; without it, forked by this process. */
    const char *spawner = getenv("FZ_KEEPER_SPAWNER");
    char err[512];
    if (spawner && *spawner && fz_keeper_spawner_start(spawner, err, sizeof err) < 0) {
        fprintf(stderr, "agent_test: %s\n", err);
        return 1;
    }
#define T(name) cmocka_unit_test_setup_teardown(name, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        T(test_init_restores_sigchld),
        T(test_echo),
        T(test_nonzero_exit),
        T(test_signaled),
        T(test_prompt_stdin_and_env),
        T(test_workdir_paths),
        T(test_env_is_clean),
        T(test_big_prompt_unread),
        T(test_big_prompt_read),
        T(test_empty_prompt_gives_eof),
        T(test_prompt_with_nul),
        T(test_log_write_error),
        T(test_no_descriptor_leaks),
        T(test_flood_50mib),
        T(test_report_parsing),
        T(test_report_partial_line),
        T(test_silent_agent_makes_no_files),
        T(test_report_and_log_made_by_first_write),
        T(test_report_truncated),
        T(test_report_replaced),
        T(test_report_fifo_ignored),
        T(test_timeout_kills_everything),
        T(test_exit_kills_leftovers),
        T(test_timeout_stopped_agent),
        T(test_timeout_term_obeyed),
        T(test_grace_then_kill_straggler),
        T(test_grace_ends_when_group_exits),
        T(test_cost_cap),
        T(test_stall_kill),
        T(test_stall_not_while_printing),
        T(test_stall_not_while_reporting),
        T(test_cancel),
        T(test_destroy_while_running),
        T(test_start_errors),
        T(test_missing_command_exits_127),
        T(test_no_pidfd_fallback),
        T(test_pollfds_with_pidfd),
        T(test_worker_sigkill_kills_agent),
        T(test_worker_sigkill_during_grace),
        T(test_keeper_stays_between_agents),
        T(test_keeper_killed),
        T(test_own_signals_reported),
        T(test_pid_is_the_group),
        T(test_term_trapped_then_killed),
        T(test_take_new_output),
        T(test_take_new_output_bounded),
        T(test_dry_run_script),
        T(test_dry_run_fail_attempts),
        T(test_dry_run_help),
        T(test_sim_success),
        T(test_sim_failure_exit),
        T(test_sim_timeout),
        T(test_sim_cost_cap),
        T(test_sim_cancel),
        T(test_sim_stall),
        T(test_sim_class),
        T(test_sim_errors),
        T(test_spawner_gone), /* last: the tests after it would fork their keepers */
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
