/*  fz_broker: the loop (sockets, turns, the handler table, timers, load and reload); see
    fz_broker.h and fz_broker_int.h. */

#include "fz_broker_int.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- small helpers */

void fz_broker_config_defaults(fz_broker_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind = FZ_DEFAULT_BROKER;
    cfg->events = FZ_DEFAULT_EVENTS;
    cfg->db = NULL; /* the front end picks $FZ_STATE/fz.db */
    cfg->max_running = 3;
    cfg->daily_budget = 20.0;
    cfg->default_task_cost = 0.5;
    cfg->default_timeout = 3600;
    cfg->kill_grace = 10;
    cfg->heartbeat_ms = 1000;
    cfg->default_retries = 0;
    cfg->backoff_min_ms = 1000;
    cfg->backoff_max_ms = 60000;
    cfg->sync_full = true;
    cfg->max_depth = 5;
    cfg->max_children = 100;
    cfg->aging_s = 0;
    cfg->deadline_horizon = 3600;
    cfg->stall_s = 600;
    cfg->stall_kill_s = 0;
    cfg->key_ttl_s = 86400;
}

void fz_broker_idkey(uint64_t id, char key[24])
{
    snprintf(key, 24, "%llu", (unsigned long long)id);
}

void fz_broker_adopt(fz_broker_t *self, fz_task_t *t)
{
    char key[24];
    fz_broker_idkey(t->id, key);
    zhashx_insert(self->tasks, key, t);
    if (t->deadline > 0)
        zhashx_update(self->deadlined, key, self); /* a set: the value is not used */
}

fz_task_t *fz_broker_task(fz_broker_t *self, uint64_t id)
{
    char key[24];
    fz_broker_idkey(id, key);
    return zhashx_lookup(self->tasks, key);
}

void fz_broker_hexkey(zframe_t *frame, char *key, size_t size)
{
    fz_broker_hexkey_of(zframe_data(frame), zframe_size(frame), key, size);
}

void fz_broker_hexkey_of(const void *id, size_t n, char *key, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *d = id;
    size_t k = 0;
    for (size_t i = 0; i < n && k + 2 < size; i++) {
        key[k++] = hex[d[i] >> 4];
        key[k++] = hex[d[i] & 15];
    }
    key[k] = 0;
}

fz_worker_t *fz_broker_worker(fz_broker_t *self, zframe_t *from)
{
    char key[FZ_RID_KEY];
    fz_broker_hexkey(from, key, sizeof key);
    return zhashx_lookup(self->workers, key);
}

double fz_broker_random(fz_broker_t *self)
{
    /* xorshift64: jitter needs no quality, only no shared state */
    self->rng ^= self->rng << 13;
    self->rng ^= self->rng >> 7;
    self->rng ^= self->rng << 17;
    return (double)(self->rng >> 11) / 9007199254740992.0;
}

