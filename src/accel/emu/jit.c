/* The block translator (see jit.h). rbx points at struct cpu in translated code; each inline
 * instruction loads its operands into rax/rcx, runs the same host instruction and stores the
 * result. Translated code is entered through a trampoline at the start of the code buffer that
 * saves the host's callee-saved registers; blocks leave through it too, and linked blocks jump
 * to each other directly.
 *
 * Four things the interpreter does per instruction are done lazily here:
 * - guest registers: the most used ones of a block live in rbp and r12-r15 while it runs
 *   (loaded at its start); they are written back to struct cpu before a handler call (and
 *   reloaded after it), before a slow memory path (a fault must see them) and at exits.
 * - c->rip: brought up to date only before a handler call, on a slow memory path and at exits;
 *   inline instructions between them just add up their lengths at translation time.
 * - the lazy flags (cc_*): an inline instruction stores them only when a later instruction (or
 *   the block's end) may read them, and not when the only reader is the next instruction taking
 *   the host's flags (elide); a 64-bit block's end does not read them when every successor in
 *   its page sets them first (flags_live_out). An exception taken in between then saves stale
 *   arithmetic flags in its frame, but the interrupted code overwrites them before reading
 *   them anyway.
 * - c->cur (which instruction a fault rewinds): set for handler calls; a slow memory path sets
 *   it to NULL with c->rip at the start of its instruction, which is what a fault needs. */
#include "accel/emu/jit.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accel/emu/block.h"
#include "accel/emu/exec.h"
#include "util/log.h"

#if defined(__x86_64__)

#define JIT_SIZE (32u << 20)
#define JIT_BLOCK_MAX (48u << 10)   /* generous bound for one block of BLOCK_MAX_INSNS */
#define COLD_MAX 256

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };
#define JIT_TRAMP 64   /* bytes of trampoline at the start of the code buffer */
#define NHOST 5
#define CC_UNKNOWN 0xffffffffu
#define OFF(f) ((int32_t)offsetof(struct cpu, f))
#define GREG(g) (OFF(r) + 8 * (int32_t)(g))
#define TLB_OFF(f) ((int32_t)offsetof(struct tlb_entry, f))

/* A slow path out of line: a TLB miss, a store into a page with code. */
struct cold {
    uint8_t *patch[2];   /* rel32 fields of the jumps to it */
    int npatch;
    uint8_t *resume;
    bool write;
    int sz, pend;
    uint16_t dirty;      /* guest registers whose host copy is newer than struct cpu's */
    /* a store into a page with code leaves the block after the instruction: what is left of the
     * instruction then (a stack pointer update) and where RIP goes, relative to pend */
    int sp_adj;
    bool sp_w;           /* the stack pointer is 64-bit (else 32-bit, zero-extended) */
    bool ind;            /* CALL r/m: RIP goes to the target in r9, kept across the call */
    bool ss;             /* the access is through SS: #SS for a non-canonical address */
    bool gp;             /* not an access: a branch target that is not canonical, #GP(0) */
    int64_t rip_adv;
};

/* An instruction's handler called out of line, for when its inline form cannot run: SSE code
 * under a non-default MXCSR or CR0/CR4 that fault, a TLB miss, a misaligned operand. */
#define CCALL_MAX 64
struct ccall {
    uint8_t *patch[6];
    int npatch;
    const struct insn *i;
    int pend;
    uint16_t dirty;
    uint8_t *resume;
    bool locked;         /* a LOCKed read-modify-write: rmw_op's compare-and-swap loop */
};

struct tx {
    uint8_t *p;          /* where the next byte goes: the code buffer's writable view */
    uint8_t *end;        /* the block's space ends here: bytes that would pass it are dropped */
    bool over;           /* ...and the translation is abandoned */
    struct block *b;
    int pend;            /* c->rip lags the start of the current instruction by this much */
    /* c->rip is past the block's first instruction by this much (a handler call writes RIP
     * back mid-block): exits add it to find their target's offset in the page */
    int ripoff;
    uint32_t cc;         /* the cc_op the lazy flags hold, if an inline instruction stored them */
    struct cold cold[COLD_MAX];
    int ncold;
    int8_t host_of[16];  /* guest register -> host register holding it, or -1 */
    uint16_t alloc, dirty;
    uint8_t *exit;       /* the trampoline's exit */
    struct ccall ccall[CCALL_MAX];
    int nccall;
    int mode;            /* decode mode: 2, 4 or 8 */
    /* the host's arithmetic flags are the guest's (those t->cc describes): set by an ALU
     * operation emitted as the host's own whose flags nothing has touched since; hf_in: so at
     * the start of the current instruction */
    bool hf, hf_in;
    int sw;              /* stack width PUSH/POP/CALL/RET are inlined for (8, 4), or 0 */
    /* elide: the current instruction's flags go only to the next one, which takes them from
     * the host's flags (SETcc r, CMOVcc r, r) and after which they are dead, so cc_store
     * records t->cc without storing; unstored: so they are now. Anything that then reads
     * struct cpu's flags instead (a handler, flags.c, a redo from cc_*) sets broken, and the
     * block is translated again without eliding. */
    bool elide, unstored, broken;
    int seg;             /* the segment of the last address computed (emit_seg) */
};

/* --- encoding --- */
/* Every byte goes through room(): a block that would pass its space writes nothing beyond it
 * (the check is at translation time only; the bound JIT_BLOCK_MAX is an estimate, this is the
 * guarantee). */
static bool room(struct tx *t, size_t n)
{
    if (likely((size_t)(t->end - t->p) >= n))
        return true;
    t->over = true;
    return false;
}
static void e1(struct tx *t, unsigned v) { if (room(t, 1)) *t->p++ = (uint8_t)v; }
static void e4(struct tx *t, uint32_t v) { if (room(t, 4)) { memcpy(t->p, &v, 4); t->p += 4; } }
static void e8(struct tx *t, uint64_t v) { if (room(t, 8)) { memcpy(t->p, &v, 8); t->p += 8; } }

static void rex(struct tx *t, int w, int r, int x, int b)
{
    unsigned v = 0x40 | (w ? 8 : 0) | ((r & 8) >> 1) | ((x & 8) >> 2) | ((b & 8) >> 3);
    if (v != 0x40)
        e1(t, v);
}

static void opc(struct tx *t, unsigned op)
{
    if (op > 0xff)
        e1(t, op >> 8);
    e1(t, op & 0xff);
}

/* op with a register operand: r in ModRM.reg (or a /digit), b in ModRM.rm */
static void op_rr(struct tx *t, int w, unsigned op, int r, int b)
{
    rex(t, w, r, 0, b);
    opc(t, op);
    e1(t, 0xc0 | (r & 7) << 3 | (b & 7));
}

/* op with a memory operand [base + disp] */
static void op_rm(struct tx *t, int w, unsigned op, int r, int base, int32_t disp)
{
    rex(t, w, r, 0, base);
    opc(t, op);
    int mod = (disp == 0 && (base & 7) != RBP) ? 0 : (disp >= -128 && disp < 128) ? 1 : 2;
    e1(t, mod << 6 | (r & 7) << 3 | (base & 7));
    if ((base & 7) == RSP)
        e1(t, 0x24);
    if (mod == 1)
        e1(t, (uint8_t)disp);
    else if (mod == 2)
        e4(t, (uint32_t)disp);
}

static void ld(struct tx *t, int w, int h, int32_t off) { op_rm(t, w, 0x8b, h, RBX, off); }
static void st(struct tx *t, int w, int32_t off, int h) { op_rm(t, w, 0x89, h, RBX, off); }
static void mov_rr(struct tx *t, int w, int dst, int src) { op_rr(t, w, 0x89, src, dst); }

static void movi(struct tx *t, int h, uint64_t v)
{
    if (v <= 0xffffffffull) {
        rex(t, 0, 0, 0, h);
        e1(t, 0xb8 + (h & 7));
        e4(t, (uint32_t)v);
    } else if ((int64_t)v == (int32_t)v) {
        op_rr(t, 1, 0xc7, 0, h);
        e4(t, (uint32_t)v);
    } else {
        rex(t, 1, 0, 0, h);
        e1(t, 0xb8 + (h & 7));
        e8(t, v);
    }
}

/* [rbx + off] = imm (sign-extended for w) */
static void sti(struct tx *t, int w, int32_t off, int32_t imm)
{
    op_rm(t, w, 0xc7, 0, RBX, off);
    e4(t, (uint32_t)imm);
}

/* qword [rbx + off] += imm */
static void addmi(struct tx *t, int32_t off, int32_t imm)
{
    if (imm >= -128 && imm < 128) {
        op_rm(t, 1, 0x83, 0, RBX, off);
        e1(t, (uint8_t)imm);
    } else {
        op_rm(t, 1, 0x81, 0, RBX, off);
        e4(t, (uint32_t)imm);
    }
}

static void call(struct tx *t, const void *fn)
{
    movi(t, RAX, (uint64_t)(uintptr_t)fn);
    e1(t, 0xff);
    e1(t, 0xd0);
}

static uint8_t *jcc32(struct tx *t, unsigned cc)
{
    e1(t, 0x0f);
    e1(t, 0x80 | cc);
    e4(t, 0);
    return t->p - 4;
}

static void patch(struct tx *t, uint8_t *rel, const uint8_t *to)
{
    if (t->over)   /* rel may lie before the block: write nothing */
        return;
    int32_t d = (int32_t)(to - (rel + 4));
    memcpy(rel, &d, 4);
}

/* Leaves through the trampoline; struct cpu must be up to date. */
static void leave(struct tx *t)
{
    e1(t, 0xe9);
    e4(t, 0);
    patch(t, t->p - 4, t->exit);
}

/* --- guest registers held in host registers --- */

/* h = guest register g (32 bits zero-extended, or 64) */
static void ldg(struct tx *t, int w, int h, int g)
{
    if (t->host_of[g] >= 0)
        mov_rr(t, w, h, t->host_of[g]);
    else
        ld(t, w, h, GREG(g));
}

/* guest register g = h (all 64 bits) */
static void stg(struct tx *t, int g, int h)
{
    if (t->host_of[g] >= 0) {
        mov_rr(t, 1, t->host_of[g], h);
        t->dirty |= (uint16_t)(1u << g);
    } else {
        st(t, 1, GREG(g), h);
    }
}

/* The operand-size prefix of a 16-bit operation (before its REX): the op_rr/op_rm that follows
 * is then given w = 0. */
static void o16(struct tx *t, int sz)
{
    if (sz == 2)
        e1(t, 0x66);
}

/* guest register g = the low sz bytes of h: a 16-bit result leaves the rest of g as it was, a
 * 32-bit one (zero-extended in h by the host) and a 64-bit one replace it, as stg does */
static void stg_sz(struct tx *t, int g, int h, int sz)
{
    if (sz != 2) {
        stg(t, g, h);
        return;
    }
    e1(t, 0x66);
    if (t->host_of[g] >= 0) {
        mov_rr(t, 0, t->host_of[g], h);
        t->dirty |= (uint16_t)(1u << g);
    } else {
        st(t, 0, GREG(g), h);
    }
}

/* guest register g += imm */
static void addg(struct tx *t, int g, int32_t imm)
{
    int h = t->host_of[g];
    if (h < 0) {
        addmi(t, GREG(g), imm);
        return;
    }
    op_rr(t, 1, 0x83, 0, h);
    e1(t, (uint8_t)imm);
    t->dirty |= (uint16_t)(1u << g);
}

static void writeback(struct tx *t, uint16_t mask)
{
    for (int g = 0; g < 16; g++)
        if ((mask >> g) & 1)
            st(t, 1, GREG(g), t->host_of[g]);
}

static void flush_regs(struct tx *t)
{
    writeback(t, t->dirty);
    t->dirty = 0;
}

static void reload_regs(struct tx *t)
{
    for (int g = 0; g < 16; g++)
        if ((t->alloc >> g) & 1)
            ld(t, 1, t->host_of[g], GREG(g));
}

/* Leaves the block if the last handler asked to (c->brk); the registers are in struct cpu. */
static void brk_check(struct tx *t)
{
    op_rm(t, 0, 0x80, 7, RBX, OFF(brk));   /* cmp byte [rbx+brk], 0 */
    e1(t, 0);
    patch(t, jcc32(t, 0x5), t->exit);
}

/* --- slow paths, called from translated code --- */
static uint64_t jit_ld(struct cpu *c, uint64_t la, int sz) { return mem_rd(c, la, sz); }
static void jit_st(struct cpu *c, uint64_t la, int sz, uint64_t v) { mem_wr(c, la, sz, v); }
static void jit_raise_gp0(struct cpu *c) { raise_gp(c, 0); }
static uint64_t jit_ld_ss(struct cpu *c, uint64_t la, int sz) { return stack_rd(c, la, sz); }
static void jit_st_ss(struct cpu *c, uint64_t la, int sz, uint64_t v) { stack_wr(c, la, sz, v); }

/* --- what an instruction does to the arithmetic flags --- */
enum { FL_READ, FL_KILL, FL_PASS };

static bool alu_kind_ok(int kind) { return kind != RMW_ADC && kind != RMW_SBB; }

/* Reads the flags and, when inline, only from the host's flags as the instruction before left
 * them (no memory operand: a fault there would save flags that were never stored). */
static bool hf_reader(const struct insn *i)
{
    if ((i->op >= 0x70 && i->op <= 0x7f) || (i->op >= 0x180 && i->op <= 0x18f))
        return true;   /* Jcc (emit_branch) */
    return i->mod == 3 && !i->lock && !i->rep &&
           ((i->op >= 0x190 && i->op <= 0x19f) || (i->op >= 0x140 && i->op <= 0x14f));
}

/* Inline, these are moves only (and SETcc/CMOVcc's read of the host's flags): the host's
 * flags, if they were the guest's before, still are after, for the next reader. st_byte must
 * keep to that for SETcc r8 (tests/unit/test_emu_jit.c runs SETcc after SETcc). */
static bool keeps_hf(const struct insn *i)
{
    unsigned op = i->op;
    if (i->lock || i->rep)
        return false;
    if (op >= 0xb8 && op <= 0xbf)
        return true;
    return i->mod == 3 && ((op >= 0x190 && op <= 0x19f) || (op >= 0x140 && op <= 0x14f) ||
                           op == 0x89 || op == 0x8b);
}

static int flags_class(const struct insn *i)
{
    unsigned op = i->op;
    if (op < 0x40 && (op & 7) < 6)
        return alu_kind_ok((int)(op >> 3)) ? FL_KILL : FL_READ;
    switch (op) {
    case 0x80: case 0x81: case 0x83:
        return alu_kind_ok(i->sub) ? FL_KILL : FL_READ;
    case 0x84: case 0x85: case 0xa8: case 0xa9: case 0x1af: case 0x69: case 0x6b:
        return FL_KILL;
    case 0xf6: case 0xf7:
        return i->sub <= 1 || i->sub == 3 || i->sub == 4 || i->sub == 5 ? FL_KILL
             : i->sub == 2 ? FL_PASS : FL_READ;
    case 0xd2: case 0xd3:   /* by CL: unchanged when it is 0 */
        return i->sub == 2 || i->sub == 3 || i->sub == 6 ? FL_READ : FL_PASS;
    case 0xc0: case 0xc1: case 0xd0: case 0xd1: {
        unsigned n = op >= 0xd0 ? 1 : (unsigned)i->imm & (i->osz == 8 ? 63 : 31);
        if (n == 0)
            return FL_PASS;
        if (i->sub == 4 || i->sub == 5 || i->sub == 7)
            return FL_KILL;
        return (i->sub == 0 || i->sub == 1) ? FL_PASS : FL_READ;   /* ROL/ROR keep SF/ZF/AF/PF */
    }
    case 0xfe: case 0xff:
        return i->sub <= 1 ? FL_PASS : i->sub == 6 ? FL_PASS : FL_READ;   /* INC/DEC keep CF */
    case 0x88: case 0x89: case 0x8a: case 0x8b: case 0x8d: case 0x63: case 0xc6: case 0xc7:
    case 0x90: case 0x11f: case 0x1b6: case 0x1b7: case 0x1be: case 0x1bf: case 0x98: case 0x99:
        return FL_PASS;
    }
    if ((op >= 0x50 && op <= 0x5f) || (op >= 0xb0 && op <= 0xbf) || (op >= 0x1c8 && op <= 0x1cf))
        return FL_PASS;
    if (op >= 0x40 && op <= 0x4f)   /* INC/DEC r outside 64-bit mode: they keep CF */
        return FL_PASS;
    return FL_READ;
}

