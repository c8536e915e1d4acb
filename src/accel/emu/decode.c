/* x86 instruction decoder: prefixes, opcode tables, ModRM/SIB, immediates. */
#include "accel/emu/decode.h"
#include "accel/emu/exec.h"

/* Operand format flags of an opcode */
enum {
    M = 1 << 0,      /* ModRM follows */
    IB = 1 << 1,     /* imm8, sign-extended */
    IW = 1 << 2,     /* imm16 */
    IZ = 1 << 3,     /* imm16/32 by operand size, sign-extended */
    IV = 1 << 4,     /* imm16/32/64 by operand size (MOV r, imm) */
    B = 1 << 5,      /* byte operation */
    D64 = 1 << 6,    /* 64-bit default operand size in 64-bit mode */
    F64 = 1 << 7,    /* 64-bit operand size in 64-bit mode whatever the prefixes */
    I64 = 1 << 8,    /* invalid in 64-bit mode */
    END = 1 << 9,    /* ends a block */
    MO = 1 << 10,    /* moffs: an address-size immediate */
    AP = 1 << 11,    /* far pointer: offset (16/32) then selector */
    EN = 1 << 12,    /* ENTER: imm16 then imm8 */
    BRM = 1 << 13,   /* the r/m operand is a byte register (MOVZX/MOVSX r, r/m8) */
    SSE = 1 << 14,   /* SSE/MMX: register numbers are not GPRs */
};

struct opdef {
    insn_fn fn;
    uint16_t f;
};

#define ALU(base) [base] = { h_alu_rm_r, M | B }, [base + 1] = { h_alu_rm_r, M },             \
                  [base + 2] = { h_alu_r_rm, M | B }, [base + 3] = { h_alu_r_rm, M },          \
                  [base + 4] = { h_alu_a_i, IB | B }, [base + 5] = { h_alu_a_i, IZ }

