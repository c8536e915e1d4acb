/* fw_cfg as SeaBIOS drives it, on a whole PC machine (machine_create with MACHINE_PC and a fake
 * accelerator): the selector and data ports, the file directory, and the DMA interface, including
 * the requests a hostile guest makes (bad addresses, writes, huge lengths). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/fw_cfg.h"
#include "virtio_fixture.h"

#define RAM (64ull << 20)
#define CTL_ADDR 0x10000ull     /* where the tests put DMA control blocks */
#define BUF_ADDR 0x20000ull

static struct vfx *pc_new(void)
{
    return vfx_new_machine(NULL, RAM, MACHINE_PC);
}

static void sel(struct vfx *f, uint16_t key)
{
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_SEL, &key, 2, true), 0);
}

static uint8_t data8(struct vfx *f)
{
    uint8_t b = 0xaa;
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DATA, &b, 1, false), 0);
    return b;
}

static void read_item(struct vfx *f, uint16_t key, void *buf, size_t len)
{
    sel(f, key);
    for (size_t i = 0; i < len; i++)
        ((uint8_t *)buf)[i] = data8(f);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static void put_be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v; }

/* The selector of a file, from the directory as the guest reads it; -1 when absent. */
static int find_file(struct vfx *f, const char *name, uint32_t *size)
{
    uint8_t n[4];
    read_item(f, FW_CFG_FILE_DIR, n, 4);
    for (uint32_t i = 0; i < be32(n); i++) {
        uint8_t e[64];
        for (int k = 0; k < 64; k++)
            e[k] = data8(f);
        if (!strcmp((char *)e + 8, name)) {
            *size = be32(e);
            return e[4] << 8 | e[5];
        }
    }
    return -1;
}

/* Writes a control block at ctl and starts it the way SeaBIOS does: high half, then low half,
 * both big-endian. Returns the control word the device left. */
static uint32_t dma(struct vfx *f, uint64_t ctl, uint32_t control, uint32_t len, uint64_t addr)
{
    uint8_t blk[16];
    put_be32(blk, control);
    put_be32(blk + 4, len);
    put_be32(blk + 8, (uint32_t)(addr >> 32));
    put_be32(blk + 12, (uint32_t)addr);
    if (machine_write(&f->m, ctl, blk, sizeof(blk)))
        memset(blk, 0, sizeof(blk));
    uint8_t hi[4], lo[4];
    put_be32(hi, (uint32_t)(ctl >> 32));
    put_be32(lo, (uint32_t)ctl);
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA, hi, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA + 4, lo, 4, true), 0);
    uint8_t st[4] = { 0xde, 0xad, 0xbe, 0xef };
    machine_read(&f->m, ctl, st, 4);
    return be32(st);
}

static void test_signature_and_id(void **state)
{
    (void)state;
    struct vfx *f = pc_new();
    char sig[6];
    read_item(f, FW_CFG_SIGNATURE, sig, 6);
    assert_memory_equal(sig, "QEMU\0\0", 6);   /* past the end: zeros */
    uint8_t id[4];
    read_item(f, FW_CFG_ID, id, 4);
    assert_int_equal(id[0], FW_CFG_VERSION | FW_CFG_VERSION_DMA);
    /* the DMA address register reads as "QEMU CFG" */
    uint8_t d[8];
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA, d, 4, false), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA + 4, d + 4, 4, false), 0);
    assert_memory_equal(d, "QEMU CFG", 8);
    /* an unknown key selects nothing: data reads zero */
    sel(f, 0x7fff);
    assert_int_equal(data8(f), 0);
    /* the machine's items */
    uint8_t v[8];
    read_item(f, FW_CFG_RAM_SIZE, v, 8);
    uint64_t ram = 0;
    for (int i = 7; i >= 0; i--)
        ram = ram << 8 | v[i];
    assert_int_equal(ram, RAM);
    read_item(f, FW_CFG_NB_CPUS, v, 2);
    assert_int_equal(v[0] | v[1] << 8, 1);
    /* a 16-bit read of the data port is not part of the interface: ones, cursor unmoved */
    sel(f, FW_CFG_SIGNATURE);
    uint16_t w = 0;
    bus_dispatch(&f->m.pio, FW_CFG_PORT_SEL, &w, 2, false);
    assert_int_equal(w, 0xffff);
    assert_int_equal(data8(f), 'Q');
    vfx_free(f);
}

