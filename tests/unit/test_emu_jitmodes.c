/* The block translator outside 64-bit mode: one guest runs loops in 16-bit real mode (segment
 * bases, 16-bit addressing with its wrap, 0x66/0x67-prefixed 32-bit operations, 16-bit Jcc
 * targets) and in 32-bit protected mode (a data segment with a nonzero base, a 32-bit stack with
 * PUSH/POP/CALL/RET, byte and flag consumers), then calls the same function with a 16-bit stack
 * segment under 32-bit code (blocks translated for a 32-bit stack must not serve it). It runs
 * interpreted, translated at once and translated after a few interpreted runs; registers, flags
 * and all of RAM must agree, and the data the loops leave must be what C computes. */
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
#define A(l) l " - jm_start + 0x8000"

extern const uint8_t jm_start[], jm_end[];
__asm__(".pushsection .rodata\n"
        ".globl jm_start, jm_end\n"
        "jm_start:\n"
        ".code16\n"
        "cli\n"
        "xor %ax, %ax\n"
        "mov %ax, %ds\n"
        "lgdtl " A("gdtr") "\n"
        "mov $0x0900, %ax\n"                /* DS base 0x9000 */
        "mov %ax, %ds\n"
        "mov $0x0600, %ax\n"                /* SS base 0x6000 */
        "mov %ax, %ss\n"
        "mov $0x1000, %sp\n"
        "mov $0x0a00, %ax\n"                /* ES base 0xa000 */
        "mov %ax, %es\n"
        "xor %si, %si\n"
        "mov $300, %cx\n"
        "xor %ebx, %ebx\n"
        "mov $0x12345678, %edx\n"
        "mov $0x200, %di\n"
        "mov $0x100, %bp\n"
        "1:\n"
        "mov %si, %ax\n"
        "mov %al, (%si)\n"                  /* DS:SI */
        "movzbl (%si), %eax\n"
        "addl %eax, %ebx\n"
        "imull %edx, %ebx\n"
        "xorl %ebx, %edx\n"
        "roll $5, %edx\n"
        "mov %dl, (%bp,%di)\n"              /* SS:BP+DI */
        "mov %dh, %es:1(%bp,%si)\n"
        "cmpb $0x80, %dl\n"
        "setb %al\n"
        "addb %al, %bh\n"
        "leal 0xfff0(%bx,%si), %eax\n"      /* wraps at 64 KiB */
        "addl %eax, %edx\n"
        "call sub16\n"
        "inc %si\n"
        "dec %cx\n"
        "jnz 1b\n"
        "mov %edx, %es:0x800\n"
        "mov %ebx, %es:0x804\n"
        "mov %cr0, %eax\n"
        "or $1, %eax\n"
        "mov %eax, %cr0\n"
        "ljmpl $0x08, $" A("pm32") "\n"
        "sub16:\n"
        "push %bx\n"
        "add $3, %bx\n"
        "pop %ax\n"
        "xor %ax, %bx\n"
        "ret\n"
        ".code32\n"
        "pm32:\n"
        "mov $0x10, %ax\n"
        "mov %ax, %ss\n"
        "mov %ax, %es\n"
        "mov $0x7000, %esp\n"
        "mov $0x18, %ax\n"                  /* DS base 0x10000 */
        "mov %ax, %ds\n"
        "xor %esi, %esi\n"
        "mov $500, %ecx\n"
        "mov $1, %ebx\n"
        "xor %edx, %edx\n"
        "xor %edi, %edi\n"
        "2:\n"
        "mov %esi, %eax\n"
        "imul $2654435761, %eax, %eax\n"
        "mov %eax, (,%esi,4)\n"
        "add (,%esi,4), %edx\n"
        "push %edx\n"
        "push %ecx\n"
        "call f32\n"
        "pop %ecx\n"
        "pop %edx\n"
        "add %eax, %edx\n"
        "movb %dl, %es:0x30000(%esi)\n"
        "cmp $250, %esi\n"
        "cmovae %esi, %edi\n"
        "setb %al\n"
        "movzbl %al, %eax\n"
        "add %eax, %ebx\n"
        "rol $3, %ebx\n"
        "addr16 mov 0x100(%bx), %eax\n"     /* DS:BX+0x100, 16-bit */
        "xor %eax, %edx\n"
        "inc %esi\n"
        "dec %ecx\n"
        "jnz 2b\n"
        "mov %edx, %es:0x40000\n"
        "mov %ebx, %es:0x40004\n"
        "mov %edi, %es:0x40008\n"
        /* the same function with a 16-bit stack: SP wraps, ESP's top half stays */
        "mov $0x20, %ax\n"
        "mov %ax, %ss\n"
        "mov $0x12340ff0, %esp\n"
        "mov $40, %ecx\n"
        "3:\n"
        "push %ecx\n"
        "call f32\n"
        "pop %ecx\n"
        "add %eax, %edx\n"
        "dec %ecx\n"
        "jnz 3b\n"
        "mov %esp, %es:0x4000c\n"
        "mov $0x10, %ax\n"
        "mov %ax, %ss\n"
        "mov $0x7000, %esp\n"
        "mov %edx, %es:0x40010\n"
        /* CALL/JMP through a register and memory, and RET, first with the stack in the code's
         * own page (each push is a store into code: the block ends after it), then not */
        "mov $" A("g32") ", %esi\n"
        "mov %esi, %es:0x40020\n"
        "mov $0x8ff0, %esp\n"
        "mov $20, %ecx\n"
        "5:\n"
        "call *%esi\n"
        "call *%es:0x40020\n"
        "mov $" A("6f") ", %eax\n"
        "jmp *%eax\n"
        "6:\n"
        "dec %ecx\n"
        "jnz 5b\n"
        "mov $0x7000, %esp\n"
        "mov $40, %ecx\n"
        "7:\n"
        "call *%esi\n"
        "call *%es:0x40020\n"
        "mov $" A("8f") ", %eax\n"
        "jmp *%eax\n"
        "8:\n"
        "dec %ecx\n"
        "jnz 7b\n"
        "hlt\n"
        "g32:\n"
        "add $0x11, %edi\n"
        "ret\n"
        "f32:\n"
        "push %ebx\n"
        "lea 7(%ecx,%edx), %ebx\n"
        "mov %ebx, %eax\n"
        "xor %edx, %eax\n"
        "pop %ebx\n"
        "ret\n"
        ".p2align 3\n"
        "gdt:\n"
        ".quad 0\n"
        ".quad 0x00cf9b000000ffff\n"        /* 0x08 code32 */
        ".quad 0x00cf93000000ffff\n"        /* 0x10 flat data, 32-bit stack */
        ".quad 0x00cf93010000ffff\n"        /* 0x18 data based at 0x10000 */
        ".quad 0x000093020000ffff\n"        /* 0x20 16-bit data based at 0x20000 */
        "gdt_end:\n"
        "gdtr:\n"
        ".word gdt_end - gdt - 1\n"
        ".long " A("gdt") "\n"
        "jm_end:\n"
        ".code64\n"
        ".popsection\n");

