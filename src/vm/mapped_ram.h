/* mapped-ram: a migration file with every page of guest RAM at a fixed, page-aligned offset
 * (QEMU 9's capability of that name, docs/devel/migration/mapped-ram.rst), so that a restore maps
 * RAM from the file copy-on-write (MAP_PRIVATE) instead of reading it: the guest runs again in
 * milliseconds, its untouched memory costs nothing, and restores from one file share its pages
 * in the page cache. vm/migration.c uses it for file: URIs with the capability set; the file's
 * layout is in docs/migration.md.
 *
 * The file's head (its header, the bitmap of pages with data, the device state) is checksummed;
 * the pages are not, as reading them to check would undo the lazy restore (QEMU's are not
 * either). */
#ifndef QKVM_VM_MAPPED_RAM_H
#define QKVM_VM_MAPPED_RAM_H
#include <stddef.h>
#include <stdint.h>

struct machine;

#define MAPPED_RAM_TAG    0x04          /* the record after the stream header that says "mapped-ram" */
#define MAPPED_RAM_ALIGN  (1ull << 20)  /* the pages start on a 1 MiB boundary, as QEMU's */

/* What the head of a file says. Pointers go into the buffer that was parsed. */
struct mapped_ram_header {
    uint64_t ram_size;          /* bytes, a whole number of 4 KiB pages */
    uint32_t ncpus, machine_type;
    uint64_t pages_offset;      /* file offset of page 0: page i is at pages_offset + i * 4096 */
    uint64_t present;           /* pages with data (bits set); the others are holes (zeros) */
    const uint8_t *bitmap;      /* a bit per page, 64 to a little-endian word */
    uint64_t bitmap_len;        /* bytes: whole words */
    const uint8_t *dev;         /* the device state stream (vm/vmstate.h) */
    uint32_t dev_len;
};

/* Parses the head of a mapped-ram file from its first len bytes at buf; file_size is the whole
 * file's. 0; -EAGAIN with *need set (more than len) when the head goes on past buf: read that
 * many and call again; otherwise -EINVAL / -EPROTONOSUPPORT with one line in why (not a
 * migration stream, a plain stream, another version, a bad layout, a checksum mismatch, a file
 * shorter than its pages). Nothing outside buf is read. */
int mapped_ram_parse(const uint8_t *buf, size_t len, uint64_t file_size, struct mapped_ram_header *h,
                     size_t *need, char *why, size_t n);

/* Reads the head of the file fd into *buf (malloc'd, the caller frees it) and parses it into h.
 * 0 or -errno with why set. */
int mapped_ram_read_head(int fd, uint8_t **buf, struct mapped_ram_header *h, char *why, size_t n);

/* Counts of what mapped_ram_save wrote. */
struct mapped_ram_stats {
    uint64_t pages, zero_pages, bytes;   /* bytes: the head and the pages, holes not counted */
};

/* Writes m's RAM and the device state (dev, dlen) to fd, an empty regular file: the pages with
 * data at their offsets (runs in one write each), zero pages left as holes, the head last, so a
 * file cut short has no valid head. file_bits: pages of RAM mapped from an earlier file (they
 * are read even when the page map says untouched), or NULL. With the guest paused, on the I/O
 * thread. 0 or -errno with why set. */
int mapped_ram_save(struct machine *m, int fd, const uint8_t *dev, size_t dlen, const uint64_t *file_bits,
                    struct mapped_ram_stats *st, char *why, size_t n);

/* Maps m's RAM from the file fd (MAP_PRIVATE, MAP_FIXED over the same host addresses, so every
 * pointer into RAM stays good): pages come in on first touch, writes go to private copies and
 * never to the file. The file must stay unchanged while the VM lives (a truncated file makes a
 * touch fault). Where the mapping cannot be made, the pages with data are read instead. With
 * the vCPUs stopped. 0 or -errno. */
int mapped_ram_map(struct machine *m, int fd, const struct mapped_ram_header *h);

/* Gives m's RAM back its anonymous memory (zeros) where it was mapped from a file: before a
 * stream overwrites all of it (loadvm), which drops pages with MADV_DONTNEED, and that would
 * bring back the file's. With the vCPUs stopped. 0 or -errno. */
int mapped_ram_unmap(struct machine *m);

#endif
