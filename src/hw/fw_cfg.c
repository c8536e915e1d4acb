/* fw_cfg: items indexed by selector, a cursor into the selected one, and the DMA engine. The
 * guest's DMA requests are the one untrusted input here: the control block and every transfer
 * are bounded by machine_read/machine_dma_write, and failures end as the ERROR bit (QEMU's
 * fw_cfg_dma_transfer), never as an access outside guest RAM. */
#include "hw/fw_cfg.h"

#include "util/log.h"
#include "vm/machine.h"
#include "vm/vmstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STD_ITEMS  FW_CFG_FILE_FIRST + FW_CFG_MAX_FILES
#define ARCH_ITEMS 0x20

struct fw_cfg_item {
    uint8_t *data;
    uint32_t len;
};

struct fw_cfg_file {
    char name[FW_CFG_FILE_NAME_MAX];
    uint16_t select;
};

struct fw_cfg {
    struct machine *m;
    pthread_mutex_t lock;
    struct fw_cfg_item std[STD_ITEMS], arch[ARCH_ITEMS];
    struct fw_cfg_file files[FW_CFG_MAX_FILES];   /* sorted by name */
    int nfiles;
    uint16_t cur;            /* selected key, or FW_CFG_INVALID */
    uint32_t offset;         /* cursor into it */
    uint64_t dma_addr;       /* the high half, until the low half's write starts the transfer */
    uint32_t dir_crc;        /* the file directory's CRC-32, for the state stream */
};

static struct fw_cfg_item *fw_cfg_item(struct fw_cfg *f, uint16_t key)
{
    if (key == FW_CFG_INVALID)
        return NULL;
    unsigned idx = key & ~(unsigned)FW_CFG_ARCH_LOCAL & 0x3fff;   /* bit 14: QEMU's write channel */
    if (key & FW_CFG_ARCH_LOCAL)
        return idx < ARCH_ITEMS ? &f->arch[idx] : NULL;
    return idx < STD_ITEMS ? &f->std[idx] : NULL;
}

static int fw_cfg_set(struct fw_cfg_item *it, const void *data, size_t len)
{
    if (len > UINT32_MAX)
        return -E2BIG;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, data, len);
    free(it->data);
    it->data = copy;
    it->len = (uint32_t)len;
    return 0;
}

int fw_cfg_add_bytes(struct fw_cfg *f, uint16_t key, const void *data, size_t len)
{
    if ((key & 0x3fff) >= FW_CFG_FILE_FIRST && !(key & FW_CFG_ARCH_LOCAL))
        return -EINVAL;   /* files go through fw_cfg_add_file */
    pthread_mutex_lock(&f->lock);
    struct fw_cfg_item *it = fw_cfg_item(f, key);
    int ret = it ? fw_cfg_set(it, data, len) : -EINVAL;
    pthread_mutex_unlock(&f->lock);
    return ret;
}

int fw_cfg_add_i16(struct fw_cfg *f, uint16_t key, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    return fw_cfg_add_bytes(f, key, b, sizeof(b));
}

int fw_cfg_add_i32(struct fw_cfg *f, uint16_t key, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return fw_cfg_add_bytes(f, key, b, sizeof(b));
}

