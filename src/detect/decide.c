/* The decision, in systemd-detect-virt's order (src/basic/virt.c: detect_vm(), detect_container(),
 * detect_virtualization()), with qkvm's own identity in front of it. */
#include "detect/detect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FOUND(e, k) ((e)->ev[k].err == 0)
#define VAL(e, k) ((e)->ev[k].value)

static const struct {
    char sig[13];
    enum detect_id id;
} cpuid_sigs[] = {
    { "XenVMMXenVMM", DETECT_XEN },
    { "KVMKVMKVM", DETECT_KVM },
    { "Linux KVM Hv", DETECT_KVM },     /* KVM with Hyper-V enlightenments */
    { "TCGTCGTCGTCG", DETECT_QEMU },
    { "VMwareVMware", DETECT_VMWARE },
    { "Microsoft Hv", DETECT_MICROSOFT },
    { "bhyve bhyve ", DETECT_BHYVE },
    { "QNXQVMBSQG", DETECT_QNX },
    { "ACRNACRNACRN", DETECT_ACRN },
    { "SRESRESRESRE", DETECT_SRE },
    { "Apple VZ", DETECT_APPLE },
};

/* Prefixes of the DMI strings, first match wins. */
static const struct {
    const char *vendor;
    enum detect_id id;
} dmi_vendors[] = {
    { "KVM", DETECT_KVM },
    { "OpenStack", DETECT_KVM },
    { "KubeVirt", DETECT_KVM },
    { "Amazon EC2", DETECT_AMAZON },
    { "QEMU", DETECT_QEMU },
    { "VMware", DETECT_VMWARE },
    { "VMW", DETECT_VMWARE },
    { "innotek GmbH", DETECT_ORACLE },
    { "VirtualBox", DETECT_ORACLE },
    { "Oracle Corporation", DETECT_ORACLE },
    { "Xen", DETECT_XEN },
    { "Bochs", DETECT_BOCHS },
    { "Parallels", DETECT_PARALLELS },
    { "BHYVE", DETECT_BHYVE },
    { "Hyper-V", DETECT_MICROSOFT },
    { "Apple Virtualization", DETECT_APPLE },
    { "Google Compute Engine", DETECT_GOOGLE },
};

/* product_name before sys_vendor, so that "KVM" on a "QEMU" vendor says kvm. */
static const enum detect_ev dmi_order[] = {
    EV_DMI_PRODUCT_NAME, EV_DMI_SYS_VENDOR, EV_DMI_BOARD_VENDOR, EV_DMI_BIOS_VENDOR,
    EV_DMI_PRODUCT_VERSION,
};

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static enum detect_id cpuid_sig_id(const struct detect_cpuid *c)
{
    if (!c->available || !c->hypervisor)
        return DETECT_NONE;
    for (size_t i = 0; i < sizeof(cpuid_sigs) / sizeof(cpuid_sigs[0]); i++)
        if (memcmp(c->sig, cpuid_sigs[i].sig, 12) == 0)
            return cpuid_sigs[i].id;
    return DETECT_VM_OTHER;
}

static enum detect_id dmi_string_id(const char *s)
{
    for (size_t i = 0; i < sizeof(dmi_vendors) / sizeof(dmi_vendors[0]); i++)
        if (starts_with(s, dmi_vendors[i].vendor))
            return dmi_vendors[i].id;
    return DETECT_NONE;
}

static bool is_qkvm_vendor(const struct detect_evidence *e)
{
    return FOUND(e, EV_DMI_SYS_VENDOR) && strcmp(VAL(e, EV_DMI_SYS_VENDOR), "qkvm") == 0;
}

static enum detect_id dmi_vendor_id(const struct detect_evidence *e, int *reason)
{
    for (size_t i = 0; i < sizeof(dmi_order) / sizeof(dmi_order[0]); i++) {
        enum detect_ev ev = dmi_order[i];
        if (!FOUND(e, ev))
            continue;
        enum detect_id id = dmi_string_id(VAL(e, ev));
        if (id != DETECT_NONE) {
            *reason = (int)ev;
            return id;
        }
    }
    return DETECT_NONE;
}

