/* Differential tests of x86-64-v3's vector state and instructions: AVX (VEX.128 and VEX.256),
 * AVX2, FMA3, F16C, AES-NI and PCLMULQDQ, and XSAVE/XRSTOR/XSAVEOPT/XGETBV. Each case is one random VEX instruction
 * of a table (random W, L, vvvv, registers, register or memory operand at an aligned or
 * misaligned address, immediate), run natively in this process and in the emulator (CPU model
 * "max", CR4.OSXSAVE, XCR0 = x87|SSE|AVX), interpreted and translated; YMM0-7 (both halves),
 * general registers, memory, flags and exceptions compared. Encodings the host rejects (#UD:
 * VEX.L or vvvv where they are not allowed, a wrong pp) must be rejected alike.
 * QKVM_EMU_SEED / QKVM_EMU_CASES as in test_emu. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "emu_harness.h"

typedef uint64_t (*gen_fn)(struct code *c, struct regs *in, uint8_t *data);

/* operand kinds of a table entry */
enum {
    IMM = 1,        /* an imm8 follows */
    GREG = 2,       /* ModRM.reg is a general register */
    GRM = 4,        /* ModRM.rm is a general register in the register form */
    MEMONLY = 8,
    REGONLY = 16,
    SUBOP = 32,     /* ModRM.reg is a /digit: the one in sub */
    RAXRDX = 64,    /* reads lengths in RAX/RDX (string compares) */
    L128 = 128,     /* VEX.L=0 only: the 256-bit form is another feature (VAES, VPCLMULQDQ)
                     * that qkvm does not offer and this host may have */
};

struct vop {
    uint8_t map, op, pp, kinds, sub;
};

#define P4(m, o, k) { m, o, 0, k, 0 }, { m, o, 1, k, 0 }, { m, o, 2, k, 0 }, { m, o, 3, k, 0 }
#define P01(m, o, k) { m, o, 0, k, 0 }, { m, o, 1, k, 0 }
#define P1(m, o, k) { m, o, 1, k, 0 }

