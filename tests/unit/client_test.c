/*  client_test: the client library (client/): flag parsers, text formatting, event decoding
    of hostile frames, exit codes of final tasks, and fz_client's request/reply matching
    against an in-process fake broker (stale replies, error replies, silence, versions). */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_cli.h"
#include "fz_client.h"
#include "fz_event.h"
#include "fz_net.h"
#include "fz_report.h"

/* ---------------------------------------------------------------- parsers */

static void test_parse_ids(void **state)
{
    uint64_t ids[4];
    size_t n;
    assert_true(fz_cli_parse_ids("--after", "1,22,333", ids, 4, &n));
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 333);
    const char *bad[] = {"", ",", "1,", ",1", "1,,2", "0", "-1", "1,x", "1.5", "1,2,3,4,5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(fz_cli_parse_ids("--after", bad[i], ids, 4, &n));
}

static void test_parse_names(void **state)
{
    char names[3][FZ_CLI_MAX_NAME + 1];
    size_t n;
    assert_true(fz_cli_parse_names("--fallback", "haiku,opus", names, 3, &n));
    assert_int_equal(n, 2);
    assert_string_equal(names[1], "opus");
    char long_name[80];
    memset(long_name, 'm', 65);
    long_name[65] = 0;
    assert_false(fz_cli_parse_names("--fallback", long_name, names, 3, &n));
    assert_false(fz_cli_parse_names("--fallback", "a,,b", names, 3, &n));
    assert_false(fz_cli_parse_names("--fallback", "a,b,c,d", names, 3, &n));
    assert_false(fz_cli_parse_names("--fallback", "bad\xff", names, 3, &n));
}

static void test_parse_label(void **state)
{
    char key[FZ_CLI_MAX_NAME + 1];
    const char *value;
    assert_true(fz_cli_parse_label("--label", "team=web", key, &value));
    assert_string_equal(key, "team");
    assert_string_equal(value, "web");
    assert_true(fz_cli_parse_label("--label", "a=b=c", key, &value));
    assert_string_equal(key, "a");
    assert_string_equal(value, "b=c");
    assert_true(fz_cli_parse_label("--label", "empty=", key, &value));
    assert_string_equal(value, "");
    assert_false(fz_cli_parse_label("--label", "novalue", key, &value));
    assert_false(fz_cli_parse_label("--label", "=v", key, &value));
    char arg[1200];
    memset(arg, 'k', 65);
    strcpy(arg + 65, "=v");
    assert_false(fz_cli_parse_label("--label", arg, key, &value));
    strcpy(arg, "k=");
    memset(arg + 2, 'v', 1025);
    arg[1027] = 0;
    assert_false(fz_cli_parse_label("--label", arg, key, &value));
}

static void test_valid_date(void **state)
{
    assert_true(fz_cli_valid_date("2024-02-29"));
    assert_true(fz_cli_valid_date("2025-12-31"));
    assert_false(fz_cli_valid_date("2023-02-29"));
    assert_false(fz_cli_valid_date("2025-13-01"));
    assert_false(fz_cli_valid_date("2025-04-31"));
    assert_false(fz_cli_valid_date("2025-1-01"));
    assert_false(fz_cli_valid_date("2025-01-01x"));
    assert_false(fz_cli_valid_date("+025-01-01"));
    assert_false(fz_cli_valid_date("yesterday"));
    assert_false(fz_cli_valid_date(""));
}

/* ---------------------------------------------------------------- formatting */

