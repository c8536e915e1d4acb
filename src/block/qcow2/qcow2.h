/* qcow2 inside the block layer: on-disk constants (QEMU's docs/interop/qcow2.txt) and the
 * driver state shared by the qcow2 files. The public face for tools is the qcow2_* functions
 * at the end (create, check, snapshots, amend). */
#ifndef QKVM_BLOCK_QCOW2_H
#define QKVM_BLOCK_QCOW2_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "block/driver.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)       /* QEMU's limits, kept for interop */
#define QCOW2_MAX_RT_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_BACKING_NAME 1023

#define QCOW2_INCOMPAT_DIRTY      (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT    (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE  (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2      (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN      0x1full
#define QCOW2_COMPAT_LAZY         (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS   (1ull << 0)

#define QCOW2_EXT_END       0x00000000u
#define QCOW2_EXT_BACKING   0xe2792acau
#define QCOW2_EXT_FEATURES  0x6803f857u
#define QCOW2_EXT_BITMAPS   0x23852875u
#define QCOW2_EXT_CRYPTO    0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       1ull
#define QCOW2_OFFSET_MASK      0x00fffffffffffe00ull
#define QCOW2_L1_RESERVED      0x7f000000000001ffull
#define QCOW2_L2_RESERVED      0x3f000000000001feull

#define QCOW2_CRYPT_NONE 0
#define QCOW2_CRYPT_AES  1
#define QCOW2_CRYPT_LUKS 2

static inline uint64_t be64_get(const void *p)
{
    const uint8_t *b = p;
    return (uint64_t)b[0] << 56 | (uint64_t)b[1] << 48 | (uint64_t)b[2] << 40 |
           (uint64_t)b[3] << 32 | (uint64_t)b[4] << 24 | (uint64_t)b[5] << 16 |
           (uint64_t)b[6] << 8 | b[7];
}
static inline uint32_t be32_get(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static inline uint16_t be16_get(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] << 8 | b[1]);
}
static inline void be64_put(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}
static inline void be32_put(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = v >> 24; b[1] = v >> 16; b[2] = v >> 8; b[3] = (uint8_t)v;
}
static inline void be16_put(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = v >> 8; b[1] = (uint8_t)v;
}

/* A write-back cache of cluster-sized tables (L2 tables or refcount blocks). */
struct qcow2_cache_entry {
    uint64_t off;        /* 0 = empty */
    uint8_t *buf;
    bool dirty;
    uint64_t used;       /* LRU stamp */
};
struct qcow2_cache {
    struct qcow2_state *s;
    int n;
    struct qcow2_cache_entry *e;
    uint64_t tick;
    int last;
    /* Flushed (and synced) before this one writes anything: refcounts before the L2 tables
     * that point at the clusters they count. */
    struct qcow2_cache *depends;
};

struct qcow2_snapshot {
    uint64_t l1_off;
    uint32_t l1_size;
    char *id, *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t vm_state_size;
    uint64_t disk_size;
    uint64_t icount;             /* ~0: none */
    uint32_t extra_size;
    uint8_t *extra;              /* extra data as read (unknown fields preserved) */
};

struct qcow2_ext {
    uint32_t type, len;
    uint8_t *data;
};

struct luks;

/* Where a guest range lives. */
enum qcow2_ctype {
    QC_UNALLOC,      /* read from the backing file */
    QC_ZERO,         /* reads as zeros, no host cluster (or one we may reuse: see host) */
    QC_NORMAL,
    QC_COMPRESSED,
};

struct qcow2_state {
    struct block *bs;
    struct bfile *f;
    int version;
    unsigned cluster_bits;
    uint32_t cluster_size;
    unsigned l2_bits;            /* log2 of entries per L2 table */
    uint32_t l2_entries;
    bool ext_l2;
    unsigned l2_entry_bytes;     /* 8 or 16 */
    unsigned sc_bits;            /* log2 subcluster size */
    uint32_t sc_size;
    unsigned refcount_order;
    unsigned rb_bits;            /* log2 entries per refcount block */
    uint64_t refcount_max;
    uint64_t *l1;
    uint32_t l1_size;
    uint64_t l1_off;
    uint64_t *rt;
    uint64_t rt_off;
    uint32_t rt_clusters;
    uint64_t rt_entries;
    uint64_t incompat, compat, autoclear;
    uint32_t header_len;
    uint8_t *header_extra;       /* v3 header bytes past 104 (unknown additional fields) */
    int compression_type;        /* 0 zlib, 1 zstd */
    uint32_t crypt_method;
    uint64_t crypt_off, crypt_len;
    struct luks *luks;
    uint32_t nb_snapshots;
    uint64_t snapshots_off;
    uint64_t snapshots_size;
    struct qcow2_snapshot *snaps;
    struct qcow2_ext *exts;      /* unknown extensions, preserved on header rewrite */
    int n_exts;
    char *backing_name, *backing_fmt;
    struct qcow2_cache l2_cache, rb_cache;
    uint64_t free_cluster_index; /* allocation search start; only moves up until a flush */
    uint64_t min_freed;          /* lowest cluster freed since the last flush */
    uint64_t free_byte_offset;   /* packing of compressed clusters: next free byte, or 0 */
    uint64_t *pending_free;      /* host offsets to decrement once the L2 tables are on disk */
    size_t n_pending, cap_pending;
    bool lazy_dirty;             /* we set the dirty bit (lazy refcounts) */
    bool writable;
    uint8_t *cbuf;               /* last decompressed cluster */
    uint64_t cbuf_entry;         /* its L2 entry (0 = none) */
    uint8_t *tmp;                /* cluster-sized scratch for COW */
    int64_t file_end;            /* file size when last asked (in-place writes check it) */
};

