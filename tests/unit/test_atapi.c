/* The ATAPI CD-ROM: the packet parser (hw/atapi.c) on its own, with well-formed and hostile
 * packets (every opcode with random fields, addresses and counts at their limits), and the
 * drive on the PC machine's secondary IDE channel driven through the ports as SeaBIOS and
 * Linux's ata_piix drive it: the packet signature, IDENTIFY PACKET DEVICE, PACKET with its
 * interrupt reasons and byte counts, READ(10)/(12) compared with the image file, sense data for
 * no medium, a bad address and an unknown command, and a medium change seen by the guest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>

#include <errno.h>

#include "block/block.h"
#include "hw/atapi.h"
#include "hw/ide.h"
#include "ide_fixture.h"

#define CD_SECTORS 16   /* the test image: sector n is 2048 bytes of (n * 7 + offset / 256) */

static char img[64];

static void make_image(void)
{
    snprintf(img, sizeof(img), "/tmp/qkvm-test-atapi-%d.iso", (int)getpid());
    int fd = open(img, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    uint8_t sec[ATAPI_SECTOR];
    for (int n = 0; n < CD_SECTORS; n++) {
        for (int i = 0; i < ATAPI_SECTOR; i++)
            sec[i] = (uint8_t)(n * 7 + i / 256);
        assert_int_equal(write(fd, sec, sizeof(sec)), sizeof(sec));
    }
    close(fd);
}

static void file_sector(int n, uint8_t *out)
{
    int fd = open(img, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, out, ATAPI_SECTOR, (off_t)n * ATAPI_SECTOR), ATAPI_SECTOR);
    close(fd);
}

/* ---- the parser ---- */

static struct atapi_state loaded(void)
{
    return (struct atapi_state){ .sectors = 100 };
}

static void run(struct atapi_state *s, const uint8_t *cdb, uint8_t *buf, struct atapi_result *r)
{
    uint8_t c[ATAPI_PACKET_SIZE] = { 0 };
    memcpy(c, cdb, ATAPI_PACKET_SIZE);
    atapi_parse(s, c, buf, r);
}

static void expect_sense(struct atapi_state *s, const struct atapi_result *r, uint8_t key, uint8_t asc)
{
    assert_int_equal(r->action, ATAPI_ERROR);
    assert_int_equal(s->sense_key, key);
    assert_int_equal(s->asc, asc);
}

static void test_parse_inquiry_capacity(void **state)
{
    (void)state;
    struct atapi_state s = loaded();
    uint8_t buf[ATAPI_REPLY_MAX], cdb[12] = { 0x12, 0, 0, 0, 36 };
    struct atapi_result r;
    run(&s, cdb, buf, &r);
    assert_int_equal(r.action, ATAPI_DATA_IN);
    assert_int_equal(r.len, 36);
    assert_int_equal(buf[0], 0x05);   /* CD/DVD device */
    assert_int_equal(buf[1], 0x80);   /* removable */
    assert_memory_equal(buf + 8, "QEMU    QEMU DVD-ROM    2.5+", 28);
    cdb[4] = 5;                       /* the allocation length cuts the reply */
    run(&s, cdb, buf, &r);
    assert_int_equal(r.len, 5);
    cdb[4] = 0;                       /* nothing asked for: no data phase at all */
    run(&s, cdb, buf, &r);
    assert_int_equal(r.action, ATAPI_OK);
    cdb[1] = 1, cdb[4] = 36;          /* vital product data: not offered */
    run(&s, cdb, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);

    uint8_t cap[12] = { 0x25 };
    run(&s, cap, buf, &r);
    assert_int_equal(r.action, ATAPI_DATA_IN);
    assert_int_equal(r.len, 8);
    uint8_t want[8] = { 0, 0, 0, 99, 0, 0, 8, 0 };   /* last LBA 99, 2048-byte blocks */
    assert_memory_equal(buf, want, 8);
}

