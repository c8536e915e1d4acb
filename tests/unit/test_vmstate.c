/* Device state per machine and the state stream: two machines in one process keep their own
 * devices, and a machine's state saved to a buffer and loaded into a fresh machine reads back
 * the same through every register handler ("a unit test migrates between two"). Bad streams
 * (truncated, corrupt, from a newer qkvm, naming a device the machine lacks) are refused whole,
 * leaving the destination as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "accel/emu/cpu.h"
#include "accel/emu/emu.h"
#include "hw/pci.h"
#include "vm/acpi.h"
#include "vm/migration.h"
#include "vm/vcpu.h"
#include "vm/vmstate.h"
#include "virtio_fixture.h"
#include "irqchip_fixture.h"

static const char *const one_rng[] = { "virtio-rng-pci,addr=3", NULL };
static const char *const two_devs[] = { "virtio-rng-pci,addr=3", "virtio-rng-pci,addr=4", NULL };

static uint8_t pio_in(struct vfx *f, uint16_t port)
{
    uint8_t v = 0;
    bus_dispatch(&f->m.pio, port, &v, 1, false);
    return v;
}

static void pio_out(struct vfx *f, uint16_t port, uint8_t v)
{
    bus_dispatch(&f->m.pio, port, &v, 1, true);
}

static uint8_t cmos_read(struct vfx *f, uint8_t idx)
{
    pio_out(f, 0x70, idx);
    return pio_in(f, 0x71);
}

static void cmos_write(struct vfx *f, uint8_t idx, uint8_t v)
{
    pio_out(f, 0x70, idx);
    pio_out(f, 0x71, v);
}

static void test_two_machines_independent(void **state)
{
    (void)state;
    struct vfx *a = vfx_new(one_rng);
    struct vfx *b = vfx_new(one_rng);
    pio_out(a, 0x3ff, 0x5a);
    pio_out(b, 0x3ff, 0xa5);
    cmos_write(a, 0x40, 0x11);
    cmos_write(b, 0x40, 0x22);
    pio_out(a, ACPI_PM_BASE + 2, 0x01);   /* PM1 enable: timer overflow (no SCI from it) */
    pio_out(b, ACPI_PM_BASE + 2, 0x20);
    vfx_cfg_write(a, 3, 0x3c, 0x33, 1);   /* interrupt line: writable, no side effects */
    vfx_cfg_write(b, 3, 0x3c, 0x44, 1);
    assert_int_equal(pio_in(a, 0x3ff), 0x5a);
    assert_int_equal(pio_in(b, 0x3ff), 0xa5);
    assert_int_equal(cmos_read(a, 0x40), 0x11);
    assert_int_equal(cmos_read(b, 0x40), 0x22);
    assert_int_equal(pio_in(a, ACPI_PM_BASE + 2), 0x01);
    assert_int_equal(pio_in(b, ACPI_PM_BASE + 2), 0x20);
    assert_int_equal(vfx_cfg_read(a, 3, 0x3c, 1), 0x33);
    assert_int_equal(vfx_cfg_read(b, 3, 0x3c, 1), 0x44);
    assert_ptr_not_equal(pci_host_of(&a->m), pci_host_of(&b->m));
    vfx_free(b);
    /* a's devices outlive b's */
    assert_int_equal(pio_in(a, 0x3ff), 0x5a);
    assert_int_equal(cmos_read(a, 0x40), 0x11);
    vfx_free(a);
}

/* Programs machine a's serial port (divisor, line control, loopback FIFO bytes), CMOS and PCI
 * config (a moved BAR, the command register). */
