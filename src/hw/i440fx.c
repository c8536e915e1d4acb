/* The i440FX's PAM ("programmable attribute map") registers, as QEMU's hw/pci-host/i440fx.c and
 * SeaBIOS's src/fw/shadow.c use them. The CPUs read the legacy BIOS area from one buffer, the
 * view (m->isa_view, mapped read-only); this file keeps it equal to what each segment's read
 * attribute selects, RAM or ROM, and sends every guest write to RAM when the write attribute
 * allows it. The view needs no accelerator support to switch: KVM and the emulator both see
 * the same read-only region the whole time, only its bytes change. */
#include "hw/i440fx.h"

#include "hw/pci.h"
#include "util/log.h"
#include "vm/firmware.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PAM_RE 1
#define PAM_WE 2

struct i440fx {
    struct machine *m;
    struct pci_device *dev;
    pthread_mutex_t lock;              /* the attributes and the view, against concurrent writes */
    uint8_t attr[I440FX_PAM_SEGMENTS]; /* PAM_RE | PAM_WE per segment */
    uint32_t rom_crc;                  /* of the firmware's part PAM shows: the stream's must match */
};

/* Segment 0 is 0xf0000 (64 KiB, PAM0 bits 5:4); 1-12 are 16 KiB each from 0xc0000. */
static uint64_t pam_seg_base(int s) { return s == 0 ? 0xf0000 : 0xc0000 + (uint64_t)(s - 1) * 0x4000; }
static uint64_t pam_seg_size(int s) { return s == 0 ? 0x10000 : 0x4000; }

static int pam_seg_of(uint64_t addr)
{
    return addr >= 0xf0000 ? 0 : 1 + (int)((addr - 0xc0000) / 0x4000);
}

static uint8_t pam_attr_from_config(const uint8_t *config, int s)
{
    if (s == 0)
        return (config[I440FX_PAM0] >> 4) & 3;
    unsigned k = (unsigned)(s - 1);
    return (config[I440FX_PAM0 + 1 + k / 2] >> ((k & 1) * 4)) & 3;
}

static uint8_t *view_at(struct machine *m, uint64_t addr)
{
    return m->isa_view + (addr - FIRMWARE_VIEW_BASE);
}

/* Fills segment s of the view from what its reads now select. Before RAM stops being shown, the
 * view's bytes go back to RAM: a device's DMA may have written them there directly. */
static void pam_switch_segment(struct i440fx *x, int s, uint8_t old, uint8_t now)
{
    struct machine *m = x->m;
    uint64_t base = pam_seg_base(s), size = pam_seg_size(s);
    if ((old & PAM_RE) == (now & PAM_RE))
        return;
    if (old & PAM_RE)
        memcpy(m->ram + base, view_at(m, base), size);
    if (now & PAM_RE) {
        memcpy(view_at(m, base), m->ram + base, size);
    } else if (base >= 0x100000 - FIRMWARE_ISA_SIZE) {
        memcpy(view_at(m, base), m->isa_rom + (base - (0x100000 - FIRMWARE_ISA_SIZE)), size);
    } else {
        memset(view_at(m, base), 0xff, size);   /* PCI: no option ROM answers there */
    }
    machine_note_dirty(m, base, size);
}

static void i440fx_config_written(struct pci_device *d, unsigned off, unsigned size)
{
    struct i440fx *x = d->opaque;
    if (off >= I440FX_PAM0 + I440FX_PAM_COUNT || off + size <= I440FX_PAM0)
        return;
    pthread_mutex_lock(&x->lock);
    for (int s = 0; s < I440FX_PAM_SEGMENTS; s++) {
        uint8_t now = pam_attr_from_config(d->config, s);
        pam_switch_segment(x, s, x->attr[s], now);
        x->attr[s] = now;
    }
    pthread_mutex_unlock(&x->lock);
}

/* A guest write anywhere in 0xc0000-0xfffff (the view is read-only to the CPUs). */
static void pam_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct i440fx *x = opaque;
    struct machine *m = x->m;
    const uint8_t *src = data;
    pthread_mutex_lock(&x->lock);
    for (unsigned i = 0; i < size;) {
        uint64_t addr = FIRMWARE_VIEW_BASE + off + i;
        int s = pam_seg_of(addr);
        uint64_t seg_end = pam_seg_base(s) + pam_seg_size(s);
        unsigned n = size - i;
        if (addr + n > seg_end)
            n = (unsigned)(seg_end - addr);
        if (x->attr[s] & PAM_WE) {
            memcpy(m->ram + addr, src + i, n);
            if (x->attr[s] & PAM_RE) {
                memcpy(view_at(m, addr), src + i, n);
                machine_note_dirty(m, addr, n);
            }
        }
        i += n;
    }
    pthread_mutex_unlock(&x->lock);
}

/* Reads reach the bus only where no region answers, which the view never leaves: kept for a
 * machine built without one. */