/* -EACCES when the image may not be written (corrupt, or encrypted and locked). */
int qcow2_writable_check(struct qcow2_state *s);

/* header.c */
int qcow2_update_header(struct qcow2_state *s);
int qcow2_set_incompat(struct qcow2_state *s, uint64_t set, uint64_t clear);
int qcow2_validate_table(struct qcow2_state *s, uint64_t off, uint64_t entries,
                         unsigned entry_bytes, uint64_t max_bytes, const char *what, char *err);
int qcow2_flush_all(struct qcow2_state *s);
int qcow2_write_l1_entry(struct qcow2_state *s, uint32_t idx);

/* cache.c */
int qcow2_cache_init(struct qcow2_cache *c, struct qcow2_state *s, int n);
void qcow2_cache_free(struct qcow2_cache *c);
/* Gets the table at off (read from disk unless fresh: fresh tables start zeroed). */
int qcow2_cache_get(struct qcow2_cache *c, uint64_t off, bool fresh, uint8_t **buf);
void qcow2_cache_dirty(struct qcow2_cache *c, const uint8_t *buf);
int qcow2_cache_flush(struct qcow2_cache *c);
/* Forgets off (a freed table) without writing it. */
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off);
void qcow2_cache_clear(struct qcow2_cache *c);

/* refcount.c */
int qcow2_get_refcount(struct qcow2_state *s, uint64_t cluster, uint64_t *ref);
int qcow2_update_refcount(struct qcow2_state *s, uint64_t off, uint64_t len, int64_t addend);
/* Allocates n contiguous clusters (refcount 1 each); returns the host offset or -errno. */
int64_t qcow2_alloc_clusters(struct qcow2_state *s, uint64_t n);
/* Allocates len bytes for compressed data (may share a cluster with others). */
int64_t qcow2_alloc_bytes(struct qcow2_state *s, uint32_t len);
/* Decrements the refcount of the host clusters behind an L2 entry later, once the L2 tables
 * that stopped pointing at them are on disk. */
int qcow2_free_later(struct qcow2_state *s, uint64_t off, uint64_t len);
int qcow2_process_frees(struct qcow2_state *s);
bool qcow2_overlaps_metadata(struct qcow2_state *s, uint64_t off, uint64_t len);
/* -EIO unless the cluster at off begins inside the file. Tables and data written in place
 * always do (new clusters are written as they are allocated); one pointing past the end is
 * corrupt, and writing there would grow the file to any size. */
int qcow2_check_in_file(struct qcow2_state *s, uint64_t off);
/* For an L2 table write: does off land on the header, L1, refcount structures, snapshots? */
bool qcow2_overlaps_other_than_l2(struct qcow2_state *s, uint64_t off);
void qcow2_refcount_set_entry(struct qcow2_state *s, uint8_t *blk, uint64_t i, uint64_t v);
uint64_t qcow2_refcount_get_entry(struct qcow2_state *s, const uint8_t *blk, uint64_t i);

/* cluster.c */
struct qcow2_map {
    enum qcow2_ctype type;
    uint64_t host;        /* host offset of the guest offset asked (NORMAL/COMPRESSED entry) */
    uint64_t entry;       /* the L2 entry */
    uint64_t bitmap;      /* extended L2 bitmap */
    uint64_t bytes;       /* run length with this type (and contiguous host for NORMAL) */
};
int qcow2_map(struct qcow2_state *s, uint64_t off, uint64_t len, struct qcow2_map *m);
/* What an L2 entry (and, extended, its bitmap) says of subcluster sc: *t, and *host, its host
 * cluster offset (NORMAL, or ZERO with a preallocated cluster). -EIO for reserved bits set,
 * an unaligned offset, or a bitmap that contradicts itself. */
int qcow2_l2_classify(struct qcow2_state *s, uint64_t e, uint64_t bm, unsigned sc,
                      enum qcow2_ctype *t, uint64_t *host);
