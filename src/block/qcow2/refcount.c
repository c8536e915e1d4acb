/* Reference counts: reading and updating entries of any width (1 to 64 bits), allocating
 * clusters and bytes, growing the refcount structures, and deferred frees.
 *
 * Crash safety: a cluster's refcount is raised (and reaches the disk before any L2 table that
 * points at it, see cache.c) before anything points at it; a refcount is lowered only after
 * the tables that stopped pointing at the cluster are written (qcow2_process_frees); a freed
 * cluster is not handed out again before the next full flush. A crash thus leaks at worst. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2/qcow2.h"

uint64_t qcow2_refcount_get_entry(struct qcow2_state *s, const uint8_t *blk, uint64_t i)
{
    switch (s->refcount_order) {
    case 0: case 1: case 2: {
        unsigned bits = 1u << s->refcount_order;
        uint64_t bit = i * bits;
        return (blk[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    case 3: return blk[i];
    case 4: return be16_get(blk + i * 2);
    case 5: return be32_get(blk + i * 4);
    default: return be64_get(blk + i * 8);
    }
}

void qcow2_refcount_set_entry(struct qcow2_state *s, uint8_t *blk, uint64_t i, uint64_t v)
{
    switch (s->refcount_order) {
    case 0: case 1: case 2: {
        unsigned bits = 1u << s->refcount_order;
        uint64_t bit = i * bits;
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
        blk[bit / 8] = (uint8_t)((blk[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
        break;
    }
    case 3: blk[i] = (uint8_t)v; break;
    case 4: be16_put(blk + i * 2, (uint16_t)v); break;
    case 5: be32_put(blk + i * 4, (uint32_t)v); break;
    default: be64_put(blk + i * 8, v); break;
    }
}

int qcow2_check_in_file(struct qcow2_state *s, uint64_t off)
{
    uint64_t c = off & ~(uint64_t)(s->cluster_size - 1);
    if ((int64_t)c < s->file_end)
        return 0;
    s->file_end = bfile_size(s->f);
    return (int64_t)c < s->file_end ? 0 : -EIO;
}

static bool bad_table_offset(struct qcow2_state *s, uint64_t off)
{
    return (off & (s->cluster_size - 1)) || off < s->cluster_size ||
           (off & ~QCOW2_OFFSET_MASK) || qcow2_check_in_file(s, off);
}

int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster, uint64_t *ref)
{
    uint64_t idx = cluster >> s->rb_bits;
    *ref = 0;
    if (idx >= s->rt_entries || !s->rt[idx])
        return 0;
    if (bad_table_offset(s, s->rt[idx]))
        return -EIO;
    uint8_t *blk;
    int r = qcow2_cache_get(&s->rb_cache, s->rt[idx], false, &blk);
    if (r)
        return r;
    *ref = qcow2_refcount_get_entry(s, blk, cluster & ((1ull << s->rb_bits) - 1));
    return 0;
}

static bool in_range(uint64_t off, uint64_t len, uint64_t start, uint64_t size)
{
    return size && off < start + size && start < off + len;
}

bool qcow2_overlaps_metadata(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    if (off < s->cluster_size)
        return true;
    if (in_range(off, len, s->l1_off, (uint64_t)s->l1_size * 8) ||
        in_range(off, len, s->rt_off, (uint64_t)s->rt_clusters << s->cluster_bits) ||
        in_range(off, len, s->snapshots_off, s->snapshots_size) ||
        in_range(off, len, s->crypt_off, s->crypt_len))
        return true;
    /* active L2 tables and refcount blocks: a corrupt refcount must not hand them out */
    for (uint32_t i = 0; i < s->l1_size && i < 4096; i++)
        if (in_range(off, len, s->l1[i] & QCOW2_OFFSET_MASK, s->l1[i] ? s->cluster_size : 0))
            return true;
    for (uint64_t i = 0; i < s->rt_entries && i < 1024; i++)
        if (in_range(off, len, s->rt[i], s->rt[i] ? s->cluster_size : 0))
            return true;
    return false;
}

bool qcow2_overlaps_other_than_l2(struct qcow2_state *s, uint64_t off)
{
    uint64_t len = s->cluster_size;
    if (off < s->cluster_size ||
        in_range(off, len, s->l1_off, (uint64_t)s->l1_size * 8) ||
        in_range(off, len, s->rt_off, (uint64_t)s->rt_clusters << s->cluster_bits) ||
        in_range(off, len, s->snapshots_off, s->snapshots_size) ||
        in_range(off, len, s->crypt_off, s->crypt_len))
        return true;
    for (uint64_t i = 0; i < s->rt_entries && i < 1024; i++)
        if (s->rt[i] == off)
            return true;
    return false;
}

static int grow_refcount_table(struct qcow2_state *s, uint64_t min_entries);

