/* The emulated CPU's state and the helpers every exec_*.c file shares. Internal to src/accel/emu/. */
#ifndef QKVM_ACCEL_EMU_CPU_H
#define QKVM_ACCEL_EMU_CPU_H
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vm/cpu_model.h"
#include "accel/emu/emu.h"
#include "vm/cpu_state.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

struct insn;
struct block;
struct lapic;

/* RFLAGS bits */
#define F_CF 0x1u
#define F_PF 0x4u
#define F_AF 0x10u
#define F_ZF 0x40u
#define F_SF 0x80u
#define F_TF 0x100u
#define F_IF 0x200u
#define F_DF 0x400u
#define F_OF 0x800u
#define F_IOPL 0x3000u
#define F_NT 0x4000u
#define F_RF 0x10000u
#define F_VM 0x20000u
#define F_AC 0x40000u
#define F_ID 0x200000u
#define F_ARITH (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)

#define CR0_PE 0x1u
#define CR0_MP 0x2u
#define CR0_EM 0x4u
#define CR0_TS 0x8u
#define CR0_WP 0x10000u
#define CR0_PG 0x80000000u
#define CR4_PSE 0x10u
#define CR4_PAE 0x20u
#define CR4_PGE 0x80u
#define CR4_OSFXSR 0x200u
#define CR4_OSXMMEXCPT 0x400u
#define CR4_UMIP 0x800u
#define CR4_PCIDE 0x20000u
#define CR4_OSXSAVE 0x40000u
#define CR4_SMEP 0x100000u
#define CR4_SMAP 0x200000u
#define CR4_PKE 0x400000u
#define CR4_PKS 0x1000000u
/* XCR0 state components this CPU knows: x87, SSE, AVX (the YMM upper halves) */
#define XCR0_X87 0x1u
#define XCR0_SSE 0x2u
#define XCR0_AVX 0x4u
#define XCR0_PKRU 0x200u
#define EFER_SCE 0x1u
#define EFER_LME 0x100u
#define EFER_LMA 0x400u
#define EFER_NXE 0x800u

/* Exception vectors */
enum { EXC_DE = 0, EXC_DB = 1, EXC_NMI = 2, EXC_BP = 3, EXC_OF = 4, EXC_BR = 5, EXC_UD = 6,
       EXC_NM = 7, EXC_DF = 8, EXC_TS = 10, EXC_NP = 11, EXC_SS = 12, EXC_GP = 13, EXC_PF = 14,
       EXC_MF = 16, EXC_AC = 17, EXC_XM = 19 };

/* Lazy flags: cc_op says how the arithmetic flags follow from cc_res/cc_src/cc_aux. The low two
 * bits are log2 of the operand size. */
enum {
    CC_EFLAGS = 0,   /* cc_src holds the flags themselves */
    CC_ADD = 1 << 2, CC_ADC = 2 << 2, CC_SUB = 3 << 2, CC_SBB = 4 << 2, CC_LOGIC = 5 << 2,
    CC_INC = 6 << 2, CC_DEC = 7 << 2, CC_SHL = 8 << 2, CC_SHR = 9 << 2, CC_SAR = 10 << 2,
    CC_MUL = 11 << 2,
    CC_ROL = 12 << 2, CC_ROR = 13 << 2,   /* CF/OF from cc_res, the rest from the cc_p* state */
};

/* Physical address width (CPUID 0x80000008): page-table bits from here to 51 are reserved. */
#define EMU_PHYS_BITS 40

/* Software TLB: direct-mapped, tagged by the virtual page; a tag of 1 never matches. There is
 * one per access class, each holding the permissions of that class, so that SMAP, SMEP and the
 * protection keys cost nothing on a hit: supervisor, user (CPL 3), and supervisor with
 * EFLAGS.AC set under CR4.SMAP (user pages readable and writable). */
enum { TLB_SUP = 0, TLB_USER = 1, TLB_SUP_AC = 2, TLB_SETS = 3 };
/* 4096 slots a set: qsort's 8 MiB array (2048 pages) and a kernel's working set fit, where 1024
 * made every pass over the array a walk per page. A flush costs what was filled (the fill logs
 * below), not the size. */
#define TLB_BITS 12
#define TLB_SIZE (1u << TLB_BITS)
#define TLB_VICTIM 8
/* Slots filled since the last flush, per set and per kind (0: non-global, 1: global); past
 * TLB_LOG fills a flush scans the whole set, which then costs at most TLB_SIZE / TLB_LOG slots
 * for each fill that came before it. */
#define TLB_LOG 512
/* 64 bytes, so that a slot's offset is (la >> 6) & mask: the translated lookup needs no
 * multiply, and no entry straddles two cache lines. */
