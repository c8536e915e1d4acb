/* Consistency check and repair, as qemu-img check: recount every reference from the
 * metadata, compare with the stored refcounts, check the COPIED flags; fix leaks and errors. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2/qcow2.h"

struct ck {
    struct qcow2_state *s;
    struct block_check_result *res;
    FILE *log;
    uint64_t *refs;
    uint64_t nb;          /* clusters in the file */
    uint64_t last_data;   /* for fragmentation */
    uint8_t *l2;
    bool rebuild;         /* refcount structure itself broken */
};

static void say(struct ck *c, const char *fmt, ...)
{
    if (!c->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->log, fmt, ap);
    va_end(ap);
}

static void inc(struct ck *c, uint64_t off, uint64_t len)
{
    if (!len)
        return;
    uint64_t first = off >> c->s->cluster_bits, last = (off + len - 1) >> c->s->cluster_bits;
    for (uint64_t i = first; i <= last; i++) {
        if (i >= c->nb) {
            say(c, "ERROR: cluster %" PRIu64 " (offset 0x%" PRIx64 ") is beyond the end of "
                "the image file\n", i, i << c->s->cluster_bits);
            c->res->corruptions++;
            continue;
        }
        c->refs[i]++;
    }
}

static int check_l2(struct ck *c, uint64_t l2off, bool active)
{
    struct qcow2_state *s = c->s;
    int r = bfile_pread(s->f, l2off, c->l2, s->cluster_size);
    if (r) {
        c->res->check_errors++;
        return 0;
    }
    for (uint32_t j = 0; j < s->l2_entries; j++) {
        uint64_t e = be64_get(c->l2 + (size_t)j * s->l2_entry_bytes);
        uint64_t bm = s->ext_l2 ? be64_get(c->l2 + (size_t)j * s->l2_entry_bytes + 8) : 0;
        if (e & QCOW2_OFLAG_COMPRESSED) {
            uint64_t o, l;
            qcow2_compressed_range(s, e, &o, &l);
            if (e & QCOW2_OFLAG_COPIED) {
                say(c, "ERROR: coffset=0x%" PRIx64 ": copied flag must never be set for "
                    "compressed clusters\n", o);
                c->res->corruptions++;
            }
            if (active) {
                c->res->allocated_clusters++;
                c->res->compressed_clusters++;
                c->last_data = 0;
            }
            inc(c, o, l);
            continue;
        }
        uint64_t h = e & QCOW2_OFFSET_MASK;
        if (s->ext_l2 && (bm & (bm >> 32) & 0xffffffffull)) {
            say(c, "ERROR invalid subcluster allocation bitmap 0x%" PRIx64 "\n", bm);
            c->res->corruptions++;
        }
        if (!h)
            continue;
        if (h & (s->cluster_size - 1)) {
            say(c, "ERROR offset=%" PRIx64 ": Data cluster is not properly aligned; L2 entry "
                "corrupted.\n", h);
            c->res->corruptions++;
            continue;
        }
        if (active) {
            c->res->allocated_clusters++;
            if (c->last_data && h != c->last_data + s->cluster_size)
                c->res->fragmented_clusters++;
            c->last_data = h;
        }
        inc(c, h, s->cluster_size);
    }
    return 0;
}

static int check_l1(struct ck *c, uint64_t l1off, uint32_t n, const uint64_t *mem, bool active)
{
    struct qcow2_state *s = c->s;
    uint64_t *l1 = calloc(n ? n : 1, 8);
    if (!l1)
        return -ENOMEM;
    if (mem) {
        memcpy(l1, mem, (size_t)n * 8);
    } else {
        if (bfile_pread(s->f, l1off, l1, (size_t)n * 8)) {
            c->res->check_errors++;
            free(l1);
            return 0;
        }
        for (uint32_t i = 0; i < n; i++)
            l1[i] = be64_get(&l1[i]);
    }
    inc(c, l1off, (uint64_t)n * 8);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2 = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2)
            continue;
        if (l2 & (s->cluster_size - 1)) {
            say(c, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; L1 entry "
                "corrupted\n", l2);
            c->res->corruptions++;
            continue;
        }
        inc(c, l2, s->cluster_size);
        if ((l2 >> s->cluster_bits) >= c->nb)
            continue;
        check_l2(c, l2, active);
    }
    free(l1);
    return 0;
}

