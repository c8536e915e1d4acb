/* Differential tests of the software CPU's SSE/SSE2 (integer and float) and x87 instructions:
 * random operands (with zeros, infinities, NaNs), run natively and emulated, XMM registers,
 * general registers, memory and flags compared. QKVM_EMU_SEED / QKVM_EMU_CASES as in test_emu. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "emu_harness.h"

typedef uint64_t (*gen_fn)(struct code *c, struct regs *in, uint8_t *data);

static uint32_t rnd_f32(void)
{
    static const float special[] = { 0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 3.0f, 1e30f, -1e-30f, INFINITY,
                                     -INFINITY, NAN, 2147483648.0f, -2147483904.0f, 1e-40f };
    float f;
    switch (rnd() % 4) {
    case 0: f = special[rnd() % (sizeof(special) / sizeof(special[0]))]; break;
    case 1: f = (float)((int64_t)(rnd() % 2001) - 1000) / 8.0f; break;
    default: f = (float)((double)(int64_t)rnd() / 1e15); break;
    }
    uint32_t v;
    memcpy(&v, &f, 4);
    return v;
}

static uint64_t rnd_f64(void)
{
    static const double special[] = { 0.0, -0.0, 1.0, -1.0, 0.1, 3.0, 1e300, -1e-300, INFINITY,
                                      -INFINITY, NAN, 9.3e18, -2147483648.5, 4.9e-324 };
    double d;
    switch (rnd() % 4) {
    case 0: d = special[rnd() % (sizeof(special) / sizeof(special[0]))]; break;
    case 1: d = (double)((int64_t)(rnd() % 2001) - 1000) / 8.0; break;
    default: d = (double)(int64_t)rnd() / 1e12; break;
    }
    uint64_t v;
    memcpy(&v, &d, 8);
    return v;
}

/* Fills xmm_in and the data area with floats of one kind, or random bits. */
static void fill(uint8_t *data, int kind)
{
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 16; j += 8) {
            uint64_t v = kind == 1 ? (uint64_t)rnd_f32() | ((uint64_t)rnd_f32() << 32)
                       : kind == 2 ? rnd_f64() : rnd_val();
            memcpy(&xmm_in[k][j], &v, 8);
        }
    for (int k = 0; k < DATA_SIZE; k += 8) {
        uint64_t v = kind == 1 ? (uint64_t)rnd_f32() | ((uint64_t)rnd_f32() << 32)
                   : kind == 2 ? rnd_f64() : rnd_val();
        memcpy(data + k, &v, 8);
    }
}

/* 66 0F op /r with xmm0-7 (or [rbx + 16*n] when mem) */
static void emit_sse(struct code *c, int pfx, int op, int reg, bool mem, int rm)
{
    if (pfx)
        emit1(c, (uint8_t)pfx);
    emit1(c, 0x0f);
    emit1(c, (uint8_t)op);
    if (mem) {
        emit1(c, (uint8_t)(0x43 | (reg << 3)));
        emit1(c, (uint8_t)(16 * (rm & 7)));
    } else {
        emit1(c, (uint8_t)(0xc0 | (reg << 3) | rm));
    }
}

