/* AES-NI (AESENC, AESENCLAST, AESDEC, AESDECLAST, AESIMC, AESKEYGENASSIST) and PCLMULQDQ, the
 * legacy SSE forms (exec_avx.c runs the VEX.128 ones through here). The AES rounds run on the
 * host's AES unit (qkvm offers AES-NI only where the host has it: emu_features), the carry-less
 * multiply is a loop. */
#include "accel/emu/exec.h"

typedef long long v2di __attribute__((vector_size(16)));

static void aes_host(int op, union xmm *d, const union xmm *s, unsigned imm)
{
    v2di x, y;
    memcpy(&x, d, 16);
    memcpy(&y, s, 16);
    switch (op) {
    case 0x2dc: __asm__("aesenc %1, %0" : "+x"(x) : "x"(y)); break;
    case 0x2dd: __asm__("aesenclast %1, %0" : "+x"(x) : "x"(y)); break;
    case 0x2de: __asm__("aesdec %1, %0" : "+x"(x) : "x"(y)); break;
    case 0x2df: __asm__("aesdeclast %1, %0" : "+x"(x) : "x"(y)); break;
    case 0x2db: __asm__("aesimc %1, %0" : "=x"(x) : "x"(y)); break;
    default:
        /* AESKEYGENASSIST takes its round constant as an immediate: one asm per value */
        switch (imm & 0xff) {
#define K(n) case n: __asm__("aeskeygenassist $" #n ", %1, %0" : "=x"(x) : "x"(y)); break;
#define K16(n) K(n) K(n + 1) K(n + 2) K(n + 3) K(n + 4) K(n + 5) K(n + 6) K(n + 7) \
               K(n + 8) K(n + 9) K(n + 10) K(n + 11) K(n + 12) K(n + 13) K(n + 14) K(n + 15)
        K16(0) K16(16) K16(32) K16(48) K16(64) K16(80) K16(96) K16(112) K16(128) K16(144)
        K16(160) K16(176) K16(192) K16(208) K16(224) K16(240)
#undef K16
#undef K
        }
        break;
    }
    memcpy(d, &x, 16);
}

static uint64_t clmul_lo(uint64_t a, uint64_t b, uint64_t *hi)
{
    uint64_t lo = 0, h = 0;
    for (int k = 0; k < 64; k++)
        if ((b >> k) & 1) {
            lo ^= a << k;
            if (k)
                h ^= a >> (64 - k);
        }
    *hi = h;
    return lo;
}

bool aes_exec(struct cpu *c, const struct insn *i, int p)
{
    int op = i->op & 0xfff;
    if (p != P_66)
        return false;
    const uint32_t *f = c->vm->model.feat;
    bool clmul = op == 0x344;
    if (!(f[CPUF_1_ECX] & (clmul ? CPUID_1_ECX_PCLMUL : CPUID_1_ECX_AES)))
        return false;
    union xmm s, *x = &c->xmm[i->reg];
    sse_src_get(c, i, false, 16, true, &s);
    if (clmul) {
        uint64_t hi, lo = clmul_lo(x->q[i->imm & 1], s.q[(i->imm >> 4) & 1], &hi);
        x->q[0] = lo;
        x->q[1] = hi;
        return true;
    }
    aes_host(op, x, &s, (unsigned)i->imm);
    return true;
}
