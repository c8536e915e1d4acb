/* Paging and the software TLB: page walks (2-level, PAE, 4-level), permission checks and #PF,
 * accessed/dirty bits, and the slow paths of memory access (page crossings, MMIO, the APIC page). */
#include "accel/emu/cpu.h"
#include "hw/irqchip.h"

enum { ACC_R = 0, ACC_W = 1, ACC_X = 2 };

#define PTE_P 0x1ull
#define PTE_W 0x2ull
#define PTE_U 0x4ull
#define PTE_A 0x20ull
#define PTE_D 0x40ull
#define PTE_PS 0x80ull
#define PTE_G 0x100ull
#define PTE_NX (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

struct emu_ram *phys_region(struct emu_vm *vm, uint64_t pa, uint64_t len, uint64_t *off)
{
    for (int k = 0; k < vm->nram; k++) {
        struct emu_ram *r = &vm->ram[k];
        uint64_t size = __atomic_load_n(&r->size, __ATOMIC_ACQUIRE);
        uint64_t base = __atomic_load_n(&r->gpa, __ATOMIC_RELAXED);
        if (pa >= base && pa - base < size && len <= size - (pa - base)) {
            *off = pa - base;
            return r;
        }
    }
    return NULL;
}

void *phys_ptr(struct emu_vm *vm, uint64_t pa, uint64_t len, uint32_t *pidx)
{
    uint64_t off;
    struct emu_ram *r = phys_region(vm, pa, len, &off);
    if (!r)
        return NULL;
    if (pidx)
        *pidx = r->pidx0 + (uint32_t)(off >> 12);
    return r->host + off;
}

static bool is_apic_page(struct cpu *c, uint64_t pa)
{
    return c->env.lapic && (pa & ~0xfffull) == (c->apic_base & ~0xfffull) && (c->apic_base & (1 << 11));
}

static void mmio_access(struct cpu *c, uint64_t pa, void *data, int sz, bool write)
{
    if (is_apic_page(c, pa)) {
        uint32_t off = pa & 0xfff;
        if (write) {
            uint32_t v = 0;
            memcpy(&v, data, sz > 4 ? 4 : sz);
            lapic_mmio_write(c->env.lapic, off & ~3u, v);
            c->timer_deadline = 0;   /* the timer may have been (re)armed: poll it */
            atomic_store_explicit(&c->irq_check, true, memory_order_relaxed);
        } else {
            uint32_t v = lapic_mmio_read(c->env.lapic, off & ~3u);
            uint64_t w = (uint64_t)v >> ((off & 3) * 8);
            memcpy(data, &w, sz > 8 ? 8 : sz);
        }
        return;
    }
    if (c->env.mmio) {
        c->env.mmio(c->env.opaque, pa, data, (unsigned)sz, write);
        cpu_check_map(c);
    } else if (!write) {
        memset(data, 0xff, sz);
    }
}

uint64_t phys_rd(struct cpu *c, uint64_t pa, int sz)
{
    uint64_t v = 0;
    void *p = phys_ptr(c->vm, pa, sz, NULL);
    if (p)
        memcpy(&v, p, sz);
    else
        mmio_access(c, pa, &v, sz, false);
    return v;
}

void phys_wr(struct cpu *c, uint64_t pa, int sz, uint64_t v)
{
    uint64_t off;
    struct emu_ram *r = phys_region(c->vm, pa, (uint64_t)sz, &off);
    if (r && !r->readonly) {
        uint32_t pidx = r->pidx0 + (uint32_t)(off >> 12);
        if (atomic_load_explicit(&c->vm->code[pidx], memory_order_relaxed))
            mem_smc(c, pidx);
        phys_mark_dirty(r, off);
        memcpy(r->host + off, &v, sz);
    } else {
        mmio_access(c, pa, &v, sz, true);
    }
}