static const struct vop avx_ops[] = {
    P4(1, 0x10, 0), P4(1, 0x11, 0), P4(1, 0x12, 0), P01(1, 0x13, MEMONLY), P01(1, 0x14, 0),
    P01(1, 0x15, 0), P4(1, 0x16, 0), P01(1, 0x17, MEMONLY), P01(1, 0x28, 0), P01(1, 0x29, 0),
    P01(1, 0x2b, MEMONLY), { 1, 0x2a, 2, GRM, 0 }, { 1, 0x2a, 3, GRM, 0 }, { 1, 0x2c, 2, GREG, 0 },
    { 1, 0x2c, 3, GREG, 0 }, { 1, 0x2d, 2, GREG, 0 }, { 1, 0x2d, 3, GREG, 0 }, P01(1, 0x2e, 0),
    P01(1, 0x2f, 0), P01(1, 0x50, GREG | REGONLY), P4(1, 0x51, 0), P01(1, 0x54, 0), P01(1, 0x55, 0),
    P01(1, 0x56, 0), P01(1, 0x57, 0), P4(1, 0x58, 0), P4(1, 0x59, 0), P4(1, 0x5a, 0),
    { 1, 0x5b, 0, 0, 0 }, { 1, 0x5b, 1, 0, 0 }, { 1, 0x5b, 2, 0, 0 }, P4(1, 0x5c, 0), P4(1, 0x5d, 0),
    P4(1, 0x5e, 0), P4(1, 0x5f, 0),
    P1(1, 0x60, 0), P1(1, 0x61, 0), P1(1, 0x62, 0), P1(1, 0x63, 0), P1(1, 0x64, 0), P1(1, 0x65, 0),
    P1(1, 0x66, 0), P1(1, 0x67, 0), P1(1, 0x68, 0), P1(1, 0x69, 0), P1(1, 0x6a, 0), P1(1, 0x6b, 0),
    P1(1, 0x6c, 0), P1(1, 0x6d, 0), P1(1, 0x6e, GRM), P1(1, 0x6f, 0), { 1, 0x6f, 2, 0, 0 },
    P1(1, 0x70, IMM), { 1, 0x70, 2, IMM, 0 }, { 1, 0x70, 3, IMM, 0 },
    { 1, 0x71, 1, IMM | REGONLY | SUBOP, 2 }, { 1, 0x71, 1, IMM | REGONLY | SUBOP, 4 },
    { 1, 0x71, 1, IMM | REGONLY | SUBOP, 6 }, { 1, 0x72, 1, IMM | REGONLY | SUBOP, 2 },
    { 1, 0x72, 1, IMM | REGONLY | SUBOP, 4 }, { 1, 0x72, 1, IMM | REGONLY | SUBOP, 6 },
    { 1, 0x73, 1, IMM | REGONLY | SUBOP, 2 }, { 1, 0x73, 1, IMM | REGONLY | SUBOP, 3 },
    { 1, 0x73, 1, IMM | REGONLY | SUBOP, 6 }, { 1, 0x73, 1, IMM | REGONLY | SUBOP, 7 },
    P1(1, 0x74, 0), P1(1, 0x75, 0), P1(1, 0x76, 0), P1(1, 0x7c, 0), { 1, 0x7c, 3, 0, 0 },
    P1(1, 0x7d, 0), { 1, 0x7d, 3, 0, 0 }, P1(1, 0x7e, GRM), { 1, 0x7e, 2, 0, 0 }, P1(1, 0x7f, 0),
    { 1, 0x7f, 2, 0, 0 }, P4(1, 0xc2, IMM), P1(1, 0xc4, GRM | IMM), P1(1, 0xc5, GREG | REGONLY | IMM),
    P01(1, 0xc6, IMM), P1(1, 0xd0, 0), { 1, 0xd0, 3, 0, 0 }, P1(1, 0xd1, 0), P1(1, 0xd2, 0),
    P1(1, 0xd3, 0), P1(1, 0xd4, 0), P1(1, 0xd5, 0), P1(1, 0xd6, 0), P1(1, 0xd7, GREG | REGONLY),
    P1(1, 0xd8, 0), P1(1, 0xd9, 0), P1(1, 0xda, 0), P1(1, 0xdb, 0), P1(1, 0xdc, 0), P1(1, 0xdd, 0),
    P1(1, 0xde, 0), P1(1, 0xdf, 0), P1(1, 0xe0, 0), P1(1, 0xe1, 0), P1(1, 0xe2, 0), P1(1, 0xe3, 0),
    P1(1, 0xe4, 0), P1(1, 0xe5, 0), P1(1, 0xe6, 0), { 1, 0xe6, 2, 0, 0 }, { 1, 0xe6, 3, 0, 0 },
    P1(1, 0xe7, MEMONLY), P1(1, 0xe8, 0), P1(1, 0xe9, 0), P1(1, 0xea, 0), P1(1, 0xeb, 0),
    P1(1, 0xec, 0), P1(1, 0xed, 0), P1(1, 0xee, 0), P1(1, 0xef, 0), { 1, 0xf0, 3, MEMONLY, 0 },
    P1(1, 0xf1, 0), P1(1, 0xf2, 0), P1(1, 0xf3, 0), P1(1, 0xf4, 0), P1(1, 0xf5, 0), P1(1, 0xf6, 0),
    P1(1, 0xf8, 0), P1(1, 0xf9, 0), P1(1, 0xfa, 0), P1(1, 0xfb, 0), P1(1, 0xfc, 0), P1(1, 0xfd, 0),
    P1(1, 0xfe, 0),
};

static const struct vop avx_ops38[] = {
    P1(2, 0x00, 0), P1(2, 0x01, 0), P1(2, 0x02, 0), P1(2, 0x03, 0), P1(2, 0x04, 0), P1(2, 0x05, 0),
    P1(2, 0x06, 0), P1(2, 0x07, 0), P1(2, 0x08, 0), P1(2, 0x09, 0), P1(2, 0x0a, 0), P1(2, 0x0b, 0),
    P1(2, 0x0c, 0), P1(2, 0x0d, 0), P1(2, 0x0e, 0), P1(2, 0x0f, 0), P1(2, 0x16, 0), P1(2, 0x17, 0),
    P1(2, 0x18, 0), P1(2, 0x19, 0), P1(2, 0x1a, MEMONLY), P1(2, 0x1c, 0), P1(2, 0x1d, 0),
    P1(2, 0x1e, 0), P1(2, 0x20, 0), P1(2, 0x21, 0), P1(2, 0x22, 0), P1(2, 0x23, 0), P1(2, 0x24, 0),
    P1(2, 0x25, 0), P1(2, 0x28, 0), P1(2, 0x29, 0), P1(2, 0x2a, MEMONLY), P1(2, 0x2b, 0),
    P1(2, 0x2c, MEMONLY), P1(2, 0x2d, MEMONLY), P1(2, 0x2e, MEMONLY), P1(2, 0x2f, MEMONLY),
    P1(2, 0x30, 0), P1(2, 0x31, 0), P1(2, 0x32, 0), P1(2, 0x33, 0), P1(2, 0x34, 0), P1(2, 0x35, 0),
    P1(2, 0x36, 0), P1(2, 0x37, 0), P1(2, 0x38, 0), P1(2, 0x39, 0), P1(2, 0x3a, 0), P1(2, 0x3b, 0),
    P1(2, 0x3c, 0), P1(2, 0x3d, 0), P1(2, 0x3e, 0), P1(2, 0x3f, 0), P1(2, 0x40, 0), P1(2, 0x41, 0),
    P1(2, 0x45, 0), P1(2, 0x46, 0), P1(2, 0x47, 0), P1(2, 0x58, 0), P1(2, 0x59, 0),
    P1(2, 0x5a, MEMONLY), P1(2, 0x78, 0), P1(2, 0x79, 0), P1(2, 0x8c, MEMONLY), P1(2, 0x8e, MEMONLY),
};

