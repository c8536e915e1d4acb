/* The KVM vCPU and VM state in the state stream (accel/kvm_state.h). The kernel's own structs
 * (struct kvm_sregs, kvm_lapic_state, kvm_vcpu_events, ...) are KVM's stable x86 ABI, so they go
 * into the stream as their bytes; a field KVM added later is carried as it comes. Saving reads
 * everything with the vCPUs paused; loading checks what it can before any device changes (the
 * MSRs exist here, the TSC frequency can be matched) and applies the rest in post_load, where a
 * refusal by KVM stops the machine with one line: the guest cannot run on half a state. */
#include "accel/kvm_state.h"

#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define KVM_STATE_MAX_MSRS 256
#define MSR_IA32_TSC_DEADLINE 0x6e0

enum { FPU_XSAVE = 1, FPU_LEGACY = 2 };

struct kvm_cpu_persist {
    struct machine *m;
    int id, fd, vm_fd;
    bool tsc_control;                     /* this host's KVM can set the guest's TSC frequency */
    uint32_t live_msrs[KVM_STATE_MAX_MSRS];  /* what this vCPU saves, probed at creation */
    uint32_t nlive;
    /* ---- the stream ---- */
    bool valid;                           /* every read on the source succeeded */
    uint8_t fpu_kind;
    uint32_t tsc_khz;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint32_t xsave[1024];                 /* struct kvm_xsave's fixed 4 KiB */
    struct kvm_fpu fpu;
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_debugregs debugregs;
    uint32_t mp_state;
    uint32_t nmsrs;
    uint32_t msr_index[KVM_STATE_MAX_MSRS];
    uint64_t msr_value[KVM_STATE_MAX_MSRS];
};

#define P struct kvm_cpu_persist
#define RAW(f) VMS_FIELD(P, f, VMS_U8, sizeof(((P *)0)->f), 0)
static const struct vmstate_field kvm_cpu_fields[] = {
    VMSTATE_BOOL(P, valid), VMSTATE_U8(P, fpu_kind), VMSTATE_U32(P, tsc_khz),
    VMS_FIELD(P, regs, VMS_U64, sizeof(struct kvm_regs) / 8, 0),
    RAW(sregs), VMSTATE_U32_ARRAY(P, xsave, 1024), RAW(fpu), RAW(xcrs), RAW(lapic), RAW(events),
    RAW(debugregs), VMSTATE_U32(P, mp_state), VMSTATE_U32(P, nmsrs),
    VMSTATE_U32_ARRAY(P, msr_index, KVM_STATE_MAX_MSRS), VMSTATE_U64_ARRAY(P, msr_value, KVM_STATE_MAX_MSRS),
    VMSTATE_END,
};
#undef RAW
#undef P

struct kvm_msr_buf {
    struct kvm_msrs hdr;
    struct kvm_msr_entry e[KVM_STATE_MAX_MSRS];
};

