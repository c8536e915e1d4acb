#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "detect/detect.h"

/* A file of a fake root: a path ending in '/' is a directory. Data may hold NULs. */
struct fake_file {
    const char *path;
    const char *data;
    size_t len;
};
#define F(p, s) { p, s, sizeof(s) - 1 }
#define D(p) { p "/", "", 0 }

/* CPUID leaf 1 with the hypervisor bit, and leaf 0x40000000 with a signature. */
#define CPUID_HV(sig_ebx, sig_ecx, sig_edx)                                     \
    F("/cpuid", "0x1 0x00a10f11 0 0x80000000 0x178bfbff\n"                     \
                "0x40000000 0x40000001 " sig_ebx " " sig_ecx " " sig_edx "\n")
#define CPUID_KVM CPUID_HV("0x4b4d564b", "0x564b4d56", "0x0000004d")     /* KVMKVMKVM */
#define CPUID_TCG CPUID_HV("0x54474354", "0x43544743", "0x47435447")     /* TCGTCGTCGTCG */
#define CPUID_BARE F("/cpuid", "0x1 0x00a10f11 0 0x7ffa3203 0x178bfbff\n")

/* SMBIOS type 0 as /sys/firmware/dmi/entries/0-0/raw shows it: length 0x18, extension byte 2
 * (offset 0x13) with or without bit 4 "virtual machine". */
#define DMI_RAW(ext2)                                                           \
    F("/sys/firmware/dmi/entries/0-0/raw",                                      \
      "\x00\x18\x00\x00\x01\x02\x00\xf0\x03\xff\x80\x98\x8b\x3f\x01\x00\x11\x00\x03" ext2 \
      "\x00\x00\xff\xff\x00\x00")

struct detect_case {
    const char *name;
    struct fake_file files[12];
    const char *id;          /* the plain answer */
    const char *vm;          /* --vm */
    const char *container;   /* --container */
    const char *accel;       /* qkvm guests */
    bool pvm_host, pvm_guest;
};

