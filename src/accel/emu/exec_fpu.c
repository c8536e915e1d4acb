/* x87 floating point on the host's 80-bit long double: the same format, so loads, stores and the
 * basic arithmetic give the hardware's results. Exceptions are always masked (the flags are
 * recorded, #MF is never raised), and precision control is ignored (full 64-bit mantissa) except
 * by the D9 F0-FF group, which the host's own instructions run (fpu_host.c) under the guest's
 * control word. */
#include "accel/emu/exec.h"
#include "accel/emu/fpu_host.h"

#include <math.h>

#define FSW_IE 0x1
#define FSW_ZE 0x4
#define FSW_SF 0x40
#define FSW_C0 0x100
#define FSW_C1 0x200
#define FSW_C2 0x400
#define FSW_C3 0x4000

void fpu_reset(struct fpu *f)
{
    memset(f, 0, sizeof(*f));
    f->fcw = 0x37f;
}

static inline long double *st(struct cpu *c, int i)
{
    return &c->fpu.st[(c->fpu.top + i) & 7];
}

static inline bool st_valid(struct cpu *c, int i)
{
    return (c->fpu.ftw >> ((c->fpu.top + i) & 7)) & 1;
}

static void fpush(struct cpu *c, long double v)
{
    struct fpu *f = &c->fpu;
    f->top = (f->top - 1) & 7;
    if ((f->ftw >> f->top) & 1) {
        f->fsw |= FSW_IE | FSW_SF | FSW_C1;   /* stack overflow: the result is the default NaN */
        v = -NAN;
    }
    f->st[f->top] = v;
    f->ftw |= 1 << f->top;
}

static void fpop(struct cpu *c)
{
    struct fpu *f = &c->fpu;
    f->ftw &= ~(1 << f->top);
    f->top = (f->top + 1) & 7;
}

static inline uint16_t fsw_get(struct cpu *c)
{
    return (uint16_t)((c->fpu.fsw & ~0x3800) | (c->fpu.top << 11));
}

static long double round_rc(struct cpu *c, long double v)
{
    return fpu_host_rint(v, (c->fpu.fcw >> 10) & 3);
}

/* Integer conversion: out of range (or NaN) gives the "integer indefinite" and IE. */
static int64_t to_int(struct cpu *c, long double v, int bytes, bool trunc)
{
    long double r = trunc ? fpu_host_rint(v, 3) : round_rc(c, v);
    long double lim = bytes == 8 ? 9223372036854775808.0L : bytes == 4 ? 2147483648.0L : 32768.0L;
    if (!(r >= -lim && r < lim)) {
        c->fpu.fsw |= FSW_IE;
        return bytes == 8 ? INT64_MIN : bytes == 4 ? INT32_MIN : INT16_MIN;
    }
    return (int64_t)r;
}

static long double ld_mem(struct cpu *c, uint64_t la, int kind)
{
    switch (kind) {
    case 0: { uint32_t v = (uint32_t)mem_rd(c, la, 4); float f; memcpy(&f, &v, 4); return f; }
    case 1: { int32_t v = (int32_t)mem_rd(c, la, 4); return v; }
    case 2: { uint64_t v = mem_rd(c, la, 8); double d; memcpy(&d, &v, 8); return d; }
    default: { int16_t v = (int16_t)mem_rd(c, la, 2); return v; }
    }
}

static void compare(struct cpu *c, long double a, long double b, bool eflags)
{
    uint32_t f = 0;
    if (isnan(a) || isnan(b))
        f = FSW_C0 | FSW_C2 | FSW_C3;
    else if (a < b)
        f = FSW_C0;
    else if (a == b)
        f = FSW_C3;
    if (eflags) {
        uint32_t fl = flags_arith(c) & ~(F_ZF | F_PF | F_CF | F_OF | F_SF | F_AF);
        if (f & FSW_C0) fl |= F_CF;
        if (f & FSW_C2) fl |= F_PF;
        if (f & FSW_C3) fl |= F_ZF;
        cc_flags(c, fl);
    } else {
        c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~(FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3)) | f);
    }
}

static long double arith(struct cpu *c, int op, long double a, long double b)
{
    switch (op) {
    case 0: return a + b;
    case 1: return a * b;
    case 4: return a - b;
    case 5: return b - a;
    case 6: if (b == 0 && !isnan(a)) c->fpu.fsw |= FSW_ZE; return a / b;
    default: if (a == 0 && !isnan(b)) c->fpu.fsw |= FSW_ZE; return b / a;
    }
}