/* The COPIED flags of the active tables against the refcounts (repairs them with fix). */
static int check_copied(struct ck *c, int fix)
{
    struct qcow2_state *s = c->s;
    bool l1_dirty = false;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t l2 = s->l1[i] & QCOW2_OFFSET_MASK, ref;
        if (!l2 || (l2 & (s->cluster_size - 1)) || (l2 >> s->cluster_bits) >= c->nb)
            continue;
        if (qcow2_get_refcount(s, l2 >> s->cluster_bits, &ref)) {
            c->res->check_errors++;
            continue;
        }
        if ((ref == 1) != !!(s->l1[i] & QCOW2_OFLAG_COPIED)) {
            say(c, "%s OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%" PRIx64
                " refcount=%" PRIu64 "\n", fix & BLOCK_FIX_ERRORS ? "Repairing" : "ERROR",
                i, s->l1[i], ref);
            if (fix & BLOCK_FIX_ERRORS) {
                s->l1[i] ^= QCOW2_OFLAG_COPIED;
                l1_dirty = true;
                c->res->corruptions_fixed++;
            }
            c->res->corruptions++;
        }
        if (bfile_pread(s->f, l2, c->l2, s->cluster_size)) {
            c->res->check_errors++;
            continue;
        }
        bool dirty = false;
        for (uint32_t j = 0; j < s->l2_entries; j++) {
            uint8_t *ep = c->l2 + (size_t)j * s->l2_entry_bytes;
            uint64_t e = be64_get(ep), h = e & QCOW2_OFFSET_MASK;
            if ((e & QCOW2_OFLAG_COMPRESSED) || !h || (h & (s->cluster_size - 1)) ||
                (h >> s->cluster_bits) >= c->nb)
                continue;
            if (qcow2_get_refcount(s, h >> s->cluster_bits, &ref)) {
                c->res->check_errors++;
                continue;
            }
            if ((ref == 1) != !!(e & QCOW2_OFLAG_COPIED)) {
                say(c, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64 " refcount=%" PRIu64
                    "\n", fix & BLOCK_FIX_ERRORS ? "Repairing" : "ERROR", e, ref);
                if (fix & BLOCK_FIX_ERRORS) {
                    be64_put(ep, e ^ QCOW2_OFLAG_COPIED);
                    dirty = true;
                    c->res->corruptions_fixed++;
                }
                c->res->corruptions++;
            }
        }
        if (dirty) {
            qcow2_cache_drop(&s->l2_cache, l2);
            if (bfile_pwrite(s->f, l2, c->l2, s->cluster_size))
                c->res->check_errors++;
        }
    }
    if (l1_dirty) {
        for (uint32_t i = 0; i < s->l1_size; i++)
            if (qcow2_write_l1_entry(s, i))
                return -EIO;
    }
    return 0;
}

