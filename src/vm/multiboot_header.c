/* The multiboot header and the image it describes (ELF32 program headers or the a.out kludge's
 * address fields), and QEMU's -initrd module list: parsers of a user's files that touch nothing
 * but their arguments, apart from the loader (multiboot.c) so that the fuzzer links them alone. */
#include "vm/multiboot.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define ELF_PT_LOAD   1
#define ELF_EM_386    3
#define ELF_EM_X86_64 62

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }

static int mb_add_segment(struct multiboot_image *img, uint64_t file_off, uint64_t file_len, uint64_t addr,
                          uint64_t mem_len, const char **why)
{
    if (img->nseg == MULTIBOOT_MAX_SEGMENTS) {
        *why = "more loadable segments than qkvm takes (32)";
        return -EINVAL;
    }
    /* the top of the 32-bit space is the firmware's, never RAM; refusing a segment that reaches
     * it also keeps the end of every segment representable in 32 bits */
    if (addr + mem_len >= (1ull << 32)) {
        *why = "a segment reaches 4 GiB (a multiboot kernel is loaded below 4 GiB)";
        return -EINVAL;
    }
    img->seg[img->nseg++] = (struct multiboot_segment){ (uint32_t)file_off, (uint32_t)file_len, (uint32_t)addr,
                                                        (uint32_t)mem_len };
    return 0;
}

/* The ELF32 program headers' loadable segments, at their physical addresses (p_paddr), as
 * QEMU's load_elf places them. */
static int mb_parse_elf(const uint8_t *b, size_t len, struct multiboot_image *img, const char **why)
{
    if (len < 52 || memcmp(b, "\x7f" "ELF", 4)) {
        *why = "multiboot header without load addresses (flag 16), and the file is not an ELF image";
        return -EINVAL;
    }
    if (b[4] == 2 && len >= 20 && rd16(b + 18) == ELF_EM_X86_64) {
        *why = "a 64-bit ELF image: a multiboot kernel must be ELF32 (i386)";
        return -EINVAL;
    }
    if (b[4] != 1 || b[5] != 1 || rd16(b + 18) != ELF_EM_386) {
        *why = "not a little-endian ELF32 image for i386";
        return -EINVAL;
    }
    uint64_t phoff = rd32(b + 28), phent = rd16(b + 42), phnum = rd16(b + 44);
    if (phnum && phent < 32) {
        *why = "ELF program header entries shorter than 32 bytes";
        return -EINVAL;
    }
    if (phoff + phent * phnum > len) {
        *why = "the ELF program headers run past the end of the file (truncated)";
        return -EINVAL;
    }
    for (uint64_t i = 0; i < phnum; i++) {
        const uint8_t *ph = b + phoff + i * phent;
        uint64_t off = rd32(ph + 4), paddr = rd32(ph + 12), filesz = rd32(ph + 16), memsz = rd32(ph + 20);
        if (rd32(ph) != ELF_PT_LOAD || !memsz)
            continue;
        if (filesz > memsz) {
            *why = "an ELF segment with more file bytes than memory bytes";
            return -EINVAL;
        }
        if (off + filesz > len) {
            *why = "an ELF segment runs past the end of the file (truncated)";
            return -EINVAL;
        }
        int ret = mb_add_segment(img, off, filesz, paddr, memsz, why);
        if (ret)
            return ret;
    }
    img->entry = rd32(b + 24);
    return 0;
}

/* The a.out kludge: the header's own fields say which part of the file goes where. */
static int mb_parse_aout(const uint8_t *b, size_t len, struct multiboot_image *img, const char **why)
{
    const uint8_t *h = b + img->header_off;
    uint64_t header_addr = rd32(h + 12), load = rd32(h + 16), load_end = rd32(h + 20), bss_end = rd32(h + 24);
    if (header_addr < load) {
        *why = "multiboot header_addr lies below load_addr";
        return -EINVAL;
    }
    if (header_addr - load > img->header_off) {
        *why = "multiboot load_addr would start before the beginning of the file";
        return -EINVAL;
    }
    uint64_t text_off = img->header_off - (header_addr - load), load_len;
    if (load_end) {
        if (load_end < load) {
            *why = "multiboot load_end_addr lies below load_addr";
            return -EINVAL;
        }
        load_len = load_end - load;
        if (text_off + load_len > len) {
            *why = "multiboot load_end_addr runs past the end of the file (truncated)";
            return -EINVAL;
        }
    } else {
        load_len = len - text_off;
    }
    uint64_t mem_len = load_len;
    if (bss_end) {
        if (bss_end < load + load_len) {
            *why = "multiboot bss_end_addr lies below the end of the loaded image";
            return -EINVAL;
        }
        mem_len = bss_end - load;
    }
    img->entry = rd32(h + 28);
    return mb_add_segment(img, text_off, load_len, load, mem_len, why);
}

int multiboot_parse(const uint8_t *buf, size_t len, struct multiboot_image *img, const char **why)
{
    memset(img, 0, sizeof(*img));
    *why = NULL;
    size_t lim = len < MULTIBOOT_SEARCH ? len : MULTIBOOT_SEARCH;
    size_t off = 0;
    bool found = false;
    for (; off + 12 <= lim && !found; off += 4)
        found = rd32(buf + off) == MULTIBOOT_HEADER_MAGIC &&
                (uint32_t)(MULTIBOOT_HEADER_MAGIC + rd32(buf + off + 4) + rd32(buf + off + 8)) == 0;
    if (!found)
        return 0;
    img->header_off = (uint32_t)(off - 4);
    img->flags = rd32(buf + img->header_off + 4);
    int ret;
    if (img->flags & MULTIBOOT_FLAG_AOUT) {
        if (img->header_off + 32 > len) {
            *why = "truncated multiboot header (its address fields are missing)";
            return -EINVAL;
        }
        ret = mb_parse_aout(buf, len, img, why);
    } else {
        ret = mb_parse_elf(buf, len, img, why);
    }
    if (ret)
        return ret;
    if (!img->nseg) {
        *why = "no loadable segment";
        return -EINVAL;
    }
    img->low = UINT32_MAX;
    uint64_t high = 0;
    for (int i = 0; i < img->nseg; i++) {
        const struct multiboot_segment *a = &img->seg[i];
        for (int j = 0; j < i; j++) {
            const struct multiboot_segment *c = &img->seg[j];
            if ((uint64_t)a->addr < (uint64_t)c->addr + c->mem_len && (uint64_t)c->addr < (uint64_t)a->addr + a->mem_len) {
                *why = "two segments overlap in memory";
                return -EINVAL;
            }
        }
        if (a->addr < img->low)
            img->low = a->addr;
        if ((uint64_t)a->addr + a->mem_len > high)
            high = (uint64_t)a->addr + a->mem_len;
    }
    img->high = (uint32_t)high;   /* every segment ends below 4 GiB */
    return 1;
}

int multiboot_module_text(const char *list, int idx, char *out, size_t max)
{
    int n = 0;
    size_t k = 0;
    int ret = 0;
    if (out && max)
        out[0] = 0;
    for (const char *p = list;; p++) {
        bool end = !*p || (*p == ',' && p[1] != ',');
        if (end) {
            if (n == idx && out) {
                if (k >= max)
                    ret = -E2BIG;
                else
                    out[k] = 0;
            }
            n++;
            k = 0;
            if (!*p)
                break;
            continue;
        }
        if (*p == ',')
            p++;   /* ",," is one comma in the text */
        if (n == idx && out && k + 1 < max)
            out[k] = *p;
        if (n == idx)
            k++;
    }
    if (ret)
        return ret;
    return out ? (int)strlen(out) : n;
}
