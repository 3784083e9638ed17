/*  fz_store_keys: idempotency keys of submits (table submit_keys, see fz_store.h).

    A key row is written in the turn's transaction together with the tasks it names, so a
    key is stored if and only if its tasks are: a retried submit finds either both or
    neither. The row holds the ids as text ("12,13,14"): at most 1000 ids of a batch, read
    back only on a retry. */

#include "fz_store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *SQL_KEY_FIND =
    "SELECT tasks, state FROM submit_keys WHERE key = ?1 AND created >= ?2";
static const char *SQL_KEY_ADD = "INSERT OR REPLACE INTO submit_keys VALUES (?1, ?2, ?3, ?4)";
static const char *SQL_KEY_PRUNE = "DELETE FROM submit_keys WHERE created < ?1";

/* Parses "12,13,14" into ids (at most max); how many, or -1 if the text is not that. */
static long s_parse_ids(const char *text, uint64_t *ids, size_t max)
{
    size_t n = 0;
    const char *p = text;
    while (p && *p) {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || n == max || (*end && *end != ','))
            return -1;
        ids[n++] = v;
        p = *end ? end + 1 : end;
    }
    return (long)n;
}

int fz_store_key_find(fz_store_t *self, const char *key, double since, fz_store_key_t *out)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_KEY_FIND);
    if (!st)
        return -1;
    fz_sql_bind_text(st, 1, key);
    sqlite3_bind_double(st, 2, since);
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        long n = s_parse_ids(text ? text : "", out->ids, FZ_STORE_KEY_IDS);
        out->n = n > 0 ? (size_t)n : 0;
        out->state = sqlite3_column_int(st, 1);
        found = n > 0 ? 1 : -1;
    } else if (rc != SQLITE_DONE)
        found = -1;
    sqlite3_reset(st);
    return found;
}

int fz_store_key_add(fz_store_t *self, const char *key, double created, const uint64_t *ids,
                     size_t n, int state)
{
    /* 20 digits and a comma per id. */
    char *text = malloc(n * 21 + 1);
    sqlite3_stmt *st = text && !fz_sql_begin(self) ? fz_sql_stmt(self, SQL_KEY_ADD) : NULL;
    if (!st) {
        free(text);
        fz_store_fail_turn(self);
        return -1;
    }
    size_t used = 0;
    text[0] = 0;
    for (size_t i = 0; i < n; i++)
        used +=
            (size_t)snprintf(text + used, 22, "%s%llu", i ? "," : "", (unsigned long long)ids[i]);
    fz_sql_bind_text(st, 1, key);
    sqlite3_bind_double(st, 2, created);
    sqlite3_bind_text(st, 3, text, (int)used, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, state);
    free(text);
    return fz_sql_done(self, st);
}

int64_t fz_store_key_prune(fz_store_t *self, double before)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_KEY_PRUNE);
    if (!st)
        return -1;
    sqlite3_bind_double(st, 1, before);
    if (fz_sql_done(self, st))
        return -1;
    return sqlite3_changes(self->db);
}