struct __attribute__((aligned(64))) tlb_entry {
    uint64_t vr, vw, vx;   /* page address if readable / writable / executable, else 1 */
    uintptr_t add;         /* host pointer = add + linear address */
    uint64_t pa;           /* guest-physical page */
    uint64_t lmask;        /* offset mask of the guest page (large pages, for INVLPG) */
    uint32_t pidx;         /* index of the RAM page (emu_vm.code) */
    bool global;
};
_Static_assert(sizeof(struct tlb_entry) == 64, "the translated TLB lookup shifts by 6");
#define TLB_SLOT_MASK ((TLB_SIZE - 1) << 6)

/* The slot of la in a set */
static inline struct tlb_entry *tlb_slot(struct tlb_entry *set, uint64_t la)
{
    return (struct tlb_entry *)((uint8_t *)set + ((la >> 6) & TLB_SLOT_MASK));
}

/* Paging-structure cache (4-level paging): the page table (PT) that maps a 2 MiB region, or the
 * page directory (PD) that maps a 1 GiB one, with the rights of the entries above it, so that a
 * walk reads one or two levels instead of four. Empty on every flush, CR3 write and INVLPG,
 * as the SDM (vol. 3, 4.10.4) lets a CPU's own paging-structure caches be. */
#define PWC_BITS 5
struct pwc_entry {
    uint64_t tag;          /* la >> 21 (PT) or la >> 30 (PD), or ~0: empty */
    uint64_t table;        /* guest-physical address of the table */
    bool w, u, x;          /* the rights of the entries above it */
};

/* Memory regions, copied from the machine for lookups without going through it. A device's
 * region (machine_map_hostmem) changes gpa and size while CPUs run: read size (acquire) first,
 * 0 is not mapped; its page indexes cover its capacity wherever it is. */
struct emu_ram {
    uint64_t gpa, size;
    uint8_t *host;
    uint32_t pidx0;        /* page index of the region's first page */
    bool readonly;
    uint64_t capacity;
    _Atomic uint64_t *dirty;   /* the machine's bitmap of written pages, or NULL: not tracked */
};

#define EMU_PAGE_CODE  1
#define EMU_PAGE_TRACK 2
#define EMU_MAX_RAM 12     /* MACHINE_MAX_MEM */

struct emu_vm {
    struct machine *m;
    struct emu_ram ram[EMU_MAX_RAM];
    int nram, nsrc;      /* regions here, and machine regions they were copied from */
    /* Bumped when a region moves or its dirty tracking restarts: each CPU empties its TLB at its
     * next block once its map_gen differs, so no entry keeps reaching the old place. */
    _Atomic uint32_t map_gen;
    uint64_t tsc_base;   /* host ns at which every CPU's TSC read 0 */
    uint32_t npages;
    /* Per RAM page: EMU_PAGE_CODE when some block was decoded from it (a write bumps gen[] so
     * those blocks fail their check the next time they are looked up), EMU_PAGE_TRACK while
     * migration waits for the page's next write (emu_vm_track). Every store path tests the byte
     * for nonzero and calls mem_smc, so tracking costs nothing until it is armed. */
    _Atomic uint8_t *code;
    _Atomic uint32_t *gen;
    /* A block is translated to host code after this many interpreted runs; -1 never. */
    int jit_threshold;
    size_t jit_block_max;     /* code space per translated block, 0: jit.c's bound (tests) */
    /* -perfmap: /tmp/perf-PID.map, opened O_APPEND so each vCPU thread's one write() per block
     * lands whole without a lock; -1 without */
    int perfmap_fd;
    struct cpu_model model;   /* what CPUID reports (-cpu) */
};

union xmm {
    uint8_t b[16];
    int8_t sb[16];
    uint16_t w[8];
    int16_t sw[8];
    uint32_t d[4];
    int32_t sd[4];
    uint64_t q[2];
    int64_t sq[2];
    float f[4];
    double fd[2];
};

struct fpu {
    long double st[8];     /* physical registers, indexed (top + i) & 7 */
    uint16_t fcw, fsw, ftw; /* ftw: one bit per physical register, 1 = valid */
    uint8_t top;
    uint16_t fop;
    uint64_t fip, fdp;
};

#define BLOCK_HASH_BITS 16
/* 16K entries (384 KiB): with 4K, a kernel-heavy guest (fork, exec, page faults: the kernel's
 * paths and the programs' between them) missed a third of its lookups on conflicts, each then a
 * walk of the block hash; 64K saved a quarter of the rest for four times the memory. */
