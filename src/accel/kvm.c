/* The KVM accelerator: the kernel runs guest code and the in-kernel irqchip and PIT; qkvm sees
 * only the exits it must answer (port and MMIO accesses to its devices). */
#include "accel/accel.h"
#include "accel/kvm_state.h"

#include "util/log.h"
#include "vm/cpu_model.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"
#include "vm/vcpu.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* Below the 16 MiB a -bios image may take under 4 GiB, above the IOAPIC and LAPIC pages; QEMU
 * puts them at the same place. Only used on Intel hosts, harmless elsewhere. */
#define KVM_IDENTITY_MAP_ADDR 0xfeffc000ull
#define KVM_TSS_ADDR          0xfeffd000ull

/* GSIs 0-23 are the interrupt controllers' pins; MSI routes take the numbers above. */
#define KVM_PIN_GSIS  24
#define KVM_MSI_ROUTES 1024

struct kvm_vm {
    int kvm_fd, vm_fd;
    int run_size;
    bool readonly_mem;
    bool log_ram;               /* migration: KVM logs the guest's writes to RAM (dirty_track) */
    struct kvm_cpuid2 *cpuid;   /* what the host supports, shaped once per VM */
    struct cpu_model model;     /* -cpu: which of the named feature bits the guest sees */
    pthread_mutex_t routes_lock;
    struct kvm_irq_routing_msi msi[KVM_MSI_ROUTES];
    bool msi_used[KVM_MSI_ROUTES];
};

struct kvm_vcpu {
    int fd;
    struct kvm_run *run;
};

static int kvm_probe(const char **why)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        *why = errno == ENOENT ? "/dev/kvm does not exist" : "/dev/kvm cannot be opened";
        return -errno;
    }
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    if (v != KVM_API_VERSION) {
        *why = "/dev/kvm speaks another API version";
        return -ENOTSUP;
    }
    return 0;
}

/* A region of m->ram (not a ROM, not a device's memory): what migration tracks. */
static bool kvm_region_is_ram(const struct machine *m, const struct mem_region *r)
{
    return r->host >= m->ram && r->host < m->ram + m->ram_size && !r->readonly;
}

static int kvm_set_slot(struct machine *m, int idx, uint64_t gpa, uint64_t size)
{
    struct kvm_vm *k = m->accel_data;
    const struct mem_region *r = &m->mem[idx];
    /* a device's host memory is logged always (machine_hostmem_dirty), RAM while migration
     * tracks it */
    bool log = (r->dirty && r->device) || (k->log_ram && kvm_region_is_ram(m, r));
    struct kvm_userspace_memory_region mr = {
        .slot = (uint32_t)idx,
        .flags = ((r->readonly && k->readonly_mem) ? KVM_MEM_READONLY : 0) |
                 (log ? KVM_MEM_LOG_DIRTY_PAGES : 0),
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)r->host,
    };
    if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
        int err = -errno;
        log_error("kvm: cannot map guest memory at 0x%llx: %s", (unsigned long long)gpa, strerror(errno));
        return err;
    }
    return 0;
}

static int kvm_map_region(struct machine *m, int idx)
{
    const struct mem_region *r = &m->mem[idx];
    uint64_t size = __atomic_load_n(&r->size, __ATOMIC_ACQUIRE);
    return size ? kvm_set_slot(m, idx, r->gpa, size) : 0;   /* a device's, not shown yet */
}

/* KVM moves no slot: a device region that moves is deleted (size 0) and made again. */
static int kvm_mem_remap(struct machine *m, int idx)
{
    int ret = kvm_set_slot(m, idx, 0, 0);
    return ret ? ret : kvm_map_region(m, idx);
}

static int kvm_mem_dirty_sync(struct machine *m, int idx)
{
    struct kvm_vm *k = m->accel_data;
    const struct mem_region *r = &m->mem[idx];
    if (!r->dirty || !__atomic_load_n(&r->size, __ATOMIC_ACQUIRE))
        return 0;   /* a hidden region has no slot: nothing written since */
    size_t words = (size_t)((r->capacity / 4096 + 63) / 64);
    uint64_t *bits = calloc(words, sizeof(*bits));
    if (!bits)
        return -ENOMEM;
    struct kvm_dirty_log log = { .slot = (uint32_t)idx, .dirty_bitmap = bits };
    int ret = 0;
    if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
        ret = -errno;
    for (size_t w = 0; !ret && w < words; w++)
        atomic_fetch_or_explicit(&r->dirty[w], bits[w], memory_order_relaxed);
    free(bits);
    return ret;
}