static uint16_t ftw_full(struct cpu *c)
{
    uint16_t t = 0;
    for (int r = 0; r < 8; r++) {
        int tag;
        if (!((c->fpu.ftw >> r) & 1))
            tag = 3;
        else if (c->fpu.st[r] == 0)
            tag = 1;
        else if (!isfinite(c->fpu.st[r]))
            tag = 2;
        else
            tag = 0;
        t |= (uint16_t)(tag << (2 * r));
    }
    return t;
}

/* FNSTENV/FLDENV in the 32-bit protected-mode layout (28 bytes). */
static void store_env(struct cpu *c, uint64_t la)
{
    uint8_t env[28] = { 0 };
    uint32_t v[7] = { c->fpu.fcw, fsw_get(c), ftw_full(c), (uint32_t)c->fpu.fip, 0,
                      (uint32_t)c->fpu.fdp, 0 };
    memcpy(env, v, 28);
    mem_wr_buf(c, la, env, 28);
}

static void load_env(struct cpu *c, uint64_t la)
{
    uint32_t v[7];
    mem_rd_buf(c, la, v, 28);
    c->fpu.fcw = (uint16_t)v[0];
    c->fpu.fsw = (uint16_t)v[1];
    c->fpu.top = (v[1] >> 11) & 7;
    c->fpu.ftw = 0;
    for (int r = 0; r < 8; r++)
        if (((v[2] >> (2 * r)) & 3) != 3)
            c->fpu.ftw |= 1 << r;
}

static void fpu_mem(struct cpu *c, const struct insn *i)
{
    unsigned op = i->op & 7, sub = i->sub;
    uint64_t la = ea(c, i);
    c->fpu.fdp = la;
    switch (op) {
    case 0: case 2: case 4: case 6: {    /* D8 m32fp, DA m32int, DC m64fp, DE m16int */
        static const int kinds[4] = { 0, 1, 2, 3 };
        long double v = ld_mem(c, la, kinds[op / 2]);
        if (sub == 2 || sub == 3) {
            compare(c, *st(c, 0), v, false);
            if (sub == 3)
                fpop(c);
        } else {
            *st(c, 0) = arith(c, (int)sub, *st(c, 0), v);
        }
        return;
    }
    case 1:                              /* D9 */
        switch (sub) {
        case 0: fpush(c, ld_mem(c, la, 0)); return;
        case 2: case 3: {
            float f = (float)*st(c, 0);
            uint32_t v;
            memcpy(&v, &f, 4);
            mem_wr(c, la, 4, v);
            if (sub == 3)
                fpop(c);
            return;
        }
        case 4: load_env(c, la); return;
        case 5: c->fpu.fcw = (uint16_t)mem_rd(c, la, 2); return;
        case 6: store_env(c, la); c->fpu.fcw |= 0x3f; return;
        case 7: mem_wr(c, la, 2, c->fpu.fcw); return;
        }
        break;
    case 3:                              /* DB */
        switch (sub) {
        case 0: fpush(c, ld_mem(c, la, 1)); return;
        case 1: case 2: case 3:
            mem_wr(c, la, 4, (uint32_t)to_int(c, *st(c, 0), 4, sub == 1));
            if (sub != 2)
                fpop(c);
            return;
        case 5: {
            long double v = 0;
            mem_rd_buf(c, la, &v, 10);
            fpush(c, v);
            return;
        }
        case 7:
            mem_wr_buf(c, la, st(c, 0), 10);
            fpop(c);
            return;
        }
        break;
    case 5:                              /* DD */
        switch (sub) {
        case 0: fpush(c, ld_mem(c, la, 2)); return;
        case 1: case 2: case 3: {
            if (sub == 1) {
                mem_wr(c, la, 8, (uint64_t)to_int(c, *st(c, 0), 8, true));
            } else {
                double d = (double)*st(c, 0);
                uint64_t v;
                memcpy(&v, &d, 8);
                mem_wr(c, la, 8, v);
            }
            if (sub != 2)
                fpop(c);
            return;
        }
        case 4:                          /* FRSTOR */
            load_env(c, la);
            for (int k = 0; k < 8; k++)
                mem_rd_buf(c, la + 28 + 10 * k, st(c, k), 10);
            return;
        case 6:                          /* FNSAVE */
            store_env(c, la);
            for (int k = 0; k < 8; k++)
                mem_wr_buf(c, la + 28 + 10 * k, st(c, k), 10);
            fpu_reset(&c->fpu);
            return;
        case 7: mem_wr(c, la, 2, fsw_get(c)); return;
        }
        break;
    case 7:                              /* DF */
        switch (sub) {
        case 0: fpush(c, ld_mem(c, la, 3)); return;
        case 1: case 2: case 3:
            mem_wr(c, la, 2, (uint16_t)to_int(c, *st(c, 0), 2, sub == 1));
            if (sub != 2)
                fpop(c);
            return;
        case 5: fpush(c, (long double)(int64_t)mem_rd(c, la, 8)); return;
        case 7:
            mem_wr(c, la, 8, (uint64_t)to_int(c, *st(c, 0), 8, false));
            fpop(c);
            return;
        }
        break;
    }
    emu_log_unimp(c, "unimplemented x87 memory form", (i->op & 0xff) << 3 | sub);
    raise_ud(c);
}

