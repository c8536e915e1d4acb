/* The decoded form of guest code. An instruction is decoded once into a struct insn that names its
 * handler and its operands; straight-line runs of them form a block, cached per guest-physical
 * page (block.c). A block holds no virtual addresses: relative branches and RIP-relative operands
 * are resolved against RIP at run time, so one block serves every mapping of its page. A binary
 * translator can take the same blocks and turn each insn into host code instead of a call. */
#ifndef QKVM_ACCEL_EMU_DECODE_H
#define QKVM_ACCEL_EMU_DECODE_H
#include <stdbool.h>
#include <stdint.h>

struct cpu;
struct insn;

typedef void (*insn_fn)(struct cpu *c, const struct insn *i);

#define REG_NONE 0xff
#define REG_RIP 0xfe

struct insn {
    insn_fn fn;
    uint16_t op;        /* opcode: 0x00-0xff, 0x100 + second byte for 0F xx, 0x200/0x300 for 0F38/0F3A,
                         * 0x400/0x500/0x600 for VEX 0F38/0F3A/0F */
    uint8_t len;
    uint8_t osz;        /* operand size in bytes: 1, 2, 4, 8 */
    uint8_t asz;        /* address size: 2, 4, 8 */
    uint8_t mod;        /* 3: register operand in rm */
    uint8_t reg;        /* ModRM.reg with REX.R; for byte operands 16..19 = AH..BH */
    uint8_t rm;         /* ModRM.rm with REX.B (register form), same byte-register rule */
    uint8_t sub;        /* ModRM.reg as written (0-7): the /digit of group opcodes */
    uint8_t base, index, scale;  /* memory form: REG_NONE / REG_RIP */
    uint8_t seg;        /* effective segment (SEG_*: the default or the override) */
    uint8_t rep;        /* 0, 0xf2 or 0xf3 */
    uint8_t pfx66;      /* 0x66 was present (SSE mandatory prefix) */
    uint8_t lock;
    uint8_t rex;        /* REX, or the R/X/B/W bits of a VEX prefix */
    uint8_t vex;        /* 1: VEX-encoded (rep/pfx66 then hold VEX.pp) */
    uint8_t vvvv;       /* VEX.vvvv, the extra register operand */
    uint8_t vexl;       /* VEX.L */
    int32_t disp;
    uint64_t imm;       /* sign-extended immediate, or a moffs / far offset */
    uint16_t imm2;      /* ENTER's level, a far pointer's selector */
};

/* Block flags */
#define BLK_VALID 1

struct block {
    uint64_t pa;        /* guest-physical address of the first instruction */
    uint32_t mode;      /* decode mode: see decode_mode() */
    uint32_t pidx;      /* RAM page index */
    uint32_t gen;       /* emu_vm.gen[pidx] when decoded */
    uint16_t n;         /* instructions */
    uint16_t bytes;     /* guest bytes covered */
    uint32_t hits;      /* runs by the interpreter, until it is translated */
    struct block *next; /* hash chain */
    void *code;         /* its translation (jit.h), or NULL */
    /* an instruction that crosses into the next page (block_crosses): that page's frame, RAM
     * page index and generation, checked as the first page's are */
    uint64_t pa2;
    uint32_t pidx2, gen2;
    struct insn ins[];
};

/* A block of one instruction whose bytes run into the next page. */
static inline bool block_crosses(const struct block *b)
{
    return (b->pa & 0xfff) + b->bytes > 0x1000;
}

/* The mode bits a decode depends on. */
static inline uint32_t decode_mode(int csz, int code64)
{
    return (uint32_t)(code64 ? 8 : csz);
}

/* Decodes one instruction from code[0..avail) (avail may be less than 15 at a page end: then
 * returns -1 and the caller refetches across the page). Returns the length, or 0 for an invalid
 * encoding (fn is then the #UD handler). ends: set when the instruction must end a block. */
int decode_insn(const uint8_t *code, int avail, uint32_t mode, struct insn *i, int *ends);

void h_ud(struct cpu *c, const struct insn *i);

#endif
