/* isa-debug-exit, as QEMU has it: a guest's write of V ends qkvm with status (V << 1) | 1, so a
 * test guest can report success or failure without a shutdown path of its own. */
#include "util/log.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct debug_exit {
    struct machine *m;
};

static void debug_exit_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct debug_exit *d = opaque;
    uint32_t v = 0;
    (void)off;
    memcpy(&v, data, size > 4 ? 4 : size);
    machine_request_stop(d->m, MACHINE_EXIT, (int)(((v << 1) | 1) & 0xff));
}

static int debug_exit_create(struct machine *m, struct kvlist *opts)
{
    uint64_t base = 0x501, len = 2;
    const char *s;
    if ((s = keyval_get(opts, "iobase")) && parse_u64(s, 0, 0xffff, &base)) {
        log_error("isa-debug-exit: iobase '%s' is not a port number (0-0xffff)", s);
        return -EINVAL;
    }
    if ((s = keyval_get(opts, "iosize")) && (parse_u64(s, 1, 4, &len) || (len & (len - 1)))) {
        log_error("isa-debug-exit: iosize '%s' must be 1, 2 or 4", s);
        return -EINVAL;
    }
    struct debug_exit *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->m = m;
    if (machine_add_cleanup(m, free, d))
        return -ENOMEM;
    int ret = bus_register(&m->pio, base, len, NULL, debug_exit_write, d, "isa-debug-exit");
    if (ret) {
        log_error("isa-debug-exit: ports 0x%llx-0x%llx are taken", (unsigned long long)base,
                  (unsigned long long)(base + len - 1));
    }
    return ret;
}
DEVICE_TYPE("isa-debug-exit", debug_exit_create)
