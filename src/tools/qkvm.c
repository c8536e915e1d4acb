/* qkvm: run a virtual machine. QEMU's option names and meanings, so a user's habits carry over. */
#include "accel/accel.h"
#include "hw/chardev.h"
#include "util/log.h"
#include "util/parse.h"
#include "vm/boot.h"
#include "vm/cpu_model.h"
#include "vm/machine.h"
#include "vm/smbios.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#define QKVM_VERSION "0.1.0"
#define MAX_ACCELS 8

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
        "  -machine/-M TYPE   accepted for QEMU compatibility: pc, q35, microvm (one machine type)\n"
        "  -cpu MODEL[,+feat|-feat|feat=on|off]  qemu64 (default), max, host (kvm), Nehalem...; -cpu help\n"
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

/* Options that take an argument; the rest are flags. */
static const char *const with_arg[] = {
    "m", "smp", "kernel", "initrd", "append", "bios", "serial", "accel", "device", "name",
    "machine", "M", "cpu", "d", "display", "uuid", "smbios", "drive", "hda", "hdb", "hdc", "hdd",
    "netdev", "nic", "net", "chardev", NULL,
};

static void print_cpu_model(void *opaque, const char *name, const char *desc)
{
    (void)opaque;
    printf("x86 %-16s %s\n", name, desc);
}

static bool takes_arg(const char *opt)
{
    for (int i = 0; with_arg[i]; i++)
        if (!strcmp(opt, with_arg[i]))
            return true;
    return false;
}

static uint64_t parse_ram(const char *arg)
{
    struct kvlist kv;
    uint64_t size;
    const char *s = arg;
    if (keyval_parse(arg, "size", &kv) == 0) {
        s = keyval_get(&kv, "size");
        const char *bad = keyval_unused(&kv);
        if (bad)
            die("-m %s: unknown parameter '%s'", arg, bad);
    }
    int ret = s ? parse_size(s, 1ull << 20, &size) : -EINVAL;
    if (s != arg)
        keyval_free(&kv);
    if (ret || size < (1ull << 20))
        die("-m %s: not a memory size (a number of MiB, or with a K/M/G suffix, at least 1M)", arg);
    if (size > (1ull << 40))
        die("-m %s: more than the 1 TiB a qkvm guest can have", arg);
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        uint64_t host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
        if (size > host)
            die("-m %s: the host has only %llu MiB of memory and swap", arg, (unsigned long long)(host >> 20));
    }
    return size;
}