static uint64_t program(struct vfx *a)
{
    pio_out(a, 0x3fb, 0x80);          /* DLAB */
    pio_out(a, 0x3f8, 0x0c);          /* 9600 baud */
    pio_out(a, 0x3f9, 0x00);
    pio_out(a, 0x3fb, 0x03);          /* 8N1 */
    pio_out(a, 0x3fc, 0x10);          /* loopback: what we send lands in the receive FIFO */
    for (int i = 0; i < 5; i++)
        pio_out(a, 0x3f8, (uint8_t)('A' + i));
    pio_out(a, 0x3f9, 0x01);          /* IER: receive interrupts */
    pio_out(a, 0x3ff, 0x77);
    for (int i = 0x0e; i < 0x80; i++)
        cmos_write(a, (uint8_t)i, (uint8_t)(i * 7 + 1));
    cmos_write(a, 0x0b, 0x06);        /* binary, 24 h */
    pio_out(a, ACPI_PM_BASE + 2, 0x21);
    pio_out(a, ACPI_PM_BASE + 3, 0x01);   /* power button enable */
    /* move BAR 4 of the rng up by 1 MiB */
    uint64_t bar = vfx_bar(a, 3, 4) + 0x100000;
    uint32_t lo = vfx_cfg_read(a, 3, 0x20, 4);
    vfx_cfg_write(a, 3, 0x20, (uint32_t)bar | (lo & 0xf), 4);
    vfx_cfg_write(a, 3, 0x24, (uint32_t)(bar >> 32), 4);
    vfx_cfg_write(a, 3, 0x3c, 0x0b, 1);
    assert_int_equal(vfx_bar(a, 3, 4), bar);
    return bar;
}

static void assert_same_devices(struct vfx *a, struct vfx *b)
{
    static const uint16_t ports[] = { 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3ff };
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
        assert_int_equal(pio_in(a, ports[i]), pio_in(b, ports[i]));
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(pio_in(a, (uint16_t)(ACPI_PM_BASE + i)), pio_in(b, (uint16_t)(ACPI_PM_BASE + i)));
    /* the FIFO, byte by byte, and the line status as it drains */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pio_in(a, 0x3fd), pio_in(b, 0x3fd));
        assert_int_equal(pio_in(a, 0x3f8), pio_in(b, 0x3f8));
    }
    for (int i = 0x0a; i < 0x80; i++)
        if (i != 0x00 && i != 0x02 && i != 0x04 && i != 0x32 && (i < 6 || i > 9))
            assert_int_equal(cmos_read(a, (uint8_t)i), cmos_read(b, (uint8_t)i));
    for (int slot = 0; slot < 8; slot++)
        for (unsigned off = 0; off < 256; off += 4)
            assert_int_equal(vfx_cfg_read(a, slot, off, 4), vfx_cfg_read(b, slot, off, 4));
}

static void test_migrate_between_two(void **state)
{
    (void)state;
    struct vfx *a = vfx_new(one_rng);
    uint64_t bar = program(a);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(vmstate_save(&a->m, &buf, &len), 0);
    struct vfx *b = vfx_new(one_rng);
    assert_int_not_equal(vfx_bar(b, 3, 4), bar);
    assert_int_not_equal(pio_in(b, 0x3ff), 0x77);
    char why[200] = "";
    assert_int_equal(vmstate_load(&b->m, buf, len, why, sizeof(why)), 0);
    /* the BAR decodes where a's did: the virtio common config answers there (num_queues = 1) */
    assert_int_equal(vfx_bar(b, 3, 4), bar);
    assert_int_equal(vfx_mmio_read(b, bar + 18, 2), 1);
    assert_int_equal(pio_in(b, 0x3fa) & 0x0f, 0x04);   /* IIR: received data pending */
    vfx_cur = a;
    assert_same_devices(a, b);
    /* and b's own stream is a's again (the stream is a function of the state) */
    uint8_t *buf2 = NULL;
    size_t len2 = 0;
    struct vfx *c = vfx_new(one_rng);
    program(c);
    assert_int_equal(vmstate_save(&c->m, &buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf);
    free(buf2);
    vfx_free(c);
    vfx_free(b);
    vfx_free(a);
}

static void fix_crc(uint8_t *buf, size_t len)
{
    uint32_t c = vmstate_crc32(buf, len - 4);
    for (int i = 0; i < 4; i++)
        buf[len - 4 + i] = (uint8_t)(c >> (8 * i));
}

/* Offset of section name's header (its tag byte). */
static size_t find_section(const uint8_t *buf, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 12; i + 2 + n < len; i++)
        if (buf[i] == 1 && buf[i + 1] == n && !memcmp(buf + i + 2, name, n))
            return i;
    fail_msg("no section %s", name);
    return 0;
}

static void expect_refused(struct vfx *b, const uint8_t *buf, size_t len, int err, const char *words)
{
    char why[200] = "";
    assert_int_equal(vmstate_load(&b->m, buf, len, why, sizeof(why)), err);
    if (!strstr(why, words))
        fail_msg("message '%s' does not say '%s'", why, words);
    /* nothing changed */
    assert_int_equal(pio_in(b, 0x3ff), 0x99);
    assert_int_equal(cmos_read(b, 0x40), 0x98);
}