static const struct vop avx_ops3a[] = {
    P1(3, 0x00, IMM), P1(3, 0x01, IMM), P1(3, 0x02, IMM), P1(3, 0x04, IMM), P1(3, 0x05, IMM),
    P1(3, 0x06, IMM), P1(3, 0x08, IMM), P1(3, 0x09, IMM), P1(3, 0x0a, IMM), P1(3, 0x0b, IMM),
    P1(3, 0x0c, IMM), P1(3, 0x0d, IMM), P1(3, 0x0e, IMM), P1(3, 0x0f, IMM), P1(3, 0x14, IMM | GRM),
    P1(3, 0x15, IMM | GRM), P1(3, 0x16, IMM | GRM), P1(3, 0x17, IMM | GRM), P1(3, 0x18, IMM),
    P1(3, 0x19, IMM), P1(3, 0x20, IMM | GRM), P1(3, 0x21, IMM), P1(3, 0x22, IMM | GRM),
    P1(3, 0x38, IMM), P1(3, 0x39, IMM), P1(3, 0x40, IMM), P1(3, 0x41, IMM), P1(3, 0x42, IMM),
    P1(3, 0x46, IMM), P1(3, 0x4a, IMM), P1(3, 0x4b, IMM), P1(3, 0x4c, IMM),
    P1(3, 0x60, IMM | RAXRDX), P1(3, 0x61, IMM | RAXRDX), P1(3, 0x62, IMM | RAXRDX),
    P1(3, 0x63, IMM | RAXRDX),
};

/* FMA3 (every 132/213/231 form, packed and scalar, W picks double) and F16C */
static const struct vop fma_ops[] = {
    P1(2, 0x96, 0), P1(2, 0x97, 0), P1(2, 0x98, 0), P1(2, 0x99, 0), P1(2, 0x9a, 0), P1(2, 0x9b, 0),
    P1(2, 0x9c, 0), P1(2, 0x9d, 0), P1(2, 0x9e, 0), P1(2, 0x9f, 0), P1(2, 0xa6, 0), P1(2, 0xa7, 0),
    P1(2, 0xa8, 0), P1(2, 0xa9, 0), P1(2, 0xaa, 0), P1(2, 0xab, 0), P1(2, 0xac, 0), P1(2, 0xad, 0),
    P1(2, 0xae, 0), P1(2, 0xaf, 0), P1(2, 0xb6, 0), P1(2, 0xb7, 0), P1(2, 0xb8, 0), P1(2, 0xb9, 0),
    P1(2, 0xba, 0), P1(2, 0xbb, 0), P1(2, 0xbc, 0), P1(2, 0xbd, 0), P1(2, 0xbe, 0), P1(2, 0xbf, 0),
    P1(2, 0x13, 0), P1(3, 0x1d, IMM),
};

/* YMM0-7 and the data: random bits, floats or doubles (one kind per case), and sometimes
 * small lanes (equal elements, small shift counts and indexes). */
static void fill(uint8_t *data)
{
    int kind = (int)(rnd() % 3);
    bool small = rnd() % 4 == 0;
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 16; j += 8) {
            uint64_t a = small ? (rnd() % 40) | (rnd() % 40) << 32 : rnd_lane(kind);
            uint64_t b = small ? (rnd() % 40) | (rnd() % 40) << 32 : rnd_lane(kind);
            memcpy(&xmm_in[k][j], &a, 8);
            memcpy(&ymmh_in[k][j], &b, 8);
        }
    for (int k = 0; k < DATA_SIZE; k += 8) {
        uint64_t v = small ? (rnd() % 40) | (rnd() % 40) << 32 : rnd_lane(kind);
        memcpy(data + k, &v, 8);
    }
}

