/* The KVM accelerator's part of the state stream (vm/vmstate.h), as accel/emu/persist.c is the
 * emulator's: per vCPU ("kvm-cpu") the general and system registers, FPU/SSE/AVX through XSAVE
 * (or the legacy FPU area), XCRs, the MSRs KVM lists for saving (KVM_GET_MSR_INDEX_LIST, less
 * those this vCPU cannot read), the in-kernel local APIC, pending events, debug registers, the
 * multiprocessing state and the TSC frequency; per VM ("kvm-vm") the in-kernel PICs and IOAPIC,
 * the PIT and the kvmclock. Written from the KVM API (Documentation/virt/kvm/api.rst), restored
 * in the order QEMU's target/i386/kvm/kvm.c uses. */
#ifndef QKVM_ACCEL_KVM_STATE_H
#define QKVM_ACCEL_KVM_STATE_H

struct machine;

/* After the in-kernel irqchip and PIT exist. kvm_fd is /dev/kvm's. 0 or -errno. */
int kvm_state_register_vm(struct machine *m, int kvm_fd, int vm_fd);
/* After vCPU id is set up (CPUID set: it decides which MSRs exist). 0 or -errno. */
int kvm_state_register_vcpu(struct machine *m, int id, int kvm_fd, int vm_fd, int vcpu_fd);

#endif