void mem_smc(struct cpu *c, uint32_t pidx)
{
    uint8_t old = atomic_exchange_explicit(&c->vm->code[pidx], 0, memory_order_relaxed);
    if (old & EMU_PAGE_TRACK)
        emu_vm_page_written(c->vm, pidx);
    if (old & EMU_PAGE_CODE) {
        atomic_fetch_add_explicit(&c->vm->gen[pidx], 1, memory_order_release);
        c->brk = true;
    }
}

__attribute__((noreturn)) static void page_fault(struct cpu *c, uint64_t la, uint32_t err)
{
    c->cr2 = la;
    raise_exc_err(c, EXC_PF, err);
}

/* Sets bits in a page-table entry the walk read at pa (the accessed/dirty bits). */
static void pte_set(struct cpu *c, uint64_t pa, int sz, uint64_t bits)
{
    uint32_t pidx;
    void *p = phys_ptr(c->vm, pa, sz, &pidx);
    if (!p)
        return;
    /* a page table is guest memory too: migration must see the accessed/dirty bits land */
    if (atomic_load_explicit(&c->vm->code[pidx], memory_order_relaxed) & EMU_PAGE_TRACK)
        mem_smc(c, pidx);
    if (sz == 8)
        __atomic_fetch_or((uint64_t *)p, bits, __ATOMIC_RELAXED);
    else
        __atomic_fetch_or((uint32_t *)p, (uint32_t)bits, __ATOMIC_RELAXED);
}

struct walk {
    uint64_t pa;          /* physical address of la */
    uint64_t lmask;       /* offset mask of the page that maps it */
    bool w, u, x, g;
};

/* Walks the page tables for la and checks access acc; faults with #PF. */
static void walk(struct cpu *c, uint64_t la, int acc, bool user, struct walk *out)
{
    bool nxe = c->efer & EFER_NXE;
    uint32_t err = (acc == ACC_W ? 2 : 0) | (user ? 4 : 0) | (acc == ACC_X && nxe ? 16 : 0);
    bool w = true, u = true, x = true;
    uint64_t e = 0, table, ea[5];
    int esz[5], n = 0, levels, shift;
    if (c->cr4 & CR4_PAE) {
        if (c->lma) {
            table = c->cr3 & PTE_ADDR;
            levels = 4;
        } else {
            uint64_t pdpte = phys_rd(c, (c->cr3 & 0xffffffe0) + ((la >> 30) & 3) * 8, 8);
            if (!(pdpte & PTE_P))
                page_fault(c, la, err);
            table = pdpte & PTE_ADDR;
            levels = 2;
        }
        shift = 12 + 9 * (levels - 1);
        for (;;) {
            uint64_t a = table + ((la >> shift) & 0x1ff) * 8;
            e = phys_rd(c, a, 8);
            if (!(e & PTE_P))
                page_fault(c, la, err);
            ea[n] = a;
            esz[n++] = 8;
            w = w && (e & PTE_W);
            u = u && (e & PTE_U);
            if (nxe && (e & PTE_NX))
                x = false;
            if (shift == 12 || ((e & PTE_PS) && shift <= 30))
                break;
            table = e & PTE_ADDR;
            shift -= 9;
        }
        out->lmask = (1ull << shift) - 1;
        out->pa = ((e & PTE_ADDR) & ~out->lmask) | (la & out->lmask);
    } else {
        uint64_t a = (c->cr3 & 0xfffff000) + ((la >> 22) & 0x3ff) * 4;
        e = phys_rd(c, a, 4);
        if (!(e & PTE_P))
            page_fault(c, la, err);
        ea[n] = a;
        esz[n++] = 4;
        w = e & PTE_W;
        u = e & PTE_U;
        if ((e & PTE_PS) && (c->cr4 & CR4_PSE)) {
            out->lmask = 0x3fffff;
            out->pa = (e & 0xffc00000) | ((e & 0x1fe000) << 19) | (la & 0x3fffff);
        } else {
            a = (e & 0xfffff000) + ((la >> 12) & 0x3ff) * 4;
            e = phys_rd(c, a, 4);
            if (!(e & PTE_P))
                page_fault(c, la, err);
            ea[n] = a;
            esz[n++] = 4;
            w = w && (e & PTE_W);
            u = u && (e & PTE_U);
            out->lmask = 0xfff;
            out->pa = (e & 0xfffff000) | (la & 0xfff);
        }
    }
    err |= 1;   /* present: what follows are protection faults */
    if (user && !u)
        page_fault(c, la, err);
    if (acc == ACC_W && !w && (user || (c->cr0 & CR0_WP)))
        page_fault(c, la, err);
    if (acc == ACC_X && !x)
        page_fault(c, la, err);
    for (int k = 0; k < n; k++)
        if (!(phys_rd(c, ea[k], esz[k]) & PTE_A))
            pte_set(c, ea[k], esz[k], PTE_A);
    if (acc == ACC_W && !(e & PTE_D))
        pte_set(c, ea[n - 1], esz[n - 1], PTE_D);
    /* writes through the TLB are allowed only once the page is dirty */
    out->w = (w || (!user && !(c->cr0 & CR0_WP))) && (acc == ACC_W || (e & PTE_D));
    out->u = u;
    out->x = x;
    out->g = (e & PTE_G) && (c->cr4 & CR4_PGE);
}

