/* The software x86-64 CPU: the public face of src/accel/emu/ for the tcg accelerator glue
 * (tcg.c) and for tests. A CPU runs guest code against a struct machine's RAM regions; what is
 * not RAM goes to the callbacks in emu_env (port I/O, MMIO, the local APIC). */
#ifndef QKVM_ACCEL_EMU_EMU_H
#define QKVM_ACCEL_EMU_EMU_H
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "vm/cpu_model.h"

struct machine;
struct cpu;
struct cpu_state;
struct emu_vm;

/* Everything the CPU needs from outside the core. Any callback may be NULL. */
struct emu_env {
    void (*io)(void *opaque, uint16_t port, void *data, unsigned size, bool is_write);
    void (*mmio)(void *opaque, uint64_t gpa, void *data, unsigned size, bool is_write);
    /* The local APIC of this CPU (hw/irqchip.h); NULL without one. */
    struct lapic *lapic;
    void *opaque;
};

enum emu_stop {
    EMU_STOP_KICK,       /* emu_kick, or a pending stop request */
    EMU_STOP_HLT,        /* HLT with interrupts disabled: only INIT/NMI could wake it */
    EMU_STOP_SHUTDOWN,   /* triple fault */
    EMU_STOP_ERROR,      /* executing from something that is not RAM */
};

/* Per-machine state shared by all CPUs: which RAM pages hold decoded code. 0 or -errno. */
int emu_vm_create(struct machine *m, struct emu_vm **out);
void emu_vm_destroy(struct emu_vm *vm);
/* Blocks run by the interpreter more than threshold times are translated to host code (0: at
 * once; -1: never, the interpreter runs everything). */
#define EMU_JIT_DEFAULT 8
void emu_vm_set_jit(struct emu_vm *vm, int threshold);
/* -perfmap: from now on every translated block gets a line in /tmp/perf-PID.map (perf's format
 * for JIT code: start, size, name). Opened here, before any thread enters its sandbox. 0 or
 * -errno. */
int emu_vm_open_perfmap(struct emu_vm *vm);
/* Tests: the host code bytes one translated block may take (0: the translator's own bound). A
 * block that does not fit is left to the interpreter. */
void emu_vm_set_jit_space(struct emu_vm *vm, size_t bytes);
/* Picks up memory regions the machine added since (ROMs). 0 or -ENOMEM. Not while CPUs run. */
int emu_vm_sync(struct emu_vm *vm);
/* The machine moved or hid its device region idx (machine_map_hostmem): CPUs stop reaching it
 * at the old place by their next block. Any thread. 0 or -EINVAL. */
int emu_vm_remap(struct emu_vm *vm, int idx);
/* Every CPU empties its TLB before its next block (dirty tracking restarts). Any thread. */
void emu_vm_flush_tlbs(struct emu_vm *vm);
/* Guest memory [gpa, gpa+len) was written behind the CPUs' backs (DMA, a loader): code decoded
 * from it is dropped. */
void emu_vm_invalidate(struct emu_vm *vm, uint64_t gpa, uint64_t len);
/* Dirty tracking for migration: on, the next CPU write to each page of [gpa, gpa+len) is told
 * to the machine (memory_note_written) once, and the page must be armed again to be seen again;
 * off disarms. Any thread: a write racing with the arming may go unseen, so the caller arms
 * with the CPUs parked (vm/memory.c's memory_dirty_sync). */
void emu_vm_track(struct emu_vm *vm, uint64_t gpa, uint64_t len, bool on);
/* The first write to an armed page (mmu.c's mem_smc). */
void emu_vm_page_written(struct emu_vm *vm, uint32_t pidx);

/* A CPU of machine m (vm from emu_vm_create). NULL on allocation failure. */
struct cpu *emu_cpu_create(struct machine *m, struct emu_vm *vm, int id, const struct emu_env *env);
void emu_cpu_destroy(struct cpu *c);
void emu_cpu_set_state(struct cpu *c, const struct cpu_state *s);
void emu_cpu_get_state(struct cpu *c, struct cpu_state *s);
/* Adds CPU id's registers (general, segment, control, MSRs, x87, SSE) to m's state stream as
 * section "cpu" (persist.c). 0 or -errno. */
int emu_cpu_register_vmstate(struct machine *m, struct cpu *c, int id);
/* Puts the CPU in wait-for-SIPI (APs at start, INIT IPI). */
void emu_cpu_wait_sipi(struct cpu *c);
void emu_cpu_sipi(struct cpu *c, uint8_t vector);
/* Any thread: an INIT IPI; the CPU goes to wait-for-SIPI at its next instruction boundary. */
void emu_cpu_init_ipi(struct cpu *c);
/* Runs until a stop reason. Must be called on one thread at a time per CPU. */
enum emu_stop emu_cpu_run(struct cpu *c);
/* Any thread: makes emu_cpu_run return EMU_STOP_KICK soon (and wakes HLT). */
void emu_cpu_kick(struct cpu *c);
/* Any thread: an interrupt may be pending, look at the local APIC (wakes HLT). */
void emu_cpu_irq_notify(struct cpu *c);
/* Instructions retired (approximately: counted per block), for benchmarks. */
uint64_t emu_cpu_icount(struct cpu *c);
/* Blocks translated, and translations abandoned because the block did not fit its space. */
void emu_cpu_jit_stats(struct cpu *c, uint64_t *blocks, uint64_t *refused);
/* Blocks the run loop looked up (translated code that left for it, interpreted blocks), and
 * those the jump cache did not answer: what chaining and the cache save, for tests and -d accel. */
void emu_cpu_loop_stats(struct cpu *c, uint64_t *blocks, uint64_t *slow);
/* Instructions the run loop stepped one at a time (debug_step: TF, RF, breakpoints, and an
 * interrupt shadow with an interrupt notice pending), for tests and -d accel. */
uint64_t emu_cpu_debug_steps(struct cpu *c);

/* RFLAGS as the guest sees it, and access to general registers (tests). */
uint64_t emu_cpu_rflags(struct cpu *c);
uint64_t *emu_cpu_gpr(struct cpu *c);
uint64_t emu_cpu_rip(struct cpu *c);
/* XMM register n (16 bytes) and the x87/SSE state in FXSAVE layout (512 bytes), for tests. */
void *emu_cpu_xmm(struct cpu *c, int n);
/* Bits 255:128 of YMM register n (16 bytes), for tests. */
void *emu_cpu_ymmh(struct cpu *c, int n);
/* XCR0 as XSETBV would set it: 0, or -EINVAL when the CPU's model does not allow v. */
int emu_cpu_set_xcr0(struct cpu *c, uint64_t v);
/* What this CPU can offer a -cpu model on this host: cpu_model_tcg_features, less FMA and F16C
 * when the host has no FMA or F16C unit of its own to run them on. */
void emu_features(uint32_t out[CPUF_WORDS]);
/* The -cpu model (spec as -cpu takes it, NULL: qemu64) for every CPU of vm, for tests and
 * tools without a machine config: 0, or -EINVAL with a reason in err. */
int emu_vm_set_cpu_model(struct emu_vm *vm, const char *spec, char *err, size_t errlen);
void emu_cpu_fxsave(struct cpu *c, void *area512);

#endif
