/* qkvm's command line, QEMU's option names, parsed into a machine_config. A library function
 * rather than code in the tool, so that qkvm and the fuzzer (tests/fuzz/fuzz_cmdline.c) run the
 * same parser. Parsing touches no file and probes no accelerator: qkvm does those afterwards. */
#ifndef QKVM_VM_CONFIG_H
#define QKVM_VM_CONFIG_H
#include <stdbool.h>

#include "vm/machine.h"
#include "util/sandbox.h"
#include "vm/smbios.h"
#include "vm/monitor/monitor.h"

#define CONFIG_MAX_ACCELS   8
#define CONFIG_MAX_BACKENDS 64
#define CONFIG_ERR_MAX      512
#define CONFIG_MAX_MONITORS 8

/* Options that print something and end the program (status 0) instead of running a VM. */
enum config_info {
    CONFIG_RUN,
    CONFIG_USAGE,           /* -h, -help */
    CONFIG_VERSION,         /* -version */
    CONFIG_ACCEL_HELP,      /* -accel help */
    CONFIG_MACHINE_HELP,    /* -machine help */
    CONFIG_DEVICE_HELP,     /* -device help */
    CONFIG_DEBUG_HELP,      /* -d help */
    CONFIG_CPU_HELP,        /* -cpu help */
};

/* -drive if=none, -netdev and -chardev define a back-end by id; a -device names it (drive=,
 * netdev=, chardev=) and gets the whole definition in its place, so devices look nothing up. */
struct config_backend {
    const char *kind;       /* "drive", "netdev", "chardev": the -device property naming it */
    char *id;
    char *spec;             /* the option's argument as given */
    bool used;
};

struct config {
    struct machine_config machine;      /* devices[] are owned here: config_free frees them */
    enum config_info info;
    /* accelerator names in order of preference, from -accel, -enable-kvm or -machine accel= */
    const char *accels[CONFIG_MAX_ACCELS];
    int naccels;
    char *accel_lists[CONFIG_MAX_ACCELS];   /* copies that accels[] point into */
    int nlists;
    bool accel_by_option, accel_by_machine; /* QEMU refuses the two together */
    bool want_pc;                           /* -M pc asked; machine.type says what it became */
    bool machine_given;                     /* some -M TYPE: no choosing the PC for a bare disk */
    /* devices[] made from -hda..-hdd, a bare image, -drive if=ide: IDE disks on the PC, else
     * virtio-blk (if=ide there is an error) */
    struct { int dev; bool ide_asked; } legacy_disks[MACHINE_MAX_DEVICES];
    int nlegacy_disks;
    unsigned log_mask;                      /* -d items */
    struct smbios_config smbios;            /* machine.smbios points here once -uuid/-smbios given */
    struct sandbox_config sandbox;          /* -sandbox, -runas, -chroot, -run-with */
    struct config_backend backends[CONFIG_MAX_BACKENDS];
    int nbackends;
    /* -qmp, -monitor, -mon chardev=ID (resolved against -chardev once all are read) */
    struct config_monitor {
        struct monitor_addr addr;
        bool control, pretty;
        const char *chardev;                /* -mon: the -chardev id, until resolved */
    } monitors[CONFIG_MAX_MONITORS];
    int nmonitors;
    bool serial_given;                      /* -serial or -nographic said where COM1 goes */
    bool serial_mux, nographic;             /* -serial mon:stdio, -nographic: a human monitor
                                             * shares the terminal (Ctrl-A c) */
    bool monitor_given;                     /* -monitor (none too), -qmp, -mon: no default one */
    bool daemonize;                         /* -daemonize */
    bool nodefaults;                        /* -nodefaults: COM1 only where -serial says */
    const char *pidfile;                    /* -pidfile */
    const char *incoming;                   /* -incoming URI (vm/migration.h) */
    bool mig_mapped_ram;                    /* -global migration.mapped-ram=on: the capability */
    const char *loadvm;                     /* -loadvm NAME (vm/savevm.h) */
    char *name;                             /* -name guest=NAME: machine.name points here */
    char process_name[16];                  /* -name ...,process=: the thread name (15 chars) */
    char err[CONFIG_ERR_MAX];               /* one line, no control characters */
};

/* Parses argv[1..argc-1] into *c (which it initialises: RAM 256M, 1 CPU, serial on stdio), then
 * resolves each -device's back-end names. Stops early when an option asks to print something
 * (c->info). 0, or -EINVAL/-ENOMEM/-E2BIG/-ENOENT with the reason in c->err. Call config_free
 * either way. */
int config_parse_args(struct config *c, int argc, char *const argv[]);
void config_free(struct config *c);

#endif
