/* A whole machine built by machine_create with a fake accelerator: real RAM, buses, PCI host and
 * -device lines, but no CPU. The fake records interrupt lines and MSIs; the test plays the
 * guest through bus_dispatch (ports 0xcf8/0xcfc, ECAM, BARs) and writes rings into RAM.
 * Shared by test_pci, test_virtio_*. */
#ifndef QKVM_TESTS_VIRTIO_FIXTURE_H
#define QKVM_TESTS_VIRTIO_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "hw/pci.h"
#include "hw/virtio/virtio.h"
#include "util/parse.h"
#include "vm/machine.h"

#define FX_MAX_MSI 256

struct vfx {
    struct machine m;
    struct machine_config cfg;
    struct accel_ops ops;
    char bios[64];
    int irq[32];                        /* level of each GSI */
    int irq_edges;                      /* 0 -> 1 transitions */
    struct { uint64_t addr; uint32_t data; } msi[FX_MAX_MSI];
    int nmsi;
    uint64_t dirty_bytes;               /* what mem_written reported */
};

static struct vfx *vfx_cur;

static int vfx_ok_m(struct machine *m) { (void)m; return 0; }
static void vfx_void_m(struct machine *m) { (void)m; }
static int vfx_ok_v(struct vcpu *v) { (void)v; return 0; }
static void vfx_void_v(struct vcpu *v) { (void)v; }
static int vfx_set_state(struct vcpu *v, const struct cpu_state *s) { (void)v, (void)s; return 0; }
static int vfx_set_irq(struct machine *m, unsigned gsi, int level)
{
    (void)m;
    if (gsi < 32) {
        if (level && !vfx_cur->irq[gsi])
            vfx_cur->irq_edges++;
        vfx_cur->irq[gsi] = level;
    }
    return 0;
}
static int vfx_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    (void)m;
    if (vfx_cur->nmsi < FX_MAX_MSI) {
        vfx_cur->msi[vfx_cur->nmsi].addr = addr;
        vfx_cur->msi[vfx_cur->nmsi].data = data;
        vfx_cur->nmsi++;
    }
    return 0;
}
static void vfx_mem_written(struct machine *m, uint64_t gpa, uint64_t len)
{
    (void)m, (void)gpa;
    vfx_cur->dirty_bytes += len;
}

/* devices: NULL-terminated -device strings, e.g. "virtio-rng-pci,addr=3". type: the board
 * (MACHINE_PC maps the 64 KiB image as its firmware). */
static inline struct vfx *vfx_new_machine(const char *const *devices, uint64_t ram, enum machine_type type)
{
    struct vfx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vfx_cur = f;
    f->ops = (struct accel_ops){
        .name = "fake", .vm_create = vfx_ok_m, .vm_destroy = vfx_void_m, .vcpu_create = vfx_ok_v,
        .vcpu_destroy = vfx_void_v, .vcpu_set_state = vfx_set_state, .set_irq = vfx_set_irq,
        .send_msi = vfx_send_msi, .mem_written = vfx_mem_written,
    };
    /* machine_create boots something: a 64 KiB "firmware" of HLTs, never run */
    snprintf(f->bios, sizeof(f->bios), "/tmp/qkvm-vfx-%d.bin", (int)getpid());
    FILE *b = fopen(f->bios, "wb");
    assert_non_null(b);
    for (int i = 0; i < 65536; i++)
        fputc(0xf4, b);
    fclose(b);
    f->cfg = (struct machine_config){ .type = type, .ram_size = ram, .ncpus = 1, .serial = "none",
                                      .bios = f->bios, .accel = &f->ops };
    for (int i = 0; devices && devices[i]; i++)
        assert_int_equal(keyval_parse(devices[i], "driver", &f->cfg.devices[f->cfg.ndevices++]), 0);
    int ret = machine_create(&f->m, &f->cfg);
    assert_int_equal(ret, 0);
    return f;
}

static inline struct vfx *vfx_new_ram(const char *const *devices, uint64_t ram)
{
    return vfx_new_machine(devices, ram, MACHINE_DIRECT);
}

static inline struct vfx *vfx_new(const char *const *devices)
{
    return vfx_new_ram(devices, 64ull << 20);
}

static inline void vfx_free(struct vfx *f)
{
    machine_destroy(&f->m);
    for (int i = 0; i < f->cfg.ndevices; i++)
        keyval_free(&f->cfg.devices[i]);
    unlink(f->bios);
    free(f);
    vfx_cur = NULL;
}

/* configuration mechanism #1 */
static inline uint32_t vfx_cfg_read(struct vfx *f, int slot, unsigned off, unsigned size)
{
    uint32_t a = 0x80000000u | (unsigned)slot << 11 | (off & 0xfc), v = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcfc + (off & 3), &v, size, false), 0);
    return v;
}

static inline void vfx_cfg_write(struct vfx *f, int slot, unsigned off, uint32_t v, unsigned size)
{
    uint32_t a = 0x80000000u | (unsigned)slot << 11 | (off & 0xfc);
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcfc + (off & 3), &v, size, true), 0);
}

static inline uint64_t vfx_mmio_read(struct vfx *f, uint64_t addr, unsigned size)
{
    uint64_t v = 0;
    bus_dispatch(&f->m.mmio, addr, &v, size, false);
    return v;
}

static inline void vfx_mmio_write(struct vfx *f, uint64_t addr, uint64_t v, unsigned size)
{
    bus_dispatch(&f->m.mmio, addr, &v, size, true);
}

static inline struct virtio_dev *vfx_virtio(struct vfx *f, int slot)
{
    struct pci_device *d = pci_host_device(pci_host_of(&f->m), slot);
    assert_non_null(d);
    return d->opaque;
}

