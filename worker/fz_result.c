/*  fz_result: the worker's result message; see fz_result.h. */

#include "fz_result.h"

#include <stdio.h>

#include "fz_classify.h"
#include "fz_spec.h"
#include "fz_util.h"

void fz_result_text(fz_enc_t *e, const char *key, const char *text, size_t max)
{
    char buf[4097];
    size_t n = fz_utf8_clean(text, max < sizeof buf - 1 ? max : sizeof buf - 1, buf, sizeof buf);
    fz_enc_strn(e, key, buf, n);
}

double fz_result_cost(double cost)
{
    return cost > 0 && cost < 1e12 ? cost : cost >= 1e12 ? 1e12 : 0;
}

fz_class_t fz_result_class(const fz_result_t *r)
{
    int exit_code = r->st ? r->st->exit_code : -1;
    fz_class_t cls = fz_aws_class(r->ws, r->st != NULL, r->outcome, exit_code,
                                  r->st ? r->st->cls : FZ_CLASS_NONE);
    return fz_classify(r->outcome, exit_code, cls);
}

fz_enc_t *fz_result_enc(const fz_result_t *r)
{
    static const fz_agent_status_t none = {.exit_code = -1};
    const fz_agent_status_t *st = r->st ? r->st : &none;
    fz_enc_t *e = fz_enc_new("result", 0);
    fz_enc_uint(e, "task", r->task);
    fz_enc_uint(e, "attempt", r->attempt);
    fz_enc_str(e, "outcome", fz_outcome_name(r->outcome));
    fz_enc_int(e, "exit_code", st->exit_code);
    fz_enc_uint(e, "signal", (uint64_t)(st->signal > 0 ? st->signal : 0));
    fz_enc_uint(e, "duration_ms", (uint64_t)(st->duration_ms > 0 ? st->duration_ms : 0));
    fz_enc_float(e, "cost_usd", fz_result_cost(st->cost_usd));
    fz_enc_uint(e, "tokens_in", st->tokens_in);
    fz_enc_uint(e, "tokens_cache_read", st->tokens_cache_read);
    fz_enc_uint(e, "tokens_cache_write", st->tokens_cache_write);
    fz_enc_uint(e, "tokens_out", st->tokens_out);
    fz_result_text(e, "model", st->model[0] ? st->model : r->model ? r->model : "", FZ_MAX_NAME);
    fz_result_text(e, "summary", r->summary ? r->summary : st->summary, 4096);
    fz_enc_bin(e, "output", r->tail ? r->tail : "",
               r->tail_len > FZ_MAX_TAIL ? FZ_MAX_TAIL : r->tail_len);
    fz_enc_str(e, "log", r->log ? r->log : "");
    fz_class_t cls = fz_result_class(r);
    if (cls != FZ_CLASS_NONE)
        fz_enc_str(e, "class", fz_class_name(cls));
    if (st->reset_at > 0 && st->reset_at < FZ_RFILE_RESET_AT_LIMIT)
        fz_enc_float(e, "reset_at", st->reset_at);
    if (st->retry_after > 0 && st->retry_after < FZ_RFILE_RETRY_AFTER_LIMIT)
        fz_enc_float(e, "retry_after", st->retry_after);
    if (r->ws)
        fz_aws_encode(r->ws, e);
    return e;
}

fz_outcome_t fz_result_outcome(int agent_outcome, bool cancelled, bool interrupted)
{
    fz_outcome_t o = agent_outcome >= 0 ? (fz_outcome_t)agent_outcome
                     : cancelled        ? FZ_OUTCOME_CANCELLED
                                        : FZ_OUTCOME_SPAWN_FAILED;
    if (cancelled && o == FZ_OUTCOME_EXITED)
        o = FZ_OUTCOME_CANCELLED;
    return o == FZ_OUTCOME_CANCELLED && interrupted ? FZ_OUTCOME_INTERRUPTED : o;
}

const char *fz_result_summary(const fz_result_t *r, const char *start_err)
{
    fz_class_t cls = fz_result_class(r);
    const char *s = r->st || !start_err || !start_err[0] ? NULL : start_err;
    if (r->ws && r->ws->cls != FZ_CLASS_NONE && cls == r->ws->cls)
        s = r->ws->summary;
    return s;
}
