/* Guest-to-host mapping through L1/L2 tables: lookups, reads, allocating writes with
 * copy-on-write, zeroing and discard, compressed clusters.
 *
 * Order of a write that allocates: refcounts raised (refcount cache), data written to the new
 * cluster, then the L2 entry changed (L2 cache, written after the refcounts, cache.c), then the
 * old clusters released (refcount.c). A new L2 table is written whole before the L1 entry. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/compress.h"
#include "block/luks.h"
#include "block/qcow2/qcow2.h"

#define ALL_ZERO_BITS 0xffffffff00000000ull
#define ALL_ALLOC_BITS 0x00000000ffffffffull

void qcow2_compressed_range(struct qcow2_state *s, uint64_t entry, uint64_t *off,
                            uint64_t *len)
{
    unsigned x = 62 - (s->cluster_bits - 8);
    uint64_t o = entry & ((1ull << x) - 1);
    uint64_t sectors = ((entry & ~QCOW2_OFLAG_COPIED & ~QCOW2_OFLAG_COMPRESSED) >> x) + 1;
    *off = o;
    *len = sectors * 512 - (o & 511);
}

static uint32_t l1_index(struct qcow2_state *s, uint64_t off)
{
    return (uint32_t)(off >> (s->cluster_bits + s->l2_bits));
}

static uint32_t l2_index(struct qcow2_state *s, uint64_t off)
{
    return (uint32_t)((off >> s->cluster_bits) & (s->l2_entries - 1));
}

/* The L2 table for off, for reading; *l2 = NULL when unallocated. */
static int l2_table(struct qcow2_state *s, uint64_t off, uint8_t **l2)
{
    uint32_t i = l1_index(s, off);
    *l2 = NULL;
    if (i >= s->l1_size)
        return 0;
    uint64_t e = s->l1[i];
    if (e & QCOW2_L1_RESERVED & ~(uint64_t)(s->cluster_size - 1) & 0x7f00000000000000ull)
        return -EIO;
    uint64_t t = e & QCOW2_OFFSET_MASK;
    if (!t)
        return 0;
    if ((t & (s->cluster_size - 1)) || t < s->cluster_size || qcow2_check_in_file(s, t))
        return -EIO;
    return qcow2_cache_get(&s->l2_cache, t, false, l2);
}

static void entry_get(struct qcow2_state *s, const uint8_t *l2, uint32_t i, uint64_t *e,
                      uint64_t *bm)
{
    *e = be64_get(l2 + (size_t)i * s->l2_entry_bytes);
    *bm = s->ext_l2 ? be64_get(l2 + (size_t)i * s->l2_entry_bytes + 8) : 0;
}

static void entry_set(struct qcow2_state *s, uint8_t *l2, uint32_t i, uint64_t e, uint64_t bm)
{
    be64_put(l2 + (size_t)i * s->l2_entry_bytes, e);
    if (s->ext_l2)
        be64_put(l2 + (size_t)i * s->l2_entry_bytes + 8, bm);
}

uint64_t qcow2_compressed_entry(struct qcow2_state *s, uint64_t host, uint64_t len)
{
    unsigned x = 62 - (s->cluster_bits - 8);
    uint64_t nsec = ((host + len + 511) >> 9) - (host >> 9);
    return QCOW2_OFLAG_COMPRESSED | ((nsec - 1) << x) | host;
}

