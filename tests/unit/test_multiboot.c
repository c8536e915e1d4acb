/* The multiboot header parser (vm/multiboot.c): kernels built in memory, one property each, and
 * the -initrd module list splitting. What the guest sees is compared with QEMU's in
 * tests/integration/multiboot.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "vm/cpu_state.h"
#include "vm/machine.h"
#include "vm/memory.h"
#include "vm/multiboot.h"

static uint8_t img[16384];

static void w32(size_t off, uint32_t v) { memcpy(img + off, &v, 4); }
static void w16(size_t off, uint16_t v) { memcpy(img + off, &v, 2); }

/* a multiboot header at off with flags; with the a.out flag, the five address fields */
static void put_header(size_t off, uint32_t flags)
{
    w32(off, MULTIBOOT_HEADER_MAGIC);
    w32(off + 4, flags);
    w32(off + 8, (uint32_t)-(MULTIBOOT_HEADER_MAGIC + flags));
}

static void put_aout(size_t off, uint32_t header_addr, uint32_t load, uint32_t load_end, uint32_t bss_end,
                     uint32_t entry)
{
    put_header(off, MULTIBOOT_FLAG_AOUT);
    w32(off + 12, header_addr);
    w32(off + 16, load);
    w32(off + 20, load_end);
    w32(off + 24, bss_end);
    w32(off + 28, entry);
}

/* an ELF32 i386 header with n program headers at 52, each PT_LOAD (off, paddr, filesz, memsz) */
static void put_elf(int n)
{
    memcpy(img, "\x7f" "ELF\x01\x01\x01", 7);
    w16(16, 2);
    w16(18, 3);
    w32(24, 0x100000);
    w32(28, 52);
    w16(42, 32);
    w16(44, (uint16_t)n);
}

static void put_phdr(int i, uint32_t type, uint32_t off, uint32_t paddr, uint32_t filesz, uint32_t memsz)
{
    size_t p = 52 + (size_t)i * 32;
    w32(p, type);
    w32(p + 4, off);
    w32(p + 12, paddr);
    w32(p + 16, filesz);
    w32(p + 20, memsz);
}

static int parse(size_t len, struct multiboot_image *mi, const char **why)
{
    return multiboot_parse(img, len, mi, why);
}

static void test_no_header(void **state)
{
    (void)state;
    struct multiboot_image mi;
    const char *why;
    memset(img, 0, sizeof(img));
    assert_int_equal(parse(sizeof(img), &mi, &why), 0);
    assert_int_equal(parse(0, &mi, &why), 0);
    /* a wrong checksum is not a header */
    put_header(64, MULTIBOOT_FLAG_AOUT);
    w32(72, 0);
    assert_int_equal(parse(sizeof(img), &mi, &why), 0);
    /* past the first 8 KiB: not looked at */
    memset(img, 0, sizeof(img));
    put_aout(8192, 0x100000 + 8192, 0x100000, 0, 0, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), 0);
    /* not 4-byte aligned: not looked at */
    memset(img, 0, sizeof(img));
    put_aout(66, 0x100000 + 66, 0x100000, 0, 0, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), 0);
}

static void test_aout(void **state)
{
    (void)state;
    struct multiboot_image mi;
    const char *why;
    memset(img, 0, sizeof(img));
    /* the header at file offset 32 is at 0x100020: the file from 0 loads at 0x100000 */
    put_aout(32, 0x100020, 0x100000, 0x101000, 0x102000, 0x100040);
    assert_int_equal(parse(sizeof(img), &mi, &why), 1);
    assert_int_equal(mi.header_off, 32);
    assert_int_equal(mi.entry, 0x100040);
    assert_int_equal(mi.nseg, 1);
    assert_int_equal(mi.seg[0].file_off, 0);
    assert_int_equal(mi.seg[0].file_len, 0x1000);
    assert_int_equal(mi.seg[0].addr, 0x100000);
    assert_int_equal(mi.seg[0].mem_len, 0x2000);
    assert_int_equal(mi.low, 0x100000);
    assert_int_equal(mi.high, 0x102000);
    /* load_end 0: to the end of the file; bss_end 0: no bss; a file that starts after byte 0 */
    put_aout(32, 0x100010, 0x100000, 0, 0, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), 1);
    assert_int_equal(mi.seg[0].file_off, 16);
    assert_int_equal(mi.seg[0].file_len, sizeof(img) - 16);
    assert_int_equal(mi.seg[0].mem_len, sizeof(img) - 16);
}

static void test_aout_bad(void **state)
{
    (void)state;
    struct multiboot_image mi;
    const char *why;
    memset(img, 0, sizeof(img));
    /* the header found, its address fields cut off by the end of the file */
    put_aout(32, 0x100020, 0x100000, 0, 0, 0x100000);
    assert_int_equal(parse(32 + 20, &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "truncated multiboot header"));
    put_aout(32, 0x0ff000, 0x100000, 0, 0, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "header_addr"));
    /* the header 0x100 bytes into the image, but only 32 bytes into the file */
    put_aout(32, 0x100100, 0x100000, 0, 0, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "before the beginning"));
    put_aout(32, 0x100020, 0x100000, 0x0fffff, 0, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "load_end_addr lies below"));
    put_aout(32, 0x100020, 0x100000, 0x100000 + sizeof(img) + 1, 0, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "truncated"));
    put_aout(32, 0x100020, 0x100000, 0x101000, 0x100800, 0x100000);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "bss_end_addr"));
    /* a load address near 4 GiB with the rest of the file after it */
    put_aout(32, 0xfffff020, 0xfffff000, 0, 0, 0xfffff000);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "4 GiB"));
}

