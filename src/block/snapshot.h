/* Internal snapshots and the VM state area, for any format that has them (qcow2 today).
 *
 * What qemu-img snapshot, qemu-nbd -l and savevm/loadvm need, without the caller knowing the
 * format: list, create, go to, delete, open one read-only in place of the active image, and
 * the VM state area, QEMU's layout (a qcow2 image keeps it past the guest-visible end, at the
 * first L1 entry boundary after the virtual size; a snapshot made with vm_state_size > 0 owns
 * the clusters written there before it was taken, and going to that snapshot brings them back
 * for reading).
 *
 * Every function takes the image's lock and returns 0 or a negative errno: -ENOTSUP when the
 * format has no snapshots, -ENOENT for no such snapshot, -EROFS for a change on a read-only
 * image.
 */
#ifndef QKVM_BLOCK_SNAPSHOT_H
#define QKVM_BLOCK_SNAPSHOT_H
#include <stddef.h>
#include <stdint.h>

struct block;

/* One snapshot, as QEMU's QEMUSnapshotInfo (and qemu-img info's json). */
struct block_snapshot {
    char *id;                   /* "1", "2", ... (given by the image) */
    char *name;
    uint64_t vm_state_size;     /* bytes of VM state saved with it (0: a disk-only snapshot) */
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t disk_size;         /* the virtual size when it was taken */
    uint64_t icount;            /* ~0: not recorded */
};
#define BLOCK_SNAPSHOT_NO_ICOUNT (~0ull)

/* The snapshots in table order: *out (malloc'd, free with block_snapshot_list_free) and *n;
 * an image without snapshots gives *n = 0 and *out = NULL. */
int block_snapshot_list(struct block *bs, struct block_snapshot **out, int *n);
void block_snapshot_list_free(struct block_snapshot *list, int n);
/* Finds a snapshot by id, else by name (QEMU's order for a bare "-l NAME" or "loadvm NAME"):
 * its index in the list, or -ENOENT. */
int block_snapshot_find(const struct block_snapshot *list, int n, const char *id_or_name);

/* Takes a snapshot of the active image. From sn only name (required; names may repeat, as in
 * QEMU, whose savevm deletes the old one first), vm_state_size, vm_clock_nsec and icount are
 * used (date: now; id: the next free number). With
 * vm_state_size, the first vm_state_size bytes of the VM state area go with the snapshot
 * and the active image's area is emptied (as QEMU does, so the clusters belong to the
 * snapshot alone). */
int block_snapshot_create(struct block *bs, const struct block_snapshot *sn);
/* Makes the snapshot (id, else name) the active image: its data, its size, its VM state. */
int block_snapshot_goto(struct block *bs, const char *id_or_name);
/* Deletes the snapshot whose id is id and whose name is name (either may be NULL, not both);
 * a bare id_or_name as id, else name: pass it as both with id_or_name set. */
int block_snapshot_delete(struct block *bs, const char *id, const char *name);
int block_snapshot_delete_by(struct block *bs, const char *id_or_name);
/* A read-only image shows the snapshot (matching id and name, either may be NULL) instead of
 * the active data, until closed; nothing is written (qemu-nbd -l). -EROFS when bs is
 * writable. The virtual size stays the image's (as QEMU's): past the snapshot's own size
 * (an image grown since) it reads zeros. */
int block_snapshot_load_tmp(struct block *bs, const char *id, const char *name);

/* The VM state area of the active image, pos bytes from its start (no upper bound but the
 * format's L1 limit; a read of what was never written gives zeros). */
int block_vmstate_write(struct block *bs, uint64_t pos, const void *buf, size_t len);
int block_vmstate_read(struct block *bs, uint64_t pos, void *buf, size_t len);
/* The VM state area of the snapshot id_or_name (by id, else name), read without going to it:
 * nothing is written, so a caller can check a state whole before changing the image (loadvm).
 * Reads what block_vmstate_read would give after block_snapshot_goto. */
int block_snapshot_vmstate_read(struct block *bs, const char *id_or_name, uint64_t pos, void *buf,
                                size_t len);

#endif