/* Migration's dirty tracking (accel.h): KVM logs writes per slot once KVM_MEM_LOG_DIRTY_PAGES is
 * on, and KVM_GET_DIRTY_LOG hands the log over, clears it and write-protects the pages again in
 * one step. So arming all RAM turns the flag on for its slots, re-arming one page after a sync
 * has nothing to do, and off turns the flag off. With the vCPUs parked. */
static void kvm_dirty_track(struct machine *m, uint64_t gpa, uint64_t len, bool on)
{
    struct kvm_vm *k = m->accel_data;
    if (on && len == 4096)
        return;
    k->log_ram = on;
    for (int i = 0; i < m->nmem; i++) {
        const struct mem_region *r = &m->mem[i];
        if (kvm_region_is_ram(m, r) && r->gpa == gpa && r->size == len && kvm_map_region(m, i))
            log_error("kvm: cannot turn dirty logging %s at 0x%llx", on ? "on" : "off", (unsigned long long)gpa);
    }
}

/* The pages of RAM KVM logged since the last call, into each RAM region's bitmap (where
 * memory_dirty_sync takes them), the way a device region's log is taken. */
static int kvm_dirty_collect(struct machine *m)
{
    struct kvm_vm *k = m->accel_data;
    int ret = 0;
    for (int i = 0; k->log_ram && i < m->nmem && !ret; i++)
        if (kvm_region_is_ram(m, &m->mem[i]))
            ret = kvm_mem_dirty_sync(m, i);
    return ret;
}

/* The host's CPUID as KVM can virtualize it, plus what a guest of qkvm should see: the
 * hypervisor bit and KVM's signature leaf. Per-vCPU fields (APIC IDs) are patched later. */
static int kvm_get_cpuid(struct kvm_vm *k)
{
    for (int n = 256; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(c->entries[0]));
        if (!c)
            return -ENOMEM;
        c->nent = (uint32_t)n;
        if (ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            k->cpuid = c;
            return 0;
        }
        int err = errno;
        free(c);
        if (err != E2BIG)
            return -err;
    }
    return -E2BIG;
}

/* Where a feature word lives in KVM's table: leaf, subleaf, register (0-3 = eax..edx). */
static const struct { uint32_t leaf; int reg; } kvm_feat_regs[CPUF_WORDS] = {
    [CPUF_1_EDX] = { 1, 3 }, [CPUF_1_ECX] = { 1, 2 }, [CPUF_7_EBX] = { 7, 1 },
    [CPUF_7_ECX] = { 7, 2 }, [CPUF_X1_EDX] = { 0x80000001, 3 }, [CPUF_X1_ECX] = { 0x80000001, 2 },
    [CPUF_X7_EDX] = { 0x80000007, 3 },
};

static uint32_t *kvm_entry_reg(struct kvm_cpuid_entry2 *e, int reg)
{
    return reg == 0 ? &e->eax : reg == 1 ? &e->ebx : reg == 2 ? &e->ecx : &e->edx;
}

/* The -cpu model against what KVM offers. Under KVM a model only filters: the feature bits
 * vm/cpu_model.c names and the model leaves out are cleared; identity and all else stay the
 * host's. */
static int kvm_choose_model(struct machine *m, struct kvm_vm *k)
{
    uint32_t avail[CPUF_WORDS] = { 0 };
    for (uint32_t i = 0; i < k->cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &k->cpuid->entries[i];
        for (int w = 0; w < CPUF_WORDS; w++)
            if (e->function == kvm_feat_regs[w].leaf && e->index == 0)
                avail[w] |= *kvm_entry_reg(e, kvm_feat_regs[w].reg);
    }
    avail[CPUF_1_ECX] |= 1u << 31;   /* the hypervisor bit: kvm_set_cpuid sets it */
    avail[CPUF_X7_EDX] |= 1u << 8;   /* invtsc: a model asking for it gets what the host has */
    char err[256];
    if (cpu_model_parse(m->cfg ? m->cfg->cpu : NULL, avail, true, &k->model, err, sizeof(err))) {
        log_error("%s", err);
        return -EINVAL;
    }
    return 0;
}

