/*  fz_spec: every message of protocol version 1 and its fields. Mirrors PROTOCOL.md. */

#include "fz_spec.h"

#include <string.h>

#define REQ FZ_F_REQUIRED
#define END                                                                                        \
    {                                                                                              \
        NULL, 0, 0, 0, 0                                                                           \
    }
#define U64 18446744073709551615.0
#define PRIO 1000000.0

static const fz_field_t f_none[] = {END};

/* A task's workspace (issue 11): the repository its attempts work on, where they start, the
   check that gates success, and how many attempts race. */
/* clang-format off */
#define WS_SUBMIT_FIELDS                                                                           \
    {"repo", FZ_T_STR, 0, 0, FZ_MAX_REPO},                                                         \
    {"base", FZ_T_STR, 0, 0, FZ_MAX_REF},                                                          \
    {"check", FZ_T_STR, 0, 0, FZ_MAX_CHECK},                                                       \
    {"keep_worktree", FZ_T_BOOL, 0, 0, 0},                                                         \
    {"best_of", FZ_T_UINT, 0, 0, FZ_MAX_BEST_OF}
/* What an attempt's result says of its workspace (and an attempt object, and a task event). */
#define WS_RESULT_FIELDS(req)                                                                      \
    {"branch", FZ_T_STR, req, 0, FZ_MAX_REF},                                                      \
    {"base_commit", FZ_T_STR, req, 0, 64},                                                         \
    {"head_commit", FZ_T_STR, req, 0, 64},                                                         \
    {"files", FZ_T_UINT, req, 0, U64},                                                             \
    {"insertions", FZ_T_UINT, req, 0, U64},                                                        \
    {"deletions", FZ_T_UINT, req, 0, U64},                                                         \
    {"check_status", FZ_T_STR, req, 0, 16},                                                        \
    {"check_exit", FZ_T_INT, req, -1000, 1000}
/* clang-format on */

static const fz_field_t f_submit[] = {{"prompt", FZ_T_STR, REQ, 1, FZ_MAX_PROMPT},
                                      {"priority", FZ_T_INT, 0, -PRIO, PRIO},
                                      {"model", FZ_T_STR, 0, 0, FZ_MAX_NAME},
                                      {"timeout", FZ_T_UINT, 0, 0, 31536000},
                                      {"max_cost", FZ_T_FLOAT, 0, 0, 1e6},
                                      {"labels", FZ_T_STRMAP, 0, 0, 32},
                                      {"retries", FZ_T_UINT, 0, 0, 100},
                                      {"fallback", FZ_T_STRARR, 0, 0, 8},
                                      {"after", FZ_T_UINTARR, 0, 0, 256},
                                      {"after_any", FZ_T_UINTARR, 0, 0, 256},
                                      {"parent", FZ_T_UINT, 0, 0, U64},
                                      {"name", FZ_T_STR, 0, 0, 128},
                                      {"deadline", FZ_T_FLOAT, 0, 0, 1e11},
                                      {"after_index", FZ_T_UINTARR, 0, 0, 256},
                                      {"after_any_index", FZ_T_UINTARR, 0, 0, 256},
                                      {"stall", FZ_T_UINT, 0, 0, 31536000},
                                      {"stall_kill", FZ_T_UINT, 0, 0, 31536000},
                                      WS_SUBMIT_FIELDS,
                                      {"idempotency_key", FZ_T_STR, 0, 1, 128},
                                      END};

static const fz_field_t f_batch[] = {
    {"tasks", FZ_T_OBJARR, REQ, 1, 1000}, {"idempotency_key", FZ_T_STR, 0, 1, 128}, END};
static const fz_field_t f_batch_reply[] = {
    {"tasks", FZ_T_UINTARR, REQ, 0, 1000}, {"duplicate", FZ_T_BOOL, 0, 0, 0}, END};

static const fz_field_t f_task_id[] = {{"task", FZ_T_UINT, REQ, 1, U64}, END};

static const fz_field_t f_list[] = {{"state", FZ_T_STR, 0, 0, 16},
                                    {"limit", FZ_T_UINT, 0, 0, 100000},
                                    {"tail", FZ_T_BOOL, 0, 0, 0},
                                    END};

static const fz_field_t f_submitted[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                         {"state", FZ_T_STR, 0, 0, 16},
                                         {"duplicate", FZ_T_BOOL, 0, 0, 0},
                                         END};

static const fz_field_t f_task_reply[] = {{"task", FZ_T_OBJECT, REQ, 0, 256},
                                          {"attempts", FZ_T_OBJARR, 0, 0, 100000},
                                          {"children", FZ_T_UINTARR, 0, 0, 1000000},
                                          END};