#define JMP_CACHE_BITS 14

/* Linear address -> block, valid while the TLB still maps the page to the block's frame and the
 * page is unchanged: it saves the translation and the hash walk on every block. */
struct jc_entry {
    uint64_t la;
    uint64_t key;          /* decode mode | CPL << 8 */
    struct block *b;
};

struct cpu {
    uint64_t r[16];
    uint64_t rip;
    uint64_t cc_res, cc_src, cc_aux;
    uint32_t cc_op;
    uint32_t cc_pop;       /* the state a rotate left SF/ZF/PF/AF in */
    uint64_t cc_pres, cc_psrc, cc_paux;
    uint32_t eflags;       /* everything but the arithmetic flags, which live in cc_* */
    /* Guest instructions translated code may still run before it comes back to the run loop
     * (cpu.c's CHAIN_BUDGET at each entry): each translated block subtracts its count as it
     * starts and leaves when nothing is left, so the run loop also counts icount from it. Any
     * thread sets bit 63 (emu_cpu_irq_notify, emu_cpu_kick) to make the next block leave; the
     * low 32 bits, signed, stay the count. Here, near rip and the registers: at offset
     * 0x10ac80, whose low ten bits are rip's, every block's subtraction waited on the store
     * to rip before it (a false dependence) and xz ran half as fast. */
    _Atomic uint64_t chain_left;

    /* Segment bases as addressing uses them: 0 for ES/CS/SS/DS in 64-bit mode. */
    uint64_t segbase[SEG_COUNT];
    struct cpu_segment seg[SEG_COUNT];
    struct cpu_table gdt, idt;
    uint64_t cr0, cr2, cr3, cr4, efer;
    uint64_t dr[8];
    int cpl;
    bool lma, code64;      /* long mode active; CS.L in long mode */
    uint8_t csz;           /* default operand size of the code segment: 2 or 4 */
    uint8_t ssz;           /* stack address size: 2, 4 or 8 */
    uint64_t lin_mask;     /* linear addresses wrap at 4 GiB outside long mode */
    /* DS, ES or SS of protected or compatibility mode is not flat (limit below
     * 4 GiB, or expand-down): memory operands and the stack are limit-checked, and translated
     * code, which does not check, is not run. Off in 64-bit and real mode. */
    bool segchk;
    bool inhibit_irq;      /* one instruction after STI / MOV SS */
    bool nmi_blocked;      /* from taking an NMI to the next IRET (SDM 6.7.1) */

    /* MSRs */
    uint64_t star, lstar, cstar, sfmask, kernel_gs, tsc_aux, pat, misc_enable;
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
    uint64_t mtrr_def, mtrr_fixed[11], mtrr_var[16];
    uint64_t tsc_offset;   /* guest TSC = host ns + tsc_offset */
    uint64_t apic_base;

    struct fpu fpu;
    /* 16 and 17 are scratch: the VEX forms (exec_avx.c) run the SSE code on them, a 128-bit
     * lane at a time, so that it never sees the guest's destination before it is complete */
    union xmm xmm[18];
    union xmm ymmh[16];    /* bits 255:128 of YMM0-15 (XCR0 bit 2) */
    uint32_t mxcsr;
    uint64_t xcr0;         /* XSETBV register 0: always has x87 */

    /* TLB: one for supervisor accesses, one for user (CPL 3) accesses. */
    struct tlb_entry tlb[TLB_SETS][TLB_SIZE];
    struct tlb_entry *tlbc;  /* the current CPL's (and EFLAGS.AC's, under SMAP) */
    uint8_t tlb_used;        /* sets filled since their last flush, a bit each */
    /* The fill logs (TLB_LOG): slot indexes, and counts that pass TLB_LOG once they overflowed */
    uint32_t tlb_nlog[TLB_SETS][2];
    uint16_t tlb_log[TLB_SETS][2][TLB_LOG];
    struct pwc_entry pwc_pt[1u << PWC_BITS], pwc_pd[1u << PWC_BITS];
    bool pwc_used;           /* some pwc entry is filled */
    uint32_t pkru;           /* protection keys for user pages (RDPKRU/WRPKRU, XSAVE 9) */
    uint64_t pkrs;           /* and for supervisor pages (IA32_PKRS) */
    /* Entries a fill pushed out, looked at before a page walk (mmu.c): two buffers 4 MiB apart
     * (a memcpy between two mappings) share every slot of the direct-mapped TLB. */
    struct tlb_entry victim[TLB_SETS][TLB_VICTIM];
    uint32_t victim_next[TLB_SETS];
    /* The linear range the entries of large pages (2 MiB, 4 MiB, 1 GiB) filled since the set's
     * last full flush may cover: an INVLPG outside it looks at one slot, not all (each 4 KiB of
     * a large page has an entry of its own, in its own slot). Empty: lo > hi. */
    uint64_t large_lo[TLB_SETS], large_hi[TLB_SETS];
    struct jc_entry jc[1u << JMP_CACHE_BITS];

