/* SSE and SSE2 (and the MMX forms of the integer operations): one handler that decodes the
 * mandatory prefix and dispatches. Floating point runs on the host's float/double with the default
 * rounding; MXCSR exception flags are not recorded and exceptions stay masked. */
#include "accel/emu/exec.h"
#include "accel/emu/fpu_host.h"

#include <math.h>
#include <stdlib.h>


/* An MMX register is the low 64 bits of an x87 register (physical index), exponent all ones. */
void sse_mm_get(struct cpu *c, int r, union xmm *v)
{
    memset(v, 0, sizeof(*v));
    memcpy(v, &c->fpu.st[r & 7], 8);
}

void sse_mm_set(struct cpu *c, int r, const union xmm *v)
{
    uint8_t *p = (uint8_t *)&c->fpu.st[r & 7];
    memcpy(p, v, 8);
    p[8] = p[9] = 0xff;
    c->fpu.top = 0;
    c->fpu.ftw = 0xff;
}

/* The source operand: a register (xmm or mm), or n bytes of memory (aligned when align). */
void sse_src_get(struct cpu *c, const struct insn *i, bool mmx, int n, bool align, union xmm *v)
{
    if (i->mod == 3) {
        if (mmx)
            sse_mm_get(c, i->rm, v);
        else
            *v = c->xmm[i->rm];
        return;
    }
    uint64_t la = ea(c, i);
    if (align && (la & (n - 1)))
        raise_gp(c, 0);
    memset(v, 0, sizeof(*v));
    if (n == 16) {
        v->q[0] = mem_rd(c, la, 8);
        v->q[1] = mem_rd(c, (la + 8) & c->lin_mask, 8);
    } else {
        v->q[0] = mem_rd(c, la, n);
    }
}

void sse_mem_store(struct cpu *c, const struct insn *i, int n, bool align, const union xmm *v)
{
    uint64_t la = ea(c, i);
    if (align && (la & (n - 1)))
        raise_gp(c, 0);
    if (n == 16) {
        mem_wr_buf(c, la, v, 16);
    } else {
        mem_wr(c, la, n, v->q[0] & size_mask(n));
    }
}

void sse_dst_set(struct cpu *c, const struct insn *i, bool mmx, const union xmm *v)
{
    if (mmx)
        sse_mm_set(c, i->reg, v);
    else
        c->xmm[i->reg] = *v;
}

void sse_dst_get(struct cpu *c, const struct insn *i, bool mmx, union xmm *v)
{
    if (mmx)
        sse_mm_get(c, i->reg, v);
    else
        *v = c->xmm[i->reg];
}

/* The host's CVT(T)SD2SI; a float operand widens to double exactly. Rounding is the host's
 * MXCSR default, nearest-even, whatever the guest's MXCSR.RC says. */
static int32_t cvt_i32(double v, bool chop)
{
    return fpu_host_cvt_i32(v, chop);
}

static int64_t cvt_i64(double v, bool chop)
{
    return fpu_host_cvt_i64(v, chop);
}

static float fminx(float a, float b) { return a < b ? a : b; }
static float fmaxx(float a, float b) { return a > b ? a : b; }
static double dminx(double a, double b) { return a < b ? a : b; }
static double dmaxx(double a, double b) { return a > b ? a : b; }

/* Addition and multiplication through asm: the compiler may swap the operands of a
 * commutative operation, and with two NaNs x86 returns the first one (the destination). */
static float fadd_x(float a, float b) { __asm__("addss %1, %0" : "+x"(a) : "x"(b)); return a; }
static float fmul_x(float a, float b) { __asm__("mulss %1, %0" : "+x"(a) : "x"(b)); return a; }
static double dadd_x(double a, double b) { __asm__("addsd %1, %0" : "+x"(a) : "x"(b)); return a; }
static double dmul_x(double a, double b) { __asm__("mulsd %1, %0" : "+x"(a) : "x"(b)); return a; }

static float farith(int op, float a, float b)
{
    switch (op) {
    case 0x58: return fadd_x(a, b);
    case 0x59: return fmul_x(a, b);
    case 0x5c: return a - b;
    case 0x5d: return fminx(a, b);
    case 0x5e: return a / b;
    default: return fmaxx(a, b);
    }
}

