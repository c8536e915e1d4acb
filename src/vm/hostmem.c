/* Host memory a device shows at a guest address as RAM (machine.h, machine_add_hostmem): a slot
 * in m->mem reserved at creation, moved and hidden while the vCPUs run. The accelerator learns of
 * each change (mem_remap) and keeps CPU accesses from the old place; the region's dirty bitmap is
 * migration's record of what the guest wrote there. */
#include "vm/control.h"
#include "vm/machine.h"

#include "accel/accel.h"

#include <errno.h>
#include <stdlib.h>

int machine_add_hostmem(struct machine *m, void *host, uint64_t size, int *id)
{
    if (!host || !size || (size & 0xfff) || ((uintptr_t)host & 0xfff))
        return -EINVAL;
    if (m->nmem == MACHINE_MAX_MEM)
        return -ENOSPC;
    _Atomic uint64_t *dirty = calloc((size / 4096 + 63) / 64, sizeof(*dirty));
    if (!dirty)
        return -ENOMEM;
    int idx = m->nmem;
    m->mem[idx] = (struct mem_region){ .host = host, .capacity = size, .device = true, .dirty = dirty };
    m->nmem++;
    if (m->accel_data && m->accel && m->accel->mem_add) {
        int ret = m->accel->mem_add(m, idx);
        if (ret) {
            m->nmem--;
            free((void *)dirty);
            m->mem[idx] = (struct mem_region){ 0 };
            return ret;
        }
    }
    *id = idx;
    return 0;
}

static struct mem_region *hostmem_get(struct machine *m, int id)
{
    return id >= 0 && id < m->nmem && m->mem[id].device ? &m->mem[id] : NULL;
}

/* Hide first, then the new address, then the size that makes it visible: a reader that sees a
 * nonzero size sees the address that goes with it (struct mem_region). */
static int hostmem_set(struct machine *m, int id, uint64_t gpa, uint64_t size)
{
    struct mem_region *r = hostmem_get(m, id);
    if (!r || (gpa & 0xfff) || (size && gpa + size < gpa))
        return -EINVAL;
    if (__atomic_load_n(&r->size, __ATOMIC_RELAXED) == size && (!size || r->gpa == gpa))
        return 0;
    __atomic_store_n(&r->size, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->gpa, gpa, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->size, size, __ATOMIC_SEQ_CST);
    if (m->accel_data && m->accel && m->accel->mem_remap)
        return m->accel->mem_remap(m, id);
    return 0;
}

int machine_map_hostmem(struct machine *m, int id, uint64_t gpa)
{
    struct mem_region *r = hostmem_get(m, id);
    return r ? hostmem_set(m, id, gpa, r->capacity) : -EINVAL;
}

int machine_unmap_hostmem(struct machine *m, int id)
{
    return hostmem_set(m, id, 0, 0);
}

int machine_hostmem_dirty(struct machine *m, int id, uint64_t *bitmap)
{
    struct mem_region *r = hostmem_get(m, id);
    if (!r)
        return -EINVAL;
    /* With the vCPUs parked, no write can fall between taking the bits and re-arming the
     * accelerator's tracking, and be lost to both rounds. */
    bool parked = m->vcpus ? machine_park_vcpus(m) : false;
    int ret = 0;
    if (m->accel_data && m->accel && m->accel->mem_dirty_sync)
        ret = m->accel->mem_dirty_sync(m, id);
    for (uint64_t w = 0; w < (r->capacity / 4096 + 63) / 64; w++)
        bitmap[w] |= atomic_exchange_explicit(&r->dirty[w], 0, memory_order_relaxed);
    if (parked)
        machine_unpark_vcpus(m);
    return ret;
}
