/*  fz_store_recover: rebuilding a damaged store (fz-broker --recover); see fz_store.h.

    Why not SQLite's own recovery: its extension (the CLI's .recover) reads pages through the
    sqlite_dbpage virtual table, which Debian's libsqlite3 is built without ("no such table:
    sqlite_dbpage": `sqlite3 DB .recover` fails on every database on Debian 12), and the
    library does not export the extension either. So fz rebuilds its own tables logically:
    a new file gets fz's schema (fz_store_open), and every row of every fz table that SQLite
    can still read is copied over from the damaged file, opened read-only.

    Rows are read from the tables' own b-trees (NOT INDEXED: a damaged index, the usual
    damage, is never read; the new file's indexes are built afresh). A scan that meets a
    damaged page stops there; the table is then scanned again from its other end, so the
    rows on both sides of one damaged region are kept (INSERT OR IGNORE: the primary keys
    drop what both scans read). Rows between two damaged regions are lost, and counted. */

#include "fz_store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The tables of fz's schema (fz_store.c), each copied whole. */
static const char *const s_tables[] = {"tasks", "task_labels", "attempts",
                                       "meta",  "deps",        "submit_keys"};

typedef struct {
    long long rows;  /* copied */
    int damaged;     /* scans cut short by damage */
    long long tasks; /* rows of tasks */
    char first[200]; /* the first damage met */
} s_tally_t;

/* Writes the quoted names of the columns table has in both databases to cols ("" if the
   damaged one's schema cannot be read) and returns how many; order gets the columns its
   b-tree is ordered by (its primary key for a WITHOUT ROWID table, else rowid). */
static int s_columns(sqlite3 *old, sqlite3 *fresh, const char *table, char *cols, size_t size,
                     char *order, size_t osize)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT name, pk FROM pragma_table_info('%s') ORDER BY pk", table);
    sqlite3_stmt *a = NULL, *b = NULL;
    int n = 0;
    cols[0] = order[0] = 0;
    bool rowid = true;
    if (sqlite3_prepare_v2(old, sql, -1, &a, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(fresh, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &b,
                           NULL) == SQLITE_OK)
        while (sqlite3_step(a) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(a, 0);
            sqlite3_reset(b);
            sqlite3_bind_text(b, 1, table, -1, SQLITE_STATIC);
            sqlite3_bind_text(b, 2, name, -1, SQLITE_TRANSIENT);
            if (!name || sqlite3_step(b) != SQLITE_ROW)
                continue;
            size_t used = strlen(cols);
            snprintf(cols + used, size - used, "%s\"%s\"", n++ ? "," : "", name);
            if (sqlite3_column_int(a, 1) > 0) {
                used = strlen(order);
                snprintf(order + used, osize - used, "%s\"%s\"", *order ? "," : "", name);
            }
        }
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    /* A WITHOUT ROWID table is ordered by its primary key; the others by rowid. */
    snprintf(sql, sizeof sql,
             "SELECT 1 FROM sqlite_master WHERE name = '%s' AND sql LIKE "
             "'%%WITHOUT ROWID%%'",
             table);
    if (sqlite3_prepare_v2(old, sql, -1, &a, NULL) == SQLITE_OK && sqlite3_step(a) == SQLITE_ROW)
        rowid = false;
    sqlite3_finalize(a);
    if (rowid || !*order)
        snprintf(order, osize, "rowid");
    return n;
}

/* One scan of table in one direction, copying each row; false when damage stopped it. */
static bool s_scan(sqlite3 *old, sqlite3_stmt *ins, const char *table, const char *cols,
                   const char *order, const char *dir, int n, s_tally_t *t)
{
    char by[600] = "", sql[2600];
    /* order lists the key columns, comma-separated (names hold no comma): each gets dir. */
    for (const char *k = order; *k;) {
        size_t len = strcspn(k, ","), used = strlen(by);
        snprintf(by + used, sizeof by - used, "%s%.*s %s", used ? "," : "", (int)len, k, dir);
        k += len + (k[len] == ',');
    }
    snprintf(sql, sizeof sql, "SELECT %s FROM \"%s\" NOT INDEXED ORDER BY %s", cols, table, by);
    sqlite3_stmt *sel = NULL;
    int rc = sqlite3_prepare_v2(old, sql, -1, &sel, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        for (int i = 0; i < n; i++)
            sqlite3_bind_value(ins, i + 1, sqlite3_column_value(sel, i));
        if (sqlite3_step(ins) == SQLITE_DONE && sqlite3_changes(sqlite3_db_handle(ins)) > 0) {
            t->rows++;
            t->tasks += strcmp(table, "tasks") == 0;
        }
        sqlite3_reset(ins);
        rc = SQLITE_OK;
    }
    bool whole = rc == SQLITE_DONE;
    if (!whole && !*t->first)
        snprintf(t->first, sizeof t->first, "%s: %s", table, sqlite3_errmsg(old));
    sqlite3_finalize(sel);
    return whole;
}