static void test_bad_streams(void **state)
{
    (void)state;
    struct vfx *a = vfx_new(two_devs);
    program(a);
    uint8_t *buf = NULL, *two = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(vmstate_save(&a->m, &two, &len2), 0);
    vfx_free(a);
    a = vfx_new(one_rng);
    program(a);
    assert_int_equal(vmstate_save(&a->m, &buf, &len), 0);
    vfx_free(a);
    struct vfx *b = vfx_new(one_rng);
    pio_out(b, 0x3ff, 0x99);
    cmos_write(b, 0x40, 0x98);
    uint8_t *t = malloc(len);
    assert_non_null(t);

    /* every truncation */
    for (size_t n = 0; n < len; n++) {
        char why[200] = "";
        assert_int_not_equal(vmstate_load(&b->m, buf, n, why, sizeof(why)), 0);
        assert_true(why[0]);
    }
    expect_refused(b, buf, len - 1, -EINVAL, "checksum");
    /* a flipped bit anywhere */
    for (size_t i = 0; i < len; i += 97) {
        memcpy(t, buf, len);
        t[i] ^= 0x10;
        assert_int_not_equal(vmstate_load(&b->m, t, len, NULL, 0), 0);
    }
    memcpy(t, buf, len);
    t[len / 2] ^= 1;
    expect_refused(b, t, len, -EINVAL, "checksum");
    /* a device this machine does not have */
    expect_refused(b, two, len2, -ENOENT, "unknown section 'pci' instance 4");
    /* a newer version of a section */
    memcpy(t, buf, len);
    size_t s = find_section(t, len, "serial");
    t[s + 2 + 6 + 4] = 2;
    fix_crc(t, len);
    expect_refused(b, t, len, -EPROTONOSUPPORT, "section 'serial' is version 2, newer");
    /* a newer stream format */
    memcpy(t, buf, len);
    t[8] = 9;
    fix_crc(t, len);
    expect_refused(b, t, len, -EPROTONOSUPPORT, "format 9");
    /* a FIFO index out of range, with a good checksum: the device's own check */
    memcpy(t, buf, len);
    size_t pay = find_section(t, len, "serial") + 2 + 6 + 12;
    t[pay + 14 + 3] = 0x7f;          /* rx_head's top byte */
    fix_crc(t, len);
    expect_refused(b, t, len, -EINVAL, "receive FIFO index");
    /* a bool that is neither 0 nor 1 */
    memcpy(t, buf, len);
    t[pay + 9] = 2;                  /* thri_pending */
    fix_crc(t, len);
    expect_refused(b, t, len, -EINVAL, "invalid thri_pending");
    /* a section size that does not match its version */
    memcpy(t, buf, len);
    s = find_section(t, len, "rtc");
    t[s + 2 + 3 + 8] ^= 1;
    fix_crc(t, len);
    expect_refused(b, t, len, -EINVAL, "section 'rtc' holds");
    /* read-only PCI config (the vendor ID) differs: another device */
    memcpy(t, buf, len);
    s = find_section(t, len, "pci");
    while (t[s + 2 + 3] != 3)        /* instance 3: the rng */
        s = s + 1 + find_section(t + s + 1, len - s - 1, "pci");
    t[s + 2 + 3 + 12] ^= 0xff;
    fix_crc(t, len);
    expect_refused(b, t, len, -EINVAL, "read-only config space");
    /* garbage */
    memset(t, 0x41, len);
    expect_refused(b, t, len, -EINVAL, "not a qkvm device state stream");
    /* the good stream still loads after all that */
    assert_int_equal(vmstate_load(&b->m, buf, len, NULL, 0), 0);
    assert_int_equal(pio_in(b, 0x3ff), 0x77);
    free(t);
    free(buf);
    free(two);
    vfx_free(b);
}

/* A virtio-rng with a running queue: after the state (and the rings' RAM) moves to b, the
 * transport registers read the same and b serves the next chain where a left off. */
