/* Differential tests of the software CPU's integer instructions: random operands, run natively and
 * emulated, registers, memory and the defined flags compared. Seeded: a failure prints the
 * instruction bytes and inputs, and QKVM_EMU_SEED reproduces a run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "emu_harness.h"

#define ALLF 0x8d5ull   /* CF PF AF ZF SF OF */
#define CF 0x1ull
#define PF 0x4ull
#define AF 0x10ull
#define ZF 0x40ull
#define SF 0x80ull
#define OF 0x800ull

static const int sizes[4] = { 1, 2, 4, 8 };

/* A generator writes one test case: code and inputs; returns the defined-flags mask and may
 * narrow *regs (registers to compare). */
typedef uint64_t (*gen_fn)(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs);

static int rnd_rm(bool *mem)
{
    *mem = rnd() % 3 == 0;
    return *mem ? -1 : rnd_reg(false);
}

static uint64_t gen_alu(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)data; (void)regs;
    int kind = (int)(rnd() % 8), sz = sizes[rnd() % 4], form = (int)(rnd() % 5);
    bool mem;
    int rm = rnd_rm(&mem), reg = rnd_reg(mem);
    bool brex = sz == 1 && rnd() % 2;
    if (sz == 1 && !brex) {
        reg &= 7;
        if (rm >= 0)
            rm &= 7;
    }
    uint8_t op = (uint8_t)(kind * 8 + (sz == 1 ? 0 : 1));
    int isz = sz == 1 ? 1 : sz == 2 ? 2 : 4;
    switch (form) {
    case 0: emit_modrm(c, sz, &op, 1, reg, rm, (int)(rnd() % 120), brex, NULL, 0); break;
    case 1: op += 2; emit_modrm(c, sz, &op, 1, reg, rm, (int)(rnd() % 120), brex, NULL, 0); break;
    case 2:
        op += 4;
        if (sz == 2)
            emit1(c, 0x66);
        if (sz == 8)
            emit1(c, 0x48);
        emit1(c, op);
        emit_imm(c, rnd_val(), isz);
        break;
    case 3: {
        uint8_t g = sz == 1 ? 0x80 : 0x81;
        emit_modrm(c, sz, &g, 1, kind, rm, (int)(rnd() % 120), brex, NULL, 0);
        emit_imm(c, rnd_val(), isz);
        break;
    }
    default: {
        uint8_t g = sz == 1 ? 0x80 : 0x83;
        emit_modrm(c, sz, &g, 1, kind, rm, (int)(rnd() % 120), brex, NULL, 0);
        emit1(c, (uint8_t)rnd());
        break;
    }
    }
    (void)in;
    bool logic = kind == 1 || kind == 4 || kind == 6;
    return logic ? ALLF & ~AF : ALLF;
}

static uint64_t gen_unary(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)in; (void)data; (void)regs;
    int sz = sizes[rnd() % 4], which = (int)(rnd() % 4);
    bool mem;
    int rm = rnd_rm(&mem);
    bool brex = sz == 1 && rnd() % 2;
    if (sz == 1 && !brex && rm >= 0)
        rm &= 7;
    uint8_t op;
    int sub;
    if (which < 2) {
        op = sz == 1 ? 0xf6 : 0xf7;
        sub = 2 + which;   /* NOT, NEG */
    } else {
        op = sz == 1 ? 0xfe : 0xff;
        sub = which - 2;   /* INC, DEC */
    }
    emit_modrm(c, sz, &op, 1, sub, rm, (int)(rnd() % 120), brex, NULL, 0);
    return ALLF;
}