static void test_oneline(void **state)
{
    char buf[512];
    assert_string_equal(fz_cli_oneline("a\nb\tc\\", 6, 100, buf, sizeof buf), "a\\nb\\tc\\\\");
    assert_string_equal(fz_cli_oneline("\x1b[31m", 5, 100, buf, sizeof buf), "\\x1b[31m");
    assert_string_equal(fz_cli_oneline("x\xff", 2, 100, buf, sizeof buf), "x\\xff");
    assert_string_equal(fz_cli_oneline("caf\xc3\xa9", 5, 100, buf, sizeof buf), "caf\xc3\xa9");
    assert_string_equal(fz_cli_oneline("a\0b", 3, 100, buf, sizeof buf), "a\\x00b");
    /* A long text is cut to max characters in all, the cut marked. */
    char text[300];
    memset(text, 'a', sizeof text);
    fz_cli_oneline(text, sizeof text, 200, buf, sizeof buf);
    assert_int_equal(strlen(buf), 200);
    assert_string_equal(buf + 197, "...");
    /* Exactly max fits whole. */
    fz_cli_oneline(text, 200, 200, buf, sizeof buf);
    assert_int_equal(strlen(buf), 200);
    assert_int_equal(buf[199], 'a');
    /* A small buffer is never overrun, and multi-byte characters are not split. */
    char small[8];
    memset(small, '#', sizeof small);
    fz_cli_oneline("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10, 100, small, sizeof small);
    assert_true(strlen(small) < sizeof small);
    assert_true(fz_utf8_valid(small, strlen(small)));
    fz_cli_oneline(text, 10, 100, small, 1);
    assert_string_equal(small, "");
}

/* --json escapes what a terminal acts on (ESC, BEL, DEL, the C1 controls) and keeps the rest,
   envelope keys left out. */
static void test_json_escapes(void **state)
{
    static const char v[] = "\x1b[31m \x07 \x7f \xc2\x9b \xc2\x80 \xc2\xa0 caf\xc3\xa9 \xff";
    msgpack_object_kv kv[2] = {{.key = {.type = MSGPACK_OBJECT_STR, .via.str = {4, "type"}},
                                .val = {.type = MSGPACK_OBJECT_STR, .via.str = {4, "task"}}},
                               {.key = {.type = MSGPACK_OBJECT_STR, .via.str = {1, "s"}},
                                .val = {.type = MSGPACK_OBJECT_STR, .via.str = {sizeof v - 1, v}}}};
    msgpack_object root = {.type = MSGPACK_OBJECT_MAP, .via.map = {2, kv}};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    fz_cli_print_body_json(&root, f);
    fclose(f);
    assert_string_equal(text, "{\"s\":\"\\u001B[31m \\u0007 \\u007F \\u009B \\u0080 \xc2\xa0 "
                              "caf\xc3\xa9 \xef\xbf\xbd\"}\n");
    free(text);
}

static void test_times(void **state)
{
    char buf[40];
    assert_string_equal(fz_cli_time(0, buf, sizeof buf), "-");
    assert_string_equal(fz_cli_time(1700000000.9, buf, sizeof buf), "2023-11-14T22:13:20Z");
    assert_string_equal(fz_cli_time_ms(1700000000.5, buf, sizeof buf), "2023-11-14T22:13:20.500Z");
    assert_string_equal(fz_cli_duration(850, buf, sizeof buf), "850ms");
    assert_string_equal(fz_cli_duration(12300, buf, sizeof buf), "12.3s");
    assert_string_equal(fz_cli_duration(245000, buf, sizeof buf), "4m05s");
    assert_string_equal(fz_cli_duration(7380000, buf, sizeof buf), "2h03m");
}

static void test_exit_codes(void **state)
{
    assert_int_equal(fz_cli_exit_code(FZ_OK), FZ_EXIT_OK);
    assert_int_equal(fz_cli_exit_code(FZ_EREFUSED), FZ_EXIT_USAGE);
    assert_int_equal(fz_cli_exit_code(FZ_EINVALID), FZ_EXIT_USAGE);
    assert_int_equal(fz_cli_exit_code(FZ_ETOOLARGE), FZ_EXIT_USAGE);
    assert_int_equal(fz_cli_exit_code(FZ_ENOTFOUND), FZ_EXIT_NOTFOUND);
    assert_int_equal(fz_cli_exit_code(FZ_ECONFLICT), FZ_EXIT_CONFLICT);
    assert_int_equal(fz_cli_exit_code(FZ_EUNAVAILABLE), FZ_EXIT_UNAVAILABLE);
    assert_int_equal(fz_cli_exit_code(FZ_EMALFORMED), FZ_EXIT_UNAVAILABLE);
    assert_int_equal(fz_cli_exit_code(FZ_EVERSION), FZ_EXIT_UNAVAILABLE);
}

/* ---------------------------------------------------------------- final tasks */

/* Unpacks an encoder's map into u; returns the object. */
static const msgpack_object *s_unpack(fz_enc_t **enc_p, msgpack_unpacked *u)
{
    size_t len, off = 0;
    const void *data = fz_enc_data(*enc_p, &len);
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, data, len, &off), MSGPACK_UNPACK_SUCCESS);
    return &u->data;
}

/* Exit code of a task in `state` whose task-level outcome is `outcome` (NULL: none) and whose
   one attempt ended with `last`. */
