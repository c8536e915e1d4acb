/* MC146818 CMOS RTC at ports 0x70/0x71: the host's current UTC time, read fresh on every access,
 * so the guest's clock is right from boot and never drifts from the host's. No alarms, no IRQ 8. */
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

static int rtc_init(struct machine *m)
{
    memset(&rtc, 0, sizeof(rtc));
    rtc.cmos[REG_A] = 0x26;
    rtc.cmos[REG_B] = B_24H;
    return bus_register(&m->pio, 0x70, 2, rtc_read, rtc_write, NULL, "rtc");
}
MACHINE_INIT(rtc_init, INIT_DEVICE, NULL)