static void test_virtio_migrates(void **state)
{
    (void)state;
    struct vfx *a = vfx_new(one_rng);
    struct vdrv d = vdrv_open(a, 3);
    assert_true(vdrv_negotiate(&d, ~0ull) & 8);
    struct gring r = gring_init(&a->m, 8, 0x100000);
    vdrv_setup_queue(&d, 0, 8, r.desc, r.avail, r.used);
    vdrv_common_write(&d, 20, 15, 1);
    vfx_mmio_write(a, d.msix + 16, 0xfee01000, 4);   /* MSI-X vector 1: address, data */
    vfx_mmio_write(a, d.msix + 24, 0x4041, 4);
    gring_desc(&r, 0, 0x200000, 32, VIRTQ_DESC_F_WRITE, 0);
    gring_desc(&r, 1, 0x201000, 48, VIRTQ_DESC_F_WRITE, 0);
    gring_publish(&r, 0);
    vfx_mmio_write(a, d.bar + 0x3000, 0, 2);
    virtio_dev_poll(vfx_virtio(a, 3));
    uint32_t id, len;
    assert_int_equal(gring_take_used(&r, &id, &len), 1);
    uint8_t *buf = NULL;
    size_t n = 0;
    assert_int_equal(vmstate_save(&a->m, &buf, &n), 0);
    struct vfx *b = vfx_new(one_rng);
    /* RAM travels apart from device state: here, the rings and buffers */
    memcpy(gptr(&b->m, 0x100000, 0x102000), gptr(&a->m, 0x100000, 0x102000), 0x102000);
    char why[200] = "";
    assert_int_equal(vmstate_load(&b->m, buf, n, why, sizeof(why)), 0);
    struct vdrv e = vdrv_open(b, 3);
    assert_int_equal(e.bar, d.bar);
    static const struct { unsigned off, size; } regs[] = {
        { 20, 1 }, { 22, 2 }, { 24, 2 }, { 28, 2 }, { 32, 8 }, { 40, 8 }, { 48, 8 }, { 16, 2 },
    };
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
        assert_int_equal(vdrv_common_read(&d, regs[i].off, regs[i].size), vdrv_common_read(&e, regs[i].off, regs[i].size));
    for (unsigned sel = 0; sel < 2; sel++) {
        vdrv_common_write(&d, 8, sel, 4), vdrv_common_write(&e, 8, sel, 4);
        assert_int_equal(vdrv_common_read(&d, 12, 4), vdrv_common_read(&e, 12, 4));   /* driver features */
    }
    for (unsigned off = 0; off < 32; off += 4)
        assert_int_equal(vfx_mmio_read(b, e.msix + off, 4), vfx_mmio_read(a, d.msix + off, 4));
    assert_int_equal(vfx_mmio_read(b, e.msix + 24, 4), 0x4041);
    /* the driver goes on in b: chain 1 comes back as the second used entry */
    struct gring rb = r;
    rb.m = &b->m;
    gring_publish(&rb, 1);
    vfx_mmio_write(b, e.bar + 0x3000, 0, 2);
    virtio_dev_poll(vfx_virtio(b, 3));
    assert_int_equal(gring_used_idx(&rb), 2);
    assert_int_equal(gring_take_used(&rb, &id, &len), 1);
    assert_int_equal(id, 1);
    assert_int_equal(len, 48);

    /* a ring outside b's RAM is refused, and b is unchanged */
    uint8_t *t = malloc(n);
    assert_non_null(t);
    memcpy(t, buf, n);
    size_t s = find_section(t, n, "virtio-queue") + 2 + 12 + 12;
    t[s + 5 + 7] = 0x40;             /* desc's top byte */
    fix_crc(t, n);
    assert_int_equal(vmstate_load(&b->m, t, n, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "ring address (outside guest RAM)"));
    assert_int_equal(gring_used_idx(&rb), 2);
    free(t);
    free(buf);
    vfx_free(b);
    vfx_free(a);
}

static uint16_t pit_read_ch0(struct fx *f)
{
    uint8_t lo = fx_inb(f, 0x40);
    return (uint16_t)(lo | fx_inb(f, 0x40) << 8);
}

/* The interrupt controllers of a two-CPU machine, programmed, saved, and loaded into another
 * one a millisecond later: registers read back the same, and the running PIT and APIC timer
 * counts continue from where they were at the save (their times moved with the clock). */
