/* Block-to-block transfer in translated code (jit.c's emit_exit and the run loop's jit_link):
 * links are direct jumps without a generation check, so these check what must still hold.
 * - a loop that rewrites its own code through a store runs the new code from the next round on,
 *   interpreted and translated (a store into a page with code leaves the chain);
 * - another thread rewrites the code of a self-linked loop from outside (emu_vm_invalidate, as a
 *   device would) while it spins: the new code must run (the chain budget takes the chain back to
 *   the run loop, which sees the new generation);
 * - a self-IPI in a tight loop is taken right after the write that sent it; one held back while
 *   IF is 0 does not make the links leave, and the STI takes it;
 * - an MSI from another thread reaches a self-linked loop;
 * - icount is exact for a known loop, interpreted and translated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emu_harness.h"
#include "irqchip_fixture.h"

#define ALLF 0x8d5ull

/* rdi: the data area. Counts ecx to 300; at 100 it rewrites the "mov $0, %eax" at its top to
 * "mov $7, %eax" through a store into its own page; eax accumulates what the mov loads. */
extern const uint8_t smc_start[], smc_end[];
__asm__(".pushsection .rodata\n"
        ".globl smc_start, smc_end\n"
        "smc_start:\n"
        "xor %ecx, %ecx\n"
        "xor %edx, %edx\n"
        "1:\n"
        ".byte 0xb8\n"                      /* mov $imm32, %eax */
        "2:\n"
        ".long 0\n"
        "add %eax, %edx\n"
        "inc %ecx\n"
        "cmp $100, %ecx\n"
        "jne 3f\n"
        "movb $7, 2b(%rip)\n"
        "3:\n"
        "cmp $300, %ecx\n"
        "jne 1b\n"
        "mov %edx, 0(%rdi)\n"
        "smc_end:\n"
        ".popsection\n");

/* Runs code (a HLT appended) on the emulator only, from in, with translation threshold jit. The
 * harness runs native code first from the same bytes, which code that rewrites itself would
 * leave rewritten for the emulator. */
static enum emu_stop emu_only(const uint8_t *code, int len, const struct regs *in, int jit)
{
    memcpy(hmem + OFF_CODE, code, len);
    hmem[OFF_CODE + len] = 0xf4;
    emu_vm_invalidate(hvm, 0, HSIZE);
    struct cpu_state st;
    harness_state(&st, in);
    emu_cpu_set_state(hcpu, &st);
    emu_vm_set_jit(hvm, jit);
    enum emu_stop stop = emu_cpu_run(hcpu);
    emu_vm_set_jit(hvm, -1);
    return stop;
}

static void test_self_modifying(void **s)
{
    (void)s;
    int len = (int)(smc_end - smc_start);
    for (int jit = -1; jit <= 0; jit++) {
        struct regs in;
        rng_state = 5;
        rnd_regs(&in);
        in.r[R_DI] = HBASE + OFF_DATA;
        assert_int_equal(emu_only(smc_start, len, &in, jit), EMU_STOP_HLT);
        assert_int_equal(emu_cpu_rip(hcpu), HBASE + OFF_CODE + len + 1);
        /* the 100 rounds up to the store added 0, the 200 after it 7 each */
        assert_int_equal(emu_cpu_gpr(hcpu)[R_DX], 7 * 200);
        assert_int_equal(emu_cpu_gpr(hcpu)[R_CX], 300);
    }
}

/* --- another thread rewrites a spinning loop's code --- */
struct writer {
    _Atomic uint64_t *counter;   /* the loop's round count, in guest memory */
    uint8_t *imm;                /* the mov's immediate, in guest memory */
    struct cpu *cpu;
    _Atomic int done;            /* the CPU stopped */
    int kicked;                  /* it had not after the grace period: stopped by force */
};

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    /* the loop runs translated and linked long before this many rounds */
    while (atomic_load(w->counter) < 200000 && !atomic_load(&w->done))
        sched_yield();
    __atomic_store_n((uint32_t *)w->imm, 1u, __ATOMIC_SEQ_CST);
    emu_vm_invalidate(hvm, (uint64_t)(w->imm - hmem), 4);
    /* not a measure of time: a bound after which stale code has plainly been left running
     * (with the budget, the loop sees the write within 256 rounds) */
    for (int k = 0; k < 600 && !atomic_load(&w->done); k++)
        sleep_ms(50);
    if (!atomic_load(&w->done)) {
        w->kicked = 1;
        emu_cpu_kick(w->cpu);
    }
    return NULL;
}