static int kvm_vm_create(struct machine *m)
{
    struct kvm_vm *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->vm_fd = -1;
    pthread_mutex_init(&k->routes_lock, NULL);
    m->accel_data = k;
    k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (k->kvm_fd < 0) {
        int err = -errno;
        log_error("kvm: cannot open /dev/kvm: %s", strerror(errno));
        return err;
    }
    k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
    if (k->vm_fd < 0) {
        int err = -errno;
        log_error("kvm: cannot create a VM: %s", strerror(errno));
        return err;
    }
    k->run_size = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    k->readonly_mem = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0;
    for (int i = 0; i < m->nmem; i++) {
        int r = kvm_map_region(m, i);
        if (r)
            return r;
    }
    /* Both calls fail harmlessly on AMD and on paravirtual KVM flavours. */
    uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
    ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
    ioctl(k->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR);
    if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        int err = -errno;
        log_error("kvm: cannot create the in-kernel irqchip: %s", strerror(errno));
        return err;
    }
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        int err = -errno;
        log_error("kvm: cannot create the in-kernel PIT: %s", strerror(errno));
        return err;
    }
    int ret = kvm_get_cpuid(k);
    if (ret) {
        log_error("kvm: cannot read the supported CPUID: %s", strerror(-ret));
        return ret;
    }
    if ((ret = kvm_state_register_vm(m, k->kvm_fd, k->vm_fd)))
        return ret;
    return kvm_choose_model(m, k);
}

static void kvm_vm_destroy(struct machine *m)
{
    struct kvm_vm *k = m->accel_data;
    if (!k)
        return;
    if (k->vm_fd >= 0)
        close(k->vm_fd);
    if (k->kvm_fd >= 0)
        close(k->kvm_fd);
    free(k->cpuid);
    pthread_mutex_destroy(&k->routes_lock);
    free(k);
    m->accel_data = NULL;
}

static int kvm_set_cpuid(struct vcpu *v, struct kvm_vm *k, int fd)
{
    size_t sz = sizeof(*k->cpuid) + (k->cpuid->nent + 2) * sizeof(k->cpuid->entries[0]);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c)
        return -ENOMEM;
    memcpy(c, k->cpuid, sizeof(*c) + k->cpuid->nent * sizeof(c->entries[0]));
    bool have_sig = false;
    uint32_t known[CPUF_WORDS];
    cpu_model_known_bits(known);
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        for (int w = 0; w < CPUF_WORDS && !k->model.host; w++)
            if (e->function == kvm_feat_regs[w].leaf && e->index == 0)
                *kvm_entry_reg(e, kvm_feat_regs[w].reg) &= k->model.feat[w] | ~known[w];
        switch (e->function) {
        case 1:
            e->ecx |= 1u << 31;   /* running under a hypervisor */
            e->ebx = (e->ebx & 0x0000ffff) | ((uint32_t)v->id << 24) | ((uint32_t)v->m->ncpus << 16);
            break;
        case 0xb:
        case 0x1f:
            e->edx = (uint32_t)v->id;   /* x2APIC ID */
            break;
        case 0x40000000:
            have_sig = true;
            break;
        }
    }
    if (!have_sig) {
        /* "KVMKVMKVM\0\0\0" in ebx, ecx, edx: what Linux's kvm_para detection reads */
        c->entries[c->nent++] = (struct kvm_cpuid_entry2){ .function = 0x40000000, .eax = 0x40000001,
            .ebx = 0x4b4d564b, .ecx = 0x564b4d56, .edx = 0x4d };
        c->entries[c->nent++] = (struct kvm_cpuid_entry2){ .function = 0x40000001 };
    }
    int ret = ioctl(fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
    free(c);
    return ret;
}

/* The MSRs a CPU has after reset that KVM leaves to user space: the TSC starts at 0 on every
 * vCPU (so they agree), fast strings on, MTRRs enabled with write-back as the default type. */