static uint64_t gen_shift(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)data; (void)regs;
    int sz = sizes[rnd() % 4], sub = (int)(rnd() % 8), form = (int)(rnd() % 3);
    bool mem;
    int rm = rnd_rm(&mem);
    if (rm == R_CX)
        rm = R_DX;
    bool brex = sz == 1 && rnd() % 2;
    if (sz == 1 && !brex && rm >= 0) {
        rm &= 7;
        if (rm == 1 || rm == 5)   /* CL, CH hold the count */
            rm = 2;
    }
    unsigned cnt;
    uint8_t op;
    if (form == 0) {
        op = sz == 1 ? 0xc0 : 0xc1;
        cnt = (unsigned)(rnd() % 72);
        emit_modrm(c, sz, &op, 1, sub, rm, (int)(rnd() % 120), brex, NULL, 0);
        emit1(c, (uint8_t)cnt);
    } else if (form == 1) {
        op = sz == 1 ? 0xd0 : 0xd1;
        cnt = 1;
        emit_modrm(c, sz, &op, 1, sub, rm, (int)(rnd() % 120), brex, NULL, 0);
    } else {
        op = sz == 1 ? 0xd2 : 0xd3;
        cnt = (unsigned)(rnd() % 72);
        in->r[R_CX] = (in->r[R_CX] & ~0xffull) | cnt;
        emit_modrm(c, sz, &op, 1, sub, rm, (int)(rnd() % 120), brex, NULL, 0);
    }
    int bits = sz * 8;
    unsigned m = cnt & (sz == 8 ? 63 : 31);
    if (m == 0)
        return ALLF;
    if (sub < 4) {
        if (sub >= 2 && sz <= 2 && m % (bits + 1) == 0)
            return ALLF & ~OF;   /* nothing rotates, but OF is undefined */
        return CF | (m == 1 ? OF : 0);
    }
    if ((int)m >= bits)
        return 0;   /* 8/16-bit shifts by the operand width or more: flags undefined */
    return SF | ZF | PF | CF | (m == 1 ? OF : 0);
}

static uint64_t gen_muldiv(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)data; (void)regs;
    int sz = sizes[rnd() % 4], which = (int)(rnd() % 7);
    bool mem;
    int rm = rnd_rm(&mem), reg = rnd_reg(mem);
    bool brex = sz == 1 && rnd() % 2;
    if (sz == 1 && !brex && rm >= 0)
        rm &= 7;
    if (which < 4) {
        uint8_t op = sz == 1 ? 0xf6 : 0xf7;
        emit_modrm(c, sz, &op, 1, 4 + which, rm, (int)(rnd() % 120), brex, NULL, 0);
        if (which >= 2 && rnd() % 2) {
            /* mostly divisions that do not overflow */
            in->r[R_DX] = which == 3 && (in->r[R_AX] >> 63) ? ~0ull : 0;
            if (sz == 1)
                in->r[R_AX] &= 0xff;
        }
        return which < 2 ? CF | OF : 0;
    }
    if (sz == 1)
        sz = 4;
    if (which == 4) {
        uint8_t op[2] = { 0x0f, 0xaf };
        emit_modrm(c, sz, op, 2, reg, rm, (int)(rnd() % 120), false, NULL, 0);
    } else if (which == 5) {
        uint8_t op = 0x69;
        emit_modrm(c, sz, &op, 1, reg, rm, (int)(rnd() % 120), false, NULL, 0);
        emit_imm(c, rnd_val(), sz == 2 ? 2 : 4);
    } else {
        uint8_t op = 0x6b;
        emit_modrm(c, sz, &op, 1, reg, rm, (int)(rnd() % 120), false, NULL, 0);
        emit1(c, (uint8_t)rnd());
    }
    return CF | OF;
}

