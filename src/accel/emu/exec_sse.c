/* SSE/SSE2 and MMX. */
#include "accel/emu/exec.h"

H(h_sse)
{
    emu_log_unimp(c, "unimplemented SSE opcode", i->op);
    raise_ud(c);
}
