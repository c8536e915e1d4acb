/* Debug exceptions (SDM vol. 3 ch. 17): single-step (RFLAGS.TF), instruction breakpoints in
 * DR0-DR3/DR7 with RF, DR6's status bits, DR4/DR5 aliasing under CR4.DE, general detect, and the
 * interrupt shadow of STI and MOV SS. All of it runs one instruction at a time through the
 * interpreter (debug_step): the run loop only comes here while TF, RF, an enabled breakpoint or
 * a shadow is set, so blocks and their translations never need to know about any of it. */
#include "accel/emu/block.h"
#include "accel/emu/exec.h"

#include <errno.h>

/* The breakpoints of DR7 whose L or G bit is set, as a 4-bit mask. */
static uint8_t dr7_enabled(uint64_t dr7)
{
    uint8_t m = 0;
    for (int n = 0; n < 4; n++)
        if ((dr7 >> (2 * n)) & 3)
            m |= (uint8_t)(1u << n);
    return m;
}

static int dr7_rw(uint64_t dr7, int n) { return (int)(dr7 >> (16 + 4 * n)) & 3; }

/* Length field 00/01/11/10 -> 1/2/4/8 bytes */
static int dr7_len(uint64_t dr7, int n)
{
    static const int len[4] = { 1, 2, 8, 4 };
    return len[(dr7 >> (18 + 4 * n)) & 3];
}

void debug_update(struct cpu *c)
{
    uint8_t old = c->dbg_bp;
    c->dbg_bp = dr7_enabled(c->dr[7]);
    if (old || c->dbg_bp)
        tlb_flush(c, true);   /* mmu.c keeps no readable/writable entries while breakpoints are on */
    c->brk = true;
}

void debug_trap(struct cpu *c, uint32_t dr6_bits)
{
    /* B0-B3 report this event's breakpoints only; BS, BD and BT stay until software clears them */
    uint64_t dr6 = c->dr[6];
    if (dr6_bits & 0xf)
        dr6 &= ~0xfull;
    c->dr[6] = dr6 | dr6_bits | DR6_FIXED;
    c->cur = NULL;
    c->exc_vec = EXC_DB;
    c->exc_has_err = false;
    c->exc_soft = false;
    longjmp(c->jb, 1);
}

/* Instruction breakpoints matching the linear address la (fault class: before the instruction). */
static uint32_t exec_hits(struct cpu *c, uint64_t la)
{
    uint32_t hits = 0;
    for (int n = 0; n < 4; n++)
        if (((c->dbg_bp >> n) & 1) && dr7_rw(c->dr[7], n) == 0 && c->dr[n] == la)
            hits |= 1u << n;
    return hits;
}

void debug_check_data(struct cpu *c, uint64_t la, int sz, bool write)
{
    for (int n = 0; n < 4; n++) {
        if (!((c->dbg_bp >> n) & 1))
            continue;
        int rw = dr7_rw(c->dr[7], n);
        if (rw == 0 || rw == 2 || (rw == 1 && !write))
            continue;
        uint64_t len = (uint64_t)dr7_len(c->dr[7], n);
        uint64_t start = c->dr[n] & ~(len - 1);
        if (la < start + len && start < la + (uint64_t)sz)
            c->db_pending |= 1u << n;
    }
}

void debug_check_io(struct cpu *c, uint16_t port, int sz)
{
    if (!(c->cr4 & CR4_DE))
        return;
    for (int n = 0; n < 4; n++) {
        if (!((c->dbg_bp >> n) & 1) || dr7_rw(c->dr[7], n) != 2)
            continue;
        uint64_t len = (uint64_t)dr7_len(c->dr[7], n);
        uint64_t start = (c->dr[n] & 0xffff) & ~(len - 1);
        if (port < start + len && start < (uint64_t)port + (uint64_t)sz)
            c->db_pending |= 1u << n;
    }
}