static void test_parse_read(void **state)
{
    (void)state;
    struct atapi_state s = loaded();
    uint8_t buf[ATAPI_REPLY_MAX];
    struct atapi_result r;
    uint8_t r10[12] = { 0x28, 0, 0, 0, 0, 98, 0, 0, 2 };   /* LBA 98, 2 sectors: the last two */
    run(&s, r10, buf, &r);
    assert_int_equal(r.action, ATAPI_READ);
    assert_int_equal(r.lba, 98);
    assert_int_equal(r.count, 2);
    r10[8] = 3;                                              /* one past the end */
    run(&s, r10, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    r10[8] = 0;                                              /* no sectors: done, nothing moved */
    run(&s, r10, buf, &r);
    assert_int_equal(r.action, ATAPI_OK);
    uint8_t r12[12] = { 0xa8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };   /* hostile: all ones */
    run(&s, r12, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    uint8_t r12b[12] = { 0xa8, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff };   /* count wraps past 2^32 with the LBA */
    run(&s, r12b, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
    uint8_t rcd[12] = { 0xbe, 0, 0, 0, 0, 10, 0, 0, 1, 0x10 };   /* READ CD, user data */
    run(&s, rcd, buf, &r);
    assert_int_equal(r.action, ATAPI_READ);
    assert_int_equal(r.lba, 10);
    rcd[9] = 0xf8;                                           /* raw sectors: not offered */
    run(&s, rcd, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
}

static void test_parse_no_medium_and_unknown(void **state)
{
    (void)state;
    struct atapi_state s = { .tray_open = true };
    uint8_t buf[ATAPI_REPLY_MAX];
    struct atapi_result r;
    uint8_t tur[12] = { 0x00 }, rs[12] = { 0x03, 0, 0, 0, 18 }, inq[12] = { 0x12, 0, 0, 0, 36 };
    run(&s, tur, buf, &r);
    expect_sense(&s, &r, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    run(&s, rs, buf, &r);                 /* the sense, fixed format, then it is spent */
    assert_int_equal(r.len, 18);
    assert_int_equal(buf[0], 0xf0);
    assert_int_equal(buf[2], SENSE_NOT_READY);
    assert_int_equal(buf[7], 10);
    assert_int_equal(buf[12], ASC_MEDIUM_NOT_PRESENT);
    run(&s, rs, buf, &r);
    assert_int_equal(buf[2], SENSE_NONE);
    run(&s, inq, buf, &r);                /* INQUIRY needs no medium */
    assert_int_equal(r.action, ATAPI_DATA_IN);
    uint8_t r10[12] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1 };
    run(&s, r10, buf, &r);
    expect_sense(&s, &r, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    uint8_t unknown[12] = { 0xff };
    run(&s, unknown, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    uint8_t write10[12] = { 0x2a, 0, 0, 0, 0, 0, 0, 0, 1 };   /* a CD-ROM takes no writes */
    s = loaded();
    run(&s, write10, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
}

static void test_parse_media_change(void **state)
{
    (void)state;
    struct atapi_state s = loaded();
    uint8_t buf[ATAPI_REPLY_MAX];
    struct atapi_result r;
    uint8_t r10[12] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1 }, rs[12] = { 0x03, 0, 0, 0, 18 };
    uint8_t gesn[12] = { 0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8 }, tur[12] = { 0 };
    atapi_change_medium(&s, 50);
    /* the event first: new media, present */
    run(&s, gesn, buf, &r);
    assert_int_equal(r.len, 8);
    assert_int_equal(buf[2], 4);
    assert_int_equal(buf[4], 2);
    assert_int_equal(buf[5], 2);
    run(&s, gesn, buf, &r);               /* reported once */
    assert_int_equal(buf[4], 0);
    run(&s, tur, buf, &r);                /* moves no data: does not take the change report */
    assert_int_equal(r.action, ATAPI_OK);
    run(&s, r10, buf, &r);                /* the tray went out ... */
    expect_sense(&s, &r, SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    run(&s, r10, buf, &r);                /* ... and came back */
    expect_sense(&s, &r, SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
    run(&s, r10, buf, &r);                /* until REQUEST SENSE takes the unit attention */
    expect_sense(&s, &r, SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
    run(&s, rs, buf, &r);
    assert_int_equal(buf[2], SENSE_UNIT_ATTENTION);
    assert_int_equal(buf[12], ASC_MEDIUM_MAY_HAVE_CHANGED);
    run(&s, r10, buf, &r);
    assert_int_equal(r.action, ATAPI_READ);
    uint8_t cap[12] = { 0x25 };
    run(&s, cap, buf, &r);
    assert_int_equal(buf[3], 49);         /* the new medium's size */

    /* the host takes it out: an open, empty tray */
    atapi_change_medium(&s, 0);
    run(&s, gesn, buf, &r);
    assert_int_equal(buf[5], 1);
    assert_false(atapi_medium_present(&s));
}

static void test_parse_tray(void **state)
{
    (void)state;
    struct atapi_state s = loaded();
    uint8_t buf[ATAPI_REPLY_MAX];
    struct atapi_result r;
    uint8_t lock[12] = { 0x1e, 0, 0, 0, 1 }, unlock[12] = { 0x1e }, eject[12] = { 0x1b, 0, 0, 0, 2 },
            load[12] = { 0x1b, 0, 0, 0, 3 };
    run(&s, lock, buf, &r);
    assert_true(s.locked);
    run(&s, eject, buf, &r);              /* locked: refused, the tray stays in */
    expect_sense(&s, &r, SENSE_NOT_READY, ASC_MEDIA_REMOVAL_PREVENTED);
    assert_int_equal(s.ascq, 2);
    assert_false(r.tray_moved);
    run(&s, unlock, buf, &r);
    run(&s, eject, buf, &r);
    assert_int_equal(r.action, ATAPI_OK);
    assert_true(r.tray_moved);
    assert_true(s.tray_open);
    run(&s, eject, buf, &r);              /* already open: nothing moves */
    assert_false(r.tray_moved);
    run(&s, load, buf, &r);
    assert_true(r.tray_moved);
    assert_true(atapi_medium_present(&s));
}

static void test_parse_pages(void **state)
{
    (void)state;
    struct atapi_state s = loaded();
    uint8_t buf[ATAPI_REPLY_MAX];
    struct atapi_result r;
    uint8_t ms[12] = { 0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 255 };
    run(&s, ms, buf, &r);
    assert_int_equal(r.len, 28);
    assert_int_equal(buf[1], 26);
    assert_int_equal(buf[8], 0x2a);
    ms[2] = 0x3f;                          /* all pages */
    run(&s, ms, buf, &r);
    assert_int_equal(r.len, 36);
    ms[2] = 0xc0 | 0x2a;                   /* saved values */
    run(&s, ms, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
    ms[2] = 0x05;                          /* a page this drive does not have */
    run(&s, ms, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);

    uint8_t toc[12] = { 0x43, 0, 0, 0, 0, 0, 0, 0, 255 };
    run(&s, toc, buf, &r);
    assert_int_equal(r.len, 20);           /* header, track 1, lead-out */
    assert_int_equal(buf[6], 1);
    assert_int_equal(buf[14], 0xaa);
    assert_int_equal(buf[19], 100);        /* the lead-out starts after the last sector */
    toc[1] = 2;                            /* MSF: 100 + 150 frames = 0:03:25 */
    run(&s, toc, buf, &r);
    assert_int_equal(buf[17], 0), assert_int_equal(buf[18], 3), assert_int_equal(buf[19], 25);
    toc[6] = 2;                            /* no track 2 */
    run(&s, toc, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
    uint8_t toc5[12] = { 0x43, 0, 5, 0, 0, 0, 0, 0, 255 };   /* format 5: not offered */
    run(&s, toc5, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);

    uint8_t gc[12] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 255 };
    run(&s, gc, buf, &r);
    assert_int_equal(r.action, ATAPI_DATA_IN);
    assert_int_equal(buf[7], 0x08);        /* current profile: CD-ROM (100 sectors) */
    gc[1] = 3;
    run(&s, gc, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
    uint8_t gesn[12] = { 0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8 };   /* asynchronous: refused */
    run(&s, gesn, buf, &r);
    expect_sense(&s, &r, SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
    uint8_t di[12] = { 0x51, 0, 0, 0, 0, 0, 0, 0, 34 };
    run(&s, di, buf, &r);
    assert_int_equal(r.len, 34);
    assert_int_equal(buf[2], 0x0e);
}

/* Every opcode with random fields, over a loaded, an empty and a changed drive: the parser
 * never claims a reply longer than its buffer, never a read off the medium, and always ends
 * in one of its four answers. */
static void test_parse_hostile(void **state)
{
    (void)state;
    uint32_t seed = 12345;
    for (int round = 0; round < 20000; round++) {
        uint8_t cdb[12], buf[ATAPI_REPLY_MAX + 16];
        for (int i = 0; i < 12; i++) {
            seed = seed * 1103515245 + 12345;
            cdb[i] = (uint8_t)(seed >> 16);
        }
        cdb[0] = (uint8_t)round;
        struct atapi_state s = loaded();
        if (round % 3 == 1)
            s = (struct atapi_state){ .tray_open = true };
        if (round % 3 == 2)
            atapi_change_medium(&s, 7);
        memset(buf + ATAPI_REPLY_MAX, 0xa5, 16);
        struct atapi_result r;
        atapi_parse(&s, cdb, buf, &r);
        assert_true(r.action <= ATAPI_ERROR);
        if (r.action == ATAPI_DATA_IN)
            assert_true(r.len > 0 && r.len <= ATAPI_REPLY_MAX);
        if (r.action == ATAPI_READ)
            assert_true(r.count > 0 && r.lba < s.sectors && r.count <= s.sectors - r.lba);
        for (int i = 0; i < 16; i++)
            assert_int_equal(buf[ATAPI_REPLY_MAX + i], 0xa5);
    }
}

/* ---- the drive on the IDE channel ---- */

#define BASE 0x170
#define CTL  0x376

static struct vfx *pc_with_cd(const char *drive)
{
    static char dev[256];
    make_image();
    if (drive)
        snprintf(dev, sizeof(dev), "ide-cd,drive=%s", drive);
    else
        snprintf(dev, sizeof(dev), "ide-cd,drive=file=%s,,format=raw,,media=cdrom,,index=2", img);
    const char *devs[] = { dev, NULL };
    return vfx_new_machine(devs, 64ull << 20, MACHINE_PC);
}

static void done(struct vfx *f)
{
    vfx_free(f);
    unlink(img);
}

/* PACKET with a byte count limit, then the 12 bytes; the drive answers at once */
static void packet(struct vfx *f, const uint8_t *cdb, uint16_t bcl)
{
    outb(f, BASE + 1, 0);                 /* PIO */
    outb(f, BASE + 4, (uint8_t)bcl);
    outb(f, BASE + 5, (uint8_t)(bcl >> 8));
    outb(f, BASE + 6, 0xa0);
    outb(f, BASE + 7, 0xa0);
    assert_int_equal(inb(f, CTL) & (IDE_STAT_DRQ | IDE_STAT_BSY | IDE_STAT_ERR), IDE_STAT_DRQ);
    assert_int_equal(inb(f, BASE + 2) & 3, 1);   /* interrupt reason: command (CoD) out */
    for (int i = 0; i < 12; i += 2)
        outw(f, BASE, (uint16_t)(cdb[i] | cdb[i + 1] << 8));
}

/* Reads DRQ blocks until the command ends; the byte count of each block in *blocks */
static unsigned read_reply(struct vfx *f, uint8_t *out, size_t max, unsigned *nblocks, unsigned *maxblock)
{
    unsigned got = 0;
    *nblocks = *maxblock = 0;
    for (;;) {
        uint8_t st = inb(f, BASE + 7);
        if (!(st & IDE_STAT_DRQ)) {
            assert_int_equal(inb(f, BASE + 2) & 3, 3);   /* status phase: IO and CoD */
            return got;
        }
        assert_int_equal(inb(f, BASE + 2) & 3, 2);       /* data in */
        unsigned n = (unsigned)(inb(f, BASE + 5) << 8 | inb(f, BASE + 4));
        assert_true(n > 0 && got + n <= max);
        (*nblocks)++;
        if (n > *maxblock)
            *maxblock = n;
        for (unsigned i = 0; i < n; i += 2) {
            uint16_t w = inw(f, BASE);
            memcpy(out + got + i, &w, 2);
        }
        got += n;
    }
}

static void test_ide_identify_packet(void **state)
{
    (void)state;
    struct vfx *f = pc_with_cd(NULL);
    outb(f, BASE + 6, 0xa0);
    /* the packet-device signature after reset, and no DRDY */
    outb(f, CTL, IDE_CTL_SRST);
    outb(f, CTL, 0);
    assert_int_equal(inb(f, BASE + 4), 0x14);
    assert_int_equal(inb(f, BASE + 5), 0xeb);
    assert_int_equal(inb(f, BASE + 7) & IDE_STAT_DRDY, 0);
    /* IDENTIFY DEVICE: aborted, the signature again (a driver that took it for a disk learns) */
    outb(f, BASE + 4, 0), outb(f, BASE + 5, 0);
    outb(f, BASE + 7, 0xec);
    assert_int_equal(inb(f, BASE + 7) & IDE_STAT_ERR, IDE_STAT_ERR);
    assert_int_equal(inb(f, BASE + 4), 0x14);
    assert_int_equal(inb(f, BASE + 5), 0xeb);
    /* READ SECTORS: aborted too */
    outb(f, BASE + 7, 0x20);
    assert_int_equal(inb(f, BASE + 1), IDE_ERR_ABRT);
    outb(f, BASE + 7, 0xa1);
    uint16_t id[256];
    assert_int_equal(inb(f, BASE + 7) & IDE_STAT_DRQ, IDE_STAT_DRQ);
    for (int i = 0; i < 256; i++)
        id[i] = inw(f, BASE);
    assert_int_equal(id[0], 0x85c0);      /* ATAPI, CD-ROM, removable, 12-byte packets */
    assert_int_equal(id[27], ('Q' << 8) | 'E');
    assert_int_equal(id[49] & (1 << 8), 1 << 8);   /* DMA through the bus master (test_bmdma) */
    assert_int_equal(inb(f, BASE + 7) & IDE_STAT_DRQ, 0);
    done(f);
}

static void test_ide_read(void **state)
{
    (void)state;
    struct vfx *f = pc_with_cd(NULL);
    uint8_t got[3 * ATAPI_SECTOR], want[ATAPI_SECTOR];
    unsigned nblocks, maxblock;
    /* READ(10) of sectors 13-15 with a 2048-byte limit, as SeaBIOS reads: a block a sector */
    uint8_t r10[12] = { 0x28, 0, 0, 0, 0, 13, 0, 0, 3 };
    packet(f, r10, 2048);
    assert_int_equal(read_reply(f, got, sizeof(got), &nblocks, &maxblock), 3 * ATAPI_SECTOR);
    assert_int_equal(nblocks, 3);
    for (int n = 0; n < 3; n++) {
        file_sector(13 + n, want);
        assert_memory_equal(got + n * ATAPI_SECTOR, want, ATAPI_SECTOR);
    }
    assert_int_equal(inb(f, BASE + 7) & IDE_STAT_ERR, 0);
    /* READ(12) of sector 2 with an odd limit of 1001: blocks of 1000 bytes and the rest */
    uint8_t r12[12] = { 0xa8, 0, 0, 0, 0, 2, 0, 0, 0, 1 };
    packet(f, r12, 1001);
    assert_int_equal(read_reply(f, got, sizeof(got), &nblocks, &maxblock), ATAPI_SECTOR);
    assert_int_equal(maxblock, 1000);
    assert_int_equal(nblocks, 3);
    file_sector(2, want);
    assert_memory_equal(got, want, ATAPI_SECTOR);
    /* past the end: CHECK CONDITION, sense key in the error register, then the sense */
    uint8_t bad[12] = { 0x28, 0, 0, 0, 0, 15, 0, 0, 2 };
    packet(f, bad, 2048);
    assert_int_equal(inb(f, BASE + 7) & (IDE_STAT_ERR | IDE_STAT_DRQ), IDE_STAT_ERR);
    assert_int_equal(inb(f, BASE + 1) >> 4, SENSE_ILLEGAL_REQUEST);
    assert_int_equal(inb(f, BASE + 2) & 3, 3);
    uint8_t rs[12] = { 0x03, 0, 0, 0, 18 };
    packet(f, rs, 2048);
    assert_int_equal(read_reply(f, got, sizeof(got), &nblocks, &maxblock), 18);
    assert_int_equal(got[2], SENSE_ILLEGAL_REQUEST);
    assert_int_equal(got[12], ASC_LBA_OUT_OF_RANGE);
    /* an unknown command */
    uint8_t unk[12] = { 0xee };
    packet(f, unk, 2048);
    assert_int_equal(inb(f, BASE + 1) >> 4, SENSE_ILLEGAL_REQUEST);
    /* reads of the data port outside a transfer give nothing and change nothing */
    assert_int_equal(inw(f, BASE), 0);
    /* READ CAPACITY through the port */
    uint8_t cap[12] = { 0x25 };
    packet(f, cap, 0);                    /* limit 0 is taken as the largest */
    assert_int_equal(read_reply(f, got, sizeof(got), &nblocks, &maxblock), 8);
    assert_int_equal(got[3], CD_SECTORS - 1);
    packet(f, cap, 1);                    /* a limit of 1: two bytes a block, never zero */
    assert_int_equal(read_reply(f, got, sizeof(got), &nblocks, &maxblock), 8);
    assert_int_equal(nblocks, 4);
    assert_int_equal(got[6], 8);          /* 2048 = 0x0800 */
    done(f);
}

static void test_ide_empty_and_change(void **state)
{
    (void)state;
    struct vfx *f = pc_with_cd("media=cdrom,,index=2");
    uint8_t got[ATAPI_SECTOR];
    unsigned nblocks, maxblock;
    uint8_t tur[12] = { 0 }, r10[12] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 1 };
    outb(f, BASE + 6, 0xa0);
    packet(f, tur, 2048);
    assert_int_equal(inb(f, BASE + 1) >> 4, SENSE_NOT_READY);
    /* the monitor's change, as its commands reach the drive */
    struct ide_channel *ch = NULL;
    assert_int_equal(ide_channel_find(&f->m, 1, &ch), 0);
    struct block *bs;
    char err[BLOCK_ERR_MAX];
    struct block_open_opts o = { .read_only = true };
    assert_int_equal(block_open(img, &o, &bs, err), 0);
    assert_int_equal(ide_channel_change_medium(ch, 0, bs, false), 0);
    struct ide_cd_info info;
    assert_true(ide_channel_cd_info(ch, 0, &info));
    assert_true(info.has_medium);
    assert_false(info.tray_open);
    assert_false(ide_channel_cd_info(ch, 1, &info));   /* no CD on the slave */
    packet(f, r10, 2048);
    assert_int_equal(inb(f, BASE + 1) >> 4, SENSE_NOT_READY);
    packet(f, r10, 2048);
    assert_int_equal(inb(f, BASE + 1) >> 4, SENSE_UNIT_ATTENTION);
    uint8_t rs[12] = { 0x03, 0, 0, 0, 18 };
    packet(f, rs, 2048);
    read_reply(f, got, sizeof(got), &nblocks, &maxblock);
    packet(f, r10, 2048);
    assert_int_equal(read_reply(f, got, sizeof(got), &nblocks, &maxblock), ATAPI_SECTOR);
    /* the guest locks the tray: eject without force is refused, with force it goes */
    uint8_t lock[12] = { 0x1e, 0, 0, 0, 1 };
    packet(f, lock, 2048);
    assert_int_equal(ide_channel_change_medium(ch, 0, NULL, false), -EBUSY);
    assert_int_equal(ide_channel_change_medium(ch, 0, NULL, true), 0);
    assert_true(ide_channel_cd_info(ch, 0, &info));
    assert_false(info.has_medium);
    assert_true(info.tray_open);
    done(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_inquiry_capacity),
        cmocka_unit_test(test_parse_read),
        cmocka_unit_test(test_parse_no_medium_and_unknown),
        cmocka_unit_test(test_parse_media_change),
        cmocka_unit_test(test_parse_tray),
        cmocka_unit_test(test_parse_pages),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_ide_identify_packet),
        cmocka_unit_test(test_ide_read),
        cmocka_unit_test(test_ide_empty_and_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
