/* Internal snapshots: the snapshot table, and create/apply/delete by raising and lowering the
 * refcounts of everything an L1 table reaches (so later writes copy on write). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2/qcow2.h"

#define MAX_EXTRA 1024

void qcow2_free_snapshots(struct qcow2_state *s)
{
    for (uint32_t i = 0; s->snaps && i < s->nb_snapshots; i++) {
        free(s->snaps[i].id);
        free(s->snaps[i].name);
        free(s->snaps[i].extra);
    }
    free(s->snaps);
    s->snaps = NULL;
}

int qcow2_read_snapshots(struct qcow2_state *s, char *err)
{
    s->snapshots_size = 0;
    if (!s->nb_snapshots)
        return 0;
    if (s->snapshots_off & (s->cluster_size - 1) || s->snapshots_off < s->cluster_size)
        return block_seterr(err, -EINVAL, "Snapshot table offset 0x%" PRIx64 " invalid",
                            s->snapshots_off);
    int64_t fsz = bfile_size(s->f);
    if (fsz < 0 || s->snapshots_off >= (uint64_t)fsz)
        return block_seterr(err, -EINVAL, "Snapshot table lies beyond the end of the file");
    s->snaps = calloc(s->nb_snapshots, sizeof(*s->snaps));
    if (!s->snaps)
        return block_seterr(err, -ENOMEM, "Out of memory");
    uint64_t p = s->snapshots_off;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        struct qcow2_snapshot *sn = &s->snaps[i];
        uint8_t h[40];
        int r;
        if (p + 40 > (uint64_t)fsz || (r = bfile_pread(s->f, p, h, 40)))
            goto trunc;
        sn->l1_off = be64_get(h);
        sn->l1_size = be32_get(h + 8);
        uint16_t idl = be16_get(h + 12), nml = be16_get(h + 14);
        sn->date_sec = be32_get(h + 16);
        sn->date_nsec = be32_get(h + 20);
        sn->vm_clock_nsec = be64_get(h + 24);
        sn->vm_state_size = be32_get(h + 32);
        sn->extra_size = be32_get(h + 36);
        sn->icount = ~0ull;
        if (sn->extra_size > MAX_EXTRA)
            return block_seterr(err, -EFBIG, "Too much extra data in snapshot %u", i);
        uint64_t need = 40ull + sn->extra_size + idl + nml;
        if (p + need > (uint64_t)fsz)
            goto trunc;
        sn->extra = calloc(1, sn->extra_size + 1);
        sn->id = calloc(1, idl + 1u);
        sn->name = calloc(1, nml + 1u);
        if (!sn->extra || !sn->id || !sn->name)
            return block_seterr(err, -ENOMEM, "Out of memory");
        if ((r = bfile_pread(s->f, p + 40, sn->extra, sn->extra_size)) ||
            (r = bfile_pread(s->f, p + 40 + sn->extra_size, sn->id, idl)) ||
            (r = bfile_pread(s->f, p + 40 + sn->extra_size + idl, sn->name, nml)))
            goto trunc;
        if (sn->extra_size >= 8)
            sn->vm_state_size = be64_get(sn->extra);
        sn->disk_size = sn->extra_size >= 16 ? be64_get(sn->extra + 8) : s->bs->size;
        if (sn->extra_size >= 24)
            sn->icount = be64_get(sn->extra + 16);
        if ((uint64_t)sn->l1_size * 8 > QCOW2_MAX_L1_BYTES)
            return block_seterr(err, -EFBIG, "Snapshot L1 table too large");
        if (sn->l1_size && ((sn->l1_off & (s->cluster_size - 1)) ||
                            sn->l1_off < s->cluster_size))
            return block_seterr(err, -EINVAL, "Snapshot L1 table offset invalid");
        p += (need + 7) & ~7ull;
        if (p - s->snapshots_off > (64ull << 20))
            return block_seterr(err, -EFBIG, "Snapshot table too large");
    }
    s->snapshots_size = p - s->snapshots_off;
    return 0;
trunc:
    return block_seterr(err, -EINVAL, "Snapshot table is truncated or lies beyond the end of "
                        "the file");
}

/* Adds addend to all clusters reachable from l1 (host-order entries, n of them); with
 * fix_copied, sets the COPIED flags of the tables from the resulting refcounts (only for the
 * active table: inactive tables are never relied on). l1's flags are updated in place. */
