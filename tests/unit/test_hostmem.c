/* The machine's hostmem regions (vm/machine.h machine_add_hostmem) under the software CPU: host
 * memory that appears, moves and disappears in the guest-physical map while a CPU runs, as a
 * RAM-backed PCI BAR (ivshmem's BAR2) does, and the dirty bitmap migration reads from it. Real
 * mode code in RAM moves the region with an OUT (as a guest's BAR write would) and must find it
 * at the new place on its very next access, the old place answering on the MMIO bus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/accel.h"
#include "accel/emu/emu.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"

#define RAM_SIZE (1u << 20)
#define REGION_SIZE 0x4000u
#define OLD_GPA 0x80000u
#define NEW_GPA 0x90000u

static uint8_t *ram, *region;
static struct machine m;
static struct emu_vm *vm;
static int id;

/* what reached the MMIO bus */
static struct {
    int writes;
    uint64_t last_gpa;
    uint8_t last_val;
    int reads;
} bus;

/* the dirty bits taken by OUTs to 0x81 and 0x82, as migration would take them mid-run */
static uint64_t taken[2];

static void on_io(void *opaque, uint16_t port, void *data, unsigned size, bool is_write)
{
    (void)opaque, (void)data, (void)size;
    if (port == 0x80 && is_write)
        assert_int_equal(machine_map_hostmem(&m, id, NEW_GPA), 0);   /* the guest moves the BAR */
    if ((port == 0x81 || port == 0x82) && is_write)
        assert_int_equal(machine_hostmem_dirty(&m, id, &taken[port - 0x81]), 0);
}

static void on_mmio(void *opaque, uint64_t gpa, void *data, unsigned size, bool is_write)
{
    (void)opaque;
    if (is_write) {
        bus.writes++;
        bus.last_gpa = gpa;
        bus.last_val = *(uint8_t *)data;
    } else {
        bus.reads++;
        memset(data, 0xff, size);
    }
}

static struct cpu *cpu_at(const uint8_t *code, size_t len)
{
    static struct cpu *c;
    if (!c) {
        struct emu_env env = { .io = on_io, .mmio = on_mmio };
        c = emu_cpu_create(&m, vm, 0, &env);
        assert_non_null(c);
    }
    memcpy(ram + 0x1000, code, len);
    emu_vm_invalidate(vm, 0x1000, len);
    struct cpu_state s;
    cpu_state_reset(&s, true);
    s.seg[SEG_CS].selector = 0;
    s.seg[SEG_CS].base = 0;
    s.rip = 0x1000;
    emu_cpu_set_state(c, &s);
    return c;
}

