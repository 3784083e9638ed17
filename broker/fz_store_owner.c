/*  fz_store_owner: which key submitted a task (tasks.submitted_by); see fz_store.h.

    Its own file so that the owner, written after the insert of fz_store_task_add and read by
    the broker's permission check, stays apart from the task rows others change. */

#include <string.h>

#include "fz_store_int.h"

static const char *SQL_OWNER_SET = "UPDATE tasks SET submitted_by = ?2 WHERE id = ?1";
static const char *SQL_OWNER_GET = "SELECT submitted_by FROM tasks WHERE id = ?1";

int fz_store_task_set_owner(fz_store_t *self, uint64_t id, const char *user)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_OWNER_SET);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_TRANSIENT);
    return fz_sql_done(self, st);
}

int fz_store_task_owner(fz_store_t *self, uint64_t id, char *user, size_t size)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_OWNER_GET);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        fz_strcopy(user, size, text ? text : "");
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}
