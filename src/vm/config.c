/* qkvm's command line: one table of options, each a handler that fills struct config or says in
 * one line what is wrong. Every value a handler reads may be absent (a keyval list without its
 * implied key, "-machine accel=tcg") or empty, and is checked before use. */
#include "vm/config.h"
#include "vm/bootdev.h"

#include "util/log.h"
#include "util/parse.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

/* Fills c->err and returns ret. Control characters in the message (a newline inside an
 * argument) become '?', so an error is always one line. */
static int config_error(struct config *c, int ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int config_error(struct config *c, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    for (char *p = c->err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return ret;
}

/* s with every comma doubled: a value that keyval_parse gives back whole. NULL when out of memory. */
static char *escape_commas(const char *s)
{
    size_t n = strlen(s), k = 0;
    char *out = malloc(2 * n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        out[k++] = s[i];
        if (s[i] == ',')
            out[k++] = ',';
    }
    out[k] = 0;
    return out;
}

/* A value of the parsed list, or NULL, without marking it used (for messages and look-ups). */
static const char *kv_peek(const struct kvlist *l, const char *key)
{
    const char *v = NULL;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->items[i].key, key))
            v = l->items[i].val;
    return v;
}

/* Adds "driver,prop=SPEC[,extra]" as a -device line, SPEC kept whole. */
static int config_add_device(struct config *c, const char *driver, const char *prop, const char *spec,
                             const char *extra)
{
    struct machine_config *mc = &c->machine;
    if (mc->ndevices == MACHINE_MAX_DEVICES)
        return config_error(c, -E2BIG, "at most %d devices", MACHINE_MAX_DEVICES);
    char *e = escape_commas(spec);
    size_t len = strlen(driver) + strlen(prop) + (e ? strlen(e) : 0) + (extra ? strlen(extra) : 0) + 4;
    char *line = e ? malloc(len) : NULL;
    int ret = 0;
    if (!line) {
        ret = config_error(c, -ENOMEM, "out of memory");
    } else {
        snprintf(line, len, "%s,%s=%s%s%s", driver, prop, e, extra && *extra ? "," : "", extra ? extra : "");
        if (keyval_parse(line, "driver", &mc->devices[mc->ndevices]))
            ret = config_error(c, -EINVAL, "%s: cannot describe the device", spec);
        else
            mc->ndevices++;
    }
    free(e);
    free(line);
    return ret;
}

static int config_add_backend(struct config *c, const char *kind, const char *arg, const char *implied)
{
    struct kvlist kv;
    if (keyval_parse(arg, implied, &kv))
        return config_error(c, -EINVAL, "-%s %s: not a valid description", kind, arg);
    const char *id = keyval_get(&kv, "id");
    int ret = 0;
    if (!id || !*id) {
        ret = config_error(c, -EINVAL, "-%s %s: needs id=", kind, arg);
        goto out;
    }
    for (int i = 0; i < c->nbackends; i++)
        if (!strcmp(c->backends[i].kind, kind) && !strcmp(c->backends[i].id, id)) {
            ret = config_error(c, -EINVAL, "-%s %s: id '%s' is used twice", kind, arg, id);
            goto out;
        }
    if (c->nbackends == CONFIG_MAX_BACKENDS) {
        ret = config_error(c, -E2BIG, "-%s: at most %d back-ends", kind, CONFIG_MAX_BACKENDS);
        goto out;
    }
    struct config_backend *b = &c->backends[c->nbackends];
    *b = (struct config_backend){ kind, strdup(id), strdup(arg), false };
    if (!b->id || !b->spec) {
        free(b->id);
        free(b->spec);
        ret = config_error(c, -ENOMEM, "out of memory");
        goto out;
    }
    c->nbackends++;
out:
    keyval_free(&kv);
    return ret;
}

/* Appends the names of a "kvm:tcg" list to the accelerators to try; opt and arg are for messages. */
static int config_add_accels(struct config *c, const char *opt, const char *arg, const char *names)
{
    if (c->nlists == CONFIG_MAX_ACCELS)
        return config_error(c, -E2BIG, "%s%s%s: too many accelerators", opt, *arg ? " " : "", arg);
    char *list = strdup(names);
    if (!list)
        return config_error(c, -ENOMEM, "out of memory");
    c->accel_lists[c->nlists++] = list;
    int before = c->naccels;
    for (char *save, *t = strtok_r(list, ":", &save); t; t = strtok_r(NULL, ":", &save)) {
        if (c->naccels == CONFIG_MAX_ACCELS)
            return config_error(c, -E2BIG, "%s%s%s: too many accelerators", opt, *arg ? " " : "", arg);
        c->accels[c->naccels++] = t;
    }
    if (c->naccels == before)
        return config_error(c, -EINVAL, "%s%s%s: no accelerator name", opt, *arg ? " " : "", arg);
    return 0;
}

/* ---- the options, one handler each: 0 or -errno with c->err set ---- */

static int opt_help(struct config *c, const char *opt, const char *arg)
{
    (void)opt, (void)arg;
    c->info = CONFIG_USAGE;
    return 0;
}

static int opt_version(struct config *c, const char *opt, const char *arg)
{
    (void)opt, (void)arg;
    c->info = CONFIG_VERSION;
    return 0;
}

