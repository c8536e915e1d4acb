/* The PC machine's PIIX4 power-management function (00:01.3) as SeaBIOS programs it: its
 * identity, PMBA and PMREGMISC placing the ACPI PM block (PM1 status/enable/control, the PM
 * timer), poweroff through PM1a_CNT and the power button's SCI there, disabling the block and a
 * base qkvm cannot decode at (the block goes off), the placement surviving a savevm/loadvm of
 * the device state, and the direct-boot machine's block at 0x600 from the start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <time.h>

#include "hw/acpi_pm.h"
#include "ide_fixture.h"
#include "vm/acpi.h"
#include "vm/vmstate.h"

#define FN 3
#define PM1_PWRBTN 0x0100
#define PM1_SCI_EN 0x0001
#define SLP_S5     (ACPI_S5_SLP_TYP << 10 | 1 << 13)

/* The PM timer answers at port: it is not all ones and it moves. */
static bool decodes(struct vfx *f, uint16_t port)
{
    uint32_t t0 = 0, t1 = 0;
    struct timespec ts = { 0, 3 * 1000 * 1000 };
    bus_dispatch(&f->m.pio, port, &t0, 4, false);
    nanosleep(&ts, NULL);
    bus_dispatch(&f->m.pio, port, &t1, 4, false);
    return t0 != 0xffffffff && t1 != t0;
}

/* What SeaBIOS's piix4_pm_setup writes (src/fw/pciinit.c), with the PM base given. */
static void seabios_setup(struct vfx *f, uint16_t base)
{
    cfg_fn_write(f, 1, FN, 0x3c, 0x109);             /* interrupt line 9 (the pin reads back 1) */
    cfg_fn_write(f, 1, FN, 0x40, base | 1u);
    cfg_fn_write(f, 1, FN, 0x80, 0x01);
    cfg_fn_write(f, 1, FN, 0x90, (base + 0x100u) | 1u);
    cfg_fn_write(f, 1, FN, 0xd0, 0x09u << 16);
}

static void test_identity(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    assert_int_equal(cfg_fn(f, 1, FN, 0), 0x71138086);
    assert_int_equal(cfg_fn(f, 1, FN, 8), 0x06800003);               /* other bridge, revision 3 */
    assert_int_equal((cfg_fn(f, 1, FN, 0xc) >> 16) & 0xff, 0x00);    /* a type-0 function */
    assert_int_equal(cfg_fn(f, 1, FN, 0x2c), 0x11001af4);
    assert_int_equal((cfg_fn(f, 1, FN, 0x3c) >> 8) & 0xff, 1);       /* INTA# */
    assert_int_equal((cfg_fn(f, 1, 0, 0xc) >> 16) & 0xff, 0x80);     /* function 0 says multi-function */
    assert_int_equal(cfg_fn(f, 1, FN, 0x40), 0x00000001);             /* an I/O base, not set yet */
    assert_int_equal(cfg_fn(f, 1, FN, 0x80) & 0xff, 0);
    assert_int_equal(cfg_fn(f, 1, FN, 0x58), 1u << 25);              /* APMC_EN: no SMM to set up */
    cfg_fn_write(f, 1, FN, 0x58, 0);
    assert_int_equal(cfg_fn(f, 1, FN, 0x58), 1u << 25);
    assert_int_equal(cfg_fn(f, 1, 2, 0), 0xffffffff);                 /* still no function 2 */
    /* before the firmware enables it the block decodes nowhere, as on QEMU */
    assert_false(decodes(f, ACPI_PM_TMR));
    assert_int_equal(acpi_pm_base(&f->m), -1);
    /* PMBA: bits 15:6 are the base, bit 0 reads 1, bits 31:16 read 0 */
    cfg_fn_write(f, 1, FN, 0x40, 0xffffffff);
    assert_int_equal(cfg_fn(f, 1, FN, 0x40), 0x0000ffc1);
    assert_int_equal(acpi_pm_base(&f->m), -1);                       /* still off: PMREGMISC */
    vfx_free(f);
}

