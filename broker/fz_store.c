/*  fz_store: the store's core: opening the database (schema, migration, the one-broker lock),
    the turn's transaction (begin, commit, rollback), the statement cache, small settings
    (meta) and retention (purge). See fz_store.h; the other files share fz_store_int.h. */

#include "fz_store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FZ_STORE_SCHEMA 3 /* PRAGMA user_version of the tables below */
#define FZ_STR2(x) #x
#define FZ_STR(x) FZ_STR2(x)

/* The workspace columns (schema 3), here and in s_added below. */
#define TEXT0 " TEXT NOT NULL DEFAULT ''"
#define INT0 " INTEGER NOT NULL DEFAULT 0"
#define WS_TASK_COLS                                                                               \
    " repo" TEXT0 ", base" TEXT0 ", check_cmd" TEXT0 ", keep_worktree" INT0 ", best_of" INT0       \
    ", branch" TEXT0 ", head_commit" TEXT0
#define WS_ATTEMPT_COLS                                                                            \
    " branch" TEXT0 ", base_commit" TEXT0 ", head_commit" TEXT0 ", files" INT0 ", insertions" INT0 \
    ", deletions" INT0 ", check_status" TEXT0 ", check_exit" INT0 ", check_output BLOB"

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS tasks ("
    " id INTEGER PRIMARY KEY,"
    " state TEXT NOT NULL,"
    " priority INTEGER NOT NULL DEFAULT 0,"
    " model TEXT NOT NULL DEFAULT '',"
    " name TEXT NOT NULL DEFAULT '',"
    " prompt TEXT NOT NULL,"
    " timeout INTEGER NOT NULL DEFAULT 0,"
    " max_cost REAL NOT NULL DEFAULT 0,"
    " retries INTEGER NOT NULL DEFAULT 0,"
    " fallback BLOB, after BLOB, after_any BLOB,"
    " parent INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " created REAL NOT NULL, updated REAL NOT NULL,"
    " worker TEXT NOT NULL DEFAULT '',"
    " outcome TEXT NOT NULL DEFAULT '',"
    " exit_code INTEGER NOT NULL DEFAULT 0,"
    " cost_usd REAL NOT NULL DEFAULT 0,"
    " tokens_in INTEGER NOT NULL DEFAULT 0,"
    " tokens_out INTEGER NOT NULL DEFAULT 0,"
    " summary TEXT NOT NULL DEFAULT '',"
    " hold_reason TEXT NOT NULL DEFAULT '',"
    " deadline REAL NOT NULL DEFAULT 0,"
    " attempt_base INTEGER NOT NULL DEFAULT 0,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0,"
    " class TEXT NOT NULL DEFAULT '',"
    " tokens_cache_read INTEGER NOT NULL DEFAULT 0,"
    " tokens_cache_write INTEGER NOT NULL DEFAULT 0,"
    " stall INTEGER NOT NULL DEFAULT 0, stall_kill INTEGER NOT NULL DEFAULT 0,"
    " not_before REAL NOT NULL DEFAULT 0," WS_TASK_COLS ","
    " submitted_by TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);"
    "CREATE TABLE IF NOT EXISTS task_labels ("
    " task INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (task, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS attempts ("
    " task INTEGER NOT NULL, n INTEGER NOT NULL,"
    " worker TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',"
    " started REAL NOT NULL DEFAULT 0, ended REAL NOT NULL DEFAULT 0,"
    " outcome TEXT NOT NULL DEFAULT 'running',"
    " exit_code INTEGER NOT NULL DEFAULT 0, signal INTEGER NOT NULL DEFAULT 0,"
    " duration_ms INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,"
    " tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0,"
    " summary TEXT NOT NULL DEFAULT '', output BLOB, log TEXT NOT NULL DEFAULT '',"
    " reserved REAL NOT NULL DEFAULT 0,"
    " class TEXT NOT NULL DEFAULT '', reset_at REAL NOT NULL DEFAULT 0,"
    " tokens_cache_read INTEGER NOT NULL DEFAULT 0,"
    " tokens_cache_write INTEGER NOT NULL DEFAULT 0," WS_ATTEMPT_COLS ","
    " charged REAL," /* NULL: charged as reported; else a suspect cost held to this */
    " PRIMARY KEY (task, n)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS attempts_ended ON attempts(ended);"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS deps ("
    " task INTEGER NOT NULL, dep INTEGER NOT NULL, kind INTEGER NOT NULL,"
    " PRIMARY KEY (task, dep)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS deps_dep ON deps(dep);"
    "CREATE INDEX IF NOT EXISTS tasks_parent ON tasks(parent);"
    /* Idempotency keys of submits (fz_store_keys.c); forgotten after the broker's TTL. */
    "CREATE TABLE IF NOT EXISTS submit_keys (key TEXT PRIMARY KEY, created REAL NOT NULL,"
    " tasks TEXT NOT NULL, state INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS submit_keys_created ON submit_keys(created);";

/* Columns added after schema 1, for databases made before them (CREATE TABLE IF NOT EXISTS
   leaves an existing table as it is). */
static const struct {
    const char *table, *column, *decl;
} s_added[] = {
    {"tasks", "class", "TEXT NOT NULL DEFAULT ''"},
    {"tasks", "tokens_cache_read", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "tokens_cache_write", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "stall", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "stall_kill", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "not_before", "REAL NOT NULL DEFAULT 0"},
    {"tasks", "submitted_by", "TEXT NOT NULL DEFAULT ''"},
    {"attempts", "class", "TEXT NOT NULL DEFAULT ''"},
    {"attempts", "reset_at", "REAL NOT NULL DEFAULT 0"},
    {"attempts", "tokens_cache_read", "INTEGER NOT NULL DEFAULT 0"},
    {"attempts", "tokens_cache_write", "INTEGER NOT NULL DEFAULT 0"},
    {"tasks", "repo", TEXT0},
    {"tasks", "base", TEXT0},
    {"tasks", "check_cmd", TEXT0},
    {"tasks", "keep_worktree", INT0},
    {"tasks", "best_of", INT0},
    {"tasks", "branch", TEXT0},
    {"tasks", "head_commit", TEXT0},
    {"attempts", "branch", TEXT0},
    {"attempts", "base_commit", TEXT0},
    {"attempts", "head_commit", TEXT0},
    {"attempts", "files", INT0},
    {"attempts", "insertions", INT0},
    {"attempts", "deletions", INT0},
    {"attempts", "check_status", TEXT0},
    {"attempts", "check_exit", INT0},
    {"attempts", "check_output", "BLOB"},
    {"attempts", "charged", "REAL"},
};

static bool s_has_column(sqlite3 *db, const char *table, const char *column)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT 1 FROM pragma_table_info('%s') WHERE name = ?1", table);
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, column, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

/* Brings an older database (schema 1 or 2) up to this one. */
static int s_migrate(sqlite3 *db)
{
    for (size_t i = 0; i < sizeof s_added / sizeof *s_added; i++) {
        if (s_has_column(db, s_added[i].table, s_added[i].column))
            continue;
        char sql[160];
        snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", s_added[i].table,
                 s_added[i].column, s_added[i].decl);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- plumbing (fz_store_int.h) */

sqlite3_stmt *fz_sql_stmt(fz_store_t *self, const char *sql)
{
    for (int i = 0; i < self->ncache; i++)
        if (self->cache[i].sql == sql) {
            sqlite3_reset(self->cache[i].st);
            sqlite3_clear_bindings(self->cache[i].st);
            return self->cache[i].st;
        }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(self->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        fz_error("store: cannot prepare: %s", sqlite3_errmsg(self->db));
        return NULL;
    }
    if (self->ncache == self->capcache) {
        int cap = self->capcache ? self->capcache * 2 : 64;
        struct stmt *more = realloc(self->cache, (size_t)cap * sizeof *more);
        if (!more) {
            sqlite3_finalize(st);
            return NULL;
        }
        self->cache = more;
        self->capcache = cap;
    }
    self->cache[self->ncache].sql = sql;
    self->cache[self->ncache++].st = st;
    return st;
}

/* Runs a cached statement that returns no rows; SQLite's result code. */
static int s_run(fz_store_t *self, const char *sql)
{
    sqlite3_stmt *st = fz_sql_stmt(self, sql);
    if (!st)
        return SQLITE_ERROR;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Prepared once: they run every loop turn. */
static const char *SQL_BEGIN = "BEGIN IMMEDIATE";
static const char *SQL_COMMIT = "COMMIT";

int fz_sql_begin(fz_store_t *self)
{
    /* After a failed write SQLite may have rolled the transaction back by itself; a later
       write would then autocommit. Nothing more is written in a failed turn. */
    if (self->failed)
        return -1;
    if (self->in_txn)
        return 0;
    if (s_run(self, SQL_BEGIN) != SQLITE_OK) {
        fz_error("store: BEGIN failed: %s", sqlite3_errmsg(self->db));
        self->failed = true;
        return -1;
    }
    self->in_txn = true;
    return 0;
}

/* Runs a write statement to completion; 0 or -1. */
int fz_sql_done(fz_store_t *self, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        fz_error("store: write failed: %s", sqlite3_errmsg(self->db));
        self->failed = true;
        return -1;
    }
    return 0;
}

void fz_sql_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

void fz_sql_bind_text_now(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* A file where a database should be that cannot be one: empty, or shorter than one page
   (a truncated copy). A missing file is fine: a new store is made. */
static bool s_truncated(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size >= 512)
        return false;
    snprintf(err, errlen,
             "database %s is %s (%lld bytes): not an fz database. Restore it from a backup "
             "(fz-ctl backup), or move it away to start with an empty store",
             path, st.st_size == 0 ? "an empty file" : "truncated", (long long)st.st_size);
    return true;
}

/* SQLite's quick_check (or with full, integrity_check: it also compares every index with
   its table, O(N log N)) on an existing store: damage is refused at start, never served
   quietly (a damaged index loses tasks without a word). */
static bool s_damaged(sqlite3 *db, const char *path, bool full, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    char first[200] = "";
    const char *check = full ? "PRAGMA integrity_check(3)" : "PRAGMA quick_check(3)";
    if (sqlite3_prepare_v2(db, check, -1, &st, NULL) != SQLITE_OK) {
        snprintf(first, sizeof first, "%s", sqlite3_errmsg(db));
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            snprintf(first, sizeof first, "%s", (const char *)sqlite3_column_text(st, 0));
        else
            snprintf(first, sizeof first, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    if (strcmp(first, "ok") == 0)
        return false;
    snprintf(err, errlen,
             "database %s is damaged (SQLite %s: %s). fz will not serve it: restore it "
             "from a backup (fz-ctl backup), or rescue what SQLite can read with "
             "`fz-broker --db %s --recover` (it keeps the damaged file)",
             path, full ? "integrity_check" : "quick_check", first, path);
    return true;
}

fz_store_t *fz_store_open(const char *path, bool sync_full, char *err, size_t errlen)
{
    return fz_store_open_checked(path, sync_full, false, err, errlen);
}

/* --sync full: a descriptor of the WAL (SQLite made it when it switched to WAL mode) for the
   store's own syncs, and its folder synced once, so that the file a sync writes to is found
   after a power loss (SQLite syncs the folder with the WAL's first sync under FULL). The
   WAL keeps its inode while the database is open: SQLite resets it after a checkpoint by
   writing over it, and deletes it only when the last connection closes. */
static int s_open_wal(fz_store_t *self, const char *path, char *err, size_t errlen)
{
    char wal[4096];
    if ((size_t)snprintf(wal, sizeof wal, "%s-wal", path) >= sizeof wal)
        return fz_errf(err, errlen, "database path too long: %s", path);
    self->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (self->wal_fd < 0)
        return fz_errf(err, errlen, "cannot open %s: %s", wal, strerror(errno));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return fz_errf(err, errlen, "cannot sync folder %s: %s", dir, strerror(e));
    }
    close(dfd);
    return 0;
}

fz_store_t *fz_store_open_checked(const char *path, bool sync_full, bool full_check, char *err,
                                  size_t errlen)
{
    if (s_truncated(path, err, errlen))
        return NULL;
    fz_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->wal_fd = -1;
    /* Two brokers on one database would both dispatch its tasks: the second is refused. */
    char lock[4096];
    snprintf(lock, sizeof lock, "%s.lock", path);
    self->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0 || flock(self->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "%s: %s", lock,
                 self->lock_fd >= 0 && errno == EWOULDBLOCK ? "another fz-broker uses this database"
                                                            : strerror(errno));
        if (self->lock_fd >= 0)
            close(self->lock_fd);
        free(self);
        return NULL;
    }
    /* SQLite's memory statistics take a global mutex around each of its allocations (about
       190 per task); nothing here reads them. Only possible before SQLite initialises. */
    static bool configured;
    if (!configured) {
        configured = true;
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &self->db, flags, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(self->db, 5000);
    /* synchronous=NORMAL syncs the WAL before each checkpoint and the database after it, as
       FULL does; what FULL adds, a sync of the WAL at each commit, the store does itself
       (fz_store_sync), so that the broker can run it beside its loop (fz_sync.h). */
    if (sqlite3_exec(self->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                     "PRAGMA foreign_keys=OFF;",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    /* The schema's version: a database of a newer fz is refused rather than misread; a
       future schema change migrates from the version found here. */
    sqlite3_stmt *ver = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(self->db, "PRAGMA user_version", -1, &ver, NULL) == SQLITE_OK &&
        sqlite3_step(ver) == SQLITE_ROW)
        version = sqlite3_column_int(ver, 0);
    sqlite3_finalize(ver);
    if (version > FZ_STORE_SCHEMA) {
        snprintf(err, errlen, "database %s has schema version %d; this fz knows up to %d", path,
                 version, FZ_STORE_SCHEMA);
        fz_store_destroy(&self);
        return NULL;
    }
    if (version >= 1 && s_damaged(self->db, path, full_check, err, errlen)) {
        fz_store_destroy(&self);
        return NULL;
    }
    if (sqlite3_exec(self->db, s_schema, NULL, NULL, NULL) != SQLITE_OK || s_migrate(self->db) ||
        sqlite3_exec(self->db, "PRAGMA user_version = " FZ_STR(FZ_STORE_SCHEMA), NULL, NULL,
                     NULL) != SQLITE_OK)
        goto fail;
    if (sync_full && s_open_wal(self, path, err, errlen)) {
        fz_store_destroy(&self);
        return NULL;
    }
    /* Failure seam for tests: a database that cannot grow past N pages acts as a full disk. */
    const char *pages = getenv("FZ_STORE_MAX_PAGES");
    if (pages && *pages) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%d", atoi(pages));
        sqlite3_exec(self->db, sql, NULL, NULL, NULL);
    }
    return self;
fail:
    snprintf(err, errlen, "cannot open database %s: %s", path,
             self->db ? sqlite3_errmsg(self->db) : "out of memory");
    fz_store_destroy(&self);
    return NULL;
}

void fz_store_destroy(fz_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fz_store_t *self = *self_p;
    if (self->in_txn)
        fz_store_commit(self);
    for (int i = 0; i < self->ncache; i++)
        sqlite3_finalize(self->cache[i].st);
    free(self->cache);
    sqlite3_close(self->db);
    if (self->wal_fd >= 0)
        close(self->wal_fd);
    if (self->lock_fd >= 0)
        close(self->lock_fd);
    free(self);
    *self_p = NULL;
}

void fz_store_fail_turn(fz_store_t *self)
{
    self->failed = true;
}

bool fz_store_in_turn(const fz_store_t *self)
{
    return self->in_txn;
}

int fz_store_commit(fz_store_t *self)
{
    bool wrote = self->in_txn;
    if (fz_store_commit_unsynced(self))
        return -1;
    return wrote ? fz_store_sync(self) : 0;
}

int fz_store_sync(fz_store_t *self)
{
    if (self->wal_fd < 0)
        return 0;
    int err = fz_fdatasync(self->wal_fd);
    if (err) {
        fz_error("store: fdatasync of the WAL failed: %s", strerror(err));
        return -1;
    }
    return 0;
}

int fz_store_wal_fd(const fz_store_t *self)
{
    return self->wal_fd;
}

bool fz_store_failed(const fz_store_t *self)
{
    return self->failed;
}

int fz_store_commit_unsynced(fz_store_t *self)
{
    if (self->failed) {
        fz_store_rollback(self);
        return -1;
    }
    if (!self->in_txn)
        return 0;
    int rc = s_run(self, SQL_COMMIT);
    if (rc != SQLITE_OK) {
        fz_error("store: COMMIT failed: %s", sqlite3_errmsg(self->db));
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        self->in_txn = false;
        return -1;
    }
    self->in_txn = false;
    return 0;
}

void fz_store_rollback(fz_store_t *self)
{
    if (self->in_txn)
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
    self->in_txn = false;
    self->failed = false;
}

const char *fz_store_error(fz_store_t *self)
{
    return sqlite3_errmsg(self->db);
}

/* ---------------------------------------------------------------- settings */

static const char *SQL_META_GET = "SELECT value FROM meta WHERE key = ?1";
static const char *SQL_META_SET = "INSERT OR REPLACE INTO meta VALUES (?1, ?2)";

double fz_store_meta_get(fz_store_t *self, const char *key, double dflt)
{
    sqlite3_stmt *st = fz_sql_stmt(self, SQL_META_GET);
    if (!st)
        return dflt;
    fz_sql_bind_text(st, 1, key);
    double v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_double(st, 0) : dflt;
    sqlite3_reset(st);
    return v;
}

int fz_store_meta_set(fz_store_t *self, const char *key, double value)
{
    sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, SQL_META_SET);
    if (!st)
        return -1;
    fz_sql_bind_text(st, 1, key);
    sqlite3_bind_double(st, 2, value);
    return fz_sql_done(self, st);
}

/* ---------------------------------------------------------------- retention */

/* Ended before ?1, and nothing live needs it (as a dependency or as a parent). */
#define PURGE_COND                                                                                 \
    "state IN ('succeeded','failed','cancelled','dep-failed') AND updated < ?1"                    \
    " AND NOT EXISTS (SELECT 1 FROM deps d JOIN tasks l ON l.id = d.task WHERE d.dep = tasks.id"   \
    " AND l.state NOT IN ('succeeded','failed','cancelled','dep-failed'))"                         \
    " AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent = tasks.id"                             \
    " AND c.state NOT IN ('succeeded','failed','cancelled','dep-failed'))"
static const char *SQL_PURGE_ATTEMPTS =
    "DELETE FROM attempts WHERE task IN (SELECT id FROM tasks WHERE " PURGE_COND ")";
static const char *SQL_PURGE_LABELS =
    "DELETE FROM task_labels WHERE task IN (SELECT id FROM tasks WHERE " PURGE_COND ")";
static const char *SQL_PURGE_DEPS =
    "DELETE FROM deps WHERE task IN (SELECT id FROM tasks WHERE " PURGE_COND ")";
static const char *SQL_PURGE_TASKS = "DELETE FROM tasks WHERE " PURGE_COND;

int64_t fz_store_purge(fz_store_t *self, double before)
{
    const char *steps[] = {SQL_PURGE_ATTEMPTS, SQL_PURGE_LABELS, SQL_PURGE_DEPS, SQL_PURGE_TASKS};
    for (int i = 0; i < 4; i++) {
        sqlite3_stmt *st = fz_sql_begin(self) ? NULL : fz_sql_stmt(self, steps[i]);
        if (!st)
            return -1;
        sqlite3_bind_double(st, 1, before);
        if (fz_sql_done(self, st))
            return -1;
    }
    return sqlite3_changes(self->db);
}

/* Copies the committed database at `from` into `to` (a new file). */
static int s_copy_db(const char *from, const char *to, char *err, size_t errlen)
{
    sqlite3 *src = NULL, *dst = NULL;
    int rc = sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    sqlite3_backup *b = rc == SQLITE_OK ? sqlite3_backup_init(dst, "main", src, "main") : NULL;
    if (b) {
        rc = sqlite3_backup_step(b, -1);
        rc = sqlite3_backup_finish(b) == SQLITE_OK && rc == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    } else if (rc == SQLITE_OK)
        rc = SQLITE_ERROR;
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot write a backup to %s: %s", to,
                 dst   ? sqlite3_errmsg(dst)
                 : src ? sqlite3_errmsg(src)
                       : "out of memory");
    sqlite3_close(dst);
    sqlite3_close(src);
    return rc == SQLITE_OK ? 0 : -1;
}

int64_t fz_store_backup(fz_store_t *self, const char *path, char *err, size_t errlen)
{
    const char *db = sqlite3_db_filename(self->db, "main");
    char real_db[4096], tmp[4200];
    struct stat st;
    if (db && realpath(db, real_db) && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        char real_to[4096];
        if (realpath(path, real_to) && strcmp(real_db, real_to) == 0) {
            snprintf(err, errlen, "%s is the database itself: choose another file", path);
            return -2;
        }
    }
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    unlink(tmp);
    if (!db || s_copy_db(db, tmp, err, errlen) < 0 || stat(tmp, &st) != 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot put the backup at %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return (int64_t)st.st_size;
}