static const struct detect_case cases[] = {
    { "none, empty root", { { 0 } }, "none", "none", "none", NULL, false, false },
    { "none, bare metal",
      { CPUID_BARE, F("/sys/class/dmi/id/sys_vendor", "Dell Inc.\n"),
        F("/sys/class/dmi/id/product_name", "PowerEdge R640\n"),
        F("/dev/kmsg", "6,95,0,-;Booting paravirtualized kernel on bare hardware\n") },
      "none", "none", "none", NULL, false, false },
    { "kvm, cpuid",
      { CPUID_KVM, F("/sys/class/dmi/id/sys_vendor", "QEMU\n"),
        F("/sys/class/dmi/id/product_name", "Standard PC (Q35 + ICH9, 2009)\n"),
        F("/dev/kmsg", "6,0,0,-;Hypervisor detected: KVM\n6,90,3,-;Booting paravirtualized kernel on KVM\n") },
      "kvm", "kvm", "none", NULL, false, false },
    { "kvm, product_name before sys_vendor",
      { F("/sys/class/dmi/id/sys_vendor", "QEMU\n"), F("/sys/class/dmi/id/product_name", "KVM\n") },
      "kvm", "kvm", "none", NULL, false, false },
    { "kvm, arm device tree",
      { F("/proc/device-tree/hypervisor/compatible", "linux,kvm") },
      "kvm", "kvm", "none", NULL, false, false },
    { "kvm, s390 sysinfo",
      { F("/proc/sysinfo", "Manufacturer:         IBM\nVM00 Control Program: KVM/Linux\n") },
      "kvm", "kvm", "none", NULL, false, false },
    { "kvm, pvm guest",
      { F("/cpuid", "0x1 0 0 0x80000000 0\n0x40000000 0x40000002 0x4b4d564b 0x564b4d56 0x4d\n"
                    "0x40000002 0 0x4d5650 0 0\n") },
      "kvm", "kvm", "none", NULL, false, true },
    { "kvm, pvm guest with a PVM leaf",
      { F("/cpuid", "0x1 0 0 0x80000000 0\n0x40000000 0x40000001 0x4b4d564b 0x564b4d56 0x4d\n"
                    "0x40000200 0x40000201 0x504d5650 0x56504d56 0x0000004d # PVMPVMPVM\n") },
      "kvm", "kvm", "none", NULL, false, true },
    { "none, pvm host",
      { CPUID_BARE, D("/sys/module/kvm_pvm/parameters") },
      "none", "none", "none", NULL, true, false },
    { "amazon, vm bit",
      { CPUID_KVM, F("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n"),
        F("/sys/class/dmi/id/product_name", "m5.large\n"), DMI_RAW("\x18") },
      "amazon", "amazon", "none", NULL, false, false },
    { "none, amazon metal by vm bit",
      { CPUID_BARE, F("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n"),
        F("/sys/class/dmi/id/product_name", "m5.metal\n"), DMI_RAW("\x08") },
      "none", "none", "none", NULL, false, false },
    { "none, amazon metal by product name",
      { CPUID_BARE, F("/sys/class/dmi/id/sys_vendor", "Amazon EC2\n"),
        F("/sys/class/dmi/id/product_name", "c5.metal\n") },
      "none", "none", "none", NULL, false, false },
    { "qemu, tcg",
      { CPUID_TCG, F("/sys/class/dmi/id/sys_vendor", "QEMU\n"),
        F("/sys/class/dmi/id/bios_vendor", "SeaBIOS\n") },
      "qemu", "qemu", "none", NULL, false, false },
    { "qemu, hyper-v enlightenments",
      { CPUID_HV("0x7263694d", "0x666f736f", "0x76482074"),   /* Microsoft Hv */
        F("/sys/class/dmi/id/sys_vendor", "QEMU\n") },
      "qemu", "qemu", "none", NULL, false, false },
    { "qemu, arm fw-cfg", { D("/proc/device-tree/fw-cfg@9020000") },
      "qemu", "qemu", "none", NULL, false, false },
    { "bochs",
      { F("/sys/class/dmi/id/sys_vendor", "Bochs\n"), F("/sys/class/dmi/id/product_name", "Bochs\n") },
      "bochs", "bochs", "none", NULL, false, false },
    { "xen, domU", { D("/proc/xen"), F("/proc/xen/capabilities", "\n") },
      "xen", "xen", "none", NULL, false, false },
    { "xen, hvm cpuid", { CPUID_HV("0x566e6558", "0x65584d4d", "0x4d4d566e") },
      "xen", "xen", "none", NULL, false, false },
    { "none, xen dom0", { D("/proc/xen"), F("/proc/xen/capabilities", "control_d\n") },
      "none", "none", "none", NULL, false, false },
    { "kvm, xen dom0 nested in kvm",
      { CPUID_KVM, D("/proc/xen"), F("/sys/hypervisor/properties/features", "00000800\n") },
      "kvm", "kvm", "none", NULL, false, false },
    { "xen, /sys/hypervisor/type", { F("/sys/hypervisor/type", "xen\n") },
      "xen", "xen", "none", NULL, false, false },
    { "uml", { F("/proc/cpuinfo", "processor\t: 0\nvendor_id\t: User Mode Linux\n") },
      "uml", "uml", "none", NULL, false, false },
    { "vmware",
      { CPUID_HV("0x61774d56", "0x4d566572", "0x65726177"),   /* VMwareVMware */
        F("/sys/class/dmi/id/sys_vendor", "VMware, Inc.\n"),
        F("/sys/class/dmi/id/product_name", "VMware Virtual Platform\n") },
      "vmware", "vmware", "none", NULL, false, false },
    { "oracle, before cpuid",
      { CPUID_KVM, F("/sys/class/dmi/id/sys_vendor", "innotek GmbH\n"),
        F("/sys/class/dmi/id/product_name", "VirtualBox\n") },
      "oracle", "oracle", "none", NULL, false, false },
    { "microsoft",
      { CPUID_HV("0x7263694d", "0x666f736f", "0x76482074"),
        F("/sys/class/dmi/id/sys_vendor", "Microsoft Corporation\n"),
        F("/sys/class/dmi/id/product_name", "Virtual Machine\n") },
      "microsoft", "microsoft", "none", NULL, false, false },
    { "zvm", { F("/proc/sysinfo", "VM00 Name:            LINUX1\nVM00 Control Program: z/VM    7.1.0\n") },
      "zvm", "zvm", "none", NULL, false, false },
    { "parallels, before cpuid",
      { CPUID_HV("0x206c7270", "0x65707968", "0x20207672"),   /* "prl hyperv  " */
        F("/sys/class/dmi/id/sys_vendor", "Parallels Software International Inc.\n"),
        F("/sys/class/dmi/id/product_name", "Parallels Virtual Platform\n") },
      "parallels", "parallels", "none", NULL, false, false },
    { "bhyve",
      { CPUID_HV("0x76796862", "0x68622065", "0x20657679"),   /* "bhyve bhyve " */
        F("/sys/class/dmi/id/product_name", "BHYVE\n") },
      "bhyve", "bhyve", "none", NULL, false, false },
    { "qnx", { CPUID_HV("0x51584e51", "0x53424d56", "0x00004751") },   /* QNXQVMBSQG */
      "qnx", "qnx", "none", NULL, false, false },
    { "acrn", { CPUID_HV("0x4e524341", "0x4e524341", "0x4e524341") },  /* ACRNACRNACRN */
      "acrn", "acrn", "none", NULL, false, false },
    { "powervm",
      { F("/proc/device-tree/ibm,partition-name", "lpar1"), F("/proc/device-tree/hmc-managed?", "") },
      "powervm", "powervm", "none", NULL, false, false },
    { "apple",
      { CPUID_HV("0x6c707041", "0x5a562065", "0x00000000"),   /* "Apple VZ" */
        F("/sys/class/dmi/id/sys_vendor", "Apple Inc.\n"),
        F("/sys/class/dmi/id/product_name", "Apple Virtualization Generic Platform\n") },
      "apple", "apple", "none", NULL, false, false },
    { "sre", { CPUID_HV("0x53455253", "0x52534552", "0x45525345") },  /* SRESRESRESRE */
      "sre", "sre", "none", NULL, false, false },
    { "google, before cpuid",
      { CPUID_KVM, F("/sys/class/dmi/id/sys_vendor", "Google\n"),
        F("/sys/class/dmi/id/product_name", "Google Compute Engine\n") },
      "google", "google", "none", NULL, false, false },
    { "qkvm, kvm accelerator",
      { CPUID_KVM, F("/sys/class/dmi/id/sys_vendor", "qkvm\n"),
        F("/sys/class/dmi/id/product_name", "qkvm Virtual Machine\n"), DMI_RAW("\x18") },
      "qkvm", "qkvm", "none", "kvm", false, false },
    { "qkvm, tcg accelerator",
      { CPUID_TCG, F("/sys/class/dmi/id/sys_vendor", "qkvm\n"),
        F("/sys/class/dmi/id/product_name", "KVM\n") },
      "qkvm", "qkvm", "none", "tcg", false, false },
    { "vm-other, unknown cpuid", { CPUID_HV("0x44434241", "0x48474645", "0x4c4b4a49") },
      "vm-other", "vm-other", "none", NULL, false, false },
    { "vm-other, smbios vm bit", { DMI_RAW("\x10"), F("/sys/class/dmi/id/sys_vendor", "Acme\n") },
      "vm-other", "vm-other", "none", NULL, false, false },
    { "systemd-nspawn", { F("/run/systemd/container", "systemd-nspawn\n") },
      "systemd-nspawn", "none", "systemd-nspawn", NULL, false, false },
    { "lxc-libvirt", { F("/proc/1/environ", "HOME=/\0container=lxc-libvirt\0TERM=linux\0") },
      "lxc-libvirt", "none", "lxc-libvirt", NULL, false, false },
    { "lxc, over kvm",
      { CPUID_KVM, F("/proc/1/environ", "container=lxc\0"),
        F("/proc/1/cgroup", "0::/lxc.payload.c1/init.scope\n") },
      "lxc", "kvm", "lxc", NULL, false, false },
    { "openvz", { D("/proc/vz") }, "openvz", "none", "openvz", NULL, false, false },
    { "none, openvz host", { D("/proc/vz"), D("/proc/bc") }, "none", "none", "none", NULL, false, false },
    { "docker, over kvm",
      { CPUID_KVM, F("/.dockerenv", ""), F("/proc/self/cgroup", "0::/docker/0123abcd\n") },
      "docker", "kvm", "docker", NULL, false, false },
    { "podman, before docker", { F("/run/.containerenv", ""), F("/.dockerenv", "") },
      "podman", "none", "podman", NULL, false, false },
    { "podman, from environ", { F("/proc/1/environ", "container=podman\0") },
      "podman", "none", "podman", NULL, false, false },
    { "rkt", { F("/proc/1/environ", "container=rkt\0") }, "rkt", "none", "rkt", NULL, false, false },
    { "wsl", { CPUID_HV("0x7263694d", "0x666f736f", "0x76482074"),
               F("/proc/sys/kernel/osrelease", "5.15.153.1-microsoft-standard-WSL2\n") },
      "wsl", "microsoft", "wsl", NULL, false, false },
    { "proot",
      { F("/proc/self/status", "Name:\tsh\nTracerPid:\t4242\nUid:\t0\n"), F("/proc/4242/comm", "proot\n") },
      "proot", "none", "proot", NULL, false, false },
    { "none, traced by gdb",
      { F("/proc/self/status", "Name:\tsh\nTracerPid:\t4242\n"), F("/proc/4242/comm", "gdb\n") },
      "none", "none", "none", NULL, false, false },
    { "pouch", { F("/run/host/container-manager", "pouch\n") }, "pouch", "none", "pouch", NULL, false, false },
    { "docker, oci names no manager", { F("/run/systemd/container", "oci\n"), F("/.dockerenv", "") },
      "docker", "none", "docker", NULL, false, false },
    { "container-other, oci alone", { F("/run/systemd/container", "oci\n") },
      "container-other", "none", "container-other", NULL, false, false },
    { "container-other, unknown manager", { F("/run/host/container-manager", "garden\n") },
      "container-other", "none", "container-other", NULL, false, false },
    { "container-other, cgroup v2 namespace",
      { F("/proc/self/ns/cgroup", ""), F("/sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
        F("/sys/fs/cgroup/cgroup.events", "populated 1\n"), F("/sys/fs/cgroup/cgroup.type", "domain\n") },
      "container-other", "none", "container-other", NULL, false, false },
    { "none, cgroup v2 root",
      { F("/proc/self/ns/cgroup", ""), F("/sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
        F("/sys/fs/cgroup/cgroup.events", "populated 1\n"), F("/sys/kernel/cgroup/features", "nsdelegate\n") },
      "none", "none", "none", NULL, false, false },
    { "container-other, cgroup v1 namespace",
      { F("/proc/self/ns/cgroup", ""), D("/sys/fs/cgroup/systemd") },
      "container-other", "none", "container-other", NULL, false, false },
};

static char *make_root(const struct fake_file *files)
{
    char tmpl[] = "/tmp/qkvm-detect-XXXXXX";
    char *root = mkdtemp(tmpl);
    assert_non_null(root);
    root = strdup(root);
    for (const struct fake_file *f = files; f->path; f++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s%s", root, f->path);
        for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
            *p = 0;
            if (mkdir(path, 0755) < 0)
                assert_int_equal(errno, EEXIST);
            *p = '/';
        }
        if (path[strlen(path) - 1] == '/')
            continue;
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, f->data, f->len), (ssize_t)f->len);
        close(fd);
    }
    return root;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void remove_root(char *root)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(root);
}

