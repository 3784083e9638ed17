/*  vocab_test: the protocol's names (proto/fz_vocab.c): every enum value has one distinct
    name that reads back to it, out-of-range values are safe, and PROTOCOL.md lists every
    state, outcome, topic and error reason (so the document and the code cannot drift). */

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

#include "fz_classify.h"
#include "fz_vocab.h"

typedef const char *(name_fn)(int value);

static const char *s_state(int v)
{
    return fz_state_name((fz_state_t)v);
}
static const char *s_outcome(int v)
{
    return fz_outcome_name((fz_outcome_t)v);
}
static const char *s_topic(int v)
{
    return fz_topic_name((fz_topic_t)v);
}
static const char *s_reason(int v)
{
    return fz_reason_name((fz_reason_t)v);
}
static const char *s_class(int v)
{
    return fz_class_name((fz_class_t)v);
}

/* Names from first to n-1 are non-empty and distinct. */
static void s_distinct(name_fn *name, int first, int n)
{
    for (int i = first; i < n; i++) {
        assert_true(strlen(name(i)) > 0);
        for (int k = first; k < i; k++)
            if (strcmp(name(i), name(k)) == 0)
                fail_msg("'%s' names two values (%d and %d)", name(i), k, i);
    }
}

static void test_round_trips(void **state)
{
    (void)state;
    s_distinct(s_state, 0, FZ_STATE_COUNT);
    s_distinct(s_outcome, 0, FZ_OUTCOME_COUNT);
    s_distinct(s_topic, 1, FZ_TOPIC_COUNT);
    s_distinct(s_reason, 1, FZ_REASON_COUNT);
    s_distinct(s_class, 1, FZ_CLASS_COUNT);
    for (int i = 1; i < FZ_CLASS_COUNT; i++)
        assert_int_equal(fz_class_from_name(s_class(i)), i);
    assert_string_equal(fz_class_name(FZ_CLASS_MERGE_CONFLICT), "merge-conflict");
    assert_string_equal(fz_topic_name(FZ_TOPIC_BROKER_STOPPING), "broker.stopping");
    assert_string_equal(fz_outcome_name(FZ_OUTCOME_STALLED), "stalled");
    for (int i = 0; i < FZ_STATE_COUNT; i++)
        assert_int_equal(fz_state_from_name(s_state(i)), i);
    for (int i = 0; i < FZ_OUTCOME_COUNT; i++)
        assert_int_equal(fz_outcome_from_name(s_outcome(i)), i);
    for (int i = 1; i < FZ_TOPIC_COUNT; i++)
        assert_int_equal(fz_topic_from_name(s_topic(i)), i);
    for (int i = 1; i < FZ_REASON_COUNT; i++)
        assert_int_equal(fz_reason_from_name(s_reason(i)), i);
    assert_string_equal(fz_state_name(FZ_STATE_DEP_FAILED), "dep-failed");
    assert_string_equal(fz_outcome_name(FZ_OUTCOME_COST_CAP), "cost-cap");
    assert_string_equal(fz_topic_name(FZ_TOPIC_TASK_ATTEMPT_FAILED), "task.attempt-failed");
    assert_string_equal(fz_reason_name(FZ_REASON_NAME_TAKEN), "name-taken");
}

static void test_unknown_and_out_of_range(void **state)
{
    (void)state;
    assert_string_equal(fz_state_name(FZ_STATE_COUNT), "unknown");
    assert_string_equal(fz_state_name((fz_state_t)-1), "unknown");
    assert_string_equal(fz_outcome_name(FZ_OUTCOME_COUNT), "unknown");
    assert_string_equal(fz_topic_name(FZ_TOPIC_COUNT), "unknown");
    assert_string_equal(fz_reason_name(FZ_REASON_COUNT), "");
    assert_int_equal(fz_state_from_name(NULL), -1);
    assert_int_equal(fz_state_from_name("Queued"), -1);
    assert_int_equal(fz_outcome_from_name("lost "), -1);
    assert_int_equal(fz_topic_from_name(""), -1);
    assert_int_equal(fz_reason_from_name("a-reason-from-a-newer-broker"), FZ_REASON_NONE);
    assert_int_equal(fz_reason_from_name(NULL), FZ_REASON_NONE);
    assert_true(fz_state_final(FZ_STATE_SUCCEEDED) && fz_state_final(FZ_STATE_DEP_FAILED));
    assert_false(fz_state_final(FZ_STATE_RETRYING) || fz_state_final(FZ_STATE_COUNT));
    assert_int_equal(fz_topic_of_state(FZ_STATE_HELD), FZ_TOPIC_TASK_HELD);
    assert_int_equal(fz_topic_of_state(FZ_STATE_RUNNING), FZ_TOPIC_TASK_DISPATCHED);
    assert_int_equal(fz_topic_of_state(FZ_STATE_WAITING), FZ_TOPIC_NONE);
}

