/*  fz_store_depth: how many unfinished tasks wait, run or are held, by label, for autoscalers
    (`status { depth: true }`; the broker counts by model in memory). See fz_store.h.

    One GROUP BY over the unfinished tasks' labels, walked from whichever side has fewer
    rows, so it runs only when a status asks for it. */

#include "fz_store_int.h"

#include <stdio.h>
#include <string.h>

#define LIVE "('queued','held','retrying','waiting','running')"
#define DEPTH_LABEL(join)                                                                          \
    "SELECT l.key || '=' || l.value, t.state, COUNT(*) FROM task_labels l " join                   \
    " tasks t ON t.id = l.task WHERE t.state IN " LIVE " GROUP BY 1, 2 ORDER BY 1"
/* SQLite has no statistics here and goes task first: one probe of the labels per unfinished
   task (90 ms with a million queued and no labels at all). CROSS JOIN keeps the labels the
   outer loop, for when they are the fewer. */
static const char *SQL_DEPTH_LABEL = DEPTH_LABEL("JOIN");
static const char *SQL_DEPTH_LABEL_FIRST = DEPTH_LABEL("CROSS JOIN");
/* How many label rows there are, counted up to ?1 only. */
static const char *SQL_LABELS_UP_TO = "SELECT COUNT(*) FROM (SELECT 1 FROM task_labels LIMIT ?1)";

/* Whether the store holds fewer label rows than live: -1 on a store error. */
static int s_labels_fewer(fz_store_t *self, uint64_t live)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_LABELS_UP_TO);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(live > INT64_MAX ? INT64_MAX : live));
    int rc = sqlite3_step(st);
    uint64_t n = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return rc != SQLITE_ROW ? -1 : n < live;
}

const fz_state_t fz_store_depth_states[FZ_STORE_DEPTH_N] = {
    FZ_STATE_QUEUED, FZ_STATE_HELD, FZ_STATE_RETRYING, FZ_STATE_WAITING, FZ_STATE_RUNNING};

int fz_store_depth_slot(int state)
{
    for (int i = 0; i < FZ_STORE_DEPTH_N; i++)
        if ((int)fz_store_depth_states[i] == state)
            return i;
    return -1;
}

int fz_store_depth_labels(fz_store_t *self, uint64_t live, size_t max_rows, fz_store_depth_fn *fn,
                          void *arg)
{
    int fewer = s_labels_fewer(self, live);
    if (fewer < 0)
        return -1;
    sqlite3_stmt *st = fz_sql_stmt(self, fewer ? SQL_DEPTH_LABEL_FIRST : SQL_DEPTH_LABEL);
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
        int slot = fz_store_depth_slot(state ? fz_state_from_name(state) : -1);
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