bool fz_broker_model_allowed(fz_broker_t *self, const char *model)
{
    if (!self->allowed || !*model)
        return true;
    for (size_t i = 0; i < self->nallowed; i++)
        if (strcmp(self->allowed[i], model) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- task life cycle */

static void s_task_free(void **item)
{
    fz_task_free(*item);
    *item = NULL;
}

static void s_worker_free(void **item)
{
    free(*item);
    *item = NULL;
}

void fz_broker_count_move(fz_broker_t *self, int from, int to)
{
    if (from >= 0 && from < FZ_STATE_COUNT && self->counts[from] > 0)
        self->counts[from]--;
    if (to >= 0 && to < FZ_STATE_COUNT)
        self->counts[to]++;
}

/* The state of any task, live or not; -1 if there is no such task. */
int fz_broker_state_of(fz_broker_t *self, uint64_t id)
{
    fz_task_t *t = fz_broker_task(self, id);
    fz_state_t state;
    if (t)
        return (int)t->state;
    return fz_store_task_exists(self->store, id, &state) ? (int)state : -1;
}

typedef struct {
    const char *type;
    handler_fn *client;
    worker_fn *worker;
} handler_row_t;

static const handler_row_t s_handlers[] = {
    {"submit", fz_requests_submit, NULL},
    {"get", fz_views_get, NULL},
    {"list", fz_views_list, NULL},
    {"status", fz_views_status, NULL},
    {"workers", fz_views_workers, NULL},
    {"cancel", fz_requests_cancel, NULL},
    {"pause", fz_requests_pause, NULL},
    {"resume", fz_requests_resume, NULL},
    {"stop", fz_requests_stop, NULL},
    {"retry", fz_requests_retry, NULL},
    {"priority", fz_requests_priority, NULL},
    {"budget", fz_views_budget, NULL},
    {"cost", fz_views_cost, NULL},
    {"ping", fz_views_ping, NULL},
    {"submit-batch", fz_requests_submit_batch, NULL},
    {"escalate", fz_requests_escalate, NULL},
    {"events", fz_views_events, NULL},
    {"purge", fz_requests_purge, NULL},
    {"backup", fz_requests_backup, NULL},
    {"hello", fz_workers_hello, NULL},
    {"heartbeat", NULL, fz_workers_heartbeat},
    {"started", NULL, fz_workers_started},
    {"output", NULL, fz_workers_output},
    {"result", NULL, fz_workers_result},
    {"bye", NULL, fz_workers_bye},
};

/* The handler row of a message type, or NULL: the broker does not accept that type. */
static const handler_row_t *s_handler(const char *type)
{
    for (size_t i = 0; i < sizeof s_handlers / sizeof *s_handlers; i++)
        if (strcmp(s_handlers[i].type, type) == 0)
            return &s_handlers[i];
    return NULL;
}

/* The reason of a frame the codec refused. */
static fz_reason_t s_decode_reason(fz_err_t err)
{
    return err == FZ_EMALFORMED ? FZ_REASON_MALFORMED
           : err == FZ_EUNKNOWN ? FZ_REASON_UNKNOWN_TYPE
                                : FZ_REASON_BAD_FIELD;
}

/* True if the sender may send this request (fz_auth_rule); otherwise queues the refusal. A
   request on one task, for a role that may touch its own tasks only, is allowed when the task
   was submitted by the same key; a task that does not exist is left to the handler. */
static bool s_permitted(fz_broker_t *self, zframe_t *from, const char *type, fz_msg_t *msg,
                        uint64_t rid)
{
    const char *asked = strcmp(type, "budget") == 0 && fz_msg_has(msg, "set") ? "budget.set" : type;
    fz_auth_rule_t rule = fz_auth_rule(self->peer_role, asked);
    if (rule == FZ_AUTH_ALLOW)
        return true;
    char owner[FZ_AUTH_USER];
    uint64_t id = fz_msg_uint(msg, "task", 0);
    if (rule == FZ_AUTH_OWN && (fz_store_task_owner(self->store, id, owner, sizeof owner) != 0 ||
                                strcmp(owner, self->peer_user) == 0))
        return true;
    const char *role = self->peer_role ? fz_role_name(self->peer_role) : "unknown";
    fz_warn("refused '%s' from %s (%s key)", asked, *self->peer_user ? self->peer_user : "?", role);
    if (rule == FZ_AUTH_OWN)
        fz_outbox_error(self, from, rid, FZ_EREFUSED, FZ_REASON_FORBIDDEN,
                        "task %llu was submitted by another key: only an admin key may '%s' it",
                        (unsigned long long)id, type);
    else
        fz_outbox_error(self, from, rid, FZ_EREFUSED, FZ_REASON_FORBIDDEN,
                        "a %s key may not send '%s'", role, asked);
    return false;
}

static void s_handle(fz_broker_t *self, zframe_t *from, const void *data, size_t len)
{
    fz_msg_t *msg = NULL;
    fz_msg_head_t head;
    char why[256];
    fz_err_t err = fz_msg_decode_head(data, len, &msg, &head, why, sizeof why);
    uint64_t rid = head.rid;
    fz_worker_t *w = fz_broker_worker(self, from);
    if (w)
        w->last_seen_ms = fz_clock_ms();
    /* A type the broker has no handler for (a reply type, a broker->worker message) is
       unknown-type whatever its fields: the codec checked them against that type's spec. */
    const char *type = err ? head.type : fz_msg_type(msg);
    bool unknown =
        (err == FZ_OK || err == FZ_EINVALID || err == FZ_ETOOLARGE) && *type && !s_handler(type);
    if (err && !unknown) {
        fz_warn("bad message from peer %s: %s", w ? w->name : "(client)", why);
        fz_outbox_refuse(self, from, &head, err, s_decode_reason(err), why);
        return;
    }
    if (unknown) {
        fz_outbox_error(self, from, rid, FZ_EUNKNOWN, FZ_REASON_UNKNOWN_TYPE,
                        "the broker does not accept '%s'", type);
        fz_msg_destroy(&msg);
        return;
    }
    if (!s_permitted(self, from, type, msg, rid)) {
        fz_msg_destroy(&msg);
        return;
    }
    const handler_row_t *h = s_handler(type);
    if (h->client)
        h->client(self, from, msg);
    else if (w)
        h->worker(self, from, msg, w);
    else
        fz_outbox_error(self, from, rid, FZ_ECONFLICT, FZ_REASON_UNKNOWN_PEER,
                        "'%s' is a worker message: say hello first", type);
    fz_msg_destroy(&msg);
}

/* Who sent the message whose payload frame is part: the ZAP user id libzmq attached to the
   connection at its handshake (fz_auth), read per message. (From the payload: libzmq 4.3.4
   leaves the routing id frame without metadata when a poll prefetched the message.) With CURVE off
   every peer is trusted as admin and submits as "" (PROTOCOL.md section 9). */
static void s_identify(fz_broker_t *self, zmq_msg_t *part)
{
    if (!self->auth) {
        self->peer_role = FZ_ROLE_ADMIN;
        self->peer_user[0] = 0;
        return;
    }
    const char *user = zmq_msg_gets(part, "User-Id");
    fz_strcopy(self->peer_user, sizeof self->peer_user, user ? user : "");
    self->peer_role = fz_role_of_user(self->peer_user);
}

/* Reads one ROUTER message, [routing id][payload], without blocking; false when none is
   waiting. (zmq directly: CZMQ's zsock_events costs a poll and a getpid per message.) */
static bool s_recv(fz_broker_t *self)
{
    void *router = zsock_resolve(self->router);
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return false;
    }
    bool more = zmq_msg_more(&part), handled = false;
    zframe_t *from = self->from;
    zframe_reset(from, zmq_msg_data(&part), zmq_msg_size(&part));
    zmq_msg_close(&part);
    /* The rest of a message is there already (ZeroMQ delivers messages whole); only one
       payload frame is valid, any other shape gets `malformed`. */
    for (int frames = 1; more; frames++) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, router, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (frames == 1 && !more) {
            s_identify(self, &part);
            s_handle(self, from, zmq_msg_data(&part), zmq_msg_size(&part));
            handled = true;
        }
        zmq_msg_close(&part);
    }
    if (!handled)
        fz_outbox_refuse(self, from, NULL, FZ_EMALFORMED, FZ_REASON_MALFORMED,
                         "a message must be exactly one frame");
    return true;
}

