/* Paging and the software TLB: page walks (2-level, PAE, 4-level), permission checks and #PF,
 * accessed/dirty bits, and the slow paths of memory access (page crossings, MMIO, the APIC page). */
#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"
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

/* The xAPIC page answers while the APIC is enabled in xAPIC mode; disabled or in x2APIC mode
 * the address is nobody's (SDM 11.4.3, 11.12.2) and reaches the bus. */
static bool is_apic_page(struct cpu *c, uint64_t pa)
{
    return c->env.lapic && (pa & ~0xfffull) == (c->apic_base & ~0xfffull) &&
           (c->apic_base & (3u << 10)) == (1u << 11);
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
            c->brk = true;   /* a self-IPI is taken after this instruction, not blocks later */
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

/* Page-fault error code bits */
enum { PF_P = 1, PF_W = 2, PF_U = 4, PF_RSVD = 8, PF_I = 16, PF_PK = 32 };

/* Physical-address bits an entry may not set: MAXPHYADDR to 51 (SDM vol. 3, 4.5) */
#define PTE_RSVD_PHYS (((1ull << 52) - 1) & ~((1ull << EMU_PHYS_BITS) - 1))
#define CPUID_X1_EDX_PDPE1GB (1u << 26)

struct walk {
    uint64_t pa;          /* physical address of la */
    uint64_t lmask;       /* offset mask of the page that maps it */
    uint64_t leaf;        /* the entry that maps it */
    uint64_t ea[5];       /* where the walk read each entry, its size and what it read */
    uint64_t ev[5];
    int esz[5], n;
    bool w, u, x, g;
    uint8_t pkey;         /* bits 62:59 of the leaf with 4-level paging */
    /* 4-level paging: the PD and PT the walk went through (0: none, or it came from the
     * paging-structure cache) and the rights above each, for pwc_fill */
    uint64_t pd, pt;
    bool pd_w, pd_u, pd_x, pt_w, pt_u, pt_x;
};

#define PWC_MASK ((1u << PWC_BITS) - 1)

void pwc_drop(struct cpu *c)
{
    if (!c->pwc_used)
        return;
    for (unsigned k = 0; k <= PWC_MASK; k++)
        c->pwc_pt[k].tag = c->pwc_pd[k].tag = ~0ull;
    c->pwc_used = false;
}

/* After a walk that set its accessed bits: the next walk under the same PD or PT starts there.
 * Only then, so that a walk that faults further down never leaves an entry whose accessed bit
 * a later walk would skip. */
static void pwc_fill(struct cpu *c, uint64_t la, const struct walk *wk)
{
    if (wk->pd) {
        c->pwc_pd[(la >> 30) & PWC_MASK] = (struct pwc_entry){ la >> 30, wk->pd, wk->pd_w,
                                                               wk->pd_u, wk->pd_x };
        c->pwc_used = true;
    }
    if (wk->pt) {
        c->pwc_pt[(la >> 21) & PWC_MASK] = (struct pwc_entry){ la >> 21, wk->pt, wk->pt_w,
                                                               wk->pt_u, wk->pt_x };
        c->pwc_used = true;
    }
}

/* Reserved bits of a present entry at a level (shift: 39 PML4E, 30 PDPTE, 21 PDE, 12 PTE) with
 * PAE or 4-level paging; a set one makes the walk stop with a RSVD page fault. */
static uint64_t pae_reserved(const struct cpu *c, uint64_t e, int shift)
{
    uint64_t r = PTE_RSVD_PHYS;
    if (!(c->efer & EFER_NXE))
        r |= PTE_NX;
    if (!c->lma)
        r |= 0x7ff0000000000000ull;   /* PAE: bits 62:52 too; 4-level leaves them to software */
    if (shift == 39) {
        r |= PTE_PS;
    } else if ((e & PTE_PS) && shift == 30) {
        if (!(c->vm->model.feat[CPUF_X1_EDX] & CPUID_X1_EDX_PDPE1GB))
            r |= PTE_PS;              /* no 1 GiB pages on this model */
        else
            r |= 0x3fffe000ull;       /* bits 29:13 */
    } else if ((e & PTE_PS) && shift == 21) {
        r |= 0x1fe000ull;             /* bits 20:13 */
    }
    return e & r;
}

/* Walks the page tables for la: #PF for a missing or malformed entry, with the error code bits
 * of the access in err. Fills out with the rights the walk found, and checks none of them. */
static void walk_tables(struct cpu *c, uint64_t la, uint32_t err, struct walk *out)
{
    bool nxe = c->efer & EFER_NXE;
    bool w = true, u = true, x = true;
    uint64_t e = 0, table;
    int n = 0, levels, shift;
    out->pd = out->pt = 0;
    if (c->cr4 & CR4_PAE) {
        if (c->lma) {
            table = c->cr3 & PTE_ADDR;
            levels = 4;
            /* the paging-structure cache: start at the PT or PD of la when it has it */
            const struct pwc_entry *pe = &c->pwc_pt[(la >> 21) & PWC_MASK];
            if (pe->tag == la >> 21) {
                levels = 1;
            } else {
                pe = &c->pwc_pd[(la >> 30) & PWC_MASK];
                if (pe->tag == la >> 30)
                    levels = 2;
            }
            if (levels < 4) {
                table = pe->table;
                w = pe->w;
                u = pe->u;
                x = pe->x;
            }
        } else {
            uint64_t pdpte = phys_rd(c, (c->cr3 & 0xffffffe0) + ((la >> 30) & 3) * 8, 8);
            if (!(pdpte & PTE_P))
                page_fault(c, la, err);
            if (pdpte & (PTE_RSVD_PHYS | 0xfff0000000000000ull | 0x1e6ull))
                page_fault(c, la, err | PF_P | PF_RSVD);
            table = pdpte & PTE_ADDR;
            levels = 2;
        }
        shift = 12 + 9 * (levels - 1);
        for (;;) {
            uint64_t a = table + ((la >> shift) & 0x1ff) * 8;
            e = phys_rd(c, a, 8);
            if (!(e & PTE_P))
                page_fault(c, la, err);
            if (pae_reserved(c, e, shift))
                page_fault(c, la, err | PF_P | PF_RSVD);
            out->ea[n] = a;
            out->ev[n] = e;
            out->esz[n++] = 8;
            w = w && (e & PTE_W);
            u = u && (e & PTE_U);
            if (nxe && (e & PTE_NX))
                x = false;
            if (shift == 12 || ((e & PTE_PS) && shift <= 30))
                break;
            table = e & PTE_ADDR;
            if (c->lma && shift == 30) {
                out->pd = table;
                out->pd_w = w, out->pd_u = u, out->pd_x = x;
            } else if (c->lma && shift == 21) {
                out->pt = table;
                out->pt_w = w, out->pt_u = u, out->pt_x = x;
            }
            shift -= 9;
        }
        out->lmask = (1ull << shift) - 1;
        out->pa = ((e & PTE_ADDR) & ~out->lmask) | (la & out->lmask);
        out->pkey = c->lma ? (uint8_t)((e >> 59) & 0xf) : 0;
    } else {
        uint64_t a = (c->cr3 & 0xfffff000) + ((la >> 22) & 0x3ff) * 4;
        e = phys_rd(c, a, 4);
        if (!(e & PTE_P))
            page_fault(c, la, err);
        out->ea[n] = a;
        out->ev[n] = e;
        out->esz[n++] = 4;
        w = e & PTE_W;
        u = e & PTE_U;
        if ((e & PTE_PS) && (c->cr4 & CR4_PSE)) {
            if (e & (1u << 21))       /* above bits 39:32 of the address (PSE-36) */
                page_fault(c, la, err | PF_P | PF_RSVD);
            out->lmask = 0x3fffff;
            out->pa = (e & 0xffc00000) | ((e & 0x1fe000) << 19) | (la & 0x3fffff);
        } else {
            a = (e & 0xfffff000) + ((la >> 12) & 0x3ff) * 4;
            e = phys_rd(c, a, 4);
            if (!(e & PTE_P))
                page_fault(c, la, err);
            out->ea[n] = a;
            out->ev[n] = e;
            out->esz[n++] = 4;
            w = w && (e & PTE_W);
            u = u && (e & PTE_U);
            out->lmask = 0xfff;
            out->pa = (e & 0xfffff000) | (la & 0xfff);
        }
        out->pkey = 0;
    }
    out->n = n;
    out->leaf = e;
    out->w = w;
    out->u = u;
    out->x = x;
    out->g = (e & PTE_G) && (c->cr4 & CR4_PGE);
}

/* Whether an access of class set (TLB_SUP, TLB_USER, TLB_SUP_AC) may do acc on a page the walk
 * found: 0, or the error code bits of the fault (PF_P, and PF_PK when a protection key denies
 * it, whatever else does). SDM vol. 3, 4.6. */
static uint32_t prot_check(const struct cpu *c, const struct walk *wk, int acc, int set)
{
    bool user = set == TLB_USER, wp = c->cr0 & CR0_WP;
    uint32_t f = 0;
    if (user) {
        if (!wk->u || (acc == ACC_W && !wk->w))
            f = PF_P;
    } else {
        if (acc == ACC_W && !wk->w && wp)
            f = PF_P;
        /* SMEP: no supervisor fetch from a user page; SMAP: no supervisor data access to one
         * unless EFLAGS.AC allows it for an explicit access (the TLB_SUP_AC set) */
        if (wk->u && acc == ACC_X && (c->cr4 & CR4_SMEP))
            f = PF_P;
        if (wk->u && acc != ACC_X && (c->cr4 & CR4_SMAP) && set != TLB_SUP_AC)
            f = PF_P;
    }
    if (acc == ACC_X)
        return wk->x ? f : PF_P;
    /* protection keys (4-level paging only): PKRU for user pages, IA32_PKRS for supervisor
     * pages, the latter for supervisor accesses; write-disable binds supervisor writes only
     * under CR0.WP */
    if (!c->lma)
        return f;
    uint32_t k;
    if (wk->u && (c->cr4 & CR4_PKE))
        k = c->pkru >> (2 * wk->pkey);
    else if (!wk->u && !user && (c->cr4 & CR4_PKS))
        k = (uint32_t)c->pkrs >> (2 * wk->pkey);
    else
        return f;
    if ((k & 1) || ((k & 2) && acc == ACC_W && (user || wp)))
        f |= PF_P | PF_PK;
    return f;
}

/* Walks the page tables for la and checks access acc of class set; faults with #PF. Sets the
 * accessed and dirty bits of an access that is allowed. */
static void walk(struct cpu *c, uint64_t la, int acc, int set, struct walk *out)
{
    uint32_t err = (acc == ACC_W ? PF_W : 0) | (set == TLB_USER ? PF_U : 0);
    if (acc == ACC_X && ((c->efer & EFER_NXE) || (c->cr4 & CR4_SMEP)))
        err |= PF_I;
    walk_tables(c, la, err, out);
    uint32_t f = prot_check(c, out, acc, set);
    if (f)
        page_fault(c, la, err | f);
    /* the value the walk read says whether the accessed bit is there: a second read of every
     * entry was a region lookup each for nothing (pte_set's OR is atomic whatever it finds) */
    for (int k = 0; k < out->n; k++)
        if (!(out->ev[k] & PTE_A))
            pte_set(c, out->ea[k], out->esz[k], PTE_A);
    if (acc == ACC_W && !(out->leaf & PTE_D))
        pte_set(c, out->ea[out->n - 1], out->esz[out->n - 1], PTE_D);
    pwc_fill(c, la, out);
}

/* The victim TLB: a hit for vpage with the permission acc needs swaps into the direct-mapped
 * slot e, which then holds what a walk would have put there (an entry is only ever filled from
 * a walk, and flushed with the slots). */
static bool victim_take(struct cpu *c, int set, struct tlb_entry *e, uint64_t vpage, int acc)
{
    struct tlb_entry *v = c->victim[set];
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
static void victim_push(struct cpu *c, int set, struct tlb_entry *e, uint64_t vpage)
{
    struct tlb_entry *v = c->victim[set];
    for (int k = 0; k < TLB_VICTIM; k++)
        if (v[k].vr == vpage)
            v[k].vr = v[k].vw = v[k].vx = 1;
    if (e->vr != 1 && e->vr != vpage)
        v[c->victim_next[set]++ % TLB_VICTIM] = *e;
}

static bool tlb_empty(const struct tlb_entry *e)
{
    return e->vr == 1 && e->vw == 1 && e->vx == 1;
}

/* Slot e of set now holds an entry, and held none (was_empty) or one of the other kind (was_g):
 * its index goes to the log of its kind, so that a flush finds it. A log that is full only
 * counts on, and the flush scans the set. */
static void tlb_log_fill(struct cpu *c, int set, const struct tlb_entry *e, bool was_empty,
                         bool was_g)
{
    if (!was_empty && was_g == e->global)
        return;   /* already in the log of its kind */
    int g = e->global;
    uint32_t n = c->tlb_nlog[set][g];
    if (n < TLB_LOG)
        c->tlb_log[set][g][n] = (uint16_t)(e - c->tlb[set]);
    if (n <= TLB_LOG)
        c->tlb_nlog[set][g] = n + 1;
}

/* A non-canonical address faults with #SS(0) when the access is through SS (the stack, or a
 * memory operand based on RSP/RBP or with an SS prefix), #GP(0) otherwise (SDM vol. 3 6.15,
 * "Interrupt 12"). Only a TLB miss gets here: no entry ever holds a non-canonical page. */
static bool noncanonical_ss(struct cpu *c, uint64_t la)
{
    const struct insn *i = c->cur;
    if (c->acc_ss)
        return true;
    if (!i || i->seg != SEG_SS)
        return false;
    switch (i->op) {
    case 0x6c: case 0x6d: case 0xaa: case 0xab: case 0xae: case 0xaf:
        return false;   /* INS, STOS, SCAS: ES only, whatever the prefix */
    case 0xa4: case 0xa5: case 0xa6: case 0xa7:   /* MOVS, CMPS: the prefix is the source's */
        return la >> 12 == (c->r[R_SI] & size_mask(i->asz)) >> 12;
    }
    return true;
}

/* Translates la; fills the TLB when it is RAM. Returns the host pointer, or NULL for MMIO with
 * *pa set. */
static uint8_t *xlate_as(struct cpu *c, uint64_t la, int acc, int set, uint64_t *pa)
{
    struct walk wk;
    bool r_ok = true, w_ok = true, x_ok = true;
    if (c->lma && (uint64_t)((int64_t)(la << 16) >> 16) != la)
        raise_exc_err(c, noncanonical_ss(c, la) ? EXC_SS : EXC_GP, 0);
    struct tlb_entry *e = tlb_slot(c->tlb[set], la);
    bool was_empty = tlb_empty(e), was_g = e->global;
    if (victim_take(c, set, e, la & ~0xfffull, acc)) {
        tlb_log_fill(c, set, e, was_empty, was_g);
        *pa = e->pa | (la & 0xfff);
        return (uint8_t *)(e->add + la);
    }
    if (c->cr0 & CR0_PG) {
        walk(c, la, acc, set, &wk);
        /* what the entry allows besides this access: a hit never checks again */
        r_ok = acc == ACC_R || !prot_check(c, &wk, ACC_R, set);
        x_ok = acc == ACC_X || !prot_check(c, &wk, ACC_X, set);
        /* writes through the TLB are allowed only once the page is dirty */
        w_ok = acc == ACC_W || ((wk.leaf & PTE_D) && !prot_check(c, &wk, ACC_W, set));
    } else {
        wk.pa = la & 0xffffffffull;
        wk.lmask = 0xfff;
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
    bool w = w_ok && !ro && (!r->dirty || acc == ACC_W);
    if (w && r->dirty)
        phys_mark_dirty(r, off);
    uint64_t vpage = la & ~0xfffull;
    victim_push(c, set, e, vpage);
    c->tlb_used |= (uint8_t)(1u << set);
    if (wk.lmask > 0xfff) {
        if ((la & ~wk.lmask) < c->large_lo[set])
            c->large_lo[set] = la & ~wk.lmask;
        if ((la | wk.lmask) > c->large_hi[set])
            c->large_hi[set] = la | wk.lmask;
    }
    e->vr = r_ok ? vpage : 1;
    e->vw = w ? vpage : 1;
    e->vx = x_ok ? vpage : 1;
    e->add = (uintptr_t)host - vpage;
    e->pa = ppage;
    e->pidx = pidx;
    e->global = wk.g;
    e->lmask = wk.lmask;
    if (unlikely(c->dbg_bp))
        e->vr = e->vw = 1;   /* data breakpoints: every access comes through rd_bytes/wr_bytes */
    tlb_log_fill(c, set, e, was_empty, was_g);
    return host + (la & 0xfff);
}

static int tlb_set_cur(const struct cpu *c)
{
    return (int)((c->tlbc - c->tlb[0]) >> TLB_BITS);
}

static uint8_t *xlate(struct cpu *c, uint64_t la, int acc, uint64_t *pa)
{
    return xlate_as(c, la, acc, tlb_set_cur(c), pa);
}

/* Implicit supervisor accesses (descriptor tables, the TSS) whatever the CPL, and whatever
 * EFLAGS.AC says: SMAP always keeps them from user pages. */
uint64_t mem_rd_sys(struct cpu *c, uint64_t la, int sz)
{
    if (c->tlbc == c->tlb[TLB_SUP])
        return mem_rd(c, la, sz);
    /* from user mode, or from a kernel inside STAC: the supervisor set, a byte at a time (an
     * interrupt in a kernel's copy_from_user reads the IDT here: hits cost no walk) */
    uint64_t v = 0;
    for (int k = 0; k < sz; k++) {
        uint64_t pa, a = (la + k) & c->lin_mask;
        const struct tlb_entry *e = tlb_slot(c->tlb[TLB_SUP], a);
        uint8_t *h = e->vr == (a & ~0xfffull) ? (uint8_t *)(e->add + a)
                                               : xlate_as(c, a, ACC_R, TLB_SUP, &pa);
        uint8_t b;
        if (h)
            b = *h;
        else
            mmio_access(c, pa, &b, 1, false);
        v |= (uint64_t)b << (8 * k);
    }
    return v;
}

/* The same for writes (a task switch saving the old task into its TSS, busy bits in the GDT):
 * a byte at a time through the supervisor set, where mem_wr would check the CPL's rights. */
void mem_wr_sys(struct cpu *c, uint64_t la, int sz, uint64_t v)
{
    if (c->tlbc == c->tlb[TLB_SUP]) {
        mem_wr(c, la, sz, v);
        return;
    }
    /* both ends first, so that a fault leaves memory unchanged */
    uint64_t pa, end = (la + (uint64_t)sz - 1) & c->lin_mask;
    xlate_as(c, la & c->lin_mask, ACC_W, TLB_SUP, &pa);
    xlate_as(c, end, ACC_W, TLB_SUP, &pa);
    for (int k = 0; k < sz; k++) {
        uint64_t a = (la + k) & c->lin_mask;
        uint8_t b = (uint8_t)(v >> (8 * k));
        uint8_t *h = xlate_as(c, a, ACC_W, TLB_SUP, &pa);
        if (h) {
            struct tlb_entry *e = tlb_slot(c->tlb[TLB_SUP], a);
            if (atomic_load_explicit(&c->vm->code[e->pidx], memory_order_relaxed))
                mem_smc(c, e->pidx);
            *h = b;
        } else {
            mmio_access(c, pa, &b, 1, true);
        }
    }
}

/* n bytes within la's page. The TLB first: SSE operands and string moves come here for every
 * access, and a walk each time made a guest's memcpy run at a few tens of MiB/s. */
static void rd_bytes(struct cpu *c, uint64_t la, uint8_t *buf, int n)
{
    if (unlikely(c->dbg_bp))
        debug_check_data(c, la, n, false);
    const struct tlb_entry *e = tlb_slot(c->tlbc, la);
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
    if (unlikely(c->dbg_bp))
        debug_check_data(c, la, n, true);
    struct tlb_entry *e = tlb_slot(c->tlbc, la);
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

uint64_t mem_rd_slow_ss(struct cpu *c, uint64_t la, int sz)
{
    c->acc_ss = true;   /* a fault on the way leaves it set: raise_fault clears it */
    uint64_t v = mem_rd_slow(c, la, sz);
    c->acc_ss = false;
    return v;
}

void mem_wr_slow_ss(struct cpu *c, uint64_t la, int sz, uint64_t v)
{
    c->acc_ss = true;
    mem_wr_slow(c, la, sz, v);
    c->acc_ss = false;
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
    if ((la & 0xfff) + sz > 0x1000 || unlikely(c->dbg_bp))
        return NULL;
    struct tlb_entry *e = tlb_slot(c->tlbc, la);
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
    if ((la & 0xfff) + sz > 0x1000 || unlikely(c->dbg_bp))
        return NULL;
    struct tlb_entry *e = tlb_slot(c->tlbc, la);
    if (e->vr == (la & ~0xfffull))
        return (const uint8_t *)(e->add + la);
    uint64_t pa;
    return xlate(c, la, ACC_R, &pa);
}

/* Instruction bytes from a page that is not RAM: what the device (or nothing: all ones) answers,
 * a byte at a time, as a fetch from MMIO reads it. n bytes, all in la's page. */
void mem_fetch_io(struct cpu *c, uint64_t la, uint8_t *buf, int n)
{
    uint64_t pa;
    uint8_t *h = xlate(c, la, ACC_X, &pa);
    if (h) {
        memcpy(buf, h, n);
        return;
    }
    for (int k = 0; k < n; k++)
        mmio_access(c, pa + k, buf + k, 1, false);
}

const uint8_t *mem_ptr_x(struct cpu *c, uint64_t la, uint64_t *pa, uint32_t *pidx)
{
    struct tlb_entry *e = tlb_slot(c->tlbc, la);
    if (e->vx != (la & ~0xfffull)) {
        uint8_t *h = xlate(c, la, ACC_X, pa);
        if (!h)
            return NULL;
    }
    *pa = e->pa | (la & 0xfff);
    *pidx = e->pidx;
    return (const uint8_t *)(e->add + la);
}

static void tlb_clear(struct tlb_entry *e)
{
    e->vr = e->vw = e->vx = 1;
}

/* Empties what the logs of set t name, of kind global too when global (or every slot of the set
 * once a log overflowed), and empties those logs. */
static void tlb_flush_set(struct cpu *c, int t, bool global)
{
    struct tlb_entry *s = c->tlb[t];
    uint32_t *n = c->tlb_nlog[t];
    if (n[0] > TLB_LOG || (global && n[1] > TLB_LOG)) {
        for (unsigned k = 0; k < TLB_SIZE; k++)
            if (global || !s[k].global)
                tlb_clear(&s[k]);
    } else {
        /* a slot in the non-global log may hold a global entry by now: it is in the other log */
        for (uint32_t k = 0; k < n[0]; k++) {
            struct tlb_entry *e = &s[c->tlb_log[t][0][k]];
            if (global || !e->global)
                tlb_clear(e);
        }
        if (global)
            for (uint32_t k = 0; k < n[1]; k++)
                tlb_clear(&s[c->tlb_log[t][1][k]]);
    }
    n[0] = 0;
    if (global)
        n[1] = 0;
    for (unsigned k = 0; k < TLB_VICTIM; k++) {
        struct tlb_entry *e = &c->victim[t][k];
        if (global || !e->global)
            tlb_clear(e);
    }
}

void tlb_flush(struct cpu *c, bool global)
{
    pwc_drop(c);
    for (int t = 0; t < TLB_SETS; t++)
        if (c->tlb_used & (1u << t))   /* the SMAP set is empty unless a kernel with SMAP ran with AC set */
            tlb_flush_set(c, t, global);
    if (global) {
        c->tlb_used = 0;
        for (int t = 0; t < TLB_SETS; t++) {
            c->large_lo[t] = ~0ull;
            c->large_hi[t] = 0;
        }
    }
}

void tlb_reset(struct cpu *c)
{
    c->pwc_used = true;
    for (int t = 0; t < TLB_SETS; t++)
        c->tlb_nlog[t][0] = c->tlb_nlog[t][1] = TLB_LOG + 1;
    c->tlb_used = (1u << TLB_SETS) - 1;
    tlb_flush(c, true);
}

/* Empties e if it maps la's page (an entry may allow fetches or writes only: SMAP, protection
 * keys, so any of its three tags names the page). */
static void tlb_drop_if(struct tlb_entry *e, uint64_t la)
{
    uint64_t va = e->vr != 1 ? e->vr : e->vx != 1 ? e->vx : e->vw;
    if (va != 1 && (va & ~e->lmask) == (la & ~e->lmask))
        tlb_clear(e);
}

void tlb_flush_page(struct cpu *c, uint64_t la)
{
    pwc_drop(c);   /* INVLPG drops every paging-structure cache entry, whatever its address */
    for (int t = 0; t < TLB_SETS; t++) {
        if (!(c->tlb_used & (1u << t)))
            continue;
        struct tlb_entry *s = c->tlb[t];
        if (la >= c->large_lo[t] && la <= c->large_hi[t]) {
            /* a large page may hold la: its entries are in the slots of all its 4 KiB pages,
             * which the logs name unless one overflowed */
            if (c->tlb_nlog[t][0] > TLB_LOG || c->tlb_nlog[t][1] > TLB_LOG) {
                for (unsigned k = 0; k < TLB_SIZE; k++)
                    tlb_drop_if(&s[k], la);
            } else {
                for (int g = 0; g < 2; g++)
                    for (uint32_t k = 0; k < c->tlb_nlog[t][g]; k++)
                        tlb_drop_if(&s[c->tlb_log[t][g][k]], la);
            }
        } else {
            tlb_drop_if(tlb_slot(s, la), la);
        }
        for (unsigned k = 0; k < TLB_VICTIM; k++)
            tlb_drop_if(&c->victim[t][k], la);
    }
}
