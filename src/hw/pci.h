/* PCI: one host bridge with bus 0 behind it, reached through configuration mechanism #1 (ports
 * 0xcf8/0xcfc) and ECAM (an MCFG table points the guest there). Devices get memory BARs inside
 * the bridge's 32-bit window, MSI-X (pci_msix.c) and INTx on GSIs 16-23.
 *
 * A device embeds a struct pci_device, fills its header with pci_device_init, adds BARs and
 * capabilities, and calls pci_register_device from its -device create(). The host assigns the
 * BARs and turns decoding on after every device exists (as firmware would), before the guest
 * starts; the guest may move them later within the window. */
#ifndef QKVM_HW_PCI_H
#define QKVM_HW_PCI_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hw/bus.h"

struct machine;
struct pci_host;
struct pci_msix;

/* The guest-physical layout of the PCI hole (RAM ends at MACHINE_LOW_RAM_END). */
#define PCI_MMIO_BASE   0xc0000000ull   /* 32-bit BAR window */
#define PCI_MMIO_SIZE   0x20000000ull
#define PCI_ECAM_BASE   0xe0000000ull   /* 1 MiB per bus, buses 0-255 */
#define PCI_ECAM_SIZE   0x10000000ull
#define PCI_ECAM_BUSES  256
/* The PC's (-M pc) hole as SeaBIOS's pciinit sees an i440FX: BARs from 2 GiB (or 3 GiB) to the
 * IOAPIC; 64-bit BARs may go above RAM, below the CPU's 40 physical address bits. */
#define PCI_PC_HOLE_START 0x80000000ull
#define PCI_PC_HOLE_END   0xfec00000ull
#define PCI_PC_PHYS_TOP   (1ull << 40)
#define PCI_GSI_BASE    16              /* INTA#-INTD# swizzle onto GSIs 16-23 */
#define PCI_GSI_COUNT   8
#define PCI_SLOTS       32
#define PCI_FUNCS       8               /* functions of a multi-function device */

#define PCI_CONFIG_SIZE 4096            /* extended configuration space, as ECAM shows it */
#define PCI_NUM_BARS    6

/* configuration header registers and bits (PCI Local Bus 3.0, chapter 6) */
#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_REVISION_ID    0x08
#define PCI_CLASS_PROG     0x09
#define PCI_CLASS_DEVICE   0x0a
#define PCI_HEADER_TYPE    0x0e
#define PCI_BAR0           0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID   0x2e
#define PCI_ROM_ADDRESS    0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN  0x3d

#define PCI_COMMAND_IO     0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_INTERRUPT 0x0008
#define PCI_STATUS_CAP_LIST  0x0010

#define PCI_BAR_IO         0x01         /* an I/O space BAR: decodes on the machine's port bus */
#define PCI_BAR_MEM_64     0x04
#define PCI_BAR_PREFETCH   0x08
/* Where I/O BARs go when the host assigns them (SeaBIOS starts its I/O BARs there too). */
#define PCI_IO_BASE        0xc000
#define PCI_IO_END         0x10000

#define PCI_CAP_ID_MSIX    0x11
#define PCI_CAP_ID_VNDR    0x09

/* Where a BAR is, as the device sees it: addr is where the guest put it, or PCI_BAR_UNMAPPED. */
#define PCI_BAR_UNMAPPED   UINT64_MAX

struct pci_bar {
    uint64_t size;              /* a power of two, at least 16; 0: no BAR here */
    unsigned flags;             /* PCI_BAR_IO, or PCI_BAR_MEM_64 and PCI_BAR_PREFETCH */
    bus_read_fn read;
    bus_write_fn write;
    void *opaque;
    uint64_t mapped;            /* the address decoding happens at, or PCI_BAR_UNMAPPED */
};