static const fz_field_t f_tasks[] = {{"tasks", FZ_T_OBJARR, REQ, 0, 1000000},
                                     {"total", FZ_T_UINT, 0, 0, U64},
                                     {"truncated", FZ_T_BOOL, 0, 0, 0},
                                     END};

static const fz_field_t f_status[] = {{"counts", FZ_T_OBJECT, 0, 0, 64},
                                      {"running", FZ_T_UINT, 0, 0, U64},
                                      {"workers", FZ_T_UINT, 0, 0, U64},
                                      {"idle_workers", FZ_T_UINT, 0, 0, U64},
                                      {"max_running", FZ_T_UINT, 0, 0, U64},
                                      {"paused", FZ_T_BOOL, 0, 0, 0},
                                      {"spent_today", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"budget", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"reserved", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"depth", FZ_T_BOOL, 0, 0, 0},
                                      {"by_model", FZ_T_OBJARR, 0, 0, 256},
                                      {"by_label", FZ_T_OBJARR, 0, 0, 256},
                                      {"depth_truncated", FZ_T_BOOL, 0, 0, 0},
                                      {"turns", FZ_T_UINT, 0, 0, U64},
                                      {"turn_seconds", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"commits", FZ_T_UINT, 0, 0, U64},
                                      {"commit_seconds", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"sync_seconds", FZ_T_FLOAT, 0, 0, 1e12},
                                      END};

static const fz_field_t f_workers[] = {{"workers", FZ_T_OBJARR, 0, 0, 1000000}, END};

static const fz_field_t f_ok[] = {{"task", FZ_T_UINT, 0, 0, U64},
                                  {"state", FZ_T_STR, 0, 0, 16},
                                  {"count", FZ_T_UINT, 0, 0, U64},
                                  {"message", FZ_T_STR, 0, 0, 4096},
                                  {"priority", FZ_T_INT, 0, -PRIO, PRIO},
                                  {"bytes", FZ_T_UINT, 0, 0, U64},
                                  END};

static const fz_field_t f_priority[] = {
    {"task", FZ_T_UINT, REQ, 1, U64}, {"priority", FZ_T_INT, REQ, -PRIO, PRIO}, END};

/* "budget" is the request (set) and the reply (the rest). */
static const fz_field_t f_budget[] = {{"set", FZ_T_FLOAT, 0, 0, 1e9},
                                      {"cap", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"spent", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"reserved", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"left", FZ_T_FLOAT, 0, -1e12, 1e12},
                                      {"day", FZ_T_STR, 0, 0, 16},
                                      END};

/* "cost" is the request (by, since, label) and the reply (rows, total_cost). */
static const fz_field_t f_cost[] = {{"by", FZ_T_STR, 0, 0, 16},
                                    {"since", FZ_T_STR, 0, 0, 32},
                                    {"label", FZ_T_STR, 0, 0, 64},
                                    {"rows", FZ_T_OBJARR, 0, 0, 10000000},
                                    {"total_cost", FZ_T_FLOAT, 0, 0, 1e12},
                                    END};

static const fz_field_t f_purge[] = {{"before", FZ_T_FLOAT, REQ, 0, 1e11}, END};
static const fz_field_t f_backup[] = {{"path", FZ_T_STR, REQ, 1, 4096}, END};

/* "events" is the request (since) and the reply (events, first, last). */
static const fz_field_t f_events[] = {{"since", FZ_T_UINT, 0, 0, U64},
                                      {"events", FZ_T_OBJARR, 0, 0, 1000000},
                                      {"first", FZ_T_UINT, 0, 0, U64},
                                      {"last", FZ_T_UINT, 0, 0, U64},
                                      END};

static const fz_field_t f_pong[] = {
    {"version", FZ_T_UINT, 0, 0, U64}, {"broker", FZ_T_STR, 0, 0, 64}, END};

static const fz_field_t f_error[] = {
    {"code", FZ_T_STR, REQ, 1, 32},        {"reason", FZ_T_STR, 0, 0, 32},
    {"index", FZ_T_UINT, 0, 0, 1000000},   {"message", FZ_T_STR, 0, 0, 4096},
    {"supported", FZ_T_UINTARR, 0, 0, 16}, END};

static const fz_field_t f_hello[] = {
    {"name", FZ_T_STR, REQ, 1, FZ_MAX_NAME}, {"models", FZ_T_STRARR, 0, 0, 64},
    {"labels", FZ_T_STRMAP, 0, 0, 32},       {"nonce", FZ_T_STR, 0, 0, 64},
    {"task", FZ_T_UINT, 0, 0, U64},          {"attempt", FZ_T_UINT, 0, 0, 100000},
    {"prefetch", FZ_T_BOOL, 0, 0, 0},        END};

