/*  fz_web_guard: who may use fz-web's controls (pure: strings in, a verdict out).

    A control (pause, resume, stop, cancel, retry, escalate) passes only if
    - an admin token is configured (--admin-token-file) and the request carries it in the
      X-FZ-Token header (or Authorization: Bearer TOKEN), compared in constant time; never a
      cookie, so another site cannot make a browser send it;
    - its Host is one this server answers to (so a DNS-rebound name is refused), and
    - its Origin, when the browser sends one, is this same origin (http://HOST).
    Every request, controls or not, must pass the Host check. */

#ifndef FZ_WEB_GUARD_H
#define FZ_WEB_GUARD_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    FZ_WEB_OK = 0,
    FZ_WEB_BAD_HOST,   /* 421/403: a Host this server does not answer to */
    FZ_WEB_CROSS_SITE, /* 403: Origin is another site */
    FZ_WEB_NO_ADMIN,   /* 403: controls are off (no --admin-token-file) */
    FZ_WEB_NO_TOKEN,   /* 401: no token, or the wrong one */
} fz_web_verdict_t;

/* The HTTP status for a verdict (200 for OK) and a short reason for people. */
int fz_web_verdict_status(fz_web_verdict_t v);
const char *fz_web_verdict_text(fz_web_verdict_t v);

/* True if host (a Host header, "name:port" or "[v6]:port") is one a server listening on
   listen_host:port answers to: the listen host itself, localhost, 127.0.0.1, [::1] (when
   listening on a loopback or wildcard address), any IP literal (when listening on a
   wildcard address), or one of the names in allowed (comma-separated, may be NULL); the
   port must be the listening port. */
bool fz_web_host_ok(const char *host, const char *listen_host, int port, const char *allowed);

/* The verdict for a request with these headers (each may be NULL) when the configured
   token is `token` (NULL: controls off). */
fz_web_verdict_t fz_web_guard_control(const char *host, const char *origin, const char *x_token,
                                      const char *authorization, const char *token,
                                      const char *listen_host, int port, const char *allowed);

/* Constant-time comparison of two NUL-terminated strings (time depends on b's length only). */
bool fz_web_token_equal(const char *a, const char *b);

#endif
