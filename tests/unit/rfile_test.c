/*  rfile_test: the report-file parser (fz_rfile) fed byte by byte: partial lines, last value
    wins, malformed and overlong lines, NULs, numbers out of range. No files, no processes. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../worker/fz_rfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fz_rfile_t *s_new(void)
{
    fz_rfile_t *rf = malloc(sizeof *rf);
    assert_non_null(rf);
    fz_rfile_init(rf);
    return rf;
}

static void s_feed(fz_rfile_t *rf, const char *text)
{
    fz_rfile_feed(rf, text, strlen(text));
}

/* Parses text fed whole and returns the values (the parser is freed). */
static fz_rfile_values_t s_parse(const char *text)
{
    fz_rfile_t *rf = s_new();
    s_feed(rf, text);
    fz_rfile_values_t v = rf->values;
    free(rf);
    return v;
}

static void test_empty(void **state)
{
    (void)state;
    fz_rfile_values_t v = s_parse("");
    assert_true(v.cost_usd == 0);
    assert_int_equal(v.tokens_in, 0);
    assert_int_equal(v.progress_pct, -1);
    assert_string_equal(v.model, "");
    assert_int_equal(v.tokens_cache_read, 0);
    assert_int_equal(v.tokens_cache_write, 0);
    assert_int_equal(v.cls, FZ_CLASS_NONE);
    assert_true(v.reset_at == 0);
    assert_true(v.retry_after == 0);
    assert_int_equal(v.lines, 0);
    assert_int_equal(v.ignored, 0);
}

static void test_every_key(void **state)
{
    (void)state;
    fz_rfile_values_t v = s_parse("cost_usd 0.25\n"
                                  "tokens_in 1200\n"
                                  "tokens_out 340\n"
                                  "model claude-sonnet\n"
                                  "progress 40 running the tests\n"
                                  "summary fixed the 404 page\n"
                                  "tokens_cache_read 5000\n"
                                  "tokens_cache_write 700\n"
                                  "class rate-limit\n"
                                  "reset_at 1760000000.5\n"
                                  "retry_after 30\n");
    assert_true(v.cost_usd == 0.25);
    assert_int_equal(v.tokens_in, 1200);
    assert_int_equal(v.tokens_out, 340);
    assert_string_equal(v.model, "claude-sonnet");
    assert_int_equal(v.progress_pct, 40);
    assert_string_equal(v.progress_text, "running the tests");
    assert_string_equal(v.summary, "fixed the 404 page");
    assert_int_equal(v.tokens_cache_read, 5000);
    assert_int_equal(v.tokens_cache_write, 700);
    assert_int_equal(v.cls, FZ_CLASS_RATE_LIMIT);
    assert_true(v.reset_at == 1760000000.5);
    assert_true(v.retry_after == 30);
    assert_int_equal(v.lines, 11);
    assert_int_equal(v.ignored, 0);
}

static void test_last_value_wins(void **state)
{
    (void)state;
    fz_rfile_values_t v = s_parse("cost_usd 0.1\ncost_usd 0.3\ncost_usd 0.2\n"
                                  "model a\nmodel b\nprogress 10 x\nprogress 20\n");
    assert_true(v.cost_usd == 0.2);
    assert_string_equal(v.model, "b");
    assert_int_equal(v.progress_pct, 20);
    assert_string_equal(v.progress_text, ""); /* the text went with the older line */
    assert_int_equal(v.lines, 7);
    /* a malformed value leaves the last good one */
    v = s_parse("tokens_in 5\ntokens_in -1\n");
    assert_int_equal(v.tokens_in, 5);
    assert_int_equal(v.lines, 1);
    assert_int_equal(v.ignored, 1);
}

