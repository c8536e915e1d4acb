/* SSE3, SSSE3, SSE4.1 and SSE4.2 (the x86-64-v2 level above SSE2), CRC32 and MOVBE. h_sse hands
 * over the SSE3 opcodes of the 0F map and everything in the 0F 38 and 0F 3A maps. Legacy (non-VEX)
 * encodings: a 16-byte memory operand must be aligned except for LDDQU, the string compares and
 * the MMX forms; the narrower loads of PMOVSX/ZX, ROUNDSS/SD, PINSR* and INSERTPS need not be. */
#include "accel/emu/exec.h"
#include "accel/emu/fpu_host.h"

#include <math.h>
#include <stdlib.h>

static int16_t sat16(int v) { return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v); }
static uint16_t satu16(int v) { return (uint16_t)(v > 65535 ? 65535 : v < 0 ? 0 : v); }

/* a op b with x86's NaN rule: a NaN operand comes back quietened, the first one when both are
 * (C's a + b lets the compiler swap the operands, and the host then picks the other NaN). */
static float fop(float a, float b, char op)
{
    if (isnan(a) || isnan(b))
        return isnan(a) ? a + a : b + b;
    return op == '+' ? a + b : op == '-' ? a - b : a * b;
}

static double dop(double a, double b, char op)
{
    if (isnan(a) || isnan(b))
        return isnan(a) ? a + a : b + b;
    return op == '+' ? a + b : op == '-' ? a - b : a * b;
}

/* --- SSE3 in the 0F map --- */
bool sse3_exec(struct cpu *c, const struct insn *i, int op, int p)
{
    union xmm *x = &c->xmm[i->reg], s, d = *x;
    int k;
    switch (op) {
    case 0x12: case 0x16:
        if (p == P_F2 && op == 0x12) {             /* MOVDDUP xmm, xmm/m64 */
            sse_src_get(c, i, false, 8, false, &s);
            x->q[0] = x->q[1] = s.q[0];
            return true;
        }
        if (p != P_F3)
            return false;
        sse_src_get(c, i, false, 16, true, &s);    /* MOVSLDUP, MOVSHDUP */
        for (k = 0; k < 4; k += 2)
            x->d[k] = x->d[k + 1] = s.d[k + (op == 0x16)];
        return true;
    case 0x7c: case 0x7d:                          /* HADDPD/HSUBPD (66), HADDPS/HSUBPS (F2) */
        if (p != P_66 && p != P_F2)
            return false;
        sse_src_get(c, i, false, 16, true, &s);
        char o = op == 0x7c ? '+' : '-';
        if (p == P_66) {
            x->fd[0] = dop(d.fd[0], d.fd[1], o);
            x->fd[1] = dop(s.fd[0], s.fd[1], o);
        } else {
            for (k = 0; k < 2; k++) {
                x->f[k] = fop(d.f[2 * k], d.f[2 * k + 1], o);
                x->f[k + 2] = fop(s.f[2 * k], s.f[2 * k + 1], o);
            }
        }
        return true;
    case 0xd0:                                     /* ADDSUBPD (66), ADDSUBPS (F2) */
        if (p != P_66 && p != P_F2)
            return false;
        sse_src_get(c, i, false, 16, true, &s);
        if (p == P_66) {
            x->fd[0] = dop(d.fd[0], s.fd[0], '-');
            x->fd[1] = dop(d.fd[1], s.fd[1], '+');
        } else {
            for (k = 0; k < 4; k++)
                x->f[k] = fop(d.f[k], s.f[k], (k & 1) ? '+' : '-');
        }
        return true;
    case 0xf0:                                     /* LDDQU: unaligned, memory only */
        if (p != P_F2)
            return false;
        if (i->mod == 3)
            raise_ud(c);
        sse_src_get(c, i, false, 16, false, x);
        return true;
    }
    return false;
}