static int s_task_exit(const char *state, const char *outcome, const char *last)
{
    fz_enc_t *t = fz_enc_new_map(), *a = fz_enc_new_map();
    fz_enc_str(t, "state", state);
    if (outcome)
        fz_enc_str(t, "outcome", outcome);
    fz_enc_array(a, "attempts", 1);
    fz_enc_map(a, NULL, 2);
    fz_enc_str(a, NULL, "n");
    fz_enc_uint(a, NULL, 1);
    fz_enc_str(a, NULL, "outcome");
    fz_enc_str(a, NULL, last);
    msgpack_unpacked ut, ua;
    /* Both encoders must outlive the unpacked objects, which point into their buffers. */
    const msgpack_object *task = s_unpack(&t, &ut), *attempts = s_unpack(&a, &ua);
    int code = fz_report_exit_code(task, fz_obj_get(attempts, "attempts"));
    msgpack_unpacked_destroy(&ut);
    msgpack_unpacked_destroy(&ua);
    fz_enc_destroy(&t);
    fz_enc_destroy(&a);
    return code;
}

static void test_task_exit_codes(void **state)
{
    assert_int_equal(s_task_exit("succeeded", "exited", "exited"), FZ_EXIT_OK);
    assert_int_equal(s_task_exit("failed", "exited", "exited"), FZ_EXIT_FAILED);
    assert_int_equal(s_task_exit("failed", "timeout", "timeout"), FZ_EXIT_TIMEOUT);
    assert_int_equal(s_task_exit("failed", NULL, "timeout"), FZ_EXIT_TIMEOUT);
    /* The last attempt wins over the task's copy of the outcome. */
    assert_int_equal(s_task_exit("failed", "exited", "timeout"), FZ_EXIT_TIMEOUT);
    assert_int_equal(s_task_exit("failed", "cost-cap", "cost-cap"), FZ_EXIT_FAILED);
    assert_int_equal(s_task_exit("cancelled", "cancelled", "cancelled"), FZ_EXIT_CANCELLED);
    assert_int_equal(s_task_exit("dep-failed", NULL, "exited"), FZ_EXIT_FAILED);
    assert_int_equal(s_task_exit("running", NULL, "running"), -1);
    assert_int_equal(s_task_exit("queued", NULL, "lost"), -1);
    assert_true(fz_report_state_known("dep-failed"));
    assert_false(fz_report_state_known("done"));
}

/* ---------------------------------------------------------------- events */

static void test_event_valid(void **state)
{
    fz_enc_t *e = fz_enc_new_map();
    fz_enc_uint(e, "seq", 41);
    fz_enc_float(e, "ts", 1700000000.25);
    fz_enc_str(e, "event", "task.output");
    fz_enc_uint(e, "task", 7);
    fz_enc_bin(e, "data", "line\n\x1b[2J", 9);
    size_t len;
    const void *data = fz_enc_data(e, &len);
    char why[256];
    fz_event_t *ev = fz_event_decode("task.output", 11, data, len, why, sizeof why);
    fz_enc_destroy(&e);
    assert_non_null(ev);
    assert_string_equal(fz_event_topic(ev), "task.output");
    assert_int_equal(fz_event_seq(ev), 41);
    assert_int_equal(fz_event_task(ev), 7);
    assert_true(fz_event_ts(ev) > 1700000000.0);
    char details[300];
    fz_report_event_details(ev, 200, false, details, sizeof details);
    assert_string_equal(details, "line\\n\\x1b[2J");
    fz_event_destroy(&ev);
    assert_null(ev);
    fz_event_destroy(&ev);
}