/* --- operands --- */
static bool ea_ok(const struct insn *i, int pend)
{
    if (i->base != REG_NONE && i->base != REG_RIP && i->base >= 16)
        return false;
    if (i->index != REG_NONE && i->index >= 16)
        return false;
    if (i->base == REG_RIP) {
        int64_t d = (int64_t)i->disp + pend + i->len;
        if (d != (int32_t)d)
            return false;
    }
    return true;
}

/* rax = the operand's offset in its segment (LEA's result) */
static void emit_ea_off(struct tx *t, const struct insn *i)
{
    int32_t disp = i->disp;
    /* a base or index held in a host register is used where it is, not copied to rax/rcx
     * first: one instruction (and one dependency) less per memory operand */
    int base = RAX, index = RCX;
    if (i->base == REG_RIP) {
        ld(t, 1, RAX, OFF(rip));
        disp += t->pend + i->len;   /* RIP-relative: from the end of the instruction */
    } else if (i->base != REG_NONE && t->host_of[i->base] >= 0) {
        base = t->host_of[i->base];
    } else if (i->base != REG_NONE) {
        ldg(t, 1, RAX, i->base);
    } else {
        op_rr(t, 0, 0x31, RAX, RAX);
    }
    if (i->index != REG_NONE) {
        if (t->host_of[i->index] >= 0)
            index = t->host_of[i->index];
        else
            ldg(t, 1, RCX, i->index);
        /* lea rax, [base + index*scale + disp32] (a host register as index is never rsp) */
        rex(t, 1, RAX, index, base);
        e1(t, 0x8d);
        e1(t, 0x84);
        e1(t, (unsigned)(i->scale << 6) | (unsigned)(index & 7) << 3 | (unsigned)(base & 7));
        e4(t, (uint32_t)disp);
    } else if (disp || base != RAX) {
        op_rm(t, 1, 0x8d, RAX, base, disp);
    }
    if (i->asz == 4)
        mov_rr(t, 0, RAX, RAX);
    else if (i->asz == 2)
        op_rr(t, 0, 0x0fb7, RAX, RAX);   /* movzx eax, ax */
}

/* rax += the base of segment seg, as a linear address: 64-bit mode adds only FS and GS bases;
 * elsewhere every base counts and linear addresses wrap at 4 GiB (lin_mask). */
static void emit_seg(struct tx *t, int seg)
{
    t->seg = seg;
    if (t->mode == 8) {
        if (seg == SEG_FS || seg == SEG_GS)
            op_rm(t, 1, 0x03, RAX, RBX, OFF(segbase) + 8 * seg);
        return;
    }
    op_rm(t, 1, 0x03, RAX, RBX, OFF(segbase) + 8 * seg);
    mov_rr(t, 0, RAX, RAX);
}

/* rax = the operand's linear address */
static void emit_ea(struct tx *t, const struct insn *i)
{
    emit_ea_off(t, i);
    emit_seg(t, i->seg);
}

/* The stack: rax = the linear address of the stack pointer plus delta (the new top for a
 * push), with the stack pointer's width and wrap. */
static void emit_sp_lin(struct tx *t, int delta)
{
    if (delta && t->host_of[R_SP] >= 0)
        op_rm(t, t->sw == 8, 0x8d, RAX, t->host_of[R_SP], delta);
    else
        ldg(t, t->sw == 8, RAX, R_SP);
    if (delta && t->host_of[R_SP] < 0)
        op_rm(t, t->sw == 8, 0x8d, RAX, RAX, delta);
    emit_seg(t, SEG_SS);
}

/* stack pointer += imm, with its width; clobbers rcx */
static void add_sp(struct tx *t, int imm)
{
    if (t->sw == 8) {
        addg(t, R_SP, imm);
        return;
    }
    int h = t->host_of[R_SP];
    if (h >= 0) {
        op_rr(t, 0, 0x83, 0, h);
        e1(t, (uint8_t)imm);
        t->dirty |= (uint16_t)(1u << R_SP);
        return;
    }
    ld(t, 0, RCX, GREG(R_SP));
    op_rr(t, 0, 0x83, 0, RCX);
    e1(t, (uint8_t)imm);
    st(t, 1, GREG(R_SP), RCX);
}

/* h = the slot of the linear address in src in the current TLB set (tlb_slot): entries are 64
 * bytes, so the slot's offset is the address shifted right by 6, masked */
static void emit_tlb_slot(struct tx *t, int h, int src)
{
    mov_rr(t, 1, h, src);
    op_rr(t, 1, 0xc1, 5, h);     /* shr h, 6 */
    e1(t, 6);
    op_rr(t, 0, 0x81, 4, h);     /* and h, TLB_SLOT_MASK */
    e4(t, TLB_SLOT_MASK);
    op_rm(t, 1, 0x03, h, RBX, OFF(tlbc));
}

/* The software TLB for the access at rax: on a hit rax becomes the host address; a miss (or a
 * store into a page with code) goes to a cold path that does the whole access. */
static void tlb_lookup(struct tx *t, bool write, int sz, uint8_t **miss, int *nmiss)
{
    emit_tlb_slot(t, RCX, RAX);
    op_rm(t, 1, 0x8d, RDX, RAX, sz - 1);   /* the last byte must be in the same page */
    op_rr(t, 1, 0x81, 4, RDX);
    e4(t, 0xfffff000u);
    op_rm(t, 1, 0x3b, RDX, RCX, write ? TLB_OFF(vw) : TLB_OFF(vr));
    miss[(*nmiss)++] = jcc32(t, 0x5);
    if (write) {
        op_rm(t, 0, 0x8b, RDX, RCX, TLB_OFF(pidx));
        op_rm(t, 1, 0x8b, RSI, RBX, OFF(vm));
        op_rm(t, 1, 0x8b, RSI, RSI, (int32_t)offsetof(struct emu_vm, code));
        e1(t, 0x80);   /* cmp byte [rsi + rdx], 0 */
        e1(t, 0x3c);
        e1(t, 0x16);
        e1(t, 0);
        miss[(*nmiss)++] = jcc32(t, 0x5);
    }
    op_rm(t, 1, 0x03, RAX, RCX, TLB_OFF(add));
}

static struct cold *emit_tlb(struct tx *t, const struct insn *i, bool write, int sz)
{
    struct cold *k = &t->cold[t->ncold++];
    *k = (struct cold){ .write = write, .sz = sz, .pend = t->pend, .dirty = t->dirty,
                        .rip_adv = i->len, .sp_w = t->sw == 8, .ss = t->seg == SEG_SS };
    tlb_lookup(t, write, sz, k->patch, &k->npatch);
    return k;
}

/* rax = the zero-extended value of sz bytes at linear address rax */
static void emit_load(struct tx *t, const struct insn *i, int sz)
{
    struct cold *k = emit_tlb(t, i, false, sz);
    switch (sz) {
    case 1: op_rm(t, 0, 0x0fb6, RAX, RAX, 0); break;
    case 2: op_rm(t, 0, 0x0fb7, RAX, RAX, 0); break;
    default: op_rm(t, sz == 8, 0x8b, RAX, RAX, 0); break;
    }
    k->resume = t->p;
}

/* sz bytes of r8 to linear address rax */
static struct cold *emit_store(struct tx *t, const struct insn *i, int sz)
{
    struct cold *k = emit_tlb(t, i, true, sz);
    if (sz == 2)
        e1(t, 0x66);
    op_rm(t, sz == 8, sz == 1 ? 0x88 : 0x89, R8, RAX, 0);
    k->resume = t->p;
    return k;
}

/* 64-bit mode: #GP(0) at the branch unless its target in rax is canonical (the interpreter's
 * target_check); before anything of the branch is stored. Clobbers rcx. */
static void emit_target_check(struct tx *t)
{
    struct cold *k = &t->cold[t->ncold++];
    *k = (struct cold){ .gp = true, .pend = t->pend, .dirty = t->dirty };
    mov_rr(t, 1, RCX, RAX);
    op_rr(t, 1, 0xc1, 4, RCX);   /* shl rcx, 16 */
    e1(t, 16);
    op_rr(t, 1, 0xc1, 7, RCX);   /* sar rcx, 16 */
    e1(t, 16);
    op_rr(t, 1, 0x39, RAX, RCX); /* cmp rcx, rax */
    k->patch[k->npatch++] = jcc32(t, 0x5);
}

static void emit_cold(struct tx *t, struct cold *k)
{
    for (int n = 0; n < k->npatch; n++)
        patch(t, k->patch[n], t->p);
    writeback(t, k->dirty);
    sti(t, 1, OFF(cur), 0);
    if (k->pend)
        addmi(t, OFF(rip), k->pend);
    if (k->gp) {
        mov_rr(t, 1, RDI, RBX);
        call(t, (const void *)jit_raise_gp0);   /* does not return */
        return;
    }
    mov_rr(t, 1, RDI, RBX);
    mov_rr(t, 1, RSI, RAX);
    movi(t, RDX, (uint64_t)k->sz);
    if (k->write) {
        mov_rr(t, 1, RCX, R8);
        if (k->ind) {
            e1(t, 0x41);   /* push r9; sub rsp, 8: the host stack stays 16-byte aligned */
            e1(t, 0x51);
            op_rr(t, 1, 0x83, 5, RSP);
            e1(t, 8);
        }
        call(t, k->ss ? (const void *)jit_st_ss : (const void *)jit_st);
        if (k->ind) {
            op_rr(t, 1, 0x83, 0, RSP);
            e1(t, 8);
            e1(t, 0x41);   /* pop r9 */
            e1(t, 0x59);
        }
        /* a store into a page with code ends the block after the instruction, as in the
         * interpreter */
        op_rm(t, 0, 0x80, 7, RBX, OFF(brk));
        e1(t, 0);
        uint8_t *on = jcc32(t, 0x4);
        if (k->sp_adj && k->sp_w) {
            addmi(t, GREG(R_SP), k->sp_adj);
        } else if (k->sp_adj) {   /* a 32-bit stack pointer wraps and clears the top half */
            ld(t, 0, RCX, GREG(R_SP));
            op_rr(t, 0, 0x83, 0, RCX);
            e1(t, (uint8_t)k->sp_adj);
            st(t, 1, GREG(R_SP), RCX);
        }
        if (k->ind)
            st(t, 1, OFF(rip), R9);
        else
            addmi(t, OFF(rip), (int32_t)k->rip_adv);
        leave(t);
        patch(t, on, t->p);
    } else {
        call(t, k->ss ? (const void *)jit_ld_ss : (const void *)jit_ld);
    }
    if (k->pend)
        addmi(t, OFF(rip), -k->pend);
    e1(t, 0xe9);
    e4(t, 0);
    patch(t, t->p - 4, k->resume);
}

/* --- instructions --- */
static bool branch_op(unsigned op)
{
    return (op >= 0x70 && op <= 0x7f) || (op >= 0x180 && op <= 0x18f) || op == 0xe8 || op == 0xe9 ||
           op == 0xeb || op == 0xc3 || op == 0xff;
}

static unsigned lg_size(int sz) { return sz == 8 ? 3 : sz == 4 ? 2 : sz == 2 ? 1 : 0; }

static void cc_store(struct tx *t, uint32_t op, int sz, int res, int src)
{
    t->cc = op | lg_size(sz);
    if (t->elide) {
        t->unstored = true;
        return;
    }
    st(t, 1, OFF(cc_res), res);
    if (src < 0)
        sti(t, 1, OFF(cc_src), 0);
    else
        st(t, 1, OFF(cc_src), src);
    sti(t, 0, OFF(cc_op), (int32_t)(op | lg_size(sz)));
}

/* ALU operations by RMW_* kind, and TEST: the host's "op r/m, r" opcode of the 32/64-bit form
 * (the byte form is one less). CMP and TEST run as SUB and AND whose result is not kept. */
#define ALU_TEST 8
static const uint8_t alu_host[9] = { 0x01, 0x09, 0, 0, 0x21, 0x29, 0x31, 0x29, 0x21 };

/* The lazy flags of ALU operation kind with result res and second operand rcx. */
static void alu_flags(struct tx *t, int kind, int sz, int res)
{
    bool logic = kind == RMW_OR || kind == RMW_AND || kind == RMW_XOR || kind == ALU_TEST;
    cc_store(t, logic ? CC_LOGIC : kind == RMW_ADD ? CC_ADD : CC_SUB, sz, res, logic ? -1 : RCX);
}

/* rax = rax (kind) rcx, flags if live, written back to guest register dst (unless CMP/TEST) */
static void emit_alu(struct tx *t, int kind, int sz, int dst, bool live)
{
    o16(t, sz);
    op_rr(t, sz == 8, alu_host[kind], RCX, RAX);
    if (live)
        alu_flags(t, kind, sz, RAX);
    if (kind != RMW_CMP && kind != ALU_TEST)
        stg_sz(t, dst, RAX, sz);   /* MOVs only: the host's flags stay */
    t->hf = live;
}

/* Same with the destination held in a host register: the operation runs on it in place (b in
 * rcx). False when dst is not held there or the operation writes nothing back. */
static bool emit_alu_direct(struct tx *t, int kind, int sz, int dst, bool live)
{
    int h = t->host_of[dst];
    if (h < 0 || kind == RMW_CMP || kind == ALU_TEST)
        return false;
    o16(t, sz);   /* a 16-bit operation in place keeps the register's upper bits, as the guest's */
    op_rr(t, sz == 8, alu_host[kind], RCX, h);
    if (live)
        alu_flags(t, kind, sz, h);
    t->dirty |= (uint16_t)(1u << dst);
    t->hf = live;
    return true;
}

/* ALU operation kind (or ALU_TEST) of guest register dst with an immediate (src < 0) or guest
 * register src, 32 or 64 bits, as one host instruction on the host register holding dst (on
 * dst in struct cpu for CMP and TEST) with the source where it is: `sub r12d, 1`, `cmp r13,
 * rbp`, `test dword [rbx+off], r14d` instead of copies to rax and rcx first. When the lazy
 * flags are stored they need the result and source in registers: only the forms that have
 * them (not CMP/TEST, a source on the host). False: the caller goes through rax and rcx. */
