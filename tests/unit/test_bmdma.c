/* Bus-master IDE DMA of the PIIX3 (hw/bmdma.c): PRD entries decoded as the 82371SB reads them,
 * BAR4 as an I/O BAR (sizing, moving, the I/O enable bit), the registers' read-only,
 * read/write and write-one-to-clear bits, and DMA commands driven as Linux's ata_piix drives
 * them (PRD table in RAM, command, start bit, interrupt): READ DMA and WRITE DMA EXT against
 * the image file, PACKET with DMA for READ(10) and INQUIRY, and the status a guest sees for
 * a PRD table that is too short, too long, outside RAM, crossing 64 KiB, or with bus mastering
 * off: never a byte outside RAM or past the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>

#include "hw/atapi.h"
#include "hw/bmdma.h"
#include "ide_fixture.h"

#define SECTORS 64          /* the disk: sector n holds n, then bytes n ^ 0x5a */
#define RAM (64ull << 20)
#define PRD_TABLE 0x10000   /* guest addresses the tests use */
#define BUF 0x20000

static char img[64];

static void make_image(size_t sector_size, int n)
{
    snprintf(img, sizeof(img), "/tmp/qkvm-test-bmdma-%d.img", (int)getpid());
    int fd = open(img, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    uint8_t sec[ATAPI_SECTOR];
    for (int i = 0; i < n; i++) {
        memset(sec, i ^ 0x5a, sector_size);
        memcpy(sec, &i, sizeof(i));
        assert_int_equal(write(fd, sec, sector_size), (ssize_t)sector_size);
    }
    close(fd);
}

static void file_read(off_t off, void *out, size_t len)
{
    int fd = open(img, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, out, len, off), (ssize_t)len);
    close(fd);
}

static struct vfx *pc_with(const char *dev)
{
    const char *devs[] = { dev, NULL };
    struct vfx *f = vfx_new_machine(devs, RAM, MACHINE_PC);
    /* what ata_piix's pci_set_master does */
    cfg_fn_write(f, 1, 1, 4, cfg_fn(f, 1, 1, 4) | PCI_COMMAND_MASTER);
    return f;
}

static struct vfx *pc_with_disk(void)
{
    static char dev[256];
    make_image(IDE_SECTOR, SECTORS);
    snprintf(dev, sizeof(dev), "ide-hd,drive=file=%s,,format=raw", img);
    return pc_with(dev);
}

static void done(struct vfx *f)
{
    vfx_free(f);
    unlink(img);
}

static uint16_t bm_base(struct vfx *f)
{
    uint32_t bar = cfg_fn(f, 1, 1, 0x20);
    assert_int_equal(bar & 1, 1);
    return (uint16_t)(bar & ~3u);
}

static void prd(struct vfx *f, int i, uint32_t addr, uint32_t len, bool eot)
{
    uint8_t *p = gptr(&f->m, PRD_TABLE + 8 * (uint64_t)i, 8);
    uint32_t w[2] = { addr, (len & 0xffff) | (eot ? BMDMA_PRD_EOT : 0) };
    memcpy(p, w, 8);
}

/* ata_bmdma_setup: table address, direction, the command; then ata_bmdma_start */
static void bm_setup(struct vfx *f, uint16_t bm, uint32_t table, bool to_memory)
{
    outl(f, bm + 4, table);
    outb(f, bm, to_memory ? BMDMA_CMD_READ : 0);
}

static void cmd28(struct vfx *f, uint8_t cmd, uint32_t lba, uint8_t count)
{
    outb(f, 0x1f2, count);
    outb(f, 0x1f3, (uint8_t)lba);
    outb(f, 0x1f4, (uint8_t)(lba >> 8));
    outb(f, 0x1f5, (uint8_t)(lba >> 16));
    outb(f, 0x1f6, (uint8_t)(0xe0 | ((lba >> 24) & 0xf)));
    outb(f, 0x1f7, cmd);
}

