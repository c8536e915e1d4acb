/* `info registers` in QEMU's words (target/i386/cpu-dump.c, x86_cpu_dump_state), so a user
 * reading it, or a script scraping RIP= out of it, finds the same text. */
#include "vm/cpu_state.h"

#include <inttypes.h>

#define EFER_LMA (1ull << 10)
#define CR0_PE   1ull

/* The descriptor's high dword as QEMU keeps it in SegmentCache.flags (bits 8-23). */
static uint32_t seg_flags(const struct cpu_segment *g)
{
    return (uint32_t)(g->type & 0xf) << 8 | (uint32_t)(g->s & 1) << 12 | (uint32_t)(g->dpl & 3) << 13 |
           (uint32_t)(g->present & 1) << 15 | (uint32_t)(g->avl & 1) << 20 | (uint32_t)(g->l & 1) << 21 |
           (uint32_t)(g->db & 1) << 22 | (uint32_t)(g->g & 1) << 23;
}

static void dump_seg(const struct cpu_state *s, FILE *out, const char *name, const struct cpu_segment *g)
{
    bool lma = s->efer & EFER_LMA, cs64 = lma && s->seg[SEG_CS].l;
    uint32_t fl = seg_flags(g);
    if (cs64)
        fprintf(out, "%-3s=%04x %016" PRIx64 " %08x %08x", name, g->selector, g->base, g->limit, fl);
    else
        fprintf(out, "%-3s=%04x %08x %08x %08x", name, g->selector, (uint32_t)g->base, g->limit, fl);
    if ((s->cr0 & CR0_PE) && g->present) {
        fprintf(out, " DPL=%d ", g->dpl & 3);
        if (g->s) {
            if (g->type & 8)   /* code */
                fprintf(out, "%s [%c%c", g->l ? "CS64" : g->db ? "CS32" : "CS16", g->type & 4 ? 'C' : '-',
                        g->type & 2 ? 'R' : '-');
            else
                fprintf(out, "%s [%c%c", g->db || lma ? "DS  " : "DS16", g->type & 4 ? 'E' : '-',
                        g->type & 2 ? 'W' : '-');
            fprintf(out, "%c]", g->type & 1 ? 'A' : '-');
        } else {
            static const char *const sys[2][16] = {
                { "Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate", "IntGate16",
                  "TrapGate16", "Reserved", "TSS32-avl", "Reserved", "TSS32-busy", "CallGate32", "Reserved",
                  "IntGate32", "TrapGate32" },
                { "<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved", "Reserved", "Reserved",
                  "Reserved", "TSS64-avl", "Reserved", "TSS64-busy", "CallGate64", "Reserved", "IntGate64",
                  "TrapGate64" },
            };
            fprintf(out, "%s", sys[lma][g->type & 0xf]);
        }
    }
    fprintf(out, "\r\n");
}

void cpu_state_dump(const struct cpu_state *s, FILE *out)
{
    bool lma = s->efer & EFER_LMA;
    uint32_t fl = (uint32_t)s->rflags;
    int cpl = (s->cr0 & CR0_PE) ? s->seg[SEG_SS].dpl & 3 : 0;
    char flags[8] = {
        fl & 0x400 ? 'D' : '-', fl & 0x800 ? 'O' : '-', fl & 0x80 ? 'S' : '-', fl & 0x40 ? 'Z' : '-',
        fl & 0x10 ? 'A' : '-', fl & 0x4 ? 'P' : '-', fl & 0x1 ? 'C' : '-', 0,
    };
    const uint64_t *r = s->gpr;
    if (lma) {
        fprintf(out,
                "RAX=%016" PRIx64 " RBX=%016" PRIx64 " RCX=%016" PRIx64 " RDX=%016" PRIx64 "\r\n"
                "RSI=%016" PRIx64 " RDI=%016" PRIx64 " RBP=%016" PRIx64 " RSP=%016" PRIx64 "\r\n"
                "R8 =%016" PRIx64 " R9 =%016" PRIx64 " R10=%016" PRIx64 " R11=%016" PRIx64 "\r\n"
                "R12=%016" PRIx64 " R13=%016" PRIx64 " R14=%016" PRIx64 " R15=%016" PRIx64 "\r\n"
                "RIP=%016" PRIx64 " RFL=%08x [%s] CPL=%d II=0 A20=1 SMM=0 HLT=%d\r\n",
                r[R_AX], r[R_BX], r[R_CX], r[R_DX], r[R_SI], r[R_DI], r[R_BP], r[R_SP], r[R_R8], r[R_R9],
                r[R_R10], r[R_R11], r[R_R12], r[R_R13], r[R_R14], r[R_R15], s->rip, fl, flags, cpl, s->halted);
    } else {
        fprintf(out,
                "EAX=%08x EBX=%08x ECX=%08x EDX=%08x\r\n"
                "ESI=%08x EDI=%08x EBP=%08x ESP=%08x\r\n"
                "EIP=%08x EFL=%08x [%s] CPL=%d II=0 A20=1 SMM=0 HLT=%d\r\n",
                (uint32_t)r[R_AX], (uint32_t)r[R_BX], (uint32_t)r[R_CX], (uint32_t)r[R_DX], (uint32_t)r[R_SI],
                (uint32_t)r[R_DI], (uint32_t)r[R_BP], (uint32_t)r[R_SP], (uint32_t)s->rip, fl, flags, cpl,
                s->halted);
    }
    static const char *const names[SEG_COUNT] = { "ES", "CS", "SS", "DS", "FS", "GS", "TR", "LDT" };
    static const int order[SEG_COUNT] = { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_LDTR, SEG_TR };
    for (int i = 0; i < SEG_COUNT; i++)
        dump_seg(s, out, names[order[i]], &s->seg[order[i]]);
    if (lma) {
        fprintf(out, "GDT=     %016" PRIx64 " %08x\r\n", s->gdt.base, s->gdt.limit);
        fprintf(out, "IDT=     %016" PRIx64 " %08x\r\n", s->idt.base, s->idt.limit);
        fprintf(out, "CR0=%08x CR2=%016" PRIx64 " CR3=%016" PRIx64 " CR4=%08x\r\n", (uint32_t)s->cr0, s->cr2,
                s->cr3, (uint32_t)s->cr4);
    } else {
        fprintf(out, "GDT=     %08x %08x\r\n", (uint32_t)s->gdt.base, s->gdt.limit);
        fprintf(out, "IDT=     %08x %08x\r\n", (uint32_t)s->idt.base, s->idt.limit);
        fprintf(out, "CR0=%08x CR2=%08x CR3=%08x CR4=%08x\r\n", (uint32_t)s->cr0, (uint32_t)s->cr2,
                (uint32_t)s->cr3, (uint32_t)s->cr4);
    }
    for (int i = 0; i < 4; i++)
        fprintf(out, "DR%d=%016" PRIx64 " ", i, s->dr[i]);
    fprintf(out, "\r\nDR6=%016" PRIx64 " DR7=%016" PRIx64 "\r\n", s->dr[6], s->dr[7]);
    fprintf(out, "EFER=%016" PRIx64 "\r\n", s->efer);
}
