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
                                      END};

static const fz_field_t f_batch[] = {{"tasks", FZ_T_OBJARR, REQ, 1, 1000}, END};
static const fz_field_t f_batch_reply[] = {{"tasks", FZ_T_UINTARR, REQ, 0, 1000}, END};

static const fz_field_t f_task_id[] = {{"task", FZ_T_UINT, REQ, 1, U64}, END};

static const fz_field_t f_list[] = {{"state", FZ_T_STR, 0, 0, 16},
                                    {"limit", FZ_T_UINT, 0, 0, 100000},
                                    {"tail", FZ_T_BOOL, 0, 0, 0},
                                    END};

static const fz_field_t f_submitted[] = {
    {"task", FZ_T_UINT, REQ, 1, U64}, {"state", FZ_T_STR, 0, 0, 16}, END};

static const fz_field_t f_task_reply[] = {
    {"task", FZ_T_OBJECT, REQ, 0, 256}, {"attempts", FZ_T_OBJARR, 0, 0, 100000}, END};

static const fz_field_t f_tasks[] = {{"tasks", FZ_T_OBJARR, REQ, 0, 1000000},
                                     {"total", FZ_T_UINT, 0, 0, U64},
                                     {"truncated", FZ_T_BOOL, 0, 0, 0},
                                     END};

static const fz_field_t f_status[] = {
    {"counts", FZ_T_OBJECT, 0, 0, 64},       {"running", FZ_T_UINT, 0, 0, U64},
    {"workers", FZ_T_UINT, 0, 0, U64},       {"idle_workers", FZ_T_UINT, 0, 0, U64},
    {"max_running", FZ_T_UINT, 0, 0, U64},   {"paused", FZ_T_BOOL, 0, 0, 0},
    {"spent_today", FZ_T_FLOAT, 0, 0, 1e12}, {"budget", FZ_T_FLOAT, 0, 0, 1e12},
    {"reserved", FZ_T_FLOAT, 0, 0, 1e12},    END};

static const fz_field_t f_workers[] = {{"workers", FZ_T_OBJARR, 0, 0, 1000000}, END};

static const fz_field_t f_ok[] = {{"task", FZ_T_UINT, 0, 0, U64},
                                  {"state", FZ_T_STR, 0, 0, 16},
                                  {"count", FZ_T_UINT, 0, 0, U64},
                                  {"message", FZ_T_STR, 0, 0, 4096},
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

static const fz_field_t f_hello[] = {{"name", FZ_T_STR, REQ, 1, FZ_MAX_NAME},
                                     {"models", FZ_T_STRARR, 0, 0, 64},
                                     {"labels", FZ_T_STRMAP, 0, 0, 32},
                                     {"nonce", FZ_T_STR, 0, 0, 64},
                                     {"task", FZ_T_UINT, 0, 0, U64},
                                     {"attempt", FZ_T_UINT, 0, 0, 100000},
                                     END};

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
                                      END};

static const fz_field_t f_ack[] = {
    {"task", FZ_T_UINT, REQ, 1, U64}, {"attempt", FZ_T_UINT, REQ, 1, 100000}, END};

static const fz_field_t f_cancel_w[] = {{"task", FZ_T_UINT, REQ, 1, U64},
                                        {"attempt", FZ_T_UINT, 0, 0, 100000},
                                        {"reason", FZ_T_STR, 0, 0, 256},
                                        END};

/* "cancel" is both a client request (task) and a broker->worker order (task, attempt,
   reason): one spec with optional extras serves both. */
static const fz_msgspec_t s_specs[] = {{"submit", f_submit},
                                       {"submitted", f_submitted},
                                       {"submit-batch", f_batch},
                                       {"submitted-batch", f_batch_reply},
                                       {"escalate", f_task_id},
                                       {"events", f_events},
                                       {"purge", f_purge},
                                       {"get", f_task_id},
                                       {"task", f_task_reply},
                                       {"list", f_list},
                                       {"tasks", f_tasks},
                                       {"status", f_status},
                                       {"workers", f_workers},
                                       {"cancel", f_cancel_w},
                                       {"ok", f_ok},
                                       {"ping", f_none},
                                       {"pong", f_pong},
                                       {"error", f_error},
                                       {"hello", f_hello},
                                       {"welcome", f_welcome},
                                       {"heartbeat", f_heartbeat},
                                       {"dispatch", f_dispatch},
                                       {"started", f_started},
                                       {"output", f_output},
                                       {"result", f_result},
                                       {"result-ack", f_ack},
                                       {"bye", f_none},
                                       {"pause", f_none},
                                       {"resume", f_none},
                                       {"stop", f_none},
                                       {"retry", f_task_id},
                                       {"priority", f_priority},
                                       {"budget", f_budget},
                                       {"cost", f_cost},
                                       {NULL, NULL}};

size_t fz_spec_count(void)
{
    return sizeof s_specs / sizeof *s_specs - 1;
}

const fz_msgspec_t *fz_spec_at(size_t i)
{
    return i < fz_spec_count() ? &s_specs[i] : NULL;
}

const fz_msgspec_t *fz_spec_find(const char *type, size_t len)
{
    for (const fz_msgspec_t *s = s_specs; s->type; s++)
        if (strlen(s->type) == len && memcmp(s->type, type, len) == 0)
            return s;
    return NULL;
}

const fz_field_t *fz_spec_field(const fz_msgspec_t *spec, const char *key, size_t len)
{
    for (const fz_field_t *f = spec->fields; f->key; f++)
        if (strlen(f->key) == len && memcmp(f->key, key, len) == 0)
            return f;
    return NULL;
}

const char *fz_type_name(fz_type_t type)
{
    static const char *names[] = {"uint",        "int", "float",        "bool",
                                  "str",         "bin", "map<str,str>", "array<str>",
                                  "array<uint>", "map", "array<map>"};
    return (unsigned)type < sizeof names / sizeof *names ? names[type] : "?";
}
