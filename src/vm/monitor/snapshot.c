/* The monitor's snapshot commands (QEMU 7.2's names, arguments and replies): QMP snapshot-save,
 * snapshot-load, snapshot-delete (jobs), query-jobs, job-dismiss; HMP savevm, loadvm, delvm and
 * info snapshots. They call vm/savevm.h; the QMP table entries are in commands.c. */
#include "vm/monitor/monitor.h"

#include "hw/disk.h"
#include "vm/machine.h"
#include "vm/savevm.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* Node names to disk indices (query-block's names). -ENOENT with e filled for an unknown one. */
static int snap_index(struct monitor_ctx *ctx, char (*names)[64], const char *name, struct monitor_error *e)
{
    for (int i = 0; i < disk_count(ctx->m); i++)
        if (!strcmp(names[i], name))
            return i;
    return monitor_fail(e, "GenericError", -ENOENT, "Cannot find device='' nor node-name='%.64s'", name);
}

static int snap_job(struct monitor_ctx *ctx, const char *kind, const struct json_value *a, struct json_writer *w,
                    struct monitor_error *e)
{
    char names[MACHINE_MAX_DISKS][64];
    monitor_disk_names(ctx->m, names, disk_count(ctx->m));
    const struct json_value *devs = json_get(a, "devices"), *vms = json_get(a, "vmstate");
    int idx[MACHINE_MAX_DISKS], n = 0;
    if (devs->type != JSON_ARRAY)
        return monitor_fail(e, "GenericError", -EINVAL, "Invalid parameter type for 'devices', expected: array");
    for (size_t k = 0; k < devs->n; k++) {
        if (devs->items[k]->type != JSON_STRING)
            return monitor_fail(e, "GenericError", -EINVAL, "Invalid parameter type for 'devices', expected: array of strings");
        if (n >= MACHINE_MAX_DISKS)
            return monitor_fail(e, "GenericError", -E2BIG, "too many devices");
        int i = snap_index(ctx, names, devs->items[k]->s, e);
        if (i < 0)
            return i;
        idx[n++] = i;
    }
    struct savevm_req r = { .tag = json_get(a, "tag")->s, .vmstate = -1, .devices = idx, .ndevices = n };
    if (vms && (r.vmstate = snap_index(ctx, names, vms->s, e)) < 0)
        return r.vmstate;
    char why[300];
    int ret = savevm_job_start(ctx->m, kind, json_get(a, "job-id")->s, &r, why, sizeof(why));
    if (ret)
        return monitor_fail(e, "GenericError", ret, "%s", why);
    json_object_begin(w, NULL);
    json_object_end(w);
    return 0;
}

int cmd_snapshot_save(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w, struct monitor_error *e)
{
    return snap_job(ctx, "snapshot-save", a, w, e);
}

int cmd_snapshot_load(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w, struct monitor_error *e)
{
    return snap_job(ctx, "snapshot-load", a, w, e);
}

int cmd_snapshot_delete(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w,
                        struct monitor_error *e)
{
    return snap_job(ctx, "snapshot-delete", a, w, e);
}

static void write_job(void *opaque, const struct savevm_job_info *j)
{
    struct json_writer *w = opaque;
    bool done = !strcmp(j->status, "concluded");
    json_object_begin(w, NULL);
    json_int(w, "current-progress", done ? 1 : 0);
    json_string(w, "status", j->status);
    json_int(w, "total-progress", 1);
    json_string(w, "type", j->type);
    json_string(w, "id", j->id);
    if (j->error)
        json_string(w, "error", j->error);
    json_object_end(w);
}

int cmd_query_jobs(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w, struct monitor_error *e)
{
    (void)a, (void)e;
    json_array_begin(w, NULL);
    savevm_job_for_each(ctx->m, write_job, w);
    json_array_end(w);
    return 0;
}

int cmd_job_dismiss(struct monitor_ctx *ctx, const struct json_value *a, struct json_writer *w, struct monitor_error *e)
{
    const char *id = json_get(a, "id")->s;
    int ret = savevm_job_dismiss(ctx->m, id);
    if (ret == -ENOENT)
        return monitor_fail(e, "GenericError", ret, "Job not found");
    if (ret)
        return monitor_fail(e, "GenericError", ret, "Job '%.64s' in state '%s' cannot accept command verb 'dismiss'", id,
                            "running");
    json_object_begin(w, NULL);
    json_object_end(w);
    return 0;
}

/* ---- HMP ---- */

bool hmp_snapshot(struct monitor_ctx *ctx, const char *cmd, const char *arg, FILE *out)
{
    char names[MACHINE_MAX_DISKS][64];
    const char *np[MACHINE_MAX_DISKS];
    monitor_disk_names(ctx->m, names, disk_count(ctx->m));
    for (int i = 0; i < disk_count(ctx->m); i++)
        np[i] = names[i];
    if (!strcmp(cmd, "info-snapshots")) {
        savevm_print_info(ctx->m, np, out);
        return true;
    }
    bool save = !strcmp(cmd, "savevm"), load = !strcmp(cmd, "loadvm");
    if (!save && !load && strcmp(cmd, "delvm"))
        return false;
    char tag[64];
    if (arg && *arg) {
        snprintf(tag, sizeof(tag), "%s", arg);
    } else if (save) {   /* QEMU's name for a savevm without one */
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(tag, sizeof(tag), "vm-%Y%m%d%H%M%S", &tm);
    } else {
        fprintf(out, "%s: usage: %s tag|id\r\n", cmd, cmd);
        return true;
    }
    struct savevm_req r = { .tag = tag, .vmstate = -1, .overwrite = save, .names = np };
    char why[400];
    int ret = save ? savevm_save(ctx->m, &r, why, sizeof(why))
              : load ? savevm_load(ctx->m, &r, why, sizeof(why)) : savevm_delete(ctx->m, &r, why, sizeof(why));
    if (ret)
        fprintf(out, "Error: %s\r\n", why);
    return true;
}
