/* x87 floating point. */
#include "accel/emu/exec.h"

void fpu_reset(struct fpu *f)
{
    memset(f, 0, sizeof(*f));
    f->fcw = 0x37f;
}

void fpu_fxsave(struct cpu *c, uint8_t *area)
{
    memset(area, 0, 512);
    memcpy(area + 24, &c->mxcsr, 4);
    memcpy(area + 160, c->xmm, 256);
}

void fpu_fxrstor(struct cpu *c, const uint8_t *area)
{
    memcpy(&c->mxcsr, area + 24, 4);
    memcpy(c->xmm, area + 160, 256);
}

H(h_fpu)
{
    emu_log_unimp(c, "unimplemented x87 opcode", i->op);
    raise_ud(c);
}
