/*  fz_agent: the supervision of one agent process, or of a simulation of one; see fz_agent.h.

    Life of a real agent (self->state, fz_agent_state_t in fz_agent_int.h):
      RUNNING    the shell runs under its keeper (fz_keeper.h), leading the agent's process
                 group (pid = the shell = the group id); the prompt is fed, output and report
                 file are followed, limits enforced.
      STOPPING   timeout, cost cap, stall or cancel: SIGTERM sent to the group, SIGKILL after
                 the grace (KILLING), both through the keeper, which keeps the shell its
                 unreaped child until the end, so the group id cannot be reused. The shell's
                 exit comes as a report from the keeper. If we were stopping it, live group
                 members keep their grace (LINGER) before we go on.
      ENDED      s_finish: the keeper ends the agent (SIGKILL to the group, the shell and
                 every descendant reaped) and goes back to idle; output drained, the report
                 read a last time, the outcome settled from the shell's status. LOST instead
                 when the keeper is gone: what it held reparents to this process.
      SWEEP      only after a lost keeper: SIGKILL and reap children of this process (what
                 the subreaper caught) until a scan finds none.
      DONE       descriptors closed; status, tail and new output stay readable.
    A simulated agent (fz_sim.c) has no process and goes from RUNNING to DONE by the clock
    alone. Starting a real one is fz_agent_start.c; the keeper, /proc and the report parser
    are fz_keeper, fz_proctab and fz_rfile. */

#include "fz_agent_int.h"
#include "fz_keeper.h"
#include "fz_proctab.h"
#include "fz_rfile.h"
#include "fz_sim.h"
#include "fz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Output read per pump: a flooding agent must not starve the worker's other sockets. */
#define S_PUMP_READ_MAX (1024 * 1024)
/* Output read after the agent ended: the pipe holds at most its buffer plus what escaped
   writers add before the sweep kills them. */
#define S_DRAIN_MAX (4 * 1024 * 1024)
/* Unread report data beyond this is skipped: every key is last-wins, so only counts suffer,
   and a hostile agent cannot make one pump read gigabytes. */
#define S_REPORT_WINDOW (1024 * 1024)
#define S_WAIT_POLL_MS 100 /* how often to look for the exit when not polling for it */
#define S_GROUP_CHECK_MS 50
#define S_SWEEP_TICK_MS 5
#define S_DESTROY_MAX_MS 2000

/* Real agents of this process that are not reaped yet. The final sweep kills every child of
   the process, so it runs only when this is 0: then any child left is an escaped descendant.
   Process-wide on purpose: children belong to the process, not to one fz_agent_t. */
static int s_live_agents;

void fz_agent_count_live(fz_agent_t *self)
{
    self->counted = true;
    s_live_agents++;
}

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int64_t fz_agent_ms(double seconds)
{
    if (!(seconds > 0))
        return 0;
    if (seconds * 1000 >= (double)FZ_AGENT_MS_MAX)
        return FZ_AGENT_MS_MAX;
    int64_t ms = (int64_t)(seconds * 1000 + 0.5);
    return ms > 0 ? ms : 1;
}

int64_t fz_agent_now_ms(void)
{
    return fz_clock_ms();
}

int fz_agent_init_subreaper(void)
{
    /* SIGCHLD ignored (possibly inherited through exec) makes the kernel reap our children
       itself: their exit status is lost and their ids stop being ours to signal. */
    struct sigaction action;
    if (sigaction(SIGCHLD, NULL, &action) == 0 && action.sa_handler == SIG_IGN) {
        action.sa_handler = SIG_DFL;
        action.sa_flags &= ~SA_NOCLDWAIT;
        sigaction(SIGCHLD, &action, NULL);
    }
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : -1;
}

/* The protocol's names (fz_vocab): an ended agent's outcome is an fz_outcome_t. */
const char *fz_agent_outcome_name(fz_agent_outcome_t outcome)
{
    return outcome == FZ_AGENT_RUNNING ? "running" : fz_outcome_name((fz_outcome_t)outcome);
}

/* ---------------------------------------------------------------- files and descriptors */

/* write() that cannot raise SIGPIPE even if the caller did not ignore it: SIGPIPE for a
   pipe write goes to the writing thread, so block it here, and swallow the one our write
   raised (unless one was already pending before, which is not ours to take). */
