/* Integer arithmetic and logic: ALU ops, INC/DEC/NOT/NEG, MUL/DIV, exchange and compare-exchange. */
#include "accel/emu/exec.h"

/* New value of a read-modify-write operation; sets the lazy flags. */
static uint64_t rmw_apply(struct cpu *c, int kind, int sz, uint64_t a, uint64_t b)
{
    uint64_t m = size_mask(sz), r, cin;
    switch (kind) {
    case RMW_ADD: r = (a + b) & m; cc_set(c, CC_ADD, sz, r, b); return r;
    case RMW_OR: r = (a | b) & m; cc_set(c, CC_LOGIC, sz, r, 0); return r;
    case RMW_ADC:
        cin = flags_cf(c);
        r = (a + b + cin) & m;
        cc_set(c, CC_ADC, sz, r, b);
        c->cc_aux = cin;
        return r;
    case RMW_SBB:
        cin = flags_cf(c);
        r = (a - b - cin) & m;
        cc_set(c, CC_SBB, sz, r, b);
        c->cc_aux = cin;
        return r;
    case RMW_AND: r = a & b & m; cc_set(c, CC_LOGIC, sz, r, 0); return r;
    case RMW_SUB: case RMW_CMP: r = (a - b) & m; cc_set(c, CC_SUB, sz, r, b); return r;
    case RMW_XOR: r = (a ^ b) & m; cc_set(c, CC_LOGIC, sz, r, 0); return r;
    case RMW_NOT: return ~a & m;
    case RMW_NEG: r = (0 - a) & m; cc_set(c, CC_SUB, sz, r, a); return r;
    case RMW_INC:
        cin = flags_cf(c);
        r = (a + 1) & m;
        cc_set(c, CC_INC, sz, r, 1);
        c->cc_aux = cin;
        return r;
    case RMW_DEC:
        cin = flags_cf(c);
        r = (a - 1) & m;
        cc_set(c, CC_DEC, sz, r, 1);
        c->cc_aux = cin;
        return r;
    case RMW_BTS: case RMW_BTR: case RMW_BTC: {
        uint32_t f = flags_arith(c) & ~F_CF;
        if ((a >> b) & 1)
            f |= F_CF;
        cc_flags(c, f);
        uint64_t bit = 1ull << b;
        return kind == RMW_BTS ? a | bit : kind == RMW_BTR ? a & ~bit : a ^ bit;
    }
    case RMW_XADD: r = (a + b) & m; cc_set(c, CC_ADD, sz, r, b); return r;
    default: return b & m;   /* XCHG */
    }
}

uint64_t rmw_mem(struct cpu *c, uint64_t la, bool lock, int kind, int sz, uint64_t b)
{
    if (kind == RMW_CMP) {
        uint64_t a = mem_rd(c, la, sz);
        rmw_apply(c, kind, sz, a, b);
        return a;
    }
    if (lock || kind == RMW_XCHG) {
        void *p = mem_ptr_w(c, la, sz);
        if (p) {
            uint64_t old = ld_sz(p, sz), nv;
            do {
                nv = rmw_apply(c, kind, sz, old, b);
            } while (!cas_sz(p, sz, &old, nv));
            return old;
        }
    }
    uint64_t a = mem_rd(c, la, sz);
    uint64_t r = rmw_apply(c, kind, sz, a, b);
    mem_wr(c, la, sz, r);
    return a;
}

uint64_t rmw_rm(struct cpu *c, const struct insn *i, int kind, int sz, uint64_t b)
{
    if (i->mod == 3) {
        uint64_t a = reg_get(c, i->rm, sz);
        uint64_t r = rmw_apply(c, kind, sz, a, b);
        if (kind != RMW_CMP)
            reg_set(c, i->rm, sz, r);
        return a;
    }
    return rmw_mem(c, ea(c, i), i->lock, kind, sz, b);
}

H(h_alu_rm_r)
{
    int sz = i->osz;
    rmw_rm(c, i, (i->op >> 3) & 7, sz, reg_get(c, i->reg, sz));
}

H(h_alu_r_rm)
{
    int sz = i->osz, kind = (i->op >> 3) & 7;
    uint64_t r = rmw_apply(c, kind, sz, reg_get(c, i->reg, sz), rm_read(c, i, sz));
    if (kind != RMW_CMP)
        reg_set(c, i->reg, sz, r);
}

H(h_alu_a_i)
{
    int sz = i->osz, kind = (i->op >> 3) & 7;
    uint64_t r = rmw_apply(c, kind, sz, reg_get(c, R_AX, sz), i->imm & size_mask(sz));
    if (kind != RMW_CMP)
        reg_set(c, R_AX, sz, r);
}

