/*  fz_requests: the client requests that change things (submit, cancel, control, retry, priority,
    purge); see fz_broker_int.h. */

#include "fz_broker_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The dependency ids of a submit map: explicit ids, then batch positions (before `index`)
   resolved through batch_ids. Writes at most 512; returns how many. */
static size_t s_dep_ids(const msgpack_object *m, const char *ids_key, const char *index_key,
                        const uint64_t *batch_ids, size_t index, uint64_t *out)
{
    size_t n = 0;
    const msgpack_object *a = fz_obj_get(m, ids_key);
    for (uint32_t i = 0; a && i < a->via.array.size && n < 512; i++)
        out[n++] = a->via.array.ptr[i].via.u64;
    a = fz_obj_get(m, index_key);
    for (uint32_t i = 0; a && batch_ids && i < a->via.array.size && n < 512; i++)
        if (a->via.array.ptr[i].via.u64 < index)
            out[n++] = batch_ids[a->via.array.ptr[i].via.u64];
    return n;
}

/* Checks a submit map against policy before anything is stored: FZ_OK or an error with a
   message for the submitter. */
static fz_err_t s_submit_check(fz_broker_t *self, const msgpack_object *m, size_t index,
                               fz_reason_t *reason, char *why, size_t wl)
{
    char model[65];
    fz_obj_str(m, "model", model, sizeof model);
    if (!fz_broker_model_allowed(self, model)) {
        snprintf(why, wl, "model '%s' is not allowed (allowed: %s)", model, self->cfg.models);
        *reason = FZ_REASON_MODEL_NOT_ALLOWED;
        return FZ_EREFUSED;
    }
    const msgpack_object *fb = fz_obj_get(m, "fallback");
    for (uint32_t i = 0; fb && i < fb->via.array.size; i++) {
        snprintf(model, sizeof model, "%.*s", (int)fb->via.array.ptr[i].via.str.size,
                 fb->via.array.ptr[i].via.str.ptr);
        if (!fz_broker_model_allowed(self, model)) {
            snprintf(why, wl, "fallback model '%s' is not allowed (allowed: %s)", model,
                     self->cfg.models);
            *reason = FZ_REASON_MODEL_NOT_ALLOWED;
            return FZ_EREFUSED;
        }
    }
    char repo[8], base[8];
    if (*fz_obj_str(m, "base", base, sizeof base) && !*fz_obj_str(m, "repo", repo, sizeof repo)) {
        snprintf(why, wl, "a base needs a repository (--repo)");
        *reason = FZ_REASON_BAD_FIELD;
        return FZ_EINVALID;
    }
    const char *keys[] = {"after", "after_any"};
    for (int k = 0; k < 2; k++) {
        const msgpack_object *a = fz_obj_get(m, keys[k]);
        for (uint32_t i = 0; a && i < a->via.array.size; i++)
            if (fz_broker_state_of(self, a->via.array.ptr[i].via.u64) < 0) {
                snprintf(why, wl, "--%s names task %llu, which does not exist",
                         k ? "after-any" : "after",
                         (unsigned long long)a->via.array.ptr[i].via.u64);
                *reason = FZ_REASON_NO_SUCH_DEPENDENCY;
                return FZ_EINVALID;
            }
    }
    const char *ikeys[] = {"after_index", "after_any_index"};
    for (int k = 0; k < 2; k++) {
        const msgpack_object *a = fz_obj_get(m, ikeys[k]);
        for (uint32_t i = 0; a && i < a->via.array.size; i++)
            if (a->via.array.ptr[i].via.u64 >= index) {
                snprintf(why, wl,
                         "task %zu of the batch depends on task %llu, which does not "
                         "come before it (a cycle or a forward reference)",
                         index, (unsigned long long)a->via.array.ptr[i].via.u64);
                *reason = FZ_REASON_BAD_DEPENDENCY;
                return FZ_EINVALID;
            }
    }
    uint64_t parent = fz_obj_uint(m, "parent", 0);
    if (parent) {
        uint32_t depth, children;
        int64_t prio;
        if (fz_broker_state_of(self, parent) < 0) {
            snprintf(why, wl, "parent task %llu does not exist", (unsigned long long)parent);
            *reason = FZ_REASON_NO_SUCH_PARENT;
            return FZ_EINVALID;
        }
        fz_store_tree_info(self->store, parent, &depth, &children, &prio);
        if (depth + 1 > self->cfg.max_depth) {
            snprintf(why, wl, "task %llu is at depth %u: subtasks would pass --max-depth %u",
                     (unsigned long long)parent, depth, self->cfg.max_depth);
            *reason = FZ_REASON_TOO_DEEP;
            return FZ_EREFUSED;
        }
        if (children >= self->cfg.max_children) {
            snprintf(why, wl, "task %llu already has %u subtasks (--max-children %u)",
                     (unsigned long long)parent, children, self->cfg.max_children);
            *reason = FZ_REASON_TOO_MANY_CHILDREN;
            return FZ_EREFUSED;
        }
    }
    return FZ_OK;
}

