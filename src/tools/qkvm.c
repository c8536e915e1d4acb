/* qkvm: run a virtual machine. QEMU's option names and meanings, so a user's habits carry over. */
#include "accel/accel.h"
#include "block/block.h"
#include "hw/chardev.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sandbox.h"
#include "vm/boot.h"
#include "vm/config.h"
#include "vm/cpu_model.h"
#include "vm/firmware.h"
#include "vm/control.h"
#include "vm/machine.h"
#include "vm/migration.h"
#include "vm/savevm.h"
#include "vm/monitor/monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <unistd.h>

#define QKVM_VERSION "0.1.0"
/* The QEMU whose QMP and HMP qkvm speaks: what the greeting and query-version say, since
 * management tools decide what to ask by it. */
#define QKVM_QEMU_MAJOR 7
#define QKVM_QEMU_MINOR 2
#define QKVM_QEMU_MICRO 0

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qkvm [options]\n"
        "Run a virtual machine. Options follow QEMU's names.\n\n"
        "  -m SIZE            guest RAM, in MiB or with a suffix (K/M/G), default 256M\n"
        "  -smp N             number of vCPUs (also cpus=N), default 1\n"
        "  -kernel FILE       Linux bzImage to boot (64-bit entry when the kernel offers it)\n"
        "  -initrd FILE       initial ramdisk\n"
        "  -append CMDLINE    kernel command line\n"
        "  -bios FILE         flat firmware image, started at the reset vector F000:FFF0\n"
        "  -nographic         serial console on stdio (the default: qkvm has no display)\n"
        "  -display none      likewise\n"
        "  -serial DEV        stdio | file:PATH | none   (COM1)\n"
        "  -accel NAME[,jit=on|off]  kvm | tcg; several -accel, or kvm:tcg, are tried in order;\n"
        "                     jit=off: tcg interprets every instruction (no translation)\n"
        "  -perfmap           tcg: write /tmp/perf-PID.map naming each translated block (for perf)\n"
        "  -enable-kvm        same as -accel kvm\n"
        "  -device DRIVER,... a device; qkvm -device help lists them\n"
        "  -drive file=PATH[,format=raw|qcow2][,if=virtio|ide|none][,index=N][,id=ID][,readonly=on]\n"
        "        [,cache=writeback|writethrough|none|directsync|unsafe][,discard=ignore|unmap]\n"
        "                     a disk (virtio-blk; if=ide on -M pc); if=none waits for -device ...,drive=ID\n"
        "  -hda FILE, FILE    a disk image (-hdb..-hdd: IDE places 1-3): IDE on the PC machine, virtio\n"
        "                     with -kernel; a disk without -M or -kernel boots the PC with SeaBIOS\n"
        "  -cdrom FILE        an ISO image in the IDE CD-ROM drive (secondary master; -drive ...,media=cdrom)\n"
        "  -boot [order=]DRIVES[,once=DRIVES][,menu=on|off]  the PC's boot order: c disk, d CD, a floppy\n"
        "  -netdev tap,id=ID[,ifname=TAP][,script=no,downscript=no][,vnet_hdr=on|off][,fd=N]\n"
        "                     a TAP back-end for -device virtio-net-pci,netdev=ID[,mac=MAC]\n"
        "  -nic none|tap,...  no network card, or a tap back-end and its virtio-net card in one\n"
        "  -chardev socket,id=ID,path=PATH[,server=on,wait=off] | stdio,id=ID | file,id=ID,path=PATH\n"
        "                     a host end for -device virtconsole/virtserialport,chardev=ID\n"
        "  -object memory-backend-file,id=ID,mem-path=PATH,size=SIZE[,share=on] | memory-backend-memfd,id=ID,size=SIZE\n"
        "                     memory for -device ivshmem-plain,memdev=ID (docs/ivshmem.md)\n"
        "  -no-reboot         exit (status 0) when the guest reboots\n"
        "  -name NAME         the VM's name, for messages and query-name\n"
        "  -uuid UUID         the system UUID the guest sees (SMBIOS, /sys/class/dmi/id/product_uuid)\n"
        "  -smbios type=1,... SMBIOS fields: type=0 (vendor,version,date), type=1 (manufacturer,\n"
        "                     product,version,serial,uuid,sku,family), type=3 (chassis)\n"
        "  -machine/-M [type=]TYPE[,accel=NAME[:NAME]]  pc without -kernel: a PC running SeaBIOS\n"
        "                     (-bios FILE overrides, docs/firmware.md); otherwise the direct-boot\n"
        "                     machine; accel= as -accel (not both)\n"
        "  -cpu MODEL[,+feat|-feat|feat=on|off]  qemu64 (default), max, host (kvm), Nehalem...; -cpu help\n"
        "  -sandbox on|off[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]\n"
        "        [,spawn=allow|deny][,resourcecontrol=allow|deny]\n"
        "                     a seccomp allow-list per thread kind (docs/sandbox.md); off by default\n"
        "  -runas USER        become USER once /dev/kvm, images and taps are open\n"
        "  -chroot DIR        change the root directory to DIR likewise (root only)\n"
        "  -run-with chroot=DIR,user=USER  the same two, QEMU's newer spelling\n"
        "  -qmp unix:PATH,server=on,wait=off | tcp:HOST:PORT,server=on,wait=off | stdio\n"
        "                     a QMP monitor (JSON, as QEMU's); -qmp-pretty likewise, indented\n"
        "  -monitor stdio|unix:PATH,server=on,wait=off|tcp:HOST:PORT,server=on,wait=off|none\n"
        "                     a human monitor, prompt (qkvm); help lists its commands\n"
        "  -mon chardev=ID[,mode=control|readline][,pretty=on|off]  a monitor on -chardev ID\n"
        "                     (socket,id=ID,path=PATH|host=H,port=P,server=on,wait=off or stdio,id=ID)\n"
        "  -S                 start with the vCPUs paused, until the monitor's cont\n"
        "  -loadvm NAME       start from the VM snapshot NAME (savevm) of the qcow2 disks\n"
        "  -incoming URI      wait for a migration: tcp:HOST:PORT | unix:PATH | file:PATH | exec:CMD |\n"
        "                     defer (then QMP migrate-incoming); the same options as the source\n"
        "  -daemonize         run in the background once the VM is set up (no stdio console)\n"
        "  -pidfile FILE      write qkvm's process id to FILE (locked while qkvm runs)\n"
        "  -name guest=NAME[,process=PNAME][,debug-threads=on|off]  process= names the thread\n"
        "  -d ITEM,...        debug output on stderr; -d help lists the items\n"
        "  -version           print the version and exit\n"
        "  -h, -help          this text\n\n"
        "On the console, Ctrl-A x quits.\n");
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    log_error("%s", buf);
    exit(1);
}

