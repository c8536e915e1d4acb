/* A vCPU: a host thread looping on the accelerator's vcpu_run and handing exits to the buses. */
#ifndef QKVM_VM_VCPU_H
#define QKVM_VM_VCPU_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "accel/accel.h"

struct machine;

struct vcpu {
    int id;
    struct machine *m;
    pthread_t thread;
    bool started;
    _Atomic int tid;            /* the host thread's id, for query-cpus-fast (0 before it runs) */
    void *accel_data;
    struct vcpu_exit exit;
    uint64_t exits;             /* exits handled in user space, for benchmarks */
};

/* One port or MMIO access on behalf of the guest. Unmapped ports read as ones and are ignored;
 * unmapped MMIO is reported once per page under -d guest_errors and likewise ignored. */
void vcpu_io(struct vcpu *v, uint16_t port, void *data, unsigned size, bool is_write);
void vcpu_mmio(struct vcpu *v, uint64_t addr, void *data, unsigned size, bool is_write);

int vcpus_start(struct machine *m);
/* Kicks every vCPU out of guest code and joins the threads. */
void vcpus_stop(struct machine *m);

#endif