static int opt_ram(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct kvlist kv;
    const char *s = arg, *bad = NULL;
    uint64_t size = 0;
    bool have_kv = keyval_parse(arg, "size", &kv) == 0;
    if (have_kv) {
        s = keyval_get(&kv, "size");
        bad = keyval_unused(&kv);
    }
    int ret = 0;
    if (bad)
        ret = config_error(c, -EINVAL, "-m %s: unknown parameter '%s'", arg, bad);
    else if (!s || parse_size(s, 1ull << 20, &size) || size < (1ull << 20))
        ret = config_error(c, -EINVAL, "-m %s: not a memory size (a number of MiB, or with a K/M/G suffix, at least 1M)", arg);
    else if (size > (1ull << 40))
        ret = config_error(c, -EINVAL, "-m %s: more than the 1 TiB a qkvm guest can have", arg);
    if (have_kv)
        keyval_free(&kv);
    if (ret)
        return ret;
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        uint64_t host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
        if (size > host)
            return config_error(c, -EINVAL, "-m %s: the host has only %llu MiB of memory and swap", arg,
                                (unsigned long long)(host >> 20));
    }
    c->machine.ram_size = size;
    return 0;
}

static int opt_smp(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct kvlist kv;
    if (keyval_parse(arg, "cpus", &kv))
        return config_error(c, -EINVAL, "-smp %s: not a CPU count", arg);
    static const char *const keys[] = { "cpus", "maxcpus", "sockets", "cores", "threads" };
    uint64_t v[5] = { 0, 0, 1, 1, 1 };
    bool topo = false;
    int ret = 0;
    for (int i = 0; i < 5 && !ret; i++) {
        const char *s = keyval_get(&kv, keys[i]);
        if (!s)
            continue;
        topo |= i >= 2;
        if (parse_u64(s, 0, 1u << 16, &v[i]))
            ret = config_error(c, -EINVAL, "-smp %s: %s '%s' is not a number", arg, keys[i], s);
    }
    const char *bad = keyval_unused(&kv);
    if (!ret && bad)
        ret = config_error(c, -EINVAL, "-smp %s: unknown parameter '%s'", arg, bad);
    keyval_free(&kv);
    if (ret)
        return ret;
    uint64_t cpus = v[0];
    if (!cpus && topo)
        cpus = v[2] * v[3] * v[4];   /* at most 2^48: no overflow */
    if (cpus < 1)
        return config_error(c, -EINVAL, "-smp %s: a guest needs at least one CPU", arg);
    if (cpus > MACHINE_MAX_CPUS)
        return config_error(c, -EINVAL, "-smp %s: at most %d CPUs", arg, MACHINE_MAX_CPUS);
    c->machine.ncpus = (int)cpus;
    return 0;
}

static int opt_string(struct config *c, const char *opt, const char *arg)
{
    struct machine_config *mc = &c->machine;
    const char **dst = !strcmp(opt, "kernel") ? &mc->kernel : !strcmp(opt, "initrd") ? &mc->initrd
                     : !strcmp(opt, "append") ? &mc->cmdline : &mc->bios;
    *dst = arg;
    return 0;
}

/* -name NAME or -name guest=NAME[,process=PNAME][,debug-threads=on|off] */
static int opt_name(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct kvlist kv;
    if (keyval_parse(arg, "guest", &kv))
        return config_error(c, -EINVAL, "-name %s: not a name (NAME or guest=NAME,process=PNAME)", arg);
    const char *guest = keyval_get(&kv, "guest"), *proc = keyval_get(&kv, "process");
    const char *dbg = keyval_get(&kv, "debug-threads"), *bad = keyval_unused(&kv);
    int ret = 0;
    if (bad)
        ret = config_error(c, -EINVAL, "-name %s: unknown parameter '%s' (guest, process, debug-threads)", arg, bad);
    else if (dbg && strcmp(dbg, "on") && strcmp(dbg, "off"))
        ret = config_error(c, -EINVAL, "-name %s: debug-threads takes on or off", arg);
    else if (proc && !*proc)
        ret = config_error(c, -EINVAL, "-name %s: an empty process name", arg);
    if (!ret && guest) {
        free(c->name);
        if (!(c->name = strdup(guest)))
            ret = config_error(c, -ENOMEM, "out of memory");
        c->machine.name = c->name;
    }
    if (!ret && proc)
        snprintf(c->process_name, sizeof(c->process_name), "%s", proc);   /* the kernel keeps 15 */
    keyval_free(&kv);
    return ret;
}

static int config_add_monitor(struct config *c, const char *opt, const char *arg, bool control, bool pretty,
                              const char *chardev)
{
    if (c->nmonitors == CONFIG_MAX_MONITORS)
        return config_error(c, -E2BIG, "-%s %s: at most %d monitors", opt, arg, CONFIG_MAX_MONITORS);
    struct config_monitor *cm = &c->monitors[c->nmonitors];
    *cm = (struct config_monitor){ .control = control, .pretty = pretty, .chardev = chardev };
    if (!chardev) {
        char why[200];
        if (monitor_parse_addr(arg, false, &cm->addr, why, sizeof(why)))
            return config_error(c, -EINVAL, "-%s %s: %s", opt, arg, why);
    }
    c->nmonitors++;
    return 0;
}

/* -qmp ADDR, -qmp-pretty ADDR, -monitor ADDR: ADDR is stdio, unix:PATH,... or tcp:HOST:PORT,...;
 * "none" (QEMU's way to say no default monitor) adds nothing. */
static int opt_monitor(struct config *c, const char *opt, const char *arg)
{
    c->monitor_given = true;
    if (!strcmp(arg, "none") || !strcmp(arg, "null"))
        return 0;
    return config_add_monitor(c, opt, arg, strcmp(opt, "monitor") != 0, !strcmp(opt, "qmp-pretty"), NULL);
}

