/* ACPI tables for the guest: RSDP, XSDT, FADT (+FACS, DSDT with \_S5), MADT. */
#ifndef QKVM_VM_ACPI_H
#define QKVM_VM_ACPI_H
#include <stdbool.h>
#include <stddef.h>
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

/* The tables as one blob (FACS, FADT, XSDT, RSDT, MADT, MCFG, DSDT) whose pointers between
 * tables hold offsets into it, and an RSDP whose pointers hold offsets too: whoever places the
 * blob adds its address at each ptr[] (size bytes, little-endian) and in the RSDP, then fixes the
 * checksums of the tables at sum[] (SeaBIOS does this from etc/table-loader on the PC). */
struct acpi_blob {
    uint8_t *tables;
    size_t len;
    uint8_t rsdp[36];
    struct { uint32_t off; uint8_t size; } ptr[16];
    int nptr;
    uint32_t sum[4];
    int nsum;
};
/* pc: the PC machine's tables (its PCI windows, no ECAM, an 8042). 0 or -errno. */
int acpi_build(struct machine *m, bool pc, struct acpi_blob *b);
/* Places the blob at tables_gpa: pointers and checksums as a table loader would set them. */
void acpi_blob_relocate(struct acpi_blob *b, uint64_t tables_gpa);
void acpi_blob_free(struct acpi_blob *b);
/* The direct-boot machine: writes the tables into guest RAM; returns the RSDP's guest address,
 * or 0 if RAM is too small. */
uint64_t acpi_build_tables(struct machine *m);

#endif
