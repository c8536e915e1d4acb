/* The software CPU through the mode changes a kernel makes: reset-style real mode -> protected
 * mode -> long mode with paging -> user mode through IRETQ -> SYSCALL/SYSRET -> a software
 * interrupt through a DPL-3 gate with a stack switch from the TSS -> a user page fault with its
 * error code and CR2, after a SYSCALL from compatibility mode that must enter at CSTAR (not LSTAR)
 * and come back with SYSRETL; then an AP-style start from real mode at a SIPI vector. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "accel/emu/emu.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"

#define RAM_SIZE (4u << 20)
#define CODE 0x8000

/* The guest, assembled by the host toolchain; absolute addresses are offsets from modes_start
 * plus CODE, where the test copies it. */
extern const uint8_t modes_start[], modes_end[];
__asm__(".pushsection .rodata\n"
        ".globl modes_start, modes_end\n"
        "modes_start:\n"
        ".code16\n"
        "cli\n"
        "xor %ax, %ax\n"
        "mov %ax, %ds\n"
        "lgdtl gdtr - modes_start + 0x8000\n"
        "mov %cr0, %eax\n"
        "or $1, %eax\n"
        "mov %eax, %cr0\n"
        "ljmpl $0x08, $pm32 - modes_start + 0x8000\n"
        ".code32\n"
        "pm32:\n"
        "mov $0x10, %ax\n"
        "mov %ax, %ds\n"
        "mov %ax, %ss\n"
        "mov $0x7000, %esp\n"
        "mov %cr4, %eax\n"
        "or $0x220, %eax\n"                 /* PAE, OSFXSR */
        "mov %eax, %cr4\n"
        "mov $0x1000, %eax\n"
        "mov %eax, %cr3\n"
        "mov $0xc0000080, %ecx\n"
        "rdmsr\n"
        "or $0x901, %eax\n"                 /* SCE, LME, NXE */
        "wrmsr\n"
        "mov %cr0, %eax\n"
        "or $0x80000000, %eax\n"
        "mov %eax, %cr0\n"
        "ljmp $0x18, $lm64 - modes_start + 0x8000\n"
        ".code64\n"
        "lm64:\n"
        "mov $0x20, %ax\n"
        "mov %ax, %ds\n"
        "mov %ax, %ss\n"
        "lidt idtr - modes_start + 0x8000\n"
        "mov $0x28, %ax\n"
        "ltr %ax\n"
        "mov $0xc0000081, %ecx\n"           /* STAR: user base 0x38, kernel CS 0x18 */
        "xor %eax, %eax\n"
        "mov $0x00380018, %edx\n"
        "wrmsr\n"
        "mov $0xc0000082, %ecx\n"           /* LSTAR */
        "mov $sys - modes_start + 0x8000, %eax\n"
        "xor %edx, %edx\n"
        "wrmsr\n"
        "mov $0xc0000083, %ecx\n"           /* CSTAR */
        "mov $sys32 - modes_start + 0x8000, %eax\n"
        "wrmsr\n"
        "pushq $0x43\n"                     /* IRETQ to user mode */
        "pushq $0x6000\n"
        "pushq $0x2\n"
        "pushq $0x4b\n"
        "pushq $user - modes_start + 0x8000\n"
        "iretq\n"
        "user:\n"
        "mov $41, %rdi\n"
        "syscall\n"
        "mov %rax, %rbx\n"                  /* 42 from the kernel */
        "mov %cs, %r13\n"
        "int $0x80\n"                       /* DPL-3 gate: comes back */
        "mov %rax, %r14\n"
        "pushq $0x3b\n"                     /* to compatibility mode (user code32) */
        "pushq $user32 - modes_start + 0x8000\n"
        "lretq\n"
        ".code32\n"
        "user32:\n"
        "syscall\n"                         /* enters at CSTAR, SYSRETL comes back here */
        "pushl $0x4b\n"
        "pushl $user64 - modes_start + 0x8000\n"
        "lret\n"
        ".code64\n"
        "user64:\n"
        "mov (0x7ff0), %rax\n"              /* a supervisor page: #PF */
        "hlt\n"
        "sys32:\n"
        "mov $0x3232, %r15d\n"
        "sysretl\n"
        "sys:\n"                            /* SYSCALL: CPL 0 on the user stack */
        "lea 1(%rdi), %rax\n"
        "mov %cs, %r8\n"
        "sysretq\n"
        "int80:\n"                          /* interrupt gate: the TSS stack, CPL 0 */
        "mov %rsp, %r9\n"
        "mov 8(%rsp), %r10\n"               /* the CS that was interrupted */
        "mov $0x80, %eax\n"
        "iretq\n"
        "pf:\n"
        "pop %r11\n"                        /* error code */
        "mov %cr2, %r12\n"
        "hlt\n"
        ".p2align 3\n"
        "gdt:\n"
        ".quad 0\n"
        ".quad 0x00cf9b000000ffff\n"        /* 0x08 code32 */
        ".quad 0x00cf93000000ffff\n"        /* 0x10 data */
        ".quad 0x00af9b000000ffff\n"        /* 0x18 code64 */
        ".quad 0x00cf93000000ffff\n"        /* 0x20 kernel data */
        "tss_desc:\n"
        ".quad 0, 0\n"                      /* 0x28 TSS, filled by the test */
        ".quad 0x00cffb000000ffff\n"        /* 0x38 user code32 (SYSRET base, SYSRETL) */
        ".quad 0x00cff3000000ffff\n"        /* 0x40 user data */
        ".quad 0x00affb000000ffff\n"        /* 0x48 user code64 */
        "gdt_end:\n"
        "gdtr:\n"
        ".word gdt_end - gdt - 1\n"
        ".long gdt - modes_start + 0x8000\n"
        "idtr:\n"
        ".word 4095\n"
        ".quad 0x5000\n"
        "modes_end:\n"
        ".popsection\n");

