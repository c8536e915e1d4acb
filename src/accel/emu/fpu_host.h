/* The floating-point operations of the software CPU that are more than + - * /, done by the host's
 * own x87 and SSE2 instructions. The host is x86-64, so this is both the most faithful emulation
 * (the guest gets the very results, partial remainders and "out of range" answers of the
 * hardware) and what keeps qkvm free of libm: its 324 KiB were mapped in every VM for a handful
 * of functions. Only instructions every x86-64 has are used (no SSE4.1). */
#ifndef QKVM_ACCEL_EMU_FPU_HOST_H
#define QKVM_ACCEL_EMU_FPU_HOST_H
#include <stdint.h>

/* What one host x87 instruction left: the new ST(0) and ST(1) (as far as they exist), the status
 * word with the exception flags it raised (all masked) and its condition codes, and how the stack
 * moved: -1 popped, 0, +1 pushed. */
struct fpu_host_out {
    long double st0, st1;
    uint16_t fsw;
    int push;
};

/* Runs the register form D9 op (0xf0-0xff, except 0xf6/0xf7) on the host with ST(0) = a and
 * ST(1) = b, under control word fcw (its rounding and precision control; exceptions masked).
 * Returns 0, or -EINVAL for an op it does not run. */
int fpu_host_d9(unsigned op, uint16_t fcw, long double a, long double b, struct fpu_host_out *out);

/* FRNDINT with rounding control rc (0 nearest-even, 1 down, 2 up, 3 toward zero). Exact for
 * float and double too: their integers are all representable. */
long double fpu_host_rint(long double v, unsigned rc);

/* SQRTSD / SQRTSS (the host's MXCSR: round to nearest). */
double fpu_host_sqrt(double v);
float fpu_host_sqrtf(float v);

/* CVTSD2SI (round to nearest-even) and CVTTSD2SI (truncate): out of range or NaN gives the
 * "integer indefinite", INT32_MIN / INT64_MIN, as the instruction does. */
int32_t fpu_host_cvt_i32(double v, int chop);
int64_t fpu_host_cvt_i64(double v, int chop);
#endif