static double darith(int op, double a, double b)
{
    switch (op) {
    case 0x58: return dadd_x(a, b);
    case 0x59: return dmul_x(a, b);
    case 0x5c: return a - b;
    case 0x5d: return dminx(a, b);
    case 0x5e: return a / b;
    default: return dmaxx(a, b);
    }
}

static bool fcmp_pred(int p, double a, double b)
{
    bool un = isnan(a) || isnan(b);
    switch (p & 7) {
    case 0: return !un && a == b;
    case 1: return !un && a < b;
    case 2: return !un && a <= b;
    case 3: return un;
    case 4: return un || a != b;
    case 5: return un || !(a < b);
    case 6: return un || !(a <= b);
    default: return !un;
    }
}

static void comis(struct cpu *c, double a, double b)
{
    uint32_t f = 0;
    if (isnan(a) || isnan(b))
        f = F_ZF | F_PF | F_CF;
    else if (a < b)
        f = F_CF;
    else if (a == b)
        f = F_ZF;
    cc_flags(c, f);
}

/* Saturations */
static int8_t sat8(int v) { return (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v); }
static uint8_t satu8(int v) { return (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v); }
static int16_t sat16(int v) { return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v); }
static uint16_t satu16(int v) { return (uint16_t)(v > 65535 ? 65535 : v < 0 ? 0 : v); }

/* Shift of each lane by count (>= lane width: zero, or sign fill for arithmetic shifts). */
static void pshift(union xmm *d, int n, int lane, int kind, uint64_t cnt)
{
    int lanes = n / lane, bits = lane * 8;
    for (int k = 0; k < lanes; k++) {
        uint64_t v;
        switch (lane) {
        case 2: v = d->w[k]; break;
        case 4: v = d->d[k]; break;
        default: v = d->q[k]; break;
        }
        uint64_t r;
        if (kind == 0)        /* logical right */
            r = cnt >= (uint64_t)bits ? 0 : v >> cnt;
        else if (kind == 1)   /* arithmetic right */
            r = (uint64_t)(sext(v, lane) >> (cnt >= (uint64_t)bits ? bits - 1 : (int)cnt));
        else                  /* left */
            r = cnt >= (uint64_t)bits ? 0 : v << cnt;
        switch (lane) {
        case 2: d->w[k] = (uint16_t)r; break;
        case 4: d->d[k] = (uint32_t)r; break;
        default: d->q[k] = r; break;
        }
    }
}

/* Integer operations 0F 60-6F, 74-76, D1-FE on n bytes (8 for MMX, 16 for SSE2). Returns false
 * for an opcode that is not one. */
