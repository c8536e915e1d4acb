/* The software TLB (mmu.c) against what the SDM requires of a TLB (vol. 3, 4.10.4): INVLPG of
 * any address inside a large page drops every translation of that page, though the TLB keeps
 * one entry per 4 KiB in different slots (and INVLPG looks at one slot unless a large page may
 * hold the address); INVLPG of a 4 KiB page; MOV to CR3 drops non-global translations (and
 * qkvm, like the hardware, keeps global ones); clearing CR4.PGE drops the global ones too.
 * With PCIDs (CR4.PCIDE, -cpu max): MOV to CR3 with bit 63 keeps the current PCID's
 * translations, a switch to another PCID does not use them, INVPCID of each type drops what it
 * must, clearing CR4.PCIDE flushes, and the #GP/#UD cases of CR4.PCIDE and INVPCID.
 * The TLB's own shape: a flush after more fills than its fill log holds (the whole set is
 * scanned) and after fewer (only the logged slots), INVLPG of a large page in both cases, and
 * the paging-structure cache (a PT found once is used by the next walk) dropped by a CR3 write
 * and by an INVLPG of any address.
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
#define PT3 0x9000
#define MARK(pa, v) (*(uint64_t *)(hmem + (pa)) = (v))

static void tables_reset(void)
{
    uint64_t *pdpt = (uint64_t *)(hmem + 0x2000);
    pdpt[((HBASE >> 30) & 511) + 1] = PD2 | 3;
    memset(hmem + PD2, 0, 0x2000);
    uint64_t *pd = (uint64_t *)(hmem + PD2), *pt = (uint64_t *)(hmem + PT2);
    pd[0] = 0x200000 | 0x83;          /* VA1G: a 2 MiB page at PA 2 MiB */
    pd[1] = PT2 | 3;                  /* VA1G + 2 MiB: 4 KiB pages */
    for (int k = 2; k < 6; k++)
        pd[k] = 0x200000 | 0x83;      /* VA1G + 4 MiB to + 12 MiB: PA 2 MiB again */
    uint64_t *pt3 = (uint64_t *)(hmem + PT3);
    memset(pt3, 0, 0x1000);
    pt3[2] = 0x82000 | 3;             /* a second PT for VA1G + 2 MiB: 0x6666 at index 2 */
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

/* The CPU model of the next runs (qemu64, the harness's default, has no PCID). */
static void use_model(const char *spec)
{
    char err[256];
    if (emu_vm_set_cpu_model(hvm, spec, err, sizeof(err)) < 0)
        fail_msg("-cpu %s: %s", spec, err);
}

/* Runs [start, end) from fresh tables with these registers (the others random), interpreted
 * (jit -1) or translated (0); the emulator's result in emu, which may end in an exception. */
static void run_tables_exc(const uint8_t *start, const uint8_t *end, const uint64_t set[16],
                           int jit, struct result *emu)
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
}