int qcow2_l2_classify(struct qcow2_state *s, uint64_t e, uint64_t bm, unsigned sc,
                      enum qcow2_ctype *t, uint64_t *host)
{
    *host = 0;
    if (e & QCOW2_OFLAG_COMPRESSED) {
        *t = QC_COMPRESSED;
        return 0;
    }
    if (e & 0x3f00000000000000ull)
        return -EIO;        /* reserved bits */
    uint64_t h = e & QCOW2_OFFSET_MASK;
    if (e & 0x1feull)
        return -EIO;        /* bits 1-8 reserved: the offset would not be cluster-aligned */
    if (h & (s->cluster_size - 1))
        return -EIO;
    *host = h;
    if (s->ext_l2) {
        bool a = bm & (1ull << sc), z = bm & (1ull << (32 + sc));
        if ((a && z) || (e & QCOW2_OFLAG_ZERO))
            return -EIO;
        if (a) {
            if (!h)
                return -EIO;
            *t = QC_NORMAL;
        } else {
            *t = z ? QC_ZERO : QC_UNALLOC;
        }
        return 0;
    }
    if ((e & QCOW2_OFLAG_ZERO) && s->version >= 3)
        *t = QC_ZERO;
    else if (h)
        *t = QC_NORMAL;
    else if (e & QCOW2_OFLAG_COPIED)
        return -EIO;        /* offset 0 is only valid with an external data file */
    else
        *t = QC_UNALLOC;
    return 0;
}

int qcow2_map(struct qcow2_state *s, uint64_t off, uint64_t len, struct qcow2_map *m)
{
    uint8_t *l2;
    int r = l2_table(s, off, &l2);
    if (r)
        return r;
    uint64_t table_span = (uint64_t)s->l2_entries << s->cluster_bits;
    uint64_t table_end = (off / table_span + 1) * table_span;
    uint64_t end = off + len < table_end ? off + len : table_end;
    memset(m, 0, sizeof(*m));
    if (!l2) {
        m->type = QC_UNALLOC;
        m->bytes = end - off;
        return 0;
    }
    uint64_t pos = off;
    bool first = true;
    bool copied = false;
    while (pos < end) {
        uint32_t i = l2_index(s, pos);
        uint64_t e, bm;
        entry_get(s, l2, i, &e, &bm);
        unsigned sc = (unsigned)((pos >> s->sc_bits) & 31);
        enum qcow2_ctype t;
        uint64_t host;
        if ((r = qcow2_l2_classify(s, e, bm, sc, &t, &host)))
            return r;
        uint64_t in_cl = pos & (s->cluster_size - 1);
        uint64_t h = host + in_cl;
        uint64_t gran = t == QC_COMPRESSED ? s->cluster_size : s->sc_size;
        uint64_t next = (pos & ~(gran - 1)) + gran;
        uint64_t step = (next < end ? next : end) - pos;
        if (t == QC_COMPRESSED || !host)
            h = 0;
        if (first) {
            m->type = t;
            m->host = h;
            m->entry = e;
            m->bitmap = bm;
            copied = e & QCOW2_OFLAG_COPIED;
            first = false;
        } else {
            if (t != m->type || t == QC_COMPRESSED)
                break;
            /* host offsets (also of preallocated zero and unallocated subclusters) must
             * continue the run */
            if ((h || m->host) && h != m->host + m->bytes)
                break;
            if (t == QC_NORMAL && !!(e & QCOW2_OFLAG_COPIED) != copied)
                break;
        }
        m->bytes += step;
        pos += step;
    }
    return 0;
}

/* Reads sector-aligned LUKS data at host into buf. */
static int read_host(struct qcow2_state *s, uint64_t host, uint8_t *buf, size_t n)
{
    if (!s->luks)
        return bfile_pread(s->f, host, buf, n);
    if (!luks_unlocked(s->luks))
        return -EACCES;
    uint64_t a = host & ~511ull, e = (host + n + 511) & ~511ull;
    if (a == host && e == host + n) {
        int r = bfile_pread(s->f, host, buf, n);
        return r ? r : luks_decrypt(s->luks, host / 512, buf, n);
    }
    uint8_t *b = malloc(e - a);
    if (!b)
        return -ENOMEM;
    int r = bfile_pread(s->f, a, b, e - a);
    if (!r)
        r = luks_decrypt(s->luks, a / 512, b, e - a);
    if (!r)
        memcpy(buf, b + (host - a), n);
    free(b);
    return r;
}

