#include "vm/cpu_state.h"

#include <string.h>

void cpu_state_reset(struct cpu_state *s, bool bsp)
{
    memset(s, 0, sizeof(*s));
    s->rip = 0xfff0;
    s->rflags = 0x2;
    s->gpr[R_DX] = 0x600;   /* family/model/stepping, as hardware leaves it after reset */
    for (int i = 0; i < SEG_COUNT; i++)
        s->seg[i] = (struct cpu_segment){ .limit = 0xffff, .type = 0x3, .s = 1, .present = 1 };
    s->seg[SEG_CS] = (struct cpu_segment){ .base = 0xffff0000, .limit = 0xffff, .selector = 0xf000,
                                           .type = 0xb, .s = 1, .present = 1 };
    s->seg[SEG_TR] = (struct cpu_segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
    s->seg[SEG_LDTR] = (struct cpu_segment){ .limit = 0xffff, .type = 0x2, .present = 1 };
    s->gdt.limit = s->idt.limit = 0xffff;
    s->cr0 = 0x60000010;
    s->apic_base = 0xfee00000 | (1 << 11) | (bsp ? (1 << 8) : 0);
}

struct cpu_segment cpu_segment_flat(uint16_t selector, uint8_t type, bool long_mode)
{
    bool code = type & 0x8;
    return (struct cpu_segment){
        .base = 0, .limit = 0xffffffff, .selector = selector, .type = type, .s = 1, .dpl = 0,
        .present = 1, .db = (long_mode && code) ? 0 : 1, .l = (long_mode && code) ? 1 : 0, .g = 1,
    };
}
