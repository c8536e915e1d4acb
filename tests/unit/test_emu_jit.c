/* Differential tests of the block translator (jit.c): random straight-line blocks of integer
 * instructions, with the flags flowing between them (the translator stores lazy flags only where
 * a later instruction may read them), run natively, interpreted and translated; registers,
 * memory and the flags the block leaves defined are compared. A flag reader (Jcc, SETcc, CMOVcc,
 * ADC/SBB) is only generated when what it reads is defined at that point, so the host and the
 * emulator must agree exactly. QKVM_EMU_SEED / QKVM_EMU_CASES as in test_emu.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "emu_harness.h"

#define CF 0x1u
#define PF 0x4u
#define ZF 0x40u
#define SF 0x80u
#define OF 0x800u
#define FIVE (CF | PF | ZF | SF | OF)   /* AF is left out: no Jcc/SETcc/CMOVcc reads it */

/* flags each condition code reads */
static const uint32_t cc_reads[16] = { OF, OF, CF, CF, ZF, ZF, CF | ZF, CF | ZF,
                                       SF, SF, PF, PF, SF | OF, SF | OF, ZF | SF | OF, ZF | SF | OF };

/* A register operand: never RSP, never RBX (the data pointer of [rbx + disp8]). */
static int reg(void)
{
    for (;;) {
        int r = (int)(rnd() % 16);
        if (r != 4 && r != 3)
            return r;
    }
}

/* A byte register for a REX-less encoding: AL CL DL AH CH DH (BL and BH are RBX's) */
static int breg(void)
{
    static const int r[6] = { 0, 1, 2, 4, 5, 6 };
    return r[rnd() % 6];
}

static int wsz(void) { return rnd() % 3 ? 8 : 4; }
static int disp(void) { return (int)(rnd() % 15) * 8; }

