/* The PC machine's PIIX3 and its IDE disks, driven through the ports as SeaBIOS and Linux drive
 * them: the PCI functions' identity, IDENTIFY's fields, PIO reads and writes (LBA28, LBA48, CHS)
 * against a real image file read back with pread/pwrite, and what a disk answers to nonsense
 * (addresses past the end, unknown commands, writes to a read-only disk, an absent slave). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>

#include "hw/ide.h"
#include "ide_fixture.h"

#define SECTORS 64   /* the test image: 32 KiB, sector n filled with byte n ^ 0x5a */

static char img[64];

static void make_image(void)
{
    snprintf(img, sizeof(img), "/tmp/qkvm-test-ide-%d.img", (int)getpid());
    int fd = open(img, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    uint8_t sec[IDE_SECTOR];
    for (int n = 0; n < SECTORS; n++) {
        memset(sec, n ^ 0x5a, sizeof(sec));
        memcpy(sec, &n, sizeof(n));
        assert_int_equal(write(fd, sec, sizeof(sec)), sizeof(sec));
    }
    close(fd);
}

static void file_sector(int n, uint8_t *out)
{
    int fd = open(img, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, out, IDE_SECTOR, (off_t)n * IDE_SECTOR), IDE_SECTOR);
    close(fd);
}

static struct vfx *pc_with_disk(const char *extra)
{
    static char dev[256];
    make_image();
    snprintf(dev, sizeof(dev), "ide-hd,drive=file=%s,,format=raw%s", img, extra ? extra : "");
    const char *devs[] = { dev, NULL };
    return vfx_new_machine(devs, 64ull << 20, MACHINE_PC);
}

static void done(struct vfx *f)
{
    vfx_free(f);
    unlink(img);
}

/* LBA28 command: device register 0xe0 | LBA[27:24] */
static void cmd28(struct vfx *f, uint8_t cmd, uint32_t lba, uint8_t count)
{
    outb(f, 0x1f2, count);
    outb(f, 0x1f3, (uint8_t)lba);
    outb(f, 0x1f4, (uint8_t)(lba >> 8));
    outb(f, 0x1f5, (uint8_t)(lba >> 16));
    outb(f, 0x1f6, (uint8_t)(0xe0 | ((lba >> 24) & 0xf)));
    outb(f, 0x1f7, cmd);
}

/* LBA48: each register written twice, high byte first */
static void cmd48(struct vfx *f, uint8_t cmd, uint64_t lba, uint16_t count)
{
    outb(f, 0x1f2, (uint8_t)(count >> 8));
    outb(f, 0x1f3, (uint8_t)(lba >> 24));
    outb(f, 0x1f4, (uint8_t)(lba >> 32));
    outb(f, 0x1f5, (uint8_t)(lba >> 40));
    outb(f, 0x1f2, (uint8_t)count);
    outb(f, 0x1f3, (uint8_t)lba);
    outb(f, 0x1f4, (uint8_t)(lba >> 8));
    outb(f, 0x1f5, (uint8_t)(lba >> 16));
    outb(f, 0x1f6, 0xe0);
    outb(f, 0x1f7, cmd);
}

static void read_sector(struct vfx *f, uint8_t *out)
{
    assert_int_equal(inb(f, 0x3f6) & (IDE_STAT_DRQ | IDE_STAT_ERR | IDE_STAT_BSY), IDE_STAT_DRQ);
    for (int i = 0; i < IDE_SECTOR; i += 2) {
        uint16_t w = inw(f, 0x1f0);
        memcpy(out + i, &w, 2);
    }
}

static void expect_abort(struct vfx *f)
{
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_ERR);
    assert_int_equal(inb(f, 0x1f1), IDE_ERR_ABRT);
}