/* Deadlines raise priorities as they near: the queued tasks with one are re-ranked once a
   second. Ids of tasks that ended since are dropped here, after the walk. */
static void s_rerank_deadlined(fz_broker_t *self)
{
    char(*gone)[24] = NULL;
    size_t ngone = 0, cap = 0;
    for (void *v = zhashx_first(self->deadlined); v; v = zhashx_next(self->deadlined)) {
        const char *key = zhashx_cursor(self->deadlined);
        fz_task_t *t = zhashx_lookup(self->tasks, key);
        if (t) {
            if (t->queue)
                fz_life_rerank(self, t);
            continue;
        }
        if (ngone == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            char(*grown)[24] = realloc(gone, ncap * sizeof *gone);
            if (!grown)
                continue; /* dropped at a later walk */
            gone = grown, cap = ncap;
        }
        snprintf(gone[ngone++], sizeof gone[0], "%s", key);
    }
    for (size_t i = 0; i < ngone; i++)
        zhashx_delete(self->deadlined, gone[i]);
    free(gone);
}

/* ---------------------------------------------------------------- timers */

static void s_tick(fz_broker_t *self, int64_t now, bool drained)
{
    /* While messages wait unread, a worker's heartbeat may be among them: judge silence only
       once the socket is drained. */
    int64_t dead_after = drained ? 3 * (int64_t)self->cfg.heartbeat_ms : INT64_MAX / 2;
    /* Collect first: removing a worker while iterating the hash is not allowed. */
    fz_worker_t *dead[256];
    size_t ndead = 0;
    for (fz_worker_t *w = zhashx_first(self->workers); w && ndead < 256;
         w = zhashx_next(self->workers))
        if (now - w->last_seen_ms > dead_after)
            dead[ndead++] = w;
    for (size_t i = 0; i < ndead; i++)
        fz_workers_gone(self, dead[i], "silent");

    if (now >= self->next_heartbeat_ms) {
        self->next_heartbeat_ms = now + self->cfg.heartbeat_ms;
        for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
            fz_enc_t *hb = fz_enc_new("heartbeat", 0);
            fz_net_send_to(self->router, w->rid, w->rid_len, &hb);
        }
    }

    fz_task_t *t = zlistx_first(self->timed);
    while (t) {
        fz_task_t *next = zlistx_next(self->timed);
        if (t->state == FZ_STATE_RETRYING && now >= t->not_before_ms) {
            fz_life_timed_remove(self, t);
            fz_life_move(self, t, FZ_STATE_QUEUED, NULL);
            fz_life_ready(self, t);
        } else if (t->state == FZ_STATE_HELD && t->not_before > 0 && fz_wall() >= t->not_before) {
            fz_life_timed_remove(self, t);
            t->not_before = 0;
            fz_store_task_not_before(self->store, t->id, 0);
            fz_life_move(self, t, FZ_STATE_QUEUED, NULL);
            fz_life_ready(self, t);
        } else if (t->state == FZ_STATE_RUNNING && !t->worker && t->orphan_deadline_ms &&
                   now >= t->orphan_deadline_ms) {
            fz_life_lost(self, t, "worker did not come back after a broker restart");
        }
        t = next;
    }

    if (now >= self->next_rerank_ms) {
        self->next_rerank_ms = now + 1000;
        s_rerank_deadlined(self);
    }

    if (fz_budget_rollover(&self->budget, fz_wall()))
        fz_life_budget_moved(self);
    fz_requests_prune_keys(self, now);
}

