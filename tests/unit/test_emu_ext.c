/* Differential tests of the instruction-set extensions beyond the x86-64 baseline: x86-64-v2
 * (SSE3, SSSE3 in MMX and XMM forms, SSE4.1, SSE4.2 with the string compares and CRC32) and of
 * x86-64-v3 so far MOVBE, BMI1 and BMI2 (VEX-encoded) and TZCNT: random operands in registers
 * and in memory (aligned or not, so the alignment checks are compared too), run natively and
 * emulated, interpreted and translated; XMM registers, general registers, memory and flags
 * compared. QKVM_EMU_SEED / QKVM_EMU_CASES as in test_emu. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "emu_harness.h"

typedef uint64_t (*gen_fn)(struct code *c, struct regs *in, uint8_t *data);

/* xmm_in and data: random bits (kind 0), floats (1) or doubles (2); for the string compares
 * (kind 3) short runs of few distinct characters with zeros among them, so that matches,
 * ranges and terminators all happen. */
static void fill(uint8_t *data, int kind)
{
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 16; j += 8) {
            uint64_t v = rnd_lane(kind == 3 ? 0 : kind);
            memcpy(&xmm_in[k][j], &v, 8);
        }
    for (int k = 0; k < DATA_SIZE; k += 8) {
        uint64_t v = rnd_lane(kind == 3 ? 0 : kind);
        memcpy(data + k, &v, 8);
    }
    if (kind == 3) {
        uint8_t *all[9];
        for (int k = 0; k < 8; k++)
            all[k] = xmm_in[k];
        all[8] = data + 1024 - 128;
        for (int k = 0; k < 9; k++)
            for (int j = 0; j < (k == 8 ? 256 : 16); j++) {
                uint64_t r = rnd() % 16;
                all[k][j] = r == 0 ? 0 : r < 4 ? 0x80 + (uint8_t)r : (uint8_t)('a' + r % 5);
            }
    }
}

/* An instruction: optional 66 and F2/F3 prefixes, REX (W, and R/B from reg/rm), the opcode
 * bytes, ModRM with rm a register or (mem) [rbx + disp8]. */
static void emit_x(struct code *c, bool p66, int pf, bool w, const char *op, int opn, int reg,
                   int rm, bool mem, int disp)
{
    if (p66)
        emit1(c, 0x66);
    if (pf)
        emit1(c, (uint8_t)pf);
    int rex = (w ? 8 : 0) | ((reg & 8) ? 4 : 0) | (!mem && (rm & 8) ? 1 : 0);
    if (rex)
        emit1(c, (uint8_t)(0x40 | rex));
    emit(c, op, opn);
    if (mem) {
        emit1(c, (uint8_t)(0x43 | (reg & 7) << 3));
        emit1(c, (uint8_t)disp);
    } else {
        emit1(c, (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7)));
    }
}

/* A memory displacement from rbx: 16-aligned, or (for a third of the cases) anywhere, so that
 * instructions that need alignment fault on both sides. */
static int rnd_disp(void)
{
    int d = 16 * (int)(rnd() % 8);
    if (rnd() % 3 == 0)
        d += (int)(rnd() % 16);
    return d;
}

static uint64_t gen_sse3(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    static const struct { int pf; bool p66; uint8_t op; int kind; } ops[] = {
        { 0xf2, 0, 0x12, 2 }, { 0xf3, 0, 0x12, 1 }, { 0xf3, 0, 0x16, 1 }, { 0xf2, 0, 0x7c, 1 },
        { 0xf2, 0, 0x7d, 1 }, { 0, 1, 0x7c, 2 }, { 0, 1, 0x7d, 2 }, { 0xf2, 0, 0xd0, 1 },
        { 0, 1, 0xd0, 2 }, { 0xf2, 0, 0xf0, 0 } };
    int k = (int)(rnd() % (sizeof(ops) / sizeof(ops[0])));
    fill(data, ops[k].kind);
    char op[2] = { 0x0f, (char)ops[k].op };
    bool mem = ops[k].op == 0xf0 || rnd() % 3 == 0;
    emit_x(c, ops[k].p66, ops[k].pf, false, op, 2, (int)(rnd() % 8), (int)(rnd() % 8), mem, rnd_disp());
    return 0x8d5;
}

