/* Inside the block layer: the file under an image, and the table of operations a format
 * implements. Not for users of the block layer (they see block.h). */
#ifndef QKVM_BLOCK_DRIVER_H
#define QKVM_BLOCK_DRIVER_H
#include <pthread.h>
#include <stdio.h>

#include "block/block.h"
#include "block/snapshot.h"

/* A host file with QEMU's cache semantics. Reads past the end give zeros (as file-posix does),
 * which compressed clusters ending in a partial last sector rely on. */
struct bfile {
    int fd;
    bool direct;     /* O_DIRECT: bounce unaligned requests through an aligned buffer */
    bool read_only;
    bool no_flush;   /* cache=unsafe */
    bool sync_each;  /* cache=writethrough/directsync */
    /* a write since the last sync began (atomic): a flush with none skips the fdatasync, so
     * ordering flushes cost nothing where nothing was written (a loadvm's, a drained disk's) */
    int unsynced;
    unsigned align;
    struct lockfile *lock;   /* lock.c: QEMU's lock bytes held for this open */
    unsigned lock_perm, lock_unshared;
};

/* no_lock: take no image lock (block_open_opts.no_lock). */
int bfile_open(struct bfile *f, const char *path, bool read_only, enum block_cache cache,
               bool force_share, bool no_lock, char *err);
/* Creates path, or empties it, for a new image: opened without O_TRUNC, locked as a writer
 * (-EBUSY, file untouched, when another process uses it), then truncated to 0. */
int bfile_create(struct bfile *f, const char *path, char *err);
/* Takes QEMU's lock bytes for a reader or a writer (lock.c); -EBUSY with a one-line reason
 * when another process (qkvm or QEMU) holds a conflicting one. */
int bfile_lock(struct bfile *f, const char *path, bool write, bool force_share, char *err);
void bfile_unlock(struct bfile *f);
void bfile_close(struct bfile *f);
int bfile_pread(struct bfile *f, uint64_t off, void *buf, size_t len);
int bfile_pwrite(struct bfile *f, uint64_t off, const void *buf, size_t len);
/* The same for a scatter list, in as few syscalls as the kernel allows. */
int bfile_preadv(struct bfile *f, uint64_t off, const struct iovec *iov, int iovcnt);
int bfile_pwritev(struct bfile *f, uint64_t off, const struct iovec *iov, int iovcnt);
int bfile_flush(struct bfile *f);
int64_t bfile_size(struct bfile *f);
int64_t bfile_allocated(struct bfile *f);
int bfile_truncate(struct bfile *f, uint64_t size);
/* Zeroes a range: punches a hole when punch, else writes zeros (ZERO_RANGE when it can). */
int bfile_zero(struct bfile *f, uint64_t off, uint64_t len, bool punch);
/* SEEK_DATA/SEEK_HOLE: is off in data, and how far the run goes (capped at len). */
int bfile_status(struct bfile *f, uint64_t off, uint64_t len, bool *data, uint64_t *pnum);

struct block_driver {
    const char *name;
    /* protocols only: true for the names this driver opens itself (no host file) */
    bool (*probe_name)(const char *path);
    int (*open)(struct block *bs, const struct block_open_opts *o, char *err);
    void (*close)(struct block *bs);
    int (*pread)(struct block *bs, uint64_t off, void *buf, size_t len);
    int (*pwrite)(struct block *bs, uint64_t off, const void *buf, size_t len);
    /* optional: without them a scatter list goes one pread/pwrite per element */
    int (*preadv)(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt);
    int (*pwritev)(struct block *bs, uint64_t off, const struct iovec *iov, int iovcnt);
    int (*pwrite_compressed)(struct block *bs, uint64_t off, const void *buf, size_t len);
    /* optional, block.h's block_compress (no lock taken) and block_pwrite_precompressed */
    long (*compress)(struct block *bs, const void *buf, size_t len, void *out);
    int (*pwrite_precompressed)(struct block *bs, uint64_t off, const void *buf, size_t len,
                                const void *cdata, long clen);
    int (*pwrite_zeroes)(struct block *bs, uint64_t off, uint64_t len, unsigned flags);
    int (*discard)(struct block *bs, uint64_t off, uint64_t len);
    int (*flush)(struct block *bs);
    int (*truncate)(struct block *bs, uint64_t size, bool shrink);
    int (*status)(struct block *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                  struct block_status *st);
    int (*info)(struct block *bs, struct block_info *info);
    /* Where [off, off+len) lies verbatim in one piece of a host file: *f, *host; -ENOTSUP
     * when it does not (optional). With write, also only where a write there in place is the
     * whole of a write (no allocation, copy-on-write or metadata update). */
    int (*locate)(struct block *bs, uint64_t off, uint64_t len, bool write, struct bfile **f,
                  uint64_t *host);

    /* Whole-image operations (optional; block.h and snapshot.h say what they do and give
     * -ENOTSUP without them). Called with the image's lock held, drained. */
    int (*create)(const char *path, const struct block_create_opts *o, char *err);
    int (*check)(struct block *bs, int fix, struct block_check_result *res, FILE *log);
    int (*make_empty)(struct block *bs);
    int (*set_backing)(struct block *bs, const char *name, const char *fmt);
    int (*amend)(struct block *bs, int version, int lazy, char *err);
    int (*luks_info)(struct block *bs, struct luks_info *li);
    int (*snapshot_list)(struct block *bs, struct block_snapshot **out, int *n);
    int (*snapshot_create)(struct block *bs, const struct block_snapshot *sn);
    int (*snapshot_goto)(struct block *bs, const char *id_or_name);
    int (*snapshot_delete)(struct block *bs, const char *id, const char *name);
    int (*snapshot_load_tmp)(struct block *bs, const char *id, const char *name);
    int (*vmstate_rw)(struct block *bs, uint64_t pos, void *buf, size_t len, bool write);
    int (*snapshot_vmstate_read)(struct block *bs, const char *id_or_name, uint64_t pos, void *buf,
                                 size_t len);
};

struct block {
    const struct block_driver *drv;
    void *opaque;
    char *filename;
    struct bfile file;
    bool read_only;
    enum block_cache cache;
    uint64_t size;              /* virtual size */
    struct block *backing;
    char *backing_name;         /* as stored in the image */
    char *backing_full;         /* resolved path */
    char *backing_fmt;
    pthread_mutex_t lock;
    /* Reads and in-place writes of plain data run outside the lock (block.c, "in flight");
     * everything else under the lock waits until none is (drained, idle signalled). */
    pthread_cond_t idle;
    unsigned inflight, draining;
    int chain_depth;            /* 0 for the top image */
};

extern const struct block_driver block_driver_raw;
extern const struct block_driver block_driver_qcow2;
/* Protocols (drivers that open a name, not a file), tried in order by block_open. */
extern const struct block_driver block_driver_nbd;
extern const struct block_driver *const block_protocols[];

/* The image's lock, drained of in-flight I/O (for whole-image operations and white-box tests). */
void block_lock(struct block *bs);
void block_unlock(struct block *bs);

/* Opens a backing file for an image at chain depth depth+1 (loops and absurd depths refused). */
int block_open_backing(struct block *bs, const char *name, const char *fmt,
                       const struct block_open_opts *o, char *err);
/* Reads [off, off+len) from bs's backing chain, zeros past its end or with no backing file. */
int block_read_backing(struct block *bs, uint64_t off, void *buf, size_t len);
/* A path relative to the directory of base (absolute names are returned unchanged). */
char *block_path_relative_to(const char *base, const char *name);


#define BLOCK_MAX_CHAIN 64

#endif