static const char *decide_name(const struct detect_evidence *e, enum detect_mode m,
                               struct detect_result *r)
{
    detect_decide(e, m, r);
    return detect_id_name(r->id);
}

static void test_table(void **state)
{
    (void)state;
    struct detect_evidence *e = malloc(sizeof(*e));
    assert_non_null(e);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct detect_case *c = &cases[i];
        char *root = make_root(c->files);
        assert_int_equal(detect_gather(root, e), 0);
        struct detect_result r;
        const char *got[3] = {
            decide_name(e, DETECT_VM_ONLY, &r),
            decide_name(e, DETECT_CONTAINER_ONLY, &r),
            decide_name(e, DETECT_ANY, &r),
        };
        if (strcmp(got[2], c->id) || strcmp(got[0], c->vm) || strcmp(got[1], c->container))
            fail_msg("case '%s': got %s (vm %s, container %s), expected %s (vm %s, container %s)",
                     c->name, got[2], got[0], got[1], c->id, c->vm, c->container);
        if (c->accel)
            assert_string_equal(r.accelerator ? r.accelerator : "(null)", c->accel);
        else
            assert_null(r.accelerator);
        if (r.pvm_host != c->pvm_host || r.pvm_guest != c->pvm_guest)
            fail_msg("case '%s': pvm host %d guest %d", c->name, r.pvm_host, r.pvm_guest);
        /* Every evidence item names where it looked, under the root. */
        for (int ev = 0; ev < EV_COUNT; ev++)
            assert_true(e->ev[ev].source[0]);
        assert_true(strncmp(e->ev[EV_DMI_SYS_VENDOR].source, root, strlen(root)) == 0);
        remove_root(root);
    }
    free(e);
}