static void kvm_cpu_pre_save(void *opaque)
{
    struct kvm_cpu_persist *p = opaque;
    int fd = p->fd;
    const char *what = NULL;
    p->valid = false;
    if (ioctl(fd, KVM_GET_REGS, &p->regs) < 0)
        what = "registers";
    else if (ioctl(fd, KVM_GET_SREGS, &p->sregs) < 0)
        what = "system registers";
    else if (p->fpu_kind == FPU_XSAVE && ioctl(fd, KVM_GET_XSAVE, p->xsave) < 0)
        what = "XSAVE area";
    else if (p->fpu_kind == FPU_LEGACY && ioctl(fd, KVM_GET_FPU, &p->fpu) < 0)
        what = "FPU";
    else if (ioctl(p->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 && ioctl(fd, KVM_GET_XCRS, &p->xcrs) < 0)
        what = "XCRs";
    else if (ioctl(fd, KVM_GET_LAPIC, &p->lapic) < 0)
        what = "local APIC";
    else if (ioctl(fd, KVM_GET_VCPU_EVENTS, &p->events) < 0)
        what = "pending events";
    else if (ioctl(fd, KVM_GET_DEBUGREGS, &p->debugregs) < 0)
        what = "debug registers";
    else if (ioctl(fd, KVM_GET_MP_STATE, &p->mp_state) < 0)
        what = "MP state";
    if (!what) {
        static struct kvm_msr_buf b;   /* pre_save runs on the I/O thread, one at a time */
        memset(&b, 0, sizeof(b));
        b.hdr.nmsrs = p->nlive;
        for (uint32_t i = 0; i < p->nlive; i++)
            b.e[i].index = p->live_msrs[i];
        int n = ioctl(fd, KVM_GET_MSRS, &b);
        if (n != (int)p->nlive) {
            what = "MSRs";
            if (n >= 0)
                errno = EIO;   /* KVM read fewer than it listed */
        } else {
            p->nmsrs = p->nlive;
            for (uint32_t i = 0; i < p->nlive; i++)
                p->msr_index[i] = b.e[i].index, p->msr_value[i] = b.e[i].data;
        }
    }
    int err = errno;   /* of the read that failed, before the next ioctl */
    int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
    p->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    if (what)
        log_error("kvm: cannot read vCPU %d's %s for the state stream: %s", p->id, what, strerror(err));
    else
        p->valid = true;
}

static int kvm_cpu_check(const void *live, const void *state, const char **why)
{
    const struct kvm_cpu_persist *l = live, *s = state;
    if (!s->valid)
        return *why = "state (the source could not read it)", -EINVAL;
    if (s->fpu_kind != l->fpu_kind)
        return *why = "FPU state (XSAVE on one host, not on the other)", -EINVAL;
    if (s->nmsrs > KVM_STATE_MAX_MSRS)
        return *why = "MSR count", -EINVAL;
    for (uint32_t i = 0; i < s->nmsrs; i++) {
        uint32_t k = 0;
        while (k < l->nlive && l->live_msrs[k] != s->msr_index[i])
            k++;
        if (k == l->nlive)
            return *why = "MSR list (an MSR this host's KVM does not save)", -EINVAL;
    }
    if (s->xcrs.nr_xcrs > KVM_MAX_XCRS)
        return *why = "XCR count", -EINVAL;
    if (s->tsc_khz && l->tsc_khz && s->tsc_khz != l->tsc_khz && !l->tsc_control)
        return *why = "TSC frequency (the source's, which this host's KVM cannot give)", -EINVAL;
    return 0;
}

/* Sets the saved MSRs, all but the TSC deadline (deadline: only that one, after the local APIC,
 * as KVM wants it). false when KVM took fewer than given. */
static bool kvm_cpu_put_msrs(struct kvm_cpu_persist *p, bool deadline)
{
    static struct kvm_msr_buf b;   /* post_load runs on the I/O thread, one at a time */
    memset(&b, 0, sizeof(b));
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nmsrs; i++)
        if ((p->msr_index[i] == MSR_IA32_TSC_DEADLINE) == deadline)
            b.e[n++] = (struct kvm_msr_entry){ .index = p->msr_index[i], .data = p->msr_value[i] };
    b.hdr.nmsrs = n;
    return !n || ioctl(p->fd, KVM_SET_MSRS, &b) == (int)n;
}

