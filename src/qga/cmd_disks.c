/* guest-get-disks: the guest's block devices from sysfs, each with the PCI function and bus that
 * carry it (how the host matches a guest disk to its -device), and their partitions. Virtual
 * devices (loop, zram, ram) have no hardware behind them and are left out, as by qemu-ga. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "qga/internal.h"

/* The PCI function nearest the device in its sysfs path (the controller), -1s when none. */
static void qga_disk_pci(const char *path, int addr[4])
{
    addr[0] = addr[1] = addr[2] = addr[3] = -1;
    for (const char *p = path; (p = strchr(p, '/')); p++) {
        unsigned d, b, s, f;
        int n = 0;
        if (sscanf(p + 1, "%x:%x:%x.%x%n", &d, &b, &s, &f, &n) == 4 && (p[1 + n] == '/' || !p[1 + n])) {
            addr[0] = (int)d;
            addr[1] = (int)b;
            addr[2] = (int)s;
            addr[3] = (int)f;
        }
    }
}

static const char *qga_disk_bus_type(const char *path)
{
    if (strstr(path, "/virtio"))
        return strstr(path, "/host") ? "scsi" : "virtio";   /* virtio-scsi disks sit on a host */
    if (strstr(path, "/usb"))
        return "usb";
    if (strstr(path, "/ata"))
        return "sata";
    if (strstr(path, "/nvme"))
        return "unknown";
    if (strstr(path, "/host"))
        return "scsi";
    return "unknown";
}

static void qga_disk_entry(struct json_writer *w, const char *disk, const char *devpath)
{
    char dev[300];
    snprintf(dev, sizeof(dev), "/dev/%s", disk);
    json_object_begin(w, NULL);
    json_string(w, "name", dev);
    json_bool(w, "partition", false);
    json_array_begin(w, "dependencies");
    char slaves[300];
    snprintf(slaves, sizeof(slaves), "/sys/block/%s/slaves", disk);
    DIR *d = opendir(slaves);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char dep[300];
        snprintf(dep, sizeof(dep), "/dev/%s", de->d_name);
        json_string(w, NULL, dep);
    }
    if (d)
        closedir(d);
    json_array_end(w);
    int pci[4];
    qga_disk_pci(devpath, pci);
    json_object_begin(w, "address");
    json_object_begin(w, "pci-controller");
    json_int(w, "domain", pci[0]);
    json_int(w, "bus", pci[1]);
    json_int(w, "slot", pci[2]);
    json_int(w, "function", pci[3]);
    json_object_end(w);
    json_string(w, "bus-type", qga_disk_bus_type(devpath));
    json_int(w, "bus", 0);
    json_int(w, "target", 0);
    json_int(w, "unit", 0);
    json_string(w, "dev", dev);
    json_object_end(w);
    json_object_end(w);
}

static int qga_cmd_get_disks(struct qga_state *s, const struct json_value *args,
                             struct json_writer *w, struct qga_error *e)
{
    (void)s; (void)args;
    DIR *d = opendir("/sys/block");
    if (!d)
        return qga_error_set(e, -errno, "failed to open /sys/block: %s", strerror(errno));
    json_array_begin(w, "return");
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char link[300], real[PATH_MAX];
        snprintf(link, sizeof(link), "/sys/block/%s", de->d_name);
        if (!realpath(link, real) || strstr(real, "/virtual/"))
            continue;
        char devlink[320], devreal[PATH_MAX];
        snprintf(devlink, sizeof(devlink), "%s/device", link);
        if (!realpath(devlink, devreal))
            snprintf(devreal, sizeof(devreal), "%s", real);
        qga_disk_entry(w, de->d_name, devreal);
        /* its partitions: subdirectories with a "partition" attribute */
        DIR *pd = opendir(link);
        for (struct dirent *pe; pd && (pe = readdir(pd));) {
            char attr[600];
            snprintf(attr, sizeof(attr), "%s/%s/partition", link, pe->d_name);
            if (pe->d_name[0] == '.' || access(attr, F_OK))
                continue;
            char dev[300], parent[300];
            snprintf(dev, sizeof(dev), "/dev/%s", pe->d_name);
            snprintf(parent, sizeof(parent), "/dev/%s", de->d_name);
            json_object_begin(w, NULL);
            json_string(w, "name", dev);
            json_bool(w, "partition", true);
            json_array_begin(w, "dependencies");
            json_string(w, NULL, parent);
            json_array_end(w);
            json_object_end(w);
        }
        if (pd)
            closedir(pd);
    }
    closedir(d);
    json_array_end(w);
    return 0;
}

static const struct qga_command qga_disks_commands[] = {
    { "guest-get-disks", qga_cmd_get_disks, NULL, false },
    { 0 },
};
QGA_COMMANDS(qga_disks_commands)
