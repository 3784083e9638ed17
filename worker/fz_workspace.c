/*  fz_workspace: a git worktree per task attempt; see fz_workspace.h. */

#include "fz_workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fz_run.h"
#include "fz_util.h"

#define S_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define S_IDENT "-c", "user.name=fz", "-c", "user.email=fz@localhost", "-c", "commit.gpgsign=false"
#define S_GIT_ARGS_MAX 32
#define S_LOCK_RETRIES 8 /* tries after the first, on another process's *.lock */
#define S_LOCK_PAUSE_MS 25

/* How git runs: its time limit per command, and the stop flag (NULL: not stoppable). */
typedef struct {
    int timeout_ms;
    const atomic_bool *stop;
} git_t;

typedef struct {
    bool is_url;
    bool bare;
    char url[PATH_MAX];      /* the repository as given (URL) */
    char dir[PATH_MAX];      /* where git runs: the local repository, or the mirror */
    char lock[PATH_MAX + 8]; /* the flock file */
} repo_t;

struct fz_workspace_t {
    repo_t repo;
    char path[PATH_MAX];
    char branch[FZ_WS_BRANCH_MAX];
    char base[FZ_WS_OID_MAX];
    uint64_t task;
    uint32_t attempt;
    git_t git;  /* opening, pushing: stoppable */
    git_t calm; /* sealing and cleaning up: runs to its end (within its time limit) */
    bool keep, dirty, sealed, finished;
    int live_fd; /* holds the flock of PATH.live while the worktree is ours (fz_wsclean) */
    fz_ws_result_t res;
};

/* ---------------------------------------------------------------- running git */

static bool s_lock_busy(const fz_run_res_t *res)
{
    return res->err && strstr(res->err, ".lock': File exists");
}

static void s_pause(int i)
{
    usleep((useconds_t)(S_LOCK_PAUSE_MS << (i < 4 ? i : 4)) * 1000);
}

/* git -C DIR ARGS...: 0 if it exited 0, else -1; res holds its output either way (free it).
   With retry, a failure on another process's lock file is tried again. */
static int s_git(const git_t *g, const char *dir, fz_run_res_t *res, bool retry,
                 const char *const *args)
{
    const char *argv[S_GIT_ARGS_MAX] = {"git", "-C", dir};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < S_GIT_ARGS_MAX - 1; i++)
        argv[n++] = args[i];
    fz_run_opts_t o = {.argv = argv, .timeout_ms = g->timeout_ms, .stop = g->stop};
    for (int i = 0;; i++) {
        if (fz_run(&o, res) == 0 && res->status == 0)
            return 0;
        if (!retry || i >= S_LOCK_RETRIES || !s_lock_busy(res) || res->stopped)
            return -1;
        fz_run_res_free(res);
        s_pause(i);
    }
}

/* Runs git for its side effect only. */
static int s_git_do(const git_t *g, const char *dir, const char *const *args)
{
    fz_run_res_t res;
    int rc = s_git(g, dir, &res, true, args);
    fz_run_res_free(&res);
    return rc;
}

/* Formats "WHAT: git's last line" into err and returns cls. A disk without room says so
   first. */
