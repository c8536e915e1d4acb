/* Evidence gathering: every file systemd-detect-virt and virt-what look at, read under a root. */
#include "detect/detect.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool set_source(struct detect_evidence *e, enum detect_ev ev, const char *path)
{
    struct detect_item *it = &e->ev[ev];
    size_t rl = strlen(e->root), pl = strlen(path);
    if (rl + pl >= sizeof(it->source)) {
        it->err = -ENAMETOOLONG;
        return false;
    }
    memcpy(it->source, e->root, rl);
    memcpy(it->source + rl, path, pl + 1);
    return true;
}

/* Up to max-1 bytes of a file; -errno when it can't be opened or read. */
static ssize_t read_head(const char *path, char *buf, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    /* A FIFO or a device under a fake root could block or never end. */
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    size_t got = 0;
    while (got < max - 1) {
        ssize_t n = read(fd, buf + got, max - 1 - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = -errno;
            close(fd);
            return err;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    return (ssize_t)got;
}

static void trim_right(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
}

/* The file's head, trailing blanks trimmed; with first_line, only its first line, as systemd's
 * read_one_line_file() sees it (the whole short file serves cgroup membership lists). */
static void read_text(struct detect_evidence *e, enum detect_ev ev, const char *path, bool first_line)
{
    struct detect_item *it = &e->ev[ev];
    if (!set_source(e, ev, path))
        return;
    ssize_t n = read_head(it->source, it->value, sizeof(it->value));
    if (n < 0) {
        it->err = (int)n;
        it->value[0] = 0;
        return;
    }
    char *nl = first_line ? strchr(it->value, '\n') : NULL;
    if (nl)
        *nl = 0;
    trim_right(it->value);
}

static void read_line(struct detect_evidence *e, enum detect_ev ev, const char *path)
{
    read_text(e, ev, path, true);
}

static void read_all(struct detect_evidence *e, enum detect_ev ev, const char *path)
{
    read_text(e, ev, path, false);
}

static void check_exists(struct detect_evidence *e, enum detect_ev ev, const char *path)
{
    struct detect_item *it = &e->ev[ev];
    if (!set_source(e, ev, path))
        return;
    it->err = access(it->source, F_OK) == 0 ? 0 : -errno;
}

static bool exists_under(const struct detect_evidence *e, const char *path)
{
    char p[DETECT_SOURCE_MAX + 64];
    snprintf(p, sizeof(p), "%s%s", e->root, path);
    return access(p, F_OK) == 0;
}

/* SMBIOS 3.x 7.1.2.2: BIOS characteristics extension byte 2, bit 4 "this is a virtual machine". */
static void read_dmi_vm_bit(struct detect_evidence *e)
{
    struct detect_item *it = &e->ev[EV_DMI_BIOS_VM_BIT];
    if (!set_source(e, EV_DMI_BIOS_VM_BIT, "/sys/firmware/dmi/entries/0-0/raw"))
        return;
    char raw[64];
    ssize_t n = read_head(it->source, raw, sizeof(raw));
    if (n < 0) {
        it->err = (int)n;
        return;
    }
    if (n < 20 || (uint8_t)raw[1] < 20) {
        it->err = -ENODATA;
        return;
    }
    strcpy(it->value, ((uint8_t)raw[19] & (1u << 4)) ? "1" : "0");
}

static void read_cpuinfo_vendor(struct detect_evidence *e)
{
    struct detect_item *it = &e->ev[EV_CPUINFO_VENDOR];
    if (!set_source(e, EV_CPUINFO_VENDOR, "/proc/cpuinfo"))
        return;
    char buf[8192];
    ssize_t n = read_head(it->source, buf, sizeof(buf));
    if (n < 0) {
        it->err = (int)n;
        return;
    }
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (strncmp(line, "vendor_id\t: ", 12) == 0) {
            snprintf(it->value, sizeof(it->value), "%s", line + 12);
            return;
        }
        line = next;
    }
    it->err = -ENOENT;
}

/* "KEY: value" of a /proc file, value up to the first blank (systemd's get_proc_field). */
static void read_proc_field(struct detect_evidence *e, enum detect_ev ev, const char *path,
                            const char *key)
{
    struct detect_item *it = &e->ev[ev];
    if (!set_source(e, ev, path))
        return;
    char buf[16384];
    ssize_t n = read_head(it->source, buf, sizeof(buf));
    if (n < 0) {
        it->err = (int)n;
        return;
    }
    size_t klen = strlen(key);
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            char *v = line + klen + 1;
            v += strspn(v, " \t");
            v[strcspn(v, " \t")] = 0;
            snprintf(it->value, sizeof(it->value), "%s", v);
            return;
        }
        line = next;
    }
    it->err = -ENOENT;
}

