/*  fz_web_api: JSON endpoints from broker requests; see fz_web_api.h. */

#include "fz_web_api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_cli.h"
#include "fz_digest.h"

fz_web_resp_t fz_web_api_error(int status, const char *code, const char *message)
{
    json_t *j = json_pack("{s:s,s:s}", "error", message, "code", code);
    fz_web_resp_t r = {status, j ? json_dumps(j, JSON_COMPACT) : NULL, 0};
    json_decref(j);
    r.len = r.body ? strlen(r.body) : 0;
    return r;
}

static int s_http_status(fz_err_t err)
{
    switch (err) {
    case FZ_EINVALID:
    case FZ_ETOOLARGE:
        return 400;
    case FZ_ENOTFOUND:
        return 404;
    case FZ_ECONFLICT:
    case FZ_EREFUSED:
        return 409;
    default:
        return 502; /* the broker is away or answered what we cannot read */
    }
}

/* Makes the call; on success appends `"key":BODY` to out (a memstream). */
static fz_err_t s_part(fz_client_t *c, fz_enc_t *req, const char *expect, const char *key,
                       FILE *out, char *err, size_t errlen)
{
    fz_msg_t *reply = NULL;
    if (!req) {
        snprintf(err, errlen, "out of memory");
        return FZ_EINTERNAL;
    }
    fz_err_t rc = fz_client_ask(c, &req, expect, &reply, err, errlen);
    if (rc != FZ_OK)
        return rc;
    if (key)
        fprintf(out, "\"%s\":", key);
    fz_cli_print_body_json(fz_msg_root(reply), out);
    fz_msg_destroy(&reply);
    return FZ_OK;
}

typedef struct {
    FILE *mem;
    char *text;
    size_t len;
    char err[512];
    fz_err_t rc;
} s_out_t;

static bool s_open(s_out_t *o)
{
    memset(o, 0, sizeof *o);
    o->mem = open_memstream(&o->text, &o->len);
    return o->mem != NULL;
}

static fz_web_resp_t s_close(s_out_t *o)
{
    if (o->mem)
        fclose(o->mem);
    if (!o->mem || o->rc != FZ_OK) {
        free(o->text);
        if (!o->mem)
            return fz_web_api_error(500, "internal", "out of memory");
        return fz_web_api_error(s_http_status(o->rc), fz_strerror(o->rc), o->err);
    }
    return (fz_web_resp_t){200, o->text, o->len};
}

static fz_enc_t *s_list_req(fz_client_t *c, const char *state, uint64_t limit, bool tail)
{
    fz_enc_t *req = fz_client_request(c, "list");
    if (req) {
        if (state)
            fz_enc_str(req, "state", state);
        fz_enc_uint(req, "limit", limit);
        if (tail)
            fz_enc_bool(req, "tail", true);
    }
    return req;
}

fz_web_resp_t fz_web_api_overview(fz_client_t *c)
{
    s_out_t o;
    if (!s_open(&o))
        return s_close(&o);
    fputc('{', o.mem);
    o.rc =
        s_part(c, fz_client_request(c, "status"), "status", "status", o.mem, o.err, sizeof o.err);
    if (!o.rc) {
        fputc(',', o.mem);
        o.rc = s_part(c, fz_client_request(c, "budget"), "budget", "budget", o.mem, o.err,
                      sizeof o.err);
    }
    if (!o.rc) {
        fputc(',', o.mem);
        o.rc = s_part(c, fz_client_request(c, "workers"), "workers", "workers", o.mem, o.err,
                      sizeof o.err);
    }
    if (!o.rc) {
        fputc(',', o.mem);
        o.rc = s_part(c, s_list_req(c, "running", 250, false), "tasks", "running", o.mem, o.err,
                      sizeof o.err);
    }
    if (!o.rc) {
        fputc(',', o.mem);
        o.rc = s_part(c, s_list_req(c, NULL, 100, true), "tasks", "recent", o.mem, o.err,
                      sizeof o.err);
    }
    fputc('}', o.mem);
    return s_close(&o);
}

fz_web_resp_t fz_web_api_task(fz_client_t *c, uint64_t id)
{
    s_out_t o;
    if (!s_open(&o))
        return s_close(&o);
    fz_enc_t *req = fz_client_request(c, "get");
    if (req)
        fz_enc_uint(req, "task", id);
    o.rc = s_part(c, req, "task", NULL, o.mem, o.err, sizeof o.err);
    return s_close(&o);
}

fz_web_resp_t fz_web_api_list(fz_client_t *c, const char *state, uint64_t limit, bool tail)
{
    s_out_t o;
    if (!s_open(&o))
        return s_close(&o);
    o.rc = s_part(c, s_list_req(c, state, limit, tail), "tasks", NULL, o.mem, o.err, sizeof o.err);
    return s_close(&o);
}

fz_web_resp_t fz_web_api_cost(fz_client_t *c, const char *by, const char *since)
{
    s_out_t o;
    if (!s_open(&o))
        return s_close(&o);
    fz_enc_t *req = fz_client_request(c, "cost");
    if (req) {
        fz_enc_str(req, "by", by);
        if (since)
            fz_enc_str(req, "since", since);
    }
    o.rc = s_part(c, req, "cost", NULL, o.mem, o.err, sizeof o.err);
    return s_close(&o);
}

fz_web_resp_t fz_web_api_digest(fz_client_t *c, const char *since_arg)
{
    char err[512];
    double since = 0;
    if (!fz_digest_parse_since(since_arg ? since_arg : "24h", fz_wall(), &since, err, sizeof err))
        return fz_web_api_error(400, "invalid", err);
    fz_err_t code = FZ_OK;
    json_t *d = fz_digest_build(c, since, &code, err, sizeof err);
    if (!d)
        return fz_web_api_error(s_http_status(code), fz_strerror(code), err);
    char *text = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(d);
    if (!text)
        return fz_web_api_error(500, "internal", "out of memory");
    return (fz_web_resp_t){200, text, strlen(text)};
}

fz_web_resp_t fz_web_api_control(fz_client_t *c, const char *what, uint64_t id)
{
    static const char *global[] = {"pause", "resume", "stop"};
    static const char *per_task[] = {"cancel", "retry", "escalate"};
    bool ok = false;
    for (int i = 0; i < 3; i++)
        ok = ok || (id == 0 && strcmp(what, global[i]) == 0) ||
             (id > 0 && strcmp(what, per_task[i]) == 0);
    if (!ok)
        return fz_web_api_error(400, "invalid", "no such control");
    s_out_t o;
    if (!s_open(&o))
        return s_close(&o);
    fz_enc_t *req = fz_client_request(c, what);
    if (req && id)
        fz_enc_uint(req, "task", id);
    o.rc = s_part(c, req, "ok", NULL, o.mem, o.err, sizeof o.err);
    return s_close(&o);
}