/* Where BAR idx of slot decodes (64-bit BARs whole). */
static inline uint64_t vfx_bar(struct vfx *f, int slot, int idx)
{
    uint64_t lo = vfx_cfg_read(f, slot, 0x10 + 4 * (unsigned)idx, 4);
    uint64_t a = lo & ~0xfull;
    if (lo & 4)
        a |= (uint64_t)vfx_cfg_read(f, slot, 0x14 + 4 * (unsigned)idx, 4) << 32;
    return a;
}

/* --- a guest-side virtio driver, enough for the tests --- */
struct vdrv {
    struct vfx *f;
    int slot;
    uint64_t bar;           /* BAR 4 */
    uint64_t msix;          /* BAR 1 */
};

static inline void vdrv_common_write(struct vdrv *d, unsigned off, uint64_t v, unsigned size)
{
    vfx_mmio_write(d->f, d->bar + off, v, size);
}

static inline uint64_t vdrv_common_read(struct vdrv *d, unsigned off, unsigned size)
{
    return vfx_mmio_read(d->f, d->bar + off, size);
}

/* Resets, negotiates features (what the device offers, masked by want), sets FEATURES_OK;
 * returns the status read back. */
static inline uint8_t vdrv_negotiate(struct vdrv *d, uint64_t want)
{
    vdrv_common_write(d, 20, 0, 1);
    vdrv_common_write(d, 20, 1 | 2, 1);
    vdrv_common_write(d, 0, 0, 4);
    uint64_t feat = vdrv_common_read(d, 4, 4);
    vdrv_common_write(d, 0, 1, 4);
    feat |= vdrv_common_read(d, 4, 4) << 32;
    feat &= want;
    vdrv_common_write(d, 8, 0, 4);
    vdrv_common_write(d, 12, (uint32_t)feat, 4);
    vdrv_common_write(d, 8, 1, 4);
    vdrv_common_write(d, 12, (uint32_t)(feat >> 32), 4);
    vdrv_common_write(d, 20, 1 | 2 | 8, 1);
    return (uint8_t)vdrv_common_read(d, 20, 1);
}

static inline void vdrv_setup_queue(struct vdrv *d, unsigned q, uint16_t size, uint64_t desc, uint64_t avail,
                                    uint64_t used)
{
    vdrv_common_write(d, 22, q, 2);
    vdrv_common_write(d, 24, size, 2);
    vdrv_common_write(d, 32, desc, 8);
    vdrv_common_write(d, 40, (uint32_t)avail, 4);
    vdrv_common_write(d, 44, (uint32_t)(avail >> 32), 4);
    vdrv_common_write(d, 48, used, 8);
    vdrv_common_write(d, 28, 1, 2);
}

static inline struct vdrv vdrv_open(struct vfx *f, int slot)
{
    struct vdrv d = { f, slot, vfx_bar(f, slot, 4), vfx_bar(f, slot, 1) };
    return d;
}

/* --- a split ring the test writes as a driver would --- */
struct gring {
    struct machine *m;
    uint16_t num;
    uint64_t desc, avail, used;
    uint16_t avail_idx, used_seen;
};

static inline void *gptr(struct machine *m, uint64_t gpa, uint64_t len)
{
    void *p = machine_gpa_ptr(m, gpa, len);
    assert_non_null(p);
    return p;
}

/* Rings at base: descriptors, then the available ring, then the used ring 4 KiB-aligned. */
static inline struct gring gring_init(struct machine *m, uint16_t num, uint64_t base)
{
    struct gring r = { m, num, base, base + 16ull * num, 0, 0, 0 };
    r.used = (r.avail + 6 + 2ull * num + 4095) & ~4095ull;
    memset(gptr(m, base, r.used + 6 + 8ull * num - base), 0, r.used + 6 + 8ull * num - base);
    return r;
}

static inline void gring_desc(struct gring *r, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    struct virtq_desc d = { addr, len, flags, next };
    memcpy(gptr(r->m, r->desc + 16ull * i, 16), &d, 16);
}

static inline void gring_publish(struct gring *r, uint16_t head)
{
    uint16_t *a = gptr(r->m, r->avail, 6 + 2ull * r->num);
    a[2 + r->avail_idx % r->num] = head;
    r->avail_idx++;
    __atomic_store_n(&a[1], r->avail_idx, __ATOMIC_RELEASE);
}

static inline void gring_set_avail_idx(struct gring *r, uint16_t idx)
{
    uint16_t *a = gptr(r->m, r->avail, 6 + 2ull * r->num);
    r->avail_idx = idx;
    a[1] = idx;
}

static inline uint16_t gring_used_idx(struct gring *r)
{
    uint16_t *u = gptr(r->m, r->used, 4);
    return __atomic_load_n(&u[1], __ATOMIC_ACQUIRE);
}

/* The next used element: 1 and its id/len, or 0 when none is new. */
static inline int gring_take_used(struct gring *r, uint32_t *id, uint32_t *len)
{
    if (gring_used_idx(r) == r->used_seen)
        return 0;
    uint32_t *e = gptr(r->m, r->used + 4 + 8ull * (r->used_seen % r->num), 8);
    *id = e[0];
    *len = e[1];
    r->used_seen++;
    return 1;
}

/* used_event (in the available ring) and avail_event (in the used ring), for EVENT_IDX */
static inline void gring_set_used_event(struct gring *r, uint16_t v)
{
    uint16_t *a = gptr(r->m, r->avail, 6 + 2ull * r->num);
    a[2 + r->num] = v;
}

static inline uint16_t gring_avail_event(struct gring *r)
{
    uint8_t *u = gptr(r->m, r->used, 6 + 8ull * r->num);
    uint16_t v;
    memcpy(&v, u + 4 + 8ull * r->num, 2);
    return v;
}

#endif
