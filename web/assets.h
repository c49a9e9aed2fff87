/*
 * assets.h — the dashboard's static files, embedded at build time
 * (scripts/embed-assets.sh): its own app.js and style.css, and uPlot,
 * vendored from npm (web/assets/package.json) for the throughput chart.
 */
#ifndef PGWORK_WEB_ASSETS_H
#define PGWORK_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *name; /* as in /assets/NAME */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t size;
};

extern const struct web_asset web_assets[];
extern const int web_asset_count;

/* The asset called name, or NULL. */
const struct web_asset *assets_find(const char *name);

#endif