static int kvm_set_boot_msrs(int fd)
{
    static const uint32_t idx[] = { 0x10 /* TSC */, 0x1a0 /* MISC_ENABLE */, 0x2ff /* MTRRdefType */,
                                    0x174, 0x175, 0x176 /* SYSENTER */, 0xc0000081, 0xc0000082,
                                    0xc0000083, 0xc0000084 /* STAR.. */, 0xc0000102 /* KERNEL_GS */ };
    static const uint64_t val[] = { 0, 1, 0x806, 0, 0, 0, 0, 0, 0, 0, 0 };
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[sizeof(idx) / sizeof(idx[0])];
    } msrs = { .hdr.nmsrs = sizeof(idx) / sizeof(idx[0]) };
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
        msrs.e[i] = (struct kvm_msr_entry){ .index = idx[i], .data = val[i] };
    int n = ioctl(fd, KVM_SET_MSRS, &msrs);
    if (n < 0)
        return -errno;
    /* Partial success is normal on paravirtual KVM (MTRRs, SYSENTER); the guest copes. */
    return 0;
}

/* LINT0 as ExtINT (the PIC's virtual wire) and LINT1 as NMI, as a BIOS leaves the local APIC. */
static int kvm_set_lints(int fd)
{
    struct kvm_lapic_state la;
    if (ioctl(fd, KVM_GET_LAPIC, &la) < 0)
        return -errno;
    uint32_t *lint0 = (uint32_t *)&la.regs[0x350], *lint1 = (uint32_t *)&la.regs[0x360];
    *lint0 = (*lint0 & ~0x700u) | (7u << 8);
    *lint1 = (*lint1 & ~0x700u) | (4u << 8);
    return ioctl(fd, KVM_SET_LAPIC, &la) < 0 ? -errno : 0;
}

static int kvm_vcpu_create(struct vcpu *v)
{
    struct kvm_vm *k = v->m->accel_data;
    struct kvm_vcpu *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return -ENOMEM;
    v->accel_data = kv;
    kv->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)v->id);
    if (kv->fd < 0) {
        int err = -errno;
        log_error("kvm: cannot create vCPU %d: %s", v->id, strerror(errno));
        return err;
    }
    kv->run = mmap(NULL, (size_t)k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, kv->fd, 0);
    if (kv->run == MAP_FAILED) {
        int err = -errno;
        kv->run = NULL;
        log_error("kvm: cannot map vCPU %d's run area: %s", v->id, strerror(errno));
        return err;
    }
    int ret = kvm_set_cpuid(v, k, kv->fd);
    if (ret) {
        log_error("kvm: cannot set vCPU %d's CPUID: %s", v->id, strerror(-ret));
        return ret;
    }
    if ((ret = kvm_set_boot_msrs(kv->fd)) || (ret = kvm_set_lints(kv->fd))) {
        log_error("kvm: cannot set up vCPU %d: %s", v->id, strerror(-ret));
        return ret;
    }
    struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
    ioctl(kv->fd, KVM_SET_FPU, &fpu);
    return kvm_state_register_vcpu(v->m, v->id, k->kvm_fd, k->vm_fd, kv->fd);
}

static void kvm_vcpu_destroy(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_data;
    if (!kv)
        return;
    if (kv->run)
        munmap(kv->run, (size_t)((struct kvm_vm *)v->m->accel_data)->run_size);
    if (kv->fd >= 0)
        close(kv->fd);
    free(kv);
    v->accel_data = NULL;
}

static struct kvm_segment kvm_seg(const struct cpu_segment *s)
{
    return (struct kvm_segment){
        .base = s->base, .limit = s->limit, .selector = s->selector, .type = s->type,
        .present = s->present, .dpl = s->dpl, .db = s->db, .s = s->s, .l = s->l, .g = s->g,
        .avl = s->avl, .unusable = s->unusable,
    };
}

