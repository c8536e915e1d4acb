/* A CPU's life: creation, architectural state in and out, the run loop (blocks, interrupts,
 * exceptions, HLT), and the wake-ups other threads send it. */
#include "accel/emu/block.h"
#include "accel/emu/jit.h"
#include "accel/emu/cpu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
/* gcc says __SANITIZE_ADDRESS__, clang (the fuzz builds) says __has_feature(address_sanitizer) */
#if defined(__SANITIZE_ADDRESS__)
#define EMU_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_LSAN 1
#endif
#endif
#ifdef EMU_LSAN
#include <sanitizer/lsan_interface.h>
#endif
#include <time.h>

#include "hw/irqchip.h"
#include "util/clock.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/memory.h"

/* Copies the machine's memory regions, which can grow after the VM is created (a firmware image
 * is mapped at boot). Only before vCPUs run in parallel: the BSP calls it as it starts. */
/* Per-page arrays of guest RAM (1 and 4 bytes a page: 320 KiB for 256 MiB) on fresh anonymous
 * pages: an entry becomes resident when the CPU first runs code from that part of RAM, where a
 * calloc from the heap would have made (and kept) them all resident at start-up. */
static void *zero_pages(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void zero_pages_free(void *p, size_t n)
{
    if (p)
        munmap(p, n);
}

static void emu_vm_free_pages(struct emu_vm *vm)
{
    if (!vm->code && !vm->gen)
        return;
    zero_pages_free((void *)vm->code, ((size_t)vm->npages + 1) * sizeof(*vm->code));
    zero_pages_free((void *)vm->gen, ((size_t)vm->npages + 1) * sizeof(*vm->gen));
}

int emu_vm_sync(struct emu_vm *vm)
{
    struct machine *m = vm->m;
    if (m->nmem == vm->nsrc)
        return 0;
    uint32_t pages = 0;
    int n = 0;
    for (int k = 0; k < m->nmem && n < EMU_MAX_RAM; k++) {
        struct emu_ram *r = &vm->ram[n++];
        r->gpa = m->mem[k].gpa;
        r->size = m->mem[k].size & ~0xfffull;
        r->capacity = (m->mem[k].capacity ? m->mem[k].capacity : m->mem[k].size) & ~0xfffull;
        r->host = m->mem[k].host;
        r->readonly = m->mem[k].readonly;
        /* a device region's every store is noted; guest RAM's only through the armed pages
         * (EMU_PAGE_TRACK), so nothing is slower while no migration runs */
        r->dirty = m->mem[k].device ? m->mem[k].dirty : NULL;
        r->pidx0 = pages;
        pages += (uint32_t)(r->capacity >> 12);
    }
    if (pages > vm->npages) {
        _Atomic uint8_t *code = zero_pages((pages + 1) * sizeof(*code));
        _Atomic uint32_t *gen = zero_pages((pages + 1) * sizeof(*gen));
        if (!code || !gen) {
            zero_pages_free((void *)code, (pages + 1) * sizeof(*code));
            zero_pages_free((void *)gen, (pages + 1) * sizeof(*gen));
            return -ENOMEM;
        }
        emu_vm_free_pages(vm);
        vm->code = code;
        vm->gen = gen;
        vm->npages = pages;
    } else {
        /* page indexes may have moved: nothing decoded before stays valid */
        for (uint32_t k = 0; k <= vm->npages; k++) {
            atomic_store(&vm->code[k], 0);
            atomic_fetch_add(&vm->gen[k], 1);
        }
    }
    vm->nram = n;
    vm->nsrc = m->nmem;
    return 0;
}

int emu_vm_create(struct machine *m, struct emu_vm **out)
{
    struct emu_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    vm->m = m;
    vm->nsrc = -1;
    vm->tsc_base = clock_now_ns();
    vm->jit_threshold = EMU_JIT_DEFAULT;
    vm->perfmap_fd = -1;
    char err[256];
    cpu_model_parse(NULL, cpu_model_tcg_features, false, &vm->model, err, sizeof(err));   /* qemu64 */
    int r = emu_vm_sync(vm);
    if (r < 0) {
        emu_vm_destroy(vm);
        return r;
    }
    *out = vm;
    return 0;
}

void emu_vm_set_jit(struct emu_vm *vm, int threshold)
{
    vm->jit_threshold = threshold;
}

int emu_vm_open_perfmap(struct emu_vm *vm)
{
    if (vm->perfmap_fd >= 0)
        return 0;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
    /* perf reads this file by the pid's name: an old one of a reused pid is stale, truncate it */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    vm->perfmap_fd = fd;
    return 0;
}

void emu_vm_set_jit_space(struct emu_vm *vm, size_t bytes)
{
    vm->jit_block_max = bytes;
}

void emu_cpu_jit_stats(struct cpu *c, uint64_t *blocks, uint64_t *refused)
{
    *blocks = c->jit_blocks;
    *refused = c->jit_refused;
}

void emu_cpu_loop_stats(struct cpu *c, uint64_t *blocks, uint64_t *slow)
{
    *blocks = c->loop_blocks;
    *slow = c->slow_lookups;
}

uint64_t emu_cpu_debug_steps(struct cpu *c)
{
    return c->debug_steps;
}

void emu_vm_destroy(struct emu_vm *vm)
{
    if (!vm)
        return;
    emu_vm_free_pages(vm);
    if (vm->perfmap_fd >= 0)
        close(vm->perfmap_fd);
    free(vm);
}

int emu_vm_remap(struct emu_vm *vm, int idx)
{
    if (idx < 0 || idx >= vm->nram || !vm->m->mem[idx].device)
        return -EINVAL;
    struct emu_ram *r = &vm->ram[idx];
    const struct mem_region *src = &vm->m->mem[idx];
    uint64_t size = __atomic_load_n(&src->size, __ATOMIC_ACQUIRE);
    uint64_t gpa = __atomic_load_n(&src->gpa, __ATOMIC_RELAXED);
    __atomic_store_n(&r->size, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->gpa, gpa, __ATOMIC_SEQ_CST);
    __atomic_store_n(&r->size, size & ~0xfffull, __ATOMIC_SEQ_CST);
    /* code decoded from the region was found by its old physical address */
    for (uint32_t k = 0; k < (uint32_t)(r->capacity >> 12); k++) {
        atomic_store_explicit(&vm->code[r->pidx0 + k], 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&vm->gen[r->pidx0 + k], 1, memory_order_release);
    }
    atomic_fetch_add(&vm->map_gen, 1);
    return 0;
}

void emu_vm_flush_tlbs(struct emu_vm *vm)
{
    atomic_fetch_add(&vm->map_gen, 1);
}

void emu_vm_invalidate(struct emu_vm *vm, uint64_t gpa, uint64_t len)
{
    uint64_t end = gpa + len;
    for (uint64_t pa = gpa & ~0xfffull; pa < end; pa += 4096) {
        uint32_t pidx;
        if (phys_ptr(vm, pa, 1, &pidx) && atomic_load_explicit(&vm->code[pidx], memory_order_relaxed)) {
            /* the tracking bit goes too: the device's write is noted by machine_note_dirty */
            if (atomic_exchange_explicit(&vm->code[pidx], 0, memory_order_relaxed) & EMU_PAGE_CODE)
                atomic_fetch_add_explicit(&vm->gen[pidx], 1, memory_order_release);
        }
    }
}

void emu_vm_track(struct emu_vm *vm, uint64_t gpa, uint64_t len, bool on)
{
    uint64_t end = gpa + len;
    for (uint64_t pa = gpa & ~0xfffull; pa < end; pa += 4096) {
        uint32_t pidx;
        if (!phys_ptr(vm, pa, 1, &pidx))
            continue;
        if (on)
            atomic_fetch_or_explicit(&vm->code[pidx], EMU_PAGE_TRACK, memory_order_relaxed);
        else
            atomic_fetch_and_explicit(&vm->code[pidx], (uint8_t)~EMU_PAGE_TRACK, memory_order_relaxed);
    }
}

void emu_vm_page_written(struct emu_vm *vm, uint32_t pidx)
{
    for (int k = 0; k < vm->nram; k++) {
        const struct emu_ram *r = &vm->ram[k];
        if (pidx >= r->pidx0 && pidx - r->pidx0 < (uint32_t)(r->size >> 12)) {
            memory_note_written(vm->m, r->gpa + ((uint64_t)(pidx - r->pidx0) << 12), 4096);
            return;
        }
    }
}

static void cpu_reset_regs(struct cpu *c)
{
    struct cpu_state s;
    cpu_state_reset(&s, c->id == 0);
    emu_cpu_set_state(c, &s);
    fpu_reset(&c->fpu);
    memset(c->xmm, 0, sizeof(c->xmm));
    memset(c->ymmh, 0, sizeof(c->ymmh));
    c->mxcsr = 0x1f80;
    c->xcr0 = XCR0_X87;
    c->pkru = 0;
    c->pkrs = 0;
    c->pat = 0x0007040600070406ull;
    c->misc_enable = 1;   /* fast strings */
    c->efer = 0;
    c->star = c->lstar = c->cstar = c->sfmask = c->kernel_gs = 0;
    memset(c->dr, 0, sizeof(c->dr));
    c->dr[6] = 0xffff0ff0;
    c->dr[7] = 0x400;
    debug_update(c);
    c->nmi_blocked = c->shadow_ss = false;
    c->db_pending = c->db_deferred = 0;
}

/* LeakSanitizer scans the heap, stacks and globals, not our own mappings: show it the CPU's, which
 * holds the only pointers to its arena and scratch block. */
static void lsan_region(struct cpu *c, bool add)
{
#ifdef EMU_LSAN
    if (add)
        __lsan_register_root_region(c, sizeof(*c));
    else
        __lsan_unregister_root_region(c, sizeof(*c));
#else
    (void)c;
    (void)add;
#endif
}

/* Guest instructions translated code runs (in linked blocks) before it comes back to the run
 * loop, for the timer and a map change; a kick or an interrupt notice from another thread cuts
 * it short (cpu_cut_chain), the CPU's own APIC writes leave at once (c->brk). Counted in
 * instructions, not links, so that one subtraction per block keeps both it and icount. Links
 * used to count 256 blocks (64 made a quarter of the trips through the run loop in a
 * kernel-heavy guest): 4096 instructions is about as many. */
#define CHAIN_BUDGET 4096

/* Adds what translated code ran since the last call to icount, and fills the budget again. */
static void cpu_count_chain(struct cpu *c)
{
    uint64_t v = atomic_load_explicit(&c->chain_left, memory_order_relaxed);
    c->icount += (uint64_t)(CHAIN_BUDGET - (int64_t)(int32_t)(uint32_t)v);
    atomic_store_explicit(&c->chain_left, CHAIN_BUDGET, memory_order_relaxed);
}

struct cpu *emu_cpu_create(struct machine *m, struct emu_vm *vm, int id, const struct emu_env *env)
{
    /* Fresh anonymous pages: zero already, so only what the CPU touches becomes resident (the
     * block hash alone is 512 KiB, and a memset made all 640 KiB resident at start-up). */
    struct cpu *c = mmap(NULL, sizeof(struct cpu), PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c == MAP_FAILED)
        return NULL;
    lsan_region(c, true);
    c->m = m;
    c->vm = vm;
    c->id = id;
    c->ncpus = 1;
    if (env)
        c->env = *env;
    c->xblock = calloc(1, sizeof(struct block) + sizeof(struct insn));
    if (!c->xblock || block_cache_init(c) < 0) {
        free(c->xblock);
        lsan_region(c, false);
        munmap(c, sizeof(struct cpu));
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store(&c->sipi, -1);
    c->exc_vec = -1;
    c->tsc_offset = 0 - vm->tsc_base;   /* one TSC for all CPUs: synchronized, as Linux checks */
    atomic_store(&c->chain_left, CHAIN_BUDGET);
    cpu_reset_regs(c);
    cpu_sync_tsc(c);
    return c;
}

void emu_cpu_destroy(struct cpu *c)
{
    if (!c)
        return;
    block_cache_free(c);
    free(c->xblock);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    lsan_region(c, false);
    munmap(c, sizeof(struct cpu));
}

void emu_cpu_set_state(struct cpu *c, const struct cpu_state *s)
{
    memcpy(c->r, s->gpr, sizeof(c->r));
    c->rip = s->rip;
    c->eflags = 0;
    cc_flags(c, 0);
    flags_set(c, s->rflags, 0x3f7fd5);
    memcpy(c->seg, s->seg, sizeof(c->seg));
    c->gdt = s->gdt;
    c->idt = s->idt;
    c->cr0 = s->cr0;
    c->cr2 = s->cr2;
    c->cr3 = s->cr3;
    c->cr4 = s->cr4;
    c->efer = s->efer;
    if (s->apic_base)
        c->apic_base = s->apic_base;
    cpu_set_cpl(c, (c->cr0 & CR0_PE) ? c->seg[SEG_CS].selector & 3 : 0);
    if ((c->cr0 & CR0_PE) && c->seg[SEG_CS].dpl != (c->seg[SEG_CS].selector & 3))
        cpu_set_cpl(c, c->seg[SEG_SS].dpl);
    cpu_update_mode(c);
    tlb_reset(c);   /* a new state: empty every set, filled or not */
    c->halted = false;
    c->wait_sipi = false;
    c->inhibit_irq = false;
    c->nmi_blocked = false;
}

void emu_cpu_get_state(struct cpu *c, struct cpu_state *s)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->gpr, c->r, sizeof(c->r));
    s->rip = c->rip;
    s->rflags = flags_get(c);
    memcpy(s->seg, c->seg, sizeof(c->seg));
    s->gdt = c->gdt;
    s->idt = c->idt;
    s->cr0 = c->cr0;
    s->cr2 = c->cr2;
    s->cr3 = c->cr3;
    s->cr4 = c->cr4;
    s->efer = c->efer;
    s->apic_base = c->apic_base;
    memcpy(s->dr, c->dr, sizeof(s->dr));
    s->halted = c->halted;
}

