/*  fz_store: SQLite persistence of tasks, attempts and settings; see fz_store.h. */

#include "fz_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define FZ_STORE_SCHEMA 2 /* PRAGMA user_version of the tables below */
#define FZ_STR2(x) #x
#define FZ_STR(x) FZ_STR2(x)

struct fz_store_t {
    sqlite3 *db;
    int lock_fd; /* PATH.lock, flock'ed: one broker per database */
    bool in_txn;
    bool failed; /* a write of this turn failed: the commit rolls the turn back */
    struct stmt {
        const char *sql; /* static string: cached by address */
        sqlite3_stmt *st;
    } * cache; /* every statement, prepared once (a few dozen: linear search) */
    int ncache, capcache;
};

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
    " not_before REAL NOT NULL DEFAULT 0);"
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
    " tokens_cache_write INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (task, n)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS attempts_ended ON attempts(ended);"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS deps ("
    " task INTEGER NOT NULL, dep INTEGER NOT NULL, kind INTEGER NOT NULL,"
    " PRIMARY KEY (task, dep)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS deps_dep ON deps(dep);"
    "CREATE INDEX IF NOT EXISTS tasks_parent ON tasks(parent);";

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
    {"attempts", "class", "TEXT NOT NULL DEFAULT ''"},
    {"attempts", "reset_at", "REAL NOT NULL DEFAULT 0"},
    {"attempts", "tokens_cache_read", "INTEGER NOT NULL DEFAULT 0"},
    {"attempts", "tokens_cache_write", "INTEGER NOT NULL DEFAULT 0"},
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

/* Brings a schema-1 database up to this one. */
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

/* ---------------------------------------------------------------- plumbing */

static sqlite3_stmt *s_stmt(fz_store_t *self, const char *sql)
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
    sqlite3_stmt *st = s_stmt(self, sql);
    if (!st)
        return SQLITE_ERROR;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* Prepared once: they run every loop turn. */
static const char *SQL_BEGIN = "BEGIN IMMEDIATE";
static const char *SQL_COMMIT = "COMMIT";

static int s_begin(fz_store_t *self)
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
static int s_done(fz_store_t *self, sqlite3_stmt *st)
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

static void s_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

/* A msgpack object as a blob column (NULL when absent). */
static void s_bind_obj(sqlite3_stmt *st, int i, const msgpack_object *o)
{
    if (!o) {
        sqlite3_bind_null(st, i);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *o);
    sqlite3_bind_blob(st, i, sb.data, (int)sb.size, SQLITE_TRANSIENT);
    msgpack_sbuffer_destroy(&sb);
}

fz_store_t *fz_store_open(const char *path, bool sync_full, char *err, size_t errlen)
{
    fz_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
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
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &self->db, flags, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(self->db, 5000);
    char pragmas[160];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF;",
             sync_full ? "FULL" : "NORMAL");
    if (sqlite3_exec(self->db, pragmas, NULL, NULL, NULL) != SQLITE_OK)
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
    if (sqlite3_exec(self->db, s_schema, NULL, NULL, NULL) != SQLITE_OK || s_migrate(self->db) ||
        sqlite3_exec(self->db, "PRAGMA user_version = " FZ_STR(FZ_STORE_SCHEMA), NULL, NULL,
                     NULL) != SQLITE_OK)
        goto fail;
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
    if (self->lock_fd >= 0)
        close(self->lock_fd);
    free(self);
    *self_p = NULL;
}

void fz_store_fail_turn(fz_store_t *self)
{
    self->failed = true;
}

int fz_store_commit(fz_store_t *self)
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

/* ---------------------------------------------------------------- writes */

static const char *SQL_TASK_ADD =
    "INSERT INTO tasks (state, priority, model, name, prompt, timeout, max_cost, retries,"
    " parent, fallback, after, after_any, created, updated, deadline, summary, stall, stall_kill)"
    " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?13,?14,?15,?16,?17)";

static const char *SQL_LABEL_ADD = "INSERT OR REPLACE INTO task_labels VALUES (?1, ?2, ?3)";

static int s_add_labels(fz_store_t *self, uint64_t id, const msgpack_object *labels)
{
    if (!labels || labels->type != MSGPACK_OBJECT_MAP)
        return 0;
    for (uint32_t i = 0; i < labels->via.map.size; i++) {
        const msgpack_object *k = &labels->via.map.ptr[i].key, *v = &labels->via.map.ptr[i].val;
        sqlite3_stmt *st = s_stmt(self, SQL_LABEL_ADD);
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_text(st, 2, k->via.str.ptr, (int)k->via.str.size, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, v->via.str.ptr, (int)v->via.str.size, SQLITE_TRANSIENT);
        if (s_done(self, st))
            return -1;
    }
    return 0;
}

static const char *SQL_LABEL_INHERIT =
    "INSERT OR IGNORE INTO task_labels SELECT ?1, key, value FROM task_labels WHERE task = ?2";

