/* Hardware task switches (SDM vol. 3 ch. 7) between 32-bit and 16-bit TSSs, outside long mode:
 * through a task gate in the IDT (32-bit Linux's double-fault handler is one), a far JMP or
 * CALL to a TSS or a task gate in the GDT, and IRET with NT set back to the previous task. The
 * I/O bitmap is not modelled. */
#include "accel/emu/cpu.h"

#define TSS_LINK 0x00
#define DESC_BUSY (2ull << 40)

/* Where a TSS keeps the dynamic state: the 32-bit one (type 9/11) and the 80286's 16-bit one
 * (type 1/3: word fields, ES CS SS DS only, no CR3) (SDM vol. 3 7.2.1 and 7.6). */
struct tss_layout {
    uint32_t ip, flags, regs, segs, ldt;
    int w;               /* field width, and the stride of registers and selectors */
    int nsegs;
    bool cr3;            /* CR3 at 0x1c */
    uint32_t min_limit;  /* a smaller TSS is #TS */
};
static const struct tss_layout tss32 = { 0x20, 0x24, 0x28, 0x48, 0x60, 4, 6, true, 0x67 };
static const struct tss_layout tss16 = { 0x0e, 0x10, 0x12, 0x22, 0x2a, 2, 4, false, 0x2b };
#define TSS_CR3 0x1c

/* Linear address of the GDT descriptor of sel */
static uint64_t gdt_entry(struct cpu *c, uint16_t sel)
{
    return (c->gdt.base + (sel & ~7)) & c->lin_mask;
}

/* The TSS and GDT accesses of a switch are implicit supervisor ones, whatever the CPL it
 * starts from (an exception in user mode through a task gate). */
static void tss_wr(struct cpu *c, uint64_t base, uint32_t off, int sz, uint64_t v)
{
    mem_wr_sys(c, (base + off) & 0xffffffff, sz, v);
}

static uint64_t tss_rd(struct cpu *c, uint64_t base, uint32_t off, int sz)
{
    return mem_rd_sys(c, (base + off) & 0xffffffff, sz);
}

