/*  vocab_test: the protocol's names (proto/fz_vocab.c): every enum value has one distinct
    name that reads back to it, out-of-range values are safe, and PROTOCOL.md lists every
    state, outcome, topic and error reason (so the document and the code cannot drift); every
    topic has an event spec (proto/fz_spec.c), and every field of the event and object specs
    is written in PROTOCOL.md sections 6 and 7 with its type, and nothing more. */

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
#include "fz_spec.h"
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

/* ---------------------------------------------------------------- objects and events */

/* A copy of the doc from `from` up to `to` (or the end), or fails. */
static char *s_section(const char *doc, const char *from, const char *to)
{
    const char *a = strstr(doc, from);
    if (!a)
        fail_msg("PROTOCOL.md has no '%s'", from);
    const char *b = to ? strstr(a + strlen(from), to) : NULL;
    size_t n = b ? (size_t)(b - a) : strlen(a);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, a, n);
    s[n] = 0;
    return s;
}

/* How the doc writes a field: `key: type`, or `key?: type` when it may be absent. */
static void s_token(const fz_field_t *f, char *buf, size_t size)
{
    snprintf(buf, size, "`%s%s: %s`", f->key, f->flags & FZ_F_REQUIRED ? "" : "?",
             fz_type_name(f->type));
}

/* Each field of spec is written in `text`, else in `also` (the common fields), with its type
   and whether it may be absent; and each `key: type` written in text is a field of spec,
   written the same way. */
static void s_documented(const fz_msgspec_t *spec, const char *text, const char *also,
                         const char *where)
{
    char tok[128];
    for (const fz_field_t *f = spec->fields; f->key; f++) {
        s_token(f, tok, sizeof tok);
        if (!strstr(text, tok) && !(also && strstr(also, tok)))
            fail_msg("PROTOCOL.md %s does not list %s's field %s", where, spec->type, tok);
    }
    for (const char *p = strchr(text, '`'); p; p = strchr(p + 1, '`')) {
        size_t n = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_-");
        const char *q = p + 1 + n;
        if (n == 0 || (strncmp(q, ": ", 2) != 0 && strncmp(q, "?: ", 3) != 0))
            continue;
        const char *end = strchr(q, '`');
        assert_non_null(end);
        const fz_field_t *f = fz_spec_field(spec, p + 1, n);
        if (!f)
            fail_msg("PROTOCOL.md %s lists %.*s, which %s does not have", where, (int)(end + 1 - p),
                     p, spec->type);
        s_token(f, tok, sizeof tok);
        if (strncmp(p, tok, strlen(tok)) != 0)
            fail_msg("PROTOCOL.md %s writes %.*s, the table %s", where, (int)(end + 1 - p), p, tok);
        p = end;
    }
}

/* The row of the section 6 table whose first cell names `topic`. */
static char *s_topic_row(const char *events, const char *topic)
{
    char quoted[80];
    snprintf(quoted, sizeof quoted, "`%s`", topic);
    for (const char *line = events; line && *line; line = strchr(line, '\n')) {
        line += *line == '\n';
        const char *bar = strchr(line + 1, '|'), *eol = strchr(line, '\n');
        if (*line != '|' || !bar || !eol || bar > eol)
            continue;
        const char *hit = strstr(line, quoted);
        if (hit && hit < bar) {
            char *row = malloc((size_t)(eol - bar) + 1);
            assert_non_null(row);
            memcpy(row, bar, (size_t)(eol - bar));
            row[eol - bar] = 0;
            return row;
        }
    }
    fail_msg("PROTOCOL.md section 6 has no row for %s", topic);
    return NULL;
}