static uint64_t gen_sse_int(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    static const uint8_t ops[] = {
        0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
        0x74, 0x75, 0x76, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd,
        0xde, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed,
        0xee, 0xef, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
        0xfe, 0x6f, 0x7f };
    fill(data, 0);
    int reg = (int)(rnd() % 8), rm = (int)(rnd() % 8);
    bool mem = rnd() % 3 == 0;
    int which = (int)(rnd() % 9);
    /* the CPU starts each run with an empty TLB, and a miss runs the handler: half the time a
     * store to the data page first, so the translated form (jit.c) finds the page there */
    if (rnd() % 2)
        emit(c, "\x80\x0b\x00", 3);   /* or byte [rbx], 0 */
    if (mem && rnd() % 6 == 0)   /* misaligned: #GP for the m128 forms, none for the others */
        in->r[R_BX] += 4;
    /* small shift counts are the interesting ones */
    for (int k = 0; k < 8; k++)
        if (rnd() % 2)
            memset(&xmm_in[k][1], 0, 7), xmm_in[k][0] &= 0x1f;
    if (which < 5) {
        emit_sse(c, 0x66, ops[rnd() % sizeof(ops)], reg, mem, rm);
    } else if (which == 5) {           /* PSHUFD/PSHUFHW/PSHUFLW */
        static const int pf[3] = { 0x66, 0xf3, 0xf2 };
        emit_sse(c, pf[rnd() % 3], 0x70, reg, mem, rm);
        emit1(c, (uint8_t)rnd());
    } else if (which == 6) {           /* shifts by immediate */
        static const int sub[][2] = { { 0x71, 2 }, { 0x71, 4 }, { 0x71, 6 }, { 0x72, 2 }, { 0x72, 4 },
                                      { 0x72, 6 }, { 0x73, 2 }, { 0x73, 6 }, { 0x73, 3 }, { 0x73, 7 } };
        int k = (int)(rnd() % 10);
        emit_sse(c, 0x66, sub[k][0], sub[k][1], false, rm);
        emit1(c, (uint8_t)(rnd() % 40));
    } else if (which == 7) {                      /* to and from general registers */
        int gp = rnd_reg(true);
        switch (rnd() % 5) {
        case 0: emit1(c, 0x66); if (gp >= 8) emit1(c, 0x44); emit(c, "\x0f\xd7", 2); emit1(c, (uint8_t)(0xc0 | (gp & 7) << 3 | rm)); break;
        case 1: emit1(c, 0x66); emit1(c, (uint8_t)(0x48 | (gp >> 3))); emit(c, "\x0f\x6e", 2); emit1(c, (uint8_t)(0xc0 | reg << 3 | (gp & 7))); break;
        case 2: emit1(c, 0x66); emit1(c, (uint8_t)(0x48 | (gp >> 3))); emit(c, "\x0f\x7e", 2); emit1(c, (uint8_t)(0xc0 | reg << 3 | (gp & 7))); break;
        case 3: emit1(c, 0x66); if (gp >= 8) emit1(c, 0x44); emit(c, "\x0f\xc5", 2); emit1(c, (uint8_t)(0xc0 | (gp & 7) << 3 | rm)); emit1(c, (uint8_t)rnd()); break;
        default: emit1(c, 0x66); if (gp >= 8) emit1(c, 0x41); emit(c, "\x0f\xc4", 2); emit1(c, (uint8_t)(0xc0 | reg << 3 | (gp & 7))); emit1(c, (uint8_t)rnd()); break;
        }
    } else {                           /* MOVD/MOVQ with 32- and 64-bit registers and memory, PINSRW m16 */
        static const struct { int pfx, op; } mv[] = { { 0x66, 0x6e }, { 0x66, 0x7e }, { 0xf3, 0x7e },
                                                      { 0x66, 0xd6 }, { 0x66, 0xc4 } };
        int k = (int)(rnd() % 5), gp = rnd_reg(true);
        bool g = k < 2 || k == 4;      /* rm names a general register (else an xmm register) */
        bool w = k < 2 && rnd() % 2, m = rnd() % 2;
        bool b = !m && g && gp >= 8;
        emit1(c, (uint8_t)mv[k].pfx);
        if (w || b)
            emit1(c, (uint8_t)(0x40 | (w ? 8 : 0) | (b ? 1 : 0)));
        emit1(c, 0x0f);
        emit1(c, (uint8_t)mv[k].op);
        if (m) {
            emit1(c, (uint8_t)(0x43 | reg << 3));
            emit1(c, (uint8_t)(8 * (rnd() % 32)));
        } else {
            emit1(c, (uint8_t)(0xc0 | reg << 3 | (g ? gp & 7 : rm)));
        }
        if (mv[k].op == 0xc4)
            emit1(c, (uint8_t)rnd());
    }
    return 0x8d5;
}

