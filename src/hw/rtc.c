/* MC146818 CMOS RTC at ports 0x70/0x71: the host's current UTC time, read fresh on every access,
 * so the guest's clock is right from boot and never drifts from the host's. No alarms, no IRQ 8. */
#include "hw/rtc.h"

#include "vm/bootdev.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define REG_CENTURY 0x32
#define B_24H 0x02
#define B_BINARY 0x04

struct rtc {
    atomic_uchar index;
    uint8_t cmos[128];
};

static uint8_t rtc_encode(const struct rtc *r, unsigned v)
{
    return (r->cmos[REG_B] & B_BINARY) ? (uint8_t)v : (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t rtc_hour(const struct rtc *r, unsigned h)
{
    if (r->cmos[REG_B] & B_24H)
        return rtc_encode(r, h);
    unsigned h12 = h % 12 ? h % 12 : 12;
    return (uint8_t)(rtc_encode(r, h12) | (h >= 12 ? 0x80 : 0));
}

static uint8_t rtc_get(const struct rtc *r, unsigned idx)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    switch (idx) {
    case 0x00: return rtc_encode(r, (unsigned)tm.tm_sec);
    case 0x02: return rtc_encode(r, (unsigned)tm.tm_min);
    case 0x04: return rtc_hour(r, (unsigned)tm.tm_hour);
    case 0x06: return rtc_encode(r, (unsigned)tm.tm_wday + 1);
    case 0x07: return rtc_encode(r, (unsigned)tm.tm_mday);
    case 0x08: return rtc_encode(r, (unsigned)tm.tm_mon + 1);
    case 0x09: return rtc_encode(r, (unsigned)tm.tm_year % 100);
    case REG_CENTURY: return rtc_encode(r, (unsigned)(tm.tm_year + 1900) / 100);
    case REG_A: return r->cmos[REG_A] & 0x7f;   /* never "update in progress" */
    case REG_C: return 0;
    case REG_D: return 0x80;                     /* battery good */
    default: return r->cmos[idx];
    }
}

static void rtc_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct rtc *r = opaque;
    memset(data, 0xff, size);
    if (off == 1)
        *(uint8_t *)data = rtc_get(r, atomic_load(&r->index) & 0x7f);
}

static void rtc_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct rtc *r = opaque;
    (void)size;
    uint8_t v = *(const uint8_t *)data;
    if (off == 0) {
        atomic_store(&r->index, v);   /* bit 7 masks NMIs; there are none to mask */
        return;
    }
    unsigned idx = atomic_load(&r->index) & 0x7f;
    /* time writes are ignored: the host's clock is the clock */
    if (idx == REG_A || idx == REG_B || idx >= 0x0e)
        r->cmos[idx] = idx == REG_B ? (v & 0x7f) : v;
}

/* The memory sizes and boot order a PC BIOS reads from CMOS, where QEMU's pc machine puts them
 * (hw/i386/pc.c, pc_cmos_init): SeaBIOS takes RAM size from 0x34/0x35 and 0x5b-0x5d. */
static void rtc_set_pc_fields(struct rtc *r, const struct machine *m)
{
    uint64_t ram = m->ram_size, low = ram < MACHINE_LOW_RAM_END ? ram : MACHINE_LOW_RAM_END;
    r->cmos[0x15] = 640 & 0xff;                 /* base memory, KiB */
    r->cmos[0x16] = 640 >> 8;
    uint64_t ext = low > (1 << 20) ? (low >> 10) - 1024 : 0;   /* KiB above 1 MiB */
    if (ext > 0xffff)
        ext = 0xffff;
    r->cmos[0x17] = r->cmos[0x30] = (uint8_t)ext;
    r->cmos[0x18] = r->cmos[0x31] = (uint8_t)(ext >> 8);
    uint64_t ext16 = low > (16 << 20) ? (low - (16 << 20)) >> 16 : 0;   /* 64 KiB units above 16 MiB */
    if (ext16 > 0xffff)
        ext16 = 0xffff;
    r->cmos[0x34] = (uint8_t)ext16;
    r->cmos[0x35] = (uint8_t)(ext16 >> 8);
    uint64_t high = (ram - low) >> 16;           /* 64 KiB units above 4 GiB */
    r->cmos[0x5b] = (uint8_t)high;
    r->cmos[0x5c] = (uint8_t)(high >> 8);
    r->cmos[0x5d] = (uint8_t)(high >> 16);
    r->cmos[0x5f] = (uint8_t)(m->ncpus - 1);
    /* -boot's order (once= for the first boot), QEMU's default "cad": hard disk (2), floppy
     * (1), CD (3); the floppy signature check off (bit 0 of 0x38 clear) */
    const struct machine_config *mc = m->cfg;
    bootdev_cmos(!mc ? NULL : mc->boot_once[0] ? mc->boot_once : mc->boot_order, &r->cmos[0x3d], &r->cmos[0x38]);
    r->cmos[0x14] = 0x06;                       /* equipment: FPU, PS/2 mouse (QEMU's value) */
}

/* CMOS and the index register; the time itself is the host's, read on every access. */
static const struct vmstate_field rtc_fields[] = {
    VMSTATE_U8(struct rtc, index),
    VMSTATE_U8_ARRAY(struct rtc, cmos, 128),
    VMSTATE_END,
};

static const struct vmstate_desc rtc_vmstate = {
    .name = "rtc", .version = 1, .min_version = 1, .size = sizeof(struct rtc), .fields = rtc_fields,
};

void rtc_cmos_update(struct machine *m, unsigned idx, uint8_t mask, uint8_t val)
{
    struct rtc *r = m->rtc;
    if (r && idx >= 0x0e && idx < sizeof(r->cmos))
        r->cmos[idx] = (uint8_t)((r->cmos[idx] & ~mask) | (val & mask));
}

static int rtc_init(struct machine *m)
{
    struct rtc *r = calloc(1, sizeof(*r));
    if (!r || machine_add_cleanup(m, free, r))
        return -ENOMEM;
    m->rtc = r;
    r->cmos[REG_A] = 0x26;
    r->cmos[REG_B] = B_24H;
    if (m->cfg && m->cfg->type == MACHINE_PC)
        rtc_set_pc_fields(r, m);
    int ret = bus_register(&m->pio, 0x70, 2, rtc_read, rtc_write, r, "rtc");
    return ret ? ret : vmstate_register(m, &rtc_vmstate, 0, r);
}
MACHINE_INIT(rtc_init, INIT_DEVICE, NULL)