    /* Decoded blocks: an arena, a hash on (physical address, mode). */
    uint8_t *arena;
    size_t arena_used, arena_size;
    struct block *bhash[1u << BLOCK_HASH_BITS];
    struct block *xblock;  /* scratch for an instruction that crosses a page */
    uint8_t *jit;          /* translated blocks (jit.c): the executable view, NULL without */
    uint8_t *jit_rw;       /* the same memory, the view the translator writes through */
    size_t jit_used, jit_size;
    uint64_t jit_blocks, jit_refused;   /* translated; abandoned for want of space */
    /* A translated block left through a link jump not yet pointed at its successor: the jump's
     * rel32 (in the executable view; jit_link patches it), the successor it wants (pa ^ mode <<
     * 60) and the generation of the page both are in when the jump was translated. */
    uint8_t *link_from;
    uint64_t link_key;
    uint32_t link_gen;
    uint32_t map_gen;          /* the emu_vm's map_gen this CPU's TLB was filled under */

    /* Exceptions: raise_* longjmp to the run loop with the pending event here. */
    jmp_buf jb;
    int exc_vec;           /* -1 none */
    uint32_t exc_err;
    bool exc_has_err, exc_soft;
    int exc_depth;         /* nesting while delivering, for #DF and triple faults */
    int exc_first;         /* the vector being delivered, -1 for a benign event (INT n, IRQ) */
    uint8_t exc_soft_len;  /* INT n's length: a fault delivering it restarts the INT */
    uint8_t exc_rewind;    /* that length while its delivery is under way */
    const struct insn *cur;
    bool acc_ss;           /* a stack access's slow path is under way (#SS for non-canonical) */
    bool brk;              /* leave the current block after this instruction */

    /* Debug (debug.c): while TF, RF, an enabled DR7 breakpoint or an interrupt shadow is set,
     * the run loop executes one instruction at a time through debug_step. */
    bool exc_rf;           /* the event being delivered is a fault: RF set in the pushed flags */
    bool tf_recheck;       /* SYSCALL/SYSRET: single-step follows TF at the end of the instruction */
    bool shadow_ss;        /* MOV SS/POP SS: debug traps wait for the next instruction too */
    uint8_t dbg_bp;        /* DR7 L0-3|G0-3 folded: breakpoints 0-3 that are enabled */
    uint32_t db_pending;   /* DR6 bits of traps the current instruction hit (data, I/O) */
    uint32_t db_deferred;  /* ...held back by a MOV SS shadow */

    /* Environment */
    struct machine *m;
    struct emu_vm *vm;
    struct emu_env env;
    int id, ncpus;
    _Atomic bool exit_req;
    _Atomic bool irq_check;
    /* irq_check was cleared while IF was 0 (the notice held back): setting IF raises it again.
     * Left raised, it made translated code leave at every link while a kernel ran with
     * interrupts off, an interrupt handler for one. */
    bool irq_held;
    _Atomic bool init_req;
    _Atomic int sipi;      /* -1 none, else vector of a pending SIPI */
    bool wait_sipi;
    bool halted;
    pthread_mutex_t lock;  /* for sleeping in HLT */
    pthread_cond_t cond;
    uint64_t icount;
    /* blocks the run loop looked up (each one a return from translated code or an interpreted
     * block), and those of them the jump cache did not answer (block_get_slow) */
    uint64_t loop_blocks, slow_lookups;
    uint64_t debug_steps;
    uint64_t timer_deadline;
    uint32_t poll_count;
};

/* --- registers --- */
static inline uint64_t size_mask(int sz)
{
    return sz == 8 ? ~0ull : (1ull << (sz * 8)) - 1;
}

static inline uint64_t sign_bit(int sz)
{
    return 1ull << (sz * 8 - 1);
}

static inline int64_t sext(uint64_t v, int sz)
{
    int sh = 64 - sz * 8;
    return (int64_t)(v << sh) >> sh;
}

/* r 16..19 name AH, CH, DH, BH (byte registers without REX). */
static inline uint64_t reg_get(struct cpu *c, int r, int sz)
{
    switch (sz) {
    case 1: return r >= 16 ? (c->r[r - 16] >> 8) & 0xff : c->r[r] & 0xff;
    case 2: return c->r[r] & 0xffff;
    case 4: return (uint32_t)c->r[r];
    default: return c->r[r];
    }
}

