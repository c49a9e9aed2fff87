/* assets.c — look-up in the embedded table (assets.h). */
#include "assets.h"

#include <string.h>

const struct web_asset *assets_find(const char *name)
{
    for (int i = 0; i < web_asset_count; i++)
        if (strcmp(web_assets[i].name, name) == 0)
            return &web_assets[i];
    return NULL;
}