/* -mon chardev=ID[,mode=control|readline][,pretty=on|off] */
static int opt_mon(struct config *c, const char *opt, const char *arg)
{
    c->monitor_given = true;
    struct kvlist kv;
    if (keyval_parse(arg, "chardev", &kv))
        return config_error(c, -EINVAL, "-mon %s: not a monitor description (chardev=ID,mode=control)", arg);
    const char *id = keyval_get(&kv, "chardev"), *mode = keyval_get(&kv, "mode"), *pretty = keyval_get(&kv, "pretty");
    const char *bad = keyval_unused(&kv);
    int ret = 0;
    if (bad)
        ret = config_error(c, -EINVAL, "-mon %s: unknown parameter '%s' (chardev, mode, pretty)", arg, bad);
    else if (!id || !*id)
        ret = config_error(c, -EINVAL, "-mon %s: needs chardev=ID", arg);
    else if (mode && strcmp(mode, "control") && strcmp(mode, "readline"))
        ret = config_error(c, -EINVAL, "-mon %s: mode takes control or readline", arg);
    else if (pretty && strcmp(pretty, "on") && strcmp(pretty, "off"))
        ret = config_error(c, -EINVAL, "-mon %s: pretty takes on or off", arg);
    else
        ret = config_add_monitor(c, opt, arg, mode && !strcmp(mode, "control"), pretty && !strcmp(pretty, "on"),
                                 strstr(arg, "chardev=") ? strstr(arg, "chardev=") + 8 : arg);
    keyval_free(&kv);
    return ret;
}

static int opt_flag(struct config *c, const char *opt, const char *arg)
{
    (void)arg;
    if (!strcmp(opt, "S"))
        c->machine.start_paused = true;
    else
        c->daemonize = true;
    return 0;
}

static int opt_pidfile(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    if (!*arg)
        return config_error(c, -EINVAL, "-pidfile: an empty file name");
    c->pidfile = arg;
    return 0;
}

/* -incoming URI: the machine waits paused for a migration stream (vm/migration.h checks the
 * URI when it opens it). */
static int opt_incoming(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    if (!*arg)
        return config_error(c, -EINVAL, "-incoming: an empty URI (tcp:HOST:PORT, unix:PATH, file:PATH, exec:CMD, defer)");
    c->incoming = arg;
    return 0;
}

/* -loadvm NAME: the machine starts from the snapshot (vm/savevm.h looks it up). */
static int opt_loadvm(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    if (!*arg)
        return config_error(c, -EINVAL, "-loadvm: an empty snapshot name");
    c->loadvm = arg;
    return 0;
}

static int opt_serial(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    c->serial_mux = !strcmp(arg, "mon:stdio");
    c->machine.serial = c->serial_mux ? "stdio" : arg;
    c->serial_given = true;
    return 0;
}

static int opt_ignored(struct config *c, const char *opt, const char *arg)
{
    (void)opt, (void)arg;   /* -nographic: the serial console already is on stdio */
    c->serial_given = true;
    c->nographic = true;
    return 0;
}

static int opt_display(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    if (strcmp(arg, "none"))
        return config_error(c, -EINVAL, "-display %s: qkvm has no display (only -display none)", arg);
    return 0;
}

static int opt_accel(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    if (!strcmp(arg, "help")) {
        c->info = CONFIG_ACCEL_HELP;
        return 0;
    }
    if (c->accel_by_machine)
        return config_error(c, -EINVAL, "-accel %s: -accel and -machine accel= cannot go together", arg);
    struct kvlist kv;
    if (keyval_parse(arg, "accel", &kv))
        return config_error(c, -EINVAL, "-accel %s: not an accelerator name", arg);
    const char *names = keyval_get(&kv, "accel"), *jit = keyval_get(&kv, "jit"), *bad = keyval_unused(&kv);
    int ret = 0;
    if (!names)
        ret = config_error(c, -EINVAL, "-accel %s: no accelerator name", arg);
    else if (jit && strcmp(jit, "on") && strcmp(jit, "off"))
        ret = config_error(c, -EINVAL, "-accel %s: jit takes on or off", arg);
    else if (bad)
        ret = config_error(c, -EINVAL, "-accel %s: unknown option %s", arg, bad);
    else
        ret = config_add_accels(c, "-accel", arg, names);
    if (!ret && jit)
        c->machine.tcg_nojit = !strcmp(jit, "off");
    c->accel_by_option = true;
    keyval_free(&kv);
    return ret;
}

static int opt_enable_kvm(struct config *c, const char *opt, const char *arg)
{
    (void)arg;
    if (c->accel_by_machine)
        return config_error(c, -EINVAL, "-%s: -accel and -machine accel= cannot go together", opt);
    c->accel_by_option = true;
    return config_add_accels(c, "-enable-kvm", "", "kvm");
}

/* -perfmap (QEMU 8.1's name): tcg writes /tmp/perf-PID.map, one line per translated block, so
 * perf report names translated code instead of showing bare addresses in memfd:qkvm-jit. */
static int opt_perfmap(struct config *c, const char *opt, const char *arg)
{
    (void)opt, (void)arg;
    c->machine.tcg_perfmap = true;
    return 0;
}

static int opt_no_reboot(struct config *c, const char *opt, const char *arg)
{
    (void)opt, (void)arg;
    c->machine.no_reboot = true;
    return 0;
}