static uint8_t *ram;
static struct machine m;
static struct emu_vm *vm;

static void set_gate(int vec, uint64_t handler, int dpl)
{
    uint64_t *idt = (uint64_t *)(ram + 0x5000);
    idt[2 * vec] = (handler & 0xffff) | (0x18ull << 16) | ((0x8eull | (uint64_t)dpl << 5) << 40) |
                   ((handler & 0xffff0000) << 32);
    idt[2 * vec + 1] = handler >> 32;
}

static void test_modes(void **state)
{
    (void)state;
    size_t len = (size_t)(modes_end - modes_start);
    memset(ram, 0, RAM_SIZE);
    memcpy(ram + CODE, modes_start, len);
    /* identity map the first 2 MiB (supervisor) and the user page at 0x6000 region (user) */
    uint64_t *pml4 = (uint64_t *)(ram + 0x1000), *pdpt = (uint64_t *)(ram + 0x2000);
    uint64_t *pd = (uint64_t *)(ram + 0x3000), *pt = (uint64_t *)(ram + 0x4000);
    pml4[0] = 0x2000 | 7;
    pdpt[0] = 0x3000 | 7;
    pd[0] = 0x4000 | 7;
    for (int k = 0; k < 512; k++)
        pt[k] = (uint64_t)k << 12 | 3;          /* supervisor */
    for (int k = 5; k < 7; k++)
        pt[k] |= 4;                             /* user stack page 0x5000-0x6fff */
    for (int k = 8; k < 10; k++)
        pt[k] |= 4;                             /* the code pages: user-executable */
    /* TSS at 0x9800: RSP0 = 0x7800 */
    uint64_t tss = 0x9800;
    memcpy(ram + tss + 4, &(uint64_t){ 0x7800 }, 8);
    uint64_t d0 = 0x67 | (tss & 0xffffff) << 16 | 0x89ull << 40 | (tss >> 24 & 0xff) << 56;
    uint8_t *gdt_tss = memmem(ram + CODE, len, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
                              "\xff\xff\0\0\0\xfb\xcf\0", 24);
    assert_non_null(gdt_tss);
    memcpy(gdt_tss, &d0, 8);
    /* handlers: find int80 and pf by their first instructions */
    const uint8_t int80_code[] = { 0x49, 0x89, 0xe1 };       /* mov %rsp, %r9 */
    const uint8_t pf_code[] = { 0x41, 0x5b };                 /* pop %r11 */
    uint8_t *p80 = memmem(ram + CODE, len, int80_code, 3), *ppf = memmem(ram + CODE, len, pf_code, 2);
    assert_non_null(p80);
    assert_non_null(ppf);
    set_gate(0x80, (uint64_t)(p80 - ram), 3);
    set_gate(14, (uint64_t)(ppf - ram), 0);

    struct cpu *c = emu_cpu_create(&m, vm, 0, NULL);
    assert_non_null(c);
    struct cpu_state s;
    cpu_state_reset(&s, true);
    s.seg[SEG_CS].selector = 0;
    s.seg[SEG_CS].base = 0;
    s.rip = CODE;
    emu_cpu_set_state(c, &s);
    assert_int_equal(emu_cpu_run(c), EMU_STOP_HLT);
    uint64_t *r = emu_cpu_gpr(c);
    struct cpu_state out;
    emu_cpu_get_state(c, &out);
    assert_int_equal(r[R_BX], 42);             /* SYSCALL handler ran, SYSRET came back */
    assert_int_equal(r[R_R8], 0x18);           /* ... at kernel CS */
    assert_int_equal(r[R_R13], 0x4b);          /* user mode after IRETQ */
    assert_int_equal(r[R_R10], 0x4b);          /* int $0x80 saw the user CS */
    assert_int_equal(r[R_R9], 0x7800 - 40);    /* on the TSS's RSP0, 5 slots pushed */
    assert_int_equal(r[R_R14], 0x80);          /* and IRETQ returned to user mode */
    assert_int_equal(r[R_R15], 0x3232);        /* SYSCALL from compatibility mode: CSTAR */
    assert_int_equal(r[R_R8], 0x18);           /* ... and not LSTAR's handler */
    assert_int_equal(r[R_R11], 5);             /* #PF: present, user, read */
    assert_int_equal(r[R_R12], 0x7ff0);        /* CR2 */
    assert_int_equal(out.seg[SEG_CS].selector & 3, 0);
    assert_true(out.efer & 0x400);             /* LMA */
    emu_cpu_destroy(c);
}