static void test_irqchip_migrates(void **state)
{
    (void)state;
    struct fx *a = fx_new(2), *b = fx_new(2);
    fx_pic_init(a, 0);
    fx_outb(a, 0x21, 0xe8);                    /* mask IRQ 3, 5, 6, 7 */
    fx_pulse(a, 3);                            /* pending, masked: stays in IRR */
    fx_outb(a, 0x4d0, 0x20);                   /* ELCR: IRQ 5 level */
    fx_ioapic_write(a, 0x00, 0x05000000);      /* IOAPIC ID 5 */
    fx_ioapic_route(a, 9, 0x0100000000008041ull);
    fx_ioapic_route(a, 17, 0x0300000000010922ull);
    fx_outb(a, 0x43, 0x34);                    /* PIT ch0 mode 2, count 50000 */
    fx_outb(a, 0x40, 50000 & 0xff);
    fx_outb(a, 0x40, 50000 >> 8);
    for (int cpu = 0; cpu < 2; cpu++) {
        struct lapic *l = fx_lapic(a, cpu);
        fx_lapic_enable(a, cpu);
        lapic_mmio_write(l, 0x80, 0x20 + (uint32_t)cpu);   /* TPR */
        lapic_mmio_write(l, 0x3e0, 0x0b);                  /* divide by 1 */
        lapic_mmio_write(l, 0x320, 0x20040);               /* periodic, vector 0x40 */
        lapic_mmio_write(l, 0x380, 1000000000u);
    }
    fx_time += 12345;
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(vmstate_save(&a->m, &buf, &len), 0);
    uint16_t pit_a = pit_read_ch0(a);
    uint32_t cur_a = lapic_mmio_read(fx_lapic(a, 1), 0x390);
    fx_time += 1000000;                         /* the load comes a millisecond later */
    char why[200] = "";
    int ret = vmstate_load(&b->m, buf, len, why, sizeof(why));
    if (ret)
        fail_msg("load: %s", why);
    assert_int_equal(pit_read_ch0(b), pit_a);
    assert_int_equal(lapic_mmio_read(fx_lapic(b, 1), 0x390), cur_a);
    fx_time -= 1000000;                         /* a, read at b's moment of the same guest time */
    for (uint16_t port = 0x20; port <= 0xa0; port += 0x80) {
        assert_int_equal(fx_inb(a, (uint16_t)(port + 1)), fx_inb(b, (uint16_t)(port + 1)));   /* IMR */
        fx_outb(a, port, 0x0a), fx_outb(b, port, 0x0a);
        assert_int_equal(fx_inb(a, port), fx_inb(b, port));                                   /* IRR */
        fx_outb(a, port, 0x0b), fx_outb(b, port, 0x0b);
        assert_int_equal(fx_inb(a, port), fx_inb(b, port));                                   /* ISR */
    }
    assert_int_equal(fx_inb(a, 0x4d0), fx_inb(b, 0x4d0));
    assert_int_equal(fx_inb(b, 0x4d0), 0x20);
    for (uint32_t reg = 0; reg < 0x10 + 2 * 24; reg++)
        assert_int_equal(fx_ioapic_read(a, reg), fx_ioapic_read(b, reg));
    for (int cpu = 0; cpu < 2; cpu++)
        for (uint32_t off = 0x20; off < 0x400; off += 0x10)
            if (off != 0x390)
                assert_int_equal(lapic_mmio_read(fx_lapic(a, cpu), off), lapic_mmio_read(fx_lapic(b, cpu), off));
    assert_int_equal(lapic_mmio_read(fx_lapic(b, 0), 0x80), 0x20);

    /* a PIT count of 0 (a division by zero in the device) is refused */
    uint8_t *t = malloc(len);
    assert_non_null(t);
    memcpy(t, buf, len);
    size_t pay = find_section(t, len, "pit") + 2 + 3 + 12;
    memset(t + pay, 0, 4);
    fix_crc(t, len);
    assert_int_equal(vmstate_load(&b->m, t, len, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "section 'pit' instance 0: invalid count"));
    /* a stream for two CPUs does not load into one with one CPU */
    struct fx *c = fx_new(1);
    assert_int_equal(vmstate_load(&c->m, buf, len, why, sizeof(why)), -ENOENT);
    assert_non_null(strstr(why, "unknown section 'lapic' instance 1"));
    free(t);
    free(buf);
    fx_free(c);
    fx_free(b);
    fx_free(a);
}

