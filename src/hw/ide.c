/* ATA disks on an IDE channel, by PIO and through a bus master (hw/bmdma.c), as SeaBIOS (src/hw/ata.c), bootloaders and Linux's
 * ata_piix drive them, modelled on what QEMU's hw/ide/core.c shows a guest: writes to the task
 * file reach both drives' registers, reads of an empty channel return 0 (so firmware polling
 * for "not busy" finishes at once), a slave that is absent reads status 0. Commands run at once
 * in the vCPU's thread (block_pread/pwrite): BSY is never seen set. */
#include "hw/ide.h"

#include "hw/atapi.h"

#include "block/block.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* XFER_PACKET: the 12 bytes of an ATAPI command coming in; XFER_ATAPI_IN: its reply or sectors
 * going out, in DRQ blocks no longer than the byte count the guest allowed */
enum ide_xfer { XFER_NONE, XFER_IN, XFER_OUT, XFER_PACKET, XFER_ATAPI_IN, XFER_DMA };

/* The interrupt reason in the sector count register (ATA-7 volume 2, 6.3.3): CoD, IO */
#define IREASON_COD 0x01
#define IREASON_IO  0x02

/* A DMA command moves its data through this bounce buffer, this much at a time. */
#define IDE_DMA_CHUNK (64 * 1024)

struct ide_drive {
    bool present;               /* a disk, or a CD-ROM drive (with or without a medium) */
    bool cd;
    struct block *bs;           /* the disk, or the CD's medium (NULL: none) */
    struct atapi_state atapi;
    bool sig_pending;           /* reset and not yet selected: show its signature when it is */
    bool read_only;
    bool probed_raw;            /* raw by guess: a guest may not write another format's header */
    uint64_t sectors;
    unsigned cyls, heads, secs; /* the geometry IDENTIFY reports, for CHS addressing */
    uint8_t status, error;
    uint16_t identify[256];
};

struct ide_channel {
    struct machine *m;
    pthread_mutex_t lock;
    uint16_t base, ctl;
    unsigned irq;
    struct ide_drive drive[2];
    /* the task file; hob_* hold the previous write of each register (LBA48's high bytes) */
    uint8_t feature, nsector, sector, lcyl, hcyl;
    uint8_t hob_feature, hob_nsector, hob_sector, hob_lcyl, hob_hcyl;
    uint8_t select, control;
    bool irq_level;
    /* the PIO transfer in progress: one sector in buf, more to come while left > 0 */
    enum ide_xfer xfer;
    bool xfer_data;             /* sectors of the disk (else IDENTIFY's page) */
    bool lba48;                 /* an EXT command: the task file's high bytes are part of it */
    uint64_t lba;               /* the sector in buf */
    uint32_t left;              /* sectors still to move, the one in buf included */
    unsigned pos;
    uint8_t cdb[ATAPI_PACKET_SIZE];
    unsigned bcl;               /* the byte count limit PACKET was given */
    uint64_t atapi_left;        /* bytes of the ATAPI command still to move */
    unsigned chunk;             /* bytes valid in buf (a reply, or one 2048-byte sector) */
    unsigned block_left;        /* bytes left in the DRQ block the guest is reading */
    uint8_t buf[ATAPI_SECTOR];
    ide_tray_fn tray_cb;
    void *tray_opaque;
    /* the bus master, when the controller has one; XFER_DMA waits for it to start */
    const struct ide_dma_ops *dma;
    void *dma_opaque;
    bool dma_write;             /* WRITE DMA: guest memory to the disk */
    bool atapi_dma;             /* the PACKET's data goes by DMA */
    struct atapi_result dma_reply;   /* what the packet asked to move */
    uint8_t *dmabuf;            /* IDE_DMA_CHUNK bytes, allocated at the first DMA command */
};

static void id_string(uint16_t *w, unsigned words, const char *s);

static struct ide_drive *cur_drive(struct ide_channel *ch)
{
    return &ch->drive[(ch->select >> 4) & 1];
}

static bool channel_empty(const struct ide_channel *ch)
{
    return !ch->drive[0].present && !ch->drive[1].present;
}

static void irq_raise(struct ide_channel *ch)
{
    /* the bus master's interrupt bit follows the channel's interrupt (PIIX datasheet, BMISX
     * bit 2), as QEMU's bmdma_irq sets it */
    if (!(ch->control & IDE_CTL_NIEN) && ch->dma)
        ch->dma->irq(ch->dma_opaque);
    if (!(ch->control & IDE_CTL_NIEN) && !ch->irq_level) {
        ch->irq_level = true;
        if (ch->m)
            machine_set_irq(ch->m, ch->irq, 1);
    }
}

static void irq_lower(struct ide_channel *ch)
{
    if (ch->irq_level) {
        ch->irq_level = false;
        if (ch->m)
            machine_set_irq(ch->m, ch->irq, 0);
    }
}

/* The signature a device leaves after reset or diagnostics (ATA-7 9.12): 0x14/0xeb in the
 * cylinder registers says "packet device". The task file is shared by both units here (QEMU
 * keeps a copy per unit), so the signature shown is the selected unit's, and selecting the
 * other unit before anything else is written shows that one's. */
static void set_signature(struct ide_channel *ch)
{
    struct ide_drive *d = cur_drive(ch);
    ch->nsector = ch->sector = 1;
    ch->lcyl = d->cd ? 0x14 : 0;
    ch->hcyl = d->cd ? 0xeb : 0;
    ch->select &= 0xf0;
}

static void cmd_done(struct ide_channel *ch, struct ide_drive *d)
{
    ch->xfer = XFER_NONE;
    d->status = IDE_STAT_DRDY | IDE_STAT_DSC;
    d->error = 0;
    irq_raise(ch);
}

static void cmd_abort(struct ide_channel *ch, struct ide_drive *d)
{
    ch->xfer = XFER_NONE;
    d->status = IDE_STAT_DRDY | IDE_STAT_ERR;
    d->error = IDE_ERR_ABRT;
    irq_raise(ch);
}

/* After a data command: the task file holds the address of the last sector moved (or the
 * failing one), as ATA-7 says for the READ/WRITE SECTORS outputs. */
static void set_lba(struct ide_channel *ch, uint64_t lba, bool lba48)
{
    if (!(ch->select & 0x40)) {
        struct ide_drive *d = cur_drive(ch);
        unsigned spc = d->heads * d->secs, cyl = (unsigned)(lba / spc), r = (unsigned)(lba % spc);
        ch->hcyl = (uint8_t)(cyl >> 8), ch->lcyl = (uint8_t)cyl;
        ch->select = (uint8_t)((ch->select & 0xf0) | (r / d->secs));
        ch->sector = (uint8_t)(r % d->secs + 1);
        return;
    }
    ch->sector = (uint8_t)lba, ch->lcyl = (uint8_t)(lba >> 8), ch->hcyl = (uint8_t)(lba >> 16);
    if (lba48) {
        ch->hob_sector = (uint8_t)(lba >> 24), ch->hob_lcyl = (uint8_t)(lba >> 32), ch->hob_hcyl = (uint8_t)(lba >> 40);
    } else {
        ch->select = (uint8_t)((ch->select & 0xf0) | ((lba >> 24) & 0xf));
    }
}

