/* libFuzzer target: the multiboot header parser (vm/multiboot.c) and the -initrd module list
 * splitter on arbitrary bytes. A parse that succeeds must describe segments inside the file and
 * the 32-bit address space that do not overlap; a refusal must say why in one line.
 *   built and run by tests/integration/multiboot-fuzz.sh */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vm/multiboot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    struct multiboot_image img;
    const char *why;
    int ret = multiboot_parse(data, len, &img, &why);
    if (ret < 0 && (!why || !*why || strchr(why, '\n')))
        abort();
    if (ret > 0) {
        if (img.nseg < 1 || img.nseg > MULTIBOOT_MAX_SEGMENTS)
            abort();
        for (int i = 0; i < img.nseg; i++) {
            const struct multiboot_segment *s = &img.seg[i];
            if ((uint64_t)s->file_off + s->file_len > len || s->file_len > s->mem_len ||
                (uint64_t)s->addr + s->mem_len > (1ull << 32) || s->addr < img.low ||
                (uint64_t)s->addr + s->mem_len > img.high)
                abort();
            for (int j = 0; j < i; j++)
                if ((uint64_t)s->addr < (uint64_t)img.seg[j].addr + img.seg[j].mem_len &&
                    img.seg[j].addr < (uint64_t)s->addr + s->mem_len)
                    abort();
        }
    }
    /* the same bytes as an -initrd list (up to the first NUL) */
    char list[256];
    size_t n = len < sizeof(list) - 1 ? len : sizeof(list) - 1;
    memcpy(list, data, n);
    list[n] = 0;
    int count = multiboot_module_text(list, 0, NULL, 0);
    if (count < 1)
        abort();
    for (int i = 0; i < count; i++) {
        char out[256];
        int tl = multiboot_module_text(list, i, out, sizeof(out));
        if (tl < 0 || (size_t)tl != strlen(out) || (size_t)tl > n)
            abort();
    }
    return 0;
}