/* A memory displacement from rbx: 32-aligned, or (a third of the time) anywhere */
static int rnd_disp(void)
{
    int d = 32 * (int)(rnd() % 4) - 64;
    if (rnd() % 3 == 0)
        d += (int)(rnd() % 32);
    return d;
}

/* C4 VEX: R/X/B inverted, map; W, vvvv inverted, L, pp */
static void emit_vex(struct code *c, const struct vop *o, bool w, int l, int vvvv, int reg, int rm,
                     bool mem)
{
    emit1(c, 0xc4);
    emit1(c, (uint8_t)(((reg & 8) ? 0 : 0x80) | 0x40 | (!mem && (rm & 8) ? 0 : 0x20) | o->map));
    emit1(c, (uint8_t)((w ? 0x80 : 0) | (~vvvv & 15) << 3 | l << 2 | o->pp));
    emit1(c, o->op);
}

static uint64_t gen_table(struct code *c, struct regs *in, uint8_t *data, const struct vop *tab, int n)
{
    const struct vop *o = &tab[rnd() % (unsigned)n];
    fill(data);
    bool mem = (o->kinds & MEMONLY) || (!(o->kinds & REGONLY) && rnd() % 3 == 0);
    if (rnd() % 32 == 0)
        mem = !mem;   /* the form that does not exist: #UD on both sides */
    int reg = (int)(rnd() % 8), rm = (int)(rnd() % 8), vvvv = rnd() % 3 == 0 ? 0 : (int)(rnd() % 8);
    if (o->kinds & GREG)
        reg = rnd_reg(true);
    if ((o->kinds & GRM) && !mem)
        rm = rnd_reg(true);
    if (o->kinds & SUBOP)
        reg = o->sub;
    if (o->kinds & RAXRDX) {
        static const int lens[] = { 0, 1, 3, 8, 15, 16, 17, -3, 100 };
        in->r[R_AX] = (uint64_t)(int64_t)lens[rnd() % 9];
        in->r[R_DX] = (uint64_t)(int64_t)lens[rnd() % 9];
    }
    /* small general registers for the GPR sources (PINSR, CVTSI2SS) */
    for (int r = 0; r < 16; r++)
        if (r != R_SP && r != R_BX && rnd() % 4 == 0)
            in->r[r] = rnd() % 100;
    bool w = rnd() % 2;
    int l = o->kinds & L128 ? 0 : (int)(rnd() % 2);
    emit_vex(c, o, w, l, vvvv, reg, rm, mem);
    if (mem) {
        emit1(c, (uint8_t)(0x43 | (reg & 7) << 3));
        emit1(c, (uint8_t)rnd_disp());
    } else {
        emit1(c, (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7)));
    }
    if (o->kinds & IMM) {
        uint8_t imm = (uint8_t)rnd();
        if (o->map == 3 && o->op >= 0x4a && o->op <= 0x4c)
            imm &= 0x7f;                /* the mask register (imm[7:4]) among YMM0-7 */
        if (o->map == 1 && o->op >= 0x71 && o->op <= 0x73 && rnd() % 2)
            imm %= 70;                  /* shift counts around the lane widths */
        emit1(c, imm);
    }
    return 0x8d5;
}

static uint64_t gen_avx(struct code *c, struct regs *in, uint8_t *data)
{
    return gen_table(c, in, data, avx_ops, (int)(sizeof(avx_ops) / sizeof(avx_ops[0])));
}

static uint64_t gen_avx38(struct code *c, struct regs *in, uint8_t *data)
{
    return gen_table(c, in, data, avx_ops38, (int)(sizeof(avx_ops38) / sizeof(avx_ops38[0])));
}

static uint64_t gen_avx3a(struct code *c, struct regs *in, uint8_t *data)
{
    return gen_table(c, in, data, avx_ops3a, (int)(sizeof(avx_ops3a) / sizeof(avx_ops3a[0])));
}

static uint64_t gen_fma(struct code *c, struct regs *in, uint8_t *data)
{
    return gen_table(c, in, data, fma_ops, (int)(sizeof(fma_ops) / sizeof(fma_ops[0])));
}

/* AES-NI and PCLMULQDQ, legacy SSE (aligned memory operands) and VEX.128 forms */
static const struct vop aes_ops[] = {
    P1(2, 0xdb, L128), P1(2, 0xdc, L128), P1(2, 0xdd, L128), P1(2, 0xde, L128), P1(2, 0xdf, L128),
    P1(3, 0xdf, IMM | L128), P1(3, 0x44, IMM | L128),
};