/* The first sector and the count a command names; false (nothing to do but abort) when the
 * address is not on the disk: CHS outside the geometry, or any sector of the range past its end. */
static bool decode_range(struct ide_channel *ch, struct ide_drive *d, bool lba48, uint64_t *lba, uint32_t *count)
{
    if (lba48) {
        *count = (uint32_t)(ch->hob_nsector << 8 | ch->nsector);
        if (!*count)
            *count = 65536;
        *lba = (uint64_t)ch->hob_hcyl << 40 | (uint64_t)ch->hob_lcyl << 32 | (uint64_t)ch->hob_sector << 24 |
               (uint64_t)ch->hcyl << 16 | (uint64_t)ch->lcyl << 8 | ch->sector;
    } else {
        *count = ch->nsector ? ch->nsector : 256;
        if (ch->select & 0x40) {
            *lba = (uint64_t)(ch->select & 0xf) << 24 | (uint64_t)ch->hcyl << 16 | (uint64_t)ch->lcyl << 8 | ch->sector;
        } else {
            unsigned cyl = (unsigned)(ch->hcyl << 8 | ch->lcyl), head = ch->select & 0xf;
            if (ch->sector == 0 || ch->sector > d->secs || head >= d->heads || cyl >= d->cyls)
                return false;
            *lba = ((uint64_t)cyl * d->heads + head) * d->secs + ch->sector - 1;
        }
    }
    return *lba < d->sectors && *count <= d->sectors - *lba;
}

/* A transfer that cannot go on: said under -d guest_errors, ERR with ABRT, the task file at the
 * sector that failed. */
static void xfer_fail(struct ide_channel *ch, struct ide_drive *d, const char *key, const char *why)
{
    machine_log_guest(ch->m, LOG_GUEST, key, "ide: sector %llu: %s", (unsigned long long)ch->lba, why);
    set_lba(ch, ch->lba, ch->lba48);
    cmd_abort(ch, d);
}

/* Loads the next sector of a read into buf and offers it (DRQ, an interrupt). */
static void read_next(struct ide_channel *ch, struct ide_drive *d)
{
    if (block_pread(d->bs, ch->lba * IDE_SECTOR, ch->buf, IDE_SECTOR)) {
        xfer_fail(ch, d, "ide-read", "the image cannot be read");
        return;
    }
    ch->xfer = XFER_IN;
    ch->pos = 0;
    d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
    irq_raise(ch);
}

static void start_rw(struct ide_channel *ch, struct ide_drive *d, bool lba48, bool write)
{
    uint64_t lba;
    uint32_t count;
    if (!decode_range(ch, d, lba48, &lba, &count) || (write && d->read_only)) {
        machine_log_guest(ch->m, LOG_GUEST, "ide-range", "ide: %s of sectors outside the disk or read-only",
                          write ? "write" : "read");
        cmd_abort(ch, d);
        return;
    }
    ch->lba = lba;
    ch->left = count;
    ch->xfer_data = true;
    ch->lba48 = lba48;
    if (write) {
        /* PIO data-out: the first sector is asked for without an interrupt (ATA-7 9.10) */
        ch->xfer = XFER_OUT;
        ch->pos = 0;
        d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
    } else {
        read_next(ch, d);
    }
}


/* ---- DMA: a command's data phase through the bus master ---- */

static void atapi_finish(struct ide_channel *ch, struct ide_drive *d, bool ok);

/* The command waits, DRQ set (QEMU's status too), for the bus master's start bit. */
static void dma_wait(struct ide_channel *ch, struct ide_drive *d)
{
    ch->xfer = XFER_DMA;
    d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
    ide_channel_dma_kick(ch);
}

/* The PRD table ended before the data: the hardware's "PRD smaller than transfer" (bus master
 * neither active nor interrupting), and the drive gives up with ERR. A bus master fault
 * (outside RAM) also interrupts, with the bus master's error bit. */
static void dma_fail(struct ide_channel *ch, struct ide_drive *d, enum ide_dma_result r)
{
    machine_log_guest(ch->m, LOG_GUEST, r == IDE_DMA_SHORT ? "ide-dma-short" : "ide-dma-fault",
                      r == IDE_DMA_SHORT ? "ide: the PRD table is shorter than the transfer"
                                         : "ide: a PRD table or buffer is outside guest RAM (or bus mastering is off)");
    ch->xfer = XFER_NONE;
    d->status = IDE_STAT_DRDY | IDE_STAT_ERR;
    d->error = IDE_ERR_ABRT;
    if (d->cd) {
        /* the status phase of a failed packet: ABORTED COMMAND in the sense and error register */
        atapi_set_sense(&d->atapi, SENSE_ABORTED_COMMAND, 0);
        ch->nsector = (uint8_t)((ch->nsector & ~7) | IREASON_IO | IREASON_COD);
        d->status |= IDE_STAT_DSC;
        d->error = (uint8_t)(SENSE_ABORTED_COMMAND << 4);
    }
    if (r != IDE_DMA_SHORT)
        irq_raise(ch);
}

static enum ide_dma_result dma_run_disk(struct ide_channel *ch, struct ide_drive *d)
{
    while (ch->left) {
        uint32_t n = ch->left < IDE_DMA_CHUNK / IDE_SECTOR ? ch->left : IDE_DMA_CHUNK / IDE_SECTOR;
        size_t len = (size_t)n * IDE_SECTOR;
        enum ide_dma_result r;
        if (ch->dma_write) {
            if ((r = ch->dma->rw(ch->dma_opaque, ch->dmabuf, len, false)) != IDE_DMA_OK)
                return r;
            if (d->probed_raw && ch->lba == 0 && block_probe_header(ch->dmabuf, IDE_SECTOR)) {
                xfer_fail(ch, d, "ide-probe", "refused an image header on a raw image whose format was guessed (give format=raw)");
                return IDE_DMA_ABORTED;
            }
            if (block_pwrite(d->bs, ch->lba * IDE_SECTOR, ch->dmabuf, len)) {
                xfer_fail(ch, d, "ide-write", "the image cannot be written");
                return IDE_DMA_ABORTED;
            }
        } else {
            if (block_pread(d->bs, ch->lba * IDE_SECTOR, ch->dmabuf, len)) {
                xfer_fail(ch, d, "ide-read", "the image cannot be read");
                return IDE_DMA_ABORTED;
            }
            if ((r = ch->dma->rw(ch->dma_opaque, ch->dmabuf, len, true)) != IDE_DMA_OK)
                return r;
        }
        ch->lba += n;
        ch->left -= n;
    }
    set_lba(ch, ch->lba - 1, ch->lba48);
    cmd_done(ch, d);
    return IDE_DMA_OK;
}