struct pci_device {
    const char *name;                   /* for messages and the window's regions */
    struct machine *m;
    struct pci_host *host;
    int slot;                           /* device number on bus 0, set when registered */
    int fn;                             /* function number, 0 unless pci_register_function */
    uint8_t config[PCI_CONFIG_SIZE];
    uint8_t wmask[PCI_CONFIG_SIZE];     /* bits the guest may write */
    uint8_t w1cmask[PCI_CONFIG_SIZE];   /* bits a guest's 1 clears */
    struct pci_bar bar[PCI_NUM_BARS];
    uint8_t cap_end;                    /* the next capability goes here */
    uint8_t last_cap;                   /* offset of the last capability in the list, or 0 */
    struct pci_msix *msix;              /* NULL: no MSI-X */
    pthread_mutex_t intx_lock;
    bool intx_level;                    /* what the device asks for, before INTX_DISABLE */
    bool intx_out;                      /* what the GSI line carries */
    unsigned gsi;
    /* Called after the guest wrote [off, off+size) of config space (already stored), with the
     * host's config lock held: capability registers the device owns. May be NULL. */
    void (*config_written)(struct pci_device *d, unsigned off, unsigned size);
    /* Called before the guest reads [off, off+size) of config space, config lock held: registers
     * whose value comes from elsewhere are refreshed into config[]. May be NULL. */
    void (*config_reading)(struct pci_device *d, unsigned off, unsigned size);
    /* A BAR started or stopped decoding at an address (addr, or PCI_BAR_UNMAPPED): a device with
     * ioeventfds moves them. Config lock held. May be NULL. */
    void (*bar_moved)(struct pci_device *d, int bar, uint64_t addr);
    void *opaque;                       /* the device's own state */
};

/* Creates the host bridge of machine m: its state, the ECAM and window regions on m->mmio, port
 * 0xcfc. Run at INIT_BUS by the machine; tests call it on a hand-built machine. 0 or -errno. */
int pci_host_create(struct machine *m);
/* After every device is registered: assigns BARs, turns decoding on, claims port 0xcf8 (sharing
 * its dword with the reset register at 0xcf9, as the PIIX/ICH do). INIT_LATE. 0 or -errno. */
int pci_host_start(struct machine *m);
/* The host bridge of m, or NULL when the machine has none. */
struct pci_host *pci_host_of(struct machine *m);

/* Fills the header of a type-0 function: IDs, class (base<<16 | sub<<8 | prog-if), INTA#. */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
                     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor, uint16_t subsys);
/* A memory BAR. flags: PCI_BAR_MEM_64 takes idx and idx+1. 0 or -EINVAL. */
int pci_device_add_bar(struct pci_device *d, int idx, uint64_t size, unsigned flags,
                       bus_read_fn read, bus_write_fn write, void *opaque);
/* An I/O space BAR of size bytes (a power of two, 4 to 256): it decodes on m->pio while the
 * command register's I/O bit is on and its address is neither 0 nor past port 0xffff, as QEMU
 * decodes one. 0 or -EINVAL. */
int pci_device_add_io_bar(struct pci_device *d, int idx, uint64_t size, bus_read_fn read, bus_write_fn write,
                          void *opaque);
/* Appends a capability of len bytes (id and next pointer filled in); returns its offset in
 * config space or -ENOSPC. */
int pci_device_add_capability(struct pci_device *d, uint8_t id, unsigned len);
/* Puts d on bus 0 of m's host: at slot (1-31), or the first free one when slot < 0. Takes
 * "addr=" (QEMU's slot[.fn]) from the -device options through the caller. 0 or -errno. */
int pci_register_device(struct machine *m, struct pci_device *d, int slot);
/* Puts d at function fn (1-7) of slot, whose function 0 must be registered already; function 0
 * then says it is a multi-function device (header type bit 7), so guests scan the others, as
 * the PIIX3's ISA bridge (00:01.0) and IDE controller (00:01.1) are found. 0 or -errno. */
int pci_register_function(struct machine *m, struct pci_device *d, int slot, int fn);
/* Parses QEMU's addr= property ("5", "0x5", "05.0"); -1 when s is NULL. -EINVAL when bad. */
int pci_parse_addr(const char *s);

/* INTx#: the device's interrupt request; the line follows it unless INTX_DISABLE is set. */
void pci_set_irq(struct pci_device *d, bool level);

/* Config space access by the host bridge (and tests): offsets past 4 KiB or a size that is not
 * 1, 2 or 4 read as ones and are ignored. */
void pci_config_read(struct pci_device *d, unsigned off, void *data, unsigned size);
void pci_config_write(struct pci_device *d, unsigned off, const void *data, unsigned size);

/* The device at slot, or NULL (bus 0 only). */
struct pci_device *pci_host_device(struct pci_host *h, int slot);
/* Function fn (0-7) of the device at slot, or NULL. */
struct pci_device *pci_host_function(struct pci_host *h, int slot, int fn);

/* QEMU's name for a class (base<<8 | sub) as `info pci` and query-pci give it, or NULL for the
 * classes it has none for. */
const char *pci_class_name(uint16_t cls);

/* little-endian helpers over config space */
static inline void pci_set_word(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void pci_set_long(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t pci_get_word(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t pci_get_long(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