static uint64_t gen_aes(struct code *c, struct regs *in, uint8_t *data)
{
    int n = (int)(sizeof(aes_ops) / sizeof(aes_ops[0]));
    if (rnd() % 2)
        return gen_table(c, in, data, aes_ops, n);
    const struct vop *o = &aes_ops[rnd() % (unsigned)n];
    fill(data);
    bool mem = rnd() % 3 == 0;
    int reg = (int)(rnd() % 8), rm = (int)(rnd() % 8), disp = rnd_disp();
    emit1(c, 0x66);
    emit1(c, 0x0f);
    emit1(c, o->map == 2 ? 0x38 : 0x3a);
    emit1(c, o->op);
    if (mem) {
        emit1(c, (uint8_t)(0x43 | reg << 3));
        emit1(c, (uint8_t)disp);
    } else {
        emit1(c, (uint8_t)(0xc0 | reg << 3 | rm));
    }
    if (o->kinds & IMM)
        emit1(c, (uint8_t)rnd());
    return 0x8d5;
}

/* AVX2 gathers: dword or qword indexes in a vector register (VSIB), scale 1-8, a mask with
 * random signs; indexes mostly inside the data, sometimes far out (a fault on both sides), and
 * sometimes two of the three registers the same (#UD). */
static uint64_t gen_gather(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    fill(data);
    uint8_t op = (uint8_t)(0x90 + rnd() % 4);
    bool w = rnd() % 2, far = rnd() % 16 == 0;
    int l = (int)(rnd() % 2), dst = (int)(rnd() % 8), mask = (int)(rnd() % 8), ix = (int)(rnd() % 8);
    while (rnd() % 8 && (mask == dst || ix == dst || ix == mask)) {
        mask = (int)(rnd() % 8);
        ix = (int)(rnd() % 8);
    }
    for (int j = 0; j < 16; j += 4) {
        int32_t a = far ? (int32_t)rnd() : (int32_t)(rnd() % 64) - 16;
        int32_t b = far ? (int32_t)rnd() : (int32_t)(rnd() % 64) - 16;
        if (op & 1) {   /* qword indexes: sign-extend the dword into the pair */
            int64_t qa = a, qb = b;
            if (j % 8 == 0) {
                memcpy(&xmm_in[ix][j], &qa, 8);
                memcpy(&ymmh_in[ix][j], &qb, 8);
            }
        } else {
            memcpy(&xmm_in[ix][j], &a, 4);
            memcpy(&ymmh_in[ix][j], &b, 4);
        }
    }
    for (int j = 0; j < 16; j++) {   /* mask: random signs */
        xmm_in[mask][j] = (uint8_t)(rnd() % 3 ? 0x80 : 0x00);
        ymmh_in[mask][j] = (uint8_t)(rnd() % 3 ? 0x80 : 0x00);
    }
    emit1(c, 0xc4);
    emit1(c, (uint8_t)(0x80 | ((ix & 8) ? 0 : 0x40) | 0x20 | 2));
    emit1(c, (uint8_t)((w ? 0x80 : 0) | (~mask & 15) << 3 | l << 2 | 1));
    emit1(c, op);
    emit1(c, (uint8_t)(0x44 | (dst & 7) << 3));                     /* mod 01, rm 100: SIB */
    emit1(c, (uint8_t)((rnd() % 4) << 6 | (ix & 7) << 3 | 3));     /* scale, index, base rbx */
    emit1(c, (uint8_t)(rnd() % 64));
    return 0x8d5;
}

/* VZEROUPPER / VZEROALL after a legacy-SSE write (which keeps the upper half) */
static uint64_t gen_zero(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    fill(data);
    emit(c, "\x66\x0f\xef\xc9", 4);    /* pxor xmm1, xmm1: bits 255:128 of ymm1 stay */
    emit(c, rnd() % 2 ? "\xc5\xf8\x77" : "\xc5\xfc\x77", 3);
    return 0x8d5;
}

/* XSAVE/XSAVEOPT of the SSE and AVX components, a change of the registers, and XRSTOR (or
 * XRSTOR with some components in XSTATE_BV clear: their init state); XGETBV's x87/SSE/AVX
 * bits. The x87 component is left out: the native one is the test process's own. */