static void test_prd_decode(void **state)
{
    (void)state;
    struct bmdma_prd p;
    const uint8_t a[8] = { 0x01, 0x20, 0x03, 0x00, 0x00, 0x00, 0x00, 0x80 };   /* len 0: 64 KiB */
    bmdma_prd_decode(a, &p);
    assert_int_equal(p.addr, 0x32000);    /* bit 0 ignored */
    assert_int_equal(p.len, 0x10000);
    assert_true(p.eot);
    const uint8_t b[8] = { 0x00, 0x10, 0x00, 0x00, 0x01, 0x02, 0xff, 0x7f };   /* odd count, reserved bits */
    bmdma_prd_decode(b, &p);
    assert_int_equal(p.len, 0x200);
    assert_false(p.eot);
}

/* The walk itself on a machine's RAM: entries split the data, the end of the table, the
 * 64 KiB boundary, and an entry outside RAM. */
static void test_prd_walk(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, RAM, MACHINE_PC);
    uint8_t data[3000], back[3000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13);
    prd(f, 0, BUF + 1, 1001, false);      /* 0x...1 -> BUF, 1000 bytes */
    prd(f, 1, BUF + 4096, 2000, true);
    struct bmdma_walk w = { .table = PRD_TABLE };
    assert_int_equal(bmdma_walk_rw(&f->m, &w, data, 1500, true), 0);
    assert_int_equal(bmdma_walk_rw(&f->m, &w, data + 1500, 1500, true), 0);
    assert_memory_equal(gptr(&f->m, BUF, 1000), data, 1000);
    assert_memory_equal(gptr(&f->m, BUF + 4096, 2000), data + 1000, 2000);
    assert_true(w.ended);
    assert_int_equal(bmdma_walk_rw(&f->m, &w, data, 2, true), 1);       /* SHORT: nothing left */
    w = (struct bmdma_walk){ .table = PRD_TABLE };
    assert_int_equal(bmdma_walk_rw(&f->m, &w, back, 3000, false), 0);
    assert_memory_equal(back, data, 3000);
    /* a table that reaches its 64 KiB boundary without an end mark stops there */
    uint64_t last = 0x2fff8;
    uint32_t ent[2] = { BUF, 16 };
    memcpy(gptr(&f->m, last, 8), ent, 8);
    w = (struct bmdma_walk){ .table = (uint32_t)last };
    assert_int_equal(bmdma_walk_rw(&f->m, &w, data, 32, true), 1);
    /* a buffer past RAM, a buffer straddling its end, a table past RAM: FAULT */
    prd(f, 0, (uint32_t)RAM, 512, true);
    w = (struct bmdma_walk){ .table = PRD_TABLE };
    assert_int_equal(bmdma_walk_rw(&f->m, &w, data, 512, true), 2);
    prd(f, 0, (uint32_t)RAM - 256, 512, true);
    w = (struct bmdma_walk){ .table = PRD_TABLE };
    assert_int_equal(bmdma_walk_rw(&f->m, &w, data, 512, true), 2);
    w = (struct bmdma_walk){ .table = 0xfec00000u };
    assert_int_equal(bmdma_walk_rw(&f->m, &w, data, 512, false), 2);
    vfx_free(f);
}

static void test_bar4_registers(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk();
    uint16_t bm = bm_base(f);
    assert_int_equal(bm, PCI_IO_BASE);                       /* the host put it where SeaBIOS would */
    assert_int_equal(cfg_fn(f, 1, 1, 4) & PCI_COMMAND_IO, PCI_COMMAND_IO);
    /* sizing: 16 ports */
    cfg_fn_write(f, 1, 1, 0x20, 0xffffffff);
    assert_int_equal(cfg_fn(f, 1, 1, 0x20), 0xfffffff1);
    /* moved: the old ports are gone, the new ones answer */
    cfg_fn_write(f, 1, 1, 0x20, 0xd000);
    assert_int_equal(inl(f, PCI_IO_BASE + 4), 0xffffffff);
    outl(f, 0xd004, 0x12345677);
    assert_int_equal(inl(f, 0xd004), 0x12345674);             /* dword aligned */
    outb(f, 0xd00c, 0xab);                                    /* byte write to the secondary's */
    assert_int_equal(inl(f, 0xd00c), 0xa8);
    /* command: start and direction only; status: active read-only, DMA capable bits kept */
    outb(f, 0xd000, 0xff);
    assert_int_equal(inb(f, 0xd000), BMDMA_CMD_START | BMDMA_CMD_READ);
    assert_int_equal(inb(f, 0xd002) & BMDMA_ST_ACTIVE, BMDMA_ST_ACTIVE);
    outb(f, 0xd000, 0);
    assert_int_equal(inb(f, 0xd002), 0);
    outb(f, 0xd002, 0xff);
    assert_int_equal(inb(f, 0xd002), BMDMA_ST_DMA0 | BMDMA_ST_DMA1);
    /* I/O decoding off: no ports */
    cfg_fn_write(f, 1, 1, 4, cfg_fn(f, 1, 1, 4) & ~(uint32_t)PCI_COMMAND_IO);
    assert_int_equal(inl(f, 0xd004), 0xffffffff);
    done(f);
}