/* -machine [type=]TYPE[,accel=A[:B]]: qkvm builds one machine, a PC, whatever the type says. */
static int opt_machine(struct config *c, const char *opt, const char *arg)
{
    struct kvlist kv;
    if (keyval_parse(arg, "type", &kv))
        return config_error(c, -EINVAL, "-%s %s: not a machine description (TYPE[,accel=NAME])", opt, arg);
    const char *type = keyval_get(&kv, "type"), *accel = keyval_get(&kv, "accel");
    /* kvm-unit-tests' -machine pit=off / vmport=: the PIT stays, qkvm has no VMware port */
    const char *pit = keyval_get(&kv, "pit"), *vmport = keyval_get(&kv, "vmport"), *bad = keyval_unused(&kv);
    int ret = 0;
    const char *badval = NULL;
    if (pit && strcmp(pit, "on") && strcmp(pit, "off"))
        badval = "pit takes on or off";
    else if (vmport && strcmp(vmport, "off") && strcmp(vmport, "auto"))
        badval = "vmport takes off or auto (qkvm has no VMware backdoor port)";
    if (type) {
        c->want_pc = !strcmp(type, "pc");   /* the last -machine type wins, as in QEMU */
        c->machine_given = true;
    }
    if (type && !strcmp(type, "help"))
        c->info = CONFIG_MACHINE_HELP;
    else if (type && strcmp(type, "pc") && strcmp(type, "q35") && strcmp(type, "microvm") && strcmp(type, "none"))
        ret = config_error(c, -EINVAL, "-%s %s: unknown machine type '%s' (pc, q35, microvm)", opt, arg, type);
    else if (bad)
        ret = config_error(c, -EINVAL, "-%s %s: unknown machine property '%s' (type, accel, pit, vmport)", opt, arg, bad);
    else if (badval)
        ret = config_error(c, -EINVAL, "-%s %s: %s", opt, arg, badval);
    else if (accel && c->accel_by_option)
        ret = config_error(c, -EINVAL, "-%s %s: -accel and -machine accel= cannot go together", opt, arg);
    else if (accel) {
        /* a later -machine accel= replaces an earlier one, as QEMU's last property wins */
        c->naccels = 0;
        c->accel_by_machine = true;
        ret = config_add_accels(c, opt[0] == 'M' ? "-M" : "-machine", arg, accel);
    }
    keyval_free(&kv);
    return ret;
}

static int opt_cpu(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    if (!strcmp(arg, "help"))
        c->info = CONFIG_CPU_HELP;
    else if (!*arg || *arg == ',')
        return config_error(c, -EINVAL, "-cpu %s: needs a model (-cpu help lists them)", arg);
    else
        c->machine.cpu = arg;   /* the accelerator checks it against what it offers (vm/cpu_model.h) */
    return 0;
}

/* A disk whose kind depends on the machine, known once every option is read: a virtio-blk
 * device for now, which config_resolve_legacy_disks may turn into an ide-hd. */
static int config_add_legacy_disk(struct config *c, const char *spec, bool ide_asked)
{
    int ret = config_add_device(c, "virtio-blk-pci", "drive", spec, NULL);
    if (!ret) {
        c->legacy_disks[c->nlegacy_disks].dev = c->machine.ndevices - 1;
        c->legacy_disks[c->nlegacy_disks++].ide_asked = ide_asked;
    }
    return ret;
}

/* As QEMU: without -M, a disk and no -kernel (or -bios) make a PC that boots the disk through
 * its firmware; on that PC the disks of -hda, a bare image and -drive if=ide are IDE disks. */
static int config_resolve_legacy_disks(struct config *c)
{
    struct machine_config *mc = &c->machine;
    if (!c->machine_given && !mc->kernel && !mc->bios && c->nlegacy_disks)
        c->want_pc = true;
    bool pc = c->want_pc && !mc->kernel;
    mc->type = pc ? MACHINE_PC : MACHINE_DIRECT;   /* the one place that decides the board */
    for (int i = 0; i < c->nlegacy_disks; i++) {
        struct kvlist *l = &mc->devices[c->legacy_disks[i].dev];
        if (!pc) {
            if (c->legacy_disks[i].ide_asked)
                return config_error(c, -EINVAL, "-drive %s: if=ide: IDE disks come with the PC machine (-M pc without -kernel); here disks are virtio (if=virtio)",
                                    kv_peek(l, "drive"));
            continue;
        }
        for (int k = 0; k < l->n; k++)
            if (!strcmp(l->items[k].key, "driver")) {
                char *v = strdup("ide-hd");
                if (!v)
                    return config_error(c, -ENOMEM, "out of memory");
                free(l->items[k].val);
                l->items[k].val = v;
            }
    }
    return 0;
}

static int opt_drive(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct kvlist kv;
    if (keyval_parse(arg, NULL, &kv))
        return config_error(c, -EINVAL, "-drive %s: not a drive description (file=PATH,format=...)", arg);
    const char *itf = kv_peek(&kv, "if");
    int ret;
    if (itf && !strcmp(itf, "none"))
        ret = config_add_backend(c, "drive", arg, NULL);
    else if (!itf || !strcmp(itf, "virtio"))
        ret = config_add_device(c, "virtio-blk-pci", "drive", arg, NULL);
    else if (!strcmp(itf, "ide"))
        ret = config_add_legacy_disk(c, arg, true);
    else
        ret = config_error(c, -EINVAL, "-drive %s: if=%s: qkvm's disks are ide (on the PC machine) or virtio (if=virtio, or if=none with -device virtio-blk-pci)",
                           arg, itf);
    keyval_free(&kv);
    return ret;
}

/* -hda..-hdd FILE and a bare FILE: IDE disks 0-3 on the PC machine (as QEMU makes them), virtio
 * disks on the direct-boot one. */