/* Writes guest data at host (encrypting, read-modify-write of partial sectors). */
static int write_host(struct qcow2_state *s, uint64_t host, const uint8_t *buf, size_t n)
{
    if (qcow2_overlaps_metadata(s, host, n))
        return -EIO;
    if (!s->luks)
        return bfile_pwrite(s->f, host, buf, n);
    uint64_t a = host & ~511ull, e = (host + n + 511) & ~511ull;
    uint8_t *b = malloc(e - a);
    if (!b)
        return -ENOMEM;
    int r = 0;
    if (a != host || e != host + n)
        r = read_host(s, a, b, e - a);
    if (!r) {
        memcpy(b + (host - a), buf, n);
        r = luks_encrypt(s->luks, a / 512, b, e - a);
    }
    if (!r)
        r = bfile_pwrite(s->f, a, b, e - a);
    free(b);
    return r;
}

static int read_compressed(struct qcow2_state *s, uint64_t entry)
{
    if (s->cbuf_entry == entry)
        return 0;
    uint64_t off, len;
    qcow2_compressed_range(s, entry, &off, &len);
    if (off < s->cluster_size || len > 2ull * s->cluster_size + 512)
        return -EIO;
    int64_t fsz = bfile_size(s->f);
    if (fsz >= 0 && off >= (uint64_t)fsz)
        return -EIO;
    uint8_t *in = malloc(len);
    if (!in)
        return -ENOMEM;
    int r = bfile_pread(s->f, off, in, len);
    if (!r)
        r = decompress_buffer(s->compression_type, in, len, s->cbuf, s->cluster_size);
    free(in);
    s->cbuf_entry = r ? 0 : entry;
    return r;
}

int qcow2_read(struct qcow2_state *s, uint64_t off, void *vbuf, size_t len)
{
    uint8_t *buf = vbuf;
    while (len) {
        struct qcow2_map m;
        int r = qcow2_map(s, off, len, &m);
        if (r)
            return r;
        size_t n = m.bytes;
        switch (m.type) {
        case QC_UNALLOC:
            r = block_read_backing(s->bs, off, buf, n);
            break;
        case QC_ZERO:
            memset(buf, 0, n);
            break;
        case QC_NORMAL:
            r = read_host(s, m.host, buf, n);
            break;
        case QC_COMPRESSED:
            r = read_compressed(s, m.entry);
            if (!r)
                memcpy(buf, s->cbuf + (off & (s->cluster_size - 1)), n);
            break;
        }
        if (r)
            return r;
        off += n;
        buf += n;
        len -= n;
    }
    return 0;
}

int qcow2_grow_l1(struct qcow2_state *s, uint64_t min_size)
{
    if (min_size <= s->l1_size)
        return 0;
    if (min_size > QCOW2_MAX_L1_BYTES / 8)
        return -EFBIG;
    uint64_t bytes = (min_size * 8 + s->cluster_size - 1) & ~(uint64_t)(s->cluster_size - 1);
    int64_t off = qcow2_alloc_clusters(s, bytes >> s->cluster_bits);
    if (off < 0)
        return (int)off;
    uint64_t *nl1 = calloc(bytes / 8, 8);
    uint8_t *raw = calloc(1, bytes);
    int r = -ENOMEM;
    if (!nl1 || !raw)
        goto out;
    memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
    for (uint64_t i = 0; i < min_size; i++)
        be64_put(raw + i * 8, nl1[i]);
    if ((r = bfile_pwrite(s->f, off, raw, bytes)) || (r = qcow2_cache_flush(&s->rb_cache)) ||
        (r = bfile_flush(s->f)))
        goto out;
    uint8_t h[12];
    be32_put(h, (uint32_t)min_size);
    be64_put(h + 4, off);
    if ((r = bfile_pwrite(s->f, 36, h, 12)) || (r = bfile_flush(s->f)))
        goto out;
    uint64_t old = s->l1_off, oldsz = (uint64_t)s->l1_size * 8;
    free(s->l1);
    s->l1 = nl1;
    nl1 = NULL;
    s->l1_off = off;
    s->l1_size = (uint32_t)min_size;
    if (old && oldsz)
        r = qcow2_update_refcount(s, old, oldsz, -1);
out:
    free(nl1);
    free(raw);
    return r;
}

