/* The software CPU's state in the state stream (vm/vmstate.h), Firecracker's persist way: the
 * live struct cpu is mapped to a plain state struct (the architectural registers, lazy flags
 * made whole) before saving, and loaded through emu_cpu_set_state, which re-derives the mode,
 * CPL and segment bases and drops the TLB. Translated code is a cache and is not carried. */
#include "accel/emu/emu.h"

#include "accel/emu/cpu.h"
#include "hw/irqchip.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct emu_cpu_persist {
    struct cpu *c;
    struct cpu_state s;
    uint64_t dr[8];
    uint64_t star, lstar, cstar, sfmask, kernel_gs, tsc_aux, pat, misc_enable;
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip, mtrr_def, mtrr_fixed[11], mtrr_var[16];
    uint64_t tsc_offset;
    uint8_t st[8][10];          /* x87 registers, 80 bits each */
    uint16_t fcw, fsw, ftw, fop;
    uint8_t top;
    uint64_t fip, fdp;
    uint64_t xmm[32];
    uint32_t mxcsr;
    bool halted, wait_sipi, inhibit_irq;
    uint64_t ymmh[32];          /* version 2: the YMM upper halves and XCR0 */
    uint64_t xcr0;
    uint32_t pkru;              /* version 3: the protection-key rights */
    uint64_t pkrs;
    bool nmi_blocked;           /* version 3 too: in an NMI handler, until its IRET */
};

#define P struct emu_cpu_persist
static const struct vmstate_field seg_fields[] = {
    VMSTATE_U64(struct cpu_segment, base), VMSTATE_U32(struct cpu_segment, limit),
    VMSTATE_U16(struct cpu_segment, selector), VMSTATE_U8(struct cpu_segment, type),
    VMSTATE_U8(struct cpu_segment, s), VMSTATE_U8(struct cpu_segment, dpl), VMSTATE_U8(struct cpu_segment, present),
    VMSTATE_U8(struct cpu_segment, db), VMSTATE_U8(struct cpu_segment, l), VMSTATE_U8(struct cpu_segment, g),
    VMSTATE_U8(struct cpu_segment, avl), VMSTATE_BOOL(struct cpu_segment, unusable),
    VMSTATE_END,
};

static const struct vmstate_field cpu_fields[] = {
    VMSTATE_U64_ARRAY(P, s.gpr, 16), VMSTATE_U64(P, s.rip), VMSTATE_U64(P, s.rflags),
    VMSTATE_STRUCT_ARRAY(P, s.seg, SEG_COUNT, seg_fields, struct cpu_segment),
    VMSTATE_U64(P, s.gdt.base), VMSTATE_U16(P, s.gdt.limit), VMSTATE_U64(P, s.idt.base), VMSTATE_U16(P, s.idt.limit),
    VMSTATE_U64(P, s.cr0), VMSTATE_U64(P, s.cr2), VMSTATE_U64(P, s.cr3), VMSTATE_U64(P, s.cr4),
    VMSTATE_U64(P, s.efer), VMSTATE_U64(P, s.apic_base),
    VMSTATE_U64_ARRAY(P, dr, 8), VMSTATE_U64(P, star), VMSTATE_U64(P, lstar), VMSTATE_U64(P, cstar),
    VMSTATE_U64(P, sfmask), VMSTATE_U64(P, kernel_gs), VMSTATE_U64(P, tsc_aux), VMSTATE_U64(P, pat),
    VMSTATE_U64(P, misc_enable), VMSTATE_U64(P, sysenter_cs), VMSTATE_U64(P, sysenter_esp),
    VMSTATE_U64(P, sysenter_eip), VMSTATE_U64(P, mtrr_def), VMSTATE_U64_ARRAY(P, mtrr_fixed, 11),
    VMSTATE_U64_ARRAY(P, mtrr_var, 16), VMSTATE_U64(P, tsc_offset),
    VMSTATE_U8_ARRAY(P, st, 80), VMSTATE_U16(P, fcw), VMSTATE_U16(P, fsw), VMSTATE_U16(P, ftw),
    VMSTATE_U16(P, fop), VMSTATE_U8(P, top), VMSTATE_U64(P, fip), VMSTATE_U64(P, fdp),
    VMSTATE_U64_ARRAY(P, xmm, 32), VMSTATE_U32(P, mxcsr),
    VMSTATE_BOOL(P, halted), VMSTATE_BOOL(P, wait_sipi), VMSTATE_BOOL(P, inhibit_irq),
    VMS_FIELD(P, ymmh, VMS_U64, 32, 2), VMS_FIELD(P, xcr0, VMS_U64, 1, 2),
    VMS_FIELD(P, pkru, VMS_U32, 1, 3), VMS_FIELD(P, pkrs, VMS_U64, 1, 3),
    VMS_FIELD(P, nmi_blocked, VMS_BOOL, 1, 3),
    VMSTATE_END,
};
#undef P