static int update_l1_array(struct qcow2_state *s, uint64_t *l1, uint32_t n, int addend,
                           bool fix_copied)
{
    int r;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l2off = l1[i] & QCOW2_OFFSET_MASK;
        if (!l2off)
            continue;
        if ((l2off & (s->cluster_size - 1)) || l2off < s->cluster_size)
            return -EIO;
        uint8_t *l2;
        if ((r = qcow2_cache_get(&s->l2_cache, l2off, false, &l2)))
            return r;
        memcpy(s->tmp, l2, s->cluster_size);
        bool changed = false;
        for (uint32_t j = 0; j < s->l2_entries; j++) {
            uint8_t *ep = s->tmp + (size_t)j * s->l2_entry_bytes;
            uint64_t e = be64_get(ep);
            if (e & QCOW2_OFLAG_COMPRESSED) {
                uint64_t o, l;
                qcow2_compressed_range(s, e, &o, &l);
                if (addend && (r = qcow2_update_refcount(s, o, l, addend)))
                    return r;
                continue;
            }
            uint64_t h = e & QCOW2_OFFSET_MASK;
            if (!h)
                continue;
            if (addend && (r = qcow2_update_refcount(s, h, s->cluster_size, addend)))
                return r;
            if (fix_copied) {
                uint64_t ref;
                if ((r = qcow2_get_refcount(s, h >> s->cluster_bits, &ref)))
                    return r;
                uint64_t ne = ref == 1 ? e | QCOW2_OFLAG_COPIED : e & ~QCOW2_OFLAG_COPIED;
                if (ne != e) {
                    be64_put(ep, ne);
                    changed = true;
                }
            }
        }
        if (addend && (r = qcow2_update_refcount(s, l2off, s->cluster_size, addend)))
            return r;
        if (fix_copied) {
            if (changed) {
                if ((r = qcow2_cache_get(&s->l2_cache, l2off, false, &l2)))
                    return r;
                memcpy(l2, s->tmp, s->cluster_size);
                qcow2_cache_dirty(&s->l2_cache, l2);
            }
            uint64_t ref;
            if ((r = qcow2_get_refcount(s, l2off >> s->cluster_bits, &ref)))
                return r;
            l1[i] = ref == 1 ? l1[i] | QCOW2_OFLAG_COPIED : l1[i] & ~QCOW2_OFLAG_COPIED;
        }
    }
    return 0;
}

static int write_l1(struct qcow2_state *s, uint64_t off, const uint64_t *l1, uint32_t n)
{
    uint8_t *raw = malloc((size_t)n * 8 + 1);
    if (!raw)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        be64_put(raw + (size_t)i * 8, l1[i]);
    int r = bfile_pwrite(s->f, off, raw, (size_t)n * 8);
    free(raw);
    return r;
}

static int read_l1(struct qcow2_state *s, uint64_t off, uint32_t n, uint64_t **out)
{
    uint64_t *t = calloc(n ? n : 1, 8);
    if (!t)
        return -ENOMEM;
    int r = bfile_pread(s->f, off, t, (size_t)n * 8);
    for (uint32_t i = 0; !r && i < n; i++)
        t[i] = be64_get(&t[i]);
    if (r)
        free(t);
    else
        *out = t;
    return r;
}

int qcow2_update_l1_refcounts(struct qcow2_state *s, uint64_t l1_off, uint32_t l1_size,
                              int addend)
{
    bool active = l1_off == s->l1_off;
    uint64_t *l1 = NULL;
    int r;
    if (active) {
        l1 = s->l1;
    } else if ((r = read_l1(s, l1_off, l1_size, &l1))) {
        return r;
    }
    r = update_l1_array(s, l1, l1_size, addend, active);
    if (!r && active) {
        /* refcounts, then L2 tables, then the L1 table */
        if (!(r = qcow2_cache_flush(&s->rb_cache)) && !(r = qcow2_cache_flush(&s->l2_cache)))
            r = write_l1(s, s->l1_off, s->l1, s->l1_size);
    }
    if (!active)
        free(l1);
    return r;
}

