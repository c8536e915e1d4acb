/* System instructions: HLT, CLI/STI, descriptor tables, control/debug registers, MSRs, CPUID,
 * SYSCALL/SYSRET, SWAPGS, RDTSC(P), FXSAVE and the fences; and #UD for what is not implemented. */
#include "accel/emu/exec.h"

#include "hw/irqchip.h"
#include "util/log.h"
#include "vm/machine.h"

void emu_log_unimp(struct cpu *c, const char *what, unsigned op)
{
    machine_log_guest(c->m, LOG_UNIMP, what, "cpu%d: %s %#x at %#llx: #UD", c->id, what, op, (unsigned long long)c->rip);
}

void h_ud(struct cpu *c, const struct insn *i)
{
    if (i->op != 0x10b)   /* UD2 is meant */
        emu_log_unimp(c, "unimplemented opcode", i->op);
    raise_ud(c);
}

H(h_hlt)
{
    (void)i;
    need_cpl0(c);
    c->halted = true;
    c->brk = true;
}

static void need_iopl(struct cpu *c)
{
    if ((c->cr0 & CR0_PE) && c->cpl > (int)((c->eflags >> 12) & 3))
        raise_gp(c, 0);
}

H(h_cli) { (void)i; need_iopl(c); c->eflags &= ~F_IF; }

H(h_sti)
{
    (void)i;
    need_iopl(c);
    if (!(c->eflags & F_IF)) {
        c->inhibit_irq = true;
        if (c->irq_held)
            cpu_irq_release(c);
    }
    c->eflags |= F_IF;
    c->brk = true;
}

static void load_ldt_tr(struct cpu *c, int seg, uint16_t sel)
{
    need_cpl0(c);
    if ((sel & ~3) == 0) {
        if (seg == SEG_TR)
            raise_gp(c, 0);
        memset(&c->seg[seg], 0, sizeof(c->seg[seg]));
        c->seg[seg].unusable = true;
        return;
    }
    if (sel & 4)
        raise_gp(c, sel & 0xfffc);
    uint64_t lo = seg_read_desc(c, sel, EXC_GP), hi = 0;
    if (c->lma)
        hi = mem_rd(c, (c->gdt.base + (sel & ~7) + 8) & c->lin_mask, 8);
    struct cpu_segment s;
    seg_from_desc(&s, sel, lo, c->lma ? hi : 0);
    int type = s.type;
    if (s.s || (seg == SEG_LDTR && type != 2) || (seg == SEG_TR && type != 9 && type != 1 && type != 11))
        raise_gp(c, sel & 0xfffc);
    if (!s.present)
        raise_exc_err(c, EXC_NP, sel & 0xfffc);
    if (c->lma && (uint64_t)((int64_t)(s.base << 16) >> 16) != s.base)
        raise_gp(c, sel & 0xfffc);   /* a 16-byte descriptor with a non-canonical base */
    if (seg == SEG_TR) {
        s.type |= 2;   /* busy, in the GDT too: an IRET back to this task (task.c) checks it */
        mem_wr(c, (c->gdt.base + (sel & ~7)) & c->lin_mask, 8, lo | (2ull << 40));
    }
    c->seg[seg] = s;
}

H(h_grp6)
{
    int sub = i->sub;
    if (!(c->cr0 & CR0_PE))
        raise_ud(c);
    switch (sub) {
    case 0: case 1: {
        prot_umip(c);
        uint16_t sel = c->seg[sub == 0 ? SEG_LDTR : SEG_TR].selector;
        if (i->mod == 3)
            reg_set(c, i->rm, i->osz, sel);
        else
            mem_wr(c, ea(c, i), 2, sel);
        break;
    }
    case 2: load_ldt_tr(c, SEG_LDTR, (uint16_t)rm_read(c, i, 2)); break;
    case 3: load_ldt_tr(c, SEG_TR, (uint16_t)rm_read(c, i, 2)); break;
    case 4: case 5: {
        /* VERR/VERW: ZF says whether the segment is readable/writable here */
        uint16_t sel = (uint16_t)rm_read(c, i, 2);
        bool ok = false;
        if ((sel & ~3) != 0) {
            uint64_t base = c->gdt.base, limit = c->gdt.limit;
            if (sel & 4) {
                base = c->seg[SEG_LDTR].base;
                limit = c->seg[SEG_LDTR].limit;
            }
            if ((uint64_t)(sel & ~7) + 7 <= limit) {
                struct cpu_segment s;
                seg_from_desc(&s, sel, mem_rd_sys(c, (base + (sel & ~7)) & c->lin_mask, 8), 0);
                int rpl = sel & 3;
                bool code = s.type & 8;
                bool priv_ok = (code && (s.type & 4)) || (s.dpl >= c->cpl && s.dpl >= rpl);
                if (s.s && priv_ok)
                    ok = sub == 4 ? (!code || (s.type & 2)) : (!code && (s.type & 2));
            }
        }
        cc_flags(c, (flags_arith(c) & ~F_ZF) | (ok ? F_ZF : 0));
        break;
    }
    default:
        raise_ud(c);
    }
}