/* A machine under the tcg accelerator: real vCPUs (never run) and the user-space irqchip. */
static struct vfx *tcg_machine(void)
{
    struct vfx *f = vfx_new_ram(NULL, 16 << 20);   /* for its bios file and config */
    machine_destroy(&f->m);
    f->cfg.accel = &accel_tcg;
    f->cfg.ncpus = 2;
    FILE *b = fopen(f->bios, "wb");
    assert_non_null(b);
    for (int i = 0; i < 65536; i++)
        fputc(0xf4, b);
    fclose(b);
    assert_int_equal(machine_create(&f->m, &f->cfg), 0);
    return f;
}

/* The software CPUs' registers (general, flags, segments, control, MSRs, x87, SSE) travel. */
static void test_tcg_cpu_migrates(void **state)
{
    (void)state;
    struct vfx *a = tcg_machine(), *b = tcg_machine();
    struct cpu_state s;
    cpu_state_reset(&s, true);
    for (int i = 0; i < 16; i++)
        s.gpr[i] = 0x1111111111111111ull * (uint64_t)(i + 1);
    s.rip = 0x100234;
    s.rflags = 0x2c7;                  /* CF PF ZF SF, IF */
    s.cr0 = 0x11;
    s.seg[SEG_CS] = cpu_segment_flat(0x10, 0xb, false);
    s.seg[SEG_DS] = s.seg[SEG_SS] = s.seg[SEG_ES] = cpu_segment_flat(0x18, 0x3, false);
    s.gdt = (struct cpu_table){ 0x5000, 0x27 };
    s.cr3 = 0x9000;
    struct cpu *ca = a->m.vcpus[1].accel_data;
    emu_cpu_set_state(ca, &s);
    ca->fpu.st[3] = 3.25L;
    ca->fpu.top = 5;
    ca->fpu.fcw = 0x27f;
    ca->xmm[7].q[1] = 0xfeedfacecafebeefull;
    ca->ymmh[15].q[1] = 0x0123456789abcdefull;   /* section version 2: YMM upper halves */
    ca->mxcsr = 0x1f80 | 0x3f;
    ca->lstar = 0xffffffff81000000ull;
    uint8_t *buf = NULL;
    size_t n = 0;
    assert_int_equal(vmstate_save(&a->m, &buf, &n), 0);
    char why[200] = "";
    assert_int_equal(vmstate_load(&b->m, buf, n, why, sizeof(why)), 0);
    for (int i = 0; i < 2; i++) {
        struct cpu_state sa, sb;
        emu_cpu_get_state(a->m.vcpus[i].accel_data, &sa);
        emu_cpu_get_state(b->m.vcpus[i].accel_data, &sb);
        assert_memory_equal(&sa, &sb, sizeof(sa));
    }
    struct cpu *cb = b->m.vcpus[1].accel_data;
    assert_int_equal(cb->r[R_R15], 0x1111111111111111ull * 16);
    assert_int_equal(cb->rip, 0x100234);
    assert_true(cb->fpu.st[3] == 3.25L);
    assert_int_equal(cb->fpu.top, 5);
    assert_int_equal(cb->fpu.fcw, 0x27f);
    assert_int_equal(cb->xmm[7].q[1], 0xfeedfacecafebeefull);
    assert_int_equal(cb->mxcsr, 0x1f80 | 0x3f);
    assert_int_equal(cb->lstar, 0xffffffff81000000ull);
    assert_int_equal(cb->csz, 4);         /* the mode was re-derived: 32-bit code */
    assert_int_equal(cb->ymmh[15].q[1], 0x0123456789abcdefull);
    assert_int_equal(cb->xcr0, 1);
    free(buf);
    /* an XCR0 with AVX state for a qemu64 CPU (no XSAVE) is refused, not loaded */
    ca->xcr0 = 7;
    buf = NULL;
    assert_int_equal(vmstate_save(&a->m, &buf, &n), 0);
    assert_int_equal(vmstate_load(&b->m, buf, n, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "XCR0"));
    free(buf);
    vfx_free(b);
    vfx_free(a);
}