static int s_poll_timeout(fz_broker_t *self, int64_t now)
{
    int64_t next = self->next_heartbeat_ms;
    for (fz_task_t *t = zlistx_first(self->timed); t; t = zlistx_next(self->timed)) {
        int64_t at = t->state == FZ_STATE_RETRYING                ? t->not_before_ms
                     : t->state == FZ_STATE_RUNNING && !t->worker ? t->orphan_deadline_ms
                                                                  : 0;
        if (at && at < next)
            next = at;
    }
    int64_t ms = next - now;
    return ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
}

/* ---------------------------------------------------------------- start, reload, run */

static void s_load_one(void *arg, const fz_task_t *row, const char *worker)
{
    fz_broker_t *self = arg;
    fz_task_t *t = malloc(sizeof *t);
    if (!t)
        return;
    *t = *row;
    t->queue = NULL;
    fz_broker_adopt(self, t);
    /* The model of the attempt at hand: the running one's, or the next one's. */
    char model[65];
    uint32_t n = (t->state == FZ_STATE_RUNNING ? t->attempt : t->attempt + 1) - t->attempt_base;
    if (n > 1 && fz_store_task_model(self->store, t->id, n, model) == 0)
        snprintf(t->model, sizeof t->model, "%s", model);
    switch (t->state) {
    case FZ_STATE_RUNNING:
        /* Its agent may still run: wait for the worker to come back and claim it. */
        fz_sched_started(self->sched, t);
        fz_budget_reserve(&self->budget, t->reserved);
        fz_life_orphan(self, t);
        break;
    case FZ_STATE_HELD:
        fz_life_rerank(self, t);
        if (t->not_before > 0) {
            /* Waiting for a quota to reset: its model waits as long. */
            fz_life_timed_add(self, t);
            double left = t->not_before - fz_wall();
            if (left > 0)
                fz_sched_block(self->sched, t->model, fz_clock_ms() + (int64_t)(left * 1000));
        } else
            fz_sched_hold(self->sched, t, t->hold_reason);
        break;
    case FZ_STATE_RETRYING:
        t->not_before_ms = fz_clock_ms();
        fz_life_timed_add(self, t);
        break;
    case FZ_STATE_WAITING:
        break; /* counted in fz_graph_load_waiting, once every task is in memory */
    default:
        fz_life_rerank(self, t);
        fz_sched_enqueue(self->sched, t);
        break;
    }
}