static bool pint(int op, union xmm *d, const union xmm *s, int n)
{
    union xmm r = *d;
    int k;
    switch (op) {
    case 0x60: case 0x61: case 0x62: case 0x6c: case 0x68: case 0x69: case 0x6a: case 0x6d: {
        int lane = (op == 0x60 || op == 0x68) ? 1 : (op == 0x61 || op == 0x69) ? 2 : (op == 0x62 || op == 0x6a) ? 4 : 8;
        bool high = op >= 0x68 && op != 0x6c;
        int half = n / 2, cnt = half / lane;
        int h = high ? half / lane : 0;
        /* one loop per lane width: glibc's memset and friends broadcast bytes with these, and
         * memcpy of a variable lane size costs a rep movsb per element */
        switch (lane) {
        case 1: for (k = 0; k < cnt; k++) { r.b[2 * k] = d->b[h + k]; r.b[2 * k + 1] = s->b[h + k]; } break;
        case 2: for (k = 0; k < cnt; k++) { r.w[2 * k] = d->w[h + k]; r.w[2 * k + 1] = s->w[h + k]; } break;
        case 4: for (k = 0; k < cnt; k++) { r.d[2 * k] = d->d[h + k]; r.d[2 * k + 1] = s->d[h + k]; } break;
        default: for (k = 0; k < cnt; k++) { r.q[2 * k] = d->q[h + k]; r.q[2 * k + 1] = s->q[h + k]; } break;
        }
        break;
    }
    case 0x63: case 0x67:      /* PACKSSWB, PACKUSWB */
        for (k = 0; k < n; k++) {
            int v = k < n / 2 ? d->sw[k] : s->sw[k - n / 2];
            r.b[k] = op == 0x63 ? (uint8_t)sat8(v) : satu8(v);
        }
        break;
    case 0x6b:                 /* PACKSSDW */
        for (k = 0; k < n / 2; k++) {
            int v = k < n / 4 ? d->sd[k] : s->sd[k - n / 4];
            r.w[k] = (uint16_t)sat16(v);
        }
        break;
    case 0x64: for (k = 0; k < n; k++) r.b[k] = d->sb[k] > s->sb[k] ? 0xff : 0; break;
    case 0x65: for (k = 0; k < n / 2; k++) r.w[k] = d->sw[k] > s->sw[k] ? 0xffff : 0; break;
    case 0x66: for (k = 0; k < n / 4; k++) r.d[k] = d->sd[k] > s->sd[k] ? ~0u : 0; break;
    case 0x74: for (k = 0; k < n; k++) r.b[k] = d->b[k] == s->b[k] ? 0xff : 0; break;
    case 0x75: for (k = 0; k < n / 2; k++) r.w[k] = d->w[k] == s->w[k] ? 0xffff : 0; break;
    case 0x76: for (k = 0; k < n / 4; k++) r.d[k] = d->d[k] == s->d[k] ? ~0u : 0; break;
    case 0xd1: case 0xd2: case 0xd3: pshift(&r, n, op == 0xd1 ? 2 : op == 0xd2 ? 4 : 8, 0, s->q[0]); break;
    case 0xe1: case 0xe2: pshift(&r, n, op == 0xe1 ? 2 : 4, 1, s->q[0]); break;
    case 0xf1: case 0xf2: case 0xf3: pshift(&r, n, op == 0xf1 ? 2 : op == 0xf2 ? 4 : 8, 2, s->q[0]); break;
    case 0xd4: for (k = 0; k < n / 8; k++) r.q[k] = d->q[k] + s->q[k]; break;
    case 0xfb: for (k = 0; k < n / 8; k++) r.q[k] = d->q[k] - s->q[k]; break;
    case 0xd5: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)(d->sw[k] * s->sw[k]); break;
    case 0xe5: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)((d->sw[k] * s->sw[k]) >> 16); break;
    case 0xe4: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)(((uint32_t)d->w[k] * s->w[k]) >> 16); break;
    case 0xd8: for (k = 0; k < n; k++) r.b[k] = satu8(d->b[k] - s->b[k]); break;
    case 0xd9: for (k = 0; k < n / 2; k++) r.w[k] = satu16(d->w[k] - s->w[k]); break;
    case 0xdc: for (k = 0; k < n; k++) r.b[k] = satu8(d->b[k] + s->b[k]); break;
    case 0xdd: for (k = 0; k < n / 2; k++) r.w[k] = satu16(d->w[k] + s->w[k]); break;
    case 0xe8: for (k = 0; k < n; k++) r.b[k] = (uint8_t)sat8(d->sb[k] - s->sb[k]); break;
    case 0xe9: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)sat16(d->sw[k] - s->sw[k]); break;
    case 0xec: for (k = 0; k < n; k++) r.b[k] = (uint8_t)sat8(d->sb[k] + s->sb[k]); break;
    case 0xed: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)sat16(d->sw[k] + s->sw[k]); break;
    case 0xda: for (k = 0; k < n; k++) r.b[k] = d->b[k] < s->b[k] ? d->b[k] : s->b[k]; break;
    case 0xde: for (k = 0; k < n; k++) r.b[k] = d->b[k] > s->b[k] ? d->b[k] : s->b[k]; break;
    case 0xea: for (k = 0; k < n / 2; k++) r.sw[k] = d->sw[k] < s->sw[k] ? d->sw[k] : s->sw[k]; break;
    case 0xee: for (k = 0; k < n / 2; k++) r.sw[k] = d->sw[k] > s->sw[k] ? d->sw[k] : s->sw[k]; break;
    case 0xdb: for (k = 0; k < n / 8; k++) r.q[k] = d->q[k] & s->q[k]; break;
    case 0xdf: for (k = 0; k < n / 8; k++) r.q[k] = ~d->q[k] & s->q[k]; break;
    case 0xeb: for (k = 0; k < n / 8; k++) r.q[k] = d->q[k] | s->q[k]; break;
    case 0xef: for (k = 0; k < n / 8; k++) r.q[k] = d->q[k] ^ s->q[k]; break;
    case 0xe0: for (k = 0; k < n; k++) r.b[k] = (uint8_t)((d->b[k] + s->b[k] + 1) >> 1); break;
    case 0xe3: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)((d->w[k] + s->w[k] + 1) >> 1); break;
    case 0xf4: for (k = 0; k < n / 8; k++) r.q[k] = (uint64_t)d->d[2 * k] * s->d[2 * k]; break;
    case 0xf5:
        for (k = 0; k < n / 4; k++)
            r.d[k] = (uint32_t)(d->sw[2 * k] * s->sw[2 * k] + d->sw[2 * k + 1] * s->sw[2 * k + 1]);
        break;
    case 0xf6:
        for (k = 0; k < n / 8; k++) {
            unsigned sum = 0;
            for (int j = 0; j < 8; j++)
                sum += (unsigned)abs(d->b[8 * k + j] - s->b[8 * k + j]);
            r.q[k] = sum;
        }
        break;
    case 0xf8: for (k = 0; k < n; k++) r.b[k] = (uint8_t)(d->b[k] - s->b[k]); break;
    case 0xf9: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)(d->w[k] - s->w[k]); break;
    case 0xfa: for (k = 0; k < n / 4; k++) r.d[k] = d->d[k] - s->d[k]; break;
    case 0xfc: for (k = 0; k < n; k++) r.b[k] = (uint8_t)(d->b[k] + s->b[k]); break;
    case 0xfd: for (k = 0; k < n / 2; k++) r.w[k] = (uint16_t)(d->w[k] + s->w[k]); break;
    case 0xfe: for (k = 0; k < n / 4; k++) r.d[k] = d->d[k] + s->d[k]; break;
    default: return false;
    }
    *d = r;
    return true;
}