/* Every split of the same input into two feeds gives the same values as one feed. */
static void test_partial_lines_every_split(void **state)
{
    (void)state;
    const char *text = "cost_usd 1.5\ntokens_out 77\nsummary all done\n";
    size_t len = strlen(text);
    for (size_t cut = 0; cut <= len; cut++) {
        fz_rfile_t *rf = s_new();
        fz_rfile_feed(rf, text, cut);
        fz_rfile_feed(rf, text + cut, len - cut);
        assert_true(rf->values.cost_usd == 1.5);
        assert_int_equal(rf->values.tokens_out, 77);
        assert_string_equal(rf->values.summary, "all done");
        assert_int_equal(rf->values.lines, 3);
        free(rf);
    }
    /* one byte at a time */
    fz_rfile_t *rf = s_new();
    for (size_t i = 0; i < len; i++)
        fz_rfile_feed(rf, text + i, 1);
    assert_int_equal(rf->values.lines, 3);
    assert_string_equal(rf->values.summary, "all done");
    free(rf);
}

static void test_line_counts_only_with_newline(void **state)
{
    (void)state;
    fz_rfile_t *rf = s_new();
    s_feed(rf, "cost_usd 2");
    assert_true(rf->values.cost_usd == 0);
    assert_int_equal(rf->values.lines, 0);
    s_feed(rf, ".5"); /* still waiting: "2.5", not "2" */
    assert_true(rf->values.cost_usd == 0);
    s_feed(rf, "\n");
    assert_true(rf->values.cost_usd == 2.5);
    /* finish: the last line without its newline counts */
    s_feed(rf, "tokens_in 9");
    assert_int_equal(rf->values.tokens_in, 0);
    fz_rfile_finish(rf);
    assert_int_equal(rf->values.tokens_in, 9);
    assert_int_equal(rf->values.lines, 2);
    /* and is not counted twice, nor a second finish */
    fz_rfile_finish(rf);
    assert_int_equal(rf->values.lines, 2);
    free(rf);
}

static void test_restart(void **state)
{
    (void)state;
    fz_rfile_t *rf = s_new();
    s_feed(rf, "cost_usd 1\ntokens_in 12");
    fz_rfile_restart(rf, false); /* the partial line is dropped, values stay */
    s_feed(rf, "tokens_out 3\n");
    assert_true(rf->values.cost_usd == 1);
    assert_int_equal(rf->values.tokens_in, 0);
    assert_int_equal(rf->values.tokens_out, 3);
    /* mid_line: what comes first is the end of a line we did not see */
    fz_rfile_restart(rf, true);
    s_feed(rf, "in 99\ntokens_in 4\n");
    assert_int_equal(rf->values.tokens_in, 4);
    assert_int_equal(rf->values.lines, 3);
    assert_int_equal(rf->values.ignored, 0);
    /* finish after a mid_line restart with no newline yet: nothing counts */
    fz_rfile_restart(rf, true);
    s_feed(rf, "tokens_in 5");
    fz_rfile_finish(rf);
    assert_int_equal(rf->values.tokens_in, 4);
    free(rf);
}

static void test_blank_and_whitespace(void **state)
{
    (void)state;
    fz_rfile_values_t v = s_parse("\n\n   \n\t\n"
                                  "  cost_usd   0.5  \r\n" /* leading, inner, trailing, CR */
                                  "\tmodel\tgpt-x\t\n"
                                  "progress 7%   compiling  \n");
    assert_int_equal(v.lines, 3);
    assert_int_equal(v.ignored, 0); /* blank lines are not counted */
    assert_true(v.cost_usd == 0.5);
    assert_string_equal(v.model, "gpt-x");
    assert_int_equal(v.progress_pct, 7);
    assert_string_equal(v.progress_text, "compiling");
}

static void test_unknown_and_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "colour blue\n",     "COST_USD 1\n",      "cost_usd\n",         "cost_usd -1\n",
        "cost_usd +1\n",     "cost_usd nan\n",    "cost_usd inf\n",     "cost_usd 0x10\n",
        "cost_usd 1.5usd\n", "cost_usd 1 2\n",    "cost_usd 1,5\n",     "cost_usd e5\n",
        "tokens_in 12a\n",   "tokens_in -5\n",    "tokens_in +5\n",     "tokens_in 1.0\n",
        "tokens_in 0x1f\n",  "tokens_in\n",       "model two words\n",  "model\n",
        "progress\n",        "progress 101\n",    "progress -1\n",      "progress 4.5\n",
        "progress %\n",      "progress 50%%\n",   "summary\n",          "summary   \n",
        "cost_usd 1\x01\n",  "model a\x1b[31m\n", "summary bell\x07\n", "tokens_out 1\x7f\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fz_rfile_values_t v = s_parse(bad[i]);
        if (v.lines != 0 || v.ignored != 1)
            fail_msg("line %zu (\"%s\") should be ignored once", i, bad[i]);
        assert_true(v.cost_usd == 0);
        assert_int_equal(v.tokens_in, 0);
        assert_int_equal(v.tokens_out, 0);
        assert_int_equal(v.progress_pct, -1);
        assert_string_equal(v.model, "");
        assert_string_equal(v.summary, "");
    }
}