void emu_cpu_wait_sipi(struct cpu *c)
{
    pthread_mutex_lock(&c->lock);
    c->wait_sipi = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void emu_cpu_sipi(struct cpu *c, uint8_t vector)
{
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->sipi, vector);
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void emu_cpu_init_ipi(struct cpu *c)
{
    atomic_store(&c->init_req, true);
    emu_cpu_irq_notify(c);
}

/* Translated code leaves at its next block (after the flag it is to see is set: the run loop
 * looks at the flags, not at this bit). A translated block's own subtraction may write over the
 * bit; the budget then takes the chain back within CHAIN_BUDGET instructions. */
static void cpu_cut_chain(struct cpu *c)
{
    atomic_fetch_or_explicit(&c->chain_left, 1ull << 63, memory_order_relaxed);
}

void emu_cpu_kick(struct cpu *c)
{
    atomic_store(&c->exit_req, true);
    cpu_cut_chain(c);
    pthread_mutex_lock(&c->lock);
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

void emu_cpu_irq_notify(struct cpu *c)
{
    atomic_store(&c->irq_check, true);
    cpu_cut_chain(c);
    pthread_mutex_lock(&c->lock);
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

uint64_t emu_cpu_icount(struct cpu *c) { return c->icount; }
uint64_t emu_cpu_rflags(struct cpu *c) { return flags_get(c); }
uint64_t *emu_cpu_gpr(struct cpu *c) { return c->r; }
uint64_t emu_cpu_rip(struct cpu *c) { return c->rip; }
void *emu_cpu_xmm(struct cpu *c, int n) { return &c->xmm[n & 15]; }
void *emu_cpu_ymmh(struct cpu *c, int n) { return &c->ymmh[n & 15]; }

int emu_cpu_set_xcr0(struct cpu *c, uint64_t v)
{
    if (xcr0_check(c, v))
        return -EINVAL;
    c->xcr0 = v;
    return 0;
}

int emu_vm_set_cpu_model(struct emu_vm *vm, const char *spec, char *err, size_t errlen)
{
    struct cpu_model model;
    uint32_t avail[CPUF_WORDS];
    emu_features(avail);
    int ret = cpu_model_parse(spec, avail, false, &model, err, errlen);
    if (ret == 0)
        vm->model = model;
    return ret;
}
void emu_cpu_fxsave(struct cpu *c, void *area512) { fpu_fxsave(c, area512); }

/* The run loop comes here with an interrupt shadow (STI, MOV SS) and nothing else to step for
 * (no TF, RF or breakpoint) and no interrupt notice pending: then the shadow has nothing to hold
 * back, and it ends here, so the next block runs whole (translated) rather than its first
 * instruction in debug_step and the rest as a block of its own (Linux's STIs: 700 thousand
 * trips in a boot and 1600 fork+execs). A notice that comes while that block runs is taken at
 * its end, as one that came a little later would be: only one pending at the STI is owed its
 * exact place after the next instruction, and that one goes through debug_step. The caller
 * does not look for interrupts before that block: a notice arriving just now would otherwise be
 * taken before the shadowed instruction (STI; HLT would then sleep through it). */
static bool cpu_shadow_only(struct cpu *c)
{
    if (!c->inhibit_irq || (c->eflags & (F_TF | F_RF)) || c->dbg_bp ||
        atomic_load_explicit(&c->irq_check, memory_order_relaxed))
        return false;
    c->inhibit_irq = c->shadow_ss = false;
    return true;
}

static bool machine_stopping(struct cpu *c)
{
    return c->m && atomic_load_explicit(&c->m->stop, memory_order_relaxed) != MACHINE_RUNNING;
}

/* Sleeps until deadline (CLOCK_MONOTONIC ns), a kick, INIT, a SIPI, or (irq_wakes) an interrupt
 * notice. */
static void cpu_sleep(struct cpu *c, uint64_t deadline, bool irq_wakes)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ull),
                           .tv_nsec = (long)(deadline % 1000000000ull) };
    pthread_mutex_lock(&c->lock);
    if (!atomic_load(&c->exit_req) && !(irq_wakes && atomic_load(&c->irq_check)) &&
        atomic_load(&c->sipi) < 0 && !atomic_load(&c->init_req) && !machine_stopping(c)) {
        if (deadline == UINT64_MAX)
            pthread_cond_wait(&c->cond, &c->lock);
        else
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    }
    pthread_mutex_unlock(&c->lock);
}

