/*  fz_net: socket setup, sending and receiving; see fz_net.h. */

#include "fz_net.h"

#include "fz_curve.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t s_signal;
static volatile sig_atomic_t s_signals;
static volatile sig_atomic_t s_drain;

static void s_on_drain(int sig)
{
    (void)sig;
    s_drain = 1;
}

static void s_on_signal(int sig)
{
    s_signal = sig;
    s_signals++;
}

void fz_net_init(void)
{
    /* CZMQ would install handlers that make its loops exit on their own terms; the owner of
       the loop decides instead. */
    zsys_handler_set(NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = s_on_drain;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool fz_net_interrupted(void)
{
    return s_signal != 0;
}

void fz_net_interrupt(void)
{
    s_signal = SIGTERM;
    s_signals++;
}

bool fz_net_drain_requested(void)
{
    return s_drain != 0;
}

int fz_net_signal_count(void)
{
    return s_signals;
}

int fz_net_signal(void)
{
    return s_signal;
}

void fz_net_close_bound(zsock_t **sock_p)
{
    if (!sock_p || !*sock_p)
        return;
    char *ep = zsock_last_endpoint(*sock_p);
    if (ep && *ep)
        zsock_unbind(*sock_p, "%s", ep);
    free(ep);
    zsock_destroy(sock_p);
}

zsock_t *fz_net_socket(int type)
{
    zsock_t *sock = zsock_new(type);
    if (!sock)
        return NULL;
    zsock_set_maxmsgsize(sock, FZ_MAX_FRAME); /* PROTOCOL.md section 1: bigger drops the peer */
    zsock_set_rcvhwm(sock, 100000);
    zsock_set_sndhwm(sock, 100000);
    zsock_set_linger(sock, 0);
    if (type == ZMQ_ROUTER)
        zsock_set_router_mandatory(sock, 1);
    /* A client's sockets carry the process's CURVE keys, when it has any (fz_curve.h). */
    if (type == ZMQ_DEALER || type == ZMQ_SUB)
        fz_curve_client_apply(sock);
    return sock;
}

int fz_net_send_to(zsock_t *sock, const void *id, size_t id_len, fz_enc_t **enc_p)
{
    size_t len = 0;
    const void *data = *enc_p ? fz_enc_data(*enc_p, &len) : NULL;
    int rc = -1;
    if (!data) {
        errno = ENOMEM;
        goto done;
    }
    void *raw = zsock_resolve(sock);
    if (id_len && zmq_send(raw, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        goto done;
    if (zmq_send(raw, data, len, ZMQ_DONTWAIT) < 0)
        goto done;
    rc = 0;
done:
    fz_enc_destroy(enc_p);
    return rc;
}

int fz_net_send(zsock_t *sock, zframe_t *routing_id, fz_enc_t **enc_p)
{
    return fz_net_send_to(sock, routing_id ? zframe_data(routing_id) : NULL,
                          routing_id ? zframe_size(routing_id) : 0, enc_p);
}

int fz_net_send_error_to(zsock_t *sock, const void *id, size_t id_len, uint64_t rid, fz_err_t code,
                         fz_reason_t reason, const char *message)
{
    fz_enc_t *e = fz_enc_error(rid, code, reason, message);
    return fz_net_send_to(sock, id, id_len, &e);
}

int fz_net_send_error(zsock_t *sock, zframe_t *routing_id, uint64_t rid, fz_err_t code,
                      fz_reason_t reason, const char *message)
{
    return fz_net_send_error_to(sock, routing_id ? zframe_data(routing_id) : NULL,
                                routing_id ? zframe_size(routing_id) : 0, rid, code, reason,
                                message);
}

/* One message, decoded: flags 0 waits for it, ZMQ_DONTWAIT does not (*got false: none). */
static fz_msg_t *s_take(zsock_t *sock, int flags, bool *got)
{
    void *raw = zsock_resolve(sock);
    zmq_msg_t part;
    zmq_msg_init(&part);
    *got = zmq_msg_recv(&part, raw, flags) >= 0;
    if (!*got) {
        zmq_msg_close(&part);
        return NULL;
    }
    fz_msg_t *msg = NULL;
    if (zmq_msg_more(&part)) {
        /* The rest is there already (messages arrive whole): dropped with the first. */
        size_t frames = 1;
        for (bool more = true; more; frames++) {
            zmq_msg_close(&part);
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, raw, ZMQ_DONTWAIT) < 0)
                break;
            more = zmq_msg_more(&part);
        }
        fz_warn("dropped a message of %zu frames (expected 1)", frames);
    } else {
        char why[256];
        fz_err_t err =
            fz_msg_decode(zmq_msg_data(&part), zmq_msg_size(&part), &msg, NULL, why, sizeof why);
        if (err)
            fz_warn("dropped a bad message (%s): %s", fz_strerror(err), why);
    }
    zmq_msg_close(&part);
    return msg;
}

fz_msg_t *fz_net_recv_msg(zsock_t *sock)
{
    bool got;
    return s_take(sock, 0, &got);
}

fz_msg_t *fz_net_recv_now(zsock_t *sock, bool *got)
{
    return s_take(sock, ZMQ_DONTWAIT, got);
}

int fz_net_wait(void *const *socks, int n, struct pollfd *fds, int nfds, int ms)
{
    int all = nfds;
    for (int i = 0; i < n; i++) {
        if (!socks[i])
            continue;
        /* The events also take in what libzmq's I/O thread announced: a message that came
           since the caller last read is seen here, and the descriptor is armed again. */
        uint32_t events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt(socks[i], ZMQ_EVENTS, &events, &size) < 0)
            return -1;
        if (events & ZMQ_POLLIN)
            return 1;
        int fd = -1;
        size = sizeof fd;
        if (zmq_getsockopt(socks[i], ZMQ_FD, &fd, &size) < 0)
            return -1;
        fds[all++] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    return ms == 0 ? 0 : poll(fds, (nfds_t)all, ms);
}

bool fz_net_ipc_in_use(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) != 0)
        return false;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    const char *path = endpoint + 6;
    if (strlen(path) >= sizeof addr.sun_path)
        return false;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool in_use = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return in_use;
}
