/*  fz_auth: who may connect to the broker, and what each role may ask.

    Owns:
    - the ZAP handler (RFC 27) of the broker's CURVE sockets: a REP socket on
      inproc://zeromq.zap.01 that the broker's own loop polls (no thread). For each handshake
      it looks at the key folder again (fz_keydir: a fingerprint of its files, a new load when
      it changed), so a key removed from DIR is refused on its next connection without a
      restart; it accepts a known key with the user id
      "ROLE:NAME" ("client:alice"), which libzmq then attaches to every message of that
      connection (zmq_msg_gets "User-Id"). Unknown keys, keys refused by the folder and every
      mechanism but CURVE are refused. The event stream (ZAP domain "fz-events") admits
      clients and admins only.
    - the permission table: a pure function of role x request type (x whether the task named
      is the asker's own) -> allowed.

    Why not CZMQ's zauth: it runs its own thread, sets the user id to the client's key and
    takes its keys from one folder; giving each key a role from its folder needs
    zcertstore_set_loader, a draft API that Debian's libczmq 4.2.1 does not export. Keys are
    still zcert files (fz_curve), read the way zcert_load reads them. */

#ifndef FZ_AUTH_H
#define FZ_AUTH_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "fz_keydir.h"

#define FZ_AUTH_DOMAIN "fz"               /* the ROUTER's ZAP domain */
#define FZ_AUTH_DOMAIN_EVENTS "fz-events" /* the PUB's */
#define FZ_AUTH_USER 80                   /* "role:name" and its NUL */

/* What a role may do with a request type. */
typedef enum {
    FZ_AUTH_DENY,
    FZ_AUTH_ALLOW,
    FZ_AUTH_OWN /* only on a task the asker submitted */
} fz_auth_rule_t;

/* The rule for role and request type. A `budget` request that sets the cap is asked as
   "budget.set". A type the table does not list is for admins only, so a request added
   later is closed until someone opens it. */
fz_auth_rule_t fz_auth_rule(fz_role_t role, const char *type);
/* True if role may send type, own: the task it names was submitted by the asker. */
bool fz_auth_allowed(fz_role_t role, const char *type, bool own);

typedef struct fz_auth_t fz_auth_t;

/* Loads the key folder (to refuse a bad one at start) and binds the ZAP handler. Call before
   any CURVE server socket binds. NULL with err (the folder, or the handler's endpoint is
   taken: one secure broker per process). */
fz_auth_t *fz_auth_new(const char *keydir, char *err, size_t errlen);
void fz_auth_destroy(fz_auth_t **self_p);

/* The handler's socket, for the caller's poll. */
void *fz_auth_socket(fz_auth_t *self);
/* Answers every ZAP request waiting, without blocking. */
void fz_auth_serve(fz_auth_t *self);
/* Handshakes accepted and refused so far. */
uint64_t fz_auth_accepted(const fz_auth_t *self);
uint64_t fz_auth_refused(const fz_auth_t *self);

#endif
