/* BMI1 and BMI2 (x86-64-v3's bit manipulation): VEX-encoded general-register instructions, and
 * TZCNT. Flags the manuals call undefined are cleared. VEX.L=1 is #UD for all of them. */
#include "accel/emu/exec.h"

/* SF and ZF of a result of sz bytes */
static uint32_t sz_flags(uint64_t v, int sz)
{
    v &= size_mask(sz);
    return (v ? 0 : F_ZF) | ((v & sign_bit(sz)) ? F_SF : 0);
}

static uint64_t pext(uint64_t v, uint64_t m)
{
    uint64_t r = 0;
    for (int k = 0; m; m &= m - 1, k++)
        if (v & m & -m)
            r |= 1ull << k;
    return r;
}

static uint64_t pdep(uint64_t v, uint64_t m)
{
    uint64_t r = 0;
    for (int k = 0; m; m &= m - 1, k++)
        if ((v >> k) & 1)
            r |= m & -m;
    return r;
}

H(h_bmi)
{
    int sz = i->osz == 8 ? 8 : 4;
    uint64_t mask = size_mask(sz);
    int op = i->op & 0xff, pp = i->pfx66 ? 1 : i->rep == 0xf3 ? 2 : i->rep == 0xf2 ? 3 : 0;
    if (i->vexl || !(c->cr0 & CR0_PE) || (c->eflags & F_VM))   /* no VEX in real or v8086 mode */
        raise_ud(c);
    uint64_t src = rm_read(c, i, sz), v = c->r[i->vvvv] & mask;
    if (i->op >= 0x500) {                          /* RORX: F2 0F3A F0 */
        if (pp != 3 || i->vvvv != 0)   /* RORX has no vvvv operand: its field must be 1111b */
            raise_ud(c);
        unsigned n = (unsigned)i->imm & (sz * 8 - 1);
        reg_set(c, i->reg, sz, n ? (src >> n) | (src << (sz * 8 - n)) : src);
        return;
    }
    switch (op << 4 | pp) {
    case 0xf20: {                                  /* ANDN reg = ~vvvv & r/m */
        uint64_t r = ~v & src & mask;
        reg_set(c, i->reg, sz, r);
        cc_flags(c, sz_flags(r, sz));
        return;
    }
    case 0xf30: {                                  /* group 17: BLSR, BLSMSK, BLSI into vvvv */
        uint64_t r;
        uint32_t f;
        switch (i->sub) {
        case 1: r = src & (src - 1); f = src ? 0 : F_CF; break;
        case 2: r = src ^ (src - 1); f = src ? 0 : F_CF; break;
        case 3: r = src & -src; f = src ? F_CF : 0; break;
        default: raise_ud(c);
        }
        r &= mask;
        reg_set(c, i->vvvv, sz, r);
        f |= sz_flags(r, sz);
        if (i->sub == 2)
            f &= ~F_ZF;   /* BLSMSK: ZF is always cleared */
        cc_flags(c, f);
        return;
    }
    case 0xf70: {                                  /* BEXTR reg = r/m[start, len) from vvvv */
        unsigned start = v & 0xff, len = (v >> 8) & 0xff;
        uint64_t r = start >= (unsigned)sz * 8 ? 0 : src >> start;
        if (len < 64)
            r &= (1ull << len) - 1;
        reg_set(c, i->reg, sz, r);
        cc_flags(c, r ? 0 : F_ZF);
        return;
    }
    case 0xf50: {                                  /* BZHI reg = r/m below bit vvvv[7:0] */
        unsigned n = v & 0xff;
        uint64_t r = src;
        if (n < (unsigned)sz * 8)
            r &= (1ull << n) - 1;
        reg_set(c, i->reg, sz, r);
        cc_flags(c, sz_flags(r, sz) | (n > (unsigned)sz * 8 - 1 ? F_CF : 0));
        return;
    }
    case 0xf52:                                    /* PEXT reg = vvvv gathered by mask r/m */
        reg_set(c, i->reg, sz, pext(v, src));
        return;
    case 0xf53:                                    /* PDEP */
        reg_set(c, i->reg, sz, pdep(v, src));
        return;
    case 0xf63: {                                  /* MULX reg:vvvv = rDX * r/m, no flags */
        uint64_t d = c->r[R_DX] & mask;
        unsigned __int128 p = (unsigned __int128)d * src;
        uint64_t lo = sz == 8 ? (uint64_t)p : (uint64_t)p & mask;
        uint64_t hi = sz == 8 ? (uint64_t)(p >> 64) : (uint64_t)(p >> 32) & mask;
        reg_set(c, i->vvvv, sz, lo);
        reg_set(c, i->reg, sz, hi);   /* the same register for both: the high half wins */
        return;
    }
    case 0xf71: case 0xf72: case 0xf73: {          /* SHLX (66), SARX (F3), SHRX (F2) */
        unsigned n = v & (sz * 8 - 1);
        uint64_t r = pp == 1 ? src << n : pp == 2 ? (uint64_t)(sext(src, sz) >> n) : src >> n;
        reg_set(c, i->reg, sz, r & mask);
        return;
    }
    }
    raise_ud(c);
}

/* F3 0F BC: TZCNT (CF: source zero, ZF: result zero); without F3 it is BSF. */
H(h_tzcnt)
{
    if (i->rep != 0xf3) {
        h_bsf(c, i);
        return;
    }
    int sz = i->osz;
    uint64_t v = rm_read(c, i, sz);
    uint64_t n = v ? (uint64_t)__builtin_ctzll(v) : (uint64_t)sz * 8;
    reg_set(c, i->reg, sz, n);
    cc_flags(c, (v ? 0 : F_CF) | (n ? 0 : F_ZF));
}