static inline void reg_set(struct cpu *c, int r, int sz, uint64_t v)
{
    switch (sz) {
    case 1:
        if (r >= 16)
            c->r[r - 16] = (c->r[r - 16] & ~0xff00ull) | ((v & 0xff) << 8);
        else
            c->r[r] = (c->r[r] & ~0xffull) | (v & 0xff);
        break;
    case 2: c->r[r] = (c->r[r] & ~0xffffull) | (v & 0xffff); break;
    case 4: c->r[r] = (uint32_t)v; break;
    default: c->r[r] = v; break;
    }
}

/* --- flags (flags.c) --- */
uint32_t flags_arith(struct cpu *c);
bool flags_cf(struct cpu *c);
bool cond_eval(struct cpu *c, int cc);
uint64_t flags_get(struct cpu *c);                    /* full RFLAGS */
void flags_set(struct cpu *c, uint64_t f, uint32_t writable);
static inline void cc_set(struct cpu *c, uint32_t op, int sz, uint64_t res, uint64_t src)
{
    static const uint8_t lg[9] = { 0, 0, 1, 0, 2, 0, 0, 0, 3 };
    c->cc_op = op | lg[sz];
    c->cc_res = res;
    c->cc_src = src;
}
/* A rotate by a nonzero count: CF and OF follow from the result, the other flags stay. */
static inline void cc_rotate(struct cpu *c, uint32_t op, int sz, uint64_t res)
{
    static const uint8_t lg[9] = { 0, 0, 1, 0, 2, 0, 0, 0, 3 };
    uint32_t cur = c->cc_op & ~3u;
    if (cur == CC_ROL || cur == CC_ROR) {
        c->cc_op = op | lg[sz];   /* the older state already holds the other flags */
        c->cc_res = res;
        return;
    }
    c->cc_pop = c->cc_op;
    c->cc_pres = c->cc_res;
    c->cc_psrc = c->cc_src;
    c->cc_paux = c->cc_aux;
    c->cc_op = op | lg[sz];
    c->cc_res = res;
}
static inline void cc_flags(struct cpu *c, uint32_t arith)
{
    c->cc_op = CC_EFLAGS;
    c->cc_src = arith & F_ARITH;
}

/* --- exceptions (except.c) --- */
__attribute__((noreturn)) void raise_exc(struct cpu *c, int vec);
__attribute__((noreturn)) void raise_exc_err(struct cpu *c, int vec, uint32_t err);
__attribute__((noreturn)) void raise_ud(struct cpu *c);
__attribute__((noreturn)) void raise_gp(struct cpu *c, uint32_t err);
/* A software interrupt (INT n, INT3, INTO): the return address is the next instruction. */
__attribute__((noreturn)) void raise_soft_int(struct cpu *c, int vec);
void except_deliver(struct cpu *c, int vec, bool has_err, uint32_t err, bool soft);
void except_iret(struct cpu *c, int osz);

/* --- task switches (task.c) --- */
enum { TASK_JMP, TASK_CALL, TASK_IRET };   /* CALL: also an interrupt through a task gate */
/* Switches to the 32-bit TSS sel (saving the current task at c->rip), then pushes err if asked. */
void task_switch(struct cpu *c, uint16_t sel, int reason, bool has_err, uint32_t err);
/* IRET with NT set: back to the task in the current TSS's link field. */
void task_iret(struct cpu *c);

/* --- debug (debug.c) --- */
#define DR6_BD 0x2000u
#define DR6_BS 0x4000u
#define DR6_FIXED 0xffff0ff0u   /* reserved bits that read as 1 (bit 12 reads 0) */
#define DR7_GD 0x2000u
#define CR4_DE 0x8u
/* True when the run loop must step one instruction at a time. */
static inline bool debug_stepping(const struct cpu *c)
{
    return (c->eflags & (F_TF | F_RF)) || c->dbg_bp || c->inhibit_irq;
}
/* Runs one instruction at CS:RIP with single-step, breakpoint and interrupt-shadow rules;
 * -EFAULT when RIP is not in RAM. Faults longjmp as from a block. */
int debug_step(struct cpu *c);
/* MOV to/from DRn (n 0-7 as encoded): #UD, #GP and general-detect #DB as the SDM says. */
uint64_t debug_read_dr(struct cpu *c, int n);
void debug_write_dr(struct cpu *c, int n, uint64_t v);
/* A data access of sz bytes at la (write or read), or an I/O access to port (io): records the
 * breakpoints it hits in db_pending. Only called while dbg_bp is nonzero. */
