/* AVX, AVX2, FMA3 and F16C: the VEX-encoded vector instructions (VEX maps 0F, 0F38, 0F3A with
 * the 66/F3/F2 "pp" field as mandatory prefix). Most of them are an SSE instruction with a
 * third operand and a second 128-bit lane: those run the SSE code of exec_sse*.c on scratch
 * registers (xmm[16] the destination-and-first-source, xmm[17] the second source), once per
 * lane, so both encodings share one meaning. The rest (broadcasts, permutes across lanes,
 * masked moves, variable shifts, the wider conversions) are here. A VEX.128 form zeroes bits
 * 255:128 of its destination, a legacy SSE form leaves them (c->ymmh).
 *
 * #UD unless CR4.OSXSAVE and XCR0 enable SSE and AVX state; AVX2, FMA and F16C instructions
 * also #UD when the -cpu model does not report them. FMA and F16C run the host's own
 * instructions (one rounding, the hardware's NaN choice): qkvm offers them where the host has
 * them, like every instruction the differential tests compare. */
#include "accel/emu/exec.h"
#include "accel/emu/fpu_host.h"

#include <cpuid.h>
#include <math.h>

#define SD 16   /* scratch: destination and first source */
/* VEX.W (in 32-bit code too, where it does not make operands 64-bit) */
#define VEX_W(i) (((i)->rex & 8) != 0)
#define SS 17   /* scratch: second source */

static const union xmm zero;

/* Destination r gets lo, and hi (NULL: zeros, the VEX.128 rule) */
static void vset(struct cpu *c, int r, const union xmm *lo, const union xmm *hi)
{
    c->xmm[r] = *lo;
    c->ymmh[r] = hi ? *hi : zero;
}

static void vget(struct cpu *c, int r, union xmm v[2])
{
    v[0] = c->xmm[r];
    v[1] = c->ymmh[r];
}

/* The r/m operand: a register, or bytes of memory (#GP unless aligned to them when align). */
static void vsrc(struct cpu *c, const struct insn *i, int bytes, bool align, union xmm v[2])
{
    if (i->mod == 3) {
        vget(c, i->rm, v);
        return;
    }
    uint64_t la = ea(c, i);
    if (align && (la & (uint64_t)(bytes - 1)))
        raise_gp(c, 0);
    v[0] = v[1] = zero;
    mem_rd_buf(c, la, v, bytes);
}

static void vstore(struct cpu *c, const struct insn *i, int bytes, bool align, const union xmm v[2])
{
    uint64_t la = ea(c, i);
    if (align && (la & (uint64_t)(bytes - 1)))
        raise_gp(c, 0);
    mem_wr_buf(c, la, v, bytes);
}

/* CPUID.1:ECX of the host, for FMA and F16C, which run on its own units. A property of the
 * host, the same for every machine: read once. */
static bool host_has(uint32_t ecx_bit)
{
    static _Atomic uint32_t ecx1;   /* bit 0 (SSE3) is always set once read */
    uint32_t v = atomic_load_explicit(&ecx1, memory_order_relaxed);
    if (!v) {
        unsigned a, b, cx, d;
        if (!__get_cpuid(1, &a, &b, &cx, &d))
            cx = 0;
        v = cx | 1;
        atomic_store_explicit(&ecx1, v, memory_order_relaxed);
    }
    return (v & ecx_bit) != 0;
}

void emu_features(uint32_t out[CPUF_WORDS])
{
    memcpy(out, cpu_model_tcg_features, sizeof(cpu_model_tcg_features));
    if (!host_has(CPUID_1_ECX_FMA))
        out[CPUF_1_ECX] &= ~CPUID_1_ECX_FMA;
    if (!host_has(CPUID_1_ECX_F16C))
        out[CPUF_1_ECX] &= ~CPUID_1_ECX_F16C;
    if (!host_has(CPUID_1_ECX_AES))
        out[CPUF_1_ECX] &= ~CPUID_1_ECX_AES;
}

static bool has(struct cpu *c, int word, uint32_t bit)
{
    return (c->vm->model.feat[word] & bit) != 0;
}

static void need(struct cpu *c, bool ok)
{
    if (!ok)
        raise_ud(c);
}

/* The SSE instruction i stands for: same operands, legacy opcode number. */
static struct insn legacy_of(const struct insn *i)
{
    static const uint16_t map[8] = { [4] = 0x200, [5] = 0x300, [6] = 0x100 };
    struct insn j = *i;
    j.op = (uint16_t)(map[(i->op >> 8) & 7] | (i->op & 0xff));
    j.vex = 0;
    j.vexl = 0;
    return j;
}

static void run_legacy(struct cpu *c, const struct insn *j, int p)
{
    if (!sse_dispatch(c, j, p))
        raise_ud(c);
}

/* Lane by lane: dst = op(a, src) with a = vvvv (nds) or nothing, src the r/m operand (all of
 * it, or with src128 its low 128 bits for both lanes: shift counts). hi_shift: the immediate's
 * bits for the upper lane start there (VBLENDPS, VSHUFPD, VMPSADBW). */