/* INIT: everything but the APIC base back to reset state, then wait for a SIPI. */
static void do_init(struct cpu *c)
{
    uint64_t apic_base = c->apic_base;
    cpu_reset_regs(c);
    c->apic_base = apic_base;
    atomic_store(&c->irq_check, true);
    c->wait_sipi = true;
    c->halted = false;
}

static void poll_timer(struct cpu *c)
{
    if (!c->env.lapic)
        return;
    uint64_t now = clock_now_ns();
    if (now >= c->timer_deadline)
        c->timer_deadline = lapic_poll_timer(c->env.lapic, now);
}

static void deliver_nmi(struct cpu *c)
{
    c->halted = false;
    c->nmi_blocked = true;
    log_debug(LOG_INT, "cpu%d: NMI at %#llx", c->id, (unsigned long long)c->rip);
    c->exc_depth = 1;
    c->exc_first = -1;
    c->exc_rf = false;
    except_deliver(c, EXC_NMI, false, 0, false);
    c->exc_depth = 0;
}

/* Delivers a pending NMI unless one is being handled, else a pending external interrupt if
 * RFLAGS.IF allows (the caller checked the interrupt shadow, which holds both back). */
static bool take_interrupt(struct cpu *c)
{
    if (!c->env.lapic)
        return false;
    if (!c->nmi_blocked && lapic_nmi_pending(c->env.lapic) && lapic_take_nmi(c->env.lapic)) {
        deliver_nmi(c);
        return true;
    }
    if (!(c->eflags & F_IF)) {
        c->irq_held = true;
        atomic_store(&c->irq_check, false);
        return false;
    }
    atomic_store(&c->irq_check, false);
    if (!lapic_has_interrupt(c->env.lapic))
        return false;
    int vec = lapic_ack_interrupt(c->env.lapic);
    atomic_store(&c->irq_check, true);
    if (vec < 0)
        return false;
    c->halted = false;
    log_debug(LOG_INT, "cpu%d: interrupt %d at %#llx", c->id, vec, (unsigned long long)c->rip);
    c->exc_depth = 1;
    c->exc_first = -1;
    c->exc_rf = false;
    except_deliver(c, vec, false, 0, false);
    c->exc_depth = 0;
    return true;
}

