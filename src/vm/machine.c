/* Machine life cycle: build it from the config, run it, tear it down. What the machine contains
 * is declared by the parts themselves (MACHINE_INIT, DEVICE_TYPE), in priority order, so this file
 * never names a device. */
#include "vm/machine.h"

#include "accel/accel.h"
#include "util/evloop.h"
#include "util/log.h"
#include "util/sandbox.h"
#include "vm/boot.h"
#include "vm/firmware.h"
#include "vm/control.h"
#include "vm/memory.h"
#include "vm/vcpu.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct machine_cleanup {
    void (*fn)(void *opaque);
    void *opaque;
    struct machine_cleanup *next;
};

static struct machine_init *inits;
static struct device_type *device_types;

void machine_register_init(struct machine_init *mi)
{
    struct machine_init **pp = &inits;
    while (*pp && (*pp)->priority <= mi->priority)
        pp = &(*pp)->next;
    mi->next = *pp;
    *pp = mi;
}

void machine_register_device_type(struct device_type *t)
{
    t->next = device_types;
    device_types = t;
}

static struct device_type *device_type_find(const char *name)
{
    for (struct device_type *t = device_types; t; t = t->next)
        if (!strcmp(t->name, name))
            return t;
    return NULL;
}

int machine_check_devices(const struct machine_config *cfg, const char **bad)
{
    for (int i = 0; i < cfg->ndevices; i++) {
        const char *drv = NULL;
        for (int k = 0; k < cfg->devices[i].n; k++)
            if (!strcmp(cfg->devices[i].items[k].key, "driver"))
                drv = cfg->devices[i].items[k].val;
        if (!drv || !device_type_find(drv)) {
            *bad = drv ? drv : "";
            return -ENOENT;
        }
    }
    return 0;
}

static int machine_create_devices(struct machine *m)
{
    for (int i = 0; i < m->cfg->ndevices; i++) {
        struct kvlist *opts = (struct kvlist *)&m->cfg->devices[i];
        const char *drv = keyval_get(opts, "driver");
        struct device_type *t = drv ? device_type_find(drv) : NULL;
        if (!t) {
            log_error("-device '%s': no such device", drv ? drv : "");
            return -ENOENT;
        }
        int ret = t->create(m, opts);
        if (ret)
            return ret;
        const char *unused = keyval_unused(opts);
        if (unused) {
            log_error("-device %s: unknown property '%s'", drv, unused);
            return -EINVAL;
        }
    }
    return 0;
}

int machine_create(struct machine *m, const struct machine_config *cfg)
{
    memset(m, 0, sizeof(*m));
    m->cfg = cfg;
    m->accel = cfg->accel;
    m->ncpus = cfg->ncpus;
    log_ratelimit_init(&m->guest_log);
    atomic_init(&m->stop, MACHINE_RUNNING);
    pthread_mutex_init(&m->run_lock, NULL);
    pthread_cond_init(&m->run_cond, NULL);
    atomic_init(&m->pause_req, cfg->start_paused);
    m->prelaunch = cfg->start_paused;
    bus_init(&m->pio, "pio");
    bus_init(&m->mmio, "mmio");
    int ret = evloop_create(&m->loop);
    if (ret) {
        log_error("cannot create the event loop: %s", strerror(-ret));
        return ret;
    }
    uint64_t hole = cfg->type == MACHINE_PC ? FIRMWARE_VIEW_BASE : cfg->bios ? BOOT_BIOS_AREA : 0;
    ret = memory_create_ram(m, cfg->ram_size, hole);
    if (ret) {
        log_error("cannot allocate %llu MiB of guest memory: %s",
                  (unsigned long long)(cfg->ram_size >> 20), strerror(-ret));
        return ret;
    }
    if (cfg->type == MACHINE_PC)
        ret = firmware_map(m);
    else if (cfg->bios)
        ret = boot_map_bios(m);
    if (ret)
        return ret;
    ret = m->accel->vm_create(m);
    if (ret)
        return ret;
    m->vcpus = calloc((size_t)m->ncpus, sizeof(*m->vcpus));
    if (!m->vcpus)
        return -ENOMEM;
    for (int i = 0; i < m->ncpus; i++) {
        m->vcpus[i].id = i;
        m->vcpus[i].m = m;
        ret = m->accel->vcpu_create(&m->vcpus[i]);
        if (ret)
            return ret;
    }
    for (struct machine_init *mi = inits; mi; mi = mi->next) {
        if (mi->priority > INIT_DEVICE)   /* -device lines come after the fixed devices */
            break;
        if ((ret = mi->init(m)))
            return ret;
    }
    if ((ret = machine_create_devices(m)))
        return ret;
    for (struct machine_init *mi = inits; mi; mi = mi->next) {
        if (mi->priority <= INIT_DEVICE)
            continue;
        if ((ret = mi->init(m)))
            return ret;
    }
    /* Firmware and kernel images came in through the heap and were copied into guest memory: give
     * the freed pages back rather than keep them resident for the VM's whole life. */
    malloc_trim(0);
    return 0;
}

