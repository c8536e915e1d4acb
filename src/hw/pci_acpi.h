/* The PCI host bridge's part of the ACPI tables (vm/acpi.c places them). */
#ifndef QKVM_HW_PCI_ACPI_H
#define QKVM_HW_PCI_ACPI_H
#include <stddef.h>
#include <stdint.h>

/* AML for the DSDT body: Scope(\_SB) { Device(PCI0) {...}, Device(MRES) {...} }. Returns its
 * length, or 0 if it does not fit in max bytes. */
size_t pci_acpi_dsdt(uint8_t *buf, size_t max);
/* The MCFG table's one configuration space allocation entry (16 bytes); 0 if max is short. */
size_t pci_acpi_mcfg_entry(uint8_t *buf, size_t max);

#endif