/* The keys of usage and failure: cache tokens as the other counts, class names exactly as
   fz_vocab spells them, reset_at and retry_after as the cost within the protocol's ranges. */
static void test_class_and_limits_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "tokens_cache_read\n",
        "tokens_cache_read -1\n",
        "tokens_cache_read 1.5\n",
        "tokens_cache_write +3\n",
        "tokens_cache_write 0x10\n",
        "tokens_cache_write 1 2\n",
        "class\n",
        "class none\n",
        "class RATE-LIMIT\n",
        "class rate_limit\n",
        "class rate-limit later\n",
        "class slow-down\n",
        "class \"auth\"\n",
        "reset_at\n",
        "reset_at -1\n",
        "reset_at +5\n",
        "reset_at nan\n",
        "reset_at inf\n",
        "reset_at 1e11\n",
        "reset_at 100000000000\n",
        "reset_at 1e999\n",
        "reset_at 0x5\n",
        "reset_at 17e8s\n",
        "retry_after\n",
        "retry_after -0\n",
        "retry_after 1e7\n",
        "retry_after 10000000\n",
        "retry_after 5 s\n",
        "retry_after infinity\n",
        "retry_after 1,5\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fz_rfile_values_t v = s_parse(bad[i]);
        if (v.lines != 0 || v.ignored != 1)
            fail_msg("line %zu (\"%s\") should be ignored once", i, bad[i]);
        assert_int_equal(v.tokens_cache_read, 0);
        assert_int_equal(v.tokens_cache_write, 0);
        assert_int_equal(v.cls, FZ_CLASS_NONE);
        assert_true(v.reset_at == 0);
        assert_true(v.retry_after == 0);
    }
    /* an unknown class leaves the last known one */
    fz_rfile_values_t v = s_parse("class quota\nclass from-the-future\n");
    assert_int_equal(v.cls, FZ_CLASS_QUOTA);
    assert_int_equal(v.lines, 1);
    assert_int_equal(v.ignored, 1);
}

static void test_class_names_and_ranges(void **state)
{
    (void)state;
    /* every class fz_vocab names is accepted, and the last one wins */
    for (int c = FZ_CLASS_NONE + 1; c < FZ_CLASS_COUNT; c++) {
        char line[64];
        snprintf(line, sizeof line, "class task-failed\nclass %s\n", fz_class_name((fz_class_t)c));
        fz_rfile_values_t v = s_parse(line);
        assert_int_equal(v.cls, c);
        assert_int_equal(v.lines, 2);
    }
    fz_rfile_values_t v = s_parse("reset_at 0\nretry_after 0\n");
    assert_int_equal(v.lines, 2);
    assert_true(v.reset_at == 0 && v.retry_after == 0);
    v = s_parse("reset_at 99999999999.99\nretry_after 9999999.5\n"); /* just below the limits */
    assert_int_equal(v.lines, 2);
    assert_true(v.reset_at == 99999999999.99);
    assert_true(v.retry_after == 9999999.5);
    v = s_parse("reset_at 1.76e9\nretry_after 1.5e+06\nretry_after 2E-3\n");
    assert_int_equal(v.lines, 3);
    assert_true(v.reset_at == 1.76e9);
    assert_true(v.retry_after == 0.002);
    v = s_parse("tokens_cache_read 18446744073709551615\ntokens_cache_write 0\n");
    assert_true(v.tokens_cache_read == UINT64_MAX);
    assert_int_equal(v.lines, 2);
    v = s_parse("tokens_cache_read 18446744073709551616\n"); /* UINT64_MAX + 1 */
    assert_int_equal(v.ignored, 1);
    assert_int_equal(v.tokens_cache_read, 0);
    /* a bad value leaves the last good one */
    v = s_parse("reset_at 1700000000\nreset_at 1e12\nretry_after 4\nretry_after -4\n");
    assert_true(v.reset_at == 1700000000);
    assert_true(v.retry_after == 4);
    assert_int_equal(v.lines, 2);
    assert_int_equal(v.ignored, 2);
    /* whitespace as for the other keys */
    v = s_parse("  class\tauth \r\n");
    assert_int_equal(v.cls, FZ_CLASS_AUTH);
}

