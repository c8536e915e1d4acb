/* The PCI host bridge: configuration mechanism #1 (CONFIG_ADDRESS at 0xcf8, CONFIG_DATA at
 * 0xcfc), ECAM (PCI Express base spec 7.2.2: bus << 20 | device << 15 | function << 12 | register)
 * and the 32-bit memory window the BARs decode in. Bus 0 only; functions 1-7 for multi-function
 * devices (the PIIX3). */
#include "hw/pci_int.h"

#include "util/log.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_ADDRESS_PORT 0xcf8
#define CONFIG_DATA_PORT    0xcfc
#define CONFIG_ENABLE       0x80000000u

struct pci_host *pci_host_of(struct machine *m)
{
    return m->pci_host;
}

struct pci_device *pci_host_device(struct pci_host *h, int slot)
{
    return slot >= 0 && slot < PCI_SLOTS ? h->dev[slot] : NULL;
}

struct pci_device *pci_host_function(struct pci_host *h, int slot, int fn)
{
    if (slot < 0 || slot >= PCI_SLOTS || fn < 0 || fn >= PCI_FUNCS)
        return NULL;
    return fn == 0 ? h->dev[slot] : h->func[slot][fn - 1];
}

static struct pci_device *pci_host_lookup(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn)
{
    return bus == 0 ? pci_host_function(h, (int)(dev & 31), (int)(fn & 7)) : NULL;
}

static void config_data_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct pci_host *h = opaque;
    uint32_t a = __atomic_load_n(&h->config_address, __ATOMIC_RELAXED);
    struct pci_device *d = (a & CONFIG_ENABLE) ? pci_host_lookup(h, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7) : NULL;
    if (!d) {
        memset(data, 0xff, size);
        return;
    }
    pci_config_read(d, (a & 0xfc) + (unsigned)off, data, size);
}

static void config_data_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pci_host *h = opaque;
    uint32_t a = __atomic_load_n(&h->config_address, __ATOMIC_RELAXED);
    struct pci_device *d = (a & CONFIG_ENABLE) ? pci_host_lookup(h, (a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7) : NULL;
    if (d)
        pci_config_write(d, (a & 0xfc) + (unsigned)off, data, size);
}

/* CONFIG_ADDRESS answers only 32-bit accesses; the byte at 0xcf9 is the reset control register
 * of the chipset, whoever registered it before us. */
static void config_address_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct pci_host *h = opaque;
    if (off == 0 && size == 4) {
        uint32_t a = __atomic_load_n(&h->config_address, __ATOMIC_RELAXED);
        memcpy(data, &a, 4);
    } else if (off == 1 && size == 1 && h->reset.read) {
        h->reset.read(h->reset.opaque, 0, data, 1);
    } else {
        memset(data, 0xff, size);
    }
}

static void config_address_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pci_host *h = opaque;
    if (off == 0 && size == 4) {
        uint32_t a;
        memcpy(&a, data, 4);
        __atomic_store_n(&h->config_address, a & 0x80fffffcu, __ATOMIC_RELAXED);
    } else if (off == 1 && size == 1 && h->reset.write) {
        h->reset.write(h->reset.opaque, 0, data, 1);
    }
}

static void ecam_access(struct pci_host *h, uint64_t off, void *data, unsigned size, bool is_write)
{
    if (size == 8) {   /* two dwords, low first, as a PCIe root complex splits it */
        ecam_access(h, off, data, 4, is_write);
        ecam_access(h, off + 4, (uint8_t *)data + 4, 4, is_write);
        return;
    }
    struct pci_device *d = pci_host_lookup(h, (unsigned)(off >> 20), (unsigned)(off >> 15) & 0x1f, (unsigned)(off >> 12) & 7);
    unsigned reg = (unsigned)(off & 0xfff);
    if (is_write) {
        if (d)
            pci_config_write(d, reg, data, size);
    } else if (d) {
        pci_config_read(d, reg, data, size);
    } else {
        memset(data, 0xff, size);
    }
}

static void ecam_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    ecam_access(opaque, off, data, size, false);
}