/* Every identifier of the table, and of the issue's list, is a name --list prints. */
static void test_names(void **state)
{
    (void)state;
    static const char *const issue[] = {
        "kvm", "qemu", "vmware", "microsoft", "oracle", "xen", "bochs", "parallels", "bhyve",
        "amazon", "google", "acrn", "powervm", "zvm", "qnx", "apple", "sre", "uml", "docker",
        "podman", "lxc", "lxc-libvirt", "systemd-nspawn", "openvz", "wsl", "proot", "rkt", "none",
        "qkvm",
    };
    bool seen[DETECT_ID_COUNT] = { 0 };
    for (size_t i = 0; i < sizeof(issue) / sizeof(issue[0]); i++)
        assert_true(detect_id_from_name(issue[i]) >= 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int id = detect_id_from_name(cases[i].id);
        assert_true(id >= 0);
        seen[id] = true;
    }
    for (int i = 0; i < DETECT_ID_COUNT; i++)
        if (!seen[i])
            fail_msg("no case answers %s", detect_id_name(i));
    assert_int_equal(detect_id_from_name("bogus"), -1);
    assert_true(detect_id_is_vm(DETECT_QKVM));
    assert_false(detect_id_is_vm(DETECT_NONE));
    assert_true(detect_id_is_container(DETECT_CONTAINER_OTHER));
    assert_false(detect_id_is_container(DETECT_VM_OTHER));
}