/* 0F 10-17, 28-2F, 50-5F, C2, C6: moves, arithmetic, conversions of packed/scalar floats. */
static bool sse_float(struct cpu *c, const struct insn *i, int op, int p)
{
    union xmm s, d;
    int k;
    union xmm *x = &c->xmm[i->reg];
    switch (op) {
    case 0x10: case 0x11: {
        int n = p == P_F3 ? 4 : p == P_F2 ? 8 : 16;
        if (op == 0x11) {
            if (i->mod == 3) {
                union xmm *dr = &c->xmm[i->rm];
                memcpy(dr, x, n);
            } else {
                sse_mem_store(c, i, n, false, x);
            }
            return true;
        }
        if (i->mod == 3)
            memcpy(x, &c->xmm[i->rm], n);
        else {
            sse_src_get(c, i, false, n, false, &s);
            *x = s;   /* scalar loads from memory clear the rest */
        }
        return true;
    }
    case 0x12: case 0x13: case 0x16: case 0x17: {
        if (p == P_F3 || p == P_F2)
            return false;
        int half = (op == 0x16 || op == 0x17) ? 1 : 0;
        if (op == 0x13 || op == 0x17) {
            if (i->mod == 3)
                return false;
            union xmm t = { .q = { x->q[half], 0 } };
            sse_mem_store(c, i, 8, false, &t);
            return true;
        }
        if (i->mod == 3) {
            if (p != P_NONE)
                return false;
            x->q[half] = c->xmm[i->rm].q[half ? 0 : 1];   /* MOVLHPS / MOVHLPS */
        } else {
            sse_src_get(c, i, false, 8, false, &s);
            x->q[half] = s.q[0];
        }
        return true;
    }
    case 0x14: case 0x15:
        sse_src_get(c, i, false, 16, true, &s);
        d = *x;
        if (p == P_66) {
            x->q[0] = op == 0x14 ? d.q[0] : d.q[1];
            x->q[1] = op == 0x14 ? s.q[0] : s.q[1];
        } else {
            int b = op == 0x14 ? 0 : 2;
            x->d[0] = d.d[b];
            x->d[1] = s.d[b];
            x->d[2] = d.d[b + 1];
            x->d[3] = s.d[b + 1];
        }
        return true;
    case 0x28: case 0x29: case 0x2b:
        if (p == P_F3 || p == P_F2)
            return false;
        if (op == 0x28) {
            sse_src_get(c, i, false, 16, true, &s);
            *x = s;
        } else if (i->mod == 3) {
            if (op == 0x2b)
                return false;
            c->xmm[i->rm] = *x;
        } else {
            sse_mem_store(c, i, 16, true, x);
        }
        return true;
    case 0x2a:
        if (p == P_F3 || p == P_F2) {
            int64_t v = (int64_t)sext(i->mod == 3 ? reg_get(c, i->rm, i->osz == 8 ? 8 : 4)
                                                  : mem_rd(c, ea(c, i), i->osz == 8 ? 8 : 4),
                                      i->osz == 8 ? 8 : 4);
            if (p == P_F3)
                x->f[0] = (float)v;
            else
                x->fd[0] = (double)v;
            return true;
        }
        sse_src_get(c, i, true, 8, false, &s);    /* CVTPI2PS/PD from an MMX register or m64 */
        if (p == P_66) {
            x->fd[0] = s.sd[0];
            x->fd[1] = s.sd[1];
        } else {
            x->f[0] = (float)s.sd[0];
            x->f[1] = (float)s.sd[1];
        }
        return true;
    case 0x2c: case 0x2d: {
        bool trunc = op == 0x2c;
        if (p == P_F3 || p == P_F2) {
            sse_src_get(c, i, false, p == P_F3 ? 4 : 8, false, &s);
            double v = p == P_F3 ? s.f[0] : s.fd[0];
            if (i->osz == 8)
                c->r[i->reg] = (uint64_t)cvt_i64(v, trunc);
            else
                c->r[i->reg] = (uint32_t)cvt_i32(v, trunc);
            return true;
        }
        sse_src_get(c, i, false, p == P_66 ? 16 : 8, p == P_66, &s);
        union xmm r = { 0 };
        r.sd[0] = cvt_i32(p == P_66 ? s.fd[0] : s.f[0], trunc);
        r.sd[1] = cvt_i32(p == P_66 ? s.fd[1] : s.f[1], trunc);
        sse_mm_set(c, i->reg, &r);
        return true;
    }
    case 0x2e: case 0x2f:
        if (p == P_66) {
            sse_src_get(c, i, false, 8, false, &s);
            comis(c, x->fd[0], s.fd[0]);
        } else if (p == P_NONE) {
            sse_src_get(c, i, false, 4, false, &s);
            comis(c, x->f[0], s.f[0]);
        } else {
            return false;
        }
        return true;
    case 0x50:
        if (i->mod != 3 || p == P_F3 || p == P_F2)
            return false;
        s = c->xmm[i->rm];
        c->r[i->reg] = p == P_66 ? ((s.q[0] >> 63) | ((s.q[1] >> 63) << 1))
                                 : ((s.d[0] >> 31) | ((s.d[1] >> 31) << 1) | ((s.d[2] >> 31) << 2) |
                                    ((s.d[3] >> 31) << 3));
        return true;
    case 0x51: case 0x52: case 0x53:
        sse_src_get(c, i, false, p == P_F3 ? 4 : p == P_F2 ? 8 : 16, p == P_NONE || p == P_66, &s);
        if (p == P_F2 || p == P_66) {
            if (op != 0x51)
                return false;
            for (k = 0; k < (p == P_F2 ? 1 : 2); k++)
                x->fd[k] = fpu_host_sqrt(s.fd[k]);
        } else {
            for (k = 0; k < (p == P_F3 ? 1 : 4); k++)
                x->f[k] = op == 0x51 ? fpu_host_sqrtf(s.f[k]) : op == 0x52 ? 1.0f / fpu_host_sqrtf(s.f[k]) : 1.0f / s.f[k];
        }
        return true;
    case 0x54: case 0x55: case 0x56: case 0x57:
        if (p == P_F3 || p == P_F2)
            return false;
        sse_src_get(c, i, false, 16, true, &s);
        for (k = 0; k < 2; k++) {
            uint64_t a = x->q[k], b = s.q[k];
            x->q[k] = op == 0x54 ? a & b : op == 0x55 ? ~a & b : op == 0x56 ? a | b : a ^ b;
        }
        return true;
    case 0x58: case 0x59: case 0x5c: case 0x5d: case 0x5e: case 0x5f:
        sse_src_get(c, i, false, p == P_F3 ? 4 : p == P_F2 ? 8 : 16, p == P_NONE || p == P_66, &s);
        if (p == P_66 || p == P_F2) {
            for (k = 0; k < (p == P_F2 ? 1 : 2); k++)
                x->fd[k] = darith(op, x->fd[k], s.fd[k]);
        } else {
            for (k = 0; k < (p == P_F3 ? 1 : 4); k++)
                x->f[k] = farith(op, x->f[k], s.f[k]);
        }
        return true;
    case 0x5a:
        switch (p) {
        case P_NONE:
            sse_src_get(c, i, false, 8, false, &s);
            x->fd[0] = s.f[0];
            x->fd[1] = s.f[1];
            break;
        case P_66:
            sse_src_get(c, i, false, 16, true, &s);
            x->f[0] = (float)s.fd[0];
            x->f[1] = (float)s.fd[1];
            x->q[1] = 0;
            break;
        case P_F3:
            sse_src_get(c, i, false, 4, false, &s);
            x->fd[0] = s.f[0];
            break;
        default:
            sse_src_get(c, i, false, 8, false, &s);
            x->f[0] = (float)s.fd[0];
            break;
        }
        return true;
    case 0x5b:
        if (p == P_F2)
            return false;
        sse_src_get(c, i, false, 16, true, &s);
        for (k = 0; k < 4; k++) {
            if (p == P_NONE)
                x->f[k] = (float)s.sd[k];
            else
                x->sd[k] = cvt_i32(s.f[k], p == P_F3);
        }
        return true;
    case 0xc2: {
        int pred = (int)(i->imm & 7);
        sse_src_get(c, i, false, p == P_F3 ? 4 : p == P_F2 ? 8 : 16, p == P_NONE || p == P_66, &s);
        if (p == P_66 || p == P_F2) {
            for (k = 0; k < (p == P_F2 ? 1 : 2); k++)
                x->q[k] = fcmp_pred(pred, x->fd[k], s.fd[k]) ? ~0ull : 0;
        } else {
            for (k = 0; k < (p == P_F3 ? 1 : 4); k++)
                x->d[k] = fcmp_pred(pred, x->f[k], s.f[k]) ? ~0u : 0;
        }
        return true;
    }
    case 0xc6: {
        if (p == P_F3 || p == P_F2)
            return false;
        sse_src_get(c, i, false, 16, true, &s);
        d = *x;
        unsigned imm = (unsigned)i->imm;
        if (p == P_66) {
            x->q[0] = d.q[imm & 1];
            x->q[1] = s.q[(imm >> 1) & 1];
        } else {
            x->d[0] = d.d[imm & 3];
            x->d[1] = d.d[(imm >> 2) & 3];
            x->d[2] = s.d[(imm >> 4) & 3];
            x->d[3] = s.d[(imm >> 6) & 3];
        }
        return true;
    }
    }
    return false;
}