static void test_event_garbage(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"", 0},
        {"\xdd\xff\xff\xff\xff", 5},     /* array of 4G elements in 5 bytes */
        {"\xdf\x7f\xff\xff\xff\x00", 6}, /* map of 2G pairs */
        {"\xdb\xff\xff\xff\xff"
         "ab",
         7}, /* str of 4 GB */
        {"\x81\xa1"
         "a",
         3},                 /* a key without its value */
        {"\x80\x00", 2},     /* trailing byte */
        {"\xd4\x01\x02", 3}, /* ext type */
        {"\xc1", 1},         /* never used byte */
        {"\x01", 1},         /* not a map */
        {"\x81\x01\x02", 3}, /* integer key */
        {"\xc5\x00", 2},     /* truncated length */
    };
    char why[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fz_event_t *ev = fz_event_decode("task.x", 6, bad[i].bytes, bad[i].len, why, sizeof why);
        assert_null(ev);
        assert_true(strlen(why) > 0);
    }
    /* Nesting past FZ_MAX_DEPTH: arrays in arrays. */
    char deep[41];
    memset(deep, 0x91, 40);
    deep[40] = 0;
    assert_null(fz_event_decode("t", 1, deep, sizeof deep, why, sizeof why));
    assert_non_null(strstr(why, "deep"));
    /* Topics must be one short line of UTF-8; the empty topic is a topic. */
    assert_null(fz_event_decode("\xff", 1, "\x80", 1, why, sizeof why));
    assert_null(fz_event_decode("a\nb", 3, "\x80", 1, why, sizeof why));
    fz_event_t *ev = fz_event_decode("", 0, "\x80", 1, why, sizeof why);
    assert_non_null(ev);
    fz_event_destroy(&ev);
}

/* Random bytes must never crash the decoder (ASan watches) nor be accepted as non-maps. */
static void test_event_random(void **state)
{
    unsigned seed = 12345;
    char buf[256], why[256];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (char)rand_r(&seed);
        if (len && round % 2)
            buf[0] = (char)(0x80 | (buf[0] & 0x0f)); /* a fixmap, to get deeper */
        fz_event_t *ev = fz_event_decode("task.r", 6, buf, len, why, sizeof why);
        if (ev) {
            assert_int_equal(fz_event_map(ev)->type, MSGPACK_OBJECT_MAP);
            char details[2000];
            fz_report_event_details(ev, 200, true, details, sizeof details);
        }
        fz_event_destroy(&ev);
    }
}

/* ---------------------------------------------------------------- fz_client */

/* Each fake broker binds an endpoint of its own: the previous one's may not be free yet
   (sockets close in the background). */
typedef struct {
    int mode;
    char endpoint[64];
} fake_t;

typedef enum { FAKE_STALE_FIRST, FAKE_ERROR, FAKE_SILENT, FAKE_V2, FAKE_VERSION } fake_mode_t;

static void s_fake_reply(zsock_t *router, zframe_t *id, fake_mode_t mode, uint64_t rid)
{
    fz_enc_t *e = NULL;
    if (mode == FAKE_STALE_FIRST) {
        e = fz_enc_new("pong", rid + 1000); /* a late reply to some other request */
        fz_enc_str(e, "broker", "stale");
        fz_net_send(router, id, &e);
        zmq_send(zsock_resolve(router), zframe_data(id), zframe_size(id), ZMQ_SNDMORE);
        zmq_send(zsock_resolve(router), "\xc1junk", 5, 0); /* garbage */
        e = fz_enc_new("pong", rid);
        fz_enc_str(e, "broker", "fresh");
    } else if (mode == FAKE_ERROR) {
        fz_net_send_error(router, id, rid, FZ_ENOTFOUND, FZ_REASON_NO_SUCH_TASK, "no task 9");
        return;
    } else if (mode == FAKE_V2) {
        e = fz_enc_new_map();
        fz_enc_uint(e, "v", 2);
        fz_enc_str(e, "type", "pong");
        fz_enc_uint(e, "rid", rid);
    } else if (mode == FAKE_VERSION) {
        e = fz_enc_new("error", rid);
        fz_enc_str(e, "code", "version");
        fz_enc_str(e, "message", "no");
        fz_enc_array(e, "supported", 2);
        fz_enc_uint(e, NULL, 2);
        fz_enc_uint(e, NULL, 3);
    }
    if (e)
        fz_net_send(router, id, &e);
}

static void s_fake_broker(zsock_t *pipe, void *args)
{
    const fake_t *fake = args;
    fake_mode_t mode = (fake_mode_t)fake->mode;
    zsock_t *router = fz_net_socket(ZMQ_ROUTER);
    zsock_bind(router, "%s", fake->endpoint); /* a failure shows as the client's timeout */
    zsock_signal(pipe, 0);
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    while (true) {
        void *which = zpoller_wait(poller, -1);
        if (which != router)
            break; /* $TERM from the pipe, or interrupted */
        zmsg_t *req = zmsg_recv(router);
        zframe_t *id = zmsg_pop(req);
        zframe_t *body = zmsg_first(req);
        fz_msg_t *msg = NULL;
        uint64_t rid = 0;
        fz_msg_decode(zframe_data(body), zframe_size(body), &msg, &rid, NULL, 0);
        s_fake_reply(router, id, mode, rid);
        fz_msg_destroy(&msg);
        zframe_destroy(&id);
        zmsg_destroy(&req);
    }
    zpoller_destroy(&poller);
    zsock_destroy(&router);
}

