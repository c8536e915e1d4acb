/* A boot timer like Firecracker's: the guest writes the magic byte 123 to port 0x440 (for
 * instance from its /init) and qkvm prints how long the boot took, measured from exec. */
#include "util/clock.h"
#include "util/log.h"
#include "vm/machine.h"

#define BOOT_TIMER_PORT  0x440
#define BOOT_TIMER_MAGIC 123

static void boot_timer_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    (void)opaque, (void)off, (void)size;
    if (*(const uint8_t *)data == BOOT_TIMER_MAGIC) {
        unsigned long long us = (unsigned long long)clock_since_start_us();
        log_info("guest boot time: %llu us (%llu ms) since qkvm started", us, us / 1000);
    }
}

static int boot_timer_init(struct machine *m)
{
    return bus_register(&m->pio, BOOT_TIMER_PORT, 1, NULL, boot_timer_write, NULL, "boot-timer");
}
MACHINE_INIT(boot_timer_init, INIT_DEVICE, NULL)
