/*  fz_store_int: what the store's own files share, and nothing else includes.

    The store (fz_store.h) is one object whose concerns live in separate files:
      fz_store.c        open (schema, migration, the lock), the turn's transaction, the
                        statement cache, meta settings, retention (purge)
      fz_store_write.c  writes of tasks, attempts and dependencies
      fz_store_read.c   what the broker's memory reads back (live tasks, models, graph, spent)
      fz_store_rows.c   the rows replies are built from (fz_store_rows.h)
      fz_store_keys.c   idempotency keys of submits
      fz_store_depth.c  queue depth by model and label (status for autoscalers)
      fz_store_recover.c  rebuilding a damaged database (fz-broker --recover)
    The SQL plumbing below (fz_sql_*) is theirs: a cached statement, the turn's transaction
    opened by the first write, a write run to completion. */

#ifndef FZ_STORE_INT_H
#define FZ_STORE_INT_H

#include <sqlite3.h>
#include <stdbool.h>

#include "fz_store.h"
#include "fz_util.h"

struct fz_store_t {
    sqlite3 *db;
    int lock_fd; /* PATH.lock, flock'ed: one broker per database */
    bool in_txn;
    bool failed; /* a write of this turn failed: the commit rolls the turn back */
    /* --sync full: SQLite commits without syncing (synchronous=NORMAL) and the store, or the
       broker's sync thread, fdatasyncs the WAL through this descriptor of its own. -1 with
       --sync normal. */
    int wal_fd;
    struct stmt {
        const char *sql; /* static string: cached by address */
        sqlite3_stmt *st;
    } * cache; /* every statement, prepared once (a few dozen: linear search) */
    int ncache, capcache;
};

/* The prepared statement for sql (a static string: cached by its address), reset and with
   no bindings; NULL on failure. The store keeps it. */
sqlite3_stmt *fz_sql_stmt(fz_store_t *self, const char *sql);
/* Opens the turn's transaction if it is not open; 0, or -1 when the turn already failed or
   BEGIN did (then nothing more is written this turn). */
int fz_sql_begin(fz_store_t *self);
/* Runs a write statement to completion; 0, or -1 (and the turn fails). */
int fz_sql_done(fz_store_t *self, sqlite3_stmt *st);
/* Binds a string (NULL as ""), copied. */
void fz_sql_bind_text(sqlite3_stmt *st, int i, const char *s);
/* Binds a string (NULL as "") without copying it: only for a write run by fz_sql_done before
   s goes away (SQLite reads the value while it steps; fz_sql_stmt drops the binding before
   the statement runs again). Writes bind a dozen strings each, and each copy is a malloc. */
void fz_sql_bind_text_now(sqlite3_stmt *st, int i, const char *s);

#endif
