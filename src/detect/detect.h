/* Is this machine virtual, and which hypervisor or container? The answers and their names are
 * systemd-detect-virt's (src/basic/virt.c, systemd 252+), plus "qkvm" for guests of qkvm.
 *
 * Two steps, kept apart so that tests can feed recorded evidence:
 *   detect_gather()  reads every piece of evidence (files, CPUID, the kernel log) under a root;
 *   detect_decide()  turns the evidence into an identifier, never touching the system.
 *
 * With a root other than "/" every file is read under it, nothing is executed and nothing of the
 * running system is consulted: CPUID comes from ROOT/cpuid (format below), the kernel log from
 * ROOT/dev/kmsg (a regular file in /dev/kmsg's or dmesg's line format), $container of PID 1 from
 * ROOT/proc/1/environ. */
#ifndef QKVM_DETECT_DETECT_H
#define QKVM_DETECT_DETECT_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* In systemd-detect-virt --list order; DETECT_QKVM sits with the VMs. */
enum detect_id {
    DETECT_NONE,
    DETECT_KVM, DETECT_AMAZON, DETECT_QEMU, DETECT_BOCHS, DETECT_XEN, DETECT_UML,
    DETECT_VMWARE, DETECT_ORACLE, DETECT_MICROSOFT, DETECT_ZVM, DETECT_PARALLELS,
    DETECT_BHYVE, DETECT_QNX, DETECT_ACRN, DETECT_POWERVM, DETECT_APPLE, DETECT_SRE,
    DETECT_GOOGLE, DETECT_QKVM, DETECT_VM_OTHER,
    DETECT_SYSTEMD_NSPAWN, DETECT_LXC_LIBVIRT, DETECT_LXC, DETECT_OPENVZ, DETECT_DOCKER,
    DETECT_PODMAN, DETECT_RKT, DETECT_WSL, DETECT_PROOT, DETECT_POUCH, DETECT_CONTAINER_OTHER,
    DETECT_ID_COUNT
};

const char *detect_id_name(enum detect_id id);
/* -1 for a name that is not an identifier. */
int detect_id_from_name(const char *name);
bool detect_id_is_vm(enum detect_id id);
bool detect_id_is_container(enum detect_id id);

/* Every piece of evidence, by its key in --json. */
enum detect_ev {
    EV_CPUID_HYPERVISOR_BIT,   /* leaf 1 ecx bit 31: "1" or "0" */
    EV_CPUID_SIGNATURE,        /* leaf 0x40000000 ebx:ecx:edx, printable part */
    EV_CPUID_PVM,              /* a PVM guest signature, "PVM" when found */
    EV_DMI_PRODUCT_NAME,
    EV_DMI_SYS_VENDOR,
    EV_DMI_BOARD_VENDOR,
    EV_DMI_BIOS_VENDOR,
    EV_DMI_PRODUCT_VERSION,
    EV_DMI_BIOS_VM_BIT,        /* SMBIOS type 0 characteristics extension byte 2 bit 4 */
    EV_CPUINFO_VENDOR,         /* vendor_id of /proc/cpuinfo ("User Mode Linux") */
    EV_PROC_XEN,
    EV_XEN_FEATURES,
    EV_XEN_CAPABILITIES,
    EV_HYPERVISOR_TYPE,
    EV_DT_HYPERVISOR,          /* /proc/device-tree/hypervisor/compatible */
    EV_DT_PARTITION_NAME,
    EV_DT_HMC_MANAGED,
    EV_DT_QEMU_GRAPHIC,
    EV_DT_FW_CFG,              /* an entry of /proc/device-tree named *fw-cfg* */
    EV_DT_COMPATIBLE,
    EV_SYSINFO_VM00,           /* "VM00 Control Program" of /proc/sysinfo (s390) */
    EV_KMSG_PARAVIRT,          /* "Booting paravirtualized kernel on ..." */
    EV_KMSG_HYPERVISOR,        /* "Hypervisor detected: ..." */
    EV_KVM_PVM_MODULE,         /* /sys/module/kvm_pvm: this machine is a PVM host */
    EV_PROC_VZ,
    EV_PROC_BC,
    EV_OSRELEASE,
    EV_TRACER,                 /* comm of our tracer, when TracerPid is not 0 */
    EV_RUN_HOST_CONTAINER_MANAGER,
    EV_OWN_CONTAINER_ENV,      /* $container, consulted only when we are PID 1 */
    EV_RUN_SYSTEMD_CONTAINER,
    EV_PROC1_ENVIRON,          /* container= of PID 1 */
    EV_CONTAINERENV,           /* /run/.containerenv */
    EV_DOCKERENV,              /* /.dockerenv */
    EV_CGROUP_NAMESPACE,       /* "1" when we sit in a cgroup namespace below the root cgroup */
    EV_PROC1_CGROUP,
    EV_SELF_CGROUP,
    EV_COUNT
};