static void test_kernel_log(void **state)
{
    (void)state;
    struct detect_evidence *e = malloc(sizeof(*e));
    assert_non_null(e);
    /* dmesg's own format, and a syslog priority, are read as well as /dev/kmsg records. */
    const struct fake_file files[] = {
        F("/dev/kmsg", "[    0.000000] Linux version 6.1.0\n"
                       "<6>[    0.000000] Hypervisor detected: Microsoft Hyper-V\n"
                       "[    0.052001] Booting paravirtualized kernel on Hyper-V\n"
                       "[    9.000000] Hypervisor detected: late echo\n"),
        { 0 },
    };
    char *root = make_root(files);
    assert_int_equal(detect_gather(root, e), 0);
    assert_int_equal(e->ev[EV_KMSG_HYPERVISOR].err, 0);
    assert_string_equal(e->ev[EV_KMSG_HYPERVISOR].value, "Microsoft Hyper-V");
    assert_string_equal(e->ev[EV_KMSG_PARAVIRT].value, "Hyper-V");
    assert_int_equal(detect_ev_suggests(e, EV_KMSG_HYPERVISOR), DETECT_MICROSOFT);
    /* The kernel log is evidence only, as for systemd-detect-virt: no CPUID, no answer. */
    struct detect_result r;
    detect_decide(e, DETECT_ANY, &r);
    assert_int_equal(r.id, DETECT_NONE);
    remove_root(root);

    const struct fake_file none[] = { { 0 } };
    root = make_root(none);
    assert_int_equal(detect_gather(root, e), 0);
    assert_int_equal(e->ev[EV_KMSG_HYPERVISOR].err, -ENOENT);
    assert_int_equal(e->ev[EV_CPUID_SIGNATURE].err, -ENOENT);
    remove_root(root);
    free(e);
}