static void emu_cpu_pre_save(void *opaque)
{
    struct emu_cpu_persist *p = opaque;
    struct cpu *c = p->c;
    emu_cpu_get_state(c, &p->s);
    memcpy(p->dr, c->dr, sizeof(p->dr));
    p->star = c->star, p->lstar = c->lstar, p->cstar = c->cstar, p->sfmask = c->sfmask;
    p->kernel_gs = c->kernel_gs, p->tsc_aux = c->tsc_aux, p->pat = c->pat, p->misc_enable = c->misc_enable;
    p->sysenter_cs = c->sysenter_cs, p->sysenter_esp = c->sysenter_esp, p->sysenter_eip = c->sysenter_eip;
    p->mtrr_def = c->mtrr_def;
    memcpy(p->mtrr_fixed, c->mtrr_fixed, sizeof(p->mtrr_fixed));
    memcpy(p->mtrr_var, c->mtrr_var, sizeof(p->mtrr_var));
    p->tsc_offset = c->tsc_offset;
    for (int i = 0; i < 8; i++)
        memcpy(p->st[i], &c->fpu.st[i], 10);
    p->fcw = c->fpu.fcw, p->fsw = c->fpu.fsw, p->ftw = c->fpu.ftw, p->fop = c->fpu.fop;
    p->top = c->fpu.top, p->fip = c->fpu.fip, p->fdp = c->fpu.fdp;
    memcpy(p->xmm, c->xmm, sizeof(p->xmm));
    memcpy(p->ymmh, c->ymmh, sizeof(p->ymmh));
    p->xcr0 = c->xcr0;
    p->pkru = c->pkru, p->pkrs = c->pkrs;
    p->nmi_blocked = c->nmi_blocked;
    p->mxcsr = c->mxcsr;
    p->halted = c->halted, p->wait_sipi = c->wait_sipi, p->inhibit_irq = c->inhibit_irq;
}

static int emu_cpu_check(const void *live, const void *state, const char **why)
{
    const struct emu_cpu_persist *l = live, *p = state;
    if (p->top > 7)   /* indexes the register stack */
        return *why = "x87 top", -EINVAL;
    if (p->ftw > 0xff)
        return *why = "x87 tag word", -EINVAL;
    if (p->xcr0 && xcr0_check(l->c, p->xcr0))   /* 0: a version 1 stream, without it */
        return *why = "XCR0", -EINVAL;
    if (p->pkrs >> 32)
        return *why = "IA32_PKRS", -EINVAL;
    return 0;
}

static void emu_cpu_post_load(void *opaque)
{
    struct emu_cpu_persist *p = opaque;
    struct cpu *c = p->c;
    emu_cpu_set_state(c, &p->s);
    memcpy(c->dr, p->dr, sizeof(c->dr));
    debug_update(c);
    c->star = p->star, c->lstar = p->lstar, c->cstar = p->cstar, c->sfmask = p->sfmask;
    c->kernel_gs = p->kernel_gs, c->tsc_aux = p->tsc_aux, c->pat = p->pat, c->misc_enable = p->misc_enable;
    c->sysenter_cs = p->sysenter_cs, c->sysenter_esp = p->sysenter_esp, c->sysenter_eip = p->sysenter_eip;
    c->mtrr_def = p->mtrr_def;
    memcpy(c->mtrr_fixed, p->mtrr_fixed, sizeof(c->mtrr_fixed));
    memcpy(c->mtrr_var, p->mtrr_var, sizeof(c->mtrr_var));
    /* the TSC goes on from where it was saved, as the PIT and APIC timers do: the time the
     * machine spent saved (or in another process's clock) is not seen by the guest */
    c->tsc_offset = p->tsc_offset - (c->vm->m->irqchip ? irqchip_clock_shift(c->vm->m->irqchip) : 0);
    for (int i = 0; i < 8; i++) {
        memset(&c->fpu.st[i], 0, sizeof(c->fpu.st[i]));
        memcpy(&c->fpu.st[i], p->st[i], 10);
    }
    c->fpu.fcw = p->fcw, c->fpu.fsw = p->fsw, c->fpu.ftw = p->ftw, c->fpu.fop = p->fop;
    c->fpu.top = p->top, c->fpu.fip = p->fip, c->fpu.fdp = p->fdp;
    memcpy(c->xmm, p->xmm, sizeof(p->xmm));
    memcpy(c->ymmh, p->ymmh, sizeof(p->ymmh));
    c->xcr0 = p->xcr0 ? p->xcr0 : XCR0_X87;
    c->pkru = p->pkru;   /* 0 from older streams: all keys open, as after reset */
    c->pkrs = p->pkrs;
    c->nmi_blocked = p->nmi_blocked;
    tlb_flush(c, true);  /* the rights in the TLB follow the keys */
    c->mxcsr = p->mxcsr;
    c->halted = p->halted, c->wait_sipi = p->wait_sipi, c->inhibit_irq = p->inhibit_irq;
    /* the loaded APIC may hold a pending interrupt and an armed timer that nothing will signal
     * again: look at both before the next instruction */
    c->timer_deadline = 0;
    atomic_store_explicit(&c->irq_check, true, memory_order_relaxed);
}

static const struct vmstate_desc emu_cpu_vmstate = {
    .name = "cpu", .version = 3, .min_version = 1, .size = sizeof(struct emu_cpu_persist), .fields = cpu_fields,
    .pre_save = emu_cpu_pre_save, .check = emu_cpu_check, .post_load = emu_cpu_post_load,
};

int emu_cpu_register_vmstate(struct machine *m, struct cpu *c, int id)
{
    struct emu_cpu_persist *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->c = c;
    int ret = machine_add_cleanup(m, free, p);
    return ret ? ret : vmstate_register(m, &emu_cpu_vmstate, (uint32_t)id, p);
}