static enum ide_dma_result dma_run_atapi(struct ide_channel *ch, struct ide_drive *d)
{
    const struct atapi_result *rep = &ch->dma_reply;
    enum ide_dma_result r;
    if (rep->action == ATAPI_DATA_IN) {
        if ((r = ch->dma->rw(ch->dma_opaque, ch->buf, rep->len, true)) != IDE_DMA_OK)
            return r;
        atapi_finish(ch, d, true);
        return IDE_DMA_OK;
    }
    while (ch->left) {
        uint32_t n = ch->left < IDE_DMA_CHUNK / ATAPI_SECTOR ? ch->left : IDE_DMA_CHUNK / ATAPI_SECTOR;
        size_t len = (size_t)n * ATAPI_SECTOR;
        if (!d->bs || block_pread(d->bs, ch->lba * ATAPI_SECTOR, ch->dmabuf, len)) {
            machine_log_guest(ch->m, LOG_GUEST, "atapi-read", "atapi: sector %llu cannot be read",
                              (unsigned long long)ch->lba);
            atapi_set_sense(&d->atapi, SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ);
            atapi_finish(ch, d, false);
            return IDE_DMA_ABORTED;
        }
        if ((r = ch->dma->rw(ch->dma_opaque, ch->dmabuf, len, true)) != IDE_DMA_OK)
            return r;
        ch->lba += n;
        ch->left -= n;
    }
    atapi_finish(ch, d, true);
    return IDE_DMA_OK;
}

void ide_channel_dma_kick(struct ide_channel *ch)
{
    if (ch->xfer != XFER_DMA || !ch->dma || !ch->dma->started(ch->dma_opaque))
        return;
    struct ide_drive *d = cur_drive(ch);
    enum ide_dma_result r;
    if (!ch->dmabuf && !(ch->dmabuf = malloc(IDE_DMA_CHUNK))) {
        xfer_fail(ch, d, "ide-dma-mem", "no memory for the transfer");
        r = IDE_DMA_ABORTED;
    } else {
        r = d->cd ? dma_run_atapi(ch, d) : dma_run_disk(ch, d);
    }
    if (r == IDE_DMA_SHORT || r == IDE_DMA_FAULT)
        dma_fail(ch, d, r);
    ch->dma->end(ch->dma_opaque, r);
}

/* SET FEATURES 0x03: the mode in the sector count (ATA-7 volume 1, 6.49.12): PIO (0x08 + n,
 * or 0/1 default), multiword DMA 0x20 + n, Ultra DMA 0x40 + n. IDENTIFY's words 63 and 88 then
 * say which DMA mode is selected, as QEMU's ide_set_feature keeps them. false: a mode this
 * drive does not have (abort). */
static bool set_xfer_mode(struct ide_channel *ch, struct ide_drive *d)
{
    unsigned type = ch->nsector >> 3, n = ch->nsector & 7;
    uint16_t *w = d->identify;
    switch (type) {
    case 0: case 1:              /* PIO: no DMA mode selected */
        if (type == 0 && n > 1)
            return false;
        if (type == 1 && n > 4)
            return false;
        break;
    case 4:                      /* multiword DMA 0-2 */
        if (!ch->dma || n > 2)
            return false;
        break;
    case 8:                      /* Ultra DMA 0-5 */
        if (!ch->dma || n > 5)
            return false;
        break;
    default:
        return false;
    }
    if (ch->dma) {
        w[62] = 0;
        w[63] = (uint16_t)(0x07 | (type == 4 ? 1u << (n + 8) : 0));
        w[88] = (uint16_t)(0x3f | (type == 8 ? 1u << (n + 8) : 0));
    }
    return true;
}

static void start_dma(struct ide_channel *ch, struct ide_drive *d, bool lba48, bool write)
{
    uint64_t lba;
    uint32_t count;
    if (!decode_range(ch, d, lba48, &lba, &count) || (write && d->read_only)) {
        machine_log_guest(ch->m, LOG_GUEST, "ide-range", "ide: DMA %s of sectors outside the disk or read-only",
                          write ? "write" : "read");
        cmd_abort(ch, d);
        return;
    }
    ch->lba = lba;
    ch->left = count;
    ch->lba48 = lba48;
    ch->dma_write = write;
    dma_wait(ch, d);
}

void ide_channel_set_dma(struct ide_channel *ch, const struct ide_dma_ops *ops, void *opaque)
{
    pthread_mutex_lock(&ch->lock);
    ch->dma = ops, ch->dma_opaque = opaque;
    pthread_mutex_unlock(&ch->lock);
}

void ide_channel_lock(struct ide_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
}

void ide_channel_unlock(struct ide_channel *ch)
{
    pthread_mutex_unlock(&ch->lock);
}

/* ---- the ATAPI CD-ROM: ATA commands a packet device takes, and the packet protocol ---- */


static void atapi_finish(struct ide_channel *ch, struct ide_drive *d, bool ok)
{
    ch->xfer = XFER_NONE;
    ch->nsector = (uint8_t)((ch->nsector & ~7) | IREASON_IO | IREASON_COD);
    d->status = IDE_STAT_DRDY | IDE_STAT_DSC | (ok ? 0 : IDE_STAT_ERR);
    d->error = ok ? 0 : (uint8_t)(d->atapi.sense_key << 4);
    irq_raise(ch);
}

/* Loads the sector at ch->lba into buf; false (a MEDIUM ERROR for the guest) when the image
 * cannot be read. */
static bool atapi_load_sector(struct ide_channel *ch, struct ide_drive *d)
{
    if (!d->bs || block_pread(d->bs, ch->lba * ATAPI_SECTOR, ch->buf, ATAPI_SECTOR)) {
        machine_log_guest(ch->m, LOG_GUEST, "atapi-read", "atapi: sector %llu cannot be read",
                          (unsigned long long)ch->lba);
        atapi_set_sense(&d->atapi, SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ);
        atapi_finish(ch, d, false);
        return false;
    }
    ch->chunk = ATAPI_SECTOR;
    ch->pos = 0;
    return true;
}

/* Offers the next DRQ block: as much as is left, within the byte count limit (even when it
 * cuts, ATA-7 volume 2, 6.3.3) and within the sector in buf, its size in the cylinder
 * registers. */
static void atapi_next_block(struct ide_channel *ch, struct ide_drive *d)
{
    unsigned size = ch->chunk - ch->pos;
    if (size > ch->atapi_left)
        size = (unsigned)ch->atapi_left;
    if (size > ch->bcl)
        size = ch->bcl & ~1u;
    ch->block_left = size;
    ch->lcyl = (uint8_t)size, ch->hcyl = (uint8_t)(size >> 8);
    ch->nsector = (uint8_t)((ch->nsector & ~7) | IREASON_IO);
    ch->xfer = XFER_ATAPI_IN;
    d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
    irq_raise(ch);
}

