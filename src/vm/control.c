/* Pause, resume, reset, power button, quit: the machine's side of the monitor's commands. */
#include "vm/control.h"

#include "accel/accel.h"
#include "vm/migration.h"
#include "vm/vcpu.h"

#include <errno.h>
#include <stdio.h>

void machine_emit_event(struct machine *m, const char *name, const char *data_json)
{
    if (m->event_fn)
        m->event_fn(m->event_opaque, name, data_json);
}

bool machine_is_paused(const struct machine *m)
{
    return atomic_load(&((struct machine *)m)->pause_req);
}

const char *machine_run_state(const struct machine *m)
{
    if (atomic_load(&((struct machine *)m)->stop) != MACHINE_RUNNING)
        return "shutdown";
    const char *mig = migration_run_state(m);
    if (mig)
        return mig;
    if (machine_is_paused(m))
        return m->prelaunch ? "prelaunch" : "paused";
    return "running";
}

bool machine_park_vcpus(struct machine *m)
{
    if (atomic_exchange(&m->pause_req, true))
        return false;
    for (int i = 0; i < m->ncpus; i++)
        if (m->vcpus[i].started)
            m->accel->vcpu_kick(&m->vcpus[i]);
    /* Each vCPU parks once its current exit is handled: device handlers never wait for this
     * thread, so this wait ends. A stop request ends it too (the vCPUs then leave for good). */
    pthread_mutex_lock(&m->run_lock);
    while (m->nparked < m->nrunning_threads && atomic_load(&m->stop) == MACHINE_RUNNING)
        pthread_cond_wait(&m->run_cond, &m->run_lock);
    pthread_mutex_unlock(&m->run_lock);
    return true;
}

void machine_unpark_vcpus(struct machine *m)
{
    pthread_mutex_lock(&m->run_lock);
    atomic_store(&m->pause_req, false);
    pthread_cond_broadcast(&m->run_cond);
    pthread_mutex_unlock(&m->run_lock);
}

int machine_add_run_hook(struct machine *m, void (*fn)(void *opaque, bool running), void *opaque)
{
    if (m->nrun_hooks == MACHINE_MAX_DEVICES)
        return -ENOSPC;
    m->run_hooks[m->nrun_hooks++] = (struct machine_run_hook){ fn, opaque };
    return 0;
}

static void machine_call_run_hooks(struct machine *m, bool running)
{
    for (int i = 0; i < m->nrun_hooks; i++)
        m->run_hooks[i].fn(m->run_hooks[i].opaque, running);
}

int machine_pause(struct machine *m)
{
    if (!machine_park_vcpus(m))
        return 0;
    machine_call_run_hooks(m, false);
    machine_emit_event(m, "STOP", NULL);
    return 0;
}

int machine_resume(struct machine *m)
{
    if (!atomic_load(&m->pause_req))
        return 0;
    m->prelaunch = false;
    machine_call_run_hooks(m, true);
    machine_unpark_vcpus(m);
    machine_emit_event(m, "RESUME", NULL);
    return 0;
}

int machine_get_cpu_state(struct machine *m, int cpu, struct cpu_state *s)
{
    if (cpu < 0 || cpu >= m->ncpus)
        return -EINVAL;
    if (!m->accel->vcpu_get_state)
        return -ENOTSUP;
    bool parked_here = machine_park_vcpus(m);
    int ret = atomic_load(&m->stop) != MACHINE_RUNNING ? -ESHUTDOWN : m->accel->vcpu_get_state(&m->vcpus[cpu], s);
    if (parked_here)
        machine_unpark_vcpus(m);
    return ret;
}

int machine_reset(struct machine *m, const char *reason)
{
    machine_request_stop_host(m, MACHINE_RESET, 0, reason);
    return 0;
}

int machine_powerdown(struct machine *m)
{
    if (!m->power_button)
        return -ENODEV;
    m->power_button(m);
    machine_emit_event(m, "POWERDOWN", NULL);
    return 0;
}

int machine_quit(struct machine *m, const char *reason)
{
    machine_request_stop_host(m, MACHINE_EXIT, 0, reason);
    return 0;
}

void machine_emit_stop_event(struct machine *m, enum machine_stop why)
{
    const char *reason = m->stop_reason;
    bool guest = reason == NULL;
    char data[128];
    switch (why) {
    case MACHINE_RUNNING:
        return;
    case MACHINE_POWEROFF:
        reason = reason ? reason : "guest-shutdown";
        break;
    case MACHINE_RESET:
        reason = reason ? reason : "guest-reset";
        if (!m->cfg->no_reboot) {
            snprintf(data, sizeof(data), "{\"guest\": %s, \"reason\": \"%s\"}", guest ? "true" : "false", reason);
            machine_emit_event(m, "RESET", data);
            return;
        }
        break;
    case MACHINE_EXIT:
        if (guest)
            return;   /* isa-debug-exit: QEMU exits at once, saying nothing either */
        break;
    case MACHINE_FAILED:
        reason = reason ? reason : "guest-panic";
        break;
    }
    snprintf(data, sizeof(data), "{\"guest\": %s, \"reason\": \"%s\"}", guest ? "true" : "false", reason);
    machine_emit_event(m, "SHUTDOWN", data);
}
