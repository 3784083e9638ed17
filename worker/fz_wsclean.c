/*  fz_wsclean: worktrees left behind in a worker's cache; see fz_wsclean.h. */

#include "fz_wsclean.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fz_run.h"
#include "fz_util.h"
#include "fz_workspace.h"

static bool s_ends(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int s_git(const char *dir, const char *const *args)
{
    const char *argv[16] = {"git", "-C", dir};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    fz_run_opts_t o = {.argv = argv, .timeout_ms = FZ_WS_GIT_TIMEOUT_DEFAULT * 1000};
    fz_run_res_t res;
    int rc = fz_run(&o, &res) == 0 && res.status == 0 ? 0 : -1;
    fz_run_res_free(&res);
    return rc;
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* True if someone holds PATH.live (the worktree's owner is alive). */
static bool s_in_use(const char *path)
{
    char live[PATH_MAX + 8];
    snprintf(live, sizeof live, "%s" FZ_WS_LIVE_SUFFIX, path);
    int fd = open(live, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool busy = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

/* The worktree's registration (GITDIR of its .git file "gitdir: GITDIR"), and the
   repository's common folder (GITDIR/../..). */
static bool s_registration(const char *path, char *gitdir, char *common)
{
    char file[PATH_MAX + 8], line[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/.git", path);
    FILE *f = fopen(file, "re");
    bool ok = f && fgets(line, sizeof line, f) && strncmp(line, "gitdir: ", 8) == 0;
    if (f)
        fclose(f);
    if (!ok)
        return false;
    line[strcspn(line, "\n")] = 0;
    fz_strcopy(gitdir, PATH_MAX, line + 8);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/../..", gitdir);
    return realpath(tmp, common) != NULL;
}

/* True if the registration's own gitdir file points back at path/.git. */
static bool s_points_at(const char *gitdir, const char *path)
{
    char file[PATH_MAX + 8], line[PATH_MAX + 16], want[PATH_MAX + 8];
    snprintf(file, sizeof file, "%s/gitdir", gitdir);
    snprintf(want, sizeof want, "%s/.git", path);
    FILE *f = fopen(file, "re");
    bool ok = f && fgets(line, sizeof line, f);
    if (f)
        fclose(f);
    line[ok ? strcspn(line, "\n") : 0] = 0;
    return ok && strcmp(line, want) == 0;
}

/* The flock file fz_workspace uses for the repository whose common folder this is: a
   mirror's CACHE/NAME.lock, a local repository's COMMON/fz.lock. */
static void s_repo_lock(const char *cache, const char *common, char *lock, size_t size)
{
    size_t n = strlen(cache);
    if (strncmp(common, cache, n) == 0 && common[n] == '/' && !strchr(common + n + 1, '/') &&
        s_ends(common, ".git"))
        snprintf(lock, size, "%.*s.lock", (int)(strlen(common) - 4), common);
    else
        snprintf(lock, size, "%s/fz.lock", common);
}

static void s_remove_one(const char *cache, const char *path)
{
    char gitdir[PATH_MAX] = "", common[PATH_MAX] = "", lock[PATH_MAX + 8];
    bool reg = s_registration(path, gitdir, common);
    int fd = -1;
    if (reg) {
        s_repo_lock(cache, common, lock, sizeof lock);
        fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            flock(fd, LOCK_EX);
    }
    if (!reg ||
        s_git(common, (const char *const[]){"worktree", "remove", "--force", path, NULL}) < 0) {
        nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (reg && s_points_at(gitdir, path))
            nftw(gitdir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    fz_close(&fd);
    fz_info("removed the worktree %s, left behind by a worker that ended without finishing it "
            "(repository %s; its branch stays)",
            path, reg ? common : "unknown");
}

/* Markers whose worktree is gone. */
static void s_drop_marker(const char *dir, const char *name)
{
    char path[PATH_MAX + 256], folder[PATH_MAX + 256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(folder, sizeof folder, "%.*s", (int)(strlen(path) - 5), path);
    if (!s_exists(folder))
        unlink(path);
}

static int s_worktrees(const char *cache)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.4000s/worktrees", cache);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX], kept[PATH_MAX + 8];
        snprintf(path, sizeof path, "%.3000s/%s", dir, e->d_name);
        if (s_ends(e->d_name, FZ_WS_LIVE_SUFFIX) || s_ends(e->d_name, FZ_WS_KEPT_SUFFIX)) {
            s_drop_marker(dir, e->d_name);
            continue;
        }
        snprintf(kept, sizeof kept, "%s" FZ_WS_KEPT_SUFFIX, path);
        if (s_exists(kept) || s_in_use(path))
            continue;
        s_remove_one(cache, path);
        char live[PATH_MAX + 8];
        snprintf(live, sizeof live, "%s" FZ_WS_LIVE_SUFFIX, path);
        unlink(live);
        removed++;
    }
    closedir(d);
    return removed;
}

/* Registrations of the cache's mirrors whose folders are gone (they are all fz's). */
static void s_prune_mirrors(const char *cache)
{
    DIR *d = opendir(cache);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && s_ends(e->d_name, ".git")) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%.3000s/%s", cache, e->d_name);
            s_git(path, (const char *const[]){"worktree", "prune", NULL});
        }
    closedir(d);
}

int fz_wsclean_run(const char *cache_dir)
{
    char cache[PATH_MAX];
    if (!cache_dir || !realpath(cache_dir, cache))
        return 0;
    int removed = s_worktrees(cache);
    s_prune_mirrors(cache);
    return removed;
}