static uint64_t gen_sse_float(struct code *c, struct regs *in, uint8_t *data)
{
    static const int pfx[4] = { 0, 0x66, 0xf3, 0xf2 };
    int p = (int)(rnd() % 4);
    fill(data, p == 1 || p == 3 ? 2 : 1);
    int reg = (int)(rnd() % 8), rm = (int)(rnd() % 8);
    bool mem = rnd() % 3 == 0;
    switch (rnd() % 9) {
    case 0: case 1: case 2: {          /* arithmetic, min/max, sqrt */
        static const uint8_t ops[] = { 0x58, 0x59, 0x5c, 0x5d, 0x5e, 0x5f, 0x51 };
        emit_sse(c, pfx[p], ops[rnd() % sizeof(ops)], reg, mem, rm);
        return 0x8d5;
    }
    case 3: {                          /* logic, unpack, shuffle (packed only) */
        static const uint8_t ops[] = { 0x54, 0x55, 0x56, 0x57, 0x14, 0x15, 0xc6 };
        int op = ops[rnd() % sizeof(ops)];
        emit_sse(c, pfx[p & 1], op, reg, mem, rm);
        if (op == 0xc6)
            emit1(c, (uint8_t)rnd());
        return 0x8d5;
    }
    case 4:                            /* compares to masks */
        emit_sse(c, pfx[p], 0xc2, reg, mem, rm);
        emit1(c, (uint8_t)(rnd() % 8));
        return 0x8d5;
    case 5:                            /* (U)COMISS/SD, then a condition on what they set */
        emit_sse(c, pfx[p & 1], 0x2e + (int)(rnd() % 2), reg, mem, rm);
        if (rnd() % 2) {
            emit1(c, 0x0f);            /* setcc al */
            emit1(c, (uint8_t)(0x90 + rnd() % 16));
            emit1(c, 0xc0);
        }
        return 0x8d5;
    case 6: {                          /* conversions between float formats and integers */
        static const struct { int pfx, op; } cv[] = { { 0, 0x5a }, { 0x66, 0x5a }, { 0xf3, 0x5a },
            { 0xf2, 0x5a }, { 0, 0x5b }, { 0x66, 0x5b }, { 0xf3, 0x5b }, { 0x66, 0xe6 },
            { 0xf3, 0xe6 }, { 0xf2, 0xe6 } };
        int k = (int)(rnd() % 10);
        emit_sse(c, cv[k].pfx, cv[k].op, reg, mem, rm);
        return 0x8d5;
    }
    case 7: {                          /* to and from general registers */
        int gp = rnd_reg(true);
        int f = rnd() % 2 ? 0xf3 : 0xf2;
        bool w = rnd() % 2;
        emit1(c, (uint8_t)f);
        if (w || gp >= 8)
            emit1(c, (uint8_t)(0x40 | (w ? 8 : 0) | (gp >> 3) << 2));
        switch (rnd() % 3) {
        case 0: emit(c, "\x0f\x2c", 2); break;
        case 1: emit(c, "\x0f\x2d", 2); break;
        default:
            c->n -= (w || gp >= 8) ? 2 : 1;
            emit1(c, (uint8_t)f);
            if (w || gp >= 8)
                emit1(c, (uint8_t)(0x40 | (w ? 8 : 0) | (gp >> 3)));
            emit(c, "\x0f\x2a", 2);
            emit1(c, (uint8_t)(0xc0 | reg << 3 | (gp & 7)));
            return 0x8d5;
        }
        emit1(c, (uint8_t)(0xc0 | (gp & 7) << 3 | rm));
        (void)in;
        return 0x8d5;
    }
    default: {                         /* moves */
        static const struct { int pfx, op; } mv[] = { { 0, 0x10 }, { 0x66, 0x10 }, { 0xf3, 0x10 },
            { 0xf2, 0x10 }, { 0, 0x11 }, { 0xf3, 0x11 }, { 0xf2, 0x11 }, { 0, 0x28 }, { 0x66, 0x29 },
            { 0, 0x12 }, { 0x66, 0x16 }, { 0, 0x16 }, { 0x66, 0x13 }, { 0, 0x17 }, { 0xf3, 0x7e },
            { 0x66, 0xd6 }, { 0x66, 0x6f }, { 0xf3, 0x6f }, { 0xf3, 0x7f }, { 0x66, 0x7f },
            { 0, 0x2b }, { 0x66, 0x2b }, { 0x66, 0xe7 } };
        int k = (int)(rnd() % (sizeof(mv) / sizeof(mv[0])));
        bool need_mem = mv[k].op == 0x13 || mv[k].op == 0x17 || mv[k].op == 0x2b || mv[k].op == 0xe7;
        /* the CPU starts each run with an empty TLB, and a miss runs the handler: half the
         * time a store to the data page first, so the translated move finds the page there */
        if (rnd() % 2)
            emit(c, "\x80\x0b\x00", 3);   /* or byte [rbx], 0 */
        emit_sse(c, mv[k].pfx, mv[k].op, reg, mem || need_mem, rm);
        if (rnd() % 4 == 0)   /* misaligned: the aligned forms' #GP, inline as in the handler */
            in->r[R_BX] += 8;
        if (!mem && !need_mem && (mv[k].op == 0x50))
            return 0x8d5;
        return 0x8d5;
    }
    }
}

