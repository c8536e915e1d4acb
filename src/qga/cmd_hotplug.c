/* Taking vCPUs and memory blocks on and offline through sysfs, as the host asks after a hot-plug
 * (the guest-get-* side is in cmd_system.c). Items are processed in order; the reply says how
 * far it got, as qemu-ga's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "qga/internal.h"

/* Writes "0" or "1" to a sysfs online file unless it already says so. 0 or -errno. */
static int qga_sysfs_set_online(const char *path, bool online)
{
    char cur = 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (read(fd, &cur, 1) == 1 && (cur == '1') == online) {
        close(fd);
        return 0;
    }
    int r = pwrite(fd, online ? "1" : "0", 1, 0) == 1 ? 0 : -errno;
    close(fd);
    return r;
}

static int qga_cmd_set_vcpus(struct qga_state *s, const struct json_value *args,
                             struct json_writer *w, struct qga_error *e)
{
    (void)s;
    const struct json_value *list = json_get(args, "vcpus");
    size_t done = 0;
    for (; done < list->n; done++) {
        const struct json_value *it = list->items[done];
        int64_t id = qga_arg_int(it, "logical-id", -1);
        bool online = qga_arg_bool(it, "online", true);
        char dir[96], path[128];
        snprintf(dir, sizeof(dir), "/sys/devices/system/cpu/cpu%lld/", (long long)id);
        int r = id < 0 ? -ENOENT : access(dir, F_OK) ? -errno : 0;
        if (r == 0) {
            snprintf(path, sizeof(path), "%sonline", dir);
            if (access(path, F_OK)) {
                /* no online file: a CPU that is always on */
                if (!online && done == 0)
                    return qga_error_set(e, -EINVAL, "logical processor #%lld can't be offlined",
                                         (long long)id);
                if (!online)
                    break;
                continue;
            }
            r = qga_sysfs_set_online(path, online);
            if (r < 0 && done == 0)
                return qga_error_set(e, r, "failed to %s logical processor #%lld: %s",
                                     online ? "online" : "offline", (long long)id, strerror(-r));
        } else if (done == 0) {
            return qga_error_set(e, r, "open(\"%s\"): %s", dir, strerror(-r));
        }
        if (r < 0)
            break;
    }
    json_int(w, "return", (int64_t)done);
    return 0;
}

static int qga_cmd_set_memory_blocks(struct qga_state *s, const struct json_value *args,
                                     struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)e;
    const struct json_value *list = json_get(args, "mem-blks");
    json_array_begin(w, "return");
    for (size_t i = 0; i < list->n; i++) {
        int64_t idx = qga_arg_int(list->items[i], "phys-index", -1);
        bool online = qga_arg_bool(list->items[i], "online", true);
        char path[128];
        snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%lld/online", (long long)idx);
        int r = idx < 0 ? -ENOENT : qga_sysfs_set_online(path, online);
        json_object_begin(w, NULL);
        json_int(w, "phys-index", idx);
        json_string(w, "response", r == 0 ? "success" : r == -ENOENT ? "not-found" :
                    r == -EINVAL || r == -EOPNOTSUPP ? "operation-not-supported" :
                    "operation-failed");
        if (r < 0)
            json_int(w, "error-code", -r);
        json_object_end(w);
    }
    json_array_end(w);
    return 0;
}

static const struct qga_arg qga_fields_vcpu[] = {
    { "logical-id", QGA_ARG_INT, false, NULL }, { "online", QGA_ARG_BOOL, false, NULL },
    { "can-offline", QGA_ARG_BOOL, true, NULL }, { 0 } };
static const struct qga_arg qga_args_set_vcpus[] = {
    { "vcpus", QGA_ARG_OBJ_LIST, false, qga_fields_vcpu }, { 0 } };
static const struct qga_arg qga_fields_memblk[] = {
    { "phys-index", QGA_ARG_INT, false, NULL }, { "online", QGA_ARG_BOOL, false, NULL },
    { "can-offline", QGA_ARG_BOOL, true, NULL }, { 0 } };
static const struct qga_arg qga_args_set_memory_blocks[] = {
    { "mem-blks", QGA_ARG_OBJ_LIST, false, qga_fields_memblk }, { 0 } };

static const struct qga_command qga_hotplug_commands[] = {
    { "guest-set-vcpus", qga_cmd_set_vcpus, qga_args_set_vcpus, false },
    { "guest-set-memory-blocks", qga_cmd_set_memory_blocks, qga_args_set_memory_blocks, false },
    { 0 },
};
QGA_COMMANDS(qga_hotplug_commands)