/* SSSE3: 0F 38 00-0B, 1C-1E and PALIGNR, with XMM (66) or MMX registers. The MMX form loads
 * its registers from memory, stores the result and ends with EMMS, so the native x87 state
 * stays as the compiler expects it. */
static uint64_t gen_ssse3(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    static const uint8_t ops[] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09,
                                   0x0a, 0x0b, 0x1c, 0x1d, 0x1e, 0x0f };
    fill(data, 0);
    /* small values and signs make the saturations, zero signs and shuffles interesting */
    for (int k = 0; k < 8; k++)
        if (rnd() % 2)
            for (int j = 0; j < 16; j++)
                xmm_in[k][j] = (uint8_t)(rnd() % 3 == 0 ? 0 : rnd() % 2 ? rnd() % 20 : 0x80 | rnd() % 20);
    uint8_t opb = ops[rnd() % sizeof(ops)];
    char op[3] = { 0x0f, opb == 0x0f ? 0x3a : 0x38, (char)opb };
    bool mem = rnd() % 3 == 0;
    int reg = (int)(rnd() % 8), rm = (int)(rnd() % 8);
    if (rnd() % 2) {
        emit_x(c, true, 0, false, op, 3, reg, rm, mem, rnd_disp());
    } else {
        emit_x(c, false, 0, false, "\x0f\x6f", 2, reg, 0, true, -64);   /* movq mm, [rbx-64] */
        if (!mem && rm != reg)
            emit_x(c, false, 0, false, "\x0f\x6f", 2, rm, 0, true, -48);
        emit_x(c, false, 0, false, op, 3, reg, rm, mem, rnd_disp());
        if (opb == 0x0f)
            emit1(c, (uint8_t)(rnd() % 20));
        emit_x(c, false, 0, false, "\x0f\x7f", 2, reg, 0, true, -128);  /* movq [rbx-128], mm */
        emit(c, "\x0f\x77", 2);
        return 0x8d5;
    }
    if (opb == 0x0f)
        emit1(c, (uint8_t)(rnd() % 36));
    return 0x8d5;
}

/* SSE4.1 and PCMPGTQ: every 66 0F 38 and 66 0F 3A opcode but the string compares. */
static uint64_t gen_sse41(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    static const uint8_t m38[] = { 0x10, 0x14, 0x15, 0x17, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25,
                                   0x28, 0x29, 0x2a, 0x2b, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35,
                                   0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41 };
    static const uint8_t m3a[] = { 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x14, 0x15, 0x16,
                                   0x17, 0x20, 0x21, 0x22, 0x40, 0x41, 0x42 };
    bool map38 = rnd() % 2;
    uint8_t opb = map38 ? m38[rnd() % sizeof(m38)] : m3a[rnd() % sizeof(m3a)];
    int kind = 0;
    if (!map38 && (opb == 0x08 || opb == 0x0a || opb == 0x40 || opb == 0x21))
        kind = 1;
    else if (!map38 && (opb == 0x09 || opb == 0x0b || opb == 0x41))
        kind = 2;
    else if (!map38 && opb <= 0x0d)
        kind = (int)(rnd() % 3);
    fill(data, kind);
    /* small lanes: ties for PHMINPOSUW, equal lanes for compares, min/max and packs */
    if (kind == 0 && rnd() % 2) {
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 16; j++)
                xmm_in[k][j] = (uint8_t)(j & 1 ? rnd() % 2 * 0xff : rnd() % 4);
        for (int j = 0; j < 256; j++)
            data[1024 + j - 128] = (uint8_t)(j & 1 ? rnd() % 2 * 0xff : rnd() % 4);
    }
    char op[3] = { 0x0f, map38 ? 0x38 : 0x3a, (char)opb };
    int reg = (int)(rnd() % 8), rm = (int)(rnd() % 8);
    bool mem = opb == 0x2a && map38 ? true : rnd() % 3 == 0;
    bool gpr = !map38 && ((opb >= 0x14 && opb <= 0x17) || opb == 0x20 || opb == 0x22);
    bool w = gpr && (opb == 0x16 || opb == 0x22) && rnd() % 2;
    if (gpr && !mem)
        rm = rnd_reg(true);
    emit_x(c, true, 0, w, op, 3, reg, rm, mem, rnd_disp());
    if (!map38)
        emit_imm(c, rnd(), 1);
    return 0x8d5;
}

