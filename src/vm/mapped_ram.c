/* mapped-ram files (vm/mapped_ram.h): the writer, the parser of the head, and the restore that
 * maps RAM from the file.
 *
 * The head is the migration stream's header, then a record saying where the pages are and which
 * ones have data, then the devices' record and the checksum, as in a plain stream:
 *   0   "QKVMMIG\0" u32 version, u64 RAM bytes, u32 vCPUs, u32 machine type, u32 page size
 *   32  u8 0x04, u64 pages offset, u64 bitmap bytes, u64 pages with data, the bitmap
 *       u8 0x03, u32 length, the device state
 *       u8 0xff, u32 CRC-32 of every byte before it
 *   zeros up to the pages offset (1 MiB aligned), then page i at pages offset + i * 4096; pages
 *   without data are holes, and the file ends at pages offset + RAM bytes.
 * A destination without the capability stops at the 0x04 record with a message saying so. */
#include "vm/mapped_ram.h"

#include "vm/machine.h"
#include "vm/memory.h"
#include "vm/migration.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MR_MAGIC       "QKVMMIG"   /* with its NUL: the stream's (vm/migration.c) */
#define MR_VERSION     1
#define MR_PAGE        4096ull
#define MR_HDR         32          /* the stream header */
#define MR_REC         25          /* tag, pages offset, bitmap bytes, pages with data */
#define MR_TAG_DEV     0x03
#define MR_TAG_END     0xff
#define MR_MAX_RAM     (1ull << 40)   /* 1 TiB: a bitmap of 32 MiB at most */
#define MR_MAX_DEV     (64u << 20)    /* as a plain stream's device record */
#define MR_RUN         256            /* pages per write at most */

