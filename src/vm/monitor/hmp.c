/* HMP, the human monitor: a line such as "info status" or "stop" runs the same table entry as
 * QMP's query-status or stop, and the JSON it returns is printed the way QEMU prints it, so a
 * user's habits (and scripts scraping `info status`) carry over. */
#include "vm/monitor/monitor.h"

#include "util/parse.h"
#include "vm/control.h"
#include "vm/cpu_state.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*hmp_print_fn)(const struct monitor_ctx *ctx, const struct json_value *ret, FILE *out);

static const char *str_of(const struct json_value *v, const char *key)
{
    const struct json_value *s = json_get(v, key);
    return s && s->type == JSON_STRING ? s->s : "";
}

static long long int_of(const struct json_value *v, const char *key)
{
    const struct json_value *n = json_get(v, key);
    return n && n->type == JSON_NUMBER ? (long long)n->d : 0;
}

static void print_status(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    (void)ctx;
    const char *st = str_of(r, "status");
    if (!strcmp(st, "running"))
        fprintf(out, "VM status: running\r\n");
    else if (!strcmp(st, "paused"))
        fprintf(out, "VM status: paused\r\n");
    else
        fprintf(out, "VM status: paused (%s)\r\n", st);
}

static void print_version(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    (void)ctx;
    const struct json_value *q = json_get(r, "qemu");
    fprintf(out, "%lld.%lld.%lld (%s)\r\n", int_of(q, "major"), int_of(q, "minor"), int_of(q, "micro"),
            str_of(r, "package"));
}

static void print_name(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    (void)ctx;
    if (json_get(r, "name"))
        fprintf(out, "%s\r\n", str_of(r, "name"));
}

static int current_cpu(const struct monitor_ctx *ctx)
{
    return ctx->cpu ? *ctx->cpu : 0;
}

static void print_cpus(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    for (size_t i = 0; r->type == JSON_ARRAY && i < r->n; i++) {
        long long idx = int_of(r->items[i], "cpu-index");
        fprintf(out, "%c CPU #%lld: thread_id=%lld\r\n", idx == current_cpu(ctx) ? '*' : ' ', idx,
                int_of(r->items[i], "thread-id"));
    }
}

static void print_block(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    (void)ctx;
    for (size_t i = 0; r->type == JSON_ARRAY && i < r->n; i++) {
        const struct json_value *b = r->items[i], *ins = json_get(b, "inserted");
        const struct json_value *ro = json_get(ins, "ro"), *rm = json_get(b, "removable");
        if (ins)
            fprintf(out, "%s: %s (%s%s)\r\n", str_of(b, "device"), str_of(ins, "file"), str_of(ins, "drv"),
                    ro && ro->b ? ", read-only" : "");
        else
            fprintf(out, "%s: [not inserted]\r\n", str_of(b, "device"));
        fprintf(out, "    Attached to:      %s\r\n", str_of(b, "qdev"));
        if (rm && rm->b) {   /* QEMU's line for a removable device */
            const struct json_value *lk = json_get(b, "locked"), *tray = json_get(b, "tray_open");
            fprintf(out, "    Removable device: %slocked, tray %s\r\n", lk && lk->b ? "" : "not ",
                    tray && tray->b ? "open" : "closed");
        }
        if (ins)
            fprintf(out, "    Cache mode:       writeback\r\n");
    }
}

