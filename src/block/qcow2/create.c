/* Creating qcow2 images: a minimal image (header, refcount table, one refcount block), then
 * opened and grown with the normal machinery (L1 table, LUKS header, preallocation). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/luks.h"
#include "block/qcow2/qcow2.h"

/* Writes the minimal image into f, which bfile_create made empty under the writer's lock. */
static int write_minimal(struct bfile *f, const char *path, const struct block_create_opts *o,
                         unsigned cbits, unsigned rorder, char *err)
{
    uint32_t cs = 1u << cbits;
    uint8_t *b = calloc(3, cs);
    if (!b)
        return block_seterr(err, -ENOMEM, "Out of memory");
    be32_put(b, QCOW2_MAGIC);
    be32_put(b + 4, o->version);
    be32_put(b + 20, cbits);
    be64_put(b + 48, cs);           /* refcount table in cluster 1 */
    be32_put(b + 56, 1);
    if (o->version >= 3) {
        uint64_t incompat = 0;
        if (o->extended_l2)
            incompat |= QCOW2_INCOMPAT_EXTL2;
        if (o->compression_type)
            incompat |= QCOW2_INCOMPAT_COMPRESSION;
        be64_put(b + 72, incompat);
        be64_put(b + 80, o->lazy_refcounts ? QCOW2_COMPAT_LAZY : 0);
        be32_put(b + 96, rorder);
        be32_put(b + 100, 112);
        b[104] = (uint8_t)o->compression_type;
    }
    be64_put(b + cs, 2ull * cs);    /* refcount block in cluster 2 */
    struct qcow2_state tmp = { .refcount_order = rorder };
    for (int i = 0; i < 3; i++)
        qcow2_refcount_set_entry(&tmp, b + 2 * cs, i, 1);
    int r = bfile_pwrite(f, 0, b, 3ull * cs);
    if (r)
        block_seterr(err, r, "Could not write '%s': %s", path, strerror(-r));
    free(b);
    return r;
}

int qcow2_set_backing(struct qcow2_state *s, const char *name, const char *fmt)
{
    free(s->backing_name);
    free(s->backing_fmt);
    s->backing_name = name && *name ? strdup(name) : NULL;
    s->backing_fmt = s->backing_name && fmt && *fmt ? strdup(fmt) : NULL;
    free(s->bs->backing_name);
    free(s->bs->backing_fmt);
    s->bs->backing_name = s->backing_name ? strdup(s->backing_name) : NULL;
    s->bs->backing_fmt = s->backing_fmt ? strdup(s->backing_fmt) : NULL;
    return qcow2_update_header(s);
}

static int write_zeros(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[65536];
    for (uint64_t p = 0; p < len;) {
        uint64_t n = len - p < sizeof(zeros) ? len - p : sizeof(zeros);
        int r = bfile_pwrite(s->f, off + p, zeros, n);
        if (r)
            return r;
        p += n;
    }
    return 0;
}

static int preallocate(struct qcow2_state *s, int mode)
{
    uint64_t cs = s->cluster_size, n = (s->bs->size + cs - 1) / cs;
    uint64_t end = 0;
    int r = 0;
    for (uint64_t c = 0; c < n;) {
        uint64_t k = s->l2_entries - (c % s->l2_entries);
        if (k > n - c)
            k = n - c;
        if ((r = qcow2_prepare_l2(s, c * cs)))
            return r;
        int64_t h = qcow2_alloc_clusters(s, k);
        if (h < 0)
            return (int)h;
        end = (uint64_t)h + k * cs;
        if (mode >= 2) {
            __atomic_store_n(&s->f->unsynced, 1, __ATOMIC_SEQ_CST);   /* bfile_flush must sync */
            if (mode == 2 && fallocate(s->f->fd, 0, h, k * cs) == 0)
                r = 0;
            else
                r = write_zeros(s, h, k * cs);
            if (r)
                return r;
        }
        if ((r = qcow2_map_range(s, c * cs, (uint64_t)h, k)))
            return r;
        c += k;
    }
    r = qcow2_flush_all(s);
    int64_t fsz = bfile_size(s->f);
    if (!r && fsz >= 0 && (uint64_t)fsz < end)
        r = bfile_truncate(s->f, end);
    return r;
}