static const fz_field_t f_welcome[] = {{"heartbeat_ms", FZ_T_UINT, REQ, 10, 3600000},
                                       {"name", FZ_T_STR, 0, 0, FZ_MAX_NAME},
                                       {"refused_models", FZ_T_STRARR, 0, 0, 64},
                                       END};

static const fz_field_t f_heartbeat[] = {{"task", FZ_T_UINT, 0, 0, U64},
                                         {"attempt", FZ_T_UINT, 0, 0, 100000},
                                         {"elapsed_ms", FZ_T_UINT, 0, 0, U64},
                                         {"cost_usd", FZ_T_FLOAT, 0, 0, 1e12},
                                         {"tokens_in", FZ_T_UINT, 0, 0, U64},
                                         {"tokens_out", FZ_T_UINT, 0, 0, U64},
                                         {"progress", FZ_T_UINT, 0, 0, 100},
                                         {"progress_text", FZ_T_STR, 0, 0, 1024},
                                         {"draining", FZ_T_BOOL, 0, 0, 0},
                                         {"idle_ms", FZ_T_UINT, 0, 0, U64},
                                         {"tokens_cache_read", FZ_T_UINT, 0, 0, U64},
                                         {"tokens_cache_write", FZ_T_UINT, 0, 0, U64},
                                         END};

static const fz_field_t f_dispatch[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                        {"attempt", FZ_T_UINT, REQ, 1, 100000},
                                        {"prompt", FZ_T_STR, REQ, 0, FZ_MAX_PROMPT},
                                        {"model", FZ_T_STR, 0, 0, FZ_MAX_NAME},
                                        {"timeout", FZ_T_UINT, 0, 0, 31536000},
                                        {"max_cost", FZ_T_FLOAT, 0, 0, 1e6},
                                        {"kill_grace", FZ_T_UINT, 0, 0, 3600},
                                        {"labels", FZ_T_STRMAP, 0, 0, 32},
                                        {"stall", FZ_T_UINT, 0, 0, 31536000},
                                        {"stall_kill", FZ_T_UINT, 0, 0, 31536000},
                                        {"repo", FZ_T_STR, 0, 0, FZ_MAX_REPO},
                                        {"bases", FZ_T_STRARR, 0, 0, 257},
                                        {"check", FZ_T_STR, 0, 0, FZ_MAX_CHECK},
                                        {"keep_worktree", FZ_T_BOOL, 0, 0, 0},
                                        END};

static const fz_field_t f_started[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                       {"attempt", FZ_T_UINT, REQ, 1, 100000},
                                       {"pid", FZ_T_UINT, 0, 0, 4294967295.0},
                                       END};

static const fz_field_t f_output[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                      {"attempt", FZ_T_UINT, REQ, 1, 100000},
                                      {"data", FZ_T_BIN, REQ, 0, FZ_MAX_CHUNK},
                                      END};

static const fz_field_t f_result[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                      {"attempt", FZ_T_UINT, REQ, 1, 100000},
                                      {"outcome", FZ_T_STR, REQ, 1, 16},
                                      {"exit_code", FZ_T_INT, 0, -1000, 1000},
                                      {"signal", FZ_T_UINT, 0, 0, 128},
                                      {"duration_ms", FZ_T_UINT, 0, 0, U64},
                                      {"cost_usd", FZ_T_FLOAT, 0, 0, 1e12},
                                      {"tokens_in", FZ_T_UINT, 0, 0, U64},
                                      {"tokens_out", FZ_T_UINT, 0, 0, U64},
                                      {"model", FZ_T_STR, 0, 0, FZ_MAX_NAME},
                                      {"summary", FZ_T_STR, 0, 0, 4096},
                                      {"output", FZ_T_BIN, 0, 0, FZ_MAX_TAIL},
                                      {"log", FZ_T_STR, 0, 0, 4096},
                                      {"class", FZ_T_STR, 0, 0, 32},
                                      {"reset_at", FZ_T_FLOAT, 0, 0, 1e11},
                                      {"retry_after", FZ_T_FLOAT, 0, 0, 1e7},
                                      {"tokens_cache_read", FZ_T_UINT, 0, 0, U64},
                                      {"tokens_cache_write", FZ_T_UINT, 0, 0, U64},
                                      WS_RESULT_FIELDS(0),
                                      {"check_output", FZ_T_BIN, 0, 0, FZ_MAX_CHECK_TAIL},
                                      END};

static const fz_field_t f_ack[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                   {"attempt", FZ_T_UINT, REQ, 1, 100000},
                                   {"promote", FZ_T_BOOL, 0, 0, 0},
                                   END};

static const fz_field_t f_cancel_w[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                        {"attempt", FZ_T_UINT, 0, 0, 100000},
                                        {"reason", FZ_T_STR, 0, 0, 256},
                                        END};

/* "cancel" is both a client request (task) and a broker->worker order (task, attempt,
   reason): one spec with optional extras serves both. */