static void print_pci(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    (void)ctx;
    for (size_t i = 0; r->type == JSON_ARRAY && i < r->n; i++) {
        const struct json_value *devs = json_get(r->items[i], "devices");
        for (size_t k = 0; devs && devs->type == JSON_ARRAY && k < devs->n; k++) {
            const struct json_value *d = devs->items[k], *id = json_get(d, "id");
            fprintf(out, "  Bus %2lld, device %3lld, function %lld:\r\n", int_of(d, "bus"), int_of(d, "slot"),
                    int_of(d, "function"));
            fprintf(out, "    Class %04llx: PCI device %04llx:%04llx\r\n", int_of(json_get(d, "class_info"), "class"),
                    int_of(id, "vendor"), int_of(id, "device"));
            fprintf(out, "      PCI subsystem %04llx:%04llx\r\n", int_of(id, "subsystem-vendor"), int_of(id, "subsystem"));
            if (json_get(d, "irq"))
                fprintf(out, "      IRQ %lld, pin %c\r\n", int_of(d, "irq"), (char)('A' + int_of(d, "irq_pin") - 1));
            const struct json_value *regs = json_get(d, "regions");
            for (size_t b = 0; regs && regs->type == JSON_ARRAY && b < regs->n; b++) {
                const struct json_value *bar = regs->items[b];
                const struct json_value *m64 = json_get(bar, "mem_type_64");
                long long addr = int_of(bar, "address");
                fprintf(out, "      BAR%lld: %s memory at 0x%llx [0x%llx].\r\n", int_of(bar, "bar"),
                        m64 && m64->b ? "64 bit" : "32 bit", addr < 0 ? 0ll : addr,
                        (addr < 0 ? 0ll : addr) + int_of(bar, "size") - 1);
            }
            fprintf(out, "      id \"%s\"\r\n", str_of(d, "qdev_id"));
        }
    }
}

static void print_chardev(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    (void)ctx;
    for (size_t i = 0; r->type == JSON_ARRAY && i < r->n; i++)
        fprintf(out, "%s: filename=%s\r\n", str_of(r->items[i], "label"), str_of(r->items[i], "filename"));
}

/* QEMU's hmp_info_migrate lines, of what query-migrate returned. */
static void print_migrate(const struct monitor_ctx *ctx, const struct json_value *r, FILE *out)
{
    (void)ctx;
    const struct json_value *st = json_get(r, "status"), *ram = json_get(r, "ram");
    if (!st)
        return;
    fprintf(out, "Migration status: %s\r\n", str_of(r, "status"));
    if (json_get(r, "total-time"))
        fprintf(out, "total time: %lld ms\r\n", int_of(r, "total-time"));
    if (json_get(r, "expected-downtime"))
        fprintf(out, "expected downtime: %lld ms\r\n", int_of(r, "expected-downtime"));
    if (json_get(r, "downtime"))
        fprintf(out, "downtime: %lld ms\r\n", int_of(r, "downtime"));
    if (json_get(r, "setup-time"))
        fprintf(out, "setup: %lld ms\r\n", int_of(r, "setup-time"));
    if (ram) {
        const struct json_value *mbps = json_get(ram, "mbps");
        fprintf(out, "transferred ram: %lld kbytes\r\n", int_of(ram, "transferred") >> 10);
        fprintf(out, "throughput: %0.2f mbps\r\n", mbps && mbps->type == JSON_NUMBER ? mbps->d : 0.0);
        fprintf(out, "remaining ram: %lld kbytes\r\n", int_of(ram, "remaining") >> 10);
        fprintf(out, "total ram: %lld kbytes\r\n", int_of(ram, "total") >> 10);
        fprintf(out, "duplicate: %lld pages\r\n", int_of(ram, "duplicate"));
        fprintf(out, "skipped: %lld pages\r\n", int_of(ram, "skipped"));
        fprintf(out, "normal: %lld pages\r\n", int_of(ram, "normal"));
        fprintf(out, "normal bytes: %lld kbytes\r\n", int_of(ram, "normal-bytes") >> 10);
        fprintf(out, "dirty sync count: %lld\r\n", int_of(ram, "dirty-sync-count"));
        fprintf(out, "page size: %lld kbytes\r\n", int_of(ram, "page-size") >> 10);
        fprintf(out, "precopy ram: %lld kbytes\r\n", int_of(ram, "precopy-bytes") >> 10);
        fprintf(out, "downtime ram: %lld kbytes\r\n", int_of(ram, "downtime-bytes") >> 10);
    }
    if (json_get(r, "error-desc"))
        fprintf(out, "error: %s\r\n", str_of(r, "error-desc"));
}