/* --- SSSE3: 0F 38 00-0B, 1C-1E and 0F 3A 0F on n bytes (8: MMX, 16: XMM) --- */
static bool ssse3_op(int op, union xmm *d, const union xmm *s, int n)
{
    union xmm r = { 0 };
    int k, h = n / 2;
    switch (op) {
    case 0x00:                                     /* PSHUFB */
        for (k = 0; k < n; k++)
            r.b[k] = (s->b[k] & 0x80) ? 0 : d->b[s->b[k] & (n - 1)];
        break;
    case 0x01: case 0x03: case 0x05: case 0x07:    /* PHADDW, PHADDSW, PHSUBW, PHSUBSW */
        for (k = 0; k < h; k++) {
            const int16_t *v = k < h / 2 ? d->sw : s->sw;
            int j = 2 * (k % (h / 2));
            int sum = op <= 0x03 ? v[j] + v[j + 1] : v[j] - v[j + 1];
            r.sw[k] = (op == 0x03 || op == 0x07) ? sat16(sum) : (int16_t)sum;
        }
        break;
    case 0x02: case 0x06:                          /* PHADDD, PHSUBD */
        for (k = 0; k < n / 4; k++) {
            const uint32_t *v = k < n / 8 ? d->d : s->d;
            int j = 2 * (k % (n / 8));
            r.d[k] = op == 0x02 ? v[j] + v[j + 1] : v[j] - v[j + 1];
        }
        break;
    case 0x04:                                     /* PMADDUBSW: unsigned d times signed s */
        for (k = 0; k < h; k++)
            r.sw[k] = sat16(d->b[2 * k] * s->sb[2 * k] + d->b[2 * k + 1] * s->sb[2 * k + 1]);
        break;
    case 0x08:                                     /* PSIGNB/W/D */
        for (k = 0; k < n; k++)
            r.b[k] = s->sb[k] < 0 ? (uint8_t)-d->b[k] : s->sb[k] ? d->b[k] : 0;
        break;
    case 0x09:
        for (k = 0; k < h; k++)
            r.w[k] = s->sw[k] < 0 ? (uint16_t)-d->w[k] : s->sw[k] ? d->w[k] : 0;
        break;
    case 0x0a:
        for (k = 0; k < n / 4; k++)
            r.d[k] = s->sd[k] < 0 ? -d->d[k] : s->sd[k] ? d->d[k] : 0;
        break;
    case 0x0b:                                     /* PMULHRSW */
        for (k = 0; k < h; k++)
            r.w[k] = (uint16_t)((((d->sw[k] * s->sw[k]) >> 14) + 1) >> 1);
        break;
    case 0x1c:                                     /* PABSB/W/D */
        for (k = 0; k < n; k++)
            r.b[k] = (uint8_t)abs(s->sb[k]);
        break;
    case 0x1d:
        for (k = 0; k < h; k++)
            r.w[k] = (uint16_t)abs(s->sw[k]);
        break;
    case 0x1e:
        for (k = 0; k < n / 4; k++)
            r.d[k] = s->sd[k] < 0 ? -s->d[k] : s->d[k];
        break;
    default:
        return false;
    }
    *d = r;
    return true;
}

/* PALIGNR: the pair d:s (d high) shifted right by imm bytes, the low n bytes kept. */
static void palignr(union xmm *d, const union xmm *s, unsigned imm, int n)
{
    uint8_t cat[64] = { 0 };
    memcpy(cat, s->b, n);
    memcpy(cat + n, d->b, n);
    union xmm r = { 0 };
    if (imm < 2u * n)
        memcpy(r.b, cat + imm, n);
    *d = r;
}

/* --- SSE4.1 rounding: imm bits 1:0 the mode, bit 2 "use MXCSR.RC" --- */
static double round_mode(struct cpu *c, double v, unsigned imm)
{
    unsigned rc = (imm & 4) ? (c->mxcsr >> 13) & 3 : imm & 3;
    return (double)fpu_host_rint(v, rc);   /* x87 FRNDINT: ROUNDSD needs SSE4.1 on the host */
}

/* A NaN comes back quietened with its payload, as hardware does (v + v quietens a signalling
 * NaN and keeps the payload); anything else goes through round_mode. */
