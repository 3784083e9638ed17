/*  sync_test: fz_sync (broker/fz_sync.c) syncs a file off the caller's thread, one sync at a
    time: busy from start to end, its descriptor readable once it has ended, the errno of a
    failed fdatasync handed back (a pipe cannot be synced: EINVAL), and destroy waits for a
    sync under way. */

/* cmocka.h needs these four first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fz_sync.h"
#include "testdir.h"

static int s_file(char *dir, size_t n)
{
    assert_non_null(fz_testdir(dir, n, "fz-sync-test"));
    char path[4200];
    snprintf(path, sizeof path, "%s/f", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    unlink(path);
    return fd;
}

static void test_sync_a_file(void **state)
{
    (void)state;
    char dir[4096], err[256] = "";
    int fd = s_file(dir, sizeof dir);
    fz_sync_t *sync = fz_sync_new(fd, err, sizeof err);
    assert_non_null(sync);
    assert_int_equal(fz_sync_end(sync, NULL), 0); /* nothing asked: nothing to wait for */
    for (int round = 0; round < 3; round++) {
        assert_false(fz_sync_busy(sync));
        assert_int_equal(fz_sync_start(sync), 0);
        assert_true(fz_sync_busy(sync));
        assert_int_equal(fz_sync_start(sync), -1); /* one at a time */
        struct pollfd p = {.fd = fz_sync_fd(sync), .events = POLLIN};
        assert_int_equal(poll(&p, 1, 10000), 1);
        assert_true(fz_sync_ended(sync));
        double secs = -1;
        assert_int_equal(fz_sync_end(sync, &secs), 0);
        assert_true(secs >= 0 && secs < 10);
        assert_false(fz_sync_busy(sync));
        assert_false(fz_sync_ended(sync));
    }
    fz_sync_destroy(&sync);
    assert_null(sync);
    close(fd);
    rmdir(dir);
}

static void test_a_failed_sync_says_why(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    char err[256] = "";
    fz_sync_t *sync = fz_sync_new(p[1], err, sizeof err);
    assert_non_null(sync);
    assert_int_equal(fz_sync_start(sync), 0);
    /* end waits by itself when the sync has not ended yet */
    assert_int_equal(fz_sync_end(sync, NULL), EINVAL);
    assert_false(fz_sync_busy(sync));
    fz_sync_destroy(&sync);
    close(p[0]);
    close(p[1]);
}

static void test_destroy_waits_for_the_sync(void **state)
{
    (void)state;
    char dir[4096], err[256] = "";
    int fd = s_file(dir, sizeof dir);
    fz_sync_t *sync = fz_sync_new(fd, err, sizeof err);
    assert_non_null(sync);
    assert_int_equal(fz_sync_start(sync), 0);
    fz_sync_destroy(&sync); /* joins the thread after its fdatasync; nothing leaks */
    assert_null(sync);
    fz_sync_destroy(&sync); /* NULL is fine */
    close(fd);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_a_file),
        cmocka_unit_test(test_a_failed_sync_says_why),
        cmocka_unit_test(test_destroy_waits_for_the_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