static void atapi_run_packet(struct ide_channel *ch, struct ide_drive *d)
{
    struct atapi_result r;
    atapi_parse(&d->atapi, ch->cdb, ch->buf, &r);
    if (r.tray_moved && ch->tray_cb)
        ch->tray_cb(ch->tray_opaque, ch, (int)(d - ch->drive), d->atapi.tray_open);
    switch (r.action) {
    case ATAPI_OK:
        atapi_finish(ch, d, true);
        return;
    case ATAPI_ERROR:
        machine_log_guest(ch->m, LOG_GUEST, "atapi-check", "atapi: command 0x%02x: sense %x/%02x", ch->cdb[0],
                          d->atapi.sense_key, d->atapi.asc);
        atapi_finish(ch, d, false);
        return;
    case ATAPI_DATA_IN:
    case ATAPI_READ:
        if (!ch->atapi_dma)
            break;
        ch->dma_reply = r;
        ch->lba = r.lba;
        ch->left = r.action == ATAPI_READ ? r.count : 0;
        dma_wait(ch, d);
        return;
    }
    switch (r.action) {
    case ATAPI_OK:
    case ATAPI_ERROR:
        return;
    case ATAPI_DATA_IN:
        ch->chunk = r.len;
        ch->pos = 0;
        ch->atapi_left = r.len;
        ch->xfer_data = false;
        atapi_next_block(ch, d);
        return;
    case ATAPI_READ:
        ch->lba = r.lba;
        ch->left = r.count;
        ch->atapi_left = (uint64_t)r.count * ATAPI_SECTOR;
        ch->xfer_data = true;
        if (atapi_load_sector(ch, d))
            atapi_next_block(ch, d);
        return;
    }
}

static uint32_t atapi_data_read(struct ide_channel *ch, struct ide_drive *d, unsigned size)
{
    uint32_t v = 0;
    if (size > ch->block_left)
        size = ch->block_left;
    memcpy(&v, ch->buf + ch->pos, size);
    ch->pos += size, ch->block_left -= size, ch->atapi_left -= size;
    if (ch->block_left)
        return v;
    if (!ch->atapi_left) {
        atapi_finish(ch, d, true);
        return v;
    }
    if (ch->pos == ch->chunk) {
        ch->lba++;
        if (!atapi_load_sector(ch, d))
            return v;
    }
    atapi_next_block(ch, d);
    return v;
}

static void atapi_packet_write(struct ide_channel *ch, struct ide_drive *d, uint32_t v, unsigned size)
{
    if (ch->pos + size > ATAPI_PACKET_SIZE)
        size = ATAPI_PACKET_SIZE - ch->pos;
    memcpy(ch->cdb + ch->pos, &v, size);
    ch->pos += size;
    if (ch->pos == ATAPI_PACKET_SIZE)
        atapi_run_packet(ch, d);
}

/* IDENTIFY PACKET DEVICE's page as QEMU's ide_atapi_identify fills it, less DMA */
static void build_identify_packet(struct ide_drive *d, int unit, const char *serial)
{
    uint16_t *w = d->identify;
    char sn[24];
    memset(w, 0, sizeof(d->identify));
    snprintf(sn, sizeof(sn), "QM%05d", unit + 1);
    /* ATAPI, CD-ROM, removable, DRQ within 50 us of PACKET (no interrupt), 12-byte packets */
    w[0] = 2 << 14 | 5 << 8 | 1 << 7 | 2 << 5;
    id_string(w + 10, 10, serial ? serial : sn);
    w[20] = 3, w[21] = 512, w[22] = 4;
    id_string(w + 23, 4, "2.5+");
    id_string(w + 27, 20, "QEMU DVD-ROM");
    w[48] = 1;
    w[49] = 1 << 9;                /* LBA; DMA below when there is a bus master */
    w[53] = 3;
    w[64] = 3;
    w[65] = 0xb4, w[66] = 0xb4, w[67] = 0x12c, w[68] = 0xb4;
    w[71] = 30, w[72] = 30;
    w[80] = 0x1e;                  /* ATAPI-1 to 4 */
    w[82] = 1 << 4 | 1 << 9 | 1 << 14;   /* PACKET, DEVICE RESET, NOP */
    w[83] = 1 << 14;
    w[84] = 1 << 14;
    w[85] = 1 << 4 | 1 << 9 | 1 << 14;
    w[87] = 1 << 14;
}

/* The ATA commands of a packet device (ATA-7 volume 1, 4.4): the rest, READ SECTORS and
 * IDENTIFY DEVICE included, abort with the signature in the task file so that a driver that
 * took it for a disk learns what it is. */
static void atapi_command(struct ide_channel *ch, struct ide_drive *d, uint8_t cmd)
{
    switch (cmd) {
    case 0xa0:                   /* PACKET */
        if ((ch->feature & 1) && !ch->dma) {   /* DMA asked for where there is no bus master */
            machine_log_guest(ch->m, LOG_GUEST, "atapi-dma", "atapi: PACKET with DMA, which this drive does not offer");
            cmd_abort(ch, d);
            return;
        }
        ch->atapi_dma = ch->feature & 1;
        ch->bcl = (unsigned)(ch->hcyl << 8 | ch->lcyl);
        if (ch->bcl == 0 || ch->bcl == 0xffff)
            ch->bcl = 0xfffe;    /* 0 is not a limit (and a block is even) */
        else if (ch->bcl == 1)
            ch->bcl = 2;         /* rounded down to even it would allow no byte at all */
        ch->xfer = XFER_PACKET;
        ch->pos = 0;
        ch->nsector = (uint8_t)((ch->nsector & ~7) | IREASON_COD);
        d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
        return;
    case 0xa1:                   /* IDENTIFY PACKET DEVICE */
        memcpy(ch->buf, d->identify, IDE_SECTOR);
        ch->xfer = XFER_IN;
        ch->xfer_data = false;
        ch->left = 1;
        ch->pos = 0;
        d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
        irq_raise(ch);
        return;
    case 0x08:                   /* DEVICE RESET */
        ch->xfer = XFER_NONE;
        set_signature(ch);
        d->status = 0;
        d->error = 0x01;
        return;
    case 0x90:                   /* EXECUTE DEVICE DIAGNOSTIC */
        set_signature(ch);
        cmd_done(ch, d);
        d->error = 0x01;
        return;
    case 0x00:                   /* NOP: aborts by definition */
        break;
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: case 0xe5: case 0xe6:   /* power */
        cmd_done(ch, d);
        if (cmd == 0xe5)
            ch->nsector = 0xff;
        return;
    case 0xef:                   /* SET FEATURES: transfer mode, defaults */
        if (ch->feature == 0x03 && !set_xfer_mode(ch, d))
            break;
        if (ch->feature == 0x03 || ch->feature == 0x66 || ch->feature == 0xcc) {
            cmd_done(ch, d);
            return;
        }
        break;
    default:
        set_signature(ch);
        break;
    }
    machine_log_guest(ch->m, LOG_GUEST, "atapi-cmd", "atapi: ATA command 0x%02x refused by a packet device", cmd);
    cmd_abort(ch, d);
}

