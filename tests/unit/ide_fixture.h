/* The guest's side of the PC machine's IDE controller for unit tests: port accesses through
 * the machine's I/O bus and configuration mechanism #1. Shared by test_ide, test_atapi and
 * test_bmdma (include after cmocka.h and virtio_fixture.h). */
#ifndef QKVM_TESTS_IDE_FIXTURE_H
#define QKVM_TESTS_IDE_FIXTURE_H
#include "hw/ide.h"
#include "virtio_fixture.h"

static inline uint8_t inb(struct vfx *f, uint16_t port)
{
    uint8_t v = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 1, false), 0);
    return v;
}

static inline void outb(struct vfx *f, uint16_t port, uint8_t v)
{
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 1, true), 0);
}

static inline uint16_t inw(struct vfx *f, uint16_t port)
{
    uint16_t v = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 2, false), 0);
    return v;
}

static inline void outw(struct vfx *f, uint16_t port, uint16_t v)
{
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 2, true), 0);
}

static inline uint32_t inl(struct vfx *f, uint16_t port)
{
    uint32_t v = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 4, false), 0);
    return v;
}

static inline void outl(struct vfx *f, uint16_t port, uint32_t v)
{
    assert_int_equal(bus_dispatch(&f->m.pio, port, &v, 4, true), 0);
}

/* A dword of function fn's config space at slot, through 0xcf8/0xcfc. */
static inline uint32_t cfg_fn(struct vfx *f, int slot, int fn, unsigned off)
{
    uint32_t a = 0x80000000u | (unsigned)slot << 11 | (unsigned)fn << 8 | (off & 0xfc), v = 0;
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcfc, &v, 4, false), 0);
    return v;
}

static inline void cfg_fn_write(struct vfx *f, int slot, int fn, unsigned off, uint32_t v)
{
    uint32_t a = 0x80000000u | (unsigned)slot << 11 | (unsigned)fn << 8 | (off & 0xfc);
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcf8, &a, 4, true), 0);
    assert_int_equal(bus_dispatch(&f->m.pio, 0xcfc, &v, 4, true), 0);
}

#endif