static int s_load(fz_broker_t *self)
{
    double now = fz_wall(), day = fz_budget_day_start(now);
    double cap = fz_store_meta_get(self->store, "budget", self->cfg.daily_budget);
    if (cap != self->cfg.daily_budget)
        fz_info("daily budget %.2f USD, as set with fz-ctl budget --set (it wins over "
                "--daily-budget %.2f)",
                cap, self->cfg.daily_budget);
    fz_budget_init(&self->budget, cap, fz_store_spent(self->store, day, day + 86400), now);
    self->paused = fz_store_meta_get(self->store, "paused", 0) != 0;
    /* Best-of rounds are not reloaded: their attempts but the primary are lost. */
    if (fz_store_close_racers(self->store, "the broker restarted during a best-of round") < 0 ||
        fz_store_counts(self->store, self->counts) ||
        fz_store_load_live(self->store, s_load_one, self))
        return -1;
    fz_graph_load_waiting(self);
    /* Reservations of held tasks are re-checked against the reloaded ledger. */
    fz_life_budget_moved(self);
    return 0;
}

void fz_broker_reload(fz_broker_t *self)
{
    fz_store_rollback(self->store);
    /* Workers keep running what they run: remember who runs what, re-attach after the load
       (the store holds those attempts as running, committed in earlier turns). */
    size_t nbusy = 0;
    struct busy {
        char key[FZ_RID_KEY];
        uint64_t task, next;
        uint32_t attempt, next_attempt;
    } *busy = calloc(zhashx_size(self->workers) + 1, sizeof *busy);
    for (fz_worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
        if (w->task && busy) {
            snprintf(busy[nbusy].key, sizeof busy[nbusy].key, "%s", w->key);
            busy[nbusy].task = w->task->id;
            busy[nbusy].attempt = w->attempt;
            busy[nbusy].next = w->next ? w->next->id : 0;
            busy[nbusy++].next_attempt = w->next_attempt;
        }
        w->task = w->next = NULL;
    }
    zlistx_purge(self->timed);
    zlistx_purge(self->racing);
    fz_sched_destroy(&self->sched);
    zhashx_purge(self->tasks);
    zhashx_purge(self->deadlined);
    self->sched = fz_sched_new(self->cfg.max_running);
    for (int i = 0; i < self->cfg.nmodel_caps; i++)
        fz_sched_set_cap(self->sched, self->cfg.model_caps[i].name, self->cfg.model_caps[i].cap);
    int rc = s_load(self);
    for (size_t i = 0; i < nbusy; i++) {
        fz_worker_t *w = zhashx_lookup(self->workers, busy[i].key);
        if (w)
            fz_workers_reattach(self, w, busy[i].task, busy[i].attempt);
        if (w && busy[i].next)
            fz_workers_reattach_next(self, w, busy[i].next, busy[i].next_attempt);
    }
    free(busy);
    fz_life_release_held(self);
    if (rc || fz_store_commit(self->store))
        fz_error("reload from the store failed: %s", fz_store_error(self->store));
}