static bool emit_alu_in_place(struct tx *t, int kind, int sz, int dst, int src, uint64_t imm,
                              bool live)
{
    static const uint8_t opc[9] = { 0x01, 0x09, 0, 0, 0x21, 0x29, 0x31, 0x39, 0x85 };
    bool cmp = kind == RMW_CMP || kind == ALU_TEST;
    bool logic = kind == RMW_OR || kind == RMW_AND || kind == RMW_XOR || kind == ALU_TEST;
    bool regs = live && !t->elide;
    int h = t->host_of[dst], hs = src >= 0 ? t->host_of[src] : -1, w = sz == 8;
    int32_t v = (int32_t)imm;
    if ((sz != 4 && sz != 8) || !alu_kind_ok(kind) || (src < 0 && w && (int64_t)imm != v))
        return false;
    if (h < 0 && (!cmp || (src >= 0 && hs < 0)))
        return false;
    if (regs && (cmp || (src >= 0 && hs < 0) || (src == dst && !logic)))
        return false;
    if (src < 0) {
        unsigned op = kind == ALU_TEST ? 0xf7 : v >= -128 && v < 128 ? 0x83 : 0x81;
        int sub = kind == ALU_TEST ? 0 : kind;
        if (h >= 0)
            op_rr(t, w, op, sub, h);
        else
            op_rm(t, w, op, sub, RBX, GREG(dst));
        if (op == 0x83)
            e1(t, (uint8_t)v);
        else
            e4(t, (uint32_t)v);
    } else if (hs >= 0 && h >= 0) {
        op_rr(t, w, opc[kind], hs, h);
    } else if (hs >= 0) {
        op_rm(t, w, opc[kind], hs, RBX, GREG(dst));
    } else {
        op_rm(t, w, kind == ALU_TEST ? 0x85 : opc[kind] + 2u, h, RBX, GREG(src));
    }
    if (!cmp)
        t->dirty |= (uint16_t)(1u << dst);
    uint32_t ccop = (logic ? CC_LOGIC : kind == RMW_ADD ? CC_ADD : CC_SUB) | lg_size(sz);
    if (regs) {   /* MOVs only: the host's flags stay the guest's */
        t->cc = ccop;
        st(t, 1, OFF(cc_res), h);
        if (logic)
            sti(t, 1, OFF(cc_src), 0);
        else if (src < 0)
            sti(t, 1, OFF(cc_src), v);   /* flags.c and the redo read only sz bytes */
        else
            st(t, 1, OFF(cc_src), hs);
        sti(t, 0, OFF(cc_op), (int32_t)ccop);
    } else if (live) {
        cc_store(t, ccop & ~3u, sz, RAX, -1);   /* eliding: records t->cc only */
    }
    t->hf = live;
    return true;
}

/* OP r, m with the memory operand loaded into rax: the host's op on the host register holding
 * guest register dst with rax as its source (CMP only when no lazy flags are stored: they would
 * need the difference in a register). False: the caller copies through rcx. */
static bool emit_alu_loaded(struct tx *t, int kind, int sz, int dst, bool live)
{
    int h = t->host_of[dst];
    bool logic = kind == RMW_OR || kind == RMW_AND || kind == RMW_XOR;
    if (h < 0 || (sz != 4 && sz != 8) || (kind == RMW_CMP && live && !t->elide))
        return false;
    op_rr(t, sz == 8, kind == RMW_CMP ? 0x39 : alu_host[kind], RAX, h);
    if (kind != RMW_CMP)
        t->dirty |= (uint16_t)(1u << dst);
    if (live)
        cc_store(t, logic ? CC_LOGIC : kind == RMW_ADD ? CC_ADD : CC_SUB, sz, h, logic ? -1 : RAX);
    t->hf = live;
    return true;
}

/* CMP m, r and TEST m, r with the memory operand loaded into rax: SUB/AND of the host register
 * holding guest register src into rax (a copy, so the lazy flags have their result there). */
static bool emit_alu_on_loaded(struct tx *t, int kind, int sz, int src, bool live)
{
    int hs = t->host_of[src];
    if (hs < 0 || (sz != 4 && sz != 8))
        return false;
    op_rr(t, sz == 8, alu_host[kind], hs, RAX);
    if (live)
        cc_store(t, kind == ALU_TEST ? CC_LOGIC : CC_SUB, sz, RAX, kind == ALU_TEST ? -1 : hs);
    t->hf = live;
    return true;
}

static void ld_imm(struct tx *t, int h, const struct insn *i, int sz)
{
    movi(t, h, sz == 8 ? i->imm : (uint32_t)i->imm);
}

/* A shift or rotate of rax by n (nonzero, already masked); sub is the /digit. */
static void emit_shift(struct tx *t, int sub, int sz, unsigned n, bool live)
{
    int w = sz == 8;
    if (!live || sub == 0 || sub == 1) {
        op_rr(t, w, 0xc1, sub, RAX);
        e1(t, n);
        return;
    }
    if (sub == 5)
        mov_rr(t, 1, RDX, RAX);
    mov_rr(t, 1, RCX, RAX);
    if (n > 1) {
        op_rr(t, w, 0xc1, sub, RCX);
        e1(t, n - 1);
    }
    mov_rr(t, 1, RAX, RCX);
    op_rr(t, w, 0xc1, sub, RAX);
    e1(t, 1);
    cc_store(t, sub == 4 ? CC_SHL : sub == 5 ? CC_SHR : CC_SAR, sz, RAX, RCX);
    if (sub == 5)
        st(t, 1, OFF(cc_aux), RDX);
}

static unsigned emit_cond(struct tx *t, unsigned cc);
static void emit_carry(struct tx *t);
static bool emit_redo(struct tx *t);
struct ccall;
static struct ccall *rmw_begin(struct tx *t, const struct insn *i, int sz);
static void rmw_end(struct tx *t, struct ccall *k, int kind, int sz, bool live);

/* Guest byte registers: 0-15 the low bytes, 16-19 AH..BH. h: rax, rcx, rdx or r8 (whose byte
 * encodings need no REX, or always have one). */
static int32_t byte_off(int r) { return r >= 16 ? GREG(r - 16) + 1 : GREG(r); }

/* Byte registers of guest registers not held on the host, and AH..BH, go through struct cpu:
 * the full register, if held on the host and newer there, is written back first; returns it. */
static int sync_reg(struct tx *t, int r)
{
    int g = r >= 16 ? r - 16 : r;
    if ((t->dirty >> g) & 1) {
        writeback(t, (uint16_t)(1u << g));
        t->dirty &= (uint16_t)~(1u << g);
    }
    return g;
}

/* op on byte register b (and r, when rbyte): SPL..DIL (4-7) need a REX prefix, without which
 * the same numbers name AH..BH */
static void op_rr8(struct tx *t, unsigned op, int r, int b, bool rbyte)
{
    if (!((r | b) & 8) && ((b >= 4 && b < 8) || (rbyte && r >= 4 && r < 8)))
        e1(t, 0x40);
    op_rr(t, 0, op, r, b);
}

/* The low byte of a guest register held on the host is read and written there: through struct
 * cpu a write would store one byte and reload all eight, a load the store cannot be forwarded
 * to (a stall of a dozen cycles on every SETcc or byte MOV into such a register; it was a
 * fifth of qsort's time). Both forms leave the host's flags alone (an ALU result stored after
 * its flags were kept for a Jcc). AH..BH stay in struct cpu: no flag-free host form puts a
 * byte in bits 15:8 of rbp or r12-r15. */
static void ld_byte(struct tx *t, int h, int r)
{
    int hh = r < 16 ? t->host_of[r] : -1;
    if (hh >= 0) {
        op_rr8(t, 0x0fb6, h, hh, false);             /* movzx h, hh.b */
        return;
    }
    sync_reg(t, r);
    op_rm(t, 0, 0x0fb6, h, RBX, byte_off(r));
}

static void st_byte(struct tx *t, int r, int h)
{
    int hh = r < 16 ? t->host_of[r] : -1;
    if (hh >= 0) {
        op_rr8(t, 0x88, h, hh, true);                /* mov hh.b, h.b */
        t->dirty |= (uint16_t)(1u << r);
        return;
    }
    int g = sync_reg(t, r);
    op_rm(t, 0, 0x88, h, RBX, byte_off(r));
    if (t->host_of[g] >= 0)
        ld(t, 1, t->host_of[g], GREG(g));
}

/* Byte forms: MOV, TEST, CMP and the ALU operations on registers (memory only read). */
static bool emit_byte(struct tx *t, const struct insn *i, bool live)
{
    unsigned op = i->op;
    bool reg = i->mod == 3;
    int kind, dst = -1;   /* dst: guest byte register written, -1 none */
    if (op == 0x8a) {
        if (reg)
            ld_byte(t, RAX, i->rm);
        else {
            emit_ea(t, i);
            emit_load(t, i, 1);
        }
        st_byte(t, i->reg, RAX);
        return true;
    }
    if (op == 0x88 || (op == 0xc6 && i->sub == 0)) {
        int h = reg ? RAX : R8;
        if (op == 0xc6)
            movi(t, h, (uint8_t)i->imm);
        else
            ld_byte(t, h, i->reg);
        if (reg) {
            st_byte(t, i->rm, RAX);
        } else {
            emit_ea(t, i);
            emit_store(t, i, 1);
        }
        return true;
    }
    if (op < 0x40 && (op & 7) <= 4 && (op & 7) != 1 && (op & 7) != 3) {
        kind = (int)(op >> 3);
        if (!alu_kind_ok(kind))
            return false;
        if ((op & 7) == 4) {            /* AL, imm8 */
            ld_byte(t, RAX, R_AX);
            movi(t, RCX, (uint8_t)i->imm);
            dst = R_AX;
        } else if (reg) {
            int a = (op & 7) == 0 ? i->rm : i->reg, b = (op & 7) == 0 ? i->reg : i->rm;
            ld_byte(t, RAX, a);
            ld_byte(t, RCX, b);
            dst = a;
        } else if (kind == RMW_CMP) {  /* CMP m8, r8 / r8, m8 */
            emit_ea(t, i);
            emit_load(t, i, 1);
            ld_byte(t, RCX, i->reg);
            if ((op & 7) == 2) {
                mov_rr(t, 0, RDX, RAX);
                mov_rr(t, 0, RAX, RCX);
                mov_rr(t, 0, RCX, RDX);
            }
        } else if ((op & 7) == 2) {    /* op r8, m8 */
            emit_ea(t, i);
            emit_load(t, i, 1);
            mov_rr(t, 0, RCX, RAX);
            ld_byte(t, RAX, i->reg);
            dst = i->reg;
        } else if ((op & 7) == 0) {    /* op m8, r8 */
            struct ccall *k = rmw_begin(t, i, 1);
            if (!k)
                return false;
            ld_byte(t, RCX, i->reg);
            rmw_end(t, k, kind, 1, live);
            return true;
        } else {
            return false;
        }
    } else if (op == 0x84 || op == 0xa8 || (op == 0xf6 && i->sub == 0)) {
        kind = ALU_TEST;
        if (op == 0xa8)
            ld_byte(t, RAX, R_AX);
        else if (reg)
            ld_byte(t, RAX, i->rm);
        else {
            emit_ea(t, i);
            emit_load(t, i, 1);
        }
        if (op == 0x84)
            ld_byte(t, RCX, i->reg);
        else
            movi(t, RCX, (uint8_t)i->imm);
    } else if (op == 0x80) {
        kind = i->sub;
        if (!alu_kind_ok(kind))
            return false;
        if (reg) {
            ld_byte(t, RAX, i->rm);
            dst = i->rm;
        } else if (kind == RMW_CMP) {
            emit_ea(t, i);
            emit_load(t, i, 1);
        } else {                        /* op m8, imm8 */
            struct ccall *k = rmw_begin(t, i, 1);
            if (!k)
                return false;
            movi(t, RCX, (uint8_t)i->imm);
            rmw_end(t, k, kind, 1, live);
            return true;
        }
        movi(t, RCX, (uint8_t)i->imm);
    } else {
        return false;
    }
    op_rr(t, 0, alu_host[kind] - 1u, RCX, RAX);
    op_rr(t, 0, 0x0fb6, RAX, RAX);   /* movzx eax, al */
    if (live)
        alu_flags(t, kind, 1, RAX);
    if (dst >= 0 && kind != RMW_CMP && kind != ALU_TEST)
        st_byte(t, dst, RAX);        /* MOVs only */
    t->hf = live;
    return true;
}

/* --- SSE/SSE2 floating point: the host's own instructions on the guest's XMM registers --- */

static struct ccall *ccall_new(struct tx *t, const struct insn *i)
{
    struct ccall *k = &t->ccall[t->nccall++];
    *k = (struct ccall){ .i = i, .pend = t->pend, .dirty = t->dirty };
    return k;
}

/* prefix (0 none) + 0F op with xmm register r and memory [base + disp] */
static void sse_m(struct tx *t, unsigned pfx, unsigned op, int r, int base, int32_t disp)
{
    if (pfx)
        e1(t, pfx);
    op_rm(t, 0, 0x0f00 | op, r, base, disp);
}

static void sse_r(struct tx *t, unsigned pfx, unsigned op, int r, int b)
{
    if (pfx)
        e1(t, pfx);
    op_rr(t, 0, 0x0f00 | op, r, b);
}

#define XMM_OFF(n) (OFF(xmm) + 16 * (int32_t)(n))

/* The host's load (0x10) or store (0x11) of n bytes between an xmm register and memory:
 * MOVSS, MOVSD, MOVUPS */
static void sse_mov(struct tx *t, bool store, int n, int r, int base, int32_t disp)
{
    sse_m(t, n == 4 ? 0xf3 : n == 8 ? 0xf2 : 0, store ? 0x11 : 0x10, r, base, disp);
}

/* What the interpreter's h_sse checks first (#NM, #UD), and the MXCSR its arithmetic assumes
 * (round to nearest, exceptions masked, no flush-to-zero: the host's): otherwise the handler. */
static void sse_guard_cr(struct tx *t, struct ccall *k)
{
    op_rm(t, 0, 0xf6, 0, RBX, OFF(cr0));            /* test byte [cr0], TS | EM */
    e1(t, CR0_TS | CR0_EM);
    k->patch[k->npatch++] = jcc32(t, 0x5);
    op_rm(t, 0, 0xf6, 0, RBX, OFF(cr4) + 1);        /* test byte [cr4 + 1], OSFXSR >> 8 */
    e1(t, CR4_OSFXSR >> 8);
    k->patch[k->npatch++] = jcc32(t, 0x4);
}

static void sse_guard(struct tx *t, struct ccall *k)
{
    sse_guard_cr(t, k);
    op_rm(t, 0, 0x81, 7, RBX, OFF(mxcsr));          /* cmp dword [mxcsr], 0x1f80 */
    e4(t, 0x1f80);
    k->patch[k->npatch++] = jcc32(t, 0x5);
}

/* rax = the host address of the memory operand (n bytes; aligned when align), else the
 * handler */
static void sse_addr(struct tx *t, const struct insn *i, struct ccall *k, int n, bool align,
                     bool write)
{
    emit_ea(t, i);
    if (align) {
        e1(t, 0xa8);                                 /* test al, n - 1 */
        e1(t, (unsigned)(n - 1));
        k->patch[k->npatch++] = jcc32(t, 0x5);
    }
    tlb_lookup(t, write, n, k->patch, &k->npatch);
}

/* The SSE2 integer operations on XMM registers (66 0F xx) whose host instruction does exactly
 * what pint() does, with an xmm or 16-byte aligned m128 source */
static bool sse_int_binop(unsigned op)
{
    return (op >= 0x60 && op <= 0x6d) || (op >= 0x74 && op <= 0x76) || (op >= 0xd1 && op <= 0xd5) ||
           (op >= 0xd8 && op <= 0xdf) || (op >= 0xe0 && op <= 0xe5) || (op >= 0xe8 && op <= 0xef) ||
           (op >= 0xf1 && op <= 0xf6) || (op >= 0xf8 && op <= 0xfe);
}

/* SSE2 integer forms on XMM registers, the host's own instruction on the guest's registers in
 * struct cpu (xmm0 the destination, xmm1 the source): the binary operations of sse_int_binop,
 * PSHUFD/HW/LW, the shifts by an immediate (PSRLDQ/PSLLDQ among them), PMOVMSKB, PEXTRW/PINSRW
 * and the MOVD/MOVQ moves between XMM registers, general registers and memory: what deflate and
 * glibc's SSE2 string functions (strlen, memchr, memcmp, strcmp) are made of. MXCSR plays no
 * part in them, so only CR0/CR4 send them to the handler (and a TLB miss or a misaligned m128,
 * which the handler turns into the #PF or #GP the guest should see). The MMX forms (no prefix)
 * stay with the handler. */
