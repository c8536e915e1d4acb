/* The machine's disks as the monitor sees them (query-blockstats, block_resize): the
 * virtio-blk devices, numbered in -device order (the order of query-block). */
#ifndef QKVM_HW_DISK_H
#define QKVM_HW_DISK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

/* QEMU's BlockDeviceStats counters, kept by the device as requests complete. */
struct disk_stats {
    uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops, flush_ops;
    uint64_t rd_ns, wr_ns, flush_ns;          /* time spent in the block layer */
    uint64_t failed_rd, failed_wr, invalid_rd, invalid_wr;
};

/* savevm's disks: the virtio-blk ones (0..m->ndisks-1), then the PC machine's IDE disks
 * (hw/ide.h). The functions below that take an idx take these numbers. */
int disk_count(struct machine *m);

/* The hand-over of the images between the two ends of a migration (QEMU's inactivate and
 * activate): the source, once the destination has everything, flushes and lets go of each
 * disk's image lock (and opens its disks again, locked, if it is to run on: `cont` after
 * postmigrate); the destination, which opened its disks without locks, opens them again with
 * their locks and their metadata read afresh before its guest runs. So a qcow2 disk on one
 * path serves both ends of a local migration with locking on. 0 or -errno (why: the image's
 * error, "Failed to get "write" lock" when the other end still holds it). */
int disk_inactivate_all(struct machine *m);
int disk_activate_all(struct machine *m, char *why, size_t n);

/* Disk idx's counters. 0, or -ENOENT when there is no such disk. */
int disk_get_stats(struct machine *m, int idx, struct disk_stats *st);
/* Gives disk idx the new virtual size (bytes, a multiple of 512; smaller shrinks it, as QEMU's
 * block_resize does) through the block layer, then tells the guest (virtio config change).
 * 0 or -errno with why filled: -ENOENT, -EINVAL, -EROFS, -ENOTSUP (the format cannot). */
/* Flushes every writable disk down to its file (qcow2's caches written back): what a
 * migration's destination will open must be whole. 0 or the first -errno. */
int disk_flush_all(struct machine *m);
int disk_resize(struct machine *m, int idx, uint64_t size, char *why, size_t n);

/* savevm/loadvm (vm/savevm.h): disk idx's image, its file name and whether the guest may write
 * it; NULL when there is no such disk. */
struct block *disk_get_block(struct machine *m, int idx, const char **file, bool *read_only);
/* Completes every request taken from disk idx's ring (the guest paused): nothing is in flight
 * when its image goes to a snapshot. */
void disk_drain(struct machine *m, int idx);
/* After the image went to a snapshot: the disk's size is the image's again, the guest told. */
void disk_refresh_size(struct machine *m, int idx);

#endif