static void kvm_cpu_post_load(void *opaque)
{
    struct kvm_cpu_persist *p = opaque;
    int fd = p->fd;
    const char *what = NULL;
    int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
    if (p->tsc_khz && khz > 0 && (uint32_t)khz != p->tsc_khz && ioctl(fd, KVM_SET_TSC_KHZ, p->tsc_khz) < 0)
        what = "TSC frequency";
    else if (ioctl(fd, KVM_SET_REGS, &p->regs) < 0)
        what = "registers";
    else if (p->fpu_kind == FPU_XSAVE && ioctl(fd, KVM_SET_XSAVE, p->xsave) < 0)
        what = "XSAVE area";
    else if (p->fpu_kind == FPU_LEGACY && ioctl(fd, KVM_SET_FPU, &p->fpu) < 0)
        what = "FPU";
    else if (p->xcrs.nr_xcrs && ioctl(fd, KVM_SET_XCRS, &p->xcrs) < 0)
        what = "XCRs";
    else if (ioctl(fd, KVM_SET_SREGS, &p->sregs) < 0)
        what = "system registers";
    else if (!kvm_cpu_put_msrs(p, false))
        what = "MSRs";
    else if (ioctl(fd, KVM_SET_MP_STATE, &p->mp_state) < 0)
        what = "MP state";
    else if (ioctl(fd, KVM_SET_LAPIC, &p->lapic) < 0)
        what = "local APIC";
    else if (!kvm_cpu_put_msrs(p, true))
        what = "TSC deadline";
    else if (ioctl(fd, KVM_SET_VCPU_EVENTS, &p->events) < 0)
        what = "pending events";
    else if (ioctl(fd, KVM_SET_DEBUGREGS, &p->debugregs) < 0)
        what = "debug registers";
    if (what) {
        log_error("kvm: cannot restore vCPU %d's %s: %s", p->id, what, strerror(errno));
        machine_request_stop(p->m, MACHINE_FAILED, 1);
    }
}

static const struct vmstate_desc kvm_cpu_vmstate = {
    .name = "kvm-cpu", .version = 1, .min_version = 1, .size = sizeof(struct kvm_cpu_persist),
    .fields = kvm_cpu_fields, .pre_save = kvm_cpu_pre_save, .check = kvm_cpu_check,
    .post_load = kvm_cpu_post_load,
};

/* KVM's list of MSRs to save, kept to those this vCPU reads (KVM_GET_MSRS stops at the first it
 * cannot: an MSR of a feature the CPUID hides, or one the host lacks). */
static int kvm_probe_msrs(struct kvm_cpu_persist *p, int kvm_fd)
{
    struct kvm_msr_list probe = { .nmsrs = 0 };
    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return -errno;
    struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
    if (!l)
        return -ENOMEM;
    l->nmsrs = probe.nmsrs;
    if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
        int err = -errno;
        free(l);
        return err;
    }
    for (uint32_t i = 0; i < l->nmsrs && p->nlive < KVM_STATE_MAX_MSRS; i++) {
        struct {
            struct kvm_msrs hdr;
            struct kvm_msr_entry e;
        } one = { .hdr.nmsrs = 1, .e.index = l->indices[i] };
        if (ioctl(p->fd, KVM_GET_MSRS, &one) == 1)
            p->live_msrs[p->nlive++] = l->indices[i];
    }
    if (l->nmsrs > KVM_STATE_MAX_MSRS)
        log_warn("kvm: %u MSRs to save, the state stream keeps the first %d", l->nmsrs, KVM_STATE_MAX_MSRS);
    free(l);
    return 0;
}

int kvm_state_register_vcpu(struct machine *m, int id, int kvm_fd, int vm_fd, int vcpu_fd)
{
    struct kvm_cpu_persist *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int ret = machine_add_cleanup(m, free, p);
    if (ret)
        return ret;
    p->m = m, p->id = id, p->fd = vcpu_fd, p->vm_fd = vm_fd;
    p->fpu_kind = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0 ? FPU_XSAVE : FPU_LEGACY;
    p->tsc_control = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_CONTROL) > 0;
    int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
    p->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    if ((ret = kvm_probe_msrs(p, kvm_fd))) {
        log_error("kvm: cannot list vCPU %d's MSRs: %s", id, strerror(-ret));
        return ret;
    }
    return vmstate_register(m, &kvm_cpu_vmstate, (uint32_t)id, p);
}