H(h_alu_rm_i)
{
    rmw_rm(c, i, i->sub, i->osz, i->imm & size_mask(i->osz));
}

H(h_test_rm_r)
{
    int sz = i->osz;
    cc_set(c, CC_LOGIC, sz, rm_read(c, i, sz) & reg_get(c, i->reg, sz), 0);
}

H(h_test_a_i)
{
    int sz = i->osz;
    cc_set(c, CC_LOGIC, sz, reg_get(c, R_AX, sz) & i->imm & size_mask(sz), 0);
}

/* 40-4F outside 64-bit mode */
H(h_incdec_r)
{
    int sz = i->osz;
    uint64_t r = rmw_apply(c, (i->op & 8) ? RMW_DEC : RMW_INC, sz, reg_get(c, i->rm & 7, sz), 1);
    reg_set(c, i->rm & 7, sz, r);
}

H(h_grp4)
{
    int sub = i->sub;
    if (sub > 1)
        raise_ud(c);
    rmw_rm(c, i, sub ? RMW_DEC : RMW_INC, 1, 1);
}

static void mul_op(struct cpu *c, int sz, uint64_t b, bool sign)
{
    uint64_t a = reg_get(c, R_AX, sz), lo, hi;
    bool of;
    if (sz == 8) {
        if (sign) {
            __int128 p = (__int128)(int64_t)a * (int64_t)b;
            lo = (uint64_t)p;
            hi = (uint64_t)(p >> 64);
            of = p != (__int128)(int64_t)lo;
        } else {
            unsigned __int128 p = (unsigned __int128)a * b;
            lo = (uint64_t)p;
            hi = (uint64_t)(p >> 64);
            of = hi != 0;
        }
    } else {
        int bits = sz * 8;
        uint64_t m = size_mask(sz);
        if (sign) {
            int64_t p = sext(a, sz) * sext(b, sz);
            lo = (uint64_t)p & m;
            hi = ((uint64_t)p >> bits) & m;
            of = p != sext(lo, sz);
        } else {
            uint64_t p = a * b;
            lo = p & m;
            hi = (p >> bits) & m;
            of = hi != 0;
        }
    }
    if (sz == 1) {
        reg_set(c, R_AX, 2, lo | (hi << 8));
    } else {
        reg_set(c, R_AX, sz, lo);
        reg_set(c, R_DX, sz, hi);
    }
    cc_set(c, CC_MUL, sz, lo, of);
}

static void div_op(struct cpu *c, int sz, uint64_t d, bool sign)
{
    if (d == 0)
        raise_exc(c, EXC_DE);
    uint64_t q, r;
    if (sz == 8) {
        unsigned __int128 n = ((unsigned __int128)c->r[R_DX] << 64) | c->r[R_AX];
        if (sign) {
            __int128 sn = (__int128)n, sd = (int64_t)d;
            if (sd == -1 && sn == (__int128)((unsigned __int128)1 << 127))
                raise_exc(c, EXC_DE);
            __int128 sq = sn / sd, sr = sn % sd;
            if (sq > INT64_MAX || sq < INT64_MIN)
                raise_exc(c, EXC_DE);
            q = (uint64_t)sq;
            r = (uint64_t)sr;
        } else {
            if (c->r[R_DX] >= d)
                raise_exc(c, EXC_DE);
            q = (uint64_t)(n / d);
            r = (uint64_t)(n % d);
        }
    } else {
        int bits = sz * 8;
        uint64_t m = size_mask(sz);
        uint64_t n = sz == 1 ? reg_get(c, R_AX, 2)
                             : (reg_get(c, R_DX, sz) << bits) | reg_get(c, R_AX, sz);
        if (sign) {
            int64_t sn = sext(n, sz * 2), sd = sext(d, sz);
            int64_t sq = sn / sd, sr = sn % sd;
            if (sq > (int64_t)(m >> 1) || sq < -(int64_t)(m >> 1) - 1)
                raise_exc(c, EXC_DE);
            q = (uint64_t)sq & m;
            r = (uint64_t)sr & m;
        } else {
            uint64_t uq = n / d;
            if (uq > m)
                raise_exc(c, EXC_DE);
            q = uq;
            r = n % d;
        }
    }
    if (sz == 1) {
        reg_set(c, R_AX, 2, (q & 0xff) | ((r & 0xff) << 8));
    } else {
        reg_set(c, R_AX, sz, q);
        reg_set(c, R_DX, sz, r);
    }
}

