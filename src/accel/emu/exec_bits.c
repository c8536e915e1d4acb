/* Shifts, rotates, double shifts, bit tests and scans, POPCNT, BSWAP. */
#include "accel/emu/exec.h"

/* One shift/rotate (grp2 sub-op kind) of a by cnt (already masked to 5 or 6 bits). */
static uint64_t shift_op(struct cpu *c, int kind, int sz, uint64_t a, unsigned cnt)
{
    int bits = sz * 8;
    uint64_t m = size_mask(sz), sb = sign_bit(sz), r;
    if (cnt == 0)
        return a;
    switch (kind) {
    case 0: case 1: {       /* ROL, ROR */
        unsigned n = cnt % bits;
        if (kind == 0)
            r = n ? ((a << n) | (a >> (bits - n))) & m : a;
        else
            r = n ? ((a >> n) | (a << (bits - n))) & m : a;
        cc_rotate(c, kind == 0 ? CC_ROL : CC_ROR, sz, r);
        return r;
    }
    case 2: case 3: {       /* RCL, RCR: rotate through CF, bits+1 wide */
        unsigned n = sz <= 2 ? cnt % (bits + 1) : cnt;
        uint32_t f = flags_arith(c);
        uint64_t cf = f & F_CF;
        bool of = false;
        r = a;
        if (kind == 3)
            of = !!(r & sb) ^ cf;
        for (unsigned k = 0; k < n; k++) {
            uint64_t out;
            if (kind == 2) {
                out = !!(r & sb);
                r = ((r << 1) | cf) & m;
            } else {
                out = r & 1;
                r = (r >> 1) | (cf ? sb : 0);
            }
            cf = out;
        }
        if (kind == 2)
            of = !!(r & sb) ^ cf;
        f &= ~(F_CF | F_OF);
        cc_flags(c, f | (cf ? F_CF : 0) | (of ? F_OF : 0));
        return r;
    }
    case 4: case 6:         /* SHL */
        r = (a << cnt) & m;
        if (cnt > 63)
            r = 0;
        cc_set(c, CC_SHL, sz, r, cnt - 1 < 64 ? a << (cnt - 1) : 0);
        return r;
    case 5:                 /* SHR */
        r = cnt < 64 ? a >> cnt : 0;
        cc_set(c, CC_SHR, sz, r, a >> (cnt - 1));
        c->cc_aux = a;
        return r;
    default: {              /* SAR */
        int64_t s = sext(a, sz);
        r = (uint64_t)(s >> cnt) & m;
        cc_set(c, CC_SAR, sz, r, (uint64_t)(s >> (cnt - 1)));
        return r;
    }
    }
}

static void shift_rm(struct cpu *c, const struct insn *i, unsigned cnt)
{
    int sz = i->osz;
    cnt &= sz == 8 ? 63 : 31;
    if (i->mod == 3) {
        /* even a zero count writes a 32-bit register, clearing its top half */
        reg_set(c, i->rm, sz, shift_op(c, i->sub, sz, reg_get(c, i->rm, sz), cnt));
        return;
    }
    uint64_t la = ea(c, i);
    uint64_t a = mem_rd(c, la, sz);
    if (cnt)
        mem_wr(c, la, sz, shift_op(c, i->sub, sz, a, cnt));
}

H(h_shift_i) { shift_rm(c, i, (unsigned)i->imm & 0xff); }
H(h_shift_1) { shift_rm(c, i, 1); }
H(h_shift_cl) { shift_rm(c, i, (unsigned)c->r[R_CX] & 0xff); }

static void dshift(struct cpu *c, const struct insn *i, unsigned cnt, bool left)
{
    int sz = i->osz, bits = sz * 8;
    cnt &= sz == 8 ? 63 : 31;
    if (!cnt) {
        if (i->mod == 3 && sz == 4)
            c->r[i->rm] = (uint32_t)c->r[i->rm];
        return;
    }
    uint64_t m = size_mask(sz), sb = sign_bit(sz);
    uint64_t src = reg_get(c, i->reg, sz);
    uint64_t la = 0, a;
    if (i->mod == 3) {
        a = reg_get(c, i->rm, sz);
    } else {
        la = ea(c, i);
        a = mem_rd(c, la, sz);
    }
    /* Widen to 128 bits so counts up to 63 need no special cases; 16-bit counts past 16 give
     * what the hardware leaves undefined. */
    unsigned __int128 v, r128;
    uint64_t r;
    bool cf;
    if (left) {
        v = ((unsigned __int128)a << bits) | src;
        r128 = v << cnt;
        r = (uint64_t)(r128 >> bits) & m;
        cf = (uint64_t)(v >> (2 * bits - cnt)) & 1;
    } else {
        v = ((unsigned __int128)src << bits) | a;
        r128 = v >> cnt;
        r = (uint64_t)r128 & m;
        cf = (uint64_t)(v >> (cnt - 1)) & 1;
    }
    cc_set(c, CC_LOGIC, sz, r, 0);
    uint32_t f = flags_arith(c) & ~(F_CF | F_OF);
    if (cf)
        f |= F_CF;
    if (!!(r & sb) ^ !!(a & sb))
        f |= F_OF;
    cc_flags(c, f);
    if (i->mod == 3)
        reg_set(c, i->rm, sz, r);
    else
        mem_wr(c, la, sz, r);
}

