/* Data movement: MOV and its extensions, LEA, CMOV/SETcc, the stack, flag instructions,
 * segment register moves. */
#include "accel/emu/exec.h"

H(h_mov_rm_r) { rm_write(c, i, i->osz, reg_get(c, i->reg, i->osz)); }
H(h_mov_r_rm) { reg_set(c, i->reg, i->osz, rm_read(c, i, i->osz)); }
H(h_mov_rm_i) { rm_write(c, i, i->osz, i->imm); }
H(h_mov_r_i) { reg_set(c, i->rm, i->osz, i->imm); }

H(h_mov_a_moffs)
{
    uint64_t off = i->imm & size_mask(i->asz);
    reg_set(c, R_AX, i->osz, mem_rd(c, seg_lin(c, i->seg, off), i->osz));
}

H(h_mov_moffs_a)
{
    uint64_t off = i->imm & size_mask(i->asz);
    mem_wr(c, seg_lin(c, i->seg, off), i->osz, reg_get(c, R_AX, i->osz));
}

H(h_lea)
{
    if (i->mod == 3)
        raise_ud(c);
    reg_set(c, i->reg, i->osz, ea_off(c, i));
}

H(h_movzx)
{
    int ssz = (i->op & 1) ? 2 : 1;
    reg_set(c, i->reg, i->osz, rm_read(c, i, ssz));
}

H(h_movsx)
{
    int ssz = (i->op & 1) ? 2 : 1;
    reg_set(c, i->reg, i->osz, (uint64_t)sext(rm_read(c, i, ssz), ssz));
}

/* 63: MOVSXD in 64-bit mode; ARPL elsewhere, which no guest of ours needs */
H(h_movsxd)
{
    if (!c->code64)
        raise_ud(c);
    uint64_t v = rm_read(c, i, 4);
    reg_set(c, i->reg, i->osz, i->osz == 8 ? (uint64_t)sext(v, 4) : v);
}

H(h_cmov)
{
    uint64_t v = rm_read(c, i, i->osz);
    if (cond_eval(c, i->op & 0xf))
        reg_set(c, i->reg, i->osz, v);
    else if (i->osz == 4)
        c->r[i->reg] = (uint32_t)c->r[i->reg];   /* a 32-bit destination is written either way */
}

H(h_setcc) { rm_write(c, i, 1, cond_eval(c, i->op & 0xf)); }

H(h_xlat)
{
    uint64_t off = (reg_get(c, R_BX, i->asz) + (c->r[R_AX] & 0xff)) & size_mask(i->asz);
    reg_set(c, R_AX, 1, mem_rd(c, seg_lin(c, i->seg, off), 1));
}

H(h_movnti)
{
    if (i->mod == 3)
        raise_ud(c);
    mem_wr(c, ea(c, i), i->osz, reg_get(c, i->reg, i->osz));
}

H(h_push_r) { push(c, i->osz, reg_get(c, i->rm, i->osz)); }
H(h_pop_r) { reg_set(c, i->rm, i->osz, pop(c, i->osz)); }
H(h_push_i) { push(c, i->osz, i->imm); }

H(h_pop_rm)
{
    uint64_t sp = c->r[R_SP];
    uint64_t v = pop(c, i->osz);
    if (i->mod != 3) {
        /* the address uses the incremented RSP; a fault leaves RSP as it was */
        uint64_t la = ea(c, i);
        c->r[R_SP] = sp;
        mem_wr(c, la, i->osz, v);
        pop(c, i->osz);
        return;
    }
    reg_set(c, i->rm, i->osz, v);
}

H(h_pusha)
{
    int sz = i->osz;
    uint64_t sp = c->r[R_SP];
    for (int r = 0; r < 8; r++)
        push(c, sz, r == R_SP ? sp : c->r[r]);
}

H(h_popa)
{
    int sz = i->osz;
    for (int r = 7; r >= 0; r--) {
        uint64_t v = pop(c, sz);
        if (r != R_SP)
            reg_set(c, r, sz, v);
    }
}

H(h_pushf)
{
    uint64_t f = flags_get(c) & ~(uint64_t)(F_VM | F_RF);
    push(c, i->osz, f);
}

H(h_popf)
{
    uint64_t f = pop(c, i->osz);
    uint32_t w = F_ARITH | F_TF | F_DF | F_NT | F_AC | F_ID;
    int iopl = (c->eflags >> 12) & 3;
    if (c->cpl == 0)
        w |= F_IOPL | F_IF;
    else if (c->cpl <= iopl)
        w |= F_IF;
    if (i->osz == 2)
        w &= 0xffff;
    flags_set(c, f, w);
}

