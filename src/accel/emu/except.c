/* Exceptions and interrupts: raising them from handlers (a longjmp back to the run loop), and
 * delivering them through the IVT (real mode) or the IDT (protected and long mode); IRET. */
#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"
#include "hw/irqchip.h"
#include "util/log.h"

/* A fault restarts the instruction: rewind RIP to its first byte. */
static __attribute__((noreturn)) void raise_fault(struct cpu *c, int vec, bool has_err, uint32_t err)
{
    if (c->cur)
        c->rip -= c->cur->len;
    c->cur = NULL;
    c->acc_ss = false;
    c->exc_vec = vec;
    c->exc_has_err = has_err;
    c->exc_err = err;
    c->exc_soft = false;
    longjmp(c->jb, 1);
}

void raise_exc(struct cpu *c, int vec)
{
    raise_fault(c, vec, false, 0);
}

void raise_exc_err(struct cpu *c, int vec, uint32_t err)
{
    raise_fault(c, vec, true, err);
}

void raise_gp(struct cpu *c, uint32_t err)
{
    raise_fault(c, EXC_GP, true, err);
}

void raise_ud(struct cpu *c)
{
    raise_fault(c, EXC_UD, false, 0);
}

void raise_soft_int(struct cpu *c, int vec)
{
    c->exc_soft_len = c->cur ? (uint8_t)c->cur->len : 0;
    c->cur = NULL;
    c->exc_vec = vec;
    c->exc_has_err = false;
    c->exc_soft = true;
    longjmp(c->jb, 1);
}

static bool has_error_code(int vec)
{
    return vec == EXC_DF || (vec >= EXC_TS && vec <= EXC_PF) || vec == EXC_AC;
}

static void deliver_real(struct cpu *c, int vec)
{
    if ((uint64_t)vec * 4 + 3 > c->idt.limit)
        raise_gp(c, 0);
    uint32_t ent = (uint32_t)mem_rd(c, (c->idt.base + (uint64_t)vec * 4) & 0xffffffff, 4);
    push(c, 2, flags_get(c));
    push(c, 2, c->seg[SEG_CS].selector);
    push(c, 2, c->rip);
    c->eflags &= ~(F_IF | F_TF | F_AC | F_RF);
    seg_set_real(c, SEG_CS, (uint16_t)(ent >> 16));
    c->rip = ent & 0xffff;
    cpu_update_mode(c);
}

/* Reads RSP for privilege level pl (or IST slot ist) from the TSS. */
static uint64_t tss_stack(struct cpu *c, int pl, int ist, uint16_t *ss)
{
    struct cpu_segment *tr = &c->seg[SEG_TR];
    if (c->lma) {
        uint32_t off = ist ? 0x24 + 8 * (ist - 1) : 4 + 8 * pl;
        if (off + 7 > tr->limit)
            raise_exc_err(c, EXC_TS, tr->selector & 0xfffc);
        return mem_rd_sys(c, tr->base + off, 8);
    }
    uint32_t off = 4 + 8 * pl;
    if (off + 5 > tr->limit)
        raise_exc_err(c, EXC_TS, tr->selector & 0xfffc);
    *ss = (uint16_t)mem_rd_sys(c, (tr->base + off + 4) & 0xffffffff, 2);
    return mem_rd_sys(c, (tr->base + off) & 0xffffffff, 4);
}