static void test_cpuid_file(void **state)
{
    (void)state;
    struct detect_cpuid c;
    static const struct { const char *text; int ret; } files[] = {
        { "", 0 },
        { "# comment only\n\n", 0 },
        { "0x1 0 0 0x80000000 0\n0x40000000: 0x40000001 0x4b4d564b 0x564b4d56 0x4d\n", 0 },
        { "0x1 0 0 0x80000000\n", -EINVAL },
        { "0x1 0 0 0x80000000 0 0\n", -EINVAL },
        { "0x1 0 0 0x180000000 0\n", -EINVAL },
        { "zz 0 0 0 0\n", -EINVAL },
        { "-1 0 0 0 0\n", -EINVAL },
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const struct fake_file ff[] = { { "/cpuid", files[i].text, strlen(files[i].text) }, { 0 } };
        char *root = make_root(ff);
        char path[256];
        snprintf(path, sizeof(path), "%s/cpuid", root);
        assert_int_equal(detect_cpuid_load(path, &c), files[i].ret);
        if (i == 2) {
            assert_true(c.hypervisor);
            assert_memory_equal(c.sig, "KVMKVMKVM\0\0\0", 12);
            assert_int_equal(c.max_leaf, 0x40000001);
        }
        remove_root(root);
    }
    assert_int_equal(detect_cpuid_load("/nonexistent/cpuid", &c), -ENOENT);
    /* Too many leaves for the table. */
    char big[65 * 40] = "";
    for (int i = 0; i < 65; i++)
        sprintf(big + strlen(big), "0x%x 0 0 0 0\n", 0x40000000 + i);
    const struct fake_file ff[] = { { "/cpuid", big, strlen(big) }, { 0 } };
    char *root = make_root(ff);
    char path[256];
    snprintf(path, sizeof(path), "%s/cpuid", root);
    assert_int_equal(detect_cpuid_load(path, &c), -EINVAL);
    remove_root(root);
}

static void test_json(void **state)
{
    (void)state;
    struct detect_evidence *e = malloc(sizeof(*e));
    assert_non_null(e);
    const struct fake_file files[] = {
        CPUID_TCG, F("/sys/class/dmi/id/sys_vendor", "qkvm\n"),
        F("/sys/class/dmi/id/product_name", "qkvm Virtual Machine\n"),
        F("/proc/1/environ", "container=\"quoted\"\0"), { 0 },
    };
    char *root = make_root(files);
    assert_int_equal(detect_gather(root, e), 0);
    struct detect_result r;
    detect_decide(e, DETECT_VM_ONLY, &r);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    detect_report_json(f, e, &r);
    fclose(f);
    assert_non_null(strstr(buf, "\"identifier\": \"qkvm\""));
    assert_non_null(strstr(buf, "\"accelerator\": \"tcg\""));
    assert_non_null(strstr(buf, "\"vm_evidence\": \"dmi.sys_vendor\""));
    assert_non_null(strstr(buf, "\"container\": \"container-other\""));
    assert_non_null(strstr(buf, "\"value\": \"TCGTCGTCGTCG\""));
    assert_non_null(strstr(buf, "\"value\": \"\\\"quoted\\\"\""));
    char src[512];
    snprintf(src, sizeof(src), "\"source\": \"%s/sys/class/dmi/id/sys_vendor\"", root);
    assert_non_null(strstr(buf, src));
    for (int ev = 0; ev < EV_COUNT; ev++) {
        char key[128];
        snprintf(key, sizeof(key), "\"%s\": {", detect_ev_name(ev));
        assert_non_null(strstr(buf, key));
    }
    free(buf);
    remove_root(root);
    free(e);
}

