/*  fz_proctab: Linux's process table (/proc), read for the agent supervisor.

    Owns: parsing /proc/PID/stat (state, parent, group) and the signal masks of
    /proc/PID/status, reading them for one process, walking
    every process, and the two questions fz_agent asks of the table (is anyone but the leader
    left in a group; kill and reap the children of a process), and a bounded wait for one
    child's exit. One reader serves both the
    worker and the keeper: everything here is async-signal-safe (no malloc, stdio or locks,
    only open/read/getdents64/close, kill, waitpid, poll and clock_gettime), so the keeper may call
   it in its forked child. fz_proctab_parse_stat is pure. */

#ifndef FZ_PROCTAB_H
#define FZ_PROCTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How long a sweep keeps killing processes that will not die before it gives up. */
#define FZ_PROCTAB_SWEEP_MAX_MS 2000

typedef struct {
    pid_t pid, ppid, pgrp;
    char state; /* 'R', 'S', 'Z' (zombie), 'X' (dead)... */
} fz_proc_t;

/* Parses the text of /proc/PID/stat, "pid (comm) state ppid pgrp ...", where comm may hold
   spaces and ')': the fields are read after the LAST ')'. Fills state, ppid and pgrp (not
   pid). False if buf[0..len) is not of that shape. */
bool fz_proctab_parse_stat(const char *buf, size_t len, fz_proc_t *proc);

/* Parses the SigIgn and SigCgt lines of the text of /proc/PID/status (hex masks, bit N-1
   for signal N) into *not_default: the signals ignored or caught, so not at their default
   disposition. False if either line is missing or malformed. Pure. */
bool fz_proctab_parse_sigs(const char *buf, size_t len, uint64_t *not_default);

/* The calling process's signals that are ignored or caught (fz_proctab_parse_sigs of
   /proc/self/status): one read instead of asking sigaction for each of the 64. False if
   the file cannot be read or parsed. */
bool fz_proctab_self_sigs(uint64_t *not_default);

/* Reads /proc/PID/stat. False if the process is gone or the file unreadable. */
bool fz_proctab_read(pid_t pid, fz_proc_t *proc);

/* Calls visit for every process in /proc until it returns false. 0, or -1 if /proc cannot
   be opened. O(processes). */
int fz_proctab_each(bool (*visit)(const fz_proc_t *proc, void *arg), void *arg);

/* True if a live (not zombie) process other than the leader pgrp is in group pgrp. */
bool fz_proctab_group_alive(pid_t pgrp);

/* SIGKILL to every live child of parent, and a reap (WNOHANG) of every zombie child.
   Returns how many children it saw. Call it only for the calling process's own children:
   an unreaped child keeps its pid, so signalling it is safe from pid reuse. For the calling
   process it reads only its own children lists (/proc/self/task/TID/children), not every
   process of the host; a full scan where the kernel has no such lists. */
int fz_proctab_sweep_children(pid_t parent);

/* fz_proctab_sweep_children sparing the children spare[0..nspare) (0 entries: none), which
   are neither signalled, reaped nor counted. */
int fz_proctab_sweep_children_but(pid_t parent, const pid_t *spare, size_t nspare);

/* Waits up to ms for pid, a child of the caller, to exit, and reaps it (*wstatus, may be
   NULL): pid once reaped, 0 if it still runs when the time is up, -1 if it is not ours to
   wait for (errno). Waits on a pidfd where the kernel has them, so that the wait ends the
   moment the child exits (an unreaped child keeps its pid: the pidfd cannot name another
   process); else looks every 200 us. */
pid_t fz_proctab_reap_within(pid_t pid, int *wstatus, int64_t ms);

#endif
