/*  fz_auth: the ZAP handler and the permission table; see fz_auth.h. */

#include "fz_auth.h"

#include <stdlib.h>
#include <string.h>

#include "fz_net.h"
#include "fz_util.h"

/* ---------------------------------------------------------------- the permission table */

typedef struct {
    const char *type;
    fz_auth_rule_t client, worker, admin;
} rule_row_t;

#define A FZ_AUTH_ALLOW
#define D FZ_AUTH_DENY
#define O FZ_AUTH_OWN
static const rule_row_t s_rules[] = {
    /* type           client worker admin */
    {"ping", A, A, A},       {"submit", A, D, A},    {"submit-batch", A, D, A},
    {"get", A, D, A},        {"list", A, D, A},      {"status", A, D, A},
    {"workers", A, D, A},    {"budget", A, D, A}, /* reading it */
    {"cost", A, D, A},       {"events", A, D, A},    {"cancel", O, D, A},
    {"retry", O, D, A},      {"priority", O, D, A},  {"escalate", O, D, A},
    {"budget.set", D, D, A}, {"pause", D, D, A},     {"resume", D, D, A},
    {"stop", D, D, A},       {"purge", D, D, A},     {"backup", D, D, A},
    {"hello", D, A, A},      {"heartbeat", D, A, A}, {"started", D, A, A},
    {"output", D, A, A},     {"result", D, A, A},    {"bye", D, A, A},
};
#undef A
#undef D
#undef O

fz_auth_rule_t fz_auth_rule(fz_role_t role, const char *type)
{
    if (role == FZ_ROLE_ADMIN)
        return FZ_AUTH_ALLOW;
    if (role != FZ_ROLE_CLIENT && role != FZ_ROLE_WORKER)
        return FZ_AUTH_DENY;
    for (size_t i = 0; type && i < sizeof s_rules / sizeof *s_rules; i++)
        if (strcmp(s_rules[i].type, type) == 0)
            return role == FZ_ROLE_CLIENT ? s_rules[i].client : s_rules[i].worker;
    return FZ_AUTH_DENY;
}

bool fz_auth_allowed(fz_role_t role, const char *type, bool own)
{
    fz_auth_rule_t r = fz_auth_rule(role, type);
    return r == FZ_AUTH_ALLOW || (r == FZ_AUTH_OWN && own);
}

/* ---------------------------------------------------------------- the ZAP handler */

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_FRAMES 8 /* a CURVE request has 7; more is not ZAP */

/* A load older than the newest change it saw by this much is trusted while the fingerprint
   holds: file times move in clock ticks, so a change just after a load can keep them. */
#define S_RACY_S 2.0

struct fz_auth_t {
    char *keydir;
    fz_keydir_t *cache; /* the last load, while the folder's fingerprint holds */
    uint64_t fingerprint;
    bool trusted; /* the cache's load came S_RACY_S after the newest change it saw */
    zsock_t *rep;
    uint64_t accepted, refused;
    char last_refused[FZ_CURVE_KEY + 64]; /* the last refusal logged, to log each once */
    int64_t last_refused_ms;
};

fz_auth_t *fz_auth_new(const char *keydir, char *err, size_t errlen)
{
    fz_keydir_t *kd = fz_keydir_load(keydir, true, err, errlen);
    if (!kd)
        return NULL;
    size_t nkeys = fz_keydir_size(kd);
    fz_keydir_destroy(&kd);
    fz_auth_t *self = calloc(1, sizeof *self);
    if (!self || !(self->keydir = strdup(keydir))) {
        free(self);
        fz_errf(err, errlen, "out of memory");
        return NULL;
    }
    self->rep = zsock_new(ZMQ_REP);
    if (!self->rep || zsock_bind(self->rep, S_ZAP_ENDPOINT) != 0) {
        fz_errf(err, errlen, "cannot bind the ZAP handler %s: %s", S_ZAP_ENDPOINT,
                zmq_strerror(zmq_errno()));
        fz_auth_destroy(&self);
        return NULL;
    }
    fz_info("CURVE on: %zu keys in %s", nkeys, keydir);
    return self;
}

void fz_auth_destroy(fz_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_auth_t *self = *self_p;
    fz_net_close_bound(&self->rep);
    fz_keydir_destroy(&self->cache);
    free(self->keydir);
    free(self);
    *self_p = NULL;
}

void *fz_auth_socket(fz_auth_t *self)
{
    return zsock_resolve(self->rep);
}

uint64_t fz_auth_accepted(const fz_auth_t *self)
{
    return self->accepted;
}

uint64_t fz_auth_refused(const fz_auth_t *self)
{
    return self->refused;
}

/* One ZAP request, frames as RFC 27 numbers them from 0 (version, request id, domain,
   address, routing id, mechanism, credentials...). */
typedef struct {
    zmq_msg_t f[S_FRAMES];
    int n;
    bool overflow;
} zap_req_t;

static bool s_read(void *rep, zap_req_t *r)
{
    r->n = 0;
    r->overflow = false;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, rep, r->n ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return r->n > 0;
        }
        more = zmq_msg_more(&m);
        if (r->n < S_FRAMES) {
            r->f[r->n++] = m;
        } else {
            r->overflow = true;
            zmq_msg_close(&m);
        }
    }
    return true;
}

