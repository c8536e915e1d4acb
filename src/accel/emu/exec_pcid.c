/* Process-context identifiers (SDM vol. 3, 4.10.1 and 4.10.4): CR4.PCIDE, the PCID in CR3[11:0]
 * with the no-flush bit 63 of MOV to CR3, and INVPCID.
 *
 * The software TLB is not tagged: it holds the entries of the current PCID and global ones only.
 * A CR3 write keeps the non-global entries only when it sets bit 63 and leaves the PCID as it
 * was; any change of PCID flushes them, as a CR3 write without PCIDs always did. So no entry of
 * one PCID is ever used under another, INVPCID for a PCID other than the current one has nothing
 * to drop, and a switch back to a PCID walks its tables again (allowed: a TLB may drop entries at
 * any time). Linux switches PCID on every change of address space, so tags would save walks
 * there; the untagged model costs what CR3 writes cost before PCIDs. */
#include "accel/emu/exec.h"

#define CPUID_1_ECX_PCID (1u << 17)
#define CPUID_7_EBX_INVPCID (1u << 10)
#define CR3_NOFLUSH (1ull << 63)
#define CR3_PCID 0xfffull

bool pcid_supported(const struct cpu *c)
{
    return (c->vm->model.feat[CPUF_1_ECX] & CPUID_1_ECX_PCID) != 0;
}

static bool invpcid_supported(const struct cpu *c)
{
    return (c->vm->model.feat[CPUF_7_EBX] & CPUID_7_EBX_INVPCID) != 0;
}

void pcid_check_cr4(struct cpu *c, uint64_t v)
{
    /* setting PCIDE needs IA-32e mode and PCID 0 in CR3 (no tables are tagged with another) */
    if ((v & CR4_PCIDE) && !(c->cr4 & CR4_PCIDE) && (!c->lma || (c->cr3 & CR3_PCID)))
        raise_gp(c, 0);
}

void pcid_set_cr3(struct cpu *c, uint64_t v)
{
    bool keep = false;
    if (c->cr4 & CR4_PCIDE) {
        keep = (v & CR3_NOFLUSH) && (v & CR3_PCID) == (c->cr3 & CR3_PCID);
        v &= ~CR3_NOFLUSH;   /* reserved in CR3 itself: it reads back 0 */
    }
    c->cr3 = v;
    if (!keep)
        tlb_flush(c, false);
    else
        pwc_drop(c);   /* untagged: it holds the old tables' PDs and PTs */
}

/* INVPCID r32/r64, m128 (66 0F 38 82): the register gives the type, the memory operand the PCID
 * (bits 11:0, bits 63:12 reserved) and, for type 0, a linear address (bits 127:64). */
H(h_invpcid)
{
    if (!invpcid_supported(c) || !i->pfx66 || i->rep || i->lock || i->mod == 3 ||
        (c->eflags & F_VM))
        raise_ud(c);
    need_cpl0(c);
    uint64_t type = reg_get(c, i->reg, c->code64 ? 8 : 4);
    uint64_t la = ea(c, i);
    uint64_t d0 = mem_rd(c, la, 8);
    uint64_t addr = mem_rd(c, (la + 8) & c->lin_mask, 8);
    uint64_t pcid = d0 & CR3_PCID;
    if (type > 3 || (d0 >> 12))
        raise_gp(c, 0);
    if (type == 0 && c->lma && (uint64_t)((int64_t)(addr << 16) >> 16) != addr)
        raise_gp(c, 0);
    if (type <= 1 && pcid && !(c->cr4 & CR4_PCIDE))
        raise_gp(c, 0);
    bool current = pcid == (c->cr4 & CR4_PCIDE ? c->cr3 & CR3_PCID : 0);
    switch (type) {
    case 0:   /* one address of one PCID: the TLB holds no other PCID's */
        if (current)
            tlb_flush_page(c, c->lma ? addr : (uint32_t)addr);
        break;
    case 1:   /* the non-global entries of one PCID */
        if (current)
            tlb_flush(c, false);
        break;
    case 2:   /* everything, global entries too */
        tlb_flush(c, true);
        break;
    case 3:   /* every PCID's non-global entries: only the current one's are held */
        tlb_flush(c, false);
        break;
    }
    c->brk = true;
}