/* The L2 table for off, allocated or copied (if shared with a snapshot) so it can be changed. */
static int l2_writable(struct qcow2_state *s, uint64_t off, uint8_t **l2)
{
    uint32_t i = l1_index(s, off);
    int r;
    if (i >= s->l1_size && (r = qcow2_grow_l1(s, (uint64_t)i + 1)))
        return r;
    uint64_t e = s->l1[i], old = e & QCOW2_OFFSET_MASK;
    if (old && ((old & (s->cluster_size - 1)) || old < s->cluster_size ||
                qcow2_check_in_file(s, old)))
        return -EIO;
    if (old && (e & QCOW2_OFLAG_COPIED)) {
        return qcow2_cache_get(&s->l2_cache, old, false, l2);
    }
    if (old) {
        uint8_t *src;
        if ((r = qcow2_cache_get(&s->l2_cache, old, false, &src)))
            return r;
        memcpy(s->tmp, src, s->cluster_size);
    } else {
        memset(s->tmp, 0, s->cluster_size);
    }
    int64_t n = qcow2_alloc_clusters(s, 1);
    if (n < 0)
        return (int)n;
    if ((r = bfile_pwrite(s->f, n, s->tmp, s->cluster_size)))
        return r;
    if (!(s->compat & QCOW2_COMPAT_LAZY) &&
        ((r = qcow2_cache_flush(&s->rb_cache)) || (r = bfile_flush(s->f))))
        return r;
    s->l1[i] = (uint64_t)n | QCOW2_OFLAG_COPIED;
    if ((r = qcow2_write_l1_entry(s, i)))
        return r;
    if (old && (r = qcow2_update_refcount(s, old, s->cluster_size, -1)))
        return r;
    uint8_t *t;
    if ((r = qcow2_cache_get(&s->l2_cache, (uint64_t)n, true, &t)))
        return r;
    memcpy(t, s->tmp, s->cluster_size);
    *l2 = t;
    return 0;
}

/* Releases what an L2 entry held (after the new entry is on disk). */
static int release_entry(struct qcow2_state *s, uint64_t e, bool keep_host)
{
    if (e & QCOW2_OFLAG_COMPRESSED) {
        uint64_t o, l;
        qcow2_compressed_range(s, e, &o, &l);
        return qcow2_free_later(s, o, l);
    }
    uint64_t h = e & QCOW2_OFFSET_MASK;
    if (h && !keep_host)
        return qcow2_free_later(s, h, s->cluster_size);
    return 0;
}

static int set_entry(struct qcow2_state *s, uint64_t guest, uint64_t e, uint64_t bm)
{
    uint8_t *l2;
    int r = l2_writable(s, guest, &l2);
    if (r)
        return r;
    entry_set(s, l2, l2_index(s, guest), e, bm);
    qcow2_cache_dirty(&s->l2_cache, l2);
    return 0;
}

int qcow2_prepare_l2(struct qcow2_state *s, uint64_t guest)
{
    uint8_t *l2;
    return l2_writable(s, guest, &l2);
}

int qcow2_map_range(struct qcow2_state *s, uint64_t guest, uint64_t host, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        int r = set_entry(s, guest + (i << s->cluster_bits),
                          (host + (i << s->cluster_bits)) | QCOW2_OFLAG_COPIED,
                          s->ext_l2 ? ALL_ALLOC_BITS : 0);
        if (r)
            return r;
    }
    return 0;
}

static int get_entry(struct qcow2_state *s, uint64_t guest, uint64_t *e, uint64_t *bm)
{
    uint8_t *l2;
    int r = l2_table(s, guest, &l2);
    *e = *bm = 0;
    if (r || !l2)
        return r;
    entry_get(s, l2, l2_index(s, guest), e, bm);
    return 0;
}