int fw_cfg_add_i64(struct fw_cfg *f, uint16_t key, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return fw_cfg_add_bytes(f, key, b, sizeof(b));
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* FW_CFG_FILE_DIR: be32 count, then per file be32 size, be16 select, be16 reserved, name[56]. */
static int fw_cfg_rebuild_dir(struct fw_cfg *f)
{
    size_t len = 4 + (size_t)f->nfiles * 64;
    uint8_t *dir = calloc(1, len);
    if (!dir)
        return -ENOMEM;
    put_be32(dir, (uint32_t)f->nfiles);
    for (int i = 0; i < f->nfiles; i++) {
        uint8_t *e = dir + 4 + (size_t)i * 64;
        put_be32(e, f->std[f->files[i].select].len);
        e[4] = (uint8_t)(f->files[i].select >> 8);
        e[5] = (uint8_t)f->files[i].select;
        memcpy(e + 8, f->files[i].name, FW_CFG_FILE_NAME_MAX);
    }
    int ret = fw_cfg_set(&f->std[FW_CFG_FILE_DIR], dir, len);
    free(dir);
    return ret;
}

int fw_cfg_add_file(struct fw_cfg *f, const char *name, const void *data, size_t len)
{
    if (strlen(name) >= FW_CFG_FILE_NAME_MAX)
        return -ENAMETOOLONG;
    pthread_mutex_lock(&f->lock);
    int ret = 0, pos = 0;
    if (f->nfiles == FW_CFG_MAX_FILES) {
        ret = -ENOSPC;
        goto out;
    }
    while (pos < f->nfiles && strcmp(f->files[pos].name, name) < 0)
        pos++;
    if (pos < f->nfiles && !strcmp(f->files[pos].name, name)) {
        ret = -EEXIST;
        goto out;
    }
    uint16_t select = (uint16_t)(FW_CFG_FILE_FIRST + f->nfiles);   /* selectors in order added */
    if ((ret = fw_cfg_set(&f->std[select], data, len)))
        goto out;
    memmove(&f->files[pos + 1], &f->files[pos], (size_t)(f->nfiles - pos) * sizeof(f->files[0]));
    memset(&f->files[pos], 0, sizeof(f->files[pos]));
    strcpy(f->files[pos].name, name);
    f->files[pos].select = select;
    f->nfiles++;
    ret = fw_cfg_rebuild_dir(f);
out:
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static void fw_cfg_select(struct fw_cfg *f, uint16_t key)
{
    f->offset = 0;
    struct fw_cfg_item *it = fw_cfg_item(f, key);
    f->cur = it ? key : FW_CFG_INVALID;
}

/* Past the end, or with nothing selected, the data port reads zeros (QEMU does the same). */
static uint8_t fw_cfg_next_byte(struct fw_cfg *f)
{
    struct fw_cfg_item *it = fw_cfg_item(f, f->cur);
    if (!it || !it->data || f->offset >= it->len)
        return 0;
    return it->data[f->offset++];
}

/* Writes that reach guest RAM behind the CPUs: an emulator drops code translated from there. */
static void fw_cfg_dma_wrote(struct fw_cfg *f, uint64_t gpa, uint64_t len)
{
    machine_note_dirty(f->m, gpa, len);
}

static int fw_cfg_dma_zero(struct fw_cfg *f, uint64_t gpa, uint64_t len)
{
    static const uint8_t zeros[4096];
    if (!machine_gpa_ptr(f->m, gpa, len))   /* bounds the whole range before any write */
        return -EFAULT;
    for (uint64_t off = 0; off < len; off += sizeof(zeros)) {
        uint64_t n = len - off < sizeof(zeros) ? len - off : sizeof(zeros);
        if (machine_dma_write(f->m, gpa + off, zeros, n))
            return -EFAULT;
    }
    fw_cfg_dma_wrote(f, gpa, len);
    return 0;
}

/* One request: the control block at addr is {be32 control, be32 length, be64 address}. */
static void fw_cfg_dma_transfer(struct fw_cfg *f, uint64_t addr)
{
    uint8_t blk[16];
    uint8_t status[4];
    if (machine_read(f->m, addr, blk, sizeof(blk))) {
        put_be32(status, FW_CFG_DMA_ERROR);
        machine_dma_write(f->m, addr, status, 4);   /* may fail too: then the guest sees nothing */
        log_debug(LOG_GUEST, "fw_cfg: DMA control block at 0x%llx is not in RAM",
                  (unsigned long long)addr);
        return;
    }
    uint32_t control = get_be32(blk), length = get_be32(blk + 4);
    uint64_t gpa = (uint64_t)get_be32(blk + 8) << 32 | get_be32(blk + 12);
    if (control & FW_CFG_DMA_SELECT)
        fw_cfg_select(f, (uint16_t)(control >> 16));
    bool read = false, write = false;
    if (control & FW_CFG_DMA_READ)
        read = true;
    else if (control & FW_CFG_DMA_WRITE)
        write = true;
    else if (!(control & FW_CFG_DMA_SKIP))
        length = 0;
    uint32_t result = 0;
    struct fw_cfg_item *it = fw_cfg_item(f, f->cur);
    while (length && !(result & FW_CFG_DMA_ERROR)) {
        uint32_t n;
        if (!it || !it->data || f->offset >= it->len) {
            n = length;
            if ((read && fw_cfg_dma_zero(f, gpa, n)) || write)
                result |= FW_CFG_DMA_ERROR;
        } else {
            n = it->len - f->offset < length ? it->len - f->offset : length;
            if (read) {
                if (machine_dma_write(f->m, gpa, it->data + f->offset, n))
                    result |= FW_CFG_DMA_ERROR;
                else
                    fw_cfg_dma_wrote(f, gpa, n);
            }
            if (write)
                result |= FW_CFG_DMA_ERROR;   /* no item here is writable */
            f->offset += n;
        }
        gpa += n;
        length -= n;
    }
    if (result & FW_CFG_DMA_ERROR)
        log_debug(LOG_GUEST, "fw_cfg: DMA %s of key 0x%x failed at 0x%llx", read ? "read" : write ? "write" : "skip",
                  f->cur, (unsigned long long)gpa);
    put_be32(status, result);
    machine_dma_write(f->m, addr, status, 4);
}

static uint64_t bswap_n(const void *data, unsigned size)
{
    const uint8_t *b = data;
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v = v << 8 | b[i];
    return v;
}

/* 0x510-0x511: a 16-bit write at 0x510 selects; bytes read at either port are data (QEMU's
 * "comb" region); byte writes are the old data-write interface, gone since QEMU 2.4: ignored. */
static void fw_cfg_io_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct fw_cfg *f = opaque;
    (void)off;
    if (size != 1) {
        memset(data, 0xff, size);
        return;
    }
    pthread_mutex_lock(&f->lock);
    *(uint8_t *)data = fw_cfg_next_byte(f);
    pthread_mutex_unlock(&f->lock);
}

static void fw_cfg_io_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct fw_cfg *f = opaque;
    if (off != 0 || size != 2)
        return;
    uint16_t key;
    memcpy(&key, data, 2);
    pthread_mutex_lock(&f->lock);
    fw_cfg_select(f, key);
    pthread_mutex_unlock(&f->lock);
}