static void ecam_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    ecam_access(opaque, off, (void *)data, size, true);
}

/* Inside the window but on no BAR: the window itself is a region of the bus, so the vCPU loop
 * never sees these as unmapped; say so as it would. */
static void window_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct pci_window *w = opaque;
    if (bus_dispatch(&w->h->window, w->base + off, data, size, false) == -ENOENT)
        machine_report_unmapped(w->h->m, -1, w->base + off, false);
}

static void window_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pci_window *w = opaque;
    if (bus_dispatch(&w->h->window, w->base + off, (void *)data, size, true) == -ENOENT)
        machine_report_unmapped(w->h->m, -1, w->base + off, true);
}

static void io_window_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct pci_host *h = opaque;
    bus_dispatch(&h->io_window, PCI_IO_BASE + off, data, size, false);
}

static void io_window_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct pci_host *h = opaque;
    bus_dispatch(&h->io_window, PCI_IO_BASE + off, (void *)data, size, true);
}

bool pci_host_in_window(const struct pci_host *h, uint64_t a, uint64_t size)
{
    for (int i = 0; i < h->nwin; i++)
        if (a >= h->win[i].base && a - h->win[i].base < h->win[i].size && size <= h->win[i].size - (a - h->win[i].base))
            return true;
    return false;
}

/* The direct-boot machine: one 32-bit window below the ECAM, which its DSDT describes. The PC
 * forwards what SeaBIOS's pciinit may use on an i440FX (no ECAM there): from 2 GiB (3 GiB when
 * RAM reaches past 2 GiB) up to the IOAPIC, and for 64-bit BARs from the end of RAM above 4 GiB
 * to the top of the CPU's 40-bit physical address space. */
static void pci_host_set_windows(struct pci_host *h, struct machine *m)
{
    h->nwin = 0;
    if (!m->cfg || m->cfg->type != MACHINE_PC) {
        h->win[h->nwin++] = (struct pci_window){ h, PCI_MMIO_BASE, PCI_MMIO_SIZE };
        return;
    }
    uint64_t low = m->ram_size < MACHINE_LOW_RAM_END ? m->ram_size : MACHINE_LOW_RAM_END;
    uint64_t base = low <= PCI_PC_HOLE_START ? PCI_PC_HOLE_START : MACHINE_LOW_RAM_END;
    h->win[h->nwin++] = (struct pci_window){ h, base, PCI_PC_HOLE_END - base };
    uint64_t high = MACHINE_HIGH_RAM_BASE + (m->ram_size - low);
    h->win[h->nwin++] = (struct pci_window){ h, high, PCI_PC_PHYS_TOP - high };
}

static void pci_host_free(void *opaque)
{
    struct pci_host *h = opaque;
    if (h->m->pci_host == h)
        h->m->pci_host = NULL;
    bus_destroy(&h->window);
    bus_destroy(&h->io_window);
    pthread_mutex_destroy(&h->config_lock);
    free(h);
}

int pci_host_create(struct machine *m)
{
    struct pci_host *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->m = m;
    pthread_mutex_init(&h->config_lock, NULL);
    bus_init(&h->window, "pci");
    bus_init(&h->io_window, "pci-io");
    if (m->pci_host) {
        bus_destroy(&h->window);
        bus_destroy(&h->io_window);
        free(h);
        return -EEXIST;
    }
    m->pci_host = h;
    if (machine_add_cleanup(m, pci_host_free, h))
        return -ENOMEM;
    /* The Red Hat "QEMU PCIe host bridge" IDs: no chipset quirks in any guest. */
    pci_device_init(&h->bridge, "pci-host", 0x1b36, 0x0008, 0x060000, 0, 0x1af4, 0x1100);
    h->bridge.config[PCI_INTERRUPT_PIN] = 0;
    int ret = pci_register_device(m, &h->bridge, 0);
    pci_host_set_windows(h, m);
    for (int i = 0; !ret && i < h->nwin; i++)
        ret = bus_register(&m->mmio, h->win[i].base, h->win[i].size, window_read, window_write, &h->win[i],
                           "pci-window");
    h->ecam = !m->cfg || m->cfg->type != MACHINE_PC;
    if (!ret && h->ecam)
        ret = bus_register(&m->mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE, ecam_read, ecam_write, h, "pci-ecam");
    if (!ret)
        ret = bus_register(&m->pio, CONFIG_DATA_PORT, 4, config_data_read, config_data_write, h, "pci-config-data");
    if (ret)
        log_error("pci: cannot set up the host bridge: %s", strerror(-ret));
    return ret;
}