static const struct opdef op1[256] = {
    ALU(0x00), ALU(0x08), ALU(0x10), ALU(0x18), ALU(0x20), ALU(0x28), ALU(0x30), ALU(0x38),
    [0x06] = { h_push_seg, I64 }, [0x07] = { h_pop_seg, I64 | END }, [0x0e] = { h_push_seg, I64 },
    [0x16] = { h_push_seg, I64 }, [0x17] = { h_pop_seg, I64 | END }, [0x1e] = { h_push_seg, I64 },
    [0x1f] = { h_pop_seg, I64 | END },
    [0x27] = { h_daa, I64 }, [0x2f] = { h_das, I64 }, [0x37] = { h_aaa, I64 }, [0x3f] = { h_aas, I64 },
    [0x40 ... 0x4f] = { h_incdec_r, 0 },
    [0x50 ... 0x57] = { h_push_r, D64 }, [0x58 ... 0x5f] = { h_pop_r, D64 },
    [0x60] = { h_pusha, I64 }, [0x61] = { h_popa, I64 },
    [0x63] = { h_movsxd, M },
    [0x68] = { h_push_i, IZ | D64 }, [0x69] = { h_imul_rmi, M | IZ },
    [0x6a] = { h_push_i, IB | D64 }, [0x6b] = { h_imul_rmi, M | IB },
    [0x6c] = { h_ins, B }, [0x6d] = { h_ins, 0 }, [0x6e] = { h_outs, B }, [0x6f] = { h_outs, 0 },
    [0x70 ... 0x7f] = { h_jcc, IB | F64 | END },
    [0x80] = { h_alu_rm_i, M | IB | B }, [0x81] = { h_alu_rm_i, M | IZ },
    [0x82] = { h_alu_rm_i, M | IB | B | I64 }, [0x83] = { h_alu_rm_i, M | IB },
    [0x84] = { h_test_rm_r, M | B }, [0x85] = { h_test_rm_r, M },
    [0x86] = { h_xchg_rm_r, M | B }, [0x87] = { h_xchg_rm_r, M },
    [0x88] = { h_mov_rm_r, M | B }, [0x89] = { h_mov_rm_r, M },
    [0x8a] = { h_mov_r_rm, M | B }, [0x8b] = { h_mov_r_rm, M },
    [0x8c] = { h_mov_rm_sreg, M }, [0x8d] = { h_lea, M }, [0x8e] = { h_mov_sreg_rm, M | END },
    [0x8f] = { h_pop_rm, M | D64 },
    [0x90] = { h_nop, 0 }, [0x91 ... 0x97] = { h_xchg_a_r, 0 },
    [0x98] = { h_cbw, 0 }, [0x99] = { h_cwd, 0 }, [0x9a] = { h_callf_imm, AP | I64 | END },
    [0x9b] = { h_fwait, 0 }, [0x9c] = { h_pushf, D64 }, [0x9d] = { h_popf, D64 | END },
    [0x9e] = { h_sahf, 0 }, [0x9f] = { h_lahf, 0 },
    [0xa0] = { h_mov_a_moffs, MO | B }, [0xa1] = { h_mov_a_moffs, MO },
    [0xa2] = { h_mov_moffs_a, MO | B }, [0xa3] = { h_mov_moffs_a, MO },
    [0xa4] = { h_movs, B }, [0xa5] = { h_movs, 0 }, [0xa6] = { h_cmps, B }, [0xa7] = { h_cmps, 0 },
    [0xa8] = { h_test_a_i, IB | B }, [0xa9] = { h_test_a_i, IZ },
    [0xaa] = { h_stos, B }, [0xab] = { h_stos, 0 }, [0xac] = { h_lods, B }, [0xad] = { h_lods, 0 },
    [0xae] = { h_scas, B }, [0xaf] = { h_scas, 0 },
    [0xb0 ... 0xb7] = { h_mov_r_i, IB | B }, [0xb8 ... 0xbf] = { h_mov_r_i, IV },
    [0xc0] = { h_shift_i, M | IB | B }, [0xc1] = { h_shift_i, M | IB },
    [0xc2] = { h_ret, IW | F64 | END }, [0xc3] = { h_ret, F64 | END },
    [0xc4] = { h_lxs, M | I64 }, [0xc5] = { h_lxs, M | I64 },
    [0xc6] = { h_mov_rm_i, M | IB | B }, [0xc7] = { h_mov_rm_i, M | IZ },
    [0xc8] = { h_enter, EN | D64 }, [0xc9] = { h_leave, D64 },
    [0xca] = { h_retf, IW | END }, [0xcb] = { h_retf, END },
    [0xcc] = { h_int3, END }, [0xcd] = { h_int, IB | END }, [0xce] = { h_into, I64 | END },
    [0xcf] = { h_iret, END },
    [0xd0] = { h_shift_1, M | B }, [0xd1] = { h_shift_1, M },
    [0xd2] = { h_shift_cl, M | B }, [0xd3] = { h_shift_cl, M },
    [0xd4] = { h_aam, IB | I64 }, [0xd5] = { h_aad, IB | I64 }, [0xd6] = { h_salc, I64 },
    [0xd7] = { h_xlat, 0 },
    [0xd8 ... 0xdf] = { h_fpu, M },
    [0xe0 ... 0xe2] = { h_loop, IB | F64 | END }, [0xe3] = { h_jcxz, IB | F64 | END },
    [0xe4] = { h_in_i, IB | B }, [0xe5] = { h_in_i, IB }, [0xe6] = { h_out_i, IB | B },
    [0xe7] = { h_out_i, IB },
    [0xe8] = { h_call_rel, IZ | F64 | END }, [0xe9] = { h_jmp_rel, IZ | F64 | END },
    [0xea] = { h_jmpf_imm, AP | I64 | END }, [0xeb] = { h_jmp_rel, IB | F64 | END },
    [0xec] = { h_in_dx, B }, [0xed] = { h_in_dx, 0 }, [0xee] = { h_out_dx, B }, [0xef] = { h_out_dx, 0 },
    [0xf1] = { h_int1, END }, [0xf4] = { h_hlt, END }, [0xf5] = { h_cmc, 0 },
    [0xf6] = { h_grp3, M | B }, [0xf7] = { h_grp3, M },
    [0xf8] = { h_clc, 0 }, [0xf9] = { h_stc, 0 }, [0xfa] = { h_cli, 0 }, [0xfb] = { h_sti, END },
    [0xfc] = { h_cld, 0 }, [0xfd] = { h_std, 0 },
    [0xfe] = { h_grp4, M | B }, [0xff] = { h_grp5, M },
};