H(h_grp3)
{
    int sz = i->osz;
    switch (i->sub) {
    case 0: case 1:
        cc_set(c, CC_LOGIC, sz, rm_read(c, i, sz) & i->imm & size_mask(sz), 0);
        break;
    case 2: rmw_rm(c, i, RMW_NOT, sz, 0); break;
    case 3: rmw_rm(c, i, RMW_NEG, sz, 0); break;
    case 4: mul_op(c, sz, rm_read(c, i, sz), false); break;
    case 5: mul_op(c, sz, rm_read(c, i, sz), true); break;
    case 6: div_op(c, sz, rm_read(c, i, sz), false); break;
    default: div_op(c, sz, rm_read(c, i, sz), true); break;
    }
}

static uint64_t imul2(struct cpu *c, int sz, uint64_t a, uint64_t b)
{
    uint64_t lo;
    bool of;
    if (sz == 8) {
        __int128 p = (__int128)(int64_t)a * (int64_t)b;
        lo = (uint64_t)p;
        of = p != (__int128)(int64_t)lo;
    } else {
        int64_t p = sext(a, sz) * sext(b, sz);
        lo = (uint64_t)p & size_mask(sz);
        of = p != sext(lo, sz);
    }
    cc_set(c, CC_MUL, sz, lo, of);
    return lo;
}

H(h_imul_rmi)
{
    int sz = i->osz;
    reg_set(c, i->reg, sz, imul2(c, sz, rm_read(c, i, sz), i->imm));
}

H(h_imul_r_rm)
{
    int sz = i->osz;
    reg_set(c, i->reg, sz, imul2(c, sz, reg_get(c, i->reg, sz), rm_read(c, i, sz)));
}

H(h_cbw)
{
    int sz = i->osz;
    reg_set(c, R_AX, sz, (uint64_t)sext(reg_get(c, R_AX, sz / 2), sz / 2));
}

H(h_cwd)
{
    int sz = i->osz;
    reg_set(c, R_DX, sz, (reg_get(c, R_AX, sz) & sign_bit(sz)) ? ~0ull : 0);
}

H(h_xchg_rm_r)
{
    int sz = i->osz;
    uint64_t old = rmw_rm(c, i, RMW_XCHG, sz, reg_get(c, i->reg, sz));
    reg_set(c, i->reg, sz, old);
}

H(h_xchg_a_r)
{
    int sz = i->osz;
    uint64_t a = reg_get(c, R_AX, sz);
    reg_set(c, R_AX, sz, reg_get(c, i->rm, sz));
    reg_set(c, i->rm, sz, a);
}

H(h_xadd)
{
    int sz = i->osz;
    uint64_t src = reg_get(c, i->reg, sz);
    uint64_t old = rmw_rm(c, i, RMW_XADD, sz, src);
    reg_set(c, i->reg, sz, old);
    if (i->mod == 3 && i->rm == i->reg)
        reg_set(c, i->rm, sz, (old + src) & size_mask(sz));
}

H(h_cmpxchg)
{
    int sz = i->osz;
    uint64_t acc = reg_get(c, R_AX, sz), src = reg_get(c, i->reg, sz), cur;
    if (i->mod == 3) {
        cur = reg_get(c, i->rm, sz);
        if (cur == acc)
            reg_set(c, i->rm, sz, src);
    } else {
        uint64_t la = ea(c, i);
        void *p = mem_ptr_w(c, la, sz);
        if (p) {
            cur = acc;
            cas_sz(p, sz, &cur, src);
        } else {
            cur = mem_rd(c, la, sz);
            mem_wr(c, la, sz, cur == acc ? src : cur);
        }
    }
    cc_set(c, CC_SUB, sz, (acc - cur) & size_mask(sz), cur);
    if (cur != acc)
        reg_set(c, R_AX, sz, cur);
}