/* 0x514-0x51b: the DMA address, big-endian. A 32-bit write at 0x514 sets the high half, one at
 * 0x518 the low half and starts the transfer; a 64-bit write does both. */
static void fw_cfg_dma_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    (void)opaque;
    uint8_t sig[8];
    for (int i = 0; i < 8; i++)
        sig[i] = (uint8_t)(FW_CFG_DMA_SIGNATURE >> (56 - 8 * i));
    memset(data, 0, size);
    if (off + size <= 8)
        memcpy(data, sig + off, size);
}

static void fw_cfg_dma_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct fw_cfg *f = opaque;
    uint64_t v = bswap_n(data, size);
    pthread_mutex_lock(&f->lock);
    if (size == 4 && off == 0) {
        f->dma_addr = v << 32;
    } else if (size == 4 && off == 4) {
        uint64_t a = f->dma_addr | v;
        f->dma_addr = 0;
        fw_cfg_dma_transfer(f, a);
    } else if (size == 8 && off == 0) {
        f->dma_addr = 0;
        fw_cfg_dma_transfer(f, v);
    }
    pthread_mutex_unlock(&f->lock);
}

/* The guest's cursor: the selected item, how far it has read, a DMA address half written (a DMA
 * transfer itself runs whole inside one port write). The items are the machine's, built from
 * its options: not carried, but the file directory (names, sizes, selectors) must be the
 * source's, or a firmware halfway through reading "etc/table-loader" would go on in another. */