static float round_f32(struct cpu *c, float v, unsigned imm)
{
    return isnan(v) ? v + v : (float)round_mode(c, v, imm);
}

static double round_f64(struct cpu *c, double v, unsigned imm)
{
    return isnan(v) ? v + v : round_mode(c, v, imm);
}

/* --- SSE4.2 string compares (PCMPESTRI/M, PCMPISTRI/M) --- */
static int elem(const union xmm *v, int k, unsigned fmt)
{
    switch (fmt) {
    case 0: return v->b[k];
    case 1: return v->w[k];
    case 2: return v->sb[k];
    default: return v->sw[k];
    }
}

/* Explicit length from RAX/EAX: its absolute value, saturated to the element count n. */
static int str_len_explicit(struct cpu *c, int reg, bool w, int n)
{
    int64_t v = w ? (int64_t)c->r[reg] : (int64_t)(int32_t)c->r[reg];
    if (v < -n || v > n)
        return n;
    return (int)(v < 0 ? -v : v);
}

static int str_len_implicit(const union xmm *v, int n, unsigned fmt)
{
    for (int k = 0; k < n; k++)
        if (elem(v, k, fmt) == 0)
            return k;
    return n;
}

static void pcmpstr(struct cpu *c, const struct insn *i, int op)
{
    unsigned imm = (unsigned)i->imm & 0xff, fmt = imm & 3, agg = (imm >> 2) & 3, pol = (imm >> 4) & 3;
    int n = (fmt & 1) ? 8 : 16;
    union xmm a = c->xmm[i->reg], b;
    sse_src_get(c, i, false, 16, false, &b);   /* the string instructions take unaligned memory */
    bool explicit_len = op == 0x60 || op == 0x61;
    bool w = i->rex & 8;
    int la = explicit_len ? str_len_explicit(c, R_AX, w, n) : str_len_implicit(&a, n, fmt);
    int lb = explicit_len ? str_len_explicit(c, R_DX, w, n) : str_len_implicit(&b, n, fmt);
    uint32_t res = 0;
    for (int j = 0; j < n; j++) {
        bool bit;
        bool bv = j < lb;
        int bj = elem(&b, j, fmt);
        switch (agg) {
        case 0:                                    /* equal any */
            bit = false;
            for (int k = 0; k < la && bv; k++)
                bit = bit || elem(&a, k, fmt) == bj;
            break;
        case 1:                                    /* ranges: a holds [lo, hi] pairs */
            bit = false;
            for (int k = 0; k + 1 < n && bv; k += 2) {
                bool ge = k < la && elem(&a, k, fmt) <= bj;
                bool le = k + 1 < la && bj <= elem(&a, k + 1, fmt);
                bit = bit || (ge && le);
            }
            break;
        case 2: {                                  /* equal each */
            bool av = j < la;
            bit = (!av && !bv) || (av && bv && elem(&a, j, fmt) == bj);
            break;
        }
        default:                                   /* equal ordered: a is a substring at j */
            bit = true;
            for (int k = 0; k < n - j && bit; k++) {
                if (k >= la)
                    break;                         /* an invalid a element matches anything */
                if (j + k >= lb)
                    bit = false;
                else
                    bit = elem(&a, k, fmt) == elem(&b, j + k, fmt);
            }
            break;
        }
        res |= (uint32_t)bit << j;
    }
    uint32_t all = (1u << n) - 1;
    if (pol == 1)
        res ^= all;
    else if (pol == 3)
        res ^= (1u << lb) - 1;
    res &= all;
    if (op == 0x61 || op == 0x63) {
        int idx = n;
        if (res)
            idx = (imm & 0x40) ? 31 - __builtin_clz(res) : __builtin_ctz(res);
        c->r[R_CX] = (uint32_t)idx;
    } else {
        union xmm m = { 0 };
        if (imm & 0x40) {
            for (int j = 0; j < n; j++)
                if ((res >> j) & 1) {
                    if (n == 16)
                        m.b[j] = 0xff;
                    else
                        m.w[j] = 0xffff;
                }
        } else {
            m.d[0] = res;
        }
        c->xmm[0] = m;
    }
    cc_flags(c, (res ? F_CF : 0) | (lb < n ? F_ZF : 0) | (la < n ? F_SF : 0) | ((res & 1) ? F_OF : 0));
}