static const fz_msgspec_t s_specs[] = {
    {"submit", f_submit},      {"submitted", f_submitted},
    {"submit-batch", f_batch}, {"submitted-batch", f_batch_reply},
    {"escalate", f_task_id},   {"events", f_events},
    {"purge", f_purge},        {"backup", f_backup},
    {"get", f_task_id},        {"task", f_task_reply},
    {"list", f_list},          {"tasks", f_tasks},
    {"status", f_status},      {"workers", f_workers},
    {"cancel", f_cancel_w},    {"ok", f_ok},
    {"ping", f_none},          {"pong", f_pong},
    {"error", f_error},        {"hello", f_hello},
    {"welcome", f_welcome},    {"heartbeat", f_heartbeat},
    {"dispatch", f_dispatch},  {"started", f_started},
    {"output", f_output},      {"result", f_result},
    {"result-ack", f_ack},     {"bye", f_none},
    {"pause", f_none},         {"resume", f_none},
    {"stop", f_none},          {"retry", f_task_id},
    {"priority", f_priority},  {"budget", f_budget},
    {"cost", f_cost},          {NULL, NULL}};

/* ---------------------------------------------------------------- objects (section 7) */

#define T_SEC 31536000 /* a year of seconds: timeouts and stall limits */
#define T_TIME 1e11    /* unix times */
#define T_USD 1e12     /* costs */

/* The columns every task object carries, in a get reply and in a list. */
/* clang-format off */
#define TASK_FIELDS                                                                                \
    {"id", FZ_T_UINT, REQ, 1, U64},                                                                \
    {"state", FZ_T_STR, REQ, 1, 16},                                                               \
    {"priority", FZ_T_INT, REQ, -PRIO, PRIO},                                                      \
    {"model", FZ_T_STR, REQ, 0, FZ_MAX_NAME},                                                      \
    {"name", FZ_T_STR, REQ, 0, 128},                                                               \
    {"timeout", FZ_T_UINT, REQ, 0, T_SEC},                                                         \
    {"max_cost", FZ_T_FLOAT, REQ, 0, 1e6},                                                         \
    {"retries", FZ_T_UINT, REQ, 0, 100},                                                           \
    {"fallback", FZ_T_STRARR, REQ, 0, 8},                                                          \
    {"after", FZ_T_UINTARR, REQ, 0, 512},                                                          \
    {"after_any", FZ_T_UINTARR, REQ, 0, 512},                                                      \
    {"parent", FZ_T_UINT, REQ, 0, U64},                                                            \
    {"attempts", FZ_T_UINT, REQ, 0, U64},                                                          \
    {"created", FZ_T_FLOAT, REQ, 0, T_TIME},                                                       \
    {"updated", FZ_T_FLOAT, REQ, 0, T_TIME},                                                       \
    {"worker", FZ_T_STR, REQ, 0, FZ_MAX_NAME},                                                     \
    {"outcome", FZ_T_STR, REQ, 0, 16},                                                             \
    {"exit_code", FZ_T_INT, REQ, -1000, 1000},                                                     \
    {"cost_usd", FZ_T_FLOAT, REQ, 0, T_USD},                                                       \
    {"tokens_in", FZ_T_UINT, REQ, 0, U64},                                                         \
    {"tokens_out", FZ_T_UINT, REQ, 0, U64},                                                        \
    {"summary", FZ_T_STR, REQ, 0, 4096},                                                           \
    {"hold_reason", FZ_T_STR, REQ, 0, 16},                                                         \
    {"deadline", FZ_T_FLOAT, REQ, 0, T_TIME},                                                      \
    {"class", FZ_T_STR, REQ, 0, 32},                                                               \
    {"tokens_cache_read", FZ_T_UINT, REQ, 0, U64},                                                 \
    {"tokens_cache_write", FZ_T_UINT, REQ, 0, U64},                                                \
    {"stall", FZ_T_UINT, REQ, 0, T_SEC},                                                           \
    {"stall_kill", FZ_T_UINT, REQ, 0, T_SEC},                                                      \
    {"not_before", FZ_T_FLOAT, REQ, 0, T_TIME},                                                    \
    {"repo", FZ_T_STR, REQ, 0, FZ_MAX_REPO},                                                       \
    {"base", FZ_T_STR, REQ, 0, FZ_MAX_REF},                                                        \
    {"check", FZ_T_STR, REQ, 0, FZ_MAX_CHECK},                                                     \
    {"keep_worktree", FZ_T_BOOL, REQ, 0, 0},                                                       \
    {"best_of", FZ_T_UINT, REQ, 0, FZ_MAX_BEST_OF},                                                \
    {"branch", FZ_T_STR, REQ, 0, FZ_MAX_REF},                                                      \
    {"head_commit", FZ_T_STR, REQ, 0, 64},                                                        \
    {"submitted_by", FZ_T_STR, REQ, 0, 80}