/* The victim TLB: a hit for vpage with the permission acc needs swaps into the direct-mapped
 * slot e, which then holds what a walk would have put there (an entry is only ever filled from
 * a walk, and flushed with the slots). */
static bool victim_take(struct cpu *c, bool user, struct tlb_entry *e, uint64_t vpage, int acc)
{
    struct tlb_entry *v = c->victim[user];
    for (int k = 0; k < TLB_VICTIM; k++) {
        if (v[k].vr != vpage)
            continue;
        if ((acc == ACC_W && v[k].vw != vpage) || (acc == ACC_X && v[k].vx != vpage))
            return false;
        struct tlb_entry t = *e;
        *e = v[k];
        v[k] = t;
        return true;
    }
    return false;
}

/* Slot e is about to hold vpage: what it held goes to the victim TLB, and an older copy of
 * vpage there (with fewer permissions) goes. */
static void victim_push(struct cpu *c, bool user, struct tlb_entry *e, uint64_t vpage)
{
    struct tlb_entry *v = c->victim[user];
    for (int k = 0; k < TLB_VICTIM; k++)
        if (v[k].vr == vpage)
            v[k].vr = v[k].vw = v[k].vx = 1;
    if (e->vr != 1 && e->vr != vpage)
        v[c->victim_next[user]++ % TLB_VICTIM] = *e;
}

/* Translates la; fills the TLB when it is RAM. Returns the host pointer, or NULL for MMIO with
 * *pa set. */
static uint8_t *xlate_as(struct cpu *c, uint64_t la, int acc, bool user, uint64_t *pa)
{
    struct walk wk;
    if (c->lma && (uint64_t)((int64_t)(la << 16) >> 16) != la)
        raise_gp(c, 0);
    struct tlb_entry *e = &c->tlb[user][(la >> 12) & (TLB_SIZE - 1)];
    if (victim_take(c, user, e, la & ~0xfffull, acc)) {
        *pa = e->pa | (la & 0xfff);
        return (uint8_t *)(e->add + la);
    }
    if (c->cr0 & CR0_PG) {
        walk(c, la, acc, user, &wk);
    } else {
        wk.pa = la & 0xffffffffull;
        wk.lmask = 0xfff;
        wk.w = wk.x = wk.u = true;
        wk.g = false;
    }
    *pa = wk.pa;
    uint64_t ppage = wk.pa & ~0xfffull, off;
    struct emu_ram *r = is_apic_page(c, ppage) ? NULL : phys_region(c->vm, ppage, 4096, &off);
    if (!r)
        return NULL;
    uint8_t *host = r->host + off;
    uint32_t pidx = r->pidx0 + (uint32_t)(off >> 12);
    bool ro = r->readonly;
    if (ro && acc == ACC_W)
        return NULL;
    /* A dirty-tracked page is writable through the TLB only from a write on, which marks it:
     * machine_hostmem_dirty then restarts every CPU's TLB (map_gen). */
    bool w = wk.w && !ro && (!r->dirty || acc == ACC_W);
    if (w && r->dirty)
        phys_mark_dirty(r, off);
    uint64_t vpage = la & ~0xfffull;
    victim_push(c, user, e, vpage);
    e->vr = vpage;
    e->vw = w ? vpage : 1;
    e->vx = wk.x ? vpage : 1;
    e->add = (uintptr_t)host - vpage;
    e->pa = ppage;
    e->pidx = pidx;
    e->global = wk.g;
    e->lmask = wk.lmask;
    return host + (la & 0xfff);
}

