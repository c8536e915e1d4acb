/* The Linux/x86 boot protocol (Documentation/arch/x86/boot.rst): we are the boot loader. The
 * kernel's real-mode setup code is not run; the zero page it would fill is filled here and the
 * CPU enters the kernel in long mode (64-bit boot protocol) when the kernel offers it. */
#include "vm/boot.h"

#include "accel/accel.h"
#include "util/log.h"
#include "vm/acpi.h"
#include "vm/cpu_state.h"
#include "vm/machine.h"
#include "vm/memory.h"
#include "vm/multiboot.h"
#include "vm/smbios.h"
#include "vm/vcpu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* setup header offsets (boot.rst) */
#define HDR_SETUP_SECTS   0x1f1
#define HDR_BOOT_FLAG     0x1fe
#define HDR_HEADER        0x202
#define HDR_VERSION       0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS     0x211
#define HDR_CODE32_START  0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE  0x21c
#define HDR_HEAP_END_PTR  0x224
#define HDR_CMD_LINE_PTR  0x228
#define HDR_INITRD_MAX    0x22c
#define HDR_XLOADFLAGS    0x236
#define HDR_CMDLINE_SIZE  0x238
#define HDR_INIT_SIZE     0x260
#define ZP_ACPI_RSDP      0x070
#define ZP_E820_ENTRIES   0x1e8
#define ZP_E820_TABLE     0x2d0
#define ZP_E820_MAX       128

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

int boot_read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int err = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        close(fd);
        return err;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    uint8_t *b = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!b) {
        close(fd);
        return -ENOMEM;
    }
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, b + off, (size_t)st.st_size - off);
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            free(b);
            close(fd);
            return err;
        }
        off += (size_t)n;
    }
    close(fd);
    *buf = b;
    *len = off;
    return 0;
}

static const char *boot_header_problem(const uint8_t *k, size_t len)
{
    if (len < 0x400 || rd16(k + HDR_BOOT_FLAG) != 0xaa55 || memcmp(k + HDR_HEADER, "HdrS", 4))
        return "not a bzImage (no Linux boot header)";
    if (rd16(k + HDR_VERSION) < 0x206)
        return "boot protocol older than 2.06";
    if (!(k[HDR_LOADFLAGS] & LOADED_HIGH))
        return "a zImage (loaded low); only bzImage is supported";
    unsigned setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
    if ((size_t)(setup_sects + 1) * 512 >= len)
        return "truncated (no protected-mode code after the setup sectors)";
    return NULL;
}

int boot_check_kernel(const char *path, const char **why)
{
    uint8_t hdr[0x1000];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return -errno;
    }
    struct stat st;
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? pread(fd, hdr, sizeof(hdr), 0) : -1;
    close(fd);
    if (n < 0) {
        *why = "not a regular file";
        return -EINVAL;
    }
    if (n < 0x206 || memcmp(hdr + HDR_HEADER, "HdrS", 4)) {
        /* no Linux boot header: as QEMU, a multiboot kernel then (the whole file is checked) */
        uint8_t *k;
        size_t klen;
        struct multiboot_image img;
        int ret = boot_read_file(path, BOOT_KERNEL_MAX, &k, &klen);
        if (ret) {
            *why = ret == -EFBIG ? "larger than 1 GiB" : strerror(-ret);
            return ret;
        }
        ret = multiboot_parse(k, klen, &img, why);
        free(k);
        if (ret > 0)
            return 0;
        if (!ret)
            *why = n < 0x400 ? "not a bzImage nor a multiboot kernel (too short)"
                             : "not a bzImage (no Linux boot header) nor a multiboot kernel (no multiboot header)";
        return -EINVAL;
    }
    if (n < 0x400) {
        *why = "not a bzImage (too short)";
        return -EINVAL;
    }
    memset(hdr + n, 0, sizeof(hdr) - (size_t)n);
    /* the header test needs the file length for the truncation check */
    *why = boot_header_problem(hdr, (size_t)st.st_size);
    return *why ? -EINVAL : 0;
}

