/* Indirect branches in translated code (jit.c's emit_ind): CALL and JMP through a register and
 * through memory, and RET, go from block to block through the jump cache without the run loop.
 * A loop of them runs natively, interpreted, translated at once and translated after a first
 * interpreted run (so the cache holds the targets), and registers, flags and memory must agree;
 * then the called function is rewritten between two translated runs on the same CPU (the jump
 * cache must not hand out the stale block). Also: inline SSE arithmetic still faults where its
 * handler would, and a block with a handler call before its branch links to its target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "emu_harness.h"

#define ALLF 0x8d5ull   /* CF PF AF ZF SF OF */

/* rdi: the data area. Position-independent: targets come from RIP-relative LEAs. */
extern const uint8_t ind_start[], ind_end[];
__asm__(".pushsection .rodata\n"
        ".globl ind_start, ind_end\n"
        "ind_start:\n"
        "lea 9f(%rip), %r8\n"
        "lea 8f(%rip), %r9\n"
        "mov $200, %ecx\n"
        "xor %eax, %eax\n"
        "xor %edx, %edx\n"
        "1:\n"
        "call *%r8\n"                       /* CALL reg */
        "mov %r8, 16(%rdi)\n"
        "call *16(%rdi)\n"                  /* CALL [mem] */
        "jmp *%r9\n"                        /* JMP reg */
        "2:\n"
        "add %eax, %edx\n"
        "lea 3f(%rip), %r10\n"
        "mov %r10, 24(%rdi)\n"
        "jmp *24(%rdi)\n"                   /* JMP [mem] */
        "3:\n"
        "mov %edx, 32(%rdi,%rcx,4)\n"
        "dec %ecx\n"
        "jnz 1b\n"
        "jmp 7f\n"
        "9:\n"                              /* the function */
        "add $3, %eax\n"
        "rol $1, %edx\n"
        "ret\n"
        "8:\n"                              /* the JMP target */
        "imul $7, %eax, %eax\n"
        "jmp 2b\n"
        "7:\n"
        "nop\n"
        "ind_end:\n"
        ".popsection\n");

static void test_indirect(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    int len = (int)(ind_end - ind_start);
    /* the function's "add $3, %eax" (83 c0 03): the last runs make it add 5 */
    const uint8_t *add3 = memmem(ind_start, (size_t)len, "\x83\xc0\x03", 3);
    assert_non_null(add3);
    uint64_t prev_ax = 0;
    for (int run = 0; run < 5; run++) {
        int jit = run < 3 ? run - 1 : run == 3 ? 1 : 0;
        struct regs in;
        rng_state = 21;
        rnd_regs(&in);
        rnd_data(data);
        in.r[R_DI] = HBASE + OFF_DATA;
        struct code c = { .n = 0 };
        emit(&c, ind_start, len);
        if (run == 4)
            c.b[add3 - ind_start + 2] = 5;
        harness_jit = jit;
        harness_run(c.b, c.n, &in, data, &nat, &emu);
        harness_jit = -1;
        assert_int_equal(nat.vec, -1);
        assert_true(result_match(jit < 0 ? "indirect" : jit ? "indirect (cached)" : "indirect (translated)",
                                 &c, &in, &nat, &emu, ALLF, 0xffff, 0));
        if (run == 4)   /* the rewritten function ran */
            assert_true(emu.regs.r[R_AX] != prev_ax);
        prev_ax = emu.regs.r[R_AX];
    }
}

/* A loop whose block calls a handler (XLAT) before its branch: the handler writes RIP back
 * mid-block, and the exit must still find its target's place in the page, link to it and stay
 * in translated code (it once computed the target from the block's start and never linked, so
 * every iteration went through the run loop). */
extern const uint8_t lnk_start[], lnk_end[];
__asm__(".pushsection .rodata\n"
        ".globl lnk_start, lnk_end\n"
        "lnk_start:\n"
        "mov $2000, %ecx\n"
        "xor %edx, %edx\n"
        "1:\n"
        "xlat\n"                            /* a handler call, mid-block */
        "add %eax, %edx\n"
        "rol $3, %edx\n"
        "dec %ecx\n"
        "jnz 1b\n"
        "lnk_end:\n"
        ".popsection\n");

