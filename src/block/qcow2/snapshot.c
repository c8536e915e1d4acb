/* Internal snapshots: the snapshot table, and create/apply/delete by raising and lowering the
 * refcounts of everything an L1 table reaches (so later writes copy on write). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/qcow2/qcow2.h"

#define MAX_EXTRA 1024

static int snapshot_create(struct qcow2_state *s, const struct block_snapshot *in);

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

int qcow2_encode_snapshots(struct qcow2_state *s, const struct qcow2_snapshot *sn, uint32_t n,
                           uint8_t **out, uint64_t *out_size)
{
    (void)s;
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
    *out = b;
    *out_size = size;
    return 0;
}

static void free_snapshot(struct qcow2_snapshot *sn)
{
    free(sn->id);
    free(sn->name);
    free(sn->extra);
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

/* The active L1 table becomes the snapshot's, as it is; the switch gives the active image
 * copies of its L2 tables (switch.c). */
uint64_t qcow2_vmstate_offset(struct qcow2_state *s)
{
    return qcow2_l1_entries_for(s, s->bs->size) << (s->cluster_bits + s->l2_bits);
}

int qcow2_snapshot_create(struct qcow2_state *s, const char *name)
{
    struct block_snapshot sn = { .name = (char *)name, .icount = 0 };
    return snapshot_create(s, &sn);
}

/* The snapshot takes the active L1 as it is, VM state area included; the active image then
 * lets go of that area (QEMU does the same: a later savevm into it would otherwise copy on
 * write clusters no one reads, and the snapshot's deletion would be the only way to free
 * them). */
static int snapshot_create(struct qcow2_state *s, const struct block_snapshot *in)
{
    const char *name = in->name;
    if (s->nb_snapshots >= QCOW2_MAX_SNAPSHOTS || strlen(name) > 65535)
        return -EFBIG;
    int r = qcow2_flush_all(s);
    if (r)
        return r;
    struct qcow2_snapshot *n = calloc(s->nb_snapshots + 1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    if (s->nb_snapshots)
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
    sn->l1_off = s->l1_size ? s->l1_off : 0;
    sn->l1_size = s->l1_size;
    sn->id = strdup(id);
    sn->name = strdup(name);
    sn->date_sec = (uint32_t)ts.tv_sec;
    sn->date_nsec = (uint32_t)(ts.tv_nsec / 1000 * 1000);
    sn->disk_size = s->bs->size;
    sn->vm_state_size = in->vm_state_size;
    sn->vm_clock_nsec = in->vm_clock_nsec;
    sn->icount = in->icount;
    sn->extra_size = 24;
    sn->extra = calloc(1, 24);
    bool switched = false;
    if (!sn->id || !sn->name || !sn->extra) {
        r = -ENOMEM;
    } else {
        be64_put(sn->extra, sn->vm_state_size);
        be64_put(sn->extra + 8, sn->disk_size);
        be64_put(sn->extra + 16, sn->icount);
        r = qcow2_switch_metadata(s, s->l1, s->l1_size, n, s->nb_snapshots + 1, s->bs->size,
                                  &switched);
    }
    if (!switched) {
        free_snapshot(sn);
        free(n);
        return r;
    }
    free(s->snaps);
    s->snaps = n;
    if (!r && in->vm_state_size) {
        uint64_t cs = s->cluster_size;
        uint64_t len = (in->vm_state_size + cs - 1) & ~(cs - 1);
        r = qcow2_zero(s, qcow2_vmstate_offset(s), len, true, 2);
        if (!r)
            r = qcow2_flush_all(s);
    }
    return r;
}

/* The snapshot's L1 table, checked to lie inside the file, in host order in a table of n
 * entries (n >= its size; the rest zero). */
static int read_snapshot_l1(struct qcow2_state *s, const struct qcow2_snapshot *sn, uint32_t n,
                            uint64_t **out)
{
    int r = qcow2_validate_table(s, sn->l1_off, sn->l1_size, 8, QCOW2_MAX_L1_BYTES,
                                 "Snapshot L1 table", NULL);
    if (r)
        return r;
    uint64_t *l1 = calloc(n ? n : 1, 8);
    if (!l1)
        return -ENOMEM;
    if (sn->l1_size && (r = bfile_pread(s->f, sn->l1_off, l1, (size_t)sn->l1_size * 8))) {
        free(l1);
        return r;
    }
    for (uint32_t i = 0; i < sn->l1_size; i++)
        l1[i] = be64_get(&l1[i]);
    *out = l1;
    return 0;
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
    uint32_t n = sn->l1_size > s->l1_size ? sn->l1_size : s->l1_size;
    uint64_t *l1;
    if ((r = read_snapshot_l1(s, sn, n, &l1)))
        return r;
    bool switched;
    r = qcow2_switch_metadata(s, l1, n, s->snaps, s->nb_snapshots, sn->disk_size, &switched);
    free(l1);
    return r;
}

static int snapshot_delete(struct qcow2_state *s, int idx);

int qcow2_snapshot_delete(struct qcow2_state *s, const char *name)
{
    int idx = qcow2_snapshot_find(s, name);
    return idx < 0 ? idx : snapshot_delete(s, idx);
}

static int snapshot_delete(struct qcow2_state *s, int idx)
{
    int r = qcow2_flush_all(s);
    if (r)
        return r;
    struct qcow2_snapshot *n = calloc(s->nb_snapshots, sizeof(*n));
    if (!n)
        return -ENOMEM;
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if ((int)i != idx)
            n[k++] = s->snaps[i];
    bool switched;
    r = qcow2_switch_metadata(s, s->l1, s->l1_size, n, k, s->bs->size, &switched);
    if (!switched) {
        free(n);
        return r;
    }
    free_snapshot(&s->snaps[idx]);
    free(s->snaps);
    s->snaps = n;
    return r;
}

/* ---- the driver's side of block/snapshot.h ---- */

/* The snapshot whose id is id and whose name is name (NULL: any). */
static int snapshot_match(struct qcow2_state *s, const char *id, const char *name)
{
    for (uint32_t i = 0; i < s->nb_snapshots; i++)
        if ((!id || !strcmp(s->snaps[i].id, id)) && (!name || !strcmp(s->snaps[i].name, name)))
            return (int)i;
    return -ENOENT;
}

int qcow2_snapshot_list(struct block *bs, struct block_snapshot **out, int *n)
{
    struct qcow2_state *s = bs->opaque;
    if (!s->nb_snapshots)
        return 0;
    struct block_snapshot *l = calloc(s->nb_snapshots, sizeof(*l));
    if (!l)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        const struct qcow2_snapshot *sn = &s->snaps[i];
        l[i] = (struct block_snapshot){
            .id = strdup(sn->id), .name = strdup(sn->name),
            .vm_state_size = sn->vm_state_size, .date_sec = sn->date_sec,
            .date_nsec = sn->date_nsec, .vm_clock_nsec = sn->vm_clock_nsec,
            .disk_size = sn->disk_size, .icount = sn->icount,
        };
        if (!l[i].id || !l[i].name) {
            block_snapshot_list_free(l, (int)i + 1);
            return -ENOMEM;
        }
    }
    *out = l;
    *n = (int)s->nb_snapshots;
    return 0;
}