static bool host_has_hw_virt(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return true;   /* can't tell: trust /dev/kvm */
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        if (!strncmp(line, "flags", 5))
            found = strstr(line, " vmx") || strstr(line, " svm");
    fclose(f);
    return found;
}

/* -accel names in order of preference; the first that this host can run wins. With no -accel,
 * KVM is skipped where it has no hardware virtualization behind it, since the software emulator
 * is then far faster. */
static const struct accel_ops *choose_accel(const char **names, int n)
{
    static const char *defaults[] = { "kvm", "tcg" };
    bool explicit_choice = n > 0;
    if (!n) {
        names = defaults;
        n = 2;
    }
    const char *reasons[CONFIG_MAX_ACCELS] = { 0 };
    for (int i = 0; i < n; i++) {
        const struct accel_ops *a = accel_find(names[i]);
        if (!a) {
            if (!strcmp(names[i], "tcg") && !explicit_choice)
                continue;
            die("-accel %s: unknown accelerator (kvm%s)", names[i], accel_find("tcg") ? ", tcg" : "");
        }
        const char *why = NULL;
        if (a->probe(&why)) {
            reasons[i] = why;
            log_debug(LOG_ACCEL, "accelerator %s unavailable: %s", a->name, why);
            continue;
        }
        if (!explicit_choice && !strcmp(a->name, "kvm") && !host_has_hw_virt() && accel_find("tcg")) {
            reasons[i] = "no hardware virtualization (vmx/svm) behind /dev/kvm";
            log_debug(LOG_ACCEL, "accelerator kvm skipped: %s", reasons[i]);
            continue;
        }
        /* stderr stays for errors: the choice is said under -d accel only */
        if (i > 0 && reasons[0])
            log_debug(LOG_ACCEL, "using %s: %s: %s", a->name, names[0], reasons[0]);
        else
            log_debug(LOG_ACCEL, "using %s", a->name);
        return a;
    }
    die("no accelerator can run here: %s%s%s", names[0], reasons[0] ? ": " : "", reasons[0] ? reasons[0] : "");
}