static void exec_command(struct ide_channel *ch, uint8_t cmd)
{
    struct ide_drive *d = cur_drive(ch);
    if (!d->present)
        return;   /* nobody there to answer */
    if (d->status & (IDE_STAT_BSY | IDE_STAT_DRQ) && ch->xfer != XFER_NONE) {
        machine_log_guest(ch->m, LOG_GUEST, "ide-busy", "ide: command 0x%02x during a transfer ignored", cmd);
        return;
    }
    ch->drive[0].sig_pending = ch->drive[1].sig_pending = false;
    irq_lower(ch);
    if (d->cd) {
        atapi_command(ch, d, cmd);
        return;
    }
    switch (cmd) {
    case 0xec:   /* IDENTIFY DEVICE */
        memcpy(ch->buf, d->identify, IDE_SECTOR);
        ch->xfer = XFER_IN;
        ch->xfer_data = false;
        ch->left = 1;
        ch->pos = 0;
        d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
        irq_raise(ch);
        return;
    case 0xc8: case 0xc9: case 0x25: case 0xca: case 0xcb: case 0x35:   /* READ/WRITE DMA (EXT) */
        if (!ch->dma)
            break;
        start_dma(ch, d, cmd == 0x25 || cmd == 0x35, cmd >= 0xca || cmd == 0x35);
        return;
    case 0x20: case 0x21: start_rw(ch, d, false, false); return;   /* READ SECTORS */
    case 0x24: start_rw(ch, d, true, false); return;               /* READ SECTORS EXT */
    case 0x30: case 0x31: start_rw(ch, d, false, true); return;    /* WRITE SECTORS */
    case 0x34: start_rw(ch, d, true, true); return;                /* WRITE SECTORS EXT */
    case 0x40: case 0x41: case 0x42: {                              /* READ VERIFY SECTORS (EXT) */
        uint64_t lba;
        uint32_t count;
        if (!decode_range(ch, d, cmd == 0x42, &lba, &count))
            cmd_abort(ch, d);
        else
            cmd_done(ch, d);
        return;
    }
    case 0x70:                   /* SEEK */
    case 0x10 ... 0x1f:          /* RECALIBRATE */
    case 0x91:                   /* INITIALIZE DEVICE PARAMETERS: LBA is what counts here */
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: case 0x94: case 0x95: case 0x96: case 0x97:   /* power */
        cmd_done(ch, d);
        return;
    case 0xe5: case 0x98:        /* CHECK POWER MODE: always active */
        cmd_done(ch, d);
        ch->nsector = 0xff;
        return;
    case 0xe7: case 0xea:        /* FLUSH CACHE (EXT) */
        if (block_flush(d->bs))
            cmd_abort(ch, d);
        else
            cmd_done(ch, d);
        return;
    case 0xef:                   /* SET FEATURES: write cache, transfer mode, look-ahead, defaults */
        if (ch->feature == 0x03 && !set_xfer_mode(ch, d))
            break;
        switch (ch->feature) {
        case 0x02: case 0x82: case 0x03: case 0xaa: case 0x55: case 0x66: case 0xcc:
            cmd_done(ch, d);
            return;
        }
        break;
    case 0x90:                   /* EXECUTE DEVICE DIAGNOSTIC */
        set_signature(ch);
        cmd_done(ch, d);
        d->error = 0x01;         /* device 0 passed */
        return;
    }
    machine_log_guest(ch->m, LOG_GUEST, "ide-cmd", "ide: command 0x%02x (feature 0x%02x) not supported", cmd,
                      ch->feature);
    cmd_abort(ch, d);
}

/* One more 16- or 32-bit word of a transfer. */
static uint32_t data_read(struct ide_channel *ch, unsigned size)
{
    struct ide_drive *d = cur_drive(ch);
    uint32_t v = 0;
    if (ch->xfer == XFER_ATAPI_IN)
        return atapi_data_read(ch, d, size);
    if (ch->xfer != XFER_IN)
        return 0;
    if (ch->pos + size > IDE_SECTOR)
        size = IDE_SECTOR - ch->pos;
    memcpy(&v, ch->buf + ch->pos, size);
    ch->pos += size;
    if (ch->pos < IDE_SECTOR)
        return v;
    bool lba48 = ch->lba48;
    if (--ch->left && ch->xfer_data) {
        ch->lba++;
        read_next(ch, d);
    } else {
        if (ch->xfer_data)
            set_lba(ch, ch->lba, lba48);
        ch->xfer = XFER_NONE;
        d->status = IDE_STAT_DRDY | IDE_STAT_DSC;
    }
    return v;
}

static void data_write(struct ide_channel *ch, uint32_t v, unsigned size)
{
    struct ide_drive *d = cur_drive(ch);
    if (ch->xfer == XFER_PACKET) {
        atapi_packet_write(ch, d, v, size);
        return;
    }
    if (ch->xfer != XFER_OUT)
        return;
    if (ch->pos + size > IDE_SECTOR)
        size = IDE_SECTOR - ch->pos;
    memcpy(ch->buf + ch->pos, &v, size);
    ch->pos += size;
    if (ch->pos < IDE_SECTOR)
        return;
    bool lba48 = ch->lba48;
    if (d->probed_raw && ch->lba == 0 && block_probe_header(ch->buf, IDE_SECTOR)) {
        xfer_fail(ch, d, "ide-probe", "refused an image header on a raw image whose format was guessed (give format=raw)");
        return;
    }
    if (block_pwrite(d->bs, ch->lba * IDE_SECTOR, ch->buf, IDE_SECTOR)) {
        xfer_fail(ch, d, "ide-write", "the image cannot be written");
        return;
    }
    if (--ch->left) {
        ch->lba++;
        ch->pos = 0;
        d->status = IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ;
        irq_raise(ch);
    } else {
        set_lba(ch, ch->lba, lba48);
        cmd_done(ch, d);
    }
}

static void reset_channel(struct ide_channel *ch)
{
    ch->xfer = XFER_NONE;
    ch->select = 0xa0;
    set_signature(ch);
    ch->feature = 0;
    for (int u = 0; u < 2; u++) {
        struct ide_drive *d = &ch->drive[u];
        /* a packet device leaves reset without DRDY (ATA-7 9.12; QEMU does the same) */
        d->status = !d->present ? 0 : d->cd ? 0 : IDE_STAT_DRDY | IDE_STAT_DSC;
        d->error = 0x01;
        d->sig_pending = d->present;
    }
}

static void taskfile_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct ide_channel *ch = opaque;
    uint32_t v = 0;
    pthread_mutex_lock(&ch->lock);
    struct ide_drive *d = cur_drive(ch);
    bool hob = ch->control & IDE_CTL_HOB, absent = !d->present;
    bool empty = channel_empty(ch);
    switch (off) {
    case 0: v = data_read(ch, size); break;
    case 1: v = empty || absent ? 0 : hob ? 0 : d->error; break;
    case 2: v = empty ? 0 : hob ? ch->hob_nsector : ch->nsector; break;
    case 3: v = empty ? 0 : hob ? ch->hob_sector : ch->sector; break;
    case 4: v = empty ? 0 : hob ? ch->hob_lcyl : ch->lcyl; break;
    case 5: v = empty ? 0 : hob ? ch->hob_hcyl : ch->hcyl; break;
    case 6: v = empty ? 0 : ch->select; break;
    case 7:
        v = empty || absent ? 0 : d->status;
        irq_lower(ch);   /* reading the status acknowledges the interrupt */
        break;
    }
    pthread_mutex_unlock(&ch->lock);
    memcpy(data, &v, size > 4 ? 4 : size);
}

