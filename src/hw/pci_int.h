/* What pci.c, pci_host.c and pci_msix.c share and nobody else needs. */
#ifndef QKVM_HW_PCI_INT_H
#define QKVM_HW_PCI_INT_H
#include "hw/pci.h"

/* An address range the bridge forwards to the BARs: the 32-bit hole, and on the PC also the
 * space above RAM where SeaBIOS may put 64-bit BARs. */
struct pci_window {
    struct pci_host *h;
    uint64_t base, size;
};

struct pci_host {
    struct machine *m;
    struct pci_window win[2];
    int nwin;
    bool ecam;                          /* the direct-boot machine's ECAM (an MCFG names it) */
    pthread_mutex_t config_lock;        /* every config space access, and BAR moves */
    struct bus window;                  /* mapped BARs, at their guest addresses */
    /* mapped I/O BARs, at their ports: the ports PCI_IO_BASE-0xffff are one region of the
     * machine's port bus that forwards here (once a device has an I/O BAR), so that a config
     * write through 0xcfc, itself dispatched on the port bus, can move a BAR */
    struct bus io_window;
    bool io_window_on;
    struct pci_device *dev[PCI_SLOTS];
    struct pci_device *func[PCI_SLOTS][PCI_FUNCS - 1];   /* functions 1-7 of each slot */
    struct pci_device bridge;           /* slot 0: the host bridge itself */
    uint32_t config_address;            /* mechanism #1's CONFIG_ADDRESS at 0xcf8 */
    struct bus_region reset;            /* the byte register at 0xcf9 we took over, if any */
    bool started;
};

/* Whether [a, a+size) lies wholly in one of h's windows. */
bool pci_host_in_window(const struct pci_host *h, uint64_t a, uint64_t size);
/* Re-registers d's BARs in the window after a command or BAR write. Config lock held. */
void pci_device_update_mappings(struct pci_device *d);
/* Adds the device's config space to its machine's saved state (section "pci", instance = slot). */
int pci_device_register_vmstate(struct pci_device *d);
/* Removes every mapping of d (at teardown). */
void pci_device_unmap_all(struct pci_device *d);

#endif