static void read_dt_fw_cfg(struct detect_evidence *e)
{
    struct detect_item *it = &e->ev[EV_DT_FW_CFG];
    if (!set_source(e, EV_DT_FW_CFG, "/proc/device-tree"))
        return;
    DIR *d = opendir(it->source);
    if (!d) {
        it->err = -errno;
        return;
    }
    it->err = -ENOENT;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, "fw-cfg")) {
            snprintf(it->value, sizeof(it->value), "%s", de->d_name);
            it->err = 0;
            break;
        }
    closedir(d);
}

static void read_tracer(struct detect_evidence *e)
{
    struct detect_item *it = &e->ev[EV_TRACER];
    read_proc_field(e, EV_TRACER, "/proc/self/status", "TracerPid");
    if (it->err)
        return;
    char *end;
    long pid = strtol(it->value, &end, 10);
    it->value[0] = 0;
    if (*end || pid < 0) {
        it->err = -EINVAL;
        return;
    }
    if (pid == 0) {
        it->err = -ENOENT;
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    read_line(e, EV_TRACER, path);
}

static void read_pid1_environ(struct detect_evidence *e)
{
    struct detect_item *it = &e->ev[EV_PROC1_ENVIRON];
    if (!set_source(e, EV_PROC1_ENVIRON, "/proc/1/environ"))
        return;
    char buf[65536];
    ssize_t n = read_head(it->source, buf, sizeof(buf));
    if (n < 0) {
        it->err = (int)n;
        return;
    }
    it->err = -ENOENT;
    for (ssize_t off = 0; off < n;) {
        const char *var = buf + off;
        size_t len = strnlen(var, (size_t)(n - off));
        if (len >= 10 && strncmp(var, "container=", 10) == 0) {
            snprintf(it->value, sizeof(it->value), "%.*s", (int)(len - 10), var + 10);
            it->err = 0;
        }
        off += (ssize_t)len + 1;
    }
}

static void read_own_env(struct detect_evidence *e)
{
    struct detect_item *it = &e->ev[EV_OWN_CONTAINER_ENV];
    snprintf(it->source, sizeof(it->source), "$container of this process (PID 1 only)");
    const char *v = e->is_pid1 ? getenv("container") : NULL;
    if (!v) {
        it->err = -ENOENT;
        return;
    }
    snprintf(it->value, sizeof(it->value), "%s", v);
}

/* systemd's running_in_cgroupns(): a cgroup namespace shows its root cgroup as if it were the
 * host's, so the tell is a file that exists only in non-root cgroups. */
static void read_cgroupns(struct detect_evidence *e)
{
    struct detect_item *it = &e->ev[EV_CGROUP_NAMESPACE];
    if (!set_source(e, EV_CGROUP_NAMESPACE, "/sys/fs/cgroup"))
        return;
    bool yes = false;
    if (!exists_under(e, "/proc/self/ns/cgroup")) {
        yes = false;
    } else if (exists_under(e, "/sys/fs/cgroup/cgroup.controllers")) {
        /* cgroup v2 mounted on /sys/fs/cgroup */
        if (!exists_under(e, "/sys/fs/cgroup/cgroup.events"))
            yes = false;
        else if (exists_under(e, "/sys/fs/cgroup/cgroup.type"))
            yes = true;
        else
            yes = !exists_under(e, "/sys/kernel/cgroup/features");
    } else if (exists_under(e, "/sys/fs/cgroup/systemd")) {
        yes = !exists_under(e, "/sys/fs/cgroup/systemd/release_agent");
    }
    strcpy(it->value, yes ? "1" : "0");
}

static void sig_printable(const char sig[12], char *out, size_t outlen)
{
    int last = 11;
    while (last >= 0 && sig[last] == 0)
        last--;
    size_t o = 0;
    for (int i = 0; i <= last && o + 5 < outlen; i++) {
        unsigned char c = (unsigned char)sig[i];
        if (c >= 0x20 && c < 0x7f)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
    }
    out[o] = 0;
}

static void gather_cpuid(struct detect_evidence *e)
{
    struct detect_cpuid *c = &e->cpuid;
    const char *src;
    char path[DETECT_SOURCE_MAX + 16];
    int err = 0;
    if (e->root[0]) {
        snprintf(path, sizeof(path), "%s/cpuid", e->root);
        err = detect_cpuid_load(path, c);
        src = path;
    } else {
        detect_cpuid_probe(c);
        if (!c->available)
            err = -ENOTSUP;
        src = "cpuid instruction";
    }
    for (int ev = EV_CPUID_HYPERVISOR_BIT; ev <= EV_CPUID_PVM; ev++) {
        size_t n = strlen(src);
        if (n >= sizeof(e->ev[ev].source))
            n = sizeof(e->ev[ev].source) - 1;
        memcpy(e->ev[ev].source, src, n);
        e->ev[ev].source[n] = 0;
        e->ev[ev].err = err;
    }
    if (err)
        return;
    strcpy(e->ev[EV_CPUID_HYPERVISOR_BIT].value, c->hypervisor ? "1" : "0");
    if (!c->hypervisor) {
        e->ev[EV_CPUID_SIGNATURE].err = -ENOENT;
        e->ev[EV_CPUID_PVM].err = -ENOENT;
        return;
    }
    sig_printable(c->sig, e->ev[EV_CPUID_SIGNATURE].value, DETECT_VALUE_MAX);
    if (c->pvm)
        strcpy(e->ev[EV_CPUID_PVM].value, "PVM");
    else
        e->ev[EV_CPUID_PVM].err = -ENOENT;
}

int detect_gather(const char *root, struct detect_evidence *out)
{
    memset(out, 0, sizeof(*out));
    int ret = 0;
    if (root && strcmp(root, "/") != 0 && *root) {
        size_t len = strlen(root);
        while (len > 1 && root[len - 1] == '/')
            len--;
        if (len >= sizeof(out->root) - 64)
            return -ENAMETOOLONG;
        memcpy(out->root, root, len);
        struct stat st;
        if (stat(out->root, &st) < 0)
            ret = -errno;
        else if (!S_ISDIR(st.st_mode))
            ret = -ENOTDIR;
    } else {
        out->is_pid1 = getpid() == 1;
    }

    gather_cpuid(out);
    read_line(out, EV_DMI_PRODUCT_NAME, "/sys/class/dmi/id/product_name");
    read_line(out, EV_DMI_SYS_VENDOR, "/sys/class/dmi/id/sys_vendor");
    read_line(out, EV_DMI_BOARD_VENDOR, "/sys/class/dmi/id/board_vendor");
    read_line(out, EV_DMI_BIOS_VENDOR, "/sys/class/dmi/id/bios_vendor");
    read_line(out, EV_DMI_PRODUCT_VERSION, "/sys/class/dmi/id/product_version");
    read_dmi_vm_bit(out);
    read_cpuinfo_vendor(out);
    check_exists(out, EV_PROC_XEN, "/proc/xen");
    read_line(out, EV_XEN_FEATURES, "/sys/hypervisor/properties/features");
    read_line(out, EV_XEN_CAPABILITIES, "/proc/xen/capabilities");
    read_line(out, EV_HYPERVISOR_TYPE, "/sys/hypervisor/type");
    read_line(out, EV_DT_HYPERVISOR, "/proc/device-tree/hypervisor/compatible");
    check_exists(out, EV_DT_PARTITION_NAME, "/proc/device-tree/ibm,partition-name");
    check_exists(out, EV_DT_HMC_MANAGED, "/proc/device-tree/hmc-managed?");
    check_exists(out, EV_DT_QEMU_GRAPHIC, "/proc/device-tree/chosen/qemu,graphic-width");
    read_dt_fw_cfg(out);
    read_line(out, EV_DT_COMPATIBLE, "/proc/device-tree/compatible");
    read_proc_field(out, EV_SYSINFO_VM00, "/proc/sysinfo", "VM00 Control Program");
    detect_kmsg_gather(out);
    check_exists(out, EV_KVM_PVM_MODULE, "/sys/module/kvm_pvm");

    check_exists(out, EV_PROC_VZ, "/proc/vz");
    check_exists(out, EV_PROC_BC, "/proc/bc");
    read_line(out, EV_OSRELEASE, "/proc/sys/kernel/osrelease");
    read_tracer(out);
    read_line(out, EV_RUN_HOST_CONTAINER_MANAGER, "/run/host/container-manager");
    read_own_env(out);
    read_line(out, EV_RUN_SYSTEMD_CONTAINER, "/run/systemd/container");
    read_pid1_environ(out);
    check_exists(out, EV_CONTAINERENV, "/run/.containerenv");
    check_exists(out, EV_DOCKERENV, "/.dockerenv");
    read_cgroupns(out);
    read_all(out, EV_PROC1_CGROUP, "/proc/1/cgroup");
    read_all(out, EV_SELF_CGROUP, "/proc/self/cgroup");
    return ret;
}