/* The same, for code that must complete */
static void run_tables(const uint8_t *start, const uint8_t *end, const uint64_t set[16], int jit,
                       struct result *emu)
{
    run_tables_exc(start, end, set, jit, emu);
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

/* On pages_set, PCIDE and PGE on, then: */
extern const uint8_t pcid_start[], pcid_end[];
__asm__(".pushsection .rodata\n"
        ".globl pcid_start, pcid_end\n"
        "pcid_start:\n"
        "mov %cr4, %rax\n"
        "or $0x20080, %rax\n"              /* PCIDE (CR3[11:0] is 0, in long mode) and PGE */
        "mov %rax, %cr4\n"
        "mov (%rsi), %rax\n"                /* 0x3333, global */
        "mov (%rdi), %rbx\n"                /* 0x5555, PCID 0 */
        "movq $0x81103, (%r12)\n"           /* both pages moved */
        "movq $0x82003, (%r13)\n"
        "mov %cr3, %rcx\n"
        "bts $63, %rcx\n"
        "mov %rcx, %cr3\n"                  /* PCID 0 again, no flush */
        "mov (%rdi), %r8\n"                 /* 0x5555: kept */
        "mov %cr3, %r9\n"                   /* bit 63 is not stored */
        "or $1, %rcx\n"
        "mov %rcx, %cr3\n"                  /* PCID 1, no flush */
        "mov (%rdi), %r10\n"                /* 0x6666: PCID 0's translation is not PCID 1's */
        "mov (%rsi), %r11\n"                /* 0x3333: a global one serves every PCID */
        "mov %cr3, %r14\n"                  /* PCID 1 */
        "movq $0x282003, (%r13)\n"          /* back where it was */
        "mov %cr4, %rbp\n"
        "btr $17, %rbp\n"
        "mov %rbp, %cr4\n"                  /* PCIDE off (allowed with a PCID in CR3) */
        "mov (%rdi), %r15\n"                /* 0x5555: that flushed */
        "pcid_end:\n"
        ".popsection\n");

/* rsi: the global page (VA1G + 2 MiB + 4 KiB), rdi: the non-global one (+ 8 KiB), r12/r13: their
 * PTEs, as cr3_start has them */
static const uint64_t pages_set[16] = { [R_SI] = VA1G + (2u << 20) + 0x1000,
                                        [R_DI] = VA1G + (2u << 20) + 0x2000,
                                        [12] = HBASE + PT2 + 8, [13] = HBASE + PT2 + 16 };

/* Runs [start, end) on pages_set under -cpu model, interpreted and translated, and checks every
 * register want gives a value (0: not looked at). */
static void run_pages_expect(const uint8_t *start, const uint8_t *end, const char *model,
                             const uint64_t want[16])
{
    static struct result emu;
    use_model(model);
    for (int jit = -1; jit <= 0; jit++) {
        run_tables(start, end, pages_set, jit, &emu);
        for (int k = 0; k < 16; k++)
            if (want[k] && emu.regs.r[k] != want[k])
                fail_msg("%s: r%d = %#llx, want %#llx", jit ? "interpreted" : "translated", k,
                         (unsigned long long)emu.regs.r[k], (unsigned long long)want[k]);
    }
    use_model("qemu64");
}

static void test_pcid_cr3(void **s)
{
    (void)s;
    /* r9: CR3 as the harness set it, without bit 63; r14: with PCID 1 */
    const uint64_t want[16] = { [R_AX] = 0x3333, [R_BX] = 0x5555, [8] = 0x5555, [9] = OFF_PML4,
                                [10] = 0x6666, [11] = 0x3333, [14] = OFF_PML4 | 1, [15] = 0x5555 };
    run_pages_expect(pcid_start, pcid_end, "max", want);
}

/* INVPCID of each type on pages_set, PCIDE and PGE on; the descriptor on the stack */
extern const uint8_t invpcid_start[], invpcid_end[];
__asm__(".pushsection .rodata\n"
        ".globl invpcid_start, invpcid_end\n"
        "invpcid_start:\n"
        "mov %cr4, %rax\n"
        "or $0x20080, %rax\n"
        "mov %rax, %cr4\n"
        "mov (%rdi), %rax\n"                /* 0x5555 */
        "movq $0x82003, (%r13)\n"
        "push %rdi\n"
        "push $0\n"
        "xor %ecx, %ecx\n"
        "invpcid (%rsp), %rcx\n"            /* type 0: rdi's page in PCID 0 */
        "add $16, %rsp\n"
        "mov (%rdi), %rbx\n"                /* 0x6666 */
        "movq $0x282003, (%r13)\n"
        "push $0\n"
        "push $0\n"
        "mov $1, %ecx\n"
        "invpcid (%rsp), %rcx\n"            /* type 1: PCID 0 */
        "mov (%rdi), %r8\n"                 /* 0x5555 */
        "movq $0x82003, (%r13)\n"
        "mov $3, %ecx\n"
        "invpcid (%rsp), %rcx\n"            /* type 3: every PCID but globals */
        "mov (%rdi), %r9\n"                 /* 0x6666 */
        "mov (%rsi), %r10\n"                /* 0x3333, global */
        "movq $0x81103, (%r12)\n"
        "mov $2, %ecx\n"
        "invpcid (%rsp), %rcx\n"            /* type 2: everything */
        "mov (%rsi), %r11\n"                /* 0x4444 */
        "add $16, %rsp\n"
        "invpcid_end:\n"
        ".popsection\n");

static void test_invpcid(void **s)
{
    (void)s;
    const uint64_t want[16] = { [R_AX] = 0x5555, [R_BX] = 0x6666, [8] = 0x5555, [9] = 0x6666,
                                [10] = 0x3333, [11] = 0x4444 };
    run_pages_expect(invpcid_start, invpcid_end, "max", want);
}

/* rax the INVPCID type, rdx the descriptor's first quadword, rsi its address, each plus one
 * (the harness randomizes a register set to 0) */
#define FAULTER(name, body)                                                                     \
    extern const uint8_t name##_start[], name##_end[];                                         \
    __asm__(".pushsection .rodata\n.globl " #name "_start, " #name "_end\n" #name "_start:\n" \
            body #name "_end:\n.popsection\n");
/* CR4.PCIDE with CR3[11:0] != 0 */
FAULTER(pcide_cr3, "mov %cr3, %rax\nor $1, %rax\nmov %rax, %cr3\n"
                   "mov %cr4, %rax\nbts $17, %rax\nmov %rax, %cr4\n")
FAULTER(inv_desc, "dec %rax\ndec %rdx\ndec %rsi\npush %rsi\npush %rdx\ninvpcid (%rsp), %rax\nadd $16, %rsp\n")

static void test_pcid_faults(void **s)
{
    (void)s;
    static struct result emu;
    static const struct {
        const char *model;
        uint64_t type, d0, addr;
        bool cr3_case;
        int vec;
    } cases[] = {
        { "max", 0, 0, 0, true, 13 },                        /* PCIDE with a PCID in CR3 */
        { "qemu64", 0, 0, 0, true, 13 },                     /* no PCID: CR4.PCIDE reserved */
        { "max", 4, 0, 0, false, 13 },                       /* type 4 */
        { "max", 0, 0, 0x0000800000000000ull, false, 13 },   /* type 0, non-canonical */
        { "max", 0, 1, 0, false, 13 },                       /* a PCID with CR4.PCIDE off */
        { "max", 1, 1, 0, false, 13 },
        { "max", 2, 0x1000, 0, false, 13 },                  /* reserved bits 63:12 */
        { "max", 0, 0, 0x00007fffffff0000ull, false, -1 },   /* valid: no fault */
        { "max", 2, 1, 0, false, -1 },                       /* types 2 and 3 take any PCID */
        { "qemu64", 2, 0, 0, false, 6 },                     /* no INVPCID: #UD */
        { "max,-invpcid", 2, 0, 0, false, 6 },
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const uint64_t set[16] = { [R_AX] = cases[k].type + 1, [R_DX] = cases[k].d0 + 1,
                                   [R_SI] = cases[k].addr + 1 };
        use_model(cases[k].model);
        for (int jit = -1; jit <= 0; jit++) {
            if (cases[k].cr3_case)
                run_tables_exc(pcide_cr3_start, pcide_cr3_end, set, jit, &emu);
            else
                run_tables_exc(inv_desc_start, inv_desc_end, set, jit, &emu);
            if (emu.vec != cases[k].vec)
                fail_msg("case %zu (-cpu %s, type %llu): vector %d, want %d", k, cases[k].model,
                         (unsigned long long)cases[k].type, emu.vec, cases[k].vec);
        }
    }
    use_model("qemu64");
}

/* Reads the rdx pages from rsi (a TLB entry each), makes the 2 MiB pages at VA1G + 4 MiB to
 * + 12 MiB not present (rdi: the first PDE), then either reloads CR3 (r12 = 1) or INVLPGs (r13)
 * (r12 = 2), and reads the pages again from the last one down: the first read must fault, with
 * rcx still rdx and rax the last page. An entry the flush missed lets a read through and rcx
 * counts down. */
extern const uint8_t fill_start[], fill_end[];
__asm__(".pushsection .rodata\n"
        ".globl fill_start, fill_end\n"
        "fill_start:\n"
        "mov %rsi, %rax\n"
        "mov %rdx, %rcx\n"
        "1: mov (%rax), %r8\n"
        "add $0x1000, %rax\n"
        "dec %rcx\n"
        "jnz 1b\n"
        "movq $0, (%rdi)\n"
        "movq $0, 8(%rdi)\n"
        "movq $0, 16(%rdi)\n"
        "movq $0, 24(%rdi)\n"
        "cmp $1, %r12\n"
        "jne 2f\n"
        "mov %cr3, %rcx\n"
        "mov %rcx, %cr3\n"
        "jmp 3f\n"
        "2: invlpg (%r13)\n"
        "3: mov %rdx, %rcx\n"
        "4: lea -1(%rcx), %rax\n"
        "shl $12, %rax\n"
        "add %rsi, %rax\n"
        "mov (%rax), %r8\n"
        "dec %rcx\n"
        "jnz 4b\n"
        "fill_end:\n"
        ".popsection\n");

static void test_flush_fills(void **s)
{
    (void)s;
    static struct result emu;
    static const struct {
        uint64_t base, n, how, inv;
    } cases[] = {
        /* past the fill log (TLB_LOG): the flush scans every slot */
        { VA1G + (4u << 20), 2048, 1, 0 },
        { VA1G + (4u << 20), 2048, 2, VA1G + (10u << 20) + 0x5000 },
        /* within it: only the logged slots */
        { VA1G + (6u << 20), 200, 1, 0 },
        { VA1G + (6u << 20), 200, 2, VA1G + (6u << 20) + 0x5000 },
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const uint64_t set[16] = { [R_SI] = cases[k].base, [R_DX] = cases[k].n,
                                   [R_DI] = HBASE + PD2 + 16, [12] = cases[k].how,
                                   [13] = cases[k].inv ? cases[k].inv : HBASE + OFF_DATA };
        for (int jit = -1; jit <= 0; jit++) {
            run_tables_exc(fill_start, fill_end, set, jit, &emu);
            /* the harness reports #PF as 13, as the native run's SIGSEGV; rax says which read */
            uint64_t last = cases[k].base + ((cases[k].n - 1) << 12);
            if (emu.vec != 13 || emu.regs.r[R_CX] != cases[k].n || emu.regs.r[R_AX] != last)
                fail_msg("case %zu (%s): vector %d at %#llx with rcx %llu, want 13 at %#llx with %llu",
                         k, jit ? "interpreted" : "translated", emu.vec,
                         (unsigned long long)emu.regs.r[R_AX], (unsigned long long)emu.regs.r[R_CX],
                         (unsigned long long)last, (unsigned long long)cases[k].n);
        }
    }
}

/* A walk through VA1G + 2 MiB (the PT at PT2), then its PDE points at PT3; after a CR3 reload
 * (r12 = 1) or an INVLPG of another address (r13, r12 = 2) a page of the same 2 MiB that was
 * never in the TLB must be walked through PT3 (0x6666), not through the cached PT2 (0x5555). */
extern const uint8_t pwc_start[], pwc_end[];
__asm__(".pushsection .rodata\n"
        ".globl pwc_start, pwc_end\n"
        "pwc_start:\n"
        "mov (%rsi), %rax\n"                /* 0xa1 */
        "mov %rdx, (%rdi)\n"
        "cmp $1, %r12\n"
        "jne 1f\n"
        "mov %cr3, %rcx\n"
        "mov %rcx, %cr3\n"
        "jmp 2f\n"
        "1: invlpg (%r13)\n"
        "2: mov 0x2000(%rsi), %rbx\n"
        "pwc_end:\n"
        ".popsection\n");

static void test_walk_cache(void **s)
{
    (void)s;
    static struct result emu;
    for (uint64_t how = 1; how <= 2; how++) {
        const uint64_t set[16] = { [R_SI] = VA1G + (2u << 20), [R_DX] = PT3 | 3,
                                   [R_DI] = HBASE + PD2 + 8, [12] = how,
                                   [13] = HBASE + OFF_DATA };
        for (int jit = -1; jit <= 0; jit++) {
            run_tables(pwc_start, pwc_end, set, jit, &emu);
            assert_int_equal(emu.regs.r[R_AX], 0xa1);
            if (emu.regs.r[R_BX] != 0x6666)
                fail_msg("%s: %#llx after %s, want 0x6666", jit ? "interpreted" : "translated",
                         (unsigned long long)emu.regs.r[R_BX], how == 1 ? "MOV CR3" : "INVLPG");
            /* the walk through PT3 set the accessed bits of the new PDE and of the PTE */
            assert_true(*(uint64_t *)(hmem + PD2 + 8) & 0x20);
            assert_true(*(uint64_t *)(hmem + PT3 + 16) & 0x20);
        }
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
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_invlpg), cmocka_unit_test(test_cr3_global),
                                        cmocka_unit_test(test_pcid_cr3), cmocka_unit_test(test_invpcid),
                                        cmocka_unit_test(test_pcid_faults),
                                        cmocka_unit_test(test_flush_fills),
                                        cmocka_unit_test(test_walk_cache) };
    return cmocka_run_group_tests_name("emu_tlb", tests, setup, NULL);
}