/* An AP: waits for SIPI, then starts in real mode at vector << 12. */
static void test_sipi(void **state)
{
    (void)state;
    memset(ram, 0, RAM_SIZE);
    memcpy(ram + 0x9000, "\x66\xb8\x44\x33\x22\x11\xf4", 7);   /* mov $0x11223344, %eax; hlt */
    struct cpu *c = emu_cpu_create(&m, vm, 1, NULL);
    assert_non_null(c);
    emu_cpu_wait_sipi(c);
    emu_cpu_sipi(c, 0x09);
    assert_int_equal(emu_cpu_run(c), EMU_STOP_HLT);
    assert_int_equal(emu_cpu_gpr(c)[R_AX], 0x11223344);
    struct cpu_state out;
    emu_cpu_get_state(c, &out);
    assert_int_equal(out.seg[SEG_CS].selector, 0x900);
    emu_cpu_destroy(c);
}

static int setup(void **state)
{
    (void)state;
    ram = aligned_alloc(4096, RAM_SIZE);
    if (!ram)
        return -1;
    memset(&m, 0, sizeof(m));
    m.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM_SIZE, .host = ram };
    m.nmem = 1;
    m.ram = ram;
    m.ram_size = RAM_SIZE;
    return emu_vm_create(&m, &vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_modes), cmocka_unit_test(test_sipi) };
    return cmocka_run_group_tests_name("emu_modes", tests, setup, NULL);
}
