/* The PC machine's firmware interface. The items are those QEMU's pc machine gives SeaBIOS
 * (hw/i386/fw_cfg.c, hw/nvram/fw_cfg.c), so SeaBIOS takes the same paths it takes under QEMU;
 * where QEMU adds a file only when an option asks for it (bootorder, ACPI, SMBIOS), qkvm does not
 * have it yet and SeaBIOS's defaults apply. */
#include "vm/pc.h"

#include "hw/fw_cfg.h"
#include "util/log.h"
#include "vm/machine.h"

#include <errno.h>
#include <string.h>

/* etc/e820 entries: RAM only, as QEMU gives them; SeaBIOS reserves its own areas. */
struct pc_e820 {
    uint64_t addr, len;
    uint32_t type;
} __attribute__((packed));

static int pc_add_e820(struct machine *m)
{
    struct pc_e820 e[2];
    int n = 0;
    uint64_t low = m->ram_size < MACHINE_LOW_RAM_END ? m->ram_size : MACHINE_LOW_RAM_END;
    e[n++] = (struct pc_e820){ 0, low, 1 };
    if (m->ram_size > low)
        e[n++] = (struct pc_e820){ MACHINE_HIGH_RAM_BASE, m->ram_size - low, 1 };
    return fw_cfg_add_file(m->fw_cfg, "etc/e820", e, (size_t)n * sizeof(e[0]));
}

int pc_fw_cfg_setup(struct machine *m)
{
    int ret = fw_cfg_create(m);
    if (ret)
        return ret;
    struct fw_cfg *f = m->fw_cfg;
    uint8_t uuid[16] = { 0 };
    /* QEMU's boot-fail-wait is -1 unless -boot reboot-timeout= says otherwise: SeaBIOS then
     * prints "No bootable device." and waits instead of rebooting. */
    uint8_t fail_wait[4] = { 0xff, 0xff, 0xff, 0xff };
    uint8_t sercon[2] = { PC_SERCON_PORT & 0xff, PC_SERCON_PORT >> 8 };
    if ((ret = fw_cfg_add_i64(f, FW_CFG_RAM_SIZE, m->ram_size)) ||
        (ret = fw_cfg_add_i16(f, FW_CFG_NB_CPUS, (uint16_t)m->ncpus)) ||
        (ret = fw_cfg_add_i16(f, FW_CFG_MAX_CPUS, (uint16_t)m->ncpus)) ||
        (ret = fw_cfg_add_i16(f, FW_CFG_NOGRAPHIC, 1)) ||
        (ret = fw_cfg_add_i16(f, FW_CFG_BOOT_MENU, m->cfg->boot_menu)) ||
        (ret = fw_cfg_add_bytes(f, FW_CFG_UUID, uuid, sizeof(uuid))) ||
        (ret = pc_add_e820(m)) ||
        (ret = fw_cfg_add_file(f, "etc/boot-fail-wait", fail_wait, sizeof(fail_wait))) ||
        /* qkvm has no display: SeaBIOS's own screen output goes to COM1, as QEMU arranges
         * with -nographic */
        (ret = fw_cfg_add_file(f, "etc/sercon-port", sercon, sizeof(sercon))))
        log_error("fw_cfg: cannot fill in the machine's items: %s", strerror(-ret));
    return ret;
}

static int pc_init(struct machine *m)
{
    return m->cfg && m->cfg->type == MACHINE_PC ? pc_fw_cfg_setup(m) : 0;
}
MACHINE_INIT(pc_init, INIT_DEVICE, NULL)
