/* The block layer's whole-image operations (block.h: create, check, make_empty, set_backing,
 * amend; snapshot.h: snapshots and the VM state area): the image's lock, then the driver's
 * operation. The formats implement them; nothing here knows one by name. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"

static const struct block_driver *const formats[] = { &block_driver_raw, &block_driver_qcow2 };

int block_create(const char *fmt, const char *path, const struct block_create_opts *o,
                 char *err)
{
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
        if (!strcmp(fmt, formats[i]->name) && formats[i]->create)
            return formats[i]->create(path, o, err);
    return block_seterr(err, -EINVAL, "Unknown file format '%s'", fmt);
}

/* Runs op under the image's lock, or -ENOTSUP when the driver has none. */
#define LOCKED_OP(bs, op, ...)                                                                \
    do {                                                                                      \
        if (!(bs)->drv->op)                                                                   \
            return -ENOTSUP;                                                                  \
        block_lock(bs);                                                                       \
        int r_ = (bs)->drv->op(bs, __VA_ARGS__);                                              \
        block_unlock(bs);                                                                     \
        return r_;                                                                            \
    } while (0)

int block_check(struct block *bs, int fix, struct block_check_result *res, FILE *log)
{
    memset(res, 0, sizeof(*res));
    if (fix && bs->read_only)
        return -EROFS;
    LOCKED_OP(bs, check, fix, res, log);
}

int block_make_empty(struct block *bs)
{
    if (bs->read_only)
        return -EROFS;
    if (!bs->drv->make_empty)
        return -ENOTSUP;
    block_lock(bs);
    int r = bs->drv->make_empty(bs);
    block_unlock(bs);
    return r;
}

int block_set_backing(struct block *bs, const char *name, const char *fmt)
{
    if (bs->read_only)
        return -EROFS;
    LOCKED_OP(bs, set_backing, name, fmt);
}

int block_amend(struct block *bs, int version, int lazy, char *err)
{
    if (bs->read_only)
        return block_seterr(err, -EROFS, "The image is read-only");
    if (!bs->drv->amend)
        return block_seterr(err, -ENOTSUP, "Format driver '%s' does not support option "
                            "amendment", bs->drv->name);
    LOCKED_OP(bs, amend, version, lazy, err);
}

int block_get_luks_info(struct block *bs, struct luks_info *li)
{
    LOCKED_OP(bs, luks_info, li);
}

int block_snapshot_list(struct block *bs, struct block_snapshot **out, int *n)
{
    *out = NULL;
    *n = 0;
    LOCKED_OP(bs, snapshot_list, out, n);
}

void block_snapshot_list_free(struct block_snapshot *list, int n)
{
    for (int i = 0; list && i < n; i++) {
        free(list[i].id);
        free(list[i].name);
    }
    free(list);
}

int block_snapshot_find(const struct block_snapshot *list, int n, const char *id_or_name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i].id, id_or_name))
            return i;
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i].name, id_or_name))
            return i;
    return -ENOENT;
}

int block_snapshot_create(struct block *bs, const struct block_snapshot *sn)
{
    if (!sn->name || !*sn->name)
        return -EINVAL;
    if (bs->read_only)
        return -EROFS;
    LOCKED_OP(bs, snapshot_create, sn);
}

int block_snapshot_goto(struct block *bs, const char *id_or_name)
{
    if (bs->read_only)
        return -EROFS;
    LOCKED_OP(bs, snapshot_goto, id_or_name);
}

int block_snapshot_delete(struct block *bs, const char *id, const char *name)
{
    if (!id && !name)
        return -EINVAL;
    if (bs->read_only)
        return -EROFS;
    LOCKED_OP(bs, snapshot_delete, id, name);
}

int block_snapshot_delete_by(struct block *bs, const char *id_or_name)
{
    struct block_snapshot *l;
    int n, r = block_snapshot_list(bs, &l, &n);
    if (r)
        return r;
    int i = block_snapshot_find(l, n, id_or_name);
    if (i >= 0)
        r = block_snapshot_delete(bs, l[i].id, NULL);
    block_snapshot_list_free(l, n);
    return i < 0 ? i : r;
}

int block_snapshot_load_tmp(struct block *bs, const char *id, const char *name)
{
    if (!id && !name)
        return -EINVAL;
    if (!bs->read_only)
        return -EROFS;
    LOCKED_OP(bs, snapshot_load_tmp, id, name);
}

int block_vmstate_write(struct block *bs, uint64_t pos, const void *buf, size_t len)
{
    if (bs->read_only)
        return -EROFS;
    if (!len)
        return 0;
    LOCKED_OP(bs, vmstate_rw, pos, (void *)buf, len, true);
}

int block_vmstate_read(struct block *bs, uint64_t pos, void *buf, size_t len)
{
    if (!len)
        return 0;
    LOCKED_OP(bs, vmstate_rw, pos, buf, len, false);
}

int block_snapshot_vmstate_read(struct block *bs, const char *id_or_name, uint64_t pos, void *buf,
                                size_t len)
{
    if (!len)
        return 0;
    LOCKED_OP(bs, snapshot_vmstate_read, id_or_name, pos, buf, len);
}