static void test_link_after_call(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    for (int jit = -1; jit <= 0; jit++) {
        struct regs in;
        rng_state = 23;
        rnd_regs(&in);
        rnd_data(data);
        in.r[R_BX] = HBASE + OFF_DATA;   /* XLAT's table */
        struct code c = { .n = 0 };
        emit(&c, lnk_start, (int)(lnk_end - lnk_start));
        uint64_t blocks0, slow0, blocks1, slow1;
        emu_cpu_loop_stats(hcpu, &blocks0, &slow0);
        harness_jit = jit;
        harness_run(c.b, c.n, &in, data, &nat, &emu);
        harness_jit = -1;
        emu_cpu_loop_stats(hcpu, &blocks1, &slow1);
        assert_int_equal(nat.vec, -1);
        assert_true(result_match(jit < 0 ? "link (interpreted)" : "link (translated)", &c, &in, &nat,
                                 &emu, ALLF, 0xffff, 0));
        if (jit < 0) {
            assert_true(blocks1 - blocks0 >= 2000);   /* the interpreter: one lookup per block */
        } else {
            /* linked: back to the run loop once per chain budget (cpu.c), not per iteration */
            print_message("# translated: %llu run-loop lookups for 2000 iterations\n",
                          (unsigned long long)(blocks1 - blocks0));
            assert_true(blocks1 - blocks0 < 200);
        }
    }
}

/* SSE arithmetic inline keeps the handler's checks: with CR0.TS set, ADDSD raises #NM at the
 * ADDSD, translated as interpreted (the host cannot run this at CPL 3: emulator only). */
static void test_sse_guard(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    static const uint8_t code[] = {
        0x0f, 0x20, 0xc0,             /* mov %cr0, %rax */
        0x48, 0x83, 0xc8, 0x08,       /* or $8, %rax: TS */
        0x0f, 0x22, 0xc0,             /* mov %rax, %cr0 */
        0xf2, 0x0f, 0x58, 0xc1,       /* addsd %xmm1, %xmm0 */
    };
    for (int jit = -1; jit <= 0; jit++) {
        struct regs in;
        rng_state = 22;
        rnd_regs(&in);
        struct code c = { .n = 0 };
        emit(&c, code, (int)sizeof(code));
        harness_jit = jit;
        harness_run(c.b, c.n, &in, data, &nat, &emu);
        harness_jit = -1;
        assert_int_equal(emu.vec, 7);
        assert_true(emu.fault_rip == HBASE + OFF_CODE + 10);
    }
}

/* A loop whose first instruction (MOV EAX, imm32) crosses from the code's first page into its
 * second. Such an instruction is a block of its own, cached with the second page's frame and
 * generation (block.c): the loop must not look it up past the jump cache on every iteration
 * (it did: never cached, a walk of the block hash and a decode each time), and translated it
 * must not leave translated code for the run loop either. With smc, each
 * iteration first stores CL into the immediate's byte in the second page, so the cached
 * instruction goes stale every time and the new immediate must be seen. */
static int cross_code(uint8_t *b, bool smc)
{
    static const uint8_t head[] = {
        0xb9, 0xd0, 0x07, 0x00, 0x00,       /* mov $2000, %ecx */
        0x31, 0xd2,                         /* xor %edx, %edx */
        0xe9, 0xec, 0x0f, 0x00, 0x00,       /* jmp 0xff8 */
    };
    static const uint8_t loop[] = {
        0x88, 0x0d, 0x02, 0x00, 0x00, 0x00, /* 0xff8: mov %cl, 0x1000 (RIP-relative) */
        0xb8, 0x78, 0x56, 0x34, 0x12,       /* 0xffe: mov $0x12345678, %eax: bytes to 0x1002 */
        0x01, 0xc2,                         /* 0x1003: add %eax, %edx */
        0xc1, 0xc2, 0x03,                   /* rol $3, %edx */
        0xff, 0xc9,                         /* dec %ecx */
        0x75, 0xec,                         /* jnz 0xff8 */
    };
    memset(b, 0x90, 0xff8);
    memcpy(b, head, sizeof(head));
    memcpy(b + 0xff8, loop, sizeof(loop));
    if (!smc)
        memset(b + 0xff8, 0x90, 6);   /* the store becomes NOPs */
    return 0xff8 + (int)sizeof(loop);
}

