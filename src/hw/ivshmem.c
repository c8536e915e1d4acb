/* ivshmem-plain: QEMU's inter-VM shared memory device (QEMU docs/specs/ivshmem-spec.txt), the
 * memory half. Vendor 1af4, device 1110, revision 1: BAR0 holds four registers, BAR2 the memory of
 * a -object memory-backend-file/-memfd, so guests (and host programs mapping the same file) share it.
 *
 * BAR2 is served through the PCI window like any MMIO BAR, each access a copy to or from the
 * mapping, rather than as a RAM region: the accelerators take their RAM regions once, before the
 * vCPUs run, and the guest (SeaBIOS, Linux) may move the BAR afterwards. Slower than RAM, but right
 * wherever the guest puts it (docs/ivshmem.md). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hw/pci.h"
#include "util/log.h"
#include "util/parse.h"
#include "vm/machine.h"

#define IVSHMEM_VENDOR   0x1af4
#define IVSHMEM_DEVICE   0x1110
#define IVSHMEM_REG_BAR  0
#define IVSHMEM_MEM_BAR  2
#define IVSHMEM_REG_SIZE 256

enum { REG_INTR_MASK = 0, REG_INTR_STATUS = 4, REG_IV_POSITION = 8, REG_DOORBELL = 12 };

struct ivshmem {
    struct pci_device pci;
    struct machine *m;
    uint8_t *mem;
    uint64_t size;
    uint32_t intr_mask, intr_status;
};

static void reg_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    uint32_t v = 0;
    switch (off) {
    case REG_INTR_MASK: v = s->intr_mask; break;
    case REG_INTR_STATUS: v = s->intr_status; s->intr_status = 0; break;   /* read clears */
    case REG_IV_POSITION: v = 0; break;     /* no server: no id (the spec: zero) */
    default: break;
    }
    memset(data, 0, size);
    memcpy(data, &v, size < 4 ? size : 4);
}

static void reg_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    uint32_t v = 0;
    memcpy(&v, data, size < 4 ? size : 4);
    switch (off) {
    case REG_INTR_MASK: s->intr_mask = v; break;
    case REG_INTR_STATUS: s->intr_status = v; break;
    case REG_DOORBELL: break;   /* the spec: ignored without interrupts */
    default:
        machine_log_guest(s->m, LOG_GUEST, "ivshmem register",
                          "ivshmem: write to read-only or reserved register %#" PRIx64, off);
    }
}

static void mem_read(void *opaque, uint64_t off, void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    if (off >= s->size || size > s->size - off) {
        memset(data, 0xff, size);
        return;
    }
    memcpy(data, s->mem + off, size);
}

static void mem_write(void *opaque, uint64_t off, const void *data, unsigned size)
{
    struct ivshmem *s = opaque;
    if (off < s->size && size <= s->size - off)
        memcpy(s->mem + off, data, size);
}

static void ivshmem_cleanup(void *opaque)
{
    struct ivshmem *s = opaque;
    if (s->mem)
        munmap(s->mem, s->size);
    free(s);
}

/* Opens and maps the -object the memdev names (its whole definition, put there by the config). */
static int ivshmem_map_memdev(struct ivshmem *s, const char *spec)
{
    struct kvlist kv;
    if (keyval_parse(spec, "qom-type", &kv)) {
        log_error("ivshmem-plain: memdev=%s is not a memory back-end", spec);
        return -EINVAL;
    }
    const char *type = keyval_get(&kv, "qom-type"), *path = keyval_get(&kv, "mem-path");
    const char *size = keyval_get(&kv, "size"), *share = keyval_get(&kv, "share");
    keyval_get(&kv, "id");
    bool shared = !strcmp(type ? type : "", "memory-backend-memfd");  /* QEMU's defaults */
    int ret = -EINVAL, fd = -1;
    uint64_t sz = 0;
    const char *unk = keyval_unused(&kv);
    if (unk) {
        log_error("ivshmem-plain: memory back-end: unknown parameter '%s'", unk);
        goto out;
    }
    if (!size || parse_size(size, 1, &sz) || sz < 4096 || (sz & (sz - 1)) || sz > (1ull << 40)) {
        log_error("ivshmem-plain: memory size %s is not a power of two from 4K to 1T", size ? size : "");
        goto out;
    }
    if (share && parse_bool(share, &shared)) {
        log_error("ivshmem-plain: share=%s is not on or off", share);
        goto out;
    }
    if (path)
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    else
        fd = memfd_create("ivshmem", MFD_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        ret = -errno;
        log_error("ivshmem-plain: cannot open %s: %s", path ? path : "a memfd", strerror(-ret));
        goto out;
    }
    /* A smaller file grows (QEMU does the same); a bigger one is shared in part. */
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < sz && ftruncate(fd, (off_t)sz) < 0) {
        ret = -errno;
        log_error("ivshmem-plain: cannot size %s to %" PRIu64 ": %s", path ? path : "a memfd", sz,
                  strerror(-ret));
        goto out;
    }
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        ret = -errno;
        log_error("ivshmem-plain: cannot map %s: %s", path ? path : "a memfd", strerror(-ret));
        goto out;
    }
    if (!shared)
        log_warn("ivshmem-plain: share=off: the guest gets a private copy, shared with nobody");
    s->mem = p;
    s->size = sz;
    ret = 0;
out:
    if (fd >= 0)
        close(fd);
    keyval_free(&kv);
    return ret;
}

static int ivshmem_plain_create(struct machine *m, struct kvlist *opts)
{
    struct ivshmem *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int ret = machine_add_cleanup(m, ivshmem_cleanup, s);
    if (ret) {
        free(s);
        return ret;
    }
    s->m = m;
    const char *memdev = keyval_get(opts, "memdev");
    const char *addr = keyval_get(opts, "addr");
    keyval_get(opts, "master");     /* QEMU's migration role: qkvm does not migrate these */
    if (!memdev) {
        log_error("ivshmem-plain: needs memdev=");
        return -EINVAL;
    }
    int slot = pci_parse_addr(addr);
    if (slot == -EINVAL) {
        log_error("ivshmem-plain: addr=%s is not a PCI slot (0x1-0x1f)", addr);
        return -EINVAL;
    }
    if ((ret = ivshmem_map_memdev(s, memdev)))
        return ret;
    struct pci_device *d = &s->pci;
    /* class 0x0500: memory controller, RAM, as QEMU's device */
    pci_device_init(d, "ivshmem-plain", IVSHMEM_VENDOR, IVSHMEM_DEVICE, 0x050000, 1, 0x1af4, 0x1100);
    d->opaque = s;
    if ((ret = pci_device_add_bar(d, IVSHMEM_REG_BAR, IVSHMEM_REG_SIZE, 0, reg_read, reg_write, s)) ||
        (ret = pci_device_add_bar(d, IVSHMEM_MEM_BAR, s->size, PCI_BAR_MEM_64 | PCI_BAR_PREFETCH,
                                  mem_read, mem_write, s)))
        return ret;
    return pci_register_device(m, d, slot);
}
DEVICE_TYPE("ivshmem-plain", ivshmem_plain_create)