static void test_file_dir(void **state)
{
    (void)state;
    struct vfx *f = pc_new();
    uint8_t n[4];
    read_item(f, FW_CFG_FILE_DIR, n, 4);
    uint32_t count = be32(n);
    assert_true(count >= 3);
    char prev[57] = "";
    for (uint32_t i = 0; i < count; i++) {   /* sorted by name, as QEMU's */
        uint8_t e[64];
        for (int k = 0; k < 64; k++)
            e[k] = data8(f);
        assert_true(strcmp(prev, (char *)e + 8) < 0);
        memcpy(prev, e + 8, 56);
        assert_true((e[4] << 8 | e[5]) >= FW_CFG_FILE_FIRST);
    }
    uint32_t size;
    int s = find_file(f, "etc/sercon-port", &size);
    assert_true(s >= FW_CFG_FILE_FIRST);
    assert_int_equal(size, 2);
    uint8_t port[2];
    read_item(f, (uint16_t)s, port, 2);
    assert_int_equal(port[0] | port[1] << 8, 0x3f8);
    s = find_file(f, "etc/e820", &size);
    assert_int_equal(size, 20);   /* 64 MiB: one RAM entry */
    uint8_t e820[20];
    read_item(f, (uint16_t)s, e820, 20);
    uint64_t addr, len;
    uint32_t type;
    memcpy(&addr, e820, 8), memcpy(&len, e820 + 8, 8), memcpy(&type, e820 + 16, 4);
    assert_int_equal(addr, 0);
    assert_int_equal(len, RAM);
    assert_int_equal(type, 1);
    s = find_file(f, "etc/boot-fail-wait", &size);
    assert_int_equal(size, 4);
    assert_int_equal(find_file(f, "no/such/file", &size), -1);
    vfx_free(f);
}

static void test_add_file_errors(void **state)
{
    (void)state;
    struct vfx *f = pc_new();
    struct fw_cfg *c = f->m.fw_cfg;
    assert_non_null(c);
    assert_int_equal(fw_cfg_add_file(c, "etc/e820", "x", 1), -EEXIST);
    char longname[80];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[79] = 0;
    assert_int_equal(fw_cfg_add_file(c, longname, "x", 1), -ENAMETOOLONG);
    assert_int_equal(fw_cfg_add_bytes(c, FW_CFG_FILE_FIRST, "x", 1), -EINVAL);
    assert_int_equal(fw_cfg_add_bytes(c, FW_CFG_ARCH_LOCAL | 0x100, "x", 1), -EINVAL);
    int added = 0, ret = 0;
    for (int i = 0; i < 100 && !ret; i++) {
        char name[32];
        snprintf(name, sizeof(name), "test/%03d", i);
        if (!(ret = fw_cfg_add_file(c, name, name, strlen(name))))
            added++;
    }
    assert_int_equal(ret, -ENOSPC);
    uint32_t size;
    int s = find_file(f, "test/007", &size);   /* the directory still reads whole */
    char got[9] = { 0 };
    read_item(f, (uint16_t)s, got, 8);
    assert_string_equal(got, "test/007");
    assert_true(added > 50);
    vfx_free(f);
}