/* rdi: the data area. Spins until the "mov $0, %eax" reads non-zero, counting rounds at 0(%rdi). */
extern const uint8_t spin_start[], spin_imm[], spin_end[];
__asm__(".pushsection .rodata\n"
        ".globl spin_start, spin_imm, spin_end\n"
        "spin_start:\n"
        "1:\n"
        "incq 0(%rdi)\n"
        ".byte 0xb8\n"
        "spin_imm:\n"
        ".long 0\n"
        "test %eax, %eax\n"
        "jz 1b\n"
        "spin_end:\n"
        ".popsection\n");

static void test_written_from_outside(void **s)
{
    (void)s;
    uint8_t *cp = hmem + OFF_CODE;
    int len = (int)(spin_end - spin_start);
    memcpy(cp, spin_start, len);
    cp[len] = 0xf4;   /* hlt */
    memset(hmem + OFF_DATA, 0, 64);
    emu_vm_invalidate(hvm, 0, HSIZE);
    struct regs in;
    rng_state = 9;
    rnd_regs(&in);
    in.r[R_DI] = HBASE + OFF_DATA;
    struct cpu_state st;
    harness_state(&st, &in);
    emu_cpu_set_state(hcpu, &st);
    emu_vm_set_jit(hvm, 0);
    struct writer w = { .counter = (_Atomic uint64_t *)(hmem + OFF_DATA),
                        .imm = cp + (spin_imm - spin_start), .cpu = hcpu };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    enum emu_stop stop = emu_cpu_run(hcpu);
    atomic_store(&w.done, 1);
    pthread_join(th, NULL);
    emu_vm_set_jit(hvm, -1);
    if (w.kicked)
        fail_msg("the loop kept running its old code after the write (%llu rounds)",
                 (unsigned long long)atomic_load(w.counter));
    assert_int_equal(stop, EMU_STOP_HLT);
    assert_int_equal(emu_cpu_rip(hcpu), HBASE + OFF_CODE + len + 1);
    assert_int_equal(emu_cpu_gpr(hcpu)[R_AX] & 0xffffffff, 1);
}

/* --- interrupts in a tight loop --- */
#define APIC_VA (HBASE + HSIZE)   /* a 2 MiB page at the APIC's physical address */
#define VEC 0x40

static void irq_kick(void *cpu) { emu_cpu_irq_notify(cpu); }
static void irq_init(void *cpu) { (void)cpu; }
static void irq_sipi(void *cpu, uint8_t v) { (void)cpu; (void)v; }
static const struct lapic_cpu_ops irq_ops = { irq_kick, irq_init, irq_sipi };

/* OUT to port 0xf4 ends the run (EMU_STOP_KICK): with a local APIC, HLT would wait. */
static struct cpu *irq_cpu;
static void irq_io(void *opaque, uint16_t port, void *d, unsigned size, bool is_write)
{
    (void)opaque;
    (void)d;
    (void)size;
    if (port == 0xf4 && is_write)
        emu_cpu_kick(irq_cpu);
}

/* r8: the APIC's registers, rdi: the data area. The handler of VEC counts its runs at 16(%rdi)
 * and stores ecx at 40(%rdi) + 4 * the count before. With IF set, a self-IPI at round 50 of a loop of 1000; then with IF clear,
 * a self-IPI at round 50 of a second loop, taken by the STI after it. */
extern const uint8_t irq_start[], irq_handler[], irq_end[];
__asm__(".pushsection .rodata\n"
        ".globl irq_start, irq_handler, irq_end\n"
        "irq_start:\n"
        "movl $0x1ff, 0xf0(%r8)\n"          /* SVR: the APIC on, spurious vector 0xff */
        "sti\n"
        "xor %ecx, %ecx\n"
        "1:\n"
        "inc %ecx\n"
        "cmp $50, %ecx\n"
        "jne 2f\n"
        "movl $0x40040, 0x300(%r8)\n"       /* ICR: fixed, to self, VEC */
        "2:\n"
        "cmp $1000, %ecx\n"
        "jne 1b\n"
        "mov %ecx, 24(%rdi)\n"
        "cli\n"
        "xor %ecx, %ecx\n"
        "3:\n"
        "inc %ecx\n"
        "cmp $50, %ecx\n"
        "jne 4f\n"
        "movl $0x40040, 0x300(%r8)\n"
        "4:\n"
        "cmp $1000, %ecx\n"
        "jne 3b\n"
        "sti\n"
        "nop\n"
        "mov %ecx, 32(%rdi)\n"
        "out %al, $0xf4\n"
        "hlt\n"
        "irq_handler:\n"
        "mov 16(%rdi), %eax\n"
        "and $3, %eax\n"
        "mov %ecx, 40(%rdi,%rax,4)\n"
        "incl 16(%rdi)\n"
        "movl $0, 0xb0(%r8)\n"              /* EOI */
        "iretq\n"
        "irq_end:\n"
        ".popsection\n");

