/*  result_test: the pure parts of the worker's results with a workspace (fz_result,
    fz_attempt_ws): the class a result carries when the check or the workspace failed after
    an agent that exited 0 (and not when the agent failed itself), the check's share of the
    task's timeout, and the encoded result, which the codec's own spec must accept with every
    workspace field of PROTOCOL.md section 5 (and none without a workspace). */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../worker/fz_attempt_ws.h"
#include "../../worker/fz_result.h"
#include "fz_msg.h"
#include "fz_util.h"

#include <string.h>

/* Encodes r and decodes it as the broker would: the spec must accept it. */
static fz_msg_t *s_roundtrip(const fz_result_t *r)
{
    fz_enc_t *e = fz_result_enc(r);
    size_t len;
    const void *data = fz_enc_data(e, &len);
    fz_msg_t *msg = NULL;
    char why[256] = "";
    assert_int_equal(fz_msg_decode(data, len, &msg, NULL, why, sizeof why), FZ_OK);
    fz_enc_destroy(&e);
    return msg;
}

static fz_aws_result_t s_sealed(void)
{
    fz_aws_result_t w = {.has_repo = true, .opened = true, .sealed = true, .check_exit = -1};
    fz_strcopy(w.ws.branch, sizeof w.ws.branch, "fz/7-2");
    fz_strcopy(w.ws.base, sizeof w.ws.base, "1111111111111111111111111111111111111111");
    fz_strcopy(w.ws.head, sizeof w.ws.head, "2222222222222222222222222222222222222222");
    w.ws.files = 3, w.ws.insertions = 10, w.ws.deletions = 4;
    return w;
}

static void t_check_timeout(void **state)
{
    (void)state;
    assert_true(fz_aws_check_timeout(0, 5) == 0);       /* no timeout: none for the check */
    assert_true(fz_aws_check_timeout(10, 3) == 7);      /* what the agent left */
    assert_true(fz_aws_check_timeout(10, 12) == 0.001); /* used up: stopped at once */
    assert_true(fz_aws_check_timeout(10, 10) == 0.001);
    assert_true(fz_aws_check_timeout(10, -1) == 10); /* a bad elapsed counts as none */
}

static void t_class(void **state)
{
    (void)state;
    fz_aws_result_t w = s_sealed();
    w.cls = FZ_CLASS_CHECK_FAILED;
    /* after an agent that exited 0, the check's class */
    assert_int_equal(fz_aws_class(&w, true, FZ_OUTCOME_EXITED, 0, FZ_CLASS_NONE),
                     FZ_CLASS_CHECK_FAILED);
    /* an agent that failed keeps its own (the check did not even run) */
    assert_int_equal(fz_aws_class(&w, true, FZ_OUTCOME_EXITED, 1, FZ_CLASS_RATE_LIMIT),
                     FZ_CLASS_RATE_LIMIT);
    assert_int_equal(fz_aws_class(&w, true, FZ_OUTCOME_TIMEOUT, -1, FZ_CLASS_NONE), FZ_CLASS_NONE);
    /* no agent ran: the workspace's */
    w.cls = FZ_CLASS_MERGE_CONFLICT;
    assert_int_equal(fz_aws_class(&w, false, FZ_OUTCOME_SPAWN_FAILED, -1, FZ_CLASS_NONE),
                     FZ_CLASS_MERGE_CONFLICT);
    assert_int_equal(fz_aws_class(NULL, true, FZ_OUTCOME_EXITED, 0, FZ_CLASS_NONE), FZ_CLASS_NONE);
}

static void t_check_failed_result(void **state)
{
    (void)state;
    fz_aws_result_t w = s_sealed();
    w.cls = FZ_CLASS_CHECK_FAILED;
    fz_strcopy(w.summary, sizeof w.summary, "check failed with exit status 3: no");
    w.check_status = "failed";
    w.check_exit = 3;
    memcpy(w.check_output, "out\0put", 7); /* bytes, NUL included */
    w.check_len = 7;
    fz_agent_status_t st = {.outcome = FZ_AGENT_EXITED, .exit_code = 0};
    fz_result_t r = {.task = 7,
                     .attempt = 2,
                     .outcome = FZ_OUTCOME_EXITED,
                     .st = &st,
                     .ws = &w,
                     .summary = w.summary};
    assert_int_equal(fz_result_class(&r), FZ_CLASS_CHECK_FAILED);
    fz_msg_t *m = s_roundtrip(&r);
    assert_string_equal(fz_msg_str(m, "outcome", "", NULL), "exited");
    assert_int_equal(fz_msg_int(m, "exit_code", 99), 0);
    assert_string_equal(fz_msg_str(m, "class", "", NULL), "check-failed");
    assert_string_equal(fz_msg_str(m, "summary", "", NULL), "check failed with exit status 3: no");
    assert_string_equal(fz_msg_str(m, "branch", "", NULL), "fz/7-2");
    assert_string_equal(fz_msg_str(m, "base_commit", "", NULL), w.ws.base);
    assert_string_equal(fz_msg_str(m, "head_commit", "", NULL), w.ws.head);
    assert_int_equal(fz_msg_uint(m, "files", 0), 3);
    assert_int_equal(fz_msg_uint(m, "insertions", 0), 10);
    assert_int_equal(fz_msg_uint(m, "deletions", 0), 4);
    assert_string_equal(fz_msg_str(m, "check_status", "", NULL), "failed");
    assert_int_equal(fz_msg_int(m, "check_exit", 0), 3);
    size_t len = 0;
    const void *out = fz_msg_bin(m, "check_output", &len);
    assert_int_equal(len, 7);
    assert_memory_equal(out, "out\0put", 7);
    fz_msg_destroy(&m);
}