static int kvm_vcpu_set_state(struct vcpu *v, const struct cpu_state *s)
{
    struct kvm_vcpu *kv = v->accel_data;
    struct kvm_sregs sr;
    if (ioctl(kv->fd, KVM_GET_SREGS, &sr) < 0)
        return -errno;
    struct kvm_segment *segs[SEG_COUNT] = { &sr.es, &sr.cs, &sr.ss, &sr.ds, &sr.fs, &sr.gs, &sr.tr, &sr.ldt };
    for (int i = 0; i < SEG_COUNT; i++)
        *segs[i] = kvm_seg(&s->seg[i]);
    sr.gdt = (struct kvm_dtable){ .base = s->gdt.base, .limit = s->gdt.limit };
    sr.idt = (struct kvm_dtable){ .base = s->idt.base, .limit = s->idt.limit };
    sr.cr0 = s->cr0, sr.cr2 = s->cr2, sr.cr3 = s->cr3, sr.cr4 = s->cr4, sr.cr8 = s->cr8;
    sr.efer = s->efer;
    sr.apic_base = s->apic_base;
    if (ioctl(kv->fd, KVM_SET_SREGS, &sr) < 0)
        return -errno;
    struct kvm_regs r = {
        .rax = s->gpr[R_AX], .rbx = s->gpr[R_BX], .rcx = s->gpr[R_CX], .rdx = s->gpr[R_DX],
        .rsi = s->gpr[R_SI], .rdi = s->gpr[R_DI], .rsp = s->gpr[R_SP], .rbp = s->gpr[R_BP],
        .r8 = s->gpr[R_R8], .r9 = s->gpr[R_R9], .r10 = s->gpr[R_R10], .r11 = s->gpr[R_R11],
        .r12 = s->gpr[R_R12], .r13 = s->gpr[R_R13], .r14 = s->gpr[R_R14], .r15 = s->gpr[R_R15],
        .rip = s->rip, .rflags = s->rflags,
    };
    return ioctl(kv->fd, KVM_SET_REGS, &r) < 0 ? -errno : 0;
}

static struct cpu_segment kvm_seg_back(const struct kvm_segment *k)
{
    return (struct cpu_segment){
        .base = k->base, .limit = k->limit, .selector = k->selector, .type = k->type,
        .present = k->present, .dpl = k->dpl, .db = k->db, .s = k->s, .l = k->l, .g = k->g,
        .avl = k->avl, .unusable = k->unusable,
    };
}

static int kvm_vcpu_get_state(struct vcpu *v, struct cpu_state *s)
{
    struct kvm_vcpu *kv = v->accel_data;
    struct kvm_regs r;
    struct kvm_sregs sr;
    struct kvm_debugregs dr;
    struct kvm_mp_state mp;
    if (ioctl(kv->fd, KVM_GET_REGS, &r) < 0 || ioctl(kv->fd, KVM_GET_SREGS, &sr) < 0)
        return -errno;
    memset(s, 0, sizeof(*s));
    const uint64_t gpr[16] = { r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
                               r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15 };
    memcpy(s->gpr, gpr, sizeof(gpr));
    s->rip = r.rip;
    s->rflags = r.rflags;
    const struct kvm_segment *segs[SEG_COUNT] = { &sr.es, &sr.cs, &sr.ss, &sr.ds, &sr.fs, &sr.gs, &sr.tr, &sr.ldt };
    for (int i = 0; i < SEG_COUNT; i++)
        s->seg[i] = kvm_seg_back(segs[i]);
    s->gdt = (struct cpu_table){ .base = sr.gdt.base, .limit = sr.gdt.limit };
    s->idt = (struct cpu_table){ .base = sr.idt.base, .limit = sr.idt.limit };
    s->cr0 = sr.cr0, s->cr2 = sr.cr2, s->cr3 = sr.cr3, s->cr4 = sr.cr4, s->cr8 = sr.cr8;
    s->efer = sr.efer;
    s->apic_base = sr.apic_base;
    /* optional extras: a kernel without them still gives the registers above */
    if (ioctl(kv->fd, KVM_GET_DEBUGREGS, &dr) == 0) {
        memcpy(s->dr, dr.db, sizeof(dr.db));
        s->dr[6] = dr.dr6;
        s->dr[7] = dr.dr7;
    }
    if (ioctl(kv->fd, KVM_GET_MP_STATE, &mp) == 0)
        s->halted = mp.mp_state == KVM_MP_STATE_HALTED;
    return 0;
}

