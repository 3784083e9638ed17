/*  fz_report: broker replies and events as text for people (fz-ctl, fz-submit, fz-watch).

    Every function reads msgpack objects from a reply or an event and trusts none of their
    shape: a missing or mistyped field prints as its default. Output goes to the FILE given;
    text that came from the wire is escaped (fz_cli_oneline), so an agent's output cannot
    move the cursor or forge lines of ours. Nothing here allocates for the caller. */

#ifndef FZ_REPORT_H
#define FZ_REPORT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fz_event.h"

/* True for the states a task never leaves (succeeded, failed, cancelled, dep-failed). */
bool fz_report_state_final(const char *state);
/* True if `state` is one of the protocol's task states. */
bool fz_report_state_known(const char *state);
/* The protocol's task states, comma-separated, for help and error text. */
const char *fz_report_states(void);

/* Exit code (fz_cli.h) of a task in a final state: 0 succeeded, 1 failed or dep-failed,
   3 cancelled, 4 failed with a last attempt that timed out. -1 if not final. */
int fz_report_exit_code(const msgpack_object *task, const msgpack_object *attempts);

/* An attempt's or task's outcome as words: "exited 0", "signaled 9", "timeout", ... */
char *fz_report_outcome(const msgpack_object *obj, char *buf, size_t size);

/* One line on how a task ended: "task 12 succeeded (exited 0) after 1 attempt, 3.2s, $0.01". */
void fz_report_task_line(const msgpack_object *task, const msgpack_object *attempts, FILE *out);
/* Everything about a task from a `task` reply: fields, subtasks, each attempt (with the
   last out_lines lines of its output, 0 = all), summary, prompt. */
void fz_report_task(const msgpack_object *reply, size_t out_lines, FILE *out);
/* Tables and summaries of list / workers / status / budget / cost replies. */
void fz_report_tasks(const msgpack_object *tasks, uint64_t total, bool tree, FILE *out);
void fz_report_workers(const msgpack_object *workers, FILE *out);
void fz_report_status(const msgpack_object *status, FILE *out);
void fz_report_budget(const msgpack_object *budget, FILE *out);
void fz_report_cost(const msgpack_object *cost, const char *by, FILE *out);

/* The short details of an event ("attempt 1 on w1, pid 4242"; the worker only if
   with_worker), one line; text from the agent is cut to max characters. Returns buf. */
char *fz_report_event_details(const fz_event_t *event, size_t max, bool with_worker, char *buf,
                              size_t size);

#endif