static void test_seabios_setup(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    seabios_setup(f, ACPI_PM_BASE);
    assert_int_equal(acpi_pm_base(&f->m), ACPI_PM_BASE);
    assert_int_equal(cfg_fn(f, 1, FN, 0x40), ACPI_PM_BASE | 1);
    assert_int_equal(cfg_fn(f, 1, FN, 0x90), (ACPI_PM_BASE + 0x100) | 1);
    assert_int_equal((cfg_fn(f, 1, FN, 0xd0) >> 16) & 0xff, 0x09);
    assert_int_equal(cfg_fn(f, 1, FN, 0x3c) & 0xffff, 0x109);
    /* the PM timer where the FADT says it is: it runs */
    assert_true(decodes(f, ACPI_PM_TMR));
    /* SCI_EN reads set (no SMI handler to hand over from); S5 powers off */
    assert_true(inw(f, ACPI_PM1_CNT) & PM1_SCI_EN);
    assert_int_equal(atomic_load(&f->m.stop), MACHINE_RUNNING);
    outw(f, ACPI_PM1_CNT, SLP_S5);
    assert_int_equal(atomic_load(&f->m.stop), MACHINE_POWEROFF);
    vfx_free(f);
}

static void test_disable_and_move(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    seabios_setup(f, ACPI_PM_BASE);
    /* the power button raises the SCI through the block's enable bit */
    f->m.power_button(&f->m);
    assert_int_equal(vfx_cur->irq[ACPI_SCI_IRQ], 0);                 /* not enabled yet */
    assert_true(inw(f, ACPI_PM1_EVT) & PM1_PWRBTN);
    outw(f, ACPI_PM1_EVT + 2, PM1_PWRBTN);
    assert_int_equal(vfx_cur->irq[ACPI_SCI_IRQ], 1);
    outw(f, ACPI_PM1_EVT, PM1_PWRBTN);                                /* write-one-to-clear */
    assert_int_equal(vfx_cur->irq[ACPI_SCI_IRQ], 0);
    /* PMREGMISC off: nothing answers (ones), S5 is not taken; on again: back */
    cfg_fn_write(f, 1, FN, 0x80, 0);
    assert_int_equal(acpi_pm_base(&f->m), -1);
    assert_false(decodes(f, ACPI_PM_TMR));
    assert_int_equal(inw(f, ACPI_PM1_CNT), 0xffff);
    outw(f, ACPI_PM1_CNT, SLP_S5);
    assert_int_equal(atomic_load(&f->m.stop), MACHINE_RUNNING);
    cfg_fn_write(f, 1, FN, 0x80, 1);
    assert_true(decodes(f, ACPI_PM_TMR));
    /* a base of 0 is unprogrammed, not the DMA controller's ports */
    cfg_fn_write(f, 1, FN, 0x40, 0);
    assert_int_equal(acpi_pm_base(&f->m), -1);
    /* another base (the low bits of the value are not the base's): the block goes off at 0x600
     * and says so; back at 0x600 it answers again */
    cfg_fn_write(f, 1, FN, 0x40, 0xb03f);
    assert_int_equal(cfg_fn(f, 1, FN, 0x40), 0xb001);
    assert_int_equal(acpi_pm_base(&f->m), -1);
    assert_false(decodes(f, ACPI_PM_TMR));
    assert_int_equal(acpi_pm_place(&f->m, 0xb000), -EOPNOTSUPP);
    cfg_fn_write(f, 1, FN, 0x40, ACPI_PM_BASE | 1);
    assert_int_equal(acpi_pm_base(&f->m), ACPI_PM_BASE);
    outw(f, ACPI_PM1_CNT, SLP_S5);
    assert_int_equal(atomic_load(&f->m.stop), MACHINE_POWEROFF);
    vfx_free(f);
}

static void test_vmstate(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    seabios_setup(f, ACPI_PM_BASE);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(vmstate_save(&f->m, &buf, &len), 0);
    vfx_free(f);
    /* a fresh machine, its block not placed, takes the saved placement */
    f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    assert_int_equal(acpi_pm_base(&f->m), -1);
    char why[200] = "";
    assert_int_equal(vmstate_load(&f->m, buf, len, why, sizeof(why)), 0);
    assert_int_equal(acpi_pm_base(&f->m), ACPI_PM_BASE);
    assert_true(decodes(f, ACPI_PM_TMR));
    free(buf);
    vfx_free(f);
}

static void test_direct_machine(void **state)
{
    (void)state;
    struct vfx *f = vfx_new(NULL);
    /* no PIIX there: the block is at the FADT's 0x600 from the start */
    assert_int_equal(acpi_pm_base(&f->m), ACPI_PM_BASE);
    assert_true(decodes(f, ACPI_PM_TMR));
    assert_int_equal(acpi_pm_place(&f->m, ACPI_PM_BASE), 0);
    outw(f, ACPI_PM1_CNT, SLP_S5);
    assert_int_equal(atomic_load(&f->m.stop), MACHINE_POWEROFF);
    vfx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_seabios_setup),
        cmocka_unit_test(test_disable_and_move),
        cmocka_unit_test(test_vmstate),
        cmocka_unit_test(test_direct_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