static int opt_disk_image(struct config *c, const char *opt, const char *file)
{
    if (!*file)
        return config_error(c, -EINVAL, "-%s: an empty file name", opt);
    char *e = escape_commas(file);
    size_t len = e ? strlen(e) + 32 : 0;
    char *spec = e ? malloc(len) : NULL;
    int ret;
    if (!spec) {
        ret = config_error(c, -ENOMEM, "out of memory");
    } else {
        if (!strcmp(opt, "cdrom"))   /* QEMU's place for it: the secondary master */
            snprintf(spec, len, "file=%s,index=2,media=cdrom", e);
        else
            snprintf(spec, len, "file=%s,index=%d", e, opt[2] - 'a');
        ret = config_add_legacy_disk(c, spec, false);
    }
    free(e);
    free(spec);
    return ret;
}

static int opt_boot(struct config *c, const char *opt, const char *arg)
{
    char why[200];
    if (bootdev_parse(arg, &c->machine, why, sizeof(why)))
        return config_error(c, -EINVAL, "-%s %s: %s", opt, arg, why);
    return 0;
}

static int opt_netdev(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct kvlist kv;
    if (keyval_parse(arg, "type", &kv))
        return config_error(c, -EINVAL, "-netdev %s: not a network back-end description", arg);
    const char *type = kv_peek(&kv, "type");
    int ret = 0;
    if (!type)
        ret = config_error(c, -EINVAL, "-netdev %s: no back-end type (qkvm has tap)", arg);
    else if (strcmp(type, "tap"))
        ret = config_error(c, -EINVAL, "-netdev %s: qkvm has the tap back-end only", arg);
    keyval_free(&kv);
    return ret ? ret : config_add_backend(c, "netdev", arg, "type");
}

/* -nic TYPE,...: a back-end and its card in one; model= and mac= go to the card. */
static int opt_nic(struct config *c, const char *opt, const char *arg)
{
    struct kvlist kv;
    if (keyval_parse(arg, "type", &kv))
        return config_error(c, -EINVAL, "-%s %s: not a network description", opt, arg);
    const char *type = keyval_get(&kv, "type"), *model = keyval_get(&kv, "model"), *mac = keyval_get(&kv, "mac");
    char *spec = NULL, *extra = NULL;
    int ret = 0;
    if (!type) {
        ret = config_error(c, -EINVAL, "-%s %s: no network type (tap or none)", opt, arg);
        goto out;
    }
    if (!strcmp(type, "none"))
        goto out;
    if (strcmp(type, "tap")) {
        ret = config_error(c, -EINVAL, "-%s %s: qkvm has the tap back-end only (tap or none)", opt, arg);
        goto out;
    }
    if (model && strcmp(model, "virtio-net-pci") && strcmp(model, "virtio")) {
        ret = config_error(c, -EINVAL, "-%s %s: model=%s: qkvm's network card is virtio-net-pci", opt, arg, model);
        goto out;
    }
    /* the back-end's own options, in the order given; each value at worst doubles in length */
    size_t len = 16 + (mac ? 2 * strlen(mac) : 0);
    for (int i = 0; i < kv.n; i++)
        len += strlen(kv.items[i].key) + 2 * strlen(kv.items[i].val) + 2;
    spec = malloc(len);
    extra = malloc(len);
    if (!spec || !extra) {
        ret = config_error(c, -ENOMEM, "out of memory");
        goto out;
    }
    spec[0] = extra[0] = 0;
    for (int i = 0; i < kv.n && !ret; i++) {
        if (!strcmp(kv.items[i].key, "model") || !strcmp(kv.items[i].key, "mac"))
            continue;
        char *v = escape_commas(kv.items[i].val);
        if (!v) {
            ret = config_error(c, -ENOMEM, "out of memory");
            break;
        }
        size_t n = strlen(spec);
        snprintf(spec + n, len - n, "%s%s=%s", n ? "," : "", kv.items[i].key, v);
        free(v);
    }
    if (!ret && mac) {
        char *v = escape_commas(mac);
        if (!v)
            ret = config_error(c, -ENOMEM, "out of memory");
        else
            snprintf(extra, len, "mac=%s", v);
        free(v);
    }
    if (!ret)
        ret = config_add_device(c, "virtio-net-pci", "netdev", spec, extra);
out:
    free(spec);
    free(extra);
    keyval_free(&kv);
    return ret;
}

static int opt_chardev(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct kvlist kv;
    if (keyval_parse(arg, "backend", &kv))
        return config_error(c, -EINVAL, "-chardev %s: not a character device description", arg);
    const char *be = kv_peek(&kv, "backend");
    int ret = 0;
    if (!be)
        ret = config_error(c, -EINVAL, "-chardev %s: no back-end (socket, stdio, file or null)", arg);
    else if (strcmp(be, "socket") && strcmp(be, "stdio") && strcmp(be, "file") && strcmp(be, "null"))
        ret = config_error(c, -EINVAL, "-chardev %s: backend '%s' is not socket, stdio, file or null", arg, be);
    keyval_free(&kv);
    return ret ? ret : config_add_backend(c, "chardev", arg, "backend");
}

/* -object memory-backend-file|memory-backend-memfd,id=M,size=S[,mem-path=P][,share=on]: the
 * memory an ivshmem-plain device (memdev=M) shares; hw/ivshmem.c opens it. */
