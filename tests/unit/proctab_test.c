/*  proctab_test: fz_proctab's /proc/PID/stat parser (pure, byte by byte), and the reader and
    walker against real processes of this test. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../worker/fz_proctab.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool s_parse(const char *text, fz_proc_t *proc)
{
    memset(proc, 0, sizeof *proc);
    return fz_proctab_parse_stat(text, strlen(text), proc);
}

static void test_parse_plain(void **state)
{
    (void)state;
    fz_proc_t p;
    assert_true(s_parse("1234 (sleep) S 1000 1200 1000 0 -1 4194560 97 0 0 0\n", &p));
    assert_int_equal(p.state, 'S');
    assert_int_equal(p.ppid, 1000);
    assert_int_equal(p.pgrp, 1200);
    assert_int_equal(p.pid, 0);                 /* the caller's to fill */
    assert_true(s_parse("1 (init) R 0 1", &p)); /* the shortest acceptable */
    assert_int_equal(p.state, 'R');
    assert_int_equal(p.ppid, 0);
    assert_int_equal(p.pgrp, 1);
}

/* comm is whatever the process named itself: spaces, parentheses, even ") Z 1 1". */
static void test_parse_hostile_comm(void **state)
{
    (void)state;
    fz_proc_t p;
    assert_true(s_parse("77 (a b) c) Z 9 9) T 42 43 0\n", &p));
    assert_int_equal(p.state, 'T');
    assert_int_equal(p.ppid, 42);
    assert_int_equal(p.pgrp, 43);
    assert_true(s_parse("77 ()) S 5 6 7", &p));
    assert_int_equal(p.ppid, 5);
    assert_int_equal(p.pgrp, 6);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "1234 sleep S 1 2",  /* no ')' */
        "1234 (sleep)",      /* nothing after it */
        "1234 (sleep) S",    /* no ppid */
        "1234 (sleep) S ",   /* no ppid */
        "1234 (sleep)S 1 2", /* no space before the state */
        "1234 (sleep) SS 1 2",
        "1234 (sleep) S x 2", /* ppid not a number */
        "1234 (sleep) S 1",   /* no pgrp */
        "1234 (sleep) S 1 ",  /* no pgrp */
        "1234 (sleep) S 1x 2",
        "1234 (sleep) S 1 x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fz_proc_t p;
        if (s_parse(bad[i], &p))
            fail_msg("\"%s\" should not parse", bad[i]);
    }
}

/* The parser reads only within len: the same text cut short parses as the short text. */
static void test_parse_stays_within_len(void **state)
{
    (void)state;
    const char *text = "9 (x) S 123 456 789";
    fz_proc_t p;
    assert_true(fz_proctab_parse_stat(text, strlen("9 (x) S 123 4"), &p));
    assert_int_equal(p.pgrp, 4);
    assert_false(fz_proctab_parse_stat(text, strlen("9 (x) S 123"), &p));
    assert_false(fz_proctab_parse_stat(text, strlen("9 (x) S"), &p));
    /* every length: never a crash, and a yes only once pgrp has a digit */
    for (size_t len = 0; len <= strlen(text); len++)
        assert_int_equal(fz_proctab_parse_stat(text, len, &p), len >= strlen("9 (x) S 123 4"));
}

static void test_parse_numbers(void **state)
{
    (void)state;
    fz_proc_t p;
    assert_true(s_parse("5 (k) S 0 -1", &p)); /* negative values exist in other fields */
    assert_int_equal(p.pgrp, -1);
    /* an absurdly long number stops the parse (capped, never overflowed into another) */
    assert_false(s_parse("5 (k) S 99999999999999999999999999999 7", &p));
    assert_true(s_parse("5 (k) S 4194304 4194304", &p)); /* the largest Linux pid */
    assert_int_equal(p.ppid, 4194304);
}

static void test_read_self_and_child(void **state)
{
    (void)state;
    fz_proc_t me;
    assert_true(fz_proctab_read(getpid(), &me));
    assert_int_equal(me.pid, getpid());
    assert_int_equal(me.ppid, getppid());
    assert_int_equal(me.pgrp, getpgrp());
    assert_int_equal(me.state, 'R');
    assert_false(fz_proctab_read(0, &me));
    assert_false(fz_proctab_read(-1, &me));

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        setpgid(0, 0);
        pause();
        _exit(0);
    }
    setpgid(child, child);
    fz_proc_t c;
    assert_true(fz_proctab_read(child, &c));
    assert_int_equal(c.ppid, getpid());
    assert_int_equal(c.pgrp, child);
    assert_false(fz_proctab_group_alive(child)); /* only the leader is in it */
    kill(child, SIGKILL);
    /* a zombie is still read, as 'Z' */
    for (int i = 0; i < 1000 && fz_proctab_read(child, &c) && c.state != 'Z'; i++)
        usleep(1000);
    assert_int_equal(c.state, 'Z');
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_false(fz_proctab_read(child, &c));
}

static bool s_count(const fz_proc_t *proc, void *arg)
{
    int *found = arg;
    if (proc->pid == getpid())
        (*found)++;
    return true;
}

static bool s_stop_at_first(const fz_proc_t *proc, void *arg)
{
    (void)proc;
    (*(int *)arg)++;
    return false;
}

static void test_each(void **state)
{
    (void)state;
    int found = 0;
    assert_int_equal(fz_proctab_each(s_count, &found), 0);
    assert_int_equal(found, 1);
    int visits = 0;
    assert_int_equal(fz_proctab_each(s_stop_at_first, &visits), 0);
    assert_int_equal(visits, 1);
}

