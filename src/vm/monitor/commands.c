/* The monitor's commands: one table, each entry a name, typed arguments and a handler that
 * writes the return value. QMP runs them by name; HMP formats what they return. Argument names
 * and reply shapes are QEMU 7.2's (the qapi schema files), so clients written for QEMU work. */
#include "vm/monitor/monitor.h"

#include "accel/accel.h"
#include "block/block.h"
#include "hw/disk.h"
#include "hw/ide.h"
#include "hw/pci.h"
#include "util/parse.h"
#include "vm/control.h"
#include "vm/machine.h"
#include "vm/migration.h"
#include "vm/smbios.h"
#include "vm/vcpu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int monitor_fail(struct monitor_error *e, const char *cls, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->desc, sizeof(e->desc), fmt, ap);
    va_end(ap);
    e->cls = cls;
    return ret;
}

const char *const monitor_events[] = { "SHUTDOWN", "POWERDOWN", "RESET", "STOP", "RESUME",
                                       "VSERPORT_CHANGE", "DEVICE_TRAY_MOVED", "MIGRATION", "JOB_STATUS_CHANGE", NULL };

/* ---- queries ---- */

static int cmd_query_version(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                             struct monitor_error *e)
{
    (void)a, (void)e;
    json_object_begin(w, NULL);
    json_object_begin(w, "qemu");
    json_int(w, "micro", ctx->info->micro);
    json_int(w, "minor", ctx->info->minor);
    json_int(w, "major", ctx->info->major);
    json_object_end(w);
    json_string(w, "package", ctx->info->package);
    json_object_end(w);
    return 0;
}

