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
            assert_true(k->args[i].type <= MONITOR_ARG_NUMBER);
    }
}

static const struct monitor_info info = { 7, 2, 0, "qkvm-test" };

/* One request through QMP with no machine: what comes back, without the "\r\n". */
static char *qmp(struct qmp_session *q, const char *req)
{
    struct monitor_ctx ctx = { NULL, NULL, &info };
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_parse),
        cmocka_unit_test(test_json_splitter),
        cmocka_unit_test(test_check_args),
        cmocka_unit_test(test_qmp_protocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