static int opt_object(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct kvlist kv;
    if (keyval_parse(arg, "qom-type", &kv))
        return config_error(c, -EINVAL, "-object %s: not an object description", arg);
    const char *type = kv_peek(&kv, "qom-type"), *size = kv_peek(&kv, "size");
    uint64_t sz;
    int ret = 0;
    if (!type || (strcmp(type, "memory-backend-file") && strcmp(type, "memory-backend-memfd")))
        ret = config_error(c, -EINVAL, "-object %s: qkvm has memory-backend-file and memory-backend-memfd only", arg);
    else if (!size || parse_size(size, 1, &sz) || sz == 0)
        ret = config_error(c, -EINVAL, "-object %s: needs size= (a memory size)", arg);
    else if (!strcmp(type, "memory-backend-file") && !kv_peek(&kv, "mem-path"))
        ret = config_error(c, -EINVAL, "-object %s: memory-backend-file needs mem-path=", arg);
    else if (!kv_peek(&kv, "id") || !*kv_peek(&kv, "id"))
        ret = config_error(c, -EINVAL, "-object %s: needs id=", arg);
    keyval_free(&kv);
    return ret ? ret : config_add_backend(c, "memdev", arg, "qom-type");
}

static int opt_device(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    struct machine_config *mc = &c->machine;
    if (!strcmp(arg, "help") || !strcmp(arg, "?")) {
        c->info = CONFIG_DEVICE_HELP;
        return 0;
    }
    if (mc->ndevices == MACHINE_MAX_DEVICES)
        return config_error(c, -E2BIG, "-device: at most %d devices", MACHINE_MAX_DEVICES);
    struct kvlist *l = &mc->devices[mc->ndevices];
    if (keyval_parse(arg, "driver", l))
        return config_error(c, -EINVAL, "-device %s: not a device description (DRIVER,prop=value,...)", arg);
    mc->ndevices++;
    const char *drv = kv_peek(l, "driver");
    if (!drv || !*drv)
        return config_error(c, -EINVAL, "-device %s: no driver name (DRIVER,prop=value,...)", arg);
    return 0;
}

static int opt_smbios(struct config *c, const char *opt, const char *arg)
{
    if (!c->machine.smbios)
        smbios_config_init(&c->smbios);
    c->machine.smbios = &c->smbios;
    char why[160];
    if (!strcmp(opt, "uuid")) {
        if (smbios_parse_uuid(arg, c->smbios.uuid))
            return config_error(c, -EINVAL, "-uuid %s: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", arg);
    } else if (smbios_parse_option(&c->smbios, arg, why, sizeof(why))) {
        return config_error(c, -EINVAL, "-smbios %s: %s", arg, why);
    }
    return 0;
}

static int opt_debug(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    if (!strcmp(arg, "help")) {
        c->info = CONFIG_DEBUG_HELP;
        return 0;
    }
    if (log_parse_mask(arg, &c->log_mask))
        return config_error(c, -EINVAL, "-d %s: unknown item (qkvm -d help lists them)", arg);
    return 0;
}

/* -sandbox, -runas, -chroot, -run-with: checked here (users and directories exist), applied by
 * qkvm once the machine's files are open. */
static int opt_sandbox(struct config *c, const char *opt, const char *arg)
{
    char why[200];
    int ret;
    if (!strcmp(opt, "sandbox"))
        ret = sandbox_parse_option(&c->sandbox, arg, why, sizeof(why));
    else if (!strcmp(opt, "runas"))
        ret = sandbox_set_runas(&c->sandbox, arg, why, sizeof(why));
    else if (!strcmp(opt, "chroot"))
        ret = sandbox_set_chroot(&c->sandbox, arg, why, sizeof(why));
    else
        ret = sandbox_parse_run_with(&c->sandbox, arg, why, sizeof(why));
    if (ret)
        return config_error(c, -EINVAL, "-%s %s: %s", opt, arg, why);
    return 0;
}

/* -nodefaults: qkvm makes no default devices but COM1, which then goes nowhere unless -serial
 * says where, as in QEMU. */
static int opt_nodefaults(struct config *c, const char *opt, const char *arg)
{
    (void)opt, (void)arg;
    c->nodefaults = true;
    return 0;
}

/* -global DRIVER.PROP=VALUE: the few kvm-unit-tests passes. kvm-pit.lost_tick_policy: qkvm's
 * PIT (under tcg or KVM's in-kernel one) already drops ticks the guest missed. */
static int opt_global(struct config *c, const char *opt, const char *arg)
{
    (void)opt;
    const char *dot = strchr(arg, '.'), *eq = strchr(arg, '=');
    if (!dot || !eq || eq < dot || dot == arg || eq == dot + 1)
        return config_error(c, -EINVAL, "-global %s: not DRIVER.PROPERTY=VALUE", arg);
    if (!strncmp(arg, "kvm-pit.lost_tick_policy=", 25)) {
        const char *v = eq + 1;
        if (strcmp(v, "discard") && strcmp(v, "delay") && strcmp(v, "slew"))
            return config_error(c, -EINVAL, "-global %s: lost_tick_policy takes discard, delay or slew", arg);
        return 0;
    }
    /* QEMU's migration object's property: the capability, set before -incoming reads a file */
    if (!strncmp(arg, "migration.mapped-ram=", 21)) {
        bool on;
        if (parse_bool(eq + 1, &on))
            return config_error(c, -EINVAL, "-global %s: mapped-ram takes on or off", arg);
        c->mig_mapped_ram = on;
        return 0;
    }
    return config_error(c, -EINVAL, "-global %s: qkvm has no such property (it takes kvm-pit.lost_tick_policy,"
                        " migration.mapped-ram)", arg);
}