/* Finds n free clusters at or after free_cluster_index, without taking them. */
static int find_free(struct qcow2_state *s, uint64_t n, uint64_t *out)
{
    uint64_t limit = (1ull << 56) >> s->cluster_bits;
    uint64_t c = s->free_cluster_index, run = 0;
    while (run < n) {
        if (c + run >= limit)
            return -ENOSPC;
        uint64_t ref;
        int r = qcow2_get_refcount(s, c + run, &ref);
        if (r)
            return r;
        if (ref || qcow2_overlaps_metadata(s, (c + run) << s->cluster_bits, s->cluster_size)) {
            c = c + run + 1;
            run = 0;
        } else {
            run++;
        }
    }
    *out = c;
    return 0;
}

static void note_freed(struct qcow2_state *s, uint64_t cluster)
{
    uint64_t off = cluster << s->cluster_bits;
    if (cluster < s->min_freed)
        s->min_freed = cluster;
    qcow2_cache_drop(&s->l2_cache, off);
    if (s->free_byte_offset && (s->free_byte_offset >> s->cluster_bits) == cluster)
        s->free_byte_offset = 0;
    s->cbuf_entry = 0;
}

/* Makes sure refcount block idx exists (allocating and hooking it in if not). */
static int ensure_block(struct qcow2_state *s, uint64_t idx)
{
    if (idx < s->rt_entries && s->rt[idx])
        return 0;
    if (idx >= s->rt_entries) {
        int r = grow_refcount_table(s, idx + 1);
        if (r)
            return r;
        if (s->rt[idx])
            return 0;
    }
    uint64_t c;
    int r = find_free(s, 1, &c);
    if (r)
        return r;
    s->free_cluster_index = c + 1;
    uint64_t off = c << s->cluster_bits;
    uint8_t *blk;
    if ((r = qcow2_cache_get(&s->rb_cache, off, true, &blk)))
        return r;
    bool self = (c >> s->rb_bits) == idx;
    if (self)
        qcow2_refcount_set_entry(s, blk, c & ((1ull << s->rb_bits) - 1), 1);
    /* The block is on disk before the table entry that makes it count. */
    if ((r = bfile_pwrite(s->f, off, blk, s->cluster_size)))
        return r;
    uint8_t e[8];
    be64_put(e, off);
    if ((r = bfile_pwrite(s->f, s->rt_off + idx * 8, e, 8)))
        return r;
    s->rt[idx] = off;
    if (!self)
        return qcow2_update_refcount(s, off, s->cluster_size, 1);
    return 0;
}

int qcow2_update_refcount(struct qcow2_state *s, uint64_t off, uint64_t len, int64_t addend)
{
    if (!len || !addend)
        return 0;
    /* negated in unsigned arithmetic: -addend overflows for INT64_MIN (64-bit refcounts) */
    uint64_t mag = addend < 0 ? 0 - (uint64_t)addend : (uint64_t)addend;
    uint64_t first = off >> s->cluster_bits;
    uint64_t last = (off + len - 1) >> s->cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        uint64_t idx = c >> s->rb_bits;
        int r;
        if (addend > 0 && (r = ensure_block(s, idx)))
            return r;
        if (idx >= s->rt_entries || !s->rt[idx])
            return -EIO;     /* lowering a refcount nobody holds */
        if (bad_table_offset(s, s->rt[idx]))
            return -EIO;
        uint8_t *blk;
        if ((r = qcow2_cache_get(&s->rb_cache, s->rt[idx], false, &blk)))
            return r;
        uint64_t i = c & ((1ull << s->rb_bits) - 1);
        uint64_t v = qcow2_refcount_get_entry(s, blk, i);
        if (addend < 0 && v < mag)
            return -EIO;
        if (addend > 0 && s->refcount_max - v < mag)
            return -ERANGE;
        v = addend < 0 ? v - mag : v + mag;
        qcow2_refcount_set_entry(s, blk, i, v);
        qcow2_cache_dirty(&s->rb_cache, blk);
        if (v == 0)
            note_freed(s, c);
    }
    return 0;
}

int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n)
{
    uint64_t c;
    int r = find_free(s, n, &c);
    if (r)
        return r;
    s->free_cluster_index = c + n;
    if ((r = qcow2_update_refcount(s, c << s->cluster_bits, n << s->cluster_bits, 1)))
        return r;
    return (int64_t)(c << s->cluster_bits);
}

int64_t qcow2_alloc_bytes(struct qcow2_state *s, uint32_t len)
{
    uint64_t fb = s->free_byte_offset, ref = 0;
    /* a cluster whose refcount is at its maximum (refcount_bits=1 at once) takes no more */
    if (fb && qcow2_get_refcount(s, fb >> s->cluster_bits, &ref) == 0 && ref >= s->refcount_max)
        fb = 0;
    if (fb && (fb & (s->cluster_size - 1)) &&
        s->cluster_size - (fb & (s->cluster_size - 1)) >= len) {
        int r = qcow2_update_refcount(s, fb, 1, 1);
        if (r)
            return r;
        s->free_byte_offset = fb + len;
        if (!(s->free_byte_offset & (s->cluster_size - 1)))
            s->free_byte_offset = 0;
        return (int64_t)fb;
    }
    int64_t off = qcow2_alloc_clusters(s, 1);
    if (off < 0)
        return off;
    s->free_byte_offset = (len & (s->cluster_size - 1)) ? (uint64_t)off + len : 0;
    return off;
}

