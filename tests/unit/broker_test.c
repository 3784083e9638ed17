/*  broker_test: the broker's rules, in process (broker/fz_broker.c and the files behind
    fz_broker_int.h), on inproc:// endpoints and a database in a temp dir.

    A test drives the real handlers through DEALER sockets (a client, and fake workers that
    speak the worker protocol by hand), turns the loop with fz_broker_step, and asserts three
    things together: the reply or message, the store's row (through a second, read-only
    connection: what a crash would leave) and the event on the PUB socket. Covered: the life
    cycle, retries and backoff, exit 75, rejected attempts, reattach after a restart, rehello,
    superseded attempts, lost attempts, dependency failure and revival, budget holds and
    releases, cancel of a running task, name-taken and unknown-peer reasons, and the reply
    fields clients rely on. */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <czmq.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fz_broker.h"
#include "fz_event.h"
#include "fz_msg.h"
#include "fz_net.h"
#include "fz_util.h"
#include "testdir.h"

/* Turns a test may wait for one thing; at 5 ms a turn, about a second. */
#define S_MAX_TURNS 200

/* ---------------------------------------------------------------- fixture */

typedef struct {
    char dir[64];
    char db[128];
    char ep[96], ev[96];
    fz_broker_config_t cfg;
    fz_broker_t *broker;
    zsock_t *client; /* DEALER */
    zsock_t *sub;    /* every event */
    sqlite3 *ro;     /* read-only view of the database */
    uint64_t rid;
} fx_t;

typedef void(tune_fn)(fz_broker_config_t *cfg);

/* The next fixture's ROUTER listens on ipc:// (in its temp dir) instead of inproc://. */
static bool s_ipc;

static void s_start_broker(fx_t *fx)
{
    char err[256] = "";
    fx->broker = fz_broker_new(&fx->cfg, err, sizeof err);
    if (!fx->broker)
        fail_msg("fz_broker_new: %s", err);
    fx->client = fz_net_socket(ZMQ_DEALER);
    fx->sub = fz_net_socket(ZMQ_SUB);
    assert_non_null(fx->client);
    assert_non_null(fx->sub);
    assert_int_equal(zsock_connect(fx->client, "%s", fx->ep), 0);
    zsock_set_subscribe(fx->sub, "");
    assert_int_equal(zsock_connect(fx->sub, "%s", fx->ev), 0);
}

static void s_stop_broker(fx_t *fx)
{
    zsock_destroy(&fx->client);
    zsock_destroy(&fx->sub);
    fz_broker_destroy(&fx->broker);
}

static fx_t *s_fx(tune_fn *tune)
{
    static unsigned counter;
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_non_null(fz_testdir(fx->dir, sizeof fx->dir, "fz-broker-test"));
    snprintf(fx->db, sizeof fx->db, "%s/fz.db", fx->dir);
    counter++;
    snprintf(fx->ep, sizeof fx->ep, "inproc://broker-test-%d-%u", (int)getpid(), counter);
    if (s_ipc) /* inproc moves no bytes, so libzmq checks no sizes on it */
        snprintf(fx->ep, sizeof fx->ep, "ipc://%s/router", fx->dir);
    snprintf(fx->ev, sizeof fx->ev, "inproc://broker-test-ev-%d-%u", (int)getpid(), counter);
    fz_broker_config_defaults(&fx->cfg);
    fx->cfg.bind = fx->ep;
    fx->cfg.events = fx->ev;
    fx->cfg.db = fx->db;
    fx->cfg.sync_full = false;
    fx->cfg.heartbeat_ms = 100;
    fx->cfg.backoff_min_ms = 40;
    fx->cfg.backoff_max_ms = 80;
    if (tune)
        tune(&fx->cfg);
    s_start_broker(fx);
    assert_int_equal(sqlite3_open_v2(fx->db, &fx->ro, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    return fx;
}

static fz_msg_t *s_next(fx_t *fx, zsock_t *sock);

/* The counts of a status (the broker's tally, kept by its moves) are the store's: checked at
   the end of every test, whatever the test did (retries, revivals, purges, restarts). */
static void s_counts_agree(fx_t *fx)
{
    fz_enc_t *req = fz_enc_new("status", ++fx->rid);
    assert_int_equal(fz_net_send(fx->client, NULL, &req), 0);
    fz_msg_t *st = NULL;
    for (int i = 0; i < 1000 && !st; i++) { /* replies a test left unread go first */
        fz_msg_t *m = s_next(fx, fx->client);
        if (fz_msg_is(m, "status") && fz_msg_rid(m) == fx->rid)
            st = m;
        else
            fz_msg_destroy(&m);
    }
    assert_non_null(st);
    const msgpack_object *counts = fz_msg_obj(st, "counts");
    assert_non_null(counts);
    sqlite3_stmt *q = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(fx->ro, "SELECT COUNT(*) FROM tasks WHERE state = ?1", -1, &q, NULL),
        SQLITE_OK);
    for (int s = 0; s < FZ_STATE_COUNT; s++) {
        const char *name = fz_state_name((fz_state_t)s);
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        uint64_t stored = (uint64_t)sqlite3_column_int64(q, 0);
        sqlite3_reset(q);
        if (fz_obj_uint(counts, name, UINT64_MAX) != stored)
            fail_msg("status counts %llu %s tasks, the store %llu",
                     (unsigned long long)fz_obj_uint(counts, name, UINT64_MAX), name,
                     (unsigned long long)stored);
    }
    sqlite3_finalize(q);
    fz_msg_destroy(&st);
}

static void s_fx_destroy(fx_t **fx_p)
{
    fx_t *fx = *fx_p;
    if (fx->broker && fx->client)
        s_counts_agree(fx);
    s_stop_broker(fx);
    sqlite3_close(fx->ro);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        print_error("could not remove %s\n", fx->dir);
    free(fx);
    *fx_p = NULL;
}

/* ---------------------------------------------------------------- turning the loop */

static void s_turns(fx_t *fx, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(fz_broker_step(fx->broker, 5), 0);
}

static bool s_readable(zsock_t *sock)
{
    zmq_pollitem_t item = {zsock_resolve(sock), 0, ZMQ_POLLIN, 0};
    return zmq_poll(&item, 1, 0) == 1;
}

/* Every message and event the broker sends, in every test here, is checked strictly against
   its spec (proto/fz_spec.c, PROTOCOL.md): a key the spec does not list, a wrong type, a
   missing required key is drift between the broker, the table and the document. */
static void s_conforms(const fz_msg_t *m)
{
    char why[512];
    if (fz_msg_check_strict(m, why, sizeof why) != FZ_OK)
        fail_msg("the broker sent a '%s' beyond its spec: %s", fz_msg_type(m), why);
}

static void s_event_conforms(const fz_event_t *e)
{
    const char *topic = fz_event_topic(e);
    const fz_msgspec_t *spec = fz_spec_event_named(topic, strlen(topic));
    if (!spec)
        fail_msg("the broker sent an event of topic '%s', which has no spec", topic);
    char why[512], event[64];
    assert_string_equal(fz_obj_str(fz_event_map(e), "event", event, sizeof event), topic);
    if (fz_obj_check_strict(fz_event_map(e), spec, why, sizeof why) != FZ_OK)
        fail_msg("the broker sent a %s event beyond its spec: %s", topic, why);
}

/* The next message on sock that is not a heartbeat, turning the loop until it comes. */
static fz_msg_t *s_next(fx_t *fx, zsock_t *sock)
{
    for (int i = 0; i < S_MAX_TURNS; i++) {
        while (s_readable(sock)) {
            fz_msg_t *m = fz_net_recv_msg(sock);
            assert_non_null(m);
            s_conforms(m);
            if (!fz_msg_is(m, "heartbeat"))
                return m;
            fz_msg_destroy(&m);
        }
        s_turns(fx, 1);
    }
    fail_msg("no message within %d turns", S_MAX_TURNS);
    return NULL;
}

/* The next message of `type` on sock (others are skipped). */
static fz_msg_t *s_expect(fx_t *fx, zsock_t *sock, const char *type)
{
    for (int i = 0; i < 50; i++) {
        fz_msg_t *m = s_next(fx, sock);
        if (fz_msg_is(m, type))
            return m;
        fz_msg_destroy(&m);
    }
    fail_msg("no '%s' message", type);
    return NULL;
}

/* True if a message of `type` arrives on sock within n turns. */
static bool s_gets(fx_t *fx, zsock_t *sock, const char *type, int n)
{
    for (int i = 0; i < n; i++) {
        while (s_readable(sock)) {
            fz_msg_t *m = fz_net_recv_msg(sock);
            if (m)
                s_conforms(m);
            bool hit = m && fz_msg_is(m, type);
            fz_msg_destroy(&m);
            if (hit)
                return true;
        }
        s_turns(fx, 1);
    }
    return false;
}

static fz_enc_t *s_req(fx_t *fx, const char *type)
{
    return fz_enc_new(type, ++fx->rid);
}

/* Sends a request from the client and returns its reply (checked to carry the rid). */
static fz_msg_t *s_call(fx_t *fx, fz_enc_t *req)
{
    uint64_t rid = fx->rid;
    assert_int_equal(fz_net_send(fx->client, NULL, &req), 0);
    fz_msg_t *reply = s_next(fx, fx->client);
    assert_int_equal(fz_msg_rid(reply), rid);
    return reply;
}

/* The error reply's code and reason, checked; the reply is consumed. */
static void s_assert_error(fz_msg_t **reply_p, const char *code, const char *reason)
{
    fz_msg_t *r = *reply_p;
    assert_true(fz_msg_is(r, "error"));
    assert_string_equal(fz_msg_str(r, "code", "", NULL), code);
    assert_string_equal(fz_msg_str(r, "reason", "", NULL), reason);
    fz_msg_destroy(reply_p);
}

static uint64_t s_submit(fx_t *fx, const char *prompt, uint32_t retries, double max_cost)
{
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", prompt);
    fz_enc_uint(req, "retries", retries);
    if (max_cost > 0)
        fz_enc_float(req, "max_cost", max_cost);
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "submitted"));
    uint64_t id = fz_msg_uint(r, "task", 0);
    assert_true(id > 0);
    fz_msg_destroy(&r);
    return id;
}

/* The next event of `topic` about `task` (0: any), turning the loop; others are skipped. */
static fz_event_t *s_event(fx_t *fx, const char *topic, uint64_t task)
{
    char why[256];
    for (int i = 0; i < S_MAX_TURNS; i++) {
        while (s_readable(fx->sub)) {
            fz_event_t *e = fz_event_recv(fx->sub, why, sizeof why);
            if (!e)
                fail_msg("bad event: %s", why);
            s_event_conforms(e);
            if (strcmp(fz_event_topic(e), topic) == 0 && (!task || fz_event_task(e) == task))
                return e;
            fz_event_destroy(&e);
        }
        s_turns(fx, 1);
    }
    fail_msg("no event %s for task %llu within %d turns", topic, (unsigned long long)task,
             S_MAX_TURNS);
    return NULL;
}

/* Waits for the event and checks its state field. */
static void s_assert_event(fx_t *fx, const char *topic, uint64_t task, const char *state)
{
    fz_event_t *e = s_event(fx, topic, task);
    char buf[32];
    assert_string_equal(fz_obj_str(fz_event_map(e), "state", buf, sizeof buf), state);
    fz_event_destroy(&e);
}

/* A text column of the stored task row (what survives a crash). */
static const char *s_row(fx_t *fx, uint64_t id, const char *column)
{
    static char value[512];
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT %s FROM tasks WHERE id = ?1", column);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(fx->ro, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    value[0] = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(value, sizeof value, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return value;
}