/* Writes a whole new refcount structure from the counted references, after everything. */
static int rebuild_refcounts(struct ck *c)
{
    struct qcow2_state *s = c->s;
    uint64_t per_cl = s->cluster_size / 8, rbe = 1ull << s->rb_bits;
    uint64_t start = c->nb;   /* new structures go after the current end of file */
    uint64_t tcl = 1, nb = 0;
    for (int it = 0; it < 64; it++) {
        uint64_t total = start + tcl + nb;
        uint64_t nbn = (total + rbe - 1) / rbe;
        uint64_t tcln = (nbn + per_cl - 1) / per_cl;
        if (nbn == nb && tcln == tcl)
            break;
        nb = nbn;
        tcl = tcln;
    }
    uint64_t total = start + tcl + nb;
    uint64_t *refs = calloc(total, 8);
    uint8_t *blk = calloc(1, s->cluster_size);
    uint8_t *tab = calloc(tcl, s->cluster_size);
    int r = -ENOMEM;
    if (!refs || !blk || !tab)
        goto out;
    memcpy(refs, c->refs, c->nb * 8);
    /* the old refcount table and blocks are dropped: their counts go */
    for (uint64_t i = start; i < total; i++)
        refs[i] = 1;
    if (s->rt_off && (s->rt_off >> s->cluster_bits) < c->nb)
        for (uint64_t i = 0; i < s->rt_clusters && (s->rt_off >> s->cluster_bits) + i < c->nb; i++)
            refs[(s->rt_off >> s->cluster_bits) + i] = 0;
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t b = s->rt[i];
        if (b && !(b & (s->cluster_size - 1)) && (b >> s->cluster_bits) < c->nb &&
            refs[b >> s->cluster_bits])
            refs[b >> s->cluster_bits]--;
    }
    for (uint64_t k = 0; k < nb; k++) {
        memset(blk, 0, s->cluster_size);
        for (uint64_t i = k * rbe; i < (k + 1) * rbe && i < total; i++) {
            uint64_t v = refs[i] > s->refcount_max ? s->refcount_max : refs[i];
            qcow2_refcount_set_entry(s, blk, i - k * rbe, v);
        }
        uint64_t off = (start + tcl + k) << s->cluster_bits;
        if ((r = bfile_pwrite(s->f, off, blk, s->cluster_size)))
            goto out;
        be64_put(tab + k * 8, off);
    }
    if ((r = bfile_pwrite(s->f, start << s->cluster_bits, tab, tcl << s->cluster_bits)) ||
        (r = bfile_flush(s->f)))
        goto out;
    uint8_t h[12];
    be64_put(h, start << s->cluster_bits);
    be32_put(h + 8, (uint32_t)tcl);
    if ((r = bfile_pwrite(s->f, 48, h, 12)) || (r = bfile_flush(s->f)))
        goto out;
    free(s->rt);
    s->rt = calloc(tcl * per_cl, 8);
    if (!s->rt) {
        r = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < tcl * per_cl; i++)
        s->rt[i] = be64_get(tab + i * 8);
    s->rt_off = start << s->cluster_bits;
    s->rt_clusters = (uint32_t)tcl;
    s->rt_entries = tcl * per_cl;
    qcow2_cache_clear(&s->rb_cache);
    s->free_cluster_index = 0;
    r = 0;
out:
    free(refs);
    free(blk);
    free(tab);
    return r;
}