static void test_pci_functions(void **state)
{
    (void)state;
    struct vfx *f = vfx_new_machine(NULL, 64ull << 20, MACHINE_PC);
    assert_int_equal(cfg_fn(f, 1, 0, 0), 0x70008086);
    assert_int_equal((cfg_fn(f, 1, 0, 0xc) >> 16) & 0xff, 0x80);       /* multi-function */
    assert_int_equal(cfg_fn(f, 1, 0, 8) >> 8, 0x060100);                 /* PCI-to-ISA bridge */
    assert_int_equal(cfg_fn(f, 1, 1, 0), 0x70108086);
    assert_int_equal(cfg_fn(f, 1, 1, 8) >> 8, 0x010180);                 /* IDE, legacy mode */
    assert_int_equal(cfg_fn(f, 1, 2, 0), 0xffffffff);                    /* no function 2 */
    assert_int_equal(cfg_fn(f, 0, 1, 0), 0xffffffff);                    /* the host bridge has one */
    /* no disk: the channels read 0, so firmware polling for "not busy" ends at once */
    assert_int_equal(inb(f, 0x1f7), 0);
    assert_int_equal(inb(f, 0x177), 0);
    outb(f, 0x1f2, 0x55);
    assert_int_equal(inb(f, 0x1f2), 0);
    vfx_free(f);
}

static void test_identify(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk(NULL);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    /* SeaBIOS's probe: the registers hold what was written */
    outb(f, 0x1f6, 0xa0);
    outb(f, 0x1f2, 0x55);
    outb(f, 0x1f3, 0xaa);
    assert_int_equal(inb(f, 0x1f2), 0x55);
    assert_int_equal(inb(f, 0x1f3), 0xaa);
    assert_int_equal(inb(f, 0x1f6), 0xa0);
    outb(f, 0x1f7, 0xec);
    assert_int_equal(vfx_cur->irq[14], 1);
    uint16_t w[256];
    read_sector(f, (uint8_t *)w);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);   /* transfer over, DRQ gone */
    assert_int_equal(vfx_cur->irq[14], 0);                            /* the status read acknowledged */
    assert_int_equal(w[0], 0x0040);
    assert_int_equal(w[60] | (uint32_t)w[61] << 16, SECTORS);
    assert_int_equal(w[100] | (uint64_t)w[101] << 16, SECTORS);
    assert_int_equal(w[102] | w[103], 0);
    assert_true(w[49] & (1 << 9));                                    /* LBA */
    assert_true(w[83] & (1 << 10));                                   /* LBA48 */
    assert_int_equal(w[3], 16);
    assert_int_equal(w[6], 63);
    char model[41];
    for (int i = 0; i < 20; i++)
        model[2 * i] = (char)(w[27 + i] >> 8), model[2 * i + 1] = (char)w[27 + i];
    model[40] = 0;
    assert_memory_equal(model, "QEMU HARDDISK       ", 20);
    /* 32-bit data port reads (SeaBIOS with CONFIG_ATA_PIO32, Linux's ata_piix) */
    outb(f, 0x1f7, 0xec);
    uint32_t d = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, 0x1f0, &d, 4, false), 0);
    assert_int_equal(d, 0x0040u | (uint32_t)w[1] << 16);
    /* IDENTIFY PACKET DEVICE: an ATA disk refuses it, as SeaBIOS's ATAPI probe expects */
    outb(f, 0x3f6, IDE_CTL_SRST);
    assert_true(inb(f, 0x1f7) & IDE_STAT_BSY);
    outb(f, 0x3f6, 0);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    assert_int_equal(inb(f, 0x1f2), 1);                               /* the ATA signature */
    assert_int_equal(inb(f, 0x1f4) | inb(f, 0x1f5), 0);
    outb(f, 0x1f7, 0xa1);
    expect_abort(f);
    done(f);
}