static void start_sipi(struct cpu *c, int vec)
{
    struct cpu_state s;
    cpu_state_reset(&s, false);
    s.seg[SEG_CS].selector = (uint16_t)(vec << 8);
    s.seg[SEG_CS].base = (uint64_t)vec << 12;
    s.rip = 0;
    s.apic_base = c->apic_base;
    emu_cpu_set_state(c, &s);
    fpu_reset(&c->fpu);
    c->efer = 0;
    cpu_update_mode(c);
}

/* SDM vol. 3 table 6-5: a fault while delivering an event is a double fault only when both are
 * contributory (#DE, #TS, #NP, #SS, #GP) or the first is a #PF and the second a #PF or
 * contributory. After a benign first event (INT n, an interrupt, #DB, #BP, ...) the second is
 * simply delivered: kvm-unit-tests' eventinj gets #NP from an INT n through a not-present gate. */
static bool cpu_is_contributory(int vec)
{
    return vec == EXC_DE || (vec >= 10 && vec <= 13);
}

/* Fault-class exceptions push RFLAGS with RF set (SDM 17.3.1.1), so that the IRET back to the
 * instruction does not hit its instruction breakpoint again. #DB is left out: its instruction
 * breakpoint faults only with RF clear, its traps happen after the instruction. */
static bool cpu_is_fault(int vec)
{
    return vec == EXC_DE || (vec >= EXC_BR && vec <= EXC_NM) || (vec >= EXC_TS && vec <= EXC_PF) ||
           vec == EXC_MF || vec == EXC_AC || vec == EXC_XM;
}

