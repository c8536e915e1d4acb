/* Differential testing of the software CPU against the host CPU: the same instruction bytes run
 * natively in this process and in the emulator, at the same virtual addresses with the same
 * register and memory contents, and the results are compared.
 *
 * One 4 MiB buffer at HBASE serves both: natively it is ordinary memory (code area executable);
 * for the emulator it is guest RAM at physical 0, mapped by page tables in the buffer itself at
 * virtual HBASE, so pointers in registers mean the same thing on both sides. */
#ifndef QKVM_TESTS_EMU_HARNESS_H
#define QKVM_TESTS_EMU_HARNESS_H
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "accel/emu/emu.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"

#define HBASE 0x500000000000ull   /* clear of ASan's shadow memory */
#define HSIZE (4u << 20)
#define OFF_PML4 0x1000
#define OFF_GDT 0x4000
#define OFF_IDT 0x5000
#define OFF_STUBS 0x6000
#define OFF_CODE 0x10000
#define OFF_DATA 0x100000
#define DATA_SIZE 4096
#define OFF_STACK 0x300000

struct regs {
    uint64_t r[16];
    uint64_t flags;
};

/* outcome of a run */
struct result {
    struct regs regs;
    int vec;              /* -1: completed; else the exception vector */
    uint64_t fault_rip;
    uint8_t data[DATA_SIZE];
    uint8_t xmm[16][16];
};

static uint8_t *hmem;
static struct machine hm;
static struct emu_vm *hvm;
static struct cpu *hcpu;
/* The emulator's translation threshold for the next runs: -1 interprets, 0 translates every
 * block before its first run. */
static int harness_jit = -1;

/* --- native side --- */
struct regs native_in, native_out;
uint64_t native_code, native_saved_rsp, native_tmp;
void run_native(void);
__asm__(".text\n.globl run_native\nrun_native:\n"
        "push %rbx\npush %rbp\npush %r12\npush %r13\npush %r14\npush %r15\n"
        "mov %rsp, native_saved_rsp(%rip)\n"
        "pushq native_in+128(%rip)\npopfq\n"
        "mov native_in+0(%rip), %rax\nmov native_in+8(%rip), %rcx\nmov native_in+16(%rip), %rdx\n"
        "mov native_in+24(%rip), %rbx\nmov native_in+40(%rip), %rbp\nmov native_in+48(%rip), %rsi\n"
        "mov native_in+56(%rip), %rdi\nmov native_in+64(%rip), %r8\nmov native_in+72(%rip), %r9\n"
        "mov native_in+80(%rip), %r10\nmov native_in+88(%rip), %r11\nmov native_in+96(%rip), %r12\n"
        "mov native_in+104(%rip), %r13\nmov native_in+112(%rip), %r14\nmov native_in+120(%rip), %r15\n"
        "mov native_in+32(%rip), %rsp\n"
        "call *native_code(%rip)\n"
        "pushfq\npopq native_out+128(%rip)\ncld\n"
        "mov %rax, native_out+0(%rip)\nmov %rcx, native_out+8(%rip)\nmov %rdx, native_out+16(%rip)\n"
        "mov %rbx, native_out+24(%rip)\nmov %rsp, native_out+32(%rip)\nmov %rbp, native_out+40(%rip)\n"
        "mov %rsi, native_out+48(%rip)\nmov %rdi, native_out+56(%rip)\nmov %r8, native_out+64(%rip)\n"
        "mov %r9, native_out+72(%rip)\nmov %r10, native_out+80(%rip)\nmov %r11, native_out+88(%rip)\n"
        "mov %r12, native_out+96(%rip)\nmov %r13, native_out+104(%rip)\nmov %r14, native_out+112(%rip)\n"
        "mov %r15, native_out+120(%rip)\n"
        "mov native_saved_rsp(%rip), %rsp\n"
        "pop %r15\npop %r14\npop %r13\npop %r12\npop %rbp\npop %rbx\nret\n");

static sigjmp_buf native_jb;
static volatile int native_sig;
static volatile uint64_t native_fault_rip;

static void native_handler(int sig, siginfo_t *si, void *uc_)
{
    (void)si;
    ucontext_t *uc = uc_;
    native_sig = sig;
    native_fault_rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    siglongjmp(native_jb, 1);
}

/* XMM state for tests that use it: loaded before and saved after the native run. */
static uint8_t xmm_in[16][16], xmm_out[16][16];
static int use_xmm;

/* x87/SSE instructions natively run with the compiler's own xmm registers in between: xmm0-7
 * are loaded right before the call and saved right after, with no C code in between. */