static void pam_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct i440fx *x = opaque;
    pthread_mutex_lock(&x->lock);
    memcpy(data, view_at(x->m, FIRMWARE_VIEW_BASE + off), size);
    pthread_mutex_unlock(&x->lock);
}

/* The PAM and SMRAM registers travel in the host bridge's config space (the "pci" section of
 * slot 0) and the shadowed BIOS in RAM (RAM under 0xc0000-0xfffff is RAM of the stream). The
 * view is derived from both, so this section only makes sure the firmware the view shows where
 * PAM selects ROM is the source's: another SeaBIOS would run on with the source's RAM copy of
 * the old one. */
static const struct vmstate_field i440fx_fields[] = {
    VMSTATE_U32(struct i440fx, rom_crc),
    VMSTATE_END,
};

static int i440fx_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct i440fx *l = live, *s = state;
    if (l->rom_crc != s->rom_crc)
        return *why = "firmware (another BIOS image than the source's)", -EINVAL;
    return 0;
}

/* Every segment shows again what the loaded PAM registers select: RAM from the stream's pages,
 * or the ROM (ones where no ROM is). Runs with the vCPUs paused, after every section is in. */
static void i440fx_vmstate_post_load(void *opaque)
{
    struct i440fx *x = opaque;
    struct machine *m = x->m;
    pthread_mutex_lock(&x->lock);
    for (int s = 0; s < I440FX_PAM_SEGMENTS; s++) {
        uint64_t base = pam_seg_base(s), size = pam_seg_size(s);
        x->attr[s] = pam_attr_from_config(x->dev->config, s);
        if (x->attr[s] & PAM_RE)
            memcpy(view_at(m, base), m->ram + base, size);
        else if (base >= 0x100000 - FIRMWARE_ISA_SIZE)
            memcpy(view_at(m, base), m->isa_rom + (base - (0x100000 - FIRMWARE_ISA_SIZE)), size);
        else
            memset(view_at(m, base), 0xff, size);
    }
    pthread_mutex_unlock(&x->lock);
    /* translated code from the old view is stale */
    machine_note_dirty(m, FIRMWARE_VIEW_BASE, FIRMWARE_VIEW_SIZE);
}

static const struct vmstate_desc i440fx_vmstate = {
    .name = "i440fx", .version = 1, .min_version = 1, .size = sizeof(struct i440fx), .fields = i440fx_fields,
    .check = i440fx_vmstate_check, .post_load = i440fx_vmstate_post_load,
};

static void i440fx_free(void *opaque)
{
    struct i440fx *x = opaque;
    pthread_mutex_destroy(&x->lock);
    free(x);
}

int i440fx_create(struct machine *m)
{
    struct pci_host *h = pci_host_of(m);
    struct pci_device *d = h ? pci_host_device(h, 0) : NULL;
    if (!d || !m->isa_view || !m->isa_rom || m->ram_size < 0x100000) {
        log_error("i440fx: the machine has no PCI host or no firmware view");
        return -ENODEV;
    }
    struct i440fx *x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->m = m;
    x->dev = d;
    pthread_mutex_init(&x->lock, NULL);
    int ret = machine_add_cleanup(m, i440fx_free, x);
    if (ret)
        return ret;
    /* QEMU's identity: Intel's IDs, revision 2, and Red Hat's subsystem IDs by which SeaBIOS
     * (src/fw/paravirt.c, qemu_detect) knows it runs on QEMU. */
    int slot = d->slot;
    pci_device_init(d, "i440fx", 0x8086, 0x1237, 0x060000, 0x02, 0x1af4, 0x1100);
    d->slot = slot;
    d->config[PCI_INTERRUPT_PIN] = 0;
    for (unsigned k = 0; k < I440FX_PAM_COUNT; k++)
        d->wmask[I440FX_PAM0 + k] = 0xff;
    d->wmask[I440FX_PAM0] = 0x30;   /* bits 3:0 of PAM0 are reserved */
    d->config[I440FX_SMRAM] = 0x02;  /* SMRAM closed, C_BASE_SEG 0xa0000 as at reset; no SMM yet */
    d->opaque = x;
    d->config_written = i440fx_config_written;
    ret = bus_register(&m->mmio, FIRMWARE_VIEW_BASE, FIRMWARE_VIEW_SIZE, pam_read, pam_write, x, "pam");
    if (ret) {
        log_error("i440fx: cannot claim the BIOS area: %s", strerror(-ret));
        return ret;
    }
    x->rom_crc = vmstate_crc32(m->isa_rom, FIRMWARE_ISA_SIZE);
    return vmstate_register(m, &i440fx_vmstate, 0, x);
}

static int i440fx_init(struct machine *m)
{
    return m->cfg && m->cfg->type == MACHINE_PC ? i440fx_create(m) : 0;
}
MACHINE_INIT(i440fx_init, INIT_DEVICE, NULL)