/* A subtask takes its parent's labels where it has none of its own. */
static int s_inherit_labels(fz_store_t *self, uint64_t id, uint64_t parent)
{
    sqlite3_stmt *st = s_stmt(self, SQL_LABEL_INHERIT);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)parent);
    return s_done(self, st);
}

uint64_t fz_store_task_add(fz_store_t *self, const fz_store_newtask_t *t)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_TASK_ADD);
    if (!st)
        return 0;
    s_bind_text(st, 1, fz_state_name(t->state));
    sqlite3_bind_int64(st, 2, t->priority);
    s_bind_text(st, 3, t->model);
    s_bind_text(st, 4, t->name);
    sqlite3_bind_text(st, 5, t->prompt, (int)t->prompt_len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, t->timeout);
    sqlite3_bind_double(st, 7, t->max_cost);
    sqlite3_bind_int64(st, 8, t->retries);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)t->parent);
    s_bind_obj(st, 10, t->fallback);
    s_bind_obj(st, 11, t->after);
    s_bind_obj(st, 12, t->after_any);
    sqlite3_bind_double(st, 13, fz_wall());
    sqlite3_bind_double(st, 14, t->deadline);
    s_bind_text(st, 15, t->summary);
    sqlite3_bind_int64(st, 16, t->stall);
    sqlite3_bind_int64(st, 17, t->stall_kill);
    if (s_done(self, st))
        return 0;
    uint64_t id = (uint64_t)sqlite3_last_insert_rowid(self->db);
    if (s_add_labels(self, id, t->labels))
        return 0;
    if (t->parent && s_inherit_labels(self, id, t->parent))
        return 0;
    return id;
}

static const char *SQL_TASK_STATE =
    "UPDATE tasks SET state = ?2, hold_reason = ?3, updated = ?4 WHERE id = ?1";

int fz_store_task_state(fz_store_t *self, uint64_t id, fz_state_t state, const char *reason)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_TASK_STATE);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    s_bind_text(st, 2, fz_state_name(state));
    s_bind_text(st, 3, reason);
    sqlite3_bind_double(st, 4, fz_wall());
    return s_done(self, st);
}

static const char *SQL_TASK_MODEL = "SELECT model, fallback FROM tasks WHERE id = ?1";

int fz_store_task_model(fz_store_t *self, uint64_t id, uint32_t n, char *model)
{
    sqlite3_stmt *st = s_stmt(self, SQL_TASK_MODEL);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(model, 65, "%s", (const char *)sqlite3_column_text(st, 0));
        const void *blob = sqlite3_column_blob(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        if (n > 1 && blob && msgpack_unpack_next(&up, blob, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
            up.data.type == MSGPACK_OBJECT_ARRAY && up.data.via.array.size > 0) {
            uint32_t k = n - 2 < up.data.via.array.size ? n - 2 : up.data.via.array.size - 1;
            const msgpack_object *m = &up.data.via.array.ptr[k];
            if (m->type == MSGPACK_OBJECT_STR && m->via.str.size <= 64) {
                memcpy(model, m->via.str.ptr, m->via.str.size);
                model[m->via.str.size] = 0;
            }
        }
        msgpack_unpacked_destroy(&up);
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}

static const char *SQL_TASK_NOT_BEFORE = "UPDATE tasks SET not_before = ?2 WHERE id = ?1";

int fz_store_task_not_before(fz_store_t *self, uint64_t id, double not_before)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_TASK_NOT_BEFORE);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_double(st, 2, not_before);
    return s_done(self, st);
}

static const char *SQL_TASK_PRIORITY = "UPDATE tasks SET priority = ?2, updated = ?3 WHERE id = ?1";

int fz_store_task_priority(fz_store_t *self, uint64_t id, int64_t priority)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_TASK_PRIORITY);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, priority);
    sqlite3_bind_double(st, 3, fz_wall());
    return s_done(self, st);
}

static const char *SQL_TASK_FLAGS =
    "UPDATE tasks SET attempt_base = ?2, cancel_requested = ?3 WHERE id = ?1";

int fz_store_task_flags(fz_store_t *self, uint64_t id, uint32_t attempt_base, bool cancel)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_TASK_FLAGS);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, attempt_base);
    sqlite3_bind_int(st, 3, cancel);
    return s_done(self, st);
}

static const char *SQL_ATTEMPT_START =
    "INSERT OR REPLACE INTO attempts (task, n, worker, model, started, reserved)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char *SQL_TASK_RUNNING =
    "UPDATE tasks SET state = 'running', hold_reason = '', attempts = ?2, worker = ?3,"
    " updated = ?4 WHERE id = ?1";