/* READ DMA of 6 sectors through two entries that split a sector, as ata_piix runs it:
 * command first, then the start bit, then the interrupt. */
static void test_read_dma(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk();
    uint16_t bm = bm_base(f);
    uint8_t want[6 * IDE_SECTOR];
    file_read(3 * IDE_SECTOR, want, sizeof(want));
    memset(gptr(&f->m, BUF, 0x10000), 0xee, 0x10000);
    prd(f, 0, BUF, 700, false);
    prd(f, 1, BUF + 0x1000, 6 * IDE_SECTOR - 700, true);
    bm_setup(f, bm, PRD_TABLE, true);
    cmd28(f, 0xc8, 3, 6);
    assert_int_equal(inb(f, 0x3f6), IDE_STAT_DRDY | IDE_STAT_DSC | IDE_STAT_DRQ);   /* waits for the start */
    assert_int_equal(f->irq[14], 0);
    outb(f, bm, BMDMA_CMD_READ | BMDMA_CMD_START);
    assert_int_equal(f->irq[14], 1);
    assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR);         /* table used up: not active */
    assert_memory_equal(gptr(&f->m, BUF, 700), want, 700);
    assert_memory_equal(gptr(&f->m, BUF + 0x1000, sizeof(want) - 700), want + 700, sizeof(want) - 700);
    assert_int_equal(*(uint8_t *)gptr(&f->m, BUF + 700, 1), 0xee);   /* nothing past an entry */
    outb(f, bm, BMDMA_CMD_READ);                               /* ata_bmdma_stop */
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    assert_int_equal(f->irq[14], 0);
    assert_int_equal(inb(f, 0x1f3), 8);                        /* the last sector moved */
    outb(f, bm + 2, BMDMA_ST_INTR);                            /* write one to clear */
    assert_int_equal(inb(f, bm + 2), 0);
    /* the start bit set before the command: it runs at once; a longer table stays active */
    prd(f, 0, BUF, 0x10000 - 2, true);
    outb(f, bm, BMDMA_CMD_READ | BMDMA_CMD_START);
    cmd28(f, 0xc8, 0, 2);
    assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR | BMDMA_ST_ACTIVE);
    file_read(0, want, 2 * IDE_SECTOR);
    assert_memory_equal(gptr(&f->m, BUF, 2 * IDE_SECTOR), want, 2 * IDE_SECTOR);
    outb(f, bm, 0);
    assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR);
    /* IDENTIFY says DMA; SET FEATURES picks multiword DMA 2 and UDMA modes, refuses UDMA 7 */
    outb(f, 0x1f7, 0xec);
    uint16_t id[256];
    for (int i = 0; i < 256; i++)
        id[i] = inw(f, 0x1f0);
    assert_int_equal(id[49] & (1 << 8), 1 << 8);
    assert_int_equal(id[88], 0x3f | 1 << 13);
    outb(f, 0x1f1, 0x03);
    outb(f, 0x1f2, 0x22);
    outb(f, 0x1f7, 0xef);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    outb(f, 0x1f7, 0xec);
    for (int i = 0; i < 256; i++)
        id[i] = inw(f, 0x1f0);
    assert_int_equal(id[63], 0x07 | 1 << 10);
    assert_int_equal(id[88], 0x3f);
    outb(f, 0x1f1, 0x03);
    outb(f, 0x1f2, 0x47);
    outb(f, 0x1f7, 0xef);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_ERR);
    done(f);
}

