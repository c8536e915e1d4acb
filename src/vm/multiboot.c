/* Multiboot v1 (the Multiboot Specification 0.6.96) as QEMU's -kernel does it. QEMU loads the
 * image into its fw_cfg and lets an option ROM (multiboot.bin) copy it and ask SeaBIOS for the
 * memory map; qkvm's direct-boot machine has no firmware, so the same bytes land in RAM here and
 * the CPU starts at the kernel's entry in 32-bit protected mode. After the kernel (page aligned)
 * come the module list, the command lines and the boot loader's name as in QEMU, then the memory
 * map, the boot information and a page of stack, then each module on a page. QEMU puts the map
 * and the information at 0x9000-0x95ff whatever the kernel loads there (kvm-unit-tests'
 * realmode.flat loads at 0x8000-0xa86b); after the kernel they can overlap nothing. */
#include "vm/multiboot.h"

#include "hw/fw_cfg.h"
#include "util/log.h"
#include "vm/boot.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* boot information offsets and flags (spec section 3.3) */
#define MBI_FLAGS        0
#define MBI_MEM_LOWER    4
#define MBI_MEM_UPPER    8
#define MBI_BOOT_DEVICE  12
#define MBI_CMDLINE      16
#define MBI_MODS_COUNT   20
#define MBI_MODS_ADDR    24
#define MBI_MMAP_LENGTH  44
#define MBI_MMAP_ADDR    48
#define MBI_BOOTLOADER   64
#define MBI_SIZE         88
#define MB_MOD_SIZE      16

#define MBI_HAS_MEMORY      (1u << 0)
#define MBI_HAS_BOOT_DEVICE (1u << 1)
#define MBI_HAS_CMDLINE     (1u << 2)
#define MBI_HAS_MODULES     (1u << 3)
#define MBI_HAS_MMAP        (1u << 6)
#define MBI_HAS_BOOTLOADER  (1u << 9)

#define MB_LOADER_NAME   "qkvm"
#define MB_LOADER_END    0x1000u     /* the IVT, BIOS data area and the loader's GDT below this */
#define MB_MMAP_MAX      16
#define MB_STACK_SIZE    0x1000u
#define MB_LOW_RAM_END   0x9fc00u    /* the EBDA and the legacy hole follow (boot_e820_map) */
#define MB_PAGE(x)       (((x) + 0xfffull) & ~0xfffull)


static void wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24); }

/* Is [a, a + len) guest RAM the loader may fill: above its own data, below the EBDA or from
 * 1 MiB to the end of low RAM? */
static bool mb_range_ok(uint64_t a, uint64_t len, uint64_t low_end)
{
    uint64_t e = a + len;
    if (a < MB_LOADER_END)
        return false;
    if (e <= MB_LOW_RAM_END)
        return true;
    return a >= 0x100000 && e <= low_end;
}

/* The fw_cfg QEMU's machines always have: kvm-unit-tests asks it for the CPU count and RAM size. */
static int mb_fw_cfg(struct machine *m)
{
    int ret = m->fw_cfg ? 0 : fw_cfg_create(m);
    if (!ret && !(ret = fw_cfg_add_i64(m->fw_cfg, FW_CFG_RAM_SIZE, m->ram_size)) &&
        !(ret = fw_cfg_add_i16(m->fw_cfg, FW_CFG_NB_CPUS, (uint16_t)m->ncpus)))
        ret = fw_cfg_add_i16(m->fw_cfg, FW_CFG_MAX_CPUS, (uint16_t)m->ncpus);
    if (ret)
        log_error("fw_cfg: cannot fill in the machine's items: %s", strerror(-ret));
    return ret;
}

/* Under QEMU a multiboot kernel starts after SeaBIOS, which programmed the 8259s for real mode:
 * IRQ 0-7 at vectors 0x08-0x0f, IRQ 8-15 at 0x70-0x77. Code that goes back to real mode expects
 * them there (kvm-unit-tests' realmode sets IRQ 11 and installs its handler at 0x73); an
 * unprogrammed PIC would send IRQ 11 to vector 3. The lines stay unmasked: there is no BIOS with
 * handlers of its own to mask them for. Without a PIC on the bus the writes go nowhere. */