static void s_free(zap_req_t *r)
{
    for (int i = 0; i < r->n; i++)
        zmq_msg_close(&r->f[i]);
    r->n = 0;
}

/* Frame i as a string of at most size-1 bytes ("" if absent). */
static void s_text(const zap_req_t *r, int i, char *out, size_t size)
{
    size_t n = 0;
    if (i < r->n) {
        n = zmq_msg_size((zmq_msg_t *)&r->f[i]);
        if (n >= size)
            n = size - 1;
        memcpy(out, zmq_msg_data((zmq_msg_t *)&r->f[i]), n);
    }
    out[n] = 0;
}

/* The key folder as it is now: the cached load while the folder's fingerprint is unchanged
   (a stat per file), else a new load (a parse per file: 1,000 keys cost about 100 ms, too
   much for every handshake). NULL with err when the folder cannot be read. */
static const fz_keydir_t *s_keys(fz_auth_t *self, char *err, size_t errlen)
{
    double newest;
    uint64_t fp = fz_keydir_fingerprint(self->keydir, &newest);
    if (self->cache && self->trusted && fp == self->fingerprint)
        return self->cache;
    fz_keydir_destroy(&self->cache);
    self->cache = fz_keydir_load(self->keydir, false, err, errlen);
    self->fingerprint = fp;
    self->trusted = fz_wall() - newest > S_RACY_S;
    return self->cache;
}

/* Decides a request: 0 with user set (accepted), or -1 with why set. */
static int s_decide(fz_auth_t *self, const zap_req_t *r, char *key, char *user, size_t usize,
                    char *why, size_t wsize)
{
    char version[8], domain[32], mech[16];
    s_text(r, 0, version, sizeof version);
    s_text(r, 2, domain, sizeof domain);
    s_text(r, 5, mech, sizeof mech);
    if (r->overflow || r->n < 6 || strcmp(version, "1.0") != 0)
        return fz_errf(why, wsize, "not a ZAP 1.0 request");
    if (strcmp(mech, "CURVE") != 0 || r->n != 7 || zmq_msg_size((zmq_msg_t *)&r->f[6]) != 32)
        return fz_errf(why, wsize, "mechanism %s refused: CURVE keys are required", mech);
    zmq_z85_encode(key, zmq_msg_data((zmq_msg_t *)&r->f[6]), 32);
    char err[512];
    const fz_keydir_t *kd = s_keys(self, err, sizeof err);
    if (!kd)
        return fz_errf(why, wsize, "key folder unreadable, refusing everyone: %s", err);
    const fz_key_t *k = fz_keydir_find(kd, key);
    int rc = 0;
    if (!k || k->role == FZ_ROLE_NONE)
        rc = fz_errf(why, wsize, "unknown key %s", key);
    else if (strcmp(domain, FZ_AUTH_DOMAIN_EVENTS) == 0 && k->role == FZ_ROLE_WORKER)
        rc = fz_errf(why, wsize, "worker key %s (%s) may not subscribe to events", k->name, key);
    else
        snprintf(user, usize, "%s:%s", fz_role_name(k->role), k->name);
    return rc;
}

/* Logs a refusal, once per key and address every 10 s: a refused peer reconnects often. */
static void s_log_refusal(fz_auth_t *self, const char *addr, const char *domain, const char *why)
{
    char what[sizeof self->last_refused];
    snprintf(what, sizeof what, "%.40s %.60s", why, addr);
    int64_t now = fz_clock_ms();
    if (strcmp(what, self->last_refused) == 0 && now - self->last_refused_ms < 10000)
        return;
    fz_strcopy(self->last_refused, sizeof self->last_refused, what);
    self->last_refused_ms = now;
    fz_warn("refused a connection from %s (%s): %s", *addr ? addr : "?", domain, why);
}

static void s_reply(void *rep, const zap_req_t *r, bool ok, const char *text, const char *user)
{
    const char *code = ok ? "200" : "400";
    zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(rep, r->n > 1 ? zmq_msg_data((zmq_msg_t *)&r->f[1]) : "",
             r->n > 1 ? zmq_msg_size((zmq_msg_t *)&r->f[1]) : 0, ZMQ_SNDMORE);
    zmq_send(rep, code, 3, ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, 0);
}

void fz_auth_serve(fz_auth_t *self)
{
    void *rep = zsock_resolve(self->rep);
    zap_req_t r;
    while (s_read(rep, &r)) {
        char key[FZ_CURVE_KEY] = "", user[FZ_AUTH_USER] = "", why[256], addr[64], domain[32];
        s_text(&r, 3, addr, sizeof addr);
        s_text(&r, 2, domain, sizeof domain);
        bool ok = s_decide(self, &r, key, user, sizeof user, why, sizeof why) == 0;
        s_reply(rep, &r, ok, ok ? "OK" : why, ok ? user : "");
        if (ok) {
            self->accepted++;
            fz_debug("accepted %s from %s (%s)", user, addr, domain);
        } else {
            self->refused++;
            s_log_refusal(self, addr, domain, why);
        }
        s_free(&r);
    }
}