static uint64_t gen_xsave(struct code *c, struct regs *in, uint8_t *data)
{
    fill(data);
    memset(data + 1024 - 64, 0, 1024);           /* the area at [rbx-64]: a zero header */
    in->r[R_AX] = 6;
    in->r[R_DX] = 0;
    /* a known MXCSR first: the native one has the flags of whatever ran before */
    memcpy(data + 1024 + 1000, "\x80\x1f\0\0", 4);
    emit(c, "\x0f\xae\x93\xe8\x03\x00\x00", 7);   /* ldmxcsr [rbx+1000] */
    emit(c, rnd() % 2 ? "\x0f\xae\x63\xc0" : "\x0f\xae\x73\xc0", 4);   /* xsave/xsaveopt [rbx-64] */
    emit(c, "\xc5\xfd\xef\xc0", 4);              /* vpxor ymm0, ymm0, ymm0 */
    emit(c, "\xc5\xf5\xfe\xcb", 4);              /* vpaddd ymm1, ymm1, ymm3 */
    emit(c, "\x66\x0f\xef\xd2", 4);              /* pxor xmm2, xmm2 */
    if (rnd() % 2) {
        /* clear XSTATE_BV bit 1 or 2: that component comes back in its init state */
        emit(c, "\x80\xa3\xc0\x01\x00\x00", 2);  /* and byte [rbx+0x1c0], imm8 */
        emit(c, "\xc0\x01\x00\x00", 4);
        emit1(c, (uint8_t)(rnd() % 2 ? 0xfd : 0xfb));
    }
    emit(c, "\x0f\xae\x6b\xc0", 4);              /* xrstor [rbx-64] */
    emit(c, "\x31\xc9\x0f\x01\xd0\x83\xe0\x07", 8);   /* xor ecx, ecx; xgetbv; and eax, 7 */
    return 0x8d5;
}

static unsigned cases(void)
{
    const char *e = getenv("QKVM_EMU_CASES");
    return e ? (unsigned)atoi(e) : 700;
}

/* XSAVE's header and MXCSR_MASK say what the CPU tracks, not what the guest did: XSTATE_BV
 * (the host may leave a component it sees in its init state out) and the mask of MXCSR bits
 * the CPU supports. The rest of the area is compared. */
static void xsave_mask(struct result *a, const struct result *b)
{
    uint8_t *area = a->data + 1024 - 64;
    const uint8_t *other = b->data + 1024 - 64;
    memcpy(area + 28, other + 28, 4);
    memcpy(area + 512, other + 512, 8);
}

static void run_gen(const char *name, gen_fn gen, uint64_t seed, bool xsave)
{
    const char *e = getenv("QKVM_EMU_SEED");
    rng_state = (e ? strtoull(e, NULL, 0) : 0x5eed0000ull) ^ seed;
    int bad = 0;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    use_xmm = use_ymm = 1;
    for (unsigned k = 0; k < cases() && bad < 5; k++) {
        struct code c = { .n = 0 };
        struct regs in;
        rnd_regs(&in);
        uint64_t fmask = gen(&c, &in, data);
        for (int pass = 0; pass < 2 && bad < 5; pass++) {
            harness_jit = pass ? 0 : -1;
            harness_run(c.b, c.n, &in, data, &nat, &emu);
            if (xsave)
                xsave_mask(&emu, &nat);
            bool ok = result_match(pass ? name : "interpreted", &c, &in, &nat, &emu, fmask, 0xffff, 8);
            if (ok && nat.vec < 0 && memcmp(nat.ymmh, emu.ymmh, sizeof(nat.ymmh))) {
                ok = false;
                printf("# %s: upper halves differ; code", pass ? name : "interpreted");
                for (int j = 0; j < c.n; j++)
                    printf(" %02x", c.b[j]);
                printf("\n");
                for (int r = 0; r < 8; r++) {
                    printf("#  ymm%d hi native ", r);
                    for (int j = 15; j >= 0; j--)
                        printf("%02x", nat.ymmh[r][j]);
                    printf(" emu ");
                    for (int j = 15; j >= 0; j--)
                        printf("%02x", emu.ymmh[r][j]);
                    printf("\n");
                }
            }
            if (!ok)
                bad++;
        }
    }
    harness_jit = -1;
    use_xmm = use_ymm = 0;
    assert_int_equal(bad, 0);
}

static void test_avx(void **s) { (void)s; run_gen("avx-0f", gen_avx, 51, false); }
static void test_avx38(void **s) { (void)s; run_gen("avx-0f38", gen_avx38, 52, false); }
static void test_avx3a(void **s) { (void)s; run_gen("avx-0f3a", gen_avx3a, 53, false); }
static void test_fma(void **s) { (void)s; run_gen("fma-f16c", gen_fma, 54, false); }
static void test_aes(void **s) { (void)s; run_gen("aes-pclmul", gen_aes, 58, false); }
static void test_gather(void **s) { (void)s; run_gen("gather", gen_gather, 57, false); }
static void test_vzero(void **s) { (void)s; run_gen("vzeroupper", gen_zero, 55, false); }
static void test_xsave(void **s) { (void)s; run_gen("xsave", gen_xsave, 56, true); }