static void lanes(struct cpu *c, const struct insn *i, int p, bool nds, bool src128, int hi_shift)
{
    int nl = i->vexl ? 2 : 1;
    union xmm s[2], a[2], r[2];
    vsrc(c, i, src128 ? 16 : 16 * nl, false, s);
    if (src128)
        s[1] = s[0];
    if (nds)
        vget(c, i->vvvv, a);
    else
        a[0] = a[1] = zero;
    struct insn j = legacy_of(i);
    j.reg = SD;
    j.mod = 3;
    j.rm = SS;
    for (int l = 0; l < nl; l++) {
        c->xmm[SD] = a[l];
        c->xmm[SS] = s[l];
        if (l && hi_shift)
            j.imm = i->imm >> hi_shift;
        run_legacy(c, &j, p);
        r[l] = c->xmm[SD];
    }
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* 128-bit only (or scalar), dst = op(vvvv, r/m) with the r/m operand as the SSE form reads it
 * (a general register, or as many bytes of memory as it reads). */
static void nds_rm(struct cpu *c, const struct insn *i, int p)
{
    struct insn j = legacy_of(i);
    j.reg = SD;
    c->xmm[SD] = c->xmm[i->vvvv];
    run_legacy(c, &j, p);
    vset(c, i->reg, &c->xmm[SD], NULL);
}

/* 128-bit only, no vvvv: the SSE form on the same operands; an XMM destination (xdst, the reg
 * operand) has its upper half cleared. */
static void direct(struct cpu *c, const struct insn *i, int p, bool xdst)
{
    need(c, i->vvvv == 0);
    struct insn j = legacy_of(i);
    run_legacy(c, &j, p);
    if (xdst)
        c->ymmh[i->reg] = zero;
}

/* --- compares with the 32 AVX predicates (signalling and quiet alike: exceptions are masked) --- */
static bool cmp_pred(unsigned pr, double a, double b)
{
    bool un = isnan(a) || isnan(b), lt = !un && a < b, eq = !un && a == b, gt = !un && a > b;
    switch (pr & 15) {
    case 0: return eq;
    case 1: return lt;
    case 2: return lt || eq;
    case 3: return un;
    case 4: return !eq;
    case 5: return !lt;
    case 6: return !(lt || eq);
    case 7: return !un;
    case 8: return eq || un;
    case 9: return !(gt || eq);
    case 10: return !gt;
    case 11: return false;
    case 12: return !un && !eq;
    case 13: return gt || eq;
    case 14: return gt;
    default: return true;
    }
}

static void vcmp(struct cpu *c, const struct insn *i, int p)
{
    unsigned pr = (unsigned)i->imm & 31;
    bool dbl = p == P_66 || p == P_F2, scalar = p == P_F3 || p == P_F2;
    int nl = scalar ? 1 : i->vexl ? 2 : 1;
    union xmm a[2], s[2], r[2];
    vget(c, i->vvvv, a);
    if (scalar && i->mod != 3) {
        s[0] = s[1] = zero;
        s[0].q[0] = mem_rd(c, ea(c, i), dbl ? 8 : 4);
    } else {
        vsrc(c, i, 16 * nl, false, s);
    }
    r[0] = a[0];
    r[1] = zero;
    int n = scalar ? 1 : dbl ? 2 : 4;
    for (int l = 0; l < nl; l++)
        for (int k = 0; k < n; k++) {
            if (dbl)
                r[l].q[k] = cmp_pred(pr, a[l].fd[k], s[l].fd[k]) ? ~0ull : 0;
            else
                r[l].d[k] = cmp_pred(pr, a[l].f[k], s[l].f[k]) ? ~0u : 0;
        }
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* --- moves --- */
static void vmov_load(struct cpu *c, const struct insn *i, bool align)
{
    int nl = i->vexl ? 2 : 1;
    union xmm s[2];
    need(c, i->vvvv == 0);
    vsrc(c, i, 16 * nl, align, s);
    vset(c, i->reg, &s[0], nl == 2 ? &s[1] : NULL);
}

static void vmov_store(struct cpu *c, const struct insn *i, bool align, bool mem_only)
{
    int nl = i->vexl ? 2 : 1;
    union xmm v[2];
    need(c, i->vvvv == 0 && (!mem_only || i->mod != 3));
    vget(c, i->reg, v);
    if (i->mod == 3)
        vset(c, i->rm, &v[0], nl == 2 ? &v[1] : NULL);
    else
        vstore(c, i, 16 * nl, align, v);
}

/* VMOVSS/VMOVSD (F3/F2 0F 10/11) */
static void vmov_scalar(struct cpu *c, const struct insn *i, int p)
{
    int n = p == P_F3 ? 4 : 8;
    if (i->mod != 3) {
        need(c, i->vvvv == 0);
        if ((i->op & 0xff) == 0x11) {
            mem_wr(c, ea(c, i), n, c->xmm[i->reg].q[0] & size_mask(n));
            return;
        }
        union xmm v = zero;
        v.q[0] = mem_rd(c, ea(c, i), n);
        vset(c, i->reg, &v, NULL);
        return;
    }
    int dst = (i->op & 0xff) == 0x11 ? i->rm : i->reg, src = (i->op & 0xff) == 0x11 ? i->reg : i->rm;
    union xmm v = c->xmm[i->vvvv];
    memcpy(&v, &c->xmm[src], n);
    vset(c, dst, &v, NULL);
}

/* --- conversions whose source and destination differ in width --- */
static void vcvt(struct cpu *c, const struct insn *i, int op, int p)
{
    int nl = i->vexl ? 2 : 1;
    union xmm s[2], r[2] = { zero, zero };
    need(c, i->vvvv == 0);
    if ((op == 0x5a && p == P_NONE) || (op == 0xe6 && p == P_F3)) {   /* VCVTPS2PD, VCVTDQ2PD */
        vsrc(c, i, 8 * nl, false, s);
        for (int k = 0; k < 2 * nl; k++) {
            double v = op == 0x5a ? (double)s[0].f[k] : (double)s[0].sd[k];
            r[k / 2].fd[k % 2] = v;
        }
        vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
        return;
    }
    vsrc(c, i, 16 * nl, false, s);                 /* VCVTPD2PS, VCVT(T)PD2DQ */
    for (int k = 0; k < 2 * nl; k++) {
        double v = s[k / 2].fd[k % 2];
        if (op == 0x5a)
            r[0].f[k] = (float)v;
        else
            r[0].sd[k] = fpu_host_cvt_i32(v, p == P_66);
    }
    vset(c, i->reg, &r[0], NULL);
}

/* VPMOVSX/VPMOVZX (0F38 20-25, 30-35) */
static void vpmovx(struct cpu *c, const struct insn *i, int op)
{
    static const uint8_t from[6] = { 1, 1, 1, 2, 2, 4 }, to[6] = { 2, 4, 8, 4, 8, 8 };
    int k = op & 7, nl = i->vexl ? 2 : 1;
    need(c, k < 6 && i->vvvv == 0);
    int n = 16 * nl / to[k], sz = from[k];
    union xmm s[2], r[2];
    vsrc(c, i, n * sz, false, s);
    const uint8_t *sb = (const uint8_t *)s;
    uint8_t *rb = (uint8_t *)r;
    for (int e = 0; e < n; e++) {
        uint64_t v = 0;
        memcpy(&v, sb + e * sz, sz);
        if (op < 0x30)
            v = (uint64_t)sext(v, sz);
        memcpy(rb + e * to[k], &v, to[k]);
    }
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* VPTEST, VTESTPS, VTESTPD: ZF when src AND dst is zero, CF when src AND NOT dst is, over the
 * whole operand (the sign bits only for the TEST forms). */
static void vptest(struct cpu *c, const struct insn *i, int op)
{
    int nl = i->vexl ? 2 : 1;
    need(c, i->vvvv == 0);
    union xmm s[2], d[2];
    vsrc(c, i, 16 * nl, false, s);
    vget(c, i->reg, d);
    if (op != 0x17)
        need(c, !VEX_W(i));   /* VTESTPS/PD: VEX.W0; VPTEST ignores W */
    uint64_t m = op == 0x0e ? 0x8000000080000000ull : op == 0x0f ? 0x8000000000000000ull : ~0ull;
    uint64_t z = 0, cf = 0;
    for (int k = 0; k < 2 * nl; k++) {
        z |= s[k / 2].q[k % 2] & d[k / 2].q[k % 2] & m;
        cf |= s[k / 2].q[k % 2] & ~d[k / 2].q[k % 2] & m;
    }
    cc_flags(c, (z ? 0 : F_ZF) | (cf ? 0 : F_CF));
}

/* Broadcasts: VBROADCASTSS/SD/F128 (AVX, memory), VPBROADCASTB/W/D/Q, VBROADCASTI128, and the
 * register forms (AVX2). */
static void vbroadcast(struct cpu *c, const struct insn *i, int op)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    int sz = op == 0x78 ? 1 : op == 0x79 ? 2 : (op == 0x18 || op == 0x58) ? 4 : (op == 0x19 || op == 0x59) ? 8 : 16;
    int nl = i->vexl ? 2 : 1;
    need(c, i->vvvv == 0);
    need(c, !((op == 0x19 || sz == 16) && !i->vexl));
    need(c, !(sz == 16 && i->mod == 3));
    if (op >= 0x58 || (i->mod == 3))
        need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2));
    union xmm s[2], r[2];
    vsrc(c, i, sz, false, s);
    uint8_t *rb = (uint8_t *)r;
    for (int k = 0; k < 16 * nl; k += sz)
        memcpy(rb + k, s, sz);
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* VPERMILPS/PD with a vector (0F38 0C/0D) or an immediate (0F3A 04/05) selector */
static void vpermil(struct cpu *c, const struct insn *i, int op, bool imm)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    int nl = i->vexl ? 2 : 1;
    bool pd = (op & 1) != 0;
    union xmm a[2], s[2], r[2];
    if (imm) {
        need(c, i->vvvv == 0);
        vsrc(c, i, 16 * nl, false, a);
    } else {
        vget(c, i->vvvv, a);
        vsrc(c, i, 16 * nl, false, s);
    }
    for (int l = 0; l < nl; l++) {
        for (int k = 0; k < (pd ? 2 : 4); k++) {
            if (pd) {
                unsigned sel = imm ? (unsigned)(i->imm >> (2 * l + k)) & 1 : (unsigned)(s[l].q[k] >> 1) & 1;
                r[l].q[k] = a[l].q[sel];
            } else {
                unsigned sel = imm ? (unsigned)(i->imm >> (2 * k)) & 3 : s[l].d[k] & 3;
                r[l].d[k] = a[l].d[sel];
            }
        }
    }
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* VPERM2F128 / VPERM2I128 */
static void vperm2x128(struct cpu *c, const struct insn *i)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    need(c, i->vexl);
    union xmm src[4], r[2];
    vget(c, i->vvvv, src);
    vsrc(c, i, 32, false, src + 2);
    for (int l = 0; l < 2; l++) {
        unsigned sel = (unsigned)(i->imm >> (4 * l));
        r[l] = (sel & 8) ? zero : src[sel & 3];
    }
    vset(c, i->reg, &r[0], &r[1]);
}