/* EC2 metal instances carry the same DMI vendor as its VMs: the BIOS VM bit, else ".metal" in
 * the product name, tells them apart. */
static enum detect_id dmi_id(const struct detect_evidence *e, int *reason)
{
    enum detect_id id = dmi_vendor_id(e, reason);
    bool vm_bit_known = FOUND(e, EV_DMI_BIOS_VM_BIT);
    bool vm_bit = vm_bit_known && strcmp(VAL(e, EV_DMI_BIOS_VM_BIT), "1") == 0;
    if (id == DETECT_AMAZON) {
        if (vm_bit_known) {
            *reason = EV_DMI_BIOS_VM_BIT;
            return vm_bit ? DETECT_AMAZON : DETECT_NONE;
        }
        if (!FOUND(e, EV_DMI_PRODUCT_NAME))
            return DETECT_AMAZON;
        const char *m = strstr(VAL(e, EV_DMI_PRODUCT_NAME), ".metal");
        if (m && (m[6] == 0 || m[6] == '-')) {
            *reason = EV_DMI_PRODUCT_NAME;
            return DETECT_NONE;
        }
        return DETECT_AMAZON;
    }
    if (id == DETECT_NONE && vm_bit) {
        *reason = EV_DMI_BIOS_VM_BIT;
        return DETECT_VM_OTHER;
    }
    return id;
}

/* 1 for the hardware domain (dom0), which is no guest, 0 for a domU. */
static int xen_dom0(const struct detect_evidence *e)
{
    if (FOUND(e, EV_XEN_FEATURES)) {
        char *end;
        unsigned long features = strtoul(VAL(e, EV_XEN_FEATURES), &end, 16);
        if (end != VAL(e, EV_XEN_FEATURES))
            return !!(features & (1ul << 11));   /* XENFEAT_dom0 */
    }
    if (!FOUND(e, EV_XEN_CAPABILITIES))
        return 0;
    char caps[DETECT_VALUE_MAX];
    snprintf(caps, sizeof(caps), "%s", VAL(e, EV_XEN_CAPABILITIES));
    char *save = NULL;
    for (char *c = strtok_r(caps, ",", &save); c; c = strtok_r(NULL, ",", &save))
        if (strcmp(c, "control_d") == 0)
            return 1;
    return 0;
}

static enum detect_id hypervisor_type_id(const struct detect_evidence *e)
{
    if (!FOUND(e, EV_HYPERVISOR_TYPE))
        return DETECT_NONE;
    return strcmp(VAL(e, EV_HYPERVISOR_TYPE), "xen") == 0 ? DETECT_XEN : DETECT_VM_OTHER;
}

static enum detect_id dt_hypervisor_id(const char *compat)
{
    if (strcmp(compat, "linux,kvm") == 0)
        return DETECT_KVM;
    if (strstr(compat, "xen"))
        return DETECT_XEN;
    if (strstr(compat, "vmware"))
        return DETECT_VMWARE;
    return DETECT_VM_OTHER;
}

static enum detect_id device_tree_id(const struct detect_evidence *e, int *reason)
{
    if (FOUND(e, EV_DT_HYPERVISOR)) {
        *reason = EV_DT_HYPERVISOR;
        return dt_hypervisor_id(VAL(e, EV_DT_HYPERVISOR));
    }
    if (FOUND(e, EV_DT_PARTITION_NAME) && FOUND(e, EV_DT_HMC_MANAGED) &&
        !FOUND(e, EV_DT_QEMU_GRAPHIC)) {
        *reason = EV_DT_HMC_MANAGED;
        return DETECT_POWERVM;
    }
    if (FOUND(e, EV_DT_FW_CFG)) {
        *reason = EV_DT_FW_CFG;
        return DETECT_QEMU;
    }
    if (FOUND(e, EV_DT_COMPATIBLE) && strcmp(VAL(e, EV_DT_COMPATIBLE), "qemu,pseries") == 0) {
        *reason = EV_DT_COMPATIBLE;
        return DETECT_QEMU;
    }
    return DETECT_NONE;
}