/* Drops the section at off (its header and payload) from the stream. */
static size_t drop_section(uint8_t *buf, size_t len, size_t off)
{
    size_t n = buf[off + 1];
    uint32_t size = (uint32_t)buf[off + 2 + n + 8] | (uint32_t)buf[off + 2 + n + 9] << 8 |
                    (uint32_t)buf[off + 2 + n + 10] << 16 | (uint32_t)buf[off + 2 + n + 11] << 24;
    size_t whole = 2 + n + 12 + size;
    memmove(buf + off, buf + off + whole, len - off - whole);
    len -= whole;
    fix_crc(buf, len);
    return len;
}

/* A section marked optional (the i8042, fw_cfg: devices older streams had no state for) may be
 * missing, and the device keeps its own state; any other missing section is refused. A machine
 * with a blocker refuses to be saved, with the blocker's reason. */
static void test_optional_and_blocker(void **state)
{
    (void)state;
    struct vfx *a = vfx_new(one_rng);
    pio_out(a, 0x64, 0x60);     /* i8042 command byte: 0x45 on a, left as reset on b */
    pio_out(a, 0x60, 0x45);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(vmstate_save(&a->m, &buf, &len), 0);
    len = drop_section(buf, len, find_section(buf, len, "i8042"));
    struct vfx *b = vfx_new(one_rng);
    pio_out(b, 0x3ff, 0x99);
    cmos_write(b, 0x40, 0x98);
    char why[200] = "";
    assert_int_equal(vmstate_load(&b->m, buf, len, why, sizeof(why)), 0);
    assert_int_equal(pio_in(b, 0x3ff), pio_in(a, 0x3ff));   /* the rest came through */
    len = drop_section(buf, len, find_section(buf, len, "rtc"));
    pio_out(b, 0x3ff, 0x99);
    cmos_write(b, 0x40, 0x98);
    expect_refused(b, buf, len, -ENOENT, "the stream has no section 'rtc' instance 0");
    free(buf);

    assert_null(vmstate_blocker(&b->m));
    vmstate_add_blocker(&b->m, "ivshmem-plain: its shared memory is not in the stream");
    vmstate_add_blocker(&b->m, "a second reason");
    assert_string_equal(vmstate_blocker(&b->m), "ivshmem-plain: its shared memory is not in the stream");
    uint64_t written = 0;
    assert_int_equal(migration_save_fd(&b->m, -1, &written, why, sizeof(why)), -ENOTSUP);
    assert_non_null(strstr(why, "cannot save its state: ivshmem-plain"));
    vfx_free(b);
    vfx_free(a);
}

/* A variable-length buffer (VMS_VBUF): as many bytes in the stream as its length field says,
 * none of the rest; on load a length over the bound, or a section size other than what the
 * lengths add up to, refuses the stream and nothing changes. */
struct vbt {
    uint32_t a;
    uint32_t len;
    uint8_t buf[16];
    uint8_t tail;
};

static const struct vmstate_field vbt_fields[] = {
    VMSTATE_U32(struct vbt, a),
    VMSTATE_U32(struct vbt, len),
    VMSTATE_VBUFFER(struct vbt, buf, len, 16),
    VMSTATE_U8(struct vbt, tail),
    VMSTATE_END,
};

static const struct vmstate_desc vbt_desc = {
    .name = "vbt", .version = 1, .min_version = 1, .size = sizeof(struct vbt), .fields = vbt_fields,
};

/* buf with its last section (vbt's, at sec) replaced by one of payload plen bytes declaring size
 * declared; the result's length in *out_len. */
static uint8_t *vbt_stream(const uint8_t *buf, size_t sec, const uint8_t *payload, size_t plen, uint32_t declared,
                           size_t *out_len)
{
    size_t hdr = 2 + 3 + 8;             /* tag, name length, "vbt", instance, version */
    uint8_t *t = malloc(sec + hdr + 4 + plen + 5);
    assert_non_null(t);
    memcpy(t, buf, sec + hdr);
    for (int i = 0; i < 4; i++)
        t[sec + hdr + i] = (uint8_t)(declared >> (8 * i));
    memcpy(t + sec + hdr + 4, payload, plen);
    size_t n = sec + hdr + 4 + plen;
    t[n++] = 0xff;
    n += 4;
    fix_crc(t, n);
    *out_len = n;
    return t;
}