/* VINSERTF128/I128 (0F3A 18/38), VEXTRACTF128/I128 (19/39) */
static void vinsext(struct cpu *c, const struct insn *i, int op)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    need(c, i->vexl);
    int l = (int)(i->imm & 1);
    if (op == 0x18 || op == 0x38) {
        union xmm a[2], s[2];
        vget(c, i->vvvv, a);
        vsrc(c, i, 16, false, s);
        a[l] = s[0];
        vset(c, i->reg, &a[0], &a[1]);
        return;
    }
    need(c, i->vvvv == 0);
    union xmm v[2] = { l ? c->ymmh[i->reg] : c->xmm[i->reg], zero };
    if (i->mod == 3)
        vset(c, i->rm, &v[0], NULL);
    else
        vstore(c, i, 16, false, v);
}

/* VPERMQ/VPERMPD (immediate), VPERMD/VPERMPS (vector of indexes) */
static void vperm(struct cpu *c, const struct insn *i, int op)
{
    need(c, i->vexl);
    union xmm s[2], r[2], ix[2];
    if (op == 0x500 || op == 0x501) {
        need(c, i->vvvv == 0);
        vsrc(c, i, 32, false, s);
        const uint64_t *sq = (const uint64_t *)s;
        uint64_t *rq = (uint64_t *)r;
        for (int k = 0; k < 4; k++)
            rq[k] = sq[(i->imm >> (2 * k)) & 3];
    } else {
        need(c, !VEX_W(i));   /* VPERMD/PS: VEX.W0 (VPERMQ/PD want W1; this host's CPU ignores it) */
        vget(c, i->vvvv, ix);
        vsrc(c, i, 32, false, s);
        const uint32_t *sd = (const uint32_t *)s, *id = (const uint32_t *)ix;
        uint32_t *rd = (uint32_t *)r;
        for (int k = 0; k < 8; k++)
            rd[k] = sd[id[k] & 7];
    }
    vset(c, i->reg, &r[0], &r[1]);
}