/* What the broker adds to a live task's object (get and list alike). */
#define TASK_LIVE_FIELDS                                                                           \
    {"effective_priority", FZ_T_FLOAT, 0, -1e12, 1e12},                                            \
    {"priority_why", FZ_T_STR, 0, 0, 256},                                                         \
    {"deps_pending", FZ_T_UINT, 0, 0, U64},                                                        \
    {"hold_detail", FZ_T_STR, 0, 0, 256},                                                          \
    {"waiting_for", FZ_T_STR, 0, 0, 256},                                                          \
    {"stalled_since", FZ_T_FLOAT, 0, 0, T_TIME}
/* clang-format on */

static const fz_field_t o_task[] = {TASK_FIELDS,
                                    TASK_LIVE_FIELDS,
                                    {"prompt", FZ_T_STR, REQ, 0, FZ_MAX_PROMPT},
                                    {"labels", FZ_T_STRMAP, REQ, 0, 32},
                                    END};

/* In a list: the prompt's first 80 characters (4 bytes at most each), no labels. */
static const fz_field_t o_task_listed[] = {
    TASK_FIELDS, TASK_LIVE_FIELDS, {"prompt", FZ_T_STR, REQ, 0, 320}, END};

static const fz_field_t o_attempt[] = {{"n", FZ_T_UINT, REQ, 1, 100000},
                                       {"worker", FZ_T_STR, REQ, 0, FZ_MAX_NAME},
                                       {"model", FZ_T_STR, REQ, 0, FZ_MAX_NAME},
                                       {"started", FZ_T_FLOAT, REQ, 0, T_TIME},
                                       {"ended", FZ_T_FLOAT, REQ, 0, T_TIME},
                                       {"outcome", FZ_T_STR, REQ, 1, 16},
                                       {"exit_code", FZ_T_INT, REQ, -1000, 1000},
                                       {"signal", FZ_T_UINT, REQ, 0, 128},
                                       {"duration_ms", FZ_T_UINT, REQ, 0, U64},
                                       {"cost_usd", FZ_T_FLOAT, REQ, 0, T_USD},
                                       {"tokens_in", FZ_T_UINT, REQ, 0, U64},
                                       {"tokens_out", FZ_T_UINT, REQ, 0, U64},
                                       {"summary", FZ_T_STR, REQ, 0, 4096},
                                       {"output", FZ_T_BIN, REQ, 0, FZ_MAX_TAIL},
                                       {"log", FZ_T_STR, REQ, 0, 4096},
                                       {"output_dropped", FZ_T_BOOL, REQ, 0, 0},
                                       {"reserved", FZ_T_FLOAT, REQ, 0, T_USD},
                                       {"class", FZ_T_STR, REQ, 0, 32},
                                       {"reset_at", FZ_T_FLOAT, REQ, 0, T_TIME},
                                       {"tokens_cache_read", FZ_T_UINT, REQ, 0, U64},
                                       {"tokens_cache_write", FZ_T_UINT, REQ, 0, U64},
                                       WS_RESULT_FIELDS(REQ),
                                       {"check_output", FZ_T_BIN, REQ, 0, FZ_MAX_CHECK_TAIL},
                                       {"suspect", FZ_T_BOOL, 0, 0, 0},
                                       {"charged", FZ_T_FLOAT, 0, 0, T_USD},
                                       END};

static const fz_field_t o_worker[] = {{"name", FZ_T_STR, REQ, 1, FZ_MAX_NAME},
                                      {"models", FZ_T_STRARR, REQ, 0, 64},
                                      {"any_model", FZ_T_BOOL, REQ, 0, 0},
                                      {"state", FZ_T_STR, REQ, 1, 16},
                                      {"task", FZ_T_UINT, REQ, 0, U64},
                                      {"next", FZ_T_UINT, 0, 0, U64},
                                      {"since", FZ_T_FLOAT, REQ, 0, T_TIME},
                                      {"last_seen", FZ_T_FLOAT, REQ, 0, T_TIME},
                                      {"unhealthy", FZ_T_STRARR, REQ | FZ_F_EMPTY, 0, 64},
                                      END};

static const fz_field_t o_cost_row[] = {{"key", FZ_T_STR, REQ, 0, 1024},
                                        {"attempts", FZ_T_UINT, REQ, 0, U64},
                                        {"cost_usd", FZ_T_FLOAT, REQ, 0, T_USD},
                                        {"tokens_in", FZ_T_UINT, REQ, 0, U64},
                                        {"tokens_out", FZ_T_UINT, REQ, 0, U64},
                                        {"duration_ms", FZ_T_UINT, REQ, 0, U64},
                                        END};