static uint8_t *xlate(struct cpu *c, uint64_t la, int acc, uint64_t *pa)
{
    return xlate_as(c, la, acc, c->cpl == 3, pa);
}

/* Implicit supervisor accesses (descriptor tables, the TSS) whatever the CPL. */
uint64_t mem_rd_sys(struct cpu *c, uint64_t la, int sz)
{
    if (c->cpl != 3)
        return mem_rd(c, la, sz);
    uint64_t v = 0;
    for (int k = 0; k < sz; k++) {
        uint64_t pa, a = (la + k) & c->lin_mask;
        uint8_t *h = xlate_as(c, a, ACC_R, false, &pa);
        uint8_t b;
        if (h)
            b = *h;
        else
            mmio_access(c, pa, &b, 1, false);
        v |= (uint64_t)b << (8 * k);
    }
    return v;
}

/* n bytes within la's page. The TLB first: SSE operands and string moves come here for every
 * access, and a walk each time made a guest's memcpy run at a few tens of MiB/s. */
static void rd_bytes(struct cpu *c, uint64_t la, uint8_t *buf, int n)
{
    const struct tlb_entry *e = &c->tlbc[(la >> 12) & (TLB_SIZE - 1)];
    if (likely(e->vr == (la & ~0xfffull))) {
        memcpy(buf, (const uint8_t *)(e->add + la), n);
        return;
    }
    uint64_t pa;
    uint8_t *h = xlate(c, la, ACC_R, &pa);
    if (h)
        memcpy(buf, h, n);
    else
        mmio_access(c, pa, buf, n, false);
}

static void wr_bytes(struct cpu *c, uint64_t la, const uint8_t *buf, int n)
{
    struct tlb_entry *e = &c->tlbc[(la >> 12) & (TLB_SIZE - 1)];
    uint64_t pa;
    uint8_t *h = e->vw == (la & ~0xfffull) ? (uint8_t *)(e->add + la) : xlate(c, la, ACC_W, &pa);
    if (h) {
        if (atomic_load_explicit(&c->vm->code[e->pidx], memory_order_relaxed))
            mem_smc(c, e->pidx);
        memcpy(h, buf, n);
    } else {
        mmio_access(c, pa, (void *)buf, n, true);
    }
}

uint64_t mem_rd_slow(struct cpu *c, uint64_t la, int sz)
{
    uint64_t v = 0;
    int first = 0x1000 - (int)(la & 0xfff);
    if (first >= sz) {
        rd_bytes(c, la, (uint8_t *)&v, sz);
    } else {
        rd_bytes(c, la, (uint8_t *)&v, first);
        rd_bytes(c, (la + first) & c->lin_mask, (uint8_t *)&v + first, sz - first);
    }
    return v;
}

void mem_wr_slow(struct cpu *c, uint64_t la, int sz, uint64_t v)
{
    int first = 0x1000 - (int)(la & 0xfff);
    if (first >= sz) {
        wr_bytes(c, la, (uint8_t *)&v, sz);
    } else {
        /* check both pages before writing either, so a fault leaves memory unchanged */
        uint64_t pa;
        xlate(c, (la + first) & c->lin_mask, ACC_W, &pa);
        wr_bytes(c, la, (uint8_t *)&v, first);
        wr_bytes(c, (la + first) & c->lin_mask, (uint8_t *)&v + first, sz - first);
    }
}

