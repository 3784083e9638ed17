/*  fz_sync: one fdatasync at a time of one file, run off the broker's loop.

    The loop commits a turn to SQLite's WAL without syncing it, hands the fdatasync of the
    WAL to this module, and goes on with its timers (heartbeats out) while the disk works;
    the turn's replies wait until the sync has ended (fz_broker_int.h, "held"). The sync is
    a job of an fz_bg runner (its thread, signals blocked there, and the descriptor the loop
    polls); the file descriptor stays the caller's.

    For tests, the environment variable FZ_STORE_SYNC_DELAY_MS makes every sync take that
    much longer (a stalling disk on demand). */

#ifndef FZ_SYNC_H
#define FZ_SYNC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct fz_sync_t fz_sync_t;

/* Starts the thread that syncs fd. NULL on failure (err says why). */
fz_sync_t *fz_sync_new(int fd, char *err, size_t errlen);
/* Waits for a sync under way, then ends the thread. */
void fz_sync_destroy(fz_sync_t **self_p);

/* Asks for one fdatasync of the file: everything written to it before this call is on the
   disk once it has ended. 0, or -1 when a sync is under way already (one at a time). */
int fz_sync_start(fz_sync_t *self);
/* True from fz_sync_start until fz_sync_end has taken the sync's outcome. */
bool fz_sync_busy(const fz_sync_t *self);
/* True when the sync under way has ended (fz_sync_end will not block). Reads the runner's
   descriptor while it has not: call it when that polled readable, or once a turn. */
bool fz_sync_ended(fz_sync_t *self);
/* Readable (poll) once the sync under way has ended. */
int fz_sync_fd(const fz_sync_t *self);
/* Takes the outcome of the sync under way, waiting for it to end if it has not: 0 when it
   reached the disk, else the errno of the failed fdatasync. *secs (may be NULL) gets how long
   it took. 0 when no sync was asked. */
int fz_sync_end(fz_sync_t *self, double *secs);

#endif
