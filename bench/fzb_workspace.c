/*  fzb-workspace: what fz_workspace costs over plain git on a repository of many files.

    Makes a repository of FILES files (default 10000) in a temporary folder, then times
    ROUNDS rounds (default 5) of each, alternating:
      fz     fz_workspace_open + fz_workspace_finish (no change by the agent: status, head and
             diff stat, then the removal) + destroy
      git    `git worktree add -b B PATH HEAD` + `git worktree remove PATH` (+ branch -D)
    and prints the median and min of both side by side; then the disk one more workspace
    takes while it is open (du of the worktree folder and of its entry under .git/worktrees:
    the objects are the repository's, shared), for fz's and for plain git's. Print-only, not
    part of the suite.

    Usage: fzb-workspace [FILES [ROUNDS]] */

#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fz_run.h"
#include "fz_util.h"
#include "fz_workspace.h"

#define MAX_ROUNDS 100

static char s_dir[PATH_MAX];

static int s_sh(const char *cmd)
{
    fz_run_opts_t o = {.argv = (const char *const[]){"/bin/sh", "-c", cmd, NULL}, .cwd = s_dir};
    fz_run_res_t res;
    int rc = fz_run(&o, &res) == 0 && res.status == 0 ? 0 : -1;
    if (rc < 0)
        fprintf(stderr, "failed: %s\n%s", cmd, res.err);
    fz_run_res_free(&res);
    return rc;
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static int s_make_repo(int files)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "git init -q -b main repo && cd repo && for d in $(seq 0 99); do mkdir d$d; done && "
             "seq 0 %d | awk '{ f = sprintf(\"d%%d/f%%d.txt\", $1 %% 100, $1); "
             "print \"file \" $1 \" of the benchmark\" > f; close(f) }' && git add -A && "
             "git -c user.name=b -c user.email=b@b commit -qm files",
             files - 1);
    return s_sh(cmd);
}

static int64_t s_fz_round(int i, const char *repo, const char *cache)
{
    int64_t t0 = fz_clock_ms();
    char err[512];
    fz_ws_opts_t o = {.cache_dir = cache, .repo = repo, .task = 1, .attempt = (uint32_t)i + 1};
    fz_workspace_t *ws = fz_workspace_open(&o, NULL, err, sizeof err);
    if (!ws || fz_workspace_finish(ws, NULL, err, sizeof err) != FZ_WS_OK) {
        fprintf(stderr, "fz_workspace: %s\n", err);
        fz_workspace_destroy(&ws);
        return -1;
    }
    fz_workspace_destroy(&ws);
    return fz_clock_ms() - t0;
}

static int64_t s_git_round(int i)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "git -C repo worktree add -q -b plain-%d ../plain-%d HEAD && "
             "git -C repo worktree remove ../plain-%d",
             i, i, i);
    int64_t t0 = fz_clock_ms();
    if (s_sh(cmd) < 0)
        return -1;
    return fz_clock_ms() - t0;
}

/* KiB on disk of a worktree folder and its registration (git rev-parse --git-dir). */
static long s_disk_kib(const char *path)
{
    char cmd[PATH_MAX * 2 + 128];
    snprintf(cmd, sizeof cmd,
             "du -skc %s \"$(git -C %s rev-parse --path-format=absolute --git-dir)\" | tail -1",
             path, path);
    fz_run_opts_t o = {.argv = (const char *const[]){"/bin/sh", "-c", cmd, NULL}, .cwd = s_dir};
    fz_run_res_t res;
    long kib = fz_run(&o, &res) == 0 && res.status == 0 ? atol(res.out) : -1;
    fz_run_res_free(&res);
    return kib;
}

/* The disk of one more open workspace, fz's and plain git's. */
static int s_disk(const char *repo, const char *cache)
{
    char err[512], plain[PATH_MAX + 16];
    fz_ws_opts_t o = {.cache_dir = cache, .repo = repo, .task = 2, .attempt = 1};
    fz_workspace_t *ws = fz_workspace_open(&o, NULL, err, sizeof err);
    if (!ws)
        return fprintf(stderr, "fz_workspace: %s\n", err), -1;
    snprintf(plain, sizeof plain, "%s/plain-disk", s_dir);
    if (s_sh("git -C repo worktree add -q -b plain-disk ../plain-disk HEAD") < 0) {
        fz_workspace_destroy(&ws);
        return -1;
    }
    long fz = s_disk_kib(fz_workspace_path(ws)), git = s_disk_kib(plain), all = -1;
    char cmd[64] = "du -sk repo/.git | cut -f1";
    fz_run_opts_t ro = {.argv = (const char *const[]){"/bin/sh", "-c", cmd, NULL}, .cwd = s_dir};
    fz_run_res_t res;
    if (fz_run(&ro, &res) == 0 && res.status == 0)
        all = atol(res.out);
    fz_run_res_free(&res);
    printf("disk per extra workspace (folder + .git/worktrees entry; objects shared: "
           "the repository's .git is %ld KiB)\n",
           all);
    printf("  fz_workspace               %6ld KiB\n", fz);
    printf("  git worktree add           %6ld KiB\n", git);
    fz_workspace_destroy(&ws);
    return s_sh("git -C repo worktree remove ../plain-disk");
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int files = argc > 1 ? atoi(argv[1]) : 10000, rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (files < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        return fprintf(stderr, "usage: fzb-workspace [FILES [ROUNDS<=100]]\n"), 2;
    snprintf(s_dir, sizeof s_dir, "/tmp/fzb-workspace-XXXXXX");
    if (!mkdtemp(s_dir) || s_make_repo(files) < 0)
        return 1;
    char repo[PATH_MAX + 8], cache[PATH_MAX + 8];
    snprintf(repo, sizeof repo, "%s/repo", s_dir);
    snprintf(cache, sizeof cache, "%s/cache", s_dir);
    int64_t fz[MAX_ROUNDS], git[MAX_ROUNDS];
    int rc = 0;
    for (int i = 0; i < rounds && rc == 0; i++) {
        fz[i] = s_fz_round(i, repo, cache);
        git[i] = s_git_round(i);
        rc = fz[i] < 0 || git[i] < 0;
    }
    if (rc == 0) {
        qsort(fz, (size_t)rounds, sizeof *fz, s_cmp);
        qsort(git, (size_t)rounds, sizeof *git, s_cmp);
        printf("%d files, %d rounds: setup+teardown median (min)\n", files, rounds);
        printf("  fz_workspace open+finish   %6" PRId64 " ms (%" PRId64 ")\n", fz[rounds / 2],
               fz[0]);
        printf("  git worktree add+remove    %6" PRId64 " ms (%" PRId64 ")\n", git[rounds / 2],
               git[0]);
        rc = s_disk(repo, cache) < 0;
    }
    nftw(s_dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
