/* The monitor's parts that need no machine: the JSON reader and stream splitter, the command
 * table's argument checks, and QMP's protocol (negotiation, id echo, error classes and texts,
 * as QEMU 7.2 words them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "vm/config.h"
#include "vm/cpu_state.h"
#include "vm/monitor/monitor.h"

static struct json_value *parse(const char *s)
{
    struct json_value *v = NULL;
    const char *err;
    assert_int_equal(json_parse(s, strlen(s), &v, &err), 0);
    return v;
}

static void bad(const char *s)
{
    struct json_value *v = NULL;
    const char *err = NULL;
    assert_int_equal(json_parse(s, strlen(s), &v, &err), -EINVAL);
    assert_non_null(err);
    assert_null(v);
}

static void test_json_parse(void **state)
{
    (void)state;
    struct json_value *v = parse(" {\"a\": [1, -2.5e1, true, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}} ");
    assert_int_equal(v->type, JSON_OBJECT);
    const struct json_value *a = json_get(v, "a");
    assert_int_equal(a->n, 5);
    assert_true(a->items[0]->is_int);
    assert_int_equal(a->items[0]->i, 1);
    assert_false(a->items[1]->is_int);
    assert_true(a->items[1]->d == -25.0);
    assert_true(a->items[2]->b);
    assert_int_equal(a->items[3]->type, JSON_NULL);
    assert_string_equal(a->items[4]->s, "x\xc3\xa9\xf0\x9f\x98\x80\n");
    assert_int_equal(json_get(v, "b")->n, 0);
    assert_null(json_get(v, "c"));
    json_value_free(v);
    v = parse("9223372036854775808");   /* past int64: a number, not an int */
    assert_false(v->is_int);
    json_value_free(v);
    bad("");
    bad("{");
    bad("{\"a\" 1}");
    bad("[1,]");
    bad("{} {}");
    bad("\"\\u0000\"");
    bad("\"\\ud800\"");
    bad("\"a\nb\"");
    bad("01x");
    bad("tru");
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    struct json_value *d = NULL;
    const char *err;
    assert_int_equal(json_parse(deep, sizeof(deep), &d, &err), -EINVAL);
    assert_string_equal(err, "nested too deeply");
}

struct texts { int n; char t[8][64]; };
static void collect(void *opaque, const char *text, size_t len)
{
    struct texts *t = opaque;
    assert_true(t->n < 8 && len < 64);
    memcpy(t->t[t->n], text, len);
    t->t[t->n++][len] = 0;
}

static void test_json_splitter(void **state)
{
    (void)state;
    struct json_splitter sp;
    struct texts t = { 0 };
    json_splitter_init(&sp, 32);
    /* split across feeds, two on one line, braces inside strings, a stray byte */
    assert_int_equal(json_splitter_feed(&sp, "{\"a\": \"}{\\\"\"", 12, collect, &t), 0);
    assert_int_equal(t.n, 0);
    assert_int_equal(json_splitter_feed(&sp, "}\n{} x[1]", 9, collect, &t), 0);
    assert_int_equal(t.n, 4);
    assert_string_equal(t.t[0], "{\"a\": \"}{\\\"\"}");
    assert_string_equal(t.t[1], "{}");
    assert_string_equal(t.t[2], "x");
    assert_string_equal(t.t[3], "[1]");
    /* longer than max: -E2BIG, then the splitter starts afresh */
    char big[40];
    memset(big, '[', sizeof(big));
    assert_int_equal(json_splitter_feed(&sp, big, sizeof(big), collect, &t), -E2BIG);
    assert_int_equal(json_splitter_feed(&sp, "{}", 2, collect, &t), 0);
    assert_string_equal(t.t[4], "{}");
    json_splitter_free(&sp);
}