static uint64_t gen_bits(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)regs;
    int sz = sizes[1 + rnd() % 3], which = (int)(rnd() % 4);
    bool mem;
    int rm = rnd_rm(&mem), reg = rnd_reg(mem);
    if (which == 0) {          /* BT/BTS/BTR/BTC r/m, r */
        static const uint8_t ops[4] = { 0xa3, 0xab, 0xb3, 0xbb };
        uint8_t op[2] = { 0x0f, ops[rnd() % 4] };
        if (mem)
            in->r[reg] = (uint64_t)((int64_t)(rnd() % 1024) - 512);
        emit_modrm(c, sz, op, 2, reg, rm, (int)(rnd() % 120), false, NULL, 0);
        return CF;
    }
    if (which == 1) {          /* BT* r/m, imm8 */
        uint8_t op[2] = { 0x0f, 0xba };
        emit_modrm(c, sz, op, 2, 4 + (int)(rnd() % 4), rm, (int)(rnd() % 120), false, NULL, 0);
        emit1(c, (uint8_t)rnd());
        return CF;
    }
    /* BSF/BSR with a nonzero source (a zero one leaves the destination undefined) */
    uint8_t op[2] = { 0x0f, which == 2 ? 0xbc : 0xbd };
    int disp = (int)(rnd() % 120);
    if (mem) {
        if (!(data[1024 + disp] | data[1025 + disp]))
            data[1024 + disp] = 1;
    } else if (!(in->r[rm] & 0xffff)) {
        in->r[rm] |= 1ull << (rnd() % 16);
    }
    emit_modrm(c, sz, op, 2, reg, rm, disp, false, NULL, 0);
    return ZF;
}

static uint64_t gen_string(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)regs;
    static const uint8_t ops[5] = { 0xa4, 0xaa, 0xac, 0xa6, 0xae };
    int which = (int)(rnd() % 5), sz = sizes[rnd() % 4];
    in->r[R_SI] = HBASE + OFF_DATA + 1024 + rnd() % 512;
    in->r[R_DI] = HBASE + OFF_DATA + 2048 + rnd() % 512;
    in->r[R_CX] = rnd() % 40;
    in->flags = (in->flags & ~0x400ull) | (rnd() % 4 == 0 ? 0x400 : 0);
    if (which >= 3 && rnd() % 2) {
        /* equal runs so REPE goes on for a while */
        uint64_t s = in->r[R_SI] - HBASE - OFF_DATA, d = in->r[R_DI] - HBASE - OFF_DATA;
        int n = (int)(rnd() % 200);
        if (in->flags & 0x400) {
            s -= n - sz;
            d -= n - sz;
        }
        memcpy(data + d, data + s, n);
        in->r[R_AX] = 0;
        memset(data + d, 0, which == 4 ? n : 0);
    }
    if (which == 1 && rnd() % 2) {
        /* STOS of alike bytes (a memset in the emulator), sometimes alike only in the low half */
        in->r[R_AX] = (rnd() & 0xff) * 0x0101010101010101ull;
        if (rnd() % 2)
            in->r[R_AX] ^= 0x1234567800000000ull;
    }
    if (rnd() % 4) {
        emit1(c, which >= 3 && rnd() % 2 ? 0xf2 : 0xf3);
    }
    if (sz == 2)
        emit1(c, 0x66);
    if (sz == 8)
        emit1(c, 0x48);
    emit1(c, (uint8_t)(ops[which] + (sz == 1 ? 0 : 1)));
    return which >= 3 ? ALLF | 0x400 : 0x400;
}