/* One instruction into c; *def: the flags defined so far, updated. */
static void gen_insn(struct code *c, uint32_t *def)
{
    int sz = wsz();
    uint8_t op[2];
    switch (rnd() % 39) {
    case 0: case 1: {   /* ALU r/m, r and r, r/m: ADD OR AND SUB XOR CMP, ADC SBB when CF is */
        int kind = (int)(rnd() % 8);
        if ((kind == 2 || kind == 3) && !(*def & CF))
            kind = 0;
        op[0] = (uint8_t)(kind * 8 + 1 + (rnd() % 2) * 2);
        bool mem = rnd() % 3 == 0;
        emit_modrm(c, sz, op, 1, reg(), mem ? -1 : reg(), disp(), false, NULL, 0);
        *def |= FIVE;
        break;
    }
    case 2: {   /* ALU r, imm8 / imm32 */
        int kind = (int)(rnd() % 8);
        if ((kind == 2 || kind == 3) && !(*def & CF))
            kind = 7;
        bool i8 = rnd() % 2;
        op[0] = i8 ? 0x83 : 0x81;
        emit_modrm(c, sz, op, 1, kind, rnd() % 4 ? reg() : -1, disp(), false, NULL, 0);
        emit_imm(c, rnd_val(), i8 ? 1 : 4);
        *def |= FIVE;
        break;
    }
    case 3:   /* TEST */
        op[0] = 0x85;
        emit_modrm(c, sz, op, 1, reg(), rnd() % 3 ? reg() : -1, disp(), false, NULL, 0);
        *def |= FIVE;
        break;
    case 4: {   /* MOV in all its forms */
        int f = (int)(rnd() % 5);
        if (f < 3) {
            op[0] = f == 0 ? 0x89 : 0x8b;
            emit_modrm(c, sz, op, 1, reg(), f == 2 ? -1 : reg(), disp(), false, NULL, 0);
        } else if (f == 3) {
            int r = reg();
            emit1(c, (uint8_t)(0x40 | (sz == 8 ? 8 : 0) | (r >> 3)));
            emit1(c, (uint8_t)(0xb8 + (r & 7)));
            emit_imm(c, rnd_val(), sz);
        } else {
            op[0] = 0x89;   /* store */
            emit_modrm(c, sz, op, 1, reg(), -1, disp(), false, NULL, 0);
        }
        break;
    }
    case 5: {   /* shifts and rotates by an immediate */
        static const int subs[5] = { 0, 1, 4, 5, 7 };
        int sub = subs[rnd() % 5];
        unsigned n = 1 + (unsigned)(rnd() % (sz * 8 - 1));
        op[0] = 0xc1;
        emit_modrm(c, sz, op, 1, sub, reg(), 0, false, NULL, 0);
        emit1(c, (uint8_t)n);
        if (sub <= 1)
            *def = (*def & ~(OF | CF)) | CF | (n == 1 ? OF : 0);
        else
            *def = (*def | FIVE) & ~(n == 1 ? 0 : OF);
        break;
    }
    case 6:   /* INC/DEC: CF stays */
        op[0] = 0xff;
        emit_modrm(c, sz, op, 1, (int)(rnd() % 2), reg(), 0, false, NULL, 0);
        *def |= PF | ZF | SF | OF;
        break;
    case 7: {   /* NOT, NEG */
        int sub = 2 + (int)(rnd() % 2);
        op[0] = 0xf7;
        emit_modrm(c, sz, op, 1, sub, reg(), 0, false, NULL, 0);
        if (sub == 3)
            *def |= FIVE;
        break;
    }
    case 8: {   /* LEA with base, index and scale */
        int r = reg(), b = reg(), x = reg();
        if (x == 4)
            x = 0;
        if (rnd() % 3 == 0) {   /* no index: [base + disp32] */
            emit1(c, (uint8_t)(0x40 | (sz == 8 ? 8 : 0) | ((r & 8) >> 1) | (b >> 3)));
            emit1(c, 0x8d);
            emit1(c, (uint8_t)(0x80 | (r & 7) << 3 | (b & 7)));
            if ((b & 7) == 4)
                emit1(c, 0x24);   /* R12 as a base takes a SIB */
            emit_imm(c, rnd_val(), 4);
            break;
        }
        emit1(c, (uint8_t)(0x40 | (sz == 8 ? 8 : 0) | ((r & 8) >> 1) | ((x & 8) >> 2) | (b >> 3)));
        emit1(c, 0x8d);
        emit1(c, (uint8_t)(0x84 | (r & 7) << 3));
        emit1(c, (uint8_t)((rnd() % 4) << 6 | (x & 7) << 3 | (b & 7)));
        emit_imm(c, rnd_val(), 4);
        break;
    }
    case 9: {   /* MOVZX/MOVSX from a byte or word register or memory */
        static const uint8_t ops[4] = { 0xb6, 0xb7, 0xbe, 0xbf };
        uint8_t o2[2] = { 0x0f, ops[rnd() % 4] };
        emit_modrm(c, sz, o2, 2, reg(), rnd() % 2 ? reg() : -1, disp(), true, NULL, 0);
        break;
    }
    case 10: {   /* BSWAP */
        int r = reg();
        emit1(c, (uint8_t)(0x40 | (sz == 8 ? 8 : 0) | (r >> 3)));
        emit1(c, 0x0f);
        emit1(c, (uint8_t)(0xc8 + (r & 7)));
        break;
    }
    case 11: {   /* IMUL r, r/m (, imm8 / imm32): CF and OF defined, SF ZF PF not */
        int f = (int)(rnd() % 3);
        uint8_t o2[2] = { 0x0f, 0xaf }, o1[1] = { f == 1 ? 0x6b : 0x69 };
        if (f == 0)
            emit_modrm(c, sz, o2, 2, reg(), rnd() % 3 ? reg() : -1, disp(), false, NULL, 0);
        else
            emit_modrm(c, sz, o1, 1, reg(), rnd() % 3 ? reg() : -1, disp(), false, NULL, 0);
        if (f)
            emit_imm(c, rnd_val(), f == 1 ? 1 : 4);
        *def = (*def | CF | OF) & ~(SF | ZF | PF);
        break;
    }
    case 12: {   /* PUSH r; POP r' */
        int a = reg(), b = reg();
        if (a >= 8)
            emit1(c, 0x41);
        emit1(c, (uint8_t)(0x50 + (a & 7)));
        if (b >= 8)
            emit1(c, 0x41);
        emit1(c, (uint8_t)(0x58 + (b & 7)));
        break;
    }
    case 13: {   /* SETcc r8 */
        int cc = (int)(rnd() % 16);
        if ((cc_reads[cc] & *def) != cc_reads[cc])
            break;
        uint8_t o2[2] = { 0x0f, (uint8_t)(0x90 + cc) };
        emit_modrm(c, 1, o2, 2, 0, reg(), 0, true, NULL, 0);
        break;
    }
    case 14: {   /* CMOVcc */
        int cc = (int)(rnd() % 16);
        if ((cc_reads[cc] & *def) != cc_reads[cc])
            break;
        uint8_t o2[2] = { 0x0f, (uint8_t)(0x40 + cc) };
        emit_modrm(c, sz, o2, 2, reg(), rnd() % 3 ? reg() : -1, disp(), false, NULL, 0);
        break;
    }
    case 17: {   /* byte ALU, TEST, CMP: AL..BH without REX, SPL..R15B with */
        static const uint8_t ops[8] = { 0x00, 0x02, 0x20, 0x28, 0x30, 0x38, 0x3a, 0x84 };
        op[0] = ops[rnd() % 8];
        bool rex = rnd() % 2, mem = rnd() % 3 == 0;
        int r = reg(), m = reg();
        if (!rex) {
            r = breg();
            m = breg();
        }
        emit_modrm(c, 1, op, 1, r, mem ? -1 : m, disp(), rex, NULL, 0);
        *def |= FIVE;
        break;
    }
    case 18: {   /* byte MOV: r/m8, r8 / r8, r/m8 / r/m8, imm8; CMP/TEST with an imm8 */
        int f = (int)(rnd() % 5);
        bool rex = rnd() % 2, mem = rnd() % 3 == 0;
        int r = reg(), m = reg();
        if (!rex) {
            r = breg();
            m = breg();
        }
        static const uint8_t ops[5] = { 0x88, 0x8a, 0xc6, 0x80, 0xf6 };
        op[0] = ops[f];
        int sub = (int)(rnd() % 8);   /* 0x80: ADC/SBB read CF */
        if ((sub == 2 || sub == 3) && !(*def & CF))
            sub = 7;
        emit_modrm(c, 1, op, 1, f == 2 || f == 4 ? 0 : f == 3 ? sub : r, mem ? -1 : m, disp(), rex,
                   NULL, 0);
        if (f >= 2)
            emit1(c, (uint8_t)rnd_val());
        if (f >= 3)
            *def |= FIVE;
        break;
    }
    case 19: {   /* AL, imm8 */
        static const uint8_t ops[4] = { 0x04, 0x2c, 0x3c, 0xa8 };
        emit1(c, ops[rnd() % 4]);
        emit1(c, (uint8_t)rnd_val());
        *def |= FIVE;
        break;
    }
    case 20: {   /* shifts by 1 and by CL */
        static const int subs[5] = { 0, 1, 4, 5, 7 };
        int sub = subs[rnd() % 5];
        bool cl = rnd() % 2;
        op[0] = cl ? 0xd3 : 0xd1;
        int r = reg();
        if (cl && r == R_CX)
            r = R_AX;
        emit_modrm(c, sz, op, 1, sub, r, 0, false, NULL, 0);
        if (cl) {
            *def = 0;   /* what a count of 0 or more than 1 leaves is the harness's business, not ours */
            break;
        }
        if (sub <= 1)
            *def = (*def & ~(OF | CF)) | CF | OF;
        else
            *def |= FIVE;
        break;
    }
    case 21: {   /* 16-bit forms: ALU r/m, r and r, r/m and imm, TEST, MOV, INC/DEC/NOT/NEG r */
        int f = (int)(rnd() % 6), kind = (int)(rnd() % 8);
        if ((kind == 2 || kind == 3) && !(*def & CF))
            kind = 7;
        bool mem = rnd() % 2;
        if (f == 0) {
            op[0] = (uint8_t)(kind * 8 + 1 + (rnd() % 2) * 2);
            emit_modrm(c, 2, op, 1, reg(), mem ? -1 : reg(), disp(), false, NULL, 0);
        } else if (f == 1) {
            bool i8 = rnd() % 2;
            op[0] = i8 ? 0x83 : 0x81;
            emit_modrm(c, 2, op, 1, kind, mem ? -1 : reg(), disp(), false, NULL, 0);
            emit_imm(c, rnd_val(), i8 ? 1 : 2);
        } else if (f == 2) {
            op[0] = 0x85;
            emit_modrm(c, 2, op, 1, reg(), mem ? -1 : reg(), disp(), false, NULL, 0);
        } else if (f == 3) {
            static const uint8_t mv[3] = { 0x89, 0x8b, 0xc7 };
            op[0] = mv[rnd() % 3];
            emit_modrm(c, 2, op, 1, op[0] == 0xc7 ? 0 : reg(), mem ? -1 : reg(), disp(), false, NULL, 0);
            if (op[0] == 0xc7)
                emit_imm(c, rnd_val(), 2);
            break;
        } else if (f == 4) {   /* INC/DEC (CF stays), NOT, NEG of a register */
            int sub = (int)(rnd() % 4);
            op[0] = sub < 2 ? 0xff : 0xf7;
            emit_modrm(c, 2, op, 1, sub, reg(), 0, false, NULL, 0);
            if (sub < 2)
                *def |= PF | ZF | SF | OF;
            else if (sub == 3)
                *def |= FIVE;
            break;
        } else {               /* a shift or rotate, then an instruction that sets the flags anew */
            static const int subs[5] = { 0, 1, 4, 5, 7 };
            op[0] = 0xc1;
            emit_modrm(c, 2, op, 1, subs[rnd() % 5], reg(), 0, false, NULL, 0);
            emit1(c, (uint8_t)(rnd() % 32));
            op[0] = 0x85;
            emit_modrm(c, 8, op, 1, reg(), reg(), 0, false, NULL, 0);
        }
        *def |= FIVE;
        break;
    }
    case 22: {   /* INC/DEC/NOT/NEG of memory, every size */
        static const int szs[4] = { 1, 2, 4, 8 };
        int msz = szs[rnd() % 4], sub = (int)(rnd() % 4);
        op[0] = (uint8_t)((sub < 2 ? 0xff : 0xf7) - (msz == 1));
        emit_modrm(c, msz, op, 1, sub, -1, disp(), false, NULL, 0);
        if (sub < 2)
            *def |= PF | ZF | SF | OF;
        else if (sub == 3)
            *def |= FIVE;
        break;
    }
    case 23: {   /* byte ALU with a memory destination: op m8, r8 and op m8, imm8 */
        int kind = (int)(rnd() % 8);
        if ((kind == 2 || kind == 3) && !(*def & CF))
            kind = 0;
        bool rex = rnd() % 2;
        if (rnd() % 2) {
            op[0] = (uint8_t)(kind * 8);
            emit_modrm(c, 1, op, 1, rex ? reg() : breg(), -1, disp(), rex, NULL, 0);
        } else {
            op[0] = 0x80;
            emit_modrm(c, 1, op, 1, kind, -1, disp(), false, NULL, 0);
            emit1(c, (uint8_t)rnd_val());
        }
        *def |= FIVE;
        break;
    }
    case 24: {   /* CMPXCHG and XADD with memory, LOCKed or not */
        if (rnd() % 2)
            emit1(c, 0xf0);
        uint8_t o2[2] = { 0x0f, rnd() % 2 ? 0xb1 : 0xc1 };
        emit_modrm(c, sz, o2, 2, reg(), -1, disp(), false, NULL, 0);
        *def |= FIVE;
        break;
    }
    case 26: {   /* TEST m, imm; CWDE/CDQE, CDQ/CQO */
        if (rnd() % 2) {
            int tsz = rnd() % 3 ? sz : 2;
            op[0] = 0xf7;
            emit_modrm(c, tsz, op, 1, 0, -1, disp(), false, NULL, 0);
            emit_imm(c, rnd_val(), tsz == 2 ? 2 : 4);
            *def |= FIVE;
        } else {
            if (sz == 8)
                emit1(c, 0x48);
            emit1(c, rnd() % 2 ? 0x98 : 0x99);
        }
        break;
    }
    case 27: {   /* MOVZX/MOVSX from AH, CH, DH (no REX) */
        uint8_t o2[2] = { 0x0f, rnd() % 2 ? 0xb6 : 0xbe };
        static const int hi[3] = { 4, 5, 6 }, dst[6] = { 0, 1, 2, 5, 6, 7 };
        int r = dst[rnd() % 6];
        emit(c, o2, 2);
        emit1(c, (uint8_t)(0xc0 | r << 3 | hi[rnd() % 3]));
        break;
    }
    case 28: {   /* DIV r/m: rDX cleared first, or not (then mostly #DE); the flags after it are undefined */
        if (rnd() % 4)
            emit(c, "\x31\xd2", 2);   /* xor edx, edx */
        op[0] = 0xf7;
        int d = reg();
        if (d == R_DX || d == R_AX)
            d = R_CX;
        emit_modrm(c, sz, op, 1, 6, rnd() % 2 ? d : -1, disp(), false, NULL, 0);
        *def = 0;
        break;
    }
    case 30: {   /* MUL/IMUL r/m: CF and OF defined; SETcc m8 */
        op[0] = 0xf7;
        emit_modrm(c, sz, op, 1, 4 + (int)(rnd() % 2), rnd() % 2 ? reg() : -1, disp(), false, NULL, 0);
        *def = (*def | CF | OF) & ~(SF | ZF | PF);
        int cc = (int)(rnd() % 16);
        if ((cc_reads[cc] & *def) == cc_reads[cc]) {
            uint8_t o2[2] = { 0x0f, (uint8_t)(0x90 + cc) };
            emit_modrm(c, 1, o2, 2, 0, -1, disp(), false, NULL, 0);
        }
        break;
    }
    case 31: {   /* LOCKed ADD OR AND SUB XOR m, r / m, imm and INC DEC NOT NEG m, every size */
        static const int szs[4] = { 1, 2, 4, 8 }, kinds[5] = { 0, 1, 4, 5, 6 };
        int msz = szs[rnd() % 4], kind = kinds[rnd() % 5], f = (int)(rnd() % 3);
        emit1(c, 0xf0);
        if (f == 0) {
            op[0] = (uint8_t)(kind * 8 + (msz != 1));
            bool rex = rnd() % 2;
            emit_modrm(c, msz, op, 1, msz == 1 && !rex ? breg() : reg(), -1, disp(), rex, NULL, 0);
            *def |= FIVE;
        } else if (f == 1) {
            bool i8 = msz == 1 || rnd() % 2;
            op[0] = msz == 1 ? 0x80 : i8 ? 0x83 : 0x81;
            emit_modrm(c, msz, op, 1, kind, -1, disp(), false, NULL, 0);
            emit_imm(c, rnd_val(), i8 ? 1 : msz == 2 ? 2 : 4);
            *def |= FIVE;
        } else {
            int sub = (int)(rnd() % 4);
            op[0] = (uint8_t)((sub < 2 ? 0xff : 0xf7) - (msz == 1));
            emit_modrm(c, msz, op, 1, sub, -1, disp(), false, NULL, 0);
            if (sub < 2)
                *def |= PF | ZF | SF | OF;
            else if (sub == 3)
                *def |= FIVE;
        }
        break;
    }
    case 32: {   /* BT r, r and BT r, imm8: CF the bit, ZF kept, OF SF AF PF undefined */
        if (rnd() % 2) {
            uint8_t o2[2] = { 0x0f, 0xa3 };
            emit_modrm(c, sz, o2, 2, reg(), reg(), 0, false, NULL, 0);
        } else {
            uint8_t o2[2] = { 0x0f, 0xba };
            emit_modrm(c, sz, o2, 2, 4, reg(), 0, false, NULL, 0);
            emit1(c, (uint8_t)rnd_val());
        }
        *def = (*def & ZF) | CF;
        break;
    }
    case 33: {   /* a flag producer read only by the SETcc r8 / CMOVcc r, r after it (its lazy
                  * flags are then not stored), with MOVs and more readers between them and the
                  * next producer (the host's flags are kept across them) */
        int f = (int)(rnd() % 4);
        if (f < 2) {        /* ALU r, r without ADC/SBB, CMP, TEST */
            static const uint8_t ops[7] = { 0x01, 0x09, 0x21, 0x29, 0x31, 0x39, 0x85 };
            op[0] = ops[rnd() % 7];
            emit_modrm(c, sz, op, 1, reg(), reg(), 0, false, NULL, 0);
            *def |= FIVE;
        } else if (f == 2) {   /* ALU r, imm8 / imm32; TEST r, imm32; ALU and TEST on eAX, imm32 */
            static const int kinds[6] = { 0, 1, 4, 5, 6, 7 };
            int g = (int)(rnd() % 4), kind = kinds[rnd() % 6];
            if (g < 2) {
                op[0] = g ? 0x81 : 0x83;
                emit_modrm(c, sz, op, 1, kind, reg(), 0, false, NULL, 0);
            } else if (g == 2) {
                op[0] = 0xf7;
                emit_modrm(c, sz, op, 1, 0, reg(), 0, false, NULL, 0);
            } else {
                if (sz == 8)
                    emit1(c, 0x48);
                emit1(c, rnd() % 2 ? 0xa9 : (uint8_t)(kind * 8 + 5));
            }
            /* small values too: imm32s that would or would not fit an imm8 */
            emit_imm(c, rnd() % 2 ? rnd_val() : (uint64_t)((int64_t)(rnd() % 512) - 256), g == 0 ? 1 : 4);
            *def |= FIVE;
        } else {            /* SHL/SHR/SAR by an immediate: the flags are stored after all */
            static const int subs[3] = { 4, 5, 7 };
            unsigned n = 1 + (unsigned)(rnd() % (sz * 8 - 1));
            op[0] = 0xc1;
            emit_modrm(c, sz, op, 1, subs[rnd() % 3], reg(), 0, false, NULL, 0);
            emit1(c, (uint8_t)n);
            *def = (*def | FIVE) & ~(n == 1 ? 0 : OF);
        }
        int m = 1 + (int)(rnd() % 3);
        for (int j = 0; j < m; j++) {
            int cc = (int)(rnd() % 16), g = (int)(rnd() % 3);
            if ((cc_reads[cc] & *def) != cc_reads[cc])
                cc = 4;   /* ZF: every producer here defines it */
            if (g == 0) {
                uint8_t o2[2] = { 0x0f, (uint8_t)(0x90 + cc) };
                bool rex = rnd() % 2;
                emit_modrm(c, 1, o2, 2, 0, rex ? reg() : breg(), 0, rex, NULL, 0);
            } else if (g == 1) {
                uint8_t o2[2] = { 0x0f, (uint8_t)(0x40 + cc) };
                emit_modrm(c, sz, o2, 2, reg(), reg(), 0, false, NULL, 0);
            } else {
                op[0] = rnd() % 2 ? 0x89 : 0x8b;
                emit_modrm(c, wsz(), op, 1, reg(), reg(), 0, false, NULL, 0);
            }
        }
        if (rnd() % 2) {   /* and the flags die */
            op[0] = 0x39;
            emit_modrm(c, sz, op, 1, reg(), reg(), 0, false, NULL, 0);
            *def |= FIVE;
        }
        break;
    }
    case 34: {   /* MOVSXD r64, r/m32 */
        op[0] = 0x63;
        emit_modrm(c, 8, op, 1, reg(), rnd() % 2 ? reg() : -1, disp(), false, NULL, 0);
        break;
    }
    case 35: {   /* PUSH r/m (FF /6) then POP r; INC/DEC r/m (FF /0 /1): mid-block, not block ends */
        int f = (int)(rnd() % 2);
        op[0] = 0xff;
        if (f == 0) {
            emit_modrm(c, 4, op, 1, 6, rnd() % 2 ? reg() : -1, disp(), false, NULL, 0);
            int b = reg();
            if (b >= 8)
                emit1(c, 0x41);
            emit1(c, (uint8_t)(0x58 + (b & 7)));
        } else {
            emit_modrm(c, sz, op, 1, (int)(rnd() % 2), rnd() % 2 ? reg() : -1, disp(), false, NULL, 0);
            *def |= PF | ZF | SF | OF;
        }
        break;
    }
    case 36: {   /* CMOVcc r, m: read whatever the condition, so a bad address faults even when
                  * it is false (a non-canonical one: #GP both ways); a 32-bit destination is
                  * zero-extended even when false */
        int cc = (int)(rnd() % 16);
        if ((cc_reads[cc] & *def) != cc_reads[cc])
            cc = (int)(rnd() % 2) + 4;
        if ((cc_reads[cc] & *def) != cc_reads[cc])
            break;
        uint8_t o2[2] = { 0x0f, (uint8_t)(0x40 + cc) };
        if (rnd() % 8) {
            emit_modrm(c, sz, o2, 2, reg(), -1, disp(), false, NULL, 0);
            break;
        }
        static const int bases[8] = { 0, 1, 2, 6, 7, 9, 10, 15 };   /* no SIB, no RBX */
        int b = bases[rnd() % 8], r = reg();
        emit1(c, (uint8_t)(0x48 | (b >> 3)));   /* mov b, imm64: non-canonical */
        emit1(c, (uint8_t)(0xb8 + (b & 7)));
        emit_imm(c, 0x8000000000000000ull | (rnd() & 0x7ffffffffffff000ull), 8);
        emit1(c, (uint8_t)(0x40 | (sz == 8 ? 8 : 0) | ((r & 8) >> 1) | (b >> 3)));
        emit(c, o2, 2);
        emit1(c, (uint8_t)(0x40 | (r & 7) << 3 | (b & 7)));
        emit1(c, (uint8_t)disp());
        break;
    }
    case 37: case 38: {   /* BT BTS BTR BTC r/m, r and r/m, imm8: on memory a register's bit offset
                           * is signed and picks a word before or past [rbx + disp] (set here to
                           * stay in the data); LOCKed ones (the handler) now and then */
        int sub = (int)(rnd() % 4), f = (int)(rnd() % 3);
        bool mem = f == 1 || (f == 2 && rnd() % 2), lock = mem && sub && rnd() % 4 == 0;
        if (f == 2) {
            if (lock)
                emit1(c, 0xf0);
            uint8_t o2[2] = { 0x0f, 0xba };
            emit_modrm(c, sz, o2, 2, 4 + sub, mem ? -1 : reg(), disp(), false, NULL, 0);
            emit1(c, (uint8_t)rnd_val());
        } else {
            uint8_t o2[2] = { 0x0f, (uint8_t)(0xa3 | sub << 3) };
            int r = reg(), m = reg();
            if (mem) {   /* mov r, imm32 (sign-extended): -8000..8000 bits */
                uint8_t mv[6] = { (uint8_t)(0x48 | (r >> 3)), 0xc7, (uint8_t)(0xc0 | (r & 7)) };
                emit(c, mv, 3);
                emit_imm(c, (uint64_t)((int64_t)(rnd() % 16001) - 8000), 4);
            }
            if (lock)
                emit1(c, 0xf0);
            emit_modrm(c, sz, o2, 2, r, mem ? -1 : m, disp(), false, NULL, 0);
        }
        *def = (*def & ZF) | CF;
        break;
    }
    case 29:   /* SAHF: SF ZF AF PF CF from AH, OF kept (the flags themselves, CC_EFLAGS) */
        emit1(c, 0x9e);
        *def |= CF | PF | ZF | SF;
        break;
    case 25:   /* a store first: the page is in the TLB for what follows (a miss runs the handler) */
        emit(c, "\x80\x0b\x00", 3);   /* or byte [rbx], 0 */
        *def |= FIVE;
        break;
    case 15: case 16: {   /* CMP then Jcc over the next instruction */
        if (c->n > 180)
            break;
        op[0] = 0x39;
        emit_modrm(c, sz, op, 1, reg(), reg(), 0, false, NULL, 0);
        *def |= FIVE;
        struct code next = { .n = 0 };
        uint32_t d2 = *def;
        gen_insn(&next, &d2);
        int cc = (int)(rnd() % 16);
        emit1(c, (uint8_t)(0x70 + cc));
        emit1(c, (uint8_t)next.n);
        emit(c, next.b, next.n);
        /* either path: what both leave defined */
        *def &= d2;
        break;
    }
    }
}