static int s_parse_whitelist(fz_broker_t *self)
{
    if (!self->cfg.models || !*self->cfg.models)
        return 0;
    char *copy = strdup(self->cfg.models);
    if (!copy)
        return -1;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        char **more = realloc(self->allowed, (self->nallowed + 1) * sizeof *more);
        if (!more)
            break;
        self->allowed = more;
        self->allowed[self->nallowed++] = strdup(tok);
    }
    free(copy);
    return 0;
}

/* CURVE on both sockets, with the ZAP handler bound first: libzmq admits every client key
   to a CURVE server when no handler is bound. */
static int s_secure(fz_broker_t *self, char *err, size_t errlen)
{
    char pub[FZ_CURVE_KEY], sec[FZ_CURVE_KEY], why[4400];
    if (fz_curve_load_secret(self->cfg.curve_secret, pub, sec, why, sizeof why))
        return fz_errf(err, errlen, "--curve-secret: %s", why);
    if (!self->cfg.keys_dir)
        return fz_errf(err, errlen, "--curve-secret needs --keys DIR");
    self->auth = fz_auth_new(self->cfg.keys_dir, err, errlen);
    if (!self->auth)
        return -1;
    fz_curve_server(self->router, pub, sec, FZ_AUTH_DOMAIN);
    fz_curve_server(self->pub, pub, sec, FZ_AUTH_DOMAIN_EVENTS);
    return 0;
}

