/* The vCPU loop: run guest code, hand each exit to a bus, repeat until the machine stops.
 * It knows the buses and the exit reasons, nothing of the devices behind them. */
#include "vm/vcpu.h"

#include "util/log.h"
#include "util/sandbox.h"
#include "vm/machine.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void vcpu_io(struct vcpu *v, uint16_t port, void *data, unsigned size, bool is_write)
{
    if (log_enabled(LOG_IO)) {
        uint32_t val = 0;
        if (is_write)
            memcpy(&val, data, size > 4 ? 4 : size);
        log_debug(LOG_IO, "cpu%d %s port 0x%x size %u%s0x%x", v->id, is_write ? "out" : "in", port,
                  size, is_write ? " val " : "", val);
    }
    bus_dispatch(&v->m->pio, port, data, size, is_write);
}

void vcpu_mmio(struct vcpu *v, uint64_t addr, void *data, unsigned size, bool is_write)
{
    if (bus_dispatch(&v->m->mmio, addr, data, size, is_write) == -ENOENT)
        machine_report_unmapped(v->m, v->id, addr, is_write);
}

/* A pause request parks the thread here, between two runs of guest code: it holds no device
 * lock and no accelerator state is half-done. The wait is timed because a stop requested from
 * a signal handler cannot take run_lock to wake it. */
static void vcpu_park(struct machine *m)
{
    pthread_mutex_lock(&m->run_lock);
    m->nparked++;
    pthread_cond_broadcast(&m->run_cond);
    while (atomic_load(&m->pause_req) && atomic_load(&m->stop) == MACHINE_RUNNING) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&m->run_cond, &m->run_lock, &ts);
    }
    m->nparked--;
    pthread_mutex_unlock(&m->run_lock);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct machine *m = v->m;
    atomic_store(&v->tid, (int)gettid());
    if (sandbox_enter_thread(SANDBOX_THREAD_VCPU)) {
        machine_request_stop(m, MACHINE_FAILED, 1);
        return NULL;
    }
    if (v->id == 0)
        log_debug(LOG_TIME, "cpu0: first %s run", m->accel->name);
    while (atomic_load(&m->stop) == MACHINE_RUNNING) {
        if (atomic_load(&m->pause_req)) {
            vcpu_park(m);
            continue;
        }
        int ret = m->accel->vcpu_run(v);
        if (ret) {
            log_error("cpu%d: %s failed: %s", v->id, m->accel->name, strerror(-ret));
            machine_request_stop(m, MACHINE_FAILED, 1);
            break;
        }
        struct vcpu_exit *e = &v->exit;
        switch (e->reason) {
        case VCPU_EXIT_IO:
            v->exits++;
            for (uint32_t i = 0; i < e->io.count; i++)
                vcpu_io(v, e->io.port, e->io.data + (size_t)i * e->io.size, e->io.size, e->io.is_write);
            break;
        case VCPU_EXIT_MMIO:
            v->exits++;
            vcpu_mmio(v, e->mmio.addr, e->mmio.data, e->mmio.size, e->mmio.is_write);
            break;
        case VCPU_EXIT_HLT:
            log_error("cpu%d halted with nothing left to wake it", v->id);
            machine_request_stop(m, MACHINE_FAILED, 1);
            break;
        case VCPU_EXIT_SHUTDOWN:
            /* QEMU resets on a triple fault; qkvm stops, because a guest that faults that hard
             * during boot would otherwise loop for ever, printing the same thing. */
            if (m->cfg->no_reboot) {
                /* QEMU's -no-reboot: the reset a triple fault causes ends the run, status 0 */
                log_debug(LOG_INT, "cpu%d: triple fault: exiting (-no-reboot)", v->id);
                machine_request_stop(m, MACHINE_RESET, 0);
                break;
            }
            log_error("cpu%d: triple fault: the guest CPU shut down", v->id);
            machine_request_stop(m, MACHINE_FAILED, 1);
            break;
        case VCPU_EXIT_KICKED:
            break;
        case VCPU_EXIT_ERROR:
            log_error("cpu%d: %s", v->id, e->error);
            machine_request_stop(m, MACHINE_FAILED, 1);
            break;
        }
    }
    return NULL;
}

static void vcpu_kick_signal(int sig) { (void)sig; }

int vcpus_start(struct machine *m)
{
    struct sigaction sa = { .sa_handler = vcpu_kick_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < m->ncpus; i++) {
        struct vcpu *v = &m->vcpus[i];
        int ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
        if (ret)
            return -ret;
        v->started = true;
        pthread_mutex_lock(&m->run_lock);
        m->nrunning_threads++;
        pthread_mutex_unlock(&m->run_lock);
        char name[16];
        snprintf(name, sizeof(name), "vcpu%d", i);
        pthread_setname_np(v->thread, name);
    }
    return 0;
}

void vcpus_stop(struct machine *m)
{
    for (int i = 0; i < m->ncpus; i++) {
        struct vcpu *v = &m->vcpus[i];
        if (!v->started)
            continue;
        m->accel->vcpu_kick(v);
        pthread_join(v->thread, NULL);
        v->started = false;
        pthread_mutex_lock(&m->run_lock);
        m->nrunning_threads--;
        pthread_mutex_unlock(&m->run_lock);
    }
}