static void s_copy_table(sqlite3 *old, sqlite3 *fresh, const char *table, s_tally_t *t)
{
    char cols[2048], order[400], sql[4200];
    int n = s_columns(old, fresh, table, cols, sizeof cols, order, sizeof order);
    if (n == 0) {
        t->damaged++;
        if (!*t->first)
            snprintf(t->first, sizeof t->first, "%s: its columns cannot be read", table);
        return;
    }
    char marks[600] = "";
    for (int i = 0; i < n && strlen(marks) + 3 < sizeof marks; i++)
        strcat(marks, i ? ",?" : "?");
    snprintf(sql, sizeof sql, "INSERT OR IGNORE INTO \"%s\" (%s) VALUES (%s)", table, cols, marks);
    sqlite3_stmt *ins = NULL;
    if (sqlite3_prepare_v2(fresh, sql, -1, &ins, NULL) != SQLITE_OK)
        return;
    if (!s_scan(old, ins, table, cols, order, "ASC", n, t)) {
        t->damaged++;
        s_scan(old, ins, table, cols, order, "DESC", n, t);
    }
    sqlite3_finalize(ins);
}

/* Writes what can be read of path into fresh (a new fz store); 0 or -1 with err. */
static int s_rebuild(const char *path, const char *fresh, s_tally_t *t, char *err, size_t errlen)
{
    fz_store_t *made = fz_store_open(fresh, true, err, errlen);
    if (!made)
        return -1;
    fz_store_destroy(&made);
    char lock[4300];
    snprintf(lock, sizeof lock, "%s.lock", fresh);
    unlink(lock);
    sqlite3 *old = NULL, *db = NULL;
    int rc = sqlite3_open_v2(path, &old, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_open_v2(fresh, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fz_errf(err, errlen, "cannot open %s: %s", rc == SQLITE_OK || !old ? fresh : path,
                sqlite3_errmsg(db ? db : old));
        sqlite3_close(db);
        sqlite3_close(old);
        return -1;
    }
    for (size_t i = 0; i < sizeof s_tables / sizeof *s_tables; i++)
        s_copy_table(old, db, s_tables[i], t);
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fz_errf(err, errlen, "cannot write %s: %s", fresh, sqlite3_errmsg(db));
    sqlite3_close(db);
    sqlite3_close(old);
    return rc == SQLITE_OK ? 0 : -1;
}

/* integrity_check of the rebuilt file; 0 or -1 with err. */
static int s_verify(const char *fresh, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char first[200] = "";
    if (sqlite3_open_v2(fresh, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check(3)", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(first, sizeof first, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (strcmp(first, "ok") != 0)
        return fz_errf(err, errlen, "the rebuilt database %s fails integrity_check (%s)", fresh,
                       *first ? first : "cannot be read");
    return 0;
}

/* Moves path (and its -wal, -shm) to aside (and aside-wal, aside-shm), then fresh to path. */
static int s_swap(const char *path, const char *fresh, const char *aside, char *err, size_t errlen)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char from[4400], to[4400];
        snprintf(from, sizeof from, "%s%s", path, suffixes[i]);
        snprintf(to, sizeof to, "%s%s", aside, suffixes[i]);
        if (rename(from, to) < 0 && (i == 0 || errno != ENOENT))
            return fz_errf(err, errlen, "cannot move %s to %s: %s", from, to, strerror(errno));
    }
    if (rename(fresh, path) < 0)
        return fz_errf(err, errlen, "cannot put %s in place of %s: %s (the damaged file is %s)",
                       fresh, path, strerror(errno), aside);
    return 0;
}

/* Holds path's lock file (no broker may use it meanwhile): its descriptor, or -1 with err. */
static int s_lock(const char *path, char *err, size_t errlen)
{
    char lock[4200];
    snprintf(lock, sizeof lock, "%s.lock", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
        return fd;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    return fz_errf(err, errlen, "%s: %s", lock,
                   saved == EWOULDBLOCK ? "another fz-broker uses this database: stop it first"
                                        : strerror(saved));
}

int fz_store_recover(const char *path, char *report, size_t reportlen, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
        return fz_errf(err, errlen, "%s: %s", path, errno ? strerror(errno) : "not a file");
    int lock_fd = s_lock(path, err, errlen);
    if (lock_fd < 0)
        return -1;
    char fresh[4200], aside[4300], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(fresh, sizeof fresh, "%s.recovering", path);
    snprintf(aside, sizeof aside, "%s.damaged-%s", path, stamp);
    static const char *const leftovers[] = {"", "-wal", "-shm", ".lock"};
    for (int i = 0; i < 4; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s%s", fresh, leftovers[i]);
        unlink(p);
    }
    s_tally_t t = {0};
    int rc = s_rebuild(path, fresh, &t, err, errlen);
    if (rc == 0)
        rc = s_verify(fresh, err, errlen);
    if (rc == 0)
        rc = s_swap(path, fresh, aside, err, errlen);
    if (rc != 0)
        unlink(fresh);
    else
        snprintf(report, reportlen,
                 "rebuilt %s: %lld tasks (%lld rows in all) read back; %d table scan%s cut short "
                 "by damage%s%s; the damaged file is kept as %s",
                 path, t.tasks, t.rows, t.damaged, t.damaged == 1 ? "" : "s", *t.first ? ": " : "",
                 t.first, aside);
    close(lock_fd);
    return rc;
}
