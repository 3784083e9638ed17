/*  fz_peers: the connection bound, by interposing accept4/accept/close; see fz_peers.h. */

#include "fz_peers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fz_util.h"

/* Descriptors tracked: one bit each, for descriptors below this (a larger one is refused). */
#define S_MAX_TRACKED (1L << 20)

static atomic_bool s_on;
static long s_max;                 /* the bound */
static long s_nbits;               /* descriptors tracked */
static _Atomic uint64_t *s_bits;   /* bit fd: fd came from accept and is not closed yet */
static atomic_long s_live;         /* bits set */
static _Atomic uint64_t s_refused; /* connections refused so far */
static atomic_int s_spare = -1;    /* kept open to be closed at EMFILE */
static atomic_flag s_spare_lock = ATOMIC_FLAG_INIT;
static _Atomic int64_t s_logged_ms; /* last refusal logged */

long fz_peers_default(long nofile)
{
    long n = nofile - FZ_PEERS_SPARE;
    return n < 16 ? 16 : n;
}

long fz_peers_init(long max_peers, long nofile)
{
    long cap = fz_peers_default(nofile);
    s_max = max_peers > 0 && max_peers < cap ? max_peers : cap;
    s_nbits = nofile > 0 && nofile < S_MAX_TRACKED ? nofile : S_MAX_TRACKED;
    s_bits = calloc((size_t)(s_nbits + 63) / 64, sizeof *s_bits);
    if (!s_bits)
        return -1;
    atomic_store(&s_spare, open("/dev/null", O_RDONLY | O_CLOEXEC));
    atomic_store(&s_on, true);
    return s_max;
}

long fz_peers_live(void)
{
    return atomic_load(&s_live);
}

uint64_t fz_peers_refused(void)
{
    return atomic_load(&s_refused);
}

/* Logs refusals at most every 10 s, with how many so far (a refused peer comes back). */
static void s_note_refusal(const char *why)
{
    uint64_t n = atomic_fetch_add(&s_refused, 1) + 1;
    int64_t now = fz_clock_ms(), last = atomic_load(&s_logged_ms);
    if ((last == 0 || now - last >= 10000) &&
        atomic_compare_exchange_strong(&s_logged_ms, &last, now))
        fz_warn("refused a connection: %s (%llu refused so far; --max-peers %ld)", why,
                (unsigned long long)n, s_max);
}

/* At EMFILE: makes room with the spare descriptor, takes the pending connection off the
   listener and closes it, so that libzmq neither aborts nor spins on it. */
static void s_shed(int listener)
{
    if (atomic_flag_test_and_set(&s_spare_lock))
        return; /* another thread is at it */
    int spare = atomic_exchange(&s_spare, -1);
    if (spare >= 0)
        syscall(SYS_close, spare);
    long s = syscall(SYS_accept4, listener, NULL, NULL, SOCK_CLOEXEC);
    if (s >= 0)
        syscall(SYS_close, s);
    atomic_store(&s_spare, open("/dev/null", O_RDONLY | O_CLOEXEC));
    atomic_flag_clear(&s_spare_lock);
    s_note_refusal("out of file descriptors");
}

/* (glibc declares the address as __SOCKADDR_ARG, a transparent union of pointers.) */
int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *len, int flags)
{
    long s = syscall(SYS_accept4, fd, addr.__sockaddr__, len, flags);
    if (!atomic_load(&s_on))
        return (int)s;
    if (s < 0) {
        if (errno == EMFILE) {
            s_shed(fd);
            errno = ECONNABORTED;
        }
        return -1;
    }
    if (s >= s_nbits || atomic_load(&s_live) >= s_max) {
        syscall(SYS_close, s);
        s_note_refusal(s >= s_nbits ? "descriptor beyond the tracked range" : "at the maximum");
        errno = ECONNABORTED;
        return -1;
    }
    atomic_fetch_or(&s_bits[s / 64], (uint64_t)1 << (s % 64));
    atomic_fetch_add(&s_live, 1);
    return (int)s;
}

int accept(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
    return accept4(fd, addr, len, 0);
}

int close(int fd)
{
    /* Clear first: the number cannot come back from accept before the kernel frees it. */
    if (atomic_load(&s_on) && fd >= 0 && fd < s_nbits) {
        uint64_t bit = (uint64_t)1 << (fd % 64);
        if (atomic_fetch_and(&s_bits[fd / 64], ~bit) & bit)
            atomic_fetch_sub(&s_live, 1);
    }
    return (int)syscall(SYS_close, fd);
}