H(h_lahf)
{
    (void)i;
    reg_set(c, 16 /* AH */, 1, (flags_arith(c) & 0xd5) | 2);
}

H(h_sahf)
{
    (void)i;
    flags_set(c, (c->r[R_AX] >> 8) & 0xd5, F_CF | F_PF | F_AF | F_ZF | F_SF);
}

H(h_enter)
{
    int sz = i->osz, level = i->imm2 & 31;
    uint64_t bp = c->r[R_BP];
    push(c, sz, bp);
    uint64_t frame = c->r[R_SP] & size_mask(c->ssz);
    for (int k = 1; k < level; k++) {
        bp = (bp - sz) & size_mask(c->ssz);
        push(c, sz, stack_rd(c, seg_lin(c, SEG_SS, bp), sz));
    }
    if (level)
        push(c, sz, frame);
    reg_set(c, R_BP, sz, frame);
    reg_set(c, R_SP, c->ssz, (c->r[R_SP] - i->imm) & size_mask(c->ssz));
}

H(h_leave)
{
    /* the pop comes first: a fault (#SS for a non-canonical RBP) leaves RSP as it was */
    uint64_t sp = c->r[R_BP] & size_mask(c->ssz);
    if (unlikely(c->segchk))
        seg_check_limit(c, SEG_SS, sp, i->osz);
    uint64_t v = stack_rd(c, seg_lin(c, SEG_SS, sp), i->osz);
    reg_set(c, R_SP, c->ssz, sp + i->osz);
    reg_set(c, R_BP, i->osz, v);
}

H(h_mov_rm_sreg)
{
    int s = i->sub;
    if (s >= 6)
        raise_ud(c);
    uint64_t v = c->seg[s].selector;
    if (i->mod == 3)
        reg_set(c, i->rm, i->osz == 8 ? 8 : i->osz == 4 ? 4 : 2, v);
    else
        mem_wr(c, ea(c, i), 2, v);
}

H(h_mov_sreg_rm)
{
    int s = i->sub;
    if (s >= 6 || s == SEG_CS)
        raise_ud(c);
    seg_load(c, s, (uint16_t)rm_read(c, i, 2));
    if (s == SEG_SS)
        c->inhibit_irq = c->shadow_ss = true;
}

static int seg_of_op(unsigned op)
{
    switch (op) {
    case 0x06: case 0x07: return SEG_ES;
    case 0x0e: return SEG_CS;
    case 0x16: case 0x17: return SEG_SS;
    case 0x1e: case 0x1f: return SEG_DS;
    case 0x1a0: case 0x1a1: return SEG_FS;
    default: return SEG_GS;
    }
}

H(h_push_seg) { push(c, i->osz, c->seg[seg_of_op(i->op)].selector); }

H(h_pop_seg)
{
    int s = seg_of_op(i->op);
    uint64_t sp = c->r[R_SP];
    uint16_t sel = (uint16_t)pop(c, i->osz);
    c->r[R_SP] = sp;
    seg_load(c, s, sel);
    pop(c, i->osz);
    if (s == SEG_SS)
        c->inhibit_irq = c->shadow_ss = true;
}

/* LES, LDS (C4, C5) and LSS, LFS, LGS (0F B2, B4, B5): a far pointer from memory */
H(h_lxs)
{
    if (i->mod == 3)
        raise_ud(c);
    int s;
    switch (i->op) {
    case 0xc4: s = SEG_ES; break;
    case 0xc5: s = SEG_DS; break;
    case 0x1b2: s = SEG_SS; break;
    case 0x1b4: s = SEG_FS; break;
    default: s = SEG_GS; break;
    }
    uint64_t la = ea(c, i);
    uint64_t off = mem_rd(c, la, i->osz);
    uint16_t sel = (uint16_t)mem_rd(c, (la + i->osz) & c->lin_mask, 2);
    seg_load(c, s, sel);
    reg_set(c, i->reg, i->osz, off);
}

H(h_clc) { (void)i; cc_flags(c, flags_arith(c) & ~F_CF); }
H(h_stc) { (void)i; cc_flags(c, flags_arith(c) | F_CF); }
H(h_cmc) { (void)i; cc_flags(c, flags_arith(c) ^ F_CF); }
H(h_cld) { (void)i; c->eflags &= ~F_DF; }
H(h_std) { (void)i; c->eflags |= F_DF; }

H(h_nop)
{
    if (i->op == 0x90 && i->rm) {     /* 90 with REX.B is XCHG r8, rAX */
        h_xchg_a_r(c, i);
        return;
    }
}