void debug_check_data(struct cpu *c, uint64_t la, int sz, bool write);
void debug_check_io(struct cpu *c, uint16_t port, int sz);
/* Raises #DB as a trap (RIP already past the instruction) with these DR6 status bits. */
__attribute__((noreturn)) void debug_trap(struct cpu *c, uint32_t dr6_bits);
/* DR7 changed (or the CPU state was loaded): recompute dbg_bp and the TLB. */
void debug_update(struct cpu *c);

/* --- modes and segments (seg.c) --- */
void cpu_update_mode(struct cpu *c);
void seg_load(struct cpu *c, int seg, uint16_t sel);        /* faults like MOV Sreg */
void seg_load_cs(struct cpu *c, uint16_t sel, int cpl);     /* far transfers, CPL checked by caller */
void seg_set_real(struct cpu *c, int seg, uint16_t sel);
void seg_from_desc(struct cpu_segment *s, uint16_t sel, uint64_t lo, uint64_t hi);
/* Reads the 8-byte descriptor of sel from the GDT/LDT; #GP(sel) beyond the limit. */
uint64_t seg_read_desc(struct cpu *c, uint16_t sel, int vec);
void cpu_set_cpl(struct cpu *c, int cpl);
/* IF was set with an interrupt notice held back (irq_held): the run loop looks at the local
 * APIC again after this instruction. */
static inline void cpu_irq_release(struct cpu *c)
{
    c->irq_held = false;
    atomic_store_explicit(&c->irq_check, true, memory_order_relaxed);
    c->brk = true;
}
/* Points tlbc at the TLB set of the current CPL, CR4.SMAP and EFLAGS.AC: called wherever one
 * of them changes (a STAC needs no flush, only another set). */
static inline void cpu_select_tlb(struct cpu *c)
{
    int set = c->cpl == 3 ? TLB_USER
              : ((c->cr4 & CR4_SMAP) && (c->eflags & F_AC)) ? TLB_SUP_AC : TLB_SUP;
    c->tlbc = c->tlb[set];
}
void seg_clear_outer(struct cpu *c);

/* --- memory (mmu.c) --- */
uint64_t mem_rd_slow(struct cpu *c, uint64_t la, int sz);
void mem_wr_slow(struct cpu *c, uint64_t la, int sz, uint64_t v);
/* The same for an access through SS (c->acc_ss while it runs). */
uint64_t mem_rd_slow_ss(struct cpu *c, uint64_t la, int sz);
void mem_wr_slow_ss(struct cpu *c, uint64_t la, int sz, uint64_t v);
void mem_smc(struct cpu *c, uint32_t pidx);
uint64_t mem_rd_sys(struct cpu *c, uint64_t la, int sz);
void mem_wr_sys(struct cpu *c, uint64_t la, int sz, uint64_t v);
/* Host pointer for a RAM access of sz bytes at la with write permission checked, or NULL when it
 * is not plain RAM or crosses a page (the caller then uses mem_rd/mem_wr). Faults like a write. */
void *mem_ptr_w(struct cpu *c, uint64_t la, int sz);
/* Host pointer valid for reading up to the end of la's page (code fetch), faulting like one. */
const void *mem_ptr_r(struct cpu *c, uint64_t la, int sz);
const uint8_t *mem_ptr_x(struct cpu *c, uint64_t la, uint64_t *pa, uint32_t *pidx);
/* n instruction bytes at la, all in one page that need not be RAM (MMIO, or all ones). */
void mem_fetch_io(struct cpu *c, uint64_t la, uint8_t *buf, int n);
void tlb_flush(struct cpu *c, bool global);
/* Empties every slot of every set, whatever the logs say (a CPU state loaded or reset). */
void tlb_reset(struct cpu *c);
/* Empties the paging-structure cache (a CR3 write that keeps the TLB still changes the tables). */
void pwc_drop(struct cpu *c);
/* The memory map changed (emu_vm.map_gen): empty the TLB and leave the block, so that the next
 * access, even right after the port or MMIO write that moved a region, finds the new map. */