static void test_elf(void **state)
{
    (void)state;
    struct multiboot_image mi;
    const char *why;
    memset(img, 0, sizeof(img));
    put_elf(3);
    put_phdr(0, 1, 0x1000, 0x100000, 0x1000, 0x1000);
    put_phdr(1, 4, 0, 0, 0, 0x100);                      /* PT_NOTE: skipped */
    put_phdr(2, 1, 0x2000, 0x200000, 0x800, 0x3000);     /* with bss */
    put_header(0x1000, 0);
    assert_int_equal(parse(sizeof(img), &mi, &why), 1);
    assert_int_equal(mi.nseg, 2);
    assert_int_equal(mi.seg[1].addr, 0x200000);
    assert_int_equal(mi.seg[1].file_len, 0x800);
    assert_int_equal(mi.seg[1].mem_len, 0x3000);
    assert_int_equal(mi.entry, 0x100000);
    assert_int_equal(mi.low, 0x100000);
    assert_int_equal(mi.high, 0x203000);
}

static void test_elf_bad(void **state)
{
    (void)state;
    struct multiboot_image mi;
    const char *why;
    memset(img, 0, sizeof(img));
    put_header(0x1000, 0);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "not an ELF"));
    put_elf(2);
    put_phdr(0, 1, 0x1000, 0x100000, 0x1000, 0x1000);
    put_phdr(1, 1, 0x2000, 0x100800, 0x800, 0x800);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "overlap"));
    put_phdr(1, 1, 0x2000, 0x200000, 0x900, 0x800);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "more file bytes"));
    put_phdr(1, 1, 0x3f00, 0x200000, 0x200, 0x800);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "past the end of the file"));
    put_phdr(1, 1, 0x2000, 0xffffff00, 0x100, 0x200);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "4 GiB"));
    /* ending exactly at 4 GiB (the fuzzer's find: the end did not fit in 32 bits) */
    put_phdr(1, 1, 0x2000, 0x10000, 0, 0xffff0000);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "4 GiB"));
    /* program headers past the end of the file */
    w32(28, sizeof(img) - 40);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "program headers"));
    w32(28, 52);
    w16(42, 16);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "shorter than 32"));
    w16(42, 32);
    put_phdr(0, 4, 0, 0, 0, 0);
    put_phdr(1, 6, 0, 0, 0, 0);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "no loadable segment"));
    /* more segments than the loader takes */
    put_elf(40);
    for (int i = 0; i < 40; i++)
        put_phdr(i, 1, 0x2000, 0x100000 + (uint32_t)i * 0x1000, 0x10, 0x10);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "32"));
    /* x86-64 and big-endian images */
    put_elf(1);
    img[4] = 2;
    w16(18, 62);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "64-bit"));
    img[4] = 1;
    img[5] = 2;
    w16(18, 3);
    assert_int_equal(parse(sizeof(img), &mi, &why), -EINVAL);
    assert_non_null(strstr(why, "little-endian"));
}

static void test_module_text(void **state)
{
    (void)state;
    char t[64];
    assert_int_equal(multiboot_module_text("a x=1,b", 0, NULL, 0), 2);
    assert_int_equal(multiboot_module_text("a x=1,b", 0, t, sizeof(t)), 5);
    assert_string_equal(t, "a x=1");
    assert_int_equal(multiboot_module_text("a x=1,b", 1, t, sizeof(t)), 1);
    assert_string_equal(t, "b");
    /* ",," is a comma inside a module's text, as QEMU's option values */
    assert_int_equal(multiboot_module_text("a,,b,c", 0, NULL, 0), 2);
    assert_int_equal(multiboot_module_text("a,,b,c", 0, t, sizeof(t)), 3);
    assert_string_equal(t, "a,b");
    assert_int_equal(multiboot_module_text("a,,b,c", 1, t, sizeof(t)), 1);
    assert_string_equal(t, "c");
    assert_int_equal(multiboot_module_text("", 0, NULL, 0), 1);
    assert_int_equal(multiboot_module_text("abcdef", 0, t, 4), -E2BIG);
}

static void test_load_outside_ram(void **state)
{
    (void)state;
    static struct machine m;
    struct machine_config cfg = { .kernel = "k" };
    memset(&m, 0, sizeof(m));
    m.cfg = &cfg;
    m.ncpus = 1;
    assert_int_equal(memory_create_ram(&m, 16ull << 20, false), 0);
    struct multiboot_image mi;
    const char *why;
    struct cpu_state s;
    memset(img, 0, sizeof(img));
    put_aout(32, 0x2000020, 0x2000000, 0, 0, 0x2000000);   /* at 32 MiB; RAM is 16 MiB */
    assert_int_equal(parse(sizeof(img), &mi, &why), 1);
    assert_int_equal(multiboot_load(&m, &mi, img, sizeof(img), "k", &s), -EINVAL);
    put_aout(32, 0x820, 0x800, 0, 0, 0x800);              /* over the loader's GDT at 0x500 */
    assert_int_equal(parse(sizeof(img), &mi, &why), 1);
    assert_int_equal(multiboot_load(&m, &mi, img, sizeof(img), "k", &s), -EINVAL);
    put_aout(32, 0x9f020, 0x9f000, 0, 0, 0x9f000);         /* into the EBDA and legacy hole */
    assert_int_equal(parse(sizeof(img), &mi, &why), 1);
    assert_int_equal(multiboot_load(&m, &mi, img, sizeof(img), "k", &s), -EINVAL);
    memory_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_header),
        cmocka_unit_test(test_aout),
        cmocka_unit_test(test_aout_bad),
        cmocka_unit_test(test_elf),
        cmocka_unit_test(test_elf_bad),
        cmocka_unit_test(test_module_text),
        cmocka_unit_test(test_load_outside_ram),
    };
    return cmocka_run_group_tests_name("multiboot", tests, NULL, NULL);
}