/* VPSRLVD/Q, VPSRAVD, VPSLLVD/Q: each element shifted by its own count */
static void vshiftv(struct cpu *c, const struct insn *i, int op)
{
    int nl = i->vexl ? 2 : 1;
    bool q = VEX_W(i);
    need(c, !(op == 0x46 && q));
    union xmm a[2], s[2], r[2];
    vget(c, i->vvvv, a);
    vsrc(c, i, 16 * nl, false, s);
    for (int l = 0; l < nl; l++)
        for (int k = 0; k < (q ? 2 : 4); k++) {
            uint64_t v = q ? a[l].q[k] : a[l].d[k], n = q ? s[l].q[k] : s[l].d[k];
            int bits = q ? 64 : 32;
            uint64_t res;
            if (op == 0x45)
                res = n >= (uint64_t)bits ? 0 : v >> n;
            else if (op == 0x47)
                res = n >= (uint64_t)bits ? 0 : v << n;
            else
                res = (uint64_t)((int64_t)(int32_t)v >> (n > 31 ? 31 : n));
            if (q)
                r[l].q[k] = res;
            else
                r[l].d[k] = (uint32_t)res;
        }
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* VBLENDVPS/PD, VPBLENDVB (0F3A 4A/4B/4C): the mask is the register in imm[7:4] */
static void vblendv(struct cpu *c, const struct insn *i, int op)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    int nl = i->vexl ? 2 : 1;
    if (op == 0x4c && nl == 2)
        need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2));
    union xmm a[2], s[2], m[2], r[2];
    vget(c, i->vvvv, a);
    vsrc(c, i, 16 * nl, false, s);
    vget(c, (int)((i->imm >> 4) & 15), m);
    int esz = op == 0x4a ? 4 : op == 0x4b ? 8 : 1;
    for (int l = 0; l < nl; l++)
        for (int k = 0; k < 16; k += esz)
            memcpy(&r[l].b[k], (m[l].b[k + esz - 1] & 0x80) ? &s[l].b[k] : &a[l].b[k], esz);
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* VPBLENDD (0F3A 02) */
static void vpblendd(struct cpu *c, const struct insn *i)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    int nl = i->vexl ? 2 : 1;
    union xmm a[2], s[2];
    vget(c, i->vvvv, a);
    vsrc(c, i, 16 * nl, false, s);
    for (int k = 0; k < 4 * nl; k++)
        if ((i->imm >> k) & 1)
            a[k / 4].d[k % 4] = s[k / 4].d[k % 4];
    vset(c, i->reg, &a[0], nl == 2 ? &a[1] : NULL);
}

/* VMASKMOVPS/PD (0F38 2C-2F), VPMASKMOVD/Q (8C/8E): elements whose mask sign is clear are
 * neither read nor written, so they cannot fault. */
static void vmaskmov(struct cpu *c, const struct insn *i, int op)
{
    int nl = i->vexl ? 2 : 1;
    int esz = (op == 0x2c || op == 0x2e) ? 4 : (op == 0x2d || op == 0x2f) ? 8 : VEX_W(i) ? 8 : 4;
    bool store = op == 0x2e || op == 0x2f || op == 0x8e;
    need(c, i->mod != 3);
    if (op > 0x80)
        need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2));
    else
        need(c, !VEX_W(i));   /* VMASKMOVPS/PD: VEX.W0 */
    union xmm m[2], v[2] = { zero, zero };
    vget(c, i->vvvv, m);
    uint64_t la = ea(c, i);
    const uint8_t *mb = (const uint8_t *)m;
    uint8_t *vb = (uint8_t *)v;
    if (store)
        vget(c, i->reg, v);
    for (int k = 0; k < 16 * nl; k += esz) {
        if (!(mb[k + esz - 1] & 0x80))
            continue;
        uint64_t a = (la + (uint64_t)k) & c->lin_mask;
        if (store) {
            uint64_t x = 0;
            memcpy(&x, vb + k, esz);
            mem_wr(c, a, esz, x);
        } else {
            uint64_t x = mem_rd(c, a, esz);
            memcpy(vb + k, &x, esz);
        }
    }
    if (!store)
        vset(c, i->reg, &v[0], nl == 2 ? &v[1] : NULL);
}

