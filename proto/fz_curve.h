/*  fz_curve: CURVE key files and the socket setup of both sides.

    Owns: reading and writing key files in CZMQ's zcert format (what zcert_save_public and
    zcert_save_secret write, what zcert_load and pyzmq's zmq.auth.load_certificate read: a
    ZPL file with `curve / public-key = "Z85"` and, in a secret file, `secret-key`), with
    every key checked to be 40 characters of valid Z85; `fz-ctl keygen`; and applying keys to
    sockets: a CURVE server (the broker's ROUTER and PUB) or a CURVE client.

    The client side is process-wide: fz_curve_client_setup (once, from a tool's flags or
    FZ_CURVE_SECRET / FZ_BROKER_KEY) loads the keys, and fz_net_socket applies them to every
    DEALER and SUB it makes, so each tool's connection code stays as it is. Without setup
    nothing is applied: loopback and ipc without keys stay the zero-config default. */

#ifndef FZ_CURVE_H
#define FZ_CURVE_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

#define FZ_CURVE_KEY 41 /* a Z85 key and its NUL */

/* Reads the public key of a zcert file (public or secret) into pub. 0, or -1 with err
   saying why (missing, unreadable, no curve/public-key, not 40 characters of Z85). */
int fz_curve_load_public(const char *path, char pub[FZ_CURVE_KEY], char *err, size_t errlen);
/* Reads a secret zcert file: both keys. -1 with err when either is missing or invalid. */
int fz_curve_load_secret(const char *path, char pub[FZ_CURVE_KEY], char sec[FZ_CURVE_KEY],
                         char *err, size_t errlen);

/* Writes a new key pair: NAME.key (secret, mode 0600) and NAME.pub (public), where NAME is a
   path without the suffix. Refuses to replace either file. 0, or -1 with err. */
int fz_curve_keygen(const char *name, char *err, size_t errlen);

/* Makes sock a CURVE server with these keys, in ZAP domain `domain`. Call before bind, and
   only once a ZAP handler is bound (libzmq lets every client key in when none is). */
void fz_curve_server(zsock_t *sock, const char *pub, const char *sec, const char *domain);

/* The client keys of this process: from the flags, else FZ_CURVE_SECRET and FZ_BROKER_KEY.
   Neither given: CURVE stays off (returns 0). One without the other, or a key file that
   cannot be read, is an error: -1 with err naming the flag or variable. */
int fz_curve_client_setup(const char *secret_flag, const char *broker_key_flag, char *err,
                          size_t errlen);
/* The same from the command line: takes --curve-secret FILE and --broker-key FILE (also
   --flag=FILE) out of argv (before any "--"), then calls fz_curve_client_setup, so a tool's
   own option parser never sees them. 0, or -1 with err. */
int fz_curve_client_args(int *argc, char **argv, char *err, size_t errlen);
/* True once fz_curve_client_setup loaded keys. */
bool fz_curve_client_on(void);
/* The absolute path of the broker's public key file that setup read, or NULL with CURVE
   off (fz-worker hands it to its agents with --agent-key). */
const char *fz_curve_client_broker_key(void);
/* Makes sock a CURVE client of the broker when keys were set up; nothing otherwise. */
void fz_curve_client_apply(zsock_t *sock);
/* Forgets the client keys (tests). */
void fz_curve_client_reset(void);

#endif