static const struct hmp_info {
    const char *name, *cmd, *help;
    hmp_print_fn print;
} infos[] = {
    { "status", "query-status", "show the current VM status (running|paused)", print_status },
    { "version", "query-version", "show the version of QEMU that qkvm speaks for", print_version },
    { "name", "query-name", "show the current VM name", print_name },
    { "cpus", "query-cpus-fast", "show infos for each CPU", print_cpus },
    { "block", "query-block", "show the block devices", print_block },
    { "pci", "query-pci", "show PCI info", print_pci },
    { "chardev", "query-chardev", "show the character devices", print_chardev },
    { "migrate", "query-migrate", "show migration status", print_migrate },
    { "snapshots", NULL, "show the currently saved VM snapshots", NULL },
    { "registers", NULL, "[-a] show the cpu registers (-a: all CPUs)", NULL },
    { "mtree", NULL, "show memory tree", NULL },
    { "qtree", NULL, "show device tree", NULL },
};

static const struct hmp_cmd {
    const char *name, *cmd, *help;
} cmds[] = {
    { "stop", "stop", "stop emulation" },
    { "cont", "cont", "resume emulation" },
    { "c", "cont", "resume emulation" },
    { "system_reset", "system_reset", "reset the system" },
    { "system_powerdown", "system_powerdown", "send system power down event" },
    { "quit", "quit", "quit the emulator" },
    { "q", "quit", "quit the emulator" },
    { "migrate_cancel", "migrate_cancel", "cancel the current VM migration" },
};

static void hmp_help(FILE *out)
{
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(out, "%-24s -- %s\r\n", cmds[i].name, cmds[i].help);
    fprintf(out, "%-24s -- %s\r\n", "block_resize device size", "resize a block image");
    fprintf(out, "%-24s -- %s\r\n", "cpu index", "set the default CPU");
    fprintf(out, "%-24s -- %s\r\n", "eject [-f] device", "eject a removable medium (use -f to force it)");
    fprintf(out, "%-24s -- %s\r\n", "change device filename [format]", "change a removable medium");
    fprintf(out, "%-24s -- %s\r\n", "migrate [-d] uri", "migrate to URI (-d: do not wait; qkvm never waits)");
    fprintf(out, "%-24s -- %s\r\n", "migrate_incoming uri", "continue an incoming migration from an -incoming defer");
    fprintf(out, "%-24s -- %s\r\n", "migrate_set_parameter name value", "downtime-limit (ms), max-bandwidth (bytes/s, K/M/G)");
    fprintf(out, "%-24s -- %s\r\n", "migrate_set_capability name on|off", "events, mapped-ram");
    fprintf(out, "%-24s -- %s\r\n", "savevm [tag]", "save a VM snapshot (the tag replaces one of that name)");
    fprintf(out, "%-24s -- %s\r\n", "loadvm tag", "restore a VM snapshot from its tag or id");
    fprintf(out, "%-24s -- %s\r\n", "delvm tag", "delete a VM snapshot from its tag or id");
    fprintf(out, "%-24s -- %s\r\n", "info [subcommand]", "show various information about the system state");
    fprintf(out, "%-24s -- %s\r\n", "help|? [cmd]", "show the help");
}

/* Runs command cmd with args (NULL: none) and prints its return value with print (NULL: print
 * nothing). */
static void hmp_call_args(struct monitor_ctx *ctx, const char *cmd, const struct json_value *args,
                          hmp_print_fn print, FILE *out)
{
    struct monitor_error e = { "GenericError", "" };
    char *ret = NULL;
    if (monitor_run_cmd(ctx, cmd, args, &ret, &e)) {
        fprintf(out, "Error: %s\r\n", e.desc);
        return;
    }
    struct json_value *v = NULL;
    const char *why;
    if (print && json_parse(ret, strlen(ret), &v, &why) == 0)
        print(ctx, v, out);
    json_value_free(v);
    free(ret);
}

