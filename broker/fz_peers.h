/*  fz_peers: a bound on the broker's connections, kept where libzmq accepts them.

    libzmq 4.3.4 accepts every connection its listeners see, and on EMFILE its ipc listener
    aborts the process (errno_assert in ipc_listener.cpp: EMFILE is not in its list) while
    its tcp listener spins without accepting. There is no socket option that bounds the
    connections of a ZeroMQ socket, and a connection cannot be closed from outside (closing
    its descriptor under libzmq crashes it). So this module defines accept4, accept and close
    in the fz-broker executable itself, ahead of libc (the dynamic linker binds libzmq's calls
    to the executable's definitions), and counts the descriptors accept returned until they
    are closed:
    - past the configured maximum, a new connection is accepted and closed at once (the
      peer sees its connection closed and reconnects later, as ZeroMQ peers do), and libzmq
      is told ECONNABORTED, which both its listeners take in their stride;
    - at EMFILE (descriptors used up by something else), a spare descriptor kept open for
      this is closed, the pending connection accepted and closed, the spare reopened, and
      libzmq again told ECONNABORTED: no abort, no spin.

    Only fz-broker links this file (the broker library and its tests do not); before
    fz_peers_init the definitions pass every call straight to the kernel. Thread-safe: the
    counts are atomics, accept runs on libzmq's I/O thread, close anywhere. */

#ifndef FZ_PEERS_H
#define FZ_PEERS_H

#include <stdint.h>

/* Bounds the connections of this process at max_peers (clamped to what nofile, the
   open-files limit, leaves after FZ_PEERS_SPARE descriptors). Returns the bound in force. */
#define FZ_PEERS_SPARE 64
long fz_peers_init(long max_peers, long nofile);
/* The default bound for an open-files limit: nofile - FZ_PEERS_SPARE (at least 16). */
long fz_peers_default(long nofile);
/* Connections open now, and refused so far. */
long fz_peers_live(void);
uint64_t fz_peers_refused(void);

#endif