int fz_store_attempt_start(fz_store_t *self, uint64_t id, uint32_t n, const char *worker,
                           const char *model, double reserved)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_ATTEMPT_START);
    if (!st)
        return -1;
    double now = fz_wall();
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    s_bind_text(st, 3, worker);
    s_bind_text(st, 4, model);
    sqlite3_bind_double(st, 5, now);
    sqlite3_bind_double(st, 6, reserved);
    if (s_done(self, st) || !(st = s_stmt(self, SQL_TASK_RUNNING)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    s_bind_text(st, 3, worker);
    sqlite3_bind_double(st, 4, now);
    return s_done(self, st);
}

static const char *SQL_ATTEMPT_FINISH =
    "UPDATE attempts SET ended = ?3, outcome = ?4, exit_code = ?5, signal = ?6,"
    " duration_ms = ?7, cost_usd = ?8, tokens_in = ?9, tokens_out = ?10,"
    " model = CASE WHEN ?11 = '' THEN model ELSE ?11 END, summary = ?12, output = ?13,"
    " log = ?14, class = ?15, reset_at = ?16, tokens_cache_read = ?17,"
    " tokens_cache_write = ?18 WHERE task = ?1 AND n = ?2 AND ended = 0";
static const char *SQL_TASK_FINISH =
    "UPDATE tasks SET state = ?2, outcome = ?3, exit_code = ?4, cost_usd = cost_usd + ?5,"
    " tokens_in = tokens_in + ?6, tokens_out = tokens_out + ?7, summary = ?8, updated = ?9,"
    " hold_reason = '', class = ?10, tokens_cache_read = tokens_cache_read + ?11,"
    " tokens_cache_write = tokens_cache_write + ?12 WHERE id = ?1";

int fz_store_attempt_finish(fz_store_t *self, uint64_t id, uint32_t n, const fz_result_t *r,
                            fz_state_t state)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_ATTEMPT_FINISH);
    if (!st)
        return -1;
    double now = fz_wall();
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, n);
    sqlite3_bind_double(st, 3, now);
    s_bind_text(st, 4, r->outcome);
    sqlite3_bind_int64(st, 5, r->exit_code);
    sqlite3_bind_int64(st, 6, r->signal);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)r->duration_ms);
    sqlite3_bind_double(st, 8, r->cost_usd);
    sqlite3_bind_int64(st, 9, (sqlite3_int64)r->tokens_in);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)r->tokens_out);
    s_bind_text(st, 11, r->model);
    s_bind_text(st, 12, r->summary);
    sqlite3_bind_blob(st, 13, r->output ? r->output : "", (int)r->output_len, SQLITE_TRANSIENT);
    s_bind_text(st, 14, r->log);
    s_bind_text(st, 15, r->class_name);
    sqlite3_bind_double(st, 16, r->reset_at);
    sqlite3_bind_int64(st, 17, (sqlite3_int64)r->tokens_cache_read);
    sqlite3_bind_int64(st, 18, (sqlite3_int64)r->tokens_cache_write);
    if (s_done(self, st))
        return -1;
    if (sqlite3_changes(self->db) == 0)
        return 0;
    if (!(st = s_stmt(self, SQL_TASK_FINISH)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    s_bind_text(st, 2, fz_state_name(state));
    s_bind_text(st, 3, r->outcome);
    sqlite3_bind_int64(st, 4, r->exit_code);
    sqlite3_bind_double(st, 5, r->cost_usd);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)r->tokens_in);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)r->tokens_out);
    s_bind_text(st, 8, r->summary);
    sqlite3_bind_double(st, 9, now);
    s_bind_text(st, 10, r->class_name);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)r->tokens_cache_read);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)r->tokens_cache_write);
    return s_done(self, st) ? -1 : 1;
}

/* ---------------------------------------------------------------- reads */

#define LIVE_COLS                                                                                  \
    "SELECT t.id, t.state, t.priority, t.attempts, t.retries, t.timeout, t.max_cost,"              \
    " t.hold_reason, t.model, COALESCE(a.worker, ''),"                                             \
    " COALESCE(a.reserved, 0), t.model, t.parent, t.deadline, t.updated, t.attempt_base,"          \
    " t.cancel_requested, t.stall, t.stall_kill, t.not_before"                                     \
    " FROM tasks t LEFT JOIN attempts a ON a.task = t.id AND a.n = t.attempts"
static const char *SQL_LIVE =
    LIVE_COLS " WHERE t.state IN ('queued','waiting','held','running','retrying') ORDER BY t.id";
static const char *SQL_ONE = LIVE_COLS " WHERE t.id = ?1";

