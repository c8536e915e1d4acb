/* Guest RAM: one anonymous mapping, split around the PCI hole, touched lazily (MAP_NORESERVE)
 * so start-up costs nothing proportional to the guest's size. */
#include "vm/machine.h"
#include "vm/memory.h"

#include "accel/accel.h"

#include "util/log.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/mman.h>

int memory_find(struct machine *m, uint64_t gpa, uint64_t len, uint64_t *off)
{
    for (int i = 0; i < m->nmem; i++) {
        const struct mem_region *r = &m->mem[i];
        /* size first: a device region moving under us (struct mem_region) */
        uint64_t size = __atomic_load_n(&r->size, __ATOMIC_ACQUIRE);
        uint64_t base = __atomic_load_n(&r->gpa, __ATOMIC_RELAXED);
        if (gpa >= base && gpa - base < size && len <= size - (gpa - base)) {
            *off = gpa - base;
            return i;
        }
    }
    return -1;
}

int memory_add_region(struct machine *m, uint64_t gpa, uint64_t size, uint8_t *host, bool readonly)
{
    if (m->nmem == MACHINE_MAX_MEM)
        return -ENOSPC;
    _Atomic uint64_t *dirty = NULL;
    if (!readonly && !(dirty = calloc((size / 4096 + 63) / 64, sizeof(*dirty))))
        return -ENOMEM;
    m->mem[m->nmem++] = (struct mem_region){ .gpa = gpa, .size = size, .host = host,
                                             .readonly = readonly, .capacity = size, .dirty = dirty };
    return 0;
}

int memory_create_ram(struct machine *m, uint64_t size, uint64_t hole)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    /* Huge pages cut TLB misses for big guests but fault in 2 MiB for every first touch, which
     * would multiply a micro-VM's footprint; so only from 1 GiB up. Keep RAM out of core dumps.
     * Both are advice: failures change nothing. */
    if (size >= MEMORY_HUGE_MIN)
        madvise(p, size, MADV_HUGEPAGE);
    madvise(p, size, MADV_DONTDUMP);
    madvise(p, size, MADV_DONTFORK);   /* a forked helper must not copy the guest's page tables */
    m->ram = p;
    m->ram_size = size;
    uint64_t low = size < MACHINE_LOW_RAM_END ? size : MACHINE_LOW_RAM_END;
    int ret;
    if (hole && hole < 0x100000 && low > 0x100000) {
        ret = memory_add_region(m, 0, hole, m->ram, false);
        if (!ret)
            ret = memory_add_region(m, 0x100000, low - 0x100000, m->ram + 0x100000, false);
    } else {
        ret = memory_add_region(m, 0, low, m->ram, false);
    }
    if (!ret && size > low)
        ret = memory_add_region(m, MACHINE_HIGH_RAM_BASE, size - low, m->ram + low, false);
    return ret;
}

/* What the guest actually touched, for the VMM-overhead figure (peak RSS minus this). */
static void memory_report_touched(const struct machine *m)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (size_t)((m->ram_size + (uint64_t)page - 1) / (uint64_t)page);
    unsigned char *vec = malloc(pages);
    if (!vec || mincore(m->ram, m->ram_size, vec) < 0) {
        free(vec);
        return;
    }
    size_t resident = 0;
    for (size_t i = 0; i < pages; i++)
        resident += vec[i] & 1;
    free(vec);
    log_debug(LOG_TIME, "exit: guest RAM touched: %zu KiB of %llu KiB", resident * (size_t)page / 1024,
              (unsigned long long)(m->ram_size >> 10));
}

void memory_destroy(struct machine *m)
{
    if (m->ram && log_enabled(LOG_TIME))
        memory_report_touched(m);
    if (m->ram)
        munmap(m->ram, m->ram_size);
    for (int i = 0; i < m->nmem; i++)
        free((void *)m->mem[i].dirty);
    m->ram = NULL;
    m->nmem = 0;
}

void *machine_gpa_ptr(struct machine *m, uint64_t gpa, uint64_t len)
{
    uint64_t off;
    int i = memory_find(m, gpa, len, &off);
    return i < 0 ? NULL : m->mem[i].host + off;
}