/* SSE4.2 string compares: explicit lengths in EAX/EDX (or RAX/RDX with REX.W), small and
 * sometimes negative or too large, every imm8 form. */
static uint64_t gen_pcmpstr(struct code *c, struct regs *in, uint8_t *data)
{
    fill(data, 3);
    static const int lens[] = { 0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, -3, -20, 100 };
    in->r[R_AX] = (uint64_t)(int64_t)lens[rnd() % 14];
    in->r[R_DX] = (uint64_t)(int64_t)lens[rnd() % 14];
    if (rnd() % 4 == 0)
        in->r[R_AX] ^= 0x100000000ull;   /* only REX.W sees the high half */
    char op[3] = { 0x0f, 0x3a, (char)(0x60 + rnd() % 4) };
    emit_x(c, true, 0, rnd() % 4 == 0, op, 3, (int)(rnd() % 8), (int)(rnd() % 8), rnd() % 3 == 0,
           16 * (int)(rnd() % 8) - 128 + (int)(rnd() % 16));
    emit1(c, (uint8_t)(rnd() & 0x7f));
    return 0x8d5;
}

/* CRC32 (F2 0F 38 F0/F1, 8/16/32/64-bit sources) and MOVBE (0F 38 F0/F1, memory only). */
static uint64_t gen_crc_movbe(struct code *c, struct regs *in, uint8_t *data)
{
    (void)in;
    fill(data, 0);
    bool f1 = rnd() % 2, w = rnd() % 3 == 0, p66 = f1 && !w && rnd() % 3 == 0;
    char op[3] = { 0x0f, 0x38, (char)(f1 ? 0xf1 : 0xf0) };
    int reg = rnd_reg(true);
    if (rnd() % 2) {
        bool mem = rnd() % 3 == 0;
        int rm = rnd_reg(true);
        if (!f1 && !w && !mem && rnd() % 2 && rm < 8) {
            emit1(c, 0xf2);                /* a byte register with REX: SPL..DIL, R8B.. */
            emit1(c, (uint8_t)(0x40 | ((reg & 8) ? 4 : 0)));
            emit(c, op, 3);
            emit1(c, (uint8_t)(0xc0 | (reg & 7) << 3 | rm));
            return 0x8d5;
        }
        emit_x(c, p66, 0xf2, w, op, 3, reg, rm, mem, rnd_disp() - 64);
    } else {
        emit_x(c, p66, 0, w, op, 3, reg, 0, true, rnd_disp() - 64);
    }
    return 0x8d5;
}

/* BMI1/BMI2: C4 VEX (R/X/B/W, map, vvvv, L, pp), opcode, ModRM; and TZCNT. Operands near the
 * edges (zero, counts around the operand width) are overrepresented. Returns the defined flags. */
