/* The software TLB (mmu.c) against what the SDM requires of a TLB (vol. 3, 4.10.4): INVLPG of
 * any address inside a large page drops every translation of that page, though the TLB keeps
 * one entry per 4 KiB in different slots (and INVLPG looks at one slot unless a large page may
 * hold the address); INVLPG of a 4 KiB page; MOV to CR3 drops non-global translations (and
 * qkvm, like the hardware, keeps global ones); clearing CR4.PGE drops the global ones too.
 * Each runs interpreted and translated. Privileged code: the emulator only, the native run of
 * the harness faults at once and is not looked at. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "emu_harness.h"

/* A second page-table tree beside the harness's, under its PDPT's entry 1 (VA HBASE + 1 GiB):
 * a page directory at PA 0x7000 and a page table at PA 0x8000 (free below OFF_CODE). */
#define VA1G (HBASE + (1ull << 30))
#define PD2 0x7000
#define PT2 0x8000
#define MARK(pa, v) (*(uint64_t *)(hmem + (pa)) = (v))

static void tables_reset(void)
{
    uint64_t *pdpt = (uint64_t *)(hmem + 0x2000);
    pdpt[((HBASE >> 30) & 511) + 1] = PD2 | 3;
    memset(hmem + PD2, 0, 0x2000);
    uint64_t *pd = (uint64_t *)(hmem + PD2), *pt = (uint64_t *)(hmem + PT2);
    pd[0] = 0x200000 | 0x83;          /* VA1G: a 2 MiB page at PA 2 MiB */
    pd[1] = PT2 | 3;                  /* VA1G + 2 MiB: 4 KiB pages */
    pt[0] = 0x290000 | 3;
    pt[1] = 0x281000 | 0x103;         /* global */
    pt[2] = 0x282000 | 3;
    MARK(0x280000, 0x1111);             /* VA1G + 0x80000 before the remap */
    MARK(0x80000, 0x2222);              /* ...and after */
    MARK(0x290000, 0xa1);               /* VA1G + 2 MiB before and after */
    MARK(0x80000 + 8, 0xa2);
    MARK(0x281000, 0x3333);             /* the global page before and after */
    MARK(0x81000, 0x4444);
    MARK(0x282000, 0x5555);             /* the non-global one */
    MARK(0x82000, 0x6666);
}

/* rsi: VA1G + 0x80000, rdi: the PDE of VA1G, rdx: VA1G + 0x1ff000 (the same 2 MiB page, another
 * slot of the TLB); r12: VA1G + 2 MiB, r13: its PTE. */
extern const uint8_t inv_start[], inv_end[];
__asm__(".pushsection .rodata\n"
        ".globl inv_start, inv_end\n"
        "inv_start:\n"
        "mov (%rsi), %rax\n"                /* 0x1111, and a TLB entry */
        "mov (%rdx), %r8\n"                 /* a second entry of the same large page */
        "movq $0x83, (%rdi)\n"              /* the 2 MiB page now at PA 0 */
        "invlpg (%rdx)\n"
        "mov (%rsi), %rcx\n"                /* 0x2222: the whole large page was dropped */
        "mov (%r12), %r9\n"                 /* 0xa1 */
        "movq $0x80003, (%r13)\n"           /* the 4 KiB page now at PA 0x80000 */
        "invlpg (%r12)\n"
        "mov 8(%r12), %r10\n"               /* 0xa2 */
        "inv_end:\n"
        ".popsection\n");

/* Runs [start, end) from fresh tables with these registers (the others random), interpreted
 * (jit -1) or translated (0); the emulator's result in emu. */
static void run_tables(const uint8_t *start, const uint8_t *end, const uint64_t set[16], int jit,
                       struct result *emu)
{
    static uint8_t data[DATA_SIZE];
    static struct result nat;
    tables_reset();
    struct regs in;
    rng_state = 31;
    rnd_regs(&in);
    for (int k = 0; k < 16; k++)
        if (set[k])
            in.r[k] = set[k];
    struct code c = { .n = 0 };
    emit(&c, start, (int)(end - start));
    harness_jit = jit;
    harness_run(c.b, c.n, &in, data, &nat, emu);
    harness_jit = -1;
    assert_int_equal(emu->vec, -1);
}

static void test_invlpg(void **s)
{
    (void)s;
    static struct result emu;
    const uint64_t set[16] = { [R_SI] = VA1G + 0x80000, [R_DI] = HBASE + PD2,
                               [R_DX] = VA1G + 0x1ff000, [12] = VA1G + (2u << 20),
                               [13] = HBASE + PT2 };
    for (int jit = -1; jit <= 0; jit++) {
        run_tables(inv_start, inv_end, set, jit, &emu);
        assert_int_equal(emu.regs.r[R_AX], 0x1111);
        assert_int_equal(emu.regs.r[R_CX], 0x2222);
        assert_int_equal(emu.regs.r[9], 0xa1);
        assert_int_equal(emu.regs.r[10], 0xa2);
    }
}

/* rsi: the global page (VA1G + 2 MiB + 4 KiB), rdi: the non-global one (+ 8 KiB), r12/r13:
 * their PTEs. */
extern const uint8_t cr3_start[], cr3_end[];
__asm__(".pushsection .rodata\n"
        ".globl cr3_start, cr3_end\n"
        "cr3_start:\n"
        "mov %cr4, %rax\n"
        "or $0x80, %rax\n"                  /* CR4.PGE */
        "mov %rax, %cr4\n"
        "mov (%rsi), %rax\n"                /* 0x3333 */
        "mov (%rdi), %rbx\n"                /* 0x5555 */
        "movq $0x81103, (%r12)\n"           /* both pages moved */
        "movq $0x82003, (%r13)\n"
        "mov %cr3, %rcx\n"
        "mov %rcx, %cr3\n"
        "mov (%rsi), %r8\n"                 /* 0x3333: the global translation was kept */
        "mov (%rdi), %r9\n"                 /* 0x6666: the other one was not */
        "mov %cr4, %rcx\n"
        "and $~0x80, %rcx\n"
        "mov %rcx, %cr4\n"                  /* PGE off: every translation goes */
        "mov (%rsi), %r10\n"                /* 0x4444 */
        "cr3_end:\n"
        ".popsection\n");

static void test_cr3_global(void **s)
{
    (void)s;
    static struct result emu;
    const uint64_t set[16] = { [R_SI] = VA1G + (2u << 20) + 0x1000, [R_DI] = VA1G + (2u << 20) + 0x2000,
                               [12] = HBASE + PT2 + 8, [13] = HBASE + PT2 + 16 };
    for (int jit = -1; jit <= 0; jit++) {
        run_tables(cr3_start, cr3_end, set, jit, &emu);
        assert_int_equal(emu.regs.r[R_AX], 0x3333);
        assert_int_equal(emu.regs.r[R_BX], 0x5555);
        assert_int_equal(emu.regs.r[8], 0x3333);
        assert_int_equal(emu.regs.r[9], 0x6666);
        assert_int_equal(emu.regs.r[10], 0x4444);
    }
}

static int setup(void **s)
{
    (void)s;
    (void)result_match;   /* the harness's comparison with the native run: not used here */
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_invlpg), cmocka_unit_test(test_cr3_global) };
    return cmocka_run_group_tests_name("emu_tlb", tests, setup, NULL);
}