int boot_check_initrd(const char *kernel, const char *initrd, char *why, size_t max)
{
    uint8_t hdr[0x206];
    int fd = open(kernel, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : pread(fd, hdr, sizeof(hdr), 0);
    if (fd >= 0)
        close(fd);
    bool multiboot = n >= 0 && (n < (ssize_t)sizeof(hdr) || memcmp(hdr + HDR_HEADER, "HdrS", 4));
    int count = multiboot ? multiboot_module_text(initrd, 0, NULL, 0) : 1;
    for (int i = 0; i < count; i++) {
        char name[4096];
        if (!multiboot)
            snprintf(name, sizeof(name), "%s", initrd);
        else if (multiboot_module_text(initrd, i, name, sizeof(name)) < 0) {
            snprintf(why, max, "-initrd %s: a module's name is too long", initrd);
            return -ENAMETOOLONG;
        } else
            name[strcspn(name, " ")] = 0;   /* after a space come the module's arguments */
        if (access(name, R_OK)) {
            int err = -errno;
            snprintf(why, max, "-initrd %s: %s", name, strerror(errno));
            return err;
        }
    }
    return 0;
}

int boot_e820_map(const struct machine *m, struct boot_e820 *out, int max)
{
    int n = 0;
    uint64_t low = m->ram_size < MACHINE_LOW_RAM_END ? m->ram_size : MACHINE_LOW_RAM_END;
#define E820(a, s, t) do { if (n < max) out[n++] = (struct boot_e820){ (a), (s), (t) }; } while (0)
    E820(0, 0x9fc00, 1);
    E820(0x9fc00, 0x400, 2);                       /* where an EBDA would be */
    E820(BOOT_BIOS_AREA, 0x100000 - BOOT_BIOS_AREA, 2);
    if (low > 0x100000)
        E820(0x100000, low - 0x100000, 1);
    if (m->ram_size > low)
        E820(MACHINE_HIGH_RAM_BASE, m->ram_size - low, 1);
#undef E820
    return n;
}

/* Identity map of the first 4 GiB with 2 MiB pages: the 64-bit boot protocol requires the kernel,
 * zero page and command line to be identity mapped, and the kernel builds its own tables. */
static void boot_write_page_tables(struct machine *m)
{
    uint64_t *pml4 = machine_gpa_ptr(m, BOOT_PML4_ADDR, 6 * 4096);
    memset(pml4, 0, 6 * 4096);
    uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;
    pml4[0] = (BOOT_PML4_ADDR + 0x1000) | 0x3;
    for (int i = 0; i < 4; i++)
        pdpt[i] = (BOOT_PML4_ADDR + 0x2000 + (uint64_t)i * 0x1000) | 0x3;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | 0x83;   /* present, writable, 2 MiB page */
}

/* GDT as the boot protocol expects it: __BOOT_CS at 0x10, __BOOT_DS at 0x18. */
static void boot_write_gdt(struct machine *m, bool long_mode)
{
    uint64_t *gdt = machine_gpa_ptr(m, BOOT_GDT_ADDR, 4 * 8);
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = long_mode ? 0x00af9b000000ffffull : 0x00cf9b000000ffffull;
    gdt[3] = 0x00cf93000000ffffull;
}

static void boot_protected_state(struct cpu_state *s, bool long_mode)
{
    cpu_state_reset(s, true);
    s->seg[SEG_CS] = cpu_segment_flat(0x10, 0xb, long_mode);
    struct cpu_segment ds = cpu_segment_flat(0x18, 0x3, long_mode);
    s->seg[SEG_DS] = s->seg[SEG_ES] = s->seg[SEG_SS] = s->seg[SEG_FS] = s->seg[SEG_GS] = ds;
    s->seg[SEG_TR] = (struct cpu_segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
    s->gdt = (struct cpu_table){ BOOT_GDT_ADDR, 4 * 8 - 1 };
    s->idt = (struct cpu_table){ 0, 0 };
    s->cr0 = 0x11;   /* PE, ET */
    if (long_mode) {
        s->cr0 |= 0x80000000u;   /* PG */
        s->cr3 = BOOT_PML4_ADDR;
        s->cr4 = 0x20;           /* PAE */
        s->efer = 0x500;         /* LME, LMA */
    }
    s->rflags = 0x2;
    s->gpr[R_DX] = 0;
}

int boot_load_linux(struct machine *m, uint64_t rsdp, struct cpu_state *s)
{
    const struct machine_config *cfg = m->cfg;
    uint8_t *k = NULL, *initrd = NULL;
    size_t klen = 0, ilen = 0;
    int ret = boot_read_file(cfg->kernel, BOOT_KERNEL_MAX, &k, &klen);
    if (ret) {
        log_error("cannot read kernel '%s': %s", cfg->kernel, strerror(-ret));
        return ret;
    }
    struct multiboot_image img;
    const char *problem = NULL;
    if (klen < 0x206 || memcmp(k + HDR_HEADER, "HdrS", 4)) {
        ret = multiboot_parse(k, klen, &img, &problem);
        if (ret > 0) {
            boot_write_gdt(m, false);
            boot_protected_state(s, false);
            ret = multiboot_load(m, &img, k, klen, cfg->kernel, s);
            goto out;
        }
        ret = 0;
    }
    if (!problem)
        problem = boot_header_problem(k, klen);
    if (problem) {
        log_error("kernel '%s': %s", cfg->kernel, problem);
        ret = -EINVAL;
        goto out;
    }
    uint16_t version = rd16(k + HDR_VERSION);
    unsigned setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
    size_t setup_len = (size_t)(setup_sects + 1) * 512;
    size_t pm_len = klen - setup_len;
    uint64_t low_end = m->ram_size < MACHINE_LOW_RAM_END ? m->ram_size : MACHINE_LOW_RAM_END;
    uint64_t init_size = version >= 0x20a ? rd32(k + HDR_INIT_SIZE) : 0;
    uint64_t kernel_end = BOOT_KERNEL_ADDR + (init_size > pm_len ? init_size : pm_len);
    if (kernel_end > low_end) {
        log_error("kernel '%s' needs %llu MiB of RAM to unpack; the guest has %llu MiB", cfg->kernel,
                  (unsigned long long)((kernel_end + (1 << 20) - 1) >> 20),
                  (unsigned long long)(m->ram_size >> 20));
        ret = -ENOMEM;
        goto out;
    }
    memcpy(machine_gpa_ptr(m, BOOT_KERNEL_ADDR, pm_len), k + setup_len, pm_len);

    uint8_t *zp = machine_gpa_ptr(m, BOOT_ZERO_PAGE, 4096);
    memset(zp, 0, 4096);
    /* the setup header runs from 0x1f1 to 0x202 + the byte at 0x201 */
    size_t hdr_end = 0x202 + k[0x201];   /* at most 0x301: inside the 0x400 bytes checked */
    memcpy(zp + HDR_SETUP_SECTS, k + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
    zp[HDR_TYPE_OF_LOADER] = 0xff;
    zp[HDR_LOADFLAGS] |= CAN_USE_HEAP;
    zp[HDR_HEAP_END_PTR] = 0x00, zp[HDR_HEAP_END_PTR + 1] = 0xfe;

    const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
    size_t cmax = rd32(k + HDR_CMDLINE_SIZE);
    if (strlen(cmdline) > cmax || strlen(cmdline) >= BOOT_CMDLINE_MAX) {
        log_error("kernel command line is %zu bytes; this kernel takes at most %zu", strlen(cmdline), cmax);
        ret = -E2BIG;
        goto out;
    }
    strcpy(machine_gpa_ptr(m, BOOT_CMDLINE_ADDR, BOOT_CMDLINE_MAX), cmdline);
    wr32(zp + HDR_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);

    if (cfg->initrd) {
        ret = boot_read_file(cfg->initrd, 1ull << 32, &initrd, &ilen);
        if (ret) {
            log_error("cannot read initrd '%s': %s", cfg->initrd,
                      ret == -EFBIG ? "larger than 4 GiB" : strerror(-ret));
            goto out;
        }
        uint64_t max = rd32(k + HDR_INITRD_MAX);   /* address of the last byte it may use */
        if (!max)
            max = 0x37ffffff;
        uint64_t top = low_end < max + 1 ? low_end : max + 1;
        uint64_t addr = top >= ilen ? ((top - ilen) & ~0xfffull) : 0;
        if (ilen && addr < ((kernel_end + 0xfff) & ~0xfffull)) {
            log_error("initrd '%s' (%zu bytes) does not fit in guest RAM below 0x%llx beside the kernel",
                      cfg->initrd, ilen, (unsigned long long)top);
            ret = -ENOMEM;
            goto out;
        }
        memcpy(machine_gpa_ptr(m, addr, ilen), initrd, ilen);
        wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)addr);
        wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)ilen);
    }

    struct boot_e820 e820[ZP_E820_MAX];
    int n = boot_e820_map(m, e820, ZP_E820_MAX);
    zp[ZP_E820_ENTRIES] = (uint8_t)n;
    memcpy(zp + ZP_E820_TABLE, e820, (size_t)n * sizeof(e820[0]));
    if (rsdp)
        memcpy(zp + ZP_ACPI_RSDP, &rsdp, 8);

    bool long_mode = version >= 0x20c && (k[HDR_XLOADFLAGS] & XLF_KERNEL_64);
    boot_write_gdt(m, long_mode);
    boot_protected_state(s, long_mode);
    s->gpr[R_SI] = BOOT_ZERO_PAGE;
    if (long_mode) {
        boot_write_page_tables(m);
        s->rip = BOOT_KERNEL_ADDR + 0x200;   /* the 64-bit entry, boot.rst "64-bit Boot Protocol" */
        /* boot.rst promises no stack, but a kernel that calls before it sets RSP would push
         * into address 0 - 8 and fault; Firecracker and Cloud Hypervisor give 0x8ff0 (free:
         * between the zero page and the page tables) */
        s->gpr[R_SP] = BOOT_STACK_TOP;
    } else {
        s->rip = BOOT_KERNEL_ADDR;
    }
