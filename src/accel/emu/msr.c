/* Model-specific registers, CPUID, control-register writes, the TSC and port I/O. */
#include "accel/emu/cpu.h"

#include <errno.h>
#include <stdio.h>

#include "hw/irqchip.h"
#include "util/clock.h"
#include "util/log.h"
#include "vm/machine.h"

enum {
    MSR_TSC = 0x10, MSR_APIC_BASE = 0x1b, MSR_TSC_DEADLINE = 0x6e0, MSR_MTRRCAP = 0xfe, MSR_SYSENTER_CS = 0x174,
    MSR_SYSENTER_ESP = 0x175, MSR_SYSENTER_EIP = 0x176, MSR_MCG_CAP = 0x179, MSR_MCG_STATUS = 0x17a,
    MSR_MISC_ENABLE = 0x1a0, MSR_MTRR_PHYS0 = 0x200, MSR_MTRR_FIX64K = 0x250,
    MSR_MTRR_FIX16K0 = 0x258, MSR_MTRR_FIX16K1 = 0x259, MSR_MTRR_FIX4K0 = 0x268, MSR_PAT = 0x277,
    MSR_MTRR_DEF = 0x2ff, MSR_EFER = 0xc0000080, MSR_STAR = 0xc0000081, MSR_LSTAR = 0xc0000082,
    MSR_CSTAR = 0xc0000083, MSR_SFMASK = 0xc0000084, MSR_FS_BASE = 0xc0000100,
    MSR_GS_BASE = 0xc0000101, MSR_KERNEL_GS = 0xc0000102, MSR_TSC_AUX = 0xc0000103,
    MSR_PKRS = 0x6e1,
};

/* An address MSR (segment bases, SYSCALL/SYSENTER targets) takes canonical addresses only:
 * WRMSR of another is #GP, on Intel and AMD alike (48-bit linear addresses). */
