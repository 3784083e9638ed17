/*  fz_wsclean: at a worker's start, the worktrees a worker left behind in a cache (killed
    with SIGKILL, a crash, a power cut) are removed, and only those.

    A folder CACHE/worktrees/NAME is left behind when nobody holds the flock of its marker
    NAME.live and it is not marked NAME.kept (fz_workspace.h): each is removed with
    `git worktree remove --force` in the repository its .git file names (under that
    repository's lock), or, if git refuses, deleted together with its registration, which
    is checked to point back at that folder. Mirrors of the cache get `git worktree prune`
    (they are fz's own); a local repository's other worktrees, the user's, are never
    touched, nor its branches (a crashed attempt's branch keeps what the agent did). Markers
    whose folder is gone are deleted. Blocking; for the start-up, before the loop. */

#ifndef FZ_WSCLEAN_H
#define FZ_WSCLEAN_H

#include <stddef.h>

/* Cleans cache_dir as above; returns how many worktrees were removed (0 for a cache that
   does not exist yet). Says what it removed at info level. */
int fz_wsclean_run(const char *cache_dir);

#endif