static void taskfile_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct ide_channel *ch = opaque;
    uint32_t v = 0;
    memcpy(&v, data, size > 4 ? 4 : size);
    pthread_mutex_lock(&ch->lock);
    if (off != 0 && off != 7) {
        ch->control &= (uint8_t)~IDE_CTL_HOB;   /* a task file write drops the HOB view */
        if (off != 6)
            ch->drive[0].sig_pending = ch->drive[1].sig_pending = false;
    }
    uint8_t b = (uint8_t)v;
    switch (off) {
    case 0: data_write(ch, v, size); break;
    case 1: ch->hob_feature = ch->feature, ch->feature = b; break;
    case 2: ch->hob_nsector = ch->nsector, ch->nsector = b; break;
    case 3: ch->hob_sector = ch->sector, ch->sector = b; break;
    case 4: ch->hob_lcyl = ch->lcyl, ch->lcyl = b; break;
    case 5: ch->hob_hcyl = ch->hcyl, ch->hcyl = b; break;
    case 6:
        ch->select = (uint8_t)(b | 0xa0);   /* bits 7 and 5 read as ones */
        if (cur_drive(ch)->sig_pending)
            set_signature(ch);
        break;
    case 7: exec_command(ch, b); break;
    }
    pthread_mutex_unlock(&ch->lock);
}

static void ctl_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct ide_channel *ch = opaque;
    (void)off;
    pthread_mutex_lock(&ch->lock);
    struct ide_drive *d = cur_drive(ch);
    uint8_t v = channel_empty(ch) || !d->present ? 0 : d->status;   /* alternate status: no acknowledge */
    pthread_mutex_unlock(&ch->lock);
    memset(data, 0, size);
    *(uint8_t *)data = v;
}

static void ctl_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct ide_channel *ch = opaque;
    (void)off, (void)size;
    uint8_t v = *(const uint8_t *)data;
    pthread_mutex_lock(&ch->lock);
    if ((v & IDE_CTL_SRST) && !(ch->control & IDE_CTL_SRST)) {
        for (int u = 0; u < 2; u++)
            if (ch->drive[u].present)
                ch->drive[u].status = IDE_STAT_BSY | IDE_STAT_DSC;
        ch->xfer = XFER_NONE;
    } else if (!(v & IDE_CTL_SRST) && (ch->control & IDE_CTL_SRST)) {
        reset_channel(ch);
    }
    ch->control = v;
    if (v & IDE_CTL_NIEN)
        irq_lower(ch);
    pthread_mutex_unlock(&ch->lock);
}

/* ---- state for savevm and migration (vm/vmstate.h) ----
 * One section per channel, instance its task-file port (0x1f0, 0x170): the task file, the
 * transfer in progress with its sector buffer (a guest halfway through a READ SECTORS or an
 * ATAPI READ(10) reads on from the same byte), and each drive's status, error and ATAPI sense,
 * tray and media-change state. Which drives there are, and their images, come from the options,
 * which must be the source's: a stream from other drives is refused. Bus-master DMA, when it
 * comes, gets a section of its own beside this one ("ide-bmdma", same instance, registered by
 * the code that owns the BMDMA registers, its post_load restarting a transfer the stream says
 * was running), so this one's layout stays version 1. */
static_assert(sizeof(enum ide_xfer) == 4, "enum ide_xfer goes into the stream as a u32");
static_assert(sizeof(enum atapi_action) == 4, "enum atapi_action goes into the stream as a u32");

static const struct vmstate_field ide_drive_fields[] = {
    VMSTATE_BOOL(struct ide_drive, present), VMSTATE_BOOL(struct ide_drive, cd),
    VMSTATE_BOOL(struct ide_drive, read_only), VMSTATE_U64(struct ide_drive, sectors),
    VMSTATE_BOOL(struct ide_drive, sig_pending),
    VMSTATE_U8(struct ide_drive, status), VMSTATE_U8(struct ide_drive, error),
    VMSTATE_U64(struct ide_drive, atapi.sectors), VMSTATE_BOOL(struct ide_drive, atapi.tray_open),
    VMSTATE_BOOL(struct ide_drive, atapi.locked), VMSTATE_U8(struct ide_drive, atapi.sense_key),
    VMSTATE_U8(struct ide_drive, atapi.asc), VMSTATE_U8(struct ide_drive, atapi.ascq),
    VMSTATE_U8(struct ide_drive, atapi.changed), VMSTATE_BOOL(struct ide_drive, atapi.unit_attention),
    VMSTATE_BOOL(struct ide_drive, atapi.event_new_media), VMSTATE_BOOL(struct ide_drive, atapi.event_eject_request),
    VMSTATE_END,
};

#define C struct ide_channel
static const struct vmstate_field ide_channel_fields[] = {
    VMSTATE_STRUCT_ARRAY(C, drive, 2, ide_drive_fields, struct ide_drive),
    VMSTATE_U8(C, feature), VMSTATE_U8(C, nsector), VMSTATE_U8(C, sector), VMSTATE_U8(C, lcyl), VMSTATE_U8(C, hcyl),
    VMSTATE_U8(C, hob_feature), VMSTATE_U8(C, hob_nsector), VMSTATE_U8(C, hob_sector), VMSTATE_U8(C, hob_lcyl),
    VMSTATE_U8(C, hob_hcyl), VMSTATE_U8(C, select), VMSTATE_U8(C, control), VMSTATE_BOOL(C, irq_level),
    VMS_FIELD(C, xfer, VMS_U32, 1, 0), VMSTATE_BOOL(C, xfer_data), VMSTATE_BOOL(C, lba48),
    VMSTATE_U64(C, lba), VMSTATE_U32(C, left), VMSTATE_U32(C, pos),
    VMSTATE_U8_ARRAY(C, cdb, ATAPI_PACKET_SIZE), VMSTATE_U32(C, bcl), VMSTATE_U64(C, atapi_left),
    VMSTATE_U32(C, chunk), VMSTATE_U32(C, block_left), VMSTATE_U8_ARRAY(C, buf, ATAPI_SECTOR),
    /* a DMA command waiting for the bus master's start bit (XFER_DMA) */
    VMSTATE_BOOL(C, dma_write), VMSTATE_BOOL(C, atapi_dma), VMS_FIELD(C, dma_reply.action, VMS_U32, 1, 0),
    VMSTATE_U32(C, dma_reply.len),
    VMSTATE_END,
};
#undef C

/* Everything a handler indexes or copies with is bounded here: buffer positions, the sector a
 * transfer goes on from, the drive it talks to. */