static int cmd_query_commands(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                              struct monitor_error *e)
{
    (void)ctx, (void)a, (void)e;
    json_array_begin(w, NULL);
    for (const struct monitor_cmd *c = monitor_cmds; c->name; c++) {
        json_object_begin(w, NULL);
        json_string(w, "name", c->name);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

static int cmd_query_events(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                            struct monitor_error *e)
{
    (void)ctx, (void)a, (void)e;
    json_array_begin(w, NULL);
    for (const char *const *n = monitor_events; *n; n++) {
        json_object_begin(w, NULL);
        json_string(w, "name", *n);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

static int cmd_query_status(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                            struct monitor_error *e)
{
    (void)a, (void)e;
    const char *st = machine_run_state(ctx->m);
    json_object_begin(w, NULL);
    json_bool(w, "singlestep", false);
    json_bool(w, "running", !strcmp(st, "running"));
    json_string(w, "status", st);
    json_object_end(w);
    return 0;
}

static int cmd_query_name(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                          struct monitor_error *e)
{
    (void)a, (void)e;
    json_object_begin(w, NULL);
    if (ctx->m->cfg->name)
        json_string(w, "name", ctx->m->cfg->name);
    json_object_end(w);
    return 0;
}

static int cmd_query_uuid(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                          struct monitor_error *e)
{
    (void)a, (void)e;
    static const uint8_t zero[16];
    const uint8_t *u = ctx->m->cfg->smbios ? ctx->m->cfg->smbios->uuid : zero;
    char s[40];
    snprintf(s, sizeof(s), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    json_object_begin(w, NULL);
    json_string(w, "UUID", s);
    json_object_end(w);
    return 0;
}

static int cmd_query_kvm(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                         struct monitor_error *e)
{
    (void)a, (void)e;
    const char *why;
    json_object_begin(w, NULL);
    json_bool(w, "enabled", !strcmp(ctx->m->accel->name, "kvm"));
    json_bool(w, "present", accel_kvm.probe(&why) == 0);
    json_object_end(w);
    return 0;
}

static int cmd_query_cpus_fast(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                               struct monitor_error *e)
{
    (void)a, (void)e;
    struct machine *m = ctx->m;
    json_array_begin(w, NULL);
    for (int i = 0; i < m->ncpus; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/machine/unattached/device[%d]", i);
        json_object_begin(w, NULL);
        json_int(w, "thread-id", atomic_load(&m->vcpus[i].tid));
        json_object_begin(w, "props");
        json_int(w, "core-id", 0);
        json_int(w, "thread-id", 0);
        json_int(w, "socket-id", i);
        json_object_end(w);
        json_string(w, "qom-path", path);
        json_int(w, "cpu-index", i);
        json_string(w, "target", "x86_64");
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

/* The disks: each virtio-blk-pci line of the configuration, its drive= definition parsed. */
static void for_each_disk(struct machine *m, void (*fn)(void *opaque, int idx, struct kvlist *drive), void *opaque)
{
    int idx = 0;
    for (int i = 0; i < m->cfg->ndevices; i++) {
        const struct kvlist *d = &m->cfg->devices[i];
        const char *drv = NULL, *spec = NULL;
        for (int k = 0; k < d->n; k++) {
            if (!strcmp(d->items[k].key, "driver"))
                drv = d->items[k].val;
            else if (!strcmp(d->items[k].key, "drive"))
                spec = d->items[k].val;
        }
        if (!drv || strcmp(drv, "virtio-blk-pci") || !spec)
            continue;
        struct kvlist kv;
        if (keyval_parse(spec, NULL, &kv))
            continue;
        fn(opaque, idx++, &kv);
        keyval_free(&kv);
    }
}

static const char *kv_find(struct kvlist *kv, const char *key)
{
    for (int i = 0; i < kv->n; i++)
        if (!strcmp(kv->items[i].key, key))
            return kv->items[i].val;
    return NULL;
}

static void disk_name(struct kvlist *kv, int idx, char *buf, size_t n)
{
    const char *id = kv_find(kv, "id");
    if (id)
        snprintf(buf, n, "%s", id);
    else
        snprintf(buf, n, "virtio%d", idx);
}

struct disk_names {
    char (*names)[64];
    int max;
};

static void name_disk(void *opaque, int idx, struct kvlist *kv)
{
    struct disk_names *dn = opaque;
    if (idx < dn->max)
        disk_name(kv, idx, dn->names[idx], sizeof(dn->names[idx]));
}

void monitor_disk_names(struct machine *m, char (*names)[64], int max)
{
    struct disk_names dn = { names, max };
    for (int i = 0; i < max; i++)
        snprintf(names[i], sizeof(names[i]), "virtio%d", i);
    for_each_disk(m, name_disk, &dn);
    for (int i = m->ndisks; i < max; i++)   /* the PC machine's IDE disks (hw/disk.h's numbering) */
        ide_disk_get(m, i - m->ndisks, NULL, names[i], sizeof(names[i]));
}

static void write_block(void *opaque, int idx, struct kvlist *kv)
{
    struct json_writer *w = opaque;
    char name[64], qdev[96];
    disk_name(kv, idx, name, sizeof(name));
    snprintf(qdev, sizeof(qdev), "/machine/peripheral-anon/device[%d]/virtio-backend", idx);
    const char *file = kv_find(kv, "file"), *fmt = kv_find(kv, "format"), *ro = kv_find(kv, "readonly");
    bool readonly = ro && (!strcmp(ro, "on") || !strcmp(ro, "true"));
    json_object_begin(w, NULL);
    json_string(w, "device", name);
    json_string(w, "qdev", qdev);
    json_bool(w, "locked", false);
    json_bool(w, "removable", false);
    json_object_begin(w, "inserted");
    json_bool(w, "ro", readonly);
    json_string(w, "drv", fmt ? fmt : "raw");
    json_bool(w, "encrypted", false);
    json_string(w, "file", file ? file : "");
    json_string(w, "node-name", name);
    json_int(w, "backing_file_depth", 0);
    json_object_end(w);
    json_string(w, "type", "unknown");
    json_object_end(w);
}

static int cmd_query_block(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                           struct monitor_error *e)
{
    (void)a, (void)e;
    json_array_begin(w, NULL);
    for_each_disk(ctx->m, write_block, w);
    monitor_write_cd_blocks(ctx->m, w);
    json_array_end(w);
    return 0;
}

static void empty_return(struct json_writer *w)
{
    json_object_begin(w, NULL);
    json_object_end(w);
}

struct disk_walk {
    struct json_writer *w;
    struct machine *m;
    const char *want;           /* block_resize: the device or node name looked for */
    int found;                  /* its index, or -1 */
};

static void write_blockstats(void *opaque, int idx, struct kvlist *kv)
{
    struct disk_walk *dw = opaque;
    struct json_writer *w = dw->w;
    char name[64], qdev[96];
    disk_name(kv, idx, name, sizeof(name));
    snprintf(qdev, sizeof(qdev), "/machine/peripheral-anon/device[%d]/virtio-backend", idx);
    struct disk_stats st = { 0 };
    disk_get_stats(dw->m, idx, &st);   /* kept by virtio-blk as requests complete */
    const struct { const char *name; uint64_t v; } counters[] = {
        { "rd_bytes", st.rd_bytes }, { "wr_bytes", st.wr_bytes }, { "rd_operations", st.rd_ops },
        { "wr_operations", st.wr_ops }, { "flush_operations", st.flush_ops }, { "rd_total_time_ns", st.rd_ns },
        { "wr_total_time_ns", st.wr_ns }, { "flush_total_time_ns", st.flush_ns }, { "rd_merged", 0 },
        { "wr_merged", 0 }, { "failed_rd_operations", st.failed_rd }, { "failed_wr_operations", st.failed_wr },
        { "invalid_rd_operations", st.invalid_rd }, { "invalid_wr_operations", st.invalid_wr },
    };
    json_object_begin(w, NULL);
    json_string(w, "device", name);
    json_string(w, "qdev", qdev);
    json_string(w, "node-name", name);
    json_object_begin(w, "stats");
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        json_int(w, counters[i].name, (int64_t)counters[i].v);
    json_bool(w, "account_invalid", true);
    json_bool(w, "account_failed", true);
    json_array_begin(w, "timed_stats");
    json_array_end(w);
    json_object_end(w);
    json_object_end(w);
}

static int cmd_query_blockstats(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                                struct monitor_error *e)
{
    (void)e;
    const struct json_value *q = json_get(a, "query-nodes");
    struct disk_walk dw = { w, ctx->m, NULL, -1 };
    json_array_begin(w, NULL);
    if (!q || !q->b)
        for_each_disk(ctx->m, write_blockstats, &dw);
    json_array_end(w);
    return 0;
}

static void find_disk(void *opaque, int idx, struct kvlist *kv)
{
    struct disk_walk *dw = opaque;
    char name[64];
    disk_name(kv, idx, name, sizeof(name));
    if (dw->found < 0 && !strcmp(name, dw->want))
        dw->found = idx;
}

/* The device name and the node name are the same in qkvm (one node per drive). */
static int cmd_block_resize(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                            struct monitor_error *e)
{
    const struct json_value *dev = json_get(a, "device"), *node = json_get(a, "node-name");
    const struct json_value *size = json_get(a, "size");
    if (size->i < 0)
        return monitor_fail(e, "GenericError", -EINVAL, "Parameter 'size' expects a >0 size");
    struct disk_walk dw = { NULL, ctx->m, dev ? dev->s : node ? node->s : "", -1 };
    for_each_disk(ctx->m, find_disk, &dw);
    if (dw.found < 0 && dev && node) {
        dw.want = node->s;
        for_each_disk(ctx->m, find_disk, &dw);
    }
    if (dw.found < 0)
        return monitor_fail(e, "GenericError", -ENOENT, "Cannot find device=\"%s\" nor node-name=\"%s\"",
                            dev ? dev->s : "", node ? node->s : "");
    char why[200];
    int ret = disk_resize(ctx->m, dw.found, (uint64_t)size->i, why, sizeof(why));
    if (ret)
        return monitor_fail(e, "GenericError", ret, "%s", why);
    empty_return(w);
    return 0;
}

static uint16_t cfg16(const struct pci_device *d, unsigned off)
{
    return (uint16_t)(d->config[off] | d->config[off + 1] << 8);
}

static int cmd_query_pci(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                         struct monitor_error *e)
{
    (void)a, (void)e;
    struct pci_host *h = pci_host_of(ctx->m);
    json_array_begin(w, NULL);
    json_object_begin(w, NULL);
    json_int(w, "bus", 0);
    json_array_begin(w, "devices");
    for (int i = 0; h && i < PCI_SLOTS * 8; i++) {
        int slot = i / 8, fn = i % 8;
        struct pci_device *d = pci_host_function(h, slot, fn);
        if (!d)
            continue;
        json_object_begin(w, NULL);
        json_int(w, "bus", 0);
        json_int(w, "slot", slot);
        json_int(w, "function", fn);
        json_object_begin(w, "class_info");
        if (pci_class_name(cfg16(d, PCI_CLASS_DEVICE)))
            json_string(w, "desc", pci_class_name(cfg16(d, PCI_CLASS_DEVICE)));
        json_int(w, "class", cfg16(d, PCI_CLASS_DEVICE));
        json_object_end(w);
        json_object_begin(w, "id");
        json_int(w, "device", cfg16(d, PCI_DEVICE_ID));
        json_int(w, "vendor", cfg16(d, PCI_VENDOR_ID));
        json_int(w, "subsystem", cfg16(d, PCI_SUBSYSTEM_ID));
        json_int(w, "subsystem-vendor", cfg16(d, PCI_SUBSYSTEM_VENDOR_ID));

        json_object_end(w);
        if (d->config[PCI_INTERRUPT_PIN])
            json_int(w, "irq", d->config[PCI_INTERRUPT_LINE]);
        json_int(w, "irq_pin", d->config[PCI_INTERRUPT_PIN]);
        json_string(w, "qdev_id", "");
        json_array_begin(w, "regions");
        for (int b = 0; b < PCI_NUM_BARS; b++) {
            const struct pci_bar *bar = &d->bar[b];
            if (!bar->size)
                continue;
            json_object_begin(w, NULL);
            json_int(w, "bar", b);
            json_string(w, "type", bar->flags & PCI_BAR_IO ? "io" : "memory");
            json_int(w, "address", bar->mapped == PCI_BAR_UNMAPPED ? -1 : (int64_t)bar->mapped);
            json_int(w, "size", (int64_t)bar->size);
            if (!(bar->flags & PCI_BAR_IO)) {
                json_bool(w, "prefetch", bar->flags & PCI_BAR_PREFETCH);
                json_bool(w, "mem_type_64", bar->flags & PCI_BAR_MEM_64);
            }
            json_object_end(w);
        }
        json_array_end(w);
        json_object_end(w);
    }
    json_array_end(w);
    json_object_end(w);
    json_array_end(w);
    return 0;
}

struct chardev_list { struct json_writer *w; };

static void write_chardev(void *opaque, const char *label, const char *filename, bool open)
{
    struct json_writer *w = opaque;
    json_object_begin(w, NULL);
    json_bool(w, "frontend-open", open);
    json_string(w, "filename", filename);
    json_string(w, "label", label);
    json_object_end(w);
}

static int cmd_query_chardev(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                             struct monitor_error *e)
{
    (void)a, (void)e;
    json_array_begin(w, NULL);
    const char *serial = ctx->m->cfg->serial;
    if (serial && strcmp(serial, "none"))
        write_chardev(w, "serial0", !strncmp(serial, "file:", 5) ? serial : "stdio", true);
    monitor_set_for_each_chardev(ctx->set, write_chardev, w);
    json_array_end(w);
    return 0;
}

static int cmd_query_machines(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                              struct monitor_error *e)
{
    (void)ctx, (void)a, (void)e;
    json_array_begin(w, NULL);
    json_object_begin(w, NULL);
    json_string(w, "name", "pc");
    json_bool(w, "is-default", true);
    json_int(w, "cpu-max", MACHINE_MAX_CPUS);
    json_bool(w, "hotpluggable-cpus", false);
    json_bool(w, "numa-mem-supported", false);
    json_bool(w, "deprecated", false);
    json_string(w, "default-cpu-type", "max-x86_64-cpu");
    json_string(w, "default-ram-id", "pc.ram");
    json_object_end(w);
    json_array_end(w);
    return 0;
}

static int cmd_query_target(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                            struct monitor_error *e)
{
    (void)ctx, (void)a, (void)e;
    json_object_begin(w, NULL);
    json_string(w, "arch", "x86_64");
    json_object_end(w);
    return 0;
}

static const char *arg_type_name(enum monitor_arg_type t)
{
    static const char *const names[] = { "str", "int", "bool", "number", "any" };
    return names[t];
}

/* What qkvm implements, in SchemaInfo's shape: a command names its argument object type and
 * return type; object types list their members; builtins give their JSON type. Type names are
 * spelled out (QEMU numbers them; clients look commands up by name). */
static int cmd_query_qmp_schema(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                                struct monitor_error *e)
{
    (void)ctx, (void)a, (void)e;
    json_array_begin(w, NULL);
    for (const struct monitor_cmd *c = monitor_cmds; c->name; c++) {
        char argt[96];
        snprintf(argt, sizeof(argt), "q_obj_%s-arg", c->name);
        json_object_begin(w, NULL);
        json_string(w, "name", c->name);
        json_string(w, "meta-type", "command");
        json_string(w, "arg-type", argt);
        json_string(w, "ret-type", c->ret);
        json_bool(w, "allow-oob", false);
        json_object_end(w);
        json_object_begin(w, NULL);
        json_string(w, "name", argt);
        json_string(w, "meta-type", "object");
        json_array_begin(w, "members");
        for (int i = 0; i < MONITOR_MAX_ARGS && c->args[i].name; i++) {
            json_object_begin(w, NULL);
            json_string(w, "name", c->args[i].name);
            json_string(w, "type", arg_type_name(c->args[i].type));
            if (c->args[i].optional)
                json_null(w, "default");
            json_object_end(w);
        }
        json_array_end(w);
        json_object_end(w);
    }
    for (const char *const *ev = monitor_events; *ev; ev++) {
        json_object_begin(w, NULL);
        json_string(w, "name", *ev);
        json_string(w, "meta-type", "event");
        json_string(w, "arg-type", "any");
        json_object_end(w);
    }
    static const char *const builtins[][2] = {
        { "str", "string" }, { "int", "int" }, { "bool", "boolean" }, { "number", "number" },
        { "any", "value" }, { "null", "null" },
    };
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        json_object_begin(w, NULL);
        json_string(w, "name", builtins[i][0]);
        json_string(w, "meta-type", "builtin");
        json_string(w, "json-type", builtins[i][1]);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

/* ---- actions ---- */


static int cmd_stop(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                    struct monitor_error *e)
{
    (void)a;
    int ret = machine_pause(ctx->m);
    if (ret)
        return monitor_fail(e, "GenericError", ret, "cannot pause: %s", strerror(-ret));
    empty_return(w);
    return 0;
}

static int cmd_cont(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                    struct monitor_error *e)
{
    (void)a;
    /* waiting for an incoming migration: the guest starts once its state is in, as QEMU's */
    if (migration_incoming_autostart(ctx->m)) {
        empty_return(w);
        return 0;
    }
    /* after a migration (postmigrate) the images went to the destination: take them back
     * first, which fails while the destination holds them (QEMU's bdrv_activate_all) */
    const char *rs = migration_run_state(ctx->m);
    char why[BLOCK_ERR_MAX];
    int ret = rs && strcmp(rs, "postmigrate") ? 0 : disk_activate_all(ctx->m, why, sizeof(why));
    if (ret)
        return monitor_fail(e, "GenericError", ret, "%s", why);
    ret = machine_resume(ctx->m);
    if (ret)
        return monitor_fail(e, "GenericError", ret, "cannot resume: %s", strerror(-ret));
    empty_return(w);
    return 0;
}

static int cmd_system_reset(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                            struct monitor_error *e)
{
    (void)a, (void)e;
    machine_reset(ctx->m, "host-qmp-system-reset");
    empty_return(w);
    return 0;
}

static int cmd_system_powerdown(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                                struct monitor_error *e)
{
    (void)a;
    int ret = machine_powerdown(ctx->m);
    if (ret)
        return monitor_fail(e, "GenericError", ret, "this machine has no ACPI power button");
    empty_return(w);
    return 0;
}

static int cmd_quit(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                    struct monitor_error *e)
{
    (void)a, (void)e;
    machine_quit(ctx->m, "host-qmp-quit");
    empty_return(w);
    return 0;
}

static int cmd_human_monitor_command(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                                     struct monitor_error *e)
{
    const struct json_value *line = json_get(a, "command-line"), *cpu = json_get(a, "cpu-index");
    if (cpu && (cpu->i < 0 || cpu->i >= ctx->m->ncpus))
        return monitor_fail(e, "GenericError", -EINVAL, "Parameter 'cpu-index' expects a CPU index");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return monitor_fail(e, "GenericError", -ENOMEM, "out of memory");
    /* QEMU runs each command line in a fresh monitor whose CPU is cpu-index (else the first) */
    int cur = cpu ? (int)cpu->i : 0;
    struct monitor_ctx hctx = *ctx;
    hctx.cpu = &cur;
    hmp_run_line(&hctx, line->s, f);
    fclose(f);
    json_string(w, NULL, text ? text : "");
    free(text);
    return 0;
}

const struct monitor_cmd monitor_cmds[] = {
    { "qmp_capabilities", { { "enable", MONITOR_ARG_STR, true } }, "any", NULL },   /* qmp.c */
    { "query-version", { { 0 } }, "VersionInfo", cmd_query_version },
    { "query-commands", { { 0 } }, "[CommandInfo]", cmd_query_commands },
    { "query-events", { { 0 } }, "[EventInfo]", cmd_query_events },
    { "query-status", { { 0 } }, "StatusInfo", cmd_query_status },
    { "query-name", { { 0 } }, "NameInfo", cmd_query_name },
    { "query-uuid", { { 0 } }, "UuidInfo", cmd_query_uuid },
    { "query-kvm", { { 0 } }, "KvmInfo", cmd_query_kvm },
    { "query-cpus-fast", { { 0 } }, "[CpuInfoFast]", cmd_query_cpus_fast },
    { "query-block", { { 0 } }, "[BlockInfo]", cmd_query_block },
    { "query-blockstats", { { "query-nodes", MONITOR_ARG_BOOL, true } }, "[BlockStats]", cmd_query_blockstats },
    { "query-pci", { { 0 } }, "[PciInfo]", cmd_query_pci },
    { "query-chardev", { { 0 } }, "[ChardevInfo]", cmd_query_chardev },
    { "query-machines", { { 0 } }, "[MachineInfo]", cmd_query_machines },
    { "query-target", { { 0 } }, "TargetInfo", cmd_query_target },
    { "query-qmp-schema", { { 0 } }, "[SchemaInfo]", cmd_query_qmp_schema },
    { "block_resize", { { "device", MONITOR_ARG_STR, true }, { "node-name", MONITOR_ARG_STR, true },
                        { "size", MONITOR_ARG_INT, false } }, "any", cmd_block_resize },
    { "eject", { { "device", MONITOR_ARG_STR, true }, { "id", MONITOR_ARG_STR, true }, { "force", MONITOR_ARG_BOOL, true } },
      "any", monitor_cmd_eject },
    { "blockdev-change-medium", { { "device", MONITOR_ARG_STR, true }, { "id", MONITOR_ARG_STR, true },
                                  { "filename", MONITOR_ARG_STR, false }, { "format", MONITOR_ARG_STR, true },
                                  { "read-only-mode", MONITOR_ARG_STR, true }, { "force", MONITOR_ARG_BOOL, true } },
      "any", monitor_cmd_change_medium },
    { "stop", { { 0 } }, "any", cmd_stop },
    { "cont", { { 0 } }, "any", cmd_cont },
    { "system_reset", { { 0 } }, "any", cmd_system_reset },
    { "system_powerdown", { { 0 } }, "any", cmd_system_powerdown },
    { "quit", { { 0 } }, "any", cmd_quit },
    { "migrate", { { "uri", MONITOR_ARG_STR, false }, { "detach", MONITOR_ARG_BOOL, true },
                   { "blk", MONITOR_ARG_BOOL, true }, { "inc", MONITOR_ARG_BOOL, true } }, "any", cmd_migrate },
    { "migrate_cancel", { { 0 } }, "any", cmd_migrate_cancel },
    { "migrate-incoming", { { "uri", MONITOR_ARG_STR, false } }, "any", cmd_migrate_incoming },
    { "query-migrate", { { 0 } }, "MigrationInfo", cmd_query_migrate },
    { "migrate-set-capabilities", { { "capabilities", MONITOR_ARG_ARRAY, false } }, "any", cmd_migrate_set_capabilities },
    { "query-migrate-capabilities", { { 0 } }, "[MigrationCapabilityStatus]", cmd_query_migrate_capabilities },
    { "migrate-set-parameters", { { "downtime-limit", MONITOR_ARG_INT, true }, { "max-bandwidth", MONITOR_ARG_INT, true } },
      "any", cmd_migrate_set_parameters },
    { "query-migrate-parameters", { { 0 } }, "MigrationParameters", cmd_query_migrate_parameters },
    { "snapshot-save", { { "job-id", MONITOR_ARG_STR, false }, { "tag", MONITOR_ARG_STR, false },
                         { "vmstate", MONITOR_ARG_STR, false }, { "devices", MONITOR_ARG_ARRAY, false } }, "any", cmd_snapshot_save },
    { "snapshot-load", { { "job-id", MONITOR_ARG_STR, false }, { "tag", MONITOR_ARG_STR, false },
                         { "vmstate", MONITOR_ARG_STR, false }, { "devices", MONITOR_ARG_ARRAY, false } }, "any", cmd_snapshot_load },
    { "snapshot-delete", { { "job-id", MONITOR_ARG_STR, false }, { "tag", MONITOR_ARG_STR, false },
                           { "devices", MONITOR_ARG_ARRAY, false } }, "any", cmd_snapshot_delete },
    { "query-jobs", { { 0 } }, "[JobInfo]", cmd_query_jobs },
    { "job-dismiss", { { "id", MONITOR_ARG_STR, false } }, "any", cmd_job_dismiss },
    { "human-monitor-command", { { "command-line", MONITOR_ARG_STR, false }, { "cpu-index", MONITOR_ARG_INT, true } },
      "str", cmd_human_monitor_command },
    { NULL, { { 0 } }, NULL, NULL },
};

const struct monitor_cmd *monitor_cmd_find(const char *name)
{
    for (const struct monitor_cmd *c = monitor_cmds; c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    return NULL;
}

static bool arg_type_ok(enum monitor_arg_type t, const struct json_value *v)
{
    switch (t) {
    case MONITOR_ARG_STR: return v->type == JSON_STRING;
    case MONITOR_ARG_INT: return v->type == JSON_NUMBER && v->is_int;
    case MONITOR_ARG_BOOL: return v->type == JSON_BOOL;
    case MONITOR_ARG_NUMBER: return v->type == JSON_NUMBER;
    case MONITOR_ARG_ARRAY: return v->type == JSON_ARRAY;
    }
    return false;
}

int monitor_check_args(const struct monitor_cmd *c, const struct json_value *args, struct monitor_error *e)
{
    static const char *const expected[] = { "string", "integer", "boolean", "number", "array" };
    if (args && args->type != JSON_OBJECT)
        return monitor_fail(e, "GenericError", -EINVAL, "QMP input member 'arguments' must be an object");
    size_t nargs = args ? args->n : 0;
    for (size_t i = 0; i < nargs; i++) {
        const struct monitor_arg *found = NULL;
        for (int k = 0; k < MONITOR_MAX_ARGS && c->args[k].name && !found; k++)
            if (!strcmp(c->args[k].name, args->keys[i]))
                found = &c->args[k];
        if (!found)
            return monitor_fail(e, "GenericError", -EINVAL, "Parameter '%.64s' is unexpected", args->keys[i]);
        if (!arg_type_ok(found->type, args->items[i]))
            return monitor_fail(e, "GenericError", -EINVAL, "Invalid parameter type for '%s', expected: %s",
                                found->name, expected[found->type]);
    }
    for (int k = 0; k < MONITOR_MAX_ARGS && c->args[k].name; k++)
        if (!c->args[k].optional && !json_get(args, c->args[k].name))
            return monitor_fail(e, "GenericError", -EINVAL, "Parameter '%s' is missing", c->args[k].name);
    return 0;
}

int monitor_run_cmd(struct monitor_ctx *ctx, const char *name, const struct json_value *args, char **ret,
                    struct monitor_error *e)
{
    const struct monitor_cmd *c = monitor_cmd_find(name);
    if (!c || !c->fn)
        return monitor_fail(e, "CommandNotFound", -ENOENT, "The command %.64s has not been found", name);
    int r = monitor_check_args(c, args, e);
    if (r)
        return r;
    if (!ctx->m)
        return monitor_fail(e, "GenericError", -EAGAIN, "the machine is being rebuilt");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return monitor_fail(e, "GenericError", -ENOMEM, "out of memory");
    struct json_writer w;
    json_init(&w, f, false);
    r = c->fn(ctx, args, &w, e);
    fclose(f);
    if (r) {
        free(text);
        return r;
    }
    *ret = text;
    return 0;
}