/* Writes the table to new clusters, switches the header to it, frees the old one. */
static int write_snapshot_table(struct qcow2_state *s, struct qcow2_snapshot *sn, uint32_t n)
{
    uint64_t size = 0;
    for (uint32_t i = 0; i < n; i++)
        size += (40 + sn[i].extra_size + strlen(sn[i].id) + strlen(sn[i].name) + 7) & ~7ull;
    uint8_t *b = calloc(1, size + 1);
    if (!b)
        return -ENOMEM;
    uint64_t p = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t idl = strlen(sn[i].id), nml = strlen(sn[i].name);
        be64_put(b + p, sn[i].l1_off);
        be32_put(b + p + 8, sn[i].l1_size);
        be16_put(b + p + 12, (uint16_t)idl);
        be16_put(b + p + 14, (uint16_t)nml);
        be32_put(b + p + 16, sn[i].date_sec);
        be32_put(b + p + 20, sn[i].date_nsec);
        be64_put(b + p + 24, sn[i].vm_clock_nsec);
        be32_put(b + p + 32, sn[i].vm_state_size > UINT32_MAX ? 0 : (uint32_t)sn[i].vm_state_size);
        be32_put(b + p + 36, sn[i].extra_size);
        memcpy(b + p + 40, sn[i].extra, sn[i].extra_size);
        memcpy(b + p + 40 + sn[i].extra_size, sn[i].id, idl);
        memcpy(b + p + 40 + sn[i].extra_size + idl, sn[i].name, nml);
        p += (40 + sn[i].extra_size + idl + nml + 7) & ~7ull;
    }
    int64_t off = 0;
    int r = 0;
    if (size) {
        off = qcow2_alloc_clusters(s, (size + s->cluster_size - 1) >> s->cluster_bits);
        if (off < 0) {
            free(b);
            return (int)off;
        }
        r = bfile_pwrite(s->f, off, b, size);
    }
    free(b);
    if (r || (r = qcow2_cache_flush(&s->rb_cache)) || (r = bfile_flush(s->f)))
        return r;
    uint8_t h[12];
    be32_put(h, n);
    be64_put(h + 4, off);
    if ((r = bfile_pwrite(s->f, 60, h, 12)) || (r = bfile_flush(s->f)))
        return r;
    uint64_t old = s->snapshots_off, oldsz = s->snapshots_size;
    s->snapshots_off = off;
    s->snapshots_size = size;
    s->nb_snapshots = n;
    if (oldsz)
        r = qcow2_update_refcount(s, old, oldsz, -1);
    return r;
}

int qcow2_snapshot_find(struct qcow2_state *s, const char *name)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snaps[i].id, name))
            return (int)i;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if (!strcmp(s->snaps[i].name, name))
            return (int)i;
    return -ENOENT;
}

int qcow2_snapshot_create(struct qcow2_state *s, const char *name)
{
    int r = qcow2_flush_all(s);
    if (r)
        return r;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS || strlen(name) > 65535)
        return -EFBIG;
    uint64_t l1b = (uint64_t)s->l1_size * 8;
    int64_t l1off = 0;
    if (l1b) {
        l1off = qcow2_alloc_clusters(s, (l1b + s->cluster_size - 1) >> s->cluster_bits);
        if (l1off < 0)
            return (int)l1off;
        if ((r = write_l1(s, l1off, s->l1, s->l1_size)))
            return r;
    }
    if ((r = qcow2_update_l1_refcounts(s, s->l1_off, s->l1_size, 1)))
        return r;
    struct qcow2_snapshot *n = calloc(s->nb_snapshots + 1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    memcpy(n, s->snaps, s->nb_snapshots * sizeof(*n));
    struct qcow2_snapshot *sn = &n[s->nb_snapshots];
    unsigned long maxid = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        unsigned long v = strtoul(s->snaps[i].id, NULL, 10);
        if (v > maxid)
            maxid = v;
    }
    char id[32];
    snprintf(id, sizeof(id), "%lu", maxid + 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sn->l1_off = (uint64_t)l1off;
    sn->l1_size = s->l1_size;
    sn->id = strdup(id);
    sn->name = strdup(name);
    sn->date_sec = (uint32_t)ts.tv_sec;
    sn->date_nsec = (uint32_t)(ts.tv_nsec / 1000 * 1000);
    sn->disk_size = s->bs->size;
    sn->icount = 0;
    sn->extra_size = 24;
    sn->extra = calloc(1, 24);
    if (!sn->id || !sn->name || !sn->extra) {
        free(n);
        return -ENOMEM;
    }
    be64_put(sn->extra + 8, sn->disk_size);
    r = write_snapshot_table(s, n, s->nb_snapshots + 1);
    if (r) {
        free(sn->id);
        free(sn->name);
        free(sn->extra);
        free(n);
        return r;
    }
    free(s->snaps);
    s->snaps = n;
    return qcow2_flush_all(s);
}