static void test_write_dma_ext(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk();
    uint16_t bm = bm_base(f);
    uint8_t *src = gptr(&f->m, BUF, 3 * IDE_SECTOR), got[3 * IDE_SECTOR];
    for (int i = 0; i < 3 * IDE_SECTOR; i++)
        src[i] = (uint8_t)(i * 7 + 1);
    prd(f, 0, BUF, 3 * IDE_SECTOR, true);
    bm_setup(f, bm, PRD_TABLE, false);
    /* WRITE DMA EXT at LBA 60, 3 sectors: high bytes first */
    outb(f, 0x1f2, 0), outb(f, 0x1f3, 0), outb(f, 0x1f4, 0), outb(f, 0x1f5, 0);
    outb(f, 0x1f2, 3), outb(f, 0x1f3, 60), outb(f, 0x1f4, 0), outb(f, 0x1f5, 0);
    outb(f, 0x1f6, 0x40);
    outb(f, 0x1f7, 0x35);
    outb(f, bm, BMDMA_CMD_START);
    assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    file_read(60 * IDE_SECTOR, got, sizeof(got));
    assert_memory_equal(got, src, sizeof(got));
    /* past the end of the disk: refused before any byte moves */
    cmd28(f, 0xca, SECTORS - 1, 2);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_ERR);
    done(f);
}

/* What a guest gets for a bad table: the hardware's "PRD smaller than the transfer" (neither
 * active nor interrupting, no IRQ), the error bit for memory outside RAM, and bus mastering
 * off treated as a bus fault. Nothing outside the entries is written. */
static void test_bad_tables(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk();
    uint16_t bm = bm_base(f);
    memset(gptr(&f->m, BUF, 0x2000), 0xee, 0x2000);
    prd(f, 0, BUF, IDE_SECTOR, true);                         /* one sector for a 4-sector read */
    bm_setup(f, bm, PRD_TABLE, true);
    cmd28(f, 0xc8, 0, 4);
    outb(f, bm, BMDMA_CMD_READ | BMDMA_CMD_START);
    assert_int_equal(inb(f, bm + 2), 0);
    assert_int_equal(f->irq[14], 0);
    assert_int_equal(inb(f, 0x3f6), IDE_STAT_DRDY | IDE_STAT_ERR);
    assert_int_equal(inb(f, 0x1f1), IDE_ERR_ABRT);
    assert_int_equal(*(uint8_t *)gptr(&f->m, BUF + IDE_SECTOR, 1), 0xee);
    outb(f, bm, BMDMA_CMD_READ);
    /* an entry past RAM: error and interrupt bits, ERR, an IRQ */
    prd(f, 0, (uint32_t)RAM - IDE_SECTOR, 2 * IDE_SECTOR, true);
    cmd28(f, 0xc8, 0, 2);
    outb(f, bm, BMDMA_CMD_READ | BMDMA_CMD_START);
    assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR | BMDMA_ST_ERROR);
    assert_int_equal(f->irq[14], 1);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_ERR);
    outb(f, bm, BMDMA_CMD_READ);
    outb(f, bm + 2, BMDMA_ST_INTR | BMDMA_ST_ERROR);
    assert_int_equal(inb(f, bm + 2), 0);
    /* the table itself outside RAM (the IOAPIC's page), for a write */
    bm_setup(f, bm, 0xfec00000u, false);
    cmd28(f, 0xca, 0, 1);
    outb(f, bm, BMDMA_CMD_START);
    assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR | BMDMA_ST_ERROR);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_ERR);
    outb(f, bm, 0);
    outb(f, bm + 2, 0x06);
    /* bus mastering off in the command register */
    cfg_fn_write(f, 1, 1, 4, cfg_fn(f, 1, 1, 4) & ~(uint32_t)PCI_COMMAND_MASTER);
    memset(gptr(&f->m, BUF, 0x2000), 0xee, 0x2000);
    prd(f, 0, BUF, IDE_SECTOR, true);
    bm_setup(f, bm, PRD_TABLE, true);
    cmd28(f, 0xc8, 0, 1);
    outb(f, bm, BMDMA_CMD_READ | BMDMA_CMD_START);
    assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR | BMDMA_ST_ERROR);
    assert_int_equal(*(uint8_t *)gptr(&f->m, BUF, 1), 0xee);
    /* a command during a waiting DMA is ignored; SRST ends the wait */
    outb(f, bm, 0);
    cmd28(f, 0xc8, 0, 1);
    outb(f, 0x1f7, 0xec);
    assert_int_equal(inb(f, 0x3f6) & IDE_STAT_DRQ, IDE_STAT_DRQ);
    outb(f, 0x3f6, IDE_CTL_SRST);
    outb(f, 0x3f6, 0);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    done(f);
}

