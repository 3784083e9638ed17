/*  fz_client: request/reply client of the broker; see fz_client.h. */

#include "fz_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_curve.h"
#include "fz_net.h"

struct fz_client_t {
    char *endpoint;
    int timeout_ms;
    zsock_t *sock;      /* DEALER; rebuilt after a timeout */
    uint64_t rid;       /* of the latest request */
    fz_reason_t reason; /* of the latest error reply */
    int64_t index;      /* its batch index, or -1 */
    bool no_reply;      /* the latest call timed out ... */
    bool landed;        /* ... on a socket that had reached a broker: it may have landed */
    zsock_t *monitor;   /* PAIR: the DEALER's connection events */
    bool reached;       /* the current DEALER has connected to a broker */
    /* The latest handshake failed (the ZMQ_EVENT_HANDSHAKE_FAILED_* event and its value),
       until one succeeds: nothing sent on that connection reached the broker. */
    int refused_event;
    uint32_t refused_value;
    int closed; /* handshakes in a row the broker closed without a word (NO_DETAIL) */
};

/* A broker that closes this many handshakes in a row (libzmq reconnects every 100 ms) is
   refusing this client, not restarting: by mechanism or key mismatch when the client reads
   the broker's greeting too late to tell which, or at its --max-peers. */
#define S_CLOSED_IN_A_ROW 3

#define S_HANDSHAKE_FAILED                                                                         \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

/* A connected DEALER, or NULL if the endpoint is not valid. Its connection events go to
   self->monitor: a request on a socket that never reached a broker cannot have landed. */
static zsock_t *s_connect(fz_client_t *self)
{
    static unsigned serial;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://fz-client-monitor-%d-%u", (int)getpid(), ++serial);
    zsock_t *sock = fz_net_socket(ZMQ_DEALER);
    zsock_destroy(&self->monitor);
    self->reached = false;
    self->refused_event = 0;
    self->closed = 0;
    if (sock && zmq_socket_monitor(zsock_resolve(sock), ep,
                                   ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                       S_HANDSHAKE_FAILED) == 0)
        self->monitor = zsock_new_pair(ep);
    if (sock && zsock_connect(sock, "%s", self->endpoint) != 0)
        zsock_destroy(&sock);
    return sock;
}

/* Reads the connection events queued so far. An event is two frames: 2 bytes of event and 4
   of value, then the endpoint. */
static void s_events(fz_client_t *self)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    while (zmq_msg_recv(&part, zsock_resolve(self->monitor), ZMQ_DONTWAIT) >= 0) {
        if (zmq_msg_size(&part) != 6 || !zmq_msg_more(&part))
            continue; /* the endpoint frame */
        uint16_t event;
        uint32_t value;
        memcpy(&event, zmq_msg_data(&part), 2);
        memcpy(&value, (char *)zmq_msg_data(&part) + 2, 4);
        if (event & S_HANDSHAKE_FAILED) {
            self->refused_event = event;
            self->refused_value = value;
            self->closed = event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ? self->closed + 1 : 0;
        } else {
            self->reached = true;
            if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
                self->refused_event = self->closed = 0;
        }
    }
    zmq_msg_close(&part);
}

/* Has the socket reached a broker, so that a request may have landed? (No monitor: assume
   it has, so that a lost reply is never taken for a request that did not land.) */
static bool s_reached(fz_client_t *self)
{
    if (!self->monitor)
        return true;
    s_events(self);
    return self->reached && !self->refused_event;
}

/* A refusal the broker made on purpose (ZAP said no, or the mechanisms or keys do not match)
   will not change by waiting. One connection closed without a word may be a broker going
   down; several in a row are a refusal too. */
static bool s_is_refused(const fz_client_t *self)
{
    return self->refused_event && (self->refused_event != ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                                   self->closed >= S_CLOSED_IN_A_ROW);
}

