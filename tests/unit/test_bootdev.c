/* -boot (vm/bootdev.c): QEMU's letters into the CMOS nibbles SeaBIOS reads on QEMU (boot_init:
 * 0x3d low nibble first, high nibble second, 0x38 high nibble third), and the option's mistakes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "vm/bootdev.h"
#include "vm/machine.h"

static void expect_cmos(const char *order, uint8_t r3d, uint8_t r38)
{
    uint8_t a = 0xee, b = 0xee;
    bootdev_cmos(order, &a, &b);
    assert_int_equal(a, r3d);
    assert_int_equal(b, r38);
}

static void test_cmos(void **state)
{
    (void)state;
    expect_cmos(NULL, 0x12, 0x30);   /* QEMU's default "cad": disk, floppy, CD */
    expect_cmos("", 0x12, 0x30);
    expect_cmos("cad", 0x12, 0x30);
    expect_cmos("d", 0x03, 0x00);
    expect_cmos("dc", 0x23, 0x00);
    expect_cmos("ncd", 0x24, 0x30);  /* network 4 */
    expect_cmos("b", 0x01, 0x00);    /* both floppies are "floppy" */
}

static void test_parse(void **state)
{
    (void)state;
    static struct machine_config mc;
    char why[200];
    memset(&mc, 0, sizeof(mc));
    assert_int_equal(bootdev_parse("d", &mc, why, sizeof(why)), 0);
    assert_string_equal(mc.boot_order, "d");
    assert_int_equal(bootdev_parse("order=dc,once=c,menu=on,strict=off", &mc, why, sizeof(why)), 0);
    assert_string_equal(mc.boot_order, "dc");
    assert_string_equal(mc.boot_once, "c");
    assert_true(mc.boot_menu);
    assert_int_equal(bootdev_parse("menu=off", &mc, why, sizeof(why)), 0);
    assert_false(mc.boot_menu);
    assert_string_equal(mc.boot_order, "dc");   /* untouched by a later -boot without order= */
    const char *bad[] = { "x", "cc", "cdan", "order=", "once=", "menu=maybe", "strict=2", "splash=a.bmp", "order=c,d=1" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = 0;
        assert_int_equal(bootdev_parse(bad[i], &mc, why, sizeof(why)), -EINVAL);
        assert_true(why[0] != 0);
        assert_null(strchr(why, '\n'));
    }
    assert_string_equal(mc.boot_order, "dc");   /* a refused -boot changes nothing it did not check */
    /* what QEMU accepts: an empty -boot (nothing), a key given twice (the last one) */
    assert_int_equal(bootdev_parse("", &mc, why, sizeof(why)), 0);
    assert_string_equal(mc.boot_order, "dc");
    assert_int_equal(bootdev_parse("order=c,order=d", &mc, why, sizeof(why)), 0);
    assert_string_equal(mc.boot_order, "d");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmos),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