static ssize_t s_write_nosigpipe(int fd, const void *buf, size_t len)
{
    /* Ignored process-wide, as the contract asks of the caller (fz-worker does): a plain
       write, one query instead of the four calls of the dance below. */
    struct sigaction now;
    if (sigaction(SIGPIPE, NULL, &now) == 0 && now.sa_handler == SIG_IGN) {
        ssize_t n;
        do
            n = write(fd, buf, len);
        while (n < 0 && errno == EINTR);
        return n;
    }
    sigset_t pipe_set, old_mask, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);

    ssize_t n;
    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    int saved = errno;

    if (n < 0 && saved == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    errno = saved;
    return n;
}

/* ---------------------------------------------------------------- output */

static void s_log_write(fz_agent_t *self, const char *data, size_t n)
{
    if (self->log_fd < 0 && self->log_path && self->status.log_errno == 0 && n > 0) {
        self->log_fd = open(self->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (self->log_fd < 0) {
            self->status.log_errno = errno;
            fz_warn("cannot open log %s (%s); output is not logged", self->log_path,
                    strerror(errno));
        } else
            self->status.log_made = true;
    }
    while (self->log_fd >= 0 && self->status.log_errno == 0 && n > 0) {
        ssize_t w = write(self->log_fd, data, n);
        if (w > 0) {
            data += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR)
            continue;
        else {
            self->status.log_errno = w < 0 ? errno : EIO;
            fz_warn("log write failed (%s); output is no longer logged",
                    strerror(self->status.log_errno));
        }
    }
}

static void s_tail_append(fz_agent_t *self, const char *data, size_t n)
{
    size_t max = self->tail_max;
    if (n >= max) {
        memcpy(self->tail, data + n - max, max);
        self->tail_len = max;
    } else {
        if (self->tail_len + n > 2 * max) {
            size_t keep = max - n;
            memmove(self->tail, self->tail + self->tail_len - keep, keep);
            self->tail_len = keep;
        }
        memcpy(self->tail + self->tail_len, data, n);
        self->tail_len += n;
    }
    self->tail[self->tail_len] = '\0';
}

void fz_agent_output(fz_agent_t *self, const char *data, size_t n)
{
    s_log_write(self, data, n);
    s_tail_append(self, data, n);
    self->status.output_bytes += n;
}

static void s_read_output(fz_agent_t *self, size_t budget)
{
    size_t got = 0;
    while (self->out_fd >= 0 && got < budget) {
        ssize_t n = read(self->out_fd, self->iobuf, FZ_AGENT_IOBUF);
        if (n > 0) {
            fz_agent_output(self, self->iobuf, (size_t)n);
            got += (size_t)n;
        } else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        else
            fz_close(&self->out_fd); /* EOF: every writer is gone */
    }
}

/* ---------------------------------------------------------------- stdin */

static void s_close_stdin(fz_agent_t *self)
{
    fz_close(&self->in_fd);
    free(self->prompt);
    self->prompt = NULL;
    self->prompt_len = self->prompt_off = 0;
}

/* Writes what the pipe takes now. EPIPE means the agent closed stdin or exited: it has
   what it wanted, so stop quietly. Closing the pipe at the end gives the agent its EOF. */
void fz_agent_feed_stdin(fz_agent_t *self)
{
    while (self->in_fd >= 0 && self->prompt_off < self->prompt_len) {
        ssize_t n = s_write_nosigpipe(self->in_fd, self->prompt + self->prompt_off,
                                      self->prompt_len - self->prompt_off);
        if (n > 0)
            self->prompt_off += (size_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        else
            break;
    }
    s_close_stdin(self);
}

/* ---------------------------------------------------------------- report file */

static void s_report_restart(fz_agent_t *self, off_t offset, bool mid_line)
{
    self->report_off = offset;
    fz_rfile_restart(&self->report, mid_line);
}

/* The parser's values become the status (the same fields, the same sizes). */
static void s_report_publish(fz_agent_t *self)
{
    const fz_rfile_values_t *v = &self->report.values;
    fz_agent_status_t *st = &self->status;
    st->cost_usd = v->cost_usd;
    st->tokens_in = v->tokens_in;
    st->tokens_cache_read = v->tokens_cache_read;
    st->tokens_cache_write = v->tokens_cache_write;
    st->tokens_out = v->tokens_out;
    memcpy(st->model, v->model, sizeof st->model);
    st->progress_pct = v->progress_pct;
    memcpy(st->progress_text, v->progress_text, sizeof st->progress_text);
    memcpy(st->summary, v->summary, sizeof st->summary);
    st->cls = v->cls;
    st->reset_at = v->reset_at;
    st->retry_after = v->retry_after;
    st->report_lines = v->lines;
    st->report_ignored = v->ignored;
}

/* Reads what was appended to the open report since last time. */
static void s_report_drain(fz_agent_t *self)
{
    struct stat st;
    if (self->report_fd < 0 || fstat(self->report_fd, &st) < 0)
        return;
    if (st.st_size < self->report_off)
        s_report_restart(self, 0, false); /* truncated, e.g. `>` instead of `>>` */
    if (st.st_size - self->report_off > S_REPORT_WINDOW)
        s_report_restart(self, st.st_size - S_REPORT_WINDOW, true);
    while (self->report_off < st.st_size) {
        off_t left = st.st_size - self->report_off;
        size_t want = left < FZ_AGENT_IOBUF ? (size_t)left : FZ_AGENT_IOBUF;
        ssize_t n = pread(self->report_fd, self->iobuf, want, self->report_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        self->report_off += n;
        fz_rfile_feed(&self->report, self->iobuf, (size_t)n);
    }
}

/* True if the path now names another file (written elsewhere and renamed over ours, or
   removed and created again) and we switched to it. Only regular files are followed, and
   opened without blocking, so a FIFO or device put there cannot hang the worker. */
static bool s_report_follow(fz_agent_t *self)
{
    struct stat by_path, by_fd;
    if (stat(self->report_path, &by_path) < 0 || !S_ISREG(by_path.st_mode))
        return false;
    if (self->report_fd >= 0 && fstat(self->report_fd, &by_fd) == 0 &&
        by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino)
        return false;
    int fd = open(self->report_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return false;
    if (fstat(fd, &by_fd) < 0 || !S_ISREG(by_fd.st_mode)) {
        close(fd);
        return false;
    }
    fz_close(&self->report_fd);
    self->report_fd = fd;
    s_report_restart(self, 0, false);
    return true;
}

/* Reads what is new in the report. final: the agent is gone, so a last line without a
   newline is complete. */
static void s_read_report(fz_agent_t *self, bool final)
{
    s_report_drain(self);
    if (self->report_path && s_report_follow(self))
        s_report_drain(self);
    if (final)
        fz_rfile_finish(&self->report);
    s_report_publish(self);
}

/* ---------------------------------------------------------------- signs of life */

/* What the agent has shown so far: it changes exactly when it shows life. */
static uint64_t s_life_count(const fz_agent_t *self)
{
    return self->status.output_bytes + self->status.report_lines;
}

static void s_note_life(fz_agent_t *self, uint64_t before, int64_t now)
{
    if (s_life_count(self) != before && now > self->status.alive_ms)
        self->status.alive_ms = now;
}

/* True once the agent showed no life for its stall limit. A report line written since the
   last read would not be seen before the next one: the file is read now, before deciding. */
static bool s_stalled(fz_agent_t *self, int64_t now)
{
    if (self->stall_kill_ms <= 0 || now - self->status.alive_ms < self->stall_kill_ms)
        return false;
    uint64_t before = s_life_count(self);
    s_read_report(self, false);
    s_note_life(self, before, now);
    return now - self->status.alive_ms >= self->stall_kill_ms;
}

/* ---------------------------------------------------------------- processes */

static void s_sweep_step(fz_agent_t *self, int64_t now)
{
    /* Every process seen is our own unreaped child at the time of the scan; it stays so until
       we reap it, so its pid cannot be reused under us and signalling it is safe. */
    pid_t spare[] = {fz_keeper_spawner_pid(), fz_keeper_idle_pid()};
    int seen = fz_proctab_sweep_children_but(getpid(), spare, 2);
    if (seen == 0)
        fz_agent_end(self);
    else if (now >= self->sweep_until_ms) {
        fz_warn("%d descendant(s) of agent %d would not die after SIGKILL; giving up", seen,
                (int)self->pid);
        fz_agent_end(self);
    }
}

/* Through the keeper, which signals the group only while the shell is its unreaped child:
   the shell's pid, which is the group id, cannot have been reused. Never once the agent
   ended or its keeper is gone. */
static void s_signal_group(fz_agent_t *self, int sig)
{
    if (self->pid > 0 && self->state < FZ_AGENT_S_LOST && !self->keeper_gone) {
        self->signalled = true;
        if (fz_keeper_signal(&self->keeper, sig) < 0)
            self->keeper_gone = true;
    }
}

/* The shell runs (as far as we know): no exit reported, the keeper not seen dead. */
static bool s_leader_alive(const fz_agent_t *self)
{
    return self->state <= FZ_AGENT_S_KILLING;
}

/* The leader ended: lost (its ids are no longer ours), or over; during a stop whose SIGKILL
   is still to come, the rest of the group keeps its grace. */
static void s_leader_ended(fz_agent_t *self, bool lost)
{
    if (lost)
        self->state = FZ_AGENT_S_LOST;
    else
        self->state = self->state == FZ_AGENT_S_STOPPING ? FZ_AGENT_S_LINGER : FZ_AGENT_S_ENDED;
}

static void s_stop(fz_agent_t *self, int64_t now, fz_agent_outcome_t why, const char *reason)
{
    if (self->state != FZ_AGENT_S_RUNNING)
        return;
    self->state = FZ_AGENT_S_STOPPING;
    self->status.stopping = true;
    self->stop_outcome = why;
    fz_strcopy(self->status.reason, sizeof self->status.reason, reason);
    s_signal_group(self, SIGTERM);
    s_signal_group(self, SIGCONT); /* a stopped process acts on SIGTERM only once continued */
    self->kill_at_ms = now + self->grace_ms;
}

static void s_check_limits(fz_agent_t *self, int64_t now)
{
    if (self->state == FZ_AGENT_S_RUNNING) {
        if (self->timeout_ms > 0 && now - self->status.started_ms >= self->timeout_ms)
            s_stop(self, now, FZ_AGENT_TIMEOUT, "timeout");
        else if (self->max_cost > 0 && self->status.cost_usd > self->max_cost)
            s_stop(self, now, FZ_AGENT_COST_CAP, "cost-cap");
        else if (s_stalled(self, now))
            s_stop(self, now, FZ_AGENT_STALLED, "stalled");
    }
    bool grace = self->state == FZ_AGENT_S_STOPPING || self->state == FZ_AGENT_S_LINGER;
    if (grace && now >= self->kill_at_ms) {
        s_signal_group(self, SIGKILL);
        self->state = self->state == FZ_AGENT_S_STOPPING ? FZ_AGENT_S_KILLING : FZ_AGENT_S_ENDED;
    }
}

/* Notices the shell's exit from the keeper's report, or the keeper's end (its socket
   closed: it was killed on its own, or someone reaped it), without reaping anything. */
static void s_check_leader(fz_agent_t *self)
{
    if (!s_leader_alive(self))
        return;
    fz_keeper_msg_t msg;
    int rc;
    while (!self->keeper_gone && (rc = fz_keeper_read(self->keeper.ctl_fd, &msg)) != 0) {
        if (rc < 0)
            self->keeper_gone = true;
        else if (msg.kind == FZ_KEEPER_EXITED) {
            self->shell_wstatus = msg.value;
            s_leader_ended(self, false);
            return;
        }
    }
    if (self->keeper_gone)
        s_leader_ended(self, true); /* its ids are not ours to signal any more */
}

/* May we finish now? Once the leader ended, but while the group lingers only when no other
   member is left (looked at every S_GROUP_CHECK_MS). */
static bool s_group_settled(fz_agent_t *self, int64_t now)
{
    if (self->state == FZ_AGENT_S_ENDED || self->state == FZ_AGENT_S_LOST)
        return true;
    if (self->state != FZ_AGENT_S_LINGER || now < self->group_check_ms)
        return false;
    self->group_check_ms = now + S_GROUP_CHECK_MS;
    return !fz_proctab_group_alive(self->pid);
}

static void s_uncount(fz_agent_t *self)
{
    if (self->counted)
        s_live_agents--;
    self->counted = false;
}

static void s_settle_outcome(fz_agent_t *self, bool have_status, int wstatus)
{
    fz_agent_status_t *st = &self->status;
    st->exit_code = -1;
    st->signal = 0;
    if (have_status && WIFEXITED(wstatus))
        st->exit_code = WEXITSTATUS(wstatus);
    else if (have_status && WIFSIGNALED(wstatus))
        st->signal = WTERMSIG(wstatus);
    if (st->stopping)
        st->outcome = self->stop_outcome;
    else
        st->outcome = st->signal ? FZ_AGENT_SIGNALED : FZ_AGENT_EXITED;
    st->stopping = false;
}

/* Reaps the keeper, which is a zombie or has just been sent SIGKILL: a few microseconds,
   bounded all the same. */
static bool s_reap_keeper(fz_agent_t *self, int *wstatus)
{
    pid_t r = fz_proctab_reap_within(self->keeper.pid, wstatus, S_DESTROY_MAX_MS);
    if (r == 0)
        fz_warn("the keeper %d of an agent did not die after SIGKILL; leaving it",
                (int)self->keeper.pid);
    return r == self->keeper.pid;
}

/* Waits up to wait_ms for the keeper's word that the agent is ended. How many descendants
   would not die, or -1 if the keeper is gone or did not answer in time. An exit report
   still in the socket counts. */
static int s_wait_done(fz_agent_t *self, int64_t wait_ms)
{
    int64_t give_up = fz_agent_now_ms() + wait_ms;
    for (;;) {
        fz_keeper_msg_t msg;
        int rc = fz_keeper_read(self->keeper.ctl_fd, &msg);
        if (rc < 0) {
            self->keeper_gone = true;
            return -1;
        }
        if (rc == 1 && msg.kind == FZ_KEEPER_EXITED && self->shell_wstatus < 0)
            self->shell_wstatus = msg.value;
        else if (rc == 1 && msg.kind == FZ_KEEPER_DONE)
            return msg.value;
        int64_t left = give_up - fz_agent_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {self->keeper.ctl_fd, POLLIN, 0};
        if (rc == 0)
            poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    }
}

static void s_finish(fz_agent_t *self, int64_t now)
{
    int wstatus = 0;
    bool have_status = false;
    /* The keeper kills the group (leftovers such as `sleep 1000 &`) and reaps everything,
       at once when the shell ended by itself, else when asked; then it waits for the next
       agent. */
    int left = self->keeper_gone ? -1 : s_wait_done(self, 0); /* it ended it by itself */
    /* A shell that exited with no signal asked for is ended by the keeper unasked: its DONE
       is on its way (an END now would only make it sweep again and answer twice). */
    bool unasked = self->shell_wstatus >= 0 && !self->signalled;
    if (left < 0 && !self->keeper_gone && (unasked || fz_keeper_end(&self->keeper) == 0))
        left = s_wait_done(self, FZ_PROCTAB_SWEEP_MAX_MS + S_DESTROY_MAX_MS); /* its bound */
    if (left >= 0) {
        fz_keeper_release(&self->keeper, true);
        self->tree_empty = left == 0;
        if (left > 0)
            fz_warn("%d descendant(s) of agent %d would not die after SIGKILL; giving up", left,
                    (int)self->pid);
    } else {
        /* Gone, or silent: ended here (our unreaped child, safe to signal). What it held of
           the agent is now this process's, for the sweep; its own end stands for the
           shell's when the shell's is unknown (killed on its own: SIGKILL). */
        if (!self->keeper_gone)
            kill(self->keeper.pid, SIGKILL);
        have_status = s_reap_keeper(self, &wstatus);
        fz_close(&self->keeper.ctl_fd);
        self->keeper.pid = 0;
        self->keeper_gone = true;
    }
    if (self->shell_wstatus >= 0) { /* what the shell did, not what we did to its keeper */
        wstatus = self->shell_wstatus;
        have_status = true;
    }
    /* From here on the state is SWEEP or DONE, and the group is never signalled. */
    s_close_stdin(self);
    uint64_t before = s_life_count(self);
    s_read_output(self, S_DRAIN_MAX);
    s_read_report(self, true);
    s_note_life(self, before, now);
    s_settle_outcome(self, have_status, wstatus);
    self->status.duration_ms = self->status.elapsed_ms = now - self->status.started_ms;
    s_uncount(self);

    int subreaper = 0;
    if (!self->tree_empty && s_live_agents == 0 && prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0 &&
        subreaper) {
        self->state = FZ_AGENT_S_SWEEP;
        self->sweep_until_ms = now + FZ_PROCTAB_SWEEP_MAX_MS;
        s_sweep_step(self, now);
    } else
        fz_agent_end(self);
}

/* Enters FZ_AGENT_S_DONE: what the pipe still holds is read, descriptors close. Idempotent. */
void fz_agent_end(fz_agent_t *self)
{
    if (self->out_fd >= 0 && self->iobuf)
        s_read_output(self, S_DRAIN_MAX);
    fz_close(&self->out_fd);
    s_close_stdin(self);
    /* A keeper still held now (an agent that would not die) is ended: it kills all. */
    fz_keeper_release(&self->keeper, false);
    fz_close(&self->log_fd);
    fz_close(&self->report_fd);
    self->state = FZ_AGENT_S_DONE;
}

/* ---------------------------------------------------------------- running */

void fz_agent_pump(fz_agent_t *self, int64_t now_ms)
{
    if (!self || self->state == FZ_AGENT_S_DONE)
        return;
    if (self->simulated) {
        fz_sim_pump(self, now_ms);
        return;
    }
    if (self->state == FZ_AGENT_S_SWEEP) {
        s_read_output(self, S_PUMP_READ_MAX);
        s_sweep_step(self, now_ms);
        return;
    }
    int64_t elapsed = now_ms - self->status.started_ms;
    self->status.elapsed_ms = elapsed > 0 ? elapsed : 0;
    fz_agent_feed_stdin(self);
    uint64_t before = s_life_count(self);
    s_read_output(self, S_PUMP_READ_MAX);
    if (now_ms >= self->report_due_ms) {
        s_read_report(self, false);
        self->report_due_ms = now_ms + FZ_AGENT_REPORT_EVERY_MS;
    }
    s_note_life(self, before, now_ms);
    s_check_leader(self);
    s_check_limits(self, now_ms);
    if (s_group_settled(self, now_ms))
        s_finish(self, now_ms);
}

static int64_t s_earlier(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int fz_agent_timeout_ms(fz_agent_t *self, int64_t now_ms)
{
    if (!self || self->state == FZ_AGENT_S_DONE)
        return -1;
    int64_t due;
    if (self->simulated) {
        due = fz_sim_due_ms(self);
    } else if (self->state == FZ_AGENT_S_SWEEP)
        due = now_ms + S_SWEEP_TICK_MS;
    else {
        due = self->report_due_ms;
        if (self->state == FZ_AGENT_S_STOPPING || self->state == FZ_AGENT_S_LINGER)
            due = s_earlier(due, self->kill_at_ms);
        if (self->state == FZ_AGENT_S_RUNNING && self->timeout_ms > 0)
            due = s_earlier(due, self->status.started_ms + self->timeout_ms);
        if (self->state == FZ_AGENT_S_RUNNING && self->stall_kill_ms > 0)
            due = s_earlier(due, self->status.alive_ms + self->stall_kill_ms);
        if (!s_leader_alive(self))
            due = s_earlier(due, self->group_check_ms);
        else if (self->keeper_gone) /* noticed at the next pump */
            due = s_earlier(due, now_ms + 1);
        else if (!self->poll_status)
            due = s_earlier(due, now_ms + S_WAIT_POLL_MS);
    }
    int64_t ms = due - now_ms;
    return ms <= 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

bool fz_agent_done(fz_agent_t *self)
{
    return !self || self->state == FZ_AGENT_S_DONE;
}

void fz_agent_cancel(fz_agent_t *self, const char *reason)
{
    if (!self || self->state != FZ_AGENT_S_RUNNING)
        return;
    if (!reason || !*reason)
        reason = "cancelled";
    int64_t now = fz_agent_now_ms();
    if (self->simulated) {
        fz_sim_cancel(self, now, reason);
    } else
        s_stop(self, now, FZ_AGENT_CANCELLED, reason);
}

static int s_add_fd(struct pollfd *fds, int max, int n, int fd, short events)
{
    if (fd < 0 || n >= max)
        return n;
    fds[n].fd = fd;
    fds[n].events = events;
    fds[n].revents = 0;
    return n + 1;
}

int fz_agent_pollfds(fz_agent_t *self, struct pollfd *fds, int max)
{
    if (!self || self->simulated || self->state == FZ_AGENT_S_DONE || !fds)
        return 0;
    int n = s_add_fd(fds, max, 0, self->out_fd, POLLIN);
    if (self->prompt_off < self->prompt_len)
        n = s_add_fd(fds, max, n, self->in_fd, POLLOUT);
    if (s_leader_alive(self) && self->poll_status) /* readable for good at the end: do not
                                                      spin on it once the exit is known */
        n = s_add_fd(fds, max, n, self->keeper_gone ? -1 : self->keeper.ctl_fd, POLLIN);
    return n;
}

const fz_agent_status_t *fz_agent_status(fz_agent_t *self)
{
    return self ? &self->status : NULL;
}

int64_t fz_agent_idle_ms(fz_agent_t *self, int64_t now_ms)
{
    if (!self || self->state == FZ_AGENT_S_DONE || now_ms <= self->status.alive_ms)
        return 0;
    return now_ms - self->status.alive_ms;
}

const char *fz_agent_tail(fz_agent_t *self, size_t *len)
{
    if (!self) {
        if (len)
            *len = 0;
        return "";
    }
    size_t n = self->tail_len < self->tail_max ? self->tail_len : self->tail_max;
    if (len)
        *len = n;
    return self->tail + self->tail_len - n;
}

size_t fz_agent_take_new_output(fz_agent_t *self, char *buf, size_t max)
{
    if (!self || !buf || max == 0 || self->status.output_bytes == self->taken)
        return 0;
    uint64_t pending = self->status.output_bytes - self->taken;
    size_t held = pending < self->tail_len ? (size_t)pending : self->tail_len;
    size_t give = held, mlen = 0;
    char marker[64];
    if (held < pending || held > max) {
        /* Room for the marker with the largest count it could show. */
        size_t room = (size_t)snprintf(marker, sizeof marker,
                                       "\n[fz: %" PRIu64 " bytes of output skipped]\n", pending);
        if (max > room) {
            give = held < max - room ? held : max - room;
            mlen =
                (size_t)snprintf(marker, sizeof marker,
                                 "\n[fz: %" PRIu64 " bytes of output skipped]\n", pending - give);
        } else
            give = held < max ? held : max;
    }
    memcpy(buf, marker, mlen);
    memcpy(buf + mlen, self->tail + self->tail_len - give, give);
    self->taken = self->status.output_bytes;
    return mlen + give;
}

pid_t fz_agent_pid(fz_agent_t *self)
{
    return self ? self->pid : 0;
}

/* ---------------------------------------------------------------- destroy */

/* Kills what still runs and waits for it, boundedly: the caller is giving up on it. */
static void s_kill_and_wait(fz_agent_t *self)
{
    int64_t give_up = fz_agent_now_ms() + S_DESTROY_MAX_MS;
    if (self->state < FZ_AGENT_S_SWEEP) {
        if (self->state == FZ_AGENT_S_RUNNING) {
            self->status.stopping = true;
            self->stop_outcome = FZ_AGENT_CANCELLED;
            fz_strcopy(self->status.reason, sizeof self->status.reason, "destroyed");
        }
        s_signal_group(self, SIGKILL);
        if (s_leader_alive(self))
            self->state = FZ_AGENT_S_KILLING;
        else if (self->state == FZ_AGENT_S_LINGER)
            self->state = FZ_AGENT_S_ENDED;
        for (s_check_leader(self); s_leader_alive(self); s_check_leader(self)) {
            if (fz_agent_now_ms() >= give_up) {
                fz_warn("agent %d did not die after SIGKILL; leaving it", (int)self->pid);
                return;
            }
            s_sleep_ms(1);
        }
        s_finish(self, fz_agent_now_ms());
    }
    while (self->state == FZ_AGENT_S_SWEEP) {
        s_sweep_step(self, fz_agent_now_ms());
        if (self->state == FZ_AGENT_S_SWEEP)
            s_sleep_ms(1);
    }
}

void fz_agent_destroy(fz_agent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_agent_t *self = *self_p;
    if (!self->simulated && self->pid > 0)
        s_kill_and_wait(self);
    fz_agent_end(self);
    s_uncount(self);
    free(self->iobuf);
    free(self->tail);
    free(self->workdir);
    free(self->report_path);
    free(self->log_path);
    free(self->sim_summary);
    free(self);
    *self_p = NULL;
}
