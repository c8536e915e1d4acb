/* Mapping the PC's firmware. QEMU (hw/i386/x86-common.c, x86_bios_rom_init) puts the whole image
 * at 4 GiB minus its size, where the CPU's first fetch (0xfffffff0) finds its reset vector, and
 * its last 128 KiB at 0xe0000 ("isa-bios"), where real-mode code reaches it. The low copy is a
 * view the host bridge's PAM registers can switch to RAM: SeaBIOS copies itself into that RAM
 * ("shadowing") and runs from there. */
#include "vm/firmware.h"

#include "util/log.h"
#include "vm/boot.h"
#include "vm/machine.h"
#include "vm/memory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int firmware_check(const char *path, const char **why)
{
    uint8_t *img;
    size_t len;
    int ret = boot_read_file(path, FIRMWARE_MAX_SIZE, &img, &len);
    if (ret) {
        *why = ret == -EFBIG ? "larger than 16 MiB" : strerror(-ret);
        return ret;
    }
    free(img);
    if (!len || len % 0x10000) {
        *why = "not a firmware image: its size must be a nonzero multiple of 64 KiB";
        return -EINVAL;
    }
    return 0;
}

struct firmware_mapping {
    void *p;
    size_t len;
};

static void firmware_unmap(void *opaque)
{
    struct firmware_mapping *fm = opaque;
    munmap(fm->p, fm->len);
    free(fm);
}

int firmware_map(struct machine *m)
{
    const char *path = m->cfg->bios ? m->cfg->bios : FIRMWARE_DEFAULT_PATH;
    const char *why;
    if (firmware_check(path, &why)) {
        log_error("cannot load firmware '%s': %s", path, why);
        return -EINVAL;
    }
    uint8_t *img;
    size_t len;
    int ret = boot_read_file(path, FIRMWARE_MAX_SIZE, &img, &len);
    if (ret) {
        log_error("cannot load firmware '%s': %s", path, strerror(-ret));
        return ret;
    }
    /* One mapping: [pad | image | view]. The pad makes an image smaller than 128 KiB still have
     * 128 KiB before its end, read as ones (no ROM there) when PAM shows it at 0xe0000. */
    size_t pad = len < FIRMWARE_ISA_SIZE ? FIRMWARE_ISA_SIZE - len : 0;
    size_t total = pad + len + FIRMWARE_VIEW_SIZE;
    uint8_t *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        ret = -errno;
        free(img);
        return ret;
    }
    struct firmware_mapping *fm = malloc(sizeof(*fm));
    if (!fm || machine_add_cleanup(m, firmware_unmap, fm)) {
        munmap(base, total);
        free(img);
        return -ENOMEM;
    }
    *fm = (struct firmware_mapping){ base, total };
    uint8_t *rom = base + pad, *view = rom + len;
    memset(base, 0xff, pad);
    memcpy(rom, img, len);
    free(img);
    m->isa_rom = rom + len - FIRMWARE_ISA_SIZE;
    m->isa_view = view;
    /* at reset PAM routes every segment to ROM (or to PCI, where nothing answers: ones) */
    memset(view, 0xff, FIRMWARE_VIEW_SIZE - FIRMWARE_ISA_SIZE);
    memcpy(view + FIRMWARE_VIEW_SIZE - FIRMWARE_ISA_SIZE, m->isa_rom, FIRMWARE_ISA_SIZE);
    /* Both read-only: every guest write reaches the bus, where the PAM code decides where it goes. */
    ret = memory_add_region(m, MACHINE_HIGH_RAM_BASE - len, len, rom, true);
    if (!ret)
        ret = memory_add_region(m, FIRMWARE_VIEW_BASE, FIRMWARE_VIEW_SIZE, view, true);
    if (ret)
        log_error("cannot map firmware '%s': %s", path, strerror(-ret));
    return ret;
}
