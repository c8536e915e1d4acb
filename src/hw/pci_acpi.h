/* The PCI host bridge's part of the ACPI tables (vm/acpi.c places them). */
#ifndef QKVM_HW_PCI_ACPI_H
#define QKVM_HW_PCI_ACPI_H
#include <stddef.h>
#include <stdint.h>

struct pci_host;

/* AML for the DSDT body: Scope(\_SB) { Device(PCI0) {...}, Device(MRES) {...} } with h's
 * windows (MRES and the PCIe _HID only where h has ECAM). Returns its length, or 0 if it does
 * not fit in max bytes. */
size_t pci_acpi_dsdt(const struct pci_host *h, uint8_t *buf, size_t max);
/* The MCFG table's one configuration space allocation entry (16 bytes); 0 if max is short. */
size_t pci_acpi_mcfg_entry(uint8_t *buf, size_t max);

#endif