static void t_failed_open_result(void **state)
{
    (void)state;
    fz_aws_result_t w = {.has_repo = true, .cls = FZ_CLASS_WORKSPACE, .check_exit = -1};
    fz_strcopy(w.summary, sizeof w.summary, "repository /x does not exist");
    fz_result_t r = {.task = 8,
                     .attempt = 1,
                     .outcome = FZ_OUTCOME_SPAWN_FAILED,
                     .ws = &w,
                     .summary = w.summary};
    fz_msg_t *m = s_roundtrip(&r);
    assert_string_equal(fz_msg_str(m, "outcome", "", NULL), "spawn-failed");
    assert_string_equal(fz_msg_str(m, "class", "", NULL), "workspace"); /* not agent-missing */
    assert_false(fz_msg_has(m, "branch"));
    assert_false(fz_msg_has(m, "check_status"));
    fz_msg_destroy(&m);
    /* without a workspace, nothing of one */
    fz_agent_status_t st = {.outcome = FZ_AGENT_EXITED, .exit_code = 0};
    r = (fz_result_t){.task = 9, .attempt = 1, .outcome = FZ_OUTCOME_EXITED, .st = &st};
    m = s_roundtrip(&r);
    assert_false(fz_msg_has(m, "branch") || fz_msg_has(m, "check_exit") || fz_msg_has(m, "class"));
    fz_msg_destroy(&m);
}

/* The outcome and summary the worker sends: a cancel after the agent exited is a cancel,
   a stop of the worker is "interrupted"; the workspace's reason when its class is sent, the
   agent's otherwise. */
static void t_outcome_and_summary(void **state)
{
    (void)state;
    assert_int_equal(fz_result_outcome(FZ_OUTCOME_EXITED, false, false), FZ_OUTCOME_EXITED);
    assert_int_equal(fz_result_outcome(FZ_OUTCOME_EXITED, true, false), FZ_OUTCOME_CANCELLED);
    assert_int_equal(fz_result_outcome(FZ_OUTCOME_TIMEOUT, true, false), FZ_OUTCOME_TIMEOUT);
    assert_int_equal(fz_result_outcome(FZ_OUTCOME_CANCELLED, true, true), FZ_OUTCOME_INTERRUPTED);
    assert_int_equal(fz_result_outcome(-1, false, false), FZ_OUTCOME_SPAWN_FAILED);
    assert_int_equal(fz_result_outcome(-1, true, false), FZ_OUTCOME_CANCELLED);
    assert_int_equal(fz_result_outcome(-1, true, true), FZ_OUTCOME_INTERRUPTED);
    fz_aws_result_t w = s_sealed();
    w.cls = FZ_CLASS_CHECK_FAILED;
    fz_strcopy(w.summary, sizeof w.summary, "check failed with exit status 1");
    fz_agent_status_t st = {.outcome = FZ_AGENT_EXITED, .exit_code = 0};
    fz_strcopy(st.summary, sizeof st.summary, "did it");
    fz_result_t r = {.outcome = FZ_OUTCOME_EXITED, .st = &st, .ws = &w};
    assert_string_equal(fz_result_summary(&r, ""), "check failed with exit status 1");
    st.exit_code = 2; /* the agent failed: its own summary (NULL: the agent's) */
    assert_null(fz_result_summary(&r, ""));
    fz_result_t none = {.outcome = FZ_OUTCOME_SPAWN_FAILED};
    assert_string_equal(fz_result_summary(&none, "no shell"), "no shell");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_check_timeout),       cmocka_unit_test(t_class),
        cmocka_unit_test(t_check_failed_result), cmocka_unit_test(t_failed_open_result),
        cmocka_unit_test(t_outcome_and_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
