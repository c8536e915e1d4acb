/* The machine: guest memory, the two buses, the vCPUs, the accelerator, the I/O thread's loop.
 * Devices and accelerators reach the machine only through this header. */
#ifndef QKVM_VM_MACHINE_H
#define QKVM_VM_MACHINE_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hw/bus.h"
#include "util/log.h"
#include "util/parse.h"

struct accel_ops;
struct evloop;
struct irqchip;
struct migration;
struct savevm;
struct fw_cfg;
struct bootorder;
struct pci_host;
struct rtc;
struct vmstate_entry;
struct smbios_config;
struct vcpu;

/* Guest-physical layout: RAM from 0 up to the PCI hole, the rest above 4 GiB, as on a PC. */
#define MACHINE_LOW_RAM_END   0xc0000000ull   /* 3 GiB: the 32-bit PCI/MMIO hole starts here */
#define MACHINE_HIGH_RAM_BASE 0x100000000ull
#define MACHINE_MAX_MEM       12
#define MACHINE_MAX_CPUS      64
#define MACHINE_MAX_DEVICES   32
#define MACHINE_MAX_DISKS     MACHINE_MAX_DEVICES

struct mem_region {
    /* A device's region (machine_map_hostmem) changes gpa and size while vCPUs and the I/O thread
     * look it up: readers load size (acquire) before gpa, and a size of 0 means not mapped. The
     * host mapping and capacity never change, so a torn lookup still lands inside the mapping. */
    uint64_t gpa, size;
    uint8_t *host;
    bool readonly;      /* ROM: guest writes go to the MMIO bus (and are dropped) */
    bool device;        /* host memory a device shows (a RAM-backed BAR): not the guest's RAM */
    uint64_t capacity;  /* bytes at host: size, or what a device region has when mapped */
    /* one bit per 4 KiB page the guest or a bus master wrote (vm/memory.h memory_note_written):
     * device regions always, taken by machine_hostmem_dirty; guest RAM while migration tracks
     * it, taken by memory_dirty_sync; NULL for ROM */
    _Atomic uint64_t *dirty;
};

/* Which board: the direct-boot machine (-kernel, or a flat -bios image at the reset vector) or
 * the PC that runs SeaBIOS (i440FX, PIIX, fw_cfg: docs/firmware.md). */
enum machine_type {
    MACHINE_DIRECT,
    MACHINE_PC,
};

/* What the command line asked for. Parsed by the tool, read by the machine and its devices. */
struct machine_config {
    enum machine_type type;
    uint64_t ram_size;
    int ncpus;
    const char *kernel, *initrd, *cmdline, *bios, *name;
    const char *serial;         /* "stdio", "file:PATH", "none" */
    bool no_reboot;
    bool start_paused;          /* -S, or a reset while paused: vCPUs wait for machine_resume */
    bool incoming;              /* -incoming: the state comes from a migration (vm/migration.h) */
    const struct accel_ops *accel;
    bool tcg_nojit;             /* -accel tcg,jit=off: the software CPU only interprets */
    bool tcg_perfmap;           /* -perfmap: tcg names its translated blocks in /tmp/perf-PID.map */
    const char *cpu;            /* -cpu MODEL[,features] (vm/cpu_model.h); NULL: qemu64 */
    const struct smbios_config *smbios;          /* -uuid, -smbios: what the guest's DMI shows */
    struct kvlist devices[MACHINE_MAX_DEVICES];  /* each -device, "driver" is its type */
    int ndevices;
    char boot_order[4], boot_once[4];   /* -boot order=, once= (vm/bootdev.h); "": default */
    bool boot_menu;                     /* -boot menu=on */
};

/* A human monitor sharing the terminal with the serial console (-nographic, -serial mon:stdio):
 * the console's Ctrl-A c hands the keyboard to it and back (hw/chardev.c). */