static uint64_t gen_xchg(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)regs;
    int sz = sizes[rnd() % 4], which = (int)(rnd() % 5);
    bool mem;
    int rm = rnd_rm(&mem), reg = rnd_reg(mem);
    if (reg == R_AX)
        reg = R_CX;
    bool brex = sz == 1;
    int disp = (int)(rnd() % 120);
    bool lock = mem && rnd() % 2;
    if (which == 0 || which == 1) {      /* CMPXCHG, sometimes with the accumulator matching */
        if (rnd() % 2) {
            uint64_t v = 0;
            if (mem)
                memcpy(&v, data + 1024 + disp, 8);
            else
                v = in->r[rm];
            in->r[R_AX] = v;
        }
        if (lock)
            emit1(c, 0xf0);
        uint8_t op[2] = { 0x0f, (uint8_t)(sz == 1 ? 0xb0 : 0xb1) };
        emit_modrm(c, sz, op, 2, reg, rm, disp, brex, NULL, 0);
        return ALLF;
    }
    if (which == 2) {                    /* XADD */
        if (lock)
            emit1(c, 0xf0);
        uint8_t op[2] = { 0x0f, (uint8_t)(sz == 1 ? 0xc0 : 0xc1) };
        emit_modrm(c, sz, op, 2, reg, rm, disp, brex, NULL, 0);
        return ALLF;
    }
    if (which == 3) {                    /* XCHG */
        uint8_t op = (uint8_t)(sz == 1 ? 0x86 : 0x87);
        emit_modrm(c, sz, &op, 1, reg, rm, disp, brex, NULL, 0);
        return ALLF;
    }
    /* CMPXCHG8B / CMPXCHG16B */
    bool b16 = rnd() % 2;
    disp &= b16 ? ~15 : ~7;
    if (rnd() % 2) {
        memcpy(&in->r[R_AX], data + 1024 + disp, 8);
        if (b16)
            memcpy(&in->r[R_DX], data + 1024 + disp + 8, 8);
        else
            in->r[R_DX] = in->r[R_AX] >> 32, in->r[R_AX] = (uint32_t)in->r[R_AX] | (rnd() << 32);
    }
    if (rnd() % 2)
        emit1(c, 0xf0);
    uint8_t op[2] = { 0x0f, 0xc7 };
    emit_modrm(c, b16 ? 8 : 4, op, 2, 1, -1, disp, false, NULL, 0);
    return ZF;
}