static void deliver_prot(struct cpu *c, int vec, bool has_err, uint32_t err, bool soft)
{
    int gsz = c->lma ? 16 : 8;
    uint32_t idt_err = (uint32_t)vec * 8 + 2 + (soft ? 0 : 1);
    if ((uint64_t)vec * gsz + gsz - 1 > c->idt.limit)
        raise_gp(c, idt_err);
    uint64_t ga = c->idt.base + (uint64_t)vec * gsz;
    uint64_t lo = mem_rd_sys(c, ga & c->lin_mask, 8);
    uint64_t hi = c->lma ? mem_rd_sys(c, ga + 8, 8) : 0;
    int type = (lo >> 40) & 0xf, dpl = (lo >> 45) & 3, present = (lo >> 47) & 1;
    bool is_int_gate = (type & 7) == 6;
    if (type == 5 && !c->lma) {   /* a task gate */
        if (soft && dpl < c->cpl)
            raise_gp(c, idt_err);
        if (!present)
            raise_exc_err(c, EXC_NP, idt_err);
        task_switch(c, (uint16_t)(lo >> 16), TASK_CALL, has_err, err);
        return;
    }
    if ((type & 7) != 6 && (type & 7) != 7)
        raise_gp(c, idt_err);
    if (soft && dpl < c->cpl)
        raise_gp(c, idt_err);
    if (!present)
        raise_exc_err(c, EXC_NP, idt_err);
    uint16_t sel = (uint16_t)(lo >> 16);
    uint64_t off = (lo & 0xffff) | ((lo >> 32) & 0xffff0000);
    if (c->lma)
        off |= hi << 32;
    int ist = c->lma ? (int)((lo >> 32) & 7) : 0;
    if ((sel & ~3) == 0)
        raise_gp(c, 0);
    uint64_t d = seg_read_desc(c, sel, EXC_GP);
    struct cpu_segment cs;
    seg_from_desc(&cs, sel, d, 0);
    if (!cs.s || !(cs.type & 8) || cs.dpl > c->cpl)
        raise_gp(c, sel & 0xfffc);
    if (!cs.present)
        raise_exc_err(c, EXC_NP, sel & 0xfffc);
    int ncpl = (cs.type & 4) ? c->cpl : cs.dpl;   /* conforming code keeps the CPL */
    uint64_t oflags = flags_get(c) | (c->exc_rf ? F_RF : 0);
    uint16_t oss = c->seg[SEG_SS].selector, ocs = c->seg[SEG_CS].selector;
    uint64_t orsp = c->r[R_SP], orip = c->rip;
    int ocpl = c->cpl;

    if (c->lma) {
        uint64_t rsp = orsp;
        uint16_t dummy;
        if (ist)
            rsp = tss_stack(c, 0, ist, &dummy);
        else if (ncpl != ocpl)
            rsp = tss_stack(c, ncpl, 0, &dummy);
        rsp &= ~15ull;
        /* write the frame through the new privilege's view of memory */
        cpu_set_cpl(c, ncpl);
        uint64_t frame[6] = { orip, ocs, oflags, orsp, oss, 0 };
        int n = 5;
        if (has_err) {
            memmove(frame + 1, frame, 5 * 8);
            frame[0] = err;
            n = 6;
        }
        for (int k = n - 1; k >= 0; k--) {
            rsp -= 8;
            mem_wr(c, rsp, 8, frame[k]);
        }
        if (ncpl != ocpl) {
            memset(&c->seg[SEG_SS], 0, sizeof(c->seg[SEG_SS]));
            c->seg[SEG_SS].selector = (uint16_t)ncpl;
            c->seg[SEG_SS].unusable = true;
            c->seg[SEG_SS].dpl = (uint8_t)ncpl;
        }
        c->r[R_SP] = rsp;
    } else {
        uint64_t sp = orsp;
        int ssz = c->ssz;
        if (ncpl != ocpl) {
            uint16_t nss = 0;
            sp = tss_stack(c, ncpl, 0, &nss);
            cpu_set_cpl(c, ncpl);
            seg_load(c, SEG_SS, nss);
            ssz = c->seg[SEG_SS].db ? 4 : 2;
        }
        int w = (type & 8) ? 4 : 2;
        uint64_t smask = size_mask(ssz);
        uint64_t vals[6];
        int n = 0;
        if (ncpl != ocpl) {
            vals[n++] = oss;
            vals[n++] = orsp;
        }
        vals[n++] = oflags;
        vals[n++] = ocs;
        vals[n++] = orip;
        if (has_err)
            vals[n++] = err;
        for (int k = 0; k < n; k++) {
            sp = (sp - w) & smask;
            mem_wr(c, (c->seg[SEG_SS].base + sp) & 0xffffffff, w, vals[k]);
        }
        reg_set(c, R_SP, ssz, sp);
    }
    cs.selector = (uint16_t)((sel & ~3) | ncpl);
    c->seg[SEG_CS] = cs;
    cpu_set_cpl(c, ncpl);
    c->eflags &= ~(F_TF | F_NT | F_RF | F_VM);
    if (is_int_gate)
        c->eflags &= ~F_IF;
    cpu_update_mode(c);
    c->rip = c->code64 ? off : off & 0xffffffff;
}

