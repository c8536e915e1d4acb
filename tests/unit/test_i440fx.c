/* The PC machine's host bridge and CMOS as SeaBIOS sees them: the i440FX's IDs, and its PAM
 * registers steering reads and writes of 0xc0000-0xfffff between RAM and the firmware ROM (the
 * fixture's 64 KiB firmware is all 0xf4, so ROM reads are recognisable). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "hw/i440fx.h"
#include "virtio_fixture.h"

static uint8_t view(struct vfx *f, uint64_t addr)
{
    uint8_t *p = machine_gpa_ptr(&f->m, addr, 1);   /* what a CPU's read finds */
    assert_non_null(p);
    return *p;
}

static void cpu_write(struct vfx *f, uint64_t addr, uint8_t v)
{
    assert_int_equal(bus_dispatch(&f->m.mmio, addr, &v, 1, true), 0);
}

static void test_identity(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    assert_int_equal(vfx_cfg_read(f, 0, 0, 4), 0x12378086);
    assert_int_equal(vfx_cfg_read(f, 0, 0x2c, 4), 0x11001af4);   /* SeaBIOS's "running on QEMU" */
    assert_int_equal(vfx_cfg_read(f, 0, I440FX_SMRAM, 1), 0x02);
    vfx_free(f);
}

static void test_pam(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    /* at reset: ROM at 0xf0000, nothing (ones) at 0xc0000 and 0xe0000 (a 64 KiB image) */
    assert_int_equal(view(f, 0xffff0), 0xf4);
    assert_int_equal(view(f, 0xc0000), 0xff);
    assert_int_equal(view(f, 0xe0000), 0xff);
    cpu_write(f, 0xf0000, 0x11);   /* to ROM: dropped */
    assert_int_equal(view(f, 0xf0000), 0xf4);
    assert_int_equal(f->m.ram[0xf0000], 0);
    /* write-only RAM (PAM0 = 0x20): reads still ROM, the write lands in RAM */
    vfx_cfg_write(f, 0, I440FX_PAM0, 0x20, 1);
    cpu_write(f, 0xf0000, 0x22);
    assert_int_equal(view(f, 0xf0000), 0xf4);
    assert_int_equal(f->m.ram[0xf0000], 0x22);
    /* read/write RAM: the view shows RAM, writes show at once */
    vfx_cfg_write(f, 0, I440FX_PAM0, 0x30, 1);
    assert_int_equal(view(f, 0xf0000), 0x22);
    cpu_write(f, 0xf0001, 0x33);
    assert_int_equal(view(f, 0xf0001), 0x33);
    assert_true(vfx_cur->dirty_bytes > 0);   /* translated code from there is dropped */
    /* read-only RAM (0x10): reads RAM, writes dropped */
    vfx_cfg_write(f, 0, I440FX_PAM0, 0x10, 1);
    cpu_write(f, 0xf0001, 0x44);
    assert_int_equal(view(f, 0xf0001), 0x33);
    assert_int_equal(f->m.ram[0xf0001], 0x33);
    /* back to ROM */
    vfx_cfg_write(f, 0, I440FX_PAM0, 0x00, 1);
    assert_int_equal(view(f, 0xf0001), 0xf4);
    /* the 16 KiB segments: PAM1's high nibble is 0xc4000, its low one 0xc0000 */
    vfx_cfg_write(f, 0, I440FX_PAM0 + 1, 0x30, 1);
    cpu_write(f, 0xc4000, 0x55);
    cpu_write(f, 0xc0000, 0x66);
    assert_int_equal(view(f, 0xc4000), 0x55);
    assert_int_equal(view(f, 0xc0000), 0xff);
    assert_int_equal(f->m.ram[0xc0000], 0);
    /* a write straddling two segments goes to each as its own attribute says */
    uint16_t w = 0x7788;
    assert_int_equal(bus_dispatch(&f->m.mmio, 0xc3fff, &w, 2, true), 0);
    assert_int_equal(f->m.ram[0xc3fff], 0);
    assert_int_equal(view(f, 0xc4000), 0x77);
    /* a bus master's write follows PAM too: RAM where enabled, dropped on ROM */
    assert_int_equal(machine_dma_write(&f->m, 0xc4001, "\x99", 1), 0);
    assert_int_equal(view(f, 0xc4001), 0x99);
    assert_int_equal(machine_dma_write(&f->m, 0xfffffff0ull, "\x99", 1), -EFAULT);
    /* SeaBIOS's shadowing: everything RAM, the BIOS copied down from the high alias, then read */
    for (unsigned r = 0; r < I440FX_PAM_COUNT; r++)
        vfx_cfg_write(f, 0, I440FX_PAM0 + r, r ? 0x33 : 0x30, 1);
    const uint8_t *high = machine_gpa_ptr(&f->m, 0x100000000ull - 0x10000, 0x10000);
    for (uint64_t a = 0; a < 0x10000; a += 8) {
        uint64_t q;
        memcpy(&q, high + a, 8);
        assert_int_equal(bus_dispatch(&f->m.mmio, 0xf0000 + a, &q, 8, true), 0);
    }
    vfx_cfg_write(f, 0, I440FX_PAM0, 0x10, 1);
    assert_memory_equal(machine_gpa_ptr(&f->m, 0xf0000, 0x10000), high, 0x10000);
    vfx_free(f);
}

static uint8_t cmos(struct vfx *f, uint8_t idx)
{
    uint8_t v = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, 0x70, &idx, 1, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, 0x71, &v, 1, false), 0);
    return v;
}

static void test_cmos(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    assert_int_equal(cmos(f, 0x34) | cmos(f, 0x35) << 8, (64 - 16) * 16);   /* 64 KiB units above 16 MiB */
    assert_int_equal(cmos(f, 0x30) | cmos(f, 0x31) << 8, 63 * 1024);        /* KiB above 1 MiB */
    assert_int_equal(cmos(f, 0x15) | cmos(f, 0x16) << 8, 640);
    assert_int_equal(cmos(f, 0x5b) | cmos(f, 0x5c) | cmos(f, 0x5d), 0);
    assert_int_equal(cmos(f, 0x5f), 0);                                     /* one CPU */
    assert_int_equal(cmos(f, 0x3d), 0x12);                                  /* QEMU's "cad" */
    vfx_free(f);
    /* 5 GiB: 3 GiB below the hole, 2 GiB above 4 GiB */
    f = vfx_new_machine(NULL, 5ull << 30, MACHINE_PC);
    assert_int_equal(cmos(f, 0x34) | cmos(f, 0x35) << 8, ((3ull << 30) - (16 << 20)) >> 16);
    assert_int_equal(cmos(f, 0x5b) | cmos(f, 0x5c) << 8 | cmos(f, 0x5d) << 16, (2ull << 30) >> 16);
    vfx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_pam),
        cmocka_unit_test(test_cmos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