/* Says why the broker would not let this connection in, from the handshake's failure. */
static void s_refusal(const fz_client_t *self, char *errbuf, size_t errlen)
{
    const char *ep = self->endpoint;
    uint32_t v = self->refused_value;
    if (self->refused_event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        snprintf(errbuf, errlen,
                 "the broker at %s refused this key (it is not in the broker's key folder, or "
                 "was removed from it)",
                 ep);
    else if (v == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH && fz_curve_client_on())
        snprintf(errbuf, errlen,
                 "the broker at %s does not use CURVE keys, and this tool was given some "
                 "(--curve-secret/--broker-key or FZ_CURVE_SECRET/FZ_BROKER_KEY)",
                 ep);
    else if (v == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        snprintf(errbuf, errlen,
                 "the broker at %s requires CURVE keys: give --curve-secret FILE and "
                 "--broker-key FILE (or FZ_CURVE_SECRET and FZ_BROKER_KEY)",
                 ep);
    else if (v == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        snprintf(errbuf, errlen,
                 "the CURVE handshake with the broker at %s failed: is --broker-key "
                 "(FZ_BROKER_KEY) that broker's public key?",
                 ep);
    else if (self->refused_event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        snprintf(errbuf, errlen,
                 "the broker at %s closed %d connection(s) in a row during the handshake (%s)", ep,
                 self->closed,
                 fz_curve_client_on()
                     ? "is --broker-key (FZ_BROKER_KEY) that broker's public key? or it is at its "
                       "--max-peers"
                     : "does it require CURVE keys, --curve-secret and --broker-key? or it is at "
                       "its --max-peers");
    else
        snprintf(errbuf, errlen, "the handshake with the broker at %s failed (event 0x%x, 0x%x)",
                 ep, (unsigned)self->refused_event, (unsigned)v);
}

fz_client_t *fz_client_new(const char *endpoint, int timeout_ms)
{
    fz_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint = strdup(endpoint);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    self->index = -1;
    self->sock = self->endpoint ? s_connect(self) : NULL;
    if (!self->sock) {
        fz_client_destroy(&self);
        return NULL;
    }
    return self;
}

void fz_client_destroy(fz_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_client_t *self = *self_p;
    if (self->sock && self->monitor) /* no event may wait for a reader that is gone */
        zmq_socket_monitor(zsock_resolve(self->sock), NULL, 0);
    zsock_destroy(&self->sock);
    zsock_destroy(&self->monitor);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

const char *fz_client_endpoint(const fz_client_t *self)
{
    return self->endpoint;
}

uint64_t fz_client_next_rid(fz_client_t *self)
{
    return ++self->rid;
}

fz_enc_t *fz_client_request(fz_client_t *self, const char *type)
{
    return fz_enc_new(type, fz_client_next_rid(self));
}

/* Reply outcomes while waiting: ours, not ours (keep waiting), or ours but unusable. */
typedef enum { S_MINE, S_STALE, S_BAD } s_match_t;

/* Turns an error reply into its code and message. A `version` error is final for us: we
   speak one version and sent it, so there is no lower one to retry with (PROTOCOL.md §3). */
static fz_err_t s_error_reply(fz_client_t *self, fz_msg_t *reply, char *errbuf, size_t errlen)
{
    self->reason = fz_reason_from_name(fz_msg_str(reply, "reason", "", NULL));
    self->index = fz_msg_has(reply, "index") ? (int64_t)fz_msg_uint(reply, "index", 0) : -1;
    fz_err_t err = fz_err_from_name(fz_msg_str(reply, "code", "internal", NULL));
    const char *message = fz_msg_str(reply, "message", "", NULL);
    if (err == FZ_OK)
        err = FZ_EINTERNAL; /* an error reply must not mean success */
    if (err != FZ_EVERSION) {
        snprintf(errbuf, errlen, "%s", *message ? message : fz_strerror(err));
        return err;
    }
    char list[128] = "";
    const msgpack_object *sup = fz_msg_obj(reply, "supported");
    for (uint32_t i = 0; sup && sup->type == MSGPACK_OBJECT_ARRAY && i < sup->via.array.size; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%llu", i ? ", " : "",
                 (unsigned long long)sup->via.array.ptr[i].via.u64);
    }
    snprintf(errbuf, errlen, "the broker does not speak protocol version %d (it speaks %s)",
             FZ_PROTOCOL_VERSION, *list ? list : "no version it named");
    return FZ_EVERSION;
}

/* Reads one message and says whether it answers request rid. */
static s_match_t s_receive(fz_client_t *self, fz_msg_t **reply_p, fz_err_t *err_p, char *errbuf,
                           size_t errlen)
{
    zmsg_t *zmsg = zmsg_recv(self->sock);
    if (!zmsg)
        return S_STALE;
    if (zmsg_size(zmsg) != 1) {
        zmsg_destroy(&zmsg);
        return S_STALE; /* the broker never sends these; not a reply to anything */
    }
    zframe_t *frame = zmsg_first(zmsg);
    char why[256];
    uint64_t rid = 0;
    fz_msg_t *reply = NULL;
    fz_err_t err =
        fz_msg_decode(zframe_data(frame), zframe_size(frame), &reply, &rid, why, sizeof why);
    zmsg_destroy(&zmsg);
    if (err) {
        if (rid != self->rid)
            return S_STALE;
        /* Whatever the codec calls it, a reply we cannot read is the broker's protocol
           error, not a problem with the user's input. */
        *err_p = err == FZ_EVERSION ? FZ_EVERSION : FZ_EMALFORMED;
        snprintf(errbuf, errlen, "the broker sent a reply this tool cannot read: %s", why);
        return S_BAD;
    }
    /* An error without rid answers a request whose rid the broker could not read: ours. */
    bool rid_less_error = !fz_msg_has(reply, "rid") && fz_msg_is(reply, "error");
    if (fz_msg_rid(reply) != self->rid && !rid_less_error) {
        fz_msg_destroy(&reply);
        return S_STALE;
    }
    if (fz_msg_is(reply, "error")) {
        *err_p = s_error_reply(self, reply, errbuf, errlen);
        fz_msg_destroy(&reply);
        return S_BAD;
    }
    *reply_p = reply;
    return S_MINE;
}

/* A fresh socket drops the request still queued for an absent or refusing broker, so it
   cannot be delivered later, behind the caller's back. */
static void s_reconnect(fz_client_t *self)
{
    if (self->sock && self->monitor)
        zmq_socket_monitor(zsock_resolve(self->sock), NULL, 0);
    zsock_destroy(&self->sock);
    self->sock = s_connect(self);
}

static fz_err_t s_no_reply(fz_client_t *self, char *errbuf, size_t errlen)
{
    if (fz_net_interrupted()) {
        snprintf(errbuf, errlen, "interrupted");
        return FZ_EUNAVAILABLE;
    }
    self->no_reply = true;
    self->landed = s_reached(self);
    if (self->refused_event)
        s_refusal(self, errbuf, errlen);
    else
        snprintf(errbuf, errlen, "no reply from broker at %s within %g s — is fz-broker running?",
                 self->endpoint, self->timeout_ms / 1000.0);
    s_reconnect(self);
    return FZ_EUNAVAILABLE;
}

/* The broker will not let this connection in (its handshake failed): the request did not
   land, and waiting longer changes nothing. A fresh socket drops the queued request. */
static fz_err_t s_refused(fz_client_t *self, char *errbuf, size_t errlen)
{
    s_refusal(self, errbuf, errlen);
    s_reconnect(self);
    return FZ_EUNAVAILABLE;
}

/* Sends the request. A DEALER has no pipe to send on while its connection is being made again
   after a handshake the broker closed (EAGAIN): the monitor then tells a refusal from a
   broker that is only slow to let it in, which is waited for up to the deadline. */
static fz_err_t s_send(fz_client_t *self, fz_enc_t **req_p, int64_t deadline, char *errbuf,
                       size_t errlen)
{
    size_t len = 0;
    const void *data = *req_p ? fz_enc_data(*req_p, &len) : NULL;
    fz_err_t rc = FZ_OK;
    while (data && zmq_send(zsock_resolve(self->sock), data, len, ZMQ_DONTWAIT) < 0) {
        if (errno != EAGAIN || fz_net_interrupted() || fz_clock_ms() >= deadline ||
            !self->monitor) {
            snprintf(errbuf, errlen, "cannot send to broker at %s: %s", self->endpoint,
                     errno == EAGAIN ? "no connection took the request in time" : strerror(errno));
            rc = FZ_EUNAVAILABLE;
            break;
        }
        s_events(self);
        if (s_is_refused(self)) {
            rc = s_refused(self, errbuf, errlen);
            break;
        }
        zmq_pollitem_t item = {zsock_resolve(self->monitor), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 50);
    }
    if (!data && rc == FZ_OK) {
        snprintf(errbuf, errlen, "out of memory");
        rc = FZ_EINTERNAL;
    }
    fz_enc_destroy(req_p);
    return rc;
}

bool fz_client_no_reply(const fz_client_t *self)
{
    return self->no_reply;
}

bool fz_client_may_have_landed(const fz_client_t *self)
{
    return self->no_reply && self->landed;
}

void fz_client_new_key(char key[33])
{
    unsigned char raw[16];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(raw, 1, sizeof raw, f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof raw) {
        uint64_t a = (uint64_t)fz_clock_ms() * 6364136223846793005u, b = (uint64_t)getpid();
        memcpy(raw, &a, 8);
        memcpy(raw + 8, &b, 8);
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(key + 2 * i, 3, "%02x", raw[i]);
}

fz_reason_t fz_client_reason(const fz_client_t *self)
{
    return self->reason;
}

int64_t fz_client_error_index(const fz_client_t *self)
{
    return self->index;
}

fz_err_t fz_client_call(fz_client_t *self, fz_enc_t **req_p, fz_msg_t **reply_p, char *errbuf,
                        size_t errlen)
{
    *reply_p = NULL;
    self->reason = FZ_REASON_NONE;
    self->index = -1;
    self->no_reply = false;
    self->landed = false;
    if (!self->sock) {
        fz_enc_destroy(req_p);
        snprintf(errbuf, errlen, "cannot connect to %s", self->endpoint);
        return FZ_EUNAVAILABLE;
    }
    int64_t deadline = fz_clock_ms() + self->timeout_ms;
    fz_err_t sent = s_send(self, req_p, deadline, errbuf, errlen);
    if (sent != FZ_OK)
        return sent;
    while (!fz_net_interrupted()) {
        int64_t left = deadline - fz_clock_ms();
        if (left <= 0)
            break;
        zmq_pollitem_t items[2] = {
            {zsock_resolve(self->sock), 0, ZMQ_POLLIN, 0},
            {self->monitor ? zsock_resolve(self->monitor) : NULL, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, self->monitor ? 2 : 1, (long)left);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc > 0 && self->monitor && (items[1].revents & ZMQ_POLLIN)) {
            s_events(self);
            if (s_is_refused(self))
                return s_refused(self, errbuf, errlen);
        }
        if (rc <= 0 || !(items[0].revents & ZMQ_POLLIN))
            continue;
        fz_err_t err = FZ_OK;
        s_match_t match = s_receive(self, reply_p, &err, errbuf, errlen);
        if (match == S_MINE)
            return FZ_OK;
        if (match == S_BAD)
            return err;
    }
    return s_no_reply(self, errbuf, errlen);
}

fz_err_t fz_client_ask(fz_client_t *self, fz_enc_t **req_p, const char *expect, fz_msg_t **reply_p,
                       char *errbuf, size_t errlen)
{
    fz_err_t err = fz_client_call(self, req_p, reply_p, errbuf, errlen);
    if (err || fz_msg_is(*reply_p, expect))
        return err;
    snprintf(errbuf, errlen, "the broker answered with '%s' where '%s' was due",
             fz_msg_type(*reply_p), expect);
    fz_msg_destroy(reply_p);
    return FZ_EMALFORMED;
}