static int mark_dirty(struct qcow2_state *s)
{
    if ((s->compat & QCOW2_COMPAT_LAZY) && !s->lazy_dirty) {
        int r = qcow2_set_incompat(s, QCOW2_INCOMPAT_DIRTY, 0);
        if (r)
            return r;
        s->lazy_dirty = true;
    }
    return 0;
}

/* Contents of [off, off+len) as the guest sees them now, zeros past the virtual end; the VM
 * state area (snapshot.h) keeps what it holds. */
static int read_guest(struct qcow2_state *s, uint64_t off, uint8_t *buf, size_t len)
{
    uint64_t size = s->bs->size;
    if (off >= qcow2_vmstate_offset(s))
        return qcow2_read(s, off, buf, len);
    size_t n = off >= size ? 0 : (size - off < len ? size - off : len);
    if (n < len)
        memset(buf + n, 0, len - n);
    return n ? qcow2_read(s, off, buf, n) : 0;
}

/* Whether a cluster must be given a new host cluster before a write. */
static bool needs_alloc(struct qcow2_state *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED)
        return true;
    uint64_t h = e & QCOW2_OFFSET_MASK;
    (void)s;
    return !h || !(e & QCOW2_OFLAG_COPIED);
}

/* Extended L2: one cluster, subcluster by subcluster. */
static int write_ext_cluster(struct qcow2_state *s, uint64_t off, const uint8_t *buf, size_t n)
{
    uint64_t cstart = off & ~(uint64_t)(s->cluster_size - 1);
    uint64_t e, bm;
    int r = get_entry(s, off, &e, &bm);
    if (r)
        return r;
    uint64_t h = e & QCOW2_OFFSET_MASK;
    unsigned s0 = (unsigned)((off - cstart) >> s->sc_bits);
    unsigned s1 = (unsigned)((off + n - 1 - cstart) >> s->sc_bits);
    uint64_t mask = ((2ull << s1) - 1) & ~((1ull << s0) - 1);
    uint64_t a = cstart + ((uint64_t)s0 << s->sc_bits);
    uint64_t span = (uint64_t)(s1 - s0 + 1) << s->sc_bits;
    if (!(e & QCOW2_OFLAG_COMPRESSED) && h && (e & QCOW2_OFLAG_COPIED)) {
        if ((r = qcow2_check_in_file(s, h)))
            return r;
        if ((bm & mask) == mask)
            return write_host(s, h + (off - cstart), buf, n);
        if ((r = read_guest(s, a, s->tmp, span)))
            return r;
        memcpy(s->tmp + (off - a), buf, n);
        if ((r = write_host(s, h + (a - cstart), s->tmp, span)))
            return r;
        return set_entry(s, off, e, (bm | mask) & ~(mask << 32));
    }
    if (!(e & QCOW2_OFLAG_COMPRESSED) && !h) {
        if ((r = read_guest(s, a, s->tmp, span)))
            return r;
        memcpy(s->tmp + (off - a), buf, n);
        int64_t nh = qcow2_alloc_clusters(s, 1);
        if (nh < 0)
            return (int)nh;
        if ((r = write_host(s, nh + (a - cstart), s->tmp, span)))
            return r;
        return set_entry(s, off, (uint64_t)nh | QCOW2_OFLAG_COPIED, (bm | mask) & ~(mask << 32));
    }
    /* shared or compressed: the whole cluster moves */
    if ((r = read_guest(s, cstart, s->tmp, s->cluster_size)))
        return r;
    memcpy(s->tmp + (off - cstart), buf, n);
    int64_t nh = qcow2_alloc_clusters(s, 1);
    if (nh < 0)
        return (int)nh;
    if ((r = write_host(s, nh, s->tmp, s->cluster_size)) ||
        (r = set_entry(s, off, (uint64_t)nh | QCOW2_OFLAG_COPIED, ALL_ALLOC_BITS)))
        return r;
    return release_entry(s, e, false);
}

