/* The 8042 keyboard controller, as far as a guest without a keyboard needs it: a status port
 * that says "nothing to read", and the CPU reset line (command 0xfe), which guests use to reboot. */
#include "vm/machine.h"

#include <string.h>

#define I8042_DATA 0x60
#define I8042_CMD  0x64
#define CMD_PULSE_RESET 0xfe
#define STATUS_SYSFLAG 0x04   /* self-test passed, as after POST */

static void i8042_data_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    (void)opaque, (void)off;
    memset(data, 0, size);
}

static void i8042_status_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    (void)opaque, (void)off;
    memset(data, 0, size);
    *(uint8_t *)data = STATUS_SYSFLAG;
}

static void i8042_cmd_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    (void)off, (void)size;
    if (*(const uint8_t *)data == CMD_PULSE_RESET)
        machine_request_stop(opaque, MACHINE_RESET, 0);
}

static int i8042_init(struct machine *m)
{
    int ret = bus_register(&m->pio, I8042_DATA, 1, i8042_data_read, NULL, m, "i8042-data");
    return ret ? ret : bus_register(&m->pio, I8042_CMD, 1, i8042_status_read, i8042_cmd_write, m, "i8042-cmd");
}
MACHINE_INIT(i8042_init, INIT_DEVICE, NULL)