void task_switch(struct cpu *c, uint16_t sel, int reason, bool has_err, uint32_t err)
{
    if (c->lma)
        raise_gp(c, sel & 0xfffc);   /* no task switches in long mode */
    /* the new TSS: a GDT descriptor, 32-bit, available (busy for IRET), present, big enough */
    if (sel & 4)
        raise_exc_err(c, EXC_TS, sel & 0xfffc);
    uint64_t d = seg_read_desc(c, sel, EXC_GP);
    struct cpu_segment nt;
    seg_from_desc(&nt, sel, d, 0);
    int want = reason == TASK_IRET ? 0xb : 0x9;   /* busy or available, 32-bit; & ~8: 16-bit */
    if (nt.s || (nt.type != want && nt.type != (want & ~8)))
        raise_exc_err(c, reason == TASK_IRET ? EXC_TS : EXC_GP, sel & 0xfffc);
    if (!nt.present)
        raise_exc_err(c, EXC_NP, sel & 0xfffc);
    const struct tss_layout *nl = (nt.type & 8) ? &tss32 : &tss16;
    if (nt.limit < nl->min_limit)
        raise_exc_err(c, EXC_TS, sel & 0xfffc);
    struct cpu_segment *ot = &c->seg[SEG_TR];
    const struct tss_layout *ol = (ot->type & 8) ? &tss32 : &tss16;
    if (ot->limit < ol->ldt - 1 || ot->unusable)
        raise_exc_err(c, EXC_TS, ot->selector & 0xfffc);

    /* read the new task's state before anything changes (a fault leaves the old task intact):
     * n[] = CR3 EIP EFLAGS 8 GPRs ES..GS. A 16-bit TSS leaves CR3 alone and FS, GS null; the
     * upper halves of the registers, undefined, keep what they held (as under QEMU). */
    uint32_t n[17];
    n[0] = nl->cr3 ? (uint32_t)tss_rd(c, nt.base, TSS_CR3, 4) : (uint32_t)c->cr3;
    n[1] = (uint32_t)tss_rd(c, nt.base, nl->ip, nl->w);
    n[2] = (uint32_t)tss_rd(c, nt.base, nl->flags, nl->w);
    for (int r = 0; r < 8; r++)
        n[3 + r] = (uint32_t)tss_rd(c, nt.base, nl->regs + nl->w * r, nl->w) |
                   (nl->w == 2 ? (uint32_t)c->r[r] & 0xffff0000u : 0);
    for (int s = 0; s < 6; s++)
        n[11 + s] = s < nl->nsegs ? (uint32_t)tss_rd(c, nt.base, nl->segs + nl->w * s, 2) : 0;
    uint16_t nldt = (uint16_t)tss_rd(c, nt.base, nl->ldt, 2);

    /* save the old task */
    uint64_t ob = ot->base;
    uint32_t of = (uint32_t)flags_get(c);
    if (reason == TASK_JMP || reason == TASK_IRET)
        of &= ~F_NT;
    tss_wr(c, ob, ol->ip, ol->w, (uint32_t)c->rip);
    tss_wr(c, ob, ol->flags, ol->w, of);
    for (int r = 0; r < 8; r++)
        tss_wr(c, ob, ol->regs + ol->w * r, ol->w, (uint32_t)c->r[r]);
    for (int s = 0; s < ol->nsegs; s++)
        tss_wr(c, ob, ol->segs + ol->w * s, 2, c->seg[s].selector);
    if (reason == TASK_JMP || reason == TASK_IRET) {
        uint64_t od = mem_rd_sys(c, gdt_entry(c, ot->selector), 8);
        mem_wr_sys(c, gdt_entry(c, ot->selector), 8, od & ~DESC_BUSY);
    }
    if (reason == TASK_CALL) {
        tss_wr(c, nt.base, TSS_LINK, 2, ot->selector);
        n[2] |= F_NT;
    }
    if (reason != TASK_IRET)
        mem_wr_sys(c, gdt_entry(c, sel), 8, d | DESC_BUSY);

    /* switch */
    nt.type |= 2;
    c->seg[SEG_TR] = nt;
    if ((c->cr0 & CR0_PG) && nl->cr3)
        cpu_set_cr3(c, n[0]);
    c->cr0 |= CR0_TS;
    c->rip = n[1];
    c->eflags = 0;
    cc_flags(c, 0);
    flags_set(c, n[2] | 2, 0x3f7fd5);
    for (int r = 0; r < 8; r++)
        c->r[r] = n[3 + r];
    /* selectors first, so that a fault loading a descriptor is taken in the new task */
    for (int s = 0; s < 6; s++) {
        c->seg[s].selector = (uint16_t)n[11 + s];
        c->seg[s].unusable = true;
    }
    if (c->eflags & F_VM) {
        for (int s = 0; s < 6; s++)
            seg_set_real(c, s, (uint16_t)n[11 + s]);
        cpu_set_cpl(c, 3);
    } else {
        if ((nldt & ~3) == 0) {
            memset(&c->seg[SEG_LDTR], 0, sizeof(c->seg[SEG_LDTR]));
            c->seg[SEG_LDTR].unusable = true;
        } else {
            uint64_t ld = seg_read_desc(c, nldt & ~4, EXC_TS);
            seg_from_desc(&c->seg[SEG_LDTR], nldt, ld, 0);
        }
        uint16_t cs = (uint16_t)n[11 + SEG_CS];
        seg_load_cs(c, cs, cs & 3);
        seg_load(c, SEG_SS, (uint16_t)n[11 + SEG_SS]);
        static const int data[4] = { SEG_ES, SEG_DS, SEG_FS, SEG_GS };
        for (int k = 0; k < 4; k++)
            seg_load(c, data[k], (uint16_t)n[11 + data[k]]);
    }
    cpu_update_mode(c);
    if (has_err)
        push(c, nl->w, err);   /* the new TSS's width, as the gate's would be */
    c->brk = true;
}

void task_iret(struct cpu *c)
{
    uint16_t link = (uint16_t)tss_rd(c, c->seg[SEG_TR].base, TSS_LINK, 2);
    task_switch(c, link, TASK_IRET, false, 0);
}