int qcow2_check(struct qcow2_state *s, int fix, struct block_check_result *res, FILE *log)
{
    memset(res, 0, sizeof(*res));
    if (s->writable) {
        int r = qcow2_flush_all(s);
        if (r)
            return r;
    }
    if (!s->writable)
        fix = 0;
    struct ck c = { .s = s, .res = res, .log = log };
    int64_t fsz = bfile_size(s->f);
    if (fsz < 0)
        return (int)fsz;
    c.nb = ((uint64_t)fsz + s->cluster_size - 1) >> s->cluster_bits;
    c.refs = calloc(c.nb ? c.nb : 1, 8);
    c.l2 = malloc(s->cluster_size);
    if (!c.refs || !c.l2) {
        free(c.refs);
        free(c.l2);
        return -ENOMEM;
    }
    res->total_clusters = (s->bs->size + s->cluster_size - 1) >> s->cluster_bits;
    inc(&c, 0, s->cluster_size);
    check_l1(&c, s->l1_off, s->l1_size, s->l1, true);
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snaps[i];
        check_l1(&c, sn->l1_off, sn->l1_size, NULL, false);
    }
    inc(&c, s->snapshots_off, s->snapshots_size);
    inc(&c, s->rt_off, (uint64_t)s->rt_clusters << s->cluster_bits);
    inc(&c, s->crypt_off, s->crypt_len);
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t b = s->rt[i];
        if (!b)
            continue;
        if (b & (s->cluster_size - 1)) {
            say(&c, "ERROR refcount block %" PRIu64 " is not cluster aligned; refcount table "
                "entry corrupted\n", i);
            res->corruptions++;
            c.rebuild = true;
            continue;
        }
        if ((b >> s->cluster_bits) >= c.nb) {
            say(&c, "ERROR refcount block %" PRIu64 " is outside image\n", i);
            res->corruptions++;
            c.rebuild = true;
            continue;
        }
        inc(&c, b, s->cluster_size);
    }
    /* a refcount block shared with other metadata is a structure we cannot patch in place */
    for (uint64_t i = 0; i < s->rt_entries; i++) {
        uint64_t b = s->rt[i];
        if (b && !(b & (s->cluster_size - 1)) && (b >> s->cluster_bits) < c.nb &&
            c.refs[b >> s->cluster_bits] > 1) {
            say(&c, "ERROR refcount block %" PRIu64 " overlaps with other metadata\n", i);
            c.rebuild = true;
        }
    }
    /* referenced clusters without a refcount block: patching would allocate blocks over
     * clusters in use, so the structure is rebuilt */
    for (uint64_t i = 0; i < c.nb && !c.rebuild; i++) {
        uint64_t idx = i >> s->rb_bits;
        if (c.refs[i] && (idx >= s->rt_entries || !s->rt[idx]))
            c.rebuild = true;
    }
    if (c.rebuild && (fix & BLOCK_FIX_ERRORS)) {
        say(&c, "Rebuilding refcount structure\n");
        int r = rebuild_refcounts(&c);
        if (r)
            res->check_errors++;
        else
            res->corruptions_fixed = res->corruptions;
        free(c.refs);
        free(c.l2);
        /* count again against the new structure */
        struct block_check_result again;
        r = qcow2_check(s, fix, &again, log);
        again.corruptions_fixed += res->corruptions_fixed;
        again.corruptions += res->corruptions;
        *res = again;
        return r;
    }
    uint64_t highest = 0;
    uint64_t limit = c.nb;
    for (uint64_t i = 0; i < limit; i++) {
        uint64_t stored, refs = i < c.nb ? c.refs[i] : 0;
        if (qcow2_get_refcount(s, i, &stored)) {
            res->check_errors++;
            continue;
        }
        if (stored || refs)
            highest = i + 1;
        if (stored == refs)
            continue;
        bool leak = stored > refs;
        bool fixit = leak ? (fix & BLOCK_FIX_LEAKS) : (fix & BLOCK_FIX_ERRORS);
        say(&c, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
            fixit ? "Repairing" : leak ? "Leaked" : "ERROR", i, stored, refs);
        if (fixit) {
            /* 64-bit refcounts: the difference may not fit an int64_t addend in one step */
            uint64_t diff = leak ? stored - refs : refs - stored;
            int r = refs > s->refcount_max ? -EINVAL : 0;
            while (!r && diff) {
                uint64_t step = diff > INT64_MAX ? INT64_MAX : diff;
                r = qcow2_update_refcount(s, i << s->cluster_bits, 1,
                                          leak ? -(int64_t)step : (int64_t)step);
                diff -= step;
            }
            if (r)
                res->check_errors++;
            else if (leak)
                res->leaks_fixed++;
            else
                res->corruptions_fixed++;
        }
        if (leak)
            res->leaks++;
        else
            res->corruptions++;
    }
    if (fix && s->writable)
        qcow2_cache_flush(&s->rb_cache);
    check_copied(&c, fix);
    res->image_end_offset = highest << s->cluster_bits;
    if (fix && s->writable) {
        qcow2_cache_flush(&s->rb_cache);
        bfile_flush(s->f);
    }
    free(c.refs);
    free(c.l2);
    return 0;
}
