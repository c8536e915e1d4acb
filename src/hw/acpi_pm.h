/* The ACPI fixed hardware (hw/acpi_pm.c): PM1 event and control registers, the PM timer. On the
 * direct-boot machine the block decodes at ACPI_PM_BASE from the start; on the PC (-M pc) once the
 * PIIX4's power-management function (hw/piix4_pm.c) is programmed with that base and enabled. */
#ifndef QKVM_HW_ACPI_PM_H
#define QKVM_HW_ACPI_PM_H

struct machine;

/* The bytes the block decodes from its base: PM1 status and enable, PM1 control, a reserved
 * word, the PM timer (what the FADT describes). */
#define ACPI_PM_LEN 12

/* Turns m's PM block on at port base, or off when base <= 0. The block can only be at
 * ACPI_PM_BASE (where the FADT and SeaBIOS put it): another base turns it off and gives
 * -EOPNOTSUPP. -ENODEV on a machine without one; else 0. */
int acpi_pm_place(struct machine *m, int base);

/* Where m's PM block decodes, or -1 (not placed, or no block). */
int acpi_pm_base(struct machine *m);

#endif
