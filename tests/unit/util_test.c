/*  util_test: the small fz_util helpers the worker's modules share (fz_strcopy, fz_errf,
    fz_close, fz_fdatasync). The older fz_util checks (numbers, UTF-8, mkdirs) live in msg_test. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../proto/fz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_strcopy_fits(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof buf);
    fz_strcopy(buf, sizeof buf, "abc");
    assert_string_equal(buf, "abc");
    fz_strcopy(buf, sizeof buf, "1234567"); /* exactly size - 1 */
    assert_string_equal(buf, "1234567");
    fz_strcopy(buf, sizeof buf, "");
    assert_string_equal(buf, "");
}

static void test_strcopy_cuts_on_a_character(void **state)
{
    (void)state;
    char buf[5];
    fz_strcopy(buf, sizeof buf, "abcdef");
    assert_string_equal(buf, "abcd");
    /* "ab" + U+00E9 (2 bytes) + U+20AC (3 bytes): the euro sign does not fit in 4 bytes */
    fz_strcopy(buf, sizeof buf, "ab\xc3\xa9\xe2\x82\xac");
    assert_string_equal(buf, "ab\xc3\xa9");
    /* a 4-byte character at the start of a 4-byte buffer: nothing of it is kept */
    char small[4];
    fz_strcopy(small, sizeof small, "\xf0\x9f\x98\x80");
    assert_string_equal(small, "");
    char one[1];
    fz_strcopy(one, sizeof one, "abc");
    assert_string_equal(one, "");
}

static void test_errf(void **state)
{
    (void)state;
    char err[16] = "";
    assert_int_equal(fz_errf(err, sizeof err, "bad %s %d", "value", 42), -1);
    assert_string_equal(err, "bad value 42");
    assert_int_equal(fz_errf(err, 4, "truncated"), -1);
    assert_string_equal(err, "tru");
    assert_int_equal(fz_errf(NULL, 10, "ignored"), -1);
    strcpy(err, "kept");
    assert_int_equal(fz_errf(err, 0, "ignored"), -1);
    assert_string_equal(err, "kept");
}

static void test_close(void **state)
{
    (void)state;
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    int copy = fd;
    fz_close(&fd);
    assert_int_equal(fd, -1);
    assert_int_equal(fcntl(copy, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    fz_close(&fd); /* already closed: nothing */
    assert_int_equal(fd, -1);
}

/* 0 for a file, the errno of the failure otherwise (the store logs it, the broker's sync
   thread hands it to the loop). */
static void test_fdatasync(void **state)
{
    (void)state;
    char path[] = "/tmp/fz-util-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, "x", 1), 1);
    assert_int_equal(fz_fdatasync(fd), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fz_fdatasync(p[0]), EINVAL); /* a pipe cannot be synced */
    fz_close(&p[0]);
    fz_close(&p[1]);
    fz_close(&fd);
    assert_int_equal(fz_fdatasync(fd), EBADF);
}

/* What a peer sends reaches the log escaped: no raw control character, C1 included. */
static void test_log_escape(void **state)
{
    (void)state;
    char out[64];
    size_t n = fz_log_escape("w1\r\n12:00:00 fz-broker[1] info: forged", out, sizeof out);
    assert_int_equal(n, strlen(out));
    assert_string_equal(out, "w1\\x0d\\x0a12:00:00 fz-broker[1] info: forged");
    fz_log_escape("\x1b[31mred\x7f \xc2\x9b"
                  "2J caf\xc3\xa9",
                  out, sizeof out);
    assert_string_equal(out, "\\x1b[31mred\\x7f \\x9b2J caf\xc3\xa9"); /* é stays */
    char tiny[8];
    fz_log_escape("\x01\x02\x03", tiny, sizeof tiny); /* cut to fit, never half an escape */
    assert_string_equal(tiny, "\\x01");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strcopy_fits), cmocka_unit_test(test_strcopy_cuts_on_a_character),
        cmocka_unit_test(test_errf),         cmocka_unit_test(test_close),
        cmocka_unit_test(test_log_escape),   cmocka_unit_test(test_fdatasync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