static enum detect_id zvm_id(const struct detect_evidence *e)
{
    if (!FOUND(e, EV_SYSINFO_VM00))
        return DETECT_NONE;
    return strcmp(VAL(e, EV_SYSINFO_VM00), "z/VM") == 0 ? DETECT_ZVM : DETECT_KVM;
}

static enum detect_id decide_vm(const struct detect_evidence *e, int *reason)
{
    bool other = false, hyperv = false;
    int other_reason = -1;
    int dmi_reason = -1;
    int dom0 = 0;
    enum detect_id v;
    *reason = -1;

    /* qkvm tells its guests who it is in DMI; CPUID there says only kvm or tcg. */
    if (is_qkvm_vendor(e)) {
        *reason = EV_DMI_SYS_VENDOR;
        return DETECT_QKVM;
    }

    /* DMI first for the clouds and desktop hypervisors that run on KVM or cloak as Hyper-V. */
    enum detect_id dmi = dmi_id(e, &dmi_reason);
    if (dmi == DETECT_ORACLE || dmi == DETECT_XEN || dmi == DETECT_AMAZON ||
        dmi == DETECT_PARALLELS || dmi == DETECT_GOOGLE) {
        *reason = dmi_reason;
        return dmi;
    }

    /* UML runs as a process nested in anything, so it is asked before CPUID. */
    if (FOUND(e, EV_CPUINFO_VENDOR) && starts_with(VAL(e, EV_CPUINFO_VENDOR), "User Mode Linux")) {
        *reason = EV_CPUINFO_VENDOR;
        return DETECT_UML;
    }

    /* Xen PV does not override CPUID when nested; dom0 waits for CPUID to say what is below. */
    if (FOUND(e, EV_PROC_XEN)) {
        dom0 = xen_dom0(e);
        if (!dom0) {
            *reason = EV_PROC_XEN;
            return DETECT_XEN;
        }
    }

    v = cpuid_sig_id(&e->cpuid);
    if (v == DETECT_MICROSOFT) {
        /* QEMU shows Hyper-V's signature when it offers the enlightenments. */
        hyperv = true;
    } else if (v == DETECT_VM_OTHER) {
        other = true;
        other_reason = EV_CPUID_SIGNATURE;
    } else if (v != DETECT_NONE) {
        *reason = EV_CPUID_SIGNATURE;
        return v;
    }
    if (dom0)
        goto finish;

    if (dmi == DETECT_VM_OTHER) {
        other = true;
        if (other_reason < 0)
            other_reason = dmi_reason;
    } else if (dmi != DETECT_NONE) {
        *reason = dmi_reason;
        return dmi;
    }

    v = hypervisor_type_id(e);
    if (v == DETECT_VM_OTHER) {
        other = true;
        if (other_reason < 0)
            other_reason = EV_HYPERVISOR_TYPE;
    } else if (v != DETECT_NONE) {
        *reason = EV_HYPERVISOR_TYPE;
        return v;
    }

    int dt_reason = -1;
    v = device_tree_id(e, &dt_reason);
    if (v == DETECT_VM_OTHER) {
        other = true;
        if (other_reason < 0)
            other_reason = dt_reason;
    } else if (v != DETECT_NONE) {
        *reason = dt_reason;
        return v;
    }

    v = zvm_id(e);
    if (v != DETECT_NONE) {
        *reason = EV_SYSINFO_VM00;
        return v;
    }

finish:
    if (hyperv) {
        *reason = EV_CPUID_SIGNATURE;
        return DETECT_MICROSOFT;
    }
    if (other) {
        *reason = other_reason;
        return DETECT_VM_OTHER;
    }
    return DETECT_NONE;
}

static enum detect_id container_files_id(const struct detect_evidence *e, int *reason)
{
    /* podman first: /.dockerenv can end up in any image. */
    if (FOUND(e, EV_CONTAINERENV)) {
        *reason = EV_CONTAINERENV;
        return DETECT_PODMAN;
    }
    if (FOUND(e, EV_DOCKERENV)) {
        *reason = EV_DOCKERENV;
        return DETECT_DOCKER;
    }
    return DETECT_NONE;
}