/* The biased exponent of an 80-bit value (bits 64-78); 0 with a nonzero mantissa is a denormal. */
static unsigned fpu_exponent(long double v)
{
    uint16_t se;
    memcpy(&se, (const uint8_t *)&v + 8, 2);
    return se & 0x7fff;
}

static void fxam(struct cpu *c)
{
    long double v = *st(c, 0);
    uint32_t f;
    if (!st_valid(c, 0))
        f = FSW_C3 | FSW_C0;
    else if (isnan(v))
        f = FSW_C0;
    else if (isinf(v))
        f = FSW_C2 | FSW_C0;
    else if (v == 0)
        f = FSW_C3;
    else if (fpu_exponent(v) == 0)   /* not fpclassify: at -Os it is a call into libm */
        f = FSW_C3 | FSW_C2;
    else
        f = FSW_C2;
    if (signbit(v))
        f |= FSW_C1;
    c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~(FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3)) | f);
}

/* Condition codes that each D9 F0-FF instruction defines (the rest are left as they were):
 * C1 is the round-up bit, C2 "argument out of range" for the trigonometric ones and "reduction
 * incomplete" for FPREM/FPREM1, whose C0 C3 C1 are quotient bits 2 0 1. */
static uint16_t d9_host_cc(unsigned b)
{
    switch (b) {
    case 0xf2: case 0xfb: case 0xfe: case 0xff: return FSW_C1 | FSW_C2;
    case 0xf5: case 0xf8: return FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3;
    default: return FSW_C1;
    }
}

static void fpu_d9_host(struct cpu *c, unsigned b)
{
    struct fpu_host_out o;
    uint16_t cc = d9_host_cc(b);
    fpu_host_d9(b, c->fpu.fcw, *st(c, 0), *st(c, 1), &o);
    c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~cc) | (o.fsw & (cc | 0x3f)));
    if (o.push < 0) {
        fpop(c);
        *st(c, 0) = o.st0;
    } else if (o.push > 0) {
        *st(c, 0) = o.st1;
        fpush(c, o.st0);
    } else {
        *st(c, 0) = o.st0;
    }
}

static void fpu_d9_reg(struct cpu *c, unsigned b)
{
    long double *s0 = st(c, 0);
    switch (b) {
    case 0xd0: return;
    case 0xe0: *s0 = -*s0; return;
    case 0xe1: *s0 = fabsl(*s0); return;
    case 0xe4: compare(c, *s0, 0, false); return;
    case 0xe5: fxam(c); return;
    case 0xe8: fpush(c, 1.0L); return;
    case 0xe9: fpush(c, 3.321928094887362347870319429489390175864831393L); return;
    case 0xea: fpush(c, 1.442695040888963407359924681001892137426645954L); return;
    case 0xeb: fpush(c, 3.141592653589793238462643383279502884197169399L); return;
    case 0xec: fpush(c, 0.301029995663981195213738894724493026768189881L); return;
    case 0xed: fpush(c, 0.693147180559945309417232121458176568075500134L); return;
    case 0xee: fpush(c, 0.0L); return;
    case 0xf6: c->fpu.top = (c->fpu.top - 1) & 7; return;
    case 0xf7: c->fpu.top = (c->fpu.top + 1) & 7; return;
    default: if (b >= 0xf0) { fpu_d9_host(c, b); return; } break;
    }
    emu_log_unimp(c, "unimplemented x87 opcode d9", b);
    raise_ud(c);
}