/* ---- the VM: in-kernel PICs and IOAPIC, PIT, kvmclock ---- */

struct kvm_vm_persist {
    struct machine *m;
    int vm_fd;
    bool valid;
    struct kvm_irqchip chip[3];          /* KVM_IRQCHIP_PIC_MASTER, _SLAVE, _IOAPIC */
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
};

#define P struct kvm_vm_persist
static const struct vmstate_field kvm_vm_fields[] = {
    VMSTATE_BOOL(P, valid), VMS_FIELD(P, chip, VMS_U8, sizeof(((P *)0)->chip), 0),
    VMS_FIELD(P, pit, VMS_U8, sizeof(struct kvm_pit_state2), 0),
    VMS_FIELD(P, clock, VMS_U8, sizeof(struct kvm_clock_data), 0),
    VMSTATE_END,
};
#undef P

static void kvm_vm_pre_save(void *opaque)
{
    struct kvm_vm_persist *p = opaque;
    const char *what = NULL;
    for (uint32_t c = 0; c < 3 && !what; c++) {
        memset(&p->chip[c], 0, sizeof(p->chip[c]));
        p->chip[c].chip_id = c;
        if (ioctl(p->vm_fd, KVM_GET_IRQCHIP, &p->chip[c]) < 0)
            what = c == 2 ? "IOAPIC" : "PIC";
    }
    if (!what && ioctl(p->vm_fd, KVM_GET_PIT2, &p->pit) < 0)
        what = "PIT";
    if (!what && ioctl(p->vm_fd, KVM_GET_CLOCK, &p->clock) < 0)
        what = "kvmclock";
    p->valid = !what;
    if (what)
        log_error("kvm: cannot read the in-kernel %s for the state stream: %s", what, strerror(errno));
}

static int kvm_vm_check(const void *live, const void *state, const char **why)
{
    const struct kvm_vm_persist *s = state;
    (void)live;
    if (!s->valid)
        return *why = "state (the source could not read it)", -EINVAL;
    for (uint32_t c = 0; c < 3; c++)
        if (s->chip[c].chip_id != c)
            return *why = "interrupt controller id", -EINVAL;
    return 0;
}

static void kvm_vm_post_load(void *opaque)
{
    struct kvm_vm_persist *p = opaque;
    const char *what = NULL;
    for (uint32_t c = 0; c < 3 && !what; c++)
        if (ioctl(p->vm_fd, KVM_SET_IRQCHIP, &p->chip[c]) < 0)
            what = c == 2 ? "IOAPIC" : "PIC";
    if (!what && ioctl(p->vm_fd, KVM_SET_PIT2, &p->pit) < 0)
        what = "PIT";
    /* the guest's clock goes on from the saved reading: the time spent saved is not seen */
    struct kvm_clock_data clock = { .clock = p->clock.clock };
    if (!what && ioctl(p->vm_fd, KVM_SET_CLOCK, &clock) < 0)
        what = "kvmclock";
    if (what) {
        log_error("kvm: cannot restore the in-kernel %s: %s", what, strerror(errno));
        machine_request_stop(p->m, MACHINE_FAILED, 1);
    }
}

static const struct vmstate_desc kvm_vm_vmstate = {
    .name = "kvm-vm", .version = 1, .min_version = 1, .size = sizeof(struct kvm_vm_persist),
    .fields = kvm_vm_fields, .pre_save = kvm_vm_pre_save, .check = kvm_vm_check, .post_load = kvm_vm_post_load,
};

int kvm_state_register_vm(struct machine *m, int kvm_fd, int vm_fd)
{
    (void)kvm_fd;
    struct kvm_vm_persist *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int ret = machine_add_cleanup(m, free, p);
    if (ret)
        return ret;
    p->m = m, p->vm_fd = vm_fd;
    return vmstate_register(m, &kvm_vm_vmstate, 0, p);
}