#define S(x) { h_sse, M | SSE | (x) }
static const struct opdef op2[256] = {
    [0x00] = { h_grp6, M }, [0x01] = { h_grp7, M | END }, [0x02] = { h_lar, M }, [0x03] = { h_lsl, M },
    [0x05] = { h_syscall, END }, [0x06] = { h_clts, 0 }, [0x07] = { h_sysret, END },
    [0x08] = { h_wbinvd, 0 }, [0x09] = { h_wbinvd, 0 }, [0x0b] = { h_ud, END },
    [0x0d] = { h_nop, M },
    [0x10 ... 0x17] = S(0),
    [0x18 ... 0x1f] = { h_nop, M },
    [0x20] = { h_mov_r_cr, M | F64 }, [0x21] = { h_mov_r_dr, M | F64 },
    [0x22] = { h_mov_cr_r, M | F64 | END }, [0x23] = { h_mov_dr_r, M | F64 },
    [0x28 ... 0x2f] = S(0),
    [0x30] = { h_wrmsr, END }, [0x31] = { h_rdtsc, 0 }, [0x32] = { h_rdmsr, 0 }, [0x33] = { h_rdpmc, 0 },
    [0x34] = { h_sysenter, END }, [0x35] = { h_sysexit, END },
    [0x40 ... 0x4f] = { h_cmov, M },
    [0x50 ... 0x6f] = S(0),
    [0x70 ... 0x73] = S(IB),
    [0x74 ... 0x76] = S(0), [0x77] = { h_nop, 0 },   /* EMMS: the tag word is not modelled */
    [0x7c ... 0x7f] = S(0),
    [0x80 ... 0x8f] = { h_jcc, IZ | F64 | END },
    [0x90 ... 0x9f] = { h_setcc, M | B },
    [0xa0] = { h_push_seg, D64 }, [0xa1] = { h_pop_seg, D64 }, [0xa2] = { h_cpuid, 0 },
    [0xa3] = { h_bt_rm_r, M }, [0xa4] = { h_shld_i, M | IB }, [0xa5] = { h_shld_cl, M },
    [0xa8] = { h_push_seg, D64 }, [0xa9] = { h_pop_seg, D64 },
    [0xab] = { h_bt_rm_r, M }, [0xac] = { h_shrd_i, M | IB }, [0xad] = { h_shrd_cl, M },
    [0xae] = { h_grp15, M }, [0xaf] = { h_imul_r_rm, M },
    [0xb0] = { h_cmpxchg, M | B }, [0xb1] = { h_cmpxchg, M },
    [0xb2] = { h_lxs, M }, [0xb3] = { h_bt_rm_r, M }, [0xb4] = { h_lxs, M }, [0xb5] = { h_lxs, M },
    [0xb6] = { h_movzx, M | BRM }, [0xb7] = { h_movzx, M },
    [0xb8] = { h_popcnt, M }, [0xb9] = { h_ud, M | END },
    [0xba] = { h_bt_rm_i, M | IB }, [0xbb] = { h_bt_rm_r, M },
    [0xbc] = { h_tzcnt, M }, [0xbd] = { h_bsr, M },
    [0xbe] = { h_movsx, M | BRM }, [0xbf] = { h_movsx, M },
    [0xc0] = { h_xadd, M | B }, [0xc1] = { h_xadd, M },
    [0xc2] = S(IB), [0xc3] = { h_movnti, M },
    [0xc4 ... 0xc6] = S(IB),
    [0xc7] = { h_grp9, M },
    [0xc8 ... 0xcf] = { h_bswap, 0 },
    [0xd0 ... 0xff] = S(0),
};