static bool emit_sse_int(struct tx *t, const struct insn *i, int p)
{
    unsigned op = i->op & 0xff;
    bool reg = i->mod == 3;
    int w = i->osz == 8;   /* MOVD (4 bytes) or, with REX.W, MOVQ */
    int32_t x = XMM_OFF(i->reg), y = XMM_OFF(i->rm);
    bool bin = p == 0x66 && sse_int_binop(op);
    bool shuf = op == 0x70 && p;
    bool shimm = p == 0x66 && reg && (op == 0x71 || op == 0x72 || op == 0x73) &&
                 (i->sub == 2 || i->sub == 6 || (i->sub == 4 && op != 0x73) ||
                  ((i->sub == 3 || i->sub == 7) && op == 0x73));
    bool gpr = p == 0x66 && ((op == 0x6e || op == 0x7e) || (reg && (op == 0xd7 || op == 0xc5)) ||
                             op == 0xc4);
    bool q = (p == 0xf3 && op == 0x7e) || (p == 0x66 && op == 0xd6);
    if (!bin && !shuf && !shimm && !gpr && !q)
        return false;
    struct ccall *k = ccall_new(t, i);
    sse_guard_cr(t, k);
    if (bin || shuf) {   /* xmm0 = xmm0 op xmm1 (PSHUF*: xmm0 = shuffle of xmm1) */
        if (reg) {
            sse_mov(t, false, 16, 1, RBX, y);
        } else {
            sse_addr(t, i, k, 16, true, false);
            sse_mov(t, false, 16, 1, RAX, 0);
        }
        if (bin)
            sse_mov(t, false, 16, 0, RBX, x);
        sse_r(t, (unsigned)p, op, 0, 1);
        if (shuf)
            e1(t, (uint8_t)i->imm);
        sse_mov(t, true, 16, 0, RBX, x);
    } else if (shimm) {  /* the register operand is rm, the /digit picks the shift */
        sse_mov(t, false, 16, 0, RBX, y);
        sse_r(t, 0x66, op, i->sub, 0);
        e1(t, (uint8_t)i->imm);
        sse_mov(t, true, 16, 0, RBX, y);
    } else if (op == 0xd7) {   /* PMOVMSKB r32, xmm */
        sse_mov(t, false, 16, 0, RBX, y);
        sse_r(t, 0x66, 0xd7, RAX, 0);
        stg(t, i->reg, RAX);
    } else if (op == 0xc5) {   /* PEXTRW r32, xmm, imm */
        op_rm(t, 0, 0x0fb7, RAX, RBX, y + 2 * (int32_t)(i->imm & 7));
        stg(t, i->reg, RAX);
    } else if (op == 0xc4) {   /* PINSRW xmm, r32/m16, imm */
        if (reg) {
            ldg(t, 0, RAX, i->rm);
        } else {
            sse_addr(t, i, k, 2, false, false);
            op_rm(t, 0, 0x0fb7, RAX, RAX, 0);
        }
        e1(t, 0x66);
        st(t, 0, x + 2 * (int32_t)(i->imm & 7), RAX);
    } else if (op == 0x6e) {   /* MOVD/MOVQ xmm, r/m32/64: the rest of the register cleared */
        if (reg) {
            ldg(t, w, RAX, i->rm);
        } else {
            sse_addr(t, i, k, w ? 8 : 4, false, false);
            op_rm(t, w, 0x8b, RAX, RAX, 0);
        }
        st(t, 1, x, RAX);
        sti(t, 1, x + 8, 0);
    } else if (op == 0x7e && p == 0x66) {   /* MOVD/MOVQ r/m32/64, xmm */
        if (reg) {
            ld(t, w, RCX, x);
            stg(t, i->rm, RCX);
        } else {   /* the lookup takes rcx: the value after it */
            sse_addr(t, i, k, w ? 8 : 4, false, true);
            ld(t, w, RCX, x);
            op_rm(t, w, 0x89, RCX, RAX, 0);
        }
    } else if (op == 0x7e) {   /* F3: MOVQ xmm, xmm/m64, the upper half cleared */
        if (reg) {
            ld(t, 1, RCX, y);
        } else {
            sse_addr(t, i, k, 8, false, false);
            op_rm(t, 1, 0x8b, RCX, RAX, 0);
        }
        st(t, 1, x, RCX);
        sti(t, 1, x + 8, 0);
    } else {                   /* 66 0F D6: MOVQ xmm/m64, xmm */
        if (reg) {
            ld(t, 1, RCX, x);
            st(t, 1, y, RCX);
            sti(t, 1, y + 8, 0);
        } else {
            sse_addr(t, i, k, 8, false, true);
            ld(t, 1, RCX, x);
            op_rm(t, 1, 0x89, RCX, RAX, 0);
        }
    }
    k->resume = t->p;
    return true;
}

/* MOVSS/SD/UPS/UPD/APS/APD, MOVDQA/DQU and the non-temporal stores MOVNTPS/PD/DQ (glibc's
 * memcpy, memset and string functions), arithmetic (ADD MUL SUB DIV MIN MAX SQRT),
 * AND/ANDN/OR/XOR and UCOMIS/COMIS in their SSE and SSE2 forms; false: the handler's. */
static bool emit_sse(struct tx *t, const struct insn *i)
{
    unsigned op = i->op & 0xff;
    int p = i->rep == 0xf3 ? 0xf3 : i->rep == 0xf2 ? 0xf2 : i->pfx66 ? 0x66 : 0;
    bool scalar = p == 0xf3 || p == 0xf2, reg = i->mod == 3;
    int n = p == 0xf3 ? 4 : p == 0xf2 ? 8 : 16;
    if (i->op < 0x100 || i->op >= 0x200 || i->vex || i->lock || t->nccall >= CCALL_MAX - 1)
        return false;
    if (!reg && !ea_ok(i, t->pend))
        return false;
    bool arith = op == 0x51 || op == 0x58 || op == 0x59 || (op >= 0x5c && op <= 0x5f);
    bool logic = op >= 0x54 && op <= 0x57 && !scalar;
    bool mov = op == 0x10 || op == 0x11 || ((op == 0x28 || op == 0x29) && !scalar);
    bool comis = (op == 0x2e || op == 0x2f) && !scalar;
    /* 16-byte moves by another name: MOVDQA (66) and MOVDQU (F3) 0F 6F/7F; MOVNTPS/PD 0F 2B and
     * MOVNTDQ 66 0F E7 (memory only, aligned; the host's MOVUPS does them, the hint aside) */
    bool dq = (op == 0x6f || op == 0x7f) && (p == 0x66 || p == 0xf3);
    bool nt = !reg && ((op == 0x2b && !scalar) || (op == 0xe7 && p == 0x66));
    if (!arith && !logic && !mov && !comis && !dq && !nt)
        return emit_sse_int(t, i, p);
    struct ccall *k = ccall_new(t, i);
    sse_guard(t, k);
    int32_t x = XMM_OFF(i->reg), y = XMM_OFF(i->rm);
    if (mov || dq || nt) {
        bool align = mov ? op >= 0x28 : nt || p == 0x66;
        bool store = mov ? op & 1 : op == 0x7f || nt;
        if (!mov)
            n = 16;
        if (reg) {   /* n bytes from register to register */
            sse_mov(t, false, n, 0, RBX, store ? x : y);
            sse_mov(t, true, n, 0, RBX, store ? y : x);
        } else if (store) {
            sse_addr(t, i, k, n, align, true);
            sse_mov(t, false, n, 0, RBX, x);
            sse_mov(t, true, n, 0, RAX, 0);
        } else {     /* scalar loads from memory clear the rest of the register */
            sse_addr(t, i, k, n, align, false);
            sse_mov(t, false, n, 0, RAX, 0);
            sse_mov(t, true, 16, 0, RBX, x);
        }
        k->resume = t->p;
        return true;
    }
    if (comis)
        n = p == 0x66 ? 8 : 4;
    if (reg) {
        sse_mov(t, false, n, 1, RBX, y);
    } else {
        sse_addr(t, i, k, n, !comis && !scalar, false);
        sse_mov(t, false, n, 1, RAX, 0);
    }
    sse_mov(t, false, n, 0, RBX, x);
    sse_r(t, p, op, 0, 1);
    if (comis) {   /* ZF PF CF as the host set them; OF SF AF clear: what comis() leaves */
        e1(t, 0x9c);   /* pushfq; pop rax */
        e1(t, 0x58);
        e1(t, 0x25);   /* and eax, CF | PF | ZF */
        e4(t, F_CF | F_PF | F_ZF);
        st(t, 1, OFF(cc_src), RAX);
        sti(t, 0, OFF(cc_op), CC_EFLAGS);
        t->cc = CC_EFLAGS;
    } else {
        sse_mov(t, true, n, 0, RBX, x);
    }
    k->resume = t->p;
    return true;
}

/* The out-of-line handler call of a ccall: RIP and the registers as emit_call sets them; back
 * to the inline code after it (or out of the block if the handler asked to leave). */
static void emit_ccall(struct tx *t, struct ccall *k)
{
    for (int n = 0; n < k->npatch; n++)
        patch(t, k->patch[n], t->p);
    writeback(t, k->dirty);
    int adv = k->pend + k->i->len;
    if (adv)
        addmi(t, OFF(rip), adv);
    movi(t, RSI, (uint64_t)(uintptr_t)k->i);
    st(t, 1, OFF(cur), RSI);
    mov_rr(t, 1, RDI, RBX);
    call(t, (const void *)k->i->fn);
    sti(t, 1, OFF(cur), 0);
    brk_check(t);
    if (adv)
        addmi(t, OFF(rip), -adv);
    reload_regs(t);
    e1(t, 0xe9);
    e4(t, 0);
    patch(t, t->p - 4, k->resume);
}

/* INC (dec 0) or DEC (dec 1) of guest register g. They keep CF: with live flags the carry in
 * goes to cc_aux, as rmw_apply leaves it. */
static void emit_incdec(struct tx *t, int dec, int sz, int g, bool live)
{
    int w = sz == 8;
    if (live) {
        emit_carry(t);
        e1(t, 0x0f);                /* setc dl; movzx edx, dl */
        e1(t, 0x92);
        e1(t, 0xc2);
        op_rr(t, 0, 0x0fb6, RDX, RDX);
    }
    ldg(t, w, RAX, g);
    o16(t, sz);
    op_rr(t, w, 0x83, dec ? 5 : 0, RAX);
    e1(t, 1);
    if (live) {
        st(t, 1, OFF(cc_res), RAX);
        sti(t, 1, OFF(cc_src), 1);
        sti(t, 0, OFF(cc_op), (int32_t)((dec ? CC_DEC : CC_INC) | lg_size(sz)));
        st(t, 1, OFF(cc_aux), RDX);
        t->cc = (dec ? CC_DEC : CC_INC) | lg_size(sz);
    }
    stg_sz(t, g, RAX, sz);
}

/* ADD/OR/AND/SUB/XOR with a memory destination of 4 or 8 bytes (not LOCKed), the source in rcx
 * (loaded by the caller after this call's ccall_new): one write lookup in the TLB, then the
 * host's load, operation and store through the host pointer. A miss, or a page with code,
 * runs the instruction's handler out of line instead (a ccall), so the interpreter's
 * read-modify-write (faults, MMIO, self-modifying code) stays the only slow path. The two ways
 * leave the lazy flags in different encodings: nothing after it may assume which. */
static struct ccall *rmw_begin(struct tx *t, const struct insn *i, int sz)
{
    if (t->nccall >= CCALL_MAX - 1)
        return NULL;
    struct ccall *k = ccall_new(t, i);
    k->locked = i->lock;
    emit_ea(t, i);
    tlb_lookup(t, true, sz, k->patch, &k->npatch);
    mov_rr(t, 1, R8, RAX);
    return k;
}

/* rax = the sz bytes at [r8] (a byte or word merged into rax's low bits: the flags and the
 * store look at those only) */
static void rmw_load(struct tx *t, int sz)
{
    o16(t, sz);
    op_rm(t, sz == 8, sz == 1 ? 0x8a : 0x8b, RAX, R8, 0);
}

/* rax = rax (hop /regf) of sz bytes, the host operation of a read-modify-write: regf is RCX
 * for a binary operation (the source), the /digit for INC/DEC/NOT/NEG. A LOCKed one (the guest's
 * LOCK ADD/SUB/AND/OR/XOR/INC/DEC/NOT/NEG m, as glibc and SQLite use for counters) becomes a
 * LOCK CMPXCHG loop on the host address: other vCPUs see one atomic access, as with the
 * interpreter's compare-and-swap, and both the old value (rdx) and the result (rax) are known
 * for the lazy flags, which a host LOCK ADD would not give. The store is then done. */
static void rmw_op(struct tx *t, struct ccall *k, int sz, unsigned hop, int regf)
{
    int w = sz == 8;
    if (!k->locked) {
        o16(t, sz);
        op_rr(t, w, hop, regf, RAX);
        return;
    }
    uint8_t *top = t->p;
    mov_rr(t, 1, RDX, RAX);          /* rdx = old; the result is computed in rax */
    o16(t, sz);
    op_rr(t, w, hop, regf, RAX);
    /* cmpxchg compares with its accumulator: swap so rax = old, rdx = the result */
    op_rr(t, 1, 0x87, RAX, RDX);     /* xchg rdx, rax */
    e1(t, 0xf0);
    o16(t, sz);
    op_rm(t, w, sz == 1 ? 0x0fb0 : 0x0fb1, RDX, R8, 0);   /* lock cmpxchg [r8], rdx */
    int32_t rel = (int32_t)(top - (t->p + 2));
    e1(t, 0x75);                     /* jnz top: rax = what another vCPU left there */
    e1(t, (uint8_t)(int8_t)rel);
    op_rr(t, 1, 0x87, RAX, RDX);     /* rax = the result, rdx = old */
}

static void rmw_store(struct tx *t, struct ccall *k, int sz)
{
    if (!k->locked) {
        o16(t, sz);
        op_rm(t, sz == 8, sz == 1 ? 0x88 : 0x89, RAX, R8, 0);
    }
    k->resume = t->p;
    t->cc = CC_UNKNOWN;
}

static void rmw_end(struct tx *t, struct ccall *k, int kind, int sz, bool live)
{
    rmw_load(t, sz);
    rmw_op(t, k, sz, alu_host[kind] - (sz == 1), RCX);
    if (live)
        alu_flags(t, kind, sz, RAX);
    rmw_store(t, k, sz);
}

/* INC/DEC (FE/FF /0 /1) and NOT/NEG (F6/F7 /2 /3) of memory, through rmw_begin's lookup. INC
 * and DEC keep CF: with live flags the carry in goes to r9 first (emit_carry may call out, which
 * the host address in r8 would not survive). */
static bool emit_unary_mem(struct tx *t, const struct insn *i, int sz, bool live)
{
    bool incdec = i->op == 0xfe || i->op == 0xff;
    int sub = i->sub;
    if ((incdec ? sub > 1 : sub != 2 && sub != 3) || t->nccall >= CCALL_MAX - 1)
        return false;
    if (incdec && live) {
        emit_carry(t);
        e1(t, 0x41);                /* setc r9b; movzx r9d, r9b */
        e1(t, 0x0f);
        e1(t, 0x92);
        e1(t, 0xc1);
        op_rr(t, 0, 0x0fb6, R9, R9);
    }
    struct ccall *k = rmw_begin(t, i, sz);
    rmw_load(t, sz);
    if (sub == 3 && live && !k->locked)
        mov_rr(t, 1, RCX, RAX);      /* NEG's flags: those of 0 - old */
    rmw_op(t, k, sz, (incdec ? 0xff : 0xf7) - (sz == 1), sub);
    if (sub == 3 && live && k->locked)
        mov_rr(t, 1, RCX, RDX);
    if (live && incdec) {
        st(t, 1, OFF(cc_res), RAX);
        sti(t, 1, OFF(cc_src), 1);
        sti(t, 0, OFF(cc_op), (int32_t)((sub ? CC_DEC : CC_INC) | lg_size(sz)));
        st(t, 1, OFF(cc_aux), R9);
    } else if (live && sub == 3) {
        cc_store(t, CC_SUB, sz, RAX, RCX);
    }
    rmw_store(t, k, sz);
    return true;
}

