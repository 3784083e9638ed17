/*  fz_store_depth: how many unfinished tasks wait, run or are held, by model and by label,
    for autoscalers (`status { depth: true }`). See fz_store.h.

    One GROUP BY over the unfinished tasks (the tasks_state index finds them; the labels by
    their primary key): O(unfinished tasks), so it runs only when a status asks for it. */

#include "fz_store_int.h"

#include <stdio.h>
#include <string.h>

#define LIVE "('queued','held','retrying','waiting','running')"
static const char *SQL_DEPTH_MODEL = "SELECT model, state, COUNT(*) FROM tasks WHERE state IN " LIVE
                                     " GROUP BY model, state ORDER BY model";
static const char *SQL_DEPTH_LABEL =
    "SELECT l.key || '=' || l.value, t.state, COUNT(*) FROM task_labels l"
    " JOIN tasks t ON t.id = l.task WHERE t.state IN " LIVE " GROUP BY 1, 2 ORDER BY 1";

/* The column of fz_store_depth_t's counts a state goes to, or -1. */
static int s_slot(const char *state)
{
    static const char *const names[FZ_STORE_DEPTH_N] = {"queued", "held", "retrying", "waiting",
                                                        "running"};
    for (int i = 0; i < FZ_STORE_DEPTH_N; i++)
        if (strcmp(state, names[i]) == 0)
            return i;
    return -1;
}

int fz_store_depth(fz_store_t *self, bool by_label, size_t max_rows, fz_store_depth_fn *fn,
                   void *arg)
{
    sqlite3_stmt *st = fz_sql_stmt(self, by_label ? SQL_DEPTH_LABEL : SQL_DEPTH_MODEL);
    if (!st)
        return -1;
    fz_store_depth_t row = {{0}, {0}};
    size_t rows = 0;
    bool have = false, truncated = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        const char *state = (const char *)sqlite3_column_text(st, 1);
        key = key ? key : "";
        if (!have || strncmp(key, row.key, sizeof row.key - 1) != 0) {
            if (have)
                fn(arg, &row);
            if (rows == max_rows) {
                truncated = true;
                have = false;
                break;
            }
            memset(&row, 0, sizeof row);
            snprintf(row.key, sizeof row.key, "%s", key);
            have = true;
            rows++;
        }
        int slot = s_slot(state ? state : "");
        if (slot >= 0)
            row.counts[slot] += (uint64_t)sqlite3_column_int64(st, 2);
    }
    if (have)
        fn(arg, &row);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    return truncated ? 1 : 0;
}
