/*  fz_spare: task folders made ahead and renamed into place; see fz_spare.h. */

#include "fz_spare.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_NAME_MAX 48
#define S_FILL_TRIES 8 /* names tried per fill when some are taken (another process's) */

struct fz_spare_t {
    int root_fd; /* every call is relative to it: no walk of the root's path per call */
    pid_t pid;
    unsigned next; /* number of the next spare's name */
    char ready[FZ_SPARE_KEEP][S_NAME_MAX];
    int nready;
    bool refused; /* the folder refused a spare or a rename: spares are off */
    mode_t mode;  /* what mkdir gave the first spare (0777 less the umask); 0 until then */
};

bool fz_spare_name(pid_t pid, unsigned n, char *buf, size_t size)
{
    int len = snprintf(buf, size, FZ_SPARE_PREFIX "%ld-%u", (long)pid, n);
    return len > 0 && (size_t)len < size;
}

/* Digits in [p, ...) up to a non-digit: their value (capped), *end past them; -1 if none. */
static long s_digits(const char *p, const char **end)
{
    long v = 0;
    const char *q = p;
    for (; *q >= '0' && *q <= '9'; q++)
        if (v < 1000000000L)
            v = v * 10 + (*q - '0');
    *end = q;
    return q == p ? -1 : v;
}

pid_t fz_spare_owner(const char *name)
{
    size_t plen = strlen(FZ_SPARE_PREFIX);
    if (strncmp(name, FZ_SPARE_PREFIX, plen) != 0)
        return 0;
    const char *p;
    long pid = s_digits(name + plen, &p);
    if (pid <= 0 || pid >= 1000000000L || *p != '-' || s_digits(p + 1, &p) < 0 || *p)
        return 0;
    return (pid_t)pid;
}

/* Empty spares whose maker is gone (a killed worker's) go; a live maker's stay, and rmdir
   leaves a spare that is not empty. */
static void s_remove_leftovers(fz_spare_t *self)
{
    int fd = dup(self->root_fd);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir))) {
        pid_t owner = fz_spare_owner(e->d_name);
        if (owner > 0 && owner != self->pid && kill(owner, 0) < 0 && errno == ESRCH)
            unlinkat(self->root_fd, e->d_name, AT_REMOVEDIR);
    }
    closedir(dir);
}

fz_spare_t *fz_spare_new(const char *root)
{
    fz_spare_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->root_fd < 0) {
        free(self);
        return NULL;
    }
    self->pid = getpid();
    s_remove_leftovers(self);
    return self;
}

void fz_spare_destroy(fz_spare_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_spare_t *self = *self_p;
    for (int i = 0; i < self->nready; i++)
        unlinkat(self->root_fd, self->ready[i], AT_REMOVEDIR);
    close(self->root_fd);
    free(self);
    *self_p = NULL;
}

bool fz_spare_take(fz_spare_t *self, const char *name)
{
    while (self && self->nready > 0) {
        const char *spare = self->ready[self->nready - 1];
        if (renameat2(self->root_fd, spare, self->root_fd, name, RENAME_NOREPLACE) == 0) {
            self->nready--;
            return true;
        }
        if (errno == EEXIST)
            return false; /* the task's folder is there (an earlier attempt): keep the spare */
        if (errno == ENOENT) {
            self->nready--; /* the spare is gone (removed by someone): the next one */
            continue;
        }
        self->refused = true; /* e.g. EINVAL: no RENAME_NOREPLACE on this file system */
        return false;
    }
    return false;
}

/* Whether the folder open at fd has no entry but . and .. */
static bool s_empty(int fd)
{
    char buf[512];
    ssize_t n;
    while ((n = getdents64(fd, buf, sizeof buf)) > 0)
        for (ssize_t off = 0; off < n;) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + off);
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                return false;
            off += e->d_reclen;
        }
    return n == 0;
}

bool fz_spare_give_back(fz_spare_t *self, const char *name)
{
    if (!self || self->refused)
        return false;
    int fd = openat(self->root_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool empty = fstat(fd, &st) == 0 && s_empty(fd);
    close(fd);
    if (!empty)
        return false;
    /* Nothing of the attempt runs any more: the folder stays empty until it is used again. */
    bool as_made = self->mode && (st.st_mode & 07777) == self->mode && st.st_uid == geteuid();
    if (as_made && self->nready < FZ_SPARE_KEEP) {
        char *slot = self->ready[self->nready];
        if (fz_spare_name(self->pid, self->next++, slot, S_NAME_MAX) &&
            renameat2(self->root_fd, name, self->root_fd, slot, RENAME_NOREPLACE) == 0) {
            self->nready++;
            return true;
        }
    }
    return unlinkat(self->root_fd, name, AT_REMOVEDIR) == 0;
}

int fz_spare_fill(fz_spare_t *self)
{
    int made = 0;
    for (int tries = 0;
         self && !self->refused && self->nready < FZ_SPARE_KEEP && tries < S_FILL_TRIES; tries++) {
        char *slot = self->ready[self->nready];
        if (!fz_spare_name(self->pid, self->next++, slot, S_NAME_MAX)) {
            self->refused = true;
            break;
        }
        if (mkdirat(self->root_fd, slot, 0777) == 0) {
            struct stat st; /* once: the mode a folder taken back must still have */
            if (!self->mode && fstatat(self->root_fd, slot, &st, AT_SYMLINK_NOFOLLOW) == 0)
                self->mode = st.st_mode & 07777;
            self->nready++;
            made++;
        } else if (errno != EEXIST)
            self->refused = true; /* no room, no permission: the attempts make their own */
    }
    return made;
}

int fz_spare_ready(const fz_spare_t *self)
{
    return self ? self->nready : 0;
}