static uint64_t gen_misc(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    (void)data; (void)regs;
    int sz = sizes[1 + rnd() % 3], which = (int)(rnd() % 11);
    bool mem;
    int rm = rnd_rm(&mem), reg = rnd_reg(mem);
    int disp = (int)(rnd() % 120);
    switch (which) {
    case 0: {   /* MOVZX/MOVSX */
        static const uint8_t ops[4] = { 0xb6, 0xb7, 0xbe, 0xbf };
        uint8_t op[2] = { 0x0f, ops[rnd() % 4] };
        bool brex = rnd() % 2;
        if (!brex && rm >= 0)
            rm &= 7;
        emit_modrm(c, sz, op, 2, reg, rm, disp, brex, NULL, 0);
        return ALLF;
    }
    case 1: {   /* MOVSXD */
        uint8_t op = 0x63;
        emit_modrm(c, 8, &op, 1, reg, rm, disp, false, NULL, 0);
        return ALLF;
    }
    case 2: {   /* CMOVcc */
        uint8_t op[2] = { 0x0f, (uint8_t)(0x40 + rnd() % 16) };
        emit_modrm(c, sz, op, 2, reg, rm, disp, false, NULL, 0);
        return ALLF;
    }
    case 3: {   /* SETcc */
        uint8_t op[2] = { 0x0f, (uint8_t)(0x90 + rnd() % 16) };
        emit_modrm(c, 1, op, 2, 0, rm, disp, true, NULL, 0);
        return ALLF;
    }
    case 4: {   /* BSWAP */
        int r = rnd_reg(false);
        if (sz == 2)
            sz = 4;
        int rex = (sz == 8 ? 8 : 0) | (r >> 3);
        if (rex)
            emit1(c, (uint8_t)(0x40 | rex));
        emit1(c, 0x0f);
        emit1(c, (uint8_t)(0xc8 + (r & 7)));
        return ALLF;
    }
    case 5: {   /* SHLD/SHRD */
        bool cl = rnd() % 2, left = rnd() % 2;
        unsigned cnt = (unsigned)(rnd() % (unsigned)(sz * 8));
        uint8_t op[2] = { 0x0f, (uint8_t)((left ? 0xa4 : 0xac) + cl) };
        if (rm == R_CX)
            rm = R_DX;
        if (reg == R_CX)
            reg = R_SI;
        if (cl)
            in->r[R_CX] = (in->r[R_CX] & ~0xffull) | cnt;
        emit_modrm(c, sz, op, 2, reg, rm, disp, false, NULL, 0);
        if (!cl)
            emit1(c, (uint8_t)cnt);
        if (cnt == 0)
            return ALLF;
        return CF | SF | ZF | PF | (cnt == 1 ? OF : 0);
    }
    case 6: {   /* LEA with base, index and scale */
        if (sz == 2)
            emit1(c, 0x66);
        int base = rnd_reg(false), idx = rnd_reg(false), dst = rnd_reg(false);
        emit1(c, (uint8_t)(0x40 | (sz == 8 ? 8 : 0) | ((dst >> 3) << 2) | ((idx >> 3) << 1) | (base >> 3)));
        emit1(c, 0x8d);
        emit1(c, (uint8_t)(0x84 | ((dst & 7) << 3)));
        emit1(c, (uint8_t)((rnd() % 4) << 6 | (idx & 7) << 3 | (base & 7)));
        emit_imm(c, rnd_val(), 4);
        return ALLF;
    }
    case 7:     /* CBW/CWDE/CDQE, CWD/CDQ/CQO */
        if (sz == 2)
            emit1(c, 0x66);
        if (sz == 8)
            emit1(c, 0x48);
        emit1(c, (uint8_t)(0x98 + rnd() % 2));
        return ALLF;
    case 8: {   /* POPCNT */
        uint8_t op[2] = { 0x0f, 0xb8 }, f3 = 0xf3;
        emit_modrm(c, sz, op, 2, reg, rm, disp, false, &f3, 1);
        return ALLF;
    }
    case 9:     /* LAHF/SAHF */
        emit1(c, (uint8_t)(0x9e + rnd() % 2));
        return ALLF;
    default: {  /* PUSH/POP pairs and PUSHF/POPF */
        int r = rnd_reg(false), r2 = rnd_reg(false);
        if (r >= 8)
            emit1(c, 0x41);
        emit1(c, (uint8_t)(0x50 + (r & 7)));
        emit1(c, 0x9c);
        emit1(c, 0x9d);
        if (r2 >= 8)
            emit1(c, 0x41);
        emit1(c, (uint8_t)(0x58 + (r2 & 7)));
        return ALLF;
    }
    }
}

/* Conditional jumps after flag-setting operations: r15 counts whether the jump was taken. */
static uint64_t gen_jcc(struct code *c, struct regs *in, uint8_t *data, uint32_t *regs)
{
    uint64_t m = rnd() % 2 ? gen_alu(c, in, data, regs) : gen_shift(c, in, data, regs);
    emit(c, "\x41\xbf\x00\x00\x00\x00", 6);   /* mov $0, %r15d */
    int cc = (int)(rnd() % 16);
    if (rnd() % 2) {
        emit1(c, (uint8_t)(0x70 + cc));
        emit1(c, 4);
    } else {
        emit1(c, 0x0f);
        emit1(c, (uint8_t)(0x80 + cc));
        emit_imm(c, 4, 4);
    }
    emit(c, "\x4d\x8d\x7f\x01", 4);             /* lea 1(%r15), %r15: flags untouched */
    /* conditions on undefined flags would compare noise: then r15 is not compared */
    static const uint64_t need[8] = { 0x800, 0x1, 0x40, 0x41, 0x80, 0x4, 0x880, 0x8c0 };
    if ((m & need[cc >> 1]) != need[cc >> 1])
        *regs &= ~(1u << R_R15);
    return m;
}

static unsigned cases(void)
{
    const char *e = getenv("QKVM_EMU_CASES");
    return e ? (unsigned)atoi(e) : 700;
}