enum machine_stop machine_run(struct machine *m)
{
    int ret = vcpus_start(m);
    if (ret) {
        log_error("cannot start the vCPUs: %s", strerror(-ret));
        machine_request_stop(m, MACHINE_FAILED, 1);
    } else if (sandbox_enter_thread(SANDBOX_THREAD_MAIN)) {
        /* last: threads inherit their creator's filter, so the vCPUs took theirs first */
        machine_request_stop(m, MACHINE_FAILED, 1);
    } else {
        evloop_run(m->loop);
    }
    pthread_mutex_lock(&m->run_lock);
    pthread_cond_broadcast(&m->run_cond);
    pthread_mutex_unlock(&m->run_lock);
    vcpus_stop(m);
    machine_emit_stop_event(m, (enum machine_stop)atomic_load(&m->stop));
    return (enum machine_stop)atomic_load(&m->stop);
}

int machine_add_cleanup(struct machine *m, void (*fn)(void *opaque), void *opaque)
{
    struct machine_cleanup *c = malloc(sizeof(*c));
    if (!c) {
        fn(opaque);
        return -ENOMEM;
    }
    *c = (struct machine_cleanup){ fn, opaque, m->cleanups };
    m->cleanups = c;
    return 0;
}

void machine_destroy(struct machine *m)
{
    /* exit hooks in reverse order of init: build the reversed list on the stack */
    struct machine_init *stack[64];
    int n = 0;
    for (struct machine_init *mi = inits; mi && n < 64; mi = mi->next)
        stack[n++] = mi;
    while (n--)
        if (stack[n]->exit)
            stack[n]->exit(m);
    while (m->cleanups) {
        struct machine_cleanup *c = m->cleanups;
        m->cleanups = c->next;
        c->fn(c->opaque);
        free(c);
    }
    if (m->vcpus) {
        for (int i = 0; i < m->ncpus; i++)
            if (m->accel && m->accel->vcpu_destroy)
                m->accel->vcpu_destroy(&m->vcpus[i]);
        free(m->vcpus);
        m->vcpus = NULL;
    }
    if (m->accel && m->accel->vm_destroy)
        m->accel->vm_destroy(m);
    vmstate_unregister_all(m);
    memory_destroy(m);
    bus_destroy(&m->pio);
    bus_destroy(&m->mmio);
    evloop_destroy(m->loop);
    m->loop = NULL;
    pthread_mutex_destroy(&m->run_lock);
    pthread_cond_destroy(&m->run_cond);
    log_ratelimit_flush(&m->guest_log);
}

void machine_log_guest(struct machine *m, unsigned cat, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vguest(m ? &m->guest_log : NULL, cat, key, fmt, ap);
    va_end(ap);
}

void machine_report_unmapped(struct machine *m, int cpu, uint64_t addr, bool is_write)
{
    if (!log_enabled(LOG_GUEST))
        return;   /* a vCPU exit: no formatting for a message nobody asked for */
    char who[16] = "";
    if (cpu >= 0)
        snprintf(who, sizeof(who), "cpu%d: ", cpu);
    machine_log_guest(m, LOG_GUEST, "unmapped MMIO", "%sguest %s unmapped MMIO at 0x%llx (reads as ones, writes ignored)",
                      who, is_write ? "wrote" : "read", (unsigned long long)addr);
}

int machine_set_irq(struct machine *m, unsigned gsi, int level)
{
    return m->accel->set_irq(m, gsi, level);
}

void machine_request_stop(struct machine *m, enum machine_stop why, int status)
{
    machine_request_stop_host(m, why, status, NULL);
}

void machine_request_stop_host(struct machine *m, enum machine_stop why, int status, const char *reason)
{
    int expected = MACHINE_RUNNING;
    if (!atomic_compare_exchange_strong(&m->stop, &expected, (int)why))
        return;
    m->exit_status = status;
    m->stop_reason = reason;
    /* parked vCPUs wake to see the stop (no lock: this may run in a signal handler; the vCPUs'
     * wait is timed, see vcpu_park) */
    static const char *const names[] = { "running", "poweroff", "reset", "exit", "failure" };
    log_debug(LOG_TIME, "stop requested: %s (status %d)", names[why], status);
    evloop_stop(m->loop, (int)why);
}