/* The CD on the secondary channel: PACKET with its DMA bit, INQUIRY and READ(10) through the
 * table, the status phase and the secondary's bus master registers. */
static void test_atapi_dma(void **state)
{
    (void)state;
    static char dev[256];
    make_image(ATAPI_SECTOR, 8);
    snprintf(dev, sizeof(dev), "ide-cd,drive=file=%s,,format=raw,,media=cdrom,,index=2", img);
    struct vfx *f = pc_with(dev);
    uint16_t bm = (uint16_t)(bm_base(f) + 8);
    outb(f, 0x176, 0);                 /* leave the reset signature's state: a fresh task file */
    const uint8_t cdbs[][12] = {
        { 0x12, 0, 0, 0, 36, 0 },                 /* INQUIRY, 36 bytes */
        { 0x28, 0, 0, 0, 0, 5, 0, 0, 2 },         /* READ(10) sectors 5-6 */
    };
    for (int k = 0; k < 2; k++) {
        /* TEST UNIT READY first clears the power-on UNIT ATTENTION, if any */
        size_t len = k ? 2 * ATAPI_SECTOR : 36;
        memset(gptr(&f->m, BUF, 0x2000), 0xee, 0x2000);
        prd(f, 0, BUF, (uint32_t)len, true);
        bm_setup(f, bm, PRD_TABLE, true);
        outb(f, 0x171, 1);             /* DMA */
        outb(f, 0x176, 0xa0);
        outb(f, 0x177, 0xa0);
        assert_int_equal(inb(f, 0x376) & (IDE_STAT_DRQ | IDE_STAT_ERR), IDE_STAT_DRQ);
        for (int i = 0; i < 12; i += 2)
            outw(f, 0x170, (uint16_t)(cdbs[k][i] | cdbs[k][i + 1] << 8));
        assert_int_equal(inb(f, 0x376) & IDE_STAT_DRQ, IDE_STAT_DRQ);   /* waits for the bus master */
        outb(f, bm, BMDMA_CMD_READ | BMDMA_CMD_START);
        assert_int_equal(inb(f, bm + 2), BMDMA_ST_INTR);
        assert_int_equal(f->irq[15], 1);
        assert_int_equal(inb(f, 0x177) & (IDE_STAT_DRQ | IDE_STAT_ERR), 0);
        assert_int_equal(inb(f, 0x172) & 3, 3);                         /* status phase */
        outb(f, bm, BMDMA_CMD_READ);
        outb(f, bm + 2, BMDMA_ST_INTR);
        uint8_t *got = gptr(&f->m, BUF, len);
        if (k == 0) {
            assert_int_equal(got[0], 0x05);                             /* CD-ROM */
            assert_memory_equal(got + 8, "QEMU    ", 8);
        } else {
            uint8_t want[2 * ATAPI_SECTOR];
            file_read(5 * ATAPI_SECTOR, want, sizeof(want));
            assert_memory_equal(got, want, sizeof(want));
        }
        assert_int_equal(*(uint8_t *)gptr(&f->m, BUF + len, 1), 0xee);
    }
    done(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prd_decode),
        cmocka_unit_test(test_prd_walk),
        cmocka_unit_test(test_bar4_registers),
        cmocka_unit_test(test_read_dma),
        cmocka_unit_test(test_write_dma_ext),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_atapi_dma),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