struct bar_ref {
    struct pci_device *d;
    int idx;
};

static int bar_ref_cmp(const void *a, const void *b)
{
    const struct bar_ref *x = a, *y = b;
    uint64_t sx = x->d->bar[x->idx].size, sy = y->d->bar[y->idx].size;
    if (sx != sy)
        return sx > sy ? -1 : 1;
    if (x->d->slot != y->d->slot)
        return x->d->slot - y->d->slot;
    return x->d->fn != y->d->fn ? x->d->fn - y->d->fn : x->idx - y->idx;
}

/* Largest first, each aligned to its size: no space is lost to alignment. */
static int pci_host_assign_bars(struct pci_host *h)
{
    struct bar_ref refs[PCI_SLOTS * PCI_FUNCS * PCI_NUM_BARS];
    int n = 0;
    for (int s = 0; s < PCI_SLOTS * PCI_FUNCS; s++) {
        struct pci_device *d = pci_host_function(h, s / PCI_FUNCS, s % PCI_FUNCS);
        for (int i = 0; d && i < PCI_NUM_BARS; i++)
            if (d->bar[i].size)
                refs[n++] = (struct bar_ref){ d, i };
    }
    qsort(refs, (size_t)n, sizeof(refs[0]), bar_ref_cmp);
    const struct pci_window *w = &h->win[0];
    uint64_t next = w->base, next_io = PCI_IO_BASE;
    for (int k = 0; k < n; k++) {
        struct pci_device *d = refs[k].d;
        uint64_t size = d->bar[refs[k].idx].size;
        bool io = d->bar[refs[k].idx].flags & PCI_BAR_IO;
        uint64_t a = ((io ? next_io : next) + size - 1) & ~(size - 1);
        if (io ? a + size > PCI_IO_END : a + size > w->base + w->size) {
            log_error("pci: the devices' BARs do not fit in the %s", io ? "I/O ports" : "memory window");
            return -ENOSPC;
        }
        unsigned off = PCI_BAR0 + 4 * (unsigned)refs[k].idx;
        pci_set_long(d->config + off, (uint32_t)a | d->bar[refs[k].idx].flags);
        if (d->bar[refs[k].idx].flags & PCI_BAR_MEM_64)
            pci_set_long(d->config + off + 4, (uint32_t)(a >> 32));
        if (io)
            next_io = a + size;
        else
            next = a + size;
    }
    for (int s = 0; s < PCI_SLOTS * PCI_FUNCS; s++) {
        struct pci_device *d = pci_host_function(h, s / PCI_FUNCS, s % PCI_FUNCS);
        if (!d)
            continue;
        pthread_mutex_lock(&h->config_lock);
        uint16_t on = PCI_COMMAND_MEMORY;
        for (int i = 0; i < PCI_NUM_BARS; i++)
            if (d->bar[i].size && (d->bar[i].flags & PCI_BAR_IO))
                on |= PCI_COMMAND_IO;
        pci_set_word(d->config + PCI_COMMAND, pci_get_word(d->config + PCI_COMMAND) | on);
        pci_device_update_mappings(d);
        pthread_mutex_unlock(&h->config_lock);
    }
    return 0;
}