/* 0F 38 and 0F 3A: SSSE3/SSE4 (exec_sse4.c), CRC32 and MOVBE (GPR operands, BRM for the byte
 * source of CRC32) */
static const struct opdef op38[256] = {
    [0x00 ... 0x0b] = S(0), [0x10] = S(0), [0x14 ... 0x15] = S(0), [0x17] = S(0),
    [0x1c ... 0x1e] = S(0), [0x20 ... 0x25] = S(0), [0x28 ... 0x2b] = S(0),
    [0x30 ... 0x35] = S(0), [0x37 ... 0x41] = S(0), [0xdb ... 0xdf] = S(0),
    [0x82] = { h_invpcid, M | END },
    [0xf0] = { h_crc32_movbe, M | BRM }, [0xf1] = { h_crc32_movbe, M },
};
/* VEX: AVX/AVX2/FMA/F16C (exec_avx.c, which sorts out prefixes and lengths), and the
 * general-register instructions of BMI1 and BMI2 (exec_bmi.c) */
#define V(x) { h_avx, M | SSE | (x) }
static const struct opdef opv1[256] = {
    [0x10 ... 0x17] = V(0), [0x28 ... 0x2f] = V(0), [0x50 ... 0x6f] = V(0), [0x70 ... 0x73] = V(IB),
    [0x74 ... 0x76] = V(0), [0x77] = { h_avx, SSE }, [0x7c ... 0x7f] = V(0), [0xc2] = V(IB),
    [0xc4 ... 0xc6] = V(IB), [0xd0 ... 0xff] = V(0),
};
static const struct opdef opv38[256] = {
    [0x00 ... 0x0f] = V(0), [0x13] = V(0), [0x16 ... 0x19] = V(0), [0x1a] = V(0),
    [0x1c ... 0x1e] = V(0), [0x20 ... 0x25] = V(0), [0x28 ... 0x2f] = V(0), [0x30 ... 0x41] = V(0),
    [0x45 ... 0x47] = V(0), [0x58 ... 0x5a] = V(0), [0x78 ... 0x79] = V(0), [0x8c] = V(0),
    [0x8e] = V(0), [0x90 ... 0x93] = V(0), [0x96 ... 0x9f] = V(0), [0xa6 ... 0xaf] = V(0), [0xb6 ... 0xbf] = V(0), [0xdb ... 0xdf] = V(0),
    [0xf2] = { h_bmi, M }, [0xf3] = { h_bmi, M }, [0xf5 ... 0xf7] = { h_bmi, M },
};
static const struct opdef opv3a[256] = {
    [0x00 ... 0x02] = V(IB), [0x04 ... 0x06] = V(IB), [0x08 ... 0x0f] = V(IB), [0x14 ... 0x19] = V(IB),
    [0x1d] = V(IB), [0x20 ... 0x22] = V(IB), [0x38 ... 0x39] = V(IB), [0x40 ... 0x42] = V(IB),
    [0x44] = V(IB), [0x46] = V(IB), [0x4a ... 0x4c] = V(IB), [0x60 ... 0x63] = V(IB), [0xdf] = V(IB),
    [0xf0] = { h_bmi, M | IB },
};
#undef V
static const struct opdef op3a[256] = {
    [0x08 ... 0x0f] = S(IB), [0x14 ... 0x17] = S(IB), [0x20 ... 0x22] = S(IB),
    [0x40 ... 0x42] = S(IB), [0x44] = S(IB), [0x60 ... 0x63] = S(IB), [0xdf] = S(IB),
};

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int k = 0; k < n; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static uint8_t byte_reg(int r, int rex)
{
    return (!rex && r >= 4 && r < 8) ? (uint8_t)(r + 12) : (uint8_t)r;
}

