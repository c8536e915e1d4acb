/* Bus-master IDE DMA of the PIIX3's IDE function (82371SB datasheet, 2.7 "Bus Master IDE
 * Registers"; the SFF-8038i programming interface): BAR4, 16 I/O ports, eight per channel:
 *   +0 BMICX command: bit 0 start, bit 3 direction (ignored, as QEMU: the ATA command decides)
 *   +2 BMISX status: bit 0 active (read-only), 1 error and 2 interrupt (write one to clear),
 *      5 and 6 drive 0/1 DMA capable (read/write)
 *   +4 BMIDTPX the physical address of the PRD table (dword aligned)
 * A PRD entry is 8 bytes: the buffer's physical address (bit 0 ignored), its byte count (bit 0
 * ignored, 0 meaning 64 KiB) and bit 31 of the second dword, end of table.
 *
 * The state of the two channels is the section "bmdma" of the machine's saved state, apart
 * from the IDE channels' (hw/ide.c). */
#ifndef QKVM_HW_BMDMA_H
#define QKVM_HW_BMDMA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;
struct pci_device;
struct ide_channel;

#define BMDMA_BAR        4
#define BMDMA_BAR_SIZE   16

#define BMDMA_CMD_START  0x01
#define BMDMA_CMD_READ   0x08   /* "read" from the controller's view: the bus master writes memory */
#define BMDMA_ST_ACTIVE  0x01
#define BMDMA_ST_ERROR   0x02
#define BMDMA_ST_INTR    0x04
#define BMDMA_ST_DMA0    0x20
#define BMDMA_ST_DMA1    0x40

#define BMDMA_PRD_EOT    0x80000000u
/* The PRD table may not cross a 64 KiB boundary (82371SB 2.7.3): the walk stops there. */
#define BMDMA_PRD_TABLE_SPAN 0x10000u

/* One PRD entry, decoded. */
struct bmdma_prd {
    uint32_t addr;     /* bit 0 cleared */
    uint32_t len;      /* 2..65536, even */
    bool eot;
};

/* Decodes the 8 bytes of an entry as the PIIX reads them (little-endian). */
void bmdma_prd_decode(const uint8_t raw[8], struct bmdma_prd *out);

/* Where a walk through a PRD table is: the next entry, the bytes of the current one used. */
struct bmdma_walk {
    uint32_t table;    /* the table's address (BMIDTPX) */
    uint32_t index;    /* the entry in use */
    uint32_t used;     /* bytes of it already moved */
    bool loaded, ended; /* entry index read; the table's end reached and used up */
    struct bmdma_prd cur;
};

/* Results as hw/ide.h's enum ide_dma_result (OK, SHORT, FAULT). */
/* Moves len bytes between buf and the buffers the table at w names, from where w stands:
 * to_guest, into guest memory (machine_dma_write, so ROM and PAM are honoured), else out of it
 * (machine_read). IDE_DMA_SHORT when the table ends (or reaches its 64 KiB boundary) first;
 * IDE_DMA_FAULT when an entry or a buffer is not wholly guest RAM: nothing outside RAM is ever
 * touched. The bytes before the failure have moved. */
int bmdma_walk_rw(struct machine *m, struct bmdma_walk *w, void *buf, size_t len, bool to_guest);

/* Gives d (the PIIX3 IDE function) its BAR4 and connects the bus master's two channels to
 * ch[0] and ch[1]; registers the "bmdma" state section. Freed with the machine. 0 or -errno. */
int bmdma_create(struct machine *m, struct pci_device *d, struct ide_channel *ch[2]);

#endif
