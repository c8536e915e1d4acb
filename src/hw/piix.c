/* The PIIX3 of the PC machine (-M pc), where QEMU puts it: the PCI-to-ISA bridge at 00:01.0
 * (8086:7000) and the IDE controller at 00:01.1 (8086:7010) in legacy mode, its two channels at
 * the ISA ports and IRQs 14 and 15 (hw/ide.c), its bus master at BAR4 (hw/bmdma.c). SeaBIOS finds the disks by these IDs
 * (src/hw/ata.c, ata_init's PCI table) and routes PCI interrupts through the bridge's PIRQ
 * registers. "-device ide-hd,drive=..." (what -hda and a bare image become on -M pc) puts a disk
 * on a channel. */
#include "hw/bmdma.h"
#include "hw/drive.h"
#include "hw/ide.h"
#include "hw/pci.h"
#include "hw/rtc.h"

#include "block/block.h"
#include "util/evloop.h"
#include "vm/bootorder.h"
#include "vm/control.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define PIIX_SLOT      1
#define PIIX_PIRQ_ROUTE 0x60   /* PIRQA-D routing, 0x80: disabled (82371SB datasheet 2.2.9) */

struct piix {
    struct pci_device isa, ide;
    struct machine *m;
    struct ide_channel *ch[2];
    int tray_fd;               /* eventfd: the guest moved a tray (vCPU thread -> event loop) */
    atomic_int tray_moved[4];  /* per place: 0 nothing, 1 closed, 2 opened */
    bool used[4];              /* bus * 2 + unit */
    bool cd[4];                /* a CD drive there */
    /* a disk's -drive as given, kept to open its image again (the migration hand-over) */
    struct drive_spec spec[4];
    bool has_spec[4];
    bool inactive[4];          /* opened without its lock: the image is another process's */
    struct block *cd_first[4]; /* the medium a CD drive's -drive opened (spec[] opens it again) */
};

void ide_cd_name(int index, char *buf, size_t n)
{
    snprintf(buf, n, "ide%d-cd%d", index / 2, index % 2);
}

void ide_cd_qdev(int index, char *buf, size_t n)
{
    snprintf(buf, n, "/machine/unattached/device[%d]", 20 + index);
}

/* DEVICE_TRAY_MOVED for what the guest did (START STOP UNIT): emitted on the event loop, where
 * the monitor's clients live; the vCPU only leaves a note. */