/* A text column of attempt n of task id. */
static const char *s_attempt_row(fx_t *fx, uint64_t id, int n, const char *column)
{
    static char value[512];
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT %s FROM attempts WHERE task = ?1 AND n = ?2", column);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(fx->ro, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int(st, 2, n);
    value[0] = 0;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(value, sizeof value, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return value;
}

/* ---------------------------------------------------------------- fake workers */

/* A hello that claims (task, attempt) if task is not 0; the caller may add to it. */
static fz_enc_t *s_hello_enc(const char *name, const char *nonce, uint64_t task, uint32_t attempt)
{
    fz_enc_t *hello = fz_enc_new("hello", 1);
    fz_enc_str(hello, "name", name);
    fz_enc_str(hello, "nonce", nonce);
    if (task) {
        fz_enc_uint(hello, "task", task);
        fz_enc_uint(hello, "attempt", attempt);
    }
    return hello;
}

/* A new worker connection that sends hello. */
static zsock_t *s_worker_send_hello(fx_t *fx, fz_enc_t *hello)
{
    zsock_t *w = fz_net_socket(ZMQ_DEALER);
    assert_non_null(w);
    assert_int_equal(zsock_connect(w, "%s", fx->ep), 0);
    assert_int_equal(fz_net_send(w, NULL, &hello), 0);
    return w;
}

static zsock_t *s_worker_hello(fx_t *fx, const char *name, const char *nonce, uint64_t task,
                               uint32_t attempt)
{
    return s_worker_send_hello(fx, s_hello_enc(name, nonce, task, attempt));
}

/* A worker that said hello and was welcomed. */
static zsock_t *s_worker(fx_t *fx, const char *name)
{
    zsock_t *w = s_worker_hello(fx, name, name, 0, 0);
    fz_msg_t *m = s_expect(fx, w, "welcome");
    assert_string_equal(fz_msg_str(m, "name", "", NULL), name);
    fz_msg_destroy(&m);
    return w;
}

/* The dispatch the worker gets next: checks the task and returns the attempt number. */
static uint32_t s_dispatched(fx_t *fx, zsock_t *w, uint64_t task)
{
    fz_msg_t *d = s_expect(fx, w, "dispatch");
    assert_int_equal(fz_msg_uint(d, "task", 0), task);
    uint32_t attempt = (uint32_t)fz_msg_uint(d, "attempt", 0);
    fz_msg_destroy(&d);
    return attempt;
}

/* A result with a failure class (and a reset time) as an adapter reports it. */
static void s_send_class(zsock_t *w, uint64_t task, uint32_t attempt, const char *cls,
                         double reset_at)
{
    fz_enc_t *r = fz_enc_new("result", 0);
    fz_enc_uint(r, "task", task);
    fz_enc_uint(r, "attempt", attempt);
    fz_enc_str(r, "outcome", "exited");
    fz_enc_int(r, "exit_code", 75);
    fz_enc_float(r, "cost_usd", 0.01);
    fz_enc_str(r, "class", cls);
    if (reset_at > 0)
        fz_enc_float(r, "reset_at", reset_at);
    assert_int_equal(fz_net_send(w, NULL, &r), 0);
}

static void s_send_result(zsock_t *w, uint64_t task, uint32_t attempt, const char *outcome,
                          int64_t exit_code, double cost)
{
    fz_enc_t *r = fz_enc_new("result", 0);
    fz_enc_uint(r, "task", task);
    fz_enc_uint(r, "attempt", attempt);
    fz_enc_str(r, "outcome", outcome);
    fz_enc_int(r, "exit_code", exit_code);
    fz_enc_uint(r, "duration_ms", 12);
    fz_enc_float(r, "cost_usd", cost);
    fz_enc_uint(r, "tokens_in", 100);
    fz_enc_uint(r, "tokens_out", 7);
    fz_enc_str(r, "summary", "done");
    assert_int_equal(fz_net_send(w, NULL, &r), 0);
}

/* Sends a result and checks that it is acknowledged. */
static void s_result(fx_t *fx, zsock_t *w, uint64_t task, uint32_t attempt, const char *outcome,
                     int64_t exit_code, double cost)
{
    s_send_result(w, task, attempt, outcome, exit_code, cost);
    fz_msg_t *ack = s_expect(fx, w, "result-ack");
    assert_int_equal(fz_msg_uint(ack, "task", 0), task);
    assert_int_equal(fz_msg_uint(ack, "attempt", 0), attempt);
    fz_msg_destroy(&ack);
}

/* ---------------------------------------------------------------- the life cycle */

static void test_submit_run_succeed(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "write the tests", 0, 0);
    assert_string_equal(s_row(fx, id, "state"), "queued");
    s_assert_event(fx, "task.submitted", id, "queued");

    zsock_t *w = s_worker(fx, "w1");
    assert_int_equal(s_dispatched(fx, w, id), 1);
    s_assert_event(fx, "task.dispatched", id, "running");
    assert_string_equal(s_row(fx, id, "state"), "running");
    assert_string_equal(s_attempt_row(fx, id, 1, "worker"), "w1");

    s_result(fx, w, id, 1, "exited", 0, 0.25);
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    assert_string_equal(s_row(fx, id, "state"), "succeeded");
    assert_string_equal(s_row(fx, id, "cost_usd"), "0.25");
    assert_string_equal(s_attempt_row(fx, id, 1, "outcome"), "exited");

    /* A duplicate result is acknowledged again and recorded once. */
    s_result(fx, w, id, 1, "exited", 0, 0.25);
    assert_string_equal(s_row(fx, id, "cost_usd"), "0.25");

    fz_msg_t *st = s_call(fx, s_req(fx, "status"));
    assert_true(fz_msg_is(st, "status"));
    assert_int_equal(fz_msg_uint(st, "running", 9), 0);
    assert_int_equal(fz_msg_uint(st, "workers", 0), 1);
    assert_true(fz_msg_float(st, "spent_today", 0) > 0.24);
    fz_msg_destroy(&st);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* --sync full: the fdatasync of a commit runs beside the loop (fz_sync.h). */
static void s_sync_full(fz_broker_config_t *cfg)
{
    cfg->sync_full = true;
}

/* Under --sync full the whole life cycle holds, and replies come in the order asked, each
   once its task is in the store. */
static void test_sync_full_life_cycle(void **state)
{
    (void)state;
    fx_t *fx = s_fx(s_sync_full);
    uint64_t first = fx->rid + 1;
    for (int i = 0; i < 10; i++) {
        fz_enc_t *req = s_req(fx, "submit");
        fz_enc_str(req, "prompt", "one of ten");
        assert_int_equal(fz_net_send(fx->client, NULL, &req), 0);
    }
    uint64_t ids[10];
    for (int i = 0; i < 10; i++) {
        fz_msg_t *r = s_next(fx, fx->client);
        assert_true(fz_msg_is(r, "submitted"));
        assert_int_equal(fz_msg_rid(r), first + (uint64_t)i);
        ids[i] = fz_msg_uint(r, "task", 0);
        assert_string_equal(s_row(fx, ids[i], "state"), "queued");
        fz_msg_destroy(&r);
    }
    zsock_t *w = s_worker(fx, "w1");
    for (int i = 0; i < 10; i++) {
        assert_int_equal(s_dispatched(fx, w, ids[i]), 1);
        assert_string_equal(s_row(fx, ids[i], "state"), "running");
        s_result(fx, w, ids[i], 1, "exited", 0, 0.01);
        s_assert_event(fx, "task.succeeded", ids[i], "succeeded");
        assert_string_equal(s_row(fx, ids[i], "state"), "succeeded");
    }
    fz_msg_t *st = s_call(fx, s_req(fx, "status"));
    assert_true(fz_msg_uint(st, "commits", 0) >= 2);
    assert_true(fz_msg_float(st, "sync_seconds", -1) > 0);
    fz_msg_destroy(&st);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* --sync full, and heartbeats every 250 ms: a worker is dead after 750 ms of silence. */
static void s_sync_full_slow_beat(fz_broker_config_t *cfg)
{
    cfg->sync_full = true;
    cfg->heartbeat_ms = 250;
}

/* A stalling disk (FZ_STORE_SYNC_DELAY_MS): a submit's reply waits for its commit's sync,
   and the loop's timers go on meanwhile: heartbeats keep reaching the workers, which would
   otherwise take three silent intervals for a dead broker (as when the loop itself waited in
   the fdatasync). */
static void test_sync_full_stall_keeps_heartbeats(void **state)
{
    (void)state;
    setenv("FZ_STORE_SYNC_DELAY_MS", "600", 1);
    fx_t *fx = s_fx(s_sync_full_slow_beat);
    unsetenv("FZ_STORE_SYNC_DELAY_MS");
    zsock_t *w = s_worker(fx, "w1");
    fz_enc_t *hb = fz_enc_new("heartbeat", 0);
    assert_int_equal(fz_net_send(w, NULL, &hb), 0);
    while (s_readable(w)) {
        fz_msg_t *m = fz_net_recv_msg(w);
        fz_msg_destroy(&m);
    }
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "slow disk");
    uint64_t rid = fx->rid;
    double t0 = fz_clock_s();
    assert_int_equal(fz_net_send(fx->client, NULL, &req), 0);
    fz_msg_t *reply = NULL;
    int beats = 0;
    while (!reply && fz_clock_s() - t0 < 10) {
        assert_int_equal(fz_broker_step(fx->broker, 20), 0);
        while (s_readable(w)) {
            fz_msg_t *m = fz_net_recv_msg(w);
            beats += fz_msg_is(m, "heartbeat");
            fz_msg_destroy(&m);
        }
        if (s_readable(fx->client))
            reply = fz_net_recv_msg(fx->client);
    }
    assert_non_null(reply);
    assert_true(fz_msg_is(reply, "submitted"));
    assert_int_equal(fz_msg_rid(reply), rid);
    assert_true(fz_clock_s() - t0 >= 0.55); /* not before the sync ended */
    assert_true(beats >= 2);                /* at 0.25 s and 0.5 s, at least */
    fz_msg_destroy(&reply);
    fz_msg_t *st = s_call(fx, s_req(fx, "status"));
    assert_int_equal(fz_msg_uint(st, "workers", 0), 1); /* and the worker is still there */
    fz_msg_destroy(&st);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

static void test_retry_backoff_then_fail(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "flaky", 1, 0);
    zsock_t *w = s_worker(fx, "w1");
    uint32_t a1 = s_dispatched(fx, w, id);
    s_result(fx, w, id, a1, "exited", 1, 0.01);
    s_assert_event(fx, "task.attempt-failed", id, "retrying");
    fz_event_t *e = s_event(fx, "task.retrying", id);
    uint64_t delay = fz_obj_uint(fz_event_map(e), "delay_ms", 0);
    fz_event_destroy(&e);
    /* The first retry waits between half and all of --backoff-min. */
    assert_true(delay >= 20 && delay <= 40);
    assert_string_equal(s_row(fx, id, "state"), "retrying");

    s_assert_event(fx, "task.queued", id, "queued");
    uint32_t a2 = s_dispatched(fx, w, id);
    assert_int_equal(a2, 2);
    s_result(fx, w, id, a2, "exited", 1, 0.01);
    s_assert_event(fx, "task.failed", id, "failed");
    assert_string_equal(s_row(fx, id, "state"), "failed");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* Exit 75: the agent asks not to be retried, whatever --retries says. */
static void test_exit_75_is_not_retried(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "bad key", 3, 0);
    zsock_t *w = s_worker(fx, "w1");
    s_result(fx, w, id, s_dispatched(fx, w, id), "exited", 75, 0);
    s_assert_event(fx, "task.failed", id, "failed");
    assert_string_equal(s_row(fx, id, "attempts"), "1");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* A rejected dispatch is not the task's fault: requeued, no retry used, the worker rests. */
static void test_rejected_is_requeued_without_using_a_retry(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "x", 0, 0);
    zsock_t *w1 = s_worker(fx, "w1");
    s_result(fx, w1, id, s_dispatched(fx, w1, id), "rejected", 0, 0);
    fz_event_t *e = s_event(fx, "task.requeued", id);
    char reason[32];
    assert_string_equal(fz_obj_str(fz_event_map(e), "reason", reason, sizeof reason), "rejected");
    fz_event_destroy(&e);
    /* Another worker takes it; with retries 0 it still runs, as attempt 2. */
    zsock_t *w2 = s_worker(fx, "w2");
    assert_int_equal(s_dispatched(fx, w2, id), 2);
    s_result(fx, w2, id, 2, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    zsock_destroy(&w1);
    zsock_destroy(&w2);
    s_fx_destroy(&fx);
}

/* A worker that said hello with prefetch: true (fz-worker --prefetch). */
static zsock_t *s_worker_prefetch(fx_t *fx, const char *name)
{
    fz_enc_t *hello = s_hello_enc(name, name, 0, 0);
    fz_enc_bool(hello, "prefetch", true);
    zsock_t *w = s_worker_send_hello(fx, hello);
    fz_msg_destroy((fz_msg_t *[]){s_expect(fx, w, "welcome")});
    return w;
}

/* The task the workers view says a worker holds ahead. */
static uint64_t s_held_ahead(fx_t *fx)
{
    fz_msg_t *r = s_call(fx, s_req(fx, "workers"));
    const msgpack_object *ws = fz_msg_obj(r, "workers");
    assert_non_null(ws);
    assert_int_equal(ws->via.array.size, 1);
    uint64_t next = fz_obj_uint(&ws->via.array.ptr[0], "next", 99);
    fz_msg_destroy(&r);
    return next;
}

static uint32_t s_running(fx_t *fx)
{
    fz_msg_t *st = s_call(fx, s_req(fx, "status"));
    uint32_t n = (uint32_t)fz_msg_uint(st, "running", 99);
    fz_msg_destroy(&st);
    return n;
}

/* Tasks a and b, and a --prefetch worker that runs a and holds b. */
static zsock_t *s_prefetch_two(fx_t *fx, uint64_t *a, uint64_t *b)
{
    *a = s_submit(fx, "a", 0, 0);
    *b = s_submit(fx, "b", 0, 0);
    zsock_t *w = s_worker_prefetch(fx, "w1");
    assert_int_equal(s_dispatched(fx, w, *a), 1);
    assert_int_equal(s_dispatched(fx, w, *b), 1);
    return w;
}

/* --prefetch: one more dispatch while a task runs, never two; the held one is the worker's
   as soon as the running one's result is in, and the next goes ahead then. */
static void test_prefetch_holds_one_ahead(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a = s_submit(fx, "a", 0, 0), b = s_submit(fx, "b", 0, 0), c = s_submit(fx, "c", 0, 0);
    zsock_t *w = s_worker_prefetch(fx, "w1");
    assert_int_equal(s_dispatched(fx, w, a), 1);
    assert_int_equal(s_dispatched(fx, w, b), 1);
    assert_false(s_gets(fx, w, "dispatch", 20)); /* one ahead, not two */
    assert_int_equal(s_running(fx), 2);
    assert_int_equal(s_held_ahead(fx), b);
    assert_string_equal(s_row(fx, b, "state"), "running");
    s_result(fx, w, a, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", a, "succeeded");
    assert_int_equal(s_dispatched(fx, w, c), 1); /* b runs now, c goes ahead */
    assert_int_equal(s_held_ahead(fx), c);
    s_result(fx, w, b, 1, "exited", 0, 0);
    s_result(fx, w, c, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", c, "succeeded");
    assert_int_equal(s_held_ahead(fx), 0);
    assert_int_equal(s_running(fx), 0);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* What a worker held ahead and lost with it, or gave back, never ran: it uses no retry. */
static void test_prefetch_given_back_uses_no_retry(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a, b;
    zsock_t *w = s_prefetch_two(fx, &a, &b);
    /* It leaves: the running attempt is lost, and the one held ahead too, without a retry. */
    fz_enc_t *bye = fz_enc_new("bye", 0);
    assert_int_equal(fz_net_send(w, NULL, &bye), 0);
    s_assert_event(fx, "task.requeued", b, "queued");
    s_assert_event(fx, "task.requeued", a, "queued");
    assert_string_equal(s_row(fx, b, "attempt_base"), "1");
    assert_string_equal(s_attempt_row(fx, b, 1, "outcome"), "lost");
    assert_string_equal(s_row(fx, a, "attempt_base"), "0");
    zsock_destroy(&w);
    /* Stopping, a worker gives back what it held: requeued, no retry used either. */
    zsock_t *w2 = s_worker_prefetch(fx, "w2");
    assert_int_equal(s_dispatched(fx, w2, a), 2);
    assert_int_equal(s_dispatched(fx, w2, b), 2);
    s_result(fx, w2, b, 2, "rejected", 0, 0);
    s_assert_event(fx, "task.requeued", b, "queued");
    assert_string_equal(s_row(fx, b, "attempt_base"), "2");
    assert_int_equal(s_held_ahead(fx), 0);
    assert_int_equal(s_running(fx), 1);
    zsock_destroy(&w2);
    s_fx_destroy(&fx);
}

/* Cut off between two tasks: the worker comes back running the one it held; the one before
   ended meanwhile and its result, sent again, is recorded, not run once more. */
static void test_prefetch_reconnect_between_tasks(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a, b;
    zsock_t *w = s_prefetch_two(fx, &a, &b);
    zsock_t *w2 = s_worker_hello(fx, "w1", "w1", b, 1); /* same nonce: a reconnect */
    fz_msg_destroy((fz_msg_t *[]){s_expect(fx, w2, "welcome")});
    zsock_destroy(&w);
    fz_msg_t *r = s_call(fx, s_req(fx, "workers"));
    const msgpack_object *ws = fz_msg_obj(r, "workers");
    assert_int_equal(ws->via.array.size, 1);
    assert_int_equal(fz_obj_uint(&ws->via.array.ptr[0], "task", 0), b);
    fz_msg_destroy(&r);
    assert_string_equal(s_row(fx, a, "state"), "running"); /* its result is on its way */
    s_result(fx, w2, a, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", a, "succeeded");
    s_result(fx, w2, b, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", b, "succeeded");
    assert_int_equal(s_running(fx), 0);
    assert_string_equal(s_attempt_row(fx, a, 2, "worker"), ""); /* no second attempt */
    zsock_destroy(&w2);
    s_fx_destroy(&fx);
}

/* A hello of a worker whose broker went away: it runs (task, attempt), if any, and dropped
   unstarted the attempt it held ahead (dropped, dropped_attempt). */
static zsock_t *s_worker_dropped(fx_t *fx, const char *name, uint64_t task, uint64_t dropped,
                                 uint32_t dropped_attempt)
{
    fz_enc_t *hello = s_hello_enc(name, "after-restart", task, 1);
    fz_enc_uint(hello, "dropped_task", dropped);
    fz_enc_uint(hello, "dropped_attempt", dropped_attempt);
    zsock_t *w = s_worker_send_hello(fx, hello);
    fz_msg_destroy((fz_msg_t *[]){s_expect(fx, w, "welcome")});
    return w;
}

/* After a broker restart, what the worker held ahead and dropped at its hello is requeued at
   once and uses no retry, rather than waiting out the orphan timeout as a lost attempt; only
   the worker it went to can give it back. */
static void test_prefetch_restart_gives_back_held(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a, b;
    zsock_t *w = s_prefetch_two(fx, &a, &b);
    zsock_destroy(&w);
    s_stop_broker(fx);
    s_start_broker(fx);
    assert_string_equal(s_row(fx, b, "state"), "running");

    zsock_t *other = s_worker_dropped(fx, "w3", 0, b, 1); /* not the worker b went to */
    assert_string_equal(s_row(fx, b, "state"), "running");
    zsock_t *back = s_worker_dropped(fx, "w1", a, b, 1);
    s_assert_event(fx, "task.requeued", b, "queued");
    assert_string_equal(s_row(fx, b, "attempt_base"), "1");
    assert_string_equal(s_attempt_row(fx, b, 1, "outcome"), "lost");
    assert_string_equal(s_row(fx, a, "state"), "running"); /* claimed: taken back */
    assert_int_equal(s_dispatched(fx, other, b), 2);
    s_result(fx, back, a, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", a, "succeeded");
    s_result(fx, other, b, 2, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", b, "succeeded");
    zsock_destroy(&other);
    zsock_destroy(&back);
    s_fx_destroy(&fx);
}

/* A commit that fails reloads the broker from the store: the worker keeps what it runs and
   what it holds, and the broker takes both back (fz_workers_reattach_next). */
static void test_prefetch_survives_a_reload(void **state)
{
    (void)state;
    setenv("FZ_STORE_MAX_PAGES", "60", 1); /* about 240 KiB: big submits fill it */
    fx_t *fx = s_fx(NULL);
    unsetenv("FZ_STORE_MAX_PAGES");
    uint64_t a, b;
    zsock_t *w = s_prefetch_two(fx, &a, &b);
    char big[2001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    bool refused = false;
    for (int i = 0; i < 400 && !refused; i++) {
        fz_enc_t *req = s_req(fx, "submit");
        fz_enc_str(req, "prompt", big);
        fz_msg_t *r = s_call(fx, req);
        refused = fz_msg_is(r, "error");
        fz_msg_destroy(&r);
    }
    assert_true(refused); /* a commit failed, and the broker reloaded */
    assert_int_equal(s_held_ahead(fx), b);
    assert_int_equal(s_running(fx), 2);
    s_result(fx, w, a, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", a, "succeeded");
    s_result(fx, w, b, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", b, "succeeded");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* A cancel of the task held ahead goes to the worker, which drops it; the task is cancelled. */
static void test_prefetch_cancel_held(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a, b;
    zsock_t *w = s_prefetch_two(fx, &a, &b);
    fz_enc_t *req = s_req(fx, "cancel");
    fz_enc_uint(req, "task", b);
    fz_msg_t *r = s_call(fx, req);
    assert_string_equal(fz_msg_str(r, "state", "", NULL), "running");
    fz_msg_destroy(&r);
    fz_msg_t *c = s_expect(fx, w, "cancel");
    assert_int_equal(fz_msg_uint(c, "task", 0), b);
    fz_msg_destroy(&c);
    s_result(fx, w, b, 1, "rejected", 0, 0);
    s_assert_event(fx, "task.cancelled", b, "cancelled");
    /* a runs on, and is still the worker's. */
    assert_int_equal(s_held_ahead(fx), 0);
    s_result(fx, w, a, 1, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", a, "succeeded");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

static void test_cancel_running_goes_through_the_worker(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "long", 2, 0);
    zsock_t *w = s_worker(fx, "w1");
    uint32_t a = s_dispatched(fx, w, id);
    fz_enc_t *req = s_req(fx, "cancel");
    fz_enc_uint(req, "task", id);
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "ok"));
    assert_string_equal(fz_msg_str(r, "state", "", NULL), "running");
    fz_msg_destroy(&r);
    fz_msg_t *c = s_expect(fx, w, "cancel");
    assert_int_equal(fz_msg_uint(c, "task", 0), id);
    assert_string_equal(fz_msg_str(c, "reason", "", NULL), "cancelled");
    fz_msg_destroy(&c);
    /* Whatever the agent says then, the task is cancelled (no retry). */
    s_result(fx, w, id, a, "exited", 1, 0);
    s_assert_event(fx, "task.cancelled", id, "cancelled");
    assert_string_equal(s_row(fx, id, "state"), "cancelled");
    /* Ended: a second cancel is a conflict, with its reason. */
    req = s_req(fx, "cancel");
    fz_enc_uint(req, "task", id);
    r = s_call(fx, req);
    s_assert_error(&r, "conflict", "ended");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- workers */

static void s_fast_dead(fz_broker_config_t *cfg)
{
    cfg->heartbeat_ms = 20;
}

/* A worker that goes silent for 3 heartbeats is gone; its attempt is lost and requeued. */
static void test_silent_worker_loses_its_attempt(void **state)
{
    (void)state;
    fx_t *fx = s_fx(s_fast_dead);
    uint64_t id = s_submit(fx, "x", 0, 0);
    zsock_t *w = s_worker(fx, "w1");
    assert_int_equal(s_dispatched(fx, w, id), 1);
    zsock_destroy(&w);                                 /* says nothing more */
    s_assert_event(fx, "task.requeued", id, "queued"); /* announced before the worker left */
    fz_event_t *e = s_event(fx, "worker.left", 0);
    char buf[32];
    assert_string_equal(fz_obj_str(fz_event_map(e), "reason", buf, sizeof buf), "silent");
    fz_event_destroy(&e);
    assert_string_equal(s_row(fx, id, "state"), "queued");
    assert_string_equal(s_attempt_row(fx, id, 1, "outcome"), "lost");
    s_fx_destroy(&fx);
}

static void test_worker_message_without_hello_is_unknown_peer(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_msg_t *r = s_call(fx, s_req(fx, "bye"));
    s_assert_error(&r, "conflict", "unknown-peer");
    s_fx_destroy(&fx);
}

/* The same name from another live process (another nonce) waits: name-taken. */
static void test_name_taken_while_the_first_lives(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    zsock_t *w1 = s_worker(fx, "same");
    zsock_t *w2 = s_worker_hello(fx, "same", "other-nonce", 0, 0);
    fz_msg_t *r = s_next(fx, w2);
    s_assert_error(&r, "conflict", "name-taken");
    zsock_destroy(&w2);
    zsock_destroy(&w1);
    s_fx_destroy(&fx);
}

/* A hello on a known connection refreshes the worker (§5) and keeps its attempt. */
static void test_rehello_keeps_the_running_attempt(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "x", 0, 0);
    zsock_t *w = s_worker(fx, "w1");
    uint32_t a = s_dispatched(fx, w, id);
    fz_enc_t *hello = fz_enc_new("hello", 2);
    fz_enc_str(hello, "name", "w1");
    fz_enc_str(hello, "nonce", "w1");
    fz_enc_uint(hello, "task", id);
    fz_enc_uint(hello, "attempt", a);
    assert_int_equal(fz_net_send(w, NULL, &hello), 0);
    fz_msg_t *m = s_expect(fx, w, "welcome");
    fz_msg_destroy(&m);
    assert_false(s_gets(fx, w, "cancel", 10)); /* it is the attempt we expect */
    assert_string_equal(s_row(fx, id, "state"), "running");
    s_result(fx, w, id, a, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* After a broker restart, the worker's hello claims its attempt: it is taken back, not run
   twice; a claim of an attempt nobody expects is told to stop. */
static void test_restart_reattach_and_superseded(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "survive a restart", 0, 0);
    zsock_t *w = s_worker(fx, "w1");
    uint32_t a = s_dispatched(fx, w, id);
    zsock_destroy(&w);
    s_stop_broker(fx);
    s_start_broker(fx);
    assert_string_equal(s_row(fx, id, "state"), "running");

    zsock_t *back = s_worker_hello(fx, "w1", "new-nonce", id, a);
    fz_msg_t *m = s_expect(fx, back, "welcome");
    fz_msg_destroy(&m);
    assert_false(s_gets(fx, back, "cancel", 10));
    s_result(fx, back, id, a, "exited", 0, 0.5);
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    assert_string_equal(s_row(fx, id, "attempts"), "1");

    zsock_t *stale = s_worker_hello(fx, "w2", "w2", id, a); /* ended already */
    fz_msg_t *c = s_expect(fx, stale, "cancel");
    assert_string_equal(fz_msg_str(c, "reason", "", NULL), "superseded");
    fz_msg_destroy(&c);
    zsock_destroy(&stale);
    zsock_destroy(&back);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- dependencies */

static uint64_t s_submit_after(fx_t *fx, const char *prompt, uint64_t dep)
{
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", prompt);
    fz_enc_array(req, "after", 1);
    fz_enc_uint(req, NULL, dep);
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "submitted"));
    assert_string_equal(fz_msg_str(r, "state", "", NULL), "waiting");
    uint64_t id = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    return id;
}

/* A failed dependency fails its dependents transitively; retrying it brings them back; its
   success then releases them in order. */
static void test_dependency_failure_and_revival(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a = s_submit(fx, "build", 0, 0);
    uint64_t b = s_submit_after(fx, "test", a);
    uint64_t c = s_submit_after(fx, "deploy", b);
    assert_string_equal(s_row(fx, b, "state"), "waiting");

    zsock_t *w = s_worker(fx, "w1");
    s_result(fx, w, a, s_dispatched(fx, w, a), "exited", 2, 0);
    s_assert_event(fx, "task.failed", a, "failed");
    fz_event_t *e = s_event(fx, "task.dep-failed", b);
    char why[160];
    assert_non_null(strstr(fz_obj_str(fz_event_map(e), "summary", why, sizeof why), "failed"));
    fz_event_destroy(&e);
    s_assert_event(fx, "task.dep-failed", c, "dep-failed");
    assert_string_equal(s_row(fx, c, "state"), "dep-failed");

    /* Retrying the dependent alone is refused: what it waits for failed. */
    fz_enc_t *req = s_req(fx, "retry");
    fz_enc_uint(req, "task", c);
    fz_msg_t *r = s_call(fx, req);
    s_assert_error(&r, "conflict", "dependency-failed");

    req = s_req(fx, "retry");
    fz_enc_uint(req, "task", a);
    r = s_call(fx, req);
    assert_true(fz_msg_is(r, "ok"));
    assert_string_equal(fz_msg_str(r, "state", "", NULL), "queued");
    fz_msg_destroy(&r);
    assert_string_equal(s_row(fx, b, "state"), "waiting");
    assert_string_equal(s_row(fx, c, "state"), "waiting");

    s_result(fx, w, a, s_dispatched(fx, w, a), "exited", 0, 0);
    s_assert_event(fx, "task.queued", b, "queued");
    s_result(fx, w, b, s_dispatched(fx, w, b), "exited", 0, 0);
    s_result(fx, w, c, s_dispatched(fx, w, c), "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", c, "succeeded");

    /* A succeeded task is not retried. */
    req = s_req(fx, "retry");
    fz_enc_uint(req, "task", c);
    r = s_call(fx, req);
    s_assert_error(&r, "conflict", "already-succeeded");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* The rest of PROTOCOL.md §4's retry table: a live task, no task, a cancelled task (no
   worker: nothing runs). */
static void test_retry_by_state(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_enc_t *req;
    fz_msg_t *r;
    uint64_t d = s_submit(fx, "parked", 0, 0);
    req = s_req(fx, "retry");
    fz_enc_uint(req, "task", d);
    r = s_call(fx, req);
    s_assert_error(&r, "conflict", "not-ended");
    req = s_req(fx, "retry");
    fz_enc_uint(req, "task", 987654);
    r = s_call(fx, req);
    s_assert_error(&r, "not-found", "no-such-task");
    req = s_req(fx, "cancel");
    fz_enc_uint(req, "task", d);
    r = s_call(fx, req);
    assert_true(fz_msg_is(r, "ok"));
    fz_msg_destroy(&r);
    req = s_req(fx, "retry");
    fz_enc_uint(req, "task", d);
    r = s_call(fx, req);
    assert_true(fz_msg_is(r, "ok"));
    assert_string_equal(fz_msg_str(r, "state", "", NULL), "queued");
    fz_msg_destroy(&r);
    s_fx_destroy(&fx);
}

static void test_submit_refusals_carry_reasons(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "x");
    fz_enc_array(req, "after", 1);
    fz_enc_uint(req, NULL, 424242);
    fz_msg_t *r = s_call(fx, req);
    s_assert_error(&r, "invalid", "no-such-dependency");

    req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "x");
    fz_enc_uint(req, "parent", 424242);
    r = s_call(fx, req);
    s_assert_error(&r, "invalid", "no-such-parent");

    req = s_req(fx, "get");
    fz_enc_uint(req, "task", 424242);
    r = s_call(fx, req);
    s_assert_error(&r, "not-found", "no-such-task");

    /* A batch names its refused task by index; nothing of it is stored. */
    req = s_req(fx, "submit-batch");
    fz_enc_array(req, "tasks", 2);
    fz_enc_t *t0 = fz_enc_new_map();
    fz_enc_str(t0, "prompt", "fine");
    fz_enc_sub(req, NULL, &t0);
    fz_enc_t *t1 = fz_enc_new_map();
    fz_enc_str(t1, "prompt", "forward");
    fz_enc_array(t1, "after_index", 1);
    fz_enc_uint(t1, NULL, 1);
    fz_enc_sub(req, NULL, &t1);
    r = s_call(fx, req);
    assert_int_equal(fz_msg_uint(r, "index", 99), 1);
    s_assert_error(&r, "invalid", "bad-dependency");
    fz_msg_t *st = s_call(fx, s_req(fx, "list"));
    assert_int_equal(fz_msg_obj(st, "tasks")->via.array.size, 0);
    fz_msg_destroy(&st);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- budget */

static void s_small_budget(fz_broker_config_t *cfg)
{
    cfg->daily_budget = 1.0;
}

/* A task whose reservation does not fit is held (reason budget), and released when the cap
   is raised; the settled spend is what the agent reported. */
static void test_budget_hold_and_release(void **state)
{
    (void)state;
    fx_t *fx = s_fx(s_small_budget);
    uint64_t id = s_submit(fx, "expensive", 0, 2.0);
    zsock_t *w = s_worker(fx, "w1");
    fz_event_t *e = s_event(fx, "task.held", id);
    char reason[32];
    assert_string_equal(fz_obj_str(fz_event_map(e), "reason", reason, sizeof reason), "budget");
    fz_event_destroy(&e);
    assert_string_equal(s_row(fx, id, "state"), "held");
    assert_string_equal(s_row(fx, id, "hold_reason"), "budget");

    fz_enc_t *req = s_req(fx, "get");
    fz_enc_uint(req, "task", id);
    fz_msg_t *r = s_call(fx, req);
    char detail[256];
    assert_non_null(strstr(fz_obj_str(fz_msg_obj(r, "task"), "hold_detail", detail, sizeof detail),
                           "more than the whole daily cap"));
    fz_msg_destroy(&r);

    req = s_req(fx, "budget");
    fz_enc_float(req, "set", 5.0);
    r = s_call(fx, req);
    assert_true(fz_msg_is(r, "budget"));
    assert_true(fz_msg_float(r, "cap", 0) == 5.0);
    fz_msg_destroy(&r);
    s_assert_event(fx, "task.queued", id, "queued");
    uint32_t a = s_dispatched(fx, w, id);
    req = s_req(fx, "budget");
    r = s_call(fx, req);
    assert_true(fz_msg_float(r, "reserved", 0) == 2.0);
    fz_msg_destroy(&r);
    s_result(fx, w, id, a, "exited", 0, 0.75);
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    req = s_req(fx, "budget");
    r = s_call(fx, req);
    assert_true(fz_msg_float(r, "reserved", 1) == 0.0);
    assert_true(fz_msg_float(r, "spent", 0) == 0.75);
    fz_msg_destroy(&r);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- failure classes */

static uint64_t s_submit_model(fx_t *fx, const char *model, const char *fallback, uint32_t retries)
{
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "p");
    fz_enc_str(req, "model", model);
    fz_enc_uint(req, "retries", retries);
    if (fallback) {
        fz_enc_array(req, "fallback", 1);
        fz_enc_str(req, NULL, fallback);
    }
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "submitted"));
    uint64_t id = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    return id;
}

static zsock_t *s_worker_models(fx_t *fx, const char *name, const char *m1, const char *m2)
{
    zsock_t *w = fz_net_socket(ZMQ_DEALER);
    assert_int_equal(zsock_connect(w, "%s", fx->ep), 0);
    fz_enc_t *hello = fz_enc_new("hello", 1);
    fz_enc_str(hello, "name", name);
    fz_enc_array(hello, "models", m2 ? 2 : 1);
    fz_enc_str(hello, NULL, m1);
    if (m2)
        fz_enc_str(hello, NULL, m2);
    assert_int_equal(fz_net_send(w, NULL, &hello), 0);
    fz_msg_t *m = s_expect(fx, w, "welcome");
    fz_msg_destroy(&m);
    return w;
}

static fz_msg_t *s_get(fx_t *fx, uint64_t id)
{
    fz_enc_t *req = s_req(fx, "get");
    fz_enc_uint(req, "task", id);
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "task"));
    return r;
}

/* A rate limit with a reset time: the task waits for it (held, quota) without using a retry
   and without a second charge, the model's other tasks wait too, and both run after it. */
static void s_patient(fz_broker_config_t *cfg)
{
    cfg->heartbeat_ms = 1000; /* the fake worker sends no heartbeats while the task waits */
}

static void test_rate_limit_waits_for_the_reset(void **state)
{
    (void)state;
    fx_t *fx = s_fx(s_patient);
    uint64_t a = s_submit_model(fx, "m1", NULL, 0);
    zsock_t *w = s_worker_models(fx, "w1", "m1", NULL);
    uint32_t n = s_dispatched(fx, w, a);
    uint64_t b = s_submit_model(fx, "m1", NULL, 0);
    s_send_class(w, a, n, "rate-limit", fz_wall() + 0.6);
    fz_event_t *e = s_event(fx, "task.held", a);
    char buf[64];
    assert_string_equal(fz_obj_str(fz_event_map(e), "reason", buf, sizeof buf), "quota");
    assert_string_equal(fz_obj_str(fz_event_map(e), "class", buf, sizeof buf), "rate-limit");
    fz_event_destroy(&e);
    assert_string_equal(s_row(fx, a, "state"), "held");
    assert_string_equal(s_row(fx, a, "hold_reason"), "quota");
    assert_string_equal(s_attempt_row(fx, a, 1, "class"), "rate-limit");
    /* b waits for the model, not for a worker: it is not dispatched meanwhile. */
    assert_false(s_gets(fx, w, "dispatch", 20));
    fz_msg_t *g = s_get(fx, b);
    char why[256];
    assert_non_null(
        strstr(fz_obj_str(fz_msg_obj(g, "task"), "waiting_for", why, sizeof why), "rate-limited"));
    fz_msg_destroy(&g);
    g = s_get(fx, a);
    assert_non_null(strstr(fz_obj_str(fz_msg_obj(g, "task"), "hold_detail", why, sizeof why),
                           "no retry is used"));
    fz_msg_destroy(&g);
    /* After the reset both run; a, with retries 0, still gets its second attempt. */
    s_assert_event(fx, "task.queued", a, "queued");
    uint64_t first = 0;
    for (int i = 0; i < 2; i++) {
        fz_msg_t *d = s_expect(fx, w, "dispatch");
        uint64_t id = fz_msg_uint(d, "task", 0);
        uint32_t k = (uint32_t)fz_msg_uint(d, "attempt", 0);
        fz_msg_destroy(&d);
        assert_true(id == a ? k == 2 : id == b && k == 1);
        first = first ? first : id;
        s_result(fx, w, id, k, "exited", 0, 0.02);
    }
    s_assert_event(fx, "task.succeeded", first == a ? b : a, "succeeded");
    assert_string_equal(s_row(fx, a, "state"), "succeeded");
    assert_string_equal(s_row(fx, a, "cost_usd"), "0.03"); /* 0.01 + 0.02: once each */
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* Auth: this worker is unhealthy for the model; the task goes to another worker, no retry. */
static void test_auth_marks_the_worker_and_moves_the_task(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit_model(fx, "m1", NULL, 0);
    zsock_t *w1 = s_worker_models(fx, "w1", "m1", NULL);
    s_send_class(w1, id, s_dispatched(fx, w1, id), "auth", 0);
    fz_event_t *e = s_event(fx, "task.requeued", id);
    char buf[64];
    assert_string_equal(fz_obj_str(fz_event_map(e), "reason", buf, sizeof buf), "auth");
    fz_event_destroy(&e);
    e = s_event(fx, "worker.unhealthy", 0);
    assert_string_equal(fz_obj_str(fz_event_map(e), "worker", buf, sizeof buf), "w1");
    assert_string_equal(fz_obj_str(fz_event_map(e), "model", buf, sizeof buf), "m1");
    fz_event_destroy(&e);
    assert_false(s_gets(fx, w1, "dispatch", 20)); /* not on w1 again */
    fz_msg_t *ws = s_call(fx, s_req(fx, "workers"));
    const msgpack_object *list = fz_msg_obj(ws, "workers");
    const msgpack_object *bad = fz_obj_get(&list->via.array.ptr[0], "unhealthy");
    assert_true(bad && bad->via.array.size == 1);
    fz_msg_destroy(&ws);
    zsock_t *w2 = s_worker_models(fx, "w2", "m1", NULL);
    uint32_t n = s_dispatched(fx, w2, id);
    assert_int_equal(n, 2);
    s_result(fx, w2, id, n, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    zsock_destroy(&w1);
    zsock_destroy(&w2);
    s_fx_destroy(&fx);
}

/* Exit 127 (the agent is not installed): the worker gets no task at all any more. */
static void test_agent_missing_takes_the_worker_out(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a = s_submit(fx, "x", 0, 0);
    uint64_t b = s_submit(fx, "y", 0, 0);
    zsock_t *w = s_worker(fx, "w1");
    s_result(fx, w, a, s_dispatched(fx, w, a), "exited", 127, 0);
    fz_event_t *e = s_event(fx, "worker.unhealthy", 0);
    char buf[64];
    assert_string_equal(fz_obj_str(fz_event_map(e), "class", buf, sizeof buf), "agent-missing");
    fz_event_destroy(&e);
    assert_false(s_gets(fx, w, "dispatch", 20));
    assert_string_equal(s_row(fx, a, "state"), "queued");
    assert_string_equal(s_row(fx, b, "state"), "queued");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* status { depth: true }'s by_model as "KEY:queued/held/retrying/waiting/running ..." (KEY
   "-" for tasks of any model), and by_label's row count. */
static const char *s_by_model(fx_t *fx, uint32_t *labels)
{
    static char out[512];
    fz_enc_t *req = s_req(fx, "status");
    fz_enc_bool(req, "depth", true);
    fz_msg_t *st = s_call(fx, req);
    const msgpack_object *rows = fz_msg_obj(st, "by_model");
    assert_non_null(rows);
    assert_int_equal(rows->type, MSGPACK_OBJECT_ARRAY);
    out[0] = 0;
    for (uint32_t i = 0; i < rows->via.array.size; i++) {
        const msgpack_object *r = &rows->via.array.ptr[i];
        char key[80];
        fz_obj_str(r, "key", key, sizeof key);
        size_t len = strlen(out);
        snprintf(out + len, sizeof out - len, "%s%s:%llu/%llu/%llu/%llu/%llu", i ? " " : "",
                 *key ? key : "-", (unsigned long long)fz_obj_uint(r, "queued", 99),
                 (unsigned long long)fz_obj_uint(r, "held", 99),
                 (unsigned long long)fz_obj_uint(r, "retrying", 99),
                 (unsigned long long)fz_obj_uint(r, "waiting", 99),
                 (unsigned long long)fz_obj_uint(r, "running", 99));
    }
    assert_false(fz_msg_bool(st, "depth_truncated", false));
    if (labels)
        *labels = fz_msg_obj(st, "by_label")->via.array.size;
    fz_msg_destroy(&st);
    return out;
}

/* The queue's depth by model, in key order: running attempts count under their model, tasks of
   any model under "". */
static void test_depth_by_model(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    assert_string_equal(s_by_model(fx, NULL), ""); /* nothing unfinished: no rows */
    uint64_t a = s_submit_model(fx, "m1", NULL, 0);
    s_submit_model(fx, "m3", NULL, 0);
    s_submit_model(fx, "m1", NULL, 0);
    s_submit(fx, "any model", 0, 0);
    uint32_t labels = 99;
    assert_string_equal(s_by_model(fx, &labels), "-:1/0/0/0/0 m1:2/0/0/0/0 m3:1/0/0/0/0");
    assert_int_equal(labels, 0);
    zsock_t *w = s_worker_models(fx, "w1", "m1", NULL);
    assert_int_equal(s_dispatched(fx, w, a), 1);
    assert_string_equal(s_by_model(fx, NULL), "-:1/0/0/0/0 m1:1/0/0/0/1 m3:1/0/0/0/0");
    s_result(fx, w, a, 1, "exited", 0, 0); /* the worker takes the other m1 task */
    assert_string_equal(s_by_model(fx, NULL), "-:1/0/0/0/0 m1:0/0/0/0/1 m3:1/0/0/0/0");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

static void s_short_horizon(fz_broker_config_t *cfg)
{
    cfg->deadline_horizon = 1;
}

/* A deadline raises its task's priority as it nears: the once-a-second re-rank of the tasks
   with one puts it ahead of a task of higher base priority before a worker asks. */
static void test_deadline_rerank_overtakes(void **state)
{
    (void)state;
    fx_t *fx = s_fx(s_short_horizon);
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "important");
    fz_enc_int(req, "priority", 10);
    fz_msg_destroy(&(fz_msg_t *){s_call(fx, req)});
    req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "urgent");
    fz_enc_float(req, "deadline", fz_wall() + 1.5); /* no boost yet: outside the horizon */
    fz_msg_t *r = s_call(fx, req);
    uint64_t urgent = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    for (int64_t until = fz_clock_ms() + 2200; fz_clock_ms() < until;)
        s_turns(fx, 1);
    zsock_t *w = s_worker(fx, "w1");
    assert_int_equal(s_dispatched(fx, w, urgent), 1);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* model-unavailable: the next fallback model at once, whatever --retries; then fail. */
static void test_model_unavailable_takes_the_fallback(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit_model(fx, "m1", "m2", 0);
    zsock_t *w = s_worker_models(fx, "w1", "m1", "m2");
    s_send_class(w, id, s_dispatched(fx, w, id), "model-unavailable", 0);
    fz_event_t *e = s_event(fx, "task.retrying", id);
    assert_int_equal(fz_obj_uint(fz_event_map(e), "delay_ms", 99), 0);
    char buf[64];
    assert_string_equal(fz_obj_str(fz_event_map(e), "next_model", buf, sizeof buf), "m2");
    fz_event_destroy(&e);
    fz_msg_t *d = s_expect(fx, w, "dispatch");
    assert_string_equal(fz_msg_str(d, "model", "", NULL), "m2");
    uint32_t n = (uint32_t)fz_msg_uint(d, "attempt", 0);
    fz_msg_destroy(&d);
    /* The depth counts it under the model its attempt runs now: the fallback. */
    assert_string_equal(s_by_model(fx, NULL), "m2:0/0/0/0/1");
    s_send_class(w, id, n, "model-unavailable", 0);
    s_assert_event(fx, "task.failed", id, "failed");
    assert_string_equal(s_row(fx, id, "class"), "model-unavailable");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

static void test_context_too_long_fails_at_once(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "huge", 3, 0);
    zsock_t *w = s_worker(fx, "w1");
    s_send_class(w, id, s_dispatched(fx, w, id), "context-too-long", 0);
    s_assert_event(fx, "task.failed", id, "failed");
    assert_string_equal(s_row(fx, id, "attempts"), "1");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* An attempt whose heartbeats say it has been idle past its stall limit is announced. */
static void test_stall_is_announced_once(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "quiet");
    fz_enc_uint(req, "stall", 2);
    fz_enc_uint(req, "stall_kill", 9);
    fz_msg_t *r = s_call(fx, req);
    uint64_t id = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    zsock_t *w = s_worker(fx, "w1");
    fz_msg_t *d = s_expect(fx, w, "dispatch");
    assert_int_equal(fz_msg_uint(d, "stall", 0), 2);
    assert_int_equal(fz_msg_uint(d, "stall_kill", 0), 9);
    uint32_t n = (uint32_t)fz_msg_uint(d, "attempt", 0);
    fz_msg_destroy(&d);
    for (int i = 0; i < 2; i++) {
        fz_enc_t *hb = fz_enc_new("heartbeat", 0);
        fz_enc_uint(hb, "task", id);
        fz_enc_uint(hb, "attempt", n);
        fz_enc_uint(hb, "elapsed_ms", 3000 + i);
        fz_enc_uint(hb, "idle_ms", 2500 + i);
        assert_int_equal(fz_net_send(w, NULL, &hb), 0);
    }
    fz_event_t *e = s_event(fx, "task.stalled", id);
    assert_int_equal(fz_obj_uint(fz_event_map(e), "idle_ms", 0), 2500);
    fz_event_destroy(&e);
    fz_msg_t *g = s_get(fx, id);
    assert_true(fz_obj_float(fz_msg_obj(g, "task"), "stalled_since", 0) > 0);
    fz_msg_destroy(&g);
    s_result(fx, w, id, n, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", id, "succeeded"); /* announced once: none between */
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- controls and views */

static void s_limits(fz_broker_config_t *cfg)
{
    cfg->models = "m1,m2";
    cfg->max_depth = 2;
    cfg->max_children = 1;
}

static fz_msg_t *s_task_req(fx_t *fx, const char *type, uint64_t id)
{
    fz_enc_t *req = s_req(fx, type);
    fz_enc_uint(req, "task", id);
    return s_call(fx, req);
}

/* Pause holds dispatch (stored), stop cancels what runs; priority and escalate reorder. */
static void test_pause_stop_priority_escalate(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_msg_t *r = s_call(fx, s_req(fx, "pause"));
    assert_true(fz_msg_is(r, "ok"));
    fz_msg_destroy(&r);
    fz_event_t *e = s_event(fx, "broker.paused", 0);
    fz_event_destroy(&e);
    uint64_t low = s_submit(fx, "low", 0, 0), high = s_submit(fx, "high", 0, 0);
    zsock_t *w = s_worker(fx, "w1");
    assert_false(s_gets(fx, w, "dispatch", 10));
    fz_msg_t *g = s_get(fx, low);
    char why[200];
    assert_non_null(
        strstr(fz_obj_str(fz_msg_obj(g, "task"), "waiting_for", why, sizeof why), "paused"));
    fz_msg_destroy(&g);

    fz_enc_t *req = s_req(fx, "priority");
    fz_enc_uint(req, "task", high);
    fz_enc_int(req, "priority", 7);
    r = s_call(fx, req);
    assert_int_equal(fz_msg_int(r, "priority", 0), 7);
    fz_msg_destroy(&r);
    assert_string_equal(s_row(fx, high, "priority"), "7");
    r = s_task_req(fx, "escalate", low);
    assert_true(fz_msg_int(r, "priority", 0) > 7); /* above every live task */
    fz_msg_destroy(&r);
    r = s_task_req(fx, "escalate", 4242);
    s_assert_error(&r, "not-found", "no-such-task");

    r = s_call(fx, s_req(fx, "resume"));
    fz_msg_destroy(&r);
    assert_int_equal(s_dispatched(fx, w, low), 1); /* escalated: it goes first */
    r = s_call(fx, s_req(fx, "stop"));
    assert_int_equal(fz_msg_uint(r, "count", 0), 1);
    fz_msg_destroy(&r);
    fz_msg_t *c = s_expect(fx, w, "cancel");
    assert_string_equal(fz_msg_str(c, "reason", "", NULL), "stop");
    fz_msg_destroy(&c);
    s_result(fx, w, low, 1, "cancelled", 0, 0);
    s_assert_event(fx, "task.cancelled", low, "cancelled");
    /* Stop paused dispatch: high waits. */
    assert_false(s_gets(fx, w, "dispatch", 10));
    fz_msg_t *st = s_call(fx, s_req(fx, "status"));
    assert_true(fz_msg_bool(st, "paused", false));
    fz_msg_destroy(&st);

    /* Cancel of a queued task ends it at once. */
    r = s_task_req(fx, "cancel", high);
    assert_string_equal(fz_msg_str(r, "state", "", NULL), "cancelled");
    fz_msg_destroy(&r);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

static void test_whitelist_and_tree_limits(void **state)
{
    (void)state;
    fx_t *fx = s_fx(s_limits);
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "x");
    fz_enc_str(req, "model", "m9");
    fz_msg_t *r = s_call(fx, req);
    s_assert_error(&r, "refused", "model-not-allowed");
    req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "x");
    fz_enc_str(req, "model", "m1");
    fz_enc_array(req, "fallback", 1);
    fz_enc_str(req, NULL, "m7");
    r = s_call(fx, req);
    s_assert_error(&r, "refused", "model-not-allowed");

    uint64_t root = s_submit(fx, "root", 0, 0);
    req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "child");
    fz_enc_uint(req, "parent", root);
    r = s_call(fx, req);
    uint64_t child = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    assert_true(child > root);
    req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "second child");
    fz_enc_uint(req, "parent", root);
    r = s_call(fx, req);
    s_assert_error(&r, "refused", "too-many-children");
    req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "grandchild");
    fz_enc_uint(req, "parent", child);
    r = s_call(fx, req);
    s_assert_error(&r, "refused", "too-deep");

    /* Cancelling the root cancels its subtree. */
    r = s_task_req(fx, "cancel", root);
    assert_int_equal(fz_msg_uint(r, "count", 0), 1);
    fz_msg_destroy(&r);
    assert_string_equal(s_row(fx, child, "state"), "cancelled");
    /* A worker announcing a model outside the whitelist is told so. */
    zsock_t *w = fz_net_socket(ZMQ_DEALER);
    assert_int_equal(zsock_connect(w, "%s", fx->ep), 0);
    fz_enc_t *hello = fz_enc_new("hello", 1);
    fz_enc_str(hello, "name", "w1");
    fz_enc_array(hello, "models", 2);
    fz_enc_str(hello, NULL, "m1");
    fz_enc_str(hello, NULL, "m9");
    assert_int_equal(fz_net_send(w, NULL, &hello), 0);
    fz_msg_t *welcome = s_expect(fx, w, "welcome");
    const msgpack_object *refused = fz_msg_obj(welcome, "refused_models");
    assert_true(refused && refused->via.array.size == 1);
    assert_int_equal(refused->via.array.ptr[0].via.str.size, 2); /* "m9" */
    fz_msg_destroy(&welcome);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* A batch lands whole with its internal edges; views read it back; purge keeps today. */
/* A submit and its resend with the same idempotency key in one turn (the first not yet
   committed when the second is read): one task, the second answered as a duplicate. */
static void test_same_key_twice_in_one_turn(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    for (int i = 0; i < 2; i++) {
        fz_enc_t *req = s_req(fx, "submit");
        fz_enc_str(req, "prompt", "once");
        fz_enc_str(req, "idempotency_key", "same-turn");
        assert_int_equal(fz_net_send(fx->client, NULL, &req), 0);
    }
    fz_msg_t *a = s_next(fx, fx->client), *b = s_next(fx, fx->client);
    assert_true(fz_msg_is(a, "submitted") && fz_msg_is(b, "submitted"));
    assert_int_equal(fz_msg_uint(a, "task", 0), fz_msg_uint(b, "task", 1));
    assert_false(fz_msg_bool(a, "duplicate", false));
    assert_true(fz_msg_bool(b, "duplicate", false));
    assert_string_equal(s_row(fx, fz_msg_uint(a, "task", 0), "prompt"), "once");
    assert_string_equal(s_row(fx, fz_msg_uint(a, "task", 0) + 1, "prompt"), "");
    fz_msg_destroy(&a);
    fz_msg_destroy(&b);
    s_fx_destroy(&fx);
}

static void test_batch_views_and_purge(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_enc_t *req = s_req(fx, "submit-batch");
    fz_enc_array(req, "tasks", 2);
    fz_enc_t *t0 = fz_enc_new_map();
    fz_enc_str(t0, "prompt", "build");
    fz_enc_str(t0, "name", "build");
    fz_enc_sub(req, NULL, &t0);
    fz_enc_t *t1 = fz_enc_new_map();
    fz_enc_str(t1, "prompt", "test");
    fz_enc_array(t1, "after_index", 1);
    fz_enc_uint(t1, NULL, 0);
    fz_enc_sub(req, NULL, &t1);
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "submitted-batch"));
    const msgpack_object *ids = fz_msg_obj(r, "tasks");
    assert_int_equal(ids->via.array.size, 2);
    uint64_t a = ids->via.array.ptr[0].via.u64, b = ids->via.array.ptr[1].via.u64;
    fz_msg_destroy(&r);
    assert_string_equal(s_row(fx, b, "state"), "waiting");

    zsock_t *w = s_worker(fx, "w1");
    s_result(fx, w, a, s_dispatched(fx, w, a), "exited", 0, 0.5);
    s_result(fx, w, b, s_dispatched(fx, w, b), "exited", 1, 0.25);
    s_assert_event(fx, "task.failed", b, "failed");

    req = s_req(fx, "list");
    fz_enc_str(req, "state", "failed");
    r = s_call(fx, req);
    const msgpack_object *tasks = fz_msg_obj(r, "tasks");
    assert_int_equal(tasks->via.array.size, 1);
    assert_int_equal(fz_obj_uint(&tasks->via.array.ptr[0], "id", 0), b);
    fz_msg_destroy(&r);
    req = s_req(fx, "list");
    fz_enc_str(req, "state", "sideways");
    r = s_call(fx, req);
    s_assert_error(&r, "invalid", "bad-field");

    req = s_req(fx, "cost");
    fz_enc_str(req, "by", "class");
    r = s_call(fx, req);
    assert_true(fz_msg_float(r, "total_cost", 0) == 0.75);
    const msgpack_object *rows = fz_msg_obj(r, "rows");
    assert_int_equal(rows->via.array.size, 2); /* "" (succeeded) and task-failed */
    char key[40];
    assert_string_equal(fz_obj_str(&rows->via.array.ptr[1], "key", key, sizeof key), "task-failed");
    fz_msg_destroy(&r);
    req = s_req(fx, "cost");
    fz_enc_str(req, "by", "weather");
    r = s_call(fx, req);
    s_assert_error(&r, "invalid", "bad-field");

    r = s_call(fx, s_req(fx, "ping"));
    assert_true(fz_msg_is(r, "pong"));
    fz_msg_destroy(&r);
    req = s_req(fx, "events");
    fz_enc_uint(req, "since", 0);
    r = s_call(fx, req);
    assert_true(fz_msg_obj(r, "events")->via.array.size >= 6);
    fz_msg_destroy(&r);
    fz_msg_t *ws = s_call(fx, s_req(fx, "workers"));
    assert_int_equal(fz_msg_obj(ws, "workers")->via.array.size, 1);
    fz_msg_destroy(&ws);

    /* Purge never deletes today's tasks: the budget is counted from them. */
    req = s_req(fx, "purge");
    fz_enc_float(req, "before", fz_wall() + 86400);
    r = s_call(fx, req);
    assert_int_equal(fz_msg_uint(r, "count", 99), 0);
    fz_msg_destroy(&r);
    assert_string_equal(s_row(fx, a, "state"), "succeeded");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- wire conformance */

/* What a strict decoder (Python's msgpack with raw=False) requires: every str, at any depth,
   is valid UTF-8. */
static void s_assert_strict(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        if (!fz_utf8_valid(o->via.str.ptr, o->via.str.size))
            fail_msg("a str of %u bytes is not valid UTF-8", o->via.str.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            s_assert_strict(&o->via.array.ptr[i]);
        break;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            s_assert_strict(&o->via.map.ptr[i].key);
            s_assert_strict(&o->via.map.ptr[i].val);
        }
        break;
    default:
        break;
    }
}

/* task.submitted carries the prompt's first 200 bytes, cut between characters. */
static void test_submitted_prompt_is_cut_between_characters(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    char prompt[400];
    memset(prompt, 'a', 199);
    for (int i = 0; i < 20; i++)
        memcpy(prompt + 199 + 2 * i, "\xc3\xa9", 2); /* bytes 200 and 201 are one character */
    prompt[239] = 0;
    uint64_t id = s_submit(fx, prompt, 0, 0);
    fz_event_t *e = s_event(fx, "task.submitted", id);
    size_t len;
    const char *p = fz_obj_strn(fz_event_map(e), "prompt", &len);
    assert_int_equal(len, 199);
    assert_true(fz_utf8_valid(p, len));
    s_assert_strict(fz_event_map(e));
    assert_null(fz_obj_get(fz_event_map(e), "v")); /* §6: events are not messages */
    assert_null(fz_obj_get(fz_event_map(e), "type"));
    fz_event_destroy(&e);
    fz_enc_t *req = s_req(fx, "events");
    fz_enc_uint(req, "since", 0);
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "events"));
    s_assert_strict(fz_msg_root(r));
    fz_msg_destroy(&r);
    s_fx_destroy(&fx);
}

/* The nonce is per worker process (§5): the same nonce on a new connection is that worker
   reconnecting, and replaces the old connection at once, taking its attempt along; another
   nonce is another process, refused while the first lives and welcomed once it is dead. */
static void test_reconnect_with_the_same_nonce_replaces_at_once(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit(fx, "x", 0, 0);
    zsock_t *w1 = s_worker_hello(fx, "w1", "proc-1", 0, 0);
    fz_msg_t *m = s_expect(fx, w1, "welcome");
    fz_msg_destroy(&m);
    uint32_t a = s_dispatched(fx, w1, id);
    zsock_t *again = s_worker_hello(fx, "w1", "proc-1", id, a);
    m = s_expect(fx, again, "welcome");
    fz_msg_destroy(&m);
    fz_event_t *e = s_event(fx, "worker.left", 0);
    char reason[32];
    assert_string_equal(fz_obj_str(fz_event_map(e), "reason", reason, sizeof reason),
                        "reconnected");
    fz_event_destroy(&e);
    assert_false(s_gets(fx, again, "cancel", 5)); /* the attempt moved over */
    assert_string_equal(s_row(fx, id, "state"), "running");
    s_result(fx, again, id, a, "exited", 0, 0);
    s_assert_event(fx, "task.succeeded", id, "succeeded");

    zsock_t *other = s_worker_hello(fx, "w1", "proc-2", 0, 0);
    m = s_next(fx, other);
    s_assert_error(&m, "conflict", "name-taken");
    zsock_destroy(&again); /* it falls silent: dead after 3 intervals */
    zclock_sleep(3 * (int)fx->cfg.heartbeat_ms + 50);
    s_turns(fx, 3);
    fz_enc_t *hello = fz_enc_new("hello", 3);
    fz_enc_str(hello, "name", "w1");
    fz_enc_str(hello, "nonce", "proc-2");
    assert_int_equal(fz_net_send(other, NULL, &hello), 0);
    m = s_expect(fx, other, "welcome");
    fz_msg_destroy(&m);
    zsock_destroy(&other);
    zsock_destroy(&w1);
    s_fx_destroy(&fx);
}

/* A result needs only task, attempt and outcome (§5); the rest take their documented
   defaults: 0, "", the dispatch's model, and a class the broker works out. */
static void test_result_of_three_fields_takes_the_defaults(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t id = s_submit_model(fx, "m1", NULL, 0);
    zsock_t *w = s_worker_models(fx, "w1", "m1", NULL);
    uint32_t a = s_dispatched(fx, w, id);
    fz_enc_t *r = fz_enc_new("result", 0);
    fz_enc_uint(r, "task", id);
    fz_enc_uint(r, "attempt", a);
    fz_enc_str(r, "outcome", "exited");
    assert_int_equal(fz_net_send(w, NULL, &r), 0);
    fz_msg_t *ack = s_expect(fx, w, "result-ack");
    fz_msg_destroy(&ack);
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    assert_string_equal(s_attempt_row(fx, id, 1, "model"), "m1");
    assert_string_equal(s_attempt_row(fx, id, 1, "exit_code"), "0");
    assert_string_equal(s_attempt_row(fx, id, 1, "cost_usd"), "0.0");
    assert_string_equal(s_attempt_row(fx, id, 1, "class"), "");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* Sends one raw frame from the client and returns the reply. */
static fz_msg_t *s_raw(fx_t *fx, const void *data, size_t len)
{
    assert_int_equal(zmq_send(zsock_resolve(fx->client), data, len, 0), (int)len);
    return s_next(fx, fx->client);
}

/* Sends the map built in e as it is (no v/type/rid added) and returns the reply. */
static fz_msg_t *s_raw_enc(fx_t *fx, fz_enc_t *e)
{
    size_t len;
    const void *data = fz_enc_data(e, &len);
    fz_msg_t *r = s_raw(fx, data, len);
    fz_enc_destroy(&e);
    return r;
}

static fz_enc_t *s_envelope(const char *type)
{
    fz_enc_t *e = fz_enc_new_map();
    fz_enc_uint(e, "v", 1);
    fz_enc_str(e, "type", type);
    return e;
}

/* Every reply carries the request's rid, 0 included (a request without one counts as 0); an
   error to a frame whose rid could not be read carries none. */
static void test_replies_echo_the_rid_even_zero(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_enc_t *e = s_envelope("ping");
    fz_enc_uint(e, "rid", 0);
    fz_msg_t *r = s_raw_enc(fx, e);
    assert_true(fz_msg_is(r, "pong"));
    assert_true(fz_msg_has(r, "rid"));
    assert_int_equal(fz_msg_rid(r), 0);
    fz_msg_destroy(&r);

    r = s_raw_enc(fx, s_envelope("ping")); /* no rid at all */
    assert_true(fz_msg_is(r, "pong"));
    assert_true(fz_msg_has(r, "rid"));
    fz_msg_destroy(&r);

    e = s_envelope("get"); /* an error to a request with rid 0 */
    fz_enc_uint(e, "rid", 0);
    fz_enc_uint(e, "task", 424242);
    r = s_raw_enc(fx, e);
    assert_true(fz_msg_has(r, "rid"));
    s_assert_error(&r, "not-found", "no-such-task");

    e = s_envelope("get"); /* refused by the codec, rid readable */
    fz_enc_uint(e, "rid", 7);
    fz_enc_str(e, "task", "seven");
    r = s_raw_enc(fx, e);
    assert_int_equal(fz_msg_rid(r), 7);
    s_assert_error(&r, "invalid", "bad-field");

    e = s_envelope("ping"); /* a rid of the wrong type cannot be read */
    fz_enc_str(e, "rid", "x");
    r = s_raw_enc(fx, e);
    assert_false(fz_msg_has(r, "rid"));
    s_assert_error(&r, "invalid", "bad-field");

    r = s_raw(fx, "\x91\x01", 2); /* not a map */
    assert_false(fz_msg_has(r, "rid"));
    s_assert_error(&r, "malformed", "malformed");

    zmq_send(zsock_resolve(fx->client), "\x80", 1, ZMQ_SNDMORE); /* two frames */
    r = s_raw(fx, "\x80", 1);
    assert_false(fz_msg_has(r, "rid"));
    s_assert_error(&r, "malformed", "malformed");
    s_fx_destroy(&fx);
}

/* worker.joined and worker.left both carry the worker's models (§6). */
static void test_worker_left_carries_its_models(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    zsock_t *w = s_worker_models(fx, "w1", "m1", "m2");
    fz_enc_t *bye = fz_enc_new("bye", 0);
    assert_int_equal(fz_net_send(w, NULL, &bye), 0);
    fz_event_t *e = s_event(fx, "worker.left", 0);
    const msgpack_object *models = fz_obj_get(fz_event_map(e), "models");
    assert_non_null(models);
    assert_int_equal(models->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(models->via.array.size, 2);
    assert_false(fz_obj_bool(fz_event_map(e), "any_model", true));
    fz_event_destroy(&e);
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* A type the broker has no handler for is unknown-type before any field check: a reply type
   (with or without its fields), a broker->worker message. */
static void test_reply_types_sent_as_requests_are_unknown(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    static const char *types[] = {"submitted", "pong",       "task", "welcome",
                                  "dispatch",  "result-ack", "error"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        fz_msg_t *r = s_call(fx, s_req(fx, types[i])); /* their required fields missing */
        s_assert_error(&r, "unknown-type", "unknown-type");
    }
    fz_enc_t *req = s_req(fx, "submitted"); /* with its fields right */
    fz_enc_uint(req, "task", 1);
    fz_msg_t *r = s_call(fx, req);
    s_assert_error(&r, "unknown-type", "unknown-type");
    r = s_call(fx, s_req(fx, "no-such-type"));
    s_assert_error(&r, "unknown-type", "unknown-type");
    req = s_req(fx, "get"); /* a request type keeps its field checks */
    r = s_call(fx, req);
    s_assert_error(&r, "invalid", "bad-field");
    s_fx_destroy(&fx);
}

/* A ping padded with an unknown key to exactly `len` bytes. */
static fz_enc_t *s_padded_ping(fx_t *fx, size_t len)
{
    fz_enc_t *e = s_req(fx, "ping");
    size_t base;
    fz_enc_data(e, &base);
    size_t pad = len - base - 4 - 5; /* key "pad" (4 bytes), str32 header (5 bytes) */
    char *s = malloc(pad + 1);
    assert_non_null(s);
    memset(s, 'x', pad);
    s[pad] = 0;
    fz_enc_str(e, "pad", s);
    free(s);
    size_t got;
    fz_enc_data(e, &got);
    assert_int_equal(got, len);
    return e;
}

/* §1: a frame is at most 4 MiB. A bigger one makes libzmq drop the connection with no reply
   (ZMQ_MAXMSGSIZE is exactly FZ_MAX_FRAME); one just under is answered. */
static void test_frame_limit_is_exactly_4_mib(void **state)
{
    (void)state;
    s_ipc = true;
    fx_t *fx = s_fx(NULL);
    s_ipc = false;
    fz_enc_t *e = s_padded_ping(fx, FZ_MAX_FRAME - 100);
    fz_msg_t *r = s_call(fx, e);
    assert_true(fz_msg_is(r, "pong"));
    fz_msg_destroy(&r);
    e = s_padded_ping(fx, FZ_MAX_FRAME + 100);
    assert_int_equal(fz_net_send(fx->client, NULL, &e), 0);
    assert_false(s_readable(fx->client) || s_gets(fx, fx->client, "error", 60));
    r = s_call(fx, s_req(fx, "ping")); /* the DEALER reconnected by itself */
    assert_true(fz_msg_is(r, "pong"));
    fz_msg_destroy(&r);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- the spec, strictly */

/* No heartbeats from the fake workers, and a budget small enough to hold a task. */
static void s_life_config(fz_broker_config_t *cfg)
{
    cfg->heartbeat_ms = 1000;
    cfg->daily_budget = 1.0;
}

/* Every map of the array follows the named object's spec, strictly. */
static void s_objects_conform(const msgpack_object *arr, const char *object, uint32_t min)
{
    assert_non_null(arr);
    assert_true(arr->type == MSGPACK_OBJECT_ARRAY && arr->via.array.size >= min);
    const fz_msgspec_t *spec = fz_spec_object(object);
    assert_non_null(spec);
    char why[512];
    for (uint32_t i = 0; i < arr->via.array.size; i++)
        if (fz_obj_check_strict(&arr->via.array.ptr[i], spec, why, sizeof why) != FZ_OK)
            fail_msg("%s %u of a reply is beyond its spec: %s", object, i, why);
}

/* get: the task, its attempts (at least `attempts`), strictly. */
static void s_get_conforms(fx_t *fx, uint64_t id, uint32_t attempts)
{
    fz_msg_t *g = s_get(fx, id);
    char why[512];
    if (fz_obj_check_strict(fz_msg_obj(g, "task"), fz_spec_object("task"), why, sizeof why))
        fail_msg("task %llu of a get reply is beyond its spec: %s", (unsigned long long)id, why);
    s_objects_conform(fz_msg_obj(g, "attempts"), "attempt", attempts);
    fz_msg_destroy(&g);
}

static void s_list_conforms(fx_t *fx, const char *state, bool tail)
{
    fz_enc_t *req = s_req(fx, "list");
    if (state)
        fz_enc_str(req, "state", state);
    fz_enc_bool(req, "tail", tail);
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "tasks"));
    s_objects_conform(fz_msg_obj(r, "tasks"), "task-listed", 1);
    fz_msg_destroy(&r);
}

static void s_workers_conform(fx_t *fx, uint32_t n)
{
    fz_msg_t *r = s_call(fx, s_req(fx, "workers"));
    assert_true(fz_msg_is(r, "workers"));
    s_objects_conform(fz_msg_obj(r, "workers"), "worker", n);
    fz_msg_destroy(&r);
}

static void s_send(zsock_t *w, fz_enc_t *m)
{
    assert_int_equal(fz_net_send(w, NULL, &m), 0);
}

/* A result with an outcome and a class that is not exit 75 (so it may be retried). */
static void s_send_failure(zsock_t *w, uint64_t task, uint32_t attempt, const char *outcome,
                           const char *cls)
{
    fz_enc_t *r = fz_enc_new("result", 0);
    fz_enc_uint(r, "task", task);
    fz_enc_uint(r, "attempt", attempt);
    fz_enc_str(r, "outcome", outcome);
    fz_enc_int(r, "exit_code", 1);
    fz_enc_float(r, "cost_usd", 0.01);
    fz_enc_str(r, "summary", "no luck");
    fz_enc_bin(r, "output", "tail\n", 5);
    fz_enc_str(r, "log", "/tmp/x.log");
    if (cls)
        fz_enc_str(r, "class", cls);
    s_send(w, r);
}

static void s_acked(fx_t *fx, zsock_t *w)
{
    fz_msg_t *ack = s_expect(fx, w, "result-ack");
    fz_msg_destroy(&ack);
}

/* Drives a broker through a representative life (dependencies, progress, output, results of
   every kind, a quota wait, a lost and an unhealthy worker, a held task, cancels, controls)
   and checks every reply, every object in it and every event strictly against the spec
   (s_next and s_event check each message and event; this checks the objects by name too). */
static void test_a_life_conforms_to_the_spec(void **state)
{
    (void)state;
    fx_t *fx = s_fx(s_life_config);
    zsock_t *w1 = s_worker(fx, "w1");

    /* A: a full submit, progress, output, a timeout retried on its fallback, then success. */
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "write the tests");
    fz_enc_str(req, "name", "tests");
    fz_enc_int(req, "priority", 5);
    fz_enc_map(req, "labels", 1);
    fz_enc_str(req, NULL, "team");
    fz_enc_str(req, NULL, "web");
    fz_enc_uint(req, "retries", 1);
    fz_enc_array(req, "fallback", 1);
    fz_enc_str(req, NULL, "m2");
    fz_enc_float(req, "max_cost", 0.05);
    fz_enc_float(req, "deadline", fz_wall() + 3600);
    fz_msg_t *r = s_call(fx, req);
    uint64_t a = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    uint64_t b = s_submit_after(fx, "test", a);
    uint64_t c = s_submit_after(fx, "deploy", b);
    s_get_conforms(fx, b, 0); /* waiting: deps_pending */

    uint32_t n = s_dispatched(fx, w1, a);
    fz_enc_t *m = fz_enc_new("started", 0);
    fz_enc_uint(m, "task", a);
    fz_enc_uint(m, "attempt", n);
    fz_enc_uint(m, "pid", 4242);
    s_send(w1, m);
    m = fz_enc_new("output", 0);
    fz_enc_uint(m, "task", a);
    fz_enc_uint(m, "attempt", n);
    fz_enc_bin(m, "data", "hello\n", 6);
    s_send(w1, m);
    m = fz_enc_new("heartbeat", 0);
    fz_enc_uint(m, "task", a);
    fz_enc_uint(m, "attempt", n);
    fz_enc_uint(m, "elapsed_ms", 10);
    fz_enc_uint(m, "idle_ms", 0);
    fz_enc_float(m, "cost_usd", 0.001);
    fz_enc_uint(m, "tokens_in", 5);
    fz_enc_uint(m, "progress", 50);
    fz_enc_str(m, "progress_text", "half");
    s_send(w1, m);
    fz_event_destroy(&(fz_event_t *){s_event(fx, "task.progress", a)});
    s_get_conforms(fx, a, 1); /* running: an attempt without an end */
    s_workers_conform(fx, 1);
    s_send_failure(w1, a, n, "timeout", NULL);
    s_acked(fx, w1);
    n = s_dispatched(fx, w1, a);
    assert_int_equal(n, 2);
    s_result(fx, w1, a, n, "exited", 0, 0.02);

    /* B fails with a class that is not retried; C, after it, is dep-failed. */
    n = s_dispatched(fx, w1, b);
    s_send_class(w1, b, n, "permission-denied", 0);
    s_acked(fx, w1);
    s_assert_event(fx, "task.dep-failed", c, "dep-failed");
    s_get_conforms(fx, c, 0);

    /* D waits for a quota to reset (held, not_before), then runs again. */
    uint64_t d = s_submit(fx, "quota", 0, 0.05);
    n = s_dispatched(fx, w1, d);
    s_send_class(w1, d, n, "quota", fz_wall() + 0.3);
    s_acked(fx, w1);
    s_get_conforms(fx, d, 1);
    s_list_conforms(fx, "held", false);
    n = s_dispatched(fx, w1, d);
    s_result(fx, w1, d, n, "exited", 0, 0.01);

    /* G runs on w1; E is lost with w2 (bye), then w3's agent is missing, then w1 runs it. */
    uint64_t g = s_submit(fx, "long", 0, 0.05);
    uint32_t ng = s_dispatched(fx, w1, g);
    zsock_t *w2 = s_worker(fx, "w2");
    uint64_t e = s_submit(fx, "lost", 0, 0.05);
    s_dispatched(fx, w2, e);
    s_send(w2, fz_enc_new("bye", 0));
    s_assert_event(fx, "worker.left", 0, "");
    zsock_t *w3 = s_worker(fx, "w3");
    n = s_dispatched(fx, w3, e);
    s_send_failure(w3, e, n, "spawn-failed", NULL);
    s_acked(fx, w3);
    fz_event_destroy(&(fz_event_t *){s_event(fx, "worker.unhealthy", 0)});
    s_workers_conform(fx, 2); /* w3 unhealthy for every model: [""] */
    req = s_req(fx, "cancel");
    fz_enc_uint(req, "task", g);
    r = s_call(fx, req);
    assert_true(fz_msg_is(r, "ok"));
    fz_msg_destroy(&r);
    fz_msg_t *cancel = s_expect(fx, w1, "cancel");
    fz_msg_destroy(&cancel);
    s_send_result(w1, g, ng, "cancelled", 0, 0);
    n = s_dispatched(fx, w1, e);
    s_result(fx, w1, e, n, "exited", 0, 0.01);
    s_get_conforms(fx, e, 3);

    /* F does not fit the budget: held; its priority moves; the controls; then cancelled. */
    uint64_t f = s_submit(fx, "expensive", 0, 2.0);
    s_assert_event(fx, "task.held", f, "held");
    s_get_conforms(fx, f, 0);
    req = s_req(fx, "priority");
    fz_enc_uint(req, "task", f);
    fz_enc_int(req, "priority", 7);
    r = s_call(fx, req);
    assert_true(fz_msg_is(r, "ok"));
    fz_msg_destroy(&r);
    const char *controls[] = {"pause", "resume"};
    for (size_t i = 0; i < 2; i++) {
        r = s_call(fx, s_req(fx, controls[i]));
        assert_true(fz_msg_is(r, "ok"));
        fz_msg_destroy(&r);
    }
    req = s_req(fx, "budget");
    fz_enc_float(req, "set", 1.5);
    r = s_call(fx, req);
    fz_msg_destroy(&r);
    req = s_req(fx, "cancel");
    fz_enc_uint(req, "task", f);
    r = s_call(fx, req);
    assert_true(fz_msg_is(r, "ok"));
    fz_msg_destroy(&r);

    /* The views, strictly: every task, lists, workers, status, cost by every key. */
    uint64_t ids[] = {a, b, c, d, e, f, g};
    uint32_t attempts[] = {2, 1, 0, 2, 3, 0, 1};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
        s_get_conforms(fx, ids[i], attempts[i]);
    s_list_conforms(fx, NULL, false);
    s_list_conforms(fx, NULL, true);
    s_workers_conform(fx, 2);
    r = s_call(fx, s_req(fx, "status"));
    assert_true(fz_msg_is(r, "status"));
    fz_msg_destroy(&r);
    const char *by[] = {"day", "model", "task", "worker", "label", "class"};
    for (size_t i = 0; i < sizeof by / sizeof *by; i++) {
        req = s_req(fx, "cost");
        fz_enc_str(req, "by", by[i]);
        fz_enc_str(req, "label", "team");
        r = s_call(fx, req);
        assert_true(fz_msg_is(r, "cost"));
        s_objects_conform(fz_msg_obj(r, "rows"), "cost-row", 1);
        fz_msg_destroy(&r);
    }

    /* Every event of the run, as the SUB socket got it and as `events` returns it. */
    bool seen_sub[FZ_TOPIC_COUNT] = {false}, seen_history[FZ_TOPIC_COUNT] = {false};
    s_turns(fx, 5);
    char why[512];
    while (s_readable(fx->sub)) {
        fz_event_t *ev = fz_event_recv(fx->sub, why, sizeof why);
        if (!ev)
            fail_msg("bad event: %s", why);
        s_event_conforms(ev);
        seen_sub[fz_topic_from_name(fz_event_topic(ev))] = true;
        fz_event_destroy(&ev);
    }
    req = s_req(fx, "events");
    fz_enc_uint(req, "since", 0);
    r = s_call(fx, req); /* strictly, each event by its topic (s_next) */
    const msgpack_object *events = fz_msg_obj(r, "events");
    for (uint32_t i = 0; i < events->via.array.size; i++) {
        char topic[64];
        int k = fz_topic_from_name(fz_obj_str(&events->via.array.ptr[i], "event", topic, 64));
        assert_true(k > 0);
        seen_history[k] = true;
    }
    fz_msg_destroy(&r);
    /* Not seen here: task.stalled (test_stall_is_announced_once), broker.started and
       broker.stopping (fz_broker_run only). */
    for (int k = 1; k < FZ_TOPIC_COUNT; k++) {
        if (k == FZ_TOPIC_TASK_STALLED || k == FZ_TOPIC_BROKER_STARTED ||
            k == FZ_TOPIC_BROKER_STOPPING)
            continue;
        if (!seen_history[k])
            fail_msg("the life never sent %s", fz_topic_name((fz_topic_t)k));
        (void)seen_sub;
    }
    zsock_destroy(&w1);
    zsock_destroy(&w2);
    zsock_destroy(&w3);
    s_fx_destroy(&fx);
}

/* Two connections whose (custom, long) routing ids share their first 40 bytes are two
   workers, not one: the table key is the whole id. */
static void test_long_routing_ids_do_not_collide(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    zsock_t *w[2];
    for (int i = 0; i < 2; i++) {
        char id[64], name[16];
        snprintf(id, sizeof id, "%s%d", "routing-id-prefix-shared-by-both-workers", i);
        snprintf(name, sizeof name, "long%d", i);
        w[i] = fz_net_socket(ZMQ_DEALER);
        zsock_set_identity(w[i], id);
        assert_int_equal(zsock_connect(w[i], "%s", fx->ep), 0);
        fz_enc_t *hello = fz_enc_new("hello", 1);
        fz_enc_str(hello, "name", name);
        fz_enc_str(hello, "nonce", name);
        assert_int_equal(fz_net_send(w[i], NULL, &hello), 0);
        fz_msg_t *m = s_expect(fx, w[i], "welcome");
        fz_msg_destroy(&m);
    }
    fz_msg_t *ws = s_call(fx, s_req(fx, "workers"));
    assert_int_equal(fz_msg_obj(ws, "workers")->via.array.size, 2);
    fz_msg_destroy(&ws);
    for (int i = 0; i < 2; i++)
        zsock_destroy(&w[i]);
    s_fx_destroy(&fx);
}

/* ---------------------------------------------------------------- workspaces (issue 11) */

static uint64_t s_submit_ws(fx_t *fx, const char *prompt, const char *repo, const char *check,
                            uint64_t after, uint32_t retries)
{
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", prompt);
    fz_enc_str(req, "repo", repo);
    if (check)
        fz_enc_str(req, "check", check);
    fz_enc_uint(req, "retries", retries);
    if (after) {
        fz_enc_array(req, "after", 1);
        fz_enc_uint(req, NULL, after);
    }
    fz_msg_t *r = s_call(fx, req);
    assert_true(fz_msg_is(r, "submitted"));
    uint64_t id = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    return id;
}

/* A workspace result: the agent exited 0; the check passed, failed or did not run (NULL). */
static void s_send_ws_result(zsock_t *w, uint64_t task, uint32_t attempt, const char *cls,
                             const char *check, const char *head)
{
    fz_enc_t *r = fz_enc_new("result", 0);
    fz_enc_uint(r, "task", task);
    fz_enc_uint(r, "attempt", attempt);
    fz_enc_str(r, "outcome", cls && !strcmp(cls, "workspace") ? "spawn-failed" : "exited");
    fz_enc_int(r, "exit_code", 0);
    if (cls)
        fz_enc_str(r, "class", cls);
    if (head) {
        char branch[64];
        snprintf(branch, sizeof branch, "fz/%llu-%u", (unsigned long long)task, attempt);
        fz_enc_str(r, "branch", branch);
        fz_enc_str(r, "base_commit", "b0b0");
        fz_enc_str(r, "head_commit", head);
        fz_enc_uint(r, "files", 2);
        fz_enc_uint(r, "insertions", 5);
        fz_enc_uint(r, "deletions", 1);
    }
    if (check) {
        bool passed = !strcmp(check, "passed");
        fz_enc_str(r, "check_status", check);
        fz_enc_int(r, "check_exit", passed ? 0 : 2);
        if (!passed)
            fz_enc_bin(r, "check_output", "FAIL: test_parse\n", 17);
    }
    assert_int_equal(fz_net_send(w, NULL, &r), 0);
}

/* The ack of a result, and whether it asks the worker to promote the attempt's branch. */
static bool s_acked_promote(fx_t *fx, zsock_t *w, uint64_t task)
{
    fz_msg_t *ack = s_expect(fx, w, "result-ack");
    assert_int_equal(fz_msg_uint(ack, "task", 0), task);
    bool promote = fz_msg_bool(ack, "promote", false);
    fz_msg_destroy(&ack);
    return promote;
}

/* The next dispatch for task: its prompt and bases (joined by ','). */
static uint32_t s_dispatched_ws(fx_t *fx, zsock_t *w, uint64_t task, char *prompt, size_t psize,
                                char *bases, size_t bsize)
{
    fz_msg_t *d = s_expect(fx, w, "dispatch");
    assert_int_equal(fz_msg_uint(d, "task", 0), task);
    uint32_t attempt = (uint32_t)fz_msg_uint(d, "attempt", 0);
    snprintf(prompt, psize, "%s", fz_msg_str(d, "prompt", "", NULL));
    bases[0] = 0;
    const msgpack_object *b = fz_msg_obj(d, "bases");
    for (uint32_t i = 0; b && b->type == MSGPACK_OBJECT_ARRAY && i < b->via.array.size; i++)
        snprintf(bases + strlen(bases), bsize - strlen(bases), "%s%.*s", i ? "," : "",
                 (int)b->via.array.ptr[i].via.str.size, b->via.array.ptr[i].via.str.ptr);
    if (!b)
        snprintf(bases, bsize, "(none)");
    fz_msg_destroy(&d);
    return attempt;
}

/* A check that fails is a failure although the agent exited 0; the retry is given its output;
   the success promotes the branch, and dependents on the same repository start from it. */
static void test_workspace_check_feedback_and_lineage(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    uint64_t a = s_submit_ws(fx, "fix the parser", "/src/app", "make test", 0, 1);
    uint64_t b = s_submit_ws(fx, "document it", "/src/app", NULL, a, 3);
    uint64_t c = s_submit_ws(fx, "elsewhere", "/src/other", NULL, a, 0);
    zsock_t *w = s_worker(fx, "w1");
    char prompt[2048], bases[256];

    uint32_t n = s_dispatched_ws(fx, w, a, prompt, sizeof prompt, bases, sizeof bases);
    assert_string_equal(prompt, "fix the parser");
    assert_string_equal(bases, "");
    s_send_ws_result(w, a, n, "check-failed", "failed", "h1");
    assert_false(s_acked_promote(fx, w, a));
    fz_event_t *e = s_event(fx, "task.attempt-failed", a);
    char buf[64];
    assert_string_equal(fz_obj_str(fz_event_map(e), "check_status", buf, sizeof buf), "failed");
    assert_string_equal(fz_obj_str(fz_event_map(e), "class", buf, sizeof buf), "check-failed");
    fz_event_destroy(&e);
    assert_string_equal(s_attempt_row(fx, a, 1, "check_output"), "FAIL: test_parse\n");

    /* At once (no backoff), with the failure under its heading. */
    n = s_dispatched_ws(fx, w, a, prompt, sizeof prompt, bases, sizeof bases);
    assert_int_equal(n, 2);
    assert_non_null(strstr(prompt, "fix the parser\n\n## The check failed on attempt 1\n"));
    assert_non_null(strstr(prompt, "Command: make test\nExit status: 2\n"));
    assert_non_null(strstr(prompt, "FAIL: test_parse"));
    s_send_ws_result(w, a, n, NULL, "passed", "h2");
    assert_true(s_acked_promote(fx, w, a));
    s_assert_event(fx, "task.succeeded", a, "succeeded");
    char branch[32];
    snprintf(branch, sizeof branch, "fz/%llu", (unsigned long long)a);
    assert_string_equal(s_row(fx, a, "branch"), branch);
    assert_string_equal(s_row(fx, a, "head_commit"), "h2");
    /* b starts from a's result; c (another repository) from its own HEAD. */
    uint32_t an = n;
    n = s_dispatched_ws(fx, w, b, prompt, sizeof prompt, bases, sizeof bases);
    assert_string_equal(bases, "h2");
    assert_string_equal(prompt, "document it");
    /* a's ack was lost: its result again is acknowledged again, promote included. */
    s_send_ws_result(w, a, an, NULL, "passed", "h2");
    assert_true(s_acked_promote(fx, w, a));
    /* A workspace failure fails at once, retries or not. */
    s_send_ws_result(w, b, n, "workspace", NULL, NULL);
    assert_false(s_acked_promote(fx, w, b));
    s_assert_event(fx, "task.failed", b, "failed");
    assert_string_equal(s_row(fx, b, "class"), "workspace");
    n = s_dispatched_ws(fx, w, c, prompt, sizeof prompt, bases, sizeof bases);
    assert_string_equal(bases, "");
    s_send_ws_result(w, c, n, NULL, NULL, "h9");
    assert_true(s_acked_promote(fx, w, c));

    /* get shows the workspace, strictly to the spec (s_call checks every reply). */
    fz_msg_t *r = s_get(fx, a);
    const msgpack_object *t = fz_obj_get(fz_msg_root(r), "task");
    assert_string_equal(fz_obj_str(t, "repo", buf, sizeof buf), "/src/app");
    assert_string_equal(fz_obj_str(t, "check", buf, sizeof buf), "make test");
    assert_string_equal(fz_obj_str(t, "branch", buf, sizeof buf), branch);
    fz_msg_destroy(&r);

    /* A base needs a repository. */
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "x");
    fz_enc_str(req, "base", "main");
    r = s_call(fx, req);
    s_assert_error(&r, "invalid", "bad-field");
    zsock_destroy(&w);
    s_fx_destroy(&fx);
}

/* The budget's reserved amount now. */
static double s_reserved(fx_t *fx)
{
    fz_msg_t *r = s_call(fx, s_req(fx, "budget"));
    double v = fz_msg_float(r, "reserved", -1);
    fz_msg_destroy(&r);
    return v;
}

/* Best of 3: three attempts at once, reserved up front; the primary fails its check and a
   racer takes its place; the first to pass wins, the last is cancelled and recorded when its
   result comes, its worker busy until then. */
static void test_best_of_three(void **state)
{
    (void)state;
    fx_t *fx = s_fx(NULL);
    fz_enc_t *req = s_req(fx, "submit");
    fz_enc_str(req, "prompt", "race");
    fz_enc_str(req, "repo", "/src/app");
    fz_enc_str(req, "check", "make test");
    fz_enc_uint(req, "best_of", 3);
    fz_enc_float(req, "max_cost", 0.5);
    fz_enc_uint(req, "retries", 0);
    fz_msg_t *r = s_call(fx, req);
    uint64_t id = fz_msg_uint(r, "task", 0);
    fz_msg_destroy(&r);
    zsock_t *w[3] = {s_worker(fx, "w1"), s_worker(fx, "w2"), s_worker(fx, "w3")};
    uint32_t n[3];
    char prompt[256], bases[64];
    for (int i = 0; i < 3; i++)
        n[i] = s_dispatched_ws(fx, w[i], id, prompt, sizeof prompt, bases, sizeof bases);
    assert_true(n[0] != n[1] && n[1] != n[2] && n[0] != n[2]);
    assert_true(n[0] + n[1] + n[2] == 6); /* attempts 1, 2, 3 */
    assert_true(s_reserved(fx) > 1.49 && s_reserved(fx) < 1.51);
    int primary = n[0] == 1 ? 0 : n[1] == 1 ? 1 : 2;
    int win = (primary + 1) % 3, lose = (primary + 2) % 3;

    /* The primary fails its check: recorded, the task still runs. */
    s_send_ws_result(w[primary], id, 1, "check-failed", "failed", "h1");
    assert_false(s_acked_promote(fx, w[primary], id));
    fz_event_t *e = s_event(fx, "task.attempt-failed", id);
    assert_int_equal(fz_obj_uint(fz_event_map(e), "attempt", 0), 1);
    assert_string_equal(fz_obj_str(fz_event_map(e), "state", prompt, sizeof prompt), "running");
    fz_event_destroy(&e);
    assert_string_equal(s_row(fx, id, "state"), "running");
    assert_string_equal(s_attempt_row(fx, id, 1, "outcome"), "exited");
    assert_string_equal(s_attempt_row(fx, id, 1, "class"), "check-failed");

    /* A racer passes: the task takes it, and the last one is told to stop. */
    s_send_ws_result(w[win], id, n[win], NULL, "passed", "h2");
    assert_true(s_acked_promote(fx, w[win], id));
    s_assert_event(fx, "task.succeeded", id, "succeeded");
    assert_string_equal(s_row(fx, id, "head_commit"), "h2");
    fz_msg_t *c = s_expect(fx, w[lose], "cancel");
    assert_int_equal(fz_msg_uint(c, "attempt", 0), n[lose]);
    assert_non_null(strstr(fz_msg_str(c, "reason", "", NULL), "won"));
    fz_msg_destroy(&c);
    assert_true(s_reserved(fx) < 0.01);

    /* Busy until its result comes; then recorded (branch kept) and free again. */
    uint64_t next = s_submit(fx, "after the race", 0, 0);
    assert_false(s_gets(fx, w[lose], "dispatch", 20));
    fz_enc_t *res = fz_enc_new("result", 0);
    fz_enc_uint(res, "task", id);
    fz_enc_uint(res, "attempt", n[lose]);
    fz_enc_str(res, "outcome", "cancelled");
    fz_enc_float(res, "cost_usd", 0.2);
    fz_enc_str(res, "branch", "fz/x-3");
    fz_enc_str(res, "head_commit", "h3");
    assert_int_equal(fz_net_send(w[lose], NULL, &res), 0);
    assert_false(s_acked_promote(fx, w[lose], id));
    assert_string_equal(s_attempt_row(fx, id, (int)n[lose], "outcome"), "cancelled");
    assert_string_equal(s_attempt_row(fx, id, (int)n[lose], "head_commit"), "h3");
    assert_string_equal(s_row(fx, id, "state"), "succeeded");
    /* What the loser spent is the task's too, once (the result resent is not counted again). */
    double before = atof(s_row(fx, id, "cost_usd"));
    assert_true(before >= 0.2 - 1e-9);
    res = fz_enc_new("result", 0);
    fz_enc_uint(res, "task", id);
    fz_enc_uint(res, "attempt", n[lose]);
    fz_enc_str(res, "outcome", "cancelled");
    fz_enc_float(res, "cost_usd", 0.2);
    assert_int_equal(fz_net_send(w[lose], NULL, &res), 0);
    assert_false(s_acked_promote(fx, w[lose], id));
    assert_true(fabs(atof(s_row(fx, id, "cost_usd")) - before) < 1e-9);
    /* The next task goes to some idle worker; all three are idle now. */
    bool got = false;
    for (int i = 0; i < 3 && !got; i++)
        got = s_gets(fx, w[i], "dispatch", 20);
    assert_true(got);
    (void)next;
    for (int i = 0; i < 3; i++)
        zsock_destroy(&w[i]);
    s_fx_destroy(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_run_succeed),
        cmocka_unit_test(test_sync_full_life_cycle),
        cmocka_unit_test(test_sync_full_stall_keeps_heartbeats),
        cmocka_unit_test(test_retry_backoff_then_fail),
        cmocka_unit_test(test_exit_75_is_not_retried),
        cmocka_unit_test(test_rejected_is_requeued_without_using_a_retry),
        cmocka_unit_test(test_prefetch_holds_one_ahead),
        cmocka_unit_test(test_prefetch_given_back_uses_no_retry),
        cmocka_unit_test(test_prefetch_cancel_held),
        cmocka_unit_test(test_prefetch_reconnect_between_tasks),
        cmocka_unit_test(test_prefetch_survives_a_reload),
        cmocka_unit_test(test_cancel_running_goes_through_the_worker),
        cmocka_unit_test(test_silent_worker_loses_its_attempt),
        cmocka_unit_test(test_worker_message_without_hello_is_unknown_peer),
        cmocka_unit_test(test_name_taken_while_the_first_lives),
        cmocka_unit_test(test_rehello_keeps_the_running_attempt),
        cmocka_unit_test(test_restart_reattach_and_superseded),
        cmocka_unit_test(test_prefetch_restart_gives_back_held),
        cmocka_unit_test(test_dependency_failure_and_revival),
        cmocka_unit_test(test_retry_by_state),
        cmocka_unit_test(test_submit_refusals_carry_reasons),
        cmocka_unit_test(test_budget_hold_and_release),
        cmocka_unit_test(test_rate_limit_waits_for_the_reset),
        cmocka_unit_test(test_auth_marks_the_worker_and_moves_the_task),
        cmocka_unit_test(test_agent_missing_takes_the_worker_out),
        cmocka_unit_test(test_model_unavailable_takes_the_fallback),
        cmocka_unit_test(test_depth_by_model),
        cmocka_unit_test(test_deadline_rerank_overtakes),
        cmocka_unit_test(test_context_too_long_fails_at_once),
        cmocka_unit_test(test_stall_is_announced_once),
        cmocka_unit_test(test_pause_stop_priority_escalate),
        cmocka_unit_test(test_whitelist_and_tree_limits),
        cmocka_unit_test(test_batch_views_and_purge),
        cmocka_unit_test(test_same_key_twice_in_one_turn),
        cmocka_unit_test(test_long_routing_ids_do_not_collide),
        cmocka_unit_test(test_submitted_prompt_is_cut_between_characters),
        cmocka_unit_test(test_reconnect_with_the_same_nonce_replaces_at_once),
        cmocka_unit_test(test_result_of_three_fields_takes_the_defaults),
        cmocka_unit_test(test_replies_echo_the_rid_even_zero),
        cmocka_unit_test(test_worker_left_carries_its_models),
        cmocka_unit_test(test_reply_types_sent_as_requests_are_unknown),
        cmocka_unit_test(test_frame_limit_is_exactly_4_mib),
        cmocka_unit_test(test_a_life_conforms_to_the_spec),
        cmocka_unit_test(test_workspace_check_feedback_and_lineage),
        cmocka_unit_test(test_best_of_three),
    };
    zsys_init();
    zsys_set_logstream(NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