struct machine_mux {
    bool (*toggle)(void *opaque);        /* switches; true: the monitor has the keyboard now */
    bool (*focused)(void *opaque);
    void (*input)(void *opaque, const uint8_t *buf, size_t len);   /* keys typed to it */
};

enum machine_stop {
    MACHINE_RUNNING,
    MACHINE_POWEROFF,    /* guest asked: exit 0 */
    MACHINE_RESET,       /* guest asked: rebuild and boot again, or exit 0 with -no-reboot */
    MACHINE_EXIT,        /* exit with the given status (isa-debug-exit) */
    MACHINE_FAILED,      /* triple fault, accelerator error: exit nonzero after a message */
};

struct machine {
    const struct machine_config *cfg;
    struct mem_region mem[MACHINE_MAX_MEM];
    int nmem;
    uint64_t ram_size;
    uint8_t *ram;               /* host mapping of all RAM: low part, then the high part */
    struct bus pio, mmio;
    int ncpus;
    struct vcpu *vcpus;
    const struct accel_ops *accel;
    void *accel_data;
    struct irqchip *irqchip;    /* user-space interrupt controllers (hw/irqchip.h), tcg's */
    struct evloop *loop;        /* the I/O thread's: console input, device backends */
    atomic_int stop;            /* enum machine_stop, first writer wins */
    int exit_status;
    struct machine_cleanup *cleanups;
    struct rtc *rtc;            /* the CMOS, for what other devices tell the firmware (hw/rtc.h) */
    struct log_ratelimit guest_log;     /* every guest-triggered message goes through it */
    /* MACHINE_PC only (NULL elsewhere): the 256 KiB at 0xc0000-0xfffff as the CPUs read them,
     * kept by the host bridge's PAM registers (hw/i440fx.c), the firmware's last 128 KiB that
     * PAM shows at 0xe0000 where it selects ROM, and the firmware configuration device. */
    uint8_t *isa_view;
    const uint8_t *isa_rom;
    struct fw_cfg *fw_cfg;
    struct bootorder *bootorder;   /* vm/bootorder.h: the devices' bootindex=, or NULL */
    struct pci_host *pci_host;  /* hw/pci_host.c's, NULL on a machine without PCI */
    unsigned nics;              /* NICs created so far: each takes the next default MAC */
    struct vmstate_entry *vmstate;   /* what savevm writes, in registration order (vm/vmstate.h) */
    const char *vmstate_blocker;     /* why it cannot be saved (vmstate_add_blocker), or NULL */
    struct migration *migration;     /* vm/migration.h: the one running or last done, or NULL */
    struct savevm *savevm;           /* vm/savevm.h: figures, -loadvm, the snapshot jobs; or NULL */
    atomic_bool dirty_on;            /* vm/memory.h: migration tracks writes to guest RAM */
    /* -incoming or -loadvm: the devices' state is still to come, and input from outside (the
     * serial console) waits in its chardev until the load, which would replace it, is done */
    atomic_bool state_incoming;
    const char *stop_reason;    /* QMP's ShutdownCause for a host-requested stop, else NULL */
    /* pause/resume (vm/control.c): vCPUs park on run_cond while pause_req is set */
    pthread_mutex_t run_lock;
    pthread_cond_t run_cond;
    atomic_bool pause_req;
    int nparked, nrunning_threads;
    bool prelaunch;             /* -S and never resumed: QMP's "prelaunch" status */
    /* vm/control.h: the devices told when the vCPUs stop and start (machine_add_run_hook) */
    struct machine_run_hook {
        void (*fn)(void *opaque, bool running);
        void *opaque;
    } run_hooks[MACHINE_MAX_DEVICES];
    int nrun_hooks;
    /* Where the machine's events go (the monitors): name and its "data" object as JSON text,
     * always on the I/O thread. NULL: nobody listens. */
    void (*event_fn)(void *opaque, const char *name, const char *data_json);
    void *event_opaque;
    /* hw/disk.h: each virtio-blk's state, in -device order (the device owns it) */
    void *disks[MACHINE_MAX_DISKS];
    int ndisks;
    /* The monitor on the serial console's terminal, set by the monitors; NULL: none. */
    const struct machine_mux *mux;
    void *mux_opaque;
    /* The ACPI power button, set by the device that has one (hw/acpi_pm.c). */
    void (*power_button)(struct machine *m);
    void *power_button_opaque;  /* that device's state */
};