static const struct config_option {
    const char *name;
    bool takes_arg;
    int (*parse)(struct config *c, const char *opt, const char *arg);
} options[] = {
    { "h", false, opt_help },           { "help", false, opt_help },
    { "version", false, opt_version },  { "m", true, opt_ram },
    { "smp", true, opt_smp },           { "kernel", true, opt_string },
    { "initrd", true, opt_string },     { "append", true, opt_string },
    { "bios", true, opt_string },       { "name", true, opt_name },
    { "serial", true, opt_serial },     { "nographic", false, opt_ignored },
    { "display", true, opt_display },   { "accel", true, opt_accel },
    { "enable-kvm", false, opt_enable_kvm }, { "no-reboot", false, opt_no_reboot },
    { "machine", true, opt_machine },   { "M", true, opt_machine },
    { "cpu", true, opt_cpu },           { "drive", true, opt_drive },
    { "hda", true, opt_disk_image },    { "hdb", true, opt_disk_image },
    { "hdc", true, opt_disk_image },    { "hdd", true, opt_disk_image },
    { "netdev", true, opt_netdev },     { "nic", true, opt_nic },
    { "net", true, opt_nic },           { "chardev", true, opt_chardev },
    { "device", true, opt_device },     { "uuid", true, opt_smbios },
    { "smbios", true, opt_smbios },     { "d", true, opt_debug },
    { "sandbox", true, opt_sandbox },   { "runas", true, opt_sandbox },
    { "chroot", true, opt_sandbox },    { "run-with", true, opt_sandbox },
    { "qmp", true, opt_monitor },       { "qmp-pretty", true, opt_monitor },
    { "monitor", true, opt_monitor },   { "mon", true, opt_mon },
    { "S", false, opt_flag },           { "daemonize", false, opt_flag },
    { "pidfile", true, opt_pidfile },   { "object", true, opt_object },
    { "cdrom", true, opt_disk_image },  { "boot", true, opt_boot },
    { "nodefaults", false, opt_nodefaults }, { "global", true, opt_global },
    { "incoming", true, opt_incoming }, { "perfmap", false, opt_perfmap },
    { "loadvm", true, opt_loadvm },
};

/* -mon chardev=ID: the -chardev with that id, which a monitor then owns. */
static int config_resolve_monitors(struct config *c)
{
    int nstdio = 0;
    for (int i = 0; i < c->nmonitors; i++) {
        struct config_monitor *cm = &c->monitors[i];
        if (cm->chardev) {
            size_t idlen = strcspn(cm->chardev, ",");
            struct config_backend *b = NULL;
            for (int k = 0; k < c->nbackends && !b; k++)
                if (!strcmp(c->backends[k].kind, "chardev") && strlen(c->backends[k].id) == idlen &&
                    !strncmp(c->backends[k].id, cm->chardev, idlen))
                    b = &c->backends[k];
            if (!b)
                return config_error(c, -ENOENT, "-mon chardev=%.*s: no -chardev with that id", (int)idlen, cm->chardev);
            if (b->used)
                return config_error(c, -EINVAL, "-mon chardev=%s: the chardev is used by something else already", b->id);
            char why[200];
            if (monitor_parse_addr(b->spec, true, &cm->addr, why, sizeof(why)))
                return config_error(c, -EINVAL, "-chardev %s: %s", b->spec, why);
            b->used = true;
            cm->chardev = NULL;
        }
        nstdio += cm->addr.kind == MONITOR_STDIO;
    }
    if (nstdio > 1)
        return config_error(c, -EINVAL, "stdio can serve one monitor only");
    bool serial_stdio = c->serial_given && !strcmp(c->machine.serial, "stdio");
    /* QEMU's default monitor under -nographic (no other monitor asked for), and -serial
     * mon:stdio: a human monitor multiplexed with the serial console, Ctrl-A c between them */
    if (!nstdio && serial_stdio && !c->daemonize && (c->serial_mux || (c->nographic && !c->monitor_given))) {
        if (c->nmonitors == CONFIG_MAX_MONITORS)
            return config_error(c, -E2BIG, "-serial mon:stdio: at most %d monitors", CONFIG_MAX_MONITORS);
        struct config_monitor *cm = &c->monitors[c->nmonitors++];
        *cm = (struct config_monitor){ .control = false };
        char why[200];
        if (monitor_parse_addr("stdio", false, &cm->addr, why, sizeof(why)))
            return config_error(c, -EINVAL, "-serial mon:stdio: %s", why);
        cm->addr.mux = true;
        nstdio = 1;
    } else if (nstdio && serial_stdio) {
        /* -monitor stdio with -serial stdio or -nographic: the same mux as -serial mon:stdio */
        for (int i = 0; i < c->nmonitors; i++) {
            if (c->monitors[i].addr.kind != MONITOR_STDIO)
                continue;
            if (c->monitors[i].control)
                return config_error(c, -EINVAL, "a QMP monitor on stdio and -serial stdio (or -nographic) cannot share the terminal");
            c->monitors[i].addr.mux = true;
        }
    } else if (nstdio && !c->serial_given) {
        c->machine.serial = "none";   /* QEMU sends it to a display then; qkvm has none */
    }
    if (c->daemonize) {
        if (nstdio || (c->serial_given && !strcmp(c->machine.serial, "stdio")))
            return config_error(c, -EINVAL, "-daemonize: stdio is closed in the background (no -nographic, -serial stdio or monitor on stdio)");
        if (!c->serial_given)
            c->machine.serial = "none";
    }
    return 0;
}

/* The IDE place (bus * 2 + unit) an ide-hd/ide-cd asks for, or -1 when it takes the first
 * free one. */
static int config_ide_place(const struct kvlist *l)
{
    const char *bus = kv_peek(l, "bus"), *unit = kv_peek(l, "unit"), *spec = kv_peek(l, "drive");
    if (bus && (!strcmp(bus, "ide.0") || !strcmp(bus, "ide.1")))
        return (bus[4] - '0') * 2 + (unit && !strcmp(unit, "1"));
    struct kvlist kv;
    if (!spec || keyval_parse(spec, NULL, &kv))
        return -1;
    const char *index = kv_peek(&kv, "index");
    int place = index && index[0] >= '0' && index[0] <= '3' && !index[1] ? index[0] - '0' : -1;
    keyval_free(&kv);
    return place;
}