static void s_row_task(sqlite3_stmt *st, fz_task_t *t)
{
    memset(t, 0, sizeof *t);
    t->id = (uint64_t)sqlite3_column_int64(st, 0);
    int state = fz_state_from_name((const char *)sqlite3_column_text(st, 1));
    t->state = state < 0 ? FZ_STATE_QUEUED : (fz_state_t)state;
    t->priority = sqlite3_column_int64(st, 2);
    t->attempt = (uint32_t)sqlite3_column_int64(st, 3);
    t->retries = (uint32_t)sqlite3_column_int64(st, 4);
    t->timeout_s = (uint32_t)sqlite3_column_int64(st, 5);
    t->max_cost = sqlite3_column_double(st, 6);
    snprintf(t->hold_reason, sizeof t->hold_reason, "%s", sqlite3_column_text(st, 7));
    snprintf(t->model, sizeof t->model, "%s", sqlite3_column_text(st, 8));
    t->reserved = sqlite3_column_double(st, 10);
    t->parent = (uint64_t)sqlite3_column_int64(st, 12);
    t->deadline = sqlite3_column_double(st, 13);
    t->queued_at = sqlite3_column_double(st, 14);
    t->attempt_base = (uint32_t)sqlite3_column_int64(st, 15);
    t->cancel_requested = sqlite3_column_int64(st, 16) != 0;
    t->stall_s = (uint32_t)sqlite3_column_int64(st, 17);
    t->stall_kill_s = (uint32_t)sqlite3_column_int64(st, 18);
    t->not_before = sqlite3_column_double(st, 19);
    t->inherited = INT64_MIN;
}

int fz_store_load_task(fz_store_t *self, uint64_t id, fz_task_t *task)
{
    sqlite3_stmt *st = s_stmt(self, SQL_ONE);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        s_row_task(st, task);
        snprintf(task->model, sizeof task->model, "%s", sqlite3_column_text(st, 11));
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}

int fz_store_load_live(fz_store_t *self, fz_store_live_fn *fn, void *arg)
{
    sqlite3_stmt *st = s_stmt(self, SQL_LIVE);
    if (!st)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        fz_task_t t;
        s_row_task(st, &t);
        fn(arg, &t, (const char *)sqlite3_column_text(st, 9));
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static const char *SQL_DISPATCH = "SELECT prompt FROM tasks WHERE id = ?1";
static const char *SQL_LABELS = "SELECT key, value FROM task_labels WHERE task = ?1 ORDER BY key";

static void s_encode_labels(fz_store_t *self, uint64_t id, fz_enc_t *e)
{
    sqlite3_stmt *st = s_stmt(self, SQL_LABELS);
    fz_enc_t *m = fz_enc_new_map();
    while (st && m) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *k = (const char *)sqlite3_column_text(st, 0);
            fz_enc_str(m, k, (const char *)sqlite3_column_text(st, 1));
        }
        sqlite3_reset(st);
        break;
    }
    if (m)
        fz_enc_sub(e, "labels", &m);
}

int fz_store_encode_dispatch(fz_store_t *self, uint64_t id, fz_enc_t *e)
{
    sqlite3_stmt *st = s_stmt(self, SQL_DISPATCH);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        fz_enc_strn(e, "prompt", (const char *)sqlite3_column_text(st, 0),
                    (size_t)sqlite3_column_bytes(st, 0));
        rc = 0;
    }
    sqlite3_reset(st);
    if (rc == 0)
        s_encode_labels(self, id, e);
    return rc;
}

/* How each column of a row becomes a field of a reply object. */
typedef enum { COL_INT, COL_UINT, COL_FLOAT, COL_STR, COL_BIN, COL_MSGPACK, COL_BOOL } col_kind_t;

static void s_encode_column(sqlite3_stmt *st, int i, col_kind_t kind, fz_enc_t *e)
{
    const char *key = sqlite3_column_name(st, i);
    switch (kind) {
    case COL_INT:
        fz_enc_int(e, key, sqlite3_column_int64(st, i));
        break;
    case COL_UINT: {
        sqlite3_int64 v = sqlite3_column_int64(st, i);
        fz_enc_uint(e, key, v < 0 ? 0 : (uint64_t)v);
        break;
    }
    case COL_FLOAT:
        fz_enc_float(e, key, sqlite3_column_double(st, i));
        break;
    case COL_STR:
        fz_enc_strn(e, key, (const char *)sqlite3_column_text(st, i),
                    (size_t)sqlite3_column_bytes(st, i));
        break;
    case COL_BIN: {
        const void *b = sqlite3_column_blob(st, i);
        fz_enc_bin(e, key, b ? b : "", (size_t)sqlite3_column_bytes(st, i));
        break;
    }
    case COL_BOOL:
        fz_enc_bool(e, key, sqlite3_column_int64(st, i) != 0);
        break;
    case COL_MSGPACK: {
        const void *b = sqlite3_column_blob(st, i);
        if (b)
            fz_enc_raw(e, key, b, (size_t)sqlite3_column_bytes(st, i));
        else
            fz_enc_array(e, key, 0);
        break;
    }
    }
}

#define TASK_COLS                                                                                  \
    "id, state, priority, model, name, timeout, max_cost, retries, fallback, after, after_any,"    \
    " parent, attempts, created, updated, worker, outcome, exit_code, cost_usd, tokens_in,"        \
    " tokens_out, summary, hold_reason, deadline, class, tokens_cache_read, tokens_cache_write,"   \
    " stall, stall_kill, not_before"