/* A device (or a fixed part of the machine) that sets itself up at machine creation. Lower
 * priorities run first: interrupt controllers, then buses, then devices, then boot. */
enum { INIT_CORE = 10, INIT_BUS = 20, INIT_DEVICE = 30, INIT_LATE = 40, INIT_BOOT = 50 };
struct machine_init {
    const char *name;
    int priority;
    int (*init)(struct machine *m);        /* 0 or -errno after logging what went wrong */
    void (*exit)(struct machine *m);       /* may be NULL */
    struct machine_init *next;
};
void machine_register_init(struct machine_init *mi);
#define MACHINE_INIT(fn, prio, exitfn)                                                         \
    static struct machine_init fn##_entry = { #fn, prio, fn, exitfn, NULL };                    \
    __attribute__((constructor)) static void fn##_register(void) { machine_register_init(&fn##_entry); }

/* -device types: create() gets the option list (driver=..., and the rest) and marks what it used. */
struct device_type {
    const char *name;
    int (*create)(struct machine *m, struct kvlist *opts);
    struct device_type *next;
};
void machine_register_device_type(struct device_type *t);
#define DEVICE_TYPE(tname, fn)                                                                 \
    static struct device_type fn##_type = { tname, fn, NULL };                                  \
    __attribute__((constructor)) static void fn##_register_type(void) { machine_register_device_type(&fn##_type); }
/* Checks -device lines before anything is created: unknown types are -ENOENT, *bad names it. */
int machine_check_devices(const struct machine_config *cfg, const char **bad);

/* Builds the machine (RAM, accelerator VM, devices, boot image, vCPUs). 0 or -errno, logged. */
int machine_create(struct machine *m, const struct machine_config *cfg);
/* Starts the vCPU threads, runs the I/O loop until the guest stops the machine; returns the
 * stop reason. */
enum machine_stop machine_run(struct machine *m);
void machine_destroy(struct machine *m);

/* Runs fn(opaque) when the machine is destroyed, the last registered first: how devices and
 * loaders free what they made. 0 or -ENOMEM (then fn has been called already). */
int machine_add_cleanup(struct machine *m, void (*fn)(void *opaque), void *opaque);

/* Host pointer for [gpa, gpa+len) when it lies wholly in one RAM region, else NULL. This is the
 * only way a device may touch guest memory: it bounds every guest-supplied address. */
void *machine_gpa_ptr(struct machine *m, uint64_t gpa, uint64_t len);
/* Copy to/from guest memory; -EFAULT when the range is not wholly RAM. */
int machine_read(struct machine *m, uint64_t gpa, void *buf, uint64_t len);
int machine_write(struct machine *m, uint64_t gpa, const void *buf, uint64_t len);
/* A bus master's write: RAM is written directly; a read-only region (ROM, the PC's PAM-controlled
 * BIOS area) gets the write on m->mmio as a CPU's would, where ROM drops it (-EFAULT) and PAM
 * sends it to RAM. -EFAULT when the range is not wholly in one region. */
int machine_dma_write(struct machine *m, uint64_t gpa, const void *buf, uint64_t len);
/* Host memory that a device shows at a guest address as RAM (a RAM-backed PCI BAR, ivshmem's
 * shared memory): CPU accesses reach it without leaving the guest (a KVM memory slot; the
 * emulator's TLB). machine_add_hostmem reserves it at device creation, before the vCPUs run,
 * unmapped; size and host are page-aligned. *id names it. 0, -EINVAL or -ENOSPC. */
