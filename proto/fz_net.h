/*  fz_net: ZeroMQ plumbing shared by every fz binary.

    - fz_net_init: takes signal handling back from CZMQ (SIGINT/SIGTERM set a flag that
      fz_net_interrupted() reads; the caller's poll loop ends on it; SIGUSR1 asks to drain)
      and ignores SIGPIPE;
    - fz_net_socket: a CZMQ socket with the limits every peer-facing socket needs
      (ZMQ_MAXMSGSIZE, HWMs, no linger), set before bind/connect; a DEALER or SUB also gets
      the process's CURVE client keys when fz_curve_client_setup loaded some;
    - fz_net_send: one encoded message, never blocking, optionally behind a routing id;
    - fz_net_recv_msg: one message from a DEALER, decoded; NULL on garbage (logged);
      fz_net_recv_now the same without blocking, for loops that read until nothing is left;
    - fz_net_wait: sleeps on sockets and descriptors with two system calls where zmq_poll
      makes four (and libzmq a getpid with each).

    Sockets belong to the caller; encoders passed by `**` are destroyed on return. */

#ifndef FZ_NET_H
#define FZ_NET_H

#include <czmq.h>
#include <poll.h>
#include <stdbool.h>

#include "fz_msg.h"

/* Call once at start, before any socket exists. */
void fz_net_init(void);
/* True once SIGINT or SIGTERM arrived. */
bool fz_net_interrupted(void);
/* Sets the flag, as a signal would (for tests and for in-process stop requests). */
void fz_net_interrupt(void);
/* True once SIGUSR1 arrived: finish the work at hand, take no more, then leave. */
bool fz_net_drain_requested(void);
/* How many SIGINT/SIGTERM arrived (a second one may mean "now"). */
int fz_net_signal_count(void);
/* The signal that set the flag (0 if none). */
int fz_net_signal(void);

/* New socket of ZMQ_ROUTER/DEALER/PUB/SUB with fz's limits set; NULL on failure. */
zsock_t *fz_net_socket(int type);

/* Destroys a socket that bound an endpoint, unbinding it first: libzmq frees an inproc name
   only when its reaper thread gets to the closed socket, so a socket made again at once in
   the same process on that name (a broker restarted in a test) could find it taken. */
void fz_net_close_bound(zsock_t **sock_p);

/* Sends *enc_p (destroyed in all cases), preceded by routing_id when not NULL. Never blocks:
   returns 0, or -1 with errno EAGAIN (peer full) or EHOSTUNREACH (peer gone). */
int fz_net_send(zsock_t *sock, zframe_t *routing_id, fz_enc_t **enc_p);

/* The same, behind the routing id's bytes (id_len 0: none). */
int fz_net_send_to(zsock_t *sock, const void *id, size_t id_len, fz_enc_t **enc_p);

/* Sends error{code,message} in reply to rid. */
int fz_net_send_error(zsock_t *sock, zframe_t *routing_id, uint64_t rid, fz_err_t code,
                      fz_reason_t reason, const char *message);
/* The same, behind the routing id's bytes. */
int fz_net_send_error_to(zsock_t *sock, const void *id, size_t id_len, uint64_t rid, fz_err_t code,
                         fz_reason_t reason, const char *message);

/* One message from a DEALER, decoded, without blocking. Sets *got when a message was taken
   (NULL then means garbage, logged); *got false: none was waiting. */
fz_msg_t *fz_net_recv_now(zsock_t *sock, bool *got);

/* Waits until one of the n zmq sockets socks (raw, NULL entries skipped) may have a message,
   or one of the nfds descriptors of fds is ready, at most ms (-1: no limit). fds needs room
   for n more entries, which this fills with the sockets' descriptors. Returns 1 without
   sleeping when a socket has a message now, else poll's result (0: timeout; revents of
   fds[0 .. nfds) tell which descriptor), -1 on an error (errno). A socket's descriptor only
   wakes on a change of its state: read each socket until nothing is left before waiting. */
int fz_net_wait(void *const *socks, int n, struct pollfd *fds, int nfds, int ms);

/* True if an ipc:// endpoint has a live listener. (Binding an ipc endpoint replaces the
   socket file silently, so a second server would steal the first one's clients.) */
bool fz_net_ipc_in_use(const char *endpoint);

/* Receives one single-frame message (DEALER side) and decodes it. Returns NULL on a
   malformed or invalid message (logged with why) or on interrupt. */
fz_msg_t *fz_net_recv_msg(zsock_t *sock);

#endif