/* Not a QMP command in QEMU either: the vCPU state read through the control API, as QEMU prints
 * it. The monitor's current CPU (`cpu N`), -a every one. */
static void hmp_info_registers(struct monitor_ctx *ctx, bool all, FILE *out)
{
    int first = all ? 0 : current_cpu(ctx), last = all ? ctx->m->ncpus - 1 : first;
    for (int i = first; i <= last; i++) {
        struct cpu_state st;
        int ret = machine_get_cpu_state(ctx->m, i, &st);
        if (ret) {
            fprintf(out, "Error: cannot read CPU %d: %s\r\n", i,
                    ret == -ENOTSUP ? "the accelerator cannot" : strerror(-ret));
            return;
        }
        fprintf(out, "\r\nCPU#%d\r\n", i);   /* QEMU 7.2 heads even one CPU's dump so */
        cpu_state_dump(&st, out);
    }
}

static void hmp_call(struct monitor_ctx *ctx, const char *cmd, hmp_print_fn print, FILE *out)
{
    hmp_call_args(ctx, cmd, NULL, print, out);
}

/* Runs cmd with one argument object built by the caller's writes (fill) and prints errors. */
static void hmp_call_built(struct monitor_ctx *ctx, const char *cmd, void (*fill)(struct json_writer *w, const void *p),
                           const void *p, FILE *out)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        struct json_writer w;
        json_init(&w, f, false);
        json_object_begin(&w, NULL);
        fill(&w, p);
        json_object_end(&w);
        fclose(f);
    }
    struct json_value *args = NULL;
    const char *why;
    if (!text || json_parse(text, strlen(text), &args, &why))
        fprintf(out, "%s: out of memory\r\n", cmd);
    else
        hmp_call_args(ctx, cmd, args, NULL, out);
    json_value_free(args);
    free(text);
}

struct hmp_kv {
    const char *key;
    int64_t ival;
    bool bval, is_bool;
};

static void fill_resize(struct json_writer *w, const void *p)
{
    const struct hmp_kv *kv = p;
    json_string(w, "device", kv->key);
    json_int(w, "size", kv->ival);
}

/* block_resize DEVICE SIZE (SIZE in bytes, or with a K/M/G/T suffix): QMP's block_resize. */
static void hmp_block_resize(struct monitor_ctx *ctx, char words[][64], int n, FILE *out)
{
    uint64_t size;
    if (n < 3) {
        fprintf(out, "block_resize: usage: block_resize device size\r\n");
        return;
    }
    if (parse_size(words[2], 1, &size) || size > INT64_MAX) {
        fprintf(out, "block_resize: invalid size '%s'\r\n", words[2]);
        return;
    }
    struct hmp_kv kv = { words[1], (int64_t)size, false, false };
    hmp_call_built(ctx, "block_resize", fill_resize, &kv, out);
}

static void fill_uri(struct json_writer *w, const void *p)
{
    json_string(w, "uri", p);
}

/* migrate [-d] URI and migrate_incoming URI: the URI is the rest of the line (exec: commands
 * have spaces), in double quotes or not, as QEMU's HMP takes it. */
