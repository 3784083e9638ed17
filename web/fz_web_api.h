/*  fz_web_api: what fz-web's JSON endpoints answer, each built from broker requests (a
    client per call: the HTTP threads share nothing but the hub and the stats).

    Every function makes its requests on `client` and returns a response: a status (200,
    or 400/404/409/502 mapped from the broker's error) and a malloc'd JSON body the caller
    frees ({"error": "...", "code": "..."} on failure). Bodies are the broker's replies
    without their envelope (v, type, rid), as fz-ctl --json prints them, so a page reads
    the same field names PROTOCOL.md gives. */

#ifndef FZ_WEB_API_H
#define FZ_WEB_API_H

#include <stddef.h>
#include <stdint.h>

#include "fz_client.h"

typedef struct {
    int status;
    char *body;
    size_t len;
} fz_web_resp_t;

/* The factory at a glance: {"status", "budget", "workers", "running" (list of the running
   tasks, the first 250), "recent" (the newest 100 tasks)}. */
fz_web_resp_t fz_web_api_overview(fz_client_t *client);
/* A task: {"task", "attempts", "children"} (get). */
fz_web_resp_t fz_web_api_task(fz_client_t *client, uint64_t id);
/* A list: state may be NULL, limit 1..100000, tail: the newest. */
fz_web_resp_t fz_web_api_list(fz_client_t *client, const char *state, uint64_t limit, bool tail);
/* cost by `by` (day, model, ...), since a YYYY-MM-DD date or NULL. */
fz_web_resp_t fz_web_api_cost(fz_client_t *client, const char *by, const char *since);
/* The digest (fz_digest) since "1h", a date... (NULL: 24h). */
fz_web_resp_t fz_web_api_digest(fz_client_t *client, const char *since);
/* A control: pause, resume, stop (id 0), cancel, retry, escalate (id of the task). 400 for
   another name. */
fz_web_resp_t fz_web_api_control(fz_client_t *client, const char *what, uint64_t id);

/* A response with a JSON error body. */
fz_web_resp_t fz_web_api_error(int status, const char *code, const char *message);

#endif
