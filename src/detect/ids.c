/* Identifier names, as systemd-detect-virt prints them, and the evidence keys of --json. */
#include "detect/detect.h"

#include <string.h>

static const char *const id_names[DETECT_ID_COUNT] = {
    [DETECT_NONE] = "none",
    [DETECT_KVM] = "kvm",
    [DETECT_AMAZON] = "amazon",
    [DETECT_QEMU] = "qemu",
    [DETECT_BOCHS] = "bochs",
    [DETECT_XEN] = "xen",
    [DETECT_UML] = "uml",
    [DETECT_VMWARE] = "vmware",
    [DETECT_ORACLE] = "oracle",
    [DETECT_MICROSOFT] = "microsoft",
    [DETECT_ZVM] = "zvm",
    [DETECT_PARALLELS] = "parallels",
    [DETECT_BHYVE] = "bhyve",
    [DETECT_QNX] = "qnx",
    [DETECT_ACRN] = "acrn",
    [DETECT_POWERVM] = "powervm",
    [DETECT_APPLE] = "apple",
    [DETECT_SRE] = "sre",
    [DETECT_GOOGLE] = "google",
    [DETECT_QKVM] = "qkvm",
    [DETECT_VM_OTHER] = "vm-other",
    [DETECT_SYSTEMD_NSPAWN] = "systemd-nspawn",
    [DETECT_LXC_LIBVIRT] = "lxc-libvirt",
    [DETECT_LXC] = "lxc",
    [DETECT_OPENVZ] = "openvz",
    [DETECT_DOCKER] = "docker",
    [DETECT_PODMAN] = "podman",
    [DETECT_RKT] = "rkt",
    [DETECT_WSL] = "wsl",
    [DETECT_PROOT] = "proot",
    [DETECT_POUCH] = "pouch",
    [DETECT_CONTAINER_OTHER] = "container-other",
};

const char *detect_id_name(enum detect_id id)
{
    return (unsigned)id < DETECT_ID_COUNT ? id_names[id] : "unknown";
}

int detect_id_from_name(const char *name)
{
    for (int i = 0; i < DETECT_ID_COUNT; i++)
        if (strcmp(id_names[i], name) == 0)
            return i;
    return -1;
}

bool detect_id_is_vm(enum detect_id id)
{
    return id > DETECT_NONE && id <= DETECT_VM_OTHER;
}

bool detect_id_is_container(enum detect_id id)
{
    return id >= DETECT_SYSTEMD_NSPAWN && id < DETECT_ID_COUNT;
}

static const char *const ev_names[EV_COUNT] = {
    [EV_CPUID_HYPERVISOR_BIT] = "cpuid.hypervisor_bit",
    [EV_CPUID_SIGNATURE] = "cpuid.signature",
    [EV_CPUID_PVM] = "cpuid.pvm_signature",
    [EV_DMI_PRODUCT_NAME] = "dmi.product_name",
    [EV_DMI_SYS_VENDOR] = "dmi.sys_vendor",
    [EV_DMI_BOARD_VENDOR] = "dmi.board_vendor",
    [EV_DMI_BIOS_VENDOR] = "dmi.bios_vendor",
    [EV_DMI_PRODUCT_VERSION] = "dmi.product_version",
    [EV_DMI_BIOS_VM_BIT] = "dmi.bios_characteristics_vm",
    [EV_CPUINFO_VENDOR] = "cpuinfo.vendor_id",
    [EV_PROC_XEN] = "xen.proc_xen",
    [EV_XEN_FEATURES] = "xen.features",
    [EV_XEN_CAPABILITIES] = "xen.capabilities",
    [EV_HYPERVISOR_TYPE] = "hypervisor.type",
    [EV_DT_HYPERVISOR] = "device_tree.hypervisor_compatible",
    [EV_DT_PARTITION_NAME] = "device_tree.ibm_partition_name",
    [EV_DT_HMC_MANAGED] = "device_tree.hmc_managed",
    [EV_DT_QEMU_GRAPHIC] = "device_tree.qemu_graphic_width",
    [EV_DT_FW_CFG] = "device_tree.fw_cfg",
    [EV_DT_COMPATIBLE] = "device_tree.compatible",
    [EV_SYSINFO_VM00] = "sysinfo.vm00_control_program",
    [EV_KMSG_PARAVIRT] = "kernel_log.paravirt",
    [EV_KMSG_HYPERVISOR] = "kernel_log.hypervisor_detected",
    [EV_KVM_PVM_MODULE] = "kvm_pvm.module",
    [EV_PROC_VZ] = "openvz.proc_vz",
    [EV_PROC_BC] = "openvz.proc_bc",
    [EV_OSRELEASE] = "wsl.osrelease",
    [EV_TRACER] = "proot.tracer",
    [EV_RUN_HOST_CONTAINER_MANAGER] = "container.run_host_container_manager",
    [EV_OWN_CONTAINER_ENV] = "container.own_environment",
    [EV_RUN_SYSTEMD_CONTAINER] = "container.run_systemd_container",
    [EV_PROC1_ENVIRON] = "container.pid1_environ",
    [EV_CONTAINERENV] = "container.containerenv",
    [EV_DOCKERENV] = "container.dockerenv",
    [EV_CGROUP_NAMESPACE] = "container.cgroup_namespace",
    [EV_PROC1_CGROUP] = "cgroup.pid1",
    [EV_SELF_CGROUP] = "cgroup.self",
};

const char *detect_ev_name(enum detect_ev ev)
{
    return (unsigned)ev < EV_COUNT ? ev_names[ev] : "unknown";
}