static int parse_smp(const char *arg)
{
    struct kvlist kv;
    if (keyval_parse(arg, "cpus", &kv))
        die("-smp %s: not a CPU count", arg);
    uint64_t cpus = 0, sockets = 1, cores = 1, threads = 1, maxcpus = 0, v;
    const char *s;
    bool topo = false;
#define SMP_FIELD(name, var)                                                          \
    if ((s = keyval_get(&kv, name))) {                                                \
        if (parse_u64(s, 0, 1u << 16, &v))                                            \
            die("-smp %s: %s '%s' is not a number", arg, name, s);                    \
        var = v;                                                                      \
    }
    SMP_FIELD("cpus", cpus)
    SMP_FIELD("maxcpus", maxcpus)
    if ((s = keyval_get(&kv, "sockets"))) topo = true;
    SMP_FIELD("sockets", sockets)
    if ((s = keyval_get(&kv, "cores"))) topo = true;
    SMP_FIELD("cores", cores)
    if ((s = keyval_get(&kv, "threads"))) topo = true;
    SMP_FIELD("threads", threads)
#undef SMP_FIELD
    const char *bad = keyval_unused(&kv);
    if (bad)
        die("-smp %s: unknown parameter '%s'", arg, bad);
    keyval_free(&kv);
    if (!cpus && topo)
        cpus = sockets * cores * threads;
    (void)maxcpus;
    if (cpus < 1)
        die("-smp %s: a guest needs at least one CPU", arg);
    if (cpus > MACHINE_MAX_CPUS)
        die("-smp %s: at most %d CPUs", arg, MACHINE_MAX_CPUS);
    return (int)cpus;
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
    const char *reasons[MAX_ACCELS] = { 0 };
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

/* Tearing a KVM VM down waits for the kernel's grace periods (10-30 ms here), and whoever holds
 * the last reference pays. At the final exit a child takes the references and pays after we are
 * gone, so whoever waits for qkvm gets its status without the wait. The child holds no stdio, so
 * readers of our output see EOF when we exit. */
static void teardown_in_background(void)
{
    int p[2];
    if (pipe(p) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        for (int fd = 0; fd <= 2; fd++)
            close(fd);
        char c;
        while (read(p[0], &c, 1) < 0 && errno == EINTR)
            ;   /* EOF: the parent is gone */
        _exit(0);
    }
    close(p[0]);   /* p[1] stays open until we exit */
}

/* -drive, -netdev and -chardev define back-ends by id; a -device names one (drive=, netdev=,
 * chardev=) and gets the whole definition in its place, so devices never look anything up. */
#define MAX_BACKENDS 64
struct backend {
    const char *kind;       /* "drive", "netdev", "chardev": the -device property naming it */
    char *id;
    char *spec;             /* the option's argument as given */
    bool used;
};
static struct backend backends[MAX_BACKENDS];
static int nbackends;

/* s with every comma doubled: a value that keyval_parse gives back whole */
static char *escape_commas(const char *s)
{
    size_t n = strlen(s), k = 0;
    char *out = malloc(2 * n + 1);
    if (!out)
        die("out of memory");
    for (size_t i = 0; i < n; i++) {
        out[k++] = s[i];
        if (s[i] == ',')
            out[k++] = ',';
    }
    out[k] = 0;
    return out;
}

static void add_device(struct machine_config *cfg, const char *driver, const char *prop, const char *spec,
                       const char *extra)
{
    if (cfg->ndevices == MACHINE_MAX_DEVICES)
        die("at most %d devices", MACHINE_MAX_DEVICES);
    char *e = escape_commas(spec);
    size_t len = strlen(driver) + strlen(prop) + strlen(e) + (extra ? strlen(extra) : 0) + 4;
    char *line = malloc(len);
    if (!line)
        die("out of memory");
    snprintf(line, len, "%s,%s=%s%s%s", driver, prop, e, extra && *extra ? "," : "", extra ? extra : "");
    if (keyval_parse(line, "driver", &cfg->devices[cfg->ndevices]))
        die("%s: cannot describe the device", spec);
    cfg->ndevices++;
    free(e);
    free(line);
}

static void add_backend(const char *kind, const char *opt, const char *arg, const char *implied)
{
    struct kvlist kv;
    if (keyval_parse(arg, implied, &kv))
        die("-%s %s: not a valid description", opt, arg);
    const char *id = keyval_get(&kv, "id");
    if (!id || !*id)
        die("-%s %s: needs id=", opt, arg);
    for (int i = 0; i < nbackends; i++)
        if (!strcmp(backends[i].kind, kind) && !strcmp(backends[i].id, id))
            die("-%s %s: id '%s' is used twice", opt, arg, id);
    if (nbackends == MAX_BACKENDS)
        die("-%s: at most %d back-ends", opt, MAX_BACKENDS);
    backends[nbackends++] = (struct backend){ kind, strdup(id), strdup(arg), false };
    keyval_free(&kv);
}

static void parse_drive(struct machine_config *cfg, const char *arg)
{
    struct kvlist kv;
    if (keyval_parse(arg, NULL, &kv))
        die("-drive %s: not a drive description (file=PATH,format=...)", arg);
    const char *itf = keyval_get(&kv, "if");
    if (itf && !strcmp(itf, "none"))
        add_backend("drive", "drive", arg, NULL);
    else if (!itf || !strcmp(itf, "virtio"))
        add_device(cfg, "virtio-blk-pci", "drive", arg, NULL);
    else
        die("-drive %s: if=%s: qkvm's disks are virtio (if=virtio, or if=none with -device virtio-blk-pci)", arg, itf);
    keyval_free(&kv);
}

/* -hda FILE and a bare FILE: QEMU makes them IDE disks; qkvm has virtio disks only. */
static void parse_disk_image(struct machine_config *cfg, const char *opt, const char *file)
{
    if (!*file)
        die("-%s: an empty file name", opt);
    size_t len = strlen(file) * 2 + 8;
    char *spec = malloc(len);
    char *e = escape_commas(file);
    if (!spec)
        die("out of memory");
    snprintf(spec, len, "file=%s", e);
    add_device(cfg, "virtio-blk-pci", "drive", spec, NULL);
    free(e);
    free(spec);
}

/* -nic TYPE,...: a back-end and its card in one; model= and mac= go to the card. */
static void parse_nic(struct machine_config *cfg, const char *opt, const char *arg)
{
    struct kvlist kv;
    if (keyval_parse(arg, "type", &kv))
        die("-%s %s: not a network description", opt, arg);
    const char *type = keyval_get(&kv, "type");
    if (!strcmp(type, "none")) {
        keyval_free(&kv);
        return;
    }
    if (strcmp(type, "tap"))
        die("-%s %s: qkvm has the tap back-end only (tap or none)", opt, arg);
    const char *model = keyval_get(&kv, "model");
    if (model && strcmp(model, "virtio-net-pci") && strcmp(model, "virtio"))
        die("-%s %s: model=%s: qkvm's network card is virtio-net-pci", opt, arg, model);
    const char *mac = keyval_get(&kv, "mac");
    size_t len = strlen(arg) + 32;
    char *spec = malloc(len), *extra = malloc(len);
    if (!spec || !extra)
        die("out of memory");
    /* the back-end's own options, in the order given */
    spec[0] = 0;
    for (int i = 0; i < kv.n; i++) {
        if (!strcmp(kv.items[i].key, "model") || !strcmp(kv.items[i].key, "mac"))
            continue;
        char *v = escape_commas(kv.items[i].val);
        size_t n = strlen(spec);
        snprintf(spec + n, len - n, "%s%s=%s", n ? "," : "", kv.items[i].key, v);
        free(v);
    }
    snprintf(extra, len, "%s%s", mac ? "mac=" : "", mac ? mac : "");
    add_device(cfg, "virtio-net-pci", "netdev", spec, extra);
    free(spec);
    free(extra);
    keyval_free(&kv);
}

/* Puts each back-end's definition where a -device names it. */
static void resolve_backends(struct machine_config *cfg)
{
    for (int d = 0; d < cfg->ndevices; d++) {
        struct kvlist *l = &cfg->devices[d];
        for (int k = 0; k < l->n; k++) {
            const char *key = l->items[k].key;
            if (strcmp(key, "drive") && strcmp(key, "netdev") && strcmp(key, "chardev"))
                continue;
            if (strchr(l->items[k].val, '='))
                continue;   /* a definition already (from -drive if=virtio, -hda, -nic) */
            struct backend *b = NULL;
            for (int i = 0; i < nbackends && !b; i++)
                if (!strcmp(backends[i].kind, key) && !strcmp(backends[i].id, l->items[k].val))
                    b = &backends[i];
            if (!b)
                die("-device %s: no -%s with id=%s", l->items[0].val, key, l->items[k].val);
            if (b->used)
                die("-device %s: -%s id=%s is used by another device already", l->items[0].val, key, b->id);
            b->used = true;
            char *v = strdup(b->spec);
            if (!v)
                die("out of memory");
            free(l->items[k].val);
            l->items[k].val = v;
        }
    }
    for (int i = 0; i < nbackends; i++)
        if (!backends[i].used)
            log_warn("-%s id=%s: no device uses it", backends[i].kind, backends[i].id);
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
    /* static: still reachable when die() exits mid-parse, so leak checkers stay quiet */
    static struct machine_config cfg = { .ram_size = 256ull << 20, .ncpus = 1, .serial = "stdio" };
    static const char *accels[MAX_ACCELS];
    static char *accel_lists[MAX_ACCELS];   /* strtok'd copies that accels[] points into */
    int naccels = 0, nlists = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            parse_disk_image(&cfg, "hda", a);   /* as QEMU: a bare argument is the first disk */
            continue;
        }
        const char *opt = a + 1 + (a[1] == '-');
        const char *arg = NULL;
        if (takes_arg(opt)) {
            if (i + 1 >= argc)
                die("-%s needs an argument", opt);
            arg = argv[++i];
        }
        if (!strcmp(opt, "h") || !strcmp(opt, "help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(opt, "version")) {
            printf("qkvm version " QKVM_VERSION "\n");
            return 0;
        } else if (!strcmp(opt, "m")) {
            cfg.ram_size = parse_ram(arg);
        } else if (!strcmp(opt, "smp")) {
            cfg.ncpus = parse_smp(arg);
        } else if (!strcmp(opt, "kernel")) {
            cfg.kernel = arg;
        } else if (!strcmp(opt, "initrd")) {
            cfg.initrd = arg;
        } else if (!strcmp(opt, "append")) {
            cfg.cmdline = arg;
        } else if (!strcmp(opt, "bios")) {
            cfg.bios = arg;
        } else if (!strcmp(opt, "serial")) {
            cfg.serial = !strcmp(arg, "mon:stdio") ? "stdio" : arg;
        } else if (!strcmp(opt, "nographic")) {
            /* the serial console already is on stdio: qkvm has no display */
        } else if (!strcmp(opt, "display")) {
            if (strcmp(arg, "none"))
                die("-display %s: qkvm has no display (only -display none)", arg);
        } else if (!strcmp(opt, "accel") && !strcmp(arg, "help")) {
            printf("Accelerators supported in qkvm binary:\n");
            for (const char *const *n = (const char *const[]){ "kvm", "tcg", NULL }; *n; n++)
                if (accel_find(*n))
                    printf("%s\n", *n);
            return 0;
        } else if (!strcmp(opt, "accel")) {
            struct kvlist kv;
            if (keyval_parse(arg, "accel", &kv))
                die("-accel %s: not an accelerator name", arg);
            if (nlists == MAX_ACCELS)
                die("-accel: too many accelerators");
            const char *names = keyval_get(&kv, "accel");
            const char *jit = keyval_get(&kv, "jit");
            if (!names)
                die("-accel %s: no accelerator name", arg);
            if (jit && strcmp(jit, "on") && strcmp(jit, "off"))
                die("-accel %s: jit takes on or off", arg);
            if (jit)
                cfg.tcg_nojit = !strcmp(jit, "off");
            if (keyval_unused(&kv))
                die("-accel %s: unknown option %s", arg, keyval_unused(&kv));
            char *list = accel_lists[nlists++] = strdup(names);
            for (char *save, *t = strtok_r(list, ":", &save); t; t = strtok_r(NULL, ":", &save)) {
                if (naccels == MAX_ACCELS)
                    die("-accel: too many accelerators");
                accels[naccels++] = t;
            }
            keyval_free(&kv);
        } else if (!strcmp(opt, "enable-kvm")) {
            if (naccels < MAX_ACCELS)
                accels[naccels++] = "kvm";
        } else if (!strcmp(opt, "no-reboot")) {
            cfg.no_reboot = true;
        } else if (!strcmp(opt, "name")) {
            cfg.name = arg;
        } else if (!strcmp(opt, "machine") || !strcmp(opt, "M")) {
            struct kvlist kv;
            if (keyval_parse(arg, "type", &kv))
                die("-machine %s: not a machine type", arg);
            const char *t = keyval_get(&kv, "type");
            if (!strcmp(t, "help")) {
                printf("pc       a PC with ACPI, 8259/IOAPIC/LAPIC, 8254, 8250 UART (default)\n");
                return 0;
            }
            if (strcmp(t, "pc") && strcmp(t, "q35") && strcmp(t, "microvm") && strcmp(t, "none"))
                die("-machine %s: unknown machine type (pc)", t);
            keyval_free(&kv);
        } else if (!strcmp(opt, "cpu") && !strcmp(arg, "help")) {
            printf("Available CPUs:\n");
            cpu_model_list(print_cpu_model, NULL);
            return 0;
        } else if (!strcmp(opt, "cpu")) {
            cfg.cpu = arg;   /* checked against the accelerator's features when it starts */
        } else if (!strcmp(opt, "drive")) {
            parse_drive(&cfg, arg);
        } else if (!strcmp(opt, "hda") || !strcmp(opt, "hdb") || !strcmp(opt, "hdc") || !strcmp(opt, "hdd")) {
            parse_disk_image(&cfg, opt, arg);
        } else if (!strcmp(opt, "netdev")) {
            struct kvlist kv;
            if (keyval_parse(arg, "type", &kv))
                die("-netdev %s: not a network back-end description", arg);
            if (strcmp(keyval_get(&kv, "type"), "tap"))
                die("-netdev %s: qkvm has the tap back-end only", arg);
            keyval_free(&kv);
            add_backend("netdev", "netdev", arg, "type");
        } else if (!strcmp(opt, "nic") || !strcmp(opt, "net")) {
            parse_nic(&cfg, opt, arg);
        } else if (!strcmp(opt, "chardev")) {
            add_backend("chardev", "chardev", arg, "backend");
        } else if (!strcmp(opt, "device")) {
            if (!strcmp(arg, "help")) {
                printf("isa-debug-exit  iobase=PORT (0x501), iosize=1|2|4 (2): a write of V exits with (V<<1)|1\n"
                       "virtio-blk-pci  drive=ID, serial=STR, addr=SLOT: a disk\n"
                       "virtio-net-pci  netdev=ID, mac=MAC, addr=SLOT: a network card on a tap\n"
                       "virtio-rng-pci  addr=SLOT: entropy from the host's getrandom()\n"
                       "virtio-serial-pci max_ports=N (31), addr=SLOT: a bus for the two below\n"
                       "virtconsole     chardev=ID, name=NAME: a console port (/dev/hvcN)\n"
                       "virtserialport  chardev=ID, name=NAME: a named port (/dev/virtio-ports/NAME)\n");
                return 0;
            }
            if (cfg.ndevices == MACHINE_MAX_DEVICES)
                die("-device: at most %d devices", MACHINE_MAX_DEVICES);
            if (keyval_parse(arg, "driver", &cfg.devices[cfg.ndevices]))
                die("-device %s: not a device description (DRIVER,prop=value,...)", arg);
            cfg.ndevices++;
        } else if (!strcmp(opt, "uuid") || !strcmp(opt, "smbios")) {
            static struct smbios_config smbios;
            if (!cfg.smbios)
                smbios_config_init(&smbios);
            cfg.smbios = &smbios;
            char why[160];
            if (!strcmp(opt, "uuid")) {
                if (smbios_parse_uuid(arg, smbios.uuid))
                    die("-uuid %s: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", arg);
            } else if (smbios_parse_option(&smbios, arg, why, sizeof(why))) {
                die("-smbios %s: %s", arg, why);
            }
        } else if (!strcmp(opt, "d")) {
            if (!strcmp(arg, "help")) {
                fputs(log_mask_help(), stdout);
                return 0;
            }
            if (log_parse_mask(arg, &log_mask))
                die("-d %s: unknown item (qkvm -d help lists them)", arg);
        } else {
            die("-%s: unknown option (qkvm -h lists them)", opt);
        }
    }
    log_debug(LOG_TIME, "options parsed");

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
    resolve_backends(&cfg);
    const char *bad;
    if (machine_check_devices(&cfg, &bad))
        die("-device '%s': no such device (qkvm -device help lists them)", bad);
    cfg.accel = choose_accel(accels, naccels);

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
        running = &m;
        if (quit_signal)
            machine_request_stop(&m, MACHINE_EXIT, 128 + quit_signal);
        enum machine_stop why_stop = machine_run(&m);
        running = NULL;
        status = m.exit_status;
        bool again = why_stop == MACHINE_RESET && !cfg.no_reboot && !quit_signal;
        if (!again && !strcmp(cfg.accel->name, "kvm"))
            teardown_in_background();
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
    for (int i = 0; i < cfg.ndevices; i++)
        keyval_free(&cfg.devices[i]);
    for (int i = 0; i < nlists; i++)
        free(accel_lists[i]);
    for (int i = 0; i < nbackends; i++) {
        free(backends[i].id);
        free(backends[i].spec);
    }
    return status;
}