static void print_cpu_model(void *opaque, const char *name, const char *desc)
{
    (void)opaque;
    printf("x86 %-16s %s\n", name, desc);
}

static struct machine *_Atomic running;
static volatile sig_atomic_t quit_signal;

/* A signal between two boots (after a guest reset) must still end qkvm: remember it. */
static void on_signal(int sig)
{
    quit_signal = sig;
    struct machine *m = running;
    if (m)
        machine_request_stop_host(m, MACHINE_EXIT, 128 + sig, "host-signal");
}

/* -daemonize: the parent waits until the child says the VM is set up (a byte on the pipe) or
 * fails (the pipe closes), and exits 0 or 1 accordingly, as QEMU does. Returns the pipe's write
 * end in the child. */
static int daemonize_start(void)
{
    int p[2];
    if (pipe(p) < 0)
        die("-daemonize: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("-daemonize: %s", strerror(errno));
    if (pid > 0) {
        close(p[1]);
        char c;
        ssize_t n;
        while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
            ;
        _exit(n == 1 ? 0 : 1);
    }
    close(p[0]);
    setsid();
    return p[1];
}

static void daemonize_ready(int fd)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
    char c = 0;
    ssize_t r = write(fd, &c, 1);
    (void)r;
    close(fd);
}

/* -pidfile: created, locked for as long as qkvm runs (a second qkvm on the same file fails),
 * and holding the id of the process that runs the VM. */
static int pidfile_write(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        die("-pidfile %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0)
        die("-pidfile %s: locked by another process (%s)", path, strerror(errno));
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n)
        die("-pidfile %s: %s", path, strerror(errno));
    return fd;
}