fz_broker_t *fz_broker_new(const fz_broker_config_t *cfg, char *err, size_t errlen)
{
    fz_broker_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    self->rng = (uint64_t)fz_clock_ms() * 2654435761u + (uint64_t)getpid();
    self->tasks = zhashx_new();
    self->deadlined = zhashx_new();
    self->workers = zhashx_new();
    self->timed = zlistx_new();
    self->racing = zlistx_new();
    self->sched = fz_sched_new(cfg->max_running);
    self->history = fz_history_new(FZ_HISTORY_EVENTS, FZ_HISTORY_BYTES);
    self->guard = fz_guard_new();
    self->from = zframe_new_empty();
    zhashx_set_destructor(self->tasks, s_task_free);
    zhashx_set_destructor(self->workers, s_worker_free);
    s_parse_whitelist(self);
    for (int i = 0; self->sched && i < cfg->nmodel_caps; i++)
        fz_sched_set_cap(self->sched, cfg->model_caps[i].name, cfg->model_caps[i].cap);
    self->store = fz_store_open_checked(cfg->db, cfg->sync_full, cfg->integrity_check, err, errlen);
    if (!self->store)
        goto fail;
    int rc = s_load(self);
    fz_life_release_held(self);
    if (rc || fz_store_commit(self->store)) {
        snprintf(err, errlen, "cannot load tasks from %s: %s", cfg->db,
                 fz_store_error(self->store));
        goto fail;
    }
    if (cfg->sync_full && !(self->sync = fz_sync_new(fz_store_wal_fd(self->store), err, errlen)))
        goto fail;
    self->router = fz_net_socket(ZMQ_ROUTER);
    self->pub = fz_net_socket(ZMQ_PUB);
    if (!self->router || !self->pub || !self->from) {
        snprintf(err, errlen, "cannot create sockets: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    zsock_set_sndhwm(self->pub, FZ_PUB_HWM);
    zsock_set_sndhwm(self->router, FZ_ROUTER_HWM);
    if (cfg->curve_secret && s_secure(self, err, errlen))
        goto fail;
    if (fz_net_ipc_in_use(cfg->bind) || fz_net_ipc_in_use(cfg->events)) {
        snprintf(err, errlen, "cannot bind %s / %s: endpoint in use (another fz-broker?)",
                 cfg->bind, cfg->events);
        goto fail;
    }
    if (zsock_bind(self->router, "%s", cfg->bind) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", cfg->bind, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zsock_bind(self->pub, "%s", cfg->events) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", cfg->events, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return self;
fail:
    fz_broker_destroy(&self);
    return NULL;
}

void fz_broker_destroy(fz_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_broker_t *self = *self_p;
    /* The thread first: it may be syncing the store's WAL descriptor. */
    fz_sync_destroy(&self->sync);
    fz_outbox_drop_held(self);
    free(self->held);
    for (size_t i = 0; i < self->nout; i++)
        fz_enc_destroy(&self->out[i].enc);
    free(self->out);
    zframe_destroy(&self->from);
    if (self->store)
        fz_store_commit(self->store);
    fz_store_destroy(&self->store);
    zlistx_destroy(&self->timed);
    zlistx_destroy(&self->racing);
    zhashx_destroy(&self->deadlined);
    fz_history_destroy(&self->history);
    fz_sched_destroy(&self->sched);
    zhashx_destroy(&self->workers);
    zhashx_destroy(&self->guard);
    zhashx_destroy(&self->tasks);
    for (size_t i = 0; i < self->nallowed; i++)
        free(self->allowed[i]);
    free(self->allowed);
    fz_net_close_bound(&self->router);
    fz_net_close_bound(&self->pub);
    fz_auth_destroy(&self->auth);
    free(self);
    *self_p = NULL;
}

/* Whether a turn may read requests: not while a sync runs (what arrives meanwhile is read
   in one turn after it, and shares the next commit, as it did when the loop waited in the
   fdatasync itself; reading it at once costs a turn per message for no earlier reply, which
   waits for the sync anyway), and not once the messages queued reach their bound. Timers
   run while the disk syncs: heartbeats keep going out, and a worker is judged silent only
   after a turn that drained the socket. */
static bool s_may_read(const fz_broker_t *self)
{
    return self->out_bytes < FZ_TURN_BYTES && !(self->sync && fz_sync_busy(self->sync));
}

/* The sync under way has ended: the messages of its commit go out. A failed fdatasync
   leaves unknown what survives a power loss of everything committed since the last good
   one, and later commits stand on it: the loop stops, and what waited is not sent (the
   store on the disk decides at the next start). */
static void s_synced(fz_broker_t *self)
{
    double secs;
    int err = fz_sync_end(self->sync, &secs);
    self->loop.sync_s += secs;
    if (err) {
        fz_error("store: fdatasync of the WAL failed: %s; stopping, with %zu message(s) of "
                 "its commit unsent",
                 strerror(err), self->nheld);
        fz_outbox_drop_held(self);
        self->sync_failed = true;
        return;
    }
    fz_outbox_release(self);
}

/* Commits what the turns since the last commit wrote and sends their messages once it is
   durable. With --sync full the commit's fdatasync runs in the sync thread, and its
   messages wait in held until it ends; while it runs, turns run timers only and keep what
   they write and queue for the next commit. What the loop costs, for fz-web's /metrics: the
   turns' work and, of it, the commits; the fdatasyncs beside it are counted apart (sync_s). */
static void s_commit(fz_broker_t *self)
{
    if (self->sync && fz_sync_ended(self->sync))
        s_synced(self);
    if (self->sync_failed)
        return;
    if (self->sync && fz_sync_busy(self->sync)) {
        if (fz_store_failed(self->store))
            fz_outbox_abandon(self);
        return;
    }
    bool wrote = fz_store_in_turn(self->store);
    double c0 = fz_clock_s();
    int rc = self->sync ? fz_store_commit_unsynced(self->store) : fz_store_commit(self->store);
    if (wrote) {
        self->loop.commits++;
        self->loop.commit_s += fz_clock_s() - c0;
    }
    if (rc < 0) {
        fz_outbox_abandon(self);
        return;
    }
    /* A turn that wrote nothing still waits for nothing: what it read was synced. */
    if (self->sync && wrote) {
        fz_outbox_hold(self);
        if (fz_sync_start(self->sync) == 0)
            return;
        fz_error("store: cannot start the sync thread's fdatasync; syncing in the loop");
        if (fz_store_sync(self->store) < 0) {
            fz_outbox_drop_held(self);
            self->sync_failed = true;
            return;
        }
        fz_outbox_release(self);
    }
    fz_outbox_flush(self);
}

/* One turn: read what arrived, run timers, dispatch, commit, then send. */
static void s_turn(fz_broker_t *self)
{
    double t0 = fz_clock_s();
    /* Up to FZ_TURN_MAX messages, and no more once the messages queued reach FZ_TURN_BYTES;
       drained: nothing was left unread (only then is a silent peer judged dead). */
    bool drained = false;
    if (self->auth)
        fz_auth_serve(self->auth);
    if (self->sync && fz_sync_ended(self->sync))
        s_synced(self);
    if (self->sync_failed)
        return;
    for (int i = 0; i < FZ_TURN_MAX && s_may_read(self); i++)
        if (!s_recv(self)) {
            drained = true;
            break;
        }
    s_tick(self, fz_clock_ms(), drained);
    fz_life_release_held(self);
    fz_life_dispatch(self);
    s_commit(self);
    self->loop.turns++;
    self->loop.turn_s += fz_clock_s() - t0;
}

/* Before the loop stops: the sync under way ends, and what the turns since wrote is
   committed and synced here, then sent. */
static void s_settle(fz_broker_t *self)
{
    if (!self->sync)
        return;
    if (fz_sync_busy(self->sync))
        s_synced(self);
    if (self->sync_failed)
        return;
    if (fz_store_commit(self->store) < 0)
        fz_outbox_abandon(self);
    else
        fz_outbox_flush(self);
}

/* Waits for a request or a handshake to decide (the ZAP handler's socket), or for the sync
   under way to end, up to ms; > 0 when one may be waiting (fz_net_wait: the turn that follows
   reads what there is, or nothing). While a turn may not read (s_may_read), requests wait
   unread: the sync's end and the timers are waited for. */
static int s_poll(fz_broker_t *self, int ms)
{
    void *socks[2] = {s_may_read(self) ? zsock_resolve(self->router) : NULL,
                      self->auth ? fz_auth_socket(self->auth) : NULL};
    struct pollfd fds[3];
    int n = 0;
    if (self->sync && fz_sync_busy(self->sync))
        fds[n++] = (struct pollfd){.fd = fz_sync_fd(self->sync), .events = POLLIN};
    return fz_net_wait(socks, 2, fds, n, ms);
}

int fz_broker_step(fz_broker_t *self, int timeout_ms)
{
    int wait = s_poll_timeout(self, fz_clock_ms());
    if (s_poll(self, timeout_ms < wait ? timeout_ms : wait) < 0 && errno != EINTR)
        return -1;
    s_turn(self);
    return self->sync_failed ? -1 : 0;
}

int fz_broker_run(fz_broker_t *self)
{
    fz_info("listening on %s, events on %s, store %s (%zu live tasks%s)", self->cfg.bind,
            self->cfg.events, self->cfg.db, zhashx_size(self->tasks),
            self->paused ? ", paused" : "");
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_BROKER_STARTED, NULL);
    fz_enc_str(e, "version", FZ_VERSION);
    while (!fz_net_interrupted()) {
        s_turn(self);
        if (self->sync_failed)
            return 1;
        int rc = s_poll(self, s_poll_timeout(self, fz_clock_ms()));
        if (rc < 0 && errno != EINTR) {
            fz_error("poll failed: %s", zmq_strerror(errno));
            return 1;
        }
    }
    e = fz_outbox_event(self, FZ_TOPIC_BROKER_STOPPING, NULL);
    fz_enc_str(e, "version", FZ_VERSION);
    s_turn(self);
    s_settle(self);
    if (self->sync_failed)
        return 1;
    fz_info("stopped (signal %d); running agents go on and their workers will reconnect",
            fz_net_signal());
    return 0;
}
