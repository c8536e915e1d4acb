/* ACPI tables for the guest: RSDP, XSDT, FADT (+FACS, DSDT with \_S5), MADT. */
#ifndef QKVM_VM_ACPI_H
#define QKVM_VM_ACPI_H
#include <stdint.h>

struct machine;

/* Where the tables live: the top of the BIOS area, which the e820 map reserves. */
#define ACPI_TABLES_BASE 0xe0000ull
#define ACPI_TABLES_SIZE 0x10000ull

/* The fixed hardware the FADT points at (hw/acpi_pm.c answers there). */
#define ACPI_PM_BASE      0x600
#define ACPI_PM1_EVT      (ACPI_PM_BASE + 0)   /* 4 bytes: status, enable */
#define ACPI_PM1_CNT      (ACPI_PM_BASE + 4)   /* 2 bytes: SCI_EN, SLP_TYP, SLP_EN */
#define ACPI_PM_TMR       (ACPI_PM_BASE + 8)   /* 4 bytes: 3.579545 MHz, 32 bits */
#define ACPI_RESET_PORT   0xcf9
#define ACPI_RESET_VALUE  0x06
#define ACPI_S5_SLP_TYP   5
#define ACPI_SCI_IRQ      9

/* Writes the tables into guest RAM; returns the RSDP's guest address, or 0 if RAM is too small. */
uint64_t acpi_build_tables(struct machine *m);

#endif