/* Runs code in the emulator alone (CR4.OSXSAVE, XCR0 = 7 at the start): what the host cannot
 * be asked (CPL 0 instructions, this CPU's own CPUID). Returns the exception vector, or -1
 * when the code ran to its end; in->r gets the registers. */
static int emu_only_mode(const char *code, int len, struct regs *in, bool compat)
{
    uint8_t *cp = hmem + OFF_CODE;
    memcpy(cp, code, len);
    cp[len] = 0xf4;
    emu_vm_invalidate(hvm, 0, HSIZE);
    struct cpu_state s;
    harness_state(&s, in);
    s.cr4 |= 0x40000;
    uint64_t start = HBASE + OFF_CODE;
    if (compat) {
        /* 32-bit code (compatibility mode) at its physical address: the low 4 MiB identity
         * mapped beside the harness's mapping at HBASE */
        uint64_t *pml4 = (uint64_t *)(hmem + OFF_PML4), *pdpt = (uint64_t *)(hmem + 0x7000);
        uint64_t *pd = (uint64_t *)(hmem + 0x8000);
        pml4[0] = 0x7000 | 3;
        pdpt[0] = 0x8000 | 3;
        pd[0] = 0x83;
        pd[1] = 0x200000 | 0x83;
        s.seg[SEG_CS] = cpu_segment_flat(0x08, 0xb, false);
        start = OFF_CODE;
        s.rip = start;
    }
    emu_cpu_set_state(hcpu, &s);
    assert_int_equal(emu_cpu_set_xcr0(hcpu, 7), 0);
    emu_vm_set_jit(hvm, -1);
    emu_cpu_run(hcpu);
    uint64_t rip = emu_cpu_rip(hcpu);
    memcpy(in->r, emu_cpu_gpr(hcpu), sizeof(in->r));
    if (rip == start + (uint64_t)len + 1)
        return -1;
    return (int)((rip - 1 - HBASE - OFF_STUBS) / 4);
}

static int emu_only(const char *code, int len, struct regs *in)
{
    return emu_only_mode(code, len, in, false);
}

/* VEX in 32-bit code: C4/C5 followed by what would be a register operand of LES/LDS. Eight
 * registers (R/X/B and vvvv[3] ignored), VEX.W still picks the element type. */
static void test_vex_32bit(void **st)
{
    (void)st;
    struct regs r;
    rnd_regs(&r);
    memset(xmm_in, 0, sizeof(xmm_in));
    float one = 1.5f, two = 2.0f, three = 0.25f;
    double d1 = 3.0, d2 = 0.5, d3 = -1.0;
    uint8_t *x1 = emu_cpu_xmm(hcpu, 1), *x2 = emu_cpu_xmm(hcpu, 2), *x0 = emu_cpu_xmm(hcpu, 0);
    /* vfmadd231ps xmm0, xmm1 (vvvv 1001b: bit 3 ignored), xmm2; then vfmadd231pd xmm3, xmm1, xmm2
     * (W1) on doubles; vpaddd ymm4, ymm1, ymm2 */
    static const char code[] = "\xc4\xe2\x31\xb8\xc2" "\xc4\xe2\xf1\xb8\xda" "\xc5\xf5\xfe\xe2";
    /* a first run sets up the mode and XCR0; then the registers, then the code from its start */
    assert_int_equal(emu_only_mode("", 0, &r, true), -1);
    memcpy(x0, &three, 4);
    memcpy(x1, &one, 4);
    memcpy(x2, &two, 4);
    uint8_t *x3 = emu_cpu_xmm(hcpu, 3);
    memcpy(x3, &d3, 8);
    memcpy(x1 + 8, &d1, 8);
    memcpy(x2 + 8, &d2, 8);
    memcpy(emu_cpu_ymmh(hcpu, 1), "\x01\0\0\0", 4);
    memcpy(emu_cpu_ymmh(hcpu, 2), "\x02\0\0\0", 4);
    emu_vm_invalidate(hvm, 0, HSIZE);
    memcpy(hmem + OFF_CODE, code, sizeof(code) - 1);
    hmem[OFF_CODE + sizeof(code) - 1] = 0xf4;
    struct cpu_state s;
    emu_cpu_get_state(hcpu, &s);
    s.rip = OFF_CODE;
    emu_cpu_set_state(hcpu, &s);
    emu_cpu_run(hcpu);
    assert_int_equal(emu_cpu_rip(hcpu), OFF_CODE + sizeof(code));
    float f0;
    memcpy(&f0, x0, 4);
    assert_true(f0 == 1.5f * 2.0f + 0.25f);
    double dd;
    memcpy(&dd, x3 + 8, 8);
    assert_true(dd == 3.0 * 0.5 + 0.0);      /* x3's upper double was 0: 3.0 * 0.5 + 0 */
    uint32_t hi;
    memcpy(&hi, emu_cpu_ymmh(hcpu, 4), 4);
    assert_int_equal(hi, 3);                 /* 256 bits in 32-bit code: 1 + 2 */
}