/* The L2 entry of compressed data: len bytes at host (the inverse of qcow2_compressed_range,
 * which rounds the end up to a sector). */
uint64_t qcow2_compressed_entry(struct qcow2_state *s, uint64_t host, uint64_t len);
void qcow2_compressed_range(struct qcow2_state *s, uint64_t entry, uint64_t *off,
                            uint64_t *len);
int qcow2_read(struct qcow2_state *s, uint64_t off, void *buf, size_t len);
int qcow2_write(struct qcow2_state *s, uint64_t off, const void *buf, size_t len);
int qcow2_write_compressed(struct qcow2_state *s, uint64_t off, const void *buf, size_t len);
/* The two halves of it. qcow2_compress touches nothing mutable (thread-safe, no lock): the
 * compressed length in out (cluster_size bytes), 0 when it would not shrink, or -errno.
 * qcow2_write_compressed_data stores that (cl 0: buf plainly). */
long qcow2_compress(struct qcow2_state *s, const void *buf, size_t len, void *out);
int qcow2_write_compressed_data(struct qcow2_state *s, uint64_t off, const void *buf,
                                size_t len, const void *cdata, long cl);
/* mode 0: write zeroes; 1: discard (reads as zeros where the format can say so); 2: make the
 * range unallocated (commit empties the top image this way). */
int qcow2_zero(struct qcow2_state *s, uint64_t off, uint64_t len, bool unmap, int mode);
int qcow2_grow_l1(struct qcow2_state *s, uint64_t min_size);
/* Points n guest clusters from guest on at host clusters from host (preallocation). */
int qcow2_prepare_l2(struct qcow2_state *s, uint64_t guest);
int qcow2_map_range(struct qcow2_state *s, uint64_t guest, uint64_t host, uint64_t n);
uint64_t qcow2_l1_entries_for(struct qcow2_state *s, uint64_t size);

/* snapshot.c */
int qcow2_read_snapshots(struct qcow2_state *s, char *err);
void qcow2_free_snapshots(struct qcow2_state *s);
int qcow2_snapshot_create(struct qcow2_state *s, const char *name);
int qcow2_snapshot_apply(struct qcow2_state *s, const char *name);
int qcow2_snapshot_delete(struct qcow2_state *s, const char *name);
int qcow2_snapshot_find(struct qcow2_state *s, const char *name);
/* The snapshot table as stored (*out malloc'd, *size bytes). */
int qcow2_encode_snapshots(struct qcow2_state *s, const struct qcow2_snapshot *sn, uint32_t n,
                           uint8_t **out, uint64_t *size);

/* switch.c: makes src_l1 (entries pointing at the L2 tables to start from) the active table,
 * snaps the snapshot list and size the virtual size, all in one header write; everything
 * else (L2 copies with their COPIED flags, refcounts) follows from those. *switched tells
 * whether the image changed (it did when the switch write succeeded, even if the final flush
 * then failed and r < 0). -ERANGE: refcount_bits too small for the references. */
int qcow2_switch_metadata(struct qcow2_state *s, const uint64_t *src_l1, uint32_t l1_size,
                          struct qcow2_snapshot *snaps, uint32_t nb, uint64_t size,
                          bool *switched);

/* check.c: the driver's check (block.h's block_check) */
int qcow2_check(struct qcow2_state *s, int fix, struct block_check_result *res, FILE *log);

/* create.c */
int qcow2_create(const char *path, const struct block_create_opts *o, char *err);

/* The image's driver state (white-box tests and fuzzers only); NULL when bs is not qcow2. */
struct qcow2_state *block_qcow2(struct block *bs);

/* snapshot.c: the driver's snapshot operations (block/snapshot.h) */
int qcow2_snapshot_list(struct block *bs, struct block_snapshot **out, int *n);
int qcow2_snapshot_create_vm(struct block *bs, const struct block_snapshot *sn);
int qcow2_snapshot_goto(struct block *bs, const char *id_or_name);
int qcow2_snapshot_remove(struct block *bs, const char *id, const char *name);
int qcow2_snapshot_load_tmp(struct block *bs, const char *id, const char *name);
int qcow2_vmstate_rw(struct block *bs, uint64_t pos, void *buf, size_t len, bool write);
int qcow2_snapshot_vmstate_read(struct block *bs, const char *id_or_name, uint64_t pos, void *buf,
                                size_t len);
/* Where the VM state area starts: the first guest offset past the virtual size that begins
 * an L1 entry's range (QEMU's qcow2_vm_state_offset). */
uint64_t qcow2_vmstate_offset(struct qcow2_state *s);

/* Other operations for qkvm-img (the block lock held by the caller or single-threaded). */
int qcow2_amend(struct qcow2_state *s, int version, int lazy, char *err);
int qcow2_make_empty_prepare(struct qcow2_state *s);
int qcow2_set_backing(struct qcow2_state *s, const char *name, const char *fmt);

#endif
