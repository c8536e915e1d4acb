/* Multiboot (version 1) kernels given to -kernel, loaded as QEMU's hw/i386/multiboot.c loads
 * them: an ELF32 image by its program headers, or a flat image by the header's address fields
 * (the "a.out kludge", flag bit 16); modules from -initrd ("file args,file2 args", ",," for a
 * comma in a name); the command line "<kernel file name> <append>"; the boot information with
 * memory sizes, an e820-style memory map and the boot loader's name. kvm-unit-tests' .flat
 * tests are such kernels. */
#ifndef QKVM_VM_MULTIBOOT_H
#define QKVM_VM_MULTIBOOT_H
#include <stddef.h>
#include <stdint.h>

struct machine;
struct cpu_state;

#define MULTIBOOT_HEADER_MAGIC  0x1badb002u
#define MULTIBOOT_BOOT_MAGIC    0x2badb002u   /* in EAX at the kernel's entry */
#define MULTIBOOT_SEARCH        8192          /* the header lies in the file's first 8 KiB */
#define MULTIBOOT_FLAG_AOUT     0x00010000u   /* the header gives the load addresses */
#define MULTIBOOT_MAX_SEGMENTS  32

/* One piece of the image: file bytes [file_off, file_off + file_len) at guest address addr,
 * zero-filled up to mem_len. */
struct multiboot_segment {
    uint32_t file_off, file_len, addr, mem_len;
};

struct multiboot_image {
    uint32_t header_off;    /* where the header was found */
    uint32_t flags;
    uint32_t entry;
    uint32_t low, high;     /* the lowest address loaded and the end of the highest */
    int nseg;
    struct multiboot_segment seg[MULTIBOOT_MAX_SEGMENTS];
};

/* Looks for a multiboot header in buf (a whole kernel file of len bytes) and checks everything
 * the file alone can tell: the header is whole, the ELF32 or a.out addresses are consistent,
 * every segment lies inside the file and the 32-bit address space, and no two overlap.
 * Returns 1 with *img filled, 0 when there is no multiboot header (not this format), or -EINVAL
 * with *why set to a one-line reason. Touches nothing but its arguments (unit tests, fuzzing). */
int multiboot_parse(const uint8_t *buf, size_t len, struct multiboot_image *img, const char **why);

/* Splits QEMU's -initrd list for multiboot: module i's text (file name, then arguments after a
 * space) into out (size max). Returns the number of modules, and with out != NULL the length of
 * module idx's text; -E2BIG when it does not fit. */
int multiboot_module_text(const char *list, int idx, char *out, size_t max);

/* Loads the parsed image, its modules and boot information into m's RAM and fills *s for the
 * 32-bit entry (EAX = MULTIBOOT_BOOT_MAGIC, EBX = the information's address, a flat GDT, paging
 * off). A segment outside RAM or over the loader's own data, or modules that do not fit, are one
 * logged error line and -EINVAL/-ENOMEM. The file name in the command line is kernel_name. */
int multiboot_load(struct machine *m, const struct multiboot_image *img, const uint8_t *k, size_t klen,
                   const char *kernel_name, struct cpu_state *s);

#endif
