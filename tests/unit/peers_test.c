/*  peers_test: the connection bound (broker/fz_peers.c), linked into this test as it is into
    fz-broker, so accept4/accept/close here are fz_peers' own. Past the bound a connection is
    accepted and closed at once (ECONNABORTED, the peer sees its end closed); closing one
    makes room; at EMFILE the pending connection is shed with the spare descriptor, with
    ECONNABORTED rather than EMFILE (which libzmq's ipc listener aborts on). */

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
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fz_peers.h"
#include "fz_util.h"

static struct sockaddr_un s_addr;

static int s_listener(void)
{
    memset(&s_addr, 0, sizeof s_addr);
    s_addr.sun_family = AF_UNIX;
    snprintf(s_addr.sun_path, sizeof s_addr.sun_path, "/tmp/fz-peers-test-%d.sock", (int)getpid());
    unlink(s_addr.sun_path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&s_addr, sizeof s_addr), 0);
    assert_int_equal(listen(l, 64), 0);
    return l;
}

static int s_dial(void)
{
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, (struct sockaddr *)&s_addr, sizeof s_addr), 0);
    return c;
}

/* True if the peer closed c (a read sees end of file). */
static bool s_closed_by_peer(int c)
{
    struct pollfd p = {c, POLLIN, 0};
    char b;
    return poll(&p, 1, 1000) == 1 && read(c, &b, 1) == 0;
}

static void test_bound_and_spare(void **state)
{
    (void)state;
    assert_true(fz_peers_default(1024) == 1024 - FZ_PEERS_SPARE);
    assert_true(fz_peers_default(10) == 16);
    assert_true(fz_peers_init(2, 1024) == 2);
    int l = s_listener();
    int c1 = s_dial(), c2 = s_dial(), c3 = s_dial();
    int a1 = accept4(l, NULL, NULL, SOCK_CLOEXEC), a2 = accept(l, NULL, NULL);
    assert_true(a1 >= 0 && a2 >= 0);
    assert_int_equal(fz_peers_live(), 2);
    errno = 0;
    assert_int_equal(accept4(l, NULL, NULL, SOCK_CLOEXEC), -1); /* the third: past the bound */
    assert_int_equal(errno, ECONNABORTED);
    assert_true(s_closed_by_peer(c3));
    assert_int_equal(fz_peers_refused(), 1);
    assert_int_equal(close(a1), 0); /* room for one more */
    assert_int_equal(fz_peers_live(), 1);
    int c4 = s_dial();
    int a4 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(a4 >= 0);
    assert_int_equal(fz_peers_live(), 2);
    /* A descriptor that accept did not give (a file) changes no count when closed. */
    int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_int_equal(close(f), 0);
    assert_int_equal(fz_peers_live(), 2);
    close(a2);
    close(a4);
    assert_int_equal(fz_peers_live(), 0);

    /* EMFILE: every descriptor taken but the spare fz_peers keeps. */
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int c5 = s_dial();
    low = old;
    low.rlim_cur = 64;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int fill[64], n = 0;
    while (n < 64 && (fill[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        n++;
    errno = 0;
    assert_int_equal(accept4(l, NULL, NULL, SOCK_CLOEXEC), -1);
    assert_int_equal(errno, ECONNABORTED); /* not EMFILE */
    for (int i = 0; i < n; i++)
        close(fill[i]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(s_closed_by_peer(c5)); /* taken off the listener and closed */
    assert_int_equal(fz_peers_refused(), 2);
    assert_int_equal(fz_peers_live(), 0);
    close(c1);
    close(c2);
    close(c3);
    close(c4);
    close(c5);
    close(l);
    unlink(s_addr.sun_path);
}

int main(void)
{
    fz_log_init("peers_test", FZ_LOG_ERROR);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bound_and_spare)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
