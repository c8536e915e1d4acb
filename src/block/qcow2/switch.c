/* Metadata changes that touch every table at once (snapshot create, apply, delete), made
 * atomic: the new active L1 and L2 tables, the snapshot table and a complete new refcount
 * structure are written past the end of the file, then one write of header bytes 24..72
 * switches to all of them.
 *
 * Why: such an operation must raise (or lower) the refcount of every cluster and flip the
 * COPIED flags of the L2 entries pointing at them; both live in different clusters, so done in
 * place, a crash between the two leaves "OFLAG_COPIED" errors that qemu-img check calls
 * corruption (and, with the snapshot table already written, a later write in place could
 * change a snapshot). Written beside the old metadata, a crash before the header write leaves
 * unreferenced clusters past the end of the refcounted area (not even leaks), and after it a
 * consistent image; the old tables become free space. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2/qcow2.h"

struct sw {
    struct qcow2_state *s;
    uint32_t *refs;
    uint64_t n;            /* entries of refs */
    uint64_t next;         /* next cluster to place new metadata at */
    uint8_t *l2;
};

static int grow(struct sw *w, uint64_t n)
{
    if (n <= w->n)
        return 0;
    uint32_t *r = realloc(w->refs, n * sizeof(*r));
    if (!r)
        return -ENOMEM;
    memset(r + w->n, 0, (n - w->n) * sizeof(*r));
    w->refs = r;
    w->n = n;
    return 0;
}

/* One more reference to each cluster of [off, off+len); -EIO for anything outside the file
 * as it was (a corrupt image: qkvm-img check -r all first). */
static int inc(struct sw *w, uint64_t off, uint64_t len, uint64_t limit)
{
    if (!len)
        return 0;
    struct qcow2_state *s = w->s;
    uint64_t first = off >> s->cluster_bits, last = (off + len - 1) >> s->cluster_bits;
    if (off + len < off || last >= limit || first == 0)
        return -EIO;
    for (uint64_t i = first; i <= last; i++)
        if (++w->refs[i] == 0)
            return -ERANGE;
    return 0;
}

static uint64_t entry_host(uint64_t e)
{
    return (e & QCOW2_OFLAG_COMPRESSED) ? 0 : e & QCOW2_OFFSET_MASK;
}

/* References of the data clusters in the L2 table at l2off (read into w->l2). */
static int count_l2(struct sw *w, uint64_t l2off, uint64_t limit)
{
    struct qcow2_state *s = w->s;
    if ((l2off & (s->cluster_size - 1)) || (l2off >> s->cluster_bits) >= limit)
        return -EIO;
    int r = bfile_pread(s->f, l2off, w->l2, s->cluster_size);
    if (r)
        return r;
    for (uint32_t j = 0; j < s->l2_entries && !r; j++) {
        uint64_t e = be64_get(w->l2 + (size_t)j * s->l2_entry_bytes);
        if (e & QCOW2_OFLAG_COMPRESSED) {
            uint64_t o, l;
            qcow2_compressed_range(s, e, &o, &l);
            r = inc(w, o, l, limit);
        } else if (entry_host(e)) {
            if (entry_host(e) & (s->cluster_size - 1))
                return -EIO;
            r = inc(w, entry_host(e), s->cluster_size, limit);
        }
    }
    return r;
}

static int read_l1(struct qcow2_state *s, uint64_t off, uint32_t n, uint64_t **out)
{
    uint64_t *t = calloc(n ? n : 1, 8);
    if (!t)
        return -ENOMEM;
    int r = n ? bfile_pread(s->f, off, t, (size_t)n * 8) : 0;
    for (uint32_t i = 0; !r && i < n; i++)
        t[i] = be64_get(&t[i]);
    if (r)
        free(t);
    else
        *out = t;
    return r;
}

/* Writes len bytes at the next free clusters past the old end; returns their offset. */
static int place(struct sw *w, const void *buf, uint64_t len, uint64_t *off)
{
    struct qcow2_state *s = w->s;
    uint64_t ncl = (len + s->cluster_size - 1) >> s->cluster_bits;
    *off = w->next << s->cluster_bits;
    int r = grow(w, w->next + ncl);
    if (!r)
        r = bfile_pwrite(s->f, *off, buf, len);
    if (!r)
        r = inc(w, *off, len, w->next + ncl);
    w->next += ncl;
    return r;
}

