/* virtio-blk and the virtio-pci transport, driven as a guest driver would through the BARs, on a
 * real image file: requests of every type, bad requests, read-only drives, interrupts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include "hw/pci_msix.h"
#include "util/evloop.h"
#include "virtio_fixture.h"

#define IMG_SIZE (1u << 20)
#define RINGS  0x100000ull
#define HDR    0x200000ull
#define DATA   0x210000ull
#define STATUS 0x220000ull
#define QSIZE  16

#define F_RO 5
#define F_FLUSH 9
#define F_DISCARD 13
#define F_WZ 14
#define F_INDIRECT 28
#define F_EVENT_IDX 29
#define F_VERSION_1 32

struct bfx {
    struct vfx *f;
    struct vdrv d;
    struct gring r;
    char img[64];
    int slot;
};

static char *device_line(const char *img, const char *extra)
{
    static char line[512];
    snprintf(line, sizeof(line), "virtio-blk-pci,addr=4,serial=qkvm-serial-0001,drive=file=%s,,format=raw%s", img, extra);
    return line;
}

/* other: a second -device line, or NULL. */
static struct bfx *bfx_open_with(const char *extra, uint64_t want, const char *other)
{
    struct bfx *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    snprintf(b->img, sizeof(b->img), "/tmp/qkvm-blk-%d.img", (int)getpid());
    int fd = open(b->img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    uint8_t buf[4096];
    for (unsigned off = 0; off < IMG_SIZE; off += sizeof(buf)) {
        for (unsigned i = 0; i < sizeof(buf); i++)
            buf[i] = (uint8_t)((off + i) * 7 + 1);
        assert_int_equal(pwrite(fd, buf, sizeof(buf), off), sizeof(buf));
    }
    close(fd);
    const char *devs[] = { device_line(b->img, extra), other, NULL };
    b->f = vfx_new(devs);
    b->slot = 4;
    b->d = vdrv_open(b->f, 4);
    uint8_t st = vdrv_negotiate(&b->d, want);
    assert_true(st & 8);
    b->r = gring_init(&b->f->m, QSIZE, RINGS);
    vdrv_setup_queue(&b->d, 0, QSIZE, b->r.desc, b->r.avail, b->r.used);
    vdrv_common_write(&b->d, 20, 1 | 2 | 4 | 8, 1);   /* DRIVER_OK */
    return b;
}

static struct bfx *bfx_open(const char *extra, uint64_t want)
{
    return bfx_open_with(extra, want, NULL);
}

static void bfx_close(struct bfx *b)
{
    vfx_free(b->f);
    unlink(b->img);
    free(b);
}

static void doorbell(struct bfx *b)
{
    vfx_mmio_write(b->f, b->d.bar + 0x3000, 0, 2);
    virtio_dev_poll(vfx_virtio(b->f, b->slot));
}

struct hdr { uint32_t type, reserved; uint64_t sector; };

/* header, one data buffer (in or out), status: three descriptors. Returns the status byte and
 * the used length in *used_len. */
static int request(struct bfx *b, uint32_t type, uint64_t sector, uint32_t len, bool data_in, uint32_t *used_len)
{
    struct hdr h = { type, 0, sector };
    memcpy(gptr(&b->f->m, HDR, sizeof(h)), &h, sizeof(h));
    *(uint8_t *)gptr(&b->f->m, STATUS, 1) = 0xee;
    gring_desc(&b->r, 0, HDR, sizeof(h), VIRTQ_DESC_F_NEXT, 1);
    if (len) {
        gring_desc(&b->r, 1, DATA, len, VIRTQ_DESC_F_NEXT | (data_in ? VIRTQ_DESC_F_WRITE : 0), 2);
        gring_desc(&b->r, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    } else {
        gring_desc(&b->r, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    }
    gring_publish(&b->r, 0);
    doorbell(b);
    uint32_t id;
    if (!gring_take_used(&b->r, &id, used_len))
        return -1;
    assert_int_equal(id, 0);
    return *(uint8_t *)gptr(&b->f->m, STATUS, 1);
}

static void file_read(struct bfx *b, uint64_t off, void *buf, size_t len)
{
    int fd = open(b->img, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static const uint64_t ALL = ~0ull;

static void test_config_and_features(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    struct virtio_dev *vd = vfx_virtio(b->f, 4);
    assert_true(vd->features & (1ull << F_FLUSH));
    assert_true(vd->features & (1ull << F_DISCARD));
    assert_false(vd->features & (1ull << F_RO));
    assert_true(vd->features & (1ull << F_VERSION_1));
    uint64_t dev = b->d.bar + 0x2000;
    assert_int_equal(vfx_mmio_read(b->f, dev + 0, 8), IMG_SIZE / 512);   /* capacity */
    assert_int_equal(vfx_mmio_read(b->f, dev + 20, 4), 512);              /* blk_size */
    assert_int_equal(vfx_mmio_read(b->f, dev + 12, 4), 254);              /* seg_max */
    assert_int_equal(vfx_mmio_read(b->f, dev + 60, 4), 0xffffffff);       /* past the config */
    /* PCI identity: modern virtio-blk, mass storage */
    assert_int_equal(vfx_cfg_read(b->f, 4, 0, 4), 0x10421af4);
    assert_int_equal(vfx_cfg_read(b->f, 4, 0x0b, 1), 0x01);
    bfx_close(b);
}

static void test_read_write(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    uint32_t used;
    assert_int_equal(request(b, 0, 3, 1024, true, &used), 0);
    assert_int_equal(used, 1025);
    uint8_t want[1024];
    file_read(b, 3 * 512, want, sizeof(want));
    assert_memory_equal(gptr(&b->f->m, DATA, 1024), want, 1024);
    /* write 4 KiB at sector 8, the file changes there only */
    uint8_t *data = gptr(&b->f->m, DATA, 4096);
    for (int i = 0; i < 4096; i++)
        data[i] = (uint8_t)(i ^ 0x5a);
    assert_int_equal(request(b, 1, 8, 4096, false, &used), 0);
    assert_int_equal(used, 1);
    uint8_t got[4096 + 512];
    file_read(b, 7 * 512, got, sizeof(got));
    assert_memory_equal(got + 512, data, 4096);
    assert_int_equal(got[0], (uint8_t)(7 * 512 * 7 + 1));
    assert_int_equal(request(b, 4, 0, 0, false, &used), 0);    /* flush */
    bfx_close(b);
}

static void test_bad_requests(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    uint32_t used;
    const uint64_t last = IMG_SIZE / 512 - 1;
    assert_int_equal(request(b, 0, last, 512, true, &used), 0);       /* the last sector: fine */
    assert_int_equal(request(b, 0, last, 1024, true, &used), 1);      /* past the end */
    assert_int_equal(request(b, 0, last + 1, 512, true, &used), 1);
    assert_int_equal(request(b, 0, UINT64_MAX / 256, 512, true, &used), 1);   /* sector * 512 overflows */
    assert_int_equal(request(b, 1, UINT64_MAX, 512, false, &used), 1);
    assert_int_equal(request(b, 0, 0, 100, true, &used), 1);          /* not whole sectors */
    assert_int_equal(request(b, 77, 0, 0, false, &used), 2);          /* unknown type: UNSUPP */
    assert_int_equal(request(b, 10, 0, 0, false, &used), 2);          /* get-lifetime: UNSUPP */
    /* the device still works after all of them */
    assert_int_equal(request(b, 0, 0, 512, true, &used), 0);
    assert_false(vfx_virtio(b->f, 4)->status & VIRTIO_STATUS_NEEDS_RESET);
    bfx_close(b);
}

static void test_get_id(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    uint32_t used;
    memset(gptr(&b->f->m, DATA, 20), 0xff, 20);
    assert_int_equal(request(b, 8, 0, 20, true, &used), 0);
    assert_int_equal(used, 21);
    assert_memory_equal(gptr(&b->f->m, DATA, 20), "qkvm-serial-0001\0\0\0\0", 20);
    bfx_close(b);
}

struct range { uint64_t sector; uint32_t num, flags; };

static int range_request(struct bfx *b, uint32_t type, const struct range *r, unsigned n)
{
    memcpy(gptr(&b->f->m, DATA, n * sizeof(*r)), r, n * sizeof(*r));
    uint32_t used;
    return request(b, type, 0, n * (uint32_t)sizeof(*r), false, &used);
}

static void test_discard_and_write_zeroes(void **state)
{
    (void)state;
    struct bfx *b = bfx_open(",,discard=unmap", ALL);
    struct range r[2] = { { 16, 16, 0 }, { 64, 8, 0 } };
    assert_int_equal(range_request(b, 13, r, 2), 0);            /* write zeroes */
    uint8_t got[8192], zero[8192] = { 0 };
    file_read(b, 16 * 512, got, 8192);
    assert_memory_equal(got, zero, 8192);
    file_read(b, 64 * 512, got, 4096);
    assert_memory_equal(got, zero, 4096);
    file_read(b, 72 * 512, got, 512);
    assert_int_equal(got[0], (uint8_t)(72 * 512 * 7 + 1));
    r[0] = (struct range){ 128, 8, 0 };
    assert_int_equal(range_request(b, 11, r, 1), 0);            /* discard reads back as zeros */
    file_read(b, 128 * 512, got, 4096);
    assert_memory_equal(got, zero, 4096);
    r[0].flags = 1;                                              /* unmap is for write-zeroes only */
    assert_int_equal(range_request(b, 11, r, 1), 2);
    r[0].flags = 2;
    assert_int_equal(range_request(b, 13, r, 1), 2);
    r[0] = (struct range){ IMG_SIZE / 512 - 4, 8, 0 };          /* past the end */
    assert_int_equal(range_request(b, 13, r, 1), 1);
    uint32_t used;                                               /* a range list of a bad size */
    assert_int_equal(request(b, 13, 0, 12, false, &used), 1);
    bfx_close(b);
}

static void test_read_only(void **state)
{
    (void)state;
    struct bfx *b = bfx_open(",,readonly=on", ALL);
    assert_true(vfx_virtio(b->f, 4)->features & (1ull << F_RO));
    uint8_t before[512], after[512];
    file_read(b, 0, before, 512);
    memset(gptr(&b->f->m, DATA, 512), 0, 512);
    uint32_t used;
    assert_int_equal(request(b, 1, 0, 512, false, &used), 1);
    struct range r = { 0, 8, 0 };
    assert_int_equal(range_request(b, 13, &r, 1), 1);
    assert_int_equal(range_request(b, 11, &r, 1), 1);
    file_read(b, 0, after, 512);
    assert_memory_equal(before, after, 512);
    assert_int_equal(request(b, 0, 0, 512, true, &used), 0);   /* reads still work */
    bfx_close(b);
}

/* A write whose data the guest split over n descriptors of lens[] bytes, the pieces 4 KiB apart
 * in guest memory, taken from buf. Returns the status byte. */
static int split_write(struct bfx *b, uint64_t sector, const uint8_t *buf, const uint32_t *lens, unsigned n)
{
    struct hdr h = { 1, 0, sector };
    memcpy(gptr(&b->f->m, HDR, sizeof(h)), &h, sizeof(h));
    *(uint8_t *)gptr(&b->f->m, STATUS, 1) = 0xee;
    gring_desc(&b->r, 0, HDR, sizeof(h), VIRTQ_DESC_F_NEXT, 1);
    for (unsigned i = 0; i < n; i++) {
        memcpy(gptr(&b->f->m, DATA + 0x1000ull * i, lens[i]), buf, lens[i]);
        buf += lens[i];
        gring_desc(&b->r, (uint16_t)(1 + i), DATA + 0x1000ull * i, lens[i], VIRTQ_DESC_F_NEXT, (uint16_t)(2 + i));
    }
    gring_desc(&b->r, (uint16_t)(1 + n), STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    gring_publish(&b->r, 0);
    doorbell(b);
    uint32_t id, used;
    assert_int_equal(gring_take_used(&b->r, &id, &used), 1);
    return *(uint8_t *)gptr(&b->f->m, STATUS, 1);
}

/* A guessed raw format cannot be turned into another format by the guest, however it splits the
 * first sector over its buffers. */
static void test_probed_raw_protected(void **state)
{
    (void)state;
    struct bfx *b = calloc(1, sizeof(*b));
    snprintf(b->img, sizeof(b->img), "/tmp/qkvm-blkp-%d.img", (int)getpid());
    int fd = open(b->img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
    close(fd);
    char line[256];
    snprintf(line, sizeof(line), "virtio-blk-pci,addr=4,drive=file=%s", b->img);
    const char *devs[] = { line, NULL };
    b->f = vfx_new(devs);
    b->slot = 4;
    b->d = vdrv_open(b->f, 4);
    vdrv_negotiate(&b->d, ALL);
    b->r = gring_init(&b->f->m, QSIZE, RINGS);
    vdrv_setup_queue(&b->d, 0, QSIZE, b->r.desc, b->r.avail, b->r.used);
    vdrv_common_write(&b->d, 20, 15, 1);
    memcpy(gptr(&b->f->m, DATA, 4), "QFI\xfb", 4);
    uint32_t used;
    assert_int_equal(request(b, 1, 0, 512, false, &used), 1);
    assert_int_equal(request(b, 1, 8, 512, false, &used), 0);   /* elsewhere: fine */

    uint8_t sec[1024] = { 0 }, zero[1024] = { 0 }, got[1024];
    memcpy(sec, "QFI\xfb\0\0\0\3", 8);
    assert_int_equal(split_write(b, 0, sec, (uint32_t[]){ 1, 511 }, 2), 1);
    assert_int_equal(split_write(b, 0, sec, (uint32_t[]){ 1, 2, 509 }, 3), 1);
    assert_int_equal(split_write(b, 0, sec, (uint32_t[]){ 3, 1021 }, 2), 1);   /* sectors 0 and 1 */
    memcpy(sec, "LUKS\xba\xbe\0\1", 8);
    assert_int_equal(split_write(b, 0, sec, (uint32_t[]){ 4, 4, 504 }, 3), 1);
    memset(sec, 0, 8);
    memcpy(sec + 0x40, "\x7f\x10\xda\xbe", 4);                                /* VDI: not at 0 */
    assert_int_equal(split_write(b, 0, sec, (uint32_t[]){ 0x41, 512 - 0x41 }, 2), 1);
    file_read(b, 0, got, 1024);
    assert_memory_equal(got, zero, 1024);
    /* an ordinary first sector, split the same way, is written as it is */
    for (unsigned i = 0; i < sizeof(sec); i++)
        sec[i] = (uint8_t)(i * 13 + 5);
    assert_int_equal(split_write(b, 0, sec, (uint32_t[]){ 1, 2, 1021 }, 3), 0);
    file_read(b, 0, got, 1024);
    assert_memory_equal(got, sec, 1024);
    bfx_close(b);
}

/* Header and data in one descriptor, data and status in another, through an indirect table. */
static void test_any_layout_indirect(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    uint8_t *buf = gptr(&b->f->m, DATA, 16 + 512);
    struct hdr h = { 1, 0, 40 };
    memcpy(buf, &h, 16);
    memset(buf + 16, 0x42, 512);
    const uint64_t table = 0x230000;
    struct virtq_desc t[2] = {
        { DATA, 16 + 512, VIRTQ_DESC_F_NEXT, 1 },
        { STATUS, 1, VIRTQ_DESC_F_WRITE, 0 },
    };
    memcpy(gptr(&b->f->m, table, sizeof(t)), t, sizeof(t));
    gring_desc(&b->r, 5, table, sizeof(t), VIRTQ_DESC_F_INDIRECT, 0);
    gring_publish(&b->r, 5);
    doorbell(b);
    uint32_t id, len;
    assert_int_equal(gring_take_used(&b->r, &id, &len), 1);
    assert_int_equal(id, 5);
    assert_int_equal(*(uint8_t *)gptr(&b->f->m, STATUS, 1), 0);
    uint8_t got[512];
    file_read(b, 40 * 512, got, 512);
    assert_int_equal(got[0], 0x42);
    assert_int_equal(got[511], 0x42);
    /* read it back: data and status in one writable buffer */
    memcpy(buf, &(struct hdr){ 0, 0, 40 }, 16);
    gring_desc(&b->r, 0, DATA, 16, VIRTQ_DESC_F_NEXT, 1);
    gring_desc(&b->r, 1, DATA + 0x1000, 513, VIRTQ_DESC_F_WRITE, 0);
    gring_publish(&b->r, 0);
    doorbell(b);
    assert_int_equal(gring_take_used(&b->r, &id, &len), 1);
    assert_int_equal(len, 513);
    uint8_t *rd = gptr(&b->f->m, DATA + 0x1000, 513);
    assert_int_equal(rd[0], 0x42);
    assert_int_equal(rd[512], 0);   /* status */
    bfx_close(b);
}

static void test_broken_chain_needs_reset(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    struct virtio_dev *vd = vfx_virtio(b->f, 4);
    gring_desc(&b->r, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    gring_desc(&b->r, 1, 0xd0000000ull, 4096, VIRTQ_DESC_F_WRITE, 0);   /* not RAM */
    gring_publish(&b->r, 0);
    doorbell(b);
    assert_true(vdrv_common_read(&b->d, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
    uint32_t id, len;
    assert_int_equal(gring_take_used(&b->r, &id, &len), 0);
    /* a request without a status byte is a broken driver too; a reset brings the device back */
    vdrv_negotiate(&b->d, ALL);
    assert_false(vd->status & VIRTIO_STATUS_NEEDS_RESET);
    b->r = gring_init(&b->f->m, QSIZE, RINGS);
    vdrv_setup_queue(&b->d, 0, QSIZE, b->r.desc, b->r.avail, b->r.used);
    vdrv_common_write(&b->d, 20, 15, 1);
    gring_desc(&b->r, 0, HDR, 16, 0, 0);
    gring_publish(&b->r, 0);
    doorbell(b);
    assert_true(vd->status & VIRTIO_STATUS_NEEDS_RESET);
    vdrv_negotiate(&b->d, ALL);
    b->r = gring_init(&b->f->m, QSIZE, RINGS);
    vdrv_setup_queue(&b->d, 0, QSIZE, b->r.desc, b->r.avail, b->r.used);
    vdrv_common_write(&b->d, 20, 15, 1);
    assert_int_equal(request(b, 0, 0, 512, true, &len), 0);
    bfx_close(b);
}

static void test_queue_setup_checks(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    /* feature negotiation: a feature the device never offered fails FEATURES_OK */
    vdrv_common_write(&b->d, 20, 0, 1);
    vdrv_common_write(&b->d, 20, 3, 1);
    vdrv_common_write(&b->d, 8, 0, 4);
    vdrv_common_write(&b->d, 12, 1u << 31, 4);
    vdrv_common_write(&b->d, 8, 1, 4);
    vdrv_common_write(&b->d, 12, 1, 4);
    vdrv_common_write(&b->d, 20, 11, 1);
    assert_false(vdrv_common_read(&b->d, 20, 1) & 8);
    /* without VERSION_1 too */
    vdrv_common_write(&b->d, 20, 0, 1);
    vdrv_common_write(&b->d, 20, 3, 1);
    vdrv_common_write(&b->d, 8, 1, 4);
    vdrv_common_write(&b->d, 12, 0, 4);
    vdrv_common_write(&b->d, 20, 11, 1);
    assert_false(vdrv_common_read(&b->d, 20, 1) & 8);
    /* queue size: the device's maximum reads back, a non-power of two fails at enable */
    vdrv_negotiate(&b->d, ALL);
    vdrv_common_write(&b->d, 22, 0, 2);
    assert_int_equal(vdrv_common_read(&b->d, 24, 2), 256);
    vdrv_common_write(&b->d, 24, 100, 2);
    vdrv_common_write(&b->d, 28, 1, 2);
    assert_int_equal(vdrv_common_read(&b->d, 28, 2), 0);
    assert_true(vdrv_common_read(&b->d, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
    /* rings outside RAM */
    vdrv_negotiate(&b->d, ALL);
    vdrv_setup_queue(&b->d, 0, 16, 0xf0000000ull, RINGS, RINGS + 0x1000);
    assert_int_equal(vdrv_common_read(&b->d, 28, 2), 0);
    assert_true(vdrv_common_read(&b->d, 20, 1) & VIRTIO_STATUS_NEEDS_RESET);
    /* a queue that does not exist reads as zeros and ignores writes */
    vdrv_negotiate(&b->d, ALL);
    vdrv_common_write(&b->d, 22, 5, 2);
    assert_int_equal(vdrv_common_read(&b->d, 24, 2), 0);
    vdrv_common_write(&b->d, 28, 1, 2);
    assert_int_equal(vdrv_common_read(&b->d, 28, 2), 0);
    /* wrong access widths are ignored */
    vdrv_common_write(&b->d, 22, 0, 4);
    assert_int_equal(vdrv_common_read(&b->d, 22, 2), 5);
    assert_int_equal(vdrv_common_read(&b->d, 18, 2), 1);    /* num_queues */
    bfx_close(b);
}

static void test_interrupts(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL & ~(1ull << F_EVENT_IDX));
    struct virtio_dev *vd = vfx_virtio(b->f, 4);
    unsigned gsi = vd->pci.gsi;
    /* INTx: ISR bit 0 and the line; reading ISR clears both */
    uint32_t used;
    assert_int_equal(request(b, 0, 0, 512, true, &used), 0);
    assert_int_equal(b->f->irq[gsi], 1);
    assert_int_equal(vfx_mmio_read(b->f, b->d.bar + 0x1000, 1), 1);
    assert_int_equal(b->f->irq[gsi], 0);
    assert_int_equal(vfx_mmio_read(b->f, b->d.bar + 0x1000, 1), 0);
    /* MSI-X: queue 0 on vector 1, config on vector 0 */
    unsigned cap = 0x40;
    assert_int_equal(vfx_cfg_read(b->f, 4, cap, 1), PCI_CAP_ID_MSIX);
    vfx_cfg_write(b->f, 4, cap + 2, 0x8000, 2);
    for (int v = 0; v < 2; v++) {
        vfx_mmio_write(b->f, b->d.msix + 16 * v, 0xfee00000, 4);
        vfx_mmio_write(b->f, b->d.msix + 16 * v + 8, 0x30 + v, 4);
        vfx_mmio_write(b->f, b->d.msix + 16 * v + 12, 0, 4);
    }
    vdrv_common_write(&b->d, 16, 0, 2);
    vdrv_common_write(&b->d, 22, 0, 2);
    vdrv_common_write(&b->d, 26, 1, 2);
    assert_int_equal(vdrv_common_read(&b->d, 26, 2), 1);
    vdrv_common_write(&b->d, 26, 99, 2);                         /* no such vector */
    assert_int_equal(vdrv_common_read(&b->d, 26, 2), VIRTIO_NO_VECTOR);
    vdrv_common_write(&b->d, 26, 1, 2);
    int n = b->f->nmsi;
    assert_int_equal(request(b, 0, 0, 512, true, &used), 0);
    assert_int_equal(b->f->nmsi, n + 1);
    assert_int_equal(b->f->msi[n].data, 0x31);
    assert_int_equal(b->f->irq[gsi], 0);                         /* no INTx with MSI-X on */
    /* a broken chain: NEEDS_RESET and a config interrupt on vector 0 */
    gring_desc(&b->r, 0, 0xd0000000ull, 64, 0, 0);
    gring_publish(&b->r, 0);
    doorbell(b);
    assert_int_equal(b->f->nmsi, n + 2);
    assert_int_equal(b->f->msi[n + 1].data, 0x30);
    assert_int_equal(vdrv_common_read(&b->d, 21, 1), 1);         /* config generation moved */
    bfx_close(b);
}

static void test_event_idx_suppresses(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    struct virtio_dev *vd = vfx_virtio(b->f, 4);
    assert_true(vd->features & (1ull << F_EVENT_IDX));
    unsigned gsi = vd->pci.gsi;
    uint32_t used;
    gring_set_used_event(&b->r, 0);
    assert_int_equal(request(b, 0, 0, 512, true, &used), 0);
    assert_int_equal(b->f->irq[gsi], 1);
    vfx_mmio_read(b->f, b->d.bar + 0x1000, 1);
    /* the driver asks for no interrupt until used index 100 */
    gring_set_used_event(&b->r, 100);
    assert_int_equal(request(b, 0, 0, 512, true, &used), 0);
    assert_int_equal(b->f->irq[gsi], 0);
    /* the device re-armed doorbells at the next available index */
    assert_int_equal(gring_avail_event(&b->r), 2);
    bfx_close(b);
}

/* DMA into guest memory is reported to the accelerator (an emulator drops translated code). */
static void test_dma_reported(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    uint32_t used;
    b->f->dirty_bytes = 0;
    assert_int_equal(request(b, 0, 0, 4096, true, &used), 0);
    assert_int_equal(b->f->dirty_bytes, 4097);
    bfx_close(b);
}

/* --- a slow disk, for real: the write's data sits in a guest page that is not there yet, and
 * userfaultfd holds whoever touches it (the pwritev in the kernel, like a disk that does not
 * answer) until the test supplies the page. --- */
#define SLOW      0x400000ull
#define RNG_RINGS 0x500000ull
#define RNG_BUF   0x510000ull

struct slow_page {
    int uffd;
    uint8_t *host;
    uint8_t src[4096] __attribute__((aligned(4096)));
};

static bool slow_page_arm(struct slow_page *sp, struct machine *m, uint64_t gpa)
{
    sp->host = gptr(m, gpa, 4096);
    assert_int_equal(madvise(sp->host, 4096, MADV_DONTNEED), 0);
    for (unsigned i = 0; i < sizeof(sp->src); i++)
        sp->src[i] = (uint8_t)(i * 31 + 3);
    sp->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (sp->uffd < 0)
        return false;
    struct uffdio_api api = { .api = UFFD_API };
    struct uffdio_register reg = { .range = { (uintptr_t)sp->host, 4096 }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(sp->uffd, UFFDIO_API, &api) || ioctl(sp->uffd, UFFDIO_REGISTER, &reg)) {
        close(sp->uffd);
        return false;
    }
    return true;
}

/* Someone is stuck on the page. The bound only matters if nothing ever touches it. */
static bool slow_page_touched(struct slow_page *sp)
{
    struct pollfd p = { sp->uffd, POLLIN, 0 };
    struct uffd_msg msg;
    return poll(&p, 1, 60000) == 1 && read(sp->uffd, &msg, sizeof(msg)) == sizeof(msg) &&
           msg.event == UFFD_EVENT_PAGEFAULT;
}

static void slow_page_release(struct slow_page *sp)
{
    struct uffdio_copy c = { .dst = (uintptr_t)sp->host, .src = (uintptr_t)sp->src, .len = 4096 };
    ioctl(sp->uffd, UFFDIO_COPY, &c);
}

/* Releases the page when told, or after 10 s if the test itself is stuck behind the disk (which
 * is what a device that blocks others does): then "fired" says so and the test fails instead of
 * hanging. */
struct releaser {
    struct slow_page *sp;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool now, fired;
    pthread_t t;
};

static void *releaser_run(void *opaque)
{
    struct releaser *r = opaque;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&r->mu);
    while (!r->now && !r->fired)
        if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT)
            r->fired = true;
    pthread_mutex_unlock(&r->mu);
    slow_page_release(r->sp);
    return NULL;
}

static void releaser_start(struct releaser *r, struct slow_page *sp)
{
    *r = (struct releaser){ .sp = sp };
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    assert_int_equal(pthread_create(&r->t, NULL, releaser_run, r), 0);
}

/* Releases now; whether the safety release had fired already. */
static bool releaser_finish(struct releaser *r)
{
    pthread_mutex_lock(&r->mu);
    bool fired = r->fired;
    r->now = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->t, NULL);
    return fired;
}

/* The machine's I/O thread, as qkvm runs it: doorbells and completions are served there. */
static void *io_thread_run(void *opaque)
{
    struct vfx *f = opaque;
    evloop_run(f->m.loop);
    return NULL;
}

static void wait_used(struct gring *r)
{
    while (!gring_used_idx(r))
        sched_yield();
}

/* A write of the slow page to sector 8, rung through the doorbell only (the I/O thread runs it). */
static void post_slow_write(struct bfx *b)
{
    struct hdr h = { 1, 0, 8 };
    memcpy(gptr(&b->f->m, HDR, sizeof(h)), &h, sizeof(h));
    *(uint8_t *)gptr(&b->f->m, STATUS, 1) = 0xee;
    gring_desc(&b->r, 0, HDR, sizeof(h), VIRTQ_DESC_F_NEXT, 1);
    gring_desc(&b->r, 1, SLOW, 4096, VIRTQ_DESC_F_NEXT, 2);
    gring_desc(&b->r, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    gring_publish(&b->r, 0);
    vfx_mmio_write(b->f, b->d.bar + 0x3000, 0, 2);
}

/* While the disk is stuck in a write, its own registers still answer and another device's
 * requests are served: the disk's I/O is off the device lock and off the I/O thread. */
static void test_slow_disk_stalls_nothing_else(void **state)
{
    (void)state;
    struct bfx *b = bfx_open_with("", ALL, "virtio-rng-pci,addr=5");
    static struct slow_page sp;
    if (!slow_page_arm(&sp, &b->f->m, SLOW)) {
        bfx_close(b);
        skip();
    }
    struct vdrv rd = vdrv_open(b->f, 5);
    assert_true(vdrv_negotiate(&rd, ALL) & 8);
    struct gring rr = gring_init(&b->f->m, QSIZE, RNG_RINGS);
    vdrv_setup_queue(&rd, 0, QSIZE, rr.desc, rr.avail, rr.used);
    vdrv_common_write(&rd, 20, 15, 1);
    pthread_t io;
    assert_int_equal(pthread_create(&io, NULL, io_thread_run, b->f), 0);

    post_slow_write(b);
    bool stuck = slow_page_touched(&sp);
    struct releaser rel;
    releaser_start(&rel, &sp);
    uint64_t capacity = vfx_mmio_read(b->f, b->d.bar + 0x2000, 8);   /* the disk's own lock */
    gring_desc(&rr, 0, RNG_BUF, 64, VIRTQ_DESC_F_WRITE, 0);
    gring_publish(&rr, 0);
    vfx_mmio_write(b->f, rd.bar + 0x3000, 0, 2);
    wait_used(&rr);
    bool disk_done_first = gring_used_idx(&b->r) != 0;
    bool fired = releaser_finish(&rel);
    wait_used(&b->r);
    evloop_stop(b->f->m.loop, 0);
    pthread_join(io, NULL);

    assert_true(stuck);
    assert_int_equal(capacity, IMG_SIZE / 512);
    assert_false(fired);
    assert_false(disk_done_first);
    assert_int_equal(*(uint8_t *)gptr(&b->f->m, STATUS, 1), 0);
    uint8_t got[4096];
    file_read(b, 8 * 512, got, sizeof(got));
    assert_memory_equal(got, sp.src, sizeof(got));
    close(sp.uffd);
    bfx_close(b);
}

struct resetter {
    struct bfx *b;
    atomic_bool done;
    uint8_t status_at_return;
    pthread_t t;
};

static void *resetter_run(void *opaque)
{
    struct resetter *r = opaque;
    vdrv_common_write(&r->b->d, 20, 0, 1);
    r->status_at_return = *(volatile uint8_t *)gptr(&r->b->f->m, STATUS, 1);
    atomic_store(&r->done, true);
    return NULL;
}

/* A driver reset while the disk is stuck in a request returns only once that request is done
 * with the guest's buffers, and its completion never reaches the ring afterwards. */
static void test_reset_waits_for_request_in_progress(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    static struct slow_page sp;
    if (!slow_page_arm(&sp, &b->f->m, SLOW)) {
        bfx_close(b);
        skip();
    }
    struct virtio_dev *vd = vfx_virtio(b->f, 4);
    pthread_t io;
    assert_int_equal(pthread_create(&io, NULL, io_thread_run, b->f), 0);
    post_slow_write(b);
    bool stuck = slow_page_touched(&sp);
    /* the I/O thread handed the write over under the device lock: wait until it let go, so
     * that from here only the reset takes the lock */
    pthread_mutex_lock(&vd->lock);
    pthread_mutex_unlock(&vd->lock);
    static struct resetter rs;
    rs = (struct resetter){ .b = b };
    assert_int_equal(pthread_create(&rs.t, NULL, resetter_run, &rs), 0);
    /* the reset is under way once its thread holds the device lock (nothing else takes it now),
     * and it must not get past it while the request is stuck */
    bool returned_early = false;
    for (;;) {
        if (atomic_load(&rs.done)) {
            returned_early = true;
            break;
        }
        if (pthread_mutex_trylock(&vd->lock) == EBUSY)
            break;
        pthread_mutex_unlock(&vd->lock);
        sched_yield();
    }
    slow_page_release(&sp);
    pthread_join(rs.t, NULL);
    evloop_stop(b->f->m.loop, 0);
    pthread_join(io, NULL);
    assert_true(stuck);
    assert_false(returned_early);
    assert_int_equal(rs.status_at_return, 0);   /* the write had finished with the buffers */
    assert_int_equal(gring_used_idx(&b->r), 0); /* and was not completed after the reset */
    uint8_t got[4096];
    file_read(b, 8 * 512, got, sizeof(got));
    assert_memory_equal(got, sp.src, sizeof(got));
    /* the device works again after the driver sets it up anew */
    vdrv_negotiate(&b->d, ALL);
    b->r = gring_init(&b->f->m, QSIZE, RINGS);
    vdrv_setup_queue(&b->d, 0, QSIZE, b->r.desc, b->r.avail, b->r.used);
    vdrv_common_write(&b->d, 20, 15, 1);
    uint32_t used;
    assert_int_equal(request(b, 0, 8, 512, true, &used), 0);
    assert_memory_equal(gptr(&b->f->m, DATA, 512), sp.src, 512);
    close(sp.uffd);
    bfx_close(b);
}

/* Releases the slow page once the given thread sleeps (in the teardown's wait for the worker). */
struct sleeper_watch {
    struct slow_page *sp;
    pid_t tid;
    pthread_t t;
};

static void *release_when_asleep(void *opaque)
{
    struct sleeper_watch *w = opaque;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)w->tid);
    for (;;) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        if (!p || p[1] != ' ' || p[2] == 'S' || p[2] == 'D')
            break;
        sched_yield();
    }
    slow_page_release(w->sp);
    return NULL;
}

/* The machine is destroyed while the disk is stuck in a write: the teardown waits for the worker
 * (which still writes into guest RAM) before the transport and RAM go, and the write that was in
 * progress reaches the image. Under ASan a use after free here is a crash. */
static void test_teardown_mid_request(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    static struct slow_page sp;
    if (!slow_page_arm(&sp, &b->f->m, SLOW)) {
        bfx_close(b);
        skip();
    }
    pthread_t io;
    assert_int_equal(pthread_create(&io, NULL, io_thread_run, b->f), 0);
    post_slow_write(b);
    bool stuck = slow_page_touched(&sp);
    evloop_stop(b->f->m.loop, 0);
    pthread_join(io, NULL);
    static struct sleeper_watch w;
    w = (struct sleeper_watch){ .sp = &sp, .tid = gettid() };
    assert_int_equal(pthread_create(&w.t, NULL, release_when_asleep, &w), 0);
    vfx_free(b->f);
    pthread_join(w.t, NULL);
    assert_true(stuck);
    uint8_t got[4096];
    file_read(b, 8 * 512, got, sizeof(got));
    assert_memory_equal(got, sp.src, sizeof(got));
    close(sp.uffd);
    unlink(b->img);
    free(b);
}

/* More requests than the device has slots, in one go: all complete, in order, the data right. */
static void test_more_requests_than_slots(void **state)
{
    (void)state;
    struct bfx *b = bfx_open("", ALL);
    /* a 256-entry ring: 200 one-sector writes, each of its own sector and contents */
    b->r = gring_init(&b->f->m, 256, RINGS);
    vdrv_negotiate(&b->d, ALL);
    vdrv_setup_queue(&b->d, 0, 256, b->r.desc, b->r.avail, b->r.used);
    vdrv_common_write(&b->d, 20, 15, 1);
    const unsigned n = 200;
    for (unsigned i = 0; i < n; i++) {
        uint64_t hdr = 0x600000ull + 16ull * i, data = 0x700000ull + 512ull * i, st = 0x680000ull + i;
        struct hdr h = { 1, 0, 100 + i };
        memcpy(gptr(&b->f->m, hdr, 16), &h, 16);
        memset(gptr(&b->f->m, data, 512), (int)(i + 1), 512);
        *(uint8_t *)gptr(&b->f->m, st, 1) = 0xee;
    }
    /* chain j of a round takes descriptors 3j..3j+2: 85 chains a round, more than the slots */
    unsigned done = 0;
    while (done < n) {
        unsigned k = n - done < 85 ? n - done : 85;
        for (unsigned j = 0; j < k; j++) {
            unsigned i = done + j;
            uint16_t d = (uint16_t)(3 * j);
            gring_desc(&b->r, d, 0x600000ull + 16ull * i, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1));
            gring_desc(&b->r, (uint16_t)(d + 1), 0x700000ull + 512ull * i, 512, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 2));
            gring_desc(&b->r, (uint16_t)(d + 2), 0x680000ull + i, 1, VIRTQ_DESC_F_WRITE, 0);
            gring_publish(&b->r, d);
        }
        doorbell(b);
        for (unsigned j = 0; j < k; j++) {
            uint32_t id, len;
            assert_int_equal(gring_take_used(&b->r, &id, &len), 1);
            assert_int_equal(id, 3 * j);                          /* in the order given */
            assert_int_equal(*(uint8_t *)gptr(&b->f->m, 0x680000ull + done + j, 1), 0);
        }
        done += k;
    }
    for (unsigned i = 0; i < n; i++) {
        uint8_t got[512], want[512];
        memset(want, (int)(i + 1), 512);
        file_read(b, (100 + i) * 512ull, got, 512);
        assert_memory_equal(got, want, 512);
    }
    bfx_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_and_features),
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_get_id),
        cmocka_unit_test(test_discard_and_write_zeroes),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_probed_raw_protected),
        cmocka_unit_test(test_any_layout_indirect),
        cmocka_unit_test(test_broken_chain_needs_reset),
        cmocka_unit_test(test_queue_setup_checks),
        cmocka_unit_test(test_interrupts),
        cmocka_unit_test(test_event_idx_suppresses),
        cmocka_unit_test(test_dma_reported),
        cmocka_unit_test(test_slow_disk_stalls_nothing_else),
        cmocka_unit_test(test_reset_waits_for_request_in_progress),
        cmocka_unit_test(test_teardown_mid_request),
        cmocka_unit_test(test_more_requests_than_slots),
    };
    return cmocka_run_group_tests_name("virtio_blk", tests, NULL, NULL);
}
