/* The ACPI fixed hardware the FADT describes: PM1 event and control registers (poweroff is
 * SLP_TYP=S5 with SLP_EN), the fixed power button (PM1 status bit 8, raising the SCI while its
 * enable bit is set), the 3.579545 MHz PM timer Linux can calibrate against, and the reset
 * register at 0xcf9. On the PC the PIIX4's PM function moves the block (acpi_pm_place). */
#include "hw/acpi_pm.h"
#include "util/clock.h"
#include "vm/acpi.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define PM1_SCI_EN  0x0001
#define PM1_PWRBTN  0x0100      /* PWRBTN_STS in status, PWRBTN_EN in enable */
#define PM1_SLP_EN  0x2000
#define PM_TIMER_HZ 3579545ull

struct acpi_pm {
    struct machine *m;
    pthread_mutex_t lock;       /* the button is pressed on the I/O thread, read on a vCPU's */
    uint16_t evt_sts, evt_en, cnt;
    int sci_level;
    atomic_bool on;             /* the block decodes (the PC's PIIX4 turns it on and off) */
};

/* The SCI is level-triggered: high while an enabled status bit is set. Called with pm->lock. */
static void pm_update_sci(struct acpi_pm *pm)
{
    int level = (pm->evt_sts & pm->evt_en & PM1_PWRBTN) && (pm->cnt & PM1_SCI_EN);
    if (level != pm->sci_level) {
        pm->sci_level = level;
        machine_set_irq(pm->m, ACPI_SCI_IRQ, level);
    }
}

static void acpi_pm_power_button(struct machine *m)
{
    struct acpi_pm *pm = m->power_button_opaque;
    pthread_mutex_lock(&pm->lock);
    pm->evt_sts |= PM1_PWRBTN;
    pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

static void pm_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct acpi_pm *pm = opaque;
    uint8_t regs[ACPI_PM_LEN];
    memset(data, 0xff, size);
    if (!atomic_load(&pm->on))
        return;   /* nothing answers there */
    pthread_mutex_lock(&pm->lock);
    memcpy(regs + 0, &pm->evt_sts, 2);
    memcpy(regs + 2, &pm->evt_en, 2);
    memcpy(regs + 4, &pm->cnt, 2);
    memset(regs + 6, 0, 2);
    pthread_mutex_unlock(&pm->lock);
    uint32_t tmr = (uint32_t)(clock_now_ns() * PM_TIMER_HZ / 1000000000ull);
    memcpy(regs + 8, &tmr, 4);
    if (off < sizeof(regs))
        memcpy(data, regs + off, off + size > sizeof(regs) ? sizeof(regs) - off : size);
}

static void pm_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct acpi_pm *pm = opaque;
    uint16_t v = 0;
    memcpy(&v, data, size > 2 ? 2 : size);
    if (!atomic_load(&pm->on))
        return;
    pthread_mutex_lock(&pm->lock);
    switch (off) {
    case 0: pm->evt_sts &= (uint16_t)~v; break;   /* write-one-to-clear */
    case 1: pm->evt_sts &= (uint16_t)~(v << 8); break;
    case 2: pm->evt_en = size == 1 ? (uint16_t)((pm->evt_en & 0xff00) | v) : v; break;
    case 3: pm->evt_en = (uint16_t)((pm->evt_en & 0x00ff) | (v << 8)); break;
    case 4:
        if (size == 1)
            v = (uint16_t)((pm->cnt & 0xff00) | v);
        pm->cnt = (uint16_t)((v & ~PM1_SLP_EN) | PM1_SCI_EN);
        if ((v & PM1_SLP_EN) && ((v >> 10) & 7) == ACPI_S5_SLP_TYP)
            machine_request_stop(pm->m, MACHINE_POWEROFF, 0);
        break;
    case 5:
        /* a byte write to the high half, as some guests do */
        if (size == 1 && (v & (PM1_SLP_EN >> 8)) && ((v >> 2) & 7) == ACPI_S5_SLP_TYP)
            machine_request_stop(pm->m, MACHINE_POWEROFF, 0);
        break;
    }
    pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

static void reset_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    (void)off, (void)size;
    /* bit 2 starts the reset; 0x02 alone only arms it, as on the PIIX/ICH */
    if (*(const uint8_t *)data & 0x04)
        machine_request_stop(opaque, MACHINE_RESET, 0);
}

static struct acpi_pm *acpi_pm_of(struct machine *m)
{
    return m->power_button == acpi_pm_power_button ? m->power_button_opaque : NULL;
}

int acpi_pm_place(struct machine *m, int base)
{
    struct acpi_pm *pm = acpi_pm_of(m);
    if (!pm)
        return -ENODEV;
    /* The block's region stays registered at ACPI_PM_BASE: the port bus cannot take a new region
     * from inside an access to it (the PIIX4's config write that moves the block is one), so a
     * base elsewhere leaves the block off. SeaBIOS puts it where the FADT says, 0x600. */
    int ret = base > 0 && base != ACPI_PM_BASE ? -EOPNOTSUPP : 0;
    atomic_store(&pm->on, base == ACPI_PM_BASE);
    return ret;
}

int acpi_pm_base(struct machine *m)
{
    struct acpi_pm *pm = acpi_pm_of(m);
    return pm && atomic_load(&pm->on) ? ACPI_PM_BASE : -1;
}

/* PM1 event and control registers; the timer is the host clock's. */
static const struct vmstate_field acpi_pm_fields[] = {
    VMSTATE_U16(struct acpi_pm, evt_sts), VMSTATE_U16(struct acpi_pm, evt_en), VMSTATE_U16(struct acpi_pm, cnt),
    VMSTATE_END,
};

static void acpi_pm_post_load(void *opaque)
{
    struct acpi_pm *pm = opaque;
    pthread_mutex_lock(&pm->lock);
    pm_update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

static const struct vmstate_desc acpi_pm_vmstate = {
    .name = "acpi-pm", .version = 1, .min_version = 1, .size = sizeof(struct acpi_pm),
    .fields = acpi_pm_fields, .post_load = acpi_pm_post_load,
};

static void acpi_pm_free(void *opaque)
{
    struct acpi_pm *pm = opaque;
    pthread_mutex_destroy(&pm->lock);
    free(pm);
}

static int acpi_pm_init(struct machine *m)
{
    struct acpi_pm *pm = calloc(1, sizeof(*pm));
    if (!pm)
        return -ENOMEM;
    pthread_mutex_init(&pm->lock, NULL);
    if (machine_add_cleanup(m, acpi_pm_free, pm))
        return -ENOMEM;
    pm->m = m;
    m->power_button = acpi_pm_power_button;
    m->power_button_opaque = pm;
    pm->cnt = PM1_SCI_EN;   /* ACPI mode from the start: there is no SMI handler to switch it */
    /* on the PC the block decodes once the firmware enables it in the PIIX4 (hw/piix4_pm.c) */
    atomic_store(&pm->on, !(m->cfg && m->cfg->type == MACHINE_PC));
    int ret = bus_register(&m->pio, ACPI_PM_BASE, ACPI_PM_LEN, pm_read, pm_write, pm, "acpi-pm");
    if (!ret)
        ret = bus_register(&m->pio, ACPI_RESET_PORT, 1, NULL, reset_write, m, "acpi-reset");
    return ret ? ret : vmstate_register(m, &acpi_pm_vmstate, 0, pm);
}
MACHINE_INIT(acpi_pm_init, INIT_DEVICE, NULL)