static uint64_t gen_bmi(struct code *c, struct regs *in, uint8_t *data)
{
    static const struct { uint8_t map, op, pp, sub; uint64_t flags; } ops[] = {
        { 2, 0xf2, 0, 0, 0x8c1 },                           /* ANDN */
        { 2, 0xf3, 0, 1, 0x8c1 }, { 2, 0xf3, 0, 2, 0x8c1 }, { 2, 0xf3, 0, 3, 0x8c1 },  /* BLSR BLSMSK BLSI */
        { 2, 0xf7, 0, 0, 0x841 },                           /* BEXTR */
        { 2, 0xf5, 0, 0, 0x8c1 },                           /* BZHI */
        { 2, 0xf5, 2, 0, 0x8d5 }, { 2, 0xf5, 3, 0, 0x8d5 }, /* PEXT PDEP */
        { 2, 0xf6, 3, 0, 0x8d5 },                           /* MULX */
        { 2, 0xf7, 1, 0, 0x8d5 }, { 2, 0xf7, 2, 0, 0x8d5 }, { 2, 0xf7, 3, 0, 0x8d5 },  /* SHLX SARX SHRX */
        { 3, 0xf0, 3, 0, 0x8d5 },                           /* RORX */
        { 0, 0xbc, 0, 0, 0x41 },                            /* TZCNT */
    };
    fill(data, 0);
    int k = (int)(rnd() % (sizeof(ops) / sizeof(ops[0])));
    int reg = rnd_reg(true), rm = rnd_reg(true), vvvv = rnd_reg(true);
    bool mem = rnd() % 3 == 0, w = rnd() % 2;
    int disp = rnd_disp() - 64;
    for (int r = 0; r < 16; r++)
        if (r != R_SP && r != R_BX && rnd() % 3 == 0)
            in->r[r] = rnd() % 3 ? (rnd() % 72) | (rnd() % 72) << 8 : 0;
    if (ops[k].map == 0) {
        emit_x(c, false, 0xf3, w, "\x0f\xbc", 2, reg, rm, mem, disp);
        return ops[k].flags;
    }
    if (ops[k].sub)
        reg = ops[k].sub;
    emit1(c, 0xc4);
    emit1(c, (uint8_t)(((reg & 8) ? 0 : 0x80) | 0x40 | (!mem && (rm & 8) ? 0 : 0x20) | ops[k].map));
    int l = rnd() % 16 == 0;   /* VEX.L=1: #UD on both sides */
    emit1(c, (uint8_t)((w ? 0x80 : 0) | (~vvvv & 15) << 3 | l << 2 | ops[k].pp));
    emit1(c, ops[k].op);
    if (mem) {
        emit1(c, (uint8_t)(0x43 | (reg & 7) << 3));
        emit1(c, (uint8_t)disp);
    } else {
        emit1(c, (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7)));
    }
    if (ops[k].map == 3)
        emit1(c, (uint8_t)(rnd() % 80));
    return ops[k].flags;
}

static unsigned cases(void)
{
    const char *e = getenv("QKVM_EMU_CASES");
    return e ? (unsigned)atoi(e) : 700;
}

/* Each case twice: interpreted, and translated before its first run. */
static void run_gen(const char *name, gen_fn gen, uint64_t seed)
{
    const char *e = getenv("QKVM_EMU_SEED");
    rng_state = (e ? strtoull(e, NULL, 0) : 0x5eed0000ull) ^ seed;
    int bad = 0;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    use_xmm = 1;
    for (unsigned k = 0; k < cases() && bad < 5; k++) {
        struct code c = { .n = 0 };
        struct regs in;
        rnd_regs(&in);
        uint64_t fmask = gen(&c, &in, data);
        for (int pass = 0; pass < 2 && bad < 5; pass++) {
            harness_jit = pass ? 0 : -1;
            harness_run(c.b, c.n, &in, data, &nat, &emu);
            if (!result_match(pass ? name : "interpreted", &c, &in, &nat, &emu, fmask, 0xffff, 8))
                bad++;
        }
    }
    harness_jit = -1;
    use_xmm = 0;
    assert_int_equal(bad, 0);
}

static void test_sse3(void **s) { (void)s; run_gen("sse3", gen_sse3, 41); }
static void test_ssse3(void **s) { (void)s; run_gen("ssse3", gen_ssse3, 42); }
static void test_sse41(void **s) { (void)s; run_gen("sse4.1", gen_sse41, 43); }
static void test_pcmpstr(void **s) { (void)s; run_gen("pcmpstr", gen_pcmpstr, 44); }
static void test_crc_movbe(void **s) { (void)s; run_gen("crc32-movbe", gen_crc_movbe, 45); }
static void test_bmi(void **s) { (void)s; run_gen("bmi", gen_bmi, 46); }

/* The host must have what is compared against: without these the native side would only show
 * #UD (or, for TZCNT, BSF). */
static int setup(void **s)
{
    (void)s;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("sse4.2") || !__builtin_cpu_supports("ssse3") ||
        !__builtin_cpu_supports("bmi") || !__builtin_cpu_supports("bmi2") ||
        !__builtin_cpu_supports("movbe"))
        return -1;
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse3), cmocka_unit_test(test_ssse3), cmocka_unit_test(test_sse41),
        cmocka_unit_test(test_pcmpstr), cmocka_unit_test(test_crc_movbe), cmocka_unit_test(test_bmi),
    };
    return cmocka_run_group_tests_name("emu_ext", tests, setup, NULL);
}