/* Each generator's cases run twice, the same seed: interpreted, then translated (jit.c). */
static void run_gen(const char *name, gen_fn gen, uint64_t seed)
{
    const char *e = getenv("QKVM_EMU_SEED");
    int bad = 0;
    unsigned n = cases();
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    for (int pass = 0; pass < 2; pass++) {
        char what[64];
        snprintf(what, sizeof(what), "%s%s", name, pass ? " (translated)" : "");
        harness_jit = pass ? 0 : -1;
        rng_state = (e ? strtoull(e, NULL, 0) : 0x5eed0000ull) ^ seed;
        for (unsigned k = 0; k < n; k++) {
            struct code c = { .n = 0 };
            struct regs in;
            rnd_regs(&in);
            rnd_data(data);
            uint32_t regs = 0xffff;
            uint64_t fmask = gen(&c, &in, data, &regs);
            harness_run(c.b, c.n, &in, data, &nat, &emu);
            if (!result_match(what, &c, &in, &nat, &emu, fmask, regs, 0) && ++bad >= 5)
                break;
        }
    }
    harness_jit = -1;
    assert_int_equal(bad, 0);
}

static void test_alu(void **s) { (void)s; run_gen("alu", gen_alu, 1); }
static void test_unary(void **s) { (void)s; run_gen("unary", gen_unary, 2); }
static void test_shift(void **s) { (void)s; run_gen("shift", gen_shift, 3); }
static void test_muldiv(void **s) { (void)s; run_gen("muldiv", gen_muldiv, 4); }
static void test_bits(void **s) { (void)s; run_gen("bits", gen_bits, 5); }
static void test_string(void **s) { (void)s; run_gen("string", gen_string, 6); }
static void test_xchg(void **s) { (void)s; run_gen("xchg", gen_xchg, 7); }
static void test_misc(void **s) { (void)s; run_gen("misc", gen_misc, 8); }
static void test_jcc(void **s) { (void)s; run_gen("jcc", gen_jcc, 9); }

/* #DE from a division by zero: the emulator reports it at the DIV, as the host does. */
static void test_div_zero(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    struct regs in;
    rng_state = 99;
    rnd_regs(&in);
    in.r[R_CX] = 0;
    struct code c = { .n = 0 };
    emit(&c, "\x90\x48\xf7\xf1", 4);   /* nop; div rcx */
    harness_run(c.b, c.n, &in, data, &nat, &emu);
    assert_int_equal(nat.vec, 0);
    assert_int_equal(emu.vec, 0);
    assert_true(emu.fault_rip == HBASE + OFF_CODE + 1);
    assert_true(nat.fault_rip == emu.fault_rip);
}

/* An undefined opcode raises #UD in the guest; the host goes on. */
static void test_ud(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    struct regs in;
    rng_state = 7;
    rnd_regs(&in);
    struct code c = { .n = 0 };
    emit(&c, "\x90\x0f\x0b", 3);   /* nop; ud2 */
    harness_run(c.b, c.n, &in, data, &nat, &emu);
    assert_int_equal(emu.vec, 6);
    assert_true(emu.fault_rip == HBASE + OFF_CODE + 1);
    assert_int_equal(nat.vec, 6);
}

/* LOCK on anything but a read-modify-write with a memory destination is #UD, as on the host:
 * MOV, CMP, TEST, BT, a register destination, a register-only form (interpreted and
 * translated); the lockable forms run. */