static void test_read(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk(NULL);
    uint8_t got[IDE_SECTOR], want[IDE_SECTOR];
    cmd28(f, 0x20, 3, 2);
    for (int n = 3; n < 5; n++) {
        read_sector(f, got);
        file_sector(n, want);
        assert_memory_equal(got, want, IDE_SECTOR);
    }
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    assert_int_equal(inb(f, 0x1f3), 4);                               /* the last sector read */
    /* the last sector of the disk, by READ SECTORS EXT */
    cmd48(f, 0x24, SECTORS - 1, 1);
    read_sector(f, got);
    file_sector(SECTORS - 1, want);
    assert_memory_equal(got, want, IDE_SECTOR);
    /* CHS: cylinder 0, head 0, sector 2 is LBA 1 */
    outb(f, 0x1f2, 1);
    outb(f, 0x1f3, 2);
    outb(f, 0x1f4, 0);
    outb(f, 0x1f5, 0);
    outb(f, 0x1f6, 0xa0);
    outb(f, 0x1f7, 0x20);
    read_sector(f, got);
    file_sector(1, want);
    assert_memory_equal(got, want, IDE_SECTOR);
    done(f);
}

static void test_write(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk(NULL);
    uint8_t got[IDE_SECTOR];
    cmd28(f, 0x30, 2, 2);
    for (int s = 0; s < 2; s++) {
        assert_int_equal(inb(f, 0x3f6) & (IDE_STAT_DRQ | IDE_STAT_ERR), IDE_STAT_DRQ);
        for (int i = 0; i < IDE_SECTOR / 2; i++)
            outw(f, 0x1f0, (uint16_t)(0xa500 + s));
    }
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    for (int s = 0; s < 2; s++) {
        file_sector(2 + s, got);
        assert_int_equal(got[0], s);
        assert_int_equal(got[511], 0xa5);
    }
    cmd48(f, 0x34, 40, 1);
    for (int i = 0; i < IDE_SECTOR / 2; i++)
        outw(f, 0x1f0, 0x1234);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    file_sector(40, got);
    assert_int_equal(got[0] | got[1] << 8, 0x1234);
    file_sector(41, got);
    assert_int_equal(got[0], 41);                                     /* the next one untouched */
    outb(f, 0x1f7, 0xe7);                                             /* FLUSH CACHE */
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    done(f);
}

static void test_bad_addresses(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk(NULL);
    uint8_t before[IDE_SECTOR], after[IDE_SECTOR];
    file_sector(SECTORS - 1, before);
    cmd28(f, 0x20, SECTORS, 1);                  /* one past the end */
    expect_abort(f);
    cmd28(f, 0x30, SECTORS - 1, 2);              /* starts inside, ends outside */
    expect_abort(f);
    assert_int_equal(inb(f, 0x3f6) & IDE_STAT_DRQ, 0);
    outw(f, 0x1f0, 0xdead);                      /* data without a transfer: dropped */
    cmd28(f, 0x20, 0, 0);                        /* count 0 is 256 sectors: past the end */
    expect_abort(f);
    cmd48(f, 0x24, 0xffffffffffffull, 1);
    expect_abort(f);
    cmd48(f, 0x34, 1ull << 40, 1);
    expect_abort(f);
    cmd48(f, 0x42, SECTORS - 1, 2);              /* READ VERIFY EXT */
    expect_abort(f);
    /* CHS outside the geometry: sector 0, a head past 15 is not expressible, sector 64 */
    outb(f, 0x1f2, 1);
    outb(f, 0x1f3, 0);
    outb(f, 0x1f6, 0xa0);
    outb(f, 0x1f7, 0x20);
    expect_abort(f);
    outb(f, 0x1f3, 64);
    outb(f, 0x1f7, 0x20);
    expect_abort(f);
    file_sector(SECTORS - 1, after);
    assert_memory_equal(before, after, IDE_SECTOR);
    /* a good command afterwards works */
    cmd28(f, 0x40, SECTORS - 1, 1);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    assert_int_equal(inb(f, 0x1f1), 0);
    done(f);
}

