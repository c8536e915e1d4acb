/* MC146818 CMOS RTC at ports 0x70/0x71: the host's current UTC time, read fresh on every access,
 * so the guest's clock is right from boot and never drifts from the host's. No alarms, no IRQ 8. */
#include "hw/rtc.h"
#include "vm/machine.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define REG_CENTURY 0x32
#define B_24H 0x02
#define B_BINARY 0x04

static struct rtc {
    atomic_uchar index;
    uint8_t cmos[128];
} rtc;

static uint8_t rtc_encode(unsigned v)
{
    return (rtc.cmos[REG_B] & B_BINARY) ? (uint8_t)v : (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t rtc_hour(unsigned h)
{
    if (rtc.cmos[REG_B] & B_24H)
        return rtc_encode(h);
    unsigned h12 = h % 12 ? h % 12 : 12;
    return (uint8_t)(rtc_encode(h12) | (h >= 12 ? 0x80 : 0));
}

static uint8_t rtc_get(unsigned idx)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    switch (idx) {
    case 0x00: return rtc_encode((unsigned)tm.tm_sec);
    case 0x02: return rtc_encode((unsigned)tm.tm_min);
    case 0x04: return rtc_hour((unsigned)tm.tm_hour);
    case 0x06: return rtc_encode((unsigned)tm.tm_wday + 1);
    case 0x07: return rtc_encode((unsigned)tm.tm_mday);
    case 0x08: return rtc_encode((unsigned)tm.tm_mon + 1);
    case 0x09: return rtc_encode((unsigned)tm.tm_year % 100);
    case REG_CENTURY: return rtc_encode((unsigned)(tm.tm_year + 1900) / 100);
    case REG_A: return rtc.cmos[REG_A] & 0x7f;   /* never "update in progress" */
    case REG_C: return 0;
    case REG_D: return 0x80;                     /* battery good */
    default: return rtc.cmos[idx];
    }
}

static void rtc_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    (void)opaque;
    memset(data, 0xff, size);
    if (off == 1)
        *(uint8_t *)data = rtc_get(atomic_load(&rtc.index) & 0x7f);
}

static void rtc_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    (void)opaque, (void)size;
    uint8_t v = *(const uint8_t *)data;
    if (off == 0) {
        atomic_store(&rtc.index, v);   /* bit 7 masks NMIs; there are none to mask */
        return;
    }
    unsigned idx = atomic_load(&rtc.index) & 0x7f;
    /* time writes are ignored: the host's clock is the clock */
    if (idx == REG_A || idx == REG_B || idx >= 0x0e)
        rtc.cmos[idx] = idx == REG_B ? (v & 0x7f) : v;
}

/* The memory sizes and boot order a PC BIOS reads from CMOS, where QEMU's pc machine puts them
 * (hw/i386/pc.c, pc_cmos_init): SeaBIOS takes RAM size from 0x34/0x35 and 0x5b-0x5d. */
static void rtc_set_pc_fields(const struct machine *m)
{
    uint64_t ram = m->ram_size, low = ram < MACHINE_LOW_RAM_END ? ram : MACHINE_LOW_RAM_END;
    rtc.cmos[0x15] = 640 & 0xff;                 /* base memory, KiB */
    rtc.cmos[0x16] = 640 >> 8;
    uint64_t ext = low > (1 << 20) ? (low >> 10) - 1024 : 0;   /* KiB above 1 MiB */
    if (ext > 0xffff)
        ext = 0xffff;
    rtc.cmos[0x17] = rtc.cmos[0x30] = (uint8_t)ext;
    rtc.cmos[0x18] = rtc.cmos[0x31] = (uint8_t)(ext >> 8);
    uint64_t ext16 = low > (16 << 20) ? (low - (16 << 20)) >> 16 : 0;   /* 64 KiB units above 16 MiB */
    if (ext16 > 0xffff)
        ext16 = 0xffff;
    rtc.cmos[0x34] = (uint8_t)ext16;
    rtc.cmos[0x35] = (uint8_t)(ext16 >> 8);
    uint64_t high = (ram - low) >> 16;           /* 64 KiB units above 4 GiB */
    rtc.cmos[0x5b] = (uint8_t)high;
    rtc.cmos[0x5c] = (uint8_t)(high >> 8);
    rtc.cmos[0x5d] = (uint8_t)(high >> 16);
    rtc.cmos[0x5f] = (uint8_t)(m->ncpus - 1);
    /* QEMU's default boot order "cad": hard disk (2), floppy (1), CD (3); the floppy signature
     * check off (bit 0 of 0x38 clear) */
    rtc.cmos[0x3d] = 0x12;
    rtc.cmos[0x38] = 0x30;
    rtc.cmos[0x14] = 0x06;                       /* equipment: FPU, PS/2 mouse (QEMU's value) */
}

void rtc_cmos_update(struct machine *m, unsigned idx, uint8_t mask, uint8_t val)
{
    (void)m;   /* one RTC per process for now (the state above) */
    if (idx >= 0x0e && idx < sizeof(rtc.cmos))
        rtc.cmos[idx] = (uint8_t)((rtc.cmos[idx] & ~mask) | (val & mask));
}

static int rtc_init(struct machine *m)
{
    memset(&rtc, 0, sizeof(rtc));
    rtc.cmos[REG_A] = 0x26;
    rtc.cmos[REG_B] = B_24H;
    if (m->cfg && m->cfg->type == MACHINE_PC)
        rtc_set_pc_fields(m);
    return bus_register(&m->pio, 0x70, 2, rtc_read, rtc_write, NULL, "rtc");
}
MACHINE_INIT(rtc_init, INIT_DEVICE, NULL)
