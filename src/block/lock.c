/* Image locking with QEMU's byte-range scheme, so qkvm and QEMU exclude each other.
 *
 * QEMU (block/file-posix.c) takes shared OFD locks on single bytes of the image file: byte
 * 100+i while it holds permission i, byte 200+i while it refuses to share permission i
 * (i: 0 consistent read, 1 write, 2 write unchanged, 3 resize). Opening checks the opposite
 * bytes with an exclusive test lock: a permission wanted is refused when some other open file
 * holds 200+i, and a permission not shared when some other open file holds 100+i. The locks
 * are advisory and vanish with the last descriptor, so a killed process leaves none behind.
 *
 * OFD locks of two descriptions conflict even inside one process, and qkvm-img sometimes
 * opens a file twice (commit reopens the backing file for writing). So all opens of one file
 * in this process share one description for their locks, and the bytes are reference counted;
 * conflicts are tested against other processes only. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/driver.h"

#define PERM_BASE 100
#define SHARED_BASE 200
#define NPERM 4

enum { PERM_READ = 1, PERM_WRITE = 2, PERM_WRITE_UNCHANGED = 4, PERM_RESIZE = 8 };

struct lockfile {
    struct lockfile *next;
    dev_t dev;
    ino_t ino;
    int fd;                       /* a dup: its description carries this process's locks */
    int users;
    int count[2][NPERM];          /* [0]: bytes 100+i, [1]: bytes 200+i */
};

static pthread_mutex_t lock_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct lockfile *lock_files;

static const char *perm_name(int i)
{
    static const char *n[NPERM] = { "consistent read", "write", "write unchanged", "resize" };
    return n[i];
}

/* 0, or -EAGAIN when another description holds a lock on byte off, or another -errno. */
static int test_byte(int fd, off_t off)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &fl))
        return -errno;
    return fl.l_type == F_UNLCK ? 0 : -EAGAIN;
}

static int set_byte(int fd, off_t off, bool lock)
{
    struct flock fl = { .l_type = lock ? F_RDLCK : F_UNLCK, .l_whence = SEEK_SET,
                        .l_start = off, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

/* File systems without OFD locks (some network ones) are used unlocked, as QEMU's
 * locking=auto does. */
static bool unsupported(int r)
{
    return r == -EINVAL || r == -ENOLCK || r == -EOPNOTSUPP || r == -ENOSYS;
}

static void put_bytes(struct lockfile *lf, unsigned perm, unsigned unshared)
{
    for (int i = 0; i < NPERM; i++) {
        if ((perm & (1u << i)) && --lf->count[0][i] == 0)
            set_byte(lf->fd, PERM_BASE + i, false);
        if ((unshared & (1u << i)) && --lf->count[1][i] == 0)
            set_byte(lf->fd, SHARED_BASE + i, false);
    }
}

static void put_file(struct lockfile *lf)
{
    if (--lf->users)
        return;
    for (struct lockfile **p = &lock_files; *p; p = &(*p)->next)
        if (*p == lf) {
            *p = lf->next;
            break;
        }
    close(lf->fd);
    free(lf);
}

int bfile_lock(struct bfile *f, const char *path, bool write, bool force_share, char *err)
{
    unsigned perm = PERM_READ, unshared = PERM_WRITE | PERM_RESIZE;
    if (write)
        perm |= PERM_WRITE | PERM_RESIZE;
    else if (force_share)
        unshared = 0;
    struct stat st;
    if (fstat(f->fd, &st))
        return block_seterr(err, -errno, "Could not stat '%s': %s", path, strerror(errno));
    pthread_mutex_lock(&lock_mutex);
    struct lockfile *lf = lock_files;
    while (lf && (lf->dev != st.st_dev || lf->ino != st.st_ino))
        lf = lf->next;
    int r = 0;
    if (!lf) {
        lf = calloc(1, sizeof(*lf));
        if (!lf) {
            pthread_mutex_unlock(&lock_mutex);
            return block_seterr(err, -ENOMEM, "Out of memory");
        }
        lf->dev = st.st_dev;
        lf->ino = st.st_ino;
        lf->fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
        if (lf->fd < 0) {
            r = -errno;
            free(lf);
            pthread_mutex_unlock(&lock_mutex);
            return block_seterr(err, r, "Could not lock '%s': %s", path, strerror(-r));
        }
        lf->next = lock_files;
        lock_files = lf;
    }
    lf->users++;
    /* take ours first, then test: of two racing openers at least one sees the other */
    for (int i = 0; i < NPERM; i++) {
        int r1 = 0;
        if ((perm & (1u << i)) && lf->count[0][i]++ == 0)
            r1 = set_byte(lf->fd, PERM_BASE + i, true);
        if ((unshared & (1u << i)) && lf->count[1][i]++ == 0 && !r1)
            r1 = set_byte(lf->fd, SHARED_BASE + i, true);
        if (!r)
            r = r1;
    }
    const char *what = NULL;
    bool shared_msg = false;
    for (int i = 0; i < NPERM && !r; i++) {
        if ((perm & (1u << i)) && (r = test_byte(lf->fd, SHARED_BASE + i)))
            what = perm_name(i);
        else if ((unshared & (1u << i)) && (r = test_byte(lf->fd, PERM_BASE + i))) {
            what = perm_name(i);
            shared_msg = true;
        }
    }
    if (r && unsupported(r)) {
        r = 0;   /* counts stay: release undoes them the same way */
    } else if (r) {
        put_bytes(lf, perm, unshared);
        put_file(lf);
        pthread_mutex_unlock(&lock_mutex);
        if (r == -EAGAIN)
            return block_seterr(err, -EBUSY, "Failed to get %s\"%s\" lock: is another "
                                "process using the image [%s]?", shared_msg ? "shared " : "",
                                what, path);
        return block_seterr(err, r, "Could not lock '%s': %s", path, strerror(-r));
    }
    f->lock = lf;
    f->lock_perm = perm;
    f->lock_unshared = unshared;
    pthread_mutex_unlock(&lock_mutex);
    return 0;
}

void bfile_unlock(struct bfile *f)
{
    if (!f->lock)
        return;
    pthread_mutex_lock(&lock_mutex);
    put_bytes(f->lock, f->lock_perm, f->lock_unshared);
    put_file(f->lock);
    f->lock = NULL;
    pthread_mutex_unlock(&lock_mutex);
}