/* LOCK is allowed only on the read-modify-writes the SDM lists (ADD, ADC, AND, BTC, BTR, BTS,
 * CMPXCHG, CMPXCHG8B/16B, DEC, INC, NEG, NOT, OR, SBB, SUB, XOR, XADD, XCHG) with a memory
 * destination; anything else is #UD (Vol. 2, "LOCK"). */
static bool lock_ok(unsigned op, unsigned sub, unsigned mod)
{
    if (mod == 3)
        return false;
    if (op < 0x38)
        return (op & 7) <= 1;                        /* ADD OR ADC SBB AND SUB XOR r/m, r */
    switch (op) {
    case 0x80: case 0x81: case 0x83: return sub != 7;   /* not CMP */
    case 0x86: case 0x87: return true;                  /* XCHG */
    case 0xf6: case 0xf7: return sub == 2 || sub == 3;  /* NOT NEG */
    case 0xfe: case 0xff: return sub <= 1;              /* INC DEC */
    case 0x1ab: case 0x1b3: case 0x1bb: return true;    /* BTS BTR BTC r/m, r */
    case 0x1ba: return sub >= 5;                        /* BTS BTR BTC r/m, imm8 */
    case 0x1b0: case 0x1b1: case 0x1c0: case 0x1c1: return true;   /* CMPXCHG XADD */
    case 0x1c7: return sub == 1;                        /* CMPXCHG8B/16B */
    default: return false;
    }
}

