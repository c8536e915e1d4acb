/* The translation cache's safety (jit.c): no page of it is writable and executable at once (the
 * code buffer is one memfd seen through a read-write and a read-execute view), and no block is
 * emitted beyond the space it was given: with the space cut below what a block needs, its
 * translation is abandoned and the interpreter runs it, with the same results as the host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_harness.h"

#define ALLF 0x8d5ull   /* CF PF AF ZF SF OF */

/* rdi: the data area. A loop of loads, stores and arithmetic (inline code with cold paths),
 * then a long straight run, so blocks of several sizes get translated. */
extern const uint8_t wx_start[], wx_end[];
__asm__(".pushsection .rodata\n"
        ".globl wx_start, wx_end\n"
        "wx_start:\n"
        "mov $100, %ecx\n"
        "xor %eax, %eax\n"
        "1:\n"
        "mov 8(%rdi,%rcx,8), %rdx\n"
        "add %rdx, %rax\n"
        "rol $3, %rax\n"
        "xor %rcx, %rax\n"
        "mov %rax, 8(%rdi,%rcx,8)\n"
        "imul $13, %rax, %rsi\n"
        "sub %rsi, %rdx\n"
        "mov %edx, 4(%rdi)\n"
        "dec %ecx\n"
        "jnz 1b\n"
        ".rept 10\n"
        "add 16(%rdi), %rax\n"
        "mov %rax, 24(%rdi)\n"
        "shl $1, %rdx\n"
        "adc %rax, %rdx\n"
        ".endr\n"
        "wx_end:\n"
        ".popsection\n");

static void run_case(const char *what, int jit)
{
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    struct regs in;
    rng_state = 31;
    rnd_regs(&in);
    rnd_data(data);
    in.r[R_DI] = HBASE + OFF_DATA;
    struct code c = { .n = 0 };
    assert_true(wx_end - wx_start < (long)sizeof(c.b));
    emit(&c, wx_start, (int)(wx_end - wx_start));
    harness_jit = jit;
    harness_run(c.b, c.n, &in, data, &nat, &emu);
    harness_jit = -1;
    assert_int_equal(nat.vec, -1);
    assert_true(result_match(what, &c, &in, &nat, &emu, ALLF, 0xffff, 0));
}

/* After translated code ran: every mapping but the harness's own (it runs the test code
 * natively, so it is RWX by design) is writable or executable, not both; the code buffer is
 * there in both views. */
static void test_no_wx(void **s)
{
    (void)s;
    run_case("wx loop (translated)", 0);
    uint64_t blocks, refused;
    emu_cpu_jit_stats(hcpu, &blocks, &refused);
    assert_true(blocks > 0);
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    int rx = 0, rw = 0, bad = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char perm[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perm) != 3)
            continue;
        bool jit = strstr(line, "memfd:qkvm-jit") != NULL;
        if (jit && strcmp(perm, "r-xs") == 0)
            rx++;
        if (jit && strcmp(perm, "rw-s") == 0)
            rw++;
        if (perm[1] == 'w' && perm[2] == 'x' && !(lo >= HBASE && hi <= HBASE + HSIZE)) {
            printf("# writable and executable: %s", line);
            bad++;
        }
    }
    fclose(f);
    assert_int_equal(bad, 0);
    assert_int_equal(rx, 1);
    assert_int_equal(rw, 1);
}

/* With less space than its blocks need, translation is abandoned (counted) and never writes past
 * the space: the results stay the host's, for every cut from a few bytes to enough. */
static void test_block_space(void **s)
{
    (void)s;
    uint64_t blocks0, refused0, blocks, refused;
    emu_cpu_jit_stats(hcpu, &blocks0, &refused0);
    for (size_t space = 8; space <= 4096; space += space < 512 ? 24 : 256) {
        char what[64];
        snprintf(what, sizeof(what), "wx loop, %zu bytes per block", space);
        emu_vm_set_jit_space(hvm, space);
        run_case(what, 0);
    }
    emu_vm_set_jit_space(hvm, 0);
    emu_cpu_jit_stats(hcpu, &blocks, &refused);
    assert_true(refused > refused0);   /* small spaces refused the blocks... */
    assert_true(blocks > blocks0);     /* ...larger ones took them */
    /* the default bound fits them all */
    emu_cpu_jit_stats(hcpu, &blocks0, &refused0);
    run_case("wx loop, default space", 0);
    emu_cpu_jit_stats(hcpu, &blocks, &refused);
    assert_int_equal(refused, refused0);
    assert_true(blocks > blocks0);
}

static int setup(void **s)
{
    (void)s;
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_no_wx), cmocka_unit_test(test_block_space) };
    return cmocka_run_group_tests_name("emu_wx", tests, setup, NULL);
}
