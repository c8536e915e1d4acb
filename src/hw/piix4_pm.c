/* The PIIX4's power-management function at 00:01.3 (8086:7113, revision 3), where QEMU's -M pc
 * has it beside the PIIX3's ISA bridge and IDE (hw/piix.c). SeaBIOS finds it by its IDs
 * (src/fw/pciinit.c, piix4_pm_setup) and programs it as on QEMU: the PM block's base in PMBA
 * (0x40, a 64-byte block: bits 15:6; bit 0 reads 1, an I/O address) and its enable bit in
 * PMREGMISC (0x80 bit 0), the SMBus base (0x90) and enable (0xd2 bit 0), and the interrupt line
 * 9, the SCI. The PM block (hw/acpi_pm.c: PM1 event and control, the PM timer) decodes at PMBA
 * while PMREGMISC enables it, and nowhere before: Linux finds it through the FADT at 0x600, which
 * is where SeaBIOS puts it. A PMBA elsewhere turns the block off (said under -d guest_errors):
 * QEMU moves it, qkvm's port bus cannot add a region inside a port access. The SMBus registers are configuration only: no SMBus controller
 * answers at their base (SeaBIOS only writes them; QEMU's has no devices on it by default). */
#include "hw/acpi_pm.h"
#include "hw/pci.h"
#include "util/log.h"
#include "vm/acpi.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PIIX4_PM_SLOT    1
#define PIIX4_PM_FN      3
#define PIIX4_PMBA       0x40   /* 82371AB datasheet 3.2.4: PM base, bits 15:6 */
#define PIIX4_PMREGMISC  0x80   /* bit 0: the PM I/O space decodes */
#define PIIX4_SMBBA      0x90   /* SMBus base, bits 15:4 */
#define PIIX4_SMBHSTCFG  0xd2   /* bit 0: the SMBus I/O space decodes */
#define PIIX4_DEVACTB_APMC 0x5b /* byte 3 of DEVACTB (0x58): bit 1 is APMC_EN (bit 25) */

struct piix4_pm {
    struct pci_device dev;
};

static bool piix4_overlaps(unsigned off, unsigned size, unsigned start, unsigned len)
{
    return off < start + len && start < off + size;
}

/* Moves the PM block to what PMBA and PMREGMISC say. Config lock held (or the machine paused). */
static void piix4_pm_update(struct pci_device *d)
{
    uint32_t pmba = (uint32_t)d->config[PIIX4_PMBA] | (uint32_t)d->config[PIIX4_PMBA + 1] << 8;
    int base = (d->config[PIIX4_PMREGMISC] & 1) ? (int)(pmba & 0xffc0) : -1;
    int ret = acpi_pm_place(d->m, base);
    if (ret == -EOPNOTSUPP)
        machine_log_guest(d->m, LOG_GUEST, "piix4 pm base",
                          "piix4-pm: PM base 0x%x: qkvm decodes the PM block only at 0x%x: off", (unsigned)base,
                          ACPI_PM_BASE);
}

static void piix4_pm_config_written(struct pci_device *d, unsigned off, unsigned size)
{
    if (piix4_overlaps(off, size, PIIX4_PMBA, 4) || piix4_overlaps(off, size, PIIX4_PMREGMISC, 1))
        piix4_pm_update(d);
}

/* The registers travel in the function's config space (the "pci" section of 01.3); this section
 * only puts the PM block where the loaded registers say, after every section is in. */
static const struct vmstate_field piix4_pm_fields[] = {
    VMSTATE_END,
};

static void piix4_pm_post_load(void *opaque)
{
    struct piix4_pm *p = opaque;
    piix4_pm_update(&p->dev);
}

static const struct vmstate_desc piix4_pm_vmstate = {
    .name = "piix4-pm", .version = 1, .min_version = 1, .size = sizeof(struct piix4_pm),
    .fields = piix4_pm_fields, .post_load = piix4_pm_post_load,
};

static int piix4_pm_create(struct machine *m)
{
    struct piix4_pm *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int ret = machine_add_cleanup(m, free, p);
    if (ret) {
        free(p);
        return ret;
    }
    struct pci_device *d = &p->dev;
    /* QEMU's identity for its piix4-pm: class "other bridge", Red Hat's subsystem IDs */
    pci_device_init(d, "piix4-pm", 0x8086, 0x7113, 0x068000, 0x03, 0x1af4, 0x1100);
    d->config[PIIX4_PMBA] = 0x01;
    d->wmask[PIIX4_PMBA] = 0xc0;
    d->wmask[PIIX4_PMBA + 1] = 0xff;
    d->config[PIIX4_SMBBA] = 0x01;
    d->wmask[PIIX4_SMBBA] = 0xf0;
    d->wmask[PIIX4_SMBBA + 1] = 0xff;
    d->wmask[PIIX4_PMREGMISC] = 0x01;
    d->wmask[PIIX4_SMBHSTCFG] = 0x0f;
    /* There is no SMM: APMC_EN set tells SeaBIOS (smm.c, piix4_apmc_smm_setup) that SMM is set
     * up already, as QEMU does without SMM; else it raises an SMI through port 0xb2 and spins
     * until a handler that never runs has relocated SMBASE. */
    d->config[PIIX4_DEVACTB_APMC] = 0x02;
    d->opaque = p;
    d->config_written = piix4_pm_config_written;
    if ((ret = pci_register_function(m, d, PIIX4_PM_SLOT, PIIX4_PM_FN)))
        return ret;
    return vmstate_register(m, &piix4_pm_vmstate, 0, p);
}

static int piix4_pm_init(struct machine *m)
{
    return m->cfg && m->cfg->type == MACHINE_PC ? piix4_pm_create(m) : 0;
}
/* after the PIIX3's function 0 (INIT_BUS + 1), whose slot it joins */
MACHINE_INIT(piix4_pm_init, INIT_BUS + 2, NULL)