/* Where the dependencies of a new task leave it: pending count, or a failed one. */
typedef struct {
    uint32_t pending;
    uint64_t failed; /* an --after dependency that ended without success */
    fz_state_t failed_state;
} deps_t;

static void s_deps_state(fz_broker_t *self, const uint64_t *ids, size_t n, int kind, deps_t *d)
{
    for (size_t i = 0; i < n; i++) {
        int st = fz_broker_state_of(self, ids[i]);
        if (st < 0 || !fz_state_final((fz_state_t)st))
            d->pending++;
        else if (kind == 0 && st != FZ_STATE_SUCCEEDED && !d->failed) {
            d->failed = ids[i];
            d->failed_state = (fz_state_t)st;
        }
    }
}

/* Stores one checked submit map and makes its task live. Returns its id, 0 on a store
   failure. */
static uint64_t s_submit_one(fz_broker_t *self, const msgpack_object *m, const uint64_t *batch,
                             size_t index, fz_state_t *state_p)
{
    char model[65], name[129], why[160] = "";
    fz_store_newtask_t nt = {0};
    nt.prompt = fz_obj_strn(m, "prompt", &nt.prompt_len);
    nt.priority = fz_obj_int(m, "priority", 0);
    nt.model = fz_obj_str(m, "model", model, sizeof model);
    nt.name = fz_obj_str(m, "name", name, sizeof name);
    nt.timeout = (uint32_t)fz_obj_uint(m, "timeout", 0);
    if (!nt.timeout)
        nt.timeout = self->cfg.default_timeout;
    nt.max_cost = fz_obj_float(m, "max_cost", 0);
    nt.retries = (uint32_t)fz_obj_uint(m, "retries", self->cfg.default_retries);
    nt.parent = fz_obj_uint(m, "parent", 0);
    nt.deadline = fz_obj_float(m, "deadline", 0);
    nt.stall = (uint32_t)fz_obj_uint(m, "stall", 0);
    nt.stall_kill = (uint32_t)fz_obj_uint(m, "stall_kill", 0);
    nt.labels = fz_obj_get(m, "labels");
    nt.fallback = fz_obj_get(m, "fallback");
    /* Static: 20 KiB off the stack, and the broker handles one submit at a time. */
    static char repo[FZ_MAX_REPO + 1], base[FZ_MAX_REF + 1], check[FZ_MAX_CHECK + 1];
    nt.repo = fz_obj_str(m, "repo", repo, sizeof repo);
    nt.base = fz_obj_str(m, "base", base, sizeof base);
    nt.check = fz_obj_str(m, "check", check, sizeof check);
    nt.keep_worktree = fz_obj_bool(m, "keep_worktree", false);
    nt.best_of = (uint32_t)fz_obj_uint(m, "best_of", 0);
    if (nt.parent) {
        uint32_t depth, children;
        int64_t prio;
        fz_store_tree_info(self->store, nt.parent, &depth, &children, &prio);
        if (prio > nt.priority)
            nt.priority = prio; /* a subtask is at least as urgent as its parent */
    }
    uint64_t after[512], any[512];
    size_t nafter = s_dep_ids(m, "after", "after_index", batch, index, after);
    size_t nany = s_dep_ids(m, "after_any", "after_any_index", batch, index, any);
    deps_t d = {0};
    s_deps_state(self, after, nafter, 0, &d);
    s_deps_state(self, any, nany, 1, &d);
    if (d.failed)
        fz_graph_depfail_why(d.failed, d.failed_state, why, sizeof why);
    nt.state = d.failed ? FZ_STATE_DEP_FAILED : d.pending ? FZ_STATE_WAITING : FZ_STATE_QUEUED;
    nt.summary = why;
    /* The stored after/after_any lists are the resolved ids. */
    msgpack_object_array arr_a = {0}, arr_any = {0};
    msgpack_object objs[1024], oa, oany;
    for (size_t i = 0; i < nafter; i++)
        objs[i] = (msgpack_object){.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = after[i]};
    for (size_t i = 0; i < nany; i++)
        objs[512 + i] =
            (msgpack_object){.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = any[i]};
    arr_a = (msgpack_object_array){(uint32_t)nafter, objs};
    arr_any = (msgpack_object_array){(uint32_t)nany, objs + 512};
    oa = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = arr_a};
    oany = (msgpack_object){.type = MSGPACK_OBJECT_ARRAY, .via.array = arr_any};
    nt.after = &oa;
    nt.after_any = &oany;

    uint64_t id = fz_store_task_add(self->store, &nt);
    if (id && *self->peer_user && fz_store_task_set_owner(self->store, id, self->peer_user))
        id = 0;
    for (size_t i = 0; id && i < nafter; i++)
        if (fz_store_dep_add(self->store, id, after[i], 0))
            id = 0;
    for (size_t i = 0; id && i < nany; i++)
        if (fz_store_dep_add(self->store, id, any[i], 1))
            id = 0;
    if (id)
        fz_broker_count_move(self, -1, (int)nt.state);
    fz_task_t *t = id && !d.failed ? calloc(1, sizeof *t) : NULL;
    *state_p = nt.state;
    if (!id || (!t && !d.failed))
        return 0;

    fz_task_t tmp = {0};
    fz_task_t *ev = t ? t : &tmp; /* a dep-failed task never lives in memory */
    ev->id = id;
    ev->state = nt.state;
    ev->priority = nt.priority;
    snprintf(ev->model, sizeof ev->model, "%s", nt.model);
    ev->retries = nt.retries;
    ev->timeout_s = nt.timeout;
    ev->max_cost = nt.max_cost;
    ev->parent = nt.parent;
    ev->deadline = nt.deadline;
    ev->stall_s = nt.stall;
    ev->stall_kill_s = nt.stall_kill;
    ev->best_of = nt.best_of;
    ev->deps_pending = d.pending;
    ev->inherited = INT64_MIN;
    /* A subtask may take labels from its parent. */
    ev->bare = !nt.parent && !*nt.repo && !*nt.check &&
               (!nt.labels || nt.labels->type != MSGPACK_OBJECT_MAP || !nt.labels->via.map.size);
    fz_enc_t *e = fz_outbox_event(self, FZ_TOPIC_TASK_SUBMITTED, ev);
    fz_enc_str(e, "name", nt.name);
    fz_enc_strn(e, "prompt", nt.prompt, fz_utf8_cut(nt.prompt, nt.prompt_len, 200));
    if (d.failed) {
        e = fz_outbox_event(self, FZ_TOPIC_TASK_DEP_FAILED, ev);
        fz_enc_str(e, "summary", why);
        return id;
    }
    fz_broker_adopt(self, t);
    if (t->state == FZ_STATE_QUEUED)
        fz_life_ready(self, t);
    else
        fz_graph_inherit(self, t);
    return id;
}