/* VMOVMSKPS/PD, VPMOVMSKB of a YMM register */
static void vmovmsk256(struct cpu *c, const struct insn *i, int esz)
{
    need(c, i->mod == 3 && i->vvvv == 0);
    union xmm s[2];
    vget(c, i->rm, s);
    const uint8_t *b = (const uint8_t *)s;
    uint64_t m = 0;
    for (int k = 0; k < 32 / esz; k++)
        m |= (uint64_t)(b[k * esz + esz - 1] >> 7) << k;
    c->r[i->reg] = m;
}

/* VPSRLW/D/Q, VPSRAW/D, VPSLLW/D/Q, VPSRLDQ/VPSLLDQ by an immediate: the destination is vvvv */
static void vshift_imm(struct cpu *c, const struct insn *i, int p)
{
    int nl = i->vexl ? 2 : 1;
    need(c, i->mod == 3);
    union xmm s[2], r[2];
    vget(c, i->rm, s);
    struct insn j = legacy_of(i);
    j.rm = SD;
    for (int l = 0; l < nl; l++) {
        c->xmm[SD] = s[l];
        run_legacy(c, &j, p);
        r[l] = c->xmm[SD];
    }
    vset(c, i->vvvv, &r[0], nl == 2 ? &r[1] : NULL);
}

/* VPGATHERDD/DQ/QD/QQ, VGATHERDPS/DPD/QPS/QPD (0F38 90-93): element by element, in order,
 * where the mask's sign is set; each element loaded clears its mask element, so after a fault
 * the instruction restarts where it stopped, as on hardware. */
static void vgather(struct cpu *c, const struct insn *i, int op)
{
    int nl = i->vexl ? 2 : 1, dsz = VEX_W(i) ? 8 : 4, isz = (op & 1) ? 8 : 4;
    int ix = i->index == REG_NONE ? 4 : i->index;   /* VSIB: index 100b is a vector register */
    need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2));
    need(c, i->mod != 3 && i->base != REG_RIP && i->asz != 2);
    need(c, i->reg != i->vvvv && i->reg != ix && i->vvvv != ix);
    int n = 16 * nl / (dsz > isz ? dsz : isz);
    union xmm d[2], m[2], x[2];
    vget(c, i->reg, d);
    vget(c, i->vvvv, m);
    vget(c, ix, x);
    uint8_t *db = (uint8_t *)d, *mb = (uint8_t *)m;
    const uint8_t *xb = (const uint8_t *)x;
    uint64_t base = (uint64_t)(int64_t)i->disp + (i->base != REG_NONE ? c->r[i->base] : 0);
    /* beyond the elements: a VEX.128 form and a narrower destination clear it, also on a fault */
    int dbytes = n * dsz;
    memset(db + dbytes, 0, 32 - (size_t)dbytes);
    memset(mb + dbytes, 0, 32 - (size_t)dbytes);
    for (int k = 0; k < n; k++) {
        if (!(mb[k * dsz + dsz - 1] & 0x80))
            continue;
        uint64_t off = 0;
        memcpy(&off, xb + k * isz, isz);
        off = isz == 4 ? (uint64_t)(int64_t)(int32_t)off : off;
        uint64_t la = (c->segbase[i->seg] + ((base + (off << i->scale)) & size_mask(i->asz))) & c->lin_mask;
        /* progress so far in the registers first: a fault leaves them there */
        vset(c, i->reg, &d[0], &d[1]);
        vset(c, i->vvvv, &m[0], &m[1]);
        uint64_t v = mem_rd(c, la, dsz);
        memcpy(db + k * dsz, &v, dsz);
        memset(mb + k * dsz, 0, dsz);
    }
    memset(m, 0, sizeof(m));
    vset(c, i->reg, &d[0], &d[1]);
    vset(c, i->vvvv, &m[0], &m[1]);
}

/* --- FMA3 on the host's FMA unit, a 128-bit lane at a time --- */
typedef long long v2di __attribute__((vector_size(16)));

