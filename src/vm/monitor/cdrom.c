/* The monitor's removable media: eject and blockdev-change-medium for the IDE CD-ROM drives, and
 * their entries in query-block, with QEMU 7.2's argument names, errors and events (its
 * blockdev.c and block/qapi-sysemu.c: the tray opens, the medium goes, a new one goes in, the
 * tray closes, DEVICE_TRAY_MOVED for each move; a tray the guest locked is not opened without
 * force, and the guest is asked to let go instead). Runs on the event loop, as every command. */
#include "vm/monitor/monitor.h"

#include "block/block.h"
#include "hw/ide.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int cd_fail(struct monitor_error *e, const char *cls, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int cd_fail(struct monitor_error *e, const char *cls, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->desc, sizeof(e->desc), fmt, ap);
    va_end(ap);
    e->cls = cls;
    return ret;
}

/* The CD drive that device= (its name, "ide1-cd0") or id= (its device path) names. */
static int cd_find(struct machine *m, const struct json_value *a, struct ide_channel **ch, int *index,
                   struct monitor_error *e)
{
    const struct json_value *dev = json_get(a, "device"), *id = json_get(a, "id");
    if (!dev && !id)
        return cd_fail(e, "GenericError", -EINVAL, "Need exactly one of 'device' and 'id'");
    const char *want = dev ? dev->s : id->s;
    for (int i = 0; i < 4; i++) {
        char name[32], qdev[64];
        struct ide_cd_info info;
        ide_cd_name(i, name, sizeof(name));
        ide_cd_qdev(i, qdev, sizeof(qdev));
        if (strcmp(want, dev ? name : qdev) || ide_channel_find(m, i / 2, ch) || !ide_channel_cd_info(*ch, i % 2, &info))
            continue;
        *index = i;
        return 0;
    }
    return cd_fail(e, "DeviceNotFound", -ENOENT, "Device '%s' not found", want);
}

static void empty_object(struct json_writer *w)
{
    json_object_begin(w, NULL);
    json_object_end(w);
}

/* Takes the medium out and leaves the tray open: DEVICE_TRAY_MOVED when it was shut. */
static int cd_open_tray(struct machine *m, struct ide_channel *ch, int index, bool force, const char *name,
                        struct monitor_error *e)
{
    struct ide_cd_info info;
    ide_channel_cd_info(ch, index % 2, &info);
    int ret = ide_channel_change_medium(ch, index % 2, NULL, force);
    if (ret == -EBUSY)
        return cd_fail(e, "GenericError", ret,
                       "Device '%s' is locked and force was not specified, wait for tray to open and try again", name);
    if (!ret && !info.tray_open)
        ide_cd_emit_tray(m, index, true);
    return ret;
}

int monitor_cmd_eject(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                      struct monitor_error *e)
{
    struct ide_channel *ch;
    int index, ret = cd_find(ctx->m, a, &ch, &index, e);
    if (ret)
        return ret;
    const struct json_value *force = json_get(a, "force");
    char name[32];
    ide_cd_name(index, name, sizeof(name));
    if (!(ret = cd_open_tray(ctx->m, ch, index, force && force->b, name, e)))
        empty_object(w);
    return ret;
}

int monitor_cmd_change_medium(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                              struct monitor_error *e)
{
    struct ide_channel *ch;
    int index, ret = cd_find(ctx->m, a, &ch, &index, e);
    if (ret)
        return ret;
    const struct json_value *file = json_get(a, "filename"), *fmt = json_get(a, "format");
    const struct json_value *force = json_get(a, "force"), *mode = json_get(a, "read-only-mode");
    struct block_open_opts o = { .read_only = true };
    if (fmt && block_parse_format(fmt->s, &o.format))
        return cd_fail(e, "GenericError", -EINVAL, "Unknown driver '%s'", fmt->s);
    if (mode && strcmp(mode->s, "retain") && strcmp(mode->s, "read-only") && strcmp(mode->s, "read-write"))
        return cd_fail(e, "GenericError", -EINVAL, "Parameter 'read-only-mode' does not accept value '%s'", mode->s);
    /* the image first: a file that cannot be opened leaves the drive as it was */
    struct block *bs;
    char err[BLOCK_ERR_MAX];
    if ((ret = block_open(file->s, &o, &bs, err)))
        return cd_fail(e, "GenericError", ret, "%s", err);
    char name[32];
    ide_cd_name(index, name, sizeof(name));
    if ((ret = cd_open_tray(ctx->m, ch, index, force && force->b, name, e))) {
        block_close(bs);
        return ret;
    }
    if ((ret = ide_channel_change_medium(ch, index % 2, bs, true)))
        return cd_fail(e, "GenericError", ret, "%s", strerror(-ret));
    ide_cd_emit_tray(ctx->m, index, false);
    empty_object(w);
    return 0;
}

void monitor_write_cd_blocks(struct machine *m, struct json_writer *w)
{
    for (int i = 0; i < 4; i++) {
        struct ide_channel *ch;
        struct ide_cd_info info;
        if (ide_channel_find(m, i / 2, &ch) || !ide_channel_cd_info(ch, i % 2, &info))
            continue;
        char name[32], qdev[64];
        ide_cd_name(i, name, sizeof(name));
        ide_cd_qdev(i, qdev, sizeof(qdev));
        json_object_begin(w, NULL);
        json_string(w, "io-status", "ok");
        json_string(w, "device", name);
        json_bool(w, "locked", info.locked);
        json_bool(w, "removable", true);
        if (info.has_medium) {
            json_object_begin(w, "inserted");
            json_bool(w, "ro", true);
            json_string(w, "drv", info.format);
            json_bool(w, "encrypted", false);
            json_string(w, "file", info.file);
            json_string(w, "node-name", name);
            json_int(w, "backing_file_depth", 0);
            json_object_end(w);
        }
        json_string(w, "qdev", qdev);
        json_bool(w, "tray_open", info.tray_open);
        json_string(w, "type", "unknown");
        json_object_end(w);
    }
}