/* A group with a second member is alive; sweeping our children kills and reaps them. */
static void test_group_and_sweep(void **state)
{
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t leader = fork();
    assert_true(leader >= 0);
    if (leader == 0) {
        setpgid(0, 0);
        if (fork() == 0) { /* a member of the leader's group, child of the leader */
            close(ready[1]);
            pause();
            _exit(0);
        }
        close(ready[1]);
        pause();
        _exit(0);
    }
    setpgid(leader, leader);
    close(ready[1]);
    char byte;
    assert_int_equal(read(ready[0], &byte, 1), 0); /* both children closed it */
    close(ready[0]);
    assert_true(fz_proctab_group_alive(leader));
    assert_false(fz_proctab_group_alive(getpid() + 0x3fffffff)); /* no such group */

    /* the leader is our only child: the sweep sees it, kills it, then reaps it */
    int seen = fz_proctab_sweep_children(getpid());
    assert_int_equal(seen, 1);
    for (int i = 0; i < 2000 && fz_proctab_sweep_children(getpid()) > 0; i++)
        usleep(1000);
    assert_int_equal(fz_proctab_sweep_children(getpid()), 0);
    assert_int_equal(waitpid(leader, NULL, WNOHANG), -1); /* reaped by the sweep */
    kill(-leader, SIGKILL); /* the orphaned member (reparented away from us) */
}

static bool s_count_children(const fz_proc_t *proc, void *arg)
{
    int *n = arg;
    *n += proc->ppid == getpid();
    return true;
}

/* In a subreaper (as the worker is), orphans of our children become ours: the sweep, which
   reads only our own children lists, sees them as a scan of all of /proc would, children a
   second thread started included. Runs in a child process that exits with the verdict. */
static void *s_fork_in_thread(void *arg)
{
    (void)arg;
    if (fork() == 0) {
        pause();
        _exit(0);
    }
    return NULL;
}

static void test_sweep_sees_reparented_orphans(void **state)
{
    (void)state;
    pid_t judge = fork();
    assert_true(judge >= 0);
    if (judge == 0) {
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        pid_t mid = fork();
        if (mid == 0) {
            for (int i = 0; i < 3; i++)
                if (fork() == 0) {
                    pause();
                    _exit(0);
                }
            _exit(0); /* its three children are orphans: reparented to judge */
        }
        waitpid(mid, NULL, 0);
        pthread_t th;
        pthread_create(&th, NULL, s_fork_in_thread, NULL);
        pthread_join(th, NULL);
        int scanned = 0;
        fz_proctab_each(s_count_children, &scanned);
        int seen = fz_proctab_sweep_children(getpid());
        for (int i = 0; i < 2000 && fz_proctab_sweep_children(getpid()) > 0; i++)
            usleep(1000);
        int left = fz_proctab_sweep_children(getpid());
        _exit(scanned == 4 && seen == 4 && left == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(judge, &status, 0), judge);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* SigIgn / SigCgt of /proc/PID/status: both lines needed, hex, bit N-1 for signal N. */
static void test_parse_sigs(void **state)
{
    (void)state;
    const char *text = "Name:\tx\nSigQ:\t0/96364\nSigPnd:\t0000000000000000\n"
                       "SigBlk:\tfffffffffffbfeff\nSigIgn:\t0000000000001001\n"
                       "SigCgt:\t00000000000084A0\nCapInh:\t0\n";
    uint64_t m = 0;
    assert_true(fz_proctab_parse_sigs(text, strlen(text), &m));
    assert_true(m ==
                0x94a1); /* SIGHUP, SIGPIPE ignored; SIGABRT, SIGFPE, SIGSEGV, SIGSTKFLT caught */
    /* SigBlk is not read as either: only the exact keys at a line's start count */
    const char *no_cgt = "SigBlk:\t00000000000000ff\nSigIgn:\t0000000000000001\n";
    assert_false(fz_proctab_parse_sigs(no_cgt, strlen(no_cgt), &m));
    const char *bad = "SigIgn:\t00000000000000zz\nSigCgt:\t0000000000000000\n";
    assert_false(fz_proctab_parse_sigs(bad, strlen(bad), &m));
    const char *empty = "SigIgn:\t\nSigCgt:\t0000000000000000\n";
    assert_false(fz_proctab_parse_sigs(empty, strlen(empty), &m));
    const char *mid = "xSigIgn:\t1\nSigCgt:\t2\n"; /* not at a line's start */
    assert_false(fz_proctab_parse_sigs(mid, strlen(mid), &m));
    /* within len: the SigCgt line lies past it */
    const char *cut = "SigIgn:\t1\nSigCgt:\t2\n";
    assert_false(fz_proctab_parse_sigs(cut, strlen("SigIgn:\t1\n"), &m));
    assert_true(fz_proctab_parse_sigs(cut, strlen(cut), &m));
    assert_true(m == 3);
}

/* This process, as the kernel sees it: a handler and an ignored signal show. */
static void test_self_sigs(void **state)
{
    (void)state;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_hup, old_usr2;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGHUP, &ign, &old_hup);
    sigaction(SIGUSR2, &dfl, &old_usr2);
    uint64_t m = 0;
    assert_true(fz_proctab_self_sigs(&m));
    assert_true(m >> (SIGHUP - 1) & 1);
    assert_false(m >> (SIGUSR2 - 1) & 1);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGUSR2, &old_usr2, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_plain),
        cmocka_unit_test(test_parse_hostile_comm),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_stays_within_len),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_parse_sigs),
        cmocka_unit_test(test_self_sigs),
        cmocka_unit_test(test_read_self_and_child),
        cmocka_unit_test(test_each),
        cmocka_unit_test(test_group_and_sweep),
        cmocka_unit_test(test_sweep_sees_reparented_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