static void fma_lane(unsigned key, union xmm *d, const union xmm *b, const union xmm *s)
{
    v2di x, y, z;
    memcpy(&x, d, 16);
    memcpy(&y, b, 16);
    memcpy(&z, s, 16);
#define FMA_ASM(mn) __asm__(mn " %2, %1, %0" : "+x"(x) : "x"(y), "x"(z))
    switch (key) {
    case 0x96 | 0 << 8: FMA_ASM("vfmaddsub132ps"); break;
    case 0x96 | 1 << 8: FMA_ASM("vfmaddsub132pd"); break;
    case 0xa6 | 0 << 8: FMA_ASM("vfmaddsub213ps"); break;
    case 0xa6 | 1 << 8: FMA_ASM("vfmaddsub213pd"); break;
    case 0xb6 | 0 << 8: FMA_ASM("vfmaddsub231ps"); break;
    case 0xb6 | 1 << 8: FMA_ASM("vfmaddsub231pd"); break;
    case 0x97 | 0 << 8: FMA_ASM("vfmsubadd132ps"); break;
    case 0x97 | 1 << 8: FMA_ASM("vfmsubadd132pd"); break;
    case 0xa7 | 0 << 8: FMA_ASM("vfmsubadd213ps"); break;
    case 0xa7 | 1 << 8: FMA_ASM("vfmsubadd213pd"); break;
    case 0xb7 | 0 << 8: FMA_ASM("vfmsubadd231ps"); break;
    case 0xb7 | 1 << 8: FMA_ASM("vfmsubadd231pd"); break;
    case 0x98 | 0 << 8: FMA_ASM("vfmadd132ps"); break;
    case 0x98 | 1 << 8: FMA_ASM("vfmadd132pd"); break;
    case 0xa8 | 0 << 8: FMA_ASM("vfmadd213ps"); break;
    case 0xa8 | 1 << 8: FMA_ASM("vfmadd213pd"); break;
    case 0xb8 | 0 << 8: FMA_ASM("vfmadd231ps"); break;
    case 0xb8 | 1 << 8: FMA_ASM("vfmadd231pd"); break;
    case 0x9a | 0 << 8: FMA_ASM("vfmsub132ps"); break;
    case 0x9a | 1 << 8: FMA_ASM("vfmsub132pd"); break;
    case 0xaa | 0 << 8: FMA_ASM("vfmsub213ps"); break;
    case 0xaa | 1 << 8: FMA_ASM("vfmsub213pd"); break;
    case 0xba | 0 << 8: FMA_ASM("vfmsub231ps"); break;
    case 0xba | 1 << 8: FMA_ASM("vfmsub231pd"); break;
    case 0x9c | 0 << 8: FMA_ASM("vfnmadd132ps"); break;
    case 0x9c | 1 << 8: FMA_ASM("vfnmadd132pd"); break;
    case 0xac | 0 << 8: FMA_ASM("vfnmadd213ps"); break;
    case 0xac | 1 << 8: FMA_ASM("vfnmadd213pd"); break;
    case 0xbc | 0 << 8: FMA_ASM("vfnmadd231ps"); break;
    case 0xbc | 1 << 8: FMA_ASM("vfnmadd231pd"); break;
    case 0x9e | 0 << 8: FMA_ASM("vfnmsub132ps"); break;
    case 0x9e | 1 << 8: FMA_ASM("vfnmsub132pd"); break;
    case 0xae | 0 << 8: FMA_ASM("vfnmsub213ps"); break;
    case 0xae | 1 << 8: FMA_ASM("vfnmsub213pd"); break;
    case 0xbe | 0 << 8: FMA_ASM("vfnmsub231ps"); break;
    case 0xbe | 1 << 8: FMA_ASM("vfnmsub231pd"); break;
    }
#undef FMA_ASM
    memcpy(d, &x, 16);
}

static void vfma(struct cpu *c, const struct insn *i, int op)
{
    need(c, has(c, CPUF_1_ECX, CPUID_1_ECX_FMA) && host_has(CPUID_1_ECX_FMA));
    bool pd = VEX_W(i);
    bool scalar = (op & 1) && (op & 0xf) >= 8;
    int nl = scalar ? 1 : i->vexl ? 2 : 1;
    unsigned key = (unsigned)(scalar ? op - 1 : op) | (pd ? 1u << 8 : 0);
    union xmm d[2], b[2], s[2];
    vget(c, i->reg, d);
    vget(c, i->vvvv, b);
    if (scalar && i->mod != 3) {
        s[0] = s[1] = zero;
        s[0].q[0] = mem_rd(c, ea(c, i), pd ? 8 : 4);
    } else {
        vsrc(c, i, 16 * nl, false, s);
    }
    union xmm r[2] = { d[0], d[1] };
    for (int l = 0; l < nl; l++)
        fma_lane(key, &r[l], &b[l], &s[l]);
    if (scalar) {
        union xmm t = d[0];
        memcpy(&t, &r[0], pd ? 8 : 4);
        r[0] = t;
    }
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

/* --- F16C on the host's converters --- */
static void vcvtph2ps(struct cpu *c, const struct insn *i)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    need(c, has(c, CPUF_1_ECX, CPUID_1_ECX_F16C) && host_has(CPUID_1_ECX_F16C));
    need(c, i->vvvv == 0);
    int nl = i->vexl ? 2 : 1;
    union xmm s[2], r[2];
    vsrc(c, i, 8 * nl, false, s);
    for (int l = 0; l < nl; l++) {
        v2di x, y;
        union xmm h = zero;
        h.q[0] = s[0].q[l];
        memcpy(&x, &h, 16);
        __asm__("vcvtph2ps %1, %0" : "=x"(y) : "x"(x));
        memcpy(&r[l], &y, 16);
    }
    vset(c, i->reg, &r[0], nl == 2 ? &r[1] : NULL);
}

static void vcvtps2ph(struct cpu *c, const struct insn *i)
{
    need(c, !VEX_W(i));   /* VEX.W0 */
    need(c, has(c, CPUF_1_ECX, CPUID_1_ECX_F16C) && host_has(CPUID_1_ECX_F16C));
    need(c, i->vvvv == 0);
    int nl = i->vexl ? 2 : 1;
    union xmm s[2], r[2] = { zero, zero };
    vget(c, i->reg, s);
    for (int l = 0; l < nl; l++) {
        v2di x, y;
        memcpy(&x, &s[l], 16);
        switch (i->imm & 7) {
#define PH(n) case n: __asm__("vcvtps2ph $" #n ", %1, %0" : "=x"(y) : "x"(x)); break
        PH(0); PH(1); PH(2); PH(3); PH(4); PH(5); PH(6); default: PH(7);
#undef PH
        }
        union xmm t;
        memcpy(&t, &y, 16);
        r[0].q[l] = t.q[0];
    }
    if (i->mod == 3)
        vset(c, i->rm, &r[0], NULL);
    else
        vstore(c, i, 8 * nl, false, r);
}

/* Integer instructions whose 256-bit form is AVX2 */
static bool int_op(int map, int op)
{
    if (map == 1)
        return (op >= 0x60 && op <= 0x76) || op == 0xd7 ||
               (op >= 0xd1 && op <= 0xfe && op != 0xd0 && op != 0xd6 && op != 0xe6 && op != 0xe7 && op != 0xf0 && op != 0xf7);
    if (map == 2)
        return op <= 0x0b || (op >= 0x1c && op <= 0x1e) || (op >= 0x20 && op <= 0x25) || op == 0x28 ||
               op == 0x29 || op == 0x2b || (op >= 0x30 && op <= 0x40);
    return op == 0x0e || op == 0x0f || op == 0x42;
}

