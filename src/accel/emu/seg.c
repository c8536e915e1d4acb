/* Segmentation: descriptor loads, the CPU mode that follows from CR0/EFER/CS, privilege level. */
#include "accel/emu/cpu.h"

void cpu_set_cpl(struct cpu *c, int cpl)
{
    c->cpl = cpl;
    cpu_select_tlb(c);
}

/* Recomputes what the decoder and address arithmetic depend on. */
void cpu_update_mode(struct cpu *c)
{
    bool pe = c->cr0 & CR0_PE;
    c->lma = (c->efer & EFER_LMA) != 0;
    c->code64 = c->lma && c->seg[SEG_CS].l;
    if (!pe || (c->eflags & F_VM))
        c->csz = 2;
    else
        c->csz = c->seg[SEG_CS].db ? 4 : 2;
    c->ssz = c->code64 ? 8 : (pe && c->seg[SEG_SS].db) ? 4 : 2;
    c->lin_mask = c->code64 ? ~0ull : 0xffffffffull;
    for (int s = 0; s < SEG_COUNT; s++)
        c->segbase[s] = c->seg[s].base;
    if (c->code64) {
        /* 64-bit mode ignores the bases of ES, CS, SS, DS */
        c->segbase[SEG_ES] = c->segbase[SEG_CS] = c->segbase[SEG_SS] = c->segbase[SEG_DS] = 0;
    }
    cpu_select_tlb(c);
    seg_update_check(c);
    c->brk = true;
}

static bool seg_flat(const struct cpu_segment *s)
{
    bool expand_down = !(s->type & 8) && (s->type & 4);
    return s->unusable || (s->limit == 0xffffffffu && !expand_down);
}

/* Only DS, ES and SS decide: code that switches to protected mode often leaves FS and GS with
 * their real-mode 64 KiB limits and never uses them, and it must not lose the translator for
 * that (the loop ROM's protected-mode part ran at half speed). */
void seg_update_check(struct cpu *c)
{
    static const int segs[3] = { SEG_ES, SEG_SS, SEG_DS };
    bool on = false;
    if ((c->cr0 & CR0_PE) && !(c->eflags & F_VM) && !c->code64)
        for (int k = 0; k < 3; k++)
            on = on || !seg_flat(&c->seg[segs[k]]);
    c->segchk = on;
}

void seg_check_limit(struct cpu *c, int seg, uint64_t off, int sz)
{
    const struct cpu_segment *s = &c->seg[seg];
    uint64_t last = off + (uint64_t)sz - 1;
    bool bad;
    if (s->unusable)
        bad = seg != SEG_SS;   /* a null selector: no access through it */
    else if (!(s->type & 8) && (s->type & 4))   /* expand-down: above the limit, below the top */
        bad = off <= s->limit || last > (s->db ? 0xffffffffull : 0xffffull);
    else
        bad = last > s->limit;
    if (bad)
        raise_exc_err(c, seg == SEG_SS ? EXC_SS : EXC_GP, 0);
}

void seg_set_real(struct cpu *c, int seg, uint16_t sel)
{
    struct cpu_segment *s = &c->seg[seg];
    s->selector = sel;
    s->base = (uint64_t)sel << 4;
    s->unusable = false;
    if (c->eflags & F_VM) {
        s->limit = 0xffff;
        s->type = seg == SEG_CS ? 0xb : 0x3;
        s->s = s->present = 1;
        s->dpl = 3;
        s->db = s->l = s->g = 0;
    }
    c->segbase[seg] = s->base;
}

void seg_from_desc(struct cpu_segment *s, uint16_t sel, uint64_t lo, uint64_t hi)
{
    uint32_t w0 = (uint32_t)lo, w1 = (uint32_t)(lo >> 32);
    s->selector = sel;
    s->base = (w0 >> 16) | ((w1 & 0xff) << 16) | (w1 & 0xff000000);
    s->limit = (w0 & 0xffff) | (w1 & 0xf0000);
    s->type = (w1 >> 8) & 0xf;
    s->s = (w1 >> 12) & 1;
    s->dpl = (w1 >> 13) & 3;
    s->present = (w1 >> 15) & 1;
    s->avl = (w1 >> 20) & 1;
    s->l = (w1 >> 21) & 1;
    s->db = (w1 >> 22) & 1;
    s->g = (w1 >> 23) & 1;
    if (s->g)
        s->limit = (s->limit << 12) | 0xfff;
    if (!s->s)
        s->base |= hi << 32;   /* system descriptors are 16 bytes in long mode */
    s->unusable = false;
}