#define DETECT_SOURCE_MAX 512
#define DETECT_VALUE_MAX 512

struct detect_item {
    char source[DETECT_SOURCE_MAX]; /* where it was looked for (a path, "cpuid", "/dev/kmsg", ...) */
    int err;                        /* 0 found; -ENOENT absent; another -errno: unreadable */
    char value[DETECT_VALUE_MAX];   /* the first line; "" where only existence counts */
};

struct detect_cpuid {
    bool available;     /* the instruction ran, or ROOT/cpuid was read */
    bool hypervisor;
    uint32_t max_leaf;  /* eax of leaf 0x40000000 */
    char sig[12];       /* raw, NUL padding kept: "KVMKVMKVM\0\0\0" */
    bool pvm;
};

struct detect_evidence {
    char root[DETECT_SOURCE_MAX];   /* "" for the running system */
    bool is_pid1;                   /* we are PID 1 of our namespace (real root only) */
    struct detect_cpuid cpuid;
    struct detect_item ev[EV_COUNT];
};

enum detect_mode { DETECT_ANY, DETECT_VM_ONLY, DETECT_CONTAINER_ONLY };

struct detect_result {
    enum detect_id id;        /* the answer for the mode asked */
    enum detect_id vm;
    enum detect_id container;
    int vm_reason;            /* the evidence that decided vm, or -1 */
    int container_reason;
    const char *accelerator;  /* for qkvm guests: "kvm", "tcg", or NULL */
    bool pvm_host;
    bool pvm_guest;
};

const char *detect_ev_name(enum detect_ev ev);

/* The CPUID source: the real instruction on x86, or a table read from a file. Lines of ROOT/cpuid
 * are "LEAF EAX EBX ECX EDX" in hex (0x optional); '#' starts a comment; leaves not listed read as
 * zeros. 0, -ENOENT (no file, CPUID unavailable) or -EINVAL (bad line). */
int detect_cpuid_load(const char *path, struct detect_cpuid *out);
/* The running CPU; available stays false where there is no CPUID instruction. */
void detect_cpuid_probe(struct detect_cpuid *out);
/* The running CPU's hypervisor-relevant leaves in ROOT/cpuid format, for recording evidence. */
int detect_cpuid_dump(FILE *f);

/* root is NULL or "/" for the running system. Always fills out; 0 or -errno when root is unusable. */
int detect_gather(const char *root, struct detect_evidence *out);
void detect_decide(const struct detect_evidence *e, enum detect_mode mode,
                   struct detect_result *out);
/* The result and every piece of evidence with its source, as one JSON object. */
void detect_report_json(FILE *f, const struct detect_evidence *e, const struct detect_result *r);

/* The identifier one piece of evidence points at on its own, or DETECT_NONE: what --json shows
 * as "suggests". */
enum detect_id detect_ev_suggests(const struct detect_evidence *e, enum detect_ev ev);

/* Fills EV_KMSG_*: from /dev/kmsg, else syslog(2) (what dmesg reads), or ROOT/dev/kmsg. */
void detect_kmsg_gather(struct detect_evidence *e);

/* --chroot and --private-users of systemd-detect-virt: 1 yes, 0 no, -errno unknown. */
int detect_in_chroot(void);
int detect_in_userns(void);

#endif