/* CMPXCHG r/m, r and XADD r/m, r of 4 or 8 bytes in memory (LOCKed or not): the host's own
 * LOCKed instruction on the host address, which is what the interpreter's compare-and-swap
 * does too, so other vCPUs see one atomic access either way. */
static bool emit_atomic(struct tx *t, const struct insn *i, int sz, bool live)
{
    int w = sz == 8;
    if (i->mod == 3 || (sz != 4 && sz != 8) || t->nccall >= CCALL_MAX - 1)
        return false;
    struct ccall *k = rmw_begin(t, i, sz);
    if (i->op == 0x1b1) {
        ldg(t, 1, RAX, R_AX);       /* all of RAX: the host leaves its upper half as the guest's */
        ldg(t, w, RCX, i->reg);
        mov_rr(t, 1, RDX, RAX);
        e1(t, 0xf0);
        op_rm(t, w, 0x0fb1, RCX, R8, 0);   /* lock cmpxchg [r8], rcx: rax = the old value */
        if (live) {
            op_rr(t, w, 0x29, RAX, RDX);   /* flags of CMP acc, old */
            cc_store(t, CC_SUB, sz, RDX, RAX);
        }
        stg(t, R_AX, RAX);
    } else {
        ldg(t, w, RCX, i->reg);
        mov_rr(t, 1, RDX, RCX);
        e1(t, 0xf0);
        op_rm(t, w, 0x0fc1, RCX, R8, 0);   /* lock xadd [r8], rcx: rcx = the old value */
        if (live) {
            mov_rr(t, 1, RAX, RCX);
            op_rr(t, w, 0x01, RDX, RAX);
            cc_store(t, CC_ADD, sz, RAX, RDX);
        }
        stg(t, i->reg, RCX);
    }
    k->resume = t->p;
    t->cc = CC_UNKNOWN;
    return true;
}

/* rcx = the r/m operand of sz bytes (a register, or memory through the TLB) */
static void emit_rm_rcx(struct tx *t, const struct insn *i, int sz)
{
    if (i->mod == 3) {
        ldg(t, sz == 8, RCX, i->rm);
        return;
    }
    emit_ea(t, i);
    emit_load(t, i, sz);
    mov_rr(t, 1, RCX, RAX);
}

/* DIV r/m32/64 (unsigned): the host's DIV once the divisor is known to be nonzero and the
 * quotient to fit (rDX below the divisor); otherwise the handler, which raises the #DE. The
 * flags stay as they were, as the interpreter leaves them (they are undefined after DIV). */
static bool emit_div(struct tx *t, const struct insn *i, int sz)
{
    int w = sz == 8;
    if ((sz != 4 && sz != 8) || t->nccall >= CCALL_MAX - 1)
        return false;
    struct ccall *k = ccall_new(t, i);
    emit_rm_rcx(t, i, sz);
    ldg(t, w, RAX, R_AX);
    ldg(t, w, RDX, R_DX);
    op_rr(t, w, 0x85, RCX, RCX);
    k->patch[k->npatch++] = jcc32(t, 0x4);   /* divisor 0 */
    op_rr(t, w, 0x39, RCX, RDX);             /* cmp rdx, rcx */
    k->patch[k->npatch++] = jcc32(t, 0x3);   /* rdx >= divisor: the quotient overflows */
    op_rr(t, w, 0xf7, 6, RCX);
    stg(t, R_AX, RAX);
    stg(t, R_DX, RDX);
    k->resume = t->p;
    return true;
}

/* The 16-bit forms emit_inline handles (zlib's and SQLite's 16-bit fields: compares, moves,
 * ALU operations, their memory forms): each runs as the host's instruction with the 0x66
 * prefix, and a result to a register replaces only its low 16 bits (stg_sz). */
static bool word_ok(const struct insn *i, bool live)
{
    unsigned op = i->op;
    if (op < 0x40 && ((op & 7) == 1 || (op & 7) == 3 || (op & 7) == 5))
        return alu_kind_ok((int)(op >> 3));
    switch (op) {
    case 0x81: case 0x83:
        return alu_kind_ok(i->sub);
    case 0x85: case 0xa9: case 0x89: case 0x8b: case 0xc7:
        return true;
    case 0xf7:
        return i->sub == 0 || (i->mod == 3 && (i->sub == 2 || i->sub == 3));
    case 0xff:
        return i->mod == 3 && i->sub <= 1;
    case 0xc1: case 0xd1:   /* shifts and rotates of a register whose flags nobody reads */
        return i->mod == 3 && !live && i->sub != 2 && i->sub != 3 && i->sub != 6;
    }
    return false;
}

/* Whether emit_cond, with the host's flags not the guest's, redoes the last producer on the
 * host (clobbering only rax, rcx, rdx) rather than calling out (clobbering every
 * caller-saved register): emit_redo's cases. */
static bool cond_redone(const struct tx *t)
{
    if (t->cc == CC_UNKNOWN)
        return false;
    switch (t->cc & ~3u) {
    case CC_EFLAGS: case CC_LOGIC: case CC_SUB: case CC_ADD: case CC_INC: case CC_DEC:
    case CC_ADC: case CC_SBB:
        return true;
    }
    return false;
}

/* BT, BTS, BTR, BTC of 4 or 8 bytes, with a register or an imm8 bit offset (bitmaps, glibc's
 * and the kernel's bit tests and sets): CF is the bit, the rest is left as the guest's last
 * flags (the interpreter keeps them; the manuals leave OF SF AF PF undefined, ZF kept). The
 * flags before it are redone on the host, the host's instruction runs on a register, and what
 * it leaves is stored whole (CC_EFLAGS), as bt_common stores its own. Nobody reading the flags
 * before they are set anew: a register BT is nothing at all (it neither faults nor writes).
 * False when the flags before it are not known here (another block's): then the handler.
 *
 * A memory operand: a register's bit offset is signed and picks the operand-sized word at
 * offset >> 5 (>> 6) words from the effective address; the host's BT on memory would do the
 * same, but its read of the word happens after our TLB lookup, so the word is loaded and the
 * host's register form runs on it. A TLB miss (or, for BTS/BTR/BTC, a page with code) runs
 * the handler out of line (a ccall), which leaves CC_EFLAGS too. LOCKed forms never get here
 * (lock_ok). */
static bool emit_bt(struct tx *t, const struct insn *i, int sz, bool live)
{
    int w = sz == 8;
    bool imm = i->op == 0x1ba, mem = i->mod != 3;
    int sub = imm ? i->sub - 4 : (int)((i->op & 0xff) >> 3) & 3;   /* BT BTS BTR BTC */
    if (sub < 0)
        return false;
    if (!live && !sub && !mem)
        return true;
    if (live && !cond_redone(t))
        return false;
    struct ccall *k = NULL;
    if (mem) {
        if (t->nccall >= CCALL_MAX - 1)
            return false;
        k = ccall_new(t, i);
        emit_ea(t, i);
        if (!imm) {   /* rax += (signed offset >> 5 or 6) * sz */
            ldg(t, w, RCX, i->reg);
            if (!w)
                op_rr(t, 1, 0x63, RCX, RCX);     /* movsxd rcx, ecx */
            op_rr(t, 1, 0xc1, 7, RCX);           /* sar rcx, 5 / 6 */
            e1(t, w ? 6 : 5);
            rex(t, 1, RAX, RCX, RAX);            /* lea rax, [rax + rcx * sz] */
            e1(t, 0x8d);
            e1(t, 0x04);
            e1(t, (unsigned)(w ? 3 : 2) << 6 | (unsigned)RCX << 3 | RAX);
            if (t->mode != 8)
                mov_rr(t, 0, RAX, RAX);          /* linear addresses wrap at 4 GiB */
        }
        tlb_lookup(t, sub != 0, sz, k->patch, &k->npatch);
        mov_rr(t, 1, R8, RAX);
    }
    if (live)
        emit_redo(t);                            /* rax rcx rdx; then only moves until the op */
    if (mem)
        op_rm(t, w, 0x8b, RAX, R8, 0);
    else
        ldg(t, w, RAX, i->rm);
    if (!imm) {
        ldg(t, w, RCX, i->reg);
        op_rr(t, w, 0x0fa3 | (unsigned)sub << 3, RCX, RAX);
    } else {
        op_rr(t, w, 0x0fba, 4 + sub, RAX);
        e1(t, (uint8_t)i->imm);
    }
    if (sub && mem)
        op_rm(t, w, 0x89, RAX, R8, 0);
    else if (sub)
        stg(t, i->rm, RAX);
    if (live) {
        e1(t, 0x9c);                 /* pushfq; pop rax; and eax, OF SF ZF AF PF CF */
        e1(t, 0x58);
        e1(t, 0x25);
        e4(t, F_ARITH);
        st(t, 1, OFF(cc_src), RAX);
        sti(t, 0, OFF(cc_op), CC_EFLAGS);
    }
    if (k)
        k->resume = t->p;
    /* dead flags: the ccall's handler stored some, the inline path none */
    t->cc = live ? CC_EFLAGS : CC_UNKNOWN;
    return true;
}

/* The LOCKed forms emit_inline translates: the read-modify-writes of memory that go through
 * rmw_begin (rmw_op's compare-and-swap loop). Any other LOCK (CMP, a register operand: #UD;
 * ADC, SBB, BTS...) stays with its handler. */
static bool lock_ok(const struct insn *i)
{
    unsigned op = i->op;
    if (i->mod == 3)
        return false;
    if (op < 0x40)
        return (op & 7) <= 1 && alu_kind_ok((int)(op >> 3)) && (op >> 3) != RMW_CMP;
    switch (op) {
    case 0x80: case 0x81: case 0x83:
        return alu_kind_ok(i->sub) && i->sub != RMW_CMP;
    case 0xfe: case 0xff:
        return i->sub <= 1;
    case 0xf6: case 0xf7:
        return i->sub == 2 || i->sub == 3;
    }
    return false;
}

/* CMOVcc r, m of 4 or 8 bytes. The memory is read whatever the condition (a fault comes
 * first), and a 32-bit destination is zero-extended even when the condition is false, as the
 * host's CMOV with a register destination does. The load comes before the condition: its TLB
 * lookup takes the host's flags, so they are redone from cc_* (the producer stored them: a
 * memory CMOVcc is no hf_reader). The loaded value waits in r8 across a redo, on the host's
 * stack (16 bytes: the stack stays aligned for the call) across cond_eval. */
static bool emit_cmov_mem(struct tx *t, const struct insn *i, int sz)
{
    int w = sz == 8;
    emit_ea(t, i);
    emit_load(t, i, sz);
    t->hf_in = false;
    bool spill = !cond_redone(t);
    if (spill) {
        e1(t, 0x50);                 /* push rax; push rax */
        e1(t, 0x50);
    } else {
        mov_rr(t, 1, R8, RAX);
    }
    unsigned hcc = emit_cond(t, i->op & 0xf);
    if (spill) {
        e1(t, 0x59);                 /* pop rcx; pop rcx: the flags stay */
        e1(t, 0x59);
    } else {
        mov_rr(t, 1, RCX, R8);
    }
    ldg(t, w, RAX, i->reg);
    op_rr(t, w, 0x0f40 | hcc, RAX, RCX);
    stg(t, i->reg, RAX);
    return true;
}

/* Emits i inline when it is one of the handled forms; false leaves it to its handler. live: a
 * later instruction may read the flags i writes. */