static void test_lock_ud(void **s)
{
    (void)s;
    static const struct { const char *b; int n; bool ud; } cases[] = {
        { "\xf0\x48\xc7\x43\x08\x01\x00\x00\x00", 9, true },   /* mov qword [rbx+8], 1 */
        { "\xf0\x48\x89\x43\x08", 5, true },                  /* mov [rbx+8], rax */
        { "\xf0\x48\x39\x43\x08", 5, true },                  /* cmp [rbx+8], rax */
        { "\xf0\x48\x83\x7b\x08\x01", 6, true },             /* cmp qword [rbx+8], 1 */
        { "\xf0\x48\x01\xc0", 4, true },                       /* add rax, rax */
        { "\xf0\x48\x03\x43\x08", 5, true },                  /* add rax, [rbx+8] */
        { "\xf0\x48\x85\x43\x08", 5, true },                  /* test [rbx+8], rax */
        { "\xf0\x48\x0f\xba\x63\x08\x05", 7, true },        /* bt qword [rbx+8], 5 */
        { "\xf0\x90", 2, true },                                 /* nop */
        { "\xf0\x48\x01\x43\x08", 5, false },                 /* add [rbx+8], rax */
        { "\xf0\x48\x83\x43\x08\x01", 6, false },            /* add qword [rbx+8], 1 */
        { "\xf0\x48\x87\x43\x08", 5, false },                 /* xchg [rbx+8], rax */
        { "\xf0\x48\xf7\x5b\x08", 5, false },                 /* neg qword [rbx+8] */
        { "\xf0\x48\xff\x43\x08", 5, false },                 /* inc qword [rbx+8] */
        { "\xf0\x48\x0f\xba\x6b\x08\x05", 7, false },       /* bts qword [rbx+8], 5 */
        { "\xf0\x48\x0f\xb1\x4b\x08", 6, false },            /* cmpxchg [rbx+8], rcx */
        { "\xf0\x48\x0f\xc1\x43\x08", 6, false },            /* xadd [rbx+8], rax */
    };
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    struct regs in;
    rng_state = 11;
    rnd_regs(&in);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        for (int jit = -1; jit <= 0; jit++) {
            struct code c = { .n = 0 };
            emit(&c, "\x90", 1);
            emit(&c, cases[k].b, cases[k].n);
            harness_jit = jit;
            harness_run(c.b, c.n, &in, data, &nat, &emu);
            harness_jit = -1;
            if (nat.vec != (cases[k].ud ? 6 : -1) || emu.vec != nat.vec) {
                print_error("case %zu jit %d: native vector %d, emulated %d\n", k, jit, nat.vec,
                            emu.vec);
                fail();
            }
            if (cases[k].ud)
                assert_true(emu.fault_rip == HBASE + OFF_CODE + 1);
        }
    }
}

/* Code written through the emulated CPU is decoded afresh (self-modifying code). */
/* Runs fixed code with translation threshold jit (-1: interpreted only); c gets the code. */
static void run_fixed(struct code *c, const uint8_t *bytes, int n, const struct regs *in,
                      const uint8_t *data, int jit, struct result *nat, struct result *emu)
{
    c->n = 0;
    emit(c, (const char *)bytes, n);
    harness_jit = jit;
    harness_run(c->b, c->n, in, data, nat, emu);
    harness_jit = -1;
    assert_int_equal(nat->vec, -1);
}

/* A loop run interpreted, translated at once, and translated after its first run (so blocks
 * link to each other): loads and stores through the TLB (one across a page), flags read by
 * ADC/CMOV/Jcc, CALL/RET, PUSH/POP, compared with the host. */