/* x87: a balanced sequence (what is pushed is popped) after FNINIT, results stored to memory. */
static uint64_t gen_x87(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    fill(data, 2);
    for (int k = 0; k < 64; k += 4) {       /* some small integers for FILD */
        int32_t v = (int32_t)(rnd() % 2001) - 1000;
        memcpy(data + 1024 + 512 + k, &v, 4);
    }
    emit(c, "\xdb\xe3", 2);                     /* fninit */
    int a = (int)(rnd() % 8), b = (int)(rnd() % 8), d = 8 + (int)(rnd() % 8);
    switch (rnd() % 6) {
    case 0: {                                   /* binary arithmetic, popping */
        static const uint8_t ops[] = { 0xc1, 0xc9, 0xe1, 0xe9, 0xf1, 0xf9 };
        emit1(c, 0xdd); emit1(c, (uint8_t)(0x43)); emit1(c, (uint8_t)(8 * a));     /* fld m64 */
        emit1(c, 0xdd); emit1(c, (uint8_t)(0x43)); emit1(c, (uint8_t)(8 * b));
        emit1(c, 0xde); emit1(c, ops[rnd() % sizeof(ops)]);
        break;
    }
    case 1: {                                   /* memory operand arithmetic, float and double */
        int sub = (int)(rnd() % 8);
        if (sub == 2 || sub == 3)
            sub = 0;
        emit1(c, 0xdd); emit1(c, 0x43); emit1(c, (uint8_t)(8 * a));
        emit1(c, rnd() % 2 ? 0xdc : 0xd8); emit1(c, (uint8_t)(0x43 | sub << 3)); emit1(c, (uint8_t)(8 * b));
        break;
    }
    case 2: {                                   /* unary */
        static const uint8_t ops[] = { 0xe0, 0xe1, 0xfa, 0xfc };
        emit1(c, 0xdd); emit1(c, 0x43); emit1(c, (uint8_t)(8 * a));
        emit1(c, 0xd9); emit1(c, ops[rnd() % sizeof(ops)]);
        break;
    }
    case 3:                                     /* integer load/store round trip */
        emit1(c, 0xdb); emit1(c, 0x83); emit_imm(c, (uint64_t)(512 + 4 * a), 4);   /* fild m32 */
        emit1(c, 0xdd); emit1(c, 0x43); emit1(c, (uint8_t)(8 * b));          /* fld m64 */
        emit1(c, 0xde); emit1(c, 0xc9);                                     /* fmulp */
        emit1(c, 0xdb); emit1(c, 0x5b); emit1(c, (uint8_t)(8 * d));          /* fistp m32 */
        return 0x8d5;
    case 4:                                     /* compare into EFLAGS */
        emit1(c, 0xdd); emit1(c, 0x43); emit1(c, (uint8_t)(8 * a));
        emit1(c, 0xdd); emit1(c, 0x43); emit1(c, (uint8_t)(8 * b));
        emit1(c, 0xdf); emit1(c, rnd() % 2 ? 0xe9 : 0xf1);                   /* fucomip/fcomip */
        emit1(c, 0xdd); emit1(c, 0x5b); emit1(c, (uint8_t)(8 * d));          /* fstp m64 */
        return 0x45;   /* ZF PF CF */
    default:                                    /* constants, FXCH, 80-bit store */
        emit1(c, 0xd9); emit1(c, (uint8_t)(0xe8 + rnd() % 7));
        emit1(c, 0xdd); emit1(c, 0x43); emit1(c, (uint8_t)(8 * a));
        emit1(c, 0xd9); emit1(c, 0xc9);                                     /* fxch */
        emit1(c, 0xdb); emit1(c, 0x7b); emit1(c, (uint8_t)(8 * d + 64));     /* fstp m80 */
        break;
    }
    emit1(c, 0xdd); emit1(c, 0x5b); emit1(c, (uint8_t)(8 * d));              /* fstp m64 */
    return 0x8d5;
}