/* One new cluster at host for guest cluster g: the old contents with [off, wend) replaced. */
static int cow_cluster(struct qcow2_state *s, uint64_t g, uint64_t host, uint64_t off,
                       uint64_t wend, const uint8_t *buf)
{
    int r = read_guest(s, g, s->tmp, s->cluster_size);
    if (r)
        return r;
    uint64_t a = off > g ? off : g;
    uint64_t b = wend < g + s->cluster_size ? wend : g + s->cluster_size;
    memcpy(s->tmp + (a - g), buf + (a - off), b - a);
    return write_host(s, host, s->tmp, s->cluster_size);
}

int qcow2_write(struct qcow2_state *s, uint64_t off, const void *vbuf, size_t len)
{
    const uint8_t *buf = vbuf;
    int r = mark_dirty(s);
    uint64_t cs = s->cluster_size;
    while (!r && len) {
        uint64_t cstart = off & ~(cs - 1);
        size_t n = cs - (off - cstart) < len ? cs - (off - cstart) : len;
        if (s->ext_l2) {
            r = write_ext_cluster(s, off, buf, n);
            off += n, buf += n, len -= n;
            continue;
        }
        uint64_t e, bm;
        if ((r = get_entry(s, off, &e, &bm)))
            break;
        if (!needs_alloc(s, e) && !(e & QCOW2_OFLAG_ZERO && s->version >= 3)) {
            /* in place; extend over following clusters that are contiguous and ours */
            struct qcow2_map m;
            if ((r = qcow2_map(s, off, len, &m)))
                break;
            if (m.type != QC_NORMAL) {
                r = -EIO;
                break;
            }
            if (!(r = qcow2_check_in_file(s, m.host)))
                r = write_host(s, m.host, buf, m.bytes);
            off += m.bytes, buf += m.bytes, len -= m.bytes;
            continue;
        }
        if (!needs_alloc(s, e)) {
            /* preallocated zero cluster: fill it, then drop the zero flag */
            memset(s->tmp, 0, cs);
            memcpy(s->tmp + (off - cstart), buf, n);
            uint64_t h = e & QCOW2_OFFSET_MASK;
            if ((r = qcow2_check_in_file(s, h)) || (r = write_host(s, h, s->tmp, cs)))
                break;
            r = set_entry(s, off, h | QCOW2_OFLAG_COPIED, 0);
            off += n, buf += n, len -= n;
            continue;
        }
        /* New clusters for a run of clusters needing them (within one L2 table). */
        uint64_t k = 1;
        uint64_t table_span = (uint64_t)s->l2_entries << s->cluster_bits;
        while (cstart + k * cs < off + len && (cstart + k * cs) % table_span && k < 4096) {
            uint64_t e2, bm2;
            if ((r = get_entry(s, cstart + k * cs, &e2, &bm2)))
                return r;
            if (!needs_alloc(s, e2))
                break;
            k++;
        }
        int64_t nh = qcow2_alloc_clusters(s, k);
        if (nh < 0) {
            r = (int)nh;
            break;
        }
        uint64_t wend = off + len < cstart + k * cs ? off + len : cstart + k * cs;
        bool first_partial = off > cstart || wend < cstart + cs;
        bool last_partial = k > 1 && wend < cstart + k * cs;
        uint64_t mid_from = cstart + (first_partial ? cs : 0);
        uint64_t mid_to = cstart + k * cs - (last_partial ? cs : 0);
        if (first_partial && (r = cow_cluster(s, cstart, nh, off, wend, buf)))
            break;
        if (mid_to > mid_from &&
            (r = write_host(s, nh + (mid_from - cstart), buf + (mid_from - off),
                            mid_to - mid_from)))
            break;
        if (last_partial && (r = cow_cluster(s, cstart + (k - 1) * cs, nh + (k - 1) * cs, off,
                                             wend, buf)))
            break;
        for (uint64_t i = 0; i < k && !r; i++) {
            uint64_t g = cstart + i * cs, old, obm;
            if ((r = get_entry(s, g, &old, &obm)))
                break;
            if ((r = set_entry(s, g, (uint64_t)(nh + i * cs) | QCOW2_OFLAG_COPIED, 0)))
                break;
            r = release_entry(s, old, false);
        }
        uint64_t adv = wend - off;
        off += adv, buf += adv, len -= adv;
    }
    int r2 = qcow2_process_frees(s);
    return r ? r : r2;
}

