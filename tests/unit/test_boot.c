/* The boot loader, the e820 map and the ACPI tables, on a machine with real RAM but no
 * accelerator: what the guest will find in memory, checked byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm/acpi.h"
#include "vm/boot.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"
#include "vm/memory.h"

static struct machine *machine_with_ram(uint64_t size, int ncpus, const struct machine_config *cfg)
{
    static struct machine m;
    memset(&m, 0, sizeof(m));
    m.cfg = cfg;
    m.ncpus = ncpus;
    assert_int_equal(memory_create_ram(&m, size, false), 0);
    return &m;
}

static void test_e820(void **state)
{
    (void)state;
    struct boot_e820 e[16];
    struct machine *m = machine_with_ram(256ull << 20, 1, NULL);
    int n = boot_e820_map(m, e, 16);
    assert_int_equal(n, 4);
    assert_int_equal(e[0].addr, 0);
    assert_int_equal(e[0].type, 1);
    assert_int_equal(e[3].addr, 0x100000);
    assert_int_equal(e[3].addr + e[3].size, 256ull << 20);
    uint64_t ram = 0;
    for (int i = 0; i < n; i++)
        ram += e[i].type == 1 ? e[i].size : 0;
    assert_true(ram < (256ull << 20) && ram > (255ull << 20));
    memory_destroy(m);
    /* 4 GiB: 3 GiB low, 1 GiB above 4 GiB, nothing in the PCI hole */
    m = machine_with_ram(4ull << 30, 1, NULL);
    n = boot_e820_map(m, e, 16);
    assert_int_equal(n, 5);
    assert_int_equal(e[3].addr + e[3].size, MACHINE_LOW_RAM_END);
    assert_int_equal(e[4].addr, MACHINE_HIGH_RAM_BASE);
    assert_int_equal(e[4].size, (4ull << 30) - MACHINE_LOW_RAM_END);
    assert_non_null(machine_gpa_ptr(m, MACHINE_HIGH_RAM_BASE, 4096));
    assert_null(machine_gpa_ptr(m, MACHINE_LOW_RAM_END, 1));          /* the hole */
    assert_null(machine_gpa_ptr(m, MACHINE_LOW_RAM_END - 8, 16));     /* straddles into it */
    assert_null(machine_gpa_ptr(m, UINT64_MAX - 4, 8));               /* wraps */
    memory_destroy(m);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

static void test_acpi_tables(void **state)
{
    (void)state;
    struct machine *m = machine_with_ram(64ull << 20, 5, NULL);
    uint64_t rsdp = acpi_build_tables(m);
    assert_int_equal(rsdp, ACPI_TABLES_BASE);
    uint8_t *r = machine_gpa_ptr(m, rsdp, 36);
    assert_memory_equal(r, "RSD PTR ", 8);
    assert_int_equal(sum(r, 20), 0);
    assert_int_equal(sum(r, 36), 0);
    uint64_t xsdt;
    memcpy(&xsdt, r + 24, 8);
    uint8_t *x = machine_gpa_ptr(m, xsdt, 36);
    uint32_t xlen;
    memcpy(&xlen, x + 4, 4);
    assert_int_equal(sum(x, xlen), 0);
    int found = 0;
    for (uint32_t off = 36; off < xlen; off += 8) {
        uint64_t t;
        memcpy(&t, x + off, 8);
        uint8_t *h = machine_gpa_ptr(m, t, 36);
        uint32_t len;
        memcpy(&len, h + 4, 4);
        assert_int_equal(sum(h, len), 0);
        if (!memcmp(h, "APIC", 4)) {
            int cpus = 0;
            for (uint32_t p = 44; p < len; p += h[p + 1])
                cpus += h[p] == 0 && (h[p + 4] & 1);
            assert_int_equal(cpus, 5);
            found |= 1;
        }
        if (!memcmp(h, "FACP", 4)) {
            uint32_t cnt, dsdt;
            memcpy(&cnt, h + 64, 4);
            memcpy(&dsdt, h + 40, 4);
            assert_int_equal(cnt, ACPI_PM1_CNT);
            uint8_t *d = machine_gpa_ptr(m, dsdt, 36);
            uint32_t dlen;
            memcpy(&dlen, d + 4, 4);
            assert_memory_equal(d, "DSDT", 4);
            assert_int_equal(sum(d, dlen), 0);
            assert_non_null(memmem(d, dlen, "_S5_", 4));
            found |= 2;
        }
    }
    assert_int_equal(found, 3);
    memory_destroy(m);
    /* RAM too small to hold the tables: no tables, no crash */
    m = machine_with_ram(512 << 10, 1, NULL);
    assert_int_equal(acpi_build_tables(m), 0);
    memory_destroy(m);
}