/* A container manager's name, as it puts it in $container. */
static enum detect_id container_name_id(const struct detect_evidence *e, const char *name,
                                        int *reason)
{
    if (strcmp(name, "oci") == 0) {
        /* Not a manager: some images hard-code it. */
        enum detect_id v = container_files_id(e, reason);
        return v != DETECT_NONE ? v : DETECT_CONTAINER_OTHER;
    }
    int id = detect_id_from_name(name);
    return id >= 0 && detect_id_is_container(id) ? (enum detect_id)id : DETECT_CONTAINER_OTHER;
}

static enum detect_id decide_container(const struct detect_evidence *e, int *reason)
{
    *reason = -1;
    /* /proc/vz is there inside and outside an OpenVZ container, /proc/bc only outside. */
    if (FOUND(e, EV_PROC_VZ) && e->ev[EV_PROC_BC].err == -ENOENT) {
        *reason = EV_PROC_VZ;
        return DETECT_OPENVZ;
    }
    if (FOUND(e, EV_OSRELEASE) &&
        (strstr(VAL(e, EV_OSRELEASE), "Microsoft") || strstr(VAL(e, EV_OSRELEASE), "WSL"))) {
        *reason = EV_OSRELEASE;
        return DETECT_WSL;
    }
    if (FOUND(e, EV_TRACER) && starts_with(VAL(e, EV_TRACER), "proot")) {
        *reason = EV_TRACER;
        return DETECT_PROOT;
    }
    static const enum detect_ev named[] = {
        EV_RUN_HOST_CONTAINER_MANAGER, EV_OWN_CONTAINER_ENV, EV_RUN_SYSTEMD_CONTAINER,
        EV_PROC1_ENVIRON,
    };
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        enum detect_ev ev = named[i];
        if (ev == EV_OWN_CONTAINER_ENV && e->is_pid1) {
            /* As PID 1 our own $container is authoritative: set but empty means no container. */
            if (!FOUND(e, ev))
                break;
            *reason = ev;
            if (!VAL(e, ev)[0])
                return DETECT_NONE;
            return container_name_id(e, VAL(e, ev), reason);
        }
        if (!FOUND(e, ev))
            continue;
        /* The files count only when not empty; PID 1's environment counts when set at all. */
        if (ev != EV_PROC1_ENVIRON && !VAL(e, ev)[0])
            continue;
        *reason = ev;
        return container_name_id(e, VAL(e, ev), reason);
    }
    enum detect_id v = container_files_id(e, reason);
    if (v != DETECT_NONE)
        return v;
    if (FOUND(e, EV_CGROUP_NAMESPACE) && strcmp(VAL(e, EV_CGROUP_NAMESPACE), "1") == 0) {
        *reason = EV_CGROUP_NAMESPACE;
        return DETECT_CONTAINER_OTHER;
    }
    return DETECT_NONE;
}

void detect_decide(const struct detect_evidence *e, enum detect_mode mode,
                   struct detect_result *out)
{
    *out = (struct detect_result){ .vm_reason = -1, .container_reason = -1 };
    out->vm = decide_vm(e, &out->vm_reason);
    out->container = decide_container(e, &out->container_reason);
    out->pvm_host = FOUND(e, EV_KVM_PVM_MODULE);
    out->pvm_guest = e->cpuid.available && e->cpuid.pvm;
    if (out->vm == DETECT_QKVM) {
        enum detect_id c = cpuid_sig_id(&e->cpuid);
        out->accelerator = c == DETECT_KVM ? "kvm" : c == DETECT_QEMU ? "tcg" : NULL;
    }
    switch (mode) {
    case DETECT_VM_ONLY: out->id = out->vm; break;
    case DETECT_CONTAINER_ONLY: out->id = out->container; break;
    default: out->id = out->container != DETECT_NONE ? out->container : out->vm; break;
    }
}