int qcow2_snapshot_create_vm(struct block *bs, const struct block_snapshot *sn)
{
    struct qcow2_state *s = bs->opaque;
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT)
        return -EACCES;
    return snapshot_create(s, sn);
}

int qcow2_snapshot_goto(struct block *bs, const char *id_or_name)
{
    struct qcow2_state *s = bs->opaque;
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT)
        return -EACCES;
    return qcow2_snapshot_apply(s, id_or_name);
}

int qcow2_snapshot_remove(struct block *bs, const char *id, const char *name)
{
    struct qcow2_state *s = bs->opaque;
    if (s->incompat & QCOW2_INCOMPAT_CORRUPT)
        return -EACCES;
    int idx = snapshot_match(s, id, name);
    return idx < 0 ? idx : snapshot_delete(s, idx);
}

/* The snapshot's L1 table replaces the active one in memory only (QEMU's
 * qcow2_snapshot_load_tmp): the image is read-only, so nothing ever writes through it, and
 * the L2 cache, keyed by host offset, stays valid. The virtual size stays the active one, as
 * in QEMU (qemu-nbd -l exports that size; a snapshot taken before a resize reads zeros past
 * its own end). */
int qcow2_snapshot_load_tmp(struct block *bs, const char *id, const char *name)
{
    struct qcow2_state *s = bs->opaque;
    int idx = snapshot_match(s, id, name);
    if (idx < 0)
        return idx;
    uint64_t *l1;
    int r = read_snapshot_l1(s, &s->snaps[idx], s->snaps[idx].l1_size, &l1);
    if (r)
        return r;
    free(s->l1);
    s->l1 = l1;
    s->l1_size = s->snaps[idx].l1_size;
    s->l1_off = s->snaps[idx].l1_off;
    return 0;
}

int qcow2_vmstate_rw(struct block *bs, uint64_t pos, void *buf, size_t len, bool write)
{
    struct qcow2_state *s = bs->opaque;
    uint64_t base = qcow2_vmstate_offset(s);
    uint64_t limit = (uint64_t)(QCOW2_MAX_L1_BYTES / 8) << (s->cluster_bits + s->l2_bits);
    if (pos > limit - base || len > limit - base - pos)
        return -EFBIG;
    if (!write)
        return qcow2_read(s, base + pos, buf, len);
    int r = qcow2_writable_check(s);
    return r ? r : qcow2_write(s, base + pos, buf, len);
}

/* The snapshot's L1 table and size stand in for the active ones for one read, in memory only
 * (as load_tmp's, but put back at once): a read writes nothing, the L2 cache is keyed by host
 * offset, and the image's lock keeps every other request out meanwhile. loadvm reads a state
 * whole this way before it changes the image, so it needs no undo snapshot (and its syncs). */
int qcow2_snapshot_vmstate_read(struct block *bs, const char *id_or_name, uint64_t pos, void *buf,
                                size_t len)
{
    struct qcow2_state *s = bs->opaque;
    int idx = qcow2_snapshot_find(s, id_or_name);
    if (idx < 0)
        return idx;
    const struct qcow2_snapshot *sn = &s->snaps[idx];
    uint64_t *l1;
    int r = read_snapshot_l1(s, sn, sn->l1_size, &l1);
    if (r)
        return r;
    uint64_t *al1 = s->l1, aoff = s->l1_off, asize = bs->size;
    uint32_t an = s->l1_size;
    s->l1 = l1;
    s->l1_size = sn->l1_size;
    s->l1_off = sn->l1_off;
    bs->size = sn->disk_size;
    r = qcow2_vmstate_rw(bs, pos, buf, len, false);
    s->l1 = al1;
    s->l1_size = an;
    s->l1_off = aoff;
    bs->size = asize;
    free(l1);
    return r;
}
