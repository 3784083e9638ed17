/*  fz_outbox: what a turn sends after its commit (replies, dispatches, events); see
    fz_broker_int.h. */

#include "fz_broker_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- outbox and events */

out_t *fz_outbox_add(fz_broker_t *self, zframe_t *to, fz_enc_t *enc)
{
    return fz_outbox_add_id(self, to ? zframe_data(to) : NULL, to ? zframe_size(to) : 0, enc);
}

out_t *fz_outbox_add_id(fz_broker_t *self, const void *to, size_t len, fz_enc_t *enc)
{
    if (self->nout == self->capout) {
        size_t cap = self->capout ? self->capout * 2 : 64;
        out_t *o = realloc(self->out, cap * sizeof *o);
        if (!o) {
            fz_enc_destroy(&enc);
            return NULL;
        }
        self->out = o;
        self->capout = cap;
    }
    self->out_bytes += fz_enc_size(enc);
    out_t *o = &self->out[self->nout++];
    o->to_len = (uint8_t)(len < sizeof o->to ? len : sizeof o->to);
    if (o->to_len)
        memcpy(o->to, to, o->to_len);
    o->topic = FZ_TOPIC_NONE;
    o->enc = enc;
    o->reply = o->norid = false;
    o->rid = o->dispatch = 0;
    return o;
}

out_t *fz_outbox_add_to(fz_broker_t *self, const fz_worker_t *w, fz_enc_t *enc)
{
    return fz_outbox_add_id(self, w->rid, w->rid_len, enc);
}

void fz_outbox_reply(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_enc_t *enc)
{
    out_t *o = fz_outbox_add(self, to, enc);
    if (o) {
        o->reply = true;
        o->rid = rid;
    }
}

/* Queues an error reply; index >= 0 names the refused task of a batch. It goes through the
   outbox to keep replies in order. */
static void s_error(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_err_t code,
                    fz_reason_t reason, int64_t index, const char *message)
{
    fz_enc_t *e = fz_enc_error(rid, code, reason, message);
    if (index >= 0)
        fz_enc_uint(e, "index", (uint64_t)index);
    fz_outbox_reply(self, to, rid, e);
}

void fz_outbox_error(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_err_t code,
                     fz_reason_t reason, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    s_error(self, to, rid, code, reason, -1, message);
}

void fz_outbox_error_at(fz_broker_t *self, zframe_t *to, uint64_t rid, fz_err_t code,
                        fz_reason_t reason, size_t index, const char *message)
{
    s_error(self, to, rid, code, reason, (int64_t)index, message);
}

void fz_outbox_refuse(fz_broker_t *self, zframe_t *to, const fz_msg_head_t *head, fz_err_t code,
                      fz_reason_t reason, const char *message)
{
    if (head && head->rid_read) {
        s_error(self, to, head->rid, code, reason, -1, message);
        return;
    }
    out_t *o = fz_outbox_add(self, to, fz_enc_error_norid(code, reason, message));
    if (o)
        o->reply = o->norid = true;
}

fz_enc_t *fz_outbox_event(fz_broker_t *self, fz_topic_t topic, const fz_task_t *t)
{
    fz_enc_t *e = fz_enc_new_map();
    fz_enc_float(e, "ts", fz_wall());
    fz_enc_str(e, "event", fz_topic_name(topic));
    if (t) {
        fz_enc_uint(e, "task", t->id);
        fz_enc_str(e, "state", fz_state_name(t->state));
        fz_enc_int(e, "priority", t->priority);
        fz_enc_str(e, "model", t->model);
        if (t->attempt)
            fz_enc_uint(e, "attempt", t->attempt);
        if (t->parent)
            fz_enc_uint(e, "parent", t->parent);
    }
    out_t *o = fz_outbox_add_id(self, NULL, 0, e);
    if (!o)
        return NULL; /* no memory: the event is lost (events may be; replies are not) */
    o->topic = topic;
    return e;
}