/* --- the 0F 38 map --- */
static bool map38(struct cpu *c, const struct insn *i, int op, int p)
{
    union xmm *x = &c->xmm[i->reg], s, d;
    int k;
    if (op <= 0x0b || (op >= 0x1c && op <= 0x1e)) {
        if (p != P_NONE && p != P_66)
            return false;
        bool mmx = p == P_NONE;
        sse_dst_get(c, i, mmx, &d);
        sse_src_get(c, i, mmx, mmx ? 8 : 16, !mmx, &s);
        if (!ssse3_op(op, &d, &s, mmx ? 8 : 16))
            return false;
        sse_dst_set(c, i, mmx, &d);
        return true;
    }
    if (p != P_66)
        return false;
    if ((op >= 0x20 && op <= 0x25) || (op >= 0x30 && op <= 0x35)) {   /* PMOVSX/PMOVZX */
        static const uint8_t from[6] = { 1, 1, 1, 2, 2, 4 }, to[6] = { 2, 4, 8, 4, 8, 8 };
        int f = from[op & 7], t = to[op & 7];
        bool sx = op < 0x30;
        int cnt = 16 / t;
        sse_src_get(c, i, false, cnt * f, false, &s);
        union xmm r = { 0 };
        for (k = 0; k < cnt; k++) {
            uint64_t v = 0;
            memcpy(&v, s.b + k * f, f);
            if (sx)
                v = (uint64_t)sext(v, f);
            memcpy(r.b + k * t, &v, t);
        }
        *x = r;
        return true;
    }
    if (op == 0x2a) {                              /* MOVNTDQA: memory only, aligned */
        if (i->mod == 3)
            return false;
        sse_src_get(c, i, false, 16, true, x);
        return true;
    }
    sse_src_get(c, i, false, 16, true, &s);
    d = *x;
    union xmm m = c->xmm[0];
    switch (op) {
    case 0x10:                                     /* PBLENDVB, BLENDVPS, BLENDVPD: mask in XMM0 */
        for (k = 0; k < 16; k++)
            if (m.b[k] & 0x80)
                x->b[k] = s.b[k];
        break;
    case 0x14:
        for (k = 0; k < 4; k++)
            if (m.d[k] >> 31)
                x->d[k] = s.d[k];
        break;
    case 0x15:
        for (k = 0; k < 2; k++)
            if (m.q[k] >> 63)
                x->q[k] = s.q[k];
        break;
    case 0x17: {                                   /* PTEST */
        bool zf = !((d.q[0] & s.q[0]) | (d.q[1] & s.q[1]));
        bool cf = !((~d.q[0] & s.q[0]) | (~d.q[1] & s.q[1]));
        cc_flags(c, (zf ? F_ZF : 0) | (cf ? F_CF : 0));
        break;
    }
    case 0x28:                                     /* PMULDQ */
        for (k = 0; k < 2; k++)
            x->sq[k] = (int64_t)d.sd[2 * k] * s.sd[2 * k];
        break;
    case 0x29:                                     /* PCMPEQQ */
        for (k = 0; k < 2; k++)
            x->q[k] = d.q[k] == s.q[k] ? ~0ull : 0;
        break;
    case 0x2b:                                     /* PACKUSDW */
        for (k = 0; k < 4; k++) {
            x->w[k] = satu16(d.sd[k]);
            x->w[k + 4] = satu16(s.sd[k]);
        }
        break;
    case 0x37:                                     /* PCMPGTQ */
        for (k = 0; k < 2; k++)
            x->q[k] = d.sq[k] > s.sq[k] ? ~0ull : 0;
        break;
    case 0x38: for (k = 0; k < 16; k++) x->sb[k] = d.sb[k] < s.sb[k] ? d.sb[k] : s.sb[k]; break;
    case 0x39: for (k = 0; k < 4; k++) x->sd[k] = d.sd[k] < s.sd[k] ? d.sd[k] : s.sd[k]; break;
    case 0x3a: for (k = 0; k < 8; k++) x->w[k] = d.w[k] < s.w[k] ? d.w[k] : s.w[k]; break;
    case 0x3b: for (k = 0; k < 4; k++) x->d[k] = d.d[k] < s.d[k] ? d.d[k] : s.d[k]; break;
    case 0x3c: for (k = 0; k < 16; k++) x->sb[k] = d.sb[k] > s.sb[k] ? d.sb[k] : s.sb[k]; break;
    case 0x3d: for (k = 0; k < 4; k++) x->sd[k] = d.sd[k] > s.sd[k] ? d.sd[k] : s.sd[k]; break;
    case 0x3e: for (k = 0; k < 8; k++) x->w[k] = d.w[k] > s.w[k] ? d.w[k] : s.w[k]; break;
    case 0x3f: for (k = 0; k < 4; k++) x->d[k] = d.d[k] > s.d[k] ? d.d[k] : s.d[k]; break;
    case 0x40: for (k = 0; k < 4; k++) x->d[k] = (uint32_t)((int64_t)d.sd[k] * s.sd[k]); break;
    case 0x41: {                                   /* PHMINPOSUW: the first smallest word */
        int at = 0;
        for (k = 1; k < 8; k++)
            if (s.w[k] < s.w[at])
                at = k;
        union xmm r = { 0 };
        r.w[0] = s.w[at];
        r.w[1] = (uint16_t)at;
        *x = r;
        break;
    }
    default:
        return false;
    }
    return true;
}