/* ---------------------------------------------------------------- idempotency keys */

/* A request's idempotency key into key[129] ("" when it has none; the spec caps it at 128
   bytes). */
static const char *s_key(const msgpack_object *m, char key[129])
{
    return fz_obj_str(m, "idempotency_key", key, 129);
}

/* A submit (batch false) or submit-batch retried with a key the store holds: answers with
   what that key created, flagged `duplicate`, and returns true. False when the key is new
   (or expired): the request goes on as a first one. Checks are not run again: the reply
   is the one the first request earned. */
static bool s_replay(fz_broker_t *self, zframe_t *from, uint64_t rid, const char *key, bool batch)
{
    if (!*key)
        return false;
    fz_store_key_t *k = malloc(sizeof *k);
    int found = k ? fz_store_key_find(self->store, key, fz_wall() - self->cfg.key_ttl_s, k) : -1;
    if (found == 0) {
        free(k);
        return false;
    }
    if (found < 0)
        fz_outbox_error(self, from, rid, FZ_EUNAVAILABLE, FZ_REASON_STORE_FAILED,
                        "the broker could not read its idempotency keys: %s",
                        fz_store_error(self->store));
    else if (batch != (k->state < 0))
        fz_outbox_error(self, from, rid, FZ_EINVALID, FZ_REASON_BAD_FIELD,
                        "this idempotency key was used by a %s: use a new key",
                        batch ? "submit" : "submit-batch");
    else {
        fz_enc_t *r = fz_enc_reply(batch ? "submitted-batch" : "submitted", rid);
        if (batch) {
            fz_enc_array(r, "tasks", k->n);
            for (size_t i = 0; i < k->n; i++)
                fz_enc_uint(r, NULL, k->ids[i]);
        } else {
            int now = fz_broker_state_of(self, k->ids[0]); /* -1: purged since */
            fz_enc_uint(r, "task", k->ids[0]);
            fz_enc_str(r, "state", fz_state_name((fz_state_t)(now >= 0 ? now : k->state)));
        }
        fz_enc_bool(r, "duplicate", true);
        fz_outbox_reply(self, from, rid, r);
        fz_debug("a retried %s (idempotency key known): answered with what it stored",
                 batch ? "submit-batch" : "submit");
    }
    free(k);
    return true;
}