static int ide_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct ide_channel *l = live, *s = state;
    for (int u = 0; u < 2; u++) {
        const struct ide_drive *ld = &l->drive[u], *sd = &s->drive[u];
        if (ld->present != sd->present || ld->cd != sd->cd || ld->read_only != sd->read_only ||
            (!ld->cd && ld->sectors != sd->sectors))
            return *why = "drives (not the disks and CD drives of the source)", -EINVAL;
        if (ld->cd && ld->atapi.sectors != sd->atapi.sectors)
            return *why = "CD medium (not the one in the source's drive)", -EINVAL;
        if (sd->atapi.sense_key > 0xf || sd->atapi.changed > 2)
            return *why = "ATAPI sense", -EINVAL;
    }
    const struct ide_drive *d = &s->drive[(s->select >> 4) & 1];
    switch (s->xfer) {
    case XFER_NONE:
        return 0;
    case XFER_IN:
    case XFER_OUT:
        if (!d->present || s->pos >= IDE_SECTOR || (s->xfer == XFER_OUT && (!s->xfer_data || d->cd)))
            return *why = "PIO transfer", -EINVAL;
        if (s->xfer_data && (d->cd || !s->left || s->lba >= d->sectors || s->left > d->sectors - s->lba))
            return *why = "PIO transfer's sectors (outside the disk)", -EINVAL;
        return 0;
    case XFER_PACKET:
        if (!d->present || !d->cd || s->pos >= ATAPI_PACKET_SIZE)
            return *why = "ATAPI packet", -EINVAL;
        return 0;
    case XFER_ATAPI_IN:
        if (!d->present || !d->cd || s->chunk > ATAPI_SECTOR || s->pos > s->chunk ||
            s->block_left > s->chunk - s->pos || s->block_left > s->atapi_left || s->bcl < 2 || s->bcl > 0xfffe)
            return *why = "ATAPI transfer", -EINVAL;
        if (s->xfer_data) {
            uint64_t here = s->chunk - s->pos, rest = s->atapi_left > here ? s->atapi_left - here : 0;
            if (s->lba >= d->atapi.sectors || rest > (d->atapi.sectors - s->lba - 1) * ATAPI_SECTOR)
                return *why = "ATAPI transfer's sectors (outside the medium)", -EINVAL;
        }
        return 0;
    case XFER_DMA:
        if (!d->present)
            return *why = "DMA command", -EINVAL;
        if (d->cd && s->dma_reply.action == ATAPI_DATA_IN && s->dma_reply.len > sizeof(s->buf))
            return *why = "ATAPI DMA reply", -EINVAL;
        if (d->cd && s->dma_reply.action == ATAPI_READ && s->left &&
            (s->lba >= d->atapi.sectors || s->left > d->atapi.sectors - s->lba))
            return *why = "ATAPI DMA transfer's sectors (outside the medium)", -EINVAL;
        if (d->cd && s->dma_reply.action != ATAPI_DATA_IN && s->dma_reply.action != ATAPI_READ)
            return *why = "ATAPI DMA action", -EINVAL;
        if (!d->cd && (!s->left || s->lba >= d->sectors || s->left > d->sectors - s->lba ||
                       (s->dma_write && d->read_only)))
            return *why = "DMA transfer's sectors (outside the disk)", -EINVAL;
        return 0;
    }
    return *why = "transfer kind", -EINVAL;
}

static const struct vmstate_desc ide_vmstate = {
    .name = "ide", .version = 1, .min_version = 1, .size = sizeof(struct ide_channel), .fields = ide_channel_fields,
    .check = ide_vmstate_check,
};

static void channel_free(void *opaque)
{
    struct ide_channel *ch = opaque;
    for (int u = 0; u < 2; u++)
        block_close(ch->drive[u].bs);
    free(ch->dmabuf);
    pthread_mutex_destroy(&ch->lock);
    free(ch);
}

int ide_channel_create(struct machine *m, uint16_t base, uint16_t ctl, unsigned irq, struct ide_channel **out)
{
    struct ide_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return -ENOMEM;
    ch->m = m;
    ch->base = base, ch->ctl = ctl, ch->irq = irq;
    pthread_mutex_init(&ch->lock, NULL);
    reset_channel(ch);
    int ret = machine_add_cleanup(m, channel_free, ch);
    if (ret)
        return ret;
    ret = bus_register(&m->pio, base, 8, taskfile_read, taskfile_write, ch, "ide");
    if (!ret)
        ret = bus_register(&m->pio, ctl, 1, ctl_read, ctl_write, ch, "ide-ctl");
    if (ret) {
        log_error("ide: ports 0x%x-0x%x and 0x%x are taken", base, base + 7, ctl);
        return ret;
    }
    if ((ret = vmstate_register(m, &ide_vmstate, base, ch)))
        return ret;
    *out = ch;
    return 0;
}

/* An ATA string: space-padded, the two bytes of each word swapped (ATA-7 volume 1, 3.3.10). */
static void id_string(uint16_t *w, unsigned words, const char *s)
{
    char tmp[64];
    size_t n = strlen(s);
    memset(tmp, ' ', sizeof(tmp));
    memcpy(tmp, s, n < 2 * words ? n : 2 * words);
    for (unsigned i = 0; i < words; i++)
        w[i] = (uint16_t)((uint8_t)tmp[2 * i] << 8 | (uint8_t)tmp[2 * i + 1]);
}

/* IDENTIFY DEVICE's page as QEMU's ide_identify fills it (hw/ide/core.c) where a PIO-only disk
 * has the same feature: guests and firmware see the same model, geometry and capacities. */
static void build_identify(struct ide_drive *d, int unit, const char *serial)
{
    uint16_t *w = d->identify;
    char sn[24];
    uint64_t chs = (uint64_t)d->cyls * d->heads * d->secs;
    uint32_t lba28 = d->sectors < 0x0fffffff ? (uint32_t)d->sectors : 0x0fffffff;
    memset(w, 0, sizeof(d->identify));
    snprintf(sn, sizeof(sn), "QM%05d", unit + 1);
    w[0] = 0x0040;   /* fixed disk */
    w[1] = (uint16_t)d->cyls, w[3] = (uint16_t)d->heads, w[6] = (uint16_t)d->secs;
    w[4] = (uint16_t)(IDE_SECTOR * d->secs), w[5] = IDE_SECTOR;
    id_string(w + 10, 10, serial ? serial : sn);
    w[20] = 3, w[21] = 512, w[22] = 4;
    id_string(w + 23, 4, "2.5+");
    id_string(w + 27, 20, "QEMU HARDDISK");   /* QEMU's name: guests that match on it keep working */
    w[48] = 1;                     /* 32-bit data port accesses */
    w[49] = 1 << 11 | 1 << 9;      /* IORDY, LBA; DMA below when there is a bus master */
    w[51] = 0x200, w[52] = 0x200;
    w[53] = 1 | 2;                 /* words 54-58 and 64-70 valid */
    w[54] = (uint16_t)d->cyls, w[55] = (uint16_t)d->heads, w[56] = (uint16_t)d->secs;
    w[57] = (uint16_t)chs, w[58] = (uint16_t)(chs >> 16);
    w[60] = (uint16_t)lba28, w[61] = (uint16_t)(lba28 >> 16);
    w[64] = 3;                     /* PIO modes 3 and 4 */
    w[65] = w[66] = w[67] = w[68] = 120;
    w[80] = 0xf0, w[81] = 0x16;    /* ATA/ATAPI-4 to 7 */
    w[82] = 1 << 14 | 1 << 5 | 1;  /* NOP, write cache, SMART */
    w[83] = 1 << 14 | 1 << 13 | 1 << 12 | 1 << 10;   /* FLUSH CACHE EXT, FLUSH CACHE, LBA48 */
    w[84] = 1 << 14;
    w[85] = 1 << 14 | 1 << 5 | 1;
    w[86] = 1 << 13 | 1 << 12 | 1 << 10;
    w[87] = 1 << 14;
    w[93] = 1 | 1 << 14 | 0x2000;
    for (int i = 0; i < 4; i++)
        w[100 + i] = (uint16_t)(d->sectors >> (16 * i));
}