static void test_page_crossing(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE], bytes[0x1100];
    static struct result nat, emu;
    for (int smc = 0; smc <= 1; smc++) {
        for (int jit = -1; jit <= 0; jit++) {
            struct regs in;
            rng_state = 24;
            rnd_regs(&in);
            rnd_data(data);
            int len = cross_code(bytes, smc);
            struct code c = { .n = 0 };   /* the loop alone, for the message on a mismatch */
            emit(&c, bytes + 0xff8, len - 0xff8);
            uint64_t blocks0, slow0, blocks1, slow1;
            emu_cpu_loop_stats(hcpu, &blocks0, &slow0);
            harness_jit = jit;
            harness_run(bytes, len, &in, data, &nat, &emu);
            harness_jit = -1;
            emu_cpu_loop_stats(hcpu, &blocks1, &slow1);
            assert_int_equal(nat.vec, -1);
            assert_true(result_match(smc ? "crossing, rewritten" : "crossing", &c, &in, &nat, &emu,
                                     ALLF, 0xffff, 0));
            print_message("# smc %d jit %d: %llu lookups past the jump cache for 2000 iterations\n",
                          smc, jit, (unsigned long long)(slow1 - slow0));
            print_message("# smc %d jit %d: %llu run-loop lookups\n", smc, jit,
                          (unsigned long long)(blocks1 - blocks0));
            if (smc)
                assert_true(slow1 - slow0 >= 2000);   /* decoded again each time: it was written */
            else
                assert_true(slow1 - slow0 < 100);
            if (!smc && jit == 0)   /* translated, and linked from the block before it */
                assert_true(blocks1 - blocks0 < 200);
        }
    }
}

/* CLI; STI in a loop: with no interrupt notice pending the STI's shadow holds nothing back,
 * and the next block runs whole rather than its first instruction one at a time through
 * debug_step (cpu.c: every Linux STI once did). Emulator only (CPL 0 here, CLI faults natively
 * at CPL 3); the result checked against the same loop in C. */
static void test_sti_shadow(void **s)
{
    (void)s;
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    static const uint8_t code[] = {
        0xb9, 0xd0, 0x07, 0x00, 0x00,       /* mov $2000, %ecx */
        0x31, 0xd2,                         /* xor %edx, %edx */
        0xfa,                               /* 1: cli */
        0xfb,                               /* sti */
        0x01, 0xca,                         /* add %ecx, %edx: in the shadow */
        0xc1, 0xc2, 0x03,                   /* rol $3, %edx */
        0xff, 0xc9,                         /* dec %ecx */
        0x75, 0xf5,                         /* jnz 1b */
    };
    uint32_t want = 0;
    for (uint32_t n = 2000; n; n--) {
        want += n;
        want = want << 3 | want >> 29;
    }
    for (int jit = -1; jit <= 0; jit++) {
        struct regs in;
        rng_state = 25;
        rnd_regs(&in);
        struct code c = { .n = 0 };
        emit(&c, code, (int)sizeof(code));
        uint64_t steps0 = emu_cpu_debug_steps(hcpu);
        harness_jit = jit;
        harness_run(c.b, c.n, &in, data, &nat, &emu);
        harness_jit = -1;
        uint64_t steps = emu_cpu_debug_steps(hcpu) - steps0;
        assert_int_equal(emu.vec, -1);
        assert_int_equal(emu.regs.r[R_DX], want);
        assert_true(emu.regs.flags & 0x200);   /* IF */
        print_message("# jit %d: %llu instructions stepped for 2000 STIs\n", jit,
                      (unsigned long long)steps);
        assert_true(steps < 100);
    }
}

static int setup(void **s)
{
    (void)s;
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_indirect), cmocka_unit_test(test_sse_guard),
                                        cmocka_unit_test(test_link_after_call),
                                        cmocka_unit_test(test_page_crossing),
                                        cmocka_unit_test(test_sti_shadow) };
    return cmocka_run_group_tests_name("emu_jitind", tests, setup, NULL);
}