static bool emit_inline(struct tx *t, const struct insn *i, bool live)
{
    unsigned op = i->op;
    int sz = i->osz, w = sz == 8;
    bool reg = i->mod == 3;
    if (i->fn == h_sse)
        return emit_sse(t, i);
    if ((op == 0x1b1 || op == 0x1c1) && !i->rep && (reg || ea_ok(i, t->pend)))
        return emit_atomic(t, i, sz, live);   /* LOCKed or not: the host's LOCKed form */
    if (i->rep || (i->lock && !lock_ok(i)))
        return false;

    /* no operands to speak of */
    if ((op == 0x90 && i->rm == 0) || (op >= 0x118 && op <= 0x11f) || op == 0x10d)
        return true;   /* NOP, and the PREFETCH hints: they neither fault nor change state */
    if (op >= 0x50 && op <= 0x5f) {
        if (sz != t->sw)
            return false;
        if (op < 0x58) {
            ldg(t, 1, R8, i->rm);
            emit_sp_lin(t, -sz);
            emit_store(t, i, sz)->sp_adj = -sz;
            add_sp(t, -sz);
        } else {
            emit_sp_lin(t, 0);
            emit_load(t, i, sz);
            add_sp(t, sz);
            stg(t, i->rm, RAX);
        }
        return true;
    }
    if (op >= 0xb8 && op <= 0xbf) {
        if (sz != 4 && sz != 8)
            return false;
        if (t->host_of[i->rm] >= 0) {
            ld_imm(t, t->host_of[i->rm], i, sz);
            t->dirty |= (uint16_t)(1u << i->rm);
            return true;
        }
        ld_imm(t, RAX, i, sz);
        stg(t, i->rm, RAX);
        return true;
    }
    if (op >= 0x40 && op <= 0x4f && t->mode != 8) {   /* INC/DEC r32 outside 64-bit mode */
        if (sz != 4)
            return false;
        emit_incdec(t, (op >> 3) & 1, sz, i->rm, live);
        return true;
    }
    if (op >= 0x1c8 && op <= 0x1cf) {
        if (sz != 4 && sz != 8)
            return false;
        ldg(t, w, RAX, i->rm);
        rex(t, w, 0, 0, RAX);
        e1(t, 0x0f);
        e1(t, 0xc8);
        stg(t, i->rm, RAX);
        return true;
    }
    if (op >= 0x190 && op <= 0x19f && !reg) {   /* SETcc m8: the byte in r8 for the store */
        if (!ea_ok(i, t->pend))
            return false;
        unsigned hcc = emit_cond(t, op & 0xf);
        e1(t, 0x41);                    /* setcc r8b; movzx r8d, r8b */
        e1(t, 0x0f);
        e1(t, 0x90 | hcc);
        e1(t, 0xc0);
        op_rr(t, 0, 0x0fb6, R8, R8);
        emit_ea(t, i);
        emit_store(t, i, 1);
        return true;
    }
    if (op >= 0x190 && op <= 0x19f) {   /* SETcc r8 */
        unsigned hcc = emit_cond(t, op & 0xf);
        e1(t, 0x0f);
        e1(t, 0x90 | hcc);
        e1(t, 0xc0);                    /* setcc al */
        st_byte(t, i->rm, RAX);
        return true;
    }
    if (!reg && !ea_ok(i, t->pend))
        return false;
    if (!reg && (((op == 0xfe || op == 0xff) && i->sub <= 1) ||
                 ((op == 0xf6 || op == 0xf7) && (i->sub == 2 || i->sub == 3))))
        return emit_unary_mem(t, i, sz, live);
    if ((sz == 4 || sz == 8) && (op == 0x1a3 || op == 0x1ab || op == 0x1b3 || op == 0x1bb || op == 0x1ba))
        return emit_bt(t, i, sz, live);
    if (!reg && (sz == 4 || sz == 8) && op >= 0x140 && op <= 0x14f)
        return emit_cmov_mem(t, i, sz);
    if (sz == 1)
        return emit_byte(t, i, live);
    if (sz == 2 && !word_ok(i, live))
        return false;
    if (op >= 0x140 && op <= 0x14f) {   /* CMOVcc r, r */
        if (!reg)
            return false;
        unsigned hcc = emit_cond(t, op & 0xf);
        ldg(t, w, RCX, i->rm);
        ldg(t, w, RAX, i->reg);
        op_rr(t, w, 0x0f40 | hcc, RAX, RCX);
        stg(t, i->reg, RAX);
        return true;
    }
    /* ADC/SBB on registers: the carry onto the host's CF first, then only MOVs until the op */
    {
        int kind = -1, dst = 0, src = -1;
        if (op < 0x40 && ((op & 7) == 1 || (op & 7) == 3 || (op & 7) == 5) &&
            !alu_kind_ok((int)(op >> 3)) && (reg || (op & 7) == 5)) {
            kind = (int)(op >> 3);
            dst = (op & 7) == 5 ? R_AX : (op & 7) == 1 ? i->rm : i->reg;
            src = (op & 7) == 5 ? -1 : (op & 7) == 1 ? i->reg : i->rm;
        } else if ((op == 0x81 || op == 0x83) && reg && !alu_kind_ok(i->sub)) {
            kind = i->sub;
            dst = i->rm;
        }
        if (kind >= 0) {
            emit_carry(t);
            e1(t, 0x0f);                /* setc dl; movzx edx, dl: the carry in */
            e1(t, 0x92);
            e1(t, 0xc2);
            op_rr(t, 0, 0x0fb6, RDX, RDX);
            if (src >= 0)
                ldg(t, w, RCX, src);
            else
                ld_imm(t, RCX, i, sz);
            ldg(t, w, RAX, dst);
            op_rr(t, w, kind == RMW_ADC ? 0x11 : 0x19, RCX, RAX);
            if (live) {
                cc_store(t, kind == RMW_ADC ? CC_ADC : CC_SBB, sz, RAX, RCX);
                st(t, 1, OFF(cc_aux), RDX);
            }
            stg(t, dst, RAX);
            return true;
        }
    }

    /* ALU: Ev,Gv / Gv,Ev / eAX,Iz */
    if (op < 0x40 && ((op & 7) == 1 || (op & 7) == 3 || (op & 7) == 5)) {
        int kind = (int)(op >> 3);
        if (!alu_kind_ok(kind))
            return false;
        int dst;
        if ((op & 7) == 5 || reg) {
            dst = (op & 7) == 5 ? R_AX : (op & 7) == 1 ? i->rm : i->reg;
            if (emit_alu_in_place(t, kind, sz, dst,
                                  (op & 7) == 5 ? -1 : (op & 7) == 1 ? i->reg : i->rm, i->imm, live))
                return true;
            if ((op & 7) == 5)
                ld_imm(t, RCX, i, sz);
            else
                ldg(t, w, RCX, (op & 7) == 1 ? i->reg : i->rm);
            if (emit_alu_direct(t, kind, sz, dst, live))
                return true;
            ldg(t, w, RAX, dst);
        } else if ((op & 7) == 3) {
            dst = i->reg;
            emit_ea(t, i);
            emit_load(t, i, sz);
            if (emit_alu_loaded(t, kind, sz, dst, live))
                return true;
            mov_rr(t, 1, RCX, RAX);
            ldg(t, w, RAX, dst);
        } else if (kind == RMW_CMP) {   /* CMP m, r */
            dst = 0;
            emit_ea(t, i);
            emit_load(t, i, sz);
            if (emit_alu_on_loaded(t, RMW_CMP, sz, i->reg, live))
                return true;
            ldg(t, w, RCX, i->reg);
        } else {                        /* op m, r */
            struct ccall *k = rmw_begin(t, i, sz);
            if (!k)
                return false;
            ldg(t, w, RCX, i->reg);
            rmw_end(t, k, kind, sz, live);
            return true;
        }
        emit_alu(t, kind, sz, dst, live);
        return true;
    }
    switch (op) {
    case 0x81: case 0x83:
        if (!alu_kind_ok(i->sub))
            return false;
        if (reg) {
            if (emit_alu_in_place(t, i->sub, sz, i->rm, -1, i->imm, live))
                return true;
            ld_imm(t, RCX, i, sz);
            if (emit_alu_direct(t, i->sub, sz, i->rm, live))
                return true;
            ldg(t, w, RAX, i->rm);
        } else if (i->sub == RMW_CMP) {
            emit_ea(t, i);
            emit_load(t, i, sz);
        } else {                        /* op m, imm */
            struct ccall *k = rmw_begin(t, i, sz);
            if (!k)
                return false;
            ld_imm(t, RCX, i, sz);
            rmw_end(t, k, i->sub, sz, live);
            return true;
        }
        ld_imm(t, RCX, i, sz);
        emit_alu(t, i->sub, sz, i->rm, live);
        return true;
    case 0x98:   /* CWDE, CDQE */
        ldg(t, 0, RAX, R_AX);
        if (w)
            op_rr(t, 1, 0x63, RAX, RAX);       /* movsxd rax, eax */
        else
            op_rr(t, 0, 0x0fbf, RAX, RAX);     /* movsx eax, ax */
        stg(t, R_AX, RAX);
        return true;
    case 0x99:   /* CDQ, CQO: rDX = the sign of rAX */
        ldg(t, w, RDX, R_AX);
        op_rr(t, w, 0xc1, 7, RDX);
        e1(t, w ? 63 : 31);
        stg(t, R_DX, RDX);
        return true;
    case 0x85:
        if (reg && emit_alu_in_place(t, ALU_TEST, sz, i->rm, i->reg, 0, live))
            return true;
        if (reg) {
            ldg(t, w, RAX, i->rm);
        } else {
            emit_ea(t, i);
            emit_load(t, i, sz);
            if (emit_alu_on_loaded(t, ALU_TEST, sz, i->reg, live))
                return true;
        }
        ldg(t, w, RCX, i->reg);
        emit_alu(t, ALU_TEST, sz, 0, live);
        return true;
    case 0xa9:
        if (emit_alu_in_place(t, ALU_TEST, sz, R_AX, -1, i->imm, live))
            return true;
        ldg(t, w, RAX, R_AX);
        ld_imm(t, RCX, i, sz);
        emit_alu(t, ALU_TEST, sz, 0, live);
        return true;
    case 0x89:
        if (reg && t->host_of[i->rm] >= 0 && sz != 2) {
            ldg(t, w, t->host_of[i->rm], i->reg);
            t->dirty |= (uint16_t)(1u << i->rm);
        } else if (reg) {
            ldg(t, w, RAX, i->reg);
            stg_sz(t, i->rm, RAX, sz);
        } else {
            ldg(t, w, R8, i->reg);
            emit_ea(t, i);
            emit_store(t, i, sz);
        }
        return true;
    case 0x8b:
        if (reg && t->host_of[i->reg] >= 0 && sz != 2) {
            ldg(t, w, t->host_of[i->reg], i->rm);
            t->dirty |= (uint16_t)(1u << i->reg);
            return true;
        }
        if (reg) {
            ldg(t, w, RAX, i->rm);
        } else {
            emit_ea(t, i);
            emit_load(t, i, sz);
        }
        stg_sz(t, i->reg, RAX, sz);
        return true;
    case 0xc7:
        if (i->sub != 0)
            return false;
        if (reg) {
            ld_imm(t, RAX, i, sz);
            stg_sz(t, i->rm, RAX, sz);
        } else {
            ld_imm(t, R8, i, sz);
            emit_ea(t, i);
            emit_store(t, i, sz);
        }
        return true;
    case 0x8d:
        if (reg)
            return false;
        if (i->asz == 8 && (sz == 4 || sz == 8) && t->host_of[i->reg] >= 0 &&
            i->base == REG_RIP && i->index == REG_NONE) {   /* RIP-relative: from the end */
            int hd = t->host_of[i->reg];
            ld(t, 1, hd, OFF(rip));
            op_rm(t, sz == 8, 0x8d, hd, hd, i->disp + t->pend + i->len);
            t->dirty |= (uint16_t)(1u << i->reg);
            return true;
        }
        if (i->asz == 8 && (sz == 4 || sz == 8) && t->host_of[i->reg] >= 0 &&
            i->base != REG_NONE && i->base != REG_RIP) {
            /* into the host register that holds the destination, from the registers where
             * they are: one host LEA (a 32-bit one truncates as the guest's does) */
            int hd = t->host_of[i->reg], base = t->host_of[i->base], index = RCX;
            if (base < 0) {
                ldg(t, 1, RAX, i->base);
                base = RAX;
            }
            if (i->index != REG_NONE) {
                if (t->host_of[i->index] >= 0)
                    index = t->host_of[i->index];
                else
                    ldg(t, 1, RCX, i->index);
                rex(t, sz == 8, hd, index, base);
                e1(t, 0x8d);
                e1(t, 0x84 | (unsigned)(hd & 7) << 3);
                e1(t, (unsigned)(i->scale << 6) | (unsigned)(index & 7) << 3 | (unsigned)(base & 7));
                e4(t, (uint32_t)i->disp);
            } else {
                op_rm(t, sz == 8, 0x8d, hd, base, i->disp);
            }
            t->dirty |= (uint16_t)(1u << i->reg);
            return true;
        }
        emit_ea_off(t, i);
        if (sz == 4)
            mov_rr(t, 0, RAX, RAX);
        stg(t, i->reg, RAX);
        return true;
    case 0x63:
        if (sz != 8)
            return false;
        if (reg) {   /* straight from where the source is to where the destination is */
            int hd = t->host_of[i->reg] >= 0 ? t->host_of[i->reg] : RAX;
            if (t->host_of[i->rm] >= 0)
                op_rr(t, 1, 0x63, hd, t->host_of[i->rm]);
            else
                op_rm(t, 1, 0x63, hd, RBX, GREG(i->rm));
            if (hd == RAX)
                stg(t, i->reg, RAX);
            else
                t->dirty |= (uint16_t)(1u << i->reg);
            return true;
        }
        emit_ea(t, i);
        emit_load(t, i, 4);
        if (t->host_of[i->reg] >= 0) {
            op_rr(t, 1, 0x63, t->host_of[i->reg], RAX);
            t->dirty |= (uint16_t)(1u << i->reg);
        } else {
            op_rr(t, 1, 0x63, RAX, RAX);
            stg(t, i->reg, RAX);
        }
        return true;
    case 0x1b6: case 0x1b7: case 0x1be: case 0x1bf: {
        int ssz = (op & 1) ? 2 : 1, ww = op >= 0x1be ? w : 0;
        int hd = (sz == 4 || sz == 8) && t->host_of[i->reg] >= 0 ? t->host_of[i->reg] : RAX;
        if (reg && i->rm < 16 && (sz == 4 || sz == 8)) {
            /* straight from where the source is to where the destination is; the low byte of
             * rbp (a host register) needs a REX, or it would be CH */
            int hs = t->host_of[i->rm];
            if (hs >= 0 && ssz == 1 && hs >= RSP && hs <= RDI) {
                e1(t, 0x40 | (ww ? 8 : 0) | ((hd & 8) >> 1));
                opc(t, 0x0f00 | (op & 0xff));
                e1(t, 0xc0 | (hd & 7) << 3 | (hs & 7));
            } else if (hs >= 0) {
                op_rr(t, ww, 0x0f00 | (op & 0xff), hd, hs);
            } else {
                op_rm(t, ww, 0x0f00 | (op & 0xff), hd, RBX, GREG(i->rm));
            }
        } else {
            if (reg && i->rm >= 16) {   /* AH..BH: through struct cpu, zero-extended */
                ld_byte(t, RAX, i->rm);
            } else if (reg) {
                ldg(t, 1, RAX, i->rm);
            } else {
                emit_ea(t, i);
                emit_load(t, i, ssz);   /* zero-extended already */
            }
            if (op >= 0x1be || reg)
                op_rr(t, ww, 0x0f00 | (op & 0xff), hd, RAX);
            else if (hd != RAX)
                mov_rr(t, 1, hd, RAX);
        }
        if (hd == RAX)
            stg(t, i->reg, RAX);
        else
            t->dirty |= (uint16_t)(1u << i->reg);
        return true;
    }
    case 0x1af: case 0x69: case 0x6b:   /* IMUL r, r/m (, imm) */
        emit_rm_rcx(t, i, sz);
        if (op == 0x1af) {
            ldg(t, w, RAX, i->reg);
            op_rr(t, w, 0x0faf, RAX, RCX);
        } else {
            op_rr(t, w, 0x69, RAX, RCX);   /* imul rax, rcx, imm32 */
            e4(t, (uint32_t)i->imm);
        }
        if (live) {   /* CF = OF = the host's overflow, as imul2() records it (CC_MUL) */
            e1(t, 0x0f);               /* seto dl; movzx edx, dl */
            e1(t, 0x90);
            e1(t, 0xc2);
            op_rr(t, 0, 0x0fb6, RDX, RDX);
            cc_store(t, CC_MUL, sz, RAX, RDX);
        }
        stg(t, i->reg, RAX);
        return true;
    case 0xd3: {   /* by CL: whether flags change depends on the count, so only dead ones */
        int sub = i->sub;
        if (!reg || live || sub == 6 || sub == 2 || sub == 3)
            return false;
        ldg(t, 0, RCX, R_CX);
        ldg(t, w, RAX, i->rm);
        op_rr(t, w, 0xd3, sub, RAX);
        stg(t, i->rm, RAX);
        return true;
    }
    case 0xc1: case 0xd1: {
        if (!reg)
            return false;
        unsigned n = op == 0xd1 ? 1 : (unsigned)i->imm & (sz == 8 ? 63 : 31);
        int sub = i->sub;
        if (sub == 6 || sub == 2 || sub == 3)
            return false;
        if ((sub == 0 || sub == 1) && live && n)
            return false;   /* a rotate merges its flags with the older ones: the handler's job */
        int h = t->host_of[i->rm];
        if (sz == 2) {   /* flags dead (word_ok): the host's 16-bit shift or rotate */
            ldg(t, 0, RAX, i->rm);
            o16(t, sz);
            op_rr(t, 0, 0xc1, sub, RAX);
            e1(t, n);
            stg_sz(t, i->rm, RAX, sz);
            return true;
        }
        if (h >= 0 && !live) {   /* in place; a 32-bit count of 0 still clears the top half */
            if (n) {
                op_rr(t, w, 0xc1, sub, h);
                e1(t, n);
            } else if (!w) {
                mov_rr(t, 0, h, h);
            }
            t->dirty |= (uint16_t)(1u << i->rm);
            return true;
        }
        ldg(t, w, RAX, i->rm);
        if (n)
            emit_shift(t, sub, sz, n, live);
        stg(t, i->rm, RAX);
        return true;
    }
    case 0xf7:
        if (i->sub == 6)
            return emit_div(t, i, sz);
        if (i->sub == 4 || i->sub == 5) {   /* MUL, IMUL r/m: rDX:rAX = rAX * r/m */
            emit_rm_rcx(t, i, sz);
            ldg(t, w, RAX, R_AX);
            op_rr(t, w, 0xf7, i->sub, RCX);
            if (live) {   /* CF = OF = the upper half is needed, as mul_op() records it */
                e1(t, 0x0f);            /* seto cl; movzx ecx, cl */
                e1(t, 0x90);
                e1(t, 0xc1);
                op_rr(t, 0, 0x0fb6, RCX, RCX);
                cc_store(t, CC_MUL, sz, RAX, RCX);
            }
            stg(t, R_AX, RAX);
            stg(t, R_DX, RDX);
            return true;
        }
        if (!reg && i->sub == 0) {   /* TEST m, imm */
            emit_ea(t, i);
            emit_load(t, i, sz);
            ld_imm(t, RCX, i, sz);
            emit_alu(t, ALU_TEST, sz, 0, live);
            return true;
        }
        if (!reg)
            return false;
        if (i->sub == 0 && emit_alu_in_place(t, ALU_TEST, sz, i->rm, -1, i->imm, live))
            return true;
        if (i->sub == 0) {
            ldg(t, w, RAX, i->rm);
            ld_imm(t, RCX, i, sz);
            emit_alu(t, ALU_TEST, sz, 0, live);
            return true;
        }
        if (i->sub == 2 || i->sub == 3) {
            ldg(t, w, RAX, i->rm);
            if (i->sub == 3)
                mov_rr(t, 1, RCX, RAX);
            o16(t, sz);
            op_rr(t, w, 0xf7, i->sub, RAX);
            if (i->sub == 3 && live)
                cc_store(t, CC_SUB, sz, RAX, RCX);
            stg_sz(t, i->rm, RAX, sz);
            return true;
        }
        return false;
    case 0xff:
        if (!reg || i->sub > 1)
            return false;
        emit_incdec(t, i->sub, sz, i->rm, live);
        return true;
    }
    return false;
}

