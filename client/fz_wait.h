/*  fz_wait: follows submitted tasks to their end, for `fz-submit --wait`.

    It subscribes to the broker's task events before the tasks are submitted (so no early
    event is missed), shows their progress on stderr, and asks the broker (`get`) for each
    task's state: on an end event at once, else every second (at most 50 asks a second however
    many tasks). The authority is the `get` reply, not the event: events may be dropped. Prints
    each task's final line (or its JSON object) on stdout when it ends.

    Owns its SUB socket and its list of tasks; the caller's fz_client_t is only used. */

#ifndef FZ_WAIT_H
#define FZ_WAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fz_client.h"

typedef struct fz_wait_t fz_wait_t;

/* Subscribed to `events`; json: final objects as JSON; quiet: no progress lines. NULL if the
   endpoint cannot be used (or no memory). */
fz_wait_t *fz_wait_new(const char *events, bool json, bool quiet);
void fz_wait_destroy(fz_wait_t **self_p);

/* Adds a task to follow. 0, or -1 on no memory. */
int fz_wait_add(fz_wait_t *self, uint64_t id);
size_t fz_wait_count(const fz_wait_t *self);

/* Follows every added task to its end; the worst exit code of theirs (README "Exit codes"),
   FZ_EXIT_UNAVAILABLE if the broker stops answering for a minute, FZ_EXIT_INTERRUPTED on
   SIGINT/SIGTERM (the tasks go on). */
int fz_wait_run(fz_wait_t *self, fz_client_t *client);

#endif
