/* -drive options: the part every disk device shares (hw/drive.h). */
#include "hw/drive.h"

#include "util/log.h"
#include "util/parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int drive_spec_parse(const char *spec, struct drive_spec *d)
{
    memset(d, 0, sizeof(*d));
    d->index = -1;
    if (keyval_parse(spec, NULL, &d->kv)) {
        memset(&d->kv, 0, sizeof(d->kv));
        log_error("-drive %s: not a drive description (file=PATH,format=...)", spec);
        return -EINVAL;
    }
    const char *s;
    uint64_t v;
    const char *media = keyval_get(&d->kv, "media");
    if (!(s = keyval_get(&d->kv, "file")) || !*s) {
        if (!media || strcmp(media, "cdrom")) {   /* only a CD drive may start empty */
            log_error("-drive %s: no file= given", spec);
            return -EINVAL;
        }
    } else if (!(d->file = strdup(s))) {
        return -ENOMEM;
    }
    if ((s = keyval_get(&d->kv, "format")) && block_parse_format(s, &d->open.format)) {
        log_error("-drive %s: format '%s' is not raw or qcow2", spec, s);
        return -EINVAL;
    }
    if ((s = keyval_get(&d->kv, "readonly")) && parse_bool(s, &d->open.read_only)) {
        log_error("-drive %s: readonly '%s' is not on or off", spec, s);
        return -EINVAL;
    }
    if ((s = keyval_get(&d->kv, "cache")) && block_parse_cache(s, &d->open.cache)) {
        log_error("-drive %s: cache '%s' is not writeback, writethrough, none, directsync or unsafe", spec, s);
        return -EINVAL;
    }
    if ((s = keyval_get(&d->kv, "discard"))) {
        if (!strcmp(s, "unmap") || !strcmp(s, "on")) {
            d->discard_unmap = true;
        } else if (strcmp(s, "ignore") && strcmp(s, "off")) {
            log_error("-drive %s: discard '%s' is not ignore or unmap", spec, s);
            return -EINVAL;
        }
    }
    if ((s = keyval_get(&d->kv, "index"))) {
        if (parse_u64(s, 0, 255, &v)) {
            log_error("-drive %s: index '%s' is not a number (0-255)", spec, s);
            return -EINVAL;
        }
        d->index = (int)v;
    }
    if ((s = keyval_get(&d->kv, "serial"))) {
        size_t n = strlen(s);   /* ATA's and virtio's IDs keep 20 bytes */
        memcpy(d->serial, s, n < sizeof(d->serial) - 1 ? n : sizeof(d->serial) - 1);
        d->has_serial = true;
    }
    d->itf = keyval_get(&d->kv, "if");
    d->media = keyval_get(&d->kv, "media");
    if (d->media && strcmp(d->media, "disk") && strcmp(d->media, "cdrom")) {
        log_error("-drive %s: media '%s' is not disk or cdrom", spec, d->media);
        return -EINVAL;
    }
    keyval_get(&d->kv, "id");
    if ((s = keyval_unused(&d->kv))) {
        log_error("-drive %s: unknown parameter '%s'", spec, s);
        return -EINVAL;
    }
    return 0;
}

void drive_spec_free(struct drive_spec *d)
{
    free(d->file);
    d->file = NULL;
    keyval_free(&d->kv);
}