/* Sets the host's arithmetic flags to the guest's by redoing, on the host, the operation an
 * inline instruction of this block last stored in the lazy flags. False when that is not known
 * (then the flags come from flags.c). Clobbers rax, rcx, rdx. */
/* The host's op (given by its 32-bit opcode: 01 29 39 85 11 19 for the r/m, r forms, 83 and
 * FF for the groups) at operand size sz on rax, rcx, rdx: the byte form is the opcode before
 * it (80 for 83: 82 does not exist in 64-bit mode), the 16-bit form has the prefix. */
static void op_sz(struct tx *t, int sz, unsigned op, int r, int b)
{
    o16(t, sz);
    if (sz == 1)
        op = op == 0x83 ? 0x80 : op - 1;
    op_rr(t, sz == 8, op, r, b);
}

static bool emit_redo(struct tx *t)
{
    unsigned op = t->cc & ~3u;
    int sz = 1 << (t->cc & 3), w = sz == 8;
    if (t->cc == CC_UNKNOWN)
        return false;
    t->broken |= t->unstored;   /* it reads cc_*, which an elided producer left stale */
    switch (op) {
    case CC_EFLAGS:   /* the flags themselves (COMISD, POPF, SAHF...): OF, then the low byte */
        ld(t, 0, RAX, OFF(cc_src));
        mov_rr(t, 0, RCX, RAX);
        op_rr(t, 0, 0xc1, 5, RCX);     /* shr ecx, 11; and ecx, 1; add cl, 0x7f: OF = bit 11 */
        e1(t, 11);
        op_rr(t, 0, 0x83, 4, RCX);
        e1(t, 1);
        op_rr(t, 0, 0x80, 0, RCX);
        e1(t, 0x7f);
        e1(t, 0x88);                   /* mov ah, al; sahf: SF ZF AF PF CF */
        e1(t, 0xc4);
        e1(t, 0x9e);
        return true;
    case CC_LOGIC:
        ld(t, w, RAX, OFF(cc_res));
        op_sz(t, sz, 0x85, RAX, RAX);
        return true;
    case CC_SUB: case CC_ADD:
        ld(t, w, RCX, OFF(cc_src));
        ld(t, w, RAX, OFF(cc_res));
        /* recover the first operand, then redo the operation */
        op_sz(t, sz, op == CC_SUB ? 0x01 : 0x29, RCX, RAX);
        op_sz(t, sz, op == CC_SUB ? 0x39 : 0x01, RCX, RAX);
        return true;
    case CC_INC: case CC_DEC:
        ld(t, w, RAX, OFF(cc_res));
        ld(t, 0, RDX, OFF(cc_aux));   /* the carry kept */
        op_sz(t, sz, 0x83, op == CC_INC ? 5 : 0, RAX);   /* the operand back */
        e1(t, 1);
        op_rr(t, 0, 0x0fba, 4, RDX);  /* bt edx, 0 */
        e1(t, 0);
        op_sz(t, sz, 0xff, op == CC_INC ? 0 : 1, RAX);   /* INC/DEC keep the host's CF */
        return true;
    case CC_ADC: case CC_SBB:
        ld(t, w, RCX, OFF(cc_src));
        ld(t, w, RAX, OFF(cc_res));
        ld(t, 0, RDX, OFF(cc_aux));   /* the carry in */
        op_sz(t, sz, op == CC_ADC ? 0x29 : 0x01, RCX, RAX);
        op_sz(t, sz, op == CC_ADC ? 0x29 : 0x01, RDX, RAX);
        op_rr(t, 0, 0x0fba, 4, RDX);  /* bt edx, 0 */
        e1(t, 0);
        op_sz(t, sz, op == CC_ADC ? 0x11 : 0x19, RCX, RAX);
        return true;
    }
    return false;
}

/* The host condition code (for Jcc/SETcc/CMOVcc) that is true when guest condition cc is. */
static unsigned emit_cond(struct tx *t, unsigned cc)
{
    if (t->hf_in && t->cc != CC_UNKNOWN)
        return cc;
    t->broken |= t->unstored;
    if (emit_redo(t))
        return cc;
    /* Who set the flags is not known here (another block, a handler): the usual producers
     * (CMP/SUB and TEST/AND/OR/XOR of every size, ADD, DEC, the flags themselves) are picked by c->cc_op at run time and
     * redone on the host, the rest go to cond_eval; either way al = the condition. */
    static const uint32_t usual[] = { CC_SUB | 2, CC_SUB | 3, CC_LOGIC | 2, CC_LOGIC | 3,
                                      CC_LOGIC | 0, CC_SUB | 0, CC_EFLAGS, CC_SUB | 1,
                                      CC_ADD | 3, CC_ADD | 2, CC_LOGIC | 1, CC_DEC | 2 };
    enum { NUSUAL = sizeof(usual) / sizeof(usual[0]) };
    uint8_t *done[NUSUAL];
    uint32_t known = t->cc;
    ld(t, 0, RSI, OFF(cc_op));
    for (int k = 0; k < NUSUAL; k++) {
        op_rr(t, 0, 0x81, 7, RSI);     /* cmp esi, usual[k] */
        e4(t, usual[k]);
        uint8_t *next = jcc32(t, 0x5);
        t->cc = usual[k];
        emit_redo(t);
        e1(t, 0x0f);                   /* setcc al */
        e1(t, 0x90 | cc);
        e1(t, 0xc0);
        e1(t, 0xe9);
        e4(t, 0);
        done[k] = t->p - 4;
        patch(t, next, t->p);
    }
    t->cc = known;
    mov_rr(t, 1, RDI, RBX);
    movi(t, RSI, cc);
    call(t, (const void *)cond_eval);
    for (int k = 0; k < NUSUAL; k++)
        patch(t, done[k], t->p);
    op_rr(t, 0, 0x84, RAX, RAX);   /* test al, al */
    return 0x5;
}

/* The host's CF = the guest's CF (for ADC/SBB). */
static void emit_carry(struct tx *t)
{
    if (t->hf_in && t->cc != CC_UNKNOWN)
        return;
    t->broken |= t->unstored;
    if (emit_redo(t))
        return;
    mov_rr(t, 1, RDI, RBX);
    call(t, (const void *)flags_cf);
    op_rr(t, 0, 0xf6, 3, RAX);     /* neg al: CF = al != 0 */
}

/* A call to i's handler, with c->rip and c->cur as the interpreter sets them. */
static void emit_call(struct tx *t, const struct insn *i, bool last)
{
    int adv = t->pend + i->len;
    t->broken |= t->unstored;
    flush_regs(t);
    if (adv)
        addmi(t, OFF(rip), adv);
    t->ripoff += adv;
    t->pend = 0;
    movi(t, RSI, (uint64_t)(uintptr_t)i);
    st(t, 1, OFF(cur), RSI);
    mov_rr(t, 1, RDI, RBX);
    call(t, (const void *)i->fn);
    t->cc = CC_UNKNOWN;
    if (!last) {
        brk_check(t);
        reload_regs(t);
    }
}

static void emit_ind(struct tx *t);

/* Leaves the block with c->rip advanced by delta, going straight on to the translation of the
 * block there once the run loop has linked it: the exit is a JMP whose rel32 first points at
 * the code right after it (which tells the run loop where the jump is, and leaves) and then, as
 * QEMU's goto_tb, at the successor's code (jit_link). Only exits to the same page link: that
 * page is mapped (this block runs from it). msz: a branch of that operand size (2, 4) wraps RIP
 * to it, as the interpreter's jump() does; a target that wrapped is not where the link points,
 * so it leaves.
 *
 * No generation check at the link. A chain of linked blocks is entered through a check of its
 * first block's page generation (the run loop's block_get, emit_ind), and a link joins two
 * blocks of one page and one generation, made by the run loop (never while a chain runs) towards
 * a block current then. So every block a chain reaches has the generation its first block had
 * when the chain was entered, and the chain runs stale code only if the page is written while
 * it runs: by this CPU, a store into a page with code ends the block after the instruction
 * (mem_smc sets c->brk, which handler calls and the store's slow path look at); by another CPU
 * or a device (emu_vm_invalidate), as on hardware without a serializing instruction, the code
 * may run a little longer: until the chain budget takes the chain back to the run loop, whose
 * block_get sees the new generation (a cross-page exit, through emit_ind, sees it sooner).
 *
 * Nor an interrupt check or a budget: the successor's prologue subtracts its instructions from
 * c->chain_left and leaves when nothing is left, or when another thread set its top bit for an
 * interrupt notice or a kick (cpu.c's cpu_cut_chain), which makes links bare jumps. */
static void emit_exit(struct tx *t, int64_t delta, int msz)
{
    flush_regs(t);
    uint8_t *out0 = NULL;
    if (msz == 2 || msz == 4) {
        ld(t, 1, RAX, OFF(rip));
        op_rr(t, 1, 0x81, 0, RAX);                     /* add rax, delta */
        e4(t, (uint32_t)(int32_t)delta);
        if (msz == 4)
            mov_rr(t, 0, RCX, RAX);
        else
            op_rr(t, 0, 0x0fb7, RCX, RAX);             /* movzx ecx, ax */
        st(t, 1, OFF(rip), RCX);
        op_rr(t, 1, 0x39, RAX, RCX);                   /* cmp rcx, rax */
        out0 = jcc32(t, 0x5);
    } else if (delta) {   /* 0: a loop back to the block's start, RIP is there already */
        addmi(t, OFF(rip), (int32_t)delta);
    }
    int64_t to = (int64_t)(t->b->pa & 0xfff) + t->ripoff + delta;
    if (to < 0 || to >= 0x1000) {
        /* another page (a call into another function, mostly): no link, which one generation
         * check could not cover, but the jump cache with the checks an indirect branch makes,
         * rather than a trip through the run loop */
        if (out0)
            patch(t, out0, t->p);
        ld(t, 1, RAX, OFF(rip));
        emit_ind(t);
        return;
    }
    e1(t, 0xe9);                                     /* jmp: the link, not yet made */
    e4(t, 0);
    uint8_t *rel = t->p - 4;
    /* tell the run loop where the jump is and which block it should go to */
    rex(t, 1, RAX, 0, 0);                            /* lea rax, [rip - ...]: rel's address */
    e1(t, 0x8d);
    e1(t, 0x05);
    e4(t, (uint32_t)(int32_t)(rel - (t->p + 4)));
    st(t, 1, OFF(link_from), RAX);
    movi(t, RAX, ((t->b->pa & ~0xfffull) | (uint64_t)to) ^ ((uint64_t)t->b->mode << 60));
    st(t, 1, OFF(link_key), RAX);
    sti(t, 0, OFF(link_gen), (int32_t)t->b->gen);
    if (out0)
        patch(t, out0, t->p);
    leave(t);
}

/* Leaves the block for the RIP in rax (just stored to c->rip, registers written back), going
 * straight on to the translated block there when the run loop's jump cache (block_get) knows
 * it, with the checks block_get makes (the TLB still maps the page executable at the block's
 * frame, the page's generation; the block's prologue keeps the chain budget). RET, JMP and
 * CALL through registers or memory thus go block to block; the cache is the run loop's, so it
 * is filled and invalidated with the block cache. */
static void emit_ind(struct tx *t)
{
    uint8_t *out[9];
    int no = 0;
    if (t->mode != 8) {
        op_rm(t, 1, 0x03, RAX, RBX, OFF(segbase) + 8 * SEG_CS);
        mov_rr(t, 0, RAX, RAX);
    }
    /* rcx = &c->jc[(la ^ la >> JMP_CACHE_BITS) & mask] */
    mov_rr(t, 1, RCX, RAX);
    op_rr(t, 1, 0xc1, 5, RCX);
    e1(t, JMP_CACHE_BITS);
    op_rr(t, 1, 0x31, RAX, RCX);
    op_rr(t, 0, 0x81, 4, RCX);
    e4(t, (1u << JMP_CACHE_BITS) - 1);
    op_rr(t, 0, 0x69, RCX, RCX);
    e4(t, (uint32_t)sizeof(struct jc_entry));
    rex(t, 1, RCX, RBX, RCX);         /* lea rcx, [rcx + rbx + OFF(jc)] */
    e1(t, 0x8d);
    e1(t, 0x8c);
    e1(t, (RBX & 7) << 3 | (RCX & 7));
    e4(t, (uint32_t)OFF(jc));
    op_rm(t, 1, 0x3b, RAX, RCX, (int32_t)offsetof(struct jc_entry, la));
    out[no++] = jcc32(t, 0x5);
    ld(t, 0, RDX, OFF(cpl));           /* the key: mode | CPL << 8 */
    op_rr(t, 0, 0xc1, 4, RDX);
    e1(t, 8);
    op_rr(t, 0, 0x81, 1, RDX);
    e4(t, t->b->mode);
    op_rm(t, 1, 0x3b, RDX, RCX, (int32_t)offsetof(struct jc_entry, key));
    out[no++] = jcc32(t, 0x5);
    op_rm(t, 1, 0x8b, RCX, RCX, (int32_t)offsetof(struct jc_entry, b));
    op_rm(t, 1, 0x83, 7, RCX, (int32_t)offsetof(struct block, code));   /* translated? */
    e1(t, 0);
    out[no++] = jcc32(t, 0x4);
    /* the TLB entry of la: the page still executable, at the block's frame */
    emit_tlb_slot(t, RSI, RAX);
    op_rr(t, 1, 0x81, 4, RAX);         /* and rax, ~0xfff */
    e4(t, 0xfffff000u);
    op_rm(t, 1, 0x3b, RAX, RSI, TLB_OFF(vx));
    out[no++] = jcc32(t, 0x5);
    op_rm(t, 1, 0x8b, RAX, RCX, (int32_t)offsetof(struct block, pa));
    op_rr(t, 1, 0x81, 4, RAX);
    e4(t, 0xfffff000u);
    op_rm(t, 1, 0x3b, RAX, RSI, TLB_OFF(pa));
    out[no++] = jcc32(t, 0x5);
    op_rm(t, 0, 0x8b, RDX, RCX, (int32_t)offsetof(struct block, pidx));
    op_rm(t, 1, 0x8b, RSI, RBX, OFF(vm));
    op_rm(t, 1, 0x8b, RSI, RSI, (int32_t)offsetof(struct emu_vm, gen));
    e1(t, 0x8b);                       /* mov esi, [rsi + rdx*4] */
    e1(t, 0x34);
    e1(t, 0x96);
    op_rm(t, 0, 0x3b, RSI, RCX, (int32_t)offsetof(struct block, gen));
    out[no++] = jcc32(t, 0x5);
    op_rm(t, 0, 0xff, 4, RCX, (int32_t)offsetof(struct block, code));   /* jmp [rcx+code] */
    for (int k = 0; k < no; k++)
        patch(t, out[k], t->p);
    leave(t);
}

/* The branch ending a block: RET, JMP and CALL through r/m, leaving through emit_ind; CALL, JMP
 * and Jcc with relative targets, leaving through emit_exit (Jcc's condition from emit_cond,
 * both ways). */