long qcow2_compress(struct qcow2_state *s, const void *buf, size_t len, void *out)
{
    uint64_t cs = s->cluster_size;
    uint8_t *pad = NULL;
    const void *in = buf;
    if (len < cs) {
        /* the image's tail: the cluster is compressed whole, zero-padded */
        if (!(pad = calloc(1, cs)))
            return -ENOMEM;
        memcpy(pad, buf, len);
        in = pad;
    }
    long cl = compress_buffer(s->compression_type, in, cs, out, cs - 1);
    free(pad);
    if (cl == -ENOSPC || (cl >= 0 && (uint64_t)cl >= cs - 512))
        return 0;    /* does not shrink by a sector: stored plainly */
    return cl;
}

int qcow2_write_compressed_data(struct qcow2_state *s, uint64_t off, const void *buf,
                                size_t len, const void *cdata, long cl)
{
    uint64_t cs = s->cluster_size;
    if ((off & (cs - 1)) || (len != cs && off + len != s->bs->size) || len > cs)
        return -EINVAL;
    if (s->crypt_method)
        return -ENOTSUP;
    if (cl <= 0)
        return qcow2_write(s, off, buf, len);
    int r = mark_dirty(s);
    if (r)
        return r;
    int64_t co = qcow2_alloc_bytes(s, (uint32_t)cl);
    if (co < 0)
        return (int)co;
    if ((r = write_host(s, (uint64_t)co, cdata, (size_t)cl)))
        return r;
    uint64_t e = qcow2_compressed_entry(s, (uint64_t)co, (uint64_t)cl);
    uint64_t old, obm;
    if ((r = get_entry(s, off, &old, &obm)) || (r = set_entry(s, off, e, 0)) ||
        (r = release_entry(s, old, false)))
        return r;
    return qcow2_process_frees(s);
}

int qcow2_write_compressed(struct qcow2_state *s, uint64_t off, const void *buf, size_t len)
{
    if (len > s->cluster_size)
        return -EINVAL;
    if (s->crypt_method)
        return -ENOTSUP;
    uint8_t *out = malloc(s->cluster_size);
    if (!out)
        return -ENOMEM;
    long cl = qcow2_compress(s, buf, len, out);
    int r = cl < 0 ? (int)cl : qcow2_write_compressed_data(s, off, buf, len, out, cl);
    free(out);
    return r;
}

/* Explicit zeros through the write path, in pieces that end on 64 KiB boundaries so a sector
 * is never half zeroed by a crash between two pieces. */
static int write_zeros(struct qcow2_state *s, uint64_t off, uint64_t n)
{
    static const uint8_t zeros[65536];
    int r = 0;
    while (n && !r) {
        uint64_t c = sizeof(zeros) - (off & (sizeof(zeros) - 1));
        if (c > n)
            c = n;
        r = qcow2_write(s, off, zeros, c);
        off += c;
        n -= c;
    }
    return r;
}

/* Part of a cluster: explicit zeros, except where it reads as zeros already. */
static int zero_partial(struct qcow2_state *s, uint64_t off, uint64_t n)
{
    while (n) {
        struct qcow2_map m;
        int r = qcow2_map(s, off, n, &m);
        if (r)
            return r;
        uint64_t k = m.bytes < n ? m.bytes : n;
        if (!(m.type == QC_ZERO || (m.type == QC_UNALLOC && !s->bs->backing)) &&
            (r = write_zeros(s, off, k)))
            return r;
        off += k;
        n -= k;
    }
    return 0;
}