int main(int argc, char **argv)
{
    log_set_prog("qkvm");
    /* static: still reachable when qkvm exits early, so leak checkers stay quiet */
    static struct config c;
    int ret = config_parse_args(&c, argc, argv);
    if (ret) {
        log_error("%s", c.err);
        config_free(&c);
        return 1;
    }
    switch (c.info) {
    case CONFIG_RUN:
        break;
    case CONFIG_USAGE:
        usage(stdout);
        return 0;
    case CONFIG_VERSION:
        printf("qkvm version " QKVM_VERSION "\n");
        return 0;
    case CONFIG_ACCEL_HELP:
        printf("Accelerators supported in qkvm binary:\n");
        for (const char *const *n = (const char *const[]){ "kvm", "tcg", NULL }; *n; n++)
            if (accel_find(*n))
                printf("%s\n", *n);
        return 0;
    case CONFIG_MACHINE_HELP:
        printf("pc       with -kernel: the direct-boot machine (ACPI, 8259/IOAPIC/LAPIC, 8254, 8250 UART);\n"
               "         without: a PC (i440FX, PIIX3 IDE, fw_cfg) running SeaBIOS (" FIRMWARE_DEFAULT_PATH ");\n"
               "         the machine of a disk image given without -M and -kernel\n");
        return 0;
    case CONFIG_DEVICE_HELP:
        printf("ide-cd          drive=ID, bus=ide.0|ide.1, unit=0|1: an ATAPI CD-ROM drive (-M pc)\n"
               "ide-hd          drive=ID, bus=ide.0|ide.1, unit=0|1: an IDE disk (-M pc)\n"
               "isa-debug-exit  iobase=PORT (0x501), iosize=1|2|4 (2): a write of V exits with (V<<1)|1\n"
               "virtio-blk-pci  drive=ID, serial=STR, addr=SLOT: a disk\n"
               "virtio-net-pci  netdev=ID, mac=MAC, addr=SLOT: a network card on a tap\n"
               "virtio-rng-pci  addr=SLOT: entropy from the host's getrandom()\n"
               "virtio-serial-pci max_ports=N (31), addr=SLOT: a bus for the two below\n"
               "virtconsole     chardev=ID, name=NAME: a console port (/dev/hvcN)\n"
               "virtserialport  chardev=ID, name=NAME: a named port (/dev/virtio-ports/NAME)\n"
               "ivshmem-plain   memdev=ID, addr=SLOT: shared memory in BAR2 (docs/ivshmem.md)\n"
               "ivshmem-doorbell chardev=ID, vectors=N (1), addr=SLOT: memory and doorbells from an ivshmem server\n"
               "pc-testdev      QEMU's \"pc-testdev\" for kvm-unit-tests: ports 0xe0-0xeb, IRQ lines at 0x2000, MMIO at 0xff000000\n");
        return 0;
    case CONFIG_CPU_HELP:
        printf("Available CPUs:\n");
        cpu_model_list(print_cpu_model, NULL);
        return 0;
    case CONFIG_DEBUG_HELP:
        fputs(log_mask_help(), stdout);
        return 0;
    }
    log_mask = c.log_mask;
    log_debug(LOG_TIME, "options parsed");
    struct machine_config cfg = c.machine;

    /* the PC (config.c chose it: -M pc or a bare disk, without -kernel) boots its firmware */
    if (cfg.type == MACHINE_PC) {
        if (!cfg.bios)
            cfg.bios = FIRMWARE_DEFAULT_PATH;
        const char *fw_why;
        if (firmware_check(cfg.bios, &fw_why))
            die("-bios %s: %s", cfg.bios, fw_why);
    }

    if (!cfg.kernel && !cfg.bios)
        die("nothing to boot: give -kernel FILE (a bzImage) or -bios FILE");
    if (cfg.kernel && cfg.bios)
        die("-kernel and -bios together: qkvm boots one or the other");
    if (!cfg.kernel && (cfg.initrd || cfg.cmdline))
        die("-initrd and -append need -kernel");
    const char *why;
    int kret = cfg.kernel ? boot_check_kernel(cfg.kernel, &why) : 0;
    if (kret == -EINVAL)
        die("-kernel %s: %s", cfg.kernel, why);
    if (kret)   /* QEMU's words, which kvm-unit-tests' runner looks for */
        die("could not load kernel '%s': %s", cfg.kernel, why);
    char initrd_why[512];
    if (cfg.initrd && boot_check_initrd(cfg.kernel, cfg.initrd, initrd_why, sizeof(initrd_why)))
        die("%s", initrd_why);
    for (int i = 0; i < c.nbackends; i++)
        if (!c.backends[i].used)
            log_warn("-%s id=%s: no device uses it", c.backends[i].kind, c.backends[i].id);
    const char *bad;
    if (machine_check_devices(&cfg, &bad))
        die("-device '%s': no such device (qkvm -device help lists them)", bad);
    cfg.accel = choose_accel(c.accels, c.naccels);
    if (sandbox_configure(&c.sandbox))
        die("-sandbox: cannot install the SIGSYS handler: %s", strerror(errno));
    /* a disk's worker may meet its first compressed cluster after the sandbox or the chroot
     * forbids opening the library */
    if (sandbox_confines())
        block_preload_libs();

    static struct monitor_set *mons;
    const struct monitor_info minfo = { QKVM_QEMU_MAJOR, QKVM_QEMU_MINOR, QKVM_QEMU_MICRO, "qkvm-" QKVM_VERSION };
    if (monitor_set_create(&minfo, &mons))
        die("out of memory");
    for (int i = 0; i < c.nmonitors; i++) {
        char mwhy[300];
        int r = monitor_set_add(mons, &c.monitors[i].addr, c.monitors[i].control, c.monitors[i].pretty, mwhy, sizeof(mwhy));
        if (r)
            die("%s %s", c.monitors[i].control ? "-qmp" : "-monitor", r == -ENOMEM ? "out of memory" : mwhy);
    }
    int ready_fd = c.daemonize ? daemonize_start() : -1;
    int pid_fd = c.pidfile ? pidfile_write(c.pidfile) : -1;
    if (c.process_name[0])
        prctl(PR_SET_NAME, c.process_name);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    /* -incoming: the vCPUs wait for the stream; they run once it is in, unless -S */
    bool autostart = !cfg.start_paused;
    if (c.incoming)
        cfg.start_paused = cfg.incoming = true;
    if (c.loadvm)
        cfg.start_paused = true;   /* the guest runs from the snapshot, not from its boot */
    int status;
    for (;;) {
        struct machine m;
        if (machine_create(&m, &cfg) || monitor_set_attach(mons, &m)) {
            monitor_set_detach(mons);
            machine_destroy(&m);
            chardev_restore_terminal();
            return 1;
        }
        if (c.mig_mapped_ram && migration_set_capability(&m, "mapped-ram", true))
            die("out of memory");
        if (c.incoming) {
            char iwhy[400];
            int r = migration_incoming(&m, c.incoming, autostart, iwhy, sizeof(iwhy));
            c.incoming = NULL;   /* a guest reset later boots afresh */
            cfg.incoming = false;
            if (r) {
                log_error("-incoming %s", iwhy);
                monitor_set_detach(mons);
                machine_destroy(&m);
                chardev_restore_terminal();
                return 1;
            }
        }
        if (c.loadvm) {
            int r = savevm_load_at_start(&m, c.loadvm, autostart);
            c.loadvm = NULL;   /* a guest reset later boots afresh */
            if (r) {
                log_error("-loadvm: %s", strerror(-r));
                monitor_set_detach(mons);
                machine_destroy(&m);
                chardev_restore_terminal();
                return 1;
            }
        }
        if (ready_fd >= 0) {
            daemonize_ready(ready_fd);
            ready_fd = -1;
        }
        log_debug(LOG_TIME, "VM created, memory ready");
        /* everything is open: now the user, the root directory; the vCPUs and this thread
         * enter their sandboxes in machine_run */
        if (sandbox_drop_privileges()) {
            monitor_set_detach(mons);
            machine_destroy(&m);
            chardev_restore_terminal();
            return 1;
        }
        running = &m;
        if (quit_signal)
            machine_request_stop_host(&m, MACHINE_EXIT, 128 + quit_signal, "host-signal");
        enum machine_stop why_stop = machine_run(&m);
        running = NULL;
        /* a reset keeps a paused machine paused, as QEMU's system_reset does */
        cfg.start_paused = machine_is_paused(&m);
        cfg.boot_once[0] = 0;   /* -boot once= was for the first boot */
        monitor_set_detach(mons);
        status = m.exit_status;
        bool again = why_stop == MACHINE_RESET && !cfg.no_reboot && !quit_signal;
        /* a new machine means opening /dev/kvm and the images again, which the sandbox, the
         * new user or the new root no longer allow */
        if (again && sandbox_confines()) {
            log_warn("guest reset: with -sandbox, -runas or -chroot qkvm cannot build the machine again: exiting");
            again = false;
        }
        machine_destroy(&m);
        if (again) {
            log_debug(LOG_ACCEL, "guest reset: booting again");
            continue;
        }
        if (why_stop == MACHINE_RESET || why_stop == MACHINE_POWEROFF)
            status = 0;
        break;
    }
    chardev_restore_terminal();
    monitor_set_free(mons);
    if (pid_fd >= 0 && !sandbox_confines())
        unlink(c.pidfile);
    config_free(&c);
    return status;
}
