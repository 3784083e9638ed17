/*  testdir: a fresh folder for one unit test, under $TMPDIR (scripts/test points it at a
    folder of the run, on a tmpfs when there is one) or /tmp. Header-only: each test binary
    that makes folders includes it. */

#ifndef FZ_TESTDIR_H
#define FZ_TESTDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes $TMPDIR/PREFIX-XXXXXX (or /tmp/... when TMPDIR is unset or the name would not fit
   in n bytes) and writes its path into buf; returns buf, or NULL if mkdtemp failed. */
static inline char *fz_testdir(char *buf, size_t n, const char *prefix)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base || strlen(base) + strlen(prefix) + 9 > n)
        base = "/tmp";
    snprintf(buf, n, "%s/%s-XXXXXX", base, prefix);
    return mkdtemp(buf);
}

#endif