static bool canonical(uint64_t v)
{
    return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

#define APIC_BASE_EXTD (1ull << 10)
#define CPUID_1_ECX_X2APIC (1u << 21)
#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)

/* The TSC counts host nanoseconds: a steady 1 GHz, whatever the guest's speed. */
uint64_t cpu_tsc(struct cpu *c)
{
    return clock_now_ns() + c->tsc_offset;
}

void cpu_sync_tsc(struct cpu *c)
{
    if (!c->env.lapic)
        return;
    uint64_t now = clock_now_ns();
    lapic_set_tsc(c->env.lapic, 1000000000u, now, now + c->tsc_offset);
}

/* After a write that may arm the local timer or raise an interrupt: the timer is polled now and
 * the block ends, so what is due is taken before the next instruction. */
static void cpu_apic_timer_now(struct cpu *c)
{
    c->timer_deadline = lapic_poll_timer(c->env.lapic, clock_now_ns());
    atomic_store_explicit(&c->irq_check, true, memory_order_relaxed);
    c->brk = true;
}

static bool cpu_has_feat(const struct cpu *c, enum cpu_feat_word w, uint32_t bit)
{
    return c->vm->model.feat[w] & bit;
}

int msr_read(struct cpu *c, uint32_t msr, uint64_t *v)
{
    switch (msr) {
    case MSR_TSC: *v = cpu_tsc(c); return 0;
    case MSR_TSC_DEADLINE:
        /* #GP without the CPUID bit, as on hardware */
        if (!c->env.lapic || !cpu_has_feat(c, CPUF_1_ECX, CPUID_1_ECX_TSC_DEADLINE))
            break;
        cpu_apic_timer_now(c);   /* a deadline that passed reads 0 */
        return lapic_msr_read(c->env.lapic, msr, v);
    case MSR_APIC_BASE:
        if (c->env.lapic && lapic_msr_read(c->env.lapic, msr, v) == 0)
            return 0;
        *v = c->apic_base;
        return 0;
    case MSR_MTRRCAP: *v = 0x508; return 0;  /* 8 variable ranges, fixed ranges, WC */
    case MSR_SYSENTER_CS: *v = c->sysenter_cs; return 0;
    case MSR_SYSENTER_ESP: *v = c->sysenter_esp; return 0;
    case MSR_SYSENTER_EIP: *v = c->sysenter_eip; return 0;
    case MSR_MCG_CAP: case MSR_MCG_STATUS: *v = 0; return 0;
    case MSR_MISC_ENABLE: *v = c->misc_enable; return 0;
    case MSR_PAT: *v = c->pat; return 0;
    case MSR_MTRR_DEF: *v = c->mtrr_def; return 0;
    case MSR_MTRR_FIX64K: *v = c->mtrr_fixed[0]; return 0;
    case MSR_MTRR_FIX16K0: case MSR_MTRR_FIX16K1: *v = c->mtrr_fixed[1 + msr - MSR_MTRR_FIX16K0]; return 0;
    case MSR_EFER: *v = c->efer; return 0;
    case MSR_STAR: *v = c->star; return 0;
    case MSR_LSTAR: *v = c->lstar; return 0;
    case MSR_CSTAR: *v = c->cstar; return 0;
    case MSR_SFMASK: *v = c->sfmask; return 0;
    case MSR_FS_BASE: *v = c->seg[SEG_FS].base; return 0;
    case MSR_GS_BASE: *v = c->seg[SEG_GS].base; return 0;
    case MSR_KERNEL_GS: *v = c->kernel_gs; return 0;
    case MSR_TSC_AUX: *v = c->tsc_aux; return 0;
    case MSR_PKRS:
        if (!prot_has_pks(c))
            break;
        *v = c->pkrs;
        return 0;
    }
    if (msr >= MSR_MTRR_FIX4K0 && msr < MSR_MTRR_FIX4K0 + 8) {
        *v = c->mtrr_fixed[3 + msr - MSR_MTRR_FIX4K0];
        return 0;
    }
    if (msr >= MSR_MTRR_PHYS0 && msr < MSR_MTRR_PHYS0 + 16) {
        *v = c->mtrr_var[msr - MSR_MTRR_PHYS0];
        return 0;
    }
    if (msr >= 0x800 && msr <= 0x8ff && c->env.lapic)
        return lapic_msr_read(c->env.lapic, msr, v);
    /* AMD configuration registers Linux reads on family 0xf: all features off */
    if (msr == 0x8b || msr == 0xc0010010 || msr == 0xc0010015 || msr == 0xc0011029 ||
        (msr >= 0xc0010000 && msr <= 0xc0010007)) {
        *v = 0;
        return 0;
    }
    machine_log_guest(c->m, LOG_UNIMP, "rdmsr", "cpu%d: rdmsr %#x", c->id, msr);
    return -EINVAL;
}

int msr_write(struct cpu *c, uint32_t msr, uint64_t v)
{
    switch (msr) {
    case MSR_SYSENTER_ESP: case MSR_SYSENTER_EIP: case MSR_LSTAR: case MSR_CSTAR:
    case MSR_FS_BASE: case MSR_GS_BASE: case MSR_KERNEL_GS:
        if (!canonical(v))
            return -EINVAL;
        break;
    case MSR_PKRS:
        return prot_set_pkrs(c, v) < 0 ? -EINVAL : 0;
    }
    switch (msr) {
    case MSR_TSC:
        c->tsc_offset = v - clock_now_ns();
        cpu_sync_tsc(c);   /* a TSC deadline is in the guest's TSC */
        return 0;
    case MSR_TSC_DEADLINE:
        if (!c->env.lapic || !cpu_has_feat(c, CPUF_1_ECX, CPUID_1_ECX_TSC_DEADLINE))
            break;
        if (lapic_msr_write(c->env.lapic, msr, v))
            return -EINVAL;
        cpu_apic_timer_now(c);   /* a deadline already passed fires before the next instruction */
        return 0;
    case MSR_APIC_BASE:
        /* x2APIC mode needs the CPUID bit (SDM 11.12.1: EXTD is reserved without it), and the
         * base fits the physical address width */
        if ((v & APIC_BASE_EXTD) && !cpu_has_feat(c, CPUF_1_ECX, CPUID_1_ECX_X2APIC))
            return -EINVAL;
        if (v >> EMU_PHYS_BITS)
            return -EINVAL;
        if (c->env.lapic) {
            int r = lapic_msr_write(c->env.lapic, msr, v);
            if (r < 0)
                return r;
        }
        c->apic_base = v;
        c->timer_deadline = 0;
        tlb_flush(c, true);
        return 0;
    case MSR_SYSENTER_CS: c->sysenter_cs = v; return 0;
    case MSR_SYSENTER_ESP: c->sysenter_esp = v; return 0;
    case MSR_SYSENTER_EIP: c->sysenter_eip = v; return 0;
    case MSR_MCG_STATUS: return 0;
    case MSR_MISC_ENABLE: c->misc_enable = v; return 0;
    case MSR_PAT: c->pat = v; return 0;
    case MSR_MTRR_DEF: c->mtrr_def = v; return 0;
    case MSR_MTRR_FIX64K: c->mtrr_fixed[0] = v; return 0;
    case MSR_MTRR_FIX16K0: case MSR_MTRR_FIX16K1: c->mtrr_fixed[1 + msr - MSR_MTRR_FIX16K0] = v; return 0;
    case MSR_EFER:
        if (v & ~(uint64_t)(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE))
            return -EINVAL;
        cpu_set_efer(c, v);
        return 0;
    case MSR_STAR: c->star = v; return 0;
    case MSR_LSTAR: c->lstar = v; return 0;
    case MSR_CSTAR: c->cstar = v; return 0;
    case MSR_SFMASK: c->sfmask = v; return 0;
    case MSR_FS_BASE: c->seg[SEG_FS].base = c->segbase[SEG_FS] = v; return 0;
    case MSR_GS_BASE: c->seg[SEG_GS].base = c->segbase[SEG_GS] = v; return 0;
    case MSR_KERNEL_GS: c->kernel_gs = v; return 0;
    case MSR_TSC_AUX: c->tsc_aux = (uint32_t)v; return 0;
    }
    if (msr >= MSR_MTRR_FIX4K0 && msr < MSR_MTRR_FIX4K0 + 8) {
        c->mtrr_fixed[3 + msr - MSR_MTRR_FIX4K0] = v;
        return 0;
    }
    if (msr >= MSR_MTRR_PHYS0 && msr < MSR_MTRR_PHYS0 + 16) {
        c->mtrr_var[msr - MSR_MTRR_PHYS0] = v;
        return 0;
    }
    if (msr >= 0x800 && msr <= 0x8ff && c->env.lapic) {
        if (lapic_msr_write(c->env.lapic, msr, v))
            return -EINVAL;
        cpu_apic_timer_now(c);   /* the timer may have been (re)armed, an IPI sent to self */
        return 0;
    }
    if (msr == 0x8b || msr == 0xc0010015 || msr == 0xc0011029 || (msr >= 0xc0010000 && msr <= 0xc0010007))
        return 0;
    machine_log_guest(c->m, LOG_UNIMP, "wrmsr", "cpu%d: wrmsr %#x <- %#llx", c->id, msr, (unsigned long long)v);
    return -EINVAL;
}

static void put_str(uint32_t out[4], const char *s, const int order[3])
{
    for (int k = 0; k < 3; k++)
        memcpy(&out[order[k]], s + 4 * k, 4);
}

/* What the CPU reports: the identity and features of the -cpu model (vm/cpu_model.c), which
 * never names something this CPU does not implement. */
void cpu_model_cpuid(const struct cpu_model *m, int id, int ncpus, uint32_t leaf, uint32_t sub,
                     uint32_t out[4])
{
    static const int ebx_edx_ecx[3] = { 1, 3, 2 };
    bool has7 = m->feat[CPUF_7_EBX] || m->feat[CPUF_7_ECX];
    out[0] = out[1] = out[2] = out[3] = 0;
    switch (leaf) {
    case 0:
        out[0] = (m->feat[CPUF_1_ECX] & (1u << 26)) ? 0xd : has7 ? 7 : 1;   /* XSAVE: leaf 0xD */
        if ((m->feat[CPUF_1_ECX] & CPUID_1_ECX_X2APIC) && out[0] < 0xb)
            out[0] = 0xb;   /* x2APIC: leaf 0xB holds the 32-bit x2APIC ID */
        put_str(out, m->vendor, ebx_edx_ecx);
        break;
    case 1:
        out[0] = m->signature;
        out[1] = ((uint32_t)id << 24) | ((uint32_t)ncpus << 16) | (8 << 8);
        out[2] = m->feat[CPUF_1_ECX];
        out[3] = m->feat[CPUF_1_EDX];
        if (ncpus > 1)
            out[3] |= 1u << 28;   /* HTT: the count in EBX[23:16] is meaningful */
        break;
    case 7:
        if (has7 && sub == 0) {
            out[1] = m->feat[CPUF_7_EBX];
            out[2] = m->feat[CPUF_7_ECX];
        }
        break;
    case 0xb:
        /* x2APIC topology (SDM vol. 2, CPUID leaf 0BH): one thread per core, ncpus cores in one
         * package, as leaf 1 and 0x80000008 say; EDX is the x2APIC ID at every level. */
        if (!(m->feat[CPUF_1_ECX] & CPUID_1_ECX_X2APIC))
            break;
        out[2] = sub & 0xff;
        out[3] = (uint32_t)id;
        if (sub == 0) {
            out[1] = 1;
            out[2] |= 1u << 8;      /* SMT */
        } else if (sub == 1) {
            unsigned bits = 0;
            while ((1 << bits) < ncpus)
                bits++;
            out[0] = bits;
            out[1] = (uint32_t)ncpus;
            out[2] |= 2u << 8;      /* core */
        }
        break;
    case 0x40000000:
        out[0] = 0x40000001;
        put_str(out, "TCGTCGTCGTCG", (const int[3]){ 1, 2, 3 });
        break;
    case 0x80000000:
        out[0] = 0x80000008;
        put_str(out, m->vendor, ebx_edx_ecx);
        break;
    case 0x80000001:
        out[0] = m->signature;
        out[2] = m->feat[CPUF_X1_ECX];
        out[3] = m->feat[CPUF_X1_EDX];
        if (!strcmp(m->vendor, "AuthenticAMD"))   /* AMD mirrors the common leaf-1 bits here */
            out[3] |= m->feat[CPUF_1_EDX] & 0x0183f3ffu;
        break;
    case 0x80000002: case 0x80000003: case 0x80000004: {
        char name[49] = { 0 };
        snprintf(name, sizeof(name), "%-48s", m->model_id);
        memcpy(out, name + 16 * (leaf - 0x80000002), 16);
        break;
    }
    case 0x80000007:
        out[3] = m->feat[CPUF_X7_EDX];
        break;
    case 0x80000008:
        out[0] = 0x00003000 | EMU_PHYS_BITS;   /* 48-bit virtual addresses */
        out[2] = (uint32_t)(ncpus - 1);
        break;
    }
}

void cpuid_query(struct cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    cpu_model_cpuid(&c->vm->model, c->id, c->ncpus, leaf, sub, out);
    xsave_cpuid(c, leaf, sub, out);
    prot_cpuid(c, leaf, sub, out);
    /* CPUID.1:EDX.APIC follows IA32_APIC_BASE.EN (SDM 11.4.3) */
    if (leaf == 1 && c->env.lapic && !(c->apic_base & (1u << 11)))
        out[3] &= ~(1u << 9);
}

void cpu_set_efer(struct cpu *c, uint64_t v)
{
    uint64_t lma = c->efer & EFER_LMA;
    c->efer = (v & ~(uint64_t)EFER_LMA) | lma;
    cpu_update_mode(c);
    tlb_flush(c, true);
}

void cpu_set_cr0(struct cpu *c, uint64_t v)
{
    v |= 0x10;   /* ET */
    if ((v & CR0_PG) && !(v & CR0_PE))
        raise_gp(c, 0);
    if ((v & CR0_PG) && !(c->cr0 & CR0_PG) && (c->efer & EFER_LME)) {
        if (!(c->cr4 & CR4_PAE))
            raise_gp(c, 0);
        c->efer |= EFER_LMA;
    }
    if (!(v & CR0_PG) && (c->cr4 & CR4_PCIDE))
        raise_gp(c, 0);   /* PCIDs exist only with 4-level paging */
    if (!(v & CR0_PG) && (c->cr0 & CR0_PG) && (c->efer & EFER_LMA)) {
        if (c->code64)
            raise_gp(c, 0);
        c->efer &= ~(uint64_t)EFER_LMA;
    }
    c->cr0 = v;
    if (!(v & CR0_PE))
        cpu_set_cpl(c, 0);
    cpu_update_mode(c);
    tlb_flush(c, true);
}

void cpu_set_cr3(struct cpu *c, uint64_t v)
{
    pcid_set_cr3(c, v);
    c->brk = true;
}

void cpu_set_cr4(struct cpu *c, uint64_t v)
{
    if (v & ~prot_cr4_allowed(c))
        raise_gp(c, 0);
    if (c->lma && !(v & CR4_PAE))
        raise_gp(c, 0);
    pcid_check_cr4(c, v);
    c->cr4 = v;
    tlb_flush(c, true);
    cpu_select_tlb(c);   /* SMAP on or off: EFLAGS.AC may now matter */
    c->brk = true;
}

void cpu_io(struct cpu *c, uint16_t port, void *data, int sz, bool is_write)
{
    if ((c->cr0 & CR0_PE) && c->cpl > (int)((c->eflags >> 12) & 3))
        raise_gp(c, 0);   /* no I/O permission bitmap: user I/O needs IOPL */
    if (unlikely(c->dbg_bp))
        debug_check_io(c, port, sz);
    if (c->env.io) {
        c->env.io(c->env.opaque, port, data, (unsigned)sz, is_write);
        cpu_check_map(c);
        if (atomic_load_explicit(&c->irq_check, memory_order_relaxed))
            c->brk = true;   /* an interrupt the write raised is taken after this instruction */
    } else if (!is_write)
        memset(data, 0xff, sz);
}
