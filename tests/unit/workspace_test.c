/*  workspace_test: fz_workspace on real git repositories made by each test in a temporary
    folder (HOME points there too, so no global git configuration takes part).

    The teardown checks that every repository the test made lists only its main worktree
    (`git worktree list`) and has nothing to prune, then removes the folder. */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../worker/fz_run.h"
#include "../../worker/fz_workspace.h"
#include "../../worker/fz_wsclean.h"
#include "fz_util.h"

#include "testdir.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REPOS 4

typedef struct {
    char dir[PATH_MAX];
    char cache[PATH_MAX + 16];
    char repos[MAX_REPOS][PATH_MAX + 32];
    int nrepos;
    char out[8192]; /* the last sh() output */
    char err[1024];
} ctx_t;

/* ---------------------------------------------------------------- helpers */

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Runs a shell line in the test folder; returns its status, stdout (trimmed) in c->out. */
static int sh(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(ctx_t *c, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fz_run_opts_t o = {.argv = (const char *const[]){"/bin/sh", "-c", cmd, NULL}, .cwd = c->dir};
    fz_run_res_t res;
    assert_int_equal(fz_run(&o, &res), 0);
    size_t n = res.out_len < sizeof c->out - 1 ? res.out_len : sizeof c->out - 1;
    memcpy(c->out, res.out, n);
    while (n > 0 && c->out[n - 1] == '\n')
        n--;
    c->out[n] = 0;
    int status = res.status;
    fz_run_res_free(&res);
    return status;
}

#define GITC "git -c user.name=t -c user.email=t@t"

/* A repository NAME in the test folder with a.txt ("one\n") committed on main. */
static const char *s_repo(ctx_t *c, const char *name)
{
    assert_true(c->nrepos < MAX_REPOS);
    char *path = c->repos[c->nrepos++];
    char full[PATH_MAX + 32];
    snprintf(full, sizeof full, "%s/%s", c->dir, name);
    memcpy(path, full, sizeof full);
    assert_int_equal(sh(c,
                        "git init -q -b main %s && cd %s && echo one > a.txt && git add a.txt "
                        "&& " GITC " commit -qm init",
                        name, name),
                     0);
    return path;
}

/* A branch of repo from main with one commit writing TEXT to FILE. */
static void s_branch(ctx_t *c, const char *repo, const char *branch, const char *file,
                     const char *text)
{
    assert_int_equal(sh(c,
                        "cd %s && git checkout -qb %s main && echo %s > %s && git add %s && " GITC
                        " commit -qm %s && git checkout -q main",
                        repo, branch, text, file, file, branch),
                     0);
}

static fz_ws_opts_t s_opts(ctx_t *c, const char *repo, uint64_t task, uint32_t attempt)
{
    return (fz_ws_opts_t){.cache_dir = c->cache, .repo = repo, .task = task, .attempt = attempt};
}

static fz_workspace_t *s_open(ctx_t *c, const fz_ws_opts_t *o)
{
    fz_ws_err_t cls = FZ_WS_WORKSPACE;
    fz_workspace_t *ws = fz_workspace_open(o, &cls, c->err, sizeof c->err);
    if (!ws)
        print_error("open failed: %s\n", c->err);
    assert_non_null(ws);
    assert_int_equal(cls, FZ_WS_OK);
    return ws;
}

static fz_ws_err_t s_open_fails(ctx_t *c, const fz_ws_opts_t *o)
{
    fz_ws_err_t cls = FZ_WS_OK;
    fz_workspace_t *ws = fz_workspace_open(o, &cls, c->err, sizeof c->err);
    assert_null(ws);
    assert_int_not_equal(cls, FZ_WS_OK);
    return cls;
}

static int setup(void **state)
{
    ctx_t *c = calloc(1, sizeof *c);
    assert_non_null(fz_testdir(c->dir, sizeof c->dir, "fz-ws-test"));
    snprintf(c->cache, sizeof c->cache, "%s/cache", c->dir);
    setenv("HOME", c->dir, 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx_t *c = *state;
    for (int i = 0; i < c->nrepos; i++) {
        assert_int_equal(
            sh(c, "git -C %s worktree list --porcelain | grep -c '^worktree '", c->repos[i]), 0);
        assert_string_equal(c->out, "1");
        assert_int_equal(sh(c, "git -C %s worktree prune -n -v", c->repos[i]), 0);
        assert_string_equal(c->out, "");
    }
    nftw(c->dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    struct stat st;
    assert_int_not_equal(stat(c->dir, &st), 0);
    free(c);
    return 0;
}

/* ---------------------------------------------------------------- tests */

/* Two attempts of one task edit the same file at once and end on their own branches, each
   with its own diff; fz commits what they left, as fz. */
static void test_two_attempts_same_file(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    fz_ws_opts_t o1 = s_opts(c, repo, 7, 1), o2 = s_opts(c, repo, 7, 2);
    fz_workspace_t *w1 = s_open(c, &o1), *w2 = s_open(c, &o2);
    assert_string_equal(fz_workspace_branch(w1), "fz/7-1");
    assert_string_equal(fz_workspace_branch(w2), "fz/7-2");
    assert_string_equal(fz_workspace_base(w1), fz_workspace_base(w2));
    assert_false(fz_workspace_dirty(w1));
    assert_int_equal(sh(c, "printf 'one\\ntwo\\n' > %s/a.txt", fz_workspace_path(w1)), 0);
    assert_int_equal(sh(c,
                        "cd %s && echo uno > a.txt && echo b > b.txt && " GITC
                        " commit -qam agent && echo c > c.txt",
                        fz_workspace_path(w2)),
                     0);
    fz_ws_result_t r1, r2;
    assert_int_equal(fz_workspace_finish(w1, &r1, c->err, sizeof c->err), FZ_WS_OK);
    assert_int_equal(fz_workspace_finish(w2, &r2, c->err, sizeof c->err), FZ_WS_OK);
    assert_string_equal(r1.branch, "fz/7-1");
    assert_true(r1.committed && r2.committed);
    assert_false(r1.pushed);
    assert_int_equal(r1.files, 1), assert_int_equal(r1.insertions, 1);
    assert_int_equal(r1.deletions, 0);
    assert_int_equal(r2.files, 3), assert_int_equal(r2.insertions, 3);
    assert_int_equal(r2.deletions, 1);
    assert_int_equal(sh(c, "git -C %s show fz/7-1:a.txt | tr '\\n' ,", repo), 0);
    assert_string_equal(c->out, "one,two,");
    assert_int_equal(sh(c, "git -C %s show fz/7-2:a.txt", repo), 0);
    assert_string_equal(c->out, "uno");
    assert_int_equal(sh(c, "git -C %s rev-parse fz/7-2", repo), 0);
    assert_string_equal(c->out, r2.head);
    assert_int_equal(sh(c, "git -C %s log -1 --format='%%an <%%ae>|%%cn <%%ce>|%%s' fz/7-1", repo),
                     0);
    assert_string_equal(c->out, "fz <fz@localhost>|fz <fz@localhost>|fz: task 7 attempt 1: what "
                                "the agent left uncommitted");
    assert_int_equal(sh(c, "git -C %s log -1 --format=%%an fz/7-2~1", repo), 0);
    assert_string_equal(c->out, "t"); /* the agent's own commit is kept as it was */
    struct stat st;
    assert_int_not_equal(stat(fz_workspace_path(w1), &st), 0);
    fz_workspace_destroy(&w1);
    fz_workspace_destroy(&w2);
    assert_null(w1);
    fz_workspace_destroy(&w1); /* NULL is fine */
}

/* An attempt with two bases starts from their merge, made by fz. */
static void test_two_bases_merge(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    s_branch(c, repo, "dep1", "x.txt", "x");
    s_branch(c, repo, "dep2", "y.txt", "y");
    fz_ws_opts_t o = s_opts(c, repo, 8, 1);
    o.base = (const char *const[]){"dep1", "dep2"};
    o.nbase = 2;
    fz_workspace_t *ws = s_open(c, &o);
    assert_int_equal(sh(c, "cd %s && cat x.txt y.txt | tr '\\n' ,", fz_workspace_path(ws)), 0);
    assert_string_equal(c->out, "x,y,");
    assert_int_equal(
        sh(c, "git -C %s log -1 --format='%%p|%%an|%%s' %s", repo, fz_workspace_base(ws)), 0);
    assert_non_null(strchr(c->out, ' ')); /* two parents */
    assert_non_null(strstr(c->out, "|fz|fz: task 8 attempt 1: merge dep2"));
    fz_ws_result_t r;
    assert_int_equal(fz_workspace_finish(ws, &r, c->err, sizeof c->err), FZ_WS_OK);
    assert_string_equal(r.base, r.head);
    assert_false(r.committed);
    assert_int_equal(r.files, 0);
    fz_workspace_destroy(&ws);
}

/* Two bases that conflict: merge-conflict naming the file, and nothing left behind. */
static void test_conflicting_bases(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    s_branch(c, repo, "dep1", "a.txt", "left");
    s_branch(c, repo, "dep2", "a.txt", "right");
    fz_ws_opts_t o = s_opts(c, repo, 9, 1);
    o.base = (const char *const[]){"dep1", "dep2"};
    o.nbase = 2;
    assert_int_equal(s_open_fails(c, &o), FZ_WS_MERGE_CONFLICT);
    assert_string_equal(fz_workspace_class_name(FZ_WS_MERGE_CONFLICT), "merge-conflict");
    assert_non_null(strstr(c->err, "base 'dep2' does not merge with dep1: conflict in a.txt"));
    assert_int_not_equal(sh(c, "git -C %s rev-parse -q --verify fz/9-1", repo), 0);
    assert_int_equal(sh(c, "ls -A %s/worktrees", c->cache), 0);
    assert_string_equal(c->out, "");
    assert_int_equal(sh(c, "git -C %s status --porcelain", repo), 0);
    assert_string_equal(c->out, "");
}

/* Bad input: class workspace, a clear message, nothing made. */
static void test_bad_input(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/nope", c->dir);
    fz_ws_opts_t o = s_opts(c, missing, 10, 1);
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    assert_string_equal(fz_workspace_class_name(FZ_WS_WORKSPACE), "workspace");
    assert_non_null(strstr(c->err, "does not exist"));

    o.repo = c->cache; /* a folder, not a repository */
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    assert_non_null(strstr(c->err, "is not a git repository"));

    o = s_opts(c, repo, 10, 1);
    o.base = (const char *const[]){"no-such-branch"};
    o.nbase = 1;
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    assert_non_null(strstr(c->err, "base 'no-such-branch' does not resolve to a commit"));

    o.base = (const char *const[]){"--all"};
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    assert_non_null(strstr(c->err, "bad base"));

    o.nbase = 0;
    o.min_free = UINT64_MAX / 2; /* no disk has that much: the disk-full path */
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    assert_non_null(strstr(c->err, "disk full"));

    char url[PATH_MAX + 32];
    snprintf(url, sizeof url, "file://%s/none.git", c->dir);
    o = s_opts(c, url, 10, 1);
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    assert_non_null(strstr(c->err, "cannot clone file://"));
    assert_int_equal(sh(c, "ls -A %s | grep -v '[.]lock$' | grep -v '^worktrees$'", c->cache),
                     1); /* no half-made mirror */

    o = s_opts(c, repo, 10, 1); /* the branch exists already: refused, and left alone */
    assert_int_equal(sh(c, "git -C %s branch fz/10-1", repo), 0);
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    assert_non_null(strstr(c->err, "branch fz/10-1 already exists"));
    assert_int_equal(sh(c, "git -C %s rev-parse -q --verify fz/10-1", repo), 0);
    assert_int_equal(sh(c, "ls -A %s/worktrees", c->cache), 0);
    assert_string_equal(c->out, "");
}

/* A URL repository is mirrored, fetched again later, and the branches go back to it. */
static void test_url_repo(void **state)
{
    ctx_t *c = *state;
    const char *src = s_repo(c, "src");
    assert_int_equal(sh(c, "git clone -q --bare %s bare.git", src), 0);
    fz_strcopy(c->repos[c->nrepos++], PATH_MAX + 32, "bare.git");
    char url[PATH_MAX + 32];
    snprintf(url, sizeof url, "file://%s/bare.git", c->dir);
    fz_ws_opts_t o = s_opts(c, url, 11, 1);
    fz_workspace_t *ws = s_open(c, &o);
    assert_int_equal(sh(c, "ls -d %s/bare-*.git | wc -l", c->cache), 0);
    assert_string_equal(c->out, "1");
    assert_int_equal(sh(c, "echo new > %s/n.txt", fz_workspace_path(ws)), 0);
    fz_ws_result_t r;
    assert_int_equal(fz_workspace_finish(ws, &r, c->err, sizeof c->err), FZ_WS_OK);
    assert_true(r.pushed && r.committed);
    assert_int_equal(r.files, 1);
    assert_int_equal(sh(c, "git -C bare.git rev-parse fz/11-1"), 0);
    assert_string_equal(c->out, r.head);
    fz_workspace_destroy(&ws);

    /* upstream moves on; the next attempt sees it through the fetch */
    assert_int_equal(sh(c, "git -C bare.git branch later %s", r.head), 0);
    o = s_opts(c, url, 11, 2);
    o.base = (const char *const[]){"later"};
    o.nbase = 1;
    ws = s_open(c, &o);
    assert_string_equal(fz_workspace_base(ws), r.head);
    assert_int_equal(fz_workspace_finish(ws, NULL, c->err, sizeof c->err), FZ_WS_OK);
    fz_workspace_destroy(&ws);

    assert_int_equal(fz_workspace_promote(c->cache, url, 11, r.head, NULL, c->err, sizeof c->err),
                     FZ_WS_OK);
    assert_int_equal(sh(c, "git -C bare.git rev-parse fz/11"), 0);
    assert_string_equal(c->out, r.head);
}

/* A dirty checkout is never touched and its changes are not in the base; fz says so. */
static void test_dirty_local(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    assert_int_equal(sh(c,
                        "cd %s && echo mine > a.txt && echo u > untracked.txt && git status "
                        "--porcelain | md5sum",
                        repo),
                     0);
    char before[128];
    fz_strcopy(before, sizeof before, c->out);
    fz_ws_opts_t o = s_opts(c, repo, 13, 1);
    fz_workspace_t *ws = s_open(c, &o);
    assert_true(fz_workspace_dirty(ws));
    assert_int_equal(sh(c, "cat %s/a.txt", fz_workspace_path(ws)), 0);
    assert_string_equal(c->out, "one");
    assert_int_equal(sh(c, "echo agent > %s/a.txt", fz_workspace_path(ws)), 0);
    assert_int_equal(fz_workspace_finish(ws, NULL, c->err, sizeof c->err), FZ_WS_OK);
    fz_workspace_destroy(&ws);
    assert_int_equal(sh(c, "cd %s && git status --porcelain | md5sum", repo), 0);
    assert_string_equal(c->out, before);
    assert_int_equal(sh(c, "cat %s/a.txt", repo), 0);
    assert_string_equal(c->out, "mine");
    assert_int_equal(sh(c, "git -C %s symbolic-ref HEAD", repo), 0);
    assert_string_equal(c->out, "refs/heads/main");
}

/* Destroy without finish abandons the attempt; keep leaves the folder; promote on a local
   repository, refused while fz/TASK is checked out. */
static void test_destroy_keep_promote(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    fz_ws_opts_t o = s_opts(c, repo, 14, 1);
    fz_workspace_t *ws = s_open(c, &o);
    fz_workspace_destroy(&ws);
    assert_int_not_equal(sh(c, "git -C %s rev-parse -q --verify fz/14-1", repo), 0);

    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/kept", c->dir);
    o = s_opts(c, repo, 14, 2);
    o.keep = true;
    o.path = path;
    ws = s_open(c, &o);
    assert_string_equal(fz_workspace_path(ws), path);
    fz_ws_result_t r;
    assert_int_equal(fz_workspace_finish(ws, &r, c->err, sizeof c->err), FZ_WS_OK);
    fz_workspace_destroy(&ws);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    assert_int_equal(fz_workspace_promote(c->cache, repo, 14, r.head, NULL, c->err, sizeof c->err),
                     FZ_WS_OK);
    assert_int_equal(sh(c, "git -C %s rev-parse fz/14", repo), 0);
    assert_string_equal(c->out, r.head);
    assert_int_equal(sh(c, "git -C %s checkout -q fz/14", path), 0);
    assert_int_equal(fz_workspace_promote(c->cache, repo, 14, r.base, NULL, c->err, sizeof c->err),
                     FZ_WS_WORKSPACE);
    assert_non_null(strstr(c->err, "cannot set fz/14 to"));
    assert_int_equal(sh(c, "git -C %s worktree remove --force %s", repo, path), 0);
}

/* A stop flag set (from another thread) while open waits for the repository's lock, held
   here as another worker's clone would hold it, ends the open within a moment, with
   "stopped" and nothing left. */
static void *s_stop_later(void *arg)
{
    usleep(300 * 1000);
    atomic_store((atomic_bool *)arg, true);
    return NULL;
}

static void test_stop_while_opening(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    char lock[PATH_MAX + 16];
    snprintf(lock, sizeof lock, "%s/.git/fz.lock", repo);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0 && flock(fd, LOCK_EX) == 0);
    atomic_bool stop = false;
    fz_ws_opts_t o = s_opts(c, repo, 30, 1);
    o.stop = &stop;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_stop_later, &stop), 0);
    int64_t t0 = fz_clock_ms();
    assert_int_equal(s_open_fails(c, &o), FZ_WS_WORKSPACE);
    int64_t took = fz_clock_ms() - t0;
    pthread_join(th, NULL);
    assert_true(took >= 250 && took < 1500);
    assert_string_equal(c->err, "stopped");
    close(fd);
    /* fz_run with the flag already set starts nothing */
    fz_run_opts_t ro = {.argv = (const char *const[]){"sleep", "10", NULL}, .stop = &stop};
    fz_run_res_t res;
    assert_int_equal(fz_run(&ro, &res), -1);
    assert_true(res.stopped);
    assert_int_equal(res.spawn_errno, ECANCELED);
    fz_run_res_free(&res);
    /* ... and stops a running one (SIGTERM to its group) when it is set meanwhile */
    atomic_store(&stop, false);
    assert_int_equal(pthread_create(&th, NULL, s_stop_later, &stop), 0);
    t0 = fz_clock_ms();
    assert_int_equal(fz_run(&ro, &res), 0);
    took = fz_clock_ms() - t0;
    pthread_join(th, NULL);
    assert_true(res.stopped && !res.timed_out && res.signal == SIGTERM);
    assert_true(took >= 250 && took < 1500);
    fz_run_res_free(&res);
    assert_int_equal(sh(c, "git -C %s branch --list 'fz/*' | wc -l", repo), 0);
    assert_string_equal(c->out, "0");
}

