#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/json.h"
#include "util/log.h"
#include "util/parse.h"

static void test_parse_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(parse_size("512", 1 << 20, &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(parse_size("1G", 1 << 20, &v), 0);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(parse_size("1.5G", 1, &v), 0);
    assert_int_equal(v, 3ull << 29);
    assert_int_equal(parse_size("64k", 1, &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(parse_size("100MiB", 1, &v), 0);
    assert_int_equal(v, 100ull << 20);
    assert_int_equal(parse_size("4096", 1, &v), 0);
    assert_int_equal(v, 4096);
    assert_int_equal(parse_size("", 1, &v), -EINVAL);
    assert_int_equal(parse_size("-1", 1, &v), -EINVAL);
    assert_int_equal(parse_size("12Q", 1, &v), -EINVAL);
    assert_int_equal(parse_size("abc", 1, &v), -EINVAL);
    assert_int_equal(parse_size("99999999999E", 1, &v), -ERANGE);
    /* the header's contract: a number that does not fit is -ERANGE, a malformed one -EINVAL */
    assert_int_equal(parse_size("18446744073709551616", 1, &v), -ERANGE);
    assert_int_equal(parse_size("18446744073709551615", 1, &v), 0);
    assert_int_equal(v, UINT64_MAX);
    assert_int_equal(parse_size("18446744073709551615", 2, &v), -ERANGE);
    assert_int_equal(parse_size("16E", 1, &v), -ERANGE);
    assert_int_equal(parse_size("15E", 1, &v), 0);
    assert_int_equal(v, 15ull << 60);
    assert_int_equal(parse_size("16.0E", 1, &v), -ERANGE);
    assert_int_equal(parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
}

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(parse_u64("0x10", 0, 100, &v), 0);
    assert_int_equal(v, 16);
    assert_int_equal(parse_u64("101", 0, 100, &v), -ERANGE);
    assert_int_equal(parse_u64("0", 1, 100, &v), -ERANGE);
    assert_int_equal(parse_u64("3x", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_u64("-3", 0, 100, &v), -EINVAL);
}

static void test_keyval(void **state)
{
    (void)state;
    struct kvlist l;
    assert_int_equal(keyval_parse("tap,id=n0,ifname=a,,b,readonly", "type", &l), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(keyval_get(&l, "type"), "tap");
    assert_string_equal(keyval_get(&l, "ifname"), "a,b");
    assert_string_equal(keyval_get(&l, "readonly"), "on");
    assert_string_equal(keyval_unused(&l), "id");
    assert_string_equal(keyval_get(&l, "id"), "n0");
    assert_null(keyval_unused(&l));
    assert_null(keyval_get(&l, "nothere"));
    keyval_free(&l);
    assert_int_equal(keyval_parse("file=x", NULL, &l), 0);
    assert_string_equal(keyval_get(&l, "file"), "x");
    keyval_free(&l);
    assert_int_equal(keyval_parse("novalue", NULL, &l), -EINVAL);
    assert_int_equal(keyval_parse("=x", NULL, &l), -EINVAL);
}

static void test_json(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct json_writer w;
    json_init(&w, f, true);
    json_object_begin(&w, NULL);
    json_uint(&w, "virtual-size", 1048576);
    json_string(&w, "filename", "a\"b");
    json_array_begin(&w, "list");
    json_bool(&w, NULL, true);
    json_array_end(&w);
    json_object_begin(&w, "empty");
    json_object_end(&w);
    json_object_end(&w);
    fclose(f);
    assert_string_equal(buf, "{\n    \"virtual-size\": 1048576,\n    \"filename\": \"a\\\"b\",\n"
                             "    \"list\": [\n        true\n    ],\n    \"empty\": {}\n}\n");
    free(buf);
}

static void test_log_mask(void **state)
{
    (void)state;
    unsigned m;
    assert_int_equal(log_parse_mask("accel,time", &m), 0);
    assert_int_equal(m, LOG_ACCEL | LOG_TIME);
    assert_int_equal(log_parse_mask("accel,bogus", &m), -EINVAL);
}


/* stderr into a buffer while a limiter prints */
static FILE *capture_file;
static int capture_saved = -1;

static void capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    capture_saved = dup(2);
    dup2(fileno(capture_file), 2);
}

static char *capture_end(void)
{
    static char buf[65536];
    fflush(stderr);
    dup2(capture_saved, 2);
    close(capture_saved);
    rewind(capture_file);
    size_t n = fread(buf, 1, sizeof(buf) - 1, capture_file);
    buf[n] = 0;
    fclose(capture_file);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

static void test_log_ratelimit(void **state)
{
    (void)state;
    unsigned saved_mask = log_mask;
    struct log_ratelimit rl;
    log_ratelimit_init(&rl);
    rl.now_us = fake_clock;
    fake_now = 1000;
    log_mask = LOG_GUEST;

    capture_begin();
    for (int i = 0; i < 1000; i++)
        log_guest(&rl, LOG_GUEST, "a", "a %d", i);
    for (int i = 0; i < 3; i++)
        log_guest(&rl, LOG_GUEST, "b", "b %d", i);
    char *out = capture_end();
    /* the first LOG_RL_BURST of a, each of b: no summary before the interval has passed */
    assert_int_equal(count_lines(out), LOG_RL_BURST + 3);
    assert_non_null(strstr(out, "a 4\n"));
    assert_null(strstr(out, "a 5\n"));
    assert_non_null(strstr(out, "b 2\n"));

    capture_begin();
    fake_now += LOG_RL_INTERVAL_US;
    log_guest(&rl, LOG_GUEST, "a", "a again");
    for (int i = 0; i < 10; i++)
        log_guest(&rl, LOG_GUEST, "a", "a again");
    out = capture_end();
    /* one summary for the interval, counting the message that triggered it */
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, ": 996 more 'a' messages suppressed\n"));

    capture_begin();
    log_ratelimit_flush(&rl);
    out = capture_end();
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, ": 10 more 'a' messages suppressed\n"));

    /* a category not asked for with -d prints nothing and counts nothing */
    log_ratelimit_init(&rl);
    log_mask = LOG_ACCEL;
    capture_begin();
    for (int i = 0; i < 100; i++)
        log_guest(&rl, LOG_GUEST, "a", "a %d", i);
    log_ratelimit_flush(&rl);
    out = capture_end();
    assert_string_equal(out, "");

    /* more keys than slots: the extra ones share one, so the output stays bounded */
    static char keys[100][8];
    log_ratelimit_init(&rl);
    rl.now_us = fake_clock;
    log_mask = LOG_GUEST;
    capture_begin();
    for (int k = 0; k < 100; k++) {
        snprintf(keys[k], sizeof(keys[k]), "k%d", k);
        for (int i = 0; i < 10; i++)
            log_guest(&rl, LOG_GUEST, keys[k], "%s %d", keys[k], i);
    }
    out = capture_end();
    assert_int_equal(count_lines(out), LOG_RL_KEYS * LOG_RL_BURST);
    capture_begin();
    log_ratelimit_flush(&rl);
    out = capture_end();
    assert_int_equal(count_lines(out), LOG_RL_KEYS);
    assert_non_null(strstr(out, "more 'other guest messages' messages suppressed"));
    log_mask = saved_mask;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_keyval),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_log_mask),
        cmocka_unit_test(test_log_ratelimit),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
