/*  fz_web_scrape: what GET /metrics answers, gathered from broker requests at scrape time
    (status, list per state for the model breakdown, workers, cost by model and by class) and
    from what fz-web counted itself (fz_web_stats, fz_web_hub), as Prometheus text
    (fz_web_metrics writes the lines). A broker that does not answer gives fz_broker_up 0 and
    fz-web's own families only. */

#ifndef FZ_WEB_SCRAPE_H
#define FZ_WEB_SCRAPE_H

#include <stddef.h>

#include "fz_client.h"
#include "fz_web_hub.h"
#include "fz_web_metrics.h"

/* The whole exposition as a malloc'd text (the caller frees it), its length in *len_p; NULL
   on no memory. Makes its requests on client. */
char *fz_web_scrape(fz_client_t *client, fz_web_stats_t *stats, fz_web_hub_t *hub, size_t *len_p);

#endif