/* The new keys fed one byte at a time give the values of one feed. */
static void test_class_keys_byte_by_byte(void **state)
{
    (void)state;
    const char *text = "tokens_cache_read 12\ntokens_cache_write 3\nclass quota\n"
                       "reset_at 1760000000\nretry_after 2.5";
    size_t len = strlen(text);
    fz_rfile_t *rf = s_new();
    for (size_t i = 0; i < len; i++) {
        fz_rfile_feed(rf, text + i, 1);
        if (i + 1 < len)
            assert_true(rf->values.retry_after == 0); /* the last line waits for its end */
    }
    fz_rfile_finish(rf);
    assert_int_equal(rf->values.tokens_cache_read, 12);
    assert_int_equal(rf->values.tokens_cache_write, 3);
    assert_int_equal(rf->values.cls, FZ_CLASS_QUOTA);
    assert_true(rf->values.reset_at == 1760000000);
    assert_true(rf->values.retry_after == 2.5);
    assert_int_equal(rf->values.lines, 5);
    assert_int_equal(rf->values.ignored, 0);
    free(rf);
}

static void test_numbers_in_range(void **state)
{
    (void)state;
    fz_rfile_values_t v = s_parse("cost_usd 0\ncost_usd .5\n");
    assert_true(v.cost_usd == 0.5);
    v = s_parse("cost_usd 1e-3\n");
    assert_true(v.cost_usd == 0.001);
    v = s_parse("cost_usd 2E2\n");
    assert_true(v.cost_usd == 200);
    v = s_parse("cost_usd 1e999\n"); /* overflows a double */
    assert_int_equal(v.ignored, 1);
    assert_true(v.cost_usd == 0);
    /* 64 characters are the longest cost accepted */
    char cost[80];
    memset(cost, '0', sizeof cost);
    memcpy(cost, "cost_usd ", 9);
    cost[9 + 63] = '7';
    strcpy(cost + 9 + 64, "\n");
    v = s_parse(cost);
    assert_int_equal(v.lines, 1);
    assert_true(v.cost_usd == 7);
    cost[9 + 64] = '0';
    strcpy(cost + 9 + 65, "\n");
    v = s_parse(cost);
    assert_int_equal(v.ignored, 1);

    v = s_parse("tokens_in 18446744073709551615\n"); /* UINT64_MAX */
    assert_true(v.tokens_in == UINT64_MAX);
    v = s_parse("tokens_in 18446744073709551616\n"); /* one more */
    assert_int_equal(v.ignored, 1);
    assert_int_equal(v.tokens_in, 0);
    v = s_parse("tokens_out 000000000000000000001\n"); /* 21 digits: refused by length */
    assert_int_equal(v.ignored, 1);
    v = s_parse("progress 0\n");
    assert_int_equal(v.progress_pct, 0);
    v = s_parse("progress 100%\n");
    assert_int_equal(v.progress_pct, 100);
    v = s_parse("progress 0100\n");
    assert_int_equal(v.progress_pct, 100);
}

static void test_nul_bytes(void **state)
{
    (void)state;
    fz_rfile_t *rf = s_new();
    const char text[] = "cost_usd 1\0 9\nmodel m\0\ntokens_in 3\n";
    fz_rfile_feed(rf, text, sizeof text - 1);
    assert_true(rf->values.cost_usd == 0); /* not "1": the whole line is refused */
    assert_string_equal(rf->values.model, "");
    assert_int_equal(rf->values.tokens_in, 3);
    assert_int_equal(rf->values.lines, 1);
    assert_int_equal(rf->values.ignored, 2);
    free(rf);
}