void fz_requests_prune_keys(fz_broker_t *self, int64_t now_ms)
{
    if (now_ms < self->next_key_prune_ms)
        return;
    self->next_key_prune_ms = now_ms + FZ_KEY_PRUNE_MS;
    int64_t n = fz_store_key_prune(self->store, fz_wall() - self->cfg.key_ttl_s);
    if (n > 0)
        fz_debug("forgot %lld expired idempotency keys", (long long)n);
}

void fz_requests_submit(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    char why[512], key[129];
    uint64_t rid = fz_msg_rid(msg);
    if (s_replay(self, from, rid, s_key(fz_msg_root(msg), key), false))
        return;
    fz_reason_t reason = FZ_REASON_NONE;
    fz_err_t err = s_submit_check(self, fz_msg_root(msg), 0, &reason, why, sizeof why);
    if (err) {
        fz_outbox_error(self, from, rid, err, reason, "%s", why);
        return;
    }
    fz_state_t state;
    uint64_t id = s_submit_one(self, fz_msg_root(msg), NULL, 0, &state);
    if (!id) {
        fz_outbox_error(self, from, rid, FZ_EUNAVAILABLE, FZ_REASON_STORE_FAILED,
                        "the broker could not store the task: %s", fz_store_error(self->store));
        return;
    }
    if (*key)
        fz_store_key_add(self->store, key, fz_wall(), &id, 1, (int)state);
    fz_enc_t *r = fz_enc_reply("submitted", rid);
    fz_enc_uint(r, "task", id);
    fz_enc_str(r, "state", fz_state_name(state));
    fz_outbox_reply(self, from, rid, r);
}

/* A graph of tasks in one request: all are checked before any is stored, and they are
   stored in the turn's one transaction, so the batch lands whole or not at all. */
