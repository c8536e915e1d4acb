/* What pci.c, pci_host.c and pci_msix.c share and nobody else needs. */
#ifndef QKVM_HW_PCI_INT_H
#define QKVM_HW_PCI_INT_H
#include "hw/pci.h"

struct pci_host {
    struct machine *m;
    pthread_mutex_t config_lock;        /* every config space access, and BAR moves */
    struct bus window;                  /* mapped BARs, at their guest addresses */
    struct pci_device *dev[PCI_SLOTS];
    struct pci_device *func[PCI_SLOTS][PCI_FUNCS - 1];   /* functions 1-7 of each slot */
    struct pci_device bridge;           /* slot 0: the host bridge itself */
    uint32_t config_address;            /* mechanism #1's CONFIG_ADDRESS at 0xcf8 */
    struct bus_region reset;            /* the byte register at 0xcf9 we took over, if any */
    bool started;
};

/* Re-registers d's BARs in the window after a command or BAR write. Config lock held. */
void pci_device_update_mappings(struct pci_device *d);
/* Adds the device's config space to its machine's saved state (section "pci", instance = slot). */
int pci_device_register_vmstate(struct pci_device *d);
/* Removes every mapping of d (at teardown). */
void pci_device_unmap_all(struct pci_device *d);

#endif