static void test_every_topic_has_a_documented_event_spec(void **state)
{
    (void)state;
    char *events = s_section(s_protocol(), "## 6. Events", "## 7.");
    char *common = s_section(events, "An event map is not", "| topic");
    assert_null(fz_spec_event(FZ_TOPIC_NONE));
    assert_null(fz_spec_event(FZ_TOPIC_COUNT));
    for (int i = 1; i < FZ_TOPIC_COUNT; i++) {
        const fz_msgspec_t *spec = fz_spec_event((fz_topic_t)i);
        if (!spec)
            fail_msg("topic %s has no event spec", s_topic(i));
        assert_string_equal(spec->type, s_topic(i));
        assert_ptr_equal(fz_spec_event_named(spec->type, strlen(spec->type)), spec);
        assert_non_null(fz_spec_field(spec, "seq", 3));
        assert_non_null(fz_spec_field(spec, "event", 5));
        bool task = strncmp(spec->type, "task.", 5) == 0;
        assert_true(!fz_spec_field(spec, "task", 4) == !task);
        char *row = s_topic_row(events, spec->type);
        char where[96];
        snprintf(where, sizeof where, "section 6 (%s)", spec->type);
        s_documented(spec, row, common, where);
        free(row);
    }
    /* The common fields are task.priority's, which has no other. */
    s_documented(fz_spec_event(FZ_TOPIC_TASK_PRIORITY), common, NULL, "section 6 (common)");
    assert_null(fz_spec_event_named("task.nothing", 12));
    free(common);
    free(events);
}

static void test_every_object_spec_is_documented(void **state)
{
    (void)state;
    char *objects = s_section(s_protocol(), "## 7. Objects", "**States**");
    char *task = s_section(objects, "**task** (", "\n\n");
    assert_true(fz_spec_object_count() >= 6);
    for (size_t i = 0; i < fz_spec_object_count(); i++) {
        const fz_msgspec_t *spec = fz_spec_object_at(i);
        assert_ptr_equal(fz_spec_object(spec->type), spec);
        char head[64], where[96];
        snprintf(head, sizeof head, "**%s**", spec->type);
        char *para = s_section(objects, head, "\n\n");
        snprintf(where, sizeof where, "section 7 (%s)", spec->type);
        /* task-listed is written as the difference from task */
        s_documented(spec, para, strcmp(spec->type, "task-listed") == 0 ? task : NULL, where);
        free(para);
    }
    assert_null(fz_spec_object_at(fz_spec_object_count()));
    assert_null(fz_spec_object("nothing"));
    assert_null(fz_spec_field(fz_spec_object("task-listed"), "labels", 6));
    /* Which objects the replies hold. */
    const fz_msgspec_t *get = fz_spec_find("task", 4);
    assert_ptr_equal(fz_spec_holds(get, "task"), fz_spec_object("task"));
    assert_ptr_equal(fz_spec_holds(get, "attempts"), fz_spec_object("attempt"));
    assert_ptr_equal(fz_spec_holds(fz_spec_find("tasks", 5), "tasks"),
                     fz_spec_object("task-listed"));
    assert_ptr_equal(fz_spec_holds(fz_spec_find("workers", 7), "workers"),
                     fz_spec_object("worker"));
    assert_ptr_equal(fz_spec_holds(fz_spec_find("cost", 4), "rows"), fz_spec_object("cost-row"));
    assert_ptr_equal(fz_spec_holds(fz_spec_find("submit-batch", 12), "tasks"),
                     fz_spec_find("submit", 6));
    assert_string_equal(fz_spec_holds(fz_spec_find("events", 6), "events")->type, "event");
    assert_null(fz_spec_holds(fz_spec_object("task"), "attempts"));
    /* status.counts has one entry per state */
    const fz_msgspec_t *counts = fz_spec_object("counts");
    for (int s = 0; s < FZ_STATE_COUNT; s++)
        assert_non_null(fz_spec_field(counts, s_state(s), strlen(s_state(s))));
    free(task);
    free(objects);
}

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 0, FZ_CLASS_AUTH), FZ_CLASS_NONE);
    /* ... but what the worker found after the agent beats its exit 0. */
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 0, FZ_CLASS_CHECK_FAILED),
                     FZ_CLASS_CHECK_FAILED);
    assert_int_equal(fz_classify(FZ_OUTCOME_EXITED, 0, FZ_CLASS_WORKSPACE), FZ_CLASS_WORKSPACE);
    assert_int_equal(fz_classify(FZ_OUTCOME_SPAWN_FAILED, 0, FZ_CLASS_WORKSPACE),
                     FZ_CLASS_WORKSPACE);
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
        cmocka_unit_test(test_every_topic_has_a_documented_event_spec),
        cmocka_unit_test(test_every_object_spec_is_documented),
        cmocka_unit_test(test_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
