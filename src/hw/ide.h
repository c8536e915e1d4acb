/* An IDE (parallel ATA) channel at its legacy ports: task file at base (8 ports), device control
 * and alternate status at ctl, one ISA IRQ; up to two devices (master, slave) behind it: ATA
 * disks, each a block-layer image (raw, qcow2), or ATAPI CD-ROM drives (hw/atapi.h for the
 * packet commands; PACKET and IDENTIFY PACKET DEVICE here). IDENTIFY, READ/WRITE SECTORS
 * (LBA28, CHS) and their LBA48 EXT forms by PIO; READ/WRITE DMA (EXT) and PACKET's DMA through a
 * bus master (below); READ VERIFY, SEEK, SET FEATURES, FLUSH CACHE, power commands, INITIALIZE
 * DEVICE PARAMETERS, EXECUTE DEVICE DIAGNOSTIC; anything else, and any address past the disk,
 * ends with ERR and ABRT in the error register as a real disk answers (ATA-7, volume 1). */
#ifndef QKVM_HW_IDE_H
#define QKVM_HW_IDE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block;
struct machine;
struct ide_channel;

#define IDE_SECTOR 512

/* The legacy PC channels: primary 0x1f0/0x3f6 IRQ 14, secondary 0x170/0x376 IRQ 15. */
#define IDE_PRIMARY_BASE   0x1f0
#define IDE_PRIMARY_CTL    0x3f6
#define IDE_PRIMARY_IRQ    14
#define IDE_SECONDARY_BASE 0x170
#define IDE_SECONDARY_CTL  0x376
#define IDE_SECONDARY_IRQ  15

/* status register */
#define IDE_STAT_ERR  0x01
#define IDE_STAT_DRQ  0x08
#define IDE_STAT_DSC  0x10
#define IDE_STAT_DRDY 0x40
#define IDE_STAT_BSY  0x80
/* error register */
#define IDE_ERR_ABRT  0x04
/* device control register */
#define IDE_CTL_NIEN  0x02
#define IDE_CTL_SRST  0x04
#define IDE_CTL_HOB   0x80

/* Creates a channel of m with no drive and claims its ports (base..base+7, ctl). Freed with the
 * machine. 0 or -errno (a taken port is logged). */
int ide_channel_create(struct machine *m, uint16_t base, uint16_t ctl, unsigned irq, struct ide_channel **out);
/* Puts an open image at unit 0 (master) or 1 (slave); the channel owns bs from then on, even on
 * failure. probed_raw: the format was guessed, so sector 0 refuses another format's header (as
 * QEMU and virtio-blk do). serial may be NULL (a serial is made up from the unit). 0, -EBUSY if
 * the unit has a disk, -EINVAL for a bad unit or an image smaller than one sector. */
int ide_channel_attach(struct ide_channel *ch, int unit, struct block *bs, bool read_only, bool probed_raw,
                       const char *serial);

/* The PC machine's channel bus (0 primary, 1 secondary), from its PIIX3 (hw/piix.c). 0,
 * -ENODEV on a machine without IDE or a bus other than 0 and 1. */
int ide_channel_find(struct machine *m, int bus, struct ide_channel **out);
/* QEMU's names for the CD drive at IDE place index (bus * 2 + unit): "ide1-cd0", and its
 * device path in query-block and DEVICE_TRAY_MOVED. */
void ide_cd_name(int index, char *buf, size_t n);
void ide_cd_qdev(int index, char *buf, size_t n);
/* Sends DEVICE_TRAY_MOVED for the CD drive at index (on the machine's event loop). */
void ide_cd_emit_tray(struct machine *m, int index, bool open);
/* A CD-ROM drive at unit 0 or 1, with the medium bs (NULL: an empty drive, tray open); the
 * channel owns bs. 0, -EBUSY, -EINVAL (bad unit). */
int ide_channel_attach_cd(struct ide_channel *ch, int unit, struct block *bs, const char *serial);
/* Puts a medium (bs, owned by the channel from then on) in the CD drive at unit, or takes it
 * out (bs NULL), as the monitor's change and eject do: the previous medium is closed, the
 * guest's next data command sees the tray move and a UNIT ATTENTION, GET EVENT STATUS
 * NOTIFICATION reports new media. force: even when the guest has locked the tray. 0,
 * -ENODEV (no CD drive there), -EBUSY (locked and not forced). */
