/*  fz_web_guard: the Host, Origin and token checks; see fz_web_guard.h. */

#include "fz_web_guard.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int fz_web_verdict_status(fz_web_verdict_t v)
{
    static const int status[] = {200, 421, 403, 403, 401};
    return status[v];
}

const char *fz_web_verdict_text(fz_web_verdict_t v)
{
    static const char *text[] = {
        "ok",
        "this server does not answer to that Host",
        "cross-origin requests are refused",
        "controls are off: start fz-web with --admin-token-file to turn them on",
        "this needs the admin token (header X-FZ-Token)",
    };
    return text[v];
}

bool fz_web_token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned diff = la != lb;
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(a[i < la ? i : la] ^ b[i]);
    return diff == 0 && lb > 0;
}

static bool s_loopback(const char *h)
{
    return strcasecmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 ||
           strcmp(h, "[::1]") == 0 || strcmp(h, "::1") == 0;
}

static bool s_wildcard(const char *h)
{
    return !*h || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0;
}

static bool s_ip_literal(const char *h)
{
    if (*h == '[')
        return h[strlen(h) - 1] == ']';
    for (const char *p = h; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.')
            return false;
    return *h != 0;
}

static bool s_in_list(const char *name, const char *list)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncasecmp(p, name, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

bool fz_web_host_ok(const char *host, const char *listen_host, int port, const char *allowed)
{
    if (!host || !*host || strlen(host) > 255)
        return false;
    char name[256];
    const char *colon = strrchr(host, ':');
    if (!colon || (host[0] == '[' && colon < strchr(host, ']')))
        return false; /* browsers always send the port of a non-default one: ours is */
    size_t len = (size_t)(colon - host);
    memcpy(name, host, len);
    name[len] = 0;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (!len || *end || end == colon + 1 || p != port)
        return false;
    if (strcasecmp(name, listen_host) == 0 || s_in_list(name, allowed))
        return true;
    if (s_loopback(name) && (s_loopback(listen_host) || s_wildcard(listen_host)))
        return true;
    return s_wildcard(listen_host) && s_ip_literal(name);
}

fz_web_verdict_t fz_web_guard_control(const char *host, const char *origin, const char *x_token,
                                      const char *authorization, const char *token,
                                      const char *listen_host, int port, const char *allowed)
{
    if (!fz_web_host_ok(host, listen_host, port, allowed))
        return FZ_WEB_BAD_HOST;
    if (origin && (strncmp(origin, "http://", 7) != 0 || strcasecmp(origin + 7, host) != 0))
        return FZ_WEB_CROSS_SITE;
    if (!token || !*token)
        return FZ_WEB_NO_ADMIN;
    const char *given = x_token;
    if (!given && authorization && strncasecmp(authorization, "Bearer ", 7) == 0)
        given = authorization + 7;
    if (!given || !fz_web_token_equal(given, token))
        return FZ_WEB_NO_TOKEN;
    return FZ_WEB_OK;
}
