/* mapped-ram files (vm/mapped_ram.h) between machines in one process: RAM saved with pages of
 * data, pages of zeros and pages never touched comes back byte for byte when another machine maps
 * the file; a write into a mapped machine reaches neither the file nor a third machine mapping
 * it; the head refuses every prefix of itself and every single byte changed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "vm/mapped_ram.h"
#include "virtio_fixture.h"

#define RAM (8ull << 20)

static const uint8_t dev[] = "a device state stream stands here";

/* A machine whose RAM has data in two pages of three, zeros written in the third, and its last
 * MiB never touched; saved to a temporary file. */
static int saved_file(struct vfx **out, char *path, size_t n)
{
    struct vfx *a = vfx_new_machine(NULL, RAM, MACHINE_DIRECT);
    uint64_t x = 0x243f6a8885a308d3ull;
    memset(a->m.ram, 0, RAM - (1 << 20));
    for (uint64_t pg = 0; pg < (RAM - (1 << 20)) / 4096; pg++) {
        if (pg % 3 == 2)
            continue;
        for (uint64_t i = 0; i < 4096; i += 8) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            memcpy(a->m.ram + pg * 4096 + i, &x, 8);
        }
    }
    a->m.ram[5 * 4096 + 4095] = 1;   /* a page of zeros but its last byte */
    snprintf(path, n, "/tmp/qkvm-test-mapped-ram-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    struct mapped_ram_stats st;
    char why[256] = "";
    assert_int_equal(mapped_ram_save(&a->m, fd, dev, sizeof(dev), NULL, &st, why, sizeof(why)), 0);
    uint64_t data = 0;
    for (uint64_t pg = 0; pg < (RAM - (1 << 20)) / 4096; pg++)
        data += pg % 3 != 2 || pg == 5;
    assert_int_equal(st.pages, data);
    assert_int_equal(st.zero_pages, RAM / 4096 - data);
    *out = a;
    return fd;
}

static void test_map_every_byte(void **state)
{
    (void)state;
    char path[64], why[256] = "";
    struct vfx *a;
    int fd = saved_file(&a, path, sizeof(path));
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(sb.st_size, MAPPED_RAM_ALIGN + RAM);
    assert_true(sb.st_blocks * 512 < (off_t)RAM);   /* zero pages are holes */
    uint8_t *head;
    struct mapped_ram_header h;
    assert_int_equal(mapped_ram_read_head(fd, &head, &h, why, sizeof(why)), 0);
    assert_int_equal(h.ram_size, RAM);
    assert_int_equal(h.pages_offset, MAPPED_RAM_ALIGN);
    assert_int_equal(h.dev_len, sizeof(dev));
    assert_memory_equal(h.dev, dev, sizeof(dev));

    struct vfx *b = vfx_new_machine(NULL, RAM, MACHINE_DIRECT);
    uint8_t *b_ram = b->m.ram;
    b->m.ram[12345] = 0x77;   /* what was there goes */
    assert_int_equal(mapped_ram_map(&b->m, fd, &h), 0);
    assert_ptr_equal(b->m.ram, b_ram);   /* the same host addresses */
    assert_memory_equal(b->m.ram, a->m.ram, RAM);

    /* a write in b: not in the file, not in c */
    memset(b->m.ram + 4096, 0xee, 4096);
    b->m.ram[RAM - 1] = 0xee;
    struct vfx *c = vfx_new_machine(NULL, RAM, MACHINE_DIRECT);
    assert_int_equal(mapped_ram_map(&c->m, fd, &h), 0);
    assert_memory_equal(c->m.ram, a->m.ram, RAM);
    uint8_t page[4096];
    assert_int_equal(pread(fd, page, 4096, (off_t)(MAPPED_RAM_ALIGN + 4096)), 4096);
    assert_memory_equal(page, a->m.ram + 4096, 4096);

    /* unmapped again: anonymous zeros */
    assert_int_equal(mapped_ram_unmap(&c->m), 0);
    for (uint64_t i = 0; i < RAM; i += 4096)
        assert_int_equal(c->m.ram[i + 8], 0);
    free(head);
    close(fd);
    unlink(path);
    vfx_free(a);
    vfx_free(b);
    vfx_free(c);
}

static void test_head_refusals(void **state)
{
    (void)state;
    char path[64], why[256];
    struct vfx *a;
    int fd = saved_file(&a, path, sizeof(path));
    uint8_t *head;
    struct mapped_ram_header h;
    assert_int_equal(mapped_ram_read_head(fd, &head, &h, why, sizeof(why)), 0);
    size_t len = (size_t)(h.dev + h.dev_len + 5 - head);
    uint64_t size = MAPPED_RAM_ALIGN + RAM;
    size_t need;
    /* every prefix: more wanted while the file goes on, refused where the file ends */
    for (size_t n = 0; n < len; n++) {
        struct mapped_ram_header g;
        need = 0;
        assert_int_equal(mapped_ram_parse(head, n, size, &g, &need, why, sizeof(why)), -EAGAIN);
        assert_true(need > n && need <= len);
        why[0] = 0;
        assert_int_equal(mapped_ram_parse(head, n, n, &g, &need, why, sizeof(why)), -EINVAL);
        assert_non_null(strstr(why, "truncated"));
    }
    /* the pages cut short */
    assert_int_equal(mapped_ram_parse(head, len, size - 1, &h, &need, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "truncated"));
    /* every byte changed */
    uint8_t *copy = malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, head, len);
        copy[i] ^= 0x40;
        struct mapped_ram_header g;
        why[0] = 0;
        int ret = mapped_ram_parse(copy, len, size, &g, &need, why, sizeof(why));
        if (ret == -EAGAIN)   /* a length made longer: the rest is not there */
            ret = mapped_ram_parse(copy, len, len, &g, &need, why, sizeof(why));
        assert_true(ret == -EINVAL || ret == -EPROTONOSUPPORT);
        assert_true(why[0] && !strchr(why, '\n'));
    }
    free(copy);
    free(head);
    close(fd);
    unlink(path);
    vfx_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_every_byte),
        cmocka_unit_test(test_head_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