int ide_channel_change_medium(struct ide_channel *ch, int unit, struct block *bs, bool force);
/* What query-block shows of a CD drive. false when unit holds no CD drive. */
struct ide_cd_info {
    bool tray_open, locked, has_medium;
    const char *file, *format; /* the medium's file name and format (valid while it is in), or NULL */
};
bool ide_channel_cd_info(struct ide_channel *ch, int unit, struct ide_cd_info *info);
/* Called (under the channel's lock, from the vCPU's thread) when the guest opens or closes the
 * tray of a CD drive: the monitor turns it into DEVICE_TRAY_MOVED. */
typedef void (*ide_tray_fn)(void *opaque, struct ide_channel *ch, int unit, bool open);
void ide_channel_set_tray_cb(struct ide_channel *ch, ide_tray_fn fn, void *opaque);

/* savevm/loadvm and migration (hw/disk.h): the IDE disks of the PC machine (CD drives left
 * out), numbered in place order (primary master first). Commands run whole in the vCPU's
 * thread, so with the vCPUs paused nothing is in flight. */
int ide_disk_count(struct machine *m);
/* Disk i's image and whether the guest may write it (read_only may be NULL); its QEMU name
 * ("ide0-hd0") into name when name is not NULL. NULL when there is no such disk. */
struct block *ide_disk_get(struct machine *m, int i, bool *read_only, char *name, size_t n);
/* After the image went to a snapshot: the disk's size is the image's again. */
void ide_disk_refresh(struct machine *m, int i);
/* Flushes every writable IDE disk to its file. 0 or the first -errno. */
int ide_disk_flush_all(struct machine *m);
/* The channel's disk at unit (not a CD drive), or NULL; read_only may be NULL. */
struct block *ide_channel_disk(struct ide_channel *ch, int unit, bool *read_only);
void ide_channel_refresh_disk(struct ide_channel *ch, int unit);
/* The CD drive's medium at unit, or NULL (no medium, or not a CD drive). */
struct block *ide_channel_medium(struct ide_channel *ch, int unit);
/* Puts bs in place of the disk (or the CD's medium) at unit (a disk is there; nothing in flight: the vCPUs are
 * paused; a CD's: the same image, no media change seen) and returns the one it held. */
struct block *ide_channel_swap_disk(struct ide_channel *ch, int unit, struct block *bs);
/* The migration hand-over of the IDE disks' image locks (hw/disk.h, disk_inactivate_all and
 * disk_activate_all, which call these). */
int ide_disk_inactivate_all(struct machine *m);
int ide_disk_activate_all(struct machine *m, char *why, size_t n);

/* A bus master beside the channel (hw/bmdma.c, the PIIX's BMIDE) moves the data of the DMA
 * commands (READ/WRITE DMA (EXT), PACKET with its DMA bit) between the drive and guest memory.
 * A DMA command waits, DRQ set, until the bus master is started; then it runs whole, in the
 * thread that started it. Every hook is called with the channel's lock held, which also guards
 * the bus master's registers (one channel of the hardware). */
enum ide_dma_result {
    IDE_DMA_OK,                 /* every byte moved */
    IDE_DMA_SHORT,              /* the PRD table ended first */
    IDE_DMA_FAULT,              /* a PRD table or buffer outside guest RAM, or bus mastering off */
    IDE_DMA_ABORTED,            /* the drive ended the command with an error (a bad image read) */
};
struct ide_dma_ops {
    bool (*started)(void *opaque);                   /* the start bit is set */
    /* moves len bytes: to_guest, from buf into the guest's buffers, else the other way */
    enum ide_dma_result (*rw)(void *opaque, void *buf, size_t len, bool to_guest);
    void (*end)(void *opaque, enum ide_dma_result r); /* the command's data phase is over */
    void (*irq)(void *opaque);                       /* the channel raised its interrupt */
};
void ide_channel_set_dma(struct ide_channel *ch, const struct ide_dma_ops *ops, void *opaque);
void ide_channel_lock(struct ide_channel *ch);
void ide_channel_unlock(struct ide_channel *ch);
/* With the lock held: the bus master was started; a DMA command waiting for it runs now. */
void ide_channel_dma_kick(struct ide_channel *ch);

#endif