static const col_kind_t s_task_kinds[] = {
    COL_UINT,    COL_STR,     COL_INT,     COL_STR,  COL_STR,  COL_UINT,  COL_FLOAT, COL_UINT,
    COL_MSGPACK, COL_MSGPACK, COL_MSGPACK, COL_UINT, COL_UINT, COL_FLOAT, COL_FLOAT, COL_STR,
    COL_STR,     COL_INT,     COL_FLOAT,   COL_UINT, COL_UINT, COL_STR,   COL_STR,   COL_FLOAT,
    COL_STR,     COL_UINT,    COL_UINT,    COL_UINT, COL_UINT, COL_FLOAT};
#define TASK_NCOLS ((int)(sizeof s_task_kinds / sizeof *s_task_kinds))

static const char *SQL_TASK_GET = "SELECT " TASK_COLS ", prompt FROM tasks WHERE id = ?1";

fz_err_t fz_store_encode_task(fz_store_t *self, uint64_t id, fz_enc_t *e, const char *key,
                              fz_store_decorate_fn *fn, void *arg)
{
    sqlite3_stmt *st = s_stmt(self, SQL_TASK_GET);
    if (!st)
        return FZ_EUNAVAILABLE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return FZ_ENOTFOUND;
    }
    fz_enc_t *t = fz_enc_new_map();
    for (int i = 0; i < TASK_NCOLS; i++)
        s_encode_column(st, i, s_task_kinds[i], t);
    s_encode_column(st, TASK_NCOLS, COL_STR, t);
    sqlite3_reset(st);
    s_encode_labels(self, id, t);
    if (fn)
        fn(arg, id, t);
    fz_enc_sub(e, key, &t);
    return FZ_OK;
}

/* Output tails of attempts numbered ?2 or less are left out (the reply must fit a frame). */
static const char *SQL_ATTEMPTS =
    "SELECT n, worker, model, started, ended, outcome, exit_code, signal, duration_ms,"
    " cost_usd, tokens_in, tokens_out, summary,"
    " CASE WHEN n > ?2 THEN output ELSE X'' END AS output, log, reserved,"
    " n <= ?2 AND length(output) > 0 AS output_dropped, class, reset_at, tokens_cache_read,"
    " tokens_cache_write FROM attempts WHERE task = ?1 ORDER BY n";
static const char *SQL_ATTEMPT_SIZES =
    "SELECT n, length(output) + length(summary) + length(log) + 200 FROM attempts WHERE task = ?1"
    " ORDER BY n DESC";
/* A `get` reply stays under this many bytes of attempts (FZ_MAX_FRAME is 4 MiB). */
#define FZ_ATTEMPTS_BYTES (3u * 1024 * 1024)

/* The newest attempts keep their output tails while they fit; older ones are cut. */
static int64_t s_output_cutoff(fz_store_t *self, uint64_t id)
{
    sqlite3_stmt *st = s_stmt(self, SQL_ATTEMPT_SIZES);
    if (!st)
        return 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int64_t cutoff = 0, bytes = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        bytes += sqlite3_column_int64(st, 1);
        if (bytes > FZ_ATTEMPTS_BYTES) {
            cutoff = sqlite3_column_int64(st, 0);
            break;
        }
    }
    sqlite3_reset(st);
    return cutoff;
}
static const col_kind_t s_attempt_kinds[] = {
    COL_UINT, COL_STR,   COL_STR,   COL_FLOAT, COL_FLOAT, COL_STR,  COL_INT,
    COL_UINT, COL_UINT,  COL_FLOAT, COL_UINT,  COL_UINT,  COL_STR,  COL_BIN,
    COL_STR,  COL_FLOAT, COL_BOOL,  COL_STR,   COL_FLOAT, COL_UINT, COL_UINT};

fz_err_t fz_store_encode_attempts(fz_store_t *self, uint64_t id, fz_enc_t *e, const char *key)
{
    int64_t cutoff = s_output_cutoff(self, id);
    sqlite3_stmt *st = s_stmt(self, SQL_ATTEMPTS);
    if (!st)
        return FZ_EUNAVAILABLE;
    /* Rows first: msgpack wants the array length up front. */
    size_t n = 0, cap = 16;
    fz_enc_t **rows = malloc(cap * sizeof *rows);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(st, 2, cutoff);
    while (rows && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            fz_enc_t **more = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!more)
                break;
            rows = more;
        }
        fz_enc_t *a = fz_enc_new_map();
        for (int i = 0; i < (int)(sizeof s_attempt_kinds / sizeof *s_attempt_kinds); i++)
            s_encode_column(st, i, s_attempt_kinds[i], a);
        rows[n++] = a;
    }
    sqlite3_reset(st);
    if (!rows)
        return FZ_EUNAVAILABLE;
    fz_enc_array(e, key, n);
    for (size_t i = 0; i < n; i++)
        fz_enc_sub(e, NULL, &rows[i]);
    free(rows);
    return FZ_OK;
}

/* Lists carry the prompt's first 80 characters, so unnamed tasks can be told apart. */
static const char *SQL_LIST_ALL =
    "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt FROM tasks ORDER BY id"
    " LIMIT ?1 OFFSET ?3";
