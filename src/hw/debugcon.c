/* isa-debugcon, as QEMU has it: bytes the guest writes to one port go to the host (here stderr),
 * and a read returns 0xe9, by which SeaBIOS (src/hw/serialio.c, qemu_debug_preinit) knows the
 * port is there and sends its debug log to it (port 0x402 in QEMU's builds of SeaBIOS). */
#include "util/log.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void debugcon_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    (void)opaque, (void)off;
    memset(data, 0, size);
    *(uint8_t *)data = 0xe9;
}

static void debugcon_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    (void)opaque, (void)off, (void)size;
    /* one byte at a time, unbuffered: the log must survive the guest's or qkvm's end */
    ssize_t n = write(STDERR_FILENO, data, 1);
    (void)n;
}

static int debugcon_create(struct machine *m, struct kvlist *opts)
{
    uint64_t base = 0xe9;
    const char *s;
    if ((s = keyval_get(opts, "iobase")) && parse_u64(s, 0, 0xffff, &base)) {
        log_error("isa-debugcon: iobase '%s' is not a port number (0-0xffff)", s);
        return -EINVAL;
    }
    int ret = bus_register(&m->pio, base, 1, debugcon_read, debugcon_write, NULL, "isa-debugcon");
    if (ret)
        log_error("isa-debugcon: port 0x%llx is taken", (unsigned long long)base);
    return ret;
}
DEVICE_TYPE("isa-debugcon", debugcon_create)