static int kvm_vcpu_run(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_data;
    struct kvm_run *run = kv->run;
    struct vcpu_exit *e = &v->exit;
    if (ioctl(kv->fd, KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            run->immediate_exit = 0;
            e->reason = VCPU_EXIT_KICKED;
            return 0;
        }
        return -errno;
    }
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        e->reason = VCPU_EXIT_IO;
        e->io.port = run->io.port;
        e->io.size = run->io.size;
        e->io.is_write = run->io.direction == KVM_EXIT_IO_OUT;
        e->io.count = run->io.count;
        e->io.data = (uint8_t *)run + run->io.data_offset;
        return 0;
    case KVM_EXIT_MMIO:
        e->reason = VCPU_EXIT_MMIO;
        e->mmio.addr = run->mmio.phys_addr;
        e->mmio.size = (uint8_t)run->mmio.len;
        e->mmio.is_write = run->mmio.is_write;
        e->mmio.data = run->mmio.data;
        return 0;
    case KVM_EXIT_HLT:
        e->reason = VCPU_EXIT_HLT;
        return 0;
    case KVM_EXIT_SHUTDOWN:
        e->reason = VCPU_EXIT_SHUTDOWN;
        return 0;
    case KVM_EXIT_INTR:
        e->reason = VCPU_EXIT_KICKED;
        return 0;
    case KVM_EXIT_SYSTEM_EVENT:
        e->reason = run->system_event.type == KVM_SYSTEM_EVENT_CRASH ? VCPU_EXIT_SHUTDOWN : VCPU_EXIT_KICKED;
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
            machine_request_stop(v->m, MACHINE_RESET, 0);
        else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
            machine_request_stop(v->m, MACHINE_POWEROFF, 0);
        return 0;
    case KVM_EXIT_FAIL_ENTRY:
        e->reason = VCPU_EXIT_ERROR;
        snprintf(e->error, sizeof(e->error), "kvm: the CPU refused to enter the guest (reason 0x%llx)",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return 0;
    case KVM_EXIT_INTERNAL_ERROR: {
        struct kvm_regs r;
        unsigned long long rip = ioctl(kv->fd, KVM_GET_REGS, &r) == 0 ? r.rip : 0;
        e->reason = VCPU_EXIT_ERROR;
        snprintf(e->error, sizeof(e->error), "kvm: internal error (suberror %u%s) at rip 0x%llx",
                 run->internal.suberror,
                 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? ": an instruction KVM cannot emulate" : "",
                 rip);
        return 0;
    }
    default:
        e->reason = VCPU_EXIT_ERROR;
        snprintf(e->error, sizeof(e->error), "kvm: unexpected exit reason %u", run->exit_reason);
        return 0;
    }
}

/* immediate_exit covers the window where the thread is outside KVM_RUN; the signal covers the
 * thread inside it. */
static void kvm_vcpu_kick(struct vcpu *v)
{
    struct kvm_vcpu *kv = v->accel_data;
    if (kv && kv->run)
        kv->run->immediate_exit = 1;
    if (v->started)
        pthread_kill(v->thread, SIGUSR1);
}