/* PROTOCOL.md, beside this source tree. */
static char *s_protocol(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *slash = strrchr(path, '/');
    assert_non_null(slash);
    snprintf(slash, sizeof path - (size_t)(slash - path), "/../../proto/PROTOCOL.md");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot read %s", path);
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    return text;
}

static void s_listed(const char *doc, name_fn *name, int first, int n, const char *what)
{
    for (int i = first; i < n; i++) {
        char quoted[80];
        snprintf(quoted, sizeof quoted, "`%s`", name(i));
        if (!strstr(doc, quoted))
            fail_msg("PROTOCOL.md does not list the %s %s", what, quoted);
    }
}

static void test_protocol_lists_every_name(void **state)
{
    (void)state;
    const char *doc = s_protocol();
    s_listed(doc, s_state, 0, FZ_STATE_COUNT, "state");
    s_listed(doc, s_outcome, 0, FZ_OUTCOME_COUNT, "outcome");
    s_listed(doc, s_topic, 1, FZ_TOPIC_COUNT, "topic");
    s_listed(doc, s_reason, 1, FZ_REASON_COUNT, "error reason");
    s_listed(doc, s_class, 1, FZ_CLASS_COUNT, "failure class");
}

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 0, FZ_CLASS_AUTH), FZ_CLASS_NONE);
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 75, FZ_CLASS_AUTH), FZ_CLASS_AUTH);
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 1, FZ_CLASS_NONE), FZ_CLASS_TASK_FAILED);
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 127, FZ_CLASS_NONE), FZ_CLASS_AGENT_MISSING);
    assert_int_equal(fz_classify(FZ_OUTCOME_SPAWN_FAILED, 0, FZ_CLASS_NONE),
                     FZ_CLASS_AGENT_MISSING);
    assert_int_equal(fz_classify(FZ_OUTCOME_TIMEOUT, 0, FZ_CLASS_NONE), FZ_CLASS_TIMEOUT);
    /* the agent knows better: a timeout while the CLI said it was rate-limited */
    assert_int_equal(fz_classify(FZ_OUTCOME_TIMEOUT, 0, FZ_CLASS_RATE_LIMIT), FZ_CLASS_RATE_LIMIT);
    assert_int_equal(fz_classify(FZ_OUTCOME_COST_CAP, 0, FZ_CLASS_NONE), FZ_CLASS_COST_CAP);
    assert_int_equal(fz_classify(FZ_OUTCOME_STALLED, 0, FZ_CLASS_NONE), FZ_CLASS_STALLED);
    assert_int_equal(fz_classify(FZ_OUTCOME_SIGNALED, 0, FZ_CLASS_NONE), FZ_CLASS_CRASHED);
    assert_int_equal(fz_classify(FZ_OUTCOME_CANCELLED, 1, FZ_CLASS_AUTH), FZ_CLASS_NONE);
    assert_int_equal(fz_classify(FZ_OUTCOME_LOST, 0, FZ_CLASS_NONE), FZ_CLASS_NONE);
    assert_int_equal(fz_classify(-1, 0, FZ_CLASS_NONE), FZ_CLASS_TASK_FAILED);
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 1, (fz_class_t)999), FZ_CLASS_TASK_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_unknown_and_out_of_range),
        cmocka_unit_test(test_protocol_lists_every_name),
        cmocka_unit_test(test_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
