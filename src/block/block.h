/* The block layer: disk images by name, read and written at byte granularity.
 *
 * Formats: raw and qcow2 (v2/v3, backing chains, snapshots, compression, LUKS). Nothing here
 * knows about VMs; virtio-blk, the NBD server and the tools all sit on this interface.
 *
 * Every function returns 0 (or a count where stated) or a negative errno. block_open also fills
 * a human-readable one-line reason so a tool can print a single clear message.
 *
 * Threads: a struct block may be used from several threads; each call takes the image's mutex,
 * so calls on one image are serialized (an I/O thread and a monitor thread may share it).
 */
#ifndef QKVM_BLOCK_BLOCK_H
#define QKVM_BLOCK_BLOCK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#define BLOCK_ERR_MAX 512
/* Printf into err (BLOCK_ERR_MAX bytes; NULL ignored). Returns ret for tail calls. */
int block_seterr(char *err, int ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

enum block_format {
    BLOCK_FMT_AUTO = 0, /* probe: qcow2 magic, else raw */
    BLOCK_FMT_RAW,
    BLOCK_FMT_QCOW2,
};

/* QEMU's cache= modes. writeback: metadata cached, flush on request. writethrough: every write
 * is followed by a flush. none/directsync: O_DIRECT (falls back if the file system refuses).
 * unsafe: flush requests are ignored. */
enum block_cache {
    BLOCK_CACHE_WRITEBACK = 0,
    BLOCK_CACHE_WRITETHROUGH,
    BLOCK_CACHE_NONE,
    BLOCK_CACHE_DIRECTSYNC,
    BLOCK_CACHE_UNSAFE,
};

struct block_open_opts {
    enum block_format format;
    bool read_only;
    enum block_cache cache;
    bool no_backing;          /* open without the backing file (reads of unallocated = zeros) */
    const char *backing_file; /* replaces the backing file named in the image (NULL: as stored) */
    enum block_format backing_format;
    const char *secret;       /* LUKS passphrase (not NUL-terminated if secret_len given) */
    size_t secret_len;
    bool no_repair;           /* skip that repair (qkvm-img check opens this way) */
    bool metadata_only;       /* info/check: encrypted images open without a secret, no I/O */
    bool force_share;         /* -U: a reader that lets others write (no lock against them) */
    bool no_lock;             /* no image lock at all: an incoming migration's disk, whose lock
                                 the source holds until it has handed over (docs/migration.md) */
    uint64_t l2_cache_bytes;  /* qcow2 metadata caches (0: the L2 cache covers the image) */
    uint64_t refcount_cache_bytes;
};

struct block;

/* Opens path. err (BLOCK_ERR_MAX bytes, may be NULL) receives a one-line reason on failure. */
int block_open(const char *path, const struct block_open_opts *opts, struct block **out,
               char *err);
/* Images are locked as QEMU locks them: one writer and no reader that refuses sharing, or
 * any number of readers. Creating an image over an existing file takes the writer's lock on
 * the descriptor it then truncates: a file another process uses is refused untouched, with
 * -EBUSY and a one-line reason in err. */
/* A raw image of size bytes; prealloc as qemu-img's: 0 off, 1 metadata (as off), 2 falloc,
 * 3 full (zeros written). */
int block_create_raw(const char *path, uint64_t size, int prealloc, char *err);
/* Loads now every library an image may need later (zlib, zstd, libcrypto are otherwise loaded at
 * first use), for a process about to lose the right to open files (a sandbox, a chroot). A
 * missing library is not an error here: the image that needs it says so when it does. */
void block_preload_libs(void);
/* Flushes and closes; returns the flush result. bs may be NULL. */
int block_close(struct block *bs);

/* Byte-granular I/O; unaligned offsets and lengths are fine. Reads past the end are -EINVAL. */
int block_pread(struct block *bs, uint64_t off, void *buf, size_t len);
int block_pwrite(struct block *bs, uint64_t off, const void *buf, size_t len);
int block_preadv(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt);
/* A read without the copy, for bulk copies (convert): where [off, off+len) lies as it is in a
 * host file in one piece (raw; a run of plain qcow2 clusters), m->data points into a read-only
 * mapping of that file; elsewhere the bytes are read into buf and m->data is buf. Release with
 * block_unmap. A mapping follows the file: if someone else truncates it meanwhile, touching
 * the lost pages raises SIGBUS (and a write() from them fails with -EFAULT). */
struct block_map {
    const uint8_t *data;
    void *addr;                 /* the mapping, or NULL */
    size_t maplen;
};
int block_pread_map(struct block *bs, uint64_t off, size_t len, void *buf, struct block_map *m);
void block_unmap(struct block_map *m);
int block_pwritev(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt);
/* Writes a compressed cluster (qcow2 only; off and len cluster-aligned, len a cluster or the
 * image's tail). */
int block_pwrite_compressed(struct block *bs, uint64_t off, const void *buf, size_t len);
/* The same in two steps, so the compression (the slow part) can run on several threads:
 * block_compress takes no lock and changes nothing; it puts the compressed form of buf in out
 * (cluster_size bytes) and returns its length, 0 when it would not shrink, or -errno.
 * block_pwrite_precompressed then stores it at off (for 0, buf as it is). qcow2 only. */
long block_compress(struct block *bs, const void *buf, size_t len, void *out);
int block_pwrite_precompressed(struct block *bs, uint64_t off, const void *buf, size_t len,
                               const void *cdata, long clen);

#define BLOCK_ZERO_MAY_UNMAP 1u   /* the zeroed range may be deallocated */
int block_pwrite_zeroes(struct block *bs, uint64_t off, uint64_t len, unsigned flags);
/* Discard: the range reads as zeros afterwards (qcow2 v3, raw with hole punching) or is left
 * unchanged where the format cannot tell; freed clusters go back to the allocator. */
int block_discard(struct block *bs, uint64_t off, uint64_t len);
int block_flush(struct block *bs);
/* Lets go of the image's lock (QEMU's lock bytes) while it stays open: the image now belongs
 * to another process (the destination of a migration). Flush first; the open is not used again
 * (its cached metadata would be stale once the other side writes): open the image anew. */
void block_release_lock(struct block *bs);

uint64_t block_length(struct block *bs);
/* Changes the virtual size. Shrinking needs allow_shrink. */
int block_truncate(struct block *bs, uint64_t size, bool allow_shrink);

/* Allocation status of [off, off+len): returns 0 and the length *pnum of the leading run with
 * the same status (at least 1 byte unless len is 0). */
#define BLOCK_STATUS_DATA       1u  /* reads come from a data area (a file, or a cluster) */
#define BLOCK_STATUS_ZERO       2u  /* reads as zeros */
#define BLOCK_STATUS_ALLOCATED  4u  /* this layer decides the contents (not the backing file) */
#define BLOCK_STATUS_OFFSET     8u  /* *host_off is valid: data lives there in this file */
#define BLOCK_STATUS_COMPRESSED 16u
struct block_status {
    unsigned flags;
    uint64_t host_off;
    int depth;                  /* chain layer that decided (0 = this image) */
    const char *file;           /* file that holds the data (for map) */
};
/* This layer only (no descent into the backing chain). */
int block_status_layer(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       struct block_status *st);
/* Whole chain, like qemu-img map: descends into backing files for unallocated ranges. */
int block_status_chain(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                       struct block_status *st);

/* What `info` shows. */
struct block_info {
    const char *format;         /* "raw" / "qcow2" */
    const char *filename;
    uint64_t virtual_size;
    uint64_t actual_size;       /* bytes allocated on the host */
    uint32_t cluster_size;      /* 0 for raw */
    bool encrypted;
    bool dirty;
    const char *backing_file;   /* as stored, or NULL */
    const char *backing_full;   /* resolved against the image's directory */
    const char *backing_format; /* from the header extension, or NULL */
    /* qcow2 only */
    int version;
    bool lazy_refcounts, corrupt, extended_l2, zstd;
    int refcount_bits;
    int nb_snapshots;
};
int block_get_info(struct block *bs, struct block_info *info);
struct block *block_backing(struct block *bs);
const char *block_filename(struct block *bs);
const char *block_format_name(struct block *bs);
bool block_read_only(struct block *bs);

/* The image format whose header starts buf (the first len bytes of a file; 512 covers every
 * probe), as QEMU's probes would name it ("qcow2", "luks", "vmdk", ...), or NULL when it looks
 * like raw data. A probed raw image must never be given such a first sector. */
const char *block_probe_header(const void *buf, size_t len);
/* Parses "raw"/"qcow2" (NULL or "" = auto). */
int block_parse_format(const char *s, enum block_format *out);
/* Parses QEMU's cache= names: writeback, writethrough, none, directsync, unsafe. */
int block_parse_cache(const char *s, enum block_cache *out);

/* New images. qcow2 takes every field; raw only size and prealloc. */
struct block_create_opts {
    uint64_t size;
    unsigned cluster_size;        /* 0: 64k */
    int version;                  /* 2 or 3 (0: 3) */
    bool lazy_refcounts;
    int prealloc;                 /* 0 off, 1 metadata, 2 falloc, 3 full */
    const char *backing_file;
    const char *backing_fmt;
    int compression_type;         /* 0 zlib, 1 zstd */
    bool extended_l2;
    int refcount_bits;            /* 0: 16 */
    bool encrypt;                 /* LUKS */
    const char *secret;
    size_t secret_len;
    const char *cipher_alg;       /* "aes-256" */
    const char *cipher_mode;      /* "xts" */
    const char *ivgen_alg;        /* "plain64" */
    const char *hash_alg;         /* "sha256" */
    uint64_t iter_time_ms;        /* 0: 2000 */
};
/* Creates path as an image of format fmt ("raw", "qcow2"); -EINVAL for another name. */
int block_create(const char *fmt, const char *path, const struct block_create_opts *o,
                 char *err);

/* Consistency check of the image's metadata (qemu-img check): -ENOTSUP for formats without
 * metadata. fix: BLOCK_FIX_LEAKS and/or BLOCK_FIX_ERRORS (the image open read-write); a fixed
 * image that then checks clean loses its dirty and corrupt marks. log (may be NULL) receives
 * one line per problem, as qemu-img prints them. */
struct block_check_result {
    uint64_t corruptions, leaks, check_errors;
    uint64_t corruptions_fixed, leaks_fixed;
    uint64_t allocated_clusters, total_clusters, fragmented_clusters, compressed_clusters;
    uint64_t image_end_offset;
};
#define BLOCK_FIX_LEAKS  1
#define BLOCK_FIX_ERRORS 2
int block_check(struct block *bs, int fix, struct block_check_result *res, FILE *log);
/* Makes every cluster of this layer unallocated, so reads fall through to the backing file
 * (what commit leaves behind). -ENOTSUP for formats without allocation. */
int block_make_empty(struct block *bs);
/* Rewrites the backing file name stored in the image (name "" removes it; fmt may be NULL).
 * The data is not touched: rebase copies what must be kept before calling this. */
int block_set_backing(struct block *bs, const char *name, const char *fmt);
/* qemu-img amend: version 2 or 3 (0 unchanged), lazy 0/1 (-1 unchanged). */
int block_amend(struct block *bs, int version, int lazy, char *err);
/* The LUKS header of an encrypted image (luks.h); -ENOTSUP when it has none. */
struct luks_info;
int block_get_luks_info(struct block *bs, struct luks_info *li);

#endif
