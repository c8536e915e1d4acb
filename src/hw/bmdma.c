/* The PIIX3 IDE function's bus master (hw/bmdma.h): its registers, the PRD table walk, and the
 * hooks hw/ide.c calls while a DMA command runs. A channel's registers are guarded by its IDE
 * channel's lock: the start bit, the command and the interrupt bit change together. */
#include "hw/bmdma.h"

#include "hw/ide.h"
#include "hw/pci.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct bmdma_channel {
    struct bmdma *bm;
    struct ide_channel *ide;
    uint8_t cmd, status;
    uint32_t prd;
    struct bmdma_walk walk;     /* where the running command is in the table */
};

struct bmdma {
    struct machine *m;
    struct pci_device *pci;
    struct bmdma_channel ch[2];
};

void bmdma_prd_decode(const uint8_t raw[8], struct bmdma_prd *out)
{
    uint32_t addr = (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 24;
    uint32_t cnt = (uint32_t)raw[4] | (uint32_t)raw[5] << 8 | (uint32_t)raw[6] << 16 | (uint32_t)raw[7] << 24;
    out->addr = addr & ~1u;
    out->len = cnt & 0xfffe;
    if (!out->len)
        out->len = 0x10000;   /* 0 means 64 KiB (82371SB table 2.7.3) */
    out->eot = cnt & BMDMA_PRD_EOT;
}

/* Loads entry w->index; false when the table has run into its 64 KiB boundary (SHORT) or the
 * entry is not in RAM (FAULT, *fault set). */
static bool walk_load(struct machine *m, struct bmdma_walk *w, bool *fault)
{
    uint64_t at = (uint64_t)w->table + 8ull * w->index;
    if ((at & ~(uint64_t)(BMDMA_PRD_TABLE_SPAN - 1)) != (w->table & ~(BMDMA_PRD_TABLE_SPAN - 1)))
        return false;
    uint8_t raw[8];
    if (machine_read(m, at, raw, sizeof(raw))) {
        *fault = true;
        return false;
    }
    bmdma_prd_decode(raw, &w->cur);
    w->used = 0;
    w->loaded = true;
    return true;
}

int bmdma_walk_rw(struct machine *m, struct bmdma_walk *w, void *buf, size_t len, bool to_guest)
{
    uint8_t *p = buf;
    while (len) {
        if (w->ended)
            return IDE_DMA_SHORT;
        bool fault = false;
        if (!w->loaded && !walk_load(m, w, &fault))
            return fault ? IDE_DMA_FAULT : IDE_DMA_SHORT;
        uint32_t n = w->cur.len - w->used;
        if (n > len)
            n = (uint32_t)len;
        uint64_t gpa = (uint64_t)w->cur.addr + w->used;
        if (to_guest ? machine_dma_write(m, gpa, p, n) : machine_read(m, gpa, p, n))
            return IDE_DMA_FAULT;
        p += n, len -= n, w->used += n;
        if (w->used == w->cur.len) {
            if (w->cur.eot)
                w->ended = true;
            w->index++;
            w->loaded = false;
        }
    }
    return IDE_DMA_OK;
}

static bool bm_started(void *opaque)
{
    struct bmdma_channel *c = opaque;
    return c->cmd & BMDMA_CMD_START;
}

/* A device without bus mastering on in its command register cannot reach memory: the
 * transfer faults (the PIIX would not get the bus; the guest sees the error bit). */
static enum ide_dma_result bm_rw(void *opaque, void *buf, size_t len, bool to_guest)
{
    struct bmdma_channel *c = opaque;
    if (!(pci_get_word(c->bm->pci->config + PCI_COMMAND) & PCI_COMMAND_MASTER))
        return IDE_DMA_FAULT;
    return (enum ide_dma_result)bmdma_walk_rw(c->bm->m, &c->walk, buf, len, to_guest);
}

/* The status the SFF-8038i table gives: done with the table used up, active clear; done with
 * entries left over, active stays (with the interrupt); the table too short, neither active
 * nor interrupt; a bus fault, the error bit. */
static void bm_end(void *opaque, enum ide_dma_result r)
{
    struct bmdma_channel *c = opaque;
    if (r == IDE_DMA_FAULT)
        c->status |= BMDMA_ST_ERROR;
    if (r != IDE_DMA_OK || c->walk.ended)
        c->status &= (uint8_t)~BMDMA_ST_ACTIVE;
}

static void bm_irq(void *opaque)
{
    struct bmdma_channel *c = opaque;
    c->status |= BMDMA_ST_INTR;
}

static const struct ide_dma_ops bmdma_ops = {
    .started = bm_started, .rw = bm_rw, .end = bm_end, .irq = bm_irq,
};

static uint8_t reg_read(struct bmdma_channel *c, unsigned off)
{
    switch (off) {
    case 0: return c->cmd;
    case 2: return c->status;
    case 4: case 5: case 6: case 7: return (uint8_t)(c->prd >> (8 * (off - 4)));
    }
    return 0;   /* reserved bytes (the 82371SB's read as 0) */
}

static void reg_write(struct bmdma_channel *c, unsigned off, uint8_t v)
{
    switch (off) {
    case 0: {
        bool was = c->cmd & BMDMA_CMD_START, now = v & BMDMA_CMD_START;
        c->cmd = v & (BMDMA_CMD_START | BMDMA_CMD_READ);
        if (now && !was) {
            /* a new start reads the table from its first entry */
            c->status |= BMDMA_ST_ACTIVE;
            c->walk = (struct bmdma_walk){ .table = c->prd };
            ide_channel_dma_kick(c->ide);
        } else if (!now && was) {
            /* stopping the bus master: a command still waiting for it keeps waiting */
            c->status &= (uint8_t)~BMDMA_ST_ACTIVE;
        }
        return;
    }
    case 2:
        c->status = (uint8_t)((c->status & ~(BMDMA_ST_DMA0 | BMDMA_ST_DMA1)) | (v & (BMDMA_ST_DMA0 | BMDMA_ST_DMA1)));
        c->status &= (uint8_t)~(v & (BMDMA_ST_ERROR | BMDMA_ST_INTR));
        return;
    case 4: case 5: case 6: case 7: {
        unsigned sh = 8 * (off - 4);
        c->prd = (c->prd & ~(0xffu << sh)) | (uint32_t)v << sh;
        c->prd &= ~3u;   /* dword aligned: bits 1-0 read as 0 */
        return;
    }
    }
}

static void bmdma_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct bmdma *bm = opaque;
    uint8_t *p = data;
    memset(data, 0, size);
    for (unsigned i = 0; i < size && off + i < BMDMA_BAR_SIZE; i++) {
        struct bmdma_channel *c = &bm->ch[(off + i) / 8];
        ide_channel_lock(c->ide);
        p[i] = reg_read(c, (unsigned)(off + i) % 8);
        ide_channel_unlock(c->ide);
    }
}

