/* The accelerator interface: KVM (src/accel/kvm.c) and the software emulator (src/accel/emu/)
 * both implement it, and the machine and the vCPU loop use nothing else of them. */
#ifndef QKVM_ACCEL_ACCEL_H
#define QKVM_ACCEL_ACCEL_H
#include <stdbool.h>
#include <stdint.h>

struct machine;
struct vcpu;
struct cpu_state;

/* Why vcpu_run returned. Port and MMIO accesses arrive here only from accelerators that leave the
 * CPU to do them (KVM); the emulator calls vcpu_io/vcpu_mmio itself without returning. */
enum vcpu_exit_reason {
    VCPU_EXIT_IO,          /* exit.io describes the access; data points to its bytes */
    VCPU_EXIT_MMIO,        /* exit.mmio likewise */
    VCPU_EXIT_HLT,         /* the CPU halted and no interrupt controller will wake it */
    VCPU_EXIT_SHUTDOWN,    /* triple fault */
    VCPU_EXIT_KICKED,      /* vcpu_kick, or a signal: the machine has something to say */
    VCPU_EXIT_ERROR,       /* the accelerator cannot go on; exit.error says why */
};

struct vcpu_exit {
    enum vcpu_exit_reason reason;
    union {
        struct {
            uint16_t port;
            uint8_t size;       /* 1, 2 or 4 */
            bool is_write;
            uint32_t count;     /* string I/O: count accesses of size bytes at data */
            uint8_t *data;
        } io;
        struct {
            uint64_t addr;
            uint8_t size;
            bool is_write;
            uint8_t *data;
        } mmio;
        char error[160];
    };
};

struct accel_ops {
    const char *name;          /* "kvm", "tcg": what -accel takes */
    /* 0 when this host can run it; else -errno and *why says why, in a few words. */
    int (*probe)(const char **why);
    /* Called once guest RAM exists (machine->mem): create the VM, map memory, interrupt
     * controllers. 0 or -errno with a message logged. */
    int (*vm_create)(struct machine *m);
    void (*vm_destroy)(struct machine *m);
    /* m->mem[idx] was added after vm_create (a ROM). NULL when the accelerator reads m->mem[]
     * on every access anyway. Read-only regions: guest writes there go to vcpu_mmio. */
    int (*mem_add)(struct machine *m, int idx);
    /* m->mem[idx], a device's region, moved or was hidden (size 0) while vCPUs may run: from
     * now on guest accesses find it at its new place only. Any thread. 0 or -errno. */
    int (*mem_remap)(struct machine *m, int idx);
    /* Brings what the accelerator knows of writes to m->mem[idx] into its dirty bitmap and
     * re-arms the tracking, with the vCPUs parked. 0 or -errno. */
    int (*mem_dirty_sync)(struct machine *m, int idx);
    int (*vcpu_create)(struct vcpu *v);
    void (*vcpu_destroy)(struct vcpu *v);
    /* Loads the architectural state (the BSP's boot state; APs start in wait-for-SIPI). */
    int (*vcpu_set_state)(struct vcpu *v, const struct cpu_state *s);
    /* Reads the architectural state back (info registers). Only while the vCPU is parked
     * (vm/control.h machine_get_cpu_state), never while it runs guest code. 0 or -errno. */
    int (*vcpu_get_state)(struct vcpu *v, struct cpu_state *s);
    /* Runs guest code on the calling thread until it exits; fills v->exit. 0 or -errno. */
    int (*vcpu_run)(struct vcpu *v);
    /* Makes vcpu_run return with VCPU_EXIT_KICKED soon. Any thread. */
    void (*vcpu_kick)(struct vcpu *v);
    /* Drives an interrupt line (a GSI of the IOAPIC; 0-15 also reach the PIC). */
    int (*set_irq)(struct machine *m, unsigned gsi, int level);

    /* --- Optional shortcuts for devices (hw/pci_msix.c, hw/virtio/): NULL where the accelerator
     * has none; devices then take the slow path, which works everywhere. --- */
    /* Guest writes of len bytes (0: any length) to addr (port I/O when pio) signal eventfd fd
     * instead of reaching the bus: a queue notify handled on the I/O thread without a trip
     * through the vCPU thread. assign=false removes it. 0 or -errno. */
    int (*ioeventfd)(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd, bool assign);
    /* The same for an MMIO write of exactly len bytes whose value is data (KVM's datamatch): one
     * register, an eventfd per value (ivshmem's Doorbell: peer << 16 | vector). */
    int (*ioeventfd_data)(struct machine *m, uint64_t addr, unsigned len, int fd, uint64_t data, bool assign);
    /* Delivers one message-signalled interrupt (a write of data to addr, 0xfeeXXXXX). Any thread.
     * NULL: devices hand it to m->irqchip (the user-space APICs) themselves. */
    int (*send_msi)(struct machine *m, uint64_t addr, uint32_t data);
    /* An interrupt route for an MSI message: route < 0 makes a new one and returns its number;
     * route >= 0 changes that route's message and returns it. -errno on failure. */
    int (*msi_route)(struct machine *m, int route, uint64_t addr, uint32_t data);
    void (*msi_route_free)(struct machine *m, int route);
    /* Signalling eventfd fd injects route's interrupt without the VMM (irqfd). 0 or -errno.
     * Both msi_route and irqfd are set, or neither. */
    int (*irqfd)(struct machine *m, int fd, int route, bool assign);
    /* A device wrote [gpa, gpa+len) of guest RAM behind the CPUs' backs (DMA): an emulator drops
     * code it translated from there. Any thread. */
    void (*mem_written)(struct machine *m, uint64_t gpa, uint64_t len);
    /* Migration's dirty tracking: on arms [gpa, gpa+len) so that the next guest write to each
     * page calls memory_note_written (vm/memory.h) once; off disarms. Called with the vCPUs
     * parked. NULL: this accelerator cannot track (live migration is refused). */
    void (*dirty_track)(struct machine *m, uint64_t gpa, uint64_t len, bool on);
    /* For an accelerator that keeps its own log of guest writes (KVM's dirty log): moves what
     * it logged since the last call into m->dirty, before memory_dirty_sync takes the bits. With
     * the vCPUs parked. NULL: the accelerator notes writes as they happen. 0 or -errno. */
    int (*dirty_collect)(struct machine *m);
};

extern const struct accel_ops accel_kvm;
extern const struct accel_ops accel_tcg;

/* The accelerator named name, or NULL. */
const struct accel_ops *accel_find(const char *name);

#endif