static void grp7_mem(struct cpu *c, const struct insn *i)
{
    int sub = i->sub;
    uint64_t la = ea(c, i);
    int bsz = c->code64 ? 8 : 4;
    switch (sub) {
    case 0: case 1: {
        prot_umip(c);
        struct cpu_table *t = sub == 0 ? &c->gdt : &c->idt;
        mem_wr(c, la, 2, t->limit);
        mem_wr(c, (la + 2) & c->lin_mask, bsz, t->base);
        break;
    }
    case 2: case 3: {
        need_cpl0(c);
        struct cpu_table *t = sub == 2 ? &c->gdt : &c->idt;
        uint16_t lim = (uint16_t)mem_rd(c, la, 2);
        uint64_t base = mem_rd(c, (la + 2) & c->lin_mask, bsz);
        if (!c->code64 && i->osz == 2)
            base &= 0xffffff;
        if (c->code64 && (uint64_t)((int64_t)(base << 16) >> 16) != base)
            raise_gp(c, 0);   /* a non-canonical base */
        t->limit = lim;
        t->base = base;
        break;
    }
    case 4: prot_umip(c); mem_wr(c, la, 2, c->cr0); break;
    case 6: {
        need_cpl0(c);
        uint64_t v = mem_rd(c, la, 2);
        cpu_set_cr0(c, (c->cr0 & ~0xeull) | (v & 0xf) | (c->cr0 & 1));
        break;
    }
    case 7:
        need_cpl0(c);
        tlb_flush_page(c, la);
        c->brk = true;
        break;
    default:
        raise_ud(c);
    }
}

H(h_grp7)
{
    if (i->mod != 3) {
        grp7_mem(c, i);
        return;
    }
    int sub = i->sub, rm = i->rm & 7;
    if (prot_grp7(c, i))
        return;
    if (sub == 4) {
        prot_umip(c);
        reg_set(c, i->rm, i->osz, c->cr0 & size_mask(i->osz));
        return;
    }
    if (sub == 6) {
        need_cpl0(c);
        uint64_t v = reg_get(c, i->rm, 2);
        cpu_set_cr0(c, (c->cr0 & ~0xeull) | (v & 0xf) | (c->cr0 & 1));
        return;
    }
    if (sub == 2 && (rm == 0 || rm == 1)) {   /* XGETBV, XSETBV */
        xsave_xgetbv_xsetbv(c, i, rm == 1);
        return;
    }
    if (sub == 7 && rm == 0) {          /* SWAPGS */
        if (!c->code64)
            raise_ud(c);
        need_cpl0(c);
        uint64_t t = c->seg[SEG_GS].base;
        c->seg[SEG_GS].base = c->segbase[SEG_GS] = c->kernel_gs;
        c->kernel_gs = t;
        return;
    }
    if (sub == 7 && rm == 1) {          /* RDTSCP */
        uint64_t t = cpu_tsc(c);
        c->r[R_AX] = (uint32_t)t;
        c->r[R_DX] = t >> 32;
        c->r[R_CX] = (uint32_t)c->tsc_aux;
        return;
    }
    emu_log_unimp(c, "unimplemented 0f 01 form", 0x100 | (i->reg << 3) | rm);
    raise_ud(c);
}

/* LAR/LSL: access rights or limit of a descriptor, ZF when visible from here. */
static bool desc_lookup(struct cpu *c, uint16_t sel, struct cpu_segment *s)
{
    if ((sel & ~3) == 0)
        return false;
    uint64_t base = c->gdt.base, limit = c->gdt.limit;
    if (sel & 4) {
        base = c->seg[SEG_LDTR].base;
        limit = c->seg[SEG_LDTR].limit;
    }
    if ((uint64_t)(sel & ~7) + 7 > limit)
        return false;
    uint64_t d = mem_rd_sys(c, (base + (sel & ~7)) & c->lin_mask, 8);
    seg_from_desc(s, sel, d, 0);
    bool conforming = s->s && (s->type & 0xc) == 0xc;
    if (!conforming && (s->dpl < c->cpl || s->dpl < (sel & 3)))
        return false;
    if (!s->s && s->type != 1 && s->type != 2 && s->type != 3 && s->type != 9 && s->type != 11)
        return false;
    return true;
}

