/* XSAVE and friends: XGETBV/XSETBV, XSAVE/XSAVEOPT/XRSTOR in the standard (non-compacted) format
 * with the x87, SSE, AVX and PKRU components, and what CPUID leaf 0xD says about them. The area
 * is the FXSAVE image (bytes 0-511), the XSAVE header (512-575: XSTATE_BV, XCOMP_BV, reserved),
 * the AVX component (YMM upper halves, 576-831) and PKRU (component 9, 2688-2695, with
 * protection keys), as the SDM (vol. 1, ch. 13) lays it out. */
#include "accel/emu/exec.h"

#include <errno.h>

#define XSAVE_HDR 512
#define XSAVE_AVX 576
#define XSAVE_SIZE_AVX 832
#define XSAVE_PKRU 2688
#define XSAVE_SIZE_PKRU 2696

/* The size of an area that holds the components in mask */
static uint32_t xsave_size(uint64_t mask)
{
    return (mask & XCR0_PKRU) ? XSAVE_SIZE_PKRU : (mask & XCR0_AVX) ? XSAVE_SIZE_AVX : XSAVE_AVX;
}

/* The components XCR0 may hold: x87 and SSE always (with XSAVE), AVX when the model has it. */
uint64_t xsave_supported(const struct cpu *c)
{
    const uint32_t *f = c->vm->model.feat;
    if (!(f[CPUF_1_ECX] & CPUID_1_ECX_XSAVE))
        return 0;
    return XCR0_X87 | XCR0_SSE | ((f[CPUF_1_ECX] & CPUID_1_ECX_AVX) ? XCR0_AVX : 0) |
           (prot_has_pku(c) ? XCR0_PKRU : 0);
}

/* CPUID leaf 0xD and the OSXSAVE bit of leaf 1 follow the CPU's state, not only the model. */
void xsave_cpuid(struct cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    uint64_t sup = xsave_supported(c);
    if (leaf == 1) {
        if (c->cr4 & CR4_OSXSAVE)
            out[2] |= CPUID_1_ECX_OSXSAVE;
        return;
    }
    if (leaf != 0xd || !sup)
        return;
    out[0] = out[1] = out[2] = out[3] = 0;
    switch (sub) {
    case 0:
        out[0] = (uint32_t)sup;
        out[1] = xsave_size(c->xcr0);
        out[2] = xsave_size(sup);
        break;
    case 1:
        out[0] = 1;   /* XSAVEOPT; no XSAVEC, XGETBV 1 or XSAVES */
        break;
    case 2:
        if (sup & XCR0_AVX) {
            out[0] = 256;
            out[1] = XSAVE_AVX;
        }
        break;
    case 9:
        if (sup & XCR0_PKRU) {
            out[0] = 8;
            out[1] = XSAVE_PKRU;
        }
        break;
    }
}

int xcr0_check(const struct cpu *c, uint64_t v)
{
    if (v == XCR0_X87)   /* the reset value, whatever the model */
        return 0;
    if (!(v & XCR0_X87) || (v & ~xsave_supported(c)))
        return -EINVAL;
    if ((v & XCR0_AVX) && !(v & XCR0_SSE))
        return -EINVAL;
    return 0;
}

/* 0F 01 D0 / D1 */
void xsave_xgetbv_xsetbv(struct cpu *c, const struct insn *i, bool set)
{
    if (!(c->cr4 & CR4_OSXSAVE) || i->pfx66 || i->rep)
        raise_ud(c);
    uint32_t n = (uint32_t)c->r[R_CX];
    if (!set) {
        if (n != 0)
            raise_gp(c, 0);
        c->r[R_AX] = (uint32_t)c->xcr0;
        c->r[R_DX] = (uint32_t)(c->xcr0 >> 32);
        return;
    }
    if (c->cpl)
        raise_gp(c, 0);
    uint64_t v = (uint32_t)c->r[R_AX] | (c->r[R_DX] << 32);
    if (n != 0 || xcr0_check(c, v))
        raise_gp(c, 0);
    c->xcr0 = v;
    c->brk = true;   /* the VEX handlers' permission checks read XCR0 at run time anyway */
}

