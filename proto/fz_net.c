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

fz_msg_t *fz_net_recv_msg(zsock_t *sock)
{
    zmsg_t *zmsg = zmsg_recv(sock);
    if (!zmsg)
        return NULL;
    fz_msg_t *msg = NULL;
    if (zmsg_size(zmsg) != 1) {
        fz_warn("dropped a message of %zu frames (expected 1)", zmsg_size(zmsg));
    } else {
        zframe_t *f = zmsg_first(zmsg);
        char why[256];
        fz_err_t err = fz_msg_decode(zframe_data(f), zframe_size(f), &msg, NULL, why, sizeof why);
        if (err)
            fz_warn("dropped a bad message (%s): %s", fz_strerror(err), why);
    }
    zmsg_destroy(&zmsg);
    return msg;
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