uint64_t seg_read_desc(struct cpu *c, uint16_t sel, int vec)
{
    uint64_t base, limit;
    if (sel & 4) {
        base = c->seg[SEG_LDTR].base;
        limit = c->seg[SEG_LDTR].limit;
        if (c->seg[SEG_LDTR].unusable)
            raise_exc_err(c, vec, sel & 0xfffc);
    } else {
        base = c->gdt.base;
        limit = c->gdt.limit;
    }
    if ((uint64_t)(sel & ~7) + 7 > limit)
        raise_exc_err(c, vec, sel & 0xfffc);
    return mem_rd_sys(c, (base + (sel & ~7)) & c->lin_mask, 8);
}

static void seg_null(struct cpu *c, int seg, uint16_t sel)
{
    struct cpu_segment *s = &c->seg[seg];
    memset(s, 0, sizeof(*s));
    s->selector = sel;
    s->unusable = true;
    c->segbase[seg] = 0;
}

/* MOV/POP to DS, ES, FS, GS, SS and LxS. */
void seg_load(struct cpu *c, int seg, uint16_t sel)
{
    if (!(c->cr0 & CR0_PE) || (c->eflags & F_VM)) {
        seg_set_real(c, seg, sel);
        if (seg == SEG_SS)
            cpu_update_mode(c);
        return;
    }
    if ((sel & ~3) == 0) {
        if (seg == SEG_SS && (!c->code64 || (sel & 3) != c->cpl))
            raise_gp(c, 0);
        seg_null(c, seg, sel);
        if (seg == SEG_SS) {
            c->seg[SEG_SS].dpl = (uint8_t)c->cpl;
            c->seg[SEG_SS].db = 1;
        }
        return;
    }
    uint64_t d = seg_read_desc(c, sel, EXC_GP);
    struct cpu_segment s;
    seg_from_desc(&s, sel, d, 0);
    if (!s.s)
        raise_gp(c, sel & 0xfffc);
    if (seg == SEG_SS) {
        if ((s.type & 0xa) != 0x2 || (sel & 3) != c->cpl || s.dpl != c->cpl)
            raise_gp(c, sel & 0xfffc);
        if (!s.present)
            raise_exc_err(c, EXC_SS, sel & 0xfffc);
    } else {
        if ((s.type & 0xa) == 0x8)    /* execute-only code */
            raise_gp(c, sel & 0xfffc);
        if (!s.present)
            raise_exc_err(c, EXC_NP, sel & 0xfffc);
    }
    c->seg[seg] = s;
    c->segbase[seg] = s.base;
    if (seg == SEG_SS || c->code64) {
        cpu_update_mode(c);
    } else {
        bool was = c->segchk;
        seg_update_check(c);
        if (c->segchk != was)
            c->brk = true;   /* translated code runs only while nothing needs a check */
    }
}

/* Loads CS for a far transfer at privilege cpl (the caller decided it). */
void seg_load_cs(struct cpu *c, uint16_t sel, int cpl)
{
    if ((sel & ~3) == 0)
        raise_gp(c, 0);
    uint64_t d = seg_read_desc(c, sel, EXC_GP);
    struct cpu_segment s;
    seg_from_desc(&s, sel, d, 0);
    if (!s.s || !(s.type & 8))
        raise_gp(c, sel & 0xfffc);
    if (!s.present)
        raise_exc_err(c, EXC_NP, sel & 0xfffc);
    s.selector = (uint16_t)((sel & ~3) | cpl);
    c->seg[SEG_CS] = s;
    cpu_set_cpl(c, cpl);
    cpu_update_mode(c);
}

/* After a return to an outer privilege level, data segments the new level may not use become
 * null, so user code cannot keep kernel segments. */
void seg_clear_outer(struct cpu *c)
{
    static const int segs[4] = { SEG_ES, SEG_DS, SEG_FS, SEG_GS };
    for (int k = 0; k < 4; k++) {
        struct cpu_segment *s = &c->seg[segs[k]];
        bool conforming_code = (s->type & 0xc) == 0xc;
        if (!s->unusable && !conforming_code && s->dpl < c->cpl) {
            uint64_t base = s->base;
            seg_null(c, segs[k], 0);
            /* FS/GS bases in 64-bit mode live in MSRs and survive */
            if (c->lma && (segs[k] == SEG_FS || segs[k] == SEG_GS))
                s->base = c->segbase[segs[k]] = base;
        }
    }
}