/* The interrupt tests' machine: a vCPU with a local APIC mapped at APIC_VA (PA 0xfee00000,
 * uncached), the code [start, end) at OFF_CODE and VEC's gate at handler; irq_done undoes it. */
struct irq_fx {
    struct fx *f;
    struct cpu *c;
    uint64_t save_lo, save_hi;
};

static struct cpu *irq_setup(struct irq_fx *x, const uint8_t *start, const uint8_t *end,
                             const uint8_t *handler)
{
    x->f = fx_new(1);
    struct lapic *l = fx_lapic(x->f, 0);
    struct emu_env env = { .io = irq_io, .lapic = l };
    struct cpu *c = emu_cpu_create(&hm, hvm, 0, &env);
    assert_non_null(c);
    x->c = irq_cpu = c;
    lapic_attach(l, &irq_ops, c);
    uint64_t *pd = (uint64_t *)(hmem + 0x3000);
    pd[((HBASE >> 21) & 511) + (HSIZE >> 21)] = 0xfee00000ull | 0x93;
    memcpy(hmem + OFF_CODE, start, (size_t)(end - start));
    uint64_t h = HBASE + OFF_CODE + (uint64_t)(handler - start);
    uint64_t *idt = (uint64_t *)(hmem + OFF_IDT);
    x->save_lo = idt[2 * VEC];
    x->save_hi = idt[2 * VEC + 1];
    idt[2 * VEC] = (h & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((h & 0xffff0000) << 32);
    idt[2 * VEC + 1] = h >> 32;
    return c;
}

/* random registers from seed, rdi the data area, r8 the APIC, IF clear */
static void irq_start_state(struct cpu *c, uint64_t seed)
{
    struct regs in;
    rng_state = seed;
    rnd_regs(&in);
    in.r[R_DI] = HBASE + OFF_DATA;
    in.r[R_R8] = APIC_VA;
    in.flags = 0;
    struct cpu_state st;
    harness_state(&st, &in);
    emu_cpu_set_state(c, &st);
}

static void irq_done(struct irq_fx *x)
{
    emu_cpu_destroy(x->c);
    fx_free(x->f);
    uint64_t *idt = (uint64_t *)(hmem + OFF_IDT);
    idt[2 * VEC] = x->save_lo;
    idt[2 * VEC + 1] = x->save_hi;
    ((uint64_t *)(hmem + 0x3000))[((HBASE >> 21) & 511) + (HSIZE >> 21)] = 0;
}

static void test_irq_in_loop(void **s)
{
    (void)s;
    struct irq_fx x;
    struct cpu *c = irq_setup(&x, irq_start, irq_end, irq_handler);

    for (int jit = -1; jit <= 0; jit++) {
        memset(hmem + OFF_DATA, 0, 64);
        emu_vm_invalidate(hvm, 0, HSIZE);
        irq_start_state(c, 3);
        emu_vm_set_jit(hvm, jit);
        uint64_t trips0, trips1, slow;
        emu_cpu_loop_stats(c, &trips0, &slow);
        enum emu_stop stop = emu_cpu_run(c);
        emu_cpu_loop_stats(c, &trips1, &slow);
        uint32_t *d = (uint32_t *)(hmem + OFF_DATA);
        print_message("jit %d: stop %d at %#llx, %u interrupts at ecx %u and %u, loops to %u %u, "
                      "%llu trips through the run loop\n", jit, stop,
                      (unsigned long long)emu_cpu_rip(c), d[4], d[10], d[11], d[6], d[8],
                      (unsigned long long)(trips1 - trips0));
        assert_int_equal(stop, EMU_STOP_KICK);
        assert_int_equal(d[6], 1000);
        assert_int_equal(d[8], 1000);
        assert_int_equal(d[4], 2);
        /* the first right after the APIC write that sent it (a chain budget later would be
         * round 300 or so), the second right after the STI's shadow */
        assert_in_range(d[10], 50, 51);
        assert_int_equal(d[11], 1000);
        /* the IPI held back while IF was 0 did not send every link to the run loop (one trip
         * per round of the second loop) */
        if (jit == 0)
            assert_in_range(trips1 - trips0, 1, 200);
    }
    emu_vm_set_jit(hvm, -1);
    irq_done(&x);
}

/* A device's interrupt (an MSI from another thread) into a self-linked loop with IF set: it must
 * be taken there. rdi: the data area, r8: the APIC. The handler stores 1 at 8(%rdi) and ends the
 * run. */
extern const uint8_t remote_start[], remote_handler[], remote_end[];
__asm__(".pushsection .rodata\n"
        ".globl remote_start, remote_handler, remote_end\n"
        "remote_start:\n"
        "movl $0x1ff, 0xf0(%r8)\n"
        "sti\n"
        "1:\n"
        "incq 0(%rdi)\n"
        "jmp 1b\n"
        "remote_handler:\n"
        "movl $1, 8(%rdi)\n"
        "out %al, $0xf4\n"
        "hlt\n"
        "remote_end:\n"
        ".popsection\n");

struct sender {
    struct fx *f;
    _Atomic uint64_t *counter;
    _Atomic uint32_t *taken;
    struct cpu *cpu;
    int kicked;
};

static void *sender_main(void *arg)
{
    struct sender *p = arg;
    while (atomic_load(p->counter) < 200000)
        sched_yield();
    irqchip_send_msi(p->f->c, 0xfee00000ull, VEC);
    /* a bound for a failure, not a measure: the loop takes it within a chain budget */
    for (int k = 0; k < 600 && !atomic_load(p->taken); k++)
        sleep_ms(50);
    if (!atomic_load(p->taken)) {
        p->kicked = 1;
        emu_cpu_kick(p->cpu);
    }
    return NULL;
}

static void test_irq_from_outside(void **s)
{
    (void)s;
    struct irq_fx x;
    struct cpu *c = irq_setup(&x, remote_start, remote_end, remote_handler);
    memset(hmem + OFF_DATA, 0, 64);
    emu_vm_invalidate(hvm, 0, HSIZE);
    irq_start_state(c, 4);
    emu_vm_set_jit(hvm, 0);
    struct sender p = { x.f, (_Atomic uint64_t *)(hmem + OFF_DATA),
                        (_Atomic uint32_t *)(hmem + OFF_DATA + 8), c, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sender_main, &p), 0);
    enum emu_stop stop = emu_cpu_run(c);
    pthread_join(th, NULL);
    emu_vm_set_jit(hvm, -1);
    if (p.kicked)
        fail_msg("the interrupt was not taken in the loop (%llu rounds)",
                 (unsigned long long)atomic_load(p.counter));
    assert_int_equal(stop, EMU_STOP_KICK);
    assert_int_equal(atomic_load(p.taken), 1);
    irq_done(&x);
}