static void test_dma_read_select_skip(void **state)
{
    (void)state;
    struct vfx *f = pc_new();
    uint8_t *buf = machine_gpa_ptr(&f->m, BUF_ADDR, 64);
    memset(buf, 0x55, 64);
    /* select + read the signature, 8 bytes: 4 of data, then zeros */
    uint32_t st = dma(f, CTL_ADDR, (uint32_t)FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 8, BUF_ADDR);
    assert_int_equal(st, 0);
    assert_memory_equal(buf, "QEMU\0\0\0\0", 8);
    assert_int_equal(buf[8], 0x55);   /* nothing past the length */
    /* skip then read, on the selected item: the cursor is shared with the data port */
    uint32_t size;
    int s = find_file(f, "etc/e820", &size);
    assert_int_equal(dma(f, CTL_ADDR, (uint32_t)s << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 8, 0), 0);
    assert_int_equal(dma(f, CTL_ADDR, FW_CFG_DMA_READ, 8, BUF_ADDR), 0);
    uint64_t len;
    memcpy(&len, buf, 8);
    assert_int_equal(len, RAM);
    assert_int_equal(data8(f), 1);   /* the type field comes next on the data port */
    /* the translated-code cache heard of the writes */
    assert_true(vfx_cur->dirty_bytes >= 16);
    /* no operation bits: nothing happens, success */
    memset(buf, 0x55, 16);
    assert_int_equal(dma(f, CTL_ADDR, (uint32_t)FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT, 4, BUF_ADDR), 0);
    assert_int_equal(buf[0], 0x55);
    vfx_free(f);
}

static void test_dma_write_refused(void **state)
{
    (void)state;
    struct vfx *f = pc_new();
    uint8_t *buf = machine_gpa_ptr(&f->m, BUF_ADDR, 8);
    memcpy(buf, "XXXX", 4);
    uint32_t st = dma(f, CTL_ADDR, (uint32_t)FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4, BUF_ADDR);
    assert_int_equal(st, FW_CFG_DMA_ERROR);
    char sig[4];
    read_item(f, FW_CFG_SIGNATURE, sig, 4);
    assert_memory_equal(sig, "QEMU", 4);
    /* a write to nothing selected is an error too */
    assert_int_equal(dma(f, CTL_ADDR, 0x7fffu << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4, BUF_ADDR), FW_CFG_DMA_ERROR);
    vfx_free(f);
}

static void test_dma_bad_addresses(void **state)
{
    (void)state;
    struct vfx *f = pc_new();
    uint16_t sig = FW_CFG_SIGNATURE;
    /* destination outside RAM: in the PCI hole, past RAM's end, straddling it, wrapping, the
     * firmware ROM (a bus master cannot write it) */
    uint64_t bad[] = { 0xd0000000ull, RAM, RAM - 2, UINT64_MAX - 1, 0xfffffff0ull };
    uint8_t rom_before[16];
    memcpy(rom_before, machine_gpa_ptr(&f->m, 0xfffffff0ull, 16), 16);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(dma(f, CTL_ADDR, (uint32_t)sig << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 8, bad[i]),
                         FW_CFG_DMA_ERROR);
    assert_memory_equal(machine_gpa_ptr(&f->m, 0xfffffff0ull, 16), rom_before, 16);
    /* the zero fill past an item's end is bounded too: 4 GiB - 1 from near the end of RAM */
    assert_int_equal(dma(f, CTL_ADDR, 0x7fffu << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 0xffffffff, RAM - 4096),
                     FW_CFG_DMA_ERROR);
    /* a huge skip just moves the cursor */
    assert_int_equal(dma(f, CTL_ADDR, (uint32_t)sig << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 0xffffffff, 0), 0);
    assert_int_equal(data8(f), 0);
    /* the control block itself outside RAM: nothing to report to, nothing breaks */
    uint8_t hi[4] = { 0, 0, 0, 0 }, lo[4] = { 0xd0, 0, 0, 0 };
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA, hi, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA + 4, lo, 4, true), 0);
    /* ... or straddling RAM's end: the status word cannot be written either */
    uint8_t hi2[4] = { 0 }, lo2[4];
    put_be32(lo2, (uint32_t)(RAM - 8));
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA, hi2, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA + 4, lo2, 4, true), 0);
    /* a 64-bit write of the whole address starts a transfer too */
    uint8_t blk[16] = { 0 };
    put_be32(blk, (uint32_t)FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ);
    put_be32(blk + 4, 4);
    put_be32(blk + 12, (uint32_t)BUF_ADDR);
    assert_int_equal(machine_write(&f->m, CTL_ADDR, blk, 16), 0);
    uint8_t a8[8] = { 0, 0, 0, 0, (uint8_t)(CTL_ADDR >> 24), (uint8_t)(CTL_ADDR >> 16), (uint8_t)(CTL_ADDR >> 8), (uint8_t)CTL_ADDR };
    assert_int_equal(bus_dispatch(&f->m.pio, FW_CFG_PORT_DMA, a8, 8, true), 0);
    assert_memory_equal(machine_gpa_ptr(&f->m, BUF_ADDR, 4), "QEMU", 4);
    assert_memory_equal(machine_gpa_ptr(&f->m, CTL_ADDR, 4), "\0\0\0\0", 4);
    vfx_free(f);
}