/* Makes one ping call against a fake broker in `mode`; returns the result, reply and error.
   The silent broker gets a short timeout; the others a long one, for slow (sanitized) runs. */
static fz_err_t s_ping(fake_mode_t mode, const char *expect, fz_msg_t **reply, char *err,
                       size_t errlen)
{
    static int s_count;
    fake_t args = {mode, ""};
    snprintf(args.endpoint, sizeof args.endpoint, "inproc://client-test-%d", ++s_count);
    zactor_t *fake = zactor_new(s_fake_broker, &args);
    fz_client_t *client = fz_client_new(args.endpoint, mode == FAKE_SILENT ? 300 : 5000);
    assert_non_null(client);
    fz_enc_t *req = fz_client_request(client, "ping");
    fz_err_t rc = expect ? fz_client_ask(client, &req, expect, reply, err, errlen)
                         : fz_client_call(client, &req, reply, err, errlen);
    assert_null(req);
    fz_client_destroy(&client);
    assert_null(client);
    zactor_destroy(&fake);
    return rc;
}

static void test_client_skips_stale_replies(void **state)
{
    fz_msg_t *reply = NULL;
    char err[256];
    assert_int_equal(s_ping(FAKE_STALE_FIRST, NULL, &reply, err, sizeof err), FZ_OK);
    assert_non_null(reply);
    assert_string_equal(fz_msg_str(reply, "broker", "", NULL), "fresh");
    fz_msg_destroy(&reply);
}

static void test_client_error_reply(void **state)
{
    fz_msg_t *reply = NULL;
    char err[256];
    assert_int_equal(s_ping(FAKE_ERROR, NULL, &reply, err, sizeof err), FZ_ENOTFOUND);
    assert_null(reply);
    assert_string_equal(err, "no task 9");
}

static void test_client_no_reply(void **state)
{
    fz_msg_t *reply = NULL;
    char err[256];
    int64_t start = fz_clock_ms();
    assert_int_equal(s_ping(FAKE_SILENT, NULL, &reply, err, sizeof err), FZ_EUNAVAILABLE);
    assert_true(fz_clock_ms() - start >= 290);
    assert_null(reply);
    assert_non_null(strstr(err, "inproc://client-test-"));
    assert_non_null(strstr(err, "is fz-broker running?"));
}

static void test_client_versions(void **state)
{
    fz_msg_t *reply = NULL;
    char err[256];
    assert_int_equal(s_ping(FAKE_V2, NULL, &reply, err, sizeof err), FZ_EVERSION);
    assert_null(reply);
    assert_int_equal(s_ping(FAKE_VERSION, NULL, &reply, err, sizeof err), FZ_EVERSION);
    assert_non_null(strstr(err, "2, 3"));
}

static void test_client_ask_checks_type(void **state)
{
    fz_msg_t *reply = NULL;
    char err[256];
    assert_int_equal(s_ping(FAKE_STALE_FIRST, "task", &reply, err, sizeof err), FZ_EMALFORMED);
    assert_null(reply);
    assert_non_null(strstr(err, "'pong'"));
    assert_int_equal(s_ping(FAKE_STALE_FIRST, "pong", &reply, err, sizeof err), FZ_OK);
    fz_msg_destroy(&reply);
}

static void test_client_bad_endpoint(void **state)
{
    assert_null(fz_client_new("not an endpoint", 100));
    fz_client_destroy(NULL);
}

int main(void)
{
    fz_log_init("client_test", FZ_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ids),
        cmocka_unit_test(test_parse_names),
        cmocka_unit_test(test_parse_label),
        cmocka_unit_test(test_valid_date),
        cmocka_unit_test(test_oneline),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_task_exit_codes),
        cmocka_unit_test(test_event_valid),
        cmocka_unit_test(test_event_garbage),
        cmocka_unit_test(test_event_random),
        cmocka_unit_test(test_client_skips_stale_replies),
        cmocka_unit_test(test_client_error_reply),
        cmocka_unit_test(test_client_no_reply),
        cmocka_unit_test(test_client_versions),
        cmocka_unit_test(test_client_ask_checks_type),
        cmocka_unit_test(test_client_bad_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