/* fz_wsclean at a worker's start: a worktree whose owner is gone (its .live marker not held)
   is removed with its registration; one still held, one kept, and the user's own worktree
   stay; a marker without its folder goes. */
static void test_clean_leftovers(void **state)
{
    ctx_t *c = *state;
    const char *repo = s_repo(c, "r");
    fz_ws_opts_t o1 = s_opts(c, repo, 40, 1), o2 = s_opts(c, repo, 41, 1),
                 o3 = s_opts(c, repo, 42, 1);
    o3.keep = true;
    /* "left" as a killed worker leaves it: a process that opened it and died */
    pid_t pid = fork();
    if (pid == 0) {
        fz_ws_err_t cls;
        char err[512];
        _exit(fz_workspace_open(&o1, &cls, err, sizeof err) ? 0 : 1);
    }
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    fz_workspace_t *live = s_open(c, &o2), *kept = s_open(c, &o3);
    assert_int_equal(fz_workspace_finish(kept, NULL, c->err, sizeof c->err), FZ_WS_OK);
    char left_path[PATH_MAX + 32];
    snprintf(left_path, sizeof left_path, "%s/worktrees/40-1", c->cache);
    struct stat st;
    assert_int_equal(stat(left_path, &st), 0);
    assert_int_equal(sh(c, "touch %s/worktrees/99-1.live", c->cache), 0);
    char user[PATH_MAX + 16];
    snprintf(user, sizeof user, "%s/users-own", c->dir);
    assert_int_equal(sh(c, "git -C %s worktree add -q -b mine %s", repo, user), 0);
    assert_int_equal(fz_wsclean_run(c->cache), 1);
    assert_int_not_equal(stat(left_path, &st), 0);
    assert_int_equal(stat(fz_workspace_path(live), &st), 0);
    assert_int_equal(stat(fz_workspace_path(kept), &st), 0);
    assert_int_equal(stat(user, &st), 0);
    char marker[PATH_MAX + 64];
    snprintf(marker, sizeof marker, "%s/worktrees/99-1.live", c->cache);
    assert_int_not_equal(stat(marker, &st), 0);
    assert_int_equal(sh(c, "git -C %s worktree list | wc -l", repo), 0);
    assert_string_equal(c->out, "4"); /* main, live, kept, the user's */
    assert_int_equal(sh(c, "git -C %s rev-parse -q --verify fz/40-1", repo), 0); /* kept */
    assert_int_equal(sh(c, "git -C %s worktree remove %s && git -C %s worktree remove --force %s",
                        repo, user, repo, fz_workspace_path(kept)),
                     0);
    fz_workspace_destroy(&live);
    fz_workspace_destroy(&kept);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_attempts_same_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_bases_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicting_bases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_repo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirty_local, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_keep_promote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_while_opening, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_leftovers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
