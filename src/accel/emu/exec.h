/* Instruction handlers, one per opcode (or group), shared by the decoder's tables and the
 * exec_*.c files. Each runs with c->rip already past the instruction. */
#ifndef QKVM_ACCEL_EMU_EXEC_H
#define QKVM_ACCEL_EMU_EXEC_H
#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"

#define H(name) void name(struct cpu *c, const struct insn *i)

/* Effective linear address of a memory operand. */
static inline uint64_t ea_off(struct cpu *c, const struct insn *i)
{
    uint64_t a = (uint64_t)(int64_t)i->disp;
    if (i->base != REG_NONE)
        a += i->base == REG_RIP ? c->rip : c->r[i->base];
    if (i->index != REG_NONE)
        a += c->r[i->index] << i->scale;
    if (i->asz != 8)
        a &= size_mask(i->asz);
    return a;
}

static inline uint64_t ea(struct cpu *c, const struct insn *i)
{
    uint64_t off = ea_off(c, i);
    /* the operand's first byte only: its size is the handler's to know, and a check of one
     * byte never faults where hardware would not */
    if (unlikely(c->segchk))
        seg_check_limit(c, i->seg, off, 1);
    return (c->segbase[i->seg] + off) & c->lin_mask;
}

static inline uint64_t rm_read(struct cpu *c, const struct insn *i, int sz)
{
    if (i->mod == 3)
        return reg_get(c, i->rm, sz);
    return mem_rd(c, ea(c, i), sz);
}

static inline void rm_write(struct cpu *c, const struct insn *i, int sz, uint64_t v)
{
    if (i->mod == 3)
        reg_set(c, i->rm, sz, v);
    else
        mem_wr(c, ea(c, i), sz, v);
}

/* exec_pcid.c */
H(h_invpcid);
/* exec_alu.c */
H(h_alu_rm_r); H(h_alu_r_rm); H(h_alu_a_i); H(h_alu_rm_i); H(h_test_rm_r); H(h_test_a_i);
H(h_incdec_r); H(h_grp3); H(h_grp4); H(h_imul_rmi); H(h_imul_r_rm); H(h_cbw); H(h_cwd);
H(h_shift_i); H(h_shift_1); H(h_shift_cl); H(h_shld_i); H(h_shld_cl); H(h_shrd_i); H(h_shrd_cl);
H(h_bt_rm_r); H(h_bt_rm_i); H(h_bsf); H(h_bsr); H(h_popcnt); H(h_bswap);
H(h_cmpxchg); H(h_xadd); H(h_grp9); H(h_xchg_rm_r); H(h_xchg_a_r);
H(h_daa); H(h_das); H(h_aaa); H(h_aas); H(h_aam); H(h_aad); H(h_salc);
/* exec_mov.c */
H(h_mov_rm_r); H(h_mov_r_rm); H(h_mov_rm_i); H(h_mov_r_i); H(h_mov_a_moffs); H(h_mov_moffs_a);
H(h_lea); H(h_movzx); H(h_movsx); H(h_movsxd); H(h_cmov); H(h_setcc); H(h_xlat); H(h_movnti);
H(h_push_r); H(h_pop_r); H(h_push_i); H(h_pop_rm); H(h_pusha); H(h_popa); H(h_pushf); H(h_popf);
H(h_lahf); H(h_sahf); H(h_enter); H(h_leave); H(h_mov_rm_sreg); H(h_mov_sreg_rm);
H(h_push_seg); H(h_pop_seg); H(h_lxs);
H(h_clc); H(h_stc); H(h_cmc); H(h_cld); H(h_std); H(h_nop);
/* exec_ctl.c */
H(h_jcc); H(h_jmp_rel); H(h_call_rel); H(h_ret); H(h_loop); H(h_jcxz); H(h_grp5);
H(h_jmpf_imm); H(h_callf_imm); H(h_retf); H(h_int); H(h_int3); H(h_into); H(h_int1); H(h_iret);
/* exec_str.c */
H(h_movs); H(h_cmps); H(h_stos); H(h_lods); H(h_scas); H(h_ins); H(h_outs);
H(h_in_i); H(h_out_i); H(h_in_dx); H(h_out_dx);
/* exec_sys.c */
H(h_hlt); H(h_cli); H(h_sti); H(h_grp6); H(h_grp7); H(h_lar); H(h_lsl); H(h_clts);
H(h_mov_r_cr); H(h_mov_cr_r); H(h_mov_r_dr); H(h_mov_dr_r); H(h_wrmsr); H(h_rdmsr); H(h_rdtsc);
H(h_rdpmc); H(h_cpuid); H(h_syscall); H(h_sysret); H(h_sysenter); H(h_sysexit); H(h_grp15);
H(h_wbinvd); H(h_fwait);
/* exec_fpu.c */
H(h_fpu);
/* exec_sse.c */
H(h_sse);
/* The mandatory prefix of an SSE instruction, as h_sse hands it on. */
enum { P_NONE, P_66, P_F3, P_F2 };
union xmm;
/* Operands of SSE/MMX instructions (exec_sse.c): mmx picks the MMX register file; n bytes of
 * memory, #GP when align and the address is not n-aligned. */