static void test_map_move_dirty(void **state)
{
    (void)state;
    static const uint8_t code[] = {
        0xb8, 0x00, 0x80,               /* mov $0x8000, %ax */
        0x8e, 0xd8,                     /* mov %ax, %ds */
        0xc6, 0x06, 0x10, 0x00, 0x5a,   /* movb $0x5a, 0x10: the region at its first place */
        0x8a, 0x1e, 0x20, 0x00,         /* mov 0x20, %bl: what the host put there */
        0xe6, 0x80,                     /* out %al, $0x80: the region moves to 0x90000 */
        0xc6, 0x06, 0x10, 0x00, 0xa5,   /* movb $0xa5, 0x10: the old place is the bus now */
        0x8a, 0x0e, 0x10, 0x00,         /* mov 0x10, %cl */
        0xb8, 0x00, 0x90,               /* mov $0x9000, %ax */
        0x8e, 0xd8,                     /* mov %ax, %ds */
        0xc6, 0x06, 0x30, 0x00, 0x77,   /* movb $0x77, 0x30 */
        0xc6, 0x06, 0x10, 0x10, 0x01,   /* movb $1, 0x1010: the second page */
        0x9a, 0x00, 0x01, 0x00, 0x90,   /* lcall $0x9000, $0x100: code in the region */
        0xe6, 0x81,                     /* out %al, $0x81: the dirty bits are taken */
        0xc6, 0x06, 0x11, 0x00, 0x66,   /* movb $0x66, 0x11: page 0 again, through the TLB */
        0xe6, 0x82,                     /* out %al, $0x82: taken again */
        0xf4,                           /* hlt */
    };
    memset(region, 0, REGION_SIZE);
    region[0x20] = 0x42;
    memcpy(region + 0x100, "\xba\x0d\x60\xcb", 4);   /* mov $0x600d, %dx; lret */
    memset(&bus, 0, sizeof(bus));
    assert_int_equal(machine_map_hostmem(&m, id, OLD_GPA), 0);
    struct cpu *c = cpu_at(code, sizeof(code));
    assert_int_equal(emu_cpu_run(c), EMU_STOP_HLT);
    uint64_t *r = emu_cpu_gpr(c);
    assert_int_equal(region[0x10], 0x5a);
    assert_int_equal(r[3] & 0xff, 0x42);          /* BL */
    assert_int_equal(bus.writes, 1);
    assert_int_equal(bus.last_gpa, OLD_GPA + 0x10);
    assert_int_equal(bus.last_val, 0xa5);
    assert_int_equal(r[1] & 0xff, 0xff);          /* CL: nothing answers there */
    assert_int_equal(region[0x30], 0x77);
    assert_int_equal(region[0x1010], 1);
    assert_int_equal(r[2] & 0xffff, 0x600d);      /* DX: ran from the region */
    assert_int_equal(taken[0], 3);                /* pages 0 and 1 */
    /* the first take re-armed the tracking: a write through a TLB entry made before is seen */
    assert_int_equal(region[0x11], 0x66);
    assert_int_equal(taken[1], 1);

    /* a bus master's write marks page 2; then all is clean */
    assert_int_equal(machine_dma_write(&m, NEW_GPA + 0x2004, "dma", 3), 0);
    assert_memory_equal(region + 0x2004, "dma", 3);
    uint64_t bits = 0;
    assert_int_equal(machine_hostmem_dirty(&m, id, &bits), 0);
    assert_int_equal(bits, 4);
    bits = 0;
    assert_int_equal(machine_hostmem_dirty(&m, id, &bits), 0);
    assert_int_equal(bits, 0);

    static const uint8_t again[] = {
        0xb8, 0x00, 0x90, 0x8e, 0xd8,   /* ds = 0x9000 */
        0xc6, 0x06, 0x11, 0x00, 0x66,   /* movb $0x66, 0x11 */
        0xf4,
    };
    /* Hidden (memory decoding off): the same write reaches the bus, the region keeps its byte. */
    assert_int_equal(machine_unmap_hostmem(&m, id), 0);
    assert_null(machine_gpa_ptr(&m, NEW_GPA + 0x11, 1));
    memset(&bus, 0, sizeof(bus));
    region[0x11] = 0;
    c = cpu_at(again, sizeof(again));
    assert_int_equal(emu_cpu_run(c), EMU_STOP_HLT);
    assert_int_equal(region[0x11], 0);
    assert_int_equal(bus.writes, 1);
    assert_int_equal(bus.last_gpa, NEW_GPA + 0x11);
}

static void test_bad_requests(void **state)
{
    (void)state;
    int other;
    assert_int_equal(machine_add_hostmem(&m, region, 100, &other), -EINVAL);
    assert_int_equal(machine_add_hostmem(&m, region + 1, 4096, &other), -EINVAL);
    assert_int_equal(machine_add_hostmem(&m, NULL, 4096, &other), -EINVAL);
    assert_int_equal(machine_map_hostmem(&m, 0, 0x100000), -EINVAL);    /* RAM is no device region */
    assert_int_equal(machine_map_hostmem(&m, 99, 0x100000), -EINVAL);
    assert_int_equal(machine_map_hostmem(&m, -1, 0x100000), -EINVAL);
    assert_int_equal(machine_map_hostmem(&m, id, 0x90001), -EINVAL);
    assert_int_equal(machine_map_hostmem(&m, id, UINT64_MAX & ~0xfffull), -EINVAL);   /* wraps */
    uint64_t bits;
    assert_int_equal(machine_hostmem_dirty(&m, 0, &bits), -EINVAL);
}

static int setup(void **state)
{
    (void)state;
    ram = aligned_alloc(4096, RAM_SIZE);
    region = aligned_alloc(4096, REGION_SIZE);
    if (!ram || !region)
        return -1;
    memset(ram, 0, RAM_SIZE);
    m.mem[0] = (struct mem_region){ .gpa = 0, .size = 0x80000, .host = ram, .capacity = 0x80000 };
    m.nmem = 1;
    m.ram = ram;
    m.ram_size = RAM_SIZE;
    m.accel = &accel_tcg;
    if (emu_vm_create(&m, &vm))
        return -1;
    m.accel_data = vm;
    return machine_add_hostmem(&m, region, REGION_SIZE, &id);
}

static int teardown(void **state)
{
    (void)state;
    free((void *)m.mem[id].dirty);
    emu_vm_destroy(vm);
    free(ram);
    free(region);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_move_dirty),
        cmocka_unit_test(test_bad_requests),
    };
    return cmocka_run_group_tests_name("hostmem", tests, setup, teardown);
}
