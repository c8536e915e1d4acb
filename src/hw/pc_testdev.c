/* pc-testdev, QEMU's ISA test device for kvm-unit-tests (hw/misc/pc-testdev.c): a 32-bit
 * scratch register at ports 0xe0-0xe3 (and byte-wise at 0xe8-0xeb) that string I/O tests read
 * back, a "flush page" port at 0xe4, ports 0x2000-0x2017 that set ISA interrupt line N to the
 * written value's truth, and 64 KiB of scratch MMIO at 0xff000000 for the emulator's MMIO tests. */
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TESTDEV_IOMEM_BASE 0xff000000ull
#define TESTDEV_IOMEM_LEN  0x10000u
#define TESTDEV_IRQ_PORT   0x2000
#define TESTDEV_IRQ_LINES  24

struct pc_testdev {
    struct machine *m;
    uint32_t data;                      /* the scratch register */
    uint8_t iomem[TESTDEV_IOMEM_LEN];
};

/* an access of size bytes at byte offset off (0-3) of the scratch register */
static void testdev_data_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct pc_testdev *t = opaque;
    uint8_t b[8] = { 0 };
    memcpy(b, &t->data, 4);
    memset(data, 0, size);
    memcpy(data, b + (off & 3), size > 4 - (off & 3) ? 4 - (off & 3) : size);
}

static void testdev_data_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pc_testdev *t = opaque;
    uint8_t b[4];
    memcpy(b, &t->data, 4);
    memcpy(b + (off & 3), data, size > 4 - (off & 3) ? 4 - (off & 3) : size);
    memcpy(&t->data, b, 4);
}

/* QEMU drops the host mapping of the page so KVM must fault it in again; nothing to do here */
static void testdev_flush_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    (void)opaque, (void)off, (void)data, (void)size;
}

static void testdev_irq_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pc_testdev *t = opaque;
    uint8_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= ((const uint8_t *)data)[i];
    machine_set_irq(t->m, (unsigned)off, v != 0);
}

static void testdev_iomem_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct pc_testdev *t = opaque;
    memset(data, 0, size);
    if (off < TESTDEV_IOMEM_LEN)
        memcpy(data, t->iomem + off, size > TESTDEV_IOMEM_LEN - off ? TESTDEV_IOMEM_LEN - off : size);
}

static void testdev_iomem_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pc_testdev *t = opaque;
    if (off < TESTDEV_IOMEM_LEN)
        memcpy(t->iomem + off, data, size > TESTDEV_IOMEM_LEN - off ? TESTDEV_IOMEM_LEN - off : size);
}

/* The scratch register and MMIO; the interrupt lines it drives are the interrupt controllers'
 * input levels, which their own sections carry. */
static const struct vmstate_field testdev_fields[] = {
    VMSTATE_U32(struct pc_testdev, data),
    VMSTATE_U8_ARRAY(struct pc_testdev, iomem, TESTDEV_IOMEM_LEN),
    VMSTATE_END,
};

static const struct vmstate_desc testdev_vmstate = {
    .name = "pc-testdev", .version = 1, .min_version = 1, .size = sizeof(struct pc_testdev), .fields = testdev_fields,
};

static int pc_testdev_create(struct machine *m, struct kvlist *opts)
{
    (void)opts;   /* no properties: machine.c refuses any given */
    struct pc_testdev *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->m = m;
    if (machine_add_cleanup(m, free, t)) {
        free(t);
        return -ENOMEM;
    }
    int ret = bus_register(&m->pio, 0xe0, 4, testdev_data_read, testdev_data_write, t, "pc-testdev");
    if (!ret)
        ret = bus_register(&m->pio, 0xe4, 4, NULL, testdev_flush_write, t, "pc-testdev-flush");
    if (!ret)
        ret = bus_register(&m->pio, 0xe8, 4, testdev_data_read, testdev_data_write, t, "pc-testdev-byte");
    if (!ret)
        ret = bus_register(&m->pio, TESTDEV_IRQ_PORT, TESTDEV_IRQ_LINES, NULL, testdev_irq_write, t, "pc-testdev-irq");
    if (!ret)
        ret = bus_register(&m->mmio, TESTDEV_IOMEM_BASE, TESTDEV_IOMEM_LEN, testdev_iomem_read, testdev_iomem_write, t,
                           "pc-testdev-iomem");
    if (ret) {
        log_error("pc-testdev: its ports or MMIO at 0x%llx are taken", TESTDEV_IOMEM_BASE);
        return ret;
    }
    return vmstate_register(m, &testdev_vmstate, 0, t);
}
DEVICE_TYPE("pc-testdev", pc_testdev_create)