/* Linux's names in "Hypervisor detected:" and "Booting paravirtualized kernel on". */
static enum detect_id kernel_name_id(const char *s)
{
    static const struct {
        const char *prefix;
        enum detect_id id;
    } names[] = {
        { "bare hardware", DETECT_NONE }, { "KVM", DETECT_KVM }, { "PVM", DETECT_KVM },
        { "Xen", DETECT_XEN }, { "VMware", DETECT_VMWARE }, { "Microsoft", DETECT_MICROSOFT },
        { "Hyper-V", DETECT_MICROSOFT }, { "ACRN", DETECT_ACRN }, { "Bhyve", DETECT_BHYVE },
        { "bhyve", DETECT_BHYVE },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (starts_with(s, names[i].prefix))
            return names[i].id;
    return DETECT_VM_OTHER;
}

static enum detect_id cgroup_path_id(const char *s)
{
    if (strstr(s, "/docker/") || strstr(s, "/docker-"))
        return DETECT_DOCKER;
    if (strstr(s, "/libpod-") || strstr(s, "/libpod_parent"))
        return DETECT_PODMAN;
    if (strstr(s, "/lxc/") || strstr(s, "/lxc.payload"))
        return DETECT_LXC;
    return DETECT_NONE;
}

enum detect_id detect_ev_suggests(const struct detect_evidence *e, enum detect_ev ev)
{
    if ((unsigned)ev >= EV_COUNT || !FOUND(e, ev))
        return DETECT_NONE;
    const char *v = VAL(e, ev);
    int reason;
    switch (ev) {
    case EV_CPUID_SIGNATURE: return cpuid_sig_id(&e->cpuid);
    case EV_CPUID_PVM: return DETECT_KVM;
    case EV_DMI_SYS_VENDOR:
        if (is_qkvm_vendor(e))
            return DETECT_QKVM;
        return dmi_string_id(v);
    case EV_DMI_PRODUCT_NAME: case EV_DMI_BOARD_VENDOR: case EV_DMI_BIOS_VENDOR:
    case EV_DMI_PRODUCT_VERSION:
        return dmi_string_id(v);
    case EV_DMI_BIOS_VM_BIT: return strcmp(v, "1") == 0 ? DETECT_VM_OTHER : DETECT_NONE;
    case EV_CPUINFO_VENDOR: return starts_with(v, "User Mode Linux") ? DETECT_UML : DETECT_NONE;
    case EV_PROC_XEN: return xen_dom0(e) ? DETECT_NONE : DETECT_XEN;
    case EV_HYPERVISOR_TYPE: return hypervisor_type_id(e);
    case EV_DT_HYPERVISOR: return dt_hypervisor_id(v);
    case EV_DT_HMC_MANAGED: case EV_DT_FW_CFG: case EV_DT_COMPATIBLE:
        return device_tree_id(e, &reason);
    case EV_SYSINFO_VM00: return zvm_id(e);
    case EV_KMSG_PARAVIRT: case EV_KMSG_HYPERVISOR: return kernel_name_id(v);
    case EV_PROC_VZ: return e->ev[EV_PROC_BC].err == -ENOENT ? DETECT_OPENVZ : DETECT_NONE;
    case EV_OSRELEASE:
        return strstr(v, "Microsoft") || strstr(v, "WSL") ? DETECT_WSL : DETECT_NONE;
    case EV_TRACER: return starts_with(v, "proot") ? DETECT_PROOT : DETECT_NONE;
    case EV_RUN_HOST_CONTAINER_MANAGER: case EV_OWN_CONTAINER_ENV:
    case EV_RUN_SYSTEMD_CONTAINER: case EV_PROC1_ENVIRON:
        return v[0] ? container_name_id(e, v, &reason) : DETECT_NONE;
    case EV_CONTAINERENV: return DETECT_PODMAN;
    case EV_DOCKERENV: return DETECT_DOCKER;
    case EV_CGROUP_NAMESPACE: return strcmp(v, "1") == 0 ? DETECT_CONTAINER_OTHER : DETECT_NONE;
    case EV_PROC1_CGROUP: case EV_SELF_CGROUP: return cgroup_path_id(v);
    default: return DETECT_NONE;
    }
}