/* CMPXCHG8B / CMPXCHG16B */
H(h_grp9)
{
    if ((i->sub) != 1 || i->mod == 3)
        raise_ud(c);
    uint64_t la = ea(c, i);
    bool ok;
    if (i->osz == 8) {
        if (la & 15)
            raise_gp(c, 0);
        uint64_t *p = mem_ptr_w(c, la, 16);
        uint64_t lo = c->r[R_AX], hi = c->r[R_DX];
        if (p) {
            __asm__ volatile("lock cmpxchg16b %1"
                             : "=@ccz"(ok), "+m"(*(unsigned __int128 *)p), "+a"(lo), "+d"(hi)
                             : "b"(c->r[R_BX]), "c"(c->r[R_CX])
                             : "memory");
        } else {
            uint64_t m0 = mem_rd(c, la, 8), m1 = mem_rd(c, la + 8, 8);
            ok = m0 == lo && m1 == hi;
            if (ok) {
                mem_wr(c, la, 8, c->r[R_BX]);
                mem_wr(c, la + 8, 8, c->r[R_CX]);
            }
            lo = m0;
            hi = m1;
        }
        if (!ok) {
            c->r[R_AX] = lo;
            c->r[R_DX] = hi;
        }
    } else {
        uint64_t exp = (uint32_t)c->r[R_AX] | (c->r[R_DX] << 32);
        uint64_t nv = (uint32_t)c->r[R_BX] | (c->r[R_CX] << 32), cur = exp;
        void *p = mem_ptr_w(c, la, 8);
        if (p) {
            ok = cas_sz(p, 8, &cur, nv);
        } else {
            cur = mem_rd(c, la, 8);
            ok = cur == exp;
            mem_wr(c, la, 8, ok ? nv : cur);
        }
        if (!ok) {
            c->r[R_AX] = (uint32_t)cur;
            c->r[R_DX] = cur >> 32;
        }
    }
    uint32_t f = flags_arith(c) & ~F_ZF;
    cc_flags(c, f | (ok ? F_ZF : 0));
}

/* BCD adjustments, legacy modes only */
H(h_daa)
{
    (void)i;
    uint32_t f = flags_arith(c);
    uint8_t al = (uint8_t)c->r[R_AX], old = al;
    bool cf = f & F_CF, af = false;
    if ((al & 0xf) > 9 || (f & F_AF)) {
        al += 6;
        af = true;
    }
    if (old > 0x99 || cf) {
        al += 0x60;
        cf = true;
    } else {
        cf = false;
    }
    reg_set(c, R_AX, 1, al);
    cc_set(c, CC_LOGIC, 1, al, 0);
    cc_flags(c, (flags_arith(c) & ~(F_CF | F_AF)) | (cf ? F_CF : 0) | (af ? F_AF : 0));
}

H(h_das)
{
    (void)i;
    uint32_t f = flags_arith(c);
    uint8_t al = (uint8_t)c->r[R_AX], old = al;
    bool cf = f & F_CF, af = false;
    if ((al & 0xf) > 9 || (f & F_AF)) {
        cf = cf || al < 6;   /* the borrow of AL - 6 sets CF too (SDM's DAS pseudocode) */
        al -= 6;
        af = true;
    }
    if (old > 0x99 || (f & F_CF)) {
        al -= 0x60;
        cf = true;
    }
    reg_set(c, R_AX, 1, al);
    cc_set(c, CC_LOGIC, 1, al, 0);
    cc_flags(c, (flags_arith(c) & ~(F_CF | F_AF)) | (cf ? F_CF : 0) | (af ? F_AF : 0));
}

static void aaa_aas(struct cpu *c, bool sub)
{
    uint32_t f = flags_arith(c) & ~(F_CF | F_AF);
    uint16_t ax = (uint16_t)c->r[R_AX];
    if ((ax & 0xf) > 9 || (flags_arith(c) & F_AF)) {
        ax = sub ? (uint16_t)(ax - 6) : (uint16_t)(ax + 0x106);
        if (sub)
            ax = (uint16_t)(ax - 0x100);
        f |= F_CF | F_AF;
    }
    reg_set(c, R_AX, 2, ax & 0xff0f);
    cc_flags(c, f);
}

H(h_aaa) { (void)i; aaa_aas(c, false); }
H(h_aas) { (void)i; aaa_aas(c, true); }

H(h_aam)
{
    uint8_t base = (uint8_t)i->imm, al = (uint8_t)c->r[R_AX];
    if (!base)
        raise_exc(c, EXC_DE);
    reg_set(c, R_AX, 2, ((al / base) << 8) | (al % base));
    cc_set(c, CC_LOGIC, 1, al % base, 0);
}

H(h_aad)
{
    uint8_t base = (uint8_t)i->imm;
    uint16_t ax = (uint16_t)c->r[R_AX];
    uint8_t al = (uint8_t)((ax & 0xff) + (ax >> 8) * base);
    reg_set(c, R_AX, 2, al);
    cc_set(c, CC_LOGIC, 1, al, 0);
}

H(h_salc)
{
    (void)i;
    reg_set(c, R_AX, 1, flags_cf(c) ? 0xff : 0);
}
