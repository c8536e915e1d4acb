/* A PCI function's configuration space: the type-0 header, write masks, capabilities, BAR
 * decoding and INTx#. The host bridge (pci_host.c) routes the guest's accesses here. */
#include "hw/pci_int.h"

#include "hw/pci_msix.h"
#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
                     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor, uint16_t subsys)
{
    memset(d->config, 0, sizeof(d->config));
    memset(d->wmask, 0, sizeof(d->wmask));
    memset(d->w1cmask, 0, sizeof(d->w1cmask));
    memset(d->bar, 0, sizeof(d->bar));
    for (int i = 0; i < PCI_NUM_BARS; i++)
        d->bar[i].mapped = PCI_BAR_UNMAPPED;
    d->name = name;
    d->slot = -1;
    d->cap_end = 0x40;
    d->last_cap = 0;
    d->msix = NULL;
    d->intx_level = d->intx_out = false;
    pthread_mutex_init(&d->intx_lock, NULL);
    uint8_t *c = d->config;
    pci_set_word(c + PCI_VENDOR_ID, vendor);
    pci_set_word(c + PCI_DEVICE_ID, device);
    c[PCI_REVISION_ID] = revision;
    c[PCI_CLASS_PROG] = (uint8_t)class_code;
    pci_set_word(c + PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
    pci_set_word(c + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
    pci_set_word(c + PCI_SUBSYSTEM_ID, subsys);
    c[PCI_INTERRUPT_PIN] = 1;   /* INTA# */
    /* I/O and memory decode, bus master, parity and SERR reporting, INTx disable */
    pci_set_word(d->wmask + PCI_COMMAND, 0x0547);
    pci_set_word(d->w1cmask + PCI_STATUS, 0xf900);   /* error bits are write-one-to-clear */
    d->wmask[0x0c] = 0xff;   /* cache line size */
    d->wmask[0x0d] = 0xff;   /* latency timer */
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
}

int pci_device_add_bar(struct pci_device *d, int idx, uint64_t size, unsigned flags,
                       bus_read_fn read, bus_write_fn write, void *opaque)
{
    bool is64 = flags & PCI_BAR_MEM_64;
    if (idx < 0 || idx + is64 >= PCI_NUM_BARS || size < 16 || (size & (size - 1)) ||
        size > (1ull << 31) || d->bar[idx].size || (is64 && d->bar[idx + 1].size))
        return -EINVAL;
    d->bar[idx] = (struct pci_bar){ size, flags & (PCI_BAR_MEM_64 | PCI_BAR_PREFETCH), read, write,
                                    opaque, PCI_BAR_UNMAPPED };
    unsigned off = PCI_BAR0 + 4 * (unsigned)idx;
    pci_set_long(d->config + off, d->bar[idx].flags);
    pci_set_long(d->wmask + off, (uint32_t)~(size - 1) & ~0xfu);
    if (is64)
        pci_set_long(d->wmask + off + 4, 0xffffffff);
    return 0;
}

int pci_device_add_io_bar(struct pci_device *d, int idx, uint64_t size, bus_read_fn read, bus_write_fn write,
                          void *opaque)
{
    if (idx < 0 || idx >= PCI_NUM_BARS || size < 4 || size > 256 || (size & (size - 1)) || d->bar[idx].size)
        return -EINVAL;
    d->bar[idx] = (struct pci_bar){ size, PCI_BAR_IO, read, write, opaque, PCI_BAR_UNMAPPED };
    unsigned off = PCI_BAR0 + 4 * (unsigned)idx;
    pci_set_long(d->config + off, PCI_BAR_IO);
    pci_set_long(d->wmask + off, (uint32_t)~(size - 1) & ~0x3u);
    return 0;
}

int pci_device_add_capability(struct pci_device *d, uint8_t id, unsigned len)
{
    unsigned off = d->cap_end;
    if (len < 2 || off + len > 0x100)
        return -ENOSPC;
    d->config[off] = id;
    d->config[off + 1] = 0;
    if (d->last_cap)
        d->config[d->last_cap + 1] = (uint8_t)off;
    else
        d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->last_cap = (uint8_t)off;
    d->cap_end = (uint8_t)((off + len + 3) & ~3u);
    return (int)off;
}

/* The line follows the request unless the guest disabled INTx; the status bit shows the request
 * either way (PCI 3.0, 6.2.3). */
static void pci_intx_update(struct pci_device *d)
{
    pthread_mutex_lock(&d->intx_lock);
    bool disabled = pci_get_word(d->config + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
    bool out = d->intx_level && !disabled;
    if (d->intx_level)
        d->config[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
    else
        d->config[PCI_STATUS] &= (uint8_t)~PCI_STATUS_INTERRUPT;
    if (out != d->intx_out) {
        d->intx_out = out;
        if (d->m && d->slot >= 0)
            machine_set_irq(d->m, d->gsi, out);
    }
    pthread_mutex_unlock(&d->intx_lock);
}

void pci_set_irq(struct pci_device *d, bool level)
{
    pthread_mutex_lock(&d->intx_lock);
    d->intx_level = level;
    pthread_mutex_unlock(&d->intx_lock);
    pci_intx_update(d);
}

static uint64_t pci_bar_address(const struct pci_device *d, int i)
{
    if (d->bar[i].flags & PCI_BAR_IO)
        return pci_get_long(d->config + PCI_BAR0 + 4 * i) & ~0x3ull;
    uint64_t a = pci_get_long(d->config + PCI_BAR0 + 4 * i) & ~0xfull;
    if (d->bar[i].flags & PCI_BAR_MEM_64)
        a |= (uint64_t)pci_get_long(d->config + PCI_BAR0 + 4 * (i + 1)) << 32;
    return a;
}

static void pci_bar_set_mapping(struct pci_device *d, int i, uint64_t addr)
{
    struct pci_bar *b = &d->bar[i];
    if (addr == b->mapped)
        return;
    struct bus *bus = b->flags & PCI_BAR_IO ? &d->host->io_window : &d->host->window;
    if (b->mapped != PCI_BAR_UNMAPPED)
        bus_unregister(bus, b->mapped, b->opaque);
    b->mapped = PCI_BAR_UNMAPPED;
    if (addr != PCI_BAR_UNMAPPED) {
        if (bus_register(bus, addr, b->size, b->read, b->write, b->opaque, d->name) == 0)
            b->mapped = addr;
        else
            machine_log_guest(d->m, LOG_GUEST, "pci BAR overlap", "pci %02x.0 %s: BAR%d at 0x%llx overlaps another BAR: not decoded",
                      d->slot, d->name, i, (unsigned long long)addr);
    }
    if (d->bar_moved)
        d->bar_moved(d, i, b->mapped);
}

/* A BAR decodes when memory space is on and it lies wholly in the host bridge's window: the
 * bridge forwards nothing else, and a BAR being sized (all ones) must not claim anything. An
 * I/O BAR decodes when I/O space is on and it lies wholly in ports PCI_IO_BASE-0xffff (where
 * SeaBIOS puts them on an i440FX; an unassigned BAR reads 0 and so takes no port). */
void pci_device_update_mappings(struct pci_device *d)
{
    uint16_t cmd = pci_get_word(d->config + PCI_COMMAND);
    bool mem_on = cmd & PCI_COMMAND_MEMORY, io_on = cmd & PCI_COMMAND_IO;
    for (int i = 0; i < PCI_NUM_BARS; i++) {
        if (!d->bar[i].size)
            continue;
        uint64_t a = pci_bar_address(d, i);
        if (d->bar[i].flags & PCI_BAR_IO) {
            bool ok = io_on && d->host && d->host->io_window_on && a >= PCI_IO_BASE &&
                      a + d->bar[i].size <= PCI_IO_END;
            pci_bar_set_mapping(d, i, ok ? a : PCI_BAR_UNMAPPED);
            continue;
        }
        bool in_window = d->host && pci_host_in_window(d->host, a, d->bar[i].size);
        pci_bar_set_mapping(d, i, mem_on && in_window ? a : PCI_BAR_UNMAPPED);
    }
}

void pci_device_unmap_all(struct pci_device *d)
{
    for (int i = 0; i < PCI_NUM_BARS; i++)
        if (d->bar[i].size)
            pci_bar_set_mapping(d, i, PCI_BAR_UNMAPPED);
}

static bool pci_access_ok(unsigned off, unsigned size)
{
    return (size == 1 || size == 2 || size == 4) && off < PCI_CONFIG_SIZE && off + size <= PCI_CONFIG_SIZE;
}

void pci_config_read(struct pci_device *d, unsigned off, void *data, unsigned size)
{
    if (!pci_access_ok(off, size)) {
        memset(data, 0xff, size);
        return;
    }
    if (d->host)
        pthread_mutex_lock(&d->host->config_lock);
    if (d->config_reading)
        d->config_reading(d, off, size);
    memcpy(data, d->config + off, size);
    if (d->host)
        pthread_mutex_unlock(&d->host->config_lock);
}

static bool overlaps(unsigned off, unsigned size, unsigned start, unsigned len)
{
    return off < start + len && start < off + size;
}

void pci_config_write(struct pci_device *d, unsigned off, const void *data, unsigned size)
{
    if (!pci_access_ok(off, size))
        return;
    if (d->host)
        pthread_mutex_lock(&d->host->config_lock);
    const uint8_t *v = data;
    for (unsigned i = 0; i < size; i++) {
        uint8_t wm = d->wmask[off + i], w1c = d->w1cmask[off + i];
        uint8_t *c = &d->config[off + i];
        *c = (uint8_t)((*c & ~wm) | (v[i] & wm));
        *c &= (uint8_t)~(v[i] & w1c);
    }
    if (d->host && (overlaps(off, size, PCI_COMMAND, 2) || overlaps(off, size, PCI_BAR0, 24)))
        pci_device_update_mappings(d);
    if (overlaps(off, size, PCI_COMMAND, 2))
        pci_intx_update(d);
    if (d->msix)
        pci_msix_config_written(d, off, size);
    if (d->config_written)
        d->config_written(d, off, size);
    if (d->host)
        pthread_mutex_unlock(&d->host->config_lock);
}

int pci_parse_addr(const char *s)
{
    if (!s)
        return -1;
    char *end;
    unsigned long slot = strtoul(s, &end, 16);
    if (end == s || slot > 31)
        return -EINVAL;
    if (*end == '.') {
        const char *f = end + 1;
        unsigned long fn = strtoul(f, &end, 16);
        if (end == f || fn != 0)
            return -EINVAL;
    }
    return *end ? -EINVAL : (int)slot;
}

/* Config space carries the BAR placement, command register and capabilities; the mappings and
 * the INTx line are re-derived from it. MSI-X tables are the MSI-X state's. */
static const struct vmstate_field pci_fields[] = {
    VMSTATE_U8_ARRAY(struct pci_device, config, PCI_CONFIG_SIZE),
    VMSTATE_BOOL(struct pci_device, intx_level),
    VMSTATE_END,
};

/* What the guest cannot write (IDs, class, BAR type bits) must be what this device has: a stream
 * from another device in that slot is refused, not loaded. The status register's interrupt bit
 * follows intx_level and is rebuilt. */
static int pci_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct pci_device *d = live, *s = state;
    for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++) {
        if (i == PCI_STATUS)
            continue;
        if ((s->config[i] ^ d->config[i]) & ~(d->wmask[i] | d->w1cmask[i]))
            return *why = "read-only config space (another device in this slot?)", -EINVAL;
    }
    return 0;
}

static void pci_vmstate_post_load(void *opaque)
{
    struct pci_device *d = opaque;
    if (d->host)
        pthread_mutex_lock(&d->host->config_lock);
    pci_device_update_mappings(d);
    if (d->host)
        pthread_mutex_unlock(&d->host->config_lock);
    pci_intx_update(d);
    if (d->msix)
        pci_msix_post_load(d);
}

static const struct vmstate_desc pci_vmstate = {
    .name = "pci", .version = 1, .min_version = 1, .size = sizeof(struct pci_device), .fields = pci_fields,
    .check = pci_vmstate_check, .post_load = pci_vmstate_post_load,
};

int pci_device_register_vmstate(struct pci_device *d)
{
    /* a function other than 0 (the PC's IDE at 01.1) is slot | fn << 8: slots alone stay as before */
    int ret = vmstate_register(d->m, &pci_vmstate, (uint32_t)d->slot | (uint32_t)d->fn << 8, d);
    return ret || !d->msix ? ret : pci_msix_register_vmstate(d);
}

const char *pci_class_name(uint16_t cls)
{
    static const struct { uint16_t cls; const char *desc; } names[] = {
        { 0x0100, "SCSI controller" }, { 0x0101, "IDE controller" }, { 0x0180, "Storage controller" },
        { 0x0200, "Ethernet controller" }, { 0x0280, "Network controller" }, { 0x0300, "VGA controller" },
        { 0x0500, "RAM controller" }, { 0x0580, "Memory controller" }, { 0x0600, "Host bridge" },
        { 0x0601, "ISA bridge" }, { 0x0604, "PCI bridge" }, { 0x0680, "Bridge" }, { 0x0700, "Serial port" },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].cls == cls)
            return names[i].desc;
    return NULL;
}