static void test_translated_blocks(void **s)
{
    (void)s;
    const char *e = getenv("QKVM_EMU_SEED"), *ne = getenv("QKVM_EMU_CASES");
    rng_state = (e ? strtoull(e, NULL, 0) : 0x5eed0000ull) ^ 0x71;
    unsigned n = ne ? (unsigned)atoi(ne) : 700;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    int bad = 0;
    for (unsigned k = 0; k < n && bad < 5; k++) {
        struct regs in;
        rnd_regs(&in);
        rnd_data(data);
        struct code c = { .n = 0 };
        uint32_t def = FIVE;
        int len = 4 + (int)(rnd() % 12);
        for (int j = 0; j < len && c.n < 200; j++)
            gen_insn(&c, &def);
        for (int m = 0; m < 2; m++) {
            harness_jit = m ? 0 : -1;
            harness_run(c.b, c.n, &in, data, &nat, &emu);
            if (!result_match(m ? "block (translated)" : "block (interpreted)", &c, &in, &nat, &emu,
                              def, 0xffff, 0))
                bad++;
        }
        harness_jit = -1;
    }
    assert_int_equal(bad, 0);
}

static int setup(void **s)
{
    (void)s;
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_translated_blocks),
    };
    return cmocka_run_group_tests_name("emu_jit", tests, setup, NULL);
}