static void hmp_migrate(struct monitor_ctx *ctx, const char *cmd, const char *rest, FILE *out)
{
    while (isspace((unsigned char)*rest))
        rest++;
    if (!strcmp(cmd, "migrate") && !strncmp(rest, "-d", 2) && (isspace((unsigned char)rest[2]) || !rest[2]))
        for (rest += 2; isspace((unsigned char)*rest);)
            rest++;
    char uri[1024];
    size_t n = strlen(rest);
    while (n && isspace((unsigned char)rest[n - 1]))
        n--;
    if (n >= 2 && rest[0] == '"' && rest[n - 1] == '"')
        rest++, n -= 2;
    if (!n || n >= sizeof(uri)) {
        fprintf(out, "%s: usage: %s\r\n", cmd, !strcmp(cmd, "migrate") ? "migrate [-d] uri" : "migrate_incoming uri");
        return;
    }
    memcpy(uri, rest, n);
    uri[n] = 0;
    hmp_call_built(ctx, !strcmp(cmd, "migrate") ? "migrate" : "migrate-incoming", fill_uri, uri, out);
}

static void fill_param(struct json_writer *w, const void *p)
{
    const struct hmp_kv *kv = p;
    json_int(w, kv->key, kv->ival);
}

static void fill_capability(struct json_writer *w, const void *p)
{
    const struct hmp_kv *kv = p;
    json_array_begin(w, "capabilities");
    json_object_begin(w, NULL);
    json_string(w, "capability", kv->key);
    json_bool(w, "state", kv->bval);
    json_object_end(w);
    json_array_end(w);
}

/* cpu N: the CPU `info registers` and `info cpus` ('*') refer to, for this monitor session. */
static void hmp_cpu(struct monitor_ctx *ctx, char words[][64], int n, FILE *out)
{
    char *end;
    long idx = n >= 2 ? strtol(words[1], &end, 0) : -1;
    if (n < 2 || *end || idx < 0 || idx >= ctx->m->ncpus) {
        fprintf(out, "invalid CPU index\r\n");
        return;
    }
    if (ctx->cpu)
        *ctx->cpu = (int)idx;
}

struct hmp_strs {
    const char *const *kv;      /* key, value, key, value... */
    int nkv;
    bool force;
};

static void fill_strs(struct json_writer *w, const void *p)
{
    const struct hmp_strs *a = p;
    for (int i = 0; i + 1 < a->nkv; i += 2)
        json_string(w, a->kv[i], a->kv[i + 1]);
    if (a->force)
        json_bool(w, "force", true);
}

/* QMP arguments from key/value pairs (string values; "force" a boolean), then the command, its
 * empty return printed as nothing, as QEMU's HMP does. */
static void hmp_call_kv(struct monitor_ctx *ctx, const char *cmd, const char *const *kv, int nkv, bool force,
                        FILE *out)
{
    const struct hmp_strs a = { kv, nkv, force };
    hmp_call_built(ctx, cmd, fill_strs, &a, out);
}

/* eject [-f] DEVICE; change DEVICE FILENAME [FORMAT]: the file name is the rest of the line's
 * third word, however long (words[] keeps 63 characters). */
static void hmp_media(struct monitor_ctx *ctx, const char *line, FILE *out)
{
    char cmd[16] = "", w1[64] = "", w2[4096] = "", w3[64] = "";
    int n = sscanf(line, " %15s %63s %4095s %63s", cmd, w1, w2, w3);
    if (!strcmp(cmd, "eject")) {
        bool force = !strcmp(w1, "-f");
        const char *dev = force ? w2 : w1;
        if (n < (force ? 3 : 2)) {
            fprintf(out, "eject: usage: eject [-f] device\r\n");
            return;
        }
        const char *kv[] = { "device", dev };
        hmp_call_kv(ctx, "eject", kv, 2, force, out);
        return;
    }
    if (n < 3) {
        fprintf(out, "change: usage: change device filename [format]\r\n");
        return;
    }
    const char *kv[] = { "device", w1, "filename", w2, "format", w3 };
    hmp_call_kv(ctx, "blockdev-change-medium", kv, n > 3 ? 6 : 4, false, out);
}