H(h_lar)
{
    if (!(c->cr0 & CR0_PE))
        raise_ud(c);
    struct cpu_segment s;
    uint16_t sel = (uint16_t)rm_read(c, i, 2);
    bool ok = desc_lookup(c, sel, &s);
    if (ok) {
        uint64_t d = seg_read_desc(c, sel, EXC_GP);
        reg_set(c, i->reg, i->osz, (d >> 32) & 0x00f0ff00);
    }
    cc_flags(c, (flags_arith(c) & ~F_ZF) | (ok ? F_ZF : 0));
}

H(h_lsl)
{
    if (!(c->cr0 & CR0_PE))
        raise_ud(c);
    struct cpu_segment s;
    bool ok = desc_lookup(c, (uint16_t)rm_read(c, i, 2), &s);
    if (ok)
        reg_set(c, i->reg, i->osz, s.limit);
    cc_flags(c, (flags_arith(c) & ~F_ZF) | (ok ? F_ZF : 0));
}

H(h_clts) { (void)i; need_cpl0(c); c->cr0 &= ~(uint64_t)CR0_TS; }

H(h_mov_r_cr)
{
    need_cpl0(c);
    int sz = c->code64 ? 8 : 4;
    uint64_t v;
    switch (i->reg) {
    case 0: v = c->cr0; break;
    case 2: v = c->cr2; break;
    case 3: v = c->cr3; break;
    case 4: v = c->cr4; break;
    case 8: v = c->env.lapic ? lapic_get_cr8(c->env.lapic) : 0; break;
    default: raise_ud(c);
    }
    reg_set(c, i->rm, sz, v);
}

H(h_mov_cr_r)
{
    need_cpl0(c);
    int sz = c->code64 ? 8 : 4;
    uint64_t v = reg_get(c, i->rm, sz);
    switch (i->reg) {
    case 0: cpu_set_cr0(c, v); break;
    case 2: c->cr2 = v; break;
    case 3: cpu_set_cr3(c, v); break;
    case 4: cpu_set_cr4(c, v); break;
    case 8:
        if (c->env.lapic)
            lapic_set_cr8(c->env.lapic, v);
        atomic_store(&c->irq_check, true);
        break;
    default: raise_ud(c);
    }
    c->brk = true;
}

H(h_mov_r_dr)
{
    reg_set(c, i->rm, c->code64 ? 8 : 4, debug_read_dr(c, i->sub));
}

H(h_mov_dr_r)
{
    debug_write_dr(c, i->sub, reg_get(c, i->rm, c->code64 ? 8 : 4));
}

H(h_wrmsr)
{
    (void)i;
    need_cpl0(c);
    uint64_t v = (uint32_t)c->r[R_AX] | (c->r[R_DX] << 32);
    if (msr_write(c, (uint32_t)c->r[R_CX], v) < 0)
        raise_gp(c, 0);
}

H(h_rdmsr)
{
    (void)i;
    need_cpl0(c);
    uint64_t v;
    if (msr_read(c, (uint32_t)c->r[R_CX], &v) < 0)
        raise_gp(c, 0);
    c->r[R_AX] = (uint32_t)v;
    c->r[R_DX] = v >> 32;
}

H(h_rdtsc)
{
    (void)i;
    if ((c->cr4 & 4) && c->cpl)
        raise_gp(c, 0);
    uint64_t t = cpu_tsc(c);
    c->r[R_AX] = (uint32_t)t;
    c->r[R_DX] = t >> 32;
}

H(h_rdpmc) { (void)i; raise_gp(c, 0); }

H(h_cpuid)
{
    (void)i;
    uint32_t out[4];
    cpuid_query(c, (uint32_t)c->r[R_AX], (uint32_t)c->r[R_CX], out);
    c->r[R_AX] = out[0];
    c->r[R_BX] = out[1];
    c->r[R_CX] = out[2];
    c->r[R_DX] = out[3];
}