/* 80-bit operands for the D9 F0-FF group: the cases where the hardware differs from a libm
 * (arguments of 2^63 and more, which FSIN/FCOS/FPTAN/FSINCOS leave alone with C2 set; FPREM's
 * partial remainder when the exponents are far apart; x87 denormals; zeros, infinities, NaNs). */
static void put_m80(uint8_t *p, uint64_t mant, uint16_t se)
{
    memcpy(p, &mant, 8);
    memcpy(p + 8, &se, 2);
}

/* displacements from RBX, which points 1024 bytes into the data area */
#define M80_OFF 1024
#define M80_OUT 2048
static void fill_m80(uint8_t *data)
{
    static const struct { uint64_t m; uint16_t se; } v[] = {
        { 0, 0 }, { 0, 0x8000 },                                   /* +0 -0 */
        { 1ull << 63, 0x7fff }, { 1ull << 63, 0xffff },            /* +inf -inf */
        { 0xc000000000000000ull, 0x7fff }, { 0xa000000000000000ull, 0xffff },  /* QNaN, SNaN */
        { 0x0000000000001234ull, 0 }, { 0x4000000000000000ull, 0x8000 },       /* denormals */
        { 1ull << 63, 0x3fff + 63 }, { 0xc90fdaa22168c235ull, 0x3fff + 64 },   /* 2^63, ~2^64 pi */
        { 0xc90fdaa22168c235ull, 0x4000 }, { 0xffffffffffffffffull, 0x3fff + 62 },  /* pi, <2^63 */
        { 0x8000000000000001ull, 0x7000 }, { 0xc000000000000000ull, 0x4000 },  /* huge, 3 */
        { 0x8000000000000000ull, 0x3ffe }, { 0xb504f333f9de6484ull, 0xbfff },  /* 0.5, -sqrt 2 */
    };
    for (unsigned k = 0; k < 16; k++)
        put_m80(data + 1024 + M80_OFF + 16 * k, v[k].m, v[k].se);
    uint16_t cw = (uint16_t)(0x37f | (rnd() % 4) << 10);
    memcpy(data + 1024 + M80_OFF + 256, &cw, 2);
}

/* FLD from an 80-bit special (two in three) or a double of the data area */
static void emit_fld_any(struct code *c)
{
    if (rnd() % 3) {
        emit1(c, 0xdb); emit1(c, 0xab); emit_imm(c, (uint64_t)(M80_OFF + 16 * (rnd() % 16)), 4);
    } else {
        emit1(c, 0xdd); emit1(c, 0x43); emit1(c, (uint8_t)(8 * (rnd() % 8)));
    }
}