static int kvm_set_irq(struct machine *m, unsigned gsi, int level)
{
    struct kvm_vm *k = m->accel_data;
    struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };
    return ioctl(k->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

/* A write to addr signals fd inside the kernel: the vCPU goes straight back to the guest. */
static int kvm_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd, bool assign)
{
    struct kvm_vm *k = m->accel_data;
    struct kvm_ioeventfd e = {
        .addr = addr, .len = len, .fd = fd,
        .flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };
    return ioctl(k->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

static int kvm_ioeventfd_data(struct machine *m, uint64_t addr, unsigned len, int fd, uint64_t data, bool assign)
{
    struct kvm_vm *k = m->accel_data;
    struct kvm_ioeventfd e = {
        .datamatch = data, .addr = addr, .len = len, .fd = fd,
        .flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };
    return ioctl(k->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}

static int kvm_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    struct kvm_vm *k = m->accel_data;
    struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data };
    return ioctl(k->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

/* KVM_SET_GSI_ROUTING replaces the whole table, so it is rebuilt from the pins' routes (the ones
 * KVM starts with: GSI 0-15 to the PIC and the IOAPIC, 16-23 to the IOAPIC) and the MSIs. Lock
 * held. */
static int kvm_commit_routes(struct kvm_vm *k)
{
    size_t max = KVM_PIN_GSIS + 16 + KVM_MSI_ROUTES;
    struct kvm_irq_routing *r = calloc(1, sizeof(*r) + max * sizeof(r->entries[0]));
    if (!r)
        return -ENOMEM;
    uint32_t n = 0;
    for (uint32_t gsi = 0; gsi < KVM_PIN_GSIS; gsi++) {
        if (gsi < 16)
            r->entries[n++] = (struct kvm_irq_routing_entry){ .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
                .u.irqchip = { gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8 } };
        r->entries[n++] = (struct kvm_irq_routing_entry){ .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
            .u.irqchip = { KVM_IRQCHIP_IOAPIC, gsi } };
    }
    for (uint32_t i = 0; i < KVM_MSI_ROUTES; i++)
        if (k->msi_used[i])
            r->entries[n++] = (struct kvm_irq_routing_entry){ .gsi = KVM_PIN_GSIS + i,
                .type = KVM_IRQ_ROUTING_MSI, .u.msi = k->msi[i] };
    r->nr = n;
    int ret = ioctl(k->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
    free(r);
    return ret;
}

static int kvm_msi_route(struct machine *m, int route, uint64_t addr, uint32_t data)
{
    struct kvm_vm *k = m->accel_data;
    pthread_mutex_lock(&k->routes_lock);
    int i = route - KVM_PIN_GSIS;
    if (route < 0) {
        for (i = 0; i < KVM_MSI_ROUTES && k->msi_used[i]; i++)
            ;
    } else if (i < 0 || i >= KVM_MSI_ROUTES || !k->msi_used[i]) {
        i = -1;
    }
    int ret = -ENOSPC;
    if (i >= 0 && i < KVM_MSI_ROUTES) {
        struct kvm_irq_routing_msi old = k->msi[i];
        bool was_used = k->msi_used[i];
        k->msi[i] = (struct kvm_irq_routing_msi){ .address_lo = (uint32_t)addr,
                                                  .address_hi = (uint32_t)(addr >> 32), .data = data };
        k->msi_used[i] = true;
        ret = kvm_commit_routes(k);
        if (ret) {
            k->msi[i] = old;
            k->msi_used[i] = was_used;
        } else {
            ret = KVM_PIN_GSIS + i;
        }
    } else if (route >= 0) {
        ret = -ENOENT;
    }
    pthread_mutex_unlock(&k->routes_lock);
    return ret;
}

static void kvm_msi_route_free(struct machine *m, int route)
{
    struct kvm_vm *k = m->accel_data;
    int i = route - KVM_PIN_GSIS;
    if (i < 0 || i >= KVM_MSI_ROUTES)
        return;
    pthread_mutex_lock(&k->routes_lock);
    if (k->msi_used[i]) {
        k->msi_used[i] = false;
        kvm_commit_routes(k);
    }
    pthread_mutex_unlock(&k->routes_lock);
}

static int kvm_irqfd(struct machine *m, int fd, int route, bool assign)
{
    struct kvm_vm *k = m->accel_data;
    struct kvm_irqfd f = { .fd = (uint32_t)fd, .gsi = (uint32_t)route, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
    return ioctl(k->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

const struct accel_ops accel_kvm = {
    .name = "kvm",
    .probe = kvm_probe,
    .vm_create = kvm_vm_create,
    .vm_destroy = kvm_vm_destroy,
    .mem_add = kvm_map_region,
    .mem_remap = kvm_mem_remap,
    .mem_dirty_sync = kvm_mem_dirty_sync,
    .vcpu_create = kvm_vcpu_create,
    .vcpu_destroy = kvm_vcpu_destroy,
    .vcpu_set_state = kvm_vcpu_set_state,
    .vcpu_get_state = kvm_vcpu_get_state,
    .vcpu_run = kvm_vcpu_run,
    .vcpu_kick = kvm_vcpu_kick,
    .set_irq = kvm_set_irq,
    .ioeventfd = kvm_ioeventfd,
    .ioeventfd_data = kvm_ioeventfd_data,
    .send_msi = kvm_send_msi,
    .msi_route = kvm_msi_route,
    .msi_route_free = kvm_msi_route_free,
    .irqfd = kvm_irqfd,
    .dirty_track = kvm_dirty_track,
    .dirty_collect = kvm_dirty_collect,
};