static bool emit_branch(struct tx *t, const struct insn *i)
{
    int64_t next = t->pend + i->len, taken = next + (int64_t)i->imm;
    if (taken != (int32_t)taken)
        return false;
    unsigned cc = i->op & 0xf;
    int sz = i->osz;
    if (t->ncold > COLD_MAX - 3)
        return false;   /* a branch takes up to three cold paths */
    if (i->op == 0xc3) {   /* RET: the return address from the stack, no link */
        if (sz != t->sw)
            return false;
        emit_sp_lin(t, 0);
        emit_load(t, i, sz);
        if (sz == 8)
            emit_target_check(t);
        add_sp(t, sz);
        st(t, 1, OFF(rip), RAX);
        flush_regs(t);
        emit_ind(t);
        t->pend = 0;
        return true;
    }
    if (i->op == 0xff) {   /* JMP r/m, CALL r/m */
        if ((i->sub != 2 && i->sub != 4) || (sz != 8 && sz != 4) ||
            (i->sub == 2 && sz != t->sw) || (i->mod != 3 && !ea_ok(i, t->pend)))
            return false;
        if (i->mod == 3) {
            ldg(t, sz == 8, RAX, i->rm);
        } else {
            emit_ea(t, i);
            emit_load(t, i, sz);
        }
        if (sz == 8)
            emit_target_check(t);
        if (i->sub == 2) {   /* push the return address; the target waits in r9 */
            mov_rr(t, 1, R9, RAX);
            ld(t, 1, R8, OFF(rip));
            op_rm(t, 1, 0x8d, R8, R8, (int32_t)next);
            emit_sp_lin(t, -sz);
            struct cold *k = emit_store(t, i, sz);
            k->sp_adj = -sz;
            k->ind = true;
            add_sp(t, -sz);
            mov_rr(t, 1, RAX, R9);
        }
        st(t, 1, OFF(rip), RAX);
        flush_regs(t);
        emit_ind(t);
        t->pend = 0;
        return true;
    }
    if (i->op == 0xe8) {   /* CALL: push the return address */
        if (sz != t->sw)
            return false;
        ld(t, 1, R8, OFF(rip));
        op_rm(t, 1, 0x8d, R8, R8, (int32_t)next);
        emit_sp_lin(t, -sz);
        struct cold *k = emit_store(t, i, sz);
        k->sp_adj = -sz;
        k->rip_adv = taken - t->pend;
        add_sp(t, -sz);
    }
    if (i->op == 0xe9 || i->op == 0xeb || i->op == 0xe8) {
        emit_exit(t, taken, sz);
        t->pend = 0;
        return true;
    }
    cc = emit_cond(t, cc);
    flush_regs(t);   /* MOVs: the flags stay; both ways out see the registers written back */
    uint8_t *jt = jcc32(t, cc);
    emit_exit(t, next, 0);
    patch(t, jt, t->p);
    emit_exit(t, taken, sz);
    t->pend = 0;
    return true;
}

/* The code buffer is one memfd mapped twice: a read-write view the translator writes through
 * and a read-execute view the host runs, so no page is ever writable and executable at once
 * (a guest that found a way to make qkvm write where it chose could not also run it). Both
 * views are made here, while the machine is created, before any thread enters its sandbox. */
static int jit_map(struct cpu *c)
{
    int fd = memfd_create("qkvm-jit", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, JIT_SIZE) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    void *rw = mmap(NULL, JIT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    void *rx = rw == MAP_FAILED ? MAP_FAILED
             : mmap(NULL, JIT_SIZE, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_NORESERVE, fd, 0);
    int r = rx == MAP_FAILED ? -errno : 0;
    close(fd);
    if (r < 0) {
        if (rw != MAP_FAILED)
            munmap(rw, JIT_SIZE);
        return r;
    }
    c->jit = rx;
    c->jit_rw = rw;
    return 0;
}

int jit_init(struct cpu *c)
{
    c->jit = c->jit_rw = NULL;
    int r = jit_map(c);
    if (r < 0) {
        /* no memfd or no executable memory here: the interpreter runs everything */
        log_warn("tcg: no translator (code buffer: %s); interpreting", strerror(-r));
        return 0;
    }
    static const uint8_t tramp[] = {
        /* enter(c, code): save the callee-saved registers, keep the stack 16-byte aligned */
        0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57,   /* push rbx ... r15 */
        0x48, 0x83, 0xec, 0x08,                                       /* sub rsp, 8 */
        0x48, 0x89, 0xfb,                                             /* mov rbx, rdi */
        0xff, 0xe6,                                                   /* jmp rsi */
        0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc,
        /* exit, at 32 */
        0x48, 0x83, 0xc4, 0x08,                                       /* add rsp, 8 */
        0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b,   /* pop r15 ... rbx */
        0xc3,
    };
    memcpy(c->jit_rw, tramp, sizeof(tramp));
    c->jit_size = JIT_SIZE;
    c->jit_used = JIT_TRAMP;
    return 0;
}

void jit_run(struct cpu *c, struct block *b)
{
    ((void (*)(struct cpu *, void *))(void *)c->jit)(c, b->code);
}

void jit_link(struct cpu *c, uint8_t *from, const struct block *to)
{
    /* from is in the executable view; the bytes are written through the other one. Only this
     * CPU's thread runs or writes its code buffer, and it is not running it now. */
    int32_t d = (int32_t)((const uint8_t *)to->code - (from + 4));
    memcpy(c->jit_rw + (from - c->jit), &d, 4);
}

void jit_free(struct cpu *c)
{
    if (c->jit) {
        munmap(c->jit, c->jit_size);
        munmap(c->jit_rw, c->jit_size);
    }
    c->jit = c->jit_rw = NULL;
}

void jit_reset(struct cpu *c)
{
    c->jit_used = JIT_TRAMP;
}

/* A block whose one instruction crosses into the next page (block.c) runs only while that page
 * is still mapped executable at the frame the instruction's tail came from, unwritten since:
 * the links and the jump cache that lead here check the block's first page only. Otherwise it
 * leaves at once, nothing changed, for the run loop, whose lookup checks both pages (walking
 * the second again, or decoding afresh). 64-bit code only, where RIP is the linear address. */
static void emit_next_page_check(struct tx *t)
{
    const struct block *b = t->b;
    uint8_t *out[3];
    ld(t, 1, RAX, OFF(rip));
    op_rr(t, 1, 0x81, 1, RAX);          /* or rax, 0xfff */
    e4(t, 0xfff);
    op_rr(t, 1, 0x83, 0, RAX);          /* add rax, 1: the next page */
    e1(t, 1);
    emit_tlb_slot(t, RSI, RAX);
    op_rm(t, 1, 0x3b, RAX, RSI, TLB_OFF(vx));
    out[0] = jcc32(t, 0x5);
    movi(t, RAX, b->pa2);
    op_rm(t, 1, 0x3b, RAX, RSI, TLB_OFF(pa));
    out[1] = jcc32(t, 0x5);
    op_rm(t, 1, 0x8b, RSI, RBX, OFF(vm));
    op_rm(t, 1, 0x8b, RSI, RSI, (int32_t)offsetof(struct emu_vm, gen));
    op_rm(t, 0, 0x81, 7, RSI, (int32_t)(b->pidx2 * 4));   /* cmp dword [rsi + pidx2 * 4], gen2 */
    e4(t, b->gen2);
    out[2] = jcc32(t, 0x5);
    for (int k = 0; k < 3; k++)
        patch(t, out[k], t->exit);
}

/* The guest registers a block uses most, for the host registers (a hint: every access goes
 * through ldg/stg, which know where a register is). */
static void alloc_regs(struct tx *t, const struct block *b)
{
    static const int8_t hosts[NHOST] = { RBP, R12, R13, R14, R15 };
    int uses[16] = { 0 };
    for (int k = 0; k < b->n; k++) {
        const struct insn *i = &b->ins[k];
        if (i->mod == 3 || i->op < 0x100) {
            uses[i->reg & 15]++;
            uses[i->rm & 15]++;
        }
        if (i->mod != 3 && i->base < 16)
            uses[i->base]++;
        if (i->mod != 3 && i->index < 16)
            uses[i->index]++;
        if ((i->op >= 0x50 && i->op <= 0x5f) || i->op == 0xe8 || i->op == 0xc3)
            uses[R_SP] += 2;
    }
    memset(t->host_of, -1, sizeof(t->host_of));
    t->alloc = t->dirty = 0;
    for (int n = 0; n < NHOST; n++) {
        int best = -1;
        for (int g = 0; g < 16; g++)
            if (t->host_of[g] < 0 && uses[g] >= 2 && (best < 0 || uses[g] > uses[best]))
                best = g;
        if (best < 0)
            break;
        t->host_of[best] = hosts[n];
        t->alloc |= (uint16_t)(1u << best);
    }
}

/* -perfmap: one line in perf's JIT map format ("START SIZE NAME", hex) for the block at code,
 * its executable address. The name holds what finds the block again: its guest-physical
 * address, its mode (16/32/64-bit, "s32" a 32-bit stack) and its instruction count. A failed
 * write loses one name, which is no reason to stop the guest. */
static void jit_perfmap_note(struct cpu *c, const struct block *b, const uint8_t *code, size_t len)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "%lx %zx qkvm-tcg:pa=0x%llx:m%u%s:n%u\n",
                     (unsigned long)(uintptr_t)code, len, (unsigned long long)b->pa,
                     (unsigned)(b->mode & ~BLOCK_SS32) * 8, (b->mode & BLOCK_SS32) ? "s32" : "",
                     (unsigned)b->n);
    if (n > 0 && (size_t)n < sizeof(line) && write(c->vm->perfmap_fd, line, (size_t)n) < 0) {
        /* nothing to do: see above */
    }
}

/* Whether the guest code at offset off of the block's page sets every arithmetic flag before
 * anything reads them (decoded again here: at most 16 instructions, none that ends a block,
 * all in the page). That code is in the block's page, so a write to it makes this block stale
 * too: what is decided here holds as long as the translation runs. */
static bool flags_dead_at(struct cpu *c, const struct block *b, int64_t off)
{
    if (off < 0 || off >= 0x1000)
        return false;
    const uint8_t *page = phys_ptr(c->vm, b->pa & ~0xfffull, 0x1000, NULL);
    if (!page)
        return false;
    for (int n = 0; n < 16 && off < 0x1000; n++) {
        struct insn i;
        int ends = 0;
        int len = decode_insn(page + off, (int)(0x1000 - off), b->mode & ~BLOCK_SS32, &i, &ends);
        if (len <= 0)
            return false;
        int fc = flags_class(&i);
        if (fc == FL_KILL)
            return true;
        if (fc == FL_READ || ends)
            return false;
        off += len;
    }
    return false;
}

/* Whether the flags are live where the block leaves: they are not when every successor the
 * block's last instruction names (Jcc's two, JMP's and CALL's target) sets them before reading
 * them. 64-bit code only, where no target wraps; RET and indirect branches count as live. An
 * interrupt taken between the two blocks then saves stale arithmetic flags in its frame, as
 * one inside a block may (see the top of the file): the code it returns to sets them anyway. */
static bool flags_live_out(struct cpu *c, const struct block *b)
{
    const struct insn *e = &b->ins[b->n - 1];
    if ((b->mode & ~BLOCK_SS32) != 8 || e->lock || e->rep)
        return true;
    int64_t end = (int64_t)(b->pa & 0xfff) + b->bytes, to = end + (int64_t)e->imm;
    if ((e->op >= 0x70 && e->op <= 0x7f) || (e->op >= 0x180 && e->op <= 0x18f))
        return !flags_dead_at(c, b, end) || !flags_dead_at(c, b, to);
    if (e->op == 0xe8 || e->op == 0xe9 || e->op == 0xeb)
        return !flags_dead_at(c, b, to);
    return true;
}

/* Translates b into t at the code buffer's free space. elide: per instruction, flags that need
 * not be stored (NULL: store them all); t->broken says the elision did not hold. */
static void emit_block(struct cpu *c, struct tx *t, struct block *b, size_t space,
                       const bool *live, const bool *elide)
{
    t->p = c->jit_rw + c->jit_used;
    t->end = t->p + space;
    t->over = false;
    t->b = b;
    t->pend = 0;
    t->ripoff = 0;
    t->ncold = 0;
    t->nccall = 0;
    t->cc = CC_UNKNOWN;
    t->exit = c->jit_rw + 32;
    t->mode = (int)(b->mode & ~BLOCK_SS32);
    t->sw = t->mode == 8 ? 8 : (b->mode & BLOCK_SS32) ? 4 : 0;
    t->unstored = t->broken = false;
    if (block_crosses(b))
        emit_next_page_check(t);
    /* The budget (and icount), here rather than by whoever enters: the run loop, a link and
     * emit_ind alike. sub qword [rbx+chain_left], n; jle: nothing left, or the top bit set
     * (the signed result is at most 0 either way). */
    op_rm(t, 1, 0x83, 5, RBX, OFF(chain_left));
    e1(t, b->n);
    uint8_t *spent = jcc32(t, 0xe);
    alloc_regs(t, b);
    reload_regs(t);
    t->hf = false;
    for (int k = 0; k < b->n; k++) {
        const struct insn *i = &b->ins[k];
        bool last = k == b->n - 1;
        t->hf_in = t->hf;   /* nothing is emitted between two instructions */
        t->hf = false;
        if (!t->elide)
            t->unstored = false;   /* the reader of the flags not stored came and went */
        t->elide = elide && elide[k];
        if (last && !i->lock && !i->rep && branch_op(i->op) && emit_branch(t, i))
            break;
        if (t->ncold < COLD_MAX - 2 && emit_inline(t, i, live[k])) {
            if (keeps_hf(i))
                t->hf = t->hf_in;
            t->pend += i->len;
            if (last)
                emit_exit(t, t->pend, 0);
        } else {
            emit_call(t, i, last);
            if (last)
                leave(t);
        }
    }
    t->elide = false;
    for (int k = 0; k < t->ncold; k++)
        emit_cold(t, &t->cold[k]);
    for (int k = 0; k < t->nccall; k++)
        emit_ccall(t, &t->ccall[k]);
    /* the budget is spent: give the block's count back (it did not run), leave with RIP at
     * its start */
    patch(t, spent, t->p);
    addmi(t, OFF(chain_left), b->n);
    leave(t);
}

void jit_compile(struct cpu *c, struct block *b)
{
    if (!c->jit)
        return;
    size_t space = c->vm->jit_block_max ? c->vm->jit_block_max : JIT_BLOCK_MAX;
    if (c->jit_size - c->jit_used < space) {
        block_cache_flush(c);
        return;
    }
    /* flags liveness, backwards from the block's end where everything is live */
    bool live[BLOCK_MAX_INSNS];
    bool l = flags_live_out(c, b);
    for (int k = b->n - 1; k >= 0; k--) {
        live[k] = l;
        int fc = flags_class(&b->ins[k]);
        if (fc == FL_KILL)
            l = false;
        else if (fc == FL_READ)
            l = true;
    }

    /* elide[k]: instruction k's flags are read only by k+1, through the host's flags */
    bool elide[BLOCK_MAX_INSNS];
    for (int k = 0; k < b->n; k++)
        elide[k] = live[k] && k + 1 < b->n && !live[k + 1] && hf_reader(&b->ins[k + 1]);

    if (block_crosses(b) && (b->mode & ~BLOCK_SS32) != 8)
        return;   /* the interpreter's, as the run loop should have known */
    static __thread struct tx t;
    emit_block(c, &t, b, space, live, elide);
    if (t.broken)   /* something read flags left unstored: again, storing them all */
        emit_block(c, &t, b, space, live, NULL);
    uint8_t *start = c->jit_rw + c->jit_used;
    if (t.over) {
        /* it did not fit its space: it stays with the interpreter. Counting its runs afresh
         * costs one abandoned translation per jit_threshold runs, which only a bound that is
         * wrong (or set small by a test) ever causes. */
        c->jit_refused++;
        b->hits = 0;
        return;
    }
    c->jit_used += ((size_t)(t.p - start) + 15) & ~(size_t)15;
    c->jit_blocks++;
    b->code = c->jit + (start - c->jit_rw);   /* run through the executable view */
    if (c->vm->perfmap_fd >= 0)
        jit_perfmap_note(c, b, b->code, (size_t)(t.p - start));
}

#else

int jit_init(struct cpu *c) { c->jit = NULL; return 0; }
void jit_run(struct cpu *c, struct block *b) { (void)c; (void)b; }
void jit_link(struct cpu *c, uint8_t *from, const struct block *to) { (void)c; (void)from; (void)to; }
void jit_free(struct cpu *c) { (void)c; }
void jit_reset(struct cpu *c) { (void)c; }
void jit_compile(struct cpu *c, struct block *b) { (void)c; (void)b; }

#endif
