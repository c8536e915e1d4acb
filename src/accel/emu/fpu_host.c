/* Host x87/SSE2 instructions for the software CPU (see fpu_host.h). Each x87 sequence loads its
 * operands from memory and stores every result back, so the x87 stack is empty between asm
 * statements; the clobber list tells the compiler that the whole stack is used. */
#include "accel/emu/fpu_host.h"

#include <errno.h>

#define X87_CLOBBERS "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "cc", "memory"

/* The guest's control word with every exception masked: a host trap would kill qkvm. */
#define ENTER "fnstcw %[save]\n\tfldcw %[cw]\n\tfnclex\n\t"
#define LEAVE "\n\tfldcw %[save]"

/* ST(0) = a -> ST(0) */
#define X87_UNARY(insn)                                                                   \
    __asm__ volatile(ENTER "fldt %[a]\n\t" insn "\n\tfnstsw %%ax\n\tfstpt %[r0]" LEAVE    \
                     : [r0] "=m"(out->st0), "=a"(sw), [save] "=m"(save)                   \
                     : [a] "m"(a), [cw] "m"(cw) : X87_CLOBBERS)
/* ST(0) = a, ST(1) = b -> ST(0) = result, popped */
#define X87_POP(insn)                                                                     \
    __asm__ volatile(ENTER "fldt %[b]\n\tfldt %[a]\n\t" insn "\n\tfnstsw %%ax\n\t"        \
                     "fstpt %[r0]" LEAVE                                                  \
                     : [r0] "=m"(out->st0), "=a"(sw), [save] "=m"(save)                   \
                     : [a] "m"(a), [b] "m"(b), [cw] "m"(cw) : X87_CLOBBERS)
/* ST(0) = a, ST(1) = b -> ST(0), ST(1) */
#define X87_BINARY(insn)                                                                  \
    __asm__ volatile(ENTER "fldt %[b]\n\tfldt %[a]\n\t" insn "\n\tfnstsw %%ax\n\t"        \
                     "fstpt %[r0]\n\tfstpt %[r1]" LEAVE                                   \
                     : [r0] "=m"(out->st0), [r1] "=m"(out->st1), "=a"(sw), [save] "=m"(save) \
                     : [a] "m"(a), [b] "m"(b), [cw] "m"(cw) : X87_CLOBBERS)
/* ST(0) = a -> pushes one more, unless C2 says the argument was out of range (FPTAN, FSINCOS:
 * |a| >= 2^63 leaves a as it was); skip_mask 0 for an instruction that always pushes. */
#define X87_PUSH(insn, skip_mask)                                                         \
    __asm__ volatile(ENTER "fldt %[a]\n\t" insn "\n\tfnstsw %%ax\n\tfstpt %[r0]\n\t"     \
                     "testw %[m], %%ax\n\tjnz 1f\n\tfstpt %[r1]\n1:" LEAVE                \
                     : [r0] "=m"(out->st0), [r1] "=m"(out->st1), "=a"(sw), [save] "=m"(save) \
                     : [a] "m"(a), [cw] "m"(cw), [m] "i"(skip_mask) : X87_CLOBBERS)

int fpu_host_d9(unsigned op, uint16_t fcw, long double a, long double b, struct fpu_host_out *out)
{
    uint16_t cw = fcw | 0x3f, save, sw;
    out->st1 = b;
    out->push = 0;
    switch (op) {
    case 0xf0: X87_UNARY("f2xm1"); break;
    case 0xf1: X87_POP("fyl2x"); out->push = -1; break;
    case 0xf2: X87_PUSH("fptan", 0x400); out->push = !(sw & 0x400); break;
    case 0xf3: X87_POP("fpatan"); out->push = -1; break;
    case 0xf4: X87_PUSH("fxtract", 0); out->push = 1; break;
    case 0xf5: X87_BINARY("fprem1"); break;
    case 0xf8: X87_BINARY("fprem"); break;
    case 0xf9: X87_POP("fyl2xp1"); out->push = -1; break;
    case 0xfa: X87_UNARY("fsqrt"); break;
    case 0xfb: X87_PUSH("fsincos", 0x400); out->push = !(sw & 0x400); break;
    case 0xfc: X87_UNARY("frndint"); break;
    case 0xfd: X87_BINARY("fscale"); break;
    case 0xfe: X87_UNARY("fsin"); break;
    case 0xff: X87_UNARY("fcos"); break;
    default: return -EINVAL;
    }
    out->fsw = sw;
    return 0;
}

long double fpu_host_rint(long double v, unsigned rc)
{
    struct fpu_host_out o;
    uint16_t fcw = (uint16_t)(0x37f | (rc & 3) << 10);
    fpu_host_d9(0xfc, fcw, v, 0, &o);
    return o.st0;
}

double fpu_host_sqrt(double v)
{
    __asm__("sqrtsd %1, %0" : "=x"(v) : "x"(v));
    return v;
}

float fpu_host_sqrtf(float v)
{
    __asm__("sqrtss %1, %0" : "=x"(v) : "x"(v));
    return v;
}

int32_t fpu_host_cvt_i32(double v, int chop)
{
    int32_t r;
    if (chop)
        __asm__("cvttsd2si %1, %0" : "=r"(r) : "x"(v));
    else
        __asm__("cvtsd2si %1, %0" : "=r"(r) : "x"(v));
    return r;
}

int64_t fpu_host_cvt_i64(double v, int chop)
{
    int64_t r;
    if (chop)
        __asm__("cvttsd2si %1, %0" : "=r"(r) : "x"(v));
    else
        __asm__("cvtsd2si %1, %0" : "=r"(r) : "x"(v));
    return r;
}