int debug_step(struct cpu *c)
{
    /* the interrupt shadow covers this one instruction: the run loop took no event before it */
    bool after_ss = c->shadow_ss;
    /* traps a MOV SS held back: lost if this instruction faults or is ICEBP, as on hardware */
    uint32_t deferred = c->db_deferred;
    c->db_deferred = 0;
    c->inhibit_irq = false;
    c->shadow_ss = false;
    c->tf_recheck = false;
    uint64_t la = (c->segbase[SEG_CS] + c->rip) & c->lin_mask;
    if (c->dbg_bp && !(c->eflags & F_RF)) {
        uint32_t hits = exec_hits(c, la);
        if (hits) {
            c->dr[6] = (c->dr[6] & ~0xfull) | hits | DR6_FIXED;
            raise_exc(c, EXC_DB);   /* a fault: RIP stays at the instruction */
        }
    }
    struct block *b = block_get(c);
    if (!b)
        return -EFAULT;
    const struct insn *i = b->ins;
    /* INT n, INT3, INTO: the held-back traps come at the handler's first instruction (the run
     * loop raises them after delivering the interrupt) */
    if (deferred && (i->fn == h_int || i->fn == h_int3 || i->fn == h_into))
        c->db_deferred = deferred;
    bool tf = c->eflags & F_TF;
    uint64_t rip0 = c->rip;
    c->db_pending = 0;
    c->brk = false;
    c->icount++;
    c->cur = i;
    c->rip += i->len;
    i->fn(c, i);
    c->cur = NULL;
    if (i->rep && c->rip == rip0) {
        /* a REP string instruction stopped between iterations (exec_str.c: one at a time
         * here), RF set: single-step and data breakpoints trap there */
        uint32_t hits = c->db_pending | deferred | (tf ? DR6_BS : 0);
        c->db_pending = 0;
        if (!hits)
            return 0;
        debug_trap(c, hits);
    }
    /* RF is cleared once an instruction completes; IRET is the one that loads it */
    if (i->fn != h_iret)
        c->eflags &= ~F_RF;
    if (c->tf_recheck) {
        tf = c->eflags & F_TF;
        c->tf_recheck = false;
    }
    uint32_t hits = c->db_pending | deferred | (tf ? DR6_BS : 0);
    c->db_pending = c->db_deferred = 0;
    if (!hits)
        return 0;
    if (c->shadow_ss && !after_ss) {
        c->db_deferred = hits;   /* MOV SS: the traps come after the next instruction */
        return 0;
    }
    debug_trap(c, hits);
}

/* What a MOV to or from DRn checks first (SDM 17.2): CPL 0, DR4/DR5 as DR6/DR7 unless CR4.DE
 * (#UD then), and general detect (#DB with DR6.BD). Returns the register really meant. */
static int dr_access(struct cpu *c, int n)
{
    need_cpl0(c);
    if (n == 4 || n == 5) {
        if (c->cr4 & CR4_DE)
            raise_ud(c);
        n += 2;
    }
    if (n > 7)
        raise_ud(c);
    if (c->dr[7] & DR7_GD) {
        c->dr[7] &= ~(uint64_t)DR7_GD;
        c->dr[6] = (c->dr[6] & ~0xfull) | DR6_BD | DR6_FIXED;
        raise_exc(c, EXC_DB);
    }
    return n;
}

uint64_t debug_read_dr(struct cpu *c, int n)
{
    n = dr_access(c, n);
    return c->dr[n];
}

void debug_write_dr(struct cpu *c, int n, uint64_t v)
{
    n = dr_access(c, n);
    if (n < 4) {
        c->dr[n] = c->code64 ? v : (uint32_t)v;
        if (c->dbg_bp)
            debug_update(c);
        return;
    }
    if (v >> 32)
        raise_gp(c, 0);   /* the upper halves of DR6 and DR7 are reserved */
    if (n == 6) {
        c->dr[6] = (v & ~(uint64_t)0x1000) | DR6_FIXED;   /* bit 12 reads 0 */
    } else {
        c->dr[7] = (v & ~0xd800ull) | 0x400;   /* bits 11, 12, 14, 15 read 0, bit 10 reads 1 */
        debug_update(c);
    }
}
