/* Lazy arithmetic flags: an instruction records its operation and operands (cc_op, cc_res,
 * cc_src, cc_aux) and the flags are computed only when something reads them. */
#include "accel/emu/cpu.h"

static inline uint32_t szp(uint64_t res, int sz)
{
    uint32_t f = 0;
    res &= size_mask(sz);
    if (res == 0)
        f |= F_ZF;
    if (res & sign_bit(sz))
        f |= F_SF;
    if (!__builtin_parity((unsigned)(res & 0xff)))
        f |= F_PF;
    return f;
}

static uint32_t calc(struct cpu *c, uint32_t ccop, uint64_t res, uint64_t src, uint64_t aux)
{
    uint32_t op = ccop & ~3u;
    int sz = 1 << (ccop & 3);
    uint64_t m = size_mask(sz), sb = sign_bit(sz), a, cin;
    if (op == CC_EFLAGS)
        return (uint32_t)src & F_ARITH;
    res &= m;
    src &= m;
    uint32_t f;
    switch (op) {
    case CC_EFLAGS:
        return (uint32_t)src & F_ARITH;
    case CC_ADD:
        a = (res - src) & m;
        f = szp(res, sz) | (res < a ? F_CF : 0);
        f |= ((a ^ src ^ res) & 0x10) ? F_AF : 0;
        f |= ((~(a ^ src) & (a ^ res)) & sb) ? F_OF : 0;
        return f;
    case CC_ADC:
        cin = aux & 1;
        a = (res - src - cin) & m;
        f = szp(res, sz) | ((cin ? res <= a : res < a) ? F_CF : 0);
        f |= ((a ^ src ^ res) & 0x10) ? F_AF : 0;
        f |= ((~(a ^ src) & (a ^ res)) & sb) ? F_OF : 0;
        return f;
    case CC_SUB:
        a = (res + src) & m;
        f = szp(res, sz) | (a < src ? F_CF : 0);
        f |= ((a ^ src ^ res) & 0x10) ? F_AF : 0;
        f |= (((a ^ src) & (a ^ res)) & sb) ? F_OF : 0;
        return f;
    case CC_SBB:
        cin = aux & 1;
        a = (res + src + cin) & m;
        f = szp(res, sz) | ((cin ? a <= src : a < src) ? F_CF : 0);
        f |= ((a ^ src ^ res) & 0x10) ? F_AF : 0;
        f |= (((a ^ src) & (a ^ res)) & sb) ? F_OF : 0;
        return f;
    case CC_LOGIC:
        return szp(res, sz);
    case CC_INC:
        f = szp(res, sz) | (aux & F_CF);
        f |= (res & 0xf) == 0 ? F_AF : 0;
        f |= res == sb ? F_OF : 0;
        return f;
    case CC_DEC:
        f = szp(res, sz) | (aux & F_CF);
        f |= (res & 0xf) == 0xf ? F_AF : 0;
        f |= res == sb - 1 ? F_OF : 0;
        return f;
    case CC_SHL:
        /* cc_src: the operand shifted by count-1, so its top bit is the last bit out */
        f = szp(res, sz) | ((src & sb) ? F_CF : 0);
        f |= (!!(src & sb) ^ !!(res & sb)) ? F_OF : 0;
        return f;
    case CC_SHR:
        /* cc_src: operand shifted by count-1; cc_aux: the original operand */
        f = szp(res, sz) | ((src & 1) ? F_CF : 0);
        f |= (aux & sb) ? F_OF : 0;
        return f;
    case CC_SAR:
        return szp(res, sz) | ((src & 1) ? F_CF : 0);
    case CC_MUL:
        return szp(res, sz) | (src ? (F_CF | F_OF) : 0);
    case CC_ROL: case CC_ROR: {
        f = calc(c, c->cc_pop, c->cc_pres, c->cc_psrc, c->cc_paux) & ~(F_CF | F_OF);
        bool cf = op == CC_ROL ? (res & 1) : !!(res & sb);
        bool of = op == CC_ROL ? (!!(res & sb) ^ cf) : (!!(res & sb) ^ !!(res & (sb >> 1)));
        return f | (cf ? F_CF : 0) | (of ? F_OF : 0);
    }
    }
    return 0;
}