static void test_variable_buffer(void **state)
{
    (void)state;
    struct vfx *a = vfx_new(one_rng), *b = vfx_new(one_rng);
    struct vbt va = { .a = 0x11223344, .len = 5, .buf = { 1, 2, 3, 4, 5 }, .tail = 0x9e };
    struct vbt vb = { .a = 7, .len = 0, .tail = 1 };
    assert_int_equal(vmstate_register(&a->m, &vbt_desc, 0, &va), 0);
    assert_int_equal(vmstate_register(&b->m, &vbt_desc, 0, &vb), 0);
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    assert_int_equal(vmstate_save(&a->m, &buf, &len), 0);
    size_t sec = find_section(buf, len, "vbt");
    size_t pay = sec + 2 + 3 + 12;
    assert_int_equal(buf[pay - 4], 4 + 4 + 5 + 1);         /* the section's size: 5 bytes of buf */
    assert_int_equal(len, pay + 14 + 1 + 4);
    static const uint8_t want[14] = { 0x44, 0x33, 0x22, 0x11, 5, 0, 0, 0, 1, 2, 3, 4, 5, 0x9e };
    assert_memory_equal(buf + pay, want, 14);
    /* bytes past the length are not state: the same stream */
    va.buf[10] = 0x77;
    assert_int_equal(vmstate_save(&a->m, &buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf2);

    pio_out(b, 0x3ff, 0x99);
    cmos_write(b, 0x40, 0x98);
    uint8_t p[4 + 4 + 17 + 1];
    size_t tl = 0;
    uint8_t *t;
    /* a length over the bound (16), with the bytes to go with it */
    memcpy(p, want, 8);
    p[4] = 17;
    memset(p + 8, 0xab, 17);
    p[25] = 0;
    t = vbt_stream(buf, sec, p, 26, 26, &tl);
    expect_refused(b, t, tl, -EINVAL, "section 'vbt' instance 0: buf longer than its bound");
    free(t);
    /* 0xffffffff */
    memcpy(p, want, 14);
    memset(p + 4, 0xff, 4);
    t = vbt_stream(buf, sec, p, 14, 14, &tl);
    expect_refused(b, t, tl, -EINVAL, "buf longer than its bound");
    free(t);
    /* a size one byte more than the lengths say, and one byte less */
    memcpy(p, want, 14);
    p[14] = 0;
    t = vbt_stream(buf, sec, p, 15, 15, &tl);
    expect_refused(b, t, tl, -EINVAL, "section 'vbt' holds 15 bytes, its fields take 14");
    free(t);
    t = vbt_stream(buf, sec, p, 13, 13, &tl);
    expect_refused(b, t, tl, -EINVAL, "section 'vbt' holds 13 bytes, its fields take more than 13");
    free(t);
    /* a size past the end of the stream */
    t = vbt_stream(buf, sec, p, 14, 200, &tl);
    expect_refused(b, t, tl, -EINVAL, "past the end of the stream");
    free(t);
    assert_int_equal(vb.a, 7);
    assert_int_equal(vb.len, 0);

    /* the good stream loads: the five bytes and the fields around them */
    char why[200] = "";
    if (vmstate_load(&b->m, buf, len, why, sizeof(why)))
        fail_msg("load refused: %s", why);
    assert_int_equal(vb.a, 0x11223344);
    assert_int_equal(vb.len, 5);
    assert_memory_equal(vb.buf, want + 8, 5);
    assert_int_equal(vb.tail, 0x9e);
    /* an empty buffer: no bytes */
    va.len = 0;
    free(buf);
    assert_int_equal(vmstate_save(&a->m, &buf, &len), 0);
    assert_int_equal(buf[pay - 4], 4 + 4 + 1);
    assert_int_equal(vmstate_load(&b->m, buf, len, why, sizeof(why)), 0);
    assert_int_equal(vb.len, 0);
    assert_int_equal(vb.tail, 0x9e);
    free(buf);
    vfx_free(b);
    vfx_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_machines_independent),
        cmocka_unit_test(test_migrate_between_two),
        cmocka_unit_test(test_bad_streams),
        cmocka_unit_test(test_virtio_migrates),
        cmocka_unit_test(test_irqchip_migrates),
        cmocka_unit_test(test_tcg_cpu_migrates),
        cmocka_unit_test(test_optional_and_blocker),
        cmocka_unit_test(test_variable_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