static bool cpu_is_double_fault(int first, int second)
{
    if (first == EXC_PF)
        return second == EXC_PF || cpu_is_contributory(second);
    return cpu_is_contributory(first) && cpu_is_contributory(second);
}

enum emu_stop emu_cpu_run(struct cpu *c)
{
    if (c->id == 0 && emu_vm_sync(c->vm) < 0)
        return EMU_STOP_ERROR;
    if (setjmp(c->jb)) {
        /* an exception from an instruction, or from delivering one */
        c->cur = NULL;
        cpu_count_chain(c);   /* translated code may have run up to the fault */
        if (c->exc_depth >= 2) {
            log_debug(LOG_INT, "cpu%d: triple fault at %#llx", c->id, (unsigned long long)c->rip);
            c->exc_depth = 0;
            return EMU_STOP_SHUTDOWN;
        }
        int vec = c->exc_vec;
        bool has_err = c->exc_has_err, soft = c->exc_soft;
        uint32_t err = c->exc_err;
        if (c->exc_depth == 1 && c->exc_rewind) {
            c->rip -= c->exc_rewind;   /* the fault belongs to the INT n: it restarts */
            c->exc_rewind = 0;
        }
        if (c->exc_depth == 1 && cpu_is_double_fault(c->exc_first, vec)) {
            vec = EXC_DF;
            has_err = true;
            err = 0;
            soft = false;
            c->exc_depth = 2;
        } else {
            c->exc_depth = 1;   /* a first event, or one the SDM delivers after the first */
        }
        c->exc_first = soft ? -1 : vec;
        c->exc_rf = !soft && cpu_is_fault(vec);
        c->exc_rewind = soft ? c->exc_soft_len : 0;
        c->exc_soft_len = 0;
        c->exc_vec = -1;
        except_deliver(c, vec, has_err, err, soft);
        c->exc_depth = 0;
        c->exc_rewind = 0;
        if (unlikely(soft && c->db_deferred)) {
            uint32_t bits = c->db_deferred;   /* MOV SS; INT n with a data breakpoint hit */
            c->db_deferred = 0;
            debug_trap(c, bits);
        }
    }
    for (;;) {
        if (unlikely(atomic_load_explicit(&c->exit_req, memory_order_relaxed))) {
            atomic_store(&c->exit_req, false);
            return EMU_STOP_KICK;
        }
        cpu_check_map(c);
        if (unlikely(atomic_load_explicit(&c->init_req, memory_order_relaxed))) {
            atomic_store(&c->init_req, false);
            do_init(c);
        }
        if (unlikely(c->wait_sipi || c->halted)) {
            int v = atomic_exchange(&c->sipi, -1);
            if (v >= 0 && c->wait_sipi) {
                start_sipi(c, v);
                continue;
            }
            if (machine_stopping(c))
                return EMU_STOP_KICK;
            if (c->wait_sipi) {
                cpu_sleep(c, UINT64_MAX, false);
                continue;
            }
            if (take_interrupt(c))
                continue;
            if (!c->env.lapic)
                return EMU_STOP_HLT;
            if (!(c->eflags & F_IF)) {
                /* only INIT, an NMI (or the machine stopping) ends this: a kick wakes the
                 * CPU to look for an NMI, a maskable interrupt is not taken */
                atomic_store(&c->irq_check, false);
                if (!c->nmi_blocked && lapic_nmi_pending(c->env.lapic)) {
                    atomic_store(&c->irq_check, true);
                    continue;
                }
                cpu_sleep(c, UINT64_MAX, true);
                atomic_store(&c->irq_check, true);
                continue;
            }
            poll_timer(c);
            if (atomic_load(&c->irq_check))
                continue;
            cpu_sleep(c, c->timer_deadline, true);
            continue;
        }
        /* The local timer is looked at every 256 trips through here (each up to CHAIN_BUDGET
         * instructions of chained blocks), every 16 while one is armed: a TSC deadline a few
         * microseconds ahead then fires within tens of microseconds of a busy loop, not a
         * millisecond. */
        if (unlikely(++c->poll_count >= (c->timer_deadline == UINT64_MAX ? 256u : 16u))) {
            c->poll_count = 0;
            poll_timer(c);
            if (machine_stopping(c))
                return EMU_STOP_KICK;
        }
        bool shadow = false;
        if (unlikely(debug_stepping(c)) && !(shadow = cpu_shadow_only(c))) {
            if (!c->inhibit_irq && atomic_load_explicit(&c->irq_check, memory_order_relaxed) &&
                take_interrupt(c))
                continue;
            c->debug_steps++;
            if (debug_step(c) < 0) {
                log_error("cpu%d: executing outside RAM at %#llx", c->id,
                          (unsigned long long)((c->segbase[SEG_CS] + c->rip) & c->lin_mask));
                return EMU_STOP_ERROR;
            }
            continue;
        }
        if (!shadow && atomic_load_explicit(&c->irq_check, memory_order_relaxed) &&
            take_interrupt(c)) {
            continue;
        }
        struct block *b = block_get(c);
        if (unlikely(!b)) {
            log_error("cpu%d: executing outside RAM at %#llx", c->id,
                      (unsigned long long)((c->segbase[SEG_CS] + c->rip) & c->lin_mask));
            return EMU_STOP_ERROR;
        }
        c->brk = false;
        c->loop_blocks++;
        if (!b->code && c->vm->jit_threshold >= 0 && b->pa != ~0ull && !c->segchk &&
            (!block_crosses(b) || b->mode == 8) && ++b->hits > (uint32_t)c->vm->jit_threshold)
            jit_compile(c, b);
        if (c->link_from) {
            /* the last translated block left towards this one (translated just now, perhaps):
             * its jump goes straight here from now on. Only between blocks of one generation,
             * so that a chain of links never leads from current code into stale code (emit_exit
             * says why that lets links go unchecked). A flush (jit_compile's, block_get's)
             * cleared link_from. */
            if (b->code && (b->pa ^ (uint64_t)b->mode << 60) == c->link_key &&
                b->gen == c->link_gen)
                jit_link(c, c->link_from, b);
            c->link_from = NULL;
        }
        if (b->code && likely(!c->segchk)) {
            jit_run(c, b);   /* it counts its instructions in chain_left */
            cpu_count_chain(c);
            c->cur = NULL;
            continue;
        }
        c->icount += b->n;
        const struct insn *i = b->ins, *end = i + b->n;
        /* two call sites, so the host predicts each from its own history */
        for (;;) {
            c->cur = i;
            c->rip += i->len;
            i->fn(c, i);
            if (++i >= end || c->brk)
                break;
            c->cur = i;
            c->rip += i->len;
            i->fn(c, i);
            if (++i >= end || c->brk)
                break;
        }
        c->cur = NULL;
    }
}
