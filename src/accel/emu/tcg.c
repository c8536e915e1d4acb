/* accel_tcg: the software CPU behind the accelerator interface. Each vCPU thread runs its CPU in
 * vcpu_run; port and MMIO accesses go to the machine's buses from inside the run, interrupts
 * come from the user-space interrupt controllers (hw/irqchip.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "accel/emu/cpu.h"
#include "hw/irqchip.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vcpu.h"

static int tcg_probe(const char **why)
{
    *why = NULL;
    return 0;
}

static int tcg_vm_create(struct machine *m)
{
    struct emu_vm *vm;
    struct cpu_model model;
    char err[256];
    uint32_t avail[CPUF_WORDS];
    emu_features(avail);
    if (cpu_model_parse(m->cfg ? m->cfg->cpu : NULL, avail, false, &model, err, sizeof(err))) {
        log_error("%s", err);
        return -EINVAL;
    }
    int r = emu_vm_create(m, &vm);
    if (r < 0) {
        log_error("tcg: cannot allocate the code map: %s", strerror(-r));
        return r;
    }
    int ncpus = m->ncpus ? m->ncpus : (m->cfg ? m->cfg->ncpus : 1);
    r = irqchip_create(m, ncpus > 0 ? ncpus : 1, &m->irqchip);
    if (r < 0) {
        log_error("tcg: cannot create the interrupt controllers: %s", strerror(-r));
        emu_vm_destroy(vm);
        return r;
    }
    vm->model = model;
    if (m->cfg && m->cfg->tcg_nojit)
        emu_vm_set_jit(vm, -1);
    if (m->cfg && m->cfg->tcg_perfmap && (r = emu_vm_open_perfmap(vm)) < 0) {
        log_error("-perfmap: cannot create /tmp/perf-%d.map: %s", (int)getpid(), strerror(-r));
        irqchip_destroy(m->irqchip);
        m->irqchip = NULL;
        emu_vm_destroy(vm);
        return r;
    }
    m->accel_data = vm;
    return 0;
}

static void tcg_vm_destroy(struct machine *m)
{
    if (m->irqchip)
        irqchip_destroy(m->irqchip);
    m->irqchip = NULL;
    emu_vm_destroy(m->accel_data);
    m->accel_data = NULL;
}

static int tcg_mem_add(struct machine *m, int idx)
{
    (void)idx;
    return emu_vm_sync(m->accel_data);
}

static int tcg_mem_remap(struct machine *m, int idx)
{
    return emu_vm_remap(m->accel_data, idx);
}

static int tcg_mem_dirty_sync(struct machine *m, int idx)
{
    (void)idx;
    emu_vm_flush_tlbs(m->accel_data);
    return 0;
}

static void tcg_io(void *opaque, uint16_t port, void *data, unsigned size, bool is_write)
{
    vcpu_io(opaque, port, data, size, is_write);
}

static void tcg_mmio(void *opaque, uint64_t gpa, void *data, unsigned size, bool is_write)
{
    vcpu_mmio(opaque, gpa, data, size, is_write);
}

static void lapic_kick(void *cpu) { emu_cpu_irq_notify(cpu); }
static void lapic_init(void *cpu) { emu_cpu_init_ipi(cpu); }
static void lapic_sipi(void *cpu, uint8_t vector) { emu_cpu_sipi(cpu, vector); }

static const struct lapic_cpu_ops tcg_lapic_ops = {
    .kick = lapic_kick, .init = lapic_init, .sipi = lapic_sipi,
};

static int tcg_vcpu_create(struct vcpu *v)
{
    struct machine *m = v->m;
    struct emu_env env = {
        .io = tcg_io, .mmio = tcg_mmio, .opaque = v,
        .lapic = m->irqchip ? irqchip_lapic(m->irqchip, v->id) : NULL,
    };
    struct cpu *c = emu_cpu_create(m, m->accel_data, v->id, &env);
    if (!c) {
        log_error("tcg: cannot allocate vCPU %d", v->id);
        return -ENOMEM;
    }
    c->ncpus = m->ncpus > 0 ? m->ncpus : 1;
    if (v->id != 0)
        emu_cpu_wait_sipi(c);
    if (env.lapic)
        lapic_attach(env.lapic, &tcg_lapic_ops, c);
    v->accel_data = c;
    return emu_cpu_register_vmstate(m, c, v->id);
}

static void tcg_vcpu_destroy(struct vcpu *v)
{
    if (v->accel_data) {
        uint64_t blocks, slow;
        emu_cpu_loop_stats(v->accel_data, &blocks, &slow);
        log_debug(LOG_ACCEL, "tcg: cpu%d retired %llu instructions; the run loop looked up %llu "
                  "blocks, %llu of them past the jump cache, and stepped %llu instructions one "
                  "at a time", v->id,
                  (unsigned long long)emu_cpu_icount(v->accel_data), (unsigned long long)blocks,
                  (unsigned long long)slow,
                  (unsigned long long)emu_cpu_debug_steps(v->accel_data));
    }
    emu_cpu_destroy(v->accel_data);
    v->accel_data = NULL;
}

static int tcg_vcpu_set_state(struct vcpu *v, const struct cpu_state *s)
{
    emu_cpu_set_state(v->accel_data, s);
    return 0;
}

static int tcg_vcpu_get_state(struct vcpu *v, struct cpu_state *s)
{
    if (!v->accel_data)
        return -ENODEV;
    emu_cpu_get_state(v->accel_data, s);
    return 0;
}

static int tcg_vcpu_run(struct vcpu *v)
{
    struct cpu *c = v->accel_data;
    switch (emu_cpu_run(c)) {
    case EMU_STOP_KICK: v->exit.reason = VCPU_EXIT_KICKED; break;
    case EMU_STOP_HLT: v->exit.reason = VCPU_EXIT_HLT; break;
    case EMU_STOP_SHUTDOWN: v->exit.reason = VCPU_EXIT_SHUTDOWN; break;
    default:
        v->exit.reason = VCPU_EXIT_ERROR;
        snprintf(v->exit.error, sizeof(v->exit.error), "vCPU %d executes outside RAM at %#llx",
                 v->id, (unsigned long long)emu_cpu_rip(c));
        break;
    }
    return 0;
}

static void tcg_vcpu_kick(struct vcpu *v)
{
    if (v->accel_data)
        emu_cpu_kick(v->accel_data);
}

static int tcg_set_irq(struct machine *m, unsigned gsi, int level)
{
    if (!m->irqchip)
        return -ENODEV;
    irqchip_set_irq(m->irqchip, gsi, level);
    return 0;
}

static void tcg_mem_written(struct machine *m, uint64_t gpa, uint64_t len)
{
    if (m->accel_data)
        emu_vm_invalidate(m->accel_data, gpa, len);
}

static void tcg_dirty_track(struct machine *m, uint64_t gpa, uint64_t len, bool on)
{
    if (m->accel_data)
        emu_vm_track(m->accel_data, gpa, len, on);
}

const struct accel_ops accel_tcg = {
    .name = "tcg",
    .probe = tcg_probe,
    .vm_create = tcg_vm_create,
    .vm_destroy = tcg_vm_destroy,
    .mem_add = tcg_mem_add,
    .mem_remap = tcg_mem_remap,
    .mem_dirty_sync = tcg_mem_dirty_sync,
    .vcpu_create = tcg_vcpu_create,
    .vcpu_destroy = tcg_vcpu_destroy,
    .vcpu_set_state = tcg_vcpu_set_state,
    .vcpu_get_state = tcg_vcpu_get_state,
    .vcpu_run = tcg_vcpu_run,
    .vcpu_kick = tcg_vcpu_kick,
    .set_irq = tcg_set_irq,
    .mem_written = tcg_mem_written,
    .dirty_track = tcg_dirty_track,
};