static void fpu_reg(struct cpu *c, const struct insn *i)
{
    unsigned op = i->op & 7, sub = i->sub, r = i->rm & 7, b = 0xc0 | (sub << 3) | r;
    switch (op) {
    case 0:                              /* D8: st0 = st0 op st(i) */
        if (sub == 2 || sub == 3) {
            compare(c, *st(c, 0), *st(c, (int)r), false);
            if (sub == 3)
                fpop(c);
        } else {
            *st(c, 0) = arith(c, (int)sub, *st(c, 0), *st(c, (int)r));
        }
        return;
    case 4: case 6: {                    /* DC/DE: st(i) = st(i) op st0 (SUB/DIV reversed) */
        if (op == 6 && b == 0xd9) {
            compare(c, *st(c, 0), *st(c, 1), false);
            fpop(c);
            fpop(c);
            return;
        }
        if (sub == 2 || sub == 3) {
            compare(c, *st(c, 0), *st(c, (int)r), false);
            if (sub == 3 || op == 6)
                fpop(c);
            return;
        }
        static const int swap[8] = { 0, 1, 2, 3, 5, 4, 7, 6 };
        *st(c, (int)r) = arith(c, swap[sub], *st(c, (int)r), *st(c, 0));
        if (op == 6)
            fpop(c);
        return;
    }
    case 1:                              /* D9 */
        if (sub == 0) {
            fpush(c, *st(c, (int)r));
            return;
        }
        if (sub == 1) {
            long double t = *st(c, 0);
            *st(c, 0) = *st(c, (int)r);
            *st(c, (int)r) = t;
            return;
        }
        fpu_d9_reg(c, b);
        return;
    case 2: case 3:                      /* DA/DB: FCMOVcc, FUCOMPP, FNCLEX, FNINIT, FCOMI */
        if (sub < 4) {
            static const int cc[4] = { 2, 4, 6, 10 };   /* B, E, BE, P */
            bool cond = cond_eval(c, cc[sub]);
            if (op == 3)
                cond = !cond;
            if (cond)
                *st(c, 0) = *st(c, (int)r);
            return;
        }
        if (op == 2 && b == 0xe9) {
            compare(c, *st(c, 0), *st(c, 1), false);
            fpop(c);
            fpop(c);
            return;
        }
        if (op == 3 && b == 0xe2) {
            c->fpu.fsw &= 0x7f00;
            return;
        }
        if (op == 3 && b == 0xe3) {
            fpu_reset(&c->fpu);
            return;
        }
        if (op == 3 && (sub == 5 || sub == 6)) {
            compare(c, *st(c, 0), *st(c, (int)r), true);
            return;
        }
        break;
    case 5:                              /* DD */
        switch (sub) {
        case 0: c->fpu.ftw &= ~(1 << ((c->fpu.top + r) & 7)); return;
        case 2: *st(c, (int)r) = *st(c, 0); return;
        case 3: *st(c, (int)r) = *st(c, 0); fpop(c); return;
        case 4: case 5:
            compare(c, *st(c, 0), *st(c, (int)r), false);
            if (sub == 5)
                fpop(c);
            return;
        }
        break;
    case 7:                              /* DF */
        if (b == 0xe0) {
            reg_set(c, R_AX, 2, fsw_get(c));
            return;
        }
        if (sub == 5 || sub == 6) {
            compare(c, *st(c, 0), *st(c, (int)r), true);
            fpop(c);
            return;
        }
        break;
    }
    emu_log_unimp(c, "unimplemented x87 opcode", ((i->op & 0xff) << 8) | b);
    raise_ud(c);
}

H(h_fpu)
{
    if (c->cr0 & (CR0_EM | CR0_TS))
        raise_exc(c, EXC_NM);
    if (i->mod == 3)
        fpu_reg(c, i);
    else
        fpu_mem(c, i);
    c->fpu.fip = c->rip - i->len;
    c->fpu.fop = (uint16_t)(((i->op & 7) << 8));
}

void fpu_fxsave(struct cpu *c, uint8_t *area)
{
    memset(area, 0, 512);
    uint16_t w[4] = { c->fpu.fcw, fsw_get(c), (uint16_t)(c->fpu.ftw & 0xff), c->fpu.fop };
    memcpy(area, w, 8);
    /* abridged tag: one bit per physical register, as ftw already is */
    memcpy(area + 8, &c->fpu.fip, 8);
    memcpy(area + 16, &c->fpu.fdp, 8);
    memcpy(area + 24, &c->mxcsr, 4);
    uint32_t mask = 0xffbf;
    memcpy(area + 28, &mask, 4);
    for (int k = 0; k < 8; k++)
        memcpy(area + 32 + 16 * k, st(c, k), 10);
    memcpy(area + 160, c->xmm, 256);
}

void fpu_fxrstor(struct cpu *c, const uint8_t *area)
{
    uint16_t w[4];
    memcpy(w, area, 8);
    c->fpu.fcw = w[0];
    c->fpu.fsw = w[1];
    c->fpu.top = (w[1] >> 11) & 7;
    c->fpu.ftw = w[2] & 0xff;
    c->fpu.fop = w[3];
    memcpy(&c->fpu.fip, area + 8, 8);
    memcpy(&c->fpu.fdp, area + 16, 8);
    memcpy(&c->mxcsr, area + 24, 4);
    for (int k = 0; k < 8; k++) {
        long double v = 0;
        memcpy(&v, area + 32 + 16 * k, 10);
        *st(c, k) = v;
    }
    memcpy(c->xmm, area + 160, 256);
}
