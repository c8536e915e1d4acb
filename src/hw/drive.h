/* QEMU's -drive options, parsed once for every disk device (virtio-blk-pci, ide-hd): the image
 * and how to open it, and the properties that say where the disk goes. Each device then refuses
 * what it cannot be (an if= or media= of another kind, an index it has no place for). */
#ifndef QKVM_HW_DRIVE_H
#define QKVM_HW_DRIVE_H
#include <stdbool.h>

#include "block/block.h"
#include "util/parse.h"

struct drive_spec {
    char *file;                    /* NULL only for an empty CD drive (media=cdrom, no file=) */
    struct block_open_opts open;   /* format, readonly, cache */
    bool discard_unmap;            /* discard=unmap|on */
    const char *itf;               /* if=, or NULL; points into the spec's own copy */
    const char *media;             /* media=, or NULL */
    int index;                     /* index=, or -1 */
    char serial[21];               /* serial=, NUL-terminated; "" when not given */
    bool has_serial;
    struct kvlist kv;              /* the parsed options the pointers above point into */
};

/* Parses spec ("file=PATH,format=raw,..."). Unknown keys and bad values are one error line
 * naming spec, and -EINVAL; -ENOMEM. Call drive_spec_free either way. */
int drive_spec_parse(const char *spec, struct drive_spec *d);
void drive_spec_free(struct drive_spec *d);

#endif