static uint8_t *ram;
static struct machine m;

struct result {
    uint64_t r[16], rip, rflags;
    uint8_t *ram;
};

static void run(int threshold, struct result *out)
{
    struct emu_vm *vm;
    memset(ram, 0, RAM_SIZE);
    memcpy(ram + CODE, jm_start, (size_t)(jm_end - jm_start));
    assert_int_equal(emu_vm_create(&m, &vm), 0);
    emu_vm_set_jit(vm, threshold);
    struct cpu *c = emu_cpu_create(&m, vm, 0, NULL);
    assert_non_null(c);
    struct cpu_state s;
    cpu_state_reset(&s, true);
    s.seg[SEG_CS].selector = 0;
    s.seg[SEG_CS].base = 0;
    s.rip = CODE;
    emu_cpu_set_state(c, &s);
    assert_int_equal(emu_cpu_run(c), EMU_STOP_HLT);
    memcpy(out->r, emu_cpu_gpr(c), sizeof(out->r));
    out->rip = emu_cpu_rip(c);
    out->rflags = emu_cpu_rflags(c);
    out->ram = malloc(RAM_SIZE);
    assert_non_null(out->ram);
    memcpy(out->ram, ram, RAM_SIZE);
    emu_cpu_destroy(c);
    emu_vm_destroy(vm);
}

static uint32_t rd32(const uint8_t *p, uint32_t a)
{
    uint32_t v;
    memcpy(&v, p + a, 4);
    return v;
}

static void test_modes_translated(void **state)
{
    (void)state;
    struct result interp, now, later;
    assert_true(jm_end - jm_start < 0xf00);   /* the stack at 0x8ff0 is in the code's page */
    run(-1, &interp);
    run(0, &now);
    run(3, &later);
    /* what C says the loops leave */
    for (uint32_t k = 0; k < 300; k++)
        assert_int_equal(interp.ram[0x9000 + k], k & 0xff);
    for (uint32_t k = 0; k < 500; k++)
        assert_int_equal(rd32(interp.ram, 0x10000 + 4 * k), (uint32_t)(k * 2654435761u));
    assert_int_equal(rd32(interp.ram, 0x40008), 499);           /* CMOVAE's last taken */
    assert_int_equal(interp.r[R_DI], 499 + 0x11 * 2 * 60);       /* g32's calls */
    assert_int_equal(rd32(interp.ram, 0x4000c), 0x12340ff0);    /* 16-bit SP back to 0x0ff0 */
    assert_int_equal(interp.r[R_SP], 0x7000);
    const struct result *tr[2] = { &now, &later };
    for (int n = 0; n < 2; n++) {
        for (int g = 0; g < 16; g++)
            assert_int_equal(tr[n]->r[g], interp.r[g]);
        assert_int_equal(tr[n]->rip, interp.rip);
        assert_int_equal(tr[n]->rflags, interp.rflags);
        for (uint32_t a = 0; a < RAM_SIZE; a += 4)
            if (rd32(tr[n]->ram, a) != rd32(interp.ram, a))
                fail_msg("run %d: RAM at %#x is %#x, interpreted %#x", n, a, rd32(tr[n]->ram, a),
                         rd32(interp.ram, a));
    }
    free(interp.ram);
    free(now.ram);
    free(later.ram);
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
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(ram);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_modes_translated) };
    return cmocka_run_group_tests_name("emu_jitmodes", tests, setup, teardown);
}