/* --- icount --- */
static void test_icount(void **s)
{
    (void)s;
    /* mov $1000, %ecx; 1: add %ecx, %eax; dec %ecx; jnz 1b; then the harness's HLT: the first
     * block is 4 instructions, the loop's 3 (999 more times), the HLT 1 */
    static const uint8_t loop[] = { 0xb9, 0xe8, 0x03, 0x00, 0x00, 0x01, 0xc8, 0xff, 0xc9, 0x75, 0xfa };
    static uint8_t data[DATA_SIZE];
    static struct result nat, emu;
    for (int jit = -1; jit <= 0; jit++) {
        struct regs in;
        rng_state = 11;
        rnd_regs(&in);
        rnd_data(data);
        struct code c = { .n = 0 };
        emit(&c, loop, sizeof(loop));
        harness_jit = jit;
        uint64_t before = emu_cpu_icount(hcpu);
        harness_run(c.b, c.n, &in, data, &nat, &emu);
        uint64_t n = emu_cpu_icount(hcpu) - before;
        assert_true(result_match("icount loop", &c, &in, &nat, &emu, ALLF, 0xffff, 0));
        assert_int_equal(n, 4 + 999 * 3 + 1);
    }
    harness_jit = -1;
}

static int setup(void **s)
{
    (void)s;
    return harness_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_modifying),
        cmocka_unit_test(test_written_from_outside),
        cmocka_unit_test(test_irq_in_loop),
        cmocka_unit_test(test_irq_from_outside),
        cmocka_unit_test(test_icount),
    };
    return cmocka_run_group_tests_name("emu_chain", tests, setup, NULL);
}