static int mr_fail(char *why, size_t n, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int mr_fail(char *why, size_t n, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return err;
}

static uint64_t mr_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void mr_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* 0 when the first k bytes are in buf; -EAGAIN (read k) when the file has them; -EINVAL when
 * the file ends before */
static int mr_want(size_t len, uint64_t file_size, uint64_t k, size_t *need, char *why, size_t n)
{
    if (k <= len)
        return 0;
    if (file_size < k)
        return mr_fail(why, n, -EINVAL, "the file ends early (%llu bytes, its head needs %llu): truncated",
                       (unsigned long long)file_size, (unsigned long long)k);
    *need = (size_t)k;
    return -EAGAIN;
}

int mapped_ram_parse(const uint8_t *buf, size_t len, uint64_t file_size, struct mapped_ram_header *h,
                     size_t *need, char *why, size_t n)
{
    int ret;
    memset(h, 0, sizeof(*h));
    if ((ret = mr_want(len, file_size, MR_HDR + MR_REC, need, why, n)))
        return ret;
    if (memcmp(buf, MR_MAGIC, 8))
        return mr_fail(why, n, -EINVAL, "not a qkvm migration stream");
    uint32_t ver = (uint32_t)mr_get(buf + 8, 4);
    if (ver != MR_VERSION)
        return mr_fail(why, n, -EPROTONOSUPPORT, "stream version %u, this qkvm reads version %u", ver, MR_VERSION);
    if (mr_get(buf + 28, 4) != MR_PAGE)
        return mr_fail(why, n, -EINVAL, "the stream is of another machine type");
    if (buf[MR_HDR] != MAPPED_RAM_TAG)
        return mr_fail(why, n, -EINVAL, "not a mapped-ram file: it was saved without the mapped-ram capability"
                       " (set it on both sides or on neither)");
    h->ram_size = mr_get(buf + 12, 8);
    h->ncpus = (uint32_t)mr_get(buf + 20, 4);
    h->machine_type = (uint32_t)mr_get(buf + 24, 4);
    h->pages_offset = mr_get(buf + MR_HDR + 1, 8);
    h->bitmap_len = mr_get(buf + MR_HDR + 9, 8);
    h->present = mr_get(buf + MR_HDR + 17, 8);
    if (!h->ram_size || h->ram_size % MR_PAGE || h->ram_size > MR_MAX_RAM)
        return mr_fail(why, n, -EINVAL, "mapped-ram: a RAM size of %llu bytes", (unsigned long long)h->ram_size);
    uint64_t pages = h->ram_size / MR_PAGE;
    if (h->bitmap_len != (pages + 63) / 64 * 8)
        return mr_fail(why, n, -EINVAL, "mapped-ram: a bitmap of %llu bytes for %llu pages",
                       (unsigned long long)h->bitmap_len, (unsigned long long)pages);
    uint64_t at = MR_HDR + MR_REC + h->bitmap_len;   /* the device record */
    if ((ret = mr_want(len, file_size, at + 5, need, why, n)))
        return ret;
    if (buf[at] != MR_TAG_DEV)
        return mr_fail(why, n, -EINVAL, "mapped-ram: record 0x%02x where the device state belongs", buf[at]);
    h->dev_len = (uint32_t)mr_get(buf + at + 1, 4);
    if (h->dev_len > MR_MAX_DEV)
        return mr_fail(why, n, -EINVAL, "bad device state record (%u bytes)", h->dev_len);
    uint64_t end = at + 5 + h->dev_len;   /* the end record */
    if ((ret = mr_want(len, file_size, end + 5, need, why, n)))
        return ret;
    if (buf[end] != MR_TAG_END)
        return mr_fail(why, n, -EINVAL, "mapped-ram: record 0x%02x where the checksum belongs", buf[end]);
    if (mr_get(buf + end + 1, 4) != migration_crc32(0, buf, end + 1))
        return mr_fail(why, n, -EINVAL, "stream checksum mismatch: corrupt");
    h->bitmap = buf + MR_HDR + MR_REC;
    h->dev = buf + at + 5;
    if (h->pages_offset % MAPPED_RAM_ALIGN || h->pages_offset < end + 5)
        return mr_fail(why, n, -EINVAL, "mapped-ram: pages at offset %llu (a multiple of 1 MiB past the head)",
                       (unsigned long long)h->pages_offset);
    uint64_t count = 0;
    for (uint64_t w = 0; w < h->bitmap_len / 8; w++) {
        uint64_t bits = mr_get(h->bitmap + w * 8, 8);
        if (w == h->bitmap_len / 8 - 1 && pages % 64 && (bits >> (pages % 64)))
            return mr_fail(why, n, -EINVAL, "mapped-ram: the bitmap has pages past the end of RAM");
        count += (uint64_t)__builtin_popcountll(bits);
    }
    if (count != h->present)
        return mr_fail(why, n, -EINVAL, "mapped-ram: the bitmap has %llu pages, the header says %llu",
                       (unsigned long long)count, (unsigned long long)h->present);
    if (h->pages_offset > UINT64_MAX - h->ram_size || file_size < h->pages_offset + h->ram_size)
        return mr_fail(why, n, -EINVAL, "the file ends early (%llu bytes, its pages reach %llu): truncated",
                       (unsigned long long)file_size, (unsigned long long)(h->pages_offset + h->ram_size));
    return 0;
}

static int mr_pread(int fd, uint8_t *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EPIPE;
        p += r, len -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

static int mr_pwrite(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t r = pwrite(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        p += r, len -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

int mapped_ram_read_head(int fd, uint8_t **out, struct mapped_ram_header *h, char *why, size_t n)
{
    struct stat st;
    *out = NULL;
    if (fstat(fd, &st))
        return mr_fail(why, n, -errno, "%s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mr_fail(why, n, -EINVAL, "mapped-ram needs a regular file");
    uint64_t size = (uint64_t)st.st_size;
    size_t len = size < 65536 ? (size_t)size : 65536, need = 0;
    uint8_t *buf = NULL;
    for (;;) {
        uint8_t *nb = realloc(buf, len ? len : 1);
        if (!nb) {
            free(buf);
            return mr_fail(why, n, -ENOMEM, "out of memory");
        }
        buf = nb;
        int ret = mr_pread(fd, buf, len, 0);
        if (ret) {
            free(buf);
            return mr_fail(why, n, ret, "reading the file: %s", ret == -EPIPE ? "it ends early" : strerror(-ret));
        }
        ret = mapped_ram_parse(buf, len, size, h, &need, why, n);
        if (ret == -EAGAIN && need > len) {
            len = need;
            continue;
        }
        if (ret) {
            free(buf);
            return ret == -EAGAIN ? mr_fail(why, n, -EINVAL, "mapped-ram: a bad head") : ret;
        }
        *out = buf;
        return 0;
    }
}

static bool mr_zero(const uint8_t *p)
{
    const uint64_t *q = (const uint64_t *)p;
    for (unsigned i = 0; i < MR_PAGE / 8; i++)
        if (q[i])
            return false;
    return true;
}

int mapped_ram_save(struct machine *m, int fd, const uint8_t *dev, size_t dlen, const uint64_t *file_bits,
                    struct mapped_ram_stats *st, char *why, size_t n)
{
    uint64_t pages = m->ram_size / MR_PAGE, words = (pages + 63) / 64;
    uint64_t bl = words * 8, head = MR_HDR + MR_REC + bl + 5 + dlen + 5;
    uint64_t off = (head + MAPPED_RAM_ALIGN - 1) / MAPPED_RAM_ALIGN * MAPPED_RAM_ALIGN;
    memset(st, 0, sizeof(*st));
    if (m->ram_size % MR_PAGE || dlen > MR_MAX_DEV)
        return mr_fail(why, n, -EINVAL, "mapped-ram: cannot lay out this machine's RAM");
    uint8_t *h = calloc(1, head);
    if (!h)
        return mr_fail(why, n, -ENOMEM, "out of memory");
    /* the file ends where the last page does, holes and all; the head comes last */
    int ret = ftruncate(fd, (off_t)(off + m->ram_size)) ? -errno : 0;
    if (ret) {
        free(h);
        return mr_fail(why, n, ret, "mapped-ram: sizing the file: %s", strerror(-ret));
    }
    /* Pages the guest never touched are neither present nor swapped out (the page map says so,
     * 64 at a time): zeros, not worth a fault each. Pages mapped from an earlier file are not
     * present either until touched, yet hold data. */
    int pm_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    uint64_t pm[64], present = 0, run_first = 0, run = 0;
    uint8_t *bitmap = h + MR_HDR + MR_REC;
    for (uint64_t w = 0; w < words && !ret; w++) {
        uint64_t vpage = (uint64_t)(uintptr_t)(m->ram + (w * 64 * MR_PAGE)) / MR_PAGE;
        bool have_pm = pm_fd >= 0 && pread(pm_fd, pm, sizeof(pm), (off_t)(vpage * 8)) == (ssize_t)sizeof(pm);
        uint64_t bits = 0;
        for (uint64_t b = 0; b < 64 && w * 64 + b < pages && !ret; b++) {
            uint64_t pg = w * 64 + b;
            const uint8_t *p = m->ram + pg * MR_PAGE;
            bool untouched = have_pm && !(pm[b] & (3ull << 62)) && !(file_bits && (file_bits[w] >> b & 1));
            bool zero = untouched || mr_zero(p);
            if (!zero) {
                bits |= 1ull << b;
                present++;
            }
            if (run && (zero || pg != run_first + run || run == MR_RUN)) {
                ret = mr_pwrite(fd, m->ram + run_first * MR_PAGE, run * MR_PAGE, off + run_first * MR_PAGE);
                run = 0;
            }
            if (!zero && !run++)
                run_first = pg;
        }
        mr_put(bitmap + w * 8, bits, 8);
    }
    if (!ret && run)
        ret = mr_pwrite(fd, m->ram + run_first * MR_PAGE, run * MR_PAGE, off + run_first * MR_PAGE);
    if (pm_fd >= 0)
        close(pm_fd);
    if (!ret) {
        memcpy(h, MR_MAGIC, 8);
        mr_put(h + 8, MR_VERSION, 4);
        mr_put(h + 12, m->ram_size, 8);
        mr_put(h + 20, (uint32_t)m->ncpus, 4);
        mr_put(h + 24, (uint32_t)m->cfg->type, 4);
        mr_put(h + 28, MR_PAGE, 4);
        h[MR_HDR] = MAPPED_RAM_TAG;
        mr_put(h + MR_HDR + 1, off, 8);
        mr_put(h + MR_HDR + 9, bl, 8);
        mr_put(h + MR_HDR + 17, present, 8);
        uint8_t *d = bitmap + bl;
        d[0] = MR_TAG_DEV;
        mr_put(d + 1, dlen, 4);
        if (dlen)
            memcpy(d + 5, dev, dlen);
        d[5 + dlen] = MR_TAG_END;
        mr_put(d + 6 + dlen, migration_crc32(0, h, head - 4), 4);
        ret = mr_pwrite(fd, h, head, 0);
    }
    free(h);
    if (ret)
        return mr_fail(why, n, ret, "writing the file: %s", strerror(-ret));
    st->pages = present;
    st->zero_pages = pages - present;
    st->bytes = head + present * MR_PAGE;
    return 0;
}

/* RAM's advice from vm/memory.c, which a new mapping loses */
static void mr_advise(struct machine *m)
{
    madvise(m->ram, m->ram_size, MADV_DONTDUMP);
    madvise(m->ram, m->ram_size, MADV_DONTFORK);
}

int mapped_ram_map(struct machine *m, int fd, const struct mapped_ram_header *h)
{
    if (h->ram_size != m->ram_size)
        return -EINVAL;
    void *p = mmap(m->ram, m->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
                   (off_t)h->pages_offset);
    if (p != MAP_FAILED) {
        mr_advise(m);
        return 0;
    }
    /* not mappable (a file system without mmap): read what has data, the rest stays zero */
    uint64_t pages = m->ram_size / MR_PAGE;
    madvise(m->ram, m->ram_size, MADV_DONTNEED);
    for (uint64_t pg = 0; pg < pages; pg++) {
        if (!(h->bitmap[pg / 8] >> (pg % 8) & 1))
            continue;
        uint64_t run = 1;
        while (pg + run < pages && (h->bitmap[(pg + run) / 8] >> ((pg + run) % 8) & 1))
            run++;
        int ret = mr_pread(fd, m->ram + pg * MR_PAGE, run * MR_PAGE, h->pages_offset + pg * MR_PAGE);
        if (ret)
            return ret;
        pg += run - 1;
    }
    return 0;
}

int mapped_ram_unmap(struct machine *m)
{
    void *p = mmap(m->ram, m->ram_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    mr_advise(m);
    return 0;
}