static inline void cpu_check_map(struct cpu *c)
{
    uint32_t mg = atomic_load_explicit(&c->vm->map_gen, memory_order_acquire);
    if (__builtin_expect(mg != c->map_gen, 0)) {
        c->map_gen = mg;
        tlb_flush(c, true);
        c->brk = true;
    }
}
void tlb_flush_page(struct cpu *c, uint64_t la);
/* Physical RAM: host pointer for [pa, pa+len) when wholly in one region, else NULL. */
void *phys_ptr(struct emu_vm *vm, uint64_t pa, uint64_t len, uint32_t *pidx);
/* The region holding [pa, pa+len) and pa's offset in it, or NULL. */
struct emu_ram *phys_region(struct emu_vm *vm, uint64_t pa, uint64_t len, uint64_t *off);
static inline void phys_mark_dirty(struct emu_ram *r, uint64_t off)
{
    if (r->dirty) {
        uint64_t p = off >> 12;
        if (!(atomic_load_explicit(&r->dirty[p / 64], memory_order_relaxed) & (1ull << (p % 64))))
            atomic_fetch_or_explicit(&r->dirty[p / 64], 1ull << (p % 64), memory_order_relaxed);
    }
}
uint64_t phys_rd(struct cpu *c, uint64_t pa, int sz);
void phys_wr(struct cpu *c, uint64_t pa, int sz, uint64_t v);
void mem_rd_buf(struct cpu *c, uint64_t la, void *buf, int n);
void mem_wr_buf(struct cpu *c, uint64_t la, const void *buf, int n);

/* mem_rd and mem_wr with the slow path given: a stack access names one that tells a
 * non-canonical address's fault which segment it came through (#SS, not #GP), so the TLB hit
 * pays nothing for it. */
static inline __attribute__((always_inline)) uint64_t
mem_rd_via(struct cpu *c, uint64_t la, int sz, uint64_t (*slow)(struct cpu *, uint64_t, int))
{
    struct tlb_entry *e = tlb_slot(c->tlbc, la);
    if (likely(e->vr == (la & ~0xfffull) && (la & 0xfff) <= 0x1000u - sz)) {
        const uint8_t *p = (const uint8_t *)(e->add + la);
        switch (sz) {
        case 1: return *p;
        case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
        case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
        default: { uint64_t v; memcpy(&v, p, 8); return v; }
        }
    }
    return slow(c, la, sz);
}

static inline uint64_t mem_rd(struct cpu *c, uint64_t la, int sz)
{
    return mem_rd_via(c, la, sz, mem_rd_slow);
}

static inline __attribute__((always_inline)) void
mem_wr_via(struct cpu *c, uint64_t la, int sz, uint64_t v,
           void (*slow)(struct cpu *, uint64_t, int, uint64_t))
{
    struct tlb_entry *e = tlb_slot(c->tlbc, la);
    if (likely(e->vw == (la & ~0xfffull) && (la & 0xfff) <= 0x1000u - sz)) {
        uint8_t *p = (uint8_t *)(e->add + la);
        if (unlikely(atomic_load_explicit(&c->vm->code[e->pidx], memory_order_relaxed)))
            mem_smc(c, e->pidx);
        switch (sz) {
        case 1: *p = (uint8_t)v; break;
        case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
        case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
        default: memcpy(p, &v, 8); break;
        }
        return;
    }
    slow(c, la, sz, v);
}

static inline void mem_wr(struct cpu *c, uint64_t la, int sz, uint64_t v)
{
    mem_wr_via(c, la, sz, v, mem_wr_slow);
}

/* Accesses through SS that are not a memory operand (pushes, pops, ENTER's frame copy). */
static inline uint64_t stack_rd(struct cpu *c, uint64_t la, int sz)
{
    return mem_rd_via(c, la, sz, mem_rd_slow_ss);
}

static inline void stack_wr(struct cpu *c, uint64_t la, int sz, uint64_t v)
{
    mem_wr_via(c, la, sz, v, mem_wr_slow_ss);
}

/* --- segment limits (seg.c) --- */
/* #GP(0), or #SS(0) for SS, when [off, off + sz) is not inside seg's limits. */
void seg_check_limit(struct cpu *c, int seg, uint64_t off, int sz);
/* Recomputes c->segchk after a segment or mode change. */
void seg_update_check(struct cpu *c);

/* --- stack --- */
static inline uint64_t seg_lin(struct cpu *c, int seg, uint64_t off)
{
    return (c->segbase[seg] + off) & c->lin_mask;
}

static inline void push(struct cpu *c, int sz, uint64_t v)
{
    uint64_t sp = (c->r[R_SP] - sz) & size_mask(c->ssz);
    if (unlikely(c->segchk))
        seg_check_limit(c, SEG_SS, sp, sz);
    stack_wr(c, seg_lin(c, SEG_SS, sp), sz, v);
    reg_set(c, R_SP, c->ssz, sp);
}

static inline uint64_t pop(struct cpu *c, int sz)
{
    uint64_t sp = c->r[R_SP] & size_mask(c->ssz);
    if (unlikely(c->segchk))
        seg_check_limit(c, SEG_SS, sp, sz);
    uint64_t v = stack_rd(c, seg_lin(c, SEG_SS, sp), sz);
    reg_set(c, R_SP, c->ssz, sp + sz);
    return v;
}