static void test_overlong_lines(void **state)
{
    (void)state;
    size_t big = 3 * FZ_RFILE_LINE_MAX;
    char *text = malloc(big + 64);
    assert_non_null(text);
    /* exactly FZ_RFILE_LINE_MAX bytes before the newline: accepted */
    memcpy(text, "summary ", 8);
    memset(text + 8, 's', FZ_RFILE_LINE_MAX - 8);
    text[FZ_RFILE_LINE_MAX] = '\n';
    fz_rfile_t *rf = s_new();
    fz_rfile_feed(rf, text, FZ_RFILE_LINE_MAX + 1);
    assert_int_equal(rf->values.lines, 1);
    assert_int_equal(strlen(rf->values.summary), FZ_RFILE_LINE_MAX - 8);
    free(rf);

    /* one byte more: ignored once, whatever its length, fed whole or in pieces; the next
       line is read normally */
    for (size_t piece = 1; piece <= big; piece = piece * 7 + 1) {
        memcpy(text, "summary ", 8);
        memset(text + 8, 'x', big - 8);
        size_t n = big;
        n += (size_t)sprintf(text + n, "\ncost_usd 3\n");
        rf = s_new();
        for (size_t off = 0; off < n; off += piece)
            fz_rfile_feed(rf, text + off, off + piece <= n ? piece : n - off);
        assert_int_equal(rf->values.ignored, 1);
        assert_int_equal(rf->values.lines, 1);
        assert_string_equal(rf->values.summary, "");
        assert_true(rf->values.cost_usd == 3);
        free(rf);
    }
    /* an overlong line still unterminated at the finish does not count either */
    rf = s_new();
    memset(text, 'y', big);
    fz_rfile_feed(rf, text, big);
    fz_rfile_finish(rf);
    assert_int_equal(rf->values.ignored, 1);
    assert_int_equal(rf->values.lines, 0);
    free(rf);
    free(text);
}

static void test_text_limits(void **state)
{
    (void)state;
    char line[600];
    /* a model name of FZ_RFILE_MODEL_MAX - 1 bytes fits, one more is refused */
    memcpy(line, "model ", 6);
    memset(line + 6, 'm', FZ_RFILE_MODEL_MAX - 1);
    strcpy(line + 6 + FZ_RFILE_MODEL_MAX - 1, "\n");
    fz_rfile_values_t v = s_parse(line);
    assert_int_equal(strlen(v.model), FZ_RFILE_MODEL_MAX - 1);
    memset(line + 6, 'm', FZ_RFILE_MODEL_MAX);
    strcpy(line + 6 + FZ_RFILE_MODEL_MAX, "\n");
    v = s_parse(line);
    assert_int_equal(v.ignored, 1);
    assert_string_equal(v.model, "");

    /* progress text is cut, on a UTF-8 boundary: 2-byte characters, so 255 bytes would
       split one */
    size_t n = (size_t)sprintf(line, "progress 50 ");
    while (n < sizeof line - 4) {
        memcpy(line + n, "\xc3\xa9", 2);
        n += 2;
    }
    strcpy(line + n, "\n");
    v = s_parse(line);
    assert_int_equal(v.progress_pct, 50);
    size_t got = strlen(v.progress_text);
    assert_int_equal(got, FZ_RFILE_PROGRESS_MAX - 2);
    assert_int_equal(v.progress_text[got - 1], '\xa9');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_last_value_wins),
        cmocka_unit_test(test_partial_lines_every_split),
        cmocka_unit_test(test_line_counts_only_with_newline),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_blank_and_whitespace),
        cmocka_unit_test(test_unknown_and_malformed),
        cmocka_unit_test(test_class_and_limits_malformed),
        cmocka_unit_test(test_class_names_and_ranges),
        cmocka_unit_test(test_class_keys_byte_by_byte),
        cmocka_unit_test(test_numbers_in_range),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_overlong_lines),
        cmocka_unit_test(test_text_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
