/* Control transfer: jumps, calls, returns, loops, far transfers, software interrupts, IRET. */
#include "accel/emu/exec.h"

/* 64-bit mode: a near branch to a non-canonical address is #GP(0) at the branch, before a
 * CALL pushes or a RET pops (SDM vol. 2, JMP, CALL, RET), not a fault at the fetch there. */
static inline void target_check(struct cpu *c, int osz, uint64_t target)
{
    if (osz == 8 && unlikely((uint64_t)((int64_t)(target << 16) >> 16) != target))
        raise_gp(c, 0);
}

static inline void jump(struct cpu *c, int osz, uint64_t target)
{
    target_check(c, osz, target);
    c->rip = osz == 8 ? target : target & size_mask(osz);
}

H(h_jcc)
{
    if (cond_eval(c, i->op & 0xf))
        jump(c, i->osz, c->rip + i->imm);
}

H(h_jmp_rel) { jump(c, i->osz, c->rip + i->imm); }

H(h_call_rel)
{
    target_check(c, i->osz, c->rip + i->imm);
    push(c, i->osz, c->rip);
    jump(c, i->osz, c->rip + i->imm);
}

H(h_ret)
{
    uint64_t sp = c->r[R_SP];
    uint64_t t = pop(c, i->osz);
    if (i->osz == 8 && (uint64_t)((int64_t)(t << 16) >> 16) != t) {
        c->r[R_SP] = sp;
        raise_gp(c, 0);
    }
    if (i->op == 0xc2)
        reg_set(c, R_SP, c->ssz, (c->r[R_SP] + i->imm) & size_mask(c->ssz));
    jump(c, i->osz, t);
}

H(h_loop)
{
    uint64_t n = (reg_get(c, R_CX, i->asz) - 1) & size_mask(i->asz);
    reg_set(c, R_CX, i->asz, n);
    bool go = n != 0;
    if (i->op == 0xe0)
        go = go && !cond_eval(c, 4);
    else if (i->op == 0xe1)
        go = go && cond_eval(c, 4);
    if (go)
        jump(c, i->osz, c->rip + i->imm);
}

H(h_jcxz)
{
    if (reg_get(c, R_CX, i->asz) == 0)
        jump(c, i->osz, c->rip + i->imm);
}

/* Far JMP/CALL to sel:off. Protected mode: a code segment only (no call gates or tasks). */
static void far_transfer(struct cpu *c, uint16_t sel, uint64_t off, int osz, bool call)
{
    uint16_t old_cs = c->seg[SEG_CS].selector;
    uint64_t old_rip = c->rip;
    if (!(c->cr0 & CR0_PE) || (c->eflags & F_VM)) {
        if (call) {
            push(c, osz, old_cs);
            push(c, osz, old_rip);
        }
        seg_set_real(c, SEG_CS, sel);
        cpu_update_mode(c);
        c->rip = off & size_mask(osz);
        return;
    }
    if ((sel & ~3) && !c->lma) {
        /* a TSS or a task gate in the GDT/LDT: a task switch (the offset is ignored) */
        uint64_t d = seg_read_desc(c, sel, EXC_GP);
        int type = (int)(d >> 40) & 0x1f, dpl = (int)(d >> 45) & 3;
        if (type == 9 || type == 1 || type == 5) {   /* 32-bit or 16-bit TSS, task gate */
            if (dpl < c->cpl || dpl < (sel & 3))
                raise_gp(c, sel & 0xfffc);
            if (!((d >> 47) & 1))
                raise_exc_err(c, EXC_NP, sel & 0xfffc);
            task_switch(c, type == 5 ? (uint16_t)(d >> 16) : sel, call ? TASK_CALL : TASK_JMP, false, 0);
            return;
        }
    }
    if (call) {
        /* push on the current stack before switching modes, with the old stack size */
        uint64_t sp = c->r[R_SP];
        push(c, osz, old_cs);
        push(c, osz, old_rip);
        uint64_t nsp = c->r[R_SP];
        c->r[R_SP] = sp;
        seg_load_cs(c, sel, c->cpl);
        c->r[R_SP] = nsp;
    } else {
        seg_load_cs(c, sel, c->cpl);
    }
    c->rip = c->code64 ? off : off & size_mask(osz == 8 ? 4 : osz);
    c->brk = true;
}