uint32_t flags_arith(struct cpu *c)
{
    return calc(c, c->cc_op, c->cc_res, c->cc_src, c->cc_aux);
}

bool flags_cf(struct cpu *c)
{
    uint32_t op = c->cc_op & ~3u;
    int sz = 1 << (c->cc_op & 3);
    uint64_t m = size_mask(sz);
    switch (op) {
    case CC_ADD: return (c->cc_res & m) < (c->cc_src & m);
    case CC_SUB: return ((c->cc_res + c->cc_src) & m) < (c->cc_src & m);
    case CC_LOGIC: return false;
    default: return flags_arith(c) & F_CF;
    }
}

bool cond_eval(struct cpu *c, int cc)
{
    bool r;
    uint32_t op = c->cc_op & ~3u;
    if (op == CC_SUB) {
        /* comparisons: the common case, straight from the operands */
        int sz = 1 << (c->cc_op & 3);
        uint64_t m = size_mask(sz);
        uint64_t b = c->cc_src & m, res = c->cc_res & m, a = (res + b) & m;
        int64_t sa = sext(a, sz), sbv = sext(b, sz);
        switch (cc >> 1) {
        case 0: r = flags_arith(c) & F_OF; break;
        case 1: r = a < b; break;
        case 2: r = res == 0; break;
        case 3: r = a <= b; break;
        case 4: r = res & sign_bit(sz); break;
        case 5: r = !__builtin_parity((unsigned)(res & 0xff)); break;
        case 6: r = sa < sbv; break;
        default: r = sa <= sbv; break;
        }
        return r ^ (cc & 1);
    }
    if (op == CC_LOGIC) {
        int sz = 1 << (c->cc_op & 3);
        uint64_t res = c->cc_res & size_mask(sz);
        bool s = res & sign_bit(sz);
        switch (cc >> 1) {
        case 0: case 1: r = false; break;
        case 2: case 3: r = res == 0; break;
        case 4: case 6: r = s; break;
        case 5: r = !__builtin_parity((unsigned)(res & 0xff)); break;
        default: r = s || res == 0; break;
        }
        return r ^ (cc & 1);
    }
    uint32_t f = flags_arith(c);
    switch (cc >> 1) {
    case 0: r = f & F_OF; break;
    case 1: r = f & F_CF; break;
    case 2: r = f & F_ZF; break;
    case 3: r = f & (F_CF | F_ZF); break;
    case 4: r = f & F_SF; break;
    case 5: r = f & F_PF; break;
    case 6: r = !!(f & F_SF) != !!(f & F_OF); break;
    default: r = (f & F_ZF) || (!!(f & F_SF) != !!(f & F_OF)); break;
    }
    return r ^ (cc & 1);
}

uint64_t flags_get(struct cpu *c)
{
    return (c->eflags & ~F_ARITH) | flags_arith(c) | 2;
}

/* Writes the bits of writable from f; the arithmetic ones go to the lazy state. */
void flags_set(struct cpu *c, uint64_t f, uint32_t writable)
{
    uint32_t ar = flags_arith(c);
    ar = (ar & ~writable) | ((uint32_t)f & writable);
    cc_flags(c, ar);
    uint32_t other = writable & ~F_ARITH;
    uint32_t old = c->eflags;
    c->eflags = (c->eflags & ~other) | ((uint32_t)f & other);
    if (unlikely((c->eflags & ~old) & (F_TF | F_RF)))
        c->brk = true;   /* the run loop steps from the next instruction on (debug.c) */
    if ((c->eflags & ~old & F_IF) && c->irq_held)
        cpu_irq_release(c);
    if (other & F_AC)
        cpu_select_tlb(c);
}