/* 0F 6E-7F, 70-73, C4, C5, D6, D7, E6, E7, F7 and the integer ops of pint(). */
static bool sse_int(struct cpu *c, const struct insn *i, int op, int p)
{
    bool mmx = p == P_NONE;
    int n = mmx ? 8 : 16;
    union xmm s, d;
    switch (op) {
    case 0x6e:                         /* MOVD/MOVQ xmm/mm, r/m */
        if (p == P_F3 || p == P_F2)
            return false;
        memset(&d, 0, sizeof(d));
        d.q[0] = rm_read(c, i, i->osz == 8 ? 8 : 4);
        sse_dst_set(c, i, mmx, &d);
        return true;
    case 0x7e:
        if (p == P_F3) {               /* MOVQ xmm, xmm/m64 */
            sse_src_get(c, i, false, 8, false, &s);
            s.q[1] = 0;
            c->xmm[i->reg] = s;
            return true;
        }
        if (p == P_F2)
            return false;
        sse_dst_get(c, i, mmx, &d);
        rm_write(c, i, i->osz == 8 ? 8 : 4, d.q[0]);
        return true;
    case 0x6f:
        if (p == P_F2)
            return false;
        sse_src_get(c, i, mmx, n, p == P_66, &s);
        sse_dst_set(c, i, mmx, &s);
        return true;
    case 0x7f: case 0xe7:
        if (p == P_F2 || (op == 0xe7 && p == P_F3))
            return false;
        sse_dst_get(c, i, mmx, &d);
        if (i->mod == 3) {
            if (op == 0xe7)
                return false;
            if (mmx)
                sse_mm_set(c, i->rm, &d);
            else
                c->xmm[i->rm] = d;
        } else {
            sse_mem_store(c, i, n, p == P_66 || op == 0xe7, &d);
        }
        return true;
    case 0xd6:                         /* MOVQ xmm/m64, xmm */
        if (p != P_66)
            return false;
        d = c->xmm[i->reg];
        if (i->mod == 3) {
            c->xmm[i->rm].q[0] = d.q[0];
            c->xmm[i->rm].q[1] = 0;
        } else {
            sse_mem_store(c, i, 8, false, &d);
        }
        return true;
    case 0x70: {   /* PSHUFHW/LW's m128 must be aligned too (exception type 4, as PSHUFD) */
        sse_src_get(c, i, mmx, n, !mmx, &s);
        unsigned imm = (unsigned)i->imm;
        union xmm r = s;
        if (p == P_66) {
            for (int k = 0; k < 4; k++)
                r.d[k] = s.d[(imm >> (2 * k)) & 3];
        } else if (p == P_F3) {
            for (int k = 0; k < 4; k++)
                r.w[4 + k] = s.w[4 + ((imm >> (2 * k)) & 3)];
        } else {                       /* PSHUFLW, PSHUFW */
            for (int k = 0; k < 4; k++)
                r.w[k] = s.w[(imm >> (2 * k)) & 3];
        }
        sse_dst_set(c, i, mmx, &r);
        return true;
    }
    case 0x71: case 0x72: case 0x73: {
        if (i->mod != 3 || p == P_F3 || p == P_F2)
            return false;
        union xmm r;
        if (mmx)
            sse_mm_get(c, i->rm, &r);
        else
            r = c->xmm[i->rm];
        int lane = op == 0x71 ? 2 : op == 0x72 ? 4 : 8;
        unsigned cnt = (unsigned)(i->imm & 0xff);
        switch (i->sub) {
        case 2: pshift(&r, n, lane, 0, cnt); break;
        case 4: if (op == 0x73) return false; pshift(&r, n, lane, 1, cnt); break;
        case 6: pshift(&r, n, lane, 2, cnt); break;
        case 3: case 7: {              /* PSRLDQ, PSLLDQ: bytes */
            if (op != 0x73 || mmx)
                return false;
            union xmm t = { 0 };
            if (cnt < 16) {
                if (i->sub == 3)
                    memcpy(t.b, r.b + cnt, 16 - cnt);
                else
                    memcpy(t.b + cnt, r.b, 16 - cnt);
            }
            r = t;
            break;
        }
        default: return false;
        }
        if (mmx)
            sse_mm_set(c, i->rm, &r);
        else
            c->xmm[i->rm] = r;
        return true;
    }
    case 0xc4: {
        if (p == P_F3 || p == P_F2)
            return false;
        uint16_t v = (uint16_t)(i->mod == 3 ? reg_get(c, i->rm, 4) : mem_rd(c, ea(c, i), 2));
        sse_dst_get(c, i, mmx, &d);
        d.w[i->imm & (mmx ? 3 : 7)] = v;
        sse_dst_set(c, i, mmx, &d);
        return true;
    }
    case 0xc5:
        if (i->mod != 3 || p == P_F3 || p == P_F2)
            return false;
        if (mmx)
            sse_mm_get(c, i->rm, &s);
        else
            s = c->xmm[i->rm];
        c->r[i->reg] = s.w[i->imm & (mmx ? 3 : 7)];
        return true;
    case 0xd7:
        if (i->mod != 3 || p == P_F3 || p == P_F2)
            return false;
        if (mmx)
            sse_mm_get(c, i->rm, &s);
        else
            s = c->xmm[i->rm];
        {
            uint32_t m = 0;
            for (int k = 0; k < n; k++)
                m |= (uint32_t)(s.b[k] >> 7) << k;
            c->r[i->reg] = m;
        }
        return true;
    case 0xe6: {
        if (p == P_NONE)
            return false;
        union xmm r = { 0 };
        if (p == P_F3) {               /* CVTDQ2PD */
            sse_src_get(c, i, false, 8, false, &s);
            r.fd[0] = s.sd[0];
            r.fd[1] = s.sd[1];
        } else {                       /* CVTTPD2DQ (66), CVTPD2DQ (F2) */
            sse_src_get(c, i, false, 16, true, &s);
            r.sd[0] = cvt_i32(s.fd[0], p == P_66);
            r.sd[1] = cvt_i32(s.fd[1], p == P_66);
        }
        c->xmm[i->reg] = r;
        return true;
    }
    case 0xf7: {                       /* MASKMOVQ / MASKMOVDQU: byte stores to [rDI] */
        if (i->mod != 3 || p == P_F3 || p == P_F2)
            return false;
        union xmm m;
        sse_dst_get(c, i, mmx, &d);
        if (mmx)
            sse_mm_get(c, i->rm, &m);
        else
            m = c->xmm[i->rm];
        uint64_t base = seg_lin(c, i->seg, reg_get(c, R_DI, i->asz));
        for (int k = 0; k < n; k++)
            if (m.b[k] & 0x80)
                mem_wr(c, (base + k) & c->lin_mask, 1, d.b[k]);
        return true;
    }
    }
    if (p == P_F3 || p == P_F2)
        return false;
    if (mmx && (op == 0x6c || op == 0x6d))
        return false;
    sse_dst_get(c, i, mmx, &d);
    sse_src_get(c, i, mmx, n, !mmx, &s);
    if (!pint(op, &d, &s, n))
        return false;
    sse_dst_set(c, i, mmx, &d);
    return true;
}