void fz_requests_submit_batch(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    char why[512], key[129];
    uint64_t rid = fz_msg_rid(msg);
    if (s_replay(self, from, rid, s_key(fz_msg_root(msg), key), true))
        return;
    const msgpack_object *tasks = fz_msg_obj(msg, "tasks");
    size_t n = tasks->via.array.size;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *m = &tasks->via.array.ptr[i];
        fz_reason_t reason = FZ_REASON_BAD_FIELD;
        fz_err_t err = fz_msg_check_object(m, "submit", why, sizeof why);
        if (err == FZ_EMALFORMED)
            reason = FZ_REASON_MALFORMED;
        if (!err)
            err = s_submit_check(self, m, i, &reason, why, sizeof why);
        if (err) {
            char message[700];
            snprintf(message, sizeof message, "%s (nothing was stored)", why);
            fz_outbox_error_at(self, from, rid, err, reason, i, message);
            return;
        }
    }
    uint64_t ids[1000];
    for (size_t i = 0; i < n; i++) {
        fz_state_t state;
        ids[i] = s_submit_one(self, &tasks->via.array.ptr[i], ids, i, &state);
        if (!ids[i]) {
            /* Abandon the whole turn: the batch must not land in part. */
            fz_outbox_error(self, from, rid, FZ_EUNAVAILABLE, FZ_REASON_STORE_FAILED,
                            "the broker could not store it");
            fz_store_fail_turn(self->store);
            return;
        }
    }
    if (*key)
        fz_store_key_add(self->store, key, fz_wall(), ids, n, -1);
    fz_enc_t *r = fz_enc_reply("submitted-batch", rid);
    fz_enc_array(r, "tasks", n);
    for (size_t i = 0; i < n; i++)
        fz_enc_uint(r, NULL, ids[i]);
    fz_outbox_reply(self, from, rid, r);
}

static void s_reply_ok(fz_broker_t *self, zframe_t *from, uint64_t rid, uint64_t task,
                       const char *state)
{
    fz_enc_t *r = fz_enc_reply("ok", rid);
    if (task)
        fz_enc_uint(r, "task", task);
    if (state)
        fz_enc_str(r, "state", state);
    fz_outbox_reply(self, from, rid, r);
}

/* Cancels every live task of the subtree below id; how many. */
static uint64_t s_cancel_subtree(fz_broker_t *self, uint64_t id)
{
    fz_deps_t sub = {0};
    uint64_t count = 0;
    if (fz_store_subtree(self->store, id, &sub) == 0)
        for (size_t i = 0; i < sub.n; i++) {
            fz_task_t *t = fz_broker_task(self, sub.v[i].id);
            if (t) {
                fz_life_cancel(self, t);
                count++;
            }
        }
    fz_deps_free(&sub);
    return count;
}

void fz_requests_cancel(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0), rid = fz_msg_rid(msg);
    int state = fz_broker_state_of(self, id);
    if (state < 0) {
        fz_outbox_error(self, from, rid, FZ_ENOTFOUND, FZ_REASON_NO_SUCH_TASK, "no task %llu",
                        (unsigned long long)id);
        return;
    }
    /* Cancelling a task cancels its subtree: the subtasks its agent created. */
    uint64_t count = s_cancel_subtree(self, id);
    fz_task_t *t = fz_broker_task(self, id);
    if (!t && !count) {
        fz_outbox_error(self, from, rid, FZ_ECONFLICT, FZ_REASON_ENDED, "task %llu already %s",
                        (unsigned long long)id, fz_state_name((fz_state_t)state));
        return;
    }
    if (t)
        fz_life_cancel(self, t);
    t = fz_broker_task(self, id);
    fz_enc_t *r = fz_enc_reply("ok", rid);
    fz_enc_uint(r, "task", id);
    fz_enc_str(r, "state", fz_state_name(t ? t->state : (fz_state_t)fz_broker_state_of(self, id)));
    fz_enc_uint(r, "count", count);
    fz_outbox_reply(self, from, rid, r);
}