int qcow2_free_later(struct qcow2_state *s, uint64_t off, uint64_t len)
{
    if (s->n_pending + 2 > s->cap_pending) {
        size_t cap = s->cap_pending ? s->cap_pending * 2 : 64;
        uint64_t *p = realloc(s->pending_free, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->pending_free = p;
        s->cap_pending = cap;
    }
    s->pending_free[s->n_pending++] = off;
    s->pending_free[s->n_pending++] = len;
    return 0;
}

int qcow2_process_frees(struct qcow2_state *s)
{
    if (!s->n_pending)
        return 0;
    int r = qcow2_cache_flush(&s->l2_cache);
    if (r)
        return r;
    for (size_t i = 0; i < s->n_pending; i += 2) {
        r = qcow2_update_refcount(s, s->pending_free[i], s->pending_free[i + 1], -1);
        if (r)
            break;
    }
    s->n_pending = 0;
    return r;
}

/* A bigger refcount table at the end of the used area, together with the refcount blocks
 * needed to count the table itself; the header switches over in one write. */
static int grow_refcount_table(struct qcow2_state *s, uint64_t min_entries)
{
    uint64_t per_cl = s->cluster_size / 8;
    uint64_t want = s->rt_entries + s->rt_entries / 2;
    if (want < min_entries)
        want = min_entries;
    uint64_t tcl = (want + per_cl - 1) / per_cl, nb = 0, a;
    int r;
    for (int iter = 0;; iter++) {
        if (iter > 64)
            return -EIO;
        if ((r = find_free(s, tcl + nb, &a)))
            return r;
        uint64_t total = tcl + nb;
        uint64_t lo = a >> s->rb_bits, hi = (a + total - 1) >> s->rb_bits, need = 0;
        for (uint64_t i = lo; i <= hi; i++)
            if (i >= s->rt_entries || !s->rt[i])
                need++;
        if (hi + 1 > tcl * per_cl) {
            tcl = (hi + 1 + per_cl - 1) / per_cl;
            continue;
        }
        if (need == nb)
            break;
        nb = need;
    }
    if ((tcl << s->cluster_bits) > QCOW2_MAX_RT_BYTES)
        return -EFBIG;
    uint64_t total = tcl + nb;
    uint64_t *nt = calloc(tcl * per_cl, 8);
    uint8_t *blk = calloc(1, s->cluster_size);
    uint8_t *raw = calloc(tcl, s->cluster_size);
    if (!nt || !blk || !raw) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(nt, s->rt, s->rt_entries * 8);
    s->free_cluster_index = a + total;
    uint64_t lo = a >> s->rb_bits, hi = (a + total - 1) >> s->rb_bits, k = 0;
    for (uint64_t i = lo; i <= hi; i++) {
        if (i < s->rt_entries && s->rt[i]) {
            /* counted in an existing block: raise them there (a leak if we crash) */
            uint64_t cs = i << s->rb_bits, ce = cs + (1ull << s->rb_bits);
            uint64_t from = a > cs ? a : cs, to = a + total < ce ? a + total : ce;
            if ((r = qcow2_update_refcount(s, from << s->cluster_bits,
                                           (to - from) << s->cluster_bits, 1)))
                goto out;
            continue;
        }
        uint64_t boff = (a + tcl + k++) << s->cluster_bits;
        memset(blk, 0, s->cluster_size);
        for (uint64_t c = a; c < a + total; c++)
            if ((c >> s->rb_bits) == i)
                qcow2_refcount_set_entry(s, blk, c & ((1ull << s->rb_bits) - 1), 1);
        if ((r = bfile_pwrite(s->f, boff, blk, s->cluster_size)))
            goto out;
        nt[i] = boff;
    }
    for (uint64_t i = 0; i < tcl * per_cl; i++)
        be64_put((uint8_t *)raw + i * 8, nt[i]);
    if ((r = bfile_pwrite(s->f, a << s->cluster_bits, raw, tcl << s->cluster_bits)) ||
        (r = qcow2_cache_flush(&s->rb_cache)) || (r = bfile_flush(s->f)))
        goto out;
    uint8_t h[12];
    be64_put(h, a << s->cluster_bits);
    be32_put(h + 8, (uint32_t)tcl);
    if ((r = bfile_pwrite(s->f, 48, h, 12)) || (r = bfile_flush(s->f)))
        goto out;
    uint64_t old_off = s->rt_off, old_cl = s->rt_clusters;
    free(s->rt);
    s->rt = nt;
    nt = NULL;
    s->rt_off = a << s->cluster_bits;
    s->rt_clusters = (uint32_t)tcl;
    s->rt_entries = tcl * per_cl;
    r = qcow2_update_refcount(s, old_off, old_cl << s->cluster_bits, -1);
out:
    free(nt);
    free(blk);
    free(raw);
    return r;
}
