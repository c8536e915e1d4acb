/* MSI-X for a PCI device: the capability, the vector table and pending bits in a BAR, and
 * delivery through the accelerator (KVM: an irqfd on an MSI route; tcg: the emulated APICs). */
#ifndef QKVM_HW_PCI_MSIX_H
#define QKVM_HW_PCI_MSIX_H
#include <stdbool.h>
#include <stdint.h>

struct machine;
struct pci_device;

#define PCI_MSIX_MAX_VECTORS 128   /* table and PBA share one 4 KiB BAR */

/* Adds the capability and a 4 KiB memory BAR number bar holding the table (offset 0) and the
 * pending bits (offset 2048), freed with machine m. Before pci_register_device. 0 or -errno. */
int pci_msix_init(struct pci_device *d, struct machine *m, unsigned nvectors, int bar);
/* The guest turned MSI-X on (and the function is not masked as a whole): interrupts go there
 * rather than to INTx. */
bool pci_msix_enabled(struct pci_device *d);
/* Signals vector (any thread). A masked vector becomes pending and fires when unmasked; a
 * vector past the table is ignored. */
void pci_msix_notify(struct pci_device *d, unsigned vector);

/* fd (an eventfd the device reads, such as an ivshmem peer's ring; -1: none any more) raises
 * vector. Where the accelerator has irqfds (KVM), fd is bound to the vector's route while the
 * vector is deliverable (MSI-X on, unmasked, aimed at the APICs), so a ring reaches the guest
 * without qkvm; the device keeps watching fd (non-blocking) and calls pci_msix_notify for the
 * rings that come while it is not bound. The device closes fd only after setting -1. 0 or
 * -errno. */
int pci_msix_set_vector_fd(struct pci_device *d, unsigned vector, int fd);
bool pci_msix_vector_fd_bound(struct pci_device *d, unsigned vector);

/* The capability registers changed (pci.c calls this from its config write path). */
void pci_msix_config_written(struct pci_device *d, unsigned off, unsigned size);

/* Device state (vm/vmstate.h): the table and pending bits as sections of d's machine, and the
 * enable bits re-read from config space after a load (pci.c calls both). */
int pci_msix_register_vmstate(struct pci_device *d);
void pci_msix_post_load(struct pci_device *d);

/* One message-signalled interrupt, by whatever path the accelerator offers. 0 or -errno. */
int pci_msi_send(struct machine *m, uint64_t addr, uint32_t data);

#endif