static void emit_fstp_m80(struct code *c, int slot)
{
    emit1(c, 0xdb); emit1(c, 0xbb); emit_imm(c, (uint64_t)(M80_OUT + 16 * slot), 4);
}

/* One of D9 F0-FF (and FCHS, FABS, FTST, FXAM) on two operands under a random rounding control; then the condition codes
 * (FNSTSW AX, masked to C0-C3) and every stack entry, stored as 80 bits. */
static uint64_t gen_x87_host(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    static const uint8_t ops[] = { 0xe0, 0xe1, 0xe4, 0xe5, 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5,
                                   0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff };
    fill(data, 2);
    fill_m80(data);
    uint8_t op = ops[rnd() % sizeof(ops)];
    emit(c, "\xdb\xe3", 2);                                 /* fninit */
    emit1(c, 0xd9); emit1(c, 0xab); emit_imm(c, M80_OFF + 256, 4);   /* fldcw */
    emit_fld_any(c);
    emit_fld_any(c);
    emit1(c, 0xd9); emit1(c, op);
    emit(c, "\xdf\xe0", 2);                                 /* fnstsw ax */
    emit(c, "\x25\x00\x47\x00\x00", 5);                     /* and eax, C3 C2 C1 C0 */
    int depth = op == 0xf1 || op == 0xf3 || op == 0xf9 ? 1 : 2;
    if (op == 0xf4) {
        depth = 3;
    } else if (op == 0xf2 || op == 0xfb) {                  /* pushed only when C2 is clear */
        emit(c, "\xa9\x00\x04\x00\x00", 5);                 /* test eax, C2 */
        emit(c, "\x75\x06", 2);                             /* jnz over the store */
        emit_fstp_m80(c, 2);
    }
    for (int k = 0; k < depth; k++)
        emit_fstp_m80(c, k);
    return 0x8d5;
}

static unsigned cases(void)
{
    const char *e = getenv("QKVM_EMU_CASES");
    return e ? (unsigned)atoi(e) : 700;
}

static void run_gen(const char *name, gen_fn gen, uint64_t seed, int nxmm)
{
    const char *e = getenv("QKVM_EMU_SEED");
    rng_state = (e ? strtoull(e, NULL, 0) : 0x5eed0000ull) ^ seed;
    int bad = 0;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    use_xmm = 1;
    for (unsigned k = 0; k < cases(); k++) {
        struct code c = { .n = 0 };
        struct regs in;
        rnd_regs(&in);
        uint64_t fmask = gen(&c, &in, data);
        /* interpreted, then translated (SSE arithmetic and moves inline in jit.c) */
        for (int pass = 0; pass < 2; pass++) {
            harness_jit = pass ? 0 : -1;
            harness_run(c.b, c.n, &in, data, &nat, &emu);
            if (!result_match(pass ? "translated" : name, &c, &in, &nat, &emu, fmask, 0xffff, nxmm))
                bad++;
        }
        harness_jit = -1;
        if (bad >= 5)
            break;
    }
    use_xmm = 0;
    assert_int_equal(bad, 0);
}

static void test_sse_int(void **s) { (void)s; run_gen("sse-int", gen_sse_int, 21, 8); }
static void test_sse_float(void **s) { (void)s; run_gen("sse-float", gen_sse_float, 22, 8); }
static void test_x87(void **s) { (void)s; run_gen("x87", gen_x87, 23, 0); }
static void test_x87_host(void **s) { (void)s; run_gen("x87-host", gen_x87_host, 24, 0); }

static int setup(void **s)
{
    (void)s;
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_int), cmocka_unit_test(test_sse_float), cmocka_unit_test(test_x87),
        cmocka_unit_test(test_x87_host),
    };
    return cmocka_run_group_tests_name("emu_fp", tests, setup, NULL);
}