static void test_translated_loop(void **s)
{
    (void)s;
    static const uint8_t loop[] = {
        0xeb, 0x04, 0x83, 0xc0, 0x01, 0xc3, 0xb9, 0x2c, 0x01, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xd2,
        0x44, 0x8b, 0x04, 0x8f, 0x44, 0x01, 0xc0, 0xc1, 0xc0, 0x05, 0x31, 0xc2, 0x4c, 0x8d, 0x4c,
        0xca, 0x07, 0x44, 0x89, 0x8c, 0x8f, 0x00, 0x08, 0x00, 0x00, 0x50, 0xe8, 0xd4, 0xff, 0xff,
        0xff, 0x41, 0x5a, 0x4c, 0x01, 0xd2, 0x49, 0xc1, 0xea, 0x03, 0x44, 0x29, 0xd0, 0x81, 0xf9,
        0x96, 0x00, 0x00, 0x00, 0x73, 0x03, 0x6b, 0xd2, 0x03, 0x4c, 0x8b, 0x9f, 0xfc, 0x0f, 0x00,
        0x00, 0x4c, 0x01, 0xda, 0x44, 0x0f, 0xb6, 0x1c, 0x0f, 0x44, 0x11, 0xd8, 0x49, 0xd1, 0xfb,
        0x0f, 0x42, 0xc2, 0xff, 0xc9, 0x75, 0xae,
    };
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    for (int jit = -1; jit <= 1; jit++) {
        struct regs in;
        rng_state = 12;
        rnd_regs(&in);
        rnd_data(data);
        in.r[R_DI] = HBASE + OFF_DATA;
        struct code c;
        run_fixed(&c, loop, (int)sizeof(loop), &in, data, jit, &nat, &emu);
        assert_true(result_match(jit < 0 ? "loop" : jit ? "loop (linked)" : "loop (translated)", &c,
                                 &in, &nat, &emu, ALLF, 0xffff, 0));
    }
}

/* A translated loop that rewrites an immediate of its own next instruction on every turn. */
static void test_translated_smc(void **s)
{
    (void)s;
    static const uint8_t loop[] = { 0xb9, 0x32, 0x00, 0x00, 0x00, 0x31, 0xc0, 0x89, 0x0e, 0x05,
                                    0x11, 0x11, 0x11, 0x11, 0xff, 0xc9, 0x75, 0xf5 };
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    for (int jit = 0; jit <= 1; jit++) {
        struct regs in;
        rng_state = 13;
        rnd_regs(&in);
        in.r[R_SI] = HBASE + OFF_CODE + 10;   /* the imm32 of the ADD */
        struct code c;
        run_fixed(&c, loop, (int)sizeof(loop), &in, data, jit, &nat, &emu);
        assert_int_equal(emu.vec, -1);
        assert_int_equal(nat.regs.r[R_AX], 1275);
        assert_int_equal(emu.regs.r[R_AX], 1275);
    }
}

static void test_smc(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    struct regs in;
    rng_state = 11;
    rnd_regs(&in);
    in.r[R_SI] = HBASE + OFF_CODE + 16;   /* the imm32 of the mov below */
    struct code c = { .n = 0 };
    /* mov dword [rsi], 42 ; jmp next ; next: mov eax, imm32(patched) at +12, pad to 16 */
    emit(&c, "\xc7\x06\x2a\x00\x00\x00", 6);   /* mov dword [rsi], 42 */
    emit(&c, "\xeb\x05", 2);                   /* jmp +5 */
    emit(&c, "\x90\x90\x90\x90\x90", 5);
    emit(&c, "\x90\x90\xb8\x01\x00\x00\x00", 7);   /* at 13: nop nop; mov eax, 1 (imm at 16) */
    /* jmp lands at 8+5=13 */
    harness_run(c.b, c.n, &in, data, &nat, &emu);
    assert_int_equal(nat.vec, -1);
    assert_int_equal(emu.vec, -1);
    assert_int_equal(nat.regs.r[R_AX], 42);
    assert_int_equal(emu.regs.r[R_AX], 42);
}

static int setup(void **s)
{
    (void)s;
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alu), cmocka_unit_test(test_unary), cmocka_unit_test(test_shift),
        cmocka_unit_test(test_muldiv), cmocka_unit_test(test_bits), cmocka_unit_test(test_string),
        cmocka_unit_test(test_xchg), cmocka_unit_test(test_misc), cmocka_unit_test(test_jcc),
        cmocka_unit_test(test_div_zero),
        cmocka_unit_test(test_ud),
        cmocka_unit_test(test_lock_ud), cmocka_unit_test(test_smc),
        cmocka_unit_test(test_translated_loop), cmocka_unit_test(test_translated_smc),
    };
    return cmocka_run_group_tests_name("emu", tests, setup, NULL);
}