/* status.counts: one entry per state. */
static const fz_field_t o_counts[] = {
    {"queued", FZ_T_UINT, REQ, 0, U64},     {"waiting", FZ_T_UINT, REQ, 0, U64},
    {"held", FZ_T_UINT, REQ, 0, U64},       {"running", FZ_T_UINT, REQ, 0, U64},
    {"retrying", FZ_T_UINT, REQ, 0, U64},   {"succeeded", FZ_T_UINT, REQ, 0, U64},
    {"failed", FZ_T_UINT, REQ, 0, U64},     {"cancelled", FZ_T_UINT, REQ, 0, U64},
    {"dep-failed", FZ_T_UINT, REQ, 0, U64}, END};

/* status.by_model, status.by_label: unfinished tasks per model or label, by state. */
static const fz_field_t o_depth_row[] = {{"key", FZ_T_STR, REQ, 0, 1100},
                                         {"queued", FZ_T_UINT, REQ, 0, U64},
                                         {"held", FZ_T_UINT, REQ, 0, U64},
                                         {"retrying", FZ_T_UINT, REQ, 0, U64},
                                         {"waiting", FZ_T_UINT, REQ, 0, U64},
                                         {"running", FZ_T_UINT, REQ, 0, U64},
                                         END};

static const fz_msgspec_t s_objects[] = {{"task", o_task},           {"task-listed", o_task_listed},
                                         {"attempt", o_attempt},     {"worker", o_worker},
                                         {"cost-row", o_cost_row},   {"counts", o_counts},
                                         {"depth-row", o_depth_row}, {NULL, NULL}};

/* ---------------------------------------------------------------- events (section 6) */

/* Every event map; and every task event's. (Macros, so that each event is one flat list.) */
/* clang-format off */
#define EV_BASE                                                                                    \
    {"seq", FZ_T_UINT, REQ, 1, U64},                                                               \
    {"ts", FZ_T_FLOAT, REQ, 0, T_TIME},                                                            \
    {"event", FZ_T_STR, REQ, 1, 32}
#define EV_TASK                                                                                    \
    EV_BASE,                                                                                       \
    {"task", FZ_T_UINT, REQ, 1, U64},                                                              \
    {"state", FZ_T_STR, REQ, 1, 16},                                                               \
    {"priority", FZ_T_INT, REQ, -PRIO, PRIO},                                                      \
    {"model", FZ_T_STR, REQ, 0, FZ_MAX_NAME},                                                      \
    {"attempt", FZ_T_UINT, 0, 1, 100000},                                                          \
    {"parent", FZ_T_UINT, 0, 1, U64}
/* What a task event says of the attempt that just ended (a lost attempt: nothing). */
#define EV_RESULT                                                                                  \
    {"worker", FZ_T_STR, 0, 0, FZ_MAX_NAME},                                                       \
    {"outcome", FZ_T_STR, 0, 1, 16},                                                               \
    {"exit_code", FZ_T_INT, 0, -1000, 1000},                                                       \
    {"cost_usd", FZ_T_FLOAT, 0, 0, T_USD},                                                         \
    {"duration_ms", FZ_T_UINT, 0, 0, U64},                                                         \
    {"summary", FZ_T_STR, 0, 0, 4096},                                                             \
    {"class", FZ_T_STR, 0, 1, 32},                                                                 \
    WS_RESULT_FIELDS(0),                                                           \
    {"suspect", FZ_T_BOOL, 0, 0, 0},                                                               \
    {"charged", FZ_T_FLOAT, 0, 0, T_USD}
#define EV_WORKER                                                                                  \
    EV_BASE,                                                                                       \
    {"worker", FZ_T_STR, REQ, 1, FZ_MAX_NAME},                                                     \
    {"models", FZ_T_STRARR, REQ, 0, 64},                                                           \
    {"any_model", FZ_T_BOOL, REQ, 0, 0}
/* clang-format on */

static const fz_field_t e_base[] = {EV_BASE, END};
static const fz_field_t e_task[] = {EV_TASK, END};
static const fz_field_t e_submitted[] = {
    EV_TASK, {"name", FZ_T_STR, REQ, 0, 128}, {"prompt", FZ_T_STR, REQ, 0, 200}, END};
static const fz_field_t e_held[] = {
    EV_TASK, {"reason", FZ_T_STR, REQ, 1, 16}, EV_RESULT, {"until", FZ_T_FLOAT, 0, 0, T_TIME}, END};
static const fz_field_t e_dispatched[] = {EV_TASK,
                                          {"worker", FZ_T_STR, REQ, 1, FZ_MAX_NAME},
                                          {"reserved", FZ_T_FLOAT, REQ, 0, T_USD},
                                          END};