void hmp_run_line(struct monitor_ctx *ctx, const char *line, FILE *out)
{
    char words[3][64];
    int n = 0;
    const char *p = line;
    while (n < 3) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t k = 0;
        while (*p && !isspace((unsigned char)*p)) {
            if (k < sizeof(words[n]) - 1)
                words[n][k++] = *p;
            p++;
        }
        words[n++][k] = 0;
    }
    if (n == 0)
        return;
    /* printable words only in messages: a line from a socket is untrusted */
    for (int i = 0; i < n; i++)
        for (char *c = words[i]; *c; c++)
            if (!isprint((unsigned char)*c))
                *c = '?';
    if (!strcmp(words[0], "help") || !strcmp(words[0], "?") || !strcmp(words[0], "h")) {
        hmp_help(out);
        return;
    }
    if (!strcmp(words[0], "info") || !strcmp(words[0], "i")) {
        if (n < 2) {
            for (size_t i = 0; i < sizeof(infos) / sizeof(infos[0]); i++)
                fprintf(out, "info %-19s -- %s\r\n", infos[i].name, infos[i].help);
            return;
        }
        for (size_t i = 0; i < sizeof(infos) / sizeof(infos[0]); i++) {
            if (strcmp(words[1], infos[i].name))
                continue;
            if (!strcmp(infos[i].name, "registers"))
                hmp_info_registers(ctx, n > 2 && !strcmp(words[2], "-a"), out);
            else if (!strcmp(infos[i].name, "snapshots"))
                hmp_snapshot(ctx, "info-snapshots", NULL, out);
            else if (!strcmp(infos[i].name, "mtree"))
                hmp_info_mtree(ctx, out);
            else if (!strcmp(infos[i].name, "qtree"))
                hmp_info_qtree(ctx, out);
            else
                hmp_call(ctx, infos[i].cmd, infos[i].print, out);
            return;
        }
        fprintf(out, "info: unknown subcommand '%s'\r\n", words[1]);
        return;
    }
    if (!strcmp(words[0], "cpu")) {
        hmp_cpu(ctx, words, n, out);
        return;
    }
    if (!strcmp(words[0], "eject") || !strcmp(words[0], "change")) {
        hmp_media(ctx, line, out);
        return;
    }
    if (hmp_snapshot(ctx, words[0], n > 1 ? words[1] : NULL, out))
        return;
    if (!strcmp(words[0], "block_resize")) {
        hmp_block_resize(ctx, words, n, out);
        return;
    }
    if (!strcmp(words[0], "migrate") || !strcmp(words[0], "migrate_incoming")) {
        const char *rest = line;
        while (isspace((unsigned char)*rest))
            rest++;
        hmp_migrate(ctx, words[0], rest + strlen(words[0]), out);
        return;
    }
    if (!strcmp(words[0], "migrate_set_parameter") || !strcmp(words[0], "migrate_set_capability")) {
        bool param = words[0][12] == 'p';
        struct hmp_kv kv = { words[1], 0, false, !param };
        uint64_t v = 0;
        if (n < 3) {
            fprintf(out, "%s: usage: %s name %s\r\n", words[0], words[0], param ? "value" : "on|off");
            return;
        }
        if (param && (parse_size(words[2], !strcmp(words[1], "max-bandwidth") ? 1024 * 1024 : 1, &v) || v > INT64_MAX)) {
            fprintf(out, "%s: invalid value '%s'\r\n", words[0], words[2]);
            return;
        }
        if (!param && strcmp(words[2], "on") && strcmp(words[2], "off")) {
            fprintf(out, "%s: '%s': on or off\r\n", words[0], words[2]);
            return;
        }
        kv.ival = (int64_t)v;
        kv.bval = !strcmp(words[2], "on");
        hmp_call_built(ctx, param ? "migrate-set-parameters" : "migrate-set-capabilities",
                       param ? fill_param : fill_capability, &kv, out);
        return;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (!strcmp(words[0], cmds[i].name)) {
            hmp_call(ctx, cmds[i].cmd, NULL, out);
            return;
        }
    }
    fprintf(out, "unknown command: '%s'\r\n", words[0]);
}