static void test_bad_root(void **state)
{
    (void)state;
    struct detect_evidence *e = malloc(sizeof(*e));
    assert_non_null(e);
    assert_int_equal(detect_gather("/nonexistent/root", e), -ENOENT);
    assert_int_equal(detect_gather("/etc/hostname", e), -ENOTDIR);
    char longroot[600];
    memset(longroot, 'a', sizeof(longroot) - 1);
    longroot[0] = '/';
    longroot[sizeof(longroot) - 1] = 0;
    assert_int_equal(detect_gather(longroot, e), -ENAMETOOLONG);
    /* A FIFO where a file is expected is no reason to hang. */
    const struct fake_file none[] = { { 0 } };
    char *root = make_root(none);
    char path[256];
    snprintf(path, sizeof(path), "%s/dev", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/dev/kmsg", root);
    assert_int_equal(mkfifo(path, 0644), 0);
    snprintf(path, sizeof(path), "%s/proc", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/proc/cpuinfo", root);
    assert_int_equal(mkfifo(path, 0644), 0);
    assert_int_equal(detect_gather(root, e), 0);
    assert_int_equal(e->ev[EV_KMSG_PARAVIRT].err, -EINVAL);
    assert_int_equal(e->ev[EV_CPUINFO_VENDOR].err, -EINVAL);
    remove_root(root);
    free(e);
}

/* The running system, against what the test reads itself: CPUID straight from the instruction
 * and /.dockerenv with access(2). A hypervisor bit makes it a VM and a /.dockerenv a container
 * (systemd-detect-virt's rules); the modes agree with each other; the reasons are evidence found. */
static void test_live(void **state)
{
    (void)state;
    struct detect_evidence *e = malloc(sizeof(*e));
    assert_non_null(e);
    assert_int_equal(detect_gather(NULL, e), 0);
    struct detect_result r, vm, ct;
    detect_decide(e, DETECT_ANY, &r);
    detect_decide(e, DETECT_VM_ONLY, &vm);
    detect_decide(e, DETECT_CONTAINER_ONLY, &ct);
    assert_string_equal(e->ev[EV_DOCKERENV].source, "/.dockerenv");
    assert_string_equal(e->ev[EV_CPUID_SIGNATURE].source, "cpuid instruction");

#if defined(__i386__) || defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    assert_true(__get_cpuid(1, &a, &b, &c, &d));
    bool hv = c & (1u << 31);
    assert_true(e->cpuid.available);
    assert_int_equal(e->cpuid.hypervisor, hv);
    assert_string_equal(e->ev[EV_CPUID_HYPERVISOR_BIT].value, hv ? "1" : "0");
    if (hv) {
        uint32_t sig[3];
        __cpuid(0x40000000, a, sig[0], sig[1], sig[2]);
        assert_memory_equal(e->cpuid.sig, sig, 12);
        assert_int_equal(e->cpuid.max_leaf, a);
        assert_int_not_equal(r.vm, DETECT_NONE);
    } else {
        assert_int_equal(e->ev[EV_CPUID_SIGNATURE].err, -ENOENT);
    }
#endif
    bool docker = access("/.dockerenv", F_OK) == 0;
    assert_int_equal(e->ev[EV_DOCKERENV].err == 0, docker);
    if (docker)
        assert_int_not_equal(r.container, DETECT_NONE);

    assert_int_equal(vm.id, r.vm);
    assert_int_equal(ct.id, r.container);
    assert_int_equal(r.id, r.container != DETECT_NONE ? r.container : r.vm);
    assert_true(r.vm == DETECT_NONE || detect_id_is_vm(r.vm));
    assert_true(r.container == DETECT_NONE || detect_id_is_container(r.container));
    if (r.vm != DETECT_NONE) {
        assert_in_range(r.vm_reason, 0, EV_COUNT - 1);
        assert_int_equal(e->ev[r.vm_reason].err, 0);
    }
    if (r.container != DETECT_NONE) {
        assert_in_range(r.container_reason, 0, EV_COUNT - 1);
        assert_int_equal(e->ev[r.container_reason].err, 0);
    }
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_kernel_log),
        cmocka_unit_test(test_cpuid_file),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_bad_root),
        cmocka_unit_test(test_live),
    };
    return cmocka_run_group_tests_name("detect", tests, NULL, NULL);
}