static const fz_field_t e_started[] = {EV_TASK,
                                       {"worker", FZ_T_STR, REQ, 1, FZ_MAX_NAME},
                                       {"pid", FZ_T_UINT, REQ, 0, 4294967295.0},
                                       END};
static const fz_field_t e_progress[] = {EV_TASK,
                                        {"worker", FZ_T_STR, REQ, 1, FZ_MAX_NAME},
                                        {"elapsed_ms", FZ_T_UINT, REQ, 0, U64},
                                        {"idle_ms", FZ_T_UINT, REQ, 0, U64},
                                        {"cost_usd", FZ_T_FLOAT, REQ, 0, T_USD},
                                        {"tokens_in", FZ_T_UINT, REQ, 0, U64},
                                        {"tokens_out", FZ_T_UINT, REQ, 0, U64},
                                        {"tokens_cache_read", FZ_T_UINT, REQ, 0, U64},
                                        {"tokens_cache_write", FZ_T_UINT, REQ, 0, U64},
                                        {"progress", FZ_T_UINT, 0, 0, 100},
                                        {"progress_text", FZ_T_STR, REQ, 0, 1024},
                                        END};
static const fz_field_t e_output[] = {EV_TASK,
                                      {"worker", FZ_T_STR, REQ, 1, FZ_MAX_NAME},
                                      {"data", FZ_T_BIN, REQ, 0, FZ_MAX_CHUNK},
                                      {"dropped", FZ_T_UINT, 0, 0, U64},
                                      END};
static const fz_field_t e_ended[] = {EV_TASK, EV_RESULT, END};
static const fz_field_t e_dep_failed[] = {EV_TASK, {"summary", FZ_T_STR, REQ, 0, 4096}, END};
static const fz_field_t e_retrying[] = {EV_TASK,
                                        {"delay_ms", FZ_T_UINT, REQ, 0, U64},
                                        {"next_model", FZ_T_STR, REQ, 0, FZ_MAX_NAME},
                                        END};
static const fz_field_t e_requeued[] = {EV_TASK, {"reason", FZ_T_STR, REQ, 1, 256}, EV_RESULT, END};
static const fz_field_t e_stalled[] = {
    EV_TASK, {"worker", FZ_T_STR, REQ, 1, FZ_MAX_NAME}, {"idle_ms", FZ_T_UINT, REQ, 0, U64}, END};
static const fz_field_t e_joined[] = {EV_WORKER, END};
static const fz_field_t e_left[] = {EV_WORKER, {"reason", FZ_T_STR, REQ, 1, 32}, END};
static const fz_field_t e_unhealthy[] = {EV_BASE,
                                         {"worker", FZ_T_STR, REQ, 1, FZ_MAX_NAME},
                                         {"class", FZ_T_STR, REQ, 1, 32},
                                         {"model", FZ_T_STR, REQ, 0, FZ_MAX_NAME},
                                         {"until", FZ_T_FLOAT, 0, 0, T_TIME},
                                         END};
static const fz_field_t e_version[] = {EV_BASE, {"version", FZ_T_STR, REQ, 1, 64}, END};
static const fz_field_t e_budget[] = {EV_BASE, {"cap", FZ_T_FLOAT, REQ, 0, T_USD}, END};

/* Indexed by fz_topic_t; vocab_test checks that each type is fz_topic_name of its index. */
static const fz_msgspec_t s_events[FZ_TOPIC_COUNT] = {
    [FZ_TOPIC_NONE] = {NULL, NULL},
    [FZ_TOPIC_TASK_SUBMITTED] = {"task.submitted", e_submitted},
    [FZ_TOPIC_TASK_QUEUED] = {"task.queued", e_task},
    [FZ_TOPIC_TASK_HELD] = {"task.held", e_held},
    [FZ_TOPIC_TASK_DISPATCHED] = {"task.dispatched", e_dispatched},
    [FZ_TOPIC_TASK_STARTED] = {"task.started", e_started},
    [FZ_TOPIC_TASK_PROGRESS] = {"task.progress", e_progress},
    [FZ_TOPIC_TASK_OUTPUT] = {"task.output", e_output},
    [FZ_TOPIC_TASK_SUCCEEDED] = {"task.succeeded", e_ended},
    [FZ_TOPIC_TASK_FAILED] = {"task.failed", e_ended},
    [FZ_TOPIC_TASK_CANCELLED] = {"task.cancelled", e_ended},
    [FZ_TOPIC_TASK_DEP_FAILED] = {"task.dep-failed", e_dep_failed},
    [FZ_TOPIC_TASK_ATTEMPT_FAILED] = {"task.attempt-failed", e_ended},
    [FZ_TOPIC_TASK_RETRYING] = {"task.retrying", e_retrying},
    [FZ_TOPIC_TASK_REQUEUED] = {"task.requeued", e_requeued},
    [FZ_TOPIC_TASK_PRIORITY] = {"task.priority", e_task},
    [FZ_TOPIC_TASK_STALLED] = {"task.stalled", e_stalled},
    [FZ_TOPIC_WORKER_JOINED] = {"worker.joined", e_joined},
    [FZ_TOPIC_WORKER_LEFT] = {"worker.left", e_left},
    [FZ_TOPIC_WORKER_UNHEALTHY] = {"worker.unhealthy", e_unhealthy},
    [FZ_TOPIC_BROKER_STARTED] = {"broker.started", e_version},
    [FZ_TOPIC_BROKER_PAUSED] = {"broker.paused", e_base},
    [FZ_TOPIC_BROKER_RESUMED] = {"broker.resumed", e_base},
    [FZ_TOPIC_BROKER_BUDGET] = {"broker.budget", e_budget},
    [FZ_TOPIC_BROKER_STOPPING] = {"broker.stopping", e_version},
};