/* Writes a minimal bzImage-shaped file; returns its path. */
static const char *write_kernel(const char *name, uint16_t version, uint8_t xload, size_t size,
                                uint32_t cmdline_size)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/qkvm-test-%s-%d", name, getpid());
    uint8_t *k = calloc(1, size);
    k[0x1f1] = 1;
    k[0x1fe] = 0x55, k[0x1ff] = 0xaa;
    k[0x201] = 0x66;
    memcpy(k + 0x202, "HdrS", 4);
    memcpy(k + 0x206, &version, 2);
    k[0x211] = 1;
    uint32_t max = 0x7fffffff;
    memcpy(k + 0x22c, &max, 4);
    k[0x236] = xload;
    memcpy(k + 0x238, &cmdline_size, 4);
    FILE *f = fopen(path, "w");
    fwrite(k, 1, size, f);
    fclose(f);
    free(k);
    return path;
}

static void test_bzimage_checks(void **state)
{
    (void)state;
    const char *why;
    assert_int_equal(boot_check_kernel(write_kernel("ok", 0x20f, 1, 4096, 255), &why), 0);
    assert_int_equal(boot_check_kernel(write_kernel("old", 0x205, 1, 4096, 255), &why), -EINVAL);
    assert_non_null(strstr(why, "2.06"));
    assert_int_equal(boot_check_kernel(write_kernel("short", 0x20f, 1, 700, 255), &why), -EINVAL);
    assert_int_equal(boot_check_kernel(write_kernel("nosetup", 0x20f, 1, 1024, 255), &why), -EINVAL);
    assert_non_null(strstr(why, "truncated"));
    assert_int_equal(boot_check_kernel("/nonexistent/kernel", &why), -ENOENT);
}

static void test_load_linux(void **state)
{
    (void)state;
    struct machine_config cfg = { .cmdline = "console=ttyS0" };
    cfg.kernel = write_kernel("load64", 0x20f, 1, 8192, 255);
    struct machine *m = machine_with_ram(32ull << 20, 1, &cfg);
    struct cpu_state s;
    assert_int_equal(boot_load_linux(m, 0xe0000, &s), 0);
    assert_int_equal(s.rip, BOOT_KERNEL_ADDR + 0x200);
    assert_int_equal(s.gpr[R_SI], BOOT_ZERO_PAGE);
    assert_int_equal(s.gpr[R_SP], 0x8ff0);   /* a usable stack, as Firecracker's */
    assert_true(s.efer & 0x400);
    uint8_t *zp = machine_gpa_ptr(m, BOOT_ZERO_PAGE, 4096);
    uint32_t cmdptr;
    memcpy(&cmdptr, zp + 0x228, 4);
    assert_string_equal((char *)machine_gpa_ptr(m, cmdptr, 14), "console=ttyS0");
    uint64_t rsdp;
    memcpy(&rsdp, zp + 0x70, 8);
    assert_int_equal(rsdp, 0xe0000);
    assert_int_equal(zp[0x1e8], 4);
    /* a command line longer than the kernel takes is refused */
    char longline[400];
    memset(longline, 'a', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = 0;
    cfg.cmdline = longline;
    assert_int_equal(boot_load_linux(m, 0, &s), -E2BIG);
    memory_destroy(m);
    /* the 32-bit entry where the kernel does not offer 64-bit */
    cfg.cmdline = NULL;
    cfg.kernel = write_kernel("load32", 0x20f, 0, 8192, 255);
    m = machine_with_ram(32ull << 20, 1, &cfg);
    assert_int_equal(boot_load_linux(m, 0, &s), 0);
    assert_int_equal(s.rip, BOOT_KERNEL_ADDR);
    assert_int_equal(s.efer, 0);
    memory_destroy(m);
    /* an initrd larger than RAM */
    char *kernel = strdup(cfg.kernel);   /* write_kernel's buffer is about to be reused */
    cfg.kernel = kernel;
    cfg.initrd = write_kernel("bigrd", 0, 0, 3 << 20, 0);
    m = machine_with_ram(2ull << 20, 1, &cfg);
    assert_int_equal(boot_load_linux(m, 0, &s), -ENOMEM);
    memory_destroy(m);
    free(kernel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e820),
        cmocka_unit_test(test_acpi_tables),
        cmocka_unit_test(test_bzimage_checks),
        cmocka_unit_test(test_load_linux),
    };
    int r = cmocka_run_group_tests_name("boot", tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -f /tmp/qkvm-test-*-%d", getpid());
    if (system(cmd)) {}
    return r;
}