static void avx_map1(struct cpu *c, const struct insn *i, int op, int p)
{
    bool scalar = p == P_F3 || p == P_F2, packed = !scalar;
    switch (op) {
    case 0x10: case 0x11:
        if (scalar)
            vmov_scalar(c, i, p);
        else if (op == 0x10)
            vmov_load(c, i, false);
        else
            vmov_store(c, i, false, false);
        return;
    case 0x12: case 0x16:
        if (p == P_F3 || (p == P_F2 && i->vexl)) {      /* VMOVSLDUP/SHDUP, VMOVDDUP ymm */
            need(c, i->vvvv == 0);
            lanes(c, i, p, false, false, 0);
        } else if (p == P_F2) {
            if (op == 0x16)
                raise_ud(c);
            direct(c, i, p, true);
        } else {
            need(c, !i->vexl);
            nds_rm(c, i, p);
        }
        return;
    case 0x13: case 0x17:
        need(c, !i->vexl && packed && i->mod != 3);
        direct(c, i, p, false);
        return;
    case 0x28: vmov_load(c, i, true); need(c, packed); return;
    case 0x29: need(c, packed); vmov_store(c, i, true, false); return;
    case 0x2b: need(c, packed); vmov_store(c, i, true, true); return;
    case 0x2a:
        need(c, scalar);
        nds_rm(c, i, p);
        return;
    case 0x2c: case 0x2d:
        need(c, scalar);
        direct(c, i, p, false);
        return;
    case 0x2e: case 0x2f:
        need(c, packed);
        direct(c, i, p, false);
        return;
    case 0x50:
        need(c, packed);
        if (i->vexl)
            vmovmsk256(c, i, p == P_66 ? 8 : 4);
        else
            direct(c, i, p, false);
        return;
    case 0x5a:
        if (scalar)
            nds_rm(c, i, p);
        else
            vcvt(c, i, op, p);
        return;
    case 0x51: case 0x52: case 0x53: case 0x5b:
        if (scalar && op != 0x5b) {
            nds_rm(c, i, p);
        } else {
            need(c, i->vvvv == 0);
            lanes(c, i, p, false, false, 0);
        }
        return;
    case 0x14: case 0x15: case 0x54: case 0x55: case 0x56: case 0x57:
        need(c, packed);
        lanes(c, i, p, true, false, 0);
        return;
    case 0x58: case 0x59: case 0x5c: case 0x5d: case 0x5e: case 0x5f:
        if (scalar)
            nds_rm(c, i, p);
        else
            lanes(c, i, p, true, false, 0);
        return;
    case 0x6e:
        need(c, p == P_66 && !i->vexl);
        direct(c, i, p, true);
        return;
    case 0x6f:
        need(c, p == P_66 || p == P_F3);
        vmov_load(c, i, p == P_66);
        return;
    case 0x7f:
        need(c, p == P_66 || p == P_F3);
        vmov_store(c, i, p == P_66, false);
        return;
    case 0xe7:
        need(c, p == P_66);
        vmov_store(c, i, true, true);
        return;
    case 0xf0:
        need(c, p == P_F2 && i->mod != 3);
        vmov_load(c, i, false);
        return;
    case 0x70:
        need(c, p != P_NONE && i->vvvv == 0);
        lanes(c, i, p, false, false, 0);
        return;
    case 0x71: case 0x72: case 0x73:
        need(c, p == P_66);
        vshift_imm(c, i, p);
        return;
    case 0x77:
        need(c, p == P_NONE && i->vvvv == 0);
        memset(c->ymmh, 0, sizeof(c->ymmh));
        if (i->vexl)
            memset(c->xmm, 0, 16 * sizeof(c->xmm[0]));
        return;
    case 0x7e:
        need(c, (p == P_66 || p == P_F3) && !i->vexl);
        direct(c, i, p, p == P_F3);
        return;
    case 0xc2:
        vcmp(c, i, p);
        return;
    case 0xc4:
        need(c, p == P_66 && !i->vexl);
        nds_rm(c, i, p);
        return;
    case 0xc5:
        need(c, p == P_66 && !i->vexl);
        direct(c, i, p, false);
        return;
    case 0xc6:
        need(c, packed);
        lanes(c, i, p, true, false, p == P_66 ? 2 : 0);
        return;
    case 0xd6:
        need(c, p == P_66 && !i->vexl && i->vvvv == 0);
        direct(c, i, p, false);
        if (i->mod == 3)
            c->ymmh[i->rm] = zero;
        return;
    case 0xd7:
        need(c, p == P_66);
        if (i->vexl)
            vmovmsk256(c, i, 1);
        else
            direct(c, i, p, false);
        return;
    case 0xe6:
        need(c, p != P_NONE);
        vcvt(c, i, op, p);
        return;
    case 0xf7:
        need(c, p == P_66 && !i->vexl);
        direct(c, i, p, false);
        return;
    case 0xd0: case 0x7c: case 0x7d:
        need(c, p == P_66 || p == P_F2);
        lanes(c, i, p, true, false, 0);
        return;
    case 0xd1: case 0xd2: case 0xd3: case 0xe1: case 0xe2: case 0xf1: case 0xf2: case 0xf3:
        need(c, p == P_66);
        lanes(c, i, p, true, true, 0);
        return;
    }
    need(c, p == P_66 && ((op >= 0x60 && op <= 0x6d) || (op >= 0x74 && op <= 0x76) || op >= 0xd4));
    lanes(c, i, p, true, false, 0);
}