int pci_host_start(struct machine *m)
{
    struct pci_host *h = pci_host_of(m);
    if (!h)
        return 0;
    bool has_io = false;
    for (int s = 0; s < PCI_SLOTS * PCI_FUNCS; s++) {
        struct pci_device *d = pci_host_function(h, s / PCI_FUNCS, s % PCI_FUNCS);
        for (int i = 0; d && i < PCI_NUM_BARS; i++)
            has_io |= d->bar[i].size && (d->bar[i].flags & PCI_BAR_IO);
    }
    if (has_io) {
        int r = bus_register(&m->pio, PCI_IO_BASE, PCI_IO_END - PCI_IO_BASE, io_window_read, io_window_write, h,
                             "pci-io-window");
        if (r) {
            log_error("pci: ports 0x%x-0x%x (PCI I/O BARs) are taken", PCI_IO_BASE, PCI_IO_END - 1);
            return r;
        }
        h->io_window_on = true;
    }
    int ret = pci_host_assign_bars(h);
    if (ret)
        return ret;
    const struct bus_region *r = bus_find(&m->pio, CONFIG_ADDRESS_PORT + 1);
    if (r && r->base == CONFIG_ADDRESS_PORT + 1 && r->len == 1) {
        h->reset = *r;
        bus_unregister(&m->pio, h->reset.base, h->reset.opaque);
    }
    ret = bus_register(&m->pio, CONFIG_ADDRESS_PORT, 4, config_address_read, config_address_write, h,
                       "pci-config-address");
    if (ret)
        log_error("pci: port 0x%x is taken: %s", CONFIG_ADDRESS_PORT, strerror(-ret));
    h->started = true;
    return ret;
}

/* d's address and interrupt line once its place is known */
static void pci_place_device(struct machine *m, struct pci_host *h, struct pci_device *d, int slot, int fn)
{
    d->m = m;
    d->host = h;
    d->slot = slot;
    d->fn = fn;
    /* the usual swizzle: pin A of slot s on PIRQ (s mod 8); the DSDT's _PRT says the same */
    d->gsi = PCI_GSI_BASE + ((unsigned)slot + d->config[PCI_INTERRUPT_PIN] + PCI_GSI_COUNT - 1) % PCI_GSI_COUNT;
    if (d->config[PCI_INTERRUPT_PIN])
        d->config[PCI_INTERRUPT_LINE] = (uint8_t)d->gsi;
}

int pci_register_device(struct machine *m, struct pci_device *d, int slot)
{
    struct pci_host *h = pci_host_of(m);
    if (!h) {
        log_error("%s: this machine has no PCI bus", d->name);
        return -ENODEV;
    }
    if (h->started) {
        log_error("%s: PCI hot-plug is not supported", d->name);
        return -EBUSY;
    }
    if (slot < 0) {
        for (int s = 1; s < PCI_SLOTS && slot < 0; s++)
            if (!h->dev[s])
                slot = s;
        if (slot < 0) {
            log_error("%s: all %d PCI slots are taken", d->name, PCI_SLOTS - 1);
            return -ENOSPC;
        }
    } else if (slot >= PCI_SLOTS || h->dev[slot]) {
        log_error("%s: PCI slot %d is %s", d->name, slot, slot >= PCI_SLOTS ? "out of range" : "taken");
        return -EBUSY;
    }
    pci_place_device(m, h, d, slot, 0);
    h->dev[slot] = d;
    return pci_device_register_vmstate(d);
}

int pci_register_function(struct machine *m, struct pci_device *d, int slot, int fn)
{
    struct pci_host *h = pci_host_of(m);
    if (fn == 0)
        return pci_register_device(m, d, slot);
    if (!h || h->started || slot < 0 || slot >= PCI_SLOTS || fn < 0 || fn >= PCI_FUNCS || !h->dev[slot] ||
        h->func[slot][fn - 1]) {
        log_error("%s: PCI function %d.%d cannot be registered", d->name, slot, fn);
        return -EBUSY;
    }
    pci_place_device(m, h, d, slot, fn);
    h->dev[slot]->config[PCI_HEADER_TYPE] |= 0x80;
    h->func[slot][fn - 1] = d;
    return pci_device_register_vmstate(d);
}

static int pci_host_init(struct machine *m)
{
    return pci_host_create(m);
}
MACHINE_INIT(pci_host_init, INIT_BUS, NULL)

static int pci_host_late_init(struct machine *m)
{
    return pci_host_start(m);
}
MACHINE_INIT(pci_host_late_init, INIT_LATE, NULL)