/* Any event, before its topic is known: what `events` replies hold. */
static const fz_msgspec_t s_event_any = {"event", e_base};

/* Which spec the maps of an OBJECT or OBJARR field follow. */
static const struct {
    const char *type, *key, *holds;
} s_holds[] = {{"task", "task", "task"},
               {"task", "attempts", "attempt"},
               {"tasks", "tasks", "task-listed"},
               {"workers", "workers", "worker"},
               {"cost", "rows", "cost-row"},
               {"status", "counts", "counts"},
               {"status", "by_model", "depth-row"},
               {"status", "by_label", "depth-row"},
               {"submit-batch", "tasks", "submit"},
               {"events", "events", "event"}};

size_t fz_spec_count(void)
{
    return sizeof s_specs / sizeof *s_specs - 1;
}

const fz_msgspec_t *fz_spec_at(size_t i)
{
    return i < fz_spec_count() ? &s_specs[i] : NULL;
}

/* Both run for every message and every field the broker decodes: the first byte rules out
   nearly every entry before any strlen. */
const fz_msgspec_t *fz_spec_find(const char *type, size_t len)
{
    for (const fz_msgspec_t *s = s_specs; len && s->type; s++)
        if (s->type[0] == type[0] && strlen(s->type) == len && memcmp(s->type, type, len) == 0)
            return s;
    return NULL;
}

const fz_field_t *fz_spec_field(const fz_msgspec_t *spec, const char *key, size_t len)
{
    for (const fz_field_t *f = spec->fields; len && f->key; f++)
        if (f->key[0] == key[0] && strlen(f->key) == len && memcmp(f->key, key, len) == 0)
            return f;
    return NULL;
}

size_t fz_spec_object_count(void)
{
    return sizeof s_objects / sizeof *s_objects - 1;
}

const fz_msgspec_t *fz_spec_object_at(size_t i)
{
    return i < fz_spec_object_count() ? &s_objects[i] : NULL;
}

const fz_msgspec_t *fz_spec_object(const char *name)
{
    for (const fz_msgspec_t *s = s_objects; name && s->type; s++)
        if (strcmp(s->type, name) == 0)
            return s;
    return NULL;
}

const fz_msgspec_t *fz_spec_event(fz_topic_t topic)
{
    return (unsigned)topic < FZ_TOPIC_COUNT && s_events[topic].type ? &s_events[topic] : NULL;
}

const fz_msgspec_t *fz_spec_event_named(const char *name, size_t len)
{
    for (int i = 1; i < FZ_TOPIC_COUNT; i++)
        if (s_events[i].type && strlen(s_events[i].type) == len &&
            memcmp(s_events[i].type, name, len) == 0)
            return &s_events[i];
    return NULL;
}

const fz_msgspec_t *fz_spec_holds(const fz_msgspec_t *spec, const char *key)
{
    for (size_t i = 0; spec && key && i < sizeof s_holds / sizeof *s_holds; i++) {
        if (fz_spec_find(s_holds[i].type, strlen(s_holds[i].type)) != spec ||
            strcmp(s_holds[i].key, key) != 0)
            continue; /* by pointer: the object "task" is not the message "task" */
        if (strcmp(s_holds[i].holds, "event") == 0)
            return &s_event_any;
        const fz_msgspec_t *o = fz_spec_object(s_holds[i].holds);
        return o ? o : fz_spec_find(s_holds[i].holds, strlen(s_holds[i].holds));
    }
    return NULL;
}

const char *fz_type_name(fz_type_t type)
{
    static const char *names[] = {"uint",        "int", "float",        "bool",
                                  "str",         "bin", "map<str,str>", "array<str>",
                                  "array<uint>", "map", "array<map>"};
    return (unsigned)type < sizeof names / sizeof *names ? names[type] : "?";
}