/* --- the 0F 3A map (all take imm8) --- */
static bool map3a(struct cpu *c, const struct insn *i, int op, int p)
{
    union xmm *x = &c->xmm[i->reg], s, d = *x;
    unsigned imm = (unsigned)i->imm & 0xff;
    int k;
    if (op == 0x0f) {                              /* PALIGNR, MMX and XMM */
        if (p != P_NONE && p != P_66)
            return false;
        bool mmx = p == P_NONE;
        sse_dst_get(c, i, mmx, &d);
        sse_src_get(c, i, mmx, mmx ? 8 : 16, !mmx, &s);
        palignr(&d, &s, imm, mmx ? 8 : 16);
        sse_dst_set(c, i, mmx, &d);
        return true;
    }
    if (p != P_66)
        return false;
    switch (op) {
    case 0x14: case 0x15: case 0x16: case 0x17: { /* PEXTRB/W/D/Q, EXTRACTPS to r/m */
        int sz = op == 0x14 ? 1 : op == 0x15 ? 2 : (op == 0x16 && (i->rex & 8)) ? 8 : 4;
        uint64_t v = 0;
        memcpy(&v, d.b + (imm & (16 / sz - 1)) * sz, sz);
        if (i->mod == 3)
            c->r[i->rm] = v;   /* a register destination is zero-extended to 64 bits */
        else
            mem_wr(c, ea(c, i), sz, v);
        return true;
    }
    case 0x20: case 0x22: {                        /* PINSRB, PINSRD/Q */
        int sz = op == 0x20 ? 1 : (i->rex & 8) ? 8 : 4;
        uint64_t v = i->mod == 3 ? c->r[i->rm] : mem_rd(c, ea(c, i), sz);
        memcpy(x->b + (imm & (16 / sz - 1)) * sz, &v, sz);
        return true;
    }
    case 0x21: {                                   /* INSERTPS */
        uint32_t v;
        if (i->mod == 3)
            v = c->xmm[i->rm].d[imm >> 6];
        else
            v = (uint32_t)mem_rd(c, ea(c, i), 4);
        x->d[(imm >> 4) & 3] = v;
        for (k = 0; k < 4; k++)
            if ((imm >> k) & 1)
                x->d[k] = 0;
        return true;
    }
    case 0x0a: case 0x0b:                          /* ROUNDSS, ROUNDSD */
        sse_src_get(c, i, false, op == 0x0a ? 4 : 8, false, &s);
        if (op == 0x0a)
            x->f[0] = round_f32(c, s.f[0], imm);
        else
            x->fd[0] = round_f64(c, s.fd[0], imm);
        return true;
    case 0x60: case 0x61: case 0x62: case 0x63:
        pcmpstr(c, i, op);
        return true;
    }
    sse_src_get(c, i, false, 16, true, &s);
    switch (op) {
    case 0x08:                                     /* ROUNDPS, ROUNDPD */
        for (k = 0; k < 4; k++)
            x->f[k] = round_f32(c, s.f[k], imm);
        break;
    case 0x09:
        for (k = 0; k < 2; k++)
            x->fd[k] = round_f64(c, s.fd[k], imm);
        break;
    case 0x0c:                                     /* BLENDPS, BLENDPD, PBLENDW */
        for (k = 0; k < 4; k++)
            if ((imm >> k) & 1)
                x->d[k] = s.d[k];
        break;
    case 0x0d:
        for (k = 0; k < 2; k++)
            if ((imm >> k) & 1)
                x->q[k] = s.q[k];
        break;
    case 0x0e:
        for (k = 0; k < 8; k++)
            if ((imm >> k) & 1)
                x->w[k] = s.w[k];
        break;
    case 0x40: {                                   /* DPPS: products in float, summed pairwise */
        float t[4];
        for (k = 0; k < 4; k++)
            t[k] = ((imm >> (4 + k)) & 1) ? fop(d.f[k], s.f[k], '*') : 0.0f;
        float sum = fop(fop(t[0], t[1], '+'), fop(t[2], t[3], '+'), '+');
        for (k = 0; k < 4; k++)
            x->f[k] = ((imm >> k) & 1) ? sum : 0.0f;
        break;
    }
    case 0x41: {                                   /* DPPD */
        double t0 = (imm & 0x10) ? dop(d.fd[0], s.fd[0], '*') : 0.0;
        double t1 = (imm & 0x20) ? dop(d.fd[1], s.fd[1], '*') : 0.0;
        double sum = dop(t0, t1, '+');
        for (k = 0; k < 2; k++)
            x->fd[k] = ((imm >> k) & 1) ? sum : 0.0;
        break;
    }
    case 0x42: {                                   /* MPSADBW */
        int sb = (imm & 3) * 4, db = ((imm >> 2) & 1) * 4;
        for (k = 0; k < 8; k++) {
            int sum = 0;
            for (int j = 0; j < 4; j++)
                sum += abs(d.b[db + k + j] - s.b[sb + j]);
            x->w[k] = (uint16_t)sum;
        }
        break;
    }
    default:
        return false;
    }
    return true;
}