static void test_bad_commands(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk(NULL);
    static const uint8_t refused[] = { 0x00, 0xff, 0xa0, 0xa1, 0x08, 0xc4 };
    for (size_t i = 0; i < sizeof(refused); i++) {
        outb(f, 0x1f6, 0xe0);
        outb(f, 0x1f7, refused[i]);
        expect_abort(f);
    }
    outb(f, 0x1f1, 0x03);                        /* SET FEATURES: transfer mode */
    outb(f, 0x1f7, 0xef);
    assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    outb(f, 0x1f1, 0x42);                        /* an unknown feature */
    outb(f, 0x1f7, 0xef);
    expect_abort(f);
    static const uint8_t accepted[] = { 0x91, 0xe1, 0xe3, 0x10, 0x70, 0xea };
    for (size_t i = 0; i < sizeof(accepted); i++) {
        outb(f, 0x1f7, accepted[i]);
        assert_int_equal(inb(f, 0x1f7), IDE_STAT_DRDY | IDE_STAT_DSC);
    }
    /* no slave: status 0, commands ignored */
    outb(f, 0x1f6, 0xb0);
    assert_int_equal(inb(f, 0x1f7), 0);
    outb(f, 0x1f7, 0xec);
    assert_int_equal(inb(f, 0x1f7), 0);
    assert_int_equal(inb(f, 0x3f6), 0);
    outb(f, 0x1f6, 0xa0);
    assert_int_equal(inb(f, 0x3f6) & IDE_STAT_DRQ, 0);
    /* nIEN: no interrupt */
    outb(f, 0x3f6, IDE_CTL_NIEN);
    outb(f, 0x1f7, 0xe7);
    assert_int_equal(vfx_cur->irq[14], 0);
    done(f);
}

static void test_read_only(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk(",,readonly=on");
    uint8_t got[IDE_SECTOR];
    cmd28(f, 0x30, 0, 1);
    expect_abort(f);
    cmd28(f, 0x20, 0, 1);
    read_sector(f, got);
    assert_int_equal(got[511], 0x5a);
    done(f);
}

static uint8_t cmos(struct vfx *f, uint8_t idx)
{
    outb(f, 0x70, idx);
    return inb(f, 0x71);
}

/* the BIOS translation in CMOS 0x39, as QEMU sets it: none up to 1024 cylinders, LBA above */
static void test_cmos_translation(void **state)
{
    (void)state;
    struct vfx *f = pc_with_disk(NULL);
    assert_int_equal(cmos(f, 0x39), 0);
    done(f);
    char big[64];
    snprintf(big, sizeof(big), "/tmp/qkvm-test-ide-big-%d.img", (int)getpid());
    int fd = open(big, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1ll << 30), 0);   /* 2080 cylinders */
    close(fd);
    char dev[128];
    snprintf(dev, sizeof(dev), "ide-hd,drive=file=%s,,format=raw,,index=3", big);
    const char *devs[] = { dev, NULL };
    f = vfx_new_machine(devs, 64ull << 20, MACHINE_PC);
    assert_int_equal(cmos(f, 0x39), 0x40);           /* place 3: bits 7:6 */
    /* IDENTIFY on the secondary slave: 1 GiB in sectors */
    outb(f, 0x176, 0xb0);
    outb(f, 0x177, 0xec);
    uint16_t w[256];
    for (int i = 0; i < 256; i++)
        w[i] = inw(f, 0x170);
    assert_int_equal(w[60] | (uint32_t)w[61] << 16, 1u << 21);
    assert_int_equal(w[1], 2080);
    assert_int_equal(inb(f, 0x177), IDE_STAT_DRDY | IDE_STAT_DSC);
    assert_int_equal(inb(f, 0x1f7), 0);              /* the primary channel is empty */
    vfx_free(f);
    unlink(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pci_functions),
        cmocka_unit_test(test_identify),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_bad_commands),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_cmos_translation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