out:
    free(k);
    free(initrd);
    return ret;
}

static void boot_unmap_rom(void *opaque)
{
    struct { void *p; size_t len; } *rm = opaque;
    munmap(rm->p, rm->len);
    free(rm);
}

int boot_map_bios(struct machine *m)
{
    const char *path = m->cfg->bios;
    uint8_t *img;
    size_t len;
    int ret = boot_read_file(path, BOOT_BIOS_MAX, &img, &len);
    if (ret) {
        log_error("cannot load firmware '%s': %s", path,
                  ret == -EFBIG ? "larger than 16 MiB" : strerror(-ret));
        return ret;
    }
    if (!len) {
        free(img);
        log_error("cannot load firmware '%s': the file is empty", path);
        return -EINVAL;
    }
    /* At least 128 KiB, whole 64 KiB units, the image at the end so its last 16 bytes hold the
     * reset vector; the padding reads as erased flash (0xff). */
    size_t rom_size = (len + 0xffff) & ~(size_t)0xffff;
    if (rom_size < 0x20000)
        rom_size = 0x20000;
    uint8_t *rom = mmap(NULL, rom_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rom == MAP_FAILED) {
        free(img);
        return -errno;
    }
    struct rom_mapping { void *p; size_t len; } *rm = malloc(sizeof(*rm));
    if (!rm || machine_add_cleanup(m, boot_unmap_rom, rm)) {
        munmap(rom, rom_size);
        free(img);
        return -ENOMEM;
    }
    *rm = (struct rom_mapping){ rom, rom_size };
    memset(rom, 0xff, rom_size - len);
    memcpy(rom + rom_size - len, img, len);
    free(img);
    ret = memory_add_region(m, MACHINE_HIGH_RAM_BASE - rom_size, rom_size, rom, true);
    if (!ret)
        ret = memory_add_region(m, 0x100000 - 0x20000, 0x20000, rom + rom_size - 0x20000, true);
    if (ret)
        log_error("cannot map firmware '%s': %s", path, strerror(-ret));
    return ret;
}