int qcow2_snapshot_apply(struct qcow2_state *s, const char *name)
{
    int idx = qcow2_snapshot_find(s, name);
    if (idx < 0)
        return idx;
    int r = qcow2_flush_all(s);
    if (r)
        return r;
    struct qcow2_snapshot *sn = &s->snaps[idx];
    uint64_t *snl1;
    if ((r = read_l1(s, sn->l1_off, sn->l1_size, &snl1)))
        return r;
    if (sn->l1_size > s->l1_size && (r = qcow2_grow_l1(s, sn->l1_size)))
        goto out;
    /* raise what the snapshot reaches, point the active table at it, lower the old */
    if ((r = update_l1_array(s, snl1, sn->l1_size, 1, false)) ||
        (r = qcow2_cache_flush(&s->rb_cache)) || (r = bfile_flush(s->f)))
        goto out;
    uint64_t *old = s->l1;
    uint64_t *nl1 = calloc(s->l1_size, 8);
    if (!nl1) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(nl1, snl1, (size_t)sn->l1_size * 8);
    if ((r = write_l1(s, s->l1_off, nl1, s->l1_size)) || (r = bfile_flush(s->f))) {
        free(nl1);
        goto out;
    }
    s->l1 = nl1;
    qcow2_cache_clear(&s->l2_cache);
    r = update_l1_array(s, old, s->l1_size, -1, false);
    free(old);
    if (r)
        goto out;
    if (sn->disk_size != s->bs->size) {
        s->bs->size = sn->disk_size;
        if ((r = qcow2_update_header(s)))
            goto out;
    }
    if ((r = qcow2_update_l1_refcounts(s, s->l1_off, s->l1_size, 0)))
        goto out;
    r = qcow2_flush_all(s);
out:
    free(snl1);
    return r;
}

int qcow2_snapshot_delete(struct qcow2_state *s, const char *name)
{
    int idx = qcow2_snapshot_find(s, name);
    if (idx < 0)
        return idx;
    int r = qcow2_flush_all(s);
    if (r)
        return r;
    struct qcow2_snapshot sn = s->snaps[idx];
    struct qcow2_snapshot *n = calloc(s->nb_snapshots, sizeof(*n));
    if (!n)
        return -ENOMEM;
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if ((int)i != idx)
            n[k++] = s->snaps[i];
    /* the table first: if we stop after it, the snapshot's clusters are only leaked */
    if ((r = write_snapshot_table(s, n, k))) {
        free(n);
        return r;
    }
    free(s->snaps);
    s->snaps = n;
    uint64_t *l1;
    if ((r = read_l1(s, sn.l1_off, sn.l1_size, &l1)))
        goto out;
    r = update_l1_array(s, l1, sn.l1_size, -1, false);
    free(l1);
    if (!r && sn.l1_size)
        r = qcow2_update_refcount(s, sn.l1_off, (uint64_t)sn.l1_size * 8, -1);
    if (!r)
        r = qcow2_update_l1_refcounts(s, s->l1_off, s->l1_size, 0);
    if (!r)
        r = qcow2_flush_all(s);
out:
    free(sn.id);
    free(sn.name);
    free(sn.extra);
    return r;
}
