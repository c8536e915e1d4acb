#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "block/dynlib.h"
#include "util/crc32.h"

/* zlib's own crc32 is the oracle: the streams' checksum must stay what it was */
static int setup_zlib(void **state)
{
    (void)state;
    char err[256];
    return dynlib_load_zlib(err);
}

static uint8_t *random_buf(size_t n, unsigned seed)
{
    uint8_t *b = malloc(n);
    srand(seed);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rand();
    return b;
}

static void test_crc32_check_value(void **state)
{
    (void)state;
    assert_int_equal(crc32_update(0, "123456789", 9), 0xcbf43926u);   /* CRC-32/ISO-HDLC check */
    assert_int_equal(crc32_update_tables(0, "123456789", 9), 0xcbf43926u);
    assert_int_equal(crc32_update(0, "", 0), 0);
    assert_int_equal(crc32_update(0x12345678, NULL, 0), 0x12345678);
}

/* every length around the fast path's 64- and 16-byte steps, at every alignment */
static void test_crc32_lengths_alignments(void **state)
{
    (void)state;
    uint8_t *b = random_buf(1024 + 16, 1);
    for (size_t off = 0; off < 16; off++)
        for (size_t n = 0; n <= 1024; n++) {
            uint32_t want = (uint32_t)zlib_fn.crc32(0, b + off, (uInt)n);
            if (crc32_update(0, b + off, n) != want || crc32_update_tables(0, b + off, n) != want)
                fail_msg("offset %zu length %zu: %08x/%08x, zlib %08x", off, n, crc32_update(0, b + off, n),
                         crc32_update_tables(0, b + off, n), want);
        }
    free(b);
}

/* a CRC continued across pieces of any size equals the whole's, from any starting value */
static void test_crc32_continued(void **state)
{
    (void)state;
    size_t n = 8u << 20;
    uint8_t *b = random_buf(n, 2);
    uint32_t want = (uint32_t)zlib_fn.crc32(0, b, (uInt)n);
    assert_int_equal(crc32_update(0, b, n), want);
    srand(3);
    uint32_t c = 0;
    for (size_t at = 0, k; at < n; at += k) {
        k = (size_t)rand() % 70000;
        if (k > n - at)
            k = n - at;
        c = crc32_update(c, b + at, k);
    }
    assert_int_equal(c, want);
    assert_int_equal(crc32_update(0xdeadbeef, b, 4097), (uint32_t)zlib_fn.crc32(0xdeadbeef, b, 4097));
    /* pages of zeros, the bulk of a guest's RAM */
    memset(b, 0, 1 << 20);
    assert_int_equal(crc32_update(0, b, 1 << 20), (uint32_t)zlib_fn.crc32(0, b, 1 << 20));
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_check_value),
        cmocka_unit_test(test_crc32_lengths_alignments),
        cmocka_unit_test(test_crc32_continued),
    };
    return cmocka_run_group_tests_name("crc32", tests, setup_zlib, NULL);
}