static void s_set_paused(fz_broker_t *self, bool paused)
{
    self->paused = paused;
    fz_store_meta_set(self->store, "paused", paused);
    fz_outbox_event(self, paused ? FZ_TOPIC_BROKER_PAUSED : FZ_TOPIC_BROKER_RESUMED, NULL);
}

void fz_requests_pause(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (!self->paused)
        s_set_paused(self, true);
    s_reply_ok(self, from, fz_msg_rid(msg), 0, NULL);
}

void fz_requests_resume(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (self->paused)
        s_set_paused(self, false);
    s_reply_ok(self, from, fz_msg_rid(msg), 0, NULL);
}

void fz_requests_stop(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    if (!self->paused)
        s_set_paused(self, true);
    uint64_t n = 0;
    for (fz_task_t *t = zhashx_first(self->tasks); t; t = zhashx_next(self->tasks))
        if (t->state == FZ_STATE_RUNNING) {
            t->cancel_requested = true;
            fz_store_task_flags(self->store, t->id, t->attempt_base, true);
            if (t->worker)
                fz_life_send_cancel(self, t->worker, t->id, t->attempt, "stop");
            n++;
        }
    fz_enc_t *r = fz_enc_reply("ok", fz_msg_rid(msg));
    fz_enc_uint(r, "count", n);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
}

void fz_requests_retry(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0), rid = fz_msg_rid(msg);
    int state = fz_broker_state_of(self, id);
    if (state < 0 || fz_broker_task(self, id)) {
        fz_outbox_error(self, from, rid, state < 0 ? FZ_ENOTFOUND : FZ_ECONFLICT,
                        state < 0 ? FZ_REASON_NO_SUCH_TASK : FZ_REASON_NOT_ENDED,
                        state < 0 ? "no task %llu" : "task %llu has not ended",
                        (unsigned long long)id);
        return;
    }
    if (state == FZ_STATE_SUCCEEDED) {
        fz_outbox_error(self, from, rid, FZ_ECONFLICT, FZ_REASON_ALREADY_SUCCEEDED,
                        "task %llu already succeeded", (unsigned long long)id);
        return;
    }
    fz_state_t next = FZ_STATE_QUEUED;
    if (state == FZ_STATE_DEP_FAILED) {
        /* It runs only if what it waits for can still succeed. */
        waitcount_t w = fz_graph_count(self, id);
        if (w.failed) {
            fz_outbox_error(self, from, rid, FZ_ECONFLICT, FZ_REASON_DEPENDENCY_FAILED,
                            "task %llu waits for task %llu, which %s: retry that one (its "
                            "dependents come back with it)",
                            (unsigned long long)id, (unsigned long long)w.failed,
                            fz_state_name(w.failed_state));
            return;
        }
        next = w.pending ? FZ_STATE_WAITING : FZ_STATE_QUEUED;
    }
    fz_task_t *t = fz_graph_revive(self, id, next);
    if (!t) {
        fz_outbox_error(self, from, rid, FZ_EUNAVAILABLE, FZ_REASON_STORE_FAILED,
                        "cannot load task %llu", (unsigned long long)id);
        return;
    }
    if (next == FZ_STATE_WAITING) {
        t->deps_pending = fz_graph_count(self, id).pending;
        fz_graph_inherit(self, t);
    }
    fz_graph_revive_dependents(self, id);
    s_reply_ok(self, from, rid, id, fz_state_name(next));
}