int decode_insn(const uint8_t *code, int avail, uint32_t mode, struct insn *i, int *ends)
{
    int p = 0, code64 = mode == 8;
    int csz = code64 ? 4 : (int)mode;
    int osz_pfx = 0, asz_pfx = 0, seg = -1, rex = 0;
    memset(i, 0, sizeof(*i));
    *ends = 0;
#define NEED(n) do { if (p + (n) > avail) return p + (n) > 15 ? 0 : -1; } while (0)
    for (;;) {
        NEED(1);
        uint8_t b = code[p];
        switch (b) {
        case 0x66: osz_pfx = 1; p++; rex = 0; continue;
        case 0x67: asz_pfx = 1; p++; rex = 0; continue;
        case 0x26: case 0x2e: case 0x36: case 0x3e:
            seg = (b >> 3) & 3; p++; rex = 0; continue;
        case 0x64: seg = SEG_FS; p++; rex = 0; continue;
        case 0x65: seg = SEG_GS; p++; rex = 0; continue;
        case 0xf0: i->lock = 1; p++; rex = 0; continue;
        case 0xf2: case 0xf3: i->rep = b; p++; rex = 0; continue;
        }
        if (code64 && (b & 0xf0) == 0x40) {
            rex = b;
            p++;
            continue;
        }
        break;
    }
    if (p > 14)
        return 0;
    i->rex = (uint8_t)rex;
    i->pfx66 = (uint8_t)osz_pfx;
    NEED(1);
    unsigned op = code[p++];
    const struct opdef *d;
    bool vex = op == 0xc4 || op == 0xc5;
    if (vex && !code64) {
        /* outside 64-bit mode C4/C5 are LES/LDS unless what follows would be a register
         * operand, which LES/LDS cannot have: then it is VEX */
        NEED(1);
        vex = code[p] >= 0xc0;
    }
    if (vex) {
        /* No 66/F2/F3/REX/LOCK before it. */
        NEED(op == 0xc4 ? 3 : 2);
        if (osz_pfx || i->rep || rex || i->lock)
            goto bad;
        uint8_t b1 = code[p++], b2 = op == 0xc4 ? code[p++] : b1;
        unsigned map = op == 0xc4 ? b1 & 0x1f : 1;
        rex = 0x40 | ((~b1 >> 5) & 4);
        if (op == 0xc4)
            rex |= ((~b1 >> 5) & 3) | ((b2 >> 4) & 8);
        if (!code64)
            rex &= 0x48;   /* eight registers: R, X, B and vvvv[3] are ignored; W stays */
        i->rex = (uint8_t)rex;
        i->vex = 1;
        i->vvvv = (uint8_t)((~b2 >> 3) & (code64 ? 15 : 7));
        i->vexl = (uint8_t)((b2 >> 2) & 1);
        static const uint8_t pp_rep[4] = { 0, 0, 0xf3, 0xf2 };
        i->rep = pp_rep[b2 & 3];
        i->pfx66 = (b2 & 3) == 1;
        NEED(1);
        unsigned b3 = code[p++];
        if (map < 1 || map > 3)
            goto bad;
        d = map == 1 ? &opv1[b3] : map == 2 ? &opv38[b3] : &opv3a[b3];
        op = (map == 1 ? 0x600u : map == 2 ? 0x400u : 0x500u) | b3;
    } else if (op == 0x0f) {
        NEED(1);
        op = code[p++];
        if (op == 0x38 || op == 0x3a) {
            NEED(1);
            unsigned b3 = code[p++];
            d = op == 0x38 ? &op38[b3] : &op3a[b3];
            op = (op == 0x38 ? 0x200u : 0x300u) | b3;
        } else {
            d = &op2[op];
            op |= 0x100;
        }
    } else {
        d = &op1[op];
    }
    i->op = (uint16_t)op;
    uint16_t f = d->f;
    if (!d->fn || (code64 && (f & I64)))
        goto bad;
    i->fn = d->fn;
    if (op == 0xff) {
        /* near CALL/JMP through r/m take 64-bit operands in 64-bit mode, PUSH defaults to them */
        NEED(1);
        int r = (code[p] >> 3) & 7;
        if (r == 2 || r == 4)
            f |= F64;
        else if (r == 6)
            f |= D64;
        /* only the transfers (and the #UD of /7) end a block: INC, DEC and PUSH r/m run on
         * inside it like any other read-modify-write */
        if (r >= 2 && r != 6)
            f |= END;
    }

    /* sizes */
    int osz;
    if (f & B)
        osz = 1;
    else if (code64 && (rex & 8))
        osz = 8;
    else if (code64 && (f & F64))
        osz = 8;
    else if (code64 && (f & D64))
        osz = osz_pfx ? 2 : 8;
    else
        osz = osz_pfx ? (csz == 2 ? 4 : 2) : csz;
    if ((f & F64) && !code64 && osz_pfx)
        osz = csz == 2 ? 4 : 2;
    i->osz = (uint8_t)osz;
    i->asz = (uint8_t)(code64 ? (asz_pfx ? 4 : 8) : (asz_pfx ? (csz == 2 ? 4 : 2) : csz));
    i->seg = (uint8_t)(seg >= 0 ? seg : SEG_DS);
    i->base = i->index = REG_NONE;

    if (f & M) {
        NEED(1);
        uint8_t modrm = code[p++];
        int mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;
        i->mod = (uint8_t)mod;
        i->sub = (uint8_t)reg;
        reg |= (rex & 4) << 1;
        i->reg = (f & B) && !(f & SSE) ? byte_reg(reg, rex) : (uint8_t)reg;
        if (mod == 3) {
            int r = rm | ((rex & 1) << 3);
            i->rm = ((f & (B | BRM)) && !(f & SSE)) ? byte_reg(r, rex) : (uint8_t)r;
        } else if (i->asz == 2) {
            static const uint8_t b16[8] = { R_BX, R_BX, R_BP, R_BP, REG_NONE, REG_NONE, R_BP, R_BX };
            static const uint8_t x16[8] = { R_SI, R_DI, R_SI, R_DI, R_SI, R_DI, REG_NONE, REG_NONE };
            i->base = b16[rm];
            i->index = x16[rm];
            if (rm == 4 || rm == 5) {
                i->base = x16[rm];
                i->index = REG_NONE;
            }
            if (mod == 0 && rm == 6) {
                i->base = REG_NONE;
                NEED(2);
                i->disp = (int16_t)rd_le(code + p, 2);
                p += 2;
            } else if (mod == 1) {
                NEED(1);
                i->disp = (int8_t)code[p++];
            } else if (mod == 2) {
                NEED(2);
                i->disp = (int16_t)rd_le(code + p, 2);
                p += 2;
            }
            if (seg < 0 && i->base == R_BP)
                i->seg = SEG_SS;
        } else {
            int base = rm;
            if (rm == 4) {
                NEED(1);
                uint8_t sib = code[p++];
                int idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
                i->scale = sib >> 6;
                i->index = idx == 4 ? REG_NONE : (uint8_t)idx;
                base = sib & 7;
                if (base == 5 && mod == 0) {
                    i->base = REG_NONE;
                    NEED(4);
                    i->disp = (int32_t)rd_le(code + p, 4);
                    p += 4;
                } else {
                    i->base = (uint8_t)(base | ((rex & 1) << 3));
                }
            } else if (rm == 5 && mod == 0) {
                i->base = code64 ? REG_RIP : REG_NONE;
                NEED(4);
                i->disp = (int32_t)rd_le(code + p, 4);
                p += 4;
            } else {
                i->base = (uint8_t)(rm | ((rex & 1) << 3));
            }
            if (mod == 1) {
                NEED(1);
                i->disp = (int8_t)code[p++];
            } else if (mod == 2) {
                NEED(4);
                i->disp = (int32_t)rd_le(code + p, 4);
                p += 4;
            }
            if (seg < 0 && (i->base == R_SP || i->base == R_BP))
                i->seg = SEG_SS;
        }
    } else {
        /* opcode-embedded register */
        int r = (op & 7) | ((rex & 1) << 3);
        i->rm = (f & B) ? byte_reg(r, rex) : (uint8_t)r;
        i->reg = i->rm;
    }

    if ((op == 0xf6 || op == 0xf7) && (i->sub & 6) == 0)
        f |= op == 0xf6 ? IB : IZ;
    if (f & IB) {
        NEED(1);
        i->imm = (uint64_t)(int64_t)(int8_t)code[p++];
    } else if (f & IW) {
        NEED(2);
        i->imm = rd_le(code + p, 2);
        p += 2;
    } else if (f & IZ) {
        int n = osz == 2 ? 2 : 4;
        NEED(n);
        i->imm = n == 2 ? (uint64_t)(int64_t)(int16_t)rd_le(code + p, 2)
                        : (uint64_t)(int64_t)(int32_t)rd_le(code + p, 4);
        p += n;
    } else if (f & IV) {
        NEED(osz);
        i->imm = rd_le(code + p, osz);
        p += osz;
    } else if (f & MO) {
        NEED(i->asz);
        i->imm = rd_le(code + p, i->asz);
        p += i->asz;
    } else if (f & AP) {
        int n = osz == 2 ? 2 : 4;
        NEED(n + 2);
        i->imm = rd_le(code + p, n);
        i->imm2 = (uint16_t)rd_le(code + p + n, 2);
        p += n + 2;
    } else if (f & EN) {
        NEED(3);
        i->imm = rd_le(code + p, 2);
        i->imm2 = code[p + 2];
        p += 3;
    }
    if (p > 15 || (i->lock && !lock_ok(i->op, i->sub, i->mod)))
        goto bad;
    i->len = (uint8_t)p;
    *ends = !!(f & END);
    exec_specialize(i, mode);
    return p;
bad:
    i->fn = h_ud;
    i->len = (uint8_t)(p > 15 ? 15 : p);
    *ends = 1;
    return 0;
#undef NEED
}
