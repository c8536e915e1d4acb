/* Address buses: port I/O and MMIO. A device registers a range with its handlers; the vCPU loop
 * hands each access to bus_dispatch and never names a device. Handlers see the offset into their
 * range, never the absolute address (so a PCI BAR can move without the device knowing). */
#ifndef QKVM_HW_BUS_H
#define QKVM_HW_BUS_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* data points to size (1, 2, 4 or 8) bytes, little-endian as the guest sees them. */
typedef void (*bus_read_fn)(void *opaque, uint64_t offset, void *data, unsigned size);
typedef void (*bus_write_fn)(void *opaque, uint64_t offset, const void *data, unsigned size);

struct bus_region {
    uint64_t base, len;
    bus_read_fn read;    /* NULL: reads as all ones */
    bus_write_fn write;  /* NULL: writes ignored */
    void *opaque;
    const char *name;
};

struct bus {
    const char *name;          /* "pio" or "mmio", for messages */
    pthread_rwlock_t lock;     /* regions change (BAR moves) while vCPUs dispatch */
    struct bus_region *regions;  /* sorted by base, never overlapping */
    int n, cap;
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);
/* 0, -EEXIST if it overlaps a registered range, -EINVAL for an empty or wrapping range. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_read_fn read, bus_write_fn write,
                 void *opaque, const char *name);
/* Removes the region registered with this opaque at base. 0 or -ENOENT. */
int bus_unregister(struct bus *b, uint64_t base, void *opaque);
/* Performs the access. 0, or -ENOENT when nothing is mapped there (a read then returns all ones).
 * An access that straddles a region's end is split so no handler sees an offset past its range. */
int bus_dispatch(struct bus *b, uint64_t addr, void *data, unsigned size, bool is_write);
/* The region covering addr, or NULL (for tests and messages). */
const struct bus_region *bus_find(struct bus *b, uint64_t addr);
/* Calls fn for each region in address order, under the bus's read lock (fn must not register or
 * unregister): the monitor's `info mtree`. */
void bus_for_each(struct bus *b, void (*fn)(void *opaque, const struct bus_region *r), void *opaque);

#endif