static void s_set_priority(fz_broker_t *self, zframe_t *from, uint64_t rid, uint64_t id,
                           int64_t prio)
{
    if (fz_broker_state_of(self, id) < 0) {
        fz_outbox_error(self, from, rid, FZ_ENOTFOUND, FZ_REASON_NO_SUCH_TASK, "no task %llu",
                        (unsigned long long)id);
        return;
    }
    fz_store_task_priority(self->store, id, prio);
    fz_task_t *t = fz_broker_task(self, id);
    if (t) {
        t->priority = prio;
        fz_life_rerank(self, t);
        if (t->state == FZ_STATE_WAITING)
            fz_graph_inherit(self, t);
        fz_outbox_event(self, FZ_TOPIC_TASK_PRIORITY, t);
    }
    fz_enc_t *r = fz_enc_reply("ok", rid);
    fz_enc_uint(r, "task", id);
    if (t)
        fz_enc_str(r, "state", fz_state_name(t->state));
    fz_enc_int(r, "priority", prio);
    fz_outbox_reply(self, from, rid, r);
}

void fz_requests_priority(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    s_set_priority(self, from, fz_msg_rid(msg), fz_msg_uint(msg, "task", 0),
                   fz_msg_int(msg, "priority", 0));
}

/* Escalate: above every live task's effective priority, so it goes next. */
void fz_requests_escalate(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    uint64_t id = fz_msg_uint(msg, "task", 0);
    fz_task_t *t = fz_broker_task(self, id);
    if (!t) {
        int state = fz_broker_state_of(self, id);
        fz_outbox_error(self, from, fz_msg_rid(msg), state < 0 ? FZ_ENOTFOUND : FZ_ECONFLICT,
                        state < 0 ? FZ_REASON_NO_SUCH_TASK : FZ_REASON_ENDED,
                        state < 0 ? "no task %llu" : "task %llu has ended", (unsigned long long)id);
        return;
    }
    double now = fz_wall(), top = (double)t->priority;
    for (fz_task_t *o = zhashx_first(self->tasks); o; o = zhashx_next(self->tasks))
        if (o != t && fz_life_effective(self, o, now) > top)
            top = fz_life_effective(self, o, now);
    int64_t prio = (int64_t)ceil(top) + 1;
    if (prio > 1000000)
        prio = 1000000;
    s_set_priority(self, from, fz_msg_rid(msg), id, prio > t->priority ? prio : t->priority);
}

/* Retention: ended tasks older than `before` go. Today's stay whatever is asked: the budget
   is counted from them. */
/* An online copy of the store, written on the broker's host. It blocks the loop while it
   copies (about a second per 100 MB here): take it when a pause of that length is fine. */
void fz_requests_backup(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    char err[600];
    const char *path = fz_msg_str(msg, "path", "", NULL);
    int64_t bytes = fz_store_backup(self->store, path, err, sizeof err);
    if (bytes < 0) {
        fz_outbox_error(self, from, fz_msg_rid(msg), bytes == -2 ? FZ_EINVALID : FZ_EUNAVAILABLE,
                        bytes == -2 ? FZ_REASON_BAD_FIELD : FZ_REASON_STORE_FAILED, "%s", err);
        return;
    }
    fz_enc_t *r = fz_enc_reply("ok", fz_msg_rid(msg));
    fz_enc_uint(r, "bytes", (uint64_t)bytes);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
    fz_info("backup of the store written to %s (%lld bytes)", path, (long long)bytes);
}

void fz_requests_purge(fz_broker_t *self, zframe_t *from, fz_msg_t *msg)
{
    double before = fz_msg_float(msg, "before", 0);
    if (before > self->budget.day_start)
        before = self->budget.day_start;
    int64_t n = fz_store_purge(self->store, before);
    if (n > 0 && fz_store_counts(self->store, self->counts))
        n = -1; /* the count of what is left is read again: purge is rare, and by state */
    if (n < 0) {
        fz_outbox_error(self, from, fz_msg_rid(msg), FZ_EUNAVAILABLE, FZ_REASON_STORE_FAILED,
                        "purge failed: %s", fz_store_error(self->store));
        return;
    }
    fz_enc_t *r = fz_enc_reply("ok", fz_msg_rid(msg));
    fz_enc_uint(r, "count", (uint64_t)n);
    fz_outbox_reply(self, from, fz_msg_rid(msg), r);
    fz_info("purged %lld ended tasks", (long long)n);
}