int qcow2_switch_metadata(struct qcow2_state *s, const uint64_t *src_l1, uint32_t l1_size,
                          struct qcow2_snapshot *snaps, uint32_t nb, uint64_t size,
                          bool *switched)
{
    *switched = false;
    int r = qcow2_flush_all(s);
    if (r)
        return r;
    int64_t fsz = bfile_size(s->f);
    if (fsz < 0)
        return (int)fsz;
    struct sw w = { .s = s };
    uint64_t limit = ((uint64_t)fsz + s->cluster_size - 1) >> s->cluster_bits;
    uint64_t *nl1 = calloc(l1_size ? l1_size : 1, 8);
    uint8_t *snapbuf = NULL, *raw = NULL, *blk = NULL;
    uint64_t snapsize = 0;
    w.l2 = malloc(s->cluster_size);
    if (!nl1 || !w.l2 || (r = grow(&w, limit + 1)))
        goto fail_nomem;
    w.next = limit;

    /* 1. what the snapshots reach, and the data of the active tables to be */
    for (uint32_t i = 0; i < nb && !r; i++) {
        uint64_t *l1;
        if ((r = read_l1(s, snaps[i].l1_off, snaps[i].l1_size, &l1)))
            break;
        r = inc(&w, snaps[i].l1_off, (uint64_t)snaps[i].l1_size * 8, limit);
        for (uint32_t k = 0; k < snaps[i].l1_size && !r; k++) {
            uint64_t t = l1[k] & QCOW2_OFFSET_MASK;
            if (t && !(r = inc(&w, t, s->cluster_size, limit)))
                r = count_l2(&w, t, limit);
        }
        free(l1);
    }
    for (uint32_t k = 0; k < l1_size && !r; k++) {
        uint64_t t = src_l1[k] & QCOW2_OFFSET_MASK;
        if (t)
            r = count_l2(&w, t, limit);
    }
    if (r)
        goto fail;
    for (uint64_t i = 0; i < limit; i++)
        if (w.refs[i] > s->refcount_max) {
            r = -ERANGE;    /* refcount_bits too small for one more reference */
            goto fail;
        }

    /* 2. the active L2 tables, copied with COPIED set where the cluster has one reference */
    for (uint32_t k = 0; k < l1_size; k++) {
        uint64_t t = src_l1[k] & QCOW2_OFFSET_MASK;
        if (!t)
            continue;
        if ((r = bfile_pread(s->f, t, w.l2, s->cluster_size)))
            goto fail;
        for (uint32_t j = 0; j < s->l2_entries; j++) {
            uint8_t *ep = w.l2 + (size_t)j * s->l2_entry_bytes;
            uint64_t e = be64_get(ep), h = entry_host(e);
            if (!h)
                continue;
            e = w.refs[h >> s->cluster_bits] == 1 ? e | QCOW2_OFLAG_COPIED
                                                   : e & ~QCOW2_OFLAG_COPIED;
            be64_put(ep, e);
        }
        uint64_t off;
        if ((r = place(&w, w.l2, s->cluster_size, &off)))
            goto fail;
        nl1[k] = off | QCOW2_OFLAG_COPIED;
    }

    /* 3. the L1 table and the snapshot table */
    uint64_t l1off = 0, snapoff = 0;
    raw = calloc(1, (size_t)l1_size * 8 + 8);
    if (!raw)
        goto fail_nomem;
    for (uint32_t k = 0; k < l1_size; k++)
        be64_put(raw + (size_t)k * 8, nl1[k]);
    if (l1_size && (r = place(&w, raw, (uint64_t)l1_size * 8, &l1off)))
        goto fail;
    if ((r = qcow2_encode_snapshots(s, snaps, nb, &snapbuf, &snapsize)))
        goto fail;
    if (snapsize && (r = place(&w, snapbuf, snapsize, &snapoff)))
        goto fail;
    w.refs[0]++;
    if ((r = inc(&w, s->crypt_off, s->crypt_len, limit)))
        goto fail;

    /* 4. refcount blocks for everything up to the end, then the table, counting themselves */
    uint64_t per_cl = s->cluster_size / 8, rbe = 1ull << s->rb_bits;
    uint64_t start = w.next, tcl = 1, nblk = 0;
    for (int it = 0; it < 64; it++) {
        uint64_t total = start + tcl + nblk;
        uint64_t nb2 = (total + rbe - 1) / rbe, tcl2 = (nb2 + per_cl - 1) / per_cl;
        if (nb2 == nblk && tcl2 == tcl)
            break;
        nblk = nb2;
        tcl = tcl2;
    }
    if ((tcl << s->cluster_bits) > QCOW2_MAX_RT_BYTES) {
        r = -EFBIG;
        goto fail;
    }
    uint64_t total = start + tcl + nblk;
    free(raw);
    raw = calloc(tcl, s->cluster_size);
    blk = malloc(s->cluster_size);
    if (!raw || !blk || (r = grow(&w, total)))
        goto fail_nomem;
    for (uint64_t i = start; i < total; i++)
        w.refs[i] = 1;
    for (uint64_t k = 0; k < nblk; k++) {
        memset(blk, 0, s->cluster_size);
        for (uint64_t i = k * rbe; i < (k + 1) * rbe && i < total; i++)
            qcow2_refcount_set_entry(s, blk, i - k * rbe, w.refs[i]);
        uint64_t off = (start + tcl + k) << s->cluster_bits;
        if ((r = bfile_pwrite(s->f, off, blk, s->cluster_size)))
            goto fail;
        be64_put(raw + k * 8, off);
    }
    if ((r = bfile_pwrite(s->f, start << s->cluster_bits, raw, tcl << s->cluster_bits)) ||
        (r = bfile_flush(s->f)))
        goto fail;
    uint64_t *rt = calloc(tcl * per_cl, 8);
    if (!rt)
        goto fail_nomem;
    for (uint64_t i = 0; i < tcl * per_cl; i++)
        rt[i] = be64_get(raw + i * 8);

    /* 5. the switch: size, L1, refcount table and snapshot table in one sector write */
    uint8_t h[48];
    be64_put(h, size);
    be32_put(h + 8, s->crypt_method);
    be32_put(h + 12, l1_size);
    be64_put(h + 16, l1off);
    be64_put(h + 24, start << s->cluster_bits);
    be32_put(h + 32, (uint32_t)tcl);
    be32_put(h + 36, nb);
    be64_put(h + 40, nb ? snapoff : 0);
    if ((r = bfile_pwrite(s->f, 24, h, sizeof(h)))) {
        free(rt);
        goto fail;
    }
    /* switched: from here the new tables are the image, even if the flush fails */
    *switched = true;
    r = bfile_flush(s->f);
    free(s->rt);
    s->rt = rt;
    s->rt_off = start << s->cluster_bits;
    s->rt_clusters = (uint32_t)tcl;
    s->rt_entries = tcl * per_cl;
    free(s->l1);
    s->l1 = nl1;
    nl1 = NULL;
    s->l1_off = l1off;
    s->l1_size = l1_size;
    s->snapshots_off = nb ? snapoff : 0;
    s->snapshots_size = snapsize;
    s->nb_snapshots = nb;
    s->bs->size = size;
    qcow2_cache_clear(&s->l2_cache);
    qcow2_cache_clear(&s->rb_cache);
    s->free_cluster_index = 0;
    s->min_freed = UINT64_MAX;
    s->free_byte_offset = 0;
    s->cbuf_entry = 0;
    goto out;
fail_nomem:
    if (!r)
        r = -ENOMEM;
fail:
    /* nothing points past the old end yet: give the space back */
    bfile_truncate(s->f, (uint64_t)fsz);
out:
    free(nl1);
    free(w.refs);
    free(w.l2);
    free(snapbuf);
    free(raw);
    free(blk);
    return r;
}