static void bmdma_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct bmdma *bm = opaque;
    const uint8_t *p = data;
    for (unsigned i = 0; i < size && off + i < BMDMA_BAR_SIZE; i++) {
        struct bmdma_channel *c = &bm->ch[(off + i) / 8];
        ide_channel_lock(c->ide);
        reg_write(c, (unsigned)(off + i) % 8, p[i]);
        ide_channel_unlock(c->ide);
    }
}

/* The registers only: a transfer runs whole inside one register write, so none is ever in
 * flight when the machine is saved. */
static const struct vmstate_field bmdma_channel_fields[] = {
    VMSTATE_U8(struct bmdma_channel, cmd),
    VMSTATE_U8(struct bmdma_channel, status),
    VMSTATE_U32(struct bmdma_channel, prd),
    VMSTATE_END,
};

static const struct vmstate_field bmdma_fields[] = {
    VMSTATE_STRUCT_ARRAY(struct bmdma, ch, 2, bmdma_channel_fields, struct bmdma_channel),
    VMSTATE_END,
};

static int bmdma_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct bmdma *s = state;
    (void)live;
    for (int i = 0; i < 2; i++)
        if ((s->ch[i].cmd & ~(BMDMA_CMD_START | BMDMA_CMD_READ)) || (s->ch[i].prd & 3) || (s->ch[i].status & 0x98))
            return *why = "bus master register bits the hardware keeps 0", -EINVAL;
    return 0;
}

static const struct vmstate_desc bmdma_vmstate = {
    .name = "bmdma", .version = 1, .min_version = 1, .size = sizeof(struct bmdma), .fields = bmdma_fields,
    .check = bmdma_vmstate_check,
};

int bmdma_create(struct machine *m, struct pci_device *d, struct ide_channel *ch[2])
{
    struct bmdma *bm = calloc(1, sizeof(*bm));
    if (!bm)
        return -ENOMEM;
    int ret = machine_add_cleanup(m, free, bm);
    if (ret)
        return ret;
    bm->m = m;
    bm->pci = d;
    for (int i = 0; i < 2; i++) {
        bm->ch[i].bm = bm;
        bm->ch[i].ide = ch[i];
        ide_channel_set_dma(ch[i], &bmdma_ops, &bm->ch[i]);
    }
    if ((ret = pci_device_add_io_bar(d, BMDMA_BAR, BMDMA_BAR_SIZE, bmdma_read, bmdma_write, bm)))
        return ret;
    return vmstate_register(m, &bmdma_vmstate, 0, bm);
}