/* --- system (exec_sys.c, msr.c, cpuid.c) --- */
int msr_read(struct cpu *c, uint32_t msr, uint64_t *v);
int msr_write(struct cpu *c, uint32_t msr, uint64_t v);
void cpuid_query(struct cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4]);
/* The CPUID leaf a model reports for CPU id of ncpus: what cpuid_query answers (testable alone). */
void cpu_model_cpuid(const struct cpu_model *m, int id, int ncpus, uint32_t leaf, uint32_t sub,
                     uint32_t out[4]);
uint64_t cpu_tsc(struct cpu *c);
/* Tells the local APIC how the TSC relates to the clock (for the TSC-deadline timer): at
 * creation and after a write to IA32_TSC. */
void cpu_sync_tsc(struct cpu *c);
void cpu_set_cr0(struct cpu *c, uint64_t v);
void cpu_set_cr3(struct cpu *c, uint64_t v);
void cpu_set_cr4(struct cpu *c, uint64_t v);
void cpu_set_efer(struct cpu *c, uint64_t v);
void cpu_io(struct cpu *c, uint16_t port, void *data, int sz, bool is_write);
/* #GP(0) unless CPL 0 */
static inline void need_cpl0(struct cpu *c)
{
    if (c->cpl != 0)
        raise_gp(c, 0);
}

/* --- PCID and INVPCID (exec_pcid.c) --- */
bool pcid_supported(const struct cpu *c);
/* The checks of a CR4 write that involve PCIDE (#GP); called before CR4 changes. */
void pcid_check_cr4(struct cpu *c, uint64_t v);
/* A MOV to CR3: stores it (without bit 63 under CR4.PCIDE) and flushes the TLB as needed. */
void pcid_set_cr3(struct cpu *c, uint64_t v);

/* --- SMAP, protection keys, UMIP (exec_prot.c) --- */
/* The CR4 bits a MOV to CR4 may set on this CPU's model. */
uint64_t prot_cr4_allowed(const struct cpu *c);
bool prot_has_pku(const struct cpu *c);
bool prot_has_pks(const struct cpu *c);
/* Adds what depends on the CPU's state (OSPKE) to a CPUID answer. */
void prot_cpuid(struct cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4]);
void prot_set_pkru(struct cpu *c, uint32_t v);
/* WRMSR IA32_PKRS: 0, or -1 for #GP (no PKS, reserved bits). */
int prot_set_pkrs(struct cpu *c, uint64_t v);
/* #GP(0) for SGDT, SIDT, SLDT, SMSW, STR outside CPL 0 under CR4.UMIP. */
void prot_umip(struct cpu *c);
/* STAC, CLAC, RDPKRU, WRPKRU among the 0F 01 register forms: true when i was one. */
bool prot_grp7(struct cpu *c, const struct insn *i);

/* --- x87/SSE (exec_fpu.c, exec_sse.c) --- */
void fpu_reset(struct fpu *f);
void fpu_fxsave(struct cpu *c, uint8_t *area);
void fpu_fxrstor(struct cpu *c, const uint8_t *area);

/* --- XSAVE (exec_xsave.c) --- */
#define CPUID_1_ECX_PCLMUL (1u << 1)
#define CPUID_1_ECX_FMA (1u << 12)
#define CPUID_1_ECX_AES (1u << 25)
#define CPUID_1_ECX_XSAVE (1u << 26)
#define CPUID_1_ECX_OSXSAVE (1u << 27)
#define CPUID_1_ECX_AVX (1u << 28)
#define CPUID_1_ECX_F16C (1u << 29)
#define CPUID_7_EBX_AVX2 (1u << 5)
/* The XCR0 bits this CPU's model allows (0 without XSAVE). */
uint64_t xsave_supported(const struct cpu *c);
/* 0, or -EINVAL when v is not a valid XCR0 for this CPU. */
int xcr0_check(const struct cpu *c, uint64_t v);
/* Adds what depends on the CPU's state (OSXSAVE, leaf 0xD) to a CPUID answer. */
void xsave_cpuid(struct cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4]);
struct insn;
void xsave_xgetbv_xsetbv(struct cpu *c, const struct insn *i, bool set);
void xsave_exec(struct cpu *c, const struct insn *i, int sub, uint64_t la);

/* --- logging of unimplemented opcodes, once each --- */
void emu_log_unimp(struct cpu *c, const char *what, unsigned op);

#endif