/* CPUID leaf 0xD and OSXSAVE as this CPU gives them, and XSETBV: what it accepts, and the
 * #UD of AVX instructions once XCR0 drops the AVX state. */
static void test_xsave_cpuid_xsetbv(void **st)
{
    (void)st;
    struct regs r;
    rnd_regs(&r);
    r.r[R_AX] = 0xd, r.r[R_CX] = 0;
    assert_int_equal(emu_only("\x0f\xa2", 2, &r), -1);   /* cpuid */
    assert_int_equal(r.r[R_AX], 0x207);                     /* x87 SSE AVX PKRU */
    assert_int_equal(r.r[R_BX], 832);                       /* the size XCR0 = 7 needs */
    assert_int_equal(r.r[R_CX], 2696);                      /* PKRU: 8 bytes at 2688 */
    r.r[R_AX] = 0xd, r.r[R_CX] = 2;
    assert_int_equal(emu_only("\x0f\xa2", 2, &r), -1);
    assert_int_equal(r.r[R_AX], 256);                       /* AVX: 256 bytes at 576 */
    assert_int_equal(r.r[R_BX], 576);
    r.r[R_AX] = 0xd, r.r[R_CX] = 1;
    assert_int_equal(emu_only("\x0f\xa2", 2, &r), -1);
    assert_int_equal(r.r[R_AX], 1);                         /* XSAVEOPT */
    r.r[R_AX] = 1, r.r[R_CX] = 0;
    assert_int_equal(emu_only("\x0f\xa2", 2, &r), -1);
    assert_int_equal(r.r[R_CX] >> 26 & 7, 7);               /* XSAVE OSXSAVE AVX */
    /* XSETBV: x87 must stay, AVX needs SSE, nothing beyond bit 2 but PKRU (bit 9), ECX 0 only */
    static const struct { uint32_t eax, ecx; int vec; } xs[] = {
        { 7, 0, -1 }, { 3, 0, -1 }, { 1, 0, -1 }, { 6, 0, 13 }, { 5, 0, 13 }, { 0xf, 0, 13 },
        { 0x20f, 0, 13 }, { 0x107, 0, 13 }, { 0x207, 0, -1 }, { 7, 1, 13 },
    };
    for (size_t k = 0; k < sizeof(xs) / sizeof(xs[0]); k++) {
        r.r[R_AX] = xs[k].eax, r.r[R_CX] = xs[k].ecx, r.r[R_DX] = 0;
        assert_int_equal(emu_only("\x0f\x01\xd1", 3, &r), xs[k].vec);
    }
    /* XCR0 = 3: VEX vector instructions #UD, legacy SSE still runs, XGETBV says 3 */
    r.r[R_AX] = 3, r.r[R_CX] = 0, r.r[R_DX] = 0;
    assert_int_equal(emu_only("\x0f\x01\xd1\xc5\xf9\xef\xc0", 7, &r), 6);   /* xsetbv; vpxor */
    r.r[R_AX] = 3, r.r[R_CX] = 0, r.r[R_DX] = 0;
    assert_int_equal(emu_only("\x0f\x01\xd1\x66\x0f\xef\xc0\x0f\x01\xd0", 10, &r), -1);
    assert_int_equal(r.r[R_AX], 3);
}

/* The host must have what is compared against: without it the native side would only #UD. */
static int setup(void **s)
{
    (void)s;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
        !__builtin_cpu_supports("f16c") || !__builtin_cpu_supports("aes") ||
        !__builtin_cpu_supports("pclmul"))
        return -1;
    if (harness_init())
        return -1;
    char err[200];
    return emu_vm_set_cpu_model(hvm, "max", err, sizeof(err)) ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_avx), cmocka_unit_test(test_avx38), cmocka_unit_test(test_avx3a),
        cmocka_unit_test(test_fma), cmocka_unit_test(test_gather), cmocka_unit_test(test_aes), cmocka_unit_test(test_vzero), cmocka_unit_test(test_xsave),
        cmocka_unit_test(test_xsave_cpuid_xsetbv), cmocka_unit_test(test_vex_32bit),
    };
    return cmocka_run_group_tests_name("emu_avx", tests, setup, NULL);
}
