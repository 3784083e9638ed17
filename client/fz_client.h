/*  fz_client: one request, one reply, over a DEALER connected to the broker's ROUTER.

    The client numbers its requests (rid) and waits for the reply that carries the number of
    the request it sent last, dropping stale replies to earlier requests that timed out. It
    turns an `error` reply into its fz_err_t and message, and "no reply in time" into
    FZ_EUNAVAILABLE with a message that names the endpoint, so every tool reports an absent
    broker the same way. Protocol versions are negotiated as PROTOCOL.md §3 says.

    The client owns its socket. Requests are built by the caller (fz_client_request) and
    consumed by fz_client_call; replies belong to the caller. Not thread-safe. */

#ifndef FZ_CLIENT_H
#define FZ_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_msg.h"

typedef struct fz_client_t fz_client_t;

/* A client of the broker at `endpoint` that waits up to timeout_ms for each reply. Returns
   NULL if the endpoint is not a valid ZeroMQ endpoint or no socket could be made. The
   connection itself is made in the background: an absent broker shows at the first call. */
fz_client_t *fz_client_new(const char *endpoint, int timeout_ms);
void fz_client_destroy(fz_client_t **self_p);

const char *fz_client_endpoint(const fz_client_t *self);

/* A fresh request id; fz_client_call waits for the reply to the latest one. */
uint64_t fz_client_next_rid(fz_client_t *self);

/* A new request of `type` carrying a fresh rid (fz_client_next_rid); the caller adds its
   fields and hands it to fz_client_call. NULL on no memory. */
fz_enc_t *fz_client_request(fz_client_t *self, const char *type);

/* Sends *req_p (destroyed in all cases) and waits for its reply. On FZ_OK *reply_p owns the
   reply, which is not an `error`. Otherwise *reply_p is NULL and errbuf holds one line:
   - an `error` reply gives its code and message;
   - no reply in time (or SIGINT/SIGTERM, see fz_net_interrupted) gives FZ_EUNAVAILABLE;
   - a reply that cannot be decoded gives its decode error (FZ_EMALFORMED, FZ_EVERSION...). */
fz_err_t fz_client_call(fz_client_t *self, fz_enc_t **req_p, fz_msg_t **reply_p, char *errbuf,
                        size_t errlen);

/* Writes a fresh idempotency key into key[33]: 32 hex digits from /dev/urandom (the clock
   and pid when it cannot be read), unique enough that two submits never share one. */
void fz_client_new_key(char key[33]);

/* True when the last call failed for want of a reply (a timeout, not an error reply): the
   request may or may not have landed, so only a request with an idempotency key can be
   sent again safely. */
bool fz_client_no_reply(const fz_client_t *self);
/* ... and its socket had reached a broker (a connection was made): only then may the
   request have landed. A broker that was never there cannot have stored it. */
bool fz_client_may_have_landed(const fz_client_t *self);

/* The machine-readable reason of the last call's error reply (FZ_REASON_NONE if it had none
   or the call did not fail with one), and the batch index it named (-1 if none). */
fz_reason_t fz_client_reason(const fz_client_t *self);
int64_t fz_client_error_index(const fz_client_t *self);

/* As fz_client_call, and a reply of another type than `expect` ("task", "ok", ...) is a
   protocol error (FZ_EMALFORMED), so callers can read its fields without doubt. */
fz_err_t fz_client_ask(fz_client_t *self, fz_enc_t **req_p, const char *expect, fz_msg_t **reply_p,
                       char *errbuf, size_t errlen);

#endif