/* With a bus master: DMA in IDENTIFY's capabilities, multiword DMA 0-2 and Ultra DMA 0-5
 * supported, Ultra DMA 5 selected, as QEMU's ide_identify and ide_atapi_identify say. */
static void identify_dma(const struct ide_channel *ch, struct ide_drive *d)
{
    uint16_t *w = d->identify;
    if (!ch->dma)
        return;
    w[49] |= 1 << 8;
    w[53] |= 4;                    /* word 88 valid */
    if (d->cd)
        w[62] = 7;
    w[63] = 7;
    w[88] = 0x3f | 1 << 13;
}

int ide_channel_attach(struct ide_channel *ch, int unit, struct block *bs, bool read_only, bool probed_raw,
                       const char *serial)
{
    if (unit < 0 || unit > 1 || ch->drive[unit].present || block_length(bs) < IDE_SECTOR) {
        int ret = unit >= 0 && unit <= 1 && ch->drive[unit].present ? -EBUSY : -EINVAL;
        block_close(bs);
        return ret;
    }
    pthread_mutex_lock(&ch->lock);
    struct ide_drive *d = &ch->drive[unit];
    d->present = true;
    d->bs = bs;
    d->read_only = read_only || block_read_only(bs);
    d->probed_raw = probed_raw;
    d->sectors = block_length(bs) / IDE_SECTOR;
    /* QEMU's guess for a disk without a partition table to go by: 16 heads, 63 sectors */
    d->heads = 16, d->secs = 63;
    uint64_t cyls = d->sectors / (16 * 63);
    d->cyls = cyls < 2 ? 2 : cyls > 16383 ? 16383 : (unsigned)cyls;
    build_identify(d, unit, serial);
    identify_dma(ch, d);
    reset_channel(ch);
    pthread_mutex_unlock(&ch->lock);
    return 0;
}

struct block *ide_channel_disk(struct ide_channel *ch, int unit, bool *read_only)
{
    if (unit < 0 || unit > 1 || !ch->drive[unit].present || ch->drive[unit].cd)
        return NULL;
    if (read_only)
        *read_only = ch->drive[unit].read_only;
    return ch->drive[unit].bs;
}

struct block *ide_channel_medium(struct ide_channel *ch, int unit)
{
    if (unit < 0 || unit > 1 || !ch->drive[unit].cd)
        return NULL;
    pthread_mutex_lock(&ch->lock);
    struct block *bs = ch->drive[unit].bs;
    pthread_mutex_unlock(&ch->lock);
    return bs;
}

struct block *ide_channel_swap_disk(struct ide_channel *ch, int unit, struct block *bs)
{
    pthread_mutex_lock(&ch->lock);
    struct block *old = ch->drive[unit].bs;
    ch->drive[unit].bs = bs;
    pthread_mutex_unlock(&ch->lock);
    return old;
}

/* IDENTIFY's capacity words stay those of the size the guest was told at power-on, as a disk's
 * would; the range checks follow the image. */
void ide_channel_refresh_disk(struct ide_channel *ch, int unit)
{
    if (!ide_channel_disk(ch, unit, NULL))
        return;
    pthread_mutex_lock(&ch->lock);
    ch->drive[unit].sectors = block_length(ch->drive[unit].bs) / IDE_SECTOR;
    pthread_mutex_unlock(&ch->lock);
}

int ide_channel_attach_cd(struct ide_channel *ch, int unit, struct block *bs, const char *serial)
{
    if (unit < 0 || unit > 1 || ch->drive[unit].present) {
        int ret = unit >= 0 && unit <= 1 ? -EBUSY : -EINVAL;
        block_close(bs);
        return ret;
    }
    pthread_mutex_lock(&ch->lock);
    struct ide_drive *d = &ch->drive[unit];
    d->present = d->cd = d->read_only = true;
    d->bs = bs;
    memset(&d->atapi, 0, sizeof(d->atapi));
    d->atapi.sectors = bs ? block_length(bs) / ATAPI_SECTOR : 0;
    d->atapi.tray_open = false;   /* an empty drive starts with its tray shut, as QEMU's */
    build_identify_packet(d, unit, serial);
    identify_dma(ch, d);
    reset_channel(ch);
    pthread_mutex_unlock(&ch->lock);
    return 0;
}

int ide_channel_change_medium(struct ide_channel *ch, int unit, struct block *bs, bool force)
{
    if (unit < 0 || unit > 1 || !ch->drive[unit].cd) {
        block_close(bs);
        return -ENODEV;
    }
    pthread_mutex_lock(&ch->lock);
    struct ide_drive *d = &ch->drive[unit];
    if (d->atapi.locked && !force) {
        /* the guest holds the tray: ask it to let go, as QEMU does */
        d->atapi.event_eject_request = true;
        pthread_mutex_unlock(&ch->lock);
        block_close(bs);
        return -EBUSY;
    }
    struct block *old = d->bs;
    d->bs = bs;
    d->atapi.locked = d->atapi.locked && !force;
    atapi_change_medium(&d->atapi, bs ? block_length(bs) / ATAPI_SECTOR : 0);
    if (ch->xfer == XFER_ATAPI_IN && cur_drive(ch) == d && ch->xfer_data) {
        /* a read in flight has lost its medium */
        atapi_set_sense(&d->atapi, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
        atapi_finish(ch, d, false);
    }
    pthread_mutex_unlock(&ch->lock);
    block_close(old);
    return 0;
}

bool ide_channel_cd_info(struct ide_channel *ch, int unit, struct ide_cd_info *info)
{
    if (unit < 0 || unit > 1 || !ch->drive[unit].cd)
        return false;
    pthread_mutex_lock(&ch->lock);
    struct ide_drive *d = &ch->drive[unit];
    info->tray_open = d->atapi.tray_open;
    info->locked = d->atapi.locked;
    info->has_medium = d->bs != NULL;
    info->file = d->bs ? block_filename(d->bs) : NULL;
    info->format = d->bs ? block_format_name(d->bs) : NULL;
    pthread_mutex_unlock(&ch->lock);
    return true;
}

void ide_channel_set_tray_cb(struct ide_channel *ch, ide_tray_fn fn, void *opaque)
{
    pthread_mutex_lock(&ch->lock);
    ch->tray_cb = fn, ch->tray_opaque = opaque;
    pthread_mutex_unlock(&ch->lock);
}