static const char *SQL_LIST_STATE = "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt"
                                    " FROM tasks WHERE state = ?2 ORDER BY id LIMIT ?1 OFFSET ?3";
/* tail: the newest first, so that a cut at FZ_LIST_BYTES drops the oldest; sent by id. */
static const char *SQL_TAIL_ALL =
    "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt FROM tasks ORDER BY id DESC"
    " LIMIT ?1 OFFSET ?3";
static const char *SQL_TAIL_STATE = "SELECT " TASK_COLS ", substr(prompt, 1, 80) AS prompt"
                                    " FROM tasks WHERE state = ?2 ORDER BY id DESC LIMIT ?1"
                                    " OFFSET ?3";
static const char *SQL_COUNT_ALL = "SELECT COUNT(*) FROM tasks";
static const char *SQL_COUNT_STATE = "SELECT COUNT(*) FROM tasks WHERE state = ?1";

static uint64_t s_count(fz_store_t *self, const char *state)
{
    sqlite3_stmt *st = s_stmt(self, state ? SQL_COUNT_STATE : SQL_COUNT_ALL);
    if (!st)
        return 0;
    if (state)
        s_bind_text(st, 1, state);
    uint64_t n = sqlite3_step(st) == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return n;
}

/* A list reply must fit in one frame (FZ_MAX_FRAME): rows stop at this many bytes, and the
   reply says it was cut. */
#define FZ_LIST_BYTES (3u * 1024 * 1024)

fz_err_t fz_store_encode_list(fz_store_t *self, const char *state, uint64_t limit, bool tail,
                              fz_enc_t *e, fz_store_decorate_fn *fn, void *arg)
{
    uint64_t total = s_count(self, state);
    sqlite3_stmt *st = s_stmt(self, tail ? (state ? SQL_TAIL_STATE : SQL_TAIL_ALL)
                                         : (state ? SQL_LIST_STATE : SQL_LIST_ALL));
    if (!st)
        return FZ_EUNAVAILABLE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(limit < total ? limit : total));
    if (state)
        s_bind_text(st, 2, state);
    sqlite3_bind_int64(st, 3, 0);
    /* Rows are built first: msgpack wants the array's length before its elements. */
    size_t n = 0, cap = 256, bytes = 0;
    fz_enc_t **rows = malloc(cap * sizeof *rows);
    bool truncated = false;
    while (rows && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            fz_enc_t **more = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!more)
                break;
            rows = more;
        }
        fz_enc_t *t = fz_enc_new_map();
        for (int i = 0; i < TASK_NCOLS; i++)
            s_encode_column(st, i, s_task_kinds[i], t);
        s_encode_column(st, TASK_NCOLS, COL_STR, t);
        if (fn)
            fn(arg, (uint64_t)sqlite3_column_int64(st, 0), t);
        size_t len = 0;
        fz_enc_data(t, &len);
        if (bytes + len > FZ_LIST_BYTES) {
            fz_enc_destroy(&t);
            truncated = true;
            break;
        }
        bytes += len;
        rows[n++] = t;
    }
    sqlite3_reset(st);
    if (!rows)
        return FZ_EUNAVAILABLE;
    fz_enc_array(e, "tasks", n);
    for (size_t i = 0; i < n; i++)
        fz_enc_sub(e, NULL, &rows[tail ? n - 1 - i : i]);
    free(rows);
    fz_enc_uint(e, "total", total);
    if (truncated)
        fz_enc_bool(e, "truncated", true);
    return FZ_OK;
}

static const char *SQL_COUNTS = "SELECT state, COUNT(*) FROM tasks GROUP BY state";

fz_err_t fz_store_encode_counts(fz_store_t *self, fz_enc_t *e)
{
    uint64_t counts[FZ_STATE_COUNT] = {0};
    sqlite3_stmt *st = s_stmt(self, SQL_COUNTS);
    if (!st)
        return FZ_EUNAVAILABLE;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int s = fz_state_from_name((const char *)sqlite3_column_text(st, 0));
        if (s >= 0)
            counts[s] = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    fz_enc_map(e, "counts", FZ_STATE_COUNT);
    for (int s = 0; s < FZ_STATE_COUNT; s++) {
        fz_enc_str(e, NULL, fz_state_name((fz_state_t)s));
        fz_enc_uint(e, NULL, counts[s]);
    }
    return FZ_OK;
}

#define COST_AGG                                                                                   \
    " COUNT(*), SUM(a.cost_usd), SUM(a.tokens_in), SUM(a.tokens_out), SUM(a.duration_ms)"          \
    " FROM attempts a"
static const char *SQL_COST_DAY =
    "SELECT date(a.ended, 'unixepoch')," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0"
    " GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_MODEL =
    "SELECT a.model," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_TASK =
    "SELECT CAST(a.task AS TEXT)," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0"
    " GROUP BY a.task ORDER BY a.task";