int qcow2_create(const char *path, const struct block_create_opts *in, char *err)
{
    struct block_create_opts o = *in;
    if (!o.version)
        o.version = 3;
    if (!o.cluster_size)
        o.cluster_size = 65536;
    if (!o.refcount_bits)
        o.refcount_bits = 16;
    unsigned cbits = 0;
    while ((1u << cbits) < o.cluster_size && cbits < 31)
        cbits++;
    if ((1u << cbits) != o.cluster_size || cbits < 9 || cbits > 21)
        return block_seterr(err, -EINVAL, "Cluster size must be a power of two between 512 "
                            "and 2048k");
    unsigned rorder = 0;
    while ((1 << rorder) < o.refcount_bits && rorder < 7)
        rorder++;
    if ((1 << rorder) != o.refcount_bits || rorder > 6)
        return block_seterr(err, -EINVAL, "Refcount width must be a power of two and may not "
                            "exceed 64 bits");
    if (o.version == 2) {
        if (o.lazy_refcounts)
            return block_seterr(err, -EINVAL, "Lazy refcounts only supported with "
                                "compatibility level 1.1 and above (use compat=1.1 or greater)");
        if (rorder != 4)
            return block_seterr(err, -EINVAL, "Different refcount widths than 16 bits require "
                                "compatibility level 1.1 or above (use compat=1.1 or greater)");
        if (o.extended_l2)
            return block_seterr(err, -EINVAL, "Extended L2 entries are only supported with "
                                "compatibility level 1.1 and above (use compat=1.1 or greater)");
        if (o.compression_type)
            return block_seterr(err, -EINVAL, "Non-zlib compression type is only supported with "
                                "compatibility level 1.1 and above (use compat=1.1 or greater)");
    }
    if (o.extended_l2 && cbits < 14)
        return block_seterr(err, -EINVAL, "Extended L2 entries are only supported with cluster "
                            "sizes of at least 16 KiB");
    if (o.backing_file && o.prealloc)
        return block_seterr(err, -EINVAL, "Backing file and preallocation can only be used at "
                            "the same time if extended_l2 is on");
    if (o.encrypt && !o.secret)
        return block_seterr(err, -EINVAL, "Parameter 'encrypt.key-secret' is required for cipher");
    struct bfile cf;
    int r = bfile_create(&cf, path, err);
    if (r)
        return r;
    if ((r = write_minimal(&cf, path, &o, cbits, rorder, err))) {
        bfile_close(&cf);
        return r;
    }
    struct block *bs;
    struct block_open_opts oo = { .format = BLOCK_FMT_QCOW2, .no_backing = true,
                                  .cache = BLOCK_CACHE_WRITEBACK };
    char sub[BLOCK_ERR_MAX];
    /* cf keeps the lock until the image's own open holds it: no other process gets in */
    r = block_open(path, &oo, &bs, sub);
    bfile_close(&cf);
    if (r)
        return block_seterr(err, r, "%s", sub);
    struct qcow2_state *s = block_qcow2(bs);
    uint64_t l1n = qcow2_l1_entries_for(s, o.size);
    if (l1n * 8 > QCOW2_MAX_L1_BYTES) {
        r = block_seterr(err, -EFBIG, "Image size too large for this cluster size");
        goto out;
    }
    if ((r = qcow2_grow_l1(s, l1n ? l1n : 1)))
        goto fail;
    bs->size = o.size;
    if (o.backing_file) {
        s->backing_name = strdup(o.backing_file);
        s->backing_fmt = o.backing_fmt ? strdup(o.backing_fmt) : NULL;
    }
    if (o.encrypt) {
        int64_t off = qcow2_alloc_clusters(s, (luks_header_size() + s->cluster_size - 1) >>
                                                  s->cluster_bits);
        if (off < 0) {
            r = (int)off;
            goto fail;
        }
        if ((r = luks_create(s->f, off, o.secret, o.secret_len, o.cipher_alg, o.cipher_mode,
                             o.ivgen_alg, o.hash_alg, o.iter_time_ms, &s->luks, &s->crypt_len,
                             sub))) {
            block_seterr(err, r, "%s", sub);
            goto out;
        }
        s->crypt_method = QCOW2_CRYPT_LUKS;
        s->crypt_off = off;
        /* the whole header area exists in the file (unused bytes read as zeros) */
        uint64_t end = (off + s->crypt_len + s->cluster_size - 1) & ~(uint64_t)(s->cluster_size - 1);
        int64_t fsz = bfile_size(s->f);
        if (fsz >= 0 && (uint64_t)fsz < end && (r = bfile_truncate(s->f, end)))
            goto fail;
    }
    if ((r = qcow2_flush_all(s)) || (r = qcow2_update_header(s)))
        goto fail;
    if (o.prealloc && (r = preallocate(s, o.prealloc)))
        goto fail;
    r = block_close(bs);
    if (r)
        return block_seterr(err, r, "Could not write '%s': %s", path, strerror(-r));
    return 0;
fail:
    block_seterr(err, r, "Could not create '%s': %s", path, strerror(-r));
out:
    block_close(bs);
    return r;
}