bool sse_dispatch(struct cpu *c, const struct insn *i, int p)
{
    int op = i->op & 0xff;
    if (i->op == 0x344 || i->op == 0x3df || (i->op >= 0x2db && i->op <= 0x2df))
        return aes_exec(c, i, p);
    if ((i->op & 0xf00) >= 0x200)
        return sse4_exec(c, i, p);
    if (sse3_exec(c, i, op, p))
        return true;
    if ((op >= 0x10 && op <= 0x17) || (op >= 0x28 && op <= 0x2f) || (op >= 0x50 && op <= 0x5f) ||
        op == 0xc2 || op == 0xc6)
        return sse_float(c, i, op, p);
    return sse_int(c, i, op, p);
}

H(h_sse)
{
    int p = i->rep == 0xf3 ? P_F3 : i->rep == 0xf2 ? P_F2 : i->pfx66 ? P_66 : P_NONE;
    if (c->cr0 & CR0_TS)
        raise_exc(c, EXC_NM);
    if ((c->cr0 & CR0_EM) || !(c->cr4 & CR4_OSFXSR))
        raise_ud(c);
    if (!sse_dispatch(c, i, p)) {
        emu_log_unimp(c, "unimplemented SSE opcode (0f xx, 0f 38 xx as 2xx, 0f 3a xx as 3xx; prefix in bits 12-13)",
                      (unsigned)(i->op | (p << 12)));
        raise_ud(c);
    }
}