int machine_read(struct machine *m, uint64_t gpa, void *buf, uint64_t len)
{
    void *p = machine_gpa_ptr(m, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(buf, p, len);
    return 0;
}

int machine_write(struct machine *m, uint64_t gpa, const void *buf, uint64_t len)
{
    void *p = machine_gpa_ptr(m, gpa, len);
    if (!p)
        return -EFAULT;
    memcpy(p, buf, len);
    return 0;
}

/* Here rather than in machine_accel.c: every device write to RAM passes this way, and the
 * virtqueue fuzz target links memory.c without the rest of the machine. */
void machine_note_dirty(struct machine *m, uint64_t gpa, uint64_t len)
{
    memory_note_written(m, gpa, len);
    if (m->accel && m->accel->mem_written)
        m->accel->mem_written(m, gpa, len);
}

uint64_t memory_ram_pages(const struct machine *m)
{
    return (m->ram_size + 4095) >> 12;
}

/* The regions that are m->ram (not ROMs): where a page offset is guest-physical. */
static bool memory_region_is_ram(const struct machine *m, const struct mem_region *r)
{
    return r->host >= m->ram && r->host < m->ram + m->ram_size && !r->readonly;
}

static void memory_track_all(struct machine *m, bool on)
{
    for (int i = 0; i < m->nmem; i++)
        if (memory_region_is_ram(m, &m->mem[i]))
            m->accel->dirty_track(m, m->mem[i].gpa, m->mem[i].size, on);
}

int memory_dirty_start(struct machine *m)
{
    if (!m->accel || !m->accel->dirty_track)
        return -EOPNOTSUPP;
    for (int i = 0; i < m->nmem; i++) {
        struct mem_region *r = &m->mem[i];
        if (memory_region_is_ram(m, r))
            for (uint64_t w = 0; w < (r->size / 4096 + 63) / 64; w++)
                atomic_store_explicit(&r->dirty[w], 0, memory_order_relaxed);
    }
    memory_track_all(m, true);
    atomic_store(&m->dirty_on, true);
    return 0;
}

void memory_dirty_stop(struct machine *m)
{
    if (!atomic_exchange(&m->dirty_on, false))
        return;
    memory_track_all(m, false);
}

/* The RAM regions' own bitmaps (the ones hostmem regions use too), by page of m->ram. */
uint64_t memory_dirty_sync(struct machine *m, uint64_t *out)
{
    uint64_t pages = memory_ram_pages(m), taken = 0;
    if (!atomic_load(&m->dirty_on))
        return 0;
    /* an accelerator with a log of its own (KVM) hands it over first, into the regions'
     * bitmaps; a log that cannot be read makes every page count as written, not none */
    bool all = m->accel->dirty_collect && m->accel->dirty_collect(m);
    if (all)
        log_error("cannot read the accelerator's dirty log: every page counts as written");
    for (int i = 0; i < m->nmem; i++) {
        const struct mem_region *r = &m->mem[i];
        if (!memory_region_is_ram(m, r))
            continue;
        uint64_t base = (uint64_t)(r->host - m->ram) >> 12, n = r->size >> 12;
        for (uint64_t w = 0; w < (n + 63) / 64; w++) {
            uint64_t bits = atomic_exchange_explicit(&r->dirty[w], 0, memory_order_relaxed) | (all ? ~0ull : 0);
            while (bits) {
                uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
                bits &= bits - 1;
                if (p >= n || base + p >= pages)
                    continue;
                out[(base + p) / 64] |= 1ull << ((base + p) % 64);
                taken++;
                /* arm again what was written: the rest is armed still */
                m->accel->dirty_track(m, r->gpa + (p << 12), 4096, true);
            }
        }
    }
    return taken;
}

/* Whether [gpa, gpa + len) meets a device's host-memory region (whose writes are always kept). */
static bool memory_range_has_device(struct machine *m, uint64_t gpa, uint64_t len)
{
    for (int i = 0; i < m->nmem; i++) {
        const struct mem_region *r = &m->mem[i];
        uint64_t size = __atomic_load_n(&r->size, __ATOMIC_ACQUIRE);
        uint64_t base = __atomic_load_n(&r->gpa, __ATOMIC_RELAXED);
        if (r->device && size && gpa < base + size && base < gpa + len)
            return true;
    }
    return false;
}

/* One record of writes for every region: a device region's bits are always kept (for
 * machine_hostmem_dirty), guest RAM's only while migration tracks it. */
void memory_note_written(struct machine *m, uint64_t gpa, uint64_t len)
{
    if (!len)
        return;
    bool ram_on = atomic_load_explicit(&m->dirty_on, memory_order_acquire);
    if (!ram_on && !memory_range_has_device(m, gpa, len))
        return;   /* the common case, a device's DMA into RAM with no migration: no lookups */
    for (uint64_t pa = gpa & ~0xfffull; pa < gpa + len; pa += 4096) {
        uint64_t off;
        int i = memory_find(m, pa, 1, &off);
        if (i < 0 || !m->mem[i].dirty || (!m->mem[i].device && !ram_on))
            continue;
        uint64_t p = off >> 12;
        atomic_fetch_or_explicit(&m->mem[i].dirty[p / 64], 1ull << (p % 64), memory_order_relaxed);
    }
}