static void piix_tray_moved(void *opaque, struct ide_channel *ch, int unit, bool open)
{
    struct piix *p = opaque;
    int index = (ch == p->ch[1]) * 2 + unit;
    uint64_t one = 1;
    atomic_store(&p->tray_moved[index], open ? 2 : 1);
    if (write(p->tray_fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: a wake-up is pending anyway */
    }
}

static void piix_on_tray(void *opaque, uint32_t events)
{
    struct piix *p = opaque;
    uint64_t v;
    (void)events;
    if (read(p->tray_fd, &v, sizeof(v)) < 0)
        return;
    for (int i = 0; i < 4; i++) {
        int moved = atomic_exchange(&p->tray_moved[i], 0);
        if (moved)
            ide_cd_emit_tray(p->m, i, moved == 2);
    }
}

void ide_cd_emit_tray(struct machine *m, int index, bool open)
{
    char name[32], qdev[64], data[200];
    ide_cd_name(index, name, sizeof(name));
    ide_cd_qdev(index, qdev, sizeof(qdev));
    snprintf(data, sizeof(data), "{\"device\": \"%s\", \"id\": \"%s\", \"tray-open\": %s}", name, qdev,
             open ? "true" : "false");
    machine_emit_event(m, "DEVICE_TRAY_MOVED", data);
}

static void piix_free(void *opaque)
{
    struct piix *p = opaque;
    if (p->tray_fd >= 0) {
        if (p->m->loop)
            evloop_del(p->m->loop, p->tray_fd);
        close(p->tray_fd);
    }
    for (int i = 0; i < 4; i++)
        if (p->has_spec[i])
            drive_spec_free(&p->spec[i]);
    free(p);
}

static int piix_create(struct machine *m)
{
    struct piix *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->m = m;
    p->tray_fd = -1;
    int ret = machine_add_cleanup(m, piix_free, p);
    if (ret) {
        free(p);
        return ret;
    }
    pci_device_init(&p->isa, "piix3", 0x8086, 0x7000, 0x060100, 0, 0x1af4, 0x1100);
    p->isa.config[PCI_INTERRUPT_PIN] = 0;
    for (int i = 0; i < 4; i++) {
        p->isa.config[PIIX_PIRQ_ROUTE + i] = 0x80;
        p->isa.wmask[PIIX_PIRQ_ROUTE + i] = 0x8f;
    }
    /* prog-if 0x80: bus-master capable, both channels in legacy (compatibility) mode, which
     * the guest cannot switch off (bits 0 and 2 read-only) */
    pci_device_init(&p->ide, "piix3-ide", 0x8086, 0x7010, 0x010180, 0, 0x1af4, 0x1100);
    p->ide.config[PCI_INTERRUPT_PIN] = 0;
    /* IDETIM (0x40, 0x42) and friends: bit 15 of each IDETIM enables its channel. SeaBIOS sets
     * them, and Linux's ata_piix ignores a channel whose bit reads clear (piix_enable_bits). */
    for (int i = 0x40; i < 0x48; i++)
        p->ide.wmask[i] = 0xff;
    p->ide.opaque = p;
    if ((ret = pci_register_device(m, &p->isa, PIIX_SLOT)) ||
        (ret = pci_register_function(m, &p->ide, PIIX_SLOT, 1)))
        return ret;
    if ((ret = ide_channel_create(m, IDE_PRIMARY_BASE, IDE_PRIMARY_CTL, IDE_PRIMARY_IRQ, &p->ch[0])) ||
        (ret = ide_channel_create(m, IDE_SECONDARY_BASE, IDE_SECONDARY_CTL, IDE_SECONDARY_IRQ, &p->ch[1])) ||
        (ret = bmdma_create(m, &p->ide, p->ch)))
        return ret;
    if (m->loop) {
        if ((p->tray_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
            return -errno;
        if ((ret = evloop_add(m->loop, p->tray_fd, EPOLLIN, piix_on_tray, p)))
            return ret;
        for (int i = 0; i < 2; i++)
            ide_channel_set_tray_cb(p->ch[i], piix_tray_moved, p);
    }
    return 0;
}

static int piix_init(struct machine *m)
{
    return m->cfg && m->cfg->type == MACHINE_PC ? piix_create(m) : 0;
}
/* after the PCI host, before any device that takes the first free slot */
MACHINE_INIT(piix_init, INIT_BUS + 1, NULL)

static struct piix *piix_of(struct machine *m)
{
    struct pci_host *h = pci_host_of(m);
    struct pci_device *fn = h ? pci_host_function(h, PIIX_SLOT, 1) : NULL;
    return fn && fn->opaque && !strcmp(fn->name, "piix3-ide") ? fn->opaque : NULL;
}

int ide_channel_find(struct machine *m, int bus, struct ide_channel **out)
{
    struct piix *p = piix_of(m);
    if (!p || bus < 0 || bus > 1)
        return -ENODEV;
    *out = p->ch[bus];
    return 0;
}

/* The i-th disk in place order: its place index, or -1. */
static int ide_disk_place(struct piix *p, int i)
{
    for (int place = 0; p && place < 4; place++)
        if (ide_channel_disk(p->ch[place / 2], place % 2, NULL) && i-- == 0)
            return place;
    return -1;
}

int ide_disk_count(struct machine *m)
{
    struct piix *p = piix_of(m);
    int n = 0;
    while (ide_disk_place(p, n) >= 0)
        n++;
    return n;
}

struct block *ide_disk_get(struct machine *m, int i, bool *read_only, char *name, size_t n)
{
    struct piix *p = piix_of(m);
    int place = ide_disk_place(p, i);
    if (place < 0)
        return NULL;
    if (name)
        snprintf(name, n, "ide%d-hd%d", place / 2, place % 2);
    return ide_channel_disk(p->ch[place / 2], place % 2, read_only);
}

void ide_disk_refresh(struct machine *m, int i)
{
    struct piix *p = piix_of(m);
    int place = ide_disk_place(p, i);
    if (place >= 0)
        ide_channel_refresh_disk(p->ch[place / 2], place % 2);
}

/* The image at an IDE place: a disk's, or a CD drive's medium. */
static struct block *ide_place_block(struct piix *p, int place)
{
    return p->cd[place] ? ide_channel_medium(p->ch[place / 2], place % 2)
                        : ide_channel_disk(p->ch[place / 2], place % 2, NULL);
}

int ide_disk_inactivate_all(struct machine *m)
{
    struct piix *p = piix_of(m);
    int ret = ide_disk_flush_all(m);
    for (int place = 0; p && place < 4 && !ret; place++) {
        struct block *bs = ide_place_block(p, place);   /* a CD's too, as QEMU inactivates every image */
        if (bs && !p->inactive[place]) {
            block_release_lock(bs);
            p->inactive[place] = true;
        }
    }
    return ret;
}

/* A CD drive's medium opened again with its lock, in place of the one without: the medium of its
 * -drive from that -drive, one the monitor put in since (change) as it was opened; an empty
 * drive has nothing to take. The guest sees no media change: it is the same image. */
static int ide_cd_activate(struct piix *p, int place, char *why, size_t n)
{
    struct block *cur = ide_channel_medium(p->ch[place / 2], place % 2);
    if (!cur) {
        p->inactive[place] = false;
        return 0;
    }
    bool first = cur == p->cd_first[place] && p->has_spec[place];
    struct block_open_opts o = { 0 };
    if (first)
        o = p->spec[place].open;
    else
        block_parse_format(block_format_name(cur), &o.format);
    o.read_only = true;
    o.no_lock = false;
    struct block *bs;
    char err[BLOCK_ERR_MAX];
    int ret = block_open(first ? p->spec[place].file : block_filename(cur), &o, &bs, err);
    if (ret) {
        snprintf(why, n, "%s", err);
        return ret;
    }
    block_close(ide_channel_swap_disk(p->ch[place / 2], place % 2, bs));
    p->cd_first[place] = first ? bs : NULL;
    p->inactive[place] = false;
    return 0;
}

int ide_disk_activate_all(struct machine *m, char *why, size_t n)
{
    struct piix *p = piix_of(m);
    for (int place = 0; p && place < 4; place++) {
        if (p->inactive[place] && p->cd[place]) {
            int ret = ide_cd_activate(p, place, why, n);
            if (ret)
                return ret;
            continue;
        }
        if (!p->inactive[place] || !p->has_spec[place])
            continue;
        struct block_open_opts o = p->spec[place].open;
        struct block *bs;
        char err[BLOCK_ERR_MAX];
        int ret = block_open(p->spec[place].file, &o, &bs, err);
        if (ret) {
            snprintf(why, n, "%s", err);
            return ret;
        }
        block_close(ide_channel_swap_disk(p->ch[place / 2], place % 2, bs));
        p->inactive[place] = false;
        ide_channel_refresh_disk(p->ch[place / 2], place % 2);
    }
    return 0;
}

int ide_disk_flush_all(struct machine *m)
{
    int ret = 0;
    bool ro = true;
    struct block *bs;
    for (int i = 0; (bs = ide_disk_get(m, i, &ro, NULL, 0)); i++) {
        int r = ro ? 0 : block_flush(bs);
        if (r && !ret)
            ret = r;
    }
    return ret;
}

/* -drive options (hw/drive.h), and what an IDE disk cannot be: one line naming the problem,
 * -EINVAL. */
static int ide_parse_drive(const char *spec, struct drive_spec *d)
{
    int ret = drive_spec_parse(spec, d);
    if (ret)
        return ret;
    if (d->itf && strcmp(d->itf, "ide") && strcmp(d->itf, "none")) {
        log_error("-drive %s: if=%s on an IDE disk", spec, d->itf);
        return -EINVAL;
    }
    if (d->index > 3) {
        log_error("-drive %s: index %d is not 0-3 (two IDE channels, two disks each)", spec, d->index);
        return -EINVAL;
    }
    return 0;
}

/* A CD drive at IDE place index, its medium opened read-only (a CD is read-only whatever
 * readonly= says, as QEMU's ide-cd); a medium that is not a whole number of 2048-byte sectors
 * keeps its whole sectors. */
static int ide_cd_attach(struct piix *p, int index, struct drive_spec *d, const char *spec)
{
    struct block *bs = NULL;
    char err[BLOCK_ERR_MAX];
    int ret;
    bool o_no_lock = p->m->cfg && p->m->cfg->incoming;
    if (d->file) {
        struct block_open_opts o = d->open;
        o.read_only = true;
        o.no_lock = o_no_lock;
        if ((ret = block_open(d->file, &o, &bs, err))) {
            log_error("%s", err);
            return ret;
        }
    }
    if ((ret = ide_channel_attach_cd(p->ch[index / 2], index % 2, bs, d->has_serial ? d->serial : NULL))) {
        log_error("-drive %s: %s", spec, strerror(-ret));
        return ret;
    }
    p->used[index] = true;
    p->cd[index] = true;
    /* a destination's medium is the source's until the stream is in, as a disk's: kept with
     * its -drive so that ide_disk_activate_all opens it again with the lock */
    p->cd_first[index] = bs;
    p->inactive[index] = bs && o_no_lock;
    return 0;
}

/* -device ide-hd|ide-cd,drive=SPEC[,bus=ide.0|ide.1][,unit=0|1]: without bus/unit, the drive's
 * index=, else the first free place (QEMU's order: primary master, primary slave, secondary
 * master, secondary slave). media=cdrom makes a CD drive whichever of the two was named, as
 * QEMU's -drive does. */
static int ide_device_create(struct machine *m, struct kvlist *opts, bool cd_asked)
{
    struct piix *p = piix_of(m);
    if (!p) {
        log_error("%s: this machine has no IDE controller (it comes with -M pc)", cd_asked ? "ide-cd" : "ide-hd");
        return -ENODEV;
    }
    const char *spec = keyval_get(opts, "drive"), *bus = keyval_get(opts, "bus"), *unit_s = keyval_get(opts, "unit");
    if (!spec) {
        log_error("ide-hd: needs drive= (a -drive id)");
        return -EINVAL;
    }
    int index = -1;
    uint64_t u = 0;
    if (bus) {
        if (strcmp(bus, "ide.0") && strcmp(bus, "ide.1")) {
            log_error("ide-hd: bus '%s' is not ide.0 or ide.1", bus);
            return -EINVAL;
        }
        if (unit_s && parse_u64(unit_s, 0, 1, &u)) {
            log_error("ide-hd: unit '%s' is not 0 or 1", unit_s);
            return -EINVAL;
        }
        index = (bus[4] - '0') * 2 + (int)u;
        if (!unit_s && p->used[index])
            index++;
        if (index > 3 || (index & 2) != (bus[4] - '0') * 2) {
            log_error("ide-hd: bus %s is full", bus);
            return -EBUSY;
        }
    }
    struct drive_spec d;
    int ret = ide_parse_drive(spec, &d);
    if (!ret && index < 0)
        index = d.index;
    for (int i = 0; !ret && index < 0 && i < 4; i++)
        if (!p->used[i])
            index = i;
    bool cd = !ret && (cd_asked || (d.media && !strcmp(d.media, "cdrom")));
    if (!ret && d.media && !strcmp(d.media, "disk") && cd_asked) {
        log_error("-drive %s: media=disk on an ide-cd", spec);
        ret = -EINVAL;
    }
    if (!ret && !cd && !d.file) {
        log_error("-drive %s: no file= given", spec);
        ret = -EINVAL;
    }
    if (!ret && (index < 0 || p->used[index])) {
        log_error("-drive %s: %s", spec, index < 0 ? "the four IDE places are taken" : "that IDE place is taken");
        ret = -EBUSY;
    }
    if (!ret) {
        char path[64];
        snprintf(path, sizeof(path), "/pci@i0cf8/ide@1,1/drive@%d/disk@%d", index / 2, index % 2);
        ret = bootorder_take(m, opts, cd_asked ? "ide-cd" : "ide-hd", path);
    }
    struct block *bs = NULL;
    char err[BLOCK_ERR_MAX];
    if (cd && !ret) {
        if ((ret = ide_cd_attach(p, index, &d, spec)))
            goto out;
        if (!d.file) {   /* an empty drive: nothing to open again */
            drive_spec_free(&d);
            return 0;
        }
        p->spec[index] = d;   /* the drive's now, for ide_cd_activate */
        p->has_spec[index] = true;
        return 0;
    }
    /* an incoming migration's disk is the source's until the stream is in: no lock until
     * ide_disk_activate_all opens it again (docs/migration.md) */
    struct block_open_opts o = d.open;
    o.no_lock = m->cfg->incoming;
    if (!ret && (ret = block_open(d.file, &o, &bs, err)))
        log_error("%s", err);
    /* QEMU's automatic BIOS translation (hw/block/hd-geometry.c): LBA once the disk has more
     * than 1024 cylinders of 16 heads and 63 sectors, so INT 13h's CHS reaches past 504 MiB */
    bool lba_trans = !ret && block_length(bs) / IDE_SECTOR / (16 * 63) > 1024;
    bool probed_raw = !ret && d.open.format == BLOCK_FMT_AUTO && !strcmp(block_format_name(bs), "raw");
    if (probed_raw)
        log_warn("%s: no format= given, probing guessed raw: writes of another format's header to sector 0"
                 " will be refused (give format=raw)", d.file);
    if (!ret && (ret = ide_channel_attach(p->ch[index / 2], index % 2, bs, d.open.read_only, probed_raw,
                                          d.has_serial ? d.serial : NULL)))
        log_error("-drive %s: %s", spec, ret == -EINVAL ? "the image is smaller than one sector" : strerror(-ret));
    if (!ret) {
        p->used[index] = true;
        p->inactive[index] = m->cfg->incoming;
        p->spec[index] = d;
        p->has_spec[index] = true;
        rtc_cmos_update(m, RTC_CMOS_DISK_TRANSLATION, (uint8_t)(3 << (2 * index)), (uint8_t)(lba_trans << (2 * index)));
        return 0;
    }
out:
    drive_spec_free(&d);
    return ret;
}

static int ide_hd_create(struct machine *m, struct kvlist *opts)
{
    return ide_device_create(m, opts, false);
}
DEVICE_TYPE("ide-hd", ide_hd_create)

static int ide_cd_create(struct machine *m, struct kvlist *opts)
{
    return ide_device_create(m, opts, true);
}
DEVICE_TYPE("ide-cd", ide_cd_create)
