/*  fz_spare: empty folders made ahead in fz-worker's work root while it is idle, and renamed
    into place as a task's folder (WORKROOT/TASK_ID) when its dispatch comes.

    Why: creating the task's folder was the worker's largest single cost per attempt on
    ext4 (inode allocation; without a journal it also walks recently freed inodes), and it
    sat on the path from dispatch to agent start. A rename within one folder allocates
    nothing. The folder an agent gets is the same as before: new, empty, made with mode 0777
    less the umask, at WORKROOT/TASK_ID (README's promise); only its times are those of its
    making.

    Owns: the spares it made or took back (at most FZ_SPARE_KEEP, named .fz-spare-PID-N in
    the root) and their names. A spare is used only by the process that made it; an empty one
   another process left (a killed worker) is removed by fz_spare_new; a spare that is not empty is
    never used nor removed. Nothing here is required: every failure falls back to mkdir. */

#ifndef FZ_SPARE_H
#define FZ_SPARE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define FZ_SPARE_KEEP 2 /* spares kept ready: one per attempt, one of slack */
#define FZ_SPARE_PREFIX ".fz-spare-"

typedef struct fz_spare_t fz_spare_t;

/* A pool for the folder root (which exists), with no spare made yet; leftover empty spares
   of other processes in root are removed. NULL on out of memory or a root path too long. */
fz_spare_t *fz_spare_new(const char *root);

/* Removes the spares still unused (rmdir), frees, nulls *self_p. NULL accepted. */
void fz_spare_destroy(fz_spare_t **self_p);

/* Renames a ready spare to ROOT/NAME (NAME: one path component), never over an existing
   entry. True if it did; false if no spare was ready, ROOT/NAME exists already, or the
   folder refused (then the caller makes the folder itself, as without spares). NULL: false. */
bool fz_spare_take(fz_spare_t *self, const char *name);

/* Takes ROOT/NAME back when the attempt left it empty, so that tasks that leave nothing
   leave no folder behind (a worker running a million silent commands would keep a million
   empty folders) and the next task's folder costs no inode: renamed to a new spare when
   fewer than FZ_SPARE_KEEP are ready and it still has the mode and owner a spare is made
   with, else removed. True if the folder went; false if it holds anything or is not a
   plain folder (it stays, as README promises), or on any failure. NULL: false. */
bool fz_spare_give_back(fz_spare_t *self, const char *name);

/* Makes spares until FZ_SPARE_KEEP are ready; call when the worker has nothing else to do.
   Returns how many it made (0 when full, or when the folder refuses them: then it stops
   trying; NULL: 0). */
int fz_spare_fill(fz_spare_t *self);

/* Spares ready now (0 for NULL). */
int fz_spare_ready(const fz_spare_t *self);

/* The name of this process's spare number n: FZ_SPARE_PREFIX "PID-N" into buf; false if it
   does not fit. Pure. */
bool fz_spare_name(pid_t pid, unsigned n, char *buf, size_t size);

/* The pid in a spare's name (FZ_SPARE_PREFIX "PID-N"), or 0 if name is not one. Pure. */
pid_t fz_spare_owner(const char *name);

#endif