static const struct vmstate_field fw_cfg_fields[] = {
    VMSTATE_U16(struct fw_cfg, cur), VMSTATE_U32(struct fw_cfg, offset), VMSTATE_U64(struct fw_cfg, dma_addr),
    VMSTATE_U32(struct fw_cfg, dir_crc),
    VMSTATE_END,
};

static uint32_t fw_cfg_dir_crc(const struct fw_cfg *f)
{
    const struct fw_cfg_item *d = &f->std[FW_CFG_FILE_DIR];
    return d->data ? vmstate_crc32(d->data, d->len) : 0;
}

static void fw_cfg_pre_save(void *opaque)
{
    struct fw_cfg *f = opaque;
    f->dir_crc = fw_cfg_dir_crc(f);
}

static int fw_cfg_vmstate_check(const void *live, const void *state, const char **why)
{
    const struct fw_cfg *l = live, *s = state;
    if (s->dir_crc != fw_cfg_dir_crc(l))
        return *why = "file directory (the source had other fw_cfg files)", -EINVAL;
    if (s->cur == FW_CFG_INVALID)
        return 0;
    /* the item lookup only reads: a const cast for the live device */
    const struct fw_cfg_item *it = fw_cfg_item((struct fw_cfg *)l, s->cur);
    if (!it)
        return *why = "selected key", -EINVAL;
    if (s->offset > it->len)
        return *why = "offset (past the end of the selected item here)", -EINVAL;
    return 0;
}

/* optional: multiboot's fw_cfg on the direct-boot machine had no state before */
static const struct vmstate_desc fw_cfg_vmstate = {
    .name = "fw_cfg", .version = 1, .min_version = 1, .size = sizeof(struct fw_cfg), .fields = fw_cfg_fields,
    .pre_save = fw_cfg_pre_save, .check = fw_cfg_vmstate_check, .optional = true,
};

static void fw_cfg_free(void *opaque)
{
    struct fw_cfg *f = opaque;
    for (int i = 0; i < STD_ITEMS; i++)
        free(f->std[i].data);
    for (int i = 0; i < ARCH_ITEMS; i++)
        free(f->arch[i].data);
    pthread_mutex_destroy(&f->lock);
    if (f->m->fw_cfg == f)
        f->m->fw_cfg = NULL;
    free(f);
}

int fw_cfg_create(struct machine *m)
{
    struct fw_cfg *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->m = m;
    f->cur = FW_CFG_INVALID;
    pthread_mutex_init(&f->lock, NULL);
    int ret = machine_add_cleanup(m, fw_cfg_free, f);
    if (ret)
        return ret;
    m->fw_cfg = f;
    if ((ret = fw_cfg_add_bytes(f, FW_CFG_SIGNATURE, "QEMU", 4)) ||
        (ret = fw_cfg_add_i32(f, FW_CFG_ID, FW_CFG_VERSION | FW_CFG_VERSION_DMA)) ||
        (ret = fw_cfg_rebuild_dir(f)))
        return ret;
    ret = bus_register(&m->pio, FW_CFG_PORT_SEL, 2, fw_cfg_io_read, fw_cfg_io_write, f, "fw_cfg");
    if (!ret)
        ret = bus_register(&m->pio, FW_CFG_PORT_DMA, 8, fw_cfg_dma_read, fw_cfg_dma_write, f, "fw_cfg-dma");
    if (ret) {
        log_error("fw_cfg: cannot claim ports 0x510-0x51b: %s", strerror(-ret));
        return ret;
    }
    return vmstate_register(m, &fw_cfg_vmstate, 0, f);
}
