/*  fz_task: state names; see fz_task.h. */

#include "fz_task.h"

#include <string.h>

static const char *s_names[FZ_STATE_COUNT] = {"queued",  "waiting",   "held",
                                              "running", "retrying",  "succeeded",
                                              "failed",  "cancelled", "dep-failed"};

const char *fz_state_name(fz_state_t state)
{
    return (unsigned)state < FZ_STATE_COUNT ? s_names[state] : "unknown";
}

int fz_state_from_name(const char *name)
{
    for (int i = 0; name && i < FZ_STATE_COUNT; i++)
        if (strcmp(s_names[i], name) == 0)
            return i;
    return -1;
}

bool fz_state_final(fz_state_t state)
{
    return state >= FZ_STATE_SUCCEEDED;
}