int machine_add_hostmem(struct machine *m, void *host, uint64_t size, int *id);
/* Shows region id at gpa (page-aligned), moving it when it was elsewhere, or hides it. The
 * caller keeps it clear of RAM and other regions (a PCI BAR decodes only inside the host
 * bridge's window). Any thread, one caller per region at a time. 0 or -errno. */
int machine_map_hostmem(struct machine *m, int id, uint64_t gpa);
int machine_unmap_hostmem(struct machine *m, int id);
/* Migration's dirty tracking of region id: ORs into bitmap (a bit per 4 KiB page, 64 to a word)
 * the pages written since the last call by the guest's CPUs or by machine_note_dirty, and
 * starts over. On the I/O thread: the vCPUs are parked for the moment of the swap, so no write
 * falls between the two. 0 or -EINVAL. */
int machine_hostmem_dirty(struct machine *m, int id, uint64_t *bitmap);
/* Drives interrupt line gsi through the accelerator's interrupt controllers. */
int machine_set_irq(struct machine *m, unsigned gsi, int level);

/* --- What devices ask of the accelerator (vm/machine_accel.c); devices never call accel_ops. --- */
/* Delivers one message-signalled interrupt (a write of data to addr, 0xfeeXXXXX): through the
 * accelerator when it has a shortcut, else the user-space APICs. 0, or -ENODEV with neither. */
int machine_send_msi(struct machine *m, uint64_t addr, uint32_t data);
/* A device wrote [gpa, gpa+len) of guest RAM behind the CPUs' backs (DMA): the emulator drops
 * code translated from there, and dirty tracking will see it. Any thread. */
void machine_note_dirty(struct machine *m, uint64_t gpa, uint64_t len);
/* Guest writes of len bytes (0: any) to addr (port I/O when pio) signal eventfd fd instead of
 * reaching the bus; assign=false removes it. 0, -EOPNOTSUPP where the accelerator has none. */
int machine_add_ioeventfd(struct machine *m, uint64_t addr, unsigned len, bool pio, int fd, bool assign);
/* The same for an MMIO write of exactly len bytes of value data only (one eventfd per value of a
 * register); other values reach the bus. 0, -EOPNOTSUPP where the accelerator has none. */
int machine_add_ioeventfd_data(struct machine *m, uint64_t addr, unsigned len, int fd, uint64_t data, bool assign);
/* MSI routes and irqfds (KVM): a route for a message (route < 0 makes one; returns its number or
 * -errno), and an eventfd that injects it without the VMM. -EOPNOTSUPP where there are none. */
bool machine_has_irqfd(struct machine *m);
int machine_msi_route(struct machine *m, int route, uint64_t addr, uint32_t data);
void machine_msi_route_free(struct machine *m, int route);
int machine_irqfd(struct machine *m, int fd, int route, bool assign);
/* A message the guest can trigger (bad device programming, unimplemented features): printed only
 * under -d CAT, and rate-limited per key (a short text naming the kind of message) so that a
 * guest cannot flood stderr. m may be NULL (no limit). Any thread. */
void machine_log_guest(struct machine *m, unsigned cat, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An access to guest-physical addr where nothing is mapped: it reads as ones and writes are
 * dropped, as on a PC bus with nothing to answer; said under -d guest_errors. */
void machine_report_unmapped(struct machine *m, int cpu, uint64_t addr, bool is_write);
/* Ends the run: the first request wins, later ones are ignored. Any thread. The guest asked
 * for it (poweroff, reset, a fault). */
void machine_request_stop(struct machine *m, enum machine_stop why, int status);
/* The same for a stop the host asked for; reason is QMP's ShutdownCause ("host-qmp-quit",
 * "host-signal", "host-ui", "host-qmp-system-reset"), a string that lives for ever. Async-signal
 * safe. */
void machine_request_stop_host(struct machine *m, enum machine_stop why, int status, const char *reason);

#endif