void mem_rd_buf(struct cpu *c, uint64_t la, void *buf, int n)
{
    uint8_t *b = buf;
    while (n > 0) {
        int chunk = 0x1000 - (int)(la & 0xfff);
        if (chunk > n)
            chunk = n;
        rd_bytes(c, la, b, chunk);
        la = (la + chunk) & c->lin_mask;
        b += chunk;
        n -= chunk;
    }
}

void mem_wr_buf(struct cpu *c, uint64_t la, const void *buf, int n)
{
    const uint8_t *b = buf;
    int first = 0x1000 - (int)(la & 0xfff);
    if (first < n) {
        uint64_t pa;
        xlate(c, (la + first) & c->lin_mask, ACC_W, &pa);
    }
    while (n > 0) {
        int chunk = 0x1000 - (int)(la & 0xfff);
        if (chunk > n)
            chunk = n;
        wr_bytes(c, la, b, chunk);
        la = (la + chunk) & c->lin_mask;
        b += chunk;
        n -= chunk;
    }
}

void *mem_ptr_w(struct cpu *c, uint64_t la, int sz)
{
    if ((la & 0xfff) + sz > 0x1000)
        return NULL;
    struct tlb_entry *e = &c->tlbc[(la >> 12) & (TLB_SIZE - 1)];
    uint8_t *h;
    if (e->vw == (la & ~0xfffull)) {
        h = (uint8_t *)(e->add + la);
    } else {
        uint64_t pa;
        h = xlate(c, la, ACC_W, &pa);
        if (!h)
            return NULL;
    }
    if (atomic_load_explicit(&c->vm->code[e->pidx], memory_order_relaxed))
        mem_smc(c, e->pidx);
    return h;
}

const void *mem_ptr_r(struct cpu *c, uint64_t la, int sz)
{
    if ((la & 0xfff) + sz > 0x1000)
        return NULL;
    struct tlb_entry *e = &c->tlbc[(la >> 12) & (TLB_SIZE - 1)];
    if (e->vr == (la & ~0xfffull))
        return (const uint8_t *)(e->add + la);
    uint64_t pa;
    return xlate(c, la, ACC_R, &pa);
}

const uint8_t *mem_ptr_x(struct cpu *c, uint64_t la, uint64_t *pa, uint32_t *pidx)
{
    struct tlb_entry *e = &c->tlbc[(la >> 12) & (TLB_SIZE - 1)];
    if (e->vx != (la & ~0xfffull)) {
        uint8_t *h = xlate(c, la, ACC_X, pa);
        if (!h)
            return NULL;
    }
    *pa = e->pa | (la & 0xfff);
    *pidx = e->pidx;
    return (const uint8_t *)(e->add + la);
}

void tlb_flush(struct cpu *c, bool global)
{
    for (int t = 0; t < 2; t++) {
        for (unsigned k = 0; k < TLB_SIZE; k++) {
            struct tlb_entry *e = &c->tlb[t][k];
            if (global || !e->global)
                e->vr = e->vw = e->vx = 1;
        }
        for (unsigned k = 0; k < TLB_VICTIM; k++) {
            struct tlb_entry *e = &c->victim[t][k];
            if (global || !e->global)
                e->vr = e->vw = e->vx = 1;
        }
    }
}

void tlb_flush_page(struct cpu *c, uint64_t la)
{
    for (int t = 0; t < 2; t++) {
        for (unsigned k = 0; k < TLB_SIZE; k++) {
            struct tlb_entry *e = &c->tlb[t][k];
            uint64_t va = e->vr;
            if (va != 1 && (va & ~e->lmask) == (la & ~e->lmask))
                e->vr = e->vw = e->vx = 1;
        }
        for (unsigned k = 0; k < TLB_VICTIM; k++) {
            struct tlb_entry *e = &c->victim[t][k];
            uint64_t va = e->vr;
            if (va != 1 && (va & ~e->lmask) == (la & ~e->lmask))
                e->vr = e->vw = e->vx = 1;
        }
    }
}
