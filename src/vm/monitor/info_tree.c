/* HMP's `info mtree` and `info qtree`: the machine's address spaces and its devices, printed in
 * QEMU's layout (HMP-only in QEMU too, so there is no QMP command behind them). qkvm has no
 * region priorities or aliases: every region is printed at prio 0 in address order. */
#include "vm/monitor/monitor.h"

#include "hw/bus.h"
#include "hw/pci.h"
#include "vm/machine.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct mtree_line {
    uint64_t base, len;
    const char *kind, *name;
};

struct mtree_list {
    struct mtree_line *v;
    int n, cap;
};

static void mtree_push(struct mtree_list *l, uint64_t base, uint64_t len, const char *kind, const char *name)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        struct mtree_line *v = realloc(l->v, (size_t)cap * sizeof(*v));
        if (!v)
            return;     /* the listing is shorter; nothing else depends on it */
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = (struct mtree_line){ base, len, kind, name };
}

static void mtree_add_region(void *opaque, const struct bus_region *r)
{
    mtree_push(opaque, r->base, r->len, "i/o", r->name ? r->name : "");
}

static int mtree_cmp(const void *a, const void *b)
{
    const struct mtree_line *x = a, *y = b;
    return x->base < y->base ? -1 : x->base > y->base;
}

static void mtree_print(struct mtree_list *l, FILE *out)
{
    qsort(l->v, (size_t)l->n, sizeof(*l->v), mtree_cmp);
    for (int i = 0; i < l->n; i++)
        fprintf(out, "    %016" PRIx64 "-%016" PRIx64 " (prio 0, %s): %s\r\n", l->v[i].base,
                l->v[i].base + l->v[i].len - 1, l->v[i].kind, l->v[i].name);
    free(l->v);
    *l = (struct mtree_list){ 0 };
}

void hmp_info_mtree(struct monitor_ctx *ctx, FILE *out)
{
    struct machine *m = ctx->m;
    struct mtree_list l = { 0 };
    for (int i = 0; i < m->nmem; i++)
        mtree_push(&l, m->mem[i].gpa, m->mem[i].size, m->mem[i].readonly ? "rom" : "ram",
                   m->mem[i].readonly ? "rom" : "ram");
    bus_for_each(&m->mmio, mtree_add_region, &l);
    fprintf(out, "address-space: memory\r\n  0000000000000000-ffffffffffffffff (prio 0, i/o): system\r\n");
    mtree_print(&l, out);
    bus_for_each(&m->pio, mtree_add_region, &l);
    fprintf(out, "\r\naddress-space: I/O\r\n  0000000000000000-000000000000ffff (prio 0, i/o): io\r\n");
    mtree_print(&l, out);
}

static void qtree_pci(struct pci_device *d, FILE *out)
{
    const uint8_t *c = d->config;
    uint16_t cls = pci_get_word(c + PCI_CLASS_DEVICE);
    fprintf(out, "      dev: %s, id \"\"\r\n        addr = %02x.%x\r\n", d->name ? d->name : "", d->slot, d->fn);
    if (pci_class_name(cls))
        fprintf(out, "        class %s, ", pci_class_name(cls));
    else
        fprintf(out, "        class Class %04x, ", cls);
    fprintf(out, "addr 00:%02x.%x, pci id %04x:%04x (sub %04x:%04x)\r\n", d->slot, d->fn,
            pci_get_word(c + PCI_VENDOR_ID), pci_get_word(c + PCI_DEVICE_ID),
            pci_get_word(c + PCI_SUBSYSTEM_VENDOR_ID), pci_get_word(c + PCI_SUBSYSTEM_ID));
    for (int b = 0; b < PCI_NUM_BARS; b++) {
        const struct pci_bar *bar = &d->bar[b];
        if (!bar->size)
            continue;
        uint64_t at = bar->mapped == PCI_BAR_UNMAPPED ? UINT64_MAX : bar->mapped;
        fprintf(out, "        bar %d: %s at 0x%" PRIx64 " [0x%" PRIx64 "]\r\n", b,
                bar->flags & PCI_BAR_IO ? "i/o" : "mem", at,
                at == UINT64_MAX ? UINT64_MAX - 1 : at + bar->size - 1);
    }
}

static void qtree_isa(void *opaque, const struct bus_region *r)
{
    FILE *out = opaque;
    /* the host bridge's config ports are not an ISA device */
    if (r->name && !strncmp(r->name, "pci-", 4))
        return;
    fprintf(out, "      dev: %s, id \"\"\r\n        ioport 0x%" PRIx64 "-0x%" PRIx64 "\r\n", r->name ? r->name : "",
            r->base, r->base + r->len - 1);
}

void hmp_info_qtree(struct monitor_ctx *ctx, FILE *out)
{
    struct machine *m = ctx->m;
    struct pci_host *h = pci_host_of(m);
    fprintf(out, "bus: main-system-bus\r\n  type System\r\n");
    if (h) {
        fprintf(out, "  dev: pci-host, id \"\"\r\n    bus: pci.0\r\n      type PCI\r\n");
        for (int i = 0; i < PCI_SLOTS * 8; i++) {
            struct pci_device *d = pci_host_function(h, i / 8, i % 8);
            if (d)
                qtree_pci(d, out);
        }
    }
    fprintf(out, "  dev: isa, id \"\"\r\n    bus: isa.0\r\n      type ISA\r\n");
    bus_for_each(&m->pio, qtree_isa, out);
}
