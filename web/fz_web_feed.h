/*  fz_web_feed: the broker's PUB stream into fz-web's hub (fz_web_hub) and counts
    (fz_web_stats), with gaps filled as fz-watch fills them: when the event numbers (seq) jump,
    the missed events are asked from the broker (`events since LAST`) and published first, in
    order, each once; what the broker no longer holds is counted as missed; a broker.started
    starts a new numbering. Runs in fz-web's main thread; the hub and stats are shared. */

#ifndef FZ_WEB_FEED_H
#define FZ_WEB_FEED_H

#include "fz_web_hub.h"
#include "fz_web_metrics.h"

typedef struct fz_web_feed_t fz_web_feed_t;

/* A feed from the endpoints (NULL: $FZ_BROKER / $FZ_EVENTS, then the defaults) into hub and
   stats, which the caller keeps (they must outlive the feed). NULL on no memory. */
fz_web_feed_t *fz_web_feed_new(const char *broker, const char *events, fz_web_hub_t *hub,
                               fz_web_stats_t *stats);
void fz_web_feed_destroy(fz_web_feed_t **self_p);

/* Reads events until SIGINT/SIGTERM (fz_net_interrupted). Returns FZ_EXIT_OK, or
   FZ_EXIT_USAGE (said on stderr) when the event endpoint cannot be used. */
int fz_web_feed_run(fz_web_feed_t *self);

#endif
