/* A bus master's writes into guest memory: RAM takes them directly, read-only regions see them
 * on the MMIO bus as a CPU's writes would (kept apart from memory.c, which needs no bus). */
#include "vm/machine.h"

#include <errno.h>
#include <string.h>

int machine_dma_write(struct machine *m, uint64_t gpa, const void *buf, uint64_t len)
{
    for (int i = 0; i < m->nmem; i++) {
        const struct mem_region *r = &m->mem[i];
        if (gpa < r->gpa || gpa - r->gpa >= r->size || len > r->size - (gpa - r->gpa))
            continue;
        if (!r->readonly) {
            memcpy(r->host + (gpa - r->gpa), buf, len);
            return 0;
        }
        /* what a CPU's write there does: whoever claims the bus decides (the PC's PAM) */
        for (uint64_t off = 0; off < len; off += 8) {
            uint8_t chunk[8];
            unsigned n = len - off < 8 ? (unsigned)(len - off) : 8;
            memcpy(chunk, (const uint8_t *)buf + off, n);
            if (bus_dispatch(&m->mmio, gpa + off, chunk, n, true) == -ENOENT)
                return -EFAULT;
        }
        return 0;
    }
    return -EFAULT;
}