static const char *SQL_COST_CLASS =
    "SELECT a.class," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_WORKER =
    "SELECT a.worker," COST_AGG " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";
static const char *SQL_COST_LABEL = "SELECT COALESCE(l.value, '')," COST_AGG
                                    " LEFT JOIN task_labels l ON l.task = a.task AND l.key = ?2"
                                    " WHERE a.ended >= ?1 AND a.ended > 0 GROUP BY 1 ORDER BY 1";

fz_err_t fz_store_encode_cost(fz_store_t *self, const char *by, const char *label_key, double since,
                              fz_enc_t *e)
{
    const char *sql = strcmp(by, "day") == 0      ? SQL_COST_DAY
                      : strcmp(by, "model") == 0  ? SQL_COST_MODEL
                      : strcmp(by, "task") == 0   ? SQL_COST_TASK
                      : strcmp(by, "worker") == 0 ? SQL_COST_WORKER
                      : strcmp(by, "label") == 0  ? SQL_COST_LABEL
                      : strcmp(by, "class") == 0  ? SQL_COST_CLASS
                                                  : NULL;
    if (!sql)
        return FZ_EINVALID;
    sqlite3_stmt *st = s_stmt(self, sql);
    if (!st)
        return FZ_EUNAVAILABLE;
    sqlite3_bind_double(st, 1, since);
    if (sql == SQL_COST_LABEL)
        s_bind_text(st, 2, label_key);
    /* Rows are few (days, models, labels) or bounded by tasks; build them first. */
    size_t n = 0, cap = 64;
    fz_enc_t **rows = malloc(cap * sizeof *rows);
    double total = 0;
    while (rows && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            fz_enc_t **more = realloc(rows, (cap *= 2) * sizeof *rows);
            if (!more)
                break;
            rows = more;
        }
        fz_enc_t *r = fz_enc_new_map();
        fz_enc_str(r, "key", (const char *)sqlite3_column_text(st, 0));
        fz_enc_uint(r, "attempts", (uint64_t)sqlite3_column_int64(st, 1));
        fz_enc_float(r, "cost_usd", sqlite3_column_double(st, 2));
        fz_enc_uint(r, "tokens_in", (uint64_t)sqlite3_column_int64(st, 3));
        fz_enc_uint(r, "tokens_out", (uint64_t)sqlite3_column_int64(st, 4));
        fz_enc_uint(r, "duration_ms", (uint64_t)sqlite3_column_int64(st, 5));
        total += sqlite3_column_double(st, 2);
        rows[n++] = r;
    }
    sqlite3_reset(st);
    fz_enc_array(e, "rows", n);
    for (size_t i = 0; i < n; i++)
        fz_enc_sub(e, NULL, &rows[i]);
    free(rows);
    fz_enc_float(e, "total_cost", total);
    return FZ_OK;
}

static const char *SQL_SPENT =
    "SELECT COALESCE(SUM(cost_usd), 0) FROM attempts WHERE ended >= ?1 AND ended < ?2";

double fz_store_spent(fz_store_t *self, double from, double to)
{
    sqlite3_stmt *st = s_stmt(self, SQL_SPENT);
    if (!st)
        return 0;
    sqlite3_bind_double(st, 1, from);
    sqlite3_bind_double(st, 2, to);
    double v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_double(st, 0) : 0;
    sqlite3_reset(st);
    return v;
}

static const char *SQL_EXISTS = "SELECT state FROM tasks WHERE id = ?1";

bool fz_store_task_exists(fz_store_t *self, uint64_t id, fz_state_t *state_p)
{
    sqlite3_stmt *st = s_stmt(self, SQL_EXISTS);
    if (!st)
        return false;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    if (found && state_p) {
        int s = fz_state_from_name((const char *)sqlite3_column_text(st, 0));
        *state_p = s < 0 ? FZ_STATE_FAILED : (fz_state_t)s;
    }
    sqlite3_reset(st);
    return found;
}

static const char *SQL_META_GET = "SELECT value FROM meta WHERE key = ?1";
static const char *SQL_META_SET = "INSERT OR REPLACE INTO meta VALUES (?1, ?2)";

double fz_store_meta_get(fz_store_t *self, const char *key, double dflt)
{
    sqlite3_stmt *st = s_stmt(self, SQL_META_GET);
    if (!st)
        return dflt;
    s_bind_text(st, 1, key);
    double v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_double(st, 0) : dflt;
    sqlite3_reset(st);
    return v;
}

int fz_store_meta_set(fz_store_t *self, const char *key, double value)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_META_SET);
    if (!st)
        return -1;
    s_bind_text(st, 1, key);
    sqlite3_bind_double(st, 2, value);
    return s_done(self, st);
}

/* ---------------------------------------------------------------- dependencies, trees */

static const char *SQL_DEP_ADD = "INSERT OR IGNORE INTO deps VALUES (?1, ?2, ?3)";