static void run_native_xmm(void)
{
    __asm__ volatile("movdqu 0(%0), %%xmm0\nmovdqu 16(%0), %%xmm1\nmovdqu 32(%0), %%xmm2\n"
                     "movdqu 48(%0), %%xmm3\nmovdqu 64(%0), %%xmm4\nmovdqu 80(%0), %%xmm5\n"
                     "movdqu 96(%0), %%xmm6\nmovdqu 112(%0), %%xmm7\n"
                     "sub $128, %%rsp\ncall run_native\nadd $128, %%rsp\n"
                     "movdqu %%xmm0, 0(%1)\nmovdqu %%xmm1, 16(%1)\nmovdqu %%xmm2, 32(%1)\n"
                     "movdqu %%xmm3, 48(%1)\nmovdqu %%xmm4, 64(%1)\nmovdqu %%xmm5, 80(%1)\n"
                     "movdqu %%xmm6, 96(%1)\nmovdqu %%xmm7, 112(%1)\n"
                     :: "r"(xmm_in), "r"(xmm_out)
                     : "memory", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
                       "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

/* --- set-up --- */
static int harness_init(void)
{
    hmem = mmap((void *)HBASE, HSIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (hmem != (void *)HBASE)
        return -1;
    memset(&hm, 0, sizeof(hm));
    hm.mem[0] = (struct mem_region){ .gpa = 0, .size = HSIZE, .host = hmem };
    hm.nmem = 1;
    hm.ram = hmem;
    hm.ram_size = HSIZE;
    if (emu_vm_create(&hm, &hvm) < 0)
        return -1;
    hcpu = emu_cpu_create(&hm, hvm, 0, NULL);
    if (!hcpu)
        return -1;
    /* page tables: VA HBASE + x -> PA x, 2 MiB pages */
    uint64_t *pml4 = (uint64_t *)(hmem + OFF_PML4), *pdpt = (uint64_t *)(hmem + 0x2000);
    uint64_t *pd = (uint64_t *)(hmem + 0x3000);
    pml4[(HBASE >> 39) & 511] = 0x2000 | 3;
    pdpt[(HBASE >> 30) & 511] = 0x3000 | 3;
    for (uint64_t k = 0; k < HSIZE >> 21; k++)
        pd[((HBASE >> 21) & 511) + k] = (k << 21) | 0x83;
    /* GDT: null, 64-bit code 0x08, data 0x10 */
    uint64_t *gdt = (uint64_t *)(hmem + OFF_GDT);
    gdt[1] = 0x00af9b000000ffffull;
    gdt[2] = 0x00cf93000000ffffull;
    /* IDT: vector k -> stub k, a HLT */
    uint64_t *idt = (uint64_t *)(hmem + OFF_IDT);
    for (int k = 0; k < 256; k++) {
        uint64_t h = HBASE + OFF_STUBS + 4 * k;
        idt[2 * k] = (h & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((h & 0xffff0000) << 32);
        idt[2 * k + 1] = h >> 32;
        memcpy(hmem + OFF_STUBS + 4 * k, "\xf4\x90\x90\x90", 4);
    }
    return 0;
}

static void harness_state(struct cpu_state *s, const struct regs *in)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->gpr, in->r, sizeof(s->gpr));
    s->gpr[R_SP] -= 8;   /* where the native call left its return address */
    s->rip = HBASE + OFF_CODE;
    s->rflags = (in->flags & 0xcd5) | 2;
    for (int k = 0; k < SEG_COUNT; k++)
        s->seg[k] = cpu_segment_flat(0x10, 0x3, true);
    s->seg[SEG_CS] = cpu_segment_flat(0x08, 0xb, true);
    s->seg[SEG_TR] = (struct cpu_segment){ .limit = 0x67, .type = 0xb, .present = 1 };
    s->seg[SEG_LDTR] = (struct cpu_segment){ .unusable = true };
    s->gdt = (struct cpu_table){ HBASE + OFF_GDT, 23 };
    s->idt = (struct cpu_table){ HBASE + OFF_IDT, 4095 };
    s->cr0 = 0x80050033;
    s->cr3 = OFF_PML4;
    s->cr4 = 0x620;   /* PAE, OSFXSR, OSXMMEXCPT */
    s->efer = 0xd01;  /* SCE, LME, LMA, NXE */
}

/* Runs code (len bytes, a RET/HLT is appended) both ways from the same inputs. */
static void harness_run(const uint8_t *code, int len, const struct regs *in, const uint8_t *data,
                        struct result *nat, struct result *emu)
{
    uint8_t *cp = hmem + OFF_CODE;
    /* native */
    memcpy(cp, code, len);
    cp[len] = 0xc3;
    memcpy(hmem + OFF_DATA, data, DATA_SIZE);
    native_in = *in;
    native_code = HBASE + OFF_CODE;
    native_sig = 0;
    /* cmocka installs its own handlers for each test: ours go in for the native run */
    struct sigaction sa = { 0 }, old[4];
    static const int sigs[4] = { SIGFPE, SIGSEGV, SIGILL, SIGBUS };
    sa.sa_sigaction = native_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    for (int k = 0; k < 4; k++)
        sigaction(sigs[k], &sa, &old[k]);
    if (sigsetjmp(native_jb, 1) == 0) {
        if (use_xmm)
            run_native_xmm();
        else
            run_native();
        nat->vec = -1;
        nat->regs = native_out;
    } else {
        __asm__ volatile("cld");
        nat->vec = native_sig == SIGFPE ? 0 : native_sig == SIGILL ? 6 : 13;
        nat->fault_rip = native_fault_rip;
        memset(&nat->regs, 0, sizeof(nat->regs));
    }
    for (int k = 0; k < 4; k++)
        sigaction(sigs[k], &old[k], NULL);
    memcpy(nat->data, hmem + OFF_DATA, DATA_SIZE);
    memcpy(nat->xmm, xmm_out, sizeof(xmm_out));

    /* emulated */
    cp[len] = 0xf4;
    memcpy(hmem + OFF_DATA, data, DATA_SIZE);
    emu_vm_invalidate(hvm, 0, HSIZE);
    struct cpu_state s;
    harness_state(&s, in);
    emu_cpu_set_state(hcpu, &s);
    emu_vm_set_jit(hvm, harness_jit);
    for (int k = 0; k < 8; k++)
        memcpy(emu_cpu_xmm(hcpu, k), xmm_in[k], 16);
    enum emu_stop st = emu_cpu_run(hcpu);
    uint64_t rip = emu_cpu_rip(hcpu);
    memcpy(emu->regs.r, emu_cpu_gpr(hcpu), sizeof(emu->regs.r));
    emu->regs.r[R_SP] += 8;
    emu->regs.flags = emu_cpu_rflags(hcpu);
    if (st == EMU_STOP_HLT && rip == HBASE + OFF_CODE + len + 1) {
        emu->vec = -1;
    } else if (st == EMU_STOP_HLT && rip > HBASE + OFF_STUBS && rip <= HBASE + OFF_STUBS + 1024) {
        emu->vec = (int)((rip - 1 - HBASE - OFF_STUBS) / 4);
        uint64_t sp = emu_cpu_gpr(hcpu)[R_SP];
        uint64_t *frame = (uint64_t *)(hmem + (sp - HBASE));
        bool has_err = emu->vec == 8 || (emu->vec >= 10 && emu->vec <= 14) || emu->vec == 17;
        emu->fault_rip = frame[has_err ? 1 : 0];
        /* a page fault natively is SIGSEGV: compare as #GP */
        if (emu->vec == 14)
            emu->vec = 13;
    } else {
        emu->vec = 99;
        emu->fault_rip = rip;
    }
    memcpy(emu->data, hmem + OFF_DATA, DATA_SIZE);
    for (int k = 0; k < 16; k++)
        memcpy(emu->xmm[k], emu_cpu_xmm(hcpu, k), 16);
}

/* --- random operands --- */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Random operand values with the edge cases overrepresented. */
static uint64_t rnd_val(void)
{
    static const uint64_t special[] = { 0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff,
                                        0x7fffffff, 0x80000000, 0xffffffff,
                                        0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull };
    switch (rnd() % 8) {
    case 0: return special[rnd() % (sizeof(special) / sizeof(special[0]))];
    case 1: return rnd() % 64;
    case 2: return (uint64_t)-(int64_t)(rnd() % 64);
    case 3: return rnd() & 0xffffffff;
    default: return rnd();
    }
}

/* --- code building --- */
struct code {
    uint8_t b[256];
    int n;
};

static void emit(struct code *c, const void *bytes, int n)
{
    memcpy(c->b + c->n, bytes, n);
    c->n += n;
}

static void emit1(struct code *c, uint8_t b)
{
    c->b[c->n++] = b;
}

static __attribute__((unused)) void emit_imm(struct code *c, uint64_t v, int n)
{
    for (int k = 0; k < n; k++)
        emit1(c, (uint8_t)(v >> (8 * k)));
}

/* An instruction with a ModRM: prefix (66 / REX per operand size sz), opcode bytes, ModRM.
 * reg is a register (0-15) or a /digit; rm is a register, or -1 for [rbx + disp8].
 * byte_rex: force a REX for byte registers (SPL..DIL instead of AH..BH). */
static __attribute__((unused)) void emit_modrm(struct code *c, int sz, const uint8_t *op, int opn, int reg, int rm, int disp,
                       bool byte_rex, const uint8_t *mandatory, int mn)
{
    if (sz == 2)
        emit1(c, 0x66);
    if (mandatory)
        emit(c, mandatory, mn);
    int rex = (sz == 8 ? 8 : 0) | ((reg & 8) ? 4 : 0) | (rm >= 0 && (rm & 8) ? 1 : 0);
    if (rex || byte_rex)
        emit1(c, (uint8_t)(0x40 | rex));
    emit(c, op, opn);
    if (rm < 0) {
        emit1(c, (uint8_t)(0x40 | ((reg & 7) << 3) | 3));
        emit1(c, (uint8_t)disp);
    } else {
        emit1(c, (uint8_t)(0xc0 | ((reg & 7) << 3) | (rm & 7)));
    }
}

/* A general register usable as an operand: never RSP, and never RBX when memory operands
 * are in play (it holds the data pointer). */
static __attribute__((unused)) int rnd_reg(bool mem)
{
    for (;;) {
        int r = (int)(rnd() % 16);
        if (r == 4 || (mem && r == 3))
            continue;
        return r;
    }
}

static void rnd_regs(struct regs *in)
{
    for (int k = 0; k < 16; k++)
        in->r[k] = rnd_val();
    in->r[R_SP] = HBASE + OFF_STACK;
    in->r[R_BX] = HBASE + OFF_DATA + 1024;
    in->flags = (rnd() & 0x8d5) | 2;
}

static __attribute__((unused)) void rnd_data(uint8_t *data)
{
    for (int k = 0; k < DATA_SIZE; k += 8) {
        uint64_t v = rnd_val();
        memcpy(data + k, &v, 8);
    }
}

/* Compares; on a mismatch prints the case and returns false. */
static bool result_match(const char *what, const struct code *code, const struct regs *in,
                         const struct result *a, const struct result *b, uint64_t flag_mask,
                         uint32_t reg_mask, int nxmm)
{
    bool ok = a->vec == b->vec;
    if (ok && a->vec >= 0)
        ok = a->fault_rip == b->fault_rip;
    if (ok && a->vec < 0) {
        for (int k = 0; k < 16; k++)
            if ((reg_mask >> k) & 1)
                ok = ok && a->regs.r[k] == b->regs.r[k];
        ok = ok && ((a->regs.flags ^ b->regs.flags) & flag_mask) == 0;
        ok = ok && memcmp(a->data, b->data, DATA_SIZE) == 0;
        for (int k = 0; k < nxmm; k++)
            ok = ok && memcmp(a->xmm[k], b->xmm[k], 16) == 0;
    }
    if (ok)
        return true;
    printf("# MISMATCH %s: code", what);
    for (int k = 0; k < code->n; k++)
        printf(" %02x", code->b[k]);
    printf("\n#  in flags %#llx\n", (unsigned long long)in->flags);
    printf("#  native vec %d rip %#llx flags %#llx | emu vec %d rip %#llx flags %#llx\n", a->vec,
           (unsigned long long)a->fault_rip, (unsigned long long)a->regs.flags, b->vec,
           (unsigned long long)b->fault_rip, (unsigned long long)b->regs.flags);
    for (int k = 0; k < 16; k++)
        if (in->r[k] != a->regs.r[k] || a->regs.r[k] != b->regs.r[k])
            printf("#  r%-2d in %016llx native %016llx emu %016llx%s\n", k,
                   (unsigned long long)in->r[k], (unsigned long long)a->regs.r[k],
                   (unsigned long long)b->regs.r[k], a->regs.r[k] != b->regs.r[k] ? "  <--" : "");
    for (int k = 0; k < DATA_SIZE; k++)
        if (a->data[k] != b->data[k]) {
            printf("#  data[%d] native %02x emu %02x\n", k, a->data[k], b->data[k]);
            break;
        }
    for (int k = 0; k < nxmm; k++)
        if (memcmp(a->xmm[k], b->xmm[k], 16)) {
            printf("#  xmm%d native", k);
            for (int j = 15; j >= 0; j--)
                printf("%02x", a->xmm[k][j]);
            printf(" emu ");
            for (int j = 15; j >= 0; j--)
                printf("%02x", b->xmm[k][j]);
            printf("\n");
        }
    return false;
}

#endif