/* 0F AE /4 XSAVE, /5 XRSTOR, /6 XSAVEOPT (memory forms, no prefix; REX.W changes only the
 * x87 pointer format, and this CPU keeps 64-bit pointers in both). */
void xsave_exec(struct cpu *c, const struct insn *i, int sub, uint64_t la)
{
    if (!(c->cr4 & CR4_OSXSAVE) || i->pfx66 || i->rep || i->lock)
        raise_ud(c);
    if (c->cr0 & CR0_TS)
        raise_exc(c, EXC_NM);
    if (la & 63)
        raise_gp(c, 0);
    uint64_t rfbm = c->xcr0 & ((uint32_t)c->r[R_AX] | (c->r[R_DX] << 32));
    uint8_t legacy[512];
    uint64_t hdr[8];
    if (sub != 5) {
        /* Every requested component is written and marked in XSTATE_BV: the init and modified
         * optimizations are optional, and a restore gives the same state either way. Bytes of
         * components not requested are left as they are in memory. */
        fpu_fxsave(c, legacy);
        uint64_t bv = mem_rd(c, la + XSAVE_HDR, 8);
        mem_wr(c, la + XSAVE_HDR, 8, (bv & ~c->xcr0) | rfbm);
        if (rfbm & XCR0_X87) {
            mem_wr_buf(c, la, legacy, 24);
            mem_wr_buf(c, la + 32, legacy + 32, 128);
        }
        if (rfbm & (XCR0_SSE | XCR0_AVX))
            mem_wr_buf(c, la + 24, legacy + 24, 8);
        if (rfbm & XCR0_SSE)
            mem_wr_buf(c, la + 160, legacy + 160, 256);
        if (rfbm & XCR0_AVX)
            mem_wr_buf(c, la + XSAVE_AVX, c->ymmh, 256);
        if (rfbm & XCR0_PKRU)
            mem_wr(c, la + XSAVE_PKRU, 8, c->pkru);
        return;
    }
    mem_rd_buf(c, la + XSAVE_HDR, hdr, sizeof(hdr));
    uint64_t bv = hdr[0];
    if (hdr[1] || hdr[2] || hdr[3] || hdr[4] || hdr[5] || hdr[6] || hdr[7] || (bv & ~c->xcr0))
        raise_gp(c, 0);
    mem_rd_buf(c, la, legacy, sizeof(legacy));
    uint32_t mx;
    memcpy(&mx, legacy + 24, 4);
    if ((rfbm & (XCR0_SSE | XCR0_AVX)) && (mx & 0xffff0000u))
        raise_gp(c, 0);
    union xmm hi[16];
    if (rfbm & bv & XCR0_AVX)
        mem_rd_buf(c, la + XSAVE_AVX, hi, sizeof(hi));
    uint32_t pkru = (rfbm & bv & XCR0_PKRU) ? (uint32_t)mem_rd(c, la + XSAVE_PKRU, 4) : 0;
    /* from here on nothing faults: the state changes whole or not at all */
    uint8_t cur[512];
    fpu_fxsave(c, cur);
    if (rfbm & XCR0_X87) {
        if (bv & XCR0_X87) {
            memcpy(cur, legacy, 24);
            memcpy(cur + 32, legacy + 32, 128);
        } else {
            /* the init state: FCW 037F, everything else zero (tags empty) */
            memset(cur, 0, 24);
            memset(cur + 32, 0, 128);
            cur[0] = 0x7f;
            cur[1] = 0x03;
        }
    }
    if (rfbm & (XCR0_SSE | XCR0_AVX))
        memcpy(cur + 24, legacy + 24, 4);
    if (rfbm & XCR0_SSE) {
        if (bv & XCR0_SSE)
            memcpy(cur + 160, legacy + 160, 256);
        else
            memset(cur + 160, 0, 256);
    }
    fpu_fxrstor(c, cur);
    if (rfbm & XCR0_AVX) {
        if (bv & XCR0_AVX)
            memcpy(c->ymmh, hi, sizeof(hi));
        else
            memset(c->ymmh, 0, sizeof(c->ymmh));
    }
    if (rfbm & XCR0_PKRU) {
        prot_set_pkru(c, pkru);   /* the page rights in the TLB follow */
        c->brk = true;
    }
}