static void flat_seg(struct cpu_segment *s, uint16_t sel, bool code, bool l, int dpl)
{
    *s = (struct cpu_segment){ .base = 0, .limit = 0xffffffff, .selector = sel,
                               .type = code ? 0xb : 0x3, .s = 1, .dpl = (uint8_t)dpl, .present = 1,
                               .db = !l, .l = l, .g = 1 };
}

H(h_syscall)
{
    (void)i;
    if (!(c->efer & EFER_SCE) || !c->lma)
        raise_ud(c);
    bool from64 = c->code64;   /* compatibility mode enters at CSTAR (the new CS is 64-bit) */
    uint16_t sel = (uint16_t)(c->star >> 32);
    c->r[R_CX] = c->rip;
    c->r[R_R11] = flags_get(c) & ~(uint64_t)F_RF;
    flat_seg(&c->seg[SEG_CS], sel & 0xfffc, true, true, 0);
    flat_seg(&c->seg[SEG_SS], (sel + 8) & 0xfffc, false, false, 0);
    uint64_t f = flags_get(c) & ~(c->sfmask | F_RF);
    cpu_set_cpl(c, 0);
    flags_set(c, f, 0x3f7fd5);
    c->eflags &= ~(uint32_t)(c->sfmask | F_RF);
    cpu_update_mode(c);
    c->rip = from64 ? c->lstar : c->cstar;
    c->tf_recheck = true;   /* single-step follows TF after SFMASK, not before */
}

H(h_sysret)
{
    if (!(c->efer & EFER_SCE) || !c->lma)
        raise_ud(c);
    need_cpl0(c);
    uint16_t sel = (uint16_t)(c->star >> 48);
    uint64_t rip = c->r[R_CX];
    if (i->osz == 8) {
        if ((uint64_t)((int64_t)(rip << 16) >> 16) != rip)
            raise_gp(c, 0);
        flat_seg(&c->seg[SEG_CS], (uint16_t)((sel + 16) | 3), true, true, 3);
    } else {
        flat_seg(&c->seg[SEG_CS], (uint16_t)(sel | 3), true, false, 3);
        rip = (uint32_t)rip;
    }
    flat_seg(&c->seg[SEG_SS], (uint16_t)((sel + 8) | 3), false, false, 3);
    cpu_set_cpl(c, 3);
    flags_set(c, (c->r[R_R11] & 0x3c7fd7) | 2, 0x3f7fd5);
    cpu_update_mode(c);
    c->rip = rip;
    c->tf_recheck = true;
    if (c->eflags & F_TF)
        debug_trap(c, DR6_BS);   /* a TF that SYSRET loads traps after SYSRET itself */
}

H(h_sysenter) { (void)i; raise_ud(c); }
H(h_sysexit) { (void)i; raise_ud(c); }

H(h_grp15)
{
    int sub = i->sub;
    if (i->mod == 3) {
        if (i->rep)
            raise_ud(c);   /* RDFSBASE & co. are not reported */
        if (sub == 6)
            atomic_thread_fence(memory_order_seq_cst);
        else if (sub != 5 && sub != 7)
            raise_ud(c);
        return;
    }
    uint64_t la = ea(c, i);
    switch (sub) {
    case 0: case 1: {
        if (c->cr0 & (CR0_TS | CR0_EM))
            raise_exc(c, EXC_NM);
        if (la & 15)
            raise_gp(c, 0);
        uint8_t area[512];
        if (sub == 0) {
            fpu_fxsave(c, area);
            mem_wr_buf(c, la, area, 512);
        } else {
            mem_rd_buf(c, la, area, 512);
            uint32_t mx;
            memcpy(&mx, area + 24, 4);
            if (mx & 0xffff0000)
                raise_gp(c, 0);
            fpu_fxrstor(c, area);
        }
        break;
    }
    case 2: {
        uint32_t v = (uint32_t)mem_rd(c, la, 4);
        if (v & 0xffff0000)
            raise_gp(c, 0);
        c->mxcsr = v;
        break;
    }
    case 3: mem_wr(c, la, 4, c->mxcsr); break;
    case 4: case 5: case 6: xsave_exec(c, i, sub, la); break;
    case 7: mem_rd(c, la, 1); break;   /* CLFLUSH: nothing is cached, but it faults like a read */
    default:
        emu_log_unimp(c, "unimplemented 0f ae form", 0x200 | sub);
        raise_ud(c);
    }
}

H(h_wbinvd) { (void)i; need_cpl0(c); }
H(h_fwait) { (void)i; if ((c->cr0 & (CR0_TS | CR0_MP)) == (CR0_TS | CR0_MP)) raise_exc(c, EXC_NM); }
