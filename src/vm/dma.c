/* A bus master's writes into guest memory: RAM takes them directly, read-only regions see them
 * on the MMIO bus as a CPU's writes would (kept apart from memory.c, which needs no bus). */
#include "vm/machine.h"
#include "vm/memory.h"

#include <errno.h>
#include <string.h>

int machine_dma_write(struct machine *m, uint64_t gpa, const void *buf, uint64_t len)
{
    uint64_t off;
    int i = memory_find(m, gpa, len, &off);
    if (i >= 0) {
        const struct mem_region *r = &m->mem[i];
        if (!r->readonly) {
            memcpy(r->host + off, buf, len);
            if (r->dirty)
                machine_note_dirty(m, gpa, len);
            return 0;
        }
        /* what a CPU's write there does: whoever claims the bus decides (the PC's PAM) */
        for (uint64_t k = 0; k < len; k += 8) {
            uint8_t chunk[8];
            unsigned n = len - k < 8 ? (unsigned)(len - k) : 8;
            memcpy(chunk, (const uint8_t *)buf + k, n);
            if (bus_dispatch(&m->mmio, gpa + k, chunk, n, true) == -ENOENT)
                return -EFAULT;
        }
        return 0;
    }
    return -EFAULT;
}