static void mb_pic_init(struct machine *m)
{
    static const uint16_t port[] = { 0x20, 0xa0, 0x21, 0xa1, 0x21, 0xa1, 0x21, 0xa1, 0x21, 0xa1 };
    static const uint8_t val[] = { 0x11, 0x11, 0x08, 0x70, 0x04, 0x02, 0x01, 0x01, 0x00, 0x00 };
    for (size_t k = 0; k < sizeof(port) / sizeof(port[0]); k++) {
        uint8_t v = val[k];
        bus_dispatch(&m->pio, port[k], &v, 1, true);
    }
}

int multiboot_load(struct machine *m, const struct multiboot_image *img, const uint8_t *k, size_t klen,
                   const char *kernel_name, struct cpu_state *s)
{
    const struct machine_config *cfg = m->cfg;
    uint64_t low_end = m->ram_size < MACHINE_LOW_RAM_END ? m->ram_size : MACHINE_LOW_RAM_END;
    for (int i = 0; i < img->nseg; i++) {
        const struct multiboot_segment *g = &img->seg[i];
        if (!mb_range_ok(g->addr, g->mem_len, low_end) || (uint64_t)g->file_off + g->file_len > klen) {
            log_error("multiboot kernel '%s': segment 0x%x-0x%llx is outside the guest's usable RAM "
                      "(0x%x-0x%x and 1 MiB-%llu MiB)", kernel_name, g->addr,
                      (unsigned long long)g->addr + g->mem_len - 1, MB_LOADER_END, MB_LOW_RAM_END - 1,
                      (unsigned long long)(low_end >> 20));
            return -EINVAL;
        }
    }
    const char *append = cfg->cmdline ? cfg->cmdline : "";
    int nmods = cfg->initrd ? multiboot_module_text(cfg->initrd, 0, NULL, 0) : 0;
    size_t texts = strlen(kernel_name) + 1 + strlen(append) + 1 + sizeof(MB_LOADER_NAME);
    if (cfg->initrd)
        texts += strlen(cfg->initrd) + 1;
    uint64_t info = MB_PAGE((uint64_t)img->high);
    /* the module list, the texts, the memory map, the boot information, then a page of stack */
    uint64_t mmap_off = ((uint64_t)nmods * MB_MOD_SIZE + texts + 7) & ~7ull;
    uint64_t mbi_off = mmap_off + MB_MMAP_MAX * 24;
    uint64_t stack_top = MB_PAGE(info + mbi_off + MBI_SIZE) + MB_STACK_SIZE;
    uint64_t info_len = stack_top - info;
    uint64_t mods_at = stack_top;
    if (!mb_range_ok(info, info_len, low_end)) {
        log_error("multiboot kernel '%s': no room in RAM for the boot information after the kernel", kernel_name);
        return -ENOMEM;
    }
    for (int i = 0; i < img->nseg; i++) {
        const struct multiboot_segment *g = &img->seg[i];
        uint8_t *dst = machine_gpa_ptr(m, g->addr, g->mem_len);
        if (!dst)
            return -EFAULT;
        memcpy(dst, k + g->file_off, g->file_len);
        memset(dst + g->file_len, 0, g->mem_len - g->file_len);
    }
    uint8_t *ib = machine_gpa_ptr(m, info, info_len);
    if (!ib)
        return -EFAULT;
    memset(ib, 0, info_len);
    uint64_t text_at = info + (uint64_t)nmods * MB_MOD_SIZE;
    char *tp = (char *)ib + nmods * MB_MOD_SIZE;
    int ret = 0;
    for (int i = 0; i < nmods && !ret; i++) {
        int tl = multiboot_module_text(cfg->initrd, i, tp, strlen(cfg->initrd) + 1);
        char name[4096];
        snprintf(name, sizeof(name), "%s", tp);
        name[strcspn(name, " ")] = 0;   /* as QEMU: after a space come the module's arguments */
        uint8_t *data = NULL;
        size_t dlen = 0;
        ret = tl < 0 ? tl : boot_read_file(name, 1ull << 32, &data, &dlen);
        if (ret) {
            log_error("cannot read multiboot module '%s': %s", name, ret == -EFBIG ? "larger than 4 GiB" : strerror(-ret));
            break;
        }
        if (!mb_range_ok(mods_at, dlen, low_end)) {
            log_error("multiboot module '%s' (%zu bytes) does not fit in guest RAM below %llu MiB", name, dlen,
                      (unsigned long long)(low_end >> 20));
            free(data);
            ret = -ENOMEM;
            break;
        }
        if (dlen)
            memcpy(machine_gpa_ptr(m, mods_at, dlen), data, dlen);
        free(data);
        uint8_t *mod = ib + i * MB_MOD_SIZE;
        wr32(mod + 0, (uint32_t)mods_at);
        wr32(mod + 4, (uint32_t)(mods_at + dlen));
        wr32(mod + 8, (uint32_t)(text_at + (uint64_t)(tp - ((char *)ib + nmods * MB_MOD_SIZE))));
        tp += tl + 1;
        mods_at = MB_PAGE(mods_at + dlen);
    }
    if (ret)
        return ret;
    uint32_t cmdline_at = (uint32_t)(text_at + (uint64_t)(tp - ((char *)ib + nmods * MB_MOD_SIZE)));
    tp += sprintf(tp, "%s %s", kernel_name, append) + 1;
    uint32_t loader_at = (uint32_t)(text_at + (uint64_t)(tp - ((char *)ib + nmods * MB_MOD_SIZE)));
    strcpy(tp, MB_LOADER_NAME);

    /* the memory map: e820 entries, each preceded by its size (20) */
    struct boot_e820 e820[MB_MMAP_MAX];
    int n = boot_e820_map(m, e820, MB_MMAP_MAX);
    uint8_t *mm = ib + mmap_off, *mbi = ib + mbi_off;
    for (int i = 0; i < n; i++) {
        wr32(mm + i * 24, 20);
        memcpy(mm + i * 24 + 4, &e820[i], 20);
    }
    memset(mbi, 0, MBI_SIZE);
    wr32(mbi + MBI_FLAGS, MBI_HAS_MEMORY | MBI_HAS_BOOT_DEVICE | MBI_HAS_CMDLINE | MBI_HAS_MODULES | MBI_HAS_MMAP |
                          MBI_HAS_BOOTLOADER);
    wr32(mbi + MBI_MEM_LOWER, MB_LOW_RAM_END / 1024);
    wr32(mbi + MBI_MEM_UPPER, (uint32_t)((low_end - 0x100000) / 1024));
    wr32(mbi + MBI_BOOT_DEVICE, 0x8000ffff);   /* QEMU's: the first hard disk, no partition */
    wr32(mbi + MBI_CMDLINE, cmdline_at);
    wr32(mbi + MBI_MODS_COUNT, (uint32_t)nmods);
    wr32(mbi + MBI_MODS_ADDR, (uint32_t)info);
    wr32(mbi + MBI_MMAP_LENGTH, (uint32_t)n * 24);
    wr32(mbi + MBI_MMAP_ADDR, (uint32_t)(info + mmap_off));
    wr32(mbi + MBI_BOOTLOADER, loader_at);

    s->gpr[R_AX] = MULTIBOOT_BOOT_MAGIC;
    s->gpr[R_BX] = info + mbi_off;
    s->gpr[R_SP] = stack_top - 0x10;   /* not promised by the spec; harmless, and usable */
    s->rip = img->entry;
    mb_pic_init(m);
    return mb_fw_cfg(m);
}
