/* Specialized handlers for the most frequent forms (register operands, 32/64-bit sizes, plain
 * loads and stores), chosen once at decode time so the common path has no size or form switches.
 * Each must behave exactly like the generic handler it replaces. */
#include "accel/emu/exec.h"

#define MOV_RR(sz) \
    static H(h_mov_rr##sz) { reg_set(c, i->rm, sz, reg_get(c, i->reg, sz)); } \
    static H(h_mov_rr_rev##sz) { reg_set(c, i->reg, sz, reg_get(c, i->rm, sz)); } \
    static H(h_mov_ld##sz) { reg_set(c, i->reg, sz, mem_rd(c, ea(c, i), sz)); } \
    static H(h_mov_st##sz) { mem_wr(c, ea(c, i), sz, reg_get(c, i->reg, sz)); }
MOV_RR(4)
MOV_RR(8)

/* [base + disp] in flat 64-bit addressing: the most common memory operand */
#define EA_BD(c, i) ((c)->r[(i)->base] + (uint64_t)(int64_t)(i)->disp)
static H(h_mov_ld8_bd) { c->r[i->reg] = mem_rd(c, EA_BD(c, i), 8); }
static H(h_mov_ld4_bd) { c->r[i->reg] = (uint32_t)mem_rd(c, EA_BD(c, i), 4); }
static H(h_mov_st8_bd) { mem_wr(c, EA_BD(c, i), 8, c->r[i->reg]); }
static H(h_mov_st4_bd) { mem_wr(c, EA_BD(c, i), 4, (uint32_t)c->r[i->reg]); }

static H(h_mov_st8_imm) { mem_wr(c, ea(c, i), 8, i->imm); }
static H(h_mov_st4_imm) { mem_wr(c, ea(c, i), 4, i->imm); }
static H(h_lea8) { c->r[i->reg] = ea_off(c, i); }

/* ALU register/register and register/immediate forms for 32 and 64 bits */
#define ALU_OPS(sz, T)                                                                         \
    static inline void alu##sz(struct cpu *c, int kind, int dst, T b)                         \
    {                                                                                          \
        T a = (T)c->r[dst], r;                                                                 \
        switch (kind) {                                                                        \
        case RMW_ADD: r = a + b; cc_set(c, CC_ADD, sz, r, b); break;                           \
        case RMW_OR: r = a | b; cc_set(c, CC_LOGIC, sz, r, 0); break;                          \
        case RMW_AND: r = a & b; cc_set(c, CC_LOGIC, sz, r, 0); break;                         \
        case RMW_SUB: r = a - b; cc_set(c, CC_SUB, sz, r, b); break;                           \
        case RMW_XOR: r = a ^ b; cc_set(c, CC_LOGIC, sz, r, 0); break;                         \
        default: cc_set(c, CC_SUB, sz, (T)(a - b), b); return;   /* CMP */                    \
        }                                                                                      \
        c->r[dst] = r;                                                                         \
    }                                                                                          \
    static H(h_alu_rr##sz) { alu##sz(c, (i->op >> 3) & 7, i->rm, (T)c->r[i->reg]); }         \
    static H(h_alu_rr_rev##sz) { alu##sz(c, (i->op >> 3) & 7, i->reg, (T)c->r[i->rm]); }     \
    static H(h_alu_ri##sz) { alu##sz(c, i->sub, i->rm, (T)i->imm); }                          \
    static H(h_alu_rm_ld##sz) { alu##sz(c, (i->op >> 3) & 7, i->reg, (T)mem_rd(c, ea(c, i), sz)); } \
    static H(h_test_rr##sz) { cc_set(c, CC_LOGIC, sz, (T)(c->r[i->rm] & c->r[i->reg]), 0); }
ALU_OPS(4, uint32_t)
ALU_OPS(8, uint64_t)

static H(h_cmp_mi8)
{
    uint64_t a = mem_rd(c, ea(c, i), 8);
    cc_set(c, CC_SUB, 8, a - i->imm, i->imm);
}

static H(h_cmp_mi4)
{
    uint32_t a = (uint32_t)mem_rd(c, ea(c, i), 4), b = (uint32_t)i->imm;
    cc_set(c, CC_SUB, 4, (uint32_t)(a - b), b);
}

static H(h_jcc_fast)
{
    if (cond_eval(c, i->op & 0xf))
        c->rip += i->imm;
}

/* JZ/JNZ: every lazy operation but EFLAGS and the rotates has ZF = (result == 0) */
static inline bool zf_now(struct cpu *c)
{
    uint32_t op = c->cc_op & ~3u;
    if (likely(op != CC_EFLAGS && op < CC_ROL))
        return (c->cc_res & size_mask(1 << (c->cc_op & 3))) == 0;
    return flags_arith(c) & F_ZF;
}

static H(h_jz64) { if (zf_now(c)) c->rip += i->imm; }
static H(h_jnz64) { if (!zf_now(c)) c->rip += i->imm; }

static H(h_push8) { push(c, 8, c->r[i->rm]); }
static H(h_pop8) { c->r[i->rm] = pop(c, 8); }

static H(h_ret8)
{
    (void)i;
    uint64_t sp = c->r[R_SP];
    uint64_t t = stack_rd(c, sp, 8);
    if (unlikely((uint64_t)((int64_t)(t << 16) >> 16) != t))
        raise_gp(c, 0);   /* a non-canonical return address: #GP at the RET */
    c->rip = t;
    c->r[R_SP] = sp + 8;
}

static H(h_call8)
{
    uint64_t sp = c->r[R_SP] - 8;
    stack_wr(c, sp, 8, c->rip);
    c->r[R_SP] = sp;
    c->rip += i->imm;
}

static H(h_movzx_b4) { c->r[i->reg] = (uint8_t)rm_read(c, i, 1); }
static H(h_movzx_w4) { c->r[i->reg] = (uint16_t)rm_read(c, i, 2); }

/* SHL/SHR/SAR of a 32/64-bit register by an immediate */
#define SHIFT_RI(sz, T, ST)                                                                    \
    static H(h_shl_ri##sz)                                                                     \
    {                                                                                          \
        unsigned n = (unsigned)i->imm & (sz == 8 ? 63 : 31);                                   \
        T a = (T)c->r[i->rm];                                                                  \
        if (n) {                                                                               \
            cc_set(c, CC_SHL, sz, (T)(a << n), (T)(a << (n - 1)));                             \
            a <<= n;                                                                           \
        }                                                                                      \
        c->r[i->rm] = a;                                                                       \
    }                                                                                          \
    static H(h_shr_ri##sz)                                                                     \
    {                                                                                          \
        unsigned n = (unsigned)i->imm & (sz == 8 ? 63 : 31);                                   \
        T a = (T)c->r[i->rm];                                                                  \
        if (n) {                                                                               \
            cc_set(c, CC_SHR, sz, a >> n, a >> (n - 1));                                       \
            c->cc_aux = a;                                                                     \
            a >>= n;                                                                           \
        }                                                                                      \
        c->r[i->rm] = a;                                                                       \
    }                                                                                          \
    static H(h_sar_ri##sz)                                                                     \
    {                                                                                          \
        unsigned n = (unsigned)i->imm & (sz == 8 ? 63 : 31);                                   \
        ST a = (ST)c->r[i->rm];                                                                \
        if (n) {                                                                               \
            cc_set(c, CC_SAR, sz, (T)(a >> n), (T)(a >> (n - 1)));                             \
            a >>= n;                                                                           \
        }                                                                                      \
        c->r[i->rm] = (T)a;                                                                    \
    }                                                                                          \
    static H(h_imul_rr##sz)                                                                    \
    {                                                                                          \
        T b = i->mod == 3 ? (T)c->r[i->rm] : (T)mem_rd(c, ea(c, i), sz);                       \
        ST a = (ST)c->r[i->reg];                                                               \
        ST r;                                                                                  \
        bool of = __builtin_mul_overflow(a, (ST)b, &r);                                        \
        c->r[i->reg] = (T)r;                                                                   \
        cc_set(c, CC_MUL, sz, (T)r, of);                                                       \
    }
SHIFT_RI(4, uint32_t, int32_t)
#define ROT_RI(sz, T)                                                                          \
    static H(h_rol_ri##sz)                                                                     \
    {                                                                                          \
        unsigned n = (unsigned)i->imm & (sz == 8 ? 63 : 31);                                   \
        T a = (T)c->r[i->rm];                                                                  \
        if (n) {                                                                               \
            n &= sz * 8 - 1;                                                                   \
            a = n ? (T)((a << n) | (a >> (sz * 8 - n))) : a;                                   \
            cc_rotate(c, CC_ROL, sz, a);                                                       \
        }                                                                                      \
        c->r[i->rm] = a;                                                                       \
    }                                                                                          \
    static H(h_ror_ri##sz)                                                                     \
    {                                                                                          \
        unsigned n = (unsigned)i->imm & (sz == 8 ? 63 : 31);                                   \
        T a = (T)c->r[i->rm];                                                                  \
        if (n) {                                                                               \
            n &= sz * 8 - 1;                                                                   \
            a = n ? (T)((a >> n) | (a << (sz * 8 - n))) : a;                                   \
            cc_rotate(c, CC_ROR, sz, a);                                                       \
        }                                                                                      \
        c->r[i->rm] = a;                                                                       \
    }
ROT_RI(4, uint32_t)
ROT_RI(8, uint64_t)
SHIFT_RI(8, uint64_t, int64_t)

/* Picks a specialized handler for i when there is one. mode is the decode mode (8: 64-bit). */
void exec_specialize(struct insn *i, uint32_t mode)
{
    unsigned op = i->op;
    int sz = i->osz;
    bool reg = i->mod == 3, mem = !reg && !(i->op >= 0x100);
    bool flat64 = mode == 8;
    if (i->lock || i->rep)
        return;
    if (op < 0x40 && (op & 7) <= 3 && (sz == 4 || sz == 8)) {
        int kind = (op >> 3) & 7;
        if (kind == RMW_ADC || kind == RMW_SBB)
            return;
        if (reg) {
            if ((op & 7) == 1)
                i->fn = sz == 8 ? h_alu_rr8 : h_alu_rr4;
            else if ((op & 7) == 3)
                i->fn = sz == 8 ? h_alu_rr_rev8 : h_alu_rr_rev4;
        } else if ((op & 7) == 3) {
            i->fn = sz == 8 ? h_alu_rm_ld8 : h_alu_rm_ld4;
        }
        return;
    }
    if (flat64 && mem && i->asz == 8 && i->base < 16 && i->index == REG_NONE && i->seg != SEG_FS &&
        i->seg != SEG_GS && (sz == 8 || sz == 4)) {
        if (op == 0x8b) {
            i->fn = sz == 8 ? h_mov_ld8_bd : h_mov_ld4_bd;
            return;
        }
        if (op == 0x89) {
            i->fn = sz == 8 ? h_mov_st8_bd : h_mov_st4_bd;
            return;
        }
    }
    switch (op) {
    case 0x81: case 0x83:
        if (sz != 4 && sz != 8)
            return;
        if (reg && i->sub != RMW_ADC && i->sub != RMW_SBB)
            i->fn = sz == 8 ? h_alu_ri8 : h_alu_ri4;
        else if (mem && i->sub == RMW_CMP)
            i->fn = sz == 8 ? h_cmp_mi8 : h_cmp_mi4;
        return;
    case 0x85:
        if (reg && (sz == 4 || sz == 8))
            i->fn = sz == 8 ? h_test_rr8 : h_test_rr4;
        return;
    case 0x89:
        if (sz == 8)
            i->fn = reg ? h_mov_rr8 : h_mov_st8;
        else if (sz == 4)
            i->fn = reg ? h_mov_rr4 : h_mov_st4;
        return;
    case 0x8b:
        if (sz == 8)
            i->fn = reg ? h_mov_rr_rev8 : h_mov_ld8;
        else if (sz == 4)
            i->fn = reg ? h_mov_rr_rev4 : h_mov_ld4;
        return;
    case 0xc7:
        if (mem && sz == 8)
            i->fn = h_mov_st8_imm;
        else if (mem && sz == 4)
            i->fn = h_mov_st4_imm;
        return;
    case 0x8d:
        if (mem && sz == 8 && i->asz == 8)
            i->fn = h_lea8;
        return;
    case 0xc1:
        if (reg && (sz == 4 || sz == 8)) {
            if (i->sub == 0)
                i->fn = sz == 8 ? h_rol_ri8 : h_rol_ri4;
            else if (i->sub == 1)
                i->fn = sz == 8 ? h_ror_ri8 : h_ror_ri4;
            else if (i->sub == 4 || i->sub == 6)
                i->fn = sz == 8 ? h_shl_ri8 : h_shl_ri4;
            else if (i->sub == 5)
                i->fn = sz == 8 ? h_shr_ri8 : h_shr_ri4;
            else if (i->sub == 7)
                i->fn = sz == 8 ? h_sar_ri8 : h_sar_ri4;
        }
        return;
    case 0x1af:
        if (sz == 4 || sz == 8)
            i->fn = sz == 8 ? h_imul_rr8 : h_imul_rr4;
        return;
    case 0x1b6: case 0x1b7:
        if (sz == 4)
            i->fn = op == 0x1b6 ? h_movzx_b4 : h_movzx_w4;
        return;
    }
    if (!flat64)
        return;
    /* 64-bit mode: flat stack (SS base 0, 8-byte slots) and 64-bit branch targets */
    if (op == 0x74 || op == 0x184)
        i->fn = h_jz64;
    else if (op == 0x75 || op == 0x185)
        i->fn = h_jnz64;
    else if ((op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f))
        i->fn = h_jcc_fast;
    else if (op >= 0x50 && op <= 0x57 && sz == 8)
        i->fn = h_push8;
    else if (op >= 0x58 && op <= 0x5f && sz == 8)
        i->fn = h_pop8;
    else if (op == 0xc3 && sz == 8)
        i->fn = h_ret8;
    else if (op == 0xe8 && sz == 8)
        i->fn = h_call8;
}
