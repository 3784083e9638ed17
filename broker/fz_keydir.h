/*  fz_keydir: the broker's folder of known public keys, and the role each key has.

    Owns: reading DIR/clients/, DIR/workers/ and DIR/admins/ (a key's role is the folder it
    is in), the names of keys (the file name without `.pub`), and the role names. Each file
    is a public key in CZMQ's zcert format (fz_curve_load_public). Skipped, with a warning
    when asked: dot files, `*.key` and `*_secret` files (secret keys do not belong there),
    anything that is not a regular file, names outside [A-Za-z0-9._-] or longer than 64
    bytes, files that are not valid keys. A key found in two role folders is refused in both
    (a mistake should not grant the larger role).

    A loaded folder is a snapshot: for every handshake the broker compares the folder's
    fingerprint with the snapshot's and loads it again when it changed (fz_auth), so a key
    removed from DIR is refused on its next connection. Lookups are linear: fine for
    the hundreds of keys a factory has. No I/O but fz_keydir_load. */

#ifndef FZ_KEYDIR_H
#define FZ_KEYDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_curve.h"

typedef enum {
    FZ_ROLE_NONE,   /* not a known key (or refused) */
    FZ_ROLE_CLIENT, /* submits, reads, steers its own tasks */
    FZ_ROLE_WORKER, /* says hello and runs tasks */
    FZ_ROLE_ADMIN,  /* everything */
    FZ_ROLE_COUNT
} fz_role_t;

#define FZ_KEY_NAME 65 /* a key's name and its NUL */

typedef struct {
    char pub[FZ_CURVE_KEY]; /* Z85 */
    fz_role_t role;
    char name[FZ_KEY_NAME];
} fz_key_t;

typedef struct fz_keydir_t fz_keydir_t;

/* Loads DIR. NULL with err when DIR cannot be read or holds none of the three role folders
   (a typo in --keys must not start a broker that refuses everyone silently). warn: log each
   file skipped and why. */
fz_keydir_t *fz_keydir_load(const char *dir, bool warn, char *err, size_t errlen);
void fz_keydir_destroy(fz_keydir_t **self_p);

/* A fingerprint of what DIR holds, cheap next to a load (a stat per file, no parsing): the
   role folders and every file's name, inode, size and modification time. Equal fingerprints
   mean nothing changed, unless a change came within the timestamps' granularity of the
   last load: *newest gets the latest modification time seen (unix seconds), so the caller
   can refuse to trust a fingerprint taken too soon after it. */
uint64_t fz_keydir_fingerprint(const char *dir, double *newest);

/* How many keys it holds (refused ones included). */
size_t fz_keydir_size(const fz_keydir_t *self);
/* The entry of a Z85 public key, or NULL: unknown. A refused key has role FZ_ROLE_NONE. */
const fz_key_t *fz_keydir_find(const fz_keydir_t *self, const char *pub);

/* "client", "worker", "admin"; "" for none. */
const char *fz_role_name(fz_role_t role);
/* The folder of a role: "clients", "workers", "admins"; "" for none. */
const char *fz_role_folder(fz_role_t role);
/* The role of a ZAP user id "role:name" (as fz_auth sets it); FZ_ROLE_NONE if malformed. */
fz_role_t fz_role_of_user(const char *user_id);
/* True if name may name a key: 1..64 bytes of [A-Za-z0-9._-], not starting with '.'. */
bool fz_keydir_name_ok(const char *name);

#endif