static void avx_map2(struct cpu *c, const struct insn *i, int op, int p)
{
    need(c, p == P_66);
    switch (op) {
    case 0x0c: case 0x0d: vpermil(c, i, op, false); return;
    case 0x0e: case 0x0f: case 0x17: vptest(c, i, op); return;
    case 0x13: vcvtph2ps(c, i); return;
    case 0x16: case 0x36: vperm(c, i, 0x400 | op); return;
    case 0x18: case 0x19: case 0x1a: case 0x58: case 0x59: case 0x5a: case 0x78: case 0x79:
        vbroadcast(c, i, op);
        return;
    case 0x1c: case 0x1d: case 0x1e:
        need(c, i->vvvv == 0);
        lanes(c, i, p, false, false, 0);
        return;
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25:
    case 0x30: case 0x31: case 0x32: case 0x33: case 0x34: case 0x35:
        vpmovx(c, i, op);
        return;
    case 0x2a:
        need(c, i->mod != 3);
        vmov_load(c, i, true);
        return;
    case 0x2c: case 0x2d: case 0x2e: case 0x2f: case 0x8c: case 0x8e:
        vmaskmov(c, i, op);
        return;
    case 0x41:
        need(c, !i->vexl && i->vvvv == 0);
        lanes(c, i, p, false, false, 0);
        return;
    case 0x45: case 0x46: case 0x47:
        need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2));
        vshiftv(c, i, op);
        return;
    case 0x90: case 0x91: case 0x92: case 0x93:
        vgather(c, i, op);
        return;
    case 0xdb:                                     /* VAESIMC */
        need(c, !i->vexl && i->vvvv == 0);
        lanes(c, i, p, false, false, 0);
        return;
    case 0xdc: case 0xdd: case 0xde: case 0xdf:    /* VAESENC... (256 bits: VAES, not offered) */
        need(c, !i->vexl);
        lanes(c, i, p, true, false, 0);
        return;
    }
    if ((op >= 0x96 && op <= 0x9f) || (op >= 0xa6 && op <= 0xaf) || (op >= 0xb6 && op <= 0xbf)) {
        vfma(c, i, op);
        return;
    }
    need(c, op <= 0x0b || op == 0x28 || op == 0x29 || op == 0x2b || (op >= 0x37 && op <= 0x40));
    lanes(c, i, p, true, false, 0);
}

static void avx_map3(struct cpu *c, const struct insn *i, int op, int p)
{
    need(c, p == P_66);
    switch (op) {
    case 0x00: case 0x01: vperm(c, i, 0x500 | op); return;
    case 0x02: need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2)); vpblendd(c, i); return;
    case 0x04: case 0x05: vpermil(c, i, op, true); return;
    case 0x06: case 0x46: vperm2x128(c, i); return;
    case 0x08: case 0x09:
        need(c, i->vvvv == 0);
        lanes(c, i, p, false, false, 0);
        return;
    case 0x0a: case 0x0b: nds_rm(c, i, p); return;
    case 0x0c: lanes(c, i, p, true, false, 4); return;
    case 0x0d: lanes(c, i, p, true, false, 2); return;
    case 0x0e: case 0x0f: case 0x40: lanes(c, i, p, true, false, 0); return;
    case 0x42: lanes(c, i, p, true, false, 3); return;
    case 0x41: need(c, !i->vexl); lanes(c, i, p, true, false, 0); return;
    case 0x14: case 0x15: case 0x16: case 0x17:
        need(c, !i->vexl);
        direct(c, i, p, false);
        return;
    case 0x20: case 0x21: case 0x22:
        need(c, !i->vexl);
        nds_rm(c, i, p);
        return;
    case 0x18: case 0x19: case 0x38: case 0x39:
        if (op >= 0x38)
            need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2));
        vinsext(c, i, op);
        return;
    case 0x1d: vcvtps2ph(c, i); return;
    case 0x44:                                     /* VPCLMULQDQ (256 bits: not offered) */
        need(c, !i->vexl);
        lanes(c, i, p, true, false, 0);
        return;
    case 0xdf:                                     /* VAESKEYGENASSIST */
        need(c, !i->vexl && i->vvvv == 0);
        lanes(c, i, p, false, false, 0);
        return;
    case 0x4a: case 0x4b: case 0x4c: vblendv(c, i, op); return;
    case 0x60: case 0x61: case 0x62: case 0x63:
        need(c, !i->vexl);
        direct(c, i, p, false);
        if (op == 0x60 || op == 0x62)
            c->ymmh[0] = zero;
        return;
    }
    raise_ud(c);
}

H(h_avx)
{
    int op = i->op & 0xff, map = (i->op >> 8) == 6 ? 1 : (i->op >> 8) == 4 ? 2 : 3;
    int p = i->rep == 0xf3 ? P_F3 : i->rep == 0xf2 ? P_F2 : i->pfx66 ? P_66 : P_NONE;
    /* no VEX in real and virtual-8086 mode */
    if (!(c->cr0 & CR0_PE) || (c->eflags & F_VM) ||
        !(c->cr4 & CR4_OSXSAVE) || (c->xcr0 & (XCR0_SSE | XCR0_AVX)) != (XCR0_SSE | XCR0_AVX) ||
        !has(c, CPUF_1_ECX, CPUID_1_ECX_AVX))
        raise_ud(c);
    if (i->vexl && int_op(map, op))
        need(c, has(c, CPUF_7_EBX, CPUID_7_EBX_AVX2));
    if (c->cr0 & CR0_TS)
        raise_exc(c, EXC_NM);
    if (map == 1)
        avx_map1(c, i, op, p);
    else if (map == 2)
        avx_map2(c, i, op, p);
    else
        avx_map3(c, i, op, p);
}