H(h_jmpf_imm) { far_transfer(c, i->imm2, i->imm, i->osz, false); }
H(h_callf_imm) { far_transfer(c, i->imm2, i->imm, i->osz, true); }

H(h_retf)
{
    int osz = i->osz;
    uint64_t sp0 = c->r[R_SP];
    uint64_t off = pop(c, osz);
    uint16_t sel = (uint16_t)pop(c, osz);
    if (!(c->cr0 & CR0_PE) || (c->eflags & F_VM)) {
        seg_set_real(c, SEG_CS, sel);
        cpu_update_mode(c);
        c->rip = off & size_mask(osz);
        if (i->op == 0xca)
            reg_set(c, R_SP, c->ssz, (c->r[R_SP] + i->imm) & size_mask(c->ssz));
        return;
    }
    int rpl = sel & 3;
    if (rpl < c->cpl) {
        c->r[R_SP] = sp0;
        raise_gp(c, sel & 0xfffc);
    }
    if (rpl > c->cpl) {
        /* return to an outer level: the caller's SS:RSP follow the return address */
        reg_set(c, R_SP, c->ssz, (c->r[R_SP] + i->imm) & size_mask(c->ssz));
        uint64_t nsp = pop(c, osz);
        uint16_t nss = (uint16_t)pop(c, osz);
        seg_load_cs(c, sel, rpl);
        cpu_set_cpl(c, rpl);
        seg_load(c, SEG_SS, nss);
        cpu_update_mode(c);
        reg_set(c, R_SP, c->ssz, nsp);
        seg_clear_outer(c);
    } else {
        seg_load_cs(c, sel, c->cpl);
        if (i->op == 0xca)
            reg_set(c, R_SP, c->ssz, (c->r[R_SP] + i->imm) & size_mask(c->ssz));
    }
    c->rip = c->code64 ? off : off & 0xffffffff;
    c->brk = true;
}

H(h_grp5)
{
    int sz = i->osz;
    switch (i->sub) {
    case 0: rmw_rm(c, i, RMW_INC, sz, 1); break;
    case 1: rmw_rm(c, i, RMW_DEC, sz, 1); break;
    case 2: {
        uint64_t t = rm_read(c, i, sz);
        target_check(c, sz, t);
        push(c, sz, c->rip);
        jump(c, sz, t);
        break;
    }
    case 4: jump(c, sz, rm_read(c, i, sz)); break;
    case 6: push(c, sz, rm_read(c, i, sz)); break;
    case 3: case 5: {
        if (i->mod == 3)
            raise_ud(c);
        uint64_t la = ea(c, i);
        uint64_t off = mem_rd(c, la, sz);
        uint16_t sel = (uint16_t)mem_rd(c, (la + sz) & c->lin_mask, 2);
        far_transfer(c, sel, off, sz, (i->sub) == 3);
        break;
    }
    default: raise_ud(c);
    }
}

H(h_int) { raise_soft_int(c, (int)(i->imm & 0xff)); }
H(h_int3) { (void)i; raise_soft_int(c, EXC_BP); }

H(h_into)
{
    (void)i;
    if (flags_arith(c) & F_OF)
        raise_soft_int(c, EXC_OF);
}

H(h_int1)
{
    (void)i;
    c->exc_vec = EXC_DB;
    c->exc_has_err = false;
    c->exc_soft = false;
    longjmp(c->jb, 1);
}

H(h_iret)
{
    except_iret(c, i->osz);
    c->brk = true;
}