/* SMBIOS in the top 64 KiB of the BIOS area, where Linux's dmi_scan looks: the entry points at
 * 0xf0000, the table right after them. */
#define SMBIOS_EP_ADDR    0xf0000ull
#define SMBIOS_TABLE_ADDR (SMBIOS_EP_ADDR + SMBIOS_EP_SIZE)
#define SMBIOS_TABLE_MAX  (0x100000ull - SMBIOS_TABLE_ADDR)

void boot_smbios_config(const struct machine *m, struct smbios_config *c)
{
    if (m->cfg->smbios)
        *c = *m->cfg->smbios;
    else
        smbios_config_init(c);
    c->ram_size = m->ram_size;
    c->cpus = (unsigned)m->ncpus;
    /* where RAM sits, as QEMU's type 19 says it: below the hole and from 4 GiB (the PC's
     * firmware area below 1 MiB is RAM too, seen through PAM) */
    uint64_t low = m->ram_size < MACHINE_LOW_RAM_END ? m->ram_size : MACHINE_LOW_RAM_END;
    c->nmem = 1;
    c->mem[0].start = 0, c->mem[0].size = low;
    if (m->ram_size > low)
        c->mem[c->nmem].start = MACHINE_HIGH_RAM_BASE, c->mem[c->nmem++].size = m->ram_size - low;
}