static void s_emit_now(fz_broker_t *self, fz_topic_t topic, fz_enc_t **e_p)
{
    fz_enc_uint(*e_p, "seq", ++self->seq);
    size_t len;
    const void *data = fz_enc_data(*e_p, &len);
    if (data) {
        const char *name = fz_topic_name(topic);
        zmq_send(zsock_resolve(self->pub), name, strlen(name), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(zsock_resolve(self->pub), data, len, ZMQ_DONTWAIT);
        fz_history_add(self->history, self->seq, data, len);
    }
    fz_enc_destroy(e_p);
}

/* Sends the turn's messages after its commit. A dispatch that cannot reach its worker means
   the worker is gone: its task goes back to the queue, recorded in the next turn. */
void fz_outbox_flush(fz_broker_t *self)
{
    char gone[64][FZ_RID_KEY];
    size_t ngone = 0, dropped = 0;
    for (size_t i = 0; i < self->nout; i++) {
        out_t *o = &self->out[i];
        if (!o->to_len) {
            s_emit_now(self, o->topic, &o->enc);
            continue;
        }
        if (fz_net_send_to(self->router, o->to, o->to_len, &o->enc) < 0) {
            if (o->dispatch && ngone < 64) {
                fz_warn("dispatch of task %llu failed (%s): worker is gone",
                        (unsigned long long)o->dispatch, strerror(errno));
                fz_broker_hexkey_of(o->to, o->to_len, gone[ngone++], sizeof gone[0]);
            } else if (!o->dispatch)
                dropped++;
        }
    }
    if (dropped)
        fz_warn("%zu message(s) dropped this turn: their peers do not read what they asked for "
                "(or are gone)",
                dropped);
    self->nout = 0;
    self->out_bytes = 0;
    for (size_t i = 0; i < ngone; i++) {
        fz_worker_t *w = zhashx_lookup(self->workers, gone[i]);
        if (w)
            fz_workers_gone(self, w, "unreachable");
    }
}

void fz_outbox_abandon(fz_broker_t *self)
{
    size_t kept = 0;
    self->out_bytes = 0;
    for (size_t i = 0; i < self->nout; i++) {
        out_t o = self->out[i];
        if (o.to_len && o.reply && !o.norid) {
            fz_enc_destroy(&o.enc);
            o.enc = fz_enc_error(o.rid, FZ_EUNAVAILABLE, FZ_REASON_STORE_FAILED,
                                 "the broker could not store this change; try again");
            o.dispatch = 0;
        } else if (!(o.to_len && o.norid)) { /* a norid error changed nothing: it stays */
            fz_enc_destroy(&o.enc);
            continue;
        }
        if (!o.enc)
            continue;
        self->out_bytes += fz_enc_size(o.enc);
        self->out[kept++] = o;
    }
    self->nout = kept;
    fz_broker_reload(self);
    /* Replies to one peer keep their order: these follow those still waiting for a sync. */
    if (!self->sync || !fz_sync_busy(self->sync))
        fz_outbox_flush(self);
}

/* out and held change places (the arrays and what they count). */
static void s_swap(fz_broker_t *self)
{
    out_t *v = self->out;
    size_t n = self->nout, cap = self->capout, bytes = self->out_bytes;
    self->out = self->held;
    self->nout = self->nheld;
    self->capout = self->capheld;
    self->out_bytes = self->held_bytes;
    self->held = v;
    self->nheld = n;
    self->capheld = cap;
    self->held_bytes = bytes;
}

void fz_outbox_hold(fz_broker_t *self)
{
    s_swap(self);
}

void fz_outbox_release(fz_broker_t *self)
{
    /* fz_outbox_flush sends out; what it queues itself (a gone worker's task going back)
       lands in the emptied array, and joins the end of the open turns' messages. */
    s_swap(self);
    fz_outbox_flush(self);
    s_swap(self);
    for (size_t i = 0; i < self->nheld; i++) {
        out_t *h = &self->held[i];
        out_t *o = fz_outbox_add_id(self, h->to, h->to_len, h->enc);
        if (o)
            *o = *h;
    }
    self->nheld = 0;
    self->held_bytes = 0;
}

void fz_outbox_drop_held(fz_broker_t *self)
{
    for (size_t i = 0; i < self->nheld; i++)
        fz_enc_destroy(&self->held[i].enc);
    self->nheld = 0;
    self->held_bytes = 0;
}