bool sse4_exec(struct cpu *c, const struct insn *i, int p)
{
    int op = i->op & 0xff;
    return (i->op >> 8) == 2 ? map38(c, i, op, p) : map3a(c, i, op, p);
}

/* --- CRC32 (F2 0F 38 F0/F1) and MOVBE (0F 38 F0/F1) --- */
static uint32_t crc32c(uint32_t crc, uint64_t v, int n)
{
    for (int k = 0; k < n; k++) {
        crc ^= (uint8_t)(v >> (8 * k));
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82f63b78u & -(crc & 1));
    }
    return crc;
}

H(h_crc32_movbe)
{
    bool load = (i->op & 0xff) == 0xf0;
    if (i->rep == 0xf2) {
        int n = load ? 1 : i->osz;
        uint64_t v = rm_read(c, i, n);
        c->r[i->reg] = crc32c((uint32_t)c->r[i->reg], v, n);   /* 32 or 64-bit: zero-extended */
        return;
    }
    if (i->mod == 3 || i->rep)
        raise_ud(c);
    int sz = i->osz;
    uint64_t v = load ? mem_rd(c, ea(c, i), sz) : reg_get(c, i->reg, sz);
    v = sz == 8 ? __builtin_bswap64(v) : sz == 4 ? __builtin_bswap32((uint32_t)v) : __builtin_bswap16((uint16_t)v);
    if (load)
        reg_set(c, i->reg, sz, v);
    else
        mem_wr(c, ea(c, i), sz, v);
}