static void test_check_args(void **state)
{
    (void)state;
    const struct monitor_cmd *c = monitor_cmd_find("human-monitor-command");
    assert_non_null(c);
    assert_null(monitor_cmd_find("frobnicate"));
    struct monitor_error e;
    struct json_value *v = parse("{\"command-line\": \"info status\", \"cpu-index\": 0}");
    assert_int_equal(monitor_check_args(c, v, &e), 0);
    json_value_free(v);
    static const struct { const char *args, *desc; } cases[] = {
        { "{}", "Parameter 'command-line' is missing" },
        { "{\"command-line\": 5}", "Invalid parameter type for 'command-line', expected: string" },
        { "{\"command-line\": \"x\", \"cpu-index\": 1.5}", "Invalid parameter type for 'cpu-index', expected: integer" },
        { "{\"command-line\": \"x\", \"cpu-index\": \"0\"}", "Invalid parameter type for 'cpu-index', expected: integer" },
        { "{\"command-line\": \"x\", \"bogus\": 1}", "Parameter 'bogus' is unexpected" },
        { "[1]", "QMP input member 'arguments' must be an object" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        v = parse(cases[i].args);
        assert_int_equal(monitor_check_args(c, v, &e), -EINVAL);
        assert_string_equal(e.cls, "GenericError");
        assert_string_equal(e.desc, cases[i].desc);
        json_value_free(v);
    }
    assert_int_equal(monitor_check_args(c, NULL, &e), -EINVAL);
    /* every command in the table has a handler, a return type and well-formed arguments */
    for (const struct monitor_cmd *k = monitor_cmds; k->name; k++) {
        assert_non_null(k->ret);
        assert_true(k->fn || !strcmp(k->name, "qmp_capabilities"));
        for (int i = 0; i < MONITOR_MAX_ARGS && k->args[i].name; i++)
            assert_true(k->args[i].type <= MONITOR_ARG_ARRAY);
    }
}

static const struct monitor_info info = { 7, 2, 0, "qkvm-test" };

/* One request through QMP with no machine: what comes back, without the "\r\n". */
static char *qmp(struct qmp_session *q, const char *req)
{
    struct monitor_ctx ctx = { NULL, NULL, &info, NULL };
    char *r = qmp_handle_text(&ctx, q, req, strlen(req));
    assert_non_null(r);
    size_t n = strlen(r);
    assert_true(n >= 2 && !strcmp(r + n - 2, "\r\n"));
    r[n - 2] = 0;
    assert_null(strchr(r, '\n'));   /* one line per reply */
    return r;
}

static void expect(struct qmp_session *q, const char *req, const char *reply)
{
    char *r = qmp(q, req);
    assert_string_equal(r, reply);
    free(r);
}

static void test_qmp_protocol(void **state)
{
    (void)state;
    char *g = qmp_greeting(&info);
    assert_string_equal(g, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
                           "\"package\": \"qkvm-test\"}, \"capabilities\": []}}\r\n");
    free(g);
    struct qmp_session q = { 0 };
    expect(&q, "{\"execute\": \"query-status\", \"id\": 1}",
           "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Expecting capabilities negotiation with 'qmp_capabilities'\"},\"id\":1}");
    expect(&q, "{\"execute\": \"qmp_capabilities\", \"id\": \"a\"}", "{\"return\": {}, \"id\": \"a\"}");
    assert_true(q.negotiated);
    expect(&q, "{\"execute\": \"qmp_capabilities\"}",
           "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"Capabilities negotiation is already complete, command ignored\"}}");
    expect(&q, "{\"execute\": \"frobnicate\", \"id\": [1, {\"x\": null}]}",
           "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"The command frobnicate has not been found\"},\"id\":[1,{\"x\":null}]}");
    expect(&q, "[1]", "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input must be a JSON object\"}}");
    expect(&q, "{\"id\": 3}", "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input lacks member 'execute'\"},\"id\":3}");
    expect(&q, "{\"execute\": 1}", "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'execute' must be a string\"}}");
    expect(&q, "{\"execute\": \"stop\", \"foo\": 1}", "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'foo' is unexpected\"}}");
    expect(&q, "{\"execute\": \"stop\", \"arguments\": 1}",
           "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'arguments' must be an object\"}}");
    expect(&q, "{\"execute\": \"stop\", \"arguments\": {\"a\": 1}}",
           "{\"error\":{\"class\":\"GenericError\",\"desc\":\"Parameter 'a' is unexpected\"}}");
    char *r = qmp(&q, "{\"execute\"");
    assert_non_null(strstr(r, "JSON parse error"));
    free(r);
    r = qmp_event_line("STOP", NULL, false);
    assert_non_null(strstr(r, "\"timestamp\": {\"seconds\": "));
    assert_non_null(strstr(r, "\"event\": \"STOP\"}\r\n"));
    free(r);
}

static void test_block_resize_args(void **state)
{
    (void)state;
    const struct monitor_cmd *c = monitor_cmd_find("block_resize");
    assert_non_null(c);
    struct monitor_error e;
    struct json_value *v = parse("{\"node-name\": \"disk0\", \"size\": 1073741824}");
    assert_int_equal(monitor_check_args(c, v, &e), 0);
    json_value_free(v);
    v = parse("{\"device\": \"disk0\"}");
    assert_int_equal(monitor_check_args(c, v, &e), -EINVAL);
    assert_string_equal(e.desc, "Parameter 'size' is missing");
    json_value_free(v);
    v = parse("{\"device\": \"disk0\", \"size\": \"1G\"}");
    assert_int_equal(monitor_check_args(c, v, &e), -EINVAL);
    assert_string_equal(e.desc, "Invalid parameter type for 'size', expected: integer");
    json_value_free(v);
}

/* Which monitors a command line makes, and whether the one on stdio shares it with COM1. */
static int parse_cmdline(struct config *c, const char *const *args)
{
    char *argv[16] = { "qkvm" };
    int argc = 1;
    for (; args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    return config_parse_args(c, argc, argv);
}

static void test_mux_config(void **state)
{
    (void)state;
    static const struct {
        const char *args[8];
        int nmonitors;
        bool mux;           /* the first monitor is the serial console's mux */
    } cases[] = {
        { { "-kernel", "k", "-nographic", NULL }, 1, true },   /* QEMU's default monitor */
        { { "-kernel", "k", "-serial", "mon:stdio", NULL }, 1, true },
        { { "-kernel", "k", "-monitor", "stdio", "-serial", "stdio", NULL }, 1, true },
        { { "-kernel", "k", "-nographic", "-monitor", "stdio", NULL }, 1, true },
        { { "-kernel", "k", "-nographic", "-monitor", "none", NULL }, 0, false },
        { { "-kernel", "k", "-nographic", "-qmp", "unix:/tmp/x.sock,server=on,wait=off", NULL }, 1, false },
        { { "-kernel", "k", NULL }, 0, false },                 /* no -nographic: as before */
        { { "-kernel", "k", "-monitor", "stdio", NULL }, 1, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        assert_int_equal(parse_cmdline(&c, cases[i].args), 0);
        assert_int_equal(c.nmonitors, cases[i].nmonitors);
        if (c.nmonitors) {
            assert_int_equal(c.monitors[0].addr.mux, cases[i].mux);
            assert_int_equal(c.monitors[0].control, !cases[i].mux && !strcmp(cases[i].args[3], "-qmp"));
        }
        config_free(&c);
    }
    struct config c;
    static const char *const qmp_stdio[] = { "-kernel", "k", "-qmp", "stdio", "-nographic", NULL };
    assert_int_equal(parse_cmdline(&c, qmp_stdio), -EINVAL);
    assert_non_null(strstr(c.err, "cannot share the terminal"));
    config_free(&c);
}

/* A 64-bit Linux kernel's state as QEMU 7.2 prints it (captured from qemu-system-x86_64). */
static void test_cpu_dump(void **state)
{
    (void)state;
    struct cpu_state s = { 0 };
    s.gpr[R_AX] = 0xffff8dd0c1410240ull;
    s.gpr[R_SP] = 0xffffffffa8c03dd0ull;
    s.rip = 0xffffffffa7518de5ull;
    s.rflags = 0x286;
    s.seg[SEG_CS] = (struct cpu_segment){ .selector = 0x10, .limit = 0xffffffff, .type = 0xb, .s = 1,
                                          .present = 1, .l = 1, .g = 1 };
    s.seg[SEG_TR] = (struct cpu_segment){ .selector = 0x40, .base = 0xfffffe0000003000ull, .limit = 0x4087,
                                          .type = 0xb, .present = 1 };
    s.gdt = (struct cpu_table){ 0xfffffe0000001000ull, 0x7f };
    s.cr0 = 0x80050033;
    s.cr3 = 0x9810000;
    s.cr4 = 0x6b0;
    s.efer = 0xd01;
    s.dr[6] = 0xffff0ff0;
    s.dr[7] = 0x400;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cpu_state_dump(&s, f);
    fclose(f);
    static const char *const want[] = {
        "RAX=ffff8dd0c1410240 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000\r\n",
        "R8 =0000000000000000 R9 =0000000000000000 R10=0000000000000000 R11=0000000000000000\r\n",
        "RSP=ffffffffa8c03dd0\r\n",
        "RIP=ffffffffa7518de5 RFL=00000286 [--S--P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n",
        "CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]\r\n",
        "SS =0000 0000000000000000 00000000 00000000\r\n",
        "LDT=0000 0000000000000000 00000000 00000000\r\nTR =0040 fffffe0000003000 00004087 00008b00 DPL=0 TSS64-busy\r\n",
        "GDT=     fffffe0000001000 0000007f\r\n",
        "CR0=80050033 CR2=0000000000000000 CR3=0000000009810000 CR4=000006b0\r\n",
        "DR6=00000000ffff0ff0 DR7=0000000000000400\r\nEFER=0000000000000d01\r\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_non_null(strstr(text, want[i]));
    free(text);
    /* outside long mode: the 32-bit layout */
    s.efer = 0;
    s.seg[SEG_CS].l = 0;
    s.seg[SEG_CS].db = 1;
    f = open_memstream(&text, &len);
    cpu_state_dump(&s, f);
    fclose(f);
    assert_non_null(strstr(text, "EAX=c1410240 EBX=00000000"));
    assert_non_null(strstr(text, "CS =0010 00000000 ffffffff 00c09b00 DPL=0 CS32 [-RA]\r\n"));
    assert_non_null(strstr(text, "TR =0040 00003000 00004087 00008b00 DPL=0 TSS32-busy\r\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_parse),
        cmocka_unit_test(test_json_splitter),
        cmocka_unit_test(test_check_args),
        cmocka_unit_test(test_qmp_protocol),
        cmocka_unit_test(test_block_resize_args),
        cmocka_unit_test(test_mux_config),
        cmocka_unit_test(test_cpu_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