/* Delivers an event. Called from the run loop, under its setjmp: a fault while delivering comes
 * back there, which makes it a double fault, and a fault delivering that a triple fault. */
void except_deliver(struct cpu *c, int vec, bool has_err, uint32_t err, bool soft)
{
    if (vec == EXC_PF)
        log_debug(LOG_INT, "cpu%d: #PF at %#llx addr %#llx err %#x", c->id,
                  (unsigned long long)c->rip, (unsigned long long)c->cr2, err);
    else if (!soft && vec < 32)
        log_debug(LOG_INT, "cpu%d: exception %d at %#llx err %#x", c->id, vec,
                  (unsigned long long)c->rip, err);
    c->halted = false;   /* a trap after HLT (single-step) is delivered, not slept through */
    if (!(c->cr0 & CR0_PE)) {
        deliver_real(c, vec);
        return;
    }
    deliver_prot(c, vec, has_err && has_error_code(vec), err, soft);
}

void except_iret(struct cpu *c, int osz)
{
    if (unlikely(c->nmi_blocked)) {
        /* IRET ends NMI blocking: a latched NMI may be taken now */
        c->nmi_blocked = false;
        if (c->env.lapic)
            lapic_end_nmi(c->env.lapic);
        atomic_store_explicit(&c->irq_check, true, memory_order_relaxed);
    }
    if (!(c->cr0 & CR0_PE)) {
        uint64_t ip = pop(c, osz), cs = pop(c, osz), fl = pop(c, osz);
        seg_set_real(c, SEG_CS, (uint16_t)cs);
        uint32_t w = F_ARITH | F_TF | F_DF | F_IF | F_IOPL | F_NT;
        if (osz == 4)
            w |= F_AC | F_ID | F_RF;
        flags_set(c, fl, w);
        cpu_update_mode(c);
        c->rip = ip & size_mask(osz);
        return;
    }
    if (c->eflags & F_NT && !c->lma) {
        task_iret(c);   /* back to the task that called or was interrupted into this one */
        return;
    }
    uint64_t sp0 = c->r[R_SP];
    uint64_t ip = pop(c, osz), csel = pop(c, osz), fl = pop(c, osz);
    int rpl = csel & 3;
    if (rpl < c->cpl) {
        c->r[R_SP] = sp0;
        raise_gp(c, (uint32_t)csel & 0xfffc);
    }
    uint64_t nsp = 0, nss = 0;
    bool pop_ss = c->code64 || rpl > c->cpl;
    if (pop_ss) {
        nsp = pop(c, osz);
        nss = pop(c, osz);
    }
    int ocpl = c->cpl;
    uint32_t w = F_ARITH | F_TF | F_DF | F_NT | F_RF | F_AC | F_ID;
    if (ocpl == 0)
        w |= F_IOPL | F_IF;
    else if (ocpl <= (int)((c->eflags >> 12) & 3))
        w |= F_IF;
    if (osz == 2)
        w &= 0xffff;
    seg_load_cs(c, (uint16_t)csel, rpl);
    flags_set(c, fl, w);
    if (pop_ss) {
        if ((nss & ~3) == 0 && c->lma) {
            memset(&c->seg[SEG_SS], 0, sizeof(c->seg[SEG_SS]));
            c->seg[SEG_SS].selector = (uint16_t)nss;
            c->seg[SEG_SS].unusable = true;
            c->seg[SEG_SS].dpl = (uint8_t)rpl;
            c->segbase[SEG_SS] = 0;
        } else {
            seg_load(c, SEG_SS, (uint16_t)nss);
        }
        cpu_update_mode(c);
        c->r[R_SP] = osz == 8 ? nsp : (c->ssz == 4 ? (uint32_t)nsp : (c->r[R_SP] & ~0xffffull) | (nsp & 0xffff));
    }
    if (rpl > ocpl)
        seg_clear_outer(c);
    c->rip = c->code64 ? ip : ip & 0xffffffff;
}