/* QEMU's -M pc has a CD-ROM drive without a medium at the secondary master (ide1-cd0) unless
 * -nodefaults or a drive takes that place: -cdrom, -hdc, index=2, bus=ide.1, or a third IDE
 * drive without a place (which QEMU gives the first free one). It is made before the other
 * IDE devices, as QEMU makes its -drive devices before -device ones. */
static int config_add_default_cdrom(struct config *c)
{
    struct machine_config *mc = &c->machine;
    if (mc->type != MACHINE_PC || c->nodefaults)
        return 0;
    bool used[4] = { false };
    int unplaced = 0;
    for (int d = 0; d < mc->ndevices; d++) {
        const char *drv = kv_peek(&mc->devices[d], "driver");
        if (!drv || (strcmp(drv, "ide-hd") && strcmp(drv, "ide-cd")))
            continue;
        int place = config_ide_place(&mc->devices[d]);
        if (place >= 0)
            used[place] = true;
        else
            unplaced++;
    }
    for (int i = 0; i < 4 && unplaced; i++)
        if (!used[i])
            used[i] = true, unplaced--;
    if (used[2])
        return 0;
    int ret = config_add_device(c, "ide-cd", "drive", "media=cdrom,index=2", NULL);
    if (ret)
        return ret;
    struct kvlist cd = mc->devices[mc->ndevices - 1];
    memmove(&mc->devices[1], &mc->devices[0], (size_t)(mc->ndevices - 1) * sizeof(mc->devices[0]));
    mc->devices[0] = cd;
    return 0;
}

/* Puts each back-end's definition where a -device names it. */
static int config_resolve_backends(struct config *c)
{
    struct machine_config *mc = &c->machine;
    for (int d = 0; d < mc->ndevices; d++) {
        struct kvlist *l = &mc->devices[d];
        const char *drv = kv_peek(l, "driver");
        for (int k = 0; k < l->n; k++) {
            const char *key = l->items[k].key;
            if (strcmp(key, "drive") && strcmp(key, "netdev") && strcmp(key, "chardev") &&
                strcmp(key, "memdev"))
                continue;
            if (strchr(l->items[k].val, '='))
                continue;   /* a definition already (from -drive if=virtio, -hda, -nic) */
            struct config_backend *b = NULL;
            for (int i = 0; i < c->nbackends && !b; i++)
                if (!strcmp(c->backends[i].kind, key) && !strcmp(c->backends[i].id, l->items[k].val))
                    b = &c->backends[i];
            if (!b)
                return config_error(c, -ENOENT, "-device %s: no -%s with id=%s", drv,
                                    strcmp(key, "memdev") ? key : "object", l->items[k].val);
            if (b->used)
                return config_error(c, -EINVAL, "-device %s: -%s id=%s is used by another device already", drv, key, b->id);
            char *v = strdup(b->spec);
            if (!v)
                return config_error(c, -ENOMEM, "out of memory");
            b->used = true;
            free(l->items[k].val);
            l->items[k].val = v;
        }
    }
    return 0;
}

int config_parse_args(struct config *c, int argc, char *const argv[])
{
    memset(c, 0, sizeof(*c));
    c->machine.ram_size = 256ull << 20;
    c->machine.ncpus = 1;
    c->machine.serial = "stdio";
    sandbox_config_init(&c->sandbox);
    for (int i = 1; i < argc && c->info == CONFIG_RUN; i++) {
        const char *a = argv[i];
        int ret;
        if (a[0] != '-' || !a[1]) {
            ret = opt_disk_image(c, "hda", a);   /* as QEMU: a bare argument is the first disk */
            if (ret)
                return ret;
            continue;
        }
        const char *name = a + 1 + (a[1] == '-');
        const struct config_option *o = NULL;
        for (size_t k = 0; k < sizeof(options) / sizeof(options[0]) && !o; k++)
            if (!strcmp(name, options[k].name))
                o = &options[k];
        if (!o)
            return config_error(c, -EINVAL, "-%s: unknown option (qkvm -h lists them)", name);
        const char *arg = NULL;
        if (o->takes_arg) {
            if (i + 1 >= argc)
                return config_error(c, -EINVAL, "-%s needs an argument", name);
            arg = argv[++i];
        }
        if ((ret = o->parse(c, name, arg)))
            return ret;
    }
    if (c->info != CONFIG_RUN)
        return 0;
    if (c->nodefaults && !c->serial_given)
        c->machine.serial = "none";
    int ret = config_resolve_legacy_disks(c);
    if (!ret)
        ret = config_resolve_monitors(c);
    if (!ret)
        ret = config_resolve_backends(c);
    return ret ? ret : config_add_default_cdrom(c);
}

void config_free(struct config *c)
{
    sandbox_config_free(&c->sandbox);
    for (int i = 0; i < c->machine.ndevices; i++)
        keyval_free(&c->machine.devices[i]);
    c->machine.ndevices = 0;
    for (int i = 0; i < c->nlists; i++)
        free(c->accel_lists[i]);
    c->nlists = c->naccels = 0;
    for (int i = 0; i < c->nbackends; i++) {
        free(c->backends[i].id);
        free(c->backends[i].spec);
    }
    c->nbackends = 0;
    free(c->name);
    c->name = NULL;
    c->machine.name = NULL;
}
