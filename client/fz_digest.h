/*  fz_digest: the check-in: what happened since a time, in one screen (fz-ctl digest) or as
    JSON (fz-ctl digest --json, fz-web's digest page).

    Built from the broker's own requests only (status, budget, list, cost), so it says what
    the broker says: tasks that succeeded (summaries, branches) and failed (class, summary,
    the command to retry) since then, the tasks held, stalled, retrying or waiting now and
    why, cost by model, and the budget left. A section holds at most the 1000 newest tasks of
    its state (the list's limit); the counts say how many there are.

    fz_digest_parse_since is pure; fz_digest_build makes the requests. */

#ifndef FZ_DIGEST_H
#define FZ_DIGEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "fz_client.h"

/* "--since" as a unix time: a duration back from now ("90s", "30m", "1h", "2d", "1w",
   "1h30m"), a UTC date ("2026-12-01"), a UTC time ("2026-12-01T08:00", "...:30", "...Z",
   "2026-12-01 08:00"), a time of day today ("08:00", or yesterday's when that is still to
   come), or "@UNIX". False with err set (one line) when it is none of these or in the
   future. */
bool fz_digest_parse_since(const char *arg, double now, double *since, char *err, size_t errlen);

/* The digest since `since` (unix time) as a new JSON object (the caller owns it), or NULL
   with err set and *code_p the fz_err_t of the failed request. */
json_t *fz_digest_build(fz_client_t *client, double since, fz_err_t *code_p, char *err,
                        size_t errlen);

/* Prints the digest for people, at most `per_section` tasks in each section. */
void fz_digest_print(const json_t *digest, size_t per_section, FILE *out);

#endif