int fz_store_dep_add(fz_store_t *self, uint64_t task, uint64_t dep, int kind)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_DEP_ADD);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)dep);
    sqlite3_bind_int(st, 3, kind);
    return s_done(self, st);
}

static const char *SQL_DEPS_OF =
    "SELECT d.dep, d.kind, t.state FROM deps d JOIN tasks t ON t.id = d.dep WHERE d.task = ?1";
static const char *SQL_DEPENDENTS = "SELECT task, kind FROM deps WHERE dep = ?1";

/* Collects rows first: callers write to the store, which must not happen mid-statement. */
/* Fills out with the rows of a (id, kind[, state]) query about id. */
static int s_pairs(fz_store_t *self, const char *sql, uint64_t id, int ncols, fz_deps_t *out)
{
    out->n = 0;
    sqlite3_stmt *st = s_stmt(self, sql);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 16;
            fz_dep_t *more = realloc(out->v, cap * sizeof *more);
            if (!more)
                break;
            out->v = more;
            out->cap = cap;
        }
        fz_dep_t *d = &out->v[out->n++];
        d->id = (uint64_t)sqlite3_column_int64(st, 0);
        d->kind = sqlite3_column_int(st, 1);
        d->state = ncols > 2 ? fz_state_from_name((const char *)sqlite3_column_text(st, 2)) : -1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

void fz_deps_free(fz_deps_t *deps)
{
    free(deps->v);
    *deps = (fz_deps_t){0};
}

int fz_store_deps_of(fz_store_t *self, uint64_t task, fz_deps_t *out)
{
    return s_pairs(self, SQL_DEPS_OF, task, 3, out);
}

int fz_store_dependents(fz_store_t *self, uint64_t dep, fz_deps_t *out)
{
    return s_pairs(self, SQL_DEPENDENTS, dep, 2, out);
}

static const char *SQL_SUBTREE = "WITH RECURSIVE sub(id) AS (SELECT id FROM tasks WHERE parent = ?1"
                                 " UNION SELECT t.id FROM tasks t JOIN sub ON t.parent = sub.id)"
                                 " SELECT id, 0 FROM sub ORDER BY id";

int fz_store_subtree(fz_store_t *self, uint64_t task, fz_deps_t *out)
{
    return s_pairs(self, SQL_SUBTREE, task, 2, out);
}

static const char *SQL_DEPTH =
    "WITH RECURSIVE up(id, depth) AS (SELECT ?1, 1 UNION ALL"
    " SELECT t.parent, up.depth + 1 FROM tasks t JOIN up ON t.id = up.id"
    " WHERE t.parent != 0 AND up.depth < 1000) SELECT MAX(depth) FROM up";
static const char *SQL_NCHILDREN = "SELECT COUNT(*) FROM tasks WHERE parent = ?1";
static const char *SQL_PARENT_INFO = "SELECT priority FROM tasks WHERE id = ?1";

int fz_store_tree_info(fz_store_t *self, uint64_t task, uint32_t *depth, uint32_t *children,
                       int64_t *priority)
{
    sqlite3_stmt *st = s_stmt(self, SQL_DEPTH);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    *depth = sqlite3_step(st) == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (!(st = s_stmt(self, SQL_NCHILDREN)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    *children = sqlite3_step(st) == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (!(st = s_stmt(self, SQL_PARENT_INFO)))
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)task);
    *priority = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return 0;
}

static const char *SQL_DEPFAIL =
    "UPDATE tasks SET state = 'dep-failed', outcome = 'dep-failed', summary = ?2, updated = ?3,"
    " hold_reason = '' WHERE id = ?1";

int fz_store_task_depfail(fz_store_t *self, uint64_t id, const char *why)
{
    sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, SQL_DEPFAIL);
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    s_bind_text(st, 2, why);
    sqlite3_bind_double(st, 3, fz_wall());
    return s_done(self, st);
}

static const char *SQL_CHILDREN = "SELECT id FROM tasks WHERE parent = ?1 ORDER BY id";

void fz_store_encode_children(fz_store_t *self, uint64_t id, fz_enc_t *e, const char *key)
{
    sqlite3_stmt *st = s_stmt(self, SQL_CHILDREN);
    size_t n = 0, cap = 64;
    uint64_t *ids = malloc(cap * sizeof *ids);
    if (st && ids) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (n == cap) {
                uint64_t *more = realloc(ids, (cap *= 2) * sizeof *ids);
                if (!more)
                    break;
                ids = more;
            }
            ids[n++] = (uint64_t)sqlite3_column_int64(st, 0);
        }
        sqlite3_reset(st);
    }
    fz_enc_array(e, key, n);
    for (size_t i = 0; i < n; i++)
        fz_enc_uint(e, NULL, ids[i]);
    free(ids);
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
        sqlite3_stmt *st = s_begin(self) ? NULL : s_stmt(self, steps[i]);
        if (!st)
            return -1;
        sqlite3_bind_double(st, 1, before);
        if (s_done(self, st))
            return -1;
    }
    return sqlite3_changes(self->db);
}