H(h_shld_i) { dshift(c, i, (unsigned)i->imm & 0xff, true); }
H(h_shld_cl) { dshift(c, i, (unsigned)c->r[R_CX] & 0xff, true); }
H(h_shrd_i) { dshift(c, i, (unsigned)i->imm & 0xff, false); }
H(h_shrd_cl) { dshift(c, i, (unsigned)c->r[R_CX] & 0xff, false); }

static const int bt_kind[4] = { RMW_CMP, RMW_BTS, RMW_BTR, RMW_BTC };

static void bt_common(struct cpu *c, const struct insn *i, int sub, int64_t off, bool reg_off)
{
    int sz = i->osz, bits = sz * 8;
    unsigned bit;
    if (i->mod == 3) {
        bit = (unsigned)off & (bits - 1);
        uint64_t a = reg_get(c, i->rm, sz);
        uint32_t f = flags_arith(c) & ~F_CF;
        cc_flags(c, f | (((a >> bit) & 1) ? F_CF : 0));
        if (sub) {
            uint64_t b = 1ull << bit;
            reg_set(c, i->rm, sz, sub == 1 ? a | b : sub == 2 ? a & ~b : a ^ b);
        }
        return;
    }
    uint64_t la = ea(c, i);
    if (reg_off) {
        int64_t so = sext((uint64_t)off, sz);
        la = (la + (uint64_t)((so >> (sz == 8 ? 6 : sz == 4 ? 5 : 4)) * sz)) & c->lin_mask;
    }
    bit = (unsigned)off & (bits - 1);
    if (!sub) {
        uint64_t a = mem_rd(c, la, sz);
        uint32_t f = flags_arith(c) & ~F_CF;
        cc_flags(c, f | (((a >> bit) & 1) ? F_CF : 0));
        return;
    }
    rmw_mem(c, la, i->lock, bt_kind[sub], sz, bit);
}

/* A3 BT, AB BTS, B3 BTR, BB BTC: bits 3-4 of the opcode give the sub-operation */
H(h_bt_rm_r)
{
    bt_common(c, i, ((i->op & 0xff) >> 3) & 3, (int64_t)reg_get(c, i->reg, i->osz), true);
}

H(h_bt_rm_i)
{
    int r = i->sub;
    if (r < 4)
        raise_ud(c);
    bt_common(c, i, r - 4, (int64_t)(i->imm & 0xff), false);
}

/* BSF/BSR: the lowest or highest set bit; a zero source sets ZF and leaves the register. */
static void bit_scan(struct cpu *c, const struct insn *i, bool reverse)
{
    int sz = i->osz;
    uint64_t v = rm_read(c, i, sz);
    uint32_t f = flags_arith(c) & ~F_ZF;
    if (!v) {
        cc_flags(c, f | F_ZF);
        return;
    }
    reg_set(c, i->reg, sz, (uint64_t)(reverse ? 63 - __builtin_clzll(v) : __builtin_ctzll(v)));
    cc_flags(c, f);
}

H(h_bsf) { bit_scan(c, i, false); }
H(h_bsr) { bit_scan(c, i, true); }

H(h_popcnt)
{
    if (i->rep != 0xf3)
        raise_ud(c);
    int sz = i->osz;
    uint64_t v = rm_read(c, i, sz);
    reg_set(c, i->reg, sz, (uint64_t)__builtin_popcountll(v));
    cc_flags(c, v ? 0 : F_ZF);
}

H(h_bswap)
{
    int sz = i->osz;
    if (sz == 8)
        c->r[i->rm] = __builtin_bswap64(c->r[i->rm]);
    else if (sz == 4)
        c->r[i->rm] = __builtin_bswap32((uint32_t)c->r[i->rm]);
    else
        reg_set(c, i->rm, 2, 0);   /* undefined on hardware; zero, as most CPUs do */
}