static fz_ws_err_t s_fail(fz_ws_err_t cls, char *err, size_t errlen, const fz_run_res_t *res,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static fz_ws_err_t s_fail(fz_ws_err_t cls, char *err, size_t errlen, const fz_run_res_t *res,
                          const char *fmt, ...)
{
    char what[1024], line[512] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (res && res->stopped)
        snprintf(line, sizeof line, "stopped");
    else if (res && res->spawn_errno)
        snprintf(line, sizeof line, "cannot run git: %s", strerror(res->spawn_errno));
    else if (res && res->timed_out)
        snprintf(line, sizeof line, "git timed out");
    else if (res)
        fz_run_last_line(res->err && res->err[0] ? res->err : res->out, line, sizeof line);
    bool full = res && res->err && strstr(res->err, "No space left on device");
    fz_errf(err, errlen, "%s%s%s%s", full ? "disk full: " : "", what, line[0] ? ": " : "", line);
    return cls;
}

/* The first line of out into buf; false if empty. */
static bool s_first_line(const char *out, char *buf, size_t size)
{
    size_t n = strcspn(out, "\n");
    if (n == 0 || n >= size)
        return false;
    memcpy(buf, out, n);
    buf[n] = 0;
    return true;
}

/* ---------------------------------------------------------------- files */

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

static bool s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* path made absolute in out, its parent created. */
static int s_abs_path(const char *path, char *out, size_t size)
{
    char tmp[PATH_MAX], tmp2[PATH_MAX], parent[PATH_MAX];
    fz_strcopy(tmp, sizeof tmp, path);
    fz_strcopy(tmp2, sizeof tmp2, path);
    const char *dir = dirname(tmp), *base = basename(tmp2);
    if (fz_mkdirs(dir, 0755) < 0 || !realpath(dir, parent))
        return -1;
    if ((size_t)snprintf(out, size, "%s/%s", parent, base) >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* The repository's flock; with a stop flag, waited for in steps so that a stop ends the
   wait (another process may hold the lock for a whole clone). -1 with errno. */
static int s_lock(const repo_t *r, const atomic_bool *stop)
{
    int fd = open(r->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    while (flock(fd, stop ? LOCK_EX | LOCK_NB : LOCK_EX) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK && !atomic_load(stop)) {
            usleep(S_LOCK_PAUSE_MS * 1000);
            continue;
        }
        if (e != EINTR) {
            close(fd);
            errno = e == EWOULDBLOCK ? ECANCELED : e;
            return -1;
        }
    }
    return fd;
}

static void s_unlock(int *fd)
{
    fz_close(fd); /* closing drops the flock */
}

/* ---------------------------------------------------------------- the repository's cache */

static bool s_is_url(const char *repo)
{
    if (strstr(repo, "://"))
        return true;
    const char *colon = strchr(repo, ':'), *slash = strchr(repo, '/');
    return repo[0] != '/' && repo[0] != '.' && colon && (!slash || colon < slash);
}

static uint64_t s_fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* NAME-HASH for a URL: its last path element, tamed, and a hash of the whole. */
static void s_mirror_name(const char *url, char *buf, size_t size)
{
    char name[41];
    size_t end = strlen(url);
    while (end > 0 && url[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && url[start - 1] != '/' && url[start - 1] != ':')
        start--;
    if (end - start > 4 && strncmp(url + end - 4, ".git", 4) == 0)
        end -= 4;
    size_t n = 0;
    for (size_t i = start; i < end && n < sizeof name - 1; i++) {
        char c = url[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        name[n++] = ok ? c : '_';
    }
    name[n] = 0;
    snprintf(buf, size, "%s-%016" PRIx64, n ? name : "repo", s_fnv1a(url));
}

static fz_ws_err_t s_repo_url(const char *cache_dir, const char *url, repo_t *r, char *err,
                              size_t errlen)
{
    char cache[PATH_MAX], name[64];
    if (fz_mkdirs(cache_dir, 0755) < 0 || !realpath(cache_dir, cache))
        return fz_errf(err, errlen, "cannot make the cache folder %s: %s", cache_dir,
                       strerror(errno)),
               FZ_WS_WORKSPACE;
    s_mirror_name(url, name, sizeof name);
    r->is_url = r->bare = true;
    fz_strcopy(r->url, sizeof r->url, url);
    snprintf(r->dir, sizeof r->dir, "%.3000s/%s.git", cache, name);
    snprintf(r->lock, sizeof r->lock, "%.3000s/%s.lock", cache, name);
    return FZ_WS_OK;
}

static fz_ws_err_t s_repo_local(const char *path, const git_t *g, repo_t *r, char *err,
                                size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode) || !realpath(path, r->dir))
        return fz_errf(err, errlen, "repository %s does not exist", path), FZ_WS_WORKSPACE;
    fz_run_res_t res;
    char common[PATH_MAX];
    int rc = s_git(
        g, r->dir, &res, false,
        S_ARGS("rev-parse", "--path-format=absolute", "--git-common-dir", "--is-bare-repository"));
    if (rc < 0 || !s_first_line(res.out, common, sizeof common)) {
        fz_ws_err_t cls =
            s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "%s is not a git repository", path);
        fz_run_res_free(&res);
        return cls;
    }
    r->bare = strstr(res.out, "\ntrue") != NULL;
    fz_run_res_free(&res);
    snprintf(r->lock, sizeof r->lock, "%s/fz.lock", common);
    return FZ_WS_OK;
}

static fz_ws_err_t s_repo(const char *cache_dir, const char *repo, const git_t *g, repo_t *r,
                          char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (repo[0] == '-')
        return fz_errf(err, errlen, "bad repository name %s", repo), FZ_WS_WORKSPACE;
    if (s_is_url(repo))
        return s_repo_url(cache_dir, repo, r, err, errlen);
    return s_repo_local(repo, g, r, err, errlen);
}

/* Clones the mirror (into a temporary folder renamed at the end) or fetches it. Under the
   repository's lock. */
static fz_ws_err_t s_mirror_sync(const repo_t *r, const git_t *g, char *err, size_t errlen)
{
    fz_run_res_t res;
    if (s_exists(r->dir)) {
        if (s_git(g, r->dir, &res, true, S_ARGS("fetch", "--quiet", "origin")) == 0)
            return fz_run_res_free(&res), FZ_WS_OK;
        s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot fetch %s", r->url);
        return fz_run_res_free(&res), FZ_WS_WORKSPACE;
    }
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", r->dir, (int)getpid());
    s_rm_rf(tmp);
    int rc = s_git(g, "/", &res, false, S_ARGS("clone", "--mirror", "--quiet", "--", r->url, tmp));
    if (rc < 0)
        s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot clone %s", r->url);
    else if (rename(tmp, r->dir) < 0)
        rc = fz_errf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
    fz_run_res_free(&res);
    if (rc < 0)
        s_rm_rf(tmp);
    return rc < 0 ? FZ_WS_WORKSPACE : FZ_WS_OK;
}

/* ---------------------------------------------------------------- opening */

static fz_ws_err_t s_resolve(const fz_workspace_t *ws, const char *ref, char *oid, char *err,
                             size_t errlen)
{
    char spec[512];
    if (!ref[0] || ref[0] == '-' ||
        (size_t)snprintf(spec, sizeof spec, "%s^{commit}", ref) >= sizeof spec)
        return fz_errf(err, errlen, "bad base '%s'", ref), FZ_WS_WORKSPACE;
    fz_run_res_t res;
    int rc = s_git(&ws->git, ws->repo.dir, &res, false,
                   S_ARGS("rev-parse", "--verify", "--quiet", "--end-of-options", spec));
    bool ok = rc == 0 && s_first_line(res.out, oid, FZ_WS_OID_MAX);
    fz_run_res_free(&res);
    if (!ok)
        return fz_errf(err, errlen, "base '%s' does not resolve to a commit of %s", ref,
                       ws->repo.is_url ? ws->repo.url : ws->repo.dir),
               FZ_WS_WORKSPACE;
    return FZ_WS_OK;
}

static fz_ws_err_t s_room(const char *path, uint64_t need, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    struct statvfs sv;
    fz_strcopy(tmp, sizeof tmp, path);
    if (statvfs(dirname(tmp), &sv) < 0)
        return fz_errf(err, errlen, "cannot read free space at %s: %s", path, strerror(errno)),
               FZ_WS_WORKSPACE;
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (avail < need)
        return fz_errf(err, errlen, "disk full: %" PRIu64 " MiB free at %s, %" PRIu64 " needed",
                       avail >> 20, tmp, need >> 20),
               FZ_WS_WORKSPACE;
    return FZ_WS_OK;
}

/* Removes what open may have made: the worktree (registration and folder) and the branch.
   Under the lock. Only called once path and branch were known not to exist before. */
static void s_discard(fz_workspace_t *ws)
{
    char ref[FZ_WS_BRANCH_MAX + 16];
    snprintf(ref, sizeof ref, "refs/heads/%s", ws->branch);
    s_git_do(&ws->calm, ws->repo.dir, S_ARGS("worktree", "remove", "--force", ws->path));
    s_rm_rf(ws->path);
    s_git_do(&ws->calm, ws->repo.dir, S_ARGS("worktree", "prune"));
    s_git_do(&ws->calm, ws->repo.dir, S_ARGS("update-ref", "-d", ref));
}

/* PATH.live, flocked for as long as this process owns the worktree: a worker starting on the
   same cache removes only worktrees whose marker nobody holds (fz_wsclean). */
static fz_ws_err_t s_live_take(fz_workspace_t *ws, char *err, size_t errlen)
{
    char live[PATH_MAX + 8];
    snprintf(live, sizeof live, "%s" FZ_WS_LIVE_SUFFIX, ws->path);
    ws->live_fd = open(live, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (ws->live_fd < 0)
        return fz_errf(err, errlen, "cannot create %s: %s", live, strerror(errno)), FZ_WS_WORKSPACE;
    if (flock(ws->live_fd, LOCK_EX | LOCK_NB) < 0) {
        fz_close(&ws->live_fd);
        return fz_errf(err, errlen, "%s is in use by another worker", ws->path), FZ_WS_WORKSPACE;
    }
    return FZ_WS_OK;
}

/* The worktree is no longer ours: its marker goes, or becomes PATH.kept (left alone). */
static void s_live_end(fz_workspace_t *ws, bool kept)
{
    if (ws->live_fd < 0)
        return;
    char live[PATH_MAX + 8], mark[PATH_MAX + 8];
    snprintf(live, sizeof live, "%s" FZ_WS_LIVE_SUFFIX, ws->path);
    snprintf(mark, sizeof mark, "%s" FZ_WS_KEPT_SUFFIX, ws->path);
    if (!kept || rename(live, mark) < 0)
        unlink(live);
    fz_close(&ws->live_fd);
}

static fz_ws_err_t s_fresh(const fz_workspace_t *ws, char *err, size_t errlen)
{
    char ref[FZ_WS_BRANCH_MAX + 16];
    snprintf(ref, sizeof ref, "refs/heads/%s", ws->branch);
    if (s_exists(ws->path))
        return fz_errf(err, errlen, "%s already exists", ws->path), FZ_WS_WORKSPACE;
    if (s_git_do(&ws->calm, ws->repo.dir, S_ARGS("show-ref", "--verify", "--quiet", ref)) == 0)
        return fz_errf(err, errlen, "branch %s already exists", ws->branch), FZ_WS_WORKSPACE;
    return FZ_WS_OK;
}

/* git worktree add -b BRANCH PATH OID, retried (after cleaning up) on a busy lock file. */
static fz_ws_err_t s_add(fz_workspace_t *ws, const char *oid, char *err, size_t errlen)
{
    for (int i = 0;; i++) {
        fz_run_res_t res;
        int rc = s_git(&ws->git, ws->repo.dir, &res, false,
                       S_ARGS("worktree", "add", "--quiet", "-b", ws->branch, ws->path, oid));
        if (rc == 0)
            return fz_run_res_free(&res), FZ_WS_OK;
        s_discard(ws);
        if (!s_lock_busy(&res) || i >= S_LOCK_RETRIES) {
            s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot add a worktree at %s", ws->path);
            return fz_run_res_free(&res), FZ_WS_WORKSPACE;
        }
        fz_run_res_free(&res);
        s_pause(i);
    }
}

/* The conflicting files of a failed merge, "a, b, c" (cut short). */
static void s_conflicts(const fz_workspace_t *ws, char *buf, size_t size)
{
    fz_run_res_t res;
    buf[0] = 0;
    if (s_git(&ws->git, ws->path, &res, false, S_ARGS("diff", "--name-only", "--diff-filter=U")) ==
        0) {
        size_t n = 0;
        for (char *line = strtok(res.out, "\n"); line && n + 4 < size; line = strtok(NULL, "\n"))
            n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "", line);
    }
    fz_run_res_free(&res);
}

static fz_ws_err_t s_merge_one(fz_workspace_t *ws, const char *const *refs, size_t i,
                               const char *oid, char *err, size_t errlen)
{
    char msg[1024], files[512];
    snprintf(msg, sizeof msg, "fz: task %" PRIu64 " attempt %" PRIu32 ": merge %.400s", ws->task,
             ws->attempt, refs[i]);
    fz_run_res_t res;
    int rc = s_git(&ws->git, ws->path, &res, true,
                   S_ARGS(S_IDENT, "merge", "--quiet", "--no-edit", "--no-verify", "-m", msg, oid));
    if (rc == 0)
        return fz_run_res_free(&res), FZ_WS_OK;
    s_conflicts(ws, files, sizeof files);
    fz_ws_err_t cls = FZ_WS_MERGE_CONFLICT;
    if (files[0])
        fz_errf(err, errlen, "base '%s' does not merge with %s%s: conflict in %s", refs[i],
                i > 1 ? "the merge of " : "", i > 1 ? "the bases before it" : refs[0], files);
    else
        cls = s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot merge base '%s'", refs[i]);
    fz_run_res_free(&res);
    return cls;
}

static bool s_dirty(const fz_workspace_t *ws)
{
    fz_run_res_t res;
    int rc = s_git(&ws->calm, ws->repo.dir, &res, false,
                   S_ARGS("--no-optional-locks", "status", "--porcelain", "--untracked-files=no"));
    bool dirty = rc == 0 && res.out_total > 0;
    fz_run_res_free(&res);
    return dirty;
}

/* The worktree from the resolved bases: added from the first, the others merged in. Under
   the lock; on failure nothing is left. */
static fz_ws_err_t s_build(fz_workspace_t *ws, const char *const *refs, size_t n,
                           char (*oid)[FZ_WS_OID_MAX], char *err, size_t errlen)
{
    fz_ws_err_t cls = s_add(ws, oid[0], err, errlen);
    if (cls != FZ_WS_OK)
        return cls; /* s_add cleaned up */
    for (size_t i = 1; cls == FZ_WS_OK && i < n; i++)
        cls = s_merge_one(ws, refs, i, oid[i], err, errlen);
    fz_run_res_t res;
    if (cls == FZ_WS_OK) {
        if (s_git(&ws->git, ws->path, &res, false, S_ARGS("rev-parse", "HEAD")) < 0 ||
            !s_first_line(res.out, ws->base, sizeof ws->base))
            cls = s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot read the base commit");
        fz_run_res_free(&res);
    }
    if (cls != FZ_WS_OK)
        s_discard(ws);
    return cls;
}

/* Everything of open under the repository's lock. */
static fz_ws_err_t s_open_locked(fz_workspace_t *ws, const fz_ws_opts_t *o, char *err,
                                 size_t errlen)
{
    fz_ws_err_t cls = FZ_WS_OK;
    if (ws->repo.is_url)
        cls = s_mirror_sync(&ws->repo, &ws->git, err, errlen);
    static const char *const head[] = {"HEAD"};
    const char *const *refs = o->nbase ? o->base : head;
    size_t n = o->nbase ? o->nbase : 1;
    char(*oid)[FZ_WS_OID_MAX] = calloc(n, FZ_WS_OID_MAX);
    if (!oid)
        return fz_errf(err, errlen, "out of memory"), FZ_WS_WORKSPACE;
    for (size_t i = 0; cls == FZ_WS_OK && i < n; i++)
        cls = s_resolve(ws, refs[i], oid[i], err, errlen);
    if (cls == FZ_WS_OK)
        cls = s_room(ws->path, o->min_free ? o->min_free : FZ_WS_MIN_FREE_DEFAULT, err, errlen);
    if (cls == FZ_WS_OK)
        cls = s_live_take(ws, err, errlen);
    if (cls == FZ_WS_OK)
        cls = s_fresh(ws, err, errlen);
    if (cls == FZ_WS_OK)
        cls = s_build(ws, refs, n, oid, err, errlen);
    free(oid);
    if (cls == FZ_WS_OK && !o->nbase && !ws->repo.bare)
        ws->dirty = s_dirty(ws);
    return cls;
}

static fz_ws_err_t s_setup(fz_workspace_t *ws, const fz_ws_opts_t *o, char *err, size_t errlen)
{
    if (!o || !o->cache_dir || !o->repo || !o->task || !o->attempt || (o->nbase && !o->base))
        return fz_errf(err, errlen, "bad workspace options"), FZ_WS_WORKSPACE;
    ws->task = o->task, ws->attempt = o->attempt, ws->keep = o->keep;
    ws->git.timeout_ms =
        (o->git_timeout_s > 0 ? o->git_timeout_s : FZ_WS_GIT_TIMEOUT_DEFAULT) * 1000;
    ws->git.stop = o->stop;
    ws->calm = (git_t){ws->git.timeout_ms, NULL};
    snprintf(ws->branch, sizeof ws->branch, FZ_WS_ATTEMPT_FMT, o->task, o->attempt);
    char def[PATH_MAX];
    snprintf(def, sizeof def, "%.3000s/worktrees/%" PRIu64 "-%" PRIu32, o->cache_dir, o->task,
             o->attempt);
    if (s_abs_path(o->path ? o->path : def, ws->path, sizeof ws->path) < 0)
        return fz_errf(err, errlen, "cannot make the folder of %s: %s", o->path ? o->path : def,
                       strerror(errno)),
               FZ_WS_WORKSPACE;
    return s_repo(o->cache_dir, o->repo, &ws->git, &ws->repo, err, errlen);
}

fz_workspace_t *fz_workspace_open(const fz_ws_opts_t *opts, fz_ws_err_t *cls, char *err,
                                  size_t errlen)
{
    fz_ws_err_t dummy;
    cls = cls ? cls : &dummy;
    fz_workspace_t *ws = calloc(1, sizeof *ws);
    if (!ws)
        return *cls = FZ_WS_WORKSPACE, fz_errf(err, errlen, "out of memory"), NULL;
    ws->live_fd = -1;
    *cls = s_setup(ws, opts, err, errlen);
    int fd = -1;
    if (*cls == FZ_WS_OK && (fd = s_lock(&ws->repo, ws->git.stop)) < 0) {
        fz_errf(err, errlen, "cannot lock %s: %s", ws->repo.lock, strerror(errno));
        *cls = FZ_WS_WORKSPACE;
    }
    if (*cls == FZ_WS_OK)
        *cls = s_open_locked(ws, opts, err, errlen);
    s_unlock(&fd);
    if (*cls != FZ_WS_OK) {
        /* stopped: whatever failed, the reason is the stop (git killed, the lock not had) */
        if (ws->git.stop && atomic_load(ws->git.stop))
            fz_errf(err, errlen, "stopped");
        s_live_end(ws, false);
        free(ws);
        return NULL;
    }
    return ws;
}

/* ---------------------------------------------------------------- sealing and checking */

static void s_parse_shortstat(const char *s, fz_ws_result_t *r)
{
    r->files = r->insertions = r->deletions = 0;
    while (*s) {
        unsigned v = 0;
        int used = 0;
        if (sscanf(s, " %u %n", &v, &used) == 1) {
            const char *word = s + used;
            if (strncmp(word, "file", 4) == 0)
                r->files = v;
            else if (strncmp(word, "insertion", 9) == 0)
                r->insertions = v;
            else if (strncmp(word, "deletion", 8) == 0)
                r->deletions = v;
        }
        const char *comma = strchr(s, ',');
        if (!comma)
            break;
        s = comma + 1;
    }
}

/* Commits what the agent left, if anything. */
static fz_ws_err_t s_commit_left(fz_workspace_t *ws, char *err, size_t errlen)
{
    fz_run_res_t res;
    if (s_git(&ws->calm, ws->path, &res, true, S_ARGS("status", "--porcelain")) < 0)
        return s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot read the worktree's status"),
               fz_run_res_free(&res), FZ_WS_WORKSPACE;
    bool changed = res.out_total > 0;
    fz_run_res_free(&res);
    if (!changed)
        return FZ_WS_OK;
    char msg[256];
    snprintf(msg, sizeof msg,
             "fz: task %" PRIu64 " attempt %" PRIu32 ": what the agent left uncommitted", ws->task,
             ws->attempt);
    if (s_git(&ws->calm, ws->path, &res, true, S_ARGS("add", "-A")) < 0 ||
        (fz_run_res_free(&res),
         s_git(&ws->calm, ws->path, &res, true,
               S_ARGS(S_IDENT, "commit", "--quiet", "--no-verify", "-m", msg)) < 0))
        return s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot commit the agent's changes"),
               fz_run_res_free(&res), FZ_WS_WORKSPACE;
    fz_run_res_free(&res);
    ws->res.committed = true;
    return FZ_WS_OK;
}

/* Head of the worktree; the branch follows it if the agent moved HEAD elsewhere. */
static fz_ws_err_t s_head(fz_workspace_t *ws, char *err, size_t errlen)
{
    char ref[FZ_WS_BRANCH_MAX + 16], bhead[FZ_WS_OID_MAX] = "";
    snprintf(ref, sizeof ref, "refs/heads/%s", ws->branch);
    fz_run_res_t res;
    int rc = s_git(&ws->calm, ws->path, &res, false, S_ARGS("rev-parse", "HEAD", ref));
    bool ok = rc == 0 && s_first_line(res.out, ws->res.head, sizeof ws->res.head);
    const char *nl = strchr(res.out, '\n');
    if (ok && nl)
        s_first_line(nl + 1, bhead, sizeof bhead);
    if (!ok)
        s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot read the head of %s", ws->branch);
    fz_run_res_free(&res);
    if (!ok)
        return FZ_WS_WORKSPACE;
    if (strcmp(bhead, ws->res.head) != 0 &&
        s_git_do(&ws->calm, ws->path, S_ARGS("update-ref", ref, ws->res.head)) < 0)
        return fz_errf(err, errlen, "cannot move %s to %s", ws->branch, ws->res.head),
               FZ_WS_WORKSPACE;
    return FZ_WS_OK;
}

static fz_ws_err_t s_diffstat(fz_workspace_t *ws, char *err, size_t errlen)
{
    fz_run_res_t res;
    int rc = s_git(&ws->calm, ws->path, &res, false,
                   S_ARGS("diff", "--shortstat", ws->base, ws->res.head));
    if (rc == 0)
        s_parse_shortstat(res.out, &ws->res);
    else
        s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot diff %s", ws->branch);
    fz_run_res_free(&res);
    return rc == 0 ? FZ_WS_OK : FZ_WS_WORKSPACE;
}

fz_ws_err_t fz_workspace_seal(fz_workspace_t *self, fz_ws_result_t *out, char *err, size_t errlen)
{
    fz_ws_err_t cls = FZ_WS_OK;
    if (!self->finished) {
        fz_strcopy(self->res.branch, sizeof self->res.branch, self->branch);
        fz_strcopy(self->res.base, sizeof self->res.base, self->base);
        cls = s_commit_left(self, err, errlen);
        if (cls == FZ_WS_OK)
            cls = s_head(self, err, errlen);
        if (cls == FZ_WS_OK)
            cls = s_diffstat(self, err, errlen);
        self->sealed = cls == FZ_WS_OK;
    }
    if (out)
        *out = self->res;
    return cls;
}

/* ---------------------------------------------------------------- finishing */

static fz_ws_err_t s_push(fz_workspace_t *ws, const char *branch, bool force, char *err,
                          size_t errlen)
{
    char spec[2 * FZ_WS_BRANCH_MAX + 32];
    snprintf(spec, sizeof spec, "%srefs/heads/%s:refs/heads/%s", force ? "+" : "", branch, branch);
    fz_run_res_t res;
    int rc =
        s_git(&ws->git, ws->repo.dir, &res, true, S_ARGS("push", "--quiet", ws->repo.url, spec));
    if (rc < 0)
        s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot push %s to %s", branch, ws->repo.url);
    fz_run_res_free(&res);
    return rc == 0 ? FZ_WS_OK : FZ_WS_WORKSPACE;
}

/* Removes the worktree (registration and folder), under the lock. */
static void s_remove(fz_workspace_t *ws)
{
    int fd = s_lock(&ws->repo, NULL);
    if (s_git_do(&ws->calm, ws->repo.dir, S_ARGS("worktree", "remove", "--force", ws->path)) < 0) {
        s_rm_rf(ws->path);
        s_git_do(&ws->calm, ws->repo.dir, S_ARGS("worktree", "prune"));
    }
    s_unlock(&fd);
}

fz_ws_err_t fz_workspace_finish(fz_workspace_t *self, fz_ws_result_t *out, char *err, size_t errlen)
{
    fz_ws_err_t cls = FZ_WS_OK;
    if (!self->finished) {
        cls = self->sealed ? FZ_WS_OK : fz_workspace_seal(self, NULL, err, errlen);
        if (cls == FZ_WS_OK && self->repo.is_url) {
            cls = s_push(self, self->branch, false, err, errlen);
            self->res.pushed = cls == FZ_WS_OK;
        }
        if (!self->keep)
            s_remove(self);
        s_live_end(self, self->keep);
        self->finished = true;
    }
    if (out)
        *out = self->res;
    return cls;
}

void fz_workspace_destroy(fz_workspace_t **self_p)
{
    fz_workspace_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (!self->finished && !self->keep) {
        int fd = s_lock(&self->repo, NULL);
        s_discard(self);
        s_unlock(&fd);
    }
    s_live_end(self, self->keep);
    free(self);
    *self_p = NULL;
}

const char *fz_workspace_path(const fz_workspace_t *self)
{
    return self->path;
}

const char *fz_workspace_branch(const fz_workspace_t *self)
{
    return self->branch;
}

const char *fz_workspace_base(const fz_workspace_t *self)
{
    return self->base;
}

bool fz_workspace_dirty(const fz_workspace_t *self)
{
    return self->dirty;
}

const char *fz_workspace_class_name(fz_ws_err_t cls)
{
    switch (cls) {
    case FZ_WS_OK:
        return "";
    case FZ_WS_MERGE_CONFLICT:
        return fz_class_name(FZ_CLASS_MERGE_CONFLICT);
    default:
        return fz_class_name(FZ_CLASS_WORKSPACE);
    }
}

/* ---------------------------------------------------------------- the task's branch */

static bool s_is_oid(const char *s)
{
    size_t n = strspn(s, "0123456789abcdef");
    return n >= 4 && n < FZ_WS_OID_MAX && s[n] == 0;
}

fz_ws_err_t fz_workspace_promote(const char *cache_dir, const char *repo, uint64_t task,
                                 const char *head, const atomic_bool *stop, char *err,
                                 size_t errlen)
{
    fz_workspace_t ws = {.task = task, .git = {FZ_WS_GIT_TIMEOUT_DEFAULT * 1000, stop}};
    if (!cache_dir || !repo || !task || !head || !s_is_oid(head))
        return fz_errf(err, errlen, "bad arguments to promote"), FZ_WS_WORKSPACE;
    fz_ws_err_t cls = s_repo(cache_dir, repo, &ws.git, &ws.repo, err, errlen);
    if (cls != FZ_WS_OK)
        return cls;
    if (ws.repo.is_url && !s_exists(ws.repo.dir))
        return fz_errf(err, errlen, "no cache of %s here", repo), FZ_WS_WORKSPACE;
    char branch[FZ_WS_BRANCH_MAX];
    snprintf(branch, sizeof branch, FZ_WS_TASK_FMT, task);
    fz_run_res_t res;
    if (s_git(&ws.git, ws.repo.dir, &res, true, S_ARGS("branch", "-f", branch, head)) < 0)
        cls = s_fail(FZ_WS_WORKSPACE, err, errlen, &res, "cannot set %s to %s", branch, head);
    fz_run_res_free(&res);
    if (cls == FZ_WS_OK && ws.repo.is_url)
        cls = s_push(&ws, branch, true, err, errlen);
    return cls;
}