/* Extended L2: the whole subclusters of a partial range become zero subclusters (their zero
 * bit set, allocation bit cleared, no data written, as QEMU does); the edges get explicit
 * zeros. A compressed cluster has no bitmap: all explicit. */
static int zero_subclusters(struct qcow2_state *s, uint64_t off, uint64_t n)
{
    uint64_t sc = s->sc_size, cstart = off & ~(uint64_t)(s->cluster_size - 1);
    uint64_t a = (off + sc - 1) & ~(sc - 1), b = (off + n) & ~(sc - 1);
    uint64_t e, bm;
    int r;
    if (b <= a)
        return zero_partial(s, off, n);
    /* the head first: writing it may allocate the cluster and change the entry */
    if ((r = zero_partial(s, off, a - off)) || (r = get_entry(s, off, &e, &bm)))
        return r;
    if (e & QCOW2_OFLAG_COMPRESSED)
        return zero_partial(s, a, off + n - a);
    unsigned s0 = (unsigned)((a - cstart) >> s->sc_bits);
    unsigned s1 = (unsigned)((b - cstart) >> s->sc_bits);     /* at most 32 */
    uint64_t mask = ((1ull << s1) - 1) & ~((1ull << s0) - 1);
    uint64_t nbm = (bm & ~mask) | (mask << 32);
    if (nbm != bm && (r = set_entry(s, off, e, nbm)))
        return r;
    return zero_partial(s, b, off + n - b);
}

/* Zeroing (and discard, which frees clusters and may leave v2 ranges to the backing file). */
int qcow2_zero(struct qcow2_state *s, uint64_t off, uint64_t len, bool unmap, int mode)
{
    bool discard = mode != 0;
    uint64_t cs = s->cluster_size, end = off + len;
    int r = mark_dirty(s);
    while (!r && off < end) {
        uint64_t cstart = off & ~(cs - 1);
        uint64_t cend = cstart + cs;
        bool full = off == cstart && (cend <= end || end >= s->bs->size);
        uint64_t n = (cend < end ? cend : end) - off;
        if (!full) {
            if (!discard && s->ext_l2)
                r = zero_subclusters(s, off, n);
            else if (!discard)
                r = zero_partial(s, off, n);
            off += n;
            continue;
        }
        uint64_t e, bm;
        if ((r = get_entry(s, off, &e, &bm)))
            break;
        uint64_t h = e & QCOW2_OFFSET_MASK;
        bool compressed = e & QCOW2_OFLAG_COMPRESSED;
        bool allocated = compressed || h || (s->ext_l2 ? bm != 0 : (e & QCOW2_OFLAG_ZERO));
        bool backing = s->bs->backing != NULL;
        uint64_t ne, nbm = 0;
        bool keep = false;
        if (s->version < 3) {
            if (!discard && (backing || (allocated && !unmap)) && mode != 2) {
                /* no zero flag in v2: write zeros */
                r = write_zeros(s, off, n);
                off += n;
                continue;
            }
            ne = 0;
        } else if (s->ext_l2) {
            if (!discard && !unmap && h && (e & QCOW2_OFLAG_COPIED) && !compressed) {
                ne = e;
                keep = true;
            } else {
                ne = 0;
            }
            nbm = (discard && !backing && !allocated) ? 0 : ALL_ZERO_BITS;
        } else if (!discard && !unmap && h && (e & QCOW2_OFLAG_COPIED) && !compressed) {
            ne = e | QCOW2_OFLAG_ZERO;
            keep = true;
        } else {
            ne = (discard && !backing && !allocated) ? 0 : QCOW2_OFLAG_ZERO;
        }
        if (mode == 2) {
            ne = 0;
            nbm = 0;
            keep = false;
        }
        if (ne != e || nbm != bm) {
            if (!allocated && !ne && !nbm) {
                off += n;
                continue;
            }
            if ((r = set_entry(s, off, ne, nbm)))
                break;
            r = release_entry(s, e, keep);
        }
        off += n;
    }
    int r2 = qcow2_process_frees(s);
    return r ? r : r2;
}
