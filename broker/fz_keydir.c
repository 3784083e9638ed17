/*  fz_keydir: the folder of known keys and their roles; see fz_keydir.h. */

#include "fz_keydir.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fz_util.h"

struct fz_keydir_t {
    fz_key_t *keys;
    size_t n, cap;
};

static const char *const s_roles[] = {"", "client", "worker", "admin"};
static const char *const s_folders[] = {"", "clients", "workers", "admins"};
_Static_assert(sizeof s_roles / sizeof *s_roles == FZ_ROLE_COUNT, "one name per role");
_Static_assert(sizeof s_folders / sizeof *s_folders == FZ_ROLE_COUNT, "one folder per role");

const char *fz_role_name(fz_role_t role)
{
    return (unsigned)role < FZ_ROLE_COUNT ? s_roles[role] : "";
}

const char *fz_role_folder(fz_role_t role)
{
    return (unsigned)role < FZ_ROLE_COUNT ? s_folders[role] : "";
}

fz_role_t fz_role_of_user(const char *user_id)
{
    const char *colon = user_id ? strchr(user_id, ':') : NULL;
    if (!colon || !fz_keydir_name_ok(colon + 1))
        return FZ_ROLE_NONE;
    for (int r = FZ_ROLE_CLIENT; r < FZ_ROLE_COUNT; r++)
        if ((size_t)(colon - user_id) == strlen(s_roles[r]) &&
            strncmp(user_id, s_roles[r], (size_t)(colon - user_id)) == 0)
            return (fz_role_t)r;
    return FZ_ROLE_NONE;
}

bool fz_keydir_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= FZ_KEY_NAME || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool s_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Adds a key; one already there (another role folder) is refused in both places. */
static int s_add(fz_keydir_t *self, const char *pub, fz_role_t role, const char *name, bool warn)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->keys[i].pub, pub) == 0) {
            if (warn)
                fz_warn("key %s (%s) is also %s in %s: refused in both", name, fz_role_name(role),
                        self->keys[i].name, fz_role_folder(self->keys[i].role));
            self->keys[i].role = FZ_ROLE_NONE;
            return 0;
        }
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        fz_key_t *more = realloc(self->keys, cap * sizeof *more);
        if (!more)
            return -1;
        self->keys = more;
        self->cap = cap;
    }
    fz_key_t *k = &self->keys[self->n++];
    memcpy(k->pub, pub, FZ_CURVE_KEY);
    k->role = role;
    fz_strcopy(k->name, sizeof k->name, name);
    return 0;
}

/* Why a file of a role folder is not a key to load, or NULL: it is one. */
static const char *s_skip_why(const char *path, const char *file)
{
    struct stat st;
    if (file[0] == '.')
        return ""; /* dot files, quietly */
    if (s_ends_with(file, ".key") || s_ends_with(file, "_secret"))
        return "a secret key file: it does not belong in the key folder";
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return "not a regular file";
    return NULL;
}

/* Loads one role folder; a missing folder holds no keys. -1 on no memory; *found: it exists. */
static int s_load_role(fz_keydir_t *self, const char *dir, fz_role_t role, bool warn, bool *found)
{
    char folder[4200];
    snprintf(folder, sizeof folder, "%s/%s", dir, fz_role_folder(role));
    DIR *d = opendir(folder);
    if (!d)
        return 0;
    *found = true;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        char path[4500], name[256], pub[FZ_CURVE_KEY], why[4600];
        snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
        const char *skip = s_skip_why(path, e->d_name);
        fz_strcopy(name, sizeof name, e->d_name);
        if (s_ends_with(name, ".pub"))
            name[strlen(name) - 4] = 0;
        if (!skip && !fz_keydir_name_ok(name))
            skip = "its name is not 1..64 characters of A-Z a-z 0-9 . _ -";
        if (!skip && fz_curve_load_public(path, pub, why, sizeof why) != 0)
            skip = why;
        if (skip) {
            if (warn && *skip)
                fz_warn("key folder: skipped %s: %s", path, skip);
            continue;
        }
        rc = s_add(self, pub, role, name, warn);
    }
    closedir(d);
    return rc;
}

fz_keydir_t *fz_keydir_load(const char *dir, bool warn, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fz_errf(err, errlen, "--keys %s: %s", dir,
                stat(dir, &st) != 0 ? strerror(errno) : "not a folder");
        return NULL;
    }
    fz_keydir_t *self = calloc(1, sizeof *self);
    if (!self) {
        fz_errf(err, errlen, "out of memory");
        return NULL;
    }
    bool found = false;
    for (int r = FZ_ROLE_CLIENT; r < FZ_ROLE_COUNT; r++)
        if (s_load_role(self, dir, (fz_role_t)r, warn, &found)) {
            fz_errf(err, errlen, "out of memory");
            fz_keydir_destroy(&self);
            return NULL;
        }
    if (!found) {
        fz_errf(err, errlen, "%s holds none of clients/, workers/, admins/", dir);
        fz_keydir_destroy(&self);
    }
    return self;
}

/* FNV-1a over bytes. */
static uint64_t s_fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static uint64_t s_fnv_stat(uint64_t h, const struct stat *st, double *newest)
{
    int64_t v[4] = {(int64_t)st->st_ino, (int64_t)st->st_size, (int64_t)st->st_mtim.tv_sec,
                    (int64_t)st->st_mtim.tv_nsec};
    double t = (double)st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9;
    double c = (double)st->st_ctim.tv_sec + st->st_ctim.tv_nsec / 1e9;
    if (t > *newest)
        *newest = t;
    if (c > *newest)
        *newest = c;
    return s_fnv(h, v, sizeof v);
}

uint64_t fz_keydir_fingerprint(const char *dir, double *newest)
{
    uint64_t h = 14695981039346656037u;
    *newest = 0;
    for (int r = FZ_ROLE_CLIENT; r < FZ_ROLE_COUNT; r++) {
        char folder[4200], path[4500];
        struct stat st;
        snprintf(folder, sizeof folder, "%s/%s", dir, fz_role_folder((fz_role_t)r));
        h = s_fnv(h, &r, sizeof r);
        if (stat(folder, &st) != 0)
            continue;
        h = s_fnv_stat(h, &st, newest);
        DIR *d = opendir(folder);
        for (struct dirent *e; d && (e = readdir(d));) {
            snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
            h = s_fnv(h, e->d_name, strlen(e->d_name) + 1);
            if (stat(path, &st) == 0)
                h = s_fnv_stat(h, &st, newest);
        }
        if (d)
            closedir(d);
    }
    return h;
}

void fz_keydir_destroy(fz_keydir_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->keys);
    free(*self_p);
    *self_p = NULL;
}

size_t fz_keydir_size(const fz_keydir_t *self)
{
    return self->n;
}

const fz_key_t *fz_keydir_find(const fz_keydir_t *self, const char *pub)
{
    for (size_t i = 0; self && pub && i < self->n; i++)
        if (strcmp(self->keys[i].pub, pub) == 0)
            return &self->keys[i];
    return NULL;
}