/* A whole file through the data port. */
static uint8_t *read_file(struct vfx *f, const char *name, uint32_t *size)
{
    int key = find_file(f, name, size);
    assert_true(key >= 0);
    uint8_t *buf = malloc(*size);
    read_item(f, (uint16_t)key, buf, *size);
    return buf;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    while (n--)
        v = v << 8 | p[n];
    return v;
}

/* The table the guest address a names, when it lies in the placed blob; NULL otherwise. */
static const uint8_t *at(const uint8_t *tables, uint32_t len, uint64_t base, uint64_t a)
{
    return a >= base && a - base + 36 <= len ? tables + (a - base) : NULL;
}

/* etc/table-loader run as SeaBIOS's romfile_loader runs it (QEMU's bios-linker-loader format,
 * written here from its description, not from qkvm's code): the RSDP in the F segment, the
 * tables in high memory; then every pointer must land on a table whose checksum is right. */
static void test_table_loader(void **state)
{
    (void)state;
    struct vfx *f = pc_new();
    uint32_t nl, nt, nr;
    uint8_t *loader = read_file(f, "etc/table-loader", &nl);
    uint8_t *tables = read_file(f, "etc/acpi/tables", &nt);
    uint8_t *rsdp = read_file(f, "etc/acpi/rsdp", &nr);
    const uint64_t rsdp_at = 0xf5a30, tables_at = 0x3ffd0000;
    assert_int_equal(nl % 128, 0);
    assert_int_equal(nr, 36);
    int allocs = 0;
    for (uint32_t off = 0; off < nl; off += 128) {
        const uint8_t *e = loader + off;
        uint32_t cmd = (uint32_t)le(e, 4);
        const char *file = (const char *)e + 4;
        uint8_t *data = !strcmp(file, "etc/acpi/rsdp") ? rsdp : tables;
        uint32_t dlen = data == rsdp ? nr : nt;
        assert_true(!strcmp(file, "etc/acpi/rsdp") || !strcmp(file, "etc/acpi/tables"));
        if (cmd == 1) {             /* ALLOCATE: file, align, zone (FSEG for the RSDP) */
            assert_int_equal(e[4 + 56 + 4], data == rsdp ? 2 : 1);
            allocs++;
        } else if (cmd == 2) {      /* ADD_POINTER: dest, src, offset, size */
            const char *src = (const char *)e + 60;
            uint32_t o = (uint32_t)le(e + 116, 4);
            uint8_t size = e[120];
            assert_string_equal(src, "etc/acpi/tables");
            assert_true(size == 4 || size == 8);
            assert_true(o + size <= dlen);
            uint64_t v = le(data + o, size) + tables_at;
            for (int i = 0; i < size; i++)
                data[o + i] = (uint8_t)(v >> (8 * i));
        } else if (cmd == 3) {      /* ADD_CHECKSUM: file, offset, start, length */
            uint32_t o = (uint32_t)le(e + 60, 4), start = (uint32_t)le(e + 64, 4), len = (uint32_t)le(e + 68, 4);
            assert_true(start + len <= dlen && o >= start && o < start + len);
            data[o] = (uint8_t)(data[o] - sum8(data + start, len));
        } else {
            fail_msg("unknown loader command %u", cmd);
        }
    }
    assert_int_equal(allocs, 2);
    (void)rsdp_at;
    assert_memory_equal(rsdp, "RSD PTR ", 8);
    assert_int_equal(sum8(rsdp, 20), 0);
    assert_int_equal(sum8(rsdp, 36), 0);
    const uint8_t *rsdt = at(tables, nt, tables_at, le(rsdp + 16, 4));
    const uint8_t *xsdt = at(tables, nt, tables_at, le(rsdp + 24, 8));
    assert_non_null(rsdt);
    assert_non_null(xsdt);
    assert_memory_equal(rsdt, "RSDT", 4);
    assert_memory_equal(xsdt, "XSDT", 4);
    assert_int_equal(sum8(rsdt, le(rsdt + 4, 4)), 0);
    assert_int_equal(sum8(xsdt, le(xsdt + 4, 4)), 0);
    uint32_t n = ((uint32_t)le(rsdt + 4, 4) - 36) / 4;
    assert_int_equal(n, ((uint32_t)le(xsdt + 4, 4) - 36) / 8);
    int seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(le(rsdt + 36 + 4 * i, 4), le(xsdt + 36 + 8 * i, 8));
        const uint8_t *t = at(tables, nt, tables_at, le(rsdt + 36 + 4 * i, 4));
        assert_non_null(t);
        assert_true(le(t + 4, 4) <= nt - (uint32_t)(t - tables));
        assert_int_equal(sum8(t, le(t + 4, 4)), 0);
        assert_true(memcmp(t, "MCFG", 4));   /* the i440FX has no ECAM */
        if (!memcmp(t, "FACP", 4)) {
            const uint8_t *facs = at(tables, nt, tables_at, le(t + 36, 4));
            const uint8_t *dsdt = at(tables, nt, tables_at, le(t + 40, 4));
            assert_non_null(facs);
            assert_non_null(dsdt);
            assert_memory_equal(facs, "FACS", 4);
            assert_int_equal((facs - tables + tables_at) % 64, 0);
            assert_int_equal(le(t + 140, 8), le(t + 40, 4));   /* X_DSDT */
            uint32_t dlen = (uint32_t)le(dsdt + 4, 4);
            assert_int_equal(sum8(dsdt, dlen), 0);
            assert_non_null(memmem(dsdt, dlen, "_S5_", 4));
            assert_non_null(memmem(dsdt, dlen, "PCI0", 4));
            assert_null(memmem(dsdt, dlen, "MRES", 4));
            seen |= 1;
        }
        if (!memcmp(t, "APIC", 4))
            seen |= 2;
    }
    assert_int_equal(seen, 3);
    free(loader), free(tables), free(rsdp);

    /* SMBIOS: a 2.1 anchor whose table length is the tables file's */
    uint32_t na, ns;
    uint8_t *anchor = read_file(f, "etc/smbios/smbios-anchor", &na);
    uint8_t *smb = read_file(f, "etc/smbios/smbios-tables", &ns);
    assert_int_equal(na, 31);
    assert_memory_equal(anchor, "_SM_", 4);
    assert_int_equal(sum8(anchor, anchor[5]), 0);
    assert_int_equal(le(anchor + 0x16, 2), ns);
    assert_int_equal(smb[0], 0);       /* type 0 first; type 127 ends it */
    assert_int_equal(smb[ns - 2], 0);
    assert_non_null(memmem(smb, ns, "qkvm", 4));
    free(anchor), free(smb);
    vfx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_and_id),
        cmocka_unit_test(test_file_dir),
        cmocka_unit_test(test_add_file_errors),
        cmocka_unit_test(test_dma_read_select_skip),
        cmocka_unit_test(test_dma_write_refused),
        cmocka_unit_test(test_dma_bad_addresses),
        cmocka_unit_test(test_table_loader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