void sse_mm_get(struct cpu *c, int r, union xmm *v);
void sse_mm_set(struct cpu *c, int r, const union xmm *v);
void sse_src_get(struct cpu *c, const struct insn *i, bool mmx, int n, bool align, union xmm *v);
void sse_mem_store(struct cpu *c, const struct insn *i, int n, bool align, const union xmm *v);
void sse_dst_set(struct cpu *c, const struct insn *i, bool mmx, const union xmm *v);
void sse_dst_get(struct cpu *c, const struct insn *i, bool mmx, union xmm *v);
/* exec_sse4.c: SSE3 in the 0F map (true when op/prefix was one of them and it ran), and the
 * 0F 38 / 0F 3A maps (SSSE3, SSE4.1, SSE4.2; false for an undefined opcode/prefix). */
bool sse3_exec(struct cpu *c, const struct insn *i, int op, int p);
bool sse4_exec(struct cpu *c, const struct insn *i, int p);
/* The legacy-SSE meaning of i (0F, 0F 38 or 0F 3A map in i->op's second digit, any of the
 * 0x1xx-0x3xx or VEX 0x4xx-0x6xx numbers): false for an undefined opcode/prefix. */
bool sse_dispatch(struct cpu *c, const struct insn *i, int p);
/* exec_aes.c: AES-NI (0F38 DB-DF, 0F3A DF) and PCLMULQDQ (0F3A 44); false when the model has
 * no such feature (#UD) */
bool aes_exec(struct cpu *c, const struct insn *i, int p);
H(h_crc32_movbe);
/* exec_bmi.c: VEX BMI1/BMI2, and TZCNT (F3 0F BC; BSF without F3) */
H(h_bmi); H(h_tzcnt);
/* exec_avx.c: AVX, AVX2, FMA3, F16C (VEX maps 0F, 0F38, 0F3A) */
H(h_avx);
/* exec_fast.c: swaps in a specialized handler for common forms */
void exec_specialize(struct insn *i, uint32_t mode);

#endif

/* Compare-and-swap of sz bytes at a host pointer into guest RAM: LOCK-prefixed instructions are
 * host atomics, so other vCPU threads see them whole. */
static inline bool cas_sz(void *p, int sz, uint64_t *old, uint64_t nv)
{
    switch (sz) {
    case 1: { uint8_t o = (uint8_t)*old; bool r = __atomic_compare_exchange_n((uint8_t *)p, &o, (uint8_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return r; }
    case 2: { uint16_t o = (uint16_t)*old; bool r = __atomic_compare_exchange_n((uint16_t *)p, &o, (uint16_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return r; }
    case 4: { uint32_t o = (uint32_t)*old; bool r = __atomic_compare_exchange_n((uint32_t *)p, &o, (uint32_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return r; }
    default: return __atomic_compare_exchange_n((uint64_t *)p, old, nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    }
}

static inline uint64_t ld_sz(const void *p, int sz)
{
    switch (sz) {
    case 1: return __atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
    case 2: return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
    case 4: return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
    default: return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
    }
}

/* Read-modify-write operations shared by the ALU, bit and exchange instructions. */
enum { RMW_ADD, RMW_OR, RMW_ADC, RMW_SBB, RMW_AND, RMW_SUB, RMW_XOR, RMW_CMP, RMW_NOT, RMW_NEG,
       RMW_INC, RMW_DEC, RMW_BTS, RMW_BTR, RMW_BTC, RMW_XADD, RMW_XCHG };
/* Applies kind to the r/m operand (register, memory, or memory under LOCK) with operand b;
 * returns the old value. */
uint64_t rmw_rm(struct cpu *c, const struct insn *i, int kind, int sz, uint64_t b);
/* Same on a memory linear address. */
uint64_t rmw_mem(struct cpu *c, uint64_t la, bool lock, int kind, int sz, uint64_t b);