static int boot_write_smbios(struct machine *m)
{
    struct smbios_config c;
    boot_smbios_config(m, &c);
    uint8_t *table = machine_gpa_ptr(m, SMBIOS_TABLE_ADDR, SMBIOS_TABLE_MAX);
    uint8_t *ep = machine_gpa_ptr(m, SMBIOS_EP_ADDR, SMBIOS_EP_SIZE);
    size_t tlen, elen;
    int ret = table && ep ? smbios_build(&c, SMBIOS_TABLE_ADDR, table, SMBIOS_TABLE_MAX, &tlen, ep,
                                         SMBIOS_EP_SIZE, &elen) : -ENOMEM;
    if (ret)
        log_error("cannot build the SMBIOS tables: %s", strerror(-ret));
    return ret;
}

/* Last in machine creation: every device is in place, so the tables can describe them. */
static int boot_init(struct machine *m)
{
    struct cpu_state s;
    int ret;
    /* boot_map_bios or firmware_map placed the image already; a machine waiting for a migration
     * (-incoming) gets all of RAM and the CPUs from the stream, and loading the kernel would only
     * cost a restore its start-up time (copies and faults thrown away) */
    if (m->cfg->bios || m->cfg->type == MACHINE_PC || m->cfg->incoming) {
        cpu_state_reset(&s, true);
        ret = 0;
    } else {
        uint64_t rsdp = acpi_build_tables(m);
        ret = boot_write_smbios(m);
        if (!ret)
            ret = boot_load_linux(m, rsdp, &s);
    }
    if (ret)
        return ret;
    ret = m->accel->vcpu_set_state(&m->vcpus[0], &s);
    if (ret)
        log_error("%s: cannot set the boot CPU's state: %s", m->accel->name, strerror(-ret));
    return ret;
}
MACHINE_INIT(boot_init, INIT_BOOT, NULL)
