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
#include "vm/machine.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QKVM_VERSION "0.1.0"

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
        "  -enable-kvm        same as -accel kvm\n"
        "  -device DRIVER,... a device; qkvm -device help lists them\n"
        "  -drive file=PATH[,format=raw|qcow2][,if=virtio|none][,id=ID][,readonly=on]\n"
        "        [,cache=writeback|writethrough|none|directsync|unsafe][,discard=ignore|unmap]\n"
        "                     a disk (virtio-blk); if=none waits for -device virtio-blk-pci,drive=ID\n"
        "  -hda FILE, FILE    a disk image, as -drive file=FILE (qkvm's disks are virtio)\n"
        "  -netdev tap,id=ID[,ifname=TAP][,script=no,downscript=no][,vnet_hdr=on|off][,fd=N]\n"
        "                     a TAP back-end for -device virtio-net-pci,netdev=ID[,mac=MAC]\n"
        "  -nic none|tap,...  no network card, or a tap back-end and its virtio-net card in one\n"
        "  -chardev socket,id=ID,path=PATH[,server=on,wait=off] | stdio,id=ID | file,id=ID,path=PATH\n"
        "                     a host end for -device virtconsole/virtserialport,chardev=ID\n"
        "  -no-reboot         exit (status 0) when the guest reboots\n"
        "  -name NAME         the VM's name, for messages and the process title\n"
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
        machine_request_stop(m, MACHINE_EXIT, 128 + sig);
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
               "         without: a PC (i440FX, fw_cfg) running SeaBIOS (" FIRMWARE_DEFAULT_PATH ")\n");
        return 0;
    case CONFIG_DEVICE_HELP:
        printf("isa-debug-exit  iobase=PORT (0x501), iosize=1|2|4 (2): a write of V exits with (V<<1)|1\n"
               "virtio-blk-pci  drive=ID, serial=STR, addr=SLOT: a disk\n"
               "virtio-net-pci  netdev=ID, mac=MAC, addr=SLOT: a network card on a tap\n"
               "virtio-rng-pci  addr=SLOT: entropy from the host's getrandom()\n"
               "virtio-serial-pci max_ports=N (31), addr=SLOT: a bus for the two below\n"
               "virtconsole     chardev=ID, name=NAME: a console port (/dev/hvcN)\n"
               "virtserialport  chardev=ID, name=NAME: a named port (/dev/virtio-ports/NAME)\n");
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

    /* -M pc without -kernel: the PC with firmware (vm/firmware.h); -kernel keeps its direct boot */
    if (c.want_pc && !cfg.kernel) {
        cfg.type = MACHINE_PC;
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
    if (cfg.kernel && boot_check_kernel(cfg.kernel, &why))
        die("-kernel %s: %s", cfg.kernel, why);
    if (cfg.initrd && access(cfg.initrd, R_OK))
        die("-initrd %s: %s", cfg.initrd, strerror(errno));
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

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int status;
    for (;;) {
        struct machine m;
        if (machine_create(&m, &cfg)) {
            machine_destroy(&m);
            chardev_restore_terminal();
            return 1;
        }
        log_debug(LOG_TIME, "VM created, memory ready");
        /* everything is open: now the user, the root directory; the vCPUs and this thread
         * enter their sandboxes in machine_run */
        if (sandbox_drop_privileges()) {
            machine_destroy(&m);
            chardev_restore_terminal();
            return 1;
        }
        running = &m;
        if (quit_signal)
            machine_request_stop(&m, MACHINE_EXIT, 128 + quit_signal);
        enum machine_stop why_stop = machine_run(&m);
        running = NULL;
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
    config_free(&c);
    return status;
}
